/* cmd_dev_kafka.c - `fidelio dev-kafka`: librdkafka's mock cluster as a local
 * development broker. In memory only; see DESIGN.md for its limits. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kafka.h"

static const char help[] =
    "usage: fidelio dev-kafka [--brokers N] [--partitions N] [--topic NAME:PARTITIONS]...\n"
    "                         [--bootstrap-file F] [-c FILE] [--set KEY=VALUE]...\n\n"
    "Run librdkafka's mock cluster on 127.0.0.1 as a development broker: it speaks\n"
    "the Kafka protocol, so fidelio, kcat and any Kafka client can use it. It prints\n"
    "its bootstrap address on stdout (and writes it to F), creates the configured\n"
    "topics, and runs until SIGINT or SIGTERM.\n\n"
    "FOR DEVELOPMENT AND TESTS ONLY: everything is in memory and lost on exit; each\n"
    "partition keeps only about 5 MB (older messages are dropped silently); offsets\n"
    "of transactions are not stored and read_committed filters nothing; topics are\n"
    "auto-created; there is no authentication. Consumer groups rebalance quickly only\n"
    "with session.timeout.ms ~6000 and heartbeat.interval.ms ~500.\n\n"
    "      --brokers N            number of brokers (default 1)\n"
    "      --partitions N         partitions of each configured topic (default 6)\n"
    "      --topic NAME:N         create topic NAME with N partitions (repeatable); a\n"
    "                             configured topic named here gets N instead of --partitions\n"
    "      --bootstrap-file F     write the bootstrap address to F (atomically)\n"
    "  -c, --config FILE          configuration (for the topic names)\n"
    "      --set KEY=VALUE        override one setting\n"
    "  -h, --help                 this help\n";

static int parse_int(const char *s, int min, int max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

int cmd_dev_kafka(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"set", required_argument, NULL, 'S'},
                                             {"brokers", required_argument, NULL, 'B'},
                                             {"partitions", required_argument, NULL, 'P'},
                                             {"topic", required_argument, NULL, 'T'},
                                             {"bootstrap-file", required_argument, NULL, 'F'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    int opt, rc = EXIT_USAGE, brokers = 1, partitions = 6;
    const char *bootstrap_file = NULL;
    char **topics = NULL;
    size_t ntopics = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); rc = EXIT_OK; goto out_cc;
        case 'B':
            if (parse_int(optarg, 1, 16, &brokers)) {
                fprintf(stderr, "fidelio dev-kafka: --brokers takes 1..16\n");
                goto out_cc;
            }
            break;
        case 'P':
            if (parse_int(optarg, 1, 256, &partitions)) {
                fprintf(stderr, "fidelio dev-kafka: --partitions takes 1..256\n");
                goto out_cc;
            }
            break;
        case 'T': {
            if (ntopics == 256) {
                fprintf(stderr, "fidelio dev-kafka: at most 256 --topic\n");
                goto out_cc;
            }
            char **t = realloc(topics, (ntopics + 1) * sizeof(*t));
            if (!t)
                goto out_cc;
            topics = t;
            topics[ntopics++] = optarg;
            break;
        }
        case 'F': bootstrap_file = optarg; break;
        default:
            if (cli_default_opt(&cc, opt, optarg, help) != 0)
                goto out_cc;
        }
    }
    if ((rc = cli_setup(&cc, "dev-kafka", argc, argv, NULL, &cfg, NULL)) != EXIT_OK)
        goto out_cc;
    rc = EXIT_USAGE;
    int *counts = calloc(ntopics ? ntopics : 1, sizeof(*counts));
    if (!counts)
        goto out_cfg;
    for (size_t i = 0; i < ntopics; i++) {
        char *colon = strrchr(topics[i], ':');
        if (!colon || colon == topics[i] || parse_int(colon + 1, 1, 256, &counts[i])) {
            fprintf(stderr, "fidelio dev-kafka: --topic takes NAME:PARTITIONS, got '%s'\n", topics[i]);
            goto out_counts;
        }
        *colon = '\0';
        for (size_t j = 0; j < i; j++)
            if (!strcmp(topics[j], topics[i])) {
                fprintf(stderr, "fidelio dev-kafka: --topic %s is given twice\n", topics[i]);
                goto out_counts;
            }
    }
    char err[1024];
    rd_kafka_mock_cluster_t *mc;
    /* the configured topics get --partitions, unless a --topic names them */
    rd_kafka_t *rk = kafka_mock_start(&cfg, brokers, 0, &mc, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "fidelio dev-kafka: %s\n", err);
        rc = EXIT_RUNTIME;
        goto out_counts;
    }
    rc = EXIT_OK;
    /* the configured topics, then the other --topic ones; each name once */
    const char *names[5 + 256];
    size_t nnames = 0;
    const char *configured[] = {cfg.topic_touchpoints, cfg.topic_rewards, cfg.topic_stage_changes, cfg.topic_dlq,
                                cfg.topic_credits};
    for (size_t i = 0; i < 5 + ntopics && nnames < sizeof(names) / sizeof(names[0]); i++) {
        const char *name = i < 5 ? configured[i] : topics[i - 5];
        bool seen = false;
        for (size_t k = 0; k < nnames; k++)
            seen |= !strcmp(names[k], name);
        if (!seen)
            names[nnames++] = name;
    }
    for (size_t i = 0; i < nnames; i++) {
        int n = partitions;
        for (size_t j = 0; j < ntopics; j++)
            if (!strcmp(topics[j], names[i]))
                n = counts[j];
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, names[i], n, 1);
        if (e) {
            fprintf(stderr, "fidelio dev-kafka: topic %s: %s\n", names[i], rd_kafka_err2str(e));
            rc = EXIT_RUNTIME;
        }
    }
    const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
    if (rc == EXIT_OK && bootstrap_file) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", bootstrap_file, (long)getpid());
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%s\n", bootstrap) < 0 || fclose(f) != 0 || rename(tmp, bootstrap_file) != 0) {
            fprintf(stderr, "fidelio dev-kafka: %s: %s\n", bootstrap_file, strerror(errno));
            rc = EXIT_RUNTIME;
        }
    }
    if (rc == EXIT_OK) {
        printf("%s\n", bootstrap);
        fflush(stdout);
        fprintf(stderr, "dev-kafka: %d broker(s) at %s (in-memory, for development only); Ctrl-C to stop\n",
                brokers, bootstrap);
        cli_install_signals();
        while (!cli_stop)
            rd_kafka_poll(rk, 200);
        fprintf(stderr, "dev-kafka: stopping\n");
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
out_counts:
    free(counts);
out_cfg:
    config_free(&cfg);
out_cc:
    free(topics);
    cli_common_free(&cc);
    return rc;
}
