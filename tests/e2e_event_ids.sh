#!/usr/bin/env bash
# A reused event_id (issue 7 case 4) across processes: `fidelio dev-kafka`,
# redis-server, `fidelio run`. The same event published twice is a redelivery
# (its recorded outputs re-emitted, no effect); the same event_id with another
# content (a 900 EUR order instead of 100 EUR) is a conflict: it goes to the
# DLQ as event_id_conflict, the first event's outputs are not re-emitted, the
# balance keeps the first purchase only. Then a Redis that may evict keys
# (maxmemory-policy allkeys-lru) is refused at start-up (case 14).
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli python3

start_dev_kafka --partitions 3
start_redis

purchase() { # event_id amount_cents attributes
    printf '{"event_id":"%s","customer_id":"cust-x","type":"PURCHASE","channel":"web","occurred_at":"2026-03-01T10:00:00Z","payload":{"order_id":"o-1","amount_cents":%s,"currency":"EUR","store_id":null},"attributes":%s}\n' "$@"
}
{
    printf '{"event_id":"s-1","customer_id":"cust-x","type":"SIGNUP","channel":"web","occurred_at":"2026-03-01T09:00:00Z","payload":{"referred_by":null}}\n'
    purchase p-1 10000 '{"a":"1","b":"2"}'
} >"$WORK/first.jsonl"
"$FIDELIO" simulate "$WORK/first.jsonl" --profiles "$WORK/expected.profiles" >/dev/null 2>&1 || fail "simulate failed"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/first.jsonl" || fail "produce failed"
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) --until-idle >"$WORK/run1.log" 2>&1 || fail "run1: $(tail -3 "$WORK/run1.log")"
grep -q "stopped: 2 touchpoints, 0 credits, 0 duplicates, 0 to the DLQ" "$WORK/run1.log" \
    || fail "run1: $(grep stopped "$WORK/run1.log")"
rewards1=$(count rewards)

# the same purchase again (attributes in another order: the same content), then a reuse of its id
{
    purchase p-1 10000 '{"b":"2","a":"1"}'
    purchase p-1 90000 '{"a":"1","b":"2"}'
} >"$WORK/second.jsonl"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/second.jsonl" || fail "produce failed"
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) --until-idle >"$WORK/run2.log" 2>&1 || fail "run2: $(tail -3 "$WORK/run2.log")"
grep -q "stopped: 0 touchpoints, 0 credits, 1 duplicates, 1 to the DLQ" "$WORK/run2.log" \
    || fail "run2: $(grep stopped "$WORK/run2.log")"
"$FIDELIO" consume -b "$BOOTSTRAP" -t touchpoints-dlq -e >"$WORK/dlq.jsonl" 2>/dev/null || fail "consume dlq"
[ "$(wc -l <"$WORK/dlq.jsonl")" -eq 1 ] || fail "DLQ: $(cat "$WORK/dlq.jsonl")"
grep -q '"error":"event_id_conflict"' "$WORK/dlq.jsonl" || fail "DLQ error: $(cat "$WORK/dlq.jsonl")"
grep -q 'event_id p-1 was already applied to cust-x with other content' "$WORK/dlq.jsonl" \
    || fail "DLQ detail: $(cat "$WORK/dlq.jsonl")"
# the redelivery re-emitted the purchase's rewards once; the conflict re-emitted nothing
rewards2=$(count rewards)
per_event=$(grep -c '"source_event_id":"p-1"' <("$FIDELIO" consume -b "$BOOTSTRAP" -t rewards -o beginning -n "$rewards1" 2>/dev/null))
[ "$rewards2" -eq $((rewards1 + per_event)) ] || fail "rewards: $rewards1 -> $rewards2 (the purchase has $per_event)"
same_profiles "$WORK/expected.profiles" || fail "the conflicting event changed the profile"
pass "the same event_id with other content goes to the DLQ as event_id_conflict; a true redelivery is a duplicate"

# Issue 7 case 14: a Redis that may evict fidelio's keys is refused at start-up.
redis-cli -s "$REDIS_SOCK" CONFIG SET maxmemory-policy allkeys-lru >/dev/null
set +e
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) --until-idle >"$WORK/run3.log" 2>&1
rc=$?
set -e
redis-cli -s "$REDIS_SOCK" CONFIG SET maxmemory-policy noeviction >/dev/null
[ "$rc" -eq 1 ] || fail "run on an allkeys-lru Redis exited $rc, want 1"
grep -q "maxmemory-policy is allkeys-lru.*set maxmemory-policy noeviction" "$WORK/run3.log" \
    || fail "no clear message: $(tail -2 "$WORK/run3.log")"
pass "fidelio run refuses a Redis whose maxmemory-policy can evict its keys, naming the setting to use"
done_ok
