#!/usr/bin/env bash
# Benchmark of the Slurm executor (issue 24): the same 16 no-op specs run
# once with `executor: local` and once with `executor: slurm` against the
# one-node cluster of scripts/slurm-cluster.sh (started here when it is not
# up, and stopped again), in the same repository, state and worktrees
# removed in between.
#
#   scripts/bench-slurm.sh            16 specs (BENCH_SPECS to change)
#
# Each spec declares its own new file and the agent is `true`
# (`agent.allow_unchanged: true`): the run measures the coordinator and the
# executor, not an agent. `instances: 16`, `agent.start_interval: 0`,
# `worktree.reserve: 0%`; the Slurm run asks `cpus: 1`, `mem: 100M` per job
# (so the node runs as many at once as it has CPUs; the rest wait with
# `Resources`/`Priority`), `poll: 1s`, `exit_grace: 5s`. Every spec must end
# merged (checked).
#
# Printed: the wall time of each run, the Slurm calls (`summary.json`'s
# `slurm`: sbatch, squeue, scancel, scontrol, sinfo, total), the poller's
# turns and the calls per turn (squeue calls / polls: 1.0 means one batched
# call per tick, whatever the number of jobs), and the ratio slurm/local of
# the wall times. The storage check job and the start-up `sinfo` and
# `scontrol` are part of the Slurm run's calls and time.
#
# Exit: 0 after printing; 3 `SKIPPED: <reason>` when no cluster can be had.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

specs=${BENCH_SPECS:-16}
say() { printf 'bench-slurm: %s\n' "$*" >&2; }

started=""
if ! scripts/slurm-cluster.sh status >/dev/null 2>&1; then
    rc=0
    scripts/slurm-cluster.sh start || rc=$?
    if [ "$rc" = 3 ]; then exit 3; fi
    [ "$rc" = 0 ] || exit "$rc"
    started=yes
fi
work=$(mktemp -d)
cleanup() {
    rm -rf "$work"
    if [ -n "$started" ]; then scripts/slurm-cluster.sh stop || true; fi
}
trap cleanup EXIT
eval "$(scripts/slurm-cluster.sh env)"

cargo build --quiet --locked
tf=$root/target/debug/treefarm

repo=$work/repo
mkdir -p "$repo/specs"
cd "$repo"
git init -q -b main
git config user.email bench@example.com
git config user.name bench
echo x >README.md
for i in $(seq 1 "$specs"); do
    printf -- '---\ntitle: s%s\nfiles: [new/%s.txt]\n---\n# s%s\n\nNothing to do.\n' \
        "$i" "$i" "$i" >"specs/SPEC-$(printf %03d "$i")-s$i.md"
done
cat >treefarm.yaml <<EOF
instances: $specs
agent:
  command: "true"
  allow_unchanged: true
  start_interval: 0s
  timeout: 10m
worktree:
  reserve: 0%
slurm: {cpus: 1, mem: 100M, poll: 1s, exit_grace: 5s}
EOF
git add -A
git commit -qm bench

# One run with the executor $1; prints "wall_s" and leaves summary.json.
run_once() {
    local executor=$1 start end
    rm -rf .git/treefarm "$repo.treefarm"
    git for-each-ref --format='%(refname:short)' 'refs/heads/treefarm/*' | xargs -r git branch -qD
    git branch -qD roadmap 2>/dev/null || true
    start=$(date +%s.%N)
    "$tf" run --executor "$executor" >"$work/$executor.out" 2>&1 || {
        cat "$work/$executor.out" >&2
        say "the $executor run failed"
        exit 1
    }
    end=$(date +%s.%N)
    cp .git/treefarm/runs/*/summary.json "$work/$executor.json"
    python3 - "$work/$executor.json" "$specs" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
merged = len(s["merged"])
if merged != n:
    sys.exit(f"only {merged} of {n} specs merged: {s}")
PY
    echo "$start $end" | awk '{printf "%.2f\n", $2 - $1}'
}

say "$specs no-op specs, local executor"
local_s=$(run_once local)
say "$specs no-op specs, slurm executor ($(sinfo --noheader --format='%c CPUs' | head -1) on the node)"
slurm_s=$(run_once slurm)

python3 - "$work/slurm.json" "$local_s" "$slurm_s" "$specs" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["slurm"]
local_s, slurm_s, n = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
c = s["calls"]
print(f"specs                  {n}")
print(f"local executor         {local_s:.2f} s")
print(f"slurm executor         {slurm_s:.2f} s   (ratio slurm/local {slurm_s / local_s:.1f}x)")
print(f"slurm jobs             {s['jobs']}")
print(f"slurm calls            {s['total_calls']} (sbatch {c['sbatch']}, squeue {c['squeue']}, "
      f"scancel {c['scancel']}, scontrol {c['scontrol']}, sinfo {c['sinfo']})")
print(f"poller turns           {s['polls']}")
print(f"squeue calls per turn  {c['squeue'] / max(s['polls'], 1):.2f}")
print(f"calls per spec         {s['total_calls'] / n:.2f}")
PY
