#!/usr/bin/env bash
# DLQ records always fit and can be deduplicated. A rejected message larger
# than the producer's message.max.bytes (librdkafka's default 1,000,000 is
# below limits.max_message_bytes' 1,048,576) is written to the DLQ with its
# value cut to fit and value_truncated giving the original length, the source
# coordinates intact: `run` goes on instead of failing the batch forever.
# Every DLQ record carries dlq_id = source topic/partition/offset, the same
# when the batch is redelivered, so the DLQ dedupes to exactly one record per
# bad message.
source "$(dirname "$0")/lib.sh"
require kcat redis-server redis-cli python3

# the size limits are checked against each other at start-up (exit 2, naming the keys)
for bad in kafka.message.max.bytes=2000 kafka.receive.message.max.bytes=1000000; do
    rc=0
    "$FIDELIO" check --set "$bad" >"$WORK/limits.out" 2>&1 || rc=$?
    [ "$rc" -eq 2 ] && grep -q "configuration error: ${bad%%=*} is " "$WORK/limits.out" \
        || fail "check --set $bad: exit $rc: $(tail -1 "$WORK/limits.out")"
done
pass "inconsistent size limits are refused at start-up with exit 2 naming the key"

start_dev_kafka --partitions 2
start_redis
python3 - "$WORK" <<'PY'
import sys
w = sys.argv[1]
open(f"{w}/huge.bin", "wb").write(bytes(range(256)) * (1_040_000 // 256) + b"\xff" * (1_040_000 % 256))
open(f"{w}/small.bin", "wb").write(b"\x07garbage")
PY
# shellcheck disable=SC2046
produce_seeds() { sed -n "$1p" "$SOURCE_DIR/seeds/demo.jsonl" | "$FIDELIO" produce -q $(fid_opts) -t touchpoints || fail "produce"; }
produce_seeds 1,20
kcat -P -b "$BOOTSTRAP" -t touchpoints -X message.max.bytes=2000000 -k c-huge "$WORK/huge.bin" || fail "kcat huge"
kcat -P -b "$BOOTSTRAP" -t touchpoints -k c-small1 "$WORK/small.bin" || fail "kcat small"
kcat -P -b "$BOOTSTRAP" -t touchpoints -k c-small2 "$WORK/small.bin" || fail "kcat small"
produce_seeds 21,40
pass "published 40 good events around a 1,040,000-byte bad message and two small bad ones"

rc=0
# shellcheck disable=SC2046
timeout 300 "$FIDELIO" run $(fid_opts) --until-idle --set consumer.group=g1 >"$WORK/g1.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "fidelio run exited $rc: $(grep -m2 error "$WORK/g1.log")"
[ "$(count touchpoints-dlq)" -eq 3 ] || fail "DLQ holds $(count touchpoints-dlq), want 3"
outputs_at_least 1 || fail "no outputs for the good events"
pass "fidelio run --until-idle exited 0; the DLQ holds the 3 bad messages; the good ones were processed"

kcat -b "$BOOTSTRAP" -C -t touchpoints -e -q -f '%k %p %o\n' >"$WORK/offsets"
check_dlq() {
    "$FIDELIO" consume -b "$BOOTSTRAP" -t touchpoints-dlq -e >"$WORK/dlq.jsonl" 2>/dev/null || fail "consume the DLQ"
    python3 - "$WORK" "$1" <<'PY' || fail "DLQ records are wrong"
import base64, json, sys
w, copies = sys.argv[1], int(sys.argv[2])
where = {}
for line in open(f"{w}/offsets"):
    k, p, o = line.split()
    where[k] = (p, o)
dlq = [json.loads(l) for l in open(f"{w}/dlq.jsonl")]
huge = open(f"{w}/huge.bin", "rb").read()
ok = len(dlq) == 3 * copies
by_id = {}
for d in dlq:
    p, o = where[d["key"]]
    want_id = f"touchpoints/{p}/{o}"
    if (d["source_topic"], d["source_partition"], d["source_offset"], d["dlq_id"]) != ("touchpoints", p, o, want_id):
        print("bad coordinates or dlq_id", d["key"], d["dlq_id"], want_id); ok = False
    if not d["error"]:
        print("no error header", d["key"]); ok = False
    v = base64.b64decode(d["value_base64"])
    if d["key"] == "c-huge":
        if d.get("value_truncated") != len(huge) or not (0 < len(v) < 1_000_000) or not huge.startswith(v):
            print("huge record: value_truncated", d.get("value_truncated"), "kept", len(v)); ok = False
    elif "value_truncated" in d or v != b"\x07garbage":
        print("small record changed", d["key"]); ok = False
    same = by_id.setdefault(d["dlq_id"], d)
    if same != d:
        print("two records with dlq_id", d["dlq_id"], "differ"); ok = False
if len(by_id) != 3:
    print(len(by_id), "distinct dlq_id, want 3"); ok = False
huge_rec = next(d for d in dlq if d["key"] == "c-huge")
print(f"    c-huge: {huge_rec['error']}, value_truncated={huge_rec['value_truncated']}, "
      f"kept {len(base64.b64decode(huge_rec['value_base64']))} bytes, dlq_id={huge_rec['dlq_id']}")
sys.exit(0 if ok else 1)
PY
}
check_dlq 1
pass "the oversized message's DLQ record: value cut to fit, value_truncated = 1040000, source coordinates and dlq_id right"

# a redelivery (another group reads everything again): the DLQ gets the same records again, same dlq_id
rc=0
# shellcheck disable=SC2046
timeout 300 "$FIDELIO" run $(fid_opts) --until-idle --set consumer.group=g2 >"$WORK/g2.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "second fidelio run exited $rc: $(grep -m2 error "$WORK/g2.log")"
check_dlq 2
pass "redelivered: 6 DLQ records, 3 distinct dlq_id, identical copies: the DLQ dedupes by dlq_id"
done_ok
