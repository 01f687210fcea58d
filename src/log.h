/* log.h - leveled logging with the caller's file and line.
 *
 * Lines go to stderr by default; log_set_handler() swaps the sink (tests use
 * it to capture or to fail on errors). */
#ifndef FIDELIO_LOG_H
#define FIDELIO_LOG_H

typedef enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

typedef void (*log_handler)(log_level level, const char *file, int line, const char *msg, void *opaque);

/* Set the lowest level that is printed. */
void log_set_level(log_level level);
/* Parse "debug", "info", "warn", "error"; returns -1 if unknown. */
int log_level_parse(const char *s);
/* Name of a level. */
const char *log_level_name(log_level level);
/* Replace the sink; NULL restores the default stderr sink. */
void log_set_handler(log_handler fn, void *opaque);
void log_write(log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_debug(...) log_write(LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

#endif
