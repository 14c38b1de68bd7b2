//! Sparse worktrees built from libgit2 primitives (libgit2 has no sparse
//! checkout): a linked worktree whose index holds the whole tree, with the
//! skip-worktree bit on every entry that is not materialised, whose files are
//! checked out only for the materialised paths, and whose admin entry carries
//! what the git CLI reads — `core.sparseCheckout` (and
//! `core.sparseCheckoutCone` when the patterns are cone patterns) in its own
//! `config.worktree`, and `info/sparse-checkout`. The shared config only
//! gains `extensions.worktreeConfig = true` (what `git sparse-checkout init`
//! sets too), and only when a sparse worktree is planted.
//!
//! Also: the size a checkout will take on disk, estimated from blob sizes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use git2::build::CheckoutBuilder;
use git2::{ConfigLevel, ObjectType, Oid, Repository, Tree, TreeWalkMode, TreeWalkResult};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::error::GitError;
use super::repo::Repo;

/// The skip-worktree bit of an index entry's extended flags.
pub(crate) const SKIP_WORKTREE: u16 = 1 << 14;

/// What a sparse worktree should materialise, as the run asks for it; turned
/// into a [`Shape`] against the tree being checked out.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct SparseRequest {
    /// The spec's declared paths and globs.
    pub declared: Vec<String>,
    /// `auto`: `worktree.sparse_include`; a list: the list itself.
    pub include: Vec<String>,
    /// `false`: `auto` (directories of the declared files plus `include`);
    /// `true`: exactly `include` plus the declared files.
    pub exact: bool,
}

/// The materialised part of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// Everything: a normal checkout.
    Full,
    /// Git's cone mode: these directories recursively, plus the files at
    /// the root and directly inside each of their ancestors.
    Cone(BTreeSet<String>),
    /// Non-cone: gitignore-syntax lines; a path is materialised when they
    /// "ignore" it (or one of its parent directories).
    Patterns(Vec<String>),
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{', '!']) || s.starts_with('#')
}

fn clean(p: &str) -> &str {
    p.trim().trim_start_matches("./").trim_start_matches('/')
}

fn parent(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

/// What a tree holds at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Missing,
}

/// The directory a declared path or glob needs materialised (recursively);
/// `None` when it needs the whole tree, `Some("")` when the root's own files
/// are enough.
fn declared_dir(pattern: &str, kind: impl Fn(&str) -> Kind) -> Option<String> {
    let p = clean(pattern).trim_end_matches('/');
    if !is_glob(p) {
        return Some(match kind(p) {
            Kind::Dir => p.to_string(),
            Kind::File | Kind::Missing => parent(p).to_string(),
        });
    }
    let parts: Vec<&str> = p.split('/').collect();
    let first_glob = parts.iter().position(|c| is_glob(c)).unwrap_or(0);
    let literal = parts[..first_glob].join("/");
    let rest = &parts[first_glob..];
    if rest.len() == 1 && !rest[0].contains("**") {
        // `dir/*.rs`: the files directly in `dir`.
        return Some(literal);
    }
    if literal.is_empty() {
        return None;
    }
    Some(literal)
}

