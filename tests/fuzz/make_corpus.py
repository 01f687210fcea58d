#!/usr/bin/env python3
"""Regenerate the seed corpora of tests/fuzz/ from the seeds and scenarios.

    python3 tests/fuzz/make_corpus.py

Small on purpose (libFuzzer grows its own corpus during a run). Every file of
corpus/avro and corpus/json starts with one byte choosing the schema
(0 touchpoint, 1 reward, 2 stage change, 3 credit), as the harnesses read it.
The regression inputs (regress-*) are the crashes issue 8 found: an Avro
touchpoint at occurred_at = INT64_MIN (timeutil overflow), attribute keys with
a NUL inside, and a condition nested 10,000 parentheses deep (stack overflow)."""
import glob, json, os, struct

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
C = os.path.join(here, "corpus")


def put(kind, name, data):
    d = os.path.join(C, kind)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data)


def varint(n):
    z = ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF
    b = b""
    while z >= 0x80:
        b += bytes([(z & 0x7F) | 0x80])
        z >>= 7
    return b + bytes([z])


def s(x):
    x = x.encode() if isinstance(x, str) else x
    return varint(len(x)) + x


TYPES = ["SIGNUP", "PROFILE_UPDATE", "NEWSLETTER_OPT_IN", "APP_USE", "SOCIAL_SHARE", "REFERRAL", "PURCHASE",
         "REFUND", "REDEMPTION"]
BRANCH = {"SIGNUP": 1, "PROFILE_UPDATE": 2, "NEWSLETTER_OPT_IN": 0, "APP_USE": 3, "SOCIAL_SHARE": 4, "REFERRAL": 5,
          "PURCHASE": 6, "REFUND": 7, "REDEMPTION": 8}


def opt(v):
    return varint(0) if v is None else varint(1) + s(v)


def avro_touchpoint(e, at=None):
    p = e.get("payload") or {}
    t = e["type"]
    body = {
        "SIGNUP": lambda: opt(p.get("referred_by")),
        "PROFILE_UPDATE": lambda: struct.pack("<d", p["completeness"]),
        "NEWSLETTER_OPT_IN": lambda: b"",
        "APP_USE": lambda: varint(p["session_seconds"]) + opt(p.get("feature")),
        "SOCIAL_SHARE": lambda: s(p["network"]) + opt(p.get("content_id")),
        "REFERRAL": lambda: opt(p.get("invitee_id")),
        "PURCHASE": lambda: s(p["order_id"]) + varint(p["amount_cents"]) + s(p["currency"]) + opt(p.get("store_id")),
        "REFUND": lambda: s(p["order_id"]) + varint(p["amount_cents"]),
        "REDEMPTION": lambda: s(p["redemption_id"]) + s(p["reward_code"]) + varint(p["cost_points"]),
    }[t]()
    attrs = e.get("attributes") or {}
    amap = (varint(len(attrs)) + b"".join(s(k) + s(v) for k, v in attrs.items()) if attrs else b"") + varint(0)
    when = at if at is not None else 1767225600000
    return (s(e["event_id"]) + s(e["customer_id"]) + varint(TYPES.index(t)) + s(e["channel"]) + varint(when) +
            varint(BRANCH[t]) + body + amap)


# one seed event of each type (the first of its type in the demo seeds)
seeds = [json.loads(l) for l in open(os.path.join(root, "seeds", "demo.jsonl")) if l.strip()]
first = {}
for e in seeds:
    first.setdefault(e["type"], e)
for t, e in sorted(first.items()):
    put("avro", f"seed-{t.lower()}", b"\x00" + avro_touchpoint(e))
    put("json", f"seed-{t.lower()}", b"\x00" + json.dumps(e).encode())

# outputs, as JSON lines (the golden files) for the JSON harness
golden = [json.loads(l) for l in open(os.path.join(root, "tests", "golden", "demo-outputs.jsonl")) if l.strip()]
for kind, key in ((1, "reward_id"), (2, "change_id")):
    for i, o in enumerate([o for o in golden if key in o][:3]):
        put("json", f"seed-output-{kind}-{i}", bytes([kind]) + json.dumps(o).encode())

# regression inputs
put("avro", "regress-occurred-at-int64-min", b"\x00" + avro_touchpoint(first["SIGNUP"], at=-(1 << 63)))
put("avro", "regress-occurred-at-int64-max", b"\x00" + avro_touchpoint(first["SIGNUP"], at=(1 << 63) - 1))
nul = dict(first["NEWSLETTER_OPT_IN"], attributes={"tier\0junk": "gold", "tier\0other": "x"})
put("avro", "regress-attribute-key-nul", b"\x00" + avro_touchpoint(nul))
put("json", "regress-occurred-at-int64-min",
    b"\x01" + json.dumps(dict([o for o in golden if "reward_id" in o][0], occurred_at=-(1 << 63))).encode())

# configuration files
put("config", "seed-shipped", open(os.path.join(root, "config", "fidelio.yaml"), "rb").read())
put("config", "seed-small", b'kafka:\n  bootstrap.servers: "127.0.0.1:9092"\nredis:\n  url: "unix:///run/r.sock?db=2"\n'
    b'pipeline:\n  batch_size: 10\nrules:\n  path: ""\n')

# rule programs: the shipped one and the scenarios' own
put("program", "seed-shipped", open(os.path.join(root, "config", "rules.yaml"), "rb").read())
for f in sorted(glob.glob(os.path.join(root, "tests", "scenarios", "*.json"))):
    y = json.load(open(f)).get("rules_yaml")
    if y:
        put("program", "seed-" + os.path.basename(f)[:-5], y.encode())
deep = "(" * 10000 + "true" + ")" * 10000
put("program", "regress-nesting-10000",
    f'version: v\nrules:\n  - id: deep\n    on: SIGNUP\n    award: 5\n    when: "{deep}"\n'.encode())
