//! What `treefarm status` shows: the journal of one run as JSON (the shape of
//! DESIGN.md, Command line) or as a human table.
//!
//! Both are pure over a [`RunRecord`] and a clock, except for asking `/proc`
//! whether the coordinator and agents recorded there are still alive: a run
//! whose record says `running` but whose coordinator is dead is shown as
//! `interrupted`, with the command that resumes it.

use std::io::{self, Write};

use serde_json::{json, Value};

use crate::report::human::format_duration;
use crate::state::{InstanceRecord, InstanceState, RunDir, RunRecord, RunState};

/// `status --json`: `{"run_id", "state", "instances": [{"id", "state",
/// "branch", "worktree", "attempt", "exit_code", "elapsed_ms", "progress",
/// "message", …}], …}`. `elapsed_ms` is `null` for an instance that has not
/// started.
pub fn status_json(run: &RunRecord, now_ms: u64) -> Value {
    let state = run.effective_state();
    let coordinator_alive = run.state == RunState::Running && state == RunState::Running;
    let instances: Vec<Value> = run
        .instances
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "title": i.title,
                "state": i.state.as_str(),
                "branch": i.branch,
                "worktree": i.worktree,
                "attempt": i.attempt,
                "exit_code": i.exit_code,
                "elapsed_ms": elapsed_ms(i, now_ms),
                "progress": i.progress,
                "message": i.message,
                "reason": i.reason,
                "slot": i.slot,
                "pid": i.pid,
                "orphaned_agent": orphaned_agent(coordinator_alive, i),
                "commits": i.commits,
                "changed_files": i.changed_files,
                "scope_creep": i.scope_creep,
                "denied": i.denied,
                "conflict_paths": i.conflict_paths,
                "start_commit": i.start_commit,
                "tip": i.tip,
                "merged_commit": i.merged_commit,
                "log_path": i.log_path,
                "retry_at_ms": i.retry_at_ms,
                "usage": run.spending.per_spec.get(&i.id),
                "job": i.job.as_ref().map(|j| json!({
                    "name": j.name,
                    "id": j.id,
                    "state": j.state,
                    "reason": j.reason,
                    "pending_ms": j.pending_since_ms.map(|t| now_ms.saturating_sub(t)),
                    "describe": j.describe(now_ms),
                })),
            })
        })
        .collect();
    json!({
        "run_id": run.run_id,
        "state": state.as_str(),
        "target": run.target(),
        "base_commit": run.base_commit(),
        "coordinator_pid": run.coordinator_pid,
        "started_at_ms": run.started_at_ms,
        "finished_at_ms": run.finished_at_ms,
        "no_merge": run.no_merge(),
        "instances": instances,
        "concurrency": run.pacing.as_ref().map(|p| json!({
            "limit": p.window.limit(),
            "max": p.window.max(),
        })),
        "backoffs": run.pacing.as_ref().map(|p| p.backoffs.clone()).unwrap_or_default(),
        "budget_reached": run.budget_reached,
        "slurm": run.slurm.as_ref().map(|s| json!({
            "calls": s.calls,
            "total_calls": s.calls.total(),
            "polls": s.polls,
        })),
    })
}

