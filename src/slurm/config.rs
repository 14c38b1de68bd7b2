//! The `slurm:` section of `treefarm.yaml` (and the `slurm:` override of one
//! spec's front matter): what each attempt's job asks for, and how treefarm
//! watches it. Validation refuses `sbatch` flags that treefarm sets itself,
//! naming the argument; [`SlurmConfig::with_override`] is the per-spec merge.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::InputError;

/// The `slurm:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmConfig {
    /// `--partition`; none: the cluster's default partition.
    pub partition: Option<String>,
    /// `--time`, the hard limit behind treefarm's own timeout; none: the
    /// agent timeout plus [`TIME_MARGIN`] (see [`SlurmConfig::time_limit`]).
    #[serde(with = "opt_duration")]
    pub time: Option<Duration>,
    /// `--cpus-per-task` (the agent is one task).
    pub cpus: Option<u32>,
    /// `--mem`, per node.
    pub mem: Option<MemSize>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// Passed to `sbatch` verbatim, before treefarm's own flags; the flags in
    /// [`OWNED_FLAGS`] are refused.
    pub extra_args: Vec<String>,
    /// Let Slurm requeue a job whose node failed or that was preempted
    /// (`--requeue`); off: `--no-requeue`, and treefarm's retries decide.
    pub requeue: bool,
    /// The first interval between two `squeue` calls, and the one after any
    /// change; it backs off while nothing changes (see `poll`).
    #[serde(with = "duration")]
    pub poll: Duration,
    /// How long after a job left the queue treefarm waits for its exit file
    /// to show up (shared file systems publish late).
    #[serde(with = "duration")]
    pub exit_grace: Duration,
    /// How long a job may stay pending for reasons that can clear before
    /// treefarm cancels it and fails the attempt; none: no limit.
    #[serde(with = "opt_duration")]
    pub max_pending: Option<Duration>,
    /// Run each merge-queue gate as a batch job too (in the same gate
    /// worktree under `worktree_dir`); off: gates run on the coordinator's
    /// host.
    pub gates: bool,
    /// The `treefarm` every job runs on its node (`agent-exec`): an
    /// absolute path, or a bare name looked up on the job's `PATH`; none:
    /// the coordinator's own executable, at the same path. The start-up
    /// check asks it for its version.
    pub treefarm: Option<PathBuf>,
}

/// Added to the agent timeout for the default `--time`: treefarm's own
/// watchdog fires first and has time to stop the agent gracefully.
pub const TIME_MARGIN: Duration = Duration::from_secs(5 * 60);

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            partition: None,
            time: None,
            cpus: None,
            mem: None,
            account: None,
            qos: None,
            extra_args: Vec::new(),
            requeue: false,
            poll: Duration::from_secs(5),
            exit_grace: Duration::from_secs(30),
            max_pending: None,
            gates: false,
            treefarm: None,
        }
    }
}

/// A spec's `slurm:` front matter: what one spec may ask differently (its
/// resources and where it runs). The run-wide keys (`requeue`, `poll`,
/// `exit_grace`, `max_pending`) are not here, so naming them in a spec is an
/// unknown-key error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmOverride {
    pub partition: Option<String>,
    #[serde(with = "opt_duration")]
    pub time: Option<Duration>,
    pub cpus: Option<u32>,
    pub mem: Option<MemSize>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Appended to the run's `extra_args` (a spec adds `--gres=gpu:1`, the
    /// site-wide `--reservation` stays).
    pub extra_args: Vec<String>,
}

/// An `sbatch` flag that treefarm sets itself: its long name, its short
/// letter, and why (or the `slurm.` key that sets it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedFlag {
    pub long: &'static str,
    pub short: Option<char>,
    pub why: Owner,
}

