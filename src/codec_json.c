/* codec_json.c - JSON lines <-> event structs through jansson.
 *
 * The JSON form is the human form of the Avro contract: the same field
 * names, no union wrappers, payload as a plain object (null when the type has
 * none), occurred_at as epoch ms or an ISO-8601 string. */
#include "codec.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

typedef struct jr {
    char *err;
    size_t errlen;
} jr;

#define TRY(x)                                                                                                    \
    do {                                                                                                          \
        event_err e_ = (x);                                                                                       \
        if (e_ != EVENT_OK)                                                                                       \
            return e_;                                                                                            \
    } while (0)

/* Reject keys of obj that are not in allowed (NULL-terminated) with code. */
static event_err fields_in(jr *r, json_t *obj, const char *where, const char *const *allowed, event_err code)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, key) == 0)
                ok = 1;
        if (!ok) {
            snprintf(r->err, r->errlen, "unknown field '%s' in %s", key, where);
            return code;
        }
    }
    return EVENT_OK;
}

static event_err only_fields(jr *r, json_t *obj, const char *where, const char *const *allowed)
{
    return fields_in(r, obj, where, allowed, EVENT_ERR_BAD_FIELD);
}

static event_err str_field(jr *r, json_t *obj, const char *field, char *dst, size_t cap)
{
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) {
        snprintf(r->err, r->errlen, "%s is missing", field);
        return EVENT_ERR_MISSING_FIELD;
    }
    if (!json_is_string(v)) {
        snprintf(r->err, r->errlen, "%s must be a string", field);
        return EVENT_ERR_BAD_FIELD;
    }
    return event_copy_str(dst, cap, json_string_value(v), json_string_length(v), field, r->err, r->errlen);
}

static event_err nullable_str_field(jr *r, json_t *obj, const char *field, bool *has, char *dst, size_t cap)
{
    json_t *v = json_object_get(obj, field);
    *has = v && !json_is_null(v);
    if (!*has) {
        dst[0] = '\0';
        return EVENT_OK;
    }
    return str_field(r, obj, field, dst, cap);
}

static event_err opt_str_field(jr *r, json_t *obj, const char *field, char *dst, size_t cap)
{
    bool has;
    return nullable_str_field(r, obj, field, &has, dst, cap);
}

static event_err long_field(jr *r, json_t *obj, const char *field, int64_t *out)
{
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) {
        snprintf(r->err, r->errlen, "%s is missing", field);
        return EVENT_ERR_MISSING_FIELD;
    }
    if (!json_is_integer(v)) {
        snprintf(r->err, r->errlen, "%s must be an integer", field);
        return EVENT_ERR_BAD_FIELD;
    }
    *out = json_integer_value(v);
    return EVENT_OK;
}

static event_err customer_field(jr *r, json_t *obj, char *dst)
{
    event_err e = str_field(r, obj, "customer_id", dst, EVENT_ID_MAX + 1);
    if (e == EVENT_ERR_FIELD_TOO_LONG)
        return EVENT_ERR_CUSTOMER_ID_TOO_LONG;
    if (e == EVENT_ERR_BAD_STRING)
        return EVENT_ERR_CUSTOMER_ID_CHARS;
    return e;
}

static event_err time_field(jr *r, json_t *obj, int64_t *out)
{
    json_t *v = json_object_get(obj, "occurred_at");
    if (!v || json_is_null(v)) {
        snprintf(r->err, r->errlen, "occurred_at is missing");
        return EVENT_ERR_MISSING_FIELD;
    }
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return EVENT_OK;
    }
    if (json_is_string(v) && time_parse_iso8601(json_string_value(v), out) == 0)
        return EVENT_OK;
    snprintf(r->err, r->errlen, "occurred_at must be epoch milliseconds or an ISO-8601 UTC date-time");
    return EVENT_ERR_BAD_TIMESTAMP;
}

