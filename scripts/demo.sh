#!/usr/bin/env bash
# Builds stowage, backs up a sample directory into a local repository, restores it and checks
# that the restored tree is identical. Everything lives under ${DEMO_DIR:-./demo}.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
bin=$PWD/target/release/stowage
demo=${DEMO_DIR:-$PWD/demo}
rm -rf "$demo"
mkdir -p "$demo/sample/docs" "$demo/sample/data"
export STOWAGE_REPOSITORY="$demo/repo" STOWAGE_PASSWORD=${STOWAGE_PASSWORD:-demo-password}

# A small but varied sample: text, a binary file, a symlink, a hardlink and a sparse file.
for i in $(seq 1 200); do echo "line $i of a sample document" ; done > "$demo/sample/docs/readme.txt"
head -c 8000000 /dev/urandom > "$demo/sample/data/blob.bin"
ln -s ../docs/readme.txt "$demo/sample/data/link"
ln "$demo/sample/docs/readme.txt" "$demo/sample/docs/hardlink"
truncate -s 64M "$demo/sample/data/sparse.img"

"$bin" init
"$bin" backup "$demo/sample" --tag demo
echo "change" >> "$demo/sample/docs/readme.txt"
"$bin" backup "$demo/sample" --tag demo
"$bin" snapshots
"$bin" diff "$("$bin" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')" latest
"$bin" restore latest --target "$demo/restored" --verify
"$bin" check --read-data
"$bin" stats
diff -r "$demo/sample" "$demo/restored/sample" && echo "demo: restored tree is identical to the source"
