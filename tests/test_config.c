/* Configuration: defaults, file, --set and environment precedence, and
 * errors that name the file, line and key. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "test_common.h"

static char path[64];
static config cfg;
static char err[1024];

static void write_file(const char *text)
{
    strcpy(path, "/tmp/fidelio-test-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void teardown(void)
{
    config_free(&cfg);
    if (path[0])
        unlink(path);
    path[0] = '\0';
}

START_TEST(defaults)
{
    ck_assert_int_eq(config_load(&cfg, NULL, NULL, 0, NULL, err, sizeof(err)), 0);
    ck_assert_str_eq(cfg.topic_touchpoints, "touchpoints");
    ck_assert_str_eq(cfg.topic_dlq, "touchpoints-dlq");
    ck_assert_int_eq(cfg.max_message_bytes, 1048576);
    ck_assert_int_eq(cfg.max_clock_skew_ms, 86400000);
    ck_assert_int_eq(cfg.kafka_count, 0);
}
END_TEST

START_TEST(shipped_file_loads)
{
    ck_assert_msg(config_load(&cfg, SOURCE_DIR "/config/fidelio.yaml", NULL, 0, NULL, err, sizeof(err)) == 0, "%s",
                  err);
    ck_assert_str_eq(cfg.redis_url, "redis://127.0.0.1:6379/0");
    ck_assert_int_ge(cfg.kafka_count, 1);
    char rules[512];
    ck_assert_int_eq(config_rules_path(&cfg, rules, sizeof(rules)), 0);
    ck_assert_str_eq(rules, SOURCE_DIR "/config/rules.yaml");
}
END_TEST

/* Issue 8: every setting of the settings table appears, set and commented,
 * in the shipped config/fidelio.yaml (pipeline.ledger_max was missing). The
 * effective configuration names each setting's origin: none may be "default". */
START_TEST(shipped_file_documents_every_setting)
{
    const char *file = SOURCE_DIR "/config/fidelio.yaml";
    ck_assert_msg(config_load(&cfg, file, NULL, 0, NULL, err, sizeof(err)) == 0, "%s", err);
    buf dump = {0};
    ck_assert_int_eq(config_dump(&cfg, &dump), 0);
    /* the file's lines, to check that each setting's line carries a comment */
    FILE *f = fopen(file, "r");
    ck_assert_ptr_nonnull(f);
    static char lines[400][256];
    int nlines = 0;
    while (nlines < 400 && fgets(lines[nlines], sizeof(lines[0]), f))
        nlines++;
    fclose(f);
    int settings = 0;
    char *save = NULL;
    for (char *line = strtok_r(dump.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || !strncmp(line, "kafka.", 6))
            continue;
        settings++;
        char *origin = strstr(line, "  # ");
        ck_assert_msg(origin != NULL, "no origin on '%s'", line);
        char want[600];
        snprintf(want, sizeof(want), "  # %s:", file);
        ck_assert_msg(strncmp(origin, want, strlen(want)) == 0, "not set in the shipped file: %s", line);
        int at = atoi(origin + strlen(want));
        ck_assert_msg(at >= 1 && at <= nlines && strchr(lines[at - 1], '#'),
                      "the shipped file does not document %s (line %d has no comment)", line, at);
    }
    ck_assert_int_ge(settings, 17);
    buf_free(&dump);
}
END_TEST

