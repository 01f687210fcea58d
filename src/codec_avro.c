/* codec_avro.c - Avro binary <-> event structs through avro-c's value API. */
#include "codec.h"
#include "varint.h"

#include <avro.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded.h"

/* Field positions; codec_new checks them against the parsed schemas so an
 * edit of schemas/ that reorders fields fails loudly at start-up. */
enum { TP_EVENT_ID, TP_CUSTOMER_ID, TP_TYPE, TP_CHANNEL, TP_OCCURRED_AT, TP_PAYLOAD, TP_ATTRIBUTES, TP_NFIELDS };
static const char *const tp_fields[] = {"event_id", "customer_id", "type", "channel", "occurred_at", "payload", "attributes"};
enum { RW_REWARD_ID, RW_CUSTOMER_ID, RW_KIND, RW_RULE_ID, RW_POINTS, RW_BALANCE_AFTER, RW_SOURCE_EVENT_ID,
       RW_OCCURRED_AT, RW_REASON, RW_PROGRAM_VERSION, RW_PROGRAM_DIGEST, RW_NFIELDS };
static const char *const rw_fields[] = {"reward_id", "customer_id", "kind", "rule_id", "points", "balance_after",
                                        "source_event_id", "occurred_at", "reason", "program_version",
                                        "program_digest"};
enum { SC_CHANGE_ID, SC_CUSTOMER_ID, SC_LADDER, SC_FROM_STAGE, SC_TO_STAGE, SC_SOURCE_EVENT_ID, SC_OCCURRED_AT,
       SC_PROGRAM_VERSION, SC_PROGRAM_DIGEST, SC_NFIELDS };
static const char *const sc_fields[] = {"change_id", "customer_id", "ladder", "from_stage", "to_stage",
                                        "source_event_id", "occurred_at", "program_version", "program_digest"};

enum { CR_CREDIT_ID, CR_CUSTOMER_ID, CR_SOURCE_CUSTOMER_ID, CR_RULE_ID, CR_POINTS, CR_REFERRAL, CR_SOURCE_EVENT_ID,
       CR_OCCURRED_AT, CR_REASON, CR_PROGRAM_VERSION, CR_NAMESPACE, CR_SIGNATURE, CR_NFIELDS };
static const char *const cr_fields[] = {"credit_id", "customer_id", "source_customer_id", "rule_id", "points",
                                        "referral", "source_event_id", "occurred_at", "reason", "program_version",
                                        "namespace", "signature"};

/* Union branch of each touchpoint type's payload (0 = null). */
static const int payload_branch[EVENT_TYPE_COUNT] = {
    [EVENT_SIGNUP] = 1, [EVENT_PROFILE_UPDATE] = 2, [EVENT_NEWSLETTER_OPT_IN] = 0, [EVENT_APP_USE] = 3,
    [EVENT_SOCIAL_SHARE] = 4, [EVENT_REFERRAL] = 5, [EVENT_PURCHASE] = 6, [EVENT_REFUND] = 7,
    [EVENT_REDEMPTION] = 8,
};

struct codec {
    size_t max_message_bytes;          /* larger messages are rejected unread */
    avro_schema_t schema[SCHEMA_COUNT];
    avro_value_iface_t *iface[SCHEMA_COUNT];
    avro_value_t value[SCHEMA_COUNT];  /* reused for every message */
    int have_value[SCHEMA_COUNT];
    avro_reader_t reader;              /* memory reader, re-pointed per message */
    struct tp_node *tp;                /* the touchpoint's consumers (decode_touchpoint); tree[SCHEMA_TOUCHPOINT] */
    struct tp_node *tree[SCHEMA_COUNT]; /* each schema's tree (the wire check); owned, but for the touchpoint's */
    uint8_t *attr_nul;                 /* decode_touchpoint's scratch: per attribute, a NUL in its value */
    size_t attr_nul_cap;
    avro_writer_t writer;              /* memory writer, re-pointed per message */
};

typedef enum tp_target { T_NONE, T_STR, T_LONG, T_INT, T_DOUBLE, T_TYPE, T_PAYLOAD, T_ATTR_VALUE } tp_target;

/* A node of a schema's tree, links resolved: what the wire check walks for
 * every schema, and for the touchpoint also its consumers (avro-c's
 * avro_consume_binary, or tp_read) bound to what each value fills. */
typedef struct tp_node {
    avro_consumer_t base;   /* first: avro-c hands the node back as its consumer; base.schema is its type */
    struct tp_node **kids;  /* record fields, union branches, a map's or array's values; owned */
    size_t nkids;
    tp_target target;       /* what its value fills (T_NONE: read and dropped) */
    size_t off, cap;        /* where in the touchpoint, and a string's room */
    long has_off;           /* a string under a [null, string] union: its has_ flag, else -1 */
    const char *field;      /* its name in messages */
    bool customer;          /* the customer_id: its own error codes */
    const char *name;       /* a record's field: its name (the wire check's messages); else NULL */
    int64_t size;           /* an enum's symbols, a fixed's bytes */
} tp_node;

static tp_node *tp_node_new(avro_schema_t s, int depth);
static tp_node *tp_consumer_new(avro_schema_t s);
static void tp_node_free(tp_node *n);

static const char *const schema_names[SCHEMA_COUNT] = {"touchpoint", "reward", "stage-change", "credit"};

const char *codec_schema_name(codec_schema s) { return (unsigned)s < SCHEMA_COUNT ? schema_names[s] : "?"; }

int codec_schema_parse(const char *s)
{
    for (int i = 0; i < SCHEMA_COUNT; i++)
        if (strcmp(s, schema_names[i]) == 0)
            return i;
    return -1;
}

const char *codec_schema_json(codec_schema s)
{
    switch (s) {
    case SCHEMA_TOUCHPOINT: return embedded_touchpoint_event_avsc;
    case SCHEMA_REWARD: return embedded_reward_event_avsc;
    case SCHEMA_STAGE_CHANGE: return embedded_stage_change_event_avsc;
    case SCHEMA_CREDIT: return embedded_credit_event_avsc;
    default: return NULL;
    }
}

