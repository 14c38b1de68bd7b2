//! Whether a checkout can skip libgit2's content filters: when no filter
//! could change a file. libgit2 looks up the attributes of every file it
//! writes (for `text`/`eol`/`ident`), and each lookup resolves the real path
//! of the file's folder — several failing `readlink`s per file, on every
//! plant. With no attributes anywhere and no `core.autocrlf`, every filter
//! is a no-op (what git itself concludes), so the checkout is byte for byte
//! the same without them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use git2::{Oid, Repository, Tree, TreeWalkMode, TreeWalkResult};

/// Per tree id: whether it holds a `.gitattributes` file (plants start
/// from a handful of commits; a tree is walked once per process).
static HAS_ATTRIBUTES: Mutex<Option<HashMap<Oid, bool>>> = Mutex::new(None);

/// True when checking out `tree` in `repo` cannot run any filter: no
/// `.gitattributes` in the tree, no attributes file of the repository, the
/// user or the system, and `core.autocrlf` not `true`. False when unsure.
pub(crate) fn none_apply(repo: &Repository, tree: &Tree<'_>) -> bool {
    let Ok(config) = repo.config() else {
        return false;
    };
    if config.get_bool("core.autocrlf").unwrap_or(false)
        || config
            .get_string("core.autocrlf")
            .is_ok_and(|v| v != "false" && v != "input")
        || config.get_entry("core.attributesFile").is_ok()
    {
        return false;
    }
    if attribute_files(repo).iter().any(|f| f.exists()) {
        return false;
    }
    !tree_has_attributes(tree)
}

/// The attributes files outside the tree that libgit2 reads.
fn attribute_files(repo: &Repository) -> Vec<PathBuf> {
    let mut files = vec![
        repo.commondir().join("info").join("attributes"),
        repo.path().join("info").join("attributes"),
        PathBuf::from("/etc/gitattributes"),
    ];
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
    if let Some(dir) = xdg {
        files.push(dir.join("git").join("attributes"));
    }
    files
}

fn tree_has_attributes(tree: &Tree<'_>) -> bool {
    let id = tree.id();
    if let Some(known) = HAS_ATTRIBUTES
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(&id).copied()))
    {
        return known;
    }
    let mut found = false;
    let walked = tree.walk(TreeWalkMode::PreOrder, |_, entry| {
        if entry.name_bytes() == b".gitattributes" {
            found = true;
            return TreeWalkResult::Abort;
        }
        TreeWalkResult::Ok
    });
    // A walk that failed (not an abort) proves nothing: keep the filters.
    let has = found || walked.is_err();
    if let Ok(mut m) = HAS_ATTRIBUTES.lock() {
        m.get_or_insert_with(HashMap::new).insert(id, has);
    }
    has
}
