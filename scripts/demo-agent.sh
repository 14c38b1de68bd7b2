#!/bin/sh
# treefarm demo agent: a scripted stand-in for a coding agent, used by
# `treefarm demo` and by the tests. POSIX sh, self-contained (treefarm embeds
# this file and writes it out at run time).
#
# Directives come from $TREEFARM_DEMO_AGENT_SCRIPT when that is set, else from
# the fenced block with info string `demo-agent` in $TREEFARM_SPEC_FILE. One
# per line; blank lines and lines starting with `#` are skipped; TEXT and
# MESSAGE may be double-quoted.
#
#   write PATH TEXT        replace the file with TEXT (+ newline), making parent dirs
#   append PATH TEXT       append TEXT as a line
#   commit MESSAGE         git add -A (--sparse in a sparse worktree) && git commit (skipped when nothing changed)
#   sleep SECONDS
#   status PROGRESS MESSAGE  write {"state":"working",...} to $TREEFARM_STATUS_FILE
#   exit CODE
#   hang                   sleep forever
#   ignore-term            ignore SIGTERM from here on (children inherit it)
#   grandchild SECONDS     start a background `sleep SECONDS` that ignores SIGTERM;
#                          its pid goes to $TREEFARM_GRANDCHILD_PID_FILE if set
#   touch PATH             create or modify a file
#   fail-once CODE         exit CODE the first time (per run, spec and line),
#                          carry on when run again (retries)
#   wait-event EVENT ID [SECONDS]
#                          wait until the run's journal ($TREEFARM_RUN_DIR/
#                          events.jsonl, readable under isolation) holds event
#                          EVENT of spec ID (`planted 050`, `committed 020`,
#                          `merged 030`); an error after SECONDS (default 100).
#                          Orders agents by what happened, never by timing.
#
# With no directives at all: append a line to every declared literal (non-glob)
# path in $TREEFARM_FILES and commit "treefarm demo: <spec id>".
# A status is written at the start and at the end. Exits 0 unless told.
#
# With TREEFARM_MODE=split (`treefarm split`) the directives are the fenced
# block `demo-agent-round-N` of the request ($TREEFARM_SPLIT_DIR/REQUEST.md)
# for round N ($TREEFARM_SPLIT_ROUND): the request scripts the drafts.
#
# With TREEFARM_MODE=resolve (`merge.on_conflict: agent` handed a conflicted
# merge back) the directives are not run: each file of
# $TREEFARM_CONFLICT_FILES is resolved by keeping both sides (the conflict
# marker lines are dropped), and the merge is concluded with a commit.

spec_id=${TREEFARM_SPEC_ID:-unknown}

say() {
    printf 'demo-agent: %s\n' "$*"
}

die() {
    printf 'demo-agent: error: %s\n' "$*" >&2
    write_status failed 100 "$*"
    exit 2
}

# JSON string body: backslashes and quotes escaped, control characters blanked.
json_escape() {
    printf '%s' "$1" | tr '\001-\037' ' ' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'
}

# write_status STATE PROGRESS MESSAGE — atomically (tmp + mv), so treefarm
# never reads a half-written file.
write_status() {
    [ -n "${TREEFARM_STATUS_FILE:-}" ] || return 0
    tmp="$TREEFARM_STATUS_FILE.tmp.$$"
    printf '{"state":"%s","progress":%s,"message":"%s"}\n' \
        "$(json_escape "$1")" "$2" "$(json_escape "$3")" >"$tmp" &&
        mv -f "$tmp" "$TREEFARM_STATUS_FILE"
}

