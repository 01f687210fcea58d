/* rules.c - the engine: counters, conditions, limits, awards, refunds,
 * redemptions, ladders and scores. Pure: knows only event.h, profile.h and
 * the program. */
#include "rules.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "buf.h"
#include "timeutil.h"

const char *engine_status_name(engine_status s)
{
    switch (s) {
    case ENGINE_OK: return "ok";
    case ENGINE_UNKNOWN_ORDER: return "unknown_order";
    case ENGINE_REFUND_EXCEEDS_ORDER: return "refund_exceeds_order";
    case ENGINE_OVERFLOW: return "total_overflow";
    case ENGINE_BAD_CREDIT: return "credit_points_out_of_range";
    case ENGINE_EVENT_ID_CONFLICT: return "event_id_conflict";
    case ENGINE_NO_MEMORY: return "no_memory";
    }
    return "?";
}

/* ---- ids ---------------------------------------------------------------------- */

static void hash_id(const char *prefix, const char *a, const char *b1, const char *b2, const char *c, char *out)
{
    /* NUL separators: ids hold no NUL, so distinct triples hash distinct inputs */
    char in[4 * (EVENT_ID_MAX + 1) + 16];
    size_t n = 0, la = strlen(a), lb1 = strlen(b1), lb2 = strlen(b2), lc = strlen(c);
    memcpy(in + n, a, la + 1);
    n += la + 1;
    memcpy(in + n, b1, lb1);
    n += lb1;
    memcpy(in + n, b2, lb2 + 1);
    n += lb2 + 1;
    memcpy(in + n, c, lc);
    n += lc;
    XXH128_hash_t h = XXH3_128bits(in, n);
    static const char hex[] = "0123456789abcdef";
    memcpy(out, prefix, 3);
    for (int i = 0; i < 16; i++) {
        out[3 + i] = hex[(h.high64 >> (60 - 4 * i)) & 0xf];
        out[19 + i] = hex[(h.low64 >> (60 - 4 * i)) & 0xf];
    }
    out[35] = '\0';
}

void rules_reward_id(const char *source_event_id, const char *rule_id, const char *customer_id, char *out)
{
    hash_id("rw-", source_event_id, "", rule_id, customer_id, out);
}

void rules_change_id(const char *source_event_id, const char *ladder_id, const char *customer_id, char *out)
{
    hash_id("sc-", source_event_id, "ladder:", ladder_id, customer_id, out);
}

/* ---- conditions ------------------------------------------------------------------- */

typedef struct ctx {
    const program *prog;
    const profile *p;
    const touchpoint *ev;  /* NULL when evaluating ladders */
} ctx;

static const char *attr(const touchpoint *ev, const char *key)
{
    for (size_t i = 0; i < ev->attr_count; i++)
        if (!strcmp(ev->attrs[i].key, key))
            return ev->attrs[i].value;
    return "";
}

static const char *opt(bool has, const char *s) { return has ? s : ""; }

