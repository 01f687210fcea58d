/* http.h - the embedded HTTP server (libmicrohttpd) of `fidelio run` and
 * `fidelio dashboard`.
 *
 *   GET /metrics      the metrics registry, Prometheus text format
 *   GET /healthz      200 while the main loop beats (metrics_heartbeat) within
 *                     the liveness timeout, else 503
 *   GET /readyz       200 when Redis answers and (run) partitions are assigned
 *   GET /api/report   the programme report as JSON: exactly `fidelio report --json`
 *   GET /             the control room: one self-contained HTML page that
 *                     fetches /api/report and /metrics and refreshes itself
 *
 * The server answers from its own thread, one request at a time; the report
 * callback runs on that thread (it must use its own Redis connection). */
#ifndef FIDELIO_HTTP_H
#define FIDELIO_HTTP_H

#include <stddef.h>

#include "buf.h"

typedef struct http_server http_server;

/* Fill out with the report's JSON. Returns 0, or -1 with err (served as 503). */
typedef int (*http_report_fn)(void *ctx, buf *out, char *err, size_t errlen);

typedef struct http_opts {
    const char *bind;               /* numeric IPv4 or IPv6 address */
    int port;                       /* 1..65535 */
    long long liveness_timeout_ms;  /* /healthz fails when the loop is quieter than this */
    http_report_fn report;          /* may be NULL: /api/report answers 404 */
    void *report_ctx;
} http_opts;

/* Bind and start serving. NULL with err (e.g. the port is taken). */
http_server *http_start(const http_opts *o, char *err, size_t errlen);
/* Stop serving and free the server (NULL is fine). */
void http_stop(http_server *h);

#endif
