# treefarm: requires common.sh prepended. This is not a complete script: treefarm
# writes common.sh followed by this file as one wrapper (see common.sh and
# `wrapper!` in src/agents/preset.rs); common.sh brings the shebang, `set -u`
# and the tf_* functions used below.
# shellcheck shell=sh
#
# treefarm agent wrapper for Claude Code (`claude`).
#
# treefarm runs this in the instance's worktree (see the README, section Agents). It hands
# the assembled prompt to Claude Code in print (non-interactive) mode, writes
# the status file as it goes and exits with Claude Code's exit code.
#
# Options (environment):
#   TREEFARM_CLAUDE_BIN        program to run instead of `claude`
#   TREEFARM_AGENT_MODEL       passed as `--model`
#   TREEFARM_AGENT_EXTRA_ARGS  appended to the command line, split like sh would
#   TREEFARM_CLAUDE_PERMISSION_MODE
#                              use `--permission-mode <mode>` instead of
#                              `--dangerously-skip-permissions` (e.g. where the
#                              bypass is refused, such as when running as root)
tf_display="Claude Code"
tf_install="npm install -g @anthropic-ai/claude-code"
tf_prog=${TREEFARM_CLAUDE_BIN:-claude}

tf_begin

# --- the command line ------------------------------------------------------

tf_read_prompt

# Flags, as documented in the Claude Code CLI reference
# (docs.anthropic.com/en/docs/claude-code/cli-reference):
#   -p / --print   print the response without the interactive mode: one prompt,
#                  then exit (headless/SDK use); the prompt is the argument.
#   --dangerously-skip-permissions
#                  skip every permission prompt (same as --permission-mode
#                  bypassPermissions), so edits and shell commands such as
#                  `git commit` run unattended. Claude Code refuses it as root
#                  unless IS_SANDBOX=1 says it runs in a sandbox: treefarm sets
#                  that (only) when it confines the agent with Landlock
#                  (README, Isolation); this wrapper never sets it itself.
#   --permission-mode <mode>
#                  start in the given permission mode (default, acceptEdits,
#                  plan, bypassPermissions) - the opt-out described above.
#   --model <name> model for the session: an alias (sonnet, opus) or a full name.
if [ -n "${TREEFARM_CLAUDE_PERMISSION_MODE:-}" ]; then
    set -- -p "$tf_prompt" --permission-mode "$TREEFARM_CLAUDE_PERMISSION_MODE"
else
    set -- -p "$tf_prompt" --dangerously-skip-permissions
fi
# --model and TREEFARM_AGENT_EXTRA_ARGS (common.sh).
eval "set -- \"\$@\" $(tf_agent_options)"

tf_status working 10 "$tf_display is working"
# stdin from /dev/null: in print mode a piped stdin is read and appended to the
# prompt, and an open pipe would make it wait for input.
"$tf_prog" "$@" </dev/null
tf_rc=$?
tf_finish "$tf_rc"
