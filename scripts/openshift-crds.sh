#!/usr/bin/env bash
# Fetches the CRDs of the OpenShift kinds the restore tests use (Route, SecurityContextConstraints)
# from the published github.com/openshift/api module, and prints the directory holding them:
#   routes.route.openshift.io.yaml
#   securitycontextconstraints.security.openshift.io.yaml
# Cached in ${STOWAGE_TESTENV_CACHE:-$HOME/.cache/stowage}/openshift-crds-VERSION. Needs Go and the
# Go module proxy. Only the directory goes to stdout.
set -euo pipefail
# A commit of openshift/api's master (the module publishes no tagged releases).
version=v0.0.0-20240912201240-0a8800162826
cache=${STOWAGE_TESTENV_CACHE:-$HOME/.cache/stowage}
out=$cache/openshift-crds-$version
if [ -f "$out/routes.route.openshift.io.yaml" ] &&
  [ -f "$out/securitycontextconstraints.security.openshift.io.yaml" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$cache"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# `go mod download` needs a module to run in; a throwaway one.
(cd "$tmp" && go mod init stowage.invalid/openshift-crds >/dev/null 2>&1)
dir=$(cd "$tmp" && go mod download -json "github.com/openshift/api@$version" |
  sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "openshift-crds.sh: could not download github.com/openshift/api@$version" >&2; exit 1; }
mkdir -p "$tmp/out"
cp "$dir/route/v1/zz_generated.crd-manifests/routes-Default.crd.yaml" \
  "$tmp/out/routes.route.openshift.io.yaml"
cp "$dir/security/v1/zz_generated.crd-manifests/0000_03_config-operator_01_securitycontextconstraints.crd.yaml" \
  "$tmp/out/securitycontextconstraints.security.openshift.io.yaml"
rm -rf "$out"
mv "$tmp/out" "$out"
echo "$out"
