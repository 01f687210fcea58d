#!/usr/bin/env bash
# Start-up of `fidelio run`: before consuming, its producer fetches the output
# topics' metadata (partitions and leaders), so the first batch's outputs are
# not held in the producer's queue waiting for it, and the log says how many
# output partitions each broker leads, with a warning when one broker leads more
# than 64 (librdkafka sends one produce request per partition: latency grows with
# them; README Performance). Timing is not asserted (the wait it removes is
# ~0.1-1 s, not measurable robustly on a loaded machine); bench/run.sh measures it.
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli

start_redis
# run_idle NAME: `fidelio run --until-idle` on the empty topics (exits once idle).
run_idle() {
    # shellcheck disable=SC2046
    timeout 120 "$FIDELIO" run $(fid_opts) --until-idle >"$WORK/$1.log" 2>&1 \
        || fail "run --until-idle ($1) failed: $(tail -3 "$WORK/$1.log")"
}

start_dev_kafka --partitions 64
run_idle p64
grep -q "info .*output topics (partitions): rewards 64, stage-changes 64, touchpoints-dlq 64, fidelio-credits 64; 256 partition(s) led by 1 broker(s), at most 256 by broker 1" "$WORK/p64.log" \
    || fail "no start-up line with the output topics' partitions: $(grep -i 'output' "$WORK/p64.log" | head -3)"
grep -q "warn .*256 output partitions are led by broker 1: librdkafka sends one produce request per partition" "$WORK/p64.log" \
    || fail "no warning about 256 output partitions on one broker"
# the metadata came before the consumer's first assignment
meta=$(grep -n "output topics (partitions)" "$WORK/p64.log" | head -1 | cut -d: -f1)
assigned=$(grep -n " assigned " "$WORK/p64.log" | head -1 | cut -d: -f1)
[ -n "$assigned" ] && [ "$meta" -lt "$assigned" ] || fail "the output metadata was not fetched before the assignment"
pass "64-partition outputs on one broker: partitions logged before consuming, latency warning"
kill -TERM "$DEVKAFKA_PID"; wait "$DEVKAFKA_PID" || true
rm -f "$WORK/bootstrap"

start_dev_kafka --brokers 3 --partitions 6
run_idle b3
grep -q "info .*output topics (partitions): rewards 6, stage-changes 6, touchpoints-dlq 6, fidelio-credits 6; 24 partition(s) led by 3 broker(s)" "$WORK/b3.log" \
    || fail "no start-up line for 3 brokers: $(grep -i 'output topics' "$WORK/b3.log" | head -3)"
! grep -q "output partitions are led by broker" "$WORK/b3.log" || fail "a latency warning for 24 partitions on 3 brokers"
pass "6-partition outputs on 3 brokers: 24 partitions over 3 brokers logged, no warning"
done_ok
