/* stream.h - JSON lines to a topic and a topic to JSON lines: the engines of
 * `fidelio produce`, `fidelio consume` and the demo. */
#ifndef FIDELIO_STREAM_H
#define FIDELIO_STREAM_H

#include <stdio.h>

#include <librdkafka/rdkafka.h>

#include "buf.h"
#include "codec.h"
#include "config.h"
#include "kafka.h"

/* What a topic carries. */
typedef enum stream_kind { STREAM_AVRO, STREAM_DLQ } stream_kind;

/* The schema of one of the configured topics; -1 if topic is none of them
 * (the DLQ topic answers -1 too and sets *is_dlq). */
int stream_topic_schema(const config *cfg, const char *topic, int *is_dlq);

typedef struct produce_opts {
    const char *topic;
    codec_schema schema;
    int strict;              /* stop at the first invalid line */
    int progress;            /* print progress lines on stderr */
    const char *input_name;  /* for messages: file name or "stdin" */
} produce_opts;

typedef struct produce_stats {
    long long lines;     /* non-blank lines read */
    long long sent;      /* acknowledged by Kafka */
    long long rejected;  /* invalid lines, not sent */
    long long failed;    /* delivery failures */
    double seconds;      /* wall time */
} produce_stats;

/* A producer of project records to one topic (idempotent, acks=all): what
 * `produce` and `gen` share. Open, send records, close. */
typedef struct stream_producer {
    const config *cfg;       /* borrowed */
    const char *topic;       /* borrowed */
    codec_schema schema;     /* of every record sent */
    rd_kafka_t *rk;          /* owned */
    codec *codec;            /* owned */
    kafka_delivery dr;       /* delivery accounting (dr.delivered, dr.failed) */
    buf avro;                /* scratch encoding */
} stream_producer;

/* Start a producer of schema s records to topic. Returns 0, or -1 with err. */
int stream_producer_open(stream_producer *p, const config *cfg, const char *topic, codec_schema s, char *err,
                         size_t errlen);
/* Validate rec (a touchpoint against the wall clock as its message time),
 * encode it as Avro and produce it keyed by its customer_id. Returns 0 when
 * queued; 1 when rec is invalid (nothing sent, *verr and why say why); -1 on
 * a Kafka error (err says which). */
int stream_producer_send(stream_producer *p, const codec_record *rec, event_err *verr, char *why, size_t whylen,
                         char *err, size_t errlen);
/* Wait (up to 30 s) for every acknowledgement and free the producer; *sent
 * and *failed (may be NULL) get the delivery counts. Returns 0 when every
 * message was delivered, -1 otherwise (err says why). */
int stream_producer_close(stream_producer *p, long long *sent, long long *failed, char *err, size_t errlen);

/* Read JSON lines from in, validate, encode and produce them keyed by
 * customer_id; invalid lines are reported on stderr with their line number.
 * Returns 0 when every valid line was delivered, -1 otherwise (err says why). */
int produce_stream(const config *cfg, FILE *in, const produce_opts *o, produce_stats *st, char *err, size_t errlen);

typedef struct consume_opts {
    const char *topic;
    codec_schema schema;
    stream_kind kind;
    int64_t offset;          /* RD_KAFKA_OFFSET_BEGINNING, _END or an absolute offset */
    int exit_at_end;         /* stop when every partition is at its end */
    long long max_count;     /* stop after this many messages; 0 = no limit */
} consume_opts;

/* Called for each message with its JSON form (one line, no newline) and,
 * for Avro topics, the decoded record. Return non-zero to stop. */
typedef int (*consume_cb)(const rd_kafka_message_t *m, const codec_record *rec, const char *json, void *opaque);

typedef struct consume_stats {
    long long messages;   /* delivered to the callback */
    long long undecodable; /* reported on stderr and skipped */
} consume_stats;

/* Read every partition of o->topic (no consumer group, nothing committed).
 * Returns 0, or -1 on a Kafka error (err says which). */
int consume_stream(const config *cfg, const consume_opts *o, consume_cb cb, void *opaque, consume_stats *st,
                   char *err, size_t errlen);

/* The JSON form of a DLQ message: its error headers, key and value (base64). */
int stream_dlq_json(const rd_kafka_message_t *m, buf *out);

#endif
