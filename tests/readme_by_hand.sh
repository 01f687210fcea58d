#!/usr/bin/env bash
# README.md's "By hand" block, extracted from README.md itself and run as a
# user would paste it (bash, from the source tree, ./build/fidelio being the
# binary under test), while TCP port 6379 is taken: it must need no fixed port
# or /tmp path, wait for what it starts instead of racing it, print what it
# promises, and leave no process and no file behind.
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli python3

python3 - "$SOURCE_DIR/README.md" >"$WORK/block.sh" <<'PY' || fail "no by-hand block in README.md"
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"By hand, with real processes:.*?```sh\n(.*?)```", text, re.S)
if not m:
    sys.exit(1)
print(m.group(1), end="")
PY
[ "$(grep -c fidelio "$WORK/block.sh")" -ge 7 ] || fail "the extracted block is too short: $(cat "$WORK/block.sh")"

# a source tree whose ./build/fidelio is the binary under test
mkdir -p "$WORK/tree/build"
ln -s "$FIDELIO" "$WORK/tree/build/fidelio"
ln -s "$SOURCE_DIR/seeds" "$WORK/tree/seeds"

# hold 6379 (if nobody does already) for as long as the block runs
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("0.0.0.0", 6379)); s.listen(1)
except OSError:
    pass  # already taken: just as good
print("holding", flush=True)
time.sleep(600)' >"$WORK/holder.out" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$WORK/holder.out" ] && break; sleep 0.1; done

# the block's temporary directory goes under $WORK/tmp, so leftovers can be
# seen; it runs in a process group of its own, so that if it fails half-way
# what it started is still stopped (redis-server daemonizes: shut it down by
# its socket)
mkdir -p "$WORK/tmp"
stop_block() {
    for sock in "$WORK"/tmp/*/redis.sock; do
        [ -S "$sock" ] && redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1 || true
    done
    [ -n "${BLOCK_PID:-}" ] && kill -TERM -- "-$BLOCK_PID" 2>/dev/null || true
    cleanup
}
trap stop_block EXIT
(cd "$WORK/tree" && TMPDIR="$WORK/tmp" exec setsid timeout "${BLOCK_TIMEOUT:-300}" bash -euo pipefail "$WORK/block.sh") \
    >"$WORK/out" 2>"$WORK/by-hand.log" &
BLOCK_PID=$!
rc=0
wait "$BLOCK_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "the README block failed (exit $rc): $(tail -5 "$WORK/by-hand.log")"
BLOCK_PID=
pass "the README's by-hand block runs start to end with 6379 taken"

python3 - "$WORK/out" <<'PY' || fail "the block's output is not what the README promises: $(head -20 "$WORK/out")"
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
objs = []
for l in lines:
    try:
        objs.append(json.loads(l))
    except ValueError:
        pass
profiles = [o for o in objs if o.get("customer_id") == "cust-0032" and "balance" in o]
assert profiles, "no profile of cust-0032"
# in the order the block prints them: the profile, `ledger -n 5` (cust-0033's
# last 5 entries), `consume -n 5` (the first 5 rewards read, of any customer:
# cust-0033's too when its partition is read first), then simulate's heads
at = objs.index(profiles[0])
after = objs[at + 1:at + 11]
assert len(after) == 10 and all("reward_id" in o for o in after), \
    f"after the profile, {len(after)} lines, not 5 ledger entries and 5 rewards"
ledger, consumed = after[:5], after[5:]
assert all(o["customer_id"] == "cust-0033" for o in ledger), \
    "the 5 lines after the profile are not all ledger entries of cust-0033"
assert any("==> " in l and "profiles.jsonl" in l for l in lines), "head of the simulated profiles missing"
print(len(lines), "lines checked")
PY
pass "it prints the profile, 5 ledger lines, 5 rewards and the simulated outputs and profiles"

[ -z "$(ls -A "$WORK/tmp")" ] || fail "the block left files behind: $(ls -A "$WORK/tmp")"
if pgrep -f "unixsocket $WORK/tmp" >/dev/null || pgrep -f "bootstrap-file $WORK/tmp" >/dev/null; then
    fail "the block left processes running: $(pgrep -af "$WORK/tmp")"
fi
pass "its last line stopped redis-server and dev-kafka and removed its directory"
done_ok
