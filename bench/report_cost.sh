#!/usr/bin/env bash
# bench/report_cost.sh - what the report's aggregates cost (issue 12), measured in
# one run. Not a test: nothing here asserts a time.
#
#   bench/report_cost.sh [--events M] [--customers N] [--days D] [--keep]
#
# `fidelio gen` writes M events (default 200,000) of N customers (default 50,000)
# over D days (default 365) to a `fidelio dev-kafka` topic; `fidelio run
# --until-idle` applies them into an empty namespace on a private redis-server
# (AOF everysec). Then it prints:
#   - the write side: Redis's own accounting (INFO commandstats) of the HINCRBY
#     calls the apply script makes for the aggregates, against all EVALSHA time;
#   - the read side: size of <prefix>aggregates (fields, bytes), the time of
#     `fidelio report --json` (whole process) and of its one HGETALL, against a
#     scan of every profile (`fidelio profile --all`, what a report without
#     aggregates would have to read), and that scan extrapolated to 1,000,000
#     customers (it is linear in customers; the report is not).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=200000 CUSTOMERS=50000 DAYS=365 KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
    --events) EVENTS=$2; shift 2 ;;
    --customers) CUSTOMERS=$2; shift 2 ;;
    --days) DAYS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "usage: bench/report_cost.sh [--events M] [--customers N] [--days D] [--keep]" >&2; exit 2 ;;
    esac
done
F=${FIDELIO:-build/fidelio}
[ -x "$F" ] || { echo "build first: meson setup build && meson compile -C build" >&2; exit 2; }
W=$(mktemp -d "${TMPDIR:-/tmp}/fidelio-report-cost.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

"$F" dev-kafka --partitions 16 --bootstrap-file "$W/bootstrap" >"$W/dev-kafka.log" 2>&1 &
PIDS+=($!)
redis-server --port 0 --unixsocket "$W/redis.sock" --dir "$W" --save "" --appendonly yes --appendfsync everysec \
    --logfile "$W/redis.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$W/bootstrap" ] && redis-cli -s "$W/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.1; done
OPTS=(-b "$(cat "$W/bootstrap")" --set "redis.url=unix://$W/redis.sock" --set http.port=0)
R() { redis-cli -s "$W/redis.sock" "$@"; }

"$F" gen -q "${OPTS[@]}" -t touchpoints --events "$EVENTS" --customers "$CUSTOMERS" --days "$DAYS"
t0=$(date +%s.%N)
"$F" run "${OPTS[@]}" --until-idle --set pipeline.batch_size=5000 >"$W/run.log" 2>&1
t1=$(date +%s.%N)
customers=$("$F" profile "${OPTS[@]}" --all 2>/dev/null | wc -l)

stat() { R info commandstats | tr -d '\r' | awk -F'[:=,]' -v c="cmdstat_$1" '$1 == c {print $3, $5}'; }
read -r ev_calls ev_usec < <(stat evalsha) || true
read -r hi_calls hi_usec < <(stat hincrby) || true
fields=$(R hlen fidelio:aggregates)
bytes=$(R memory usage fidelio:aggregates)

ms() { python3 -c 'import sys; print(f"{(float(sys.argv[2]) - float(sys.argv[1])) * 1000:.1f}")' "$@"; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
rep=() hget=()
for _ in 1 2 3 4 5; do
    a=$(date +%s.%N); "$F" report --json "${OPTS[@]}" >"$W/report.json"; b=$(date +%s.%N); rep+=("$(ms "$a" "$b")")
    a=$(date +%s.%N); R hgetall fidelio:aggregates >/dev/null; b=$(date +%s.%N); hget+=("$(ms "$a" "$b")")
done
a=$(date +%s.%N); "$F" profile "${OPTS[@]}" --all >/dev/null 2>&1; b=$(date +%s.%N)
scan=$(ms "$a" "$b")

python3 - "$EVENTS" "$customers" "$(ms "$t0" "$t1")" "$ev_calls" "$ev_usec" "${hi_calls:-0}" "${hi_usec:-0}" \
    "$fields" "$bytes" "$(printf '%s\n' "${rep[@]}" | median)" "$(printf '%s\n' "${hget[@]}" | median)" "$scan" <<'PY'
import sys
ev, cust, run_ms, ev_calls, ev_usec, hi_calls, hi_usec, fields, nbytes, rep, hget, scan = sys.argv[1:]
ev, cust = int(ev), int(cust)
ev_calls, ev_usec, hi_calls, hi_usec = int(ev_calls), int(ev_usec), int(hi_calls), int(hi_usec)
print(f"fidelio run --until-idle: {ev:,} events, {cust:,} customers, {float(run_ms)/1000:.1f} s")
print("write side (Redis INFO commandstats):")
print(f"  EVALSHA (apply + trim): {ev_calls:,} calls, {ev_usec/1e6:.2f} s in Redis, {ev_usec/max(ev_calls,1):.1f} us/call")
print(f"  HINCRBY (aggregates, inside the apply): {hi_calls:,} calls ({hi_calls/max(ev,1):.1f} per event), "
      f"{hi_usec/1e6:.2f} s = {100*hi_usec/max(ev_usec,1):.1f}% of the EVALSHA time "
      f"(plus Lua's per-call overhead, not counted by Redis)")
print("read side:")
print(f"  <prefix>aggregates: {int(fields):,} fields, {int(nbytes):,} bytes")
print(f"  fidelio report --json (whole process, median of 5): {float(rep):.1f} ms; its HGETALL via redis-cli: {float(hget):.1f} ms")
print(f"  a scan of every profile (fidelio profile --all): {float(scan):.0f} ms for {cust:,} customers "
      f"= {float(scan)/max(cust,1)*1000:.1f} us/customer -> ~{float(scan)/max(cust,1)*1e6/1000:.0f} s at 1,000,000")
PY