/// The human view: a header line, one row per instance, flags for agents
/// that outlived their coordinator, and the resume command of an
/// interrupted run. ANSI colour only when `color`.
pub fn write_status_human(
    run: &RunRecord,
    now_ms: u64,
    out: &mut dyn Write,
    color: bool,
) -> io::Result<()> {
    let paint = Paint(color);
    let state = run.effective_state();
    let coordinator_alive = run.state == RunState::Running && state == RunState::Running;

    let mut header = format!(
        "run {}  {}  target {}  started {}",
        paint.bold(&run.run_id),
        paint.run_state(state),
        run.target(),
        format_time(run.started_at_ms),
    );
    match run.finished_at_ms {
        Some(end) => header.push_str(&format!(
            ", took {}",
            format_duration(end.saturating_sub(run.started_at_ms))
        )),
        None => header.push_str(&format!(
            " ({} ago)",
            format_duration(now_ms.saturating_sub(run.started_at_ms))
        )),
    }
    if coordinator_alive {
        header.push_str(&format!("  coordinator pid {}", run.coordinator_pid));
    }
    writeln!(out, "{header}")?;

    let rows: Vec<[String; 6]> = run
        .instances
        .iter()
        .map(|i| {
            [
                i.id.clone(),
                i.state.as_str().to_string(),
                i.attempt.to_string(),
                elapsed_ms(i, now_ms).map_or_else(|| "-".to_string(), format_duration),
                i.progress
                    .map_or_else(|| "-".to_string(), |p| format!("{p}%")),
                notes(coordinator_alive, i),
            ]
        })
        .collect();
    let titles = ["ID", "STATE", "ATTEMPT", "ELAPSED", "PROGRESS", "MESSAGE"];
    let mut widths = titles.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    if rows.is_empty() {
        writeln!(out, "no instances")?;
    } else {
        let line: Vec<String> = titles
            .iter()
            .zip(widths)
            .take(5)
            .map(|(t, w)| format!("{t:<w$}"))
            .chain(std::iter::once(titles[5].to_string()))
            .collect();
        writeln!(out, "{}", paint.dim(line.join("  ").trim_end()))?;
        for (row, record) in rows.iter().zip(&run.instances) {
            let mut cells = Vec::with_capacity(6);
            for (n, (cell, w)) in row.iter().zip(widths).enumerate() {
                let padded = if n == 5 {
                    cell.clone()
                } else {
                    format!("{cell:<w$}")
                };
                // Colour after padding so escape codes do not skew columns.
                cells.push(if n == 1 {
                    paint.instance_state(record.state, &padded)
                } else {
                    padded
                });
            }
            writeln!(out, "{}", cells.join("  ").trim_end())?;
        }
    }

    for line in crate::report::human::pacing_lines(run) {
        writeln!(out, "{line}")?;
    }
    if state == RunState::Interrupted {
        writeln!(
            out,
            "{}",
            paint.yellow(&format!("resume with: treefarm resume {}", run.run_id))
        )?;
    }
    Ok(())
}

/// Copies the live progress and message from each active instance's status
/// file (`TREEFARM_STATUS_FILE`) into `run`, so `status` from another
/// terminal shows what agents report between journal writes. The file is
/// the agent's and never trusted beyond display: unreadable ones are ignored.
pub fn apply_live_status(run: &mut RunRecord, dir: &RunDir) {
    for instance in &mut run.instances {
        if !matches!(instance.state, InstanceState::Running) {
            continue;
        }
        let Ok(bytes) = std::fs::read(dir.status_path(&instance.id)) else {
            continue;
        };
        let Ok(Value::Object(status)) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        if let Some(p) = status.get("progress").and_then(Value::as_f64) {
            instance.progress = Some(p.clamp(0.0, 100.0) as u8);
        }
        if let Some(m) = status.get("message").and_then(Value::as_str) {
            instance.message = Some(m.to_string());
        }
    }
}

/// Time since the instance started, up to its end (or now while it has not
/// ended); `None` before it started.
fn elapsed_ms(i: &InstanceRecord, now_ms: u64) -> Option<u64> {
    let start = i.started_at_ms?;
    Some(i.ended_at_ms.unwrap_or(now_ms).saturating_sub(start))
}

/// The agent pid of an instance that is still alive although the
/// coordinator that started it is not.
fn orphaned_agent(coordinator_alive: bool, i: &InstanceRecord) -> Option<u32> {
    if coordinator_alive || i.state.is_terminal() {
        return None;
    }
    i.pid.filter(|_| i.agent_alive())
}

