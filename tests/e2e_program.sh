#!/usr/bin/env bash
# Rule programs and the pipeline (issue 7 cases 5, 9, 10, 11), with real
# processes: `fidelio dev-kafka`, redis-server, `fidelio run`, `check`.
#  5  an event_id is unique per customer: the same id under two customers is
#     two events, in run as in simulate
#  9  a credit to a customer with no own event is parked (not spendable); in a
#     backfill the referrer's own events, processed later, release it
# 10  a program that orphans a stored stage (gold renamed oro) is refused by
#     `check --namespace` (read-only) and by `run` at start-up, naming the
#     stage; declared with renamed_from it runs and gold profiles read as oro
# 11  the program digest is in every output; the same version with another
#     digest is warned about by run and check
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli python3

start_dev_kafka --partitions 4
start_redis
RC=(redis-cli -s "$REDIS_SOCK")
RUN=(--set pipeline.batch_size=1000 --set pipeline.batch_linger_ms=500)
ev() { # id customer type time [payload-json]
    printf '{"event_id":"%s","customer_id":"%s","type":"%s","channel":"web","occurred_at":"%s"%s}\n' \
        "$1" "$2" "$3" "$4" "${5:+,\"payload\":$5}"
}
run_idle() { # name [args...]: run --until-idle, exit status in RUN_RC
    local name=$1
    shift
    set +e
    # shellcheck disable=SC2046
    "$FIDELIO" run $(fid_opts) "${RUN[@]}" --until-idle "$@" >"$WORK/$name.log" 2>&1
    RUN_RC=$?
    set -e
}
profile_field() { # customer field
    # shellcheck disable=SC2046
    "$FIDELIO" profile $(fid_ro_opts) "$1" 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"
}

# ---- first stream: shared event ids, a gold customer, referrals to customers with no events
{
    ev shared-1 c-a SIGNUP 2026-10-01T10:00:00Z
    ev shared-1 c-b SIGNUP 2026-10-01T11:00:00Z
    ev g-1 g SIGNUP 2026-10-01T10:00:00Z
    ev g-2 g PURCHASE 2026-10-02T10:00:00Z '{"order_id":"g-o1","amount_cents":500000,"currency":"EUR"}'
    ev i1-1 i1 SIGNUP 2026-10-05T10:00:00Z '{"referred_by":"rr"}'
    ev i1-2 i1 PURCHASE 2026-10-06T10:00:00Z '{"order_id":"i1-o1","amount_cents":1000,"currency":"EUR"}'
    ev i2-1 i2 SIGNUP 2026-10-05T10:00:00Z '{"referred_by":"nobody"}'
    ev i2-2 i2 PURCHASE 2026-10-06T10:00:00Z '{"order_id":"i2-o1","amount_cents":1000,"currency":"EUR"}'
} >"$WORK/a.jsonl"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/a.jsonl" || fail "produce a"
run_idle run1
[ "$RUN_RC" -eq 0 ] || fail "run1 exited $RUN_RC: $(tail -3 "$WORK/run1.log")"
"$FIDELIO" simulate "$WORK/a.jsonl" --profiles "$WORK/expected.a" >/dev/null 2>&1 || fail "simulate a"
[ "$(profile_field c-a balance)" = 100 ] && [ "$(profile_field c-b balance)" = 100 ] \
    || fail "the same event_id under two customers: c-a $(profile_field c-a balance), c-b $(profile_field c-b balance)"
same_profiles "$WORK/expected.a" || fail "profiles differ from simulate's"
pass "case 5: shared-1 under c-a and c-b is two events in run and in simulate (profiles equal)"

for c in rr nobody; do
    [ "$(profile_field $c balance)" = 0 ] && [ "$(profile_field $c parked_points)" = 250 ] \
        || fail "$c: balance $(profile_field $c balance), parked $(profile_field $c parked_points)"
done
pass "case 9: credits to customers with no own event are parked: balance 0, parked_points 250"

