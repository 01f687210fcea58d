/* sim.c - in-memory engine runner. */
#include "sim.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "digest.h"

/* Open-addressing set of strings, or map from string to profile. */
typedef struct table {
    void **slots;      /* profile* or char* (the key itself) */
    size_t cap, len;   /* cap is a power of two */
    int is_profiles;
} table;

struct sim {
    const program *prog;
    table profiles;
    table seen;         /* "<customer_id>\n<event_id>" of the events applied, each followed
                           (after its NUL) by the event's content digest (digest.h) */
    engine_output out;  /* reused */
    engine_output credit_out;
    codec_record rec;   /* reused for emitting */
    sim_stats stats;
};

static const char *slot_key(const table *t, void *v) { return t->is_profiles ? ((profile *)v)->customer_id : v; }

static size_t find_slot(const table *t, const char *key)
{
    size_t i = (size_t)XXH3_64bits(key, strlen(key)) & (t->cap - 1);
    while (t->slots[i] && strcmp(slot_key(t, t->slots[i]), key) != 0)
        i = (i + 1) & (t->cap - 1);
    return i;
}

static int grow(table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 1024;
    void **slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    table nt = {.slots = slots, .cap = cap, .len = t->len, .is_profiles = t->is_profiles};
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i])
            nt.slots[find_slot(&nt, slot_key(t, t->slots[i]))] = t->slots[i];
    free(t->slots);
    *t = nt;
    return 0;
}

static void *lookup(const table *t, const char *key)
{
    return t->cap ? t->slots[find_slot(t, key)] : NULL;
}

/* Insert v (whose key is not present); -1 when out of memory. */
static int insert(table *t, void *v)
{
    if ((t->len + 1) * 2 > t->cap && grow(t) != 0)
        return -1;
    t->slots[find_slot(t, slot_key(t, v))] = v;
    t->len++;
    return 0;
}

sim *sim_new(const program *prog)
{
    sim *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->prog = prog;
    s->profiles.is_profiles = 1;
    return s;
}

void sim_free(sim *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->profiles.cap; i++)
        if (s->profiles.slots[i]) {
            profile_free(s->profiles.slots[i]);
            free(s->profiles.slots[i]);
        }
    for (size_t i = 0; i < s->seen.cap; i++)
        free(s->seen.slots[i]);
    free(s->profiles.slots);
    free(s->seen.slots);
    codec_record_free(&s->rec);
    free(s);
}

