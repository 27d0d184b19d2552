#!/usr/bin/env bash
# The files an operator deploys from, checked (CI runs this): the Kubernetes manifests against
# the schemas of a pinned Kubernetes version (kubernetes-validate, strict: unknown fields are
# errors) and the two configs in the ConfigMap through `oneseal gateway --check-config`; the
# alert rules and the dashboard; the systemd unit (systemd-analyze verify); the OpenAPI
# description (openapi-spec-validator, and against the routes and error codes served).
#
# Usage: deploy/check-manifests.sh [BINARY]   (default target/debug/oneseal)
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_VERSION=1.34.0
BIN=${1:-target/debug/oneseal}
[ -x "$BIN" ] || cargo build --quiet -p oneseal-cli --bin oneseal
kubernetes-validate --quiet --strict -k "$K8S_VERSION" deploy/kubernetes/*.yaml deploy/kubernetes/*/*.yaml
echo "check-manifests: every manifest is valid for Kubernetes $K8S_VERSION"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 - "$WORK" <<'PY'
import sys, yaml
cm = yaml.safe_load(open("deploy/kubernetes/configmap.yaml"))
for k, v in cm["data"].items():
    open(f"{sys.argv[1]}/{k}", "w").write(v)
PY
for cfg in queue.toml spool.toml; do
  env -i PATH="$PATH" HOME="$WORK" \
    ONESEAL_CALLBACK_PASSWORD=a-long-random-password-here \
    ONESEAL_SIGNING_SECRET="whsec_$(head -c 32 /dev/urandom | base64)" \
    ONESEAL_REDIS_PASSWORD=redis-password \
    "$BIN" gateway --check-config --config "$WORK/$cfg" >/dev/null \
    || { echo "check-manifests: the ConfigMap's $cfg does not pass --check-config" >&2; exit 1; }
  echo "check-manifests: the ConfigMap's $cfg passes --check-config"
done

# The monitoring files: the alert rules and the dashboard name only metrics the gateway
# exports (a renamed metric would leave an alert that never fires).
python3 - <<'PY'
import glob, json, re, sys, yaml
exported = set()
for f in glob.glob("crates/**/*.rs", recursive=True):
    exported |= set(re.findall(r'(?:counter|gauge|histogram)!\(\s*"(oneseal_[a-z_]+)"', open(f).read()))
rules = yaml.safe_load(open("deploy/monitoring/alerts.yaml"))
exprs = []
for g in rules["groups"]:
    for r in g["rules"]:
        assert r.get("alert") and r.get("expr") and r["labels"]["severity"] in ("critical", "warning"), r
        exprs.append(r["expr"])
dash = json.load(open("deploy/monitoring/grafana-dashboard.json"))
exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
bad = set()
for e in exprs:
    for name in re.findall(r"oneseal_[a-z_]+", e):
        if re.sub(r"_(bucket|count|sum)$", "", name) not in exported:
            bad.add(name)
if bad:
    sys.exit(f"check-manifests: the monitoring files name metrics the gateway does not export: {sorted(bad)}")
print(f"check-manifests: {len(exprs)} alert and dashboard expressions name only exported metrics")
PY

# The systemd unit, as systemd itself reads it (the binary path pointed at this build; the
# man page and the secrets file are not installed here).
if command -v systemd-analyze >/dev/null; then
  sed "s|/usr/local/bin/oneseal|$(realpath "$BIN")|g; s|^EnvironmentFile=/|EnvironmentFile=-/|" \
    deploy/systemd/oneseal-gateway.service > "$WORK/oneseal-gateway.service"
  systemd-analyze verify --man=no "$WORK/oneseal-gateway.service"
  grep -q '^Environment=.*\(PASSWORD\|SECRET\)' deploy/systemd/oneseal-gateway.service \
    && { echo "check-manifests: a secret in the unit's Environment=" >&2; exit 1; }
  echo "check-manifests: the systemd unit passes systemd-analyze verify"
else
  echo "check-manifests: systemd-analyze is missing (install systemd)" >&2; exit 1
fi

# The OpenAPI description: valid OpenAPI 3.1, every route the gateway serves described (and
# nothing else), every error code the gateway answers with in its enum.
python3 - <<'PY'
import glob, re, sys
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename
doc, _ = read_from_filename("docs/openapi.yaml")
validate(doc)
src = open("crates/oneseal-gateway/src/lib.rs").read()
served = set(re.findall(r'\.route\(\s*"(/[^"]*)"', src))
# Configurable paths, at their defaults.
served |= {"/callbacks", "/flows", "/clevertap/messages", "/clevertap/messages/media/{token}", "/clevertap/callbacks"}
described = set(doc["paths"])
codes = set()
for f in glob.glob("crates/oneseal-gateway/src/**/*.rs", recursive=True):
    codes |= set(re.findall(r'ApiError::(?:new|unavailable)\(\s*(?:StatusCode::\w+,\s*)?"([a-z_]+)"', open(f).read()))
enum = set(doc["components"]["schemas"]["ErrorCode"]["enum"])
problems = []
if served != described:
    problems.append(f"routes served but not described: {sorted(served - described)}; described but not served: {sorted(described - served)}")
if not codes or codes - enum:
    problems.append(f"error codes missing from ErrorCode: {sorted(codes - enum)}")
if problems:
    sys.exit("check-manifests: docs/openapi.yaml: " + "; ".join(problems))
print(f"check-manifests: docs/openapi.yaml is valid OpenAPI and describes all {len(served)} routes and {len(codes)} error codes")
PY
