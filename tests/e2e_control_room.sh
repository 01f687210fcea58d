#!/usr/bin/env bash
# Operations with real components, over the demo seeds plus two malformed
# messages:
#  - `fidelio report --json` equals the figures recomputed from every stored
#    profile (`fidelio profile --all`) and from the output topics, and does not
#    move when every event is redelivered to a new consumer group;
#  - a real Prometheus scrapes `fidelio run` on loopback and its HTTP API
#    returns the counts of the input (types, rewards by rule, stage changes,
#    DLQ by reason);
#  - headless Chromium loads the control room: every figure on the page (read
#    from the DOM after its script ran) equals `fidelio report --json`; a
#    screenshot is written to $ARTIFACT_DIR/control-room.png (meson-logs/);
#  - /healthz, /readyz; `fidelio dashboard` serves the same /api/report bytes.
source "$(dirname "$0")/lib.sh"
require kcat redis-server redis-cli python3 prometheus chromium

ART=${ARTIFACT_DIR:-$WORK}
mkdir -p "$ART"
read -r HP PP DP < <(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

start_dev_kafka --partitions 4
start_redis
RUN_OPTS=(--set pipeline.dedupe_retention_ms=31536000000 --set pipeline.batch_size=1000
          --set pipeline.batch_linger_ms=1000 --set kafka.statistics.interval.ms=1000)
# shellcheck disable=SC2046
"$FIDELIO" produce -q $(fid_opts) -t touchpoints "$SOURCE_DIR/seeds/demo.jsonl" || fail "produce seeds"
printf 'not avro at all' >"$WORK/bad1"
printf '\x02\x02\x02' >"$WORK/bad2"
kcat -P -b "$BOOTSTRAP" -t touchpoints -k cust-bad-1 "$WORK/bad1" || fail "kcat"
kcat -P -b "$BOOTSTRAP" -t touchpoints -k cust-bad-2 "$WORK/bad2" || fail "kcat"

start_run run1 "${RUN_OPTS[@]}" --set http.port="$HP"
RUN1=$RUN_PID
http_get() { python3 -c '
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=10); code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
sys.stdout.buffer.write(body); sys.exit(0 if code == 200 else 3)' "$1"; }
# answers_ok URL / answers_error URL: the status is 200 / not 200 (now, for wait_until)
answers_ok() { http_get "$1" >/dev/null 2>&1; }
answers_error() { ! http_get "$1" >/dev/null 2>&1; }

wait_until 30 "/healthz" answers_ok "http://127.0.0.1:$HP/healthz"
# the seeds and the two bad messages are applied: credits need one more batch
done_consuming() {
    http_get "http://127.0.0.1:$HP/metrics" >"$WORK/metrics.txt" 2>/dev/null || return 1
    python3 - "$WORK/metrics.txt" <<'PY'
import sys
v = {}
for l in open(sys.argv[1]):
    if l.startswith("fidelio_events_consumed_total{topic=\"touchpoints\"}") or l.startswith("fidelio_events_applied_total{type=\"CREDIT\"}"):
        k, n = l.rsplit(" ", 1); v[k] = float(n)
sys.exit(0 if v.get('fidelio_events_consumed_total{topic="touchpoints"}') == 319 and v.get('fidelio_events_applied_total{type="CREDIT"}') == 3 else 1)
PY
}
wait_until 120 "319 touchpoints and 3 credits consumed" done_consuming
wait_until 30 "/readyz" answers_ok "http://127.0.0.1:$HP/readyz"
pass "fidelio run serves /healthz and /readyz (partitions assigned, Redis up) and consumed the input"

# ---- the report equals what the stored profiles and the output topics say ----------
check_report() { # $1: report JSON file
    # shellcheck disable=SC2046
    "$FIDELIO" profile $(fid_ro_opts) --all >"$WORK/profiles.jsonl" 2>/dev/null || fail "profile --all"
    { "$FIDELIO" consume -b "$BOOTSTRAP" -t rewards -e; } 2>/dev/null >"$WORK/rewards.jsonl"
    "$FIDELIO" consume -b "$BOOTSTRAP" -t touchpoints-dlq -e 2>/dev/null >"$WORK/dlq.jsonl"
    python3 "$SOURCE_DIR/tests/report_recount.py" "$1" "$WORK/profiles.jsonl" "$WORK/rewards.jsonl" "$WORK/dlq.jsonl"
}
# shellcheck disable=SC2046
"$FIDELIO" report --json $(fid_ro_opts) >"$WORK/report1.json" || fail "report --json"
check_report "$WORK/report1.json" || fail "the report differs from the stored profiles and the output topics"
pass "report --json equals the figures recomputed from 50 profiles and the rewards/DLQ topics"
# shellcheck disable=SC2046
"$FIDELIO" report $(fid_ro_opts) >"$WORK/report1.txt" || fail "report"
grep -q "outstanding (liability)" "$WORK/report1.txt" && grep -q "^ladder lifecycle" "$WORK/report1.txt" \
    || fail "text report: $(head -5 "$WORK/report1.txt")"

# ---- Prometheus scrapes fidelio run ----------------------------------------------------
mkdir -p "$WORK/prom"
cat >"$WORK/prom/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: fidelio
    static_configs: [{targets: ["127.0.0.1:$HP"]}]
EOF
prometheus --config.file="$WORK/prom/prometheus.yml" --storage.tsdb.path="$WORK/prom/data" \
    --web.listen-address="127.0.0.1:$PP" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
prom_matches() {
    python3 - "$PP" "$WORK/rewards.jsonl" "$SOURCE_DIR/seeds/demo.jsonl" "$BOOTSTRAP" "$FIDELIO" "$WORK/dlq.jsonl" <<'PY'
import json, sys, urllib.request, urllib.parse, collections, subprocess
port = sys.argv[1]
def q(expr):
    u = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        d = json.load(urllib.request.urlopen(u, timeout=5))
    except Exception as e:
        print("prometheus:", e, file=sys.stderr); sys.exit(1)
    return {tuple(sorted((k, v) for k, v in r["metric"].items() if k not in ("job", "instance", "__name__"))): float(r["value"][1])
            for r in d["data"]["result"]}
want_types = collections.Counter(json.loads(l)["type"] for l in open(sys.argv[3]) if l.strip())
rewards = {}
for l in open(sys.argv[2]):
    if l.strip():
        r = json.loads(l); rewards[r["reward_id"]] = r
want_rewards = collections.Counter((r["rule_id"], r["kind"]) for r in rewards.values())
stages = subprocess.run([sys.argv[5], "consume", "-b", sys.argv[4], "-t", "stage-changes", "-e"], capture_output=True, text=True).stdout
want_stages = collections.Counter((c["ladder"], c["to_stage"]) for c in (json.loads(l) for l in stages.splitlines() if l.strip()))
checks = [
    ("applied by type", {dict(k)["type"]: v for k, v in q("fidelio_events_applied_total").items() if dict(k)["type"] != "CREDIT"},
     {k: float(v) for k, v in want_types.items()}),
    ("rewards by rule", {(dict(k)["rule"], dict(k)["kind"]): v for k, v in q("fidelio_rewards_total").items()},
     {k: float(v) for k, v in want_rewards.items()}),
    ("stage changes", {(dict(k)["ladder"], dict(k)["stage"]): v for k, v in q("fidelio_stage_changes_total").items()},
     {k: float(v) for k, v in want_stages.items()}),
    ("dlq", q('fidelio_events_dlq_total'), {(("input", "touchpoint"), ("reason", k)): float(v) for k, v in
        collections.Counter(json.loads(l)["error"] for l in open(sys.argv[6]) if l.strip()).items()}),
    ("consumed", q('fidelio_events_consumed_total{topic="touchpoints"}'), {(("topic", "touchpoints"),): 319.0}),
    ("up", q('up{job="fidelio"}'), {(): 1.0}),
    ("program", {(dict(k)["version"], dict(k)["digest"][:7]) for k in q("fidelio_program_info")}, {("2026.11-default", "sha256:")}),
]
bad = [f"{n}: prometheus {g} want {w}" for n, g, w in checks if g != w]
if bad:
    print("\n".join(bad), file=open(sys.argv[2] + ".prom-diff", "w")); sys.exit(1)
PY
}
wait_until 90 "Prometheus to hold the expected values" prom_matches
python3 - "$PP" <<'PY' || fail "histograms or lag missing in Prometheus"
import json, sys, urllib.request, urllib.parse
def q(e):
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/v1/query?" + urllib.parse.urlencode({"query": e})))["data"]["result"]
assert q("fidelio_apply_seconds_count > 0"), "apply histogram"
assert q('fidelio_redis_roundtrip_seconds_count{op="apply"} > 0'), "redis rtt"
assert q("fidelio_batch_size_messages_bucket"), "batch size"
lag = {(r["metric"]["topic"], r["metric"]["partition"]): float(r["value"][1]) for r in q("fidelio_consumer_lag_messages")}
want = {("touchpoints", str(p)): 0.0 for p in range(4)}
assert {k: v for k, v in lag.items() if k[0] == "touchpoints"} == want, f"lag per partition {lag}"
PY
http_get "http://127.0.0.1:$HP/metrics" >"$WORK/metrics.txt" || fail "/metrics"
curl_names=$(grep -c '^# TYPE fidelio_' "$WORK/metrics.txt")
# the Grafana dashboard of deploy/ groups and filters by labels these series carry
python3 - "$SOURCE_DIR/deploy/grafana/dashboards/fidelio.json" "$WORK/metrics.txt" <<'PY' || fail "deploy/grafana: labels"
import json, re, sys
labels = {}
for l in open(sys.argv[2]):
    m = re.match(r'^([a-z_]+?)(?:_bucket|_sum|_count)?\{(.*)\} ', l) or re.match(r'^([a-z_]+)() ', l)
    if m:
        labels.setdefault(m.group(1), set()).update(re.findall(r'([a-z_]+)="', m.group(2)))
bad = []
for p in json.load(open(sys.argv[1]))["panels"]:
    for t in p["targets"]:
        e = t["expr"]
        for name, sel in re.findall(r'\b((?:fidelio|process)_[a-z_]+?)(?:_bucket|_sum|_count)?\b(?:\{([^}]*)\})?', e):
            have = labels.get(name)
            if have is None:
                bad.append(f"{p['title']}: {name} has no series in a running fidelio run"); continue
            for lab in re.findall(r'([a-z_]+)\s*=~?', sel or ""):
                if lab not in have: bad.append(f"{p['title']}: {name} has no label {lab}")
        for group in re.findall(r'by \(([^)]*)\)', e):
            for lab in [g.strip() for g in group.split(",")]:
                if lab != "le" and not any(lab in labels.get(n, set()) for n in re.findall(r'\b((?:fidelio|process)_[a-z_]+?)(?:_bucket|_sum|_count)?\b', e)):
                    bad.append(f"{p['title']}: grouped by {lab}, which no metric of it has")
if bad:
    print("\n".join(bad), file=sys.stderr); sys.exit(1)
PY
pass "Prometheus scraped fidelio run: applied by type, rewards by rule, stage changes, DLQ by reason, consumed, program, histograms, lag per partition ($curl_names families)"

# ---- Chromium: the control room shows the report's figures ------------------------------
CHROME=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
        --disable-component-update --disable-sync --disable-dev-shm-usage --user-data-dir="$WORK/chrome")
