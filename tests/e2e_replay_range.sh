#!/usr/bin/env bash
# `fidelio replay` (issue 11): ranges, --outputs topics and --into-live, lean
# (1,500 events on one partition). A generated stream is produced in three
# groups A, B, C with message timestamps one hour apart (T0, T1 = T0 + 1 h,
# T2 = T0 + 2 h; A's last message at T1 - 1 ms, B's first at T1, B's last at
# T2 - 1 ms, C's first at T2), copied by an independent client (confluent-kafka,
# explicit timestamp=) from a staging topic `fidelio produce` filled.
#  1. (real broker only: the mock cluster ignores producer timestamps)
#     --from ISO(T1) --to EPOCH_MS(T2) and --from EPOCH_MS(T1) --to ISO(T2)
#     replay exactly group B, --to ISO(T1) exactly group A: the events read
#     are counted and the profiles equal `simulate` over exactly those events;
#     --from 0:OFFSET (both brokers) exactly group C
#  2. --outputs topics: the output ids on <topic>-NAME equal simulate's; the
#     live topics' end offsets do not move (on the mock: the whole stream)
#  3. the live namespace: refused without --into-live (exit 2, the message
#     says so); with --into-live into the empty live namespace (--outputs
#     topics): profiles and the ids on the live topics equal simulate's over
#     the whole stream; again: refused (not empty, exit 2); --into-live --wipe:
#     the same profiles again
#     --into-live killed with SIGKILL mid-way and --into-live --resume'd: the
#     profiles, ledgers and report counters of the uninterrupted one
#  4. in-process credits beyond two per message: a program with five rules
#     paying the referrer over a burst of 600 referred first purchases (3,000
#     credits, five per message in batches of 100): byte-identical to simulate
#     (the room is one credit per message and referrer rule; it was two per
#     message, and the replay stopped)
#  5. --parallel: more workers than partitions is refused (exit 2); on the real
#     broker, a namespace whose credits topic was not created is an error
#     naming it (exit 1), nothing created
#  6. the progress line: on a terminal (script(1)) stderr shows done/total
#     events, events/s, the ETA and done/total per partition; not otherwise
#  7. (real broker only: the mock cannot delete records) the first 100 records
#     deleted (kafka-delete-records): --from 0:40 and --from beginning say on
#     stderr how many offsets are gone (60, 100), the --report JSON counts them,
#     and the replay reads the 1,400 that are left
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli kcat script
PY=/usr/bin/python3 # the Debian python3 with python3-confluent-kafka
$PY -c 'import confluent_kafka' 2>/dev/null || { echo "SKIP: python3-confluent-kafka not installed"; exit 77; }
step() { echo "[${SECONDS}s] $*"; }

NA=500 NB=500 NC=500
EVENTS=$((NA + NB + NC))
# the staging topic and the namespace's topics: created first (a real broker creates none itself)
TOPICS=(staging:1 rewards-rangeb:1 stage-changes-rangeb:1 touchpoints-dlq-rangeb:1 fidelio-credits-rangeb:1
    fidelio-credits-rangep:1 burst:1)
if [ "$BROKER" = kafka ]; then
    start_broker --partitions 1
    kafka_topics "$KAFKA_DIR" "${TOPICS[@]}" || fail "could not create the staging and namespace topics"
else
    start_broker --partitions 1 "${TOPICS[@]/#/--topic=}"
fi
start_redis
RC=(redis-cli -s "$REDIS_SOCK")
read -r -a acl <<<"$(acl_line replay fidelio-replay e2e-replay-pw "rangea: rangeb: rangeb2: rangec: fidelio: rangep: nocredits: burst: tty: notty: gone1: gone2:" | sed 's/^user //')"
"${RC[@]}" ACL SETUSER "${acl[@]}" >/dev/null || fail "ACL SETUSER fidelio-replay"
RU="unix://fidelio-replay:e2e-replay-pw@$REDIS_SOCK"

