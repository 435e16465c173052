#!/usr/bin/env bash
# End-to-end benchmark (issue 6): Stowage and restic on the same deterministic data set, in the
# same run, step by step.
#
#   bash scripts/bench.sh                      # full scale: ~1 GiB tree + 2 GiB image + 256 MiB log
#   BENCH_SCALE=0.01 bash scripts/bench.sh     # 1/100 scale, a few seconds
#
# Steps, each run for every tool back to back (tools interleaved per step, page cache dropped
# before every step when permitted): init, initial backup, unchanged re-backup (three rounds,
# the median run counting), the day of
# change (applied once to the data, not timed), backup after the change, restore of the latest
# snapshot into a fresh directory (then compared with the source; twice per tool, in forward
# then reverse tool order, the faster run counting), check --read-data. Every
# step is timed with GNU time: wall seconds, CPU seconds (user + system) and peak RSS.
# Repository sizes are `du -sb` of the repository directory; "bytes added by the change" is the
# growth of that size across the change backup, next to the tools' own figures.
#
# Environment (all optional):
#   BENCH_SCALE=1            data-set scale (0.001 .. 1 .. more)
#   BENCH_SEED=1             data-set seed
#   BENCH_DIR=/tmp/stowage-bench   working directory (data, repositories, logs); wiped first
#   BENCH_OUT=$BENCH_DIR/bench-results.md   where the markdown report goes (also on stdout)
#   BENCH_TOOLS="stowage stowage-large64k stowage-1m stowage-64k restic"   configurations to run
#   BENCH_STOWAGE_CONFIGS    the Stowage configurations: NAME=INIT OPTIONS, separated by ';'
#                            (default: the four below)
#   BENCH_DROP_CACHES=1      drop the page cache before each step (needs root; failure ignored)
#   BENCH_VERIFY=1           compare each restore with the source (diff -r --no-dereference)
#   BENCH_INSTALL=1          apt-get install restic and time when missing
#   BENCH_STOWAGE_BINS       NAME=PATH pairs separated by ';': run the Stowage configuration NAME
#                            with the binary at PATH (e.g. a before/after comparison of two builds:
#                            BENCH_STOWAGE_CONFIGS="before=;after=" BENCH_STOWAGE_BINS="before=..;after=..")
#   STOWAGE_BIN, BENCH_DATA_BIN   use these binaries instead of building the release ones
#                            (either way they are copied to $BENCH_DIR/bin first, so a rebuild
#                            in the work tree during the run cannot change them)
#   RESTIC_BIN=restic
#
# Configurations: `stowage` is `stowage init` with its defaults (FastCDC 256 KiB / 1 MiB /
# 4 MiB, and 32 / 128 / 512 KiB for files of 16 MiB and more; zstd level 2, 16 MiB packs,
# Argon2id 64 MiB x 3); `stowage-large64k` cuts large files finer still (16 / 64 / 256 KiB);
# `stowage-1m` and `stowage-64k` cut every file alike (`--uniform-chunks`) with 1 MiB and
# 64 KiB chunks: together they show the speed / bytes-added / size trade-off on the 8 KiB-page
# volume image. `restic` is `restic init --repository-version 2` with `--compression auto`
# (its zstd encoder's default level, comparable to zstd level 3, one level slower than
# Stowage's default; its defaults otherwise:
# 512 KiB / 1 MiB / 8 MiB Rabin chunks). The report prints the chunker and compression each
# repository records.
# Both tools take the password from the environment (STOWAGE_PASSWORD / RESTIC_PASSWORD) and
# keep their local caches under $BENCH_DIR (not counted in the repository sizes).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

SCALE=${BENCH_SCALE:-1}
SEED=${BENCH_SEED:-1}
WORK=${BENCH_DIR:-/tmp/stowage-bench}
OUT=${BENCH_OUT:-$WORK/bench-results.md}
TOOLS=${BENCH_TOOLS:-"stowage stowage-large64k stowage-1m stowage-64k restic"}
SMALL_CHUNKS="--uniform-chunks --chunk-min 16384 --chunk-avg 65536 --chunk-max 262144"
LARGE_64K="--large-chunk-min 16384 --large-chunk-avg 65536 --large-chunk-max 262144"
CONFIGS=${BENCH_STOWAGE_CONFIGS:-"stowage=;stowage-large64k=$LARGE_64K;stowage-1m=--uniform-chunks;stowage-64k=$SMALL_CHUNKS"}
DROP=${BENCH_DROP_CACHES:-1}
VERIFY=${BENCH_VERIFY:-1}
INSTALL=${BENCH_INSTALL:-1}
RESTIC=${RESTIC_BIN:-restic}
PASSWORD="stowage-bench password"

