/* stream.c - produce JSON lines to Kafka, consume Kafka to JSON lines. */
#include "stream.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "event.h"
#include "kafka.h"
#include "log.h"

int stream_topic_schema(const config *cfg, const char *topic, int *is_dlq)
{
    *is_dlq = strcmp(topic, cfg->topic_dlq) == 0;
    if (strcmp(topic, cfg->topic_touchpoints) == 0)
        return SCHEMA_TOUCHPOINT;
    if (strcmp(topic, cfg->topic_rewards) == 0)
        return SCHEMA_REWARD;
    if (strcmp(topic, cfg->topic_stage_changes) == 0)
        return SCHEMA_STAGE_CHANGE;
    if (strcmp(topic, cfg->topic_credits) == 0)
        return SCHEMA_CREDIT;
    return -1;
}

/* Basic checks of output records given to produce (tests and backfills). */
static event_err validate_output(const codec_record *rec, char *err, size_t errlen)
{
    const char *cid = codec_record_key(rec);
    const char *id = rec->schema == SCHEMA_REWARD ? rec->reward.reward_id
                     : rec->schema == SCHEMA_CREDIT ? rec->credit.credit_id
                                                    : rec->stage.change_id;
    if (!*id) {
        snprintf(err, errlen, "the record's id is empty");
        return EVENT_ERR_MISSING_FIELD;
    }
    if (!*cid) {
        snprintf(err, errlen, "customer_id is empty");
        return EVENT_ERR_EMPTY_CUSTOMER_ID;
    }
    return EVENT_OK;
}

int stream_producer_open(stream_producer *p, const config *cfg, const char *topic, codec_schema s, char *err,
                         size_t errlen)
{
    memset(p, 0, sizeof(*p));
    p->cfg = cfg;
    p->topic = topic;
    p->schema = s;
    if (!(p->codec = codec_new((size_t)cfg->max_message_bytes, err, errlen)))
        return -1;
    if (!(p->rk = kafka_producer_new(cfg, &p->dr, err, errlen))) {
        codec_free(p->codec);
        p->codec = NULL;
        return -1;
    }
    return 0;
}

int stream_producer_send(stream_producer *p, const codec_record *rec, event_err *verr, char *why, size_t whylen,
                         char *err, size_t errlen)
{
    event_limits lim = {.max_clock_skew_ms = p->cfg->max_clock_skew_ms};
    event_err e = p->schema == SCHEMA_TOUCHPOINT ? touchpoint_validate(&rec->tp, &lim, clock_wall_ms(), why, whylen)
                                                 : validate_output(rec, why, whylen);
    if (e == EVENT_OK)
        e = codec_encode_avro(p->codec, p->schema, rec, &p->avro, why, whylen);
    if (e == EVENT_OK && p->avro.len > (size_t)p->cfg->max_message_bytes) {
        snprintf(why, whylen, "encoded message is %zu bytes, the limit is %lld", p->avro.len,
                 (long long)p->cfg->max_message_bytes);
        e = EVENT_ERR_TOO_LARGE;
    }
    if (e != EVENT_OK) {
        *verr = e;
        return 1;
    }
    const char *key = codec_record_key(rec);
    rd_kafka_resp_err_t ke = kafka_produce(p->rk, p->topic, key, strlen(key), p->avro.data, p->avro.len, NULL, NULL);
    if (ke) {
        snprintf(err, errlen, "produce to %s: %s", p->topic, rd_kafka_err2str(ke));
        return -1;
    }
    rd_kafka_poll(p->rk, 0);
    return 0;
}

