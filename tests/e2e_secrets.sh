#!/usr/bin/env bash
# No secret ever reaches an output. Every command runs with known secrets in
# the configuration file, the environment and --set (the Redis password in
# redis.url, kafka.sasl.password, kafka.sasl.oauthbearer.config with a
# clientSecret, kafka.ssl.key.password, credits.hmac_key; kafka.ssl.keystore.password from FIDELIO_KAFKA_SSL_KEYSTORE_PASSWORD) at log level
# debug, on its successful path and on failing ones (wrong Redis password,
# unreachable Redis, bad input, bad program); then stdout and stderr of all of
# them are searched for every secret.
source "$(dirname "$0")/lib.sh"
require kcat redis-server redis-cli python3

start_dev_kafka --partitions 2
start_redis
S_RUN=Sec-RunPw-7f3a S_TOOLS=Sec-ToolsPw-9c1d S_SASL=Sec-Sasl-52be S_OAUTH=Sec-Oauth-e04c S_SSL=Sec-SslKey-3d9a
S_ENV=Sec-Env-81f2 S_HMAC=Sec-Hmac-c4d5e6f7a8b9
SECRETS=("$S_RUN" "$S_TOOLS" "$S_SASL" "$S_OAUTH" "$S_SSL" "$S_ENV" "$S_HMAC")
redis-cli -s "$REDIS_SOCK" ACL SETUSER fidelio ">$S_RUN" >/dev/null
redis-cli -s "$REDIS_SOCK" ACL SETUSER fidelio-ro ">$S_TOOLS" >/dev/null
RUN_URL="unix://fidelio:$S_RUN@$REDIS_SOCK"
TOOLS_URL="unix://fidelio-ro:$S_TOOLS@$REDIS_SOCK"
cat >"$WORK/secret.yaml" <<YAML
redis:
  url: "$RUN_URL"
kafka:
  sasl.password: "$S_SASL"
  sasl.oauthbearer.config: "principal=fidelio clientId=app clientSecret=$S_OAUTH scope=events"
  ssl.key.password: "$S_SSL"
credits:
  hmac_key: "$S_HMAC"
log:
  level: debug
YAML
export FIDELIO_KAFKA_SASL_USERNAME=fidelio FIDELIO_KAFKA_SSL_KEYSTORE_PASSWORD="$S_ENV"
C=(-c "$WORK/secret.yaml")
K=(--set "kafka.bootstrap.servers=$BOOTSTRAP" --set kafka.session.timeout.ms=6000 --set kafka.heartbeat.interval.ms=500)
OUT="$WORK/out"
mkdir -p "$OUT"
n=0
# step NAME EXPECTED_RC COMMAND...: run it, keep stdout+stderr, check the exit code
step() {
    local name=$1 want=$2 rc=0
    shift 2
    timeout 120 "$@" >"$OUT/$name.out" 2>&1 || rc=$?
    [ "$rc" -eq "$want" ] || fail "$name: exit $rc, want $want: $(tail -3 "$OUT/$name.out")"
    n=$((n + 1))
}

