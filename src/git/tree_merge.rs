//! The trivial three-way merge of trees, as git's `merge-tree` does it before
//! any file content is merged: a path changed on one side only takes that
//! side; identical changes are taken once; a directory changed on both sides
//! is merged entry by entry. Only the subtrees that differ are read, so
//! merging a branch that touched a few files costs a few tree reads, not a
//! walk of the whole repository.
//!
//! Anything that needs more — the same file changed differently on both
//! sides, a file against a directory, several merge bases — returns `None`,
//! and the caller falls back to libgit2's full merge (content merge, rename
//! detection, conflict reporting).

use std::collections::BTreeSet;

use git2::{FileMode, Oid, Repository, Tree};

/// One entry of a tree: what it points to and its mode.
type Entry = (Oid, i32);

fn entries(tree: Option<&Tree<'_>>) -> std::collections::BTreeMap<Vec<u8>, Entry> {
    tree.map(|t| {
        t.iter()
            .map(|e| (e.name_bytes().to_vec(), (e.id(), e.filemode())))
            .collect()
    })
    .unwrap_or_default()
}

fn is_tree(entry: Option<Entry>) -> bool {
    entry.is_some_and(|(_, mode)| mode == i32::from(FileMode::Tree))
}

/// The merged tree of `ours` and `theirs` against `base`, when every path
/// merges trivially; `Ok(None)` when a content merge or conflict decision is
/// needed.
pub(crate) fn trivial_merge(
    repo: &Repository,
    base: Option<&Tree<'_>>,
    ours: &Tree<'_>,
    theirs: &Tree<'_>,
) -> Result<Option<Oid>, git2::Error> {
    let base_id = base.map(Tree::id);
    if ours.id() == theirs.id() || base_id == Some(theirs.id()) {
        return Ok(Some(ours.id()));
    }
    if base_id == Some(ours.id()) {
        return Ok(Some(theirs.id()));
    }
    let (b, o, t) = (entries(base), entries(Some(ours)), entries(Some(theirs)));
    let names: BTreeSet<&Vec<u8>> = b.keys().chain(o.keys()).chain(t.keys()).collect();
    let mut builder = repo.treebuilder(Some(ours))?;
    for name in names {
        let (be, oe, te) = (
            b.get(name).copied(),
            o.get(name).copied(),
            t.get(name).copied(),
        );
        if oe == te || be == te {
            continue; // ours already holds the result
        }
        let merged = if be == oe {
            te
        } else if let (Some((o_id, _)), Some((t_id, _)), true) = (
            oe,
            te,
            is_tree(oe) && is_tree(te) && (be.is_none() || is_tree(be)),
        ) {
            let sub_base = match be {
                Some((id, _)) => Some(repo.find_tree(id)?),
                None => None,
            };
            let (sub_ours, sub_theirs) = (repo.find_tree(o_id)?, repo.find_tree(t_id)?);
            match trivial_merge(repo, sub_base.as_ref(), &sub_ours, &sub_theirs)? {
                Some(id) if repo.find_tree(id)?.is_empty() => None,
                Some(id) => Some((id, i32::from(FileMode::Tree))),
                None => return Ok(None),
            }
        } else {
            return Ok(None);
        };
        match merged {
            Some((id, mode)) => {
                builder.insert(name.as_slice(), id, mode)?;
            }
            None => {
                builder.remove(name.as_slice())?;
            }
        }
    }
    builder.write().map(Some)
}
