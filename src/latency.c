/* latency.c - histograms of ages in ms (latency.h). */
#include "latency.h"

#include <math.h>
#include <string.h>

/* Bucket of ms: one per ms below 100, then each 5% wider than the last. */
static int latency_bucket(int64_t ms)
{
    if (ms < 100)
        return ms < 0 ? 0 : (int)ms;
    int b = 100 + (int)(log((double)ms / 100.0) / log(1.05));
    return b < LATENCY_BUCKETS ? b : LATENCY_BUCKETS - 1;
}

/* The largest age (ms) bucket b holds. */
static int64_t latency_upper(int b)
{
    if (b < 100)
        return b;
    return (int64_t)ceil(100.0 * pow(1.05, b - 100 + 1)) - 1;
}

void latency_add(latency_hist *h, int64_t ms)
{
    h->bucket[latency_bucket(ms)]++;
    h->n++;
}

int64_t latency_quantile(const latency_hist *h, double q)
{
    if (h->n == 0)
        return 0;
    long long rank = (long long)ceil(q * (double)h->n), seen = 0;
    if (rank < 1)
        rank = 1;
    for (int b = 0; b < LATENCY_BUCKETS; b++) {
        seen += h->bucket[b];
        if (seen >= rank)
            return latency_upper(b);
    }
    return latency_upper(LATENCY_BUCKETS - 1);
}

void latency_reset(latency_hist *h) { memset(h, 0, sizeof(*h)); }
