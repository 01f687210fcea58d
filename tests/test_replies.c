/* test_replies.c - the store's hiredis reply arena (src/replies.c) against
 * hiredis' own reply objects: the same commands on two connections to a real
 * redis-server, one with the arena, one as hiredis makes them; every reply
 * must be the same tree (types, integers, string bytes, elements). */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "redis_fixture.h"
#include "replies.h"

static redisContext *connect_plain(void)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectUnixWithTimeout(redis_sock, tv);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->err, 0);
    return c;
}

static redisContext *connect_arena(void)
{
    redisContext *c = connect_plain();
    ck_assert_int_eq(replies_attach(c), 0);
    return c;
}

/* Whether a and b are the same reply (as a user of redisReply reads it). */
static bool same_reply(const redisReply *a, const redisReply *b)
{
    if (!a || !b)
        return a == b;
    if (a->type != b->type) {
        fprintf(stderr, "types %d and %d\n", a->type, b->type);
        return false;
    }
    switch (a->type) {
    case REDIS_REPLY_INTEGER: return a->integer == b->integer;
    case REDIS_REPLY_NIL: return true;
    case REDIS_REPLY_ARRAY:
        if (a->elements != b->elements)
            return false;
        for (size_t i = 0; i < a->elements; i++)
            if (!same_reply(a->element[i], b->element[i]))
                return false;
        return true;
    default: /* string, status, error: the bytes and the NUL after them */
        if (a->len != b->len || memcmp(a->str, b->str, a->len))
            fprintf(stderr, "strings of %zu and %zu bytes: %.40s / %.40s\n", a->len, b->len, a->str, b->str);
        return a->len == b->len && !memcmp(a->str, b->str, a->len) && a->str[a->len] == '\0' &&
               b->str[b->len] == '\0';
    }
}

/* Fill some keys of every type the store reads. */
static void fill(const char *k, int fields, int value_len)
{
    redisContext *c = connect_plain();
    char val[8192];
    ck_assert_int_lt(value_len, (int)sizeof(val));
    freeReplyObject(redisCommand(c, "DEL %s:h %s:l %s:s", k, k, k));
    for (int i = 0; i < fields; i++) {
        memset(val, 'a' + i % 26, (size_t)value_len);
        val[value_len / 2] = '\0'; /* binary: a NUL inside */
        /* (a hash of a few short fields, a listpack: a hashtable's HGETALL order may change between two
         * reads while Redis rehashes it) */
        if (i < 8)
            freeReplyObject(redisCommand(c, "HSET %s:h f%d %b", k, i, val, (size_t)(value_len < 40 ? value_len : 40)));
        redisReply *r = redisCommand(c, "RPUSH %s:l %b", k, val, (size_t)value_len);
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
        freeReplyObject(r);
    }
    freeReplyObject(redisCommand(c, "HSET %s:h empty %b", k, "", (size_t)0));
    freeReplyObject(redisCommand(c, "SET %s:s 42", k));
    redisFree(c);
}

/* The commands both connections run, pipelined: every reply type, nested arrays, nils. */
static int append_all(redisContext *c, const char *k)
{
    int n = 0;
    redisAppendCommand(c, "HGETALL %s:h", k), n++;
    redisAppendCommand(c, "HMGET %s:h f0 nope f1 empty", k), n++;
    redisAppendCommand(c, "LLEN %s:l", k), n++;
    redisAppendCommand(c, "LRANGE %s:l 0 -1", k), n++;
    redisAppendCommand(c, "GET %s:s", k), n++;
    redisAppendCommand(c, "GET %s:nothing", k), n++;
    redisAppendCommand(c, "PING"), n++;
    redisAppendCommand(c, "HGET %s:s x", k), n++; /* WRONGTYPE: an error reply */
    redisAppendCommand(c, "MULTI"), n++;
    redisAppendCommand(c, "HLEN %s:h", k), n++; /* QUEUED */
    redisAppendCommand(c, "LRANGE %s:l 0 2", k), n++;
    redisAppendCommand(c, "EXEC"), n++; /* an array of an integer and an array */
    redisAppendCommand(c, "EVAL %s 0", "return {1, {2, 'x', {}}, false, 'y'}"), n++; /* nested, a nil inside */
    redisAppendCommand(c, "LRANGE %s:nothing 0 -1", k), n++; /* an empty array */
    return n;
}

