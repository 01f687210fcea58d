#!/usr/bin/env bash
# SIGHUP reloads the rule program of a running `fidelio run`: a valid new
# program takes effect on the next batch (its version in the outputs and in
# /metrics' fidelio_program_info, one log line); a broken one, and one that
# would orphan stored stages (gold renamed oro without renamed_from), are
# refused with the error logged, and the running program stays.
source "$(dirname "$0")/lib.sh"
require kcat redis-server redis-cli python3

start_dev_kafka --partitions 2
start_redis
HP=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RULES="$WORK/rules.yaml"
program() { sed "s/^version: .*/version: \"$1\"/" "$SOURCE_DIR/config/rules.yaml"; }
program reload-v1 >"$RULES"
# shellcheck disable=SC2046
produce_seeds() { sed -n "$1p" "$SOURCE_DIR/seeds/demo.jsonl" | "$FIDELIO" produce -q $(fid_opts) -t touchpoints || fail "produce"; }
program_info() {
    python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
        "http://127.0.0.1:$HP/metrics" 2>/dev/null | grep '^fidelio_program_info' || true
}
program_is() { program_info | grep -q "version=\"$1\""; }
# reward_versions EVENT_ID...: the program versions of the rewards whose source event ids are given
reward_versions() {
    "$FIDELIO" consume -b "$BOOTSTRAP" -t rewards -e 2>/dev/null | python3 -c '
import json, sys
ids = set(sys.argv[1:])
print(" ".join(sorted({r["program_version"] for r in map(json.loads, sys.stdin) if r["source_event_id"] in ids})))' "$@"
}
ids_of_lines() { sed -n "$1p" "$SOURCE_DIR/seeds/demo.jsonl" | python3 -c 'import json, sys; print(" ".join(json.loads(l)["event_id"] for l in sys.stdin))'; }

produce_seeds 1,30
start_run run -r "$RULES" --set http.port="$HP"
wait_until 60 "the first outputs" outputs_at_least 1
wait_until 30 "program_info reload-v1" program_is reload-v1
pass "fidelio run started with program reload-v1"

program reload-v2 >"$RULES.new" && mv "$RULES.new" "$RULES"
kill -HUP "$RUN_PID"
wait_until 30 "the reload log line" grep -q "SIGHUP: rule program reloaded from .*: reload-v2 (sha256:" "$WORK/run.log"
[ "$(grep -c "rule program reloaded" "$WORK/run.log")" -eq 1 ] || fail "one log line per reload"
wait_until 30 "program_info reload-v2" program_is reload-v2
program_info | grep -q 'version="reload-v1"' && fail "program_info still shows reload-v1"
n=$(outputs_total)
produce_seeds 31,120
wait_until 60 "outputs after the reload" outputs_at_least $((n + 1))
sleep 2
# shellcheck disable=SC2046
[ "$(reward_versions $(ids_of_lines 1,30))" = "reload-v1" ] || fail "rewards of the first events: $(reward_versions $(ids_of_lines 1,30))"
# shellcheck disable=SC2046
[ "$(reward_versions $(ids_of_lines 31,120))" = "reload-v2" ] || fail "rewards after the reload: $(reward_versions $(ids_of_lines 31,120))"
pass "SIGHUP with a valid program: reload-v2 from the next batch (outputs and fidelio_program_info), one log line"

printf 'version: "broken"\nrules:\n  - {id: x, on: NOSUCHTYPE, award: 1}\n' >"$RULES"
kill -HUP "$RUN_PID"
wait_until 30 "the refusal" grep -q "SIGHUP: rule program reload refused, still running reload-v2 .*$(basename "$RULES")" "$WORK/run.log"
kill -0 "$RUN_PID" 2>/dev/null || fail "fidelio run died of a broken program"
program_info | grep -q 'version="reload-v2"' || fail "program_info after a refused reload: $(program_info)"
pass "SIGHUP with a broken program: refused, the error (file named) logged, reload-v2 kept"

program reload-v3 | sed 's/{name: gold,/{name: oro,/' >"$RULES"
kill -HUP "$RUN_PID"
wait_until 30 "the second refusal" grep -q "SIGHUP: rule program reload refused, still running reload-v2 .*gold" "$WORK/run.log"
program_info | grep -q 'version="reload-v2"' || fail "program_info after an orphaning program: $(program_info)"
n=$(outputs_total)
produce_seeds 121,200
wait_until 60 "outputs after the refusals" outputs_at_least $((n + 1))
sleep 2
# shellcheck disable=SC2046
[ "$(reward_versions $(ids_of_lines 121,200))" = "reload-v2" ] || fail "rewards after the refusals: $(reward_versions $(ids_of_lines 121,200))"
pass "SIGHUP with a program orphaning stored stages (gold renamed oro): refused naming them; outputs stay reload-v2"
stop_run "$RUN_PID" 30
done_ok
