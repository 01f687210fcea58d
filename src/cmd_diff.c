/* cmd_diff.c - `fidelio diff`: the customers whose stored profiles differ
 * between two namespaces of one Redis, field by field, and a summary (points
 * gained and lost, stage and tier moves). Reads only (store_open_readonly).
 *
 * A profile is compared in the form `fidelio profile` prints (profile_json),
 * its nested objects (stages, counts, scores) flattened to "stages.tier",
 * "counts.PURCHASE", ...: the same decoding, the same names. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "profile.h"
#include "program.h"
#include "store.h"

#define DIFF_EXIT_DIFFER 1 /* as diff(1): 0 equal, 1 different, 2 trouble */
#define DIFF_EXIT_TROUBLE 2
#define DIFF_BATCH 500

static const char help[] =
    "usage: fidelio diff [-c FILE] [--set KEY=VALUE]... --namespace A --namespace B\n"
    "                    [-r RULES [-r RULES]] [--limit N] [--json]\n\n"
    "Compare the stored profiles of two namespaces of the same Redis (redis.url):\n"
    "list each customer whose profile differs, with the differing fields (balance,\n"
    "tier, stages, counters, ...) as A -> B, then a summary: how many customers gain\n"
    "or lose points and how many in total, the stage and tier moves. Reads only.\n"
    "The way to see what a new rule program changes (a what-if replay into B) and\n"
    "to check that a rebuild equals live. Exit 0 if no profile differs, 1 if some\n"
    "do, 2 on trouble (bad option, Redis, a profile that cannot be decoded).\n\n"
    "      --namespace NAME  a namespace: redis.key_prefix NAME: (a NAME ending in ':'\n"
    "                        is the prefix itself); given twice, A then B\n"
    "  -r, --rules FILE      rule program to read the profiles with (default:\n"
    "                        rules.path); given twice, A's then B's\n"
    "      --limit N         list at most N customers (the summary counts them all)\n"
    "      --json            one JSON line per differing customer, then {\"summary\":...}\n" CLI_CONFIG_HELP;

typedef struct side {
    const char *name;
    char prefix[72];
    store *st;
    program *prog;
    char **ids; /* sorted customer ids (into idbuf) */
    size_t nids;
    buf idbuf;
} side;

typedef struct summary {
    long long customers, differing, only[2], gain, lose;
    long long gain_points, lose_points;
    json_t *stage_moves, *tier_moves; /* {ladder: {"a -> b": n}}, {"a -> b": n} */
    long long listed;
    int trouble;
} summary;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int ns_prefix(const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    if (n == 0 || strpbrk(name, "{} \t\r\n"))
        return -1;
    int w = snprintf(out, outlen, "%s%s", name, name[n - 1] == ':' ? "" : ":");
    return w < 0 || (size_t)w >= outlen || (size_t)w > 64 ? -1 : 0;
}

