//! Durable writes of whole files: tmp + fsync + rename + fsync(dir), so a
//! reader sees the old file or the new one, never half of one — the
//! journal's snapshot and change-log headers, and `summary.json`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::error::StateError;
use crate::hooks::{crash_point, injected_disk_full};

pub(super) fn to_json(value: &impl serde::Serialize, path: &Path) -> Result<Vec<u8>, StateError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Serialize {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// tmp + fsync + rename + fsync(dir). `inject` simulates a full disk after
/// half of the bytes reached the tmp file.
pub(super) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    inject: bool,
    crash_prefix: &str,
) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);

    let written = (|| -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        if inject {
            file.write_all(&bytes[..bytes.len() / 2])?;
            return Err(injected_disk_full());
        }
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        // Name the file the caller asked for; the tmp is ours to clean up.
        return Err(StateError::io("write", path, e));
    }
    crash_point(&format!("{crash_prefix}.tmp_written"));
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(StateError::io("rename", path, e));
    }
    crash_point(&format!("{crash_prefix}.renamed"));
    sync_dir(dir)
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StateError::io("sync", dir, e))
}
