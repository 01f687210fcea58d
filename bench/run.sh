#!/usr/bin/env bash
# bench/run.sh - Fidelio's throughput, latency, CPU and memory benchmark (issue 10),
# every figure measured in one run on the same generated data, printed as ONE table
# with the ratios the targets are stated in. Not a test: nothing here asserts a time.
#
#   bench/run.sh [--broker dev-kafka|real] [--events M] [--customers N] [--quick]
#                [--partitions P] [--naive-seconds S] [--latency-seconds S]
#                [--latency-start S] [--latency-partitions P] [--feeder-linger MS]
#                [--latency-only RATE] [--latency-set KEY=VALUE]...
#                [--no-peer] [--no-mem] [--keep]
#
#   --broker dev-kafka   librdkafka's mock cluster (`fidelio dev-kafka`; default)
#   --broker real        a real Apache Kafka (KRaft) started with tests/kafka/broker.sh
#                        ($BENCH_BROKER_SH overrides the path); the Kafka Streams
#                        peer (bench/kstreams-peer) runs only there
#   --events/--customers the data (default 1,000,000 events over 100,000 customers)
#   --quick              a quick check: 20,000 events / 2,000 customers, short runs
#   --partitions P       partitions of the input topic (default 64)
#   --naive-seconds S    how long the naive run (batch 1) runs (default 60; 15 quick)
#   --latency-seconds S  length of the steady-rate latency run (default 60; 20 quick)
#   --latency-start S    seconds fed at the same rate before it, on the fresh namespace
#                        and topics (default 30; 10 quick): the start-up, reported apart
#                        (its own row and line), not in the steady-state figures
#   --latency-partitions P  partitions of the latency run's input and output topics
#                        (default: --partitions); with librdkafka, output latency grows
#                        with the output partitions each broker leads (README Performance)
#   --feeder-linger MS   linger.ms of the latency feeder's producer (default 50; see
#                        bench/fidelio_bench.c: not counted in the latency either way)
#   --latency-only RATE  run only the latency step (6.), fed at RATE events/s (50% of a
#                        default run's rate measured before: say which), on
#                        --customers customers; no table, its lines only (~2 min
#                        instead of 6-10; for A/B runs of one setting)
#   --latency-set KEY=VALUE  a setting of the latency instance only (`--set`), repeatable:
#                        A/B a setting in consecutive runs
#   --no-peer            skip the Kafka Streams peer
#   --no-mem             skip the memory run (as many distinct customers as events)
#   --keep               keep the work directory (logs) and print its path
#
# What runs, in order, on one broker and one redis-server (AOF everysec):
#   1. `fidelio gen` writes the events (Avro) to the input topic.
#   2. The bare consumer (bench/fidelio_bench.c `consume`: a librdkafka group consumer
#      in C, nothing decoded) reads them: the ceiling of any consumer on this broker.
#   3. `fidelio run --until-idle`, default configuration, empty namespace: events/s
#      from the partition assignment to the last batch (its log lines), CPU and peak
#      RSS of fidelio (GNU time), CPU of redis-server (/proc/PID/stat), Redis memory per
#      customer (INFO used_memory growth / customers with a profile).
#   4. The naive configuration (pipeline.batch_size=1) on the same topic in its own
#      group and namespace, for --naive-seconds (its rate is steady; the log says how
#      many events it applied).
#   5. The Redis ceiling: the store alone as the pipeline uses it, 64 events per round
#      (fidelio-bench redis-apply, through src/store.c: store_fetch under WATCH, then
#      store_apply's MULTI/EXEC) and plain HSET pipelined 64 deep on one
#      connection (redis-benchmark -c 1 -P 64).
#   6. Latency: a `fidelio run` service on its own topics, fed at a steady 50% of the
#      rate of 3 by fidelio-bench latency; input Kafka timestamp to output Kafka
#      timestamp, p50/p99 over the run and the worst p99 of any 10 s. The feed starts
#      --latency-start seconds before the measured run: on a fresh namespace most
#      customers are new and a customer's first events make several outputs each
#      (3.5 per input in the first seconds against ~0.6 later, 200k/20k data), a burst
#      the steady state of issue 10 does not have; those seconds are reported apart
#      as the start-up (p50/p99, p99 per 10 s), never dropped. On the real
#      broker its topics have message.timestamp.type=LogAppendTime: both timestamps
#      are the broker's append times (the input's comes back in the feeder's
#      delivery report), so the time an input waits in the feeder's own producer is
#      not counted and the time an output waits in fidelio's producer is; the mock
#      has no LogAppendTime (CreateTime: the feeder's produce call, fidelio's).
#   7. Memory: `fidelio run` over --events events of as many distinct customers.
#   8. The peer (real broker): the Kafka Streams application of bench/kstreams-peer on
#      the same input topic, exactly_once_v2, RocksDB; its events/s.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BROKER=dev-kafka EVENTS=1000000 CUSTOMERS=100000 PARTITIONS=64 NAIVE_S=60 LAT_S=60 LAT_START=30 LAT_PARTS= FEED_LINGER=50
PEER=1 MEM=1 KEEP=0 QUICK=0 LAT_ONLY= LAT_SET=()
while [ $# -gt 0 ]; do
    case "$1" in
    --broker) BROKER=$2; shift ;;
    --events) EVENTS=$2; shift ;;
    --customers) CUSTOMERS=$2; shift ;;
    --partitions) PARTITIONS=$2; shift ;;
    --naive-seconds) NAIVE_S=$2; shift ;;
    --latency-seconds) LAT_S=$2; shift ;;
    --latency-start) LAT_START=$2; shift ;;
    --latency-partitions) LAT_PARTS=$2; shift ;;
    --feeder-linger) FEED_LINGER=$2; shift ;;
    --latency-only) LAT_ONLY=$2; shift ;;
    --latency-set) LAT_SET+=(--set "$2"); shift ;;
    --quick) QUICK=1; EVENTS=20000; CUSTOMERS=2000; NAIVE_S=15; LAT_S=20; LAT_START=10 ;;
    --no-peer) PEER=0 ;;
    --no-mem) MEM=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
    shift
