/* store.c - Redis access through hiredis: pipelined fetches and the apply script. */
#include "store.h"

#include "config.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* The apply (see store.h). Dedupe records are never trimmed here: that is
 * store_trim's job, once the batch that wrote them is committed.
 * KEYS: p d t l c aggregates. ARGV: id, expected version, profile, outputs,
 * event time, kind ('t' touchpoint, 'c' credit), ledger_max, content digest,
 * number of ledger entries, the ledger entries, then the report's (field,
 * delta) pairs, added to the namespace's aggregates only when the apply takes
 * effect (report.h). A record is "\2" + digest + outputs (layout 1: the outputs
 * alone, no digest to compare). A credit is deduplicated in :c (never
 * trimmed) and neither checked against nor moves the customer's own
 * timeline (hw, tf): it carries another customer's event time (DESIGN.md
 * invariant 6). */
static const char apply_script[] =
    "local credit = ARGV[6] == 'c'\n"
    "local rec = redis.call('HGET', credit and KEYS[5] or KEYS[2], ARGV[1])\n"
    "if not rec and credit then\n" /* layout 1 kept credits in :d, untagged */
    "  rec = redis.call('HGET', KEYS[2], ARGV[1])\n"
    "  if rec and string.byte(rec, 1) == 2 then rec = nil end\n"
    "end\n"
    "if rec then\n"
    "  if string.byte(rec, 1) ~= 2 then return {1, rec} end\n"
    "  if string.sub(rec, 2, 17) ~= ARGV[8] then return {4, ''} end\n"
    "  return {1, string.sub(rec, 18)}\n"
    "end\n"
    "local cur = redis.call('HMGET', KEYS[1], 'v', 'hw', 'tf')\n"
    "local v = tonumber(cur[1] or '0')\n"
    "if v ~= tonumber(ARGV[2]) then return {2, tostring(v)} end\n"
    "local at = tonumber(ARGV[5])\n"
    "local hw = tonumber(cur[2] or '0')\n"
    "local tf = tonumber(cur[3] or '0')\n"
    "if not credit and at < tf then return {3, string.format('%.0f', tf)} end\n"
    "if not credit and at > hw then hw = at end\n"
    /* all or nothing: everything that can fail is computed or checked before
     * the first write (Redis keeps the writes a failing script made). The
     * keys read above have their types checked by those reads; an ACL
     * denial and a wrong type are refused here; OOM is checked by Redis on
     * the first write. */
    "local hws = string.format('%.0f', hw)\n"
    "local record = '\\2' .. ARGV[8] .. ARGV[4]\n"
    "local max = tonumber(ARGV[7])\n"
    "local nl = tonumber(ARGV[9])\n"
    "local writes = {{'HSET', KEYS[1], 'v', '1', 'p', '', 'hw', '0'}}\n"
    "if credit then\n"
    "  writes[#writes + 1] = {'HSET', KEYS[5], ARGV[1], ''}\n"
    "else\n"
    "  writes[#writes + 1] = {'HSET', KEYS[2], ARGV[1], ''}\n"
    "  writes[#writes + 1] = {'ZADD', KEYS[3], '0', ARGV[1]}\n"
    "end\n"
    "if nl > 0 then\n"
    "  writes[#writes + 1] = {'RPUSH', KEYS[4], ''}\n"
    "  writes[#writes + 1] = {'LTRIM', KEYS[4], '0', '-1'}\n"
    "end\n"
    "if #ARGV >= 10 + nl then\n" /* the aggregates: HINCRBY fails on a non-integer or an overflow */
    "  writes[#writes + 1] = {'HINCRBY', KEYS[6], 'x', '1'}\n"
    "  for i = 10 + nl, #ARGV, 2 do\n"
    "    local n = redis.call('HGET', KEYS[6], ARGV[i])\n"
    "    local sum = tonumber(n or '0') and tonumber(n or '0') + tonumber(ARGV[i + 1])\n"
    "    if (n and not string.match(n, '^%-?%d+$')) or not sum or math.abs(sum) >= 9e18 then\n"
    "      return redis.error_reply('ERR fidelio apply: ' .. KEYS[6] .. ' field ' .. ARGV[i] .. "
    "' would not be an integer; nothing was written')\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local want = {ZADD = 'zset', RPUSH = 'list', HINCRBY = 'hash'}\n"
    "for _, w in ipairs(writes) do\n"
    "  if redis.acl_check_cmd and not redis.acl_check_cmd(unpack(w)) then\n"
    "    return redis.error_reply('NOPERM fidelio apply: this Redis user may not run ' .. w[1] .. ' on ' .. w[2] .. "
    "'; nothing was written')\n"
    "  end\n"
    "  local t = want[w[1]] and redis.call('TYPE', w[2]).ok\n"
    "  if t and t ~= 'none' and t ~= want[w[1]] then\n"
    "    return redis.error_reply('WRONGTYPE fidelio apply: ' .. w[2] .. ' is a ' .. t .. ', not a ' .. want[w[1]] .. "
    "'; nothing was written')\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'v', v + 1, 'p', ARGV[3], 'hw', hws)\n"
    "if credit then\n"
    "  redis.call('HSET', KEYS[5], ARGV[1], record)\n"
    "else\n"
    "  redis.call('HSET', KEYS[2], ARGV[1], record)\n"
    "  redis.call('ZADD', KEYS[3], at, ARGV[1])\n"
    "end\n"
    "if nl > 0 then\n"
    "  redis.call('RPUSH', KEYS[4], unpack(ARGV, 10, 9 + nl))\n"
    "  if max > 0 then redis.call('LTRIM', KEYS[4], -max, -1) end\n"
    "end\n"
    "for i = 10 + nl, #ARGV, 2 do redis.call('HINCRBY', KEYS[6], ARGV[i], ARGV[i + 1]) end\n"
    "return {0, tostring(v + 1)}\n";

