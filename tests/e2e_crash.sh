#!/usr/bin/env bash
# Crash: `kill -9` fidelio run while it processes 50,000 events, restart it,
# three times at different moments; at the end the profiles equal simulate's,
# every expected output id is present (and no other), nothing applied twice.
source "$(dirname "$0")/lib.sh"
require kcat redis-server redis-cli python3

start_broker --partitions 6
start_redis
prepare_stream 50000 2000
pass "50000 events produced; simulate expects $EXPECTED_IDS outputs"

# Small batches: many commit points, so the kills land between and inside batches.
# Each restarted run must make fresh progress (another ~12% of the outputs) before it is killed.
for i in 1 2 3; do
    start=$(outputs_total)
    start_run "crash-$i" --set pipeline.batch_size=100
    target=$((start + EXPECTED_IDS * 12 / 100))
    # an earlier run may have done nearly all the work (a loaded machine kills late):
    # then the stream's end is the target, not more outputs than it can make
    [ "$target" -le "$EXPECTED_IDS" ] || target=$EXPECTED_IDS
    wait_until 300 "$target outputs" outputs_at_least "$target"
    kill -KILL "$RUN_PID"
    wait "$RUN_PID" 2>/dev/null || true
    mid_stream "kill #$i"
    pass "kill -9 #$i at $(outputs_total) messages on the output topics (this run added $(( $(outputs_total) - start )))"
done
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) --until-idle >"$WORK/final.log" 2>&1 || fail "final run exited $?"
grep -q "duplicates" "$WORK/final.log" || fail "final run log"
check_final
dups=$(( $(outputs_total) - EXPECTED_IDS ))
pass "after 3 crashes: profiles equal simulate's, all $EXPECTED_IDS output ids present ($dups re-emitted duplicates)"
# The report's aggregates are counted in the same atomic apply as the effects:
# the crashes neither lost nor doubled a count.
# shellcheck disable=SC2046
"$FIDELIO" report --json $(fid_opts) >"$WORK/report.json" || fail "report --json"
# shellcheck disable=SC2046
"$FIDELIO" profile $(fid_opts) --all >"$WORK/profiles.all" 2>/dev/null || fail "profile --all"
"$FIDELIO" consume -b "$BOOTSTRAP" -t rewards -e >"$WORK/rewards.all" 2>/dev/null || fail "consume rewards"
python3 "$SOURCE_DIR/tests/report_recount.py" "$WORK/report.json" "$WORK/profiles.all" "$WORK/rewards.all" \
    || fail "after 3 crashes the report differs from a recount of the profiles and the rewards topic"
pass "after 3 crashes: fidelio report equals a recount of every profile and the rewards topic"
done_ok
