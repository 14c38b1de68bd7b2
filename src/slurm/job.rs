//! One attempt's job: its name (unique to run, spec and attempt, so that a
//! job submitted just before a crash is found again by name), the `sbatch`
//! argv that submits it, and the job id `sbatch --parsable` answers.

use std::ffi::OsString;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::SlurmConfig;
use super::timefmt::format_time_limit;

/// A Slurm job id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a job runs for its spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// The agent's attempt at the spec.
    Attempt,
    /// An attempt at resolving the spec's merge conflict (the hand-back).
    Resolve,
    /// The start-up check that `worktree_dir` is shared with the nodes (its
    /// "spec" part is [`STORAGE_CHECK`], never a spec).
    Check,
    /// A merge-queue gate run (`slurm.gates: true`): `treefarm:<run>:gate:<n>`,
    /// `n` the gate run's number in the run; its "spec" part is [`GATE`],
    /// and its tail has no kind letter, so no spec's attempt shares it.
    Gate,
}

/// The spec part of the storage check's job name (`treefarm:<run>:storage:c1`);
/// the kind letter keeps it apart from a spec called `storage`.
pub const STORAGE_CHECK: &str = "storage";

/// The spec part of a gate run's job name (`treefarm:<run>:gate:3`).
pub const GATE: &str = "gate";

impl JobKind {
    /// The letter before the number; none for a gate run.
    fn letter(self) -> &'static str {
        match self {
            JobKind::Attempt => "a",
            JobKind::Resolve => "r",
            JobKind::Check => "c",
            JobKind::Gate => "",
        }
    }
}

/// `treefarm:<run>:<spec>:<kind><n>`, e.g. `treefarm:20261206-220000-3f2a:020-api:a1`
/// (a gate run: `treefarm:<run>:gate:<n>`).
/// Run ids and spec ids never contain `:` (nor `,`, which separates names
/// in `squeue --name`), so the name parses back into its parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobName {
    pub run: String,
    pub spec: String,
    pub kind: JobKind,
    /// The attempt's number, from 1.
    pub number: u32,
}

const PREFIX: &str = "treefarm";

impl JobName {
    pub fn new(run: &str, spec: &str, kind: JobKind, number: u32) -> JobName {
        JobName {
            run: run.to_string(),
            spec: spec.to_string(),
            kind,
            number,
        }
    }

    /// The job of gate run `number` of run `run`.
    pub fn gate(run: &str, number: u32) -> JobName {
        JobName::new(run, GATE, JobKind::Gate, number)
    }

    /// The last part of the name (`a1`, `r2`, `c1`; `g3` for gate run 3),
    /// which names the job's files beside its attempt.
    pub fn tag(&self) -> String {
        match self.kind {
            JobKind::Gate => format!("g{}", self.number),
            kind => format!("{}{}", kind.letter(), self.number),
        }
    }

    /// The inverse of `Display`; `None` for a name treefarm did not make.
    pub fn parse(name: &str) -> Option<JobName> {
        let mut parts = name.split(':');
        let (prefix, run, spec, tail) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if prefix != PREFIX || parts.next().is_some() || !is_id(run) || !is_id(spec) {
            return None;
        }
        let (kind, digits) = match tail.split_at(tail.find(|c: char| c.is_ascii_digit())?) {
            ("a", digits) => (JobKind::Attempt, digits),
            ("r", digits) => (JobKind::Resolve, digits),
            ("c", digits) => (JobKind::Check, digits),
            ("", digits) if spec == GATE => (JobKind::Gate, digits),
            _ => return None,
        };
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return None;
        }
        let number = digits.parse().ok()?;
        Some(JobName {
            run: run.to_string(),
            spec: spec.to_string(),
            kind,
            number,
        })
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}:{}:{}:{}{}",
            self.run,
            self.spec,
            self.kind.letter(),
            self.number
        )
    }
}

