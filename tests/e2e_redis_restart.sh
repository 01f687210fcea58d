#!/usr/bin/env bash
# Redis restarted mid-stream (AOF, fsync always): the pipeline pauses with a
# log line, resumes when Redis is back, and the final state equals simulate's.
source "$(dirname "$0")/lib.sh"
require kcat redis-server redis-cli python3

start_broker --partitions 6
start_redis aof
prepare_stream 50000 2000
start_run run --until-idle --set pipeline.batch_size=50
RUN=$RUN_PID
wait_until 300 "the first outputs" outputs_at_least 2000
kill -KILL "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || true
wait_until 30 "the pause" grep -q "redis unavailable" "$WORK/run.log"
n1=$(outputs_total)
sleep 3
kill -0 "$RUN" 2>/dev/null || fail "fidelio run exited while Redis was down: $(tail -3 "$WORK/run.log")"
[ "$(outputs_total)" -eq "$n1" ] || fail "outputs were produced while Redis was down"
pass "Redis killed: fidelio run paused (log line), produced nothing, kept running"
redis-server "${REDIS_ARGS[@]}" &
PIDS+=("$!")
wait_until 30 "the resume" grep -q "redis is back" "$WORK/run.log"
pass "Redis restarted from its AOF: $(grep -o 'redis is back after [0-9.]* s' "$WORK/run.log")"
wait "$RUN" || fail "fidelio run exited $?: $(tail -3 "$WORK/run.log")"
check_final
pass "after the restart: profiles equal simulate's, every expected output id present exactly"
done_ok
