/* profile.c - profile lifecycle, binary encoding and JSON view. */
#include "profile.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"
#include "varint.h"

void profile_init(profile *p, const char *customer_id)
{
    memset(p, 0, sizeof(*p));
    size_t n = strnlen(customer_id, sizeof(p->customer_id) - 1); /* as snprintf "%s" would cut it */
    memcpy(p->customer_id, customer_id, n);
    memset(p->stage, -1, sizeof(p->stage));
}

void profile_free(profile *p)
{
    free(p->orders);
    p->orders = NULL;
    p->norders = p->orders_cap = 0;
    free(p->parked);
    p->parked = NULL;
    p->nparked = p->parked_cap = 0;
}

int profile_copy(profile *dst, const profile *src)
{
    order_record *orders = NULL;
    parked_credit *parked = NULL;
    if (src->norders) {
        orders = malloc((size_t)src->norders * sizeof(*orders));
        if (!orders)
            return -1;
        memcpy(orders, src->orders, (size_t)src->norders * sizeof(*orders));
    }
    if (src->nparked) {
        parked = malloc((size_t)src->nparked * sizeof(*parked));
        if (!parked) {
            free(orders);
            return -1;
        }
        memcpy(parked, src->parked, (size_t)src->nparked * sizeof(*parked));
    }
    free(dst->orders);
    free(dst->parked);
    *dst = *src;
    dst->orders = orders;
    dst->orders_cap = src->norders;
    dst->parked = parked;
    dst->parked_cap = src->nparked;
    return 0;
}

int64_t profile_parked_points(const profile *p)
{
    int64_t sum = 0; /* at most 31 x EVENT_MAX_POINTS + EVENT_MAX_TOTAL (profile_decode checks): no overflow */
    for (int i = 0; i < p->nparked; i++)
        sum += p->parked[i].points;
    return sum;
}

/* ---- encoding: zig-zag varints, length-prefixed strings, little-endian doubles ---- */

/* The encoder writes through a local cursor w (room up to end, the
 * terminator's byte kept apart), growing out only when a field may not fit:
 * a profile is encoded per applied event, and a buffer call per field was a
 * tenth of fidelio's CPU. */

/* Grow out for n more bytes after cursor w; the new cursor, NULL when
 * memory runs out. */
static uint8_t *grow(buf *out, uint8_t *w, size_t n)
{
    out->len = (size_t)(w - (uint8_t *)out->data);
    if (buf_reserve(out, n) != 0)
        return NULL;
    return (uint8_t *)out->data + out->len;
}


static inline uint8_t *w_bytes(uint8_t *w, const void *s, size_t n)
{
    w = varint_put(w, (int64_t)n);
    memcpy(w, s, n);
    return w + n;
}

static inline uint8_t *w_double(uint8_t *w, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    for (int i = 0; i < 8; i++)
        *w++ = (uint8_t)(u >> (8 * i));
    return w;
}

/* Make room for n bytes at the cursor (a varint takes at most 10). */
#define ROOM(n)                                                                                                        \
    do {                                                                                                               \
        size_t need_ = (n);                                                                                            \
        if ((size_t)(end - w) < need_) {                                                                               \
            if (!(w = grow(out, w, need_)))                                                                            \
                return -1;                                                                                             \
            end = (uint8_t *)out->data + out->cap - 1;                                                                 \
        }                                                                                                              \
    } while (0)
#define PUT_VARINT(v)                                                                                                  \
    do {                                                                                                               \
        ROOM(10);                                                                                                      \
        w = varint_put(w, (v));                                                                                          \
    } while (0)
#define PUT_STR(s)                                                                                                     \
    do {                                                                                                               \
        const char *s_ = (s);                                                                                          \
        size_t n_ = strlen(s_);                                                                                        \
        ROOM(n_ + 10);                                                                                                 \
        w = w_bytes(w, s_, n_);                                                                                        \
    } while (0)

/* Order record flags of encoding version 4: which fields follow because they
 * differ from the previous order's (the first order's "previous" is a rule
 * id "", a currency "", rates 0). */
#define ORDER_RULE 1
#define ORDER_CURRENCY 2
#define ORDER_RATE 4
#define ORDER_MULTIPLIER 8

