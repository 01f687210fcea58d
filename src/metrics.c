/* metrics.c - a small thread-safe registry rendered in the Prometheus text format. */
#include "metrics.h"

#include "clock.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LABELS 2
#define MAX_BUCKETS 16
#define LABEL_MAX 160

typedef enum metric_type { COUNTER, GAUGE, HISTOGRAM } metric_type;

/* One family: its name, help, labels and (histograms) bucket bounds. */
typedef struct family {
    const char *name;
    metric_type type;
    const char *help;
    int nlabels;
    const char *labels[MAX_LABELS];
    const double *bounds;    /* histogram upper bounds, ascending; +Inf implied */
    int nbounds;
} family;

/* One series: label values and its value (or histogram state). */
typedef struct series {
    char values[MAX_LABELS][LABEL_MAX];
    double value;                   /* counter, gauge; histogram sum */
    unsigned long long count;       /* histogram observations */
    unsigned long long buckets[MAX_BUCKETS];
} series;

static const double latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1,     2.5,  5,    10, 30, 60};
static const double batch_bounds[] = {1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000};
#define NB(a) (int)(sizeof(a) / sizeof(a[0]))

static const family families[M_COUNT] = {
    [M_EVENTS_CONSUMED] = {"fidelio_events_consumed_total", COUNTER, "Input messages processed, counted once their batch is committed.", 1,
                           {"topic"}, NULL, 0},
    [M_EVENTS_APPLIED] = {"fidelio_events_applied_total", COUNTER,
                          "Events applied to Redis, by touchpoint type (CREDIT for credits).", 1, {"type"}, NULL, 0},
    [M_EVENTS_DUPLICATE] = {"fidelio_events_duplicate_total", COUNTER,
                            "Redelivered events found applied; their recorded outputs were re-emitted.", 0, {0},
                            NULL, 0},
    [M_EVENTS_CONFLICT] = {"fidelio_events_conflict_total", COUNTER,
                           "Events whose id was known with other content (sent to the DLQ).", 0, {0}, NULL, 0},
    [M_APPLY_FENCED] = {"fidelio_apply_fenced_total", COUNTER,
                        "Applies refused by the per-customer version check and recomputed.", 0, {0}, NULL, 0},
    [M_EVENTS_DLQ] = {"fidelio_events_dlq_total", COUNTER, "Input messages sent to the DLQ, by input and reason.", 2,
                      {"input", "reason"}, NULL, 0},
    [M_REWARDS] = {"fidelio_rewards_total", COUNTER, "Balance changes of applied events, by rule and kind.", 2,
                   {"rule", "kind"}, NULL, 0},
    [M_REWARD_POINTS] = {"fidelio_reward_points_total", COUNTER,
                         "Points of those balance changes (absolute value), by rule and kind.", 2, {"rule", "kind"},
                         NULL, 0},
    [M_STAGE_CHANGES] = {"fidelio_stage_changes_total", COUNTER, "Customers moved into a stage, by ladder and stage.",
                         2, {"ladder", "stage"}, NULL, 0},
    [M_OUTPUTS] = {"fidelio_outputs_produced_total", COUNTER,
                   "Rewards, stage changes and credits produced and acknowledged (re-emissions included).", 0, {0},
                   NULL, 0},
    [M_BATCHES] = {"fidelio_batches_total", COUNTER, "Batches completed (applied, produced, committed).", 0, {0}, NULL,
                   0},
    [M_BATCH_SIZE] = {"fidelio_batch_size_messages", HISTOGRAM, "Messages per batch.", 0, {0}, batch_bounds,
                      NB(batch_bounds)},
    [M_APPLY_SECONDS] = {"fidelio_apply_seconds", HISTOGRAM,
                         "Deciding a batch: Redis fetch, rule engine and apply script.", 0, {0}, latency_bounds,
                         NB(latency_bounds)},
    [M_PRODUCE_SECONDS] = {"fidelio_produce_seconds", HISTOGRAM,
                           "Producing a batch's outputs until every one is acknowledged.", 0, {0}, latency_bounds,
                           NB(latency_bounds)},
    [M_COMMIT_SECONDS] = {"fidelio_commit_seconds", HISTOGRAM, "Committing a batch's offsets.", 0, {0},
                          latency_bounds, NB(latency_bounds)},
    [M_REDIS_RTT] = {"fidelio_redis_roundtrip_seconds", HISTOGRAM, "One pipelined Redis round trip, by operation.", 1,
                     {"op"}, latency_bounds, NB(latency_bounds)},
    [M_CONSUMER_LAG] = {"fidelio_consumer_lag_messages", GAUGE,
                        "Messages behind the partition's end (librdkafka statistics).", 2, {"topic", "partition"},
                        NULL, 0},
    [M_PRODUCER_QUEUE] = {"fidelio_producer_queue_messages", GAUGE, "Messages and requests waiting in the producer.",
                          0, {0}, NULL, 0},
    [M_ASSIGNED] = {"fidelio_assigned_partitions", GAUGE, "Partitions assigned to this instance.", 0, {0}, NULL, 0},
    [M_REDIS_UP] = {"fidelio_redis_up", GAUGE, "1 when the last Redis round trip succeeded.", 0, {0}, NULL, 0},
    [M_REDIS_PAUSES] = {"fidelio_redis_pauses_total", COUNTER,
                        "Times consumption paused because Redis was unreachable.", 0, {0}, NULL, 0},
    [M_PROGRAM_INFO] = {"fidelio_program_info", GAUGE, "The rule program in use (value 1).", 2,
                        {"version", "digest"}, NULL, 0},
    [M_BUILD_INFO] = {"fidelio_build_info", GAUGE, "Build information (value 1).", 2, {"version", "librdkafka"},
                      NULL, 0},
    [M_LAST_LOOP] = {"fidelio_last_loop_timestamp_seconds", GAUGE, "Unix time of the main loop's last iteration.",
                     0, {0}, NULL, 0},
    [M_START_TIME] = {"process_start_time_seconds", GAUGE, "Unix time the process started.", 0, {0}, NULL, 0},
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static series *table[M_COUNT];
static int nseries[M_COUNT], capseries[M_COUNT];
static double last_beat;         /* CLOCK_MONOTONIC seconds, 0 = never */
static bool expect_partitions;

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The series of family id with these label values, created if absent (NULL
 * when out of memory: the update is lost, never the process). Lock held. */
static series *find(metric_id id, const char *const *values)
{
    const family *f = &families[id];
    for (int i = 0; i < nseries[id]; i++) {
        int l = 0;
        while (l < f->nlabels && !strncmp(table[id][i].values[l], values[l], LABEL_MAX - 1))
            l++;
        if (l == f->nlabels)
            return &table[id][i];
    }
    if (nseries[id] == capseries[id]) {
        int cap = capseries[id] ? capseries[id] * 2 : 8;
        series *t = realloc(table[id], (size_t)cap * sizeof(*t));
        if (!t)
            return NULL;
        table[id] = t;
        capseries[id] = cap;
    }
    series *s = &table[id][nseries[id]++];
    memset(s, 0, sizeof(*s));
    for (int l = 0; l < f->nlabels; l++)
        snprintf(s->values[l], LABEL_MAX, "%s", values[l] ? values[l] : "");
    return s;
}

static void labels_of(metric_id id, va_list ap, const char **values)
{
    for (int l = 0; l < families[id].nlabels; l++)
        values[l] = va_arg(ap, const char *);
}

enum update_op { OP_ADD, OP_SET, OP_OBSERVE };

/* The one place a series changes: find (or make) it under the lock and add
 * to it, set it, or observe v into its histogram buckets. */
static void update(metric_id id, enum update_op op, double v, const char **values)
{
    const family *f = &families[id];
    pthread_mutex_lock(&lock);
    series *s = find(id, values);
    if (s && op == OP_SET) {
        s->value = v;
    } else if (s) {
        s->value += v;
        if (op == OP_OBSERVE) {
            s->count++;
            for (int b = 0; b < f->nbounds; b++)
                if (v <= f->bounds[b])
                    s->buckets[b]++; /* cumulative, as the format wants */
        }
    }
    pthread_mutex_unlock(&lock);
}

/* The public setters: the label values follow v, one per label of the family. */
#define UPDATE_WITH_LABELS(op)                                                                                         \
    do {                                                                                                               \
        const char *values[MAX_LABELS] = {0};                                                                          \
        va_list ap;                                                                                                    \
        va_start(ap, v);                                                                                               \
        labels_of(id, ap, values);                                                                                     \
        va_end(ap);                                                                                                    \
        update(id, op, v, values);                                                                                     \
    } while (0)

void metrics_add(metric_id id, double v, ...)
{
    UPDATE_WITH_LABELS(OP_ADD);
}

void metrics_set(metric_id id, double v, ...)
{
    UPDATE_WITH_LABELS(OP_SET);
}

void metrics_observe(metric_id id, double v, ...)
{
    UPDATE_WITH_LABELS(OP_OBSERVE);
}

void metrics_clear(metric_id id)
{
    pthread_mutex_lock(&lock);
    nseries[id] = 0;
    pthread_mutex_unlock(&lock);
}

double metrics_value(metric_id id, ...)
{
    const char *values[MAX_LABELS] = {0};
    va_list ap;
    va_start(ap, id);
    labels_of(id, ap, values);
    va_end(ap);
    double v = 0;
    pthread_mutex_lock(&lock);
    const family *f = &families[id];
    for (int i = 0; i < nseries[id]; i++) {
        int l = 0;
        while (l < f->nlabels && !strncmp(table[id][i].values[l], values[l], LABEL_MAX - 1))
            l++;
        if (l == f->nlabels)
            v = table[id][i].value;
    }
    pthread_mutex_unlock(&lock);
    return v;
}

void metrics_reset(void)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < M_COUNT; i++) {
        free(table[i]);
        table[i] = NULL;
        nseries[i] = capseries[i] = 0;
    }
    last_beat = 0;
    expect_partitions = false;
    pthread_mutex_unlock(&lock);
}

