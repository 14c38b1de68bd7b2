//! The changes of a stamped worktree, read from what moved since its stamp:
//! staged and committed by path — the new tree built on HEAD's with only
//! the moved paths' folders written again, the index entries of those paths
//! made from their files — so that collecting an agent's work costs what it
//! changed and what the worktree holds, never a diff of every tracked
//! file's index entry against the disk, nor a read and write of the whole
//! index (a sparse worktree's holds the whole repository): the index
//! follows only if the worktree stays (`index_lag.rs`).
//!
//! Only the plain case is taken: everything unusual returns `None` and the
//! full listing ([`Repo::worktree_changes`](super::Repo)) decides, as before.

use std::path::{Path, PathBuf};

use git2::{
    build::TreeUpdateBuilder, ErrorCode, FileMode, IndexEntry, IndexTime, Oid, Repository, Tree,
};

use super::error::GitError;
use super::stamp::{OnDisk, WorktreeStamp};

/// What an agent changed in a stamped worktree, already hashed: the tree
/// to commit and the index entries that go with it.
pub(crate) struct StampedChanges {
    repo: Repository,
    staging: Staging,
    /// The stamp, when nothing moved since: the worktree is as stamped.
    as_stamped: Option<WorktreeStamp>,
}

/// What [`stage`] made of the moved paths.
struct Staging {
    /// HEAD's commit and tree when the agent exited (the stamp's).
    parent: Oid,
    base: Oid,
    /// HEAD's tree with the changes.
    tree: Oid,
    /// Per moved path to stage: its new index entry, `None` to remove it.
    staged: Vec<(PathBuf, Option<IndexEntry>)>,
    /// An untracked file at a `placed` path was left out, so the worktree
    /// is not clean once the rest is committed.
    placed_left: bool,
}

impl StampedChanges {
    /// The staged paths, in path order.
    pub(crate) fn paths(&self) -> impl Iterator<Item = &Path> {
        self.staging.staged.iter().map(|(path, _)| path.as_path())
    }

    /// Whether the tree differs from HEAD's (a file touched but left with
    /// its content and mode is no change).
    pub(crate) fn is_dirty(&self) -> bool {
        self.staging.tree != self.staging.base
    }

    /// Commits the tree on HEAD, as `git add` then `git commit` would:
    /// `None` when the tree is HEAD's. The worktree's index then lags the
    /// commit at the staged paths, recorded (see
    /// [`index_lag::record`](super::index_lag::record)) for whoever needs it
    /// in line; the worktree is vouched clean (see
    /// [`vouch_clean`](super::stamp::vouch_clean)) unless a placed file was
    /// left out.
    pub(crate) fn commit(self, worktree: &Path, message: &str) -> Result<Option<Oid>, GitError> {
        let committed = self.commit_tree(worktree, message)?;
        if let Some(id) = committed {
            super::index_lag::record(worktree, id, self.staging.staged)?;
        }
        if !self.staging.placed_left {
            super::stamp::vouch_clean(worktree, self.as_stamped);
        }
        Ok(committed)
    }

    /// Commits the tree on HEAD, the index left as it is (it then lags
    /// HEAD at the staged paths: see `index_lag.rs`).
    fn commit_tree(&self, worktree: &Path, message: &str) -> Result<Option<Oid>, GitError> {
        if !self.is_dirty() {
            return Ok(None);
        }
        let at = || worktree.display().to_string();
        let repo = &self.repo;
        let tree = repo
            .find_tree(self.staging.tree)
            .map_err(|e| GitError::git("read tree in", at(), e))?;
        let parent = repo
            .find_commit(self.staging.parent)
            .map_err(|e| GitError::git("read HEAD of", at(), e))?;
        let sig = super::identity::signature(repo)?;
        let id = repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &[&parent])
            .map_err(|e| GitError::git("commit in", at(), e))?;
        crate::hooks::crash_point("stamped-commit");
        Ok(Some(id))
    }
}

/// The changes of `worktree` since `stamp`, untracked files at `placed`
/// paths left out; `None` when they cannot be read from the stamp alone
/// (the caller then lists the worktree in full): the stamp says HEAD or the
/// index moved, content filters or attributes could apply, `core.filemode`
/// or `core.symlinks` is off, a moved path is a folder where a file was (or
/// the reverse), a submodule or inside one, or a nested repository, or any
/// read failed.
pub(crate) fn read(
    worktree: &Path,
    placed: &[String],
    stamp: &WorktreeStamp,
) -> Option<StampedChanges> {
    let repo = Repository::open(worktree).ok()?;
    let moved = stamp.moved_in(&repo, worktree)?;
    let as_stamped = moved.is_empty().then(|| stamp.clone());
    let staging = stage(&repo, worktree, placed, moved)?;
    Some(StampedChanges {
        repo,
        staging,
        as_stamped,
    })
}

