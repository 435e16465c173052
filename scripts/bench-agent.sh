#!/usr/bin/env bash
# Node agent memory benchmark: the peak RSS (VmHWM) of the release `stowage agent` while it backs
# up, and while it restores, one volume of many small files, beside restic's on the same data,
# in one run (stowage-bench-agent; it starts a one-node control plane of its own):
#   sudo scripts/bench-agent.sh
# The volume: BENCH_FILES files in directories of 1,000, 0..4 KiB each, deterministic. Measured:
#   - a Backup of the volume's namespace by the release `stowage controller` and `stowage agent`
#     (wall time from creating the Backup to Completed, the VolumeBackup's own duration, the
#     agent's VmHWM and its VmRSS sampled every 200 ms);
#   - with the agent restarted, a Restore cloning the namespace (verification included; the
#     restored volume must hold every file and byte), the same figures;
#   - `restic backup DIR` and `restic restore latest` of the same directory, wall time and peak
#     RSS (GNU time's %M).
# Must run as root: the kubelet stand-in bind-mounts the volumes into the pods' directories.
#
# Knobs (environment):
#   BENCH_FILES=1000000      files in the volume
#   BENCH_INSTALL=1          apt-get install restic and time when missing
#   RESTIC_BIN=restic
#   BENCH_JSON=bench-agent.json   where the figures go (JSON)
#   BENCH_WORK=              work directory (default: a new one in /tmp, removed afterwards)
#   BENCH_KEEP=0             1: keep the work directory (logs, repositories, data)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

FILES=${BENCH_FILES:-1000000}
INSTALL=${BENCH_INSTALL:-1}
RESTIC=${RESTIC_BIN:-restic}
JSON=${BENCH_JSON:-bench-agent.json}
KEEP=${BENCH_KEEP:-0}

say() { echo "bench-agent: $*" >&2; }
die() {
  echo "bench-agent: error: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (the kubelet stand-in bind-mounts volumes); try: sudo -E $0"

# ---- tools --------------------------------------------------------------------------------
apt_install() {
  [ "$INSTALL" = 1 ] || return 1
  command -v apt-get >/dev/null || return 1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; }
}
if [ ! -x /usr/bin/time ]; then
  apt_install time || say "GNU time is missing: restic's peak RSS is sampled from /proc instead"
fi
if ! command -v "$RESTIC" >/dev/null; then
  apt_install restic || true
fi
command -v "$RESTIC" >/dev/null || say "restic is not installed (and BENCH_INSTALL=$INSTALL): skipping it"

bin=$(bash "$root/scripts/testenv.sh")
say "building the release binaries..."
(cd "$root" && cargo build --quiet --release --bin stowage --bin stowage-bench-agent)

args=(--stowage "$root/target/release/stowage" --files "$FILES" --json "$JSON")
[ -n "${BENCH_WORK:-}" ] && args+=(--work "$BENCH_WORK")
[ "$KEEP" = 1 ] && args+=(--keep)
STOWAGE_TESTENV_BIN=$bin RESTIC_BIN=$RESTIC "$root/target/release/stowage-bench-agent" "${args[@]}"