const char *metrics_name(metric_id id) { return families[id].name; }

/* ---- rendering ------------------------------------------------------------------- */

/* A label value escaped as the format asks: backslash, quote and newline. */
static int put_label_value(buf *out, const char *v)
{
    int rc = 0;
    for (const char *p = v; *p && !rc; p++) {
        if (*p == '\\')
            rc = buf_puts(out, "\\\\");
        else if (*p == '"')
            rc = buf_puts(out, "\\\"");
        else if (*p == '\n')
            rc = buf_puts(out, "\\n");
        else
            rc = buf_append(out, p, 1);
    }
    return rc;
}

/* {a="x",b="y"} plus an optional extra label (le for buckets). */
static int put_labels(buf *out, const family *f, const series *s, const char *extra_name, const char *extra_value)
{
    int n = f->nlabels + (extra_name ? 1 : 0);
    if (n == 0)
        return 0;
    int rc = buf_puts(out, "{");
    for (int l = 0; l < f->nlabels && !rc; l++)
        rc = buf_printf(out, "%s%s=\"", l ? "," : "", f->labels[l]) || put_label_value(out, s->values[l]) ||
             buf_puts(out, "\"");
    if (extra_name && !rc)
        rc = buf_printf(out, "%s%s=\"%s\"", f->nlabels ? "," : "", extra_name, extra_value);
    return rc || buf_puts(out, "}");
}

