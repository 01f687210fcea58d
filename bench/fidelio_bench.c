/* fidelio_bench.c - the measuring tools of bench/run.sh (not part of fidelio):
 *
 *   fidelio-bench consume -b BROKERS -t TOPIC -n COUNT [-X KEY=VALUE]...
 *       a bare librdkafka group consumer: reads COUNT messages of TOPIC from
 *       the beginning in a fresh group and prints its rate after the group
 *       join (first message to last), the ceiling of any Kafka consumer here.
 *   fidelio-bench redis-apply -u REDIS_URL -n N [-c CUSTOMERS] [-d DEPTH] [-P PARTITIONS]
 *       the store alone (src/store.c) as the pipeline uses it: per round of
 *       DEPTH events, one store_fetch of their customers and ids (WATCH + reads)
 *       and one store_apply (the writes in MULTI/EXEC: the hot path, no Lua),
 *       N events over CUSTOMERS customers, payloads
 *       of the sizes bench/mem.sh measured in a run of layout 5 (profile 335 B, recorded outputs
 *       300 B, one ledger entry of 34 B), each event's
 *       partition (customer % PARTITIONS, default 64) committed after its call,
 *       so the next apply of the customer drops its outputs as in a run: the
 *       Redis ceiling. Every call carries the committed offset of each
 *       partition seen (store_committed): -P shows what that costs.
 *   fidelio-bench latency -b BROKERS -i EVENTS.jsonl -t TOPIC -R REWARDS -S STAGES
 *                         -W WARMUP_TOPIC -r RATE -s SECONDS [-w START_SECONDS] [-L LINGER_MS]
 *                         [-X KEY=VALUE]... [-D SAMPLES.tsv]
 *       produces the events of EVENTS.jsonl (fidelio gen, event ids ev-SEED-I)
 *       to TOPIC at a steady RATE for START_SECONDS (default 0) then SECONDS,
 *       each with its Kafka timestamp
 *       set to the moment it is produced, and reads the outputs from REWARDS
 *       and STAGES (from the beginning: fresh topics). Latency of an output =
 *       its Kafka timestamp - its source event's. Prints p50/p99/max over the
 *       run and p99 per 10 s of input time. The first START_SECONDS are the
 *       start-up (a fresh namespace: most customers are new, and a customer's
 *       first events make several outputs each; fresh topics): their figures are
 *       printed apart (start_* fields, "start-up:" line) and left out of the
 *       steady-state ones, which are what issue 10's target is stated on.
 *       Before the clock starts, one message
 *       to WARMUP_TOPIC is delivered: a real broker may take seconds to give a
 *       new idempotent producer its id, which is no part of Fidelio's latency;
 *       and the input topic's metadata is fetched. Latency is measured from the
 *       input's Kafka timestamp as the broker reports it in the delivery report
 *       (LogAppendTime topics: the real broker in bench/run.sh) or as set (the
 *       mock). The feeder's producer lingers LINGER_MS (default 50): librdkafka
 *       sends one request per partition, and at 1 ms a 64-partition feeder sent
 *       one request per event, loading the shared broker as no batching upstream
 *       would; with append times its linger is not counted either way. Its
 *       consumer's fetches wait for 64 KB or 100 ms: an output's Kafka timestamp
 *       does not depend on when it is read, and a fetch per few ms over the 128
 *       output partitions took the shared broker's CPU from what is measured. It prints
 *       how far its produce calls fell behind and its inputs' acknowledgement
 *       times; -D writes every output's times (TSV) for a closer look.
 *
 * Every command prints one result line of KEY=VALUE pairs on stdout (what
 * bench/run.sh reads) and details on stderr. Exit 0, 1 on failure, 2 usage. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "codec.h"
#include "store.h"

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* Set one librdkafka property or print why not. */
static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char why[512];
    if (rd_kafka_conf_set(conf, k, v, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "fidelio-bench: %s=%s: %s\n", k, v, why);
        return -1;
    }
    return 0;
}

