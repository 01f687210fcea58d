/* Benchmark of the engine alone (run: meson test -C build --benchmark -v).
 *
 * One core, 1,000,000 generated events over 100,000 customers with the
 * default program (a realistic mix: app use, purchases, shares, signups,
 * refunds, redemptions, referrals). Two loops in the same run: the ceiling
 * does everything but the engine (event generation, profile lookup by
 * index), the engine loop adds rules_apply_event. The engine's own rate is
 * events / (engine time - ceiling time). Best of 3 rounds each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "program.h"
#include "rules.h"
#include "timeutil.h"

#define EVENTS 1000000
#define CUSTOMERS 100000

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static char ids[CUSTOMERS][16];
static int32_t orders[CUSTOMERS]; /* last order number per customer, 0 = none */

static void put_num(char *dst, const char *prefix, uint64_t n)
{
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    size_t p = strlen(prefix);
    memcpy(dst, prefix, p);
    while (k)
        dst[p++] = tmp[--k];
    dst[p] = '\0';
}

/* Fill ev as event number i; returns the customer index. */
static int generate(touchpoint *ev, int i, int64_t t0)
{
    uint64_t r = next_rand();
    int c = (int)(r % CUSTOMERS);
    unsigned kind = (unsigned)(r >> 32) % 100;
    put_num(ev->event_id, "ev-", (uint64_t)i);
    memcpy(ev->customer_id, ids[c], sizeof(ids[c]));
    ev->occurred_at = t0 + (int64_t)i * 7776; /* 90 days over the run */
    if (kind < 40) {
        ev->type = EVENT_APP_USE;
        ev->payload.app_use.session_seconds = 120;
        ev->payload.app_use.has_feature = false;
    } else if (kind < 65) {
        ev->type = EVENT_PURCHASE;
        put_num(ev->payload.purchase.order_id, "o-", (uint64_t)i);
        ev->payload.purchase.amount_cents = (int64_t)(r >> 40) % 20000 + 100;
        memcpy(ev->payload.purchase.currency, "EUR", 4);
        ev->payload.purchase.has_store_id = false;
        orders[c] = i;
    } else if (kind < 75) {
        ev->type = EVENT_SOCIAL_SHARE;
        memcpy(ev->payload.social_share.network, "instagram", 10);
        ev->payload.social_share.has_content_id = false;
    } else if (kind < 83) {
        ev->type = EVENT_SIGNUP;
        ev->payload.signup.has_referred_by = (r >> 50) % 4 == 0;
        memcpy(ev->payload.signup.referred_by, ids[(c + 1) % CUSTOMERS], sizeof(ids[0]));
    } else if (kind < 88) {
        ev->type = EVENT_NEWSLETTER_OPT_IN;
    } else if (kind < 93) {
        ev->type = EVENT_PROFILE_UPDATE;
        ev->payload.profile_update.completeness = (double)((r >> 44) % 101) / 100.0;
    } else if (kind < 95) {
        ev->type = EVENT_REFERRAL;
        ev->payload.referral.has_invitee_id = false;
    } else if (kind < 97 && orders[c]) {
        ev->type = EVENT_REFUND;
        put_num(ev->payload.refund.order_id, "o-", (uint64_t)orders[c]);
        ev->payload.refund.amount_cents = 100;
    } else {
        ev->type = EVENT_REDEMPTION;
        memcpy(ev->payload.redemption.redemption_id, "r", 2);
        memcpy(ev->payload.redemption.reward_code, "V500", 5);
        ev->payload.redemption.cost_points = 500;
    }
    return c;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
    program prog;
    char err[1024];
    if (program_load(&prog, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    profile *profiles = malloc(sizeof(profile) * CUSTOMERS);
    engine_output *out = malloc(sizeof(*out));
    touchpoint *ev = calloc(1, sizeof(*ev));
    if (!profiles || !out || !ev)
        return 1;
    for (int c = 0; c < CUSTOMERS; c++)
        put_num(ids[c], "cust-", (uint64_t)c);
    memcpy(ev->channel, "app", 4);
    int64_t t0 = time_days_from_civil(2026, 1, 1) * TIME_MS_PER_DAY;
    double best_engine = 1e9, best_ceiling = 1e9;
    long long outputs = 0, refused = 0, touched = 0;
    for (int round = 0; round < 3; round++) {
        for (int c = 0; c < CUSTOMERS; c++)
            profile_init(&profiles[c], ids[c]);
        memset(orders, 0, sizeof(orders));
        rng = 0x9e3779b97f4a7c15u;
        double t = now();
        for (int i = 0; i < EVENTS; i++) {
            int c = generate(ev, i, t0);
            profiles[c].events++;
            touched += ev->type;
        }
        double ceiling = now() - t;
        for (int c = 0; c < CUSTOMERS; c++)
            profile_init(&profiles[c], ids[c]);
        memset(orders, 0, sizeof(orders));
        rng = 0x9e3779b97f4a7c15u;
        outputs = refused = 0;
        t = now();
        for (int i = 0; i < EVENTS; i++) {
            int c = generate(ev, i, t0);
            if (rules_apply_event(&prog, &profiles[c], ev, out, err, sizeof(err)) != ENGINE_OK)
                refused++;
            outputs += out->nrewards + out->nstages + out->ncredits;
        }
        double engine = now() - t;
        for (int c = 0; c < CUSTOMERS; c++)
            profile_free(&profiles[c]);
        if (engine < best_engine)
            best_engine = engine;
        if (ceiling < best_ceiling)
            best_ceiling = ceiling;
    }
    double net = best_engine - best_ceiling;
    printf("engine benchmark: %d events, %d customers, default program, 1 core, best of 3\n", EVENTS, CUSTOMERS);
    printf("  outputs per run:             %lld (refused: %lld; check %lld)\n", outputs, refused, touched % 7);
    printf("  ceiling (generate + lookup): %.3f s  %12.0f events/s\n", best_ceiling, EVENTS / best_ceiling);
    printf("  with the engine:             %.3f s  %12.0f events/s  (%.2fx the ceiling's time)\n", best_engine,
           EVENTS / best_engine, best_engine / best_ceiling);
    printf("  engine alone:                %.3f s  %12.0f events/s  (%.0f ns/event)\n", net, EVENTS / net,
           net * 1e9 / EVENTS);
    printf("  target: >= 1000000 events/s for the engine alone: %s\n", EVENTS / net >= 1e6 ? "MET" : "NOT MET");
    program_free(&prog);
    free(profiles);
    free(out);
    touchpoint_free(ev);
    free(ev);
    return outputs > 0 ? 0 : 1;
}
