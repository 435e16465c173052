#!/usr/bin/env bash
# Long crash and concurrency soak: many more SIGKILL trials than CI runs, repeated
# concurrency rounds. TRIALS scales the crash tests (10 = CI's 100 trials), ROUNDS repeats
# the concurrency test. Example: TRIALS=200 ROUNDS=50 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export STOWAGE_CRASH_TRIALS=${TRIALS:-100}
cargo test --release --locked --test crash -- --nocapture
for i in $(seq 1 "${ROUNDS:-20}"); do
  echo "concurrency round $i"
  cargo test --release --locked --test concurrency -q
done