/* The value of a variable node: numbers through *num, strings returned. */
static const char *var_value(const ctx *c, const expr_node *n, double *num)
{
    const profile *p = c->p;
    const touchpoint *ev = c->ev;
    switch ((program_var)n->var) {
    case VAR_EVENTS: *num = (double)p->events; return NULL;
    case VAR_SIGNED_UP: *num = p->signed_up; return NULL;
    case VAR_REFERRED: *num = p->has_referred_by; return NULL;
    case VAR_PURCHASES: *num = (double)p->count[EVENT_PURCHASE]; return NULL;
    case VAR_PURCHASE_CENTS: *num = (double)p->purchase_cents; return NULL;
    case VAR_REFUNDED_CENTS: *num = (double)p->refunded_cents; return NULL;
    case VAR_REFERRALS_SENT: *num = (double)p->count[EVENT_REFERRAL]; return NULL;
    case VAR_REFERRALS_CONVERTED: *num = (double)p->referrals_converted; return NULL;
    case VAR_BALANCE: *num = (double)p->balance; return NULL;
    case VAR_LIFETIME_EARNED: *num = (double)p->lifetime_earned; return NULL;
    case VAR_REDEEMED: *num = (double)p->redeemed; return NULL;
    case VAR_COUNT: *num = (double)p->count[n->arg]; return NULL;
    case VAR_STAGE: *num = p->stage[n->arg]; return NULL;
    case VAR_SCORE: *num = p->score[n->arg]; return NULL;
    default: break;
    }
    /* event and payload: the compiler allowed them only where ev is set and of the right type */
    switch ((program_var)n->var) {
    case VAR_CHANNEL: return ev->channel;
    case VAR_ATTRIBUTE: return attr(ev, n->str);
    case VAR_COMPLETENESS: *num = ev->payload.profile_update.completeness; return NULL;
    case VAR_SESSION_SECONDS: *num = ev->payload.app_use.session_seconds; return NULL;
    case VAR_FEATURE: return opt(ev->payload.app_use.has_feature, ev->payload.app_use.feature);
    case VAR_NETWORK: return ev->payload.social_share.network;
    case VAR_CONTENT_ID: return opt(ev->payload.social_share.has_content_id, ev->payload.social_share.content_id);
    case VAR_INVITEE_ID: return opt(ev->payload.referral.has_invitee_id, ev->payload.referral.invitee_id);
    case VAR_ORDER_ID: return ev->type == EVENT_REFUND ? ev->payload.refund.order_id : ev->payload.purchase.order_id;
    case VAR_AMOUNT_CENTS:
        *num = (double)(ev->type == EVENT_REFUND ? ev->payload.refund.amount_cents : ev->payload.purchase.amount_cents);
        return NULL;
    case VAR_CURRENCY: return ev->payload.purchase.currency;
    case VAR_STORE_ID: return opt(ev->payload.purchase.has_store_id, ev->payload.purchase.store_id);
    case VAR_REDEMPTION_ID: return ev->payload.redemption.redemption_id;
    case VAR_REWARD_CODE: return ev->payload.redemption.reward_code;
    case VAR_COST_POINTS: *num = (double)ev->payload.redemption.cost_points; return NULL;
    case VAR_REFERRED_BY: return opt(ev->payload.signup.has_referred_by, ev->payload.signup.referred_by);
    default: *num = 0; return NULL;
    }
}

static const char *value(const ctx *c, int32_t i, double *num)
{
    const expr_node *n = &c->prog->pool.nodes[i];
    if (n->kind == EX_VAR)
        return var_value(c, n, num);
    if (n->kind == EX_STR)
        return n->str;
    *num = n->num;
    return NULL;
}

static bool eval(const ctx *c, int32_t i)
{
    const expr_node *n = &c->prog->pool.nodes[i];
    switch ((expr_kind)n->kind) {
    case EX_BOOL: return n->num != 0;
    case EX_VAR: {
        double x = 0;
        var_value(c, n, &x);
        return x != 0;
    }
    case EX_NOT: return !eval(c, n->a);
    case EX_AND: return eval(c, n->a) && eval(c, n->b);
    case EX_OR: return eval(c, n->a) || eval(c, n->b);
    case EX_CMP: {
        double x = 0, y = 0;
        const char *sa = value(c, n->a, &x), *sb = value(c, n->b, &y);
        if (sa && sb) {
            int eq = strcmp(sa, sb) == 0;
            return n->op == OP_EQ ? eq : !eq;
        }
        switch ((expr_op)n->op) {
        case OP_EQ: return x == y;
        case OP_NE: return x != y;
        case OP_LT: return x < y;
        case OP_LE: return x <= y;
        case OP_GT: return x > y;
        case OP_GE: return x >= y;
        }
        return false;
    }
    default: return false;
    }
}

/* ---- arithmetic ------------------------------------------------------------------- */

/* floor(whole units of cents x rate x multiplier), exactly (cents, rates and
 * multipliers are bounded, so 128 bits cannot overflow). */
static __int128 unit_points(int64_t cents, int64_t rate_bp, int64_t mult_bp)
{
    return (__int128)(cents / 100) * rate_bp * mult_bp / ((__int128)BP_ONE * BP_ONE);
}

/* *total += v if the result stays within [-EVENT_MAX_TOTAL, EVENT_MAX_TOTAL];
 * false (and *total unchanged) otherwise. Every accumulation of the engine
 * goes through it: totals never wrap. */