say() { echo "bench: $*" >&2; }
die() {
  echo "bench: error: $*" >&2
  exit 1
}

# ---- tools --------------------------------------------------------------------------------
apt_install() {
  [ "$INSTALL" = 1 ] || return 1
  command -v apt-get >/dev/null || return 1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; }
}

if [ ! -x /usr/bin/time ]; then
  apt_install time || say "GNU time is missing: CPU seconds and peak RSS will read n/a"
fi
HAVE_TIME=0
[ -x /usr/bin/time ] && HAVE_TIME=1

case " $TOOLS " in
*" restic "*)
  if ! command -v "$RESTIC" >/dev/null; then
    apt_install restic || true
  fi
  if ! command -v "$RESTIC" >/dev/null; then
    say "restic is not installed (and BENCH_INSTALL=$INSTALL): skipping it"
    TOOLS=$(echo " $TOOLS " | sed 's/ restic / /; s/^ *//; s/ *$//')
  fi
  ;;
esac
declare -A INIT_OPTS # Stowage configuration name -> init options
IFS=';' read -r -a config_list <<<"$CONFIGS"
for c in "${config_list[@]}"; do
  c=$(echo "$c" | sed 's/^ *//; s/ *$//')
  [ -n "$c" ] || continue
  name=${c%%=*}
  [[ "$name" =~ ^[a-z0-9][a-z0-9-]*$ ]] && [ "$name" != restic ] && [ "$c" != "$name" ] ||
    die "bad entry in BENCH_STOWAGE_CONFIGS: '$c' (NAME=OPTIONS)"
  INIT_OPTS[$name]=${c#*=}
done
for t in $TOOLS; do
  [ "$t" = restic ] || [ -n "${INIT_OPTS[$t]+set}" ] ||
    die "unknown tool $t: restic or one of BENCH_STOWAGE_CONFIGS (${!INIT_OPTS[*]})"
done
[ -n "$TOOLS" ] || die "no tool to run"

if [ -z "${STOWAGE_BIN:-}" ] || [ -z "${BENCH_DATA_BIN:-}" ]; then
  say "building the release binaries"
  (cd "$ROOT" && cargo build --release --locked -p stowage -p stowage-bench --bin stowage --bin stowage-bench-data >&2)
  STOWAGE_BIN=${STOWAGE_BIN:-$ROOT/target/release/stowage}
  BENCH_DATA_BIN=${BENCH_DATA_BIN:-$ROOT/target/release/stowage-bench-data}
fi
[ -x "$STOWAGE_BIN" ] || die "no stowage binary at $STOWAGE_BIN"
[ -x "$BENCH_DATA_BIN" ] || die "no data generator at $BENCH_DATA_BIN"

# ---- working directory --------------------------------------------------------------------
case "$WORK" in /) die "BENCH_DIR must not be /" ;; esac
rm -rf "$WORK"
mkdir -p "$WORK/logs" "$WORK/bin"
cp "$STOWAGE_BIN" "$WORK/bin/stowage"
cp "$BENCH_DATA_BIN" "$WORK/bin/stowage-bench-data"
STOWAGE_BIN=$WORK/bin/stowage
BENCH_DATA_BIN=$WORK/bin/stowage-bench-data
declare -A BINS # per-configuration binaries (BENCH_STOWAGE_BINS), copied like the others
IFS=';' read -r -a _bins <<<"${BENCH_STOWAGE_BINS:-}"
for b in "${_bins[@]}"; do
  [ -n "$b" ] || continue
  [ -x "${b#*=}" ] || die "no stowage binary at ${b#*=} (BENCH_STOWAGE_BINS)"
  cp "${b#*=}" "$WORK/bin/stowage-bin-${b%%=*}"
  BINS[${b%%=*}]=$WORK/bin/stowage-bin-${b%%=*}
done
DATA=$WORK/data
LOGS=$WORK/logs
declare -A R # results: R[tool.step.metric]

# ---- measuring ----------------------------------------------------------------------------
drop_caches() {
  if [ "$DROP" = 1 ]; then
    sync
    echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  fi
}

