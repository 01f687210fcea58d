/* replies.c - hiredis reply objects from a per-connection arena (see replies.h). */
#include "replies.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of a chunk (a reply bigger than that gets a chunk of its size). */
#define CHUNK_BYTES (64 * 1024)
/* Chunks beyond the first are kept for the next replies up to this many bytes in all. */
#define KEEP_BYTES (1024 * 1024)

/* One block of the arena. */
typedef struct chunk {
    struct chunk *next; /* the next block (used after this one), or NULL */
    size_t size;        /* bytes of data */
    _Alignas(16) char data[];
} chunk;

/* A connection's arena. */
typedef struct arena {
    chunk *head;        /* the first block, kept while the arena lives; owned with the rest of the list */
    chunk *cur;         /* the block objects are carved from */
    size_t used;        /* bytes of cur handed out */
    size_t roots;       /* replies created (their first object) and not released yet */
    bool orphan;        /* its connection is gone: free it with the last reply */
} arena;

/* What precedes each object: the arena it came from (replies_free finds it there). */
typedef struct header {
    arena *a;
    void *pad;          /* keeps the reply 16-byte aligned */
} header;

/* n bytes from a, 16-byte aligned; NULL when out of memory. */
static void *take(arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (a->used + n > a->cur->size) {
        chunk *c = a->cur->next;
        if (!c || c->size < n) { /* a new block after cur (a too-small next one stays behind it) */
            size_t size = n > CHUNK_BYTES ? n : CHUNK_BYTES;
            chunk *nc = malloc(sizeof(chunk) + size);
            if (!nc)
                return NULL;
            nc->size = size;
            nc->next = a->cur->next;
            a->cur->next = nc;
            c = nc;
        }
        a->cur = c;
        a->used = 0;
    }
    void *p = a->cur->data + a->used;
    a->used += n;
    return p;
}

static void arena_free(arena *a)
{
    for (chunk *c = a->head; c;) {
        chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

/* No reply held: start over from the first block (blocks past KEEP_BYTES go). */
static void arena_reset(arena *a)
{
    size_t kept = a->head->size;
    for (chunk *c = a->head; c->next;) {
        if (kept + c->next->size > KEEP_BYTES) {
            chunk *gone = c->next;
            c->next = gone->next;
            free(gone);
            continue;
        }
        kept += c->next->size;
        c = c->next;
    }
    a->cur = a->head;
    a->used = 0;
}

/* A new reply object of task's type (zeroed), linked into its parent; extra
 * bytes after it for its string or elements (*tail). */
static redisReply *new_object(const redisReadTask *task, int type, size_t extra, void **tail)
{
    arena *a = task->privdata;
    header *h = take(a, sizeof(header) + sizeof(redisReply) + extra);
    if (!h)
        return NULL;
    h->a = a;
    redisReply *r = (redisReply *)(h + 1);
    memset(r, 0, sizeof(*r));
    r->type = type;
    if (tail)
        *tail = r + 1;
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    } else {
        a->roots++;
    }
    return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    void *tail;
    redisReply *r = new_object(task, task->type, len + 1, &tail);
    if (!r)
        return NULL;
    r->str = tail;
    memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;
    return r;
}

static void *create_array(const redisReadTask *task, int elements)
{
    void *tail;
    size_t n = elements > 0 ? (size_t)elements : 0;
    redisReply *r = new_object(task, REDIS_REPLY_ARRAY, n * sizeof(redisReply *), &tail);
    if (!r)
        return NULL;
    if (n) {
        r->element = tail;
        memset(r->element, 0, n * sizeof(redisReply *));
    }
    r->elements = n;
    return r;
}

static void *create_integer(const redisReadTask *task, long long value)
{
    redisReply *r = new_object(task, REDIS_REPLY_INTEGER, 0, NULL);
    if (r)
        r->integer = value;
    return r;
}

static void *create_nil(const redisReadTask *task) { return new_object(task, REDIS_REPLY_NIL, 0, NULL); }

void replies_free(void *reply)
{
    if (!reply)
        return;
    arena *a = ((header *)reply - 1)->a;
    if (--a->roots > 0)
        return;
    if (a->orphan)
        arena_free(a);
    else
        arena_reset(a);
}

static redisReplyObjectFunctions functions = {create_string, create_array, create_integer, create_nil, replies_free};

int replies_attach(redisContext *c)
{
    arena *a = calloc(1, sizeof(*a));
    chunk *first = malloc(sizeof(chunk) + CHUNK_BYTES);
    if (!a || !first) {
        free(a);
        free(first);
        return -1;
    }
    first->next = NULL;
    first->size = CHUNK_BYTES;
    a->head = a->cur = first;
    c->reader->fn = &functions;
    c->reader->privdata = a;
    return 0;
}

void replies_context_free(redisContext *c)
{
    if (!c)
        return;
    arena *a = c->reader && c->reader->fn == &functions ? c->reader->privdata : NULL;
    redisFree(c); /* (a reply half read goes back through replies_free) */
    if (!a)
        return;
    if (a->roots == 0)
        arena_free(a);
    else
        a->orphan = true;
}