# the backfill delivers rr's own (older) events after its credit
{
    ev rr-1 rr SIGNUP 2026-09-01T10:00:00Z
    ev rr-2 rr APP_USE 2026-09-02T10:00:00Z '{"session_seconds":30}'
} >"$WORK/b.jsonl"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/b.jsonl" || fail "produce b"
run_idle run2
[ "$RUN_RC" -eq 0 ] || fail "run2 exited $RUN_RC"
[ "$(profile_field rr balance)" = 360 ] && [ "$(profile_field rr parked_points)" = 0 ] \
    || fail "rr: balance $(profile_field rr balance), parked $(profile_field rr parked_points)"
[ "$(profile_field nobody balance)" = 0 ] || fail "nobody's credit became spendable"
cat "$WORK/a.jsonl" "$WORK/b.jsonl" >"$WORK/ab.jsonl"
"$FIDELIO" simulate "$WORK/ab.jsonl" --profiles "$WORK/expected.ab" >"$WORK/expected.outputs" 2>/dev/null || fail "simulate ab"
same_profiles "$WORK/expected.ab" || fail "profiles differ from simulate's after the backfill"
"$FIDELIO" consume -b "$BOOTSTRAP" -t rewards -e 2>/dev/null >"$WORK/rewards"
grep '"customer_id":"rr"' "$WORK/rewards" | grep -q '"rule_id":"referral-referrer","points":250,"balance_after":250' \
    || fail "no released referral reward for rr: $(grep '"customer_id":"rr"' "$WORK/rewards")"
pass "case 9: rr's first own event released the parked 250 (reward emitted, balance 360); nobody stays at 0"

# ---- case 10: the registry, and a renamed stage
[ "$(profile_field g tier)" = gold ] || fail "g is $(profile_field g tier), want gold"
"${RC[@]}" SISMEMBER fidelio:stages tier:gold | grep -q 1 || fail "registry lacks tier:gold"
"${RC[@]}" HGET fidelio:program version | grep -q 2026.11-default || fail "registry lacks the program version"
pass "case 10: run recorded its program and stages in the namespace's registry"
# A namespace from before the registry: its profiles are read for their stages.
"${RC[@]}" DEL fidelio:program fidelio:stages >/dev/null
reg_before=$("${RC[@]}" SMEMBERS fidelio:stages | sort; "${RC[@]}" HGETALL fidelio:program)
sed -e 's/name: gold,/name: oro,/' -e 's/^version: .*/version: "oro-1"/' "$SOURCE_DIR/config/rules.yaml" >"$WORK/oro.yaml"
sed -e 's/name: gold,/name: oro, renamed_from: gold,/' -e 's/^version: .*/version: "oro-2"/' \
    "$SOURCE_DIR/config/rules.yaml" >"$WORK/oro2.yaml"
set +e
# shellcheck disable=SC2046
"$FIDELIO" check $(fid_ro_opts) -r "$WORK/oro.yaml" --namespace >"$WORK/check1.out" 2>"$WORK/check1.err"
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "would orphan 1 stage(s) stored in this namespace: tier:gold" "$WORK/check1.err" \
    || fail "check --namespace of oro.yaml: exit $rc: $(cat "$WORK/check1.err")"
grep -q "no program registry yet: its 7 profile(s) were read for their stages" "$WORK/check1.err" \
    || fail "no note of the scan: $(cat "$WORK/check1.err")"
reg_after=$("${RC[@]}" SMEMBERS fidelio:stages | sort; "${RC[@]}" HGETALL fidelio:program)
[ "$reg_before" = "$reg_after" ] || fail "check --namespace wrote the registry"
pass "case 10: check --namespace refuses the renamed program (exit 2, names tier:gold, found in the profiles of a namespace without registry) and writes nothing"

ev g-3 g PURCHASE 2026-10-10T10:00:00Z '{"order_id":"g-o2","amount_cents":10000,"currency":"EUR"}' >"$WORK/c.jsonl"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/c.jsonl" || fail "produce c"
run_idle run3 -r "$WORK/oro.yaml"
[ "$RUN_RC" -eq 2 ] && grep -q "tier:gold" "$WORK/run3.log" || fail "run with oro.yaml: exit $RUN_RC: $(tail -3 "$WORK/run3.log")"
[ "$(profile_field g tier)" = gold ] || fail "the refused run touched g"
pass "case 10: run refuses the renamed program at start-up (exit 2, names tier:gold); g untouched"

