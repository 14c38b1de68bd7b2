#!/bin/sh
# treefarm agent wrapper for Gemini CLI (`gemini`).
#
# treefarm runs this in the instance's worktree (see docs/agents.md). It hands
# the assembled prompt to Gemini CLI in headless (non-interactive) mode, writes
# the status file as it goes and exits with Gemini CLI's exit code.
#
# Options (environment):
#   TREEFARM_GEMINI_BIN        program to run instead of `gemini`
#   TREEFARM_AGENT_MODEL       passed as `--model`
#   TREEFARM_AGENT_EXTRA_ARGS  appended to the command line, split like sh would
set -u

tf_display="Gemini CLI"
tf_install="npm install -g @google/gemini-cli"
tf_prog=${TREEFARM_GEMINI_BIN:-gemini}

# --- shared wrapper plumbing (identical in every treefarm wrapper) ----------

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

# The CLI must exist before anything else happens: fail at once, 127 like sh.
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
        printf '%s\n' "${TREEFARM_FILES:-}" | sed '/^$/d; s/^/- /'
        printf 'Do not create or modify any other file.\n'
        printf 'When done, commit your work with git on branch %s.\n' "${TREEFARM_BRANCH:-the current branch}"
    } >"$tf_prompt_file"
fi

# --- the command line ------------------------------------------------------

tf_prompt=$(cat "$tf_prompt_file")
[ -n "$tf_cleanup" ] && rm -f "$tf_cleanup"

# Flags, as documented in the Gemini CLI reference and headless-mode page
# (geminicli.com/docs/cli, docs/cli/cli-reference.md, docs/cli/headless.md):
#   --prompt <text>        run in non-interactive (headless) mode with this
#                          prompt (-p); the answer goes to stdout, then exit.
#   --approval-mode yolo   auto-approve every tool call (edits, shell commands
#                          such as `git commit`); replaces the deprecated --yolo,
#                          and the two must not be combined.
#   --model <name>         model for the session (-m): an alias (pro, flash)
#                          or a concrete model name.
# Environment, from the trusted-folders page: recent versions refuse to run
# headless in a folder that is not trusted (exit 55, yolo downgraded);
# GEMINI_CLI_TRUST_WORKSPACE=true trusts the workspace for this session - the
# same as --skip-trust, but older versions that lack the flag ignore it.
GEMINI_CLI_TRUST_WORKSPACE=true
export GEMINI_CLI_TRUST_WORKSPACE
set -- --prompt "$tf_prompt" --approval-mode yolo
if [ -n "${TREEFARM_AGENT_MODEL:-}" ]; then
    set -- "$@" --model "$TREEFARM_AGENT_MODEL"
fi
if [ -n "${TREEFARM_AGENT_EXTRA_ARGS:-}" ]; then
    eval "set -- \"\$@\" $TREEFARM_AGENT_EXTRA_ARGS"
fi

tf_status working 10 "$tf_display is working"
# stdin from /dev/null: with --prompt, piped stdin is read and prepended.
"$tf_prog" "$@" </dev/null
tf_rc=$?
if [ "$tf_rc" -eq 0 ]; then
    tf_status done 100 "$tf_display finished"
else
    tf_status failed 100 "$tf_display exited with code $tf_rc"
fi
exit "$tf_rc"
