/* report.c - aggregate deltas of each apply, and the report built from them. */
#include "report.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "metrics.h"
#include "store.h"
#include "timeutil.h"

void report_capture(const profile *p, bool exists, report_before *b)
{
    b->exists = exists;
    memcpy(b->stage, p->stage, sizeof(b->stage));
    b->persona = profile_persona(p);
    b->balance = p->balance;
    b->earned = p->lifetime_earned;
    b->redeemed = p->redeemed;
    b->reversed = p->reversed;
}

/* Append one "field\0delta\0" pair, the field being parts joined by '|',
 * and what it counts in the process metrics (m); zero deltas are skipped.
 * off: argv's offsets into text while it grows (2 per pair).
 * Written by hand rather than with printf, and with one room check per
 * pair: the deltas are computed for every applied event. */
static int add_parts(report_deltas *d, uint32_t *off, report_metric m, int64_t delta, const char *const *parts,
                     int nparts)
{
    if (delta == 0)
        return 0;
    if (d->n >= REPORT_MAX_DELTAS)
        return 0; /* cannot happen: REPORT_MAX_DELTAS bounds what one apply makes */
    size_t len[8], total = (size_t)nparts + 26; /* separators, NULs, the number */
    for (int i = 0; i < nparts; i++)
        total += len[i] = strlen(parts[i]);
    if (buf_reserve(&d->text, total) != 0)
        return -1;
    char *w = d->text.data + d->text.len;
    off[2 * d->n] = (uint32_t)d->text.len;
    for (int i = 0; i < nparts; i++) {
        if (i)
            *w++ = '|';
        memcpy(w, parts[i], len[i]);
        w += len[i];
    }
    *w++ = '\0';
    off[2 * d->n + 1] = (uint32_t)(w - d->text.data);
    char num[24], *p = fmt_ll(num, (long long)delta);
    size_t nl = (size_t)(num + sizeof(num) - p);
    memcpy(w, p, nl);
    w += nl;
    *w++ = '\0';
    d->text.len = (size_t)(w - d->text.data);
    *w = '\0';
    d->metric[d->n] = (uint8_t)m;
    d->val[d->n++] = delta;
    return 0;
}
#define add(d, m, delta, ...)                                                                                         \
    add_parts(d, off, m, delta, (const char *const[]){__VA_ARGS__},                                                   \
              (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))

/* "YYYY-MM-DD" of a UTC day index into out (11 bytes). */
static void day_text(int64_t day, char out[16])
{
    int64_t y;
    unsigned m, dd;
    time_civil_from_days(day, &y, &m, &dd);
    if (y < 0 || y > 9999) {
        snprintf(out, 16, "%04lld-%02u-%02u", (long long)y, m, dd);
        return;
    }
    out[0] = (char)('0' + y / 1000);
    out[1] = (char)('0' + y / 100 % 10);
    out[2] = (char)('0' + y / 10 % 10);
    out[3] = (char)('0' + y % 10);
    out[4] = '-';
    out[5] = (char)('0' + m / 10 % 10);
    out[6] = (char)('0' + m % 10);
    out[7] = '-';
    out[8] = (char)('0' + dd / 10 % 10);
    out[9] = (char)('0' + dd % 10);
    out[10] = '\0';
}