/// Why treefarm owns a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A `slurm.` key sets it.
    Key(&'static str),
    /// treefarm needs it to be this way.
    Treefarm(&'static str),
}

const fn owned(long: &'static str, short: Option<char>, why: Owner) -> OwnedFlag {
    OwnedFlag { long, short, why }
}

/// The `sbatch` flags refused in `extra_args`.
#[rustfmt::skip]
pub const OWNED_FLAGS: &[OwnedFlag] = &[
    owned("--job-name", Some('J'), Owner::Treefarm("the job name is how treefarm finds an attempt's job again after a crash")),
    owned("--output", Some('o'), Owner::Treefarm("the job's log sits beside the attempt's other logs")),
    owned("--error", Some('e'), Owner::Treefarm("the job's stderr goes to its log")),
    owned("--open-mode", None, Owner::Treefarm("a requeued job appends to its log")),
    owned("--input", Some('i'), Owner::Treefarm("the job's wrapper decides the agent's stdin")),
    owned("--parsable", None, Owner::Treefarm("treefarm reads the job id from sbatch's answer")),
    owned("--wrap", None, Owner::Treefarm("the job runs treefarm's wrapper script")),
    owned("--chdir", Some('D'), Owner::Treefarm("the job runs in the spec's worktree")),
    owned("--signal", None, Owner::Treefarm("the wrapper is warned before the time limit")),
    owned("--export", None, Owner::Treefarm("the agent gets the run's environment")),
    owned("--export-file", None, Owner::Treefarm("the agent gets the run's environment")),
    owned("--array", Some('a'), Owner::Treefarm("each attempt is one job")),
    owned("--hold", Some('H'), Owner::Treefarm("a held job would never start")),
    owned("--dependency", Some('d'), Owner::Treefarm("treefarm orders the specs itself")),
    owned("--wait", Some('W'), Owner::Treefarm("sbatch must return as soon as the job is queued")),
    owned("--test-only", None, Owner::Treefarm("it submits nothing")),
    owned("--clusters", Some('M'), Owner::Treefarm("squeue and scancel must see the job on the default cluster")),
    owned("--requeue", None, Owner::Key("requeue")),
    owned("--no-requeue", None, Owner::Key("requeue")),
    owned("--partition", Some('p'), Owner::Key("partition")),
    owned("--time", Some('t'), Owner::Key("time")),
    owned("--cpus-per-task", Some('c'), Owner::Key("cpus")),
    owned("--mem", None, Owner::Key("mem")),
    owned("--account", Some('A'), Owner::Key("account")),
    owned("--qos", Some('q'), Owner::Key("qos")),
];

/// `sbatch`'s short options that take a value: in a cluster of letters
/// (`-vJname`) the rest after one of them is its value, not more options.
const SHORT_WITH_VALUE: &str = "aAbBcCdDeFGiJLmMnNopqStwx";

impl SlurmConfig {
    /// Checks what `sbatch` would take badly; `key` is where the section
    /// sits (`slurm`, or `spec 020: slurm`) for the messages.
    pub fn validate(&self, key: &str) -> Result<(), InputError> {
        check_extra_args(&self.extra_args, key)?;
        for (name, value) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
        ] {
            if let Some(v) = value {
                check_word(key, name, v)?;
            }
        }
        if self.cpus == Some(0) {
            return Err(InputError::new(format!("{key}.cpus: 0 is not a CPU count"))
                .with_hint("ask 1 or more, or leave it out for the partition's default"));
        }
        if self.mem.is_some_and(|m| m.megabytes == 0) {
            return Err(
                InputError::new(format!("{key}.mem: 0 is not an amount of memory")).with_hint(
                    "write e.g. `4G` or `500M`, or leave it out for the partition's default",
                ),
            );
        }
        if let Some(short) = self.time.filter(|t| *t < Duration::from_secs(60)) {
            return Err(InputError::new(format!(
                "{key}.time: Slurm's time limits are whole minutes, `{}` is less than one",
                humantime::format_duration(short)
            ))
            .with_hint("write e.g. `30m` or `2h`"));
        }
        if self.poll.is_zero() {
            return Err(InputError::new(format!("{key}.poll: must be more than 0"))
                .with_hint("write e.g. `5s`"));
        }
        if let Some(path) = &self.treefarm {
            let text = path.to_string_lossy();
            let bare = !text.contains('/');
            if text.trim().is_empty() || text.contains('\n') || !(path.is_absolute() || bare) {
                return Err(InputError::new(format!(
                    "{key}.treefarm: `{text}` is neither an absolute path nor a program name"
                ))
                .with_hint(
                    "write where treefarm is on the nodes (`/opt/treefarm/bin/treefarm`), a name on the jobs' PATH, or leave it out for this treefarm's own path",
                ));
            }
        }
        if self.max_pending.is_some_and(|d| d.is_zero()) {
            return Err(InputError::new(format!(
                "{key}.max_pending: 0 would cancel every job before it could start"
            ))
            .with_hint(
                "write e.g. `1h`, or leave it out to wait as long as the reasons can clear",
            ));
        }
        Ok(())
    }

    /// This section with one spec's override on top: every key the spec sets
    /// wins, its `extra_args` come after the run's. The result is checked
    /// with [`SlurmConfig::validate`] by the caller, under the spec's name.
    pub fn with_override(&self, spec: &SlurmOverride) -> SlurmConfig {
        let mut merged = self.clone();
        let SlurmOverride {
            partition,
            time,
            cpus,
            mem,
            account,
            qos,
            extra_args,
        } = spec;
        if partition.is_some() {
            merged.partition.clone_from(partition);
        }
        if time.is_some() {
            merged.time = *time;
        }
        if cpus.is_some() {
            merged.cpus = *cpus;
        }
        if mem.is_some() {
            merged.mem = *mem;
        }
        if account.is_some() {
            merged.account.clone_from(account);
        }
        if qos.is_some() {
            merged.qos.clone_from(qos);
        }
        merged.extra_args.extend(extra_args.iter().cloned());
        merged
    }

    /// The `--time` of a job: `time` when set, else the agent timeout plus
    /// [`TIME_MARGIN`]; none when neither is set (the partition's default).
    pub fn time_limit(&self, agent_timeout: Option<Duration>) -> Option<Duration> {
        self.time
            .or_else(|| agent_timeout.map(|t| t.saturating_add(TIME_MARGIN)))
    }
}

