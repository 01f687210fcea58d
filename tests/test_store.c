/* Store: the apply script against a real redis-server: atomic apply,
 * duplicates return the recorded outputs, fencing, the dedupe window and its
 * trim horizon, NOSCRIPT recovery, ledger bounds, layout check. */
/* T0 in decimal: how a layout-4 dedupe record ends (its event time) */
#define T0S "1767225600000"
/* T0 as a zigzag varint: how a layout-6 dedupe record ends (6 bytes) */
#define T0V "\x80\xa0\xd5\xed\xee\x66"
#include <stdarg.h>

#include "codec.h"
#include "redis_fixture.h"
#include "rules.h"
#include "store.h"
#include "test_common.h"

#define DAY INT64_C(86400000)

static store *s;
static char err[1024];
static int prefix_no;
static char prefix[48];

static void setup(void)
{
    snprintf(prefix, sizeof(prefix), REDIS_FIXTURE_PREFIX "t%d:", ++prefix_no + getpid() % 1000 * 100);
    s = store_open(redis_url, prefix, 30 * DAY, 3, err, sizeof(err));
    ck_assert_msg(s != NULL, "%s", err);
}

static void teardown(void) { store_close(s); }

/* The "transactions" case runs the apply tests again the way the pipeline
 * applies: each store_apply after a store_fetch of its customers and ids (the
 * fetch WATCHes their :p; the apply is one MULTI/EXEC, in C). */
static bool tx_mode;
static bool lanes_mode; /* the "lanes" case (below) */

static void setup_tx(void)
{
    setup();
    tx_mode = true;
}

static void teardown_tx(void)
{
    tx_mode = lanes_mode = false;
    teardown();
}

/* The "lanes" case runs them again with every fetch spread over the lanes
 * (store.h, THE APPLY: lanes; the pipeline's from 256 customers a fetch). */
static void setup_lanes(void)
{
    setup_tx();
    lanes_mode = true;
    store_set_lane_min(s, 1);
}

/* Whether a foreign write to customer b fences a's apply of the same transaction: always
 * with one lane; with lanes, when they share one. */
static bool fenced_with(const char *a, const char *b)
{
    return !lanes_mode || store_lane_of(a) == store_lane_of(b);
}

/* What the pipeline fetches before applying q[0..n): each customer's profile,
 * each request's dedupe record (under WATCH). On st, when in tx_mode. */
static void tx_prefetch(store *st, const store_apply_req *q, size_t n)
{
    if (!tx_mode || n == 0)
        return;
    store_profile *p = calloc(n, sizeof(*p));
    store_seen *d = calloc(n, sizeof(*d));
    ck_assert(p && d);
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(q[i].customer_id, q[i - 1].customer_id) != 0)
            p[np++].customer_id = q[i].customer_id;
        d[i] = (store_seen){.customer_id = q[i].customer_id, .id = q[i].id, .credit = q[i].credit, .digest = q[i].digest};
    }
    char e[1024];
    ck_assert_msg(store_fetch(st, p, np, d, n, e, sizeof(e)) == 0, "%s", e);
    for (size_t i = 0; i < n; i++) {
        store_profile_free(&p[i]);
        store_seen_free(&d[i]);
    }
    free(p);
    free(d);
}

/* A read-only connection as the tools ACL user (profile, ledger). */
static store *tools_store(void)
{
    store *ro = store_open_readonly(redis_url_ro, prefix, err, sizeof(err));
    ck_assert_msg(ro != NULL, "%s", err);
    return ro;
}

/* The partition apply_kind's requests were read from (offset 0 of the touchpoints topic); -1: none
 * (tools: their outputs wait in :p until store_trim). */
static int32_t apply_partition;

/* Apply id for cust with a profile text and outputs text. */
static store_status apply_kind(bool credit, const char *cust, const char *id, int64_t at, int64_t version,
                               const char *prof, const char *outs, int64_t *new_version, buf *recorded)
{
    buf p = {0}, o = {0};
    buf_puts(&p, prof);
    buf_puts(&o, outs);
    const char *ledger[] = {"{\"entry\":1}", "{\"entry\":2}"};
    store_apply_req q = {.customer_id = cust, .id = id, .credit = credit, .occurred_at = at, .expected_version = version,
                         .profile = &p, .outputs = &o, .ledger = ledger, .nledger = 2, .partition = apply_partition};
    tx_prefetch(s, &q, 1);
    ck_assert_msg(store_apply(s, &q, 1, err, sizeof(err)) == 0, "%s", err);
    if (new_version)
        *new_version = q.version;
    if (recorded) {
        buf_reset(recorded);
        buf_append(recorded, q.recorded.data, q.recorded.len);
    }
    store_apply_req_free(&q);
    buf_free(&p);
    buf_free(&o);
    return q.status;
}

#define apply(...) apply_kind(false, __VA_ARGS__)
#define apply_credit(...) apply_kind(true, __VA_ARGS__)

/* A field of the customer's :p hash as a number (-1 when absent). */
static long long p_field(const char *cust, const char *field)
{
    redisReply *r = redis_raw("HGET %s{%s}:p %s", prefix, cust, field);
    ck_assert_ptr_nonnull(r);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    freeReplyObject(r);
    return v;
}

static void fetch(const char *cust, store_profile *p)
{
    p->customer_id = cust;
    ck_assert_msg(store_fetch(s, p, 1, NULL, 0, err, sizeof(err)) == 0, "%s", err);
}

START_TEST(apply_then_duplicate)
{
    int64_t v;
    buf rec = {0};
    ck_assert_int_eq(apply("c1", "e1", T0, 0, "P1", "OUT-e1", &v, NULL), STORE_APPLIED);
    ck_assert_int_eq(v, 1);
    /* the same event again, even computed from a newer version: recorded outputs come back */
    ck_assert_int_eq(apply("c1", "e1", T0, 1, "P-other", "OUT-other", NULL, &rec), STORE_DUPLICATE);
    ck_assert_str_eq(rec.data, "OUT-e1");
    store_profile p = {0};
    fetch("c1", &p);
    ck_assert(p.exists);
    ck_assert_int_eq(p.version, 1);
    ck_assert_str_eq(p.encoding.data, "P1");
    store_seen seen = {.customer_id = "c1", .id = "e1"}, unseen = {.customer_id = "c1", .id = "e2"};
    store_seen both[] = {seen, unseen};
    ck_assert(store_fetch(s, NULL, 0, both, 2, err, sizeof(err)) == 0);
    ck_assert(both[0].seen && !both[1].seen);
    ck_assert_str_eq(both[0].recorded.data, "OUT-e1");
    store_seen_free(&both[0]);
    store_seen_free(&both[1]);
    store_profile_free(&p);
    buf_free(&rec);
}
END_TEST

/* A writer that computed from an old version cannot overwrite newer state. */
START_TEST(fencing_stale_version)
{
    ck_assert_int_eq(apply("c2", "e1", T0, 0, "P1", "O1", NULL, NULL), STORE_APPLIED);
    ck_assert_int_eq(apply("c2", "e2", T0 + 1, 1, "P2", "O2", NULL, NULL), STORE_APPLIED);
    /* a zombie that loaded version 1 and computes e3 */
    int64_t cur;
    ck_assert_int_eq(apply("c2", "e3", T0 + 2, 1, "P-zombie", "O-zombie", &cur, NULL), STORE_FENCED);
    ck_assert_int_eq(cur, 2);
    store_profile p = {0};
    fetch("c2", &p);
    ck_assert_str_eq(p.encoding.data, "P2");
    ck_assert_int_eq(p.version, 2);
    store_profile_free(&p);
    /* and nothing of e3 was recorded */
    store_seen d = {.customer_id = "c2", .id = "e3"};
    ck_assert(store_fetch(s, NULL, 0, &d, 1, err, sizeof(err)) == 0);
    ck_assert(!d.seen);
    store_seen_free(&d);
}
END_TEST

/* The wall clock the trims see: far ahead of the tests' event times. */
static int64_t trim_now = T0 + 3650 * DAY;

/* Trim what the store was told is committed, never in the apply itself. */
static long long trim(const char *cust)
{
    long long n;
    const char *ids[] = {cust};
    ck_assert_msg(store_trim(s, ids, 1, trim_now, &n, err, sizeof(err)) == 0, "%s", err);
    return n;
}

START_TEST(apply_never_trims_uncommitted_records)
{
    /* one batch spanning more than the retention (a backfill), not yet committed */
    ck_assert_int_eq(apply("c7", "aug", T0, 0, "P1", "O-aug", NULL, NULL), STORE_APPLIED);
    ck_assert_int_eq(apply("c7", "oct", T0 + 60 * DAY, 1, "P2", "O-oct", NULL, NULL), STORE_APPLIED);
    /* the batch is redelivered after a crash: both are found, outputs intact */
    buf rec = {0};
    ck_assert_int_eq(apply("c7", "aug", T0, 2, "P-x", "O-x", NULL, &rec), STORE_DUPLICATE);
    ck_assert_str_eq(rec.data, "O-aug");
    buf_free(&rec);
}
END_TEST

START_TEST(dedupe_window_and_trim_horizon)
{
    ck_assert_int_eq(apply("c3", "old", T0, 0, "P1", "O1", NULL, NULL), STORE_APPLIED);
    ck_assert_int_eq(apply("c3", "late-ok", T0 + 1, 1, "P2", "O2", NULL, NULL), STORE_APPLIED);
    ck_assert_int_eq(apply("c3", "new", T0 + 31 * DAY, 2, "P3", "O3", NULL, NULL), STORE_APPLIED);
    ck_assert_int_eq(trim("c3"), 0 + 2); /* committed: the two older than 30 days go */
    ck_assert_int_eq(trim("c3"), 0);
    /* redelivering "old" cannot be deduplicated any more: refused, not applied again */
    ck_assert_int_eq(apply("c3", "old", T0, 3, "P-again", "O-again", NULL, NULL), STORE_TOO_OLD);
    /* a late event above the trim horizon (T0 + 1 day) is a new event: applied */
    ck_assert_int_eq(apply("c3", "late", T0 + 2 * DAY, 3, "P4", "O4", NULL, NULL), STORE_APPLIED);
    store_close(s);
    /* raising the retention does not resurrect what was trimmed */
    s = store_open(redis_url, prefix, 365 * DAY, 3, err, sizeof(err));
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(apply("c3", "old", T0, 4, "P-again", "O-again", NULL, NULL), STORE_TOO_OLD);
    store_profile p = {0};
    fetch("c3", &p);
    ck_assert_str_eq(p.encoding.data, "P4");
    store_profile_free(&p);
}
END_TEST

/* Issue 7 case 1: a credit carries the invitee's event time; the referrer's
 * own events may be far ahead of it (a backfill): it is applied anyway. */
START_TEST(credit_older_than_trim_horizon_applied)
{
    ck_assert_int_eq(apply("r1", "own-1", T0 + 40 * DAY, 0, "P1", "O1", NULL, NULL), STORE_APPLIED);
    ck_assert_int_eq(apply("r1", "own-2", T0 + 80 * DAY, 1, "P2", "O2", NULL, NULL), STORE_APPLIED);
    ck_assert_int_eq(trim("r1"), 1);
    ck_assert_int_eq(p_field("r1", "tf"), T0 + 50 * DAY);
    ck_assert_int_eq(apply_credit("r1", "rw-credit-1", T0, 2, "P3", "O-credit", NULL, NULL), STORE_APPLIED);
    /* redelivered, even after more trims: still a duplicate, never a second effect */
    ck_assert_int_eq(trim("r1"), 0);
    buf rec = {0};
    ck_assert_int_eq(apply_credit("r1", "rw-credit-1", T0, 3, "P-x", "O-x", NULL, &rec), STORE_DUPLICATE);
    /* (layout 8: its outputs wait in <prefix>o:t0, by its offset, until that is committed) */
    ck_assert_str_eq(rec.data, "O-credit");
    store_committed(s, false, 0, 1);
    ck_assert_int_eq(apply_credit("r1", "rw-credit-1", T0, 3, "P-x", "O-x", NULL, &rec), STORE_DUPLICATE);
    ck_assert_uint_eq(rec.len, 0);
    store_seen d = {.customer_id = "r1", .id = "rw-credit-1", .credit = true};
    ck_assert(store_fetch(s, NULL, 0, &d, 1, err, sizeof(err)) == 0);
    ck_assert(d.seen && !d.conflict);
    ck_assert_uint_eq(d.recorded.len, 0);
    store_seen_free(&d);
    /* a touchpoint with the credit's id is another event (own keyspace) */
    ck_assert_int_eq(apply("r1", "rw-credit-1", T0 + 81 * DAY, 3, "P4", "O4", NULL, NULL), STORE_APPLIED);
    buf_free(&rec);
}
END_TEST

/* Issue 7 case 2: a credit from an invitee whose events are far ahead of the
 * referrer's must not move the referrer's horizon: the referrer's own later
 * (in order) events are still applied after the trim. */
START_TEST(credit_never_moves_the_horizon)
{
    ck_assert_int_eq(apply("r2", "own-1", T0, 0, "P1", "O1", NULL, NULL), STORE_APPLIED);
    ck_assert_int_eq(apply_credit("r2", "rw-credit-2", T0 + 90 * DAY, 1, "P2", "O-credit", NULL, NULL),
                     STORE_APPLIED);
    ck_assert_int_eq(p_field("r2", "hw"), T0);
    ck_assert_int_eq(trim("r2"), 0);
    ck_assert_int_eq(p_field("r2", "tf"), -1);
    ck_assert_int_eq(apply("r2", "own-2", T0 + 1 * DAY, 2, "P3", "O3", NULL, NULL), STORE_APPLIED);
}
END_TEST

/* A namespace written by layout 1 is upgraded; its credit records (in :d)
 * still deduplicate. */
START_TEST(layout_1_upgraded)
{
    redisReply *r = redis_raw("SET " REDIS_FIXTURE_PREFIX "v1ns:layout 1");
    freeReplyObject(r);
    r = redis_raw("HSET " REDIS_FIXTURE_PREFIX "v1ns:{r3}:d rw-old O-old");
    freeReplyObject(r);
    store *o = store_open(redis_url, REDIS_FIXTURE_PREFIX "v1ns:", 30 * DAY, 0, err, sizeof(err));
    ck_assert_msg(o != NULL, "%s", err);
    r = redis_raw("GET " REDIS_FIXTURE_PREFIX "v1ns:layout");
    ck_assert_int_eq(atoi(r->str), STORE_LAYOUT_VERSION);
    freeReplyObject(r);
    store_seen d = {.customer_id = "r3", .id = "rw-old", .credit = true};
    ck_assert(store_fetch(o, NULL, 0, &d, 1, err, sizeof(err)) == 0);
    ck_assert(d.seen);
    ck_assert_str_eq(d.recorded.data, "O-old");
    store_seen_free(&d);
    buf p = {0}, out = {0};
    buf_puts(&p, "P");
    buf_puts(&out, "O-new");
    store_apply_req q = {.customer_id = "r3", .id = "rw-old", .credit = true, .occurred_at = T0, .profile = &p,
                         .outputs = &out};
    ck_assert(store_apply(o, &q, 1, err, sizeof(err)) == 0);
    ck_assert_int_eq(q.status, STORE_DUPLICATE);
    store_apply_req_free(&q);
    buf_free(&p);
    buf_free(&out);
    store_close(o);
}
END_TEST

/* Issue 7 case 4: a known id with another content digest is a conflict,
 * not a redelivery: nothing is applied, nothing re-emitted. */
static store_status apply_digest(const char *cust, const char *id, int64_t version, const char *digest, buf *rec)
{
    buf p = {0}, o = {0};
    buf_puts(&p, "P-");
    buf_puts(&p, digest);
    buf_puts(&o, "O-");
    buf_puts(&o, digest);
    store_apply_req q = {.customer_id = cust, .id = id, .occurred_at = T0, .expected_version = version,
                         .profile = &p, .outputs = &o, .digest = (const uint8_t *)digest};
    ck_assert_msg(store_apply(s, &q, 1, err, sizeof(err)) == 0, "%s", err);
    if (rec) {
        buf_reset(rec);
        buf_append(rec, q.recorded.data, q.recorded.len);
    }
    store_apply_req_free(&q);
    buf_free(&p);
    buf_free(&o);
    return q.status;
}

START_TEST(known_id_other_content_is_a_conflict)
{
    const char *a = "AAAAAAAAAAAAAAAA", *b = "BBBBBBBBBBBBBBBB";
    buf rec = {0};
    ck_assert_int_eq(apply_digest("c11", "e1", 0, a, NULL), STORE_APPLIED);
    ck_assert_int_eq(apply_digest("c11", "e1", 1, a, &rec), STORE_DUPLICATE);
    ck_assert_str_eq(rec.data, "O-AAAAAAAAAAAAAAAA");
    ck_assert_int_eq(apply_digest("c11", "e1", 1, b, &rec), STORE_CONFLICT);
    store_seen d[] = {{.customer_id = "c11", .id = "e1", .digest = (const uint8_t *)a},
                      {.customer_id = "c11", .id = "e1", .digest = (const uint8_t *)b}};
    ck_assert(store_fetch(s, NULL, 0, d, 2, err, sizeof(err)) == 0);
    ck_assert(d[0].seen && !d[0].conflict);
    ck_assert_str_eq(d[0].recorded.data, "O-AAAAAAAAAAAAAAAA");
    ck_assert(d[1].seen && d[1].conflict);
    store_seen_free(&d[0]);
    store_seen_free(&d[1]);
    store_profile p = {0};
    fetch("c11", &p);
    ck_assert_int_eq(p.version, 1);
    ck_assert_str_eq(p.encoding.data, "P-AAAAAAAAAAAAAAAA");
    store_profile_free(&p);
    /* a layout-1 record has no digest to compare: a duplicate, as before */
    redisReply *r = redis_raw("HSET %s{c11}:d e-v1 O-v1", prefix);
    freeReplyObject(r);
    ck_assert_int_eq(apply_digest("c11", "e-v1", 1, b, &rec), STORE_DUPLICATE);
    ck_assert_str_eq(rec.data, "O-v1");
    buf_free(&rec);
}
END_TEST

/* Issue 7 case 7: one event dated in year 9999 must not lock the customer
 * out: the trim horizon never passes the wall clock minus the retention. */
START_TEST(future_event_cannot_lock_out)
{
    const int64_t y9999 = INT64_C(253370764800000); /* 9999-01-01 */
    ck_assert_int_eq(apply("c12", "own-1", T0, 0, "P1", "O1", NULL, NULL), STORE_APPLIED);
    ck_assert_int_eq(apply("c12", "forged", y9999, 1, "P2", "O2", NULL, NULL), STORE_APPLIED);
    trim_now = T0 + 40 * DAY; /* the wall clock */
    store_set_now(s, trim_now);
    ck_assert_int_eq(trim("c12"), 1);
    ck_assert_int_le(p_field("c12", "tf"), trim_now - 30 * DAY);
    /* the customer's next real events are applied */
    ck_assert_int_eq(apply("c12", "own-2", T0 + 39 * DAY, 2, "P3", "O3", NULL, NULL), STORE_APPLIED);
    ck_assert_int_eq(trim("c12"), 0);
    ck_assert_int_eq(apply("c12", "own-3", T0 + 40 * DAY, 3, "P4", "O4", NULL, NULL), STORE_APPLIED);
}
END_TEST

/* Issue 8 case 3: the apply and the trim scripts are all or nothing. What
 * can fail inside them (a wrong key type, a command the ACL denies) is
 * checked before the first write: the call fails with the Redis error and
 * nothing at all is written. */
