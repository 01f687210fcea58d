/* report.h - the programme's figures (`fidelio report`, /api/report, the
 * control room) kept as incremental aggregates, so that reading them costs
 * the same at 1,000 or 1,000,000 customers.
 *
 * Each apply that takes effect adds its deltas to one hash per namespace,
 * <prefix>aggregates, inside the store's apply script (store.h): the deltas
 * are counted exactly when the apply is (a redelivery, a fenced or refused
 * apply adds nothing). Fields, '|' separated:
 *
 *   customers                          profiles created
 *   events|<TYPE>                      applied touchpoints by type; events|CREDIT for credits
 *   stage|<ladder>|<stage>             customers now at that stage (+1 in, -1 out)
 *   persona|<user|consumer|buyer>      customers whose persona (highest quadrant score
 *                                      after their last event) is that one
 *   points|issued|redeemed|reversed    sums of the profiles' lifetime_earned, redeemed, reversed
 *   points|balance                     sum of balances: the programme's liability
 *   rule|<rule>|<KIND>|n, ...|points   balance changes and their signed points by rule and kind
 *   day|<YYYY-MM-DD>|<rule>            signed points by rule per UTC day of event time
 *   dlq|<reason>                       input sent to the DLQ (added after the batch's commit:
 *                                      at most once, a crash right after a commit may miss a batch's)
 *   complete                           "1" when the aggregates were kept since the namespace began,
 *                                      "0" once a run had pipeline.report_aggregates=0
 *   hashtable                          no figure: a long text that keeps the hash a hashtable in
 *                                      Redis (store.h); store_aggregates leaves it out
 *
 * Reading: one HGETALL; its size grows with rules x days of event time, never
 * with customers. */
#ifndef FIDELIO_REPORT_H
#define FIDELIO_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "profile.h"
#include "program.h"
#include "rules.h"

struct store;

/* Field/delta pairs of one apply: 1 event + 1 customer + 2 personas +
 * 2 per ladder + 4 points + 3 per reward. */
#define REPORT_MAX_DELTAS (8 + 2 * PROGRAM_MAX_LADDERS + 3 * PROGRAM_MAX_RULES)

/* What the deltas of one apply are computed from: the profile before it. */
typedef struct report_before {
    bool exists;                        /* the customer had a profile */
    int8_t stage[PROGRAM_MAX_LADDERS];
    const char *persona;                /* static string or NULL */
    int64_t balance, earned, redeemed, reversed;
} report_before;

/* What a delta counts in the process metrics (report_deltas_to_metrics). */
typedef enum report_metric {
    RM_BY_FIELD,                        /* unknown: read from the field's name (deltas made by hand) */
    RM_NONE,                            /* nothing (customers, personas, points, days, leaving a stage) */
    RM_EVENTS,                          /* events|<TYPE> */
    RM_STAGE,                           /* stage|<ladder>|<stage>, entering it */
    RM_REWARDS,                         /* rule|<rule>|<KIND>|n */
    RM_REWARD_POINTS,                   /* rule|<rule>|<KIND>|points */
} report_metric;

/* The deltas of one apply, ready for the store: argv holds 2*n strings
 * (field, signed integer) pointing into text. */
typedef struct report_deltas {
    buf text;                           /* owned */
    const char *argv[2 * REPORT_MAX_DELTAS];
    int64_t val[REPORT_MAX_DELTAS];     /* the deltas as numbers (argv's odd strings) */
    uint8_t metric[REPORT_MAX_DELTAS];  /* report_metric of each */
    int n;                              /* pairs */
} report_deltas;

/* Remember what the deltas are computed against. */
void report_capture(const profile *p, bool exists, report_before *b);
/* The deltas of an apply that turned before into after with out; type is
 * the touchpoint type's name or "CREDIT". Returns 0 or -1 (out of memory). */
int report_compute(const program *prog, const report_before *before, const profile *after, const engine_output *out,
                   const char *type, report_deltas *d);
void report_deltas_free(report_deltas *d);

/* Feed an applied event's deltas into the process metrics (rewards, points,
 * stage changes, events applied). */
void report_deltas_to_metrics(const report_deltas *d);

/* A batch's deltas summed per metrics series, so that the metrics (a mutex
 * and a search of the series per update) are updated once per series and
 * batch rather than once per event: the same totals, the series created in
 * the same order. The fields are borrowed from the report_deltas added: flush
 * before those change. Zero it (= {0}) before the first use. */
#define REPORT_METRICS_SLOTS 256
typedef struct report_metric_sum {
    const char *field;                  /* "events|...", "stage|...", "rule|..."; borrowed */
    uint64_t hash;
    long long sum;                      /* summed deltas (rule|...|points: summed magnitudes) */
} report_metric_sum;
typedef struct report_metrics {
    report_metric_sum sums[REPORT_METRICS_SLOTS / 2]; /* in order of first appearance */
    int n;
    int16_t slot[REPORT_METRICS_SLOTS]; /* hash -> index into sums + 1; 0 empty */
} report_metrics;
/* Add an applied event's deltas (flushing first when the series are full). */
void report_metrics_add(report_metrics *m, const report_deltas *d);
/* Add the sums to the process metrics and empty m. */
void report_metrics_flush(report_metrics *m);

/* DLQ reasons of one batch, counted for the metrics and the report. */
#define REPORT_DLQ_REASONS 48
typedef struct report_dlq {
    char reason[REPORT_DLQ_REASONS][64];
    long long n[REPORT_DLQ_REASONS];
    int count;
} report_dlq;

/* Count one input (touchpoint or credit) sent to the DLQ for reason: the
 * metrics at once, the report on report_dlq_flush. */
void report_dlq_note(report_dlq *d, const char *input, const char *reason);
/* The noted counts as field/count pairs of the aggregates hash. */
typedef struct report_dlq_fields {
    char fields[REPORT_DLQ_REASONS][80];
    char counts[REPORT_DLQ_REASONS][24];
    const char *pairs[2 * REPORT_DLQ_REASONS]; /* field, count, ... into the arrays above */
    size_t n;                                  /* pairs */
} report_dlq_fields;
void report_dlq_pairs(const report_dlq *d, report_dlq_fields *f);
/* Count one for the report only (no metrics). */
void report_dlq_count(report_dlq *d, const char *reason);
/* Add the noted counts to the namespace's aggregates (after the commit). */
int report_dlq_flush(const report_dlq *d, struct store *s, char *err, size_t errlen);

/* The report of a namespace as JSON (deterministic: the page and `report
 * --json` print the same bytes for the same state). prog orders ladders and
 * rules; figures for ids it does not know are listed after its own. */
int report_json(struct store *s, const program *prog, const char *key_prefix, buf *out, char *err, size_t errlen);
/* The same figures as text tables. */
int report_text(struct store *s, const program *prog, const char *key_prefix, buf *out, char *err, size_t errlen);

/* Where the HTTP server's /api/report reads from: its own read-only
 * connection, opened on first use, used by that one thread only. */
typedef struct report_source {
    const char *redis_url;      /* borrowed */
    const char *key_prefix;     /* borrowed */
    const program *prog;        /* borrowed; swapped atomically by a reload (__atomic_store_n) */
    struct store *store;        /* owned; NULL until first use or after an error */
} report_source;

/* An http_report_fn over a report_source: report_json, reconnecting as needed. */
int report_source_json(void *ctx, buf *out, char *err, size_t errlen);
void report_source_close(report_source *rs);

#endif
