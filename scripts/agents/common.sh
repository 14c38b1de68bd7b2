#!/bin/sh
# treefarm agent wrapper: the plumbing shared by every bundled preset.
#
# How a wrapper is assembled: this file is never run on its own. treefarm
# embeds it once and, when a run starts, writes each preset's wrapper as this
# file followed by the CLI's own script (scripts/agents/<preset>.sh) into one
# self-contained file, `agent-<preset>.sh` in the run directory (see
# `wrapper!` and `materialize_wrapper` in src/agents/preset.rs). So this file
# keeps the shebang and only defines functions; the CLI's script, which comes
# next, sets tf_display, tf_install and tf_prog and then calls them.
#
# Environment read here (see the README, section Agents): TREEFARM_STATUS_FILE,
# TREEFARM_USAGE_FILE, TREEFARM_WORKTREE, TREEFARM_PROMPT_FILE,
# TREEFARM_SPEC_FILE, TREEFARM_FILES, TREEFARM_BRANCH, TREEFARM_AGENT_MODEL,
# TREEFARM_AGENT_EXTRA_ARGS, and in a split TREEFARM_MODE and TREEFARM_SPLIT_SESSION.
set -u

# Writes {"state","progress","message"} atomically: a temp file beside the
# status file, then mv, so a reader never sees half a document.
tf_status() {
    [ -n "${TREEFARM_STATUS_FILE:-}" ] || return 0
    tf_msg=$(printf '%s' "$3" | tr '\n\t' '  ' | sed 's/\\/\\\\/g; s/"/\\"/g')
    tf_tmp="$TREEFARM_STATUS_FILE.tmp.$$"
    printf '{"state": "%s", "progress": %s, "message": "%s"}\n' "$1" "$2" "$tf_msg" \
        >"$tf_tmp" 2>/dev/null && mv -f "$tf_tmp" "$TREEFARM_STATUS_FILE" 2>/dev/null
    return 0
}

# Everything before the command line, in this order: the CLI must exist
# before anything else happens (fail at once, 127 like sh); the status says
# started; the worktree is entered; the prompt file is found or built.
# Reads tf_prog, tf_display, tf_install; sets tf_prompt_file and tf_cleanup
# (a temp prompt file to remove once the CLI has read it, or empty).
tf_begin() {
    if ! command -v "$tf_prog" >/dev/null 2>&1; then
        echo "treefarm: \`$tf_prog\` ($tf_display) is not installed or not on PATH; install: $tf_install" >&2
        exit 127
    fi

    tf_status started 0 "starting $tf_display"

    if [ -n "${TREEFARM_WORKTREE:-}" ]; then
        cd "$TREEFARM_WORKTREE" || {
            tf_status failed 0 "cannot enter worktree $TREEFARM_WORKTREE"
            exit 2
        }
    fi

    # The prompt: the file treefarm assembled, else the spec itself plus the
    # declared files (built in a temp file outside the worktree).
    tf_prompt_file=${TREEFARM_PROMPT_FILE:-}
    tf_cleanup=""
    if [ -z "$tf_prompt_file" ] || [ ! -r "$tf_prompt_file" ]; then
        if [ -z "${TREEFARM_SPEC_FILE:-}" ] || [ ! -r "$TREEFARM_SPEC_FILE" ]; then
            echo "treefarm: no prompt: neither TREEFARM_PROMPT_FILE nor TREEFARM_SPEC_FILE names a readable file" >&2
            tf_status failed 0 "no prompt file"
            exit 2
        fi
        tf_prompt_file=$(mktemp "${TMPDIR:-/tmp}/treefarm-prompt.XXXXXX") || exit 2
        tf_cleanup=$tf_prompt_file
        {
            cat "$TREEFARM_SPEC_FILE"
            printf '\n\nCreate or modify only these files:\n'
            printf '%s\n' "${TREEFARM_FILES-$(cat "${TREEFARM_FILES_FILE:-/dev/null}" 2>/dev/null)}" | sed '/^$/d; s/^/- /'
            printf 'Do not create or modify any other file.\n'
            printf 'When done, commit your work with git on branch %s.\n' "${TREEFARM_BRANCH:-the current branch}"
        } >"$tf_prompt_file"
    fi
}

