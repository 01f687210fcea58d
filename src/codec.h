/* codec.h - Avro binary and JSON lines <-> the structs of event.h.
 *
 * One codec per thread: it holds the parsed schemas, reusable avro values and
 * a reader/writer, so the hot path does no schema lookups and no per-message
 * allocation beyond what avro-c needs for strings. */
#ifndef FIDELIO_CODEC_H
#define FIDELIO_CODEC_H

#include <stdio.h>

#include "buf.h"
#include "event.h"

typedef enum codec_schema { SCHEMA_TOUCHPOINT, SCHEMA_REWARD, SCHEMA_STAGE_CHANGE, SCHEMA_CREDIT, SCHEMA_COUNT } codec_schema;

typedef struct codec codec;

/* Any of the project's records, tagged by schema. */
typedef struct codec_record {
    codec_schema schema;
    touchpoint tp;          /* when schema == SCHEMA_TOUCHPOINT */
    reward_event reward;    /* when schema == SCHEMA_REWARD */
    stage_change_event stage; /* when schema == SCHEMA_STAGE_CHANGE */
    credit_event credit;    /* when schema == SCHEMA_CREDIT */
} codec_record;

/* Name used on the command line ("touchpoint", "reward", "stage-change", "credit"). */
const char *codec_schema_name(codec_schema s);
int codec_schema_parse(const char *s);
/* The schema's JSON text (embedded from schemas/). */
const char *codec_schema_json(codec_schema s);

/* Create a codec rejecting messages over max_message_bytes. Returns NULL and
 * fills err on failure; the caller owns the codec. */
codec *codec_new(size_t max_message_bytes, char *err, size_t errlen);
void codec_free(codec *c);

/* Decode one Avro-encoded message into rec->schema's struct. The message is
 * checked (size, every declared length, indexes, trailing bytes) before it is
 * read: a touchpoint (every input) by hand, the others by avro-c. Does not run
 * touchpoint_validate. */
event_err codec_decode_avro(codec *c, codec_schema s, const void *data, size_t len, codec_record *rec,
                            char *err, size_t errlen);
/* The same with a touchpoint read through avro-c's consumer API: the
 * reference the hand-written reader is tested against (tests, fuzzing). */
event_err codec_decode_avro_library(codec *c, codec_schema s, const void *data, size_t len, codec_record *rec,
                                    char *err, size_t errlen);
/* Encode rec's struct for schema s, replacing out's contents. Rewards and
 * stage changes (every output) are written by hand, the others through
 * avro-c's generic value. */
event_err codec_encode_avro(codec *c, codec_schema s, const codec_record *rec, buf *out, char *err,
                            size_t errlen);
/* The same through avro-c's generic value for every schema: the reference the
 * hand-written output writers are tested against (tests, fuzzing). */
event_err codec_encode_avro_library(codec *c, codec_schema s, const codec_record *rec, buf *out, char *err,
                                    size_t errlen);

/* Parse one JSON line (plain object with the Avro field names; occurred_at as
 * epoch ms or ISO-8601). Unknown fields are errors. */
event_err codec_decode_json(codec_schema s, const char *text, size_t len, codec_record *rec, char *err,
                            size_t errlen);
/* Append rec as one compact JSON object (no newline) to out; occurred_at is ISO-8601. */
event_err codec_encode_json(codec_schema s, const codec_record *rec, buf *out);

/* Read the next non-blank line of a JSON-lines file into *line (getline
 * storage), without its line ending. Returns its length, or -1 at the end
 * of the input (ferror tells a read error). *lineno counts every line. */
long codec_read_jsonl(FILE *in, char **line, size_t *cap, long long *lineno);

/* The Kafka message key of a record: its customer_id. */
const char *codec_record_key(const codec_record *rec);

void codec_record_free(codec_record *rec);

/* Exposed for tests and fuzzing: check that data is a well-formed encoding of
 * schema s without decoding it. */
event_err codec_check_wire(codec *c, codec_schema s, const void *data, size_t len, char *err, size_t errlen);

#endif
