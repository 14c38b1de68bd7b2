#!/usr/bin/env bash
# Benchmark for `treefarm merge` against plain git.
#
# A synthetic repository of ~3,000 files and 50 specs, each declaring one
# distinct existing file (spread over the 100 directories). Each round:
#
#   setup     (untimed) `roadmap` back to its original tip, no treefarm state,
#             then `treefarm run --no-merge --instances 8 --agent <append a line
#             to the declared file and commit>`: 50 branches `treefarm/<id>`,
#             one commit each. Their tips are copied to `bench/<id>`.
#   git       in a separate worktree on branch `roadmap-git`, reset (untimed) to
#             the original roadmap tip: a loop of
#             `git merge --no-ff -q --no-edit bench/<id>` over the 50 branches
#             in spec order (each merge also updates that worktree, as git must).
#   treefarm  `treefarm merge --json`: the 50 succeeded branches of the latest
#             run into `roadmap`, no checkout; whole process wall time. Whatever
#             else the command does by default (journal, pruning merged
#             worktrees and branches) is part of the time, as a user would see
#             it. For a breakdown, the events are stamped as they arrive on
#             stdout: "to last merged" is the time from the spawn to the last
#             `merged` event (the merging proper, prune and wrap-up excluded).
#
# The order of the git and treefarm steps alternates between rounds (the
# untimed setup already reads every object both steps need, so no warm-up
# round). After each round the result is checked
# with git as the oracle: `roadmap` must hold 50 new merge commits and the same
# tree as `roadmap-git`.
#
# BENCH_MERGE_KEEP=1 sets up with `run --no-merge --keep`, so `treefarm merge`
# keeps the merged worktrees and branches: the merging alone, without the
# pruning (which removes 50 checkouts and is the bulk of the default's time on
# a slow file system).
#
# Figure: ratio = T_treefarm / T_git, median over the rounds. Goal: <= 0.3.
# Also shown: the same ratio for "to last merged" (informational).
#
# `bench-merge.sh gated` runs the merge queue's gated scenario instead
# (scripts/bench/gated.sh): gate runs and wall time of merge.batch 1 against
# batching, bisection and parallel gates, 16 branches, a 1 s gate, a culprit.
#
# Environment: TREEFARM_BIN (default target/release/treefarm, built if
# missing), BENCH_ROUNDS (5), BENCH_BRANCHES (50), BENCH_FILES (3000),
# BENCH_MB (30), BENCH_MERGE_KEEP (0), BENCH_KEEP=1 keeps the scratch directory. Exit code: 0 unless
# something failed (a missed goal is printed, not an error).
set -euo pipefail

# shellcheck source=scripts/bench/lib.sh
source "$(dirname "$0")/bench/lib.sh"

ROUNDS=${BENCH_ROUNDS:-5}
NB=${BENCH_BRANCHES:-50}
NFILES=${BENCH_FILES:-3000}
MB=${BENCH_MB:-30}
KEEP_FLAG=()
[[ ${BENCH_MERGE_KEEP:-0} = 1 ]] && KEEP_FLAG=(--keep)
((NB <= NFILES)) || die "BENCH_BRANCHES must not exceed BENCH_FILES"

# shellcheck source=scripts/bench/gated.sh
source "$(dirname "$0")/bench/gated.sh"
if [[ ${1:-} = gated ]]; then
    bench_init
    gated_scenario
    exit 0
fi

bench_init
REPO=$BENCH_TMP/repo
GITWT=$BENCH_TMP/git-merge
RES=$BENCH_TMP/results
mkdir -p "$RES"

note "treefarm: $TF"
note "generating $NFILES files / $MB MB in $REPO ..."
t0=$(date +%s%N)
make_repo "$REPO" "$NFILES" $((MB * 1024 * 1024))
IDS=()
for ((i = 1; i <= NB; i++)); do
    id=$(printf '%03d' "$i")
    IDS+=("$id")
    # Distinct files, spread evenly over the repository.
    write_spec "$REPO" "$id" "$(repo_file_path $(((i - 1) * NFILES / NB)))"
done
cat >"$REPO/treefarm.yaml" <<'EOF'
agent:
  command: "true"
EOF
commit_all "$REPO" "synthetic repository"
git -C "$REPO" branch roadmap
ORIG=$(git -C "$REPO" rev-parse refs/heads/roadmap)
git -C "$REPO" worktree add -q -b roadmap-git "$GITWT" "$ORIG"
note "generated in $(ns_to_ms $(($(date +%s%N) - t0))) ms: $(git -C "$REPO" ls-files | wc -l) files"

