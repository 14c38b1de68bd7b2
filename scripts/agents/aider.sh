# treefarm: requires common.sh prepended. This is not a complete script: treefarm
# writes common.sh followed by this file as one wrapper (see common.sh and
# `wrapper!` in src/agents/preset.rs); common.sh brings the shebang, `set -u`
# and the tf_* functions used below.
# shellcheck shell=sh
#
# treefarm agent wrapper for aider (`aider`).
#
# treefarm runs this in the instance's worktree (see the README, section Agents). It hands
# the assembled prompt to aider as a one-shot message with the declared files
# in the chat, lets aider auto-commit its edits, writes the status file as it
# goes and exits with aider's exit code.
#
# Options (environment):
#   TREEFARM_AIDER_BIN         program to run instead of `aider`
#   TREEFARM_AGENT_MODEL       passed as `--model`
#   TREEFARM_AGENT_EXTRA_ARGS  appended to the command line, split like sh would
tf_display="aider"
tf_install="python -m pip install aider-install && aider-install"
tf_prog=${TREEFARM_AIDER_BIN:-aider}

tf_begin

# --- the command line ------------------------------------------------------

# aider's history files default to the repository root, where treefarm's
# auto-commit would pick them up: keep them beside the status file instead.
tf_state_dir=$(tf_private_dir)
if [ -z "$tf_state_dir" ]; then
    tf_state_dir=$(mktemp -d "${TMPDIR:-/tmp}/treefarm-aider.XXXXXX") || exit 2
fi
tf_hist="$tf_state_dir/aider-${TREEFARM_SPEC_ID:-agent}"
# A split's rounds share one conversation: its chat history, in the split's
# private folder (which treefarm's prune removes with the split).
tf_split_session aider
if [ -n "$tf_session_record" ]; then
    tf_hist="$tf_state_dir/aider-split"
fi

# Flags, as documented in aider's options reference and scripting page
# (aider.chat/docs/config/options.html, aider.chat/docs/scripting.html):
#   --message-file <file>  send the message in the file, process the reply,
#                          then exit (disables chat mode).
#   --yes-always           always say yes to every confirmation (e.g. creating
#                          a declared file that does not exist yet).
#   --auto-commits         commit the LLM's changes (aider's default, pinned
#                          here so a user config cannot turn it off).
#   --no-gitignore         do not add .aider* to .gitignore (that would be an
#                          undeclared change).
#   --no-analytics         no analytics for this session (--yes-always would
#                          otherwise accept the opt-in question).
#   --no-check-update      do not check for a new version on launch.
#   --no-show-release-notes  do not show release notes on a new version.
#   --no-pretty            no colourised output (it goes to treefarm's log).
#   --no-stream            one answer per request instead of a stream: aider's
#                          `Tokens: ... Cost: ...` report then carries the
#                          provider's own token counts (streamed, it counts
#                          with its local tokenizer); usage.json comes from it.
#   --no-fancy-input       plain input, no prompt-toolkit history/completion.
#   --no-detect-urls       do not offer to add URLs from the prompt to the chat.
#   --no-suggest-shell-commands  no shell commands suggested (and accepted).
#   --input-history-file / --chat-history-file <file>
#                          where the input and chat histories are written.
#   --model <name>         the main chat model.
#   FILE...                files to edit: the declared paths that are not globs.
set -- --message-file "$tf_prompt_file" --yes-always --auto-commits --no-gitignore \
    --no-analytics --no-check-update --no-show-release-notes --no-pretty --no-stream \
    --no-fancy-input --no-detect-urls --no-suggest-shell-commands \
    --input-history-file "$tf_hist.input.history" \
    --chat-history-file "$tf_hist.chat.history.md"
# treefarm split (TREEFARM_MODE=split): the drafts go in the scratch folder
# and git is left alone (the worktree and its git dir are read-only to the
# agent); no repo map either, whose cache aider would write there.
if [ "${TREEFARM_MODE:-}" = split ]; then
    set -- "$@" --no-git --map-tokens 0
    # Every round after the first continues the conversation of the rounds
    # before: --restore-chat-history loads the chat history file (the
    # earlier prompts and replies) into the chat before the new message.
    # aider has no session ids; the history file is the conversation.
    if [ -n "$tf_session_record" ] && [ -s "$tf_hist.chat.history.md" ]; then
        set -- "$@" --restore-chat-history
    fi
fi
# --model and TREEFARM_AGENT_EXTRA_ARGS (common.sh).
eval "set -- \"\$@\" $(tf_agent_options)"
while IFS= read -r tf_file; do
    case $tf_file in
    '' | *'*'* | *'?'* | *'['* | *'{'*) ;;
    *)
        # aider finds the git repository from each file's directory; a new
        # file in a new directory would leave it with none (no auto-commit).
        # An empty directory is invisible to git, so this changes nothing.
        mkdir -p -- "$(dirname -- "$tf_file")" 2>/dev/null
        set -- "$@" "$tf_file"
        ;;
    esac
done <<TF_FILES
${TREEFARM_FILES-$(cat "${TREEFARM_FILES_FILE:-/dev/null}" 2>/dev/null)}
TF_FILES

tf_status working 10 "$tf_display is working"
# Its output through tf_events (kind aider: passed through as is, the token
# report read into usage.json).
tf_run_streaming aider "$@"
tf_drop_prompt
# aider caches its repository map in .aider.tags.cache.v* at the root; an
# untracked cache is aider's, not the spec's, so it must not be committed.
for tf_cache in .aider.tags.cache.v*; do
    [ -e "$tf_cache" ] || continue
    if [ -z "$(git ls-files -- "$tf_cache" 2>/dev/null)" ]; then
        rm -rf -- "$tf_cache"
    fi
done
# Resolving a conflict (merge.on_conflict: agent): aider edits the files but
# its auto-commit names them, a partial commit git refuses during a merge.
# Conclude the merge for it when every conflicted file is free of markers.
if [ "${TREEFARM_MODE:-}" = resolve ] && [ "$tf_rc" -eq 0 ] &&
    git rev-parse -q --verify MERGE_HEAD >/dev/null 2>&1; then
    tf_clean=1
    while IFS= read -r tf_file; do
        [ -n "$tf_file" ] || continue
        if grep -qE '^(<<<<<<<|>>>>>>>|\|\|\|\|\|\|\|)( |$)' -- "$tf_file" 2>/dev/null; then
            tf_clean=0
        fi
    done <<TF_CONFLICTS
${TREEFARM_CONFLICT_FILES:-}
TF_CONFLICTS
    if [ "$tf_clean" = 1 ]; then
        while IFS= read -r tf_file; do
            [ -n "$tf_file" ] || continue
            git add -A -- "$tf_file"
        done <<TF_CONFLICTS
${TREEFARM_CONFLICT_FILES:-}
TF_CONFLICTS
        git commit -q --no-edit || tf_rc=$?
    fi
fi
tf_finish "$tf_rc"
