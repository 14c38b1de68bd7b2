//! The error type of the `git` area.
//!
//! Every variant names the branch, path, revision or worktree at fault and, when
//! libgit2 or the file system failed, carries that failure as its `#[source]`.
//! The lead maps user-fixable variants ([`GitError::is_user_fixable`]) to exit
//! code 2, printing [`GitError::hint`] on its own `hint:` line.

use std::path::PathBuf;

use git2::Oid;

/// What went wrong in a git operation.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("`{}` is not inside a git repository", path.display())]
    NotARepository {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },

    #[error("`{}` is a bare repository and treefarm was not started in one of its worktrees", path.display())]
    BareRepository { path: PathBuf },

    #[error("unknown revision `{rev}`")]
    UnknownRevision {
        rev: String,
        #[source]
        source: git2::Error,
    },

    #[error("invalid branch name `{branch}`")]
    InvalidBranchName { branch: String },

    #[error("branch `{branch}` does not exist")]
    BranchNotFound { branch: String },

    #[error("branch `{branch}` already exists at {tip}, not at {wanted}")]
    LeftoverBranch {
        branch: String,
        tip: Oid,
        wanted: Oid,
    },

    #[error("worktree path `{}` already exists", path.display())]
    LeftoverPath { path: PathBuf },

    #[error("a worktree named `{name}` is already registered in `{}`", admin.display())]
    LeftoverWorktree { name: String, admin: PathBuf },

    #[error("branch `{branch}` is already checked out at `{}`", path.display())]
    BranchCheckedOut { branch: String, path: PathBuf },

    #[error("worktree request `{name}` repeats the name, path or branch of another request")]
    DuplicateRequest { name: String },

    #[error(
        "target branch `{branch}` is checked out at `{}` with uncommitted changes",
        path.display()
    )]
    TargetDirty { branch: String, path: PathBuf },

    #[error("worktree `{}` has uncommitted changes", path.display())]
    WorktreeDirty { path: PathBuf },

    #[error("invalid worktree name `{name}`")]
    InvalidWorktreeName { name: String },

    #[error("worktree `{name}` is locked")]
    WorktreeLocked { name: String },

    #[error("no worktree `{name}` is registered")]
    WorktreeNotFound { name: String },

    #[error("`{}` is the main worktree; it is never removed", path.display())]
    MainWorktree { path: PathBuf },

    #[error("failed to create worktree `{}` for branch `{branch}`", path.display())]
    CreateWorktree {
        path: PathBuf,
        branch: String,
        #[source]
        source: git2::Error,
    },

    #[error("invalid `worktree.sparse` pattern `{pattern}`")]
    SparsePattern {
        pattern: String,
        #[source]
        source: ignore::Error,
    },

    #[error("cannot plant a sparse worktree in the repository at `{}`: {reason}", path.display())]
    SparseUnsupported { path: PathBuf, reason: String },

    /// Any other libgit2 failure: "failed to {action} `{subject}`".
    #[error(
        "branch `{branch}` moved in the shared repository (to {shared}) while its isolated agent committed elsewhere (to {private}, in `{}`)",
        git_dir.display()
    )]
    Diverged {
        branch: String,
        shared: String,
        private: String,
        git_dir: PathBuf,
    },
    #[error("failed to {action} `{subject}`")]
    Git {
        action: &'static str,
        subject: String,
        #[source]
        source: git2::Error,
    },

    /// A file-system failure: "failed to {action} `{path}`".
    #[error("failed to {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GitError {
    /// True when the user can fix the cause (repository state or input): not a
    /// repository, a bare one, an unknown revision, a leftover path, branch or
    /// worktree, a dirty checkout in the way.
    pub fn is_user_fixable(&self) -> bool {
        match self {
            GitError::NotARepository { .. }
            | GitError::BareRepository { .. }
            | GitError::UnknownRevision { .. }
            | GitError::InvalidBranchName { .. }
            | GitError::BranchNotFound { .. }
            | GitError::LeftoverBranch { .. }
            | GitError::LeftoverPath { .. }
            | GitError::LeftoverWorktree { .. }
            | GitError::BranchCheckedOut { .. }
            | GitError::DuplicateRequest { .. }
            | GitError::TargetDirty { .. }
            | GitError::WorktreeDirty { .. }
            | GitError::WorktreeNotFound { .. }
            | GitError::InvalidWorktreeName { .. }
            | GitError::WorktreeLocked { .. }
            | GitError::MainWorktree { .. }
            | GitError::SparsePattern { .. }
            | GitError::SparseUnsupported { .. }
            | GitError::Diverged { .. } => true,
            GitError::CreateWorktree { .. } | GitError::Git { .. } | GitError::Io { .. } => false,
        }
    }

    /// What to do about it, when known (printed on its own `hint:` line).
    pub fn hint(&self) -> Option<String> {
        let hint = match self {
            GitError::NotARepository { .. } => "run treefarm inside a git repository, or pass -C DIR",
            GitError::BareRepository { .. } => {
                "run treefarm from a worktree of it (`git worktree add ../main main`, then `cd ../main`), or pass -C <worktree>"
            }
            GitError::UnknownRevision { .. } => {
                "check the name with `git rev-parse`; a new repository needs a first commit"
            }
            GitError::LeftoverBranch { .. }
            | GitError::LeftoverPath { .. }
            | GitError::LeftoverWorktree { .. } => {
                "a previous run left it behind; inspect it, then run `treefarm prune` (or `treefarm resume`)"
            }
            GitError::BranchCheckedOut { .. } => {
                "switch that worktree to another branch, or remove it with `treefarm prune`"
            }
            GitError::TargetDirty { .. } => "commit or stash them, or use another --target",
            GitError::WorktreeDirty { .. } => {
                "commit or discard the changes, or pass --force (the branch tip is archived first)"
            }
            GitError::WorktreeNotFound { .. } => "list worktrees with `git worktree list`",
            GitError::WorktreeLocked { .. } => "unlock it with `git worktree unlock`, or pass --force",
            GitError::SparsePattern { .. } => {
                "use gitignore syntax, as in git's `info/sparse-checkout`"
            }
            GitError::SparseUnsupported { .. } => "set `worktree.sparse: off`",
            GitError::Diverged { .. } => {
                "neither is dropped: keep the one you want on the branch (`git branch -f`, or merge the agent's commit into it with `git -C <worktree> merge <private tip>`), then `treefarm resume`"
            }
            _ => return None,
        };
        Some(hint.to_string())
    }

    pub(crate) fn git(
        action: &'static str,
        subject: impl Into<String>,
        source: git2::Error,
    ) -> Self {
        GitError::Git {
            action,
            subject: subject.into(),
            source,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        GitError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
