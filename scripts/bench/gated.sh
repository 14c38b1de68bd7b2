# shellcheck shell=bash
# The merge queue's gated scenario of scripts/bench-merge.sh
# (`bench-merge.sh gated`); sourced after lib.sh and bench_init.
#
# 16 specs, each writing its own file; spec 007 (the culprit) also writes
# `bad.txt`, which the gate refuses; the gate sleeps about a second first.
# For each configuration (untimed) `run --no-merge` makes the branches, then
# `treefarm merge --json` is timed and the gate appends a line per run to a
# counter file. Checked with git: the 15 others merged (16 with no culprit),
# the culprit's file not on `roadmap`. Configurations, all in one run:
# merge.batch 1 (serial: one gate per branch, the baseline), the default
# (batch 8), batch 16, gate_jobs 2 (batch 8), and with no culprit batch 16
# and the default. Goals: with the culprit, gate runs <= 9 and wall time
# <= 0.5x serial; with no culprit and one batch, 1 gate run.
#
# Environment: BENCH_GATED_BRANCHES (16), BENCH_GATE_SECONDS (1).

gated_scenario() {
    local repo=$BENCH_TMP/gated nb=${BENCH_GATED_BRANCHES:-16} secs=${BENCH_GATE_SECONDS:-1}
    local runs=$BENCH_TMP/gate-runs results=$BENCH_TMP/gated.results table=$BENCH_TMP/gated.table
    git init -q -b main "$repo"
    echo "gated bench" >"$repo/README.md"
    local i id
    for ((i = 1; i <= nb; i++)); do
        id=$(printf '%03d' "$i")
        write_spec "$repo" "$id" "f$id.txt"
    done
    commit_all "$repo" "gated bench"
    local base
    base=$(git -C "$repo" rev-parse HEAD)
    printf '%-22s %10s %9s %10s %7s\n' configuration "gate runs" "wall (s)" "vs serial" merged >"$table"
    : >"$results"
    local serial="" name batch jobs culprit agent t0 t1 wall n merged want orig
    # The agent: its own file (and the culprit's `bad.txt`), one commit.
    agent='echo "spec $TREEFARM_SPEC_ID" > "f$TREEFARM_SPEC_ID.txt"; if [ "$TREEFARM_SPEC_ID" = "$BENCH_CULPRIT" ]; then echo bad > bad.txt; fi; git add -A && git commit -q -m "spec $TREEFARM_SPEC_ID"'
    while read -r name batch jobs culprit; do
        git -C "$repo" checkout -q --detach "$base"
        git -C "$repo" update-ref -d refs/heads/roadmap 2>/dev/null || true
        reset_treefarm "$repo"
        printf 'agent:\n  command: "true"\nmerge:\n  gate: %s\n  batch: %s\n  gate_jobs: %s\n' \
            "'sleep $secs; echo run >> $runs; test ! -e bad.txt'" "$batch" "$jobs" >"$repo/treefarm.yaml"
        git -C "$repo" add treefarm.yaml
        git -C "$repo" commit -q -m "config $name"
        orig=$(git -C "$repo" rev-parse HEAD)
        git -C "$repo" branch roadmap "$orig"
        BENCH_CULPRIT=$culprit "$TF" -C "$repo" -q run --no-merge --instances 4 --agent "$agent" \
            >/dev/null 2>"$BENCH_TMP/gated.setup.err" ||
            die "gated $name: run --no-merge failed: $(tail -n 3 "$BENCH_TMP/gated.setup.err")"
        rm -f "$runs"
        t0=$(date +%s%N)
        "$TF" -C "$repo" merge --json >"$BENCH_TMP/gated.$name.json" 2>"$BENCH_TMP/gated.$name.err" || true
        t1=$(date +%s%N)
        wall=$(calc "($t1 - $t0) / 1e9")
        n=0
        [[ -f $runs ]] && n=$(wc -l <"$runs")
        merged=$(git -C "$repo" rev-list --merges --count "$orig..refs/heads/roadmap")
        want=$((nb - 1))
        [[ $culprit = none ]] && want=$nb
        ((merged == want)) || die "gated $name: $merged branches merged, expected $want (see $BENCH_TMP/gated.$name.err)"
        if git -C "$repo" cat-file -e "refs/heads/roadmap:bad.txt" 2>/dev/null; then
            die "gated $name: the culprit landed"
        fi
        [[ -z $serial ]] && serial=$wall
        printf '%-22s %10s %9s %10s %7s\n' "$name" "$n" "$wall" "$(calc "$wall / $serial")" "$merged" >>"$table"
        echo "$name $n $wall" >>"$results"
    done <<'CONFIGS'
batch-1-serial 1 1 007
default-batch-8 8 1 007
batch-16 16 1 007
gate_jobs-2-batch-8 8 2 007
no-culprit-batch-16 16 1 none
no-culprit-default 8 1 none
CONFIGS
    reset_treefarm "$repo"
    echo
    echo "merge queue, gated: $nb branches, a ${secs}s gate, culprit 007 (merge.batch and gate_jobs as named)"
    hr
    cat "$table"
    hr
    local worst_runs worst_ratio one
    worst_runs=$(awk '$1 != "batch-1-serial" && $1 !~ /^no-culprit/ {print $2}' "$results" | sort -n | tail -n 1)
    worst_ratio=$(awk -v s="$serial" '$1 != "batch-1-serial" && $1 !~ /^no-culprit/ {printf "%.3f\n", $3 / s}' "$results" | sort -n | tail -n 1)
    one=$(awk '$1 == "no-culprit-batch-16" {print $2}' "$results")
    printf 'with the culprit, batching: gate runs at most %s   goal <= 9: %s\n' "$worst_runs" "$(goal "$worst_runs" '<=' 9)"
    printf 'with the culprit, batching: wall time at most %s x serial   goal <= 0.5: %s\n' "$worst_ratio" "$(goal "$worst_ratio" '<=' 0.5)"
    printf 'no culprit, one batch: %s gate run(s)   goal 1: %s\n' "$one" "$(goal "$one" '<=' 1)"
}
