#!/usr/bin/env bash
# End-to-end across processes: `fidelio dev-kafka` as a broker process,
# `fidelio produce` of the demo seeds, read back by `fidelio consume` and by
# kcat, the independent client.
source "$(dirname "$0")/lib.sh"
require kcat python3

SEEDS="$SOURCE_DIR/seeds/demo.jsonl"
start_dev_kafka --partitions 6

"$FIDELIO" produce -b "$BOOTSTRAP" -t touchpoints "$SEEDS" 2>"$WORK/produce.err" || fail "produce: $(cat "$WORK/produce.err")"
expected=$(grep -c . "$SEEDS")
grep -q "produce: $expected sent, 0 rejected, 0 failed" "$WORK/produce.err" || fail "summary: $(cat "$WORK/produce.err")"
pass "produce sent $expected seed events"

"$FIDELIO" consume -b "$BOOTSTRAP" -t touchpoints -e >"$WORK/consumed.jsonl" || fail "consume exited $?"
normalise "$SEEDS" >"$WORK/a"
normalise "$WORK/consumed.jsonl" >"$WORK/b"
diff -q "$WORK/a" "$WORK/b" >/dev/null || { diff "$WORK/a" "$WORK/b" | head; fail "consumed JSON differs from the seeds"; }
pass "fidelio consume returns the seeds, identical after normalisation ($(wc -l <"$WORK/b") events)"

kcat -b "$BOOTSTRAP" -C -t touchpoints -e -q -f '%k %p\n' >"$WORK/kcat.txt"
[ "$(wc -l <"$WORK/kcat.txt")" -eq "$expected" ] || fail "kcat read $(wc -l <"$WORK/kcat.txt") messages, want $expected"
cut -d' ' -f1 "$WORK/kcat.txt" | sort -u >"$WORK/kcat-keys"
python3 -c "import json,sys; print('\n'.join(sorted({json.loads(l)['customer_id'] for l in open(sys.argv[1]) if l.strip()})))" \
    "$SEEDS" >"$WORK/seed-keys"
diff -q "$WORK/kcat-keys" "$WORK/seed-keys" >/dev/null || fail "kcat keys differ from the seeds' customer ids"
# one customer, one partition: per-customer order rests on it
dup=$(sort -u "$WORK/kcat.txt" | cut -d' ' -f1 | uniq -d | head -1)
[ -z "$dup" ] || fail "customer $dup landed on more than one partition"
[ "$(cut -d' ' -f2 "$WORK/kcat.txt" | sort -u | wc -l)" -gt 1 ] || fail "all messages in one partition"
pass "kcat reads $expected messages keyed by the $(wc -l <"$WORK/seed-keys") customer ids, one partition per customer"

# Invalid lines: reported with line numbers, valid ones still sent, exit 1.
head -3 "$SEEDS" >"$WORK/mixed.jsonl"
echo '{"event_id":"x1","customer_id":"bad{id}","type":"SIGNUP","channel":"web","occurred_at":1767225600000}' >>"$WORK/mixed.jsonl"
echo 'not json' >>"$WORK/mixed.jsonl"
echo '{"event_id":"x2","customer_id":"c","type":"PURCHASE","channel":"web","occurred_at":1767225600000,"payload":{"order_id":"o","amount_cents":-5,"currency":"EUR"}}' >>"$WORK/mixed.jsonl"
set +e
"$FIDELIO" produce -b "$BOOTSTRAP" -t touchpoints "$WORK/mixed.jsonl" 2>"$WORK/mixed.err"
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "produce with invalid lines exited $rc, want 1"
grep -q "mixed.jsonl:4: rejected (customer_id_bad_chars)" "$WORK/mixed.err" || fail "line 4 not reported: $(cat "$WORK/mixed.err")"
grep -q "mixed.jsonl:5: rejected (malformed)" "$WORK/mixed.err" || fail "line 5 not reported"
grep -q "mixed.jsonl:6: rejected (negative_amount)" "$WORK/mixed.err" || fail "line 6 not reported"
grep -q "produce: 3 sent, 3 rejected" "$WORK/mixed.err" || fail "mixed summary: $(cat "$WORK/mixed.err")"
set +e
"$FIDELIO" produce -b "$BOOTSTRAP" -t touchpoints --strict "$WORK/mixed.jsonl" 2>"$WORK/strict.err"
rc=$?
set -e
[ "$rc" -eq 1 ] && grep -q "produce: 3 sent, 1 rejected" "$WORK/strict.err" || fail "--strict did not stop at line 4: $(cat "$WORK/strict.err")"
pass "invalid lines are reported by line number and skipped; --strict stops"

n=$("$FIDELIO" consume -b "$BOOTSTRAP" -t touchpoints -n 5 | wc -l)
[ "$n" -eq 5 ] || fail "consume -n 5 printed $n lines"
n=$("$FIDELIO" consume -b "$BOOTSTRAP" -t touchpoints -o end -e | wc -l)
[ "$n" -eq 0 ] || fail "consume -o end -e printed $n lines"
pass "consume -n and -o end"

# Usage and configuration errors exit 2.
set +e
"$FIDELIO" produce -t touchpoints --set nope=1 </dev/null 2>/dev/null; [ $? -eq 2 ] || fail "bad --set did not exit 2"
"$FIDELIO" consume -b "$BOOTSTRAP" -t some-topic 2>/dev/null; [ $? -eq 2 ] || fail "unknown topic without --schema did not exit 2"
set -e
pass "usage errors exit 2"

kill -TERM "$DEVKAFKA_PID"
wait "$DEVKAFKA_PID" || fail "dev-kafka exited $? on SIGTERM"
PIDS=()
pass "dev-kafka stops on SIGTERM with exit 0"
done_ok