static bool add_total(int64_t *total, int64_t v)
{
    int64_t r;
    if (__builtin_add_overflow(*total, v, &r) || r > EVENT_MAX_TOTAL || r < -EVENT_MAX_TOTAL)
        return false;
    *total = r;
    return true;
}

/* A counter of awards or matching events: saturates rather than wrap (limits
 * are far below INT32_MAX, so a saturated counter decides the same). */
static void count_up(int32_t *c)
{
    if (*c < INT32_MAX)
        (*c)++;
}

static int64_t tier_multiplier(const program *prog, const profile *p)
{
    if (prog->tier_ladder < 0)
        return BP_ONE;
    const ladder *l = &prog->ladders[prog->tier_ladder];
    return l->stages[p->stage[prog->tier_ladder] >= 0 ? p->stage[prog->tier_ladder] : 0].multiplier_bp;
}

static int64_t window_index(window_kind w, int64_t t)
{
    switch (w) {
    case WINDOW_DAY: return time_day_index(t);
    case WINDOW_ISO_WEEK: return time_iso_week_index(t);
    case WINDOW_MONTH: return time_month_index(t);
    default: return 0;
    }
}

/* What snprintf writes for the reasons' few conversions (%s, %lld, %02lld),
 * written by hand: a reward's reason is formatted for every award. Cut where
 * snprintf cuts (len - 1 bytes and the NUL). */
typedef struct text {
    char *p, *end;                /* the next byte, the last byte's place (its NUL) */
} text;

static text text_at(char *out, size_t len) { return (text){out, out + len - 1}; }

static void text_mem(text *t, const char *s, size_t n)
{
    size_t room = (size_t)(t->end - t->p);
    if (n > room)
        n = room;
    memcpy(t->p, s, n);
    t->p += n;
}

static void text_str(text *t, const char *s) { text_mem(t, s, strlen(s)); }

static void text_ll(text *t, long long v)
{
    char tmp[24], *d = fmt_ll(tmp, v);
    text_mem(t, d, (size_t)(tmp + sizeof(tmp) - d));
}

static void text_ll02(text *t, long long v) /* %02lld */
{
    if (v >= 0 && v < 10)
        text_mem(t, "0", 1);
    text_ll(t, v);
}

static void text_end(text *t) { *t->p = '\0'; }

/* "%s%lld.%02lld%s%s": sign, units, cents, " " and the currency if any */
static void format_money(int64_t cents, const char *currency, char *out, size_t len)
{
    text t = text_at(out, len);
    if (cents < 0)
        text_mem(&t, "-", 1);
    text_ll(&t, (long long)llabs(cents / 100));
    text_mem(&t, ".", 1);
    text_ll02(&t, (long long)llabs(cents % 100));
    if (*currency) {
        text_mem(&t, " ", 1);
        text_str(&t, currency);
    }
    text_end(&t);
}

/* "x%lld.%02lld" of a multiplier in basis points */
static void format_mult(int64_t bp, char *out, size_t len)
{
    text t = text_at(out, len);
    text_mem(&t, "x", 1);
    text_ll(&t, (long long)(bp / BP_ONE));
    text_mem(&t, ".", 1);
    text_ll02(&t, (long long)(bp % BP_ONE / 100));
    text_end(&t);
}

/* ---- outputs ---------------------------------------------------------------------- */

static reward_event *add_reward(const program *prog, profile *p, engine_output *out, const rule *r,
                                const char *source_event_id, int64_t at, reward_kind kind, int64_t points)
{
    reward_event *rw = &out->rewards[out->nrewards++];
    rules_reward_id(source_event_id, r->id, p->customer_id, rw->reward_id);
    memcpy(rw->customer_id, p->customer_id, sizeof(rw->customer_id));
    rw->kind = kind;
    str_copy(rw->rule_id, sizeof(rw->rule_id), r->id);
    rw->points = points;
    rw->balance_after = p->balance;
    str_copy(rw->source_event_id, sizeof(rw->source_event_id), source_event_id);
    rw->occurred_at = at;
    memcpy(rw->program_version, prog->version, sizeof(prog->version));
    memcpy(rw->program_digest, prog->digest, sizeof(prog->digest));
    rw->reason[0] = '\0';
    return rw;
}