done
case "$BROKER" in dev-kafka|real) ;; *) echo "bench/run.sh: --broker dev-kafka or real" >&2; exit 2 ;; esac
[ "$BROKER" = real ] || PEER=0
[ -z "$LAT_ONLY" ] || { PEER=0; MEM=0; }
LAT_PARTS=${LAT_PARTS:-$PARTITIONS}
for b in redis-server redis-cli redis-benchmark python3 /usr/bin/time meson; do
    command -v "$b" >/dev/null || { echo "bench/run.sh: $b is not installed (bash tools/setup.sh)" >&2; exit 2; }
done

note() { echo "bench: $*" >&2; }
BROKER_SH=${BENCH_BROKER_SH:-$ROOT/tests/kafka/broker.sh}
# One end of event time for every data set of this run (gen's default moves at midnight).
END=$(python3 -c 'import time; t = int(time.time()); print((t - t % 86400) * 1000)')

# Release build of fidelio and the tools, apart from the developers' build dirs.
B=$ROOT/build-bench
[ -f "$B/build.ninja" ] || meson setup "$B" --buildtype=release -Dtests=false >/dev/null
meson compile -C "$B" >/dev/null
FIDELIO=$B/fidelio BENCH=$B/bench/fidelio-bench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fidelio-bench.XXXXXX")
PIDS=()
KAFKA_DIR=
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "$KAFKA_DIR" ]; then bash "$BROKER_SH" stop "$KAFKA_DIR" >/dev/null 2>&1 || true; fi
    if [ "$KEEP" = 1 ]; then echo "bench: logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "bench: FAILED: $*" >&2; exit 1; }

# Topics: the input, and per fidelio run its outputs, DLQ and credits (a credits topic
# is also an input: runs must not share one).
# The latency run's topics have --latency-partitions; on the real broker its input and
# outputs keep the broker's append time as their Kafka timestamp (see 6. above).
RUNS=(default naive mem)
TS=
[ "$BROKER" = real ] && TS=:message.timestamp.type=LogAppendTime
TOPICS=("bench-touchpoints:$PARTITIONS" "bench-mem-in:$PARTITIONS" "bench-warmup:1"
        "peer-rewards:$PARTITIONS" "peer-stage-changes:$PARTITIONS"
        "bench-lat-in:$LAT_PARTS$TS" "bench-lat-rewards:$LAT_PARTS$TS" "bench-lat-stage-changes:$LAT_PARTS$TS"
        "bench-lat-dlq:$LAT_PARTS" "bench-lat-credits:$LAT_PARTS")
for r in "${RUNS[@]}"; do
    for t in rewards stage-changes dlq credits; do TOPICS+=("bench-$r-$t:$PARTITIONS"); done
done