static event_err decode_payload(jr *r, json_t *root, touchpoint *ev)
{
    static const char *const f_signup[] = {"referred_by", NULL};
    static const char *const f_profile[] = {"completeness", NULL};
    static const char *const f_app[] = {"session_seconds", "feature", NULL};
    static const char *const f_social[] = {"network", "content_id", NULL};
    static const char *const f_referral[] = {"invitee_id", NULL};
    static const char *const f_purchase[] = {"order_id", "amount_cents", "currency", "store_id", NULL};
    static const char *const f_refund[] = {"order_id", "amount_cents", NULL};
    static const char *const f_redemption[] = {"redemption_id", "reward_code", "cost_points", NULL};
    json_t *p = json_object_get(root, "payload");
    int is_null = !p || json_is_null(p);
    if (ev->type == EVENT_NEWSLETTER_OPT_IN) {
        if (!is_null && !(json_is_object(p) && json_object_size(p) == 0)) {
            snprintf(r->err, r->errlen, "NEWSLETTER_OPT_IN carries no payload");
            return EVENT_ERR_PAYLOAD_MISMATCH;
        }
        return EVENT_OK;
    }
    if (is_null) {
        /* payloads whose fields are all optional may be omitted */
        if (ev->type == EVENT_SIGNUP || ev->type == EVENT_REFERRAL)
            return EVENT_OK;
        snprintf(r->err, r->errlen, "%s needs a payload", event_type_name(ev->type));
        return EVENT_ERR_PAYLOAD_MISMATCH;
    }
    if (!json_is_object(p)) {
        snprintf(r->err, r->errlen, "payload must be an object");
        return EVENT_ERR_PAYLOAD_MISMATCH;
    }
    const char *const *allowed[EVENT_TYPE_COUNT] = {
        [EVENT_SIGNUP] = f_signup, [EVENT_PROFILE_UPDATE] = f_profile, [EVENT_APP_USE] = f_app,
        [EVENT_SOCIAL_SHARE] = f_social, [EVENT_REFERRAL] = f_referral, [EVENT_PURCHASE] = f_purchase,
        [EVENT_REFUND] = f_refund, [EVENT_REDEMPTION] = f_redemption,
    };
    char where[64];
    snprintf(where, sizeof(where), "the payload of %s", event_type_name(ev->type));
    TRY(fields_in(r, p, where, allowed[ev->type], EVENT_ERR_PAYLOAD_MISMATCH));
    switch (ev->type) {
    case EVENT_SIGNUP:
        return nullable_str_field(r, p, "referred_by", &ev->payload.signup.has_referred_by,
                                  ev->payload.signup.referred_by, sizeof(ev->payload.signup.referred_by));
    case EVENT_PROFILE_UPDATE: {
        json_t *v = json_object_get(p, "completeness");
        if (!v || !json_is_number(v)) {
            snprintf(r->err, r->errlen, "completeness must be a number");
            return v ? EVENT_ERR_BAD_FIELD : EVENT_ERR_MISSING_FIELD;
        }
        ev->payload.profile_update.completeness = json_number_value(v);
        return EVENT_OK;
    }
    case EVENT_APP_USE: {
        int64_t s;
        TRY(long_field(r, p, "session_seconds", &s));
        if (s > INT32_MAX || s < INT32_MIN) {
            snprintf(r->err, r->errlen, "session_seconds %lld does not fit an int", (long long)s);
            return EVENT_ERR_BAD_FIELD;
        }
        ev->payload.app_use.session_seconds = (int32_t)s;
        return nullable_str_field(r, p, "feature", &ev->payload.app_use.has_feature, ev->payload.app_use.feature,
                                  sizeof(ev->payload.app_use.feature));
    }
    case EVENT_SOCIAL_SHARE:
        TRY(str_field(r, p, "network", ev->payload.social_share.network, sizeof(ev->payload.social_share.network)));
        return nullable_str_field(r, p, "content_id", &ev->payload.social_share.has_content_id,
                                  ev->payload.social_share.content_id, sizeof(ev->payload.social_share.content_id));
    case EVENT_REFERRAL:
        return nullable_str_field(r, p, "invitee_id", &ev->payload.referral.has_invitee_id,
                                  ev->payload.referral.invitee_id, sizeof(ev->payload.referral.invitee_id));
    case EVENT_PURCHASE:
        TRY(str_field(r, p, "order_id", ev->payload.purchase.order_id, sizeof(ev->payload.purchase.order_id)));
        TRY(long_field(r, p, "amount_cents", &ev->payload.purchase.amount_cents));
        TRY(str_field(r, p, "currency", ev->payload.purchase.currency, sizeof(ev->payload.purchase.currency)));
        return nullable_str_field(r, p, "store_id", &ev->payload.purchase.has_store_id, ev->payload.purchase.store_id,
                                  sizeof(ev->payload.purchase.store_id));
    case EVENT_REFUND:
        TRY(str_field(r, p, "order_id", ev->payload.refund.order_id, sizeof(ev->payload.refund.order_id)));
        return long_field(r, p, "amount_cents", &ev->payload.refund.amount_cents);
    case EVENT_REDEMPTION:
        TRY(str_field(r, p, "redemption_id", ev->payload.redemption.redemption_id,
                      sizeof(ev->payload.redemption.redemption_id)));
        TRY(str_field(r, p, "reward_code", ev->payload.redemption.reward_code,
                      sizeof(ev->payload.redemption.reward_code)));
        return long_field(r, p, "cost_points", &ev->payload.redemption.cost_points);
    default:
        return EVENT_ERR_UNKNOWN_TYPE;
    }
}

