/* config.c - the settings table and its loaders (YAML file, --set, environment). */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "yamlutil.h"

typedef enum setting_type { SET_STRING, SET_INT, SET_BOOL } setting_type;

typedef int (*setting_check)(const char *value, char *err, size_t errlen);

/* One row of the table: like Redis' static_configs[]. */
typedef struct setting {
    const char *name;        /* dotted key in YAML and --set */
    setting_type type;
    size_t offset;           /* into struct config */
    const char *def;         /* default, as text */
    int64_t min, max;        /* bounds of SET_INT */
    setting_check check;     /* extra validation, may be NULL */
    const char *doc;         /* one line, for --help and errors */
} setting;

static int check_topic(const char *v, char *err, size_t errlen)
{
    size_t n = strlen(v);
    if (n == 0 || n > 249) {
        snprintf(err, errlen, "a topic name has 1 to 249 characters");
        return -1;
    }
    for (const char *p = v; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '-')) {
            snprintf(err, errlen, "a topic name holds only letters, digits, '.', '_' and '-'");
            return -1;
        }
    return 0;
}

static int check_nonempty(const char *v, char *err, size_t errlen)
{
    if (!*v) {
        snprintf(err, errlen, "must not be empty");
        return -1;
    }
    return 0;
}

static int check_redis_url(const char *v, char *err, size_t errlen)
{
    if (strncmp(v, "unix://", 7) == 0) {
        const char *at = strrchr(v + 7, '@'), *path = at ? at + 1 : v + 7;
        if (*path != '/') {
            snprintf(err, errlen, "unix:// takes an absolute socket path, e.g. unix:///run/redis.sock "
                                  "or unix://user:password@/run/redis.sock");
            return -1;
        }
        return 0;
    }
    if (strncmp(v, "redis://", 8) != 0) {
        snprintf(err, errlen, "expected redis://[[user]:password@]host[:port][/db] or unix://[[user]:password@]/path");
        return -1;
    }
    const char *host = v + 8;
    const char *at = strrchr(host, '@');
    if (at)
        host = at + 1;
    if (!*host || *host == '/' || *host == ':') {
        snprintf(err, errlen, "redis:// URL has no host");
        return -1;
    }
    const char *colon = strchr(host, ':');
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || port < 1 || port > 65535 || (*end && *end != '/')) {
            snprintf(err, errlen, "redis:// URL has a bad port");
            return -1;
        }
    }
    const char *slash = strchr(host, '/');
    if (slash && slash[1]) {
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0 || db > 15) {
            snprintf(err, errlen, "redis:// database must be a number 0..15");
            return -1;
        }
    }
    return 0;
}

static int check_key_prefix(const char *v, char *err, size_t errlen)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p == '{' || *p == '}' || *p <= ' ' || *p == 0x7f) {
            snprintf(err, errlen, "a key prefix holds no braces, spaces or control bytes (they would break hash slots)");
            return -1;
        }
    if (strlen(v) > 64) {
        snprintf(err, errlen, "a key prefix is at most 64 bytes");
        return -1;
    }
    return 0;
}

static int check_hmac_key(const char *v, char *err, size_t errlen)
{
    if (*v && strlen(v) < 16) {
        snprintf(err, errlen, "an HMAC key has at least 16 bytes (e.g. `openssl rand -hex 32`), or is empty");
        return -1;
    }
    return 0;
}

static int check_bind(const char *v, char *err, size_t errlen)
{
    unsigned char tmp[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, v, tmp) != 1 && inet_pton(AF_INET6, v, tmp) != 1) {
        snprintf(err, errlen, "expected a numeric IPv4 or IPv6 address (127.0.0.1, 0.0.0.0, ::1, ::)");
        return -1;
    }
    return 0;
}

static int check_log_format(const char *v, char *err, size_t errlen)
{
    if (strcmp(v, "text") && strcmp(v, "json")) {
        snprintf(err, errlen, "expected text or json");
        return -1;
    }
    return 0;
}

static int check_log_level(const char *v, char *err, size_t errlen)
{
    if (strcmp(v, "debug") && strcmp(v, "info") && strcmp(v, "warn") && strcmp(v, "error")) {
        snprintf(err, errlen, "expected one of debug, info, warn, error");
        return -1;
    }
    return 0;
}

