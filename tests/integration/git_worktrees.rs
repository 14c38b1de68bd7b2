//! `treefarm::git` worktree handling, checked against real `git`.

use crate::common;

use std::path::{Path, PathBuf};

use common::TestRepo;
use treefarm::git::{GitError, Oid, Repo, WorktreeRequest};

fn files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("README.md", "hello\n"),
        ("src/lib.rs", "pub fn f() {}\n"),
        ("dir with space/a b.txt", "spaced\n"),
        (".gitignore", "*.log\n"),
    ]
}

fn request(name: &str, path: PathBuf, start: Oid) -> WorktreeRequest {
    WorktreeRequest {
        name: name.to_string(),
        path,
        branch: format!("treefarm/{name}"),
        start,
        reuse: false,
        sparse: None,
    }
}

fn head(t: &TestRepo) -> Oid {
    Oid::from_str(&t.git(&["rev-parse", "HEAD"])).unwrap()
}

#[test]
fn add_worktrees_creates_several_in_parallel_on_their_branches() {
    let t = TestRepo::with_files(&files());
    t.write("untracked.txt", "mine\n");
    t.write("README.md", "edited but not staged\n");
    let before = t.main_snapshot();
    let repo = Repo::discover(&t.root).unwrap();
    let start = head(&t);
    let dir = t.tmp.path().join("repo tree farm");
    let reqs: Vec<_> = ["020", "021", "022", "023", "024"]
        .iter()
        .map(|n| request(n, dir.join(n), start))
        .collect();

    let results = repo.add_worktrees(&reqs);
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }

    let list = t.git(&["worktree", "list", "--porcelain"]);
    for req in &reqs {
        let path = std::fs::canonicalize(&req.path).unwrap();
        let block = format!(
            "worktree {}\nHEAD {}\nbranch refs/heads/{}",
            path.display(),
            start,
            req.branch
        );
        assert!(list.contains(&block), "missing {block}\nin\n{list}");
        assert_eq!(
            t.git_at(&path, &["status", "--porcelain", "--untracked-files=all"]),
            ""
        );
        assert_eq!(
            std::fs::read_to_string(path.join("dir with space/a b.txt")).unwrap(),
            "spaced\n"
        );
        assert!(t.common_admin(&req.name).is_dir());
    }
    assert_eq!(t.main_snapshot(), before);

    // Discovered from a linked worktree, the root is still the main one.
    let from_linked = Repo::discover(&reqs[0].path.join("src")).unwrap();
    assert_eq!(from_linked.root(), repo.root());
    assert_eq!(from_linked.common_dir(), repo.common_dir());
    assert_eq!(repo.name(), "repo");

    let infos = repo.worktrees().unwrap();
    assert_eq!(infos.len(), 6);
    assert!(infos[0].is_main);
    assert_eq!(infos[0].branch.as_deref(), Some("main"));
    let i = infos.iter().find(|w| w.name == "022").unwrap();
    assert_eq!(i.branch.as_deref(), Some("treefarm/022"));
    assert_eq!(i.head, Some(start));
    assert!(i.path_exists && !i.is_main);
}

trait Admin {
    fn common_admin(&self, name: &str) -> PathBuf;
}

impl Admin for TestRepo {
    fn common_admin(&self, name: &str) -> PathBuf {
        self.root.join(".git/worktrees").join(name)
    }
}

#[test]
fn leftover_path_is_an_error_naming_it_and_is_kept() {
    let t = TestRepo::with_files(&files());
    let repo = Repo::discover(&t.root).unwrap();
    let path = t.worktree_dir().join("020");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("keep.txt"), "precious").unwrap();

    let ok_path = t.worktree_dir().join("021");
    let results = repo.add_worktrees(&[
        request("020", path.clone(), head(&t)),
        request("021", ok_path, head(&t)),
    ]);
    let err = results[0].as_ref().unwrap_err();
    assert!(matches!(err, GitError::LeftoverPath { .. }), "{err:?}");
    assert!(err.is_user_fixable());
    assert!(err.to_string().contains("020"), "{err}");
    assert!(err.hint().unwrap().contains("treefarm prune"));
    assert!(results[1].is_ok());
    assert_eq!(
        std::fs::read_to_string(path.join("keep.txt")).unwrap(),
        "precious"
    );
    assert_eq!(t.git(&["branch", "--list", "treefarm/020"]), "");
}

