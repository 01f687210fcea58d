/* metrics.h - the process's counters, gauges and histograms, and its health.
 *
 * One registry per process (the pipeline updates it, the HTTP server's
 * thread renders it): every call takes one mutex, so updates are made per
 * batch, not per event. The families are fixed (metric_id); a family's
 * series are told apart by label values, given as that many `const char *`
 * arguments after the value. metrics_render() writes the Prometheus text
 * exposition format (version 0.0.4).
 *
 * Health: the main loop calls metrics_heartbeat() on every iteration;
 * /healthz fails when the last beat is older than the liveness timeout.
 * /readyz needs partitions assigned (when a consumer runs) and Redis
 * reachable. */
#ifndef FIDELIO_METRICS_H
#define FIDELIO_METRICS_H

#include <stdbool.h>

#include "buf.h"

typedef enum metric_id {
    M_EVENTS_CONSUMED,   /* counter {topic}: messages taken into batches */
    M_EVENTS_APPLIED,    /* counter {type}: applied touchpoints by type, CREDIT for credits */
    M_EVENTS_DUPLICATE,  /* counter: redeliveries found applied (outputs re-emitted) */
    M_EVENTS_CONFLICT,   /* counter: a known event id with other content (DLQ event_id_conflict) */
    M_APPLY_FENCED,      /* counter: applies refused by the version check and recomputed */
    M_EVENTS_DLQ,        /* counter {input, reason}: to the DLQ */
    M_REWARDS,           /* counter {rule, kind}: balance changes of applied events */
    M_REWARD_POINTS,     /* counter {rule, kind}: |points| of those changes */
    M_STAGE_CHANGES,     /* counter {ladder, stage}: moves into a stage */
    M_OUTPUTS,           /* counter: outputs produced (re-emissions included) */
    M_BATCHES,           /* counter: batches completed */
    M_BATCH_SIZE,        /* histogram: messages per batch */
    M_APPLY_SECONDS,     /* histogram: fetch + engine + apply of a batch */
    M_PRODUCE_SECONDS,   /* histogram: producing a batch's outputs until all are acknowledged */
    M_COMMIT_SECONDS,    /* histogram: the offset commit */
    M_REDIS_RTT,         /* histogram {op}: one pipelined Redis round trip */
    M_CONSUMER_LAG,      /* gauge {topic, partition}: from librdkafka statistics */
    M_PRODUCER_QUEUE,    /* gauge: messages waiting in the producer */
    M_ASSIGNED,          /* gauge: partitions assigned to this instance */
    M_REDIS_UP,          /* gauge: 1 when the last Redis round trip succeeded */
    M_REDIS_PAUSES,      /* counter: consumption paused because Redis was unreachable */
    M_PROGRAM_INFO,      /* gauge {version, digest}: 1 for the program in use */
    M_BUILD_INFO,        /* gauge {version, librdkafka}: 1 */
    M_LAST_LOOP,         /* gauge: unix time of the main loop's last heartbeat */
    M_START_TIME,        /* gauge: unix time the process started serving */
    M_COUNT
} metric_id;

/* Forget every series (tests) and reset the health state. */
void metrics_reset(void);
/* Add v (>= 0) to a counter, v to a gauge. Label values follow, as many as
 * the family has labels; a series is created on first use. */
void metrics_add(metric_id id, double v, ...);
/* Set a gauge. */
void metrics_set(metric_id id, double v, ...);
/* Record one observation in a histogram. */
void metrics_observe(metric_id id, double v, ...);
/* Drop every series of a family (e.g. the lag of partitions no longer held). */
void metrics_clear(metric_id id);
/* The current value of a counter or gauge series (tests, /readyz); 0 if absent. */
double metrics_value(metric_id id, ...);
/* Append the whole registry in the Prometheus text format. */
int metrics_render(buf *out);
/* Name of a family ("fidelio_events_applied_total"). */
const char *metrics_name(metric_id id);

/* Build info and start time, once at start-up. */
void metrics_process_start(const char *version, const char *librdkafka_version);

/* Health. */
void metrics_heartbeat(void);
/* A consumer runs in this process: readiness needs assigned partitions. */
void metrics_expect_partitions(bool expect);
/* Whether the process is alive: its loop beat within timeout_ms. */
bool metrics_alive(long long timeout_ms, double *age_s);
/* Whether it is ready: partitions assigned (if expected) and Redis up. why
 * gets a short reason when not. */
bool metrics_ready(char *why, size_t whylen);

/* Parse a librdkafka statistics JSON document and set the consumer lag per
 * partition (partitions absent from it are dropped). Returns 0 or -1. */
int metrics_kafka_stats(const char *json, size_t len);

#endif
