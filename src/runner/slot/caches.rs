//! Warm caches per slot: `slot_env` templates expanded with `{slot}`,
//! `{cache}` (a per-repository folder under the user's cache dir that
//! outlives worktrees and runs) and `{repo}` (the main worktree's root).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `$XDG_CACHE_HOME/treefarm/<repo-name>-<hash of its path>` (else
/// `$HOME/.cache/…`, else the temp dir): one folder per repository.
pub fn cache_dir(repo_root: &Path, env: impl Fn(&str) -> Option<String>) -> PathBuf {
    let base = env("XDG_CACHE_HOME")
        .filter(|v| Path::new(v).is_absolute())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(&h).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir);
    let name = repo_root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".into());
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    let hash = repo_root
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
    base.join("treefarm")
        .join(format!("{name}-{:08x}", hash as u32))
}

/// The `slot_env` variables of one slot.
pub fn slot_env(
    templates: &BTreeMap<String, String>,
    slot: usize,
    cache: &Path,
    repo: &Path,
) -> Vec<(String, String)> {
    templates
        .iter()
        .map(|(k, v)| {
            let value = v
                .replace("{slot}", &slot.to_string())
                .replace("{cache}", &cache.display().to_string())
                .replace("{repo}", &repo.display().to_string());
            (k.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_per_slot_under_a_per_repository_cache() {
        let env = |k: &str| (k == "XDG_CACHE_HOME").then(|| "/c".to_string());
        let cache = cache_dir(Path::new("/src/app"), env);
        assert!(cache.starts_with("/c/treefarm"));
        assert!(cache
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("app-"));
        assert_ne!(cache, cache_dir(Path::new("/other/app"), env));
        let t = BTreeMap::from([(
            "CARGO_TARGET_DIR".to_string(),
            "{cache}/slot-{slot}/target".to_string(),
        )]);
        let got = slot_env(&t, 2, Path::new("/c/x"), Path::new("/src/app"));
        assert_eq!(
            got,
            [("CARGO_TARGET_DIR".into(), "/c/x/slot-2/target".into())]
        );
    }
}