static event_err decode_touchpoint(jr *r, json_t *root, touchpoint *ev)
{
    static const char *const fields[] = {"event_id", "customer_id", "type", "channel", "occurred_at", "payload",
                                         "attributes", NULL};
    char type[EVENT_ID_MAX + 1];
    touchpoint_clear(ev);
    TRY(only_fields(r, root, "event", fields));
    TRY(str_field(r, root, "event_id", ev->event_id, sizeof(ev->event_id)));
    TRY(customer_field(r, root, ev->customer_id));
    TRY(str_field(r, root, "type", type, sizeof(type)));
    int t = event_type_parse(type);
    if (t < 0) {
        snprintf(r->err, r->errlen, "type '%s' is not one of SIGNUP, PROFILE_UPDATE, NEWSLETTER_OPT_IN, APP_USE, "
                 "SOCIAL_SHARE, REFERRAL, PURCHASE, REFUND, REDEMPTION", type);
        return EVENT_ERR_UNKNOWN_TYPE;
    }
    ev->type = (event_type)t;
    TRY(str_field(r, root, "channel", ev->channel, sizeof(ev->channel)));
    TRY(time_field(r, root, &ev->occurred_at));
    TRY(decode_payload(r, root, ev));
    json_t *attrs = json_object_get(root, "attributes");
    if (attrs && !json_is_null(attrs)) {
        const char *key;
        json_t *val;
        if (!json_is_object(attrs)) {
            snprintf(r->err, r->errlen, "attributes must be an object of strings");
            return EVENT_ERR_BAD_FIELD;
        }
        json_object_foreach(attrs, key, val) {
            if (!json_is_string(val)) {
                snprintf(r->err, r->errlen, "attribute '%s' must be a string", key);
                return EVENT_ERR_BAD_FIELD;
            }
            if (memchr(json_string_value(val), '\0', json_string_length(val))) {
                snprintf(r->err, r->errlen, "attribute '%s' holds a NUL byte", key);
                return EVENT_ERR_BAD_STRING;
            }
            TRY(touchpoint_add_attr(ev, key, strlen(key), json_string_value(val), json_string_length(val)));
        }
    }
    return EVENT_OK;
}

static event_err decode_reward(jr *r, json_t *root, reward_event *ev)
{
    static const char *const fields[] = {"reward_id", "customer_id", "kind", "rule_id", "points", "balance_after",
                                         "source_event_id", "occurred_at", "reason", "program_version",
                                         "program_digest", NULL};
    char kind[EVENT_ID_MAX + 1];
    memset(ev, 0, sizeof(*ev));
    TRY(only_fields(r, root, "reward", fields));
    TRY(str_field(r, root, "reward_id", ev->reward_id, sizeof(ev->reward_id)));
    TRY(customer_field(r, root, ev->customer_id));
    TRY(str_field(r, root, "kind", kind, sizeof(kind)));
    int k = reward_kind_parse(kind);
    if (k < 0) {
        snprintf(r->err, r->errlen, "kind '%s' is not one of EARN, REVERSAL, REDEEM, REDEEM_REJECTED", kind);
        return EVENT_ERR_BAD_FIELD;
    }
    ev->kind = (reward_kind)k;
    TRY(str_field(r, root, "rule_id", ev->rule_id, sizeof(ev->rule_id)));
    TRY(long_field(r, root, "points", &ev->points));
    TRY(long_field(r, root, "balance_after", &ev->balance_after));
    TRY(str_field(r, root, "source_event_id", ev->source_event_id, sizeof(ev->source_event_id)));
    TRY(time_field(r, root, &ev->occurred_at));
    TRY(str_field(r, root, "reason", ev->reason, sizeof(ev->reason)));
    TRY(opt_str_field(r, root, "program_version", ev->program_version, sizeof(ev->program_version)));
    return opt_str_field(r, root, "program_digest", ev->program_digest, sizeof(ev->program_digest));
}

