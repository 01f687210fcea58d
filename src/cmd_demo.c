/* cmd_demo.c - `fidelio demo`: the whole system on built-in defaults, with
 * nothing to install or start by hand. An in-process Kafka-protocol broker
 * (librdkafka's mock cluster), a private redis-server child in a temp
 * directory, the demo seeds produced, `fidelio run`'s pipeline until every
 * event is processed, a summary, and a check that the Redis profiles equal
 * what `fidelio simulate` computes for the same events. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "kafka.h"
#include "log.h"
#include "pipeline.h"
#include "profile.h"
#include "sim.h"
#include "store.h"
#include "stream.h"

extern char **environ;

static const char help[] =
    "usage: fidelio demo [--seeds FILE] [-r RULES] [--keep]\n\n"
    "Run Fidelio end to end with nothing to install or start by hand: an in-process\n"
    "Kafka-protocol broker (librdkafka's mock cluster, in memory), a private\n"
    "redis-server in a temporary directory, the demo seeds produced as Avro, the\n"
    "streaming pipeline until every event is processed, and a summary: per customer\n"
    "points, tier, lifecycle and engagement stage, persona; rewards by rule; stage\n"
    "changes by ladder. Finally it checks that every profile in Redis equals what\n"
    "`fidelio simulate` computes for the same events, stops everything it started,\n"
    "and exits 0 (1 if the check fails).\n\n"
    "      --seeds FILE       events as JSON lines (default: seeds/demo.jsonl, found\n"
    "                         from the working directory or next to the binary)\n"
    "  -r, --rules FILE       rule program (default: the built-in program)\n"
    "      --keep             keep the private redis-server's temporary directory\n"
    "                         (its log) after the demo, and print its path\n"
    "  -h, --help             this help\n"
    "Exit codes: 0 ok, 1 the demo or its check failed, 2 a usage error or an input\n"
    "file (--seeds, -r) that cannot be read.\n";

/* seeds/demo.jsonl from the working directory, else from the source tree
 * next to the binary (build/fidelio -> ../seeds). */
static int find_seeds(char *out, size_t outlen)
{
    if (access("seeds/demo.jsonl", R_OK) == 0)
        return snprintf(out, outlen, "seeds/demo.jsonl") < (int)outlen ? 0 : -1;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    for (int up = 0; up < 3; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash)
            return -1;
        *slash = '\0';
        if ((size_t)snprintf(out, outlen, "%s/seeds/demo.jsonl", exe) < outlen && access(out, R_OK) == 0)
            return 0;
    }
    return -1;
}

/* A private redis-server: started in dir on a unix socket, no persistence. */
typedef struct redis_child {
    char dir[64];
    char sock[128];
    char url[160];
    pid_t pid;
} redis_child;

static int redis_start(redis_child *r, char *err, size_t errlen)
{
    snprintf(r->dir, sizeof(r->dir), "%s/fidelio-demo-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(r->dir)) {
        snprintf(err, errlen, "mkdtemp %s: %s", r->dir, strerror(errno));
        return -1;
    }
    snprintf(r->sock, sizeof(r->sock), "%s/redis.sock", r->dir);
    snprintf(r->url, sizeof(r->url), "unix://%s", r->sock);
    char log[128];
    snprintf(log, sizeof(log), "%s/redis.log", r->dir);
    char *argv[] = {"redis-server", "--port", "0", "--unixsocket", r->sock, "--dir", r->dir, "--save", "",
                    "--appendonly", "no", "--logfile", log, NULL};
    int rc = posix_spawnp(&r->pid, "redis-server", NULL, NULL, argv, environ);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start redis-server: %s (install it: apt-get install redis-server)",
                 strerror(rc));
        r->pid = 0;
        return -1;
    }
    for (int i = 0; i < 100; i++) {
        char why[256];
        store *s = store_open(r->url, "fidelio-demo-probe:", 1, 0, why, sizeof(why));
        if (s) {
            store_close(s);
            return 0;
        }
        usleep(50000);
    }
    snprintf(err, errlen, "redis-server did not answer on %s", r->sock);
    return -1;
}

static void redis_stop(redis_child *r, int keep)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
    if (!keep && r->dir[0]) {
        char path[128];
        const char *files[] = {"redis.sock", "redis.log", "fidelio-demo-probe", NULL};
        for (const char **f = files; *f; f++) {
            snprintf(path, sizeof(path), "%s/%s", r->dir, *f);
            unlink(path);
        }
        rmdir(r->dir);
    }
}

/* Totals read back from the output topics. */
typedef struct tally {
    const program *prog;
    long long rule_count[PROGRAM_MAX_RULES + 1], rule_points[PROGRAM_MAX_RULES + 1];
    long long ladder_count[PROGRAM_MAX_LADDERS + 1];
    long long messages;
} tally;

