#!/bin/sh
# Long randomized torture of crash recovery (tests/integration/torture.rs, torture_long):
# COUNT consecutive seeds from START (defaults 20 and 1). Each seed: random
# agent behaviours, 3-6 SIGKILLs of the coordinator with `resume`, the user
# committing to the target and main meanwhile; then git and /proc checked.
# Stops at the first failing seed and prints it; replay one seed with
#   scripts/torture.sh 1 SEED
set -eu
count=${1:-20}
start=${2:-1}
cd "$(dirname "$0")/.."
cargo build --locked --quiet
cargo test --locked --quiet --test integration --no-run
echo "torture: seeds $start..$((start + count - 1))"
seed=$start
end=$((start + count))
while [ "$seed" -lt "$end" ]; do
    began=$(date +%s)
    if ! TREEFARM_TORTURE_SEED=$seed TREEFARM_TORTURE_COUNT=1 \
        cargo test --locked --quiet --test integration torture::torture_long -- --ignored --nocapture \
        >"${TMPDIR:-/tmp}/treefarm-torture-$seed.log" 2>&1; then
        cat "${TMPDIR:-/tmp}/treefarm-torture-$seed.log"
        echo "torture: seed $seed FAILED (replay: scripts/torture.sh 1 $seed)"
        exit 1
    fi
    echo "torture: seed $seed ok ($(($(date +%s) - began)) s; $(grep -o "[0-9]* specs, [0-9]* coordinator SIGKILLs ([^)]*)" "${TMPDIR:-/tmp}/treefarm-torture-$seed.log"))"
    seed=$((seed + 1))
done
echo "torture: $count consecutive seeds passed ($start..$((end - 1)))"
