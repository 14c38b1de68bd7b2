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

tf_read_prompt

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
# --model and TREEFARM_AGENT_EXTRA_ARGS (common.sh).
eval "set -- \"\$@\" $(tf_agent_options)"

tf_status working 10 "$tf_display is working"
# stdin from /dev/null: with --prompt, piped stdin is read and prepended.
"$tf_prog" "$@" </dev/null
tf_rc=$?
tf_finish "$tf_rc"