/* The trim: drop dedupe records older than min(hw, now) - retention (at
 * most 1000 per call) and raise the trim horizon tf to that cutoff. now is
 * the caller's wall clock: an event time in the future (a forged or wrong
 * clock) cannot push tf past now - retention and lock the customer out. */
static const char trim_script[] =
    "local cur = redis.call('HMGET', KEYS[1], 'hw', 'tf')\n"
    "if not cur[1] then return 0 end\n"
    "local cutoff = math.min(tonumber(cur[1]), tonumber(ARGV[2])) - tonumber(ARGV[1])\n"
    "local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%.0f', cutoff), "
    "'LIMIT', 0, 1000)\n"
    "if #old == 0 then return 0 end\n"
    /* all or nothing, as the apply; and tf is raised before any record goes */
    "local t = redis.call('TYPE', KEYS[2]).ok\n"
    "if t ~= 'hash' and t ~= 'none' then\n"
    "  return redis.error_reply('WRONGTYPE fidelio trim: ' .. KEYS[2] .. ' is a ' .. t .. '; nothing was written')\n"
    "end\n"
    "local writes = {{'HSET', KEYS[1], 'tf', '0'}, {'HDEL', KEYS[2], 'x'}, {'ZREM', KEYS[3], 'x'}}\n"
    "for _, w in ipairs(writes) do\n"
    "  if redis.acl_check_cmd and not redis.acl_check_cmd(unpack(w)) then\n"
    "    return redis.error_reply('NOPERM fidelio trim: this Redis user may not run ' .. w[1] .. ' on ' .. w[2] .. "
    "'; nothing was written')\n"
    "  end\n"
    "end\n"
    "if cutoff > tonumber(cur[2] or '0') then\n"
    "  redis.call('HSET', KEYS[1], 'tf', string.format('%.0f', cutoff))\n"
    "end\n"
    "redis.call('HDEL', KEYS[2], unpack(old))\n"
    "redis.call('ZREM', KEYS[3], unpack(old))\n"
    "return #old\n";

struct store {
    redisContext *c;
    bool readonly;       /* a tool's connection: no script, no layout marker, no write */
    char url[512];
    char prefix[80];
    int64_t retention_ms;
    int64_t ledger_max;
    char sha[41];        /* of apply_script */
    char trim_sha[41];   /* of trim_script */
};

/* ---- connection ------------------------------------------------------------------- */

/* Whether a Redis error reply may go away by itself (retry later) rather
 * than need someone to act (permissions, memory, a replica, a script bug):
 * LOADING (restart, dataset loading), TRYAGAIN / CLUSTERDOWN / MASTERDOWN
 * (failover in progress), BUSY (another script runs; it ends or is killed).
 * Everything else, known or not, is permanent: NOPERM, NOAUTH, WRONGPASS,
 * OOM, READONLY, ERR (script errors), WRONGTYPE, NOSCRIPT after a reload... */
static bool transient_reply(const char *msg)
{
    static const char *const codes[] = {"LOADING", "TRYAGAIN", "BUSY", "MASTERDOWN", "CLUSTERDOWN", NULL};
    size_t n = strcspn(msg, " ");
    for (const char *const *c = codes; *c; c++)
        if (strlen(*c) == n && !strncmp(msg, *c, n))
            return true;
    return false;
}

/* The return code for a failed call: a lost connection or a transient reply
 * is STORE_TRANSIENT, anything else STORE_PERMANENT. */
static int reply_class(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ERROR || transient_reply(r->str ? r->str : ""))
        return STORE_TRANSIENT;
    return STORE_PERMANENT;
}

/* 0 if r is a reply and not an error; else frees r, names what failed in err
 * and returns STORE_TRANSIENT or STORE_PERMANENT. */
static int command_ok(store *s, redisReply *r, const char *what, char *err, size_t errlen)
{
    if (!r) {
        snprintf(err, errlen, "redis %s: %s", what, s->c->errstr[0] ? s->c->errstr : "connection lost");
        return STORE_TRANSIENT;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        int rc = reply_class(r);
        snprintf(err, errlen, "redis %s: %s", what, r->str);
        freeReplyObject(r);
        return rc;
    }
    return 0;
}

/* Load both scripts (again after a restart or SCRIPT FLUSH) and keep their SHAs. */
static int load_scripts(store *s, char *err, size_t errlen)
{
    const char *texts[] = {apply_script, trim_script};
    char *shas[] = {s->sha, s->trim_sha};
    for (int i = 0; i < 2; i++) {
        redisReply *r = redisCommand(s->c, "SCRIPT LOAD %s", texts[i]);
        int rc = command_ok(s, r, "SCRIPT LOAD", err, errlen);
        if (rc)
            return rc;
        snprintf(shas[i], sizeof(s->sha), "%s", r->str ? r->str : "");
        freeReplyObject(r);
    }
    return 0;
}

/* Refuse a Redis that may evict Fidelio's keys: an evicted profile, dedupe
 * record or ledger is lost points, silently. noeviction (writes fail with OOM
 * instead: a clear error) and volatile-* (they evict only keys with a TTL;
 * Fidelio never sets one) are safe; allkeys-* are not. Read with INFO, which
 * a least-privilege ACL user can be granted without CONFIG. */