static int check_fields(avro_schema_t s, const char *const *names, int n, char *err, size_t errlen)
{
    if ((int)avro_schema_record_size(s) != n) {
        snprintf(err, errlen, "schema %s has %zu fields, the codec knows %d", avro_schema_name(s),
                 avro_schema_record_size(s), n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char *got = avro_schema_record_field_name(s, i);
        if (!got || strcmp(got, names[i]) != 0) {
            snprintf(err, errlen, "schema %s field %d is '%s', the codec expects '%s'", avro_schema_name(s), i,
                     got ? got : "?", names[i]);
            return -1;
        }
    }
    return 0;
}

/* The wire types the output writers (write_reward, write_stage) put, field
 * by field: codec_new checks them against the parsed schemas, so an edit of
 * schemas/ that changes a field's type fails at start-up, not on the wire. */
enum { W_STRING, W_LONG, W_ENUM, W_NULL_OR_STRING };
static const int rw_wire[RW_NFIELDS] = {W_STRING, W_STRING, W_ENUM,   W_STRING, W_LONG,  W_LONG,
                                        W_STRING, W_LONG,   W_STRING, W_STRING, W_STRING};
static const int sc_wire[SC_NFIELDS] = {W_STRING, W_STRING, W_STRING, W_NULL_OR_STRING, W_STRING,
                                        W_STRING, W_LONG,   W_STRING, W_STRING};

static int check_wire_types(avro_schema_t s, const int *wire, int n, char *err, size_t errlen)
{
    for (int i = 0; i < n; i++) {
        avro_schema_t f = avro_schema_record_field_get_by_index(s, i);
        bool ok = false;
        switch (wire[i]) {
        case W_STRING: ok = is_avro_string(f); break;
        case W_LONG: ok = is_avro_int64(f); break;
        case W_ENUM: ok = is_avro_enum(f); break;
        case W_NULL_OR_STRING:
            ok = is_avro_union(f) && avro_schema_union_size(f) == 2 &&
                 is_avro_null(avro_schema_union_branch(f, 0)) && is_avro_string(avro_schema_union_branch(f, 1));
            break;
        }
        if (!ok) {
            snprintf(err, errlen, "schema %s field %d (%s) is not of the type the codec writes",
                     avro_schema_name(s), i, avro_schema_record_field_name(s, i));
            return -1;
        }
    }
    return 0;
}

codec *codec_new(size_t max_message_bytes, char *err, size_t errlen)
{
    codec *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->max_message_bytes = max_message_bytes;
    for (int i = 0; i < SCHEMA_COUNT; i++) {
        const char *json = codec_schema_json(i);
        if (avro_schema_from_json_length(json, strlen(json), &c->schema[i]) != 0) {
            snprintf(err, errlen, "schema %s: %s", schema_names[i], avro_strerror());
            goto err;
        }
        c->iface[i] = avro_generic_class_from_schema(c->schema[i]);
        if (!c->iface[i] || avro_generic_value_new(c->iface[i], &c->value[i]) != 0) {
            snprintf(err, errlen, "schema %s: %s", schema_names[i], avro_strerror());
            goto err;
        }
        c->have_value[i] = 1;
    }
    if (check_fields(c->schema[SCHEMA_TOUCHPOINT], tp_fields, TP_NFIELDS, err, errlen) ||
        check_fields(c->schema[SCHEMA_REWARD], rw_fields, RW_NFIELDS, err, errlen) ||
        check_fields(c->schema[SCHEMA_STAGE_CHANGE], sc_fields, SC_NFIELDS, err, errlen) ||
        check_fields(c->schema[SCHEMA_CREDIT], cr_fields, CR_NFIELDS, err, errlen) ||
        check_wire_types(c->schema[SCHEMA_REWARD], rw_wire, RW_NFIELDS, err, errlen) ||
        check_wire_types(c->schema[SCHEMA_STAGE_CHANGE], sc_wire, SC_NFIELDS, err, errlen))
        goto err;
    if (!(c->tp = tp_consumer_new(c->schema[SCHEMA_TOUCHPOINT]))) {
        snprintf(err, errlen, "schema touchpoint: not the layout the codec decodes (or out of memory)");
        goto err;
    }
    for (int i = 0; i < SCHEMA_COUNT; i++)
        if (!(c->tree[i] = i == SCHEMA_TOUCHPOINT ? c->tp : tp_node_new(c->schema[i], 0))) {
            snprintf(err, errlen, "schema %s: a type the wire check does not know (or out of memory)", schema_names[i]);
            goto err;
        }
    c->reader = avro_reader_memory("", 0);
    c->writer = avro_writer_memory("", 0);
    if (!c->reader || !c->writer) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    return c;
err:
    codec_free(c);
    return NULL;
}

void codec_free(codec *c)
{
    if (!c)
        return;
    for (int i = 0; i < SCHEMA_COUNT; i++) {
        if (c->have_value[i])
            avro_value_decref(&c->value[i]);
        if (c->iface[i])
            avro_value_iface_decref(c->iface[i]);
        if (c->schema[i])
            avro_schema_decref(c->schema[i]);
    }
    for (int i = 0; i < SCHEMA_COUNT; i++)
        if (c->tree[i] != c->tp)
            tp_node_free(c->tree[i]);
    tp_node_free(c->tp);
    free(c->attr_nul);
    if (c->reader)
        avro_reader_free(c->reader);
    if (c->writer)
        avro_writer_free(c->writer);
    free(c);
}

/* ---- wire check ---------------------------------------------------------- */

typedef struct wire {
    const uint8_t *p, *end;
    const char *field;    /* record field being walked, for messages */
    size_t map_items;     /* map entries on the wire: fewer after decoding means a repeated key */
    char *err;
    size_t errlen;
} wire;

/* An Avro int (maxbytes 5) or long (10) at w->p: EVENT_OK with *out, or the error with its reason. */
static event_err wire_varint(wire *w, int64_t *out, int maxbytes)
{
    switch (varint_get(&w->p, w->end, maxbytes, out)) {
    case VARINT_OK:
        return EVENT_OK;
    case VARINT_TRUNCATED:
        snprintf(w->err, w->errlen, "message ends inside a number");
        return EVENT_ERR_TRUNCATED;
    default:
        snprintf(w->err, w->errlen, "number longer than %d bytes", maxbytes);
        return EVENT_ERR_MALFORMED;
    }
}

static event_err wire_skip(wire *w, int64_t n, const char *what)
{
    if (n < 0) {
        snprintf(w->err, w->errlen, "negative %s length %lld", what, (long long)n);
        return EVENT_ERR_MALFORMED;
    }
    if (n > w->end - w->p) {
        snprintf(w->err, w->errlen, "%s declares %lld bytes, %td remain in the message", what, (long long)n,
                 w->end - w->p);
        return EVENT_ERR_TRUNCATED;
    }
    w->p += n;
    return EVENT_OK;
}

static event_err wire_walk(wire *w, const tp_node *node, int depth)
{
    event_err e;
    int64_t n;
    if (depth > 32) {
        snprintf(w->err, w->errlen, "schema nests too deep");
        return EVENT_ERR_MALFORMED;
    }
    avro_schema_t s = node->base.schema;
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return EVENT_OK;
    case AVRO_BOOLEAN:
        if (w->p >= w->end) {
            snprintf(w->err, w->errlen, "message ends inside a boolean");
            return EVENT_ERR_TRUNCATED;
        }
        if (*w->p > 1) {
            snprintf(w->err, w->errlen, "boolean byte %u", *w->p);
            return EVENT_ERR_MALFORMED;
        }
        w->p++;
        return EVENT_OK;
    case AVRO_INT32:
        return wire_varint(w, &n, 5);
    case AVRO_INT64:
        return wire_varint(w, &n, 10);
    case AVRO_FLOAT:
        return wire_skip(w, 4, "float");
    case AVRO_DOUBLE:
        return wire_skip(w, 8, "double");
    case AVRO_STRING:
    case AVRO_BYTES:
        if ((e = wire_varint(w, &n, 10)) != EVENT_OK)
            return e;
        return wire_skip(w, n, "string");
    case AVRO_FIXED:
        return wire_skip(w, node->size, "fixed");
    case AVRO_ENUM:
        if ((e = wire_varint(w, &n, 5)) != EVENT_OK)
            return e;
        if (n < 0 || n >= node->size) {
            snprintf(w->err, w->errlen, "enum %s index %lld out of range", avro_schema_name(s), (long long)n);
            return EVENT_ERR_MALFORMED;
        }
        return EVENT_OK;
    case AVRO_UNION:
        if ((e = wire_varint(w, &n, 10)) != EVENT_OK)
            return e;
        if (n < 0 || (size_t)n >= node->nkids) {
            snprintf(w->err, w->errlen, "union branch %lld out of range", (long long)n);
            return EVENT_ERR_MALFORMED;
        }
        return wire_walk(w, node->kids[n], depth + 1);
    case AVRO_RECORD:
        for (size_t i = 0; i < node->nkids; i++) {
            w->field = node->kids[i]->name;
            if ((e = wire_walk(w, node->kids[i], depth + 1)) != EVENT_OK)
                return e;
        }
        return EVENT_OK;
    case AVRO_MAP:
    case AVRO_ARRAY: {
        int is_map = avro_typeof(s) == AVRO_MAP;
        const tp_node *item = node->kids[0];
        for (;;) {
            int64_t count;
            if ((e = wire_varint(w, &count, 10)) != EVENT_OK)
                return e;
            if (count == 0)
                return EVENT_OK;
            if (count < 0) {
                int64_t bytes;
                if (count == INT64_MIN) {
                    snprintf(w->err, w->errlen, "block count out of range");
                    return EVENT_ERR_MALFORMED;
                }
                count = -count;
                if ((e = wire_varint(w, &bytes, 10)) != EVENT_OK)
                    return e;
                if (bytes < 0 || bytes > w->end - w->p) {
                    snprintf(w->err, w->errlen, "block declares %lld bytes, %td remain", (long long)bytes,
                             w->end - w->p);
                    return bytes < 0 ? EVENT_ERR_MALFORMED : EVENT_ERR_TRUNCATED;
                }
            }
            /* every item of our schemas takes at least one byte */
            if (count > w->end - w->p) {
                snprintf(w->err, w->errlen, "block declares %lld items, %td bytes remain", (long long)count,
                         w->end - w->p);
                return EVENT_ERR_TRUNCATED;
            }
            for (int64_t i = 0; i < count; i++) {
                if (is_map) {
                    if ((e = wire_varint(w, &n, 10)) != EVENT_OK || (e = wire_skip(w, n, "map key")) != EVENT_OK)
                        return e;
                    /* avro-c hands map keys over as C strings: a NUL inside would silently cut the key */
                    const uint8_t *key = w->p - n;
                    if (n && memchr(key, '\0', (size_t)n)) {
                        snprintf(w->err, w->errlen, "a key of %s contains a NUL byte", w->field ? w->field : "a map");
                        return EVENT_ERR_BAD_STRING;
                    }
                    w->map_items++;
                }
                if ((e = wire_walk(w, item, depth + 1)) != EVENT_OK)
                    return e;
            }
        }
    }
    default:
        snprintf(w->err, w->errlen, "unsupported schema type");
        return EVENT_ERR_MALFORMED;
    }
}