static void evaluate_ladders(const program *prog, profile *p, const char *source_event_id, int64_t at,
                             engine_output *out)
{
    ctx c = {.prog = prog, .p = p, .ev = NULL};
    for (int li = 0; li < prog->nladders; li++) {
        const ladder *l = &prog->ladders[li];
        int best = -1;
        for (int s = l->nstages - 1; s >= 0 && best < 0; s--)
            if (l->stages[s].when < 0 || eval(&c, l->stages[s].when))
                best = s;
        int old = p->stage[li];
        int now = l->can_downgrade ? (best >= 0 ? best : old) : (best > old ? best : old);
        if (now == old)
            continue;
        p->stage[li] = (int8_t)now;
        stage_change_event *sc = &out->stages[out->nstages++];
        rules_change_id(source_event_id, l->id, p->customer_id, sc->change_id);
        memcpy(sc->customer_id, p->customer_id, sizeof(sc->customer_id));
        str_copy(sc->ladder, sizeof(sc->ladder), l->id);
        sc->has_from_stage = old >= 0;
        str_copy(sc->from_stage, sizeof(sc->from_stage), old >= 0 ? l->stages[old].name : "");
        str_copy(sc->to_stage, sizeof(sc->to_stage), l->stages[now].name);
        str_copy(sc->source_event_id, sizeof(sc->source_event_id), source_event_id);
        sc->occurred_at = at;
        memcpy(sc->program_version, prog->version, sizeof(prog->version));
        memcpy(sc->program_digest, prog->digest, sizeof(prog->digest));
    }
}

/* ---- the event ---------------------------------------------------------------------- */

/* Most recent record of what rule earned on an order, or NULL. */
static order_record *find_order(profile *p, const char *order_id, int rule)
{
    for (int i = p->norders - 1; i >= 0; i--)
        if (p->orders[i].rule == rule && !strcmp(p->orders[i].order_id, order_id))
            return &p->orders[i];
    return NULL;
}

/* Room for one more order record, made before anything changes so that
 * running out of memory leaves the profile as it was. */
static int reserve_order(profile *p, int n)
{
    if (p->norders + n <= p->orders_cap)
        return 0;
    int cap = p->orders_cap ? p->orders_cap * 2 : 4;
    while (cap < p->norders + n)
        cap *= 2;
    order_record *o = realloc(p->orders, (size_t)cap * sizeof(*o));
    if (!o)
        return -1;
    p->orders = o;
    p->orders_cap = cap;
    return 0;
}

/* Drop records past the program's bounds, oldest first: those older than
 * orders_max_age at the front, then all but the newest orders_max_records.
 * Run once the event is decided, so a refused event leaves the records as
 * they were. */
static void trim_orders(const program *prog, profile *p, int64_t t)
{
    int64_t horizon = t - prog->orders_max_age_ms;
    int keep_from = 0;
    while (keep_from < p->norders && p->orders[keep_from].at < horizon)
        keep_from++;
    if (p->norders - keep_from > prog->orders_max_records)
        keep_from = p->norders - prog->orders_max_records;
    if (keep_from > 0) {
        memmove(p->orders, p->orders + keep_from, (size_t)(p->norders - keep_from) * sizeof(*p->orders));
        p->norders -= keep_from;
    }
}

/* Record what an order earned (room was reserved); trim_orders bounds them. */
static void record_order(const program *prog, profile *p, const touchpoint *ev, int rule_index, int64_t mult_bp)
{
    order_record *o = &p->orders[p->norders++];
    memcpy(o->order_id, ev->payload.purchase.order_id, sizeof(o->order_id));
    o->amount_cents = ev->payload.purchase.amount_cents;
    o->refunded_cents = 0;
    o->at = ev->occurred_at;
    o->rate_bp = prog->rules[rule_index].rate_bp;
    o->multiplier_bp = mult_bp;
    o->rule = (int16_t)rule_index;
    memcpy(o->currency, ev->payload.purchase.currency, sizeof(o->currency));
}

