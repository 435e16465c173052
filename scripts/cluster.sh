#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for demos and the test suite:
#   scripts/cluster.sh up DIR [--nodes N]   starts one in the background (etcd, kube-apiserver,
#                                           kube-controller-manager, kube-scheduler, KWOK with N
#                                           fake nodes node-0..), returns once it is ready;
#                                           DIR/kubeconfig is then the admin's kubeconfig
#   scripts/cluster.sh down DIR             stops it and every process it started
# The binaries come from scripts/testenv.sh (built from source once, then cached) unless
# STOWAGE_TESTENV_BIN names them. Logs: DIR/stowage-cluster.log and DIR/logs/<component>.log.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
usage() {
  echo "usage: scripts/cluster.sh up DIR [--nodes N] | down DIR" >&2
  exit 2
}
[ $# -ge 2 ] || usage
cmd=$1 dir=$2
shift 2

case $cmd in
up)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -z "${STOWAGE_TESTENV_BIN:-}" ]; then
    STOWAGE_TESTENV_BIN=$(bash "$root/scripts/testenv.sh")
    export STOWAGE_TESTENV_BIN
  fi
  (cd "$root" && cargo build --quiet --locked -p stowage-testkit --bin stowage-cluster)
  target=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  rm -f "$dir/kubeconfig"
  # Detached (own session, no terminal), so it outlives this script and ^C in the shell that
  # ran it; `down` stops it.
  setsid "$target/debug/stowage-cluster" up "$dir" "$@" </dev/null >"$dir/stowage-cluster.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/launcher.pid"
  for _ in $(seq 1 1800); do
    if [ -f "$dir/kubeconfig" ]; then
      echo "cluster up; use it with: export KUBECONFIG=$dir/kubeconfig" >&2
      exit 0
    fi
    # (Our own child: once it exits it stays a zombie until this script ends.)
    if [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null || echo Z)" = Z ]; then
      echo "scripts/cluster.sh: the cluster did not start; $dir/stowage-cluster.log says:" >&2
      cat "$dir/stowage-cluster.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "scripts/cluster.sh: the cluster was not up after 180 s; see $dir/stowage-cluster.log" >&2
  kill "$pid" 2>/dev/null || true
  exit 1
  ;;
down)
  [ -d "$dir" ] || exit 0
  pid=$(cat "$dir/pid" 2>/dev/null || cat "$dir/launcher.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    # It stops its components (up to 10 s of grace each, in parallel) before it exits.
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "scripts/cluster.sh: $pid did not stop; killing it (its components die with it)" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$dir/launcher.pid"
  ;;
*)
  usage
  ;;
esac
