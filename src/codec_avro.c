/* codec_avro.c - Avro binary <-> event structs through avro-c's value API. */
#include "codec.h"

#include <avro.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded.h"

/* Field positions; codec_new checks them against the parsed schemas so an
 * edit of schemas/ that reorders fields fails loudly at start-up. */
enum { TP_EVENT_ID, TP_CUSTOMER_ID, TP_TYPE, TP_CHANNEL, TP_OCCURRED_AT, TP_PAYLOAD, TP_ATTRIBUTES, TP_NFIELDS };
static const char *const tp_fields[] = {"event_id", "customer_id", "type", "channel", "occurred_at", "payload", "attributes"};
enum { RW_REWARD_ID, RW_CUSTOMER_ID, RW_KIND, RW_RULE_ID, RW_POINTS, RW_BALANCE_AFTER, RW_SOURCE_EVENT_ID,
       RW_OCCURRED_AT, RW_REASON, RW_PROGRAM_VERSION, RW_PROGRAM_DIGEST, RW_NFIELDS };
static const char *const rw_fields[] = {"reward_id", "customer_id", "kind", "rule_id", "points", "balance_after",
                                        "source_event_id", "occurred_at", "reason", "program_version",
                                        "program_digest"};
enum { SC_CHANGE_ID, SC_CUSTOMER_ID, SC_LADDER, SC_FROM_STAGE, SC_TO_STAGE, SC_SOURCE_EVENT_ID, SC_OCCURRED_AT,
       SC_PROGRAM_VERSION, SC_PROGRAM_DIGEST, SC_NFIELDS };
static const char *const sc_fields[] = {"change_id", "customer_id", "ladder", "from_stage", "to_stage",
                                        "source_event_id", "occurred_at", "program_version", "program_digest"};

enum { CR_CREDIT_ID, CR_CUSTOMER_ID, CR_SOURCE_CUSTOMER_ID, CR_RULE_ID, CR_POINTS, CR_REFERRAL, CR_SOURCE_EVENT_ID,
       CR_OCCURRED_AT, CR_REASON, CR_PROGRAM_VERSION, CR_NAMESPACE, CR_SIGNATURE, CR_NFIELDS };
static const char *const cr_fields[] = {"credit_id", "customer_id", "source_customer_id", "rule_id", "points",
                                        "referral", "source_event_id", "occurred_at", "reason", "program_version",
                                        "namespace", "signature"};

/* Union branch of each touchpoint type's payload (0 = null). */
static const int payload_branch[EVENT_TYPE_COUNT] = {
    [EVENT_SIGNUP] = 1, [EVENT_PROFILE_UPDATE] = 2, [EVENT_NEWSLETTER_OPT_IN] = 0, [EVENT_APP_USE] = 3,
    [EVENT_SOCIAL_SHARE] = 4, [EVENT_REFERRAL] = 5, [EVENT_PURCHASE] = 6, [EVENT_REFUND] = 7,
    [EVENT_REDEMPTION] = 8,
};

struct codec {
    size_t max_message_bytes;          /* larger messages are rejected unread */
    avro_schema_t schema[SCHEMA_COUNT];
    avro_value_iface_t *iface[SCHEMA_COUNT];
    avro_value_t value[SCHEMA_COUNT];  /* reused for every message */
    int have_value[SCHEMA_COUNT];
    avro_reader_t reader;              /* memory reader, re-pointed per message */
    avro_writer_t writer;              /* memory writer, re-pointed per message */
};

static const char *const schema_names[SCHEMA_COUNT] = {"touchpoint", "reward", "stage-change", "credit"};

const char *codec_schema_name(codec_schema s) { return (unsigned)s < SCHEMA_COUNT ? schema_names[s] : "?"; }

int codec_schema_parse(const char *s)
{
    for (int i = 0; i < SCHEMA_COUNT; i++)
        if (strcmp(s, schema_names[i]) == 0)
            return i;
    return -1;
}

const char *codec_schema_json(codec_schema s)
{
    switch (s) {
    case SCHEMA_TOUCHPOINT: return embedded_touchpoint_event_avsc;
    case SCHEMA_REWARD: return embedded_reward_event_avsc;
    case SCHEMA_STAGE_CHANGE: return embedded_stage_change_event_avsc;
    case SCHEMA_CREDIT: return embedded_credit_event_avsc;
    default: return NULL;
    }
}

