#!/usr/bin/env bash
# The Kubernetes manifests, checked (CI runs this): every file against the schemas of a pinned
# Kubernetes version (kubernetes-validate, strict: unknown fields are errors), and the two
# configs in the ConfigMap through `oneseal gateway --check-config`.
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