#[test]
fn leftover_branch_at_another_commit_is_an_error_unless_reused() {
    let t = TestRepo::with_files(&files());
    let first = head(&t);
    t.write("second.txt", "2\n");
    t.commit_all("second");
    let second = head(&t);
    t.git(&["branch", "treefarm/020", &second.to_string()]);
    let repo = Repo::discover(&t.root).unwrap();
    let path = t.worktree_dir().join("020");

    let results = repo.add_worktrees(&[request("020", path.clone(), first)]);
    let err = results[0].as_ref().unwrap_err();
    assert!(matches!(err, GitError::LeftoverBranch { .. }), "{err:?}");
    assert!(err.to_string().contains("treefarm/020"), "{err}");
    assert!(err.hint().unwrap().contains("treefarm prune"));
    assert!(!path.exists());
    assert_eq!(t.git(&["rev-parse", "treefarm/020"]), second.to_string());

    let mut req = request("020", path.clone(), first);
    req.reuse = true;
    assert!(repo.add_worktrees(&[req])[0].is_ok());
    assert_eq!(t.git_at(&path, &["rev-parse", "HEAD"]), second.to_string());
    assert_eq!(t.git(&["rev-parse", "treefarm/020"]), second.to_string());
}

#[test]
fn reuse_keeps_an_existing_worktree_untouched() {
    let t = TestRepo::with_files(&files());
    let repo = Repo::discover(&t.root).unwrap();
    let path = t.worktree_dir().join("020");
    let mut req = request("020", path.clone(), head(&t));
    assert!(repo.add_worktrees(std::slice::from_ref(&req))[0].is_ok());
    std::fs::write(path.join("work in progress.txt"), "wip").unwrap();

    let again = repo.add_worktrees(std::slice::from_ref(&req));
    let err = again[0].as_ref().unwrap_err();
    assert!(matches!(err, GitError::LeftoverWorktree { .. }), "{err:?}");

    req.reuse = true;
    assert!(repo.add_worktrees(&[req])[0].is_ok());
    assert_eq!(
        std::fs::read_to_string(path.join("work in progress.txt")).unwrap(),
        "wip"
    );
}

#[test]
fn branch_checked_out_elsewhere_is_refused() {
    let t = TestRepo::with_files(&files());
    let repo = Repo::discover(&t.root).unwrap();
    let mut req = request("020", t.worktree_dir().join("020"), head(&t));
    req.branch = "main".to_string();
    let err = repo.add_worktrees(&[req]).remove(0).unwrap_err();
    assert!(matches!(err, GitError::BranchCheckedOut { .. }), "{err:?}");
}

#[test]
fn discover_refuses_bare_and_non_repositories() {
    let t = TestRepo::with_files(&files());
    let outside = t.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let bare = t.tmp.path().join("bare.git");
    t.git(&["init", "-q", "--bare", bare.to_str().unwrap()]);

    let err = Repo::discover(&bare).unwrap_err();
    assert!(matches!(err, GitError::BareRepository { .. }), "{err:?}");
    assert!(err.is_user_fixable());
    // `outside` sits in the temp dir, which is not a repository.
    if let Err(err) = Repo::discover(&outside) {
        assert!(matches!(err, GitError::NotARepository { .. }), "{err:?}");
        assert!(err.is_user_fixable());
    }
}

