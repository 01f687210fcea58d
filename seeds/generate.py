#!/usr/bin/env python3
"""Generate seeds/demo.jsonl: deterministic customer journeys (see README.md).

Run: python3 seeds/generate.py > seeds/demo.jsonl
The output depends on nothing but this file (fixed random seed, fixed dates)."""
import json
import random
from datetime import datetime, timedelta, timezone

rng = random.Random(2026)
START = datetime(2026, 8, 3, tzinfo=timezone.utc)  # a Monday; the journeys run to end of October
events = []


def at(day, hour=12, minute=0, second=0, ms=0):
    return START + timedelta(days=day, hours=hour, minutes=minute, seconds=second, milliseconds=ms)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def ev(cust, typ, when, channel, payload=None, attributes=None):
    e = {"customer_id": cust, "type": typ, "channel": channel, "occurred_at": iso(when), "payload": payload}
    if attributes:
        e["attributes"] = attributes
    events.append((when, len(events), e))


def cid(n):
    return "cust-%04d" % n


order_seq = [0]


def purchase(c, when, euros, channel="store", store=True, attributes=None):
    order_seq[0] += 1
    oid = "ord-%05d" % order_seq[0]
    ev(c, "PURCHASE", when, channel, {"order_id": oid, "amount_cents": int(round(euros * 100)), "currency": "EUR",
                                      "store_id": ("store-%02d" % rng.randint(1, 12)) if store else None}, attributes)
    return oid


def signup(c, when, channel="web", referred_by=None):
    ev(c, "SIGNUP", when, channel, {"referred_by": referred_by})


def app_use(c, when, seconds=None, feature=None):
    ev(c, "APP_USE", when, "app", {"session_seconds": seconds or rng.randint(30, 900), "feature": feature})


def share(c, when, network="instagram", content=None):
    ev(c, "SOCIAL_SHARE", when, "social", {"network": network, "content_id": content})


# 1-3: lookers, seen once through a profile update only -> lifecycle awareness
for n in range(1, 4):
    ev(cid(n), "PROFILE_UPDATE", at(n * 5, 10), ["call_center", "web", "email"][n - 1],
       {"completeness": [0.3, 0.45, 0.2][n - 1]})

# 4-8: app regulars: daily app use (one reward a day), newsletter, full profile -> engagement: activated
for n in range(4, 9):
    c = cid(n)
    d0 = n
    signup(c, at(d0, 9), "app")
    ev(c, "NEWSLETTER_OPT_IN", at(d0, 9, 5), "email")
    ev(c, "PROFILE_UPDATE", at(d0 + 1, 20), "app", {"completeness": 0.5})
    ev(c, "PROFILE_UPDATE", at(d0 + 2, 20), "app", {"completeness": 0.9})
    for k in range(10 + n):
        app_use(c, at(d0 + k, 8 + rng.randint(0, 10), rng.randint(0, 59)), feature=rng.choice([None, "catalog", "wallet"]))
        if k % 4 == 0:  # a second session the same day earns nothing more
            app_use(c, at(d0 + k, 21, 30))
    ev(c, "NEWSLETTER_OPT_IN", at(d0 + 30, 9), "email")  # a second opt-in earns nothing (once)

# 9-11: social fans: five shares in one ISO week (three rewarded), invitations without an invitee
for n in range(9, 12):
    c = cid(n)
    signup(c, at(n, 11), "social")
    for k in range(5):
        share(c, at(14 + k, 18), rng.choice(["instagram", "tiktok", "facebook"]), "post-%d" % (n * 10 + k))
    share(c, at(21, 18), "instagram")  # next ISO week: rewarded again
    ev(c, "REFERRAL", at(22, 19), "social", {"invitee_id": None})
    if n == 9:  # activated through app use, then participating
        for k in range(3):
            app_use(c, at(23 + k, 8))

# 12-20: first-time buyers -> lifecycle conversion
for n in range(12, 21):
    c = cid(n)
    signup(c, at(n, 14), rng.choice(["web", "store"]))
    purchase(c, at(n + 3, 15), rng.choice([19.99, 35.5, 72.0, 149.9, 12.0]), rng.choice(["store", "web"]))

# 21-30: regulars; 21-24 buy three times in one calendar month
for n in range(21, 31):
    c = cid(n)
    signup(c, at(n - 20, 10), "store")
    ev(c, "NEWSLETTER_OPT_IN", at(n - 19, 10), "email")
    if n <= 24:
        for k in range(3):
            purchase(c, at(30 + k * 7, 16), 40 + 10 * k)  # Sep 2, 9, 16
        purchase(c, at(60, 16), 55)  # October: the first of that month
    else:
        for k in range(2 + n % 3):
            purchase(c, at(5 + k * 29, 16), rng.randint(15, 120) + 0.99, rng.choice(["store", "web", "app"]))

