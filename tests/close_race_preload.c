/* close_race_preload.c - an LD_PRELOAD library for tests/e2e_close_race.sh:
 * it forces, in the real librdkafka, the interleaving behind a rare hang of
 * `fidelio run` at shutdown (seen once in ~30 runs), so the test sees it
 * every time instead of by chance. Nothing is replaced: every call goes on
 * to librdkafka; the library only holds two threads at chosen points.
 *
 * The hang (librdkafka 2.0.2, the kind of
 * https://github.com/confluentinc/librdkafka/issues/4041): the rebalance
 * callback that rd_kafka_consumer_close serves answers the revoke
 * (rd_kafka_assign(rk, NULL) or rd_kafka_incremental_unassign), which lets
 * the group finish leaving. Any op request the callback makes after that
 * answer (rd_kafka_assignment(), rd_kafka_rebalance_protocol(), ...) is
 * queued on the handle's main queue; when librdkafka's main thread has
 * already taken the batch holding the LeaveGroup response, it then
 * terminates the group and purges that queue (rd_kafka_cgrp_terminated:
 * rd_kafka_q_purge destroys the request without a reply), and the
 * application thread waits for the reply forever.
 *
 * Held points, only once rd_kafka_consumer_close has been called:
 *  - the application thread, right after its revoke answer, until librdkafka's
 *    main thread logs the LeaveGroup response (debug context "cgrp": the test
 *    sets kafka.debug=cgrp);
 *  - librdkafka's main thread, in that log line (inside the batch it took,
 *    before the group terminates), until the application thread has returned
 *    from the answer, then HOLD_MS more: whatever the callback asks next is
 *    then queued behind the batch being served.
 * Each hold is bounded (a second at most, then a few), so a run without the
 * bug only pays that time. A line "close-race: ..." on stderr says the
 * interleaving was forced (the test checks it, so it cannot pass vacuously). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#define HOLD_MS 500

typedef void (*log_cb_fn)(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

static log_cb_fn app_log_cb;          /* the application's log callback (one for every handle) */
static atomic_int closing;            /* rd_kafka_consumer_close has been called */
static atomic_int leave_seen;         /* the main thread is serving the LeaveGroup response */
static atomic_int answered;           /* the application thread returned from its revoke answer */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wait up to limit_ms for *flag. */
static int wait_flag(atomic_int *flag, int limit_ms)
{
    for (int t = 0; t < limit_ms && !atomic_load(flag); t += 5)
        sleep_ms(5);
    return atomic_load(flag);
}

static void *next_fn(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f)
        fprintf(stderr, "close-race: %s not found\n", name);
    return f;
}

/* librdkafka's log lines reach the application through here (called in
 * librdkafka's threads): the LeaveGroup response during close holds the
 * main thread in the window described above. */
static void held_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (atomic_load(&closing) && !strcmp(fac, "LEAVEGROUP") && strstr(buf, "response received")) {
        atomic_store(&leave_seen, 1);
        int ok = wait_flag(&answered, 1000);
        fprintf(stderr, "close-race: librdkafka's main thread held in the LeaveGroup response%s\n",
                ok ? " after the revoke was answered" : " (no revoke answer seen)");
        sleep_ms(HOLD_MS);
    }
    if (app_log_cb)
        app_log_cb(rk, level, fac, buf);
}

void rd_kafka_conf_set_log_cb(rd_kafka_conf_t *conf, log_cb_fn cb)
{
    void (*real)(rd_kafka_conf_t *, log_cb_fn) = (void (*)(rd_kafka_conf_t *, log_cb_fn))next_fn(__func__);
    app_log_cb = cb;
    if (real)
        real(conf, held_log);
}

rd_kafka_resp_err_t rd_kafka_consumer_close(rd_kafka_t *rk)
{
    rd_kafka_resp_err_t (*real)(rd_kafka_t *) = (rd_kafka_resp_err_t (*)(rd_kafka_t *))next_fn(__func__);
    atomic_store(&closing, 1);
    return real ? real(rk) : RD_KAFKA_RESP_ERR__FAIL;
}

/* After the revoke's answer during close: wait for the main thread to be in the window. */
static void after_answer(void)
{
    if (!atomic_load(&closing))
        return;
    wait_flag(&leave_seen, 5000);
    atomic_store(&answered, 1);
}

rd_kafka_resp_err_t rd_kafka_assign(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *partitions)
{
    rd_kafka_resp_err_t (*real)(rd_kafka_t *, const rd_kafka_topic_partition_list_t *) =
        (rd_kafka_resp_err_t (*)(rd_kafka_t *, const rd_kafka_topic_partition_list_t *))next_fn(__func__);
    rd_kafka_resp_err_t err = real ? real(rk, partitions) : RD_KAFKA_RESP_ERR__FAIL;
    if (!partitions)
        after_answer();
    return err;
}

rd_kafka_error_t *rd_kafka_incremental_unassign(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *partitions)
{
    rd_kafka_error_t *(*real)(rd_kafka_t *, const rd_kafka_topic_partition_list_t *) =
        (rd_kafka_error_t * (*)(rd_kafka_t *, const rd_kafka_topic_partition_list_t *)) next_fn(__func__);
    rd_kafka_error_t *error = real ? real(rk, partitions) : NULL;
    after_answer();
    return error;
}
