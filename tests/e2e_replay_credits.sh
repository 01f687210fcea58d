#!/usr/bin/env bash
# In-process referral credits in batch order (issue 11): `fidelio replay` decides
# a batch's credits in one round, each credit applied right after the event
# that earned it, before the referrer's later events, as `simulate` does. A
# one-partition topic (the replay order is the topic's order) holds referrers
# whose own events and credits interleave: a chain (J -> I1 -> R -> S), a
# referrer crossing the silver and gold thresholds between its own purchases
# (a purchase's points depend on the tier held before it, so a credit applied
# after the purchase that follows it changes the balance), an invitee's first
# purchase published twice within a few events (the same event, and another
# under the same id: in one batch the first apply is refused with the whole
# call, the credit it earned is withdrawn and decided again), and a referral cycle (A and B referred by each
# other). Replayed with batch sizes 1 to 7, 11 and 500 (so the batch boundaries
# fall everywhere, and the referrers are inside or outside the invitee's
# batch), every rebuild's profiles (balance, lifetime points, tier, rule
# states) are byte-identical to `simulate` over the same events. The replays
# take the grouped order (replay --order grouped, the default: each window's
# events customer by customer, credits kept in place); one more with
# --order merge (the topic's order itself) has the same profiles, ledgers and
# report counters as the grouped ones of batch sizes 1, 7 and 500.
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli python3

SIZES="1 2 3 4 5 6 7 11 500"
start_dev_kafka --partitions 1
start_redis
# the replay user (role replay: deploy/redis-acl.conf), granted only the rebuilds' namespaces
read -r -a acl <<<"$(acl_line replay fidelio-replay e2e-replay-pw "$(for n in $SIZES; do printf 'b%s: ' "$n"; done)merge: " | sed 's/^user //')"
redis-cli -s "$REDIS_SOCK" ACL SETUSER "${acl[@]}" >/dev/null || fail "ACL SETUSER fidelio-replay"
RU="unix://fidelio-replay:e2e-replay-pw@$REDIS_SOCK"

python3 - >"$WORK/events.jsonl" <<'PY'
import json
t0 = 1772442000000  # 2026-03-02T09:00:00Z
n = 0
def ev(cust, typ, payload, eid=None):
    global n
    n += 1
    line = json.dumps({"event_id": eid or f"e{n}", "customer_id": cust, "type": typ, "channel": "web",
                       "occurred_at": t0 + n * 3600000, "payload": payload})
    print(line)
    return line
def signup(c, ref=None): ev(c, "SIGNUP", {"referred_by": ref})
def buy(c, cents, eid=None): return ev(c, "PURCHASE", {"order_id": f"o{n + 1}", "amount_cents": cents, "currency": "EUR", "store_id": None}, eid)
signup("S")
signup("R", "S")
signup("I1", "R"); signup("I2", "R")
buy("R", 500)                     # R's first purchase: a credit to S
ev("I1", "NEWSLETTER_OPT_IN", {})
ev("I1", "PROFILE_UPDATE", {"completeness": 0.9})
buy("I1", 1000)                   # a credit to R
buy("R", 800)
buy("I2", 1000)                   # a credit to R: R's lifetime passes 1,000 (silver)
buy("R", 10000)                   # earns at silver (1.25), at bronze had the credit come later
signup("I3", "R"); signup("J", "I1")
buy("I3", 1000, "dup-i3")         # a credit to R ...
ev("R", "APP_USE", {"session_seconds": 30, "feature": None})
buy("I3", 1000, "dup-i3")         # ... and another event under its id (a conflict: to the DLQ)
signup("I14", "R")
again = buy("I14", 1500)          # a credit to R ...
ev("R", "APP_USE", {"session_seconds": 40, "feature": None})
print(again)                      # ... and the same event again (a redelivery)
buy("J", 1000)                    # a credit to I1: I1 passes 1,000 (silver)
buy("I1", 200000)                 # earns at silver
buy("R", 300000)                  # R passes 5,000 (gold)
for k in range(4, 10):            # invitees' first purchases between R's own
    signup(f"I{k}", "R")
    buy(f"I{k}", 1000 * k)
    buy("R", 1000 * k)
