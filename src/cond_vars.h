/* cond_vars.h - the variables a rule condition may name: the vocabulary the
 * program loader (program.c, which resolves names to these ids when it
 * compiles a condition with expr.c) and the engine (rules.c, which reads
 * them when it evaluates one) share. Neither the compiler nor this header
 * knows profiles or events; expr_node.var holds one of these ids. */
#ifndef FIDELIO_COND_VARS_H
#define FIDELIO_COND_VARS_H

/* Variables a condition may name (expr_node.var). */
typedef enum program_var {
    /* profile */
    VAR_EVENTS, VAR_SIGNED_UP, VAR_REFERRED, VAR_PURCHASES, VAR_PURCHASE_CENTS, VAR_REFUNDED_CENTS,
    VAR_REFERRALS_SENT, VAR_REFERRALS_CONVERTED, VAR_BALANCE, VAR_LIFETIME_EARNED, VAR_REDEEMED,
    VAR_COUNT,       /* arg: event type */
    VAR_STAGE,       /* arg: ladder */
    VAR_SCORE,       /* arg: quadrant */
    /* event */
    VAR_CHANNEL, VAR_ATTRIBUTE, /* str: attribute key; "" when absent */
    /* payload (only in rules triggered by the type that has the field) */
    VAR_COMPLETENESS, VAR_SESSION_SECONDS, VAR_FEATURE, VAR_NETWORK, VAR_CONTENT_ID, VAR_INVITEE_ID,
    VAR_ORDER_ID, VAR_AMOUNT_CENTS, VAR_CURRENCY, VAR_STORE_ID, VAR_REDEMPTION_ID, VAR_REWARD_CODE,
    VAR_COST_POINTS, VAR_REFERRED_BY,
} program_var;

#endif
