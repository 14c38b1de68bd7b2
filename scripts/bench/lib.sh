# Shared helpers for scripts/bench-*.sh. Sourced, not run.
#
# Everything here works on a fresh machine: bash, git, coreutils, python3.
# Timing and peak RSS come from a tiny python3 runner (`measure`), so GNU time
# is not needed and both sides of a comparison are measured the same way.

# --- setup ------------------------------------------------------------------

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

note() {
    printf '%s\n' "$*" >&2
}

# bench_init: a scratch directory in $BENCH_TMP (removed on exit, unless
# BENCH_KEEP=1), git isolated from the user's config, no inherited TREEFARM_*
# settings (env overrides treefarm.yaml), and the treefarm binary in $TF.
bench_init() {
    BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/treefarm-bench.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM

    # cargo and rustup find their toolchain through the real HOME.
    local real_home=$HOME
    export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
    export HOME="$BENCH_TMP/home" LC_ALL=C TZ=UTC
    mkdir -p "$HOME"
    unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY \
        GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_CEILING_DIRECTORIES GIT_NAMESPACE
    export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com
    export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com

    local tf_bin=${TREEFARM_BIN:-}
    local v
    for v in $(compgen -e); do
        case $v in TREEFARM_*) unset "$v" ;; esac
    done

    if [[ -n $tf_bin ]]; then
        [[ -x $tf_bin ]] || die "TREEFARM_BIN=$tf_bin is not an executable file"
        TF=$(cd "$(dirname "$tf_bin")" && pwd)/$(basename "$tf_bin")
    else
        TF="${CARGO_TARGET_DIR:-$BENCH_ROOT/target}/release/treefarm"
        # Always through cargo, so a stale binary is never measured.
        note "building treefarm (cargo build --release) ..."
        (cd "$BENCH_ROOT" && HOME="$real_home" cargo build --release --locked --quiet) ||
            die "cargo build --release failed"
        [[ -x $TF ]] || die "no treefarm binary at $TF"
        [[ $TF = /* ]] || TF="$BENCH_ROOT/$TF"
    fi
    command -v python3 >/dev/null || die "python3 is required"
    command -v git >/dev/null || die "git is required"
}

bench_cleanup() {
    local rc=$?
    if [[ ${BENCH_KEEP:-0} = 1 ]]; then
        note "kept scratch directory $BENCH_TMP"
    elif [[ -n ${BENCH_TMP:-} && -d $BENCH_TMP ]]; then
        chmod -R u+w "$BENCH_TMP" 2>/dev/null || true
        rm -rf "$BENCH_TMP"
    fi
    exit "$rc"
}

# --- the synthetic repository ------------------------------------------------

# make_repo DIR NFILES TOTAL_BYTES: a repository with one commit on `main`
# holding NFILES files (src/mXX/dYY/fNNNNN.txt, 100 directories) of together
# about TOTAL_BYTES bytes of deterministic, poorly compressible text.
# commit_all packs the objects, as in a cloned repository.
make_repo() {
    local dir=$1 nfiles=$2 bytes=$3
    git init -q -b main "$dir"
    git -C "$dir" config user.name bench
    git -C "$dir" config user.email bench@example.com
    git -C "$dir" config gc.auto 0
    git -C "$dir" config core.fsync none 2>/dev/null || true
    python3 - "$dir" "$nfiles" "$bytes" <<'PY'
import base64, os, random, sys
root, n, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per = max(64, total // n)
rng = random.Random(42)
for i in range(n):
    d = os.path.join(root, "src", "m%02d" % (i % 10), "d%02d" % (i // 10 % 10))
    os.makedirs(d, exist_ok=True)
    body = per * 76 // 77  # the newlines make up the rest
    raw = base64.b64encode(rng.randbytes(body * 3 // 4 + 3))[:body]
    lines = b"\n".join(raw[j:j + 76] for j in range(0, len(raw), 76))
    with open(os.path.join(d, "f%05d.txt" % i), "wb") as f:
        f.write(lines + b"\n")
PY
}

# repo_file_path I: the path (relative to the repo root) of file number I.
repo_file_path() {
    local i=$1
    printf 'src/m%02d/d%02d/f%05d.txt' $((i % 10)) $((i / 10 % 10)) "$i"
}

# write_spec DIR ID PATH: specs/SPEC-<ID>-bench.md declaring the one file PATH.
write_spec() {
    local dir=$1 id=$2 path=$3
    mkdir -p "$dir/specs"
    cat >"$dir/specs/SPEC-$id-bench.md" <<EOF
# Bench spec $id

Touch the declared file.

**Files**:
- \`$path\`
EOF
}

# commit_all DIR MESSAGE: commit everything, then pack all objects (a real
# repository of this size is packed — cloned or gc'ed — and loose objects
# would make every object lookup, git's and libgit2's, a file system call).
commit_all() {
    git -C "$1" add -A
    git -C "$1" commit -q -m "$2"
    git -C "$1" repack -adq
    git -C "$1" prune-packed
}

# --- timing -----------------------------------------------------------------

# measure OUT CMD...: runs CMD (stdout to OUT.out, stderr to OUT.err) and writes
# "<wall_ns> <peak_rss_kb> <exit_code> <user_ns> <sys_ns>" to OUT. The clock
# runs from just before the spawn to just after the reap, in the same way for
# every command; the peak RSS is the largest of CMD and its descendants, the
# CPU times the sum over CMD and every descendant reaped (getrusage CHILDREN).
# Returns CMD's exit code.
measure() {
    local out=$1
    shift
    python3 - "$out" "$@" <<'PY'
import resource, subprocess, sys, time
out, argv = sys.argv[1], sys.argv[2:]
with open(out + ".out", "wb") as so, open(out + ".err", "wb") as se:
    t0 = time.perf_counter_ns()
    rc = subprocess.call(argv, stdout=so, stderr=se, stdin=subprocess.DEVNULL)
    t1 = time.perf_counter_ns()
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    f.write("%d %d %d %d %d\n" % (t1 - t0, ru.ru_maxrss, rc, ru.ru_utime * 1e9, ru.ru_stime * 1e9))
sys.exit(rc if 0 <= rc < 256 else 1)
PY
}

# measure_lines OUT CMD...: like measure, and also stamps every stdout line
# of CMD with CLOCK_REALTIME (ns) the moment its bytes arrive (raw reads, no
# buffering of ours in between): OUT.lines holds "<ns>\t<line>", and OUT gets
# a fourth field, the CLOCK_REALTIME just before the spawn.
measure_lines() {
    local out=$1
    shift
    python3 - "$out" "$@" <<'PY'
import os, resource, subprocess, sys, time
out, argv = sys.argv[1], sys.argv[2:]
with open(out + ".err", "wb") as err, open(out + ".lines", "w") as lines:
    start = time.time_ns()
    t0 = time.perf_counter_ns()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    fd, buf = p.stdout.fileno(), b""
    while True:
        chunk = os.read(fd, 1 << 16)
        t = time.time_ns()
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            lines.write("%d\t%s\n" % (t, line.decode("utf-8", "replace")))
    rc = p.wait()
    t1 = time.perf_counter_ns()
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(out, "w") as f:
    f.write("%d %d %d %d\n" % (t1 - t0, rss, rc, start))
sys.exit(rc if 0 <= rc < 256 else 1)
PY
}

# measured_field OUT N: field N (1 wall_ns, 2 rss_kb, 3 exit; measure: 4 user_ns,
# 5 sys_ns; measure_lines: 4 the start's CLOCK_REALTIME) of a measure file.
measured_field() {
    local a
    read -r -a a <"$1"
    printf '%s\n' "${a[$(($2 - 1))]}"
}

# must_measure [--lines] OUT WHAT CMD...: measure (or measure_lines), and die
# with the stderr tail when CMD fails.
must_measure() {
    local how=measure
    if [[ $1 = --lines ]]; then
        how=measure_lines
        shift
    fi
    local out=$1 what=$2
    shift 2
    if ! "$how" "$out" "$@"; then
        note "--- stderr of $what (tail) ---"
        tail -n 30 "$out.err" >&2 || true
        note "--- stdout of $what (tail) ---"
        tail -n 10 "$out.out" "$out.lines" >&2 2>/dev/null || true
        die "$what failed (exit $(measured_field "$out" 3)): $*"
    fi
}

# stats: reads numbers (one per line) on stdin, prints "median min max count".
stats() {
    python3 -c '
import statistics, sys
xs = [float(l) for l in sys.stdin if l.strip()]
if not xs:
    print("nan nan nan 0")
else:
    print("%.3f %.3f %.3f %d" % (statistics.median(xs), min(xs), max(xs), len(xs)))
'
}

# calc EXPR: floating-point arithmetic, e.g. calc '1.5 / 3'.
calc() {
    python3 -c "print('%.3f' % ($1))"
}

# goal VALUE OP LIMIT: prints "goal met" or "goal missed" (OP: <= or <).
goal() {
    if python3 -c "import sys; sys.exit(0 if $1 $2 $3 else 1)"; then
        echo "goal met"
    else
        echo "goal missed"
    fi
}

# --- treefarm state -----------------------------------------------------------

# reset_treefarm REPO: back to a repository without treefarm worktrees,
# treefarm/* branches, archive refs or run state. `treefarm prune --force
# --all` does the work; plain git then sweeps whatever it left and the sweep is
# reported (once per script) so a prune bug cannot skew the next round.
PRUNE_LEFTOVER_REPORTED=0
reset_treefarm() {
    local repo=$1 common wt leftovers=()
    common=$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir)
    "$TF" -C "$repo" -q prune --force --all >"$BENCH_TMP/prune.out" 2>"$BENCH_TMP/prune.err" ||
        leftovers+=("prune exited $?: $(tail -n 3 "$BENCH_TMP/prune.err" | tr '\n' ' ')")

    while read -r wt; do
        [[ $wt = "$repo" ]] && continue
        case $wt in
        "$repo.treefarm"/*)
            leftovers+=("worktree $wt")
            git -C "$repo" worktree remove --force --force "$wt" 2>/dev/null || rm -rf "$wt"
            ;;
        esac
    done < <(git -C "$repo" worktree list --porcelain | sed -n 's/^worktree //p')
    if [[ -d $repo.treefarm ]] && [[ -n $(ls -A "$repo.treefarm") ]]; then
        leftovers+=("files under $repo.treefarm")
        rm -rf "${repo:?}.treefarm"/*
    fi
    git -C "$repo" worktree prune
    local ref
    while read -r ref; do
        [[ -z $ref ]] && continue
        leftovers+=("$ref")
        git -C "$repo" update-ref -d "$ref"
    done < <(git -C "$repo" for-each-ref --format='%(refname)' refs/heads/treefarm/)
    # Archive refs are prune's documented safety net, not a leftover.
    git -C "$repo" for-each-ref --format='delete %(refname)' refs/treefarm/ |
        git -C "$repo" update-ref --stdin
    # Run state goes so every round starts equal; the lock file (if any) is
    # left alone: a stale one would make the next run fail, which is a bug to
    # see, not to hide.
    rm -rf "$common/treefarm/runs" "$common/treefarm/summary.json"

    if ((${#leftovers[@]} > 0)) && ((PRUNE_LEFTOVER_REPORTED == 0)); then
        PRUNE_LEFTOVER_REPORTED=1
        note "warning: after \`treefarm prune --force --all\`, swept with git: ${leftovers[*]:0:6}${leftovers[6]:+ ...}"
    fi
}

# count_worktrees REPO PREFIX: worktrees whose path starts with PREFIX.
count_worktrees() {
    git -C "$1" worktree list --porcelain | sed -n 's/^worktree //p' | grep -c "^$2" || true
}

# count_refs REPO PREFIX
count_refs() {
    git -C "$1" for-each-ref --format=x "$2" | wc -l
}

# --- output -------------------------------------------------------------------

ns_to_ms() {
    calc "$1 / 1e6"
}

hr() {
    printf '%s\n' "------------------------------------------------------------------------"
}