# message timestamps: whole seconds (ISO-8601 without a fraction), in the past
# (retention), the events' own times an hour before the first
T0=$(( ($(date +%s) - 3 * 3600) * 1000 ))
T1=$((T0 + 3600000))
T2=$((T1 + 3600000))
iso() { date -u -d "@$(($1 / 1000))" +%Y-%m-%dT%H:%M:%SZ; }
"$FIDELIO" gen -q --customers 300 --events "$EVENTS" --seed 5 --referrals 0.3 --days 10 --end $((T0 - 3600000)) \
    -o "$WORK/events.jsonl" || fail "gen"
head -n "$NA" "$WORK/events.jsonl" >"$WORK/a.jsonl"
sed -n "$((NA + 1)),$((NA + NB))p" "$WORK/events.jsonl" >"$WORK/b.jsonl"
tail -n "$NC" "$WORK/events.jsonl" >"$WORK/c.jsonl"
for g in a b c events; do
    "$FIDELIO" simulate --profiles "$WORK/$g.sim" "$WORK/$g.jsonl" >"$WORK/$g.out" 2>"$WORK/$g.err" || fail "simulate $g"
    ids_of "$WORK/$g.out" >"$WORK/$g.ids"
done
[ "$(wc -l <"$WORK/b.ids")" -gt 0 ] && [ "$(wc -l <"$WORK/events.ids")" -gt 0 ] || fail "simulate emits no outputs"

# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t staging --schema touchpoint "$WORK/events.jsonl" || fail "produce to staging"
$PY - "$BOOTSTRAP" "$EVENTS" "$NA" "$NB" "$T1" "$T2" <<'PYEOF' || fail "copy with timestamps"
import sys
from confluent_kafka import Consumer, Producer, TopicPartition
bs, n, na, nb, t1, t2 = sys.argv[1], *map(int, sys.argv[2:])
c = Consumer({"bootstrap.servers": bs, "group.id": "e2e-copy", "enable.auto.commit": False})
c.assign([TopicPartition("staging", 0, 0)])
msgs = []
while len(msgs) < n:
    m = c.poll(30)
    if m is None:
        sys.exit(f"staging: only {len(msgs)} of {n} messages")
    if m.error():
        continue
    msgs.append((m.key(), m.value()))
c.close()
ts = [t1 - 1 - 10 * (na - 1 - i) for i in range(na)] + [t1 + 10 * i for i in range(nb - 1)] + [t2 - 1] \
    + [t2 + 10 * i for i in range(n - na - nb)]
p = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "acks": "all"})
for (k, v), t in zip(msgs, ts):
    p.produce("touchpoints", value=v, key=k, partition=0, timestamp=t)
assert p.flush(60) == 0, "undelivered"
PYEOF
[ "$(count touchpoints)" -eq "$EVENTS" ] || fail "touchpoints holds $(count touchpoints) messages"
step "$EVENTS events on touchpoints, message timestamps A < $(iso "$T1") <= B < $(iso "$T2") <= C"

replay() { # args...: fidelio replay as the replay user; exit status in REPLAY_RC
    set +e
    # shellcheck disable=SC2046
    "$FIDELIO" replay $(fid_opts) --set redis.url="$RU" "$@" >"$WORK/replay.out" 2>"$WORK/replay.err"
    REPLAY_RC=$?
    set -e
}
profiles() { # namespace -> profile --all
    # shellcheck disable=SC2046
    "$FIDELIO" profile $(fid_opts) --set redis.url="$RU" --set redis.key_prefix="$1:" --all
}
read_events() { sed -n 's/^# replay into namespace [^:]*: \([0-9]*\) events read.*/\1/p' "$WORK/replay.out"; }
same_as() { # namespace expected.sim what
    profiles "$1" >"$WORK/$1.profiles" || fail "profile --all of $1"
    cmp -s "$WORK/$1.profiles" "$2" || fail "$3: profiles differ from simulate: $(diff "$WORK/$1.profiles" "$2" | head -4)"
}
ids_on() { # topic suffix -> the output ids there
    { "$FIDELIO" consume -b "$BOOTSTRAP" -t "rewards$1" --schema reward -e
      "$FIDELIO" consume -b "$BOOTSTRAP" -t "stage-changes$1" --schema stage-change -e; } 2>/dev/null \
        | { grep -o '"\(reward\|change\)_id":"[^"]*"' || true; } | sort -u
}
live_counts() { for t in rewards stage-changes touchpoints-dlq fidelio-credits; do echo "$t $(count "$t")"; done; }
live_counts >"$WORK/live.before"

