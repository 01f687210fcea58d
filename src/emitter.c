/* emitter.c - the producer of a batch's messages and the commit of its
 * offsets: batches in flight committed in order as their acknowledgements
 * come (at-least-once), or one Kafka transaction per batch (exactly-once).
 * See emitter.h. */
#include "emitter.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "log.h"

/* How long one transactional call may take before it counts as failed. */
#define TXN_TIMEOUT_MS 60000

/* Whether the configuration sets kafka.<key>; its value or NULL. */
static const char *kafka_value(const config *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->kafka_count; i++)
        if (!strcmp(cfg->kafka[i].key, key))
            return cfg->kafka[i].value;
    return NULL;
}

/* Copy a librdkafka error's text into err and free the error. */
static void take_error(rd_kafka_error_t *e, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s", what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
}

/* A transactional producer: transactional.id from kafka.transactional.id, else
 * <group>-<host>-<pid> (unique per process; a stable per-instance id lets a
 * restarted instance fence its predecessor and abort its open transaction at once). */
static rd_kafka_t *txn_producer_new(emitter *em, char *err, size_t errlen)
{
    const config *cfg = em->cfg;
    char why[512];
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, err, errlen);
    if (!conf)
        return NULL;
    if (kafka_conf_set(conf, "enable.idempotence", "true", err, errlen) ||
        kafka_conf_set(conf, "acks", "all", err, errlen) ||
        kafka_conf_set(conf, "transactional.id", em->txn_id, err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, kafka_on_delivery);
    rd_kafka_conf_set_opaque(conf, &em->dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!rk) {
        snprintf(err, errlen, "kafka transactional producer: %s", why);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* the mock cluster accepts transactions but neither stores their offsets
     * nor hides aborted messages from read_committed readers: refuse it */
    char *cluster = rd_kafka_clusterid(rk, 15000);
    if (!cluster) {
        snprintf(err, errlen, "no answer from the Kafka cluster at %s within 15 s (check kafka.bootstrap.servers "
                 "and the security settings; errors are logged above)",
                 kafka_value(cfg, "bootstrap.servers") ? kafka_value(cfg, "bootstrap.servers") : "?");
        rd_kafka_destroy(rk);
        return NULL;
    }
    bool mock = strncmp(cluster, "mockCluster", 11) == 0;
    rd_kafka_mem_free(rk, cluster);
    if (mock) {
        snprintf(err, errlen, "pipeline.exactly_once needs a real Kafka broker: this is librdkafka's mock cluster "
                 "(fidelio dev-kafka, demo), which does not store transactions' offsets and shows aborted "
                 "messages to read_committed readers; run with pipeline.exactly_once=false here");
        rd_kafka_destroy(rk);
        return NULL;
    }
    rd_kafka_error_t *e = rd_kafka_init_transactions(rk, TXN_TIMEOUT_MS);
    if (e) {
        bool auth = rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED ||
                    rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED;
        char what[400];
        snprintf(what, sizeof(what), "init_transactions (transactional.id '%s')%s", em->txn_id,
                 auth ? ": the principal needs Write and Describe on this transactional id (README: ACLs)" : "");
        take_error(e, what, err, errlen);
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk; /* conf is now owned by rk */
}

/* The in-flight batch tagged seq, or NULL (dropped already, or exactly-once). */
static emit_batch *batch_of(emitter *em, unsigned long long seq)
{
    if (seq < em->head_seq || seq - em->head_seq >= (unsigned long long)em->count)
        return NULL;
    return &em->ring[(em->head + (int)(seq - em->head_seq)) % em->ring_cap];
}

/* A delivery report of a tagged message (served by rd_kafka_poll on the
 * pipeline's thread). */
static void on_msg(void *ctx, void *tag, rd_kafka_resp_err_t err, int64_t append_ms)
{
    emitter *em = ctx;
    emit_batch *b = batch_of(em, (unsigned long long)(uintptr_t)tag);
    if (!b)
        return; /* a batch dropped after a failure: it will be produced again */
    if (em->output_ages && !err) /* the broker's append time, else when its report is served */
        latency_add(em->output_ages, (append_ms >= 0 ? append_ms : clock_wall_ms()) - b->produced_at_ms);
    if (err) {
        b->failed++;
        if (!em->fail_error[0])
            snprintf(em->fail_error, sizeof(em->fail_error), "%s", em->dr.last_error);
    } else {
        b->acked++;
    }
}

/* The at-least-once producer's statistics (log.level=debug): one line per
 * statistics interval saying how many produce requests went to the brokers,
 * how full they were, and where an output waited: in the producer's queue
 * (linger, or its partition waiting for a request slot), to be written, for
 * the broker. librdkafka sends one request per partition (issue 1700). */
static void on_stats(void *ctx, const char *json, size_t len)
{
    emitter *em = ctx;
    kafka_req_stats now;
    char line[512];
    if (kafka_stats_read(json, len, "Produce", &now) != 0)
        return;
    int i = 0; /* the producer's slot: its client name, else the first free one */
    while (i < EMITTER_PRODUCERS - 1 && em->stats_prev[i].ts_us && strcmp(em->stats_prev[i].client, now.client))
        i++;
    if (em->stats_prev[i].ts_us) {
        kafka_stats_describe(&em->stats_prev[i], &now, line, sizeof(line));
        if (em->nproducers > 1)
            log_debug("output producer %d of %d: produce %s", i + 1, em->nproducers, line);
        else
            log_debug("output producer: produce %s", line);
    }
    em->stats_prev[i] = now;
}

/* A numeric property of producer rk's configuration, or dflt. */
static long long producer_number(rd_kafka_t *rk, const char *key, long long dflt)
{
    char v[64];
    size_t n = sizeof(v);
    if (rd_kafka_conf_get(rd_kafka_conf(rk), key, v, &n) != RD_KAFKA_CONF_OK)
        return dflt;
    long long x = atoll(v);
    return x > 0 ? x : dflt;
}

int emitter_open(emitter *em, const config *cfg, rd_kafka_t *consumer, emitter_done_fn done, void *done_ctx,
                 char *err, size_t errlen)
{
    memset(em, 0, sizeof(*em));
    em->cfg = cfg;
    em->consumer = consumer;
    em->done = done;
    em->done_ctx = done_ctx;
    em->transactional = cfg->exactly_once != 0;
    if (!em->transactional) {
        em->ring_cap = (int)cfg->max_in_flight_batches;
        em->ring = calloc((size_t)em->ring_cap, sizeof(*em->ring));
        em->commit_q = rd_kafka_queue_new(consumer);
        if (!em->ring || !em->commit_q) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        em->next_seq = em->head_seq = 1;
        em->dr.on_msg = on_msg;
        em->dr.ctx = em;
        if (log_enabled(LOG_DEBUG))
            em->dr.on_stats = on_stats;
        /* one delivery accounting for all: their reports are served on this thread */
        int n = cfg->output_producers > 1 ? (int)cfg->output_producers : 1;
        for (; em->nproducers < n && em->nproducers < EMITTER_PRODUCERS; em->nproducers++)
            if (!(em->producers[em->nproducers] = kafka_producer_new(cfg, &em->dr, err, errlen)))
                return -1;
        em->producer = em->producers[0];
        em->queue_max_msgs = producer_number(em->producer, "queue.buffering.max.messages", 100000);
        em->queue_max_bytes = producer_number(em->producer, "queue.buffering.max.kbytes", 1048576) * 1024;
        return 0;
    }
    const char *id = kafka_value(cfg, "transactional.id");
    if (id) {
        snprintf(em->txn_id, sizeof(em->txn_id), "%s", id);
    } else {
        char host[128] = "host";
        gethostname(host, sizeof(host) - 1);
        snprintf(em->txn_id, sizeof(em->txn_id), "%s-%s-%ld", cfg->consumer_group, host, (long)getpid());
    }
    em->producer = em->producers[0] = txn_producer_new(em, err, errlen);
    if (!em->producer)
        return -1;
    em->nproducers = 1;
    log_info("exactly-once outputs: one Kafka transaction per batch (transactional.id '%s')", em->txn_id);
    return 0;
}

bool emitter_has_room(const emitter *em) { return em->transactional || em->count < em->ring_cap; }

int emitter_in_flight(const emitter *em) { return em->count; }

int emitter_queued(const emitter *em)
{
    int n = 0;
    for (int i = 0; i < em->nproducers; i++)
        n += rd_kafka_outq_len(em->producers[i]);
    return n;
}

int emitter_begin(emitter *em, char *err, size_t errlen)
{
    if (!em->transactional) {
        if (em->count >= em->ring_cap) {
            snprintf(err, errlen, "no room for another batch in flight");
            return -1;
        }
        emit_batch *b = &em->ring[(em->head + em->count) % em->ring_cap];
        memset(b, 0, sizeof(*b));
        b->seq = em->next_seq++;
        b->produced_at_ms = clock_wall_ms();
        if (em->count == 0)
            em->head_seq = b->seq;
        em->count++;
        return 0;
    }
    em->last_produce_err = RD_KAFKA_RESP_ERR_NO_ERROR; /* emitter_txn_refused asks about this transaction only */
    rd_kafka_error_t *e = rd_kafka_begin_transaction(em->producer);
    if (e) {
        take_error(e, "begin_transaction", err, errlen);
        return -1;
    }
    em->in_txn = true;
    return 0;
}

void emitter_abort(emitter *em)
{
    if (!em->transactional || !em->in_txn)
        return;
    for (int attempt = 0; attempt < 3; attempt++) {
        rd_kafka_error_t *e = rd_kafka_abort_transaction(em->producer, TXN_TIMEOUT_MS);
        if (!e)
            break;
        bool retry = rd_kafka_error_is_retriable(e);
        log_warn("abort_transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        if (!retry)
            break;
    }
    em->in_txn = false;
    em->aborted++;
}

/* Destroy the topic handles (before their producers). */
static void drop_topics(emitter *em)
{
    for (int i = 0; i < em->ntopics; i++)
        rd_kafka_topic_destroy(em->topics[i].rkt);
    em->ntopics = 0;
}

/* The handle of topic, made on first use by producer `first` (the one that
 * writes it from then on); *rk gets its producer. NULL when there is no room
 * for another or librdkafka refuses (the caller then names the topic and
 * produces with producers[0]). */
/* The index in em->topics of topic's handle, made now (on producer first)
 * if it has none yet; -1 when it cannot have one. */
static int topic_index(emitter *em, const char *topic, int first)
{
    for (int i = 0; i < em->ntopics; i++)
        if (!strcmp(em->topics[i].name, topic))
            return i;
    if (em->ntopics == EMITTER_TOPICS || strlen(topic) >= sizeof(em->topics[0].name))
        return -1;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(em->producers[first], topic, NULL);
    if (!rkt)
        return -1;
    snprintf(em->topics[em->ntopics].name, sizeof(em->topics[0].name), "%s", topic);
    em->topics[em->ntopics].producer = first;
    em->topics[em->ntopics].rkt = rkt;
    return em->ntopics++;
}

static rd_kafka_topic_t *topic_handle(emitter *em, const char *topic, int first, rd_kafka_t **rk)
{
    int t = topic_index(em, topic, first);
    *rk = t >= 0 ? em->producers[em->topics[t].producer] : em->producer;
    return t >= 0 ? em->topics[t].rkt : NULL;
}

void emitter_prepare(emitter *em, const char *const *topics, size_t n, int timeout_ms)
{
    int busiest = -1, most = 0, total = 0, nbrokers = 0;
    struct {
        int32_t id;
        int parts;
    } per[64];
    char names[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_t *rk;
        rd_kafka_topic_t *rkt = topic_handle(em, topics[i], (int)(i % (size_t)em->nproducers), &rk);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms)
                                    : RD_KAFKA_RESP_ERR__INVALID_ARG;
        if (!e && (md->topic_cnt != 1 || md->topics[0].err))
            e = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
        if (e) { /* not fatal: the producer asks again when it first produces there */
            log_warn("no metadata of output topic '%s' for the producer at start-up: %s (its first outputs will "
                     "wait for it)",
                     topics[i], rd_kafka_err2str(e));
            if (md)
                rd_kafka_metadata_destroy(md);
            continue;
        }
        const struct rd_kafka_metadata_topic *t = &md->topics[0];
        if (used < sizeof(names))
            used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s %d", used ? ", " : "", topics[i],
                                     t->partition_cnt);
        for (int p = 0; p < t->partition_cnt; p++) {
            int b = 0;
            while (b < nbrokers && per[b].id != t->partitions[p].leader)
                b++;
            if (b == nbrokers) {
                if (nbrokers == (int)(sizeof(per) / sizeof(per[0])))
                    continue;
                per[nbrokers].id = t->partitions[p].leader;
                per[nbrokers++].parts = 0;
            }
            total++;
            if (++per[b].parts > most) {
                most = per[b].parts;
                busiest = per[b].id;
            }
        }
        rd_kafka_metadata_destroy(md);
    }
    em->output_partitions = total;
    em->busiest_broker_partitions = most;
    if (em->nproducers > 1) {
        char who[768] = "";
        size_t w = 0;
        for (int p = 0; p < em->nproducers; p++) {
            w += (size_t)snprintf(who + w, w < sizeof(who) ? sizeof(who) - w : 0, "%s%d:", p ? "; " : "", p + 1);
            for (int t = 0, k = 0; t < em->ntopics; t++)
                if (em->topics[t].producer == p && w < sizeof(who))
                    w += (size_t)snprintf(who + w, sizeof(who) - w, "%s %s", k++ ? "," : "", em->topics[t].name);
        }
        log_info("output producers: %d, each with its own connection to each broker (%s)", em->nproducers, who);
    }
    if (!total)
        return;
    log_info("output topics (partitions): %s; %d partition(s) led by %d broker(s), at most %d by broker %d", names,
             total, nbrokers, most, (int)busiest);
    if (most > EMITTER_PARTITIONS_PER_BROKER)
        log_warn("%d output partitions are led by broker %d: librdkafka sends one produce request per partition, "
                 "at most 5 in flight per broker for an idempotent producer, so each batch's outputs queue behind "
                 "each other and latency grows with the partitions per broker (README: Performance, latency); "
                 "fewer partitions on the output topics, or more brokers, bring it down",
                 most, (int)busiest);
}

/* After a fatal producer error (fenced by a newer instance with the same
 * transactional.id, or a transaction that timed out): a new producer. */
static int restart_producer(emitter *em, char *err, size_t errlen)
{
    drop_topics(em);
    rd_kafka_destroy(em->producer);
    em->producer = NULL;
    em->in_txn = false;
    em->restarts++;
    em->producer = em->producers[0] = txn_producer_new(em, err, errlen);
    return em->producer ? 0 : -1;
}

#define TXN_REFUSED "transaction refused (the principal lacks an ACL; README: ACLs)"

/* A transaction's error that no retry can mend: a missing ACL. */
static bool acl_refusal(rd_kafka_resp_err_t code)
{
    return code == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
           code == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
           code == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
}

bool emitter_txn_refused(emitter *em, char *err, size_t errlen)
{
    if (!em->transactional || !em->in_txn || em->last_produce_err != RD_KAFKA_RESP_ERR__STATE)
        return false;
    /* produce refuses with __STATE only once the transaction has left
     * InTransaction (abortable or fatal error: nothing of it can commit, and
     * emitter_begin/produce are all that ran in it); commit_transaction then
     * returns the transaction's error, the cause, as in commit_txn */
    char cause[512];
    rd_kafka_resp_err_t code = rd_kafka_fatal_error(em->producer, cause, sizeof(cause));
    if (code) {
        if (!acl_refusal(code))
            return false;
        snprintf(err, errlen, "%s: %s", TXN_REFUSED, cause);
        return true;
    }
    rd_kafka_error_t *e = rd_kafka_commit_transaction(em->producer, TXN_TIMEOUT_MS);
    if (!e) { /* cannot happen (see above); whatever it was is committed, nothing refused */
        em->in_txn = false;
        return false;
    }
    if (!acl_refusal(rd_kafka_error_code(e))) {
        rd_kafka_error_destroy(e);
        return false;
    }
    take_error(e, TXN_REFUSED, err, errlen);
    return true;
}

/* Wait until every producer's messages are acknowledged (or failed), at
 * most timeout_ms in all; the first error (a timeout) or 0. */
static rd_kafka_resp_err_t flush_producers(emitter *em, int timeout_ms)
{
    double end = clock_mono_s() + timeout_ms / 1000.0;
    rd_kafka_resp_err_t first = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; i < em->nproducers; i++) {
        int left_ms = (int)((end - clock_mono_s()) * 1000);
        rd_kafka_resp_err_t e = rd_kafka_flush(em->producers[i], left_ms > 0 ? left_ms : 0);
        if (e && !first)
            first = e;
    }
    return first;
}