static int try_apply(const char *cust, const char *id, int64_t at, int64_t version)
{
    buf p = {0}, o = {0};
    buf_puts(&p, "P");
    buf_puts(&o, "O");
    const char *ledger[] = {"{\"entry\":1}"};
    store_apply_req q = {.customer_id = cust, .id = id, .occurred_at = at, .expected_version = version,
                         .profile = &p, .outputs = &o, .ledger = ledger, .nledger = 1};
    tx_prefetch(s, &q, 1);
    int rc = store_apply(s, &q, 1, err, sizeof(err));
    store_apply_req_free(&q);
    buf_free(&p);
    buf_free(&o);
    return rc;
}

static long long raw_int(const char *fmt, const char *cust, const char *arg)
{
    redisReply *r = redis_raw(fmt, prefix, cust, arg);
    ck_assert_ptr_nonnull(r);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* Whether the outputs of event id of cust (kind 't' a touchpoint, 'c' a credit: layout 8), read at
 * offset off of source src ("t3", "c1"), wait in <prefix>o:<src> (until the first fetch after their
 * commit). */
static long long out_kept_in(const char *src, char kind, const char *cust, const char *id, int64_t off)
{
    char f[256];
    int n = snprintf(f, sizeof(f), "%lld/%c%s%c%s", (long long)off, kind, cust, '\0', id);
    redisReply *r = redis_raw("HEXISTS %so:%s %b", prefix, src, f, (size_t)n);
    ck_assert_ptr_nonnull(r);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* Whether the outputs of touchpoint id of cust, read at offset off of partition 3, wait in
 * <prefix>o:t3 (layout 6: until the first fetch after their commit). */
static long long out_kept(const char *cust, const char *id, int64_t off)
{
    return out_kept_in("t3", 't', cust, id, off);
}

static void acl(const char *rule)
{
    /* the store connects as the fixture's ACL user "fidelio" */
    redisReply *r = redis_raw("ACL SETUSER fidelio %s", rule);
    ck_assert_msg(r && r->type == REDIS_REPLY_STATUS, "ACL SETUSER fidelio %s", rule);
    freeReplyObject(r);
}

START_TEST(apply_all_or_nothing)
{
    ck_assert_int_eq(apply("c13", "e1", T0, 0, "P1", "O1", NULL, NULL), STORE_APPLIED);
    /* the ledger key holds a string: RPUSH would fail after the profile was written */
    redisReply *r = redis_raw("SET %s{c13}:l not-a-list", prefix);
    freeReplyObject(r);
    ck_assert_int_eq(try_apply("c13", "e2", T0 + 1, 1), STORE_PERMANENT);
    ck_assert_int_eq(p_field("c13", "v"), 1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:d %s", "c13", "e2"), 0);
    ck_assert_int_eq(raw_int("HLEN %s{%s}:d%s", "c13", ""), 1);
    ck_assert_msg(strstr(err, "WRONGTYPE") && strstr(err, "nothing was written"), "error: %s", err);
    r = redis_raw("DEL %s{c13}:l", prefix);
    freeReplyObject(r);
    /* a Redis user that may not RPUSH: refused before anything is written */
    acl("-rpush");
    int rc = try_apply("c13", "e3", T0 + 2, 1);
    acl("+rpush");
    ck_assert_int_eq(rc, STORE_PERMANENT);
    ck_assert_int_eq(p_field("c13", "v"), 1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:d %s", "c13", "e3"), 0);
    ck_assert_int_eq(raw_int("HLEN %s{%s}:d%s", "c13", ""), 1);
    ck_assert_msg(strstr(err, "NOPERM") && (strstr(err, "RPUSH") || strstr(err, "rpush")) && strstr(err, "nothing was written"), "error: %s",
                  err);
    /* allowed again: applied */
    ck_assert_int_eq(try_apply("c13", "e3", T0 + 2, 1), 0);
    ck_assert_int_eq(p_field("c13", "v"), 2);
}
END_TEST

/* The report's aggregate counter that HINCRBY could not add to (not an
 * integer) is refused before anything is written. */
START_TEST(apply_aggregates_checked_first)
{
    redisReply *r = redis_raw("HSET %saggregates broken not-a-number", prefix);
    freeReplyObject(r);
    buf p = {0}, o = {0};
    buf_puts(&p, "P");
    buf_puts(&o, "O");
    const char *agg[] = {"events", "1", "broken", "1"};
    store_apply_req q = {.customer_id = "c15", .id = "e1", .occurred_at = T0, .profile = &p, .outputs = &o,
                         .agg = agg, .nagg = 2};
    ck_assert_int_eq(store_apply(s, &q, 1, err, sizeof(err)), STORE_PERMANENT);
    ck_assert_int_eq(p_field("c15", "v"), -1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:d %s", "c15", "e1"), 0);
    ck_assert_msg(strstr(err, "broken") && strstr(err, "nothing was written"), "error: %s", err);
    r = redis_raw("HGET %saggregates events", prefix);
    ck_assert_int_ne(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    store_apply_req_free(&q);
    buf_free(&p);
    buf_free(&o);
}
END_TEST

START_TEST(trim_all_or_nothing)
{
    ck_assert_int_eq(apply("c14", "old", T0, 0, "P1", "O1", NULL, NULL), STORE_APPLIED);
    ck_assert_int_eq(apply("c14", "new", T0 + 31 * DAY, 1, "P2", "O2", NULL, NULL), STORE_APPLIED);
    /* HDEL denied: the trim would fail after raising tf (or, in another
     * order, remove the record without raising tf: the old event would apply twice) */
    acl("-hdel");
    long long n;
    const char *ids[] = {"c14"};
    int rc = store_trim(s, ids, 1, trim_now, &n, err, sizeof(err));
    acl("+hdel");
    ck_assert_int_eq(rc, STORE_PERMANENT);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:d %s", "c14", "old"), 1);
    ck_assert_int_eq(p_field("c14", "tf"), -1);
    ck_assert_msg(strstr(err, "NOPERM") && strstr(err, "nothing was written"), "error: %s", err);
    buf rec = {0};
    ck_assert_int_eq(apply("c14", "old", T0, 2, "P-x", "O-x", NULL, &rec), STORE_DUPLICATE);
    buf_free(&rec);
    ck_assert_int_eq(trim("c14"), 1);
    ck_assert_int_eq(apply("c14", "old", T0, 2, "P-x", "O-x", NULL, NULL), STORE_TOO_OLD);
}
END_TEST

START_TEST(noscript_recovery)
{
    redisReply *r = redis_raw("SCRIPT FLUSH");
    ck_assert_ptr_nonnull(r);
    freeReplyObject(r);
    ck_assert_int_eq(apply("c4", "e1", T0, 0, "P1", "O1", NULL, NULL), STORE_APPLIED);
    r = redis_raw("SCRIPT FLUSH");
    freeReplyObject(r);
    ck_assert_int_eq(apply("c4", "e1", T0, 1, "P1", "O1", NULL, NULL), STORE_DUPLICATE);
}
END_TEST

START_TEST(ledger_bounded_and_ordered)
{
    int64_t v = 0;
    char id[16];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "e%d", i);
        ck_assert_int_eq(apply("c5", id, T0 + i, v, "P", "O", &v, NULL), STORE_APPLIED);
    }
    buf out = {0};
    store *ro = tools_store();
    ck_assert_msg(store_ledger(ro, "c5", 10, &out, err, sizeof(err)) == 0, "%s", err);
    /* 6 entries written, ledger_max = 3 kept, oldest first */
    ck_assert_str_eq(out.data, "{\"entry\":2}\n{\"entry\":1}\n{\"entry\":2}\n");
    buf_reset(&out);
    ck_assert(store_ledger(ro, "c5", 1, &out, err, sizeof(err)) == 0);
    ck_assert_str_eq(out.data, "{\"entry\":2}\n");
    buf_free(&out);
    store_close(ro);
}
END_TEST

START_TEST(keys_share_a_hash_slot)
{
    ck_assert_int_eq(apply("c6", "e1", T0, 0, "P", "O", NULL, NULL), STORE_APPLIED);
    const char suffix[] = {'p', 'd', 'l'}; /* (layout 4 writes no :t) */
    long long slot = -1;
    for (int i = 0; i < 3; i++) {
        char k[128];
        snprintf(k, sizeof(k), "%s{c6}:%c", prefix, suffix[i]);
        redisReply *e = redis_raw("EXISTS %s", k), *sl = redis_raw("CLUSTER KEYSLOT %s", k);
        ck_assert_msg(e && e->integer == 1, "key %s missing", k);
        ck_assert_ptr_nonnull(sl);
        if (slot < 0)
            slot = sl->integer;
        ck_assert_int_eq(sl->integer, slot);
        freeReplyObject(e);
        freeReplyObject(sl);
    }
    buf ids = {0};
    store *ro = tools_store();
    ck_assert_msg(store_customers(ro, &ids, err, sizeof(err)) == 0, "%s", err);
    ck_assert_ptr_nonnull(strstr(ids.data, "c6\n"));
    buf_free(&ids);
    store_close(ro);
}
END_TEST

START_TEST(layout_mismatch_refused)
{
    redisReply *r = redis_raw("SET " REDIS_FIXTURE_PREFIX "other:layout 9");
    freeReplyObject(r);
    store *o = store_open(redis_url, REDIS_FIXTURE_PREFIX "other:", DAY, 0, err, sizeof(err));
    ck_assert_ptr_null(o);
    ck_assert_ptr_nonnull(strstr(err, "layout is 9"));
    /* nor "07", "0", "10", "7x": not a layout this build knows */
    static const char *const odd[] = {"07", "0", "10", "7x"};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        freeReplyObject(redis_raw("SET %sother:layout %s", REDIS_FIXTURE_PREFIX, odd[i]));
        ck_assert_ptr_null(store_open(redis_url, REDIS_FIXTURE_PREFIX "other:", DAY, 0, err, sizeof(err)));
        ck_assert_ptr_nonnull(strstr(err, "this fidelio uses layout"));
    }
}
END_TEST

/* Issue 7 case 14: a Redis that may evict keys is refused, naming the setting. */
static void set_policy(const char *policy)
{
    redisReply *r = redis_raw("CONFIG SET maxmemory-policy %s", policy);
    ck_assert_msg(r && r->type == REDIS_REPLY_STATUS, "CONFIG SET maxmemory-policy %s failed", policy);
    freeReplyObject(r);
}

START_TEST(evicting_redis_refused)
{
    const char *evicting[] = {"allkeys-lru", "allkeys-lfu", "allkeys-random"};
    for (int i = 0; i < 3; i++) {
        set_policy(evicting[i]);
        store *o = store_open(redis_url, REDIS_FIXTURE_PREFIX "evict:", DAY, 0, err, sizeof(err));
        set_policy("noeviction");
        ck_assert_msg(o == NULL, "fidelio started on a Redis with maxmemory-policy %s", evicting[i]);
        ck_assert_msg(strstr(err, evicting[i]) && strstr(err, "maxmemory-policy noeviction"), "message: %s", err);
    }
    /* a Redis whose policy is changed at run time is refused on the next reconnect */
    set_policy("allkeys-lru");
    int rc = store_reconnect(s, err, sizeof(err));
    set_policy("noeviction");
    ck_assert_int_eq(rc, -1);
    /* keys without a TTL are never evicted by volatile-* policies */
    set_policy("volatile-lru");
    store *o = store_open(redis_url, REDIS_FIXTURE_PREFIX "evict:", DAY, 0, err, sizeof(err));
    set_policy("noeviction");
    ck_assert_msg(o != NULL, "%s", err);
    store_close(o);
    ck_assert_int_eq(store_reconnect(s, err, sizeof(err)), 0);
}
END_TEST

START_TEST(unreachable_redis_named)
{
    store *o = store_open("unix:///nonexistent/redis.sock", "x:", DAY, 0, err, sizeof(err));
    ck_assert_ptr_null(o);
    ck_assert_ptr_nonnull(strstr(err, "unix:///nonexistent/redis.sock"));
}
END_TEST

/* One apply on store st; returns store_apply's code (err filled). */
static int apply_on(store *st, const char *cust, const char *id)
{
    buf p = {0}, o = {0};
    buf_puts(&p, "P");
    buf_puts(&o, "O");
    store_apply_req q = {.customer_id = cust, .id = id, .occurred_at = T0, .profile = &p, .outputs = &o};
    int rc = store_apply(st, &q, 1, err, sizeof(err));
    store_apply_req_free(&q);
    buf_free(&p);
    buf_free(&o);
    return rc;
}

/* redis_raw that must succeed. */
#define RAW_OK(...)                                                                                                   \
    do {                                                                                                              \
        redisReply *r_ = redis_raw(__VA_ARGS__);                                                                      \
        ck_assert_msg(r_ && r_->type != REDIS_REPLY_ERROR, "%s", r_ ? r_->str : "no reply");                         \
        freeReplyObject(r_);                                                                                          \
    } while (0)

START_TEST(named_acl_user_authenticates)
{
    /* the fixture's url is unix://fidelio:PW@/path: the store authenticates as
     * that user (AUTH user password), which CLIENT LIST shows */
    redisReply *r = redis_raw("CLIENT LIST");
    ck_assert_ptr_nonnull(r);
    ck_assert_msg(strstr(r->str, "user=fidelio "), "no client authenticated as fidelio:\n%s", r->str);
    freeReplyObject(r);
    /* a wrong password is a permanent error naming the user, never the password */
    char url[200];
    snprintf(url, sizeof(url), "unix://fidelio:Wrong-Secret-42@%s", redis_sock);
    store *o = store_open(url, prefix, DAY, 0, err, sizeof(err));
    ck_assert_ptr_null(o);
    ck_assert_msg(strstr(err, "WRONGPASS") && strstr(err, "AUTH as fidelio"), "%s", err);
    ck_assert_msg(!strstr(err, "Wrong-Secret-42"), "password printed: %s", err);
    /* an unreachable server: the URL is named, its password masked */
    o = store_open("redis://fidelio:Other-Secret-7@127.0.0.1:1/0", prefix, DAY, 0, err, sizeof(err));
    ck_assert_ptr_null(o);
    ck_assert_msg(strstr(err, "redis://fidelio:***@127.0.0.1:1/0") && !strstr(err, "Other-Secret-7"), "%s", err);
}
END_TEST

START_TEST(noperm_is_permanent)
{
    RAW_OK("ACL SETUSER noeval reset on >pw ~* +@all -evalsha");
    char url[200];
    snprintf(url, sizeof(url), "unix://noeval:pw@%s", redis_sock);
    store *o = store_open(url, prefix, DAY, 0, err, sizeof(err));
    ck_assert_msg(o != NULL, "%s", err);
    ck_assert_int_eq(apply_on(o, "c7", "e1"), STORE_PERMANENT);
    ck_assert_msg(strstr(err, "EVALSHA (apply)") && strstr(err, "NOPERM"), "%s", err);
    store_close(o);
}
END_TEST

START_TEST(oom_is_permanent)
{
    RAW_OK("CONFIG SET maxmemory 1");
    int rc = apply_on(s, "c8", "e1");
    RAW_OK("CONFIG SET maxmemory 0");
    ck_assert_int_eq(rc, STORE_PERMANENT);
    ck_assert_msg(strstr(err, "EVALSHA (apply)") && strstr(err, "OOM"), "%s", err);
}
END_TEST

START_TEST(readonly_replica_is_permanent)
{
    /* a replica of a master that does not answer keeps its data, read-only */
    RAW_OK("REPLICAOF 127.0.0.1 1");
    int rc = apply_on(s, "c9", "e1");
    char apply_err[1024];
    snprintf(apply_err, sizeof(apply_err), "%s", err);
    int rrc = store_reconnect(s, err, sizeof(err));
    RAW_OK("REPLICAOF NO ONE");
    ck_assert_int_eq(rc, STORE_PERMANENT);
    ck_assert_msg(strstr(apply_err, "EVALSHA (apply)") && strstr(apply_err, "READONLY"), "%s", apply_err);
    ck_assert_int_eq(rrc, STORE_PERMANENT); /* the layout marker cannot be written either */
    ck_assert_msg(strstr(err, "READONLY"), "%s", err);
}
END_TEST

START_TEST(busy_is_transient)
{
    RAW_OK("CONFIG SET busy-reply-threshold 100");
    pid_t child = fork();
    if (child == 0) { /* a script that keeps the server busy for 2 s, then ends */
        redisReply *r = redis_raw("EVAL %s 0", "local t = redis.call('TIME') "
                                               "while true do local n = redis.call('TIME') "
                                               "if n[1] - t[1] >= 2 then break end end return 1");
        _exit(r && r->type == REDIS_REPLY_INTEGER ? 0 : 1);
    }
    usleep(600000);
    store_profile p = {.customer_id = "c10"};
    int rc = store_fetch(s, &p, 1, NULL, 0, err, sizeof(err));
    int status;
    waitpid(child, &status, 0);
    RAW_OK("CONFIG SET busy-reply-threshold 5000");
    ck_assert_int_eq(rc, STORE_TRANSIENT);
    ck_assert_msg(strstr(err, "BUSY"), "%s", err);
    /* once the script ended, the same connection works again */
    ck_assert_int_eq(store_fetch(s, &p, 1, NULL, 0, err, sizeof(err)), 0);
    store_profile_free(&p);
}
END_TEST

START_TEST(readonly_tools_write_nothing)
{
    char fresh[64];
    snprintf(fresh, sizeof(fresh), "%sfresh:", prefix);
    redisReply *before = redis_raw("DBSIZE");
    store *ro = store_open_readonly(redis_url_ro, fresh, err, sizeof(err));
    ck_assert_msg(ro != NULL, "%s", err);
    redisReply *after = redis_raw("DBSIZE"), *marker = redis_raw("EXISTS %slayout", fresh);
    ck_assert_int_eq(after->integer, before->integer);
    ck_assert_int_eq(marker->integer, 0);
    freeReplyObject(before);
    freeReplyObject(after);
    freeReplyObject(marker);
    ck_assert_int_eq(apply_on(ro, "c11", "e1"), STORE_PERMANENT);
    store_close(ro);
}
END_TEST

/* ---- layout 3: one apply per customer, chunks of customers, kept outputs ---- */

/* A request of a multi-event, multi-customer call (profile and outputs are
 * the texts given; source partition 3 at offset off, or none when off < 0). */
typedef struct v3ev {
    const char *cust, *id, *prof, *outs, *digest;
    int64_t at, version, off;
} v3ev;

static store_status v3_status[16];
static int64_t v3_version[16];
static char v3_recorded[16][64];

/* Apply n requests in ONE store_apply call; statuses in v3_status. */
static void apply_many(const v3ev *ev, int n)
{
    store_apply_req q[16] = {{0}};
    buf p[16] = {{0}}, o[16] = {{0}};
    for (int i = 0; i < n; i++) {
        buf_puts(&p[i], ev[i].prof);
        buf_puts(&o[i], ev[i].outs);
        q[i] = (store_apply_req){.customer_id = ev[i].cust, .id = ev[i].id, .occurred_at = ev[i].at,
                                 .expected_version = ev[i].version, .profile = &p[i], .outputs = &o[i],
                                 .digest = (const uint8_t *)ev[i].digest, .partition = ev[i].off < 0 ? -1 : 3,
                                 .offset = ev[i].off};
    }
    tx_prefetch(s, q, (size_t)n);
    ck_assert_msg(store_apply(s, q, (size_t)n, err, sizeof(err)) == 0, "%s", err);
    for (int i = 0; i < n; i++) {
        v3_status[i] = q[i].status;
        v3_version[i] = q[i].version;
        snprintf(v3_recorded[i], sizeof(v3_recorded[i]), "%.*s", (int)q[i].recorded.len,
                 q[i].recorded.data ? q[i].recorded.data : "");
        store_apply_req_free(&q[i]);
        buf_free(&p[i]);
        buf_free(&o[i]);
    }
}

static const char DA[] = "AAAAAAAAAAAAAAAA", DB[] = "BBBBBBBBBBBBBBBB";

/* One call, three customers: the middle one computed from a stale version
 * is FENCED and keeps its state; the others apply, the last one with two
 * events (one version step per event). */
START_TEST(chunk_with_a_fenced_customer)
{
    ck_assert_int_eq(apply("k2", "e0", T0, 0, "P-k2", "O", NULL, NULL), STORE_APPLIED);
    v3ev ev[] = {{"k1", "e1", "P-k1", "O-k1", DA, T0, 0, 10},
                 {"k2", "e1", "P-zombie", "O-zombie", DA, T0 + 1, 0, 11},
                 {"k3", "e1", "P-k3a", "O-k3a", DA, T0, 0, 12},
                 {"k3", "e2", "P-k3b", "O-k3b", DB, T0 + 1, 1, 13}};
    apply_many(ev, 4);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    ck_assert_int_eq(v3_version[0], 1);
    ck_assert_int_eq(v3_status[1], STORE_FENCED);
    ck_assert_int_eq(v3_version[1], 1);
    ck_assert_int_eq(v3_status[2], STORE_APPLIED);
    ck_assert_int_eq(v3_status[3], STORE_APPLIED);
    ck_assert_int_eq(v3_version[3], 2);
    store_profile p = {0};
    fetch("k2", &p);
    ck_assert_str_eq(p.encoding.data, "P-k2");
    store_profile_free(&p);
    fetch("k3", &p);
    ck_assert_str_eq(p.encoding.data, "P-k3b"); /* the last event's profile */
    ck_assert_int_eq(p.version, 2);
    store_profile_free(&p);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:d %s", "k2", "e1"), 0);
    /* both events of k3 recorded, each with its own outputs */
    store_seen d[] = {{.customer_id = "k3", .id = "e1", .digest = (const uint8_t *)DA},
                      {.customer_id = "k3", .id = "e2", .digest = (const uint8_t *)DB}};
    ck_assert(store_fetch(s, NULL, 0, d, 2, err, sizeof(err)) == 0);
    ck_assert(d[0].seen && d[1].seen);
    ck_assert_str_eq(d[0].recorded.data, "O-k3a");
    ck_assert_str_eq(d[1].recorded.data, "O-k3b");
    store_seen_free(&d[0]);
    store_seen_free(&d[1]);
}
END_TEST

/* A customer's call is all or nothing: one event that is not new (a
 * duplicate, a conflict, an id twice in the call, too old) writes nothing of
 * the customer; that event gets its status, the others NOT_APPLIED. */
START_TEST(customer_call_all_or_nothing)
{
    v3ev first[] = {{"m1", "e1", "P1", "O-e1", DA, T0, 0, 1}};
    apply_many(first, 1);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    v3ev dup[] = {{"m1", "e2", "P2", "O-e2", DA, T0 + 1, 1, 2}, {"m1", "e1", "P3", "O-x", DA, T0, 2, 1}};
    apply_many(dup, 2);
    ck_assert_int_eq(v3_status[0], STORE_NOT_APPLIED);
    ck_assert_int_eq(v3_status[1], STORE_DUPLICATE);
    ck_assert_str_eq(v3_recorded[1], "O-e1");
    ck_assert_int_eq(p_field("m1", "v"), 1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:d %s", "m1", "e2"), 0);
    v3ev conflict[] = {{"m1", "e2", "P2", "O-e2", DA, T0 + 1, 1, 2}, {"m1", "e1", "P3", "O-x", DB, T0, 2, 3}};
    apply_many(conflict, 2);
    ck_assert_int_eq(v3_status[0], STORE_NOT_APPLIED);
    ck_assert_int_eq(v3_status[1], STORE_CONFLICT);
    v3ev twice[] = {{"m1", "e3", "P2", "O-e3", DA, T0 + 1, 1, 4}, {"m1", "e3", "P3", "O-e3", DA, T0 + 1, 2, 5},
                    {"m1", "e4", "P4", "O-e4", DA, T0 + 1, 3, 6}, {"m1", "e4", "P5", "O-e4'", DB, T0 + 1, 4, 7}};
    apply_many(twice, 4);
    ck_assert_int_eq(v3_status[0], STORE_NOT_APPLIED);
    ck_assert_int_eq(v3_status[1], STORE_DUPLICATE);
    ck_assert_int_eq(v3_status[2], STORE_NOT_APPLIED);
    ck_assert_int_eq(v3_status[3], STORE_CONFLICT);
    ck_assert_int_eq(p_field("m1", "v"), 1);
    /* decided again without them: applied */
    v3ev again[] = {{"m1", "e2", "P2", "O-e2", DA, T0 + 1, 1, 2}, {"m1", "e3", "P3", "O-e3", DA, T0 + 1, 2, 4}};
    apply_many(again, 2);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    ck_assert_int_eq(v3_status[1], STORE_APPLIED);
    ck_assert_int_eq(p_field("m1", "v"), 3);
}
END_TEST

/* Outputs are kept until their batch is committed, then dropped by the
 * customer's next apply; the digest stays (a redelivery is still a
 * duplicate, a reuse still a conflict), and re-emits nothing. */
START_TEST(outputs_dropped_after_commit)
{
    v3ev b1[] = {{"o1", "e1", "P1", "O-e1", DA, T0, 0, 10}};
    apply_many(b1, 1);
    /* the batch is redelivered before its commit: its outputs come back */
    v3ev re[] = {{"o1", "e1", "P1", "O-e1", DA, T0, 0, 10}};
    apply_many(re, 1);
    ck_assert_int_eq(v3_status[0], STORE_DUPLICATE);
    ck_assert_str_eq(v3_recorded[0], "O-e1");
    store_committed(s, false, 3, 10); /* offset 10 itself not committed yet */
    v3ev b2[] = {{"o1", "e2", "P2", "O-e2", DA, T0 + 1, 1, 11}};
    apply_many(b2, 1);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    ck_assert_int_eq(out_kept("o1", "e1", 10), 1); /* outputs kept (layout 6: in <prefix>o:t3, not :p) */
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "o1", "ote1"), 0);
    store_committed(s, false, 3, 11); /* now it is; the apply of the next batch drops it */
    store_committed(s, false, 5, 99); /* (another partition's commit changes nothing here) */
    v3ev b3[] = {{"o1", "e3", "P3", "O-e3", DA, T0 + 2, 2, 12}};
    apply_many(b3, 1);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    /* the digest, the event time and the source (partition, offset) alone */
    ck_assert_int_eq(raw_int("HSTRLEN %s{%s}:d %s", "o1", "e1"), 1 + STORE_RECORD_DIGEST_LEN + (int)strlen(T0V) + 2);
    store_seen d[] = {{.customer_id = "o1", .id = "e1", .digest = (const uint8_t *)DA},
                      {.customer_id = "o1", .id = "e1", .digest = (const uint8_t *)DB},
                      {.customer_id = "o1", .id = "e2", .digest = (const uint8_t *)DA}};
    ck_assert(store_fetch(s, NULL, 0, d, 3, err, sizeof(err)) == 0);
    ck_assert(d[0].seen && !d[0].conflict);
    ck_assert_uint_eq(d[0].recorded.len, 0);
    ck_assert(d[1].seen && d[1].conflict);
    ck_assert(d[2].seen && !d[2].conflict);
    ck_assert_str_eq(d[2].recorded.data, "O-e2");
    for (int i = 0; i < 3; i++)
        store_seen_free(&d[i]);
    /* (layout 6: the outputs themselves go once the commit passes their block of 256 offsets:
     * no_outputs_at_rest) */
    ck_assert_int_eq(out_kept("o1", "e2", 11), 1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "o1", "po"), 0); /* nothing in :p */
    v3ev late[] = {{"o1", "e1", "P-x", "O-x", DA, T0, 3, 10}};
    apply_many(late, 1);
    ck_assert_int_eq(v3_status[0], STORE_DUPLICATE);
    ck_assert_str_eq(v3_recorded[0], "");
    /* a dedupe record (layout 6) is "\6", the digest's first 8 bytes, the event time, the source
     * (2 x partition 3) and the offset (10), each a zigzag varint */
    redisReply *r = redis_raw("HGET %s{o1}:d e1", prefix);
    ck_assert_int_eq(r->len, 1 + STORE_RECORD_DIGEST_LEN + strlen(T0V) + 2);
    ck_assert_int_eq(r->str[0], 6);
    ck_assert(!memcmp(r->str + 1, DA, STORE_RECORD_DIGEST_LEN));
    ck_assert(!memcmp(r->str + 1 + STORE_RECORD_DIGEST_LEN, T0V "\x0c\x14", strlen(T0V) + 2));
    freeReplyObject(r);
}
END_TEST

/* OBJECT ENCODING of the customer's :p ("listpack", "hashtable"), into out. */
static void p_encoding(const char *cust, char *out, size_t cap)
{
    redisReply *r = redis_raw("OBJECT ENCODING %s{%s}:p", prefix, cust);
    ck_assert(r && r->type == REDIS_REPLY_STRING);
    snprintf(out, cap, "%s", r->str);
    freeReplyObject(r);
}

/* A profile text of n bytes (n < 1000), its bytes telling their position. */
static const char *long_profile(size_t n, char tag)
{
    static char b[1000];
    ck_assert(n < sizeof(b));
    for (size_t i = 0; i < n; i++)
        b[i] = i % 64 == 0 ? tag : (char)('a' + i % 26);
    b[n] = '\0';
    return b;
}

/* Layout 7: the profile is kept in :p in pieces of 64 bytes (p, p1, p2, ...),
 * Redis's default hash-max-listpack-value, so :p stays a compact listpack
 * instead of a hashtable (a dict entry and two strings per field); a fetch
 * joins them, a shorter profile leaves no piece behind. A :p that Redis keeps
 * as a hashtable (a layout-6 profile whole in p, one past the cap) is rebuilt
 * by the apply that leaves it nothing longer than a piece; a credit's outputs
 * (layout 8) no longer wait in it. */
START_TEST(profile_in_pieces)
{
    char enc[32], want[1000];
    int64_t v;
    store_profile p = {0};
    snprintf(want, sizeof(want), "%s", long_profile(300, 'A'));
    ck_assert_int_eq(apply("pc1", "e1", T0, 0, want, "OUT-e1", &v, NULL), STORE_APPLIED);
    p_encoding("pc1", enc, sizeof(enc));
    ck_assert_str_eq(enc, "listpack");
    ck_assert_int_eq(raw_int("HSTRLEN %s{%s}:p %s", "pc1", "p"), 64);
    ck_assert_int_eq(raw_int("HSTRLEN %s{%s}:p %s", "pc1", "p4"), 300 - 4 * 64);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "pc1", "p5"), 0);
    fetch("pc1", &p);
    ck_assert(p.exists);
    ck_assert_int_eq(p.version, 1);
    ck_assert_int_eq((int)p.encoding.len, 300);
    ck_assert(!memcmp(p.encoding.data, want, 300));
    store_profile_free(&p);
    /* one piece changed (the others are the same bytes: the transaction writes only that one) */
    want[130] = '#';
    ck_assert_int_eq(apply("pc1", "e1b", T0, 1, want, "OUT-e1b", &v, NULL), STORE_APPLIED);
    fetch("pc1", &p);
    ck_assert_int_eq((int)p.encoding.len, 300);
    ck_assert(!memcmp(p.encoding.data, want, 300));
    store_profile_free(&p);
    /* a shorter profile: its pieces, none of the longer one's left */
    snprintf(want, sizeof(want), "%s", long_profile(100, 'B'));
    ck_assert_int_eq(apply("pc1", "e2", T0 + 1, 2, want, "OUT-e2", &v, NULL), STORE_APPLIED);
    ck_assert_int_eq(raw_int("HLEN %s{%s}:p%s", "pc1", ""), 5); /* v p p1 hw tn */
    fetch("pc1", &p);
    ck_assert_int_eq((int)p.encoding.len, 100);
    ck_assert(!memcmp(p.encoding.data, want, 100));
    store_profile_free(&p);
    /* a customer of layout 6: the profile whole in p, a hashtable; read whole, rebuilt by its apply */
    RAW_OK("HSET %s{pc2}:p v 1 p %s hw %lld tn %lld", prefix, long_profile(200, 'C'), (long long)T0, (long long)T0);
    p_encoding("pc2", enc, sizeof(enc));
    ck_assert_str_eq(enc, "hashtable");
    fetch("pc2", &p);
    ck_assert_int_eq((int)p.encoding.len, 200);
    ck_assert(!memcmp(p.encoding.data, long_profile(200, 'C'), 200));
    store_profile_free(&p);
    snprintf(want, sizeof(want), "%s", long_profile(250, 'D'));
    ck_assert_int_eq(apply("pc2", "e1", T0 + 1, 1, want, "OUT-e1", &v, NULL), STORE_APPLIED);
    ck_assert_int_eq(v, 2);
    p_encoding("pc2", enc, sizeof(enc));
    ck_assert_str_eq(enc, "listpack");
    ck_assert_int_eq(p_field("pc2", "hw"), T0 + 1);
    ck_assert_int_eq(p_field("pc2", "tn"), T0);
    fetch("pc2", &p);
    ck_assert_int_eq((int)p.encoding.len, 250);
    ck_assert(!memcmp(p.encoding.data, want, 250));
    store_profile_free(&p);
    /* a credit read from a partition: its outputs (longer than a piece) wait in <prefix>o:t0 (layout 8),
     * :p stays a listpack */
    ck_assert_int_eq(apply_credit("pc1", "rw-0", T0, 3, want, long_profile(90, 'O'), &v, NULL), STORE_APPLIED);
    p_encoding("pc1", enc, sizeof(enc));
    ck_assert_str_eq(enc, "listpack");
    ck_assert_int_eq(out_kept_in("t0", 'c', "pc1", "rw-0", 0), 1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "pc1", "ocrw-0"), 0);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "pc1", "po"), 0);
    ck_assert_int_eq(apply("pc1", "e3", T0 + 2, 4, want, "OUT-e3", &v, NULL), STORE_APPLIED);
    p_encoding("pc1", enc, sizeof(enc));
    ck_assert_str_eq(enc, "listpack");
    ck_assert_int_eq(raw_int("HLEN %s{%s}:p%s", "pc1", ""), 7); /* v p p1 p2 p3 hw tn */
    ck_assert_int_eq(v, 5);
    fetch("pc1", &p);
    ck_assert_int_eq((int)p.encoding.len, 250);
    ck_assert(!memcmp(p.encoding.data, want, 250));
    store_profile_free(&p);
    /* longer than STORE_PROFILE_PIECES_MAX pieces: whole in p (a hashtable, as layout 6), no piece
     * left; shorter again: in pieces, a listpack */
    char big[1000];
    snprintf(big, sizeof(big), "%s", long_profile(STORE_PROFILE_PIECE * STORE_PROFILE_PIECES_MAX + 1, 'W'));
    ck_assert_int_eq(apply("pc1", "e4", T0 + 3, 5, big, "OUT-e4", &v, NULL), STORE_APPLIED);
    ck_assert_int_eq(raw_int("HLEN %s{%s}:p%s", "pc1", ""), 4); /* v p hw tn */
    ck_assert_int_eq(raw_int("HSTRLEN %s{%s}:p %s", "pc1", "p"), (long long)strlen(big));
    fetch("pc1", &p);
    ck_assert_int_eq((int)p.encoding.len, (int)strlen(big));
    ck_assert(!memcmp(p.encoding.data, big, strlen(big)));
    store_profile_free(&p);
    ck_assert_int_eq(apply("pc1", "e5", T0 + 4, 6, want, "OUT-e5", &v, NULL), STORE_APPLIED);
    p_encoding("pc1", enc, sizeof(enc));
    ck_assert_str_eq(enc, "listpack");
    fetch("pc1", &p);
    ck_assert_int_eq((int)p.encoding.len, 250);
    ck_assert(!memcmp(p.encoding.data, want, 250));
    store_profile_free(&p);
    /* the tools read it whole as well */
    store *ro = tools_store();
    p.customer_id = "pc1";
    ck_assert_msg(store_fetch(ro, &p, 1, NULL, 0, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq((int)p.encoding.len, 250);
    store_profile_free(&p);
    store_close(ro);
}
END_TEST

/* Layout 6: no outputs at rest. A touchpoint's outputs wait in
 * <prefix>o:<source> (not in the customer's keys) until the commit passes its
 * offset: a redelivery before that, even by another process (a restart),
 * re-emits them; the first fetch after the commit (or the store's close)
 * drops them, and a process that takes over drops what an earlier one left
 * below the committed offset. */
START_TEST(no_outputs_at_rest)
{
    /* e1 ends a block of offsets (blocks of 256: 768-1023), e2 starts the next */
    v3ev b1[] = {{"n1", "e1", "P1", "O-e1", DA, T0, 0, 1023}, {"n1", "e2", "P2", "O-e2", DA, T0 + 1, 1, 1024}};
    apply_many(b1, 2);
    ck_assert_int_eq(v3_status[1], STORE_APPLIED);
    ck_assert_int_eq(out_kept("n1", "e1", 1023), 1);
    ck_assert_int_eq(raw_int("HLEN %s{%s}:p%s", "n1", ""), 4); /* v p hw tn: no outputs, no po */
    /* the process stops before its commit; the next one is redelivered the batch */
    store *next = store_open(redis_url, prefix, 30 * DAY, 3, err, sizeof(err));
    ck_assert_msg(next != NULL, "%s", err);
    store *first = s;
    s = next;
    v3ev re[] = {{"n1", "e1", "P-x", "O-x", DA, T0, 2, 1023}};
    apply_many(re, 1);
    ck_assert_int_eq(v3_status[0], STORE_DUPLICATE);
    ck_assert_str_eq(v3_recorded[0], "O-e1");
    /* it commits past e1 (its block whole): its first fetch looks for what the first process left,
     * the next drops it */
    store_committed(s, false, 3, 1024);
    store_seen d = {.customer_id = "n1", .id = "e2", .digest = (const uint8_t *)DA};
    ck_assert(store_fetch(s, NULL, 0, &d, 1, err, sizeof(err)) == 0);
    ck_assert(d.seen);
    ck_assert_str_eq(d.recorded.data, "O-e2"); /* e2 not committed: still re-emitted */
    store_seen_free(&d);
    ck_assert(store_fetch(s, NULL, 0, &d, 1, err, sizeof(err)) == 0);
    store_seen_free(&d);
    ck_assert_int_eq(out_kept("n1", "e1", 1023), 0);
    ck_assert_int_eq(out_kept("n1", "e2", 1024), 1);
    /* a new batch, committed to the end of its block, then the store closes: nothing left behind */
    v3ev b2[] = {{"n1", "e3", "P3", "O-e3", DA, T0 + 2, 2, 2047}};
    apply_many(b2, 1);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    store_committed(s, false, 3, 2048);
    store_close(s);
    s = first;
    ck_assert_int_eq(raw_int("EXISTS %so:t3%s%s", "", ""), 0);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "n1", "po"), 0);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "n1", "ote3"), 0);
    /* and a redelivery after the commit is a duplicate re-emitting nothing */
    store_committed(s, false, 3, 2048);
    v3ev late[] = {{"n1", "e3", "P-x", "O-x", DA, T0 + 2, 3, 2047}};
    apply_many(late, 1);
    ck_assert_int_eq(v3_status[0], STORE_DUPLICATE);
    ck_assert_str_eq(v3_recorded[0], "");
    /* within a block not yet committed whole, a committed event's outputs wait with the others
     * (a new process redelivered it re-emits them), yet this process re-emits nothing */
    v3ev b3[] = {{"n1", "e4", "P4", "O-e4", DA, T0 + 3, 3, 2048}};
    apply_many(b3, 1);
    store_committed(s, false, 3, 2049);
    v3ev re4[] = {{"n1", "e4", "P-x", "O-x", DA, T0 + 3, 4, 2048}};
    apply_many(re4, 1);
    ck_assert_int_eq(v3_status[0], STORE_DUPLICATE);
    ck_assert_str_eq(v3_recorded[0], "");
    ck_assert_int_eq(out_kept("n1", "e4", 2048), 1);
}
END_TEST