static event_err decode_stage(jr *r, json_t *root, stage_change_event *ev)
{
    static const char *const fields[] = {"change_id", "customer_id", "ladder", "from_stage", "to_stage",
                                         "source_event_id", "occurred_at", "program_version", "program_digest", NULL};
    memset(ev, 0, sizeof(*ev));
    TRY(only_fields(r, root, "stage change", fields));
    TRY(str_field(r, root, "change_id", ev->change_id, sizeof(ev->change_id)));
    TRY(customer_field(r, root, ev->customer_id));
    TRY(str_field(r, root, "ladder", ev->ladder, sizeof(ev->ladder)));
    TRY(nullable_str_field(r, root, "from_stage", &ev->has_from_stage, ev->from_stage, sizeof(ev->from_stage)));
    TRY(str_field(r, root, "to_stage", ev->to_stage, sizeof(ev->to_stage)));
    TRY(str_field(r, root, "source_event_id", ev->source_event_id, sizeof(ev->source_event_id)));
    TRY(time_field(r, root, &ev->occurred_at));
    TRY(opt_str_field(r, root, "program_version", ev->program_version, sizeof(ev->program_version)));
    return opt_str_field(r, root, "program_digest", ev->program_digest, sizeof(ev->program_digest));
}

static event_err decode_credit(jr *r, json_t *root, credit_event *ev)
{
    static const char *const fields[] = {"credit_id", "customer_id", "source_customer_id", "rule_id", "points",
                                         "referral", "source_event_id", "occurred_at", "reason", "program_version",
                                         "namespace", "signature", NULL};
    memset(ev, 0, sizeof(*ev));
    TRY(only_fields(r, root, "credit", fields));
    TRY(str_field(r, root, "credit_id", ev->credit_id, sizeof(ev->credit_id)));
    TRY(customer_field(r, root, ev->customer_id));
    TRY(str_field(r, root, "source_customer_id", ev->source_customer_id, sizeof(ev->source_customer_id)));
    TRY(str_field(r, root, "rule_id", ev->rule_id, sizeof(ev->rule_id)));
    TRY(long_field(r, root, "points", &ev->points));
    json_t *b = json_object_get(root, "referral");
    if (!json_is_boolean(b)) {
        snprintf(r->err, r->errlen, "referral must be true or false");
        return b ? EVENT_ERR_BAD_FIELD : EVENT_ERR_MISSING_FIELD;
    }
    ev->referral = json_is_true(b);
    TRY(str_field(r, root, "source_event_id", ev->source_event_id, sizeof(ev->source_event_id)));
    TRY(time_field(r, root, &ev->occurred_at));
    TRY(str_field(r, root, "reason", ev->reason, sizeof(ev->reason)));
    TRY(opt_str_field(r, root, "program_version", ev->program_version, sizeof(ev->program_version)));
    TRY(opt_str_field(r, root, "namespace", ev->ns, sizeof(ev->ns)));
    return opt_str_field(r, root, "signature", ev->signature, sizeof(ev->signature));
}

event_err codec_decode_json(codec_schema s, const char *text, size_t len, codec_record *rec, char *err,
                            size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    jr r = {.err = err, .errlen = errlen};
    if (!root) {
        snprintf(err, errlen, "invalid JSON at column %d: %s", jerr.column, jerr.text);
        /* a NUL in a key is a bad string, as on the Avro path; anything else is bad JSON */
        return json_error_code(&jerr) == json_error_null_byte_in_key ? EVENT_ERR_BAD_STRING : EVENT_ERR_MALFORMED;
    }
    event_err e;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "a line must hold one JSON object");
        e = EVENT_ERR_MALFORMED;
    } else {
        rec->schema = s;
        switch (s) {
        case SCHEMA_TOUCHPOINT: e = decode_touchpoint(&r, root, &rec->tp); break;
        case SCHEMA_REWARD: e = decode_reward(&r, root, &rec->reward); break;
        case SCHEMA_STAGE_CHANGE: e = decode_stage(&r, root, &rec->stage); break;
        case SCHEMA_CREDIT: e = decode_credit(&r, root, &rec->credit); break;
        default: e = EVENT_ERR_MALFORMED;
        }
    }
    json_decref(root);
    return e;
}