/// Run ids and spec ids: ASCII letters, digits, `-`, `_`, `.`.
fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What one attempt's job is, besides the `slurm:` settings.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub name: &'a JobName,
    /// The wrapper script the job runs.
    pub script: &'a Path,
    /// The spec's worktree: the job's working directory.
    pub workdir: &'a Path,
    /// The job's own log (the wrapper's stdout and stderr).
    pub log: &'a Path,
    /// The agent timeout, for the default `--time`.
    pub agent_timeout: Option<Duration>,
}

/// How long before the time limit Slurm signals the wrapper (`--signal`),
/// so that the agent is stopped and the exit file written before the kill.
pub const SIGNAL_LEAD: Duration = Duration::from_secs(60);

/// The `sbatch` argv (without the program) that submits `attempt`. The
/// verbatim `extra_args` come first so that treefarm's own flags, which come
/// after, would win even if one slipped past validation (the last of a
/// repeated option counts).
pub fn sbatch_args(config: &SlurmConfig, attempt: &Attempt<'_>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--parsable".into()];
    args.extend(config.extra_args.iter().map(OsString::from));
    if let Some(p) = &config.partition {
        args.push(format!("--partition={p}").into());
    }
    if let Some(t) = config.time_limit(attempt.agent_timeout) {
        args.push(format!("--time={}", format_time_limit(t)).into());
    }
    if let Some(c) = config.cpus {
        args.push(format!("--cpus-per-task={c}").into());
    }
    if let Some(m) = config.mem {
        args.push(format!("--mem={}M", m.megabytes).into());
    }
    if let Some(a) = &config.account {
        args.push(format!("--account={a}").into());
    }
    if let Some(q) = &config.qos {
        args.push(format!("--qos={q}").into());
    }
    args.push(
        if config.requeue {
            "--requeue"
        } else {
            "--no-requeue"
        }
        .into(),
    );
    args.push(format!("--job-name={}", attempt.name).into());
    args.push(flag_path("--output=", attempt.log));
    args.push("--open-mode=append".into());
    args.push(flag_path("--chdir=", attempt.workdir));
    args.push(format!("--signal=B:TERM@{}", SIGNAL_LEAD.as_secs()).into());
    args.push("--export=ALL".into());
    args.push(attempt.script.as_os_str().to_owned());
    args
}

/// The `sbatch` argv of the storage check: one short job (one CPU, one
/// minute, where the attempts would run: `partition`, `account`, `qos`,
/// `extra_args`) that finds `marker`, which the coordinator wrote, and
/// writes `reply` beside it, which the coordinator must then see — both
/// directions the exit file and the worktree need. The reply is `seen`,
/// then what `<treefarm> --version` answered on the node (or the shell's
/// error), written whole with a rename ([`check_reply`] reads it).
/// `--wait`: `sbatch` returns when the job ended, with its exit status (no
/// `squeue`, which lists only the submitting user's jobs).
pub fn storage_check_args(
    config: &SlurmConfig,
    name: &JobName,
    marker: &Path,
    reply: &Path,
    treefarm: &Path,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--parsable".into(), "--wait".into()];
    args.extend(config.extra_args.iter().map(OsString::from));
    if let Some(p) = &config.partition {
        args.push(format!("--partition={p}").into());
    }
    if let Some(a) = &config.account {
        args.push(format!("--account={a}").into());
    }
    if let Some(q) = &config.qos {
        args.push(format!("--qos={q}").into());
    }
    args.push("--time=1".into());
    args.push("--cpus-per-task=1".into());
    args.push("--no-requeue".into());
    args.push(format!("--job-name={name}").into());
    args.push("--output=/dev/null".into());
    let quote = |p: &Path| crate::agents::shell_quote(&p.to_string_lossy());
    let partial = reply.with_extension("partial");
    args.push(
        format!(
            "--wrap=test -e {m} && {{ {{ echo seen; {t} --version 2>&1; }} > {p}; mv {p} {r}; }}",
            m = quote(marker),
            t = quote(treefarm),
            p = quote(&partial),
            r = quote(reply),
        )
        .into(),
    );
    args
}

