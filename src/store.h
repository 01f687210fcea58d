/* store.h - Fidelio's state in Redis: atomic, idempotent, fenced applies.
 *
 * REDIS LAYOUT, version 2 (STORE_LAYOUT_VERSION). Every key of a customer
 * carries the customer id as a hash tag, so all of them live in one hash
 * slot (Redis Cluster) and one Lua script may touch them atomically:
 *
 *   <prefix>{<customer>}:p   HASH   v      version: +1 on every apply (the fencing token)
 *                                   p      profile encoding (profile.h, versioned)
 *                                   hw     high-water event time of the customer's own
 *                                          touchpoints (epoch ms); credits never move it
 *                                   tf     trim horizon: dedupe records of touchpoints
 *                                          before it may have been removed
 *   <prefix>{<customer>}:d   HASH   <event id> -> dedupe record: "\x02", the content
 *                                   digest of the touchpoint (16 bytes, digest.h),
 *                                   then the outputs recorded when it was applied
 *   <prefix>{<customer>}:t   ZSET   the same ids scored by event time, to trim :d
 *   <prefix>{<customer>}:c   HASH   <credit id> -> dedupe record of the credit (as in :d);
 *                                   never trimmed (see CREDITS)
 *   <prefix>{<customer>}:l   LIST   ledger: one JSON RewardEvent per balance change,
 *                                   oldest first, the newest pipeline.ledger_max kept
 *   <prefix>layout           STRING "2": written on first use by `run`; "1" is upgraded (below);
 *                                   another value stops fidelio. Read-only tools
 *                                   (store_open_readonly) only read it and write nothing, so
 *                                   they also work on a read-only replica.
 *   <prefix>program          HASH   version, digest: the rule program the namespace last ran
 *                                   (written by `fidelio run` at start-up; read by `check
 *                                   --namespace`). Same version with another digest: a warning
 *   <prefix>stages           SET    every "ladder:stage" a program run on this namespace could
 *                                   have stored in a profile (each run adds its stages and
 *                                   their renamed_from names; nothing is ever removed). A
 *                                   program that can read one of them back neither as a stage
 *                                   nor through renamed_from, and does not list it in
 *                                   retired_stages, is refused by `run` and `check --namespace`.
 *                                   A namespace without <prefix>program (its profiles predate
 *                                   the registry) has its profiles scanned for their stages once
 *   <prefix>aggregates       HASH   the report's counters (fields in report.h), incremented by
 *                                   the apply script in the same atomic apply; "complete" is
 *                                   set when the namespace is created. (Not slot-bound: with
 *                                   Redis Cluster it must become one hash per slot.)
 *
 * No key has a TTL. Redis must never evict them: store_open (and every
 * reconnection) reads maxmemory_policy with INFO memory and refuses any
 * allkeys-* policy; noeviction (the one to use) and volatile-* are accepted.
 *
 * THE APPLY (one Lua script, EVALSHA with NOSCRIPT recovery), all or nothing:
 *   1. the id is in :d (a credit's: in :c)
 *      with the same content digest        -> DUPLICATE, returns the recorded outputs
 *      with another digest                 -> CONFLICT (a reused id: nothing written)
 *   2. :p's v differs from the version the
 *      caller computed from                -> FENCED (another instance wrote since)
 *   3. a touchpoint older than tf          -> TOO_OLD (its dedupe record may be gone)
 *   4. otherwise: write :p (v+1, profile, hw), record the outputs in :d and
 *      :t (a credit: in :c only), append the ledger, add the report's deltas
 *      to <prefix>aggregates.
 * Redis keeps the writes of a script that fails halfway, so everything that
 * can fail is checked before the first write: key types (the reads check
 * theirs; TYPE for :t, :l and aggregates), that each aggregate field stays an
 * integer, and on Redis >= 7 redis.acl_check_cmd for every write (HSET
 * :p/:d/:c, ZADD :t, RPUSH/LTRIM :l, HINCRBY aggregates). A failure is an
 * error reply "NOPERM|WRONGTYPE|ERR fidelio apply: ...; nothing was written"
 * (store_apply returns -1 with it); OOM is refused by Redis at the first
 * write, before anything changed.
 * Commands the scripts run: HGET, HMGET, TYPE, HSET, ZADD, RPUSH, LTRIM,
 * HINCRBY, ZRANGEBYSCORE, HDEL, ZREM (and the connection: INFO, SCRIPT LOAD,
 * EVALSHA).
 *
 * THE TRIM (a second script, store_trim), run by the pipeline only after the
 * batch's offsets are committed, for the customers of that batch: drop the
 * dedupe records of touchpoints older than min(hw, now) -
 * pipeline.dedupe_retention_ms (event time; now is the wall clock, so one
 * event dated in the future cannot push tf ahead of real time and make every
 * later event of the customer "too old") and raise tf to that cutoff. A
 * record is therefore never removed before its event's outputs were delivered
 * and its offset committed: a batch redelivered after a crash always finds its
 * records, however much event time it spans (a backfill). All or nothing like
 * the apply (TYPE of :d, ACL of HSET :p, HDEL :d, ZREM :t checked first), and
 * tf is raised before any record is removed.
 *
 * Past the retention: a touchpoint older than tf is refused (TOO_OLD -> the
 * DLQ, error older_than_dedupe_window) rather than risk applying it twice;
 * above tf no record was ever removed, so a missing record means a new event.
 * Raising the retention later does not bring trimmed records back (tf stays).
 * Consequence: replaying a topic into the namespace that already holds it
 * re-emits the recorded outputs of events within the window and sends older
 * ones to the DLQ; replay history into a fresh redis.key_prefix instead.
 *
 * CREDITS (a referrer's reward, DESIGN.md invariant 6) carry another
 * customer's event time, so they stay outside the customer's own timeline:
 * never refused for their event time, never moving hw (hence never the trim
 * horizon of the customer's own events). Their dedupe records live in :c and
 * are not trimmed: a duplicate credit can come whenever its source re-emits
 * it (the source's own redelivery or replay, however late in the referrer's
 * time), and the referrer cannot see the source's horizon. Cost: one record
 * (its outputs, ~300 bytes) per credit received, for the life of the profile.
 *
 * LAYOUT 1 namespaces (records without a digest, credits in :d) are upgraded
 * in place on the first start of this version: the marker becomes "2" (a
 * layout-1 fidelio then refuses the namespace, which it could not read).
 * Their records stay: one without the "\x02" tag has no digest to compare and
 * counts as a redelivery, as under layout 1; a credit is looked up in :c,
 * then among layout 1's untagged records in :d (those are still trimmed by
 * event time, as they were under layout 1). New records are written in the
 * layout-2 form. */
