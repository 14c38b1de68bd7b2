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
//!   copies of the worktree's own.
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

use git2::{ObjectType, Odb, Oid, Repository, Sort};

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
    let tip = repo
        .refname_to_id(&refname)
        .map_err(|e| GitError::git("resolve branch", branch, e))?;
    if git_dir.join("HEAD").is_file() {
        import_private_git(worktree, branch, git_dir)?;
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
        return Ok(());
    }
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
    copy_over(&admin.join("index"), &git_dir.join("index"))?;
    copy_over(
        &admin.join("info/sparse-checkout"),
        &git_dir.join("info/sparse-checkout"),
    )?;
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
    let moved = if current == Some(tip) {
        None
    } else {
        let from = private
            .odb()
            .map_err(|e| GitError::git("open objects of", git_dir.display().to_string(), e))?;
        let to = repo
            .odb()
            .map_err(|e| GitError::git("open objects of", repo.path().display().to_string(), e))?;
        let mut walk = private
            .revwalk()
            .map_err(|e| GitError::git("walk", branch, e))?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
            .map_err(|e| GitError::git("walk", branch, e))?;
        walk.push(tip)
            .map_err(|e| GitError::git("walk", branch, e))?;
        if let Some(current) = current {
            // Present in the main store, and so is everything it reaches.
            let _ = walk.hide(current);
        }
        for commit in walk {
            let commit = commit.map_err(|e| GitError::git("walk", branch, e))?;
            copy_commit(&private, &from, &to, commit, branch)?;
        }
        repo.reference(
            &refname,
            tip,
            true,
            &format!("treefarm: import the commits of the isolated agent on {branch}"),
        )
        .map_err(|e| GitError::git("update branch", branch, e))?;
        Some(tip)
    };
    copy_over(&git_dir.join("index"), &admin.join("index"))?;
    Ok(moved)
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
