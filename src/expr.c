/* expr.c - recursive-descent compiler of rule conditions. */
#include "expr.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum tok { T_END, T_NUM, T_STR, T_NAME, T_LP, T_RP, T_OP, T_AND, T_OR, T_NOT, T_TRUE, T_FALSE, T_BAD } tok;

typedef struct parser {
    const char *src, *p;
    tok t;                /* current token */
    const char *tstart;   /* where it starts */
    char text[256];       /* its text (names, strings) */
    double num;
    expr_op op;
    expr_pool *pool;
    expr_resolve_fn resolve;
    expr_stage_fn stage;
    void *ctx;
    char *err;
    size_t errlen;
    int failed;
    int depth;            /* parentheses and 'not's open at this point */
} parser;

static int fail(parser *ps, const char *fmt, const char *arg)
{
    if (!ps->failed) {
        char msg[256];
        snprintf(msg, sizeof(msg), fmt, arg);
        snprintf(ps->err, ps->errlen, "%s at column %d of \"%s\"", msg, (int)(ps->tstart - ps->src) + 1, ps->src);
    }
    ps->failed = 1;
    return -1;
}

static int too_deep(parser *ps)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "the condition nests deeper than %d levels (parentheses, 'not', chained 'and'/'or')",
             EXPR_MAX_DEPTH);
    return fail(ps, "%s", msg);
}

/* Enter one level of parser recursion; -1 (and the error) past the bound. */
static int enter(parser *ps)
{
    if (++ps->depth > EXPR_MAX_DEPTH)
        return too_deep(ps);
    return 0;
}

static void next(parser *ps)
{
    while (isspace((unsigned char)*ps->p))
        ps->p++;
    ps->tstart = ps->p;
    char c = *ps->p;
    if (!c) {
        ps->t = T_END;
        return;
    }
    if (isdigit((unsigned char)c) || (c == '-' && isdigit((unsigned char)ps->p[1]))) {
        char *end;
        ps->num = strtod(ps->p, &end);
        ps->p = end;
        ps->t = T_NUM;
        return;
    }
    if (c == '"' || c == '\'') {
        const char *q = strchr(ps->p + 1, c);
        size_t n = q ? (size_t)(q - ps->p - 1) : 0;
        if (!q || n >= sizeof(ps->text)) {
            ps->t = T_BAD;
            return;
        }
        memcpy(ps->text, ps->p + 1, n);
        ps->text[n] = '\0';
        ps->p = q + 1;
        ps->t = T_STR;
        return;
    }
    if (isalpha((unsigned char)c) || c == '_') {
        size_t n = 0;
        while (isalnum((unsigned char)ps->p[n]) || ps->p[n] == '_' || ps->p[n] == '.' || ps->p[n] == '-')
            n++;
        if (n >= sizeof(ps->text)) {
            ps->t = T_BAD;
            return;
        }
        memcpy(ps->text, ps->p, n);
        ps->text[n] = '\0';
        ps->p += n;
        ps->t = !strcmp(ps->text, "and") ? T_AND : !strcmp(ps->text, "or") ? T_OR : !strcmp(ps->text, "not") ? T_NOT
              : !strcmp(ps->text, "true") ? T_TRUE : !strcmp(ps->text, "false") ? T_FALSE : T_NAME;
        return;
    }
    static const struct { const char *s; expr_op op; } ops[] = {
        {"==", OP_EQ}, {"!=", OP_NE}, {"<=", OP_LE}, {">=", OP_GE}, {"<", OP_LT}, {">", OP_GT}};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strncmp(ps->p, ops[i].s, strlen(ops[i].s)) == 0) {
            ps->p += strlen(ops[i].s);
            ps->op = ops[i].op;
            ps->t = T_OP;
            return;
        }
    ps->p++;
    ps->t = c == '(' ? T_LP : c == ')' ? T_RP : T_BAD;
}

