/* event.h - plain C structs for Fidelio's events (the Avro contract in schemas/).
 *
 * No library types leak here: the codec fills these structs from Avro or JSON
 * and encodes them back. Identifier-like strings are stored inline, so an
 * event is one flat struct except for its attributes map. */
#ifndef FIDELIO_EVENT_H
#define FIDELIO_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest identifier-like string (ids, channel, currency, ...), in bytes. */
#define EVENT_ID_MAX 128
/* Longest free-text string (reason), in bytes. */
#define EVENT_TEXT_MAX 512
/* Earliest accepted occurred_at: 2000-01-01T00:00:00Z. */
#define EVENT_MIN_OCCURRED_AT INT64_C(946684800000)
/* Largest amount_cents of a PURCHASE or REFUND: 10^12 cents (ten billion
 * currency units). Larger is refused by validation (amount_too_large). */
#define EVENT_MAX_AMOUNT_CENTS INT64_C(1000000000000)
/* Largest number of points one event or credit may move: 10^15 (cost_points of
 * a REDEMPTION, the points of a credit, one award of a rule). */
#define EVENT_MAX_POINTS INT64_C(1000000000000000)
/* Largest magnitude of a customer's totals (balance, lifetime_earned, redeemed,
 * reversed, purchase_cents, refunded_cents): 10^18, below INT64_MAX. The engine
 * refuses an event that would pass it (total_overflow) and changes nothing:
 * totals never wrap. */
#define EVENT_MAX_TOTAL INT64_C(1000000000000000000)

typedef enum event_type {
    EVENT_SIGNUP,
    EVENT_PROFILE_UPDATE,
    EVENT_NEWSLETTER_OPT_IN,
    EVENT_APP_USE,
    EVENT_SOCIAL_SHARE,
    EVENT_REFERRAL,
    EVENT_PURCHASE,
    EVENT_REFUND,
    EVENT_REDEMPTION,
    EVENT_TYPE_COUNT
} event_type;

/* Every way an input can be rejected. The names (event_err_name) are stable:
 * they are the DLQ's `error` header and what `produce` prints. */
typedef enum event_err {
    EVENT_OK = 0,
    EVENT_ERR_TOO_LARGE,         /* message over limits.max_message_bytes */
    EVENT_ERR_TRUNCATED,         /* a declared length or count runs past the message */
    EVENT_ERR_MALFORMED,         /* not a valid encoding (bad varint, index, trailing bytes, JSON syntax) */
    EVENT_ERR_MISSING_FIELD,     /* a required field is absent or null */
    EVENT_ERR_BAD_FIELD,         /* a field has the wrong JSON type or an unknown name */
    EVENT_ERR_EMPTY_EVENT_ID,    /* event_id is empty */
    EVENT_ERR_EMPTY_CUSTOMER_ID, /* customer_id is empty */
    EVENT_ERR_CUSTOMER_ID_TOO_LONG, /* customer_id over EVENT_ID_MAX bytes */
    EVENT_ERR_CUSTOMER_ID_CHARS, /* customer_id holds '{', '}' or a control byte */
    EVENT_ERR_FIELD_TOO_LONG,    /* another string over its limit */
    EVENT_ERR_BAD_STRING,        /* a string holds a NUL or control byte where none may be */
    EVENT_ERR_UNKNOWN_TYPE,      /* type is not one of the enum symbols */
    EVENT_ERR_PAYLOAD_MISMATCH,  /* payload record does not match type */
    EVENT_ERR_NEGATIVE_AMOUNT,   /* amount_cents, cost_points or session_seconds < 0 */
    EVENT_ERR_COMPLETENESS_RANGE,/* completeness outside [0,1] */
    EVENT_ERR_BAD_CHANNEL,       /* channel empty or not a lower-case token */
    EVENT_ERR_BAD_TIMESTAMP,     /* occurred_at not epoch ms nor ISO-8601 */
    EVENT_ERR_TOO_EARLY,         /* occurred_at before 2000-01-01 */
    EVENT_ERR_IN_FUTURE,         /* occurred_at later than message time + allowed skew */
    EVENT_ERR_AMOUNT_TOO_LARGE,  /* amount_cents over EVENT_MAX_AMOUNT_CENTS, cost_points over EVENT_MAX_POINTS */
    EVENT_ERR_NO_MEMORY,         /* allocation failed (not the input's fault) */
    EVENT_ERR_COUNT
} event_err;

/* One entry of the attributes map; both strings are owned by the event. */
typedef struct event_attr {
    char *key;
    char *value;
} event_attr;

/* A touchpoint (schemas/touchpoint_event.avsc). */
typedef struct touchpoint {
    char event_id[EVENT_ID_MAX + 1];    /* producer-chosen, unique */
    char customer_id[EVENT_ID_MAX + 1]; /* also the Kafka key */
    event_type type;
    char channel[EVENT_ID_MAX + 1];     /* store, web, app, ... */
    int64_t occurred_at;                /* event time, epoch ms UTC */
    union {
        struct {
            bool has_referred_by;             /* false: not referred */
            char referred_by[EVENT_ID_MAX + 1];
        } signup;
        struct {
            double completeness;              /* [0,1] */
        } profile_update;
        struct {
            int32_t session_seconds;          /* >= 0 */
            bool has_feature;
            char feature[EVENT_ID_MAX + 1];
        } app_use;
        struct {
            char network[EVENT_ID_MAX + 1];
            bool has_content_id;
            char content_id[EVENT_ID_MAX + 1];
        } social_share;
        struct {
            bool has_invitee_id;
            char invitee_id[EVENT_ID_MAX + 1];
        } referral;
        struct {
            char order_id[EVENT_ID_MAX + 1];
            int64_t amount_cents;             /* >= 0 */
            char currency[EVENT_ID_MAX + 1];
            bool has_store_id;
            char store_id[EVENT_ID_MAX + 1];
        } purchase;
        struct {
            char order_id[EVENT_ID_MAX + 1];
            int64_t amount_cents;             /* >= 0 */
        } refund;
        struct {
            char redemption_id[EVENT_ID_MAX + 1];
            char reward_code[EVENT_ID_MAX + 1];
            int64_t cost_points;              /* >= 0 */
        } redemption;
    } payload;
    size_t attr_count;  /* entries in attrs */
    size_t attr_cap;    /* entries allocated */
    event_attr *attrs;  /* owned; sorted as decoded */
} touchpoint;

