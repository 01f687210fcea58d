/* timeutil.c - UTC calendar arithmetic (H. Hinnant's civil-date algorithms). */
#include "timeutil.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

int64_t time_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void time_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int time_parse_iso8601(const char *s, int64_t *out_ms)
{
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec = 0, ms = 0;
    const char *p = s;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
        return -1;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
        return -1;
    if (*p == ':') {
        p++;
        if (digits(&p, 2, &sec))
            return -1;
        if (*p == '.' || *p == ',') {
            p++;
            int n = 0;
            while (isdigit((unsigned char)*p)) {
                if (n < 3)
                    ms = ms * 10 + (*p - '0');
                n++;
                p++;
            }
            if (n == 0 || n > 9)
                return -1;
            for (; n < 3; n++)
                ms *= 10;
        }
    }
    int64_t offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
            return -1;
        offset_min = sign * (oh * 60 + om);
    } else {
        return -1;
    }
    if (*p != '\0')
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59)
        return -1;
    unsigned maxd = mdays[mo - 1] + (mo == 2 && is_leap(y));
    if ((unsigned)d > maxd)
        return -1;
    int64_t days = time_days_from_civil(y, (unsigned)mo, (unsigned)d);
    *out_ms = ((days * 24 + h) * 60 + mi - offset_min) * 60000 + (int64_t)sec * 1000 + ms;
    return 0;
}

/* Split ms into a day number and the milliseconds into that day without
 * overflow anywhere in the int64 range (ms - days * MS_PER_DAY would wrap
 * below INT64_MIN for the lowest days). */
static int64_t split_day(int64_t ms, int64_t *rem)
{
    int64_t q = ms / TIME_MS_PER_DAY, r = ms % TIME_MS_PER_DAY;
    if (r < 0) {
        q--;
        r += TIME_MS_PER_DAY;
    }
    *rem = r;
    return q;
}

int time_format_iso8601(int64_t ms, char *out, size_t outlen)
{
    int64_t rem;
    int64_t days = split_day(ms, &rem);
    int64_t y;
    unsigned m, d;
    time_civil_from_days(days, &y, &m, &d);
    snprintf(out, outlen, "%s%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", y < 0 ? "-" : "",
             (long long)(y < 0 ? -y : y), m, d, (int)(rem / 3600000), (int)(rem / 60000 % 60),
             (int)(rem / 1000 % 60), (int)(rem % 1000));
    return y >= 0 && y <= 9999 ? 0 : -1;
}

int64_t time_day_index(int64_t ms)
{
    int64_t rem;
    return split_day(ms, &rem);
}

int64_t time_iso_week_index(int64_t ms)
{
    int64_t days = time_day_index(ms);
    /* 1970-01-01 was a Thursday; ISO weekday 1 = Monday. */
    int64_t wd = floor_div(days + 3, 7) * 7; /* Monday of this week */
    int64_t thursday = wd + 3;               /* the week belongs to its Thursday's year */
    int64_t y;
    unsigned m, d;
    time_civil_from_days(thursday, &y, &m, &d);
    int64_t jan1 = time_days_from_civil(y, 1, 1);
    int64_t week = (thursday - jan1) / 7 + 1;
    return y * 100 + week;
}

int64_t time_month_index(int64_t ms)
{
    int64_t y;
    unsigned m, d;
    time_civil_from_days(time_day_index(ms), &y, &m, &d);
    return y * 12 + (m - 1);
}