if [ "$BROKER" = dev-kafka ]; then
    targs=()
    for t in "${TOPICS[@]}"; do targs+=(--topic "$t"); done
    "$FIDELIO" dev-kafka --partitions "$PARTITIONS" --bootstrap-file "$WORK/bootstrap" "${targs[@]}" \
        >"$WORK/dev-kafka.log" 2>&1 &
    PIDS+=($!)
    BROKER_PID=$!
    for _ in $(seq 100); do [ -s "$WORK/bootstrap" ] && break; sleep 0.1; done
    [ -s "$WORK/bootstrap" ] || die "dev-kafka did not start: $(tail -3 "$WORK/dev-kafka.log")"
    BOOT=$(cat "$WORK/bootstrap")
    BROKER_DESC="fidelio dev-kafka (librdkafka $("$FIDELIO" version | sed 's/.*librdkafka \([^)]*\)).*/\1/') mock cluster)"
    # The mock rebalances slowly with the default session settings (README).
    KOPTS=(--set kafka.session.timeout.ms=6000 --set kafka.heartbeat.interval.ms=500)
else
    [ -f "$BROKER_SH" ] || die "--broker real needs $BROKER_SH (the real-Kafka issue)"
    KAFKA_DIR=$WORK/kafka
    note "starting a real Kafka broker (tests/kafka/broker.sh)"
    bash "$BROKER_SH" start "$KAFKA_DIR" >"$WORK/broker.out" 2>&1 || die "broker: $(tail -5 "$WORK/broker.out")"
    BOOT=$(cat "$KAFKA_DIR/bootstrap")
    BROKER_PID=$(cat "$KAFKA_DIR/node1/pid")
    bash "$BROKER_SH" topics "$KAFKA_DIR" "${TOPICS[@]}" >"$WORK/topics.out" 2>&1 \
        || die "topics: $(tail -5 "$WORK/topics.out")"
    BROKER_DESC="Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$(dirname "$BROKER_SH")/pom.xml") (KRaft, 1 node)"
    KOPTS=()
fi

# redis-server as the issue measured it: AOF everysec, on a loopback TCP port.
REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK/redis" --save "" --appendonly yes \
    --appendfsync everysec --logfile "$WORK/redis/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
RCLI=(redis-cli -p "$REDIS_PORT")
for _ in $(seq 100); do "${RCLI[@]}" ping >/dev/null 2>&1 && break; sleep 0.05; done
"${RCLI[@]}" ping >/dev/null || die "redis-server did not start"
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0

