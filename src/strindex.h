/* strindex.h - a string-keyed index over an array the caller owns.
 *
 * The caller keeps its entries in an array of its own (a key as a pointer,
 * an offset into an arena, ...); the index keeps, by hash of each entry's
 * key, the entry's position + 1 (open addressing, linear probing, at most
 * half full). The index reads entry i's key through a callback, so it never
 * copies a key. The store's aggregates tables (a send's totals, a
 * transaction's deltas, the fields fetched) are such indexes. */
#ifndef FIDELIO_STRINDEX_H
#define FIDELIO_STRINDEX_H

#include <stddef.h>
#include <stdint.h>

/* The key of entry i of the caller's array ctx (NUL-terminated). */
typedef const char *(*strindex_key)(const void *ctx, size_t i);

typedef struct strindex {
    int *slot;           /* entry + 1 by hash of its key, 0: free */
    size_t nslot;        /* a power of two; 0 until the first strindex_slot */
} strindex;

/* FNV-1a of the NUL-terminated s. */
static inline uint32_t str_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* The entry whose key is k, or -1. */
long strindex_find(const strindex *x, const char *k, strindex_key key, const void *ctx);
/* The slot of key k in an index with room for n entries (rehashed first if
 * it would be more than half full): where k's entry is (*slot = its position
 * + 1), or the free slot a new entry of k takes (*slot == 0; the caller
 * stores position + 1 there). The pointer is good until the next call that
 * may rehash. NULL when out of memory (the index unchanged). */
int *strindex_slot(strindex *x, const char *k, size_t n, strindex_key key, const void *ctx);
/* Forget every entry, keep the memory. */
void strindex_reset(strindex *x);
/* Release the memory; the index may be used again afterwards. */
void strindex_free(strindex *x);

#endif
