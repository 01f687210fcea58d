/* log.h - leveled logging with the caller's file and line.
 *
 * Lines go to stderr by default, as text or as JSON objects (one a line:
 * ts, level, src, msg); log_set_handler() swaps the sink (tests use it to
 * capture or to fail on errors). Each call site prints at most 10 lines per
 * 10 s; what it drops is counted and reported in one line when the window
 * ends. Callers never pass secrets (configuration values are printed masked
 * by config_dump; URLs with passwords are not logged). */
#ifndef FIDELIO_LOG_H
#define FIDELIO_LOG_H

typedef enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;
typedef enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON } log_format;

typedef void (*log_handler)(log_level level, const char *file, int line, const char *msg, void *opaque);

/* Set the lowest level that is printed. */
void log_set_level(log_level level);
/* Whether lines of this level are printed (skip work whose only use is such a line). */
int log_enabled(log_level level);
/* Parse "debug", "info", "warn", "error"; returns -1 if unknown. */
int log_level_parse(const char *s);
/* Name of a level. */
const char *log_level_name(log_level level);
/* Text (default) or JSON lines. */
void log_set_format(log_format f);
/* At most lines lines per call site per seconds seconds (default 10 per 10 s;
 * lines <= 0: no limit). */
void log_set_rate_limit(int lines, int seconds);
/* Parse "text" or "json"; returns -1 if unknown. */
int log_format_parse(const char *s);
/* Replace the sink; NULL restores the default stderr sink. */
void log_set_handler(log_handler fn, void *opaque);
void log_write(log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_debug(...) log_write(LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

#endif
