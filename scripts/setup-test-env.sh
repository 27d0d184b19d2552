#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust, when it is missing: Python 3 with
# `cryptography` (the independent implementation of the wire formats), `boto3`, and moto's
# server (the local KMS API the KMS tests run against). Idempotent; no network when present.
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3 python3-pip >/dev/null
  else
    echo "setup-test-env: python3 is required" >&2; exit 1
  fi
fi

if ! python3 -c 'import moto.server, boto3, cryptography, flask' >/dev/null 2>&1; then
  echo "setup-test-env: installing moto[server], boto3, cryptography from PyPI" >&2
  python3 -m pip install --quiet 'moto[server]>=5' boto3 cryptography \
    || python3 -m pip install --quiet --break-system-packages 'moto[server]>=5' boto3 cryptography
fi
python3 -c 'import moto.server, boto3, cryptography' 