/* The trim is part of the apply: records past the retention go once their
 * events are committed, never before (a backfill batch spanning more than the
 * retention, redelivered, finds them all), and never a record of the call. */
START_TEST(trim_folded_into_the_apply)
{
    store_set_now(s, T0 + 3650 * DAY);
    /* one uncommitted batch spanning 60 days */
    v3ev b1[] = {{"f1", "aug", "P1", "O-aug", DA, T0, 0, 100}, {"f1", "oct", "P2", "O-oct", DA, T0 + 60 * DAY, 1, 101}};
    apply_many(b1, 2);
    ck_assert_int_eq(v3_status[1], STORE_APPLIED);
    /* the next batch of the customer, still nothing committed: aug stays */
    v3ev b2[] = {{"f1", "nov", "P3", "O-nov", DA, T0 + 61 * DAY, 2, 102}};
    apply_many(b2, 1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:d %s", "f1", "aug"), 1);
    ck_assert_int_eq(p_field("f1", "tf"), -1);
    v3ev re[] = {{"f1", "aug", "P-x", "O-x", DA, T0, 3, 100}};
    apply_many(re, 1);
    ck_assert_int_eq(v3_status[0], STORE_DUPLICATE);
    ck_assert_str_eq(v3_recorded[0], "O-aug");
    /* committed up to oct (not nov): the next apply trims aug, not the rest */
    store_committed(s, false, 3, 102);
    v3ev b3[] = {{"f1", "dec", "P4", "O-dec", DA, T0 + 62 * DAY, 3, 103}};
    apply_many(b3, 1);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:d %s", "f1", "aug"), 0);
    ck_assert_int_eq(raw_int("HLEN %s{%s}:d%s", "f1", ""), 3);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:t%s", "f1", ""), 0); /* layout 4 indexes no time in :t */
    ck_assert_int_eq(p_field("f1", "tf"), T0 + 31 * DAY);
    v3ev old[] = {{"f1", "aug", "P-x", "O-x", DA, T0, 4, 100}};
    apply_many(old, 1);
    ck_assert_int_eq(v3_status[0], STORE_TOO_OLD);
    store_set_now(s, 0);
}
END_TEST

/* The report's deltas: summed per customer in C, per call in the script,
 * counted only for customers that applied. */
START_TEST(aggregates_summed_per_call)
{
    ck_assert_int_eq(apply("g2", "e0", T0, 0, "P", "O", NULL, NULL), STORE_APPLIED);
    const char *a1[] = {"events|PURCHASE", "1", "points|issued", "100"};
    const char *a2[] = {"events|PURCHASE", "1", "points|issued", "250", "customers", "1"};
    const char *a3[] = {"events|PURCHASE", "1", "points|issued", "7000"};
    buf p = {0}, o = {0};
    buf_puts(&p, "P");
    buf_puts(&o, "O");
    store_apply_req q[] = {
        {.customer_id = "g1", .id = "e1", .occurred_at = T0, .profile = &p, .outputs = &o, .agg = a1, .nagg = 2},
        {.customer_id = "g1", .id = "e2", .occurred_at = T0, .expected_version = 1, .profile = &p, .outputs = &o,
         .agg = a2, .nagg = 3},
        {.customer_id = "g2", .id = "e1", .occurred_at = T0, .profile = &p, .outputs = &o, .agg = a3, .nagg = 2},
        {.customer_id = "g3", .id = "e1", .occurred_at = T0, .profile = &p, .outputs = &o, .agg = a1, .nagg = 2}};
    ck_assert_msg(store_apply(s, q, 4, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(q[2].status, STORE_FENCED);
    redisReply *r = redis_raw("HMGET %saggregates events|PURCHASE points|issued customers", prefix);
    ck_assert_str_eq(r->element[0]->str, "3");
    ck_assert_str_eq(r->element[1]->str, "450");
    ck_assert_str_eq(r->element[2]->str, "1");
    freeReplyObject(r);
    for (int i = 0; i < 4; i++)
        store_apply_req_free(&q[i]);
    buf_free(&p);
    buf_free(&o);
}
END_TEST

/* A ledger entry is the RewardEvent as encoded for Kafka; `fidelio ledger`
 * (store_ledger) prints it as the JSON line (layout 5: without its reason). */
START_TEST(ledger_entries_are_avro_decoded_for_display)
{
    codec *c = codec_new(SIZE_MAX, err, sizeof(err));
    ck_assert_ptr_nonnull(c);
    codec_record rec = {.schema = SCHEMA_REWARD};
    snprintf(rec.reward.reward_id, sizeof(rec.reward.reward_id), "rw-1");
    snprintf(rec.reward.customer_id, sizeof(rec.reward.customer_id), "l1");
    rec.reward.kind = REWARD_EARN;
    snprintf(rec.reward.rule_id, sizeof(rec.reward.rule_id), "purchase");
    rec.reward.points = 150;
    rec.reward.balance_after = 150;
    snprintf(rec.reward.source_event_id, sizeof(rec.reward.source_event_id), "e1");
    rec.reward.occurred_at = T0;
    snprintf(rec.reward.reason, sizeof(rec.reward.reason), "Purchase of 100.00 EUR");
    snprintf(rec.reward.program_version, sizeof(rec.reward.program_version), "1");
    buf avro = {0}, want = {0}, p = {0}, o = {0}, out = {0};
    ck_assert(codec_encode_avro(c, SCHEMA_REWARD, &rec, &avro, err, sizeof(err)) == EVENT_OK);
    codec_record noreason = rec;
    noreason.reward.reason[0] = '\0';
    ck_assert(codec_encode_json(SCHEMA_REWARD, &noreason, &want) == EVENT_OK);
    buf_puts(&want, "\n");
    buf_puts(&p, "P");
    buf_puts(&o, "O");
    const char *ledger[] = {avro.data};
    size_t lens[] = {avro.len};
    store_apply_req q = {.customer_id = "l1", .id = "e1", .occurred_at = T0, .profile = &p, .outputs = &o,
                         .ledger = ledger, .ledger_len = lens, .nledger = 1};
    ck_assert_msg(store_apply(s, &q, 1, err, sizeof(err)) == 0, "%s", err);
    redisReply *r = redis_raw("LINDEX %s{l1}:l 0", prefix);
    /* stored binary (layout 5): less the customer id (the key's), the reason, the program (a number) */
    ck_assert_uint_eq(r->len, 2 + avro.len - (1 + strlen("l1")) - (1 + strlen("Purchase of 100.00 EUR")) - (2 + 1) + 1);
    ck_assert_int_eq(r->str[0], 3);
    freeReplyObject(r);
    /* a layout-3 entry: the RewardEvent's Avro bytes as they are, printed with its reason */
    RAW_OK("RPUSH %s{l1}:l %b", prefix, avro.data, avro.len);
    ck_assert(codec_encode_json(SCHEMA_REWARD, &rec, &want) == EVENT_OK);
    buf_puts(&want, "\n");
    store *ro = tools_store();
    ck_assert_msg(store_ledger(ro, "l1", 10, &out, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(out.data, want.data);
    /* an entry that is neither JSON nor a RewardEvent is an error, not garbage */
    RAW_OK("RPUSH %s{l1}:l \x01\x02", prefix);
    buf_reset(&out);
    ck_assert_int_ne(store_ledger(ro, "l1", 10, &out, err, sizeof(err)), 0);
    ck_assert_msg(strstr(err, "not a RewardEvent"), "%s", err);
    /* a binary entry cut short, or with bytes after its program number, too */
    RAW_OK("RPUSH %s{l1m}:l %b", prefix, "\x03\x03\x00\x10purch", (size_t)9);
    buf_reset(&out);
    ck_assert_int_ne(store_ledger(ro, "l1m", 10, &out, err, sizeof(err)), 0);
    ck_assert_msg(strstr(err, "malformed binary entry"), "%s", err);
    RAW_OK("DEL %s{l1m}:l", prefix);
    RAW_OK("RPUSH %s{l1m}:l %b", prefix, "\x03\x03\x00\x02p\x02\x02\x02" "e\x02\x02\x00", (size_t)12);
    buf_reset(&out);
    ck_assert_int_ne(store_ledger(ro, "l1m", 10, &out, err, sizeof(err)), 0);
    ck_assert_msg(strstr(err, "malformed binary entry"), "%s", err);
    store_close(ro);
    store_apply_req_free(&q);
    buf_free(&avro);
    buf_free(&want);
    buf_free(&p);
    buf_free(&o);
    buf_free(&out);
    codec_free(c);
}
END_TEST

/* A RewardEvent for the ledger tests: customer cust, reward id derived
 * unless rid is given, the program (version, digest). */
static void ledger_reward(codec_record *rec, const char *cust, const char *rid, int i, const char *version,
                          const char *digest)
{
    *rec = (codec_record){.schema = SCHEMA_REWARD};
    reward_event *rw = &rec->reward;
    snprintf(rw->customer_id, sizeof(rw->customer_id), "%s", cust);
    rw->kind = i % 2 ? REWARD_REVERSAL : REWARD_EARN;
    snprintf(rw->rule_id, sizeof(rw->rule_id), "purchase");
    rw->points = i % 2 ? -(100 + i) : 100 + i;
    rw->balance_after = 1000 + i;
    snprintf(rw->source_event_id, sizeof(rw->source_event_id), "src-%d", i);
    rw->occurred_at = 1000 + i;
    snprintf(rw->reason, sizeof(rw->reason), "Purchase %d: a reason that is not kept", i);
    snprintf(rw->program_version, sizeof(rw->program_version), "%s", version);
    snprintf(rw->program_digest, sizeof(rw->program_digest), "%s", digest);
    if (rid)
        snprintf(rw->reward_id, sizeof(rw->reward_id), "%s", rid);
    else
        rules_reward_id(rw->source_event_id, rw->rule_id, rw->customer_id, rw->reward_id);
}

/* Layout 5's ledger entry (store.h, THE LEDGER), byte for byte: the tag and
 * flags, what the key and the entry do not say, kind .. occurred_at as Avro
 * encodes them, no reason, the program's number in <prefix>ledger_programs
 * (0 and both strings in full when it could not be numbered: calls in
 * flight). `fidelio ledger` prints every entry as it was published, its
 * reason empty; a number missing from <prefix>ledger_programs is an error,
 * never a wrong program. */
START_TEST(ledger_entries_binary)
{
    const char *dig = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    codec *c = codec_new(SIZE_MAX, err, sizeof(err));
    ck_assert_ptr_nonnull(c);
    codec_record rec[4];
    ledger_reward(&rec[0], "lb1", NULL, 0, "2026.1", dig);
    ledger_reward(&rec[1], "lb1", "rw-credit-of-another", 1, "2026.1", dig); /* a credit's reward id */
    ledger_reward(&rec[2], "lb1", NULL, 2, "2026.2", "");                   /* another program, no digest */
    ledger_reward(&rec[3], "lb1", NULL, 3, "2026.3", dig);                  /* numbered with calls in flight */
    buf avro[4] = {{0}}, want = {0}, p = {0}, o = {0}, out = {0};
    const char *ledger[4];
    size_t lens[4];
    for (int i = 0; i < 4; i++) {
        ck_assert(codec_encode_avro(c, SCHEMA_REWARD, &rec[i], &avro[i], err, sizeof(err)) == EVENT_OK);
        codec_record shown = rec[i];
        shown.reward.reason[0] = '\0';
        ck_assert(codec_encode_json(SCHEMA_REWARD, &shown, &want) == EVENT_OK);
        buf_puts(&want, "\n");
        ledger[i] = avro[i].data;
        lens[i] = avro[i].len;
    }
    buf_puts(&p, "P");
    buf_puts(&o, "O");
    store *all = store_open(redis_url, prefix, 30 * DAY, 0, err, sizeof(err)); /* (s keeps 3 entries) */
    ck_assert_msg(all != NULL, "%s", err);
    store_apply_req q = {.customer_id = "lb1", .id = "e1", .occurred_at = T0, .profile = &p, .outputs = &o,
                         .ledger = ledger, .ledger_len = lens, .nledger = 3};
    ck_assert_msg(store_apply(all, &q, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(q.status, STORE_APPLIED);
    /* the fourth with a fetch in flight: its program cannot be numbered, it goes in full */
    store_profile sp = {.customer_id = "lb1"};
    ck_assert_msg(store_fetch_send(all, &sp, 1, NULL, 0, err, sizeof(err)) == 0, "%s", err);
    store_apply_req q2 = {.customer_id = "lb1", .id = "e2", .occurred_at = T0, .expected_version = 1, .profile = &p,
                          .outputs = &o, .ledger = ledger + 3, .ledger_len = lens + 3, .nledger = 1};
    ck_assert_msg(store_apply_send(all, &q2, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(store_fetch_recv(all, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(store_apply_recv(all, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(q2.status, STORE_APPLIED);
    store_close(all);
    /* entry 0: tag 3, flags 3 (no reward id, no customer), EARN, "purchase", 100, 1000,
     * "src-0", 1000 (event time), program 1 */
    const char e0[] = "\x03\x03\x00\x10purchase\xc8\x01\xd0\x0f\x0asrc-0\xd0\x0f\x02";
    redisReply *r = redis_raw("LINDEX %s{lb1}:l 0", prefix);
    ck_assert_uint_eq(r->len, sizeof(e0) - 1);
    ck_assert(!memcmp(r->str, e0, sizeof(e0) - 1));
    freeReplyObject(r);
    /* entry 1: flags 2, the credit's reward id; REVERSAL, -101, 1001, "src-1", 1001, program 1 */
    const char e1[] = "\x03\x02\x28rw-credit-of-another\x02\x10purchase\xc9\x01\xd2\x0f\x0asrc-1\xd2\x0f\x02";
    r = redis_raw("LINDEX %s{lb1}:l 1", prefix);
    ck_assert_uint_eq(r->len, sizeof(e1) - 1);
    ck_assert(!memcmp(r->str, e1, sizeof(e1) - 1));
    freeReplyObject(r);
    /* entry 2: program 2 */
    r = redis_raw("LINDEX %s{lb1}:l 2", prefix);
    ck_assert_int_eq(r->str[r->len - 1], 4);
    freeReplyObject(r);
    /* entry 3: program 0, then "2026.3" and the digest in full */
    r = redis_raw("LINDEX %s{lb1}:l 3", prefix);
    ck_assert_uint_eq(r->len, 2 + 1 + 9 + 2 + 2 + 6 + 2 + 1 + 7 + 2 + strlen(dig));
    ck_assert(!memcmp(r->str + r->len - 1 - 7 - 2 - strlen(dig), "\x00\x0c" "2026.3\x8e\x01", 10));
    freeReplyObject(r);
    r = redis_raw("HGET %sledger_programs 1", prefix);
    ck_assert_uint_eq(r->len, strlen("2026.1") + 1 + strlen(dig));
    ck_assert(!memcmp(r->str, "2026.1\0sha256:", 14));
    freeReplyObject(r);
    r = redis_raw("HGET %sledger_programs 2", prefix);
    ck_assert_uint_eq(r->len, strlen("2026.2") + 1);
    freeReplyObject(r);
    store *ro = tools_store();
    ck_assert_msg(store_ledger(ro, "lb1", 10, &out, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(out.data, want.data);
    store_close(ro);
    /* a store opened later numbers the program as before (no second number) */
    all = store_open(redis_url, prefix, 30 * DAY, 0, err, sizeof(err));
    ck_assert_msg(all != NULL, "%s", err);
    store_apply_req q3 = {.customer_id = "lb1", .id = "e3", .occurred_at = T0, .expected_version = 2, .profile = &p,
                          .outputs = &o, .ledger = ledger + 2, .ledger_len = lens + 2, .nledger = 1};
    ck_assert_msg(store_apply(all, &q3, 1, err, sizeof(err)) == 0, "%s", err);
    store_close(all);
    r = redis_raw("LINDEX %s{lb1}:l 4", prefix);
    ck_assert_int_eq(r->str[r->len - 1], 4);
    freeReplyObject(r);
    r = redis_raw("HLEN %sledger_programs", prefix);
    ck_assert_int_eq(r->integer, 5); /* 1, 2, their "=" fields, next */
    freeReplyObject(r);
    /* a number missing from <prefix>ledger_programs is an error, never a wrong program */
    RAW_OK("HDEL %sledger_programs 1", prefix);
    ro = tools_store();
    buf_reset(&out);
    ck_assert_int_ne(store_ledger(ro, "lb1", 10, &out, err, sizeof(err)), 0);
    ck_assert_msg(strstr(err, "program 1 is not in"), "%s", err);
    store_close(ro);
    store_apply_req_free(&q);
    store_apply_req_free(&q2);
    store_apply_req_free(&q3);
    store_profile_free(&sp);
    for (int i = 0; i < 4; i++)
        buf_free(&avro[i]);
    buf_free(&want);
    buf_free(&p);
    buf_free(&o);
    buf_free(&out);
    codec_free(c);
}
END_TEST

/* A namespace written by layout 4 is upgraded in place (the marker becomes
 * "5", nothing rewritten): its compact entries (the Avro record less the
 * customer id, a derivable reward id, the digest as a reference into
 * <prefix>digests) print as they were published, reason included; new
 * entries are binary; both in one ledger, oldest first. */
START_TEST(layout_4_upgraded)
{
    const char *ns = REDIS_FIXTURE_PREFIX "v4ns:";
    const char *dig = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    codec *c = codec_new(SIZE_MAX, err, sizeof(err));
    ck_assert_ptr_nonnull(c);
    codec_record old, stored, next;
    ledger_reward(&old, "u4", NULL, 0, "2026.1", dig);
    ledger_reward(&next, "u4", NULL, 1, "2026.1", dig);
    /* what layout 4 wrote: "\1", flags 7, the record with reward id and customer empty, digest "0123456789abcdef" */
    stored = old;
    stored.reward.reward_id[0] = stored.reward.customer_id[0] = '\0';
    snprintf(stored.reward.program_digest, sizeof(stored.reward.program_digest), "0123456789abcdef");
    buf avro = {0}, entry = {0}, want = {0}, p = {0}, o = {0}, out = {0};
    ck_assert(codec_encode_avro(c, SCHEMA_REWARD, &stored, &avro, err, sizeof(err)) == EVENT_OK);
    buf_append(&entry, "\x01\x07", 2);
    buf_append(&entry, avro.data, avro.len);
    RAW_OK("SET %slayout 4", ns);
    RAW_OK("HSET %s{u4}:p v 1 p P-v4 hw %lld tn %lld", ns, (long long)T0, (long long)T0);
    RAW_OK("RPUSH %s{u4}:l %b", ns, entry.data, entry.len);
    RAW_OK("HSET %sdigests 0123456789abcdef %s", ns, dig);
    store *ro = store_open_readonly(redis_url_ro, ns, err, sizeof(err)); /* a tool reads layout 4 as it is */
    ck_assert_msg(ro != NULL, "%s", err);
    ck_assert(codec_encode_json(SCHEMA_REWARD, &old, &want) == EVENT_OK);
    buf_puts(&want, "\n");
    ck_assert_msg(store_ledger(ro, "u4", 10, &out, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(out.data, want.data);
    store_close(ro);
    store *w = store_open(redis_url, ns, 30 * DAY, 0, err, sizeof(err));
    ck_assert_msg(w != NULL, "%s", err);
    redisReply *r = redis_raw("GET %slayout", ns);
    ck_assert_int_eq(atoi(r->str), STORE_LAYOUT_VERSION);
    freeReplyObject(r);
    buf_reset(&avro);
    ck_assert(codec_encode_avro(c, SCHEMA_REWARD, &next, &avro, err, sizeof(err)) == EVENT_OK);
    const char *ledger[] = {avro.data};
    size_t lens[] = {avro.len};
    buf_puts(&p, "P");
    buf_puts(&o, "O");
    store_apply_req q = {.customer_id = "u4", .id = "e2", .occurred_at = T0 + 1, .expected_version = 1,
                         .profile = &p, .outputs = &o, .ledger = ledger, .ledger_len = lens, .nledger = 1};
    ck_assert_msg(store_apply(w, &q, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(q.status, STORE_APPLIED);
    store_close(w);
    r = redis_raw("LINDEX %s{u4}:l 1", ns);
    ck_assert_int_eq(r->str[0], 3);
    freeReplyObject(r);
    next.reward.reason[0] = '\0';
    ck_assert(codec_encode_json(SCHEMA_REWARD, &next, &want) == EVENT_OK);
    buf_puts(&want, "\n");
    ro = store_open_readonly(redis_url_ro, ns, err, sizeof(err));
    ck_assert_msg(ro != NULL, "%s", err);
    buf_reset(&out);
    ck_assert_msg(store_ledger(ro, "u4", 10, &out, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(out.data, want.data);
    store_close(ro);
    store_apply_req_free(&q);
    buf_free(&avro);
    buf_free(&entry);
    buf_free(&want);
    buf_free(&p);
    buf_free(&o);
    buf_free(&out);
    codec_free(c);
}
END_TEST

/* The store under test switched to namespace ns, written by an older layout
 * and upgraded in place by this open (its marker must then read
 * STORE_LAYOUT_VERSION); with
 * own_prefix, p_field and raw_int read that namespace too. upgraded_leave()
 * switches back and closes it. */
typedef struct {
    store *saved, *opened;
    char saved_prefix[sizeof(prefix)];
} upgraded;

static void upgraded_enter(upgraded *u, const char *ns, bool own_prefix)
{
    u->opened = store_open(redis_url, ns, 30 * DAY, 0, err, sizeof(err));
    ck_assert_msg(u->opened != NULL, "%s", err);
    redisReply *r = redis_raw("GET %slayout", ns);
    ck_assert_int_eq(atoi(r->str), STORE_LAYOUT_VERSION);
    freeReplyObject(r);
    u->saved = s;
    s = u->opened;
    snprintf(u->saved_prefix, sizeof(u->saved_prefix), "%s", prefix);
    if (own_prefix)
        snprintf(prefix, sizeof(prefix), "%s", ns);
}

static void upgraded_leave(upgraded *u)
{
    snprintf(prefix, sizeof(prefix), "%s", u->saved_prefix);
    s = u->saved;
    store_close(u->opened);
}

/* A namespace written by layout 5 is upgraded in place (the marker becomes
 * "6", nothing rewritten): its "\4" records (the whole digest, the event time
 * in decimal) still deduplicate, conflict and are trimmed by their time, the
 * outputs it kept in :p are re-emitted for a redelivery before the commit and
 * dropped once committed; new records are layout 6's ("\5", 8 bytes of
 * digest, the time as a varint: 15 bytes instead of 30), both in one :d. */
START_TEST(layout_5_upgraded)
{
    char ns[48];
    snprintf(ns, sizeof(ns), REDIS_FIXTURE_PREFIX "v5ns%d%d:", (int)tx_mode, (int)lanes_mode);
    char t1[24];
    snprintf(t1, sizeof(t1), "%lld", (long long)(T0 + DAY));
    RAW_OK("SET %slayout 5", ns);
    /* what layout 5 wrote: e1 (t3 offset 10, its batch not committed: outputs kept in :p) and e2 */
    RAW_OK("HSET %s{u5}:p v 2 p P-v5 hw %lld tf 0 tn %lld ote1 O-e1-v5 po %b", ns, (long long)(T0 + DAY),
           (long long)T0, "tt3/10\0e1\0", (size_t)10);
    char e2[40];
    int e2len = snprintf(e2, sizeof(e2), "\x04" "AAAAAAAAAAAAAAAA" "%s", t1);
    RAW_OK("HSET %s{u5}:d e1 %b e2 %b", ns, "\x04" "AAAAAAAAAAAAAAAA" T0S, (size_t)30, e2, (size_t)e2len);
    upgraded u;
    upgraded_enter(&u, ns, true);
    store_set_now(s, T0 + 3650 * DAY);
    /* e1 redelivered before its commit: a duplicate with the outputs layout 5 kept; another content conflicts */
    v3ev re[] = {{"u5", "e1", "P-x", "O-x", DA, T0, 2, 10}};
    apply_many(re, 1);
    ck_assert_int_eq(v3_status[0], STORE_DUPLICATE);
    ck_assert_str_eq(v3_recorded[0], "O-e1-v5");
    v3ev other[] = {{"u5", "e2", "P-x", "O-x", DB, T0 + DAY, 2, 11}};
    apply_many(other, 1);
    ck_assert_int_eq(v3_status[0], STORE_CONFLICT);
    /* a new event: a layout-6 record beside the layout-5 ones */
    v3ev b1[] = {{"u5", "e3", "P3", "O-e3", DB, T0 + 2 * DAY, 2, 12}};
    apply_many(b1, 1);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    ck_assert_int_eq(raw_int("HSTRLEN %s{%s}:d %s", "u5", "e3"), 1 + STORE_RECORD_DIGEST_LEN + 6 + 2);
    ck_assert_int_eq(raw_int("HSTRLEN %s{%s}:d %s", "u5", "e1"), 1 + STORE_DIGEST_LEN + 13);
    v3ev re3[] = {{"u5", "e3", "P-x", "O-x", DB, T0 + 2 * DAY, 3, 12}};
    apply_many(re3, 1);
    ck_assert_int_eq(v3_status[0], STORE_DUPLICATE);
    ck_assert_str_eq(v3_recorded[0], "O-e3");
    v3ev re3b[] = {{"u5", "e3", "P-x", "O-x", DA, T0 + 2 * DAY, 3, 12}};
    apply_many(re3b, 1);
    ck_assert_int_eq(v3_status[0], STORE_CONFLICT);
    /* committed past e1: the next apply drops what layout 5 kept */
    store_committed(s, false, 3, 13);
    v3ev b2[] = {{"u5", "e4", "P4", "O-e4", DA, T0 + 3 * DAY, 3, 13}};
    apply_many(b2, 1);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "u5", "ote1"), 0);
    apply_many(re, 1);
    ck_assert_int_eq(v3_status[0], STORE_DUPLICATE);
    ck_assert_str_eq(v3_recorded[0], "");
    /* 45 days on, all committed: both kinds of records are trimmed by their event time */
    v3ev b3[] = {{"u5", "e5", "P5", "O-e5", DA, T0 + 45 * DAY, 4, 14}};
    apply_many(b3, 1);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    store_committed(s, false, 3, 15);
    ck_assert_int_eq(trim("u5"), 4); /* e1, e2 (layout 5), e3, e4 (layout 6): older than 15 days */
    ck_assert_int_eq(raw_int("HLEN %s{%s}:d%s", "u5", ""), 1);
    ck_assert_int_eq(p_field("u5", "tn"), T0 + 45 * DAY);
    ck_assert_int_eq(p_field("u5", "tf"), T0 + 15 * DAY);
    v3ev late[] = {{"u5", "e3", "P-x", "O-x", DB, T0 + 2 * DAY, 5, 12}};
    apply_many(late, 1);
    ck_assert_int_eq(v3_status[0], STORE_TOO_OLD);
    store_set_now(s, 0);
    upgraded_leave(&u);
}
END_TEST

/* Apply credit id to cust, read at offset off of the credits topic's partition 1 (layout 8: its
 * outputs wait in <prefix>o:c1); the recorded outputs of a duplicate in rec. */
static store_status apply_credit_c1(const char *cust, const char *id, const char *digest, int64_t version,
                                    int64_t off, const char *outs, buf *rec)
{
    buf p = {0}, o = {0};
    buf_puts(&p, "P-credit");
    buf_puts(&o, outs);
    store_apply_req q = {.customer_id = cust, .id = id, .credit = true, .occurred_at = T0, .expected_version = version,
                         .profile = &p, .outputs = &o, .digest = (const uint8_t *)digest, .source_credits = true,
                         .partition = 1, .offset = off};
    tx_prefetch(s, &q, 1);
    ck_assert_msg(store_apply(s, &q, 1, err, sizeof(err)) == 0, "%s", err);
    if (rec) {
        buf_reset(rec);
        buf_append(rec, q.recorded.data ? q.recorded.data : "", q.recorded.len);
    }
    store_status st = q.status;
    store_apply_req_free(&q);
    buf_free(&p);
    buf_free(&o);
    return st;
}

/* A namespace written by layout 7 is upgraded in place (the marker becomes
 * "8", nothing rewritten): a credit's "\3" record (the whole digest) still
 * deduplicates and conflicts, and the outputs layout 7 kept in the referrer's
 * :p (a hashtable: longer than a piece) are re-emitted for a redelivery before
 * the credits' commit, then dropped by the next apply after it, which rebuilds
 * :p as a listpack; new credits' outputs wait in <prefix>o:<source> (their
 * "\6" records say where), never in :p. */
START_TEST(layout_7_upgraded)
{
    char ns[48], enc[32];
    snprintf(ns, sizeof(ns), REDIS_FIXTURE_PREFIX "v7ns%d%d:", (int)tx_mode, (int)lanes_mode);
    char out7[1000];
    snprintf(out7, sizeof(out7), "%s", long_profile(90, 'K'));
    RAW_OK("SET %slayout 7", ns);
    /* what layout 7 wrote for a referrer: credit rw-7 read at c1 offset 5, not committed yet */
    RAW_OK("HSET %s{u7}:p v 1 p P-v7 hw %lld tn %lld ocrw-7 %s po %b", ns, (long long)T0, (long long)T0, out7,
           "cc1/5\0rw-7\0", (size_t)11);
    RAW_OK("HSET %s{u7}:c rw-7 %b", ns, "\x03" "AAAAAAAAAAAAAAAA", (size_t)17);
    upgraded u;
    upgraded_enter(&u, ns, true);
    p_encoding("u7", enc, sizeof(enc));
    ck_assert_str_eq(enc, "hashtable");
    buf rec = {0};
    /* redelivered before the commit: a duplicate with the outputs layout 7 kept; another content conflicts */
    ck_assert_int_eq(apply_credit_c1("u7", "rw-7", DA, 1, 5, "O-x", &rec), STORE_DUPLICATE);
    ck_assert_str_eq(rec.data, out7);
    ck_assert_int_eq(apply_credit_c1("u7", "rw-7", DB, 1, 5, "O-x", &rec), STORE_CONFLICT);
    /* a new credit: its outputs in <prefix>o:c1, a "\6" record beside the "\3" one */
    ck_assert_int_eq(apply_credit_c1("u7", "rw-8", DB, 1, 6, "O-rw-8", &rec), STORE_APPLIED);
    ck_assert_int_eq(out_kept_in("c1", 'c', "u7", "rw-8", 6), 1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "u7", "ocrw-8"), 0);
    ck_assert_int_eq(raw_int("HSTRLEN %s{%s}:c %s", "u7", "rw-8"), 1 + STORE_RECORD_DIGEST_LEN + 3);
    ck_assert_int_eq(raw_int("HSTRLEN %s{%s}:c %s", "u7", "rw-7"), 1 + STORE_DIGEST_LEN);
    /* committed past rw-7 (not rw-8): the next apply drops what layout 7 kept and rebuilds :p */
    store_committed(s, true, 1, 6);
    v3ev b1[] = {{"u7", "e1", "P-e1", "O-e1", DA, T0 + 1, 2, 20}};
    apply_many(b1, 1);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "u7", "ocrw-7"), 0);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "u7", "po"), 0);
    p_encoding("u7", enc, sizeof(enc));
    ck_assert_str_eq(enc, "listpack");
    ck_assert_int_eq(apply_credit_c1("u7", "rw-7", DA, 3, 5, "O-x", &rec), STORE_DUPLICATE);
    ck_assert_uint_eq(rec.len, 0);
    ck_assert_int_eq(apply_credit_c1("u7", "rw-8", DB, 3, 6, "O-x", &rec), STORE_DUPLICATE);
    ck_assert_str_eq(rec.data, "O-rw-8");
    buf_free(&rec);
    upgraded_leave(&u);
}
END_TEST

static int count_profile(void *opaque, const char *data, size_t len)
{
    (void)data;
    *(size_t *)opaque += len;
    return 0;
}

/* A namespace written by layout 6 is upgraded in place (the marker becomes
 * "7", nothing rewritten): a profile kept whole in p (a hashtable in Redis) is
 * read whole, by the apply, the tools and the scan of profiles; the
 * customer's next apply writes it in pieces and :p is a listpack again. */
START_TEST(layout_6_upgraded)
{
    char ns[48], enc[32];
    snprintf(ns, sizeof(ns), REDIS_FIXTURE_PREFIX "v6ns%d:", (int)tx_mode);
    RAW_OK("SET %slayout 6", ns);
    RAW_OK("HSET %s{u6}:p v 1 p %s hw %lld tn %lld", ns, long_profile(200, 'S'), (long long)T0, (long long)T0);
    upgraded u;
    upgraded_enter(&u, ns, true);
    store_profile p = {0};
    fetch("u6", &p);
    ck_assert_int_eq(p.version, 1);
    ck_assert_int_eq((int)p.encoding.len, 200);
    ck_assert(!memcmp(p.encoding.data, long_profile(200, 'S'), 200));
    store_profile_free(&p);
    size_t total = 0;
    long long n = 0;
    ck_assert_msg(store_scan_profiles(s, count_profile, &total, &n, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq((int)total, 200);
    p_encoding("u6", enc, sizeof(enc));
    ck_assert_str_eq(enc, "hashtable");
    int64_t v;
    ck_assert_int_eq(apply("u6", "e1", T0 + 1, 1, long_profile(210, 'T'), "OUT-e1", &v, NULL), STORE_APPLIED);
    ck_assert_int_eq(v, 2);
    p_encoding("u6", enc, sizeof(enc));
    ck_assert_str_eq(enc, "listpack");
    ck_assert_int_eq(raw_int("HSTRLEN %s{%s}:p %s", "u6", "p3"), 210 - 3 * 64);
    total = 0;
    ck_assert_msg(store_scan_profiles(s, count_profile, &total, &n, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq((int)total, 210);
    upgraded_leave(&u);
}
END_TEST

/* A namespace written by layout 3 is upgraded in place on the first start:
 * a customer's records indexed by time in :t keep deduplicating and are
 * trimmed through :t until it is empty; then the customer has no :t and its
 * records (layout 4: the event time in the record) are trimmed through :d. */
START_TEST(layout_3_upgraded)
{
    const char *ns = REDIS_FIXTURE_PREFIX "v3ns:";
    RAW_OK("SET %slayout 3", ns);
    RAW_OK("HSET %s{w1}:p v 2 p P-v3 hw %lld", ns, (long long)(T0 + DAY));
    RAW_OK("HSET %s{w1}:d e1 %b e2 %b", ns, "\x03" "AAAAAAAAAAAAAAAA", (size_t)17, "\x03" "AAAAAAAAAAAAAAAA",
           (size_t)17);
    RAW_OK("ZADD %s{w1}:t %lld e1 %lld e2", ns, (long long)T0, (long long)(T0 + DAY));
    upgraded u;
    upgraded_enter(&u, ns, true);
    store_set_now(s, T0 + 3650 * DAY);
    buf rec = {0};
    ck_assert_int_eq(apply_digest("w1", "e1", 2, DA, &rec), STORE_DUPLICATE);
    ck_assert_int_eq(apply_digest("w1", "e2", 2, DB, &rec), STORE_CONFLICT);
    /* a new event 30.5 days after e1: e1 goes through :t, e2 stays (within the retention) */
    v3ev b1[] = {{"w1", "e3", "P3", "O-e3", DA, T0 + 30 * DAY + DAY / 2, 2, 1}};
    apply_many(b1, 1);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    ck_assert_int_eq(trim("w1"), 1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:d %s", "w1", "e1"), 0);
    ck_assert_int_eq(raw_int("ZCARD %s{%s}:t%s", "w1", ""), 1);
    ck_assert_int_eq(p_field("w1", "tn"), -1); /* still indexed by :t */
    ck_assert_int_eq(apply_digest("w1", "e2", 3, DA, &rec), STORE_DUPLICATE);
    /* 40 days after e2: e2 leaves :t (now empty), the customer is layout 4 */
    v3ev b2[] = {{"w1", "e4", "P4", "O-e4", DA, T0 + 41 * DAY, 3, 2}};
    apply_many(b2, 1);
    ck_assert_int_eq(trim("w1"), 1);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:t%s", "w1", ""), 0);
    ck_assert_int_eq(p_field("w1", "tn"), T0 + 30 * DAY + DAY / 2); /* e3's time: the oldest left */
    ck_assert_int_eq(apply_digest("w1", "e2", 4, DA, &rec), STORE_TOO_OLD);
    ck_assert_int_eq(apply_digest("w1", "e3", 4, DA, &rec), STORE_DUPLICATE);
    /* and its layout-4 records are trimmed through :d */
    v3ev b3[] = {{"w1", "e5", "P5", "O-e5", DA, T0 + 80 * DAY, 4, 3}};
    apply_many(b3, 1);
    ck_assert_int_eq(trim("w1"), 2); /* e3 and e4 */
    ck_assert_int_eq(p_field("w1", "tn"), T0 + 80 * DAY);
    ck_assert_int_eq(p_field("w1", "tf"), T0 + 50 * DAY);
    ck_assert_int_eq(apply_digest("w1", "e5", 5, DB, &rec), STORE_CONFLICT);
    buf_free(&rec);
    upgraded_leave(&u);
}
END_TEST

/* Layout 4's apply scans :d for records past the retention only once the
 * oldest is an eighth of the retention past it (then all of them go), not at
 * every apply; store_trim is exact. */
START_TEST(apply_trims_by_whole_eighths)
{
    store_set_now(s, T0 + 3650 * DAY);
    v3ev b1[] = {{"h1", "e1", "P1", "O1", DA, T0, 0, 200}, {"h1", "e2", "P2", "O2", DA, T0 + DAY, 1, 201}};
    apply_many(b1, 2);
    ck_assert_int_eq(p_field("h1", "tn"), T0);
    store_committed(s, false, 3, 300);
    /* 32 days after e1: e1 is 2 days past the retention, less than 30 / 8 days: kept */
    v3ev b2[] = {{"h1", "e3", "P3", "O3", DA, T0 + 32 * DAY, 2, 202}};
    apply_many(b2, 1);
    v3ev b3[] = {{"h1", "e4", "P4", "O4", DA, T0 + 32 * DAY + 1, 3, 203}};
    apply_many(b3, 1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:d %s", "h1", "e1"), 1);
    ck_assert_int_eq(p_field("h1", "tf"), -1);
    /* 35 days: 5 past, more than an eighth: e1 and e2 go in one scan */
    v3ev b4[] = {{"h1", "e5", "P5", "O5", DA, T0 + 35 * DAY, 4, 204}};
    apply_many(b4, 1);
    v3ev b5[] = {{"h1", "e6", "P6", "O6", DA, T0 + 35 * DAY + 1, 5, 205}};
    apply_many(b5, 1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:d %s", "h1", "e1"), 0);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:d %s", "h1", "e2"), 0);
    ck_assert_int_eq(p_field("h1", "tf"), T0 + 5 * DAY);
    ck_assert_int_eq(p_field("h1", "tn"), T0 + 32 * DAY);
    v3ev re[] = {{"h1", "e2", "P-x", "O-x", DA, T0 + DAY, 6, 206}};
    apply_many(re, 1);
    ck_assert_int_eq(v3_status[0], STORE_TOO_OLD);
    store_set_now(s, 0);
}
END_TEST

/* A namespace written by layout 2 is upgraded in place on the first start:
 * its records (digest + outputs) still deduplicate and re-emit, a reused id
 * is still a conflict, its JSON ledger entries still print, its trim goes on. */
START_TEST(layout_2_upgraded)
{
    const char *ns = REDIS_FIXTURE_PREFIX "v2ns:";
    RAW_OK("SET %slayout 2", ns);
    RAW_OK("HSET %s{u1}:p v 1 p P-v2 hw %lld", ns, (long long)T0);
    RAW_OK("HSET %s{u1}:d e1 %b", ns, "\x02" "AAAAAAAAAAAAAAAA" "O-v2", (size_t)21);
    RAW_OK("ZADD %s{u1}:t %lld e1", ns, (long long)T0);
    RAW_OK("RPUSH %s{u1}:l {\"reward_id\":\"rw-v2\"}", ns);
    RAW_OK("HSET %s{u1}:c rw-c %b", ns, "\x02" "BBBBBBBBBBBBBBBB" "O-credit", (size_t)25);
    upgraded u;
    upgraded_enter(&u, ns, false);
    buf rec = {0};
    ck_assert_int_eq(apply_digest("u1", "e1", 1, DA, &rec), STORE_DUPLICATE);
    ck_assert_str_eq(rec.data, "O-v2");
    ck_assert_int_eq(apply_digest("u1", "e1", 1, DB, &rec), STORE_CONFLICT);
    store_seen d = {.customer_id = "u1", .id = "rw-c", .credit = true, .digest = (const uint8_t *)DB};
    ck_assert(store_fetch(s, NULL, 0, &d, 1, err, sizeof(err)) == 0);
    ck_assert(d.seen && !d.conflict);
    ck_assert_str_eq(d.recorded.data, "O-credit");
    store_seen_free(&d);
    /* new events are written in the layout-4 form; the v2 record is trimmed once old */
    store_set_now(s, T0 + 3650 * DAY);
    ck_assert_int_eq(apply_digest("u1", "e2", 1, DA, NULL), STORE_APPLIED);
    v3ev late[] = {{"u1", "e3", "P3", "O-e3", DA, T0 + 40 * DAY, 2, 1}};
    apply_many(late, 1);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    ck_assert_int_eq(trim("u1"), 2); /* e1 (layout 2) and e2 past 30 days, once committed */
    redisReply *r = redis_raw("HSTRLEN %s{u1}:d e3", ns);
    ck_assert_int_eq(r->integer, 1 + STORE_RECORD_DIGEST_LEN + 6 + 2); /* + its event time (6), source, offset */
    freeReplyObject(r);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:t%s", "u1", ""), 0); /* drained: the customer is layout 4 */
    store *ro = store_open_readonly(redis_url_ro, ns, err, sizeof(err));
    ck_assert_msg(ro != NULL, "%s", err);
    buf out = {0};
    ck_assert_msg(store_ledger(ro, "u1", 10, &out, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(out.data, "{\"reward_id\":\"rw-v2\"}\n");
    buf_free(&out);
    buf_free(&rec);
    store_close(ro);
    upgraded_leave(&u);
}
END_TEST

/* Redis checks OOM at a script's first write only, and lets a delete
 * through: the apply writes the profile first, so an OOM refuses the whole
 * call, even when it has committed outputs to drop (nothing is written). */
START_TEST(oom_refused_before_dropping_outputs)
{
    /* (layout 8: what the apply still drops from :p is a credit's outputs a layout-7 apply kept there) */
    ck_assert_int_eq(apply_credit("oo1", "e1", T0, 0, "P1", "O-e1", NULL, NULL), STORE_APPLIED);
    RAW_OK("HSET %s{oo1}:p oce1 O-e1 po %b", prefix, "cc0/0\0e1\0", (size_t)10);
    store_committed(s, true, 0, 2);
    buf p = {0}, o = {0};
    buf_puts(&p, "P2");
    buf_puts(&o, "O-e2");
    store_apply_req q = {.customer_id = "oo1", .id = "e2", .occurred_at = T0 + 1, .expected_version = 1,
                         .profile = &p, .outputs = &o, .partition = 3, .offset = 2};
    RAW_OK("CONFIG SET maxmemory 1");
    int rc = store_apply(s, &q, 1, err, sizeof(err));
    RAW_OK("CONFIG SET maxmemory 0");
    ck_assert_int_eq(rc, STORE_PERMANENT);
    ck_assert_msg(strstr(err, "OOM"), "%s", err);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "oo1", "oce1"), 1);
    ck_assert_int_eq(p_field("oo1", "v"), 1);
    store_apply_req_free(&q);
    buf_free(&p);
    buf_free(&o);
}
END_TEST

/* A customer with thousands of events in one batch (a backfill with a big
 * pipeline.batch_size): applied in parts of its own calls, in order, since
 * one Lua call cannot unpack that many values. */
START_TEST(customer_with_thousands_of_events)
{
    enum { N = 5000 };
    store_apply_req *q = calloc(N + 1, sizeof(*q));
    char(*ids)[16] = calloc(N, sizeof(*ids));
    ck_assert(q && ids);
    buf p = {0}, o = {0};
    buf_puts(&p, "P");
    buf_puts(&o, "O");
    const char *ledger[] = {"{\"entry\":1}"};
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "e%d", i);
        q[i] = (store_apply_req){.customer_id = "big", .id = ids[i], .occurred_at = T0 + i, .expected_version = i,
                                 .profile = &p, .outputs = &o, .partition = 3, .offset = i, .ledger = ledger,
                                 .nledger = 1};
    }
    q[N] = (store_apply_req){.customer_id = "small", .id = "e0", .occurred_at = T0, .profile = &p, .outputs = &o};
    ck_assert_msg(store_apply(s, q, N + 1, err, sizeof(err)) == 0, "%s", err);
    for (int i = 0; i <= N; i++)
        ck_assert_msg(q[i].status == STORE_APPLIED, "event %d: status %d", i, q[i].status);
    ck_assert_int_eq(q[N - 1].version, N);
    ck_assert_int_eq(p_field("big", "v"), N);
    ck_assert_int_eq(raw_int("HLEN %s{%s}:d%s", "big", ""), N);
    for (int i = 0; i <= N; i++)
        store_apply_req_free(&q[i]);
    free(q);
    free(ids);
    buf_free(&p);
    buf_free(&o);
}
END_TEST

/* A credit's outputs are kept by the position it was read at in the
 * credits topic: a commit of the touchpoints topic's partition of the same
 * number does not drop them; the credits topic's does. */
START_TEST(credit_outputs_dropped_by_the_credits_commit)
{
    buf p = {0}, o = {0};
    buf_puts(&p, "P");
    buf_puts(&o, "O-credit");
    store_apply_req q = {.customer_id = "cr1", .id = "rw-1", .credit = true, .occurred_at = T0, .profile = &p,
                         .outputs = &o, .digest = (const uint8_t *)DA, .source_credits = true, .partition = 1,
                         .offset = 5};
    tx_prefetch(s, &q, 1);
    ck_assert_msg(store_apply(s, &q, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(q.status, STORE_APPLIED);
    store_apply_req_free(&q);
    /* layout 8: its outputs wait in <prefix>o:c1 (not in the referrer's :p), its record says where:
     * "\6", 8 bytes of digest, time 0, source 3 (2 x 1 + 1: the credits topic), offset 5 */
    ck_assert_int_eq(out_kept_in("c1", 'c', "cr1", "rw-1", 5), 1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "cr1", "ocrw-1"), 0);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "cr1", "po"), 0);
    redisReply *r = redis_raw("HGET %s{cr1}:c rw-1", prefix);
    ck_assert(r && r->type == REDIS_REPLY_STRING);
    ck_assert_int_eq((int)r->len, 1 + STORE_RECORD_DIGEST_LEN + 3);
    ck_assert(r->str[0] == 6 && !memcmp(r->str + 1, DA, STORE_RECORD_DIGEST_LEN));
    ck_assert(!memcmp(r->str + 1 + STORE_RECORD_DIGEST_LEN, "\x00\x06\x0a", 3));
    freeReplyObject(r);
    /* redelivered before the credits' commit: a duplicate re-emitting them; another digest: a conflict */
    store_apply_req re = q;
    memset(&re.recorded, 0, sizeof(re.recorded));
    tx_prefetch(s, &re, 1);
    ck_assert_msg(store_apply(s, &re, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(re.status, STORE_DUPLICATE);
    ck_assert_str_eq(re.recorded.data, "O-credit");
    store_apply_req_free(&re);
    store_seen d = {.customer_id = "cr1", .id = "rw-1", .credit = true, .digest = (const uint8_t *)DB};
    ck_assert(store_fetch(s, NULL, 0, &d, 1, err, sizeof(err)) == 0);
    ck_assert(d.seen && d.conflict);
    store_seen_free(&d);
    /* the touchpoints' commit does not drop them; the credits' commit past their offset does (a
     * credits partition goes by each commit, not by blocks of 256 as a touchpoints one) */
    store_committed(s, false, 1, 99);
    v3ev b2[] = {{"cr1", "e1", "P2", "O-e1", DA, T0 + 1, 1, 10}};
    apply_many(b2, 1);
    ck_assert_int_eq(v3_status[0], STORE_APPLIED);
    ck_assert_int_eq(out_kept_in("c1", 'c', "cr1", "rw-1", 5), 1);
    store_committed(s, true, 1, 6);
    d = (store_seen){.customer_id = "cr1", .id = "rw-1", .credit = true, .digest = (const uint8_t *)DA};
    ck_assert(store_fetch(s, NULL, 0, &d, 1, err, sizeof(err)) == 0);
    ck_assert(d.seen && !d.conflict);
    ck_assert_uint_eq(d.recorded.len, 0); /* committed: re-emits nothing */
    store_seen_free(&d);
    ck_assert_int_eq(raw_int("EXISTS %so:c1%s%s", "", ""), 0);
    /* a credit applied in process (by its source touchpoint's partition and offset): in <prefix>o:t<p> */
    q = (store_apply_req){.customer_id = "cr1", .id = "rw-2", .credit = true, .occurred_at = T0, .profile = &p,
                          .outputs = &o, .digest = (const uint8_t *)DA, .partition = 4, .offset = 7,
                          .expected_version = 2};
    tx_prefetch(s, &q, 1);
    ck_assert_msg(store_apply(s, &q, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(q.status, STORE_APPLIED);
    store_apply_req_free(&q);
    ck_assert_int_eq(out_kept_in("t4", 'c', "cr1", "rw-2", 7), 1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "cr1", "po"), 0);
    buf_free(&p);
    buf_free(&o);
}
END_TEST

/* ---- the apply as a transaction (the pipeline's way: fetch, then apply) ---------- */

/* Requests for a transaction test: customer, id, version, partition 3 offset off. */
typedef struct txev {
    const char *cust, *id;
    int64_t at, version, off;
    bool credit;
} txev;

static store_apply_req tx_q[16];
static buf tx_p[16], tx_o[16];

/* Fill tx_q from ev (profile "P-<id>", outputs "O-<id>", one ledger entry, one aggregate delta each). */
static void tx_reqs(const txev *ev, int n)
{
    static const char *ledger[] = {"L-entry"};
    static const char *agg[] = {"events|TEST", "1"};
    for (int i = 0; i < n; i++) {
        buf_reset(&tx_p[i]);
        buf_reset(&tx_o[i]);
        buf_printf(&tx_p[i], "P-%s", ev[i].id);
        buf_printf(&tx_o[i], "O-%s", ev[i].id);
        tx_q[i] = (store_apply_req){.customer_id = ev[i].cust, .id = ev[i].id, .credit = ev[i].credit,
                                    .occurred_at = ev[i].at, .expected_version = ev[i].version,
                                    .profile = &tx_p[i], .outputs = &tx_o[i], .digest = (const uint8_t *)DA,
                                    .partition = 3, .offset = ev[i].off, .ledger = ledger, .nledger = 1,
                                    .agg = agg, .nagg = 1};
    }
}

static void tx_free(int n)
{
    for (int i = 0; i < n; i++) {
        store_apply_req_free(&tx_q[i]);
        buf_free(&tx_p[i]);
        buf_free(&tx_o[i]);
    }
}

static long long agg_field(const char *field)
{
    redisReply *r = redis_raw("HGET %saggregates %s", prefix, field);
    long long v = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    freeReplyObject(r);
    return v;
}

/* The aggregates hash is kept a hashtable (store.h, THE AGGREGATES A HASHTABLE):
 * as a listpack (Redis's encoding up to 512 fields) each HINCRBY scans it for
 * its field. A new namespace's and, at `run`'s start, an older one's; the
 * field that does it is no figure (store_aggregates, the report leave it out);
 * a read-only tool writes nothing. */
START_TEST(aggregates_kept_as_a_hashtable)
{
    char enc[32];
    /* the fixture's namespace, new: a hashtable before any apply, and after */
    redisReply *r = redis_raw("OBJECT ENCODING %saggregates", prefix);
    ck_assert(r && r->type == REDIS_REPLY_STRING);
    snprintf(enc, sizeof(enc), "%s", r->str);
    freeReplyObject(r);
    ck_assert_str_eq(enc, "hashtable");
    const char *pairs[] = {"dlq|bad_json", "2"};
    ck_assert_msg(store_aggregates_add(s, pairs, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(agg_field("dlq|bad_json"), 2);
    /* a namespace whose aggregates are a listpack (written before this): read-only tools leave it,
     * the next `run` converts it, the figures as they were */
    const char *old = REDIS_FIXTURE_PREFIX "aggold:";
    RAW_OK("SET %slayout 7", old);
    RAW_OK("HSET %saggregates complete 1 events|PURCHASE 12 points|balance -5", old);
    store *ro = store_open_readonly(redis_url, old, err, sizeof(err));
    ck_assert_msg(ro != NULL, "%s", err);
    r = redis_raw("OBJECT ENCODING %saggregates", old);
    ck_assert(r && r->type == REDIS_REPLY_STRING);
    ck_assert_str_eq(r->str, "listpack");
    freeReplyObject(r);
    store *o = store_open(redis_url, old, DAY, 0, err, sizeof(err));
    ck_assert_msg(o != NULL, "%s", err);
    r = redis_raw("OBJECT ENCODING %saggregates", old);
    ck_assert(r && r->type == REDIS_REPLY_STRING);
    ck_assert_str_eq(r->str, "hashtable");
    freeReplyObject(r);
    buf out = {0};
    size_t n;
    ck_assert_msg(store_aggregates(ro, &out, &n, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq((int)n, 3);
    size_t seen = 0;
    for (const char *f = out.data; f < out.data + out.len; f += strlen(f) + 1) {
        const char *val = f + strlen(f) + 1;
        if (!strcmp(f, "complete")) {
            ck_assert_str_eq(val, "1");
            seen |= 1;
        } else if (!strcmp(f, "events|PURCHASE")) {
            ck_assert_str_eq(val, "12");
            seen |= 2;
        } else if (!strcmp(f, "points|balance")) {
            ck_assert_str_eq(val, "-5");
            seen |= 4;
        } else
            ck_abort_msg("unexpected aggregates field %s", f);
        f = val;
    }
    ck_assert_int_eq((int)seen, 7);
    buf_free(&out);
    store_close(o);
    store_close(ro);
}
END_TEST

/* A write by another client to a customer's :p between the fetch and the
 * apply (a zombie, another instance): EXEC refuses the whole transaction;
 * every customer of it is FENCED, nothing of any of them is written; decided
 * again on a fresh fetch, it applies. */
START_TEST(tx_foreign_write_fences_the_transaction)
{
    tx_mode = true;
    txev first[] = {{"w1", "e0", T0, 0, 1, false}};
    tx_reqs(first, 1);
    tx_prefetch(s, tx_q, 1);
    ck_assert_msg(store_apply(s, tx_q, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(tx_q[0].status, STORE_APPLIED);
    tx_free(1);
    long long events = agg_field("events|TEST");
    txev ev[] = {{"w1", "e1", T0 + 1, 1, 2, false}, {"w2", "e1", T0 + 1, 0, 3, false}, {"w2", "e2", T0 + 2, 1, 4, false}};
    tx_reqs(ev, 3);
    tx_prefetch(s, tx_q, 3);
    RAW_OK("HSET %s{w1}:p zombie 1", prefix); /* another writer, after the fetch */
    ck_assert_msg(store_apply(s, tx_q, 3, err, sizeof(err)) == 0, "%s", err);
    bool w2f = fenced_with("w2", "w1"); /* (lanes: w2's lane may apply) */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(tx_q[i].status, i == 0 || w2f ? STORE_FENCED : STORE_APPLIED);
    ck_assert_int_eq(p_field("w1", "v"), 1);
    ck_assert_int_eq(p_field("w2", "v"), w2f ? -1 : 2);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:d%s", "w2", ""), !w2f);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:d %s", "w1", "e1"), 0);
    ck_assert_int_eq(raw_int("LLEN %s{%s}:l%s", "w1", ""), 1);
    ck_assert_int_eq(agg_field("events|TEST"), events + (w2f ? 0 : 2));
    /* decided again on what is stored now */
    size_t again = w2f ? 3 : 1;
    tx_prefetch(s, tx_q, again);
    ck_assert_msg(store_apply(s, tx_q, again, err, sizeof(err)) == 0, "%s", err);
    for (size_t i = 0; i < again; i++)
        ck_assert_int_eq(tx_q[i].status, STORE_APPLIED);
    ck_assert_int_eq(tx_q[2].version, 2);
    ck_assert_int_eq(p_field("w1", "v"), 2);
    ck_assert_int_eq(agg_field("events|TEST"), events + 3);
    tx_free(3);
}
END_TEST

/* A fetch of many customers (the pipeline's: 256 or more; here every fetch)
 * spreads them over the lanes: each lane WATCHes and writes its own customers
 * in its own MULTI/EXEC on its own connection, so a foreign write between the
 * fetch and EXEC fences that lane's customers only (nothing of them written,
 * their report deltas not added) and the other lane's apply. */
static long long command_calls(const char *cmd);

START_TEST(tx_lanes_foreign_write_fences_its_lane)
{
    /* one customer on each lane */
    static char names[2][8];
    int found = 0;
    for (int i = 0; found != 3 && i < 100; i++) {
        char c[8];
        snprintf(c, sizeof(c), "ln%d", i);
        int l = store_lane_of(c);
        if (!(found & (1 << l))) {
            snprintf(names[l], sizeof(names[l]), "%s", c);
            found |= 1 << l;
        }
    }
    ck_assert_int_eq(found, 3);
    long long events = agg_field("events|TEST"), watches = command_calls("watch");
    if (events < 0)
        events = 0;
    txev ev[] = {{names[0], "e1", T0, 0, 1, false}, {names[1], "e1", T0, 0, 2, false}};
    tx_reqs(ev, 2);
    tx_prefetch(s, tx_q, 2);
    ck_assert_int_eq(command_calls("watch"), watches + 2); /* one WATCH per lane */
    RAW_OK("HSET %s{%s}:p zombie 1", prefix, names[0]); /* another writer, after the fetch */
    ck_assert_msg(store_apply(s, tx_q, 2, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(tx_q[0].status, STORE_FENCED);
    ck_assert_int_eq(tx_q[1].status, STORE_APPLIED);
    ck_assert_int_eq(p_field(names[0], "v"), -1);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:d%s", names[0], ""), 0);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:l%s", names[0], ""), 0);
    ck_assert_int_eq(p_field(names[1], "v"), 1);
    ck_assert_int_eq(raw_int("LLEN %s{%s}:l%s", names[1], ""), 1);
    ck_assert_int_eq(agg_field("events|TEST"), events + 1);
    /* the fenced one, decided again on a fresh fetch, applies */
    tx_prefetch(s, tx_q, 1);
    ck_assert_msg(store_apply(s, tx_q, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(tx_q[0].status, STORE_APPLIED);
    ck_assert_int_eq(agg_field("events|TEST"), events + 2);
    tx_free(2);
}
END_TEST

/* With the lanes in use, an apply with no WATCH in force (the pipeline's
 * later levels of in-process credits: the round's transaction is closed)
 * queues each customer's script call on that customer's lane, in a MULTI/EXEC
 * there, so a fetch sent behind it reads what it wrote. */
START_TEST(tx_lanes_script_apply_on_its_lane)
{
    const char *b = NULL;
    static char name[8];
    for (int i = 0; !b && i < 100; i++) {
        snprintf(name, sizeof(name), "ls%d", i);
        if (store_lane_of(name) == 1)
            b = name;
    }
    ck_assert_ptr_nonnull(b);
    txev ev[] = {{"ls-a", "e1", T0, 0, 1, false}, {b, "e1", T0, 0, 2, false}, {b, "e2", T0 + 1, 1, 3, false}};
    tx_reqs(ev, 3);
    tx_prefetch(s, tx_q, 2);
    ck_assert_msg(store_apply(s, tx_q, 2, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(tx_q[1].status, STORE_APPLIED);
    /* no WATCH in force now: b's next event goes through the script, on b's lane */
    long long multis = command_calls("multi");
    ck_assert_msg(store_apply_send(s, &tx_q[2], 1, err, sizeof(err)) == 0, "%s", err);
    store_profile p = {.customer_id = b};
    store_seen d = {.customer_id = b, .id = "e3", .digest = (const uint8_t *)DA};
    ck_assert_msg(store_fetch_send(s, &p, 1, &d, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(store_apply_recv(s, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(tx_q[2].status, STORE_APPLIED);
    ck_assert_msg(store_fetch_recv(s, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(p.version, 2); /* it read what the script call before it wrote */
    ck_assert_int_eq(command_calls("multi"), multis + 1);
    store_profile_free(&p);
    store_seen_free(&d);
    tx_free(3);
}
END_TEST

/* A transaction's report deltas over hundreds of aggregates fields (a day's
 * field per rule and day): each field is found among those fetched and those
 * the transaction's earlier sends added, summed per field, and refused when
 * one would leave the integers, however many fields there are. */
START_TEST(tx_aggregates_many_fields)
{
    enum { NF = 700 };
    tx_mode = true;
    for (int i = 0; i < NF; i++)
        RAW_OK("HSET %saggregates day|%d %d", prefix, i, i);
    RAW_OK("HSET %saggregates big 8999999999999999990", prefix);
    RAW_OK("HSET %saggregates broken x", prefix);
    /* deltas: every fetched field, as many new ones, and big */
    static char names[3 * NF][16];
    const char *a1[2 * (2 * NF + 1)], *a2[2 * NF];
    int n1 = 0, n2 = 0;
    for (int i = 0; i < NF; i++) {
        snprintf(names[i], sizeof(names[i]), "day|%d", i);
        snprintf(names[NF + i], sizeof(names[i]), "new|%d", i);
        a1[2 * n1] = names[i], a1[2 * n1++ + 1] = "1";
        a1[2 * n1] = names[NF + i], a1[2 * n1++ + 1] = "2";
        a2[2 * n2] = names[NF + i], a2[2 * n2++ + 1] = "3";
    }
    a1[2 * n1] = "big", a1[2 * n1++ + 1] = "5";
    buf p = {0}, o = {0};
    buf_puts(&p, "P");
    buf_puts(&o, "O");
    store_apply_req q[] = {
        {.customer_id = "m1", .id = "e1", .occurred_at = T0, .profile = &p, .outputs = &o, .agg = a1, .nagg = n1},
        {.customer_id = "m2", .id = "e1", .occurred_at = T0, .profile = &p, .outputs = &o, .agg = a1, .nagg = n1},
        {.customer_id = "m3", .id = "e1", .occurred_at = T0, .profile = &p, .outputs = &o, .agg = a2, .nagg = n2}};
    tx_prefetch(s, q, 2);
    ck_assert_msg(store_apply_send(s, &q[0], 1, err, sizeof(err)) == 0, "%s", err);
    /* the transaction's second send: big would reach 9e18 with what the first added */
    ck_assert_int_eq(store_apply_send(s, &q[1], 1, err, sizeof(err)), STORE_PERMANENT);
    ck_assert_msg(strstr(err, "field big would not be an integer"), "error: %s", err);
    store_apply_recv(s, err, sizeof(err)); /* (the first send went with the connection) */
    ck_assert_int_eq(p_field("m1", "v"), -1);
    ck_assert_int_eq(p_field("m2", "v"), -1);
    ck_assert_int_eq(agg_field("day|0"), 0);
    /* one send: the fields of two customers summed */
    store_apply_req q2[] = {q[0], q[2]};
    tx_prefetch(s, q2, 2);
    ck_assert_msg(store_apply(s, q2, 2, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(q2[0].status, STORE_APPLIED);
    ck_assert_int_eq(q2[1].status, STORE_APPLIED);
    ck_assert_int_eq(agg_field("day|0"), 1);
    ck_assert_int_eq(agg_field("day|699"), 700);
    ck_assert_int_eq(agg_field("new|0"), 5);
    ck_assert_int_eq(agg_field("new|517"), 5);
    ck_assert_int_eq(agg_field("big"), 8999999999999999995LL);
    /* a field that is not a number, among hundreds: refused, nothing written */
    const char *a3[] = {"new|1", "1", "broken", "1", "day|3", "1"};
    store_apply_req q3 = {.customer_id = "m4", .id = "e1", .occurred_at = T0, .profile = &p, .outputs = &o,
                          .agg = a3, .nagg = 3};
    tx_prefetch(s, &q3, 1);
    ck_assert_int_eq(store_apply(s, &q3, 1, err, sizeof(err)), STORE_PERMANENT);
    ck_assert_msg(strstr(err, "field broken would not be an integer"), "error: %s", err);
    ck_assert_int_eq(agg_field("new|1"), 5);
    ck_assert_int_eq(p_field("m4", "v"), -1);
    store_apply_req_free(&q3);
    for (int i = 0; i < 3; i++)
        store_apply_req_free(&q[i]);
    buf_free(&p);
    buf_free(&o);
}
END_TEST

/* Calls of a Redis command since the server started (INFO commandstats). */
static long long command_calls(const char *cmd)
{
    redisReply *r = redis_raw("INFO commandstats");
    ck_assert(r && r->type == REDIS_REPLY_STRING);
    char want[64];
    snprintf(want, sizeof(want), "cmdstat_%s:calls=", cmd);
    const char *at = strstr(r->str, want);
    long long n = at ? atoll(at + strlen(want)) : 0;
    freeReplyObject(r);
    return n;
}

/* The pipeline sends a round's applies in groups of customers, all in one
 * transaction: the report's deltas are summed over the whole transaction and
 * added with one HINCRBY per field at its EXEC (not one per field and send),
 * and only when it applies. */
START_TEST(tx_aggregates_once_per_transaction)
{
    tx_mode = true;
    long long events = agg_field("events|TEST"), calls = command_calls("hincrby");
    if (events < 0) /* (not there yet) */
        events = 0;
    txev ev[] = {{"h1", "e1", T0, 0, 1, false}, {"h2", "e1", T0, 0, 2, false}, {"h3", "e1", T0, 0, 3, false},
                 {"h3", "e2", T0 + 1, 0, 4, false}};
    tx_reqs(ev, 4);
    tx_prefetch(s, tx_q, 4);
    ck_assert_msg(store_apply_send(s, tx_q, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(store_apply_send(s, tx_q + 1, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(store_apply_send(s, tx_q + 2, 2, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(store_apply_recv(s, err, sizeof(err)) == 0, "%s", err);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(tx_q[i].status, STORE_APPLIED);
    ck_assert_int_eq(agg_field("events|TEST"), events + 4);
    /* one field, one transaction (with lanes: one per lane its customers are on) */
    int nlanes = 1 + (lanes_mode && (store_lane_of("h1") != store_lane_of("h2") ||
                                     store_lane_of("h1") != store_lane_of("h3") ||
                                     store_lane_of("h2") != store_lane_of("h3")));
    ck_assert_int_eq(command_calls("hincrby"), calls + nlanes);
    tx_free(4);
    /* fenced by a foreign write: nothing added */
    txev ev2[] = {{"h1", "e2", T0 + 1, 1, 5, false}, {"h2", "e2", T0 + 1, 1, 6, false}};
    tx_reqs(ev2, 2);
    tx_prefetch(s, tx_q, 2);
    ck_assert_msg(store_apply_send(s, tx_q, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(store_apply_send(s, tx_q + 1, 1, err, sizeof(err)) == 0, "%s", err);
    RAW_OK("HSET %s{h2}:p zombie 1", prefix);
    ck_assert_msg(store_apply_recv(s, err, sizeof(err)) == 0, "%s", err);
    bool h1f = fenced_with("h1", "h2");
    ck_assert_int_eq(tx_q[0].status, h1f ? STORE_FENCED : STORE_APPLIED);
    ck_assert_int_eq(tx_q[1].status, STORE_FENCED);
    ck_assert_int_eq(agg_field("events|TEST"), events + 4 + !h1f);
    tx_free(2);
}
END_TEST

/* NOPERM and OOM refuse a command when it is queued (Redis 7): the EXEC
 * aborts and nothing of the transaction is written. */
START_TEST(tx_queue_error_writes_nothing)
{
    tx_mode = true;
    txev ev[] = {{"q1", "e1", T0, 0, 1, false}, {"q2", "e1", T0, 0, 2, false}};
    tx_reqs(ev, 2);
    tx_prefetch(s, tx_q, 2);
    acl("-rpush");
    int rc = store_apply(s, tx_q, 2, err, sizeof(err));
    acl("+rpush");
    ck_assert_int_eq(rc, STORE_PERMANENT);
    ck_assert_msg(strstr(err, "NOPERM") && strstr(err, "nothing was written"), "%s", err);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:p%s", "q1", ""), 0);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:p%s", "q2", ""), 0);
    ck_assert_int_eq(agg_field("events|TEST"), -1);
    ck_assert_int_eq(store_reconnect(s, err, sizeof(err)), 0);
    tx_prefetch(s, tx_q, 2);
    RAW_OK("CONFIG SET maxmemory 1");
    rc = store_apply(s, tx_q, 2, err, sizeof(err));
    RAW_OK("CONFIG SET maxmemory 0");
    ck_assert_int_eq(rc, STORE_PERMANENT);
    ck_assert_msg(strstr(err, "OOM") && strstr(err, "nothing was written"), "%s", err);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:p%s", "q1", ""), 0);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:d%s", "q2", ""), 0);
    ck_assert_int_eq(agg_field("events|TEST"), -1);
    /* then it applies */
    tx_prefetch(s, tx_q, 2);
    ck_assert_msg(store_apply(s, tx_q, 2, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(tx_q[1].status, STORE_APPLIED);
    tx_free(2);
}
END_TEST

/* A key of the wrong type would fail inside EXEC, where Redis keeps the
 * other writes: the reads under WATCH find it and the apply is refused with
 * nothing written, for every customer of the transaction. */
START_TEST(tx_wrong_type_refused)
{
    tx_mode = true;
    RAW_OK("SET %s{y1}:l not-a-list", prefix);
    txev ev[] = {{"y2", "e1", T0, 0, 1, false}, {"y1", "e1", T0, 0, 2, false}};
    tx_reqs(ev, 2);
    tx_prefetch(s, tx_q, 2);
    ck_assert_int_eq(store_apply(s, tx_q, 2, err, sizeof(err)), STORE_PERMANENT);
    ck_assert_msg(strstr(err, "WRONGTYPE") && strstr(err, "nothing was written"), "%s", err);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:p%s", "y1", ""), 0);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:p%s", "y2", ""), 0);
    /* the aggregates hash of the wrong type: refused too */
    RAW_OK("DEL %s{y1}:l", prefix);
    RAW_OK("DEL %saggregates", prefix);
    RAW_OK("SET %saggregates x", prefix);
    tx_prefetch(s, tx_q, 2);
    ck_assert_int_eq(store_apply(s, tx_q, 2, err, sizeof(err)), STORE_PERMANENT);
    ck_assert_msg(strstr(err, "WRONGTYPE") && strstr(err, "nothing was written"), "%s", err);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:p%s", "y2", ""), 0);
    /* a field that is not an integer */
    RAW_OK("DEL %saggregates", prefix);
    RAW_OK("HSET %saggregates events|TEST x", prefix);
    tx_prefetch(s, tx_q, 2);
    ck_assert_int_eq(store_apply(s, tx_q, 2, err, sizeof(err)), STORE_PERMANENT);
    ck_assert_msg(strstr(err, "events|TEST") && strstr(err, "nothing was written"), "%s", err);
    ck_assert_int_eq(raw_int("EXISTS %s{%s}:p%s", "y2", ""), 0);
    tx_free(2);
}
END_TEST

/* ---- report aggregates past 64 bits: refused, never wrapped ---------------------- */

/* Requests o1 and o2 (event e1), each with one aggregate delta on field "money". */
static store_apply_req agg_q[2];
static buf agg_p, agg_o;
static const char *agg_d[2][2];

/* Set "money" to value, fill agg_q with deltas d0 and d1, fetch the first
 * nfetch of them (under WATCH: their applies are a transaction). */
static void agg_reqs(const char *value, const char *d0, const char *d1, size_t nfetch)
{
    RAW_OK("HSET %saggregates money %s", prefix, value);
    buf_reset(&agg_p);
    buf_reset(&agg_o);
    buf_puts(&agg_p, "P");
    buf_puts(&agg_o, "O");
    const char *d[] = {d0, d1}, *cust[] = {"o1", "o2"};
    for (int i = 0; i < 2; i++) {
        agg_d[i][0] = "money";
        agg_d[i][1] = d[i];
        agg_q[i] = (store_apply_req){.customer_id = cust[i], .id = "e1", .occurred_at = T0, .profile = &agg_p,
                                     .outputs = &agg_o, .agg = agg_d[i], .nagg = 1};
    }
    tx_mode = true;
    tx_prefetch(s, agg_q, nfetch);
    tx_mode = false;
}

/* The aggregates field "money" as stored (its exact text), "" when absent. */
static void money(char *out, size_t len)
{
    redisReply *r = redis_raw("HGET %saggregates money", prefix);
    ck_assert_ptr_nonnull(r);
    snprintf(out, len, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
}

/* Nothing of agg_q was written: "money" still reads was, neither customer
 * has a profile or a ledger (then agg_q is freed). */
static void agg_unchanged(const char *was)
{
    char now[64];
    money(now, sizeof(now));
    ck_assert_str_eq(now, was);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(p_field(agg_q[i].customer_id, "v"), -1);
        ck_assert_int_eq(raw_int("EXISTS %s{%s}:l%s", agg_q[i].customer_id, ""), 0);
        store_apply_req_free(&agg_q[i]);
    }
}

/* The apply of agg_q[0..n), the first nfetch fetched (0: the script's
 * calls, else a transaction), is refused and writes nothing. */
static void agg_refused(const char *value, const char *d0, const char *d1, size_t n, size_t nfetch)
{
    agg_reqs(value, d0, d1, nfetch);
    int rc = store_apply(s, agg_q, n, err, sizeof(err));
    char now[64];
    money(now, sizeof(now));
    ck_assert_msg(rc == STORE_PERMANENT, "%s: rc %d, money %s (was %s)", nfetch ? "tx" : "script", rc, now, value);
    ck_assert_msg(strstr(err, "field money would not be an integer") && strstr(err, "nothing was written"), "%s", err);
    agg_unchanged(value);
}

/* A report aggregate that one send would push past 64 bits (either way:
 * refunds are negative) is refused before anything is written, by the
 * transaction (C) and by the script alike: never written wrapped. */
START_TEST(aggregates_one_send_past_64_bits)
{
    for (size_t nfetch = 0; nfetch <= 2; nfetch += 2) {
        agg_refused("7", "5000000000000000000", "5000000000000000000", 2, nfetch);
        agg_refused("7", "-5000000000000000000", "-5000000000000000000", 2, nfetch);
    }
    /* and within the bounds, both apply */
    agg_reqs("7", "4000000000000000000", "4000000000000000000", 2);
    ck_assert_msg(store_apply(s, agg_q, 2, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(agg_q[1].status, STORE_APPLIED);
    char now[64];
    money(now, sizeof(now));
    ck_assert_str_eq(now, "8000000000000000007");
    store_apply_req_free(&agg_q[0]);
    store_apply_req_free(&agg_q[1]);
    buf_free(&agg_p);
    buf_free(&agg_o);
}
END_TEST

/* The same spread over the sends of one transaction: each send is checked
 * with what the transaction's earlier sends queued (the hash's field as
 * fetched + the transaction's sum + the send's), and the transaction's sum
 * itself (one HINCRBY at its EXEC) must fit: nothing fails inside EXEC,
 * where the other writes would stay. */
START_TEST(aggregates_transaction_past_64_bits)
{
    static const char *const cases[][2] = {{"7", "5000000000000000000"},
                                           /* the transaction's own sum past 64 bits (each send fits) */
                                           {"-8000000000000000000", "8000000000000000000"}};
    for (int c = 0; c < 2; c++) {
        if (c == 1 && !fenced_with("o1", "o2")) {
            /* lanes: each lane's transaction adds its own 8e18 by one HINCRBY, and in either
             * order the field stays an integer: both apply */
            agg_reqs(cases[c][0], cases[c][1], cases[c][1], 2);
            ck_assert_msg(store_apply_send(s, &agg_q[0], 1, err, sizeof(err)) == 0, "%s", err);
            ck_assert_msg(store_apply_send(s, &agg_q[1], 1, err, sizeof(err)) == 0, "%s", err);
            ck_assert_msg(store_apply_recv(s, err, sizeof(err)) == 0, "%s", err);
            ck_assert_int_eq(agg_q[0].status, STORE_APPLIED);
            ck_assert_int_eq(agg_q[1].status, STORE_APPLIED);
            char now[64];
            money(now, sizeof(now));
            ck_assert_str_eq(now, "8000000000000000000");
            store_apply_req_free(&agg_q[0]);
            store_apply_req_free(&agg_q[1]);
            continue;
        }
        agg_reqs(cases[c][0], cases[c][1], cases[c][1], 2);
        ck_assert_msg(store_apply_send(s, &agg_q[0], 1, err, sizeof(err)) == 0, "%s", err);
        int rc = store_apply_send(s, &agg_q[1], 1, err, sizeof(err));
        char e1[sizeof(err)];
        snprintf(e1, sizeof(e1), "%s", err);
        int rrc = store_apply_recv(s, err, sizeof(err)); /* (the first send went with the connection) */
        ck_assert_msg(rc == STORE_PERMANENT, "second send: %d, then recv %d (%s)", rc, rrc, err);
        ck_assert_msg(strstr(e1, "field money would not be an integer") && strstr(e1, "nothing was written"), "%s",
                      e1);
        ck_assert_int_eq(store_reconnect(s, err, sizeof(err)), 0);
        agg_unchanged(cases[c][0]);
    }
    buf_free(&agg_p);
    buf_free(&agg_o);
}
END_TEST

/* A customer the script applies inside the transaction (one not fetched)
 * runs before the transaction's HINCRBYs (at its EXEC): what it may add is
 * counted too, so the script does not refuse itself inside EXEC while the
 * customers written in C stay written. */
START_TEST(aggregates_script_in_transaction_past_64_bits)
{
    agg_refused("5000000000000000000", "-5000000000000000000", "5000000000000000000", 2, 1);
    buf_free(&agg_p);
    buf_free(&agg_o);
}
END_TEST

/* A hash already at the edge: INT64_MAX - 10 plus 11, INT64_MIN + 10 minus 11. */
START_TEST(aggregates_at_the_edge_refused)
{
    for (size_t nfetch = 0; nfetch <= 1; nfetch++) {
        agg_refused("9223372036854775797", "11", "0", 1, nfetch);
        agg_refused("-9223372036854775798", "-11", "0", 1, nfetch);
    }
    buf_free(&agg_p);
    buf_free(&agg_o);
}
END_TEST

/* A hash or list of a customer, byte for byte (a hash's fields sorted), for comparing two customers. */
static const redisReply *const *dump_el;
static int dump_cmp(const void *x, const void *y)
{
    const redisReply *a = dump_el[*(const size_t *)x], *b = dump_el[*(const size_t *)y];
    int c = memcmp(a->str, b->str, a->len < b->len ? a->len : b->len);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static void key_dump(const char *cust, char suffix, buf *out)
{
    char k[128];
    snprintf(k, sizeof(k), "%s{%s}:%c", prefix, cust, suffix);
    redisReply *r = redis_raw("TYPE %s", k);
    bool list = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "list");
    freeReplyObject(r);
    r = list ? redis_raw("LRANGE %s 0 -1", k) : redis_raw("HGETALL %s", k);
    ck_assert(r && r->type == REDIS_REPLY_ARRAY);
    size_t step = list ? 1 : 2, n = r->elements / step;
    size_t *idx = calloc(n + 1, sizeof(*idx));
    for (size_t i = 0; i < n; i++)
        idx[i] = i * step;
    dump_el = (const redisReply *const *)r->element;
    if (!list)
        qsort(idx, n, sizeof(*idx), dump_cmp);
    for (size_t i = 0; i < n; i++)
        for (size_t j = idx[i]; j < idx[i] + step; j++) {
            buf_append(out, r->element[j]->str, r->element[j]->len);
            buf_append(out, "|", 1);
        }
    free(idx);
    freeReplyObject(r);
}

/* The transaction writes exactly what the script writes: the same events
 * through both, one customer each, give the same :p, :d, :c and :l, byte for
 * byte (kept outputs and their drop after a commit, tn, hw, the ledger trimmed
 * to ledger_max, a credit's record, too-old events). */
START_TEST(tx_writes_what_the_script_writes)
{
    const char *cust[] = {"sa", "sb"};
    for (int way = 0; way < 2; way++) {
        tx_mode = way == 1;
        txev b1[] = {{cust[way], "e1", T0 + 5, 0, 1, false}, {cust[way], "e2", T0 + 2, 1, 2, false}, {cust[way], "k1", T0, 2, 3, true}};
        tx_reqs(b1, 3);
        tx_prefetch(s, tx_q, 3);
        ck_assert_msg(store_apply(s, tx_q, 3, err, sizeof(err)) == 0, "%s", err);
        ck_assert_int_eq(tx_q[2].status, STORE_APPLIED);
        ck_assert_int_eq(tx_q[2].version, 3);
        tx_free(3);
        store_committed(s, false, 3, 2); /* e1 committed: its outputs go with the next apply */
        txev b2[] = {{cust[way], "e3", T0 + 1, 3, 4, false}, {cust[way], "e4", T0 + 9, 4, 5, false}};
        tx_reqs(b2, 2);
        tx_prefetch(s, tx_q, 2);
        ck_assert_msg(store_apply(s, tx_q, 2, err, sizeof(err)) == 0, "%s", err);
        ck_assert_int_eq(tx_q[1].status, STORE_APPLIED);
        tx_free(2);
        /* raise the trim horizon behind the store's back: the next event is too old */
        RAW_OK("HSET %s{%s}:p tf %lld", prefix, cust[way], (long long)(T0 + 3));
        txev b3[] = {{cust[way], "e5", T0 + 2, 5, 6, false}, {cust[way], "e6", T0 + 20, 6, 7, false}};
        tx_reqs(b3, 2);
        tx_prefetch(s, tx_q, 2);
        ck_assert_msg(store_apply(s, tx_q, 2, err, sizeof(err)) == 0, "%s", err);
        ck_assert_int_eq(tx_q[0].status, STORE_TOO_OLD);
        ck_assert_int_eq(tx_q[1].status, STORE_NOT_APPLIED);
        tx_free(2);
        /* a credit's outputs (layout 8): in <prefix>o:t3 by its offset, not in :p */
        ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", cust[way], "ock1"), 0);
        ck_assert_int_eq(out_kept_in("t3", 'c', cust[way], "k1", 3), 1);
    }
    /* a profile past the cap of pieces (whole in p: a hashtable), a credit's long outputs */
    for (int way = 0; way < 2; way++) {
        tx_mode = way == 1;
        txev b4[] = {{cust[way], "e7", T0 + 21, 5, 8, false}, {cust[way], "k2", T0, 6, 9, true}};
        tx_reqs(b4, 2);
        buf_reset(&tx_p[1]);
        buf_puts(&tx_p[1], long_profile(STORE_PROFILE_PIECE * STORE_PROFILE_PIECES_MAX + 10, 'P'));
        buf_reset(&tx_o[1]);
        buf_puts(&tx_o[1], long_profile(90, 'O'));
        tx_prefetch(s, tx_q, 2);
        ck_assert_msg(store_apply(s, tx_q, 2, err, sizeof(err)) == 0, "%s", err);
        ck_assert_int_eq(tx_q[1].status, STORE_APPLIED);
        tx_free(2);
    }
    /* all committed: the next apply, of a shorter profile, rebuilds :p */
    store_committed(s, false, 3, 100);
    for (int way = 0; way < 2; way++) {
        tx_mode = way == 1;
        txev b5[] = {{cust[way], "e8", T0 + 22, 7, 10, false}};
        tx_reqs(b5, 1);
        buf_reset(&tx_p[0]);
        buf_puts(&tx_p[0], long_profile(130, 'Q'));
        tx_prefetch(s, tx_q, 1);
        ck_assert_msg(store_apply(s, tx_q, 1, err, sizeof(err)) == 0, "%s", err);
        ck_assert_int_eq(tx_q[0].status, STORE_APPLIED);
        tx_free(1);
        char enc[32];
        p_encoding(cust[way], enc, sizeof(enc));
        ck_assert_str_eq(enc, "listpack");
    }
    tx_mode = false;
    for (const char *k = "pdcl"; *k; k++) {
        buf a = {0}, b = {0};
        key_dump("sa", *k, &a);
        key_dump("sb", *k, &b);
        ck_assert_msg(a.len == b.len && !memcmp(a.data, b.data, a.len), ":%c differs:\nscript %.*s\ntx     %.*s", *k,
                      (int)a.len, a.data, (int)b.len, b.data);
        buf_free(&a);
        buf_free(&b);
    }
    ck_assert_int_eq(raw_int("LLEN %s{%s}:l%s", "sb", ""), 3); /* ledger_max 3 */
    /* layout 6: a touchpoint's outputs wait in <prefix>o:t3; layout 8: a credit's too */
    ck_assert_int_eq(out_kept("sb", "e2", 2), 1);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "sb", "ote2"), 0);
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "sb", "ock2"), 0);
    for (int way = 0; way < 2; way++) { /* the same fields and bytes written by both */
        redisReply *r = redis_raw("HGET %so:t3 9/c%s%bk2", prefix, cust[way], "", (size_t)1);
        ck_assert(r && r->type == REDIS_REPLY_STRING);
        ck_assert_int_eq((int)r->len, 90);
        freeReplyObject(r);
    }
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "sb", "p2"), 1);   /* 130 bytes: p p1 p2 */
    ck_assert_int_eq(raw_int("HEXISTS %s{%s}:p %s", "sb", "p3"), 0);
}
END_TEST

/* The pipeline's read-ahead: the next batch's fetch is sent behind this
 * batch's applies on the same connection. This batch's EXEC goes before the
 * next fetch's WATCH (EXEC ends every WATCH), so the next batch reads what
 * this one wrote and applies on it; a foreign write after that fetch still
 * fences the next batch. */
START_TEST(tx_read_ahead_watch_after_exec)
{
    tx_mode = true;
    txev n1[] = {{"r1", "e1", T0, 0, 1, false}, {"r2", "e1", T0, 0, 2, false}};
    tx_reqs(n1, 2);
    tx_prefetch(s, tx_q, 2);
    ck_assert_msg(store_apply_send(s, tx_q, 2, err, sizeof(err)) == 0, "%s", err);
    /* the next batch: r1 again, and r3 */
    store_profile p[2] = {{.customer_id = "r1"}, {.customer_id = "r3"}};
    store_seen d[2] = {{.customer_id = "r1", .id = "e2", .digest = (const uint8_t *)DA},
                       {.customer_id = "r3", .id = "e1", .digest = (const uint8_t *)DA}};
    ck_assert_msg(store_fetch_send(s, p, 2, d, 2, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(store_apply_recv(s, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(tx_q[0].status, STORE_APPLIED);
    ck_assert_int_eq(tx_q[1].status, STORE_APPLIED);
    tx_free(2);
    ck_assert_msg(store_fetch_recv(s, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(p[0].version, 1); /* it read what the apply before it wrote */
    txev n2[] = {{"r1", "e2", T0 + 1, 1, 3, false}, {"r3", "e1", T0, 0, 4, false}};
    tx_reqs(n2, 2);
    ck_assert_msg(store_apply(s, tx_q, 2, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(tx_q[0].status, STORE_APPLIED);
    ck_assert_int_eq(tx_q[0].version, 2);
    ck_assert_int_eq(tx_q[1].status, STORE_APPLIED);
    /* the same, with a foreign write after the read-ahead fetch: fenced */
    txev n3[] = {{"r1", "e3", T0 + 2, 2, 5, false}};
    tx_reqs(n3, 1);
    tx_prefetch(s, tx_q, 1);
    ck_assert_msg(store_apply_send(s, tx_q, 1, err, sizeof(err)) == 0, "%s", err);
    store_seen d3 = {.customer_id = "r3", .id = "e2", .digest = (const uint8_t *)DA};
    ck_assert_msg(store_fetch_send(s, &p[1], 1, &d3, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(store_apply_recv(s, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(tx_q[0].status, STORE_APPLIED);
    ck_assert_msg(store_fetch_recv(s, err, sizeof(err)) == 0, "%s", err);
    RAW_OK("HSET %s{r3}:p zombie 1", prefix);
    tx_free(1);
    txev n4[] = {{"r3", "e2", T0 + 1, 1, 6, false}};
    tx_reqs(n4, 1);
    ck_assert_msg(store_apply(s, tx_q, 1, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(tx_q[0].status, STORE_FENCED);
    ck_assert_int_eq(p_field("r3", "v"), 1);
    tx_free(1);
    for (int i = 0; i < 2; i++) {
        store_profile_free(&p[i]);
        store_seen_free(&d[i]);
    }
    store_seen_free(&d3);
}
END_TEST

Suite *store_suite(void)
{
    redis_fixture_start();
    Suite *su = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, apply_then_duplicate);
    tcase_add_test(tc, fencing_stale_version);
    tcase_add_test(tc, apply_never_trims_uncommitted_records);
    tcase_add_test(tc, dedupe_window_and_trim_horizon);
    tcase_add_test(tc, credit_older_than_trim_horizon_applied);
    tcase_add_test(tc, credit_never_moves_the_horizon);
    tcase_add_test(tc, layout_1_upgraded);
    tcase_add_test(tc, known_id_other_content_is_a_conflict);
    tcase_add_test(tc, future_event_cannot_lock_out);
    tcase_add_test(tc, apply_all_or_nothing);
    tcase_add_test(tc, apply_aggregates_checked_first);
    tcase_add_test(tc, trim_all_or_nothing);
    tcase_add_test(tc, noscript_recovery);
    tcase_add_test(tc, ledger_bounded_and_ordered);
    tcase_add_test(tc, keys_share_a_hash_slot);
    tcase_add_test(tc, layout_mismatch_refused);
    tcase_add_test(tc, evicting_redis_refused);
    tcase_add_test(tc, unreachable_redis_named);
    tcase_add_test(tc, named_acl_user_authenticates);
    tcase_add_test(tc, noperm_is_permanent);
    tcase_add_test(tc, oom_is_permanent);
    tcase_add_test(tc, readonly_replica_is_permanent);
    tcase_add_test(tc, busy_is_transient);
    tcase_add_test(tc, readonly_tools_write_nothing);
    tcase_add_test(tc, chunk_with_a_fenced_customer);
    tcase_add_test(tc, customer_call_all_or_nothing);
    tcase_add_test(tc, outputs_dropped_after_commit);
    tcase_add_test(tc, trim_folded_into_the_apply);
    tcase_add_test(tc, aggregates_summed_per_call);
    tcase_add_test(tc, ledger_entries_are_avro_decoded_for_display);
    tcase_add_test(tc, layout_2_upgraded);
    tcase_add_test(tc, layout_3_upgraded);
    tcase_add_test(tc, ledger_entries_binary);
    tcase_add_test(tc, layout_4_upgraded);
    tcase_add_test(tc, layout_5_upgraded);
    tcase_add_test(tc, no_outputs_at_rest);
    tcase_add_test(tc, profile_in_pieces);
    tcase_add_test(tc, layout_6_upgraded);
    tcase_add_test(tc, layout_7_upgraded);
    tcase_add_test(tc, apply_trims_by_whole_eighths);
    tcase_add_test(tc, oom_refused_before_dropping_outputs);
    tcase_add_test(tc, customer_with_thousands_of_events);
    tcase_add_test(tc, credit_outputs_dropped_by_the_credits_commit);
    tcase_add_test(tc, tx_foreign_write_fences_the_transaction);
    tcase_add_test(tc, tx_queue_error_writes_nothing);
    tcase_add_test(tc, tx_wrong_type_refused);
    tcase_add_test(tc, tx_writes_what_the_script_writes);
    tcase_add_test(tc, tx_read_ahead_watch_after_exec);
    tcase_add_test(tc, tx_aggregates_many_fields);
    tcase_add_test(tc, tx_aggregates_once_per_transaction);
    tcase_add_test(tc, aggregates_one_send_past_64_bits);
    tcase_add_test(tc, aggregates_transaction_past_64_bits);
    tcase_add_test(tc, aggregates_script_in_transaction_past_64_bits);
    tcase_add_test(tc, aggregates_at_the_edge_refused);
    tcase_add_test(tc, aggregates_kept_as_a_hashtable);
    suite_add_tcase(su, tc);
    /* the apply tests again, each apply after a fetch: as transactions */
    TCase *tx = tcase_create("transactions");
    tcase_add_checked_fixture(tx, setup_tx, teardown_tx);
    tcase_add_test(tx, apply_then_duplicate);
    tcase_add_test(tx, fencing_stale_version);
    tcase_add_test(tx, apply_never_trims_uncommitted_records);
    tcase_add_test(tx, dedupe_window_and_trim_horizon);
    tcase_add_test(tx, credit_older_than_trim_horizon_applied);
    tcase_add_test(tx, credit_never_moves_the_horizon);
    tcase_add_test(tx, layout_1_upgraded);
    tcase_add_test(tx, known_id_other_content_is_a_conflict);
    tcase_add_test(tx, future_event_cannot_lock_out);
    tcase_add_test(tx, apply_all_or_nothing);
    tcase_add_test(tx, ledger_bounded_and_ordered);
    tcase_add_test(tx, chunk_with_a_fenced_customer);
    tcase_add_test(tx, customer_call_all_or_nothing);
    tcase_add_test(tx, outputs_dropped_after_commit);
    tcase_add_test(tx, trim_folded_into_the_apply);
    tcase_add_test(tx, aggregates_summed_per_call);
    tcase_add_test(tx, apply_trims_by_whole_eighths);
    tcase_add_test(tx, credit_outputs_dropped_by_the_credits_commit);
    tcase_add_test(tx, layout_5_upgraded);
    tcase_add_test(tx, no_outputs_at_rest);
    tcase_add_test(tx, profile_in_pieces);
    tcase_add_test(tx, layout_6_upgraded);
    tcase_add_test(tx, layout_7_upgraded);
    suite_add_tcase(su, tx);
    /* and with the customers of each fetch spread over the lanes */
    TCase *ln = tcase_create("lanes");
    tcase_add_checked_fixture(ln, setup_lanes, teardown_tx);
    tcase_add_test(ln, apply_then_duplicate);
    tcase_add_test(ln, fencing_stale_version);
    tcase_add_test(ln, apply_never_trims_uncommitted_records);
    tcase_add_test(ln, dedupe_window_and_trim_horizon);
    tcase_add_test(ln, credit_older_than_trim_horizon_applied);
    tcase_add_test(ln, credit_never_moves_the_horizon);
    tcase_add_test(ln, layout_1_upgraded);
    tcase_add_test(ln, known_id_other_content_is_a_conflict);
    tcase_add_test(ln, future_event_cannot_lock_out);
    tcase_add_test(ln, apply_all_or_nothing);
    tcase_add_test(ln, ledger_bounded_and_ordered);
    tcase_add_test(ln, chunk_with_a_fenced_customer);
    tcase_add_test(ln, customer_call_all_or_nothing);
    tcase_add_test(ln, outputs_dropped_after_commit);
    tcase_add_test(ln, trim_folded_into_the_apply);
    tcase_add_test(ln, aggregates_summed_per_call);
    tcase_add_test(ln, apply_trims_by_whole_eighths);
    tcase_add_test(ln, credit_outputs_dropped_by_the_credits_commit);
    tcase_add_test(ln, layout_5_upgraded);
    tcase_add_test(ln, layout_7_upgraded);
    tcase_add_test(ln, no_outputs_at_rest);
    tcase_add_test(ln, tx_foreign_write_fences_the_transaction);
    tcase_add_test(ln, tx_queue_error_writes_nothing);
    tcase_add_test(ln, tx_wrong_type_refused);
    tcase_add_test(ln, tx_writes_what_the_script_writes);
    tcase_add_test(ln, tx_read_ahead_watch_after_exec);
    tcase_add_test(ln, tx_aggregates_many_fields);
    tcase_add_test(ln, tx_aggregates_once_per_transaction);
    tcase_add_test(ln, aggregates_one_send_past_64_bits);
    tcase_add_test(ln, aggregates_transaction_past_64_bits);
    tcase_add_test(ln, aggregates_script_in_transaction_past_64_bits);
    tcase_add_test(ln, aggregates_at_the_edge_refused);
    tcase_add_test(ln, tx_lanes_foreign_write_fences_its_lane);
    tcase_add_test(ln, tx_lanes_script_apply_on_its_lane);
    suite_add_tcase(su, ln);
    return su;
}
