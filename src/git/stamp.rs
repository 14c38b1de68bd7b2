//! The stamp of a clean worktree's files, taken before its agent starts,
//! to tell after it exits — with no index read and no listing — that the
//! agent left the worktree exactly as it was.

use std::collections::BTreeMap;
use std::path::Path;

/// What the files of a worktree looked like just before its agent started,
/// by their metadata only — taken when the worktree is known to be clean (a
/// fresh plant, nothing set up in it), to tell after the agent exits, with
/// no index read and no diff, that it left the worktree exactly as it was.
/// Anything that differs, and anything that cannot be read, means "look":
/// the full listing ([`Repo::worktree_changes`](super::Repo)) decides. A
/// walk of the files on disk costs what the worktree holds — in a sparse
/// worktree its materialised part, not the repository's tracked files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeStamp {
    /// HEAD's tree, which the index equals in a clean worktree.
    tree: git2::Oid,
    /// The length and the trailing checksum of the worktree's index file.
    index: (u64, Vec<u8>),
    /// Every path under the worktree (its `.git` aside) with its metadata.
    files: BTreeMap<std::path::PathBuf, FileStamp>,
}

/// The metadata of one path that any write to it changes: a write or
/// `chmod` moves its change time (which a process cannot set back), a
/// replacement its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    mode: u32,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

/// The fence of [`WorktreeStamp::take`]: a file made and removed in the
/// worktree's root just before the walk, to read the file system's own
/// clock (coarse, or a server's).
const FENCE: &str = ".treefarm-stamp-fence";

impl WorktreeStamp {
    /// The stamp of the clean worktree at `worktree`; `None` when it cannot
    /// be taken safely: HEAD unborn, a path that cannot be read, or a file
    /// changed at or after the fence's time — a write by the agent in that
    /// same clock tick could leave its metadata as it was. Any later write
    /// gets a later change time than every file stamped.
    pub fn take(worktree: &Path) -> Option<WorktreeStamp> {
        use std::os::unix::fs::MetadataExt as _;
        let fence = worktree.join(FENCE);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&fence)
            .and_then(|f| f.metadata());
        let removed = std::fs::remove_file(&fence);
        let (meta, ()) = (written.ok()?, removed.ok()?);
        let now = i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec());
        let stamp = WorktreeStamp {
            tree: head_tree(worktree)?,
            index: index_tail(worktree)?,
            files: walk(worktree)?,
        };
        // A folder's own times only follow what is added to or removed
        // from it (the fence, for the root), which the names show.
        let racy = stamp
            .files
            .values()
            .any(|f| !f.is_dir() && f.mtime_ns.max(f.ctime_ns) >= now);
        (!racy).then_some(stamp)
    }

    /// Whether `worktree` is exactly as stamped: same HEAD tree, same index
    /// file content, same paths with the same metadata.
    pub fn unchanged(&self, worktree: &Path) -> bool {
        self.moved(worktree).is_some_and(|moved| moved.is_empty())
    }
}

/// HEAD's tree in `worktree`.
fn head_tree(worktree: &Path) -> Option<git2::Oid> {
    head_tree_in(&git2::Repository::open(worktree).ok()?)
}

/// HEAD's tree in the open repository of a worktree.
fn head_tree_in(repo: &git2::Repository) -> Option<git2::Oid> {
    Some(repo.head().ok()?.peel_to_tree().ok()?.id())
}

/// [`index_sum`] of the worktree's own index file.
fn index_tail(worktree: &Path) -> Option<(u64, Vec<u8>)> {
    index_sum(&admin_dir(worktree)?.join("index"))
}

/// The git directory of a linked worktree (its admin folder), read from
/// its `.git` file without opening the repository.
pub(crate) fn admin_dir(worktree: &Path) -> Option<std::path::PathBuf> {
    let dot_git = std::fs::read_to_string(worktree.join(".git")).ok()?;
    let admin = Path::new(dot_git.strip_prefix("gitdir:")?.trim());
    Some(if admin.is_absolute() {
        admin.to_path_buf()
    } else {
        worktree.join(admin)
    })
}

/// The length of the index file at `path` and its last 20 bytes, the
/// checksum of everything before them: a different index has different
/// ones, and reading them costs no parse of the entries. `None` when the
/// file cannot be read or the checksum is all zeros (git's
/// `index.skipHash`, which writes none).
pub(crate) fn index_sum(path: &Path) -> Option<(u64, Vec<u8>)> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let tail = len.checked_sub(20)?;
    file.seek(std::io::SeekFrom::Start(tail)).ok()?;
    let mut sum = vec![0; 20];
    file.read_exact(&mut sum).ok()?;
    sum.iter().any(|&b| b != 0).then_some((len, sum))
}

