/* cmd_run.c - `fidelio run`: the streaming pipeline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "pipeline.h"
#include "program.h"
#include "registry.h"
#include "store.h"
#include "report.h"
#include "version.h"

static const char help[] =
    "usage: fidelio run [-c FILE] [-r RULES] [--set KEY=VALUE]... [--until-idle]\n\n"
    "Join the consumer group (consumer.group) on the touchpoints and credits topics,\n"
    "keep profiles in Redis (redis.url), and publish rewards, stage changes and\n"
    "credits; bad input goes to the DLQ topic. Effects are applied exactly once:\n"
    "a redelivered event changes nothing and re-emits its recorded outputs.\n"
    "SIGINT/SIGTERM: finish the batch, flush, commit, leave the group, exit 0.\n"
    "Serves /metrics, /healthz, /readyz, /api/report and the control room (/) on\n"
    "http.bind:http.port (default 127.0.0.1:9464; http.port=0: none).\n\n"
    "At start-up the program is checked against the namespace (redis.key_prefix):\n"
    "one that would orphan stored stages is refused (exit 2) unless it declares\n"
    "renamed_from or retired_stages; the same version with another content\n"
    "digest is warned about; then the program is recorded as the namespace's.\n\n"
    "  -r, --rules FILE      rule program (default: rules.path, else built-in)\n"
    "      --until-idle      exit 0 once every assigned partition is consumed to its\n"
    "                        end (a backfill or replay; also used by the tests)\n" CLI_COMMON_HELP;

/* Before consuming: the program must not orphan stages stored in the
 * namespace (exit 2), a same-version program with another digest is warned
 * about, and the program is recorded as the namespace's. */
static int check_namespace(const config *cfg, const program *prog)
{
    char err[1024];
    buf notes = {0};
    store *st = store_open(cfg->redis_url, cfg->key_prefix, cfg->dedupe_retention_ms, cfg->ledger_max, err,
                           sizeof(err));
    if (!st) {
        log_error("%s", err);
        return EXIT_RUNTIME;
    }
    registry_result rr = registry_check(st, prog, true, &notes, err, sizeof(err));
    store_close(st);
    for (char *line = notes.data, *nl; line && (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0';
        log_warn("%s", line);
    }
    buf_free(&notes);
    if (rr == REGISTRY_OK)
        return EXIT_OK;
    log_error("%s", err);
    return rr == REGISTRY_REFUSED ? EXIT_USAGE : EXIT_RUNTIME;
}

/* What a SIGHUP reload needs, and every program loaded since the start:
 * none is freed before exit (the HTTP thread may still be reading one). */
typedef struct run_reload {
    const config *cfg;
    const char *rules;          /* -r, or NULL: rules.path */
    report_source *rs;          /* its program follows the pipeline's */
    program **loaded;           /* owned */
    size_t nloaded;
} run_reload;

/* Load the rule program again and check it against the namespace like at
 * start-up (an orphaning program is refused); see pipeline_reload_fn. */
static const program *reload_rules(void *ctx, char *err, size_t errlen)
{
    run_reload *r = ctx;
    char resolved[4096];
    const char *path = r->rules;
    if (!path && config_rules_path(r->cfg, resolved, sizeof(resolved)) != 0) {
        snprintf(err, errlen, "rules.path is too long");
        return NULL;
    }
    if (!path)
        path = resolved;
    program **grown = realloc(r->loaded, (r->nloaded + 1) * sizeof(*grown));
    program *prog = malloc(sizeof(*prog));
    if (grown)
        r->loaded = grown;
    if (!grown || !prog) {
        free(prog);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (program_load(prog, path, err, errlen) != 0) {
        cli_program_free(prog);
        return NULL;
    }
    buf notes = {0};
    store *st = store_open(r->cfg->redis_url, r->cfg->key_prefix, r->cfg->dedupe_retention_ms, r->cfg->ledger_max,
                           err, errlen);
    registry_result rr = st ? registry_check(st, prog, true, &notes, err, errlen) : REGISTRY_ERROR;
    store_close(st);
    for (char *line = notes.data, *nl; line && (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0';
        log_warn("%s", line);
    }
    buf_free(&notes);
    if (rr != REGISTRY_OK) {
        cli_program_free(prog);
        return NULL;
    }
    r->loaded[r->nloaded++] = prog;
    __atomic_store_n(&r->rs->prog, prog, __ATOMIC_RELEASE);
    return prog;
}

int cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"rules", required_argument, NULL, 'r'},
                                             {"until-idle", no_argument, NULL, 'U'},
                                             {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    program *prog = NULL;
    const char *rules = NULL;
    pipeline_opts opts = {.idle_grace_ms = 2000};
    int opt, rc = EXIT_USAGE;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "r:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); cli_common_free(&cc); return EXIT_OK;
        case 'r': rules = optarg; break;
        case 'U': opts.until_idle = true; break;
        default:
            if (cli_default_opt(&cc, opt, optarg, help) != 0)
                goto out_cc;
        }
    }
    if ((rc = cli_setup(&cc, "run", argc, argv, rules, &cfg, &prog)) != EXIT_OK)
        goto out_cc;
    cli_install_signals();
    cli_install_hup();
    pipeline_stats st;
    char err[1024];
    if ((rc = check_namespace(&cfg, prog)) != EXIT_OK)
        goto out_prog;
    report_source rs = {.redis_url = cfg.redis_url, .key_prefix = cfg.key_prefix, .prog = prog};
    run_reload rl = {.cfg = &cfg, .rules = rules, .rs = &rs};
    opts.reload = reload_rules;
    opts.reload_ctx = &rl;
    http_server *http = NULL;
    metrics_process_start(FIDELIO_VERSION, rd_kafka_version_str());
    if (cfg.http_port > 0) {
        http_opts ho = {.bind = cfg.http_bind, .port = (int)cfg.http_port,
                        .liveness_timeout_ms = cfg.liveness_timeout_ms, .report = report_source_json,
                        .report_ctx = &rs};
        if (!(http = http_start(&ho, err, sizeof(err)))) {
            log_error("%s (set http.port to another port, or 0 for no HTTP server)", err);
            rc = EXIT_RUNTIME;
            goto out_prog;
        }
    }
    if (pipeline_run(&cfg, prog, &opts, &st, err, sizeof(err)) != 0) {
        log_error("%s", err);
        rc = EXIT_RUNTIME;
    } else {
        rc = EXIT_OK;
    }
    http_stop(http);
    report_source_close(&rs);
    for (size_t i = 0; i < rl.nloaded; i++)
        cli_program_free(rl.loaded[i]);
    free(rl.loaded);
out_prog:
    cli_program_free(prog);
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