static int put_number(buf *out, double v)
{
    if (isinf(v))
        return buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    if (v == (double)(long long)v && fabs(v) < 1e15)
        return buf_printf(out, "%lld", (long long)v);
    return buf_printf(out, "%.17g", v);
}

int metrics_render(buf *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    int rc = 0;
    pthread_mutex_lock(&lock);
    for (int id = 0; id < M_COUNT && !rc; id++) {
        const family *f = &families[id];
        rc = buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, type_names[f->type]);
        /* a family without labels always shows its one series, even at zero */
        if (f->nlabels == 0 && nseries[id] == 0 && !find((metric_id)id, (const char *const[MAX_LABELS]){0}))
            rc = -1;
        for (int i = 0; i < nseries[id] && !rc; i++) {
            const series *s = &table[id][i];
            if (f->type != HISTOGRAM) {
                rc = buf_puts(out, f->name) || put_labels(out, f, s, NULL, NULL) || buf_puts(out, " ") ||
                     put_number(out, s->value) || buf_puts(out, "\n");
                continue;
            }
            /* name_bucket{...,le="b"} for every bound and +Inf, then _sum and _count */
            char le[32];
            for (int b = 0; b <= f->nbounds && !rc; b++) {
                if (b < f->nbounds)
                    snprintf(le, sizeof(le), "%g", f->bounds[b]);
                else
                    snprintf(le, sizeof(le), "+Inf");
                rc = buf_printf(out, "%s_bucket", f->name) || put_labels(out, f, s, "le", le) ||
                     buf_printf(out, " %llu\n", b < f->nbounds ? s->buckets[b] : s->count);
            }
            rc = rc || buf_printf(out, "%s_sum", f->name) || put_labels(out, f, s, NULL, NULL) ||
                 buf_puts(out, " ") || put_number(out, s->value) || buf_printf(out, "\n%s_count", f->name) ||
                 put_labels(out, f, s, NULL, NULL) || buf_printf(out, " %llu\n", s->count);
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void metrics_process_start(const char *version, const char *librdkafka_version)
{
    metrics_set(M_BUILD_INFO, 1, version, librdkafka_version);
    metrics_set(M_START_TIME, (double)(long long)wall_s());
}

/* ---- health ---------------------------------------------------------------------- */

void metrics_heartbeat(void)
{
    double wall = wall_s();
    pthread_mutex_lock(&lock);
    last_beat = clock_mono_s();
    series *s = find(M_LAST_LOOP, (const char *const[MAX_LABELS]){0});
    if (s)
        s->value = wall;
    pthread_mutex_unlock(&lock);
}

void metrics_expect_partitions(bool expect)
{
    pthread_mutex_lock(&lock);
    expect_partitions = expect;
    pthread_mutex_unlock(&lock);
}

bool metrics_alive(long long timeout_ms, double *age_s)
{
    pthread_mutex_lock(&lock);
    double beat = last_beat;
    pthread_mutex_unlock(&lock);
    double age = beat > 0 ? clock_mono_s() - beat : -1;
    if (age_s)
        *age_s = age;
    return beat > 0 && age * 1000 <= (double)timeout_ms;
}

bool metrics_ready(char *why, size_t whylen)
{
    double assigned = metrics_value(M_ASSIGNED), redis = metrics_value(M_REDIS_UP);
    pthread_mutex_lock(&lock);
    bool expect = expect_partitions;
    pthread_mutex_unlock(&lock);
    if (redis < 1) {
        snprintf(why, whylen, "redis unreachable");
        return false;
    }
    if (expect && assigned < 1) {
        snprintf(why, whylen, "no partitions assigned");
        return false;
    }
    snprintf(why, whylen, "ready");
    return true;
}

/* ---- librdkafka statistics --------------------------------------------------------- */

int metrics_kafka_stats(const char *json, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!root)
        return -1;
    json_t *topics = json_object_get(root, "topics");
    const char *tname;
    json_t *topic;
    metrics_clear(M_CONSUMER_LAG);
    json_object_foreach(topics, tname, topic)
    {
        const char *pname;
        json_t *part;
        json_object_foreach(json_object_get(topic, "partitions"), pname, part)
        {
            json_int_t p = json_integer_value(json_object_get(part, "partition"));
            json_int_t lag = json_integer_value(json_object_get(part, "consumer_lag"));
            const char *fetch_state = json_string_value(json_object_get(part, "fetch_state"));
            /* -1: the internal unassigned partition; a lag of -1: not known yet */
            if (p < 0 || lag < 0 || !fetch_state || !strcmp(fetch_state, "none"))
                continue;
            metrics_set(M_CONSUMER_LAG, (double)lag, tname, pname);
        }
    }
    json_decref(root);
    return 0;
}
