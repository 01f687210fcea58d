/* latency.h - where an input's time goes on its way to its outputs
 * (log.level=debug): histograms of ages in milliseconds, each taken at one
 * stage of the loop as "now - the input's Kafka timestamp" (or, for an
 * output, its Kafka timestamp - the time its batch was handed to the
 * producer). A fixed set of buckets: 1 ms wide up to 100 ms, then 5% wider
 * each, up to ~10 minutes; no allocation, reset per report. */
#ifndef FIDELIO_LATENCY_H
#define FIDELIO_LATENCY_H

#include <stdint.h>

#define LATENCY_BUCKETS 280

typedef struct latency_hist {
    long long n;                         /* observations since the last reset */
    long long bucket[LATENCY_BUCKETS];   /* counts per bucket (latency_bucket) */
} latency_hist;

/* The stages of the loop an input's age is taken at (see pipeline.c). */
typedef enum latency_stage {
    LAT_TAKEN,    /* polled from the consumer into a batch */
    LAT_APPLIED,  /* its batch decided and applied in Redis */
    LAT_HANDED,   /* its batch's outputs handed to the producer */
    LAT_OUTPUT,   /* an output's Kafka timestamp - its batch's hand-over (the producer and the broker) */
    LAT_STAGES
} latency_stage;

/* Count one age of ms milliseconds (negative: 0; clocks of one machine may
 * differ by a little). */
void latency_add(latency_hist *h, int64_t ms);
/* The q-quantile (0..1) in ms: the upper edge of the bucket holding it; 0 when empty. */
int64_t latency_quantile(const latency_hist *h, double q);
/* Forget every observation. */
void latency_reset(latency_hist *h);

#endif
