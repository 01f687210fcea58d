/* pipeline.c - the consume -> decide -> store -> emit -> commit loop. */
#include "pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "cli.h"
#include "clock.h"
#include "codec.h"
#include "credit_auth.h"
#include "digest.h"
#include "emitter.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "profile.h"
#include "report.h"
#include "rules.h"
#include "store.h"

typedef enum item_kind { ITEM_TOUCHPOINT, ITEM_CREDIT, ITEM_DLQ } item_kind;

/* One input message of the batch and what became of it. */
typedef struct item {
    rd_kafka_message_t *msg;      /* owned until the batch ends */
    item_kind kind;
    codec_record *rec;            /* decoded touchpoint or credit; owned */
    int cust;                     /* customer slot, -1 for DLQ items */
    int next;                     /* next item of the same customer, -1 at the end */
    bool done;                    /* outputs decided (applied, duplicate or DLQ) */
    bool duplicate;               /* found applied already */
    uint8_t digest[DIGEST_LEN];   /* content digest, kept with the dedupe record */
    char dlq_error[64];
    char dlq_detail[300];
    buf outputs;                  /* recorded outputs to produce */
    buf profile;                  /* prepared profile encoding */
    buf ledger;                   /* prepared ledger entries: the rewards' Avro bytes, back to back */
    const char *ledger_ptrs[ENGINE_MAX_REWARDS];
    size_t ledger_lens[ENGINE_MAX_REWARDS];
    int nledger;
    report_deltas agg;            /* the report's deltas of this apply */
    int64_t pos;                  /* order in the batch: message i at i * ITEM_POS_STEP, an in-process
                                     credit right after the item that earned it */
    item_kind orig_kind;          /* the kind before a decision made it ITEM_DLQ (a dropped round resets it) */
    bool synthetic;               /* an in-process credit (opts->credits_in_process): no message of its own */
    int parent;                   /* synthetic: the item whose event earned it */
    bool spawned;                 /* its credits became synthetic items (in-process mode) */
    bool in_round;                /* undecided when the current round began */
    bool eager;                   /* synthetic: spawned when its parent was decided, before the parent's
                                     apply was confirmed (in-process credits, see decide_levels) */
    bool dead;                    /* synthetic: withdrawn (its parent was not applied as decided); ignored */
    bool confirmed;               /* applied as decided (APPLIED), or found applied by the fetch */
    bool unfetched;               /* spawned after the round's fetch: no dedupe record read (a credit
                                     applied before comes back DUPLICATE from the apply) */
} item;

/* Room between two messages' positions for the credits the first one earns. */
#define ITEM_POS_STEP 64

typedef struct customer {
    const char *id;               /* points into its first item's record */
    int head, tail;               /* its items, in batch order */
    int64_t hold;                 /* in-process credits: this round applies none of its items after it */
    char referrer[EVENT_ID_MAX + 1]; /* its referred_by after this round's decisions ("": none) */
    int fp, fs;                   /* this round: its profile in fetch_p, its first record in fetch_s; -1 unfetched */
    int pr;                       /* in-process: the customer of this batch its credits would go to, or -1 */
    int indeg;                    /* in-process: pending customers whose credits would come to it (plan_round) */
    int level;                    /* in-process: 0 receives no credit this round; else sent once every
                                     customer of a lower level is confirmed (decide_levels) */
    bool referee;                 /* in-process: some pending customer of the batch names it as referrer */
    bool decided;                 /* decided in this round */
} customer;

/* What a batch leaves for after its commit (emitter_done_fn's user): its
 * offsets, which the store is told are committed (store_committed: the
 * outputs kept for them may then go), and its DLQ counts for the report.
 * Owned by the emitter while in flight; batch_tail_free releases it. */
typedef struct batch_tail {
    double handed_at;             /* clock_mono_s() when its outputs were produced */
    report_dlq dlq;
    long long touchpoints, credits; /* consumed, counted in the metrics once committed */
    rd_kafka_topic_partition_list_t *offs; /* the batch's next offsets per partition; owned */
} batch_tail;

static void batch_tail_free(batch_tail *t)
{
    if (!t)
        return;
    if (t->offs)
        rd_kafka_topic_partition_list_destroy(t->offs);
    free(t);
}

typedef struct eof_mark {
    char topic[256];
    int32_t partition;
    bool at_end;
} eof_mark;

/* Where a batch's first fetch stands (the read-ahead, see read_ahead):
 * PREPARED decoded and grouped, its fetch not sent yet. */
enum { FETCH_NONE, FETCH_PREPARED, FETCH_SENT, FETCH_READY };

/* One batch's working set. The pipeline keeps two: the batch in hand (its
 * fields in struct pipeline) and the one read ahead (pipeline.other);
 * swap_batch exchanges them. */
typedef struct batch_set {
    item *items;
    int nitems;
    customer *custs;
    int ncusts;
    int *slots;
    store_profile *fetch_p;
    store_seen *fetch_s;
    store_apply_req *reqs;
    int *req_item;
    int *pending;
    int nsynth;
    size_t batch_bytes;
    int64_t batch_now_ms;
    int fetch_state;
} batch_set;

typedef struct pipeline {
    const config *cfg;
    const pipeline_opts *opts;
    int nsynth;                   /* in-process credits of the batch, at items[cap ...] */
    int synthcap;                 /* room for them (0 unless opts->credits_in_process) */
    int ccap;                     /* cap + synthcap: customers and items the batch may hold */
    const program *prog;
    pipeline_stats *st;
    rd_kafka_t *consumer;
    emitter em;                   /* producer of the batch's messages, commit of its offsets */
    bool committed;               /* exactly-once: the last batch's transaction committed */
    double commit_s;              /* exactly-once: seconds the last batch spent in emitter_commit */
    int delivery_failures;        /* at-least-once: failed deliveries since the last committed batch */
    char delivery_error[512];     /* the last one's cause */
    size_t batch_bytes;           /* keys and values of the batch being filled */
    long long batch_outputs;      /* outputs produced for the batch (one metrics update per batch) */
    int64_t batch_now_ms;         /* the wall clock when the batch was decoded (bounds event time) */
    double spent[4];              /* seconds since the last report: filling, deciding, producing, committing */
    double spent_redis;           /* of spent[1]: waiting for Redis's replies (fetches and applies) */
    long long redis_waits;        /* since the last report: times the loop waited for Redis's replies */
    long long batches_done;       /* since the last report: batches decided */
    kafka_req_stats fetch_stats;  /* the consumer's last statistics (log.level=debug only) */
    bool measure_ages;            /* log.level=debug: where an input's time goes (ages, latency.h) */
    latency_hist ages[LAT_STAGES]; /* since the last report; ages[LAT_OUTPUT] is filled by the emitter */
    int aborts_in_row;            /* exactly-once: consecutive aborted transactions */
    kafka_errnote access;         /* an authentication/ACL error the consumer reported */
    codec *codec;
    store *store;
    item *items;                  /* the batch */
    int nitems, cap;
    customer *custs;
    int ncusts;
    int *slots;                   /* open addressing: customer id -> index, 2*cap entries */
    engine_output *out;
    profile prof;
    codec_record *enc;            /* scratch record for encoding outputs */
    buf scratch;
    store_profile *fetch_p;       /* per customer */
    store_seen *fetch_s;          /* per item */
    store_apply_req *reqs;        /* per item */
    int *req_item;                /* per apply request: its item */
    int *pending;                 /* customers with undecided items, this round */
    int *order;                   /* in-process: the order customers are decided in (plan_round) */
    store_apply_req *reqs_tmp;    /* in-process: room to sort a round's requests by level */
    int *req_item_tmp;
    int fetch_state;              /* FETCH_*: the batch was decoded and its first fetch sent (or read) ahead */
    batch_set other;              /* the batch read ahead while Redis applies this one (read_ahead) */
    bool readahead;               /* read ahead at all: `run`, at-least-once (not exactly-once, not assign mode) */
    bool window;                  /* in read_ahead: this batch's applies are in flight, the other batch in front */
    bool taken;                   /* a rebalance during read_ahead finished or dropped the batch in hand */
    int no_readahead;             /* > 0: no read-ahead now (a rebalance is finishing the batches) */
    bool paused;                  /* Redis unreachable: consumption paused */
    bool ever_assigned;           /* the group's assignment callback ran at least once */
    bool closing;                 /* settle_assignor: assigned partitions stay paused */
    int protocol;                 /* the group's rebalance protocol, read at the first rebalance callback:
                                   * 0 not yet, 1 eager, 2 cooperative (it never changes for a consumer) */
    int nassigned;                /* partitions assigned, counted from the rebalance callbacks' lists */
    eof_mark *eofs;               /* for until_idle */
    int neofs, eofcap;
    double idle_since;
    double unassigned_since;      /* when the assignment was last seen empty; 0 while assigned */
    double last_assign_check;
    char client_error[256];       /* the consumer's last error (error_cb), for messages */
    int fatal;                    /* a delivery failed for good */
    long long max_record_bytes;   /* the producer's message.max.bytes: a DLQ record is cut to fit it */
    char err[1024];
} pipeline;

static eof_mark *eof_find(pipeline *pl, const char *topic, int32_t partition, bool add);

/* Exchange the batch in hand and the one read ahead. */
static void swap_batch(pipeline *pl)
{
#define SWAP_FIELD(f)                                                                                                  \
    do {                                                                                                               \
        __typeof__(pl->f) t_ = pl->f;                                                                                  \
        pl->f = pl->other.f;                                                                                           \
        pl->other.f = t_;                                                                                              \
    } while (0)
    SWAP_FIELD(items);
    SWAP_FIELD(nitems);
    SWAP_FIELD(custs);
    SWAP_FIELD(ncusts);
    SWAP_FIELD(slots);
    SWAP_FIELD(fetch_p);
    SWAP_FIELD(fetch_s);
    SWAP_FIELD(reqs);
    SWAP_FIELD(req_item);
    SWAP_FIELD(pending);
    SWAP_FIELD(nsynth);
    SWAP_FIELD(batch_bytes);
    SWAP_FIELD(batch_now_ms);
    SWAP_FIELD(fetch_state);
#undef SWAP_FIELD
}

/* ---- recorded outputs: ([kind][varint key len][key][varint len][avro])* ---- */

static int put_len(buf *b, size_t n)
{
    uint8_t tmp[10];
    size_t k = 0;
    while (n >= 0x80) {
        tmp[k++] = (uint8_t)(n | 0x80);
        n >>= 7;
    }
    tmp[k++] = (uint8_t)n;
    return buf_append(b, tmp, k);
}

static int get_len(const uint8_t **p, const uint8_t *end, size_t *n)
{
    *n = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        if (*p >= end)
            return -1;
        uint8_t b = *(*p)++;
        *n |= (size_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return (size_t)(end - *p) >= *n ? 0 : -1;
    }
    return -1;
}

/* Append pl->enc (of schema s) to blob as one output. */
static int add_output(pipeline *pl, buf *blob, char kind, codec_schema s)
{
    char why[256];
    pl->enc->schema = s;
    if (codec_encode_avro(pl->codec, s, pl->enc, &pl->scratch, why, sizeof(why)) != EVENT_OK) {
        log_error("encoding an output failed: %s", why);
        return -1;
    }
    const char *key = codec_record_key(pl->enc);
    size_t kl = strlen(key);
    return (buf_append(blob, &kind, 1) || put_len(blob, kl) || buf_append(blob, key, kl) ||
            put_len(blob, pl->scratch.len) || buf_append(blob, pl->scratch.data, pl->scratch.len))
               ? -1
               : 0;
}

/* Encode the engine's outputs and ledger entries into it. A ledger entry
 * is the reward exactly as encoded for Kafka (store.h: `fidelio ledger`
 * decodes it): nothing is formatted twice. */
static int record_outputs(pipeline *pl, item *it)
{
    const engine_output *o = pl->out;
    buf_reset(&it->outputs);
    buf_reset(&it->ledger);
    it->nledger = 0;
    for (int i = 0; i < o->nrewards; i++) {
        pl->enc->reward = o->rewards[i];
        if (add_output(pl, &it->outputs, 'r', SCHEMA_REWARD))
            return -1;
        if (buf_append(&it->ledger, pl->scratch.data, pl->scratch.len))
            return -1;
        it->ledger_lens[it->nledger++] = pl->scratch.len;
    }
    for (int i = 0; i < o->nstages; i++) {
        pl->enc->stage = o->stages[i];
        if (add_output(pl, &it->outputs, 's', SCHEMA_STAGE_CHANGE))
            return -1;
    }
    for (int i = 0; i < o->ncredits; i++) {
        pl->enc->credit = o->credits[i];
        if (credit_sign(&pl->enc->credit, pl->cfg->key_prefix, pl->cfg->credits_hmac_key) != 0) {
            log_error("signing a credit failed (libcrypto)");
            return -1;
        }
        if (add_output(pl, &it->outputs, 'c', SCHEMA_CREDIT))
            return -1;
    }
    const char *p = it->ledger.data;
    for (int i = 0; i < it->nledger; i++) {
        it->ledger_ptrs[i] = p;
        p += it->ledger_lens[i];
    }
    return 0;
}

/* ---- the batch ------------------------------------------------------------------- */

static void set_dlq(item *it, const char *error, const char *detail)
{
    it->kind = ITEM_DLQ;
    it->done = true;
    str_copy(it->dlq_error, sizeof(it->dlq_error), error);
    str_copy(it->dlq_detail, sizeof(it->dlq_detail), detail);
}

/* A known id with other content: not a redelivery, and not applied
 * (DESIGN.md invariant 9). */
static void set_conflict(item *it)
{
    char why[400];
    if (it->kind == ITEM_CREDIT)
        snprintf(why, sizeof(why), "credit_id %s was already applied to %s with other content",
                 it->rec->credit.credit_id, it->rec->credit.customer_id);
    else
        snprintf(why, sizeof(why),
                 "event_id %s was already applied to %s with other content (a redelivery has the same content)",
                 it->rec->tp.event_id, it->rec->tp.customer_id);
    set_dlq(it, "event_id_conflict", why);
}

