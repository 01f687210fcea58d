/* log.c - leveled logging: text or JSON lines on stderr, repeated lines rate-limited. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static log_level min_level = LOG_INFO;
static log_format format = LOG_FORMAT_TEXT;
static log_handler handler;
static void *handler_opaque;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Rate limit per call site (file, line): at most `burst` lines in each
 * `window_s` seconds; the rest are counted and reported once the window
 * ends, so a flood (a broker down, a stream of bad input) stays readable. */
#define LOG_SITES 128
static int burst = 10;       /* lines per call site per window */
static int window_s = 10;    /* seconds */

typedef struct log_site {
    const char *file;      /* __FILE__ of the call site (a string literal) */
    int line;
    time_t window_start;   /* CLOCK_MONOTONIC seconds */
    int printed;           /* lines printed in this window */
    long suppressed;       /* lines dropped in this window */
} log_site;

static log_site sites[LOG_SITES];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void log_set_level(log_level level) { min_level = level; }

int log_enabled(log_level level) { return level >= min_level; }

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

const char *log_level_name(log_level level) { return level_names[level]; }

void log_set_format(log_format f) { format = f; }

void log_set_rate_limit(int lines, int seconds)
{
    pthread_mutex_lock(&lock);
    burst = lines;
    window_s = seconds;
    memset(sites, 0, sizeof(sites));
    pthread_mutex_unlock(&lock);
}

int log_format_parse(const char *s)
{
    if (!strcmp(s, "text"))
        return LOG_FORMAT_TEXT;
    if (!strcmp(s, "json"))
        return LOG_FORMAT_JSON;
    return -1;
}

void log_set_handler(log_handler fn, void *opaque)
{
    handler = fn;
    handler_opaque = opaque;
}

/* Append s to out as the inside of a JSON string. */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 7 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[n++] = '\\';
            out[n++] = (char)*p;
        } else if (*p == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else if (*p < 0x20 || *p == 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", *p);
        } else {
            out[n++] = (char)*p;
        }
    }
    out[n] = '\0';
    return n;
}

/* Write one line in the configured format. */
static void emit(log_level level, const char *file, int line, const char *msg)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    if (format == LOG_FORMAT_JSON) {
        char esc[6 * 1024 + 8];
        json_escape(esc, sizeof(esc), msg);
        fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"src\":\"%s:%d\",\"msg\":\"%s\"}\n", when,
                level_names[level], base, line, esc);
    } else {
        fprintf(stderr, "%s %-5s %s:%d %s\n", when, level_names[level], base, line, msg);
    }
}

/* Whether this call site may print now; *report gets the count of lines
 * suppressed in a window that just ended (to say so first). */
static int admit(const char *file, int line, long *report)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uintptr_t h = ((uintptr_t)file >> 3) * 31u + (unsigned)line;
    log_site *s = NULL;
    for (int probe = 0; probe < LOG_SITES; probe++) {
        log_site *c = &sites[(h + (unsigned)probe) % LOG_SITES];
        if (!c->file || (c->file == file && c->line == line)) {
            s = c;
            break;
        }
    }
    *report = 0;
    if (!s || burst <= 0) /* more call sites than slots: no limit rather than no log */
        return 1;
    if (!s->file) {
        s->file = file;
        s->line = line;
        s->window_start = ts.tv_sec;
    }
    if (ts.tv_sec - s->window_start >= window_s) {
        *report = s->suppressed;
        s->window_start = ts.tv_sec;
        s->printed = 0;
        s->suppressed = 0;
    }
    if (s->printed >= burst) {
        s->suppressed++;
        return 0;
    }
    s->printed++;
    return 1;
}

void log_write(log_level level, const char *file, int line, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (handler) { /* tests see every line */
        handler(level, file, line, msg, handler_opaque);
        return;
    }
    long suppressed;
    pthread_mutex_lock(&lock);
    int ok = admit(file, line, &suppressed);
    if (suppressed) {
        char note[160];
        snprintf(note, sizeof(note), "%ld similar line(s) from here were suppressed in the last %d s", suppressed,
                 window_s);
        emit(LOG_WARN, file, line, note);
    }
    if (ok)
        emit(level, file, line, msg);
    pthread_mutex_unlock(&lock);
}
