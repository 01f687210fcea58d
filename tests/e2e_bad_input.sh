#!/usr/bin/env bash
# Bad input among good events: each validation error of the contract,
# published as raw bytes by kcat, lands in the DLQ with headers naming the
# error, source topic, partition and offset, and the original key and value
# untouched; the good events around them are processed; the process never exits.
source "$(dirname "$0")/lib.sh"
require kcat redis-server redis-cli python3

start_broker --partitions 3
start_redis
mkdir -p "$WORK/bad"
now_ms=$(($(date +%s) * 1000))
# Hand-written Avro (zig-zag varints), independent of fidelio's encoder.
python3 - "$WORK/bad" "$now_ms" <<'PY'
import sys
out, now = sys.argv[1], int(sys.argv[2])
def varint(n):
    z = ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF
    b = b""
    while z >= 0x80:
        b += bytes([(z & 0x7F) | 0x80]); z >>= 7
    return b + bytes([z])
def s(x):
    x = x.encode() if isinstance(x, str) else x
    return varint(len(x)) + x
T = {"SIGNUP": 0, "PROFILE_UPDATE": 1, "PURCHASE": 6, "REFUND": 7}      # enum symbol index
BRANCH = {"SIGNUP": 1, "PROFILE_UPDATE": 2, "PURCHASE": 6, "REFUND": 7}  # payload union branch
def tp(eid, cust, typ, at=now - 3600_000, channel="web", branch=None, payload=b"", attrs=varint(0)):
    b = BRANCH[typ] if branch is None else branch
    return s(eid) + s(cust) + varint(T[typ]) + s(channel) + varint(at) + varint(b) + payload + attrs
purchase = lambda amt: s("o-1") + varint(amt) + s("EUR") + varint(0)
cases = {  # name: (key, bytes) -> expected error
    "message_too_large": ("c-big", b"\x00" * 3000),
    "length_exceeds_message": ("c-len", varint(1_000_000) + b"abc"),
    "malformed": ("c-mal", tp("e-mal", "c-mal", "SIGNUP", payload=varint(0)) + b"\x07"),
    "empty_event_id": ("c-eid", tp("", "c-eid", "SIGNUP", payload=varint(0))),
    "empty_customer_id": ("", tp("e-ecid", "", "SIGNUP", payload=varint(0))),
    "customer_id_too_long": ("x" * 129, tp("e-long", "x" * 129, "SIGNUP", payload=varint(0))),
    "customer_id_bad_chars": ("a{b}", tp("e-brace", "a{b}", "SIGNUP", payload=varint(0))),
    "payload_mismatch": ("c-pm", tp("e-pm", "c-pm", "PURCHASE", branch=7, payload=s("o") + varint(5))),
    "negative_amount": ("c-neg", tp("e-neg", "c-neg", "PURCHASE", payload=purchase(-500))),
    "amount_too_large": ("c-huge", tp("e-huge", "c-huge", "PURCHASE", payload=purchase(2**63 - 1))),
    "completeness_out_of_range": ("c-cmp", tp("e-cmp", "c-cmp", "PROFILE_UPDATE",
                                              payload=__import__("struct").pack("<d", 1.5))),
    "occurred_at_too_early": ("c-early", tp("e-early", "c-early", "SIGNUP", at=946684799999, payload=varint(0))),
    "occurred_at_in_future": ("c-fut", tp("e-fut", "c-fut", "SIGNUP", at=now + 2 * 86400_000, payload=varint(0))),
    "bad_channel": ("c-chan", tp("e-chan", "c-chan", "SIGNUP", channel="Store!", payload=varint(0))),
    "bad_string": ("c-nul", tp("e-nul", "c-nul", "SIGNUP", payload=varint(0),  # a NUL inside an attribute key
                               attrs=varint(2) + s(b"tier\0junk") + s("gold") + s(b"tier\0other") + s("x") + varint(0))),
    "key_mismatch": ("someone-else", tp("e-key", "c-key", "SIGNUP", payload=varint(0))),
}
for name, (key, data) in cases.items():
    open(f"{out}/{name}.bin", "wb").write(data)
    open(f"{out}/{name}.key", "w").write(key)
PY
cases=$(ls "$WORK/bad" | sed -n 's/\.bin$//p')
n=$(echo "$cases" | wc -l)

