//! The error type of the state area: every variant names the path at fault
//! and keeps the underlying error as its `#[source]`.
//!
//! Messages are fragments meant to be printed as a chain (`{:#}`):
//! ``failed to write `…/state.json.tmp`: No space left on device (os error 28)``
//! followed by a `hint:` line. The hint travels with the innermost error
//! ([`Cause`]) so that it comes last whichever way the chain is printed.

use std::error::Error;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::InputError;

/// An error reading or writing treefarm's state under `<git-common-dir>/treefarm`.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A filesystem operation (`action` is a verb: "write", "read", "create",
    /// "rename", "sync", "remove", "list") failed on `path`.
    #[error("failed to {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: Cause,
    },
    /// A journal file exists but does not parse.
    #[error("corrupt state file `{}`", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: Cause,
    },
    /// A record could not be serialised (should not happen: records hold only
    /// strings, numbers and JSON values).
    #[error("failed to serialise state for `{}`", path.display())]
    Serialize {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// No run with this id; the source is the user-facing [`InputError`]
    /// (exit code 2) listing the recent run ids.
    #[error("unknown run `{run_id}`")]
    UnknownRun {
        run_id: String,
        path: PathBuf,
        #[source]
        source: InputError,
    },
}

impl StateError {
    /// The path at fault.
    pub fn path(&self) -> &Path {
        match self {
            StateError::Io { path, .. }
            | StateError::Corrupt { path, .. }
            | StateError::Serialize { path, .. }
            | StateError::UnknownRun { path, .. } => path,
        }
    }

    /// The underlying I/O error kind, when this is an I/O failure.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            StateError::Io { source, .. } => source.io_error().map(io::Error::kind),
            _ => None,
        }
    }

    /// The hint shown on the `hint:` line, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            StateError::Io { source, .. } | StateError::Corrupt { source, .. } => source.hint(),
            StateError::UnknownRun { source, .. } => source.hint.as_deref(),
            StateError::Serialize { .. } => None,
        }
    }

    /// True when the user can fix this (an unknown run id): the CLI maps it to
    /// exit code 2.
    pub fn is_user_error(&self) -> bool {
        matches!(self, StateError::UnknownRun { .. })
    }

    /// An I/O failure of `action` on `path`, with a hint chosen from the
    /// error kind (disk full, permissions, read-only filesystem).
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, error: io::Error) -> Self {
        let path = path.into();
        let hint = io_hint(&path, &error);
        StateError::Io {
            action,
            path,
            source: Cause::new(error, hint),
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        error: serde_json::Error,
        hint: Option<String>,
    ) -> Self {
        StateError::Corrupt {
            path: path.into(),
            source: Cause::new(error, hint),
        }
    }

    /// [`StateError::corrupt`] with the cause as text (a patch that does not
    /// apply, a value that does not fit its field).
    pub(crate) fn corrupt_text(
        path: impl Into<PathBuf>,
        error: String,
        hint: Option<String>,
    ) -> Self {
        StateError::Corrupt {
            path: path.into(),
            source: Cause::new(InputError::new(error), hint),
        }
    }
}

/// The error underneath a [`StateError`], with an optional hint that its
/// `Display` prints on its own `hint:` line after the error text.
#[derive(Debug)]
pub struct Cause {
    error: Box<dyn Error + Send + Sync + 'static>,
    hint: Option<String>,
}

impl Cause {
    pub(crate) fn new(error: impl Error + Send + Sync + 'static, hint: Option<String>) -> Self {
        Cause {
            error: Box::new(error),
            hint,
        }
    }

    /// The hint, without the `hint: ` prefix.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The wrapped I/O error, if the cause is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.error.downcast_ref::<io::Error>()
    }

    /// The wrapped error.
    pub fn inner(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.error
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error.source()
    }
}

const ENOSPC: i32 = nix::errno::Errno::ENOSPC as i32;
const EDQUOT: i32 = nix::errno::Errno::EDQUOT as i32;
const EROFS: i32 = nix::errno::Errno::EROFS as i32;

fn io_hint(path: &Path, error: &io::Error) -> Option<String> {
    let dir = path.parent().unwrap_or(path).display();
    match (error.raw_os_error(), error.kind()) {
        (Some(ENOSPC | EDQUOT), _) => Some(format!(
            "free some space on the filesystem holding `{dir}`; the previous state is intact, \
             continue with `treefarm resume`"
        )),
        (Some(EROFS), _) => Some(format!("`{dir}` is on a read-only filesystem")),
        (_, io::ErrorKind::PermissionDenied) => {
            Some(format!("check the owner and permissions of `{dir}`"))
        }
        _ => None,
    }
}
