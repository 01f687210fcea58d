#!/usr/bin/env bash
# bench/ab.sh - A/B of two or more fidelio builds on the same data, in one session. The
# machine is shared and noisy: the builds alternate each round (A B C A B C ...) so the
# noise falls on all of them, and the comparison is within one run. Not a test: nothing
# here asserts a time.
#
#   bench/ab.sh [options] FIDELIO_A FIDELIO_B [FIDELIO_C ...]   (options before or after)
#
#   --events M       events generated once (default 200000)
#   --customers N    customers (default 20000)
#   --partitions P   partitions of every topic (default 64)
#   --rounds R       rounds; each round runs every binary once (default 3)
#   --set K=V        a setting for every run and replay (repeatable)
#   --replay         also time `fidelio replay --outputs topics` after each run (issue 11)
#   --perf DIR       record redis-server with `perf record -g` during each run
#                    (DIR/perf.N.data)
#   --unix           Redis over a unix socket (default: loopback TCP, as bench/run.sh)
#   --keep           keep the work directory (logs, GNU time files, INFO commandstats per run: N.cmdstats) and print its path
#
# One `fidelio dev-kafka` and one redis-server (AOF everysec); `fidelio gen` writes the
# events once (both with the first binary); each run is `fidelio run --until-idle` in its
# own consumer group, namespace and output topics on the same input topic. Per run it
# prints: events/s (partition assignment to the "stopped" line, less the 2 s idle grace),
# fidelio CPU per event (GNU time), redis-server CPU per event (/proc/PID/stat), Redis
# bytes per customer (INFO used_memory growth / customers with a profile), Redis commands
# per event (INFO commandstats, reset before each run), with --replay the replay's
# events/s, its ratio to the run of the same round (rp/run: the two ran back to back, so
# the load was nearly the same), its redis-server CPU and commands per event. At the end:
# the medians per binary and each binary's events/s against the first's.
set -euo pipefail
EVENTS=200000 CUSTOMERS=20000 PARTITIONS=64 ROUNDS=3 SETS=() REPLAY=0 PERF_DIR= UNIX=0 KEEP=0 BINS=()
usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
need() { [ $# -ge 2 ] || { echo "bench/ab.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
    case "$1" in
    --events) need "$@"; EVENTS=$2; shift 2 ;;
    --customers) need "$@"; CUSTOMERS=$2; shift 2 ;;
    --partitions) need "$@"; PARTITIONS=$2; shift 2 ;;
    --rounds) need "$@"; ROUNDS=$2; shift 2 ;;
    --set) need "$@"; SETS+=(--set "$2"); shift 2 ;;
    --perf) need "$@"; PERF_DIR=$2; shift 2 ;;
    --replay) REPLAY=1; shift ;;
    --unix) UNIX=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; BINS+=("$@"); break ;;
    -*) echo "bench/ab.sh: unknown option $1 (--help)" >&2; exit 2 ;;
    *) BINS+=("$1"); shift ;;
    esac
