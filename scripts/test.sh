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
# The Kubernetes tests (crates/stowage-testkit/tests) need a cluster: start one for the whole run
# (scripts/cluster.sh, stopped at exit; its binaries are built from source once by
# scripts/testenv.sh) unless STOWAGE_TEST_KUBECONFIG names one already. Without Go they are
# skipped with a notice, except in CI, where they fail.
if [ -z "${STOWAGE_TEST_KUBECONFIG:-}" ] && { [ -n "${STOWAGE_TESTENV_BIN:-}" ] || command -v go >/dev/null; }; then
  STOWAGE_TESTENV_BIN=${STOWAGE_TESTENV_BIN:-$(bash scripts/testenv.sh)}
  export STOWAGE_TESTENV_BIN
  _cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/stowage-cluster.XXXXXX")
  trap 'scripts/cluster.sh down "$_cluster_dir"; rm -rf "$_cluster_dir"
        if declare -F stop_s3_servers >/dev/null; then stop_s3_servers; fi' EXIT
  scripts/cluster.sh up "$_cluster_dir" --nodes 3
  export STOWAGE_TEST_KUBECONFIG=$_cluster_dir/kubeconfig
fi
# The OpenShift restore test installs the Route and SCC CRDs published in openshift/api's module.
if [ -z "${STOWAGE_TEST_OPENSHIFT_CRDS:-}" ] && command -v go >/dev/null; then
  STOWAGE_TEST_OPENSHIFT_CRDS=$(bash scripts/openshift-crds.sh)
  export STOWAGE_TEST_OPENSHIFT_CRDS
fi
# The engine must stay free of async runtimes, cloud SDKs and front-end crates (issue 12).
forbidden=$(cargo tree --locked -p stowage-core -e normal --prefix none --format '{p}' |
  awk '{print $1}' | sort -u |
  grep -E '^(tokio|aws-.*|clap|clap_.*|indicatif|kube|kube-.*|k8s-openapi|anyhow|rpassword|hyper|reqwest)$' || true)
if [ -n "$forbidden" ]; then
  echo "stowage-core depends on crates it must not: $forbidden" >&2
  exit 1
fi
cargo test --locked --workspace --all-targets
cargo test --locked --workspace --doc
if [ -f fuzz/Cargo.toml ]; then
  (cd fuzz && cargo test --locked)
fi