int report_compute(const program *prog, const report_before *b, const profile *after, const engine_output *out,
                   const char *type, report_deltas *d)
{
    uint32_t off[2 * REPORT_MAX_DELTAS]; /* (add) */
    buf_reset(&d->text);
    d->n = 0;
    int rc = add(d, RM_EVENTS, 1, "events", type) || add(d, RM_NONE, b->exists ? 0 : 1, "customers");
    const char *persona = profile_persona(after);
    if (!rc && (persona != b->persona))
        rc = (b->persona && add(d, RM_NONE, -1, "persona", b->persona)) ||
             (persona && add(d, RM_NONE, 1, "persona", persona));
    for (int l = 0; l < prog->nladders && !rc; l++) {
        const ladder *ld = &prog->ladders[l];
        int was = b->stage[l], now = after->stage[l];
        if (was == now)
            continue;
        if (was >= 0 && was < ld->nstages)
            rc = add(d, RM_NONE, -1, "stage", ld->id, ld->stages[was].name); /* leaving is no stage change */
        if (!rc && now >= 0 && now < ld->nstages)
            rc = add(d, RM_STAGE, 1, "stage", ld->id, ld->stages[now].name);
    }
    rc = rc || add(d, RM_NONE, after->lifetime_earned - b->earned, "points|issued") ||
         add(d, RM_NONE, after->redeemed - b->redeemed, "points|redeemed") ||
         add(d, RM_NONE, after->reversed - b->reversed, "points|reversed") ||
         add(d, RM_NONE, after->balance - b->balance, "points|balance");
    for (int i = 0; i < out->nrewards && !rc; i++) {
        const reward_event *r = &out->rewards[i];
        const char *kind = reward_kind_name(r->kind);
        char day[16];
        day_text(time_day_index(r->occurred_at), day);
        rc = add(d, RM_REWARDS, 1, "rule", r->rule_id, kind, "n") ||
             (r->points && add(d, RM_REWARD_POINTS, r->points, "rule", r->rule_id, kind, "points")) ||
             (r->points && add(d, RM_NONE, r->points, "day", day, r->rule_id));
    }
    if (rc)
        return -1;
    /* argv points into text: only now, once text stops moving */
    for (int i = 0; i < 2 * d->n; i++)
        d->argv[i] = d->text.data + off[i];
    return 0;
}

void report_deltas_free(report_deltas *d) { buf_free(&d->text); }

/* The metrics update of one series' summed delta (field: a report.h field). */
static void field_to_metrics(const char *f, long long v)
{
    char a[PROGRAM_ID_MAX + 1], k[PROGRAM_ID_MAX + 1];
    if (!strncmp(f, "events|", 7)) {
        metrics_add(M_EVENTS_APPLIED, (double)v, f + 7);
    } else if (!strncmp(f, "stage|", 6)) {
        const char *sep = strchr(f + 6, '|');
        if (sep && (size_t)(sep - (f + 6)) <= PROGRAM_ID_MAX) {
            memcpy(a, f + 6, (size_t)(sep - (f + 6)));
            a[sep - (f + 6)] = '\0';
            metrics_add(M_STAGE_CHANGES, (double)v, a, sep + 1);
        }
    } else if (!strncmp(f, "rule|", 5)) { /* rule|<rule>|<KIND>|n or ...|points */
        const char *r = f + 5, *s1 = strchr(r, '|'), *s2 = s1 ? strchr(s1 + 1, '|') : NULL;
        if (!s2 || s1 - r > PROGRAM_ID_MAX || s2 - (s1 + 1) > PROGRAM_ID_MAX || s1 == r || s2 == s1 + 1)
            return;
        memcpy(a, r, (size_t)(s1 - r));
        a[s1 - r] = '\0';
        memcpy(k, s1 + 1, (size_t)(s2 - (s1 + 1)));
        k[s2 - (s1 + 1)] = '\0';
        metrics_add(strcmp(s2 + 1, "n") ? M_REWARD_POINTS : M_REWARDS, (double)v, a, k);
    }
}

void report_metrics_add(report_metrics *m, const report_deltas *d)
{
    for (int i = 0; i < d->n; i++) {
        const char *f = d->argv[2 * i];
        long long v = d->val[i];
        report_metric k = (report_metric)d->metric[i];
        if (k == RM_BY_FIELD) /* deltas not made by report_compute */
            k = !strncmp(f, "events|", 7)             ? RM_EVENTS
                : !strncmp(f, "stage|", 6) && v > 0   ? RM_STAGE
                : !strncmp(f, "rule|", 5) && strlen(f) > 2 && !strcmp(f + strlen(f) - 2, "|n") ? RM_REWARDS
                : !strncmp(f, "rule|", 5)             ? RM_REWARD_POINTS
                                                      : RM_NONE;
        if (k == RM_NONE)
            continue;
        if (k == RM_REWARD_POINTS) /* the points moved, either way */
            v = v < 0 ? -v : v;
        size_t len = strlen(f);
        uint64_t h = XXH3_64bits(f, len);
        size_t s = (size_t)h & (REPORT_METRICS_SLOTS - 1);
        while (m->slot[s] && (m->sums[m->slot[s] - 1].hash != h || strcmp(m->sums[m->slot[s] - 1].field, f)))
            s = (s + 1) & (REPORT_METRICS_SLOTS - 1);
        if (!m->slot[s]) {
            if (m->n == REPORT_METRICS_SLOTS / 2) { /* full (at most half the slots: short probes) */
                report_metrics_flush(m);
                s = (size_t)h & (REPORT_METRICS_SLOTS - 1);
            }
            m->sums[m->n] = (report_metric_sum){.field = f, .hash = h, .sum = 0};
            m->slot[s] = (int16_t)++m->n;
        }
        report_metric_sum *e = &m->sums[m->slot[s] - 1];
        long long t;
        if (__builtin_add_overflow(e->sum, v, &t)) { /* cannot happen with real deltas; keep the total */
            field_to_metrics(e->field, e->sum);
            t = v;
        }
        e->sum = t;
    }
}

