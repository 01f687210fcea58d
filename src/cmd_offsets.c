/* cmd_offsets.c - `fidelio offsets`: show, and with --execute commit, new
 * offsets of a consumer group on the touchpoints topic (reprocessing the live
 * group), refusing while the group has members. The commit is a "simple"
 * commit (a consumer with the group id that assigns, never subscribes), so
 * it neither joins nor disturbs the group. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "clock.h"
#include "kafka.h"
#include "timeutil.h"

#define OFFSETS_TIMEOUT_MS 15000

static const char help[] =
    "usage: fidelio offsets [-c FILE] [--set KEY=VALUE]... [-b BROKERS] [--group G] [-t TOPIC]\n"
    "                       --reset-to beginning|TIMESTAMP [--execute]\n\n"
    "Show the committed offsets of a consumer group on the touchpoints topic and\n"
    "the offsets --reset-to would commit (beginning, or the first message at or\n"
    "after TIMESTAMP: ISO-8601 or epoch ms), how many events that reprocesses per\n"
    "partition, and how many of them are older (message time) than now minus\n"
    "pipeline.dedupe_retention_ms: replayed into the namespace that already holds\n"
    "them, those go to the DLQ (older_than_dedupe_window) once their customer's\n"
    "records were trimmed. With --execute the new offsets are committed. Refused\n"
    "(exit 1) while the group has members: stop every `fidelio run` of it first.\n\n"
    "      --group G         consumer group (default: consumer.group)\n"
    "  -t, --topic TOPIC     topic (default: topics.touchpoints)\n"
    "      --reset-to WHERE  beginning, or a timestamp (ISO-8601 or epoch ms)\n"
    "      --execute         commit the new offsets (default: only show them)\n" CLI_COMMON_HELP;

/* The group's state and member count (ListGroups + DescribeGroups through
 * rd_kafka_list_groups: DescribeConsumerGroups of librdkafka 2.0.2 leaks a
 * reference when the broker lacks the API, and the handle's destroy then
 * hangs). 0 or -1 with err. */
static int describe_group(rd_kafka_t *rk, const char *group, char *state, size_t statelen, size_t *members,
                          char *err, size_t errlen)
{
    const struct rd_kafka_group_list *gl = NULL;
    rd_kafka_resp_err_t e = rd_kafka_list_groups(rk, group, &gl, OFFSETS_TIMEOUT_MS);
    if (e) {
        snprintf(err, errlen, "describing group '%s': %s", group, rd_kafka_err2str(e));
        return -1;
    }
    int rc = -1;
    if (gl->group_cnt == 0) { /* the broker knows no such group: nothing committed, nobody in it */
        snprintf(state, statelen, "Dead");
        *members = 0;
        rc = 0;
    } else if (gl->groups[0].err) {
        snprintf(err, errlen, "describing group '%s': %s", group, rd_kafka_err2str(gl->groups[0].err));
    } else {
        snprintf(state, statelen, "%s", gl->groups[0].state ? gl->groups[0].state : "?");
        *members = gl->groups[0].member_cnt > 0 ? (size_t)gl->groups[0].member_cnt : 0;
        rc = 0;
    }
    rd_kafka_group_list_destroy(gl);
    return rc;
}

/* Offsets at time t (offsets_for_times) of every partition of list; a partition
 * with no message at or after t gets its high watermark. */
static int offsets_at(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *list, int64_t t, const int64_t *high,
                      char *err, size_t errlen)
{
    for (int i = 0; i < list->cnt; i++)
        list->elems[i].offset = t;
    rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk, list, OFFSETS_TIMEOUT_MS);
    if (e) {
        snprintf(err, errlen, "offsets for times: %s", rd_kafka_err2str(e));
        return -1;
    }
    for (int i = 0; i < list->cnt; i++) {
        if (list->elems[i].err) {
            snprintf(err, errlen, "offsets for times of partition %" PRId32 ": %s", list->elems[i].partition,
                     rd_kafka_err2str(list->elems[i].err));
            return -1;
        }
        if (list->elems[i].offset < 0)
            list->elems[i].offset = high[i];
    }
    return 0;
}

