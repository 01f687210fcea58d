#!/usr/bin/env bash
# Security on a real Kafka: SASL (PLAIN) over TLS with ACLs enforced
# (StandardAuthorizer, nothing allowed without an ACL). fidelio run, with
# exactly-once outputs, under a principal holding only the README's ACL set
# processes the seeds; principals missing one ACL each, and a SCRAM login
# (which librdkafka 2.0.2 cannot do against Kafka 4), get a clear error and
# exit 1 within a minute, never a wait. No secret appears in any log line or
# in `fidelio check`.
E2E_BROKER=kafka
source "$(dirname "$0")/lib.sh"
require kcat redis-server redis-cli python3 timeout

PW=fid-Pw-$$-x9       # the secrets the output is searched for
REDIS_PW=redis-Pw-$$-k3
USERS=(fidelio nogroup notxn nowrite)
user_opts=()
for u in "${USERS[@]}"; do user_opts+=(--user "$u:$PW"); done
start_broker --partitions 3 --sasl --tls "${user_opts[@]}"
start_redis
pass "Kafka with SASL_SSL and ACLs enforced; topics created by the admin"

# The README's ACL set, for fidelio; each other principal lacks one part of it.
all=(--allow-principal User:fidelio --allow-principal User:nogroup --allow-principal User:notxn
     --allow-principal User:nowrite)
acl() { kafka_acl "$KAFKA_DIR" --add "$@" >>"$WORK/acl.log" 2>&1 || fail "AclCommand $*: $(tail -3 "$WORK/acl.log")"; }
acl "${all[@]}" --operation Describe --operation Read --topic touchpoints --topic fidelio-credits
acl "${all[@]}" --operation Describe --operation Write --topic fidelio-credits --topic stage-changes --topic touchpoints-dlq
acl "${all[@]}" --operation Describe --topic rewards
acl --allow-principal User:fidelio --allow-principal User:nogroup --allow-principal User:notxn \
    --operation Write --topic rewards
acl --allow-principal User:fidelio --allow-principal User:notxn --allow-principal User:nowrite \
    --operation Read --group fidelio
acl --allow-principal User:fidelio --allow-principal User:nogroup --allow-principal User:nowrite \
    --operation Describe --operation Write --transactional-id fidelio- --resource-pattern-type prefixed
pass "ACLs granted: fidelio has the README's set; nogroup, notxn, nowrite each lack one part"

# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$SOURCE_DIR/seeds/demo.jsonl" || fail "produce as admin"
as_user() {  # as_user USER [ARGS...]: fidelio run's options as USER (PLAIN over TLS)
    local u=$1
    shift
    echo "--set kafka.sasl.username=$u --set kafka.sasl.password=$PW --set kafka.transactional.id=fidelio-$u $*"
}
EOS=(--set pipeline.exactly_once=true --set pipeline.batch_size=1000 --set pipeline.batch_linger_ms=1000)
# expect_refusal NAME PATTERN ARGS...: fidelio run exits 1 within 60 s, its log matching PATTERN.
expect_refusal() {
    local name=$1 pattern=$2 t0=$SECONDS rc=0
    shift 2
    # shellcheck disable=SC2068
    timeout 90 "$FIDELIO" run $(fid_opts) $@ --until-idle >"$WORK/$name.log" 2>&1 || rc=$?
    [ "$rc" -eq 1 ] || fail "$name: exit $rc, want 1: $(tail -3 "$WORK/$name.log")"
    [ $((SECONDS - t0)) -le 60 ] || fail "$name: took $((SECONDS - t0)) s to give up"
    grep -qE "$pattern" "$WORK/$name.log" || fail "$name: no clear message: $(tail -3 "$WORK/$name.log")"
    echo "$(grep -E "$pattern" "$WORK/$name.log" | head -1 | sed 's/^.*error *[a-z_.]*:[0-9]* //') ($((SECONDS - t0)) s)"
}
m=$(expect_refusal nogroup "Group authorization failed.*ACL" $(as_user nogroup) "${EOS[@]}")
pass "no Read on the group: $m"
m=$(expect_refusal notxn "init_transactions.*Write and Describe on this transactional id" $(as_user notxn) "${EOS[@]}")
pass "no transactional-id ACL: $m"
m=$(expect_refusal nowrite "transaction refused .the principal lacks an ACL.*Topic authorization failed" $(as_user nowrite) "${EOS[@]}")
pass "no Write on rewards: $m"
# shellcheck disable=SC2046
timeout 120 "$FIDELIO" run $(fid_opts) $(as_user fidelio) "${EOS[@]}" --set log.level=debug --until-idle \
    >"$WORK/ok.log" 2>&1 || fail "run as fidelio exited $?: $(tail -3 "$WORK/ok.log")"