static int check_eviction_policy(store *s, char *err, size_t errlen)
{
    redisReply *r = redisCommand(s->c, "INFO memory");
    if (!r) {
        snprintf(err, errlen, "redis INFO memory: %s", s->c->errstr[0] ? s->c->errstr : "connection lost");
        return -1;
    }
    if (r->type != REDIS_REPLY_STRING) {
        snprintf(err, errlen,
                 "redis INFO memory: %s (fidelio reads maxmemory_policy with INFO at start-up to make sure Redis "
                 "never evicts its keys: allow the INFO command)",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        int rc = r->type == REDIS_REPLY_ERROR ? reply_class(r) : STORE_PERMANENT; /* NOPERM: permanent */
        freeReplyObject(r);
        return rc;
    }
    const char *p = strstr(r->str, "maxmemory_policy:");
    char policy[64] = "";
    if (p)
        snprintf(policy, sizeof(policy), "%.*s", (int)strcspn(p + 17, "\r\n"), p + 17);
    freeReplyObject(r);
    if (!policy[0]) {
        snprintf(err, errlen, "redis INFO memory does not name maxmemory_policy: cannot make sure Redis never "
                              "evicts fidelio's keys");
        return -1;
    }
    if (!strcmp(policy, "noeviction") || !strncmp(policy, "volatile-", 9))
        return 0;
    snprintf(err, errlen,
             "redis maxmemory-policy is %s: Redis may evict fidelio's keys (profiles, dedupe records, ledgers) "
             "and lose points silently; set maxmemory-policy noeviction (redis.conf, or CONFIG SET "
             "maxmemory-policy noeviction) and give Redis enough maxmemory",
             policy);
    return -1;
}

/* Split the user info of a URL ("user:password@", ":password@" or
 * "password@" before the host or the socket path) into user and password.
 * Returns where the rest of the URL starts. */
static const char *split_userinfo(const char *u, char *user, size_t ulen, char *password, size_t plen)
{
    user[0] = password[0] = '\0';
    const char *at = strrchr(u, '@');
    if (!at)
        return u;
    const char *colon = memchr(u, ':', (size_t)(at - u));
    if (colon) {
        snprintf(user, ulen, "%.*s", (int)(colon - u), u);
        snprintf(password, plen, "%.*s", (int)(at - colon - 1), colon + 1);
    } else {
        snprintf(password, plen, "%.*s", (int)(at - u), u);
    }
    return at + 1;
}

/* Connect, authenticate (AUTH [user] password), select the database, load
 * the scripts and check the layout marker (a tool only reads it). */
static int connect_url(store *s, char *err, size_t errlen)
{
    struct timeval tv = {2, 0};
    char host[256] = "127.0.0.1", user[256], password[256], shown[512];
    int port = 6379, db = 0, rc;
    config_mask_url(s->url, shown, sizeof(shown));
    if (!strncmp(s->url, "unix://", 7)) {
        char path[400];
        snprintf(path, sizeof(path), "%s", split_userinfo(s->url + 7, user, sizeof(user), password, sizeof(password)));
        char *q = strchr(path, '?');
        if (q) {
            *q = '\0';
            if (!strncmp(q + 1, "db=", 3))
                db = atoi(q + 4);
        }
        s->c = redisConnectUnixWithTimeout(path, tv);
    } else {
        const char *h = split_userinfo(s->url + 8, user, sizeof(user), password, sizeof(password));
        size_t hl = strcspn(h, ":/");
        if (hl)
            snprintf(host, sizeof(host), "%.*s", (int)hl, h);
        if (h[hl] == ':')
            port = atoi(h + hl + 1);
        const char *slash = strchr(h, '/');
        if (slash && slash[1])
            db = atoi(slash + 1);
        s->c = redisConnectWithTimeout(host, port, tv);
    }
    if (!s->c || s->c->err) {
        snprintf(err, errlen, "redis %s: %s", shown, s->c ? s->c->errstr : "out of memory");
        if (s->c)
            redisFree(s->c);
        s->c = NULL;
        return STORE_TRANSIENT;
    }
    struct timeval cmd_tv = {5, 0};
    redisSetTimeout(s->c, cmd_tv);
    redisReply *r;
    if (password[0]) {
        r = user[0] ? redisCommand(s->c, "AUTH %s %s", user, password) : redisCommand(s->c, "AUTH %s", password);
        /* the reply names no secret; say which user, never the password */
        char what[800];
        snprintf(what, sizeof(what), "AUTH as %s at %s", user[0] ? user : "default", shown);
        if ((rc = command_ok(s, r, what, err, errlen)))
            return rc;
        freeReplyObject(r);
    }
    if (db) {
        r = redisCommand(s->c, "SELECT %d", db);
        if ((rc = command_ok(s, r, "SELECT", err, errlen)))
            return rc;
        freeReplyObject(r);
    }
    if ((rc = check_eviction_policy(s, err, errlen)) != 0) {
        redisFree(s->c); /* not usable: the next call connects (and checks) again */
        s->c = NULL;
        return rc; /* an evicting policy is -1 (transient): it can be fixed at run time */
    }
    if (!s->readonly) {
        if ((rc = load_scripts(s, err, errlen)))
            return rc;
        /* the layout marker: set if absent, refuse another layout */
        r = redisCommand(s->c, "SET %slayout %d NX", s->prefix, STORE_LAYOUT_VERSION);
        if ((rc = command_ok(s, r, "SET (layout marker)", err, errlen)))
            return rc;
        bool created = r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        /* a new namespace keeps its report aggregates from the first event on */
        if (created) {
            r = redisCommand(s->c, "HSETNX %saggregates complete 1", s->prefix);
            if ((rc = command_ok(s, r, "HSETNX (aggregates)", err, errlen)))
                return rc;
            freeReplyObject(r);
        }
    }
    r = redisCommand(s->c, "GET %slayout", s->prefix);
    if ((rc = command_ok(s, r, "GET (layout marker)", err, errlen)))
        return rc;
    /* layout 1 is upgraded in place by run (see store.h); a tool reads it as it is */
    if (r->type == REDIS_REPLY_STRING && !strcmp(r->str, "1")) {
        freeReplyObject(r);
        if (s->readonly)
            return 0;
        r = redisCommand(s->c, "SET %slayout %d", s->prefix, STORE_LAYOUT_VERSION);
        if ((rc = command_ok(s, r, "SET (layout marker)", err, errlen)))
            return rc;
        freeReplyObject(r);
        log_info("redis namespace '%s' upgraded from layout 1 to %d (see src/store.h)", s->prefix,
                 STORE_LAYOUT_VERSION);
        return 0;
    }
    bool absent = r->type == REDIS_REPLY_NIL && s->readonly; /* nothing written yet: nothing to read either */
    if (!absent && (r->type != REDIS_REPLY_STRING || atoi(r->str) != STORE_LAYOUT_VERSION)) {
        snprintf(err, errlen, "redis key %slayout is %s; this fidelio uses layout %d", s->prefix,
                 r->type == REDIS_REPLY_STRING ? r->str : "not a string", STORE_LAYOUT_VERSION);
        freeReplyObject(r);
        return STORE_PERMANENT;
    }
    freeReplyObject(r);
    return 0;
}

static store *open_store(const char *url, const char *prefix, bool readonly, int64_t retention_ms,
                         int64_t ledger_max, char *err, size_t errlen)
{
    store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(s->url, sizeof(s->url), "%s", url);
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    s->readonly = readonly;
    s->retention_ms = retention_ms;
    s->ledger_max = ledger_max;
    if (connect_url(s, err, errlen) != 0) {
        store_close(s);
        return NULL;
    }
    return s;
}

store *store_open(const char *url, const char *prefix, int64_t retention_ms, int64_t ledger_max, char *err,
                  size_t errlen)
{
    return open_store(url, prefix, false, retention_ms, ledger_max, err, errlen);
}

store *store_open_readonly(const char *url, const char *prefix, char *err, size_t errlen)
{
    return open_store(url, prefix, true, 0, 0, err, errlen);
}

void store_close(store *s)
{
    if (!s)
        return;
    if (s->c)
        redisFree(s->c);
    free(s);
}

int store_reconnect(store *s, char *err, size_t errlen)
{
    if (s->c)
        redisFree(s->c);
    s->c = NULL;
    return connect_url(s, err, errlen);
}

/* ---- keys ----------------------------------------------------------------------- */

static void key(const store *s, const char *customer_id, char suffix, char *out, size_t len)
{
    snprintf(out, len, "%s{%s}:%c", s->prefix, customer_id, suffix);
}

static int get_reply(store *s, redisReply **r, const char *what, char *err, size_t errlen)
{
    if (redisGetReply(s->c, (void **)r) != REDIS_OK || !*r) {
        snprintf(err, errlen, "redis %s: %s", what, s->c->errstr[0] ? s->c->errstr : "connection lost");
        return STORE_TRANSIENT;
    }
    return 0;
}

static int ensure_connected(store *s, char *err, size_t errlen)
{
    if (s->c && !s->c->err)
        return 0;
    return store_reconnect(s, err, errlen);
}

/* ---- fetch ---------------------------------------------------------------------- */

/* The digest of a request that gives none (tools, tests). */
static const uint8_t no_digest[STORE_DIGEST_LEN];

/* Whether a dedupe record carries a content digest (layout 2). */
static bool tagged(const redisReply *r) { return r->len > STORE_DIGEST_LEN && r->str[0] == 2; }

int store_fetch(store *s, store_profile *profiles, size_t nprofiles, store_seen *seen, size_t nseen, char *err,
                size_t errlen)
{
    char k[EVENT_KEY_MAX];
    int crc0 = ensure_connected(s, err, errlen);
    if (crc0)
        return crc0;
    for (size_t i = 0; i < nprofiles; i++) {
        key(s, profiles[i].customer_id, 'p', k, sizeof(k));
        const char *argv[] = {"HMGET", k, "v", "p"};
        redisAppendCommandArgv(s->c, 4, argv, NULL);
    }
    for (size_t i = 0; i < nseen; i++) {
        /* a credit's record is in :c; a namespace of layout 1 kept it in :d */
        key(s, seen[i].customer_id, seen[i].credit ? 'c' : 'd', k, sizeof(k));
        const char *argv[] = {"HGET", k, seen[i].id};
        redisAppendCommandArgv(s->c, 3, argv, NULL);
        if (seen[i].credit) {
            key(s, seen[i].customer_id, 'd', k, sizeof(k));
            redisAppendCommandArgv(s->c, 3, argv, NULL);
        }
    }
    int rc = 0;
    for (size_t i = 0; i < nprofiles; i++) {
        redisReply *r;
        const char *what = "HMGET (fetch profile)";
        if (get_reply(s, &r, what, err, errlen) != 0)
            return STORE_TRANSIENT;
        store_profile *p = &profiles[i];
        buf_reset(&p->encoding);
        if (r->type == REDIS_REPLY_ERROR) {
            int cls = reply_class(r);
            snprintf(err, errlen, "redis %s: %s", what, r->str);
            if (rc == 0 || cls == STORE_PERMANENT)
                rc = cls;
        } else {
            p->exists = r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING;
            p->version = r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING ? atoll(r->element[0]->str) : 0;
            if (p->exists && buf_append(&p->encoding, r->element[1]->str, r->element[1]->len) != 0) {
                snprintf(err, errlen, "out of memory");
                rc = STORE_PERMANENT;
            }
        }
        freeReplyObject(r);
    }
    for (size_t i = 0; i < nseen; i++) {
        store_seen *d = &seen[i];
        buf_reset(&d->recorded);
        d->seen = d->conflict = false;
        for (int n = d->credit ? 2 : 1; n > 0; n--) { /* a credit: :c, then layout 1's :d */
            redisReply *r;
            const char *what = "HGET (fetch dedupe record)";
            if (get_reply(s, &r, what, err, errlen) != 0)
                return STORE_TRANSIENT;
            if (r->type == REDIS_REPLY_ERROR) {
                int cls = reply_class(r);
                snprintf(err, errlen, "redis %s: %s", what, r->str);
                if (rc == 0 || cls == STORE_PERMANENT)
                    rc = cls;
            } else if (!d->seen && r->type == REDIS_REPLY_STRING && !(n == 1 && d->credit && tagged(r))) {
                /* (a tagged record in :d under a credit's id is a touchpoint's, not layout 1's credit) */
                d->seen = true;
                const char *out = r->str;
                size_t len = r->len;
                if (tagged(r)) { /* "\2" + digest + outputs */
                    d->conflict = memcmp(r->str + 1, d->digest ? d->digest : no_digest, STORE_DIGEST_LEN) != 0;
                    out += 1 + STORE_DIGEST_LEN;
                    len -= 1 + STORE_DIGEST_LEN;
                }
                if (!d->conflict && buf_append(&d->recorded, out, len) != 0) {
                    snprintf(err, errlen, "out of memory");
                    rc = STORE_PERMANENT;
                }
            }
            freeReplyObject(r);
        }
    }
    return rc;
}

/* ---- apply ---------------------------------------------------------------------- */

static int append_apply(store *s, store_apply_req *q)
{
    char kp[EVENT_KEY_MAX], kd[EVENT_KEY_MAX], kt[EVENT_KEY_MAX], kl[EVENT_KEY_MAX], kc[EVENT_KEY_MAX],
        ka[EVENT_KEY_MAX], ver[24], at[24], lmax[24], nl[24];
    key(s, q->customer_id, 'p', kp, sizeof(kp));
    key(s, q->customer_id, 'd', kd, sizeof(kd));
    key(s, q->customer_id, 't', kt, sizeof(kt));
    key(s, q->customer_id, 'l', kl, sizeof(kl));
    key(s, q->customer_id, 'c', kc, sizeof(kc));
    snprintf(ver, sizeof(ver), "%lld", (long long)q->expected_version);
    snprintf(at, sizeof(at), "%lld", (long long)q->occurred_at);
    snprintf(lmax, sizeof(lmax), "%lld", (long long)s->ledger_max);
    snprintf(ka, sizeof(ka), "%saggregates", s->prefix);
    snprintf(nl, sizeof(nl), "%d", q->nledger);
    enum { NFIXED = 18 };
    int argc = NFIXED + q->nledger + 2 * q->nagg;
    const char **argv = malloc((size_t)argc * sizeof(*argv));
    size_t *lens = malloc((size_t)argc * sizeof(*lens));
    if (!argv || !lens) {
        free(argv);
        free(lens);
        return -1;
    }
    const char *fixed[NFIXED] = {"EVALSHA", s->sha, "6", kp, kd, kt, kl, kc, ka, q->id, ver, q->profile->data,
                                 q->outputs->data, at, q->credit ? "c" : "t", lmax,
                                 (const char *)(q->digest ? q->digest : no_digest), nl};
    for (int i = 0; i < NFIXED; i++) {
        argv[i] = fixed[i] ? fixed[i] : "";
        lens[i] = strlen(argv[i]);
    }
    lens[11] = q->profile->len;
    lens[12] = q->outputs->len;
    lens[16] = STORE_DIGEST_LEN;
    for (int i = 0; i < q->nledger; i++) {
        argv[NFIXED + i] = q->ledger[i];
        lens[NFIXED + i] = strlen(q->ledger[i]);
    }
    for (int i = 0; i < 2 * q->nagg; i++) {
        argv[NFIXED + q->nledger + i] = q->agg[i];
        lens[NFIXED + q->nledger + i] = strlen(q->agg[i]);
    }
    int rc = redisAppendCommandArgv(s->c, argc, argv, lens) == REDIS_OK ? 0 : -1;
    free(argv);
    free(lens);
    return rc;
}

/* Pipeline n script calls: append(i) queues call i, handle(i) reads its
 * reply. A NOSCRIPT reply (cache flushed by a restart or SCRIPT FLUSH) means
 * that call did not run: the scripts are loaded again and every call is
 * repeated, which the scripts make harmless (an apply comes back DUPLICATE). */
typedef int (*script_append)(store *s, size_t i, void *ctx);
typedef int (*script_reply)(const redisReply *r, size_t i, void *ctx, char *err, size_t errlen);

static int eval_pipelined(store *s, size_t n, script_append append, script_reply handle, void *ctx,
                          const char *what, char *err, size_t errlen)
{
    int rc = ensure_connected(s, err, errlen);
    if (rc)
        return rc;
    if (s->readonly) {
        snprintf(err, errlen, "redis EVALSHA (%s): this connection is read-only", what);
        return STORE_PERMANENT;
    }
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "EVALSHA (%s)", what);
    for (int attempt = 0; attempt < 2; attempt++) {
        for (size_t i = 0; i < n; i++)
            if (append(s, i, ctx) != 0) {
                snprintf(err, errlen, "out of memory");
                return STORE_PERMANENT;
            }
        int noscript = 0;
        rc = 0;
        for (size_t i = 0; i < n; i++) {
            redisReply *r;
            if (get_reply(s, &r, cmd, err, errlen) != 0)
                return STORE_TRANSIENT;
            if (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOSCRIPT", 8))
                noscript = 1;
            else if (r->type == REDIS_REPLY_ERROR) {
                int cls = reply_class(r);
                /* keep the first error's text, and permanent over transient */
                if (rc == 0 || (cls == STORE_PERMANENT && rc != STORE_PERMANENT)) {
                    snprintf(err, errlen, "redis %s: %s", cmd, r->str);
                    rc = cls;
                }
            } else if (handle(r, i, ctx, err, errlen) != 0)
                rc = STORE_PERMANENT;
            freeReplyObject(r);
        }
        if (rc != 0 || !noscript)
            return rc;
        if ((rc = load_scripts(s, err, errlen)))
            return rc;
    }
    snprintf(err, errlen, "redis %s: NOSCRIPT: the script is missing again right after SCRIPT LOAD", cmd);
    return STORE_PERMANENT;
}

static int apply_append(store *s, size_t i, void *ctx) { return append_apply(s, &((store_apply_req *)ctx)[i]); }

static int apply_reply(const redisReply *r, size_t i, void *ctx, char *err, size_t errlen)
{
    store_apply_req *q = &((store_apply_req *)ctx)[i];
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        snprintf(err, errlen, "redis apply: unexpected reply type %d", r->type);
        return -1;
    }
    q->status = (store_status)r->element[0]->integer;
    const redisReply *v = r->element[1];
    if (q->status != STORE_DUPLICATE) {
        q->version = v->str ? atoll(v->str) : 0;
        return 0;
    }
    buf_reset(&q->recorded);
    if (buf_append(&q->recorded, v->str, v->len) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int store_apply(store *s, store_apply_req *reqs, size_t n, char *err, size_t errlen)
{
    return eval_pipelined(s, n, apply_append, apply_reply, reqs, "apply", err, errlen);
}

typedef struct trim_ctx {
    const char *const *ids;
    char retention[24];
    char now[24];
    long long trimmed;
} trim_ctx;

static int trim_append(store *s, size_t i, void *vctx)
{
    trim_ctx *t = vctx;
    char kp[EVENT_KEY_MAX], kd[EVENT_KEY_MAX], kt[EVENT_KEY_MAX];
    key(s, t->ids[i], 'p', kp, sizeof(kp));
    key(s, t->ids[i], 'd', kd, sizeof(kd));
    key(s, t->ids[i], 't', kt, sizeof(kt));
    const char *argv[] = {"EVALSHA", s->trim_sha, "3", kp, kd, kt, t->retention, t->now};
    return redisAppendCommandArgv(s->c, 8, argv, NULL) == REDIS_OK ? 0 : -1;
}

static int trim_reply(const redisReply *r, size_t i, void *vctx, char *err, size_t errlen)
{
    (void)i;
    if (r->type != REDIS_REPLY_INTEGER) {
        snprintf(err, errlen, "redis trim: unexpected reply type %d", r->type);
        return -1;
    }
    ((trim_ctx *)vctx)->trimmed += r->integer;
    return 0;
}

int store_trim(store *s, const char *const *customer_ids, size_t n, int64_t now_ms, long long *trimmed, char *err,
               size_t errlen)
{
    trim_ctx t = {.ids = customer_ids};
    snprintf(t.retention, sizeof(t.retention), "%lld", (long long)s->retention_ms);
    snprintf(t.now, sizeof(t.now), "%lld", (long long)now_ms);
    int rc = eval_pipelined(s, n, trim_append, trim_reply, &t, "trim", err, errlen);
    *trimmed = t.trimmed;
    return rc;
}

/* ---- tools ---------------------------------------------------------------------- */

int store_ledger(store *s, const char *customer_id, long n, buf *out, char *err, size_t errlen)
{
    char k[EVENT_KEY_MAX];
    int crc0 = ensure_connected(s, err, errlen);
    if (crc0)
        return crc0;
    key(s, customer_id, 'l', k, sizeof(k));
    redisReply *r = redisCommand(s->c, "LRANGE %s %ld -1", k, -n);
    int crc = command_ok(s, r, "LRANGE", err, errlen);
    if (crc)
        return crc;
    int rc = 0;
    for (size_t i = 0; i < r->elements; i++)
        rc |= buf_append(out, r->element[i]->str, r->element[i]->len) || buf_puts(out, "\n");
    freeReplyObject(r);
    return rc;
}

int store_customers(store *s, buf *out, char *err, size_t errlen)
{
    char pattern[160];
    int crc0 = ensure_connected(s, err, errlen);
    if (crc0)
        return crc0;
    snprintf(pattern, sizeof(pattern), "%s{*}:p", s->prefix);
    char cursor[32] = "0";
    size_t plen = strlen(s->prefix) + 1;
    do {
        redisReply *r = redisCommand(s->c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        int crc = command_ok(s, r, "SCAN", err, errlen);
        if (crc)
            return crc;
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const redisReply *k = r->element[1]->element[i];
            if (k->len > plen + 3 && /* prefix { id }:p */
                (buf_append(out, k->str + plen, k->len - plen - 3) || buf_puts(out, "\n"))) {
                freeReplyObject(r);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

/* ---- the namespace's program registry (see store.h) ---------------------------- */

int store_registry_read(store *s, store_registry *reg, char *err, size_t errlen)
{
    memset(reg, 0, sizeof(*reg));
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    redisReply *r = redisCommand(s->c, "HMGET %sprogram version digest", s->prefix);
    if (command_ok(s, r, "HMGET program", err, errlen))
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING) {
        reg->has_program = true;
        snprintf(reg->version, sizeof(reg->version), "%s", r->element[0]->str);
        if (r->element[1]->type == REDIS_REPLY_STRING)
            snprintf(reg->digest, sizeof(reg->digest), "%s", r->element[1]->str);
    }
    freeReplyObject(r);
    r = redisCommand(s->c, "SMEMBERS %sstages", s->prefix);
    if (command_ok(s, r, "SMEMBERS stages", err, errlen))
        return -1;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING)
            continue;
        if (buf_append(&reg->stages, r->element[i]->str, r->element[i]->len) || buf_append(&reg->stages, "", 1)) {
            freeReplyObject(r);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        reg->nstages++;
    }
    freeReplyObject(r);
    return 0;
}

int store_registry_write(store *s, const char *version, const char *digest, const buf *stage_refs, char *err,
                         size_t errlen)
{
    char k[120];
    if (s->readonly) {
        snprintf(err, errlen, "store opened read-only");
        return -1;
    }
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < stage_refs->len; i++)
        n += stage_refs->data[i] == '\n';
    const char **argv = malloc((n + 2) * sizeof(*argv));
    size_t *lens = malloc((n + 2) * sizeof(*lens));
    if (!argv || !lens) {
        free(argv);
        free(lens);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(k, sizeof(k), "%sstages", s->prefix);
    argv[0] = "SADD";
    lens[0] = 4;
    argv[1] = k;
    lens[1] = strlen(k);
    size_t argc = 2;
    for (const char *p = stage_refs->data, *end = p ? p + stage_refs->len : NULL; p && p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        argv[argc] = p;
        lens[argc++] = (size_t)(nl - p);
        p = nl + 1;
    }
    int rc = 0;
    if (argc > 2) {
        redisReply *r = redisCommandArgv(s->c, (int)argc, argv, lens);
        rc = command_ok(s, r, "SADD stages", err, errlen);
        if (rc == 0)
            freeReplyObject(r);
    }
    free(argv);
    free(lens);
    if (rc != 0)
        return -1;
    redisReply *r = redisCommand(s->c, "HSET %sprogram version %s digest %s", s->prefix, version, digest);
    if (command_ok(s, r, "HSET program", err, errlen))
        return -1;
    freeReplyObject(r);
    return 0;
}

void store_registry_free(store_registry *reg) { buf_free(&reg->stages); }

int store_aggregates_incomplete(store *s, char *err, size_t errlen)
{
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    redisReply *r = redisCommand(s->c, "HSET %saggregates complete 0", s->prefix);
    if (command_ok(s, r, "HSET aggregates", err, errlen))
        return -1;
    freeReplyObject(r);
    return 0;
}

int store_ping(store *s, char *err, size_t errlen)
{
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    redisReply *r = redisCommand(s->c, "PING");
    if (command_ok(s, r, "PING", err, errlen))
        return -1; /* a lost connection is made again on the next call */
    freeReplyObject(r);
    return 0;
}

int store_aggregates(store *s, buf *out, size_t *n, char *err, size_t errlen)
{
    *n = 0;
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    redisReply *r = redisCommand(s->c, "HGETALL %saggregates", s->prefix);
    if (command_ok(s, r, "HGETALL aggregates", err, errlen))
        return -1;
    int rc = 0;
    for (size_t i = 0; i + 1 < r->elements && !rc; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        rc = buf_append(out, f->str, f->len) || buf_append(out, "", 1) || buf_append(out, v->str, v->len) ||
             buf_append(out, "", 1);
        (*n)++;
    }
    freeReplyObject(r);
    if (rc)
        snprintf(err, errlen, "out of memory");
    return rc ? -1 : 0;
}

int store_aggregates_add(store *s, const char *const *pairs, size_t n, char *err, size_t errlen)
{
    char k[EVENT_KEY_MAX];
    if (n == 0)
        return 0;
    if (s->readonly) {
        snprintf(err, errlen, "store opened read-only");
        return -1;
    }
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    snprintf(k, sizeof(k), "%saggregates", s->prefix);
    for (size_t i = 0; i < n; i++) {
        const char *argv[] = {"HINCRBY", k, pairs[2 * i], pairs[2 * i + 1]};
        redisAppendCommandArgv(s->c, 4, argv, NULL);
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *r;
        if (get_reply(s, &r, "HINCRBY (aggregates)", err, errlen) != 0)
            return STORE_TRANSIENT;
        if (r->type == REDIS_REPLY_ERROR) {
            int cls = reply_class(r);
            snprintf(err, errlen, "redis HINCRBY (aggregates): %s", r->str);
            if (rc == 0 || cls == STORE_PERMANENT)
                rc = cls;
        }
        freeReplyObject(r);
    }
    return rc;
}

int store_scan_profiles(store *s, store_profile_fn fn, void *opaque, long long *n, char *err, size_t errlen)
{
    char pattern[160], cursor[32] = "0";
    *n = 0;
    if (ensure_connected(s, err, errlen) != 0)
        return -1;
    snprintf(pattern, sizeof(pattern), "%s{*}:p", s->prefix);
    do {
        redisReply *r = redisCommand(s->c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        int crc = command_ok(s, r, "SCAN", err, errlen);
        if (crc)
            return crc;
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const char *argv[] = {"HGET", keys->element[i]->str, "p"};
            size_t lens[] = {4, keys->element[i]->len, 1};
            redisAppendCommandArgv(s->c, 3, argv, lens);
        }
        int rc = 0;
        for (size_t i = 0; i < keys->elements; i++) {
            redisReply *v;
            if (get_reply(s, &v, "HGET (profile)", err, errlen) != 0) {
                freeReplyObject(r);
                return STORE_TRANSIENT;
            }
            if (rc == 0 && v->type == REDIS_REPLY_STRING) {
                (*n)++;
                rc = fn(opaque, v->str, v->len);
            }
            freeReplyObject(v);
        }
        freeReplyObject(r);
        if (rc != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

int store_namespace_keys(store *s, bool wipe, long long *n, char *err, size_t errlen)
{
    char pattern[200], cursor[32] = "0";
    size_t k = 0;
    *n = 0;
    if (wipe && s->readonly) {
        snprintf(err, errlen, "a read-only store cannot wipe");
        return STORE_PERMANENT;
    }
    if (ensure_connected(s, err, errlen) != 0)
        return STORE_TRANSIENT;
    for (const char *p = s->prefix; *p && k + 3 < sizeof(pattern); p++) { /* the prefix, glob characters escaped */
        if (strchr("*?[]\\", *p))
            pattern[k++] = '\\';
        pattern[k++] = *p;
    }
    pattern[k++] = '*';
    pattern[k] = '\0';
    do {
        redisReply *r = redisCommand(s->c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        int crc = command_ok(s, r, "SCAN", err, errlen);
        if (crc)
            return crc;
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        *n += (long long)keys->elements;
        for (size_t i = 0; wipe && i < keys->elements; i++) {
            redisReply *d = redisCommand(s->c, "UNLINK %b", keys->element[i]->str, keys->element[i]->len);
            int drc = command_ok(s, d, "UNLINK", err, errlen);
            if (drc) {
                freeReplyObject(r);
                return drc;
            }
            freeReplyObject(d);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

int store_meta_get(store *s, const char *name, buf *out, bool *found, char *err, size_t errlen)
{
    *found = false;
    buf_reset(out);
    if (ensure_connected(s, err, errlen) != 0)
        return STORE_TRANSIENT;
    redisReply *r = redisCommand(s->c, "GET %s%s", s->prefix, name);
    int rc = command_ok(s, r, "GET", err, errlen);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_STRING) {
        *found = true;
        if (buf_append(out, r->str, r->len) != 0 || buf_append(out, "", 1) != 0) {
            freeReplyObject(r);
            snprintf(err, errlen, "out of memory");
            return STORE_PERMANENT;
        }
        out->len--; /* NUL-terminated, not counted */
    }
    freeReplyObject(r);
    return 0;
}

int store_meta_set(store *s, const char *name, const char *value, size_t len, const char *const *agg_pairs, size_t n,
                   char *err, size_t errlen)
{
    if (ensure_connected(s, err, errlen) != 0)
        return STORE_TRANSIENT;
    redisAppendCommand(s->c, "MULTI");
    for (size_t i = 0; i < n; i++)
        redisAppendCommand(s->c, "HINCRBY %saggregates %s %s", s->prefix, agg_pairs[2 * i], agg_pairs[2 * i + 1]);
    redisAppendCommand(s->c, "SET %s%s %b", s->prefix, name, value, len);
    redisAppendCommand(s->c, "EXEC");
    int rc = 0;
    for (size_t i = 0; i < n + 3; i++) { /* read every reply, keep the first error */
        redisReply *r;
        if (get_reply(s, &r, "MULTI/EXEC (progress)", err, errlen) != 0)
            return STORE_TRANSIENT;
        if (rc == 0 && r->type == REDIS_REPLY_ERROR) {
            rc = reply_class(r);
            snprintf(err, errlen, "redis MULTI/EXEC (progress): %s", r->str);
        } else if (rc == 0 && i == n + 2) { /* EXEC: nil if aborted, else the replies */
            for (size_t k = 0; r->type == REDIS_REPLY_ARRAY && k < r->elements; k++)
                if (r->element[k]->type == REDIS_REPLY_ERROR && rc == 0) {
                    rc = reply_class(r->element[k]);
                    snprintf(err, errlen, "redis MULTI/EXEC (progress): %s", r->element[k]->str);
                }
            if (r->type != REDIS_REPLY_ARRAY && rc == 0) {
                rc = STORE_TRANSIENT;
                snprintf(err, errlen, "redis MULTI/EXEC (progress): the transaction was aborted");
            }
        }
        freeReplyObject(r);
    }
    return rc;
}

void store_profile_free(store_profile *p) { buf_free(&p->encoding); }
void store_seen_free(store_seen *s) { buf_free(&s->recorded); }
void store_apply_req_free(store_apply_req *r) { buf_free(&r->recorded); }
