/* fuzz_codec.h - what the two codec harnesses (fuzz_avro.c, fuzz_json.c)
 * share: the codec and records kept between inputs, their release at exit,
 * and the first step of every input: the first byte picks the schema, the
 * rest is decoded (Avro or a JSON line) and a touchpoint is validated as
 * `fidelio run` would. Included once, by one harness per executable. */
#ifndef FIDELIO_FUZZ_CODEC_H
#define FIDELIO_FUZZ_CODEC_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "event.h"

static codec *c;
static codec_record rec, back;
static buf out, lib;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* At exit, before LeakSanitizer looks: what the harness keeps between inputs. */
static void cleanup(void)
{
    codec_record_free(&rec);
    codec_record_free(&back);
    buf_free(&out);
    buf_free(&lib);
    codec_free(c);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    if (!(c = codec_new(1 << 20, err, sizeof(err)))) {
        fprintf(stderr, "codec_new: %s\n", err);
        abort();
    }
    atexit(cleanup);
    return 0;
}

/* Decode the input into rec (JSON line when json, else Avro) and validate a
 * touchpoint; *s is the schema the first byte picked. false when it does not
 * decode (a rejected input, not a finding); out is reset either way. */
static bool fuzz_decode(const uint8_t *data, size_t size, bool json, codec_schema *s, char *err, size_t errlen)
{
    if (size < 1)
        return false;
    *s = (codec_schema)(data[0] % SCHEMA_COUNT);
    event_err st = json ? codec_decode_json(*s, (const char *)data + 1, size - 1, &rec, err, errlen)
                           : codec_decode_avro(c, *s, data + 1, size - 1, &rec, err, errlen);
    if (st != EVENT_OK)
        return false;
    if (*s == SCHEMA_TOUCHPOINT) {
        event_limits lim = {.max_clock_skew_ms = 86400000};
        (void)touchpoint_validate(&rec.tp, &lim, 1767225600000, err, errlen);
    }
    buf_reset(&out);
    return true;
}

/* The hand-written output writers (rewards, stage changes) against avro-c's
 * generic writer on the record decoded: the same outcome and the same bytes.
 * Leaves the encoding in out; true when it encoded. */
static bool fuzz_check_writers(codec_schema s)
{
    char e1[512], e2[512];
    event_err a = codec_encode_avro(c, s, &rec, &out, e1, sizeof(e1));
    event_err b = codec_encode_avro_library(c, s, &rec, &lib, e2, sizeof(e2));
    if ((a == EVENT_OK) != (b == EVENT_OK) ||
        (a == EVENT_OK && (out.len != lib.len || memcmp(out.data, lib.data, lib.len) != 0))) {
        fprintf(stderr, "codec_encode_avro (%d, %zu bytes: %s) differs from avro-c's writer (%d, %zu bytes: %s)\n",
                (int)a, out.len, a == EVENT_OK ? "" : e1, (int)b, lib.len, b == EVENT_OK ? "" : e2);
        abort();
    }
    return a == EVENT_OK;
}

#endif
