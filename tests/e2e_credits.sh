#!/usr/bin/env bash
# Referral credits across processes (issue 7): `fidelio dev-kafka`,
# redis-server and `fidelio run` with the DEFAULT dedupe retention (30 days).
#  1. a backfill: the referrer's own events run 40+ days ahead of the
#     invitee's; the credit (invitee's event time) is applied, not refused;
#  2. a credit from an invitee whose events are months ahead of the
#     referrer's does not move the referrer's horizon: the referrer's own
#     later, in-order events are still applied.
#  3. (case 12) a what-if by hand: another redis.key_prefix and group, its
#     own output topics but the same credits topic, a program with a referrer
#     rule production does not have: production refuses the what-if's credits
#     (credit_foreign_namespace) and its profiles do not change;
#  4. (case 13) with credits.hmac_key set, credits are signed; an unsigned
#     credit (credit_unsigned) and a real credit altered to grant more points
#     (credit_bad_signature) go to the DLQ.
# The final profiles equal `fidelio simulate` over the same events in the
# same order (credits applied when the pipeline delivers them).
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli python3

start_dev_kafka --partitions 3
REDIS_PREFIXES="fidelio: whatif:" # the what-if below runs in its own namespace
start_redis
# the namespace's key, from the environment as in production
export FIDELIO_CREDITS_HMAC_KEY=0123456789abcdef0123456789abcdef

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
"$FIDELIO" profile $(fid_ro_opts) ref-1 | grep -q '"referrals_converted":1' || fail "ref-1 did not get its credit"
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

# 3. A what-if by hand, with a program whose referrer rule production does not have.
sed 's/id: referral-referrer/id: whatif-referrer/' "$SOURCE_DIR/config/rules.yaml" >"$WORK/whatif-rules.yaml"
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) -r "$WORK/whatif-rules.yaml" --set redis.key_prefix=whatif: --set consumer.group=whatif \
    --set topics.rewards=whatif-rewards --set topics.stage_changes=whatif-stage-changes --set topics.dlq=whatif-dlq \
    --until-idle >"$WORK/whatif.log" 2>&1 || fail "what-if run: $(tail -3 "$WORK/whatif.log")"
grep -q "stopped: 8 touchpoints, 2 credits" "$WORK/whatif.log" || fail "what-if: $(grep stopped "$WORK/whatif.log")"
"$FIDELIO" consume -b "$BOOTSTRAP" -t fidelio-credits -e 2>/dev/null >"$WORK/credits.jsonl"
[ "$(grep -c '"namespace":"whatif:"' "$WORK/credits.jsonl")" -eq 2 ] || fail "what-if credits: $(cat "$WORK/credits.jsonl")"
dlq_before=$(count touchpoints-dlq)
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) --until-idle >"$WORK/run3.log" 2>&1 || fail "run3: $(tail -3 "$WORK/run3.log")"
grep -q "stopped: 0 touchpoints, 0 credits, 0 duplicates, 2 to the DLQ" "$WORK/run3.log" \
    || fail "run3: $(grep -E 'stopped|DLQ' "$WORK/run3.log")"
"$FIDELIO" consume -b "$BOOTSTRAP" -t touchpoints-dlq -o "$dlq_before" -e 2>/dev/null >"$WORK/dlq3.jsonl"
[ "$(grep -c '"error":"credit_foreign_namespace"' "$WORK/dlq3.jsonl")" -eq 2 ] || fail "DLQ: $(cat "$WORK/dlq3.jsonl")"
grep -q "produced for namespace 'whatif:'; this instance is namespace 'fidelio:'" "$WORK/dlq3.jsonl" \
    || fail "DLQ detail: $(head -1 "$WORK/dlq3.jsonl")"
same_profiles "$WORK/expected.profiles" || fail "the what-if's credits changed production profiles"
pass "production refuses the credits of a what-if namespace (credit_foreign_namespace); its profiles are unchanged"

# 4. Forged credits: unsigned, and a real signed credit altered to grant more points.
grep -q '"signature":"[0-9a-f]\{64\}"' "$WORK/credits.jsonl" || fail "credits are not signed: $(head -1 "$WORK/credits.jsonl")"
python3 - "$WORK/credits.jsonl" >"$WORK/forged.jsonl" <<'PY'
import json, sys
real = next(json.loads(l) for l in open(sys.argv[1]) if '"namespace":"fidelio:"' in l)
unsigned = dict(real, credit_id="forged-1", points=1000000, reason="free points", signature="")
altered = dict(real, credit_id="forged-2", points=1000000)
for c in (unsigned, altered):
    print(json.dumps(c))
PY
dlq_before=$(count touchpoints-dlq)
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t fidelio-credits "$WORK/forged.jsonl" || fail "produce forged credits"
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) --until-idle >"$WORK/run4.log" 2>&1 || fail "run4: $(tail -3 "$WORK/run4.log")"
grep -q "stopped: 0 touchpoints, 0 credits, 0 duplicates, 2 to the DLQ" "$WORK/run4.log" \
    || fail "run4: $(grep -E 'stopped|DLQ' "$WORK/run4.log")"
"$FIDELIO" consume -b "$BOOTSTRAP" -t touchpoints-dlq -o "$dlq_before" -e 2>/dev/null >"$WORK/dlq4.jsonl"
grep -q '"error":"credit_unsigned"' "$WORK/dlq4.jsonl" || fail "DLQ: $(cat "$WORK/dlq4.jsonl")"
grep -q '"error":"credit_bad_signature"' "$WORK/dlq4.jsonl" || fail "DLQ: $(cat "$WORK/dlq4.jsonl")"
same_profiles "$WORK/expected.profiles" || fail "a forged credit changed a profile"
pass "an unsigned credit and an altered signed credit go to the DLQ (credit_unsigned, credit_bad_signature)"

# The key is a secret: `check` masks it.
"$FIDELIO" check >"$WORK/check.out" 2>&1 || fail "check: $(tail -3 "$WORK/check.out")"
grep -q 'credits.hmac_key: "\*\*\*"' "$WORK/check.out" || fail "check: $(grep hmac "$WORK/check.out")"
! grep -rq "$FIDELIO_CREDITS_HMAC_KEY" "$WORK"/*.log "$WORK/check.out" || fail "the HMAC key appears in a log"
pass "fidelio check masks credits.hmac_key; no log holds it"
done_ok