static profile *get_profile(sim *s, const char *customer_id)
{
    profile *p = lookup(&s->profiles, customer_id);
    if (p)
        return p;
    if (!(p = malloc(sizeof(*p))))
        return NULL;
    profile_init(p, customer_id);
    if (insert(&s->profiles, p) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

static void emit_all(sim *s, const engine_output *out, sim_emit_fn emit, void *opaque)
{
    s->stats.rewards += out->nrewards;
    s->stats.stage_changes += out->nstages;
    if (!emit)
        return;
    for (int i = 0; i < out->nrewards; i++) {
        s->rec.schema = SCHEMA_REWARD;
        s->rec.reward = out->rewards[i];
        emit(opaque, &s->rec);
    }
    for (int i = 0; i < out->nstages; i++) {
        s->rec.schema = SCHEMA_STAGE_CHANGE;
        s->rec.stage = out->stages[i];
        emit(opaque, &s->rec);
    }
}

/* The dedupe key of an event: event ids are unique per customer (the event
 * contract; the pipeline keeps dedupe records with each customer's keys). A
 * customer id holds no control byte, so the newline separates unambiguously. */
static void seen_key(const touchpoint *ev, char *out)
{
    size_t lc = strlen(ev->customer_id), le = strlen(ev->event_id);
    memcpy(out, ev->customer_id, lc);
    out[lc] = '\n';
    memcpy(out + lc + 1, ev->event_id, le + 1);
}

engine_status sim_apply(sim *s, const touchpoint *ev, sim_emit_fn emit, void *opaque, char *err, size_t errlen)
{
    char key[2 * (EVENT_ID_MAX + 1)];
    uint8_t digest[DIGEST_LEN];
    seen_key(ev, key);
    if (digest_touchpoint(ev, digest) != 0) {
        snprintf(err, errlen, "out of memory");
        return ENGINE_NO_MEMORY;
    }
    const char *known = lookup(&s->seen, key);
    if (known) {
        /* the pipeline's rule: the same content is a redelivery, other content a conflict */
        if (memcmp(known + strlen(known) + 1, digest, DIGEST_LEN) == 0) {
            s->stats.duplicates++;
            return ENGINE_OK;
        }
        snprintf(err, errlen, "event_id %s of customer %s was applied before with other content", ev->event_id,
                 ev->customer_id);
        s->stats.rejected++;
        return ENGINE_EVENT_ID_CONFLICT;
    }
    profile *p = get_profile(s, ev->customer_id);
    size_t klen = strlen(key);
    char *id = malloc(klen + 1 + DIGEST_LEN);
    if (id) {
        memcpy(id, key, klen + 1);
        memcpy(id + klen + 1, digest, DIGEST_LEN);
    }
    int room = (s->seen.len + 1) * 2 <= s->seen.cap || grow(&s->seen) == 0;
    if (!p || !id || !room) {
        free(id);
        snprintf(err, errlen, "out of memory");
        return ENGINE_NO_MEMORY;
    }
    engine_status st = rules_apply_event(s->prog, p, ev, &s->out, err, errlen);
    if (st != ENGINE_OK) {
        free(id);
        s->stats.rejected++;
        return st;
    }
    insert(&s->seen, id); /* room was made above */
    s->stats.events++;
    emit_all(s, &s->out, emit, opaque);
    for (int i = 0; i < s->out.ncredits; i++) {
        const credit_event *cr = &s->out.credits[i];
        profile *ref = get_profile(s, cr->customer_id);
        if (!ref) {
            snprintf(err, errlen, "out of memory");
            return ENGINE_NO_MEMORY;
        }
        engine_status cst = rules_apply_credit(s->prog, ref, cr, &s->credit_out);
        if (cst == ENGINE_NO_MEMORY) {
            snprintf(err, errlen, "out of memory");
            return ENGINE_NO_MEMORY;
        }
        if (cst != ENGINE_OK) { /* the pipeline sends such a credit to the DLQ */
            s->stats.credits_refused++;
            continue;
        }
        s->stats.credits++;
        if (ref->nparked && !ref->events)
            s->stats.credits_parked++;
        emit_all(s, &s->credit_out, emit, opaque);
    }
    return ENGINE_OK;
}

int sim_apply_jsonl(sim *s, FILE *in, const char *name, sim_emit_fn emit, void *opaque, long long *invalid,
                    char *err, size_t errlen)
{
    char why[512];
    char *line = NULL;
    size_t cap = 0;
    long n;
    long long lineno = 0;
    int rc = 0;
    codec_record *rec = calloc(1, sizeof(*rec));
    *invalid = 0;
    if (!rec) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    while ((n = codec_read_jsonl(in, &line, &cap, &lineno)) >= 0) {
        event_err e = codec_decode_json(SCHEMA_TOUCHPOINT, line, (size_t)n, rec, why, sizeof(why));
        if (e == EVENT_OK)
            e = touchpoint_validate(&rec->tp, NULL, 0, why, sizeof(why));
        if (e != EVENT_OK) {
            (*invalid)++;
            fprintf(stderr, "%s:%lld: rejected (%s): %s\n", name, lineno, event_err_name(e), why);
            continue;
        }
        engine_status st = sim_apply(s, &rec->tp, emit, opaque, why, sizeof(why));
        if (st == ENGINE_NO_MEMORY) {
            snprintf(err, errlen, "%s", why);
            rc = -1;
            break;
        }
        if (st != ENGINE_OK)
            fprintf(stderr, "%s:%lld: rejected (%s): %s\n", name, lineno, engine_status_name(st), why);
    }
    if (rc == 0 && ferror(in)) {
        snprintf(err, errlen, "%s: read error", name);
        rc = -1;
    }
    free(line);
    codec_record_free(rec);
    free(rec);
    return rc;
}

const profile *sim_profile(const sim *s, const char *customer_id) { return lookup(&s->profiles, customer_id); }

static int by_customer(const void *a, const void *b)
{
    return strcmp((*(const profile *const *)a)->customer_id, (*(const profile *const *)b)->customer_id);
}

const profile **sim_profiles(const sim *s, size_t *n)
{
    const profile **all = malloc((s->profiles.len ? s->profiles.len : 1) * sizeof(*all));
    *n = 0;
    if (!all)
        return NULL;
    for (size_t i = 0; i < s->profiles.cap; i++)
        if (s->profiles.slots[i])
            all[(*n)++] = s->profiles.slots[i];
    qsort(all, *n, sizeof(*all), by_customer);
    return all;
}

const sim_stats *sim_get_stats(const sim *s) { return &s->stats; }
