/* Operations without a server: the Prometheus text format of the metrics
 * registry, librdkafka statistics to lag gauges, health, the report's deltas
 * of one apply, the logger (JSON lines, rate limit), and the ages' histogram
 * of log.level=debug (latency.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "latency.h"
#include "log.h"
#include "metrics.h"
#include "profile.h"
#include "program.h"
#include "report.h"
#include "test_common.h"

/* Render the registry into a fresh string (caller frees). */
static char *render(void)
{
    buf b = {0};
    ck_assert_int_eq(metrics_render(&b), 0);
    return b.data;
}

START_TEST(prometheus_text_format)
{
    metrics_reset();
    metrics_add(M_REWARDS, 2, "welcome", "EARN");
    metrics_add(M_REWARDS, 3, "welcome", "EARN");
    metrics_add(M_EVENTS_DLQ, 1, "touchpoint", "a\"b\\c\nd");
    metrics_observe(M_APPLY_SECONDS, 0.003);
    metrics_observe(M_APPLY_SECONDS, 0.2);
    metrics_observe(M_APPLY_SECONDS, 100);
    char *t = render();
    ck_assert_ptr_nonnull(strstr(t, "# TYPE fidelio_rewards_total counter\n"));
    ck_assert_ptr_nonnull(strstr(t, "fidelio_rewards_total{rule=\"welcome\",kind=\"EARN\"} 5\n"));
    /* label values escaped as the format says */
    ck_assert_ptr_nonnull(strstr(t, "fidelio_events_dlq_total{input=\"touchpoint\",reason=\"a\\\"b\\\\c\\nd\"} 1\n"));
    /* histogram: cumulative buckets, +Inf equals the count, sum */
    ck_assert_ptr_nonnull(strstr(t, "fidelio_apply_seconds_bucket{le=\"0.0025\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(t, "fidelio_apply_seconds_bucket{le=\"0.005\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "fidelio_apply_seconds_bucket{le=\"0.25\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "fidelio_apply_seconds_bucket{le=\"60\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "fidelio_apply_seconds_bucket{le=\"+Inf\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "fidelio_apply_seconds_count 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "fidelio_apply_seconds_sum 100.203"));
    /* a family without labels shows its zero before any update */
    ck_assert_ptr_nonnull(strstr(t, "fidelio_events_duplicate_total 0\n"));
    /* every line is a comment or "name{labels} value" */
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n"))
        ck_assert_msg(line[0] == '#' || strncmp(line, "fidelio_", 8) == 0 || strncmp(line, "process_", 8) == 0,
                      "bad line: %s", line);
    free(t);
}
END_TEST

START_TEST(kafka_statistics_to_lag)
{
    metrics_reset();
    const char *stats =
        "{\"name\":\"c\",\"topics\":{\"touchpoints\":{\"partitions\":{"
        "\"0\":{\"partition\":0,\"fetch_state\":\"active\",\"consumer_lag\":42},"
        "\"1\":{\"partition\":1,\"fetch_state\":\"active\",\"consumer_lag\":-1},"
        "\"2\":{\"partition\":2,\"fetch_state\":\"none\",\"consumer_lag\":7},"
        "\"-1\":{\"partition\":-1,\"fetch_state\":\"none\",\"consumer_lag\":-1}}}}}";
    ck_assert_int_eq(metrics_kafka_stats(stats, strlen(stats)), 0);
    char *t = render();
    ck_assert_ptr_nonnull(strstr(t, "fidelio_consumer_lag_messages{topic=\"touchpoints\",partition=\"0\"} 42\n"));
    ck_assert_ptr_null(strstr(t, "partition=\"1\""));  /* lag not known yet */
    ck_assert_ptr_null(strstr(t, "partition=\"2\""));  /* not fetched by this instance */
    ck_assert_ptr_null(strstr(t, "partition=\"-1\""));
    free(t);
    /* a partition gone from the statistics (revoked) loses its series */
    const char *later = "{\"topics\":{}}";
    ck_assert_int_eq(metrics_kafka_stats(later, strlen(later)), 0);
    t = render();
    ck_assert_ptr_null(strstr(t, "partition=\"0\""));
    free(t);
    ck_assert_int_eq(metrics_kafka_stats("{not json", 9), -1);
}
END_TEST

START_TEST(health)
{
    char why[64];
    metrics_reset();
    ck_assert(!metrics_alive(1000, NULL)); /* the loop has not run */
    metrics_heartbeat();
    ck_assert(metrics_alive(1000, NULL));
    metrics_set(M_REDIS_UP, 1);
    metrics_expect_partitions(true);
    ck_assert(!metrics_ready(why, sizeof(why)));
    ck_assert_str_eq(why, "no partitions assigned");
    metrics_set(M_ASSIGNED, 3);
    ck_assert(metrics_ready(why, sizeof(why)));
    metrics_set(M_REDIS_UP, 0);
    ck_assert(!metrics_ready(why, sizeof(why)));
    ck_assert_str_eq(why, "redis unreachable");
}
END_TEST

/* The field -> delta map of d. */
static long long delta(const report_deltas *d, const char *field)
{
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->argv[2 * i], field))
            return atoll(d->argv[2 * i + 1]);
    return 0;
}

START_TEST(report_deltas_of_an_apply)
{
    static program prog;
    char err[512];
    ck_assert_int_eq(program_load(&prog, NULL, err, sizeof(err)), 0);
    int lc = program_ladder_index(&prog, "lifecycle"), tier = program_ladder_index(&prog, "tier");
    ck_assert_int_ge(lc, 0);
    profile before, after;
    profile_init(&before, "c1");
    profile_init(&after, "c1");
    after.stage[lc] = 1;
    after.stage[tier] = 0;
    after.balance = after.lifetime_earned = 100;
    after.score[QUADRANT_USER] = 1.0;
    report_before b;
    report_capture(&before, false, &b);
    static engine_output out;
    memset(&out, 0, sizeof(out));
    out.nrewards = 1;
    snprintf(out.rewards[0].rule_id, sizeof(out.rewards[0].rule_id), "welcome");
    out.rewards[0].kind = REWARD_EARN;
    out.rewards[0].points = 100;
    out.rewards[0].occurred_at = INT64_C(1786190400000); /* 2026-08-08T12:00:00Z */
    report_deltas d = {0};
    ck_assert_int_eq(report_compute(&prog, &b, &after, &out, "SIGNUP", &d), 0);
    ck_assert_int_eq(delta(&d, "customers"), 1);
    ck_assert_int_eq(delta(&d, "events|SIGNUP"), 1);
    ck_assert_int_eq(delta(&d, "persona|user"), 1);
    char f[200];
    snprintf(f, sizeof(f), "stage|lifecycle|%s", prog.ladders[lc].stages[1].name);
    ck_assert_int_eq(delta(&d, f), 1);
    snprintf(f, sizeof(f), "stage|tier|%s", prog.ladders[tier].stages[0].name);
    ck_assert_int_eq(delta(&d, f), 1);
    ck_assert_int_eq(delta(&d, "points|issued"), 100);
    ck_assert_int_eq(delta(&d, "points|balance"), 100);
    ck_assert_int_eq(delta(&d, "rule|welcome|EARN|n"), 1);
    ck_assert_int_eq(delta(&d, "rule|welcome|EARN|points"), 100);
    ck_assert_int_eq(delta(&d, "day|2026-08-08|welcome"), 100);
    /* nothing that did not change is sent */
    for (int i = 0; i < d.n; i++)
        ck_assert_str_ne(d.argv[2 * i + 1], "0");
    ck_assert_int_eq(delta(&d, "points|redeemed"), 0);
    /* the same deltas feed the process metrics */
    double rw = metrics_value(M_REWARDS, "welcome", "EARN"), pts = metrics_value(M_REWARD_POINTS, "welcome", "EARN"),
           ev = metrics_value(M_EVENTS_APPLIED, "SIGNUP"),
           st = metrics_value(M_STAGE_CHANGES, "lifecycle", prog.ladders[lc].stages[1].name);
    report_deltas_to_metrics(&d);
    ck_assert(metrics_value(M_REWARDS, "welcome", "EARN") == rw + 1);
    ck_assert(metrics_value(M_REWARD_POINTS, "welcome", "EARN") == pts + 100);
    ck_assert(metrics_value(M_EVENTS_APPLIED, "SIGNUP") == ev + 1);
    ck_assert(metrics_value(M_STAGE_CHANGES, "lifecycle", prog.ladders[lc].stages[1].name) == st + 1);

    /* the next event: an existing customer moving up a stage, persona changes */
    profile next;
    profile_init(&next, "c1");
    next = after;
    next.stage[lc] = 2;
    next.score[QUADRANT_BUYER] = 5.0;
    report_capture(&after, true, &b);
    memset(&out, 0, sizeof(out));
    ck_assert_int_eq(report_compute(&prog, &b, &next, &out, "PURCHASE", &d), 0);
    ck_assert_int_eq(delta(&d, "customers"), 0);
    snprintf(f, sizeof(f), "stage|lifecycle|%s", prog.ladders[lc].stages[1].name);
    ck_assert_int_eq(delta(&d, f), -1);
    snprintf(f, sizeof(f), "stage|lifecycle|%s", prog.ladders[lc].stages[2].name);
    ck_assert_int_eq(delta(&d, f), 1);
    ck_assert_int_eq(delta(&d, "persona|user"), -1);
    ck_assert_int_eq(delta(&d, "persona|buyer"), 1);
    /* leaving a stage is not a stage change in the metrics; a reversal's points count positive */
    st = metrics_value(M_STAGE_CHANGES, "lifecycle", prog.ladders[lc].stages[1].name);
    out.nrewards = 1;
    snprintf(out.rewards[0].rule_id, sizeof(out.rewards[0].rule_id), "purchase");
    out.rewards[0].kind = REWARD_REVERSAL;
    out.rewards[0].points = -40;
    out.rewards[0].occurred_at = INT64_C(1786190400000);
    ck_assert_int_eq(report_compute(&prog, &b, &next, &out, "REFUND", &d), 0);
    ck_assert_int_eq(delta(&d, "rule|purchase|REVERSAL|points"), -40);
    ck_assert_int_eq(delta(&d, "day|2026-08-08|purchase"), -40);
    rw = metrics_value(M_REWARDS, "purchase", "REVERSAL");
    pts = metrics_value(M_REWARD_POINTS, "purchase", "REVERSAL");
    report_deltas_to_metrics(&d);
    ck_assert(metrics_value(M_REWARDS, "purchase", "REVERSAL") == rw + 1);
    ck_assert(metrics_value(M_REWARD_POINTS, "purchase", "REVERSAL") == pts + 40);
    ck_assert(metrics_value(M_STAGE_CHANGES, "lifecycle", prog.ladders[lc].stages[1].name) == st);
    report_deltas_free(&d);
    program_free(&prog);
}
END_TEST

/* Point d at n (field, delta) pairs (the numbers' text is not read by the metrics). */
static void hand_deltas(report_deltas *d, const char *const *fields, const long long *vals, int n)
{
    memset(d, 0, sizeof(*d));
    for (int i = 0; i < n; i++) {
        d->argv[2 * i] = fields[i];
        d->argv[2 * i + 1] = "?";
        d->val[i] = vals[i];
    }
    d->n = n;
}

/* A batch's deltas summed per series (report_metrics) make the same metrics,
 * series in the same order, as feeding them event by event; more series than
 * fit are flushed on the way. */
START_TEST(batch_metrics_equal_per_event_metrics)
{
    enum { NEV = 40, PER = 12 };
    static char fields[NEV][PER][64];
    static const char *fp[NEV][PER];
    static long long vals[NEV][PER];
    static report_deltas d[NEV];
    for (int e = 0; e < NEV; e++) {
        const char *type = e % 3 ? "PURCHASE" : "REFUND";
        int k = 0;
        snprintf(fields[e][k], 64, "events|%s", type), vals[e][k++] = 1;
        snprintf(fields[e][k], 64, "customers"), vals[e][k++] = 1;
        snprintf(fields[e][k], 64, "stage|tier|%s", e % 2 ? "gold" : "silver"), vals[e][k++] = e % 2 ? 1 : -1;
        snprintf(fields[e][k], 64, "points|balance"), vals[e][k++] = 10 * e;
        for (int r = 0; r < 4; r++) { /* 40 x 4 distinct rules x 2 series: more than report_metrics holds */
            snprintf(fields[e][k], 64, "rule|r%d|%s|n", e * 4 + r, e % 3 ? "EARN" : "REVERSAL"), vals[e][k++] = 1;
            snprintf(fields[e][k], 64, "rule|r%d|%s|points", e * 4 + r, e % 3 ? "EARN" : "REVERSAL"),
                vals[e][k++] = e % 3 ? 5 + e : -(5 + e);
        }
        for (int i = 0; i < k; i++)
            fp[e][i] = fields[e][i];
        hand_deltas(&d[e], fp[e], vals[e], k);
    }
    /* series repeated across events: r4 EARN (event 1), PURCHASE */
    static const char *again_f[] = {"rule|r4|EARN|n", "rule|r4|EARN|points", "events|PURCHASE"};
    static const long long again_v[] = {1, 7, 1};
    report_deltas again;
    hand_deltas(&again, again_f, again_v, 3);

    metrics_reset();
    for (int e = 0; e < NEV; e++)
        report_deltas_to_metrics(&d[e]);
    report_deltas_to_metrics(&again);
    char *per_event = render();
    double earn_r4 = metrics_value(M_REWARD_POINTS, "r4", "EARN"), rev_r0 = metrics_value(M_REWARD_POINTS, "r0", "REVERSAL");

    metrics_reset();
    report_metrics m = {0};
    for (int e = 0; e < NEV; e++)
        report_metrics_add(&m, &d[e]);
    report_metrics_add(&m, &again);
    report_metrics_flush(&m);
    char *batched = render();
    ck_assert_str_eq(batched, per_event);
    ck_assert(earn_r4 == 6 + 7);
    ck_assert(rev_r0 == 5); /* a reversal's points count positive */
    ck_assert(metrics_value(M_REWARDS, "r4", "EARN") == 2);
    ck_assert(metrics_value(M_EVENTS_APPLIED, "PURCHASE") == 1 + NEV - (NEV + 2) / 3);
    ck_assert(metrics_value(M_STAGE_CHANGES, "tier", "gold") == NEV / 2);
    ck_assert(metrics_value(M_STAGE_CHANGES, "tier", "silver") == 0); /* leaving a stage is not a change */
    ck_assert_ptr_null(strstr(batched, "silver"));
    free(per_event);
    free(batched);
}
END_TEST

/* Capture what the logger writes to stderr while fn runs. */
static char *capture_stderr(void (*fn)(void))
{
    char path[] = "/tmp/fidelio-log-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)n + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(pread(fd, text, (size_t)n, 0), n);
    close(fd);
    unlink(path);
    return text;
}

static void json_lines(void)
{
    log_set_format(LOG_FORMAT_JSON);
    log_set_rate_limit(10, 10);
    log_warn("a \"quoted\" value\nand a control byte \x01 in %s", "a line");
    log_set_format(LOG_FORMAT_TEXT);
}

START_TEST(log_json_lines)
{
    char *t = capture_stderr(json_lines);
    ck_assert_int_eq((int)(strchr(t, '\n') - t) + 1, (int)strlen(t)); /* exactly one line */
    json_error_t je;
    json_t *o = json_loads(t, 0, &je);
    ck_assert_msg(o != NULL, "not JSON: %s (%s)", t, je.text);
    ck_assert_str_eq(json_string_value(json_object_get(o, "level")), "warn");
    ck_assert_str_eq(json_string_value(json_object_get(o, "msg")),
                     "a \"quoted\" value\nand a control byte \x01 in a line");
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(o, "src")), "test_ops.c:"));
    ck_assert_ptr_nonnull(json_string_value(json_object_get(o, "ts")));
    json_decref(o);
    free(t);
}
END_TEST