impl Shape {
    /// Resolves `req` against a tree (`kind` says what it holds at a path).
    pub(crate) fn resolve(req: &SparseRequest, kind: impl Fn(&str) -> Kind) -> Shape {
        if req.exact {
            let mut lines: Vec<String> = req.include.iter().map(|s| s.trim().to_string()).collect();
            let mut cone = BTreeSet::new();
            let mut all_dirs = true;
            for g in &req.include {
                let g = clean(g).trim_end_matches('/');
                if is_glob(g) || kind(g) != Kind::Dir {
                    all_dirs = false;
                } else {
                    cone.insert(g.to_string());
                }
            }
            let covered = |f: &str| {
                let f = clean(f);
                parent(f).is_empty() || cone.iter().any(|d| f.starts_with(&format!("{d}/")))
            };
            if all_dirs && req.declared.iter().all(|f| !is_glob(f) && covered(f)) {
                return Shape::Cone(cone);
            }
            for f in &req.declared {
                lines.push(format!("/{}", clean(f)));
            }
            return Shape::Patterns(lines);
        }
        let mut dirs = BTreeSet::new();
        let mut all_dirs = true;
        for d in &req.declared {
            match declared_dir(d, &kind) {
                None => return Shape::Full,
                Some(dir) => {
                    if !dir.is_empty() {
                        dirs.insert(dir);
                    }
                }
            }
        }
        for g in &req.include {
            let g = clean(g).trim_end_matches('/');
            if g.is_empty() {
                continue;
            }
            if is_glob(g) {
                all_dirs = false;
                continue;
            }
            match kind(g) {
                Kind::Dir => {
                    dirs.insert(g.to_string());
                }
                Kind::File | Kind::Missing if !parent(g).is_empty() => {
                    dirs.insert(parent(g).to_string());
                }
                _ => {}
            }
        }
        if all_dirs {
            return Shape::Cone(dirs);
        }
        let mut lines = vec!["/*".to_string(), "!/*/".to_string()];
        lines.extend(dirs.iter().map(|d| format!("/{}/", escape(d))));
        lines.extend(req.include.iter().map(|s| s.trim().to_string()));
        Shape::Patterns(lines)
    }

    /// The `info/sparse-checkout` file git reads for this shape.
    pub(crate) fn file_text(&self) -> String {
        match self {
            Shape::Full => "/*\n".to_string(),
            Shape::Cone(dirs) => {
                let dirs = minimal(dirs);
                let mut parents = BTreeSet::new();
                for d in &dirs {
                    let mut p = parent(d);
                    while !p.is_empty() {
                        parents.insert(p.to_string());
                        p = parent(p);
                    }
                }
                let mut out = String::from("/*\n!/*/\n");
                for p in parents.iter().filter(|p| !dirs.contains(*p)) {
                    let p = escape(p);
                    out.push_str(&format!("/{p}/\n!/{p}/*/\n"));
                }
                for d in &dirs {
                    out.push_str(&format!("/{}/\n", escape(d)));
                }
                out
            }
            Shape::Patterns(lines) => lines.iter().map(|l| format!("{l}\n")).collect(),
        }
    }

    fn matcher(&self) -> Result<Matcher, GitError> {
        Ok(match self {
            Shape::Full => Matcher::All,
            Shape::Cone(dirs) => {
                let dirs = minimal(dirs);
                let mut parents = HashSet::new();
                for d in &dirs {
                    let mut p = d.as_str();
                    loop {
                        p = parent(p);
                        parents.insert(p.to_string());
                        if p.is_empty() {
                            break;
                        }
                    }
                }
                Matcher::Cone { dirs, parents }
            }
            Shape::Patterns(lines) => {
                let mut b = GitignoreBuilder::new("");
                let bad = |l: &str| {
                    let pattern = l.to_string();
                    move |source| GitError::SparsePattern { pattern, source }
                };
                for l in lines {
                    b.add_line(None, l).map_err(bad(l))?;
                }
                Matcher::Patterns(b.build().map_err(bad(&lines.join(" ")))?)
            }
        })
    }
}

/// Drops directories inside another one of the set.
fn minimal(dirs: &BTreeSet<String>) -> BTreeSet<String> {
    dirs.iter()
        .filter(|d| {
            !dirs
                .iter()
                .any(|o| o != *d && d.starts_with(&format!("{o}/")))
        })
        .cloned()
        .collect()
}

