#!/usr/bin/env bash
# bench_exactly_once.sh - what pipeline.exactly_once costs: the same events
# through `fidelio run --until-idle` on a real Kafka (tests/kafka/broker.sh) with
# and without transactions, alternating (off, on, on, off, ...) so the machine's
# drift hits both, each run in its own consumer group and Redis namespace.
# A benchmark, not a test: it prints figures and the ratio, asserts nothing.
#
#   tests/kafka/bench_exactly_once.sh [-b FIDELIO] [-n EVENTS] [-c CUSTOMERS] [-r ROUNDS] [-s BATCH_SIZE]
#
# Defaults: build/fidelio, 200000 events, 20000 customers, 2 rounds (4 runs), batch 500.
# Rate = events / (last batch - partition assignment), from the run's own log.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FIDELIO=$ROOT/build/fidelio N=200000 C=20000 ROUNDS=2 BATCH=500
while getopts "b:n:c:r:s:" o; do
    case $o in
        b) FIDELIO=$OPTARG ;; n) N=$OPTARG ;; c) C=$OPTARG ;; r) ROUNDS=$OPTARG ;; s) BATCH=$OPTARG ;;
        *) sed -n '2,11s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
    esac
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fidelio-bench-eos.XXXXXX")
# shellcheck source=broker.sh
source "$ROOT/tests/kafka/broker.sh"
cleanup() {
    kafka_stop "$WORK/kafka"
    if [ -n "${REDIS_PID:-}" ]; then kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

kafka_start "$WORK/kafka" >/dev/null
B=$(cat "$WORK/kafka/bootstrap")
kafka_topics "$WORK/kafka" touchpoints:6 fidelio-credits:6 rewards:6 stage-changes:6 touchpoints-dlq:6
mkdir -p "$WORK/redis"
redis-server --port 0 --unixsocket "$WORK/redis/r.sock" --dir "$WORK/redis" --save "" --appendonly yes \
    --appendfsync everysec --logfile "$WORK/redis/log" &
REDIS_PID=$!
for _ in $(seq 100); do redis-cli -s "$WORK/redis/r.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
python3 "$ROOT/tests/gen_events.py" "$N" "$C" >"$WORK/events.jsonl"
"$FIDELIO" produce -q -b "$B" -t touchpoints "$WORK/events.jsonl"
echo "$N events over $C customers on Kafka $KAFKA_VERSION (6 partitions), batch $BATCH, redis AOF everysec"

# run_once NAME EXACTLY_ONCE: one run from an empty namespace; prints events/s.
run_once() {
    "$FIDELIO" run -b "$B" --set redis.url="unix://$WORK/redis/r.sock" --set redis.key_prefix="$1:" \
        --set consumer.group="$1" --set pipeline.batch_size="$BATCH" --set pipeline.exactly_once="$2" \
        --set kafka.transactional.id="bench-$1" --until-idle >"$WORK/$1.log" 2>&1 \
        || { echo "fidelio run $1 failed: $(tail -3 "$WORK/$1.log")" >&2; return 1; }
    python3 - "$WORK/$1.log" "$N" <<'PY'
import re, sys
from datetime import datetime
t0 = t1 = None
for line in open(sys.argv[1]):
    m = re.match(r"(\S+Z) ", line)
    if not m:
        continue
    t = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
    if " assigned " in line and t0 is None:
        t0 = t
    if " revoked " in line or " stopped: " in line:
        t1 = t1 or t
print(int(int(sys.argv[2]) / (t1 - t0 - 2.0)))  # --until-idle idles 2 s before it stops
PY
}

declare -A sum=([false]=0 [true]=0)
for r in $(seq "$ROUNDS"); do
    order=(false true)
    [ $((r % 2)) -eq 0 ] && order=(true false)
    for eos in "${order[@]}"; do
        rate=$(run_once "r$r-$eos" "$eos")
        sum[$eos]=$((sum[$eos] + rate))
        printf 'round %d  exactly_once=%-5s  %7d events/s\n' "$r" "$eos" "$rate"
    done
done
off=$((sum[false] / ROUNDS)) on=$((sum[true] / ROUNDS))
printf 'mean: at-least-once %d events/s, exactly-once %d events/s: exactly-once = %.2f x at-least-once\n' \
    "$off" "$on" "$(echo "$on / $off" | bc -l)"
