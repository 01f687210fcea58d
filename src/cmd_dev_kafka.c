/* cmd_dev_kafka.c - `fidelio dev-kafka`: librdkafka's mock cluster as a local
 * development broker. In memory only; see DESIGN.md for its limits. */
#include <errno.h>
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
    "      --topic NAME:N         also create topic NAME with N partitions (repeatable)\n"
    "      --bootstrap-file F     write the bootstrap address to F (atomically)\n"
    "  -c, --config FILE          configuration (for the topic names)\n"
    "      --set KEY=VALUE        override one setting\n";

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
    if (optind < argc) {
        fprintf(stderr, "fidelio dev-kafka: unexpected argument '%s'\n", argv[optind]);
        goto out_cc;
    }
    if ((rc = cli_load_config(&cc, &cfg)) != EXIT_OK)
        goto out_cfg;
    rc = EXIT_USAGE;
    for (size_t i = 0; i < ntopics; i++) {
        char *colon = strrchr(topics[i], ':');
        int n;
        if (!colon || colon == topics[i] || parse_int(colon + 1, 1, 256, &n)) {
            fprintf(stderr, "fidelio dev-kafka: --topic takes NAME:PARTITIONS, got '%s'\n", topics[i]);
            goto out_cfg;
        }
    }
    char err[1024];
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *rk = kafka_mock_start(&cfg, brokers, partitions, &mc, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "fidelio dev-kafka: %s\n", err);
        rc = EXIT_RUNTIME;
        goto out_cfg;
    }
    rc = EXIT_OK;
    for (size_t i = 0; i < ntopics; i++) {
        char *colon = strrchr(topics[i], ':');
        *colon = '\0';
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, topics[i], atoi(colon + 1), 1);
        if (e) {
            fprintf(stderr, "fidelio dev-kafka: topic %s: %s\n", topics[i], rd_kafka_err2str(e));
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
out_cfg:
    config_free(&cfg);
out_cc:
    free(topics);
    cli_common_free(&cc);
    return rc;
}
