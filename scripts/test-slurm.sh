#!/usr/bin/env bash
# Runs the Slurm tests (tests/integration/slurm_*.rs) against a REAL
# one-node Slurm cluster: starts it with scripts/slurm-cluster.sh (which
# installs Slurm and munge from Debian's packages when missing), runs the
# ignored tests with `cargo test --test integration slurm_ --
# --ignored`, then stops the cluster it started (one that was already up is
# left running).
#
# Exit: 0 when the tests pass, or after `SKIPPED: <reason>` when Slurm is not
# installed and cannot be (see scripts/slurm-cluster.sh); anything else that
# fails fails the script.
#
# Extra arguments go to cargo test after `--ignored` (e.g. `--nocapture`).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'test-slurm: %s\n' "$*" >&2; }

started=yes
if scripts/slurm-cluster.sh status >/dev/null 2>&1; then
    say "the cluster is already up: using it, leaving it up"
    started=""
fi
stop() {
    if [ -n "$started" ]; then
        scripts/slurm-cluster.sh stop || true
    fi
}
trap stop EXIT
# Also when it is up: `start` waits for the node to be idle (and resumes it
# if an earlier, killed test left it down).
rc=0
scripts/slurm-cluster.sh start || rc=$?
case $rc in
0) ;;
3)
    started="" # nothing was started
    exit 0     # slurm-cluster.sh printed `SKIPPED: <reason>`
    ;;
*)
    say "the cluster did not start (exit $rc)"
    exit "$rc"
    ;;
esac

eval "$(scripts/slurm-cluster.sh env)"
say "$(sinfo --version) via SLURM_CONF=$SLURM_CONF"
start=$SECONDS
cargo test --locked --test integration slurm_ -- --ignored "$@"
say "the Slurm tests took $((SECONDS - start))s"