/// Refuses an owned flag anywhere in `args`, naming the argument; and
/// anything that would end `sbatch`'s options early (`--`, or a word that
/// is no option's value), since the first non-option is taken as the batch
/// script and treefarm's own flags and wrapper would follow it as the
/// script's arguments.
fn check_extra_args(args: &[String], key: &str) -> Result<(), InputError> {
    // Whether the previous argument may be waiting for its value as the
    // next word (`--gres gpu:1`, `-w node1`).
    let mut value_may_follow = false;
    for arg in args {
        if arg == "--" {
            return Err(InputError::new(format!(
                "{key}.extra_args: `--` ends sbatch's options, and what follows would replace treefarm's job script"
            ))
            .with_hint("remove it"));
        }
        if let Some(flag) = owned_flag_in(arg) {
            let message = format!(
                "{key}.extra_args: `{arg}` sets `{}`, which treefarm sets itself",
                flag.long
            );
            let hint = match flag.why {
                Owner::Key(k) => format!("use `{key}.{k}` instead"),
                Owner::Treefarm(why) => format!("remove it: {why}"),
            };
            return Err(InputError::new(message).with_hint(hint));
        }
        value_may_follow = match arg.strip_prefix('-') {
            Some(long) if long.starts_with('-') => !long.contains('='),
            Some(letters) if !letters.is_empty() => letters
                .char_indices()
                .find(|(_, c)| SHORT_WITH_VALUE.contains(*c))
                .is_some_and(|(i, c)| i + c.len_utf8() == letters.len()),
            _ if value_may_follow => false,
            _ => {
                return Err(InputError::new(format!(
                    "{key}.extra_args: `{arg}` is not an option, so sbatch would take it as the job script"
                ))
                .with_hint("give sbatch options only, a value joined to its option (`--gres=gpu:1`)"));
            }
        };
    }
    Ok(())
}