#define S(name, field, def, check, doc) {name, SET_STRING, offsetof(config, field), def, 0, 0, check, doc}
#define I(name, field, def, min, max, doc) {name, SET_INT, offsetof(config, field), def, min, max, NULL, doc}
#define B(name, field, def, doc) {name, SET_BOOL, offsetof(config, field), def, 0, 1, NULL, doc}

static const setting settings[] = {
    S("topics.touchpoints", topic_touchpoints, "touchpoints", check_topic, "input topic of TouchpointEvent"),
    S("topics.rewards", topic_rewards, "rewards", check_topic, "output topic of RewardEvent"),
    S("topics.stage_changes", topic_stage_changes, "stage-changes", check_topic, "output topic of StageChangeEvent"),
    S("topics.dlq", topic_dlq, "touchpoints-dlq", check_topic, "rejected input, with error headers"),
    S("topics.credits", topic_credits, "fidelio-credits", check_topic, "internal cross-customer credits"),
    S("consumer.group", consumer_group, "fidelio", check_nonempty, "Kafka consumer group id"),
    S("redis.url", redis_url, "redis://127.0.0.1:6379/0", check_redis_url, "Redis server"),
    S("redis.key_prefix", key_prefix, "fidelio:", check_key_prefix, "namespace of every Redis key"),
    I("limits.max_message_bytes", max_message_bytes, "1048576", 64, 64 * 1024 * 1024, "largest input message"),
    I("limits.max_clock_skew_ms", max_clock_skew_ms, "86400000", 0, INT64_C(31536000000),
      "how far occurred_at may be after the message timestamp"),
    I("pipeline.batch_size", batch_size, "500", 1, 100000, "messages per batch"),
    I("pipeline.batch_linger_ms", batch_linger_ms, "50", 0, 60000, "longest wait to fill a batch"),
    I("pipeline.batch_max_bytes", batch_max_bytes, "4194304", 1024, INT64_C(1) << 30,
      "a batch ends once its messages' keys and values hold this many bytes"),
    I("pipeline.max_in_flight_batches", max_in_flight_batches, "8", 1, 1024,
      "batches whose outputs may await acknowledgement while the next ones are decided and applied "
      "(at-least-once; exactly-once commits each batch's transaction before the next)"),
    I("pipeline.output_producers", output_producers, "1", 1, 4,
      "producers the outputs are shared among, one topic each in turn, each with its own connection to "
      "each broker (at-least-once; exactly-once has one)"),
    I("pipeline.dedupe_retention_ms", dedupe_retention_ms, "2592000000", 3600000, INT64_C(31536000000) * 10,
      "how long (event time) dedupe records are kept"),
    B("pipeline.exactly_once", exactly_once, "false",
      "outputs and input offsets in one Kafka transaction per batch (a real broker; read_committed subscribers)"),
    I("pipeline.assign_timeout_ms", assign_timeout_ms, "30000", 1000, 86400000,
      "run exits 1 when the topics' metadata has not come after this long (broker unreachable); with "
      "--until-idle also after this long without a partition assigned"),
    I("pipeline.ledger_max", ledger_max, "10000", 0, 100000000, "ledger entries kept per customer in Redis; 0 = all"),
    I("pipeline.report_aggregates", report_aggregates, "1", 0, 1,
      "1: each apply keeps the report's counters (fidelio report, the control room); 0: off, faster"),
    I("http.port", http_port, "9464", 0, 65535,
      "port of /metrics, /healthz, /readyz, /api/report and the control room (run, dashboard); 0 = off"),
    S("http.bind", http_bind, "127.0.0.1", check_bind, "address the HTTP server listens on (numeric IPv4 or IPv6)"),
    I("http.liveness_timeout_ms", liveness_timeout_ms, "300000", 1000, 86400000,
      "/healthz fails when the main loop has not run for this long"),
    S("credits.hmac_key", credits_hmac_key, "", check_hmac_key,
      "secret shared by a namespace's instances: credits are signed and checked with it (HMAC-SHA256); "
      "empty: unsigned credits are accepted (development only)"),
    S("rules.path", rules_path, "", NULL, "rule program, relative to this file; empty: the built-in default program"),
    S("log.level", log_level, "info", check_log_level, "debug, info, warn or error"),
    S("log.format", log_format, "text", check_log_format, "text or json (one JSON object a line)"),
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

_Static_assert(NSETTINGS <= 32, "config.origins is too small");

static char **str_slot(config *cfg, const setting *s) { return (char **)((char *)cfg + s->offset); }
static int64_t *int_slot(config *cfg, const setting *s) { return (int64_t *)((char *)cfg + s->offset); }

static const setting *find_setting(const char *name)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    return NULL;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

int config_set(config *cfg, const char *key, const char *value, const char *origin, char *err, size_t errlen)
{
    char why[256];
    if (strncmp(key, "kafka.", 6) == 0 && key[6]) {
        const char *name = key + 6;
        config_kv *kv = NULL;
        for (size_t i = 0; i < cfg->kafka_count; i++)
            if (strcmp(cfg->kafka[i].key, name) == 0)
                kv = &cfg->kafka[i];
        if (!kv) {
            if (cfg->kafka_count == cfg->kafka_cap) {
                size_t cap = cfg->kafka_cap ? cfg->kafka_cap * 2 : 8;
                config_kv *a = realloc(cfg->kafka, cap * sizeof(*a));
                if (!a)
                    goto oom;
                cfg->kafka = a;
                cfg->kafka_cap = cap;
            }
            kv = &cfg->kafka[cfg->kafka_count];
            memset(kv, 0, sizeof(*kv));
            if (!(kv->key = xstrdup(name)))
                goto oom;
            cfg->kafka_count++;
        }
        char *v = xstrdup(value);
        if (!v)
            goto oom;
        free(kv->value);
        kv->value = v;
        snprintf(kv->origin.where, sizeof(kv->origin.where), "%s", origin);
        return 0;
    }
    const setting *s = find_setting(key);
    if (!s) {
        snprintf(err, errlen, "%s: unknown key '%s'", origin, key);
        return -1;
    }
    if (s->type == SET_BOOL) {
        if (strcmp(value, "true") && strcmp(value, "false")) {
            snprintf(err, errlen, "%s: key '%s': '%s' is not true or false", origin, key, value);
            return -1;
        }
        *int_slot(cfg, s) = strcmp(value, "true") == 0;
    } else if (s->type == SET_INT) {
        char *end;
        errno = 0;
        long long x = strtoll(value, &end, 10);
        if (errno || end == value || *end) {
            snprintf(err, errlen, "%s: key '%s': '%s' is not an integer", origin, key, value);
            return -1;
        }
        if (x < s->min || x > s->max) {
            snprintf(err, errlen, "%s: key '%s': %lld is outside %lld..%lld", origin, key, x, (long long)s->min,
                     (long long)s->max);
            return -1;
        }
        *int_slot(cfg, s) = x;
    } else {
        if (s->check && s->check(value, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s: key '%s': %s", origin, key, why);
            return -1;
        }
        char *v = xstrdup(value);
        if (!v)
            goto oom;
        free(*str_slot(cfg, s));
        *str_slot(cfg, s) = v;
    }
    snprintf(cfg->origins[s - settings].where, sizeof(cfg->origins[0].where), "%s", origin);
    return 0;
oom:
    snprintf(err, errlen, "%s: out of memory", origin);
    return -1;
}

/* ---- YAML ------------------------------------------------------------------ */

/* Walk a YAML mapping, flattening nested keys with dots. */
static int yaml_walk(config *cfg, yaml_document_t *doc, yaml_node_t *node, const char *prefix, const char *path,
                     char *err, size_t errlen)
{
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(doc, pair->value);
        char origin[300], key[256];
        snprintf(origin, sizeof(origin), "%s:%lu", path, yaml_line(k));
        if (k->type != YAML_SCALAR_NODE) {
            snprintf(err, errlen, "%s: a key must be a plain name", origin);
            return -1;
        }
        if ((size_t)snprintf(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "", (const char *)k->data.scalar.value) >=
            sizeof(key)) {
            snprintf(err, errlen, "%s: key too long", origin);
            return -1;
        }
        if (v->type == YAML_MAPPING_NODE) {
            if (yaml_walk(cfg, doc, v, key, path, err, errlen) != 0)
                return -1;
        } else if (v->type == YAML_SCALAR_NODE) {
            const char *text = (const char *)v->data.scalar.value;
            int plain = v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            if (plain && (strcmp(text, "~") == 0 || strcmp(text, "null") == 0 || !*text)) {
                snprintf(err, errlen, "%s: key '%s': has no value", origin, key);
                return -1;
            }
            if (config_set(cfg, key, text, origin, err, errlen) != 0)
                return -1;
        } else {
            snprintf(err, errlen, "%s: key '%s': lists are not accepted here", origin, key);
            return -1;
        }
    }
    return 0;
}

static int load_yaml(config *cfg, const char *path, char *err, size_t errlen)
{
    yaml_document_t doc;
    if (yaml_load(path, NULL, &doc, err, errlen) != 0)
        return -1;
    int rc = -1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root)
        rc = 0; /* an empty file leaves the defaults */
    else if (root->type != YAML_MAPPING_NODE)
        snprintf(err, errlen, "%s:%lu: the top level must be a mapping of keys", path, yaml_line(root));
    else
        rc = yaml_walk(cfg, &doc, root, "", path, err, errlen);
    yaml_document_delete(&doc);
    return rc;
}