/* Apply -X KEY=VALUE overrides. */
static int conf_extra(rd_kafka_conf_t *conf, char **kv, int n)
{
    for (int i = 0; i < n; i++) {
        char *eq = strchr(kv[i], '=');
        if (!eq) {
            fprintf(stderr, "fidelio-bench: -X wants KEY=VALUE, not '%s'\n", kv[i]);
            return -1;
        }
        *eq = 0;
        int rc = conf_set(conf, kv[i], eq + 1);
        *eq = '=';
        if (rc)
            return -1;
    }
    return 0;
}

/* ---- consume ------------------------------------------------------------------ */

static int cmd_consume(int argc, char **argv)
{
    const char *brokers = NULL, *topic = NULL;
    long long want = 0;
    char *extra[32];
    int nextra = 0, opt;
    while ((opt = getopt(argc, argv, "b:t:n:X:")) != -1) {
        switch (opt) {
        case 'b': brokers = optarg; break;
        case 't': topic = optarg; break;
        case 'n': want = atoll(optarg); break;
        case 'X': if (nextra < 32) extra[nextra++] = optarg; break;
        default: return 2;
        }
    }
    if (!brokers || !topic || want <= 0) {
        fprintf(stderr, "usage: fidelio-bench consume -b BROKERS -t TOPIC -n COUNT [-X KEY=VALUE]...\n");
        return 2;
    }
    char group[64], why[512];
    snprintf(group, sizeof(group), "fidelio-bench-%ld-%lld", (long)getpid(), (long long)clock_wall_ms());
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", brokers) || conf_set(conf, "group.id", group) ||
        conf_set(conf, "auto.offset.reset", "earliest") || conf_set(conf, "enable.auto.commit", "false") ||
        conf_extra(conf, extra, nextra)) {
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!rk) {
        fprintf(stderr, "fidelio-bench: %s\n", why);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) {
        fprintf(stderr, "fidelio-bench: subscribe %s: %s\n", topic, rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return 1;
    }
    double t_start = clock_mono_s(), t_first = 0, t_last = 0;
    long long n = 0, bytes = 0;
    while (!stop && n < want) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            if (clock_mono_s() - (t_last ? t_last : t_start) > 60) {
                fprintf(stderr, "fidelio-bench: no message for 60 s after %lld of %lld\n", n, want);
                break;
            }
            continue;
        }
        if (!m->err) {
            if (!n)
                t_first = clock_mono_s();
            n++;
            bytes += (long long)m->len;
            t_last = clock_mono_s();
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            fprintf(stderr, "fidelio-bench: consume: %s\n", rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (n < want)
        return 1;
    double s = t_last - t_first;
    fprintf(stderr, "consume: %lld messages (%lld bytes) in %.3f s after the first, which came %.2f s after start\n",
            n, bytes, s, t_first - t_start);
    printf("messages=%lld seconds=%.3f rate=%.0f join_s=%.2f\n", n, s, s > 0 ? (n - 1) / s : 0.0,
           t_first - t_start);
    return 0;
}

/* ---- redis-apply --------------------------------------------------------------- */

static int cmd_redis_apply(int argc, char **argv)
{
    const char *url = NULL, *prefix = "bench-apply:";
    long long n = 0, customers = 100000;
    int depth = 64, parts = 64, opt;
    while ((opt = getopt(argc, argv, "u:n:c:d:p:P:")) != -1) {
        switch (opt) {
        case 'u': url = optarg; break;
        case 'n': n = atoll(optarg); break;
        case 'c': customers = atoll(optarg); break;
        case 'd': depth = atoi(optarg); break;
        case 'p': prefix = optarg; break;
        case 'P': parts = atoi(optarg); break;
        default: return 2;
        }
    }
    if (!url || n <= 0 || customers <= 0 || depth <= 0 || parts <= 0) {
        fprintf(stderr, "usage: fidelio-bench redis-apply -u REDIS_URL -n N [-c CUSTOMERS] [-d DEPTH] [-p PREFIX] "
                        "[-P PARTITIONS]\n");
        return 2;
    }
    char err[512];
    store *s = store_open(url, prefix, INT64_C(2592000000), 10000, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "fidelio-bench: %s\n", err);
        return 1;
    }
    int rc = 1;
    int64_t *version = calloc((size_t)customers, sizeof(*version));
    store_apply_req *reqs = calloc((size_t)depth, sizeof(*reqs));
    char(*cids)[32] = calloc((size_t)depth, sizeof(*cids));
    char(*ids)[32] = calloc((size_t)depth, sizeof(*ids));
    store_profile *fp = calloc((size_t)depth, sizeof(*fp));
    store_seen *fs = calloc((size_t)depth, sizeof(*fs));
    static const uint8_t digest[STORE_DIGEST_LEN]; /* every event's: new ids, never compared */
    buf profile = {0}, outputs = {0};
    char ledger_entry[35];
    const char *ledger[1] = {ledger_entry};
    if (!version || !reqs || !cids || !ids || !fp || !fs) {
        fprintf(stderr, "fidelio-bench: out of memory\n");
        goto out;
    }
    for (int i = 0; i < 335; i++)
        if (buf_append(&profile, "p", 1) != 0)
            goto out;
    for (int i = 0; i < 300; i++)
        if (buf_append(&outputs, "o", 1) != 0)
            goto out;
    memset(ledger_entry, 'l', 34);
    ledger_entry[34] = 0;
    int64_t base = INT64_C(1767225600000);
    long long done = 0, bad = 0;
    double t0 = clock_mono_s();
    while (done < n && !stop) {
        int k = (int)(n - done < depth ? n - done : depth);
        for (int j = 0; j < k; j++) {
            long long i = done + j, c = i % customers;
            snprintf(cids[j], sizeof(cids[j]), "cust-%07lld", c);
            snprintf(ids[j], sizeof(ids[j]), "b-%lld", i);
            store_apply_req_free(&reqs[j]);
            reqs[j] = (store_apply_req){.customer_id = cids[j], .id = ids[j], .occurred_at = base + i * 100,
                                        .expected_version = version[c], .digest = digest, .profile = &profile,
                                        .outputs = &outputs, .partition = (int32_t)(c % parts), .offset = i,
                                        .ledger = ledger, .nledger = 1};
            store_profile_free(&fp[j]);
            store_seen_free(&fs[j]);
            fp[j] = (store_profile){.customer_id = cids[j]};
            fs[j] = (store_seen){.customer_id = cids[j], .id = ids[j], .digest = digest};
        }
        /* The pipeline's round: the fetch (WATCH and the reads its decision
         * needs), then the apply of what was decided on it. */
        if (store_fetch(s, fp, (size_t)k, fs, (size_t)k, err, sizeof(err)) != 0) {
            fprintf(stderr, "fidelio-bench: fetch: %s\n", err);
            goto out;
        }
        if (store_apply(s, reqs, (size_t)k, err, sizeof(err)) != 0) {
            fprintf(stderr, "fidelio-bench: apply: %s\n", err);
            goto out;
        }
        for (int j = 0; j < k; j++) /* committed, as the pipeline says after its commit */
            store_committed(s, false, reqs[j].partition, reqs[j].offset + 1);
        for (int j = 0; j < k; j++) {
            if (reqs[j].status == STORE_APPLIED)
                version[(done + j) % customers] = reqs[j].version;
            else
                bad++;
        }
        done += k;
    }
    double sec = clock_mono_s() - t0;
    fprintf(stderr, "redis-apply: %lld applies (depth %d, %lld customers) in %.2f s, %lld not applied\n", done, depth,
            customers, sec, bad);
    printf("applies=%lld seconds=%.3f rate=%.0f not_applied=%lld\n", done, sec, sec > 0 ? done / sec : 0.0, bad);
    rc = bad ? 1 : 0;
out:
    for (int j = 0; reqs && j < depth; j++)
        store_apply_req_free(&reqs[j]);
    for (int j = 0; fp && fs && j < depth; j++) {
        store_profile_free(&fp[j]);
        store_seen_free(&fs[j]);
    }
    free(fp);
    free(fs);
    free(version);
    free(reqs);
    free(cids);
    free(ids);
    buf_free(&profile);
    buf_free(&outputs);
    store_close(s);
    return rc;
}

