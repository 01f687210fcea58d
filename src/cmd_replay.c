/* cmd_replay.c - `fidelio replay`: the touchpoints topic, or a range of it,
 * into a namespace of its own (a rebuild, a backfill, a what-if with another
 * rule program), with the pipeline of `fidelio run` in assign mode
 * (pipeline.h: pipeline_source): its own consumer with assigned partitions and
 * no group.id, so it can never commit on the live group; its progress kept in
 * the target namespace; referral credits applied in-process, as `simulate`
 * does. README: Backfills and what-if; docs/design.md: Replay. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "clock.h"
#include "kafka.h"
#include "log.h"
#include "pipeline.h"
#include "program.h"
#include "registry.h"
#include "report.h"
#include "store.h"
#include "timeutil.h"

static const char help[] =
    "usage: fidelio replay --namespace NAME [--from WHERE] [--to WHEN] [-r RULES]\n"
    "                      [--outputs none|topics] [--resume | --wipe] [--follow]\n"
    "                      [--into-live] [--report FILE] [OPTIONS]\n\n"
    "Replay the touchpoints topic (topics.touchpoints) into namespace NAME (Redis\n"
    "key prefix NAME:) with the engine, store and pipeline of `fidelio run`, read\n"
    "by one process that owns every partition: its partitions are assigned, it has\n"
    "no consumer group (nothing is ever committed on the live one), and referral\n"
    "credits are applied right after the event that earned them, as `simulate`\n"
    "does. Events are taken in one deterministic order: the partitions merged by\n"
    "message timestamp (then partition number). From the beginning into an empty\n"
    "namespace, the profiles are those `simulate` computes over the same events in\n"
    "that order, byte for byte.\n\n"
    "      --namespace NAME  target namespace: letters, digits, '.', '_', '-' (a\n"
    "                        trailing ':' is allowed); refused if it is the live one\n"
    "                        (redis.key_prefix) or overlaps it, unless --into-live\n"
    "      --from WHERE      beginning (default), a time (ISO-8601 or epoch ms: the\n"
    "                        first message at or after it, offsets-for-times), or\n"
    "                        PARTITION:OFFSET,... (unlisted partitions: beginning)\n"
    "      --to WHEN         end (default: the end when the replay starts) or a time:\n"
    "                        messages before it\n"
    "  -r, --rules FILE      rule program (a what-if); default rules.path or built-in\n"
    "      --outputs MODE    none (default): rewards, stage changes and DLQ records are\n"
    "                        counted, not produced; topics: produced to the namespace's\n"
    "                        own topics, <topic>-NAME (the live ones with --into-live)\n"
    "      --resume          continue a replay that stopped (killed, interrupted)\n"
    "      --wipe            delete the namespace's keys first (their count is printed)\n"
    "      --follow          after catching up, keep consuming new events (until SIGTERM)\n"
    "      --into-live       allow the live namespace (and its topics) as the target\n"
    "      --report FILE     also write the final report as JSON\n"
    "A target that holds keys is refused (exit 2) unless --resume or --wipe.\n" CLI_COMMON_HELP;

/* One partition of the source: its range and the messages fetched ahead. */
typedef struct rpart {
    int32_t partition;
    int64_t start;              /* offset this run began at (progress display) */
    int64_t next;               /* next offset to hand to the pipeline */
    int64_t stop;               /* hand out offsets below it; INT64_MAX with --follow */
    int64_t kept;               /* next offset of the last applied batch: the progress */
    bool eof;                   /* consumed to the partition's current end */
    int64_t eof_at;             /* the end it reported */
    bool paused;                /* fetching paused: enough buffered, or past stop */
    rd_kafka_message_t **q;     /* buffered messages in offset order; owned */
    int qhead, qlen, qcap;
} rpart;

/* The replay's source and progress (pipeline_source ctx). */
typedef struct replay {
    const config *cfg;          /* the target's configuration; borrowed */
    const program *prog;        /* borrowed */
    rd_kafka_t *rk;             /* the pipeline's consumer; borrowed */
    rpart *parts;               /* owned */
    int nparts;
    bool follow;
    const char *outputs;        /* "none" or "topics" */
    store *st;                  /* own connection: the progress key; owned */
    bool tty;                   /* progress lines on stderr */
    double t0, last_show;
    long long total;            /* events to read (bounded replays) */
    double held_s;              /* seconds the merge waited with a message in hand for another
                                   partition's next fetch (the price of the deterministic order) */
    char err[512];
} replay;

