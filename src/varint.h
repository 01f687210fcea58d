/* varint.h - Avro's long on the wire: a zigzag varint (at most 10 bytes).
 * One writer for every place that puts one: the hand-written output records
 * (codec_avro.c), the profile encoding (profile.c), ledger entries and dedupe
 * records (store.c). */
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

#endif