# cpu_ticks PID: user+system clock ticks of a process so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
used_memory() { "${RCLI[@]}" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
profiles_of() { "${RCLI[@]}" --scan --pattern "$1*:p" | wc -l; }

# fid_opts RUN: settings of one fidelio run: its group, namespace and topics (and no
# HTTP server: runs overlap, and a developer's instance may hold the port).
fid_opts() {
    echo "-b $BOOT ${KOPTS[*]} --set redis.url=$REDIS_URL --set consumer.group=bench-$1 --set redis.key_prefix=bench-$1:" \
        "--set topics.rewards=bench-$1-rewards --set topics.stage_changes=bench-$1-stage-changes" \
        "--set topics.dlq=bench-$1-dlq --set topics.credits=bench-$1-credits --set log.level=info" \
        "--set http.port=0"  # no HTTP server: port 9464 may be taken on a shared machine
}

# log_span LOG: seconds from the first partition assignment to the "stopped" line.
log_span() {
    python3 - "$1" <<'PY'
import sys
from datetime import datetime
t0 = t1 = None
for line in open(sys.argv[1]):
    ts = line.split(" ", 1)[0]
    if " assigned " in line and t0 is None:
        t0 = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    if " stopped: " in line:
        t1 = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
if t0 is None or t1 is None:
    sys.exit("no assignment or stop line in " + sys.argv[1])
print(f"{t1 - t0:.3f}")
PY
}
# applied LOG: touchpoints applied, from the "stopped" line.
applied() { sed -n 's/.* stopped: \([0-9]*\) touchpoints.*/\1/p' "$1" | tail -1; }
dlq_of() { sed -n 's/.* stopped: .* \([0-9]*\) to the DLQ.*/\1/p' "$1" | tail -1; }

# run_until_idle NAME INPUT [SETTINGS...]: fidelio run --until-idle under GNU time;
# sets RATE, SPAN, FID_CPU_S, FID_RSS_KB, REDIS_CPU_S, REDIS_MEM_B, PROFILES, APPLIED.
run_until_idle() {
    local name=$1 input=$2
    shift 2
    local mem0 rt0
    mem0=$(used_memory)
    rt0=$(cpu_ticks "$REDIS_PID")
    # shellcheck disable=SC2046
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/$name.time" \
        "$FIDELIO" run $(fid_opts "$name") --set topics.touchpoints="$input" "$@" --until-idle >"$WORK/$name.log" 2>&1 \
        || die "fidelio run ($name): $(tail -3 "$WORK/$name.log")"
    REDIS_CPU_S=$(echo "$(cpu_ticks "$REDIS_PID") $rt0 $TCK" | awk '{print ($1 - $2) / $3}')
    read -r _ u s FID_RSS_KB <"$WORK/$name.time"
    FID_CPU_S=$(echo "$u $s" | awk '{print $1 + $2}')
    APPLIED=$(applied "$WORK/$name.log")
    SPAN=$(log_span "$WORK/$name.log")
    # --until-idle waits 2 s at the end to be sure nothing is left: not processing time.
    RATE=$(echo "$APPLIED $SPAN" | awk '{s = $2 - 2; print (s > 0 ? $1 / s : 0)}')
    REDIS_MEM_B=$(( $(used_memory) - mem0 ))
    PROFILES=$(profiles_of "bench-$name:")
    [ "$(dlq_of "$WORK/$name.log")" = 0 ] || die "fidelio run ($name) sent events to the DLQ: $(grep stopped "$WORK/$name.log")"
}

note "broker: $BROKER_DESC at $BOOT; redis-server $(redis-server --version | awk '{print $3}' | sed 's/v=//') on port $REDIS_PORT"

if [ -z "$LAT_ONLY" ]; then
# 1. The data.
note "1/8 fidelio gen: $EVENTS events, $CUSTOMERS customers -> bench-touchpoints"
# shellcheck disable=SC2046
"$FIDELIO" gen -b "$BOOT" --customers "$CUSTOMERS" --events "$EVENTS" --seed 1 --end "$END" -t bench-touchpoints 2>"$WORK/gen.log" \
    || die "gen: $(tail -3 "$WORK/gen.log")"
GEN_RATE=$(sed -n 's/.*(\([0-9]*\) events\/s).*/\1/p' "$WORK/gen.log")

# 2. The bare consumer.
note "2/8 bare librdkafka consumer"
"$BENCH" consume -b "$BOOT" -t bench-touchpoints -n "$EVENTS" >"$WORK/consume.out" 2>"$WORK/consume.log" \
    || die "bare consumer: $(tail -3 "$WORK/consume.log")"
CONSUMER_RATE=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' "$WORK/consume.out")

# 3. fidelio run, default configuration.
note "3/8 fidelio run --until-idle, default configuration"
run_until_idle default bench-touchpoints
[ "$APPLIED" = "$EVENTS" ] || die "the default run applied $APPLIED of $EVENTS events"
DEF_RATE=$RATE DEF_SPAN=$SPAN
DEF_FID_US=$(echo "$FID_CPU_S $EVENTS" | awk '{printf "%.1f", $1 / $2 * 1e6}')
DEF_REDIS_US=$(echo "$REDIS_CPU_S $EVENTS" | awk '{printf "%.1f", $1 / $2 * 1e6}')
DEF_RSS_MB=$(( FID_RSS_KB / 1024 ))
DEF_MEM_PER_CUST=$(( REDIS_MEM_B / (PROFILES > 0 ? PROFILES : 1) ))
DEF_PROFILES=$PROFILES

# 4. The naive configuration.
note "4/8 fidelio run, naive configuration (pipeline.batch_size=1), ${NAIVE_S} s"
: >"$WORK/naive.log"  # exists before the wait below greps it
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts naive) --set topics.touchpoints=bench-touchpoints --set pipeline.batch_size=1 \
    >"$WORK/naive.log" 2>&1 &
NAIVE_PID=$!
PIDS+=("$NAIVE_PID")
for _ in $(seq 600); do grep -q " assigned " "$WORK/naive.log" && break; sleep 0.1; done
sleep "$NAIVE_S"
kill -0 "$NAIVE_PID" 2>/dev/null || die "the naive run ended early: $(tail -3 "$WORK/naive.log")"
kill -TERM "$NAIVE_PID"
wait "$NAIVE_PID" || die "the naive run did not stop cleanly: $(tail -3 "$WORK/naive.log")"
NAIVE_RATE=$(echo "$(applied "$WORK/naive.log") $(log_span "$WORK/naive.log")" | awk '{print ($2 > 0 ? $1 / $2 : 0)}')

# 5. The Redis ceiling.
APPLIES=$(( EVENTS / 5 > 20000 ? EVENTS / 5 : 20000 ))
note "5/8 Redis ceiling: the store (fetch + MULTI/EXEC apply), 64 events per round ($APPLIES applies), plain HSET pipelined 64 deep"
rt0=$(cpu_ticks "$REDIS_PID")
"$BENCH" redis-apply -u "$REDIS_URL" -n "$APPLIES" -c "$CUSTOMERS" -d 64 >"$WORK/apply.out" 2>"$WORK/apply.log" \
    || die "redis-apply: $(tail -3 "$WORK/apply.log")"
