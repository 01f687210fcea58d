/* program.c - loads and validates the rule program (config/rules.yaml). */
#include "program.h"

#include <ctype.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "embedded.h"
#include "timeutil.h"
#include "yamlutil.h"

static const char *const quadrant_names[QUADRANT_COUNT] = {"user", "consumer", "buyer"};

const char *quadrant_name(quadrant q) { return (unsigned)q < QUADRANT_COUNT ? quadrant_names[q] : "?"; }

/* Loader state: the document and where errors go. */
typedef struct loader {
    program *prog;
    yaml_document_t *doc;
    const char *name;      /* file name for messages */
    char *err;
    size_t errlen;
    const char *what;      /* "rule 'x'" or "ladder 'y'" being loaded, for messages */
} loader;

static int errat(loader *ld, const yaml_node_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int errat(loader *ld, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(ld->err, ld->errlen, "%s:%lu: %s%s%s", ld->name, n ? yaml_line(n) : 0UL, ld->what ? ld->what : "",
             ld->what ? ": " : "", msg);
    return -1;
}

static yaml_node_t *node(loader *ld, int id) { return yaml_document_get_node(ld->doc, id); }

/* Reject keys of map not in allowed (NULL-terminated). */
static int only_keys(loader *ld, yaml_node_t *map, const char *where, const char *const *allowed)
{
    if (map->type != YAML_MAPPING_NODE)
        return errat(ld, map, "%s must be a mapping", where);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(ld, p->key);
        const char *key = yaml_scalar(k);
        int ok = 0;
        for (const char *const *a = allowed; key && *a; a++)
            if (!strcmp(*a, key))
                ok = 1;
        if (!ok)
            return errat(ld, k, "unknown key '%s' in %s", key ? key : "?", where);
    }
    return 0;
}

static int get_int(loader *ld, yaml_node_t *n, const char *key, long long min, long long max, long long *out)
{
    const char *s = yaml_scalar(n);
    char *end;
    if (!s)
        return errat(ld, n, "%s must be a number", key);
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < min || v > max)
        return errat(ld, n, "%s must be a whole number in %lld..%lld, not '%s'", key, min, max, s);
    *out = v;
    return 0;
}

/* A decimal with at most 4 places as basis points, exactly. */
static int get_bp(loader *ld, yaml_node_t *n, const char *key, int64_t *out)
{
    const char *s = yaml_scalar(n), *p = s;
    int64_t whole = 0, frac = 0;
    int places = 0;
    if (!s || !isdigit((unsigned char)*p))
        return errat(ld, n, "%s must be a positive decimal like 1.25", key);
    while (isdigit((unsigned char)*p) && whole < 1000000)
        whole = whole * 10 + (*p++ - '0');
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p) && places < 4) {
            frac = frac * 10 + (*p++ - '0');
            places++;
        }
    }
    if (*p)
        return errat(ld, n, "%s must be a decimal with at most 4 places below 1000000, not '%s'", key, s);
    while (places++ < 4)
        frac *= 10;
    *out = whole * BP_ONE + frac;
    return 0;
}

static int get_bool(loader *ld, yaml_node_t *n, const char *key, bool *out)
{
    const char *s = yaml_scalar(n);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes"))) {
        *out = true;
        return 0;
    }
    if (s && (!strcmp(s, "false") || !strcmp(s, "no"))) {
        *out = false;
        return 0;
    }
    return errat(ld, n, "%s must be true or false", key);
}