static int count_output(const rd_kafka_message_t *m, const codec_record *rec, const char *json, void *opaque)
{
    (void)m;
    (void)json;
    tally *t = opaque;
    t->messages++;
    if (rec->schema == SCHEMA_REWARD) {
        int r = program_rule_index(t->prog, rec->reward.rule_id);
        r = r < 0 ? PROGRAM_MAX_RULES : r;
        t->rule_count[r]++;
        t->rule_points[r] += rec->reward.points;
    } else {
        int l = program_ladder_index(t->prog, rec->stage.ladder);
        t->ladder_count[l < 0 ? PROGRAM_MAX_LADDERS : l]++;
    }
    return 0;
}

static const char *stage_of(const program *prog, const profile *p, const char *ladder)
{
    int l = program_ladder_index(prog, ladder);
    return l >= 0 && p->stage[l] >= 0 ? prog->ladders[l].stages[p->stage[l]].name : "-";
}

/* Simulate the seeds in memory, compare every profile with Redis, print the
 * per-customer table. Returns the number of customers that differ, -1 on error. */
static int compare_and_print(const program *prog, const char *seeds, store *st)
{
    char err[1024];
    sim *s = sim_new(prog);
    FILE *in = fopen(seeds, "r");
    long long invalid;
    int differ = -1;
    if (!s || !in || sim_apply_jsonl(s, in, seeds, NULL, NULL, &invalid, err, sizeof(err)) != 0)
        goto out;
    size_t count;
    const profile **all = sim_profiles(s, &count);
    if (!all)
        goto out;
    differ = 0;
    printf("%-10s %7s %8s  %-7s %-11s %-14s %s\n", "customer", "points", "lifetime", "tier", "lifecycle", "engagement",
           "persona");
    buf want = {0};
    for (size_t i = 0; i < count; i++) {
        store_profile sp = {.customer_id = all[i]->customer_id};
        profile got;
        buf_reset(&want);
        if (store_fetch(st, &sp, 1, NULL, 0, err, sizeof(err)) != 0 || !sp.exists ||
            profile_encode(all[i], prog, &want) != 0 || sp.encoding.len != want.len ||
            memcmp(sp.encoding.data, want.data, want.len) != 0) {
            printf("%-10s  differs from simulate%s\n", all[i]->customer_id, sp.exists ? "" : " (missing in Redis)");
            differ++;
            store_profile_free(&sp);
            continue;
        }
        if (profile_decode(&got, prog, sp.customer_id, sp.encoding.data, sp.encoding.len, err, sizeof(err)) == 0) {
            const char *persona = profile_persona(&got);
            printf("%-10s %7lld %8lld  %-7s %-11s %-14s %s\n", got.customer_id, (long long)got.balance,
                   (long long)got.lifetime_earned, stage_of(prog, &got, "tier"), stage_of(prog, &got, "lifecycle"),
                   stage_of(prog, &got, "engagement"), persona ? persona : "-");
        }
        profile_free(&got);
        store_profile_free(&sp);
    }
    buf_free(&want);
    free(all);
out:
    if (in)
        fclose(in);
    sim_free(s);
    return differ;
}