static int32_t add(parser *ps, expr_node n)
{
    expr_pool *pool = ps->pool;
    /* children are already in the pool: the tree's depth is known bottom-up */
    unsigned da = 0, db = 0;
    if (n.kind == EX_NOT || n.kind == EX_CMP || n.kind == EX_AND || n.kind == EX_OR)
        da = pool->nodes[n.a].depth;
    if (n.kind == EX_CMP || n.kind == EX_AND || n.kind == EX_OR)
        db = pool->nodes[n.b].depth;
    n.depth = (uint16_t)(1 + (da > db ? da : db));
    if (n.depth > EXPR_MAX_DEPTH) {
        free(n.str);
        return too_deep(ps);
    }
    if (pool->len == pool->cap) {
        size_t cap = pool->cap ? pool->cap * 2 : 64;
        expr_node *a = realloc(pool->nodes, cap * sizeof(*a));
        if (!a) {
            free(n.str);
            return fail(ps, "%s", "out of memory");
        }
        pool->nodes = a;
        pool->cap = cap;
    }
    pool->nodes[pool->len] = n;
    return (int32_t)pool->len++;
}

static int32_t parse_or(parser *ps);

static int32_t parse_primary(parser *ps)
{
    expr_node n = {0};
    switch (ps->t) {
    case T_LP: {
        if (enter(ps) < 0)
            return -1;
        next(ps);
        int32_t i = parse_or(ps);
        ps->depth--;
        if (i < 0)
            return -1;
        if (ps->t != T_RP)
            return fail(ps, "%s", "expected ')'");
        next(ps);
        return i;
    }
    case T_NUM:
        n.kind = EX_NUM;
        n.type = EXPR_NUM;
        n.num = ps->num;
        next(ps);
        return add(ps, n);
    case T_STR:
        n.kind = EX_STR;
        n.type = EXPR_STR;
        if (!(n.str = strdup(ps->text)))
            return fail(ps, "%s", "out of memory");
        next(ps);
        return add(ps, n);
    case T_TRUE:
    case T_FALSE:
        n.kind = EX_BOOL;
        n.type = EXPR_BOOL;
        n.num = ps->t == T_TRUE;
        next(ps);
        return add(ps, n);
    case T_NAME: {
        expr_var v = {0};
        char why[256];
        if (ps->resolve(ps->ctx, ps->text, &v, why, sizeof(why)) != 0)
            return fail(ps, "%s", why);
        n.kind = EX_VAR;
        n.type = (uint8_t)v.type;
        n.var = (int16_t)v.var;
        n.arg = (int16_t)(v.type == EXPR_STAGE ? v.ladder : v.arg);
        n.str = v.str;
        next(ps);
        return add(ps, n);
    }
    case T_END:
        return fail(ps, "%s", "unexpected end of condition");
    default:
        return fail(ps, "%s", "unexpected token");
    }
}

/* A stage compared with a string literal: the literal becomes the stage's ordinal. */
static int stage_literal(parser *ps, int32_t stage_node, int32_t lit)
{
    expr_node *l = &ps->pool->nodes[lit];
    int ord = ps->stage(ps->ctx, ps->pool->nodes[stage_node].arg, l->str);
    if (ord < 0)
        return fail(ps, "'%s' is not a stage of that ladder", l->str);
    free(l->str);
    l->str = NULL;
    l->kind = EX_NUM;
    l->type = EXPR_STAGE;
    l->num = ord;
    return 0;
}

static int32_t parse_cmp(parser *ps)
{
    int32_t a = parse_primary(ps);
    if (a < 0 || ps->t != T_OP)
        return a;
    expr_op op = ps->op;
    const char *at = ps->tstart;
    next(ps);
    int32_t b = parse_primary(ps);
    if (b < 0)
        return -1;
    expr_node *na = &ps->pool->nodes[a], *nb = &ps->pool->nodes[b];
    if (na->type == EXPR_STAGE && nb->kind == EX_STR && stage_literal(ps, a, b) < 0)
        return -1;
    if (nb->type == EXPR_STAGE && na->kind == EX_STR && stage_literal(ps, b, a) < 0)
        return -1;
    na = &ps->pool->nodes[a];
    nb = &ps->pool->nodes[b];
    ps->tstart = at;
    if (na->type != nb->type || (na->type == EXPR_STAGE && na->kind == EX_VAR && nb->kind == EX_VAR && na->arg != nb->arg))
        return fail(ps, "%s", "the two sides of this comparison are of different kinds");
    if (na->type == EXPR_BOOL)
        return fail(ps, "%s", "compare numbers, strings or stages; use the condition itself for a flag");
    if (na->type == EXPR_STR && op != OP_EQ && op != OP_NE)
        return fail(ps, "%s", "strings compare only with == and !=");
    expr_node n = {.kind = EX_CMP, .type = EXPR_BOOL, .op = (uint8_t)op, .a = a, .b = b};
    return add(ps, n);
}