static int get_id(loader *ld, yaml_node_t *n, const char *key, char *out)
{
    const char *s = yaml_scalar(n);
    if (!s || !*s || strlen(s) > PROGRAM_ID_MAX)
        return errat(ld, n, "%s must be a name of 1 to %d characters", key, PROGRAM_ID_MAX);
    for (const char *p = s; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' || *p == '_'))
            return errat(ld, n, "%s '%s' may hold only a-z, 0-9, '-' and '_'", key, s);
    strcpy(out, s);
    return 0;
}

int program_rule_index(const program *prog, const char *id)
{
    for (int i = 0; i < prog->nrules; i++)
        if (!strcmp(prog->rules[i].id, id))
            return i;
    return -1;
}

int program_ladder_index(const program *prog, const char *id)
{
    for (int i = 0; i < prog->nladders; i++)
        if (!strcmp(prog->ladders[i].id, id))
            return i;
    return -1;
}

int program_stage_index(const ladder *l, const char *name)
{
    for (int i = 0; i < l->nstages; i++)
        if (!strcmp(l->stages[i].name, name))
            return i;
    return -1;
}

int program_stage_lookup(const ladder *l, const char *name)
{
    int i = program_stage_index(l, name);
    for (int k = 0; i < 0 && k < l->nstages; k++)
        for (int r = 0; r < l->stages[k].nrenamed; r++)
            if (!strcmp(l->stages[k].renamed_from[r], name))
                return k;
    return i;
}

/* ---- condition names ---------------------------------------------------------- */

typedef struct resolve_ctx {
    program *prog;
    int in_rule;         /* event and payload names allowed */
    event_type on;       /* the rule's trigger */
} resolve_ctx;

static const struct {
    const char *name;
    program_var var;
    expr_type type;
    int on;              /* -1: profile; -2: any event (rules only); else the payload's type */
    int on2;             /* a second type that has the field, or -1 */
} names[] = {
    {"events", VAR_EVENTS, EXPR_NUM, -1, -1},
    {"signed_up", VAR_SIGNED_UP, EXPR_BOOL, -1, -1},
    {"referred", VAR_REFERRED, EXPR_BOOL, -1, -1},
    {"purchases", VAR_PURCHASES, EXPR_NUM, -1, -1},
    {"purchase_cents", VAR_PURCHASE_CENTS, EXPR_NUM, -1, -1},
    {"refunded_cents", VAR_REFUNDED_CENTS, EXPR_NUM, -1, -1},
    {"referrals_sent", VAR_REFERRALS_SENT, EXPR_NUM, -1, -1},
    {"referrals_converted", VAR_REFERRALS_CONVERTED, EXPR_NUM, -1, -1},
    {"balance", VAR_BALANCE, EXPR_NUM, -1, -1},
    {"lifetime_earned", VAR_LIFETIME_EARNED, EXPR_NUM, -1, -1},
    {"redeemed", VAR_REDEEMED, EXPR_NUM, -1, -1},
    {"channel", VAR_CHANNEL, EXPR_STR, -2, -1},
    {"completeness", VAR_COMPLETENESS, EXPR_NUM, EVENT_PROFILE_UPDATE, -1},
    {"session_seconds", VAR_SESSION_SECONDS, EXPR_NUM, EVENT_APP_USE, -1},
    {"feature", VAR_FEATURE, EXPR_STR, EVENT_APP_USE, -1},
    {"network", VAR_NETWORK, EXPR_STR, EVENT_SOCIAL_SHARE, -1},
    {"content_id", VAR_CONTENT_ID, EXPR_STR, EVENT_SOCIAL_SHARE, -1},
    {"invitee_id", VAR_INVITEE_ID, EXPR_STR, EVENT_REFERRAL, -1},
    {"order_id", VAR_ORDER_ID, EXPR_STR, EVENT_PURCHASE, EVENT_REFUND},
    {"amount_cents", VAR_AMOUNT_CENTS, EXPR_NUM, EVENT_PURCHASE, EVENT_REFUND},
    {"currency", VAR_CURRENCY, EXPR_STR, EVENT_PURCHASE, -1},
    {"store_id", VAR_STORE_ID, EXPR_STR, EVENT_PURCHASE, -1},
    {"redemption_id", VAR_REDEMPTION_ID, EXPR_STR, EVENT_REDEMPTION, -1},
    {"reward_code", VAR_REWARD_CODE, EXPR_STR, EVENT_REDEMPTION, -1},
    {"cost_points", VAR_COST_POINTS, EXPR_NUM, EVENT_REDEMPTION, -1},
    {"referred_by", VAR_REFERRED_BY, EXPR_STR, EVENT_SIGNUP, -1},
};

static int resolve(void *vctx, const char *name, expr_var *out, char *err, size_t errlen)
{
    resolve_ctx *ctx = vctx;
    program *prog = ctx->prog;
    if (!strncmp(name, "count.", 6)) {
        int t = event_type_parse(name + 6);
        if (t < 0) {
            snprintf(err, errlen, "'%s': count. takes an event type such as count.APP_USE", name);
            return -1;
        }
        *out = (expr_var){.var = VAR_COUNT, .arg = t, .type = EXPR_NUM};
        return 0;
    }
    if (!strncmp(name, "stage.", 6) || !strcmp(name, "tier")) {
        int l = !strcmp(name, "tier") ? prog->tier_ladder : program_ladder_index(prog, name + 6);
        if (l < 0) {
            snprintf(err, errlen, "'%s': no such ladder (ladders are declared before rules)", name);
            return -1;
        }
        *out = (expr_var){.var = VAR_STAGE, .ladder = l, .type = EXPR_STAGE};
        return 0;
    }
    if (!strncmp(name, "score.", 6)) {
        for (int q = 0; q < QUADRANT_COUNT; q++)
            if (!strcmp(name + 6, quadrant_names[q])) {
                *out = (expr_var){.var = VAR_SCORE, .arg = q, .type = EXPR_NUM};
                return 0;
            }
        snprintf(err, errlen, "'%s': score. takes user, consumer or buyer", name);
        return -1;
    }
    if (!strncmp(name, "attributes.", 11) && name[11]) {
        if (!ctx->in_rule) {
            snprintf(err, errlen, "'%s': stage conditions see the profile only, not the event", name);
            return -1;
        }
        char *key = strdup(name + 11);
        if (!key) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        *out = (expr_var){.var = VAR_ATTRIBUTE, .type = EXPR_STR, .str = key};
        return 0;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(names[i].name, name))
            continue;
        if (names[i].on != -1 && !ctx->in_rule) {
            snprintf(err, errlen, "'%s': stage conditions see the profile only, not the event", name);
            return -1;
        }
        if (names[i].on >= 0 && names[i].on != (int)ctx->on && names[i].on2 != (int)ctx->on) {
            snprintf(err, errlen, "'%s' is a field of %s events, and this rule is on %s", name,
                     event_type_name((event_type)names[i].on), event_type_name(ctx->on));
            return -1;
        }
        *out = (expr_var){.var = names[i].var, .type = names[i].type};
        return 0;
    }
    snprintf(err, errlen, "unknown name '%s'", name);
    return -1;
}

static int stage_ordinal(void *vctx, int l, const char *name)
{
    resolve_ctx *ctx = vctx;
    return program_stage_index(&ctx->prog->ladders[l], name);
}