long codec_read_jsonl(FILE *in, char **line, size_t *cap, long long *lineno)
{
    ssize_t n;
    while ((n = getline(line, cap, in)) >= 0) {
        (*lineno)++;
        while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r'))
            (*line)[--n] = '\0';
        if ((size_t)n != strspn(*line, " \t"))
            return (long)n;
    }
    return -1;
}

/* ---- encode ---------------------------------------------------------------- */

/* json_object_set_new that remembers a failure in *bad. */
static void put(json_t *obj, const char *key, json_t *val, int *bad)
{
    if (!val || json_object_set_new(obj, key, val) != 0)
        *bad = 1;
}

/* A new JSON object, or NULL with *bad set. */
static json_t *new_object(int *bad)
{
    json_t *o = json_object();
    if (!o)
        *bad = 1;
    return o;
}

/* occurred_at as ISO-8601, or as epoch ms when its year has no four-digit
 * ISO-8601 form: either way a JSON line the reader takes back. */
static json_t *time_json(int64_t ms)
{
    char iso[40];
    if (time_format_iso8601(ms, iso, sizeof(iso)) != 0)
        return json_integer(ms);
    return json_string(iso);
}

static json_t *nullable(bool has, const char *s) { return has ? json_string(s) : json_null(); }

static json_t *payload_json(const touchpoint *ev, int *bad)
{
    json_t *p = json_object();
    if (!p) {
        *bad = 1;
        return NULL;
    }
    switch (ev->type) {
    case EVENT_NEWSLETTER_OPT_IN:
        json_decref(p);
        return json_null();
    case EVENT_SIGNUP:
        put(p, "referred_by", nullable(ev->payload.signup.has_referred_by, ev->payload.signup.referred_by), bad);
        break;
    case EVENT_PROFILE_UPDATE:
        put(p, "completeness", json_real(ev->payload.profile_update.completeness), bad);
        break;
    case EVENT_APP_USE:
        put(p, "session_seconds", json_integer(ev->payload.app_use.session_seconds), bad);
        put(p, "feature", nullable(ev->payload.app_use.has_feature, ev->payload.app_use.feature), bad);
        break;
    case EVENT_SOCIAL_SHARE:
        put(p, "network", json_string(ev->payload.social_share.network), bad);
        put(p, "content_id", nullable(ev->payload.social_share.has_content_id, ev->payload.social_share.content_id), bad);
        break;
    case EVENT_REFERRAL:
        put(p, "invitee_id", nullable(ev->payload.referral.has_invitee_id, ev->payload.referral.invitee_id), bad);
        break;
    case EVENT_PURCHASE:
        put(p, "order_id", json_string(ev->payload.purchase.order_id), bad);
        put(p, "amount_cents", json_integer(ev->payload.purchase.amount_cents), bad);
        put(p, "currency", json_string(ev->payload.purchase.currency), bad);
        put(p, "store_id", nullable(ev->payload.purchase.has_store_id, ev->payload.purchase.store_id), bad);
        break;
    case EVENT_REFUND:
        put(p, "order_id", json_string(ev->payload.refund.order_id), bad);
        put(p, "amount_cents", json_integer(ev->payload.refund.amount_cents), bad);
        break;
    case EVENT_REDEMPTION:
        put(p, "redemption_id", json_string(ev->payload.redemption.redemption_id), bad);
        put(p, "reward_code", json_string(ev->payload.redemption.reward_code), bad);
        put(p, "cost_points", json_integer(ev->payload.redemption.cost_points), bad);
        break;
    default:
        *bad = 1;
    }
    return p;
}

static json_t *touchpoint_json(const touchpoint *ev, int *bad)
{
    json_t *o = json_object(), *attrs = json_object();
    if (!o || !attrs) {
        json_decref(o);
        json_decref(attrs);
        *bad = 1;
        return NULL;
    }
    put(o, "event_id", json_string(ev->event_id), bad);
    put(o, "customer_id", json_string(ev->customer_id), bad);
    put(o, "type", json_string(event_type_name(ev->type)), bad);
    put(o, "channel", json_string(ev->channel), bad);
    put(o, "occurred_at", time_json(ev->occurred_at), bad);
    put(o, "payload", payload_json(ev, bad), bad);
    for (size_t i = 0; i < ev->attr_count; i++)
        put(attrs, ev->attrs[i].key, json_string(ev->attrs[i].value), bad);
    put(o, "attributes", attrs, bad);
    return o;
}