static int load_ids(side *sd, char *err, size_t errlen)
{
    if (store_customers(sd->st, &sd->idbuf, err, errlen) != 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < sd->idbuf.len; i++)
        n += sd->idbuf.data[i] == '\n';
    if (!(sd->ids = calloc(n + 1, sizeof(*sd->ids)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char *save = NULL;
    for (char *t = sd->idbuf.len ? strtok_r(sd->idbuf.data, "\n", &save) : NULL; t; t = strtok_r(NULL, "\n", &save))
        sd->ids[sd->nids++] = t;
    qsort(sd->ids, sd->nids, sizeof(*sd->ids), cmp_str);
    return 0;
}

/* The profile as a flat object: nested objects become "outer.inner". */
static json_t *flatten(json_t *o)
{
    json_t *f = json_object();
    const char *k, *k2;
    json_t *v, *v2;
    char key[256];
    if (!f)
        return NULL;
    json_object_foreach(o, k, v)
    {
        if (strcmp(k, "customer_id") == 0)
            continue;
        if (json_is_object(v)) {
            json_object_foreach(v, k2, v2)
            {
                snprintf(key, sizeof(key), "%s.%s", k, k2);
                if (json_object_set(f, key, v2) != 0)
                    goto oom;
            }
        } else if (json_object_set(f, k, v) != 0) {
            goto oom;
        }
    }
    return f;
oom:
    json_decref(f);
    return NULL;
}

static const char *stage_name(json_t *v) { return json_is_string(v) ? json_string_value(v) : "none"; }

static int count_move(json_t *moves, const char *from, const char *to)
{
    char key[2 * EVENT_ID_MAX + 8];
    snprintf(key, sizeof(key), "%s -> %s", from, to);
    json_t *n = json_object_get(moves, key);
    if (n)
        return json_integer_set(n, json_integer_value(n) + 1);
    return json_object_set_new(moves, key, json_integer(1));
}

static void print_value(json_t *v)
{
    if (json_is_string(v)) {
        fputs(json_string_value(v), stdout);
        return;
    }
    char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(12));
    fputs(t ? t : "?", stdout);
    free(t);
}

/* Compare one customer (a or b NULL when absent on that side); list and count it. */
static int compare(const char *id, json_t *a, json_t *b, const side *sides, summary *sum, long limit, int as_json)
{
    json_t *fa = a ? flatten(a) : json_object(), *fb = b ? flatten(b) : json_object();
    json_t *fields = json_object();
    int rc = -1;
    if (!fa || !fb || !fields)
        goto out;
    const char *k;
    json_t *v;
    /* A's fields in order, then those only B has (a program with another ladder) */
    json_t *keys = json_array();
    if (!keys)
        goto out;
    json_object_foreach(fa, k, v) json_array_append_new(keys, json_string(k));
    json_object_foreach(fb, k, v) if (!json_object_get(fa, k)) json_array_append_new(keys, json_string(k));
    size_t i;
    json_t *kv;
    json_array_foreach(keys, i, kv)
    {
        const char *key = json_string_value(kv);
        json_t *va = json_object_get(fa, key), *vb = json_object_get(fb, key);
        if (!va)
            va = json_null();
        if (!vb)
            vb = json_null();
        if (json_equal(va, vb))
            continue;
        if (json_object_set_new(fields, key, json_pack("[OO]", va, vb)) != 0) {
            json_decref(keys);
            goto out;
        }
    }
    json_decref(keys);
    sum->customers++;
    if (json_object_size(fields) == 0) {
        rc = 0;
        goto out;
    }
    sum->differing++;
    if (!a || !b)
        sum->only[a ? 0 : 1]++;
    long long ba = json_integer_value(json_object_get(fa, "balance"));
    long long bb = json_integer_value(json_object_get(fb, "balance"));
    long long d; /* both within +/-10^18 (profile_decode refuses more): no overflow */
    d = bb - ba;
    if (d > 0 && (sum->gain++, __builtin_add_overflow(sum->gain_points, d, &sum->gain_points)))
        goto out;
    if (d < 0 && (sum->lose++, __builtin_add_overflow(sum->lose_points, -d, &sum->lose_points)))
        goto out;
    json_object_foreach(fields, k, v)
    {
        const char *from = stage_name(json_array_get(v, 0)), *to = stage_name(json_array_get(v, 1));
        if (strcmp(k, "tier") == 0) {
            if (count_move(sum->tier_moves, from, to) != 0)
                goto out;
        } else if (strncmp(k, "stages.", 7) == 0) {
            json_t *l = json_object_get(sum->stage_moves, k + 7);
            if (!l && (json_object_set_new(sum->stage_moves, k + 7, json_object()) != 0 ||
                       !(l = json_object_get(sum->stage_moves, k + 7))))
                goto out;
            if (count_move(l, from, to) != 0)
                goto out;
        }
    }
    if (limit >= 0 && sum->listed >= limit) {
        rc = 0;
        goto out;
    }
    sum->listed++;
    if (as_json) {
        json_t *line = json_pack("{sssosO}", "customer_id", id, "only_in",
                                 a && b ? json_null() : json_string(sides[a ? 0 : 1].name), "fields", fields);
        char *t = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12)) : NULL;
        json_decref(line);
        if (!t)
            goto out;
        puts(t);
        free(t);
    } else {
        printf("%s", id);
        if (!a || !b)
            printf(" (only in %s)", sides[a ? 0 : 1].name);
        const char *sep = ": ";
        json_object_foreach(fields, k, v)
        {
            printf("%s%s ", sep, k);
            print_value(json_array_get(v, 0));
            fputs(" -> ", stdout);
            print_value(json_array_get(v, 1));
            if (strcmp(k, "balance") == 0)
                printf(" (%+lld)", d);
            sep = ", ";
        }
        putchar('\n');
    }
    rc = 0;
out:
    json_decref(fa);
    json_decref(fb);
    json_decref(fields);
    return rc;
}