# --- 1 + 2: a time range, its outputs on the namespace's topics -------------------------------
if [ "$BROKER" = kafka ]; then
    replay --from "$(iso "$T1")" --to "$T2" --namespace rangeb --outputs topics
    exp=b n=$NB what="--from $(iso "$T1") --to $T2"
else
    replay --namespace rangeb --outputs topics
    exp=events n=$EVENTS what="the whole stream (the mock ignores timestamps)"
fi
[ "$REPLAY_RC" -eq 0 ] || fail "replay rangeb exited $REPLAY_RC: $(tail -3 "$WORK/replay.err")"
[ "$(read_events)" = "$n" ] || fail "$what: $(read_events) events read, want $n"
same_as rangeb "$WORK/$exp.sim" "$what"
pass "replay $what: $n events read, $(wc -l <"$WORK/rangeb.profiles") profiles equal simulate's over exactly those events"
live_counts >"$WORK/live.after"
cmp -s "$WORK/live.before" "$WORK/live.after" || fail "the live topics moved: $(diff "$WORK/live.before" "$WORK/live.after")"
ids_on -rangeb >"$WORK/rangeb.ids"
[ -s "$WORK/rangeb.ids" ] && cmp -s "$WORK/rangeb.ids" "$WORK/$exp.ids" \
    || fail "--outputs topics: ids on <topic>-rangeb: $(comm -23 "$WORK/$exp.ids" "$WORK/rangeb.ids" | wc -l) missing, $(comm -13 "$WORK/$exp.ids" "$WORK/rangeb.ids" | wc -l) extra"
pass "--outputs topics: $(wc -l <"$WORK/rangeb.ids") output ids on rewards-rangeb/stage-changes-rangeb equal simulate's; live topics unchanged"

if [ "$BROKER" = kafka ]; then
    replay --from "$T1" --to "$(iso "$T2")" --namespace rangeb2
    [ "$REPLAY_RC" -eq 0 ] || fail "replay rangeb2 exited $REPLAY_RC: $(tail -3 "$WORK/replay.err")"
    [ "$(read_events)" = "$NB" ] || fail "--from $T1 --to $(iso "$T2"): $(read_events) events read, want $NB"
    same_as rangeb2 "$WORK/b.sim" "--from $T1 --to $(iso "$T2")"
    pass "replay --from $T1 --to $(iso "$T2"): exactly group B ($NB events)"
    replay --to "$(iso "$T1")" --namespace rangea
    [ "$REPLAY_RC" -eq 0 ] || fail "replay rangea exited $REPLAY_RC: $(tail -3 "$WORK/replay.err")"
    [ "$(read_events)" = "$NA" ] || fail "--to $(iso "$T1"): $(read_events) events read, want $NA"
    same_as rangea "$WORK/a.sim" "--to $(iso "$T1")"
    pass "replay --to $(iso "$T1"): exactly group A ($NA events)"
fi

# an offset: PARTITION:OFFSET (group C: on either broker)
replay --from "0:$((NA + NB))" --namespace rangec
[ "$REPLAY_RC" -eq 0 ] || fail "replay rangec exited $REPLAY_RC: $(tail -3 "$WORK/replay.err")"
[ "$(read_events)" = "$NC" ] || fail "--from 0:$((NA + NB)): $(read_events) events read, want $NC"
same_as rangec "$WORK/c.sim" "--from 0:$((NA + NB))"
pass "replay --from 0:$((NA + NB)): exactly group C ($NC events)"

# --- 3: the live namespace -------------------------------------------------------------------
replay --namespace fidelio
[ "$REPLAY_RC" -eq 2 ] || fail "replay into the live namespace without --into-live exited $REPLAY_RC"
grep -q "is the live one.*refused without --into-live" "$WORK/replay.err" || fail "message: $(cat "$WORK/replay.err")"
[ -z "$("${RC[@]}" --scan --pattern 'fidelio:*' | head -1)" ] || fail "the refused replay wrote live keys"
pass "the live namespace without --into-live: exit 2, '$(head -1 "$WORK/replay.err")'"