static void decay_scores(const program *prog, profile *p, int64_t t)
{
    if (p->scores_at && t > p->scores_at && prog->half_life_ms > 0) {
        double f = exp2(-(double)(t - p->scores_at) / (double)prog->half_life_ms);
        for (int q = 0; q < QUADRANT_COUNT; q++)
            p->score[q] *= f;
    }
    /* an event older than the scores adds at full weight and does not move them back in time */
    if (t > p->scores_at)
        p->scores_at = t;
}

/* Whether rule r's limit lets it act now; updates the limit's window. */
static bool limit_allows(const rule *r, rule_state *s, int64_t t)
{
    if (r->limit == LIMIT_NONE)
        return true;
    if (r->limit == LIMIT_ONCE)
        return s->fired == 0;
    int64_t w = window_index(r->window, t);
    if (w < s->window)
        return false; /* late event: its window's count is gone */
    if (w > s->window) {
        s->window = w;
        s->count = 0;
    }
    if (r->limit == LIMIT_MAX)
        return s->count < r->max;
    count_up(&s->count); /* LIMIT_NTH counts matching events */
    return s->count == r->nth;
}

static engine_status check_refund(const program *prog, profile *p, const touchpoint *ev, char *err, size_t errlen)
{
    for (int k = 0; k < prog->nby_type[EVENT_REFUND]; k++) {
        const rule *r = &prog->rules[prog->by_type[EVENT_REFUND][k]];
        if (r->action != ACTION_REVERSE)
            continue;
        order_record *o = find_order(p, ev->payload.refund.order_id, r->reverses);
        if (!o) {
            snprintf(err, errlen, "refund of order %s, which %s has no earn record of (rule %s)",
                     ev->payload.refund.order_id, p->customer_id, r->id);
            return ENGINE_UNKNOWN_ORDER;
        }
        if (ev->payload.refund.amount_cents > o->amount_cents - o->refunded_cents) {
            snprintf(err, errlen, "refund of %lld cents on order %s, of which %lld cents remain",
                     (long long)ev->payload.refund.amount_cents, o->order_id,
                     (long long)(o->amount_cents - o->refunded_cents));
            return ENGINE_REFUND_EXCEEDS_ORDER;
        }
    }
    return ENGINE_OK;
}

/* Add a credit to the balance and lifetime with its reward (the credit id as
 * reward id). False, with nothing changed, when a total would leave its range. */
static bool credit_to_balance(const program *prog, profile *p, const parked_credit *cr, engine_output *out)
{
    int64_t balance = p->balance, lifetime = p->lifetime_earned;
    if (!add_total(&balance, cr->points) || !add_total(&lifetime, cr->points))
        return false;
    p->balance = balance;
    p->lifetime_earned = lifetime;
    if (!add_total(&p->referrals_converted, cr->referrals))
        p->referrals_converted = EVENT_MAX_TOTAL; /* a count: saturates */
    reward_event *rw = &out->rewards[out->nrewards++];
    memcpy(rw->reward_id, cr->credit_id, sizeof(rw->reward_id));
    memcpy(rw->customer_id, p->customer_id, sizeof(rw->customer_id));
    rw->kind = REWARD_EARN;
    memcpy(rw->rule_id, cr->rule_id, sizeof(rw->rule_id));
    rw->points = cr->points;
    rw->balance_after = p->balance;
    memcpy(rw->source_event_id, cr->source_event_id, sizeof(rw->source_event_id));
    rw->occurred_at = cr->occurred_at;
    memcpy(rw->reason, cr->reason, sizeof(rw->reason));
    memcpy(rw->program_version, cr->program_version, sizeof(rw->program_version));
    /* the digest of the program that decided the credit is known only if it is this one's version */
    str_copy(rw->program_digest, sizeof(rw->program_digest),
             strcmp(cr->program_version, prog->version) ? "" : prog->digest);
    return true;
}

/* What an event changed outside the profile struct itself, to undo it when the
 * event is refused half-way (the struct is restored from a copy). */
typedef struct undo_log {
    order_record *order[PROGRAM_MAX_RULES]; /* records whose refunded_cents changed */
    int64_t refunded[PROGRAM_MAX_RULES];    /* their values before */
    int n;
} undo_log;

/* Put p back as saved (orders appended since are dropped by norders), and
 * empty out. */
