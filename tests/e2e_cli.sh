#!/usr/bin/env bash
# The command line never misleads (issue 8): exit codes agree between
# commands (0 ok, 1 runtime failure such as an unknown customer, 2 usage or
# configuration error such as a missing input file), every usage error says
# what is wrong, every --help describes every option it lists, -b is offered
# only by commands that talk to Kafka, `check` shows campaign windows and
# conditions in columns that survive long rule ids, and dev-kafka gives a
# configured topic the partitions asked for.
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli kcat

# expect CODE DESCRIPTION -- COMMAND...: run it, keep stdout/stderr in $WORK/out, $WORK/err.
expect() {
    local want=$1 what=$2
    shift 3
    local rc=0
    "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
    [ "$rc" -eq "$want" ] || fail "$what: exit $rc, want $want (stderr: $(head -3 "$WORK/err"))"
}
# says FILE TEXT: FILE contains TEXT (fixed string).
says() { grep -qF -- "$2" "$1" || fail "$(basename "$1") lacks '$2': $(head -5 "$1")"; }

start_redis
R="--set redis.url=$REDIS_URL_RO"

# -- unknown customers: profile and ledger agree (exit 1, and say so)
expect 1 "profile of an unknown customer" -- "$FIDELIO" profile $R nobody
says "$WORK/err" "no profile for 'nobody'"
expect 1 "ledger of an unknown customer" -- "$FIDELIO" ledger $R nobody
says "$WORK/err" "no profile for 'nobody'"
pass "profile and ledger of an unknown customer both exit 1 naming it"

# -- usage errors say what is wrong (exit 2)
expect 2 "profile --all with ids" -- "$FIDELIO" profile $R --all extra
says "$WORK/err" "--all takes no CUSTOMER_ID"
expect 2 "profile without ids" -- "$FIDELIO" profile $R
says "$WORK/err" "expected CUSTOMER_ID"
expect 2 "ledger with two ids" -- "$FIDELIO" ledger $R a b
says "$WORK/err" "takes one CUSTOMER_ID, got 2"
expect 2 "ledger without id" -- "$FIDELIO" ledger $R
says "$WORK/err" "takes one CUSTOMER_ID, got 0"
pass "profile --all extra, profile, ledger a b and ledger exit 2 saying what is wrong"

# -- a missing input file named on the command line is a usage error, for every command
expect 2 "demo --seeds missing" -- "$FIDELIO" demo --seeds /nonexistent/seeds.jsonl
says "$WORK/err" "/nonexistent/seeds.jsonl"
expect 2 "simulate missing file" -- "$FIDELIO" simulate /nonexistent/in.jsonl
says "$WORK/err" "/nonexistent/in.jsonl"
expect 2 "produce missing file" -- "$FIDELIO" produce -t touchpoints /nonexistent/in.jsonl
says "$WORK/err" "/nonexistent/in.jsonl"
expect 2 "encode missing file" -- "$FIDELIO" encode -o "$WORK/enc" /nonexistent/in.jsonl
says "$WORK/err" "/nonexistent/in.jsonl"
expect 2 "check -r missing" -- "$FIDELIO" check -r /nonexistent/rules.yaml
says "$WORK/err" "/nonexistent/rules.yaml"
expect 2 "check -c missing" -- "$FIDELIO" check -c /nonexistent/fidelio.yaml
says "$WORK/err" "/nonexistent/fidelio.yaml"
pass "a missing input file exits 2 naming it (demo, simulate, produce, encode, -r, -c)"

# -- help
expect 0 "version --help" -- "$FIDELIO" version --help
says "$WORK/out" "usage: fidelio version"
expect 2 "version extra" -- "$FIDELIO" version extra
expect 0 "version" -- "$FIDELIO" version
says "$WORK/out" "fidelio 0."
for c in run produce consume offsets replay; do
    expect 0 "$c --help" -- "$FIDELIO" $c --help
    says "$WORK/out" "-b, --brokers"
done
for c in profile ledger check simulate encode demo dev-kafka diff; do
    expect 0 "$c --help" -- "$FIDELIO" $c --help
    if grep -qE -- "^ *-b, --brokers|^usage:.*-b BROKERS" "$WORK/out"; then fail "$c --help offers -b but never talks to a broker"; fi
done
expect 0 "profile --help" -- "$FIDELIO" profile --help
head -1 "$WORK/out" | grep -qF -- "--all" || fail "profile's usage line omits --all: $(head -1 "$WORK/out")"
expect 0 "demo --help" -- "$FIDELIO" demo --help
grep -qE -- "^ +--keep +[a-z]" "$WORK/out" || fail "demo --help does not describe --keep"
# every long option a usage line names is described below it
for c in run profile ledger simulate check produce consume encode dev-kafka demo diff offsets replay; do
    "$FIDELIO" $c --help >"$WORK/help"
    for o in $(grep -oE -- "--[a-z][a-z-]+" "$WORK/help" | sort -u); do
        grep -qE -- "^ +(-[a-zA-Z], )?$o( |$)" "$WORK/help" || fail "$c --help names $o without describing it"
    done
done
pass "version --help is help; -b only on run, produce, consume; every option named is described"

# -- check: windows and conditions, columns that survive long ids
long=a-rule-id-that-is-long-on-purpose-to-push-every-column-out-of-it
cat >"$WORK/rules.yaml" <<EOF
version: cli-test
rules:
  - id: a
    on: SIGNUP
    award: 5
  - id: $long
    on: PURCHASE
    award: 7
    when: "amount_cents >= 5000 and channel == 'web'"
    valid: {from: 2026-12-01T00:00:00Z, until: 2027-01-01T00:00:00Z}
EOF
expect 0 "check with a long rule id" -- "$FIDELIO" check -r "$WORK/rules.yaml"
says "$WORK/out" "valid 2026-12-01T00:00:00.000Z .. 2027-01-01T00:00:00.000Z"
says "$WORK/out" "when amount_cents >= 5000 and channel == 'web'"
python3 - "$WORK/out" "$long" <<'PY' || fail "check's rule columns do not line up: $(grep '#   rule' "$WORK/out")"
import sys
lines = [l for l in open(sys.argv[1]) if l.startswith("#   rule ")]
assert len(lines) == 2, lines
cols = {l.index(" on ") for l in lines}
assert len(cols) == 1, cols
assert all(l.split()[2] in ("a", sys.argv[2]) for l in lines), lines
PY
pass "check shows valid windows and conditions; rule columns line up with a 64-character id"

# -- dev-kafka: a configured topic named by --topic gets the partitions asked for
start_dev_kafka --partitions 3 --topic touchpoints:12 --topic extra:2
kcat -b "$BOOTSTRAP" -L -J >"$WORK/meta.json" 2>/dev/null || fail "kcat -L"
python3 - "$WORK/meta.json" <<'PY' || fail "dev-kafka topic partitions are wrong: $(cat "$WORK/meta.json")"
import json, sys
t = {x["topic"]: len(x["partitions"]) for x in json.load(open(sys.argv[1]))["topics"]}
want = {"touchpoints": 12, "extra": 2, "rewards": 3, "stage-changes": 3, "touchpoints-dlq": 3, "fidelio-credits": 3}
bad = {k: (t.get(k), v) for k, v in want.items() if t.get(k) != v}
assert not bad, bad
PY
expect 2 "dev-kafka --topic twice" -- "$FIDELIO" dev-kafka --topic extra:2 --topic extra:3
says "$WORK/err" "extra"
pass "dev-kafka --topic touchpoints:12 gives the configured topic 12 partitions; the others keep --partitions"
done_ok
