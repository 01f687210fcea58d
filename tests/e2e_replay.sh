#!/usr/bin/env bash
# `fidelio replay` (issue 11), real processes: `fidelio dev-kafka`, redis-server,
# `fidelio run`. A generated stream (REPLAY_EVENTS events, default 100,000, over
# REPLAY_CUSTOMERS customers, default 6,000 (over 5,000 of them active): every event type, referrals) is
# run live (`run --until-idle`, namespace fidelio:), then:
#  - replay --from beginning --namespace rebuild: its profiles are byte-identical
#    to `simulate` over the same events in replay's order (the partitions merged
#    by message timestamp, then partition: computed here from kcat's view of the
#    topic), referrals included, though the replay hands each window of that
#    order out customer by customer (--order grouped, the default); and equal
#    to live for every customer that got
#    no referral credit (live applies credits when they come back through the
#    credits topic, so a referrer's own events may interleave): the test prints
#    how many customers differ and checks each of them is a referrer
#  - replay -r (welcome 150) --namespace whatif: equal to `simulate` with that
#    program; `diff rebuild whatif` lists exactly the customers and fields a
#    field-by-field comparison of both simulations finds
#  - the live namespace (every key, by DUMP), the live topics (end offsets) and
#    the live group's committed offsets are the same after every replay
#  - a replay killed with SIGKILL mid-way (grouped order) and resumed (--resume:
#    the merge's order) ends with the profiles, ledgers and report counters of
#    the uninterrupted one
#  - --follow picks up events produced after it caught up
#  - --parallel 3 (three worker processes, credits through the namespace's
#    credits topic fidelio-credits-par): every touchpoint and credit applied
#    once (the credits topic holds exactly the rebuild's count), profiles equal
#    the single-process rebuild and live for every customer that is not a
#    referrer (fidelio diff against live lists only referrers: whether a credit
#    lands before or after a referrer's own events depends on the workers'
#    timing, as it does live); a worker killed with SIGKILL stops the others,
#    `--resume --parallel 3` finishes (on a terminal: the parent's progress
#    line): equal to the uninterrupted single-process
#    replay for non-referrers (profiles, ledgers) and in every event and credit
#    count
#  - refusals, exit 2: the live namespace, a non-empty target, --resume with
#    another program; --wipe prints
#    the count of keys it deletes
# The replays connect as a Redis user of role `replay` granted only the replay
# namespaces (deploy/redis-acl.conf): they cannot even read the live keys.
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli python3 kcat
# where the time goes: every step says when it ended (seconds since the start)
step() { echo "[${SECONDS}s] $*"; }

EVENTS=${REPLAY_EVENTS:-100000}
CUSTOMERS=${REPLAY_CUSTOMERS:-6000}
PARTS=8 # the mock keeps ~5 MB per partition: 100,000 events need several
start_dev_kafka --partitions "$PARTS"
start_redis
RC=(redis-cli -s "$REDIS_SOCK")
# the replay user: role replay, the replay namespaces only
read -r -a acl <<<"$(acl_line replay fidelio-replay e2e-replay-pw "rebuild: whatif: killed: tail: follow: par: pkilled:" | sed 's/^user //')"
"${RC[@]}" ACL SETUSER "${acl[@]}" >/dev/null || fail "ACL SETUSER fidelio-replay"
RU="unix://fidelio-replay:e2e-replay-pw@$REDIS_SOCK"
RU_RO="unix://fidelio-replay:e2e-replay-pw@$REDIS_SOCK"

"$FIDELIO" gen -q --customers "$CUSTOMERS" --events "$EVENTS" --seed 11 --referrals 0.3 -o "$WORK/events.jsonl" \
    || fail "gen"
step "gen: $EVENTS events"
python3 - "$WORK/events.jsonl" <<'PY' || fail "the generated stream lacks an event type or referrals"
import json, sys
types, referred = set(), 0
for l in open(sys.argv[1]):
    e = json.loads(l)
    types.add(e["type"])
    referred += e["type"] == "SIGNUP" and bool((e.get("payload") or {}).get("referred_by"))
print(f"event types: {sorted(types)}; {referred} signups through a referral")
assert len(types) == 9 and referred > 0, (types, referred)
PY
grep -q '"referred_by"' "$WORK/events.jsonl" || fail "no referral signups"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/events.jsonl" || fail "produce"
step "produced"

