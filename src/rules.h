/* rules.h - the loyalty engine: a pure function
 *   (profile, event, program) -> (profile', outputs).
 * No Kafka, no Redis, no wall clock: everything is decided from the event's
 * own time, so a replay gives the same profiles and the same output ids. */
#ifndef FIDELIO_RULES_H
#define FIDELIO_RULES_H

#include "event.h"
#include "profile.h"
#include "program.h"

/* Most rewards one event can make: one per rule, plus the parked credits its
 * customer's first own event releases. */
#define ENGINE_MAX_REWARDS (PROGRAM_MAX_RULES + PROFILE_MAX_PARKED)

/* What one event or credit produced. Sized for the largest program. */
typedef struct engine_output {
    reward_event rewards[ENGINE_MAX_REWARDS];      /* for this customer, in order */
    int nrewards;
    stage_change_event stages[PROGRAM_MAX_LADDERS]; /* at most one per ladder */
    int nstages;
    credit_event credits[PROGRAM_MAX_RULES];       /* for other customers (referrers) */
    int ncredits;
} engine_output;

typedef enum engine_status {
    ENGINE_OK,
    ENGINE_UNKNOWN_ORDER,        /* REFUND of an order with no earn record */
    ENGINE_REFUND_EXCEEDS_ORDER, /* REFUND of more than remains of the order */
    ENGINE_OVERFLOW,             /* a total would leave its range (EVENT_MAX_TOTAL), or one award
                                    would exceed EVENT_MAX_POINTS: refused, nothing changed */
    ENGINE_BAD_CREDIT,           /* a credit's points are not in 1..EVENT_MAX_POINTS */
    ENGINE_EVENT_ID_CONFLICT,    /* (sim_apply only) a known (customer, event_id) with other content:
                                    refused, as the pipeline's dedupe sends it to the DLQ */
    ENGINE_NO_MEMORY,            /* not the event's fault: retry later */
} engine_status;

/* Stable name of a status ("unknown_order"), used as the DLQ error. */
const char *engine_status_name(engine_status s);

/* Apply one touchpoint to p. On ENGINE_OK, p is updated and out holds the
 * outputs. On any other status p and out are unchanged (out->n* = 0) and err
 * says why: the event is bad input for this customer. The caller dedupes. */
engine_status rules_apply_event(const program *prog, profile *p, const touchpoint *ev, engine_output *out,
                                char *err, size_t errlen);

/* Apply a credit addressed to p's customer: balance and lifetime grow, a
 * referral credit counts as a converted referral, ladders are re-evaluated.
 * A customer with no own event yet (events == 0: perhaps a referred_by that
 * names no real customer, perhaps a backfill that delivers the credit first)
 * gets it parked instead: kept in the profile, not spendable, no output;
 * the customer's first own touchpoint releases every parked credit (their
 * rewards, with the credit ids as reward ids, come first among that event's
 * outputs). Past PROFILE_MAX_PARKED, a credit is merged into the last parked one
 * (released as one reward). ENGINE_BAD_CREDIT, ENGINE_OVERFLOW and
 * ENGINE_NO_MEMORY leave p and out unchanged. */
engine_status rules_apply_credit(const program *prog, profile *p, const credit_event *cr, engine_output *out);

/* Deterministic output ids from the source event, the rule (or "ladder:" +
 * ladder id) and the beneficiary: "rw-" / "sc-" + 32 hex digits (XXH3-128). */
void rules_reward_id(const char *source_event_id, const char *rule_id, const char *customer_id, char *out);
void rules_change_id(const char *source_event_id, const char *ladder_id, const char *customer_id, char *out);

#endif
