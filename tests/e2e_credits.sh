#!/usr/bin/env bash
# Referral credits across processes (issue 7): `fidelio dev-kafka`,
# redis-server and `fidelio run` with the DEFAULT dedupe retention (30 days).
#  1. a backfill: the referrer's own events run 40+ days ahead of the
#     invitee's; the credit (invitee's event time) is applied, not refused;
#  2. a credit from an invitee whose events are months ahead of the
#     referrer's does not move the referrer's horizon: the referrer's own
#     later, in-order events are still applied.
# The final profiles equal `fidelio simulate` over the same events in the
# same order (credits applied when the pipeline delivers them).
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli python3

start_dev_kafka --partitions 3
start_redis

ev() { # id customer type time payload
    printf '{"event_id":"%s","customer_id":"%s","type":"%s","channel":"web","occurred_at":"%s","payload":%s}\n' "$@"
}
{
    # case 1: R1's own events end 2026-03-15, its trim horizon moves to mid-February;
    # I1 signs up referred by R1 and purchases in January
    ev r1-1 ref-1 SIGNUP 2026-01-01T10:00:00Z '{"referred_by":null}'
    ev r1-2 ref-1 PURCHASE 2026-03-15T10:00:00Z '{"order_id":"o-r1","amount_cents":1000,"currency":"EUR","store_id":null}'
    ev i1-1 inv-1 SIGNUP 2026-01-10T10:00:00Z '{"referred_by":"ref-1"}'
    ev i1-2 inv-1 PURCHASE 2026-01-20T10:00:00Z '{"order_id":"o-i1","amount_cents":2000,"currency":"EUR","store_id":null}'
    # case 2: R2 signed up in January; I2's events are in May
    ev r2-1 ref-2 SIGNUP 2026-01-01T10:00:00Z '{"referred_by":null}'
    ev i2-1 inv-2 SIGNUP 2026-05-01T10:00:00Z '{"referred_by":"ref-2"}'
    ev i2-2 inv-2 PURCHASE 2026-05-10T10:00:00Z '{"order_id":"o-i2","amount_cents":2000,"currency":"EUR","store_id":null}'
} >"$WORK/first.jsonl"
# R2's own next event, in order for R2, produced after the credit was applied and trimmed
ev r2-2 ref-2 PURCHASE 2026-02-01T10:00:00Z '{"order_id":"o-r2","amount_cents":3000,"currency":"EUR","store_id":null}' \
    >"$WORK/second.jsonl"
cat "$WORK/first.jsonl" "$WORK/second.jsonl" >"$WORK/all.jsonl"
"$FIDELIO" simulate "$WORK/all.jsonl" --profiles "$WORK/expected.profiles" >/dev/null 2>&1 || fail "simulate failed"

# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/first.jsonl" || fail "produce failed"
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) --until-idle >"$WORK/run1.log" 2>&1 || fail "run1: $(tail -3 "$WORK/run1.log")"
grep -q "stopped: 7 touchpoints, 2 credits, 0 duplicates, 0 to the DLQ" "$WORK/run1.log" \
    || fail "run1: $(grep -E 'stopped|DLQ' "$WORK/run1.log")"
# shellcheck disable=SC2046
"$FIDELIO" profile $(fid_opts) ref-1 | grep -q '"referrals_converted":1' || fail "ref-1 did not get its credit"
pass "a credit older than the referrer's trim horizon (a backfill) is applied, not refused"

# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/second.jsonl" || fail "produce failed"
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) --until-idle >"$WORK/run2.log" 2>&1 || fail "run2: $(tail -3 "$WORK/run2.log")"
grep -q "stopped: 1 touchpoints, 0 credits, 0 duplicates, 0 to the DLQ" "$WORK/run2.log" \
    || fail "run2: $(grep -E 'stopped|DLQ' "$WORK/run2.log")"
pass "a credit months ahead of the referrer does not make the referrer's own in-order events too old"

same_profiles "$WORK/expected.profiles" || fail "profiles differ from simulate's"
pass "the four profiles equal fidelio simulate's"
done_ok