static int check_fields(avro_schema_t s, const char *const *names, int n, char *err, size_t errlen)
{
    if ((int)avro_schema_record_size(s) != n) {
        snprintf(err, errlen, "schema %s has %zu fields, the codec knows %d", avro_schema_name(s),
                 avro_schema_record_size(s), n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char *got = avro_schema_record_field_name(s, i);
        if (!got || strcmp(got, names[i]) != 0) {
            snprintf(err, errlen, "schema %s field %d is '%s', the codec expects '%s'", avro_schema_name(s), i,
                     got ? got : "?", names[i]);
            return -1;
        }
    }
    return 0;
}

codec *codec_new(size_t max_message_bytes, char *err, size_t errlen)
{
    codec *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->max_message_bytes = max_message_bytes;
    for (int i = 0; i < SCHEMA_COUNT; i++) {
        const char *json = codec_schema_json(i);
        if (avro_schema_from_json_length(json, strlen(json), &c->schema[i]) != 0) {
            snprintf(err, errlen, "schema %s: %s", schema_names[i], avro_strerror());
            goto err;
        }
        c->iface[i] = avro_generic_class_from_schema(c->schema[i]);
        if (!c->iface[i] || avro_generic_value_new(c->iface[i], &c->value[i]) != 0) {
            snprintf(err, errlen, "schema %s: %s", schema_names[i], avro_strerror());
            goto err;
        }
        c->have_value[i] = 1;
    }
    if (check_fields(c->schema[SCHEMA_TOUCHPOINT], tp_fields, TP_NFIELDS, err, errlen) ||
        check_fields(c->schema[SCHEMA_REWARD], rw_fields, RW_NFIELDS, err, errlen) ||
        check_fields(c->schema[SCHEMA_STAGE_CHANGE], sc_fields, SC_NFIELDS, err, errlen) ||
        check_fields(c->schema[SCHEMA_CREDIT], cr_fields, CR_NFIELDS, err, errlen))
        goto err;
    c->reader = avro_reader_memory("", 0);
    c->writer = avro_writer_memory("", 0);
    if (!c->reader || !c->writer) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    return c;
err:
    codec_free(c);
    return NULL;
}

void codec_free(codec *c)
{
    if (!c)
        return;
    for (int i = 0; i < SCHEMA_COUNT; i++) {
        if (c->have_value[i])
            avro_value_decref(&c->value[i]);
        if (c->iface[i])
            avro_value_iface_decref(c->iface[i]);
        if (c->schema[i])
            avro_schema_decref(c->schema[i]);
    }
    if (c->reader)
        avro_reader_free(c->reader);
    if (c->writer)
        avro_writer_free(c->writer);
    free(c);
}

/* ---- wire check ---------------------------------------------------------- */

typedef struct wire {
    const uint8_t *p, *end;
    const char *field;    /* record field being walked, for messages */
    size_t map_items;     /* map entries on the wire: fewer after decoding means a repeated key */
    char *err;
    size_t errlen;
} wire;

static event_err wire_varint(wire *w, int64_t *out, int maxbytes)
{
    uint64_t v = 0;
    for (int shift = 0, i = 0;; i++, shift += 7) {
        if (w->p >= w->end) {
            snprintf(w->err, w->errlen, "message ends inside a number");
            return EVENT_ERR_TRUNCATED;
        }
        if (i >= maxbytes) {
            snprintf(w->err, w->errlen, "number longer than %d bytes", maxbytes);
            return EVENT_ERR_MALFORMED;
        }
        uint8_t b = *w->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    *out = (int64_t)((v >> 1) ^ -(v & 1));
    return EVENT_OK;
}

static event_err wire_skip(wire *w, int64_t n, const char *what)
{
    if (n < 0) {
        snprintf(w->err, w->errlen, "negative %s length %lld", what, (long long)n);
        return EVENT_ERR_MALFORMED;
    }
    if (n > w->end - w->p) {
        snprintf(w->err, w->errlen, "%s declares %lld bytes, %td remain in the message", what, (long long)n,
                 w->end - w->p);
        return EVENT_ERR_TRUNCATED;
    }
    w->p += n;
    return EVENT_OK;
}

static event_err wire_walk(wire *w, avro_schema_t s, int depth)
{
    event_err e;
    int64_t n;
    if (depth > 32) {
        snprintf(w->err, w->errlen, "schema nests too deep");
        return EVENT_ERR_MALFORMED;
    }
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return EVENT_OK;
    case AVRO_BOOLEAN:
        if (w->p >= w->end) {
            snprintf(w->err, w->errlen, "message ends inside a boolean");
            return EVENT_ERR_TRUNCATED;
        }
        if (*w->p > 1) {
            snprintf(w->err, w->errlen, "boolean byte %u", *w->p);
            return EVENT_ERR_MALFORMED;
        }
        w->p++;
        return EVENT_OK;
    case AVRO_INT32:
        return wire_varint(w, &n, 5);
    case AVRO_INT64:
        return wire_varint(w, &n, 10);
    case AVRO_FLOAT:
        return wire_skip(w, 4, "float");
    case AVRO_DOUBLE:
        return wire_skip(w, 8, "double");
    case AVRO_STRING:
    case AVRO_BYTES:
        if ((e = wire_varint(w, &n, 10)) != EVENT_OK)
            return e;
        return wire_skip(w, n, "string");
    case AVRO_FIXED:
        return wire_skip(w, avro_schema_fixed_size(s), "fixed");
    case AVRO_ENUM:
        if ((e = wire_varint(w, &n, 5)) != EVENT_OK)
            return e;
        if (n < 0 || n >= avro_schema_enum_number_of_symbols(s)) {
            snprintf(w->err, w->errlen, "enum %s index %lld out of range", avro_schema_name(s), (long long)n);
            return EVENT_ERR_MALFORMED;
        }
        return EVENT_OK;
    case AVRO_UNION:
        if ((e = wire_varint(w, &n, 10)) != EVENT_OK)
            return e;
        if (n < 0 || (size_t)n >= avro_schema_union_size(s)) {
            snprintf(w->err, w->errlen, "union branch %lld out of range", (long long)n);
            return EVENT_ERR_MALFORMED;
        }
        return wire_walk(w, avro_schema_union_branch(s, (int)n), depth + 1);
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(s); i++) {
            w->field = avro_schema_record_field_name(s, (int)i);
            if ((e = wire_walk(w, avro_schema_record_field_get_by_index(s, (int)i), depth + 1)) != EVENT_OK)
                return e;
        }
        return EVENT_OK;
    case AVRO_MAP:
    case AVRO_ARRAY: {
        int is_map = avro_typeof(s) == AVRO_MAP;
        avro_schema_t item = is_map ? avro_schema_map_values(s) : avro_schema_array_items(s);
        for (;;) {
            int64_t count;
            if ((e = wire_varint(w, &count, 10)) != EVENT_OK)
                return e;
            if (count == 0)
                return EVENT_OK;
            if (count < 0) {
                int64_t bytes;
                if (count == INT64_MIN) {
                    snprintf(w->err, w->errlen, "block count out of range");
                    return EVENT_ERR_MALFORMED;
                }
                count = -count;
                if ((e = wire_varint(w, &bytes, 10)) != EVENT_OK)
                    return e;
                if (bytes < 0 || bytes > w->end - w->p) {
                    snprintf(w->err, w->errlen, "block declares %lld bytes, %td remain", (long long)bytes,
                             w->end - w->p);
                    return bytes < 0 ? EVENT_ERR_MALFORMED : EVENT_ERR_TRUNCATED;
                }
            }
            /* every item of our schemas takes at least one byte */
            if (count > w->end - w->p) {
                snprintf(w->err, w->errlen, "block declares %lld items, %td bytes remain", (long long)count,
                         w->end - w->p);
                return EVENT_ERR_TRUNCATED;
            }
            for (int64_t i = 0; i < count; i++) {
                if (is_map) {
                    if ((e = wire_varint(w, &n, 10)) != EVENT_OK || (e = wire_skip(w, n, "map key")) != EVENT_OK)
                        return e;
                    /* avro-c hands map keys over as C strings: a NUL inside would silently cut the key */
                    const uint8_t *key = w->p - n;
                    if (n && memchr(key, '\0', (size_t)n)) {
                        snprintf(w->err, w->errlen, "a key of %s contains a NUL byte", w->field ? w->field : "a map");
                        return EVENT_ERR_BAD_STRING;
                    }
                    w->map_items++;
                }
                if ((e = wire_walk(w, item, depth + 1)) != EVENT_OK)
                    return e;
            }
        }
    }
    case AVRO_LINK:
        return wire_walk(w, avro_schema_link_target(s), depth + 1);
    default:
        snprintf(w->err, w->errlen, "unsupported schema type");
        return EVENT_ERR_MALFORMED;
    }
}

