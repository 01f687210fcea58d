/* emitter.h - the emit and commit stage of `fidelio run`: the producer of a
 * batch's outputs (rewards, stage changes, credits, DLQ records) and the
 * commit of the batch's input offsets, in one of two modes:
 *
 * - at-least-once (pipeline.exactly_once: false, the default): an idempotent
 *   producer; the batch's messages are flushed (every acknowledgement
 *   awaited), then the consumer commits the offsets. After a crash between the
 *   two, the redelivered batch re-emits its recorded outputs: subscribers see
 *   duplicates with the same ids.
 * - exactly-once (true): a transactional producer; each batch is one Kafka
 *   transaction holding its messages and its input offsets
 *   (send_offsets_to_transaction with the consumer's group metadata, so an
 *   instance that lost its partitions is fenced by the group generation,
 *   KIP-447). Redis applies before the commit; an aborted or crashed batch is
 *   redelivered, Redis reports its events applied, and their recorded outputs
 *   go into the next transaction: read_committed subscribers see each output
 *   once. Needs a real Kafka broker (refused on librdkafka's mock cluster). */
#ifndef FIDELIO_EMITTER_H
#define FIDELIO_EMITTER_H

#include <stdbool.h>

#include "config.h"
#include "kafka.h"

/* What became of a batch handed to emitter_commit. */
typedef enum emit_result {
    EMIT_FATAL = -1,    /* cannot go on: stop without committing (err says why) */
    EMIT_COMMITTED = 0, /* messages acknowledged and offsets committed */
    EMIT_UNCOMMITTED,   /* messages acknowledged, offsets not committed (at-least-once: redelivery dedupes) */
    EMIT_ABORTED,       /* transaction aborted: nothing visible; rewind the batch and process it again */
} emit_result;

typedef struct emitter {
    rd_kafka_t *producer;       /* owned; produce the batch's messages with it */
    rd_kafka_t *consumer;       /* the pipeline's consumer (group metadata, commits); not owned */
    const config *cfg;          /* not owned */
    kafka_delivery dr;          /* delivery accounting of the producer */
    bool transactional;         /* pipeline.exactly_once */
    bool in_txn;                /* a transaction is open */
    char txn_id[256];           /* transactional.id in use */
    long long aborted;          /* transactions aborted so far */
    long long restarts;         /* producers replaced after a fatal (fenced) error */
    char last_abort[512];       /* why the last transaction was aborted */
} emitter;

/* Open the producer for cfg; with pipeline.exactly_once a transactional one
 * (refused with a message on the mock cluster; init_transactions done). */
int emitter_open(emitter *em, const config *cfg, rd_kafka_t *consumer, char *err, size_t errlen);

/* Start a batch: begins a transaction in exactly-once mode; nothing otherwise. */
int emitter_begin(emitter *em, char *err, size_t errlen);

/* End a batch whose messages were produced with em->producer: acknowledge
 * them and commit offsets (a list of next offsets to read) as the mode says. */
emit_result emitter_commit(emitter *em, rd_kafka_topic_partition_list_t *offsets, char *err, size_t errlen);

/* Abort the open transaction, if any (its messages never become visible). */
void emitter_abort(emitter *em);

/* Flush (at-least-once) or abort what is open, then free the producer. */
void emitter_close(emitter *em);

#endif
