#!/usr/bin/env bash
# Outputs keep their customer's order on the output topics: a customer's
# rewards and stage changes (one partition: the key is the customer id) come
# in the order of the events that made them, both when a batch's outputs go
# to librdkafka in one rd_kafka_produce_batch call per topic (the default) and
# when the producer's queue is too small for that and they go one by one,
# waiting for room (kafka.queue.buffering.max.messages=5: every batch call
# would meet a full queue, where librdkafka enqueues the messages after a
# refused one, out of order; src/emitter.c emitter_send_staged).
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli

REDIS_PREFIXES="fidelio: q2:" start_redis
start_dev_kafka --partitions 8 --topic rewards-q:8 --topic stage-q:8 --topic dlq-q:8 --topic credits-q:8
END=$(( ($(date +%s) / 86400) * 86400000 ))
"$FIDELIO" gen -q --customers 150 --events 4000 --seed 11 --end "$END" -o "$WORK/events.jsonl" \
    || fail "gen failed"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/events.jsonl" || fail "produce failed"

# run_idle NAME [ARGS...]: `fidelio run --until-idle` (exits once idle), with ARGS.
run_idle() {
    local name=$1
    shift
    # shellcheck disable=SC2046
    timeout 300 "$FIDELIO" run $(fid_opts) "$@" --until-idle >"$WORK/$name.log" 2>&1 \
        || fail "run --until-idle ($name) failed: $(tail -3 "$WORK/$name.log")"
}

# check_order NAME REWARDS STAGES: each customer's outputs in its events' order.
check_order() {
    local name=$1
    "$FIDELIO" consume -b "$BOOTSTRAP" -t "$2" --schema reward -e >"$WORK/$name.rewards" 2>"$WORK/$name.consume.err" \
        || fail "consume $2: $(tail -3 "$WORK/$name.consume.err")"
    "$FIDELIO" consume -b "$BOOTSTRAP" -t "$3" --schema stage-change -e >"$WORK/$name.stages" \
        2>>"$WORK/$name.consume.err" || fail "consume $3: $(tail -3 "$WORK/$name.consume.err")"
    python3 - "$WORK/events.jsonl" "$WORK/$name.rewards" "$WORK/$name.stages" <<'PY' || fail "$name: outputs out of order"
import json, sys
at = {}  # event_id -> (customer, its position in the input)
for i, line in enumerate(open(sys.argv[1])):
    e = json.loads(line)
    at[e["event_id"]] = (e["customer_id"], i)
checked = 0
for path in sys.argv[2:]:
    last = {}
    for line in open(path):
        o = json.loads(line)
        src = at.get(o["source_event_id"])
        if not src or src[0] != o["customer_id"]:
            continue  # a referral credit's reward: applied when its credit comes back, not in input order
        if src[1] < last.get(o["customer_id"], -1):
            sys.exit(f"{path}: {o['customer_id']}'s output of event #{src[1]} after one of event #{last[o['customer_id']]}")
        last[o["customer_id"]] = src[1]
        checked += 1
if checked < 1000:
    sys.exit(f"only {checked} outputs checked")
print(checked)
PY
}

run_idle batched
n=$(check_order batched rewards stage-changes)
pass "outputs produced per topic in one call: each customer's $n outputs in its events' order"

run_idle queue5 --set kafka.queue.buffering.max.messages=5 --set consumer.group=q2 --set redis.key_prefix=q2: \
    --set topics.rewards=rewards-q --set topics.stage_changes=stage-q --set topics.dlq=dlq-q \
    --set topics.credits=credits-q
applied=$(sed -n 's/.* stopped: \([0-9]*\) touchpoints.*/\1/p' "$WORK/queue5.log" | tail -1)
[ "$applied" = 4000 ] || fail "queue of 5: ${applied:-no} touchpoints consumed of 4000"
n=$(check_order queue5 rewards-q stage-q)
pass "outputs produced one by one through a queue of 5 messages: each customer's $n outputs in its events' order"
done_ok