#ifndef FIDELIO_STORE_H
#define FIDELIO_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "event.h"

/* Room for a key: prefix, braces, customer id, suffix. */
#define EVENT_KEY_MAX (64 + EVENT_ID_MAX + 8)

#define STORE_LAYOUT_VERSION 2
/* Bytes of a content digest (digest.h). */
#define STORE_DIGEST_LEN 16

/* What the namespace's registry says (see <prefix>program and <prefix>stages). */
typedef struct store_registry {
    bool has_program;          /* false before the first `run` that records one */
    char version[EVENT_ID_MAX + 1];  /* program version the namespace last ran */
    char digest[EVENT_ID_MAX + 1];   /* and its content digest */
    buf stages;                /* "ladder:stage" entries, each NUL-terminated; owned */
    size_t nstages;
} store_registry;

typedef struct store store;

/* What a failed call returns (0 is success). A transient failure may go
 * away by itself: the connection was lost, or Redis answered LOADING,
 * TRYAGAIN, BUSY, MASTERDOWN or CLUSTERDOWN; retry later. A permanent one
 * needs someone to act: NOPERM (ACL), NOAUTH/WRONGPASS, OOM (maxmemory),
 * READONLY (a replica), a script error, NOSCRIPT right after SCRIPT LOAD,
 * an unknown error, a wrong layout; retrying cannot help. err names the
 * command and quotes Redis' reply; it never holds a password. */
#define STORE_TRANSIENT (-1)
#define STORE_PERMANENT (-2)

typedef enum store_status {
    STORE_APPLIED,
    STORE_DUPLICATE,
    STORE_FENCED,
    STORE_TOO_OLD,
    STORE_CONFLICT,   /* the id is known with another content digest: not a redelivery */
} store_status;

/* One customer's stored state, as fetched. */
typedef struct store_profile {
    const char *customer_id;  /* borrowed */
    bool exists;
    int64_t version;          /* 0 when the customer has none yet */
    buf encoding;             /* profile encoding; owned */
} store_profile;

/* One dedupe lookup. */
typedef struct store_seen {
    const char *customer_id;  /* borrowed */
    const char *id;           /* event or credit id; borrowed */
    bool credit;              /* id is a credit id (looked up in :c) */
    const uint8_t *digest;    /* content digest of the event, STORE_DIGEST_LEN bytes; borrowed */
    bool seen;                /* the id is known */
    bool conflict;            /* ... with another digest (recorded stays empty) */
    buf recorded;             /* recorded outputs when seen; owned */
} store_seen;

/* One apply. Inputs are borrowed; results filled by store_apply. */
typedef struct store_apply_req {
    const char *customer_id;
    const char *id;               /* dedupe id */
    bool credit;                  /* a credit: deduplicated in :c, outside the customer's timeline */
    const uint8_t *digest;        /* content digest, STORE_DIGEST_LEN bytes, kept with the record */
    int64_t occurred_at;
    int64_t expected_version;     /* the version the new profile was computed from */
    const buf *profile;           /* new profile encoding */
    const buf *outputs;           /* outputs to record */
    const char *const *ledger;    /* JSON ledger entries */
    int nledger;
    const char *const *agg;       /* report aggregates: nagg (field, delta) pairs, added when applied */
    int nagg;
    store_status status;          /* result */
    int64_t version;              /* new version (APPLIED) or the current one (FENCED) */
    buf recorded;                 /* recorded outputs (DUPLICATE); owned */
} store_apply_req;