int profile_encode(const profile *p, const program *prog, buf *out)
{
    /* room for the fixed part at once (strings and records grow it as they come) */
    if (buf_reserve(out, 512 + 64 * (size_t)(p->norders + prog->nrules)) != 0)
        return -1;
    uint8_t *w = (uint8_t *)out->data + out->len, *end = (uint8_t *)out->data + out->cap - 1;
    ROOM(2);
    *w++ = 'F';
    *w++ = 'P';
    PUT_VARINT(PROFILE_ENCODING_VERSION); /* no customer id since version 4: the key names it */
    PUT_VARINT(p->first_event_at);
    PUT_VARINT(p->last_event_at);
    PUT_VARINT(p->events);
    PUT_VARINT(EVENT_TYPE_COUNT);
    for (int i = 0; i < EVENT_TYPE_COUNT; i++)
        PUT_VARINT(p->count[i]);
    PUT_VARINT(p->purchase_cents);
    PUT_VARINT(p->refunded_cents);
    PUT_VARINT((p->signed_up ? 1 : 0) | (p->has_referred_by ? 2 : 0));
    PUT_STR(p->referred_by);
    PUT_VARINT(p->referrals_converted);
    PUT_VARINT(p->balance);
    PUT_VARINT(p->lifetime_earned);
    PUT_VARINT(p->redeemed);
    PUT_VARINT(p->reversed);
    ROOM(8 * QUADRANT_COUNT);
    for (int q = 0; q < QUADRANT_COUNT; q++)
        w = w_double(w, p->score[q]);
    PUT_VARINT(p->scores_at);
    int nstages = 0;
    for (int l = 0; l < prog->nladders; l++)
        nstages += p->stage[l] >= 0;
    PUT_VARINT(nstages);
    for (int l = 0; l < prog->nladders; l++)
        if (p->stage[l] >= 0) {
            PUT_STR(prog->ladders[l].id);
            PUT_STR(prog->ladders[l].stages[p->stage[l]].name);
        }
    int nrules = 0;
    for (int r = 0; r < prog->nrules; r++)
        nrules += p->rules[r].fired || p->rules[r].count;
    PUT_VARINT(nrules);
    for (int r = 0; r < prog->nrules; r++) {
        const rule_state *s = &p->rules[r];
        if (s->fired || s->count) {
            PUT_STR(prog->rules[r].id);
            ROOM(40);
            w = varint_put(w, prog->rules[r].window);
            w = varint_put(w, s->window);
            w = varint_put(w, s->count);
            w = varint_put(w, s->fired);
        }
    }
    /* each order: its id, a flags byte, amount, refunded, its time as the
     * difference from the previous order's (wrapping: any two times), then
     * only what differs from the previous order (ORDER_*) */
    PUT_VARINT(p->norders);
    int prev_rule = -1;
    const char *prev_currency = "";
    int64_t prev_rate = 0, prev_mult = 0, prev_at = 0;
    for (int i = 0; i < p->norders; i++) {
        const order_record *o = &p->orders[i];
        int rule = o->rule >= 0 && o->rule < prog->nrules ? o->rule : -1;
        int flags = (rule != prev_rule ? ORDER_RULE : 0) | (strcmp(o->currency, prev_currency) ? ORDER_CURRENCY : 0) |
                    (o->rate_bp != prev_rate ? ORDER_RATE : 0) | (o->multiplier_bp != prev_mult ? ORDER_MULTIPLIER : 0);
        PUT_STR(o->order_id);
        ROOM(51);
        *w++ = (uint8_t)flags;
        w = varint_put(w, o->amount_cents);
        w = varint_put(w, o->refunded_cents);
        w = varint_put(w, (int64_t)((uint64_t)o->at - (uint64_t)prev_at));
        if (flags & ORDER_RATE)
            w = varint_put(w, o->rate_bp);
        if (flags & ORDER_MULTIPLIER)
            w = varint_put(w, o->multiplier_bp);
        if (flags & ORDER_RULE)
            PUT_STR(rule >= 0 ? prog->rules[rule].id : "");
        if (flags & ORDER_CURRENCY)
            PUT_STR(o->currency);
        prev_rule = rule;
        prev_currency = o->currency;
        prev_rate = o->rate_bp;
        prev_mult = o->multiplier_bp;
        prev_at = o->at;
    }
    PUT_VARINT(p->nparked);
    for (int i = 0; i < p->nparked; i++) {
        const parked_credit *c = &p->parked[i];
        PUT_STR(c->credit_id);
        PUT_STR(c->rule_id);
        PUT_STR(c->source_event_id);
        PUT_STR(c->reason);
        PUT_STR(c->program_version);
        ROOM(30);
        w = varint_put(w, c->points);
        w = varint_put(w, c->occurred_at);
        w = varint_put(w, c->referrals);
    }
    out->len = (size_t)(w - (uint8_t *)out->data);
    out->data[out->len] = '\0';
    return 0;
}
#undef ROOM
#undef PUT_VARINT
#undef PUT_STR

