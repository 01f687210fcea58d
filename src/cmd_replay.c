/* cmd_replay.c - `fidelio replay`: the touchpoints topic, or a range of it,
 * into a namespace of its own (a rebuild, a backfill, a what-if with another
 * rule program), with the pipeline of `fidelio run` in assign mode
 * (pipeline.h: pipeline_source): its own consumer with assigned partitions and
 * no group.id, so it can never commit on the live group; its progress kept in
 * the target namespace; referral credits applied in-process, as `simulate`
 * does. With --parallel N, N worker processes of itself (--worker K/N) share
 * the partitions and credits go through the namespace's credits topic.
 * README: Backfills and what-if; docs/design.md: Replay. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "clock.h"
#include "codec.h"
#include "kafka.h"
#include "log.h"
#include "pipeline.h"
#include "program.h"
#include "registry.h"
#include "replay_order.h"
#include "report.h"
#include "store.h"
#include "timeutil.h"

static const char help[] =
    "usage: fidelio replay --namespace NAME [--from WHERE] [--to WHEN] [-r RULES]\n"
    "                      [--outputs none|topics] [--resume | --wipe] [--follow]\n"
    "                      [--into-live] [--report FILE] [--parallel N]\n"
    "                      [--order grouped|merge] [OPTIONS]\n\n"
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
    "      --parallel N      N worker processes (2 to 64, at most the topic's partitions),\n"
    "                        worker K taking the partitions P with P % N == K; referral\n"
    "                        credits then travel through the namespace's credits topic\n"
    "                        (<topics.credits>-NAME, created first), as in `run`: not\n"
    "                        byte-identical to simulate for referrers (README)\n"
    "      --order ORDER     grouped (default): the merge taken in windows, each\n"
    "                        handed out customer by customer (several events of a\n"
    "                        customer per batch: less Redis work), every two events\n"
    "                        that touch one customer's state (a referral credit\n"
    "                        included) kept in the merge's order: the same result;\n"
    "                        merge: the merge's order itself (outputs produced in\n"
    "                        time order). A --resume, --follow or --parallel replay\n"
    "                        takes the merge's order\n"
    "A target that holds keys is refused (exit 2) unless --resume or --wipe.\n" CLI_COMMON_HELP;

/* One partition of the source: its range and the messages fetched ahead. */
typedef struct rpart {
    const char *topic;          /* topics.touchpoints, or (--parallel) the namespace's topics.credits */
    bool credits;               /* a partition of the credits topic: outside the merge, handed out first */
    int32_t partition;
    int64_t start;              /* offset this run began at (progress display) */
    int64_t next;               /* next offset to hand to the pipeline */
    int64_t stop;               /* hand out offsets below it; INT64_MAX with --follow */
    int64_t kept;               /* next offset of the last applied batch: the progress */
    bool eof;                   /* consumed to the partition's current end */
    int64_t eof_at;             /* the end it reported */
    int64_t log_start;          /* the partition's first offset still in the log (retention) */
    int64_t gone;               /* offsets asked for but deleted before this replay could read them */
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
    int nworkers;               /* --parallel N: N worker processes; 0: one process, credits in-process */
    int worker;                 /* the worker's index (--worker K/N, set by the parent); -1: not a worker */
    bool tp_done;               /* worker: its touchpoints applied, the credits they earned acknowledged */
    bool credits_final;         /* worker: every worker is tp_done, the ends of its credits partitions fixed */
    double last_check;          /* worker: when it last read the others' progress */
    long long credits_read;     /* credit messages handed to the pipeline (--parallel) */
    const pipeline_stats *final; /* worker: its counts, written with its last progress */
    char key[32];               /* the progress key under the prefix: replay, or replay.K for worker K */
    char err[512];
    /* The grouped order (replay_order.h): the merge's messages taken in windows of
     * wmax, each handed out customer by customer, every two messages touching
     * one customer's state in the merge's order. Only in one process, from an
     * empty namespace, without --follow (so every referral that matters is a
     * SIGNUP this process saw). */
    bool grouped;
    replay_order *order;        /* the referral links seen so far; owned */
    codec *codec;               /* decodes the window's SIGNUPs (referred_by); owned */
    codec_record *rec;          /* owned */
    rd_kafka_message_t **win;   /* the window, in the merge's order; a slot is NULL once handed out; owned */
    size_t wn, wmax;            /* messages taken; a full window */
    size_t *worder;             /* the hand-out order (indices into win); owned */
    size_t wpos;                /* next place in worder */
    bool wsealed;               /* worder is computed: handing out */
    const char **wcust;         /* scratch for replay_order_window: keys, their lengths, whether each can credit; owned */
    size_t *wclen;
    unsigned char *wcred;
    bool credit_type[EVENT_TYPE_COUNT]; /* types some rule pays the referrer for (`to: referrer`) */
    bool end_batch;             /* the window's last message was handed out: the batch ends there */
    struct rwindow *wq;         /* windows handed out, not all committed yet, oldest first; owned */
    size_t wqn, wqcap;
    long long windows;          /* windows handed out grouped */
} replay;

/* A window of the grouped order, sealed and not all committed. The progress
 * moves by whole windows: its messages are not each partition's offset order. */
typedef struct rwindow {
    size_t size;                /* messages */
    size_t committed;           /* of them, in committed batches (a batch never spans two windows) */
    int64_t *end;               /* per part (index of r->parts): the next offset after the window; owned */
    char (*dfield)[80];         /* the DLQ counts of its committed batches, for the report with its progress; owned */
    long long *dcount;
    size_t dn, dcap;
} rwindow;

#define REPLAY_QUEUE_HIGH 2000 /* pause a partition's fetching with this many buffered */
#define REPLAY_QUEUE_LOW 500   /* and resume it below this */
#define REPLAY_TIMEOUT_MS 10000
#define REPLAY_WINDOW_BATCHES 2  /* the grouped order's window: this many batches per partition */
#define REPLAY_WINDOW_MAX 131072 /* messages at most (memory: the window is held until handed out) */

