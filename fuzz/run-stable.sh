#!/usr/bin/env bash
# Runs one fuzz target under libFuzzer, coverage-guided, on the STABLE toolchain.
#
#   ./run-stable.sh TARGET [libFuzzer options...]     e.g. ./run-stable.sh index -max_total_time=300
#
# It builds with the same SanitizerCoverage instrumentation as `cargo fuzz` (all stable rustc
# flags) but without AddressSanitizer, whose -Zsanitizer flag needs nightly. The targets are
# safe Rust, so ASan would add little; panics, failed assertions, aborts, timeouts and
# out-of-memory are all caught. The corpus starts from the valid seeds (examples/write_seeds.rs);
# crashes land in artifacts/TARGET/ and replay on stable with `cargo test` or by passing the
# file to this script.
set -euo pipefail

target=${1:?usage: $0 TARGET [libFuzzer options...] (targets: pack_header index tree snapshot config blob)}
shift
cd "$(dirname "$0")"

if [ ! -d "corpus/$target" ] || [ -z "$(ls -A "corpus/$target")" ]; then
    cargo run --quiet --example write_seeds
fi

host=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps RUSTFLAGS off build scripts and proc macros, which must not be instrumented.
export RUSTFLAGS="--cfg fuzzing -Cdebug-assertions -Coverflow-checks -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
cargo build --release --target "$host" --bin "$target"

dir=${CARGO_TARGET_DIR:-target}
mkdir -p "artifacts/$target"
exec "$dir/$host/release/$target" -artifact_prefix="artifacts/$target/" -rss_limit_mb=4096 "$@" "corpus/$target"
