/* cmd_check.c - `fidelio check`: validate the configuration, print it masked. */
#include <stdbool.h>
#include <stdio.h>

#include "cli.h"
#include "config.h"
#include "program.h"
#include "registry.h"
#include "store.h"

static const char help[] = "usage: fidelio check [-c FILE] [-r RULES] [--namespace] [--set KEY=VALUE]...\n\n"
                           "Validate the configuration and the rule program; print the effective settings,\n"
                           "secrets masked, each with where its value came from, and a summary of the\n"
                           "rules, ladders and tiers. Exit 2 on any configuration or program error.\n\n"
                           "  -r, --rules FILE      rule program (default: rules.path, else built-in)\n"
                           "      --namespace       also check the program against the namespace in Redis\n"
                           "                        (redis.url, redis.key_prefix), reading only: exit 2 if it\n"
                           "                        would orphan stages stored there (as `run` would refuse\n"
                           "                        it); a warning if the namespace last ran the same\n"
                           "                        version with another digest\n" CLI_CONFIG_HELP;

/* The program against the namespace's registry, read-only. */
static int check_namespace(const config *cfg, const program *prog)
{
    char err[1024];
    buf notes = {0};
    store *st = store_open_readonly(cfg->redis_url, cfg->key_prefix, err, sizeof(err));
    if (!st) {
        fprintf(stderr, "fidelio check: %s\n", err);
        return EXIT_RUNTIME;
    }
    registry_result rr = registry_check(st, prog, false, &notes, err, sizeof(err));
    store_close(st);
    if (notes.len)
        fprintf(stderr, "fidelio check: warning: %s", notes.data);
    buf_free(&notes);
    if (rr == REGISTRY_OK)
        return EXIT_OK;
    fprintf(stderr, "fidelio check: %s\n", err);
    return rr == REGISTRY_REFUSED ? EXIT_USAGE : EXIT_RUNTIME;
}

int cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS, {"rules", required_argument, NULL, 'r'},
                                             {"namespace", no_argument, NULL, 'N'}, {0, 0, 0, 0}};
    bool namespace = false;
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
        if (opt == 'N') {
            namespace = true;
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
    if ((rc = cli_setup(&cc, "check", argc, argv, rules, &cfg, &prog)) != EXIT_OK)
        goto out_cc;
    buf out = {0};
    if (config_dump(&cfg, &out) != 0 || program_summary(prog, &out) != 0) {
        fprintf(stderr, "fidelio check: out of memory\n");
        rc = EXIT_RUNTIME;
    } else {
        fputs(out.data, stdout);
        rc = namespace ? check_namespace(&cfg, prog) : EXIT_OK;
        if (rc == EXIT_OK)
            printf("# configuration and rule program OK%s\n", namespace ? " (and against the namespace)" : "");
    }
    buf_free(&out);
    cli_program_free(prog);
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
