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
#                              use `--permission-mode <mode>` with the allow-list
#                              below instead of `--dangerously-skip-permissions`
#   TREEFARM_AGENT_ALLOWED_COMMANDS
#                              shell commands (one per line, e.g. `cargo test`)
#                              allowed besides `git add`/`git commit` when the
#                              allow-list is used
#   TREEFARM_ISOLATED          set by treefarm when its own isolation is active:
#                              then Claude Code is told it runs sandboxed
tf_display="Claude Code"
tf_install="npm install -g @anthropic-ai/claude-code"
tf_prog=${TREEFARM_CLAUDE_BIN:-claude}

tf_begin

# --- the command line ------------------------------------------------------

# Flags, as documented in the Claude Code CLI reference
# (docs.anthropic.com/en/docs/claude-code/cli-reference):
#   -p / --print   print mode: one prompt, then exit (headless use). With no
#                  prompt argument the prompt is read from stdin (no argv size
#                  limit; a prompt over 128 KiB cannot be one argument).
#   --output-format stream-json --verbose
#                  one JSON event per line (assistant turns, tool calls, the
#                  result); the wrapper turns them into status updates and a
#                  readable transcript in the log (stream-json needs --verbose).
#   --dangerously-skip-permissions
#                  skip every permission prompt, so edits and `git commit` run
#                  unattended. Claude Code refuses it as root (uid 0), unless
#                  told it runs sandboxed (IS_SANDBOX=1), which treefarm only
#                  says when its own isolation is active (TREEFARM_ISOLATED=1).
#   --permission-mode acceptEdits --allowedTools TOOL...
#                  as root otherwise (or with TREEFARM_CLAUDE_PERMISSION_MODE):
#                  file edits are accepted, and the allow-list names what else
#                  may run - reading and searching, `git add`, `git commit`,
#                  `git status`, `git diff`, and agent.allowed_commands. Any
#                  other shell command is denied (never silently: the run says
#                  so at its start).
#   --model <name> model for the session: an alias (sonnet, opus) or a full name.
set -- -p --output-format stream-json --verbose
tf_mode=${TREEFARM_CLAUDE_PERMISSION_MODE:-}
if [ -z "$tf_mode" ] && [ "$(id -u)" = 0 ]; then
    if [ "${TREEFARM_ISOLATED:-}" = 1 ]; then
        IS_SANDBOX=1
        export IS_SANDBOX
    else
        tf_mode=acceptEdits
    fi
fi
if [ -n "$tf_mode" ]; then
    set -- "$@" --permission-mode "$tf_mode" --allowedTools Read Edit MultiEdit Write \
        Glob Grep LS NotebookEdit TodoWrite "Bash(git add:*)" "Bash(git commit:*)" \
        "Bash(git status:*)" "Bash(git diff:*)" "Bash(git log:*)"
    while IFS= read -r tf_cmd; do
        [ -n "$tf_cmd" ] && set -- "$@" "Bash($tf_cmd:*)"
    done <<TF_CMDS
${TREEFARM_AGENT_ALLOWED_COMMANDS:-}
TF_CMDS
else
    set -- "$@" --dangerously-skip-permissions
fi
# treefarm split: every round after the first continues the conversation of
# the rounds before (the CLI sees its earlier drafts and reasoning, then the
# new prompt naming DIAGNOSTICS.md), by the session id treefarm chose
# (TREEFARM_SPLIT_SESSION, a UUID, recorded by tf_split_session once Claude
# Code reported it):
#   --session-id <uuid>  start the conversation under that id;
#   --resume <uuid>      continue it (also a round run again after a rate
#                        limit, once the conversation was started: its id
#                        would be "already in use"). Sessions live in the
#                        CLI's own state, ~/.claude/projects/<cwd>/, found by
#                        the folder: treefarm keeps the split's worktree at
#                        one path for all its rounds.
tf_split_session claude
if [ -n "$tf_session_id" ]; then
    set -- "$@" --resume "$tf_session_id"
elif [ -n "$tf_session_record" ]; then
    set -- "$@" --session-id "$TREEFARM_SPLIT_SESSION"
fi
# --model and TREEFARM_AGENT_EXTRA_ARGS (common.sh).
eval "set -- \"\$@\" $(tf_agent_options)"

tf_status working 10 "$tf_display is working"
# The prompt on stdin, the events through tf_events into the log.
tf_run_streaming claude "$@"
tf_drop_prompt
tf_finish "$tf_rc"
