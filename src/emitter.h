/* emitter.h - the emit and commit stage of `fidelio run`: the producer of a
 * batch's outputs (rewards, stage changes, credits, DLQ records) and the
 * commit of the batch's input offsets, in one of two modes:
 *
 * - at-least-once (pipeline.exactly_once: false, the default): an idempotent
 *   producer, batches pipelined. A batch's messages are produced and the
 *   batch is handed over (emitter_end) without waiting: while they are in
 *   flight the pipeline reads, decides and applies the next batches. Every
 *   message carries its batch's sequence number; a batch is complete when
 *   each of its messages is acknowledged. Offsets are committed
 *   asynchronously and in order: the offsets of batch n only once batch n
 *   AND every earlier batch are complete (the complete batches at the head
 *   are merged into one commit), never past an unacknowledged output
 *   (DESIGN.md invariant 3). A delivery that fails stops every commit:
 *   emitter_poll says so, and the pipeline takes back the first offsets of
 *   every uncommitted batch (emitter_discard) to read them again. After a
 *   crash between an acknowledgement and its commit, the redelivered batch
 *   re-emits its recorded outputs: subscribers see duplicates with the same ids.
 * - exactly-once (true): a transactional producer; each batch is one Kafka
 *   transaction holding its messages and its input offsets
 *   (send_offsets_to_transaction with the consumer's group metadata, so an
 *   instance that lost its partitions is fenced by the group generation,
 *   KIP-447), committed before the next batch is produced (one open
 *   transaction per producer). Redis applies before the commit; an aborted
 *   or crashed batch is redelivered, Redis reports its events applied, and
 *   their recorded outputs go into the next transaction: read_committed
 *   subscribers see each output once. Needs a real Kafka broker (refused on
 *   librdkafka's mock cluster). */
#ifndef FIDELIO_EMITTER_H
#define FIDELIO_EMITTER_H

#include <stdbool.h>

#include "config.h"
#include "kafka.h"
#include "latency.h"

/* What became of a batch handed to emitter_commit. */
typedef enum emit_result {
    EMIT_FATAL = -1,    /* cannot go on: stop without committing (err says why) */
    EMIT_COMMITTED = 0, /* messages acknowledged and offsets committed */
    EMIT_PENDING,       /* at-least-once: handed over; acknowledged and committed later (emitter_poll) */
    EMIT_UNCOMMITTED,   /* messages acknowledged, offsets not committed (at-least-once: redelivery dedupes) */
    EMIT_ABORTED,       /* transaction aborted: nothing visible; rewind the batch and process it again */
} emit_result;

/* Called once for each batch handed to emitter_end with a non-NULL user:
 * committed says whether its offsets were committed (false: dropped, or the
 * commit failed; it will be redelivered). The callee owns user again. */
typedef void (*emitter_done_fn)(void *ctx, void *user, bool committed);

/* One batch whose messages are in flight (at-least-once). */
typedef struct emit_batch {
    unsigned long long seq;     /* its tag in the delivery reports */
    long long produced;         /* messages produced */
    long long acked;            /* of them acknowledged */
    long long failed;           /* of them failed for good */
    bool sealed;                /* emitter_end called: no more messages */
    int64_t produced_at_ms;     /* wall clock of emitter_begin: its first produce call follows */
    rd_kafka_topic_partition_list_t *offsets; /* next offsets to read, committed once complete; owned */
    rd_kafka_topic_partition_list_t *first;   /* its first offsets, to read it again; owned */
    void *user;                 /* handed to the done callback */
} emit_batch;

/* Topic handles an emitter keeps (a topic beyond them is produced to by name). */
#define EMITTER_TOPICS 8
/* At most this many producers (pipeline.output_producers). */
#define EMITTER_PRODUCERS 4

