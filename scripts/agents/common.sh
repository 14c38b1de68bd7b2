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
# TREEFARM_WORKTREE, TREEFARM_PROMPT_FILE, TREEFARM_SPEC_FILE, TREEFARM_FILES,
# TREEFARM_BRANCH, TREEFARM_AGENT_MODEL, TREEFARM_AGENT_EXTRA_ARGS.
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

# The prompt's text in tf_prompt, for CLIs that take it as an argument; the
# temp prompt file is not needed after that.
tf_read_prompt() {
    tf_prompt=$(cat "$tf_prompt_file")
    tf_drop_prompt
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
