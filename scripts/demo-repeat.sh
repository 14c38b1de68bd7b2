#!/bin/sh
# scripts/demo-repeat.sh [N] — runs the release `treefarm demo` N times in a
# row (default 20) while a second process keeps every core busy, and fails
# when any run's story (the lines the demo prints between "== the story"
# and "== end of the story") differs from the first run's, or a run fails.
#
# The load is plain busy loops (`yes > /dev/null`, one per core, or
# DEMO_LOAD of them) started by this script and stopped by their pids when
# it ends; nothing is installed. TREEFARM_BIN runs another binary instead of
# building the release one. The demo runs on its own configuration:
# TREEFARM_* variables of the calling shell are unset for it.
#
# Output: one line per run (exit code, wall time and speed-up the demo
# printed, same story or not), then the story. The logs of every run stay
# in the printed folder when a run differs or fails.

set -u

n=${1:-20}
case $n in
'' | *[!0-9]*)
    echo "usage: $0 [N]  (N: how many runs, default 20)" >&2
    exit 2
    ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${TREEFARM_BIN:-}" ]; then
    case $TREEFARM_BIN in
    /*) bin=$TREEFARM_BIN ;;
    *) bin=$(pwd)/$TREEFARM_BIN ;;
    esac
else
    echo "building the release binary (cargo build --release --locked)" >&2
    (cd "$root" && cargo build --release --locked --quiet) || exit 2
    bin=$root/target/release/treefarm
fi
[ -x "$bin" ] || {
    echo "error: no treefarm binary at $bin" >&2
    exit 2
}
for var in $(env | sed -n 's/^\(TREEFARM_[A-Za-z0-9_]*\)=.*/\1/p'); do
    unset "$var"
done

logs=$(mktemp -d "${TMPDIR:-/tmp}/treefarm-demo-repeat.XXXXXX") || exit 2
load=${DEMO_LOAD:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}
pids=
stop_load() {
    for pid in $pids; do
        kill "$pid" 2>/dev/null
    done
    pids=
}
trap 'stop_load' EXIT
trap 'stop_load; exit 130' INT TERM
i=0
while [ "$i" -lt "$load" ]; do
    yes >/dev/null &
    pids="$pids $!"
    i=$((i + 1))
done
echo "load: $load busy loop(s) (pids$pids); logs in $logs"

first=
bad=0
run=1
while [ "$run" -le "$n" ]; do
    err=$logs/run-$run.err
    (cd "$logs" && TMPDIR=$logs "$bin" demo >"$logs/run-$run.out" 2>"$err")
    code=$?
    story=$(sed -n '/^== the story/,/^== end of the story/p' "$err")
    speed=$(sed -n 's/.*: wall time \([^,]*\), agent time \([^:]*\): parallel speed-up \(.*\)$/wall \1, agents \2, speed-up \3/p' "$err")
    if [ -z "$first" ]; then
        first=$story
    fi
    if [ -z "$story" ]; then
        verdict="NO STORY"
    elif [ "$story" = "$first" ]; then
        verdict="same story"
    else
        verdict="DIFFERENT STORY"
    fi
    if [ "$code" -ne 0 ] || [ "$verdict" != "same story" ]; then
        bad=$((bad + 1))
        verdict="$verdict (FAILED: see $err)"
    fi
    echo "run $run/$n: exit $code, ${speed:-no speed-up printed}, $verdict"
    run=$((run + 1))
done
stop_load

echo
echo "the story of run 1:"
printf '%s\n' "$first"
if [ "$bad" -ne 0 ]; then
    echo "demo-repeat: $bad of $n run(s) failed or told another story; logs kept in $logs" >&2
    exit 1
fi
rm -rf "$logs"
echo "demo-repeat: $n of $n runs told the same story under load"