t0=$(date +%s.%N)
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) --until-idle >"$WORK/run.log" 2>&1 || fail "run exited $?: $(tail -3 "$WORK/run.log")"
t_run=$(echo "$(date +%s.%N) - $t0" | bc)
applied=$(sed -n 's/.*stopped: \([0-9]*\) touchpoints.*/\1/p' "$WORK/run.log" | tail -1)
[ "$applied" -ge $((EVENTS * 9 / 10)) ] || fail "live applied only $applied of $EVENTS"
step "live run: $applied touchpoints applied in ${t_run} s"

# --- what must not change: live keys, live topics, the live group ------------------------
# every live key and its content, digested; a hash's fields in sorted order, not DUMP's: a hash table's
# internal order moves when Redis resizes it (layout 3 deletes fields of :p) and a later read finishes
# the rehash, without any change to the data. Prints the digest, then the number of keys.
LIVE_DIGEST=$(cat <<'LUA'
local cur, ds = '0', {}
repeat
  local r = redis.call('SCAN', cur, 'MATCH', ARGV[1], 'COUNT', 1000)
  cur = r[1]
  for _, k in ipairs(r[2]) do
    local t, v = redis.call('TYPE', k).ok, ''
    if t == 'hash' then
      local h, f = redis.call('HGETALL', k), {}
      for i = 1, #h, 2 do f[#f + 1] = redis.sha1hex(h[i]) .. redis.sha1hex(h[i + 1]) end
      table.sort(f)
      v = table.concat(f)
    elseif t == 'set' then
      local m = redis.call('SMEMBERS', k)
      table.sort(m)
      v = table.concat(m, '\0')
    elseif t == 'list' then v = table.concat(redis.call('LRANGE', k, 0, -1), '\0')
    elseif t == 'zset' then v = table.concat(redis.call('ZRANGE', k, 0, -1, 'WITHSCORES'), '\0')
    elseif t == 'string' then v = redis.call('GET', k) end
    ds[#ds + 1] = redis.sha1hex(k) .. t .. redis.sha1hex(v)
  end
until cur == '0'
table.sort(ds)
return {redis.sha1hex(table.concat(ds)), #ds}
LUA
)
live_keys() { "${RC[@]}" EVAL "$LIVE_DIGEST" 0 'fidelio:*'; }
topic_ends() { # end offset of each partition of the live topics
    for t in touchpoints rewards stage-changes fidelio-credits touchpoints-dlq; do
        kcat -b "$BOOTSTRAP" -C -t "$t" -e -q -f '%p %o\n' 2>/dev/null \
            | awk -v t="$t" '{ if ($2 + 1 > e[$1]) e[$1] = $2 + 1 } END { for (p in e) print t, p, e[p] }' | sort
    done
}
group_offsets() { # the live group's committed offsets (`fidelio offsets` shows them; commits nothing)
    # shellcheck disable=SC2046
    "$FIDELIO" offsets $(fid_opts) --reset-to beginning 2>/dev/null | grep -v '^#' | awk '{print $1, $2}'
}
live_keys >"$WORK/live.before"
topic_ends >"$WORK/topics.before"
group_offsets >"$WORK/group.before"
[ "$(tail -1 "$WORK/live.before")" -gt "$CUSTOMERS" ] || fail "live holds only $(tail -1 "$WORK/live.before") keys"
[ -s "$WORK/group.before" ] && grep -q '[1-9]' "$WORK/group.before" || fail "no committed offsets: $(cat "$WORK/group.before")"
grep -q '^rewards ' "$WORK/topics.before" || fail "no rewards on the live topic"
step "live keys, topics and group offsets recorded"

replay() { # args...: fidelio replay as the replay user; exit status in REPLAY_RC
    set +e
    # shellcheck disable=SC2046
    "$FIDELIO" replay $(fid_opts) --set redis.url="$RU" "$@" >"$WORK/replay.out" 2>"$WORK/replay.err"
    REPLAY_RC=$?
    set -e
}
profiles() { # namespace -> profile --all (the live one as the tools user: the replay user may not read it)
    local url=$RU_RO
    [ "$1" = fidelio ] && url=$REDIS_URL_RO
    # shellcheck disable=SC2046
    "$FIDELIO" profile $(fid_opts) --set redis.url="$url" --set redis.key_prefix="$1:" --all
}

# --- the replay order, from an independent client: kcat's partition, offset, timestamp -----
kcat -b "$BOOTSTRAP" -C -t touchpoints -e -q -f '%p\t%o\t%T\t%k\n' >"$WORK/tp.meta" 2>/dev/null
python3 - "$WORK/events.jsonl" "$WORK/tp.meta" >"$WORK/ordered.jsonl" <<'PY'
# Each customer's events keep their file order in their partition; replay merges
# the partitions by (message timestamp, partition): heapq.merge does the same
# (each input sorted by offset, the least head first).
import heapq, json, sys
from collections import defaultdict, deque
by_key = defaultdict(deque)
for line in open(sys.argv[1]):
    by_key[json.loads(line)["customer_id"]].append(line)
parts = defaultdict(list)
for l in open(sys.argv[2]):
    p, o, ts, k = l.rstrip("\n").split("\t")
    parts[int(p)].append((int(o), int(ts), k))
streams = []
for p, msgs in parts.items():
    msgs.sort()
    streams.append([(ts, p, by_key[k].popleft()) for o, ts, k in msgs])
assert not any(by_key.values()), "every produced event is on the topic"
for ts, p, line in heapq.merge(*streams):
    sys.stdout.write(line)
PY
[ "$(wc -l <"$WORK/ordered.jsonl")" -eq "$EVENTS" ] || fail "ordered stream: $(wc -l <"$WORK/ordered.jsonl") lines"
"$FIDELIO" simulate --profiles "$WORK/sim.profiles" "$WORK/ordered.jsonl" >/dev/null 2>"$WORK/sim.err" \
    || fail "simulate: $(tail -3 "$WORK/sim.err")"
step "replay order computed from kcat's view of the topic; simulate done"

# --- rebuild: byte-identical to simulate ---------------------------------------------------
t0=$(date +%s.%N)
replay --from beginning --namespace rebuild --report "$WORK/rebuild.json"
t_replay=$(echo "$(date +%s.%N) - $t0" | bc)
[ "$REPLAY_RC" -eq 0 ] || fail "replay rebuild exited $REPLAY_RC: $(tail -5 "$WORK/replay.err")"
step "$(head -1 "$WORK/replay.out")"
grep -q "^# replay into namespace rebuild: $EVENTS events read" "$WORK/replay.out" || fail "report: $(head -1 "$WORK/replay.out")"
# in the grouped order (the default: windows handed out customer by customer), as the tail replay below
grep -q "; grouped order: [1-9][0-9]* window(s)" "$WORK/replay.out" || fail "rebuild not in the grouped order: $(head -1 "$WORK/replay.out")"
step "replay rebuild: ${t_replay} s, live run: ${t_run} s (replay/run time ratio $(echo "scale=2; $t_replay / $t_run" | bc))"
profiles rebuild >"$WORK/rebuild.profiles"
[ "$(wc -l <"$WORK/rebuild.profiles")" -ge $((CUSTOMERS * 8 / 10)) ] || fail "rebuild has $(wc -l <"$WORK/rebuild.profiles") profiles"
cmp -s "$WORK/rebuild.profiles" "$WORK/sim.profiles" \
    || fail "rebuild differs from simulate: $(diff "$WORK/rebuild.profiles" "$WORK/sim.profiles" | head -4)"
pass "replay --from beginning --namespace rebuild: $(wc -l <"$WORK/rebuild.profiles") profiles byte-identical to simulate over the same $EVENTS events in replay order"
python3 - "$WORK/rebuild.json" "$EVENTS" <<'PY' || fail "--report JSON"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["replay"]["events"] == int(sys.argv[2]), j["replay"]
assert j["replay"]["credits"] > 0, j["replay"]
assert j["report"], j
PY
pass "--report FILE: JSON with the replay's counts ($(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['replay']; print(r['touchpoints'], 'touchpoints,', r['credits'], 'credits')" "$WORK/rebuild.json")) and the namespace's report"

