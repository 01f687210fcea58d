#!/usr/bin/env bash
# The deploy files parse: the Kubernetes manifests with PyYAML (their
# configuration must pass `fidelio check`; probes on /healthz and /readyz of
# the configured port), the systemd unit with systemd-analyze, the compose file
# (services, wiring), the Prometheus configuration with promtool, and the
# Grafana dashboard's PromQL names only metrics a running fidelio exports
# (scraped from `fidelio dashboard`; e2e_control_room.sh checks the labels
# against a running `fidelio run`). Not done here (see deploy/README.md):
# building the images and running the compose file (no container engine), and
# server-side validation of the manifests (kubectl needs an API server).
source "$(dirname "$0")/lib.sh"
require systemd-analyze promtool redis-server redis-cli
PY=""
for p in python3 /usr/bin/python3; do
    if "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || fail "no python3 with PyYAML (tools/setup.sh installs python3-yaml)"
"$PY" - "$SOURCE_DIR/deploy/kubernetes.yaml" <<'PY' || fail "kubernetes.yaml"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = sorted(d["kind"] for d in docs)
assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget"], kinds
cm = next(d for d in docs if d["kind"] == "ConfigMap")
c = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
port = yaml.safe_load(cm["data"]["fidelio.yaml"])["http"]["port"]
assert [p["containerPort"] for p in c["ports"] if p["name"] == "http"] == [port], c["ports"]
assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, c["livenessProbe"]
assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, c["readinessProbe"]
open(sys.argv[1] + ".fidelio.yaml.tmp", "w").write(cm["data"]["fidelio.yaml"])
open(sys.argv[1] + ".rules.yaml.tmp", "w").write(cm["data"]["rules.yaml"])
PY
mv "$SOURCE_DIR/deploy/kubernetes.yaml.fidelio.yaml.tmp" "$WORK/fidelio.yaml"
mv "$SOURCE_DIR/deploy/kubernetes.yaml.rules.yaml.tmp" "$WORK/rules.yaml"
"$FIDELIO" check -c "$WORK/fidelio.yaml" >/dev/null || fail "the ConfigMap's configuration does not pass fidelio check"
pass "kubernetes.yaml: three objects; probes on /healthz and /readyz of the configured port; its embedded fidelio.yaml and rules.yaml pass fidelio check"

"$PY" - "$SOURCE_DIR/deploy" <<'PY' || fail "docker-compose.yml"
import sys, os, yaml
d = sys.argv[1]
c = yaml.safe_load(open(os.path.join(d, "docker-compose.yml")))
s = c["services"]
assert sorted(s) == ["fidelio", "grafana", "kafka", "kafka-topics", "prometheus", "redis", "seeds"], sorted(s)
assert s["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller", "KRaft"
assert "--appendonly" in s["redis"]["command"] and s["redis"]["command"][s["redis"]["command"].index("--appendonly") + 1] == "yes"
f = s["fidelio"]
assert f["environment"]["FIDELIO_HTTP_BIND"] == "0.0.0.0" and f["ports"] == ["127.0.0.1:9464:9464"]
assert f["depends_on"]["kafka-topics"]["condition"] == "service_completed_successfully"
assert s["seeds"]["command"][:1] == ["produce"] and s["seeds"]["restart"] == "no"
prom = yaml.safe_load(open(os.path.join(d, "prometheus", "prometheus.yml")))
assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["fidelio:9464"]
for vol in s["prometheus"]["volumes"] + s["grafana"]["volumes"] + s["seeds"]["volumes"]:
    src = vol.split(":")[0]
    assert os.path.exists(os.path.join(d, src)), f"compose mounts {src}, which does not exist"
ds = yaml.safe_load(open(os.path.join(d, "grafana/provisioning/datasources/prometheus.yml")))
assert ds["datasources"][0]["url"] == "http://prometheus:9090"
PY
promtool check config "$SOURCE_DIR/deploy/prometheus/prometheus.yml" >"$WORK/promtool" 2>&1 \
    || fail "promtool: $(cat "$WORK/promtool")"
pass "docker-compose.yml: Kafka KRaft, Redis AOF, topics, fidelio, seeds, Prometheus, Grafana wired; promtool accepts prometheus.yml"

# the Grafana dashboard uses only metrics fidelio exports
start_redis
DP=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$FIDELIO" dashboard --set redis.url="$REDIS_URL_RO" --port "$DP" >"$WORK/dashboard.log" 2>&1 &
PIDS+=($!)
scrape() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:$DP/metrics" >"$WORK/metrics.txt" 2>/dev/null; }
wait_until 30 "fidelio dashboard /metrics" scrape
python3 - "$SOURCE_DIR/deploy/grafana/dashboards/fidelio.json" "$WORK/metrics.txt" <<'PY' || fail "the Grafana dashboard names metrics fidelio does not export"
import json, re, sys
dash = json.load(open(sys.argv[1]))
families = {l.split()[2]: l.split()[3] for l in open(sys.argv[2]) if l.startswith("# TYPE ")}
exported = set(families)
for name, kind in families.items():
    if kind == "histogram":
        exported |= {name + "_bucket", name + "_sum", name + "_count"}
used = set()
for p in dash["panels"]:
    assert p["datasource"]["uid"] == "prometheus", p["title"]
    for t in p["targets"]:
        used |= set(re.findall(r"\b((?:fidelio|process)_[a-z_]+)\b", t["expr"]))
missing = sorted(used - exported)
assert not missing, f"not exported: {missing}"
assert len(used) >= 15, used
print(f"{len(used)} metric names of the dashboard are exported")
PY
pass "the Grafana dashboard's PromQL uses only metric names a running fidelio exports"
mkdir -p "$WORK/unit"
sed "s|/usr/local/bin/fidelio|$FIDELIO|g" "$SOURCE_DIR/deploy/fidelio.service" >"$WORK/unit/fidelio.service"
systemd-analyze verify "$WORK/unit/fidelio.service" >"$WORK/sa" 2>&1 || fail "systemd-analyze: $(cat "$WORK/sa")"
pass "systemd-analyze verify accepts fidelio.service"
done_ok
