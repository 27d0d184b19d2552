#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust, when it is missing: Python 3 with
# `cryptography` (the independent implementation of the wire formats), `boto3`, moto's
# server (the local KMS API the KMS tests run against) and `standardwebhooks` (the fake app
# verifies the gateway's signatures with it), and redis-server (the gateway's self-hosted
# callback queue; SQS and S3 come from the same moto server), buildah (the image is built and
# run in CI, without a registry), kubernetes-validate (the manifests' schemas), Java (the
# Python package's Spark example runs on local[2]; the Java client example needs javac),
# Node.js (the Node client example), openapi-spec-validator (the gateway's OpenAPI
# description) and systemd-analyze (the unit file). Idempotent; no network when present.
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3 python3-pip >/dev/null
  else
    echo "setup-test-env: python3 is required" >&2; exit 1
  fi
fi

PKGS=('moto[server]>=5' boto3 cryptography 'standardwebhooks>=1.1' 'kubernetes-validate==1.37.0' pyyaml 'openapi-spec-validator>=0.7')
if ! python3 -c 'import moto.server, boto3, cryptography, flask, standardwebhooks, kubernetes_validate, yaml, openapi_spec_validator' >/dev/null 2>&1; then
  echo "setup-test-env: installing ${PKGS[*]} from PyPI" >&2
  python3 -m pip install --quiet "${PKGS[@]}" \
    || python3 -m pip install --quiet --break-system-packages "${PKGS[@]}"
fi
python3 -c 'import moto.server, boto3, cryptography, standardwebhooks'

for tool in redis-server:redis-server buildah:buildah java:openjdk-17-jre-headless javac:openjdk-17-jdk-headless node:nodejs systemd-analyze:systemd; do
  cmd=${tool%%:*}; pkg=${tool#*:}
  command -v "$cmd" >/dev/null 2>&1 && continue
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup-test-env: installing $pkg from Debian's packages" >&2
    { apt-get install -y -qq "$pkg" >/dev/null 2>&1; } \
      || { apt-get update -qq && apt-get install -y -qq "$pkg" >/dev/null; }
  else
    echo "setup-test-env: $cmd is required (the queue tests, the image, the client examples, the systemd unit)" >&2; exit 1
  fi
done
# Debian's package starts a system-wide server; the tests start their own on free ports.
command -v systemctl >/dev/null 2>&1 && systemctl disable --now redis-server >/dev/null 2>&1 || true
redis-server --version >/dev/null
buildah --version >/dev/null