static json_t *reward_json(const reward_event *ev, int *bad)
{
    json_t *o = new_object(bad);
    if (!o)
        return NULL;
    put(o, "reward_id", json_string(ev->reward_id), bad);
    put(o, "customer_id", json_string(ev->customer_id), bad);
    put(o, "kind", json_string(reward_kind_name(ev->kind)), bad);
    put(o, "rule_id", json_string(ev->rule_id), bad);
    put(o, "points", json_integer(ev->points), bad);
    put(o, "balance_after", json_integer(ev->balance_after), bad);
    put(o, "source_event_id", json_string(ev->source_event_id), bad);
    put(o, "occurred_at", time_json(ev->occurred_at), bad);
    put(o, "reason", json_string(ev->reason), bad);
    put(o, "program_version", json_string(ev->program_version), bad);
    put(o, "program_digest", json_string(ev->program_digest), bad);
    return o;
}

static json_t *stage_json(const stage_change_event *ev, int *bad)
{
    json_t *o = new_object(bad);
    if (!o)
        return NULL;
    put(o, "change_id", json_string(ev->change_id), bad);
    put(o, "customer_id", json_string(ev->customer_id), bad);
    put(o, "ladder", json_string(ev->ladder), bad);
    put(o, "from_stage", nullable(ev->has_from_stage, ev->from_stage), bad);
    put(o, "to_stage", json_string(ev->to_stage), bad);
    put(o, "source_event_id", json_string(ev->source_event_id), bad);
    put(o, "occurred_at", time_json(ev->occurred_at), bad);
    put(o, "program_version", json_string(ev->program_version), bad);
    put(o, "program_digest", json_string(ev->program_digest), bad);
    return o;
}

/* Fewest significant digits (1..17) that read back as exactly x. */
static int shortest_precision(double x)
{
    char tmp[40];
    for (int p = 1; p < 17; p++) {
        snprintf(tmp, sizeof(tmp), "%.*g", p, x);
        if (strtod(tmp, NULL) == x)
            return p;
    }
    return 17;
}

static json_t *credit_json(const credit_event *ev, int *bad)
{
    json_t *o = new_object(bad);
    if (!o)
        return NULL;
    put(o, "credit_id", json_string(ev->credit_id), bad);
    put(o, "customer_id", json_string(ev->customer_id), bad);
    put(o, "source_customer_id", json_string(ev->source_customer_id), bad);
    put(o, "rule_id", json_string(ev->rule_id), bad);
    put(o, "points", json_integer(ev->points), bad);
    put(o, "referral", json_boolean(ev->referral), bad);
    put(o, "source_event_id", json_string(ev->source_event_id), bad);
    put(o, "occurred_at", time_json(ev->occurred_at), bad);
    put(o, "reason", json_string(ev->reason), bad);
    put(o, "program_version", json_string(ev->program_version), bad);
    put(o, "namespace", json_string(ev->ns), bad);
    put(o, "signature", json_string(ev->signature), bad);
    return o;
}

event_err codec_encode_json(codec_schema s, const codec_record *rec, buf *out)
{
    int bad = 0;
    /* completeness is the only real number of the contract: print it as short as it round-trips */
    int precision = (s == SCHEMA_TOUCHPOINT && rec->tp.type == EVENT_PROFILE_UPDATE)
                        ? shortest_precision(rec->tp.payload.profile_update.completeness)
                        : 17;
    json_t *o = NULL;
    switch (s) {
    case SCHEMA_TOUCHPOINT: o = touchpoint_json(&rec->tp, &bad); break;
    case SCHEMA_REWARD: o = reward_json(&rec->reward, &bad); break;
    case SCHEMA_STAGE_CHANGE: o = stage_json(&rec->stage, &bad); break;
    case SCHEMA_CREDIT: o = credit_json(&rec->credit, &bad); break;
    default: bad = 1;
    }
    char *text = (!bad && o) ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(precision)) : NULL;
    json_decref(o);
    if (!text)
        return EVENT_ERR_NO_MEMORY;
    int rc = buf_puts(out, text);
    free(text);
    return rc == 0 ? EVENT_OK : EVENT_ERR_NO_MEMORY;
}
