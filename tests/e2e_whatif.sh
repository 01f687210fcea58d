#!/usr/bin/env bash
# What-if and rebuild checks with `fidelio diff` (issue 11), real processes:
# `fidelio dev-kafka`, redis-server, `fidelio run`. One topic of touchpoints
# (the seeds, referrals included, and a generated stream) is run into three
# namespaces of one Redis: live (default program), rebuild (the same program)
# and whatif (welcome awards 150 instead of 100), each with its own group and
# output/credit topics. Then:
#  - diff live rebuild: nothing differs (exit 0)
#  - diff live whatif: exactly the customers and fields a field-by-field
#    comparison of `fidelio profile --all` of both namespaces finds (computed
#    here in Python), every one of them a customer with a SIGNUP, gaining points;
#    the summary counts them and their points; --limit lists fewer, counts all
#  - diff writes nothing to Redis (rdb_changes_since_last_save unchanged)
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli python3

start_dev_kafka --partitions 4
REDIS_PREFIXES="live: rebuild: whatif:" # the ACL users may touch the three namespaces
start_redis
RC=(redis-cli -s "$REDIS_SOCK")

{
    cat "$SOURCE_DIR/seeds/demo.jsonl"
    python3 "$SOURCE_DIR/tests/gen_events.py" 3000 300 11
} >"$WORK/events.jsonl"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/events.jsonl" || fail "produce"
sed 's/^    award: 100$/    award: 150/' "$SOURCE_DIR/config/rules.yaml" >"$WORK/rules150.yaml"
python3 - "$WORK/rules150.yaml" <<'PY' || fail "the what-if program does not change the welcome award"
import sys
t = open(sys.argv[1]).read()
i = t.index("- id: welcome")
assert "award: 150" in t[i:i + 200], t[i:i + 200]
PY

run_ns() { # namespace [args...]: run --until-idle into prefix NAME: with its own group and topics
    local ns=$1
    shift
    # shellcheck disable=SC2046
    "$FIDELIO" run $(fid_opts) --until-idle --set redis.key_prefix="$ns:" --set consumer.group="g-$ns" \
        --set topics.rewards="rewards-$ns" --set topics.stage_changes="stage-changes-$ns" \
        --set topics.credits="credits-$ns" --set topics.dlq="dlq-$ns" "$@" >"$WORK/run-$ns.log" 2>&1 \
        || fail "run into $ns exited $?: $(tail -3 "$WORK/run-$ns.log")"
}
run_ns live
run_ns rebuild
run_ns whatif -r "$WORK/rules150.yaml"

diff_ns() { # args...: fidelio diff, exit status in DIFF_RC
    set +e
    # shellcheck disable=SC2046
    "$FIDELIO" diff --set redis.url="$REDIS_URL_RO" "$@" >"$WORK/diff.out" 2>"$WORK/diff.err"
    DIFF_RC=$?
    set -e
}

changes() { "${RC[@]}" info persistence | tr -d '\r' | sed -n 's/^rdb_changes_since_last_save://p'; }
before=$(changes)

diff_ns --namespace live --namespace rebuild
[ "$DIFF_RC" -eq 0 ] || fail "live vs rebuild: exit $DIFF_RC: $(cat "$WORK/diff.err") $(head -3 "$WORK/diff.out")"
n_live=$("${RC[@]}" --scan --pattern 'live:{*}:p' | wc -l)
[ "$n_live" -gt 300 ] || fail "only $n_live live profiles"
grep -q "^# 0 of $n_live customers differ" "$WORK/diff.out" || fail "live vs rebuild: $(tail -3 "$WORK/diff.out")"
pass "diff live rebuild (the same program): 0 of $n_live customers differ, exit 0"

for ns in live whatif; do
    # shellcheck disable=SC2046
    "$FIDELIO" profile --set redis.url="$REDIS_URL_RO" --set redis.key_prefix="$ns:" --all >"$WORK/profiles.$ns" \
        || fail "profile --all $ns"