/* Decode one fetched profile into its JSON object; NULL (and trouble) if it cannot be. */
static json_t *decoded(const side *sd, const store_profile *sp, summary *sum)
{
    char err[512];
    profile p;
    if (!sp->exists)
        return NULL;
    if (profile_decode(&p, sd->prog, sp->customer_id, sp->encoding.data, sp->encoding.len, err, sizeof(err)) != 0) {
        fprintf(stderr, "fidelio diff: %s: customer %s: %s\n", sd->name, sp->customer_id, err);
        profile_free(&p);
        sum->trouble = 1;
        return NULL;
    }
    json_t *o = profile_json(&p, sd->prog);
    profile_free(&p);
    if (!o)
        sum->trouble = 1;
    return o;
}

static int run_diff(side *sides, long limit, int as_json)
{
    char err[1024];
    summary sum = {.stage_moves = json_object(), .tier_moves = json_object()};
    store_profile *sp[2] = {calloc(DIFF_BATCH, sizeof(store_profile)), calloc(DIFF_BATCH, sizeof(store_profile))};
    const char **batch = calloc(DIFF_BATCH, sizeof(*batch));
    int rc = DIFF_EXIT_TROUBLE;
    if (!sum.stage_moves || !sum.tier_moves || !sp[0] || !sp[1] || !batch) {
        fprintf(stderr, "fidelio diff: out of memory\n");
        goto out;
    }
    if (!as_json)
        printf("# %s (%s) -> %s (%s)\n", sides[0].name, sides[0].prefix, sides[1].name, sides[1].prefix);
    size_t ia = 0, ib = 0;
    while (ia < sides[0].nids || ib < sides[1].nids) {
        size_t n = 0;
        while (n < DIFF_BATCH && (ia < sides[0].nids || ib < sides[1].nids)) {
            int c = ia >= sides[0].nids   ? 1
                    : ib >= sides[1].nids ? -1
                                          : strcmp(sides[0].ids[ia], sides[1].ids[ib]);
            if (c <= 0)
                batch[n] = sides[0].ids[ia++];
            else
                batch[n] = sides[1].ids[ib];
            if (c >= 0)
                ib++;
            n++;
        }
        store_seen none;
        for (int s = 0; s < 2; s++) {
            for (size_t i = 0; i < n; i++)
                sp[s][i].customer_id = batch[i];
            if (store_fetch(sides[s].st, sp[s], n, &none, 0, err, sizeof(err)) != 0) {
                fprintf(stderr, "fidelio diff: %s: %s\n", sides[s].name, err);
                goto out;
            }
        }
        for (size_t i = 0; i < n; i++) {
            json_t *a = decoded(&sides[0], &sp[0][i], &sum), *b = decoded(&sides[1], &sp[1][i], &sum);
            int bad = (a || b) && compare(batch[i], a, b, sides, &sum, limit, as_json) != 0;
            json_decref(a);
            json_decref(b);
            if (bad) {
                fprintf(stderr, "fidelio diff: out of memory\n");
                goto out;
            }
        }
    }
    if (as_json) {
        json_t *s = json_pack("{s{s[ss]s[ss]sIsIsIsIs{sIsI}s{sIsI}sOsOsI}}", "summary", "namespaces", sides[0].name,
                              sides[1].name, "prefixes", sides[0].prefix, sides[1].prefix, "customers",
                              (json_int_t)sum.customers, "differing", (json_int_t)sum.differing, "only_in_a",
                              (json_int_t)sum.only[0], "only_in_b", (json_int_t)sum.only[1], "gain", "customers",
                              (json_int_t)sum.gain, "points", (json_int_t)sum.gain_points, "lose", "customers",
                              (json_int_t)sum.lose, "points", (json_int_t)sum.lose_points, "stage_moves",
                              sum.stage_moves, "tier_moves", sum.tier_moves, "listed", (json_int_t)sum.listed);
        char *t = s ? json_dumps(s, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(s);
        if (!t) {
            fprintf(stderr, "fidelio diff: out of memory\n");
            goto out;
        }
        puts(t);
        free(t);
    } else {
        printf("# %lld of %lld customers differ (only in %s: %lld, only in %s: %lld)%s\n", sum.differing,
               sum.customers, sides[0].name, sum.only[0], sides[1].name, sum.only[1],
               sum.listed < sum.differing ? " (--limit: not all listed)" : "");
        printf("# points: %lld customers gain %lld in total, %lld lose %lld in total\n", sum.gain, sum.gain_points,
               sum.lose, sum.lose_points);
        const char *l, *m;
        json_t *lv, *n;
        json_object_foreach(sum.stage_moves, l, lv) json_object_foreach(lv, m, n)
            printf("# stage %s: %s: %lld\n", l, m, (long long)json_integer_value(n));
        json_object_foreach(sum.tier_moves, m, n) printf("# tier: %s: %lld\n", m, (long long)json_integer_value(n));
    }
    rc = sum.trouble ? DIFF_EXIT_TROUBLE : sum.differing ? DIFF_EXIT_DIFFER : EXIT_OK;
out:
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; sp[s] && i < DIFF_BATCH; i++)
            store_profile_free(&sp[s][i]);
        free(sp[s]);
    }
    free(batch);
    json_decref(sum.stage_moves);
    json_decref(sum.tier_moves);
    return rc;
}

