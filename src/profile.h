/* profile.h - one customer's state: counters, flags, stages, scores, ledger
 * totals, per-rule limit state and per-order earn records.
 *
 * In memory the profile is indexed by the program (rules[i], stage[l]); its
 * encoding names rules and ladders by id, so a stored profile survives a
 * change of the rule program (state of removed rules is dropped, new rules
 * start empty). The encoding is versioned (PROFILE_ENCODING_VERSION) and
 * deterministic: the same profile gives the same bytes. */
#ifndef FIDELIO_PROFILE_H
#define FIDELIO_PROFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "event.h"
#include "program.h"

/* Version 2 is version 1 plus the parked credits; it was written only for a
 * profile that held parked credits (every other profile kept the bytes of
 * version 1). Version 3 adds each order's currency and always carries the
 * parked-credit list (possibly empty); it was written for a profile with
 * order records. */
/* Version 4 (what profile_encode writes) drops the customer id (the key
 * names it: profile_decode takes it) and writes an order's rule id, currency,
 * rate and multiplier only when they differ from the previous order's (a
 * flags byte), its time as the difference from the previous order's.
 * Versions 1 to 3 are still read (profiles at rest in existing namespaces). */
#define PROFILE_ENCODING_VERSION 4
/* Largest rate or multiplier an order record may carry (program.c's decimals
 * have at most 7 whole digits and 4 places: under 10^11 basis points). */
#define PROFILE_MAX_BP INT64_C(100000000000)
/* Credits a customer with no own events yet may hold parked (issue 7 case 9). */
#define PROFILE_MAX_PARKED 32

/* Limit state of one rule for this customer. */
typedef struct rule_state {
    int64_t window;   /* index of the window last counted in (day, week or month index) */
    int32_t count;    /* awards (LIMIT_MAX) or matching events (LIMIT_NTH) in that window */
    int32_t fired;    /* awards ever */
} rule_state;

/* What an order earned, kept for refunds. */
typedef struct order_record {
    char order_id[EVENT_ID_MAX + 1];
    int64_t amount_cents;   /* purchase amount */
    int64_t refunded_cents; /* refunded so far */
    int64_t at;             /* purchase event time */
    int64_t rate_bp;        /* earning rule's rate at the time */
    int64_t multiplier_bp;  /* tier multiplier applied (BP_ONE when none) */
    int16_t rule;           /* index of the earning rule */
    char currency[EVENT_ID_MAX + 1]; /* of the purchase, for the refund's reason ("" when stored before v3) */
} order_record;

/* A credit received before the customer had any own event: kept, not
 * spendable, until the customer's first own touchpoint releases it. */
typedef struct parked_credit {
    char credit_id[EVENT_ID_MAX + 1];       /* becomes the reward id on release */
    char rule_id[EVENT_ID_MAX + 1];
    char source_event_id[EVENT_ID_MAX + 1];
    char reason[EVENT_TEXT_MAX + 1];
    char program_version[EVENT_ID_MAX + 1];
    int64_t points;                         /* 1..EVENT_MAX_POINTS */
    int64_t occurred_at;                    /* the source event's time */
    int64_t referrals;                      /* converted referrals it counts on release (0 or 1;
                                               more in the last entry, where credits past
                                               PROFILE_MAX_PARKED are merged) */
} parked_credit;

typedef struct profile {
    char customer_id[EVENT_ID_MAX + 1];
    int64_t first_event_at, last_event_at; /* event time; 0 before any event */
    int64_t events;                        /* touchpoints applied */
    int64_t count[EVENT_TYPE_COUNT];       /* per type */
    int64_t purchase_cents, refunded_cents;
    bool signed_up;
    bool has_referred_by;
    char referred_by[EVENT_ID_MAX + 1];    /* from the first SIGNUP that named one */
    int64_t referrals_converted;           /* referral credits received */
    int64_t balance;                       /* may be negative after refunds */
    int64_t lifetime_earned;               /* sum of EARN points (credits included) */
    int64_t redeemed;                      /* sum of REDEEM points (positive) */
    int64_t reversed;                      /* sum of REVERSAL points (positive) */
    double score[QUADRANT_COUNT];          /* decayed to scores_at */
    int64_t scores_at;
    int8_t stage[PROGRAM_MAX_LADDERS];     /* stage index per ladder, -1 = none yet */
    rule_state rules[PROGRAM_MAX_RULES];
    order_record *orders;                  /* oldest first; owned */
    int32_t norders, orders_cap;
    parked_credit *parked;                 /* credits held until the first own event; owned */
    int32_t nparked, parked_cap;
} profile;

/* An empty profile for customer_id (no allocation). */
void profile_init(profile *p, const char *customer_id);
/* Release the order records and parked credits. */
void profile_free(profile *p);
/* Deep copy; returns -1 when out of memory. */
int profile_copy(profile *dst, const profile *src);

/* Append the binary encoding to out. */
int profile_encode(const profile *p, const program *prog, buf *out);
/* Decode data, the stored profile of customer_id, into p (initialised here:
 * its customer id is customer_id's, whatever an encoding before version 4
 * stored). Returns 0, or -1 with err on bad or truncated input; p must be
 * freed either way. */
int profile_decode(profile *p, const program *prog, const char *customer_id, const void *data, size_t len, char *err,
                   size_t errlen);
/* The referred_by of an encoding, without decoding the rest: 1 (copied to out),
 * 0 when it names none, -1 when the encoding cannot be read. */
int profile_peek_referrer(const void *data, size_t len, char *out, size_t outlen);

/* Append "ladder:stage\n" for each stage stored in an encoding, whatever the
 * program (names as stored). 0, -1 when the encoding is corrupt, -2 when
 * memory runs out. */
int profile_stage_refs(const void *data, size_t len, buf *out);

/* Sum of the parked credits' points. */
int64_t profile_parked_points(const profile *p);

/* The persona: the quadrant with the highest score, or NULL before any score. */
const char *profile_persona(const profile *p);
/* Append the profile as one JSON object (what `fidelio profile` prints). */
int profile_to_json(const profile *p, const program *prog, buf *out);
/* The same object as a jansson value (the caller's: json_decref), NULL when
 * memory runs out. `fidelio diff` compares these. */
struct json_t;
struct json_t *profile_json(const profile *p, const program *prog);

#endif