/// The owned flag that `arg` would set, if any. A long option counts when
/// its name is an owned name or an abbreviation of one (`sbatch` accepts
/// unambiguous prefixes, `--job` is `--job-name`); a short cluster counts
/// when one of its letters is owned, up to the first letter that takes a
/// value.
fn owned_flag_in(arg: &str) -> Option<&'static OwnedFlag> {
    if let Some(long) = arg.strip_prefix("--") {
        let name = long.split_once('=').map_or(long, |(n, _)| n);
        if name.is_empty() {
            return None;
        }
        return OWNED_FLAGS
            .iter()
            .find(|f| f.long[2..] == *name)
            .or_else(|| OWNED_FLAGS.iter().find(|f| f.long[2..].starts_with(name)));
    }
    let letters = arg.strip_prefix('-')?;
    for c in letters.chars() {
        if let Some(flag) = OWNED_FLAGS.iter().find(|f| f.short == Some(c)) {
            return Some(flag);
        }
        if SHORT_WITH_VALUE.contains(c) {
            break;
        }
    }
    None
}

fn check_word(key: &str, name: &str, value: &str) -> Result<(), InputError> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c == ',') {
        return Err(InputError::new(format!(
            "{key}.{name}: `{value}` is not a Slurm {name} name"
        ))
        .with_hint(format!(
            "write one name without spaces or commas, or leave `{name}` out"
        )));
    }
    Ok(())
}

/// An amount of memory as Slurm counts it: megabytes (MiB). Written
/// `500M`, `4G`, `1T`, `2048K`, or a plain number of megabytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemSize {
    pub megabytes: u64,
}

impl MemSize {
    pub fn parse(s: &str) -> Result<MemSize, String> {
        let t = s.trim();
        let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
        let (digits, unit) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], Some(c.to_ascii_uppercase())),
            _ => (t, None),
        };
        let n: u64 = digits
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an amount of memory (write e.g. `500M`, `4G`)"))?;
        let megabytes = match unit {
            None | Some('M') => Some(n),
            Some('K') => Some(n.div_ceil(1024)),
            Some('G') => n.checked_mul(1024),
            Some('T') => n.checked_mul(1024 * 1024),
            Some(u) => {
                return Err(format!(
                    "`{s}`: unknown unit `{u}` (Slurm's units are K, M, G and T)"
                ))
            }
        }
        .ok_or_else(|| format!("`{s}` is too large"))?;
        Ok(MemSize { megabytes })
    }
}

impl fmt::Display for MemSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.megabytes;
        if m > 0 && m.is_multiple_of(1024 * 1024) {
            write!(f, "{}T", m / (1024 * 1024))
        } else if m > 0 && m.is_multiple_of(1024) {
            write!(f, "{}G", m / 1024)
        } else {
            write!(f, "{m}M")
        }
    }
}

impl Serialize for MemSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MemSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MemSize, D::Error> {
        match Scalar::deserialize(d)? {
            Scalar::Int(n) => Ok(MemSize { megabytes: n }),
            Scalar::Float(_) => Err(serde::de::Error::custom(
                "memory is a whole number of megabytes, or e.g. `4G`",
            )),
            Scalar::Text(s) => MemSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// A YAML scalar as written: durations and sizes accept a number or a
/// string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(u64),
    Float(f64),
    Text(String),
}

fn scalar_duration<E: serde::de::Error>(v: Scalar) -> Result<Duration, E> {
    match v {
        Scalar::Int(n) => Ok(Duration::from_secs(n)),
        Scalar::Float(x) => {
            Duration::try_from_secs_f64(x).map_err(|_| E::custom(format!("invalid duration `{x}`")))
        }
        Scalar::Text(s) => crate::duration::parse_duration(&s).map_err(E::custom),
    }
}

mod duration {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        scalar_duration(Scalar::deserialize(d)?)
    }
}

mod opt_duration {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<Scalar>::deserialize(d)?
            .map(scalar_duration)
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> SlurmConfig {
        serde_yaml::from_str(yaml).expect("valid slurm section")
    }

