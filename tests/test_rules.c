/* Rules: table-driven scenarios. Each tests/scenarios/NAME.json gives events
 * and what must come out:
 *
 *   "rules_yaml":     optional rule program text (default: the built-in program)
 *   "events":         touchpoints as JSON; defaults: event_id NAME-<i>,
 *                     customer_id "c1", channel "web"
 *   "rewards":        every reward, in order: [customer, rule, kind, points, balance_after]
 *   "stage_ladders":  optional: compare only stage changes of these ladders
 *   "stage_changes":  optional: every such change, in order: [customer, ladder, from, to]
 *   "refused":        optional: [event index, engine status] of events the engine refuses
 *   "profiles":       optional: {customer: {dotted.path: value}} against `fidelio profile` JSON
 *
 * The harness runs the same in-memory runner as `fidelio simulate`. */
#include <glob.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "codec.h"
#include "profile.h"
#include "sim.h"
#include "test_common.h"

static glob_t files;

typedef struct collected {
    json_t *rewards;   /* [customer, rule, kind, points, balance_after] */
    json_t *stages;    /* [customer, ladder, from, to] */
} collected;

static void collect(void *opaque, const codec_record *rec)
{
    collected *c = opaque;
    if (rec->schema == SCHEMA_REWARD) {
        const reward_event *r = &rec->reward;
        json_array_append_new(c->rewards, json_pack("[s s s I I]", r->customer_id, r->rule_id,
                                                     reward_kind_name(r->kind), (json_int_t)r->points,
                                                     (json_int_t)r->balance_after));
    } else {
        const stage_change_event *s = &rec->stage;
        json_array_append_new(c->stages, json_pack("[s s o s]", s->customer_id, s->ladder,
                                                   s->has_from_stage ? json_string(s->from_stage) : json_null(),
                                                   s->to_stage));
    }
}

/* Value at a dotted path ("stages.tier") of obj, or NULL. */
static json_t *at_path(json_t *obj, const char *path)
{
    char key[128];
    const char *dot;
    while ((dot = strchr(path, '.')) && obj) {
        snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
        obj = json_object_get(obj, key);
        path = dot + 1;
    }
    return obj ? json_object_get(obj, path) : NULL;
}

static int same_value(json_t *want, json_t *got)
{
    if (json_is_number(want) && json_is_number(got))
        return fabs(json_number_value(want) - json_number_value(got)) <= 1e-9 * fmax(1, fabs(json_number_value(want)));
    return json_equal(want, got);
}

static char *dump(json_t *j) { return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY); }