/* codec_check_wire, also counting the map entries on the wire. */
static event_err check_wire(codec *c, codec_schema s, const void *data, size_t len, size_t *map_items, char *err,
                            size_t errlen)
{
    if (len > c->max_message_bytes) {
        snprintf(err, errlen, "message is %zu bytes, the limit is %zu", len, c->max_message_bytes);
        return EVENT_ERR_TOO_LARGE;
    }
    wire w = {.p = data, .end = (const uint8_t *)data + len, .err = err, .errlen = errlen};
    event_err e = wire_walk(&w, c->schema[s], 0);
    if (e == EVENT_OK && w.p != w.end) {
        snprintf(err, errlen, "%td trailing bytes after the record", w.end - w.p);
        return EVENT_ERR_MALFORMED;
    }
    *map_items = w.map_items;
    return e;
}

event_err codec_check_wire(codec *c, codec_schema s, const void *data, size_t len, char *err, size_t errlen)
{
    size_t map_items;
    return check_wire(c, s, data, len, &map_items, err, errlen);
}

/* ---- decode ---------------------------------------------------------------- */

typedef struct rd {
    avro_value_t *rec;
    char *err;
    size_t errlen;
} rd;

static event_err get_str(rd *r, avro_value_t *v, const char *field, char *dst, size_t cap)
{
    const char *p;
    size_t size;
    if (avro_value_get_string(v, &p, &size) != 0) {
        snprintf(r->err, r->errlen, "%s: %s", field, avro_strerror());
        return EVENT_ERR_MALFORMED;
    }
    return event_copy_str(dst, cap, p, size ? size - 1 : 0, field, r->err, r->errlen);
}

