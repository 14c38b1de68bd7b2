//! The agent's optional status file (`TREEFARM_STATUS_FILE`): JSON
//! `{"state", "progress", "message"}` it may rewrite at any time.
//!
//! It is display-only and written by code we do not control, so parsing is
//! lenient: unknown fields, wrong types and half-written files are ignored,
//! never an error. The exit code, not this file, decides the outcome.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::runner::messages::AgentStatus;
use serde_json::Value;

impl AgentStatus {
    /// Parses the file's contents; `None` when it is not a JSON object (empty,
    /// truncated mid-write, garbage). Fields of the wrong type are dropped.
    pub fn parse(bytes: &[u8]) -> Option<AgentStatus> {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(bytes) else {
            return None;
        };
        let text = |key: &str| match map.get(key)? {
            Value::String(s) => Some(s.clone()),
            _ => None,
        };
        let progress = match map.get("progress") {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().trim_end_matches('%').parse::<f64>().ok(),
            _ => None,
        }
        .filter(|p| p.is_finite() && *p >= 0.0)
        // Clamped to 0..=100 first, so the cast cannot truncate.
        .map(|p| p.min(100.0) as u8);
        Some(AgentStatus {
            state: text("state"),
            progress,
            message: text("message"),
        })
    }
}

/// Follows one status file across polls and reports what changed.
#[derive(Debug)]
pub(crate) struct StatusWatch {
    path: PathBuf,
    /// Modification time, inode and length last seen: a rewrite with the
    /// same contents (a heartbeat) still counts as activity.
    stamp: Option<(SystemTime, u64, u64)>,
    contents: Option<Vec<u8>>,
    last: Option<AgentStatus>,
}

/// The outcome of one poll.
#[derive(Debug, Default)]
pub(crate) struct StatusPoll {
    /// The file was written since the last poll (counts as agent activity,
    /// even when the parsed status is the same, e.g. a heartbeat).
    pub touched: bool,
    /// A new, different, parseable status.
    pub status: Option<AgentStatus>,
}

impl StatusWatch {
    pub(crate) fn new(path: &Path) -> StatusWatch {
        StatusWatch {
            path: path.to_path_buf(),
            stamp: None,
            contents: None,
            last: None,
        }
    }

    /// Looks at the file once. A missing or unreadable file is "no news".
    pub(crate) fn poll(&mut self) -> StatusPoll {
        // Plain blocking calls on purpose: a stat and a read of a tiny file
        // cost less than a hop to tokio's blocking pool. The file is read on
        // every poll because a same-length rewrite within the filesystem's
        // timestamp granularity would leave the stamp unchanged.
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return StatusPoll::default();
        };
        let Ok(bytes) = std::fs::read(&self.path) else {
            return StatusPoll::default();
        };
        let stamp = meta.modified().ok().map(|m| (m, meta.ino(), meta.len()));
        let restamped = stamp.is_some() && stamp != self.stamp;
        self.stamp = stamp;
        let mut poll = StatusPoll {
            touched: restamped,
            status: None,
        };
        if self.contents.as_deref() == Some(bytes.as_slice()) {
            return poll;
        }
        poll.touched = true;
        if let Some(status) = AgentStatus::parse(&bytes) {
            if self.last.as_ref() != Some(&status) {
                self.last = Some(status.clone());
                poll.status = Some(status);
            }
        }
        self.contents = Some(bytes);
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_fields() {
        let s = AgentStatus::parse(br#"{"state":"working","progress":40,"message":"tests"}"#);
        assert_eq!(
            s,
            Some(AgentStatus {
                state: Some("working".into()),
                progress: Some(40),
                message: Some("tests".into()),
            })
        );
    }

    #[test]
    fn garbage_is_ignored_not_an_error() {
        assert_eq!(AgentStatus::parse(b""), None);
        assert_eq!(AgentStatus::parse(b"{\"state\":\"wor"), None);
        assert_eq!(AgentStatus::parse(b"[1,2]"), None);
        assert_eq!(AgentStatus::parse(b"\x00\xff"), None);
    }

    #[test]
    fn wrong_types_drop_the_field_only() {
        let s = AgentStatus::parse(br#"{"state":3,"progress":"55%","message":null,"extra":1}"#)
            .expect("object");
        assert_eq!(s.state, None);
        assert_eq!(s.progress, Some(55));
        assert_eq!(s.message, None);
    }

    #[test]
    fn progress_is_clamped_and_rounded_down() {
        let p = |json: &str| AgentStatus::parse(json.as_bytes()).and_then(|s| s.progress);
        assert_eq!(p(r#"{"progress":250}"#), Some(100));
        assert_eq!(p(r#"{"progress":42.9}"#), Some(42));
        assert_eq!(p(r#"{"progress":-1}"#), None);
    }

    #[test]
    fn watch_reports_only_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("status.json");
        let mut watch = StatusWatch::new(&path);
        assert!(!watch.poll().touched, "missing file is no news");
        std::fs::write(&path, r#"{"progress":1}"#).expect("write");
        let first = watch.poll();
        assert!(first.touched);
        assert_eq!(first.status.and_then(|s| s.progress), Some(1));
        let again = watch.poll();
        assert!(again.status.is_none());
        std::fs::write(&path, "not json").expect("write");
        assert!(
            watch.poll().status.is_none(),
            "garbage keeps the last status"
        );
        std::fs::write(&path, r#"{"progress":2}"#).expect("write");
        assert_eq!(watch.poll().status.and_then(|s| s.progress), Some(2));
    }
}