static int compile(loader *ld, yaml_node_t *n, int in_rule, event_type on, int32_t *root)
{
    const char *text = yaml_scalar(n);
    char why[512];
    resolve_ctx ctx = {.prog = ld->prog, .in_rule = in_rule, .on = on};
    if (!text)
        return errat(ld, n, "when must be a condition such as \"purchases >= 2\"");
    if (expr_compile(&ld->prog->pool, text, resolve, stage_ordinal, &ctx, root, why, sizeof(why)) != 0)
        return errat(ld, n, "when: %s", why);
    return 0;
}

/* ---- sections ------------------------------------------------------------------ */

static int load_scores(loader *ld, yaml_node_t *n)
{
    static const char *const keys[] = {"half_life_days", "weights", NULL};
    program *prog = ld->prog;
    if (only_keys(ld, n, "scores", keys))
        return -1;
    yaml_node_t *h = yaml_map_get(ld->doc, n, "half_life_days");
    if (h) {
        long long days;
        if (get_int(ld, h, "half_life_days", 0, 36500, &days))
            return -1;
        prog->half_life_ms = days * TIME_MS_PER_DAY;
    }
    yaml_node_t *w = yaml_map_get(ld->doc, n, "weights");
    if (!w)
        return 0;
    static const char *const quadrant_keys[] = {"user", "consumer", "buyer", NULL};
    if (only_keys(ld, w, "scores.weights", quadrant_keys))
        return -1;
    for (int q = 0; q < QUADRANT_COUNT; q++) {
        yaml_node_t *m = yaml_map_get(ld->doc, w, quadrant_names[q]);
        if (!m)
            continue;
        if (m->type != YAML_MAPPING_NODE)
            return errat(ld, m, "scores.weights.%s must map event types to weights", quadrant_names[q]);
        for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
            yaml_node_t *k = node(ld, p->key), *v = node(ld, p->value);
            int t = yaml_scalar(k) ? event_type_parse(yaml_scalar(k)) : -1;
            if (t < 0)
                return errat(ld, k, "'%s' is not an event type", yaml_scalar(k) ? yaml_scalar(k) : "?");
            const char *s = yaml_scalar(v);
            char *end;
            double x = s ? strtod(s, &end) : -1;
            if (!s || end == s || *end || !(x >= 0 && x <= 1e6))
                return errat(ld, v, "a weight is a number from 0 to 1000000");
            prog->weights[q][t] = x;
        }
    }
    return 0;
}

static int load_orders(loader *ld, yaml_node_t *n)
{
    static const char *const keys[] = {"max_records", "max_age_days", NULL};
    long long v;
    if (only_keys(ld, n, "orders", keys))
        return -1;
    yaml_node_t *m = yaml_map_get(ld->doc, n, "max_records");
    if (m) {
        if (get_int(ld, m, "orders.max_records", 1, 100000, &v))
            return -1;
        ld->prog->orders_max_records = (int)v;
    }
    m = yaml_map_get(ld->doc, n, "max_age_days");
    if (m) {
        if (get_int(ld, m, "orders.max_age_days", 1, 36500, &v))
            return -1;
        ld->prog->orders_max_age_ms = v * TIME_MS_PER_DAY;
    }
    return 0;
}

/* renamed_from: a former stage name or a list of them. */
static int load_renamed_from(loader *ld, yaml_node_t *n, stage *sg)
{
    if (yaml_scalar(n))
        return get_id(ld, n, "renamed_from", sg->renamed_from[sg->nrenamed++]);
    if (n->type != YAML_SEQUENCE_NODE)
        return errat(ld, n, "renamed_from is a former stage name or a list of them");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        if (sg->nrenamed == PROGRAM_MAX_RENAMES)
            return errat(ld, n, "renamed_from holds at most %d names", PROGRAM_MAX_RENAMES);
        if (get_id(ld, node(ld, *it), "renamed_from", sg->renamed_from[sg->nrenamed++]))
            return -1;
    }
    return 0;
}

/* retired_stages: "ladder:stage" entries this program deliberately drops. */
static int load_retired(loader *ld, yaml_node_t *n)
{
    program *prog = ld->prog;
    if (n->type != YAML_SEQUENCE_NODE)
        return errat(ld, n, "retired_stages is a list of \"ladder:stage\"");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *e = node(ld, *it);
        const char *v = yaml_scalar(e), *colon = v ? strchr(v, ':') : NULL;
        char lad[PROGRAM_ID_MAX + 1], st[PROGRAM_ID_MAX + 1];
        if (prog->nretired == PROGRAM_MAX_RETIRED)
            return errat(ld, e, "retired_stages holds at most %d entries", PROGRAM_MAX_RETIRED);
        if (!colon || colon == v || (size_t)(colon - v) > PROGRAM_ID_MAX || strlen(colon + 1) > PROGRAM_ID_MAX)
            return errat(ld, e, "retired_stages entries are \"ladder:stage\", not '%s'", v ? v : "?");
        snprintf(lad, sizeof(lad), "%.*s", (int)(colon - v), v);
        snprintf(st, sizeof(st), "%s", colon + 1);
        int l = program_ladder_index(prog, lad);
        if (l >= 0 && program_stage_lookup(&prog->ladders[l], st) >= 0)
            return errat(ld, e, "retired stage '%s' is a stage (or a former name of one) of this program", v);
        snprintf(prog->retired[prog->nretired++], sizeof(prog->retired[0]), "%s", v);
    }
    return 0;
}