# run_cmd TOOL ARGS...: one command of the tool, with its environment.
run_cmd() {
  local tool=$1
  shift
  case "$tool" in
  restic)
    env RESTIC_REPOSITORY="$WORK/repo-restic" RESTIC_PASSWORD="$PASSWORD" \
      RESTIC_CACHE_DIR="$WORK/restic-cache" RESTIC_COMPRESSION=auto "$@"
    ;;
  *)
    if [ "$1" = "$STOWAGE_BIN" ] && [ -n "${BINS[$tool]:-}" ]; then
      set -- "${BINS[$tool]}" "${@:2}"
    fi
    env -u STOWAGE_PASSWORD_FILE -u STOWAGE_PASSWORD_COMMAND \
      STOWAGE_REPOSITORY="$WORK/repo-$tool" STOWAGE_PASSWORD="$PASSWORD" \
      STOWAGE_CACHE_DIR="$WORK/stowage-cache-$tool" "$@"
    ;;
  esac
}

# measure TOOL STEP CMD...: runs the command after dropping caches; records wall, cpu, rss.
measure() {
  local tool=$1 step=$2
  shift 2
  local base="$LOGS/$tool.$step"
  drop_caches
  say "$step: $tool"
  local start end rc=0
  start=$(date +%s.%N)
  if [ "$HAVE_TIME" = 1 ]; then
    run_cmd "$tool" /usr/bin/time -v -o "$base.time" "$@" >"$base.out" 2>"$base.err" || rc=$?
  else
    run_cmd "$tool" "$@" >"$base.out" 2>"$base.err" || rc=$?
  fi
  end=$(date +%s.%N)
  if [ "$rc" != 0 ]; then
    tail -n 20 "$base.err" >&2 || true
    die "$tool $step failed with exit code $rc (logs: $base.*)"
  fi
  R[$tool.$step.wall]=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
  if [ "$HAVE_TIME" = 1 ]; then
    R[$tool.$step.cpu]=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 }
      END { printf "%.2f", u + s }' "$base.time")
    R[$tool.$step.rss]=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$base.time")
  fi
}

repo_bytes() { du -sb "$WORK/repo-$1" | cut -f1; }

# json_num FILE KEY: the first number for "KEY" in a JSON document (pretty or not).
json_num() {
  grep -o "\"$2\": *[0-9.]*" "$1" | head -n 1 | sed 's/.*: *//' || true
}

# ---- the steps ----------------------------------------------------------------------------
step_init() {
  case "$1" in
  restic) measure "$1" init "$RESTIC" init --repository-version 2 ;;
  # shellcheck disable=SC2086 # the options are words on purpose
  *) measure "$1" init "$STOWAGE_BIN" --json init ${INIT_OPTS[$1]} ;;
  esac
}

step_backup() {
  local tool=$1 step=$2
  case "$tool" in
  restic) measure "$tool" "$step" "$RESTIC" backup --json --compression auto "$DATA" ;;
  *) measure "$tool" "$step" "$STOWAGE_BIN" --json backup "$DATA" ;;
  esac
  local out="$LOGS/$tool.$step.out"
  case "$tool" in
  restic)
    grep '"message_type":"summary"' "$out" >"$out.summary" || die "no restic summary for $step"
    R[$tool.$step.added_raw]=$(json_num "$out.summary" data_added)
    R[$tool.$step.added_stored]=n/a
    ;;
  *)
    R[$tool.$step.added_raw]=$(json_num "$out" bytes_added)
    R[$tool.$step.added_stored]=$(json_num "$out" bytes_added_stored)
    ;;
  esac
  R[$tool.$step.repo]=$(repo_bytes "$tool")
}

# step_restore TOOL [STEP]: restores the latest snapshot into a fresh directory, timed as STEP
# (default restore), then compares it with the source and deletes it.
step_restore() {
  local tool=$1 step=${2:-restore} target="$WORK/restore-$1"
  rm -rf "$target"
  case "$tool" in
  restic) measure "$tool" "$step" "$RESTIC" restore latest --target "$target" ;;
  *) measure "$tool" "$step" "$STOWAGE_BIN" --json restore latest --target "$target" ;;
  esac
  local restored
  # restic recreates the absolute path below the target; stowage the last component.
  if [ -d "$target/data" ]; then restored="$target/data"; else restored="$target$DATA"; fi
  [ -d "$restored" ] || die "$tool restore: nothing restored at $restored"
  if [ "$VERIFY" = 1 ]; then
    diff -r --no-dereference "$DATA" "$restored" >"$LOGS/$tool.restore.diff" 2>&1 ||
      die "$tool restore differs from the source (see $LOGS/$tool.restore.diff)"
    R[$tool.restore.verified]=yes
  fi
  rm -rf "$target"
}