# The agent: append to its one declared file and commit, nothing else.
AGENT='echo "spec $TREEFARM_SPEC_ID" >> "$(printf %s "$TREEFARM_FILES" | head -n 1)" && git add -A && git commit -q -m "spec $TREEFARM_SPEC_ID"'

# --- the steps ----------------------------------------------------------------

setup_round() { # R
    git -C "$REPO" update-ref refs/heads/roadmap "$ORIG"
    reset_treefarm "$REPO"
    git -C "$REPO" for-each-ref --format='delete %(refname)' refs/heads/bench/ |
        git -C "$REPO" update-ref --stdin
    local t0 s
    t0=$(date +%s%N)
    must_measure "$RES/setup.$1" "treefarm run --no-merge (setup)" \
        "$TF" -C "$REPO" run --no-merge "${KEEP_FLAG[@]}" --instances 8 --agent "$AGENT"
    s=$(calc "$(measured_field "$RES/setup.$1" 1) / 1e9")
    local n id tip
    n=$(count_refs "$REPO" refs/heads/treefarm/)
    ((n == NB)) || die "setup: expected $NB treefarm/* branches, found $n"
    for id in "${IDS[@]}"; do
        tip=$(git -C "$REPO" rev-parse --verify -q "refs/heads/treefarm/$id") ||
            die "setup: no branch treefarm/$id"
        [[ $(git -C "$REPO" rev-list --count "$ORIG..$tip") = 1 ]] ||
            die "setup: treefarm/$id does not hold exactly one commit on top of roadmap"
        echo "create refs/heads/bench/$id $tip"
    done | git -C "$REPO" update-ref --stdin
    git -C "$GITWT" reset -q --hard "$ORIG"
    note "  setup: run --no-merge ${KEEP_FLAG[*]} of $NB specs took ${s}s (untimed)"
}

git_step() { # OUT
    must_measure "$1" "git merge loop" bash -c '
        set -e
        cd "$1"; shift
        for id; do git merge --no-ff -q --no-edit "bench/$id"; done
    ' bench "$GITWT" "${IDS[@]}"
}

# treefarm_step OUT: also writes OUT.phase, "<ms to the last merged event>
# <merged events> <pruned events>", from the --json events stamped on arrival.
# Returns 1 when `treefarm merge` failed (the round is then reported, not
# counted).
treefarm_step() {
    if ! measure_lines "$1" "$TF" -C "$REPO" merge --json; then
        note "  treefarm merge failed (exit $(measured_field "$1" 3)); stderr tail:"
        grep -v -E '^ +[0-9]+ +(merged|pruned) ' "$1.err" | tail -n 5 >&2 || true
    fi
    python3 - "$1" <<'PY'
import json, sys
out = sys.argv[1]
start = int(open(out).read().split()[3])
last, merged, pruned = None, 0, 0
for raw in open(out + ".lines"):
    t, line = raw.rstrip("\n").split("\t", 1)
    ev = json.loads(line)
    kind = ev.get("event")
    if kind == "merged":
        merged, last = merged + 1, int(t)
    elif kind == "pruned":
        pruned += 1
    elif kind not in ("summary", "batch"):
        # Anything else (kept, conflicted, refused, ...) is worth a look;
        # the merge queue's `batch` events are how the default merges.
        sys.stderr.write("  note: treefarm merge: %s\n" % line[:300])
with open(out + ".phase", "w") as f:
    f.write("%.3f %d %d\n" % (((last - start) / 1e6) if last else float("nan"), merged, pruned))
PY
    [[ $(measured_field "$1" 3) = 0 ]]
}

verify_round() { # R
    local merges t_tf t_git
    merges=$(git -C "$REPO" rev-list --merges --count "$ORIG..refs/heads/roadmap")
    ((merges == NB)) || die "round $1: roadmap holds $merges merge commits, expected $NB"
    merges=$(git -C "$REPO" rev-list --merges --count "$ORIG..refs/heads/roadmap-git")
    ((merges == NB)) || die "round $1: roadmap-git holds $merges merge commits, expected $NB"
    t_tf=$(git -C "$REPO" rev-parse 'refs/heads/roadmap^{tree}')
    t_git=$(git -C "$REPO" rev-parse 'refs/heads/roadmap-git^{tree}')
    [[ $t_tf = "$t_git" ]] ||
        die "round $1: roadmap tree $t_tf differs from git's merge result $t_git"
    [[ -z $(git -C "$REPO" status --porcelain --untracked-files=no) ]] ||
        die "round $1: treefarm merge changed the main worktree"
    # What `treefarm merge` left behind (informational).
    LEFT_WT=$(count_worktrees "$REPO" "$REPO.treefarm/")
    LEFT_BR=$(count_refs "$REPO" refs/heads/treefarm/)
}