static int load_ladder(loader *ld, yaml_node_t *n)
{
    static const char *const keys[] = {"id", "stages", "can_downgrade", "description", NULL};
    static const char *const stage_keys[] = {"name", "when", "multiplier", "renamed_from", NULL};
    program *prog = ld->prog;
    char what[128];
    if (prog->nladders == PROGRAM_MAX_LADDERS)
        return errat(ld, n, "more than %d ladders", PROGRAM_MAX_LADDERS);
    ladder *l = &prog->ladders[prog->nladders];
    memset(l, 0, sizeof(*l));
    l->line = yaml_line(n);
    if (n->type != YAML_MAPPING_NODE)
        return errat(ld, n, "a ladder is a mapping with id and stages");
    yaml_node_t *id = yaml_map_get(ld->doc, n, "id");
    if (!id)
        return errat(ld, n, "a ladder needs an id");
    if (get_id(ld, id, "ladder id", l->id))
        return -1;
    snprintf(what, sizeof(what), "ladder '%s'", l->id);
    ld->what = what;
    if (only_keys(ld, n, "a ladder", keys))
        return -1;
    if (program_ladder_index(prog, l->id) >= 0)
        return errat(ld, id, "ladder id is declared twice");
    yaml_node_t *cd = yaml_map_get(ld->doc, n, "can_downgrade");
    if (cd && get_bool(ld, cd, "can_downgrade", &l->can_downgrade))
        return -1;
    yaml_node_t *st = yaml_map_get(ld->doc, n, "stages");
    if (!st || st->type != YAML_SEQUENCE_NODE || st->data.sequence.items.top == st->data.sequence.items.start)
        return errat(ld, st ? st : n, "stages must be a list of {name, when}");
    int with_mult = 0;
    /* Stages are registered as they load, so a later stage may name an earlier one. */
    prog->nladders++;
    for (yaml_node_item_t *it = st->data.sequence.items.start; it < st->data.sequence.items.top; it++) {
        yaml_node_t *s = node(ld, *it);
        if (l->nstages == PROGRAM_MAX_STAGES)
            return errat(ld, s, "more than %d stages", PROGRAM_MAX_STAGES);
        stage *sg = &l->stages[l->nstages];
        memset(sg, 0, sizeof(*sg));
        sg->line = yaml_line(s);
        sg->when = -1;
        if (only_keys(ld, s, "a stage", stage_keys))
            return -1;
        yaml_node_t *nm = yaml_map_get(ld->doc, s, "name");
        if (!nm || get_id(ld, nm, "stage name", sg->name))
            return nm ? -1 : errat(ld, s, "a stage needs a name");
        if (program_stage_index(l, sg->name) >= 0)
            return errat(ld, nm, "stage '%s' is declared twice", sg->name);
        yaml_node_t *w = yaml_map_get(ld->doc, s, "when");
        if (w && compile(ld, w, 0, EVENT_SIGNUP, &sg->when))
            return -1;
        yaml_node_t *m = yaml_map_get(ld->doc, s, "multiplier");
        if (m) {
            if (get_bp(ld, m, "multiplier", &sg->multiplier_bp))
                return -1;
            if (sg->multiplier_bp <= 0)
                return errat(ld, m, "multiplier must be above 0");
            with_mult++;
        }
        yaml_node_t *rf = yaml_map_get(ld->doc, s, "renamed_from");
        if (rf && load_renamed_from(ld, rf, sg))
            return -1;
        l->nstages++;
    }
    /* a former name is no current stage and belongs to one stage only */
    for (int a = 0; a < l->nstages; a++)
        for (int r = 0; r < l->stages[a].nrenamed; r++) {
            const char *old_name = l->stages[a].renamed_from[r];
            if (program_stage_index(l, old_name) >= 0)
                return errat(ld, n, "stage '%s': renamed_from '%s' is a stage of this ladder", l->stages[a].name,
                             old_name);
            for (int b = 0; b < l->nstages; b++)
                for (int q = 0; q < l->stages[b].nrenamed; q++)
                    if ((b != a || q != r) && !strcmp(l->stages[b].renamed_from[q], old_name))
                        return errat(ld, n, "renamed_from '%s' is declared twice in this ladder", old_name);
        }
    if (with_mult && with_mult != l->nstages)
        return errat(ld, st, "a tier ladder gives every stage a multiplier");
    if (with_mult) {
        if (prog->tier_ladder >= 0)
            return errat(ld, n, "only one ladder may carry multipliers (the tier ladder)");
        l->is_tier = true;
        prog->tier_ladder = prog->nladders - 1;
    }
    ld->what = NULL;
    return 0;
}

static int parse_window(loader *ld, yaml_node_t *n, window_kind *out)
{
    const char *s = yaml_scalar(n);
    if (s && !strcmp(s, "day"))
        *out = WINDOW_DAY;
    else if (s && (!strcmp(s, "iso_week") || !strcmp(s, "week")))
        *out = WINDOW_ISO_WEEK;
    else if (s && !strcmp(s, "month"))
        *out = WINDOW_MONTH;
    else
        return errat(ld, n, "per must be day, iso_week or month (UTC, event time)");
    return 0;
}