# Removes the temp prompt file tf_begin built, if it built one.
tf_drop_prompt() {
    [ -n "$tf_cleanup" ] && rm -f "$tf_cleanup"
    return 0
}

# The options every preset passes the same way: `--model "$TREEFARM_AGENT_MODEL"`
# when a model is set, then TREEFARM_AGENT_EXTRA_ARGS, split like sh would.
# Prints them as text for eval (a function cannot change its caller's "$@"):
#   eval "set -- \"\$@\" $(tf_agent_options)"
# The model is printed as a variable reference, so eval expands it unsplit.
tf_agent_options() {
    if [ -n "${TREEFARM_AGENT_MODEL:-}" ]; then
        printf '%s ' '--model "$TREEFARM_AGENT_MODEL"'
    fi
    printf '%s\n' "${TREEFARM_AGENT_EXTRA_ARGS:-}"
}

# The agent's private folder (the instance directory; a split's `agent/`):
# the status file's folder, else the prompt file's; empty when neither names
# an existing folder.
tf_private_dir() {
    for tf_f in "${TREEFARM_STATUS_FILE:-}" "${TREEFARM_PROMPT_FILE:-}"; do
        [ -n "$tf_f" ] || continue
        tf_d=$(dirname "$tf_f")
        if [ -d "$tf_d" ]; then
            printf '%s\n' "$tf_d"
            return 0
        fi
    done
    return 0
}

# treefarm split (TREEFARM_MODE=split) runs the agent once per round, with
# the same TREEFARM_SPLIT_SESSION (a UUID) every round. A wrapper continues
# its CLI's conversation of the earlier rounds: the id of that conversation,
# as the CLI reported it when it started (tf_events writes it), is kept in
# the private folder as `session-<cli>` ($1). Sets tf_session_record (that
# file; empty when this is not a split, so nothing is continued) and
# tf_session_id (the id to continue; empty while none was started).
tf_split_session() {
    tf_session_record=""
    tf_session_id=""
    if [ "${TREEFARM_MODE:-}" != split ] || [ -z "${TREEFARM_SPLIT_SESSION:-}" ]; then
        return 0
    fi
    tf_session_dir=$(tf_private_dir)
    [ -n "$tf_session_dir" ] || return 0
    tf_session_record="$tf_session_dir/session-$1"
    if [ -s "$tf_session_record" ]; then
        tf_session_id=$(head -n 1 "$tf_session_record")
    fi
    return 0
}

# Where the usage report goes: TREEFARM_USAGE_FILE, else usage.json beside
# the status file (both in the instance directory), else nowhere.
tf_usage_file() {
    if [ -n "${TREEFARM_USAGE_FILE:-}" ]; then
        printf '%s\n' "$TREEFARM_USAGE_FILE"
    elif [ -n "${TREEFARM_STATUS_FILE:-}" ]; then
        printf '%s/usage.json\n' "$(dirname "$TREEFARM_STATUS_FILE")"
    fi
}

# Runs the CLI ("$@" after the program) and its stdout (JSON Lines events of
# kind $1: claude, codex or gemini; aider's plain output for aider) through
# tf_events; stderr goes straight to the log. The prompt file is the CLI's
# stdin (aider: /dev/null, it reads --message-file). Sets tf_rc to the CLI's
# exit code (POSIX sh has no pipefail, so the code travels through a file).
tf_run_streaming() {
    tf_kind=$1
    shift
    tf_stdin=$tf_prompt_file
    [ "$tf_kind" = aider ] && tf_stdin=/dev/null
    tf_rc_file=$(mktemp "${TMPDIR:-/tmp}/treefarm-rc.XXXXXX") || exit 2
    {
        "$tf_prog" "$@" <"$tf_stdin"
        echo $? >"$tf_rc_file"
    } | tf_events "$tf_kind"
    tf_rc=$(cat "$tf_rc_file" 2>/dev/null)
    rm -f "$tf_rc_file"
    case $tf_rc in '' | *[!0-9]*) tf_rc=1 ;; esac
}

