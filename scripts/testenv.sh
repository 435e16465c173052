#!/usr/bin/env bash
# Builds the Kubernetes test environment from source and prints the directory holding it:
#   testenv                  the multi-call binary of testenv/ (etcd, kube-apiserver,
#                            kube-controller-manager, kube-scheduler, kubectl)
#   etcd kube-apiserver kube-controller-manager kube-scheduler kubectl
#                            symlinks to it, so the directory works as a bin dir
#   kwok                     KWOK (fake nodes and pods), built from its own module graph
#   kwok-stages.yaml         KWOK's own default stages (what kwokctl configures: nodes initialised
#                            and kept Ready through leases; pods made Running, completed, deleted),
#                            taken from the published kwok module; kwok does nothing without them
#   build-info               versions and how long the build took
# The build lands in ${STOWAGE_TESTENV_CACHE:-$HOME/.cache/stowage}/testenv-HASH, HASH covering
# testenv/'s module files and sources and this script, and is reused while they are unchanged
# (a cold build takes about 20 minutes on 2 cores; see testenv/README.md). Needs Go (the version
# testenv/go.mod names) and the Go module proxy. Only the directory goes to stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/testenv
kwok_version=v0.8.0

if ! command -v go >/dev/null; then
  echo "testenv.sh: no Go toolchain on PATH; the Kubernetes test environment is built from source" \
    "and needs Go $(sed -n 's/^go //p' "$src/go.mod") or newer" >&2
  exit 1
fi

hash=$(cd "$src" && cat go.mod go.sum ./*.go "$root/scripts/testenv.sh" | sha256sum | cut -c1-16)
cache=${STOWAGE_TESTENV_CACHE:-$HOME/.cache/stowage}
out=$cache/testenv-$hash
if [ -x "$out/kwok" ] && [ -x "$out/testenv" ]; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache"
# One build at a time per cache: a second caller waits for the first and then reuses its result.
exec 9>"$cache/testenv.lock"
flock 9
if [ -x "$out/kwok" ] && [ -x "$out/testenv" ]; then
  echo "$out"
  exit 0
fi

tmp=$(mktemp -d "$cache/testenv-$hash.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export CGO_ENABLED=0
k8s_version=$(cd "$src" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd_version=$(cd "$src" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
minor=${k8s_version#v1.}
minor=${minor%%.*}
# What /version and `kubectl version` report. The commit is left empty: the build comes from
# the module zip (checked against go.sum), which does not say which commit it was cut from.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit="
  ldflags+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done

echo "testenv.sh: building Kubernetes $k8s_version and etcd $etcd_version into $out (once)" >&2
start=$(date +%s)
(cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$tmp/testenv" .)
mid=$(date +%s)
echo "testenv.sh: building KWOK $kwok_version" >&2
GOBIN=$tmp go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$kwok_version"
kwok_dir=$(go mod download -json "sigs.k8s.io/kwok@$kwok_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
  pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
  echo "---"
  cat "$kwok_dir/kustomize/stage/$stage.yaml"
done >"$tmp/kwok-stages.yaml"
end=$(date +%s)
for name in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  ln -s testenv "$tmp/$name"
done
cat >"$tmp/build-info" <<EOF
kubernetes $k8s_version
etcd $etcd_version
kwok $kwok_version
go $(go env GOVERSION)
testenv-build-seconds $((mid - start))
kwok-build-seconds $((end - mid))
EOF
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "testenv.sh: built in $((end - start)) s" >&2
echo "$out"
