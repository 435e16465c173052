#!/usr/bin/env bash
# S3 benchmark (issue 3): Stowage and restic back up the same ~1 GiB data set to a local S3
# server, one after the other; the report gives throughput, CPU time and the number of requests
# per GiB backed up (counted in the request log of moto's server), for the first backup, an
# unchanged re-backup and a restore.
#
#   bash scripts/bench-s3.sh
#
# Environment (all optional):
#   BENCH_S3_DIR=/tmp/stowage-bench-s3   working directory (data, logs, server data); wiped first
#   BENCH_S3_SCALE=0.3                   scale of `stowage-bench-data generate` (0.3: ~1 GiB of
#                                        small files, a database-like image and a log)
#   BENCH_S3_SERVERS="moto s3s-fs"       servers, in order: moto's server mode (PyPI, in memory,
#                                        counts requests) and s3s-fs (crates.io, on disk, fast;
#                                        `cargo install`ed on first use, a few minutes)
#   BENCH_S3_OUT=$BENCH_S3_DIR/bench-s3.md   the markdown report (also printed)
#   STOWAGE_BIN, BENCH_DATA_BIN          use these binaries instead of building the release ones
#   RESTIC_BIN=restic                    (apt-get installed when missing)
#
# Both tools use their defaults: Stowage 16 MiB packs, zstd 2, 8 connections; restic 0.14
# repository version 2 with --compression auto, 16 MiB packs, 5 connections. The page cache is
# dropped before each timed step when permitted.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_S3_DIR:-/tmp/stowage-bench-s3}
SCALE=${BENCH_S3_SCALE:-0.3}
SERVERS=${BENCH_S3_SERVERS:-"moto s3s-fs"}
OUT=${BENCH_S3_OUT:-$WORK/bench-s3.md}
RESTIC=${RESTIC_BIN:-restic}
PASSWORD="stowage-bench password"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_REGION AWS_DEFAULT_REGION AWS_ENDPOINT_URL || true

say() { echo "bench-s3: $*" >&2; }
die() {
  echo "bench-s3: error: $*" >&2
  exit 1
}

# ---- tools ---------------------------------------------------------------------------------
if ! command -v "$RESTIC" >/dev/null; then
  apt-get install -y -qq restic >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq restic >/dev/null; } || die "restic is missing"
fi
command -v moto_server >/dev/null || python3 -m pip install -q 'moto[server]'
if [ -z "${STOWAGE_BIN:-}" ] || [ -z "${BENCH_DATA_BIN:-}" ]; then
  say "building the release binaries"
  (cd "$ROOT" && cargo build --release --locked -p stowage -p stowage-bench --bin stowage --bin stowage-bench-data >&2)
fi
STOWAGE_BIN=${STOWAGE_BIN:-$ROOT/target/release/stowage}
BENCH_DATA_BIN=${BENCH_DATA_BIN:-$ROOT/target/release/stowage-bench-data}
S3S_FS=${S3S_FS_BIN:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}
case " $SERVERS " in
*" s3s-fs "*)
  if [ ! -x "$S3S_FS" ]; then
    say "installing s3s-fs (once)"
    cargo install --locked --features binary s3s-fs@0.14.1 >&2
    S3S_FS=$HOME/.cargo/bin/s3s-fs
  fi
  ;;
esac

case "$WORK" in /) die "BENCH_S3_DIR must not be /" ;; esac
rm -rf "$WORK"
mkdir -p "$WORK/logs" "$WORK/bin"
cp "$STOWAGE_BIN" "$WORK/bin/stowage"
STOWAGE_BIN=$WORK/bin/stowage
LOGS=$WORK/logs
DATA=$WORK/data

say "generating the data set (scale $SCALE)"
"$BENCH_DATA_BIN" generate --out "$DATA" --scale "$SCALE" >"$LOGS/generate.out"
DATA_BYTES=$(find "$DATA" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
DATA_FILES=$(find "$DATA" -type f | wc -l)
GIB=$(awk -v b="$DATA_BYTES" 'BEGIN { printf "%.3f", b / 1073741824 }')

drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
}

