/* fuzz_avro.c - libFuzzer harness: one Kafka message through the Avro
 * decoder and validation, as `fidelio run` and `fidelio consume` see it.
 * The first byte picks the schema (touchpoint, reward, stage change,
 * credit); the rest is the message. A decoded record is validated, printed as
 * a JSON line (what `consume` does; any int64 time must print) and encoded
 * back to Avro, by codec_encode_avro and by avro-c's generic writer: the same
 * bytes (rewards and stage changes are written by hand); the JSON line must
 * read back. Before that, the message is decoded by codec_decode_avro (a
 * touchpoint read by hand) and by codec_decode_avro_library (avro-c's
 * consumer): the same outcome, message and fields. Writes no file, keeps
 * nothing between inputs but the codec. */
#include "fuzz_codec.h"

/* The two Avro readers on one input: the same result, message and, when it
 * decodes, the same JSON form (or the same refusal to print one). */
static void check_readers(const uint8_t *data, size_t size)
{
    char e1[512] = "", e2[512] = "";
    if (size < 1)
        return;
    codec_schema s = (codec_schema)(data[0] % SCHEMA_COUNT);
    event_err a = codec_decode_avro(c, s, data + 1, size - 1, &rec, e1, sizeof(e1));
    event_err b = codec_decode_avro_library(c, s, data + 1, size - 1, &back, e2, sizeof(e2));
    bool same = a == b && (a == EVENT_OK || strcmp(e1, e2) == 0);
    if (same && a == EVENT_OK) {
        buf_reset(&out);
        buf_reset(&lib);
        same = codec_encode_json(s, &rec, &out) == codec_encode_json(s, &back, &lib) && out.len == lib.len &&
               memcmp(out.data, lib.data, out.len) == 0 &&
               (s != SCHEMA_TOUCHPOINT || rec.tp.attr_count == back.tp.attr_count);
        for (size_t i = 0; same && s == SCHEMA_TOUCHPOINT && i < rec.tp.attr_count; i++)
            same = !strcmp(rec.tp.attrs[i].key, back.tp.attrs[i].key) &&
                   !strcmp(rec.tp.attrs[i].value, back.tp.attrs[i].value);
    }
    if (!same) {
        fprintf(stderr, "codec_decode_avro (%d: %s) differs from avro-c's reader (%d: %s)\n", (int)a, e1, (int)b, e2);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    codec_schema s;
    check_readers(data, size);
    if (!fuzz_decode(data, size, false, &s, err, sizeof(err)))
        return 0;
    if (codec_encode_json(s, &rec, &out) == EVENT_OK &&
        codec_decode_json(s, out.data, out.len, &back, err, sizeof(err)) != EVENT_OK) {
        fprintf(stderr, "a decoded record printed as a JSON line that does not read back: %s\n%.*s\n", err,
                (int)out.len, out.data);
        abort();
    }
    (void)fuzz_check_writers(s);
    return 0;
}