static void rollback(profile *p, const profile *saved, undo_log *u, engine_output *out)
{
    while (u->n > 0) {
        u->n--;
        u->order[u->n]->refunded_cents = u->refunded[u->n];
    }
    *p = *saved;
    out->nrewards = out->nstages = out->ncredits = 0;
}

engine_status rules_apply_event(const program *prog, profile *p, const touchpoint *ev, engine_output *out,
                                char *err, size_t errlen)
{
    out->nrewards = out->nstages = out->ncredits = 0;
    if (ev->type == EVENT_REFUND) {
        engine_status st = check_refund(prog, p, ev, err, errlen);
        if (st != ENGINE_OK)
            return st;
    }
    if (ev->type == EVENT_PURCHASE && reserve_order(p, prog->purchase_unit_rules) != 0) {
        snprintf(err, errlen, "out of memory");
        return ENGINE_NO_MEMORY;
    }
    /* the profile as it was: a refused event (a total out of range) restores it */
    profile saved = *p;
    undo_log undo = {.n = 0};
    const char *what = NULL; /* the total that would overflow */
    bool recorded = false;
    const int64_t t = ev->occurred_at;
    const int64_t mult = tier_multiplier(prog, p); /* the tier held before this event */
    char money[EVENT_ID_MAX + 64], m[32];

    /* the first own event releases the credits parked until now (rollback restores nparked) */
    if (p->events == 0) {
        for (int i = 0; i < p->nparked; i++)
            if (!credit_to_balance(prog, p, &p->parked[i], out)) {
                what = "the balance, with the parked credits";
                goto overflow;
            }
        p->nparked = 0;
    }

    /* counters first: conditions see them including this event */
    if (!p->events || t < p->first_event_at)
        p->first_event_at = t;
    if (t > p->last_event_at)
        p->last_event_at = t;
    if (p->events < INT64_MAX) /* counters saturate: only a corrupt stored profile could be near */
        p->events++;
    if (p->count[ev->type] < INT64_MAX)
        p->count[ev->type]++;
    switch (ev->type) {
    case EVENT_SIGNUP:
        p->signed_up = true;
        if (!p->has_referred_by && ev->payload.signup.has_referred_by) {
            p->has_referred_by = true;
            memcpy(p->referred_by, ev->payload.signup.referred_by, sizeof(p->referred_by));
        }
        break;
    case EVENT_PURCHASE:
        if (!add_total(&p->purchase_cents, ev->payload.purchase.amount_cents))
            what = "purchase_cents";
        break;
    case EVENT_REFUND:
        if (!add_total(&p->refunded_cents, ev->payload.refund.amount_cents))
            what = "refunded_cents";
        break;
    default: break;
    }
    if (what)
        goto overflow;
    decay_scores(prog, p, t);
    for (int q = 0; q < QUADRANT_COUNT; q++)
        p->score[q] += prog->weights[q][ev->type];

    ctx c = {.prog = prog, .p = p, .ev = ev};
    for (int k = 0; k < prog->nby_type[ev->type]; k++) {
        int ri = prog->by_type[ev->type][k];
        const rule *r = &prog->rules[ri];
        rule_state *s = &p->rules[ri];
        if ((r->has_from && t < r->from_ms) || (r->has_until && t >= r->until_ms))
            continue;
        if (r->when >= 0 && !eval(&c, r->when))
            continue;
        if (r->to == BENEFICIARY_REFERRER && !p->has_referred_by)
            continue;
        if (!limit_allows(r, s, t))
            continue;
        if (r->action == ACTION_REDEEM) {
            int64_t cost = ev->payload.redemption.cost_points;
            const char *code = ev->payload.redemption.reward_code, *rid = ev->payload.redemption.redemption_id;
            if (p->balance >= cost) {
                if (!add_total(&p->redeemed, cost)) {
                    what = "redeemed";
                    goto overflow;
                }
                p->balance -= cost; /* cannot overflow: 0 <= cost <= balance */
                reward_event *rw = add_reward(prog, p, out, r, ev->event_id, t, REWARD_REDEEM, -cost);
                snprintf(rw->reason, sizeof(rw->reason), "%s %s (%s): %lld points", r->description, code, rid,
                         (long long)cost);
            } else {
                reward_event *rw = add_reward(prog, p, out, r, ev->event_id, t, REWARD_REDEEM_REJECTED, 0);
                snprintf(rw->reason, sizeof(rw->reason), "%s %s (%s) rejected: balance %lld is below %lld points",
                         r->description, code, rid, (long long)p->balance, (long long)cost);
            }
            count_up(&s->fired);
            continue;
        }
        if (r->action == ACTION_REVERSE) {
            order_record *o = find_order(p, ev->payload.refund.order_id, r->reverses);
            int64_t before = o->amount_cents - o->refunded_cents;
            int64_t after = before - ev->payload.refund.amount_cents;
            __int128 back = unit_points(before, o->rate_bp, o->multiplier_bp) -
                            unit_points(after, o->rate_bp, o->multiplier_bp);
            undo.order[undo.n] = o;
            undo.refunded[undo.n++] = o->refunded_cents;
            o->refunded_cents += ev->payload.refund.amount_cents; /* <= amount_cents: check_refund */
            count_up(&s->fired);
            if (back == 0)
                continue;
            if (back > EVENT_MAX_POINTS) {
                what = "the points of one reversal";
                goto overflow;
            }
            int64_t pts = (int64_t)back;
            if (!add_total(&p->reversed, pts)) {
                what = "reversed";
                goto overflow;
            }
            if (!add_total(&p->balance, -pts)) {
                what = "balance";
                goto overflow;
            }
            reward_event *rw = add_reward(prog, p, out, r, ev->event_id, t, REWARD_REVERSAL, -pts);
            format_money(ev->payload.refund.amount_cents, o->currency, money, sizeof(money));
            format_mult(o->multiplier_bp, m, sizeof(m));
            snprintf(rw->reason, sizeof(rw->reason), "%s of %s: %s at %s as earned: -%lld points", r->description,
                     o->order_id, money, m, (long long)pts);
            continue;
        }
        /* ACTION_AWARD */
        int64_t rmult = r->tier_multiplier ? mult : BP_ONE;
        __int128 v;
        if (r->rate_bp) {
            v = unit_points(ev->payload.purchase.amount_cents, r->rate_bp, rmult);
            record_order(prog, p, ev, ri, rmult);
            recorded = true;
        } else {
            v = (__int128)r->points * rmult / BP_ONE;
        }
        if (v == 0)
            continue;
        if (v > EVENT_MAX_POINTS) {
            what = "the points of one award";
            goto overflow;
        }
        int64_t pts = (int64_t)v;
        count_up(&s->fired);
        if (r->limit == LIMIT_MAX)
            count_up(&s->count);
        if (r->to == BENEFICIARY_REFERRER) {
            credit_event *cr = &out->credits[out->ncredits++];
            rules_reward_id(ev->event_id, r->id, p->referred_by, cr->credit_id);
            memcpy(cr->customer_id, p->referred_by, sizeof(cr->customer_id));
            memcpy(cr->source_customer_id, p->customer_id, sizeof(cr->source_customer_id));
            str_copy(cr->rule_id, sizeof(cr->rule_id), r->id);
            cr->points = pts;
            cr->referral = true;
            memcpy(cr->source_event_id, ev->event_id, sizeof(cr->source_event_id));
            cr->occurred_at = t;
            snprintf(cr->reason, sizeof(cr->reason), "%s (%s): %lld points", r->description, p->customer_id,
                     (long long)pts);
            memcpy(cr->program_version, prog->version, sizeof(prog->version));
            continue;
        }
        if (!add_total(&p->lifetime_earned, pts)) {
            what = "lifetime_earned";
            goto overflow;
        }
        if (!add_total(&p->balance, pts)) {
            what = "balance";
            goto overflow;
        }
        reward_event *rw = add_reward(prog, p, out, r, ev->event_id, t, REWARD_EARN, pts);
        if (r->rate_bp || r->tier_multiplier)
            format_mult(rmult, m, sizeof(m));
        /* "%s %s: %s at %s: %lld points" (rate), "%s at %s: %lld points" (tier), "%s: %lld points" */
        text t = text_at(rw->reason, sizeof(rw->reason));
        text_str(&t, r->description);
        if (r->rate_bp) {
            format_money(ev->payload.purchase.amount_cents, ev->payload.purchase.currency, money, sizeof(money));
            text_mem(&t, " ", 1);
            text_str(&t, ev->payload.purchase.order_id);
            text_mem(&t, ": ", 2);
            text_str(&t, money);
        }
        if (r->rate_bp || r->tier_multiplier) {
            text_mem(&t, " at ", 4);
            text_str(&t, m);
        }
        text_mem(&t, ": ", 2);
        text_ll(&t, (long long)pts);
        text_mem(&t, " points", 7);
        text_end(&t);
    }
    if (recorded)
        trim_orders(prog, p, t);
    evaluate_ladders(prog, p, ev->event_id, t, out);
    return ENGINE_OK;

overflow:
    rollback(p, &saved, &undo, out);
    snprintf(err, errlen, "event %s would take %s of customer %s out of its range (limits: %lld points per award, "
             "totals within +/-%lld): refused, nothing changed",
             ev->event_id, what, p->customer_id, (long long)EVENT_MAX_POINTS, (long long)EVENT_MAX_TOTAL);
    return ENGINE_OVERFLOW;
}

