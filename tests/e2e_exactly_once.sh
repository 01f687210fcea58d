#!/usr/bin/env bash
# Exactly-once outputs (pipeline.exactly_once) on a real Kafka: 100,000 events,
# fidelio run killed with SIGKILL five times, each time inside one of its
# transactions: txn_probe.py (confluent-kafka, watching from outside) freezes
# the instance while a transaction of it is open on the broker and proves it
# still open while the instance is stopped, then the test kills it. Then a
# zombie: instance a frozen the same way, b takes over mid-stream while the
# coordinator aborts a's transaction, a thawed. At the end a read_committed
# reader finds every expected output id exactly once and nothing else, the
# profiles equal simulate's, none of the six caught transactions' messages is
# visible to read_committed and all are to read_uncommitted (aborted copies).
# On the mock broker (E2E_BROKER=mock) the setting is refused with a clear message.
source "$(dirname "$0")/lib.sh"
require kcat redis-server redis-cli python3

if [ "$BROKER" != kafka ]; then
    start_broker --partitions 2
    start_redis
    set +e
    # shellcheck disable=SC2046
    "$FIDELIO" run $(fid_opts) --set pipeline.exactly_once=true --until-idle >"$WORK/refused.log" 2>&1
    rc=$?
    set -e
    [ "$rc" -eq 1 ] || fail "exactly_once on the mock exited $rc, want 1"
    grep -q "pipeline.exactly_once needs a real Kafka broker: this is librdkafka's mock cluster" "$WORK/refused.log" \
        || fail "no clear refusal: $(tail -2 "$WORK/refused.log")"
    pass "the mock broker refuses pipeline.exactly_once with a message saying why (exit 1)"
    # kafka.transactional.id left in a configuration (for the exactly-once runs)
    # must not break producing without transactions
    TXN=(--set kafka.transactional.id=fidelio-left-over)
    # shellcheck disable=SC2046
    head -40 "$SOURCE_DIR/seeds/demo.jsonl" | "$FIDELIO" produce -q $(fid_opts) "${TXN[@]}" -t touchpoints \
        || fail "produce with kafka.transactional.id set failed"
    # shellcheck disable=SC2046
    "$FIDELIO" run $(fid_opts) "${TXN[@]}" --until-idle >"$WORK/alo.log" 2>&1 \
        || fail "run with kafka.transactional.id set exited $?: $(tail -2 "$WORK/alo.log")"
    want=$(head -40 "$SOURCE_DIR/seeds/demo.jsonl" | "$FIDELIO" simulate 2>/dev/null | wc -l)
    [ "$(outputs_total)" -eq "$want" ] || fail "$(outputs_total) outputs, want $want"
    pass "with kafka.transactional.id set and exactly_once off, produce and run work without transactions"
    done_ok
    exit 0
fi

require /usr/bin/python3
/usr/bin/python3 -c 'import confluent_kafka' 2>/dev/null || { echo "SKIP: python3-confluent-kafka not installed"; exit 77; }
PROBE=(/usr/bin/python3 "$SOURCE_DIR/tests/kafka/txn_probe.py")

start_broker --partitions 6
start_redis
prepare_stream 100000 4000
pass "100000 events produced; simulate expects $EXPECTED_IDS outputs"

# A short transaction timeout: the coordinator aborts a frozen instance's open
# transaction after 10 s. Instance slot a keeps its transactional.id across
# restarts, so each restart fences its killed predecessor and aborts its
# transaction at once.
EOS=(--set pipeline.exactly_once=true --set kafka.transaction.timeout.ms=10000 --set pipeline.batch_size=200)

# The kills: each lands inside a transaction with outputs in it, so mid-stream
# (catching it can take a few freezes: a transaction is open on the broker
# only while a batch's outputs are sent and committed, not while Redis applies).
for i in 1 2 3 4 5; do
    start=$(outputs_total)
    start_run "eos-$i" "${EOS[@]}" --set kafka.transactional.id=fidelio-eos-a
    wait_until 300 "run $i's progress" outputs_at_least $((start + EXPECTED_IDS / 16))
    "${PROBE[@]}" catch "$RUN_PID" "$BOOTSTRAP" 60 rewards stage-changes >"$WORK/caught-$i.txt" 2>"$WORK/probe-$i.txt" \
        || fail "run $i: no open transaction caught ($(tail -1 "$WORK/probe-$i.txt")): $(tail -2 "$WORK/eos-$i.log")"
    kill -KILL "$RUN_PID"
    wait "$RUN_PID" 2>/dev/null || true
    pass "kill -9 #$i inside an open transaction ($(tail -1 "$WORK/probe-$i.txt"))"
