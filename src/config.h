/* config.h - Fidelio's settings: one table, loaded from YAML, the
 * environment and --set (in that order, later wins: what is typed on the
 * command line beats the environment, which beats the file).
 *
 * Every setting has a name, a type, a default and bounds (config.c's
 * settings[]). kafka.* keys are not in the table: they pass through to
 * librdkafka unchanged and are checked by librdkafka itself (kafka.c). */
#ifndef FIDELIO_CONFIG_H
#define FIDELIO_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Where a value came from, for error messages and `fidelio check`. */
typedef struct config_origin {
    char where[300]; /* "config/fidelio.yaml:12", "--set", "env FIDELIO_X" or "default" */
} config_origin;

/* A librdkafka property given as kafka.<name>. */
typedef struct config_kv {
    char *key;            /* librdkafka name, without the kafka. prefix; owned */
    char *value;          /* owned */
    config_origin origin;
} config_kv;

typedef struct config {
    char *topic_touchpoints;   /* input events */
    char *topic_rewards;       /* RewardEvent output */
    char *topic_stage_changes; /* StageChangeEvent output */
    char *topic_dlq;           /* rejected input, with error headers */
    char *topic_credits;       /* internal: cross-customer credits (referrals) */
    char *consumer_group;      /* Kafka consumer group id */
    char *redis_url;           /* redis://[:password@]host:port[/db] or unix:///path[?db=N] */
    char *key_prefix;          /* namespace of every Redis key */
    int64_t max_message_bytes; /* larger input messages go to the DLQ unread */
    int64_t max_clock_skew_ms; /* occurred_at may be this far after the message time */
    int64_t batch_size;        /* messages per pipeline batch */
    int64_t batch_linger_ms;   /* longest wait to fill a batch */
    int64_t batch_max_bytes;   /* a batch ends once its messages hold this many bytes */
    int64_t max_in_flight_batches; /* batches whose outputs may await acknowledgement at once */
    int64_t output_producers;   /* at-least-once: producers the output topics are shared among */
    int64_t dedupe_retention_ms; /* how long (event time) dedupe records are kept */
    int64_t exactly_once;      /* bool: one Kafka transaction per batch (outputs + input offsets) */
    int64_t ledger_max;        /* ledger entries kept per customer in Redis; 0 = all */
    int64_t report_aggregates; /* 1: applies keep the report's aggregates (report.h); 0: off */
    int64_t assign_timeout_ms; /* run --until-idle: longest wait without any partition assigned */
    int64_t http_port;         /* metrics/health/control-room port; 0 disables */
    char *http_bind;           /* address it listens on */
    int64_t liveness_timeout_ms; /* /healthz fails when the loop is quieter than this */
    char *credits_hmac_key;    /* HMAC key of credits (secret); empty: unsigned, unchecked */
    char *rules_path;          /* rule program; relative paths are relative to the config file */
    char *log_level;           /* debug, info, warn, error */
    char *log_format;          /* text or json */

    config_kv *kafka;          /* kafka.* pass-through, in the order given */
    size_t kafka_count;
    size_t kafka_cap;

    config_origin origins[32]; /* origin of each table setting, by table index */
    char *path;                /* file loaded, or NULL for embedded defaults */
} config;

/* Fill cfg with defaults, then apply path (may be NULL), then FIDELIO_*
 * variables from envp (may be NULL), then each "k=v" in sets. On error returns -1
 * with err naming the file, line and key; cfg must still be freed. */
int config_load(config *cfg, const char *path, char *const *sets, size_t nsets, char *const *envp, char *err,
                size_t errlen);
void config_free(config *cfg);

/* Set one key (a table setting or kafka.*) from text, validated like a file's
 * value; origin names where it came from in messages. */
int config_set(config *cfg, const char *key, const char *value, const char *origin, char *err, size_t errlen);
/* Forget every kafka.* key. */
void config_clear_kafka(config *cfg);

/* Print the effective configuration as YAML with secrets masked and each
 * value's origin as a comment. */
int config_dump(const config *cfg, buf *out);

/* Whether a key names a secret, by a rule rather than a list (so a new
 * setting is covered the day it is added): a dotted component that contains
 * "password", "secret", "token", "credential", "private", "jaas" or "hmac", or that
 * is "key" or ends in "_key" / "-key" / ".key" (an HMAC key, ssl.key.pem),
 * and sasl.oauthbearer.config (it can hold clientSecret=). */
int config_is_secret(const char *key);

/* url with its user info's password replaced by "***" (redis:// and unix://);
 * the user name is kept. Always NUL-terminated. */
void config_mask_url(const char *url, char *out, size_t outlen);

/* Path of the rule program, resolved against the config file's directory;
 * an empty result means the built-in default program.
 * Writes into out; returns -1 if it does not fit. */
int config_rules_path(const config *cfg, char *out, size_t outlen);

#endif