engine_status rules_apply_credit(const program *prog, profile *p, const credit_event *cr, engine_output *out)
{
    out->nrewards = out->nstages = out->ncredits = 0;
    if (cr->points <= 0 || cr->points > EVENT_MAX_POINTS)
        return ENGINE_BAD_CREDIT;
    if (p->events == 0) {
        /* no own event yet: parked, not spendable (a referred_by naming nobody mints nothing) */
        if (p->nparked == PROFILE_MAX_PARKED) {
            /* full: merged into the last entry, released as one reward (nothing is lost) */
            parked_credit *last = &p->parked[p->nparked - 1];
            int64_t points = last->points;
            if (!add_total(&points, cr->points))
                return ENGINE_OVERFLOW;
            last->points = points;
            last->referrals += cr->referral ? 1 : 0;
            char reason[EVENT_TEXT_MAX + 1];
            snprintf(reason, sizeof(reason), "Credits received before the first own event, merged: %lld points",
                     (long long)points);
            memcpy(last->reason, reason, sizeof(reason));
            return ENGINE_OK;
        }
        if (p->nparked == p->parked_cap) {
            int cap = p->parked_cap ? p->parked_cap * 2 : 2;
            parked_credit *a = realloc(p->parked, (size_t)cap * sizeof(*a));
            if (!a)
                return ENGINE_NO_MEMORY;
            p->parked = a;
            p->parked_cap = cap;
        }
        parked_credit *pc = &p->parked[p->nparked++];
        memcpy(pc->credit_id, cr->credit_id, sizeof(pc->credit_id));
        memcpy(pc->rule_id, cr->rule_id, sizeof(pc->rule_id));
        memcpy(pc->source_event_id, cr->source_event_id, sizeof(pc->source_event_id));
        memcpy(pc->reason, cr->reason, sizeof(pc->reason));
        memcpy(pc->program_version, cr->program_version, sizeof(pc->program_version));
        pc->points = cr->points;
        pc->occurred_at = cr->occurred_at;
        pc->referrals = cr->referral ? 1 : 0;
        return ENGINE_OK;
    }
    parked_credit pc;
    memcpy(pc.credit_id, cr->credit_id, sizeof(pc.credit_id));
    memcpy(pc.rule_id, cr->rule_id, sizeof(pc.rule_id));
    memcpy(pc.source_event_id, cr->source_event_id, sizeof(pc.source_event_id));
    memcpy(pc.reason, cr->reason, sizeof(pc.reason));
    memcpy(pc.program_version, cr->program_version, sizeof(pc.program_version));
    pc.points = cr->points;
    pc.occurred_at = cr->occurred_at;
    pc.referrals = cr->referral ? 1 : 0;
    if (!credit_to_balance(prog, p, &pc, out))
        return ENGINE_OVERFLOW;
    evaluate_ladders(prog, p, cr->source_event_id, cr->occurred_at, out);
    return ENGINE_OK;
}
