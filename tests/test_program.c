/* Program: loading errors name the file, line and rule or ladder; the
 * default program loads; stored profiles survive corruption checks. */
#include <stdlib.h>

#include "expr.h"
#include "program.h"
#include "profile.h"
#include "rules.h"
#include "test_common.h"

static program prog;
static char err[1024];

static void teardown(void) { program_free(&prog); }

START_TEST(default_program_loads)
{
    ck_assert_msg(program_load(&prog, NULL, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(prog.nrules, 12);
    ck_assert_int_eq(prog.nladders, 3);
    ck_assert_int_ge(prog.tier_ladder, 0);
    ck_assert_str_eq(prog.ladders[prog.tier_ladder].stages[1].name, "silver");
    ck_assert_int_eq(prog.ladders[prog.tier_ladder].stages[1].multiplier_bp, 12500);
    program_free(&prog);
    /* the shipped file is the same program as the built-in one */
    ck_assert_msg(program_load(&prog, SOURCE_DIR "/config/rules.yaml", err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(prog.nrules, 12);
}
END_TEST

/* Each broken program: the error names the line and contains the text. */
START_TEST(errors_name_line_and_rule)
{
    static const struct {
        const char *yaml;
        int line;
        const char *text;
    } cases[] = {
        {"version: v\nrules:\n  - id: a\n    on: SIGNUP\n    awrd: 5\n", 5, "rule 'a': unknown key 'awrd'"},
        {"version: v\nrules:\n  - id: a\n    on: SIGNUP\n    award: 5\n    when: \"purchasez > 1\"\n", 6,
         "rule 'a': when: unknown name 'purchasez'"},
        {"version: v\nrules:\n  - id: a\n    on: SIGNUP\n    award: 5\n    when: \"amount_cents > 1\"\n", 6,
         "is a field of PURCHASE events, and this rule is on SIGNUP"},
        {"version: v\nrules:\n  - id: a\n    on: PURCHASE\n    award: 5\n    when: \"channel > 1\"\n", 6,
         "different kinds"},
        {"version: v\nrules:\n  - id: a\n    on: PURCHASE\n    award: 5\n    when: \"purchases >= 1 and\"\n", 6,
         "unexpected end"},
        {"version: v\nrules:\n  - id: a\n    on: PURCHASE\n    award: 5\n    when: \"purchases\"\n", 6,
         "must be true or false"},
        {"version: v\nrules:\n  - id: a\n    on: SIGNUP\n    award: 5\n  - id: a\n    on: SIGNUP\n    award: 5\n", 6,
         "rule 'a': rule id is declared twice"},
        {"version: v\nrules:\n  - id: a\n    on: SIGNUP\n    award: 5\n  - id: b\n    on: REFUND\n    reverse: a\n", 8,
         "rule 'b': reverse: 'a' is not a per_unit PURCHASE rule"},
        {"version: v\nrules:\n  - id: a\n    on: SIGNUP\n    award: 5\n    limit: {max: 2}\n", 6,
         "limit takes per and one of max or nth"},
        {"version: v\nrules:\n  - id: a\n    on: SIGNUP\n    award: 5\n    limit: {max: 2, per: fortnight}\n", 6,
         "per must be day, iso_week or month"},
        {"version: v\nladders:\n  - id: tier\n    stages:\n      - {name: bronze, multiplier: 1}\n      - {name: "
         "silver, multiplier: 1.5, when: \"lifetime_earned > 5\"}\nrules:\n  - id: a\n    on: SIGNUP\n    award: 5\n"
         "    when: 'tier >= \"platinum\"'\n",
         11, "'platinum' is not a stage of that ladder"},
        {"rules:\n  - id: a\n    on: SIGNUP\n    award: 5\n", 1, "version is required"},
        {"version: v\nrules:\n  - id: a\n    on: SIGNUP\n    award: {points: 5, tier_multiplier: true}\n", 5,
         "tier_multiplier needs a ladder with multipliers"},
        {"version: v\nrules:\n  - id: a\n    on: REDEMPTION\n    redeem: true\n  - id: b\n    on: REDEMPTION\n"
         "    redeem: true\n",
         8, "only one rule may redeem"},
        {"version: v\nrules:\n  - id: a\n    on: SIGNUP\n    award: 5\n    valid: {from: 2026-02-01T00:00:00Z, "
         "until: 2026-01-01T00:00:00Z}\n",
         6, "valid.from must be before valid.until"},
        {"version: v\nladders:\n  - id: x\n    stages:\n      - {name: s, when: \"completeness > 0.5\"}\nrules: []\n", 5,
         "ladder 'x': when: 'completeness': stage conditions see the profile only"},
        {"version: v\nrules:\n  - id: Bad Id\n    on: SIGNUP\n    award: 5\n", 3, "may hold only a-z"},
        {"version: v\nrules:\n  - id: a\n    on: LOGIN\n    award: 5\n", 4, "on must be an event type"},
        {"version: v\nrules:\n  - id: a\n    on: SIGNUP\n    award: 5\n    redeem: true\n", 3, "exactly one action"},
        {"version: v\nrules:\n  - id: a\n    on: SIGNUP\n    award: {per_unit: 1}\n", 5, "only on PURCHASE"},
        {"version: v\nrules:\n  - id: a\n  on: SIGNUP\n", 4, "YAML error"},
        /* issue 7 case 8: reversing a referrer's award would take the points from the invitee */
        {"version: v\nrules:\n  - id: ref\n    on: PURCHASE\n    award: {per_unit: 0.1}\n    to: referrer\n"
         "  - id: back\n    on: REFUND\n    reverse: ref\n",
         9, "rule 'back': reverse: 'ref' awards to the referrer"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = program_load_text(&prog, "rules.yaml", cases[i].yaml, err, sizeof(err));
        program_free(&prog);
        ck_assert_msg(rc == -1, "case %zu loaded", i);
        char where[32];
        snprintf(where, sizeof(where), "rules.yaml:%d:", cases[i].line);
        ck_assert_msg(strstr(err, where) != NULL, "case %zu: '%s' lacks '%s'", i, err, where);
        ck_assert_msg(strstr(err, cases[i].text) != NULL, "case %zu: '%s' lacks '%s'", i, err, cases[i].text);
    }
}
END_TEST

/* A program whose rule 'deep' has the condition cond (built by the caller). */
static char *deep_program(const char *cond)
{
    const char *head = "version: v\nrules:\n  - id: deep\n    on: SIGNUP\n    award: 5\n    when: \"";
    size_t n = strlen(head) + strlen(cond) + 3;
    char *y = malloc(n);
    ck_assert_ptr_nonnull(y);
    snprintf(y, n, "%s%s\"\n", head, cond);
    return y;
}

/* cond = n times open, then mid, then n times close (open/close may be ""). */
static char *nest(int n, const char *open, const char *mid, const char *close)
{
    size_t len = (strlen(open) + strlen(close)) * (size_t)n + strlen(mid) + 1;
    char *c = malloc(len);
    ck_assert_ptr_nonnull(c);
    size_t at = 0, lo = strlen(open), lm = strlen(mid), lc = strlen(close);
    for (int i = 0; i < n; i++, at += lo)
        memcpy(c + at, open, lo);
    memcpy(c + at, mid, lm);
    at += lm;
    for (int i = 0; i < n; i++, at += lc)
        memcpy(c + at, close, lc);
    c[at] = '\0';
    return c;
}

/* Issue 8 case 6: 10,000 nested parentheses (or 'not's, or chained 'and's,
 * which nest as deep in the compiled tree the engine walks) overflowed the
 * stack; now they are a program error naming the file, line and rule, while
 * reasonable nesting still loads and evaluates. */
START_TEST(deep_conditions_bounded)
{
    struct {
        char *cond;
        int loads;
    } cases[] = {
        {nest(10000, "(", "true", ")"), 0},
        {nest(10000, "not ", "true", ""), 0},
        {nest(100000, "true and ", "true", ""), 0},
        {nest(EXPR_MAX_DEPTH + 1, "(", "true", ")"), 0},
        {nest(60, "(", "purchases >= 0", ")"), 1},
        {nest(60, "not not ", "true", ""), 1},
        {nest(100, "channel == 'web' or ", "true", ""), 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *y = deep_program(cases[i].cond);
        int rc = program_load_text(&prog, "rules.yaml", y, err, sizeof(err));
        if (cases[i].loads) {
            ck_assert_msg(rc == 0, "case %zu: %s", i, err);
            /* and the engine evaluates it */
            profile p;
            profile_init(&p, "c1");
            touchpoint ev = {0};
            strcpy(ev.event_id, "e1");
            strcpy(ev.customer_id, "c1");
            strcpy(ev.channel, "web");
            ev.type = EVENT_SIGNUP;
            ev.occurred_at = T0;
            engine_output *out = malloc(sizeof(*out));
            ck_assert_ptr_nonnull(out);
            ck_assert_int_eq(rules_apply_event(&prog, &p, &ev, out, err, sizeof(err)), ENGINE_OK);
            ck_assert_int_eq(out->nrewards, 1);
            free(out);
            profile_free(&p);
        } else {
            ck_assert_msg(rc == -1, "case %zu loaded", i);
            ck_assert_msg(strstr(err, "rules.yaml:6:") && strstr(err, "rule 'deep'") && strstr(err, "nests deeper"),
                          "case %zu: %s", i, err);
        }
        program_free(&prog);
        free(y);
        free(cases[i].cond);
    }
}
END_TEST

START_TEST(missing_file_named)
{
    ck_assert_int_eq(program_load(&prog, "/nonexistent/rules.yaml", err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/rules.yaml"));
}
END_TEST

/* Output ids depend on exactly (event, rule, customer). */
START_TEST(ids_are_deterministic_and_distinct)
{
    char a[40], b[40], c[40], d[40], e[40];
    rules_reward_id("ev-1", "purchase", "c1", a);
    rules_reward_id("ev-1", "purchase", "c1", b);
    rules_reward_id("ev-1", "purchase", "c2", c);
    rules_reward_id("ev-1", "purchas", "ec1", d); /* same concatenation, other split */
    rules_change_id("ev-1", "purchase", "c1", e);
    ck_assert_str_eq(a, b);
    ck_assert_str_ne(a, c);
    ck_assert_str_ne(a, d);
    ck_assert_str_ne(a, e);
    ck_assert_int_eq(strlen(a), 35);
    ck_assert(strncmp(a, "rw-", 3) == 0 && strncmp(e, "sc-", 3) == 0);
}
END_TEST

/* A profile with everything set survives encoding; every truncation and
 * many corruptions are rejected or decoded without crashing. */
/* Issue 8: a refund's reason names the currency of the order it reverses,
 * also when the profile went through its stored encoding in between (as in
 * the pipeline, where Redis holds it between the two events). */
START_TEST(refund_reason_keeps_currency)
{
    ck_assert(program_load(&prog, NULL, err, sizeof(err)) == 0);
    profile p, q;
    profile_init(&p, "cust-1");
    engine_output *out = malloc(sizeof(*out));
    ck_assert_ptr_nonnull(out);
    touchpoint ev;
    memset(&ev, 0, sizeof(ev));
    sample_touchpoint(&ev, EVENT_PURCHASE, 1);
    strcpy(ev.event_id, "e-buy");
    strcpy(ev.payload.purchase.order_id, "o1");
    strcpy(ev.payload.purchase.currency, "CHF");
    ev.payload.purchase.amount_cents = 10050;
    ck_assert_int_eq(rules_apply_event(&prog, &p, &ev, out, err, sizeof(err)), ENGINE_OK);
    buf enc = {0};
    ck_assert_int_eq(profile_encode(&p, &prog, &enc), 0);
    ck_assert_int_eq(profile_decode(&q, &prog, p.customer_id, enc.data, enc.len, err, sizeof(err)), 0);
    touchpoint_free(&ev);
    memset(&ev, 0, sizeof(ev));
    sample_touchpoint(&ev, EVENT_REFUND, 1);
    strcpy(ev.event_id, "e-back");
    strcpy(ev.payload.refund.order_id, "o1");
    ev.payload.refund.amount_cents = 3025;
    ev.occurred_at += 86400000;
    ck_assert_int_eq(rules_apply_event(&prog, &q, &ev, out, err, sizeof(err)), ENGINE_OK);
    ck_assert_int_eq(out->nrewards, 1);
    ck_assert_msg(strstr(out->rewards[0].reason, "30.25 CHF") != NULL, "%s", out->rewards[0].reason);
    touchpoint_free(&ev);
    buf_free(&enc);
    profile_free(&p);
    profile_free(&q);
    free(out);
}
END_TEST

START_TEST(profile_encoding_robust)
{
    ck_assert(program_load(&prog, NULL, err, sizeof(err)) == 0);
    profile p;
    profile_init(&p, "cust-1");
    engine_output *out = malloc(sizeof(*out));
    touchpoint ev;
    memset(&ev, 0, sizeof(ev));
    static const event_type types[] = {EVENT_SIGNUP, EVENT_APP_USE, EVENT_PURCHASE, EVENT_SOCIAL_SHARE, EVENT_PURCHASE};
    for (int i = 0; i < 5; i++) {
        sample_touchpoint(&ev, types[i], 1);
        snprintf(ev.event_id, sizeof(ev.event_id), "e%d", i);
        if (types[i] == EVENT_PURCHASE)
            snprintf(ev.payload.purchase.order_id, sizeof(ev.payload.purchase.order_id), "o%d", i);
        ev.occurred_at += i * 86400000LL;
        ck_assert_int_eq(rules_apply_event(&prog, &p, &ev, out, err, sizeof(err)), ENGINE_OK);
    }
    buf enc = {0};
    ck_assert_int_eq(profile_encode(&p, &prog, &enc), 0);
    profile q;
    ck_assert_int_eq(profile_decode(&q, &prog, p.customer_id, enc.data, enc.len, err, sizeof(err)), 0);
    ck_assert_int_eq(q.balance, p.balance);
    ck_assert_int_eq(q.norders, 2);
    ck_assert_str_eq(q.orders[1].order_id, "o4");
    ck_assert_int_eq(q.stage[prog.tier_ladder], p.stage[prog.tier_ladder]);
    profile_free(&q);
    for (size_t cut = 0; cut < enc.len; cut++) {
        ck_assert_int_eq(profile_decode(&q, &prog, p.customer_id, enc.data, cut, err, sizeof(err)), -1);
        profile_free(&q);
    }
    uint64_t st = 88172645463325252u;
    for (int i = 0; i < 20000; i++) {
        char m[4096];
        memcpy(m, enc.data, enc.len);
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        m[st % enc.len] = (char)(st >> 32);
        profile_decode(&q, &prog, p.customer_id, m, enc.len, err, sizeof(err));
        profile_free(&q);
    }
    buf_free(&enc);
    profile_free(&p);
    touchpoint_free(&ev);
    free(out);
}
END_TEST

/* Encoding of p, for comparing a profile before and after a refused event. */
static void encode(const profile *p, buf *b)
{
    buf_reset(b);
    ck_assert_int_eq(profile_encode(p, &prog, b), 0);
}

/* issue 7 case 6: totals never wrap. Purchases of the largest amount under a
 * generous program reach the limit of the totals; the next one is refused
 * (total_overflow) with the profile unchanged; one award over the per-event
 * limit is refused; forged credits too. (Before: the balance wrapped to a
 * negative number, UBSan reported signed overflow.) */
START_TEST(totals_never_wrap)
{
    static const char yaml[] = "version: big\n"
                               "rules:\n"
                               "  - id: buy\n    on: PURCHASE\n    award: {per_unit: 100000}\n"
                               "  - id: huge\n    on: PURCHASE\n    when: \"currency == 'XXX'\"\n"
                               "    award: {per_unit: 999999}\n"
                               "  - id: back\n    on: REFUND\n    reverse: buy\n";
    ck_assert_msg(program_load_text(&prog, "big.yaml", yaml, err, sizeof(err)) == 0, "%s", err);
    profile p;
    profile_init(&p, "rich");
    engine_output *out = malloc(sizeof(*out));
    touchpoint ev;
    buf before = {0}, after = {0};
    memset(&ev, 0, sizeof(ev));
    int applied = 0;
    engine_status st = ENGINE_OK;
    for (int i = 0; i < 1100 && st == ENGINE_OK; i++) {
        sample_touchpoint(&ev, EVENT_PURCHASE, 0);
        snprintf(ev.event_id, sizeof(ev.event_id), "e%d", i);
        snprintf(ev.payload.purchase.order_id, sizeof(ev.payload.purchase.order_id), "o%d", i);
        ev.payload.purchase.amount_cents = EVENT_MAX_AMOUNT_CENTS; /* 10^10 units x 100000 = 10^15 points */
        encode(&p, &before);
        st = rules_apply_event(&prog, &p, &ev, out, err, sizeof(err));
        if (st == ENGINE_OK) {
            applied++;
            ck_assert_int_eq(out->nrewards, 1);
            ck_assert_int_eq(out->rewards[0].points, EVENT_MAX_POINTS);
            ck_assert_int_eq(out->rewards[0].balance_after, p.balance);
        }
    }
    ck_assert_msg(st == ENGINE_OVERFLOW, "after %d purchases: %s", applied, engine_status_name(st));
    ck_assert_str_eq(engine_status_name(st), "total_overflow");
    ck_assert_int_eq(applied, (int)(EVENT_MAX_TOTAL / EVENT_MAX_POINTS));
    ck_assert_int_eq(p.balance, EVENT_MAX_TOTAL);
    ck_assert_int_eq(p.lifetime_earned, EVENT_MAX_TOTAL);
    ck_assert_int_eq(out->nrewards + out->nstages + out->ncredits, 0);
    encode(&p, &after);
    ck_assert_msg(before.len == after.len && !memcmp(before.data, after.data, before.len),
                  "a refused event changed the profile");
    /* a refund still works at the limit (totals go down) */
    sample_touchpoint(&ev, EVENT_REFUND, 0);
    snprintf(ev.event_id, sizeof(ev.event_id), "r1");
    snprintf(ev.payload.refund.order_id, sizeof(ev.payload.refund.order_id), "o%d", applied - 1);
    ev.payload.refund.amount_cents = EVENT_MAX_AMOUNT_CENTS;
    ck_assert_int_eq(rules_apply_event(&prog, &p, &ev, out, err, sizeof(err)), ENGINE_OK);
    ck_assert_int_eq(p.balance, EVENT_MAX_TOTAL - EVENT_MAX_POINTS);
    /* one award above the per-event limit is refused, whatever the totals */
    profile q;
    profile_init(&q, "other");
    sample_touchpoint(&ev, EVENT_PURCHASE, 0);
    snprintf(ev.payload.purchase.currency, sizeof(ev.payload.purchase.currency), "XXX");
    ev.payload.purchase.amount_cents = EVENT_MAX_AMOUNT_CENTS;
    ck_assert_int_eq(rules_apply_event(&prog, &q, &ev, out, err, sizeof(err)), ENGINE_OVERFLOW);
    ck_assert_int_eq(q.balance, 0);
    ck_assert_int_eq(q.events, 0);
    ck_assert_int_eq(q.norders, 0);
    /* credits: out of range, or past the totals, are refused */
    credit_event cr;
    memset(&cr, 0, sizeof(cr));
    snprintf(cr.credit_id, sizeof(cr.credit_id), "rw-1");
    snprintf(cr.customer_id, sizeof(cr.customer_id), "other");
    snprintf(cr.rule_id, sizeof(cr.rule_id), "buy");
    cr.points = INT64_MAX;
    ck_assert_int_eq(rules_apply_credit(&prog, &q, &cr, out), ENGINE_BAD_CREDIT);
    cr.points = -5;
    ck_assert_int_eq(rules_apply_credit(&prog, &q, &cr, out), ENGINE_BAD_CREDIT);
    ck_assert_int_eq(q.balance, 0);
    cr.points = EVENT_MAX_POINTS;
    ck_assert_int_eq(rules_apply_credit(&prog, &q, &cr, out), ENGINE_OK);
    ck_assert_int_eq(q.balance, 0); /* q has no own event: parked (issue 7 case 9) */
    ck_assert_int_eq(profile_parked_points(&q), EVENT_MAX_POINTS);
    /* p's lifetime_earned is at the limit (the refund lowered only the balance) */
    ck_assert_int_eq(rules_apply_credit(&prog, &p, &cr, out), ENGINE_OVERFLOW);
    ck_assert_int_eq(p.balance, EVENT_MAX_TOTAL - EVENT_MAX_POINTS);
    ck_assert_int_eq(p.lifetime_earned, EVENT_MAX_TOTAL);
    profile_free(&q);
    profile_free(&p);
    touchpoint_free(&ev);
    buf_free(&before);
    buf_free(&after);
    free(out);
}
END_TEST

static const char tiers_gold[] = "version: v1\n"
                                 "ladders:\n"
                                 "  - id: tier\n"
                                 "    stages:\n"
                                 "      - {name: bronze, multiplier: 1}\n"
                                 "      - {name: gold, multiplier: 1.5, when: \"lifetime_earned >= 100\"}\n"
                                 "rules:\n"
                                 "  - {id: buy, on: PURCHASE, award: {per_unit: 1, tier_multiplier: true}}\n";

/* issue 7 case 10: a program that orphans stored stages is found out, naming
 * them; renamed_from maps a stored stage on read; retired_stages accepts a drop. */
START_TEST(renamed_and_orphaned_stages)
{
    static const char renamed_bare[] = "version: v2\n"
                                       "ladders:\n"
                                       "  - id: tier\n"
                                       "    stages:\n"
                                       "      - {name: bronze, multiplier: 1}\n"
                                       "      - {name: oro, multiplier: 1.5, when: \"lifetime_earned >= 100\"}\n"
                                       "rules:\n"
                                       "  - {id: buy, on: PURCHASE, award: {per_unit: 1, tier_multiplier: true}}\n";
    static const char renamed_declared[] =
        "version: v2\n"
        "ladders:\n"
        "  - id: tier\n"
        "    stages:\n"
        "      - {name: bronze, multiplier: 1}\n"
        "      - {name: oro, multiplier: 1.5, when: \"lifetime_earned >= 100\", renamed_from: gold}\n"
        "rules:\n"
        "  - {id: buy, on: PURCHASE, award: {per_unit: 1, tier_multiplier: true}}\n";
    static const char retired[] = "version: v3\n"
                                  "retired_stages: [\"tier:gold\", \"tier:bronze\"]\n"
                                  "rules:\n"
                                  "  - {id: buy, on: PURCHASE, award: 1}\n";
    const char *stored[] = {"tier:bronze", "tier:gold"};
    buf orphans = {0}, enc = {0};
    /* a gold profile, stored by v1 */
    ck_assert_msg(program_load_text(&prog, "v1.yaml", tiers_gold, err, sizeof(err)) == 0, "%s", err);
    profile p, q;
    profile_init(&p, "c");
    p.stage[0] = 1;
    ck_assert_int_eq(profile_encode(&p, &prog, &enc), 0);
    ck_assert_int_eq(program_orphaned_stages(&prog, stored, 2, &orphans), 0);
    program_free(&prog);

    ck_assert_msg(program_load_text(&prog, "v2.yaml", renamed_bare, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(program_orphaned_stages(&prog, stored, 2, &orphans), 1);
    ck_assert_str_eq(orphans.data, "tier:gold");
    program_free(&prog);

    ck_assert_msg(program_load_text(&prog, "v2.yaml", renamed_declared, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(program_orphaned_stages(&prog, stored, 2, &orphans), 0);
    ck_assert_int_eq(profile_decode(&q, &prog, p.customer_id, enc.data, enc.len, err, sizeof(err)), 0);
    ck_assert_int_eq(q.stage[0], 1); /* gold reads as oro */
    ck_assert_str_eq(prog.ladders[0].stages[q.stage[0]].name, "oro");
    profile_free(&q);
    buf refs = {0};
    ck_assert_int_eq(program_stage_refs(&prog, &refs), 0);
    ck_assert_str_eq(refs.data, "tier:bronze\ntier:oro\ntier:gold\n");
    buf_free(&refs);
    program_free(&prog);

    ck_assert_msg(program_load_text(&prog, "v3.yaml", retired, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(program_orphaned_stages(&prog, stored, 2, &orphans), 0);
    program_free(&prog);

    /* declaration errors name the line */
    static const struct {
        const char *yaml;
        const char *text;
    } bad[] = {
        {"version: v\nladders:\n  - id: t\n    stages:\n      - {name: a}\n      - {name: b, renamed_from: a}\n"
         "rules: []\n",
         "renamed_from 'a' is a stage of this ladder"},
        {"version: v\nladders:\n  - id: t\n    stages:\n      - {name: a, renamed_from: x}\n"
         "      - {name: b, renamed_from: [x]}\nrules: []\n",
         "renamed_from 'x' is declared twice"},
        {"version: v\nladders:\n  - id: t\n    stages:\n      - {name: a}\nretired_stages: [\"t:a\"]\nrules: []\n",
         "retired stage 't:a' is a stage"},
        {"version: v\nretired_stages: [gold]\nrules: []\n", "entries are \"ladder:stage\""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(program_load_text(&prog, "bad.yaml", bad[i].yaml, err, sizeof(err)), -1);
        program_free(&prog);
        ck_assert_msg(strstr(err, bad[i].text) != NULL, "case %zu: '%s' lacks '%s'", i, err, bad[i].text);
    }
    buf_free(&orphans);
    buf_free(&enc);
    profile_free(&p);
}
END_TEST

/* issue 7 case 11: the digest follows the content, not comments, layout or
 * key order; any change of content changes it, whatever the version says. */
START_TEST(program_digest_follows_content)
{
    char d1[PROGRAM_DIGEST_MAX + 1], d2[PROGRAM_DIGEST_MAX + 1];
    ck_assert_msg(program_load_text(&prog, "a.yaml", tiers_gold, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq((int)strlen(prog.digest), 71);
    ck_assert_int_eq(strncmp(prog.digest, "sha256:", 7), 0);
    strcpy(d1, prog.digest);
    program_free(&prog);
    static const char relaid[] = "# the same program, laid out otherwise\n"
                                 "rules:\n"
                                 "  - on: PURCHASE\n"
                                 "    id: buy   # keys in another order\n"
                                 "    award:\n"
                                 "      tier_multiplier: true\n"
                                 "      per_unit: 1\n"
                                 "version: 'v1'\n"
                                 "ladders:\n"
                                 "  - id: tier\n"
                                 "    stages:\n"
                                 "      - {name: bronze, multiplier: 1}\n"
                                 "      - {name: gold, multiplier: 1.5, when: \"lifetime_earned >= 100\"}\n";
    ck_assert_msg(program_load_text(&prog, "b.yaml", relaid, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(prog.digest, d1);
    program_free(&prog);
    char edited[sizeof(tiers_gold) + 8];
    strcpy(edited, tiers_gold);
    *strstr(edited, "per_unit: 1") = '\0';
    strcat(edited, "per_unit: 2, tier_multiplier: true}}\n");
    ck_assert_msg(program_load_text(&prog, "c.yaml", edited, err, sizeof(err)) == 0, "%s", err);
    strcpy(d2, prog.digest);
    ck_assert_str_eq(prog.version, "v1");
    ck_assert_str_ne(d2, d1);
    /* it is carried by every output */
    profile p;
    profile_init(&p, "c");
    engine_output *out = malloc(sizeof(*out));
    touchpoint ev;
    memset(&ev, 0, sizeof(ev));
    sample_touchpoint(&ev, EVENT_PURCHASE, 0);
    ev.payload.purchase.amount_cents = 100000;
    ck_assert_int_eq(rules_apply_event(&prog, &p, &ev, out, err, sizeof(err)), ENGINE_OK);
    ck_assert_int_ge(out->nrewards, 1);
    ck_assert_int_ge(out->nstages, 1);
    ck_assert_str_eq(out->rewards[0].program_digest, d2);
    ck_assert_str_eq(out->stages[0].program_digest, d2);
    buf sum = {0};
    ck_assert_int_eq(program_summary(&prog, &sum), 0);
    ck_assert_ptr_nonnull(strstr(sum.data, d2));
    buf_free(&sum);
    profile_free(&p);
    touchpoint_free(&ev);
    free(out);
}
END_TEST

/* issue 7 case 6: a stored profile whose totals the engine could not have
 * made is refused on decode (the checked arithmetic relies on the bounds);
 * counters saturate instead of wrapping. */
START_TEST(stored_totals_out_of_range_refused)
{
    ck_assert(program_load(&prog, NULL, err, sizeof(err)) == 0);
    profile p, q;
    buf enc = {0};
    profile_init(&p, "c");
    p.balance = INT64_MAX;
    ck_assert_int_eq(profile_encode(&p, &prog, &enc), 0);
    ck_assert_int_eq(profile_decode(&q, &prog, p.customer_id, enc.data, enc.len, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "balance is out of range"));
    profile_free(&q);
    p.balance = 0;
    p.events = INT64_MAX;
    p.count[EVENT_APP_USE] = INT64_MAX;
    buf_reset(&enc);
    ck_assert_int_eq(profile_encode(&p, &prog, &enc), 0);
    ck_assert_int_eq(profile_decode(&q, &prog, p.customer_id, enc.data, enc.len, err, sizeof(err)), 0);
    engine_output *out = malloc(sizeof(*out));
    touchpoint ev;
    memset(&ev, 0, sizeof(ev));
    sample_touchpoint(&ev, EVENT_APP_USE, 0);
    ck_assert_int_eq(rules_apply_event(&prog, &q, &ev, out, err, sizeof(err)), ENGINE_OK);
    ck_assert_int_eq(q.events, INT64_MAX);
    ck_assert_int_eq(q.count[EVENT_APP_USE], INT64_MAX);
    profile_free(&q);
    profile_free(&p);
    touchpoint_free(&ev);
    buf_free(&enc);
    free(out);
}
END_TEST

/* issue 7 case 9: credits to a customer with no own event are parked, never
 * refused: past PROFILE_MAX_PARKED they merge into the last parked entry;
 * the first own event releases every point and every converted referral. */
START_TEST(parked_credits_never_refused)
{
    ck_assert(program_load(&prog, NULL, err, sizeof(err)) == 0);
    profile p;
    profile_init(&p, "ref");
    engine_output *out = malloc(sizeof(*out));
    credit_event cr;
    memset(&cr, 0, sizeof(cr));
    snprintf(cr.customer_id, sizeof(cr.customer_id), "ref");
    snprintf(cr.rule_id, sizeof(cr.rule_id), "referral-referrer");
    cr.points = 250;
    cr.referral = true;
    for (int i = 0; i < 40; i++) {
        snprintf(cr.credit_id, sizeof(cr.credit_id), "rw-%d", i);
        snprintf(cr.source_event_id, sizeof(cr.source_event_id), "inv-%d", i);
        ck_assert_int_eq(rules_apply_credit(&prog, &p, &cr, out), ENGINE_OK);
        ck_assert_int_eq(out->nrewards, 0);
    }
    ck_assert_int_eq(p.balance, 0);
    ck_assert_int_eq(p.nparked, PROFILE_MAX_PARKED);
    ck_assert_int_eq(profile_parked_points(&p), 40 * 250);
    /* the stored form keeps them */
    buf enc = {0};
    profile q;
    ck_assert_int_eq(profile_encode(&p, &prog, &enc), 0);
    ck_assert_msg(profile_decode(&q, &prog, p.customer_id, enc.data, enc.len, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(profile_parked_points(&q), 40 * 250);
    touchpoint ev;
    memset(&ev, 0, sizeof(ev));
    sample_touchpoint(&ev, EVENT_APP_USE, 0);
    ck_assert_int_eq(rules_apply_event(&prog, &q, &ev, out, err, sizeof(err)), ENGINE_OK);
    ck_assert_int_eq(q.nparked, 0);
    ck_assert_int_eq(q.balance, 40 * 250 + 10);
    ck_assert_int_eq(q.referrals_converted, 40);
    ck_assert_str_eq(out->rewards[0].reward_id, "rw-0");
    ck_assert_int_eq(out->rewards[PROFILE_MAX_PARKED - 1].points, 9 * 250);
    ck_assert_int_eq(out->rewards[PROFILE_MAX_PARKED].points, 10); /* then the event's own award */
    profile_free(&q);
    profile_free(&p);
    touchpoint_free(&ev);
    buf_free(&enc);
    free(out);
}
END_TEST

Suite *program_suite(void)
{
    Suite *s = suite_create("program");
    TCase *tc = tcase_create("program");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, default_program_loads);
    tcase_add_test(tc, errors_name_line_and_rule);
    tcase_add_test(tc, missing_file_named);
    tcase_add_test(tc, deep_conditions_bounded);
    tcase_add_test(tc, ids_are_deterministic_and_distinct);
    tcase_add_test(tc, profile_encoding_robust);
    tcase_add_test(tc, refund_reason_keeps_currency);
    tcase_add_test(tc, totals_never_wrap);
    tcase_add_test(tc, stored_totals_out_of_range_refused);
    tcase_add_test(tc, parked_credits_never_refused);
    tcase_add_test(tc, renamed_and_orphaned_stages);
    tcase_add_test(tc, program_digest_follows_content);
    suite_add_tcase(s, tc);
    return s;
}