/* Exactly-once end of batch: the offsets join the transaction, which commits. */
static emit_result commit_txn(emitter *em, rd_kafka_topic_partition_list_t *offsets, char *err, size_t errlen)
{
    rd_kafka_error_t *e = NULL;
    if (offsets->cnt > 0) {
        rd_kafka_consumer_group_metadata_t *gm = rd_kafka_consumer_group_metadata(em->consumer);
        if (!gm) {
            snprintf(err, errlen, "no consumer group metadata");
            emitter_abort(em);
            return EMIT_ABORTED;
        }
        e = rd_kafka_send_offsets_to_transaction(em->producer, offsets, gm, TXN_TIMEOUT_MS);
        rd_kafka_consumer_group_metadata_destroy(gm);
        /* An earlier failure in the transaction (e.g. AddPartitionsToTxn refused
         * for a missing Write ACL, met at once since the outputs' metadata is
         * fetched at start-up: emitter_prepare) leaves it abortable, and
         * send_offsets_to_transaction then says only "Erroneous state";
         * commit_transaction, which cannot commit an abortable transaction,
         * reports the cause. */
        if (e && rd_kafka_error_txn_requires_abort(e)) {
            rd_kafka_error_t *why = rd_kafka_commit_transaction(em->producer, TXN_TIMEOUT_MS);
            if (why && rd_kafka_error_code(why) != RD_KAFKA_RESP_ERR__STATE) {
                rd_kafka_error_destroy(e);
                e = why;
            } else if (why) {
                rd_kafka_error_destroy(why);
            }
        }
    }
    if (!e)
        e = rd_kafka_commit_transaction(em->producer, TXN_TIMEOUT_MS);
    /* a retriable failure (a timeout) may still commit when called again */
    for (int attempt = 0; e && rd_kafka_error_is_retriable(e) && attempt < 3; attempt++) {
        log_warn("commit_transaction: %s; retrying", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        e = rd_kafka_commit_transaction(em->producer, TXN_TIMEOUT_MS);
    }
    if (!e) {
        em->in_txn = false;
        return EMIT_COMMITTED;
    }
    rd_kafka_resp_err_t code = rd_kafka_error_code(e);
    if (rd_kafka_error_is_fatal(e)) {
        log_warn("transaction failed for good (%s): replacing the producer; the batch will be processed again",
                 rd_kafka_error_string(e));
        snprintf(em->last_abort, sizeof(em->last_abort), "%s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        if (restart_producer(em, err, errlen) != 0)
            return EMIT_FATAL;
        em->aborted++;
        return EMIT_ABORTED;
    }
    if (acl_refusal(code)) {
        take_error(e, TXN_REFUSED, err, errlen);
        emitter_abort(em);
        return EMIT_FATAL;
    }
    /* abortable: e.g. fenced by the group generation after losing partitions,
     * or a message that could not be delivered */
    log_warn("transaction aborted (%s): the batch will be processed again", rd_kafka_error_string(e));
    snprintf(em->last_abort, sizeof(em->last_abort), "%s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    emitter_abort(em);
    return EMIT_ABORTED;
}

emit_result emitter_commit(emitter *em, rd_kafka_topic_partition_list_t *offsets, char *err, size_t errlen)
{
    if (em->transactional)
        return commit_txn(em, offsets, err, errlen);
    /* at-least-once, not pipelined (assign mode): every acknowledgement, then the offsets */
    long long failed_before = em->dr.failed;
    rd_kafka_resp_err_t fe = flush_producers(em, 60000);
    if (fe || em->dr.failed != failed_before) {
        snprintf(err, errlen, "%s", fe ? rd_kafka_err2str(fe) : em->dr.last_error);
        return EMIT_ABORTED; /* not delivered: produce the same messages again */
    }
    if (offsets->cnt == 0)
        return EMIT_COMMITTED;
    rd_kafka_resp_err_t e = rd_kafka_commit(em->consumer, offsets, 0);
    if (e) { /* e.g. during a rebalance: the next owner gets these again and dedupes them */
        log_warn("offset commit failed: %s (the batch will be redelivered and deduplicated)", rd_kafka_err2str(e));
        return EMIT_UNCOMMITTED;
    }
    return EMIT_COMMITTED;
}

/* ---- at-least-once: batches in flight ------------------------------------------ */

/* Serve the producers' delivery reports (and statistics), waiting up to
 * timeout_ms for the first: with one producer librdkafka's own wait, with
 * several a wait on the first in slices of 2 ms, each slice followed by a
 * look at every producer (their reports go to queues of their own). */
static void poll_producers(emitter *em, int timeout_ms)
{
    if (em->nproducers <= 1) {
        rd_kafka_poll(em->producer, timeout_ms);
        return;
    }
    double end = clock_mono_s() + timeout_ms / 1000.0;
    for (;;) {
        int served = 0;
        for (int i = 0; i < em->nproducers; i++)
            served += rd_kafka_poll(em->producers[i], 0);
        int left_ms = (int)((end - clock_mono_s()) * 1000);
        if (served > 0 || left_ms <= 0)
            return;
        rd_kafka_poll(em->producers[0], left_ms < 2 ? left_ms : 2);
    }
}

/* The open at-least-once batch accepting messages, or NULL. */
static emit_batch *open_batch(emitter *em)
{
    if (em->transactional || em->count == 0)
        return NULL;
    emit_batch *b = &em->ring[(em->head + em->count - 1) % em->ring_cap];
    return b->sealed ? NULL : b;
}

rd_kafka_resp_err_t emitter_produce(emitter *em, const char *topic, const void *key, size_t keylen,
                                    const void *value, size_t len, rd_kafka_headers_t *hdrs)
{
    emit_batch *b = open_batch(em);
    void *tag = b ? (void *)(uintptr_t)b->seq : NULL;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt = topic_handle(em, topic, 0, &rk);
    rd_kafka_resp_err_t e = rkt ? kafka_produce_rkt(rk, rkt, key, keylen, value, len, hdrs, tag)
                                : kafka_produce(em->producer, topic, key, keylen, value, len, hdrs, tag);
    em->last_produce_err = e;
    if (!e)
        em->payload_sent += (long long)len;
    if (!e && b)
        b->produced++;
    return e;
}

rd_kafka_resp_err_t emitter_stage(emitter *em, const char *topic, const void *key, size_t keylen, const void *value,
                                  size_t len)
{
    emit_batch *b = open_batch(em);
    int t = b ? topic_index(em, topic, 0) : -1;
    if (t < 0) /* exactly-once, or a topic that cannot have a handle: at once */
        return emitter_produce(em, topic, key, keylen, value, len, NULL);
    if ((size_t)em->staged[t].n == em->staged[t].cap) {
        rd_kafka_message_t *n = grow_array(em->staged[t].msgs, &em->staged[t].cap, sizeof(*n), 256);
        if (!n) { /* out of memory: what is staged goes first, then this one, in order */
            rd_kafka_resp_err_t e = emitter_send_staged(em);
            return e ? e : emitter_produce(em, topic, key, keylen, value, len, NULL);
        }
        em->staged[t].msgs = n;
    }
    rd_kafka_message_t *m = &em->staged[t].msgs[em->staged[t].n++];
    memset(m, 0, sizeof(*m));
    m->payload = (void *)value;
    m->len = len;
    m->key = (void *)key;
    m->key_len = keylen;
    m->partition = RD_KAFKA_PARTITION_UA;
    m->_private = (void *)(uintptr_t)b->seq;
    em->staged_n++;
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

bool emitter_batch_fits(long long queued, long long queued_payload, long long n, long long payload,
                        long long max_msgs, long long max_bytes)
{
    return queued + n <= max_msgs && queued_payload + payload <= max_bytes;
}

rd_kafka_resp_err_t emitter_send_staged(emitter *em)
{
    rd_kafka_resp_err_t first = RD_KAFKA_RESP_ERR_NO_ERROR;
    emit_batch *b = open_batch(em);
    for (int t = 0; t < em->ntopics; t++) {
        int n = em->staged[t].n;
        rd_kafka_message_t *msgs = em->staged[t].msgs;
        em->staged[t].n = 0;
        if (n == 0 || first)
            continue;
        rd_kafka_t *rk = em->producers[em->topics[t].producer];
        em->staged_topic = em->topics[t].name;
        /* Room for all of them in the producer's queue, as librdkafka counts it (messages, and their
         * payloads' bytes: those of every producer of this emitter, an upper bound of this one's;
         * only this thread adds to the queues, and room comes back only when it serves delivery
         * reports): then no message of the call is refused, so none is enqueued past a refused
         * one. Else one by one, each waiting for room. */
        long long payload = 0;
        for (int i = 0; i < n; i++)
            payload += (long long)msgs[i].len;
        if (b && emitter_batch_fits(rd_kafka_outq_len(rk), em->payload_sent - em->dr.payload_done, n, payload,
                                    em->queue_max_msgs, em->queue_max_bytes)) {
            int ok = rd_kafka_produce_batch(em->topics[t].rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, msgs, n);
            b->produced += ok;
            for (int i = 0; i < n; i++)
                if (!msgs[i].err)
                    em->payload_sent += (long long)msgs[i].len;
                else if (!first)
                    first = msgs[i].err;
            if (ok < n && !first)
                first = RD_KAFKA_RESP_ERR__FAIL;
        } else {
            for (int i = 0; i < n && !first; i++) {
                first = kafka_produce_rkt(rk, em->topics[t].rkt, msgs[i].key, msgs[i].key_len, msgs[i].payload,
                                          msgs[i].len, NULL, msgs[i]._private);
                if (!first) {
                    em->payload_sent += (long long)msgs[i].len;
                    if (b)
                        b->produced++;
                }
            }
        }
    }
    if (em->staged_n > 0) /* (nothing staged: the last produce call is someone else's, e.g. a transaction's) */
        em->last_produce_err = first;
    em->staged_n = 0;
    return first;
}

emit_result emitter_end(emitter *em, rd_kafka_topic_partition_list_t *offsets,
                        rd_kafka_topic_partition_list_t *first, void *user)
{
    emit_batch *b = &em->ring[(em->head + em->count - 1) % em->ring_cap];
    b->offsets = offsets;
    b->first = first;
    b->user = user;
    b->sealed = true;
    return EMIT_PENDING;
}

static bool complete(const emit_batch *b) { return b->sealed && !b->failed && b->acked == b->produced; }

static void batch_free(emit_batch *b)
{
    if (b->offsets)
        rd_kafka_topic_partition_list_destroy(b->offsets);
    if (b->first)
        rd_kafka_topic_partition_list_destroy(b->first);
    b->offsets = b->first = NULL;
}

/* Drop the batch at the head of the ring; its user goes back to done. */
static void pop_head(emitter *em, bool committed)
{
    emit_batch *b = &em->ring[em->head];
    void *user = b->user;
    batch_free(b);
    em->head = (em->head + 1) % em->ring_cap;
    em->count--;
    em->head_seq++;
    if (committed)
        em->committed_batches++;
    if (user && em->done)
        em->done(em->done_ctx, user, committed);
}

/* The users of the batches one asynchronous commit covers. */
typedef struct commit_group {
    emitter *em;
    int n;
    void *users[];
} commit_group;

/* The result of an asynchronous commit (served from em->commit_q). */
static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets,
                      void *opaque)
{
    (void)rk;
    (void)offsets;
    commit_group *g = opaque;
    emitter *em = g->em;
    em->commits_pending--;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) /* e.g. during a rebalance: the next owner gets these again and dedupes them */
        log_warn("offset commit failed: %s (its batches will be redelivered and deduplicated)",
                 rd_kafka_err2str(err));
    else
        em->committed_batches += g->n;
    for (int i = 0; i < g->n; i++)
        if (g->users[i] && em->done)
            em->done(em->done_ctx, g->users[i], err == 0);
    free(g);
}

/* Commit the complete batches at the head of the ring as one list of
 * offsets (the later batch's offset of a partition wins: offsets only grow),
 * asynchronously or not. Returns -1 when a batch in flight has failed. */
static int commit_heads(emitter *em, bool async)
{
    int k = 0, failed = 0;
    for (int i = 0; i < em->count; i++) {
        const emit_batch *b = &em->ring[(em->head + i) % em->ring_cap];
        failed |= b->failed > 0;
        if (k == i && complete(b))
            k++;
    }
    if (failed)
        return -1;
    if (k == 0)
        return 0;
    if (em->keep_offsets) { /* assign mode: the caller keeps the progress, in this order */
        while (k-- > 0)
            pop_head(em, true);
        return 0;
    }
    rd_kafka_topic_partition_list_t *merged = rd_kafka_topic_partition_list_new(16);
    commit_group *g = malloc(sizeof(*g) + (size_t)k * sizeof(void *));
    if (!merged || !g) {
        if (merged)
            rd_kafka_topic_partition_list_destroy(merged);
        free(g);
        return 0; /* out of memory: try again at the next poll */
    }
    g->em = em;
    g->n = 0;
    for (int i = 0; i < k; i++) {
        const rd_kafka_topic_partition_list_t *o = em->ring[(em->head + i) % em->ring_cap].offsets;
        for (int j = 0; o && j < o->cnt; j++) {
            rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(merged, o->elems[j].topic,
                                                                                o->elems[j].partition);
            if (!tp)
                tp = rd_kafka_topic_partition_list_add(merged, o->elems[j].topic, o->elems[j].partition);
            if (o->elems[j].offset > tp->offset || tp->offset < 0)
                tp->offset = o->elems[j].offset;
        }
    }
    /* the batches leave the ring now; their users wait for the commit's result */
    for (int i = 0; i < k; i++) {
        emit_batch *b = &em->ring[em->head];
        g->users[g->n++] = b->user;
        b->user = NULL;
        pop_head(em, false);
    }
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (merged->cnt == 0) {
        e = RD_KAFKA_RESP_ERR__NO_OFFSET; /* every partition was lost: nothing of ours to commit */
    } else if (async) {
        e = rd_kafka_commit_queue(em->consumer, merged, em->commit_q, on_commit, g);
        if (!e) {
            em->commits_pending++;
            g = NULL; /* on_commit frees it */
        }
    } else {
        e = rd_kafka_commit(em->consumer, merged, 0);
    }
    rd_kafka_topic_partition_list_destroy(merged);
    if (g) { /* synchronous, or refused at once */
        em->commits_pending++;
        on_commit(em->consumer, e, NULL, g);
    }
    return 0;
}

int emitter_poll(emitter *em, int timeout_ms)
{
    if (em->transactional)
        return 0;
    poll_producers(em, timeout_ms);
    if (em->commits_pending > 0)
        rd_kafka_queue_poll_callback(em->commit_q, 0);
    return commit_heads(em, true);
}

int emitter_drain(emitter *em, int timeout_ms)
{
    if (em->transactional)
        return 0;
    double deadline = clock_mono_s() + timeout_ms / 1000.0;
    for (;;) {
        poll_producers(em, 0);
        if (commit_heads(em, false) != 0)
            return -1;
        if (em->count == 0)
            break;
        if (clock_mono_s() >= deadline) {
            snprintf(em->fail_error, sizeof(em->fail_error),
                     "%d batch(es) of outputs not acknowledged within %d ms", em->count, timeout_ms);
            return -1;
        }
        poll_producers(em, 50);
    }
    /* results of earlier asynchronous commits (bounded: the coordinator answers or times out) */
    for (int i = 0; em->commits_pending > 0 && i < 200; i++)
        rd_kafka_queue_poll_callback(em->commit_q, 50);
    return 0;
}

void emitter_discard(emitter *em, int timeout_ms, rd_kafka_topic_partition_list_t *first)
{
    if (em->transactional)
        return;
    if (em->count > 0)
        flush_producers(em, timeout_ms);
    while (em->count > 0) {
        const rd_kafka_topic_partition_list_t *f = em->ring[em->head].first;
        for (int j = 0; f && first && j < f->cnt; j++)
            if (!rd_kafka_topic_partition_list_find(first, f->elems[j].topic, f->elems[j].partition))
                rd_kafka_topic_partition_list_add(first, f->elems[j].topic, f->elems[j].partition)->offset =
                    f->elems[j].offset;
        pop_head(em, false);
    }
    em->head_seq = em->next_seq;
    em->fail_error[0] = '\0';
}

void emitter_fail(emitter *em, const char *why)
{
    if (em->transactional || em->count == 0)
        return;
    em->ring[(em->head + em->count - 1) % em->ring_cap].failed++;
    if (!em->fail_error[0])
        snprintf(em->fail_error, sizeof(em->fail_error), "%s", why);
}

void emitter_forget(emitter *em, const rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < em->count; i++) {
        emit_batch *b = &em->ring[(em->head + i) % em->ring_cap];
        for (int j = 0; j < parts->cnt; j++) {
            if (b->offsets)
                rd_kafka_topic_partition_list_del(b->offsets, parts->elems[j].topic, parts->elems[j].partition);
            if (b->first)
                rd_kafka_topic_partition_list_del(b->first, parts->elems[j].topic, parts->elems[j].partition);
        }
    }
}

void emitter_close(emitter *em)
{
    if (em->producer) {
        if (em->in_txn)
            emitter_abort(em);
        else if (!em->transactional)
            flush_producers(em, 10000);
    }
    while (em->count > 0 && em->ring)
        pop_head(em, false);
    for (int i = 0; em->commit_q && em->commits_pending > 0 && i < 100; i++)
        rd_kafka_queue_poll_callback(em->commit_q, 50);
    drop_topics(em);
    for (int t = 0; t < EMITTER_TOPICS; t++) {
        free(em->staged[t].msgs);
        em->staged[t].msgs = NULL;
        em->staged[t].n = em->staged[t].cap = 0;
    }
    for (int i = 0; i < em->nproducers; i++)
        if (em->producers[i])
            rd_kafka_destroy(em->producers[i]);
    em->nproducers = 0;
    em->producer = NULL;
    if (em->commit_q)
        rd_kafka_queue_destroy(em->commit_q);
    em->commit_q = NULL;
    free(em->ring);
    em->ring = NULL;
}
