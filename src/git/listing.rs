//! Small listings and the demo's seed repository: branches under a prefix,
//! a first-parent log for display, and a fresh repository with one commit.

use std::path::Path;

use git2::{BranchType, Oid, Repository, Signature};

use super::error::GitError;
use super::repo::Repo;

impl Repo {
    /// Local branches whose name starts with `prefix`, with their tips, sorted.
    pub fn branches_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Oid)>, GitError> {
        let repo = self.open()?;
        let mut out = Vec::new();
        let branches = repo
            .branches(Some(BranchType::Local))
            .map_err(|e| GitError::git("list branches", prefix, e))?;
        for item in branches {
            let (branch, _) = item.map_err(|e| GitError::git("list branches", prefix, e))?;
            let Ok(Some(name)) = branch.name() else {
                continue;
            };
            if !name.starts_with(prefix) {
                continue;
            }
            if let Some(tip) = branch.get().target() {
                out.push((name.to_string(), tip));
            }
        }
        out.sort();
        Ok(out)
    }

    /// `<short id> <summary>` of the first-parent history of `branch`, newest
    /// first, at most `limit` lines; empty when the branch does not exist.
    pub fn first_parent_log(&self, branch: &str, limit: usize) -> Result<Vec<String>, GitError> {
        let repo = self.open()?;
        let Some(mut id) = super::repo::branch_tip_in(&repo, branch)? else {
            return Ok(Vec::new());
        };
        let mut lines = Vec::new();
        while lines.len() < limit {
            let commit = repo
                .find_commit(id)
                .map_err(|e| GitError::git("read commit", id.to_string(), e))?;
            let short = id.to_string();
            lines.push(format!(
                "{} {}",
                &short[..10],
                commit.summary().unwrap_or("")
            ));
            match commit.parent_id(0) {
                Ok(parent) => id = parent,
                Err(_) => break,
            }
        }
        Ok(lines)
    }

    /// Creates a repository at `root` (branch `main`) whose first commit holds
    /// `files`. Used by `treefarm demo`; `root` must not exist yet.
    pub fn init_with_files(
        root: &Path,
        files: &[(String, Vec<u8>)],
        message: &str,
    ) -> Result<Repo, GitError> {
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main").mkpath(true);
        let repo = Repository::init_opts(root, &opts)
            .map_err(|e| GitError::git("create repository", root.display().to_string(), e))?;
        for (rel, contents) in files {
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| GitError::Io {
                    action: "create folder",
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            std::fs::write(&path, contents).map_err(|source| GitError::Io {
                action: "write file",
                path: path.clone(),
                source,
            })?;
        }
        let subject = root.display().to_string();
        let mut index = repo
            .index()
            .map_err(|e| GitError::git("open index", subject.clone(), e))?;
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .map_err(|e| GitError::git("stage files", subject.clone(), e))?;
        index
            .write()
            .map_err(|e| GitError::git("write index", subject.clone(), e))?;
        let tree_id = index
            .write_tree()
            .map_err(|e| GitError::git("write tree", subject.clone(), e))?;
        let tree = repo
            .find_tree(tree_id)
            .map_err(|e| GitError::git("read tree", subject.clone(), e))?;
        let sig = Signature::now("treefarm demo", "demo@treefarm.invalid")
            .map_err(|e| GitError::git("make signature", subject.clone(), e))?;
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &[])
            .map_err(|e| GitError::git("commit", subject.clone(), e))?;
        drop(tree);
        drop(repo);
        Repo::discover(root)
    }
}