# --- equal to live but for the referrers whose credits interleave ------------------------------
profiles fidelio >"$WORK/live.profiles"
python3 - "$WORK/live.profiles" "$WORK/rebuild.profiles" "$WORK/events.jsonl" <<'PY' || fail "rebuild vs live"
import json, sys
a = {json.loads(l)["customer_id"]: l for l in open(sys.argv[1])}
b = {json.loads(l)["customer_id"]: l for l in open(sys.argv[2])}
assert set(a) == set(b), (len(a), len(b))
referrers = set()
for l in open(sys.argv[3]):
    e = json.loads(l)
    r = (e.get("payload") or {}).get("referred_by") if e["type"] == "SIGNUP" else None
    if r:
        referrers.add(r)
differ = {c for c in a if a[c] != b[c]}
bad = differ - referrers
assert not bad, f"{len(bad)} customers with no referral credit differ: {sorted(bad)[:5]}"
print(f"{len(differ)} of {len(a)} customers differ from live, all of them referrers ({len(referrers)} referrers): "
      f"their credits came through the credits topic live and interleaved with their own events")
PY
pass "rebuild equals live for every customer that received no referral credit"

# --- what-if: welcome 150 --------------------------------------------------------------------
sed 's/^    award: 100$/    award: 150/' "$SOURCE_DIR/config/rules.yaml" >"$WORK/rules150.yaml"
grep -A4 -- '- id: welcome' "$WORK/rules150.yaml" | grep -q 'award: 150' || fail "the what-if program is not welcome 150"
replay --namespace whatif -r "$WORK/rules150.yaml"
[ "$REPLAY_RC" -eq 0 ] || fail "replay whatif exited $REPLAY_RC: $(tail -5 "$WORK/replay.err")"
grep -q "outputs (counted, not produced)" "$WORK/replay.out" || fail "what-if outputs: $(head -1 "$WORK/replay.out")"
step "replay whatif: $(head -1 "$WORK/replay.out")"
"$FIDELIO" simulate -r "$WORK/rules150.yaml" --profiles "$WORK/sim150.profiles" "$WORK/ordered.jsonl" >/dev/null 2>&1 \
    || fail "simulate 150"