static int load_limit(loader *ld, rule *r, yaml_node_t *n)
{
    static const char *const keys[] = {"max", "nth", "per", NULL};
    const char *s = yaml_scalar(n);
    if (s) {
        if (strcmp(s, "once"))
            return errat(ld, n, "limit is once, {max: N, per: WINDOW} or {nth: N, per: WINDOW}");
        r->limit = LIMIT_ONCE;
        return 0;
    }
    if (only_keys(ld, n, "limit", keys))
        return -1;
    yaml_node_t *mx = yaml_map_get(ld->doc, n, "max"), *nth = yaml_map_get(ld->doc, n, "nth"),
                *per = yaml_map_get(ld->doc, n, "per");
    long long v;
    if (!per || (!mx == !nth))
        return errat(ld, n, "limit takes per and one of max or nth");
    if (parse_window(ld, per, &r->window))
        return -1;
    if (mx) {
        if (get_int(ld, mx, "max", 1, 1000000, &v))
            return -1;
        r->limit = LIMIT_MAX;
        r->max = (int)v;
    } else {
        if (get_int(ld, nth, "nth", 1, 1000000, &v))
            return -1;
        r->limit = LIMIT_NTH;
        r->nth = (int)v;
    }
    return 0;
}

static int load_award(loader *ld, rule *r, yaml_node_t *n)
{
    static const char *const keys[] = {"points", "per_unit", "tier_multiplier", NULL};
    long long v;
    if (yaml_scalar(n))
        return get_int(ld, n, "award", 0, 1000000000, &v) ? -1 : (r->points = v, 0);
    if (only_keys(ld, n, "award", keys))
        return -1;
    yaml_node_t *pts = yaml_map_get(ld->doc, n, "points"), *pu = yaml_map_get(ld->doc, n, "per_unit"),
                *tm = yaml_map_get(ld->doc, n, "tier_multiplier");
    if (!pts == !pu)
        return errat(ld, n, "award takes points or per_unit (points per whole currency unit)");
    if (pts) {
        if (get_int(ld, pts, "points", 0, 1000000000, &v))
            return -1;
        r->points = v;
    } else {
        if (r->on != EVENT_PURCHASE)
            return errat(ld, pu, "per_unit awards need an amount: only on PURCHASE");
        if (get_bp(ld, pu, "per_unit", &r->rate_bp))
            return -1;
        if (r->rate_bp == 0)
            return errat(ld, pu, "per_unit must be above 0");
    }
    if (tm && get_bool(ld, tm, "tier_multiplier", &r->tier_multiplier))
        return -1;
    if (r->tier_multiplier && ld->prog->tier_ladder < 0)
        return errat(ld, tm, "tier_multiplier needs a ladder with multipliers");
    return 0;
}

static int get_time(loader *ld, yaml_node_t *n, const char *key, int64_t *out)
{
    const char *s = yaml_scalar(n);
    if (!s || time_parse_iso8601(s, out) != 0)
        return errat(ld, n, "%s must be an ISO-8601 date-time with a zone, like 2026-06-01T00:00:00Z", key);
    return 0;
}

static int load_rule(loader *ld, yaml_node_t *n, yaml_node_t **reverse_refs)
{
    static const char *const keys[] = {"id", "description", "on", "when", "award", "to", "limit", "valid",
                                       "reverse", "redeem", NULL};
    program *prog = ld->prog;
    char what[128];
    if (prog->nrules == PROGRAM_MAX_RULES)
        return errat(ld, n, "more than %d rules", PROGRAM_MAX_RULES);
    rule *r = &prog->rules[prog->nrules];
    memset(r, 0, sizeof(*r));
    r->line = yaml_line(n);
    r->when = -1;
    r->reverses = -1;
    if (n->type != YAML_MAPPING_NODE)
        return errat(ld, n, "a rule is a mapping with id, on and an action");
    yaml_node_t *id = yaml_map_get(ld->doc, n, "id");
    if (!id)
        return errat(ld, n, "a rule needs an id");
    if (get_id(ld, id, "rule id", r->id))
        return -1;
    snprintf(what, sizeof(what), "rule '%s'", r->id);
    ld->what = what;
    if (only_keys(ld, n, "a rule", keys))
        return -1;
    if (program_rule_index(prog, r->id) >= 0)
        return errat(ld, id, "rule id is declared twice");
    yaml_node_t *d = yaml_map_get(ld->doc, n, "description");
    snprintf(r->description, sizeof(r->description), "%s", d && yaml_scalar(d) ? yaml_scalar(d) : r->id);
    yaml_node_t *on = yaml_map_get(ld->doc, n, "on");
    int t = on && yaml_scalar(on) ? event_type_parse(yaml_scalar(on)) : -1;
    if (t < 0)
        return errat(ld, on ? on : n, "on must be an event type (SIGNUP, PURCHASE, ...)");
    r->on = (event_type)t;
    yaml_node_t *w = yaml_map_get(ld->doc, n, "when");
    if (w && compile(ld, w, 1, r->on, &r->when))
        return -1;
    yaml_node_t *award = yaml_map_get(ld->doc, n, "award"), *rev = yaml_map_get(ld->doc, n, "reverse"),
                *red = yaml_map_get(ld->doc, n, "redeem");
    if ((award != NULL) + (rev != NULL) + (red != NULL) != 1)
        return errat(ld, n, "a rule has exactly one action: award, reverse or redeem");
    if (award) {
        r->action = ACTION_AWARD;
        if (load_award(ld, r, award))
            return -1;
    } else if (rev) {
        r->action = ACTION_REVERSE;
        if (r->on != EVENT_REFUND)
            return errat(ld, rev, "reverse works on REFUND events");
        if (!yaml_scalar(rev))
            return errat(ld, rev, "reverse names the per_unit PURCHASE rule to reverse");
        *reverse_refs = rev; /* resolved once every rule is known */
    } else {
        bool yes;
        r->action = ACTION_REDEEM;
        if (get_bool(ld, red, "redeem", &yes))
            return -1;
        if (!yes || r->on != EVENT_REDEMPTION)
            return errat(ld, red, "redeem: true works on REDEMPTION events");
        for (int i = 0; i < prog->nrules; i++)
            if (prog->rules[i].action == ACTION_REDEEM)
                return errat(ld, red, "only one rule may redeem (rule '%s' does)", prog->rules[i].id);
    }
    yaml_node_t *to = yaml_map_get(ld->doc, n, "to");
    if (to) {
        const char *s = yaml_scalar(to);
        if (s && !strcmp(s, "self"))
            r->to = BENEFICIARY_SELF;
        else if (s && !strcmp(s, "referrer"))
            r->to = BENEFICIARY_REFERRER;
        else
            return errat(ld, to, "to is self or referrer");
        if (r->action != ACTION_AWARD)
            return errat(ld, to, "to applies to awards only");
    }
    yaml_node_t *lim = yaml_map_get(ld->doc, n, "limit");
    if (lim) {
        if (r->action != ACTION_AWARD)
            return errat(ld, lim, "limits apply to awards only");
        if (load_limit(ld, r, lim))
            return -1;
    }
    yaml_node_t *valid = yaml_map_get(ld->doc, n, "valid");
    if (valid) {
        static const char *const vkeys[] = {"from", "until", NULL};
        if (only_keys(ld, valid, "valid", vkeys))
            return -1;
        yaml_node_t *f = yaml_map_get(ld->doc, valid, "from"), *u = yaml_map_get(ld->doc, valid, "until");
        if ((f && get_time(ld, f, "valid.from", &r->from_ms)) || (u && get_time(ld, u, "valid.until", &r->until_ms)))
            return -1;
        r->has_from = f != NULL;
        r->has_until = u != NULL;
        if (f && u && r->from_ms >= r->until_ms)
            return errat(ld, valid, "valid.from must be before valid.until");
    }
    prog->nrules++;
    ld->what = NULL;
    return 0;
}