static int32_t parse_not(parser *ps)
{
    if (ps->t != T_NOT)
        return parse_cmp(ps);
    if (enter(ps) < 0)
        return -1;
    next(ps);
    int32_t a = parse_not(ps);
    ps->depth--;
    if (a < 0)
        return -1;
    if (ps->pool->nodes[a].type != EXPR_BOOL)
        return fail(ps, "%s", "'not' takes a condition");
    expr_node n = {.kind = EX_NOT, .type = EXPR_BOOL, .a = a};
    return add(ps, n);
}

static int32_t parse_chain(parser *ps, tok t, expr_kind kind, int32_t (*sub)(parser *))
{
    int32_t a = sub(ps);
    while (a >= 0 && ps->t == t) {
        next(ps);
        int32_t b = sub(ps);
        if (b < 0)
            return -1;
        if (ps->pool->nodes[a].type != EXPR_BOOL || ps->pool->nodes[b].type != EXPR_BOOL)
            return fail(ps, "'%s' joins conditions, not values", t == T_AND ? "and" : "or");
        expr_node n = {.kind = (uint8_t)kind, .type = EXPR_BOOL, .a = a, .b = b};
        a = add(ps, n);
    }
    return a;
}

static int32_t parse_and(parser *ps) { return parse_chain(ps, T_AND, EX_AND, parse_not); }
static int32_t parse_or(parser *ps) { return parse_chain(ps, T_OR, EX_OR, parse_and); }

int expr_compile(expr_pool *pool, const char *text, expr_resolve_fn resolve, expr_stage_fn stage, void *ctx,
                 int32_t *root, char *err, size_t errlen)
{
    parser ps = {.src = text, .p = text, .pool = pool, .resolve = resolve, .stage = stage, .ctx = ctx,
                 .err = err, .errlen = errlen};
    next(&ps);
    int32_t r = parse_or(&ps);
    if (r < 0)
        return -1;
    if (ps.t != T_END)
        return fail(&ps, "%s", "unexpected text after the condition");
    if (pool->nodes[r].type != EXPR_BOOL)
        return fail(&ps, "%s", "a condition must be true or false, not a value");
    if (pool->nsources == pool->sources_cap) {
        size_t cap = pool->sources_cap ? pool->sources_cap * 2 : 16;
        expr_source *a = realloc(pool->sources, cap * sizeof(*a));
        if (!a)
            return fail(&ps, "%s", "out of memory");
        pool->sources = a;
        pool->sources_cap = cap;
    }
    char *copy = strdup(text);
    if (!copy)
        return fail(&ps, "%s", "out of memory");
    pool->sources[pool->nsources++] = (expr_source){.root = r, .text = copy};
    *root = r;
    return 0;
}

const char *expr_text(const expr_pool *pool, int32_t root)
{
    for (size_t i = 0; i < pool->nsources; i++)
        if (pool->sources[i].root == root)
            return pool->sources[i].text;
    return NULL;
}

void expr_pool_free(expr_pool *pool)
{
    for (size_t i = 0; i < pool->len; i++)
        free(pool->nodes[i].str);
    free(pool->nodes);
    pool->nodes = NULL;
    pool->len = pool->cap = 0;
    for (size_t i = 0; i < pool->nsources; i++)
        free(pool->sources[i].text);
    free(pool->sources);
    pool->sources = NULL;
    pool->nsources = pool->sources_cap = 0;
}