/// What the storage check's reply says `treefarm --version` answered on
/// the node: the lines after `seen`, trimmed; `None` when the reply is not
/// one (the job did not see the marker).
pub fn check_reply(reply: &str) -> Option<String> {
    let mut lines = reply.lines();
    if lines.next()?.trim() != "seen" {
        return None;
    }
    Some(lines.collect::<Vec<_>>().join("\n").trim().to_string())
}

fn flag_path(flag: &str, path: &Path) -> OsString {
    let mut s = OsString::from(flag);
    s.push(path.as_os_str());
    s
}

/// The job id in `sbatch --parsable`'s answer: `<id>` or `<id>;<cluster>`
/// on its first line.
pub fn parse_parsable(stdout: &str) -> Result<JobId, String> {
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let id = line.split(';').next().unwrap_or("");
    id.parse::<u64>()
        .map(JobId)
        .map_err(|_| format!("no job id (expected `<id>` or `<id>;<cluster>`, got `{line}`)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::config::MemSize;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter()
            .map(|a| a.into_string().expect("utf-8"))
            .collect()
    }

    #[test]
    fn the_storage_check_is_named_apart_from_a_spec_called_storage() {
        let check = JobName::new("r1", STORAGE_CHECK, JobKind::Check, 1);
        let spec = JobName::new("r1", "storage", JobKind::Attempt, 1);
        assert_eq!(check.to_string(), "treefarm:r1:storage:c1");
        assert_eq!(
            JobName::parse("treefarm:r1:storage:c1"),
            Some(check.clone())
        );
        assert_ne!(check.to_string(), spec.to_string());
    }

    #[test]
    fn the_storage_check_waits_runs_where_attempts_run_and_quotes_its_paths() {
        let config = SlurmConfig {
            partition: Some("gpu".into()),
            cpus: Some(8),
            extra_args: vec!["--gres=gpu:1".into()],
            ..SlurmConfig::default()
        };
        let name = JobName::new("r1", STORAGE_CHECK, JobKind::Check, 1);
        let args = strings(storage_check_args(
            &config,
            &name,
            Path::new("/shared/it's/m"),
            Path::new("/shared/it's/m.seen"),
            Path::new("/opt/tree farm"),
        ));
        assert_eq!(
            args,
            [
                "--parsable",
                "--wait",
                "--gres=gpu:1",
                "--partition=gpu",
                "--time=1",
                "--cpus-per-task=1",
                "--no-requeue",
                "--job-name=treefarm:r1:storage:c1",
                "--output=/dev/null",
                "--wrap=test -e '/shared/it'\\''s/m' && { { echo seen; '/opt/tree farm' --version 2>&1; } > '/shared/it'\\''s/m.partial'; mv '/shared/it'\\''s/m.partial' '/shared/it'\\''s/m.seen'; }",
            ]
        );
    }

    #[test]
    fn the_check_reply_carries_what_the_nodes_treefarm_answered() {
        assert_eq!(
            check_reply("seen\ntreefarm 0.1.0\n").as_deref(),
            Some("treefarm 0.1.0")
        );
        assert_eq!(
            check_reply("seen\nsh: 1: /x/treefarm: not found\n").as_deref(),
            Some("sh: 1: /x/treefarm: not found")
        );
        assert_eq!(check_reply("seen\n").as_deref(), Some(""));
        assert_eq!(check_reply(""), None);
        assert_eq!(check_reply("treefarm 0.1.0\n"), None);
    }

    #[test]
    fn job_names_round_trip() {
        for (kind, n) in [(JobKind::Attempt, 1), (JobKind::Resolve, 12)] {
            let name = JobName::new("20261206-220000-3f2a", "020-api.v2_x", kind, n);
            let text = name.to_string();
            assert!(!text.contains(','), "{text}");
            assert_eq!(JobName::parse(&text), Some(name));
        }
        assert_eq!(
            JobName::new("r1", "020", JobKind::Attempt, 3).to_string(),
            "treefarm:r1:020:a3"
        );
    }

    #[test]
    fn gate_jobs_are_named_by_their_run_apart_from_a_spec_called_gate() {
        let gate = JobName::gate("r1", 3);
        assert_eq!(gate.to_string(), "treefarm:r1:gate:3");
        assert_eq!(gate.tag(), "g3");
        assert_eq!(JobName::parse("treefarm:r1:gate:3"), Some(gate.clone()));
        let spec = JobName::new("r1", GATE, JobKind::Attempt, 3);
        assert_eq!(spec.to_string(), "treefarm:r1:gate:a3");
        assert_eq!(spec.tag(), "a3");
        assert_eq!(JobName::parse("treefarm:r1:gate:a3"), Some(spec));
        // Only the gate's own spec part goes without a kind letter.
        assert_eq!(JobName::parse("treefarm:r1:020:3"), None);
        assert_eq!(JobName::parse("treefarm:r1:gate:03"), None);
    }

    #[test]
    fn names_treefarm_did_not_make_do_not_parse() {
        for other in [
            "wrap",
            "treefarm:r1:020",
            "treefarm:r1:020:a",
            "treefarm:r1:020:a01",
            "treefarm:r1:020:x1",
            "treefarm:r1:020:a1:extra",
            "treefarm::020:a1",
            "treefarm:r 1:020:a1",
            "slurm:r1:020:a1",
            "treefarm:r1:020:a99999999999",
        ] {
            assert_eq!(JobName::parse(other), None, "{other}");
        }
    }

    #[test]
    fn the_argv_of_an_attempt() {
        let name = JobName::new("r1", "020", JobKind::Attempt, 2);
        let attempt = Attempt {
            name: &name,
            script: Path::new("/shared/run/020/job.sh"),
            workdir: Path::new("/shared/wt/020"),
            log: Path::new("/shared/run/020/job-2.log"),
            agent_timeout: Some(Duration::from_secs(1800)),
        };
        let config = SlurmConfig {
            partition: Some("cpu".into()),
            cpus: Some(8),
            mem: Some(MemSize { megabytes: 4096 }),
            account: Some("proj".into()),
            qos: Some("high".into()),
            extra_args: vec!["--gres=gpu:1".into()],
            ..SlurmConfig::default()
        };
        assert_eq!(
            strings(sbatch_args(&config, &attempt)),
            [
                "--parsable",
                "--gres=gpu:1",
                "--partition=cpu",
                "--time=35",
                "--cpus-per-task=8",
                "--mem=4096M",
                "--account=proj",
                "--qos=high",
                "--no-requeue",
                "--job-name=treefarm:r1:020:a2",
                "--output=/shared/run/020/job-2.log",
                "--open-mode=append",
                "--chdir=/shared/wt/020",
                "--signal=B:TERM@60",
                "--export=ALL",
                "/shared/run/020/job.sh",
            ]
        );
        // Nothing set: only what treefarm owns, and no --time without a
        // timeout to derive it from.
        let bare = Attempt {
            agent_timeout: None,
            ..attempt
        };
        let config = SlurmConfig {
            requeue: true,
            ..SlurmConfig::default()
        };
        let args = strings(sbatch_args(&config, &bare));
        assert!(!args.iter().any(|a| a.starts_with("--time")), "{args:?}");
        assert!(args.contains(&"--requeue".to_string()), "{args:?}");
        assert_eq!(
            args.last().map(String::as_str),
            Some("/shared/run/020/job.sh")
        );
    }

    #[test]
    fn parsable_answers() {
        assert_eq!(parse_parsable("42\n"), Ok(JobId(42)));
        assert_eq!(parse_parsable("42;cluster2\n"), Ok(JobId(42)));
        assert_eq!(parse_parsable("\n 7 \n"), Ok(JobId(7)));
        let err = parse_parsable("Submitted batch job 42\n").expect_err("not parsable");
        assert!(err.contains("Submitted batch job 42"), "{err}");
        assert!(parse_parsable("").is_err());
    }
}