# Reads a CLI's JSON Lines events on stdin (kind $1: claude for Claude Code's
# `--output-format stream-json`, codex for `codex exec --json`, gemini for
# Gemini CLI's `--output-format stream-json`) and turns them into a readable
# transcript on stdout (the instance log) and status-file updates: the
# current tool call ("editing src/a.rs", "running git commit ...") and the
# turn count. Lines that are not events are passed through as they are
# (kind aider: every line; aider prints text, not events).
#
# Usage: the CLI's own machine-readable figures, added to what usage.json
# already holds (an earlier attempt of the same instance) and written there
# atomically at the end - Claude Code's `result` event (usage, total_cost_usd),
# the sum of Codex's `turn.completed` usage, Gemini CLI's `result` stats,
# aider's `Tokens: N sent, M received. Cost: $x message, $y session.` lines.
tf_events() {
    awk -v kind="$1" -v status="${TREEFARM_STATUS_FILE:-}" -v wt="${TREEFARM_WORKTREE:-}" -v who="$tf_display" \
        -v usagefile="$(tf_usage_file)" -v cfgmodel="${TREEFARM_AGENT_MODEL:-}" \
        -v sessionfile="${tf_session_record:-}" '
function jstr(line, key,    i, s, c, out) {
    i = index(line, "\"" key "\":")
    if (i == 0) return ""
    s = substr(line, i + length(key) + 3)
    sub(/^[ \t]*/, "", s)
    if (substr(s, 1, 1) != "\"") {
        # A number, true, false or null: up to the next , ] or }.
        if (match(s, /^[-0-9.a-z]+/)) return substr(s, 1, RLENGTH)
        return ""
    }
    s = substr(s, 2); out = ""
    while (length(s) > 0) {
        c = substr(s, 1, 1)
        if (c == "\\") {
            c = substr(s, 2, 1)
            if (c == "n" || c == "t") out = out " "; else out = out c
            s = substr(s, 3); continue
        }
        if (c == "\"") break
        out = out c; s = substr(s, 2)
    }
    return out
}
function rel(p) {
    if (wt != "" && index(p, wt "/") == 1) return substr(p, length(wt) + 2)
    return p
}
function short(t) { return length(t) > 72 ? substr(t, 1, 69) "..." : t }
function esc(t) { gsub(/\\/, "\\\\", t); gsub(/"/, "\\\"", t); gsub(/[\001-\037]/, " ", t); return t }
function q(t) { gsub(/\047/, "\047\\\047\047", t); return "\047" t "\047" }
function doing(tool, line,    p, c, l) {
    l = tolower(tool)
    p = jstr(line, "file_path"); if (p == "") p = jstr(line, "absolute_path"); if (p == "") p = jstr(line, "path")
    c = jstr(line, "command"); if (c == "") c = jstr(line, "cmd")
    if (l ~ /write|edit|replace|patch|file_change/) return "editing " rel(p)
    if (l ~ /read|view/) return "reading " rel(p)
    if (l ~ /bash|shell|command/) return "running " short(c)
    return "using " tool
}
function show(what) {
    print "[" who "] " what; fflush()
    if (status == "") return
    progress = 10 + 5 * turns; if (progress > 90) progress = 90
    tmp = status ".tmp.ev"
    printf "{\"state\": \"working\", \"progress\": %d, \"message\": \"turn %d: %s\", \"turns\": %d}\n", progress, turns, esc(short(what)), turns > tmp
    close(tmp)
    system("mv -f " q(tmp) " " q(status) " 2>/dev/null")
}
# "1.2k" (aider rounds above a thousand) as a number.
function knum(t) { if (t ~ /k$/) return substr(t, 1, length(t) - 1) * 1000; return t + 0 }
function after(line, key,    i) { i = index(line, "\"" key "\":"); return i ? substr(line, i) : "" }
function aider_usage(line,    v) {
    if (match(line, /[0-9.]+k? sent/)) { v = substr(line, RSTART, RLENGTH); sub(/ sent/, "", v); uin += knum(v) }
    if (match(line, /[0-9.]+k? cache write/)) { v = substr(line, RSTART, RLENGTH); sub(/ cache write/, "", v); uin += knum(v) }
    if (match(line, /[0-9.]+k? cache hit/)) { v = substr(line, RSTART, RLENGTH); sub(/ cache hit/, "", v); uin += knum(v) }
    if (match(line, /[0-9.]+k? received/)) { v = substr(line, RSTART, RLENGTH); sub(/ received/, "", v); uout += knum(v) }
    if (match(line, /\$[0-9.]+ session/)) { v = substr(line, RSTART + 1, RLENGTH - 9); ucost = v + 0; hascost = 1 }
    seen = 1
}
function num0(t) { return t == "" || t == "null" ? 0 : t + 0 }
function write_usage(    prev, l, pin, pout, pcost, patt, pcostset, tmp, m) {
    if (usagefile == "" || !seen) return
    prev = ""
    while ((getline l < usagefile) > 0) prev = prev l
    close(usagefile)
    pin = num0(jstr(prev, "input_tokens")); pout = num0(jstr(prev, "output_tokens"))
    pcostset = jstr(prev, "cost_usd"); pcost = num0(pcostset); patt = num0(jstr(prev, "attempts"))
    m = umodel; if (m == "") m = jstr(prev, "model"); if (m == "") m = cfgmodel
    tmp = usagefile ".tmp.ev"
    printf "{\"input_tokens\": %d, \"output_tokens\": %d, ", pin + uin, pout + uout > tmp
    if (hascost || (pcostset != "" && pcostset != "null")) printf "\"cost_usd\": %.10g, ", pcost + ucost > tmp
    else printf "\"cost_usd\": null, " > tmp
    if (m != "") printf "\"model\": \"%s\", ", esc(m) > tmp
    else printf "\"model\": null, " > tmp
    printf "\"attempts\": %d, \"source\": \"%s\"}\n", patt + 1, usource > tmp
    close(tmp)
    system("mv -f " q(tmp) " " q(usagefile) " 2>/dev/null")
}
# A tool output that says the system refused an access (an isolated
# agent shell command writing outside its rights): each such line of the
# output goes to the log as it is, so treefarm can name the path in the
# instance result. Event streams carry outputs as one JSON string, with
# newlines escaped: split there.
function denials(line,    n, parts, i) {
    n = split(line, parts, /\\n/)
    for (i = 1; i <= n; i++) {
        if (tolower(parts[i]) ~ /permission denied|read-only file system|operation not permitted/) {
            print "[" who "] tool output: " parts[i]; fflush()
        }
    }
}
# The conversation the CLI reports it runs, for the next round of a split
# (tf_split_session): written once per id, atomically.
function session(id,    tmp) {
    if (sessionfile == "" || id == "" || id == "null" || id == sid) return
    sid = id; tmp = sessionfile ".tmp.ev"
    printf "%s\n", id > tmp
    close(tmp)
    system("mv -f " q(tmp) " " q(sessionfile) " 2>/dev/null")
}
BEGIN { turns = 0; seen = 0; uin = 0; uout = 0; ucost = 0; hascost = 0; umodel = ""; sid = "" }
END { write_usage() }
{
    line = $0
    if (kind == "aider") {
        usource = "aider token report"
        if (line ~ /^Tokens: .* sent/) aider_usage(line)
        else if (line ~ /^Model: /) umodel = $2
        print line; fflush(); next
    }
    if (substr(line, 1, 1) != "{") { print line; fflush(); next }
    if (tolower(line) ~ /permission denied|read-only file system|operation not permitted/) denials(line)
    type = jstr(line, "type")
    if (kind == "claude") {
        if (type == "assistant") {
            turns++
            if (index(line, "\"type\":\"tool_use\"") > 0) {
                tl = substr(line, index(line, "\"type\":\"tool_use\""))
                show(doing(jstr(tl, "name"), tl))
            } else {
                t = jstr(line, "text"); show("says: " short(t))
            }
        } else if (type == "result") {
            print "[" who "] result: " jstr(line, "subtype") " after " turns " turn(s): " jstr(line, "result"); fflush()
            st = jstr(line, "api_error_status")
            if (st != "" && st != "null") { print "[" who "] api error: status " st " " jstr(line, "api_error_type"); fflush() }
            u = after(line, "usage")
            uin += num0(jstr(u, "input_tokens")) + num0(jstr(u, "cache_creation_input_tokens")) + num0(jstr(u, "cache_read_input_tokens"))
            uout += num0(jstr(u, "output_tokens"))
            c = jstr(line, "total_cost_usd"); if (c != "" && c != "null") { ucost += c; hascost = 1 }
            if (umodel == "") { mu = after(line, "modelUsage"); if (match(mu, /^"modelUsage":\{"[^"]+"/)) umodel = substr(mu, 16, RLENGTH - 16) }
            seen = 1; usource = "claude-code stream-json result"
        } else if (type == "system" && jstr(line, "subtype") == "api_retry") {
            print "[" who "] api retry " jstr(line, "attempt") "/" jstr(line, "max_retries") " in " jstr(line, "retry_delay_ms") " ms: status " jstr(line, "error_status") " " jstr(line, "error"); fflush()
        } else if (type == "system") {
            print "[" who "] session started (model " jstr(line, "model") ")"; fflush()
            if (jstr(line, "subtype") == "init") session(jstr(line, "session_id"))
            if (jstr(line, "model") != "") umodel = jstr(line, "model")
        }
    } else if (kind == "codex") {
        if (type == "thread.started") session(jstr(line, "thread_id"))
        else if (type == "turn.started") turns++
        else if (type == "item.started" || type == "item.completed") {
            it = jstr(line, "type"); il = substr(line, index(line, "\"item\""))
            itype = jstr(il, "type")
            if (itype == "command_execution" && type == "item.started") show(doing("command", il))
            else if (itype == "file_change" && type == "item.completed") show(doing("file_change", il))
            else if (itype == "agent_message" && type == "item.completed") { print "[" who "] says: " jstr(il, "text"); fflush() }
            else if (itype == "command_execution") { print "[" who "] command ended: exit " jstr(il, "exit_code") " " short(jstr(il, "command")); fflush() }
        } else if (type == "turn.completed" || type == "turn.failed" || type == "error") {
            print "[" who "] " type " " jstr(line, "message"); fflush()
            if (type == "turn.completed") {
                u = after(line, "usage")
                uin += num0(jstr(u, "input_tokens")); uout += num0(jstr(u, "output_tokens"))
                seen = 1; usource = "codex exec --json turn.completed"
            }
        }
    } else if (kind == "gemini") {
        if (type == "tool_use") { turns++; show(doing(jstr(line, "tool_name"), line)) }
        else if (type == "message" && jstr(line, "role") == "assistant") { print "[" who "] says: " jstr(line, "content"); fflush() }
        else if (type == "tool_result") { print "[" who "] tool " jstr(line, "status"); fflush() }
        else if (type == "result") {
            print "[" who "] result: " jstr(line, "status") " " jstr(after(line, "error"), "message"); fflush()
            u = after(line, "stats")
            if (u != "") {
                uin += num0(jstr(u, "input_tokens")); uout += num0(jstr(u, "output_tokens"))
                mu = after(u, "models"); if (match(mu, /^"models":\{"[^"]+"/)) umodel = substr(mu, 12, RLENGTH - 12)
                seen = 1; usource = "gemini stream-json result stats"
            }
        }
        else if (type == "init") { print "[" who "] session started (model " jstr(line, "model") ")"; fflush(); if (umodel == "") umodel = jstr(line, "model"); session(jstr(line, "session_id")) }
        else if (type == "error") { print "[" who "] error: " jstr(line, "message"); fflush() }
    } else { print line; fflush() }
}'
}

# The status for the CLI's exit code $1, then exit with it.
tf_finish() {
    if [ "$1" -eq 0 ]; then
        tf_status done 100 "$tf_display finished"
    else
        tf_status failed 100 "$tf_display exited with code $1"
    fi
    exit "$1"
}

# --- the CLI's own script follows (scripts/agents/<preset>.sh) -------------
