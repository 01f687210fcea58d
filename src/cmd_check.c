/* cmd_check.c - `fidelio check`: validate the configuration, print it masked. */
#include <stdio.h>

#include "cli.h"
#include "config.h"

static const char help[] = "usage: fidelio check [-c FILE] [--set KEY=VALUE]...\n\n"
                           "Validate the configuration and print the effective settings, secrets masked,\n"
                           "each with where its value came from. Exit 2 on any configuration error.\n\n" CLI_COMMON_HELP;

int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS, {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    int opt, rc = EXIT_USAGE;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(help, stdout);
            cli_common_free(&cc);
            return EXIT_OK;
        }
        int h = cli_common_opt(&cc, opt, optarg);
        if (h < 0)
            goto out_cc;
        if (h == 0) {
            fputs(help, stderr);
            goto out_cc;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fidelio check: unexpected argument '%s'\n", argv[optind]);
        goto out_cc;
    }
    if ((rc = cli_load_config(&cc, &cfg)) != EXIT_OK)
        goto out_cfg;
    buf out = {0};
    if (config_dump(&cfg, &out) != 0) {
        fprintf(stderr, "fidelio check: out of memory\n");
        rc = EXIT_RUNTIME;
    } else {
        fputs(out.data, stdout);
        printf("# configuration OK\n");
    }
    buf_free(&out);
out_cfg:
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