output_ids >"$WORK/ids"
ids_of "$SOURCE_DIR/tests/golden/demo-outputs.jsonl" | diff -q - "$WORK/ids" >/dev/null \
    || fail "outputs differ from simulate's golden ones"
same_profiles "$SOURCE_DIR/tests/golden/demo-profiles.jsonl" || fail "profiles differ"
pass "as User:fidelio with only its ACLs: the seeds processed exactly once (what nowrite applied in Redis came back as recorded outputs), outputs and profiles equal simulate's"

# The same missing Write met while the batch's outputs are still being
# produced: with thousands of outputs in one transaction, the refused
# AddPartitionsToTxn comes back before the last produce call, which librdkafka
# then refuses with only "Erroneous state" (the demo's small batch meets it
# mostly at commit, sometimes here: the flake this case makes certain).
# After the checks above: its events stay out of the golden comparison.
kafka_topics "$KAFKA_DIR" big-touchpoints:3 || fail "create big-touchpoints"
acl --allow-principal User:nowrite --operation Describe --operation Read --topic big-touchpoints
"$FIDELIO" gen -q --customers 2000 --events 20000 --seed 3 -o "$WORK/big.jsonl" || fail "gen"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) --set topics.touchpoints=big-touchpoints -t big-touchpoints "$WORK/big.jsonl" || fail "produce big-touchpoints as admin"
m=$(expect_refusal nowrite-big "transaction refused .the principal lacks an ACL.*Topic authorization failed" \
    $(as_user nowrite) "${EOS[@]}" --set pipeline.batch_size=5000 --set topics.touchpoints=big-touchpoints)
# refused means stopped: no retry of the batch (old: 3 attempts, then 3 more at the revoke)
if grep -q "producing the batch's outputs failed" "$WORK/nowrite-big.log"; then
    fail "nowrite-big: the refused transaction was retried: $(grep -m1 "producing the batch's outputs failed" "$WORK/nowrite-big.log")"
fi
pass "no Write on rewards, met while a batch of 5000 events' outputs is produced: $m"

kafka_topics "$KAFKA_DIR" other-touchpoints:1 || fail "create other-touchpoints"
m=$(expect_refusal nodescribe "topics.touchpoints.*not authorized: the principal needs an ACL" \
    $(as_user fidelio) --set topics.touchpoints=other-touchpoints)
pass "a touchpoints topic without Describe: $m"
m=$(expect_refusal scram "Authentication failed.*(README: ACLs)" $(as_user fidelio) \
    --set kafka.sasl.mechanisms=SCRAM-SHA-256)
pass "SCRAM-SHA-256 (librdkafka 2.0.2 vs Kafka 4): $m"

# Secrets: never in a log line nor in `fidelio check`.
# shellcheck disable=SC2046
"$FIDELIO" check $(fid_opts) $(as_user fidelio) --set redis.url="redis://:$REDIS_PW@127.0.0.1:1/0" \
    >"$WORK/check.log" 2>&1 || fail "check exited $?: $(tail -3 "$WORK/check.log")"
grep -q "sasl.password: \"\*\*\*\"" "$WORK/check.log" || fail "check does not show the password masked"
for f in "$WORK"/*.log; do
    if grep -q -e "$PW" -e "$REDIS_PW" "$f"; then fail "a secret appears in $(basename "$f")"; fi
done
pass "neither the SASL password nor the Redis password appears in $(ls "$WORK"/*.log | wc -l) logs (debug level included) or in fidelio check"
done_ok