/* ---- environment ------------------------------------------------------------ */

/* FIDELIO_REDIS_URL -> redis.url for table keys; FIDELIO_KAFKA_X_Y -> kafka.x.y. */
static int apply_env(config *cfg, char *const *envp, char *err, size_t errlen)
{
    for (char *const *e = envp; e && *e; e++) {
        if (strncmp(*e, "FIDELIO_", 8) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        char name[256], origin[300];
        size_t n = (size_t)(eq - *e);
        if (n >= sizeof(name))
            continue;
        memcpy(name, *e, n);
        name[n] = '\0';
        if (strcmp(name, "FIDELIO_CONFIG") == 0)
            continue; /* the config path itself, read by main */
        snprintf(origin, sizeof(origin), "environment %s", name);
        const setting *match = NULL;
        for (size_t i = 0; i < NSETTINGS && !match; i++) {
            char want[256];
            size_t j = 0;
            j += (size_t)snprintf(want, sizeof(want), "FIDELIO_");
            for (const char *p = settings[i].name; *p && j + 1 < sizeof(want); p++)
                want[j++] = (*p == '.') ? '_' : (char)toupper((unsigned char)*p);
            want[j] = '\0';
            if (strcmp(want, name) == 0)
                match = &settings[i];
        }
        if (match) {
            if (config_set(cfg, match->name, eq + 1, origin, err, errlen) != 0)
                return -1;
        } else if (strncmp(name, "FIDELIO_KAFKA_", 14) == 0 && name[14]) {
            char key[256];
            size_t j = (size_t)snprintf(key, sizeof(key), "kafka.");
            for (const char *p = name + 14; *p && j + 1 < sizeof(key); p++)
                key[j++] = (*p == '_') ? '.' : (char)tolower((unsigned char)*p);
            key[j] = '\0';
            if (config_set(cfg, key, eq + 1, origin, err, errlen) != 0)
                return -1;
        } else {
            snprintf(err, errlen, "%s: unknown key (no setting is named by this variable)", origin);
            return -1;
        }
    }
    return 0;
}

int config_load(config *cfg, const char *path, char *const *sets, size_t nsets, char *const *envp, char *err,
                size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NSETTINGS; i++) {
        if (config_set(cfg, settings[i].name, settings[i].def, "default", err, errlen) != 0)
            return -1;
    }
    if (path) {
        if (!(cfg->path = xstrdup(path))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (load_yaml(cfg, path, err, errlen) != 0)
            return -1;
    }
    if (apply_env(cfg, envp, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < nsets; i++) {
        const char *eq = strchr(sets[i], '=');
        char key[256];
        if (!eq || eq == sets[i] || (size_t)(eq - sets[i]) >= sizeof(key)) {
            snprintf(err, errlen, "--set %s: expected key=value", sets[i]);
            return -1;
        }
        memcpy(key, sets[i], (size_t)(eq - sets[i]));
        key[eq - sets[i]] = '\0';
        if (config_set(cfg, key, eq + 1, "--set", err, errlen) != 0)
            return -1;
    }
    return 0;
}

void config_clear_kafka(config *cfg)
{
    for (size_t i = 0; i < cfg->kafka_count; i++) {
        free(cfg->kafka[i].key);
        free(cfg->kafka[i].value);
    }
    cfg->kafka_count = 0;
}

void config_free(config *cfg)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (settings[i].type == SET_STRING) {
            free(*str_slot(cfg, &settings[i]));
            *str_slot(cfg, &settings[i]) = NULL;
        }
    config_clear_kafka(cfg);
    free(cfg->kafka);
    free(cfg->path);
    cfg->kafka = NULL;
    cfg->path = NULL;
    cfg->kafka_count = cfg->kafka_cap = 0;
}

/* Whether one dotted component of a key names a secret. */
static int secret_component(const char *c, size_t n)
{
    static const char *const words[] = {"password", "secret", "token", "credential", "private", "jaas", "hmac", NULL};
    char low[128];
    if (n >= sizeof(low))
        n = sizeof(low) - 1;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)c[i]);
    low[n] = '\0';
    for (const char *const *w = words; *w; w++)
        if (strstr(low, *w))
            return 1;
    if (!strcmp(low, "key"))
        return 1;
    return n > 4 && (!strcmp(low + n - 4, "_key") || !strcmp(low + n - 4, "-key"));
}

