//! The private git directory of an isolated agent, and the import of what it
//! committed there into the main repository.
//!
//! Under isolation the agent cannot write the shared `.git` (Landlock grants
//! per directory, and a commit writes the branch through a lock file in the
//! shared `refs/heads/treefarm/`, objects into the shared `objects/`, the
//! stash into the shared `refs/stash`). So its git runs against a repository
//! of its own, `GIT_DIR=<instance>/git` with `GIT_WORK_TREE=<worktree>`:
//!
//! - `objects/` is empty, with the main object store as a read-only
//!   alternate (`objects/info/alternates`): every existing object is there,
//!   new ones land privately;
//! - `HEAD` names the instance's branch; `refs/heads/<branch>` starts at the
//!   branch's tip; `packed-refs` holds a snapshot of the main repository's
//!   other branches, tags and remote branches (so `git log roadmap..` works);
//! - `config` includes the main repository's config (and the worktree's
//!   `config.worktree`, which carries the sparse-checkout switch) and runs the
//!   main repository's hooks; `index` and `info/sparse-checkout` start as
//!   copies of the worktree's own, and `shallow` (a shallow clone's
//!   boundary) as a copy of the repository's.
//!
//! [`import_private_git`] brings the agent's branch back: the objects its
//! branch needs are copied into the main store (trees and blobs before the
//! commit that names them), the main `refs/heads/<branch>` is set to the
//! private tip, and the private index replaces the worktree's, so libgit2 (leftover
//! commit, scope audit, sparse worktrees, resume) sees exactly what the
//! agent's git saw. Nothing else of the private repository is published:
//! other refs it moved, its stash, its config.

use std::fs;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Odb, Oid, Repository};

use super::GitError;

/// The worktree's own git directory (`.git/worktrees/<name>`) and the
/// repository's common directory.
fn admin_dirs(worktree: &Path) -> Result<(Repository, PathBuf, PathBuf), GitError> {
    let repo = Repository::open(worktree)
        .map_err(|e| GitError::git("open worktree", worktree.display().to_string(), e))?;
    let admin = repo.path().to_path_buf();
    let common = repo.commondir().to_path_buf();
    Ok((repo, admin, common))
}

fn write(path: &Path, text: &str) -> Result<(), GitError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| GitError::io("create folder", parent, e))?;
    }
    let tmp = path.with_extension("treefarm-tmp");
    fs::write(&tmp, text).map_err(|e| GitError::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| GitError::io("write", path, e))
}

/// Copies `from` over `to` atomically (temporary file + rename); a missing
/// `from` is not an error.
fn copy_over(from: &Path, to: &Path) -> Result<(), GitError> {
    if !from.is_file() {
        return Ok(());
    }
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(|e| GitError::io("create folder", parent, e))?;
    }
    let tmp = to.with_extension("treefarm-tmp");
    fs::copy(from, &tmp).map_err(|e| GitError::io("copy", from, e))?;
    fs::rename(&tmp, to).map_err(|e| GitError::io("write", to, e))
}