signup("A", "B"); signup("B", "A")  # a cycle
buy("A", 1000); buy("B", 1000)
buy("A", 100000); buy("B", 100000)
for k in range(10, 14):
    signup(f"I{k}", "R"); buy("R", 2000); buy(f"I{k}", 500); ev("R", "SOCIAL_SHARE", {"network": "x", "content_id": None})
PY
"$FIDELIO" simulate --profiles "$WORK/sim.profiles" "$WORK/events.jsonl" >/dev/null 2>"$WORK/sim.err" \
    || fail "simulate: $(tail -3 "$WORK/sim.err")"
grep -q '"customer_id":"R"' "$WORK/sim.profiles" || fail "simulate: no profile of R"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/events.jsonl" || fail "produce failed"
EVENTS=$(wc -l <"$WORK/events.jsonl")

for n in $SIZES; do
    # shellcheck disable=SC2046
    "$FIDELIO" replay $(fid_opts) --set redis.url="$RU" --set pipeline.batch_size="$n" --namespace "b$n" --outputs none \
        >"$WORK/b$n.out" 2>"$WORK/b$n.err" || fail "replay, batch size $n: $(tail -3 "$WORK/b$n.err")"
    grep -q "^# replay into namespace b$n: $EVENTS events read" "$WORK/b$n.out" || fail "replay $n: $(head -1 "$WORK/b$n.out")"
    # shellcheck disable=SC2046
    "$FIDELIO" profile $(fid_opts) --set redis.url="$RU" --set redis.key_prefix="b$n:" --all >"$WORK/b$n.profiles" 2>"$WORK/b$n.perr" \
        || fail "profile --all b$n: $(tail -3 "$WORK/b$n.perr")"
    cmp -s "$WORK/b$n.profiles" "$WORK/sim.profiles" \
        || fail "batch size $n: the rebuild differs from simulate: $(diff "$WORK/b$n.profiles" "$WORK/sim.profiles" | head -6)"
    grep -q "; grouped order: [1-9][0-9]* window(s)" "$WORK/b$n.out" || fail "replay $n: not in the grouped order: $(head -1 "$WORK/b$n.out")"
    pass "batch size $n: $(wc -l <"$WORK/b$n.profiles") profiles byte-identical to simulate ($(sed -n 's/.*applied, \(.*\); \([0-9]*\) batches, \([0-9]*\) rounds.*/\2 batches, \3 rounds/p' "$WORK/b$n.out" | head -1))"
done
# the merge's order itself: the same state, ledgers (each entry's place) and report counters included
# shellcheck disable=SC2046
"$FIDELIO" replay $(fid_opts) --set redis.url="$RU" --set pipeline.batch_size=500 --namespace merge --order merge \
    --outputs none >"$WORK/merge.out" 2>"$WORK/merge.err" || fail "replay --order merge: $(tail -3 "$WORK/merge.err")"
grep -q "grouped order" "$WORK/merge.out" && fail "replay --order merge: $(head -1 "$WORK/merge.out")"
custs=$(grep -o '"customer_id":"[^"]*"' "$WORK/sim.profiles" | cut -d'"' -f4)
state() { # ledgers, profiles (v, hw, tn, the profile's pieces p, p1 ... p7: layout 7) and report counters of namespace $1
    for c in $custs; do
        echo "LRANGE $1:{$c}:l 0 -1"
        echo "HMGET $1:{$c}:p v hw tn p p1 p2 p3 p4 p5 p6 p7"
    done | redis-cli -s "$REDIS_SOCK" --no-raw
    redis-cli -s "$REDIS_SOCK" hgetall "$1:aggregates" | paste - - | sort
}
state merge >"$WORK/merge.state"
grep -q 'welcome' "$WORK/merge.state" || fail "no ledger entries read: $(head -3 "$WORK/merge.state")"
for n in 1 7 500; do
    state "b$n" >"$WORK/b$n.state"
    cmp -s "$WORK/b$n.state" "$WORK/merge.state" \
        || fail "batch size $n (grouped) differs from --order merge: $(diff "$WORK/b$n.state" "$WORK/merge.state" | head -6)"
done
pass "--order merge: ledgers, profiles and report counters equal the grouped replays' of batch sizes 1, 7 and 500"
done_ok