typedef struct reader {
    const uint8_t *p, *end;
    int bad;
} reader;

/* A long at r->p; 0 with r->bad set when it is truncated or longer than 10 bytes. */
static int64_t get_varint(reader *r)
{
    int64_t v;
    if (varint_get(&r->p, r->end, VARINT_MAX, &v) != VARINT_OK) {
        r->bad = 1;
        return 0;
    }
    return v;
}

/* Read a string into dst (cap bytes); NULL-safe on errors. */
static void get_str(reader *r, char *dst, size_t cap)
{
    int64_t n = get_varint(r);
    if (r->bad || n < 0 || n >= (int64_t)cap || n > r->end - r->p || (n && memchr(r->p, 0, (size_t)n))) {
        r->bad = 1;
        dst[0] = '\0';
        return;
    }
    memcpy(dst, r->p, (size_t)n);
    dst[n] = '\0';
    r->p += n;
}

/* The head of an encoding: "FP", its version (*version), then, before version
 * 4, the customer id, skipped (the key names it). 0, -1 when data is not a
 * profile encoding, -2 when this build does not read its version. */
static int read_head(reader *r, size_t len, int64_t *version)
{
    *version = 0;
    if (len < 2 || memcmp(r->p, "FP", 2) != 0)
        return -1;
    r->p += 2;
    *version = get_varint(r);
    if (*version < 1 || *version > PROFILE_ENCODING_VERSION)
        return -2;
    if (*version < 4) {
        char id[EVENT_ID_MAX + 1];
        get_str(r, id, sizeof(id));
    }
    return 0;
}