profiles whatif >"$WORK/whatif.profiles"
cmp -s "$WORK/whatif.profiles" "$WORK/sim150.profiles" || fail "whatif differs from simulate -r rules150"
set +e
# shellcheck disable=SC2046
"$FIDELIO" diff $(fid_opts) --set redis.url="$RU_RO" --namespace rebuild --namespace whatif --json \
    -r "$SOURCE_DIR/config/rules.yaml" -r "$WORK/rules150.yaml" >"$WORK/diff.out" 2>"$WORK/diff.err"
drc=$?
set -e
[ "$drc" -eq 1 ] || fail "diff rebuild whatif: exit $drc: $(cat "$WORK/diff.err")"
python3 - "$WORK/sim.profiles" "$WORK/sim150.profiles" "$WORK/diff.out" "$SOURCE_DIR/tests" <<'PY' || fail "diff rebuild whatif is not the expected one"
import sys
sys.path.insert(0, sys.argv[4])
from expected_diff import profiles, expected, check
a, b = profiles(sys.argv[1]), profiles(sys.argv[2])
want = expected(a, b)
check(want, sys.argv[3])
signed = {c for c in a if a[c]["counts"].get("SIGNUP", 0) >= 1}
assert set(want) <= signed and len(want) > 0.9 * len(signed), (len(want), len(signed))
print(f"{len(want)} customers differ ({len(signed)} signed up), fields as simulate says")
PY
pass "what-if (welcome 150): equal to simulate with that program; diff rebuild whatif lists exactly the expected customers and fields"

# --- refusals ----------------------------------------------------------------------------------
replay --namespace fidelio
[ "$REPLAY_RC" -eq 2 ] && grep -q "is the live one" "$WORK/replay.err" || fail "live namespace: exit $REPLAY_RC: $(cat "$WORK/replay.err")"
replay --namespace rebuild
[ "$REPLAY_RC" -eq 2 ] && grep -q "namespace 'rebuild:' is not empty ([0-9]* keys): --resume" "$WORK/replay.err" \
    || fail "non-empty target: exit $REPLAY_RC: $(cat "$WORK/replay.err")"