static event_err field_str(rd *r, avro_value_t *rec, int idx, const char *field, char *dst, size_t cap)
{
    avro_value_t v;
    avro_value_get_by_index(rec, idx, &v, NULL);
    return get_str(r, &v, field, dst, cap);
}

static event_err field_nullable_str(rd *r, avro_value_t *rec, int idx, const char *field, bool *has, char *dst,
                                    size_t cap)
{
    avro_value_t u, branch;
    int disc = -1;
    avro_value_get_by_index(rec, idx, &u, NULL);
    avro_value_get_discriminant(&u, &disc);
    *has = disc == 1;
    if (!*has) {
        dst[0] = '\0';
        return EVENT_OK;
    }
    avro_value_get_current_branch(&u, &branch);
    return get_str(r, &branch, field, dst, cap);
}

static int64_t field_long(avro_value_t *rec, int idx)
{
    avro_value_t v;
    int64_t x = 0;
    avro_value_get_by_index(rec, idx, &v, NULL);
    avro_value_get_long(&v, &x);
    return x;
}

static event_err customer_id_str(rd *r, avro_value_t *rec, int idx, char *dst)
{
    event_err e = field_str(r, rec, idx, "customer_id", dst, EVENT_ID_MAX + 1);
    if (e == EVENT_ERR_FIELD_TOO_LONG)
        return EVENT_ERR_CUSTOMER_ID_TOO_LONG;
    if (e == EVENT_ERR_BAD_STRING)
        return EVENT_ERR_CUSTOMER_ID_CHARS;
    return e;
}

#define TRY(x)                                                                                                    \
    do {                                                                                                          \
        event_err e_ = (x);                                                                                       \
        if (e_ != EVENT_OK)                                                                                       \
            return e_;                                                                                            \
    } while (0)

static event_err decode_payload(rd *r, touchpoint *ev, avro_value_t *u)
{
    int disc = -1;
    avro_value_t p;
    avro_value_get_discriminant(u, &disc);
    if (disc != payload_branch[ev->type]) {
        snprintf(r->err, r->errlen, "type %s carries payload branch %d, expected %d", event_type_name(ev->type), disc,
                 payload_branch[ev->type]);
        return EVENT_ERR_PAYLOAD_MISMATCH;
    }
    if (disc == 0)
        return EVENT_OK;
    avro_value_get_current_branch(u, &p);
    switch (ev->type) {
    case EVENT_SIGNUP:
        return field_nullable_str(r, &p, 0, "referred_by", &ev->payload.signup.has_referred_by,
                                  ev->payload.signup.referred_by, sizeof(ev->payload.signup.referred_by));
    case EVENT_PROFILE_UPDATE: {
        avro_value_t v;
        avro_value_get_by_index(&p, 0, &v, NULL);
        avro_value_get_double(&v, &ev->payload.profile_update.completeness);
        return EVENT_OK;
    }
    case EVENT_APP_USE: {
        avro_value_t v;
        avro_value_get_by_index(&p, 0, &v, NULL);
        avro_value_get_int(&v, &ev->payload.app_use.session_seconds);
        return field_nullable_str(r, &p, 1, "feature", &ev->payload.app_use.has_feature, ev->payload.app_use.feature,
                                  sizeof(ev->payload.app_use.feature));
    }
    case EVENT_SOCIAL_SHARE:
        TRY(field_str(r, &p, 0, "network", ev->payload.social_share.network, sizeof(ev->payload.social_share.network)));
        return field_nullable_str(r, &p, 1, "content_id", &ev->payload.social_share.has_content_id,
                                  ev->payload.social_share.content_id, sizeof(ev->payload.social_share.content_id));
    case EVENT_REFERRAL:
        return field_nullable_str(r, &p, 0, "invitee_id", &ev->payload.referral.has_invitee_id,
                                  ev->payload.referral.invitee_id, sizeof(ev->payload.referral.invitee_id));
    case EVENT_PURCHASE:
        TRY(field_str(r, &p, 0, "order_id", ev->payload.purchase.order_id, sizeof(ev->payload.purchase.order_id)));
        ev->payload.purchase.amount_cents = field_long(&p, 1);
        TRY(field_str(r, &p, 2, "currency", ev->payload.purchase.currency, sizeof(ev->payload.purchase.currency)));
        return field_nullable_str(r, &p, 3, "store_id", &ev->payload.purchase.has_store_id,
                                  ev->payload.purchase.store_id, sizeof(ev->payload.purchase.store_id));
    case EVENT_REFUND:
        TRY(field_str(r, &p, 0, "order_id", ev->payload.refund.order_id, sizeof(ev->payload.refund.order_id)));
        ev->payload.refund.amount_cents = field_long(&p, 1);
        return EVENT_OK;
    case EVENT_REDEMPTION:
        TRY(field_str(r, &p, 0, "redemption_id", ev->payload.redemption.redemption_id,
                      sizeof(ev->payload.redemption.redemption_id)));
        TRY(field_str(r, &p, 1, "reward_code", ev->payload.redemption.reward_code,
                      sizeof(ev->payload.redemption.reward_code)));
        ev->payload.redemption.cost_points = field_long(&p, 2);
        return EVENT_OK;
    default:
        return EVENT_ERR_UNKNOWN_TYPE;
    }
}

