#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests of the engine and CLI, then the
# fuzz targets' stable smoke tests. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets
if [ -f fuzz/Cargo.toml ]; then
  (cd fuzz && cargo test --locked)
fi