timeout 120 "${CHROME[@]}" --virtual-time-budget=8000 --dump-dom "http://127.0.0.1:$HP/" >"$WORK/dom.html" \
    2>"$WORK/chrome.log" || fail "chromium --dump-dom failed: $(tail -3 "$WORK/chrome.log")"
# shellcheck disable=SC2046
"$FIDELIO" report --json $(fid_ro_opts) >"$WORK/report2.json" || fail "report --json"
python3 - "$WORK/dom.html" "$WORK/report2.json" <<'PY' || fail "the page's figures differ from report --json"
import json, sys
from html.parser import HTMLParser
class P(HTMLParser):
    def __init__(self):
        super().__init__(); self.stack = []; self.found = {}; self.loaded = False
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body" and a.get("data-loaded") == "1": self.loaded = True
        if tag in ("br", "img", "input", "meta", "link"): return
        self.stack.append([a.get("data-k"), ""])
    def handle_endtag(self, tag):
        if not self.stack: return
        k, text = self.stack.pop()
        if k is not None: self.found.setdefault(k, []).append(text.strip())
        if self.stack: self.stack[-1][1] += text
    def handle_data(self, d):
        if self.stack: self.stack[-1][1] += d
p = P(); p.feed(open(sys.argv[1]).read())
assert p.loaded, "the page's script did not load /api/report"
r = json.load(open(sys.argv[2]))
want = {"customers": r["customers"]}
for k, v in r["points"].items(): want["points." + k] = v
for l in r["ladders"]:
    for s in l["stages"]: want[f"ladder.{l['id']}.{s['stage']}"] = s["customers"]
    want[f"ladder.{l['id']}.-"] = l["no_stage"]
