/* event.c - names, ownership and semantic validation of events. */
#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const err_names[EVENT_ERR_COUNT] = {
    [EVENT_OK] = "ok",
    [EVENT_ERR_TOO_LARGE] = "message_too_large",
    [EVENT_ERR_TRUNCATED] = "length_exceeds_message",
    [EVENT_ERR_MALFORMED] = "malformed",
    [EVENT_ERR_MISSING_FIELD] = "missing_field",
    [EVENT_ERR_BAD_FIELD] = "bad_field",
    [EVENT_ERR_EMPTY_EVENT_ID] = "empty_event_id",
    [EVENT_ERR_EMPTY_CUSTOMER_ID] = "empty_customer_id",
    [EVENT_ERR_CUSTOMER_ID_TOO_LONG] = "customer_id_too_long",
    [EVENT_ERR_CUSTOMER_ID_CHARS] = "customer_id_bad_chars",
    [EVENT_ERR_FIELD_TOO_LONG] = "field_too_long",
    [EVENT_ERR_BAD_STRING] = "bad_string",
    [EVENT_ERR_UNKNOWN_TYPE] = "unknown_type",
    [EVENT_ERR_PAYLOAD_MISMATCH] = "payload_mismatch",
    [EVENT_ERR_NEGATIVE_AMOUNT] = "negative_amount",
    [EVENT_ERR_COMPLETENESS_RANGE] = "completeness_out_of_range",
    [EVENT_ERR_BAD_CHANNEL] = "bad_channel",
    [EVENT_ERR_BAD_TIMESTAMP] = "bad_timestamp",
    [EVENT_ERR_TOO_EARLY] = "occurred_at_too_early",
    [EVENT_ERR_IN_FUTURE] = "occurred_at_in_future",
    [EVENT_ERR_AMOUNT_TOO_LARGE] = "amount_too_large",
    [EVENT_ERR_NO_MEMORY] = "no_memory",
};

static const char *const type_names[EVENT_TYPE_COUNT] = {
    "SIGNUP", "PROFILE_UPDATE", "NEWSLETTER_OPT_IN", "APP_USE", "SOCIAL_SHARE",
    "REFERRAL", "PURCHASE", "REFUND", "REDEMPTION",
};

static const char *const kind_names[REWARD_KIND_COUNT] = {"EARN", "REVERSAL", "REDEEM", "REDEEM_REJECTED"};

const char *event_err_name(event_err err)
{
    return (unsigned)err < EVENT_ERR_COUNT ? err_names[err] : "unknown_error";
}

const char *event_type_name(event_type type)
{
    return (unsigned)type < EVENT_TYPE_COUNT ? type_names[type] : "?";
}

int event_type_parse(const char *s)
{
    for (int i = 0; i < EVENT_TYPE_COUNT; i++)
        if (strcmp(s, type_names[i]) == 0)
            return i;
    return -1;
}

const char *reward_kind_name(reward_kind kind)
{
    return (unsigned)kind < REWARD_KIND_COUNT ? kind_names[kind] : "?";
}

int reward_kind_parse(const char *s)
{
    for (int i = 0; i < REWARD_KIND_COUNT; i++)
        if (strcmp(s, kind_names[i]) == 0)
            return i;
    return -1;
}

void touchpoint_clear(touchpoint *ev)
{
    for (size_t i = 0; i < ev->attr_count; i++) {
        free(ev->attrs[i].key);
        free(ev->attrs[i].value);
    }
    event_attr *attrs = ev->attrs;
    size_t cap = ev->attr_cap;
    memset(ev, 0, sizeof(*ev));
    ev->attrs = attrs;
    ev->attr_cap = cap;
}

void touchpoint_free(touchpoint *ev)
{
    touchpoint_clear(ev);
    free(ev->attrs);
    ev->attrs = NULL;
    ev->attr_cap = 0;
}

