#!/usr/bin/env bash
# The deploy files parse: the Kubernetes manifests with PyYAML (their
# configuration must pass `fidelio check`), the systemd unit with
# systemd-analyze. Not done here (see deploy/README.md): building the
# Dockerfile (no Docker engine) and server-side validation of the manifests
# (kubectl needs an API server even for a dry run).
source "$(dirname "$0")/lib.sh"
require systemd-analyze
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
open(sys.argv[1] + ".fidelio.yaml.tmp", "w").write(cm["data"]["fidelio.yaml"])
open(sys.argv[1] + ".rules.yaml.tmp", "w").write(cm["data"]["rules.yaml"])
PY
mv "$SOURCE_DIR/deploy/kubernetes.yaml.fidelio.yaml.tmp" "$WORK/fidelio.yaml"
mv "$SOURCE_DIR/deploy/kubernetes.yaml.rules.yaml.tmp" "$WORK/rules.yaml"
"$FIDELIO" check -c "$WORK/fidelio.yaml" >/dev/null || fail "the ConfigMap's configuration does not pass fidelio check"
pass "kubernetes.yaml: three objects; its embedded fidelio.yaml and rules.yaml pass fidelio check"
mkdir -p "$WORK/unit"
sed "s|/usr/local/bin/fidelio|$FIDELIO|g" "$SOURCE_DIR/deploy/fidelio.service" >"$WORK/unit/fidelio.service"
systemd-analyze verify "$WORK/unit/fidelio.service" >"$WORK/sa" 2>&1 || fail "systemd-analyze: $(cat "$WORK/sa")"
pass "systemd-analyze verify accepts fidelio.service"
done_ok