/* Decode and validate a message into it; a bad one becomes a DLQ item. */
static void decode_item(pipeline *pl, item *it)
{
    rd_kafka_message_t *m = it->msg;
    const char *topic = rd_kafka_topic_name(m->rkt);
    char why[512];
    bool credit = strcmp(topic, pl->cfg->topic_credits) == 0;
    codec_schema s = credit ? SCHEMA_CREDIT : SCHEMA_TOUCHPOINT;
    it->kind = credit ? ITEM_CREDIT : ITEM_TOUCHPOINT;
    if (!m->payload) {
        set_dlq(it, event_err_name(EVENT_ERR_MALFORMED), "message has no value");
        return;
    }
    event_err e = codec_decode_avro(pl->codec, s, m->payload, m->len, it->rec, why, sizeof(why));
    if (e == EVENT_OK && !credit) {
        /* Event time is bounded by a time the producer does not control: the
         * broker's LogAppendTime where the topic has it (in the log: the same
         * on replay), else the earlier of the producer's CreateTime and this
         * instance's clock (issue 7 case 7: a CreateTime in year 9999 would
         * let an event in 9999 through). */
        rd_kafka_timestamp_type_t tt;
        int64_t ts = rd_kafka_message_timestamp(m, &tt), bound = pl->batch_now_ms;
        if (ts > 0 && (tt == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME || ts < bound))
            bound = ts;
        event_limits lim = {.max_clock_skew_ms = pl->cfg->max_clock_skew_ms};
        e = touchpoint_validate(&it->rec->tp, &lim, bound, why, sizeof(why));
    }
    if (e == EVENT_OK && credit)
        e = event_check_customer_id(it->rec->credit.customer_id, "customer_id", why, sizeof(why));
    if (e != EVENT_OK) {
        set_dlq(it, event_err_name(e), why);
        return;
    }
    const char *cid = codec_record_key(it->rec);
    if (!m->key || m->key_len != strlen(cid) || memcmp(m->key, cid, m->key_len) != 0) {
        snprintf(why, sizeof(why), "message key is not the customer_id '%s' (per-customer order needs it)", cid);
        set_dlq(it, "key_mismatch", why);
    }
    if (it->kind == ITEM_CREDIT) { /* DESIGN.md invariants 6 and 8: only this namespace's, authenticated */
        credit_verdict v = credit_verify(&it->rec->credit, pl->cfg->key_prefix, pl->cfg->credits_hmac_key, why,
                                         sizeof(why));
        if (v != CREDIT_OK)
            set_dlq(it, credit_verdict_name(v), why);
    }
    if (it->kind == ITEM_CREDIT)
        digest_credit(&it->rec->credit, it->digest);
    else if (it->kind == ITEM_TOUCHPOINT && digest_touchpoint(&it->rec->tp, it->digest) != 0)
        set_dlq(it, event_err_name(EVENT_ERR_NO_MEMORY), "out of memory computing the event's digest");
}

static int customer_slot(pipeline *pl, const char *id)
{
    size_t n = (size_t)pl->ccap * 2, i = (size_t)XXH3_64bits(id, strlen(id)) % n;
    while (pl->slots[i] >= 0) {
        if (!strcmp(pl->custs[pl->slots[i]].id, id))
            return pl->slots[i];
        i = (i + 1) % n;
    }
    customer *c = &pl->custs[pl->ncusts];
    c->id = id;
    c->head = c->tail = -1;
    c->hold = INT64_MAX;
    c->referrer[0] = '\0';
    c->fp = c->fs = c->pr = -1;
    c->level = c->indeg = 0;
    c->referee = c->decided = false;
    pl->slots[i] = pl->ncusts;
    return pl->ncusts++;
}

static void group_by_customer(pipeline *pl)
{
    pl->ncusts = 0;
    pl->nsynth = 0;
    for (int i = 0; i < pl->ccap * 2; i++)
        pl->slots[i] = -1;
    for (int i = 0; i < pl->nitems; i++) {
        item *it = &pl->items[i];
        it->cust = -1;
        it->next = -1;
        it->pos = (int64_t)i * ITEM_POS_STEP;
        it->orig_kind = it->kind;
        it->synthetic = it->spawned = it->eager = it->dead = it->confirmed = it->unfetched = false;
        it->parent = -1;
        if (it->kind == ITEM_DLQ)
            continue;
        int c = customer_slot(pl, codec_record_key(it->rec));
        it->cust = c;
        if (pl->custs[c].tail >= 0)
            pl->items[pl->custs[c].tail].next = i;
        else
            pl->custs[c].head = i;
        pl->custs[c].tail = i;
    }
}

/* Keep a failed store call's message for the log or the exit: -2 (stop)
 * for a permanent error, -1 (wait for Redis and retry) for a transient one. */
static int redis_failed(pipeline *pl, int rc, const char *err)
{
    if (rc == STORE_PERMANENT) {
        snprintf(pl->err, sizeof(pl->err), "redis failed permanently (retrying cannot help): %.900s", err);
        return -2;
    }
    snprintf(pl->err, sizeof(pl->err), "%s", err);
    return -1;
}

/* ---- in-process credits (opts->credits_in_process) --------------------------------
 *
 * One process owns every partition (`fidelio replay`): a referral credit is
 * applied to the referrer right after the event that earned it, as `simulate`
 * does, instead of travelling through topics.credits. The batch is decided in
 * rounds. A round computes every pending item; an item whose credit goes to a
 * customer R with a later item in the batch puts R on hold at that item: none
 * of R's items after it is applied this round (the credit must come first).
 * A customer X on hold may earn its referrer S credits when its held items are
 * decided again (credits only ever go to the referrer, and a credit received
 * may change what X's next events earn), so S is put on hold at X's first held
 * item too, if S has later items; and so on to a fixed point. After the
 * round's apply, the credits of the items applied (or found applied: a resumed
 * replay re-reads them from the recorded outputs) become items of their
 * referrers, placed right after the item that earned them; the next round
 * decides them and the held items. The earliest pending item of the batch is
 * never held (a hold comes from an earlier pending item), so every round
 * applies it and the rounds end. A credit keeps its dedupe record in the
 * referrer's :c like any credit: re-spawned after a crash, it is found applied. */

/* The slot of customer id in this batch, or -1. */
static int customer_find(const pipeline *pl, const char *id)
{
    size_t n = (size_t)pl->ccap * 2, i = (size_t)XXH3_64bits(id, strlen(id)) % n;
    while (pl->slots[i] >= 0) {
        if (!strcmp(pl->custs[pl->slots[i]].id, id))
            return pl->slots[i];
        i = (i + 1) % n;
    }
    return -1;
}

/* Calls fn for each credit (kind 'c') among it's recorded outputs with the
 * beneficiary (the output's key) and the Avro bytes; stops at a non-zero
 * return and returns it; -1 if the record is corrupt. */
typedef int (*credit_output_fn)(pipeline *pl, int idx, const char *beneficiary, const uint8_t *avro, size_t len,
                                int nth);
static int each_credit_output(pipeline *pl, int idx, credit_output_fn fn)
{
    const item *it = &pl->items[idx];
    const uint8_t *p = (const uint8_t *)it->outputs.data, *end = p + it->outputs.len;
    int nth = 0;
    while (p < end) {
        char kind = (char)*p++;
        size_t kl, vl;
        if (get_len(&p, end, &kl) != 0)
            return -1;
        const uint8_t *k = p;
        p += kl;
        if (get_len(&p, end, &vl) != 0)
            return -1;
        if (kind == 'c') {
            char id[EVENT_ID_MAX + 1];
            snprintf(id, sizeof(id), "%.*s", (int)(kl < EVENT_ID_MAX ? kl : EVENT_ID_MAX), (const char *)k);
            int rc = fn(pl, idx, id, p, vl, ++nth);
            if (rc)
                return rc;
        }
        p += vl;
    }
    return 0;
}

/* Put customer c on hold at pos if it has an item after pos. Returns 1 if its hold moved. */
static int hold_at(pipeline *pl, int c, int64_t pos)
{
    if (c < 0 || pl->custs[c].hold <= pos)
        return 0;
    for (int j = pl->custs[c].head; j >= 0; j = pl->items[j].next)
        if (pl->items[j].pos > pos) {
            pl->custs[c].hold = pos;
            return 1;
        }
    return 0;
}

/* A credit of item idx: its beneficiary waits for it if it has later items. */
static int hold_beneficiary(pipeline *pl, int idx, const char *beneficiary, const uint8_t *avro, size_t len, int nth)
{
    (void)avro;
    (void)len;
    (void)nth;
    hold_at(pl, customer_find(pl, beneficiary), pl->items[idx].pos);
    return 0;
}

/* Holds spread to referrers (see above), to a fixed point. */
static void spread_holds(pipeline *pl)
{
    for (bool moved = true; moved;) {
        moved = false;
        for (int c = 0; c < pl->ncusts; c++) {
            customer *x = &pl->custs[c];
            if (x->hold == INT64_MAX || !x->referrer[0])
                continue;
            int j = x->head;
            while (j >= 0 && pl->items[j].pos <= x->hold)
                j = pl->items[j].next;
            if (j >= 0 && hold_at(pl, customer_find(pl, x->referrer), pl->items[j].pos))
                moved = true;
        }
    }
}

/* Make one credit earned by item idx an item of its beneficiary, right after idx. */
static int spawn_credit(pipeline *pl, int idx, const char *beneficiary, const uint8_t *avro, size_t len, int nth)
{
    char why[512];
    (void)beneficiary;
    int ci = pl->cap + pl->nsynth;
    for (int k = 0; pl->nsynth == pl->synthcap && k < pl->nsynth; k++) /* full: a withdrawn credit's room */
        if (pl->items[pl->cap + k].dead)
            ci = pl->cap + k;
    if (ci == pl->cap + pl->synthcap) {
        /* only recorded outputs of another program (found applied) can hold more */
        snprintf(pl->err, sizeof(pl->err),
                 "more than %d referral credits in one batch (recorded by another rule program?): lower "
                 "pipeline.batch_size", pl->synthcap);
        return -2;
    }
    item *c = &pl->items[ci];
    c->msg = NULL;
    c->kind = c->orig_kind = ITEM_CREDIT;
    c->synthetic = true;
    c->parent = idx;
    c->spawned = c->done = c->duplicate = c->eager = c->dead = c->confirmed = c->unfetched = false;
    c->in_round = true;
    c->pos = pl->items[idx].pos + nth;
    c->next = -1;
    buf_reset(&c->outputs);
    if (codec_decode_avro(pl->codec, SCHEMA_CREDIT, avro, len, c->rec, why, sizeof(why)) != EVENT_OK) {
        snprintf(pl->err, sizeof(pl->err), "a recorded credit of %s cannot be read: %s",
                 codec_record_key(pl->items[idx].rec), why);
        return -2;
    }
    if (ci == pl->cap + pl->nsynth)
        pl->nsynth++;
    digest_credit(&c->rec->credit, c->digest);
    if (event_check_customer_id(c->rec->credit.customer_id, "customer_id", why, sizeof(why)) != EVENT_OK) {
        c->cust = -1;
        set_dlq(c, "invalid_customer_id", why);
        return 0;
    }
    int cu = customer_slot(pl, c->rec->credit.customer_id);
    c->cust = cu;
    int prev = -1, j = pl->custs[cu].head;
    while (j >= 0 && pl->items[j].pos < c->pos) {
        prev = j;
        j = pl->items[j].next;
    }
    c->next = j;
    if (prev < 0)
        pl->custs[cu].head = ci;
    else
        pl->items[prev].next = ci;
    if (j < 0)
        pl->custs[cu].tail = ci;
    return 0;
}

/* After a round: held items were not applied; undo their decisions. */
static void undo_held(pipeline *pl)
{
    for (int c = 0; c < pl->ncusts; c++)
        for (int i = pl->custs[c].head; i >= 0; i = pl->items[i].next) {
            item *it = &pl->items[i];
            if (it->pos > pl->custs[c].hold && it->done && it->in_round) {
                it->done = it->duplicate = it->confirmed = false;
                it->kind = it->orig_kind;
            }
        }
}