/* Every reply of the two connections, compared one by one, each released before the next. */
static void compare_all(const char *k)
{
    redisContext *a = connect_arena(), *p = connect_plain();
    for (int round = 0; round < 50; round++) {
        int n = append_all(a, k);
        ck_assert_int_eq(append_all(p, k), n);
        for (int i = 0; i < n; i++) {
            redisReply *ra = NULL, *rp = NULL;
            ck_assert_int_eq(redisGetReply(a, (void **)&ra), REDIS_OK);
            ck_assert_int_eq(redisGetReply(p, (void **)&rp), REDIS_OK);
            ck_assert_msg(same_reply(ra, rp), "reply %d of round %d differs", i, round);
            replies_free(ra);
            freeReplyObject(rp);
        }
    }
    replies_context_free(a);
    redisFree(p);
}

START_TEST(replies_equal_hiredis)
{
    fill("small", 8, 20);
    compare_all("small");
}
END_TEST

/* Replies far bigger than a block of the arena (and than all it keeps), then small ones again. */
START_TEST(replies_bigger_than_a_block)
{
    fill("big", 600, 3000); /* LRANGE ~1.8 MB */
    compare_all("big");
    fill("small2", 3, 5);
    compare_all("small2");
}
END_TEST

/* A reply held while later ones are read (and released) keeps its contents. */
START_TEST(held_reply_survives_later_replies)
{
    fill("held", 300, 200);
    redisContext *a = connect_arena(), *p = connect_plain();
    redisReply *first = redisCommand(a, "LRANGE held:l 0 -1"), *want = redisCommand(p, "LRANGE held:l 0 -1");
    ck_assert_ptr_nonnull(first);
    ck_assert_int_eq(first->elements, 300);
    for (int i = 0; i < 200; i++) { /* each released at once: the arena would start over if first were not held */
        redisReply *r = redisCommand(a, "LRANGE held:l %d %d", i, i + 1);
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(r->elements, 2);
        replies_free(r);
    }
    ck_assert(same_reply(first, want));
    replies_free(first);
    redisReply *again = redisCommand(a, "LRANGE held:l 0 -1");
    ck_assert(same_reply(again, want));
    replies_free(again);
    freeReplyObject(want);
    replies_context_free(a);
    redisFree(p);
}
END_TEST

/* The connection goes while a reply is held: the reply stays readable, and
 * the arena goes with it (the sanitized build checks for leaks and use after free). */
START_TEST(reply_outlives_its_connection)
{
    fill("orphan", 50, 100);
    redisContext *a = connect_arena(), *p = connect_plain();
    redisReply *r = redisCommand(a, "LRANGE orphan:l 0 -1"), *want = redisCommand(p, "LRANGE orphan:l 0 -1");
    /* and a reply half read when the connection goes (two of its three elements came) */
    static const char half[] = "*3\r\n$3\r\nabc\r\n:5\r\n";
    ck_assert_int_eq(redisReaderFeed(a->reader, half, sizeof(half) - 1), REDIS_OK);
    void *none = &none;
    ck_assert_int_eq(redisReaderGetReply(a->reader, &none), REDIS_OK);
    ck_assert_ptr_null(none);
    replies_context_free(a);
    ck_assert(same_reply(r, want));
    replies_free(r);
    freeReplyObject(want);
    redisFree(p);
    replies_context_free(NULL);
    replies_free(NULL);
}
END_TEST

Suite *replies_suite(void)
{
    redis_fixture_start();
    Suite *su = suite_create("replies");
    TCase *tc = tcase_create("arena");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, replies_equal_hiredis);
    tcase_add_test(tc, replies_bigger_than_a_block);
    tcase_add_test(tc, held_reply_survives_later_replies);
    tcase_add_test(tc, reply_outlives_its_connection);
    suite_add_tcase(su, tc);
    return su;
}
