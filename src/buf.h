/* buf.h - a growable byte buffer used by the encoders.
 *
 * The buffer owns its memory; buf_free() releases it. Every append returns 0
 * on success and -1 when memory could not be had (the buffer is unchanged). */
#ifndef FIDELIO_BUF_H
#define FIDELIO_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct buf {
    char *data;   /* bytes, always NUL-terminated when cap > 0 */
    size_t len;   /* bytes in use, not counting the terminator */
    size_t cap;   /* bytes allocated */
} buf;

/* Make room for at least extra more bytes plus a terminator. */
int buf_reserve(buf *b, size_t extra);
/* Append len bytes. Inline: the encoders append a few bytes at a time, and
 * the call was a visible share of the CPU per event. */
static inline int buf_append(buf *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap && buf_reserve(b, len) != 0)
        return -1;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}
/* Append a NUL-terminated string. */
int buf_puts(buf *b, const char *s);
/* An array of elem-byte items at p, *cap allocated, grown to twice as many
 * (first when empty): returns the new array (*cap updated), or NULL with p
 * and *cap unchanged when memory could not be had. */
void *grow_array(void *p, size_t *cap, size_t elem, size_t first);
/* The decimal digits of v written into the end of tmp (24 bytes, no NUL);
 * returns the first. For the hot paths that format numbers without printf
 * (the store's RESP commands, the report's deltas). */
static inline char *fmt_ll(char tmp[24], long long v)
{
    char *p = tmp + 24;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    return p;
}
/* Append printf-formatted text. */
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Forget the contents, keep the memory. */
void buf_reset(buf *b);
/* Release the memory; the buffer may be used again afterwards. */
void buf_free(buf *b);

/* Copy src into dst of cap bytes, cutting it short if needed; always NUL-terminated. */
void str_copy(char *dst, size_t cap, const char *src);

#endif
