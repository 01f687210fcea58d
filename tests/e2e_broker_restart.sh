#!/usr/bin/env bash
# Kafka brokers crashing under a running pipeline, on a real three-node
# cluster (replication factor 3, min.insync.replicas=2): one node killed
# (SIGKILL) while the first part of the stream is processed, the second part
# produced and processed on the other two, the node restarted; then all three
# killed right after the last part is produced, and restarted. fidelio run
# keeps running throughout; nothing is lost: every expected output id ends up
# on the topics and the profiles equal simulate's.
E2E_BROKER=kafka
source "$(dirname "$0")/lib.sh"
require kcat redis-server redis-cli python3

start_broker --partitions 6 --nodes 3
start_redis
python3 "$SOURCE_DIR/tests/gen_events.py" 30000 1500 >"$WORK/events.jsonl"
"$FIDELIO" simulate "$WORK/events.jsonl" --profiles "$WORK/expected.profiles" >"$WORK/expected.outputs" 2>/dev/null \
    || fail "simulate failed"
ids_of "$WORK/expected.outputs" >"$WORK/expected.ids"
EXPECTED_IDS=$(wc -l <"$WORK/expected.ids")
# three parts in stream order (per-customer order is kept across them)
sed -n '1,12000p' "$WORK/events.jsonl" >"$WORK/a.jsonl"
sed -n '12001,21000p' "$WORK/events.jsonl" >"$WORK/b.jsonl"
sed -n '21001,$p' "$WORK/events.jsonl" >"$WORK/c.jsonl"
# shellcheck disable=SC2046
produce_part() { "$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/$1.jsonl" || fail "produce $1"; }
produce_part a
pass "three-node cluster up; part 1 of 30000 events produced; simulate expects $EXPECTED_IDS outputs in all"

start_run run --set pipeline.batch_size=100
RUN=$RUN_PID
wait_until 300 "the first outputs" outputs_at_least $((EXPECTED_IDS / 12))
kafka_kill_node "$KAFKA_DIR" 2
n1=$(outputs_total)
produce_part b
ab=$(cat "$WORK/a.jsonl" "$WORK/b.jsonl" | "$FIDELIO" simulate 2>/dev/null | grep -c '"\(reward\|change\)_id"')
wait_until 300 "parts 1 and 2 processed with node 2 down" unique_outputs_at_least "$ab"
pass "node 2 killed at $n1 outputs; parts 1 and 2 processed on the other two nodes ($ab outputs)"
kafka_start_node "$KAFKA_DIR" 2
kafka_wait_ready "$KAFKA_DIR" 180 || fail "node 2 did not come back"
pass "node 2 restarted and rejoined"

produce_part c
mid_stream "killing all three nodes"
for n in 1 2 3; do kafka_kill_node "$KAFKA_DIR" "$n"; done
down_at=$SECONDS
sleep 3
kill -0 "$RUN" 2>/dev/null || fail "fidelio run exited while the cluster was down: $(tail -3 "$WORK/run.log")"
for n in 1 2 3; do kafka_start_node "$KAFKA_DIR" "$n"; done
kafka_wait_ready "$KAFKA_DIR" 180 || fail "the cluster did not come back"
pass "all three nodes killed right after part 3 was produced, restarted after $((SECONDS - down_at)) s; fidelio run kept running"

wait_until 600 "every expected output" unique_outputs_at_least "$EXPECTED_IDS"
stop_run "$RUN" 60
check_final
pass "after the crashes: profiles equal simulate's, every expected output id present exactly"
done_ok