static void flood(void)
{
    log_set_rate_limit(10, 10);
    for (int i = 0; i < 25; i++)
        log_warn("the same trouble again (%d)", i);
    log_info("another call site still prints");
}

static void flood_one_site(void)
{
    log_set_rate_limit(10, 1);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 25; i++)
            log_warn("the same trouble again (%d)", i);
        if (round == 0)
            sleep(2);
    }
    log_set_rate_limit(10, 10);
}

START_TEST(log_rate_limit)
{
    char *t = capture_stderr(flood);
    int lines = 0;
    for (char *p = t; (p = strstr(p, "the same trouble again")); p++)
        lines++;
    ck_assert_int_eq(lines, 10); /* 10 of the 25 */
    ck_assert_ptr_nonnull(strstr(t, "another call site still prints"));
    free(t);
    t = capture_stderr(flood_one_site);
    lines = 0;
    for (char *p = t; (p = strstr(p, "the same trouble again")); p++)
        lines++;
    ck_assert_int_eq(lines, 20); /* 10 per window */
    ck_assert_msg(strstr(t, "15 similar line(s) from here were suppressed") != NULL, "%s", t);
    free(t);
}
END_TEST

/* The ages' histogram (log.level=debug, where an input's time goes): its
 * quantiles fall within a bucket (1 ms below 100 ms, 5% above) of the exact
 * ones, whatever the order of the observations. */