APPLY_RATE=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' "$WORK/apply.out")
APPLY_REDIS_US=$(echo "$(cpu_ticks "$REDIS_PID") $rt0 $TCK $APPLIES" | awk '{printf "%.1f", ($1 - $2) / $3 / $4 * 1e6}')
redis-benchmark -p "$REDIS_PORT" -c 1 -P 64 -t hset -n $(( APPLIES * 5 )) -r "$CUSTOMERS" -q 2>/dev/null \
    | tr '\r' '\n' >"$WORK/hset.out" || die "redis-benchmark failed"
HSET_RATE=$(sed -n 's/^HSET: \([0-9.]*\) requests per second.*/\1/p' "$WORK/hset.out" | tail -1 | cut -d. -f1)
fi

# 6. Latency at a steady 50% of the default run's rate.
if [ -n "$LAT_ONLY" ]; then
    LAT_RATE=$LAT_ONLY
else
    LAT_RATE=$(echo "$DEF_RATE" | awk '{r = int($1 / 2); print (r < 1 ? 1 : r)}')
fi
LAT_EVENTS=$(( LAT_RATE * (LAT_START + LAT_S) ))
note "6/8 latency: $LAT_RATE events/s for $LAT_START s of start-up then $LAT_S s (50% of the default run's rate), $LAT_PARTS partitions (load $(cut -d' ' -f1-3 /proc/loadavg))${LAT_SET:+; latency instance: ${LAT_SET[*]}}"
LAT_LOAD0=$(cut -d' ' -f1 /proc/loadavg)
"$FIDELIO" gen --customers "$CUSTOMERS" --events "$LAT_EVENTS" --seed 2 --days 1 --end "$END" -q -o "$WORK/lat.jsonl" \
    || die "gen (latency data)"
: >"$WORK/lat.log"  # exists before the wait below greps it
# shellcheck disable=SC2046
# (log.level=debug: its loop's split of every 10 s, printed below)
lat_launch=$(date +%s.%N)
"$FIDELIO" run $(fid_opts lat) --set topics.touchpoints=bench-lat-in --set log.level=debug "${LAT_SET[@]}" >"$WORK/lat.log" 2>&1 &
LAT_PID=$!
PIDS+=("$LAT_PID")
for _ in $(seq 600); do grep -q " assigned " "$WORK/lat.log" && break; sleep 0.1; done
grep -q " assigned " "$WORK/lat.log" || die "the latency instance got no partitions: $(tail -3 "$WORK/lat.log")"
# fidelio's own start, before any of the latency above: launch to its partitions (the
# feed starts after it, so an input never waits for it here; after a restart one would)
LAT_ASSIGN_S=$(echo "$(date +%s.%N) $lat_launch" | awk '{printf "%.1f", $1 - $2}')
# CPU seconds of each process over the latency step: who takes the 2 cores
lat_b0=$(cpu_ticks "$BROKER_PID") lat_r0=$(cpu_ticks "$REDIS_PID") lat_f0=$(cpu_ticks "$LAT_PID") lat_t0=$(date +%s.%N)
# ... and how long redis-server's and fidelio's main threads waited for a core (runnable, not running)
rq_wait() { awk '{print $2}' "/proc/$1/schedstat" 2>/dev/null || echo 0; }
lat_rqr0=$(rq_wait "$REDIS_PID") lat_rqf0=$(rq_wait "$LAT_PID")
/usr/bin/time -f '%U %S' -o "$WORK/feeder.time" "$BENCH" latency -b "$BOOT" -i "$WORK/lat.jsonl" -t bench-lat-in -R bench-lat-rewards -S bench-lat-stage-changes \
    -W bench-warmup -r "$LAT_RATE" -s "$LAT_S" -w "$LAT_START" -L "$FEED_LINGER" -D "$WORK/latency.tsv" >"$WORK/latency.out" 2>"$WORK/latency.log" || die "latency: $(tail -3 "$WORK/latency.log")"
# CPU seconds of each of its threads over the run, in creation order: fidelio (the loop),
# then the consumer's librdkafka threads, then the producer's (rdk:main, rdk:broker-1, rdk:broker<id>)
LAT_CPU=$(echo "$(cpu_ticks "$BROKER_PID") $lat_b0 $(cpu_ticks "$REDIS_PID") $lat_r0 $(cpu_ticks "$LAT_PID") $lat_f0 $TCK $(date +%s.%N) $lat_t0 $(cat "$WORK/feeder.time")" |
    awk '{printf "broker %.1f, redis-server %.1f, fidelio %.1f, feeder (fidelio-bench latency) %.1f, in %.0f s of wall clock", ($1-$2)/$7, ($3-$4)/$7, ($5-$6)/$7, $10+$11, $8-$9}')