# shellcheck disable=SC2046
"$FIDELIO" check $(fid_ro_opts) -r "$WORK/oro2.yaml" --namespace >"$WORK/check2.out" 2>&1 || fail "check oro2: $(cat "$WORK/check2.out")"
stages_before=$(count stage-changes)
run_idle run4 -r "$WORK/oro2.yaml"
[ "$RUN_RC" -eq 0 ] || fail "run4 exited $RUN_RC: $(tail -3 "$WORK/run4.log")"
# shellcheck disable=SC2046
tier=$("$FIDELIO" profile $(fid_ro_opts) -r "$WORK/oro2.yaml" g 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['tier'])")
[ "$tier" = oro ] || fail "g reads as tier $tier under oro2.yaml"
"$FIDELIO" consume -b "$BOOTSTRAP" -t rewards -e 2>/dev/null | grep '"source_event_id":"g-3"' | grep -q '"rule_id":"purchase","points":150' \
    || fail "g's purchase did not earn at x1.50: $("$FIDELIO" consume -b "$BOOTSTRAP" -t rewards -e 2>/dev/null | grep g-3)"
"$FIDELIO" consume -b "$BOOTSTRAP" -t stage-changes -e 2>/dev/null | grep '"source_event_id":"g-3"' | grep -q '"ladder":"tier"' \
    && fail "a tier stage change was emitted for g-3"
"${RC[@]}" SISMEMBER fidelio:stages tier:oro | grep -q 1 || fail "registry lacks tier:oro"
pass "case 10: with renamed_from: gold it runs; g reads as oro, earns x1.50, no tier change emitted"
set +e
# shellcheck disable=SC2046
"$FIDELIO" check $(fid_opts) --namespace >"$WORK/check4.out" 2>"$WORK/check4.err"
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "stored in this namespace: tier:oro" "$WORK/check4.err" \
    || fail "the default program (no oro) after oro2: exit $rc: $(cat "$WORK/check4.err")"
pass "case 10: the registry now holds tier:oro: going back to the program without it is refused"

# ---- case 11: digest in outputs; same version, other content: a warning
digest=$("$FIDELIO" check -r "$WORK/oro2.yaml" | sed -n 's/.*digest \(sha256:[0-9a-f]*\).*/\1/p')
[ -n "$digest" ] || fail "check prints no digest"
"$FIDELIO" consume -b "$BOOTSTRAP" -t rewards -e 2>/dev/null | grep '"source_event_id":"g-3"' | grep -q "\"program_digest\":\"$digest\"" \
    || fail "g-3's reward does not carry the digest $digest"
pass "case 11: outputs carry program_digest, the digest check prints"
sed -e 's/award: 100$/award: 101/' "$WORK/oro2.yaml" >"$WORK/oro2-edited.yaml"
cmp -s "$WORK/oro2.yaml" "$WORK/oro2-edited.yaml" && fail "the edit did not apply"
# shellcheck disable=SC2046
"$FIDELIO" check $(fid_ro_opts) -r "$WORK/oro2-edited.yaml" --namespace >"$WORK/check3.out" 2>"$WORK/check3.err" || fail "check edited"
grep -q "warning: this namespace last ran rule program version oro-2 with digest $digest" "$WORK/check3.err" \
    || fail "check does not warn: $(cat "$WORK/check3.err")"
run_idle run5 -r "$WORK/oro2-edited.yaml"
[ "$RUN_RC" -eq 0 ] || fail "run5 exited $RUN_RC"
grep -q " warn .*last ran rule program version oro-2 with digest $digest" "$WORK/run5.log" \
    || fail "run does not warn: $(head -5 "$WORK/run5.log")"
pass "case 11: the same version with another digest: check and run warn"
done_ok
