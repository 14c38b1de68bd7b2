//! What can go wrong while preparing or reading a split.

use std::path::PathBuf;

/// A split that could not be prepared or read (the agent's mistakes are
/// diagnostics, not errors).
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("failed to {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write the list of existing specs `{}`", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl SplitError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        SplitError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
