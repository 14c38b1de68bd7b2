# treefarm: requires common.sh prepended. This is not a complete script: treefarm
# writes common.sh followed by this file as one wrapper (see common.sh and
# `wrapper!` in src/agents/preset.rs); common.sh brings the shebang, `set -u`
# and the tf_* functions used below.
# shellcheck shell=sh
#
# treefarm agent wrapper for Gemini CLI (`gemini`).
#
# treefarm runs this in the instance's worktree (see the README, section Agents). It hands
# the assembled prompt to Gemini CLI in headless (non-interactive) mode, writes
# the status file as it goes and exits with Gemini CLI's exit code.
#
# Options (environment):
#   TREEFARM_GEMINI_BIN        program to run instead of `gemini`
#   TREEFARM_AGENT_MODEL       passed as `--model`
#   TREEFARM_AGENT_EXTRA_ARGS  appended to the command line, split like sh would
tf_display="Gemini CLI"
tf_install="npm install -g @google/gemini-cli"
tf_prog=${TREEFARM_GEMINI_BIN:-gemini}

tf_begin

# --- the command line ------------------------------------------------------

# Flags, as documented in the Gemini CLI reference and headless-mode page
# (geminicli.com/docs/cli, docs/cli/cli-reference.md, docs/cli/headless.md):
#   (stdin)                with stdin not a terminal and no --prompt, the CLI
#                          runs headless with stdin as the prompt (up to 8 MiB;
#                          no argv size limit).
#   --approval-mode yolo   auto-approve every tool call (edits, shell commands
#                          such as `git commit`); replaces the deprecated --yolo,
#                          and the two must not be combined.
#   --output-format stream-json
#                          one JSON event per line (tool calls, messages, the
#                          result); the wrapper turns them into status updates
#                          and a readable transcript in the log.
#   --model <name>         model for the session (-m): an alias (pro, flash)
#                          or a concrete model name.
# Environment, from the trusted-folders page: recent versions refuse to run
# headless in a folder that is not trusted (exit 55, yolo downgraded);
# GEMINI_CLI_TRUST_WORKSPACE=true trusts the workspace for this session - the
# same as --skip-trust, but older versions that lack the flag ignore it.
# Headless auth (no browser login): GEMINI_API_KEY, or Vertex AI
# (GOOGLE_GENAI_USE_VERTEXAI=true with GOOGLE_CLOUD_PROJECT/LOCATION and
# application-default credentials), or GOOGLE_GEMINI_BASE_URL for a gateway;
# set it in the environment or in agent.env.
GEMINI_CLI_TRUST_WORKSPACE=true
export GEMINI_CLI_TRUST_WORKSPACE
set -- --approval-mode yolo --output-format stream-json
# treefarm split: every round after the first continues the conversation of
# the rounds before, by the session id treefarm chose (TREEFARM_SPLIT_SESSION,
# recorded by tf_split_session once Gemini CLI reported it):
#   --session-id <uuid>  start a new session with that id;
#   --resume <uuid>      continue it. Sessions live in the CLI's own state,
#                        ~/.gemini/tmp/<project>/chats/, found by the folder:
#                        treefarm keeps the split's worktree at one path.
tf_split_session gemini
if [ -n "$tf_session_id" ]; then
    set -- "$@" --resume "$tf_session_id"
elif [ -n "$tf_session_record" ]; then
    set -- "$@" --session-id "$TREEFARM_SPLIT_SESSION"
fi
# --model and TREEFARM_AGENT_EXTRA_ARGS (common.sh).
eval "set -- \"\$@\" $(tf_agent_options)"

tf_status working 10 "$tf_display is working"
# The prompt on stdin, the events through tf_events into the log.
tf_run_streaming gemini "$@"
tf_drop_prompt
tf_finish "$tf_rc"