static rpart *find_part(replay *r, const char *topic, int32_t partition)
{
    for (int i = 0; i < r->nparts; i++)
        if (r->parts[i].partition == partition && !strcmp(r->parts[i].topic, topic))
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
    rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
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
    rpart *p = m->rkt ? find_part(r, rd_kafka_topic_name(m->rkt), m->partition) : NULL;
    if (!p) {
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

/* Hand out the head of a partition's buffer. */
static rd_kafka_message_t *hand_out(replay *r, rpart *p)
{
    rd_kafka_message_t *m = p->q[p->qhead];
    p->qhead = (p->qhead + 1) % p->qcap;
    p->qlen--;
    p->next = m->offset + 1;
    r->credits_read += p->credits;
    if (p->paused && p->qlen < REPLAY_QUEUE_LOW && p->next < p->stop)
        pause_part(r, p, false);
    return m;
}

static int write_progress(replay *r, const char *const *dlq_pairs, size_t n, char *err, size_t errlen);
static void note_gone(rpart *p, int64_t requested);

/* Whether worker k's progress says its touchpoints are done (tp_done). */
static bool worker_done(replay *r, int k)
{
    if (k == r->worker)
        return r->tp_done;
    char name[32], err[256];
    snprintf(name, sizeof(name), "replay.%d", k);
    buf b = {0};
    bool found = false;
    bool done = store_meta_get(r->st, name, &b, &found, err, sizeof(err)) == 0 && found && b.data &&
                strstr(b.data, "\ntpdone 1\n") != NULL;
    buf_free(&b);
    return done;
}

/* --parallel, in a worker: once its touchpoints are all applied and the
 * credits they earned acknowledged (the kept offsets reached what was handed
 * out, up to the end of the range), say so in its progress; once every
 * worker says so, no credit can come any more: the ends of its credits
 * partitions are final (their high watermarks now), the range to read. */
static void worker_check(replay *r)
{
    if (r->credits_final || r->follow)
        return;
    if (!r->tp_done) {
        for (int i = 0; i < r->nparts; i++) {
            const rpart *p = &r->parts[i];
            if (!p->credits && (!finished(p) || p->kept < p->next))
                return;
        }
        char err[512];
        r->tp_done = true;
        if (write_progress(r, NULL, 0, err, sizeof(err)) != 0) { /* said again at the next check */
            log_warn("replay worker %d: keeping the progress: %s", r->worker, err);
            r->tp_done = false;
            return;
        }
        log_info("replay worker %d/%d: its touchpoints are applied; waiting for the other workers' credits", r->worker,
                 r->nworkers);
    }
    double now = clock_mono_s();
    if (now - r->last_check < 0.2)
        return;
    r->last_check = now;
    for (int k = 0; k < r->nworkers; k++)
        if (!worker_done(r, k))
            return;
    for (int i = 0; i < r->nparts; i++) {
        rpart *p = &r->parts[i];
        int64_t lo, hi;
        if (!p->credits)
            continue;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(r->rk, p->topic, p->partition, &lo, &hi, REPLAY_TIMEOUT_MS);
        if (e) {
            log_warn("replay worker %d: end of %s [%d]: %s (asked again)", r->worker, p->topic, (int)p->partition,
                     rd_kafka_err2str(e));
            return;
        }
        p->stop = hi > p->next ? hi : p->next;
    }
    r->credits_final = true;
    log_info("replay worker %d/%d: every worker's touchpoints are applied: reading its credits to their end", r->worker,
             r->nworkers);
}

/* The merge: a credit first (--parallel: credits come back through
 * the namespace's credits topic as soon as they can), else the earliest head
 * among the touchpoint partitions (message timestamp, then partition number),
 * once every unfinished partition has one (with --follow, a partition at its
 * end does not hold the others back). NULL at the deadline or when done. */
static rd_kafka_message_t *merge_next(replay *r, double deadline, bool *done)
{
    for (;;) {
        rd_kafka_message_t *m;
        while ((m = rd_kafka_consumer_poll(r->rk, 0)))
            take(r, m);
        if (r->worker >= 0)
            worker_check(r);
        for (int i = 0; i < r->nparts; i++)
            if (r->parts[i].credits && r->parts[i].qlen > 0)
                return hand_out(r, &r->parts[i]);
        rpart *best = NULL;
        int64_t best_ts = 0;
        bool blocked = false, all_done = true;
        for (int i = 0; i < r->nparts; i++) {
            rpart *p = &r->parts[i];
            if (finished(p))
                continue;
            all_done = false;
            if (p->credits)
                continue;
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
        if (best && !blocked)
            return hand_out(r, best);
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

static void rwindow_free(rwindow *w)
{
    free(w->end);
    free(w->dfield);
    free(w->dcount);
}

/* The window is taken: note its SIGNUPs' referrals, then compute its
 * hand-out order and queue it for its progress. A failure (memory) hands
 * this window out in the merge's order and ends the grouped order: the
 * merge's order from any point the grouped order reached is right, as after
 * a --resume (docs/design.md: Replay). */
static void seal_window(replay *r)
{
    bool ok = true;
    for (size_t i = 0; i < r->wn; i++) {
        rd_kafka_message_t *m = r->win[i];
        r->wcust[i] = m->key ? (const char *)m->key : NULL;
        r->wclen[i] = m->key ? m->key_len : 0;
        r->wcred[i] = 1; /* unless known not to: a message that does not decode here is refused by the pipeline */
        char why[256];
        if (!m->key || !m->payload ||
            codec_decode_avro(r->codec, SCHEMA_TOUCHPOINT, m->payload, m->len, r->rec, why, sizeof(why)) != EVENT_OK)
            continue;
        const touchpoint *tp = &r->rec->tp;
        r->wcred[i] = (unsigned)tp->type < EVENT_TYPE_COUNT ? r->credit_type[tp->type] : 1;
        if (ok && tp->type == EVENT_SIGNUP && tp->payload.signup.has_referred_by &&
            replay_order_refer(r->order, m->key, m->key_len, tp->payload.signup.referred_by,
                               strlen(tp->payload.signup.referred_by)) != 0)
            ok = false;
    }
    rwindow w = {.size = r->wn, .end = malloc((size_t)r->nparts * sizeof(int64_t))};
    if (w.end)
        for (int k = 0; k < r->nparts; k++)
            w.end[k] = r->parts[k].next;
    rwindow *q = r->wqn < r->wqcap ? r->wq : grow_array(r->wq, &r->wqcap, sizeof(rwindow), 8);
    if (q)
        r->wq = q;
    if (ok && w.end && q && replay_order_window(r->order, r->wn, r->wcust, r->wclen, r->wcred, r->worder) == 0) {
        r->windows++;
    } else {
        for (size_t i = 0; i < r->wn; i++)
            r->worder[i] = i;
        log_warn("replay: out of memory ordering a window: the merge's order from here on (slower, same result)");
        r->grouped = false;
    }
    if (w.end && q)
        r->wq[r->wqn++] = w;
    else /* progress by batches: the merge's order is each partition's offset order */
        free(w.end);
    r->wpos = 0;
    r->wsealed = true;
}

/* pipeline_source.next: the merge's next message or, in the grouped order,
 * the window's next; a window is sealed once full, once the merge is done,
 * or when a wait for the merge ran out with messages taken (so a slow fetch
 * does not hold the pipeline back). */
static rd_kafka_message_t *src_next(void *ctx, int timeout_ms, bool *done)
{
    replay *r = ctx;
    double deadline = clock_mono_s() + timeout_ms / 1000.0;
    for (;;) {
        if (r->wsealed) {
            if (r->wpos < r->wn) {
                size_t i = r->worder[r->wpos++];
                rd_kafka_message_t *m = r->win[i];
                r->win[i] = NULL;
                r->end_batch = r->wpos == r->wn;
                return m;
            }
            r->wsealed = false;
            r->wn = 0;
        }
        if (!r->grouped)
            return merge_next(r, deadline, done);
        bool merged_all = false;
        rd_kafka_message_t *m = NULL;
        while (r->wn < r->wmax && (m = merge_next(r, deadline, &merged_all)))
            r->win[r->wn++] = m;
        if (r->wn == 0) {
            *done = merged_all;
            return NULL;
        }
        if (r->wn < r->wmax && !merged_all && (timeout_ms == 0 || clock_mono_s() < deadline))
            return NULL; /* more to take: read-ahead asks again, a batch's fill waits */
        seal_window(r);
    }
}

/* pipeline_source.batch_end: a batch ends with its window (the progress moves by windows). */
static bool src_batch_end(void *ctx)
{
    replay *r = ctx;
    bool end = r->end_batch;
    r->end_batch = false;
    return end;
}

/* Drop the window's messages not handed out yet; each partition's first of
 * them goes into l (the offsets to hand out again), when below what l has. */
static void drop_window(replay *r, rd_kafka_topic_partition_list_t *l)
{
    for (size_t i = 0; i < r->wn; i++) {
        rd_kafka_message_t *m = r->win[i];
        if (!m)
            continue;
        if (l) {
            const char *topic = rd_kafka_topic_name(m->rkt);
            rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(l, topic, m->partition);
            if (!tp)
                rd_kafka_topic_partition_list_add(l, topic, m->partition)->offset = m->offset;
            else if (m->offset < tp->offset)
                tp->offset = m->offset;
        }
        rd_kafka_message_destroy(m);
        r->win[i] = NULL;
    }
    r->wn = 0;
    r->wpos = 0;
    r->wsealed = false;
    r->end_batch = false;
}

/* pipeline_source.stop: release the buffered messages (before the consumer goes). */
static void src_stop(void *ctx)
{
    replay *r = ctx;
    drop_window(r, NULL);
    for (int i = 0; i < r->nparts; i++) {
        rpart *p = &r->parts[i];
        for (int k = 0; k < p->qlen; k++)
            rd_kafka_message_destroy(p->q[(p->qhead + k) % p->qcap]);
        p->qlen = 0;
    }
}

/* pipeline_source.rewind: a delivery failed; hand out again from these
 * offsets (each partition's first uncommitted one): the buffered messages
 * go and the consumer is sought back, so the merge restarts from the state
 * it had then and hands out the same sequence. */
static int src_rewind(void *ctx, const rd_kafka_topic_partition_list_t *first_batches, char *err, size_t errlen)
{
    replay *r = ctx;
    /* the grouped order: the window's messages not handed out yet are read again too */
    rd_kafka_topic_partition_list_t *first = rd_kafka_topic_partition_list_copy(first_batches);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(first ? first->cnt + 1 : 1);
    if (!l || !first) {
        if (l)
            rd_kafka_topic_partition_list_destroy(l);
        if (first)
            rd_kafka_topic_partition_list_destroy(first);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    drop_window(r, first);
    if (r->wqn > 0) { /* windows not all committed: each is read again whole (the progress is by windows) */
        for (int k = 0; k < r->nparts; k++) {
            rpart *p = &r->parts[k];
            if (p->kept >= p->next)
                continue;
            rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(first, p->topic, p->partition);
            if (!tp)
                rd_kafka_topic_partition_list_add(first, p->topic, p->partition)->offset = p->kept;
            else if (p->kept < tp->offset)
                tp->offset = p->kept;
        }
        for (size_t k = 0; k < r->wqn; k++)
            rwindow_free(&r->wq[k]);
        r->wqn = 0;
    }
    for (int i = 0; i < first->cnt; i++) {
        rpart *p = find_part(r, first->elems[i].topic, first->elems[i].partition);
        if (!p || first->elems[i].offset >= p->next)
            continue;
        for (int k = 0; k < p->qlen; k++)
            rd_kafka_message_destroy(p->q[(p->qhead + k) % p->qcap]);
        p->qlen = 0;
        if (p->credits)
            r->credits_read -= p->next - first->elems[i].offset;
        p->next = first->elems[i].offset;
        p->eof = false;
        rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = p->next;
    }
    rd_kafka_error_t *e = l->cnt ? rd_kafka_seek_partitions(r->rk, l, REPLAY_TIMEOUT_MS) : NULL;
    int rc = 0;
    if (e) {
        snprintf(err, errlen, "seeking back: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rc = -1;
    }
    for (int i = 0; i < l->cnt && rc == 0; i++) {
        if (l->elems[i].err) {
            snprintf(err, errlen, "seeking back %s [%d]: %s", l->elems[i].topic, (int)l->elems[i].partition,
                     rd_kafka_err2str(l->elems[i].err));
            rc = -1;
        }
        rpart *p = find_part(r, l->elems[i].topic, l->elems[i].partition);
        if (p && p->next < p->stop)
            pause_part(r, p, false);
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_topic_partition_list_destroy(first);
    return rc;
}

/* pipeline_source.start: assign every partition at its next offset. */
static int src_start(void *ctx, rd_kafka_t *rk, char *err, size_t errlen)
{
    replay *r = ctx;
    r->rk = rk;
    for (int i = 0; r->worker >= 0 && i < r->nparts; i++) { /* a worker resumed after retention deleted its next offsets */
        rpart *p = &r->parts[i];
        int64_t lo, hi;
        if (!p->credits &&
            rd_kafka_query_watermark_offsets(rk, p->topic, p->partition, &lo, &hi, REPLAY_TIMEOUT_MS) == 0) {
            p->log_start = lo;
            note_gone(p, p->next);
        }
    }
    r->t0 = clock_mono_s(); /* the rate counts from here, as run's from its assignment */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->nparts);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < r->nparts; i++)
        rd_kafka_topic_partition_list_add(l, r->parts[i].topic, r->parts[i].partition)->offset = r->parts[i].next;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(err, errlen, "assigning the partitions of %s%s%s: %s", r->cfg->topic_touchpoints,
                 r->worker >= 0 ? " and " : "", r->worker >= 0 ? r->cfg->topic_credits : "", rd_kafka_err2str(e));
        return -1;
    }
    for (int i = 0; i < r->nparts; i++)
        if (finished(&r->parts[i]))
            pause_part(r, &r->parts[i], true);
    return 0;
}

/* The progress as text: what was replayed how, and per partition the next
 * offset of the last applied batch and the end of the range (-1: --follow).
 * --parallel: the parent's record (key replay) says "parallel N" and gives
 * each partition's range as it began, credits partitions ("c PARTITION
 * OFFSET") included; each worker K keeps its own partitions' progress in
 * replay.K, with "tpdone 1" once its touchpoints are applied and, at its
 * end, its counts ("stats ..."). */
static int progress_text(const replay *r, buf *out)
{
    buf_reset(out);
    int rc = buf_printf(out, "fidelio-replay 1\ntopic %s\nprogram %s %s\noutputs %s\n", r->cfg->topic_touchpoints,
                        r->prog->version, r->prog->digest, r->outputs);
    if (rc == 0 && r->worker >= 0)
        rc = buf_printf(out, "worker %d %d\ntpdone %d\n", r->worker, r->nworkers, r->tp_done ? 1 : 0);
    else if (rc == 0 && r->nworkers)
        rc = buf_printf(out, "parallel %d\n", r->nworkers);
    for (int i = 0; i < r->nparts && rc == 0; i++) {
        const rpart *p = &r->parts[i];
        if (p->credits)
            rc = buf_printf(out, "c %" PRId32 " %" PRId64 "\n", p->partition, p->kept);
        else
            rc = buf_printf(out, "p %" PRId32 " %" PRId64 " %" PRId64 "\n", p->partition, p->kept,
                            p->stop == INT64_MAX ? -1 : p->stop);
    }
    for (int i = 0; i < r->nparts && rc == 0 && r->worker >= 0; i++)
        if (r->parts[i].gone)
            rc = buf_printf(out, "g %" PRId32 " %" PRId64 "\n", r->parts[i].partition, r->parts[i].gone);
    const pipeline_stats *st = r->final;
    if (rc == 0 && st)
        rc = buf_printf(out, "stats %lld %lld %lld %lld %lld %lld %lld %lld %lld %.3f\n", st->consumed, st->touchpoints,
                        st->credits, st->duplicates, st->dlq, st->outputs, st->batches, st->rounds, r->credits_read,
                        r->held_s);
    return rc;
}

static int write_progress(replay *r, const char *const *dlq_pairs, size_t n, char *err, size_t errlen)
{
    buf text = {0};
    int rc = progress_text(r, &text) != 0 ? -1
                                           : store_meta_set(r->st, r->key, text.data, text.len, dlq_pairs, n, err,
                                                            errlen);
    if (rc == -1 && !text.data)
        snprintf(err, errlen, "out of memory");
    buf_free(&text);
    return rc;
}

/* Add a batch's DLQ counts (field / count pairs) to its window's. -1: out of memory. */
static int window_dlq(rwindow *w, const char *const *pairs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < w->dn && strcmp(w->dfield[k], pairs[2 * i]) != 0)
            k++;
        if (k == w->dn) {
            if (w->dn == w->dcap) {
                size_t cap = w->dcap;
                char(*f)[80] = grow_array(w->dfield, &cap, sizeof(*w->dfield), 8);
                if (!f)
                    return -1;
                w->dfield = f;
                long long *c = grow_array(w->dcount, &w->dcap, sizeof(long long), 8);
                if (!c)
                    return -1;
                w->dcount = c;
            }
            snprintf(w->dfield[k], sizeof(w->dfield[k]), "%s", pairs[2 * i]);
            w->dcount[k] = 0;
            w->dn++;
        }
        w->dcount[k] += strtoll(pairs[2 * i + 1], NULL, 10);
    }
    return 0;
}

/* The grouped order's commit: a batch of the oldest window in flight (a batch
 * never spans two) is committed. The progress moves only when the whole
 * window is: then <prefix>replay gets the window's end offsets and its DLQ
 * counts in one MULTI/EXEC (the counts of a window read again after a kill
 * are counted once). Until then nothing is written, and the store is told
 * only the offsets kept (next lowered to them): a window's messages are not
 * each partition's offset order, so a batch's highest offset does not say
 * that every lower one is committed. */
static int window_commit(replay *r, rd_kafka_topic_partition_list_t *next, size_t messages,
                         const char *const *dlq_pairs, size_t n, char *err, size_t errlen)
{
    rwindow *w = &r->wq[0];
    int rc = 0;
    if (window_dlq(w, dlq_pairs, n) != 0)
        log_warn("replay: out of memory keeping a batch's DLQ counts for the report (they are not counted)");
    w->committed += messages;
    if (w->committed > w->size) /* a batch across two windows: batch_end prevents it */
        log_warn("replay: a batch of %zu messages went past its window (%zu of %zu committed)", messages, w->committed,
                 w->size);
    if (w->committed >= w->size) {
        for (int k = 0; k < r->nparts; k++)
            if (w->end[k] > r->parts[k].kept)
                r->parts[k].kept = w->end[k];
        char counts[64][24];
        const char *pairs[128];
        size_t np = 0;
        for (size_t k = 0; k < w->dn && np < 64; k++, np++) {
            snprintf(counts[np], sizeof(counts[np]), "%lld", w->dcount[k]);
            pairs[2 * np] = w->dfield[k];
            pairs[2 * np + 1] = counts[np];
        }
        rc = write_progress(r, pairs, np, err, errlen);
        rwindow_free(w);
        memmove(r->wq, r->wq + 1, (r->wqn - 1) * sizeof(*r->wq));
        r->wqn--;
    }
    for (int i = 0; i < next->cnt; i++) {
        rpart *p = find_part(r, next->elems[i].topic, next->elems[i].partition);
        if (p && next->elems[i].offset > p->kept)
            next->elems[i].offset = p->kept;
    }
    return rc;
}

/* pipeline_source.commit: the batch is applied and its outputs acknowledged:
 * keep its next offsets in <prefix>replay and add its DLQ counts to the
 * report, in one MULTI/EXEC. Written after the applies, so a replay killed in between reads the batch again on --resume
 * and finds its events applied (dedupe records): nothing lost, nothing twice. */
static int src_commit(void *ctx, rd_kafka_topic_partition_list_t *next, size_t messages, const char *const *dlq_pairs,
                      size_t n, char *err, size_t errlen)
{
    replay *r = ctx;
    if (r->wqn > 0)
        return window_commit(r, next, messages, dlq_pairs, n, err, errlen);
    for (int i = 0; i < next->cnt; i++) {
        rpart *p = find_part(r, next->elems[i].topic, next->elems[i].partition);
        if (p && next->elems[i].offset > p->kept)
            p->kept = next->elems[i].offset;
    }
    return write_progress(r, dlq_pairs, n, err, errlen);
}

/* A progress line on a terminal, about once a second: consumed touchpoints
 * of the total, the rate, the ETA, done/total per partition (p->next). */
static void show_progress(replay *r, long long consumed)
{
    double now = clock_mono_s();
    if (!r->tty || now - r->last_show < 1.0)
        return;
    r->last_show = now;
    double rate = now > r->t0 ? (double)consumed / (now - r->t0) : 0;
    long long left = r->total - consumed;
    char eta[32] = "-";
    if (!r->follow && rate > 0 && left >= 0)
        snprintf(eta, sizeof(eta), "%.0f s", (double)left / rate);
    fprintf(stderr, "\rreplay: %lld/%lld events, %.0f events/s, ETA %s |", consumed, r->total, rate, eta);
    for (int i = 0; i < r->nparts; i++) {
        const rpart *p = &r->parts[i];
        if (p->credits)
            continue;
        if (p->stop == INT64_MAX)
            fprintf(stderr, " p%d %" PRId64, (int)p->partition, p->next - p->start);
        else
            fprintf(stderr, " p%d %" PRId64 "/%" PRId64, (int)p->partition, p->next - p->start, p->stop - p->start);
    }
    fputs("\033[K", stderr);
    fflush(stderr);
}

/* pipeline_source.batch_done: the progress line. */
static void src_batch_done(void *ctx, const pipeline_stats *st)
{
    show_progress(ctx, st->consumed);
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

/* A touchpoint partition asked to start (requested: offset 0 for --from
 * beginning, PARTITION:OFFSET, the kept offset of --resume) below the first
 * offset still in its log: those offsets were deleted (retention, delete-
 * records) and cannot be replayed. Say how many, on stderr, count them for the
 * report, and start at the log start (the consumer would fall back to it
 * silently). */
static void note_gone(rpart *p, int64_t requested)
{
    if (p->credits || requested >= p->log_start)
        return;
    int64_t gone = p->log_start - requested;
    p->gone += gone;
    p->start = p->next = p->kept = p->log_start;
    if (p->stop < p->start)
        p->stop = p->start;
    log_warn("replay: partition %d of %s: offsets %" PRId64 " to %" PRId64 " are gone (%" PRId64 " offsets deleted "
             "by retention before this replay could read them): it starts at %" PRId64,
             (int)p->partition, p->topic, requested, p->log_start - 1, gone, p->log_start);
}

/* --parallel: the partitions of the namespace's credits topic, from their
 * current end (what an earlier replay of the namespace left there is not this
 * one's), after the touchpoint partitions. */
static int add_credits_parts(replay *r, rd_kafka_t *rk, char *err, size_t errlen)
{
    const char *topic = r->cfg->topic_credits;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, REPLAY_TIMEOUT_MS) : RD_KAFKA_RESP_ERR__FAIL;
    int rc = -1;
    if (e || !md || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        snprintf(err, errlen,
                 "topic '%s' (the namespace's credits topic, which --parallel routes credits through): %s; create it "
                 "first, with the partitions of %s",
                 topic, rd_kafka_err2str(e ? e : md && md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__FAIL),
                 r->cfg->topic_touchpoints);
        goto out;
    }
    int n = md->topics[0].partition_cnt;
    rpart *parts = realloc(r->parts, (size_t)(r->nparts + n) * sizeof(*parts));
    if (!parts) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    r->parts = parts;
    for (int i = 0; i < n; i++) {
        rpart *p = &r->parts[r->nparts];
        int64_t lo, hi;
        memset(p, 0, sizeof(*p));
        p->topic = topic;
        p->credits = true;
        p->partition = md->topics[0].partitions[i].id;
        if ((e = rd_kafka_query_watermark_offsets(rk, topic, p->partition, &lo, &hi, REPLAY_TIMEOUT_MS))) {
            snprintf(err, errlen, "watermarks of %s [%d]: %s", topic, (int)p->partition, rd_kafka_err2str(e));
            goto out;
        }
        p->start = hi;
        p->stop = INT64_MAX; /* fixed once every worker's touchpoints are applied */
        r->nparts++;
    }
    rc = 0;
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    return rc;
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
        p->topic = topic;
        p->partition = md->topics[0].partitions[i].id;
        e = rd_kafka_query_watermark_offsets(rk, topic, p->partition, &lo, &hi, REPLAY_TIMEOUT_MS);
        if (e) {
            snprintf(err, errlen, "watermarks of %s [%d]: %s", topic, (int)p->partition, rd_kafka_err2str(e));
            goto out;
        }
        p->log_start = lo;
        p->start = 0; /* beginning: offset 0 (note_gone: what retention deleted) */
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
            rpart *p = find_part(r, topic, l->elems[i].partition);
            if (l->elems[i].err) {
                snprintf(err, errlen, "offsets for times of partition %d: %s", (int)l->elems[i].partition,
                         rd_kafka_err2str(l->elems[i].err));
                goto out;
            }
            int64_t hi = 0, lo = 0;
            rd_kafka_query_watermark_offsets(rk, topic, p->partition, &lo, &hi, REPLAY_TIMEOUT_MS);
            int64_t o = l->elems[i].offset >= 0 ? l->elems[i].offset : hi; /* none at or after t: the end */
            if (pass == 0 && o <= lo && lo > 0)
                log_warn("replay: partition %d of %s starts at its first offset still in the log, %" PRId64
                         ": the %" PRId64 " offsets before it were deleted (retention) and may have held messages at "
                         "or after --from %s",
                         (int)p->partition, topic, lo, lo, from);
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
            rpart *p = colon && end1 == colon && !*end2 && off >= 0 ? find_part(r, topic, (int32_t)part) : NULL;
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
    if (r->nworkers && add_credits_parts(r, rk, err, errlen) != 0)
        goto out;
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

/* Check a progress record against this replay: the same topic, program,
 * outputs and number of workers. 0, or -2 (usage) / -1 with err. */
static int check_record(const replay *r, const char *text, char *err, size_t errlen)
{
    char topic[256], version[128], digest[128], outputs[16];
    int version_no = 0, par = 0;
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
    const char *pl = strstr(text, "\nparallel ");
    if (pl && sscanf(pl, "\nparallel %d", &par) != 1)
        par = -1;
    if (par != r->nworkers) {
        if (par > 0)
            snprintf(err, errlen, "--resume: the namespace was replayed with --parallel %d: give the same --parallel", par);
        else
            snprintf(err, errlen, "--resume: the namespace was replayed by one process: resume it without --parallel");
        return -2;
    }
    return 0;
}

/* Apply the "p PARTITION KEPT STOP" and "c PARTITION KEPT" lines of a
 * progress record to the partitions of this replay (each must be one);
 * with create, first add the partitions of worker r->worker (partition
 * number modulo the number of workers) instead. Counts them in *np, *nc. */
static int apply_lines(replay *r, const char *text, bool create, int *np, int *nc, char *err, size_t errlen)
{
    *np = *nc = 0;
    for (const char *line = strchr(text, '\n'); line; line = strchr(line + 1, '\n')) {
        int part;
        long long kept, stop = -1;
        bool credits = line[1] == 'c';
        if (credits ? sscanf(line, "\nc %d %lld", &part, &kept) != 2
                    : sscanf(line, "\np %d %lld %lld", &part, &kept, &stop) != 3)
            continue;
        const char *topic = credits ? r->cfg->topic_credits : r->cfg->topic_touchpoints;
        if (create && part % r->nworkers != r->worker)
            continue;
        rpart *p = find_part(r, topic, part);
        if (!p && create) {
            rpart *parts = realloc(r->parts, (size_t)(r->nparts + 1) * sizeof(*parts));
            if (!parts) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            r->parts = parts;
            p = &r->parts[r->nparts++];
            memset(p, 0, sizeof(*p));
            p->topic = topic;
            p->credits = credits;
            p->partition = part;
            p->stop = INT64_MAX;
        }
        if (!p) {
            snprintf(err, errlen, "--resume: partition %d of the progress is not in %s", part, topic);
            return -1;
        }
        p->start = p->next = p->kept = kept;
        if (!credits)
            p->stop = r->follow ? INT64_MAX : stop < 0 ? p->stop : stop;
        if (p->stop < p->start)
            p->stop = p->start;
        credits ? (*nc)++ : (*np)++;
    }
    return 0;
}

/* Continue from the progress kept in the namespace: the same topic, program,
 * outputs and --parallel, each partition from its kept offset to its end
 * (--parallel: the record of the ranges as they began; each worker then
 * continues from its own progress). -2 (usage) when it does not match. */
static int resume_ranges(replay *r, const char *text, char *err, size_t errlen)
{
    int rc = check_record(r, text, err, errlen), np, nc, want_p = 0, want_c = 0;
    if (rc != 0)
        return rc;
    if (apply_lines(r, text, false, &np, &nc, err, errlen) != 0)
        return -1;
    for (int i = 0; i < r->nparts; i++)
        r->parts[i].credits ? want_c++ : want_p++;
    if (np != want_p || nc != want_c) {
        snprintf(err, errlen, "--resume: the progress names %d partition(s) of %s and %d of %s, which have %d and %d", np,
                 r->cfg->topic_touchpoints, nc, r->cfg->topic_credits, want_p, want_c);
        return -1;
    }
    return 0;
}

/* --worker K/N: this worker's partitions, from the parent's record (the
 * ranges as they began) and, when it ran before, its own progress. */
static int worker_ranges(replay *r, const char *record, const char *own, char *err, size_t errlen)
{
    int np, nc, rc = check_record(r, record, err, errlen);
    if (rc != 0)
        return rc;
    if (apply_lines(r, record, true, &np, &nc, err, errlen) != 0)
        return -1;
    if (np == 0 && nc == 0) {
        snprintf(err, errlen, "worker %d of %d: no partition", r->worker, r->nworkers);
        return -1;
    }
    if (own && apply_lines(r, own, false, &np, &nc, err, errlen) != 0)
        return -1;
    return 0;
}

/* The final report: the run's counts, then the namespace's figures
 * (report.c: rewards and points by rule, stages by ladder, DLQ reasons). */
static int final_report(replay *r, const pipeline_stats *st, const char *report_path, double secs)
{
    char err[1024];
    buf text = {0}, json = {0};
    int rc = 0;
    long long events = st->consumed - r->credits_read; /* touchpoints read (--parallel: credits read besides) */
    char workers[400] = "", gone_text[160] = "";
    long long gone = 0;
    int gone_parts = 0;
    buf gone_json = {0};
    buf_printf(&gone_json, "{");
    for (int i = 0; i < r->nparts; i++)
        if (r->parts[i].gone) {
            buf_printf(&gone_json, "%s\"%d\":%" PRId64, gone_parts ? "," : "", (int)r->parts[i].partition,
                       r->parts[i].gone);
            gone += r->parts[i].gone;
            gone_parts++;
        }
    buf_printf(&gone_json, "}");
    if (gone)
        snprintf(gone_text, sizeof(gone_text), "; %lld offsets of %d partition(s) were gone (deleted by retention) "
                 "before they could be read", gone, gone_parts);
    if (r->nworkers)
        snprintf(workers, sizeof(workers), "; %d worker processes, %lld credits read back through %s", r->nworkers,
                 r->credits_read, r->cfg->topic_credits);
    char grouped[96] = "";
    if (r->windows)
        snprintf(grouped, sizeof(grouped), "; grouped order: %lld window(s)", r->windows);
    printf("# replay into namespace %.*s: %lld events read in %.1f s (%.0f events/s): %lld touchpoints and %lld "
           "credits applied, %lld found applied already, %lld to the DLQ, %lld outputs (%s); %lld batches, %lld "
           "rounds; %.1f s waiting for a partition's next fetch to keep the order%s%s%s\n",
           (int)strlen(r->cfg->key_prefix) - 1, r->cfg->key_prefix, events, secs, secs > 0 ? (double)events / secs : 0,
           st->touchpoints, st->credits, st->duplicates, st->dlq, st->outputs,
           !strcmp(r->outputs, "none") ? "counted, not produced" : "produced", st->batches, st->rounds, r->held_s,
           grouped, workers, gone_text);
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
                    "\"duplicates\":%lld,\"dlq\":%lld,\"outputs\":%lld,\"outputs_mode\":\"%s\",\"seconds\":%.3f,"
                    "\"workers\":%d,\"credits_read\":%lld,\"gone\":%s,\"gone_total\":%lld},\"report\":%.*s}\n",
                    r->cfg->key_prefix, events, st->touchpoints, st->credits, st->duplicates, st->dlq, st->outputs,
                    r->outputs, secs, r->nworkers, r->credits_read, gone_json.data ? gone_json.data : "{}", gone,
                    (int)json.len, json.data);
        }
        if (f && fclose(f) != 0) {
            log_error("--report %s: %s", report_path, strerror(errno));
            rc = -1;
        }
    }
    buf_free(&text);
    buf_free(&json);
    buf_free(&gone_json);
    return rc;
}

/* The replay's pipeline: `run`'s, in assign mode, with this replay as its
 * source; credits in-process in one process, through the namespace's credits
 * topic in a worker. */
static int replay_pipeline(replay *r, const config *cfg, const program *prog, pipeline_stats *st, char *err,
                           size_t errlen)
{
    char group[200];
    snprintf(group, sizeof(group), "fidelio-replay.%.*s", (int)strlen(cfg->key_prefix) - 1, cfg->key_prefix);
    pipeline_source src = {.group_id = group, .start = src_start, .next = src_next, .commit = src_commit,
                           .rewind = src_rewind, .stop = src_stop, .batch_done = src_batch_done,
                           .batch_end = src_batch_end, .ctx = r};
    pipeline_opts opts = {.source = &src, .credits_in_process = r->worker < 0,
                          .no_outputs = !strcmp(r->outputs, "none")};
    r->t0 = clock_mono_s(); /* reset by src_start, once the pipeline is set up */
    return pipeline_run(cfg, prog, &opts, st, err, errlen) == 0 ? 0 : -1;
}

/* --worker K/N (started by the parent of --parallel N): replay this worker's
 * partitions, from the parent's record or, when it ran before, its own
 * progress; its counts go with its last progress, for the parent. */
static int worker_main(replay *r, const config *cfg, const program *prog, char *err, size_t errlen)
{
    buf record = {0}, own = {0};
    bool found_rec = false, found_own = false;
    pipeline_stats st;
    int rc = EXIT_RUNTIME;
    if (store_meta_get(r->st, "replay", &record, &found_rec, err, errlen) != 0 ||
        store_meta_get(r->st, r->key, &own, &found_own, err, errlen) != 0)
        goto out;
    if (!found_rec) {
        snprintf(err, errlen, "namespace '%s' holds no record of a replay --parallel %d (key replay)", cfg->key_prefix,
                 r->nworkers);
        goto out;
    }
    if (worker_ranges(r, record.data, found_own ? own.data : NULL, err, errlen) != 0 ||
        write_progress(r, NULL, 0, err, errlen) != 0)
        goto out;
    cli_install_signals();
    if (replay_pipeline(r, cfg, prog, &st, err, errlen) != 0)
        goto out;
    r->final = &st;
    if (write_progress(r, NULL, 0, err, errlen) != 0)
        goto out;
    rc = EXIT_OK;
out:
    buf_free(&record);
    buf_free(&own);
    return rc;
}

/* --parallel: each worker's counts (its last progress) summed into st; the
 * credits they read in r->credits_read, their waits in r->held_s. */
static int sum_workers(replay *r, pipeline_stats *st, char *err, size_t errlen)
{
    memset(st, 0, sizeof(*st));
    r->credits_read = 0;
    r->held_s = 0;
    for (int k = 0; k < r->nworkers; k++) {
        char name[32];
        buf b = {0};
        bool found = false;
        long long v[9];
        double held;
        snprintf(name, sizeof(name), "replay.%d", k);
        int rc = store_meta_get(r->st, name, &b, &found, err, errlen);
        const char *line = found && b.data ? strstr(b.data, "\nstats ") : NULL;
        if (rc == 0 && (!line || sscanf(line, "\nstats %lld %lld %lld %lld %lld %lld %lld %lld %lld %lf", &v[0], &v[1],
                                        &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &held) != 10)) {
            snprintf(err, errlen, "worker %d left no counts in %s%s", k, r->cfg->key_prefix, name);
            rc = -1;
        }
        for (const char *g = rc ? NULL : strstr(b.data, "\ng "); g; g = strstr(g + 1, "\ng ")) {
            int part;
            long long n;
            rpart *p;
            if (sscanf(g, "\ng %d %lld", &part, &n) == 2 && (p = find_part(r, r->cfg->topic_touchpoints, part)))
                p->gone += n;
        }
        buf_free(&b);
        if (rc != 0)
            return -1;
        st->consumed += v[0];
        st->touchpoints += v[1];
        st->credits += v[2];
        st->duplicates += v[3];
        st->dlq += v[4];
        st->outputs += v[5];
        st->batches += v[6];
        st->rounds += v[7];
        r->credits_read += v[8];
        r->held_s += held;
    }
    return 0;
}

/* --parallel, on a terminal: the workers' progress (their kept offsets). */
static void parent_progress(replay *r)
{
    if (!r->tty || clock_mono_s() - r->last_show < 1.0)
        return;
    long long done = 0;
    for (int k = 0; k < r->nworkers; k++) {
        char name[32], err[256];
        buf b = {0};
        bool found = false;
        snprintf(name, sizeof(name), "replay.%d", k);
        if (store_meta_get(r->st, name, &b, &found, err, sizeof(err)) == 0 && found && b.data)
            for (const char *line = strstr(b.data, "\np "); line; line = strstr(line + 1, "\np ")) {
                int part;
                long long kept;
                rpart *p;
                if (sscanf(line, "\np %d %lld", &part, &kept) == 2 &&
                    (p = find_part(r, r->cfg->topic_touchpoints, part)))
                    p->next = kept;
            }
        buf_free(&b);
    }
    for (int i = 0; i < r->nparts; i++)
        if (!r->parts[i].credits)
            done += r->parts[i].next - r->parts[i].start;
    show_progress(r, done);
}

/* --parallel N: run N worker processes (this program again, `replay --worker
 * K/N` and the same options), each dying with this one (PR_SET_PDEATHSIG);
 * SIGTERM/SIGINT is passed on; a worker that fails stops the others (SIGTERM:
 * they keep their progress). 0 once every worker ended well, -1 with err. */
static int run_workers(replay *r, int argc, char **argv, char *err, size_t errlen)
{
    pid_t *pids = calloc((size_t)r->nworkers, sizeof(*pids));
    char **wargv = calloc((size_t)argc + 4, sizeof(*wargv));
    char spec[32], why[256] = "";
    int alive = 0, rc = -1;
    bool stopping = false;
    if (!pids || !wargv) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    wargv[0] = "fidelio";
    wargv[1] = argv[0];
    wargv[2] = "--worker";
    wargv[3] = spec;
    for (int i = 1; i < argc; i++)
        wargv[3 + i] = argv[i];
    pid_t parent = getpid();
    r->t0 = clock_mono_s();
    for (int k = 0; k < r->nworkers; k++) {
        snprintf(spec, sizeof(spec), "%d/%d", k, r->nworkers);
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) { /* the child: only async-signal-safe calls until exec */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(EXIT_RUNTIME);
            execv("/proc/self/exe", wargv);
            _exit(127);
        }
        if (pid < 0) {
            snprintf(why, sizeof(why), "starting worker %d: %s", k, strerror(errno));
            stopping = true;
            break;
        }
        pids[k] = pid;
        alive++;
    }
    for (int k = 0; stopping && k < r->nworkers; k++)
        if (pids[k] > 0)
            kill(pids[k], SIGTERM);
    while (alive > 0) {
        bool reaped = false;
        for (int k = 0; k < r->nworkers; k++) {
            int status;
            if (pids[k] <= 0 || waitpid(pids[k], &status, WNOHANG) != pids[k])
                continue;
            pids[k] = 0;
            alive--;
            reaped = true;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                continue;
            if (!why[0])
                snprintf(why, sizeof(why), "worker %d of %d %s %d", k, r->nworkers,
                         WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
                         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            if (!stopping) {
                stopping = true;
                for (int j = 0; j < r->nworkers; j++)
                    if (pids[j] > 0)
                        kill(pids[j], SIGTERM);
            }
        }
        if (cli_stop && !stopping) {
            stopping = true;
            for (int j = 0; j < r->nworkers; j++)
                if (pids[j] > 0)
                    kill(pids[j], SIGTERM);
        }
        if (!reaped && alive > 0) {
            parent_progress(r);
            usleep(100000);
        }
    }
    if (why[0]) {
        snprintf(err, errlen, "%s: the other workers were stopped and kept their progress (--resume --parallel %d "
                 "continues)", why, r->nworkers);
        goto out;
    }
    rc = 0;
out:
    free(pids);
    free(wargv);
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
                                             {"parallel", required_argument, NULL, 'J'},
                                             {"worker", required_argument, NULL, 'K'},
                                             {"order", required_argument, NULL, 'X'},
                                             {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    program *prog = NULL;
    const char *rules = NULL, *name = NULL, *from = "beginning", *to = "end", *outputs = "none",
               *report_path = NULL, *order = "grouped";
    bool resume = false, wipe = false, follow = false, into_live = false;
    int opt, rc = EXIT_USAGE, nworkers = 0, worker = -1, wn = 0;
    char *end;
    char err[1024];
    buf progress = {0};
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
        case 'J':
            nworkers = (int)strtol(optarg, &end, 10);
            if (*end || end == optarg || nworkers < 2 || nworkers > 64) {
                fprintf(stderr, "fidelio replay: --parallel '%s': 2 to 64 worker processes (one process is the "
                                "default)\n", optarg);
                goto out_cc;
            }
            break;
        case 'X': order = optarg; break;
        case 'K': /* --worker K/N: a worker of --parallel N, started by its parent */
            if (sscanf(optarg, "%d/%d", &worker, &wn) != 2 || wn < 2 || wn > 64 || worker < 0 || worker >= wn) {
                fprintf(stderr, "fidelio replay: --worker '%s': K/N, set by replay --parallel N\n", optarg);
                goto out_cc;
            }
            break;
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
    if (strcmp(order, "grouped") != 0 && strcmp(order, "merge") != 0) {
        fprintf(stderr, "fidelio replay: --order '%s': grouped or merge\n", order);
        goto out_cc;
    }
    if (resume && wipe) {
        fprintf(stderr, "fidelio replay: --resume and --wipe exclude each other\n");
        goto out_cc;
    }
    if (worker >= 0)
        nworkers = wn;
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
    replay r = {.cfg = &cfg, .prog = prog, .follow = follow, .outputs = outputs, .tty = worker < 0 && isatty(2),
                .nworkers = nworkers, .worker = worker};
    if (worker >= 0)
        snprintf(r.key, sizeof(r.key), "replay.%d", worker);
    else
        snprintf(r.key, sizeof(r.key), "replay");
    if (worker >= 0) { /* the parent checked the target and keeps the record of the ranges */
        if (!(r.st = store_open(cfg.redis_url, prefix, cfg.dedupe_retention_ms, cfg.ledger_max, err, sizeof(err)))) {
            fprintf(stderr, "fidelio replay: %s\n", err);
            rc = EXIT_RUNTIME;
            goto out_cfg;
        }
        if ((rc = worker_main(&r, &cfg, prog, err, sizeof(err))) != EXIT_OK)
            log_error("replay worker %d/%d: %s", worker, nworkers, err);
        goto out_store;
    }
    /* the target must be empty, or be resumed, or be wiped (its keys counted first) */
    store *ro = store_open_readonly(cfg.redis_url, prefix, err, sizeof(err));
    long long nkeys = 0;
    bool found = false;
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
    /* the ranges (and the refusals they bring) before anything is written */
    int rrc = resolve_ranges(&r, from, to, err, sizeof(err));
    if (rrc == 0 && resume && found)
        rrc = resume_ranges(&r, progress.data, err, sizeof(err));
    /* offsets asked for that retention deleted (resumed workers check their own) */
    for (int i = 0; rrc == 0 && !(nworkers && resume && found) && i < r.nparts; i++)
        note_gone(&r.parts[i], r.parts[i].start);
    if (rrc != 0) {
        fprintf(stderr, "fidelio replay: %s\n", err);
        rc = rrc == -2 ? EXIT_USAGE : EXIT_RUNTIME;
        goto out_store;
    }
    if (nworkers) {
        int ntps = 0;
        for (int i = 0; i < r.nparts; i++)
            ntps += !r.parts[i].credits;
        if (nworkers > ntps) {
            fprintf(stderr, "fidelio replay: --parallel %d: %s has %d partitions, the most workers that can share it\n",
                    nworkers, cfg.topic_touchpoints, ntps);
            goto out_store;
        }
    }
    if (!(r.st = store_open(cfg.redis_url, prefix, cfg.dedupe_retention_ms, cfg.ledger_max, err, sizeof(err)))) {
        fprintf(stderr, "fidelio replay: %s\n", err);
        rc = EXIT_RUNTIME;
        goto out_store;
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
            goto out_store;
        }
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
    int ntp = 0;
    for (int i = 0; i < r.nparts; i++) {
        if (r.parts[i].credits)
            continue;
        ntp++;
        if (r.parts[i].stop != INT64_MAX)
            r.total += r.parts[i].stop - r.parts[i].start;
    }
    /* the grouped order needs every referral that can matter to be a SIGNUP this process sees: an
     * empty namespace (a resumed one holds profiles with referrals read before), no --follow */
    r.grouped = !strcmp(order, "grouped") && !nworkers && !follow && !(resume && found);
    if (r.grouped) {
        size_t wmax = (size_t)ntp * (size_t)cfg.batch_size * REPLAY_WINDOW_BATCHES;
        r.wmax = wmax < REPLAY_WINDOW_MAX ? wmax : REPLAY_WINDOW_MAX;
        r.order = replay_order_new();
        r.codec = codec_new((size_t)cfg.max_message_bytes, err, sizeof(err));
        r.rec = calloc(1, sizeof(*r.rec));
        r.win = calloc(r.wmax, sizeof(*r.win));
        r.worder = malloc(r.wmax * sizeof(*r.worder));
        r.wcust = malloc(r.wmax * sizeof(*r.wcust));
        r.wclen = malloc(r.wmax * sizeof(*r.wclen));
        r.wcred = malloc(r.wmax);
        r.wqcap = 16; /* windows in flight: the batches in flight and the one read ahead span a few */
        r.wq = calloc(r.wqcap, sizeof(*r.wq));
        for (int i = 0; i < prog->nrules; i++)
            if (prog->rules[i].to == BENEFICIARY_REFERRER)
                r.credit_type[prog->rules[i].on] = true;
        if (!r.order || !r.codec || !r.rec || !r.win || !r.worder || !r.wcust || !r.wclen || !r.wcred || !r.wq) {
            fprintf(stderr, "fidelio replay: out of memory for a window of %zu messages\n", r.wmax);
            rc = EXIT_RUNTIME;
            goto out_store;
        }
    }
    log_info("replaying %s (%d partitions, %lld events%s) into namespace '%s' with rule program %s; outputs: %s%s",
             cfg.topic_touchpoints, ntp, r.total, follow ? ", then following" : "", prefix, prog->version,
             !strcmp(outputs, "none") ? "none (counted)"
             : into_live                ? "the live topics"
                                        : "the namespace's topics",
             nworkers ? "; credits through the namespace's credits topic" : "");
    char group[200];
    snprintf(group, sizeof(group), "fidelio-replay.%s", base);
    if (!strcmp(group, cfg.consumer_group)) {
        fprintf(stderr, "fidelio replay: consumer.group is '%s', the group id replay reserves for namespace %s\n", group,
                prefix);
        rc = EXIT_USAGE;
        goto out_store;
    }
    cli_install_signals();
    pipeline_stats st;
    int prc;
    if (nworkers) {
        prc = run_workers(&r, argc, argv, err, sizeof(err));
        if (prc == 0)
            prc = sum_workers(&r, &st, err, sizeof(err));
    } else {
        prc = replay_pipeline(&r, &cfg, prog, &st, err, sizeof(err));
    }
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
    replay_order_free(r.order);
    if (r.codec)
        codec_free(r.codec);
    if (r.rec) {
        codec_record_free(r.rec);
        free(r.rec);
    }
    free(r.win);
    free(r.worder);
    free(r.wcust);
    free(r.wclen);
    free(r.wcred);
    for (size_t k = 0; k < r.wqn; k++)
        rwindow_free(&r.wq[k]);
    free(r.wq);
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