void report_metrics_flush(report_metrics *m)
{
    for (int i = 0; i < m->n; i++)
        field_to_metrics(m->sums[i].field, m->sums[i].sum);
    m->n = 0;
    memset(m->slot, 0, sizeof(m->slot));
}

void report_deltas_to_metrics(const report_deltas *d)
{
    report_metrics m;
    m.n = 0;
    memset(m.slot, 0, sizeof(m.slot));
    report_metrics_add(&m, d);
    report_metrics_flush(&m);
}

void report_dlq_note(report_dlq *d, const char *input, const char *reason)
{
    metrics_add(M_EVENTS_DLQ, 1, input, reason);
    if (!strcmp(reason, "event_id_conflict"))
        metrics_add(M_EVENTS_CONFLICT, 1);
    report_dlq_count(d, reason);
}

void report_dlq_count(report_dlq *d, const char *reason)
{
    for (int i = 0; i < d->count; i++)
        if (!strcmp(d->reason[i], reason)) {
            d->n[i]++;
            return;
        }
    if (d->count == REPORT_DLQ_REASONS)
        return; /* more distinct reasons than exist: cannot happen */
    snprintf(d->reason[d->count], sizeof(d->reason[0]), "%s", reason);
    d->n[d->count++] = 1;
}

void report_dlq_pairs(const report_dlq *d, report_dlq_fields *f)
{
    for (int i = 0; i < d->count; i++) {
        snprintf(f->fields[i], sizeof(f->fields[i]), "dlq|%s", d->reason[i]);
        snprintf(f->counts[i], sizeof(f->counts[i]), "%lld", d->n[i]);
        f->pairs[2 * i] = f->fields[i];
        f->pairs[2 * i + 1] = f->counts[i];
    }
    f->n = (size_t)d->count;
}

int report_dlq_flush(const report_dlq *d, store *s, char *err, size_t errlen)
{
    report_dlq_fields f;
    report_dlq_pairs(d, &f);
    return store_aggregates_add(s, f.pairs, f.n, err, errlen);
}

/* ---- the report ------------------------------------------------------------------ */

/* One field of the aggregates hash. */
typedef struct agg_field {
    const char *name;        /* into aggs.raw */
    long long value;
} agg_field;

/* The aggregates hash, sorted by field name (lookups by binary search: a
 * report reads every field a few times, whatever the hash's size). */
typedef struct aggs {
    buf raw;                 /* "field\0value\0"... */
    agg_field *f;
    size_t n;
} aggs;

static int cmp_field(const void *a, const void *b)
{
    return strcmp(((const agg_field *)a)->name, ((const agg_field *)b)->name);
}

