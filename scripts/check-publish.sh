#!/usr/bin/env bash
# Every crate of the workspace packaged and verified as crates.io would take it (metadata,
# readme, license, keywords, categories, rust-version; each package built from its .crate),
# in dependency order with the unpublished internal crates overlaid: `cargo publish
# --dry-run`, nothing uploaded. Slow (each package is built alone: about 7 minutes on 2
# cores), so not part of scripts/test.sh; run it before a release.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo publish --dry-run --workspace --exclude oneseal "$@"