START_TEST(scenario)
{
    const char *path = files.gl_pathv[_i];
    const char *name = strrchr(path, '/') + 1;
    json_error_t jerr;
    json_t *sc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    ck_assert_msg(sc != NULL, "%s:%d: %s", path, jerr.line, jerr.text);
    char err[1024];
    program prog;
    json_t *yaml = json_object_get(sc, "rules_yaml");
    int rc = yaml ? program_load_text(&prog, name, json_string_value(yaml), err, sizeof(err))
                  : program_load(&prog, NULL, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s: %s", name, err);
    sim *s = sim_new(&prog);
    codec_record *rec = calloc(1, sizeof(*rec));
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_nonnull(rec);
    collected got = {json_array(), json_array()};
    json_t *refused = json_array();
    json_t *events = json_object_get(sc, "events");
    ck_assert_msg(json_is_array(events), "%s: no events", name);
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev) {
        char id[64];
        snprintf(id, sizeof(id), "%.*s-%zu", (int)(strlen(name) - 5), name, i);
        if (!json_object_get(ev, "event_id"))
            json_object_set_new(ev, "event_id", json_string(id));
        if (!json_object_get(ev, "customer_id"))
            json_object_set_new(ev, "customer_id", json_string("c1"));
        if (!json_object_get(ev, "channel"))
            json_object_set_new(ev, "channel", json_string("web"));
        char *text = dump(ev);
        event_err e = codec_decode_json(SCHEMA_TOUCHPOINT, text, strlen(text), rec, err, sizeof(err));
        if (e == EVENT_OK)
            e = touchpoint_validate(&rec->tp, NULL, 0, err, sizeof(err));
        ck_assert_msg(e == EVENT_OK, "%s: event %zu invalid (%s): %s: %s", name, i, event_err_name(e), err, text);
        free(text);
        engine_status st = sim_apply(s, &rec->tp, collect, &got, err, sizeof(err));
        if (st != ENGINE_OK)
            json_array_append_new(refused, json_pack("[I s]", (json_int_t)i, engine_status_name(st)));
    }
    json_t *want = json_object_get(sc, "rewards");
    ck_assert_msg(json_is_array(want), "%s: 'rewards' is required", name);
    if (!json_equal(want, got.rewards)) {
        char *w = dump(want), *g = dump(got.rewards);
        ck_abort_msg("%s: rewards differ\n want %s\n got  %s", name, w, g);
    }
    json_t *wr = json_object_get(sc, "refused"), *none = json_array();
    int refused_ok = json_equal(wr ? wr : none, refused);
    json_decref(none);
    if (!refused_ok) {
        char *g = dump(refused);
        ck_abort_msg("%s: refused events differ: got %s", name, g);
    }
    json_t *ws = json_object_get(sc, "stage_changes");
    if (ws) {
        json_t *ladders = json_object_get(sc, "stage_ladders"), *filtered = json_array(), *item;
        size_t k;
        json_array_foreach(got.stages, k, item) {
            size_t m;
            json_t *l;
            int keep = !ladders;
            json_array_foreach(ladders, m, l) keep |= json_equal(l, json_array_get(item, 1));
            if (keep)
                json_array_append(filtered, item);
        }
        if (!json_equal(ws, filtered)) {
            char *w = dump(ws), *g = dump(filtered);
            ck_abort_msg("%s: stage changes differ\n want %s\n got  %s", name, w, g);
        }
        json_decref(filtered);
    }
    json_t *wp = json_object_get(sc, "profiles");
    const char *cust;
    json_t *fields;
    json_object_foreach(wp, cust, fields) {
        const profile *p = sim_profile(s, cust);
        ck_assert_msg(p != NULL, "%s: no profile for %s", name, cust);
        buf b = {0};
        ck_assert_int_eq(profile_to_json(p, &prog, &b), 0);
        json_t *pj = json_loads(b.data, 0, NULL);
        const char *field;
        json_t *wantv;
        json_object_foreach(fields, field, wantv) {
            json_t *gotv = at_path(pj, field);
            if (!gotv || !same_value(wantv, gotv)) {
                char *w = dump(wantv), *g = gotv ? dump(gotv) : strdup("(absent)");
                ck_abort_msg("%s: profile %s: %s is %s, want %s", name, cust, field, g, w);
            }
        }
        /* the stored form decodes to the same profile */
        buf enc = {0};
        profile back;
        ck_assert_int_eq(profile_encode(p, &prog, &enc), 0);
        ck_assert_msg(profile_decode(&back, &prog, p->customer_id, enc.data, enc.len, err, sizeof(err)) == 0, "%s", err);
        buf again = {0};
        ck_assert_int_eq(profile_encode(&back, &prog, &again), 0);
        ck_assert_msg(enc.len == again.len && memcmp(enc.data, again.data, enc.len) == 0,
                      "%s: profile %s does not survive encode/decode", name, cust);
        profile_free(&back);
        buf_free(&enc);
        buf_free(&again);
        buf_free(&b);
        json_decref(pj);
    }
    json_decref(got.rewards);
    json_decref(got.stages);
    json_decref(refused);
    json_decref(sc);
    codec_record_free(rec);
    free(rec);
    sim_free(s);
    program_free(&prog);
}
END_TEST

/* The stored profile encoding is a format (store.h): the same profile must
 * keep its bytes from build to build, or every customer's next apply would
 * rewrite it for nothing and `replay` would not reproduce a stored namespace
 * byte for byte. Bytes pinned from the encoder of version 4: a profile with
 * every section (orders, a parked credit, stages, rule states, scores) and a
 * plain one; the bytes of versions 1 to 3 (7b29908's encoder) still decode. */
static void hex_of(const buf *b, char *out)
{
    for (size_t i = 0; i < b->len; i++)
        snprintf(out + 2 * i, 3, "%02x", (unsigned char)b->data[i]);
}

/* A purchase reward's reason is what the printf formats made of it before
 * (rules.c writes it by hand): "%s %s: %s at %s: %lld points", the money as
 * "%s%lld.%02lld%s%s" and the multiplier as "x%lld.%02lld", for amounts of
 * one to many digits, with and without a currency, short and long ids. */