#define REPLAY_QUEUE_HIGH 2000 /* pause a partition's fetching with this many buffered */
#define REPLAY_QUEUE_LOW 500   /* and resume it below this */
#define REPLAY_TIMEOUT_MS 10000

static rpart *find_part(replay *r, int32_t partition)
{
    for (int i = 0; i < r->nparts; i++)
        if (r->parts[i].partition == partition)
            return &r->parts[i];
    return NULL;
}

static void pause_part(replay *r, rpart *p, bool pause)
{
    if (p->paused == pause)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    if (!l)
        return;
    rd_kafka_topic_partition_list_add(l, r->cfg->topic_touchpoints, p->partition);
    if (pause)
        rd_kafka_pause_partitions(r->rk, l);
    else
        rd_kafka_resume_partitions(r->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    p->paused = pause;
}

/* Whether a partition has handed out everything of its range. */
static bool finished(const rpart *p)
{
    return p->next >= p->stop || (p->eof && p->qlen == 0 && p->eof_at >= p->stop);
}

/* Take a message from the consumer into its partition's buffer. */
static void take(replay *r, rd_kafka_message_t *m)
{
    rpart *p = find_part(r, m->partition);
    if (!p || (m->rkt && strcmp(rd_kafka_topic_name(m->rkt), r->cfg->topic_touchpoints) != 0)) {
        rd_kafka_message_destroy(m);
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        p->eof = true;
        p->eof_at = m->offset;
        rd_kafka_message_destroy(m);
        return;
    }
    if (m->err) {
        log_warn("replay consumer: %s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return;
    }
    if (m->offset >= p->stop) { /* past the range: stop fetching this partition */
        pause_part(r, p, true);
        rd_kafka_message_destroy(m);
        return;
    }
    if (m->offset < p->next) {
        rd_kafka_message_destroy(m);
        return;
    }
    if (p->qlen == p->qcap) {
        int cap = p->qcap ? p->qcap * 2 : 256;
        rd_kafka_message_t **q = malloc((size_t)cap * sizeof(*q));
        if (!q) { /* dropped before it is counted: fetched again after a resume */
            log_error("replay: out of memory buffering partition %d", (int)p->partition);
            rd_kafka_message_destroy(m);
            return;
        }
        for (int i = 0; i < p->qlen; i++)
            q[i] = p->q[(p->qhead + i) % p->qcap];
        free(p->q);
        p->q = q;
        p->qcap = cap;
        p->qhead = 0;
    }
    p->q[(p->qhead + p->qlen++) % p->qcap] = m;
    p->eof = false;
    if (p->qlen >= REPLAY_QUEUE_HIGH)
        pause_part(r, p, true);
}

/* pipeline_source.next: the earliest head among the partitions (message
 * timestamp, then partition number), once every unfinished partition has one
 * (with --follow, a partition at its end does not hold the others back). */
static rd_kafka_message_t *src_next(void *ctx, int timeout_ms, bool *done)
{
    replay *r = ctx;
    double deadline = clock_mono_s() + timeout_ms / 1000.0;
    for (;;) {
        rd_kafka_message_t *m;
        while ((m = rd_kafka_consumer_poll(r->rk, 0)))
            take(r, m);
        rpart *best = NULL;
        int64_t best_ts = 0;
        bool blocked = false, all_done = true;
        for (int i = 0; i < r->nparts; i++) {
            rpart *p = &r->parts[i];
            if (finished(p))
                continue;
            all_done = false;
            if (p->qlen == 0) {
                if (!(r->follow && p->eof))
                    blocked = true;
                continue;
            }
            int64_t ts = rd_kafka_message_timestamp(p->q[p->qhead], NULL);
            if (!best || ts < best_ts || (ts == best_ts && p->partition < best->partition)) {
                best = p;
                best_ts = ts;
            }
        }
        if (all_done) {
            *done = true;
            return NULL;
        }
        if (best && !blocked) {
            m = best->q[best->qhead];
            best->qhead = (best->qhead + 1) % best->qcap;
            best->qlen--;
            best->next = m->offset + 1;
            if (best->paused && best->qlen < REPLAY_QUEUE_LOW && best->next < best->stop)
                pause_part(r, best, false);
            return m;
        }
        int wait = (int)((deadline - clock_mono_s()) * 1000);
        if (wait <= 0)
            return NULL;
        double w0 = clock_mono_s();
        if ((m = rd_kafka_consumer_poll(r->rk, wait < 100 ? wait : 100)))
            take(r, m);
        if (best) /* held back by a partition with nothing fetched yet */
            r->held_s += clock_mono_s() - w0;
    }
}

/* pipeline_source.stop: release the buffered messages (before the consumer goes). */
static void src_stop(void *ctx)
{
    replay *r = ctx;
    for (int i = 0; i < r->nparts; i++) {
        rpart *p = &r->parts[i];
        for (int k = 0; k < p->qlen; k++)
            rd_kafka_message_destroy(p->q[(p->qhead + k) % p->qcap]);
        p->qlen = 0;
    }
}

/* pipeline_source.start: assign every partition at its next offset. */
static int src_start(void *ctx, rd_kafka_t *rk, char *err, size_t errlen)
{
    replay *r = ctx;
    r->rk = rk;
    r->t0 = clock_mono_s(); /* the rate counts from here, as run's from its assignment */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->nparts);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < r->nparts; i++)
        rd_kafka_topic_partition_list_add(l, r->cfg->topic_touchpoints, r->parts[i].partition)->offset =
            r->parts[i].next;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(err, errlen, "assigning the partitions of %s: %s", r->cfg->topic_touchpoints, rd_kafka_err2str(e));
        return -1;
    }
    for (int i = 0; i < r->nparts; i++)
        if (finished(&r->parts[i]))
            pause_part(r, &r->parts[i], true);
    return 0;
}

