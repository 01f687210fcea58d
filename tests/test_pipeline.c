/* Pipeline: no lost output (DESIGN.md invariant 3). With every Produce
 * request failing, a run applies the seeds in Redis but cannot deliver their
 * outputs: it must fail without committing a single offset. A second run,
 * with Kafka healthy, finds every event applied and re-emits the recorded
 * outputs: the output topics then hold exactly `fidelio simulate`'s outputs
 * and the profiles equal its profiles. In-process mock cluster (its Produce
 * error injection) and a real redis-server. */
#include <pthread.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "kafka.h"
#include "pipeline.h"
#include "redis_fixture.h"
#include "sim.h"
#include "store.h"
#include "stream.h"
#include "test_common.h"

#define SEEDS SOURCE_DIR "/seeds/demo.jsonl"

typedef struct collected {
    long long n;
    buf ids; /* "id\n" per output */
} collected;

static int collect(const rd_kafka_message_t *m, const codec_record *rec, const char *json, void *opaque)
{
    (void)m;
    (void)json;
    collected *c = opaque;
    c->n++;
    buf_puts(&c->ids, rec->schema == SCHEMA_REWARD ? rec->reward.reward_id : rec->stage.change_id);
    buf_puts(&c->ids, "\n");
    return 0;
}

static int cmp_line(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted distinct lines of text, joined by '\n'. */
static char *distinct_sorted(char *text, size_t *count)
{
    size_t n = 0, cap = 1024;
    char **lines = malloc(cap * sizeof(*lines)), *save = NULL;
    for (char *t = strtok_r(text, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
        if (n == cap)
            lines = realloc(lines, (cap *= 2) * sizeof(*lines));
        lines[n++] = t;
    }
    qsort(lines, n, sizeof(*lines), cmp_line);
    buf out = {0};
    *count = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(lines[i], lines[i - 1])) {
            buf_puts(&out, lines[i]);
            buf_puts(&out, "\n");
            (*count)++;
        }
    free(lines);
    return out.data ? out.data : strdup("");
}

static void set(config *cfg, const char *k, const char *v)
{
    char err[512];
    ck_assert_msg(config_set(cfg, k, v, "test", err, sizeof(err)) == 0, "%s", err);
}

/* The set-up of the tests on the mock cluster: the default config and
 * program, an in-process mock cluster of one broker with `partitions`
 * partitions, this Redis, a group that rebalances quickly (the mock does so
 * only with these timeouts, DESIGN.md); with a name, its own key prefix
 * (inside the ACL user's keys) and consumer group. Returns the mock. */
static rd_kafka_t *start_on_mock(config *cfg, program *prog, rd_kafka_mock_cluster_t **mc, int partitions,
                                 const char *name)
{
    char err[1024];
    ck_assert(config_load(cfg, NULL, NULL, 0, NULL, err, sizeof(err)) == 0);
    ck_assert_msg(program_load(prog, NULL, err, sizeof(err)) == 0, "%s", err);
    rd_kafka_t *mock = kafka_mock_start(cfg, 1, partitions, mc, err, sizeof(err));
    ck_assert_msg(mock != NULL, "%s", err);
    set(cfg, "kafka.bootstrap.servers", rd_kafka_mock_cluster_bootstraps(*mc));
    set(cfg, "redis.url", redis_url);
    set(cfg, "kafka.session.timeout.ms", "6000");
    set(cfg, "kafka.heartbeat.interval.ms", "500");
    if (name) {
        char prefix[128];
        snprintf(prefix, sizeof(prefix), "%s%s:", REDIS_FIXTURE_PREFIX, name);
        set(cfg, "redis.key_prefix", prefix);
        set(cfg, "consumer.group", name);
    }
    return mock;
}

static void stop_on_mock(rd_kafka_t *mock, program *prog, config *cfg)
{
    rd_kafka_destroy(mock);
    program_free(prog);
    config_free(cfg);
}

/* The output topics hold exactly simulate's outputs over the seeds (ids; if
 * once, each exactly once) and the profiles in Redis equal its profiles:
 * nothing lost, nothing applied twice. */
static void expect_simulate(const config *cfg, const program *prog, bool once)
{
    char err[1024];
    FILE *in;
    sim *s = sim_new(prog);
    ck_assert_ptr_nonnull(s);
    in = fopen(SEEDS, "r");
    long long invalid;
    ck_assert_msg(sim_apply_jsonl(s, in, SEEDS, NULL, NULL, &invalid, err, sizeof(err)) == 0, "%s", err);
    fclose(in);
    ck_assert_int_eq(invalid, 0);
    ck_assert_int_eq(sim_get_stats(s)->rejected, 0);
    buf want = {0};
    collected got = {0};
    consume_stats cs;
    consume_opts co = {.offset = RD_KAFKA_OFFSET_BEGINNING, .exit_at_end = 1};
    co.topic = cfg->topic_rewards;
    co.schema = SCHEMA_REWARD;
    ck_assert(consume_stream(cfg, &co, collect, &got, &cs, err, sizeof(err)) == 0);
    co.topic = cfg->topic_stage_changes;
    co.schema = SCHEMA_STAGE_CHANGE;
    ck_assert(consume_stream(cfg, &co, collect, &got, &cs, err, sizeof(err)) == 0);
    size_t distinct;
    char *ids = distinct_sorted(got.ids.data, &distinct);
    const sim_stats *ss = sim_get_stats(s);
    ck_assert_int_eq((long long)distinct, ss->rewards + ss->stage_changes);
    if (once)
        ck_assert_int_eq(got.n, (long long)distinct); /* nothing reached the topics in the failed run */
    free(ids);
    buf_free(&got.ids);

    store *stor = store_open(cfg->redis_url, cfg->key_prefix, cfg->dedupe_retention_ms, 0, err, sizeof(err));
    ck_assert_ptr_nonnull(stor);
    size_t np;
    const profile **all = sim_profiles(s, &np);
    ck_assert_int_eq(np, 50);
    for (size_t i = 0; i < np; i++) {
        store_profile sp = {.customer_id = all[i]->customer_id};
        ck_assert(store_fetch(stor, &sp, 1, NULL, 0, err, sizeof(err)) == 0);
        buf_reset(&want);
        ck_assert(profile_encode(all[i], prog, &want) == 0);
        ck_assert_msg(sp.exists && sp.encoding.len == want.len && !memcmp(sp.encoding.data, want.data, want.len),
                      "profile of %s differs from simulate's", all[i]->customer_id);
        store_profile_free(&sp);
    }
    free(all);
    buf_free(&want);
    store_close(stor);
    sim_free(s);
}

START_TEST(no_output_lost_when_kafka_fails_after_redis_applied)
{
    char err[1024];
    config cfg;
    program prog;
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *mock = start_on_mock(&cfg, &prog, &mc, 6, NULL);
    /* one batch holds all 317 events however slowly they arrive (a loaded
     * machine): the first run applies every event in Redis before it fails
     * to deliver, which is what this test is about */
    set(&cfg, "pipeline.batch_size", "317");
    set(&cfg, "pipeline.batch_linger_ms", "10000");
    set(&cfg, "kafka.message.timeout.ms", "5000");

    FILE *in = fopen(SEEDS, "r");
    ck_assert_ptr_nonnull(in);
    produce_opts po = {.topic = cfg.topic_touchpoints, .schema = SCHEMA_TOUCHPOINT, .input_name = SEEDS};
    produce_stats ps;
    ck_assert_msg(produce_stream(&cfg, in, &po, &ps, err, sizeof(err)) == 0, "%s", err);
    fclose(in);
    ck_assert_int_eq(ps.sent, 317);

    /* every Produce request from now on fails */
    static rd_kafka_resp_err_t errs[5000];
    for (size_t i = 0; i < 5000; i++)
        errs[i] = RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
    rd_kafka_mock_push_request_errors_array(mc, 0 /* Produce */, 5000, errs);
    pipeline_opts opts = {.until_idle = true, .idle_grace_ms = 1000};
    pipeline_stats st;
    int rc = pipeline_run(&cfg, &prog, &opts, &st, err, sizeof(err));
    ck_assert_msg(rc == -1, "the run succeeded although no output could be delivered");
    ck_assert_msg(strstr(err, "could not be delivered") != NULL, "error: %s", err);
    ck_assert_msg(strstr(err, "Topic authorization failed") != NULL, "the cause is not named: %s", err);

    /* nothing was committed: a restart reads every event again */
    rd_kafka_conf_t *conf = kafka_conf_new(&cfg, err, sizeof(err));
    ck_assert_ptr_nonnull(conf);
    ck_assert(kafka_conf_set(conf, "group.id", cfg.consumer_group, err, sizeof(err)) == 0);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    ck_assert_ptr_nonnull(c);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(6);
    for (int p = 0; p < 6; p++)
        rd_kafka_topic_partition_list_add(parts, cfg.topic_touchpoints, p);
    ck_assert_int_eq(rd_kafka_committed(c, parts, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int p = 0; p < 6; p++)
        ck_assert_msg(parts->elems[p].offset < 0, "partition %d committed at %lld", p,
                      (long long)parts->elems[p].offset);
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);

    /* Kafka healthy again: the second run finds every event applied and re-emits */
    rd_kafka_mock_clear_request_errors(mc, 0);
    rc = pipeline_run(&cfg, &prog, &opts, &st, err, sizeof(err));
    ck_assert_msg(rc == 0, "second run: %s", err);
    ck_assert_int_eq(st.touchpoints, 0);
    ck_assert_int_ge(st.duplicates, 317);

    expect_simulate(&cfg, &prog, true);
    rd_kafka_mock_cluster_destroy(mc);
    stop_on_mock(mock, &prog, &cfg);
}
END_TEST

/* Issue 10, pipelined batches: a batch's outputs in flight do not hold up
 * the next batches (read, decided and applied meanwhile), and no offset is
 * committed past an unacknowledged output, neither that batch's nor a later
 * batch's whose outputs were acknowledged. The DLQ topic has no leader, so
 * the batch holding the one bad message cannot be delivered while the
 * batches after it deliver their rewards; the run stops after three failed
 * deliveries, as a crash would, with later batches applied in Redis and
 * uncommitted. The next run (Kafka healthy) finds them applied, re-emits
 * their recorded outputs: nothing lost, nothing applied twice. */
static void commit_stops_at_an_unacknowledged_batch(const char *namespace, const char *output_producers)
{
    char err[1024];
    config cfg;
    program prog;
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *mock = start_on_mock(&cfg, &prog, &mc, 1, namespace);
    set(&cfg, "pipeline.output_producers", output_producers);
    set(&cfg, "pipeline.batch_size", "10");
    set(&cfg, "pipeline.batch_linger_ms", "5000"); /* full batches however slowly messages come */
    set(&cfg, "kafka.message.timeout.ms", "3000");

    /* seeds 1-100, one message that is not Avro (offset 100: a DLQ record), seeds 101-317 */
    FILE *in = fopen(SEEDS, "r");
    ck_assert_ptr_nonnull(in);
    buf head = {0}, rest = {0};
    char line[8192];
    for (int n = 0; fgets(line, sizeof(line), in); n++)
        buf_puts(n < 100 ? &head : &rest, line);
    fclose(in);
    produce_opts po = {.topic = cfg.topic_touchpoints, .schema = SCHEMA_TOUCHPOINT, .input_name = SEEDS};
    produce_stats ps;
    FILE *part = fmemopen(head.data, head.len, "r");
    ck_assert_msg(produce_stream(&cfg, part, &po, &ps, err, sizeof(err)) == 0, "%s", err);
    fclose(part);
    ck_assert_int_eq(ps.sent, 100);
    kafka_delivery dr = {0};
    rd_kafka_t *p = kafka_producer_new(&cfg, &dr, err, sizeof(err));
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(kafka_produce(p, cfg.topic_touchpoints, "bad", 3, "not avro", 8, NULL, NULL), 0);
    ck_assert_int_eq(rd_kafka_flush(p, 10000), 0);
    ck_assert_int_eq(dr.delivered, 1);
    rd_kafka_destroy(p);
    part = fmemopen(rest.data, rest.len, "r");
    ck_assert_msg(produce_stream(&cfg, part, &po, &ps, err, sizeof(err)) == 0, "%s", err);
    fclose(part);
    ck_assert_int_eq(ps.sent, 217);
    buf_free(&head);
    buf_free(&rest);

    /* the DLQ cannot take anything: the batch at offset 100 stays unacknowledged */
    ck_assert_int_eq(rd_kafka_mock_partition_set_leader(mc, cfg.topic_dlq, 0, -1), 0);
    pipeline_opts opts = {.until_idle = true, .idle_grace_ms = 1000};
    pipeline_stats st;
    int rc = pipeline_run(&cfg, &prog, &opts, &st, err, sizeof(err));
    ck_assert_msg(rc == -1, "the run succeeded although a batch could not be delivered");
    ck_assert_msg(strstr(err, "could not be delivered") != NULL, "error: %s", err);
    /* the batches after the stuck one were decided and applied meanwhile */
    ck_assert_msg(st.touchpoints >= 130, "only %lld events applied: the batches after the one in flight waited",
                  st.touchpoints);

    /* committed: the batches before the bad message, none after it */
    rd_kafka_conf_t *conf = kafka_conf_new(&cfg, err, sizeof(err));
    ck_assert_ptr_nonnull(conf);
    ck_assert(kafka_conf_set(conf, "group.id", cfg.consumer_group, err, sizeof(err)) == 0);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    ck_assert_ptr_nonnull(c);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, cfg.topic_touchpoints, 0);
    ck_assert_int_eq(rd_kafka_committed(c, parts, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    long long committed = parts->elems[0].offset;
    ck_assert_msg(committed <= 100, "committed at %lld, past the unacknowledged DLQ record at offset 100", committed);
    ck_assert_msg(committed >= 10, "committed at %lld: the acknowledged batches before it were not committed",
                  committed);
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);

    /* Kafka healthy again: the next run completes; nothing lost, nothing applied twice */
    ck_assert_int_eq(rd_kafka_mock_partition_set_leader(mc, cfg.topic_dlq, 0, 1), 0);
    long long applied_before = st.touchpoints;
    rc = pipeline_run(&cfg, &prog, &opts, &st, err, sizeof(err));
    ck_assert_msg(rc == 0, "second run: %s", err);
    ck_assert_int_eq(st.dlq, 1);
    ck_assert_int_eq(applied_before + st.touchpoints, 317);
    ck_assert_int_ge(st.duplicates, applied_before - committed);
    expect_simulate(&cfg, &prog, false);
    rd_kafka_mock_cluster_destroy(mc);
    stop_on_mock(mock, &prog, &cfg);
}

START_TEST(no_commit_past_an_unacknowledged_batch)
{
    commit_stops_at_an_unacknowledged_batch("overlap", "1");
}
END_TEST

/* The same with the outputs shared by two producers (pipeline.output_producers:
 * rewards and the DLQ through one, stage changes and credits through the
 * other): the later batches' stage changes are acknowledged by a producer that
 * never held the stuck DLQ record, and still nothing is committed past it. */
START_TEST(no_commit_past_an_unacknowledged_batch_of_two_producers)
{
    commit_stops_at_an_unacknowledged_batch("overlap2", "2");
}
END_TEST

/* Issue 10: a batch also ends at pipeline.batch_max_bytes (memory follows
 * the batch's bytes, not only its count): 200 events (25 bytes or more each)
 * with room for 500 messages but 1 KiB make at least 5 batches (one, and one
 * of credits, without the limit), every event applied. */
START_TEST(batch_ends_at_max_bytes)
{
    char err[1024];
    config cfg;
    program prog;
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *mock = start_on_mock(&cfg, &prog, &mc, 1, "bytes");
    set(&cfg, "pipeline.batch_size", "500");
    set(&cfg, "pipeline.batch_linger_ms", "5000");
    set(&cfg, "pipeline.batch_max_bytes", "1024");
    FILE *in = fopen(SEEDS, "r");
    ck_assert_ptr_nonnull(in);
    buf head = {0};
    char line[8192];
    for (int n = 0; n < 200 && fgets(line, sizeof(line), in); n++)
        buf_puts(&head, line);
    fclose(in);
    produce_opts po = {.topic = cfg.topic_touchpoints, .schema = SCHEMA_TOUCHPOINT, .input_name = SEEDS};
    produce_stats ps;
    FILE *part = fmemopen(head.data, head.len, "r");
    ck_assert_msg(produce_stream(&cfg, part, &po, &ps, err, sizeof(err)) == 0, "%s", err);
    fclose(part);
    buf_free(&head);
    ck_assert_int_eq(ps.sent, 200);
    pipeline_opts opts = {.until_idle = true, .idle_grace_ms = 1000};
    pipeline_stats st;
    ck_assert_msg(pipeline_run(&cfg, &prog, &opts, &st, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(st.touchpoints + st.duplicates, 200);
    ck_assert_msg(st.batches >= 5, "%lld batches: pipeline.batch_max_bytes did not end them", st.batches);
    rd_kafka_mock_cluster_destroy(mc);
    stop_on_mock(mock, &prog, &cfg);
}
END_TEST

/* Produce the seeds (317 events of 50 customers) to the touchpoints topic. */
static void produce_seeds(const config *cfg)
{
    char err[1024];
    FILE *in = fopen(SEEDS, "r");
    ck_assert_ptr_nonnull(in);
    produce_opts po = {.topic = cfg->topic_touchpoints, .schema = SCHEMA_TOUCHPOINT, .input_name = SEEDS};
    produce_stats ps;
    ck_assert_msg(produce_stream(cfg, in, &po, &ps, err, sizeof(err)) == 0, "%s", err);
    fclose(in);
    ck_assert_int_eq(ps.sent, 317);
}

/* Issue 10, the overlap of Redis and fidelio: batch n+1 is read, decoded and
 * its fetch sent while Redis runs batch n's applies. One partition and
 * batches of 4 spread each customer's events over consecutive batches, the
 * next one always read ahead. No other writer: a fetch read ahead must see
 * the applies of the batch before (Redis runs it after them), so no apply is
 * ever refused by the version check (a fetch sent before them would read a
 * stale version: fenced), and the profiles and outputs are simulate's. */
START_TEST(overlap_reads_what_the_batch_before_applied)
{
    char err[1024];
    config cfg;
    program prog;
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *mock = start_on_mock(&cfg, &prog, &mc, 1, "readahead");
    set(&cfg, "pipeline.batch_size", "4");
    set(&cfg, "pipeline.batch_linger_ms", "20");
    produce_seeds(&cfg);
    pipeline_opts opts = {.until_idle = true, .idle_grace_ms = 1000};
    pipeline_stats st;
    ck_assert_msg(pipeline_run(&cfg, &prog, &opts, &st, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(st.touchpoints, 317);
    ck_assert_msg(st.read_ahead > 0, "no batch was read ahead (%lld batches): the overlap was not exercised",
                  st.batches);
    ck_assert_msg(st.fenced == 0, "%lld applies fenced with no other writer (%lld of %lld batches read ahead)",
                  st.fenced, st.read_ahead, st.batches);
    expect_simulate(&cfg, &prog, true);
    rd_kafka_mock_cluster_destroy(mc);
    stop_on_mock(mock, &prog, &cfg);
}
END_TEST

/* Another writer of a profile, behind the pipeline's back: it raises the
 * version of :p (as an apply of another instance would) every few ms. */
typedef struct foreign {
    char key[256];
    volatile int stop;
    long long writes;
} foreign;

static void *foreign_writer(void *arg)
{
    foreign *f = arg;
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectUnixWithTimeout(redis_sock, tv);
    while (c && !c->err && !f->stop) {
        redisReply *r = redisCommand(c, "HINCRBY %s v 1", f->key);
        if (r && r->type == REDIS_REPLY_INTEGER)
            f->writes++;
        if (r)
            freeReplyObject(r);
        usleep(3000);
    }
    if (c)
        redisFree(c);
    return NULL;
}

/* The same with a foreign writer on the busiest customer (28 events): a
 * write landing between a fetch read ahead and the apply decided from it is
 * caught by the version check (fenced, decided again on the new state), so
 * the profiles are still simulate's (the writer changes only the version). */
START_TEST(overlap_still_fences_a_foreign_write)
{
    char err[1024];
    config cfg;
    program prog;
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *mock = start_on_mock(&cfg, &prog, &mc, 1, "foreignwriter");
    set(&cfg, "pipeline.batch_size", "4");
    set(&cfg, "pipeline.batch_linger_ms", "20");
    produce_seeds(&cfg);
    foreign f = {0};
    snprintf(f.key, sizeof(f.key), "%s{cust-0008}:p", cfg.key_prefix);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, foreign_writer, &f), 0);
    pipeline_opts opts = {.until_idle = true, .idle_grace_ms = 1000};
    pipeline_stats st;
    int rc = pipeline_run(&cfg, &prog, &opts, &st, err, sizeof(err));
    f.stop = 1;
    pthread_join(th, NULL);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_int_gt(f.writes, 0);
    ck_assert_int_eq(st.touchpoints, 317);
    ck_assert_int_gt(st.read_ahead, 0);
    ck_assert_msg(st.fenced > 0, "%lld foreign writes, none caught by the version check (%lld batches read ahead)",
                  f.writes, st.read_ahead);
    expect_simulate(&cfg, &prog, false);
    rd_kafka_mock_cluster_destroy(mc);
    stop_on_mock(mock, &prog, &cfg);
}
END_TEST

/* Produce one APP_USE of customer at event time `at` with the Kafka message
 * timestamp msg_ts (CreateTime, chosen by the producer). */
static void produce_at(rd_kafka_t *p, const config *cfg, codec *cd, const char *id, const char *customer, int64_t at,
                       int64_t msg_ts)
{
    char err[512];
    codec_record r = {.schema = SCHEMA_TOUCHPOINT};
    sample_touchpoint(&r.tp, EVENT_APP_USE, 0);
    snprintf(r.tp.event_id, sizeof(r.tp.event_id), "%s", id);
    snprintf(r.tp.customer_id, sizeof(r.tp.customer_id), "%s", customer);
    strcpy(r.tp.channel, "app");
    r.tp.occurred_at = at;
    buf b = {0};
    ck_assert_int_eq(codec_encode_avro(cd, SCHEMA_TOUCHPOINT, &r, &b, err, sizeof(err)), EVENT_OK);
    ck_assert_int_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(cfg->topic_touchpoints),
                                       RD_KAFKA_V_KEY(customer, strlen(customer)), RD_KAFKA_V_VALUE(b.data, b.len),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(msg_ts),
                                       RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    ck_assert_int_eq(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    buf_free(&b);
    codec_record_free(&r);
}

/* Issue 7 case 7: an event dated in year 9999 in a message whose (producer
 * chosen) timestamp is also in 9999 is refused (occurred_at_in_future): the
 * bound is the instance's clock, not the producer's; the customer's later
 * events are applied, not locked out as older_than_dedupe_window. */
START_TEST(forged_future_timestamp_refused)
{
    char err[1024];
    config cfg;
    program prog;
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *mock = start_on_mock(&cfg, &prog, &mc, 2, "future");
    kafka_delivery dr = {0};
    rd_kafka_t *p = kafka_producer_new(&cfg, &dr, err, sizeof(err));
    ck_assert_ptr_nonnull(p);
    codec *cd = codec_new(1 << 20, err, sizeof(err));
    ck_assert_ptr_nonnull(cd);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    const int64_t day = INT64_C(86400000), now_ms = (int64_t)now.tv_sec * 1000;
    const int64_t y9999 = INT64_C(253370764800000);
    produce_at(p, &cfg, cd, "own-1", "cust-f", now_ms - 40 * day, now_ms - 40 * day);
    produce_at(p, &cfg, cd, "forged", "cust-f", y9999, y9999);
    pipeline_opts opts = {.until_idle = true, .idle_grace_ms = 1000};
    pipeline_stats st;
    ck_assert_msg(pipeline_run(&cfg, &prog, &opts, &st, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(st.touchpoints, 1);
    ck_assert_int_eq(st.dlq, 1);
    /* the customer's next events (after the trim of that batch) are applied */
    produce_at(p, &cfg, cd, "own-2", "cust-f", now_ms - 2 * day, now_ms - 2 * day);
    ck_assert_msg(pipeline_run(&cfg, &prog, &opts, &st, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(st.touchpoints, 1);
    ck_assert_int_eq(st.dlq, 0);
    codec_free(cd);
    rd_kafka_destroy(p);
    rd_kafka_mock_cluster_destroy(mc);
    stop_on_mock(mock, &prog, &cfg);
}
END_TEST

/* The value of key in conf (a static buffer). */
static const char *conf_value(rd_kafka_conf_t *conf, const char *key)
{
    static char v[128];
    size_t n = sizeof(v);
    ck_assert(rd_kafka_conf_get(conf, key, v, &n) == RD_KAFKA_CONF_OK);
    return v;
}

/* The consumer's fetches wait for 64 KB or 25 ms (librdkafka: 1 byte, 500 ms;
 * Fidelio before: 1 byte, 100 ms): on a real broker a steady stream over 64
 * partitions was hundreds of fetches a second, each naming all 128 assigned
 * partitions (README Performance, latency). A kafka.* setting still wins. */
START_TEST(consumer_fetch_waits_for_64_kb_or_25_ms)
{
    config cfg;
    char err[512];
    ck_assert(config_load(&cfg, NULL, NULL, 0, NULL, err, sizeof(err)) == 0);
    rd_kafka_conf_t *conf = pipeline_consumer_conf(&cfg, NULL, err, sizeof(err));
    ck_assert_msg(conf, "%s", err);
    ck_assert_str_eq(conf_value(conf, "fetch.min.bytes"), "65536");
    ck_assert_str_eq(conf_value(conf, "fetch.wait.max.ms"), "25");
    ck_assert_str_eq(conf_value(conf, "group.id"), cfg.consumer_group);
    ck_assert_str_eq(conf_value(conf, "enable.auto.commit"), "false");
    rd_kafka_conf_destroy(conf);
    set(&cfg, "kafka.fetch.min.bytes", "1");
    set(&cfg, "kafka.fetch.wait.max.ms", "500");
    conf = pipeline_consumer_conf(&cfg, "replay-group", err, sizeof(err));
    ck_assert_msg(conf, "%s", err);
    ck_assert_str_eq(conf_value(conf, "fetch.min.bytes"), "1");
    ck_assert_str_eq(conf_value(conf, "fetch.wait.max.ms"), "500");
    ck_assert_str_eq(conf_value(conf, "group.id"), "replay-group");
    rd_kafka_conf_destroy(conf);
    config_free(&cfg);
}
END_TEST

Suite *pipeline_suite(void)
{
    redis_fixture_start();
    Suite *su = suite_create("pipeline");
    TCase *tc = tcase_create("pipeline");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, consumer_fetch_waits_for_64_kb_or_25_ms);
    tcase_add_test(tc, no_output_lost_when_kafka_fails_after_redis_applied);
    tcase_add_test(tc, forged_future_timestamp_refused);
    tcase_add_test(tc, no_commit_past_an_unacknowledged_batch);
    tcase_add_test(tc, no_commit_past_an_unacknowledged_batch_of_two_producers);
    tcase_add_test(tc, batch_ends_at_max_bytes);
    tcase_add_test(tc, overlap_reads_what_the_batch_before_applied);
    tcase_add_test(tc, overlap_still_fences_a_foreign_write);
    suite_add_tcase(su, tc);
    return su;
}
