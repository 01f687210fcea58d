/* cmd_produce.c - `fidelio produce`: JSON lines -> validated Avro -> Kafka. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "stream.h"

static const char help[] =
    "usage: fidelio produce -t TOPIC [OPTIONS] [FILE|-]\n\n"
    "Read JSON lines (one event per line; FILE or standard input), validate them,\n"
    "encode them as Avro and produce them keyed by customer_id with an idempotent\n"
    "producer (acks=all). Invalid lines are reported with their line number and\n"
    "skipped; the exit code is 1 if any line was rejected or not delivered.\n\n"
    "  -t, --topic TOPIC     topic to write (its schema follows from the configuration)\n"
    "      --schema NAME     touchpoint, reward or stage-change, for a topic not in the configuration\n"
    "      --strict          stop at the first invalid line\n"
    "  -q, --quiet           no progress or summary on stderr\n" CLI_COMMON_HELP;

int cmd_produce(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"topic", required_argument, NULL, 't'},
                                             {"schema", required_argument, NULL, 's'},
                                             {"strict", no_argument, NULL, 'x'},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    produce_opts o = {.input_name = "stdin", .progress = 1};
    const char *schema = NULL;
    int opt, rc = EXIT_USAGE, quiet = 0;
    FILE *in = stdin;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "t:qh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); cli_common_free(&cc); return EXIT_OK;
        case 't': o.topic = optarg; break;
        case 's': schema = optarg; break;
        case 'x': o.strict = 1; break;
        case 'q': quiet = 1; break;
        default:
            if (cli_default_opt(&cc, opt, optarg, help) != 0)
                goto out_cc;
        }
    }
    if (!o.topic) {
        fprintf(stderr, "fidelio produce: -t TOPIC is required\n");
        goto out_cc;
    }
    if (argc - optind > 1) {
        fprintf(stderr, "fidelio produce: one input file at most\n");
        goto out_cc;
    }
    if ((rc = cli_load_config(&cc, &cfg)) != EXIT_OK)
        goto out_cfg;
    rc = EXIT_USAGE;
    int is_dlq, s = schema ? codec_schema_parse(schema) : stream_topic_schema(&cfg, o.topic, &is_dlq);
    if (s < 0) {
        fprintf(stderr, schema ? "fidelio produce: unknown schema '%s' (touchpoint, reward, stage-change)\n"
                               : "fidelio produce: topic '%s' is not one of the configured topics; pass --schema\n",
                schema ? schema : o.topic);
        goto out_cfg;
    }
    o.schema = (codec_schema)s;
    o.progress = !quiet;
    if (optind < argc && strcmp(argv[optind], "-") != 0) {
        o.input_name = argv[optind];
        if (!(in = fopen(argv[optind], "r"))) {
            fprintf(stderr, "fidelio produce: %s: %s\n", argv[optind], strerror(errno));
            goto out_cfg;
        }
    }
    cli_install_signals();
    produce_stats st;
    char err[1024];
    int prc = produce_stream(&cfg, in, &o, &st, err, sizeof(err));
    if (!quiet)
        fprintf(stderr, "produce: %lld sent, %lld rejected, %lld failed to %s in %.2f s (%.0f msg/s)\n", st.sent,
                st.rejected, st.failed, o.topic, st.seconds, st.seconds > 0 ? st.sent / st.seconds : 0.0);
    if (prc != 0)
        fprintf(stderr, "fidelio produce: %s\n", err);
    rc = (prc == 0 && st.rejected == 0) ? EXIT_OK : EXIT_RUNTIME;
    if (in != stdin)
        fclose(in);
out_cfg:
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
