/* main.c - the fidelio command: argument parsing and subcommand dispatch. */
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "version.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"run", cmd_run, "the streaming pipeline: touchpoints -> Redis profiles -> rewards and stage changes"},
    {"profile", cmd_profile, "a customer's profile from Redis as JSON"},
    {"ledger", cmd_ledger, "a customer's recent balance changes from Redis"},
    {"diff", cmd_diff, "the customers whose profiles differ between two namespaces (what-if, rebuild check)"},
    {"replay", cmd_replay, "replay the touchpoints topic into a namespace of its own: rebuild, backfill, what-if"},
    {"offsets", cmd_offsets, "show or reset the committed offsets of an inactive consumer group (reprocessing)"},
    {"report", cmd_report, "the programme's figures of a namespace: funnel, ladders, personas, points"},
    {"dashboard", cmd_dashboard, "serve the control room of a namespace over HTTP"},
    {"check", cmd_check, "validate the configuration and print it, secrets masked"},
    {"produce", cmd_produce, "JSON lines -> validated Avro -> a Kafka topic"},
    {"consume", cmd_consume, "a Kafka topic -> JSON lines on stdout"},
    {"encode", cmd_encode, "JSON lines -> one Avro file per event (for kcat and tests)"},
    {"gen", cmd_gen, "generate a deterministic retailer's touchpoint stream (benchmarks)"},
    {"simulate", cmd_simulate, "run the rule program over JSON lines in memory (dry run)"},
    {"dev-kafka", cmd_dev_kafka, "run an in-memory Kafka-protocol broker for development"},
    {"demo", cmd_demo, "run the self-contained demo on built-in defaults"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: fidelio COMMAND [OPTIONS]\n\nFidelio %s, an event-stream loyalty engine.\n\ncommands:\n",
            FIDELIO_VERSION);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "  %-10s %s\n\n'fidelio COMMAND --help' describes each command.\n"
                 "Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.\n",
            "version", "print the version");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        if (argc > 2 && (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0)) {
            printf("usage: fidelio version\n\nPrint Fidelio's version and the librdkafka it runs with.\n"
                   "  -h, --help            this help\n");
            return EXIT_OK;
        }
        if (argc > 2) {
            fprintf(stderr, "fidelio version: unexpected argument '%s'\n", argv[2]);
            return EXIT_USAGE;
        }
        printf("fidelio %s (librdkafka %s)\n", FIDELIO_VERSION, rd_kafka_version_str());
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "fidelio: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
