/* replay_order.h - the order in which one replay process hands a window of
 * touchpoints (a stretch of the merge by timestamp) to the pipeline: customer
 * by customer, each customer's messages of the window together, so a batch
 * holds several events of each of its customers where the merge gives nearly
 * one event per customer per batch (Redis' work is per customer and apply),
 * with the same result.
 *
 * Why the result is the same: a touchpoint of customer X reads and writes X's
 * state and nothing else, except that a touchpoint of a type some rule pays
 * the referrer for (`to: referrer`, on that type) may also write a credit into
 * the state of X's referrer (referred_by, set by X's SIGNUP). Two touchpoints
 * that touch disjoint states commute. So an order that keeps the merge's order
 * between every two touchpoints touching a common customer's state leaves every
 * profile, ledger and dedupe record as the merge does (as `simulate` over the
 * merge does): the order of a customer's own events, and where each credit falls
 * among its referrer's events and other credits. docs/design.md: Replay,
 * "Grouped order". */
#ifndef FIDELIO_REPLAY_ORDER_H
#define FIDELIO_REPLAY_ORDER_H

#include <stddef.h>

typedef struct replay_order replay_order;

/* An empty set of referral links and the window's scratch; NULL when out of memory.
 * The caller owns it (replay_order_free). */
replay_order *replay_order_new(void);
void replay_order_free(replay_order *o);

/* Note that invitee's SIGNUP named referrer (the strings are copied): from the
 * window that holds that SIGNUP on (the whole window: conservative), the
 * invitee's crediting touchpoints keep the merge's order with the referrer's
 * (a referral lasts: it counts for every later window). 0, or -1 when out of
 * memory. */
int replay_order_refer(replay_order *o, const char *invitee, size_t ilen, const char *referrer, size_t rlen);

/* The hand-out order of a window of n touchpoints given in the merge's
 * order: message i is of customer cust[i] (clen[i] bytes: its key; NULL for
 * a message without one, which touches no state) and credits[i] is nonzero
 * when its type can pay its customer's referrer. Writes a permutation of
 * 0 .. n-1 into out: customers in the order of their first message, each
 * with all its messages, a message handed out only after every earlier (in
 * the merge) message touching a state it touches, which brings those
 * forward. 0, or -1 when out of memory (out is then the merge's order). */
int replay_order_window(replay_order *o, size_t n, const char *const *cust, const size_t *clen,
                        const unsigned char *credits, size_t *out);

#endif