static event_err decode_touchpoint(rd *r, touchpoint *ev)
{
    avro_value_t *rec = r->rec, v;
    int sym = 0;
    touchpoint_clear(ev);
    TRY(field_str(r, rec, TP_EVENT_ID, "event_id", ev->event_id, sizeof(ev->event_id)));
    TRY(customer_id_str(r, rec, TP_CUSTOMER_ID, ev->customer_id));
    avro_value_get_by_index(rec, TP_TYPE, &v, NULL);
    avro_value_get_enum(&v, &sym);
    ev->type = (event_type)sym;
    TRY(field_str(r, rec, TP_CHANNEL, "channel", ev->channel, sizeof(ev->channel)));
    ev->occurred_at = field_long(rec, TP_OCCURRED_AT);
    avro_value_get_by_index(rec, TP_PAYLOAD, &v, NULL);
    TRY(decode_payload(r, ev, &v));
    avro_value_get_by_index(rec, TP_ATTRIBUTES, &v, NULL);
    size_t n = 0;
    avro_value_get_size(&v, &n);
    for (size_t i = 0; i < n; i++) {
        avro_value_t item;
        const char *key = "", *val = "";
        size_t vsize = 0;
        avro_value_get_by_index(&v, i, &item, &key);
        avro_value_get_string(&item, &val, &vsize);
        /* a NUL inside a key was refused by the wire check (avro-c cuts keys there) */
        if (vsize && memchr(val, '\0', vsize - 1)) {
            snprintf(r->err, r->errlen, "attribute '%s' holds a NUL byte", key);
            return EVENT_ERR_BAD_STRING;
        }
        TRY(touchpoint_add_attr(ev, key, strlen(key), val, vsize ? vsize - 1 : 0));
    }
    return EVENT_OK;
}

static event_err decode_reward(rd *r, reward_event *ev)
{
    avro_value_t *rec = r->rec, v;
    int sym = 0;
    memset(ev, 0, sizeof(*ev));
    TRY(field_str(r, rec, RW_REWARD_ID, "reward_id", ev->reward_id, sizeof(ev->reward_id)));
    TRY(customer_id_str(r, rec, RW_CUSTOMER_ID, ev->customer_id));
    avro_value_get_by_index(rec, RW_KIND, &v, NULL);
    avro_value_get_enum(&v, &sym);
    ev->kind = (reward_kind)sym;
    TRY(field_str(r, rec, RW_RULE_ID, "rule_id", ev->rule_id, sizeof(ev->rule_id)));
    ev->points = field_long(rec, RW_POINTS);
    ev->balance_after = field_long(rec, RW_BALANCE_AFTER);
    TRY(field_str(r, rec, RW_SOURCE_EVENT_ID, "source_event_id", ev->source_event_id, sizeof(ev->source_event_id)));
    ev->occurred_at = field_long(rec, RW_OCCURRED_AT);
    TRY(field_str(r, rec, RW_REASON, "reason", ev->reason, sizeof(ev->reason)));
    TRY(field_str(r, rec, RW_PROGRAM_VERSION, "program_version", ev->program_version, sizeof(ev->program_version)));
    return field_str(r, rec, RW_PROGRAM_DIGEST, "program_digest", ev->program_digest, sizeof(ev->program_digest));
}