/* The progress as text: what was replayed how, and per partition the next
 * offset of the last applied batch and the end of the range (-1: --follow). */
static int progress_text(const replay *r, buf *out)
{
    buf_reset(out);
    int rc = buf_printf(out, "fidelio-replay 1\ntopic %s\nprogram %s %s\noutputs %s\n", r->cfg->topic_touchpoints,
                        r->prog->version, r->prog->digest, r->outputs);
    for (int i = 0; i < r->nparts && rc == 0; i++)
        rc = buf_printf(out, "p %" PRId32 " %" PRId64 " %" PRId64 "\n", r->parts[i].partition, r->parts[i].kept,
                        r->parts[i].stop == INT64_MAX ? -1 : r->parts[i].stop);
    return rc;
}

static int write_progress(replay *r, const char *const *dlq_pairs, size_t n, char *err, size_t errlen)
{
    buf text = {0};
    int rc = progress_text(r, &text) != 0 ? -1
                                           : store_meta_set(r->st, "replay", text.data, text.len, dlq_pairs, n, err,
                                                            errlen);
    if (rc == -1 && !text.data)
        snprintf(err, errlen, "out of memory");
    buf_free(&text);
    return rc;
}

/* pipeline_source.commit: the batch is applied and its outputs acknowledged:
 * keep its next offsets in <prefix>replay and add its DLQ counts to the
 * report, in one MULTI/EXEC. Written after the applies, so a replay killed in between reads the batch again on --resume
 * and finds its events applied (dedupe records): nothing lost, nothing twice. */
static int src_commit(void *ctx, const rd_kafka_topic_partition_list_t *next, const char *const *dlq_pairs, size_t n,
                      char *err, size_t errlen)
{
    replay *r = ctx;
    for (int i = 0; i < next->cnt; i++) {
        rpart *p = find_part(r, next->elems[i].partition);
        if (p && !strcmp(next->elems[i].topic, r->cfg->topic_touchpoints) && next->elems[i].offset > p->kept)
            p->kept = next->elems[i].offset;
    }
    return write_progress(r, dlq_pairs, n, err, errlen);
}

