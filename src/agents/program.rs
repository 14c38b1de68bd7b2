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

/// Quotes `s` for `sh`: unchanged when it is made of safe characters only,
/// otherwise in single quotes (a `'` inside becomes `'\''`).
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// One word of a command line, and whether it held anything `sh` would expand
/// (`$`, a backquote, an unquoted glob or `{`), which makes it unknowable here.
#[derive(Debug, PartialEq, Eq)]
struct Word {
    text: String,
    expands: bool,
}

/// Splits the first simple command of `command` into words the way `sh` would,
/// stopping at the first unquoted operator (`;`, `&`, `|`, `<`, `>`, `(`,
/// `)`, newline) or `#` comment.
fn first_command_words(command: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut chars = command.chars().peekable();
    let mut current: Option<Word> = None;
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = current.take() {
                    words.push(w);
                }
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' | '\n' => break,
            '#' if current.is_none() => break,
            '\'' => {
                let w = current.get_or_insert_with(empty_word);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.text.push(c),
                        None => return Err("unterminated single quote".to_string()),
                    }
                }
            }
            '"' => {
                let w = current.get_or_insert_with(empty_word);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('$' | '`' | '"' | '\\')) => w.text.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                w.text.push('\\');
                                w.text.push(c);
                            }
                            None => return Err("unterminated double quote".to_string()),
                        },
                        Some(c) => {
                            if c == '$' || c == '`' {
                                w.expands = true;
                            }
                            w.text.push(c);
                        }
                        None => return Err("unterminated double quote".to_string()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => current.get_or_insert_with(empty_word).text.push(c),
                None => current.get_or_insert_with(empty_word).text.push('\\'),
            },
            c => {
                let w = current.get_or_insert_with(empty_word);
                if matches!(c, '$' | '`' | '*' | '?' | '[' | '{' | '~') {
                    w.expands = true;
                }
                w.text.push(c);
            }
        }
    }
    if let Some(w) = current.take() {
        words.push(w);
    }
    Ok(words)
}

fn empty_word() -> Word {
    Word {
        text: String::new(),
        expands: false,
    }
}

/// `NAME=value` with a valid shell name: an assignment, not the program.
fn is_assignment(word: &Word) -> bool {
    match word.text.split_once('=') {
        Some((name, _)) => {
            let mut chars = name.chars();
            matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
                && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        }
        None => false,
    }
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Where `program` resolves: a path with a `/` relative to `cwd`, a bare name
/// through `path_env` (an empty entry means `cwd`, as in `sh`).
fn resolve(program: &str, path_env: Option<&OsStr>, cwd: &Path) -> Option<PathBuf> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn words(command: &str) -> Vec<String> {
        first_command_words(command)
            .expect("parse")
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[test]
    fn lexer_handles_quotes_escapes_and_operators() {
        assert_eq!(
            words(r#"claude -p "$(cat {spec})" --x"#),
            ["claude", "-p", "$(cat {spec})", "--x"]
        );
        assert_eq!(words(r"'my agent' a\ b c"), ["my agent", "a b", "c"]);
        assert_eq!(words(r#"a"b"'c'd"#), ["abcd"]);
        assert_eq!(words("run.sh && other"), ["run.sh"]);
        assert_eq!(words("  # only a comment"), Vec::<String>::new());
        assert_eq!(words(r#""a \" b""#), [r#"a " b"#]);
        assert!(first_command_words("'open").is_err());
        assert!(first_command_words("\"open").is_err());
    }

    #[test]
    fn shell_quote_round_trips_through_the_lexer() {
        for s in ["plain", "a b", "it's", "", "$HOME", "x\"y", "--flag=1"] {
            let quoted = shell_quote(s);
            assert_eq!(words(&format!("prog {quoted}")), ["prog", s], "{quoted}");
        }
        assert_eq!(shell_quote("--model"), "--model");
        assert_eq!(shell_quote("a b"), "'a b'");
    }
}