    #[test]
    fn defaults_and_every_key_parse() {
        assert_eq!(parse("{}"), SlurmConfig::default());
        let c = parse(
            "partition: gpu\ntime: 2h\ncpus: 4\nmem: 8G\naccount: proj\nqos: high\n\
             extra_args: [--gres=gpu:1]\nrequeue: true\npoll: 10\nexit_grace: 1m\nmax_pending: 30m\n\
             gates: true\ntreefarm: /opt/tf/bin/treefarm\n",
        );
        assert_eq!(c.partition.as_deref(), Some("gpu"));
        assert_eq!(c.time, Some(Duration::from_secs(7200)));
        assert_eq!(c.cpus, Some(4));
        assert_eq!(c.mem, Some(MemSize { megabytes: 8192 }));
        assert_eq!(c.extra_args, vec!["--gres=gpu:1".to_string()]);
        assert!(c.requeue);
        assert_eq!(c.poll, Duration::from_secs(10));
        assert_eq!(c.exit_grace, Duration::from_secs(60));
        assert_eq!(c.max_pending, Some(Duration::from_secs(1800)));
        assert!(c.gates);
        assert_eq!(c.treefarm, Some(PathBuf::from("/opt/tf/bin/treefarm")));
        c.validate("slurm").expect("valid");
        // What serialises reads back the same.
        let again: SlurmConfig =
            serde_yaml::from_str(&serde_yaml::to_string(&c).expect("serialise")).expect("parse");
        assert_eq!(again, c);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_yaml::from_str::<SlurmConfig>("cpu: 4").expect_err("typo");
        assert!(err.to_string().contains("unknown field `cpu`"), "{err}");
        // The run-wide keys are not per-spec.
        let err = serde_yaml::from_str::<SlurmOverride>("poll: 5s").expect_err("run-wide");
        assert!(err.to_string().contains("unknown field `poll`"), "{err}");
    }

    #[test]
    fn mem_sizes_in_slurm_units() {
        for (text, mb) in [
            ("500M", 500),
            ("500", 500),
            ("4G", 4096),
            ("4GB", 4096),
            ("1t", 1024 * 1024),
            ("2048K", 2),
            ("1K", 1),
        ] {
            assert_eq!(
                MemSize::parse(text),
                Ok(MemSize { megabytes: mb }),
                "{text}"
            );
        }
        assert!(MemSize::parse("4X")
            .unwrap_err()
            .contains("unknown unit `X`"));
        assert!(MemSize::parse("lots").is_err());
        assert_eq!(MemSize { megabytes: 4096 }.to_string(), "4G");
        assert_eq!(MemSize { megabytes: 500 }.to_string(), "500M");
        assert_eq!(parse("mem: 2048").mem, Some(MemSize { megabytes: 2048 }));
    }

    #[test]
    fn owned_flags_are_refused_in_every_spelling() {
        for arg in [
            "--job-name=x",
            "--job-name",
            "--job=x",
            "-J",
            "-Jx",
            "-vJx",
            "--output=/tmp/log",
            "-o",
            "--error=e",
            "--parsable",
            "--wrap=true",
            "--chdir=/",
            "-D/",
            "--signal=B:USR1@60",
            "--export=NONE",
            "--requeue",
            "--no-requeue",
            "--array=1-4",
            "-H",
            "--dependency=afterok:1",
            "-W",
            "--clusters=other",
            "--partition=x",
            "-p",
            "--time=10",
            "-c4",
            "--mem=4G",
            "--account=x",
            "-q",
        ] {
            let c = SlurmConfig {
                extra_args: vec!["--exclusive".into(), arg.to_string()],
                ..SlurmConfig::default()
            };
            let err = c.validate("slurm").expect_err(arg);
            assert!(
                err.message.contains(&format!("`{arg}`")),
                "{arg}: {}",
                err.message
            );
            assert!(err.hint.is_some(), "{arg}");
        }
    }

    #[test]
    fn the_refusal_names_the_argument_and_the_key_that_replaces_it() {
        let c = SlurmConfig {
            extra_args: vec!["-c8".into()],
            ..SlurmConfig::default()
        };
        let err = c.validate("spec 020: slurm").expect_err("owned");
        assert_eq!(
            err.message,
            "spec 020: slurm.extra_args: `-c8` sets `--cpus-per-task`, which treefarm sets itself"
        );
        assert_eq!(
            err.hint.as_deref(),
            Some("use `spec 020: slurm.cpus` instead")
        );
    }