/* pipeline_source.batch_done: a progress line on a terminal, about once a second. */
static void src_batch_done(void *ctx, const pipeline_stats *st)
{
    replay *r = ctx;
    double now = clock_mono_s();
    if (!r->tty || now - r->last_show < 1.0)
        return;
    r->last_show = now;
    double rate = now > r->t0 ? (double)st->consumed / (now - r->t0) : 0;
    long long left = r->total - st->consumed;
    char eta[32] = "-";
    if (!r->follow && rate > 0 && left >= 0)
        snprintf(eta, sizeof(eta), "%.0f s", (double)left / rate);
    fprintf(stderr, "\rreplay: %lld/%lld events, %.0f events/s, ETA %s |", st->consumed, r->total, rate, eta);
    for (int i = 0; i < r->nparts; i++) {
        const rpart *p = &r->parts[i];
        if (p->stop == INT64_MAX)
            fprintf(stderr, " p%d %" PRId64, (int)p->partition, p->next - p->start);
        else
            fprintf(stderr, " p%d %" PRId64 "/%" PRId64, (int)p->partition, p->next - p->start, p->stop - p->start);
    }
    fputs("\033[K", stderr);
    fflush(stderr);
}

/* ---- options ----------------------------------------------------------------------- */

/* A time: epoch ms or ISO-8601; -1 if it is neither. */
static int64_t parse_time(const char *s)
{
    char *end;
    errno = 0;
    long long ms = strtoll(s, &end, 10);
    if (!errno && *s && !*end && ms >= 0)
        return ms;
    int64_t t;
    return time_parse_iso8601(s, &t) == 0 && t >= 0 ? t : -1;
}

/* Whether NAME may name a namespace (and a suffix of topic names). */
static bool good_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 60)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == '-' || (c == ':' && i == n - 1);
        if (!ok)
            return false;
    }
    return name[0] != ':';
}

/* Resolve every partition's range with a short-lived client of no group:
 * from (beginning, a time or PARTITION:OFFSET,...) and to (end or a time). */
static int resolve_ranges(replay *r, const char *from, const char *to, char *err, size_t errlen)
{
    char why[512];
    int rc = -1;
    const char *topic = r->cfg->topic_touchpoints;
    int64_t from_t = -1, to_t = -1;
    /* a time first: an ISO-8601 time holds ':' too (it is not PARTITION:OFFSET) */
    if (strcmp(from, "beginning") != 0)
        from_t = parse_time(from);
    bool from_offsets = strcmp(from, "beginning") != 0 && from_t < 0 && strchr(from, ':');
    if (strcmp(from, "beginning") != 0 && from_t < 0 && !from_offsets) {
        snprintf(err, errlen, "--from '%s': beginning, an ISO-8601 time, epoch ms or PARTITION:OFFSET,...", from);
        return -2;
    }
    if (strcmp(to, "end") != 0 && (to_t = parse_time(to)) < 0) {
        snprintf(err, errlen, "--to '%s': end, an ISO-8601 time or epoch ms", to);
        return -2;
    }
    rd_kafka_conf_t *conf = kafka_conf_new(r->cfg, err, errlen);
    if (!conf)
        return -2;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why)); /* no group.id: commits nothing */
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka: %s", why);
        return -1;
    }
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_partition_list_t *l = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, REPLAY_TIMEOUT_MS) : RD_KAFKA_RESP_ERR__FAIL;
    if (e || !md || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        snprintf(err, errlen, "topic '%s' (topics.touchpoints): %s", topic,
                 rd_kafka_err2str(e ? e : md && md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__FAIL));
        goto out;
    }
    r->nparts = md->topics[0].partition_cnt;
    if (!(r->parts = calloc((size_t)r->nparts, sizeof(*r->parts))) ||
        !(l = rd_kafka_topic_partition_list_new(r->nparts))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (int i = 0; i < r->nparts; i++) {
        rpart *p = &r->parts[i];
        int64_t lo, hi;
        p->partition = md->topics[0].partitions[i].id;
        e = rd_kafka_query_watermark_offsets(rk, topic, p->partition, &lo, &hi, REPLAY_TIMEOUT_MS);
        if (e) {
            snprintf(err, errlen, "watermarks of %s [%d]: %s", topic, (int)p->partition, rd_kafka_err2str(e));
            goto out;
        }
        p->start = lo;
        p->stop = r->follow ? INT64_MAX : hi;
        rd_kafka_topic_partition_list_add(l, topic, p->partition);
    }
    for (int pass = 0; pass < 2; pass++) { /* offsets for times: from, then to */
        int64_t t = pass == 0 ? from_t : to_t;
        if (t < 0)
            continue;
        for (int i = 0; i < l->cnt; i++)
            l->elems[i].offset = t;
        if ((e = rd_kafka_offsets_for_times(rk, l, REPLAY_TIMEOUT_MS))) {
            snprintf(err, errlen, "offsets for times: %s", rd_kafka_err2str(e));
            goto out;
        }
        for (int i = 0; i < l->cnt; i++) {
            rpart *p = find_part(r, l->elems[i].partition);
            if (l->elems[i].err) {
                snprintf(err, errlen, "offsets for times of partition %d: %s", (int)l->elems[i].partition,
                         rd_kafka_err2str(l->elems[i].err));
                goto out;
            }
            int64_t hi = 0, lo = 0;
            rd_kafka_query_watermark_offsets(rk, topic, p->partition, &lo, &hi, REPLAY_TIMEOUT_MS);
            int64_t o = l->elems[i].offset >= 0 ? l->elems[i].offset : hi; /* none at or after t: the end */
            if (pass == 0)
                p->start = o > p->start ? o : p->start;
            else
                p->stop = o;
        }
    }
    if (from_offsets) { /* PARTITION:OFFSET,... */
        char *copy = strdup(from), *save = NULL;
        if (!copy) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            char *colon = strchr(tok, ':'), *end1, *end2;
            long part = colon ? strtol(tok, &end1, 10) : -1;
            long long off = colon ? strtoll(colon + 1, &end2, 10) : -1;
            rpart *p = colon && end1 == colon && !*end2 && off >= 0 ? find_part(r, (int32_t)part) : NULL;
            if (!p) {
                snprintf(err, errlen, "--from '%s': '%s' is not PARTITION:OFFSET of a partition of %s", from, tok,
                         topic);
                free(copy);
                rc = -2;
                goto out;
            }
            p->start = off;
        }
        free(copy);
    }
    for (int i = 0; i < r->nparts; i++) {
        rpart *p = &r->parts[i];
        if (p->stop < p->start)
            p->stop = p->start;
        p->next = p->kept = p->start;
    }
    rc = 0;
