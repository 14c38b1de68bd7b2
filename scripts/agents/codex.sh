#!/bin/sh
# treefarm agent wrapper for the OpenAI Codex CLI (`codex`).
#
# treefarm runs this in the instance's worktree (see docs/agents.md). It hands
# the assembled prompt to `codex exec` (non-interactive mode), writes the
# status file as it goes and exits with Codex's exit code.
#
# Options (environment):
#   TREEFARM_CODEX_BIN         program to run instead of `codex`
#   TREEFARM_AGENT_MODEL       passed as `--model`
#   TREEFARM_AGENT_EXTRA_ARGS  appended to the command line, split like sh would
#   TREEFARM_CODEX_SANDBOX     sandbox policy instead of `workspace-write`
#                              (`danger-full-access` inside an isolated runner)
set -u

tf_display="Codex CLI"
tf_install="npm install -g @openai/codex"
tf_prog=${TREEFARM_CODEX_BIN:-codex}

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

# Flags, as documented in the Codex CLI reference and non-interactive mode page
# (developers.openai.com/codex/noninteractive, codex-rs/exec/src/cli.rs):
#   exec           run Codex non-interactively (no TUI); it never stops to ask
#                  for approval, progress goes to stderr, the last message to
#                  stdout, and the process exits when the task is done.
#   --sandbox workspace-write
#                  sandbox policy for the commands the model runs: may write
#                  inside the workspace (the default for exec is read-only,
#                  which cannot edit). `--full-auto` is the deprecated alias.
#   --add-dir <dir>
#                  an extra directory writable alongside the workspace. A linked
#                  worktree keeps its git data in the main repository's git dir,
#                  outside the workspace, so without this `git commit` fails
#                  inside the sandbox (then treefarm commits the leftovers).
#   --color never  no ANSI colour in the output (it goes to treefarm's log).
#   --model <name> model override (-m).
#   -              the prompt is read from stdin (here: the prompt file).
set -- exec --sandbox "${TREEFARM_CODEX_SANDBOX:-workspace-write}"
tf_git_dir=$(git rev-parse --git-common-dir 2>/dev/null) &&
    tf_git_dir=$(cd "$tf_git_dir" 2>/dev/null && pwd) &&
    set -- "$@" --add-dir "$tf_git_dir"
set -- "$@" --color never
if [ -n "${TREEFARM_AGENT_MODEL:-}" ]; then
    set -- "$@" --model "$TREEFARM_AGENT_MODEL"
fi
if [ -n "${TREEFARM_AGENT_EXTRA_ARGS:-}" ]; then
    eval "set -- \"\$@\" $TREEFARM_AGENT_EXTRA_ARGS"
fi
set -- "$@" -

tf_status working 10 "$tf_display is working"
"$tf_prog" "$@" <"$tf_prompt_file"
tf_rc=$?
[ -n "$tf_cleanup" ] && rm -f "$tf_cleanup"
if [ "$tf_rc" -eq 0 ]; then
    tf_status done 100 "$tf_display finished"
else
    tf_status failed 100 "$tf_display exited with code $tf_rc"
fi
exit "$tf_rc"
