//! Disk probes: the free space on a file system and what a tree takes on
//! disk, for the disk budget ([`crate::policy::reserve`]), `status` and
//! `prune`. Side effects only; the arithmetic is in the policy.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes free (to an unprivileged user) on the file system holding `dir` (or
/// its nearest existing ancestor, as `dir` may not exist yet).
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    let mut at = dir;
    while !at.exists() {
        at = at.parent().unwrap_or(Path::new("/"));
    }
    let st = nix::sys::statvfs::statvfs(at).map_err(std::io::Error::from)?;
    let frsize = st.fragment_size() as u64;
    Ok(st.blocks_available() as u64 * frsize)
}

/// Bytes `path` uses on disk (allocated blocks; symlinks not followed,
/// hard links counted once per walk).
pub fn disk_usage(path: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    usage(path, &mut seen)
}

fn usage(path: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    let Ok(meta) = path.symlink_metadata() else {
        return 0;
    };
    let mut total = 0;
    if seen.insert((meta.dev(), meta.ino())) {
        total += meta.blocks() * 512;
    }
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                total += usage(&entry.path(), seen);
            }
        }
    }
    total
}