# good, then every bad one, then good again; and a refund of an unknown order (refused by the engine)
head -20 "$SOURCE_DIR/seeds/demo.jsonl" | "$FIDELIO" produce -q $(fid_opts) -t touchpoints || fail "produce good"
for c in $cases; do
    kcat -P -b "$BOOTSTRAP" -t touchpoints -k "$(cat "$WORK/bad/$c.key")" "$WORK/bad/$c.bin" || fail "kcat $c"
done
printf '%s\n' '{"event_id":"e-unk","customer_id":"c-unk","type":"REFUND","channel":"web","occurred_at":"2026-08-01T00:00:00Z","payload":{"order_id":"nope","amount_cents":100}}' \
    | "$FIDELIO" produce -q $(fid_opts) -t touchpoints || fail "produce refund"
sed -n '21,40p' "$SOURCE_DIR/seeds/demo.jsonl" | "$FIDELIO" produce -q $(fid_opts) -t touchpoints || fail "produce good 2"
pass "published 40 good events around $n hand-made bad messages and an unknown-order refund"

start_run run --set limits.max_message_bytes=2048
want=$((n + 1))
wait_until 120 "$want DLQ messages" at_least "$want" touchpoints-dlq
sleep 2
kill -0 "$RUN_PID" 2>/dev/null || fail "fidelio run exited on bad input: $(tail -5 "$WORK/run.log")"
[ "$(count touchpoints-dlq)" -eq "$want" ] || fail "DLQ holds $(count touchpoints-dlq), want $want"
pass "fidelio run is still running; the DLQ holds exactly the $want bad messages"

"$FIDELIO" consume -b "$BOOTSTRAP" -t touchpoints-dlq -e >"$WORK/dlq.jsonl"
kcat -b "$BOOTSTRAP" -C -t touchpoints -e -q -f '%p %o %k\n' >"$WORK/offsets"
python3 - "$WORK/dlq.jsonl" "$WORK/bad" "$WORK/offsets" <<'PY' || fail "DLQ headers or payloads are wrong"
import base64, json, os, sys
dlq = [json.loads(l) for l in open(sys.argv[1])]
bad = sys.argv[2]
by_err = {d["error"]: d for d in dlq}
offsets = {}
for line in open(sys.argv[3]):
    p, o, *k = line.rstrip("\n").split(" ", 2)
    offsets.setdefault(k[0] if k else "", []).append((p, o))
ok = True
for f in sorted(os.listdir(bad)):
    if not f.endswith(".bin"):
        continue
    name = f[:-4]
    d = by_err.get(name)
    if not d:
        print("missing DLQ entry for", name); ok = False; continue
    value = open(os.path.join(bad, f), "rb").read()
    key = open(os.path.join(bad, name + ".key")).read()
    if base64.b64decode(d["value_base64"]) != value:
        print(name, "value changed"); ok = False
    if (d["key"] or "") != key:
        print(name, "key changed", d["key"], key); ok = False
    if d["source_topic"] != "touchpoints" or not d["error_detail"]:
        print(name, "headers", d); ok = False
    if (d["source_partition"], d["source_offset"]) not in offsets.get(key, []):
        print(name, "source partition/offset", d["source_partition"], d["source_offset"], "not where kcat sees key", key); ok = False
u = by_err.get("unknown_order")
if not u or "nope" not in u["error_detail"]:
    print("unknown_order missing", u); ok = False
print(len(dlq), "DLQ messages checked")
sys.exit(0 if ok else 1)
PY
pass "each DLQ message names its error, source topic/partition/offset, with key and value untouched"

want_out=$(head -40 "$SOURCE_DIR/seeds/demo.jsonl" | "$FIDELIO" simulate 2>/dev/null | wc -l)
wait_until 60 "$want_out outputs of the good events" outputs_at_least "$want_out"
pass "the 40 good events around them were processed ($want_out outputs)"
stop_run "$RUN_PID" 20
grep -q "to the DLQ (.*customer_id_bad_chars x1" "$WORK/run.log" || fail "no DLQ count line"
[ "$(grep -c 'to the DLQ' "$WORK/run.log")" -lt "$want" ] || fail "one DLQ log line per event, want one per batch"
pass "stops on SIGTERM with exit 0; DLQ counts are logged per batch, not per event"
done_ok
