#!/usr/bin/env bash
# The shared cleanup of the end-to-end scripts (tests/lib.sh) must never hang:
# a suite that fails while one of its processes is frozen (SIGSTOP, as the
# zombie tests do) must still stop it and exit, and a process that ignores
# SIGTERM is killed after a bounded time.
source "$(dirname "$0")/lib.sh"

# child SCRIPT: a bash that sources lib.sh, starts a process and exits 1 from
# inside (like fail), so its EXIT trap runs cleanup.
child() {
    timeout 90 env FIDELIO="$FIDELIO" SOURCE_DIR="$SOURCE_DIR" TMPDIR="$WORK" bash -c "
        source '$SOURCE_DIR/tests/lib.sh'
        $1
        echo \$P >'$WORK/pid'
        exit 1"
}

start=$SECONDS
set +e
child 'sleep 1000 & P=$!; PIDS+=("$P"); kill -STOP "$P"'
rc=$?
set -e
[ "$rc" -ne 124 ] || fail "cleanup hung on a frozen (SIGSTOPped) process"
p=$(cat "$WORK/pid")
kill -0 "$p" 2>/dev/null && fail "the frozen process $p outlived cleanup"
pass "a failing suite with a frozen process exits ($((SECONDS - start)) s) and stops it"

start=$SECONDS
set +e
child 'bash -c "trap \"\" TERM; exec sleep 1000" & P=$!; PIDS+=("$P"); sleep 1'
rc=$?
set -e
[ "$rc" -ne 124 ] || fail "cleanup hung on a process that ignores SIGTERM"
p=$(cat "$WORK/pid")
kill -0 "$p" 2>/dev/null && fail "the TERM-ignoring process $p outlived cleanup"
pass "a process that ignores SIGTERM is killed by cleanup ($((SECONDS - start)) s)"
done_ok