done
[ ${#BINS[@]} -ge 2 ] || { echo "usage: bench/ab.sh [options] FIDELIO_A FIDELIO_B [FIDELIO...] (--help)" >&2; exit 2; }
for v in EVENTS CUSTOMERS PARTITIONS ROUNDS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench/ab.sh: --${v,,} must be a positive integer, not '${!v}'" >&2; exit 2; }
done
for i in "${!BINS[@]}"; do
    [ -f "${BINS[$i]}" ] && [ -x "${BINS[$i]}" ] || { echo "bench/ab.sh: ${BINS[$i]} is not an executable" >&2; exit 2; }
    BINS[$i]=$(realpath "${BINS[$i]}")
done
for b in redis-server redis-cli python3 /usr/bin/time ${PERF_DIR:+perf}; do
    command -v "$b" >/dev/null || { echo "bench/ab.sh: $b is not installed (bash tools/setup.sh)" >&2; exit 2; }
done
[ -z "$PERF_DIR" ] || mkdir -p "$PERF_DIR"
W=$(mktemp -d "${TMPDIR:-/tmp}/fidelio-ab.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then echo "bench/ab.sh: logs kept in $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
NB=${#BINS[@]}
NRUNS=$(( ROUNDS * NB ))
targs=(--topic "touchpoints:$PARTITIONS")
for n in $(seq "$NRUNS"); do
    for t in rewards stage-changes dlq credits; do targs+=(--topic "r$n-$t:$PARTITIONS"); done
done
"${BINS[0]}" dev-kafka --partitions "$PARTITIONS" --bootstrap-file "$W/boot" "${targs[@]}" >"$W/dev-kafka.log" 2>&1 &
PIDS+=($!)
mkdir -p "$W/redis"
if [ "$UNIX" = 1 ]; then
    redis-server --port 0 --unixsocket "$W/redis/redis.sock" --dir "$W/redis" --save "" --appendonly yes \
        --appendfsync everysec --logfile "$W/redis/redis.log" &
    RC=(redis-cli -s "$W/redis/redis.sock") RURL="unix://$W/redis/redis.sock"
else
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --bind 127.0.0.1 --port "$PORT" --dir "$W/redis" --save "" --appendonly yes \
        --appendfsync everysec --logfile "$W/redis/redis.log" &
    RC=(redis-cli -p "$PORT") RURL="redis://127.0.0.1:$PORT/0"
fi
RP=$!
PIDS+=("$RP")
for _ in $(seq 600); do [ -s "$W/boot" ] && "${RC[@]}" ping >/dev/null 2>&1 && break; sleep 0.1; done
[ -s "$W/boot" ] || { echo "bench/ab.sh: dev-kafka did not start: $(tail -3 "$W/dev-kafka.log")" >&2; exit 1; }
"${RC[@]}" ping >/dev/null 2>&1 || { echo "bench/ab.sh: redis-server did not start: $(tail -3 "$W/redis/redis.log")" >&2; exit 1; }
BOOT=$(cat "$W/boot")
END=$(python3 -c 'import time; t = int(time.time()); print((t - t % 86400) * 1000)')
"${BINS[0]}" gen -q -b "$BOOT" --customers "$CUSTOMERS" --events "$EVENTS" --seed 1 --end "$END" -t touchpoints \
    2>"$W/gen.log" || { echo "bench/ab.sh: gen failed: $(tail -3 "$W/gen.log")" >&2; exit 1; }
TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
mem() { "${RC[@]}" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
ms() { python3 -c 'import sys, datetime; print(int(datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp() * 1000))' "$1"; }

# one_run BIN N: runs BIN as run N; prints "ev/s fidelio_us redis_us bytes/customer commands/event"
one_run() {
    local bin=$1 n=$2 pp= m0 m1 r0 r1 t0 t1 applied prof calls
    "${RC[@]}" config resetstat >/dev/null
    if [ -n "$PERF_DIR" ]; then perf record -g -p "$RP" -o "$PERF_DIR/perf.$n.data" >/dev/null 2>&1 & pp=$!; fi
    m0=$(mem)
    r0=$(cpu_ticks "$RP")
    /usr/bin/time -f '%e %U %S %M' -o "$W/$n.time" "$bin" run -b "$BOOT" --set kafka.session.timeout.ms=6000 \
        --set kafka.heartbeat.interval.ms=500 --set "redis.url=$RURL" --set http.port=0 --set log.level=info \
        --set consumer.group="g$n" --set redis.key_prefix="n$n:" --set topics.touchpoints=touchpoints \
        --set topics.rewards="r$n-rewards" --set topics.stage_changes="r$n-stage-changes" \
        --set topics.dlq="r$n-dlq" --set topics.credits="r$n-credits" "${SETS[@]}" \
        --until-idle >"$W/$n.log" 2>&1 || { echo "bench/ab.sh: run $n ($bin) failed: $(tail -3 "$W/$n.log")" >&2; exit 1; }
    r1=$(cpu_ticks "$RP")
    if [ -n "$pp" ]; then kill -INT "$pp"; wait "$pp" || true; fi
    m1=$(mem)
    applied=$(sed -n 's/.*stopped: \([0-9]*\) touchpoints.*/\1/p' "$W/$n.log" | tail -1)
    [ "$applied" = "$EVENTS" ] || { echo "bench/ab.sh: run $n ($bin) applied ${applied:-none} of $EVENTS" >&2; exit 1; }
    t0=$(ms "$(grep -m1 ' assigned ' "$W/$n.log" | cut -d' ' -f1)")
    t1=$(ms "$(grep 'stopped:' "$W/$n.log" | tail -1 | cut -d' ' -f1)")
    prof=$("${RC[@]}" --scan --pattern "n$n:*:p" | wc -l)
    "${RC[@]}" info commandstats | tr -d '\r' | grep '^cmdstat_' >"$W/$n.cmdstats"
    calls=$(awk -F'[:=,]' '{c += $3} END {print c + 0}' "$W/$n.cmdstats")
    python3 - "$EVENTS" "$t0" "$t1" "$(( r1 - r0 ))" "$TCK" "$W/$n.time" "$(( m1 - m0 ))" "$prof" "$calls" <<'PY'
import sys
ev, t0, t1, rt, tck = (int(x) for x in sys.argv[1:6])
u, s = (float(x) for x in open(sys.argv[6]).read().split()[-3:-1])
mem, prof, calls = (int(x) for x in sys.argv[7:10])
span = (t1 - t0 - 2000) / 1000  # --until-idle waits 2 s at the end
print(f"{ev / span:.0f} {(u + s) / ev * 1e6:.1f} {rt / tck / ev * 1e6:.1f} {mem // max(prof, 1)} {calls / ev:.2f}")
PY
}
# one_replay BIN N: replays into namespace rpN; prints "ev/s redis_us commands/event" of the
# replay (events/s: its report line; Redis CPU and commands as for a run)
one_replay() {
    local bin=$1 n=$2 r0 r1 rate calls
    "${RC[@]}" config resetstat >/dev/null
    r0=$(cpu_ticks "$RP")
    "$bin" replay -b "$BOOT" --set "redis.url=$RURL" --set http.port=0 "${SETS[@]}" \
        --namespace "rp$n" --outputs topics >"$W/rp$n.out" 2>"$W/rp$n.log" \
        || { echo "bench/ab.sh: replay $n ($bin) failed: $(tail -3 "$W/rp$n.log")" >&2; exit 1; }
    r1=$(cpu_ticks "$RP")
    rate=$(sed -n 's/.*events read in [0-9.]* s (\([0-9]*\) events\/s).*/\1/p' "$W/rp$n.out" | grep . || echo -)
    calls=$("${RC[@]}" info commandstats | tr -d '\r' | grep '^cmdstat_' | awk -F'[:=,]' '{c += $3} END {print c + 0}')
    python3 -c 'import sys; ev, rt, tck, calls = (int(x) for x in sys.argv[2:]); print(sys.argv[1], f"{rt / tck / ev * 1e6:.1f} {calls / ev:.2f}")' \
        "$rate" "$EVENTS" "$(( r1 - r0 ))" "$TCK" "$calls"
}
echo "$EVENTS events, $CUSTOMERS customers, $PARTITIONS partitions, dev-kafka; redis-server AOF everysec" \
    "($([ "$UNIX" = 1 ] && echo unix socket || echo loopback TCP)); $ROUNDS round(s) of $NB binaries, alternated"
for i in "${!BINS[@]}"; do printf '  %s = %s\n' "$(printf "\\x$(printf %x $((65 + i)))")" "${BINS[$i]}"; done
printf '%-5s %-3s %-3s %9s %13s %11s %12s %11s %11s %9s %12s %11s\n' round run bin "run ev/s" "fidelio us/ev" \
    "redis us/ev" "B/customer" "commands/ev" "replay ev/s" "rp/run" "rp redis us" "rp cmd/ev"
n=0
for r in $(seq "$ROUNDS"); do
    for i in "${!BINS[@]}"; do
        n=$((n + 1))
        v=$(printf "\\x$(printf %x $((65 + i)))")
        read -r rate fus rus bpc cpe < <(one_run "${BINS[$i]}" "$n")
        [ -n "${cpe:-}" ] || exit 1
        rrate=- rratio=- rrus=- rcpe=-
        [ "$REPLAY" = 0 ] || read -r rrate rrus rcpe < <(one_replay "${BINS[$i]}" "$n")
        [ "$rrate" = - ] || rratio=$(python3 -c 'import sys; print(f"{int(sys.argv[1]) / int(sys.argv[2]):.2f}")' "$rrate" "$rate")
        printf '%-5s %-3s %-3s %9s %13s %11s %12s %11s %11s %9s %12s %11s\n' "$r" "$n" "$v" "$rate" "$fus" "$rus" "$bpc" \
            "$cpe" "$rrate" "$rratio" "$rrus" "$rcpe" | tee -a "$W/results"
    done
done
python3 - "$W/results" "$NB" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
names = [chr(65 + i) for i in range(int(sys.argv[2]))]
def med(rs, i):
    xs = [float(r[i]) for r in rs if r[i] != "-"]
    return statistics.median(xs) if xs else None
m = {}
for v in names:
    rs = [r for r in rows if r[2] == v]
    m[v] = [med(rs, i) for i in range(3, 12)]
    rate, fus, rus, bpc, cpe, rr, ratio, rrus, rcpe = m[v]
    print(f"median {v}: {rate:,.0f} events/s, fidelio {fus:.1f} us/event, redis {rus:.1f} us/event, "
          f"{bpc:,.0f} B/customer, {cpe:.2f} commands/event"
          + (f"; replay {rr:,.0f} events/s, replay/run of the same round {ratio:.2f} (median),"
             f" replay's redis {rrus:.1f} us/event, {rcpe:.2f} commands/event" if rr else ""))
for v in names[1:]:
    print(f"{v} / A: {m[v][0] / m['A'][0]:.2f} x events/s"
          + (f", replay {m[v][5] / m['A'][5]:.2f} x" if m[v][5] and m['A'][5] else ""))
PY
"${RC[@]}" info persistence | tr -d '\r' | grep -E '^aof_rewrites:' || true
uptime