replay --namespace fidelio --into-live --outputs topics
[ "$REPLAY_RC" -eq 0 ] || fail "replay --into-live exited $REPLAY_RC: $(tail -3 "$WORK/replay.err")"
[ "$(read_events)" = "$EVENTS" ] || fail "--into-live: $(read_events) events read, want $EVENTS"
same_as fidelio "$WORK/events.sim" "--into-live"
ids_on "" >"$WORK/live.ids"
cmp -s "$WORK/live.ids" "$WORK/events.ids" || fail "--into-live --outputs topics: the ids on the live topics differ from simulate's"
pass "--into-live --outputs topics: live profiles and $(wc -l <"$WORK/live.ids") ids on the live topics equal simulate's"

replay --namespace fidelio --into-live
[ "$REPLAY_RC" -eq 2 ] && grep -q "is not empty" "$WORK/replay.err" \
    || fail "--into-live into the non-empty live namespace: exit $REPLAY_RC, $(cat "$WORK/replay.err")"
replay --namespace fidelio --into-live --wipe
[ "$REPLAY_RC" -eq 0 ] && grep -q "keys deleted" "$WORK/replay.err" \
    || fail "--into-live --wipe exited $REPLAY_RC: $(tail -3 "$WORK/replay.err")"
same_as fidelio "$WORK/events.sim" "--into-live --wipe"
pass "--into-live, non-empty: refused (exit 2) without --wipe; with --wipe the same profiles again"

# --into-live killed with SIGKILL, then --into-live --resume
agg() { "${RC[@]}" hgetall "$1:aggregates" | paste - - | sort; }
grep -o '"customer_id":"[^"]*"' "$WORK/fidelio.profiles" | cut -d'"' -f4 >"$WORK/customers"
ledgers() { sed "s/.*/LRANGE fidelio:{&}:l 0 -1/" "$WORK/customers" | "${RC[@]}"; }
agg fidelio >"$WORK/live.agg"
ledgers >"$WORK/live.ledgers"
[ -s "$WORK/live.agg" ] && [ -s "$WORK/live.ledgers" ] || fail "no report counters or ledgers in the live namespace"
# shellcheck disable=SC2046
"$FIDELIO" replay $(fid_opts) --set redis.url="$RU" --set pipeline.batch_size=5 --namespace fidelio --into-live --wipe \
    >"$WORK/killed.out" 2>"$WORK/killed.err" &
KPID=$!
PIDS+=("$KPID")
kept() { "${RC[@]}" get fidelio:replay | awk '$1 == "p" { s += $3 } END { print s + 0 }'; }
for _ in $(seq 3000); do # no sleep: the kill must fall mid-way through 1,500 events
    grep -q "keys deleted" "$WORK/killed.err" && [ "$(kept)" -ge 1 ] && break
    kill -0 "$KPID" 2>/dev/null || break
