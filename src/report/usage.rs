//! Per-spec and total usage (tokens, cost) for `status` and the run's final
//! summary, from the `usage.json` each agent wrapper writes in its instance
//! directory (see `agents::usage`). Reading the files is the only I/O here;
//! the rendering is pure.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::agents::{read_usage, total_usage, Usage};
use crate::state::{InstanceRecord, RunRecord};

/// Each instance's usage, in the record's order; instances without a
/// readable `usage.json` are left out.
pub fn run_usage(run_dir: &Path, run: &RunRecord) -> Vec<(String, Usage)> {
    run.instances
        .iter()
        .filter_map(|i| {
            read_usage(&run_dir.join("instances").join(&i.id)).map(|u| (i.id.clone(), u))
        })
        .collect()
}

/// The run directory an instance's log lives in (`<run>/logs/<id>.log`),
/// for the reporter, which has the record but not the directory.
pub fn run_dir_of(inst: &InstanceRecord) -> Option<PathBuf> {
    let log = Path::new(&inst.log_path);
    let logs = log.parent()?;
    (logs.file_name()? == "logs").then(|| logs.parent().map(Path::to_path_buf))?
}

/// `{"total": {...}, "per_spec": {"<id>": {...}}}`, or `null` when no agent
/// reported usage.
pub fn usage_json(per_spec: &[(String, Usage)]) -> Value {
    let Some(total) = total_usage(per_spec.iter().map(|(_, u)| u)) else {
        return Value::Null;
    };
    let map: serde_json::Map<String, Value> = per_spec
        .iter()
        .map(|(id, u)| (id.clone(), json!(u)))
        .collect();
    json!({"total": total, "per_spec": map})
}

/// `usage: 1.2k in / 345 out, $0.0125 (001: ...; 002: ...)`, or nothing when
/// no agent reported usage.
pub fn usage_line(per_spec: &[(String, Usage)]) -> Option<String> {
    let total = total_usage(per_spec.iter().map(|(_, u)| u))?;
    let parts: Vec<String> = per_spec
        .iter()
        .map(|(id, u)| format!("{id}: {}", u.brief()))
        .collect();
    Some(format!("usage: {} ({})", total.brief(), parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(i: u64, o: u64, c: Option<f64>) -> Usage {
        Usage {
            input_tokens: Some(i),
            output_tokens: Some(o),
            cost_usd: c,
            model: Some("m".into()),
        }
    }

    #[test]
    fn line_and_json_show_each_spec_and_the_total() {
        let per = vec![
            ("001".to_string(), u(101, 7, Some(0.5))),
            ("002".to_string(), u(202, 14, None)),
        ];
        assert_eq!(
            usage_line(&per).expect("line"),
            "usage: 303 in / 21 out, $0.5000 (001: 101 in / 7 out, $0.5000; 002: 202 in / 14 out)"
        );
        let v = usage_json(&per);
        assert_eq!(v["total"]["input_tokens"], 303);
        assert_eq!(v["per_spec"]["002"]["output_tokens"], 14);
        assert_eq!(usage_line(&[]), None);
        assert_eq!(usage_json(&[]), Value::Null);
    }

    #[test]
    fn run_dir_from_the_log_path() {
        let inst = InstanceRecord {
            log_path: "/r/.git/treefarm/runs/x/logs/001.log".into(),
            ..Default::default()
        };
        assert_eq!(
            run_dir_of(&inst),
            Some(PathBuf::from("/r/.git/treefarm/runs/x"))
        );
        let other = InstanceRecord {
            log_path: "/elsewhere/001.log".into(),
            ..Default::default()
        };
        assert_eq!(run_dir_of(&other), None);
    }
}