static event_err decode_stage(rd *r, stage_change_event *ev)
{
    avro_value_t *rec = r->rec;
    memset(ev, 0, sizeof(*ev));
    TRY(field_str(r, rec, SC_CHANGE_ID, "change_id", ev->change_id, sizeof(ev->change_id)));
    TRY(customer_id_str(r, rec, SC_CUSTOMER_ID, ev->customer_id));
    TRY(field_str(r, rec, SC_LADDER, "ladder", ev->ladder, sizeof(ev->ladder)));
    TRY(field_nullable_str(r, rec, SC_FROM_STAGE, "from_stage", &ev->has_from_stage, ev->from_stage,
                           sizeof(ev->from_stage)));
    TRY(field_str(r, rec, SC_TO_STAGE, "to_stage", ev->to_stage, sizeof(ev->to_stage)));
    TRY(field_str(r, rec, SC_SOURCE_EVENT_ID, "source_event_id", ev->source_event_id, sizeof(ev->source_event_id)));
    ev->occurred_at = field_long(rec, SC_OCCURRED_AT);
    TRY(field_str(r, rec, SC_PROGRAM_VERSION, "program_version", ev->program_version, sizeof(ev->program_version)));
    return field_str(r, rec, SC_PROGRAM_DIGEST, "program_digest", ev->program_digest, sizeof(ev->program_digest));
}

static event_err decode_credit(rd *r, credit_event *ev)
{
    avro_value_t *rec = r->rec, v;
    int b = 0;
    memset(ev, 0, sizeof(*ev));
    TRY(field_str(r, rec, CR_CREDIT_ID, "credit_id", ev->credit_id, sizeof(ev->credit_id)));
    TRY(customer_id_str(r, rec, CR_CUSTOMER_ID, ev->customer_id));
    TRY(field_str(r, rec, CR_SOURCE_CUSTOMER_ID, "source_customer_id", ev->source_customer_id,
                  sizeof(ev->source_customer_id)));
    TRY(field_str(r, rec, CR_RULE_ID, "rule_id", ev->rule_id, sizeof(ev->rule_id)));
    ev->points = field_long(rec, CR_POINTS);
    avro_value_get_by_index(rec, CR_REFERRAL, &v, NULL);
    avro_value_get_boolean(&v, &b);
    ev->referral = b != 0;
    TRY(field_str(r, rec, CR_SOURCE_EVENT_ID, "source_event_id", ev->source_event_id, sizeof(ev->source_event_id)));
    ev->occurred_at = field_long(rec, CR_OCCURRED_AT);
    TRY(field_str(r, rec, CR_REASON, "reason", ev->reason, sizeof(ev->reason)));
    TRY(field_str(r, rec, CR_PROGRAM_VERSION, "program_version", ev->program_version, sizeof(ev->program_version)));
    TRY(field_str(r, rec, CR_NAMESPACE, "namespace", ev->ns, sizeof(ev->ns)));
    return field_str(r, rec, CR_SIGNATURE, "signature", ev->signature, sizeof(ev->signature));
}

event_err codec_decode_avro(codec *c, codec_schema s, const void *data, size_t len, codec_record *rec,
                            char *err, size_t errlen)
{
    size_t map_items = 0;
    event_err e = check_wire(c, s, data, len, &map_items, err, errlen);
    if (e != EVENT_OK)
        return e;
    avro_value_t *v = &c->value[s];
    avro_value_reset(v);
    avro_reader_memory_set_source(c->reader, data, (int64_t)len);
    if (avro_value_read(c->reader, v) != 0) {
        snprintf(err, errlen, "avro: %s", avro_strerror());
        return EVENT_ERR_MALFORMED;
    }
    rd r = {.rec = v, .err = err, .errlen = errlen};
    rec->schema = s;
    switch (s) {
    case SCHEMA_TOUCHPOINT:
        e = decode_touchpoint(&r, &rec->tp);
        /* avro-c keeps one entry per key: a repeated key would silently drop a value */
        if (e == EVENT_OK && rec->tp.attr_count != map_items) {
            snprintf(err, errlen, "attributes repeat a key (%zu on the wire, %zu distinct)", map_items,
                     rec->tp.attr_count);
            return EVENT_ERR_MALFORMED;
        }
        return e;
    case SCHEMA_REWARD: return decode_reward(&r, &rec->reward);
    case SCHEMA_STAGE_CHANGE: return decode_stage(&r, &rec->stage);
    case SCHEMA_CREDIT: return decode_credit(&r, &rec->credit);
    default: return EVENT_ERR_MALFORMED;
    }
}

/* ---- encode ---------------------------------------------------------------- */

static int set_str(avro_value_t *rec, int idx, const char *s)
{
    avro_value_t v;
    return avro_value_get_by_index(rec, idx, &v, NULL) || avro_value_set_string_len(&v, s, strlen(s) + 1);
}