#[test]
fn scratch_worktree_is_removed_on_drop_and_by_remove() {
    let t = TestRepo::with_files(&files());
    let repo = Repo::discover(&t.root).unwrap();
    let at = head(&t);
    let dir = t.worktree_dir();

    let scratch = repo.scratch_worktree(at, &dir).unwrap();
    let path = scratch.path().to_path_buf();
    assert_eq!(t.git_at(&path, &["rev-parse", "HEAD"]), at.to_string());
    assert!(t
        .git(&["worktree", "list", "--porcelain"])
        .contains("detached"));
    assert_eq!(t.git(&["branch", "--list", "treefarm/*"]), "");
    drop(scratch);
    assert!(!path.exists());
    assert_eq!(
        t.git(&["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );

    let scratch = repo.scratch_worktree(at, &dir).unwrap();
    let path = scratch.path().to_path_buf();
    scratch.remove().unwrap();
    assert!(!path.exists());
    assert_eq!(
        t.git(&["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
    assert_eq!(t.git(&["branch", "--list", "treefarm/*"]), "");
}

#[test]
fn remove_worktree_refuses_a_dirty_one_unless_forced() {
    let t = TestRepo::with_files(&files());
    let repo = Repo::discover(&t.root).unwrap();
    let path = t.worktree_dir().join("020");
    assert!(repo.add_worktrees(&[request("020", path.clone(), head(&t))])[0].is_ok());
    std::fs::write(path.join("README.md"), "changed\n").unwrap();

    let err = repo.remove_worktree(Path::new("020"), false).unwrap_err();
    assert!(matches!(err, GitError::WorktreeDirty { .. }), "{err:?}");
    assert!(path.exists());

    repo.remove_worktree(&path, true).unwrap();
    assert!(!path.exists());
    assert_eq!(
        t.git(&["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
    // The branch is kept; deleting it is a separate step.
    assert_eq!(t.git(&["branch", "--list", "treefarm/020"]), "treefarm/020");
    repo.delete_branch("treefarm/020").unwrap();
    assert_eq!(t.git(&["branch", "--list", "treefarm/020"]), "");
    repo.delete_branch("treefarm/020").unwrap();

    let err = repo.remove_worktree(&t.root, true).unwrap_err();
    assert!(matches!(err, GitError::MainWorktree { .. }), "{err:?}");
}

#[test]
fn prune_stale_removes_entries_whose_directory_is_gone() {
    let t = TestRepo::with_files(&files());
    let repo = Repo::discover(&t.root).unwrap();
    let reqs = [
        request("020", t.worktree_dir().join("020"), head(&t)),
        request("021", t.worktree_dir().join("021"), head(&t)),
    ];
    assert!(repo.add_worktrees(&reqs).iter().all(Result::is_ok));
    std::fs::remove_dir_all(&reqs[0].path).unwrap();

    let infos = repo.worktrees().unwrap();
    assert!(!infos.iter().find(|w| w.name == "020").unwrap().path_exists);
    assert_eq!(repo.prune_stale().unwrap(), vec!["020".to_string()]);
    let list = t.git(&["worktree", "list", "--porcelain"]);
    assert!(!list.contains("/020"), "{list}");
    assert!(list.contains("/021"), "{list}");
    assert!(!t.git(&["worktree", "list"]).contains("prunable"));
}

#[test]
fn archive_refs_are_never_overwritten() {
    let t = TestRepo::with_files(&files());
    let first = head(&t);
    t.write("x", "x");
    t.commit_all("second");
    let second = head(&t);
    let repo = Repo::discover(&t.root).unwrap();
    assert_eq!(
        repo.archive("020", first).unwrap(),
        "refs/treefarm/archive/020"
    );
    assert_eq!(
        repo.archive("020", second).unwrap(),
        "refs/treefarm/archive/020-2"
    );
    assert_eq!(
        t.git(&["rev-parse", "refs/treefarm/archive/020"]),
        first.to_string()
    );
    assert_eq!(
        t.git(&["rev-parse", "refs/treefarm/archive/020-2"]),
        second.to_string()
    );
}
