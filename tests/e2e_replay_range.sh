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
#  4. --parallel: more workers than partitions is refused (exit 2); on the real
#     broker, a namespace whose credits topic was not created is an error
#     naming it (exit 1), nothing created
source "$(dirname "$0")/lib.sh"
require redis-server redis-cli kcat
PY=/usr/bin/python3 # the Debian python3 with python3-confluent-kafka
$PY -c 'import confluent_kafka' 2>/dev/null || { echo "SKIP: python3-confluent-kafka not installed"; exit 77; }
step() { echo "[${SECONDS}s] $*"; }

NA=500 NB=500 NC=500
EVENTS=$((NA + NB + NC))
# the staging topic and the namespace's topics: created first (a real broker creates none itself)
TOPICS=(staging:1 rewards-rangeb:1 stage-changes-rangeb:1 touchpoints-dlq-rangeb:1 fidelio-credits-rangeb:1
    fidelio-credits-rangep:1)
if [ "$BROKER" = kafka ]; then
    start_broker --partitions 1
    kafka_topics "$KAFKA_DIR" "${TOPICS[@]}" || fail "could not create the staging and namespace topics"
else
    start_broker --partitions 1 "${TOPICS[@]/#/--topic=}"
fi
start_redis
RC=(redis-cli -s "$REDIS_SOCK")
read -r -a acl <<<"$(acl_line replay fidelio-replay e2e-replay-pw "rangea: rangeb: rangeb2: rangec: fidelio: rangep: nocredits:" | sed 's/^user //')"
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
# --- 4: --parallel -------------------------------------------------------------------------
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
step "done"
done_ok
