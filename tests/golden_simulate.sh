#!/usr/bin/env bash
# `fidelio simulate seeds/demo.jsonl` must reproduce tests/golden/ byte for
# byte: outputs (ids, points, balances, stage changes) and final profiles.
# A change here must be deliberate. To accept one, regenerate and review the diff:
#   build/fidelio simulate seeds/demo.jsonl --profiles tests/golden/demo-profiles.jsonl \
#       > tests/golden/demo-outputs.jsonl && git diff tests/golden
source "$(dirname "$0")/lib.sh"

G="$SOURCE_DIR/tests/golden"
"$FIDELIO" simulate "$SOURCE_DIR/seeds/demo.jsonl" --profiles "$WORK/profiles.jsonl" >"$WORK/outputs.jsonl" 2>"$WORK/err" \
    || fail "simulate exited $?: $(cat "$WORK/err")"
diff -u "$G/demo-outputs.jsonl" "$WORK/outputs.jsonl" >"$WORK/diff" || { head -20 "$WORK/diff"; fail "outputs differ from the golden file"; }
pass "outputs equal tests/golden/demo-outputs.jsonl ($(wc -l <"$WORK/outputs.jsonl") lines)"
diff -u "$G/demo-profiles.jsonl" "$WORK/profiles.jsonl" >"$WORK/diff" || { head -20 "$WORK/diff"; fail "profiles differ from the golden file"; }
pass "profiles equal tests/golden/demo-profiles.jsonl ($(wc -l <"$WORK/profiles.jsonl") customers)"

# Determinism: the same input in a second run gives the same bytes; ids are unique.
"$FIDELIO" simulate "$SOURCE_DIR/seeds/demo.jsonl" 2>/dev/null | cmp -s - "$WORK/outputs.jsonl" || fail "a second run differs"
dups=$(grep -o '"\(reward\|change\)_id":"[^"]*"' "$WORK/outputs.jsonl" | sort | uniq -d | head -3)
[ -z "$dups" ] || fail "duplicate output ids: $dups"
pass "deterministic across runs, every output id unique"

# Duplicates in the input (an upstream double publish) change nothing.
cat "$SOURCE_DIR/seeds/demo.jsonl" "$SOURCE_DIR/seeds/demo.jsonl" >"$WORK/twice.jsonl"
"$FIDELIO" simulate "$WORK/twice.jsonl" --profiles "$WORK/profiles2.jsonl" >"$WORK/outputs2.jsonl" 2>"$WORK/err2"
cmp -s "$WORK/outputs2.jsonl" "$WORK/outputs.jsonl" || fail "the seeds twice gave other outputs"
cmp -s "$WORK/profiles2.jsonl" "$WORK/profiles.jsonl" || fail "the seeds twice gave other profiles"
grep -q "$(grep -c . "$SOURCE_DIR/seeds/demo.jsonl") duplicates ignored" "$WORK/err2" || fail "summary: $(cat "$WORK/err2")"
pass "every event given twice: the second copy is a no-op"

# A refund of an unknown order is reported as DLQ-worthy with its line number.
printf '%s\n' '{"event_id":"x","customer_id":"c","type":"REFUND","channel":"web","occurred_at":"2026-01-01T00:00:00Z","payload":{"order_id":"nope","amount_cents":100}}' \
    >"$WORK/bad.jsonl"
"$FIDELIO" simulate "$WORK/bad.jsonl" >/dev/null 2>"$WORK/err3" || fail "simulate exited $? on a refused event"
grep -q "bad.jsonl:1: rejected (unknown_order)" "$WORK/err3" || fail "no unknown_order report: $(cat "$WORK/err3")"
pass "refund of an unknown order reported as unknown_order"

# A broken rule program stops simulate with exit 2 and names file and line.
printf 'version: v\nrules:\n  - id: a\n    on: SIGNUP\n    award: 5\n    when: "nope > 1"\n' >"$WORK/rules.yaml"
set +e
"$FIDELIO" simulate -r "$WORK/rules.yaml" "$WORK/bad.jsonl" >/dev/null 2>"$WORK/err4"
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "bad program exited $rc, want 2"
grep -q "rules.yaml:6: rule 'a': when: unknown name 'nope'" "$WORK/err4" || fail "message: $(cat "$WORK/err4")"
set +e
"$FIDELIO" check -r "$WORK/rules.yaml" >/dev/null 2>"$WORK/err5"
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "rules.yaml:6: rule 'a'" "$WORK/err5" || fail "check -r accepted a broken program (exit $rc)"
"$FIDELIO" check >"$WORK/check.out" || fail "check of the built-in program failed"
grep -q "ladder tier .*bronze (x1.00) -> silver (x1.25) -> gold (x1.50)" "$WORK/check.out" || fail "check summary lacks the tiers"
grep -q "rule referral-referrer .*250 points to the referrer, once" "$WORK/check.out" || fail "check summary lacks rules"
pass "a broken rule program exits 2 naming file, line and rule; check summarises the program"
done_ok