static int offsets(const config *cfg, const char *group, const char *topic, const char *where, int execute)
{
    char err[512], why[256];
    int rc = EXIT_RUNTIME;
    int64_t at = -1; /* -1: beginning */
    if (strcmp(where, "beginning") != 0) {
        char *end;
        errno = 0;
        long long ms = strtoll(where, &end, 10);
        if (!errno && *where && !*end && ms >= 0)
            at = ms;
        else if (time_parse_iso8601(where, &at) != 0 || at < 0) {
            fprintf(stderr, "fidelio offsets: --reset-to '%s': beginning, an ISO-8601 time or epoch ms\n", where);
            return EXIT_USAGE;
        }
    }
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, err, sizeof(err));
    if (!conf || kafka_conf_set(conf, "group.id", group, err, sizeof(err)) ||
        kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err))) {
        if (conf)
            rd_kafka_conf_destroy(conf);
        fprintf(stderr, "fidelio offsets: %s\n", err);
        return EXIT_USAGE;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, "fidelio offsets: %s\n", why);
        return EXIT_RUNTIME;
    }
    rd_kafka_topic_partition_list_t *list = NULL, *horizon = NULL;
    int64_t *low = NULL, *high = NULL, *committed = NULL;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, OFFSETS_TIMEOUT_MS) : RD_KAFKA_RESP_ERR__FAIL;
    if (e || !md || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        fprintf(stderr, "fidelio offsets: topic '%s': %s\n", topic,
                rd_kafka_err2str(e ? e : md && md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__FAIL));
        goto out;
    }
    int np = md->topics[0].partition_cnt;
    char state[64];
    size_t members = 0;
    int drc = describe_group(rk, group, state, sizeof(state), &members, err, sizeof(err));
    if (drc != 0) /* dev-kafka (the mock) has no DescribeGroups: show, never commit */
        printf("# group %s: members unknown (%s); topic %s, %d partition(s)\n", group, err, topic, np);
    else
        printf("# group %s: %s, %zu member(s); topic %s, %d partition(s)\n", group, state, members, topic, np);
    list = rd_kafka_topic_partition_list_new(np);
    horizon = rd_kafka_topic_partition_list_new(np);
    low = calloc((size_t)np, sizeof(*low));
    high = calloc((size_t)np, sizeof(*high));
    committed = calloc((size_t)np, sizeof(*committed));
    if (!list || !horizon || !low || !high || !committed) {
        fprintf(stderr, "fidelio offsets: out of memory\n");
        goto out;
    }
    for (int i = 0; i < np; i++) {
        int32_t p = md->topics[0].partitions[i].id;
        rd_kafka_topic_partition_list_add(list, topic, p);
        rd_kafka_topic_partition_list_add(horizon, topic, p);
        e = rd_kafka_query_watermark_offsets(rk, topic, p, &low[i], &high[i], OFFSETS_TIMEOUT_MS);
        if (e) {
            fprintf(stderr, "fidelio offsets: watermarks of %s[%" PRId32 "]: %s\n", topic, p, rd_kafka_err2str(e));
            goto out;
        }
    }
    e = rd_kafka_committed(rk, list, OFFSETS_TIMEOUT_MS);
    if (e) {
        fprintf(stderr, "fidelio offsets: committed offsets of group '%s': %s\n", group, rd_kafka_err2str(e));
        goto out;
    }
    for (int i = 0; i < np; i++)
        committed[i] = list->elems[i].offset;
    if (at < 0) {
        for (int i = 0; i < np; i++)
            list->elems[i].offset = low[i];
    } else if (offsets_at(rk, list, at, high, err, sizeof(err)) != 0) {
        fprintf(stderr, "fidelio offsets: %s\n", err);
        goto out;
    }
    int64_t cutoff = clock_wall_ms() - cfg->dedupe_retention_ms;
    if (offsets_at(rk, horizon, cutoff, high, err, sizeof(err)) != 0) {
        fprintf(stderr, "fidelio offsets: %s\n", err);
        goto out;
    }
    long long total = 0, old = 0;
    printf("%-10s %12s %12s %12s %12s\n", "partition", "committed", "new", "reprocess", "past-window");
    for (int i = 0; i < np; i++) {
        int64_t nw = list->elems[i].offset, re = high[i] - nw, past = horizon->elems[i].offset - nw;
        if (re < 0)
            re = 0;
        if (past < 0)
            past = 0;
        total += re;
        old += past;
        char cbuf[24];
        if (committed[i] >= 0)
            snprintf(cbuf, sizeof(cbuf), "%" PRId64, committed[i]);
        else
            snprintf(cbuf, sizeof(cbuf), "none");
        printf("%-10" PRId32 " %12s %12" PRId64 " %12" PRId64 " %12" PRId64 "\n", list->elems[i].partition, cbuf, nw,
               re, past);
    }
    char cut[40];
    time_format_iso8601(cutoff, cut, sizeof(cut));
    printf("# %lld event(s) to reprocess; %lld of them older than %s (now - pipeline.dedupe_retention_ms):\n"
           "# reprocessed into the namespace that already holds them, those go to the DLQ\n"
           "# (older_than_dedupe_window) once their customer's dedupe records were trimmed\n",
           total, old, cut);
    if (!execute) {
        printf("# not committed: add --execute\n");
        rc = EXIT_OK;
        goto out;
    }
    if (drc != 0) {
        fprintf(stderr, "fidelio offsets: cannot tell whether group '%s' is inactive (%s): nothing committed\n", group,
                err);
        goto out;
    }
    if (members > 0) {
        fprintf(stderr, "fidelio offsets: group '%s' has %zu active member(s) (%s): stop them first; nothing committed\n",
                group, members, state);
        goto out;
    }
    e = rd_kafka_commit(rk, list, 0);
    for (int i = 0; !e && i < list->cnt; i++)
        e = list->elems[i].err;
    if (e) {
        fprintf(stderr, "fidelio offsets: commit for group '%s' refused: %s%s\n", group, rd_kafka_err2str(e),
                e == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || e == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
                        e == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION
                    ? " (a member joined meanwhile?)"
                    : "");
        goto out;
    }
    printf("# committed for group %s\n", group);
    rc = EXIT_OK;
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (list)
        rd_kafka_topic_partition_list_destroy(list);
    if (horizon)
        rd_kafka_topic_partition_list_destroy(horizon);
    free(low);
    free(high);
    free(committed);
    rd_kafka_destroy(rk);
    return rc;
}

int cmd_offsets(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"group", required_argument, NULL, 'G'},
                                             {"topic", required_argument, NULL, 't'},
                                             {"reset-to", required_argument, NULL, 'R'},
                                             {"execute", no_argument, NULL, 'X'},
                                             {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    const char *group = NULL, *topic = NULL, *where = NULL;
    int execute = 0, opt, rc = EXIT_USAGE;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "t:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); cli_common_free(&cc); return EXIT_OK;
        case 'G': group = optarg; break;
        case 't': topic = optarg; break;
        case 'R': where = optarg; break;
        case 'X': execute = 1; break;
        default:
            if (cli_default_opt(&cc, opt, optarg, help) != 0)
                goto out_cc;
        }
    }
    if (!where || optind < argc) {
        fprintf(stderr, "fidelio offsets: expected --reset-to beginning|TIMESTAMP (see fidelio offsets --help)\n");
        goto out_cc;
    }
    if ((rc = cli_load_config(&cc, &cfg)) != EXIT_OK)
        goto out_cfg;
    rc = offsets(&cfg, group ? group : cfg.consumer_group, topic ? topic : cfg.topic_touchpoints, where, execute);
out_cfg:
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
