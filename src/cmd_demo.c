/* cmd_demo.c - `fidelio demo`: the self-contained demo on built-in defaults.
 *
 * Starts librdkafka's mock cluster in this process, produces the demo seeds
 * as Avro, reads them back, and prints what went through. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kafka.h"
#include "stream.h"

static const char help[] =
    "usage: fidelio demo [--seeds FILE] [-c FILE] [--set KEY=VALUE]...\n\n"
    "Run the demo with nothing to install: an in-process Kafka-protocol broker\n"
    "(librdkafka's mock cluster), the demo seeds produced as Avro and read back,\n"
    "and a summary of what went through. Exits 0 when every event made the trip.\n\n"
    "      --seeds FILE       events as JSON lines (default: seeds/demo.jsonl, found\n"
    "                         from the working directory or next to the binary)\n"
    "  -c, --config FILE      configuration (Kafka settings are replaced by the demo's)\n"
    "      --set KEY=VALUE    override one setting\n";

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

typedef struct demo_tally {
    long long by_type[EVENT_TYPE_COUNT];
    long long total;
} demo_tally;

static int tally(const rd_kafka_message_t *m, const codec_record *rec, const char *json, void *opaque)
{
    (void)m;
    (void)json;
    demo_tally *t = opaque;
    if (rec && (unsigned)rec->tp.type < EVENT_TYPE_COUNT)
        t->by_type[rec->tp.type]++;
    t->total++;
    return 0;
}

int cmd_demo(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"set", required_argument, NULL, 'S'},
                                             {"seeds", required_argument, NULL, 'E'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    int opt, rc = EXIT_USAGE;
    char seeds[PATH_MAX] = "";
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); rc = EXIT_OK; goto out_cc;
        case 'E': snprintf(seeds, sizeof(seeds), "%s", optarg); break;
        default:
            if (cli_common_opt(&cc, opt, optarg) <= 0) {
                fputs(help, stderr);
                goto out_cc;
            }
        }
    }
    if (!seeds[0] && find_seeds(seeds, sizeof(seeds)) != 0) {
        fprintf(stderr, "fidelio demo: seeds/demo.jsonl not found; run from the source tree or pass --seeds\n");
        goto out_cc;
    }
    if ((rc = cli_load_config(&cc, &cfg)) != EXIT_OK)
        goto out_cfg;
    rc = EXIT_RUNTIME;
    FILE *in = fopen(seeds, "r");
    if (!in) {
        fprintf(stderr, "fidelio demo: %s: %s\n", seeds, strerror(errno));
        goto out_cfg;
    }
    char err[1024];
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *mock = kafka_mock_start(&cfg, 1, 6, &mc, err, sizeof(err));
    if (!mock) {
        fprintf(stderr, "fidelio demo: %s\n", err);
        fclose(in);
        goto out_cfg;
    }
    /* The demo talks to its own broker only: drop any configured Kafka settings. */
    config_clear_kafka(&cfg);
    if (config_set(&cfg, "kafka.bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), "demo", err,
                   sizeof(err)) != 0) {
        fprintf(stderr, "fidelio demo: %s\n", err);
        goto out_mock;
    }
    printf("Fidelio demo\n  broker: in-process mock cluster at %s (in-memory)\n  seeds:  %s\n\n",
           rd_kafka_mock_cluster_bootstraps(mc), seeds);
    cli_install_signals();
    produce_opts po = {.topic = cfg.topic_touchpoints, .schema = SCHEMA_TOUCHPOINT, .input_name = seeds};
    produce_stats ps;
    if (produce_stream(&cfg, in, &po, &ps, err, sizeof(err)) != 0 || ps.rejected) {
        fprintf(stderr, "fidelio demo: producing the seeds failed: %s\n", ps.rejected ? "invalid seed lines" : err);
        goto out_mock;
    }
    printf("produced %lld touchpoint events to '%s' in %.2f s\n", ps.sent, cfg.topic_touchpoints, ps.seconds);
    demo_tally t = {0};
    consume_opts co = {.topic = cfg.topic_touchpoints, .schema = SCHEMA_TOUCHPOINT,
                       .offset = RD_KAFKA_OFFSET_BEGINNING, .exit_at_end = 1};
    consume_stats cs;
    if (consume_stream(&cfg, &co, tally, &t, &cs, err, sizeof(err)) != 0) {
        fprintf(stderr, "fidelio demo: reading back failed: %s\n", err);
        goto out_mock;
    }
    printf("read back %lld events (%lld undecodable)\n\nevents by type:\n", t.total, cs.undecodable);
    for (int i = 0; i < EVENT_TYPE_COUNT; i++)
        printf("  %-18s %6lld\n", event_type_name((event_type)i), t.by_type[i]);
    if (t.total == ps.sent && cs.undecodable == 0) {
        printf("\ndemo OK: every event made the round trip\n");
        rc = EXIT_OK;
    } else {
        printf("\ndemo FAILED: sent %lld, read back %lld\n", ps.sent, t.total);
    }
out_mock:
    fclose(in);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(mock);
out_cfg:
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