/// Creates the private git directory `git_dir` for the agent working in
/// `worktree` on `branch` (see the module docs). When it already exists (a
/// retry, a resumed run), it is kept — the agent's stash and index live
/// there — after [`import_private_git`] published it, and only re-pointed
/// at the branch's current tip when treefarm moved that meanwhile.
pub fn prepare_private_git(worktree: &Path, branch: &str, git_dir: &Path) -> Result<(), GitError> {
    let (repo, admin, common) = admin_dirs(worktree)?;
    let refname = format!("refs/heads/{branch}");
    let shared_tip = || {
        repo.refname_to_id(&refname)
            .map_err(|e| GitError::git("resolve branch", branch, e))
    };
    if git_dir.join("HEAD").is_file() {
        import_private_git(worktree, branch, git_dir)?;
        // Read after the import, which may have moved it.
        let tip = shared_tip()?;
        let private = Repository::open_bare(git_dir).map_err(|e| {
            GitError::git(
                "open private git directory",
                git_dir.display().to_string(),
                e,
            )
        })?;
        if private.refname_to_id(&refname).ok() != Some(tip) {
            write(&git_dir.join(&refname), &format!("{tip}\n"))?;
            copy_over(&admin.join("index"), &git_dir.join("index"))?;
        }
        return write_synced(git_dir, tip);
    }
    let tip = shared_tip()?;
    for sub in [
        "objects/info",
        "objects/pack",
        "refs/heads",
        "refs/tags",
        "info",
    ] {
        let path = git_dir.join(sub);
        fs::create_dir_all(&path).map_err(|e| GitError::io("create folder", &path, e))?;
    }
    write(
        &git_dir.join("objects/info/alternates"),
        &format!("{}\n", common.join("objects").display()),
    )?;
    let mut config = format!(
        "[core]\n\trepositoryformatversion = 0\n\thooksPath = {}\n[include]\n\tpath = {}\n",
        quote(&common.join("hooks")),
        quote(&common.join("config")),
    );
    if admin.join("config.worktree").is_file() {
        config.push_str(&format!(
            "[include]\n\tpath = {}\n",
            quote(&admin.join("config.worktree"))
        ));
    }
    config.push_str("[core]\n\tbare = false\n\tlogAllRefUpdates = true\n");
    write(&git_dir.join("config"), &config)?;

    // A snapshot of the other refs, read-only in spirit: nothing but the
    // branch is ever imported back.
    let mut packed = String::from("# pack-refs with: peeled\n");
    let refs = repo
        .references()
        .map_err(|e| GitError::git("list references of", common.display().to_string(), e))?;
    let mut lines = Vec::new();
    for reference in refs.flatten() {
        let (Some(name), Some(oid)) = (reference.name(), reference.target()) else {
            continue;
        };
        let shared = ["refs/heads/", "refs/tags/", "refs/remotes/"]
            .iter()
            .any(|p| name.starts_with(p));
        if shared && name != refname {
            lines.push(format!("{oid} {name}\n"));
        }
    }
    lines.sort();
    packed.extend(lines);
    write(&git_dir.join("packed-refs"), &packed)?;
    write(&git_dir.join(&refname), &format!("{tip}\n"))?;
    write_synced(git_dir, tip)?;
    copy_over(&admin.join("index"), &git_dir.join("index"))?;
    copy_over(
        &admin.join("info/sparse-checkout"),
        &git_dir.join("info/sparse-checkout"),
    )?;
    // A shallow clone's boundary: without it the agent's `git log` (and any
    // walk of the private history) runs into parents that were never fetched.
    copy_over(&common.join("shallow"), &git_dir.join("shallow"))?;
    // HEAD last: its presence marks the directory complete.
    write(&git_dir.join("HEAD"), &format!("ref: {refname}\n"))
}

/// A config value in double quotes, escaped as git reads it.
fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Publishes what the agent committed in its private git directory: copies
/// the objects of `branch`'s private history that the main store lacks, moves
/// the main `refs/heads/<branch>` to the private tip and makes the private
/// index the worktree's. Returns the new tip when the branch moved. A
/// missing `git_dir` (never isolated) is a no-op; so is a second call.
pub fn import_private_git(
    worktree: &Path,
    branch: &str,
    git_dir: &Path,
) -> Result<Option<Oid>, GitError> {
    if !git_dir.join("HEAD").is_file() {
        return Ok(None);
    }
    let (repo, admin, _) = admin_dirs(worktree)?;
    let private = Repository::open_bare(git_dir).map_err(|e| {
        GitError::git(
            "open private git directory",
            git_dir.display().to_string(),
            e,
        )
    })?;
    let refname = format!("refs/heads/{branch}");
    let Ok(tip) = private.refname_to_id(&refname) else {
        // The agent deleted its own branch in its private directory: there
        // is nothing to publish, and the shared branch stays as it was.
        tracing::warn!(
            branch,
            "the isolated agent's private branch is gone; nothing imported"
        );
        return Ok(None);
    };
    let current = repo.refname_to_id(&refname).ok();
    let synced = read_synced(git_dir);
    let moved = match decide_import(current, tip, synced, |a, b| {
        repo.graph_descendant_of(b, a).unwrap_or(false)
    }) {
        Import::Nothing => None,
        Import::Stale => {
            // Someone else moved the shared branch (the user committed in the
            // worktree, or treefarm committed what the agent left) and the
            // agent added nothing since: publishing the private tip would
            // move the branch back and drop those commits. The private
            // directory is re-pointed by the next `prepare_private_git`.
            return Ok(None);
        }
        Import::Diverged => {
            return Err(GitError::Diverged {
                branch: branch.to_string(),
                shared: current.map(|c| c.to_string()).unwrap_or_default(),
                private: tip.to_string(),
                git_dir: git_dir.to_path_buf(),
            })
        }
        Import::Publish => {
            let from = private
                .odb()
                .map_err(|e| GitError::git("open objects of", git_dir.display().to_string(), e))?;
            let to = repo.odb().map_err(|e| {
                GitError::git("open objects of", repo.path().display().to_string(), e)
            })?;
            for commit in commits_to_import(&private, &to, tip, branch)? {
                copy_commit(&private, &from, &to, commit, branch)?;
            }
            let log = format!("treefarm: import the commits of the isolated agent on {branch}");
            super::repo::retry_ref_lock(|| repo.reference(&refname, tip, true, &log))
                .map_err(|e| GitError::git("update branch", branch, e))?;
            Some(tip)
        }
    };
    write_synced(git_dir, tip)?;
    // An index the agent's git left as it was is not copied again: the copy
    // costs the whole index (every tracked file of a sparse worktree),
    // after every exit.
    let (private_index, index) = (git_dir.join("index"), admin.join("index"));
    let same = super::stamp::index_sum(&private_index)
        .is_some_and(|sum| super::stamp::index_sum(&index) == Some(sum));
    if !same {
        // What the index names first, then the index: a blob the agent's
        // git staged and never committed lives in the private store only.
        publish_index_objects(&private, git_dir, &repo, &private_index)?;
        copy_over(&private_index, &index)?;
    }
    Ok(moved)
}