/* After a round: the credits of the items now decided become items. */
static int spawn_decided(pipeline *pl)
{
    int n = pl->nitems + pl->nsynth; /* spawned items are credits: they earn none */
    for (int k = 0; k < n; k++) {
        int i = k < pl->nitems ? k : pl->cap + (k - pl->nitems);
        item *it = &pl->items[i];
        if (!it->done || it->spawned || it->kind == ITEM_DLQ || it->synthetic)
            continue;
        it->spawned = true;
        int rc = each_credit_output(pl, i, spawn_credit);
        if (rc == -1) {
            snprintf(pl->err, sizeof(pl->err), "recorded outputs of %s are corrupt", codec_record_key(it->rec));
            return -2;
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* The fetch of the batch's customers with undecided items: their profiles
 * (fetch_p, the customers' slots in pending) and their items' dedupe records
 * (fetch_s, *ns of them). Returns the number of customers. */
static int fetch_lists(pipeline *pl, int *ns)
{
    int np = 0;
    *ns = 0;
    for (int c = 0; c < pl->ncusts; c++) {
        bool pending = false;
        pl->custs[c].fp = -1;
        pl->custs[c].fs = *ns;
        for (int i = pl->custs[c].head; i >= 0; i = pl->items[i].next)
            if (!pl->items[i].done) {
                store_seen *d = &pl->fetch_s[(*ns)++];
                pl->items[i].unfetched = false;
                pending = true;
                d->customer_id = pl->custs[c].id;
                d->id = pl->items[i].kind == ITEM_CREDIT ? pl->items[i].rec->credit.credit_id
                                                         : pl->items[i].rec->tp.event_id;
                d->credit = pl->items[i].kind == ITEM_CREDIT;
                d->digest = pl->items[i].digest;
            }
        if (pending) {
            pl->fetch_p[np].customer_id = pl->custs[c].id;
            pl->custs[c].fp = np;
            pl->pending[np++] = c;
        }
    }
    return np;
}

static int fill_batch(pipeline *pl, int linger_ms, bool *source_done, char *err, size_t errlen);

/* Decode a filled batch and group it by customer. */
static void prepare_batch(pipeline *pl)
{
    pl->batch_now_ms = clock_wall_ms();
    for (int i = 0; i < pl->nitems; i++) {
        item *it = &pl->items[i];
        it->done = it->duplicate = false;
        decode_item(pl, it);
    }
    group_by_customer(pl);
}

/* The fetch of the batch read ahead (prepared by read_ahead), behind what is in flight. */
static void read_ahead_send(pipeline *pl)
{
    char err[1024];
    swap_batch(pl);
    if (pl->fetch_state == FETCH_PREPARED) {
        int ns, np = fetch_lists(pl, &ns);
        if (np > 0 &&
            store_fetch_send(pl->store, pl->fetch_p, (size_t)np, pl->fetch_s, (size_t)ns, err, sizeof(err)) == 0)
            pl->fetch_state = FETCH_SENT;
        /* (a failed send drops the connection: the batch in hand's replies fail, and both are retried) */
    }
    swap_batch(pl);
}

/* THE OVERLAP. Called once the batch in hand's applies are sent, before
 * their replies are read: read the next batch (only what the consumer already
 * holds: no wait), decode it, and (send_fetch) send its fetch. Redis runs that
 * fetch after the applies (one connection, in order), so it reads what they
 * wrote; if the batch in hand is not complete after them (fenced or not
 * applied: decided again), the fetch read ahead is dropped and done again
 * later (decide). Without send_fetch (in-process credits: more applies of
 * this batch follow), read_ahead_send sends it after the last of them. A
 * rebalance served by the poll meanwhile finishes both batches itself
 * (on_rebalance) and sets pl->taken. */
static void read_ahead(pipeline *pl, bool send_fetch)
{
    char err[1024];
    bool source_done = false; /* (the loop's next fill sees it again) */
    swap_batch(pl);
    pl->window = true;
    int frc = fill_batch(pl, 0, &source_done, err, sizeof(err));
    pl->window = false;
    if (frc != 0) { /* the loop stops on it once the batch in hand is done */
        snprintf(pl->err, sizeof(pl->err), "%s", err);
        pl->fatal = 1;
    }
    if (frc == 0 && !pl->taken && pl->nitems > 0) {
        prepare_batch(pl);
        pl->fetch_state = FETCH_PREPARED;
    }
    swap_batch(pl);
    if (send_fetch)
        read_ahead_send(pl);
}

/* A group of decided customers sent to Redis at once: store.c's chunk (one
 * script call), so streaming adds no Lua call overhead. */
#define STREAM_CUSTOMERS 64
#define STREAM_EVENTS 512

/* ---- in-process credits in one round (decide_levels) -------------------------------
 *
 * A round decides the batch's credits in batch order without waiting for
 * Redis between them, as simulate does. Before deciding, plan_round reads
 * whom each pending customer's credits would go to (its stored referred_by,
 * else the first SIGNUP of the batch naming one: the engine pays only that
 * customer), and orders the customers: first those no pending customer names
 * (level 0: they receive no credit, so they are decided and streamed to Redis
 * as in `run`), then the referrers, each after the customers that name it
 * (invitees first). When an item is decided, its credits become items of
 * their beneficiary at once (eager_credits), right after it, so the
 * beneficiary, decided later, sees them in batch order; a beneficiary outside
 * the pending customers is fetched once, after the round's other decisions.
 * A credit is applied only once the event that earned it is: a customer that
 * received credits gets a level above its credits' sources and its applies
 * are sent after theirs are confirmed (decide_levels); one whose credit's
 * source was not applied as decided (fenced, refused, found applied with
 * another record) has its decisions dropped and its unconfirmed credits
 * withdrawn, and is decided again in the next round with the round mechanism
 * above (holds, credits spawned after the apply). A credit to a customer
 * already decided in this round (a referral cycle) takes that path too. */

/* Predict each pending customer's beneficiary and order the round (see above);
 * returns the number of customers in pl->order. */
static int plan_round(pipeline *pl, int np)
{
    char ref[EVENT_ID_MAX + 1];
    for (int k = 0; k < np; k++) {
        customer *cu = &pl->custs[pl->pending[k]];
        const store_profile *sp = &pl->fetch_p[k];
        int has = sp->exists ? profile_peek_referrer(sp->encoding.data, sp->encoding.len, ref, sizeof(ref)) : 0;
        for (int i = cu->head; i >= 0 && has <= 0; i = pl->items[i].next) {
            const item *it = &pl->items[i];
            if (!it->done && it->kind == ITEM_TOUCHPOINT && it->rec->tp.type == EVENT_SIGNUP &&
                it->rec->tp.payload.signup.has_referred_by) {
                snprintf(ref, sizeof(ref), "%s", it->rec->tp.payload.signup.referred_by);
                has = 1;
            }
        }
        int r = has > 0 ? customer_find(pl, ref) : -1;
        cu->pr = r >= 0 && r != pl->pending[k] && pl->custs[r].fp >= 0 ? r : -1;
    }
    for (int k = 0; k < np; k++) {
        customer *cu = &pl->custs[pl->pending[k]];
        if (cu->pr >= 0)
            pl->custs[cu->pr].referee = true;
    }
    int n = 0;
    for (int k = 0; k < np; k++) { /* level 0, in the fetch's order */
        customer *cu = &pl->custs[pl->pending[k]];
        if (!cu->referee)
            pl->order[n++] = pl->pending[k];
    }
    for (int k = 0; k < np; k++) { /* referrers: each after its invitees (Kahn's order) */
        customer *cu = &pl->custs[pl->pending[k]];
        if (cu->referee && cu->pr >= 0 && pl->custs[cu->pr].referee)
            pl->custs[cu->pr].indeg++;
    }
    int first = n;
    for (int k = 0; k < np; k++) {
        customer *cu = &pl->custs[pl->pending[k]];
        if (cu->referee) {
            cu->level = 1;
            if (cu->indeg == 0)
                pl->order[n++] = pl->pending[k];
        }
    }
    for (int q = first; q < n; q++) {
        int r = pl->custs[pl->order[q]].pr;
        if (r >= 0 && pl->custs[r].referee && --pl->custs[r].indeg == 0)
            pl->order[n++] = r;
    }
    for (int k = 0; k < np; k++) { /* a cycle: in the fetch's order (its credits take the round path) */
        customer *cu = &pl->custs[pl->pending[k]];
        if (cu->referee && cu->indeg > 0) {
            cu->indeg = 0;
            pl->order[n++] = pl->pending[k];
        }
    }
    return n;
}

/* A credit of item idx to a customer already decided in this round, or to one of level 0. */
static int credit_too_late(pipeline *pl, int idx, const char *beneficiary, const uint8_t *avro, size_t len, int nth)
{
    (void)idx;
    (void)avro;
    (void)len;
    (void)nth;
    int c = customer_find(pl, beneficiary);
    return c >= 0 && (pl->custs[c].decided || (pl->custs[c].fp >= 0 && pl->custs[c].level == 0));
}

/* The credits of item idx, just decided (or found applied): items of their
 * beneficiaries now (see above), or, when one of them was decided already, the
 * round mechanism (a hold, the credits spawned after the apply). */
static int eager_credits(pipeline *pl, int idx)
{
    item *it = &pl->items[idx];
    if (it->spawned)
        return 0;
    int late = each_credit_output(pl, idx, credit_too_late);
    if (late) {
        if (late > 0)
            each_credit_output(pl, idx, hold_beneficiary);
        return 0; /* (corrupt recorded outputs: reported by spawn_decided) */
    }
    int rc = each_credit_output(pl, idx, spawn_credit);
    if (rc)
        return rc == -1 ? 0 : rc;
    it->spawned = true;
    int level = pl->custs[it->cust].level + 1;
    for (int k = 0; k < pl->nsynth; k++) { /* its credits (all new: withdrawn ones went with spawned) */
        item *c = &pl->items[pl->cap + k];
        if (c->parent != idx || c->dead || c->eager)
            continue;
        c->eager = c->unfetched = true;
        if (c->cust >= 0 && pl->custs[c->cust].level < level)
            pl->custs[c->cust].level = level;
    }
    return 0;
}

/* Decide customer c's undecided items on its fetched profile, appending
 * their apply requests at pl->reqs[*nreq]. Returns 0, or -2 (pl->err). */
static int decide_customer(pipeline *pl, int c, int *nreq)
{
    char err[1024];
    bool inproc = pl->opts->credits_in_process;
    customer *cu = &pl->custs[c];
    store_profile *sp = &pl->fetch_p[cu->fp];
    int si = cu->fs;
    profile_free(&pl->prof);
    if (sp->exists) {
        if (profile_decode(&pl->prof, pl->prog, cu->id, sp->encoding.data, sp->encoding.len, err, sizeof(err)) != 0) {
            snprintf(pl->err, sizeof(pl->err), "stored profile of %s: %.500s", cu->id, err);
            return -2;
        }
    } else {
        profile_init(&pl->prof, cu->id);
    }
    int64_t version = sp->version;
    for (int i = cu->head; i >= 0; i = pl->items[i].next) {
        item *it = &pl->items[i];
        if (it->done)
            continue;
        store_seen *seen = it->unfetched ? NULL : &pl->fetch_s[si++];
        if (seen && seen->conflict) {
            set_conflict(it);
            continue;
        }
        if (seen && seen->seen) {
            buf_reset(&it->outputs);
            if (buf_append(&it->outputs, seen->recorded.data, seen->recorded.len) != 0) {
                snprintf(pl->err, sizeof(pl->err), "out of memory");
                return -2;
            }
            it->done = it->duplicate = it->confirmed = true;
            if (inproc && eager_credits(pl, i) != 0)
                return -2;
            continue;
        }
        report_before before;
        report_capture(&pl->prof, version > 0, &before);
        engine_status est;
        if (it->kind == ITEM_CREDIT)
            est = rules_apply_credit(pl->prog, &pl->prof, &it->rec->credit, pl->out);
        else
            est = rules_apply_event(pl->prog, &pl->prof, &it->rec->tp, pl->out, err, sizeof(err));
        if (est == ENGINE_NO_MEMORY) {
            snprintf(pl->err, sizeof(pl->err), "%s", err);
            return -2;
        }
        if (est != ENGINE_OK) {
            set_dlq(it, engine_status_name(est), err);
            continue;
        }
        buf_reset(&it->profile);
        if (record_outputs(pl, it) != 0 || profile_encode(&pl->prof, pl->prog, &it->profile) != 0 ||
            report_compute(pl->prog, &before, &pl->prof, pl->out,
                           it->kind == ITEM_CREDIT ? "CREDIT" : event_type_name(it->rec->tp.type), &it->agg) != 0) {
            snprintf(pl->err, sizeof(pl->err), "out of memory");
            return -2;
        }
        store_apply_req *q = &pl->reqs[*nreq];
        q->customer_id = cu->id;
        q->id = it->kind == ITEM_CREDIT ? it->rec->credit.credit_id : it->rec->tp.event_id;
        q->credit = it->kind == ITEM_CREDIT;
        q->digest = it->digest;
        q->occurred_at = it->kind == ITEM_CREDIT ? it->rec->credit.occurred_at : it->rec->tp.occurred_at;
        q->expected_version = version++;
        q->profile = &it->profile;
        q->outputs = &it->outputs;
        /* where it was read (an in-process credit: where the event that earned it was) */
        const rd_kafka_message_t *src = it->synthetic ? pl->items[it->parent].msg : it->msg;
        q->source_credits = strcmp(rd_kafka_topic_name(src->rkt), pl->cfg->topic_credits) == 0;
        q->partition = src->partition;
        q->offset = src->offset;
        q->ledger = it->ledger_ptrs;
        q->ledger_len = it->ledger_lens;
        q->nledger = it->nledger;
        q->agg = it->agg.argv;
        q->nagg = pl->cfg->report_aggregates ? it->agg.n : 0;
        pl->req_item[(*nreq)++] = i;
        it->done = true; /* decided (the apply's status may undo it) */
        if (inproc && pl->out->ncredits && eager_credits(pl, i) != 0)
            return -2;
    }
    if (inproc && pl->prof.has_referred_by)
        memcpy(cu->referrer, pl->prof.referred_by, sizeof(cu->referrer));
    cu->decided = true;
    return 0;
}

/* The statuses of the applies reqs[lo, hi), just received. */
static int take_results(pipeline *pl, int lo, int hi, int *fenced, int *not_applied)
{
    for (int r = lo; r < hi; r++) {
        item *it = &pl->items[pl->req_item[r]];
        store_apply_req *q = &pl->reqs[r];
        it->done = false;
        switch (q->status) {
        case STORE_APPLIED:
            it->done = it->confirmed = true;
            break;
        case STORE_DUPLICATE: /* another instance applied it meanwhile: its record wins */
            buf_reset(&it->outputs);
            if (buf_append(&it->outputs, q->recorded.data, q->recorded.len) != 0) {
                snprintf(pl->err, sizeof(pl->err), "out of memory");
                return -2;
            }
            it->done = it->duplicate = true;
            break;
        case STORE_TOO_OLD:
            set_dlq(it, "older_than_dedupe_window",
                    "event time is older than the customer's newest event minus pipeline.dedupe_retention_ms; "
                    "it could not be deduplicated");
            break;
        case STORE_FENCED:
            (*fenced)++;
            break;
        case STORE_CONFLICT:
            set_conflict(it);
            break;
        case STORE_NOT_APPLIED: /* another event of its customer was not new: decided again */
            (*not_applied)++;
            break;
        }
    }
    return 0;
}

/* Customer c's in-process credits of this round whose source event was not
 * applied as decided: the position of the first (INT64_MAX: none). Its
 * decisions from there on are dropped and those credits withdrawn (decided
 * again next round); its earlier items do not depend on them and are applied.
 * (A credit comes after the event that earned it, so the batch's earliest
 * pending item is never dropped: every round applies it.) */
static int64_t credits_cut(pipeline *pl, int c)
{
    customer *cu = &pl->custs[c];
    int64_t cut = INT64_MAX;
    for (int i = cu->head; i >= 0 && cut == INT64_MAX; i = pl->items[i].next) {
        const item *it = &pl->items[i];
        const item *p = it->eager ? &pl->items[it->parent] : NULL;
        if (p && !(p->done && p->confirmed && p->kind != ITEM_DLQ))
            cut = it->pos;
    }
    if (cut == INT64_MAX)
        return cut;
    int prev = -1;
    for (int i = cu->head; i >= 0;) {
        item *it = &pl->items[i];
        int next = it->next;
        if (it->pos >= cut && it->in_round && it->done) {
            it->done = it->duplicate = it->confirmed = false;
            it->kind = it->orig_kind;
        }
        const item *p = it->eager ? &pl->items[it->parent] : NULL;
        if (p && !(p->done && p->confirmed && p->kind != ITEM_DLQ)) { /* withdrawn */
            it->dead = true;
            it->eager = false;
            pl->items[it->parent].spawned = false;
            if (prev < 0)
                cu->head = next;
            else
                pl->items[prev].next = next;
            if (cu->tail == i)
                cu->tail = prev;
        } else {
            prev = i;
        }
        i = next;
    }
    return cut;
}

/* Sort reqs[lo, nreq) by their customers' level (stable: a customer's requests stay together, in order). */
static int sort_levels(pipeline *pl, int lo, int nreq)
{
    int maxl = 0, n = 0;
    for (int r = lo; r < nreq; r++) {
        int l = pl->custs[pl->items[pl->req_item[r]].cust].level;
        maxl = l > maxl ? l : maxl;
    }
    for (int l = 0; l <= maxl; l++)
        for (int r = lo; r < nreq; r++)
            if (pl->custs[pl->items[pl->req_item[r]].cust].level == l) {
                pl->reqs_tmp[n] = pl->reqs[r];
                pl->req_item_tmp[n++] = pl->req_item[r];
            }
    memcpy(pl->reqs + lo, pl->reqs_tmp, (size_t)n * sizeof(*pl->reqs));
    memcpy(pl->req_item + lo, pl->req_item_tmp, (size_t)n * sizeof(*pl->req_item));
    return maxl;
}

/* Send reqs[sent, hi) (reqs[lo, sent) are sent already) and, with ahead,
 * the fetch of the batch read ahead, then receive the replies of reqs[lo, hi)
 * and of a fetch read ahead behind them. 0 or a redis_failed code. */
static int send_and_receive(pipeline *pl, int lo, int sent, int hi, bool ahead, double *t0)
{
    char err[1024];
    if (sent == lo)
        *t0 = clock_mono_s();
    int arc = hi > sent ? store_apply_send(pl->store, pl->reqs + sent, (size_t)(hi - sent), err, sizeof(err)) : 0;
    if (arc != 0)
        return redis_failed(pl, arc, err);
    if (ahead) /* the batch read ahead: its fetch behind the round's last applies */
        read_ahead_send(pl);
    double w0 = clock_mono_s();
    arc = hi > lo ? store_apply_recv(pl->store, err, sizeof(err)) : 0;
    bool fetched = arc == 0 && pl->other.fetch_state == FETCH_SENT;
    if (fetched) { /* nothing stays in flight past this point */
        swap_batch(pl);
        arc = store_fetch_recv(pl->store, err, sizeof(err));
        pl->fetch_state = arc == 0 ? FETCH_READY : FETCH_NONE;
        swap_batch(pl);
    }
    pl->spent_redis += clock_mono_s() - w0;
    pl->redis_waits += hi > lo || fetched; /* one wait: the fetch's replies follow the applies' */
    if (arc != 0)
        return redis_failed(pl, arc, err);
    if (hi > lo)
        metrics_observe(M_REDIS_RTT, clock_mono_s() - *t0, "apply");
    return 0;
}

/* Decide every item of the batch against Redis. Returns 0; -1 when Redis
 * failed transiently (retry the whole batch later: nothing is lost, applies
 * are idempotent); -2 when retrying cannot help (a permanent Redis error such
 * as NOPERM, OOM or READONLY, a stored profile this build cannot read, out of
 * memory): stop without committing. */
static int decide(pipeline *pl)
{
    char err[1024];
    bool inproc = pl->opts->credits_in_process;
    int max_rounds = inproc ? 20 + 2 * pl->ccap : 20; /* in-process: each round applies the earliest pending item */
    for (int round = 0; round < max_rounds; round++) {
        bool held = false; /* in-process: some customer is on hold this round */
        for (int c = 0; c < pl->ncusts; c++) {
            customer *cu = &pl->custs[c];
            cu->hold = INT64_MAX;
            cu->referrer[0] = '\0';
            cu->pr = -1;
            cu->level = cu->indeg = 0;
            cu->referee = cu->decided = false;
            for (int i = cu->head; i >= 0; i = pl->items[i].next)
                pl->items[i].in_round = !pl->items[i].done;
        }
        pl->st->rounds++;
        /* customers with undecided items */
        int ns, np = fetch_lists(pl, &ns);
        if (np == 0)
            return 0;
        double t0 = clock_mono_s();
        int src = 0;
        if (pl->fetch_state == FETCH_SENT || pl->fetch_state == FETCH_READY)
            pl->st->read_ahead++;
        if (pl->fetch_state == FETCH_SENT) /* read ahead (the lists are the same) */
            src = store_fetch_recv(pl->store, err, sizeof(err));
        else if (pl->fetch_state != FETCH_READY)
            src = store_fetch(pl->store, pl->fetch_p, (size_t)np, pl->fetch_s, (size_t)ns, err, sizeof(err));
        pl->redis_waits += pl->fetch_state != FETCH_READY;
        pl->fetch_state = FETCH_NONE;
        pl->spent_redis += clock_mono_s() - t0;
        if (src != 0)
            return redis_failed(pl, src, err);
        metrics_observe(M_REDIS_RTT, clock_mono_s() - t0, "fetch");
        /* run the engine per customer, in order, on the stored profile; each group of customers'
         * applies is sent as soon as they are decided, so Redis runs them while the next group is
         * decided (store.h: SPLIT CALLS); in-process, only level 0 (see above) */
        int nord = inproc ? plan_round(pl, np) : np;
        const int *ord = inproc ? pl->order : pl->pending;
        int nreq = 0, sent = 0, group = 0, n1 = -1;
        for (int k = 0; k < nord; k++) {
            customer *cu = &pl->custs[ord[k]];
            if (n1 < 0 && cu->level > 0)
                n1 = nreq; /* the requests before are level 0's */
            if (n1 < 0 && nreq > sent && (++group >= STREAM_CUSTOMERS || nreq - sent >= STREAM_EVENTS)) {
                if (sent == 0)
                    t0 = clock_mono_s(); /* the apply's round trip: from the first send */
                int arc = store_apply_send(pl->store, pl->reqs + sent, (size_t)(nreq - sent), err, sizeof(err));
                if (arc != 0)
                    return redis_failed(pl, arc, err);
                sent = nreq;
                group = 0;
            }
            int drc = decide_customer(pl, ord[k], &nreq);
            if (drc)
                return drc;
        }
        if (n1 < 0)
            n1 = nreq;
        if (inproc) {
            spread_holds(pl);
            for (int c = 0; c < pl->ncusts && !held; c++)
                held = pl->custs[c].hold != INT64_MAX;
        }
        if (held) { /* drop the applies of held items (swapped: each request owns its buffers) */
            int kept = 0, kept1 = 0;
            for (int r = 0; r < nreq; r++) {
                const item *rit = &pl->items[pl->req_item[r]];
                if (rit->pos > pl->custs[rit->cust].hold && r >= sent)
                    continue;
                store_apply_req tmp = pl->reqs[kept];
                pl->reqs[kept] = pl->reqs[r];
                pl->reqs[r] = tmp;
                pl->req_item[kept++] = pl->req_item[r];
                kept1 += r < n1;
            }
            nreq = kept;
            n1 = kept1;
            undo_held(pl);
        }
        /* customers that received credits but were not fetched this round: fetched now, behind
         * level 0's applies (they touch none of them) */
        int nlate = 0, nls = 0;
        for (int c = 0; inproc && c < pl->ncusts; c++) {
            customer *cu = &pl->custs[c];
            if (cu->fp >= 0 || cu->head < 0)
                continue;
            bool any = false;
            cu->fs = ns + nls;
            for (int i = cu->head; i >= 0; i = pl->items[i].next)
                if (!pl->items[i].done) {
                    store_seen *d = &pl->fetch_s[ns + nls++];
                    pl->items[i].unfetched = false;
                    any = true;
                    d->customer_id = cu->id;
                    d->id = pl->items[i].kind == ITEM_CREDIT ? pl->items[i].rec->credit.credit_id
                                                             : pl->items[i].rec->tp.event_id;
                    d->credit = pl->items[i].kind == ITEM_CREDIT;
                    d->digest = pl->items[i].digest;
                }
            if (any) {
                cu->fp = np + nlate;
                pl->fetch_p[cu->fp].customer_id = cu->id;
                pl->order[nlate++] = c;
            }
        }
        /* level 0's last applies, then (while Redis runs them) the next batch read ahead, its
         * fetch behind them, then the fetch of the customers that received credits unfetched */
        if (sent == 0)
            t0 = clock_mono_s();
        int arc = n1 > sent ? store_apply_send(pl->store, pl->reqs + sent, (size_t)(n1 - sent), err, sizeof(err)) : 0;
        if (arc != 0)
            return redis_failed(pl, arc, err);
        sent = n1;
        bool more = nlate > 0 || n1 < nreq; /* in-process: applies of higher levels follow */
        if (round == 0 && pl->readahead && !pl->no_readahead && pl->other.nitems == 0 && !cli_stop) {
            read_ahead(pl, !more);
            if (pl->taken) /* a rebalance finished (or dropped) this batch meanwhile */
                return 3;
        }
        if (nlate &&
            (arc = store_fetch_send(pl->store, pl->fetch_p + np, (size_t)nlate, pl->fetch_s + ns, (size_t)nls, err,
                                    sizeof(err))) != 0)
            return redis_failed(pl, arc, err);
        arc = send_and_receive(pl, 0, sent, n1, false, &t0);
        if (arc)
            return arc;
        int fenced = 0, not_applied = 0;
        if (take_results(pl, 0, n1, &fenced, &not_applied) != 0)
            return -2;
        if (nlate) { /* decide them: credits only, in order */
            double w0 = clock_mono_s();
            arc = store_fetch_recv(pl->store, err, sizeof(err));
            pl->spent_redis += clock_mono_s() - w0;
            pl->redis_waits++;
            if (arc != 0)
                return redis_failed(pl, arc, err);
            for (int k = 0; k < nlate; k++) {
                int drc = decide_customer(pl, pl->order[k], &nreq);
                if (drc)
                    return drc;
            }
        }
        /* the levels above 0, each once the credits it received are confirmed */
        int maxl = n1 < nreq ? sort_levels(pl, n1, nreq) : 0;
        for (int l = 1, lo = n1; l <= maxl; l++) {
            int hi = lo, kept = lo;
            while (hi < nreq && pl->custs[pl->items[pl->req_item[hi]].cust].level == l)
                hi++;
            for (int r = lo; r < hi;) { /* per customer: its requests before its first unconfirmed credit */
                int c = pl->items[pl->req_item[r]].cust, e = r;
                while (e < hi && pl->items[pl->req_item[e]].cust == c)
                    e++;
                int64_t cut = credits_cut(pl, c);
                for (; r < e && pl->items[pl->req_item[r]].pos < cut; r++) {
                    store_apply_req tmp = pl->reqs[kept];
                    pl->reqs[kept] = pl->reqs[r];
                    pl->reqs[r] = tmp;
                    pl->req_item[kept++] = pl->req_item[r];
                }
                r = e;
            }
            /* (customers of this level with nothing to apply: their credits are checked too) */
            arc = send_and_receive(pl, lo, lo, kept, hi == nreq, &t0);
            if (arc)
                return arc;
            if (take_results(pl, lo, kept, &fenced, &not_applied) != 0)
                return -2;
            lo = hi;
        }
        for (int c = 0; inproc && c < pl->ncusts; c++) /* levels with no request left to send */
            if (pl->custs[c].level > 0)
                credits_cut(pl, c);
        if (fenced || not_applied) /* decided again: the state read ahead for the next batch may predate that */
            pl->other.fetch_state = FETCH_NONE;
        if (fenced) {
            pl->st->fenced += fenced;
            metrics_add(M_APPLY_FENCED, fenced);
            log_info("%d applies fenced by a newer profile version; recomputing them", fenced);
        }
        if (inproc) {
            int sprc = spawn_decided(pl);
            if (sprc)
                return sprc;
            for (int c = 0; c < pl->ncusts; c++) /* another round: the fetch read ahead may predate it */
                for (int i = pl->custs[c].head; i >= 0; i = pl->items[i].next)
                    if (!pl->items[i].done)
                        pl->other.fetch_state = FETCH_NONE;
        }
    }
    snprintf(pl->err, sizeof(pl->err), "profiles kept changing under this instance (20 rounds of fencing)");
    return -1;
}

/* ---- produce and commit ------------------------------------------------------------ */

static const char *output_topic(const pipeline *pl, char kind)
{
    return kind == 'r' ? pl->cfg->topic_rewards : kind == 's' ? pl->cfg->topic_stage_changes : pl->cfg->topic_credits;
}

/* Bytes a DLQ record keeps free of key and value for its headers and the
 * record's own framing (the headers' text is counted on top). */
#define DLQ_RECORD_OVERHEAD 512

/* Produce the DLQ record of a rejected message: its original key and value,
 * headers naming the error and the source (topic, partition, offset), and
 * dlq_id "<topic>/<partition>/<offset>": the same on every retry or
 * redelivery, so subscribers can dedupe. The record always fits the
 * producer's message.max.bytes: if it would not, the value (then the key) is
 * cut and value_truncated / key_truncated give the original length; the
 * source coordinates say where to fetch the original. */
static int produce_dlq(pipeline *pl, item *it)
{
    if (it->synthetic) { /* an in-process credit: its Avro under the coordinates of the event that earned it */
        char why[256];
        rd_kafka_message_t *src = pl->items[it->parent].msg;
        pl->enc->credit = it->rec->credit;
        pl->enc->schema = SCHEMA_CREDIT;
        if (codec_encode_avro(pl->codec, SCHEMA_CREDIT, pl->enc, &pl->scratch, why, sizeof(why)) != EVENT_OK) {
            snprintf(pl->err, sizeof(pl->err), "encoding a refused credit for the DLQ: %s", why);
            return -1;
        }
        rd_kafka_message_t fake = *src;
        fake.key = (void *)it->rec->credit.customer_id;
        fake.key_len = strlen(it->rec->credit.customer_id);
        fake.payload = pl->scratch.data;
        fake.len = pl->scratch.len;
        item tmp = *it;
        tmp.synthetic = false;
        tmp.msg = &fake;
        return produce_dlq(pl, &tmp);
    }
    rd_kafka_message_t *m = it->msg;
    const char *topic = rd_kafka_topic_name(m->rkt);
    char part[16], off[24], id[300], vorig[24], korig[24];
    snprintf(part, sizeof(part), "%d", (int)m->partition);
    snprintf(off, sizeof(off), "%lld", (long long)m->offset);
    snprintf(id, sizeof(id), "%s/%s/%s", topic, part, off);
    const char *names[] = {"error", "error_detail", "source_topic", "source_partition", "source_offset", "dlq_id"};
    const char *values[] = {it->dlq_error, it->dlq_detail, topic, part, off, id};
    size_t overhead = DLQ_RECORD_OVERHEAD + 2 * (sizeof("value_truncated") + sizeof(vorig));
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        overhead += strlen(names[i]) + strlen(values[i]) + 8;
    size_t room = (size_t)pl->max_record_bytes > overhead ? (size_t)pl->max_record_bytes - overhead : 0;
    size_t klen = m->key_len, vlen = m->len;
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        rd_kafka_header_add(h, names[i], -1, values[i], -1);
    if (klen > room / 2 && klen + vlen > room) { /* a huge key: keep half the room for it */
        klen = room / 2;
        snprintf(korig, sizeof(korig), "%zu", m->key_len);
        rd_kafka_header_add(h, "key_truncated", -1, korig, -1);
    }
    if (klen + vlen > room) {
        vlen = room - klen;
        snprintf(vorig, sizeof(vorig), "%zu", m->len);
        rd_kafka_header_add(h, "value_truncated", -1, vorig, -1);
    }
    rd_kafka_resp_err_t e = emitter_produce(&pl->em, pl->cfg->topic_dlq, m->key, klen, m->payload, vlen, h);
    if (e) {
        rd_kafka_headers_destroy(h);
        snprintf(pl->err, sizeof(pl->err), "produce to %s (DLQ record of %s): %s", pl->cfg->topic_dlq, id,
                 rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

static int produce_item(pipeline *pl, item *it)
{
    rd_kafka_message_t *m = it->synthetic ? pl->items[it->parent].msg : it->msg;
    bool dry = pl->opts->no_outputs;
    if (it->dead) /* a withdrawn in-process credit */
        return 0;
    if (it->kind == ITEM_DLQ)
        return dry ? 0 : produce_dlq(pl, it);
    const uint8_t *p = (const uint8_t *)it->outputs.data, *end = p + it->outputs.len;
    while (p < end) {
        char kind = (char)*p++;
        size_t kl, vl;
        if (get_len(&p, end, &kl) != 0)
            goto corrupt;
        const uint8_t *k = p;
        p += kl;
        if (get_len(&p, end, &vl) != 0)
            goto corrupt;
        if (kind == 'c' && pl->opts->credits_in_process) { /* applied here, in the batch */
            p += vl;
            continue;
        }
        /* a credit is an effect, not an output: without in-process credits it travels through
           topics.credits even when outputs are only counted (`replay --parallel --outputs none`) */
        rd_kafka_resp_err_t e = dry && kind != 'c'
                                    ? RD_KAFKA_RESP_ERR_NO_ERROR
                                    : emitter_stage(&pl->em, output_topic(pl, kind), k, kl, p, vl);
        if (e) {
            snprintf(pl->err, sizeof(pl->err), "produce to %s: %s", output_topic(pl, kind), rd_kafka_err2str(e));
            return -1;
        }
        pl->st->outputs++;
        pl->batch_outputs++;
        p += vl;
    }
    return 0;
corrupt:
    snprintf(pl->err, sizeof(pl->err), "recorded outputs of %s [%d] offset %lld are corrupt",
             rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset);
    return -1;
}

/* After a batch's produce_item calls (prc: the first failed, else 0): produce
 * the outputs they staged (emitter_stage: one rd_kafka_produce_batch per
 * topic), even after a failure (they point into the batch's items). */
static int staged_out(pipeline *pl, int prc)
{
    rd_kafka_resp_err_t e = emitter_send_staged(&pl->em);
    if (e && prc == 0) {
        snprintf(pl->err, sizeof(pl->err), "produce to %s: %s", pl->em.staged_topic ? pl->em.staged_topic : "?",
                 rd_kafka_err2str(e));
        return -1;
    }
    return prc;
}

/* The batch's input offsets to commit (next offset to read, per partition);
 * the caller destroys the list. NULL when out of memory. */
static rd_kafka_topic_partition_list_t *batch_offsets(const pipeline *pl, bool first)
{
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(16);
    if (!offs)
        return NULL;
    const rd_kafka_topic_t *last_rkt = NULL; /* the partition of the item before (the consumer hands */
    int32_t last_part = 0;                   /* a partition's messages in runs): found without a search */
    int last = -1;
    for (int i = 0; i < pl->nitems; i++) {
        rd_kafka_message_t *m = pl->items[i].msg;
        rd_kafka_topic_partition_t *tp = NULL;
        if (last >= 0 && m->rkt == last_rkt && m->partition == last_part)
            tp = &offs->elems[last];
        else if (!(tp = rd_kafka_topic_partition_list_find(offs, rd_kafka_topic_name(m->rkt), m->partition))) {
            tp = rd_kafka_topic_partition_list_add(offs, rd_kafka_topic_name(m->rkt), m->partition);
            tp->offset = first ? m->offset : m->offset + 1;
        }
        last = (int)(tp - offs->elems);
        last_rkt = m->rkt;
        last_part = m->partition;
        if (first ? m->offset < tp->offset : m->offset + 1 > tp->offset)
            tp->offset = first ? m->offset : m->offset + 1;
    }
    return offs;
}

/* Not pipelined: exactly-once (one transaction per batch) and assign mode
 * (the source keeps the progress). Produce the batch's messages and commit
 * them with its offsets (emitter.h) before the next batch; a failed delivery
 * or produce call is retried a few times (same bytes, same ids). Returns 0
 * delivered (pl->committed says whether the offsets were committed), 1
 * transaction aborted: the batch must be processed again, -1 fatal (pl->err;
 * never commit then). */
static int emit_sync(pipeline *pl)
{
    rd_kafka_topic_partition_list_t *offs = batch_offsets(pl, false);
    char why[512];
    int rc = -1;
    if (!offs) {
        snprintf(pl->err, sizeof(pl->err), "out of memory");
        return -1;
    }
    pl->committed = false;
    for (int attempt = 1; attempt <= 3; attempt++) {
        /* a transaction; at-least-once here is not pipelined: no batch in flight to open */
        int prc = pl->em.transactional ? emitter_begin(&pl->em, why, sizeof(why)) : 0;
        if (prc != 0)
            snprintf(pl->err, sizeof(pl->err), "%s", why);
        pl->batch_outputs = 0;
        for (int i = 0; i < pl->nitems && prc == 0; i++)
            prc = produce_item(pl, &pl->items[i]);
        for (int i = 0; i < pl->nsynth && prc == 0; i++)
            prc = produce_item(pl, &pl->items[pl->cap + i]);
        prc = staged_out(pl, prc);
        metrics_add(M_OUTPUTS, (double)pl->batch_outputs);
        if (prc != 0 && emitter_txn_refused(&pl->em, why, sizeof(why))) {
            /* a missing ACL (e.g. Write on an output topic) refused the transaction while its
               outputs were produced: no retry mends it; nothing was committed */
            snprintf(pl->err, sizeof(pl->err), "%s", why);
            emitter_abort(&pl->em);
            break;
        }
        if (prc != 0) {
            emitter_abort(&pl->em);
            log_error("producing the batch's outputs failed (attempt %d of 3): %s", attempt, pl->err);
            sleep((unsigned)attempt);
            continue;
        }
        metrics_set(M_PRODUCER_QUEUE, emitter_queued(&pl->em));
        double c0 = clock_mono_s();
        emit_result r;
        if (pl->opts->source) { /* assign mode: acknowledge, then the source keeps the progress (no group) */
            rd_kafka_topic_partition_list_t *none = rd_kafka_topic_partition_list_new(1);
            r = none ? emitter_commit(&pl->em, none, why, sizeof(why)) : EMIT_FATAL;
            if (none)
                rd_kafka_topic_partition_list_destroy(none);
            else
                snprintf(why, sizeof(why), "out of memory");
            report_dlq dlq = {0};
            for (int k = 0; k < pl->nitems + pl->nsynth; k++) {
                const item *it = &pl->items[k < pl->nitems ? k : pl->cap + (k - pl->nitems)];
                if (it->kind == ITEM_DLQ && !it->dead)
                    report_dlq_count(&dlq, it->dlq_error);
            }
            report_dlq_fields f;
            report_dlq_pairs(&dlq, &f);
            if (r == EMIT_COMMITTED &&
                pl->opts->source->commit(pl->opts->source->ctx, offs, (size_t)pl->nitems, f.pairs, f.n, why,
                                         sizeof(why)) != 0) {
                log_warn("keeping the progress failed: %s (the batch will be read again and deduplicated)", why);
                r = EMIT_UNCOMMITTED;
            }
        } else {
            r = emitter_commit(&pl->em, offs, why, sizeof(why));
        }
        pl->commit_s = clock_mono_s() - c0;
        if (r == EMIT_COMMITTED || r == EMIT_UNCOMMITTED) {
            pl->committed = r == EMIT_COMMITTED;
            rc = 0;
            break;
        }
        if (r == EMIT_FATAL) {
            snprintf(pl->err, sizeof(pl->err), "%s", why);
            break;
        }
        if (pl->em.transactional) { /* aborted: nothing of it is visible */
            rc = 1;
            break;
        }
        log_error("delivering the batch's outputs failed (attempt %d of 3): %s", attempt, why);
        snprintf(pl->err, sizeof(pl->err), "outputs could not be delivered: %s", why);
        sleep((unsigned)attempt);
    }
    rd_kafka_topic_partition_list_destroy(offs);
    return rc;
}

/* At-least-once: produce the batch's messages and hand the batch to the
 * emitter, which commits its offsets once they and every earlier batch's
 * are acknowledged; tail comes back through on_batch_done. Waits first while
 * pipeline.max_in_flight_batches are in flight. Returns 0 handed over, 1 a
 * delivery or produce call failed (recover_delivery; tail is freed), -1 out
 * of memory. */
static int emit_async(pipeline *pl, batch_tail *tail)
{
    char why[512];
    while (!emitter_has_room(&pl->em)) {
        metrics_heartbeat();
        if (emitter_poll(&pl->em, 100) != 0) {
            batch_tail_free(tail);
            return 1;
        }
    }
    rd_kafka_topic_partition_list_t *offs = batch_offsets(pl, false), *first = batch_offsets(pl, true);
    if (!offs || !first || emitter_begin(&pl->em, why, sizeof(why)) != 0) {
        if (offs)
            rd_kafka_topic_partition_list_destroy(offs);
        if (first)
            rd_kafka_topic_partition_list_destroy(first);
        batch_tail_free(tail);
        snprintf(pl->err, sizeof(pl->err), "out of memory");
        return -1;
    }
    int prc = 0;
    pl->batch_outputs = 0;
    for (int i = 0; i < pl->nitems && prc == 0; i++)
        prc = produce_item(pl, &pl->items[i]);
    for (int i = 0; i < pl->nsynth && prc == 0; i++)
        prc = produce_item(pl, &pl->items[pl->cap + i]);
    prc = staged_out(pl, prc);
    metrics_add(M_OUTPUTS, (double)pl->batch_outputs);
    tail->handed_at = clock_mono_s();
    emitter_end(&pl->em, offs, first, tail);
    metrics_set(M_PRODUCER_QUEUE, emitter_queued(&pl->em));
    if (prc != 0) { /* a produce call refused: as a failed delivery, never committed */
        emitter_fail(&pl->em, pl->err);
        return 1;
    }
    return 0;
}

static void clear_batch(pipeline *pl);

/* Seek the consumer back to these offsets (messages to read again) and
 * forget that their partitions were at their end. A partition no longer
 * assigned is left to its new owner: the seek's error is only logged, after
 * what (the caller's step). */
static void seek_back(pipeline *pl, const rd_kafka_topic_partition_list_t *offs, const char *what)
{
    rd_kafka_error_t *e = rd_kafka_seek_partitions(pl->consumer, (rd_kafka_topic_partition_list_t *)offs, 10000);
    if (e) {
        log_warn("%s: %s", what, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    for (int i = 0; i < offs->cnt; i++) {
        eof_mark *m = eof_find(pl, offs->elems[i].topic, offs->elems[i].partition, false);
        if (m)
            m->at_end = false;
    }
}

/* At-least-once, after a failed delivery (or produce call): nothing is
 * committed past it. Every batch in flight is dropped uncommitted and the
 * consumer is sought back to the first offset of the oldest of them on each
 * partition (with the batch in hand), so they are read and decided again:
 * Redis finds their events applied and returns the recorded outputs, which
 * are produced again (same bytes, same ids). The third failure in a row
 * stops the run (-1, pl->err) uncommitted, as a crash would. */
static int recover_delivery(pipeline *pl)
{
    snprintf(pl->delivery_error, sizeof(pl->delivery_error), "%s",
             pl->em.fail_error[0] ? pl->em.fail_error : pl->em.dr.last_error);
    int attempt = ++pl->delivery_failures;
    if (attempt >= 3)
        log_error("delivering outputs failed (attempt %d of 3): %s", attempt, pl->delivery_error);
    else
        log_error("delivering outputs failed (attempt %d of 3): %s; the %d uncommitted batch(es) are read again",
                  attempt, pl->delivery_error, emitter_in_flight(&pl->em) + (pl->nitems > 0));
    rd_kafka_topic_partition_list_t *first = rd_kafka_topic_partition_list_new(16);
    emitter_discard(&pl->em, 60000, first);
    for (int set = 0; set < 2; set++) { /* the batch in hand, then the one read ahead */
        if (set)
            swap_batch(pl);
        for (int i = 0; first && i < pl->nitems; i++) { /* where no earlier batch started */
            rd_kafka_message_t *m = pl->items[i].msg;
            rd_kafka_topic_partition_t *tp =
                rd_kafka_topic_partition_list_find(first, rd_kafka_topic_name(m->rkt), m->partition);
            if (!tp) /* a partition's items are in offset order: its first is the oldest */
                rd_kafka_topic_partition_list_add(first, rd_kafka_topic_name(m->rkt), m->partition)->offset =
                    m->offset;
        }
        clear_batch(pl);
        if (set)
            swap_batch(pl);
    }
    if (attempt >= 3 || !first) {
        snprintf(pl->err, sizeof(pl->err), "outputs could not be delivered: %s", pl->delivery_error);
        if (first)
            rd_kafka_topic_partition_list_destroy(first);
        return -1;
    }
    if (first->cnt > 0 && pl->opts->source) { /* assign mode: the source hands them out again */
        char why[512];
        if (pl->opts->source->rewind(pl->opts->source->ctx, first, why, sizeof(why)) != 0) {
            snprintf(pl->err, sizeof(pl->err), "reading the uncommitted batches again: %s", why);
            rd_kafka_topic_partition_list_destroy(first);
            return -1;
        }
    } else if (first->cnt > 0) {
        seek_back(pl, first, "reading the uncommitted batches again");
    }
    rd_kafka_topic_partition_list_destroy(first);
    sleep((unsigned)attempt);
    return 0;
}

/* After an aborted transaction: seek the batch's partitions back to its first
 * messages, so it is read and decided again (Redis finds its events applied
 * and returns their recorded outputs for the next transaction). A partition
 * no longer assigned is left to its new owner. */
static void rewind_batch(pipeline *pl)
{
    rd_kafka_topic_partition_list_t *offs = batch_offsets(pl, true);
    if (!offs)
        return;
    seek_back(pl, offs, "rewinding the aborted batch");
    rd_kafka_topic_partition_list_destroy(offs);
}

/* After a commit: tell the store which offsets are committed (offs: the
 * batch's next offsets), so the outputs recorded for them may go (the next
 * fetch drops them) and their dedupe records may be trimmed (store.h, OUTPUTS
 * AFTER THE COMMIT: no round trip of its own). */
static int trim_batch(pipeline *pl, const rd_kafka_topic_partition_list_t *offs)
{
    for (int i = 0; offs && i < offs->cnt; i++)
        store_committed(pl->store, strcmp(offs->elems[i].topic, pl->cfg->topic_credits) == 0,
                        offs->elems[i].partition, offs->elems[i].offset);
    return 0;
}

static void clear_batch(pipeline *pl)
{
    pl->fetch_state = FETCH_NONE;
    for (int i = 0; pl->items && i < pl->nitems; i++) {
        rd_kafka_message_destroy(pl->items[i].msg);
        pl->items[i].msg = NULL;
    }
    pl->nitems = 0;
    pl->nsynth = 0;
    pl->batch_bytes = 0;
}

/* Metrics and report counts of a decided batch: what was consumed, applied
 * (its deltas), re-emitted and dead-lettered, and how long deciding took.
 * DLQ counts are noted in dlq: they go to the report only once the batch is
 * committed (a redelivered batch would count them again). */
static void pipeline_batch_metrics(pipeline *pl, double apply_s, batch_tail *tail)
{
    long long tp = 0, cr = 0;
    report_dlq *dlq = &tail->dlq;
    report_metrics applied = {0}; /* the batch's deltas summed per series: one metrics update each */
    for (int i = 0; i < pl->nitems; i++) {
        item *it = &pl->items[i];
        bool credit = !strcmp(rd_kafka_topic_name(it->msg->rkt), pl->cfg->topic_credits);
        tp += !credit;
        cr += credit;
        if (it->kind == ITEM_DLQ)
            report_dlq_note(dlq, credit ? "credit" : "touchpoint", it->dlq_error);
        else if (it->duplicate)
            metrics_add(M_EVENTS_DUPLICATE, 1);
        else
            report_metrics_add(&applied, &it->agg);
    }
    for (int i = 0; i < pl->nsynth; i++) { /* in-process credits */
        item *it = &pl->items[pl->cap + i];
        if (it->dead)
            continue;
        if (it->kind == ITEM_DLQ)
            report_dlq_note(dlq, "credit", it->dlq_error);
        else if (it->duplicate)
            metrics_add(M_EVENTS_DUPLICATE, 1);
        else
            report_metrics_add(&applied, &it->agg);
    }
    report_metrics_flush(&applied);
    tail->touchpoints = tp;
    tail->credits = cr;
    metrics_add(M_BATCHES, 1);
    metrics_observe(M_BATCH_SIZE, pl->nitems);
    metrics_observe(M_APPLY_SECONDS, apply_s);
}

/* The tail of the decided batch: a copy of its offsets (the batch's records
 * are reused at once). NULL when out of memory. */
static batch_tail *batch_tail_new(const pipeline *pl)
{
    batch_tail *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    if (!(t->offs = batch_offsets(pl, false))) {
        free(t);
        return NULL;
    }
    return t;
}

/* A batch's offsets were committed (its dedupe records may be trimmed, its
 * DLQ counts reported), or it was dropped uncommitted (it will be read again
 * or by the next owner). Frees the tail. */
static void on_batch_done(void *ctx, void *user, bool committed)
{
    pipeline *pl = ctx;
    batch_tail *t = user;
    if (committed && pl->opts->source) { /* assign mode: the source keeps the progress and the DLQ counts */
        char err[512];
        report_dlq_fields f;
        report_dlq_pairs(&t->dlq, &f);
        if (pl->opts->source->commit(pl->opts->source->ctx, t->offs, (size_t)(t->touchpoints + t->credits), f.pairs,
                                     f.n, err, sizeof(err)) != 0) {
            log_warn("keeping the progress failed: %s (the batch will be read again and deduplicated)", err);
            committed = false;
        }
    }
    if (committed) {
        char err[512];
        pl->delivery_failures = 0;
        metrics_observe(M_COMMIT_SECONDS, clock_mono_s() - t->handed_at);
        if (trim_batch(pl, t->offs) != 0)
            pl->fatal = 1;
        /* (assign mode: the source wrote them with its progress) */
        if (!pl->opts->source && report_dlq_flush(&t->dlq, pl->store, err, sizeof(err)) != 0)
            log_warn("counting the batch's DLQ reasons for the report failed: %s", err);
        /* after the report's counts: whoever sees the input consumed sees the report complete */
        metrics_add(M_EVENTS_CONSUMED, (double)t->touchpoints, pl->cfg->topic_touchpoints);
        metrics_add(M_EVENTS_CONSUMED, (double)t->credits, pl->cfg->topic_credits);
    }
    batch_tail_free(t);
}

static int rewind_after_abort(pipeline *pl);
static void log_batch(pipeline *pl);

/* Count the age of input m at a stage: now_ms - its Kafka timestamp. */
static void note_age(pipeline *pl, latency_stage stage, const rd_kafka_message_t *m, int64_t now_ms)
{
    int64_t ts = rd_kafka_message_timestamp(m, NULL);
    if (ts >= 0)
        latency_add(&pl->ages[stage], now_ms - ts);
}

/* The ages of the batch's inputs at a stage (log.level=debug). */
static void note_batch_ages(pipeline *pl, latency_stage stage)
{
    if (!pl->measure_ages)
        return;
    int64_t now = clock_wall_ms();
    for (int i = 0; i < pl->nitems; i++)
        note_age(pl, stage, pl->items[i].msg, now);
}

/* Decide the batch, apply it in Redis and hand its outputs over (at-least-
 * once: committed later, in order, once acknowledged; exactly-once: its
 * transaction committed). Returns 0 done, 1 Redis unavailable (batch kept for
 * a retry), -1 fatal (delivery failed for good, unreadable state). */
static int process_batch(pipeline *pl)
{
again:
    if (pl->nitems == 0)
        return 0;
    if (pl->fetch_state == FETCH_NONE) /* else decoded and fetched ahead (read_ahead) */
        prepare_batch(pl);
    double t0 = clock_mono_s();
    int drc = decide(pl);
    if (drc == 3) { /* a rebalance took the batch over while it was read ahead: what is left starts again */
        pl->taken = false;
        pl->fetch_state = FETCH_NONE;
        goto again;
    }
    metrics_set(M_REDIS_UP, drc == -1 ? 0 : 1);
    if (drc == -2)
        return -1;
    if (drc != 0)
        return 1;
    double t1 = clock_mono_s();
    pl->batches_done++;
    note_batch_ages(pl, LAT_APPLIED);
    batch_tail *tail = batch_tail_new(pl);
    if (!tail) {
        snprintf(pl->err, sizeof(pl->err), "out of memory");
        return -1;
    }
    pipeline_batch_metrics(pl, t1 - t0, tail);
    log_batch(pl); /* counts what Redis applied, whatever becomes of the outputs */
    if (!pl->em.transactional) { /* `run` and `replay` alike */
        int erc = emit_async(pl, tail);
        metrics_observe(M_PRODUCE_SECONDS, clock_mono_s() - t1);
        if (erc == 0)
            note_batch_ages(pl, LAT_HANDED);
        pl->spent[1] += t1 - t0;
        pl->spent[2] += clock_mono_s() - t1;
        if (erc < 0)
            return -1;
        if (erc > 0)
            return recover_delivery(pl) != 0 ? -1 : 0;
    } else {
        int erc = emit_sync(pl);
        if (erc == 0)
            metrics_observe(M_PRODUCE_SECONDS, clock_mono_s() - t1 - pl->commit_s);
        tail->handed_at = clock_mono_s() - pl->commit_s;
        if (erc != 0)
            batch_tail_free(tail);
        else
            on_batch_done(pl, tail, pl->committed); /* tells the store, reports the DLQ counts */
        if (erc < 0)
            return -1;
        if (erc > 0)
            return rewind_after_abort(pl);
        pl->aborts_in_row = 0;
    }
    clear_batch(pl);
    if (pl->opts->source && pl->opts->source->batch_done)
        pl->opts->source->batch_done(pl->opts->source->ctx, pl->st);
    return pl->fatal ? -1 : 0;
}

/* Exactly-once, after an aborted transaction: read the batch again. */
static int rewind_after_abort(pipeline *pl)
{
    {
        rewind_batch(pl);
        clear_batch(pl);
        pl->st->aborted++;
        /* a fenced zombie aborts once, then serves its rebalance; a batch that
         * aborts again and again (a missing ACL, a broken cluster) must stop */
        if (++pl->aborts_in_row >= 5) {
            snprintf(pl->err, sizeof(pl->err), "%d transactions in a row were aborted; the last: %.900s",
                     pl->aborts_in_row, pl->em.last_abort);
            return -1;
        }
        sleep(1);
        return 0;
    }
}

/* Log and count a decided batch: one line per batch, not per event, so a
 * flood of bad input does not flood the log. */
static void log_batch(pipeline *pl)
{
    long long dlq = 0, dup = 0, tp = 0, cr = 0;
    buf why = {0};
    const item *first_bad = NULL;
    for (int i = 0; i < pl->nitems; i++) {
        item *it = &pl->items[i];
        if (it->kind == ITEM_DLQ) {
            dlq++;
            if (!first_bad)
                first_bad = it;
            /* count each error name once per batch, in order of appearance */
            int seen = 0, n = 0;
            for (int j = 0; j < i; j++)
                seen |= pl->items[j].kind == ITEM_DLQ && !strcmp(pl->items[j].dlq_error, it->dlq_error);
            for (int j = i; j < pl->nitems && !seen; j++)
                n += pl->items[j].kind == ITEM_DLQ && !strcmp(pl->items[j].dlq_error, it->dlq_error);
            if (!seen)
                buf_printf(&why, "%s%s x%d", why.len ? ", " : "", it->dlq_error, n);
        } else if (it->duplicate) {
            dup++;
        } else if (it->kind == ITEM_CREDIT) {
            cr++;
        } else {
            tp++;
        }
    }
    for (int i = 0; i < pl->nsynth; i++) { /* in-process credits */
        item *it = &pl->items[pl->cap + i];
        if (it->dead)
            continue;
        dlq += it->kind == ITEM_DLQ;
        dup += it->kind != ITEM_DLQ && it->duplicate;
        cr += it->kind != ITEM_DLQ && !it->duplicate;
    }
    /* one line per batch, not per event: a flood of bad input does not flood the log */
    if (first_bad)
        log_warn("batch of %d: %lld to the DLQ (%s); first: %s [%d] offset %lld: %s", pl->nitems, dlq,
                 why.data ? why.data : "", rd_kafka_topic_name(first_bad->msg->rkt), (int)first_bad->msg->partition,
                 (long long)first_bad->msg->offset, first_bad->dlq_detail);
    buf_free(&why);
    pl->st->touchpoints += tp;
    pl->st->credits += cr;
    pl->st->duplicates += dup;
    pl->st->dlq += dlq;
    pl->st->batches++;
    pl->st->consumed += pl->nitems;
    if (dup)
        log_info("batch of %d: %lld redelivered events found applied; their recorded outputs were re-emitted",
                 pl->nitems, dup);
}

/* ---- Redis outages ------------------------------------------------------------- */

static void set_paused(pipeline *pl, bool pause)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(pl->consumer, &a) == 0 && a) {
        if (pause)
            rd_kafka_pause_partitions(pl->consumer, a);
        else
            rd_kafka_resume_partitions(pl->consumer, a);
        rd_kafka_topic_partition_list_destroy(a);
    }
    pl->paused = pause;
}

/* ---- end-of-partition tracking --------------------------------------------------- */

static eof_mark *eof_find(pipeline *pl, const char *topic, int32_t partition, bool add)
{
    for (int i = 0; i < pl->neofs; i++)
        if (pl->eofs[i].partition == partition && !strcmp(pl->eofs[i].topic, topic))
            return &pl->eofs[i];
    if (!add)
        return NULL;
    if (pl->neofs == pl->eofcap) {
        int cap = pl->eofcap ? pl->eofcap * 2 : 16;
        eof_mark *e = realloc(pl->eofs, (size_t)cap * sizeof(*e));
        if (!e)
            return NULL;
        pl->eofs = e;
        pl->eofcap = cap;
    }
    eof_mark *e = &pl->eofs[pl->neofs++];
    snprintf(e->topic, sizeof(e->topic), "%s", topic);
    e->partition = partition;
    e->at_end = false;
    return e;
}

static bool all_at_end(pipeline *pl)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    bool all = true;
    if (rd_kafka_assignment(pl->consumer, &a) != 0 || !a)
        return false;
    if (a->cnt == 0)
        all = false;
    for (int i = 0; i < a->cnt && all; i++) {
        eof_mark *e = eof_find(pl, a->elems[i].topic, a->elems[i].partition, false);
        all = e && e->at_end;
    }
    rd_kafka_topic_partition_list_destroy(a);
    return all;
}

static void mark_activity(pipeline *pl, const rd_kafka_message_t *m)
{
    eof_mark *e = eof_find(pl, rd_kafka_topic_name(m->rkt), m->partition, true);
    if (e)
        e->at_end = false;
    pl->idle_since = 0;
}

/* ---- rebalance ---------------------------------------------------------------------- */

static void drop_partitions(pipeline *pl, const rd_kafka_topic_partition_list_t *parts)
{
    int kept = 0;
    for (int i = 0; i < pl->nitems; i++) {
        rd_kafka_message_t *m = pl->items[i].msg;
        if (rd_kafka_topic_partition_list_find(parts, rd_kafka_topic_name(m->rkt), m->partition)) {
            rd_kafka_message_destroy(m);
            continue;
        }
        item tmp = pl->items[kept];
        pl->items[kept] = pl->items[i];
        pl->items[i] = tmp;
        kept++;
    }
    if (kept != pl->nitems) /* decoded again, fetched again */
        pl->fetch_state = FETCH_NONE;
    pl->nitems = kept;
}

/* The same in the batch read ahead. */
static void drop_partitions_ahead(pipeline *pl, const rd_kafka_topic_partition_list_t *parts)
{
    swap_batch(pl);
    drop_partitions(pl, parts);
    swap_batch(pl);
}

static void log_parts(const char *what, const rd_kafka_topic_partition_list_t *parts)
{
    char line[900];
    size_t n = 0;
    for (int i = 0; i < parts->cnt && n + 40 < sizeof(line); i++)
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s[%d]", i ? " " : "", parts->elems[i].topic,
                              (int)parts->elems[i].partition);
    log_info("%s %d partition(s): %s", what, parts->cnt, parts->cnt ? line : "-");
}

/* Answer a rebalance callback: take (assign) or give up (revoke, lost) parts,
 * and count the assigned partitions from the lists for the gauge. Nothing
 * after the answer may wait for librdkafka's main thread: during
 * rd_kafka_consumer_close the answer lets the group terminate, and an op
 * request queued then (rd_kafka_assignment(), rd_kafka_rebalance_protocol())
 * can be purged unanswered and wait forever (librdkafka 2.0.2; issues 4041,
 * 4884; tests/e2e_close_race.sh). docs/design.md "Stopping while the group
 * leaves". */
static void answer_rebalance(pipeline *pl, rd_kafka_t *rk, bool assign, rd_kafka_topic_partition_list_t *parts)
{
    const char *why = NULL;
    char text[512];
    if (pl->protocol == 2) {
        rd_kafka_error_t *e = assign ? rd_kafka_incremental_assign(rk, parts) : rd_kafka_incremental_unassign(rk, parts);
        if (e) {
            snprintf(text, sizeof(text), "%s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            why = text;
        } else {
            pl->nassigned += assign ? parts->cnt : -parts->cnt;
        }
    } else {
        rd_kafka_resp_err_t e = rd_kafka_assign(rk, assign ? parts : NULL);
        if (e)
            why = rd_kafka_err2str(e);
        else
            pl->nassigned = assign ? parts->cnt : 0;
    }
    if (why)
        log_warn("%s %d partition(s): %s", assign ? "assigning" : "unassigning", parts->cnt, why);
    if (pl->nassigned < 0)
        pl->nassigned = 0;
    metrics_set(M_ASSIGNED, pl->nassigned);
}

/* librdkafka statistics (statistics.interval.ms): the consumer lag per partition. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    pipeline *pl = opaque;
    if (metrics_kafka_stats(json, len) != 0)
        log_debug("unreadable librdkafka statistics");
    kafka_req_stats now;
    char line[512];
    /* log.level=debug: the consumer's fetches (their count grows the brokers' work with the partitions) */
    if (log_enabled(LOG_DEBUG) && kafka_stats_read(json, len, "Fetch", &now) == 0) {
        if (pl->fetch_stats.ts_us) {
            kafka_stats_describe(&pl->fetch_stats, &now, line, sizeof(line));
            log_debug("input consumer: fetch %s", line);
        }
        pl->fetch_stats = now;
    }
    return 0; /* librdkafka frees json */
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    pipeline *pl = opaque;
    if (!pl->protocol) { /* asked before this callback's answer: the group waits for that answer */
        const char *p = rd_kafka_rebalance_protocol(rk);
        pl->protocol = p && !strcmp(p, "COOPERATIVE") ? 2 : 1;
    }
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_parts("assigned", parts);
        answer_rebalance(pl, rk, true, parts);
        pl->ever_assigned = true;
        if (pl->paused || pl->closing) /* (waits for the partitions' broker threads, not for the group's queue) */
            rd_kafka_pause_partitions(rk, parts);
        return;
    }
    /* served by read_ahead's poll: the batch in hand's applies are in flight and the batch read
     * ahead is in front. Their replies are read and dropped: the batch in hand is decided again
     * from the start (what they applied is found applied, its recorded outputs re-emitted). */
    bool window = pl->window;
    if (window) {
        char e[512];
        if (store_in_flight(pl->store) && store_apply_recv(pl->store, e, sizeof(e)) != 0)
            log_debug("rebalance: the applies in flight: %s (decided again)", e);
        pl->window = false;
        pl->taken = true;
        pl->no_readahead++;
        swap_batch(pl);
        pl->fetch_state = FETCH_NONE;
    }
    if (rd_kafka_assignment_lost(rk)) {
        /* someone else owns them now: drop in-flight work, commit nothing */
        log_warn("assignment lost: dropping in-flight messages of %d partition(s) uncommitted", parts->cnt);
        drop_partitions(pl, parts);
        drop_partitions_ahead(pl, parts);
        emitter_forget(&pl->em, parts);
    } else {
        log_parts("revoked", parts);
        /* finish the batch in hand (and the one read ahead), wait for every batch in flight to
         * be acknowledged and commit them before letting go */
        /* after a fatal error (e.g. a transaction refused for a missing ACL) the batch is not
         * processed again: nothing more is committed, the next owner gets it */
        int rc = pl->paused ? 1 : pl->fatal ? -1 : process_batch(pl);
        if (rc == 0 && pl->other.nitems > 0) {
            pl->no_readahead++;
            swap_batch(pl);
            rc = process_batch(pl);
            swap_batch(pl);
            pl->no_readahead--;
        }
        if (rc >= 0 && emitter_drain(&pl->em, 60000) != 0) {
            log_warn("outputs in flight were not all acknowledged before the revoke (%s): the revoked "
                     "partitions' uncommitted batches go to the next owner",
                     pl->em.fail_error);
            emitter_forget(&pl->em, parts); /* the rest is read again (recover_delivery) */
        }
        if (rc != 0) {
            log_warn("could not finish the in-flight batch before the revoke (%s); its messages go to the next owner",
                     pl->err);
            drop_partitions(pl, parts);
            drop_partitions_ahead(pl, parts);
        }
        if (rc < 0)
            pl->fatal = 1;
    }
    if (window) { /* the batch read ahead in front again: read_ahead's poll goes on filling it */
        swap_batch(pl);
        pl->no_readahead--;
    }
    for (int i = 0; i < parts->cnt; i++) {
        eof_mark *e = eof_find(pl, parts->elems[i].topic, parts->elems[i].partition, false);
        if (e)
            e->at_end = false;
    }
    answer_rebalance(pl, rk, false, parts); /* the last call into librdkafka here */
}

/* The consumer's error callback: access errors (authentication, ACLs) are
 * kept for the loop, which stops on them; others are logged (librdkafka retries). */
static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    pipeline *pl = opaque;
    snprintf(pl->client_error, sizeof(pl->client_error), "%s", reason); /* explains an assignment timeout */
    if (kafka_err_is_access((rd_kafka_resp_err_t)err)) {
        pl->access.code = (rd_kafka_resp_err_t)err;
        snprintf(pl->access.text, sizeof(pl->access.text), "%s", reason);
        return;
    }
    log_warn("kafka: %s", reason);
}

/* With --until-idle: -1 (pl->err set) once no partition has been assigned
 * for pipeline.assign_timeout_ms; checked about once a second. */
static int check_assigned(pipeline *pl)
{
    double now = clock_mono_s();
    if (now - pl->last_assign_check < 1.0)
        return 0;
    pl->last_assign_check = now;
    rd_kafka_topic_partition_list_t *a = NULL;
    bool assigned = rd_kafka_assignment(pl->consumer, &a) == 0 && a && a->cnt > 0;
    if (a)
        rd_kafka_topic_partition_list_destroy(a);
    if (assigned) {
        pl->unassigned_since = 0;
        return 0;
    }
    if (pl->unassigned_since == 0)
        pl->unassigned_since = now;
    if ((now - pl->unassigned_since) * 1000 < (double)pl->cfg->assign_timeout_ms)
        return 0;
    snprintf(pl->err, sizeof(pl->err),
             "no partition of %s assigned for %.0f s (pipeline.assign_timeout_ms); last Kafka error: %s",
             pl->cfg->topic_touchpoints, now - pl->unassigned_since,
             pl->client_error[0] ? pl->client_error : "none (is the topic there? another member may hold every partition)");
    return -1;
}

/* Whether the configuration sets kafka.<key>. */
static bool user_set(const config *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->kafka_count; i++)
        if (!strcmp(cfg->kafka[i].key, key))
            return true;
    return false;
}

rd_kafka_conf_t *pipeline_consumer_conf(const config *cfg, const char *assign_group, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, err, errlen);
    if (!conf)
        return NULL;
    /* assign mode: the source's group.id, never joined nor committed on (pipeline.h) */
    if (kafka_conf_set(conf, "group.id", assign_group ? assign_group : cfg->consumer_group, err, errlen) ||
        (assign_group && kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errlen)) ||
        kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) ||
        kafka_conf_set(conf, "enable.partition.eof", "true", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* Defaults the configuration may override (kafka.<key>):
     * - a new group starts at the beginning (no touchpoint is skipped), with
     *   cooperative-sticky assignment;
     * - a bounded prefetch, so memory follows the batch, not the topic: librdkafka's
     *   defaults keep up to 100,000 messages per partition and 64 MB of payload
     *   (counting neither its ~0.5 KB of bookkeeping per message nor the fetch
     *   buffers they pin): with small events that held most of a topic (271-331 MB
     *   RSS);
     * - a fetch waits for 64 KB or 25 ms: a real broker answers a fetch as
     *   soon as one byte is there, so a steady stream over many partitions was
     *   hundreds of fetches a second, each naming every assigned partition (the
     *   broker's CPU, and the consumer thread's, grew with the partitions); 25 ms
     *   bounds what it adds to latency, and what an empty fetch waits on a broker
     *   that does not answer as soon as data comes (the mock);
     * - the consumer lag comes from librdkafka's statistics. */
    static const char *const consumer_defaults[][2] = {
        {"auto.offset.reset", "earliest"},
        {"partition.assignment.strategy", "cooperative-sticky"},
        {"queued.max.messages.kbytes", "8192"},
        {"queued.min.messages", "20000"},
        {"fetch.max.bytes", "8388608"},
        {"fetch.min.bytes", PIPELINE_FETCH_MIN_BYTES},
        {"fetch.wait.max.ms", PIPELINE_FETCH_WAIT_MS},
        {"statistics.interval.ms", "5000"},
    };
    for (size_t i = 0; i < sizeof(consumer_defaults) / sizeof(consumer_defaults[0]); i++)
        if (!user_set(cfg, consumer_defaults[i][0]) &&
            kafka_conf_set(conf, consumer_defaults[i][0], consumer_defaults[i][1], err, errlen)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    return conf;
}

/* ---- set-up ----------------------------------------------------------------------- */

/* The arrays of the batch set in front (swap_batch). */
static int alloc_batch_set(pipeline *pl, char *err, size_t errlen)
{
    size_t ccap = (size_t)pl->ccap;
    pl->items = calloc(ccap, sizeof(*pl->items));
    pl->custs = calloc(ccap, sizeof(*pl->custs));
    pl->slots = calloc(ccap * 2, sizeof(*pl->slots));
    pl->fetch_p = calloc(ccap, sizeof(*pl->fetch_p));
    pl->fetch_s = calloc(ccap, sizeof(*pl->fetch_s));
    pl->reqs = calloc(ccap, sizeof(*pl->reqs));
    pl->req_item = calloc(ccap, sizeof(*pl->req_item));
    pl->pending = calloc(ccap, sizeof(*pl->pending));
    if (!pl->items || !pl->custs || !pl->slots || !pl->fetch_p || !pl->fetch_s || !pl->reqs || !pl->req_item ||
        !pl->pending) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < ccap; i++)
        if (!(pl->items[i].rec = calloc(1, sizeof(codec_record)))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    return 0;
}

/* Release the batch set in front (its messages too). */
static void free_batch_set(pipeline *pl)
{
    clear_batch(pl);
    for (int i = 0; pl->items && i < pl->ccap; i++) {
        if (pl->items[i].rec) {
            codec_record_free(pl->items[i].rec);
            free(pl->items[i].rec);
        }
        buf_free(&pl->items[i].outputs);
        buf_free(&pl->items[i].profile);
        buf_free(&pl->items[i].ledger);
        report_deltas_free(&pl->items[i].agg);
    }
    for (int i = 0; pl->fetch_p && i < pl->ccap; i++)
        store_profile_free(&pl->fetch_p[i]);
    for (int i = 0; pl->fetch_s && i < pl->ccap; i++)
        store_seen_free(&pl->fetch_s[i]);
    for (int i = 0; pl->reqs && i < pl->ccap; i++)
        store_apply_req_free(&pl->reqs[i]);
    free(pl->items);
    free(pl->custs);
    free(pl->slots);
    free(pl->fetch_p);
    free(pl->fetch_s);
    free(pl->reqs);
    free(pl->req_item);
    free(pl->pending);
    pl->items = NULL;
    pl->fetch_p = NULL;
    pl->fetch_s = NULL;
    pl->reqs = NULL;
}

static int setup(pipeline *pl, char *err, size_t errlen)
{
    const config *cfg = pl->cfg;
    char why[512];
    int cap = (int)cfg->batch_size;
    pl->cap = cap;
    /* in-process credits live after the batch's messages: room for as many per message as one
       event can earn, one per rule of the program that pays the referrer (at least one) */
    int per_event = 0;
    for (int i = 0; i < pl->prog->nrules; i++)
        per_event += pl->prog->rules[i].to == BENEFICIARY_REFERRER;
    pl->synthcap = pl->opts->credits_in_process ? cap * (per_event > 0 ? per_event : 1) : 0;
    pl->ccap = cap + pl->synthcap;
    pl->readahead = !cfg->exactly_once; /* `run` and `replay` alike: the batch pipeline */
    pl->order = calloc((size_t)pl->ccap, sizeof(*pl->order));
    pl->reqs_tmp = calloc((size_t)pl->ccap, sizeof(*pl->reqs_tmp));
    pl->req_item_tmp = calloc((size_t)pl->ccap, sizeof(*pl->req_item_tmp));
    if (!pl->order || !pl->reqs_tmp || !pl->req_item_tmp) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int set = 0; set < 2; set++) { /* the batch in hand's working set, then the read-ahead's */
        if (set)
            swap_batch(pl);
        if (alloc_batch_set(pl, err, errlen) != 0)
            return -1;
        if (set)
            swap_batch(pl);
    }
    pl->out = malloc(sizeof(*pl->out));
    pl->enc = calloc(1, sizeof(*pl->enc));
    if (!pl->out || !pl->enc) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    profile_init(&pl->prof, "");

    if (!(pl->codec = codec_new((size_t)cfg->max_message_bytes, err, errlen)))
        return -1;
    if (!(pl->store = store_open(cfg->redis_url, cfg->key_prefix, cfg->dedupe_retention_ms, cfg->ledger_max, err,
                                 errlen)))
        return -1;
    if (!cfg->report_aggregates && store_aggregates_incomplete(pl->store, err, errlen) != 0)
        return -1;
    if ((pl->max_record_bytes = kafka_max_message_bytes(cfg)) < 0) {
        snprintf(err, errlen, "kafka.message.max.bytes: cannot be read");
        return -1;
    }
    rd_kafka_conf_t *conf = pipeline_consumer_conf(cfg, pl->opts->source ? pl->opts->source->group_id : NULL, err,
                                                   errlen);
    if (!conf)
        return -1;
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_error_cb(conf, on_kafka_error);
    rd_kafka_conf_set_opaque(conf, pl);
    pl->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!pl->consumer) {
        snprintf(err, errlen, "kafka consumer: %s", why);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_poll_set_consumer(pl->consumer);
    /* Fidelio creates no topics: a missing one is an error now, not a silent wait */
    const char *topics_in_use[] = {cfg->topic_touchpoints, cfg->topic_rewards, cfg->topic_stage_changes,
                                   cfg->topic_dlq, cfg->topic_credits};
    const char *topic_keys[] = {"topics.touchpoints", "topics.rewards", "topics.stage_changes", "topics.dlq",
                                "topics.credits"};
    /* the topics this process reads or writes: no outputs, no output topics; in-process credits, no credits topic */
    const char *check[5], *check_keys[5];
    size_t ntopics = 0;
    for (size_t i = 0; i < 5; i++) {
        bool output = i >= 1 && i <= 3, credits = i == 4;
        if ((output && pl->opts->no_outputs) || (credits && pl->opts->credits_in_process))
            continue;
        check[ntopics] = topics_in_use[i];
        check_keys[ntopics++] = topic_keys[i];
    }
    /* bounded by pipeline.assign_timeout_ms: a dead broker stops run here */
    if (kafka_check_topics(pl->consumer, check, check_keys, ntopics, (int)cfg->assign_timeout_ms, &pl->access, err,
                           errlen) != 0)
        return -1;
    if (emitter_open(&pl->em, cfg, pl->consumer, on_batch_done, pl, err, errlen) != 0)
        return -1;
    pl->measure_ages = log_enabled(LOG_DEBUG);
    if (pl->measure_ages)
        pl->em.output_ages = &pl->ages[LAT_OUTPUT];
    pl->em.keep_offsets = pl->opts->source != NULL; /* assign mode: never a commit on a group (pipeline.h) */
    /* the output topics' metadata before the first batch (check[0] is the input) */
    emitter_prepare(&pl->em, check + 1, ntopics - 1, (int)cfg->assign_timeout_ms);
    if (pl->opts->source) {
        if (pl->opts->source->start(pl->opts->source->ctx, pl->consumer, err, errlen) != 0)
            return -1;
        metrics_set(M_PROGRAM_INFO, 1, pl->prog->version, pl->prog->digest);
        metrics_set(M_REDIS_UP, 1);
        return 0;
    }
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(topics, cfg->topic_touchpoints, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(topics, cfg->topic_credits, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(pl->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        snprintf(err, errlen, "subscribe: %s", rd_kafka_err2str(e));
        return -1;
    }
    metrics_set(M_PROGRAM_INFO, 1, pl->prog->version, pl->prog->digest);
    metrics_set(M_REDIS_UP, 1);
    metrics_expect_partitions(true);
    if (!*cfg->credits_hmac_key)
        log_warn("credits.hmac_key is not set: credits on %s are neither signed nor checked, so anyone who can "
                 "write to that topic can grant points; set FIDELIO_CREDITS_HMAC_KEY (the same key on every "
                 "instance of namespace '%s') in production",
                 cfg->topic_credits, cfg->key_prefix);
    char shown[512];
    config_mask_url(cfg->redis_url, shown, sizeof(shown));
    log_info("consuming %s and %s as group '%s'; state in %s (prefix '%s'); rule program %s", cfg->topic_touchpoints,
             cfg->topic_credits, cfg->consumer_group, shown, cfg->key_prefix, pl->prog->version);
    return 0;
}

/* librdkafka 2.0.2 aborts in rd_kafka_destroy (rdkafka_sticky_assignor.c:
 * "Assertion 'assignor_state' failed", https://github.com/confluentinc/librdkafka/issues/4312,
 * fixed upstream by PR #4381, not in Debian 12) when the handle goes after a
 * JoinGroup response chose the cooperative-sticky assignor (rkcg_assignor set,
 * so rd_kafka_rebalance_protocol() says COOPERATIVE) but before the first
 * SyncGroup response gave it its state (on_assignment, just before our first
 * assign callback): the group's destroy hands the NULL state to the assignor.
 * So a consumer stopped in that window keeps serving the group (polls; the
 * assign callback pauses what it gets; a polled message is dropped unprocessed
 * and uncommitted: the next owner reads it) until its first assignment
 * arrives, at most ASSIGNOR_SETTLE_S, and only then closes. docs/design.md. */
#define ASSIGNOR_SETTLE_S 30.0
static void settle_assignor(pipeline *pl)
{
    if (pl->ever_assigned || strcmp(rd_kafka_rebalance_protocol(pl->consumer), "COOPERATIVE"))
        return;
    log_info("stopping during the group's first rebalance: waiting up to %.0f s for its assignment before "
             "leaving (librdkafka issue 4312)", ASSIGNOR_SETTLE_S);
    pl->closing = true;
    double end = clock_mono_s() + ASSIGNOR_SETTLE_S;
    while (!pl->ever_assigned && clock_mono_s() < end &&
           !strcmp(rd_kafka_rebalance_protocol(pl->consumer), "COOPERATIVE")) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(pl->consumer, 100);
        if (m)
            rd_kafka_message_destroy(m);
    }
    if (!pl->ever_assigned && !strcmp(rd_kafka_rebalance_protocol(pl->consumer), "COOPERATIVE"))
        log_warn("no assignment within %.0f s: closing anyway (librdkafka 2.0.2 may abort, issue 4312)",
                 ASSIGNOR_SETTLE_S);
}

static void teardown(pipeline *pl)
{
    if (pl->consumer && pl->opts->source && pl->opts->source->stop)
        pl->opts->source->stop(pl->opts->source->ctx);
    if (pl->consumer && !pl->opts->source)
        settle_assignor(pl);
    if (pl->consumer) { /* a revoke may still finish a batch: the emitter stays open */
        rd_kafka_consumer_close(pl->consumer);
        metrics_set(M_ASSIGNED, 0); /* (an assign served during close is taken as an unassign) */
    }
    clear_batch(pl);
    swap_batch(pl);
    clear_batch(pl);
    swap_batch(pl);
    emitter_close(&pl->em); /* before the consumer: its commit queue holds a reference */
    if (pl->consumer)
        rd_kafka_destroy(pl->consumer);
    store_close(pl->store);
    codec_free(pl->codec);
    free_batch_set(pl);
    swap_batch(pl);
    free_batch_set(pl);
    profile_free(&pl->prof);
    if (pl->enc)
        codec_record_free(pl->enc);
    free(pl->enc);
    free(pl->out);
    free(pl->eofs);
    free(pl->order);
    free(pl->reqs_tmp); /* (shallow copies: the requests' buffers are owned by reqs) */
    free(pl->req_item_tmp);
    buf_free(&pl->scratch);
}

/* ---- the loop ------------------------------------------------------------------------ */

/* SIGHUP: between batches, swap in a newly loaded rule program; a refused
 * one leaves the running program in place. Profiles are re-read from Redis
 * for every batch, so nothing decided under the old program stays in memory. */
static void reload_program(pipeline *pl, const pipeline_opts *opts)
{
    if (!cli_hup)
        return;
    cli_hup = 0;
    if (!opts->reload) {
        log_warn("SIGHUP received: this process cannot reload its rule program; still running %s",
                 pl->prog->version);
        return;
    }
    char err[1024];
    const program *next = opts->reload(opts->reload_ctx, err, sizeof(err));
    if (!next) {
        log_error("SIGHUP: rule program reload refused, still running %s (%s): %s", pl->prog->version,
                  pl->prog->digest, err);
        return;
    }
    log_info("SIGHUP: rule program reloaded from %s: %s (%s), was %s (%s); it applies from the next batch",
             next->source, next->version, next->digest, pl->prog->version, pl->prog->digest);
    metrics_clear(M_PROGRAM_INFO);
    metrics_set(M_PROGRAM_INFO, 1, next->version, next->digest);
    pl->prog = next;
}

/* Fill the batch in front: up to batch_size messages, batch_max_bytes, or
 * linger_ms (0: only what the consumer already holds). 0, or -1 with err
 * (waiting cannot help: an ACL or credentials). */
static int fill_batch(pipeline *pl, int linger_ms, bool *source_done, char *err, size_t errlen)
{
    const config *cfg = pl->cfg;
    const pipeline_opts *opts = pl->opts;
    double deadline = clock_mono_s() + linger_ms / 1000.0;
    /* (a rebalance served by read_ahead's poll ends its fill: what follows goes the usual way) */
    while (pl->nitems < pl->cap && pl->batch_bytes < (size_t)cfg->batch_max_bytes && !cli_stop && !pl->taken) {
        int wait = (int)((deadline - clock_mono_s()) * 1000);
        rd_kafka_message_t *m = opts->source ? opts->source->next(opts->source->ctx, wait > 0 ? wait : 0, source_done)
                                             : rd_kafka_consumer_poll(pl->consumer, wait > 0 ? wait : 0);
        if (!m && opts->source && *source_done)
            break;
        if (pl->access.code) { /* a failed login or a missing ACL: waiting cannot help */
            if (m)
                rd_kafka_message_destroy(m);
            snprintf(err, errlen, "kafka: %s (wrong credentials or security settings, or a missing ACL; "
                     "README: ACLs)", pl->access.text);
            return -1;
        }
        if (!m) {
            if (wait <= 0)
                break;
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof_mark *e = eof_find(pl, rd_kafka_topic_name(m->rkt), m->partition, true);
            if (e)
                e->at_end = true;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            if (kafka_err_is_access(m->err)) { /* waiting cannot help: say so and stop */
                snprintf(err, errlen, "consumer: %s (the principal lacks an ACL or its credentials are wrong; "
                         "README: ACLs)", rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                return -1;
            }
            log_warn("consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        mark_activity(pl, m);
        if (pl->measure_ages)
            note_age(pl, LAT_TAKEN, m, clock_wall_ms());
        pl->batch_bytes += m->len + m->key_len;
        pl->items[pl->nitems++].msg = m;
        if (opts->source && opts->source->batch_end && opts->source->batch_end(opts->source->ctx))
            break;
    }
    return 0;
}

/* log.level=debug, every report and at the end: where the inputs' time went
 * since the last one (latency.h), then forget it. Ages from each input's Kafka timestamp
 * (the broker's append time on a LogAppendTime topic, else its producer's). */
static void log_ages(pipeline *pl)
{
    const latency_hist *a = pl->ages;
    if (!pl->measure_ages || (a[LAT_TAKEN].n == 0 && a[LAT_OUTPUT].n == 0))
        return;
    log_debug("inputs' age since their Kafka timestamp, p50/p99 ms: taken into a batch %lld/%lld, applied %lld/%lld, "
              "handed to the producer %lld/%lld (%lld inputs); outputs' Kafka timestamp after their batch's first "
              "produce call, p50/p99 ms: %lld/%lld (%lld outputs)",
              (long long)latency_quantile(&a[LAT_TAKEN], 0.5), (long long)latency_quantile(&a[LAT_TAKEN], 0.99),
              (long long)latency_quantile(&a[LAT_APPLIED], 0.5), (long long)latency_quantile(&a[LAT_APPLIED], 0.99),
              (long long)latency_quantile(&a[LAT_HANDED], 0.5), (long long)latency_quantile(&a[LAT_HANDED], 0.99),
              a[LAT_HANDED].n, (long long)latency_quantile(&a[LAT_OUTPUT], 0.5),
              (long long)latency_quantile(&a[LAT_OUTPUT], 0.99), a[LAT_OUTPUT].n);
    for (int s = 0; s < LAT_STAGES; s++)
        latency_reset(&pl->ages[s]);
}

/* Wait out a Redis outage: pause consumption, reconnect with backoff while
 * serving rebalances, resume. Returns 0 when Redis answers or on stop, -1
 * when reconnecting fails permanently (pl->err says why). */
static int wait_for_redis(pipeline *pl)
{
    int backoff_ms = 100;
    char err[1024];
    pl->st->redis_pauses++;
    metrics_add(M_REDIS_PAUSES, 1);
    pl->fetch_state = pl->other.fetch_state = FETCH_NONE; /* whatever was in flight went with the connection */
    log_warn("redis unavailable (%s): pausing consumption, %d message(s) held for retry", pl->err, pl->nitems);
    set_paused(pl, true);
    double since = clock_mono_s();
    while (!cli_stop) {
        metrics_heartbeat();
        emitter_poll(&pl->em, 0); /* batches in flight still commit; a failure is handled after */
        /* assign mode: the source alone takes messages from the consumer (its order, its progress) */
        rd_kafka_message_t *m = NULL;
        if (pl->opts->source)
            usleep((useconds_t)backoff_ms * 1000);
        else
            m = rd_kafka_consumer_poll(pl->consumer, backoff_ms);
        if (m) /* a partition assigned during the outage: keep its message for the retry */
        {
            bool ahead = pl->other.nitems > 0; /* after the batch read ahead, if any */
            if (ahead)
                swap_batch(pl);
            if (!m->err && pl->nitems < pl->cap) {
                pl->items[pl->nitems++].msg = m;
                mark_activity(pl, m);
            } else {
                rd_kafka_message_destroy(m);
            }
            if (ahead)
                swap_batch(pl);
        }
        int rc = store_reconnect(pl->store, err, sizeof(err));
        if (rc == 0)
            break;
        if (rc == STORE_PERMANENT) {
            redis_failed(pl, rc, err);
            return -1;
        }
        if (backoff_ms < 5000)
            backoff_ms *= 2;
    }
    set_paused(pl, false);
    metrics_set(M_REDIS_UP, cli_stop ? 0 : 1);
    if (!cli_stop)
        log_info("redis is back after %.1f s: resuming", clock_mono_s() - since);
    return 0;
}

int pipeline_run(const config *cfg, const program *prog, const pipeline_opts *opts, pipeline_stats *st, char *err,
                 size_t errlen)
{
    pipeline pl = {.cfg = cfg, .opts = opts, .prog = prog, .st = st, .unassigned_since = clock_mono_s()};
    bool source_done = false;
    memset(st, 0, sizeof(*st));
    int rc = -1;
    if (setup(&pl, err, errlen) != 0)
        goto out;
    double last_report = clock_mono_s();
    while (!cli_stop && !pl.fatal) {
        metrics_heartbeat();
        /* acknowledgements of the batches in flight: commit the complete ones, in order */
        double p0 = clock_mono_s();
        if (emitter_poll(&pl.em, 0) != 0 && recover_delivery(&pl) != 0) {
            snprintf(err, errlen, "%s", pl.err);
            goto out;
        }
        pl.spent[3] += clock_mono_s() - p0;
        reload_program(&pl, opts);
        /* fill a batch: up to batch_size messages, batch_max_bytes or batch_linger_ms; a batch
         * read ahead comes first (nothing is added to one in hand while it waits) */
        double fill0 = clock_mono_s();
        if (pl.nitems == 0 && pl.other.nitems > 0)
            swap_batch(&pl);
        else if (pl.other.nitems == 0 && fill_batch(&pl, (int)cfg->batch_linger_ms, &source_done, err, errlen) != 0)
            goto out;
        pl.spent[0] += clock_mono_s() - fill0;
        int prc = process_batch(&pl);
        if (prc < 0) {
            snprintf(err, errlen, "%s", pl.err);
            pl.fatal = 1; /* the revoke at close does not process the batch again */
            goto out;
        }
        if (prc > 0) {
            if (wait_for_redis(&pl) != 0) {
                snprintf(err, errlen, "%s", pl.err);
                goto out;
            }
            continue;
        }
        if (clock_mono_s() - last_report >= 10) {
            last_report = clock_mono_s();
            log_info("processed %lld touchpoints, %lld credits, %lld duplicates, %lld to the DLQ, %lld outputs",
                     st->touchpoints, st->credits, st->duplicates, st->dlq, st->outputs);
            log_debug("seconds spent since the last report: filling batches %.2f, deciding and applying %.2f "
                      "(waiting for Redis's replies %.2f, %lld times for %lld batches), producing %.2f, "
                      "acknowledgements and commits (with trims) %.2f; %d batch(es) in flight",
                      pl.spent[0], pl.spent[1], pl.spent_redis, pl.redis_waits, pl.batches_done, pl.spent[2],
                      pl.spent[3], emitter_in_flight(&pl.em));
            memset(pl.spent, 0, sizeof(pl.spent));
            pl.spent_redis = 0;
            pl.redis_waits = pl.batches_done = 0;
            log_ages(&pl);
        }
        if (opts->source) {
            if (source_done && pl.nitems == 0)
                break;
            continue;
        }
        if (opts->until_idle && check_assigned(&pl) != 0) {
            snprintf(err, errlen, "%s", pl.err);
            goto out;
        }
        if (opts->until_idle && pl.nitems == 0 && pl.other.nitems == 0 && emitter_in_flight(&pl.em) == 0 &&
            all_at_end(&pl)) {
            if (pl.idle_since == 0)
                pl.idle_since = clock_mono_s();
            else if ((clock_mono_s() - pl.idle_since) * 1000 >= opts->idle_grace_ms)
                break;
        } else {
            pl.idle_since = 0;
        }
    }
    if (pl.fatal) {
        snprintf(err, errlen, "%s", pl.err);
        goto out;
    }
    /* stopping: finish what is in hand (Redis gets a few tries), then close */
    for (int attempt = 0; (pl.nitems || pl.other.nitems) && attempt < 5; attempt++) {
        if (!pl.nitems) /* the batch read ahead comes after the one in hand */
            swap_batch(&pl);
        int prc = process_batch(&pl);
        if (prc < 0) {
            snprintf(err, errlen, "%s", pl.err);
            goto out;
        }
        if (prc > 0) {
            char rerr[512];
            usleep(500000);
            store_reconnect(pl.store, rerr, sizeof(rerr));
            pl.fetch_state = pl.other.fetch_state = FETCH_NONE;
        }
    }
    if (pl.nitems || pl.other.nitems)
        log_warn("stopping with %d message(s) unprocessed and uncommitted: they will be redelivered",
                 pl.nitems + pl.other.nitems);
    /* every batch in flight acknowledged and committed, or the stop fails */
    if (!pl.fatal && emitter_drain(&pl.em, 60000) != 0) {
        snprintf(err, errlen, "outputs could not be delivered: %s", pl.em.fail_error);
        goto out;
    }
    if (pl.delivery_failures) {
        snprintf(err, errlen, "outputs could not be delivered: %s", pl.delivery_error);
        goto out;
    }
    if (pl.fatal) {
        snprintf(err, errlen, "%s", pl.err);
        goto out;
    }
    rc = 0;
out:
    log_ages(&pl); /* since the last report */
    teardown(&pl);
    log_info("stopped: %lld touchpoints, %lld credits, %lld duplicates, %lld to the DLQ, %lld outputs in %lld batches%s",
             st->touchpoints, st->credits, st->duplicates, st->dlq, st->outputs, st->batches,
             cfg->exactly_once ? " (exactly-once)" : "");
    if (st->aborted)
        log_info("%lld transactions aborted and their batches processed again", st->aborted);
    return rc;
}