for k, v in r["personas"].items(): want["persona." + k] = v
for w in r["rewards"]:
    want[f"reward.{w['rule']}.{w['kind']}.count"] = w["count"]; want[f"reward.{w['rule']}.{w['kind']}.points"] = w["points"]
for k, v in r["dlq"].items(): want["dlq." + k] = v
for k, v in r["events"].items(): want["events." + k] = v
got = {k: [int(t.replace(",", "")) for t in v] for k, v in p.found.items() if not k.startswith("live.")}
bad = [f"{k}: page {got.get(k)} report {v}" for k, v in want.items() if got.get(k) != [v]]
bad += [f"{k}: on the page, not in the report" for k in got if k not in want]
if bad:
    print("\n".join(bad), file=sys.stderr); sys.exit(1)
print(f"{len(want)} figures equal")
PY
timeout 120 "${CHROME[@]}" --virtual-time-budget=8000 --window-size=1400,2200 \
    --screenshot="$ART/control-room.png" "http://127.0.0.1:$HP/" >/dev/null 2>>"$WORK/chrome.log" \
    || fail "chromium --screenshot failed"
[ -s "$ART/control-room.png" ] || fail "no screenshot"
pass "headless Chromium: every figure of the control room equals report --json; screenshot $ART/control-room.png"

