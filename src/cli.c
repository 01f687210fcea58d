/* cli.c - shared option handling for the subcommands. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log.h"
#include "program.h"

extern char **environ;

volatile sig_atomic_t cli_stop = 0;
volatile sig_atomic_t cli_hup = 0;

static void on_signal(int sig)
{
    (void)sig;
    cli_stop = 1;
}

static void on_hup(int sig)
{
    (void)sig;
    cli_hup = 1;
}

void cli_install_hup(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_hup;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
}

void cli_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* a write to a Redis server that went away must be an error (EPIPE) to
     * handle, not a signal that kills the process */
    signal(SIGPIPE, SIG_IGN);
}

int cli_common_opt(cli_common *cc, int opt, const char *arg)
{
    switch (opt) {
    case 'c':
        cc->config_path = arg;
        return 1;
    case 'S': {
        char **s = realloc(cc->sets, (cc->nsets + 1) * sizeof(*s));
        if (!s) {
            fprintf(stderr, "fidelio: out of memory\n");
            return -1;
        }
        cc->sets = s;
        cc->sets[cc->nsets++] = (char *)arg;
        return 1;
    }
    case 'b': {
        size_t n = strlen(arg) + 32;
        free(cc->brokers_set);
        cc->brokers_set = malloc(n);
        if (!cc->brokers_set) {
            fprintf(stderr, "fidelio: out of memory\n");
            return -1;
        }
        snprintf(cc->brokers_set, n, "kafka.bootstrap.servers=%s", arg);
        return 1;
    }
    case 'L': {
        size_t n = strlen(arg) + 16;
        free(cc->log_format_set);
        if (!(cc->log_format_set = malloc(n))) {
            fprintf(stderr, "fidelio: out of memory\n");
            return -1;
        }
        snprintf(cc->log_format_set, n, "log.format=%s", arg);
        return 1;
    }
    default:
        return 0;
    }
}

int cli_default_opt(cli_common *cc, int opt, const char *arg, const char *help)
{
    int h = cli_common_opt(cc, opt, arg);
    if (h == 0)
        fputs(help, stderr);
    return h > 0 ? 0 : -1;
}

int cli_load_config(cli_common *cc, config *cfg)
{
    char err[1024];
    const char *path = cc->config_path ? cc->config_path : getenv("FIDELIO_CONFIG");
    if (path && !*path)
        path = NULL;
    /* -b is applied as the first --set, so an explicit --set still wins. */
    size_t n = cc->nsets + (cc->brokers_set ? 1 : 0) + (cc->log_format_set ? 1 : 0);
    char **sets = calloc(n ? n : 1, sizeof(*sets));
    memset(cfg, 0, sizeof(*cfg));
    if (!sets) {
        fprintf(stderr, "fidelio: out of memory\n");
        return EXIT_USAGE;
    }
    size_t j = 0;
    if (cc->brokers_set)
        sets[j++] = cc->brokers_set;
    if (cc->log_format_set)
        sets[j++] = cc->log_format_set;
    for (size_t i = 0; i < cc->nsets; i++)
        sets[j++] = cc->sets[i];
    int rc = config_load(cfg, path, sets, n, environ, err, sizeof(err));
    free(sets);
    if (rc != 0 || kafka_check_config(cfg, err, sizeof(err)) != 0 || kafka_check_limits(cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "fidelio: configuration error: %s\n", err);
        return EXIT_USAGE;
    }
    log_set_level((log_level)log_level_parse(cfg->log_level));
    log_set_format((log_format)log_format_parse(cfg->log_format));
    return EXIT_OK;
}

void cli_common_free(cli_common *cc)
{
    free(cc->sets);
    free(cc->brokers_set);
    free(cc->log_format_set);
    cc->sets = NULL;
    cc->brokers_set = NULL;
    cc->log_format_set = NULL;
    cc->nsets = 0;
}

int cli_load_program(const config *cfg, const char *path, program **out)
{
    char resolved[4096], err[1024];
    *out = NULL;
    if (!path) {
        if (config_rules_path(cfg, resolved, sizeof(resolved)) != 0) {
            fprintf(stderr, "fidelio: configuration error: rules.path is too long\n");
            return EXIT_USAGE;
        }
        path = resolved;
    }
    program *prog = malloc(sizeof(*prog));
    if (!prog) {
        fprintf(stderr, "fidelio: out of memory\n");
        return EXIT_RUNTIME;
    }
    if (program_load(prog, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "fidelio: rule program error: %s\n", err);
        cli_program_free(prog);
        return EXIT_USAGE;
    }
    *out = prog;
    return EXIT_OK;
}

void cli_program_free(program *prog)
{
    if (!prog)
        return;
    program_free(prog);
    free(prog);
}

int cli_setup(cli_common *cc, const char *cmd, int argc, char **argv, const char *rules, config *cfg,
              struct program **prog)
{
    if (optind < argc) {
        fprintf(stderr, "fidelio %s: unexpected argument '%s'\n", cmd, argv[optind]);
        return EXIT_USAGE;
    }
    int rc = cli_load_config(cc, cfg);
    if (rc == EXIT_OK && (!prog || (rc = cli_load_program(cfg, rules, prog)) == EXIT_OK))
        return EXIT_OK;
    config_free(cfg);
    return rc;
}
