#!/usr/bin/env bash
# Outputs keep their customer's order on the output topics: a customer's
# rewards and stage changes (one partition: the key is the customer id) come
# in the order of the events that made them, both when a batch's outputs go
# to librdkafka in one rd_kafka_produce_batch call per topic (the default) and
# when the producer's queue is too small for that and they go one by one,
# waiting for room (kafka.queue.buffering.max.messages=5: every batch call
# would meet a full queue, where librdkafka enqueues the messages after a
# refused one, out of order; src/emitter.c emitter_send_staged). The room is
# counted as librdkafka counts it, messages and payload bytes: a batch whose
# 45,000-byte bad message (its DLQ record) leaves a queue of 48 KB too little
# room for its rewards produces them one by one, waiting for room (an estimate
# from the rewards' own sizes once sent them in one call: refused, the batch
# failed again and again).
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli

REDIS_PREFIXES="fidelio: q2: q3:" start_redis
start_dev_kafka --partitions 8 --topic rewards-q:8 --topic stage-q:8 --topic dlq-q:8 --topic credits-q:8 \
    --topic tp1:1 --topic rewards-3:1 --topic stage-3:1 --topic dlq-3:1 --topic credits-3:1
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
    timeout "${RUN_TIMEOUT:-300}" "$FIDELIO" run $(fid_opts) "$@" --until-idle >"$WORK/$name.log" 2>&1 \
        || fail "run --until-idle ($name) failed: $(tail -3 "$WORK/$name.log")"
}

# check_order NAME REWARDS STAGES [EVENTS [AT_LEAST]]: each customer's outputs in its events' order.
check_order() {
    local name=$1 events=${4:-$WORK/events.jsonl} least=${5:-1000}
    "$FIDELIO" consume -b "$BOOTSTRAP" -t "$2" --schema reward -e >"$WORK/$name.rewards" 2>"$WORK/$name.consume.err" \
        || fail "consume $2: $(tail -3 "$WORK/$name.consume.err")"
    "$FIDELIO" consume -b "$BOOTSTRAP" -t "$3" --schema stage-change -e >"$WORK/$name.stages" \
        2>>"$WORK/$name.consume.err" || fail "consume $3: $(tail -3 "$WORK/$name.consume.err")"
    python3 - "$events" "$least" "$WORK/$name.rewards" "$WORK/$name.stages" <<'PY' || fail "$name: outputs out of order"
import json, sys
at = {}  # event_id -> (customer, its position in the input)
for i, line in enumerate(open(sys.argv[1])):
    e = json.loads(line)
    at[e["event_id"]] = (e["customer_id"], i)
checked, least = 0, int(sys.argv[2])
for path in sys.argv[3:]:
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
if checked < least:
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

# one partition, one batch: a bad message of 45,000 bytes first (its DLQ record is produced before
# the batch's rewards and fills most of a 48 KB queue), then the events
"$FIDELIO" gen -q --customers 10 --events 60 --seed 5 --end "$END" -o "$WORK/events3.jsonl" || fail "gen failed"
head -c 45000 /dev/zero | tr '\0' 'x' >"$WORK/bad.bin"
kcat -b "$BOOTSTRAP" -P -t tp1 -k cust-bad "$WORK/bad.bin" || fail "kcat produce failed"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t tp1 --schema touchpoint "$WORK/events3.jsonl" || fail "produce failed"
RUN_TIMEOUT=120 run_idle q3 --set kafka.queue.buffering.max.kbytes=48 --set consumer.group=q3 \
    --set redis.key_prefix=q3: --set topics.touchpoints=tp1 --set topics.rewards=rewards-3 \
    --set topics.stage_changes=stage-3 --set topics.dlq=dlq-3 --set topics.credits=credits-3
grep -q "stopped: 60 touchpoints, [0-9]* credits, 0 duplicates, 1 to the DLQ" "$WORK/q3.log" \
    || fail "queue of 48 KB: $(grep 'stopped:' "$WORK/q3.log" | tail -1)"
! grep -q "Queue full" "$WORK/q3.log" || fail "queue of 48 KB: a produce call refused: $(grep -m1 'Queue full' "$WORK/q3.log")"
[ "$(count dlq-3)" = 1 ] || fail "queue of 48 KB: $(count dlq-3) DLQ records, want 1"
n=$(check_order q3 rewards-3 stage-3 "$WORK/events3.jsonl" 30)
pass "a 48 KB queue mostly held by a 45,000-byte DLQ record: the batch's $n outputs one by one, in order, nothing refused"
done_ok
