#!/usr/bin/env bash
# bench/mem.sh - Redis bytes per customer, and where they go, for one or more fidelio
# builds on the same data in one session (issue 10's memory target). Not a test.
#
#   bench/mem.sh [options] FIDELIO [FIDELIO ...]
#
#   --events M       events generated once (default 100000)
#   --customers N    customers (default 10000)
#   --partitions P   partitions (default 16)
#   --set K=V        a setting for every run (repeatable)
#   --redis K=V      a redis-server setting (repeatable), e.g. --redis hash-max-listpack-value=1024
#   --sample N       customers broken down per run (default 2000)
#   --what-if        after each run's table, delete the sampled customers' kept outputs
#                    (o<k><id>, po of :p) and print the table again: a customer with none at rest;
#                    then also rewrite their dedupe records shorter (a tag, 8 bytes of digest, the
#                    event time as a varint) and print it a third time
#   --keep           keep the work directory
#
# One `fidelio dev-kafka` and one redis-server (AOF everysec, loopback TCP); `fidelio gen`
# writes the events once (with the first binary); each build runs `fidelio run
# --until-idle` in its own group and namespace. Per run: used_memory growth / customers with
# a profile, then bench/mem_breakdown.py's table (MEMORY USAGE of a sample of customers'
# keys, split into profile, kept outputs, dedupe records, ledger entries, Redis overhead).
set -euo pipefail
EVENTS=100000 CUSTOMERS=10000 PARTITIONS=16 SETS=() RSETS=() SAMPLE=2000 KEEP=0 WHATIF=0 BINS=()
usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
need() { [ $# -ge 2 ] || { echo "bench/mem.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
    case "$1" in
    --events) need "$@"; EVENTS=$2; shift 2 ;;
    --customers) need "$@"; CUSTOMERS=$2; shift 2 ;;
    --partitions) need "$@"; PARTITIONS=$2; shift 2 ;;
    --set) need "$@"; SETS+=(--set "$2"); shift 2 ;;
    --redis) need "$@"; RSETS+=("--${2%%=*}" "${2#*=}"); shift 2 ;;
    --sample) need "$@"; SAMPLE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --what-if) WHATIF=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "bench/mem.sh: unknown option $1 (--help)" >&2; exit 2 ;;
    *) BINS+=("$1"); shift ;;
    esac
done
[ ${#BINS[@]} -ge 1 ] || { echo "usage: bench/mem.sh [options] FIDELIO [FIDELIO...] (--help)" >&2; exit 2; }
for v in EVENTS CUSTOMERS PARTITIONS SAMPLE; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench/mem.sh: --${v,,} must be a positive integer, not '${!v}'" >&2; exit 2; }
done
for i in "${!BINS[@]}"; do
    [ -f "${BINS[$i]}" ] && [ -x "${BINS[$i]}" ] || { echo "bench/mem.sh: ${BINS[$i]} is not an executable" >&2; exit 2; }
    BINS[$i]=$(realpath "${BINS[$i]}")
done
for b in redis-server redis-cli python3; do
    command -v "$b" >/dev/null || { echo "bench/mem.sh: $b is not installed (bash tools/setup.sh)" >&2; exit 2; }
done
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/fidelio-mem.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then echo "bench/mem.sh: logs kept in $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
targs=(--topic "touchpoints:$PARTITIONS")
for n in $(seq ${#BINS[@]}); do
    for t in rewards stage-changes dlq credits; do targs+=(--topic "r$n-$t:$PARTITIONS"); done
done
"${BINS[0]}" dev-kafka --partitions "$PARTITIONS" --bootstrap-file "$W/boot" "${targs[@]}" >"$W/dev-kafka.log" 2>&1 &
PIDS+=($!)
mkdir -p "$W/redis"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port "$PORT" --dir "$W/redis" --save "" --appendonly yes \
    --appendfsync everysec --logfile "$W/redis/redis.log" "${RSETS[@]}" &
PIDS+=($!)
RC=(redis-cli -p "$PORT") RURL="redis://127.0.0.1:$PORT/0"
for _ in $(seq 600); do [ -s "$W/boot" ] && "${RC[@]}" ping >/dev/null 2>&1 && break; sleep 0.1; done
[ -s "$W/boot" ] || { echo "bench/mem.sh: dev-kafka did not start: $(tail -3 "$W/dev-kafka.log")" >&2; exit 1; }
"${RC[@]}" ping >/dev/null 2>&1 || { echo "bench/mem.sh: redis-server did not start: $(tail -3 "$W/redis/redis.log")" >&2; exit 1; }
BOOT=$(cat "$W/boot")
END=$(python3 -c 'import time; t = int(time.time()); print((t - t % 86400) * 1000)')
"${BINS[0]}" gen -q -b "$BOOT" --customers "$CUSTOMERS" --events "$EVENTS" --seed 1 --end "$END" -t touchpoints \
    2>"$W/gen.log" || { echo "bench/mem.sh: gen failed: $(tail -3 "$W/gen.log")" >&2; exit 1; }
mem() { "${RC[@]}" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
echo "$EVENTS events, $CUSTOMERS customers, $PARTITIONS partitions, dev-kafka; redis-server AOF everysec${RSETS[*]:+, ${RSETS[*]}}"
for i in "${!BINS[@]}"; do
    n=$((i + 1))
    m0=$(mem)
    "${BINS[$i]}" run -b "$BOOT" --set kafka.session.timeout.ms=6000 \
        --set kafka.heartbeat.interval.ms=500 --set "redis.url=$RURL" --set http.port=0 --set log.level=info \
        --set consumer.group="g$n" --set redis.key_prefix="n$n:" --set topics.touchpoints=touchpoints \
        --set topics.rewards="r$n-rewards" --set topics.stage_changes="r$n-stage-changes" \
        --set topics.dlq="r$n-dlq" --set topics.credits="r$n-credits" "${SETS[@]}" \
        --until-idle >"$W/$n.log" 2>&1 || { echo "bench/mem.sh: run $n failed: $(tail -3 "$W/$n.log")" >&2; exit 1; }
    m1=$(mem)
    prof=$("${RC[@]}" --scan --pattern "n$n:*:p" | wc -l)
    echo
    echo "run $n: ${BINS[$i]}: $(grep 'stopped:' "$W/$n.log" | tail -1 | sed 's/.*stopped: //')"
    echo "used_memory growth $(( m1 - m0 )) B over $prof customers: $(( (m1 - m0) / (prof > 0 ? prof : 1) )) B per customer"
    python3 "$HERE/mem_breakdown.py" --port "$PORT" --prefix "n$n:" --sample "$SAMPLE"
    if [ "$WHATIF" = 1 ]; then
        python3 "$HERE/mem_breakdown.py" --port "$PORT" --prefix "n$n:" --sample "$SAMPLE" --drop-kept-outputs
        python3 "$HERE/mem_breakdown.py" --port "$PORT" --prefix "n$n:" --sample "$SAMPLE" --short-records
    fi
done
