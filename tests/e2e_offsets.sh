#!/usr/bin/env bash
# `fidelio offsets` (issue 11: reprocessing the live group). On a real Apache
# Kafka (E2E_BROKER=kafka, suite 'kafka'): DescribeGroups and offsets-for-times
# are broker features the mock lacks. On dev-kafka (suite 'e2e') only what the
# mock can do: the dry run shows the offsets, --execute is refused because the
# group's members cannot be known.
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli python3

start_broker --partitions 2
start_redis
off() { # args...: fidelio offsets, output in $WORK/off.out, exit status in OFF_RC
    set +e
    # shellcheck disable=SC2046
    "$FIDELIO" offsets $(fid_opts) "$@" >"$WORK/off.out" 2>"$WORK/off.err"
    OFF_RC=$?
    set -e
}
col() { # N: sum of column N of the partition rows
    awk -v n="$1" '$1 ~ /^[0-9]+$/ && $n ~ /^[0-9]+$/ {s += $n} END {print s + 0}' "$WORK/off.out"
}

python3 "$SOURCE_DIR/tests/gen_events.py" 300 40 5 >"$WORK/all.jsonl"
head -n 200 "$WORK/all.jsonl" >"$WORK/a.jsonl"
tail -n 100 "$WORK/all.jsonl" >"$WORK/b.jsonl"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/a.jsonl" 2>/dev/null || fail "produce a"
sleep 1.5 # message timestamps are the producer's clock: T falls between the two batches
T=$(python3 -c 'import time; print(int(time.time() * 1000))')
sleep 1.5
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/b.jsonl" 2>/dev/null || fail "produce b"

# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) --until-idle >"$WORK/run1.log" 2>&1 || fail "run1: $(tail -3 "$WORK/run1.log")"
grep -q "stopped: 300 touchpoints" "$WORK/run1.log" || fail "run1: $(grep stopped "$WORK/run1.log")"

off --reset-to beginning
[ "$OFF_RC" -eq 0 ] || fail "dry run: exit $OFF_RC: $(cat "$WORK/off.err")"
[ "$(col 3)" -eq 0 ] && [ "$(col 4)" -eq 300 ] && grep -q "^# 300 event(s) to reprocess" "$WORK/off.out" \
    && grep -q "^# not committed" "$WORK/off.out" || fail "dry run: $(cat "$WORK/off.out")"

if [ "$BROKER" != kafka ]; then
    off --reset-to beginning --execute
    [ "$OFF_RC" -eq 1 ] && grep -q "cannot tell whether group 'fidelio' is inactive" "$WORK/off.err" \
        || fail "execute on the mock: exit $OFF_RC: $(cat "$WORK/off.err")"
    pass "dev-kafka: the dry run shows 300 events to reprocess; --execute is refused (no DescribeGroups on the mock)"
    done_ok
    exit 0
fi

# (the mock ignores timestamps in offsets-for-times: past-window is checked here only)
[ "$(col 2)" -eq 300 ] && [ "$(col 5)" -eq 0 ] || fail "committed offsets after run1: $(cat "$WORK/off.out")"
grep -q "^# group fidelio: Empty, 0 member(s)" "$WORK/off.out" || fail "group state: $(head -1 "$WORK/off.out")"
pass "dry run --reset-to beginning: committed 300, new 0, 300 to reprocess, group Empty"

off --reset-to "$T"
[ "$OFF_RC" -eq 0 ] && [ "$(col 3)" -eq 200 ] && [ "$(col 4)" -eq 100 ] || fail "--reset-to T: $(cat "$WORK/off.out")"
off --reset-to "$(python3 -c "import datetime,sys; print(datetime.datetime.fromtimestamp($T/1000, datetime.timezone.utc).isoformat().replace('+00:00','Z'))")"
[ "$OFF_RC" -eq 0 ] && [ "$(col 3)" -eq 200 ] || fail "--reset-to ISO T: $(cat "$WORK/off.out")"
off --reset-to beginning
[ "$(col 2)" -eq 300 ] || fail "a dry run committed: $(cat "$WORK/off.out")"
pass "--reset-to T (epoch ms and ISO-8601) finds the 200 events before T; dry runs commit nothing"

start_run live
wait_until 120 "the run to be assigned" grep -qs "assigned" "$WORK/live.log"
off --reset-to beginning --execute
[ "$OFF_RC" -eq 1 ] && grep -q "group 'fidelio' has 1 active member(s)" "$WORK/off.err" \
    || fail "--execute with a member: exit $OFF_RC: $(cat "$WORK/off.err")"
stop_run "$RUN_PID" 60
off --reset-to beginning
[ "$(col 2)" -eq 300 ] || fail "the refused execute committed: $(cat "$WORK/off.out")"
pass "--execute refused while a fidelio run is a member (exit 1), nothing committed"

off --reset-to "$T" --execute
[ "$OFF_RC" -eq 0 ] && grep -q "^# committed for group fidelio" "$WORK/off.out" || fail "execute: $(cat "$WORK/off.err")"
off --reset-to beginning
[ "$(col 2)" -eq 200 ] || fail "after execute: $(cat "$WORK/off.out")"
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) --until-idle >"$WORK/run2.log" 2>&1 || fail "run2: $(tail -3 "$WORK/run2.log")"
grep -q "stopped: 0 touchpoints, 0 credits, 100 duplicates" "$WORK/run2.log" \
    || fail "run2: $(grep stopped "$WORK/run2.log")"
pass "--reset-to T --execute commits 200; the next run redelivers exactly the 100 later events, all found as duplicates"
done_ok