/* ---- latency ------------------------------------------------------------------- */

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* The value at quantile q of sorted v[n]. */
static long long quantile(const long long *v, size_t n, double q)
{
    if (!n)
        return -1;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* Input number of a gen event id (ev-SEED-I), or -1. */
static long long event_index(const char *id)
{
    const char *dash = strrchr(id, '-');
    if (strncmp(id, "ev-", 3) != 0 || !dash)
        return -1;
    char *end;
    long long i = strtoll(dash + 1, &end, 10);
    return *end ? -1 : i;
}

/* One output observed: its Kafka timestamp and its source event's number. */
typedef struct lat_sample {
    long long out_ms; /* the output's Kafka timestamp */
    long long in;     /* its source event's number */
} lat_sample;

/* The feeder's inputs: when each was produced, acknowledged, and its Kafka
 * timestamp as the broker reports it (LogAppendTime) or as it was set. */
typedef struct feed_state {
    const int64_t *sent_ms;
    int64_t *acked_ms;  /* 0 until acknowledged */
    int64_t *in_ts;     /* the input's Kafka timestamp */
    long long failed, append_time;
} feed_state;

/* Delivery report of an input (its opaque: its number + 1). */
static void on_feed_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    feed_state *fs = opaque;
    long long i = (long long)(intptr_t)m->_private - 1;
    if (i < 0)
        return; /* the warm-up message */
    if (m->err) {
        fs->failed++;
        return;
    }
    fs->acked_ms[i] = clock_wall_ms();
    rd_kafka_timestamp_type_t tst;
    int64_t ts = rd_kafka_message_timestamp(m, &tst);
    /* librdkafka's mock cluster answers with a LogAppendTime that is none (not
     * a time near the produce call): only a plausible one is the broker's */
    if (tst == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME && ts >= fs->sent_ms[i] - 1000 && ts <= fs->acked_ms[i] + 1000) {
        fs->in_ts[i] = ts;
        fs->append_time++;
    }
}