START_TEST(reward_reasons_are_printf_formats)
{
    static program prog;
    static engine_output out;
    char err[512], money[256], mult[32], want[EVENT_TEXT_MAX + 1];
    ck_assert_int_eq(program_load(&prog, NULL, err, sizeof(err)), 0);
    int tier = program_ladder_index(&prog, "tier");
    ck_assert_int_ge(tier, 0);
    static const int64_t amounts[] = {1, 5, 9, 10, 99, 100, 101, 250, 1999, 100000, 123456789, INT64_C(900719925474099)};
    char long_id[EVENT_ID_MAX + 1], long_cur[EVENT_ID_MAX + 1];
    memset(long_id, 'o', EVENT_ID_MAX);
    long_id[EVENT_ID_MAX] = '\0';
    memset(long_cur, 'C', EVENT_ID_MAX);
    long_cur[EVENT_ID_MAX] = '\0';
    const char *ids[] = {"o-1", long_id}, *curs[] = {"EUR", "", long_cur};
    int checked = 0;
    for (size_t a = 0; a < sizeof(amounts) / sizeof(amounts[0]); a++)
        for (int i = 0; i < 2; i++)
            for (int cu = 0; cu < 3; cu++)
                for (int st = 0; st < prog.ladders[tier].nstages; st++) {
                    profile p;
                    profile_init(&p, "c1");
                    p.signed_up = true;
                    p.count[EVENT_PURCHASE] = 5; /* not a first purchase */
                    p.stage[tier] = (int8_t)st;
                    touchpoint ev;
                    memset(&ev, 0, sizeof(ev));
                    snprintf(ev.event_id, sizeof(ev.event_id), "e-%zu-%d-%d-%d", a, i, cu, st);
                    snprintf(ev.customer_id, sizeof(ev.customer_id), "c1");
                    snprintf(ev.channel, sizeof(ev.channel), "web");
                    ev.type = EVENT_PURCHASE;
                    ev.occurred_at = INT64_C(1786190400000);
                    snprintf(ev.payload.purchase.order_id, sizeof(ev.payload.purchase.order_id), "%s", ids[i]);
                    snprintf(ev.payload.purchase.currency, sizeof(ev.payload.purchase.currency), "%s", curs[cu]);
                    int64_t c = ev.payload.purchase.amount_cents = amounts[a];
                    memset(&out, 0, sizeof(out));
                    engine_status e = rules_apply_event(&prog, &p, &ev, &out, err, sizeof(err));
                    ck_assert_msg(e == ENGINE_OK, "%s", err);
                    int64_t bp = prog.ladders[tier].stages[st].multiplier_bp;
                    snprintf(money, sizeof(money), "%s%lld.%02lld%s%s", c < 0 ? "-" : "", (long long)llabs(c / 100),
                             (long long)llabs(c % 100), *curs[cu] ? " " : "", curs[cu]);
                    snprintf(mult, sizeof(mult), "x%lld.%02lld", (long long)(bp / BP_ONE),
                             (long long)(bp % BP_ONE / 100));
                    for (int r = 0; r < out.nrewards; r++)
                        if (!strcmp(out.rewards[r].rule_id, "purchase")) {
                            snprintf(want, sizeof(want), "%s %s: %s at %s: %lld points", "Purchase", ids[i], money,
                                     mult, (long long)out.rewards[r].points);
                            ck_assert_str_eq(out.rewards[r].reason, want);
                            checked++;
                        }
                    profile_free(&p);
                }
    ck_assert_int_ge(checked, 100);
    /* a plain award */
    profile p;
    profile_init(&p, "c2");
    touchpoint ev;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "e-nl");
    snprintf(ev.customer_id, sizeof(ev.customer_id), "c2");
    snprintf(ev.channel, sizeof(ev.channel), "email");
    ev.type = EVENT_NEWSLETTER_OPT_IN;
    ev.occurred_at = INT64_C(1786190400000);
    memset(&out, 0, sizeof(out));
    ck_assert_int_eq(rules_apply_event(&prog, &p, &ev, &out, err, sizeof(err)), ENGINE_OK);
    ck_assert_int_ge(out.nrewards, 1);
    ck_assert_str_eq(out.rewards[0].reason, "Newsletter opt-in: 50 points");
    profile_free(&p);
    program_free(&prog);
}
END_TEST

