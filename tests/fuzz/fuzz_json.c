/* fuzz_json.c - libFuzzer harness: one JSON line through the JSON-lines
 * decoder (what `produce`, `simulate` and `encode` read). The first byte
 * picks the schema; the rest is the line. A decoded record is validated,
 * encoded to Avro (the same bytes as avro-c's generic writer), which must
 * decode again, and printed back as JSON. Writes
 * no file, keeps nothing between inputs but the codec. */
#include "fuzz_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    codec_schema s;
    if (!fuzz_decode(data, size, true, &s, err, sizeof(err)))
        return 0;
    if (fuzz_check_writers(s) && codec_decode_avro(c, s, out.data, out.len, &back, err, sizeof(err)) != EVENT_OK) {
        fprintf(stderr, "a JSON line encoded to Avro that does not decode: %s\n", err);
        abort();
    }
    buf_reset(&out);
    (void)codec_encode_json(s, &rec, &out);
    return 0;
}