/// Copies into the main store the objects the agent's git wrote privately
/// that the main store lacks and its index may name — blobs staged with
/// `git add` and never committed, trees of its cache — so that the
/// worktree's index, once it is the private one, names only objects the
/// repository has (`git status`, `git diff --cached` and `git fsck` read
/// them). Costs what the agent's git wrote: its loose objects are listed
/// from the private `objects/` folder. After a `git gc` there (packs), the
/// index's own entries are checked instead.
fn publish_index_objects(
    private: &Repository,
    git_dir: &Path,
    repo: &Repository,
    private_index: &Path,
) -> Result<(), GitError> {
    let at = || git_dir.display().to_string();
    let objects = git_dir.join("objects");
    let packed = fs::read_dir(objects.join("pack")).is_ok_and(|dir| {
        dir.flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "pack"))
    });
    let candidates: Vec<Oid> = if packed {
        let index = git2::Index::open(private_index)
            .map_err(|e| GitError::git("read the private index in", at(), e))?;
        index.iter().map(|entry| entry.id).collect()
    } else {
        loose_objects(&objects)
    };
    if candidates.is_empty() {
        return Ok(());
    }
    let from = private
        .odb()
        .map_err(|e| GitError::git("open objects of", at(), e))?;
    let to = repo
        .odb()
        .map_err(|e| GitError::git("open objects of", repo.path().display().to_string(), e))?;
    for id in candidates {
        if to.exists(id) || !from.exists(id) {
            continue;
        }
        let kind = from
            .read_header(id)
            .map_err(|e| GitError::git("read object", format!("{id} in {}", at()), e))?
            .1;
        // Commits it did not publish stay private (a stash, an abandoned
        // branch); submodule commits live in other repositories.
        if matches!(kind, ObjectType::Blob | ObjectType::Tree) {
            copy_raw(&from, &to, id)
                .map_err(|e| GitError::git("copy object", format!("{id} from {}", at()), e))?;
        }
    }
    Ok(())
}

/// The ids of the loose objects under `objects` (`xx/<38 hex>`).
fn loose_objects(objects: &Path) -> Vec<Oid> {
    let mut ids = Vec::new();
    for fan in fs::read_dir(objects).into_iter().flatten().flatten() {
        let prefix = fan.file_name().to_string_lossy().into_owned();
        if prefix.len() != 2 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        for file in fs::read_dir(fan.path()).into_iter().flatten().flatten() {
            let rest = file.file_name().to_string_lossy().into_owned();
            if rest.len() != 38 {
                continue;
            }
            if let Ok(id) = Oid::from_str(&format!("{prefix}{rest}")) {
                ids.push(id);
            }
        }
    }
    ids
}