step_check() {
  case "$1" in
  restic) measure "$1" check "$RESTIC" check --read-data ;;
  *) measure "$1" check "$STOWAGE_BIN" check --read-data ;;
  esac
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
DATE=$(date -u +%Y-%m-%dT%H:%MZ)
say "generating the data set (seed $SEED, scale $SCALE) in $DATA"
GEN_START=$(date +%s.%N)
"$BENCH_DATA_BIN" generate --out "$DATA" --seed "$SEED" --scale "$SCALE" >"$LOGS/generate.json"
GEN_SECS=$(awk -v a="$GEN_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
DATA_BYTES=$(json_num "$LOGS/generate.json" bytes)
DATA_FILES=$(json_num "$LOGS/generate.json" files)
DATA_LINKS=$(json_num "$LOGS/generate.json" symlinks)

for t in $TOOLS; do step_init "$t"; done
# What each Stowage repository really uses (the defaults of `init` may change).
for t in $TOOLS; do
  [ "$t" = restic ] && continue
  run_cmd "$t" "$STOWAGE_BIN" cat config >"$LOGS/$t.config.json"
  # The general chunk sizes come first in the config, the large-file ones (if any) second.
  sizes() { grep -o "\"$1\": *[0-9]*" "$LOGS/$t.config.json" | sed -n "${2}p" | sed 's/.*: *//'; }
  R[$t.config]=$(awk -v c="$(sizes min_size 1)" -v a="$(sizes avg_size 1)" -v m="$(sizes max_size 1)" \
    -v lf="$(json_num "$LOGS/$t.config.json" min_file_size)" \
    -v lc="$(sizes min_size 2)" -v la="$(sizes avg_size 2)" -v lm="$(sizes max_size 2)" \
    -v z="$(json_num "$LOGS/$t.config.json" compression_level)" \
    -v p="$(json_num "$LOGS/$t.config.json" pack_size)" \
    'BEGIN {
       printf "chunks %d/%d/%d KiB", c / 1024, a / 1024, m / 1024
       if (lf != "") printf " (files from %d MiB: %d/%d/%d KiB)", lf / 1048576, lc / 1024, la / 1024, lm / 1024
       printf ", zstd %d, packs %d MiB", z, p / 1048576
     }')
done
for t in $TOOLS; do step_backup "$t" backup1; done
# The unchanged re-backup takes well under two seconds, where the machine's noise is a large
# share: every tool runs it three times (rounds in forward, reverse, forward tool order), each
# from a cold cache and each a new snapshot with the previous one as parent, and the median
# run counts (its wall, CPU and RSS).
REVERSED=$(echo "$TOOLS" | tr ' ' '\n' | tac | tr '\n' ' ')
for round in 1 2 3; do
  order=$TOOLS
  [ "$round" = 2 ] && order=$REVERSED
  for t in $order; do step_backup "$t" "backup2r$round"; done
done
for t in $TOOLS; do
  median=$(for round in 1 2 3; do echo "${R[$t.backup2r$round.wall]} $round"; done | sort -n | sed -n 2p | cut -d' ' -f2)
  for k in wall cpu rss added_raw added_stored; do R[$t.backup2.$k]=${R[$t.backup2r$median.$k]:-}; done
  R[$t.backup2.repo]=${R[$t.backup2r3.repo]}
done
say "applying the day of change"
"$BENCH_DATA_BIN" change --out "$DATA" --seed "$SEED" --scale "$SCALE" >"$LOGS/change.json"
CHANGED_BYTES=$(json_num "$LOGS/change.json" bytes)
for t in $TOOLS; do step_backup "$t" backup3; done
for t in $TOOLS; do step_restore "$t"; done
# Restores are at the mercy of the file system's state: each follows the deletion of the one
# before (the first follows none), and the first of a run paid up to 2.5x the system time of
# the last (ext4 allocating in a fragmented file system), which favoured whichever tool came
# last. So every tool restores twice, in this order and then in the reverse one, and the faster
# of its two runs counts (both are compared with the source).
for t in $(echo "$TOOLS" | tr ' ' '\n' | tac); do step_restore "$t" restore2; done
for t in $TOOLS; do
  if awk -v a="${R[$t.restore2.wall]}" -v b="${R[$t.restore.wall]}" 'BEGIN { exit !(a < b) }'; then
    for k in wall cpu rss; do R[$t.restore.$k]=${R[$t.restore2.$k]:-}; done
  fi
done
for t in $TOOLS; do step_check "$t"; done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the report ---------------------------------------------------------------------------
get() { echo "${R[$1]:-n/a}"; }
mib() { awk -v b="$1" 'BEGIN { if (b == "n/a" || b == "") print "n/a"; else printf "%.1f", b / 1048576 }'; }
# ratio A B: A / B with two decimals, n/a if either is missing or B is zero.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "n/a" || b == "n/a" || a == "" || b == "" || b + 0 == 0) print "n/a";
    else printf "%.2f", a / b }'
}
sub() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a") print "n/a"; else print a - b }'; }
thru() { # MiB/s for BYTES over SECONDS
  awk -v b="$1" -v s="$2" 'BEGIN { if (s == "n/a" || s + 0 == 0) print "n/a"; else printf "%.0f", b / 1048576 / s }'
}

