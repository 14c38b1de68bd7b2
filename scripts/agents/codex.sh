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
#                  extra directories writable alongside the workspace. A linked
#                  worktree keeps its git data outside the workspace: its own
#                  git dir (`git rev-parse --absolute-git-dir`, i.e.
#                  <common>/worktrees/<id>: index, HEAD) and the common dir
#                  (objects, refs). Without both, `git commit` fails inside
#                  the sandbox (`index.lock: Read-only file system`).
#   --json         one JSON event per line on stdout (turns, commands, file
#                  changes, messages); the wrapper turns them into status
#                  updates and a readable transcript in the log.
#   --color never  no ANSI colour in the output (it goes to treefarm's log).
#   --skip-git-repo-check
#                  not needed (a worktree is a git repository), so not passed.
#   --model <name> model override (-m).
#   -              the prompt is read from stdin (here: the prompt file).
#   --sandbox danger-full-access
#                  under treefarm's own isolation (TREEFARM_ISOLATED=1): the
#                  agent is already confined by Landlock, which also forbids
#                  the mounts Codex's Linux sandbox needs, so every command
#                  would fail inside it; its git then works through the
#                  private GIT_DIR treefarm provides (README, Isolation).
if [ "${TREEFARM_ISOLATED:-}" = 1 ] && [ -z "${TREEFARM_CODEX_SANDBOX:-}" ]; then
    set -- exec --sandbox danger-full-access
else
    set -- exec --sandbox "${TREEFARM_CODEX_SANDBOX:-workspace-write}"
    tf_git_dir=$(git rev-parse --absolute-git-dir 2>/dev/null) &&
        set -- "$@" --add-dir "$tf_git_dir"
    tf_common_dir=$(git rev-parse --git-common-dir 2>/dev/null) &&
        tf_common_dir=$(cd "$tf_common_dir" 2>/dev/null && pwd -P) &&
        [ "$tf_common_dir" != "$tf_git_dir" ] &&
        set -- "$@" --add-dir "$tf_common_dir"
fi
set -- "$@" --json --color never
# --model and TREEFARM_AGENT_EXTRA_ARGS (common.sh).
eval "set -- \"\$@\" $(tf_agent_options)"
# treefarm split: every round after the first continues the conversation of
# the rounds before. `codex exec` cannot be given a session id: the wrapper
# records the one Codex reports (`thread.started`, thread_id) and continues it
#   resume <id>    after exec's own options (which apply to it too): the
#                  session by id, from $CODEX_HOME/sessions (the CLI's own
#                  state); never `--last`, which could be another session.
tf_split_session codex
if [ -n "$tf_session_id" ]; then
    set -- "$@" resume "$tf_session_id"
fi
set -- "$@" -

tf_status working 10 "$tf_display is working"
# The prompt on stdin, the events through tf_events into the log.
tf_run_streaming codex "$@"
tf_drop_prompt
tf_finish "$tf_rc"