stop_run "$RUN1" 30
pass "fidelio run stopped on SIGTERM with the HTTP server running"

# ---- redelivery changes nothing --------------------------------------------------------
start_run run2 "${RUN_OPTS[@]}" --set consumer.group=fidelio-replay
wait_until 120 "the replay to see its duplicates" grep -q "redelivered events found applied" "$WORK/run2.log"
sleep 3
stop_run "$RUN_PID" 30
# shellcheck disable=SC2046
"$FIDELIO" report --json $(fid_ro_opts) >"$WORK/report3.json" || fail "report --json"
# The bad messages are dead-lettered again (the DLQ topic holds them twice, and
# so does the report); every other figure stays.
python3 - "$WORK/report1.json" "$WORK/report3.json" <<'PY' || fail "the report changed when every event was redelivered"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
da, db = a.pop("dlq"), b.pop("dlq")
if a != b:
    print("figures changed:", [k for k in a if a[k] != b[k]], file=sys.stderr); sys.exit(1)
if db != {k: 2 * v for k, v in da.items()}:
    print("dlq", da, "->", db, file=sys.stderr); sys.exit(1)
PY
check_report "$WORK/report3.json" || fail "after the replay the report differs from the stored profiles and the topics"
pass "every event redelivered to a new consumer group: only the DLQ count moves (bad messages dead-lettered again); the rest is unchanged"

# pipeline.report_aggregates=0: applies stop counting, and the report says its figures are partial
# shellcheck disable=SC2046
"$FIDELIO" run $(fid_opts) "${RUN_OPTS[@]}" --set consumer.group=fidelio-off --set pipeline.report_aggregates=0 \
    --until-idle >"$WORK/run3.log" 2>&1 || fail "run with report_aggregates=0: $(tail -3 "$WORK/run3.log")"
# shellcheck disable=SC2046
"$FIDELIO" report --json $(fid_opts) | python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["complete"] is False else 1)' \
    || fail "the report still claims complete figures after a run with pipeline.report_aggregates=0"
# (into a file, not `report | grep -q`: under pipefail, grep -q leaving at its match can make the report's
# next write die of SIGPIPE, a failure though the warning is there)
# shellcheck disable=SC2046
"$FIDELIO" report $(fid_opts) >"$WORK/report3.txt" || fail "report after a run with pipeline.report_aggregates=0"
grep -q "WARNING: the aggregates of this namespace are incomplete" "$WORK/report3.txt" || fail "text report warning"
pass "pipeline.report_aggregates=0: the namespace's report is marked incomplete"

# ---- fidelio dashboard ----------------------------------------------------------------
# shellcheck disable=SC2046
"$FIDELIO" dashboard $(fid_ro_opts) --port "$DP" >"$WORK/dashboard.log" 2>&1 &
DASH=$!
PIDS+=("$DASH")
wait_until 30 "dashboard /readyz" answers_ok "http://127.0.0.1:$DP/readyz"
http_get "http://127.0.0.1:$DP/api/report" >"$WORK/api.json" || fail "dashboard /api/report"
# shellcheck disable=SC2046
"$FIDELIO" report --json $(fid_opts) >"$WORK/report4.json" || fail "report --json"
cmp -s "$WORK/api.json" "$WORK/report4.json" || fail "dashboard /api/report differs from report --json"
http_get "http://127.0.0.1:$DP/" | grep -q "Fidelio control room" || fail "dashboard /"
redis-cli -s "$WORK/redis/redis.sock" shutdown nosave >/dev/null 2>&1 || true
wait_until 30 "dashboard /readyz to fail without Redis" answers_error "http://127.0.0.1:$DP/readyz"
answers_ok "http://127.0.0.1:$DP/healthz" || fail "dashboard /healthz should stay 200 while Redis is down"
kill -TERM "$DASH"
wait "$DASH" || fail "dashboard exited non-zero on SIGTERM"
pass "fidelio dashboard serves the same /api/report bytes as report --json; /readyz follows Redis"
done_ok
