/* http.c - /metrics, /healthz, /readyz, /api/report and the control room over libmicrohttpd. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "embedded.h"
#include "log.h"
#include "metrics.h"

struct http_server {
    struct MHD_Daemon *d;
    http_opts o;
    char bind[64];
};

/* Queue a response with a copy of body. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, const char *body,
                             size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return reply(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    http_server *h = cls;
    /* the first call only announces the request: answer on the second */
    if (!*con_cls) {
        *con_cls = h;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
    char line[256];
    if (!strcmp(url, "/metrics")) {
        buf b = {0};
        if (metrics_render(&b) != 0) {
            buf_free(&b);
            return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        }
        enum MHD_Result ok = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        buf_free(&b);
        return ok;
    }
    if (!strcmp(url, "/healthz")) {
        double age;
        bool alive = metrics_alive(h->o.liveness_timeout_ms, &age);
        if (age < 0)
            snprintf(line, sizeof(line), "starting: the main loop has not run yet\n");
        else
            snprintf(line, sizeof(line), "%s: main loop last ran %.1f s ago (limit %.1f s)\n",
                     alive ? "ok" : "stuck", age, h->o.liveness_timeout_ms / 1000.0);
        return reply_text(c, alive ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, line);
    }
    if (!strcmp(url, "/readyz")) {
        char why[128];
        bool ready = metrics_ready(why, sizeof(why));
        snprintf(line, sizeof(line), "%s\n", why);
        return reply_text(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, line);
    }
    if (!strcmp(url, "/api/report") && h->o.report) {
        buf b = {0};
        char err[512];
        enum MHD_Result ok;
        if (h->o.report(h->o.report_ctx, &b, err, sizeof(err)) != 0) {
            buf_free(&b);
            snprintf(line, sizeof(line), "{\"error\": \"report unavailable\"}\n");
            log_warn("GET /api/report: %s", err);
            return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", line, strlen(line));
        }
        ok = reply(c, MHD_HTTP_OK, "application/json", b.data, b.len);
        buf_free(&b);
        return ok;
    }
    if (!strcmp(url, "/") || !strcmp(url, "/index.html"))
        return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", embedded_control_room_html,
                     strlen(embedded_control_room_html));
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: try /, /metrics, /healthz, /readyz, /api/report\n");
}

/* libmicrohttpd's own messages go through Fidelio's logger. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_warn("http: %s", msg);
}

http_server *http_start(const http_opts *o, char *err, size_t errlen)
{
    http_server *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->o = *o;
    snprintf(h->bind, sizeof(h->bind), "%s", o->bind);
    h->o.bind = h->bind;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, o->bind, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)o->port);
    } else if (inet_pton(AF_INET6, o->bind, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)o->port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, errlen, "http.bind '%s' is not a numeric IPv4 or IPv6 address", o->bind);
        free(h);
        return NULL;
    }
    errno = 0;
    h->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
                            on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, errlen, "http: cannot listen on %s port %d%s%s", o->bind, o->port, errno ? ": " : "",
                 errno ? strerror(errno) : "");
        free(h);
        return NULL;
    }
    log_info("http: serving /, /metrics, /healthz, /readyz, /api/report on %s%s%s:%d", v6->sin6_family == AF_INET6 ? "[" : "",
             o->bind, v6->sin6_family == AF_INET6 ? "]" : "", o->port);
    return h;
}

void http_stop(http_server *h)
{
    if (!h)
        return;
    if (h->d)
        MHD_stop_daemon(h->d);
    free(h);
}