static double get_double(reader *r)
{
    if (r->end - r->p < 8) {
        r->bad = 1;
        return 0;
    }
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* The first value of a decoded profile outside what the engine can produce
 * (the limits of event.h), or NULL: the engine's checked arithmetic relies
 * on them, so a corrupt profile is refused instead of computed with. */
static const char *profile_out_of_range(const profile *p)
{
    if (p->events < 0 || p->referrals_converted < 0)
        return "a counter";
    for (int i = 0; i < EVENT_TYPE_COUNT; i++)
        if (p->count[i] < 0)
            return "a counter";
    if (p->purchase_cents < 0 || p->purchase_cents > EVENT_MAX_TOTAL || p->refunded_cents < 0 ||
        p->refunded_cents > EVENT_MAX_TOTAL)
        return "purchase_cents or refunded_cents";
    if (p->balance < -EVENT_MAX_TOTAL || p->balance > EVENT_MAX_TOTAL)
        return "balance";
    if (p->lifetime_earned < 0 || p->lifetime_earned > EVENT_MAX_TOTAL || p->redeemed < 0 ||
        p->redeemed > EVENT_MAX_TOTAL || p->reversed < 0 || p->reversed > EVENT_MAX_TOTAL)
        return "lifetime_earned, redeemed or reversed";
    for (int r = 0; r < PROGRAM_MAX_RULES; r++)
        if (p->rules[r].count < 0 || p->rules[r].fired < 0)
            return "a rule's limit state";
    for (int i = 0; i < p->norders; i++) {
        const order_record *o = &p->orders[i];
        if (o->amount_cents < 0 || o->amount_cents > EVENT_MAX_AMOUNT_CENTS || o->refunded_cents < 0 ||
            o->refunded_cents > o->amount_cents || o->rate_bp < 0 || o->rate_bp > PROFILE_MAX_BP ||
            o->multiplier_bp < 0 || o->multiplier_bp > PROFILE_MAX_BP)
            return "an order record";
    }
    return NULL;
}

/* The referrer a stored profile names (profile.h), read without decoding the rest. */
int profile_peek_referrer(const void *data, size_t len, char *out, size_t outlen)
{
    reader r = {.p = data, .end = (const uint8_t *)data + len};
    char id[EVENT_ID_MAX + 1];
    int64_t version;
    if (read_head(&r, len, &version) != 0)
        return -1;
    for (int i = 0; i < 3; i++) /* first_event_at, last_event_at, events */
        get_varint(&r);
    int64_t ntypes = get_varint(&r);
    if (ntypes != EVENT_TYPE_COUNT)
        return -1;
    for (int i = 0; i < EVENT_TYPE_COUNT + 2; i++) /* counts, purchase_cents, refunded_cents */
        get_varint(&r);
    int64_t flags = get_varint(&r);
    get_str(&r, id, sizeof(id));
    if (r.bad)
        return -1;
    if (!(flags & 2))
        return 0;
    snprintf(out, outlen, "%s", id);
    return 1;
}

/* program_rule_index, trying first the rule after the one found last (*next):
 * a profile's rule states are stored in the program's order, and its orders
 * mostly name one rule. Rule ids are unique in a program (program.c), so the
 * answer is program_rule_index's. */
static int rule_index(const program *prog, const char *id, int *next)
{
    for (int k = *next; k < prog->nrules && k <= *next + 1; k++)
        if (!strcmp(prog->rules[k].id, id)) {
            *next = k;
            return k;
        }
    int i = program_rule_index(prog, id);
    if (i >= 0)
        *next = i;
    return i;
}

int profile_decode(profile *p, const program *prog, const char *customer_id, const void *data, size_t len, char *err,
                   size_t errlen)
{
    reader r = {.p = data, .end = (const uint8_t *)data + len};
    char id[EVENT_ID_MAX + 1], name[EVENT_ID_MAX + 1], prev_id[EVENT_ID_MAX + 1] = "";
    int hint = 0; /* (rule_index) */
    profile_init(p, customer_id); /* (an encoding before version 4 stored the same id: skipped) */
    int64_t version;
    int head = read_head(&r, len, &version);
    if (head == -1) {
        snprintf(err, errlen, "not a profile encoding");
        return -1;
    }
    if (head != 0) {
        snprintf(err, errlen, "profile encoding version %lld, this build reads 1 to %d", (long long)version,
                 PROFILE_ENCODING_VERSION);
        return -1;
    }
    p->first_event_at = get_varint(&r);
    p->last_event_at = get_varint(&r);
    p->events = get_varint(&r);
    int64_t ntypes = get_varint(&r);
    if (ntypes != EVENT_TYPE_COUNT)
        r.bad = 1;
    for (int i = 0; i < EVENT_TYPE_COUNT && !r.bad; i++)
        p->count[i] = get_varint(&r);
    p->purchase_cents = get_varint(&r);
    p->refunded_cents = get_varint(&r);
    int64_t flags = get_varint(&r);
    p->signed_up = flags & 1;
    p->has_referred_by = (flags & 2) != 0;
    get_str(&r, p->referred_by, sizeof(p->referred_by));
    p->referrals_converted = get_varint(&r);
    p->balance = get_varint(&r);
    p->lifetime_earned = get_varint(&r);
    p->redeemed = get_varint(&r);
    p->reversed = get_varint(&r);
    for (int q = 0; q < QUADRANT_COUNT; q++)
        p->score[q] = get_double(&r);
    p->scores_at = get_varint(&r);
    int64_t n = get_varint(&r);
    if (n < 0 || n > 1000)
        r.bad = 1;
    for (int64_t i = 0; i < n && !r.bad; i++) {
        get_str(&r, id, sizeof(id));
        get_str(&r, name, sizeof(name));
        int l = program_ladder_index(prog, id);
        if (l >= 0) /* a renamed stage reads as its new name; one the program no longer has leaves the ladder
                       unset (run and check refuse such a program unless it retires the stage) */
            p->stage[l] = (int8_t)program_stage_lookup(&prog->ladders[l], name);
    }
    n = get_varint(&r);
    if (n < 0 || n > 1000)
        r.bad = 1;
    for (int64_t i = 0; i < n && !r.bad; i++) {
        get_str(&r, id, sizeof(id));
        int64_t window_kind = get_varint(&r);
        rule_state s = {.window = get_varint(&r)};
        s.count = (int32_t)get_varint(&r);
        s.fired = (int32_t)get_varint(&r);
        int ri = rule_index(prog, id, &hint);
        if (ri >= 0) {
            /* a window of another kind means nothing now: keep only the total */
            if (window_kind != prog->rules[ri].window) {
                s.window = 0;
                s.count = 0;
            }
            p->rules[ri] = s;
        }
    }
    n = get_varint(&r);
    if (n < 0 || n > 1000000 || n > r.end - r.p)
        r.bad = 1;
    if (!r.bad && n > 0) {
        p->orders = malloc((size_t)n * sizeof(*p->orders));
        if (!p->orders) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        p->orders_cap = (int32_t)n;
    }
    int64_t prev_at = 0;
    for (int64_t i = 0; i < n && !r.bad; i++) {
        order_record *o = &p->orders[p->norders];
        get_str(&r, o->order_id, sizeof(o->order_id));
        int flags = ORDER_RULE | ORDER_CURRENCY | ORDER_RATE | ORDER_MULTIPLIER;
        if (version >= 4) { /* profile_encode: what is not there is the previous order's */
            if (r.p >= r.end || (*r.p & ~(ORDER_RULE | ORDER_CURRENCY | ORDER_RATE | ORDER_MULTIPLIER))) {
                r.bad = 1;
                break;
            }
            flags = *r.p++;
        }
        o->amount_cents = get_varint(&r);
        o->refunded_cents = get_varint(&r);
        o->at = get_varint(&r);
        if (version >= 4)
            o->at = (int64_t)((uint64_t)o->at + (uint64_t)prev_at);
        prev_at = o->at;
        o->rate_bp = flags & ORDER_RATE ? get_varint(&r) : i ? o[-1].rate_bp : 0;
        o->multiplier_bp = flags & ORDER_MULTIPLIER ? get_varint(&r) : i ? o[-1].multiplier_bp : 0;
        if (flags & ORDER_RULE) {
            get_str(&r, prev_id, sizeof(prev_id));
            o->rule = (int16_t)rule_index(prog, prev_id, &hint);
        } else {
            o->rule = i ? o[-1].rule : -1; /* the first order's "previous" rule id is "" */
        }
        o->currency[0] = '\0';
        if (version >= 3 && (flags & ORDER_CURRENCY))
            get_str(&r, o->currency, sizeof(o->currency));
        else if (version >= 3 && i)
            memcpy(o->currency, o[-1].currency, sizeof(o->currency));
        p->norders++;
    }
    if (version >= 2 && !r.bad) {
        n = get_varint(&r);
        if (n < (version == 2 ? 1 : 0) || n > PROFILE_MAX_PARKED)
            r.bad = 1;
        if (!r.bad && n > 0) {
            p->parked = calloc((size_t)n, sizeof(*p->parked));
            if (!p->parked) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            p->parked_cap = (int32_t)n;
        }
        for (int64_t i = 0; i < n && !r.bad; i++) {
            parked_credit *c = &p->parked[p->nparked];
            get_str(&r, c->credit_id, sizeof(c->credit_id));
            get_str(&r, c->rule_id, sizeof(c->rule_id));
            get_str(&r, c->source_event_id, sizeof(c->source_event_id));
            get_str(&r, c->reason, sizeof(c->reason));
            get_str(&r, c->program_version, sizeof(c->program_version));
            c->points = get_varint(&r);
            c->occurred_at = get_varint(&r);
            c->referrals = get_varint(&r);
            if (c->referrals < 0)
                r.bad = 1;
            /* the last entry may hold credits merged past PROFILE_MAX_PARKED */
            if (c->points < 1 || c->points > (i == PROFILE_MAX_PARKED - 1 ? EVENT_MAX_TOTAL : EVENT_MAX_POINTS))
                r.bad = 1;
            p->nparked++;
        }
    }
    if (!r.bad && r.p != r.end)
        r.bad = 1;
    if (r.bad) {
        snprintf(err, errlen, "profile encoding is truncated or corrupt");
        return -1;
    }
    const char *what = profile_out_of_range(p);
    if (what) {
        snprintf(err, errlen, "profile encoding is corrupt: %s is out of range", what);
        return -1;
    }
    return 0;
}

int profile_stage_refs(const void *data, size_t len, buf *out)
{
    reader r = {.p = data, .end = (const uint8_t *)data + len};
    char s1[EVENT_ID_MAX + 1], s2[EVENT_ID_MAX + 1];
    int64_t version;
    if (read_head(&r, len, &version) != 0) /* the stages come before what later versions added */
        return -1;
    for (int i = 0; i < 3; i++) /* first_event_at, last_event_at, events */
        get_varint(&r);
    int64_t ntypes = get_varint(&r);
    if (ntypes != EVENT_TYPE_COUNT)
        return -1;
    for (int i = 0; i < EVENT_TYPE_COUNT + 3; i++) /* counts, purchase_cents, refunded_cents, flags */
        get_varint(&r);
    get_str(&r, s1, sizeof(s1)); /* referred_by */
    for (int i = 0; i < 5; i++)  /* referrals_converted, balance, lifetime_earned, redeemed, reversed */
        get_varint(&r);
    for (int q = 0; q < QUADRANT_COUNT; q++)
        get_double(&r);
    get_varint(&r); /* scores_at */
    int64_t n = get_varint(&r);
    if (r.bad || n < 0 || n > 1000)
        return -1;
    for (int64_t i = 0; i < n; i++) {
        get_str(&r, s1, sizeof(s1));
        get_str(&r, s2, sizeof(s2));
        if (r.bad)
            return -1;
        if (buf_printf(out, "%s:%s\n", s1, s2) != 0)
            return -2;
    }
    return 0;
}

const char *profile_persona(const profile *p)
{
    int best = -1;
    for (int q = 0; q < QUADRANT_COUNT; q++)
        if (p->score[q] > 0 && (best < 0 || p->score[q] > p->score[best]))
            best = q;
    return best < 0 ? NULL : quadrant_name((quadrant)best);
}

static json_t *time_or_null(int64_t ms)
{
    char iso[40];
    if (!ms)
        return json_null();
    time_format_iso8601(ms, iso, sizeof(iso));
    return json_string(iso);
}

json_t *profile_json(const profile *p, const program *prog)
{
    json_t *o = json_object(), *counts = json_object(), *stages = json_object(), *scores = json_object();
    int bad = !o || !counts || !stages || !scores;
    if (bad) {
        json_decref(o);
        json_decref(counts);
        json_decref(stages);
        json_decref(scores);
        return NULL;
    }
    bad |= json_object_set_new(o, "customer_id", json_string(p->customer_id));
    bad |= json_object_set_new(o, "balance", json_integer(p->balance));
    bad |= json_object_set_new(o, "lifetime_earned", json_integer(p->lifetime_earned));
    bad |= json_object_set_new(o, "redeemed", json_integer(p->redeemed));
    bad |= json_object_set_new(o, "reversed", json_integer(p->reversed));
    bad |= json_object_set_new(o, "parked_points", json_integer(profile_parked_points(p)));
    bad |= json_object_set_new(o, "parked_credits", json_integer(p->nparked));
    int tier = prog->tier_ladder;
    bad |= json_object_set_new(o, "tier", tier >= 0 && p->stage[tier] >= 0
                                              ? json_string(prog->ladders[tier].stages[p->stage[tier]].name)
                                              : json_null());
    for (int l = 0; l < prog->nladders; l++)
        bad |= json_object_set_new(stages, prog->ladders[l].id,
                                   p->stage[l] >= 0 ? json_string(prog->ladders[l].stages[p->stage[l]].name)
                                                    : json_null());
    bad |= json_object_set_new(o, "stages", stages);
    const char *persona = profile_persona(p);
    bad |= json_object_set_new(o, "persona", persona ? json_string(persona) : json_null());
    for (int q = 0; q < QUADRANT_COUNT; q++)
        bad |= json_object_set_new(scores, quadrant_name((quadrant)q), json_real(p->score[q]));
    bad |= json_object_set_new(scores, "as_of", time_or_null(p->scores_at));
    bad |= json_object_set_new(o, "scores", scores);
    bad |= json_object_set_new(o, "events", json_integer(p->events));
    for (int t = 0; t < EVENT_TYPE_COUNT; t++)
        bad |= json_object_set_new(counts, event_type_name((event_type)t), json_integer(p->count[t]));
    bad |= json_object_set_new(o, "counts", counts);
    bad |= json_object_set_new(o, "purchase_cents", json_integer(p->purchase_cents));
    bad |= json_object_set_new(o, "refunded_cents", json_integer(p->refunded_cents));
    bad |= json_object_set_new(o, "signed_up", json_boolean(p->signed_up));
    bad |= json_object_set_new(o, "referred_by", p->has_referred_by ? json_string(p->referred_by) : json_null());
    bad |= json_object_set_new(o, "referrals_converted", json_integer(p->referrals_converted));
    bad |= json_object_set_new(o, "orders_on_record", json_integer(p->norders));
    bad |= json_object_set_new(o, "first_event_at", time_or_null(p->first_event_at));
    bad |= json_object_set_new(o, "last_event_at", time_or_null(p->last_event_at));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int profile_to_json(const profile *p, const program *prog, buf *out)
{
    json_t *o = profile_json(p, prog);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12)) : NULL;
    json_decref(o);
    if (!text)
        return -1;
    int rc = buf_puts(out, text);
    free(text);
    return rc;
}
