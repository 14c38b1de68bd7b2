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
#   commit MESSAGE         git add -A && git commit (skipped when nothing changed)
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
#
# With no directives at all: append a line to every declared literal (non-glob)
# path in $TREEFARM_FILES and commit "treefarm demo: <spec id>".
# A status is written at the start and at the end. Exits 0 unless told.

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
    git add -A || die "git add failed"
    if git diff --cached --quiet; then
        say "commit: nothing to commit"
    else
        git commit -q -m "$1" || die "git commit failed"
        say "committed: $1"
    fi
}

# Prints the body of the first ```demo-agent (or ~~~demo-agent) block of $1.
extract_block() {
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
            [ "$info" = demo-agent ] && inside=1
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
    *)
        die "line $2: unknown directive '$verb'"
        ;;
    esac
}

if [ "${TREEFARM_DEMO_AGENT_SCRIPT+set}" = set ]; then
    directives=$TREEFARM_DEMO_AGENT_SCRIPT
elif [ -n "${TREEFARM_SPEC_FILE:-}" ] && [ -f "$TREEFARM_SPEC_FILE" ]; then
    directives=$(extract_block "$TREEFARM_SPEC_FILE")
else
    directives=
fi

say "pid $$, spec $spec_id"
write_status working 0 "starting"

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
