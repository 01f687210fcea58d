/* digest.c - content digests of touchpoints and credits (see digest.h). */
#include "digest.h"

#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

/* The bytes to hash, gathered in a buffer and hashed in one call
 * (XXH3_128bits), the streaming state used only when they outgrow it: the
 * same digest as streaming every field (XXH3's streaming and one-shot forms
 * agree), without the state's reset and a call per field for every event. */
typedef struct hasher {
    uint8_t b[2048];
    size_t n;              /* bytes in b */
    bool streamed;         /* st holds earlier bytes */
    XXH3_state_t st;
} hasher;

static void h_update(hasher *h, const void *p, size_t n)
{
    if (h->n + n <= sizeof(h->b)) {
        memcpy(h->b + h->n, p, n);
        h->n += n;
        return;
    }
    if (!h->streamed) {
        XXH3_INITSTATE(&h->st);
        XXH3_128bits_reset(&h->st);
        h->streamed = true;
    }
    XXH3_128bits_update(&h->st, h->b, h->n);
    h->n = 0;
    if (n > sizeof(h->b)) {
        XXH3_128bits_update(&h->st, p, n);
    } else {
        memcpy(h->b, p, n);
        h->n = n;
    }
}

static void put_bytes(hasher *st, const void *p, size_t n)
{
    uint64_t len = n;
    h_update(st, &len, sizeof(len));
    h_update(st, p, n);
}

static void put_str(hasher *st, const char *s) { put_bytes(st, s, strlen(s)); }

static void put_i64(hasher *st, int64_t v) { put_bytes(st, &v, sizeof(v)); }

/* An optional string: presence, then the value. */
static void put_opt(hasher *st, bool has, const char *s)
{
    put_i64(st, has);
    put_str(st, has ? s : "");
}

static void finish(hasher *h, uint8_t out[DIGEST_LEN])
{
    XXH128_canonical_t c;
    XXH128_hash_t d;
    if (h->streamed) {
        XXH3_128bits_update(&h->st, h->b, h->n);
        d = XXH3_128bits_digest(&h->st);
    } else {
        d = XXH3_128bits(h->b, h->n);
    }
    XXH128_canonicalFromHash(&c, d);
    memcpy(out, c.digest, DIGEST_LEN);
}

static int cmp_attr(const void *a, const void *b)
{
    return strcmp((*(const event_attr *const *)a)->key, (*(const event_attr *const *)b)->key);
}

int digest_touchpoint(const touchpoint *ev, uint8_t out[DIGEST_LEN])
{
    const event_attr **sorted = NULL;
    if (ev->attr_count) {
        sorted = malloc(ev->attr_count * sizeof(*sorted));
        if (!sorted)
            return -1;
        for (size_t i = 0; i < ev->attr_count; i++)
            sorted[i] = &ev->attrs[i];
        qsort(sorted, ev->attr_count, sizeof(*sorted), cmp_attr);
    }
    hasher st;
    st.n = 0;
    st.streamed = false;
    put_str(&st, "touchpoint/1");
    put_str(&st, ev->event_id);
    put_str(&st, ev->customer_id);
    put_i64(&st, ev->type);
    put_str(&st, ev->channel);
    put_i64(&st, ev->occurred_at);
    switch (ev->type) {
    case EVENT_SIGNUP: put_opt(&st, ev->payload.signup.has_referred_by, ev->payload.signup.referred_by); break;
    case EVENT_PROFILE_UPDATE: put_bytes(&st, &ev->payload.profile_update.completeness, sizeof(double)); break;
    case EVENT_APP_USE:
        put_i64(&st, ev->payload.app_use.session_seconds);
        put_opt(&st, ev->payload.app_use.has_feature, ev->payload.app_use.feature);
        break;
    case EVENT_SOCIAL_SHARE:
        put_str(&st, ev->payload.social_share.network);
        put_opt(&st, ev->payload.social_share.has_content_id, ev->payload.social_share.content_id);
        break;
    case EVENT_REFERRAL: put_opt(&st, ev->payload.referral.has_invitee_id, ev->payload.referral.invitee_id); break;
    case EVENT_PURCHASE:
        put_str(&st, ev->payload.purchase.order_id);
        put_i64(&st, ev->payload.purchase.amount_cents);
        put_str(&st, ev->payload.purchase.currency);
        put_opt(&st, ev->payload.purchase.has_store_id, ev->payload.purchase.store_id);
        break;
    case EVENT_REFUND:
        put_str(&st, ev->payload.refund.order_id);
        put_i64(&st, ev->payload.refund.amount_cents);
        break;
    case EVENT_REDEMPTION:
        put_str(&st, ev->payload.redemption.redemption_id);
        put_str(&st, ev->payload.redemption.reward_code);
        put_i64(&st, ev->payload.redemption.cost_points);
        break;
    case EVENT_NEWSLETTER_OPT_IN:
    case EVENT_TYPE_COUNT: break;
    }
    put_i64(&st, (int64_t)ev->attr_count);
    for (size_t i = 0; i < ev->attr_count; i++) {
        put_str(&st, sorted[i]->key);
        put_str(&st, sorted[i]->value);
    }
    free(sorted);
    finish(&st, out);
    return 0;
}

void digest_credit(const credit_event *cr, uint8_t out[DIGEST_LEN])
{
    hasher st;
    st.n = 0;
    st.streamed = false;
    put_str(&st, "credit/1");
    put_str(&st, cr->credit_id);
    put_str(&st, cr->customer_id);
    put_str(&st, cr->source_customer_id);
    put_str(&st, cr->rule_id);
    put_i64(&st, cr->points);
    put_i64(&st, cr->referral);
    put_str(&st, cr->source_event_id);
    put_i64(&st, cr->occurred_at);
    put_str(&st, cr->reason);
    put_str(&st, cr->program_version);
    put_str(&st, cr->ns);
    finish(&st, out);
}
