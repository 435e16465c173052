#!/usr/bin/env bash
# Scale benchmark (issue: huge repositories with bounded memory and fast start).
# Builds a repository whose index lists BLOBS blobs (default 10 million), then measures:
#  - cold cache rebuild (first command after deleting the cache),
#  - peak RSS of a backup of DATA_MIB MiB of new data with the cache, and with --no-cache,
#  - time from start to the first pack stored, warm cache,
#  - `snapshots` listing time.
# Prints a markdown table. Everything lives under ${BENCH_DIR:-/tmp/stowage-bench-scale}.
set -euo pipefail
cd "$(dirname "$0")/.."
BLOBS=${BLOBS:-10000000}
DATA_MIB=${DATA_MIB:-1024}
dir=${BENCH_DIR:-/tmp/stowage-bench-scale}
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
command -v bc >/dev/null || apt-get install -y -qq bc >/dev/null
cargo build --release --locked -p stowage -p stowage-bench --bin stowage --bin stowage-bench-scale
bin=$PWD/target/release
rm -rf "$dir"; mkdir -p "$dir/tiny"
export STOWAGE_REPOSITORY=$dir/repo STOWAGE_PASSWORD=bench STOWAGE_CACHE_DIR=$dir/cache
echo tiny > "$dir/tiny/file"

t0=$(date +%s.%N)
"$bin/stowage-bench-scale" "$dir/repo" "$BLOBS"
t_gen=$(echo "$(date +%s.%N) - $t0" | bc)

rss() { grep "Maximum resident" "$1" | awk '{printf "%.0f", $6/1024}'; }
wall() { grep "Elapsed (wall" "$1" | awk '{print $8}'; }
new_data() { rm -rf "$dir/data"; mkdir -p "$dir/data"; head -c "$((DATA_MIB << 20))" /dev/urandom > "$dir/data/new.bin"; }

# Cold cache: the first command reads every index file into SQLite.
/usr/bin/time -v "$bin/stowage" -q backup "$dir/tiny" > /dev/null 2> "$dir/cold.txt"
# Warm cache, 1 GiB of new data.
new_data
sync
first_pack() {
  local start=$1
  while true; do
    if [ -n "$(find "$dir/repo/data" -type f -newer "$dir/marker" 2>/dev/null | head -n1)" ]; then
      echo "$(date +%s.%N) - $start" | bc; return
    fi
    sleep 0.01
  done
}
touch "$dir/marker"; start=$(date +%s.%N)
/usr/bin/time -v "$bin/stowage" -q backup "$dir/data" > /dev/null 2> "$dir/warm.txt" &
pid=$!
ttfb=$(first_pack "$start")
wait $pid
# The same without the cache: the whole index in memory.
new_data
/usr/bin/time -v "$bin/stowage" -q --no-cache backup "$dir/data" > /dev/null 2> "$dir/nocache.txt"
/usr/bin/time -v "$bin/stowage" snapshots > /dev/null 2> "$dir/snapshots.txt"

cat <<TABLE
| measure ($BLOBS blobs in the index, $DATA_MIB MiB new data) | result |
|---|---|
| generating the index | ${t_gen}s |
| cold cache rebuild (first command, tiny backup) | $(wall "$dir/cold.txt"), peak RSS $(rss "$dir/cold.txt") MiB |
| backup of new data, warm cache: peak RSS | $(rss "$dir/warm.txt") MiB |
| backup of new data, warm cache: wall | $(wall "$dir/warm.txt") |
| time to first pack stored, warm cache | ${ttfb}s |
| backup of new data, --no-cache (index in memory): peak RSS | $(rss "$dir/nocache.txt") MiB |
| backup of new data, --no-cache: wall | $(wall "$dir/nocache.txt") |
| \`snapshots\` listing | $(wall "$dir/snapshots.txt") |
| cache size on disk | $(du -sh "$dir/cache" | cut -f1) |
TABLE