LAT_RQ=$(echo "$(rq_wait "$REDIS_PID") $lat_rqr0 $(rq_wait "$LAT_PID") $lat_rqf0" |
    awk '{printf "redis-server %.1f s, fidelio (its loop) %.1f s", ($1-$2)/1e9, ($3-$4)/1e9}')
LAT_THREADS=$(for t in $(ls /proc/"$LAT_PID"/task 2>/dev/null | sort -n); do
    awk -v tck="$TCK" '{ sub(/^[^(]*\(/, ""); c = $0; sub(/\).*/, "", c); sub(/^[^)]*\) /, "");
        printf "%s %.1f, ", c, ($12 + $13) / tck }' "/proc/$LAT_PID/task/$t/stat" 2>/dev/null
done | sed 's/, $//')
kill -TERM "$LAT_PID"
wait "$LAT_PID" || die "the latency instance did not stop cleanly: $(tail -3 "$WORK/lat.log")"
LAT_LOAD1=$(cut -d' ' -f1 /proc/loadavg)
lat() { sed -n "s/.* $1=\([0-9A-Za-z]*\).*/\1/p; s/^$1=\([0-9A-Za-z]*\).*/\1/p" "$WORK/latency.out" | head -1; }
LAT_P50=$(lat p50_ms) LAT_P99=$(lat p99_ms) LAT_W99=$(lat worst_10s_p99_ms) LAT_TS=$(lat input_ts)
LAT_WINDOWS=$(sed -n 's/^latency: .*p99 per 10 s: \(.*\) ms/\1/p' "$WORK/latency.log")
LAT_S50=$(lat start_p50_ms) LAT_S99=$(lat start_p99_ms) LAT_SW99=$(lat start_worst_10s_p99_ms)
LAT_START_LINE=$(sed -n 's/^start-up: //p' "$WORK/latency.log")
LAT_FEEDER=$(sed -n 's/^feeder: //p' "$WORK/latency.log")
LAT_OUT_PARTS=$(sed -n 's/.*output topics (partitions): \(.*\)/\1/p' "$WORK/lat.log" | head -1)
loop_col() { sed -n "s/.*seconds spent since the last report: .*$1 \([0-9.]*\).*/\1/p" "$WORK/lat.log" | paste -sd' '; }
LAT_LOOP_DECIDE=$(loop_col "deciding and applying") LAT_LOOP_FILL=$(loop_col "filling batches")
LAT_LOOP_PRODUCE=$(loop_col "producing") LAT_LOOP_REDIS=$(loop_col "waiting for Redis's replies")
LAT_LOOP_WAITS=$(sed -n "s/.*waiting for Redis's replies [0-9.]*, \([0-9]*\) times for \([0-9]*\) batches.*/\1\/\2/p" "$WORK/lat.log" | paste -sd' ')
# its producer's and its consumer's requests (librdkafka's statistics, log.level=debug)
req_col() { sed -n "s/.* $1 [0-9]* requests in [0-9.]* s (\([0-9]*\)\/s), \([0-9.]*\) messages each; round trip avg \([0-9.]*\) ms.*queued before a request avg [0-9.]* ms, p99 \([0-9.]*\) ms.*/\\$2/p" "$WORK/lat.log" | paste -sd' '; }
LAT_PRODUCER="requests/s $(req_col produce 1); messages each $(req_col produce 2); round trip avg ms $(req_col produce 3); queued before a request p99 ms $(req_col produce 4)"
LAT_FETCH="fetch requests/s $(req_col fetch 1); messages each $(req_col fetch 2)"
# where an input's time went (log.level=debug, per 10 s): its age p50/p99 when taken into a batch,
# applied, handed to the producer; an output's Kafka timestamp after its batch's first produce call
age_col() { sed -n "s/.*inputs' age since their Kafka timestamp, p50\/p99 ms: taken into a batch \([0-9]*\/[0-9]*\), applied \([0-9]*\/[0-9]*\), handed to the producer \([0-9]*\/[0-9]*\) .*produce call, p50\/p99 ms: \([0-9]*\/[0-9]*\) .*/\\$1/p" "$WORK/lat.log" | paste -sd' '; }
LAT_AGES="taken into a batch $(age_col 1); applied $(age_col 2); handed to the producer $(age_col 3); outputs after their batch's first produce call $(age_col 4)"
if [ -n "$LAT_ONLY" ]; then
    echo
    echo "latency only: $LAT_RATE ev/s for $LAT_S s, $LAT_PARTS partitions, $CUSTOMERS customers; broker: $BROKER_DESC;" \
        "fidelio $(git rev-parse --short HEAD 2>/dev/null || echo '?') release build${LAT_SET:+; settings: ${LAT_SET[*]}}"
    echo "p50 $LAT_P50 ms, p99 $LAT_P99 ms, worst 10 s p99 $LAT_W99 ms; p99 per 10 s: $LAT_WINDOWS ms ($LAT_TS timestamps; load average $LAT_LOAD0 -> $LAT_LOAD1)"
    echo "latency start-up (fed before the run above, not in it): p50 $LAT_S50 ms, p99 $LAT_S99 ms; $LAT_START_LINE"
    echo "latency instance: launch to its partitions assigned $LAT_ASSIGN_S s (before the feed starts: in no latency figure)"
    echo "latency feeder (linger.ms $FEED_LINGER): $LAT_FEEDER"
    echo "latency run's outputs: $LAT_OUT_PARTS"
    echo "latency run's loop, s per 10 s from the start-up on: deciding and applying $LAT_LOOP_DECIDE (of which waiting for Redis's replies $LAT_LOOP_REDIS; waits/batches $LAT_LOOP_WAITS); producing $LAT_LOOP_PRODUCE; filling (waiting for input) $LAT_LOOP_FILL"
    echo "latency run's output producer, per 10 s: $LAT_PRODUCER"
    echo "latency run's input consumer, per 5 s: $LAT_FETCH"
    echo "latency run's inputs' age since their Kafka timestamp, p50/p99 ms per 10 s: $LAT_AGES"
    echo "latency instance's CPU s by thread: $LAT_THREADS"
    echo "CPU s during the latency step: $LAT_CPU"
    echo "waiting for a core (runnable, not running) during the latency step: $LAT_RQ"
    exit 0
