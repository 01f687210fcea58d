/* emitter.c - the producer of a batch's messages and the commit of its
 * offsets: flush + consumer commit (at-least-once), or one Kafka transaction
 * per batch (exactly-once). See emitter.h. */
#include "emitter.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

int emitter_open(emitter *em, const config *cfg, rd_kafka_t *consumer, char *err, size_t errlen)
{
    memset(em, 0, sizeof(*em));
    em->cfg = cfg;
    em->consumer = consumer;
    em->transactional = cfg->exactly_once != 0;
    if (!em->transactional) {
        em->producer = kafka_producer_new(cfg, &em->dr, err, errlen);
        return em->producer ? 0 : -1;
    }
    const char *id = kafka_value(cfg, "transactional.id");
    if (id) {
        snprintf(em->txn_id, sizeof(em->txn_id), "%s", id);
    } else {
        char host[128] = "host";
        gethostname(host, sizeof(host) - 1);
        snprintf(em->txn_id, sizeof(em->txn_id), "%s-%s-%ld", cfg->consumer_group, host, (long)getpid());
    }
    em->producer = txn_producer_new(em, err, errlen);
    if (!em->producer)
        return -1;
    log_info("exactly-once outputs: one Kafka transaction per batch (transactional.id '%s')", em->txn_id);
    return 0;
}

int emitter_begin(emitter *em, char *err, size_t errlen)
{
    if (!em->transactional)
        return 0;
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

/* After a fatal producer error (fenced by a newer instance with the same
 * transactional.id, or a transaction that timed out): a new producer. */
static int restart_producer(emitter *em, char *err, size_t errlen)
{
    rd_kafka_destroy(em->producer);
    em->producer = NULL;
    em->in_txn = false;
    em->restarts++;
    em->producer = txn_producer_new(em, err, errlen);
    return em->producer ? 0 : -1;
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
    if (code == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
        code == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
        code == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED) {
        take_error(e, "transaction refused (the principal lacks an ACL; README: ACLs)", err, errlen);
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
    long long failed_before = em->dr.failed;
    rd_kafka_resp_err_t fe = rd_kafka_flush(em->producer, 60000);
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

void emitter_close(emitter *em)
{
    if (!em->producer)
        return;
    if (em->in_txn)
        emitter_abort(em);
    else if (!em->transactional)
        rd_kafka_flush(em->producer, 10000);
    rd_kafka_destroy(em->producer);
    em->producer = NULL;
}