/// Escapes what git's pattern syntax would read specially.
fn escape(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        if matches!(c, '*' | '?' | '[' | '\\' | '!' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

enum Matcher {
    All,
    Cone {
        dirs: BTreeSet<String>,
        parents: HashSet<String>,
    },
    Patterns(Gitignore),
}

impl Matcher {
    fn includes(&self, path: &str) -> bool {
        match self {
            Matcher::All => true,
            Matcher::Cone { dirs, parents } => {
                parents.contains(parent(path))
                    || dirs.iter().any(|d| {
                        path.len() > d.len()
                            && path.starts_with(d.as_str())
                            && path.as_bytes()[d.len()] == b'/'
                    })
            }
            Matcher::Patterns(g) => g.matched_path_or_any_parents(path, false).is_ignore(),
        }
    }
}

/// What a tree holds at `path`.
fn kind_in(tree: &Tree<'_>, path: &str) -> Kind {
    if path.is_empty() {
        return Kind::Dir;
    }
    match tree.get_path(Path::new(path)) {
        Ok(e) if e.kind() == Some(ObjectType::Tree) => Kind::Dir,
        Ok(_) => Kind::File,
        Err(_) => Kind::Missing,
    }
}

/// Serialises writes of the shared config between planting threads.
static SHARED_CONFIG: Mutex<()> = Mutex::new(());

/// Sets `extensions.worktreeConfig = true` in the repository's own config
/// unless already set; nothing else is changed.
fn enable_worktree_config(repo: &Repository) -> Result<(), GitError> {
    let at = || repo.commondir().display().to_string();
    let _guard = SHARED_CONFIG.lock().unwrap_or_else(|p| p.into_inner());
    let config = repo
        .config()
        .map_err(|e| GitError::git("read the config of", at(), e))?;
    if config
        .get_bool("extensions.worktreeConfig")
        .unwrap_or(false)
    {
        return Ok(());
    }
    if config.get_entry("core.worktree").is_ok() {
        // Turning the extension on would need it moved to the main
        // worktree's own config: a change to the user's config we do not make.
        return Err(GitError::SparseUnsupported {
            path: repo.commondir().to_path_buf(),
            reason: "`core.worktree` is set in its config".to_string(),
        });
    }
    let mut local = config
        .open_level(ConfigLevel::Local)
        .map_err(|e| GitError::git("open the config of", at(), e))?;
    local
        .set_bool("extensions.worktreeConfig", true)
        .map_err(|e| GitError::git("set extensions.worktreeConfig in", at(), e))
}

/// Plants the worktree `name` at `path` on `branch` as a sparse checkout; a
/// request that resolves to the whole tree is a normal worktree.
pub(crate) fn add_sparse(
    repo: &Repository,
    name: &str,
    path: &Path,
    branch: &str,
    req: &SparseRequest,
    add_full: impl FnOnce() -> Result<(), GitError>,
) -> Result<(), GitError> {
    let fail = |source| GitError::CreateWorktree {
        path: path.to_path_buf(),
        branch: branch.to_string(),
        source,
    };
    let commit = repo
        .find_reference(&format!("refs/heads/{branch}"))
        .and_then(|r| r.peel_to_commit())
        .map_err(fail)?;
    let tree = commit.tree().map_err(fail)?;
    let shape = Shape::resolve(req, |p| kind_in(&tree, p));
    if shape == Shape::Full {
        return add_full();
    }
    let matcher = shape.matcher()?;
    enable_worktree_config(repo)?;

    // The admin entry with its sparse files, registered whole (see
    // `register_worktree`), then the index and the materialised files.
    let cone = matches!(shape, Shape::Cone(_));
    super::admin::register_worktree(
        repo,
        name,
        path,
        branch,
        &[
            ("info/sparse-checkout", shape.file_text()),
            (
                "config.worktree",
                format!("[core]\n\tsparseCheckout = true\n\tsparseCheckoutCone = {cone}\n"),
            ),
        ],
    )?;

    // The index: the whole tree, skip-worktree outside the shape.
    let at = || path.display().to_string();
    let wt = Repository::open(path).map_err(|e| GitError::git("open worktree", at(), e))?;
    let mut index = wt
        .index()
        .map_err(|e| GitError::git("read the index of", at(), e))?;
    index
        .read_tree(&tree)
        .map_err(|e| GitError::git("read the tree into the index of", at(), e))?;
    let mut included: Vec<String> = Vec::new();
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    let entries: Vec<git2::IndexEntry> = index.iter().collect();
    for mut entry in entries {
        let p = String::from_utf8_lossy(&entry.path).into_owned();
        let inc = matcher.includes(&p);
        let mut d = parent(&p);
        loop {
            let c = counts.entry(d.to_string()).or_default();
            c.0 += 1;
            c.1 += usize::from(inc);
            if d.is_empty() {
                break;
            }
            d = parent(d);
        }
        if inc {
            included.push(p);
        } else {
            entry.flags_extended |= SKIP_WORKTREE;
            index
                .add(&entry)
                .map_err(|e| GitError::git("mark skip-worktree in the index of", at(), e))?;
        }
    }
    index
        .write()
        .map_err(|e| GitError::git("write the index of", at(), e))?;

    // Files: only the materialised paths, named by the fewest prefixes.
    if !included.is_empty() {
        let mut cb = CheckoutBuilder::new();
        cb.force()
            .disable_pathspec_match(true)
            .disable_filters(super::filters::none_apply(&wt, &tree));
        let mut last: Option<String> = None;
        for p in &included {
            if last
                .as_deref()
                .is_some_and(|l| p.starts_with(l) && p.as_bytes().get(l.len()) == Some(&b'/'))
            {
                continue;
            }
            // The shortest ancestor directory wholly materialised, else the file.
            let mut best = p.as_str();
            let mut d = parent(p);
            while !d.is_empty() {
                if counts.get(d).is_some_and(|c| c.0 == c.1) {
                    best = d;
                }
                d = parent(d);
            }
            cb.path(best);
            last = Some(best.to_string());
        }
        wt.checkout_index(Some(&mut index), Some(&mut cb))
            .map_err(|e| GitError::git("check out the materialised files of", at(), e))?;
    }
    // Marking an entry, and recording a checked-out file, invalidates the
    // tree cache of its folders, though the tree is the same: rebuild the
    // cache (the trees exist, so nothing new is written) and write the
    // index with a valid TREE extension. Committing after the agent exits
    // then rebuilds only the folders that changed — when nothing changed,
    // no tree at all — instead of every folder of the repository.
    index
        .write_tree()
        .map_err(|e| GitError::git("cache the trees in the index of", at(), e))?;
    index
        .write()
        .map_err(|e| GitError::git("write the index of", at(), e))?;
    Ok(())
}

/// Bytes a file of `size` bytes takes on a file system with 4 KiB blocks.
fn on_disk(size: u64) -> u64 {
    size.div_ceil(4096).max(1) * 4096
}

impl Repo {
    /// Estimated bytes a checkout of `commit` takes for each request (`None`:
    /// the whole tree): its materialised files rounded up to 4 KiB blocks, a
    /// block per directory, and the index. The tree is read once.
    pub fn checkout_sizes(
        &self,
        commit: Oid,
        requests: &[Option<SparseRequest>],
    ) -> Result<Vec<u64>, GitError> {
        let repo = self.open()?;
        let at = || commit.to_string();
        let tree = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(|e| GitError::git("read the tree of", at(), e))?;
        let odb = repo
            .odb()
            .map_err(|e| GitError::git("open the objects of", at(), e))?;
        let mut files: Vec<(String, u64)> = Vec::new();
        let mut failed = None;
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() != Some(ObjectType::Blob) {
                return TreeWalkResult::Ok;
            }
            match odb.read_header(entry.id()) {
                Ok((size, _)) => {
                    files.push((format!("{dir}{}", entry.name().unwrap_or("")), size as u64));
                    TreeWalkResult::Ok
                }
                Err(e) => {
                    failed = Some(e);
                    TreeWalkResult::Abort
                }
            }
        })
        .map_err(|e| GitError::git("walk the tree of", at(), e))?;
        if let Some(e) = failed {
            return Err(GitError::git("read blob sizes of", at(), e));
        }
        // Index entries: ~62 bytes each plus the path.
        let index: u64 = files.iter().map(|(p, _)| 64 + p.len() as u64).sum();
        let mut memo: HashMap<Option<SparseRequest>, u64> = HashMap::new();
        let mut out = Vec::with_capacity(requests.len());
        for req in requests {
            if let Some(size) = memo.get(req) {
                out.push(*size);
                continue;
            }
            let shape = match req {
                Some(req) => Shape::resolve(req, |p| kind_in(&tree, p)),
                None => Shape::Full,
            };
            let matcher = shape.matcher()?;
            let mut dirs = HashSet::new();
            let mut total = index;
            for (path, size) in &files {
                if matcher.includes(path) {
                    total += on_disk(*size);
                    if dirs.insert(parent(path)) {
                        total += 4096;
                    }
                }
            }
            memo.insert(req.clone(), total);
            out.push(total);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(p: &str) -> Kind {
        match p {
            "src" | "src/a" | "src/b" | "libs" | "libs/shared" => Kind::Dir,
            "Cargo.toml" | "src/a/x.rs" | "libs/shared/lib.rs" => Kind::File,
            _ => Kind::Missing,
        }
    }

    fn req(declared: &[&str], include: &[&str], exact: bool) -> SparseRequest {
        SparseRequest {
            declared: declared.iter().map(|s| s.to_string()).collect(),
            include: include.iter().map(|s| s.to_string()).collect(),
            exact,
        }
    }

    #[test]
    fn auto_with_plain_paths_is_a_cone_of_the_declared_directories() {
        let shape = Shape::resolve(
            &req(
                &["src/a/x.rs", "src/b/**"],
                &["libs/shared", "Cargo.toml"],
                false,
            ),
            kind,
        );
        let dirs: BTreeSet<String> = ["libs/shared", "src/a", "src/b"].map(String::from).into();
        assert_eq!(shape, Shape::Cone(dirs));
        assert_eq!(
            shape.file_text(),
            "/*\n!/*/\n/libs/\n!/libs/*/\n/src/\n!/src/*/\n/libs/shared/\n/src/a/\n/src/b/\n"
        );
        let m = shape.matcher().unwrap();
        assert!(m.includes("Cargo.toml"));
        assert!(m.includes("src/a/x.rs"));
        assert!(m.includes("src/top.rs"));
        assert!(m.includes("src/b/deep/y.rs"));
        assert!(!m.includes("src/c/z.rs"));
        assert!(!m.includes("docs/z.md"));
    }

    #[test]
    fn a_glob_anywhere_needs_the_whole_tree_and_include_globs_are_not_cone() {
        assert_eq!(
            Shape::resolve(&req(&["**/*.rs"], &[], false), kind),
            Shape::Full
        );
        let shape = Shape::resolve(&req(&["src/a/x.rs"], &["*.toml", "docs/*.md"], false), kind);
        let Shape::Patterns(_) = &shape else {
            panic!("expected patterns, got {shape:?}")
        };
        let m = shape.matcher().unwrap();
        assert!(m.includes("Cargo.toml"));
        assert!(m.includes("src/a/x.rs"));
        assert!(m.includes("docs/intro.md"));
        assert!(!m.includes("docs/deep/intro.txt"));
        assert!(!m.includes("src/b/y.rs"));
    }

    #[test]
    fn an_exact_list_selects_only_its_globs_and_the_declared_files() {
        let shape = Shape::resolve(&req(&["src/a/x.rs"], &["libs/**/*.rs"], true), kind);
        let m = shape.matcher().unwrap();
        assert!(m.includes("src/a/x.rs"));
        assert!(!m.includes("src/a/other.rs"));
        assert!(m.includes("libs/shared/lib.rs"));
        assert!(!m.includes("Cargo.toml"));
        let cone = Shape::resolve(&req(&["src/a/x.rs"], &["src/a", "libs"], true), kind);
        assert!(matches!(cone, Shape::Cone(_)));
    }
}