/// Every path under `root` but its top-level `.git`, with its metadata; no
/// symbolic link is followed. `None` when a folder cannot be read.
fn walk(root: &Path) -> Option<BTreeMap<std::path::PathBuf, FileStamp>> {
    use std::os::unix::fs::MetadataExt as _;
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).ok()? {
            let entry = entry.ok()?;
            let path = entry.path();
            if dir == root && entry.file_name() == ".git" {
                continue;
            }
            let meta = entry.metadata().ok()?;
            let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
            files.insert(
                path.strip_prefix(root).ok()?.to_path_buf(),
                FileStamp {
                    ino: meta.ino(),
                    mode: meta.mode(),
                    size: meta.size(),
                    mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
                    ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
                },
            );
            if meta.is_dir() {
                dirs.push(path);
            }
        }
    }
    Some(files)
}

/// One path (not a folder) that moved since a [`WorktreeStamp`]: what is
/// at it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Moved {
    /// Relative to the worktree root.
    pub(crate) path: std::path::PathBuf,
    /// `None`: nothing is there any more.
    pub(crate) now: Option<OnDisk>,
}

/// What kind of thing a moved path is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnDisk {
    File,
    Link,
    /// A folder where a file was: never staged from a stamp.
    Folder,
    /// A fifo, socket or device.
    Other,
}

impl WorktreeStamp {
    /// Every path that moved since the stamp — added, changed (by its
    /// metadata) or gone — in path order, folders aside (their files are
    /// listed): what the agent may have changed, by one walk of what the
    /// worktree holds. `None` when that cannot be told from the stamp alone:
    /// HEAD or the index moved (the agent committed or staged), or the walk
    /// failed.
    pub(crate) fn moved(&self, worktree: &Path) -> Option<Vec<Moved>> {
        self.moved_in(&git2::Repository::open(worktree).ok()?, worktree)
    }

    /// [`WorktreeStamp::moved`] with the worktree's repository already open.
    pub(crate) fn moved_in(&self, repo: &git2::Repository, worktree: &Path) -> Option<Vec<Moved>> {
        if head_tree_in(repo) != Some(self.tree)
            || index_tail(worktree).as_ref() != Some(&self.index)
        {
            return None;
        }
        let now = walk(worktree)?;
        let kind = |f: &FileStamp| match f.mode & 0o170000 {
            0o100000 => OnDisk::File,
            0o120000 => OnDisk::Link,
            0o040000 => OnDisk::Folder,
            _ => OnDisk::Other,
        };
        let mut moved = Vec::new();
        for (path, was) in &self.files {
            match now.get(path) {
                Some(is) if is == was => {}
                Some(is) if is.is_dir() && was.is_dir() => {}
                Some(is) => moved.push(Moved {
                    path: path.clone(),
                    now: Some(kind(is)),
                }),
                None if was.is_dir() => {}
                None => moved.push(Moved {
                    path: path.clone(),
                    now: None,
                }),
            }
        }
        for (path, is) in &now {
            if !is.is_dir() && !self.files.contains_key(path) {
                moved.push(Moved {
                    path: path.clone(),
                    now: Some(kind(is)),
                });
            }
        }
        moved.sort_by(|a, b| a.path.cmp(&b.path));
        Some(moved)
    }
}

/// The worktrees this process vouches are clean — every change in them
/// committed, nothing untracked left but ignored files — each with a stamp
/// taken then: removing one that is still exactly as stamped needs no
/// listing of its changes (in a sparse worktree, a diff of every tracked
/// file's index entry). Keyed by the worktree's admin folder, as its
/// `.git` file names it (as the lags of `index_lag.rs` are): no path is
/// canonicalized.
static CLEAN: std::sync::Mutex<BTreeMap<std::path::PathBuf, WorktreeStamp>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Records that `worktree` is clean now, with `stamp` when it is known to
/// describe the worktree as it is, else with a stamp taken now (none is
/// recorded when one cannot be taken safely).
pub(crate) fn vouch_clean(worktree: &Path, stamp: Option<WorktreeStamp>) {
    let Some(stamp) = stamp.or_else(|| WorktreeStamp::take(worktree)) else {
        return;
    };
    if let (Some(admin), Ok(mut clean)) = (admin_dir(worktree), CLEAN.lock()) {
        clean.insert(admin, stamp);
    }
}

/// Whether `worktree` was vouched clean and is still exactly as it was
/// then; the vouch is used up.
pub(crate) fn still_clean(worktree: &Path) -> bool {
    if CLEAN.lock().map(|clean| clean.is_empty()).unwrap_or(true) {
        return false;
    }
    let Some(admin) = admin_dir(worktree) else {
        return false;
    };
    let stamp = CLEAN.lock().ok().and_then(|mut clean| clean.remove(&admin));
    stamp.is_some_and(|stamp| stamp.unchanged(worktree))
}