/* codec_check_wire, also counting the map entries on the wire. */
static event_err check_wire(codec *c, codec_schema s, const void *data, size_t len, size_t *map_items, char *err,
                            size_t errlen)
{
    if (len > c->max_message_bytes) {
        snprintf(err, errlen, "message is %zu bytes, the limit is %zu", len, c->max_message_bytes);
        return EVENT_ERR_TOO_LARGE;
    }
    wire w = {.p = data, .end = (const uint8_t *)data + len, .err = err, .errlen = errlen};
    event_err e = wire_walk(&w, c->tree[s], 0);
    if (e == EVENT_OK && w.p != w.end) {
        snprintf(err, errlen, "%td trailing bytes after the record", w.end - w.p);
        return EVENT_ERR_MALFORMED;
    }
    *map_items = w.map_items;
    return e;
}

event_err codec_check_wire(codec *c, codec_schema s, const void *data, size_t len, char *err, size_t errlen)
{
    size_t map_items;
    return check_wire(c, s, data, len, &map_items, err, errlen);
}

/* ---- decode ---------------------------------------------------------------- */

typedef struct rd {
    avro_value_t *rec;
    char *err;
    size_t errlen;
} rd;

static event_err get_str(rd *r, avro_value_t *v, const char *field, char *dst, size_t cap)
{
    const char *p;
    size_t size;
    if (avro_value_get_string(v, &p, &size) != 0) {
        snprintf(r->err, r->errlen, "%s: %s", field, avro_strerror());
        return EVENT_ERR_MALFORMED;
    }
    return event_copy_str(dst, cap, p, size ? size - 1 : 0, field, r->err, r->errlen);
}

static event_err field_str(rd *r, avro_value_t *rec, int idx, const char *field, char *dst, size_t cap)
{
    avro_value_t v;
    avro_value_get_by_index(rec, idx, &v, NULL);
    return get_str(r, &v, field, dst, cap);
}

static event_err field_nullable_str(rd *r, avro_value_t *rec, int idx, const char *field, bool *has, char *dst,
                                    size_t cap)
{
    avro_value_t u, branch;
    int disc = -1;
    avro_value_get_by_index(rec, idx, &u, NULL);
    avro_value_get_discriminant(&u, &disc);
    *has = disc == 1;
    if (!*has) {
        dst[0] = '\0';
        return EVENT_OK;
    }
    avro_value_get_current_branch(&u, &branch);
    return get_str(r, &branch, field, dst, cap);
}

static int64_t field_long(avro_value_t *rec, int idx)
{
    avro_value_t v;
    int64_t x = 0;
    avro_value_get_by_index(rec, idx, &v, NULL);
    avro_value_get_long(&v, &x);
    return x;
}

static event_err customer_id_str(rd *r, avro_value_t *rec, int idx, char *dst)
{
    event_err e = field_str(r, rec, idx, "customer_id", dst, EVENT_ID_MAX + 1);
    if (e == EVENT_ERR_FIELD_TOO_LONG)
        return EVENT_ERR_CUSTOMER_ID_TOO_LONG;
    if (e == EVENT_ERR_BAD_STRING)
        return EVENT_ERR_CUSTOMER_ID_CHARS;
    return e;
}

#define TRY(x)                                                                                                    \
    do {                                                                                                          \
        event_err e_ = (x);                                                                                       \
        if (e_ != EVENT_OK)                                                                                       \
            return e_;                                                                                            \
    } while (0)

/* ---- touchpoints: straight from avro-c's binary consumer ------------------ */

/* The touchpoint is the hot path (every input message): it is decoded through
 * avro-c's consumer API (avro_consume_binary), which walks the wire by the
 * schema and hands each value to a consumer, so the struct is filled as the
 * bytes are read, without the generic value tree avro_value_read fills and
 * resets per message (two allocations per string, an index per map). One
 * consumer per schema node, built once by codec_new; what each one fills is
 * bound by the schema's field positions (checked there). */


/* One message's decoding (the consumers' user data). */
typedef struct tp_state {
    touchpoint *ev;
    char *err;
    size_t errlen;
    event_err e;            /* set by the callback that stopped the walk */
    const char *key;        /* the attribute whose value comes next */
    size_t keylen;          /* its length (a key holds no NUL: the wire check refuses one) */
    uint8_t *nul;           /* per attribute: its value holds a NUL byte (the codec's scratch) */
    size_t *nulcap;
} tp_state;

static int tp_fail(tp_state *st, event_err e)
{
    st->e = e;
    return EINVAL;
}

/* A string value of node n (sl bytes at s, not NUL-terminated): into its
 * field of the touchpoint, or an attribute's value. 0, or EINVAL with st->e
 * and the message set. */
static int tp_put_string(const tp_node *n, tp_state *st, const char *s, size_t sl)
{
    int rc = 0;
    if (n->target == T_STR) {
        event_err e = event_copy_str((char *)st->ev + n->off, n->cap, s, sl, n->field, st->err, st->errlen);
        if (n->customer && e == EVENT_ERR_FIELD_TOO_LONG)
            e = EVENT_ERR_CUSTOMER_ID_TOO_LONG;
        else if (n->customer && e == EVENT_ERR_BAD_STRING)
            e = EVENT_ERR_CUSTOMER_ID_CHARS;
        if (e != EVENT_OK)
            rc = tp_fail(st, e);
        else if (n->has_off >= 0)
            *(bool *)((char *)st->ev + n->has_off) = true;
    } else if (n->target == T_ATTR_VALUE) {
        touchpoint *ev = st->ev;
        size_t i = ev->attr_count;
        if (i >= *st->nulcap) {
            size_t cap = *st->nulcap ? 2 * *st->nulcap : 16;
            uint8_t *p = realloc(st->nul, cap);
            if (!p) {
                snprintf(st->err, st->errlen, "out of memory");
                rc = tp_fail(st, EVENT_ERR_NO_MEMORY);
                goto out;
            }
            st->nul = p;
            *st->nulcap = cap;
        }
        st->nul[i] = sl && memchr(s, '\0', sl) != NULL;
        event_err e = touchpoint_add_attr(ev, st->key, st->keylen, s, sl);
        if (e != EVENT_OK) {
            snprintf(st->err, st->errlen, "out of memory");
            rc = tp_fail(st, e);
        }
    }
out:
    return rc;
}

static int tp_string(avro_consumer_t *c, const void *value, size_t len, void *ud)
{
    /* avro-c's read_string allocated value (len counts its NUL) and hands it over */
    int rc = tp_put_string((const tp_node *)c, ud, value, len ? len - 1 : 0);
    avro_free((void *)value, len);
    return rc;
}

static int tp_long(avro_consumer_t *c, int64_t v, void *ud)
{
    const tp_node *n = (const tp_node *)c;
    if (n->target == T_LONG)
        *(int64_t *)((char *)((tp_state *)ud)->ev + n->off) = v;
    return 0;
}