int cmd_demo(int argc, char **argv)
{
    static const struct option longopts[] = {{"seeds", required_argument, NULL, 'E'},
                                             {"rules", required_argument, NULL, 'r'},
                                             {"keep", no_argument, NULL, 'K'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0, 0, 0, 0}};
    char seeds[PATH_MAX] = "", err[1024];
    const char *rules = NULL;
    int opt, keep = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "r:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); return EXIT_OK;
        case 'E': snprintf(seeds, sizeof(seeds), "%s", optarg); break;
        case 'r': rules = optarg; break;
        case 'K': keep = 1; break;
        default: fputs(help, stderr); return EXIT_USAGE;
        }
    }
    if (!seeds[0] && find_seeds(seeds, sizeof(seeds)) != 0) {
        fprintf(stderr, "fidelio demo: seeds/demo.jsonl not found; run from the source tree or pass --seeds\n");
        return EXIT_USAGE;
    }
    config cfg;
    program *prog = NULL;
    redis_child redis = {0};
    rd_kafka_t *mock = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    store *st = NULL;
    FILE *in = NULL;
    int rc = EXIT_RUNTIME;
    /* built-in defaults only: the demo owns its broker and its Redis */
    if (config_load(&cfg, NULL, NULL, 0, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "fidelio demo: %s\n", err);
        config_free(&cfg);
        return EXIT_RUNTIME;
    }
    if ((rc = cli_load_program(&cfg, rules, &prog)) != EXIT_OK)
        goto out;
    log_set_level(LOG_WARN);
    if (!(in = fopen(seeds, "r"))) { /* an input file named on the command line: a usage error, as everywhere */
        fprintf(stderr, "fidelio demo: %s: %s\n", seeds, strerror(errno));
        rc = EXIT_USAGE;
        goto out;
    }
    rc = EXIT_RUNTIME;
    if (!(mock = kafka_mock_start(&cfg, 1, 6, &mc, err, sizeof(err))) || redis_start(&redis, err, sizeof(err)) != 0 ||
        config_set(&cfg, "kafka.bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), "demo", err, sizeof(err)) ||
        config_set(&cfg, "redis.url", redis.url, "demo", err, sizeof(err)) ||
        /* one batch takes all the seeds, so referral credits reach the referrers after
         * the referrers' own events, as in simulate */
        config_set(&cfg, "pipeline.batch_size", "1000", "demo", err, sizeof(err)) ||
        config_set(&cfg, "pipeline.batch_linger_ms", "1000", "demo", err, sizeof(err))) {
        fprintf(stderr, "fidelio demo: %s\n", err);
        goto out;
    }
    printf("Fidelio demo (rule program %s)\n  broker: in-process mock cluster at %s (in memory)\n"
           "  redis:  private redis-server at %s\n  seeds:  %s\n\n",
           prog->version, rd_kafka_mock_cluster_bootstraps(mc), redis.url, seeds);
    fflush(stdout);
    cli_install_signals();
    produce_opts po = {.topic = cfg.topic_touchpoints, .schema = SCHEMA_TOUCHPOINT, .input_name = seeds};
    produce_stats ps;
    if (produce_stream(&cfg, in, &po, &ps, err, sizeof(err)) != 0 || ps.rejected) {
        fprintf(stderr, "fidelio demo: producing the seeds failed: %s\n", ps.rejected ? "invalid seed lines" : err);
        goto out;
    }
    printf("produced %lld touchpoint events to '%s'\n", ps.sent, cfg.topic_touchpoints);
    fflush(stdout);
    pipeline_opts opts = {.until_idle = true, .idle_grace_ms = 1500};
    pipeline_stats pst;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (pipeline_run(&cfg, prog, &opts, &pst, err, sizeof(err)) != 0) {
        fprintf(stderr, "fidelio demo: the pipeline failed: %s\n", err);
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("the pipeline applied %lld touchpoints and %lld referral credits (%lld to the DLQ) and produced %lld "
           "outputs in %.1f s\n\n",
           pst.touchpoints, pst.credits, pst.dlq, pst.outputs,
           (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    if (cli_stop)
        goto out;
    if (!(st = store_open(cfg.redis_url, cfg.key_prefix, cfg.dedupe_retention_ms, cfg.ledger_max, err,
                          sizeof(err)))) {
        fprintf(stderr, "fidelio demo: %s\n", err);
        goto out;
    }
    int differ = compare_and_print(prog, seeds, st);
    tally t = {.prog = prog};
    consume_stats cs;
    consume_opts co = {.offset = RD_KAFKA_OFFSET_BEGINNING, .exit_at_end = 1};
    const char *topics[] = {cfg.topic_rewards, cfg.topic_stage_changes};
    const codec_schema schemas[] = {SCHEMA_REWARD, SCHEMA_STAGE_CHANGE};
    for (int i = 0; i < 2; i++) {
        co.topic = topics[i];
        co.schema = schemas[i];
        if (consume_stream(&cfg, &co, count_output, &t, &cs, err, sizeof(err)) != 0) {
            fprintf(stderr, "fidelio demo: reading %s: %s\n", topics[i], err);
            goto out;
        }
    }
    printf("\nrewards by rule (read back from '%s')      count    points\n", cfg.topic_rewards);
    for (int r = 0; r < prog->nrules; r++)
        if (t.rule_count[r])
            printf("  %-40s %6lld %9lld\n", prog->rules[r].id, t.rule_count[r], t.rule_points[r]);
    printf("stage changes by ladder (read back from '%s')   count\n", cfg.topic_stage_changes);
    for (int l = 0; l < prog->nladders; l++)
        printf("  %-40s %6lld\n", prog->ladders[l].id, t.ladder_count[l]);
    if (differ == 0) {
        printf("\ncheck: every profile in Redis equals `fidelio simulate` over the same events: OK\n");
        rc = EXIT_OK;
    } else {
        printf("\ncheck FAILED: %d profile(s) differ from `fidelio simulate`\n", differ);
    }
out:
    if (st)
        store_close(st);
    if (in)
        fclose(in);
    redis_stop(&redis, keep);
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (mock)
        rd_kafka_destroy(mock);
    cli_program_free(prog);
    config_free(&cfg);
    if (keep && redis.dir[0])
        printf("kept %s\n", redis.dir);
    return rc;
}