START_TEST(precedence_file_set_env)
{
    write_file("topics:\n  rewards: from-file\n  dlq: dlq-file\nkafka:\n  bootstrap.servers: \"h1:9092\"\n"
               "limits:\n  max_message_bytes: 2048\n");
    char *sets[] = {"topics.rewards=from-set", "kafka.client.id=abc"};
    char *env[] = {"FIDELIO_TOPICS_REWARDS=from-env", "FIDELIO_KAFKA_BOOTSTRAP_SERVERS=h2:9092", "PATH=/bin", NULL};
    ck_assert_msg(config_load(&cfg, path, sets, 2, env, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(cfg.topic_rewards, "from-set"); /* the command line beats the environment */
    ck_assert_str_eq(cfg.topic_dlq, "dlq-file");
    ck_assert_int_eq(cfg.max_message_bytes, 2048);
    ck_assert_int_eq(cfg.kafka_count, 2);
    ck_assert_str_eq(cfg.kafka[0].key, "bootstrap.servers");
    ck_assert_str_eq(cfg.kafka[0].value, "h2:9092"); /* the environment beats the file */
    ck_assert_str_eq(cfg.kafka[1].value, "abc");
    buf out = {0};
    ck_assert_int_eq(config_dump(&cfg, &out), 0);
    ck_assert_ptr_nonnull(strstr(out.data, "topics.rewards: \"from-set\"  # --set"));
    ck_assert_ptr_nonnull(strstr(out.data, "kafka.bootstrap.servers: \"h2:9092\"  # environment FIDELIO_KAFKA_BOOTSTRAP_SERVERS"));
    ck_assert_ptr_nonnull(strstr(out.data, "topics.dlq: \"dlq-file\"  # /tmp/fidelio-test-"));
    buf_free(&out);
}
END_TEST

/* Each bad file: the message must carry "path:line" and the key. */
START_TEST(file_errors_name_line_and_key)
{
    static const struct {
        const char *text;
        int line;
        const char *key;
    } cases[] = {
        {"topics:\n  touchpoints: a\n  rewardz: b\n", 3, "topics.rewardz"},
        {"limits:\n  max_message_bytes: lots\n", 2, "limits.max_message_bytes"},
        {"\n\nlimits:\n  max_message_bytes: 1\n", 4, "limits.max_message_bytes"},
        {"redis:\n  url: http://x\n", 2, "redis.url"},
        {"redis:\n  key_prefix: \"a{b}\"\n", 2, "redis.key_prefix"},
        {"log:\n  level: loud\n", 2, "log.level"},
        {"topics:\n  dlq: \"has space\"\n", 2, "topics.dlq"},
        {"topics:\n  dlq:\n", 2, "topics.dlq"},
        {"topics:\n  dlq: [a, b]\n", 2, "topics.dlq"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_file(cases[i].text);
        ck_assert_int_eq(config_load(&cfg, path, NULL, 0, NULL, err, sizeof(err)), -1);
        char want[128];
        snprintf(want, sizeof(want), "%s:%d:", path, cases[i].line);
        ck_assert_msg(strstr(err, want) != NULL, "case %zu: '%s' lacks '%s'", i, err, want);
        ck_assert_msg(strstr(err, cases[i].key) != NULL, "case %zu: '%s' lacks key %s", i, err, cases[i].key);
        teardown();
    }
}
END_TEST

START_TEST(yaml_syntax_error_names_line)
{
    write_file("topics:\n  rewards: a\n bad: [\n");
    ck_assert_int_eq(config_load(&cfg, path, NULL, 0, NULL, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, path));
    ck_assert_ptr_nonnull(strstr(err, "YAML error"));
}
END_TEST

START_TEST(missing_file)
{
    ck_assert_int_eq(config_load(&cfg, "/nonexistent/fidelio.yaml", NULL, 0, NULL, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/fidelio.yaml"));
}
END_TEST

START_TEST(set_and_env_errors)
{
    char *sets[] = {"nokey"};
    ck_assert_int_eq(config_load(&cfg, NULL, sets, 1, NULL, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "--set nokey"));
    config_free(&cfg);
    char *sets2[] = {"http.port=70000"};
    ck_assert_int_eq(config_load(&cfg, NULL, sets2, 1, NULL, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "'http.port'"));
    ck_assert_ptr_nonnull(strstr(err, "outside 0..65535"));
    config_free(&cfg);
    char *env[] = {"FIDELIO_TOPICS_NOPE=x", NULL};
    ck_assert_int_eq(config_load(&cfg, NULL, NULL, 0, env, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "FIDELIO_TOPICS_NOPE"));
}
END_TEST

START_TEST(secrets_masked)
{
    char *sets[] = {"kafka.sasl.password=hunter2", "redis.url=redis://:s3cret@db:6380/1", "kafka.sasl.username=bob"};
    ck_assert_int_eq(config_load(&cfg, NULL, sets, 3, NULL, err, sizeof(err)), 0);
    buf out = {0};
    ck_assert_int_eq(config_dump(&cfg, &out), 0);
    ck_assert_ptr_null(strstr(out.data, "hunter2"));
    ck_assert_ptr_null(strstr(out.data, "s3cret"));
    ck_assert_ptr_nonnull(strstr(out.data, "redis://:***@db:6380/1"));
    ck_assert_ptr_nonnull(strstr(out.data, "bob"));
    buf_free(&out);
}
END_TEST

START_TEST(secrets_masked_by_rule)
{
    /* a named ACL user keeps its name, loses its password; every secret-looking
     * key is masked by the rule, including ones no list names */
    char *sets[] = {"redis.url=unix://fidelio:pw-unix-1@/run/redis.sock",
                    "kafka.sasl.oauthbearer.config=clientId=app clientSecret=oauth-sec-2 scope=x",
                    "kafka.ssl.key.password=keypw-3",
                    "kafka.ssl.key.pem=pem-4",
                    "kafka.sasl.jaas.config=jaas-5",
                    "kafka.ssl.keystore.password=ks-6",
                    "kafka.some.future_secret=fs-7",
                    "kafka.credits.hmac_key=hk-8",
                    "kafka.client.id=visible-client"};
    ck_assert_int_eq(config_load(&cfg, NULL, sets, 9, NULL, err, sizeof(err)), 0);
    buf out = {0};
    ck_assert_int_eq(config_dump(&cfg, &out), 0);
    const char *secrets[] = {"pw-unix-1", "oauth-sec-2", "keypw-3", "pem-4", "jaas-5", "ks-6", "fs-7", "hk-8"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        ck_assert_msg(!strstr(out.data, secrets[i]), "%s printed:\n%s", secrets[i], out.data);
    ck_assert_ptr_nonnull(strstr(out.data, "unix://fidelio:***@/run/redis.sock"));
    ck_assert_ptr_nonnull(strstr(out.data, "visible-client"));
    ck_assert_ptr_nonnull(strstr(out.data, "redis.key_prefix: \"fidelio:\""));
    buf_free(&out);
    /* the rule itself, on names no setting has yet */
    ck_assert(config_is_secret("credits.hmac_key"));
    ck_assert(config_is_secret("credits.key"));
    ck_assert(config_is_secret("credits.hmac"));
    ck_assert(config_is_secret("x.api-key"));
    ck_assert(config_is_secret("x.accessToken"));
    ck_assert(!config_is_secret("redis.key_prefix"));
    ck_assert(!config_is_secret("topics.credits"));
}
END_TEST

Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, secrets_masked_by_rule);
    tcase_add_test(tc, shipped_file_loads);
    tcase_add_test(tc, shipped_file_documents_every_setting);
    tcase_add_test(tc, precedence_file_set_env);
    tcase_add_test(tc, file_errors_name_line_and_key);
    tcase_add_test(tc, yaml_syntax_error_names_line);
    tcase_add_test(tc, missing_file);
    tcase_add_test(tc, set_and_env_errors);
    tcase_add_test(tc, secrets_masked);
    suite_add_tcase(s, tc);
    return s;
}
