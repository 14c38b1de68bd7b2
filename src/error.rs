//! Exit codes and the one error type every area uses for "bad input".
//!
//! Areas have their own `thiserror` enums; whatever the user can fix (usage,
//! config, spec, repository state) converts into or wraps an [`InputError`],
//! which maps to exit code 2. Anything else that escapes is exit 101.

use std::fmt;

/// The process exit codes of the contract (DESIGN.md, Command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything selected succeeded.
    Success = 0,
    /// The run finished but some instance failed, timed out, conflicted, was
    /// refused or skipped.
    Failed = 1,
    /// Bad input; nothing was created or changed.
    BadInput = 2,
    /// `check` found overlapping specs.
    Overlaps = 3,
    /// An internal error.
    Internal = 101,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Something the user must fix: a bad flag, config, spec or repository state.
///
/// `message` names the file, line, spec, branch or path at fault; `hint`, when
/// present, says what to do and is printed on its own `hint:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub message: String,
    pub hint: Option<String>,
}

impl InputError {
    pub fn new(message: impl Into<String>) -> Self {
        InputError {
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputError {}

/// The exit code an error escaping a command maps to: 2 when any error in the
/// chain is an [`InputError`], 101 otherwise.
pub fn exit_code_for(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|e| e.is::<InputError>()) {
        ExitCode::BadInput
    } else {
        ExitCode::Internal
    }
}

/// `err` and its causes as one line, `outer: cause: root cause` — the same
/// text as anyhow's `{:#}`, for errors kept as strings (journal reasons,
/// events, the summary), so a cause such as "No space left on device" always
/// reaches the user.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // libgit2 errors often repeat their cause; print each text once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