    #[test]
    fn what_would_end_sbatchs_options_early_is_refused() {
        for args in [
            vec!["--"],
            vec!["other.sh"],
            vec!["--gres=gpu:1", "other.sh"],
            vec!["-v", "other.sh"],
            vec!["-wnode1", "other.sh"],
            vec!["--gres", "gpu:1", "other.sh"],
        ] {
            let c = SlurmConfig {
                extra_args: args.iter().map(|a| a.to_string()).collect(),
                ..SlurmConfig::default()
            };
            let err = c.validate("slurm").expect_err(&format!("{args:?}"));
            let last = args.last().expect("an argument");
            assert!(
                err.message.contains(&format!("`{last}`")),
                "{args:?}: {}",
                err.message
            );
        }
    }

    #[test]
    fn other_flags_pass() {
        let c = SlurmConfig {
            extra_args: vec![
                "--gres=gpu:1".into(),
                "--constraint=avx2".into(),
                "--exclusive".into(),
                "--mem-per-gpu=4G".into(),
                "--reservation=maint".into(),
                "--time-min=10".into(),
                "-N1".into(),
                // A value that happens to contain an owned letter.
                "-wnode-c1".into(),
                "-v".into(),
                // Values as separate words.
                "--gres".into(),
                "gpu:1".into(),
                "-w".into(),
                "node1".into(),
                "-vN".into(),
                "1".into(),
            ],
            ..SlurmConfig::default()
        };
        c.validate("slurm").expect("none of these is owned");
    }

    #[test]
    fn impossible_values_are_refused() {
        for (yaml, needle) in [
            ("cpus: 0", "slurm.cpus"),
            ("mem: 0", "slurm.mem"),
            ("time: 30s", "slurm.time"),
            ("poll: 0", "slurm.poll"),
            ("max_pending: 0", "slurm.max_pending"),
            ("partition: 'a b'", "slurm.partition"),
            ("account: 'a,b'", "slurm.account"),
            ("treefarm: bin/treefarm", "slurm.treefarm"),
            ("treefarm: ''", "slurm.treefarm"),
        ] {
            let err = parse(yaml).validate("slurm").expect_err(yaml);
            assert!(err.message.starts_with(needle), "{yaml}: {}", err.message);
        }
    }

    #[test]
    fn treefarm_on_the_nodes_is_a_path_or_a_name() {
        for ok in ["treefarm: /opt/tf/treefarm", "treefarm: treefarm-0.1"] {
            parse(ok).validate("slurm").expect(ok);
        }
    }

    #[test]
    fn a_spec_override_wins_key_by_key_and_appends_extra_args() {
        let run =
            parse("partition: cpu\ncpus: 2\nmem: 4G\nextra_args: [--reservation=r]\npoll: 7s");
        let spec: SlurmOverride =
            serde_yaml::from_str("cpus: 8\nextra_args: [--gres=gpu:1]").expect("override");
        let merged = run.with_override(&spec);
        assert_eq!(merged.cpus, Some(8));
        assert_eq!(merged.partition.as_deref(), Some("cpu"));
        assert_eq!(merged.mem, Some(MemSize { megabytes: 4096 }));
        assert_eq!(merged.poll, Duration::from_secs(7));
        assert_eq!(
            merged.extra_args,
            vec!["--reservation=r".to_string(), "--gres=gpu:1".to_string()]
        );
        // An empty override changes nothing.
        assert_eq!(run.with_override(&SlurmOverride::default()), run);
        // A spec's owned flag is refused after the merge, under its name.
        let bad: SlurmOverride = serde_yaml::from_str("extra_args: [-J, mine]").expect("parse");
        let err = run
            .with_override(&bad)
            .validate("spec 020: slurm")
            .expect_err("owned");
        assert!(err.message.contains("`-J`"), "{}", err.message);
    }

    #[test]
    fn time_limit_defaults_to_the_agent_timeout_plus_a_margin() {
        let c = SlurmConfig::default();
        assert_eq!(c.time_limit(None), None);
        assert_eq!(
            c.time_limit(Some(Duration::from_secs(1800))),
            Some(Duration::from_secs(1800) + TIME_MARGIN)
        );
        let set = parse("time: 3h");
        assert_eq!(
            set.time_limit(Some(Duration::from_secs(1800))),
            Some(Duration::from_secs(3 * 3600))
        );
    }
}