# 31-33: big spenders -> tier silver, gold; 33 is refunded after reaching gold
for n in range(31, 34):
    c = cid(n)
    signup(c, at(1, 12), "store")
    amounts = {31: [300, 250, 280, 320], 32: [900, 1200, 800, 1100, 950], 33: [1500, 1600, 1400, 900]}[n]
    orders = []
    for k, a in enumerate(amounts):
        orders.append(purchase(c, at(3 + k * 12, 17), a + 0.5))
    if n == 33:
        ev(c, "REFUND", at(70, 10), "store", {"order_id": orders[-1], "amount_cents": 90050})  # full, earned at gold
        ev(c, "REFUND", at(71, 10), "store", {"order_id": orders[0], "amount_cents": 20000})   # partial, earned at bronze
        ev(c, "REFUND", at(72, 10), "store", {"order_id": orders[0], "amount_cents": 30000})   # the same order again

# 34-37 refer 38-41; 38-40 buy (both sides rewarded, referrer -> citizen); 41 never buys
for i, n in enumerate(range(34, 38)):
    c, invitee = cid(n), cid(n + 4)
    signup(c, at(2 + i, 9), "app")
    for k in range(3):
        app_use(c, at(3 + i + k, 9))
    share(c, at(6 + i, 19), "facebook")
    ev(c, "REFERRAL", at(7 + i, 20), "app", {"invitee_id": invitee})
    signup(invitee, at(9 + i, 13), "web", referred_by=c)
    if n != 37:
        purchase(invitee, at(12 + i, 15), 64.9, "web", store=False)
        purchase(invitee, at(40 + i, 15), 20.0, "web", store=False)

# 42-44: refunds: partial, full, and refund of two orders
for n in range(42, 45):
    c = cid(n)
    signup(c, at(n - 30, 10), "web")
    o1 = purchase(c, at(n - 28, 11), 120.0, "web")
    o2 = purchase(c, at(n - 20, 11), 80.0, "store")
    if n == 42:
        ev(c, "REFUND", at(n - 25, 11), "web", {"order_id": o1, "amount_cents": 4550})
    elif n == 43:
        ev(c, "REFUND", at(n - 18, 11), "store", {"order_id": o2, "amount_cents": 8000})
    else:
        ev(c, "REFUND", at(n - 25, 11), "web", {"order_id": o1, "amount_cents": 12000})
        ev(c, "REFUND", at(n - 18, 11), "store", {"order_id": o2, "amount_cents": 1000})

# 45-47: redemptions: accepted, rejected (too few points), exactly at the balance
for n in range(45, 48):
    c = cid(n)
    signup(c, at(n - 40, 10), "web")  # 100
    purchase(c, at(n - 38, 11), 100.0)  # 100 + 300 first purchase -> balance 500
    cost = {45: 250, 46: 900, 47: 500}[n]
    ev(c, "REDEMPTION", at(n - 30, 12), "web", {"redemption_id": "rdm-%d" % n, "reward_code": "VOUCHER-%d" % cost,
                                                "cost_points": cost})

# 48: night owl: app use at the edges of UTC days
c = cid(48)
signup(c, at(10, 22), "app")
app_use(c, at(10, 23, 59, 59, 999))
app_use(c, at(11, 0, 0, 0, 0))      # next UTC day: rewarded
app_use(c, at(11, 0, 0, 0, 1))      # same day: not rewarded

# 49: month-end shopper: Aug 31 23:59, Sep 1 00:00, then two more in September
c = cid(49)
signup(c, at(20, 10), "web")
purchase(c, datetime(2026, 8, 31, 23, 59, 59, 999000, tzinfo=timezone.utc), 30.0, "web")
purchase(c, datetime(2026, 9, 1, 0, 0, 0, tzinfo=timezone.utc), 30.0, "web")
purchase(c, datetime(2026, 9, 15, 10, 0, 0, tzinfo=timezone.utc), 30.0, "web")
purchase(c, datetime(2026, 9, 30, 23, 59, 59, 999000, tzinfo=timezone.utc), 30.0, "web")  # third in September

# 50: partner shopper with campaign attributes
c = cid(50)
signup(c, at(15, 10), "partner")
for k in range(3):
    purchase(c, at(16 + k * 20, 12), 45.0 + k, "partner", attributes={"campaign": "autumn-26", "partner": "megamall"})

events.sort(key=lambda x: (x[0], x[1]))
for i, (_, _, e) in enumerate(events, 1):
    out = {"event_id": "ev-%06d" % i}
    out.update(e)
    print(json.dumps(out, separators=(",", ":")))
