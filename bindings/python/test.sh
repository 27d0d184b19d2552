#!/usr/bin/env bash
# The Python package, as CI checks it: a wheel built with maturin (release, abi3), installed
# into a fresh virtual environment with pytest, boto3, moto and cryptography, then the tests
# in bindings/python/tests against moto, the CLI (ONESEAL_BIN, default target/debug/oneseal)
# and the project's independent implementations.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)
VENV=$ROOT/target/python-venv
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet 'maturin>=1.5,<2' pytest boto3 'moto[server]>=5' cryptography 'pyspark>=3.5'
rm -rf "$ROOT/target/wheels"
CARGO_TARGET_DIR=$ROOT/target/python "$VENV/bin/maturin" build --quiet --release --out "$ROOT/target/wheels"
"$VENV/bin/pip" install --quiet "$ROOT"/target/wheels/oneseal-*.whl
export ONESEAL_BIN=${ONESEAL_BIN:-$ROOT/target/debug/oneseal}
# From outside the source tree, so the installed wheel is what is imported.
cd "$ROOT/target"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/bindings/python/tests"
