/* cmd_report.c - `fidelio report`: the programme's figures of a namespace, read-only. */
#include <stdio.h>

#include "cli.h"
#include "program.h"
#include "report.h"
#include "store.h"

static const char help[] =
    "usage: fidelio report [-c FILE] [-r RULES] [--set KEY=VALUE]... [--json]\n\n"
    "The programme's figures for the namespace redis.key_prefix: customers per stage of\n"
    "every ladder (the lifecycle funnel, the engagement ladder, the tier mix), the persona\n"
    "split, points issued / redeemed / reversed / outstanding (the liability), rewards by\n"
    "rule and kind, points by rule per day of event time, events applied by type and the\n"
    "DLQ by reason. Read from the aggregates `run` keeps with every apply: one Redis read,\n"
    "whatever the number of customers. Writes nothing.\n\n"
    "  -r, --rules FILE      rule program giving the order of ladders and rules\n"
    "                        (default: rules.path, else built-in)\n"
    "      --json            the JSON document the control room shows (/api/report)\n" CLI_COMMON_HELP;

int cmd_report(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"rules", required_argument, NULL, 'r'},
                                             {"json", no_argument, NULL, 'J'},
                                             {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    program *prog = NULL;
    const char *rules = NULL;
    int opt, rc = EXIT_USAGE, json = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "r:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); cli_common_free(&cc); return EXIT_OK;
        case 'r': rules = optarg; break;
        case 'J': json = 1; break;
        default:
            if (cli_default_opt(&cc, opt, optarg, help) != 0)
                goto out_cc;
        }
    }
    if ((rc = cli_setup(&cc, "report", argc, argv, rules, &cfg, &prog)) != EXIT_OK)
        goto out_cc;
    char err[1024];
    store *s = store_open_readonly(cfg.redis_url, cfg.key_prefix, err, sizeof(err));
    buf out = {0};
    if (!s || (json ? report_json(s, prog, cfg.key_prefix, &out, err, sizeof(err))
                    : report_text(s, prog, cfg.key_prefix, &out, err, sizeof(err))) != 0) {
        fprintf(stderr, "fidelio report: %s\n", err);
        rc = EXIT_RUNTIME;
    } else {
        fwrite(out.data, 1, out.len, stdout);
        rc = EXIT_OK;
    }
    buf_free(&out);
    store_close(s);
    cli_program_free(prog);
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
