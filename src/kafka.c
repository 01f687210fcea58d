/* kafka.c - librdkafka helpers. */
#include "kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"

int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err, size_t errlen)
{
    char why[512];
    if (rd_kafka_conf_set(conf, key, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka.%s: %s", key, why);
        return -1;
    }
    return 0;
}

/* librdkafka's own log lines (syslog levels) go through Fidelio's logger,
 * never as raw "%3|..." lines on stderr. Called from librdkafka's threads. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *line)
{
    log_level l = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG;
    log_write(l, "librdkafka", 0, "%s %s: %s", rk ? rd_kafka_name(rk) : "kafka", fac, line);
}

void kafka_conf_route_logs(rd_kafka_conf_t *conf) { rd_kafka_conf_set_log_cb(conf, on_log); }

rd_kafka_conf_t *kafka_conf_new(const config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char why[512];
    if (!conf) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    kafka_conf_route_logs(conf);
    for (size_t i = 0; i < cfg->kafka_count; i++) {
        if (rd_kafka_conf_set(conf, cfg->kafka[i].key, cfg->kafka[i].value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "%s: key 'kafka.%s': %s", cfg->kafka[i].origin.where, cfg->kafka[i].key, why);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    return conf;
}

/* One numeric property of conf, or -1. */
static long long conf_number(const rd_kafka_conf_t *conf, const char *key)
{
    char v[64];
    size_t n = sizeof(v);
    if (rd_kafka_conf_get(conf, key, v, &n) != RD_KAFKA_CONF_OK)
        return -1;
    return atoll(v);
}

long long kafka_max_message_bytes(const config *cfg)
{
    char err[512];
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, err, sizeof(err));
    if (!conf)
        return -1;
    long long n = conf_number(conf, "message.max.bytes");
    rd_kafka_conf_destroy(conf);
    return n;
}

int kafka_check_limits(const config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, err, errlen);
    if (!conf)
        return -1;
    long long produce_max = conf_number(conf, "message.max.bytes");
    long long receive_max = conf_number(conf, "receive.message.max.bytes");
    rd_kafka_conf_destroy(conf);
    if (produce_max < KAFKA_MIN_RECORD_BYTES) {
        snprintf(err, errlen,
                 "kafka.message.max.bytes is %lld; it must be at least %d: an output or a DLQ record (headers up to "
                 "~1 KB, then the rejected message's key and value, cut to fit) must fit in one message",
                 produce_max, KAFKA_MIN_RECORD_BYTES);
        return -1;
    }
    if (receive_max < cfg->max_message_bytes + 512) {
        snprintf(err, errlen,
                 "kafka.receive.message.max.bytes is %lld; it must be at least limits.max_message_bytes (%lld) + "
                 "512, or a message the limit accepts could not be fetched",
                 receive_max, (long long)cfg->max_message_bytes);
        return -1;
    }
    return 0;
}

int kafka_check_config(const config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, err, errlen);
    if (!conf)
        return -1;
    rd_kafka_conf_destroy(conf);
    return 0;
}

void kafka_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kafka_delivery *dr = opaque;
    if (!dr)
        return;
    dr->payload_done += (long long)m->len;
    if (m->err) {
        dr->failed++;
        snprintf(dr->last_error, sizeof(dr->last_error), "%s: %s", rd_kafka_topic_name(m->rkt),
                 rd_kafka_err2str(m->err));
    } else {
        dr->delivered++;
    }
    if (dr->on_msg && m->_private) {
        rd_kafka_timestamp_type_t tt;
        int64_t ts = rd_kafka_message_timestamp(m, &tt);
        dr->on_msg(dr->ctx, m->_private, m->err, tt == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? ts : -1);
    }
}

/* Errors of the client itself (brokers down, authentication): kept for the
 * messages that explain a failure (librdkafka logs them too). Served by poll/flush. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kafka_delivery *dr = opaque;
    if (dr)
        snprintf(dr->client_error, sizeof(dr->client_error), "%s", reason);
    log_debug("%s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* The windowed statistic name.field of a librdkafka broker object, in ms. */
static double stat_ms(json_t *broker, const char *name, const char *field)
{
    return (double)json_integer_value(json_object_get(json_object_get(broker, name), field)) / 1000.0;
}