static int load_root(loader *ld, yaml_node_t *root)
{
    static const char *const keys[] = {"version", "scores", "orders", "ladders", "rules", "retired_stages", NULL};
    program *prog = ld->prog;
    yaml_node_t *reverse_refs[PROGRAM_MAX_RULES] = {0};
    if (!root)
        return errat(ld, NULL, "the rule program is empty");
    if (only_keys(ld, root, "the rule program", keys))
        return -1;
    yaml_node_t *v = yaml_map_get(ld->doc, root, "version");
    if (!v || !yaml_scalar(v) || !*yaml_scalar(v) || strlen(yaml_scalar(v)) > EVENT_ID_MAX)
        return errat(ld, v ? v : root, "version is required: a string of 1 to %d characters", EVENT_ID_MAX);
    strcpy(prog->version, yaml_scalar(v));
    yaml_node_t *s = yaml_map_get(ld->doc, root, "scores");
    if (s && load_scores(ld, s))
        return -1;
    yaml_node_t *o = yaml_map_get(ld->doc, root, "orders");
    if (o && load_orders(ld, o))
        return -1;
    yaml_node_t *lad = yaml_map_get(ld->doc, root, "ladders");
    if (lad) {
        if (lad->type != YAML_SEQUENCE_NODE)
            return errat(ld, lad, "ladders must be a list");
        for (yaml_node_item_t *it = lad->data.sequence.items.start; it < lad->data.sequence.items.top; it++)
            if (load_ladder(ld, node(ld, *it)))
                return -1;
    }
    yaml_node_t *ret = yaml_map_get(ld->doc, root, "retired_stages");
    if (ret && load_retired(ld, ret))
        return -1;
    yaml_node_t *rules = yaml_map_get(ld->doc, root, "rules");
    if (!rules || rules->type != YAML_SEQUENCE_NODE)
        return errat(ld, rules ? rules : root, "rules must be a list");
    for (yaml_node_item_t *it = rules->data.sequence.items.start; it < rules->data.sequence.items.top; it++)
        if (load_rule(ld, node(ld, *it), &reverse_refs[prog->nrules]))
            return -1;
    for (int i = 0; i < prog->nrules; i++) {
        if (!reverse_refs[i])
            continue;
        rule *r = &prog->rules[i];
        char what[128];
        snprintf(what, sizeof(what), "rule '%s'", r->id);
        ld->what = what;
        int target = program_rule_index(prog, yaml_scalar(reverse_refs[i]));
        if (target < 0)
            return errat(ld, reverse_refs[i], "reverse: no rule '%s'", yaml_scalar(reverse_refs[i]));
        if (prog->rules[target].on != EVENT_PURCHASE || prog->rules[target].rate_bp == 0)
            return errat(ld, reverse_refs[i], "reverse: '%s' is not a per_unit PURCHASE rule", prog->rules[target].id);
        /* A refund is the invitee's event: reversing here would take the referrer's
         * points from the invitee, who never received them. Refused (issue 7 case 8). */
        if (prog->rules[target].to == BENEFICIARY_REFERRER)
            return errat(ld, reverse_refs[i],
                         "reverse: '%s' awards to the referrer; a refund cannot take those points back (it would "
                         "take them from the invitee): reverse only rules that award to self",
                         prog->rules[target].id);
        r->reverses = target;
        ld->what = NULL;
    }
    for (int i = 0; i < prog->nrules; i++) {
        event_type t = prog->rules[i].on;
        prog->by_type[t][prog->nby_type[t]++] = i;
        prog->purchase_unit_rules += prog->rules[i].rate_bp > 0;
    }
    return 0;
}

