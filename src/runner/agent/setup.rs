//! `setup` in a fresh worktree: copy and link what the user listed, then
//! run the setup command like an agent (through the executor).

use std::path::Path;

use tokio::sync::{mpsc, watch};

use crate::runner::agent::executor::{AgentJob, Executor};
use crate::runner::agent::local::Local;
use crate::runner::messages::{AgentEnd, Stop};
use crate::state::RunOptions;

/// Why setup did not complete.
pub(crate) enum SetupFailure {
    /// Ctrl-C (or a dying coordinator) stopped the setup command: resumable.
    Stopped,
    Failed(String),
}

impl From<String> for SetupFailure {
    fn from(reason: String) -> SetupFailure {
        SetupFailure::Failed(reason)
    }
}

/// `setup.copy`, `setup.link`, `setup.command` in a fresh worktree. The
/// command runs like an agent (own process group, output to the instance
/// log, `agent.timeout`, stopped by Ctrl-C), so a slow `npm ci` can neither
/// outlive a stop request nor hang the run.
pub(crate) async fn setup(
    opts: &RunOptions,
    worktree: &Path,
    job: &AgentJob,
    stop: watch::Receiver<Stop>,
) -> Result<(), SetupFailure> {
    if opts.setup.submodules {
        crate::git::init_submodules(worktree).map_err(|e| match std::error::Error::source(&e) {
            Some(cause) => format!("setup.submodules: {e}: {cause}"),
            None => format!("setup.submodules: {e}"),
        })?;
    }
    // `.worktreeinclude`: gitignored files of the main worktree.
    for rel in &opts.worktree_include {
        let (from, to) = (opts.repo_root.join(rel), worktree.join(rel));
        if to.symlink_metadata().is_ok() || !from.is_file() {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                format!(
                    ".worktreeinclude: cannot create `{}`: {e}",
                    parent.display()
                )
            })?;
        }
        std::fs::copy(&from, &to).map_err(|e| {
            format!(
                ".worktreeinclude: cannot copy `{}` to `{}`: {e}",
                from.display(),
                to.display()
            )
        })?;
    }
    for rel in &opts.setup.copy {
        let from = opts.repo_root.join(rel);
        let to = worktree.join(rel);
        if !from.exists() {
            tracing::debug!(path = %from.display(), "setup.copy source missing; skipped");
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("setup.copy: cannot create `{}`: {e}", parent.display()))?;
        }
        copy_recursively(&from, &to).map_err(|e| {
            format!(
                "setup.copy: cannot copy `{}` to `{}`: {e}",
                from.display(),
                to.display()
            )
        })?;
    }
    for rel in &opts.setup.link {
        let from = opts.repo_root.join(rel);
        let to = worktree.join(rel);
        if std::fs::read_link(&to).is_ok_and(|target| target == from) {
            // Our own link from an earlier setup of this worktree (resume).
            continue;
        }
        if to.symlink_metadata().is_ok() {
            return Err(SetupFailure::Failed(format!(
                "setup.link: `{}` already exists in the worktree (is it tracked?); remove it from setup.link",
                to.display()
            )));
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("setup.link: cannot create `{}`: {e}", parent.display()))?;
        }
        std::os::unix::fs::symlink(&from, &to).map_err(|e| {
            format!(
                "setup.link: cannot link `{}` to `{}`: {e}",
                to.display(),
                from.display()
            )
        })?;
    }
    if !opts.setup.command.trim().is_empty() {
        let setup_job = AgentJob {
            command: opts.setup.command.clone(),
            // Its own files, so the agent's exit code and status stay its own.
            status_path: job.exit_path.with_file_name("setup_status.json"),
            exit_path: job.exit_path.with_file_name("setup_exit_code"),
            idle_timeout: None,
            ..job.clone()
        };
        // Nobody listens: the setup command's pid and status are not the
        // agent's.
        let (events, _) = mpsc::unbounded_channel();
        match Local.spawn(setup_job, events, stop).await {
            AgentEnd::Exited(0) => {}
            AgentEnd::Stopped => return Err(SetupFailure::Stopped),
            end => {
                return Err(SetupFailure::Failed(format!(
                    "setup command `{}` failed ({end}); see {}",
                    opts.setup.command,
                    job.log_path.display()
                )))
            }
        }
    }
    Ok(())
}

fn copy_recursively(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_recursively(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}