/* p99 of v[0..n) (sorted in place) or -1. */
static long long p99_of(long long *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_ll);
    return quantile(v, n, 0.99);
}

/* Assign every partition of the named topics from the beginning. */
static int assign_all(rd_kafka_t *rk, const char *const *topics, int ntopics)
{
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(64);
    for (int t = 0; t < ntopics; t++) {
        const rd_kafka_metadata_t *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[t], NULL);
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (e || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt == 0) {
            fprintf(stderr, "fidelio-bench: metadata of %s: %s\n", topics[t],
                    e ? rd_kafka_err2str(e) : md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "none");
            if (md)
                rd_kafka_metadata_destroy(md);
            rd_kafka_topic_partition_list_destroy(parts);
            return -1;
        }
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
            rd_kafka_topic_partition_list_add(parts, topics[t], md->topics[0].partitions[i].id)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e) {
        fprintf(stderr, "fidelio-bench: assign: %s\n", rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

/* Print the p99 latency of each 10 s window of [from_s, from_s + len_s) of
 * input time (v[i]: the latency of samples[i]) and return the worst; wv is
 * room for every sample. */
static long long window_p99s(const lat_sample *samples, size_t nsamples, const long long *v, const double *sent_s,
                             double from_s, double len_s, long long *wv)
{
    long long worst = 0;
    for (int w = 0; w * 10 < (int)len_s; w++) {
        size_t k = 0;
        for (size_t i = 0; i < nsamples; i++) {
            double t = sent_s[samples[i].in] - from_s;
            if (t >= w * 10 && t < w * 10 + 10 && t < len_s)
                wv[k++] = v[i];
        }
        long long p = p99_of(wv, k);
        fprintf(stderr, " %lld", p);
        if (p > worst)
            worst = p;
    }
    return worst;
}

/* The same for the feeder's acknowledgements of its inputs 0..next-1. */
static long long ack_window_p99s(const double *sent_s, const int64_t *sent_ms, const int64_t *acked_ms, long long next,
                                 double from_s, double len_s, long long *wv)
{
    long long worst = 0;
    for (int w = 0; w * 10 < (int)len_s; w++) {
        size_t k = 0;
        for (long long i = 0; i < next; i++) {
            double t = sent_s[i] - from_s;
            if (t >= w * 10 && t < w * 10 + 10 && t < len_s && acked_ms[i])
                wv[k++] = acked_ms[i] - sent_ms[i];
        }
        long long p = p99_of(wv, k);
        fprintf(stderr, " %lld", p);
        if (p > worst)
            worst = p;
    }
    return worst;
}

static int cmd_latency(int argc, char **argv)
{
    const char *brokers = NULL, *input = NULL, *topic = NULL, *rewards = NULL, *stages = NULL, *warmup = NULL,
               *dump = NULL, *linger = "50";
    double rate = 0, seconds = 60, start_s = 0;
    char *extra[32];
    int nextra = 0, opt, rc = 1;
    while ((opt = getopt(argc, argv, "b:i:t:R:S:W:r:s:w:X:D:L:")) != -1) {
        switch (opt) {
        case 'b': brokers = optarg; break;
        case 'i': input = optarg; break;
        case 't': topic = optarg; break;
        case 'R': rewards = optarg; break;
        case 'S': stages = optarg; break;
        case 'W': warmup = optarg; break;
        case 'r': rate = atof(optarg); break;
        case 's': seconds = atof(optarg); break;
        case 'w': start_s = atof(optarg); break;
        case 'X': if (nextra < 32) extra[nextra++] = optarg; break;
        case 'D': dump = optarg; break;
        case 'L': linger = optarg; break;
        default: return 2;
        }
    }
    if (!brokers || !input || !topic || !rewards || !stages || !warmup || rate <= 0 || seconds <= 0 || start_s < 0) {
        fprintf(stderr, "usage: fidelio-bench latency -b BROKERS -i EVENTS.jsonl -t TOPIC -R REWARDS -S STAGES "
                        "-W WARMUP_TOPIC -r RATE -s SECONDS [-w START_SECONDS] [-L LINGER_MS] [-X KEY=VALUE]... "
                        "[-D SAMPLES.tsv]\n");
        return 2;
    }
    long long total = (long long)(rate * (start_s + seconds));
    char err[512], why[512];
    codec *c = codec_new(1 << 20, err, sizeof(err));
    codec_record *rec = calloc(1, sizeof(*rec));
    buf *msgs = calloc((size_t)total, sizeof(*msgs));
    char(*keys)[EVENT_ID_MAX + 1] = calloc((size_t)total, sizeof(*keys));
    int64_t *sent_ms = calloc((size_t)total, sizeof(*sent_ms));
    int64_t *acked_ms = calloc((size_t)total, sizeof(*acked_ms));
    int64_t *in_ts = calloc((size_t)total, sizeof(*in_ts));
    double *sent_s = calloc((size_t)total, sizeof(*sent_s));
    size_t nsamples = 0, capsamples = (size_t)total * 3 + 16;
    lat_sample *samples = malloc(capsamples * sizeof(*samples));
    long long *v = malloc(capsamples * sizeof(*v)), *wv = malloc(capsamples * sizeof(*wv)),
              *sv = malloc(capsamples * sizeof(*sv));
    feed_state fs = {.sent_ms = sent_ms, .acked_ms = acked_ms, .in_ts = in_ts};
    rd_kafka_t *prod = NULL, *cons = NULL;
    rd_kafka_topic_t *rkt = NULL;
    FILE *in = fopen(input, "r");
    char *line = NULL;
    size_t cap = 0;
    long long lineno = 0, loaded = 0;
    if (!c || !rec || !msgs || !keys || !sent_ms || !acked_ms || !in_ts || !sent_s || !samples || !v || !wv || !sv || !in) {
        fprintf(stderr, "fidelio-bench: %s\n", !c ? err : !in ? strerror(errno) : "out of memory");
        goto out;
    }
    /* Encode everything first: producing must not wait for the codec. */
    long n;
    while (loaded < total && (n = codec_read_jsonl(in, &line, &cap, &lineno)) >= 0) {
        if (codec_decode_json(SCHEMA_TOUCHPOINT, line, (size_t)n, rec, why, sizeof(why)) != EVENT_OK ||
            codec_encode_avro(c, SCHEMA_TOUCHPOINT, rec, &msgs[loaded], why, sizeof(why)) != EVENT_OK) {
            fprintf(stderr, "fidelio-bench: %s:%lld: %s\n", input, lineno, why);
            goto out;
        }
        if (event_index(rec->tp.event_id) != loaded) {
            fprintf(stderr, "fidelio-bench: %s:%lld: event id %s is not ev-SEED-%lld (fidelio gen)\n", input, lineno,
                    rec->tp.event_id, loaded);
            goto out;
        }
        memcpy(keys[loaded], rec->tp.customer_id, sizeof(keys[loaded]));
        loaded++;
    }
    if (loaded < total) {
        fprintf(stderr, "fidelio-bench: %s holds %lld events, %lld needed\n", input, loaded, total);
        goto out;
    }
    rd_kafka_conf_t *pc = rd_kafka_conf_new(), *cc = rd_kafka_conf_new();
    if (conf_set(pc, "bootstrap.servers", brokers) || conf_set(pc, "enable.idempotence", "true") ||
        conf_set(pc, "linger.ms", linger) || conf_extra(pc, extra, nextra) ||
        conf_set(cc, "bootstrap.servers", brokers) || conf_set(cc, "group.id", "fidelio-bench-latency") ||
        conf_set(cc, "enable.auto.commit", "false") || conf_set(cc, "fetch.wait.max.ms", "100") ||
        conf_set(cc, "fetch.min.bytes", "65536") ||
        conf_extra(cc, extra, nextra)) {
        rd_kafka_conf_destroy(pc);
        rd_kafka_conf_destroy(cc);
        goto out;
    }
    rd_kafka_conf_set_dr_msg_cb(pc, on_feed_dr);
    rd_kafka_conf_set_opaque(pc, &fs);
    if (!(prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, why, sizeof(why)))) {
        fprintf(stderr, "fidelio-bench: %s\n", why);
        rd_kafka_conf_destroy(pc);
        rd_kafka_conf_destroy(cc);
        goto out;
    }
    if (!(cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, why, sizeof(why)))) {
        fprintf(stderr, "fidelio-bench: %s\n", why);
        rd_kafka_conf_destroy(cc);
        goto out;
    }
    const char *outs[] = {rewards, stages};
    if (assign_all(cons, outs, 2) != 0)
        goto out;
    /* Warm the feeder up before its clock starts (none of it is Fidelio's
     * latency): a real broker may take seconds to give a new idempotent
     * producer its id (one message to WARMUP_TOPIC, delivered), and the input
     * topic's partitions and leaders must be known, or the first seconds of
     * input wait in the feeder's queue for them and reach the broker late,
     * in one burst. */
    if (!(rkt = rd_kafka_topic_new(prod, topic, NULL))) {
        fprintf(stderr, "fidelio-bench: topic %s: %s\n", topic, rd_kafka_err2str(rd_kafka_last_error()));
        goto out;
    }
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t we = rd_kafka_metadata(prod, 0, rkt, &md, 10000);
    if (!we && (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt == 0))
        we = md->topic_cnt == 1 && md->topics[0].err ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    int in_parts = we ? 0 : md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    if (we) {
        fprintf(stderr, "fidelio-bench: metadata of %s: %s\n", topic, rd_kafka_err2str(we));
        goto out;
    }
    we = rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(warmup), RD_KAFKA_V_VALUE("warm-up", 7),
                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (we || (we = rd_kafka_flush(prod, 60000)) != 0) {
        fprintf(stderr, "fidelio-bench: warm-up message to %s: %s\n", warmup, rd_kafka_err2str(we));
        goto out;
    }
    double t0 = clock_mono_s(), last_out = 0, behind_s = 0;
    long long next = 0, outputs = 0, unmatched = 0, out_append = 0;
    while (!stop) {
        double t = clock_mono_s();
        while (next < total && t0 + (double)next / rate <= t) {
            sent_ms[next] = in_ts[next] = clock_wall_ms();
            sent_s[next] = clock_mono_s() - t0;
            rd_kafka_resp_err_t e = rd_kafka_producev(
                prod, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(keys[next], strlen(keys[next])),
                RD_KAFKA_V_VALUE(msgs[next].data, msgs[next].len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_TIMESTAMP(sent_ms[next]), RD_KAFKA_V_OPAQUE((void *)(intptr_t)(next + 1)), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(prod, 1);
                continue;
            }
            if (e) {
                fprintf(stderr, "fidelio-bench: produce: %s\n", rd_kafka_err2str(e));
                goto out;
            }
            if (sent_s[next] - (double)next / rate > behind_s)
                behind_s = sent_s[next] - (double)next / rate;
            next++;
        }
        rd_kafka_poll(prod, 0);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 1);
        if (m) {
            if (!m->err) {
                int is_reward = strcmp(rd_kafka_topic_name(m->rkt), rewards) == 0;
                codec_schema s = is_reward ? SCHEMA_REWARD : SCHEMA_STAGE_CHANGE;
                rd_kafka_timestamp_type_t tst;
                int64_t ts = rd_kafka_message_timestamp(m, &tst);
                out_append += tst == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME;
                if (codec_decode_avro(c, s, m->payload, m->len, rec, why, sizeof(why)) == EVENT_OK) {
                    long long i = event_index(is_reward ? rec->reward.source_event_id : rec->stage.source_event_id);
                    if (i >= 0 && i < next && nsamples < capsamples) {
                        samples[nsamples++] = (lat_sample){.out_ms = ts, .in = i};
                    } else {
                        unmatched++;
                    }
                }
                outputs++;
                last_out = clock_mono_s();
            }
            rd_kafka_message_destroy(m);
        }
        /* Done when everything is sent and no output came for 5 s. */
        if (next == total && clock_mono_s() - (last_out > t0 + start_s + seconds ? last_out : t0 + start_s + seconds) > 5)
            break;
    }
    rd_kafka_flush(prod, 10000);
    rd_kafka_poll(prod, 0);
    if (!nsamples) {
        fprintf(stderr, "fidelio-bench: no output matched an input\n");
        goto out;
    }
    /* Latency = the output's Kafka timestamp - its input's (LogAppendTime
     * from the delivery report when the input topic has it, else the
     * CreateTime the feeder set); windows by when the input was produced. */
    for (size_t i = 0; i < nsamples; i++)
        v[i] = samples[i].out_ms - in_ts[samples[i].in];
    FILE *df = dump ? fopen(dump, "w") : NULL;
    if (df) { /* one line per output: input number, produced at (s), input ts, acked, output ts (ms) */
        fprintf(df, "input\tsent_s\tsent_ms\tin_ts_ms\tacked_ms\tout_ts_ms\n");
        for (size_t i = 0; i < nsamples; i++) {
            long long k = samples[i].in;
            fprintf(df, "%lld\t%.3f\t%lld\t%lld\t%lld\t%lld\n", k, sent_s[k], (long long)sent_ms[k],
                    (long long)in_ts[k], (long long)acked_ms[k], samples[i].out_ms);
        }
        fclose(df);
    }
    fprintf(stderr, "latency: %lld events to %d partitions at %.0f/s for %.0f s (after %.0f s of start-up), %lld outputs "
                    "(%lld unmatched); timestamps: input %s (%lld of %lld), output %s (%lld of %lld); p99 per 10 s:",
            total, in_parts, rate, seconds, start_s, outputs, unmatched,
            fs.append_time == next ? "LogAppendTime" : "CreateTime",
            fs.append_time == next ? fs.append_time : next - fs.append_time, next,
            out_append == outputs ? "LogAppendTime" : "CreateTime", out_append == outputs ? out_append : outputs - out_append,
            outputs);
    long long worst_window = window_p99s(samples, nsamples, v, sent_s, start_s, seconds, wv);
    fprintf(stderr, " ms\n");
    /* The feeder's own share, no part of Fidelio's latency: how far its
     * produce calls fell behind the schedule, and how long its inputs waited
     * in its producer for their acknowledgement. */
    long long unacked = 0;
    fprintf(stderr, "feeder: produce calls at most %.0f ms behind the schedule; input acknowledged after, p99 per 10 s:",
            behind_s * 1000);
    long long worst_ack = ack_window_p99s(sent_s, sent_ms, acked_ms, next, start_s, seconds, wv);
    for (long long i = 0; i < next; i++)
        unacked += !acked_ms[i];
    fprintf(stderr, " ms (%lld not acknowledged, %lld failed)\n", unacked, fs.failed);
    /* The start-up, apart: the same figures over the first start_s seconds. */
    long long start_worst = 0, start_ack = 0;
    if (start_s > 0) {
        fprintf(stderr, "start-up: the first %.0f s (a fresh namespace and topics), p99 per 10 s:", start_s);
        start_worst = window_p99s(samples, nsamples, v, sent_s, 0, start_s, wv);
        fprintf(stderr, " ms; feeder acknowledgements p99 per 10 s:");
        start_ack = ack_window_p99s(sent_s, sent_ms, acked_ms, next, 0, start_s, wv);
        fprintf(stderr, " ms\n");
    }
    size_t nstart = 0, nsteady = 0;
    for (size_t i = 0; i < nsamples; i++) {
        if (sent_s[samples[i].in] < start_s)
            sv[nstart++] = v[i];
        else
            v[nsteady++] = v[i];
    }
    if (!nsteady) {
        fprintf(stderr, "fidelio-bench: no output matched an input after the start-up\n");
        goto out;
    }
    qsort(v, nsteady, sizeof(*v), cmp_ll);
    qsort(sv, nstart, sizeof(*sv), cmp_ll);
    printf("samples=%zu p50_ms=%lld p99_ms=%lld max_ms=%lld worst_10s_p99_ms=%lld feeder_ack_worst_10s_p99_ms=%lld "
           "input_ts=%s output_ts=%s input_partitions=%d start_s=%.0f start_samples=%zu start_p50_ms=%lld "
           "start_p99_ms=%lld start_max_ms=%lld start_worst_10s_p99_ms=%lld start_feeder_ack_worst_10s_p99_ms=%lld\n",
           nsteady, quantile(v, nsteady, 0.5), quantile(v, nsteady, 0.99), v[nsteady - 1], worst_window, worst_ack,
           fs.append_time == next ? "LogAppendTime" : "CreateTime", out_append == outputs ? "LogAppendTime" : "CreateTime",
           in_parts, start_s, nstart, quantile(sv, nstart, 0.5), quantile(sv, nstart, 0.99),
           nstart ? sv[nstart - 1] : -1, start_worst, start_ack);
    rc = 0;
out:
    if (cons) {
        rd_kafka_consumer_close(cons);
        rd_kafka_destroy(cons);
    }
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (prod)
        rd_kafka_destroy(prod);
    for (long long i = 0; msgs && i < total; i++)
        buf_free(&msgs[i]);
    free(msgs);
    free(keys);
    free(sent_ms);
    free(acked_ms);
    free(in_ts);
    free(sent_s);
    free(samples);
    free(v);
    free(wv);
    free(sv);
    free(line);
    if (in)
        fclose(in);
    if (rec)
        codec_record_free(rec);
    free(rec);
    codec_free(c);
    return rc;
}

int main(int argc, char **argv)
{
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2) {
        optind = 2;
        if (strcmp(argv[1], "consume") == 0)
            return cmd_consume(argc, argv);
        if (strcmp(argv[1], "redis-apply") == 0)
            return cmd_redis_apply(argc, argv);
        if (strcmp(argv[1], "latency") == 0)
            return cmd_latency(argc, argv);
    }
    fprintf(stderr, "usage: fidelio-bench consume|redis-apply|latency ... (see bench/fidelio_bench.c)\n");
    return 2;
}