START_TEST(profile_bytes_are_stable)
{
    static program prog;
    char err[512];
    ck_assert_int_eq(program_load(&prog, NULL, err, sizeof(err)), 0);
    profile p;
    profile_init(&p, "cust-0000042");
    p.first_event_at = INT64_C(1767225600000);
    p.last_event_at = INT64_C(1786190400000);
    p.events = 17;
    for (int i = 0; i < EVENT_TYPE_COUNT; i++)
        p.count[i] = i * 3;
    p.purchase_cents = 123456789;
    p.refunded_cents = 4500;
    p.signed_up = p.has_referred_by = true;
    snprintf(p.referred_by, sizeof(p.referred_by), "cust-0000007");
    p.referrals_converted = 2;
    p.balance = -40;
    p.lifetime_earned = 5310;
    p.redeemed = 5000;
    p.reversed = 350;
    p.score[0] = 1.5;
    p.score[QUADRANT_COUNT - 1] = 0.1;
    p.scores_at = INT64_C(1786190400000);
    for (int l = 0; l < prog.nladders; l++)
        p.stage[l] = (int8_t)(prog.ladders[l].nstages - 1);
    p.rules[0].window = 20000;
    p.rules[0].count = 1;
    p.rules[0].fired = 3;
    p.rules[prog.nrules - 1].fired = 1;
    buf plain = {0}, full = {0};
    ck_assert_int_eq(profile_encode(&p, &prog, &plain), 0);
    p.orders = calloc(2, sizeof(*p.orders));
    p.parked = calloc(1, sizeof(*p.parked));
    ck_assert(p.orders && p.parked);
    p.norders = p.orders_cap = 2;
    p.nparked = p.parked_cap = 1;
    for (int i = 0; i < 2; i++) {
        snprintf(p.orders[i].order_id, sizeof(p.orders[i].order_id), "o-%d-%s", i, i ? "long-order-id-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" : "");
        p.orders[i].amount_cents = 9999 * (i + 1);
        p.orders[i].refunded_cents = i * 100;
        p.orders[i].at = INT64_C(1786190400000) - i;
        p.orders[i].rate_bp = 10000;
        p.orders[i].multiplier_bp = 12500;
        p.orders[i].rule = (int16_t)(i ? program_rule_index(&prog, "purchase") : -1);
        snprintf(p.orders[i].currency, sizeof(p.orders[i].currency), "EUR");
    }
    parked_credit *c = &p.parked[0];
    snprintf(c->credit_id, sizeof(c->credit_id), "credit-1");
    snprintf(c->rule_id, sizeof(c->rule_id), "referral-referrer");
    snprintf(c->source_event_id, sizeof(c->source_event_id), "ev-9");
    snprintf(c->reason, sizeof(c->reason), "a friend's first purchase");
    snprintf(c->program_version, sizeof(c->program_version), "1");
    c->points = 250;
    c->occurred_at = INT64_C(1786190400000);
    c->referrals = 1;
    ck_assert_int_eq(profile_encode(&p, &prog, &full), 0);
    char *hex = malloc(2 * (plain.len + full.len) + 2);
    ck_assert_ptr_nonnull(hex);
    hex_of(&plain, hex);
    ck_assert_str_eq(hex, "46500880a0d5edee6680a8f493fc67221200060c12181e242a30aab4de75a8460618637573742d30303030303037044ffc52904ebc05000000000000f83f00000000000000009a9999999999b93f80a8f493fc6706126c6966656379636c650e6c6f79616c747914656e676167656d656e740e636974697a656e087469657208676f6c64040e77656c636f6d6500c0b80202060c72656465656d000000020000");
    hex_of(&full, hex);
    ck_assert_str_eq(hex, "46500880a0d5edee6680a8f493fc67221200060c12181e242a30aab4de75a8460618637573742d30303030303037044ffc52904ebc05000000000000f83f00000000000000009a9999999999b93f80a8f493fc6706126c6966656379636c650e6c6f79616c747914656e676167656d656e740e636974697a656e087469657208676f6c64040e77656c636f6d6500c0b80202060c72656465656d0000000204086f2d302d0e9e9c010080a8f493fc67a09c01a8c30106455552f0016f2d312d6c6f6e672d6f726465722d69642d78787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787801bcb802c8010110707572636861736502106372656469742d3122726566657272616c2d72656665727265720865762d39326120667269656e6427732066697273742070757263686173650231f40380a8f493fc6702");
    /* version 4 names no customer: the key does */
    for (size_t i = 0; i + 12 <= full.len; i++)
        ck_assert_msg(memcmp(full.data + i, "cust-0000042", 12) != 0, "the customer id is in the encoding");
    /* the bytes older encoders wrote (pinned from 7b29908's: version 1 for
     * the plain profile, 2 with the parked credit and no orders, 3 with both)
     * still decode to the same profile: re-encoded, today's bytes */
    static const struct {
        const char *hex;
        int norders;
    } older[] = {
        {"46500218637573742d3030303030343280a0d5edee6680a8f493fc67221200060c12181e242a30aab4de75a8460618637573742d30303030303037044ffc52904ebc05000000000000f83f00000000000000009a9999999999b93f80a8f493fc6706126c6966656379636c650e6c6f79616c747914656e676167656d656e740e636974697a656e087469657208676f6c64040e77656c636f6d6500c0b80202060c72656465656d0000000200",
         -1},
        {"46500418637573742d3030303030343280a0d5edee6680a8f493fc67221200060c12181e242a30aab4de75a8460618637573742d30303030303037044ffc52904ebc05000000000000f83f00000000000000009a9999999999b93f80a8f493fc6706126c6966656379636c650e6c6f79616c747914656e676167656d656e740e636974697a656e087469657208676f6c64040e77656c636f6d6500c0b80202060c72656465656d000000020002106372656469742d3122726566657272616c2d72656665727265720865762d39326120667269656e6427732066697273742070757263686173650231f40380a8f493fc6702",
         0},
        {"46500618637573742d3030303030343280a0d5edee6680a8f493fc67221200060c12181e242a30aab4de75a8460618637573742d30303030303037044ffc52904ebc05000000000000f83f00000000000000009a9999999999b93f80a8f493fc6706126c6966656379636c650e6c6f79616c747914656e676167656d656e740e636974697a656e087469657208676f6c64040e77656c636f6d6500c0b80202060c72656465656d0000000204086f2d302d9e9c010080a8f493fc67a09c01a8c3010006455552f0016f2d312d6c6f6e672d6f726465722d69642d787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878bcb802c801fea7f493fc67a09c01a8c3011070757263686173650645555202106372656469742d3122726566657272616c2d72656665727265720865762d39326120667269656e6427732066697273742070757263686173650231f40380a8f493fc6702",
         2},
    };
    for (size_t k = 0; k < sizeof(older) / sizeof(older[0]); k++) {
        size_t n = strlen(older[k].hex) / 2;
        unsigned char *bytes = malloc(n);
        ck_assert_ptr_nonnull(bytes);
        for (size_t i = 0; i < n; i++) {
            unsigned v;
            ck_assert_int_eq(sscanf(older[k].hex + 2 * i, "%2x", &v), 1);
            bytes[i] = (unsigned char)v;
        }
        ck_assert_int_eq(bytes[2], 2 * (k + 1)); /* versions 1, 2, 3 */
        profile back, want;
        profile_init(&want, "");
        ck_assert_int_eq(profile_copy(&want, &p), 0);
        if (older[k].norders < 0) { /* the plain one */
            want.norders = want.nparked = 0;
        } else {
            want.norders = older[k].norders;
        }
        ck_assert_msg(profile_decode(&back, &prog, "cust-0000042", bytes, n, err, sizeof(err)) == 0, "%s", err);
        ck_assert_str_eq(back.customer_id, "cust-0000042");
        buf a = {0}, b = {0};
        ck_assert_int_eq(profile_encode(&back, &prog, &a), 0);
        ck_assert_int_eq(profile_encode(&want, &prog, &b), 0);
        ck_assert_msg(a.len == b.len && memcmp(a.data, b.data, a.len) == 0, "version %zu bytes decode to another profile",
                      k + 1);
        buf_free(&a);
        buf_free(&b);
        profile_free(&back);
        profile_free(&want);
        free(bytes);
    }
    free(hex);
    buf_free(&plain);
    buf_free(&full);
    profile_free(&p);
    program_free(&prog);
}
END_TEST

