#!/usr/bin/env bash
# Runs treefarm's presets against the REAL agent CLIs (tests/integration/real_agents.rs):
# installs pinned versions of Claude Code, Codex CLI and Gemini CLI (npm) and
# aider (a Python venv) into a cache directory, then runs the ignored
# real-CLI tests, which point every CLI at the scripted model server on
# loopback (tests/support/model_server.py) - no CLI reaches the internet.
#
# As root (the CI user) each test also runs as an unprivileged user
# (TREEFARM_REAL_AGENTS_USER, default `treefarm-ci`, created with useradd when
# missing); set TREEFARM_REAL_AGENTS_USER= (empty) to skip that.
#
# Exit: 0 when the tests pass, or after `SKIPPED: <reason>` when the package
# registries cannot be reached (or node/npm/python3 are missing) and the
# pinned CLIs are not cached yet; anything else that fails fails the script.
#
# Environment:
#   TREEFARM_REAL_AGENTS_CACHE  the cache directory (default: as root
#                               /var/cache/treefarm-real-agents, so the
#                               unprivileged user can run the CLIs too; else
#                               ${XDG_CACHE_HOME:-~/.cache}/treefarm-real-agents)
#   TREEFARM_REAL_AGENTS_USER   the unprivileged user for the second pass
#   TREEFARM_REAL_AGENTS_PYTHON the python3 for aider's venv (default: the
#                               first python3 that can make one)
#
# Bumping a version: change it below, run this script, and update the tested
# versions in the README (section Agents). A new CLI version that changes its
# API use shows up as a failing test naming the preset.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- pinned versions ---------------------------------------------------------
CLAUDE_CODE_VERSION=2.1.332 # @anthropic-ai/claude-code
CODEX_VERSION=0.171.0       # @openai/codex
GEMINI_CLI_VERSION=0.61.0   # @google/gemini-cli
AIDER_VERSION=0.86.2        # aider-chat (PyPI)

say() { printf 'test-real-agents: %s\n' "$*" >&2; }
skip() {
    printf 'SKIPPED: %s\n' "$*"
    exit 0
}

if [ "$(id -u)" = 0 ]; then
    default_cache=/var/cache/treefarm-real-agents
else
    default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/treefarm-real-agents
fi
cache=${TREEFARM_REAL_AGENTS_CACHE:-$default_cache}
stamp="claude-code@$CLAUDE_CODE_VERSION codex@$CODEX_VERSION gemini-cli@$GEMINI_CLI_VERSION aider-chat@$AIDER_VERSION"

# --- the unprivileged user ---------------------------------------------------
user=""
if [ "$(id -u)" = 0 ]; then
    user=${TREEFARM_REAL_AGENTS_USER-treefarm-ci}
    if [ -n "$user" ] && ! id "$user" >/dev/null 2>&1; then
        if command -v useradd >/dev/null 2>&1; then
            say "creating the unprivileged user $user (useradd)"
            useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
        else
            say "no useradd: the tests run as root only"
            user=""
        fi
    fi
    if [ -n "$user" ] && ! command -v runuser >/dev/null 2>&1; then
        say "no runuser: the tests run as root only"
        user=""
    fi
fi

# --- python for aider's venv ------------------------------------------------
# The venv runs with the interpreter it was made with: for the unprivileged
# pass it must be one that user can run (e.g. not one under /root).
python=""
for candidate in ${TREEFARM_REAL_AGENTS_PYTHON:-} "$(command -v python3 2>/dev/null || true)" /usr/bin/python3 /usr/local/bin/python3; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    "$candidate" -c 'import venv, ensurepip' 2>/dev/null || continue
    if [ -n "$user" ] && ! runuser -u "$user" -- "$candidate" -c 'import venv' >/dev/null 2>&1; then
        continue
    fi
    python=$candidate
    break
done
stamp="$stamp python=$python"

# --- install (skipped when the cache already holds these versions) ----------
if [ "$(cat "$cache/versions" 2>/dev/null || true)" != "$stamp" ]; then
    for tool in node npm; do
        command -v "$tool" >/dev/null 2>&1 || skip "\`$tool\` is not installed; it is needed to install the agent CLIs"
    done
    [ -n "$python" ] || skip "no python3 that can create a venv${user:+ and that $user can run} (install python3-venv)"
    say "checking that the npm registry and PyPI can be reached"
    timeout 60 npm view "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" version >/dev/null 2>&1 ||
        skip "the npm registry cannot be reached (npm view @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION failed)"
    # pip itself, so its own configuration (index, certificates, proxy) applies.
    pypi=$(timeout 120 "$python" -m pip index versions aider-chat 2>/dev/null || true)
    case $pypi in *"$AIDER_VERSION"*) ;; *) false ;; esac ||
        skip "PyPI cannot be reached (pip index versions aider-chat does not list $AIDER_VERSION)"

    say "installing into $cache: $stamp"
    rm -rf "$cache"
    mkdir -p "$cache"
    say "npm install @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION @openai/codex@$CODEX_VERSION @google/gemini-cli@$GEMINI_CLI_VERSION"
    npm install --prefix "$cache/npm" --no-audit --no-fund --loglevel=error \
        "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" \
        "@openai/codex@$CODEX_VERSION" \
        "@google/gemini-cli@$GEMINI_CLI_VERSION" >&2
    say "$python -m venv $cache/aider-venv; pip install aider-chat==$AIDER_VERSION"
    "$python" -m venv "$cache/aider-venv"
    "$cache/aider-venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "aider-chat==$AIDER_VERSION" >&2
    printf '%s\n' "$stamp" >"$cache/versions"
else
    say "using the CLIs cached in $cache: $stamp"
fi
bin=$cache/npm/node_modules/.bin
say "installed: $("$bin/claude" --version 2>&1 | head -1); $("$bin/codex" --version 2>&1 | head -1); gemini $("$bin/gemini" --version 2>&1 | head -1); aider $("$cache/aider-venv/bin/aider" --version 2>&1 | tail -1)"

# --- the tests ---------------------------------------------------------------
say "cargo test --test integration real_agents:: real_mcp:: real_split:: -- --ignored${user:+ (also as $user)}"
TREEFARM_REAL_AGENTS_DIR=$cache TREEFARM_REAL_AGENTS_USER=$user \
    cargo test --locked --test integration -- --ignored --test-threads=1 real_agents:: real_mcp:: real_split::
