//! Per-spec diagnostics: every problem of a spec folder as a value with a
//! level, the file and line, and a hint, so that one invalid spec never hides
//! or blocks the others.

use serde::{Deserialize, Serialize};

use super::error::SpecError;

/// How bad a problem is: an error makes its spec invalid; a warning does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
}

/// One problem found while reading specs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub level: Level,
    /// The file it is about, relative to the repository root.
    pub file: Option<String>,
    pub line: Option<usize>,
    /// The id of the spec it belongs to, when known.
    pub spec: Option<String>,
    /// The spec (file or directory, relative to the repository root) whose
    /// validity it decides; `None` for problems of the folder itself.
    pub spec_path: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub(crate) fn new(level: Level, err: &SpecError, spec: &str, spec_path: &str) -> Diagnostic {
        let (file, line) = err.location();
        Diagnostic {
            level,
            file: Some(file.unwrap_or(spec_path).to_string()),
            line,
            spec: (!spec.is_empty()).then(|| spec.to_string()),
            spec_path: Some(spec_path.to_string()),
            message: err.to_string(),
            hint: err.hint(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.level == Level::Error
    }

    /// `error: <message>` and an indented `hint:` line.
    pub fn render(&self) -> String {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        match &self.hint {
            Some(h) => format!("{level}: {}\n  hint: {h}", self.message),
            None => format!("{level}: {}", self.message),
        }
    }
}
