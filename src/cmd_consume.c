/* cmd_consume.c - `fidelio consume`: a topic -> JSON lines on stdout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "stream.h"

static const char help[] =
    "usage: fidelio consume -t TOPIC [-o beginning|end|OFFSET] [-e] [-n COUNT] [OPTIONS]\n\n"
    "Read every partition of TOPIC and print each message as one JSON line. The\n"
    "schema follows from the configured topic names (touchpoints, rewards,\n"
    "stage-changes); the DLQ topic prints its error headers and the original key\n"
    "and value (base64). Joins no consumer group and commits nothing.\n\n"
    "  -t, --topic TOPIC     topic to read\n"
    "  -o, --offset WHERE    beginning (default), end, or an absolute offset for every partition\n"
    "  -e, --exit            exit when every partition is at its end\n"
    "  -n, --count COUNT     exit after COUNT messages\n"
    "      --schema NAME     touchpoint, reward or stage-change, for a topic not in the configuration\n" CLI_COMMON_HELP;

static int print_line(const rd_kafka_message_t *m, const codec_record *rec, const char *json, void *opaque)
{
    (void)m;
    (void)rec;
    (void)opaque;
    fputs(json, stdout);
    fputc('\n', stdout);
    return ferror(stdout) ? 1 : 0;
}

int cmd_consume(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"topic", required_argument, NULL, 't'},
                                             {"offset", required_argument, NULL, 'o'},
                                             {"exit", no_argument, NULL, 'e'},
                                             {"count", required_argument, NULL, 'n'},
                                             {"schema", required_argument, NULL, 's'},
                                             {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    consume_opts o = {.offset = RD_KAFKA_OFFSET_BEGINNING};
    const char *schema = NULL;
    int opt, rc = EXIT_USAGE;
    char *end;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "t:o:en:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); cli_common_free(&cc); return EXIT_OK;
        case 't': o.topic = optarg; break;
        case 'e': o.exit_at_end = 1; break;
        case 's': schema = optarg; break;
        case 'o':
            if (strcmp(optarg, "beginning") == 0)
                o.offset = RD_KAFKA_OFFSET_BEGINNING;
            else if (strcmp(optarg, "end") == 0)
                o.offset = RD_KAFKA_OFFSET_END;
            else {
                errno = 0;
                o.offset = strtoll(optarg, &end, 10);
                if (errno || *end || end == optarg || o.offset < 0) {
                    fprintf(stderr, "fidelio consume: -o takes beginning, end or an offset >= 0\n");
                    goto out_cc;
                }
            }
            break;
        case 'n':
            errno = 0;
            o.max_count = strtoll(optarg, &end, 10);
            if (errno || *end || end == optarg || o.max_count <= 0) {
                fprintf(stderr, "fidelio consume: -n takes a count > 0\n");
                goto out_cc;
            }
            break;
        default:
            if (cli_default_opt(&cc, opt, optarg, help) != 0)
                goto out_cc;
        }
    }
    if (!o.topic || optind < argc) {
        fprintf(stderr, "fidelio consume: %s\n", o.topic ? "unexpected argument" : "-t TOPIC is required");
        goto out_cc;
    }
    if ((rc = cli_load_config(&cc, &cfg)) != EXIT_OK)
        goto out_cfg;
    rc = EXIT_USAGE;
    int is_dlq, s = schema ? codec_schema_parse(schema) : stream_topic_schema(&cfg, o.topic, &is_dlq);
    if (!schema && is_dlq) {
        o.kind = STREAM_DLQ;
    } else if (s < 0) {
        fprintf(stderr, schema ? "fidelio consume: unknown schema '%s' (touchpoint, reward, stage-change)\n"
                               : "fidelio consume: topic '%s' is not one of the configured topics; pass --schema\n",
                schema ? schema : o.topic);
        goto out_cfg;
    } else {
        o.schema = (codec_schema)s;
    }
    cli_install_signals();
    consume_stats st;
    char err[1024];
    if (consume_stream(&cfg, &o, print_line, NULL, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "fidelio consume: %s\n", err);
        rc = EXIT_RUNTIME;
    } else {
        fflush(stdout);
        if (st.undecodable)
            fprintf(stderr, "fidelio consume: %lld messages could not be decoded\n", st.undecodable);
        rc = st.undecodable ? EXIT_RUNTIME : EXIT_OK;
    }
out_cfg:
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