int config_is_secret(const char *key)
{
    if (strstr(key, "oauthbearer.config"))
        return 1;
    for (const char *p = key; *p;) {
        size_t n = strcspn(p, ".");
        if (secret_component(p, n))
            return 1;
        p += n;
        if (*p)
            p++;
    }
    return 0;
}

void config_mask_url(const char *url, char *out, size_t outlen)
{
    size_t scheme = !strncmp(url, "redis://", 8) ? 8 : !strncmp(url, "unix://", 7) ? 7 : 0;
    const char *at = scheme ? strrchr(url + scheme, '@') : NULL;
    if (!at) {
        snprintf(out, outlen, "%s", url);
        return;
    }
    const char *colon = memchr(url + scheme, ':', (size_t)(at - url - scheme));
    if (colon) /* user:password@ -> user:***@ */
        snprintf(out, outlen, "%.*s:***%s", (int)(colon - url), url, at);
    else /* password@ */
        snprintf(out, outlen, "%.*s***%s", (int)scheme, url, at);
}

int config_dump(const config *cfg, buf *out)
{
    int rc = buf_printf(out, "# effective configuration (source: %s)\n", cfg->path ? cfg->path : "embedded defaults");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *s = &settings[i];
        char val[600];
        if (s->type == SET_BOOL)
            snprintf(val, sizeof(val), "%s", *(int64_t *)((char *)cfg + s->offset) ? "true" : "false");
        else if (s->type == SET_INT)
            snprintf(val, sizeof(val), "%lld", (long long)*(int64_t *)((char *)cfg + s->offset));
        else if (strcmp(s->name, "redis.url") == 0)
            config_mask_url(*(char **)((char *)cfg + s->offset), val, sizeof(val));
        else if (config_is_secret(s->name) && **(char **)((char *)cfg + s->offset))
            snprintf(val, sizeof(val), "\"***\"");
        else
            snprintf(val, sizeof(val), "\"%s\"", *(char **)((char *)cfg + s->offset));
        rc |= buf_printf(out, "%s: %s  # %s\n", s->name, val, cfg->origins[i].where);
    }
    for (size_t i = 0; i < cfg->kafka_count; i++) {
        const config_kv *kv = &cfg->kafka[i];
        rc |= buf_printf(out, "kafka.%s: \"%s\"  # %s\n", kv->key, config_is_secret(kv->key) ? "***" : kv->value,
                         kv->origin.where);
    }
    return rc;
}

int config_rules_path(const config *cfg, char *out, size_t outlen)
{
    const char *p = cfg->rules_path;
    if (!*p) {
        out[0] = '\0';
        return 0;
    }
    if (p[0] == '/' || !cfg->path || !strchr(cfg->path, '/'))
        return (size_t)snprintf(out, outlen, "%s", p) < outlen ? 0 : -1;
    int dirlen = (int)(strrchr(cfg->path, '/') - cfg->path);
    return (size_t)snprintf(out, outlen, "%.*s/%s", dirlen, cfg->path, p) < outlen ? 0 : -1;
}
