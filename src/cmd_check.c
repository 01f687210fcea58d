/* cmd_check.c - `fidelio check`: validate the configuration, print it masked. */
#include <stdio.h>

#include "cli.h"
#include "config.h"
#include "program.h"

static const char help[] = "usage: fidelio check [-c FILE] [-r RULES] [--set KEY=VALUE]...\n\n"
                           "Validate the configuration and the rule program; print the effective settings,\n"
                           "secrets masked, each with where its value came from, and a summary of the\n"
                           "rules, ladders and tiers. Exit 2 on any configuration or program error.\n\n"
                           "  -r, --rules FILE      rule program (default: rules.path, else built-in)\n" CLI_CONFIG_HELP;

int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS, {"rules", required_argument, NULL, 'r'},
                                             {0, 0, 0, 0}};
    const char *rules = NULL;
    program *prog = NULL;
    cli_common cc = {0};
    config cfg;
    int opt, rc = EXIT_USAGE;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "r:h", longopts, NULL)) != -1) {
        if (opt == 'r') {
            rules = optarg;
            continue;
        }
        if (opt == 'h') {
            fputs(help, stdout);
            cli_common_free(&cc);
            return EXIT_OK;
        }
        if (cli_default_opt(&cc, opt, optarg, help) != 0)
            goto out_cc;
    }
    if (optind < argc) {
        fprintf(stderr, "fidelio check: unexpected argument '%s'\n", argv[optind]);
        goto out_cc;
    }
    if ((rc = cli_load_config(&cc, &cfg)) != EXIT_OK)
        goto out_cfg;
    if ((rc = cli_load_program(&cfg, rules, &prog)) != EXIT_OK)
        goto out_cfg;
    buf out = {0};
    if (config_dump(&cfg, &out) != 0 || program_summary(prog, &out) != 0) {
        fprintf(stderr, "fidelio check: out of memory\n");
        rc = EXIT_RUNTIME;
    } else {
        fputs(out.data, stdout);
        printf("# configuration and rule program OK\n");
    }
    buf_free(&out);
    cli_program_free(prog);
out_cfg:
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
