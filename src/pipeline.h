/* pipeline.h - `fidelio run`: one consumer-group member that turns touchpoint
 * events and credits into profile updates in Redis and output events in
 * Kafka, with effects exactly once (docs/design.md invariants 1-7).
 *
 * Per batch: poll up to pipeline.batch_size messages (or
 * pipeline.batch_max_bytes, or pipeline.batch_linger_ms) -> decode and
 * validate (bad -> DLQ) -> group by customer -> fetch profiles and dedupe
 * records (one pipelined round trip) -> run the engine -> apply each event
 * with the store's fenced, idempotent script (one pipelined round trip) ->
 * produce every output. Batches are pipelined: the next batch is read and
 * applied while the outputs of earlier ones await acknowledgement, and the
 * offsets are committed in order, a batch's once its outputs and every earlier
 * batch's are acknowledged (emitter.h). Redis and the pipeline overlap (`run`,
 * at-least-once): each chunk of decided customers is sent to Redis at once,
 * and while a batch's applies run the next batch is read, decoded and its
 * fetch sent behind them on the same connection (pipeline.c read_ahead). A
 * redelivered event finds its dedupe record and re-emits the recorded
 * outputs, byte for byte. */
#ifndef FIDELIO_PIPELINE_H
#define FIDELIO_PIPELINE_H

#include <stdbool.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "program.h"

/* Load the rule program again (SIGHUP). Returns the new program (the caller
 * of pipeline_run keeps ownership of every program it hands out) or NULL
 * with err when it is refused: unreadable, invalid, or orphaning stored stages. */
typedef const program *(*pipeline_reload_fn)(void *ctx, char *err, size_t errlen);

struct pipeline_stats;

/* Assign mode (`fidelio replay`): instead of joining consumer.group, the
 * pipeline reads what a source hands it from assigned partitions, with no
 * offset commit ever; the source keeps its own progress. All callbacks get ctx. */
typedef struct pipeline_source {
    /* group.id of the consumer (librdkafka's consumer cannot assign without
     * one); never joined (no subscribe) and never committed on (no commit,
     * enable.auto.commit and enable.auto.offset.store off). Not the live group. */
    const char *group_id;
    /* Assign the partitions to the consumer. 0, or -1 with err. */
    int (*start)(void *ctx, rd_kafka_t *consumer, char *err, size_t errlen);
    /* The next message in the source's order (the caller destroys it), or
     * NULL after about timeout_ms; *done becomes true once everything the
     * source has to give was handed out. */
    rd_kafka_message_t *(*next)(void *ctx, int timeout_ms, bool *done);
    /* After a batch's applies and the acknowledgement of its outputs and
     * every earlier batch's (batches are pipelined as in `run`: called in
     * batch order, from the emitter's poll): the
     * next offset to read of each partition in the batch (the progress to
     * keep), how many messages the batch held (in the order next handed
     * them out), and the batch's DLQ counts for the report (dlq_pairs: n field /
     * count pairs of <prefix>aggregates), to be written in one atomic step
     * with the progress, so a resumed replay counts each DLQ item once.
     * A source whose order is not each partition's offset order lowers the
     * offsets of next to what it kept: the store is told only those are
     * committed (store_committed). 0, or -1 with err (the batch then counts
     * as uncommitted). */
    int (*commit)(void *ctx, rd_kafka_topic_partition_list_t *next, size_t messages, const char *const *dlq_pairs,
                  size_t n, char *err, size_t errlen);
    /* After each message next handed out: true ends the batch there (the
     * source keeps its progress by windows no batch may span); may be NULL. */
    bool (*batch_end)(void *ctx);
    /* A delivery failed: hand out again, in the same order, every message from
     * these offsets on (the first offset of each partition's uncommitted
     * batches; the batches are read and decided again, and Redis finds their
     * events applied). 0, or -1 with err. */
    int (*rewind)(void *ctx, const rd_kafka_topic_partition_list_t *first, char *err, size_t errlen);
    /* Before the consumer is closed: release every message still held; may be NULL. */
    void (*stop)(void *ctx);
    /* After each batch (progress display); may be NULL. */
    void (*batch_done)(void *ctx, const struct pipeline_stats *st);
    void *ctx;
} pipeline_source;

typedef struct pipeline_opts {
    bool until_idle;        /* return once every assigned partition is at its end and nothing is in flight */
    int idle_grace_ms;      /* how long "at the end" must last (credits may still be on their way) */
    pipeline_reload_fn reload; /* on SIGHUP (cli_hup), between batches; NULL: SIGHUP is only logged */
    void *reload_ctx;
    const pipeline_source *source; /* NULL: consumer-group mode (`run`); else assign mode (above) */
    bool credits_in_process;  /* one process owns every partition: a referral credit is applied right
                                 after the event that earned it, in this batch (as `simulate` does),
                                 never produced to topics.credits; the credits topic is not read */
    bool no_outputs;          /* produce no output (rewards, stage changes, DLQ records are counted only);
                                 without credits_in_process, credits still go through topics.credits */
} pipeline_opts;

typedef struct pipeline_stats {
    long long consumed;      /* input messages whose batch finished (touchpoints and credits) */
    long long touchpoints;   /* applied */
    long long credits;       /* applied */
    long long duplicates;    /* redelivered: recorded outputs re-emitted */
    long long dlq;           /* sent to the DLQ */
    long long outputs;       /* messages produced (rewards, stage changes, credits) */
    long long batches;
    long long rounds;        /* decide rounds (fetch + apply round trips): one per batch unless fenced or,
                                with in-process credits, cut (pipeline.c) */
    long long fenced;        /* applies refused by the version check and recomputed */
    long long read_ahead;    /* batches decided on a fetch sent while the previous batch's applies ran
                                (the overlap, pipeline.c read_ahead) */
    long long redis_pauses;  /* times processing paused because Redis was unreachable */
    long long aborted;       /* exactly-once: transactions aborted (their batches processed again) */
} pipeline_stats;

/* Run until SIGINT/SIGTERM (cli_stop), or until idle with opts->until_idle.
 * Returns 0 after a clean stop (batch finished, outputs flushed, offsets
 * committed, consumer closed), -1 with err on a failure that must not be
 * committed past (an output that could not be delivered). */
int pipeline_run(const config *cfg, const program *prog, const pipeline_opts *opts, pipeline_stats *st, char *err,
                 size_t errlen);

/* What a fetch of the pipeline's consumer waits for, unless kafka.fetch.min.bytes /
 * kafka.fetch.wait.max.ms say otherwise: 64 KB, or 25 ms (README: Configuration). */
#define PIPELINE_FETCH_MIN_BYTES "65536"
#define PIPELINE_FETCH_WAIT_MS "25"

/* The configuration of the pipeline's consumer: cfg's kafka.* keys, then
 * Fidelio's defaults for those it does not set (a bounded prefetch, fetches
 * of PIPELINE_FETCH_MIN_BYTES or PIPELINE_FETCH_WAIT_MS, earliest,
 * cooperative-sticky, statistics), manual commits; assign_group (assign mode,
 * pipeline_source) or NULL for cfg's consumer group. The caller owns it;
 * NULL with err. */
rd_kafka_conf_t *pipeline_consumer_conf(const config *cfg, const char *assign_group, char *err, size_t errlen);

#endif