# ---- servers -------------------------------------------------------------------------------
SERVER_PID=
SERVER_LOG=
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
trap stop_server EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {
  local i
  for i in $(seq 1 300); do
    if curl -s -o /dev/null "$1/"; then return 0; fi
    sleep 0.1
  done
  die "the S3 server at $1 did not start"
}

start_server() {
  local port
  port=$(free_port)
  ENDPOINT=http://127.0.0.1:$port
  case "$1" in
  moto)
    SERVER_LOG=$LOGS/moto.log
    moto_server -H 127.0.0.1 -p "$port" >"$SERVER_LOG" 2>&1 &
    ;;
  s3s-fs)
    SERVER_LOG=$LOGS/s3s-fs.log
    rm -rf "$WORK/s3s-data"
    mkdir -p "$WORK/s3s-data"
    "$S3S_FS" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
      --secret-key "$AWS_SECRET_ACCESS_KEY" "$WORK/s3s-data" >"$SERVER_LOG" 2>&1 &
    ;;
  *) die "unknown server $1" ;;
  esac
  SERVER_PID=$!
  wait_for "$ENDPOINT"
}

# Requests in the server's log so far, by method ("GET=12 PUT=3 ..."); moto only.
request_count() {
  [ "$1" = moto ] || return 0
  grep -oE '"(GET|PUT|POST|HEAD|DELETE) ' "$SERVER_LOG" | tr -d '" ' | sort | uniq -c |
    awk '{ printf "%s=%s ", $2, $1 }'
}

# delta BEFORE AFTER: per-method differences, and their total, as "total|GET=.. PUT=..".
delta() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(a, x, " "); for (i = 1; i <= n; i++) { split(x[i], kv, "="); before[kv[1]] = kv[2] }
    n = split(b, y, " "); total = 0; s = ""
    for (i = 1; i <= n; i++) {
      split(y[i], kv, "="); d = kv[2] - before[kv[1]]
      if (d > 0) { total += d; s = s kv[1] "=" d " " }
    }
    printf "%d|%s", total, s
  }'
}

declare -A R

# timed NAME CMD...: runs CMD with the page cache dropped; records wall and CPU seconds.
timed() {
  local name=$1
  shift
  drop_caches
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  TIMEFORMAT='%U %S'
  { time "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err"; } 2>"$LOGS/$name.time" || rc=$?
  t1=$(date +%s.%N)
  if [ "$rc" != 0 ]; then
    tail -n 20 "$LOGS/$name.err" >&2
    die "$name failed with exit code $rc"
  fi
  R[$name.wall]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  R[$name.cpu]=$(awk '{ printf "%.1f", $1 + $2 }' "$LOGS/$name.time")
}

run_tool() {
  local server=$1 tool=$2 step=$3
  local name=$server.$tool.$step
  local before after d
  before=$(request_count "$server")
  case "$tool.$step" in
  stowage.init)
    timed "$name" env STOWAGE_REPOSITORY="s3:$ENDPOINT/stowage-bench" STOWAGE_PASSWORD="$PASSWORD" \
      STOWAGE_CACHE_DIR="$WORK/stowage-cache" "$STOWAGE_BIN" init --create-bucket ;;
  stowage.backup | stowage.rebackup)
    timed "$name" env STOWAGE_REPOSITORY="s3:$ENDPOINT/stowage-bench" STOWAGE_PASSWORD="$PASSWORD" \
      STOWAGE_CACHE_DIR="$WORK/stowage-cache" "$STOWAGE_BIN" --quiet backup "$DATA" ;;
  stowage.restore)
    rm -rf "$WORK/restore"
    timed "$name" env STOWAGE_REPOSITORY="s3:$ENDPOINT/stowage-bench" STOWAGE_PASSWORD="$PASSWORD" \
      STOWAGE_CACHE_DIR="$WORK/stowage-cache" "$STOWAGE_BIN" --quiet restore latest \
      --target "$WORK/restore" ;;
  restic.init)
    timed "$name" env RESTIC_REPOSITORY="s3:$ENDPOINT/restic-bench" RESTIC_PASSWORD="$PASSWORD" \
      RESTIC_CACHE_DIR="$WORK/restic-cache" "$RESTIC" init --repository-version 2 ;;
  restic.backup | restic.rebackup)
    timed "$name" env RESTIC_REPOSITORY="s3:$ENDPOINT/restic-bench" RESTIC_PASSWORD="$PASSWORD" \
      RESTIC_CACHE_DIR="$WORK/restic-cache" "$RESTIC" --quiet backup --compression auto "$DATA" ;;
  restic.restore)
    rm -rf "$WORK/restore"
    timed "$name" env RESTIC_REPOSITORY="s3:$ENDPOINT/restic-bench" RESTIC_PASSWORD="$PASSWORD" \
      RESTIC_CACHE_DIR="$WORK/restic-cache" "$RESTIC" --quiet restore latest \
      --target "$WORK/restore" ;;
  esac
  after=$(request_count "$server")
  d=$(delta "$before" "$after")
  R[$name.requests]=${d%%|*}
  R[$name.methods]=${d#*|}
}