pass "refused with exit 2: the live namespace, a non-empty target"

# --- kill -9 and --resume ------------------------------------------------------------------------
# on the last ~40% of the topic (--from PARTITION:OFFSET,...: lean under ASan), against an
# uninterrupted replay of the same range
from_at() { # fraction (percent) -> PARTITION:OFFSET,... at that share of each partition
    grep '^touchpoints ' "$WORK/topics.before" | awk -v f="$1" '{printf "%s%s:%d", sep, $2, $3 * f / 100; sep=","}'
}
TAIL=$(from_at 60)
TAIL_EVENTS=$(grep '^touchpoints ' "$WORK/topics.before" | awk '{ s += $3 - int($3 * 60 / 100) } END { print s }')
replay --namespace tail --from "$TAIL"
[ "$REPLAY_RC" -eq 0 ] || fail "replay tail exited $REPLAY_RC: $(tail -5 "$WORK/replay.err")"
grep -q "^# replay into namespace tail: $TAIL_EVENTS events read" "$WORK/replay.out" || fail "tail: $(head -1 "$WORK/replay.out")"
step "replay tail: $(head -1 "$WORK/replay.out")"
# small batches: the kill falls mid-way
# shellcheck disable=SC2046
"$FIDELIO" replay $(fid_opts) --set redis.url="$RU" --set pipeline.batch_size=200 --namespace killed \
    --from "$TAIL" >"$WORK/killed.out" 2>"$WORK/killed.err" &
KPID=$!
PIDS+=("$KPID")
kept() { # events the killed replay kept as done
    "${RC[@]}" get killed:replay | awk -v from="$TAIL" 'BEGIN { n = split(from, a, ","); for (i = 1; i <= n; i++) { split(a[i], b, ":"); s -= b[2] } }
        $1 == "p" { s += $3 } END { print s + 0 }'
}
for _ in $(seq 600); do
    [ "$(kept)" -ge $((TAIL_EVENTS / 4)) ] && break
    kill -0 "$KPID" 2>/dev/null || break
    sleep 0.1
done
kill -KILL "$KPID" 2>/dev/null || fail "the replay to kill had already exited: $(tail -3 "$WORK/killed.err")"
wait "$KPID" 2>/dev/null || true
at_kill=$(kept)
[ "$at_kill" -lt "$TAIL_EVENTS" ] && [ "$at_kill" -gt 0 ] || fail "killed at $at_kill of $TAIL_EVENTS events"
replay --namespace killed --resume
[ "$REPLAY_RC" -eq 0 ] || fail "--resume exited $REPLAY_RC: $(tail -5 "$WORK/replay.err")"
grep -q "found applied already" "$WORK/replay.out" || fail "resume report: $(head -1 "$WORK/replay.out")"
step "killed at $at_kill, resumed: $(head -1 "$WORK/replay.out")"
profiles killed >"$WORK/killed.profiles"
profiles tail >"$WORK/tail.profiles"
cmp -s "$WORK/killed.profiles" "$WORK/tail.profiles" || fail "killed+resumed differs from the uninterrupted replay: $(diff "$WORK/killed.profiles" "$WORK/tail.profiles" | head -4)"
agg() { "${RC[@]}" hgetall "$1:aggregates" | paste - - | sort; }
[ "$(agg killed)" = "$(agg tail)" ] || fail "report counters differ: $(diff <(agg killed) <(agg tail) | head -4)"
grep -o '"customer_id":"[^"]*"' "$WORK/tail.profiles" | cut -d'"' -f4 >"$WORK/tail.customers"
n=$(wc -l <"$WORK/tail.customers")
ledgers() { sed "s/.*/LRANGE $1:{&}:l 0 -1/" "$WORK/tail.customers" | "${RC[@]}"; } # one redis-cli for all
ledgers killed >"$WORK/killed.ledgers"
ledgers tail >"$WORK/tail.ledgers"
[ -s "$WORK/tail.ledgers" ] || fail "no ledgers read"
cmp -s "$WORK/killed.ledgers" "$WORK/tail.ledgers" || fail "ledgers differ: $(diff "$WORK/killed.ledgers" "$WORK/tail.ledgers" | head -3)"
pass "replay of $TAIL_EVENTS events killed (SIGKILL) after $at_kill and resumed: profiles, report counters and the $n ledgers equal an uninterrupted replay's"
step "compared"

