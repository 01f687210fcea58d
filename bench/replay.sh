#!/usr/bin/env bash
# bench/replay.sh - `fidelio replay` against `fidelio run` on the same data, one
# run, one table of rates and ratios (issue 11: replay within 10% of run). Not a
# test: nothing here asserts a time.
#
#   bench/replay.sh [--events M] [--customers N] [--partitions P] [--build DIR] [--set K=V]...
#
#   --set K=V   a setting for run and both replays (e.g. the mock's ack-delay
#               workaround kafka.max.in.flight.requests.per.connection=1, PERF-NOTES)
#
# On one `fidelio dev-kafka` and one redis-server (AOF everysec), release build:
#   1. `fidelio gen` writes the events to the touchpoints topic.
#   2. `fidelio run --until-idle` into the live namespace: events/s from its
#      partition assignment to its "stopped" line, less the idle grace (2 s).
#   3. `fidelio replay --namespace topics --outputs topics`: the same work as run
#      (outputs produced to the namespace's topics); events/s over the replay's
#      own pipeline time (its report line).
#   4. `fidelio replay --namespace none` (--outputs none, the what-if default).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
EVENTS=200000 CUSTOMERS=20000 PARTITIONS=16 BUILD=build SETS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --events) EVENTS=$2; shift ;;
    --customers) CUSTOMERS=$2; shift ;;
    --partitions) PARTITIONS=$2; shift ;;
    --build) BUILD=$2; shift ;;
    --set) SETS+=(--set "$2"); shift ;;
    *) echo "bench/replay.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
F="$ROOT/$BUILD/fidelio"
[ -x "$F" ] || { echo "bench/replay.sh: no $F (meson setup $BUILD && meson compile -C $BUILD)" >&2; exit 2; }
W=$(mktemp -d "${TMPDIR:-/tmp}/fidelio-replay-bench.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
"$F" dev-kafka --partitions "$PARTITIONS" --bootstrap-file "$W/bootstrap" >/dev/null 2>&1 &
PIDS+=($!)
redis-server --port 0 --unixsocket "$W/redis.sock" --dir "$W" --save "" --appendonly yes \
    --appendfsync everysec --logfile "$W/redis.log" &
PIDS+=($!)
until [ -s "$W/bootstrap" ] && redis-cli -s "$W/redis.sock" ping >/dev/null 2>&1; do sleep 0.1; done
O=(-b "$(cat "$W/bootstrap")" --set "redis.url=unix://$W/redis.sock" --set http.port=0 "${SETS[@]}")
"$F" gen -q "${O[@]}" --customers "$CUSTOMERS" --events "$EVENTS" --seed 5 -t touchpoints

ms() { # an ISO-8601 log time -> epoch ms
    python3 -c 'import sys, datetime; print(int(datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp() * 1000))' "$1"
}
"$F" run "${O[@]}" --until-idle 2>"$W/run.log"
t_assigned=$(grep -m1 ' assigned ' "$W/run.log" | cut -d' ' -f1)
t_stopped=$(grep 'stopped:' "$W/run.log" | tail -1 | cut -d' ' -f1)
run_tp=$(sed -n 's/.*stopped: \([0-9]*\) touchpoints.*/\1/p' "$W/run.log" | tail -1)
run_s=$(python3 -c "print(($(ms "$t_stopped") - $(ms "$t_assigned") - 2000) / 1000)")
run_rate=$(python3 -c "print(round($EVENTS / $run_s))")

replay_rate() { # namespace outputs -> events/s from the replay's report line
    "$F" replay "${O[@]}" --namespace "$1" --outputs "$2" >"$W/replay-$1.out" 2>"$W/replay-$1.log"
    sed -n 's/.*events read in [0-9.]* s (\([0-9]*\) events\/s).*/\1/p' "$W/replay-$1.out"
}
batches() { sed -n 's/.*stopped: .* in \([0-9]*\) batches.*/\1/p' "$1" | tail -1; }
rounds() { sed -n 's/.* batches, \([0-9]*\) rounds; \([0-9.]*\) s waiting.*/\1 rounds, \2 s waiting for the merge/p' "$1"; }
topics_rate=$(replay_rate topics topics)
none_rate=$(replay_rate none none)
printf '%-44s %12s %8s %8s\n' "on $EVENTS events, $CUSTOMERS customers, $PARTITIONS partitions" "events/s" "vs run" "batches"
printf '%-44s %12s %8s %8s\n' "fidelio run --until-idle ($run_tp applied)" "$run_rate" "1.00" "$(batches "$W/run.log")"
printf '%-44s %12s %8s %8s\n' "fidelio replay --outputs topics" "$topics_rate" \
    "$(python3 -c "print(f'{$topics_rate / $run_rate:.2f}')")" "$(batches "$W/replay-topics.log")"
printf '%-44s %12s %8s %8s\n' "fidelio replay --outputs none" "$none_rate" \
    "$(python3 -c "print(f'{$none_rate / $run_rate:.2f}')")" "$(batches "$W/replay-none.log")"
echo "decide rounds (fetch + apply round trips): replay --outputs topics $(rounds "$W/replay-topics.out"), --outputs none $(rounds "$W/replay-none.out"); run: one per batch"
uptime
