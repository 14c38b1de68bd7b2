#!/usr/bin/env bash
# Benchmark of `treefarm check` at scale: 10,000 and 20,000 specs of ~10
# declared paths each (scripts/bench/gen-repo.sh), wall time and peak memory
# of `treefarm check --json`, and the 20k/10k ratio.
# Goal: 10k under 1 s, 20k/10k <= 2.3.
#
# Also runs the library-level benchmark (find_overlaps + plan_waves on the same
# layout, no git, no spec parsing): tests/integration/overlap_scale.rs.
#
#   scripts/bench-check.sh                 # both
#   BENCH_SKIP_LIB=1 scripts/bench-check.sh
#   TREEFARM_BIN=/path/to/treefarm BENCH_DIR=/tmp/x BENCH_RUNS=3 scripts/bench-check.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
bin=${TREEFARM_BIN:-$target_dir/release/treefarm}
bench_dir=${BENCH_DIR:-${TMPDIR:-/tmp}/treefarm-bench}
runs=${BENCH_RUNS:-3}
sizes=(10000 20000)

if [[ -z ${BENCH_SKIP_LIB:-} ]]; then
    echo "== library: find_overlaps + plan_waves (tests/integration/overlap_scale.rs)"
    cargo test --release --quiet --test integration overlap_scale:: -- --ignored --nocapture 2>&1 |
        grep '^overlap_scale' || echo "library benchmark failed" >&2
fi

# Always build unless a binary was given: a release binary left in the target
# folder by an older checkout would be measured instead of this one.
if [[ -z ${TREEFARM_BIN:-} ]]; then
    echo "== building $bin"
    cargo build --release --quiet --bin treefarm
fi
if ! "$bin" check --help >/dev/null 2>&1; then
    echo "== $bin has no \`check\` command yet; skipping the CLI benchmark"
    exit 0
fi

# Wall seconds, peak RSS (KiB) and CPU seconds (user + sys) of one command:
# GNU time when installed, else bash's clock and the peak of the child from
# /proc (sampled), and no CPU figure. CPU time is the figure to trust on a
# loaded machine, where wall time mostly measures the other processes.
measure() {
    local out=$1
    shift
    if /usr/bin/time -f '%e %M %U %S' -o "$out.time" true 2>/dev/null; then
        set +e
        /usr/bin/time -f '%e %M %U %S' -o "$out.time" "$@" >"$out" 2>"$out.err"
        local code=$?
        set -e
        local user sys
        read -r wall rss user sys < <(tail -n1 "$out.time")
        cpu=$(echo "$user + $sys" | bc)
    else
        local start end peak=0 pid cur
        start=$(date +%s.%N)
        "$@" >"$out" 2>"$out.err" &
        pid=$!
        while kill -0 "$pid" 2>/dev/null; do
            cur=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
            ((${cur:-0} > peak)) && peak=$cur
            sleep 0.01
        done
        set +e
        wait "$pid"
        local code=$?
        set -e
        end=$(date +%s.%N)
        wall=$(echo "$end - $start" | bc)
        rss=$peak
        cpu=$wall
    fi
    exit_code=$code
}

declare -A best_wall best_cpu peak_rss
for n in "${sizes[@]}"; do
    repo=$bench_dir/repo-$n
    if [[ ! -f $repo/.bench-ok ]]; then
        echo "== generating $n specs in $repo"
        scripts/bench/gen-repo.sh "$repo" "$n"
        touch "$repo/.bench-ok"
    fi
    best=
    best_c=
    peak=0
    for ((r = 1; r <= runs; r++)); do
        measure "$bench_dir/check-$n.json" env -C "$repo" "$bin" check --json
        if [[ $exit_code -ne 3 && $exit_code -ne 0 ]]; then
            echo "treefarm check exited $exit_code on $n specs:" >&2
            tail -n 20 "$bench_dir/check-$n.json.err" >&2
            exit 1
        fi
        if [[ -z $best ]] || (($(echo "$wall < $best" | bc))); then best=$wall; fi
        if [[ -z $best_c ]] || (($(echo "$cpu < $best_c" | bc))); then best_c=$cpu; fi
        ((rss > peak)) && peak=$rss
    done
    overlaps=$(grep -o '"a":' "$bench_dir/check-$n.json" | wc -l)
    best_wall[$n]=$best
    best_cpu[$n]=$best_c
    peak_rss[$n]=$peak
    printf '== check --json, %6d specs: %6.2f s wall, %6.2f s CPU (best of %d), peak RSS %7.1f MiB, exit %d, %d overlaps, %d bytes of JSON\n' \
        "$n" "$best" "$best_c" "$runs" "$(echo "$peak / 1024" | bc -l)" "$exit_code" "$overlaps" \
        "$(wc -c <"$bench_dir/check-$n.json")"
done

ratio=$(echo "${best_wall[20000]} / ${best_wall[10000]}" | bc -l)
printf '== ratio 20k/10k: %.2f (goal <= 2.3); 10k: %.2f s (goal < 1 s)\n' "$ratio" "${best_wall[10000]}"
cpu_ratio=$(echo "${best_cpu[20000]} / ${best_cpu[10000]}" | bc -l)
printf '== CPU: 10k %.2f s, 20k %.2f s, ratio %.2f; load average now: %s\n' \
    "${best_cpu[10000]}" "${best_cpu[20000]}" "$cpu_ratio" "$(cut -d' ' -f1-3 /proc/loadavg)"