int cmd_diff(int argc, char **argv)
{
    static const struct option longopts[] = {CLI_COMMON_LONGOPTS,
                                             {"namespace", required_argument, NULL, 'N'},
                                             {"rules", required_argument, NULL, 'r'},
                                             {"limit", required_argument, NULL, 'l'},
                                             {"json", no_argument, NULL, 'j'},
                                             {0, 0, 0, 0}};
    cli_common cc = {0};
    config cfg;
    side sides[2] = {{0}};
    const char *rules[2] = {NULL, NULL};
    int nns = 0, nrules = 0, as_json = 0, opt, rc = DIFF_EXIT_TROUBLE;
    long limit = -1;
    char *end, err[1024];
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORTOPTS "r:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(help, stdout); cli_common_free(&cc); return EXIT_OK;
        case 'N':
            if (nns == 2) {
                fprintf(stderr, "fidelio diff: --namespace is given exactly twice\n");
                goto out_cc;
            }
            sides[nns].name = optarg;
            if (ns_prefix(optarg, sides[nns].prefix, sizeof(sides[nns].prefix)) != 0) {
                fprintf(stderr,
                        "fidelio diff: --namespace '%s': a key prefix of at most 64 bytes, no braces or spaces\n",
                        optarg);
                goto out_cc;
            }
            nns++;
            break;
        case 'r':
            if (nrules == 2) {
                fprintf(stderr, "fidelio diff: --rules is given at most twice (A's, then B's)\n");
                goto out_cc;
            }
            rules[nrules++] = optarg;
            break;
        case 'l':
            errno = 0;
            limit = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || limit < 0) {
                fprintf(stderr, "fidelio diff: --limit takes a count >= 0\n");
                goto out_cc;
            }
            break;
        case 'j': as_json = 1; break;
        default:
            if (cli_default_opt(&cc, opt, optarg, help) != 0)
                goto out_cc;
        }
    }
    if (nns != 2 || optind < argc) {
        fprintf(stderr, "fidelio diff: expected --namespace A --namespace B and nothing else (see fidelio diff --help)\n");
        goto out_cc;
    }
    if (strcmp(sides[0].prefix, sides[1].prefix) == 0) {
        fprintf(stderr, "fidelio diff: both namespaces are '%s'\n", sides[0].prefix);
        goto out_cc;
    }
    if (cli_load_config(&cc, &cfg) != EXIT_OK)
        goto out_cfg;
    if (nrules == 1)
        rules[1] = rules[0];
    for (int s = 0; s < 2; s++)
        if (cli_load_program(&cfg, rules[s], &sides[s].prog) != EXIT_OK)
            goto out_sides;
    for (int s = 0; s < 2; s++) {
        if (!(sides[s].st = store_open_readonly(cfg.redis_url, sides[s].prefix, err, sizeof(err))) ||
            load_ids(&sides[s], err, sizeof(err)) != 0) {
            fprintf(stderr, "fidelio diff: %s: %s\n", sides[s].name, err);
            goto out_sides;
        }
    }
    rc = run_diff(sides, limit, as_json);
out_sides:
    for (int s = 0; s < 2; s++) {
        if (sides[s].st)
            store_close(sides[s].st);
        cli_program_free(sides[s].prog);
        free(sides[s].ids);
        buf_free(&sides[s].idbuf);
    }
out_cfg:
    config_free(&cfg);
out_cc:
    cli_common_free(&cc);
    return rc;
}