for t in $TOOLS; do
  R[$t.change.growth]=$(sub "$(get "$t.backup3.repo")" "$(get "$t.backup2.repo")")
  R[$t.backup1.thru]=$(thru "$DATA_BYTES" "$(get "$t.backup1.wall")")
  R[$t.backup3.thru]=$(thru "$CHANGED_BYTES" "$(get "$t.backup3.wall")")
  R[$t.restore.thru]=$(thru "$CHANGED_BYTES" "$(get "$t.restore.wall")")
  R[$t.check.thru]=$(thru "$(get "$t.backup3.repo")" "$(get "$t.check.wall")")
done

HAS_RESTIC=0
case " $TOOLS " in *" restic "*) HAS_RESTIC=1 ;; esac
OTHERS=""
for t in $TOOLS; do [ "$t" = restic ] || OTHERS="$OTHERS $t"; done

row() { # row LABEL METRIC KEY [FORMATTER]
  local label=$1 metric=$2 key=$3 fmt=${4:-}
  local line="| $label | $metric |"
  local rv=n/a
  if [ "$HAS_RESTIC" = 1 ]; then
    rv=$(get "restic.$key")
    if [ -n "$fmt" ]; then line="$line $($fmt "$rv") |"; else line="$line $rv |"; fi
  fi
  for t in $OTHERS; do
    local v
    v=$(get "$t.$key")
    if [ -n "$fmt" ]; then line="$line $($fmt "$v") |"; else line="$line $v |"; fi
    [ "$HAS_RESTIC" = 1 ] && line="$line $(ratio "$v" "$rv") |"
  done
  echo "$line"
}

# target LABEL KIND KEY GOAL: one line of the targets table.
# KIND speed: restic wall / tool wall >= GOAL; KIND frac: tool / restic <= GOAL.
target() {
  local label=$1 kind=$2 key=$3 goal=$4
  local line="| $label |"
  for t in $OTHERS; do
    local v rv cell
    v=$(get "$t.$key")
    rv=$(get "restic.$key")
    if [ "$kind" = speed ]; then
      cell=$(awk -v a="$v" -v b="$rv" -v g="$goal" 'BEGIN {
        if (a == "n/a" || b == "n/a" || a + 0 == 0) { print "n/a"; exit }
        r = b / a; printf "%.2fx restic: %s", r, (r >= g ? "**met**" : "missed") }')
    else
      cell=$(awk -v a="$v" -v b="$rv" -v g="$goal" 'BEGIN {
        if (a == "n/a" || b == "n/a" || b + 0 == 0) { print "n/a"; exit }
        r = a / b; printf "%.2f of restic: %s", r, (r <= g ? "**met**" : "missed") }')
    fi
    line="$line $cell |"
  done
  echo "$line"
}