static int load_aggs(store *s, aggs *a, char *err, size_t errlen)
{
    if (store_aggregates(s, &a->raw, &a->n, err, errlen) != 0)
        return -1;
    if (!(a->f = calloc(a->n + 1, sizeof(*a->f)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *p = a->raw.data;
    for (size_t i = 0; i < a->n; i++) {
        a->f[i].name = p;
        p += strlen(p) + 1;
        a->f[i].value = atoll(p);
        p += strlen(p) + 1;
    }
    qsort(a->f, a->n, sizeof(*a->f), cmp_field);
    return 0;
}

static void free_aggs(aggs *a)
{
    buf_free(&a->raw);
    free(a->f);
}

static long long get(const aggs *a, const char *field)
{
    agg_field key = {.name = field};
    const agg_field *f = a->n ? bsearch(&key, a->f, a->n, sizeof(*a->f), cmp_field) : NULL;
    return f ? f->value : 0;
}

static int cmp_str(const void *x, const void *y) { return strcmp(*(const char *const *)x, *(const char *const *)y); }

/* The distinct values of segment seg (0-based, '|' separated) of fields
 * starting with prefix (and, when within is set, whose segment seg-1 is it),
 * sorted; the strings are malloc'd into out. */
static size_t segments(const aggs *a, const char *prefix, const char *within, int seg, char ***out)
{
    size_t n = 0;
    char **v = calloc(a->n + 1, sizeof(*v));
    if (!v) {
        *out = NULL;
        return 0;
    }
    size_t pl = strlen(prefix);
    for (size_t i = 0; i < a->n; i++) {
        if (strncmp(a->f[i].name, prefix, pl))
            continue;
        const char *p = a->f[i].name;
        const char *start = p, *prev = NULL;
        int k = 0;
        for (; k < seg && start; k++) {
            prev = start;
            start = strchr(start, '|');
            if (start)
                start++;
        }
        if (!start)
            continue;
        if (within) {
            size_t wl = strlen(within);
            if (!prev || strncmp(prev, within, wl) || prev[wl] != '|')
                continue;
        }
        size_t len = strcspn(start, "|");
        bool dup = false;
        for (size_t j = 0; j < n && !dup; j++)
            dup = strlen(v[j]) == len && !strncmp(v[j], start, len);
        if (dup)
            continue;
        if (!(v[n] = strndup(start, len)))
            break;
        n++;
    }
    qsort(v, n, sizeof(*v), cmp_str);
    *out = v;
    return n;
}

static void free_strs(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static bool program_has_stage(const ladder *l, const char *name) { return l && program_stage_index(l, name) >= 0; }

static json_t *ladder_json(const aggs *a, const ladder *ld, const char *id, long long customers)
{
    char f[3 * PROGRAM_ID_MAX + 32];
    json_t *o = json_object(), *stages = json_array();
    long long placed = 0;
    if (!o || !stages)
        goto oom;
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "tier", json_boolean(ld && ld->is_tier));
    for (int s = 0; ld && s < ld->nstages; s++) {
        snprintf(f, sizeof(f), "stage|%s|%s", id, ld->stages[s].name);
        long long c = get(a, f);
        placed += c;
        json_t *st = json_object();
        json_object_set_new(st, "stage", json_string(ld->stages[s].name));
        json_object_set_new(st, "customers", json_integer(c));
        json_array_append_new(stages, st);
    }
    /* stages stored but not in this program (a renamed or removed stage) */
    char **extra;
    size_t ne = segments(a, "stage|", id, 2, &extra);
    for (size_t i = 0; i < ne; i++) {
        if (program_has_stage(ld, extra[i]))
            continue;
        snprintf(f, sizeof(f), "stage|%s|%s", id, extra[i]);
        long long c = get(a, f);
        if (c == 0)
            continue;
        placed += c;
        json_t *st = json_object();
        json_object_set_new(st, "stage", json_string(extra[i]));
        json_object_set_new(st, "customers", json_integer(c));
        json_object_set_new(st, "in_program", json_false());
        json_array_append_new(stages, st);
    }
    free_strs(extra, ne);
    json_object_set_new(o, "stages", stages);
    json_object_set_new(o, "no_stage", json_integer(customers - placed));
    return o;
oom:
    json_decref(o);
    json_decref(stages);
    return NULL;
}

/* Build the report object. */
static json_t *build(store *s, const program *prog, const char *key_prefix, char *err, size_t errlen)
{
    aggs a = {0};
    if (load_aggs(s, &a, err, errlen) != 0) {
        free_aggs(&a);
        return NULL;
    }
    char f[3 * PROGRAM_ID_MAX + 32];
    json_t *r = json_object();
    long long customers = get(&a, "customers");
    json_object_set_new(r, "namespace", json_string(key_prefix));
    json_object_set_new(r, "program_version", json_string(prog->version));
    json_object_set_new(r, "program_digest", json_string(prog->digest));
    json_object_set_new(r, "complete", json_boolean(get(&a, "complete") == 1 || a.n == 0));
    json_object_set_new(r, "customers", json_integer(customers));

    /* events by type, in the contract's order, credits last */
    json_t *events = json_object();
    for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
        snprintf(f, sizeof(f), "events|%s", event_type_name((event_type)t));
        json_object_set_new(events, event_type_name((event_type)t), json_integer(get(&a, f)));
    }
    json_object_set_new(events, "CREDIT", json_integer(get(&a, "events|CREDIT")));
    json_object_set_new(r, "events", events);

    /* ladders: the program's, then any other stored */
    json_t *ladders = json_array();
    for (int l = 0; l < prog->nladders; l++)
        json_array_append_new(ladders, ladder_json(&a, &prog->ladders[l], prog->ladders[l].id, customers));
    char **lids;
    size_t nl = segments(&a, "stage|", NULL, 1, &lids);
    for (size_t i = 0; i < nl; i++)
        if (program_ladder_index(prog, lids[i]) < 0)
            json_array_append_new(ladders, ladder_json(&a, NULL, lids[i], customers));
    free_strs(lids, nl);
    json_object_set_new(r, "ladders", ladders);

    json_t *personas = json_object();
    long long with = 0;
    for (int q = 0; q < QUADRANT_COUNT; q++) {
        snprintf(f, sizeof(f), "persona|%s", quadrant_name((quadrant)q));
        long long c = get(&a, f);
        with += c;
        json_object_set_new(personas, quadrant_name((quadrant)q), json_integer(c));
    }
    json_object_set_new(personas, "none", json_integer(customers - with));
    json_object_set_new(r, "personas", personas);

    json_t *points = json_object();
    json_object_set_new(points, "issued", json_integer(get(&a, "points|issued")));
    json_object_set_new(points, "redeemed", json_integer(get(&a, "points|redeemed")));
    json_object_set_new(points, "reversed", json_integer(get(&a, "points|reversed")));
    json_object_set_new(points, "outstanding", json_integer(get(&a, "points|balance")));
    json_object_set_new(r, "points", points);

    /* rewards by rule and kind: the program's rules in order, then others */
    json_t *rewards = json_array();
    char **rids;
    size_t nr = segments(&a, "rule|", NULL, 1, &rids);
    const char **order = calloc((size_t)prog->nrules + nr + 1, sizeof(*order));
    size_t no = 0;
    for (int i = 0; order && i < prog->nrules; i++)
        order[no++] = prog->rules[i].id;
    for (size_t i = 0; order && i < nr; i++)
        if (program_rule_index(prog, rids[i]) < 0)
            order[no++] = rids[i];
    for (size_t i = 0; i < no; i++) {
        for (int k = 0; k < REWARD_KIND_COUNT; k++) {
            const char *kind = reward_kind_name((reward_kind)k);
            snprintf(f, sizeof(f), "rule|%s|%s|n", order[i], kind);
            long long n = get(&a, f);
            if (!n)
                continue;
            snprintf(f, sizeof(f), "rule|%s|%s|points", order[i], kind);
            json_t *o = json_object();
            json_object_set_new(o, "rule", json_string(order[i]));
            json_object_set_new(o, "kind", json_string(kind));
            json_object_set_new(o, "count", json_integer(n));
            json_object_set_new(o, "points", json_integer(get(&a, f)));
            json_array_append_new(rewards, o);
        }
    }
    json_object_set_new(r, "rewards", rewards);

    /* points by rule per day of event time, oldest first */
    json_t *daily = json_array();
    char **days;
    size_t nd = segments(&a, "day|", NULL, 1, &days);
    for (size_t d = 0; d < nd; d++) {
        json_t *o = json_object(), *pts = json_object();
        json_object_set_new(o, "day", json_string(days[d]));
        for (size_t i = 0; i < no; i++) {
            snprintf(f, sizeof(f), "day|%s|%s", days[d], order[i]);
            long long v = get(&a, f);
            if (v)
                json_object_set_new(pts, order[i], json_integer(v));
        }
        json_object_set_new(o, "points", pts);
        json_array_append_new(daily, o);
    }
    free_strs(days, nd);
    free(order);
    free_strs(rids, nr);
    json_object_set_new(r, "daily", daily);

    json_t *dlq = json_object();
    char **reasons;
    size_t nreasons = segments(&a, "dlq|", NULL, 1, &reasons);
    for (size_t i = 0; i < nreasons; i++) {
        snprintf(f, sizeof(f), "dlq|%s", reasons[i]);
        json_object_set_new(dlq, reasons[i], json_integer(get(&a, f)));
    }
    free_strs(reasons, nreasons);
    json_object_set_new(r, "dlq", dlq);
    free_aggs(&a);
    return r;
}

int report_json(store *s, const program *prog, const char *key_prefix, buf *out, char *err, size_t errlen)
{
    json_t *r = build(s, prog, key_prefix, err, errlen);
    if (!r)
        return -1;
    char *text = json_dumps(r, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(r);
    if (!text || buf_puts(out, text) || buf_puts(out, "\n")) {
        free(text);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(text);
    return 0;
}

static long long iv(json_t *o, const char *k) { return (long long)json_integer_value(json_object_get(o, k)); }

static int pct_line(buf *out, const char *label, long long n, long long total)
{
    return buf_printf(out, "  %-22s %10lld  %5.1f%%\n", label, n, total > 0 ? 100.0 * (double)n / (double)total : 0.0);
}

int report_text(store *s, const program *prog, const char *key_prefix, buf *out, char *err, size_t errlen)
{
    json_t *r = build(s, prog, key_prefix, err, errlen);
    if (!r)
        return -1;
    long long customers = iv(r, "customers");
    int rc = buf_printf(out, "namespace %s, program %s: %lld customers\n", key_prefix, prog->version, customers);
    if (!json_is_true(json_object_get(r, "complete")))
        rc |= buf_puts(out, "WARNING: the aggregates of this namespace are incomplete (it was written before Fidelio "
                            "kept them, or by a run with pipeline.report_aggregates=0): the figures below cover only "
                            "what was applied while they were kept\n");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(r, "ladders"), i, v)
    {
        rc |= buf_printf(out, "\n%s %s\n", json_is_true(json_object_get(v, "tier")) ? "tier" : "ladder",
                         json_string_value(json_object_get(v, "id")));
        size_t j;
        json_t *st;
        json_array_foreach(json_object_get(v, "stages"), j, st)
            rc |= pct_line(out, json_string_value(json_object_get(st, "stage")), iv(st, "customers"), customers);
        rc |= pct_line(out, "(no stage)", iv(v, "no_stage"), customers);
    }
    rc |= buf_puts(out, "\npersonas\n");
    const char *k;
    json_object_foreach(json_object_get(r, "personas"), k, v)
        rc |= pct_line(out, k, (long long)json_integer_value(v), customers);
    json_t *pts = json_object_get(r, "points");
    rc |= buf_printf(out, "\npoints\n  %-22s %10lld\n  %-22s %10lld\n  %-22s %10lld\n  %-22s %10lld\n", "issued",
                     iv(pts, "issued"), "redeemed", iv(pts, "redeemed"), "reversed", iv(pts, "reversed"),
                     "outstanding (liability)", iv(pts, "outstanding"));
    rc |= buf_printf(out, "\nrewards by rule\n  %-22s %-16s %10s %12s\n", "rule", "kind", "count", "points");
    json_array_foreach(json_object_get(r, "rewards"), i, v)
        rc |= buf_printf(out, "  %-22s %-16s %10lld %12lld\n", json_string_value(json_object_get(v, "rule")),
                         json_string_value(json_object_get(v, "kind")), iv(v, "count"), iv(v, "points"));
    rc |= buf_puts(out, "\nevents applied\n");
    json_object_foreach(json_object_get(r, "events"), k, v)
        rc |= buf_printf(out, "  %-22s %10lld\n", k, (long long)json_integer_value(v));
    rc |= buf_puts(out, "\ndead-letter queue by reason\n");
    if (json_object_size(json_object_get(r, "dlq")) == 0)
        rc |= buf_puts(out, "  (none)\n");
    json_object_foreach(json_object_get(r, "dlq"), k, v)
        rc |= buf_printf(out, "  %-32s %10lld\n", k, (long long)json_integer_value(v));
    json_decref(r);
    if (rc) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int report_source_json(void *ctx, buf *out, char *err, size_t errlen)
{
    report_source *rs = ctx;
    if (!rs->store && !(rs->store = store_open_readonly(rs->redis_url, rs->key_prefix, err, errlen)))
        return -1;
    /* the program may be swapped by a reload on the main thread (cmd_run.c) */
    const program *prog = __atomic_load_n(&rs->prog, __ATOMIC_ACQUIRE);
    int rc = report_json(rs->store, prog, rs->key_prefix, out, err, errlen);
    if (rc != 0) {
        store_close(rs->store); /* a fresh connection next time */
        rs->store = NULL;
    }
    return rc;
}

void report_source_close(report_source *rs)
{
    store_close(rs->store);
    rs->store = NULL;
}