/// Whether the agent's git moved `branch` in the private directory since
/// it last agreed with the shared branch (it committed there, and that is
/// not published yet). `false` without a private directory.
pub fn private_branch_moved(branch: &str, git_dir: &Path) -> bool {
    let Ok(private) = Repository::open_bare(git_dir) else {
        return false;
    };
    let tip = private.refname_to_id(&format!("refs/heads/{branch}")).ok();
    git_dir.join("HEAD").is_file() && tip != read_synced(git_dir)
}

/// What [`import_private_git`] does with the agent's private tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Import {
    /// The shared branch already is the private tip.
    Nothing,
    /// Move the shared branch to the private tip.
    Publish,
    /// Only the shared branch moved since the last sync: keep it.
    Stale,
    /// Both moved: neither may be dropped.
    Diverged,
}

/// Decides the import from the shared tip `current`, the private tip `tip`
/// and `synced`, the shared tip the private directory last agreed with
/// (`None` for a directory made before treefarm recorded it: as then, the
/// private branch wins). `descends(a, b)`: `b` descends from `a`.
fn decide_import(
    current: Option<Oid>,
    tip: Oid,
    synced: Option<Oid>,
    descends: impl Fn(Oid, Oid) -> bool,
) -> Import {
    let Some(current) = current else {
        return Import::Publish;
    };
    if current == tip {
        return Import::Nothing;
    }
    match synced {
        // Nobody but the agent moved the branch: its history, rewrites
        // included, is the branch.
        None => Import::Publish,
        Some(s) if s == current => Import::Publish,
        // The agent added nothing since the last sync.
        Some(s) if s == tip || descends(tip, current) => Import::Stale,
        _ if descends(current, tip) => Import::Publish,
        _ => Import::Diverged,
    }
}

/// Where the private directory records the shared tip it last agreed with.
const SYNCED_FILE: &str = "treefarm-synced";

fn read_synced(git_dir: &Path) -> Option<Oid> {
    let text = fs::read_to_string(git_dir.join(SYNCED_FILE)).ok()?;
    Oid::from_str(text.trim()).ok()
}

fn write_synced(git_dir: &Path, tip: Oid) -> Result<(), GitError> {
    write(&git_dir.join(SYNCED_FILE), &format!("{tip}\n"))
}

/// The commits reachable from `tip` that the main store `to` lacks, parents
/// before children. The walk stops at the first commit the main store has
/// (so is everything it reaches): it never reads history below what the
/// agent added, which in a shallow clone would run into the missing parents
/// behind the shallow boundary, and costs what the agent committed, not the
/// length of the history.
fn commits_to_import(
    private: &Repository,
    to: &Odb,
    tip: Oid,
    branch: &str,
) -> Result<Vec<Oid>, GitError> {
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // Depth-first, post-order: a commit is emitted after all its new parents.
    let mut stack = vec![(tip, false)];
    while let Some((oid, expanded)) = stack.pop() {
        if expanded {
            order.push(oid);
            continue;
        }
        if to.exists(oid) || !seen.insert(oid) {
            continue;
        }
        let commit = private
            .find_commit(oid)
            .map_err(|e| GitError::git("read commit of", branch, e))?;
        stack.push((oid, true));
        stack.extend(commit.parent_ids().map(|p| (p, false)));
    }
    Ok(order)
}

/// Copies one commit with its tree (children first, so an object present in
/// the main store always comes with everything it names).
fn copy_commit(
    private: &Repository,
    from: &Odb,
    to: &Odb,
    commit: Oid,
    branch: &str,
) -> Result<(), GitError> {
    if to.exists(commit) {
        return Ok(());
    }
    let tree = private
        .find_commit(commit)
        .map_err(|e| GitError::git("read commit", commit.to_string(), e))?
        .tree_id();
    copy_tree(private, from, to, tree)?;
    copy_raw(from, to, commit).map_err(|e| GitError::git("copy commit of", branch, e))
}

fn copy_tree(private: &Repository, from: &Odb, to: &Odb, tree: Oid) -> Result<(), GitError> {
    if to.exists(tree) {
        return Ok(());
    }
    let object = private
        .find_tree(tree)
        .map_err(|e| GitError::git("read tree", tree.to_string(), e))?;
    for entry in object.iter() {
        match entry.kind() {
            Some(ObjectType::Tree) => copy_tree(private, from, to, entry.id())?,
            Some(ObjectType::Blob) if !to.exists(entry.id()) => {
                copy_raw(from, to, entry.id())
                    .map_err(|e| GitError::git("copy blob", entry.id().to_string(), e))?;
            }
            // Present blobs; submodule commits live in other repositories.
            _ => {}
        }
    }
    copy_raw(from, to, tree).map_err(|e| GitError::git("copy tree", tree.to_string(), e))
}

