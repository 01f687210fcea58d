#!/usr/bin/env bash
# Two instances in one consumer group on a 6-partition topic: one stopped
# mid-stream with SIGTERM (clean hand-over), the other killed with SIGKILL
# (lost assignment); a third finishes. The final state equals simulate's.
source "$(dirname "$0")/lib.sh"
require kcat redis-server redis-cli python3

start_broker --partitions 6
start_redis
prepare_stream 50000 2000
# a and b take small batches: the hand-over and the kill must come mid-stream, and a
# default run finishes these 50,000 events in seconds
SLOW=(--set pipeline.batch_size=20)
start_run a "${SLOW[@]}"
A=$RUN_PID
HP=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_run b "${SLOW[@]}" --set http.port="$HP"
B=$RUN_PID
wait_until 60 "b assigned" grep -q "assigned" "$WORK/b.log"
# a joined first but, with cooperative-sticky, gets its share only in the rebalance after
# b's (its first callback may assign it nothing): stopping it before is no hand-over
wait_until 60 "a assigned partitions" grep -q "assigned [1-9]" "$WORK/a.log"
# b's fidelio_assigned_partitions, counted from its rebalance callbacks' lists
b_assigned() {
    python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
        "http://127.0.0.1:$HP/metrics" 2>/dev/null | sed -n 's/^fidelio_assigned_partitions \([0-9.]*\).*/\1/p'
}
b_assigned_is() { [ "$(b_assigned)" = "$1" ]; }
wait_until 300 "a third of the outputs" outputs_at_least $((EXPECTED_IDS / 3))
stop_run "$A" 30
mid_stream "the SIGTERM of a"
grep -q "revoked" "$WORK/a.log" || fail "a: no revoke logged"
pass "instance a stopped with SIGTERM mid-stream (exit 0, partitions handed over)"
wait_until 300 "two thirds of the outputs" outputs_at_least $((EXPECTED_IDS * 2 / 3))
# a's 6 + 6 partitions (touchpoints and credits) all went to b: its gauge follows
wait_until 60 "b's assigned-partitions gauge at 12" b_assigned_is 12
pass "b's fidelio_assigned_partitions is 12 after a left (incremental assigns counted)"
kill -KILL "$B"
wait "$B" 2>/dev/null || true
mid_stream "the SIGKILL of b"
pass "instance b killed with SIGKILL at $(outputs_total) output messages"
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) --until-idle >"$WORK/c.log" 2>&1 || fail "c: $(tail -5 "$WORK/c.log")"
check_final
pass "instance c finished: profiles equal simulate's, every expected output id present exactly"
done_ok
