/* sim.h - the engine over a stream, in memory: profiles in a hash table,
 * a repeated (customer_id, event_id) ignored as the pipeline's per-customer
 * dedupe does (refused as event_id_conflict if its content differs), referral credits applied to the referrer right
 * after the event that earned them. `fidelio simulate` (the dry run and the
 * golden reference), the demo and the tests run it. */
#ifndef FIDELIO_SIM_H
#define FIDELIO_SIM_H

#include <stdio.h>

#include "codec.h"
#include "rules.h"

typedef struct sim sim;

/* Called for every output, in order: a RewardEvent or StageChangeEvent (rec->schema says which). */
typedef void (*sim_emit_fn)(void *opaque, const codec_record *rec);

typedef struct sim_stats {
    long long events;      /* applied */
    long long duplicates;  /* (customer, event id) seen before: ignored */
    long long rejected;    /* refused by the engine (unknown order, ...) */
    long long credits;     /* credits routed to referrers and applied or parked */
    long long credits_parked;  /* of which parked: the referrer had no own event yet */
    long long credits_refused; /* refused by the engine (the pipeline's DLQ) */
    long long rewards, stage_changes;
} sim_stats;

/* A simulator over prog (borrowed; must outlive it). NULL when out of memory. */
sim *sim_new(const program *prog);
void sim_free(sim *s);

/* Apply one event. Returns ENGINE_OK (also for an ignored duplicate),
 * ENGINE_EVENT_ID_CONFLICT for a known (customer, event_id) with other
 * content, or the engine's status with err set for a refused event. */
engine_status sim_apply(sim *s, const touchpoint *ev, sim_emit_fn emit, void *opaque, char *err, size_t errlen);

/* Apply every JSON line of in (named name in messages): decode, validate
 * (no message time: no skew check), apply. A line that is invalid, or that
 * the engine refuses, is reported on stderr as "NAME:LINE: rejected (error):
 * detail" and counted in *invalid / the stats. Returns 0, or -1 with err on a
 * read error or when memory runs out. */
int sim_apply_jsonl(sim *s, FILE *in, const char *name, sim_emit_fn emit, void *opaque, long long *invalid,
                    char *err, size_t errlen);

/* The profile of customer_id, or NULL. */
const profile *sim_profile(const sim *s, const char *customer_id);
/* Every profile, sorted by customer id; the array is the caller's to free(). */
const profile **sim_profiles(const sim *s, size_t *n);
const sim_stats *sim_get_stats(const sim *s);

#endif