/// The MESSAGE column: what the agent or the coordinator said, conflicts,
/// scope creep, and orphaned agents.
fn notes(coordinator_alive: bool, i: &InstanceRecord) -> String {
    let mut parts = Vec::new();
    if let Some(reason) = i.reason.as_deref().filter(|r| !r.is_empty()) {
        parts.push(reason.to_string());
    }
    if let Some(message) = i.message.as_deref().filter(|m| !m.is_empty()) {
        if i.reason.as_deref() != Some(message) {
            parts.push(message.to_string());
        }
    }
    if let Some(code) = i.exit_code.filter(|c| *c != 0) {
        parts.push(format!("exit code {code}"));
    }
    if let Some(at) = i.retry_at_ms {
        parts.push(format!("rate-limited: waits until {}", format_time(at)));
    }
    if !i.conflict_paths.is_empty() {
        parts.push(format!("conflicts: {}", i.conflict_paths.join(", ")));
    }
    if !i.scope_creep.is_empty() {
        parts.push(format!("scope creep: {}", i.scope_creep.join(", ")));
    }
    if let Some(denied) = &i.denied {
        parts.push(denied.clone());
    }
    if let Some(pid) = orphaned_agent(coordinator_alive, i) {
        parts.push(format!("agent pid {pid} still running"));
    }
    // `executor: slurm`: the job while the agent is out.
    if let Some(job) = i.job.as_ref().filter(|_| !i.state.is_terminal()) {
        let id = job.id.map_or(String::new(), |id| format!(" {id}"));
        parts.push(format!("job{id} {}", job.describe(crate::state::now_ms())));
    }
    parts.join("; ")
}

/// `2026-11-20 21:48:00 UTC`.
fn format_time(unix_ms: u64) -> String {
    let nanos = i128::from(unix_ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{unix_ms} ms"),
    }
}