rss_target() {
  local line="| peak RSS <= restic's in every step |"
  for t in $OTHERS; do
    local worst=0 worst_step="" s
    for s in init backup1 backup2 backup3 restore check; do
      local r
      r=$(ratio "$(get "$t.$s.rss")" "$(get "restic.$s.rss")")
      [ "$r" = n/a ] && continue
      if awk -v a="$r" -v b="$worst" 'BEGIN { exit !(a > b) }'; then
        worst=$r
        worst_step=$s
      fi
    done
    if [ -z "$worst_step" ]; then
      line="$line n/a |"
    else
      local verdict=missed
      awk -v a="$worst" 'BEGIN { exit !(a <= 1) }' && verdict="**met**"
      line="$line worst step $worst_step at ${worst}x restic: $verdict |"
    fi
  done
  echo "$line"
}

{
  echo "### End-to-end benchmark: $DATE"
  echo
  echo "Data set: seed $SEED, scale $SCALE: $DATA_FILES files and $DATA_LINKS symlinks, $(mib "$DATA_BYTES") MiB" \
    "(tree, volume image of 8 KiB pages, log); generated in ${GEN_SECS}s. After the day of change: $(mib "$CHANGED_BYTES") MiB."
  echo "Machine: $(nproc) cores ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM;" \
    "load average at start $LOAD_START, at end $LOAD_END; page cache dropped before each step: $([ "$DROP" = 1 ] && echo yes || echo no)."
  echo -n "Versions: $("$STOWAGE_BIN" --version)"
  [ "$HAS_RESTIC" = 1 ] && echo -n ", $("$RESTIC" version | cut -d' ' -f1-2)"
  echo "."
  echo -n "Configurations:"
  for t in $OTHERS; do
    echo -n " **$t** = \`stowage init${INIT_OPTS[$t]:+ ${INIT_OPTS[$t]}}\` ($(get "$t.config"));"
  done
  [ "$HAS_RESTIC" = 1 ] && echo -n " **restic** = \`restic init --repository-version 2\`, backups with \`--compression auto\`;"
  echo " passwords from the environment."
  echo
  header="| step | metric |"
  sep="|---|---|"
  if [ "$HAS_RESTIC" = 1 ]; then
    header="$header restic |"
    sep="$sep---:|"
  fi
  for t in $OTHERS; do
    header="$header $t |"
    sep="$sep---:|"
    if [ "$HAS_RESTIC" = 1 ]; then
      header="$header $t / restic |"
      sep="$sep---:|"
    fi
  done
  echo "$header"
  echo "$sep"
  for s in backup1:"initial backup" backup2:"unchanged re-backup (median of 3)" backup3:"backup after the change" \
    restore:"restore (fresh dir, best of 2)" check:"check --read-data"; do
    key=${s%%:*}
    label=${s#*:}
    row "$label" "wall s" "$key.wall"
    case "$key" in
    backup1 | backup3 | restore) row "$label" "MiB/s of data" "$key.thru" ;;
    check) row "$label" "MiB/s of repository" "$key.thru" ;;
    esac
    row "$label" "CPU s" "$key.cpu"
    row "$label" "peak RSS MiB" "$key.rss"
  done
  row "init" "wall s" "init.wall"
  row "repository" "MiB after initial backup" "backup1.repo" mib
  row "repository" "MiB after unchanged re-backup" "backup2.repo" mib
  row "repository" "MiB after change backup" "backup3.repo" mib
  row "bytes added by the change" "repo growth on disk, MiB" "change.growth" mib
  row "bytes added by the change" "tool's figure (raw) MiB" "backup3.added_raw" mib
  row "bytes added by the change" "tool's figure (stored) MiB" "backup3.added_stored" mib
  echo
  if [ "$HAS_RESTIC" = 1 ] && [ -n "$OTHERS" ]; then
    header="| target (issue 6) |"
    sep="|---|"
    for t in $OTHERS; do
      header="$header $t |"
      sep="$sep---|"
    done
    echo "$header"
    echo "$sep"
    target "initial backup throughput >= 2.5x restic's" speed backup1.wall 2.5
    target "restore >= 2.5x restic's" speed restore.wall 2.5
    target "check --read-data >= 2x restic's" speed check.wall 2
    target "unchanged re-backup <= 1/3 of restic's time" frac backup2.wall 0.3334
    target "bytes added by the change <= 1/2 of restic's (repo growth)" frac change.growth 0.5
    rss_target
    echo
  fi
  echo "Restores compared with the source (diff -r): $([ "$VERIFY" = 1 ] && echo "yes, identical" || echo "not checked")." \
    "Raw logs: $LOGS."
} | tee "$OUT"
say "report written to $OUT"