step check 0 "$FIDELIO" check "${C[@]}" "${K[@]}"
grep -q "unix://fidelio:\*\*\*@" "$OUT/check.out" || fail "check does not show the masked redis.url"
step check-set 0 "$FIDELIO" check --set "redis.url=redis://fidelio:$S_RUN@db:6380/1" --set "kafka.sasl.password=$S_SASL"
step check-bad 2 "$FIDELIO" check "${C[@]}" --set "kafka.no.such.key=1"
step produce 0 "$FIDELIO" produce "${C[@]}" "${K[@]}" -t touchpoints "$SOURCE_DIR/seeds/demo.jsonl"
printf '{"event_id":"x"}\n' >"$WORK/bad.jsonl"
step produce-bad 1 "$FIDELIO" produce "${C[@]}" "${K[@]}" -t touchpoints "$WORK/bad.jsonl"
step run 0 "$FIDELIO" run "${C[@]}" "${K[@]}" --until-idle
grep -q "state in unix://fidelio:\*\*\*@" "$OUT/run.out" || fail "run's start line does not show the masked URL"
step run-wrongpw 1 "$FIDELIO" run "${C[@]}" "${K[@]}" --until-idle --set "redis.url=unix://fidelio:$S_RUN-x@$REDIS_SOCK"
grep -q "WRONGPASS" "$OUT/run-wrongpw.out" || fail "run with a wrong password: no WRONGPASS"
step run-unreachable 1 "$FIDELIO" run "${C[@]}" "${K[@]}" --until-idle --set "redis.url=redis://fidelio:$S_RUN@127.0.0.1:1/0"
step consume 0 "$FIDELIO" consume "${C[@]}" "${K[@]}" -t rewards -e
step consume-dlq 0 "$FIDELIO" consume "${C[@]}" "${K[@]}" -t touchpoints-dlq -e
step profile 0 "$FIDELIO" profile "${C[@]}" --set "redis.url=$TOOLS_URL" --all
[ "$(wc -l <"$OUT/profile.out")" -ge 40 ] || fail "profile --all printed too little"
step profile-wrongpw 1 "$FIDELIO" profile "${C[@]}" --set "redis.url=unix://fidelio-ro:x$S_TOOLS@$REDIS_SOCK" cust-0001
step profile-unreachable 1 "$FIDELIO" profile "${C[@]}" --set "redis.url=redis://fidelio-ro:$S_TOOLS@127.0.0.1:1/0" cust-0001
step ledger 0 "$FIDELIO" ledger "${C[@]}" --set "redis.url=$TOOLS_URL" cust-0001
step ledger-wrongpw 1 "$FIDELIO" ledger "${C[@]}" --set "redis.url=unix://fidelio-ro:x$S_TOOLS@$REDIS_SOCK" cust-0001
step ledger-unreachable 1 "$FIDELIO" ledger "${C[@]}" --set "redis.url=redis://fidelio-ro:$S_TOOLS@127.0.0.1:1/0" cust-0001
step report 0 "$FIDELIO" report "${C[@]}" --set "redis.url=$TOOLS_URL"
step report-wrongpw 1 "$FIDELIO" report "${C[@]}" --set "redis.url=unix://fidelio-ro:x$S_TOOLS@$REDIS_SOCK"
step report-unreachable 1 "$FIDELIO" report "${C[@]}" --set "redis.url=redis://fidelio-ro:$S_TOOLS@127.0.0.1:1/0"
step check-namespace 0 "$FIDELIO" check "${C[@]}" --set "redis.url=$TOOLS_URL" --namespace
step check-namespace-unreachable 1 "$FIDELIO" check "${C[@]}" --set "redis.url=redis://fidelio-ro:$S_TOOLS@127.0.0.1:1/0" --namespace
step simulate 0 "$FIDELIO" simulate "${C[@]}" "$SOURCE_DIR/seeds/demo.jsonl"
printf 'rules: [\n' >"$WORK/bad-rules.yaml"
step simulate-bad 2 "$FIDELIO" simulate "${C[@]}" -r "$WORK/bad-rules.yaml" "$SOURCE_DIR/seeds/demo.jsonl"
step encode 0 "$FIDELIO" encode -o "$WORK/enc" "$SOURCE_DIR/seeds/demo.jsonl"
step gen 0 "$FIDELIO" gen "${C[@]}" -n 20 -m 50 -o "$WORK/gen.jsonl"
step gen-kafka 0 "$FIDELIO" gen "${C[@]}" "${K[@]}" -n 20 -m 50 -t gen-topic
step demo 0 "$FIDELIO" demo
step version 0 "$FIDELIO" version
step help 0 "$FIDELIO" help
# the dashboard and dev-kafka run until stopped
DPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$FIDELIO" dashboard "${C[@]}" --set "redis.url=$TOOLS_URL" --port "$DPORT" >"$OUT/dashboard.out" 2>&1 &
DB=$!
PIDS+=("$DB")
wait_until 30 "the dashboard" python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$DPORT/api/report')"
kill -TERM "$DB"
wait "$DB" || fail "dashboard exited $?"
n=$((n + 1))
# dev-kafka runs until stopped
"$FIDELIO" dev-kafka "${C[@]}" --bootstrap-file "$WORK/dk.bootstrap" >"$OUT/dev-kafka.out" 2>&1 &
DK=$!
PIDS+=("$DK")
wait_until 30 "dev-kafka's address" test -s "$WORK/dk.bootstrap"
kill -TERM "$DK"
wait "$DK" || fail "dev-kafka exited $?"
n=$((n + 1))
pass "$n command runs (every command; successful and failing paths) with known secrets in file, environment and --set"

leaks=0
for s in "${SECRETS[@]}"; do
    if grep -rl -- "$s" "$OUT" >/dev/null; then
        echo "secret $s printed by: $(grep -rl -- "$s" "$OUT" | xargs -n1 basename | tr '\n' ' ')" >&2
        grep -rh -m1 -- "$s" "$OUT" | head -2 | cut -c1-240 >&2
        leaks=$((leaks + 1))
    fi
done
[ "$leaks" -eq 0 ] || fail "$leaks secrets reached an output"
pass "none of the ${#SECRETS[@]} secrets appears in $(cat "$OUT"/* | wc -l) lines of output"
done_ok