/// Plain ANSI styling, a no-op when colour is off.
#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        crate::report::human::paint(self.0, code, text)
    }

    fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }

    fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }

    fn yellow(self, text: &str) -> String {
        self.wrap("33", text)
    }

    fn run_state(self, state: RunState) -> String {
        let code = match state {
            RunState::Running => "33",
            RunState::Finished => "32",
            RunState::Interrupted => "31",
        };
        self.wrap(code, state.as_str())
    }

    fn instance_state(self, state: InstanceState, text: &str) -> String {
        let code = match state {
            InstanceState::Succeeded | InstanceState::Merged | InstanceState::Pruned => "32",
            InstanceState::Failed
            | InstanceState::TimedOut
            | InstanceState::Unchanged
            | InstanceState::Conflicted
            | InstanceState::Refused => "31",
            InstanceState::Creating
            | InstanceState::Created
            | InstanceState::Running
            | InstanceState::Merging => "33",
            InstanceState::Pending | InstanceState::Skipped => "2",
        };
        self.wrap(code, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        pid
    }

    fn run(coordinator_pid: u32) -> RunRecord {
        RunRecord {
            run_id: "20261120-214800-3f2a".into(),
            state: RunState::Running,
            coordinator_pid,
            coordinator_start: crate::procfs::start_time(coordinator_pid),
            started_at_ms: 1_000_000,
            options: crate::state::RunOptions {
                target: "roadmap".into(),
                base_commit: "abc".into(),
                ..Default::default()
            }
            .into(),
            instances: vec![
                InstanceRecord {
                    id: "020".into(),
                    state: InstanceState::Running,
                    branch: "treefarm/020".into(),
                    worktree: "/wt/020".into(),
                    attempt: 1,
                    started_at_ms: Some(1_000_000),
                    progress: Some(40),
                    message: Some("editing retry.rs".into()),
                    ..InstanceRecord::default()
                },
                InstanceRecord {
                    id: "021".into(),
                    state: InstanceState::Conflicted,
                    branch: "treefarm/021".into(),
                    attempt: 2,
                    started_at_ms: Some(1_000_000),
                    ended_at_ms: Some(1_065_000),
                    exit_code: Some(0),
                    conflict_paths: vec!["src/a.rs".into(), "src/b.rs".into()],
                    scope_creep: vec!["README.md".into()],
                    ..InstanceRecord::default()
                },
                InstanceRecord {
                    id: "022".into(),
                    state: InstanceState::Pending,
                    ..InstanceRecord::default()
                },
            ],
            ..RunRecord::default()
        }
    }

    #[test]
    fn json_has_the_design_shape() {
        let v = status_json(&run(std::process::id()), 1_003_000);
        assert_eq!(v["run_id"], "20261120-214800-3f2a");
        assert_eq!(v["state"], "running");
        let first = &v["instances"][0];
        for key in [
            "id",
            "state",
            "branch",
            "worktree",
            "attempt",
            "exit_code",
            "elapsed_ms",
            "progress",
            "message",
        ] {
            assert!(first.get(key).is_some(), "missing {key}: {first}");
        }
        assert_eq!(first["id"], "020");
        assert_eq!(first["state"], "running");
        assert_eq!(first["attempt"], 1);
        assert_eq!(first["exit_code"], Value::Null);
        assert_eq!(first["elapsed_ms"], 3000);
        assert_eq!(first["progress"], 40);
        assert_eq!(first["message"], "editing retry.rs");
        assert_eq!(
            v["instances"][1]["elapsed_ms"], 65_000,
            "ended instances stop the clock"
        );
        assert_eq!(v["instances"][1]["conflict_paths"][1], "src/b.rs");
        assert_eq!(v["instances"][2]["elapsed_ms"], Value::Null);
    }

    #[test]
    fn running_record_with_dead_coordinator_is_interrupted() {
        let v = status_json(&run(dead_pid()), 1_003_000);
        assert_eq!(v["state"], "interrupted");
        let mut finished = run(dead_pid());
        finished.state = RunState::Finished;
        assert_eq!(status_json(&finished, 0)["state"], "finished");
    }

    #[test]
    fn human_status_of_interrupted_run_shows_resume_hint_and_orphans() {
        let mut rec = run(dead_pid());
        // This test process plays the agent that outlived its coordinator.
        rec.instances[0].pid = Some(std::process::id());
        rec.instances[0].pid_start = crate::procfs::start_time(std::process::id());
        let mut out = Vec::new();
        write_status_human(&rec, 1_192_000, &mut out, false).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.contains("run 20261120-214800-3f2a  interrupted  target roadmap"),
            "{text}"
        );
        assert!(
            text.contains("resume with: treefarm resume 20261120-214800-3f2a"),
            "{text}"
        );
        assert!(
            text.contains(&format!("agent pid {} still running", std::process::id())),
            "{text}"
        );
        assert!(text.contains("conflicts: src/a.rs, src/b.rs"), "{text}");
        assert!(text.contains("scope creep: README.md"), "{text}");
        assert!(text.contains("3m12s"), "{text}");
        assert!(text.contains("40%"), "{text}");
        assert!(!text.contains('\x1b'), "no colour when off: {text}");
    }

    #[test]
    fn human_status_of_live_run_has_no_resume_hint_and_colour_on_request() {
        let mut out = Vec::new();
        write_status_human(&run(std::process::id()), 1_003_000, &mut out, true).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(!text.contains("resume with"), "{text}");
        assert!(!text.contains("still running"), "{text}");
        assert!(text.contains("\x1b[33mrunning"), "{text}");
        // Columns line up: every row's STATE starts at the same offset.
        let plain: String = {
            let mut out = Vec::new();
            write_status_human(&run(std::process::id()), 1_003_000, &mut out, false)
                .expect("write");
            String::from_utf8(out).expect("utf8")
        };
        let rows: Vec<&str> = plain.lines().skip(1).collect();
        assert!(rows[0].starts_with("ID   STATE"), "{plain}");
        assert!(rows[1].starts_with("020  running"), "{plain}");
        assert!(rows[2].starts_with("021  conflicted"), "{plain}");
    }
}