static int set_nullable_str(avro_value_t *rec, int idx, bool has, const char *s)
{
    avro_value_t u, b;
    if (avro_value_get_by_index(rec, idx, &u, NULL) || avro_value_set_branch(&u, has ? 1 : 0, &b))
        return -1;
    return has ? avro_value_set_string_len(&b, s, strlen(s) + 1) : avro_value_set_null(&b);
}

static int set_long(avro_value_t *rec, int idx, int64_t x)
{
    avro_value_t v;
    return avro_value_get_by_index(rec, idx, &v, NULL) || avro_value_set_long(&v, x);
}

static int set_enum(avro_value_t *rec, int idx, int sym)
{
    avro_value_t v;
    return avro_value_get_by_index(rec, idx, &v, NULL) || avro_value_set_enum(&v, sym);
}

static int encode_payload(const touchpoint *ev, avro_value_t *rec)
{
    avro_value_t u, p, v;
    if ((unsigned)ev->type >= EVENT_TYPE_COUNT || avro_value_get_by_index(rec, TP_PAYLOAD, &u, NULL) ||
        avro_value_set_branch(&u, payload_branch[ev->type], &p))
        return -1;
    switch (ev->type) {
    case EVENT_NEWSLETTER_OPT_IN:
        return avro_value_set_null(&p);
    case EVENT_SIGNUP:
        return set_nullable_str(&p, 0, ev->payload.signup.has_referred_by, ev->payload.signup.referred_by);
    case EVENT_PROFILE_UPDATE:
        return avro_value_get_by_index(&p, 0, &v, NULL) ||
               avro_value_set_double(&v, ev->payload.profile_update.completeness);
    case EVENT_APP_USE:
        return avro_value_get_by_index(&p, 0, &v, NULL) || avro_value_set_int(&v, ev->payload.app_use.session_seconds) ||
               set_nullable_str(&p, 1, ev->payload.app_use.has_feature, ev->payload.app_use.feature);
    case EVENT_SOCIAL_SHARE:
        return set_str(&p, 0, ev->payload.social_share.network) ||
               set_nullable_str(&p, 1, ev->payload.social_share.has_content_id, ev->payload.social_share.content_id);
    case EVENT_REFERRAL:
        return set_nullable_str(&p, 0, ev->payload.referral.has_invitee_id, ev->payload.referral.invitee_id);
    case EVENT_PURCHASE:
        return set_str(&p, 0, ev->payload.purchase.order_id) || set_long(&p, 1, ev->payload.purchase.amount_cents) ||
               set_str(&p, 2, ev->payload.purchase.currency) ||
               set_nullable_str(&p, 3, ev->payload.purchase.has_store_id, ev->payload.purchase.store_id);
    case EVENT_REFUND:
        return set_str(&p, 0, ev->payload.refund.order_id) || set_long(&p, 1, ev->payload.refund.amount_cents);
    case EVENT_REDEMPTION:
        return set_str(&p, 0, ev->payload.redemption.redemption_id) ||
               set_str(&p, 1, ev->payload.redemption.reward_code) ||
               set_long(&p, 2, ev->payload.redemption.cost_points);
    default:
        return -1;
    }
}

static int encode_touchpoint(const touchpoint *ev, avro_value_t *rec)
{
    avro_value_t m, item;
    if (set_str(rec, TP_EVENT_ID, ev->event_id) || set_str(rec, TP_CUSTOMER_ID, ev->customer_id) ||
        set_enum(rec, TP_TYPE, ev->type) || set_str(rec, TP_CHANNEL, ev->channel) ||
        set_long(rec, TP_OCCURRED_AT, ev->occurred_at) || encode_payload(ev, rec) ||
        avro_value_get_by_index(rec, TP_ATTRIBUTES, &m, NULL))
        return -1;
    for (size_t i = 0; i < ev->attr_count; i++)
        if (avro_value_add(&m, ev->attrs[i].key, &item, NULL, NULL) ||
            avro_value_set_string_len(&item, ev->attrs[i].value, strlen(ev->attrs[i].value) + 1))
            return -1;
    return 0;
}

static int encode_reward(const reward_event *ev, avro_value_t *rec)
{
    return set_str(rec, RW_REWARD_ID, ev->reward_id) || set_str(rec, RW_CUSTOMER_ID, ev->customer_id) ||
           set_enum(rec, RW_KIND, ev->kind) || set_str(rec, RW_RULE_ID, ev->rule_id) ||
           set_long(rec, RW_POINTS, ev->points) || set_long(rec, RW_BALANCE_AFTER, ev->balance_after) ||
           set_str(rec, RW_SOURCE_EVENT_ID, ev->source_event_id) || set_long(rec, RW_OCCURRED_AT, ev->occurred_at) ||
           set_str(rec, RW_REASON, ev->reason) || set_str(rec, RW_PROGRAM_VERSION, ev->program_version) ||
           set_str(rec, RW_PROGRAM_DIGEST, ev->program_digest);
}