done
kill -KILL "$KPID" 2>/dev/null || fail "the --into-live replay to kill had already exited: $(tail -3 "$WORK/killed.err")"
wait "$KPID" 2>/dev/null || true
at_kill=$(kept)
[ "$at_kill" -gt 0 ] && [ "$at_kill" -lt "$EVENTS" ] || fail "--into-live killed at $at_kill of $EVENTS events"
replay --namespace fidelio --into-live --resume
[ "$REPLAY_RC" -eq 0 ] || fail "--into-live --resume exited $REPLAY_RC: $(tail -3 "$WORK/replay.err")"
same_as fidelio "$WORK/events.sim" "--into-live killed and resumed"
[ "$(agg fidelio)" = "$(cat "$WORK/live.agg")" ] || fail "report counters differ: $(diff <(agg fidelio) "$WORK/live.agg" | head -4)"
ledgers | cmp -s - "$WORK/live.ledgers" || fail "ledgers differ after --into-live --resume"
pass "--into-live killed (SIGKILL) after $at_kill of $EVENTS events, --into-live --resume: profiles, report counters and $(wc -l <"$WORK/customers") customers' ledgers equal the uninterrupted replay's"
# --- 4: a burst of credits ----------------------------------------------------------------
python3 - "$SOURCE_DIR/config/rules.yaml" >"$WORK/rules5.yaml" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"\n  - id: referral-referrer\n(?:    .*\n)+", text)
assert m, "no referral-referrer rule"
extra = "".join(m.group(0).replace("id: referral-referrer", f"id: referral-referrer-{n}") for n in (2, 3, 4, 5))
print(text[:m.end()] + extra + text[m.end():], end="")
PYEOF
python3 - >"$WORK/burst.jsonl" <<'PYEOF'
import json
t = 1790000000000
def ev(i, cust, typ, payload):
    return json.dumps({"event_id": f"burst-{i}", "customer_id": cust, "type": typ, "channel": "web",
                       "occurred_at": t + i * 1000, "payload": payload})
n = 0
for r in range(100):
    n += 1; print(ev(n, f"ref-{r}", "SIGNUP", {"referred_by": None}))
for i in range(600):
    n += 1; print(ev(n, f"inv-{i}", "SIGNUP", {"referred_by": f"ref-{i % 100}"}))
for i in range(600):
    n += 1; print(ev(n, f"inv-{i}", "PURCHASE", {"order_id": f"o-{i}", "amount_cents": 2000, "currency": "EUR",
                                                 "store_id": "s-1"}))
PYEOF
"$FIDELIO" simulate -r "$WORK/rules5.yaml" --profiles "$WORK/burst.sim" "$WORK/burst.jsonl" >"$WORK/burst.out" 2>"$WORK/burst.err" \
    || fail "simulate the burst: $(tail -3 "$WORK/burst.err")"
ncredits=$(grep -c '"rule_id":"referral-referrer' "$WORK/burst.out" || true)
[ "$ncredits" -eq 3000 ] || fail "simulate: $ncredits referral credits in the burst, want 3000"
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t burst --schema touchpoint "$WORK/burst.jsonl" || fail "produce the burst"
replay --namespace burst -r "$WORK/rules5.yaml" --set topics.touchpoints=burst --set pipeline.batch_size=100
[ "$REPLAY_RC" -eq 0 ] || fail "replay of the burst exited $REPLAY_RC: $(grep -v CONFWARN "$WORK/replay.err" | tail -3)"
grep -q "1300 touchpoints and 3000 credits applied" "$WORK/replay.out" || fail "burst: $(head -1 "$WORK/replay.out")"
same_as burst "$WORK/burst.sim" "the burst of credits"
pass "3,000 in-process credits of a 5-rule referral program over 1,300 events (batches of 100, five credits per message): byte-identical to simulate"

# --- 5: --parallel -------------------------------------------------------------------------
replay --namespace rangep --parallel 2
[ "$REPLAY_RC" -eq 2 ] && grep -q "parallel 2: touchpoints has 1 partitions, the most workers" "$WORK/replay.err" \
    || fail "--parallel 2 on one partition: exit $REPLAY_RC: $(cat "$WORK/replay.err")"
[ -z "$("${RC[@]}" --scan --pattern 'rangep:*' | head -1)" ] || fail "the refused --parallel replay wrote keys"
pass "--parallel 2 on a topic of one partition: refused (exit 2)"
if [ "$BROKER" = kafka ]; then
    replay --namespace nocredits --parallel 2
    [ "$REPLAY_RC" -eq 1 ] && grep -q "topic 'fidelio-credits-nocredits' (the namespace's credits topic.*create it first" \
        "$WORK/replay.err" || fail "--parallel without its credits topic: exit $REPLAY_RC: $(cat "$WORK/replay.err")"
    kcat -b "$BOOTSTRAP" -L 2>/dev/null | grep -q 'fidelio-credits-nocredits' && fail "the credits topic was created"
    pass "--parallel into a namespace whose credits topic is missing: exit 1, '$(grep -o "topic 'fidelio-credits-nocredits'[^;]*" "$WORK/replay.err")'"
