//! Planting skips libgit2's content filters only where none could apply
//! (issue 27: an attribute lookup per file written, each resolving a real
//! path): with `.gitattributes` in the tree, in `info/attributes`, or
//! `core.autocrlf = true`, a planted worktree's files are still converted,
//! byte for byte as `git worktree add` writes them — whole or sparse.

use crate::common;

use common::TestRepo;
use treefarm::git::{Oid, Repo, SparseRequest, WorktreeRequest};

/// A case: its name, extra files of the repository, and its setup
/// (`info`: an `info/attributes` file, `autocrlf`: `core.autocrlf = true`).
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);

#[test]
fn planted_files_match_git_worktree_add_with_and_without_attributes() {
    let cases: [Case<'_>; 5] = [
        ("no attributes", &[], &[]),
        (
            "gitattributes in the tree",
            &[("d/.gitattributes", "*.txt text eol=crlf\n")],
            &[],
        ),
        ("info/attributes", &[], &["info"]),
        ("core.autocrlf", &[], &["autocrlf"]),
        (
            "ident",
            &[(".gitattributes", "*.txt ident\n"), ("d/id.txt", "$Id$\n")],
            &[],
        ),
    ];
    for (what, extra, setup) in cases {
        let mut files = vec![("d/a.txt", "one\ntwo\n"), ("root.txt", "r\nr\n")];
        files.extend_from_slice(extra);
        let t = TestRepo::with_files(&files);
        if setup.contains(&"info") {
            let info = t.root.join(".git/info");
            std::fs::create_dir_all(&info).unwrap();
            std::fs::write(info.join("attributes"), "*.txt text eol=crlf\n").unwrap();
        }
        if setup.contains(&"autocrlf") {
            t.git(&["config", "core.autocrlf", "true"]);
        }
        let head = t.git(&["rev-parse", "HEAD"]);
        let oracle = t
            .tmp
            .path()
            .join(format!("oracle-{}", what.replace(' ', "-")));
        t.git(&[
            "worktree",
            "add",
            "-q",
            "--detach",
            oracle.to_str().unwrap(),
            &head,
        ]);
        let repo = Repo::discover(&t.root).unwrap();
        for (name, sparse) in [("whole", None), ("sparse", Some(vec!["d/**".to_string()]))] {
            let path = t.worktree_dir().join(name);
            let req = WorktreeRequest {
                name: name.into(),
                path: path.clone(),
                branch: format!("treefarm/{name}"),
                start: Oid::from_str(&head).unwrap(),
                reuse: false,
                sparse: sparse.map(|declared| SparseRequest {
                    declared,
                    include: Vec::new(),
                    exact: true,
                }),
            };
            repo.add_worktrees(&[req]).remove(0).unwrap();
            for file in ["d/a.txt", "root.txt", "d/id.txt"] {
                let ours = std::fs::read(path.join(file)).ok();
                let git = std::fs::read(oracle.join(file)).ok();
                if ours.is_none() && (name == "sparse" || git.is_none()) {
                    continue;
                }
                assert_eq!(ours, git, "{what}, {name}: {file}");
            }
            let a = std::fs::read(path.join("d/a.txt")).unwrap();
            let converted = what != "no attributes" && what != "ident";
            assert_eq!(a.contains(&b'\r'), converted, "{what}, {name}");
        }
    }
}
