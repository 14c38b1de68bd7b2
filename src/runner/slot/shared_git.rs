//! Watches what every worktree of a repository shares and no agent should
//! change: `<common-dir>/config` and `<common-dir>/hooks/`. A snapshot is
//! taken before the first agent of a run starts; whenever an agent ends the
//! files are compared with it, and a change is reported (once) naming the
//! agents that were running meanwhile.
//!
//! Plain file reads (no libgit2): the bytes are what matters, not what git
//! makes of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The shared files' contents at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SharedGitSnapshot {
    /// `config`'s bytes; `None` when missing or unreadable.
    config: Option<Vec<u8>>,
    /// Every file under `hooks/` (relative path → bytes and mode).
    hooks: BTreeMap<String, (Vec<u8>, u32)>,
}

impl SharedGitSnapshot {
    /// Reads `<common_dir>/config` and `<common_dir>/hooks/`.
    pub fn take(common_dir: &Path) -> SharedGitSnapshot {
        let mut hooks = BTreeMap::new();
        read_tree(&common_dir.join("hooks"), "", &mut hooks);
        SharedGitSnapshot {
            config: std::fs::read(common_dir.join("config")).ok(),
            hooks,
        }
    }

    /// What changed from `self` to `now`, one entry per path (`config`,
    /// `hooks/<name>`) with what happened to it.
    pub fn changes(&self, now: &SharedGitSnapshot) -> Vec<String> {
        let mut out = Vec::new();
        match (&self.config, &now.config) {
            (Some(a), Some(b)) if a != b => out.push("config modified".to_string()),
            (Some(_), None) => out.push("config removed".to_string()),
            (None, Some(_)) => out.push("config created".to_string()),
            _ => {}
        }
        let names: BTreeSet<&String> = self.hooks.keys().chain(now.hooks.keys()).collect();
        for name in names {
            match (self.hooks.get(name), now.hooks.get(name)) {
                (Some(a), Some(b)) if a != b => out.push(format!("hooks/{name} modified")),
                (Some(_), None) => out.push(format!("hooks/{name} removed")),
                (None, Some(_)) => out.push(format!("hooks/{name} created")),
                _ => {}
            }
        }
        out
    }
}

fn read_tree(dir: &Path, prefix: &str, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => read_tree(&path, &format!("{name}/"), out),
            Ok(meta) => {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.insert(name, (bytes, meta.permissions().mode()));
            }
            Err(_) => {}
        }
    }
}

/// One repository's baseline and the agents running in it.
#[derive(Debug, Default)]
struct Watch {
    baseline: SharedGitSnapshot,
    /// Agents running now.
    running: BTreeSet<String>,
    /// Agents that ran since the baseline was last taken.
    since_baseline: BTreeSet<String>,
}

fn watches() -> &'static Mutex<HashMap<PathBuf, Watch>> {
    static WATCHES: OnceLock<Mutex<HashMap<PathBuf, Watch>>> = OnceLock::new();
    WATCHES.get_or_init(Default::default)
}

/// Call before agent `id` starts in the repository at `common_dir`: the first
/// agent of a repository takes the baseline snapshot.
pub fn agent_starting(common_dir: &Path, id: &str) {
    let mut all = watches().lock().unwrap_or_else(|e| e.into_inner());
    let watch = all
        .entry(common_dir.to_path_buf())
        .or_insert_with(|| Watch {
            baseline: SharedGitSnapshot::take(common_dir),
            ..Watch::default()
        });
    watch.running.insert(id.to_string());
    watch.since_baseline.insert(id.to_string());
}

/// Call after agent `id` ended: the warning to show when the shared files
/// differ from the baseline (which then moves on, so each change is reported
/// once). The message names `id` alone when no other agent ran meanwhile.
pub fn agent_ended(common_dir: &Path, id: &str) -> Option<String> {
    let mut all = watches().lock().unwrap_or_else(|e| e.into_inner());
    let watch = all.get_mut(common_dir)?;
    watch.running.remove(id);
    let now = SharedGitSnapshot::take(common_dir);
    let changes = watch.baseline.changes(&now);
    let suspects: Vec<String> = watch.since_baseline.iter().cloned().collect();
    if changes.is_empty() {
        if watch.running.is_empty() {
            watch.since_baseline.clear();
        }
        return None;
    }
    watch.baseline = now;
    watch.since_baseline = watch.running.clone();
    Some(describe(common_dir, id, &suspects, &changes))
}

/// The warning text: what changed, and who could have done it.
pub fn describe(common_dir: &Path, id: &str, suspects: &[String], changes: &[String]) -> String {
    let who = if suspects.iter().all(|s| s == id) {
        format!("the agent of {id}")
    } else {
        format!(
            "one of the agents of {} (they ran at the same time)",
            suspects.join(", ")
        )
    };
    format!(
        "{who} changed the repository's shared git files in `{}`: {}; every worktree and \
         treefarm's own merges use them (hint: review them with `git -C {} config --list --local`)",
        common_dir.display(),
        changes.join(", "),
        common_dir.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_each_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config"), "[core]\n").expect("config");
        std::fs::create_dir(dir.path().join("hooks")).expect("hooks");
        std::fs::write(dir.path().join("hooks/pre-commit.sample"), "x").expect("hook");
        let before = SharedGitSnapshot::take(dir.path());
        assert!(before
            .changes(&SharedGitSnapshot::take(dir.path()))
            .is_empty());
        std::fs::write(dir.path().join("config"), "[user]\nname = Your Name\n").expect("w");
        std::fs::write(dir.path().join("hooks/post-commit"), "y").expect("w");
        std::fs::remove_file(dir.path().join("hooks/pre-commit.sample")).expect("rm");
        assert_eq!(
            before.changes(&SharedGitSnapshot::take(dir.path())),
            vec![
                "config modified".to_string(),
                "hooks/post-commit created".to_string(),
                "hooks/pre-commit.sample removed".to_string(),
            ]
        );
    }

    #[test]
    fn a_change_is_reported_once_naming_the_agent() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config"), "[core]\n").expect("config");
        agent_starting(dir.path(), "1");
        agent_starting(dir.path(), "2");
        assert_eq!(agent_ended(dir.path(), "2"), None);
        std::fs::write(dir.path().join("config"), "[core]\nx = 1\n").expect("w");
        let warning = agent_ended(dir.path(), "1").expect("a warning");
        // Agent 2 ran while the baseline was current: both are suspects.
        assert!(warning.contains("agents of 1, 2"), "{warning}");
        assert!(warning.contains("config modified"), "{warning}");
        agent_starting(dir.path(), "3");
        assert_eq!(agent_ended(dir.path(), "3"), None);
        std::fs::write(dir.path().join("config"), "[core]\nx = 2\n").expect("w");
        agent_starting(dir.path(), "3");
        let warning = agent_ended(dir.path(), "3").expect("a warning");
        assert!(warning.starts_with("the agent of 3 changed"), "{warning}");
    }
}
