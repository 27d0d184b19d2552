#!/usr/bin/env bash
# The whole test suite, as CI runs it: test prerequisites, then every Rust test (unit,
# end-to-end CLI, KMS against a local moto server, interop with Python `cryptography`,
# property tests, the gateway's queue backends), the vectors re-checked by Python, the Python
# package, the client examples, the OpenAPI description, the Kubernetes manifests, the
# systemd unit, the monitoring files and the OCI image, and a short fuzz-target smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-test-env.sh
cargo build --workspace --all-targets --quiet
cargo test --workspace --all-targets --quiet
cargo test --workspace --doc --quiet
python3 scripts/check_vectors.py
# The Python package: a wheel into a fresh virtual environment, its tests (Spark on local[2]).
bash bindings/python/test.sh
# The client examples (Python, Node, Java) against a real gateway and the demo platform.
bash examples/clients/check.sh
# The deployment: the manifests against Kubernetes' schemas, the image built and run.
bash deploy/check-manifests.sh target/debug/oneseal
bash deploy/test-image.sh target/debug/oneseal
# Fuzz-target smoke run on the stable toolchain (real fuzzing: see README "Fuzzing").
CARGO_TARGET_DIR="$PWD/target/fuzz-smoke" cargo run --quiet --manifest-path fuzz/Cargo.toml --bin smoke -- 3000
