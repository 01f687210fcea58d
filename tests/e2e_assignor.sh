#!/usr/bin/env bash
# SIGTERM while the group is rebalancing, after the JoinGroup response chose the
# cooperative-sticky assignor but before the first SyncGroup (assignment) came
# back: librdkafka 2.0.2 then aborts in rd_kafka_destroy
# (rdkafka_sticky_assignor.c: Assertion 'assignor_state' failed,
# https://github.com/confluentinc/librdkafka/issues/4312). The window is held
# open by b, which is stopped (SIGSTOP) so the group's SyncGroup waits for it;
# a is sent SIGTERM as soon as it logs its JoinGroup response, after a
# staggered delay. Every stop must exit 0 with no assertion.
source "$(dirname "$0")/lib.sh"
require redis-server

start_broker --partitions 6
start_redis
start_run b
B=$RUN_PID
wait_until 60 "b assigned" grep -q "assigned [1-9]" "$WORK/b.log"
TRIES=${ASSIGNOR_TRIES:-2}
STAGGER=(5.1 5.3 5.5 5.2 5.4)
for i in $(seq 1 "$TRIES"); do
    start_run "a$i"
    A=$RUN_PID
    # a subscribes: freeze b before it rejoins, so the group waits for it
    end=$((SECONDS + 60))
    until grep -q "as group" "$WORK/a$i.log"; do
        [ "$SECONDS" -lt "$end" ] || fail "try $i: a did not start"
        sleep 0.01
    done
    kill -STOP "$B"
    # the group elects a leader session.timeout.ms - 1 s after a's JoinGroup
    # (the mock's rebalance timeout) while b, frozen, has not yet timed out:
    # a then waits for a SyncGroup that b never sends
    sleep "${STAGGER[$(( (i - 1) % 5 ))]}"
    kill -TERM "$A"
    rc=0
    wait "$A" || rc=$?
    nb=$(grep -c "assigned" "$WORK/b.log" || true)
    kill -CONT "$B"
    if grep -q "Assertion" "$WORK/a$i.log" || [ "$rc" -ne 0 ]; then
        grep -m3 "Assertion\|JoinGroup response" "$WORK/a$i.log" | cut -c1-240 >&2
        fail "try $i: a exited $rc on SIGTERM during the rebalance"
    fi
    # b, thawed, serves the group again (a new assignment) before the next try
    wait_until 60 "b's assignment after try $i" bash -c "[ \$(grep -c assigned '$WORK/b.log') -gt $nb ]"
    pass "try $i: SIGTERM while a awaited its first assignment: a exited 0, no assertion"
done
kill -0 "$B" 2>/dev/null || fail "b died"
stop_run "$B" 30
pass "b stopped with SIGTERM (exit 0)"
done_ok
