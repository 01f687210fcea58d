/* expr.h - the condition language of the rule program.
 *
 *   cond    := or
 *   or      := and ('or' and)*
 *   and     := not ('and' not)*
 *   not     := 'not' not | cmp
 *   cmp     := primary (('=='|'!='|'<'|'<='|'>'|'>=') primary)?
 *   primary := '(' or ')' | NUMBER | 'STRING' | "STRING" | true | false | NAME
 *
 * Names (counters, payload fields, stages...) are resolved at compile time by
 * a callback, and every expression is type-checked then: a rule program that
 * loads never fails a condition at run time. Nodes live in an expr_pool owned
 * by the program; expressions are referred to by the index of their root. */
#ifndef FIDELIO_EXPR_H
#define FIDELIO_EXPR_H

#include <stddef.h>
#include <stdint.h>

/* Deepest nesting a condition may have: parentheses and 'not's while parsing,
 * and the depth of the compiled tree ('and'/'or' chains nest one level per
 * term), so neither the compiler nor the engine's evaluation can run out of
 * stack on a hostile program. */
#define EXPR_MAX_DEPTH 256

typedef enum expr_type { EXPR_BOOL, EXPR_NUM, EXPR_STR, EXPR_STAGE } expr_type;
typedef enum expr_kind { EX_NUM, EX_STR, EX_BOOL, EX_VAR, EX_CMP, EX_AND, EX_OR, EX_NOT } expr_kind;
typedef enum expr_op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE } expr_op;

typedef struct expr_node {
    uint8_t kind;     /* expr_kind */
    uint8_t type;     /* expr_type of the value */
    uint8_t op;       /* expr_op of EX_CMP */
    int16_t var;      /* variable id of EX_VAR: a program_var (cond_vars.h) */
    int16_t arg;      /* variable argument (event type, ladder, quadrant) */
    uint16_t depth;   /* levels of the subtree rooted here (a leaf is 1); <= EXPR_MAX_DEPTH */
    int32_t a, b;     /* children */
    double num;       /* EX_NUM, and EX_BOOL as 0/1 */
    char *str;        /* EX_STR literal, or EX_VAR string argument (attribute key); owned */
} expr_node;

/* The text a condition was compiled from, for people (`fidelio check`). */
typedef struct expr_source {
    int32_t root;     /* the condition's root node */
    char *text;       /* as written; owned */
} expr_source;

typedef struct expr_pool {
    expr_node *nodes;
    size_t len, cap;
    expr_source *sources;      /* one per compiled condition; owned */
    size_t nsources, sources_cap;
} expr_pool;

/* What a name resolves to. */
typedef struct expr_var {
    int var;          /* resolver's id */
    int arg;          /* resolver's argument */
    expr_type type;
    int ladder;       /* for EXPR_STAGE: which ladder, to compare stage names */
    char *str;        /* string argument (malloc'd by the resolver), or NULL */
} expr_var;

/* Resolve name; return 0, or -1 with err naming what is wrong. */
typedef int (*expr_resolve_fn)(void *ctx, const char *name, expr_var *out, char *err, size_t errlen);
/* Ordinal of stage name on ladder, or -1. */
typedef int (*expr_stage_fn)(void *ctx, int ladder, const char *name);

/* Compile text into pool; *root receives the index of the boolean root.
 * Returns 0, or -1 with err saying where (column) and what; a condition
 * nesting deeper than EXPR_MAX_DEPTH is such an error. */
int expr_compile(expr_pool *pool, const char *text, expr_resolve_fn resolve, expr_stage_fn stage, void *ctx,
                 int32_t *root, char *err, size_t errlen);

/* The text the condition rooted at root was compiled from, or NULL. Borrowed
 * from the pool. */
const char *expr_text(const expr_pool *pool, int32_t root);

void expr_pool_free(expr_pool *pool);

#endif
