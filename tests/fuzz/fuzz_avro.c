/* fuzz_avro.c - libFuzzer harness: one Kafka message through the Avro
 * decoder and validation, as `fidelio run` and `fidelio consume` see it.
 * The first byte picks the schema (touchpoint, reward, stage change,
 * credit); the rest is the message. A decoded record is validated, printed as
 * a JSON line (what `consume` does; any int64 time must print) and encoded
 * back to Avro, by codec_encode_avro and by avro-c's generic writer: the same
 * bytes (rewards and stage changes are written by hand); the JSON line must
 * read back. Writes no file, keeps nothing
 * between inputs but the codec. */
#include "fuzz_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    codec_schema s;
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