replay --namespace killed --resume -r "$WORK/rules150.yaml"
[ "$REPLAY_RC" -eq 2 ] && grep -q "was replayed with rule program .*give the same -r" "$WORK/replay.err" \
    || fail "--resume with another program: exit $REPLAY_RC: $(cat "$WORK/replay.err")"
pass "--resume with another rule program is refused (exit 2)"

# from the end of every partition: nothing to replay, only the wipe
ends=$(grep '^touchpoints ' "$WORK/topics.before" | awk '{printf "%s%s:%s", sep, $2, $3; sep=","}')
replay --namespace killed --wipe --from "$ends"
[ "$REPLAY_RC" -eq 0 ] && grep -q "deleting the [0-9]* keys of namespace 'killed:'" "$WORK/replay.err" \
    || fail "--wipe: exit $REPLAY_RC: $(cat "$WORK/replay.err")"
[ "$("${RC[@]}" --scan --pattern 'killed:{*' | wc -l)" -eq 0 ] || fail "--wipe left customer keys"
pass "--wipe prints the count of keys it deletes and deletes them ($(grep -o 'deleting the [0-9]* keys' "$WORK/replay.err"))"

# --- --parallel: worker processes, credits through the namespace's credits topic ------------------
python3 - "$WORK/events.jsonl" >"$WORK/referrers" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    r = (e.get("payload") or {}).get("referred_by") if e["type"] == "SIGNUP" else None
    if r:
        print(r)
PY
sort -u -o "$WORK/referrers" "$WORK/referrers"
# only_referrers A B WHAT: profiles in A and B are the same customers, every difference is a referrer's
only_referrers() {
    python3 - "$1" "$2" "$WORK/referrers" "$3" <<'PY'
import json, sys
a = {json.loads(l)["customer_id"]: l for l in open(sys.argv[1])}
b = {json.loads(l)["customer_id"]: l for l in open(sys.argv[2])}
refs = set(open(sys.argv[3]).read().split())
assert set(a) == set(b), (len(a), len(b))
differ = {c for c in a if a[c] != b[c]}
bad = differ - refs
assert not bad, f"{len(bad)} customers that are not referrers differ: {sorted(bad)[:5]}"
print(f"{sys.argv[4]}: {len(a) - len(differ)} of {len(a)} profiles identical; {len(differ)} differ, all referrers "
      f"({len(refs & set(a))} referrers)")
PY
}
replay --namespace par --parallel 3 --report "$WORK/par.json"
[ "$REPLAY_RC" -eq 0 ] || fail "replay --parallel 3 exited $REPLAY_RC: $(tail -5 "$WORK/replay.err")"
step "$(head -1 "$WORK/replay.out")"
grep -q "^# replay into namespace par: $EVENTS events read.*; 3 worker processes, [0-9]* credits read back through fidelio-credits-par$" \
    "$WORK/replay.out" || fail "report: $(head -1 "$WORK/replay.out")"
credits=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['replay']['credits'])" "$WORK/rebuild.json")
python3 - "$WORK/par.json" "$EVENTS" "$credits" <<'PY' || fail "--parallel --report JSON"
import json, sys
r = json.load(open(sys.argv[1]))["replay"]
events, credits = int(sys.argv[2]), int(sys.argv[3])
assert r["workers"] == 3 and r["events"] == events and r["touchpoints"] == events, r
assert r["credits"] == credits and r["credits_read"] == credits and r["duplicates"] == 0, (r, credits)
PY
[ "$(count fidelio-credits-par)" -eq "$credits" ] || fail "fidelio-credits-par holds $(count fidelio-credits-par) credits, want $credits"
pass "replay --parallel 3: $EVENTS touchpoints and the rebuild's $credits credits applied once each, every credit through fidelio-credits-par"
profiles par >"$WORK/par.profiles"
only_referrers "$WORK/rebuild.profiles" "$WORK/par.profiles" "--parallel 3 against the single-process rebuild" \
    || fail "--parallel against the rebuild"
