/* cmd_dashboard.c - `fidelio dashboard`: the control room of a namespace without a pipeline. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "program.h"
#include "report.h"
#include "store.h"
#include "version.h"

static const char help[] =
    "usage: fidelio dashboard [-c FILE] [-r RULES] [--set KEY=VALUE]... [--port N]\n\n"
    "Serve the control room (/) and /api/report (= `fidelio report --json`) of the\n"
    "namespace redis.key_prefix on http.bind:http.port, read-only, until SIGINT or\n"
    "SIGTERM; /healthz, /readyz (Redis reachable) and /metrics as well. Throughput and\n"
    "lag are shown only by the control room of a running `fidelio run`.\n\n"
    "  -r, --rules FILE      rule program giving the order of ladders and rules\n"
    "  -p, --port N          shorthand for --set http.port=N\n" CLI_COMMON_HELP;

int cmd_dashboard(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"rules", required_argument, NULL, 'r'},
                                             {"port", required_argument, NULL, 'p'},
                                             {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    program *prog = NULL;
    const char *rules = NULL;
    char port_set[64] = "";
    int opt, rc = EXIT_USAGE;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "r:p:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); cli_common_free(&cc); return EXIT_OK;
        case 'r': rules = optarg; break;
        case 'p':
            snprintf(port_set, sizeof(port_set), "http.port=%s", optarg);
            if (cli_common_opt(&cc, 'S', port_set) < 0)
                goto out_cc;
            break;
        default:
            if (cli_default_opt(&cc, opt, optarg, help) != 0)
                goto out_cc;
        }
    }
    if ((rc = cli_setup(&cc, "dashboard", argc, argv, rules, &cfg, &prog)) != EXIT_OK)
        goto out_cc;
    if (cfg.http_port == 0) {
        fprintf(stderr, "fidelio dashboard: http.port is 0: nothing to serve on\n");
        rc = EXIT_USAGE;
        goto out_prog;
    }
    char err[1024];
    cli_install_signals();
    metrics_process_start(FIDELIO_VERSION, rd_kafka_version_str());
    metrics_set(M_PROGRAM_INFO, 1, prog->version, prog->digest);
    /* the main thread watches Redis for /readyz; the server's thread has its own connection */
    store *watch = store_open_readonly(cfg.redis_url, cfg.key_prefix, err, sizeof(err));
    if (!watch) {
        log_error("%s", err);
        rc = EXIT_RUNTIME;
        goto out_prog;
    }
    metrics_set(M_REDIS_UP, 1);
    report_source rs = {.redis_url = cfg.redis_url, .key_prefix = cfg.key_prefix, .prog = prog};
    http_opts ho = {.bind = cfg.http_bind, .port = (int)cfg.http_port, .liveness_timeout_ms = cfg.liveness_timeout_ms,
                    .report = report_source_json, .report_ctx = &rs};
    http_server *http = http_start(&ho, err, sizeof(err));
    if (!http) {
        log_error("%s", err);
        store_close(watch);
        rc = EXIT_RUNTIME;
        goto out_prog;
    }
    log_info("control room of namespace '%s' at http://%s:%d/", cfg.key_prefix, cfg.http_bind, (int)cfg.http_port);
    for (int tick = 0; !cli_stop; tick++) {
        metrics_heartbeat();
        if (tick % 5 == 0) {
            bool up = store_ping(watch, err, sizeof(err)) == 0;
            if (!up && metrics_value(M_REDIS_UP) > 0)
                log_warn("redis unreachable: %s", err);
            metrics_set(M_REDIS_UP, up);
        }
        usleep(200000);
    }
    http_stop(http);
    report_source_close(&rs);
    store_close(watch);
    rc = EXIT_OK;
out_prog:
    cli_program_free(prog);
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