int kafka_stats_read(const char *json, size_t len, const char *req, kafka_req_stats *out)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!root)
        return -1;
    memset(out, 0, sizeof(*out));
    out->ts_us = json_integer_value(json_object_get(root, "ts"));
    const char *type = json_string_value(json_object_get(root, "type"));
    const char *client = json_string_value(json_object_get(root, "name"));
    snprintf(out->client, sizeof(out->client), "%s", client ? client : "");
    bool producer = type && !strcmp(type, "producer");
    out->msgs = json_integer_value(json_object_get(root, producer ? "txmsgs" : "rxmsgs"));
    long long rtt_n = 0, q_n = 0;
    const char *name;
    json_t *b;
    json_object_foreach(json_object_get(root, "brokers"), name, b)
    {
        if (json_integer_value(json_object_get(b, "nodeid")) < 0)
            continue; /* the bootstrap and internal brokers */
        out->requests += json_integer_value(json_object_get(json_object_get(b, "req"), req));
        out->waitresp += json_integer_value(json_object_get(b, "waitresp_cnt"));
        long long n = json_integer_value(json_object_get(json_object_get(b, "rtt"), "cnt"));
        out->rtt_avg += stat_ms(b, "rtt", "avg") * (double)n;
        rtt_n += n;
        n = json_integer_value(json_object_get(json_object_get(b, "int_latency"), "cnt"));
        out->queue_avg += stat_ms(b, "int_latency", "avg") * (double)n;
        q_n += n;
        if (stat_ms(b, "rtt", "p99") > out->rtt_p99)
            out->rtt_p99 = stat_ms(b, "rtt", "p99");
        if (stat_ms(b, "int_latency", "p99") > out->queue_p99)
            out->queue_p99 = stat_ms(b, "int_latency", "p99");
        if (stat_ms(b, "outbuf_latency", "p99") > out->outbuf_p99)
            out->outbuf_p99 = stat_ms(b, "outbuf_latency", "p99");
    }
    out->rtt_avg = rtt_n ? out->rtt_avg / (double)rtt_n : 0;
    out->queue_avg = q_n ? out->queue_avg / (double)q_n : 0;
    json_decref(root);
    return 0;
}

void kafka_stats_describe(const kafka_req_stats *prev, const kafka_req_stats *now, char *line, size_t linelen)
{
    long long dr = now->requests - prev->requests, dm = now->msgs - prev->msgs;
    double s = now->ts_us > prev->ts_us ? (double)(now->ts_us - prev->ts_us) / 1e6 : 1;
    snprintf(line, linelen,
             "%lld requests in %.1f s (%.0f/s), %.1f messages each; round trip avg %.1f ms, p99 %.1f ms; "
             "queued before a request avg %.1f ms, p99 %.1f ms; waiting to be written p99 %.1f ms; "
             "%lld awaiting a response",
             dr, s, (double)dr / s, dr > 0 ? (double)dm / (double)dr : 0.0, now->rtt_avg, now->rtt_p99,
             now->queue_avg, now->queue_p99, now->outbuf_p99, now->waitresp);
}

/* librdkafka's statistics of a producer, handed to its kafka_delivery. */
static int on_producer_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    kafka_delivery *dr = opaque;
    if (dr && dr->on_stats)
        dr->on_stats(dr->ctx, json, len);
    return 0; /* librdkafka frees json */
}