/* Version 4 writes an order's rule, currency, rate and multiplier only when
 * they differ from the previous order's, and its time as a difference: every
 * order reads back as it was, whichever of them change from one to the next,
 * with times far apart in either direction. */
START_TEST(profile_orders_round_trip)
{
    static program prog;
    char err[512];
    ck_assert_int_eq(program_load(&prog, NULL, err, sizeof(err)), 0);
    int purchase = program_rule_index(&prog, "purchase");
    ck_assert_int_ge(purchase, 0);
    profile p, q;
    profile_init(&p, "c-9");
    enum { N = 7 };
    p.orders = calloc(N, sizeof(*p.orders));
    ck_assert_ptr_nonnull(p.orders);
    p.norders = p.orders_cap = N;
    static const struct {
        int rule; /* -1, or purchase */
        const char *currency;
        int64_t rate, mult, at;
    } o[N] = {
        {-1, "", 0, 0, 0},
        {1, "EUR", 10000, 10000, INT64_C(1786190400000)},
        {1, "EUR", 10000, 10000, INT64_C(1786190400001)},
        {1, "CHF", 10000, 12500, INT64_C(1786190300000)},
        {-1, "CHF", 20000, 12500, INT64_MAX},
        {1, "", 20000, 0, INT64_MIN},
        {1, "", 20000, 0, INT64_MIN},
    };
    for (int i = 0; i < N; i++) {
        snprintf(p.orders[i].order_id, sizeof(p.orders[i].order_id), "o-%d", i);
        p.orders[i].amount_cents = 100 * (i + 1);
        p.orders[i].refunded_cents = i;
        p.orders[i].at = o[i].at;
        p.orders[i].rate_bp = o[i].rate;
        p.orders[i].multiplier_bp = o[i].mult;
        p.orders[i].rule = (int16_t)(o[i].rule < 0 ? -1 : purchase);
        snprintf(p.orders[i].currency, sizeof(p.orders[i].currency), "%s", o[i].currency);
    }
    buf enc = {0};
    ck_assert_int_eq(profile_encode(&p, &prog, &enc), 0);
    ck_assert_msg(profile_decode(&q, &prog, "c-9", enc.data, enc.len, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(q.norders, N);
    for (int i = 0; i < N; i++) {
        const order_record *g = &q.orders[i], *w = &p.orders[i];
        ck_assert_str_eq(g->order_id, w->order_id);
        ck_assert_int_eq(g->amount_cents, w->amount_cents);
        ck_assert_int_eq(g->refunded_cents, w->refunded_cents);
        ck_assert_int_eq(g->at, w->at);
        ck_assert_int_eq(g->rate_bp, w->rate_bp);
        ck_assert_int_eq(g->multiplier_bp, w->multiplier_bp);
        ck_assert_int_eq(g->rule, w->rule);
        ck_assert_str_eq(g->currency, w->currency);
    }
    /* the repeated order (2 after 1, 6 after 5) costs its id, the flags byte
     * and three varints: no rule, currency, rate or multiplier again */
    buf one = {0};
    p.norders = 2;
    ck_assert_int_eq(profile_encode(&p, &prog, &one), 0);
    buf two = {0};
    p.norders = 3;
    ck_assert_int_eq(profile_encode(&p, &prog, &two), 0);
    ck_assert_int_eq(two.len - one.len, 1 + 3 /* "o-2" */ + 1 + 2 /* 300 */ + 1 /* 2 */ + 1 /* +1 ms */);
    p.norders = N;
    /* a flags byte with an unknown bit is refused */
    int found = 0;
    for (size_t i = 0; i + 4 <= enc.len; i++)
        if (!memcmp(enc.data + i, "\x06o-0", 4)) {
            ck_assert_int_eq(enc.data[i + 4], 0); /* the first order: all as the "previous" */
            enc.data[i + 4] = 0x10;
            profile_free(&q);
            ck_assert_int_eq(profile_decode(&q, &prog, "c-9", enc.data, enc.len, err, sizeof(err)), -1);
            found++;
        }
    ck_assert_int_eq(found, 1);
    profile_free(&q);
    buf_free(&enc);
    buf_free(&one);
    buf_free(&two);
    profile_free(&p);
    program_free(&prog);
}
END_TEST

Suite *rules_suite(void)
{
    Suite *s = suite_create("rules");
    TCase *tc = tcase_create("scenarios");
    if (glob(SOURCE_DIR "/tests/scenarios/*.json", 0, NULL, &files) != 0 || files.gl_pathc == 0) {
        fprintf(stderr, "no scenario files under %s/tests/scenarios\n", SOURCE_DIR);
        abort(); /* a suite with no scenarios must not pass */
    }
    tcase_add_loop_test(tc, scenario, 0, (int)files.gl_pathc);
    tcase_add_test(tc, profile_bytes_are_stable);
    tcase_add_test(tc, profile_orders_round_trip);
    tcase_add_test(tc, reward_reasons_are_printf_formats);
    suite_add_tcase(s, tc);
    return s;
}