set +e
# as the default user: the diff reads the live namespace and a replay namespace
# shellcheck disable=SC2046
"$FIDELIO" diff $(fid_opts) --set redis.url="unix://$REDIS_SOCK" --namespace fidelio --namespace par --json \
    >"$WORK/diffpar.out" 2>"$WORK/diffpar.err"
drc=$?
set -e
[ "$drc" -le 1 ] || fail "diff fidelio par: exit $drc: $(cat "$WORK/diffpar.err")"
python3 - "$WORK/diffpar.out" "$WORK/referrers" "$drc" <<'PY' || fail "diff fidelio par lists customers that are not referrers"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
refs = set(open(sys.argv[2]).read().split())
listed = [l["customer_id"] for l in lines if "customer_id" in l]
summary = lines[-1]["summary"]
assert summary["differing"] == len(listed) and (len(listed) > 0) == (sys.argv[3] == "1"), summary
assert summary["only_in_a"] == 0 and summary["only_in_b"] == 0, summary
bad = set(listed) - refs
assert not bad, f"{len(bad)} customers that are not referrers differ from live: {sorted(bad)[:5]}"
print(f"fidelio diff fidelio par: {len(listed)} of {summary['customers']} customers differ, all referrers")
PY
pass "--parallel 3 equals the rebuild and live (fidelio diff) for every customer that is not a referrer"

# a worker killed with SIGKILL: the others stop, --resume --parallel 3 finishes
# shellcheck disable=SC2046
"$FIDELIO" replay $(fid_opts) --set redis.url="$RU" --set pipeline.batch_size=200 --namespace pkilled --parallel 3 \
    --from "$TAIL" >"$WORK/pkilled.out" 2>"$WORK/pkilled.err" &
KPID=$!
PIDS+=("$KPID")
pkept() { # touchpoints the workers kept as done
    for k in 0 1 2; do "${RC[@]}" get "pkilled:replay.$k"; done | awk -v from="$TAIL" '
        BEGIN { n = split(from, a, ","); for (i = 1; i <= n; i++) { split(a[i], b, ":"); start[b[1]] = b[2] } }
        $1 == "p" { s += $3 - start[$2] } END { print s + 0 }'
}
for _ in $(seq 600); do
    [ "$(pkept)" -ge $((TAIL_EVENTS / 4)) ] && break
    kill -0 "$KPID" 2>/dev/null || break
    sleep 0.1
done
victim=$(pgrep -P "$KPID" | head -1)
[ -n "$victim" ] || fail "no worker process of the --parallel replay: $(tail -3 "$WORK/pkilled.err")"
kill -KILL "$victim"
set +e
wait "$KPID"
krc=$?
set -e
at_kill=$(pkept)
[ "$krc" -eq 1 ] && grep -q "worker [0-2] of 3 was killed by signal 9: the other workers were stopped" "$WORK/pkilled.err" \
    || fail "--parallel with a killed worker: exit $krc: $(tail -3 "$WORK/pkilled.err")"
[ "$at_kill" -lt "$TAIL_EVENTS" ] && [ "$at_kill" -gt 0 ] || fail "killed at $at_kill of $TAIL_EVENTS events"
replay --namespace pkilled --resume
[ "$REPLAY_RC" -eq 2 ] && grep -q "replayed with --parallel 3: give the same --parallel" "$WORK/replay.err" \
    || fail "--resume without --parallel: exit $REPLAY_RC: $(cat "$WORK/replay.err")"
# resumed on a terminal (script(1)): the parent shows the workers' progress
# shellcheck disable=SC2046
script -qefc "$FIDELIO replay $(fid_opts) --set redis.url=$RU --namespace pkilled --resume --parallel 3" /dev/null \
    >"$WORK/replay.out" 2>&1 </dev/null || fail "--resume --parallel 3: $(tail -5 "$WORK/replay.out")"
# (a file, not `tr | grep -q`: under pipefail, grep -q leaving at its match made tr's next write die of
# SIGPIPE and the check fail though the line was there, about one run in five)
tr '\r' '\n' <"$WORK/replay.out" >"$WORK/replay.lines"
grep -qE "^replay: [0-9]+/$TAIL_EVENTS events, [0-9]+ events/s, ETA [0-9-]+( s)? \| p0 [0-9]+/[0-9]+ p1 [0-9]+/[0-9]+ .* p7 [0-9]+/[0-9]+" \
    "$WORK/replay.lines" || fail "--parallel: no progress line on the terminal: $(grep '^replay:' "$WORK/replay.lines" | head -2)"