typedef enum reward_kind { REWARD_EARN, REWARD_REVERSAL, REWARD_REDEEM, REWARD_REDEEM_REJECTED, REWARD_KIND_COUNT } reward_kind;

/* A balance change (schemas/reward_event.avsc). */
typedef struct reward_event {
    char reward_id[EVENT_ID_MAX + 1];
    char customer_id[EVENT_ID_MAX + 1];  /* beneficiary */
    reward_kind kind;
    char rule_id[EVENT_ID_MAX + 1];
    int64_t points;                      /* signed */
    int64_t balance_after;
    char source_event_id[EVENT_ID_MAX + 1];
    int64_t occurred_at;
    char reason[EVENT_TEXT_MAX + 1];
    char program_version[EVENT_ID_MAX + 1];
    char program_digest[EVENT_ID_MAX + 1];  /* "" when unknown */
} reward_event;

/* A move on a ladder (schemas/stage_change_event.avsc). */
typedef struct stage_change_event {
    char change_id[EVENT_ID_MAX + 1];
    char customer_id[EVENT_ID_MAX + 1];
    char ladder[EVENT_ID_MAX + 1];
    bool has_from_stage;
    char from_stage[EVENT_ID_MAX + 1];
    char to_stage[EVENT_ID_MAX + 1];
    char source_event_id[EVENT_ID_MAX + 1];
    int64_t occurred_at;
    char program_version[EVENT_ID_MAX + 1];
    char program_digest[EVENT_ID_MAX + 1];
} stage_change_event;

/* Points earned by one customer because of another's event (the referrer's
 * reward): routed through Kafka to the beneficiary's owner (DESIGN.md
 * invariant 6), which applies it with the same dedupe guarantees. */
typedef struct credit_event {
    char credit_id[EVENT_ID_MAX + 1];          /* = the reward id the beneficiary will get */
    char customer_id[EVENT_ID_MAX + 1];        /* beneficiary */
    char source_customer_id[EVENT_ID_MAX + 1]; /* whose event earned it */
    char rule_id[EVENT_ID_MAX + 1];
    int64_t points;
    bool referral;                             /* counts as a converted referral */
    char source_event_id[EVENT_ID_MAX + 1];
    int64_t occurred_at;
    char reason[EVENT_TEXT_MAX + 1];
    char program_version[EVENT_ID_MAX + 1];
    char ns[EVENT_ID_MAX + 1];                 /* Avro "namespace": the producing instance's redis.key_prefix */
    char signature[EVENT_ID_MAX + 1];          /* HMAC-SHA256, hex (credit_auth.h); empty: unsigned */
} credit_event;

/* Limits applied by touchpoint_validate. */
typedef struct event_limits {
    int64_t max_clock_skew_ms;  /* occurred_at may be at most this after the message time */
} event_limits;

/* Stable lower-case name of an error ("customer_id_too_long"). */
const char *event_err_name(event_err err);
/* Upper-case Avro symbol of a type ("PURCHASE"). */
const char *event_type_name(event_type type);
/* Type from its symbol; returns -1 if unknown. */
int event_type_parse(const char *s);
const char *reward_kind_name(reward_kind kind);
int reward_kind_parse(const char *s);

/* Reset an event to empty, keeping its attribute storage for reuse. */
void touchpoint_clear(touchpoint *ev);
/* Free what the event owns. */
void touchpoint_free(touchpoint *ev);
/* Add an attribute (copies both strings). Returns EVENT_OK or EVENT_ERR_NO_MEMORY. */
event_err touchpoint_add_attr(touchpoint *ev, const char *key, size_t klen, const char *val, size_t vlen);
/* Copy an event, attributes included. */
event_err touchpoint_copy(touchpoint *dst, const touchpoint *src);

/* Copy a string of len bytes into dst (cap bytes incl. NUL), rejecting NUL
 * bytes and over-long strings. Names the field in err. */
event_err event_copy_str(char *dst, size_t cap, const char *src, size_t len, const char *field,
                         char *err, size_t errlen);

/* A customer id usable as a Redis hash tag: non-empty, no braces, no
 * control bytes (its length is bounded by the struct). field names it in err. */
event_err event_check_customer_id(const char *id, const char *field, char *err, size_t errlen);

/* Check the semantic rules of a decoded touchpoint: ids, customer_id charset,
 * amounts, completeness, channel, event time against msg_time_ms (the Kafka
 * message timestamp, or now when producing). Fills err on failure. */
event_err touchpoint_validate(const touchpoint *ev, const event_limits *lim, int64_t msg_time_ms,
                              char *err, size_t errlen);

#endif
