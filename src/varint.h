/* varint.h - Avro's long on the wire: a zigzag varint (at most 10 bytes).
 * One writer and one reader for every place that puts or reads one: the
 * hand-written output records, the wire check and the reader of input
 * messages (codec_avro.c), the profile encoding (profile.c), ledger entries
 * and dedupe records (store.c). */
#ifndef FIDELIO_VARINT_H
#define FIDELIO_VARINT_H

#include <stdint.h>

#define VARINT_MAX 10

/* Write v at p as a zigzag varint; the byte after it. */
static inline uint8_t *varint_put(uint8_t *p, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) {
        *p++ = (uint8_t)(z | 0x80);
        z >>= 7;
    }
    *p++ = (uint8_t)z;
    return p;
}

/* What varint_get found. */
enum { VARINT_OK = 0, VARINT_TRUNCATED = -1, VARINT_TOO_LONG = -2 };

/* Read a zigzag varint of at most max bytes (VARINT_MAX: Avro's long; 5: its
 * int) at *p, before end: VARINT_OK with *v and *p past it; VARINT_TRUNCATED
 * when end comes inside it (checked first); VARINT_TOO_LONG when its max-th
 * byte still says another follows. *v is set only on VARINT_OK. The bits of
 * a 10th byte past the 64th are dropped, as Avro's C and Java readers do. */
static inline int varint_get(const uint8_t **p, const uint8_t *end, int max, int64_t *v)
{
    uint64_t z = 0;
    for (int i = 0;; i++) {
        if (*p >= end)
            return VARINT_TRUNCATED;
        if (i >= max)
            return VARINT_TOO_LONG;
        uint8_t b = *(*p)++;
        z |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80))
            break;
    }
    *v = (int64_t)((z >> 1) ^ (0 - (z & 1)));
    return VARINT_OK;
}

#endif
