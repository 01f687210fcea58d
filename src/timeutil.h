/* timeutil.h - UTC calendar arithmetic on epoch milliseconds.
 *
 * Pure functions, no time zone database and no wall clock: the rules use
 * them on event time so that a replay computes the same windows. */
#ifndef FIDELIO_TIMEUTIL_H
#define FIDELIO_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

#define TIME_MS_PER_DAY INT64_C(86400000)

/* Days since 1970-01-01 of a proleptic Gregorian date. */
int64_t time_days_from_civil(int64_t y, unsigned m, unsigned d);
/* Date of a day number since 1970-01-01. */
void time_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);
/* Parse an ISO-8601 date-time with Z or a +hh:mm/-hh:mm offset into epoch ms.
 * Returns 0, or -1 if s is not such a date-time. */
int time_parse_iso8601(const char *s, int64_t *out_ms);
/* Format epoch ms as YYYY-MM-DDTHH:MM:SS.mmmZ into out (at least 40 bytes).
 * Safe for every int64. Returns 0, or -1 when the year is outside 0000..9999:
 * out then holds the year with as many digits as it takes (and a '-' before
 * year 0), which time_parse_iso8601 does not read back. */
int time_format_iso8601(int64_t ms, char *out, size_t outlen);
/* UTC day number of an instant (floor division, correct before 1970). */
int64_t time_day_index(int64_t ms);
/* ISO-8601 week of an instant as year*100+week (e.g. 202053). */
int64_t time_iso_week_index(int64_t ms);
/* Calendar month of an instant as year*12+month-1. */
int64_t time_month_index(int64_t ms);

#endif
