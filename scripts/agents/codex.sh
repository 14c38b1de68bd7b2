# treefarm: requires common.sh prepended. This is not a complete script: treefarm
# writes common.sh followed by this file as one wrapper (see common.sh and
# `wrapper!` in src/agents/preset.rs); common.sh brings the shebang, `set -u`
# and the tf_* functions used below.
# shellcheck shell=sh
#
# treefarm agent wrapper for the OpenAI Codex CLI (`codex`).
#
# treefarm runs this in the instance's worktree (see the README, section Agents). It hands
# the assembled prompt to `codex exec` (non-interactive mode), writes the
# status file as it goes and exits with Codex's exit code.
#
# Options (environment):
#   TREEFARM_CODEX_BIN         program to run instead of `codex`
#   TREEFARM_AGENT_MODEL       passed as `--model`
#   TREEFARM_AGENT_EXTRA_ARGS  appended to the command line, split like sh would
#   TREEFARM_CODEX_SANDBOX     sandbox policy instead of `workspace-write`
#                              (`danger-full-access` inside an isolated runner)
tf_display="Codex CLI"
tf_install="npm install -g @openai/codex"
tf_prog=${TREEFARM_CODEX_BIN:-codex}

tf_begin

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
# --model and TREEFARM_AGENT_EXTRA_ARGS (common.sh).
eval "set -- \"\$@\" $(tf_agent_options)"
set -- "$@" -

tf_status working 10 "$tf_display is working"
"$tf_prog" "$@" <"$tf_prompt_file"
tf_rc=$?
tf_drop_prompt
tf_finish "$tf_rc"
