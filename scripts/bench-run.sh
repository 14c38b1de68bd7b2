#!/usr/bin/env bash
# Benchmark for `treefarm run` against plain git.
#
# A synthetic repository of ~3,000 files / ~30 MB and 8 specs, each declaring
# one distinct new file. Each round, in the same repository:
#
#   git       a shell loop of `git worktree add -q -b bench/<id> <path> roadmap`
#             for the 8 branches, one after the other — the git work treefarm
#             has to do at least;
#   git-par   the same work at treefarm's concurrency: the admin part one
#             after the other (`git worktree add --no-checkout -b ...`; git's
#             own admin files do not survive concurrent `worktree add`s), then
#             the 8 checkouts at once (`git reset -q --hard` in each, `&`);
#   treefarm  `treefarm run --no-merge --instances 8 --agent true`, whole
#             process wall time (plan, plant 8 worktrees, run 8 agents that
#             exit at once, journal, report);
#   events    `treefarm run --no-merge --instances 8 --json` with an agent whose
#             last act is writing a nanosecond timestamp (outside the worktree),
#             while a python3 reader timestamps each stdout line on arrival.
#
# Between steps everything is removed again (worktrees, branches, archive refs,
# run state), so every step starts from the same repository. The order of the
# git and treefarm steps alternates between rounds; one untimed warm-up round
# fills the page cache first.
#
# Figures (median over the rounds):
#
#   ratio     T_treefarm / T_git. Goal: <= 0.8.
#   overhead  per-instance coordinator overhead, in ms:
#                 (T_treefarm - T_gitwork) / 8
#             where T_gitwork, the git-equivalent work time, is the faster of
#             `git` and `git-par` in the same round: the best plain git does
#             for the same 8 worktrees. The difference is what the coordinator
#             adds per instance on top of that work: process start, spec
#             parsing, planning, spawning and reaping agents, state and event
#             writes. Negative when treefarm beats both. Goal: < 5 ms.
#   delay     exit->event delay: arrival time of an instance's `exited` line on
#             treefarm's stdout minus the agent's last timestamp (CLOCK_REALTIME
#             on both sides), over 8 instances x rounds; median and max. Goal:
#             < 20 ms.
#
# `scripts/bench-run.sh big` runs the big-repo scenario instead (below);
# `scripts/bench-run.sh isolation` the cost of Landlock isolation (below).
#
# Environment: TREEFARM_BIN (default target/release/treefarm, built if
# missing), BENCH_ROUNDS (5), BENCH_FILES (3000), BENCH_MB (30), BENCH_KEEP=1
# keeps the scratch directory. Exit code: 0 unless something failed (a missed
# goal is printed, not an error).
set -euo pipefail

# shellcheck source=scripts/bench/lib.sh
source "$(dirname "$0")/bench/lib.sh"