fi

# 7. Memory with as many distinct customers as events.
MEM_RSS_MB=- MEM_PER_CUST=- MEM_PROFILES=-
if [ "$MEM" = 1 ]; then
    note "7/8 memory: $EVENTS events of $EVENTS distinct customers"
    "$FIDELIO" gen -b "$BOOT" --customers "$EVENTS" --events "$EVENTS" --seed 3 --skew 0 --referrals 0 --end "$END" \
        -t bench-mem-in 2>"$WORK/gen-mem.log" || die "gen (memory data): $(tail -3 "$WORK/gen-mem.log")"
    run_until_idle mem bench-mem-in
    MEM_RSS_MB=$(( FID_RSS_KB / 1024 )) MEM_PROFILES=$PROFILES
    MEM_PER_CUST=$(( REDIS_MEM_B / (PROFILES > 0 ? PROFILES : 1) ))
fi

# 8. The peer, and a check that it computes what Fidelio computes for the core.
PEER_RATE= PEER_CHECK="not run"
if [ "$PEER" = 1 ]; then
    note "8/8 the Kafka Streams peer (exactly_once_v2, RocksDB) on bench-touchpoints"
    bash "$ROOT/bench/kstreams-peer/run-peer.sh" --bootstrap "$BOOT" --input bench-touchpoints \
        --rewards peer-rewards --stage-changes peer-stage-changes --expect "$EVENTS" --state-dir "$WORK/peer-state" \
        >"$WORK/peer.out" 2>"$WORK/peer.log" || note "the peer FAILED: $(grep -v WARN "$WORK/peer.log" | tail -3)"
    PEER_RATE=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' "$WORK/peer.out")
fi
if [ -n "$PEER_RATE" ]; then
    # Every 10th customer (all with --quick): each reward and tier change of the peer
    # equals `fidelio simulate` with the same program core over the same events.
    every=10
    [ "$QUICK" = 1 ] && every=1
    PEER_CHECK=FAILED
    note "checking the peer against fidelio simulate -r bench/kstreams-peer/core-rules.yaml (every ${every}th customer)"
    "$FIDELIO" gen --customers "$CUSTOMERS" --events "$EVENTS" --seed 1 --end "$END" -q -o "$WORK/events.jsonl"
    "$FIDELIO" simulate -r bench/kstreams-peer/core-rules.yaml "$WORK/events.jsonl" >"$WORK/core.sim" 2>"$WORK/core.sim.log"
    "$FIDELIO" consume -b "$BOOT" -t peer-rewards --schema reward -e >"$WORK/peer.rewards" 2>>"$WORK/peer.log"
    "$FIDELIO" consume -b "$BOOT" -t peer-stage-changes --schema stage-change -e >"$WORK/peer.stages" 2>>"$WORK/peer.log"
    python3 bench/kstreams-peer/verify.py "$WORK/core.sim" "$WORK/peer.rewards" "$WORK/peer.stages" "$every" \
        >"$WORK/verify.out" 2>"$WORK/verify.log" || note "the peer DISAGREES with fidelio simulate: $(cat "$WORK/verify.log")"
    if [ -s "$WORK/verify.out" ]; then PEER_CHECK="$(sed -n 's/customers=\([0-9]*\) rewards=\([0-9]*\) stage_changes=\([0-9]*\).*/\1 customers, \2 rewards, \3 tier changes/p' "$WORK/verify.out") equal to fidelio simulate's"; fi
