//! Human output on stderr: one line per event, a live per-instance block when
//! stderr is a terminal, and a final table.
//!
//! The live block always fits the terminal: each line is cut to the width
//! (a wrapped line would break the redraw) and, with more instances than
//! rows, finished ones collapse into a count and the running list is cut
//! with `… and N more`. It shows the merge queue, and is erased for good
//! before the final table.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::report::events::{AttemptResult, Event, Summary};
use crate::report::{tail_lines, Reporter};
use crate::state::{InstanceRecord, InstanceState, RunRecord};

/// Whether to colour output written to stderr: a terminal and no `NO_COLOR`.
pub fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether stderr shows a live, redrawn block (a terminal that is not dumb).
pub fn stderr_live() -> bool {
    std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

pub struct HumanReporter {
    out: Box<dyn Write + Send>,
    color: bool,
    live: bool,
    /// Lines of the live block currently on screen, erased before anything
    /// else is printed.
    drawn: usize,
    /// Terminal size (columns, rows) to fit the live block into; `None`
    /// asks the terminal at every redraw.
    size: Option<(usize, usize)>,
    /// Set by [`Reporter::finish`]: nothing live is drawn after the table.
    finished: bool,
    /// The block on screen (when `drawn > 0`) and when it was drawn: an
    /// unchanged block is not written again, and none is redrawn sooner
    /// than [`REDRAW_EVERY_MS`] after the last.
    shown: Vec<String>,
    shown_at_ms: u64,
    /// The latest outcomes (`041 merged`), newest last, at most [`RECENT`].
    recent: std::collections::VecDeque<String>,
}

impl HumanReporter {
    pub fn new(out: Box<dyn Write + Send>, color: bool, live: bool) -> HumanReporter {
        HumanReporter {
            out,
            color,
            live,
            drawn: 0,
            size: None,
            finished: false,
            shown: Vec::new(),
            shown_at_ms: 0,
            recent: std::collections::VecDeque::new(),
        }
    }

    /// Fits the live block into `columns` x `rows` instead of asking the
    /// terminal (tests, and terminals that do not say).
    pub fn with_size(mut self, columns: usize, rows: usize) -> HumanReporter {
        self.size = Some((columns, rows));
        self
    }

    fn terminal_size(&self) -> (usize, usize) {
        if let Some(size) = self.size {
            return size;
        }
        match terminal_size::terminal_size_of(std::io::stderr()) {
            Some((w, h)) => (usize::from(w.0), usize::from(h.0)),
            None => (80, 24),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        paint(self.color, code, text)
    }

    fn erase_live(&mut self) {
        if self.drawn > 0 {
            // Cursor up over the block, clear to the end of the screen.
            let _ = write!(self.out, "\x1b[{}F\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    fn line(&mut self, id: &str, verb: &str, color: &str, rest: &str) {
        self.erase_live();
        let verb = self.paint(color, &format!("{verb:<11}"));
        let _ = writeln!(self.out, "  {id:<8} {verb} {rest}");
    }
}

/// `text` in the SGR colour or style `code` (`"1"` bold, `"31"` red, ...)
/// when `color`, else as it is: the one place treefarm paints text.
pub fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

pub fn format_duration(ms: u64) -> String {
    let d = Duration::from_millis(ms);
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The instance and the word of an event that says how an instance ended.
fn outcome(event: &Event) -> Option<(&str, &'static str)> {
    match event {
        Event::Merged { id, .. } => Some((id, "merged")),
        Event::Failed { id, .. } => Some((id, "failed")),
        Event::TimedOut { id, .. } => Some((id, "timed_out")),
        Event::Unchanged { id, .. } => Some((id, "unchanged")),
        Event::Conflicted { id, .. } => Some((id, "conflicted")),
        Event::Refused { id, .. } => Some((id, "refused")),
        Event::Skipped { id, .. } => Some((id, "skipped")),
        _ => None,
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

fn list(paths: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut s = paths
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN {
        s.push_str(&format!(" (+{} more)", paths.len() - SHOWN));
    }
    s
}

impl Reporter for HumanReporter {
    fn note(&mut self, text: &str) {
        self.erase_live();
        let _ = writeln!(self.out, "treefarm: {text}");
    }

    fn event(&mut self, event: &Event) {
        if let Some((id, word)) = outcome(event) {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(format!("{id} {word}"));
        }
        match event {
            Event::RunStarted {
                run_id,
                target,
                base,
                instances,
                specs,
            } => {
                self.erase_live();
                let _ = writeln!(
                    self.out,
                    "treefarm run {run_id}: {} spec(s), {instances} at once, into `{target}` (base {})",
                    specs.len(),
                    short(base)
                );
            }
            Event::Planted {
                id,
                branch,
                worktree,
                plant_ms,
                ..
            } => {
                // How long the plant itself took: the wait for the start
                // gate before it is not planting.
                let took = plant_ms
                    .map(|ms| format!(" in {}", format_duration(ms)))
                    .unwrap_or_default();
                self.line(id, "planted", "36", &format!("{branch} at {worktree}{took}"))
            }
            Event::Started {
                id,
                attempt,
                pid,
                slot,
                port,
            } => {
                // pid 0: a Slurm job's agent (its `job` line has the id).
                let agent = if *pid == 0 {
                    "Slurm job".to_string()
                } else {
                    format!("pid {pid}")
                };
                self.line(
                    id,
                    "started",
                    "36",
                    &format!("attempt {attempt}, {agent}, slot {slot}, port {port}"),
                )
            }
            Event::Status { .. } => {}
            // `executor: slurm`: the attempt's job, as Slurm reports it.
            Event::Job {
                id,
                name,
                job_id,
                state,
                reason,
            } => {
                let job = job_id.map_or(name.clone(), |j| format!("{j} ({name})"));
                let what = match (state, reason) {
                    (Some(state), Some(reason)) => format!("{state}: {reason}"),
                    (Some(state), None) => state.clone(),
                    (None, _) if job_id.is_some() => "submitted".to_string(),
                    (None, _) => "submitting".to_string(),
                };
                self.line(id, "job", "36", &format!("{job} {what}"));
            }
            Event::Exited {
                id,
                result,
                exit_code,
                elapsed_ms,
                ..
            } => {
                let code = exit_code.map(|c| format!(", exit {c}")).unwrap_or_default();
                let color = match result {
                    AttemptResult::Succeeded => "32",
                    AttemptResult::RateLimited => "33",
                    _ => "31",
                };
                self.line(
                    id,
                    result.as_str(),
                    color,
                    &format!("after {}{code}", format_duration(*elapsed_ms)),
                );
            }
            Event::Retrying { id, attempt } => {
                self.line(id, "retrying", "33", &format!("attempt {attempt}"))
            }
            Event::Committed {
                id,
                commit,
                auto,
                commits,
                files,
            } => {
                let how = if *auto {
                    ", leftovers auto-committed"
                } else {
                    ""
                };
                self.line(
                    id,
                    "committed",
                    "36",
                    &format!(
                        "{} ({commits} commit(s), {} file(s){how})",
                        short(commit),
                        files.len()
                    ),
                );
            }
            Event::ScopeCreep { id, paths } => self.line(
                id,
                "scope",
                "33",
                &format!("changed undeclared files: {}", list(paths)),
            ),
            Event::Failed { id, reason, log } => {
                self.line(id, "failed", "31", &format!("{reason} (log: {log})"))
            }
            Event::TimedOut { id, reason, log } => {
                self.line(id, "timed_out", "31", &format!("{reason} (log: {log})"))
            }
            Event::Unchanged { id, reason, log } => {
                self.line(id, "unchanged", "31", &format!("{reason} (log: {log})"))
            }
            Event::Merged {
                id,
                commit,
                strategy,
            } => self.line(
                id,
                "merged",
                "32",
                &format!("{} ({})", short(commit), strategy.as_str()),
            ),
            Event::Conflicted { id, paths } => self.line(
                id,
                "conflicted",
                "31",
                // Kept, or handed back to its agent: the next event says which.
                &list(paths),
            ),
            Event::Refused { id, reason, log } => {
                let log = log
                    .as_ref()
                    .map(|l| format!(" (log: {l})"))
                    .unwrap_or_default();
                self.line(id, "refused", "31", &format!("{reason}{log}"))
            }
            Event::Skipped { id, reason } => self.line(id, "skipped", "33", reason),
            Event::Pruned { id } => self.line(id, "pruned", "2", "worktree and branch removed"),
            Event::Kept {
                id,
                branch,
                worktree,
                reason,
            } => self.line(
                id,
                "kept",
                "33",
                &format!("{branch} at {worktree}: {reason}"),
            ),
            Event::Warning { id, message } => self.line(id, "warning", "33", message),
            Event::Interrupted { run_id, resume } => {
                self.erase_live();
                let _ = writeln!(
                    self.out,
                    "run {run_id} interrupted; worktrees kept. resume with: {resume}"
                );
            }
            Event::Summary(_) => {}
            Event::RateLimited {
                id,
                attempt,
                kind,
                signal,
                backoff_ms,
                wait,
                ..
            } => self.line(
                id,
                "rate_limited",
                "33",
                &format!(
                    "attempt {attempt} {}: {signal}; starts again in {} (wait {wait}, no retry used)",
                    kind.as_str(),
                    format_duration(*backoff_ms)
                ),
            ),
            Event::Concurrency { limit, max } => {
                self.erase_live();
                let _ = writeln!(self.out, "treefarm: concurrency limit now {limit} of {max}");
            }
            Event::Usage { .. } => {}
            Event::BudgetReached { message, .. } => {
                self.erase_live();
                let _ = writeln!(self.out, "treefarm: {message}");
            }
            Event::Batch {
                batch, ids, tip, ..
            } => {
                self.erase_live();
                let _ = writeln!(
                    self.out,
                    "merge queue: batch {batch} built at {}: {}",
                    short(tip),
                    list(ids)
                );
            }
            Event::GateStarted {
                batch,
                prefix,
                commit,
                ..
            } => {
                self.erase_live();
                let _ = writeln!(
                    self.out,
                    "merge queue: gate on batch {batch} prefix {prefix} ({}) started",
                    short(commit)
                );
            }
            Event::GatePassed {
                batch,
                prefix,
                elapsed_ms,
                ..
            } => {
                self.erase_live();
                let _ = writeln!(
                    self.out,
                    "merge queue: gate on batch {batch} prefix {prefix} passed after {}",
                    format_duration(*elapsed_ms)
                );
            }
            Event::GateFailed {
                batch,
                prefix,
                elapsed_ms,
                log,
                reason,
                ..
            } => {
                self.erase_live();
                let why = reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
                let _ = writeln!(
                    self.out,
                    "merge queue: gate on batch {batch} prefix {prefix} failed after {}{why} (log: {log})",
                    format_duration(*elapsed_ms)
                );
            }
            Event::GateCouldNotRun {
                batch,
                prefix,
                cause,
                hint,
                ..
            } => {
                self.erase_live();
                let _ = writeln!(
                    self.out,
                    "merge queue: the gate on batch {batch} prefix {prefix} could not run: {cause}\nhint: {hint}"
                );
            }
            Event::Bisect { batch, good, bad } => {
                self.erase_live();
                let _ = writeln!(
                    self.out,
                    "merge queue: bisecting batch {batch}: prefix {good} passes, {bad} fails"
                );
            }
            Event::Resolving { id, attempt, paths } => self.line(
                id,
                "resolving",
                "33",
                &format!(
                    "attempt {attempt}: agent resolves conflicts in {}",
                    list(paths)
                ),
            ),
        }
        let _ = self.out.flush();
    }

    fn refresh(&mut self, run: &RunRecord, now_ms: u64) {
        if !self.live || self.finished {
            return;
        }
        if self.drawn > 0 && now_ms.saturating_sub(self.shown_at_ms) < REDRAW_EVERY_MS {
            return;
        }
        let (columns, rows) = self.terminal_size();
        let recent: Vec<String> = self.recent.iter().cloned().collect();
        let width = columns.saturating_sub(1).max(1);
        let block: Vec<String> = live_block(run, now_ms, rows.saturating_sub(1).max(1), &recent)
            .into_iter()
            .map(|line| line.chars().take(width).collect())
            .collect();
        self.shown_at_ms = now_ms;
        if self.drawn > 0 && block == self.shown {
            return;
        }
        self.erase_live();
        for line in &block {
            let _ = writeln!(self.out, "{}", self.paint("2", line));
        }
        self.drawn = block.len();
        self.shown = block;
        let _ = self.out.flush();
    }

    fn finish(&mut self, run: &RunRecord, summary: &Summary) {
        self.erase_live();
        self.finished = true;
        let _ = writeln!(self.out);
        let _ = writeln!(
            self.out,
            "  {:<8} {:<11} {:>8} {:>7} {:>5}  log / reason",
            "spec", "result", "time", "commits", "files"
        );
        for inst in &run.instances {
            let time = match (inst.started_at_ms, inst.ended_at_ms) {
                (Some(s), Some(e)) => format_duration(e.saturating_sub(s)),
                _ => "-".into(),
            };
            let detail = match inst.state {
                InstanceState::Conflicted => format!("conflict: {}", list(&inst.conflict_paths)),
                _ => match (&inst.reason, &inst.denied) {
                    (Some(reason), _) => reason.clone(),
                    (None, Some(denied)) => format!("{denied}; log: {}", inst.log_path),
                    (None, None) => inst.log_path.clone(),
                },
            };
            let color = match inst.state {
                InstanceState::Merged | InstanceState::Pruned | InstanceState::Succeeded => "32",
                InstanceState::Skipped | InstanceState::Pending => "33",
                _ => "31",
            };
            // Merged and cleaned up is, to the reader, merged.
            let shown = match inst.state {
                InstanceState::Pruned => "merged",
                other => other.as_str(),
            };
            let state = self.paint(color, &format!("{shown:<11}"));
            let _ = writeln!(
                self.out,
                "  {:<8} {state} {:>8} {:>7} {:>5}  {detail}",
                inst.id,
                time,
                inst.commits,
                inst.changed_files.len(),
            );
        }
        for inst in &run.instances {
            if matches!(
                inst.state,
                InstanceState::Failed | InstanceState::TimedOut | InstanceState::Unchanged
            ) {
                let tail = tail_lines(std::path::Path::new(&inst.log_path), 10);
                if !tail.is_empty() {
                    let _ = writeln!(self.out, "\n  --- last lines of {} ---", inst.log_path);
                    for l in tail {
                        let _ = writeln!(self.out, "  | {l}");
                    }
                }
            }
        }
        let _ = writeln!(
            self.out,
            "\n{} merged, {} conflicted, {} failed, {} refused, {} skipped{}{}; target `{}` at {}",
            summary.merged.len(),
            summary.conflicted.len(),
            summary.failed.len(),
            summary.refused.len(),
            summary.skipped.len(),
            // The words of the table above, not `failed` for all three.
            if summary.timed_out.is_empty() {
                String::new()
            } else {
                format!(", {} timed_out", summary.timed_out.len())
            },
            if summary.unchanged.is_empty() {
                String::new()
            } else {
                format!(", {} unchanged", summary.unchanged.len())
            },
            summary.target,
            summary.target_commit.as_deref().map(short).unwrap_or("-"),
        );
        // What the agents reported spending (their wrappers' usage.json).
        if let Some(run_dir) = run
            .instances
            .iter()
            .find_map(crate::report::usage::run_dir_of)
        {
            let usage = crate::report::usage::run_usage(&run_dir, run);
            if let Some(line) = crate::report::usage::usage_line(&usage) {
                let _ = writeln!(self.out, "{line}");
            }
        }
        for line in pacing_lines(run) {
            let _ = writeln!(self.out, "{line}");
        }
        if let Some(slurm) = &summary.slurm {
            let c = &slurm.calls;
            let _ = writeln!(
                self.out,
                "slurm: {} job(s), {} call(s) to the controller (sbatch {}, squeue {} in {} poll(s), scancel {}, scontrol {}, sinfo {})",
                slurm.jobs, slurm.total_calls, c.sbatch, c.squeue, slurm.polls, c.scancel, c.scontrol, c.sinfo
            );
        }
        let _ = self.out.flush();
    }
}

/// What pacing did in a run, for the end of its table and `status`: the
/// budget that stopped it, the concurrency limit and every backoff.
pub fn pacing_lines(run: &RunRecord) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(cause) = run.merge_queue.as_ref().and_then(|q| q.planner.stopped()) {
        lines.push(format!(
            "merge queue stopped: a gate could not run: {cause}; its branches stay `succeeded` — fix the cause, then `treefarm resume {}`",
            run.run_id
        ));
    }
    if let Some(reached) = &run.budget_reached {
        lines.push(format!(
            "budget: {reached}; the rest stays pending for `treefarm resume` with a larger budget"
        ));
    }
    let Some(pacing) = &run.pacing else {
        return lines;
    };
    if pacing.backoffs.is_empty() && pacing.window.limit() == pacing.window.max() {
        return lines;
    }
    lines.push(format!(
        "concurrency limit {} of {}; {} rate-limit backoff(s)",
        pacing.window.limit(),
        pacing.window.max(),
        pacing.backoffs.len()
    ));
    for b in &pacing.backoffs {
        lines.push(format!(
            "  {} attempt {}: {} ({}), waited {} (wait {}), limit {}",
            b.spec,
            b.attempt,
            b.cause.kind.as_str(),
            b.cause.evidence,
            format_duration(b.delay_ms),
            b.wait,
            b.limit
        ));
    }
    lines
}

/// The merge queue's batches in flight, one line each: its branches and
/// the prefixes under test with how long their gates have run.
fn queue_lines(q: &crate::merge_queue::QueueRecord, now_ms: u64) -> Vec<String> {
    q.planner
        .in_flight()
        .into_iter()
        .map(|(batch, branches, testing)| {
            let branches: Vec<String> = branches.iter().map(|b| b.to_string()).collect();
            let gates: Vec<String> = testing
                .iter()
                .map(|prefix| {
                    let elapsed = q
                        .gates
                        .iter()
                        .find(|g| g.batch == batch && g.prefix == *prefix && !g.cancelled)
                        .and_then(|g| g.started_at_ms)
                        .map(|s| format!(" {}", format_duration(now_ms.saturating_sub(s))))
                        .unwrap_or_else(|| " waiting".into());
                    format!("prefix {prefix}/{}{elapsed}", branches.len())
                })
                .collect();
            let testing = if gates.is_empty() {
                String::new()
            } else {
                format!("; gate on {}", gates.join(", "))
            };
            format!("  merge batch {batch}: {}{testing}", list(&branches))
        })
        .collect()
}

/// How many of the latest outcomes the live block names.
const RECENT: usize = 3;

/// The least time between two redraws of an unchanged screen: what arrives
/// faster is drawn at the next refresh.
const REDRAW_EVERY_MS: u64 = 200;

/// One running (or starting) instance's line of the live block: the one
/// place that formats it.
fn instance_line(inst: &InstanceRecord, now_ms: u64) -> String {
    let elapsed = inst
        .started_at_ms
        .map(|s| format_duration(now_ms.saturating_sub(s)))
        .unwrap_or_default();
    let progress = inst
        .progress
        .map(|p| format!("{p:>3}%"))
        .unwrap_or_else(|| "    ".into());
    let message = match inst.retry_at_ms {
        Some(at) => format!(
            "rate-limited: starts again in {}",
            format_duration(at.saturating_sub(now_ms))
        ),
        None => inst.message.clone().unwrap_or_default(),
    };
    // `executor: slurm`: the job's state, and while pending why.
    let message = match &inst.job {
        Some(job) => format!("[{}] {message}", job.describe(now_ms)),
        None => message,
    };
    format!(
        "  {:<8} {:<11} {:>7} {progress} attempt {} {}",
        inst.id,
        inst.state.as_str(),
        elapsed,
        inst.attempt,
        message.chars().take(60).collect::<String>()
    )
}

/// Counts by name in first-seen order (a handful of names: a short list
/// beats a map).
#[derive(Default)]
struct Tally(Vec<(&'static str, usize)>);

impl Tally {
    fn add(&mut self, name: &'static str) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => self.0.push((name, 1)),
        }
    }

    fn total(&self) -> usize {
        self.0.iter().map(|(_, c)| c).sum()
    }

    fn parts(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(n, c)| format!("{c} {n}")).collect();
        parts.join(", ")
    }
}

/// The lines of the live block, at most `max_lines` (at least 1): the
/// running instances (one line each, as many as fit, then `+N more
/// running`), the merge queue, then counts — finished by outcome, waiting
/// (to start, on dependencies) — and the `recent` outcomes (newest last).
/// One pass over the instances and at most `max_lines` lines formatted,
/// however many instances the run has.
pub fn live_block(
    run: &RunRecord,
    now_ms: u64,
    max_lines: usize,
    recent: &[String],
) -> Vec<String> {
    let max_lines = max_lines.max(1);
    let no_merge = run.no_merge();
    let mut active: Vec<&InstanceRecord> = Vec::new();
    let mut merging: Vec<&str> = Vec::new();
    let mut queued: Vec<&str> = Vec::new();
    let mut done = Tally::default();
    let mut pending: Vec<&InstanceRecord> = Vec::new();
    let mut backing_off = 0;
    for inst in &run.instances {
        backing_off += usize::from(inst.retry_at_ms.is_some());
        match inst.state {
            InstanceState::Creating | InstanceState::Created | InstanceState::Running => {
                active.push(inst)
            }
            InstanceState::Merging => merging.push(&inst.id),
            InstanceState::Succeeded if !no_merge => queued.push(&inst.id),
            InstanceState::Pending => pending.push(inst),
            // Merged and cleaned up is, to the reader, merged.
            InstanceState::Pruned => done.add("merged"),
            other => done.add(other.as_str()),
        }
    }
    let mut summary = Vec::new();
    if let Some(q) = &run.merge_queue {
        summary.extend(queue_lines(q, now_ms));
    }
    if !merging.is_empty() || !queued.is_empty() {
        // The merge lane: the one merging, then those waiting for it.
        let queue: Vec<String> = merging
            .iter()
            .map(|id| format!("{id} (merging)"))
            .chain(queued.iter().take(8).map(|id| id.to_string()))
            .collect();
        let more = queued.len().saturating_sub(8);
        let more = if more > 0 {
            format!(" (+{more} more)")
        } else {
            String::new()
        };
        summary.push(format!("  merge queue: {}{more}", queue.join(", ")));
    }
    if done.total() > 0 {
        summary.push(format!("  {} finished ({})", done.total(), done.parts()));
    }
    if !pending.is_empty() {
        let on_deps = on_dependencies(run, &pending);
        summary.push(if on_deps == 0 {
            format!("  {} waiting", pending.len())
        } else {
            format!(
                "  {} waiting ({} to start, {on_deps} on dependencies)",
                pending.len(),
                pending.len() - on_deps
            )
        });
    }
    if let Some(pacing) = &run.pacing {
        if pacing.window.limit() < pacing.window.max() || backing_off > 0 {
            summary.push(format!(
                "  concurrency limit {} of {}, {backing_off} backing off",
                pacing.window.limit(),
                pacing.window.max()
            ));
        }
    }
    if !recent.is_empty() {
        summary.push(format!("  recent: {}", recent.join(", ")));
    }
    // Counts win over individual lines: they stand for everything.
    let summary_room = summary.len().min(max_lines);
    summary.truncate(summary_room);
    let room = max_lines - summary_room;
    let shown = if active.len() > room {
        room.saturating_sub(1)
    } else {
        active.len()
    };
    let mut lines: Vec<String> = active[..shown]
        .iter()
        .map(|inst| instance_line(inst, now_ms))
        .collect();
    if shown < active.len() && room > 0 {
        lines.push(format!("  +{} more running", active.len() - shown));
    }
    lines.extend(summary);
    lines
}

/// How many of the `pending` instances wait for a spec they depend on that
/// is in the run and not merged yet.
fn on_dependencies(run: &RunRecord, pending: &[&InstanceRecord]) -> usize {
    let Some(opts) = run.opts() else {
        return 0;
    };
    let deps: std::collections::HashMap<&str, &[String]> = opts
        .specs
        .iter()
        .filter(|s| !s.depends_on.is_empty())
        .map(|s| (s.id.as_str(), s.depends_on.as_slice()))
        .collect();
    if deps.is_empty() {
        return 0;
    }
    let unmerged: std::collections::HashSet<&str> = run
        .instances
        .iter()
        .filter(|i| !matches!(i.state, InstanceState::Merged | InstanceState::Pruned))
        .map(|i| i.id.as_str())
        .collect();
    pending
        .iter()
        .filter(|inst| {
            deps.get(inst.id.as_str())
                .is_some_and(|d| d.iter().any(|d| unmerged.contains(d.as_str())))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Screen(Arc<Mutex<Vec<u8>>>);

    impl Write for Screen {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("screen").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Screen {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.lock().expect("screen"))).expect("utf8")
        }
    }

    fn run_with(states: &[(InstanceState, usize)]) -> RunRecord {
        let mut instances = Vec::new();
        for (state, n) in states {
            for _ in 0..*n {
                instances.push(InstanceRecord {
                    id: format!("{:03}", instances.len()),
                    state: *state,
                    attempt: 1,
                    started_at_ms: Some(0),
                    message: Some("x".repeat(200)),
                    ..InstanceRecord::default()
                });
            }
        }
        RunRecord {
            instances,
            ..RunRecord::default()
        }
    }

    #[test]
    fn live_view_status_and_summary_show_the_limit_and_every_backoff() {
        use crate::agents::{RateLimitKind, RateLimited};
        use crate::policy::pacing::{Pacer, PacingPolicy};
        let mut run = run_with(&[(InstanceState::Running, 2), (InstanceState::Pending, 1)]);
        let mut pacer = Pacer::new(
            PacingPolicy {
                instances: 4,
                start_interval: Duration::ZERO,
                max_backoff: Duration::from_secs(60),
                max_waits: 5,
            },
            1,
        );
        let cause = RateLimited {
            kind: RateLimitKind::Overloaded,
            evidence: "API Error: 529 overloaded_error".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        pacer.rate_limited_attempt("000", 1, cause, 1_000);
        run.pacing = Some(pacer);
        run.instances[0].retry_at_ms = Some(3_000);
        let live = live_block(&run, 1_000, 10, &[]).join("\n");
        assert!(
            live.contains("rate-limited: starts again in 2.0s"),
            "{live}"
        );
        assert!(
            live.contains("concurrency limit 2 of 4, 1 backing off"),
            "{live}"
        );
        let lines = pacing_lines(&run);
        assert_eq!(
            lines[0],
            "concurrency limit 2 of 4; 1 rate-limit backoff(s)"
        );
        assert!(
            lines[1].contains("000 attempt 1: overloaded (API Error: 529 overloaded_error), waited 2.0s (wait 1), limit 2"),
            "{lines:?}"
        );
        assert_eq!(lines.len(), 2);
        // Nothing paced: nothing said.
        assert!(pacing_lines(&run_with(&[(InstanceState::Merged, 1)])).is_empty());
    }

    #[test]
    fn live_view_fits_the_screen_with_many_instances() {
        let run = run_with(&[
            (InstanceState::Running, 40),
            (InstanceState::Merging, 1),
            (InstanceState::Succeeded, 3),
            (InstanceState::Pruned, 20),
            (InstanceState::Conflicted, 2),
            (InstanceState::Pending, 30),
        ]);
        for rows in [1, 2, 3, 5, 10, 24, 200] {
            let screen = Screen::default();
            let mut r =
                HumanReporter::new(Box::new(screen.clone()), false, true).with_size(50, rows);
            r.refresh(&run, 1000);
            let out = screen.take();
            let lines: Vec<&str> = out.lines().collect();
            assert!(lines.len() < rows.max(2), "{rows} rows: {out}");
            assert!(lines.iter().all(|l| l.chars().count() < 50), "{out}");
            if rows >= 5 {
                assert!(
                    out.contains("merge queue: 040 (merging), 041, 042, 043"),
                    "{out}"
                );
                assert!(
                    out.contains("22 finished (20 merged, 2 conflicted)"),
                    "{out}"
                );
                assert!(out.contains("30 waiting"), "{out}");
            }
            if rows == 10 {
                assert!(out.contains("more running"), "{out}");
                // 9 lines: 6 running, "... more", queue, finished, waiting.
                assert_eq!(lines.len(), 9, "{out}");
            }
            if rows == 200 {
                assert_eq!(lines.len(), 40 + 3, "{out}");
            }
        }
    }

    #[test]
    fn live_view_shows_the_merge_queue_batch_prefix_under_test_and_gate_elapsed() {
        use crate::merge_queue::{Built, GateRun, Input, QueueConfig, QueueRecord};
        let mut q = QueueRecord::new(QueueConfig {
            batch: 8,
            gate_jobs: 1,
            gated: true,
        });
        let ids = ["a", "b", "c"].map(String::from);
        q.planner.handle(Input::Ready(ids.to_vec()));
        q.planner.handle(Input::Built {
            batch: 1,
            base: "b0".into(),
            results: ids
                .iter()
                .map(|id| Built::Merged {
                    branch: id.clone(),
                    commit: format!("c-{id}"),
                })
                .collect(),
        });
        q.gates.push(GateRun {
            run: 1,
            batch: 1,
            prefix: 3,
            commit: "c-c".into(),
            ids: ids.to_vec(),
            log: "gate.log".into(),
            slot: Some(0),
            started_at_ms: Some(1_000),
            cancelled: false,
        });
        let mut run = run_with(&[(InstanceState::Succeeded, 3)]);
        run.merge_queue = Some(q);
        let lines = live_block(&run, 4_000, 24, &[]);
        let expected = format!(
            "  merge batch 1: a, b, c; gate on prefix 3/3 {}",
            format_duration(3_000)
        );
        assert!(lines.contains(&expected), "{lines:?}");
    }

    #[test]
    fn nothing_live_is_drawn_after_the_final_table() {
        let run = run_with(&[(InstanceState::Running, 2), (InstanceState::Pruned, 1)]);
        let screen = Screen::default();
        let mut r = HumanReporter::new(Box::new(screen.clone()), false, true).with_size(80, 24);
        r.refresh(&run, 1000);
        let live = screen.take();
        assert_eq!(live.lines().count(), 3, "{live}");
        r.finish(&run, &Summary::default());
        let table = screen.take();
        // The block is erased (cursor up 3, clear) before the table.
        assert!(table.starts_with("\x1b[3F\x1b[J"), "{table:?}");
        r.refresh(&run, 2000);
        r.event(&Event::Pruned { id: "000".into() });
        let after = screen.take();
        assert!(!after.contains("running"), "{after:?}");
        assert!(!after.contains("\x1b[3F"), "{after:?}");
        assert!(table.ends_with('\n') && after.ends_with('\n'));
    }

    /// A run of `n` instances as a big run looks mid-way: one in 30 (at
    /// least 4) starting or running, with progress and a message, as on a
    /// cluster; one merging and up to 40 queued behind it; a fifth waiting
    /// (a third of them on a spec not merged yet); the rest finished — most
    /// merged, some failed or conflicted.
    fn big_run(n: usize) -> RunRecord {
        let mut specs = Vec::new();
        let mut instances = Vec::new();
        let running = (n / 30).max(4);
        for i in 0..n {
            let id = format!("{i:04}");
            let state = match i {
                _ if i < n / 5 => InstanceState::Pending,
                _ if i < n / 5 + running => {
                    [InstanceState::Running, InstanceState::Creating][i % 2]
                }
                _ if i == n / 5 + running => InstanceState::Merging,
                _ if i <= n / 5 + running + (n / 50).min(40) => InstanceState::Succeeded,
                _ if i % 17 == 0 => InstanceState::Failed,
                _ if i % 23 == 0 => InstanceState::Conflicted,
                _ if i % 2 == 0 => InstanceState::Merged,
                _ => InstanceState::Pruned,
            };
            let running = matches!(state, InstanceState::Running | InstanceState::Creating);
            instances.push(InstanceRecord {
                id: id.clone(),
                state,
                attempt: 1,
                started_at_ms: running.then_some(1_000 * i as u64 % 50_000),
                progress: (state == InstanceState::Running).then_some((i % 100) as u8),
                message: running.then(|| format!("working on {id}")),
                ..InstanceRecord::default()
            });
            // Every third waiting spec depends on the first running one.
            let depends_on = if i < n / 5 && i % 3 == 0 {
                vec![format!("{:04}", n / 5)]
            } else {
                Vec::new()
            };
            specs.push(crate::spec::Spec {
                id,
                title: String::new(),
                priority: i as i64,
                path: Default::default(),
                rel_path: String::new(),
                files: Vec::new(),
                shared: Vec::new(),
                depends_on,
                body: String::new(),
                order: i,
                sources: Vec::new(),
                slurm: None,
            });
        }
        RunRecord {
            instances,
            options: crate::state::RunOptions {
                specs,
                ..Default::default()
            }
            .into(),
            ..RunRecord::default()
        }
    }

    /// What a 24-row terminal shows of [`big_run`] after three outcomes.
    fn big_screen(n: usize) -> String {
        let screen = Screen::default();
        let mut r = HumanReporter::new(Box::new(screen.clone()), false, true).with_size(100, 24);
        for event in [
            Event::Pruned { id: "0901".into() },
            Event::Skipped {
                id: "0902".into(),
                reason: "dependency failed".into(),
            },
            Event::Conflicted {
                id: "0903".into(),
                paths: vec!["a".into()],
            },
            Event::Merged {
                id: "0904".into(),
                commit: "c0ffee".into(),
                strategy: crate::config::Strategy::Merge,
            },
        ] {
            r.event(&event);
        }
        screen.take();
        r.refresh(&big_run(n), 60_000);
        screen.take()
    }

    #[test]
    fn live_view_of_ten_instances_names_each_running_one_and_counts_the_rest() {
        insta::assert_snapshot!(big_screen(10));
    }

    #[test]
    fn live_view_of_two_thousand_instances_fits_the_screen_with_counts_by_state() {
        let out = big_screen(2_000);
        assert!(out.lines().count() < 24, "{out}");
        insta::assert_snapshot!(out);
    }

    #[test]
    fn live_view_redraws_nothing_unchanged_and_not_sooner_than_its_interval() {
        let run = big_run(2_000);
        let screen = Screen::default();
        let mut r = HumanReporter::new(Box::new(screen.clone()), false, true).with_size(100, 24);
        r.refresh(&run, 60_000);
        assert!(screen.take().contains("more running"));
        // Within the interval: nothing, although the elapsed times moved.
        r.refresh(&run, 60_000 + REDRAW_EVERY_MS - 1);
        assert_eq!(screen.take(), "");
        // Nothing running: the same block again is not written again.
        let mut still = run.clone();
        for inst in &mut still.instances {
            if inst.started_at_ms.is_some() {
                inst.state = InstanceState::Pending;
            }
        }
        r.refresh(&still, 61_000);
        let drawn = screen.take();
        assert!(!drawn.contains("more running"), "{drawn}");
        r.refresh(&still, 62_000);
        assert_eq!(screen.take(), "");
        // An event line erases the block: the next refresh draws it anew.
        r.event(&Event::Pruned { id: "0001".into() });
        assert!(screen.take().contains("pruned"));
        r.refresh(&still, 62_001);
        let redrawn = screen.take();
        assert!(
            !redrawn.is_empty() && drawn.ends_with(&redrawn),
            "{redrawn:?}"
        );
        assert!(
            !redrawn.contains('\x1b'),
            "nothing left to erase: {redrawn:?}"
        );
    }
}