# Strips one pair of surrounding double quotes.
unquote() {
    v=$1
    case $v in
    \"*\")
        v=${v#\"}
        v=${v%\"}
        ;;
    esac
    printf '%s' "$v"
}

ltrim() {
    printf '%s' "${1#"${1%%[! 	]*}"}"
}

make_parent() {
    case $1 in
    */*) mkdir -p "${1%/*}" || die "cannot create the folder of $1" ;;
    esac
}

is_number() {
    case $1 in
    '' | *[!0-9]*) return 1 ;;
    esac
    return 0
}

commit_all() {
    # In a sparse worktree, what it wrote outside the sparse definition is
    # its work too: git refuses to stage it without --sparse.
    if [ "$(git config --get core.sparseCheckout)" = true ]; then
        git add -A --sparse || die "git add failed"
    else
        git add -A || die "git add failed"
    fi
    if git diff --cached --quiet; then
        say "commit: nothing to commit"
    else
        git commit -q -m "$1" || die "git commit failed"
        say "committed: $1"
    fi
}

# Prints the body of the first ```demo-agent (or ~~~demo-agent) block of $1
# (of the block with info string $2 when given).
extract_block() {
    want=${2:-demo-agent}
    inside=0
    while IFS= read -r line || [ -n "$line" ]; do
        t=$(ltrim "$line")
        case $t in
        '```'* | '~~~'*)
            if [ "$inside" = 1 ]; then
                return 0
            fi
            info=$(ltrim "${t#???}")
            info=${info%% *}
            [ "$info" = "$want" ] && inside=1
            ;;
        *)
            [ "$inside" = 1 ] && printf '%s\n' "$line"
            ;;
        esac
    done <"$1"
}

default_work() {
    say "no directives: editing the declared files"
    while IFS= read -r path || [ -n "$path" ]; do
        path=$(ltrim "$path")
        case $path in
        '') continue ;;
        *'*'* | *'?'* | *'['* | *'{'*)
            say "skipping glob $path"
            continue
            ;;
        esac
        make_parent "$path"
        printf 'treefarm demo: %s\n' "$spec_id" >>"$path" || die "cannot write $path"
        say "appended to $path"
    done <<EOF
${TREEFARM_FILES-$(cat "${TREEFARM_FILES_FILE:-/dev/null}" 2>/dev/null)}
EOF
    commit_all "treefarm demo: $spec_id"
}

fail_once() {
    # The instance's own folder (beside the status file) outlives attempts
    # and is writable under isolation; the run folder is not.
    dir=${TMPDIR:-/tmp}
    [ -n "${TREEFARM_STATUS_FILE:-}" ] && dir=$(dirname "$TREEFARM_STATUS_FILE")
    key=$(printf '%s.%s.%s' "${TREEFARM_RUN_ID:-norun}" "$spec_id" "$2" | tr '/ ' '__')
    marker="$dir/demo-agent-fail-once.$key"
    if [ -e "$marker" ]; then
        say "fail-once: failed before, carrying on"
        return 0
    fi
    : >"$marker" || die "cannot write marker $marker"
    say "fail-once: failing with $1"
    write_status failed 100 "fail-once $1"
    exit "$1"
}

# wait_event EVENT ID SECONDS — polls the journal, to which treefarm appends
# one JSON object per line (`"event":"<kind>"` and `"id":"<spec>"` in it).
wait_event() {
    [ -n "${TREEFARM_RUN_DIR:-}" ] || die "wait-event needs TREEFARM_RUN_DIR (run it under treefarm)"
    journal="$TREEFARM_RUN_DIR/events.jsonl"
    polls=$(($3 * 10))
    say "waiting for event $1 of $2"
    while :; do
        if [ -f "$journal" ] &&
            grep -F "\"event\":\"$1\"" "$journal" | grep -F -q "\"id\":\"$2\""; then
            say "seen event $1 of $2"
            return 0
        fi
        [ "$polls" -gt 0 ] || die "event $1 of $2 did not come within $3 s (journal: $journal)"
        polls=$((polls - 1))
        sleep 0.1
    done
}

# Resolves a conflicted merge handed back by treefarm: both sides of every
# conflict kept, then the merge concluded.
resolve_conflicts() {
    write_status working 10 "resolving conflicts"
    while IFS= read -r path || [ -n "$path" ]; do
        [ -n "$path" ] || continue
        [ -f "$path" ] || die "conflicted file $path is missing"
        tmp="$path.demo-agent.$$"
        grep -v -e '^<<<<<<< ' -e '^<<<<<<<$' -e '^=======$' -e '^>>>>>>> ' \
            -e '^>>>>>>>$' -e '^||||||| ' -e '^|||||||$' "$path" >"$tmp"
        mv -f "$tmp" "$path" || die "cannot rewrite $path"
        git add -- "$path" || die "git add $path failed"
        say "resolved $path (both sides kept)"
    done <<EOF
${TREEFARM_CONFLICT_FILES:-}
EOF
    git commit -q --no-edit || die "git commit (concluding the merge) failed"
    say "concluded the merge"
    write_status done 100 "conflicts resolved"
    exit 0
}

# run_directive LINE NUMBER
run_directive() {
    line=$(ltrim "$1")
    verb=${line%%[ 	]*}
    rest=$(ltrim "${line#"$verb"}")
    case $verb in
    write | append | touch)
        path=${rest%%[ 	]*}
        text=$(unquote "$(ltrim "${rest#"$path"}")")
        [ -n "$path" ] || die "line $2: $verb needs a path"
        make_parent "$path"
        case $verb in
        write) printf '%s\n' "$text" >"$path" ;;
        append) printf '%s\n' "$text" >>"$path" ;;
        touch) touch "$path" ;;
        esac || die "line $2: cannot $verb $path"
        say "$verb $path"
        ;;
    commit)
        commit_all "$(unquote "$rest")"
        ;;
    sleep)
        say "sleep $rest"
        sleep "$rest" || die "line $2: bad sleep '$rest'"
        ;;
    status)
        progress=${rest%%[ 	]*}
        is_number "$progress" || die "line $2: status needs a progress 0-100"
        message=$(unquote "$(ltrim "${rest#"$progress"}")")
        write_status working "$progress" "$message"
        say "status $progress $message"
        ;;
    exit)
        is_number "$rest" || die "line $2: exit needs a code"
        say "exit $rest"
        if [ "$rest" = 0 ]; then
            write_status done 100 "exit 0"
        else
            write_status failed 100 "exit $rest"
        fi
        exit "$rest"
        ;;
    hang)
        say "hang"
        while :; do
            sleep 3600
        done
        ;;
    ignore-term)
        trap '' TERM
        say "ignoring SIGTERM"
        ;;
    grandchild)
        is_number "$rest" || die "line $2: grandchild needs whole seconds"
        (
            trap '' TERM
            exec sleep "$rest"
        ) &
        gpid=$!
        if [ -n "${TREEFARM_GRANDCHILD_PID_FILE:-}" ]; then
            printf '%s\n' "$gpid" >"$TREEFARM_GRANDCHILD_PID_FILE.tmp" &&
                mv -f "$TREEFARM_GRANDCHILD_PID_FILE.tmp" "$TREEFARM_GRANDCHILD_PID_FILE"
        fi
        say "grandchild $gpid sleeps $rest s"
        ;;
    fail-once)
        is_number "$rest" || die "line $2: fail-once needs a code"
        fail_once "$rest" "$2"
        ;;
    wait-event)
        n=$2
        set -- $rest
        [ $# -ge 2 ] || die "line $n: wait-event needs an event and a spec id"
        seconds=${3:-100}
        is_number "$seconds" || die "line $n: wait-event timeout must be whole seconds"
        wait_event "$1" "$2" "$seconds"
        ;;
    *)
        die "line $2: unknown directive '$verb'"
        ;;
    esac
}

if [ "${TREEFARM_DEMO_AGENT_SCRIPT+set}" = set ]; then
    directives=$TREEFARM_DEMO_AGENT_SCRIPT
elif [ "${TREEFARM_MODE:-}" = split ]; then
    # `treefarm split`: the request itself scripts each round's drafts.
    request="${TREEFARM_SPLIT_DIR:?}/REQUEST.md"
    directives=$(extract_block "$request" "demo-agent-round-${TREEFARM_SPLIT_ROUND:-1}")
    [ -n "$directives" ] || die "no demo-agent-round-${TREEFARM_SPLIT_ROUND:-1} block in $request"
elif [ -n "${TREEFARM_SPEC_FILE:-}" ] && [ -f "$TREEFARM_SPEC_FILE" ]; then
    directives=$(extract_block "$TREEFARM_SPEC_FILE")
else
    directives=
fi

say "pid $$, spec $spec_id"
write_status working 0 "starting"

if [ "${TREEFARM_MODE:-}" = resolve ]; then
    resolve_conflicts
fi

count=0
# Directives are read on fd 3 so that the commands they run keep stdin.
while IFS= read -r raw <&3 || [ -n "$raw" ]; do
    count=$((count + 1))
    raw=$(printf '%s' "$raw" | tr -d '\r')
    case $(ltrim "$raw") in
    '' | '#'*) continue ;;
    esac
    ran=1
    run_directive "$raw" "$count"
done 3<<EOF
$directives
EOF

if [ -z "${ran:-}" ]; then
    default_work
fi

write_status done 100 "done"
say "done"
exit 0
