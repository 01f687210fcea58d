/* fuzz_json.c - libFuzzer harness: one JSON line through the JSON-lines
 * decoder (what `produce`, `simulate` and `encode` read). The first byte
 * picks the schema; the rest is the line. A decoded record is validated,
 * encoded to Avro, which must decode again, and printed back as JSON. Writes
 * no file, keeps nothing between inputs but the codec. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "event.h"

static codec *c;
static codec_record rec, back;
static buf out;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* At exit, before LeakSanitizer looks: what the harness keeps between inputs. */
static void cleanup(void)
{
    codec_record_free(&rec);
    codec_record_free(&back);
    buf_free(&out);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    if (size < 1)
        return 0;
    codec_schema s = (codec_schema)(data[0] % SCHEMA_COUNT);
    if (codec_decode_json(s, (const char *)data + 1, size - 1, &rec, err, sizeof(err)) != EVENT_OK)
        return 0;
    if (s == SCHEMA_TOUCHPOINT) {
        event_limits lim = {.max_clock_skew_ms = 86400000};
        (void)touchpoint_validate(&rec.tp, &lim, 1767225600000, err, sizeof(err));
    }
    buf_reset(&out);
    if (codec_encode_avro(c, s, &rec, &out, err, sizeof(err)) == EVENT_OK &&
        codec_decode_avro(c, s, out.data, out.len, &back, err, sizeof(err)) != EVENT_OK) {
        fprintf(stderr, "a JSON line encoded to Avro that does not decode: %s\n", err);
        abort();
    }
    buf_reset(&out);
    (void)codec_encode_json(s, &rec, &out);
    return 0;
}