fn copy_raw(from: &Odb, to: &Odb, oid: Oid) -> Result<(), git2::Error> {
    let object = from.read(oid)?;
    let written = to.write(object.kind(), object.data())?;
    debug_assert_eq!(written, oid);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).expect("20 bytes")
    }

    /// History 1 ← 2 ← 3 (and 4 on another line from 1).
    fn descends(a: Oid, b: Oid) -> bool {
        let line = [oid(1), oid(2), oid(3)];
        let pos = |x| line.iter().position(|&l| l == x);
        match (pos(a), pos(b)) {
            (Some(i), Some(j)) => j > i,
            _ => b == oid(4) && a == oid(1),
        }
    }

    #[test]
    fn the_agents_own_moves_are_published_rewrites_included() {
        // Nobody else moved the branch since the sync: the agent committed…
        assert_eq!(
            decide_import(Some(oid(1)), oid(2), Some(oid(1)), descends),
            Import::Publish
        );
        // …or rewrote its own commit (amend): its history is the branch.
        assert_eq!(
            decide_import(Some(oid(2)), oid(4), Some(oid(2)), descends),
            Import::Publish
        );
        assert_eq!(
            decide_import(Some(oid(2)), oid(2), Some(oid(1)), descends),
            Import::Nothing
        );
        // A directory from before the sync file: the private branch wins.
        assert_eq!(
            decide_import(Some(oid(3)), oid(2), None, descends),
            Import::Publish
        );
    }

    /// Regression (issue 21): with isolation on, a commit the user added in
    /// the kept worktree after the run was dropped by the next import (prune
    /// "published" the older private tip over it).
    #[test]
    fn a_commit_made_outside_the_agent_is_never_moved_back() {
        // The user committed 3 on top of the agent's 2; the agent did nothing since.
        assert_eq!(
            decide_import(Some(oid(3)), oid(2), Some(oid(2)), descends),
            Import::Stale
        );
        // The agent then committed on top of what it had: fast-forward.
        assert_eq!(
            decide_import(Some(oid(2)), oid(3), Some(oid(1)), descends),
            Import::Publish
        );
        // Both moved apart: neither is dropped.
        assert_eq!(
            decide_import(Some(oid(3)), oid(4), Some(oid(1)), descends),
            Import::Diverged
        );
    }

    #[test]
    fn commits_to_import_stop_at_what_the_main_store_has_parents_first() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let main = Repository::init(tmp.path().join("main")).expect("init main");
        let private = Repository::init_bare(tmp.path().join("private")).expect("init private");
        let sig = git2::Signature::now("t", "t@example.org").expect("signature");
        let commit_in = |repo: &Repository, parents: &[Oid], text: &str| {
            let blob = repo.blob(text.as_bytes()).expect("blob");
            let mut tree = repo.treebuilder(None).expect("treebuilder");
            tree.insert("f", blob, 0o100644).expect("insert");
            let tree = repo.find_tree(tree.write().expect("tree")).expect("tree");
            let parents: Vec<_> = parents
                .iter()
                .map(|p| repo.find_commit(*p).expect("parent"))
                .collect();
            let refs: Vec<_> = parents.iter().collect();
            repo.commit(None, &sig, &sig, text, &tree, &refs)
                .expect("commit")
        };
        // The base exists in both stores; its parent exists in neither, as
        // behind a shallow boundary.
        let base_in_main = commit_in(&main, &[], "base");
        let base = commit_in(&private, &[], "base");
        assert_eq!(base, base_in_main);
        let a = commit_in(&private, &[base], "a");
        let b = commit_in(&private, &[a], "b");
        let side = commit_in(&private, &[base], "side");
        let merge = commit_in(&private, &[b, side], "merge");
        let to = main.odb().expect("odb");
        let order = commits_to_import(&private, &to, merge, "treefarm/1").expect("walk");
        assert_eq!(order.len(), 4, "{order:?}");
        assert!(!order.contains(&base));
        let at = |o| order.iter().position(|&x| x == o).expect("listed");
        assert!(at(a) < at(b) && at(b) < at(merge) && at(side) < at(merge));
    }
}
