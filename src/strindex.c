/* strindex.c - a string-keyed index over an array the caller owns (strindex.h). */
#include "strindex.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* The slot of k: its entry's, or the free one where probing stops (nslot > 0). */
static size_t probe(const strindex *x, const char *k, strindex_key key, const void *ctx)
{
    size_t m = x->nslot - 1, h = str_hash(k) & m;
    while (x->slot[h] && strcmp(key(ctx, (size_t)x->slot[h] - 1), k) != 0)
        h = (h + 1) & m;
    return h;
}

long strindex_find(const strindex *x, const char *k, strindex_key key, const void *ctx)
{
    if (!x->nslot)
        return -1;
    int e = x->slot[probe(x, k, key, ctx)];
    return e ? e - 1 : -1;
}

/* Room for n entries, the slots at most half full: 0 or -1 (out of memory,
 * or more entries than an int numbers). Every key is in one slot only, so
 * moving the slots keeps each key's entry. */
static int reserve(strindex *x, size_t n, strindex_key key, const void *ctx)
{
    if (n > INT_MAX)
        return -1;
    if (2 * n <= x->nslot)
        return 0;
    size_t ns = x->nslot ? 2 * x->nslot : 16;
    while (2 * n > ns)
        ns *= 2;
    int *sl = calloc(ns, sizeof(*sl));
    if (!sl)
        return -1;
    for (size_t i = 0; i < x->nslot; i++)
        if (x->slot[i]) {
            size_t h = str_hash(key(ctx, (size_t)x->slot[i] - 1)) & (ns - 1);
            while (sl[h])
                h = (h + 1) & (ns - 1);
            sl[h] = x->slot[i];
        }
    free(x->slot);
    x->slot = sl;
    x->nslot = ns;
    return 0;
}

int *strindex_slot(strindex *x, const char *k, size_t n, strindex_key key, const void *ctx)
{
    if (reserve(x, n ? n : 1, key, ctx) != 0)
        return NULL;
    return &x->slot[probe(x, k, key, ctx)];
}

void strindex_reset(strindex *x)
{
    if (x->slot)
        memset(x->slot, 0, x->nslot * sizeof(*x->slot));
}

void strindex_free(strindex *x)
{
    free(x->slot);
    x->slot = NULL;
    x->nslot = 0;
}
