/* program.h - the rule program: earning rules, limits, ladders, tiers and
 * quadrant scores, loaded from YAML (config/rules.yaml documents the language)
 * and validated before anything runs. Pure data: no Kafka, no Redis. */
#ifndef FIDELIO_PROGRAM_H
#define FIDELIO_PROGRAM_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "event.h"
#include "cond_vars.h"
#include "expr.h"

#define PROGRAM_MAX_RULES 32
#define PROGRAM_MAX_LADDERS 8
#define PROGRAM_MAX_STAGES 16
#define PROGRAM_ID_MAX 64
#define PROGRAM_MAX_RENAMES 4    /* former names per stage (renamed_from) */
#define PROGRAM_MAX_RETIRED 32   /* retired_stages entries */
/* "ladder:stage": how the namespace registry and retired_stages name a stage. */
#define PROGRAM_STAGE_REF_MAX (2 * PROGRAM_ID_MAX + 1)
/* The program digest: "sha256:" + 64 hex digits. */
#define PROGRAM_DIGEST_MAX 71
/* Basis points: 10000 = 1.0. Rates and multipliers are exact integers. */
#define BP_ONE 10000

typedef enum quadrant { QUADRANT_USER, QUADRANT_CONSUMER, QUADRANT_BUYER, QUADRANT_COUNT } quadrant;

typedef enum limit_kind {
    LIMIT_NONE,
    LIMIT_ONCE,        /* once per customer, ever */
    LIMIT_MAX,         /* at most max awards per window */
    LIMIT_NTH,         /* once per window, on the nth matching event in it */
} limit_kind;

typedef enum window_kind { WINDOW_NONE, WINDOW_DAY, WINDOW_ISO_WEEK, WINDOW_MONTH } window_kind;

typedef enum action_kind {
    ACTION_AWARD,      /* earn points (fixed or per currency unit) */
    ACTION_REVERSE,    /* REFUND: reverse a per-unit PURCHASE rule's points of the refunded amount */
    ACTION_REDEEM,     /* REDEMPTION: spend cost_points if the balance allows */
} action_kind;

typedef enum beneficiary { BENEFICIARY_SELF, BENEFICIARY_REFERRER } beneficiary;

typedef struct rule {
    char id[PROGRAM_ID_MAX + 1];
    char description[128];   /* starts the reason of its rewards; defaults to the id */
    unsigned long line;      /* in the program file, for messages */
    event_type on;           /* trigger */
    int32_t when;            /* condition root in the pool, -1 = always */
    bool has_from, has_until;
    int64_t from_ms, until_ms; /* campaign validity on event time: from <= t < until */
    action_kind action;
    int64_t points;          /* ACTION_AWARD fixed points (when rate_bp == 0) */
    int64_t rate_bp;         /* ACTION_AWARD points per whole currency unit, in bp; 0 = fixed */
    bool tier_multiplier;    /* multiply by the multiplier of the tier held before the event */
    beneficiary to;          /* who earns; BENEFICIARY_REFERRER produces a credit */
    int reverses;            /* ACTION_REVERSE: index of the reversed rule */
    limit_kind limit;
    window_kind window;
    int max;                 /* LIMIT_MAX */
    int nth;                 /* LIMIT_NTH */
} rule;

typedef struct stage {
    char name[PROGRAM_ID_MAX + 1];
    int32_t when;            /* condition root, -1 = always */
    int64_t multiplier_bp;   /* tier ladders only */
    unsigned long line;
    char renamed_from[PROGRAM_MAX_RENAMES][PROGRAM_ID_MAX + 1]; /* former names: stored profiles at them read as this stage */
    int nrenamed;
} stage;

typedef struct ladder {
    char id[PROGRAM_ID_MAX + 1];
    stage stages[PROGRAM_MAX_STAGES];
    int nstages;
    bool can_downgrade;      /* default false: stages only move up */
    bool is_tier;            /* its stages carry multipliers */
    unsigned long line;
} ladder;

typedef struct program {
    char version[EVENT_ID_MAX + 1];
    char digest[PROGRAM_DIGEST_MAX + 1]; /* of the content (YAML nodes, not comments or layout) */
    char retired[PROGRAM_MAX_RETIRED][PROGRAM_STAGE_REF_MAX + 1]; /* "ladder:stage" deliberately dropped */
    int nretired;
    char source[512];        /* file it was loaded from, or "(built-in default)" */
    rule rules[PROGRAM_MAX_RULES];
    int nrules;
    ladder ladders[PROGRAM_MAX_LADDERS];
    int nladders;
    int tier_ladder;         /* index of the tier ladder, -1 if none */
    int64_t half_life_ms;    /* score decay; 0 = no decay */
    double weights[QUADRANT_COUNT][EVENT_TYPE_COUNT];
    int orders_max_records;  /* per-order earn records kept per customer */
    int64_t orders_max_age_ms; /* and for how long (event time) */
    int by_type[EVENT_TYPE_COUNT][PROGRAM_MAX_RULES]; /* rule indexes per trigger, in program order */
    int nby_type[EVENT_TYPE_COUNT];
    int purchase_unit_rules; /* per_unit PURCHASE rules: order records made per purchase */
    expr_pool pool;          /* every condition's nodes */
} program;

/* Load path (or, if path is NULL or empty, the built-in default: the
 * config/rules.yaml of the source tree, compiled into the binary). Returns 0,
 * or -1 with err naming file, line and rule or ladder id. prog must be
 * freed with program_free() either way. */
int program_load(program *prog, const char *path, char *err, size_t errlen);
/* Load from text, reporting errors against name. */
int program_load_text(program *prog, const char *name, const char *text, char *err, size_t errlen);
void program_free(program *prog);

/* A readable summary (rules, ladders, tiers) for `fidelio check`. */
int program_summary(const program *prog, buf *out);

/* Lookups by id; -1 if absent. */
int program_rule_index(const program *prog, const char *id);
int program_ladder_index(const program *prog, const char *id);
int program_stage_index(const ladder *l, const char *name);
/* The stage a stored stage name reads as: its own name, or a stage that
 * declares it in renamed_from; -1 if neither. */
int program_stage_lookup(const ladder *l, const char *name);

/* Stages stored in a namespace ("ladder:stage", as its registry holds them)
 * that this program cannot read back: neither a stage of it, nor a former
 * name declared by renamed_from, nor in retired_stages. Each is appended to
 * out, ", "-separated. Returns how many, or -1 when out of memory. */
int program_orphaned_stages(const program *prog, const char *const *stored, size_t n, buf *out);
/* Every "ladder:stage" a profile written under this program may hold (its
 * stages and their former names), each followed by '\n', appended to out. */
int program_stage_refs(const program *prog, buf *out);

const char *quadrant_name(quadrant q);


#endif
