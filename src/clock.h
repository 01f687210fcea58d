/* clock.h - the two clocks Fidelio reads: a monotonic one for durations and
 * rates, and the wall clock in epoch ms (bounds event times and timestamps
 * outputs; never decides a rule, which read event time only). */
#ifndef FIDELIO_CLOCK_H
#define FIDELIO_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Seconds on CLOCK_MONOTONIC. */
static inline double clock_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The wall clock in epoch milliseconds. */
static inline int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
