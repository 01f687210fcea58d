#!/usr/bin/env python3
"""Deterministic touchpoint stream for the pipeline's integration tests:
gen_events.py N CUSTOMERS [SEED] > events.jsonl

Every event type but REFERRAL credits: no customer is referred, so no
cross-customer credit races the referrer's own events and the final state
equals `fidelio simulate` over the same file exactly. Refunds refer to
orders the customer made earlier (within the order-record bounds)."""
import json
import random
import sys

n, customers = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
t = 1767225600000  # 2026-01-01T00:00:00Z
orders = {}
for i in range(n):
    t += rng.randint(1, 120000)
    c = "cust-%05d" % rng.randrange(customers)
    k = rng.randrange(100)
    e = {"event_id": "gen-%07d" % i, "customer_id": c, "channel": rng.choice(["store", "web", "app"]),
         "occurred_at": t}
    if k < 35:
        e.update(type="APP_USE", payload={"session_seconds": rng.randint(5, 900), "feature": None})
    elif k < 60:
        oid = "o-%07d" % i
        amt = rng.randint(100, 40000)
        orders.setdefault(c, []).append([oid, amt])
        e.update(type="PURCHASE", payload={"order_id": oid, "amount_cents": amt, "currency": "EUR", "store_id": None})
    elif k < 70:
        e.update(type="SOCIAL_SHARE", payload={"network": "instagram", "content_id": None})
    elif k < 78:
        e.update(type="SIGNUP", payload={"referred_by": None})
    elif k < 83:
        e.update(type="NEWSLETTER_OPT_IN", payload=None)
    elif k < 88:
        e.update(type="PROFILE_UPDATE", payload={"completeness": rng.randint(0, 100) / 100})
    elif k < 91:
        e.update(type="REFERRAL", payload={"invitee_id": None})
    elif k < 95 and orders.get(c):
        o = orders[c][-1]
        amt = min(o[1], rng.randint(1, 5000))
        o[1] -= amt
        if o[1] == 0:
            orders[c].pop()
        e.update(type="REFUND", payload={"order_id": o[0], "amount_cents": amt})
    else:
        e.update(type="REDEMPTION", payload={"redemption_id": "r-%d" % i, "reward_code": "V", "cost_points": rng.choice([100, 500, 2000])})
    print(json.dumps(e, separators=(",", ":")))