out:
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return rc;
}

/* Continue from the progress kept in the namespace: the same topic, program
 * and outputs, each partition from its kept offset to its end. -2 (usage)
 * when it does not match. */
static int resume_ranges(replay *r, const char *text, char *err, size_t errlen)
{
    char topic[256], version[128], digest[128], outputs[16];
    int version_no = 0;
    if (sscanf(text, "fidelio-replay %d\ntopic %255s\nprogram %127s %127s\noutputs %15s", &version_no, topic, version,
               digest, outputs) != 5 ||
        version_no != 1) {
        snprintf(err, errlen, "the namespace's replay progress (key replay) cannot be read");
        return -1;
    }
    if (strcmp(topic, r->cfg->topic_touchpoints) != 0) {
        snprintf(err, errlen, "--resume: the namespace was replayed from topic %s, not %s", topic,
                 r->cfg->topic_touchpoints);
        return -2;
    }
    if (strcmp(digest, r->prog->digest) != 0) {
        snprintf(err, errlen,
                 "--resume: the namespace was replayed with rule program %s (%s), not %s (%s): give the same -r",
                 version, digest, r->prog->version, r->prog->digest);
        return -2;
    }
    if (strcmp(outputs, r->outputs) != 0) {
        snprintf(err, errlen, "--resume: the namespace was replayed with --outputs %s", outputs);
        return -2;
    }
    int n = 0;
    for (const char *line = strstr(text, "\np "); line; line = strstr(line + 1, "\np ")) {
        int part;
        long long kept, stop;
        if (sscanf(line, "\np %d %lld %lld", &part, &kept, &stop) != 3)
            continue;
        rpart *p = find_part(r, part);
        if (!p) {
            snprintf(err, errlen, "--resume: partition %d of the progress is not in %s", part, topic);
            return -1;
        }
        p->start = p->next = p->kept = kept;
        p->stop = r->follow ? INT64_MAX : stop < 0 ? p->stop : stop;
        if (p->stop < p->start)
            p->stop = p->start;
        n++;
    }
    if (n != r->nparts) {
        snprintf(err, errlen, "--resume: the progress names %d partition(s), %s has %d", n, topic, r->nparts);
        return -1;
    }
    return 0;
}