static int encode_stage(const stage_change_event *ev, avro_value_t *rec)
{
    return set_str(rec, SC_CHANGE_ID, ev->change_id) || set_str(rec, SC_CUSTOMER_ID, ev->customer_id) ||
           set_str(rec, SC_LADDER, ev->ladder) || set_nullable_str(rec, SC_FROM_STAGE, ev->has_from_stage, ev->from_stage) ||
           set_str(rec, SC_TO_STAGE, ev->to_stage) || set_str(rec, SC_SOURCE_EVENT_ID, ev->source_event_id) ||
           set_long(rec, SC_OCCURRED_AT, ev->occurred_at) || set_str(rec, SC_PROGRAM_VERSION, ev->program_version) ||
           set_str(rec, SC_PROGRAM_DIGEST, ev->program_digest);
}

static int encode_credit(const credit_event *ev, avro_value_t *rec)
{
    avro_value_t v;
    return set_str(rec, CR_CREDIT_ID, ev->credit_id) || set_str(rec, CR_CUSTOMER_ID, ev->customer_id) ||
           set_str(rec, CR_SOURCE_CUSTOMER_ID, ev->source_customer_id) || set_str(rec, CR_RULE_ID, ev->rule_id) ||
           set_long(rec, CR_POINTS, ev->points) || avro_value_get_by_index(rec, CR_REFERRAL, &v, NULL) ||
           avro_value_set_boolean(&v, ev->referral) || set_str(rec, CR_SOURCE_EVENT_ID, ev->source_event_id) ||
           set_long(rec, CR_OCCURRED_AT, ev->occurred_at) || set_str(rec, CR_REASON, ev->reason) ||
           set_str(rec, CR_PROGRAM_VERSION, ev->program_version) || set_str(rec, CR_NAMESPACE, ev->ns) ||
           set_str(rec, CR_SIGNATURE, ev->signature);
}

event_err codec_encode_avro(codec *c, codec_schema s, const codec_record *rec, buf *out, char *err, size_t errlen)
{
    avro_value_t *v = &c->value[s];
    int rc;
    avro_value_reset(v);
    switch (s) {
    case SCHEMA_TOUCHPOINT: rc = encode_touchpoint(&rec->tp, v); break;
    case SCHEMA_REWARD: rc = encode_reward(&rec->reward, v); break;
    case SCHEMA_STAGE_CHANGE: rc = encode_stage(&rec->stage, v); break;
    case SCHEMA_CREDIT: rc = encode_credit(&rec->credit, v); break;
    default: rc = -1;
    }
    if (rc != 0) {
        snprintf(err, errlen, "avro encode: %s", avro_strerror());
        return EVENT_ERR_MALFORMED;
    }
    /* Write into the room the buffer has (an output is a few hundred bytes):
     * only a record that does not fit is measured (avro_value_sizeof walks
     * the whole value) and written again. */
    buf_reset(out);
    if (buf_reserve(out, 1024) != 0) {
        snprintf(err, errlen, "out of memory");
        return EVENT_ERR_NO_MEMORY;
    }
    avro_writer_memory_set_dest(c->writer, out->data, (int64_t)(out->cap - 1));
    if (avro_value_write(c->writer, v) == 0) {
        out->len = (size_t)avro_writer_tell(c->writer);
        out->data[out->len] = '\0';
        return EVENT_OK;
    }
    size_t size = 0;
    if (avro_value_sizeof(v, &size) != 0) {
        snprintf(err, errlen, "avro encode: %s", avro_strerror());
        return EVENT_ERR_MALFORMED;
    }
    if (buf_reserve(out, size) != 0) {
        snprintf(err, errlen, "out of memory");
        return EVENT_ERR_NO_MEMORY;
    }
    avro_writer_memory_set_dest(c->writer, out->data, (int64_t)size);
    if (avro_value_write(c->writer, v) != 0) {
        snprintf(err, errlen, "avro write: %s", avro_strerror());
        return EVENT_ERR_MALFORMED;
    }
    out->len = size;
    out->data[size] = '\0';
    return EVENT_OK;
}

const char *codec_record_key(const codec_record *rec)
{
    switch (rec->schema) {
    case SCHEMA_TOUCHPOINT: return rec->tp.customer_id;
    case SCHEMA_REWARD: return rec->reward.customer_id;
    case SCHEMA_STAGE_CHANGE: return rec->stage.customer_id;
    case SCHEMA_CREDIT: return rec->credit.customer_id;
    default: return "";
    }
}

void codec_record_free(codec_record *rec) { touchpoint_free(&rec->tp); }
