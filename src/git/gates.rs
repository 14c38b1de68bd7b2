//! Warm gate worktrees: a small pool of detached worktrees under the state
//! dir (`<common>/treefarm/gates/<n>`) kept across gate runs and across runs.
//! Moving one to the next commit under test checks out only the files that
//! differ from the commit it holds (libgit2 checkout with the current tree as
//! baseline), so untracked build output — `target/`, `node_modules/` — stays,
//! unchanged files keep their mtime, and a gate like `cargo test` builds
//! incrementally instead of from nothing.

use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{Oid, Repository};

use super::error::GitError;
use super::repo::Repo;
use super::worktree::remove_scratch;

/// The folder of the gate pool, under the state dir.
pub const GATES_DIR: &str = "treefarm/gates";

/// One gate worktree of the pool, at the commit it was moved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateWorktree {
    /// Its slot in the pool, `0..gate_jobs`.
    pub slot: usize,
    pub path: PathBuf,
    pub commit: Oid,
    /// True when it was (re)created from nothing rather than moved.
    pub fresh: bool,
}

/// The admin entry of gate worktree `slot`. While it is planted a temporary
/// branch `treefarm/<admin name>` exists; `treefarm/gate-*` branches are the
/// ones `prune` leaves alone.
pub fn gate_admin_name(slot: usize) -> String {
    format!("gate-pool-{slot}")
}

impl Repo {
    /// Where gate worktree `slot` lives.
    pub fn gate_worktree_path(&self, slot: usize) -> PathBuf {
        self.common_dir().join(GATES_DIR).join(slot.to_string())
    }

    /// Moves gate worktree `slot` to `commit` (detached), creating it when
    /// missing. Tracked files end up exactly as in `commit` — even ones the
    /// last gate modified or deleted — while untracked and ignored files
    /// stay. A gate worktree that is not a usable worktree of this
    /// repository any more is planted again from nothing.
    pub fn warm_gate_worktree(&self, slot: usize, commit: Oid) -> Result<GateWorktree, GitError> {
        let path = self.gate_worktree_path(slot);
        let name = gate_admin_name(slot);
        // A move killed half-way leaves files of a commit HEAD does not
        // name: untracked to the next move, they would stay. The marker
        // says so; such a worktree is planted again.
        let moving = self.gate_moving_marker(slot);
        let interrupted = moving.exists();
        if let (Some(wt), false) = (self.open_gate(&path, &name), interrupted) {
            write_marker(&moving, commit)?;
            move_to(&wt, &path, commit)?;
            remove_marker(&moving)?;
            return Ok(GateWorktree {
                slot,
                path,
                commit,
                fresh: false,
            });
        }
        write_marker(&moving, commit)?;
        remove_scratch(self, &name, &path)?;
        // A planting killed half-way may have left its temporary branch.
        self.delete_branch(&format!("treefarm/{name}"))?;
        self.add_detached(&name, &path, commit)?;
        remove_marker(&moving)?;
        Ok(GateWorktree {
            slot,
            path,
            commit,
            fresh: true,
        })
    }

    /// The slots of the gate pool that exist (a folder or an admin entry),
    /// sorted.
    pub fn gate_pool_slots(&self) -> Vec<usize> {
        let mut slots = std::collections::BTreeSet::new();
        if let Ok(entries) = std::fs::read_dir(self.common_dir().join(GATES_DIR)) {
            for entry in entries.flatten() {
                if let Ok(slot) = entry.file_name().to_string_lossy().parse::<usize>() {
                    slots.insert(slot);
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.common_dir().join("worktrees")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(slot) = name
                    .strip_prefix("gate-pool-")
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    slots.insert(slot);
                }
            }
        }
        slots.into_iter().collect()
    }

    /// Removes gate worktree `slot`, files (build output included) and admin
    /// entry; a missing one is not an error.
    pub fn remove_gate_worktree(&self, slot: usize) -> Result<(), GitError> {
        remove_scratch(self, &gate_admin_name(slot), &self.gate_worktree_path(slot))?;
        remove_marker(&self.gate_moving_marker(slot))
    }

    /// Present while gate worktree `slot` is being moved or planted.
    fn gate_moving_marker(&self, slot: usize) -> PathBuf {
        self.common_dir()
            .join(GATES_DIR)
            .join(format!("{slot}.moving"))
    }

    /// The gate worktree at `path` when it is a registered worktree of this
    /// repository whose HEAD resolves.
    fn open_gate(&self, path: &Path, name: &str) -> Option<Repository> {
        let admin = self.common_dir().join("worktrees").join(name);
        if !path.join(".git").is_file() || !admin.is_dir() {
            return None;
        }
        let wt = Repository::open(path).ok()?;
        let same = std::fs::canonicalize(wt.commondir()).ok()?
            == std::fs::canonicalize(self.common_dir()).ok()?;
        (same && wt.head().ok()?.target().is_some()).then_some(wt)
    }
}

fn write_marker(path: &Path, commit: Oid) -> Result<(), GitError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| GitError::io("create", parent, e))?;
    }
    std::fs::write(path, format!("{commit}\n")).map_err(|e| GitError::io("write", path, e))
}

fn remove_marker(path: &Path) -> Result<(), GitError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(GitError::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// Checks out `commit` in `wt` against the tree HEAD holds now, then detaches
/// HEAD there. Forced: a tracked file the last gate changed is put back;
/// untracked and ignored files are left alone.
fn move_to(wt: &Repository, path: &Path, commit: Oid) -> Result<(), GitError> {
    let at = || path.display().to_string();
    let target = wt
        .find_commit(commit)
        .map_err(|e| GitError::git("read commit", commit.to_string(), e))?;
    // HEAD still names the commit checked out now: libgit2 takes its tree as
    // the baseline, so only files that differ from it (or were changed in
    // the worktree) are written.
    let mut opts = CheckoutBuilder::new();
    opts.force().remove_untracked(false).remove_ignored(false);
    wt.checkout_tree(target.as_object(), Some(&mut opts))
        .map_err(|e| GitError::git("check out the commit under test in", at(), e))?;
    wt.set_head_detached(commit)
        .map_err(|e| GitError::git("detach HEAD of", at(), e))
}