fi
# --- 6: the progress line ----------------------------------------------------------------------
# script(1) gives the replay a terminal; its output is what the terminal got (stdout and stderr)
script -qefc "$FIDELIO replay $(fid_opts) --set redis.url=$RU --set pipeline.batch_size=100 --namespace tty --from 0:$((NA + NB))" \
    /dev/null >"$WORK/tty.out" 2>&1 </dev/null || fail "replay on a terminal: $(tail -3 "$WORK/tty.out")"
line=$(tr '\r' '\n' <"$WORK/tty.out" | { grep -oE "^replay: [0-9]+/$NC events, [0-9]+ events/s, ETA [0-9]+ s \| p0 [0-9]+/$NC" || true; } | head -1)
[ -n "$line" ] || fail "no progress line on the terminal: $(tr '\r' '\n' <"$WORK/tty.out" | grep '^replay:' | head -3)"
replay --namespace notty --from "0:$((NA + NB))" --set pipeline.batch_size=100
[ "$REPLAY_RC" -eq 0 ] || fail "replay notty exited $REPLAY_RC"
! grep -qE "replay: [0-9]+/[0-9]+ events|ETA" "$WORK/replay.err" "$WORK/replay.out" || fail "a progress line without a terminal"
pass "the progress line on a terminal ('$line'), none when stderr is not a terminal"

# --- 7: offsets deleted by retention --------------------------------------------------------------
if [ "$BROKER" = kafka ]; then
    echo '{"partitions": [{"topic": "touchpoints", "partition": 0, "offset": 100}], "version": 1}' >"$WORK/delete.json"
    kafka_tool "$KAFKA_DIR" org.apache.kafka.tools.DeleteRecordsCommand --offset-json-file "$WORK/delete.json" \
        >"$WORK/delete.out" 2>&1 || fail "delete-records: $(tail -3 "$WORK/delete.out")"
    [ "$(kcat -b "$BOOTSTRAP" -Q -t touchpoints:0:-2 2>/dev/null | awk '{print $NF}')" = 100 ] \
        || fail "the log start of touchpoints [0] is not 100 after delete-records: $(kcat -b "$BOOTSTRAP" -Q -t touchpoints:0:-2 2>&1)"
    replay --namespace gone1 --from 0:40 --report "$WORK/gone.json"
    [ "$REPLAY_RC" -eq 0 ] || fail "replay gone1 exited $REPLAY_RC: $(tail -3 "$WORK/replay.err")"
    grep -q "partition 0 of touchpoints: offsets 40 to 99 are gone (60 offsets deleted by retention" "$WORK/replay.err" \
        || fail "--from 0:40 below the log start: no warning: $(grep -v CONFWARN "$WORK/replay.err" | tail -3)"
    [ "$(read_events)" = $((EVENTS - 100)) ] || fail "--from 0:40: $(read_events) events read, want $((EVENTS - 100))"
    python3 - "$WORK/gone.json" <<'PYEOF' || fail "--report JSON: the offsets gone"
import json, sys
r = json.load(open(sys.argv[1]))["replay"]
assert r["gone"] == {"0": 60} and r["gone_total"] == 60, r
PYEOF
    grep -q "60 offsets of 1 partition(s) were gone" "$WORK/replay.out" || fail "report line: $(head -1 "$WORK/replay.out")"
    replay --namespace gone2
    [ "$REPLAY_RC" -eq 0 ] && grep -q "offsets 0 to 99 are gone (100 offsets" "$WORK/replay.err" \
        || fail "--from beginning after delete-records: exit $REPLAY_RC: $(grep -v CONFWARN "$WORK/replay.err" | tail -3)"
    [ "$(read_events)" = $((EVENTS - 100)) ] || fail "--from beginning: $(read_events) events read"
    pass "records deleted below offset 100: --from 0:40 and --from beginning warn '$(grep -o "offsets 0 to 99 are gone[^:]*" "$WORK/replay.err")', the report counts them, $((EVENTS - 100)) events read"
fi
step "done"
done_ok