int stream_producer_close(stream_producer *p, long long *sent, long long *failed, char *err, size_t errlen)
{
    int rc = 0;
    if (p->rk) {
        rd_kafka_resp_err_t fe = rd_kafka_flush(p->rk, 30000);
        if (fe) {
            /* still unacknowledged (a broker down): give them up, so each one
             * gets its delivery report and is counted as failed */
            int left = rd_kafka_outq_len(p->rk);
            rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_flush(p->rk, 5000);
            snprintf(err, errlen, "%d messages unacknowledged after 30 s (%s); Kafka: %s", left, rd_kafka_err2str(fe),
                     p->dr.client_error[0] ? p->dr.client_error : p->dr.last_error);
            rc = -1;
        } else if (p->dr.failed) {
            snprintf(err, errlen, "%lld deliveries failed, last: %s", p->dr.failed, p->dr.last_error);
            rc = -1;
        }
        rd_kafka_destroy(p->rk);
        p->rk = NULL;
    }
    if (sent)
        *sent = p->dr.delivered;
    if (failed)
        *failed = p->dr.failed;
    buf_free(&p->avro);
    codec_free(p->codec);
    p->codec = NULL;
    return rc;
}

int produce_stream(const config *cfg, FILE *in, const produce_opts *o, produce_stats *st, char *err, size_t errlen)
{
    stream_producer p;
    char why[512], cerr[512];
    int rc = -1;
    memset(st, 0, sizeof(*st));
    double start = clock_mono_s(), last_progress = start;
    if (stream_producer_open(&p, cfg, o->topic, o->schema, err, errlen) != 0)
        return -1;
    codec_record *rec = calloc(1, sizeof(*rec));
    char *line = NULL;
    size_t cap = 0;
    long n;
    long long lineno = 0;
    if (!rec) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    while (!cli_stop && (n = codec_read_jsonl(in, &line, &cap, &lineno)) >= 0) {
        st->lines++;
        event_err e = codec_decode_json(o->schema, line, (size_t)n, rec, why, sizeof(why));
        int sr = e == EVENT_OK ? stream_producer_send(&p, rec, &e, why, sizeof(why), err, errlen) : 1;
        if (sr < 0)
            goto out;
        if (sr > 0) {
            st->rejected++;
            fprintf(stderr, "%s:%lld: rejected (%s): %s\n", o->input_name, lineno, event_err_name(e), why);
            if (o->strict) {
                snprintf(err, errlen, "%s:%lld: invalid line (--strict)", o->input_name, lineno);
                goto out;
            }
            continue;
        }
        if (o->progress && clock_mono_s() - last_progress >= 2.0) {
            last_progress = clock_mono_s();
            fprintf(stderr, "produce: %lld lines, %lld acknowledged, %lld rejected\n", st->lines, p.dr.delivered,
                    st->rejected);
        }
    }
    if (ferror(in)) {
        snprintf(err, errlen, "%s: read error", o->input_name);
        goto out;
    }
    rc = 0;
out:
    if (stream_producer_close(&p, &st->sent, &st->failed, cerr, sizeof(cerr)) != 0 && rc == 0) {
        snprintf(err, errlen, "%s", cerr);
        rc = -1;
    }
    st->seconds = clock_mono_s() - start;
    if (rec)
        codec_record_free(rec);
    free(rec);
    free(line);
    return rc;
}

/* ---- consume ---------------------------------------------------------------- */

static int header_str(rd_kafka_headers_t *h, const char *name, char *out, size_t outlen)
{
    const void *v;
    size_t n;
    if (!h || rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    snprintf(out, outlen, "%.*s", (int)n, (const char *)v);
    return 0;
}

static json_t *base64_json(const void *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    json_t *s = json_string(out);
    free(out);
    return s;
}

int stream_dlq_json(const rd_kafka_message_t *m, buf *out)
{
    rd_kafka_headers_t *h = NULL;
    rd_kafka_message_headers(m, &h);
    json_t *o = json_object();
    if (!o)
        return -1;
    static const char *const names[] = {"error",         "error_detail", "source_topic", "source_partition",
                                        "source_offset", "dlq_id"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char v[1024];
        json_object_set_new(o, names[i], header_str(h, names[i], v, sizeof(v)) == 0 ? json_string(v) : json_null());
    }
    /* only on a record that was cut to fit: the original lengths */
    static const char *const cut[] = {"key_truncated", "value_truncated"};
    for (size_t i = 0; i < 2; i++) {
        char v[64];
        if (header_str(h, cut[i], v, sizeof(v)) == 0)
            json_object_set_new(o, cut[i], json_integer(atoll(v)));
    }
    json_object_set_new(o, "key", m->key ? json_stringn(m->key, m->key_len) : json_null());
    json_object_set_new(o, "value_base64", m->payload ? base64_json(m->payload, m->len) : json_null());
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text)
        return -1;
    int rc = buf_puts(out, text);
    free(text);
    return rc;
}

