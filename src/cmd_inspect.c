/* cmd_inspect.c - operator commands reading Redis: `fidelio profile` and `fidelio ledger`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "profile.h"
#include "program.h"
#include "store.h"

static const char profile_help[] =
    "usage: fidelio profile [-c FILE] [--set KEY=VALUE]... [-r RULES] (CUSTOMER_ID... | --all)\n\n"
    "Print each customer's profile from Redis as one JSON line: balance, lifetime\n"
    "points, tier and stages, scores and persona, counters. Exit 1 if a customer\n"
    "has no profile (the others are still printed).\n\n"
    "  -r, --rules FILE      rule program the profile was built with (default: rules.path)\n"
    "      --all             every customer with a profile, sorted by id\n" CLI_CONFIG_HELP;

static const char ledger_help[] =
    "usage: fidelio ledger [-c FILE] [--set KEY=VALUE]... [-n N] CUSTOMER_ID\n\n"
    "Print the customer's most recent balance changes (RewardEvent JSON lines, oldest\n"
    "first) with rule ids and source events, from the ledger kept in Redis. The\n"
    "reason text is not kept there (\"reason\":\"\" since Redis layout 5): the rewards\n"
    "topic carries it. Exit 1 if the customer has no profile, like `fidelio\n"
    "profile`; a customer with a profile and no balance change yet prints nothing\n"
    "and exits 0.\n\n"
    "  -n, --count N         how many (default 20)\n" CLI_CONFIG_HELP;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int print_profiles(store *s, const program *prog, char **ids, int n)
{
    char err[1024];
    int rc = EXIT_OK;
    store_profile sp = {0};
    store_seen none;
    buf out = {0};
    for (int i = 0; i < n; i++) {
        sp.customer_id = ids[i];
        if (store_fetch(s, &sp, 1, &none, 0, err, sizeof(err)) != 0) {
            fprintf(stderr, "fidelio profile: %s\n", err);
            rc = EXIT_RUNTIME;
            break;
        }
        if (!sp.exists) {
            fprintf(stderr, "fidelio profile: no profile for '%s'\n", ids[i]);
            rc = EXIT_RUNTIME;
            continue;
        }
        profile p;
        if (profile_decode(&p, prog, sp.customer_id, sp.encoding.data, sp.encoding.len, err, sizeof(err)) != 0) {
            fprintf(stderr, "fidelio profile: %s: %s\n", ids[i], err);
            profile_free(&p);
            rc = EXIT_RUNTIME;
            continue;
        }
        buf_reset(&out);
        if (profile_to_json(&p, prog, &out) == 0)
            printf("%s\n", out.data);
        profile_free(&p);
    }
    store_profile_free(&sp);
    buf_free(&out);
    return rc;
}

static int inspect(int argc, char **argv, int is_ledger)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"rules", required_argument, NULL, 'r'},
                                             {"count", required_argument, NULL, 'n'},
                                             {"all", no_argument, NULL, 'A'},
                                             {0, 0, 0, 0}};
    const char *help = is_ledger ? ledger_help : profile_help, *rules = NULL;
    cli_common cc = {0};
    config cfg;
    program *prog = NULL;
    long count = 20;
    int opt, rc = EXIT_USAGE, all = 0;
    char *end, err[1024];
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "r:n:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); cli_common_free(&cc); return EXIT_OK;
        case 'r': rules = optarg; break;
        case 'A': all = 1; break;
        case 'n':
            errno = 0;
            count = strtol(optarg, &end, 10);
            if (errno || *end || count <= 0) {
                fprintf(stderr, "fidelio ledger: -n takes a count > 0\n");
                goto out_cc;
            }
            break;
        default:
            if (cli_default_opt(&cc, opt, optarg, help) != 0)
                goto out_cc;
        }
    }
    if (is_ledger && argc - optind != 1) {
        fprintf(stderr, "fidelio ledger: takes one CUSTOMER_ID, got %d (see fidelio ledger --help)\n", argc - optind);
        goto out_cc;
    }
    if (!is_ledger && all && optind < argc) {
        fprintf(stderr, "fidelio profile: --all takes no CUSTOMER_ID (got '%s')\n", argv[optind]);
        goto out_cc;
    }
    if (!is_ledger && !all && optind >= argc) {
        fprintf(stderr, "fidelio profile: expected CUSTOMER_ID... or --all (see fidelio profile --help)\n");
        goto out_cc;
    }
    if ((rc = cli_load_config(&cc, &cfg)) != EXIT_OK)
        goto out_cfg;
    if (!is_ledger && (rc = cli_load_program(&cfg, rules, &prog)) != EXIT_OK)
        goto out_cfg;
    rc = EXIT_RUNTIME;
    store *s = store_open_readonly(cfg.redis_url, cfg.key_prefix, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "fidelio: %s\n", err);
        goto out_prog;
    }
    buf out = {0};
    if (is_ledger) {
        store_profile sp = {.customer_id = argv[optind]};
        store_seen none;
        if (store_fetch(s, &sp, 1, &none, 0, err, sizeof(err)) != 0 ||
            (sp.exists && store_ledger(s, argv[optind], count, &out, err, sizeof(err)) != 0))
            fprintf(stderr, "fidelio ledger: %s\n", err);
        else if (!sp.exists) /* as `profile` does: an unknown customer is not an empty ledger */
            fprintf(stderr, "fidelio ledger: no profile for '%s'\n", argv[optind]);
        else {
            fputs(out.data ? out.data : "", stdout);
            rc = EXIT_OK;
        }
        store_profile_free(&sp);
    } else if (all) {
        if (store_customers(s, &out, err, sizeof(err)) != 0) {
            fprintf(stderr, "fidelio profile: %s\n", err);
        } else {
            int n = 0;
            for (size_t i = 0; i < out.len; i++)
                n += out.data[i] == '\n';
            char **ids = calloc((size_t)n + 1, sizeof(*ids));
            char *save = NULL;
            int k = 0;
            for (char *tok = out.len ? strtok_r(out.data, "\n", &save) : NULL; ids && tok;
                 tok = strtok_r(NULL, "\n", &save))
                ids[k++] = tok;
            if (ids) {
                qsort(ids, (size_t)k, sizeof(*ids), cmp_str);
                rc = print_profiles(s, prog, ids, k);
            }
            free(ids);
        }
    } else {
        rc = print_profiles(s, prog, argv + optind, argc - optind);
    }
    buf_free(&out);
    store_close(s);
out_prog:
    cli_program_free(prog);
out_cfg:
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}

int cmd_profile(int argc, char **argv) { return inspect(argc, argv, 0); }
int cmd_ledger(int argc, char **argv) { return inspect(argc, argv, 1); }