static char *dup_len(const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

event_err touchpoint_add_attr(touchpoint *ev, const char *key, size_t klen, const char *val, size_t vlen)
{
    if (ev->attr_count == ev->attr_cap) {
        size_t cap = ev->attr_cap ? ev->attr_cap * 2 : 4;
        event_attr *a = realloc(ev->attrs, cap * sizeof(*a));
        if (!a)
            return EVENT_ERR_NO_MEMORY;
        ev->attrs = a;
        ev->attr_cap = cap;
    }
    char *k = dup_len(key, klen), *v = dup_len(val, vlen);
    if (!k || !v) {
        free(k);
        free(v);
        return EVENT_ERR_NO_MEMORY;
    }
    ev->attrs[ev->attr_count].key = k;
    ev->attrs[ev->attr_count].value = v;
    ev->attr_count++;
    return EVENT_OK;
}

event_err touchpoint_copy(touchpoint *dst, const touchpoint *src)
{
    touchpoint_clear(dst);
    event_attr *attrs = dst->attrs;
    size_t cap = dst->attr_cap;
    memcpy(dst, src, sizeof(*dst));
    dst->attrs = attrs;
    dst->attr_cap = cap;
    dst->attr_count = 0;
    for (size_t i = 0; i < src->attr_count; i++) {
        event_err e = touchpoint_add_attr(dst, src->attrs[i].key, strlen(src->attrs[i].key),
                                          src->attrs[i].value, strlen(src->attrs[i].value));
        if (e != EVENT_OK)
            return e;
    }
    return EVENT_OK;
}

event_err event_copy_str(char *dst, size_t cap, const char *src, size_t len, const char *field,
                         char *err, size_t errlen)
{
    if (len >= cap) {
        snprintf(err, errlen, "%s is %zu bytes, longer than %zu", field, len, cap - 1);
        return EVENT_ERR_FIELD_TOO_LONG;
    }
    if (len && memchr(src, '\0', len)) {
        snprintf(err, errlen, "%s contains a NUL byte", field);
        return EVENT_ERR_BAD_STRING;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
    return EVENT_OK;
}

event_err event_check_customer_id(const char *id, const char *field, char *err, size_t errlen)
{
    if (!*id) {
        snprintf(err, errlen, "%s is empty", field);
        return EVENT_ERR_EMPTY_CUSTOMER_ID;
    }
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        if (*p == '{' || *p == '}' || *p < 0x20 || *p == 0x7f) {
            snprintf(err, errlen, "%s contains %s at byte %td", field,
                     (*p == '{' || *p == '}') ? "a brace" : "a control byte", (const char *)p - id);
            return EVENT_ERR_CUSTOMER_ID_CHARS;
        }
    }
    return EVENT_OK;
}

static int is_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

event_err touchpoint_validate(const touchpoint *ev, const event_limits *lim, int64_t msg_time_ms,
                              char *err, size_t errlen)
{
    if (!ev->event_id[0]) {
        snprintf(err, errlen, "event_id is empty");
        return EVENT_ERR_EMPTY_EVENT_ID;
    }
    if (!ev->customer_id[0]) {
        snprintf(err, errlen, "customer_id is empty");
        return EVENT_ERR_EMPTY_CUSTOMER_ID;
    }
    event_err ce = event_check_customer_id(ev->customer_id, "customer_id", err, errlen);
    if (ce != EVENT_OK)
        return ce;
    if (!is_token(ev->channel)) {
        snprintf(err, errlen, "channel '%s' is not a lower-case token like store, web or app", ev->channel);
        return EVENT_ERR_BAD_CHANNEL;
    }
    if (ev->occurred_at < EVENT_MIN_OCCURRED_AT) {
        snprintf(err, errlen, "occurred_at %lld is before 2000-01-01", (long long)ev->occurred_at);
        return EVENT_ERR_TOO_EARLY;
    }
    if (lim && msg_time_ms > 0 && ev->occurred_at > msg_time_ms &&
        ev->occurred_at - msg_time_ms > lim->max_clock_skew_ms) {
        snprintf(err, errlen, "occurred_at is %lld ms after the message time (allowed skew %lld ms)",
                 (long long)(ev->occurred_at - msg_time_ms), (long long)lim->max_clock_skew_ms);
        return EVENT_ERR_IN_FUTURE;
    }
    switch (ev->type) {
    case EVENT_SIGNUP:
        if (ev->payload.signup.has_referred_by) {
            if (!ev->payload.signup.referred_by[0]) {
                snprintf(err, errlen, "referred_by is empty");
                return EVENT_ERR_BAD_FIELD;
            }
            if (strcmp(ev->payload.signup.referred_by, ev->customer_id) == 0) {
                snprintf(err, errlen, "referred_by names the customer itself");
                return EVENT_ERR_BAD_FIELD;
            }
            if (event_check_customer_id(ev->payload.signup.referred_by, "referred_by", err, errlen) != EVENT_OK)
                return EVENT_ERR_BAD_FIELD;
        }
        break;
    case EVENT_PROFILE_UPDATE: {
        double c = ev->payload.profile_update.completeness;
        if (!(c >= 0.0 && c <= 1.0)) {
            snprintf(err, errlen, "completeness %g is outside [0,1]", c);
            return EVENT_ERR_COMPLETENESS_RANGE;
        }
        break;
    }
    case EVENT_APP_USE:
        if (ev->payload.app_use.session_seconds < 0) {
            snprintf(err, errlen, "session_seconds %d is negative", ev->payload.app_use.session_seconds);
            return EVENT_ERR_NEGATIVE_AMOUNT;
        }
        break;
    case EVENT_SOCIAL_SHARE:
        if (!ev->payload.social_share.network[0]) {
            snprintf(err, errlen, "network is empty");
            return EVENT_ERR_MISSING_FIELD;
        }
        break;
    case EVENT_PURCHASE:
        if (!ev->payload.purchase.order_id[0]) {
            snprintf(err, errlen, "order_id is empty");
            return EVENT_ERR_MISSING_FIELD;
        }
        if (ev->payload.purchase.amount_cents < 0) {
            snprintf(err, errlen, "amount_cents %lld is negative", (long long)ev->payload.purchase.amount_cents);
            return EVENT_ERR_NEGATIVE_AMOUNT;
        }
        if (ev->payload.purchase.amount_cents > EVENT_MAX_AMOUNT_CENTS) {
            snprintf(err, errlen, "amount_cents %lld is above the limit of %lld", (long long)ev->payload.purchase.amount_cents,
                     (long long)EVENT_MAX_AMOUNT_CENTS);
            return EVENT_ERR_AMOUNT_TOO_LARGE;
        }
        if (!ev->payload.purchase.currency[0]) {
            snprintf(err, errlen, "currency is empty");
            return EVENT_ERR_MISSING_FIELD;
        }
        break;
    case EVENT_REFUND:
        if (!ev->payload.refund.order_id[0]) {
            snprintf(err, errlen, "order_id is empty");
            return EVENT_ERR_MISSING_FIELD;
        }
        if (ev->payload.refund.amount_cents < 0) {
            snprintf(err, errlen, "amount_cents %lld is negative", (long long)ev->payload.refund.amount_cents);
            return EVENT_ERR_NEGATIVE_AMOUNT;
        }
        if (ev->payload.refund.amount_cents > EVENT_MAX_AMOUNT_CENTS) {
            snprintf(err, errlen, "amount_cents %lld is above the limit of %lld", (long long)ev->payload.refund.amount_cents,
                     (long long)EVENT_MAX_AMOUNT_CENTS);
            return EVENT_ERR_AMOUNT_TOO_LARGE;
        }
        break;
    case EVENT_REDEMPTION:
        if (!ev->payload.redemption.redemption_id[0] || !ev->payload.redemption.reward_code[0]) {
            snprintf(err, errlen, "%s is empty", ev->payload.redemption.redemption_id[0] ? "reward_code" : "redemption_id");
            return EVENT_ERR_MISSING_FIELD;
        }
        if (ev->payload.redemption.cost_points < 0) {
            snprintf(err, errlen, "cost_points %lld is negative", (long long)ev->payload.redemption.cost_points);
            return EVENT_ERR_NEGATIVE_AMOUNT;
        }
        if (ev->payload.redemption.cost_points > EVENT_MAX_POINTS) {
            snprintf(err, errlen, "cost_points %lld is above the limit of %lld",
                     (long long)ev->payload.redemption.cost_points, (long long)EVENT_MAX_POINTS);
            return EVENT_ERR_AMOUNT_TOO_LARGE;
        }
        break;
    case EVENT_NEWSLETTER_OPT_IN:
    case EVENT_REFERRAL:
        break;
    default:
        snprintf(err, errlen, "type %d is not a touchpoint type", (int)ev->type);
        return EVENT_ERR_UNKNOWN_TYPE;
    }
    return EVENT_OK;
}