# --- rounds -------------------------------------------------------------------

printf '%-7s %11s %14s %8s %16s %8s %14s\n' round "git (ms)" "treefarm (ms)" ratio "to last merged" ratio "merged/pruned" >"$RES/table"
FAILED=()
LEFT_WT=? LEFT_BR=?
for ((r = 1; r <= ROUNDS; r++)); do
    note "round $r/$ROUNDS ..."
    setup_round "$r"
    ok=1
    if ((r % 2 == 0)); then
        git_step "$RES/git.$r"
        treefarm_step "$RES/tf.$r" || ok=0
    else
        treefarm_step "$RES/tf.$r" || ok=0
        git_step "$RES/git.$r"
    fi
    if ((ok == 0)); then
        FAILED+=("$r")
        printf '%-7s %11s %14s   treefarm merge failed (exit %s), round not counted\n' "$r" \
            "$(ns_to_ms "$(measured_field "$RES/git.$r" 1)")" "$(ns_to_ms "$(measured_field "$RES/tf.$r" 1)")" \
            "$(measured_field "$RES/tf.$r" 3)" >>"$RES/table"
        continue
    fi
    verify_round "$r"

    g=$(measured_field "$RES/git.$r" 1)
    t=$(measured_field "$RES/tf.$r" 1)
    ratio=$(calc "$t / $g")
    read -r phase nmerged npruned <"$RES/tf.$r.phase"
    pratio=$(calc "$phase / ($g / 1e6)")
    echo "$ratio" >>"$RES/ratios"
    echo "$pratio" >>"$RES/pratios"
    echo "$phase" >>"$RES/phase_ms"
    ns_to_ms "$g" >>"$RES/git_ms"
    ns_to_ms "$t" >>"$RES/tf_ms"
    measured_field "$RES/tf.$r" 2 >>"$RES/tf_rss"
    printf '%-7s %11s %14s %8s %16s %8s %14s\n' "$r" "$(ns_to_ms "$g")" "$(ns_to_ms "$t")" "$ratio" "$phase" "$pratio" "$nmerged/$npruned" >>"$RES/table"
done
reset_treefarm "$REPO"

# --- report -------------------------------------------------------------------

if [[ ! -s $RES/ratios ]]; then
    cat "$RES/table"
    die "treefarm merge failed in every round"
fi

read -r git_med _ _ _ < <(stats <"$RES/git_ms")
read -r tf_med _ _ _ < <(stats <"$RES/tf_ms")
read -r ratio_med ratio_min ratio_max _ < <(stats <"$RES/ratios")
read -r phase_med _ _ _ < <(stats <"$RES/phase_ms")
read -r pratio_med _ _ _ < <(stats <"$RES/pratios")
read -r _ _ rss_max _ < <(stats <"$RES/tf_rss")

echo
echo "treefarm merge${KEEP_FLAG[*]:+ (run with --keep: no pruning)} vs git merge --no-ff — $NB branches, $(git -C "$REPO" ls-files | wc -l) files / $MB MB, $ROUNDS rounds"
hr
cat "$RES/table"
hr
printf '%-7s %11s %14s %8s %16s %8s\n' median "$git_med" "$tf_med" "$ratio_med" "$phase_med" "$pratio_med"
echo
printf 'ratio treefarm/git      median %s (min %s, max %s)   goal <= 0.3: %s\n' \
    "$ratio_med" "$ratio_min" "$ratio_max" "$(goal "$ratio_med" '<=' 0.3)"
printf 'to last merged event    median %s ms, ratio to git %s (informational)\n' "$phase_med" "$pratio_med"
printf 'per merge               git %s ms, treefarm %s ms\n' \
    "$(calc "$git_med / $NB")" "$(calc "$tf_med / $NB")"
printf 'left by treefarm merge  %s worktrees, %s treefarm/* branches (last round)\n' "$LEFT_WT" "$LEFT_BR"
printf 'treefarm merge peak RSS %s MB (largest over the rounds)\n' "$(calc "$rss_max / 1024")"
if ((${#FAILED[@]} > 0)); then
    echo
    die "treefarm merge failed in round(s) ${FAILED[*]} (medians are over the other rounds)"
fi