/// The staging of [`read`] in the open `repo`.
fn stage(
    repo: &Repository,
    worktree: &Path,
    placed: &[String],
    moved: Vec<super::stamp::Moved>,
) -> Option<Staging> {
    let parent = repo.head().ok()?.peel_to_commit().ok()?;
    let base = parent.tree().ok()?;
    if !plain_files(repo, &base) {
        tracing::debug!("filters or modes could apply: full listing");
        return None;
    }
    let mut updates = TreeUpdateBuilder::new();
    let (mut staged, mut placed_left) = (Vec::new(), false);
    for m in moved {
        let name = |n: &str| m.path.components().any(|c| c.as_os_str() == n);
        if name(".git") || name(".gitattributes") {
            return None;
        }
        let tracked = tracked_mode(&base, &m.path)?;
        if tracked.is_some_and(|mode| mode == FileMode::Tree || mode == FileMode::Commit) {
            return None;
        }
        match m.now {
            None if tracked.is_some() => {
                updates.remove(&m.path);
                staged.push((m.path, None));
            }
            // An untracked file that came and went.
            None => {}
            Some(OnDisk::Folder | OnDisk::Other) => return None,
            Some(OnDisk::File | OnDisk::Link) => {
                if tracked.is_none() && is_placed(&m.path, placed) {
                    placed_left = true;
                    continue;
                }
                if tracked.is_none() && repo.is_path_ignored(&m.path).ok()? {
                    continue;
                }
                let entry = entry_of(repo, worktree, &m.path)?;
                let mode = match entry.mode {
                    0o120000 => FileMode::Link,
                    0o100755 => FileMode::BlobExecutable,
                    _ => FileMode::Blob,
                };
                updates.upsert(&m.path, entry.id, mode);
                staged.push((m.path, Some(entry)));
            }
        }
    }
    let tree = updates.create_updated(repo, &base).ok()?;
    Some(Staging {
        parent: parent.id(),
        base: base.id(),
        tree,
        staged,
        placed_left,
    })
}

/// True when a file's blob is its bytes and its mode is read from the
/// disk: no filter can apply, and `core.filemode` and `core.symlinks` are
/// on (git's and libgit2's default where the file system has them).
fn plain_files(repo: &Repository, tree: &Tree<'_>) -> bool {
    let Ok(config) = repo.config() else {
        return false;
    };
    let on = |key: &str| config.get_bool(key).unwrap_or(true);
    on("core.filemode") && on("core.symlinks") && super::filters::none_apply(repo, tree)
}

/// The mode of what `tree` holds at `path`: `Some(None)` when nothing,
/// `None` when a folder on the way is a file or a submodule there.
fn tracked_mode(tree: &Tree<'_>, path: &Path) -> Option<Option<FileMode>> {
    match tree.get_path(path) {
        Ok(entry) => Some(Some(mode_of(entry.filemode()))),
        Err(e) if e.code() == ErrorCode::NotFound => {
            let mut folder = path.parent();
            while let Some(f) = folder.filter(|f| !f.as_os_str().is_empty()) {
                if let Ok(entry) = tree.get_path(f) {
                    return (mode_of(entry.filemode()) == FileMode::Tree).then_some(None);
                }
                folder = f.parent();
            }
            Some(None)
        }
        Err(_) => None,
    }
}

fn mode_of(raw: i32) -> FileMode {
    match raw {
        0o040000 => FileMode::Tree,
        0o160000 => FileMode::Commit,
        0o120000 => FileMode::Link,
        0o100755 => FileMode::BlobExecutable,
        _ => FileMode::Blob,
    }
}

/// The index entry of the file or link at `path`, its blob written: the
/// stat data libgit2's own `git_index_add_bypath` records (taken before the
/// content is read, so a later write shows as a change).
fn entry_of(repo: &Repository, worktree: &Path, path: &Path) -> Option<IndexEntry> {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::MetadataExt as _;
    let full = worktree.join(path);
    let meta = std::fs::symlink_metadata(&full).ok()?;
    let (id, mode) = if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&full).ok()?;
        (repo.blob(target.as_os_str().as_bytes()).ok()?, 0o120000)
    } else if meta.is_file() {
        let exec = meta.mode() & 0o100 != 0;
        (
            blob_of_file(repo, &full, meta.size())?,
            if exec { 0o100755 } else { 0o100644 },
        )
    } else {
        return None;
    };
    // The truncations are the index format's (32-bit fields), as libgit2's.
    let time = |s: i64, ns: i64| IndexTime::new(s as i32, ns as u32);
    Some(IndexEntry {
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        dev: meta.rdev() as u32,
        ino: meta.ino() as u32,
        mode,
        uid: meta.uid(),
        gid: meta.gid(),
        file_size: meta.size() as u32,
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_os_str().as_bytes().to_vec(),
    })
}

/// Writes the file at `full` as a blob, its bytes as they are (no filter
/// applies, by [`plain_files`]), streamed: `Repository::blob_path` would
/// load the content filters, whose attribute lookup reads the index of
/// every tracked file. `None` when the file is not `size` bytes long.
fn blob_of_file(repo: &Repository, full: &Path, size: u64) -> Option<Oid> {
    let odb = repo.odb().ok()?;
    let mut writer = odb
        .writer(usize::try_from(size).ok()?, git2::ObjectType::Blob)
        .ok()?;
    let mut file = std::fs::File::open(full).ok()?;
    std::io::copy(&mut file, &mut writer).ok()?;
    writer.finalize().ok()
}

/// Whether `path` (relative to the worktree root) is one of `placed` or
/// inside one of them.
pub(crate) fn is_placed(path: &Path, placed: &[String]) -> bool {
    placed.iter().any(|p| {
        let p = p.trim_start_matches("./").trim_end_matches('/');
        !p.is_empty() && path.starts_with(p)
    })
}