/* The final report: the run's counts, then the namespace's figures
 * (report.c: rewards and points by rule, stages by ladder, DLQ reasons). */
static int final_report(replay *r, const pipeline_stats *st, const char *report_path, double secs)
{
    char err[1024];
    buf text = {0}, json = {0};
    int rc = 0;
    printf("# replay into namespace %.*s: %lld events read in %.1f s (%.0f events/s): %lld touchpoints and %lld "
           "credits applied, %lld found applied already, %lld to the DLQ, %lld outputs (%s); %lld batches, %lld "
           "rounds; %.1f s waiting for a partition's next fetch to keep the order\n",
           (int)strlen(r->cfg->key_prefix) - 1, r->cfg->key_prefix, st->consumed, secs, secs > 0 ? (double)st->consumed / secs : 0, st->touchpoints,
           st->credits, st->duplicates, st->dlq, st->outputs,
           !strcmp(r->outputs, "none") ? "counted, not produced" : "produced", st->batches, st->rounds, r->held_s);
    if (report_text(r->st, r->prog, r->cfg->key_prefix, &text, err, sizeof(err)) != 0) {
        log_error("report: %s", err);
        rc = -1;
    } else {
        fwrite(text.data, 1, text.len, stdout);
    }
    if (report_path && rc == 0) {
        FILE *f = fopen(report_path, "w");
        if (report_json(r->st, r->prog, r->cfg->key_prefix, &json, err, sizeof(err)) != 0 || !f) {
            log_error("--report %s: %s", report_path, f ? err : strerror(errno));
            rc = -1;
        } else {
            fprintf(f,
                    "{\"replay\":{\"namespace\":\"%s\",\"events\":%lld,\"touchpoints\":%lld,\"credits\":%lld,"
                    "\"duplicates\":%lld,\"dlq\":%lld,\"outputs\":%lld,\"outputs_mode\":\"%s\",\"seconds\":%.3f},"
                    "\"report\":%.*s}\n",
                    r->cfg->key_prefix, st->consumed, st->touchpoints, st->credits, st->duplicates, st->dlq,
                    st->outputs, r->outputs, secs, (int)json.len, json.data);
        }
        if (f && fclose(f) != 0) {
            log_error("--report %s: %s", report_path, strerror(errno));
            rc = -1;
        }
    }
    buf_free(&text);
    buf_free(&json);
    return rc;
}

/* Set one setting of the target's configuration. */
static int set(config *cfg, const char *key, const char *value)
{
    char err[512];
    if (config_set(cfg, key, value, "replay", err, sizeof(err)) != 0) {
        fprintf(stderr, "fidelio replay: %s\n", err);
        return -1;
    }
    return 0;
}