START_TEST(latency_quantiles_within_a_bucket)
{
    latency_hist h;
    latency_reset(&h);
    ck_assert_int_eq(latency_quantile(&h, 0.5), 0); /* empty */
    /* 1..20000 ms in a scattered order (7919 is prime, so every value once) */
    for (int64_t i = 0; i < 20000; i++)
        latency_add(&h, (i * 7919) % 20000 + 1);
    ck_assert_int_eq(h.n, 20000);
    int64_t p50 = latency_quantile(&h, 0.5), p99 = latency_quantile(&h, 0.99);
    ck_assert_msg(p50 >= 10000 && p50 <= 10500, "p50 %lld", (long long)p50);
    ck_assert_msg(p99 >= 19800 && p99 <= 19800 * 105 / 100, "p99 %lld", (long long)p99);
    latency_reset(&h);
    for (int i = 0; i < 99; i++)
        latency_add(&h, 40); /* below 100 ms: exact */
    latency_add(&h, -3);     /* clocks a little apart: counted as 0 */
    ck_assert_int_eq(latency_quantile(&h, 0.5), 40);
    ck_assert_int_eq(latency_quantile(&h, 0.001), 0);
    latency_add(&h, INT64_C(86400000)); /* a day: the last bucket, not past it */
    ck_assert_int_ge(latency_quantile(&h, 1.0), 600000);
}
END_TEST

Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, prometheus_text_format);
    tcase_add_test(tc, kafka_statistics_to_lag);
    tcase_add_test(tc, health);
    tcase_add_test(tc, report_deltas_of_an_apply);
    tcase_add_test(tc, batch_metrics_equal_per_event_metrics);
    tcase_add_test(tc, log_json_lines);
    tcase_add_test(tc, log_rate_limit);
    tcase_add_test(tc, latency_quantiles_within_a_bucket);
    suite_add_tcase(s, tc);
    return s;
}