static int tp_int(avro_consumer_t *c, int32_t v, void *ud)
{
    const tp_node *n = (const tp_node *)c;
    if (n->target == T_INT)
        *(int32_t *)((char *)((tp_state *)ud)->ev + n->off) = v;
    return 0;
}

static int tp_double(avro_consumer_t *c, double v, void *ud)
{
    const tp_node *n = (const tp_node *)c;
    if (n->target == T_DOUBLE)
        *(double *)((char *)((tp_state *)ud)->ev + n->off) = v;
    return 0;
}

static int tp_enum(avro_consumer_t *c, int v, void *ud)
{
    if (((const tp_node *)c)->target == T_TYPE)
        ((tp_state *)ud)->ev->type = (event_type)v;
    return 0;
}

static int tp_field(avro_consumer_t *c, unsigned int i, avro_consumer_t **fc, void **fud, void *ud)
{
    const tp_node *n = (const tp_node *)c;
    *fc = &n->kids[i]->base;
    *fud = ud;
    return 0;
}

/* The payload's branch must be the one of the event's type (read before it). */
static int tp_check_branch(const tp_node *n, tp_state *st, unsigned int disc)
{
    if (n->target == T_PAYLOAD && (int)disc != payload_branch[st->ev->type]) {
        snprintf(st->err, st->errlen, "type %s carries payload branch %d, expected %d", event_type_name(st->ev->type),
                 (int)disc, payload_branch[st->ev->type]);
        return tp_fail(st, EVENT_ERR_PAYLOAD_MISMATCH);
    }
    return 0;
}

static int tp_branch(avro_consumer_t *c, unsigned int disc, avro_consumer_t **bc, void **bud, void *ud)
{
    const tp_node *n = (const tp_node *)c;
    int rc = tp_check_branch(n, ud, disc);
    if (rc)
        return rc;
    *bc = &n->kids[disc]->base;
    *bud = ud;
    return 0;
}

static int tp_map_element(avro_consumer_t *c, unsigned int i, const char *key, avro_consumer_t **vc, void **vud,
                          void *ud)
{
    (void)i;
    tp_state *st = ud;
    st->key = key;
    st->keylen = strlen(key);
    *vc = &((const tp_node *)c)->kids[0]->base;
    *vud = ud;
    return 0;
}

static int tp_array_element(avro_consumer_t *c, unsigned int i, avro_consumer_t **ec, void **eud, void *ud)
{
    (void)i;
    *ec = &((const tp_node *)c)->kids[0]->base;
    *eud = ud;
    return 0;
}

static void tp_node_free(tp_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        tp_node_free(n->kids[i]);
    free(n->kids);
    free(n);
}

/* The node of schema s and everything under it; NULL when out of memory, for
 * a type no schema here uses, or nesting deeper than 32. */
static tp_node *tp_node_new(avro_schema_t s, int depth)
{
    while (s && avro_typeof(s) == AVRO_LINK)
        s = avro_schema_link_target(s);
    if (!s || depth > 32)
        return NULL;
    tp_node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->base.schema = s;
    n->has_off = -1;
    switch (avro_typeof(s)) {
    case AVRO_NULL:
    case AVRO_BOOLEAN:
    case AVRO_FLOAT:
    case AVRO_BYTES:
        break; /* no callback: nothing to fill (bytes: in no touchpoint, walked by the wire check only) */
    case AVRO_FIXED: n->size = avro_schema_fixed_size(s); break;
    case AVRO_STRING: n->base.string_value = tp_string; break;
    case AVRO_INT64: n->base.long_value = tp_long; break;
    case AVRO_INT32: n->base.int_value = tp_int; break;
    case AVRO_DOUBLE: n->base.double_value = tp_double; break;
    case AVRO_ENUM: n->base.enum_value = tp_enum; n->size = avro_schema_enum_number_of_symbols(s); break;
    case AVRO_RECORD: n->nkids = avro_schema_record_size(s); n->base.record_field = tp_field; break;
    case AVRO_UNION: n->nkids = avro_schema_union_size(s); n->base.union_branch = tp_branch; break;
    case AVRO_MAP: n->nkids = 1; n->base.map_element = tp_map_element; break;
    case AVRO_ARRAY: n->nkids = 1; n->base.array_element = tp_array_element; break;
    default: free(n); return NULL;
    }
    if (n->nkids && !(n->kids = calloc(n->nkids, sizeof(*n->kids)))) {
        free(n);
        return NULL;
    }
    for (size_t i = 0; i < n->nkids; i++) {
        avro_schema_t k = avro_typeof(s) == AVRO_RECORD  ? avro_schema_record_field_get_by_index(s, (int)i)
                          : avro_typeof(s) == AVRO_UNION ? avro_schema_union_branch(s, (int)i)
                          : avro_typeof(s) == AVRO_MAP   ? avro_schema_map_values(s)
                                                         : avro_schema_array_items(s);
        if (!(n->kids[i] = tp_node_new(k, depth + 1))) {
            tp_node_free(n);
            return NULL;
        }
        if (avro_typeof(s) == AVRO_RECORD)
            n->kids[i]->name = avro_schema_record_field_name(s, (int)i);
    }
    return n;
}

/* Bind node (kid i of a record, or that record's [null, string] union) to
 * what it fills; -1 when the schema's type there is not the one expected. */
static int tp_bind(tp_node *rec, int i, tp_target t, size_t off, size_t cap, long has_off, const char *field)
{
    if (!rec || avro_typeof(rec->base.schema) != AVRO_RECORD || i < 0 || (size_t)i >= rec->nkids)
        return -1;
    tp_node *n = rec->kids[i];
    if (has_off >= 0) { /* ["null", "string"] */
        if (avro_typeof(n->base.schema) != AVRO_UNION || n->nkids != 2 ||
            avro_typeof(n->kids[0]->base.schema) != AVRO_NULL)
            return -1;
        n = n->kids[1];
    }
    static const avro_type_t want[] = {[T_STR] = AVRO_STRING,  [T_LONG] = AVRO_INT64,   [T_INT] = AVRO_INT32,
                                       [T_DOUBLE] = AVRO_DOUBLE, [T_TYPE] = AVRO_ENUM, [T_PAYLOAD] = AVRO_UNION};
    if (avro_typeof(n->base.schema) != want[t])
        return -1;
    n->target = t;
    n->off = off;
    n->cap = cap;
    n->has_off = has_off;
    n->field = field;
    return 0;
}

#define TP_OFF(f) offsetof(touchpoint, f)
#define TP_STR(f) TP_OFF(f), sizeof(((touchpoint *)0)->f)
#define TP_HAS(f) (long)TP_OFF(f)

/* The consumer tree of the touchpoint schema s, bound to struct touchpoint;
 * NULL when out of memory or when s is not the schema this codec knows. */