step "worker killed at $at_kill, resumed: $(grep '^# replay into' "$WORK/replay.out")"
profiles pkilled >"$WORK/pkilled.profiles"
only_referrers "$WORK/tail.profiles" "$WORK/pkilled.profiles" "--parallel 3 killed and resumed against the uninterrupted single-process replay" \
    || fail "killed+resumed --parallel against the uninterrupted replay"
counts() { agg "$1" | grep -E '^(customers|events\|[A-Z_]*|rule\|referral-referrer\|EARN\|(n|points))	'; }
[ "$(counts pkilled | wc -l)" -ge 9 ] || fail "event counts: $(counts pkilled)"
[ "$(counts pkilled)" = "$(counts tail)" ] || fail "event or credit counts differ: $(diff <(counts pkilled) <(counts tail))"
grep -vxFf "$WORK/referrers" "$WORK/tail.customers" >"$WORK/tail.nonref"
lnr() { sed "s/.*/LRANGE $1:{&}:l 0 -1/" "$WORK/tail.nonref" | "${RC[@]}"; }
[ "$(lnr pkilled | md5sum)" = "$(lnr tail | md5sum)" ] || fail "ledgers of non-referrers differ after the resume"
pass "--parallel 3 with a worker killed (SIGKILL) after $at_kill of $TAIL_EVENTS: the others stop (exit 1, says why); --resume --parallel 3: every event and credit counted once as uninterrupted, profiles and the $(wc -l <"$WORK/tail.nonref") ledgers of non-referrers equal"

# --- --follow -------------------------------------------------------------------------------------
# shellcheck disable=SC2046
# from the last ~5% of each partition: it catches up, then follows
"$FIDELIO" replay $(fid_opts) --set redis.url="$RU" --namespace follow --follow --from "$(from_at 95)" \
    >"$WORK/follow.out" 2>"$WORK/follow.err" &
FPID=$!
PIDS+=("$FPID")
for _ in $(seq 1200); do
    [ "$("${RC[@]}" get follow:replay | awk '$1 == "p" { s += $3 } END { print s + 0 }')" -ge "$EVENTS" ] && break
    kill -0 "$FPID" 2>/dev/null || fail "replay --follow exited: $(tail -3 "$WORK/follow.err")"
    sleep 0.1
done
printf '{"event_id":"late-1","customer_id":"late-cust","type":"SIGNUP","channel":"web","occurred_at":"%s"}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$WORK/late.jsonl"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$WORK/late.jsonl" || fail "produce late"
for _ in $(seq 300); do
    "${RC[@]}" exists 'follow:{late-cust}:p' | grep -q 1 && break
    sleep 0.1
done
"${RC[@]}" exists 'follow:{late-cust}:p' | grep -q 1 || fail "--follow did not pick up the late event: $(tail -3 "$WORK/follow.err")"
step "replay --follow caught up and applied the late event"
kill -TERM "$FPID"
wait "$FPID" || fail "replay --follow exited $? on SIGTERM"
pass "--follow caught up, then applied an event produced afterwards; SIGTERM: exit 0"

# --- nothing of the live namespace, topics or group changed -----------------------------------------
live_keys >"$WORK/live.after"
topic_ends | grep -v '^touchpoints ' >"$WORK/topics.after"
grep -v '^touchpoints ' "$WORK/topics.before" >"$WORK/topics.before.out"
group_offsets >"$WORK/group.after"
cmp -s "$WORK/live.before" "$WORK/live.after" || fail "live keys changed: $(cat "$WORK/live.before" "$WORK/live.after")"
cmp -s "$WORK/topics.before.out" "$WORK/topics.after" || fail "live topics changed: $(diff "$WORK/topics.before.out" "$WORK/topics.after")"
cmp -s "$WORK/group.before" "$WORK/group.after" || fail "live group offsets changed: $(diff "$WORK/group.before" "$WORK/group.after")"
pass "after every replay: the $(tail -1 "$WORK/live.after") live keys (DUMP), the live output topics' end offsets and the live group's committed offsets are unchanged"
done_ok
