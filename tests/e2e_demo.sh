#!/usr/bin/env bash
# `fidelio demo`, the end of the README's first command: exits 0 with the
# summary and the simulate check, and leaves no redis-server or temp dir behind.
source "$(dirname "$0")/lib.sh"
require redis-server
export TMPDIR="$WORK"
(cd "$SOURCE_DIR" && "$FIDELIO" demo) >"$WORK/demo.out" 2>"$WORK/demo.err" || fail "demo exited $?: $(tail -5 "$WORK/demo.err")"
grep -q "^produced 317 touchpoint events" "$WORK/demo.out" || fail "no produce line"
grep -q "applied 317 touchpoints and 3 referral credits (0 to the DLQ)" "$WORK/demo.out" || fail "pipeline line"
grep -qE "^cust-0032 +7100 +7100  gold +loyalty +activated +buyer" "$WORK/demo.out" || fail "customer table"
grep -qE "^  referral-referrer +3 +750" "$WORK/demo.out" || fail "rewards by rule"
grep -q "check: every profile in Redis equals \`fidelio simulate\` over the same events: OK" "$WORK/demo.out" \
    || fail "check line"
pass "fidelio demo prints the summary and the simulate check, exit 0"
ls -d "$WORK"/fidelio-demo-* >/dev/null 2>&1 && fail "the demo left its temp dir behind"
pgrep -f "redis-server.*$WORK" >/dev/null && fail "the demo left redis-server running"
pass "nothing left behind"
done_ok
