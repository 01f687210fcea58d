/* fuzz_program.c - libFuzzer harness: the input as a rule program
 * (program_load_text, what `check`, `run` and `simulate` load); a program
 * that loads is summarised as `check` prints it and then runs over a fixed
 * stream of events of every type, two customers, one referred by the other,
 * through the in-memory simulator (the engine, credits included); every
 * resulting profile is encoded, decoded and printed as JSON. Writes no file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"
#include "program.h"
#include "rules.h"
#include "sim.h"

#define T0 INT64_C(1767225600000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Event i of the fixed stream (every type, cycling, over two months). */
static void make_event(touchpoint *ev, int i)
{
    touchpoint_clear(ev);
    snprintf(ev->event_id, sizeof(ev->event_id), "e%d", i);
    strcpy(ev->customer_id, i % 3 == 0 ? "ref" : "inv");
    strcpy(ev->channel, i % 2 ? "web" : "app");
    ev->type = (event_type)(i % EVENT_TYPE_COUNT);
    ev->occurred_at = T0 + (int64_t)i * 7 * 3600 * 1000;
    switch (ev->type) {
    case EVENT_SIGNUP:
        ev->payload.signup.has_referred_by = strcmp(ev->customer_id, "inv") == 0;
        strcpy(ev->payload.signup.referred_by, "ref");
        break;
    case EVENT_PROFILE_UPDATE: ev->payload.profile_update.completeness = (i % 10) / 9.0; break;
    case EVENT_APP_USE: ev->payload.app_use.session_seconds = 60 * i; break;
    case EVENT_SOCIAL_SHARE: strcpy(ev->payload.social_share.network, "x"); break;
    case EVENT_REFERRAL: break;
    case EVENT_PURCHASE:
        snprintf(ev->payload.purchase.order_id, sizeof(ev->payload.purchase.order_id), "o%d", i);
        ev->payload.purchase.amount_cents = 1999 + 5000 * (i % 4);
        strcpy(ev->payload.purchase.currency, "EUR");
        break;
    case EVENT_REFUND:
        snprintf(ev->payload.refund.order_id, sizeof(ev->payload.refund.order_id), "o%d", i - 1);
        ev->payload.refund.amount_cents = 1000;
        break;
    case EVENT_REDEMPTION:
        snprintf(ev->payload.redemption.redemption_id, sizeof(ev->payload.redemption.redemption_id), "r%d", i);
        strcpy(ev->payload.redemption.reward_code, "coffee");
        ev->payload.redemption.cost_points = 50;
        break;
    default: break;
    }
    (void)touchpoint_add_attr(ev, "tier", 4, i % 2 ? "gold" : "", i % 2 ? 4 : 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    program *prog = calloc(1, sizeof(*prog));
    char err[1024];
    if (prog && program_load_text(prog, "fuzz.yaml", text, err, sizeof(err)) == 0) {
        buf b = {0};
        (void)program_summary(prog, &b);
        sim *s = sim_new(prog);
        touchpoint ev = {0};
        for (int i = 0; s && i < 60; i++) {
            make_event(&ev, i);
            (void)sim_apply(s, &ev, NULL, NULL, err, sizeof(err));
        }
        touchpoint_free(&ev);
        size_t n = 0;
        const profile **all = s ? sim_profiles(s, &n) : NULL;
        for (size_t i = 0; all && i < n; i++) {
            profile p;
            buf_reset(&b);
            if (profile_encode(all[i], prog, &b) == 0) {
                if (profile_decode(&p, prog, all[i]->customer_id, b.data, b.len, err, sizeof(err)) != 0) {
                    fprintf(stderr, "a profile encoding does not decode: %s\n", err);
                    abort();
                }
                buf_reset(&b);
                (void)profile_to_json(&p, prog, &b);
                profile_free(&p);
            }
        }
        free(all);
        sim_free(s);
        buf_free(&b);
    }
    if (prog)
        program_free(prog);
    free(prog);
    free(text);
    return 0;
}