# verify_restore NAME TOOL: the restored tree equals the source.
verify_restore() {
  # Stowage restores a backed-up folder under its name, restic under its absolute path.
  local restored=$WORK/restore/$(basename "$DATA")
  [ "$2" = restic ] && restored=$WORK/restore$DATA
  diff -r --no-dereference "$DATA" "$restored" >"$LOGS/$1.diff" 2>&1 ||
    die "$1: the restore differs from the source (see $LOGS/$1.diff)"
}

for server in $SERVERS; do
  say "server: $server"
  start_server "$server"
  for tool in stowage restic; do
    rm -rf "$WORK/stowage-cache" "$WORK/restic-cache"
    for step in init backup rebackup restore; do
      say "$server: $tool $step"
      run_tool "$server" "$tool" "$step"
    done
    verify_restore "$server.$tool" "$tool"
  done
  stop_server
  rm -rf "$WORK/s3s-data"
done

# ---- report --------------------------------------------------------------------------------
mibps() { awk -v b="$DATA_BYTES" -v s="$1" 'BEGIN { if (s > 0) printf "%.0f", b / 1048576 / s; else print "n/a" }'; }
per_gib() { awk -v n="$1" -v g="$GIB" 'BEGIN { if (n != "") printf "%.0f", n / g; else print "n/a" }'; }
{
  echo "Data set: $DATA_FILES files, $(awk -v b="$DATA_BYTES" 'BEGIN { printf "%.2f", b / 1073741824 }') GiB (\`stowage-bench-data generate --scale $SCALE\`)."
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $(free -g | awk '/Mem:/ { print $2 }') GiB RAM, $(uname -sr); $("$STOWAGE_BIN" --version), $("$RESTIC" version | cut -d' ' -f1-2)."
  echo
  echo "| server | tool | backup s | MiB/s | CPU s | requests | per GiB | re-backup s | re-backup requests | restore s | MiB/s | restore requests |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  for server in $SERVERS; do
    for tool in stowage restic; do
      b=$server.$tool.backup rb=$server.$tool.rebackup rs=$server.$tool.restore
      req=${R[$b.requests]:-}
      if [ "$server" != moto ]; then req=; fi
      echo "| $server | $tool | ${R[$b.wall]} | $(mibps "${R[$b.wall]}") | ${R[$b.cpu]} | ${req:-n/a} | $(per_gib "$req") | ${R[$rb.wall]} | $([ "$server" = moto ] && echo "${R[$rb.requests]}" || echo n/a) | ${R[$rs.wall]} | $(mibps "${R[$rs.wall]}") | $([ "$server" = moto ] && echo "${R[$rs.requests]}" || echo n/a) |"
    done
  done
  echo
  for tool in stowage restic; do
    case " $SERVERS " in
    *" moto "*)
      echo "- $tool requests by method (moto): backup ${R[moto.$tool.backup.methods]}; re-backup ${R[moto.$tool.rebackup.methods]}; restore ${R[moto.$tool.restore.methods]}"
      ;;
    esac
  done
} | tee "$OUT"
