#!/usr/bin/env bash
# An unreachable broker: `run --until-idle` exits 1 with a message after
# pipeline.assign_timeout_ms (here 5 s), the broker's error logged; `produce` counts every undelivered message as
# failed and exits 1; librdkafka's log lines go through Fidelio's logger
# (timestamp, level, origin), never as raw "%3|..." lines.
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli python3

start_redis
# a port nobody listens on: bind one, close it
DEAD="127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
raw_lines() { grep -E '^%[0-7]\|' "$1" | head -3; }

t0=$SECONDS
rc=0
timeout 120 "$FIDELIO" run --until-idle -b "$DEAD" --set "redis.url=$REDIS_URL" --set pipeline.assign_timeout_ms=5000 \
    >"$WORK/run.log" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "run --until-idle against a dead broker exited $rc, want 1 (124 = still running after 120 s)"
grep -q "error .*no metadata of topic 'touchpoints' from the Kafka cluster within 5 s" "$WORK/run.log" \
    || fail "no message naming the timeout: $(tail -2 "$WORK/run.log")"
[ -z "$(raw_lines "$WORK/run.log")" ] || fail "raw librdkafka lines: $(raw_lines "$WORK/run.log")"
grep -q "error librdkafka:0 .*Connect to .*$DEAD" "$WORK/run.log" || fail "librdkafka's connect errors were not logged"
pass "run --until-idle gave up after $((SECONDS - t0)) s (timeout 5 s) with exit 1 naming the broker error"

head -5 "$SOURCE_DIR/seeds/demo.jsonl" >"$WORK/five.jsonl"
rc=0
timeout 120 "$FIDELIO" produce -t touchpoints -b "$DEAD" "$WORK/five.jsonl" >"$WORK/produce.log" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "produce to a dead broker exited $rc, want 1"
grep -q "produce: 0 sent, 0 rejected, 5 failed" "$WORK/produce.log" || fail "failures not counted: $(grep 'produce:' "$WORK/produce.log")"
grep -q "fidelio produce: 5 messages unacknowledged .*Kafka: .*$DEAD" "$WORK/produce.log" \
    || fail "no message naming the cause: $(tail -1 "$WORK/produce.log")"
[ -z "$(raw_lines "$WORK/produce.log")" ] || fail "raw librdkafka lines: $(raw_lines "$WORK/produce.log")"
pass "produce to a dead broker: 5 failed, exit 1, cause named, no raw librdkafka lines"
done_ok