/* Connect to url (redis://[[user]:password@]host[:port][/db] or
 * unix://[[user]:password@]/path[?db=N]; with a user, AUTH user password),
 * check the layout version and load the apply script. NULL with err on failure. */
store *store_open(const char *url, const char *prefix, int64_t retention_ms, int64_t ledger_max, char *err,
                  size_t errlen);
/* The same for a tool that only reads (profile, ledger, report, the
 * dashboard): loads no script and writes nothing, not even the layout marker
 * (a namespace without one reads as empty, another layout is an error);
 * works on a read-only replica. store_apply and store_trim refuse it. */
store *store_open_readonly(const char *url, const char *prefix, char *err, size_t errlen);
void store_close(store *s);
/* Drop the connection and make a new one (after an error). 0, or
 * STORE_TRANSIENT / STORE_PERMANENT with err. */
int store_reconnect(store *s, char *err, size_t errlen);

/* Fetch profiles and dedupe records in one pipelined round trip.
 * Returns 0, or STORE_TRANSIENT / STORE_PERMANENT with err (nothing is half-done). */
int store_fetch(store *s, store_profile *profiles, size_t nprofiles, store_seen *seen, size_t nseen, char *err,
                size_t errlen);
/* Run the apply script for each request, pipelined, in order.
 * Returns 0 (each req has its status), or STORE_TRANSIENT / STORE_PERMANENT
 * with err (some may have applied: a retry finds them as DUPLICATE). */
int store_apply(store *s, store_apply_req *reqs, size_t n, char *err, size_t errlen);

/* Trim the dedupe records of these customers (see THE TRIM); now_ms is the
 * wall clock (epoch ms), the cap of the trim horizon. Call only after
 * the offsets of every event they were written for are committed. *trimmed
 * counts the records removed. Returns 0 or -1 with err (nothing lost: the
 * records stay until a later trim). */
int store_trim(store *s, const char *const *customer_ids, size_t n, int64_t now_ms, long long *trimmed, char *err,
               size_t errlen);

/* The newest n ledger entries of a customer (JSON lines), oldest first. */
int store_ledger(store *s, const char *customer_id, long n, buf *out, char *err, size_t errlen);

/* Every customer id with a profile (SCAN; for tools and tests). Each id is
 * appended to out followed by '\n'. */
int store_customers(store *s, buf *out, char *err, size_t errlen);

/* Read the namespace's program registry (no write). 0 or -1 with err. */
int store_registry_read(store *s, store_registry *reg, char *err, size_t errlen);
/* Record that this program runs on the namespace: <prefix>program := version,
 * digest; add every "ladder:stage" of stage_refs ('\n'-terminated lines) to
 * <prefix>stages. Only `fidelio run` calls it, at start-up. 0 or -1 with err. */
int store_registry_write(store *s, const char *version, const char *digest, const buf *stage_refs, char *err,
                         size_t errlen);
void store_registry_free(store_registry *reg);

/* Mark the aggregates as no longer complete (pipeline.report_aggregates=0:
 * applies stop counting, so the report must say its figures are partial). */
int store_aggregates_incomplete(store *s, char *err, size_t errlen);

/* Whether Redis answers (reconnecting if needed). 0 or -1 with err. */
int store_ping(store *s, char *err, size_t errlen);

/* The aggregates hash as "field\0value\0" pairs appended to out; *n pairs. */
int store_aggregates(store *s, buf *out, size_t *n, char *err, size_t errlen);
/* Add n (field, delta) pairs to the aggregates hash (one pipelined round
 * trip of HINCRBY), for counts kept outside the apply (the DLQ's). */
int store_aggregates_add(store *s, const char *const *pairs, size_t n, char *err, size_t errlen);
/* Called with each stored profile encoding; non-zero stops the scan. */
typedef int (*store_profile_fn)(void *opaque, const char *data, size_t len);
/* Every profile of the namespace (SCAN, pipelined HGET; reads only), *n
 * counting them. For a namespace whose registry predates its profiles. */
int store_scan_profiles(store *s, store_profile_fn fn, void *opaque, long long *n, char *err, size_t errlen);

/* Count the keys under the namespace's prefix (SCAN MATCH <prefix>*: every
 * key the namespace holds, whatever its layout); with wipe, also UNLINK each
 * batch of them as it goes (`fidelio replay --wipe`; refused on a read-only
 * store). *n: keys found. 0, or a store error code with err. */
int store_namespace_keys(store *s, bool wipe, long long *n, char *err, size_t errlen);
/* <prefix><name>, a plain string key of the namespace's own (a replay's progress):
 * read into out (*found false when absent), or written in one SET. */
int store_meta_get(store *s, const char *name, buf *out, bool *found, char *err, size_t errlen);
/* The SET is one MULTI/EXEC with HINCRBY of the n field/count pairs of
 * <prefix>aggregates (agg_pairs; n may be 0). */
int store_meta_set(store *s, const char *name, const char *value, size_t len, const char *const *agg_pairs, size_t n,
                   char *err, size_t errlen);
void store_profile_free(store_profile *p);
void store_seen_free(store_seen *s);
void store_apply_req_free(store_apply_req *r);

#endif