# --- big-repo scenario (`scripts/bench-run.sh big`) ---------------------------
#
# A synthetic repository of BIG_FILES (20,000) files in 200 directories
# (src/dNNN/, ~BIG_MB = 200 MB, packed), 4 specs each declaring one directory
# (`src/dNNN/**`), `treefarm run --no-merge --instances 4 --agent true --json`
# with `worktree.sparse: auto` and `off`, same rounds, alternating order:
#
#   plant     arrival of the last `planted` event minus arrival of
#             `run_started` on stdout (the four worktrees, planted at once);
#   disk      `du` of the worktree folder after the run (allocated blocks);
#   tar       the same four full trees copied with tar (`git ls-files` of the
#             main worktree piped through `tar -c | tar -x`, four at once): the
#             physical floor of writing those files.
#
# Goals: sparse auto uses >= 10x less disk and plants >= 5x faster than off.
big_repo_scenario() {
    local rounds=${BENCH_ROUNDS:-3} nfiles=${BIG_FILES:-20000} mb=${BIG_MB:-200}
    local repo=$BENCH_TMP/big res=$BENCH_TMP/big-results n=4
    mkdir -p "$res"
    note "treefarm: $TF"
    note "generating $nfiles files / $mb MB in 200 directories ..."
    git init -q -b main "$repo"
    git -C "$repo" config gc.auto 0
    python3 - "$repo" "$nfiles" $((mb * 1024 * 1024)) <<'PY'
import base64, os, random, sys
root, n, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per = max(64, total // n)
rng = random.Random(17)
for i in range(n):
    d = os.path.join(root, "src", "d%03d" % (i % 200))
    os.makedirs(d, exist_ok=True)
    raw = base64.b64encode(rng.randbytes(per * 3 // 4 + 3))[:per - per // 77]
    with open(os.path.join(d, "f%05d.txt" % i), "wb") as f:
        f.write(b"\n".join(raw[j:j + 76] for j in range(0, len(raw), 76)) + b"\n")
PY
    local i id
    for ((i = 1; i <= n; i++)); do
        id=$(printf '%03d' "$i")
        mkdir -p "$repo/specs"
        printf -- '---\ntitle: big %s\nfiles:\n  - src/d%03d/**\n---\nWork in one directory.\n' \
            "$id" $((i * 37)) >"$repo/specs/SPEC-$id-big.md"
    done
    printf 'agent:\n  command: "true"\n' >"$repo/treefarm.yaml"
    commit_all "$repo" "big synthetic repository"
    note "generated: $(git -C "$repo" ls-files | wc -l) files, $(du -sm --exclude=.git "$repo" | cut -f1) MB checked out"

    big_run() { # MODE OUT
        printf 'agent:\n  command: "true"\nworktree:\n  sparse: %s\n' "$1" >"$repo/treefarm.yaml"
        must_measure --lines "$2" "treefarm run (sparse $1)" \
            "$TF" -C "$repo" run --no-merge --instances "$n" --json --agent true
        python3 - "$2" <<'PY' >"$2.plant_ms"
import json, sys
start = last = None
for raw in open(sys.argv[1] + ".lines"):
    t, line = raw.rstrip("\n").split("\t", 1)
    ev = json.loads(line).get("event")
    if ev == "run_started":
        start = int(t)
    if ev == "planted":
        last = int(t)
if start is None or last is None:
    sys.exit("error: no run_started/planted events")
print("%.1f" % ((last - start) / 1e6))
PY
        du -s --block-size=1 "$repo.treefarm" | cut -f1 >"$2.disk"
        reset_treefarm "$repo"
    }
    tar_copy() { # OUT
        local dest=$BENCH_TMP/tar-copy
        rm -rf "$dest"
        mkdir -p "$dest"
        must_measure "$1" "tar copy" bash -c '
            cd "$1" || exit 1
            pids=()
            for k in 1 2 3 4; do
                mkdir -p "$2/$k"
                (git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$2/$k") & pids+=($!)
            done
            rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done; exit $rc
        ' tar "$repo" "$dest"
        rm -rf "$dest"
    }
    reset_treefarm "$repo"
    local r
    for ((r = 0; r <= rounds; r++)); do
        note "big round $r/$rounds ..."
        if ((r % 2 == 0)); then
            big_run off "$res/off.$r"
            big_run auto "$res/auto.$r"
        else
            big_run auto "$res/auto.$r"
            big_run off "$res/off.$r"
        fi
        tar_copy "$res/tar.$r"
        ((r == 0)) && continue
        cat "$res/off.$r.plant_ms" >>"$res/off_ms"
        cat "$res/auto.$r.plant_ms" >>"$res/auto_ms"
        cat "$res/off.$r.disk" >>"$res/off_disk"
        cat "$res/auto.$r.disk" >>"$res/auto_disk"
        ns_to_ms "$(measured_field "$res/tar.$r" 1)" >>"$res/tar_ms"
    done
    local off_ms auto_ms tar_ms off_disk auto_disk
    read -r off_ms _ < <(stats <"$res/off_ms")
    read -r auto_ms _ < <(stats <"$res/auto_ms")
    read -r tar_ms _ < <(stats <"$res/tar_ms")
    read -r off_disk _ < <(stats <"$res/off_disk")
    read -r auto_disk _ < <(stats <"$res/auto_disk")
    echo
    echo "big repository: $(git -C "$repo" ls-files | wc -l) files / $mb MB in 200 dirs, $n specs of one dir each, $rounds rounds (medians)"
    hr
    printf '%-28s %12s %14s\n' "" "plant (ms)" "disk (MiB)"
    printf '%-28s %12s %14s\n' "sparse: off (whole tree)" "$off_ms" "$(calc "$off_disk / 1048576")"
    printf '%-28s %12s %14s\n' "sparse: auto" "$auto_ms" "$(calc "$auto_disk / 1048576")"
    printf '%-28s %12s\n' "tar copy of the 4 full trees" "$tar_ms"
    hr
    printf 'disk off/auto   %sx   goal >= 10x: %s\n' "$(calc "$off_disk / $auto_disk")" "$(goal "$off_disk / $auto_disk" '>=' 10)"
    printf 'plant off/auto  %sx   goal >= 5x: %s\n' "$(calc "$off_ms / $auto_ms")" "$(goal "$off_ms / $auto_ms" '>=' 5)"
    printf 'full plant/tar  %sx   (tar is the floor of writing the files)\n' "$(calc "$off_ms / $tar_ms")"
}

# --- isolation scenario (`scripts/bench-run.sh isolation`) ---------------------
#
# The cost of Landlock isolation: the repository of the default scenario
# (BENCH_FILES files / BENCH_MB MB, 8 specs of one new file each), then
# `treefarm run --no-merge --instances 8 --agent true` (plant 8 worktrees, run
# 8 no-op agents, journal, report) with `--isolation landlock` and `--isolation
# off`, whole process wall time, same rounds, alternating order, one untimed
# warm-up round. Under landlock each agent also gets its private git
# directory (created before it starts, imported after it exits).
#
# Goal: median(landlock) / median(off) <= 1.05 (wall time). Also printed: the
# median of the per-round ratios (each round runs both back to back) and the
# CPU time (user + sys of treefarm and its agents), which a loaded machine
# moves far less than wall time.
isolation_scenario() {
    local rounds=${BENCH_ROUNDS:-5} repo=$BENCH_TMP/iso res=$BENCH_TMP/iso-results n=8 i id
    mkdir -p "$res"
    note "treefarm: $TF"
    make_repo "$repo" "${BENCH_FILES:-3000}" $((${BENCH_MB:-30} * 1024 * 1024))
    for ((i = 1; i <= n; i++)); do
        id=$(printf '%03d' "$i")
        write_spec "$repo" "$id" "new/$id.txt"
    done
    # No disk reserve: this measures isolation, not the disk budget check
    # (which refuses on a nearly full shared disk).
    printf 'agent:\n  command: "true"\nworktree:\n  reserve: "0%%"\n' >"$repo/treefarm.yaml"
    commit_all "$repo" "isolation bench"
    iso_run() { # MODE OUT
        must_measure "$2" "treefarm run (isolation $1)" python3 -c '
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write("%d\n" % ((ru.ru_utime + ru.ru_stime) * 1e9))
sys.exit(rc)
' "$2.cpu" "$TF" -C "$repo" run --no-merge --instances "$n" --agent true --isolation "$1"
        # Proof that the agents really ran confined: their private git dirs.
        if [[ $1 = landlock ]] && ! compgen -G "$repo/.git/treefarm/runs/*/instances/001/git/HEAD" >/dev/null; then
            die "isolation landlock: no private git directory was made (is Landlock available?)"
        fi
        reset_treefarm "$repo"
    }
    reset_treefarm "$repo"
    local r
    for ((r = 0; r <= rounds; r++)); do
        note "isolation round $r/$rounds ..."
        if ((r % 2 == 0)); then
            iso_run off "$res/off.$r"
            iso_run landlock "$res/landlock.$r"
        else
            iso_run landlock "$res/landlock.$r"
            iso_run off "$res/off.$r"
        fi
        ((r == 0)) && continue
        ns_to_ms "$(measured_field "$res/off.$r" 1)" >>"$res/off_ms"
        ns_to_ms "$(measured_field "$res/landlock.$r" 1)" >>"$res/landlock_ms"
        # Same round, back to back: the ratio least moved by load drifting
        # over the rounds.
        calc "$(measured_field "$res/landlock.$r" 1) / $(measured_field "$res/off.$r" 1)" >>"$res/paired"
        ns_to_ms "$(cat "$res/off.$r.cpu")" >>"$res/off_cpu"
        ns_to_ms "$(cat "$res/landlock.$r.cpu")" >>"$res/landlock_cpu"
    done
    local paired off_cpu landlock_cpu
    read -r paired _ < <(stats <"$res/paired")
    read -r off_cpu _ < <(stats <"$res/off_cpu")
    read -r landlock_cpu _ < <(stats <"$res/landlock_cpu")
    local off_ms landlock_ms off_min off_max ll_min ll_max
    read -r off_ms off_min off_max _ < <(stats <"$res/off_ms")
    read -r landlock_ms ll_min ll_max _ < <(stats <"$res/landlock_ms")
    echo
    echo "isolation: plant and run $n no-op agents, $(git -C "$repo" ls-files | wc -l) files, $rounds rounds (median, min-max)"
    hr
    printf '%-22s %10s ms  (%s-%s)\n' "isolation: off" "$off_ms" "$off_min" "$off_max"
    printf '%-22s %10s ms  (%s-%s)\n' "isolation: landlock" "$landlock_ms" "$ll_min" "$ll_max"
    hr
    printf 'ratio landlock/off  %s   goal <= 1.05: %s\n' "$(calc "$landlock_ms / $off_ms")" "$(goal "$landlock_ms / $off_ms" '<=' 1.05)"
    printf 'paired ratio        %s   (median of the per-round ratios)\n' "$paired"
    printf 'cpu (user+sys)      off %s ms, landlock %s ms, ratio %s (less moved by other load than wall time)\n' \
        "$off_cpu" "$landlock_cpu" "$(calc "$landlock_cpu / $off_cpu")"
}

ROUNDS=${BENCH_ROUNDS:-5}
NFILES=${BENCH_FILES:-3000}
MB=${BENCH_MB:-30}
N=8

bench_init
if [[ ${1:-} = big ]]; then
    big_repo_scenario
    exit 0
fi
if [[ ${1:-} = isolation ]]; then
    isolation_scenario
    exit 0
fi
REPO=$BENCH_TMP/repo
GITWT=$BENCH_TMP/git-wt
STAMPS=$BENCH_TMP/stamps
RES=$BENCH_TMP/results
mkdir -p "$RES"

note "treefarm: $TF"
note "generating $NFILES files / $MB MB in $REPO ..."
t0=$(date +%s%N)
make_repo "$REPO" "$NFILES" $((MB * 1024 * 1024))
IDS=()
for ((i = 1; i <= N; i++)); do
    id=$(printf '%03d' "$i")
    IDS+=("$id")
    write_spec "$REPO" "$id" "new/$id.txt"
done
cat >"$REPO/treefarm.yaml" <<'EOF'
agent:
  command: "true"
EOF
commit_all "$REPO" "synthetic repository"
git -C "$REPO" branch roadmap
note "generated in $(ns_to_ms $(($(date +%s%N) - t0))) ms: $(git -C "$REPO" ls-files | wc -l) files, $(du -sm --apparent-size --exclude=.git "$REPO" | cut -f1) MB checked out"

# --- the steps ----------------------------------------------------------------

# git_step OUT serial|parallel
git_step() {
    rm -rf "$GITWT"
    mkdir -p "$GITWT"
    local script
    if [[ $2 = serial ]]; then
        script='for id; do git worktree add -q -b "bench/$id" "$wt/$id" roadmap; done'
    else
        script='for id; do git worktree add -q --no-checkout -b "bench/$id" "$wt/$id" roadmap; done
                pids=(); for id; do git -C "$wt/$id" reset -q --hard & pids+=($!); done
                rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done; exit $rc'
    fi
    must_measure "$1" "git worktree add ($2)" bash -c "
        set -e
        cd \"\$1\"; wt=\$2; shift 2
        $script
    " bench "$REPO" "$GITWT" "${IDS[@]}"
    local n
    n=$(count_worktrees "$REPO" "$GITWT/")
    ((n == N)) || die "git ($2) made $n worktrees, not $N"
    rm -rf "$GITWT"
    git -C "$REPO" worktree prune
    git -C "$REPO" for-each-ref --format='delete %(refname)' refs/heads/bench/ |
        git -C "$REPO" update-ref --stdin
}

check_planted() { # WHAT
    local w b
    w=$(count_worktrees "$REPO" "$REPO.treefarm/")
    b=$(count_refs "$REPO" refs/heads/treefarm/)
    ((w == N && b == N)) ||
        die "$1: expected $N worktrees and $N treefarm/* branches, found $w and $b"
}

treefarm_step() { # OUT
    must_measure "$1" "treefarm run" "$TF" -C "$REPO" run --no-merge --instances "$N" --agent true
    check_planted "treefarm run"
    reset_treefarm "$REPO"
}

# events_step OUT: OUT.delays gets one exit->event delay (ms) per instance.
events_step() {
    rm -rf "$STAMPS"
    mkdir -p "$STAMPS"
    local out=$1
    must_measure --lines "$out" "treefarm run --json" \
        "$TF" -C "$REPO" run --no-merge --instances "$N" --json \
        --agent "date +%s%N > $STAMPS/\$TREEFARM_SPEC_ID"
    python3 - "$out" "$STAMPS" "$N" <<'PY'
import json, os, sys
out, stamps, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
delays, kinds, summary = [], set(), False
for raw in open(out + ".lines"):
    t, line = raw.rstrip("\n").split("\t", 1)
    try:
        ev = json.loads(line)
    except ValueError:
        sys.exit("error: stdout line is not JSON: %r" % line[:200])
    kinds.add(ev.get("event"))
    if ev.get("event") == "summary":
        summary = True
    if ev.get("event") != "exited":
        continue
    sid = ev.get("id")
    if ev.get("result", "succeeded") != "succeeded":
        sys.exit("error: instance %s exited with %r" % (sid, ev.get("result")))
    path = os.path.join(stamps, str(sid))
    if not os.path.exists(path):
        sys.exit("error: no timestamp written by the agent of %s" % sid)
    delays.append((int(t) - int(open(path).read().strip())) / 1e6)
if len(delays) != n:
    sys.exit("error: %d `exited` events, expected %d (events seen: %s)" % (len(delays), n, sorted(map(str, kinds))))
if not summary:
    sys.exit("error: no `summary` event on stdout")
with open(out + ".delays", "w") as f:
    f.writelines("%.3f\n" % d for d in delays)
PY
    check_planted "treefarm run --json"
    reset_treefarm "$REPO"
}

# --- rounds -------------------------------------------------------------------

reset_treefarm "$REPO"
: >"$RES/delays"
printf '%-7s %11s %11s %14s %8s %15s\n' round "git (ms)" "git-par" "treefarm (ms)" ratio "overhead/inst" >"$RES/table"
for ((r = 0; r <= ROUNDS; r++)); do
    label=$r
    ((r == 0)) && label=warmup
    note "round $label/$ROUNDS ..."
    if ((r % 2 == 0)); then
        git_step "$RES/git.$r" serial
        git_step "$RES/par.$r" parallel
        treefarm_step "$RES/tf.$r"
    else
        treefarm_step "$RES/tf.$r"
        git_step "$RES/par.$r" parallel
        git_step "$RES/git.$r" serial
    fi
    events_step "$RES/ev.$r"
    ((r == 0)) && continue

    g=$(measured_field "$RES/git.$r" 1)
    p=$(measured_field "$RES/par.$r" 1)
    t=$(measured_field "$RES/tf.$r" 1)
    ratio=$(calc "$t / $g")
    over=$(calc "($t - min($g, $p)) / $N / 1e6")
    echo "$ratio" >>"$RES/ratios"
    echo "$over" >>"$RES/overheads"
    ns_to_ms "$g" >>"$RES/git_ms"
    ns_to_ms "$p" >>"$RES/par_ms"
    ns_to_ms "$t" >>"$RES/tf_ms"
    measured_field "$RES/tf.$r" 2 >>"$RES/tf_rss"
    measured_field "$RES/ev.$r" 2 >>"$RES/tf_rss"
    cat "$RES/ev.$r.delays" >>"$RES/delays"
    printf '%-7s %11s %11s %14s %8s %12s ms\n' "$r" "$(ns_to_ms "$g")" "$(ns_to_ms "$p")" "$(ns_to_ms "$t")" "$ratio" "$over" >>"$RES/table"
done

# --- report -------------------------------------------------------------------

read -r git_med _ _ _ < <(stats <"$RES/git_ms")
read -r par_med _ _ _ < <(stats <"$RES/par_ms")
read -r tf_med _ _ _ < <(stats <"$RES/tf_ms")
read -r ratio_med ratio_min ratio_max _ < <(stats <"$RES/ratios")
read -r over_med over_min over_max _ < <(stats <"$RES/overheads")
read -r d_med _ d_max d_n < <(stats <"$RES/delays")
read -r _ _ rss_max _ < <(stats <"$RES/tf_rss")

echo
echo "treefarm run vs git worktree add (ratio against the serial loop) — $N instances, $(git -C "$REPO" ls-files | wc -l) files / $MB MB, $ROUNDS rounds"
hr
cat "$RES/table"
hr
printf '%-7s %11s %11s %14s %8s %12s ms\n' median "$git_med" "$par_med" "$tf_med" "$ratio_med" "$over_med"
echo
printf 'ratio treefarm/git      median %s (min %s, max %s)   goal <= 0.8: %s\n' \
    "$ratio_med" "$ratio_min" "$ratio_max" "$(goal "$ratio_med" '<=' 0.8)"
printf 'overhead per instance   median %s ms (min %s, max %s)   goal < 5 ms: %s\n' \
    "$over_med" "$over_min" "$over_max" "$(goal "$over_med" '<' 5)"
printf 'exit -> exited event    median %s ms, max %s ms over %s instances   goal < 20 ms: median %s, max %s\n' \
    "$d_med" "$d_max" "$d_n" "$(goal "$d_med" '<' 20)" "$(goal "$d_max" '<' 20)"
printf 'treefarm peak RSS       %s MB (largest over all runs)\n' "$(calc "$rss_max / 1024")"