fi

# The table.
python3 - "$@" <<PY
consumer, fid, naive = $CONSUMER_RATE, $DEF_RATE, $NAIVE_RATE
peer = "$PEER_RATE"
def f(x): return f"{x:,.0f}"
rows = [
 ("bare librdkafka consumer (C, same topic)", f(consumer) + " ev/s", "1.00 x consumer", ""),
 ("fidelio run, default config", f(fid) + " ev/s", f"{fid / consumer:.3f} x consumer", ">= 0.3"),
 ("fidelio run, naive (batch 1)", f(naive) + " ev/s", f"default = {fid / naive:.1f} x naive" if naive else "-", ">= 10"),
 ("redis-server: store fetch+apply, depth 64", f($APPLY_RATE) + " applies/s", "$APPLY_REDIS_US us redis CPU/apply", ""),
 ("redis-server: plain HSET, depth 64", f(${HSET_RATE:-0}) + " cmds/s", "", ""),
 ("Kafka Streams peer (EOS v2, RocksDB)", (f(float(peer)) + " ev/s") if peer else "n/a (real broker only)",
  f"fidelio = {fid / float(peer):.2f} x peer" if peer else "-", "> 1"),
 ("CPU per event: redis-server", "$DEF_REDIS_US us", "", "<= 8 us"),
 ("CPU per event: fidelio", "$DEF_FID_US us", "", "<= 6 us"),
 ("latency at 50% rate ($LAT_RATE ev/s, ${LAT_S} s, $LAT_PARTS partitions)", "p50 $LAT_P50 ms, p99 $LAT_P99 ms",
  "worst 10 s p99 $LAT_W99 ms", "p99 <= 250 ms, flat"),
 ("latency start-up: the ${LAT_START} s fed before (fresh namespace)", "p50 $LAT_S50 ms, p99 $LAT_S99 ms",
  "worst 10 s p99 $LAT_SW99 ms", "(reported apart)"),
 ("fidelio RSS, $DEF_PROFILES customers", "$DEF_RSS_MB MB", "", "<= 256 MB"),
 ("fidelio RSS, $MEM_PROFILES distinct customers", "$MEM_RSS_MB MB", "", "<= 256 MB"),
 ("Redis memory per customer (~$(( EVENTS / (DEF_PROFILES > 0 ? DEF_PROFILES : 1) )) events each)", "$DEF_MEM_PER_CUST B", "", "<= 1 KiB at 10 events"),
 ("Redis memory per customer (1 event each)", "$MEM_PER_CUST B", "", ""),
]
w = [max(len(r[i]) for r in rows + [("what", "measured", "ratio", "target")]) for i in range(4)]
line = lambda r: "| " + " | ".join(r[i].ljust(w[i]) for i in range(4)) + " |"
print()
print("$EVENTS events, $CUSTOMERS customers, $PARTITIONS partitions; broker: $BROKER_DESC;")
print("redis-server AOF everysec; fidelio $("$FIDELIO" version | awk '{print $2}') release build ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))")
print(line(("what", "measured", "ratio", "target")))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in rows:
    print(line(r))
print()
print("gen wrote $GEN_RATE events/s; latency p99 per 10 s: $LAT_WINDOWS ms ($LAT_TS timestamps; load average $LAT_LOAD0 -> $LAT_LOAD1)")
print("latency start-up: $LAT_START_LINE")
print("latency instance: launch to its partitions assigned $LAT_ASSIGN_S s (before the feed starts: in no latency figure)")
print("latency feeder (linger.ms $FEED_LINGER): $LAT_FEEDER")
print("latency run's outputs: $LAT_OUT_PARTS")
print("latency run's loop, s per 10 s from the start-up on: deciding and applying $LAT_LOOP_DECIDE (of which waiting for Redis's replies $LAT_LOOP_REDIS; waits/batches $LAT_LOOP_WAITS); producing $LAT_LOOP_PRODUCE; filling (waiting for input) $LAT_LOOP_FILL")
print("latency run's output producer, per 10 s: $LAT_PRODUCER")
print("latency run's input consumer, per 5 s: $LAT_FETCH")
print("latency run's inputs' age since their Kafka timestamp, p50/p99 ms per 10 s: $LAT_AGES")
print("latency instance's CPU s by thread: $LAT_THREADS")
print("CPU s during the latency step: $LAT_CPU")
print("waiting for a core (runnable, not running) during the latency step: $LAT_RQ")
print("peer check (sampled customers): $PEER_CHECK")
PY