static tp_node *tp_consumer_new(avro_schema_t s)
{
    tp_node *root = tp_node_new(s, 0);
    if (!root || root->nkids != TP_NFIELDS)
        goto err;
    tp_node *pl = root->kids[TP_PAYLOAD], *attrs = root->kids[TP_ATTRIBUTES];
    if (tp_bind(root, TP_EVENT_ID, T_STR, TP_STR(event_id), -1, "event_id") ||
        tp_bind(root, TP_CUSTOMER_ID, T_STR, TP_STR(customer_id), -1, "customer_id") ||
        tp_bind(root, TP_TYPE, T_TYPE, 0, 0, -1, "type") || tp_bind(root, TP_CHANNEL, T_STR, TP_STR(channel), -1, "channel") ||
        tp_bind(root, TP_OCCURRED_AT, T_LONG, TP_OFF(occurred_at), 0, -1, "occurred_at") ||
        tp_bind(root, TP_PAYLOAD, T_PAYLOAD, 0, 0, -1, "payload") || avro_typeof(attrs->base.schema) != AVRO_MAP ||
        avro_typeof(attrs->kids[0]->base.schema) != AVRO_STRING)
        goto err;
    root->kids[TP_CUSTOMER_ID]->customer = true;
    attrs->kids[0]->target = T_ATTR_VALUE;
    for (int t = 0; t < EVENT_TYPE_COUNT; t++)
        if ((size_t)payload_branch[t] >= pl->nkids)
            goto err;
    tp_node **b = pl->kids;
    int rc =
        tp_bind(b[payload_branch[EVENT_SIGNUP]], 0, T_STR, TP_STR(payload.signup.referred_by),
                TP_HAS(payload.signup.has_referred_by), "referred_by") ||
        tp_bind(b[payload_branch[EVENT_PROFILE_UPDATE]], 0, T_DOUBLE, TP_OFF(payload.profile_update.completeness), 0, -1,
                "completeness") ||
        tp_bind(b[payload_branch[EVENT_APP_USE]], 0, T_INT, TP_OFF(payload.app_use.session_seconds), 0, -1,
                "session_seconds") ||
        tp_bind(b[payload_branch[EVENT_APP_USE]], 1, T_STR, TP_STR(payload.app_use.feature),
                TP_HAS(payload.app_use.has_feature), "feature") ||
        tp_bind(b[payload_branch[EVENT_SOCIAL_SHARE]], 0, T_STR, TP_STR(payload.social_share.network), -1, "network") ||
        tp_bind(b[payload_branch[EVENT_SOCIAL_SHARE]], 1, T_STR, TP_STR(payload.social_share.content_id),
                TP_HAS(payload.social_share.has_content_id), "content_id") ||
        tp_bind(b[payload_branch[EVENT_REFERRAL]], 0, T_STR, TP_STR(payload.referral.invitee_id),
                TP_HAS(payload.referral.has_invitee_id), "invitee_id") ||
        tp_bind(b[payload_branch[EVENT_PURCHASE]], 0, T_STR, TP_STR(payload.purchase.order_id), -1, "order_id") ||
        tp_bind(b[payload_branch[EVENT_PURCHASE]], 1, T_LONG, TP_OFF(payload.purchase.amount_cents), 0, -1,
                "amount_cents") ||
        tp_bind(b[payload_branch[EVENT_PURCHASE]], 2, T_STR, TP_STR(payload.purchase.currency), -1, "currency") ||
        tp_bind(b[payload_branch[EVENT_PURCHASE]], 3, T_STR, TP_STR(payload.purchase.store_id),
                TP_HAS(payload.purchase.has_store_id), "store_id") ||
        tp_bind(b[payload_branch[EVENT_REFUND]], 0, T_STR, TP_STR(payload.refund.order_id), -1, "order_id") ||
        tp_bind(b[payload_branch[EVENT_REFUND]], 1, T_LONG, TP_OFF(payload.refund.amount_cents), 0, -1, "amount_cents") ||
        tp_bind(b[payload_branch[EVENT_REDEMPTION]], 0, T_STR, TP_STR(payload.redemption.redemption_id), -1,
                "redemption_id") ||
        tp_bind(b[payload_branch[EVENT_REDEMPTION]], 1, T_STR, TP_STR(payload.redemption.reward_code), -1,
                "reward_code") ||
        tp_bind(b[payload_branch[EVENT_REDEMPTION]], 2, T_LONG, TP_OFF(payload.redemption.cost_points), 0, -1,
                "cost_points");
    if (rc)
        goto err;
    return root;
err:
    tp_node_free(root);
    return NULL;
}

typedef struct attr_ref {
    const char *key;
    size_t idx;             /* its place on the wire */
    size_t last;            /* a group's first entry: the place of its key's last value */
} attr_ref;