rd_kafka_t *kafka_producer_new(const config *cfg, kafka_delivery *dr, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, err, errlen);
    char why[512];
    if (!conf)
        return NULL;
    /* Correctness settings: not overridable, the pipeline's guarantees rest on them. */
    if (kafka_conf_set(conf, "enable.idempotence", "true", err, errlen) ||
        kafka_conf_set(conf, "acks", "all", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* a plain producer: kafka.transactional.id belongs to run's exactly-once
     * emitter; kept here it would make every produce call fail */
    kafka_conf_set(conf, "transactional.id", NULL, err, errlen);
    rd_kafka_conf_set_dr_msg_cb(conf, kafka_on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    if (dr && dr->on_stats) {
        bool user = false;
        for (size_t i = 0; i < cfg->kafka_count; i++)
            user |= !strcmp(cfg->kafka[i].key, "statistics.interval.ms");
        if (!user && kafka_conf_set(conf, "statistics.interval.ms", "10000", err, errlen)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
        rd_kafka_conf_set_stats_cb(conf, on_producer_stats);
    }
    rd_kafka_conf_set_opaque(conf, dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!rk) {
        snprintf(err, errlen, "kafka producer: %s", why);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return rk; /* conf is now owned by rk */
}

rd_kafka_resp_err_t kafka_produce(rd_kafka_t *rk, const char *topic, const void *key, size_t keylen,
                                  const void *value, size_t len, rd_kafka_headers_t *hdrs, void *tag)
{
    /* The handle of the topic (librdkafka looks it up the same way for a
     * message that names its topic), then kafka_produce_rkt. */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt)
        return rd_kafka_last_error();
    rd_kafka_resp_err_t e = kafka_produce_rkt(rk, rkt, key, keylen, value, len, hdrs, tag);
    rd_kafka_topic_destroy(rkt);
    return e;
}

rd_kafka_resp_err_t kafka_produce_rkt(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const void *key, size_t keylen,
                                      const void *value, size_t len, rd_kafka_headers_t *hdrs, void *tag)
{
    for (;;) {
        rd_kafka_resp_err_t e;
        if (hdrs)
            e = rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(key, keylen),
                                  RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(tag), RD_KAFKA_V_END);
        else
            e = rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(key, keylen),
                                  RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_OPAQUE(tag), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return e;
        rd_kafka_poll(rk, 100);
    }
}

rd_kafka_t *kafka_mock_start(const config *cfg, int brokers, int partitions, rd_kafka_mock_cluster_t **mcluster,
                             char *err, size_t errlen)
{
    char why[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    kafka_conf_route_logs(conf);
    if (kafka_conf_set(conf, "log_level", "3", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!rk) {
        snprintf(err, errlen, "mock cluster handle: %s", why);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    *mcluster = rd_kafka_mock_cluster_new(rk, brokers);
    if (!*mcluster) {
        snprintf(err, errlen, "could not start the mock cluster");
        rd_kafka_destroy(rk);
        return NULL;
    }
    const char *topics[] = {cfg->topic_touchpoints, cfg->topic_rewards, cfg->topic_stage_changes, cfg->topic_dlq,
                            cfg->topic_credits};
    for (size_t i = 0; partitions > 0 && i < sizeof(topics) / sizeof(topics[0]); i++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(*mcluster, topics[i], partitions, 1);
        if (e) {
            snprintf(err, errlen, "create topic %s: %s", topics[i], rd_kafka_err2str(e));
            rd_kafka_mock_cluster_destroy(*mcluster);
            rd_kafka_destroy(rk);
            return NULL;
        }
    }
    return rk;
}

/* Serve rk's queue (its error callback may fill note); an access error
 * (authentication, ACL) fills err. */
static int access_error(rd_kafka_t *rk, const kafka_errnote *note, char *err, size_t errlen)
{
    rd_kafka_message_t *m;
    while ((m = rd_kafka_consumer_poll(rk, 0))) {
        if (m->err && kafka_err_is_access(m->err) && !note->code) {
            snprintf(err, errlen, "%s (wrong credentials or security settings, or a missing ACL; README: ACLs)",
                     rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            return -1;
        }
        rd_kafka_message_destroy(m);
    }
    if (note->code) {
        snprintf(err, errlen, "%s (wrong credentials or security settings, or a missing ACL; README: ACLs)",
                 note->text);
        return -1;
    }
    return 0;
}

int kafka_check_topics(rd_kafka_t *rk, const char *const *topics, const char *const *keys, size_t n, int timeout_ms,
                       const kafka_errnote *note, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[i], NULL);
        if (!rkt) {
            snprintf(err, errlen, "topic '%s' (%s): %s", topics[i], keys[i], rd_kafka_err2str(rd_kafka_last_error()));
            return -1;
        }
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
        /* ask in slices, so a failed login is reported at once rather than after the timeout */
        for (int waited = 0; waited < timeout_ms; waited += 2000) {
            e = rd_kafka_metadata(rk, 0, rkt, &md, 2000);
            if (e != RD_KAFKA_RESP_ERR__TIMED_OUT && e != RD_KAFKA_RESP_ERR__TRANSPORT)
                break;
            if (access_error(rk, note, err, errlen) != 0) {
                rd_kafka_topic_destroy(rkt);
                return -1;
            }
        }
        rd_kafka_topic_destroy(rkt);
        if (e) {
            snprintf(err, errlen,
                     "no metadata of topic '%s' from the Kafka cluster within %d s: %s (check "
                     "kafka.bootstrap.servers and the security settings; librdkafka's errors are logged above)",
                     topics[i], timeout_ms / 1000, rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_resp_err_t te = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        int parts = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
        rd_kafka_metadata_destroy(md);
        if (te == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
            snprintf(err, errlen,
                     "topic '%s' (%s): not authorized: the principal needs an ACL for it (README: ACLs)", topics[i],
                     keys[i]);
            return -1;
        }
        if (te == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || (!te && parts == 0)) {
            snprintf(err, errlen,
                     "topic '%s' (%s) does not exist on the Kafka cluster: fidelio creates no topics; create it "
                     "first (README: topics)",
                     topics[i], keys[i]);
            return -1;
        }
        if (te) {
            snprintf(err, errlen, "topic '%s' (%s): %s", topics[i], keys[i], rd_kafka_err2str(te));
            return -1;
        }
    }
    return 0;
}

bool kafka_err_is_access(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        return true;
    default:
        return false;
    }
}
