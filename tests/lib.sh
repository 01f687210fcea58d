# lib.sh - shared helpers of the end-to-end tests (sourced).
# Exit 77 (skip) only when a required binary is missing; anything else that
# goes wrong is a failure.
set -euo pipefail

FIDELIO=${FIDELIO:?set by meson: path of the fidelio binary}
SOURCE_DIR=${SOURCE_DIR:?set by meson: source tree}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fidelio-e2e.XXXXXX")
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
PASSED=0
pass() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
# done_ok: the closing line every runner understands.
done_ok() { echo "$PASSED passed, 0 failed"; }

require() {
    for b in "$@"; do
        command -v "$b" >/dev/null 2>&1 || { echo "SKIP: $b not installed"; exit 77; }
    done
}

# start_dev_kafka [ARGS...]: start `fidelio dev-kafka` and set BOOTSTRAP and DEVKAFKA_PID.
start_dev_kafka() {
    "$FIDELIO" dev-kafka --bootstrap-file "$WORK/bootstrap" "$@" >"$WORK/dev-kafka.out" 2>"$WORK/dev-kafka.err" &
    DEVKAFKA_PID=$!
    PIDS+=("$DEVKAFKA_PID")
    for _ in $(seq 100); do
        [ -s "$WORK/bootstrap" ] && break
        kill -0 "$DEVKAFKA_PID" 2>/dev/null || fail "dev-kafka exited: $(cat "$WORK/dev-kafka.err")"
        sleep 0.1
    done
    [ -s "$WORK/bootstrap" ] || fail "dev-kafka wrote no bootstrap file"
    BOOTSTRAP=$(cat "$WORK/bootstrap")
}

# normalise FILE: JSON lines -> sorted canonical lines (epoch-ms times, attributes present).
normalise() {
    python3 - "$1" <<'PY'
import json, sys
from datetime import datetime
out = []
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    e = json.loads(line)
    t = e.get("occurred_at")
    if isinstance(t, str):
        e["occurred_at"] = int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000)
    e.setdefault("attributes", {})
    out.append(json.dumps(e, sort_keys=True))
for l in sorted(out):
    print(l)
PY
}