done
diff_ns --namespace live --namespace whatif --json -r "$SOURCE_DIR/config/rules.yaml" -r "$WORK/rules150.yaml"
[ "$DIFF_RC" -eq 1 ] && [ ! -s "$WORK/diff.err" ] || fail "live vs whatif: exit $DIFF_RC: $(cat "$WORK/diff.err")"
python3 - "$WORK/profiles.live" "$WORK/profiles.whatif" "$WORK/diff.out" "$SOURCE_DIR/tests" <<'PY' || fail "diff live whatif is not the expected one"
import sys
sys.path.insert(0, sys.argv[4])
from expected_diff import profiles, expected, check
a, b = profiles(sys.argv[1]), profiles(sys.argv[2])
assert set(a) == set(b), "the same events make the same customers"
want = expected(a, b)
lines, summary = check(want, sys.argv[3])
assert all(l["only_in"] is None for l in lines)
signed = {c for c in a if a[c]["counts"]["SIGNUP"] >= 1}
assert set(want) == signed, f"{len(want)} differ, {len(signed)} signed up"
deltas = [b[c]["balance"] - a[c]["balance"] for c in want]
assert all(d >= 50 for d in deltas), deltas
assert summary["customers"] == len(a) and summary["differing"] == len(want), summary
assert summary["gain"] == {"customers": len(want), "points": sum(deltas)}, summary
assert summary["lose"] == {"customers": 0, "points": 0}, summary
tiers = {}
for c in want:
    if a[c]["tier"] != b[c]["tier"]:
        k = f'{a[c]["tier"] or "none"} -> {b[c]["tier"] or "none"}'
        tiers[k] = tiers.get(k, 0) + 1
assert summary["tier_moves"] == tiers, (summary["tier_moves"], tiers)
print(f"{len(want)} customers differ, +{sum(deltas)} points, tier moves {tiers}")
PY
pass "diff live whatif (welcome 150): exactly the signed-up customers, fields and summary of a field-by-field comparison"

# a customer only the what-if namespace has (an event on another topic)
printf '{"event_id":"ob-1","customer_id":"only-b","type":"SIGNUP","channel":"web","occurred_at":"2026-10-01T10:00:00Z"}\n' \
    >"$WORK/extra.jsonl"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) --set topics.touchpoints=extra -t extra "$WORK/extra.jsonl" || fail "produce extra"
run_ns whatif -r "$WORK/rules150.yaml" --set topics.touchpoints=extra
before_extra=$before
before=$(changes) # the run wrote; the diffs below must not
diff_ns --namespace live --namespace whatif --json
[ "$DIFF_RC" -eq 1 ] && [ ! -s "$WORK/diff.err" ] || fail "only-b: exit $DIFF_RC: $(cat "$WORK/diff.err")"
grep -q '^{"customer_id":"only-b","only_in":"whatif","fields":{"balance":\[null,150\],' "$WORK/diff.out" \
    && grep -q '"only_in_a":0,"only_in_b":1,' "$WORK/diff.out" || fail "only-b: $(tail -c 300 "$WORK/diff.out")"
pass "a customer only in whatif is listed as such (balance null -> 150) and counted"

diff_ns --namespace live --namespace whatif --limit 3
head -4 "$WORK/diff.out"
[ "$DIFF_RC" -eq 1 ] || fail "--limit: exit $DIFF_RC"
listed=$(grep -vc '^#' "$WORK/diff.out" || true)
[ "$listed" -eq 3 ] || fail "--limit 3 listed $listed"
grep -q "customers differ.*--limit: not all listed" "$WORK/diff.out" || fail "--limit: $(tail -4 "$WORK/diff.out")"
grep -q "^# points: [0-9]* customers gain" "$WORK/diff.out" || fail "no points summary"
grep -q "balance [0-9-]* -> [0-9-]* (+[0-9]*)" "$WORK/diff.out" || fail "no balance move: $(head -2 "$WORK/diff.out")"
pass "--limit 3 lists 3 customers, the summary counts all"

[ "$(changes)" = "$before" ] || fail "diff wrote to Redis: changes $before -> $(changes)"
[ "$before_extra" -gt 0 ] || fail "rdb_changes_since_last_save is not counting"
pass "diff wrote nothing to Redis (rdb_changes_since_last_save unchanged across the diffs)"

diff_ns --namespace live
[ "$DIFF_RC" -eq 2 ] || fail "one namespace: exit $DIFF_RC"
diff_ns --namespace live --namespace 'a b'
[ "$DIFF_RC" -eq 2 ] && grep -q "no braces or spaces" "$WORK/diff.err" || fail "bad namespace: exit $DIFF_RC"
pass "usage errors exit 2"
done_ok