typedef struct emitter {
    rd_kafka_t *producer;       /* owned; produce the batch's messages with it (producers[0]) */
    rd_kafka_t *producers[EMITTER_PRODUCERS]; /* owned; at-least-once: pipeline.output_producers of them, each
                                 * with its own connection to each broker, the topics emitter_prepare
                                 * is given shared among them in turn (one topic, one producer);
                                 * exactly-once: one */
    int nproducers;             /* how many */
    rd_kafka_t *consumer;       /* the pipeline's consumer (group metadata, commits); not owned */
    const config *cfg;          /* not owned */
    kafka_delivery dr;          /* delivery accounting of the producer */
    bool transactional;         /* pipeline.exactly_once */
    bool in_txn;                /* a transaction is open */
    char txn_id[256];           /* transactional.id in use */
    long long aborted;          /* transactions aborted so far */
    long long restarts;         /* producers replaced after a fatal (fenced) error */
    char last_abort[512];       /* why the last transaction was aborted */
    rd_kafka_resp_err_t last_produce_err; /* of the last emitter_produce call (0: accepted) */
    emitter_done_fn done;       /* see emitter_done_fn; may be NULL */
    void *done_ctx;
    bool keep_offsets;          /* assign mode (`replay`): no consumer commit; a complete batch at the head
                                 * goes to done(user, true) in order, its offsets the caller's to keep */
    /* at-least-once pipelining: a ring of batches in flight, oldest first */
    emit_batch *ring;           /* owned, ring_cap entries */
    int ring_cap, head, count;  /* capacity (pipeline.max_in_flight_batches), first, how many */
    unsigned long long next_seq; /* tag of the next batch (from 1) */
    unsigned long long head_seq; /* tag of ring[head] */
    rd_kafka_queue_t *commit_q; /* results of asynchronous commits; owned */
    int commits_pending;        /* asynchronous commits whose result has not come */
    long long committed_batches; /* batches whose offsets were committed */
    char fail_error[512];       /* why an in-flight batch failed */
    struct {
        char name[256];
        rd_kafka_topic_t *rkt;  /* owned; of producers[producer], destroyed before it */
        int producer;           /* which producer writes the topic */
    } topics[EMITTER_TOPICS];   /* handles of the topics produced to (outputs, DLQ, credits) */
    int ntopics;
    int output_partitions;      /* partitions of the topics emitter_prepare was given (0 before) */
    int busiest_broker_partitions; /* of them, the most led by one broker */
    kafka_req_stats stats_prev[EMITTER_PRODUCERS]; /* each producer's last statistics (log.level=debug only) */
    struct {
        rd_kafka_message_t *msgs; /* owned array; key and payload point into the caller's buffers */
        int n;                  /* staged */
        size_t cap;             /* room in msgs */
    } staged[EMITTER_TOPICS];   /* at-least-once: outputs of the open batch per topic handle, in order,
                                 * waiting for emitter_send_staged */
    int staged_n;               /* outputs staged in all */
    const char *staged_topic;   /* the topic emitter_send_staged produced to last (its error's) */
    long long queue_max_msgs;   /* producers' queue.buffering.max.messages */
    long long queue_max_bytes;  /* producers' queue.buffering.max.kbytes * 1024 */
    long long payload_sent;     /* payload bytes of the messages the producers accepted (less
                                 * dr.payload_done: what their queues count of them now) */
    latency_hist *output_ages;  /* not owned; NULL: not measured. At-least-once: each acknowledged output's
                                 * Kafka timestamp (LogAppendTime; else when its report is served) - its
                                 * batch's produced_at_ms (log.level=debug) */
} emitter;

/* Output partitions led by one broker above which emitter_prepare warns
 * (README: Performance, latency). */
#define EMITTER_PARTITIONS_PER_BROKER 64

/* Open the producer for cfg; with pipeline.exactly_once a transactional one
 * (refused with a message on the mock cluster; init_transactions done).
 * done (may be NULL) is told when each batch is committed or dropped. */
int emitter_open(emitter *em, const config *cfg, rd_kafka_t *consumer, emitter_done_fn done, void *done_ctx,
                 char *err, size_t errlen);

/* Before consuming: make the producer's handles of the n topics it will
 * write and fetch their metadata (partitions, leaders; waiting up to
 * timeout_ms each), so the first batch's outputs are not held in the
 * producer's queue waiting for it. Logs the output partitions per broker and
 * warns above EMITTER_PARTITIONS_PER_BROKER. A topic whose metadata does not
 * come is logged, not fatal (the producer asks again on first use). */
void emitter_prepare(emitter *em, const char *const *topics, size_t n, int timeout_ms);

/* Whether a new batch may begin (at-least-once: fewer than
 * pipeline.max_in_flight_batches in flight); else emitter_poll until it may. */
bool emitter_has_room(const emitter *em);

/* Start a batch: begins a transaction in exactly-once mode; at-least-once,
 * opens the next in-flight slot (emitter_has_room must be true). */
int emitter_begin(emitter *em, char *err, size_t errlen);