static int cmp_key_idx(const void *a, const void *b)
{
    const attr_ref *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

static int cmp_idx(const void *a, const void *b)
{
    const attr_ref *x = a, *y = b;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static event_err attr_nul(tp_state *st, size_t i)
{
    snprintf(st->err, st->errlen, "attribute '%s' holds a NUL byte", st->ev->attrs[i].key);
    return EVENT_ERR_BAD_STRING;
}

/* The attributes' checks once all are read, with the outcome the generic
 * value gave (a map keeps each key once, where it first came, with its last
 * value): a value holding a NUL byte is refused, then a repeated key. */
static event_err tp_check_attrs(tp_state *st, size_t map_items)
{
    const touchpoint *ev = st->ev;
    size_t n = ev->attr_count;
    bool repeated = false;
    if (n <= 16) { /* the usual handful */
        for (size_t i = 0; i < n && !repeated; i++)
            for (size_t j = i + 1; j < n && !repeated; j++)
                repeated = !strcmp(ev->attrs[i].key, ev->attrs[j].key);
        if (!repeated) {
            for (size_t i = 0; i < n; i++)
                if (st->nul[i])
                    return attr_nul(st, i);
            return EVENT_OK;
        }
    }
    attr_ref *r = malloc(n * sizeof(*r));
    if (!r) {
        snprintf(st->err, st->errlen, "out of memory");
        return EVENT_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < n; i++)
        r[i] = (attr_ref){.key = ev->attrs[i].key, .idx = i};
    qsort(r, n, sizeof(*r), cmp_key_idx);
    size_t distinct = 0;
    for (size_t i = 0; i < n;) { /* one entry per key: its first place, its last value */
        size_t j = i;
        while (j + 1 < n && !strcmp(r[j + 1].key, r[i].key))
            j++;
        r[distinct] = r[i];
        r[distinct++].last = r[j].idx;
        i = j + 1;
    }
    qsort(r, distinct, sizeof(*r), cmp_idx);
    event_err e = EVENT_OK;
    for (size_t i = 0; i < distinct && e == EVENT_OK; i++)
        if (st->nul[r[i].last])
            e = attr_nul(st, r[i].idx);
    free(r);
    if (e == EVENT_OK && distinct != n) {
        snprintf(st->err, st->errlen, "attributes repeat a key (%zu on the wire, %zu distinct)", map_items, distinct);
        e = EVENT_ERR_MALFORMED;
    }
    return e;
}

/* ---- touchpoints read by hand ---------------------------------------------- */

/* The touchpoint (every input message) is read from the wire by tp_read, the
 * walk avro-c's avro_consume_binary makes over the same consumer tree, with
 * the same values handed to the same fill code (tp_put_string, the
 * branch check) in the same order, the same refusals and messages; without
 * avro-c's reader calls per byte and its copy of every string and map key
 * (two allocations per attribute): ~0.5 us per message (README Performance,
 * "Fidelio's own CPU per event, fourth round"; docs/design.md, Differences
 * from the team brief). The wire was checked first (check_wire: every length,
 * index and block count within the message, no NUL in a map key), so the
 * walk's own bounds checks only guard against a tree that disagrees with it.
 * test_codec touchpoint_reader_equals_avro_c compares it with avro-c's
 * (codec_decode_avro_library) over valid and mutated messages, and the avro
 * fuzz harness on every input. */

typedef struct tp_cursor {
    const uint8_t *p, *end;
} tp_cursor;

/* Why a walk stopped on a wire that passed check_wire: never expected. */
static int tp_short(tp_state *st)
{
    snprintf(st->err, st->errlen, "avro: the message ends inside a value");
    return tp_fail(st, EVENT_ERR_MALFORMED);
}

/* avro-c's read_long: a zigzag varint of at most 10 bytes. */
static int tp_varint(tp_cursor *r, tp_state *st, int64_t *out)
{
    return varint_get(&r->p, r->end, VARINT_MAX, out) == VARINT_OK ? 0 : tp_short(st);
}

/* Read the value of node n at r into st's touchpoint, as avro_consume_binary
 * with n as its consumer. 0, or non-zero with st->e and its message. */
static int tp_read(const tp_node *n, tp_cursor *r, tp_state *st)
{
    int64_t v;
    int rc;
    char *ev = (char *)st->ev;
    switch (avro_typeof(n->base.schema)) {
    case AVRO_NULL:
        return 0;
    case AVRO_BOOLEAN:
    case AVRO_FLOAT: {
        ptrdiff_t size = avro_typeof(n->base.schema) == AVRO_BOOLEAN ? 1 : 4;
        if (r->end - r->p < size)
            return tp_short(st);
        r->p += size;
        return 0;
    }
    case AVRO_DOUBLE: {
        double d;
        if (r->end - r->p < 8)
            return tp_short(st);
        memcpy(&d, r->p, 8); /* little-endian, as avro-c reads it on this platform */
        r->p += 8;
        if (n->target == T_DOUBLE)
            memcpy(ev + n->off, &d, sizeof(d));
        return 0;
    }
    case AVRO_INT32:
        if ((rc = tp_varint(r, st, &v)) != 0)
            return rc;
        if (v < INT32_MIN || v > INT32_MAX) { /* avro-c's read_int, prefixed by avro_consume_binary */
            snprintf(st->err, st->errlen, "avro: Cannot read int value: Varint out of range for int type");
            return tp_fail(st, EVENT_ERR_MALFORMED);
        }
        if (n->target == T_INT) {
            int32_t i = (int32_t)v;
            memcpy(ev + n->off, &i, sizeof(i));
        }
        return 0;
    case AVRO_INT64:
        if ((rc = tp_varint(r, st, &v)) != 0)
            return rc;
        if (n->target == T_LONG)
            memcpy(ev + n->off, &v, sizeof(v));
        return 0;
    case AVRO_ENUM:
        if ((rc = tp_varint(r, st, &v)) != 0)
            return rc;
        if (n->target == T_TYPE)
            st->ev->type = (event_type)(int)v;
        return 0;
    case AVRO_STRING:
        if ((rc = tp_varint(r, st, &v)) != 0)
            return rc;
        if (v < 0 || v > r->end - r->p)
            return tp_short(st);
        rc = tp_put_string(n, st, (const char *)r->p, (size_t)v);
        r->p += v;
        return rc;
    case AVRO_UNION:
        if ((rc = tp_varint(r, st, &v)) != 0)
            return rc;
        if (v < 0 || (size_t)v >= n->nkids)
            return tp_short(st);
        if ((rc = tp_check_branch(n, st, (unsigned int)v)) != 0)
            return rc;
        return tp_read(n->kids[v], r, st);
    case AVRO_RECORD:
        for (size_t i = 0; i < n->nkids; i++)
            if ((rc = tp_read(n->kids[i], r, st)) != 0)
                return rc;
        return 0;
    case AVRO_MAP:
    case AVRO_ARRAY: {
        bool is_map = avro_typeof(n->base.schema) == AVRO_MAP;
        for (;;) {
            int64_t count, bytes;
            if ((rc = tp_varint(r, st, &count)) != 0)
                return rc;
            if (count == 0)
                return 0;
            if (count < 0) {
                if (count == INT64_MIN)
                    return tp_short(st);
                count = -count;
                if ((rc = tp_varint(r, st, &bytes)) != 0)
                    return rc;
            }
            for (int64_t i = 0; i < count; i++) {
                if (is_map) {
                    int64_t kl;
                    if ((rc = tp_varint(r, st, &kl)) != 0)
                        return rc;
                    if (kl < 0 || kl > r->end - r->p)
                        return tp_short(st);
                    st->key = (const char *)r->p;
                    st->keylen = (size_t)kl;
                    r->p += kl;
                }
                if ((rc = tp_read(n->kids[0], r, st)) != 0)
                    return rc;
            }
        }
    }
    default:
        return tp_short(st);
    }
}

/* Decode the touchpoint of len bytes at data (the wire checked: map_items
 * attributes on it) into ev: by hand (tp_read), or through avro-c's consumer
 * API (library, reading c->reader, set to the same bytes). */
static event_err decode_touchpoint(codec *c, const void *data, size_t len, size_t map_items, touchpoint *ev,
                                   bool library, char *err, size_t errlen)
{
    touchpoint_clear(ev);
    tp_state st = {.ev = ev, .err = err, .errlen = errlen, .nul = c->attr_nul, .nulcap = &c->attr_nul_cap};
    int rc;
    if (library) {
        rc = avro_consume_binary(c->reader, &c->tp->base, &st);
    } else {
        tp_cursor r = {.p = data, .end = (const uint8_t *)data + len};
        rc = tp_read(c->tp, &r, &st);
    }
    c->attr_nul = st.nul;
    if (rc != 0) {
        if (st.e != EVENT_OK)
            return st.e;
        snprintf(err, errlen, "avro: %s", avro_strerror());
        return EVENT_ERR_MALFORMED;
    }
    return tp_check_attrs(&st, map_items);
}

static event_err decode_reward(rd *r, reward_event *ev)
{
    avro_value_t *rec = r->rec, v;
    int sym = 0;
    memset(ev, 0, sizeof(*ev));
    TRY(field_str(r, rec, RW_REWARD_ID, "reward_id", ev->reward_id, sizeof(ev->reward_id)));
    TRY(customer_id_str(r, rec, RW_CUSTOMER_ID, ev->customer_id));
    avro_value_get_by_index(rec, RW_KIND, &v, NULL);
    avro_value_get_enum(&v, &sym);
    ev->kind = (reward_kind)sym;
    TRY(field_str(r, rec, RW_RULE_ID, "rule_id", ev->rule_id, sizeof(ev->rule_id)));
    ev->points = field_long(rec, RW_POINTS);
    ev->balance_after = field_long(rec, RW_BALANCE_AFTER);
    TRY(field_str(r, rec, RW_SOURCE_EVENT_ID, "source_event_id", ev->source_event_id, sizeof(ev->source_event_id)));
    ev->occurred_at = field_long(rec, RW_OCCURRED_AT);
    TRY(field_str(r, rec, RW_REASON, "reason", ev->reason, sizeof(ev->reason)));
    TRY(field_str(r, rec, RW_PROGRAM_VERSION, "program_version", ev->program_version, sizeof(ev->program_version)));
    return field_str(r, rec, RW_PROGRAM_DIGEST, "program_digest", ev->program_digest, sizeof(ev->program_digest));
}

static event_err decode_stage(rd *r, stage_change_event *ev)
{
    avro_value_t *rec = r->rec;
    memset(ev, 0, sizeof(*ev));
    TRY(field_str(r, rec, SC_CHANGE_ID, "change_id", ev->change_id, sizeof(ev->change_id)));
    TRY(customer_id_str(r, rec, SC_CUSTOMER_ID, ev->customer_id));
    TRY(field_str(r, rec, SC_LADDER, "ladder", ev->ladder, sizeof(ev->ladder)));
    TRY(field_nullable_str(r, rec, SC_FROM_STAGE, "from_stage", &ev->has_from_stage, ev->from_stage,
                           sizeof(ev->from_stage)));
    TRY(field_str(r, rec, SC_TO_STAGE, "to_stage", ev->to_stage, sizeof(ev->to_stage)));
    TRY(field_str(r, rec, SC_SOURCE_EVENT_ID, "source_event_id", ev->source_event_id, sizeof(ev->source_event_id)));
    ev->occurred_at = field_long(rec, SC_OCCURRED_AT);
    TRY(field_str(r, rec, SC_PROGRAM_VERSION, "program_version", ev->program_version, sizeof(ev->program_version)));
    return field_str(r, rec, SC_PROGRAM_DIGEST, "program_digest", ev->program_digest, sizeof(ev->program_digest));
}

static event_err decode_credit(rd *r, credit_event *ev)
{
    avro_value_t *rec = r->rec, v;
    int b = 0;
    memset(ev, 0, sizeof(*ev));
    TRY(field_str(r, rec, CR_CREDIT_ID, "credit_id", ev->credit_id, sizeof(ev->credit_id)));
    TRY(customer_id_str(r, rec, CR_CUSTOMER_ID, ev->customer_id));
    TRY(field_str(r, rec, CR_SOURCE_CUSTOMER_ID, "source_customer_id", ev->source_customer_id,
                  sizeof(ev->source_customer_id)));
    TRY(field_str(r, rec, CR_RULE_ID, "rule_id", ev->rule_id, sizeof(ev->rule_id)));
    ev->points = field_long(rec, CR_POINTS);
    avro_value_get_by_index(rec, CR_REFERRAL, &v, NULL);
    avro_value_get_boolean(&v, &b);
    ev->referral = b != 0;
    TRY(field_str(r, rec, CR_SOURCE_EVENT_ID, "source_event_id", ev->source_event_id, sizeof(ev->source_event_id)));
    ev->occurred_at = field_long(rec, CR_OCCURRED_AT);
    TRY(field_str(r, rec, CR_REASON, "reason", ev->reason, sizeof(ev->reason)));
    TRY(field_str(r, rec, CR_PROGRAM_VERSION, "program_version", ev->program_version, sizeof(ev->program_version)));
    TRY(field_str(r, rec, CR_NAMESPACE, "namespace", ev->ns, sizeof(ev->ns)));
    return field_str(r, rec, CR_SIGNATURE, "signature", ev->signature, sizeof(ev->signature));
}

/* codec_decode_avro; library: the touchpoint through avro-c's consumer. */
static event_err decode_avro(codec *c, codec_schema s, const void *data, size_t len, codec_record *rec,
                             bool library, char *err, size_t errlen)
{
    size_t map_items = 0;
    event_err e = check_wire(c, s, data, len, &map_items, err, errlen);
    if (e != EVENT_OK)
        return e;
    rec->schema = s;
    if (s == SCHEMA_TOUCHPOINT && !library)
        return decode_touchpoint(c, data, len, map_items, &rec->tp, false, err, errlen);
    avro_reader_memory_set_source(c->reader, data, (int64_t)len);
    if (s == SCHEMA_TOUCHPOINT)
        return decode_touchpoint(c, data, len, map_items, &rec->tp, true, err, errlen);
    avro_value_t *v = &c->value[s];
    avro_value_reset(v);
    if (avro_value_read(c->reader, v) != 0) {
        snprintf(err, errlen, "avro: %s", avro_strerror());
        return EVENT_ERR_MALFORMED;
    }
    rd r = {.rec = v, .err = err, .errlen = errlen};
    switch (s) {
    case SCHEMA_REWARD: return decode_reward(&r, &rec->reward);
    case SCHEMA_STAGE_CHANGE: return decode_stage(&r, &rec->stage);
    case SCHEMA_CREDIT: return decode_credit(&r, &rec->credit);
    default: return EVENT_ERR_MALFORMED;
    }
}

event_err codec_decode_avro(codec *c, codec_schema s, const void *data, size_t len, codec_record *rec,
                            char *err, size_t errlen)
{
    return decode_avro(c, s, data, len, rec, false, err, errlen);
}

event_err codec_decode_avro_library(codec *c, codec_schema s, const void *data, size_t len, codec_record *rec,
                                    char *err, size_t errlen)
{
    return decode_avro(c, s, data, len, rec, true, err, errlen);
}

/* ---- encode ---------------------------------------------------------------- */

static int set_str(avro_value_t *rec, int idx, const char *s)
{
    avro_value_t v;
    return avro_value_get_by_index(rec, idx, &v, NULL) || avro_value_set_string_len(&v, s, strlen(s) + 1);
}

static int set_nullable_str(avro_value_t *rec, int idx, bool has, const char *s)
{
    avro_value_t u, b;
    if (avro_value_get_by_index(rec, idx, &u, NULL) || avro_value_set_branch(&u, has ? 1 : 0, &b))
        return -1;
    return has ? avro_value_set_string_len(&b, s, strlen(s) + 1) : avro_value_set_null(&b);
}

static int set_long(avro_value_t *rec, int idx, int64_t x)
{
    avro_value_t v;
    return avro_value_get_by_index(rec, idx, &v, NULL) || avro_value_set_long(&v, x);
}

static int set_enum(avro_value_t *rec, int idx, int sym)
{
    avro_value_t v;
    return avro_value_get_by_index(rec, idx, &v, NULL) || avro_value_set_enum(&v, sym);
}

static int encode_payload(const touchpoint *ev, avro_value_t *rec)
{
    avro_value_t u, p, v;
    if ((unsigned)ev->type >= EVENT_TYPE_COUNT || avro_value_get_by_index(rec, TP_PAYLOAD, &u, NULL) ||
        avro_value_set_branch(&u, payload_branch[ev->type], &p))
        return -1;
    switch (ev->type) {
    case EVENT_NEWSLETTER_OPT_IN:
        return avro_value_set_null(&p);
    case EVENT_SIGNUP:
        return set_nullable_str(&p, 0, ev->payload.signup.has_referred_by, ev->payload.signup.referred_by);
    case EVENT_PROFILE_UPDATE:
        return avro_value_get_by_index(&p, 0, &v, NULL) ||
               avro_value_set_double(&v, ev->payload.profile_update.completeness);
    case EVENT_APP_USE:
        return avro_value_get_by_index(&p, 0, &v, NULL) || avro_value_set_int(&v, ev->payload.app_use.session_seconds) ||
               set_nullable_str(&p, 1, ev->payload.app_use.has_feature, ev->payload.app_use.feature);
    case EVENT_SOCIAL_SHARE:
        return set_str(&p, 0, ev->payload.social_share.network) ||
               set_nullable_str(&p, 1, ev->payload.social_share.has_content_id, ev->payload.social_share.content_id);
    case EVENT_REFERRAL:
        return set_nullable_str(&p, 0, ev->payload.referral.has_invitee_id, ev->payload.referral.invitee_id);
    case EVENT_PURCHASE:
        return set_str(&p, 0, ev->payload.purchase.order_id) || set_long(&p, 1, ev->payload.purchase.amount_cents) ||
               set_str(&p, 2, ev->payload.purchase.currency) ||
               set_nullable_str(&p, 3, ev->payload.purchase.has_store_id, ev->payload.purchase.store_id);
    case EVENT_REFUND:
        return set_str(&p, 0, ev->payload.refund.order_id) || set_long(&p, 1, ev->payload.refund.amount_cents);
    case EVENT_REDEMPTION:
        return set_str(&p, 0, ev->payload.redemption.redemption_id) ||
               set_str(&p, 1, ev->payload.redemption.reward_code) ||
               set_long(&p, 2, ev->payload.redemption.cost_points);
    default:
        return -1;
    }
}

static int encode_touchpoint(const touchpoint *ev, avro_value_t *rec)
{
    avro_value_t m, item;
    if (set_str(rec, TP_EVENT_ID, ev->event_id) || set_str(rec, TP_CUSTOMER_ID, ev->customer_id) ||
        set_enum(rec, TP_TYPE, ev->type) || set_str(rec, TP_CHANNEL, ev->channel) ||
        set_long(rec, TP_OCCURRED_AT, ev->occurred_at) || encode_payload(ev, rec) ||
        avro_value_get_by_index(rec, TP_ATTRIBUTES, &m, NULL))
        return -1;
    for (size_t i = 0; i < ev->attr_count; i++)
        if (avro_value_add(&m, ev->attrs[i].key, &item, NULL, NULL) ||
            avro_value_set_string_len(&item, ev->attrs[i].value, strlen(ev->attrs[i].value) + 1))
            return -1;
    return 0;
}

static int encode_reward(const reward_event *ev, avro_value_t *rec)
{
    return set_str(rec, RW_REWARD_ID, ev->reward_id) || set_str(rec, RW_CUSTOMER_ID, ev->customer_id) ||
           set_enum(rec, RW_KIND, ev->kind) || set_str(rec, RW_RULE_ID, ev->rule_id) ||
           set_long(rec, RW_POINTS, ev->points) || set_long(rec, RW_BALANCE_AFTER, ev->balance_after) ||
           set_str(rec, RW_SOURCE_EVENT_ID, ev->source_event_id) || set_long(rec, RW_OCCURRED_AT, ev->occurred_at) ||
           set_str(rec, RW_REASON, ev->reason) || set_str(rec, RW_PROGRAM_VERSION, ev->program_version) ||
           set_str(rec, RW_PROGRAM_DIGEST, ev->program_digest);
}

static int encode_stage(const stage_change_event *ev, avro_value_t *rec)
{
    return set_str(rec, SC_CHANGE_ID, ev->change_id) || set_str(rec, SC_CUSTOMER_ID, ev->customer_id) ||
           set_str(rec, SC_LADDER, ev->ladder) || set_nullable_str(rec, SC_FROM_STAGE, ev->has_from_stage, ev->from_stage) ||
           set_str(rec, SC_TO_STAGE, ev->to_stage) || set_str(rec, SC_SOURCE_EVENT_ID, ev->source_event_id) ||
           set_long(rec, SC_OCCURRED_AT, ev->occurred_at) || set_str(rec, SC_PROGRAM_VERSION, ev->program_version) ||
           set_str(rec, SC_PROGRAM_DIGEST, ev->program_digest);
}

static int encode_credit(const credit_event *ev, avro_value_t *rec)
{
    avro_value_t v;
    return set_str(rec, CR_CREDIT_ID, ev->credit_id) || set_str(rec, CR_CUSTOMER_ID, ev->customer_id) ||
           set_str(rec, CR_SOURCE_CUSTOMER_ID, ev->source_customer_id) || set_str(rec, CR_RULE_ID, ev->rule_id) ||
           set_long(rec, CR_POINTS, ev->points) || avro_value_get_by_index(rec, CR_REFERRAL, &v, NULL) ||
           avro_value_set_boolean(&v, ev->referral) || set_str(rec, CR_SOURCE_EVENT_ID, ev->source_event_id) ||
           set_long(rec, CR_OCCURRED_AT, ev->occurred_at) || set_str(rec, CR_REASON, ev->reason) ||
           set_str(rec, CR_PROGRAM_VERSION, ev->program_version) || set_str(rec, CR_NAMESPACE, ev->ns) ||
           set_str(rec, CR_SIGNATURE, ev->signature);
}

/* ---- the output writers: RewardEvent and StageChangeEvent by hand ----------
 * Avro binary (the specification's "Binary Encoding"): a long or an enum's
 * index is a zig-zag varint, a string its length as a long then its bytes, a
 * union its branch index as a long then the branch's value, a record its
 * fields in order. Every output passes here (1.5 per event on the benchmark's
 * data); avro-c's generic value (set field by field, then walked by
 * avro_value_write) cost ~420 ns per RewardEvent, this ~60 (docs/design.md,
 * "Output encoding by hand"). The bytes are avro-c's: test_codec
 * output_writers_equal_avro_c compares them over generated records, and the
 * fuzz_avro harness over every record it decodes. */


/* A NUL-terminated string of a char array of cap bytes. */
static uint8_t *put_str(uint8_t *p, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    p = varint_put(p, (int64_t)n);
    memcpy(p, s, n);
    return p + n;
}
#define PUT_STR(p, field) put_str(p, field, sizeof(field))

/* The most bytes a record of struct type T can take: every char array's
 * bytes, and a varint of at most 10 bytes for each field. */
#define WIRE_MAX(T, nfields) (sizeof(T) + 10 * (size_t)(nfields))

static uint8_t *write_reward(uint8_t *p, const reward_event *ev)
{
    p = PUT_STR(p, ev->reward_id);
    p = PUT_STR(p, ev->customer_id);
    p = varint_put(p, (int64_t)ev->kind);
    p = PUT_STR(p, ev->rule_id);
    p = varint_put(p, ev->points);
    p = varint_put(p, ev->balance_after);
    p = PUT_STR(p, ev->source_event_id);
    p = varint_put(p, ev->occurred_at);
    p = PUT_STR(p, ev->reason);
    p = PUT_STR(p, ev->program_version);
    return PUT_STR(p, ev->program_digest);
}

static uint8_t *write_stage(uint8_t *p, const stage_change_event *ev)
{
    p = PUT_STR(p, ev->change_id);
    p = PUT_STR(p, ev->customer_id);
    p = PUT_STR(p, ev->ladder);
    p = varint_put(p, ev->has_from_stage ? 1 : 0);
    if (ev->has_from_stage)
        p = PUT_STR(p, ev->from_stage);
    p = PUT_STR(p, ev->to_stage);
    p = PUT_STR(p, ev->source_event_id);
    p = varint_put(p, ev->occurred_at);
    p = PUT_STR(p, ev->program_version);
    return PUT_STR(p, ev->program_digest);
}

/* Write a reward or a stage change into out (replacing its contents). */
static event_err encode_output(codec_schema s, const codec_record *rec, buf *out, char *err, size_t errlen)
{
    size_t max = s == SCHEMA_REWARD ? WIRE_MAX(reward_event, RW_NFIELDS) : WIRE_MAX(stage_change_event, SC_NFIELDS);
    if (s == SCHEMA_REWARD && (unsigned)rec->reward.kind >= REWARD_KIND_COUNT) {
        snprintf(err, errlen, "avro encode: reward kind %d is not a RewardKind symbol", (int)rec->reward.kind);
        return EVENT_ERR_MALFORMED;
    }
    buf_reset(out);
    if (buf_reserve(out, max) != 0) {
        snprintf(err, errlen, "out of memory");
        return EVENT_ERR_NO_MEMORY;
    }
    uint8_t *b = (uint8_t *)out->data;
    uint8_t *e = s == SCHEMA_REWARD ? write_reward(b, &rec->reward) : write_stage(b, &rec->stage);
    out->len = (size_t)(e - b);
    out->data[out->len] = '\0';
    return EVENT_OK;
}

event_err codec_encode_avro(codec *c, codec_schema s, const codec_record *rec, buf *out, char *err, size_t errlen)
{
    if (s == SCHEMA_REWARD || s == SCHEMA_STAGE_CHANGE)
        return encode_output(s, rec, out, err, errlen);
    return codec_encode_avro_library(c, s, rec, out, err, errlen);
}

event_err codec_encode_avro_library(codec *c, codec_schema s, const codec_record *rec, buf *out, char *err,
                                    size_t errlen)
{
    avro_value_t *v = &c->value[s];
    int rc;
    avro_value_reset(v);
    switch (s) {
    case SCHEMA_TOUCHPOINT: rc = encode_touchpoint(&rec->tp, v); break;
    case SCHEMA_REWARD: rc = encode_reward(&rec->reward, v); break;
    case SCHEMA_STAGE_CHANGE: rc = encode_stage(&rec->stage, v); break;
    case SCHEMA_CREDIT: rc = encode_credit(&rec->credit, v); break;
    default: rc = -1;
    }
    if (rc != 0) {
        snprintf(err, errlen, "avro encode: %s", avro_strerror());
        return EVENT_ERR_MALFORMED;
    }
    /* Write into the room the buffer has (an output is a few hundred bytes):
     * only a record that does not fit is measured (avro_value_sizeof walks
     * the whole value) and written again. */
    buf_reset(out);
    if (buf_reserve(out, 1024) != 0) {
        snprintf(err, errlen, "out of memory");
        return EVENT_ERR_NO_MEMORY;
    }
    avro_writer_memory_set_dest(c->writer, out->data, (int64_t)(out->cap - 1));
    if (avro_value_write(c->writer, v) == 0) {
        out->len = (size_t)avro_writer_tell(c->writer);
        out->data[out->len] = '\0';
        return EVENT_OK;
    }
    size_t size = 0;
    if (avro_value_sizeof(v, &size) != 0) {
        snprintf(err, errlen, "avro encode: %s", avro_strerror());
        return EVENT_ERR_MALFORMED;
    }
    if (buf_reserve(out, size) != 0) {
        snprintf(err, errlen, "out of memory");
        return EVENT_ERR_NO_MEMORY;
    }
    avro_writer_memory_set_dest(c->writer, out->data, (int64_t)size);
    if (avro_value_write(c->writer, v) != 0) {
        snprintf(err, errlen, "avro write: %s", avro_strerror());
        return EVENT_ERR_MALFORMED;
    }
    out->len = size;
    out->data[size] = '\0';
    return EVENT_OK;
}

const char *codec_record_key(const codec_record *rec)
{
    switch (rec->schema) {
    case SCHEMA_TOUCHPOINT: return rec->tp.customer_id;
    case SCHEMA_REWARD: return rec->reward.customer_id;
    case SCHEMA_STAGE_CHANGE: return rec->stage.customer_id;
    case SCHEMA_CREDIT: return rec->credit.customer_id;
    default: return "";
    }
}

void codec_record_free(codec_record *rec) { touchpoint_free(&rec->tp); }
