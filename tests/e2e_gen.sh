#!/usr/bin/env bash
# `fidelio gen`, small size (a smoke test, not a benchmark): deterministic
# (same seed and end: the same bytes; another seed: other events), every
# event valid and accepted by `fidelio simulate` with no reject, every event
# type and the referral credits exercised; written as Avro to a topic it is
# the same stream (counted by kcat, decoded by `fidelio consume`), and
# `fidelio run` over it applies every event and credit and sends nothing to
# the DLQ.
source "$(dirname "$0")/lib.sh"
require kcat redis-server redis-cli python3

END=2026-11-01T00:00:00Z
GEN=(gen --customers 400 --events 6000 --days 20 --end "$END")
"$FIDELIO" "${GEN[@]}" --seed 5 -o "$WORK/a.jsonl" 2>"$WORK/gen.log" || fail "gen: $(cat "$WORK/gen.log")"
"$FIDELIO" "${GEN[@]}" --seed 5 -q -o - >"$WORK/b.jsonl" || fail "gen to stdout"
"$FIDELIO" "${GEN[@]}" --seed 6 -q -o "$WORK/c.jsonl" || fail "gen seed 6"
[ "$(wc -l <"$WORK/a.jsonl")" -eq 6000 ] || fail "gen wrote $(wc -l <"$WORK/a.jsonl") lines, want 6000"
cmp -s "$WORK/a.jsonl" "$WORK/b.jsonl" || fail "the same seed gave different output"
! cmp -s "$WORK/a.jsonl" "$WORK/c.jsonl" || fail "another seed gave the same output"
pass "gen: 6000 events, byte-identical for the same seed, different for another"

# Shape of the stream: every type, times in order and before --end, referrals
# between real customers (the referrer signed up before), refunds of earlier orders.
python3 - "$WORK/a.jsonl" <<'PY' || fail "the generated stream is not what gen promises"
import json, sys
from collections import Counter
from datetime import datetime
end = datetime.fromisoformat("2026-11-01T00:00:00+00:00").timestamp() * 1000
types, signed, orders, last = Counter(), set(), {}, 0
referred = refunds = 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    t = datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")).timestamp() * 1000
    assert last <= t < end, ("time", e)
    last = t
    types[e["type"]] += 1
    c, p = e["customer_id"], e["payload"]
    if e["type"] == "SIGNUP":
        if p["referred_by"]:
            assert p["referred_by"] in signed and p["referred_by"] != c, ("referrer", e)
            referred += 1
        signed.add(c)
    else:
        assert c in signed, ("event before signup", e)
    if e["type"] == "PURCHASE":
        orders[p["order_id"]] = (c, p["amount_cents"])
    if e["type"] == "REFUND":
        oc, amt = orders[p["order_id"]]
        assert oc == c and 0 < p["amount_cents"] <= amt, ("refund", e)
        orders[p["order_id"]] = (oc, amt - p["amount_cents"])
        refunds += 1
missing = {"SIGNUP", "PROFILE_UPDATE", "NEWSLETTER_OPT_IN", "APP_USE", "SOCIAL_SHARE", "REFERRAL",
           "PURCHASE", "REFUND", "REDEMPTION"} - set(types)
assert not missing, ("types never generated", missing)
assert referred >= 5 and refunds >= 50, (referred, refunds)
busiest = Counter(json.loads(l)["customer_id"] for l in open(sys.argv[1])).most_common()
assert busiest[0][1] >= 4 * busiest[len(busiest) // 2][1], ("activity is not skewed", busiest[:3])
PY
pass "every event type; times ordered and before --end; referrers signed up before; refunds of earlier orders"

# --skew 0: every customer in turn (the benchmark's memory run over distinct customers).
"$FIDELIO" gen --customers 50 --events 100 --skew 0 --referrals 0 --end "$END" -q -o "$WORK/rr.jsonl" || fail "gen --skew 0"
[ "$(head -50 "$WORK/rr.jsonl" | grep -o '"customer_id":"[^"]*"' | sort -u | wc -l)" -eq 50 ] \
    || fail "--skew 0: the first 50 events are not 50 distinct customers"
[ "$(grep -c '"type":"SIGNUP"' "$WORK/rr.jsonl")" -eq 50 ] || fail "--skew 0: not one SIGNUP per customer"
pass "--skew 0: each customer in turn"

"$FIDELIO" simulate "$WORK/a.jsonl" --profiles "$WORK/expected.profiles" >"$WORK/sim.out" 2>"$WORK/sim.err" \
    || fail "simulate: $(cat "$WORK/sim.err")"
grep -q "simulate: 6000 events applied, 0 duplicates ignored, 0 invalid, 0 refused by the engine" "$WORK/sim.err" \
    || fail "simulate refused events: $(tail -3 "$WORK/sim.err")"
for rule in welcome profile-data newsletter app-use social-share purchase first-purchase three-in-a-month \
    referral-invitee referral-referrer refund redeem; do
    grep -q "\"rule_id\":\"$rule\"" "$WORK/sim.out" || fail "no reward of rule $rule in simulate's outputs"
done
credits=$(grep -c '"rule_id":"referral-referrer"' "$WORK/sim.out")
grep -q '"kind":"REVERSAL"' "$WORK/sim.out" || fail "no refund reversal"
pass "simulate: 0 rejects; every rule of the default program fires, $credits referral credits"

# Avro straight to a topic: the same events (kcat counts them, consume decodes them).
start_dev_kafka --partitions 4
start_redis
# shellcheck disable=SC2046
"$FIDELIO" "${GEN[@]}" --seed 5 $(fid_opts) -t touchpoints 2>"$WORK/gen-topic.log" || fail "gen -t: $(cat "$WORK/gen-topic.log")"
grep -q "gen: 6000 events to touchpoints" "$WORK/gen-topic.log" || fail "no summary: $(cat "$WORK/gen-topic.log")"
[ "$(count touchpoints)" -eq 6000 ] || fail "the topic holds $(count touchpoints) messages, want 6000"
"$FIDELIO" consume -b "$BOOTSTRAP" -t touchpoints -e 2>/dev/null | sort >"$WORK/topic.jsonl"
sort "$WORK/a.jsonl" | diff -q - "$WORK/topic.jsonl" >/dev/null || fail "the topic's events differ from gen -o's"
pass "gen -t: 6000 Avro events on the topic, decoding to exactly gen -o's lines"

# The pipeline takes all of it: nothing to the DLQ. (Profiles are not compared
# with simulate's: the pipeline applies a referrer's credit when the credits
# topic delivers it, later than simulate, which can change a tier multiplier.)
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) --set pipeline.dedupe_retention_ms=31536000000 --until-idle >"$WORK/run.log" 2>&1 \
    || fail "run: $(tail -3 "$WORK/run.log")"
grep -q "stopped: 6000 touchpoints, $credits credits, 0 duplicates, 0 to the DLQ" "$WORK/run.log" \
    || fail "run: $(grep stopped "$WORK/run.log")"
[ "$(count touchpoints-dlq)" -eq 0 ] || fail "the DLQ holds $(count touchpoints-dlq) messages"
pass "fidelio run: 6000 touchpoints and $credits credits applied, 0 to the DLQ"
done_ok