int consume_stream(const config *cfg, const consume_opts *o, consume_cb cb, void *opaque, consume_stats *st,
                   char *err, size_t errlen)
{
    char why[512];
    int rc = -1;
    memset(st, 0, sizeof(*st));
    codec *c = codec_new((size_t)cfg->max_message_bytes, err, errlen);
    if (!c)
        return -1;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    const rd_kafka_metadata_t *md = NULL;
    codec_record *rec = calloc(1, sizeof(*rec));
    char *at_eof = NULL;
    buf json = {0};
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, err, errlen);
    if (!conf || !rec)
        goto out;
    /* A reader, not a group member: a private group id, nothing committed. */
    snprintf(why, sizeof(why), "fidelio-consume-%ld", (long)getpid());
    if (kafka_conf_set(conf, "group.id", why, err, errlen) ||
        kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) ||
        kafka_conf_set(conf, "enable.partition.eof", "true", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!rk) {
        snprintf(err, errlen, "kafka consumer: %s", why);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
    rd_kafka_resp_err_t ke = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, 10000) : rd_kafka_last_error();
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (ke) {
        snprintf(err, errlen, "metadata of %s: %s", o->topic, rd_kafka_err2str(ke));
        goto out;
    }
    if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt == 0) {
        snprintf(err, errlen, "topic %s: %s", o->topic,
                 md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "not found");
        goto out;
    }
    int nparts = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(nparts);
    at_eof = calloc((size_t)nparts, 1);
    if (!parts || !at_eof) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (int i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(parts, o->topic, md->topics[0].partitions[i].id)->offset = o->offset;
    if ((ke = rd_kafka_assign(rk, parts)) != 0) {
        snprintf(err, errlen, "assign %s: %s", o->topic, rd_kafka_err2str(ke));
        goto out;
    }
    int eof_count = 0;
    while (!cli_stop) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < nparts && !at_eof[m->partition]) {
                at_eof[m->partition] = 1;
                eof_count++;
            }
            rd_kafka_message_destroy(m);
            if (o->exit_at_end && eof_count == nparts)
                break;
            continue;
        }
        if (m->err) {
            snprintf(err, errlen, "consume %s: %s", o->topic, rd_kafka_message_errstr(m));
            int fatal = m->err != RD_KAFKA_RESP_ERR__TRANSPORT && m->err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN;
            rd_kafka_message_destroy(m);
            if (fatal)
                goto out;
            log_warn("%s", err);
            continue;
        }
        if (m->partition >= 0 && m->partition < nparts && at_eof[m->partition]) {
            at_eof[m->partition] = 0;
            eof_count--;
        }
        buf_reset(&json);
        int stop = 0, ok = 1;
        if (o->kind == STREAM_DLQ) {
            ok = stream_dlq_json(m, &json) == 0;
            if (ok)
                stop = cb(m, NULL, json.data, opaque);
        } else {
            event_err e = codec_decode_avro(c, o->schema, m->payload, m->len, rec, why, sizeof(why));
            if (e == EVENT_OK)
                e = codec_encode_json(o->schema, rec, &json);
            if (e != EVENT_OK) {
                ok = 0;
                fprintf(stderr, "%s [%d] offset %lld: cannot decode as %s (%s): %s\n", o->topic, m->partition,
                        (long long)m->offset, codec_schema_name(o->schema), event_err_name(e), why);
            } else {
                stop = cb(m, rec, json.data, opaque);
            }
        }
        rd_kafka_message_destroy(m);
        if (ok)
            st->messages++;
        else
            st->undecodable++;
        if (stop || (o->max_count && st->messages + st->undecodable >= o->max_count))
            break;
    }
    rc = 0;
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (rec)
        codec_record_free(rec);
    free(rec);
    free(at_eof);
    buf_free(&json);
    codec_free(c);
    return rc;
}
