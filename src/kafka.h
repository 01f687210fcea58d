/* kafka.h - librdkafka configuration, producer and mock-cluster helpers
 * shared by the subcommands. */
#ifndef FIDELIO_KAFKA_H
#define FIDELIO_KAFKA_H

#include <stdbool.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "config.h"

/* Delivery accounting of a producer; the dr_msg_cb updates it. */
typedef struct kafka_delivery {
    long long delivered;  /* acknowledged by the broker */
    long long failed;     /* permanently failed */
    long long payload_done; /* payload bytes of the messages reported (either way): librdkafka counts a
                             * message's payload, neither key nor headers, against queue.buffering.max.kbytes
                             * until its report is served */
    char last_error[256]; /* text of the last failure */
    char client_error[256]; /* the client's last error (error_cb: broker down, auth...) */
    /* called for every report of a message produced with a non-NULL opaque
     * (kafka_produce's tag), after the counts above, with the message's
     * Kafka timestamp when the broker set it (LogAppendTime), else -1; NULL: none */
    void (*on_msg)(void *ctx, void *tag, rd_kafka_resp_err_t err, int64_t append_ms);
    void *ctx;            /* on_msg's first argument */
    /* producer statistics (librdkafka's JSON, every statistics.interval.ms,
     * 10 s unless kafka.statistics.interval.ms is set), served by poll;
     * NULL: none asked for */
    void (*on_stats)(void *ctx, const char *json, size_t len);
} kafka_delivery;

/* The last access error (authentication, ACL) a client reported through its
 * error callback; code 0 while there is none. */
typedef struct kafka_errnote {
    rd_kafka_resp_err_t code;
    char text[512];
} kafka_errnote;

/* Check every kafka.* key against librdkafka, naming its origin on error. */
int kafka_check_config(const config *cfg, char *err, size_t errlen);

/* The smallest kafka.message.max.bytes accepted (see kafka_check_limits). */
#define KAFKA_MIN_RECORD_BYTES 4096

/* Check that the size limits agree: the producer's message.max.bytes holds
 * an output or a DLQ record (at least KAFKA_MIN_RECORD_BYTES; a DLQ record's
 * value is cut to fit), and receive.message.max.bytes can fetch the largest
 * message limits.max_message_bytes accepts. -1 with err naming the keys. */
int kafka_check_limits(const config *cfg, char *err, size_t errlen);

/* The producer's effective message.max.bytes (librdkafka default unless
 * kafka.message.max.bytes is set), or -1. */
long long kafka_max_message_bytes(const config *cfg);

/* A new conf holding cfg's kafka.* keys. The caller owns it (until rd_kafka_new takes it). */
rd_kafka_conf_t *kafka_conf_new(const config *cfg, char *err, size_t errlen);

/* Send librdkafka's log lines through log.h (kafka_conf_new does it). */
void kafka_conf_route_logs(rd_kafka_conf_t *conf);

/* Set one property; fills err naming the key on failure. */
int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err, size_t errlen);

/* What a client's statistics say about its requests of one kind to the
 * brokers (the bootstrap and internal brokers left out): totals so far and
 * the windowed latencies of the last interval, in ms. */
typedef struct kafka_req_stats {
    long long ts_us;      /* librdkafka's clock at the statistics (µs) */
    long long requests;   /* requests of the kind sent so far */
    long long msgs;       /* messages sent (producer) or received (consumer) so far */
    long long waitresp;   /* requests awaiting a response now */
    double rtt_avg, rtt_p99;     /* broker round trip (any request) */
    double queue_avg, queue_p99; /* producer: a message's wait before it is put in a request */
    double outbuf_p99;           /* a request's wait to be written to the socket */
    char client[64];             /* the client's name (librdkafka's "rdkafka#producer-N") */
} kafka_req_stats;

/* Read the statistics JSON of a client (statistics.interval.ms) for
 * requests named req ("Produce", "Fetch"). 0, or -1 if unreadable. */
int kafka_stats_read(const char *json, size_t len, const char *req, kafka_req_stats *out);

/* One line saying what happened between two readings of kafka_stats_read
 * (requests per second, messages per request, latencies) into line. */
void kafka_stats_describe(const kafka_req_stats *prev, const kafka_req_stats *now, char *line, size_t linelen);

/* An idempotent (acks=all) producer whose delivery reports update *dr. */
rd_kafka_t *kafka_producer_new(const config *cfg, kafka_delivery *dr, char *err, size_t errlen);

/* The delivery report callback behind kafka_delivery (opaque: the kafka_delivery). */
void kafka_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* Check that each of the n topics exists and may be described, asking the
 * cluster through rk (a consumer not yet subscribed: it is polled between
 * tries, so its error callback can fill note and a failed login stops the
 * check at once); keys[i] names the setting of topics[i] in messages.
 * Returns 0, or -1 with err saying which topic and what to do. */
int kafka_check_topics(rd_kafka_t *rk, const char *const *topics, const char *const *keys, size_t n, int timeout_ms,
                       const kafka_errnote *note, char *err, size_t errlen);

/* Whether e says the client may not do what it asked (authentication or an ACL):
 * an error that waiting does not cure. */
bool kafka_err_is_access(rd_kafka_resp_err_t e);

/* Produce one message, waiting (serving delivery reports) while the local
 * queue is full; tag (may be NULL) comes back in the delivery report
 * (kafka_delivery.on_msg). */
rd_kafka_resp_err_t kafka_produce(rd_kafka_t *rk, const char *topic, const void *key, size_t keylen,
                                  const void *value, size_t len, rd_kafka_headers_t *hdrs, void *tag);
/* The same through a topic handle of rk (rd_kafka_topic_new): librdkafka then
 * skips looking the topic up by name under its handle's write lock on every
 * message. */
rd_kafka_resp_err_t kafka_produce_rkt(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const void *key, size_t keylen,
                                      const void *value, size_t len, rd_kafka_headers_t *hdrs, void *tag);

/* Start librdkafka's in-process mock cluster with brokers brokers; creates
 * the topics of cfg with partitions each (none when partitions <= 0: the
 * caller creates them). Returns the handle that owns the
 * cluster (destroy it to stop the cluster) and sets *mcluster. */
rd_kafka_t *kafka_mock_start(const config *cfg, int brokers, int partitions, rd_kafka_mock_cluster_t **mcluster,
                             char *err, size_t errlen);

#endif