/* Produce one message of the open batch (kafka_produce, tagged with the batch). */
rd_kafka_resp_err_t emitter_produce(emitter *em, const char *topic, const void *key, size_t keylen,
                                    const void *value, size_t len, rd_kafka_headers_t *hdrs);

/* Stage one output (no headers) of the open batch for emitter_send_staged:
 * key and value must stay valid until then. At-least-once only; otherwise
 * (and for a topic without a handle) it is produced at once (emitter_produce). */
rd_kafka_resp_err_t emitter_stage(emitter *em, const char *topic, const void *key, size_t keylen, const void *value,
                                  size_t len);

/* Produce the staged outputs: one rd_kafka_produce_batch per topic, each
 * topic's in the order staged (so each partition's). A batch call that could
 * meet a full producer queue (where librdkafka would enqueue the messages
 * after a refused one: out of order) is made message by message instead,
 * waiting for room as emitter_produce does. The first error, or 0; the
 * staged outputs are gone either way. */
rd_kafka_resp_err_t emitter_send_staged(emitter *em);

/* Whether n messages of payload bytes fit a producer queue holding queued
 * messages of queued_payload bytes, within max_msgs and max_bytes (librdkafka
 * counts a message's payload, not its key or headers). */
bool emitter_batch_fits(long long queued, long long queued_payload, long long n, long long payload,
                        long long max_msgs, long long max_bytes);

/* End the open at-least-once batch: offsets (next offsets to read) and first
 * (its first offsets) are taken over; returns EMIT_PENDING at once, the
 * done callback tells the outcome with user. */
emit_result emitter_end(emitter *em, rd_kafka_topic_partition_list_t *offsets,
                        rd_kafka_topic_partition_list_t *first, void *user);

/* End a batch that is not pipelined: exactly-once, its transaction (its
 * messages and offsets, a list of next offsets to read); at-least-once
 * (assign mode), wait for every acknowledgement, then commit offsets (none
 * when the list is empty). */
emit_result emitter_commit(emitter *em, rd_kafka_topic_partition_list_t *offsets, char *err, size_t errlen);

/* Serve delivery reports (waiting up to timeout_ms) and commit results;
 * commit the complete batches at the head, asynchronously. 0, or -1 when a
 * batch in flight has failed (em->fail_error): nothing is committed from then
 * on until emitter_discard. */
int emitter_poll(emitter *em, int timeout_ms);

/* Batches in flight (handed over, not yet committed or dropped). */
int emitter_in_flight(const emitter *em);
/* Messages and requests waiting in the producers (rd_kafka_outq_len, summed). */
int emitter_queued(const emitter *em);

/* Wait (up to timeout_ms) until every batch in flight is acknowledged and
 * commit them synchronously (a revoke, a stop). 0, or -1 when one failed or
 * did not complete in time (em->fail_error); the batches then stay in flight. */
int emitter_drain(emitter *em, int timeout_ms);

/* After a failure: wait (up to timeout_ms) for the messages still queued,
 * then drop every batch in flight uncommitted (done(user, false)); their
 * first offsets, the oldest per partition, are added to first for the
 * caller to read them again. */
void emitter_discard(emitter *em, int timeout_ms, rd_kafka_topic_partition_list_t *first);

/* Mark the batch just ended as failed (a produce call refused), why saying why. */
void emitter_fail(emitter *em, const char *why);

/* Lost partitions: never commit them (someone else owns them now). */
void emitter_forget(emitter *em, const rd_kafka_topic_partition_list_t *parts);

/* Exactly-once, after a produce call of the open transaction was refused
 * with RD_KAFKA_RESP_ERR__STATE ("Erroneous state"): the transaction failed
 * while its messages were being produced (e.g. AddPartitionsToTxn refused
 * for a missing Write ACL on an output topic, answered before the batch's
 * last produce call). Returns true and fills err ("transaction refused (the
 * principal lacks an ACL; README: ACLs): <librdkafka's cause>") when the
 * cause is a missing ACL: the caller stops (nothing was committed); false
 * otherwise (abort and retry as before). Commits nothing: it only asks for
 * the cause once the transaction can no longer commit. */
bool emitter_txn_refused(emitter *em, char *err, size_t errlen);

/* Abort the open transaction, if any (its messages never become visible). */
void emitter_abort(emitter *em);

/* Abort what is open (exactly-once) or wait briefly for what is queued,
 * drop what is in flight uncommitted, then free the producer. */
void emitter_close(emitter *em);

#endif
