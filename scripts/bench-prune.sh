#!/usr/bin/env bash
# Prune at scale (issue 4: "prune runs in bounded memory"). Builds a repository whose index
# lists BLOBS blobs in packs of 1,000 (empty pack files), with one snapshot using every other
# pack (`stowage-bench-scale --prune-fixture`), then measures wall time and peak RSS of
# `prune --plan` and of `prune` (which condemns the unused half, then deletes it: no lock is
# live, so both happen in one run). `check` cannot run here: the packs are empty files. STOWAGE_BIN_BEFORE=path also times another binary's
# `prune --plan` on the same repository, for a before/after comparison.
# Prints a markdown table. Everything lives under ${BENCH_DIR:-/tmp/stowage-bench-prune}.
set -euo pipefail
cd "$(dirname "$0")/.."
BLOBS=${BLOBS:-4000000}
dir=${BENCH_DIR:-/tmp/stowage-bench-prune}
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
cargo build --release --locked -p stowage -p stowage-bench --bin stowage --bin stowage-bench-scale
bin=$PWD/target/release
rm -rf "$dir"; mkdir -p "$dir"
export STOWAGE_REPOSITORY=$dir/repo STOWAGE_PASSWORD=bench STOWAGE_CACHE_DIR=$dir/cache
"$bin/stowage-bench-scale" "$dir/repo" "$BLOBS" --prune-fixture

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$dir/time.txt" "$@" > "$dir/out.txt"
  read -r wall rss < "$dir/time.txt"
  printf '| %s | %s | %.0f |\n' "$label" "$wall" "$((rss / 1024))"
}
echo
echo "prune at $BLOBS blobs ($(ls "$dir/repo/index" | wc -l) index files, $(find "$dir/repo/data" -type f | wc -l) packs)"
echo
echo "| step | wall s | peak RSS MiB |"
echo "|---|---:|---:|"
if [ -n "${STOWAGE_BIN_BEFORE:-}" ]; then
  measure "prune --plan (before: $STOWAGE_BIN_BEFORE)" "$STOWAGE_BIN_BEFORE" --no-cache prune --plan
fi
measure "prune --plan" "$bin/stowage" prune --plan
measure "prune (condemn and delete half)" "$bin/stowage" prune
grep -E "^(deleted|done)" "$dir/out.txt" | sed 's/^/    /'
measure "prune --plan after (nothing left to do)" "$bin/stowage" prune --plan
grep -E "^plan" "$dir/out.txt" | sed 's/^/    /'