static void program_init(program *prog)
{
    memset(prog, 0, sizeof(*prog));
    prog->tier_ladder = -1;
    prog->orders_max_records = 256;
    prog->orders_max_age_ms = 400 * TIME_MS_PER_DAY;
}

/* ---- the content digest ------------------------------------------------------------ */

#define DIGEST_MAX_DEPTH 64
#define DIGEST_MAX_NODES 100000

typedef struct digester {
    loader *ld;
    long nodes;   /* visited (aliases visit a node again: bounded) */
} digester;

/* SHA-256 of a node's content: scalars by value, sequences in order, mappings
 * as the sorted set of their (key, value) pairs, so quoting, comments,
 * layout and key order do not change it; rule order does. */
static int cmp_pair(const void *a, const void *b) { return memcmp(a, b, 64); }

static int node_digest(digester *dg, yaml_node_t *n, int depth, unsigned char out[32])
{
    if (depth > DIGEST_MAX_DEPTH || ++dg->nodes > DIGEST_MAX_NODES)
        return errat(dg->ld, n, "the program is nested deeper than %d levels or has more than %d nodes",
                     DIGEST_MAX_DEPTH, DIGEST_MAX_NODES);
    unsigned char *in = NULL;
    size_t len = 0;
    int rc = 0;
    if (n->type == YAML_SCALAR_NODE) {
        len = 1 + n->data.scalar.length;
        in = malloc(len);
        if (in) {
            in[0] = 's';
            memcpy(in + 1, n->data.scalar.value, n->data.scalar.length);
        }
    } else if (n->type == YAML_SEQUENCE_NODE) {
        size_t k = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
        len = 1 + 32 * k;
        in = malloc(len);
        if (in) {
            in[0] = 'q';
            for (size_t i = 0; i < k && rc == 0; i++)
                rc = node_digest(dg, node(dg->ld, n->data.sequence.items.start[i]), depth + 1, in + 1 + 32 * i);
        }
    } else {
        size_t k = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
        len = 1 + 64 * k;
        in = malloc(len);
        if (in) {
            in[0] = 'm';
            for (size_t i = 0; i < k && rc == 0; i++) {
                yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
                rc = node_digest(dg, node(dg->ld, p->key), depth + 1, in + 1 + 64 * i);
                if (rc == 0)
                    rc = node_digest(dg, node(dg->ld, p->value), depth + 1, in + 1 + 64 * i + 32);
            }
            if (rc == 0)
                qsort(in + 1, k, 64, cmp_pair);
        }
    }
    if (!in) {
        snprintf(dg->ld->err, dg->ld->errlen, "%s: out of memory", dg->ld->name);
        return -1;
    }
    unsigned int olen = 0;
    if (rc == 0 && EVP_Digest(in, len, out, &olen, EVP_sha256(), NULL) != 1) {
        snprintf(dg->ld->err, dg->ld->errlen, "%s: SHA-256 failed", dg->ld->name);
        rc = -1;
    }
    free(in);
    return rc;
}

static int program_digest(loader *ld, yaml_node_t *root)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[32];
    digester dg = {.ld = ld};
    if (node_digest(&dg, root, 0, d) != 0)
        return -1;
    char *o = ld->prog->digest;
    memcpy(o, "sha256:", 7);
    for (int i = 0; i < 32; i++) {
        o[7 + 2 * i] = hex[d[i] >> 4];
        o[8 + 2 * i] = hex[d[i] & 15];
    }
    o[71] = '\0';
    return 0;
}

/* Parse text (or, when text is NULL, the file name) as a program. */
static int load(program *prog, const char *name, const char *text, char *err, size_t errlen)
{
    yaml_document_t doc;
    program_init(prog);
    snprintf(prog->source, sizeof(prog->source), "%s", name);
    if (yaml_load(name, text, &doc, err, errlen) != 0)
        return -1;
    loader ld = {.prog = prog, .doc = &doc, .name = name, .err = err, .errlen = errlen};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = load_root(&ld, root);
    if (rc == 0)
        rc = program_digest(&ld, root);
    yaml_document_delete(&doc);
    return rc;
}

/* ---- the namespace's stages ----------------------------------------------------------- */

int program_orphaned_stages(const program *prog, const char *const *stored, size_t n, buf *out)
{
    int orphans = 0;
    for (size_t i = 0; i < n; i++) {
        const char *ref = stored[i], *colon = strchr(ref, ':');
        bool known = false;
        if (colon) {
            char lad[PROGRAM_STAGE_REF_MAX + 1];
            snprintf(lad, sizeof(lad), "%.*s", (int)(colon - ref), ref);
            int l = program_ladder_index(prog, lad);
            known = l >= 0 && program_stage_lookup(&prog->ladders[l], colon + 1) >= 0;
        }
        for (int r = 0; !known && r < prog->nretired; r++)
            known = !strcmp(prog->retired[r], ref);
        if (known)
            continue;
        if (buf_printf(out, "%s%s", orphans ? ", " : "", ref) != 0)
            return -1;
        orphans++;
    }
    return orphans;
}

