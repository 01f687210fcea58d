#!/usr/bin/env bash
# bench/ab_rate.sh - two fidelio binaries against each other on the same data, in one
# run, alternating (A B A B ...) so that the noise of a shared machine falls on
# both: events/s of `fidelio run --until-idle` and CPU per event of fidelio and of
# redis-server (from /proc). Not a test: nothing here asserts a time.
#
#   bench/ab_rate.sh OLD_FIDELIO NEW_FIDELIO [--events M] [--customers N] [--partitions P]
#               [--rounds R] [--set K=V]... [--replay]
#
#   --rounds R  runs of each binary (default 3)
#   --set K=V   a setting for every run
#   --replay    also time `fidelio replay --outputs topics` of each binary (issue 11)
#
# One `fidelio dev-kafka` (the old binary's) and one redis-server (AOF everysec,
# unix socket); `fidelio gen` writes the events once; each run has its own group,
# namespace and output topics. Prints one line per run and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
A=$(realpath "$1") B=$(realpath "$2")
shift 2
EVENTS=200000 CUSTOMERS=20000 PARTITIONS=64 ROUNDS=3 SETS=() REPLAY=0
while [ $# -gt 0 ]; do
    case "$1" in
    --events) EVENTS=$2; shift ;;
    --customers) CUSTOMERS=$2; shift ;;
    --partitions) PARTITIONS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --set) SETS+=(--set "$2"); shift ;;
    --replay) REPLAY=1 ;;
    *) echo "bench/ab_rate.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
for b in "$A" "$B"; do [ -x "$b" ] || { echo "bench/ab_rate.sh: $b is not executable" >&2; exit 2; }; done
W=$(mktemp -d "${TMPDIR:-/tmp}/fidelio-ab.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "${AB_KEEP:-}" ] && echo "bench/ab_rate.sh: logs kept in $W" >&2 || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
targs=(--topic "touchpoints:$PARTITIONS")
for r in $(seq "$ROUNDS"); do
    for v in a b; do
        for t in rewards stage-changes dlq credits; do targs+=(--topic "$v$r-$t:$PARTITIONS"); done
    done
done
"$A" dev-kafka --partitions "$PARTITIONS" --bootstrap-file "$W/bootstrap" "${targs[@]}" >"$W/dev-kafka.log" 2>&1 &
PIDS+=($!)
redis-server --port 0 --unixsocket "$W/redis.sock" --dir "$W" --save "" --appendonly yes \
    --appendfsync everysec --logfile "$W/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
until [ -s "$W/bootstrap" ] && redis-cli -s "$W/redis.sock" ping >/dev/null 2>&1; do sleep 0.1; done
BOOT=$(cat "$W/bootstrap")
END=$(python3 -c 'import time; t = int(time.time()); print((t - t % 86400) * 1000)')
"$A" gen -q -b "$BOOT" --customers "$CUSTOMERS" --events "$EVENTS" --seed 1 --end "$END" -t touchpoints
TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ms() { python3 -c 'import sys, datetime; print(int(datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp() * 1000))' "$1"; }

# one_run BIN NAME: prints "rate fidelio_us redis_us"
one_run() {
    local bin=$1 n=$2 r0
    r0=$(cpu_ticks "$REDIS_PID")
    /usr/bin/time -f '%U %S' -o "$W/$n.time" "$bin" run -b "$BOOT" --set kafka.session.timeout.ms=6000 \
        --set kafka.heartbeat.interval.ms=500 --set "redis.url=unix://$W/redis.sock" --set http.port=0 \
        --set consumer.group="$n" --set redis.key_prefix="$n:" --set topics.rewards="$n-rewards" \
        --set topics.stage_changes="$n-stage-changes" --set topics.dlq="$n-dlq" --set topics.credits="$n-credits" \
        "${SETS[@]}" --until-idle 2>"$W/$n.log" || { echo "bench/ab_rate.sh: run $n failed: $(tail -3 "$W/$n.log")" >&2; exit 1; }
    local rticks t0 t1 applied
    rticks=$(( $(cpu_ticks "$REDIS_PID") - r0 ))
    t0=$(ms "$(grep -m1 ' assigned ' "$W/$n.log" | cut -d' ' -f1)")
    t1=$(ms "$(grep 'stopped:' "$W/$n.log" | tail -1 | cut -d' ' -f1)")
    applied=$(sed -n 's/.*stopped: \([0-9]*\) touchpoints.*/\1/p' "$W/$n.log" | tail -1)
    [ "$applied" = "$EVENTS" ] || { echo "bench/ab_rate.sh: run $n applied $applied of $EVENTS" >&2; exit 1; }
    python3 - "$EVENTS" "$t0" "$t1" "$rticks" "$TCK" "$W/$n.time" <<'PY'
import sys
ev, t0, t1, rt, tck = (int(x) for x in sys.argv[1:6])
u, s = (float(x) for x in open(sys.argv[6]).read().split()[-2:])
span = (t1 - t0 - 2000) / 1000  # --until-idle waits 2 s at the end
print(f"{ev / span:.0f} {(u + s) / ev * 1e6:.1f} {rt / tck / ev * 1e6:.1f}")
PY
}
# one_replay BIN NAME: prints the replay's events/s (its report line)
one_replay() {
    local bin=$1 n=$2
    "$bin" replay -b "$BOOT" --set "redis.url=unix://$W/redis.sock" --set http.port=0 "${SETS[@]}" \
        --namespace "$n" --outputs topics >"$W/$n.out" 2>"$W/$n.log" || { echo "bench/ab_rate.sh: replay $n failed: $(tail -3 "$W/$n.log")" >&2; exit 1; }
    sed -n 's/.*events read in [0-9.]* s (\([0-9]*\) events\/s).*/\1/p' "$W/$n.out"
}
printf '%-6s %-4s %12s %14s %14s %12s\n' round bin "run ev/s" "fidelio us/ev" "redis us/ev" "replay ev/s"
for r in $(seq "$ROUNDS"); do
    for v in a b; do
        bin=$A
        [ "$v" = b ] && bin=$B
        read -r rate fus rus < <(one_run "$bin" "$v$r")
        rrate=-
        [ "$REPLAY" = 1 ] && rrate=$(one_replay "$bin" "rp$v$r")
        printf '%-6s %-4s %12s %14s %14s %12s\n' "$r" "$v" "$rate" "$fus" "$rus" "$rrate" | tee -a "$W/results"
    done
done
python3 - "$W/results" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for v in "ab":
    rs = [r for r in rows if r[1] == v]
    med[v] = [statistics.median(float(r[i]) for r in rs) if rs[0][i] != "-" else None for i in (2, 3, 4, 5)]
    m = med[v]
    print(f"median {v}: {m[0]:,.0f} events/s, fidelio {m[1]:.1f} us/event, redis {m[2]:.1f} us/event"
          + (f", replay {m[3]:,.0f} events/s ({m[3] / m[0]:.2f} x run)" if m[3] else ""))
print(f"b / a: {med['b'][0] / med['a'][0]:.2f} x events/s")
PY
uptime
