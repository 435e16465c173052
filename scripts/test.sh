#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests of the engine and CLI, then the
# fuzz targets' stable smoke tests. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
# The S3 tests (tests/s3.rs) need S3 servers: start local ones (moto, stopped at exit) unless
# STOWAGE_TEST_S3_ENDPOINT names one already. Without moto_server they are skipped with a notice,
# except in CI, where they fail.
if [ -z "${STOWAGE_TEST_S3_ENDPOINT:-}" ] && command -v moto_server >/dev/null; then
  source scripts/s3-server.sh
fi
cargo test --locked --all-targets
if [ -f fuzz/Cargo.toml ]; then
  (cd fuzz && cargo test --locked)
fi
