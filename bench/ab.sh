#!/usr/bin/env bash
# bench/ab.sh - A/B of fidelio builds on the same data, in one session (the machine is
# shared and noisy: alternate the builds, compare within a run). Not a test.
#
#   bench/ab.sh [--events M] [--customers N] [--rounds R] [--perf DIR] FIDELIO_A FIDELIO_B ...
#
# One `fidelio dev-kafka` (64 partitions) and one redis-server (AOF everysec, loopback TCP,
# as bench/run.sh), `fidelio gen` once (the first binary), then per round each binary runs
# `fidelio run --until-idle` in its own consumer group and namespace on the same input topic.
# Per run it prints redis-server CPU per event (/proc/PID/stat), fidelio CPU per event (GNU
# time), Redis bytes per customer (INFO used_memory growth / customers with a profile) and
# Redis commands per event (INFO commandstats, reset before each run). --perf DIR also
# records redis-server with `perf record -g` during each run (DIR/perf.N.data).
set -euo pipefail
EVENTS=200000 CUSTOMERS=20000 ROUNDS=1 PERF_DIR=
while [ $# -gt 0 ]; do
    case "$1" in
    --events) EVENTS=$2; shift 2 ;;
    --customers) CUSTOMERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --perf) PERF_DIR=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench/ab.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || { echo "usage: bench/ab.sh [options] FIDELIO_BINARY... (--help)" >&2; exit 2; }
BINS=("$@")
for b in "${BINS[@]}"; do [ -x "$b" ] || { echo "bench/ab.sh: $b is not an executable" >&2; exit 2; }; done
for b in redis-server redis-cli python3 /usr/bin/time; do
    command -v "$b" >/dev/null || { echo "bench/ab.sh: $b is not installed (bash tools/setup.sh)" >&2; exit 2; }
done
W=$(mktemp -d "${TMPDIR:-/tmp}/fidelio-ab.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
NRUNS=$(( ROUNDS * ${#BINS[@]} ))
targs=(--topic in:64)
for i in $(seq 1 "$NRUNS"); do for t in rewards stage-changes dlq credits; do targs+=(--topic "r$i-$t:64"); done; done
"${BINS[0]}" dev-kafka --partitions 64 --bootstrap-file "$W/boot" "${targs[@]}" >"$W/dev-kafka.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 600); do [ -s "$W/boot" ] && break; sleep 0.1; done
[ -s "$W/boot" ] || { echo "bench/ab.sh: dev-kafka did not start" >&2; exit 1; }
BOOT=$(cat "$W/boot")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/redis"
redis-server --bind 127.0.0.1 --port "$PORT" --dir "$W/redis" --save "" --appendonly yes --appendfsync everysec \
    --logfile "$W/redis/redis.log" &
RP=$!
PIDS+=("$RP")
RC=(redis-cli -p "$PORT")
for _ in $(seq 100); do "${RC[@]}" ping >/dev/null 2>&1 && break; sleep 0.05; done
END=$(python3 -c 'import time; t = int(time.time()); print((t - t % 86400) * 1000)')
"${BINS[0]}" gen -b "$BOOT" --customers "$CUSTOMERS" --events "$EVENTS" --seed 1 --end "$END" -t in 2>"$W/gen.log"
TCK=$(getconf CLK_TCK)
mem() { "${RC[@]}" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
echo "$EVENTS events, $CUSTOMERS customers, 64 partitions, dev-kafka; redis-server AOF everysec"
n=0
for _ in $(seq "$ROUNDS"); do
    for b in "${BINS[@]}"; do
        n=$((n + 1))
        "${RC[@]}" config resetstat >/dev/null
        if [ -n "$PERF_DIR" ]; then perf record -g -p "$RP" -o "$PERF_DIR/perf.$n.data" >/dev/null 2>&1 & PP=$!; fi
        m0=$(mem)
        t0=$(awk '{print $14 + $15}' "/proc/$RP/stat")
        /usr/bin/time -f '%e %U %S %M' -o "$W/$n.time" "$b" run -b "$BOOT" --set kafka.session.timeout.ms=6000 \
            --set kafka.heartbeat.interval.ms=500 --set "redis.url=redis://127.0.0.1:$PORT/0" \
            --set consumer.group="g$n" --set redis.key_prefix="n$n:" --set topics.touchpoints=in \
            --set topics.rewards="r$n-rewards" --set topics.stage_changes="r$n-stage-changes" \
            --set topics.dlq="r$n-dlq" --set topics.credits="r$n-credits" --set log.level=info --set http.port=0 \
            --until-idle >"$W/$n.log" 2>&1 || { echo "run $n ($b) failed: $(tail -3 "$W/$n.log")" >&2; exit 1; }
        t1=$(awk '{print $14 + $15}' "/proc/$RP/stat")
        if [ -n "$PERF_DIR" ]; then kill -INT "$PP"; wait "$PP" || true; fi
        m1=$(mem)
        prof=$("${RC[@]}" --scan --pattern "n$n:*:p" | wc -l)
        read -r _ u s _ <"$W/$n.time"
        calls=$("${RC[@]}" info commandstats | tr -d '\r' | grep '^cmdstat_' | awk -F'[:=,]' '{c += $3} END {print c}')
        printf '%-40s run %2d: redis %5.1f us/event, fidelio %5.1f us/event, %6d B/customer, %.2f commands/event (%s)\n' \
            "$b" "$n" "$(echo "$t1 $t0 $TCK $EVENTS" | awk '{print ($1 - $2) / $3 / $4 * 1e6}')" \
            "$(echo "$u $s $EVENTS" | awk '{print ($1 + $2) / $3 * 1e6}')" $(( (m1 - m0) / (prof > 0 ? prof : 1) )) \
            "$(echo "$calls $EVENTS" | awk '{print $1 / $2}')" "$(sed -n 's/.* stopped: //p' "$W/$n.log" | tail -1)"
    done
done
"${RC[@]}" info persistence | tr -d '\r' | grep -E '^aof_rewrites:' || true
