//! Does the agent's program exist? `run` asks before it creates anything, so a
//! missing CLI is a clear input error instead of N failed instances.
//!
//! Only the first word of the command matters, found with a small sh-like
//! lexer (quotes, backslashes, leading `VAR=value` assignments). What cannot be
//! known without running a shell — builtins, keywords, expansions — passes.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::error::InputError;

use super::preset::Preset;
use super::shell::{first_command_words, is_assignment};

/// Used when the caller has no `PATH` at all, like `sh` falls back to a
/// default search path.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Words `sh` handles itself: a command starting with one of them is not
/// checked (`sh` and `env` are programs and are checked).
const SHELL_BUILTINS: &[&str] = &[
    "!", ".", ":", "[", "[[", "{", "(", "alias", "bg", "break", "builtin", "case", "cd", "command",
    "continue", "eval", "exec", "exit", "export", "false", "fg", "for", "function", "hash", "if",
    "jobs", "kill", "local", "printf", "pwd", "read", "readonly", "return", "set", "shift",
    "source", "test", "time", "times", "trap", "true", "type", "ulimit", "umask", "unalias",
    "unset", "until", "wait", "while", "echo",
];

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Where `program` resolves: a path with a `/` relative to `cwd`, a bare name
/// through `path_env` (an empty entry means `cwd`, as in `sh`).
pub(crate) fn resolve(program: &str, path_env: Option<&OsStr>, cwd: &Path) -> Option<PathBuf> {
    if program.contains('/') {
        let path = cwd.join(program);
        return is_executable_file(&path).then_some(path);
    }
    let default_path = OsString::from(DEFAULT_PATH);
    let path_env = path_env.unwrap_or(&default_path);
    std::env::split_paths(path_env)
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                cwd.join(program)
            } else {
                cwd.join(dir).join(program)
            }
        })
        .find(|candidate| is_executable_file(candidate))
}

/// Checks that the program of the agent command `command` (run with `sh -c`
/// in `cwd`) exists: a path must name an executable file, a bare name must be
/// found on `path_env` (`None`: the default `/usr/local/bin:/usr/bin:/bin`).
///
/// Leading `VAR=value` assignments are skipped. A command whose program is a
/// shell builtin or keyword, or contains an expansion (`$HOME/bin/agent`,
/// `{worktree}/run.sh` before placeholders are filled), passes unchecked.
pub fn check_program(
    command: &str,
    path_env: Option<&OsStr>,
    cwd: &Path,
) -> Result<(), InputError> {
    let words = first_command_words(command).map_err(|why| {
        InputError::new(format!("cannot parse the agent command `{command}`: {why}"))
            .with_hint("check the quoting of `agent.command` (or `--agent`)")
    })?;
    let Some(program) = words.iter().find(|w| !is_assignment(w)) else {
        return Err(
            InputError::new(format!("the agent command `{command}` names no program"))
                .with_hint("set `agent.command` (or `--agent`) to the command that runs your agent, or use `agent.preset`"),
        );
    };
    if program.expands || SHELL_BUILTINS.contains(&program.text.as_str()) {
        return Ok(());
    }
    if resolve(&program.text, path_env, cwd).is_some() {
        return Ok(());
    }
    let (what, hint) = if program.text.contains('/') {
        (
            format!(
                "the agent program `{}` does not exist or is not executable (agent command `{command}`)",
                program.text
            ),
            format!(
                "check the path (relative paths start from `{}`) and its execute permission (`chmod +x`)",
                cwd.display()
            ),
        )
    } else {
        (
            format!(
                "the agent program `{}` is not installed or not on PATH (agent command `{command}`)",
                program.text
            ),
            "install it, add its folder to PATH, or give its full path in `agent.command`".to_string(),
        )
    };
    Err(InputError::new(what).with_hint(hint))
}

/// Checks that a preset's CLI exists: `bin_override` (the value of the
/// preset's `TREEFARM_<X>_BIN`, when set) or else `preset.program`, looked up
/// like [`check_program`] does. The error says how to install the CLI.
pub fn check_preset_program(
    preset: &Preset,
    bin_override: Option<&OsStr>,
    path_env: Option<&OsStr>,
    cwd: &Path,
) -> Result<(), InputError> {
    let program = match bin_override.filter(|b| !b.is_empty()) {
        Some(bin) => bin.to_string_lossy().into_owned(),
        None => preset.program.to_string(),
    };
    if resolve(&program, path_env, cwd).is_some() {
        return Ok(());
    }
    let message = if program.contains('/') {
        format!(
            "`{program}` ({}, from {}) does not exist or is not executable",
            preset.display, preset.bin_env
        )
    } else {
        format!(
            "`{program}` ({}) is not installed or not on PATH (agent preset `{}`)",
            preset.display, preset.name
        )
    };
    Err(InputError::new(message).with_hint(format!(
        "install: {}; or set {} to the program's path",
        preset.install_hint, preset.bin_env
    )))
}