int cmd_replay(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"namespace", required_argument, NULL, 'N'},
                                             {"from", required_argument, NULL, 'F'},
                                             {"to", required_argument, NULL, 'T'},
                                             {"rules", required_argument, NULL, 'r'},
                                             {"outputs", required_argument, NULL, 'O'},
                                             {"resume", no_argument, NULL, 'R'},
                                             {"wipe", no_argument, NULL, 'W'},
                                             {"follow", no_argument, NULL, 'f'},
                                             {"into-live", no_argument, NULL, 'I'},
                                             {"report", required_argument, NULL, 'P'},
                                             {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    program *prog = NULL;
    const char *rules = NULL, *name = NULL, *from = "beginning", *to = "end", *outputs = "none",
               *report_path = NULL;
    bool resume = false, wipe = false, follow = false, into_live = false;
    int opt, rc = EXIT_USAGE;
    char err[1024];
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "r:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); cli_common_free(&cc); return EXIT_OK;
        case 'N': name = optarg; break;
        case 'F': from = optarg; break;
        case 'T': to = optarg; break;
        case 'r': rules = optarg; break;
        case 'O': outputs = optarg; break;
        case 'R': resume = true; break;
        case 'W': wipe = true; break;
        case 'f': follow = true; break;
        case 'I': into_live = true; break;
        case 'P': report_path = optarg; break;
        default:
            if (cli_default_opt(&cc, opt, optarg, help) != 0)
                goto out_cc;
        }
    }
    if (!name || !good_name(name)) {
        fprintf(stderr, "fidelio replay: --namespace NAME is required: letters, digits, '.', '_', '-', at most 60 "
                        "(see fidelio replay --help)\n");
        goto out_cc;
    }
    if (strcmp(outputs, "none") != 0 && strcmp(outputs, "topics") != 0) {
        fprintf(stderr, "fidelio replay: --outputs '%s': none or topics\n", outputs);
        goto out_cc;
    }
    if (resume && wipe) {
        fprintf(stderr, "fidelio replay: --resume and --wipe exclude each other\n");
        goto out_cc;
    }
    if (follow && strcmp(to, "end") != 0) {
        fprintf(stderr, "fidelio replay: --follow has no end: it takes no --to\n");
        goto out_cc;
    }
    if ((rc = cli_setup(&cc, "replay", argc, argv, rules, &cfg, &prog)) != EXIT_OK)
        goto out_cc;
    rc = EXIT_USAGE;
    /* the target: NAME: and, with --outputs topics, <topic>-NAME */
    char prefix[80], base[64], topic[320];
    snprintf(base, sizeof(base), "%.*s", (int)strcspn(name, ":"), name);
    snprintf(prefix, sizeof(prefix), "%s:", base);
    const char *live = cfg.key_prefix;
    bool same = !strcmp(prefix, live);
    bool overlap = !strncmp(prefix, live, strlen(prefix)) || !strncmp(live, prefix, strlen(live));
    if (same && !into_live) {
        fprintf(stderr, "fidelio replay: namespace '%s' is the live one (redis.key_prefix): refused without "
                        "--into-live\n", prefix);
        goto out_cfg;
    }
    if (overlap && !same) {
        fprintf(stderr, "fidelio replay: namespace '%s' overlaps the live one '%s' (one prefix holds the other's "
                        "keys): choose another name\n", prefix, live);
        goto out_cfg;
    }
    if (set(&cfg, "redis.key_prefix", prefix) != 0 || set(&cfg, "pipeline.exactly_once", "false") != 0)
        goto out_cfg;
    if (!into_live) {
        const char *keys[] = {"topics.rewards", "topics.stage_changes", "topics.dlq", "topics.credits"};
        const char *names[] = {cfg.topic_rewards, cfg.topic_stage_changes, cfg.topic_dlq, cfg.topic_credits};
        char *copies[4] = {0};
        int bad = 0;
        for (int i = 0; i < 4; i++)
            copies[i] = strdup(names[i]);
        for (int i = 0; i < 4 && !bad; i++) {
            snprintf(topic, sizeof(topic), "%s-%s", copies[i] ? copies[i] : "?", base);
            bad = !copies[i] || set(&cfg, keys[i], topic) != 0;
        }
        for (int i = 0; i < 4; i++)
            free(copies[i]);
        if (bad)
            goto out_cfg;
    }
    replay r = {.cfg = &cfg, .prog = prog, .follow = follow, .outputs = outputs, .tty = isatty(2)};
    /* the target must be empty, or be resumed, or be wiped (its keys counted first) */
    store *ro = store_open_readonly(cfg.redis_url, prefix, err, sizeof(err));
    long long nkeys = 0;
    bool found = false;
    buf progress = {0};
    if (!ro || store_namespace_keys(ro, false, &nkeys, err, sizeof(err)) != 0 ||
        store_meta_get(ro, "replay", &progress, &found, err, sizeof(err)) != 0) {
        fprintf(stderr, "fidelio replay: %s\n", err);
        store_close(ro);
        rc = EXIT_RUNTIME;
        goto out_progress;
    }
    store_close(ro);
    if (nkeys > 0 && !resume && !wipe) {
        fprintf(stderr,
                "fidelio replay: namespace '%s' is not empty (%lld keys): --resume to continue the replay that "
                "left them, --wipe to delete them first\n", prefix, nkeys);
        goto out_progress;
    }
    if (resume && nkeys > 0 && !found) {
        fprintf(stderr, "fidelio replay: namespace '%s' holds %lld keys but no replay progress: nothing to resume "
                        "(--wipe to start over)\n", prefix, nkeys);
        goto out_progress;
    }
    if (!(r.st = store_open(cfg.redis_url, prefix, cfg.dedupe_retention_ms, cfg.ledger_max, err, sizeof(err)))) {
        fprintf(stderr, "fidelio replay: %s\n", err);
        rc = EXIT_RUNTIME;
        goto out_progress;
    }
    if (wipe && nkeys > 0) {
        long long wiped = 0;
        fprintf(stderr, "fidelio replay: --wipe: deleting the %lld keys of namespace '%s'\n", nkeys, prefix);
        if (store_namespace_keys(r.st, true, &wiped, err, sizeof(err)) != 0) {
            fprintf(stderr, "fidelio replay: --wipe: %s\n", err);
            rc = EXIT_RUNTIME;
            goto out_store;
        }
        fprintf(stderr, "fidelio replay: --wipe: %lld keys deleted\n", wiped);
        store_close(r.st); /* reopened: the layout marker is written again */
        if (!(r.st = store_open(cfg.redis_url, prefix, cfg.dedupe_retention_ms, cfg.ledger_max, err, sizeof(err)))) {
            fprintf(stderr, "fidelio replay: %s\n", err);
            rc = EXIT_RUNTIME;
            goto out_progress;
        }
    }
    int rrc = resolve_ranges(&r, from, to, err, sizeof(err));
    if (rrc == 0 && resume && found)
        rrc = resume_ranges(&r, progress.data, err, sizeof(err));
    if (rrc != 0) {
        fprintf(stderr, "fidelio replay: %s\n", err);
        rc = rrc == -2 ? EXIT_USAGE : EXIT_RUNTIME;
        goto out_store;
    }
    /* the namespace records its program, as `run` does (an orphaning one is refused) */
    buf notes = {0};
    registry_result reg = registry_check(r.st, prog, true, &notes, err, sizeof(err));
    if (notes.len)
        fprintf(stderr, "%s", notes.data);
    buf_free(&notes);
    if (reg != REGISTRY_OK) {
        fprintf(stderr, "fidelio replay: %s\n", err);
        rc = reg == REGISTRY_REFUSED ? EXIT_USAGE : EXIT_RUNTIME;
        goto out_store;
    }
    if (write_progress(&r, NULL, 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "fidelio replay: keeping the progress: %s\n", err);
        rc = EXIT_RUNTIME;
        goto out_store;
    }
    for (int i = 0; i < r.nparts; i++)
        if (r.parts[i].stop != INT64_MAX)
            r.total += r.parts[i].stop - r.parts[i].start;
    log_info("replaying %s (%d partitions, %lld events%s) into namespace '%s' with rule program %s; outputs: %s",
             cfg.topic_touchpoints, r.nparts, r.total, follow ? ", then following" : "", prefix, prog->version,
             !strcmp(outputs, "none") ? "none (counted)"
             : into_live                ? "the live topics"
                                        : "the namespace's topics");
    cli_install_signals();
    char group[200];
    snprintf(group, sizeof(group), "fidelio-replay.%s", base);
    if (!strcmp(group, cfg.consumer_group)) {
        fprintf(stderr, "fidelio replay: consumer.group is '%s', the group id replay reserves for namespace %s\n", group,
                prefix);
        rc = EXIT_USAGE;
        goto out_store;
    }
    pipeline_source src = {.group_id = group, .start = src_start, .next = src_next, .commit = src_commit, .stop = src_stop,
                           .batch_done = src_batch_done, .ctx = &r};
    pipeline_opts opts = {.source = &src, .credits_in_process = true, .no_outputs = !strcmp(outputs, "none")};
    pipeline_stats st;
    r.t0 = clock_mono_s(); /* reset by src_start, once the pipeline is set up */
    int prc = pipeline_run(&cfg, prog, &opts, &st, err, sizeof(err));
    double secs = clock_mono_s() - r.t0;
    if (r.tty)
        fputs("\n", stderr);
    if (prc != 0) {
        log_error("%s", err);
        rc = EXIT_RUNTIME;
        goto out_store;
    }
    rc = final_report(&r, &st, report_path, secs) == 0 ? EXIT_OK : EXIT_RUNTIME;
out_store:
    store_close(r.st);
    for (int i = 0; i < r.nparts; i++)
        free(r.parts[i].q); /* its messages were released by src_stop */
    free(r.parts);
out_progress:
    buf_free(&progress);
out_cfg:
    cli_program_free(prog);
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