int program_stage_refs(const program *prog, buf *out)
{
    for (int l = 0; l < prog->nladders; l++)
        for (int s = 0; s < prog->ladders[l].nstages; s++) {
            const stage *st = &prog->ladders[l].stages[s];
            if (buf_printf(out, "%s:%s\n", prog->ladders[l].id, st->name) != 0)
                return -1;
            for (int r = 0; r < st->nrenamed; r++)
                if (buf_printf(out, "%s:%s\n", prog->ladders[l].id, st->renamed_from[r]) != 0)
                    return -1;
        }
    return 0;
}

int program_load_text(program *prog, const char *name, const char *text, char *err, size_t errlen)
{
    return load(prog, name, text, err, errlen);
}

int program_load(program *prog, const char *path, char *err, size_t errlen)
{
    if (!path || !*path)
        return load(prog, "(built-in default rules.yaml)", embedded_rules_yaml, err, errlen);
    return load(prog, path, NULL, err, errlen);
}

void program_free(program *prog) { expr_pool_free(&prog->pool); }

static const char *window_name(window_kind w)
{
    return w == WINDOW_DAY ? "UTC day" : w == WINDOW_ISO_WEEK ? "ISO week" : w == WINDOW_MONTH ? "calendar month" : "";
}

int program_summary(const program *prog, buf *out)
{
    int rc = buf_printf(out, "# rule program %s (version %s, digest %s): %d rules, %d ladders\n", prog->source,
                        prog->version, prog->digest, prog->nrules, prog->nladders);
    /* the id column is as wide as the longest id, so the columns after it line up */
    int idw = 1;
    for (int i = 0; i < prog->nrules; i++)
        if ((int)strlen(prog->rules[i].id) > idw)
            idw = (int)strlen(prog->rules[i].id);
    for (int i = 0; i < prog->nrules; i++) {
        const rule *r = &prog->rules[i];
        char award[96] = "", limit[96] = "";
        if (r->action == ACTION_REVERSE)
            snprintf(award, sizeof(award), "reverses '%s'", prog->rules[r->reverses].id);
        else if (r->action == ACTION_REDEEM)
            snprintf(award, sizeof(award), "redeems cost_points");
        else if (r->rate_bp)
            snprintf(award, sizeof(award), "%lld.%04lld per currency unit%s", (long long)(r->rate_bp / BP_ONE),
                     (long long)(r->rate_bp % BP_ONE), r->tier_multiplier ? " x tier" : "");
        else
            snprintf(award, sizeof(award), "%lld points%s", (long long)r->points, r->tier_multiplier ? " x tier" : "");
        if (r->limit == LIMIT_ONCE)
            snprintf(limit, sizeof(limit), ", once");
        else if (r->limit == LIMIT_MAX)
            snprintf(limit, sizeof(limit), ", at most %d per %s", r->max, window_name(r->window));
        else if (r->limit == LIMIT_NTH)
            snprintf(limit, sizeof(limit), ", on the #%d in a %s", r->nth, window_name(r->window));
        rc |= buf_printf(out, "#   rule %-*s on %-18s %s%s%s\n", idw, r->id, event_type_name(r->on), award,
                         r->to == BENEFICIARY_REFERRER ? " to the referrer" : "", limit);
        /* the details on their own lines, indented under the rule */
        if (r->has_from || r->has_until) {
            char from[40] = "", until[40] = "";
            if (r->has_from)
                time_format_iso8601(r->from_ms, from, sizeof(from));
            if (r->has_until)
                time_format_iso8601(r->until_ms, until, sizeof(until));
            rc |= buf_printf(out, "#        %*s valid %s .. %s (event time; until excluded)\n", idw, "",
                             r->has_from ? from : "(always)", r->has_until ? until : "(open)");
        }
        if (r->when >= 0) {
            const char *text = expr_text(&prog->pool, r->when);
            rc |= buf_printf(out, "#        %*s when %s\n", idw, "", text ? text : "(condition)");
        }
    }
    int lw = 1;
    for (int i = 0; i < prog->nladders; i++)
        if ((int)strlen(prog->ladders[i].id) > lw)
            lw = (int)strlen(prog->ladders[i].id);
    for (int i = 0; i < prog->nladders; i++) {
        const ladder *l = &prog->ladders[i];
        rc |= buf_printf(out, "#   ladder %-*s ", lw, l->id);
        for (int s = 0; s < l->nstages; s++) {
            rc |= buf_printf(out, "%s%s", s ? " -> " : "", l->stages[s].name);
            if (l->is_tier)
                rc |= buf_printf(out, " (x%lld.%02lld)", (long long)(l->stages[s].multiplier_bp / BP_ONE),
                                 (long long)(l->stages[s].multiplier_bp % BP_ONE / 100));
            for (int r = 0; r < l->stages[s].nrenamed; r++)
                rc |= buf_printf(out, " (was %s)", l->stages[s].renamed_from[r]);
        }
        rc |= buf_printf(out, "%s\n", l->can_downgrade ? " (can downgrade)" : "");
        for (int s = 0; s < l->nstages; s++) {
            const char *text = l->stages[s].when >= 0 ? expr_text(&prog->pool, l->stages[s].when) : NULL;
            rc |= buf_printf(out, "#          %*s %s: %s%s\n", lw, "", l->stages[s].name, text ? "when " : "always",
                             text ? text : "");
        }
    }
    for (int i = 0; i < prog->nretired; i++)
        rc |= buf_printf(out, "#   retired stage %s\n", prog->retired[i]);
    return rc;
}
