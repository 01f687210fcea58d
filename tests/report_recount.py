#!/usr/bin/env python3
"""report_recount.py REPORT.json PROFILES.jsonl REWARDS.jsonl [DLQ.jsonl]

Recount the programme's figures from what is stored and published, independently
of Fidelio's aggregates, and compare them with `fidelio report --json`:
customers, stages per ladder, personas, points from every profile
(`fidelio profile --all`); rewards by rule and kind and points per day from the
rewards topic (`fidelio consume -t rewards -e`, re-emissions deduplicated by
reward_id); events applied by type from the profiles' counters; credits from the
referral rewards; the DLQ by reason from the DLQ topic when given (leave it out
where crashes may re-send dead letters). Exit 1 naming every difference."""
import collections
import json
import sys

rep = json.load(open(sys.argv[1]))
profiles = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
rewards = {}
for l in open(sys.argv[3]):
    if l.strip():
        r = json.loads(l)
        rewards[r["reward_id"]] = r
bad = []


def eq(what, got, want):
    if got != want:
        bad.append(f"{what}: report {got}, recounted {want}")


eq("customers", rep["customers"], len(profiles))
for lad in rep["ladders"]:
    want = collections.Counter(p["stages"].get(lad["id"]) for p in profiles)
    for st in lad["stages"]:
        eq(f"ladder {lad['id']} {st['stage']}", st["customers"], want.get(st["stage"], 0))
    eq(f"ladder {lad['id']} no stage", lad["no_stage"], want.get(None, 0))
pc = collections.Counter(p["persona"] for p in profiles)
for k, n in rep["personas"].items():
    eq(f"persona {k}", n, pc.get(None if k == "none" else k, 0))
pts = rep["points"]
eq("issued", pts["issued"], sum(p["lifetime_earned"] for p in profiles))
eq("redeemed", pts["redeemed"], sum(p["redeemed"] for p in profiles))
eq("reversed", pts["reversed"], sum(p["reversed"] for p in profiles))
eq("outstanding", pts["outstanding"], sum(p["balance"] for p in profiles))
by = collections.defaultdict(lambda: [0, 0])
daily = collections.Counter()
for r in rewards.values():
    by[(r["rule_id"], r["kind"])][0] += 1
    by[(r["rule_id"], r["kind"])][1] += r["points"]
    if r["points"]:
        daily[(r["occurred_at"][:10], r["rule_id"])] += r["points"]
eq("rewards by rule", {(w["rule"], w["kind"]): [w["count"], w["points"]] for w in rep["rewards"]}, dict(by))
eq("daily points", {(d["day"], k): v for d in rep["daily"] for k, v in d["points"].items()}, dict(daily))
types = collections.Counter()
for p in profiles:
    types.update({k: v for k, v in p["counts"].items() if v})
types["CREDIT"] = sum(1 for r in rewards.values() if r["rule_id"] == "referral-referrer")
eq("events", {k: v for k, v in rep["events"].items() if v}, {k: v for k, v in types.items() if v})
if len(sys.argv) > 4:
    dlq = collections.Counter(json.loads(l)["error"] for l in open(sys.argv[4]) if l.strip())
    eq("dlq", rep["dlq"], dict(dlq))
eq("complete", rep["complete"], True)
if bad:
    print("\n".join(bad[:20]), file=sys.stderr)
    sys.exit(1)
print(f"report equals the recount: {len(profiles)} customers, {len(rewards)} rewards")