done

# The zombie: a frozen inside an open transaction, mid-stream; b takes over.
start_run a "${EOS[@]}" --set kafka.transactional.id=fidelio-eos-a
A=$RUN_PID
start=$(outputs_total)
wait_until 300 "a's progress" outputs_at_least $((start + EXPECTED_IDS / 25))
"${PROBE[@]}" catch "$A" "$BOOTSTRAP" 60 rewards stage-changes >"$WORK/caught-a.txt" 2>"$WORK/probe-a.txt" \
    || fail "a: no open transaction caught ($(tail -1 "$WORK/probe-a.txt")): $(tail -2 "$WORK/a.log")"
# a is stopped and nothing else writes: this count stands still while it is read
c=$(output_ids | wc -l)
[ "$c" -lt $((EXPECTED_IDS * 4 / 5)) ] \
    || fail "a was frozen too late: $c of $EXPECTED_IDS outputs committed (b must take over mid-stream)"
frozen_at=$(outputs_total)
start_run b "${EOS[@]}" --set kafka.transactional.id=fidelio-eos-b
B=$RUN_PID
wait_until 180 "b's progress while a is frozen" outputs_at_least $((frozen_at + EXPECTED_IDS / 10))
# one instant (end offsets, not a read that would chase b to the end of the stream)
mid_stream "the take-over by b"
# a stopped cannot end its transaction: the coordinator aborts it (transaction.timeout.ms)
wait_until 120 "the end of a's open transaction" "${PROBE[@]}" closed "$BOOTSTRAP" "$WORK/caught-a.txt"
pass "a frozen inside an open transaction ($(tail -1 "$WORK/probe-a.txt")) with $c of $EXPECTED_IDS outputs committed; b took over mid-stream ($(outputs_total) output messages); a's transaction ended while a was frozen"
kill -CONT "$A"
wait_until 600 "every expected output, read_committed" unique_outputs_at_least "$EXPECTED_IDS"
sleep 2
kill -0 "$A" 2>/dev/null || fail "a died after SIGCONT: $(tail -3 "$WORK/a.log")"
stop_run "$B" 60
stop_run "$A" 60
grep -qE "transaction aborted|transaction failed for good|assignment lost" "$WORK/a.log" \
    || fail "a logged no fencing after it resumed: $(grep -E 'warn|error' "$WORK/a.log" | tail -3)"
pass "a resumed, was fenced ($(grep -oE "transaction aborted|transaction failed for good|assignment lost" "$WORK/a.log" | sort | uniq -c | tr -s ' ' | paste -sd, -)) and stopped cleanly; b stopped cleanly"

# read_committed: every expected id exactly once, nothing else.
outputs_as() {
    for t in rewards stage-changes; do
        "$FIDELIO" consume -b "$BOOTSTRAP" --set kafka.isolation.level="$1" -t "$t" -e 2>/dev/null
    done | grep -o '"\(reward\|change\)_id":"[^"]*"' | sort
}
outputs_as read_committed >"$WORK/committed.ids"
dups=$(uniq -d "$WORK/committed.ids" | wc -l)
[ "$dups" -eq 0 ] || fail "$dups output ids appear more than once to a read_committed reader"
uniq "$WORK/committed.ids" | diff -q - "$WORK/expected.ids" >/dev/null || fail "read_committed ids differ from simulate's"
same_profiles "$WORK/expected.profiles" || fail "profiles differ from simulate's"
pass "read_committed: each of the $EXPECTED_IDS expected output ids exactly once, nothing else; profiles equal simulate's"

outputs_as read_uncommitted >"$WORK/uncommitted.ids"
aborted=$(( $(wc -l <"$WORK/uncommitted.ids") - $(wc -l <"$WORK/committed.ids") ))
# the six transactions caught open (five kills, the zombie) were aborted: none
# of their messages reaches a read_committed reader, every one a read_uncommitted one
caught=$("${PROBE[@]}" aborted "$BOOTSTRAP" "$WORK"/caught-[1-5a].txt 2>"$WORK/aborted.err") \
    || fail "a caught transaction was not aborted: $(tail -1 "$WORK/aborted.err")"
[ "$caught" -gt 0 ] && [ "$aborted" -ge "$caught" ] \
    || fail "a read_uncommitted reader sees $aborted aborted outputs, fewer than the $caught of the transactions caught open"
uniq "$WORK/uncommitted.ids" | diff -q - "$WORK/expected.ids" >/dev/null || fail "aborted outputs carry unexpected ids"
pass "read_uncommitted shows $aborted aborted copies of expected outputs, among them all $caught messages of the six transactions caught open (read_committed sees none of those)"
done_ok
