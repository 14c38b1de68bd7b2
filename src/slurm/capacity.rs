//! What the cluster's nodes can hold, per partition, read from `sinfo`; and
//! the refusal of a request that no node could ever meet, before anything
//! is submitted (otherwise `sbatch` may accept it and leave it pending
//! forever, see `reason`).
//!
//! Every node counts whatever its state: a node that is down now may come
//! back, so a request that fits it is possible, only not yet.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use super::config::{MemSize, SlurmConfig};
use super::timefmt::{format_time_limit, parse_time_limit};
use crate::error::InputError;

/// The `sinfo` argv (without the program): one line per node and
/// partition — partition (`*` marks the default), node, CPUs, memory in
/// megabytes, the partition's time limit.
pub fn sinfo_args() -> Vec<OsString> {
    vec![
        "--noheader".into(),
        "--Node".into(),
        "--format=%P|%N|%c|%m|%l".into(),
    ]
}

/// One node as a partition sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSize {
    pub name: String,
    pub cpus: u32,
    pub mem: MemSize,
}

/// A partition: its nodes and its time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub default: bool,
    /// None: no limit.
    pub max_time: Option<Duration>,
    pub nodes: Vec<NodeSize>,
}

/// The cluster's partitions, as `sinfo` listed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capacity {
    pub partitions: Vec<Partition>,
}

/// What one job asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// None: the default partition.
    pub partition: Option<String>,
    pub cpus: u32,
    pub mem: Option<MemSize>,
    pub time: Option<Duration>,
}

impl Request {
    /// The request of a job with these settings (one CPU unless `cpus`).
    pub fn of(config: &SlurmConfig, agent_timeout: Option<Duration>) -> Request {
        Request {
            partition: config.partition.clone(),
            cpus: config.cpus.unwrap_or(1),
            mem: config.mem,
            time: config.time_limit(agent_timeout),
        }
    }
}

/// Why a request can never run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No partition of that name.
    UnknownPartition {
        partition: String,
        known: Vec<String>,
    },
    /// No partition was named and the cluster has no default.
    NoDefaultPartition { known: Vec<String> },
    /// No node of the partition has that many CPUs and that much memory.
    TooBig {
        partition: String,
        cpus: u32,
        mem: Option<MemSize>,
        /// The node with the most CPUs, and the one with the most memory.
        most_cpus: NodeSize,
        most_mem: NodeSize,
    },
    /// The time limit is above the partition's.
    TooLong {
        partition: String,
        time: Duration,
        max: Duration,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::UnknownPartition { partition, known } => write!(
                f,
                "slurm.partition: the cluster has no partition `{partition}` (it has {})",
                known.join(", ")
            ),
            Refusal::NoDefaultPartition { known } => write!(
                f,
                "slurm.partition is not set and the cluster has no default partition (it has {})",
                known.join(", ")
            ),
            Refusal::TooBig {
                partition,
                cpus,
                mem,
                most_cpus,
                most_mem,
            } => {
                let asked = match mem {
                    Some(m) => format!("{cpus} CPUs and {m} of memory"),
                    None => format!("{cpus} CPUs"),
                };
                write!(
                    f,
                    "no node of partition `{partition}` has {asked}: the largest has {} CPUs (node {}), the most memory is {} (node {})",
                    most_cpus.cpus, most_cpus.name, most_mem.mem, most_mem.name
                )
            }
            Refusal::TooLong {
                partition,
                time,
                max,
            } => write!(
                f,
                "a time limit of {} minutes is above partition `{partition}`'s {} minutes",
                format_time_limit(*time),
                format_time_limit(*max)
            ),
        }
    }
}

impl Refusal {
    pub fn hint(&self) -> &'static str {
        match self {
            Refusal::UnknownPartition { .. } | Refusal::NoDefaultPartition { .. } => {
                "set `slurm.partition` to one of the partitions `sinfo` lists"
            }
            Refusal::TooBig { .. } => {
                "lower `slurm.cpus` or `slurm.mem` (or the spec's `slurm:` override), or choose a partition with bigger nodes"
            }
            Refusal::TooLong { .. } => {
                "lower `slurm.time` (by default the agent timeout plus 5 minutes), or choose a partition with a longer limit"
            }
        }
    }
}

impl From<Refusal> for InputError {
    fn from(r: Refusal) -> InputError {
        InputError::new(r.to_string()).with_hint(r.hint())
    }
}

impl Capacity {
    /// Parses `sinfo` in the [`sinfo_args`] format; on failure, the line
    /// and what is wrong with it.
    pub fn parse(stdout: &str) -> Result<Capacity, (String, String)> {
        let mut cap = Capacity::default();
        for line in stdout.lines() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |what: &str| (line.to_string(), what.to_string());
            let fields: Vec<&str> = line.split('|').map(str::trim).collect();
            let [partition, node, cpus, mem, limit] = fields.as_slice() else {
                return Err(bad("expected 5 fields separated by `|`"));
            };
            let (name, default) = match partition.strip_suffix('*') {
                Some(n) => (n, true),
                None => (*partition, false),
            };
            // A `+` follows a figure that varies within a group of nodes;
            // with one line per node it should not appear, but the
            // smallest is the safe reading.
            let cpus = cpus
                .trim_end_matches('+')
                .parse::<u32>()
                .map_err(|_| bad("the CPU count is not a number"))?;
            let mem = mem
                .trim_end_matches('+')
                .parse::<u64>()
                .map(|megabytes| MemSize { megabytes })
                .map_err(|_| bad("the memory is not a number of megabytes"))?;
            let max_time = parse_time_limit(limit).map_err(|e| bad(&e))?;
            let size = NodeSize {
                name: node.to_string(),
                cpus,
                mem,
            };
            match cap.partitions.iter_mut().find(|p| p.name == name) {
                Some(p) => p.nodes.push(size),
                None => cap.partitions.push(Partition {
                    name: name.to_string(),
                    default,
                    max_time,
                    nodes: vec![size],
                }),
            }
        }
        Ok(cap)
    }

    /// Refuses a request no node could ever meet; `Ok` when one could.
    pub fn check(&self, req: &Request) -> Result<(), Refusal> {
        let known = || self.partitions.iter().map(|p| p.name.clone()).collect();
        let partition = match &req.partition {
            Some(name) => self
                .partitions
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| Refusal::UnknownPartition {
                    partition: name.clone(),
                    known: known(),
                })?,
            None => self
                .partitions
                .iter()
                .find(|p| p.default)
                .ok_or_else(|| Refusal::NoDefaultPartition { known: known() })?,
        };
        let fits = |n: &NodeSize| n.cpus >= req.cpus && req.mem.is_none_or(|m| n.mem >= m);
        if !partition.nodes.iter().any(fits) {
            let most_cpus = partition.nodes.iter().max_by_key(|n| n.cpus);
            let most_mem = partition.nodes.iter().max_by_key(|n| n.mem);
            if let (Some(most_cpus), Some(most_mem)) = (most_cpus, most_mem) {
                return Err(Refusal::TooBig {
                    partition: partition.name.clone(),
                    cpus: req.cpus,
                    mem: req.mem,
                    most_cpus: most_cpus.clone(),
                    most_mem: most_mem.clone(),
                });
            }
        }
        if let (Some(time), Some(max)) = (req.time, partition.max_time) {
            // Slurm compares whole minutes.
            if time.as_secs().div_ceil(60) > max.as_secs().div_ceil(60) {
                return Err(Refusal::TooLong {
                    partition: partition.name.clone(),
                    time,
                    max,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two partitions over three nodes, as `sinfo --Node` prints them.
    const SINFO: &str = "\
debug*|small1|2|24105|infinite
debug*|small2|4|8000|infinite
big|large|64|512000|2-00:00:00
short|small1|2|24105|1:00
";

    fn req(partition: Option<&str>, cpus: u32, mem: Option<u64>, time: Option<u64>) -> Request {
        Request {
            partition: partition.map(String::from),
            cpus,
            mem: mem.map(|megabytes| MemSize { megabytes }),
            time: time.map(Duration::from_secs),
        }
    }

    #[test]
    fn partitions_and_their_largest_nodes() {
        let cap = Capacity::parse(SINFO).expect("parses");
        let names: Vec<&str> = cap.partitions.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["debug", "big", "short"]);
        assert!(cap.partitions[0].default);
        assert_eq!(cap.partitions[0].nodes.len(), 2);
        assert_eq!(
            cap.partitions[1].max_time,
            Some(Duration::from_secs(2 * 86400))
        );
        assert_eq!(cap.partitions[2].max_time, Some(Duration::from_secs(60)));
        assert!(Capacity::parse("debug*|n|two|1|infinite").is_err());
        assert!(Capacity::parse("debug*|n|2|1").is_err());
    }

    #[test]
    fn requests_that_fit_some_node_pass() {
        let cap = Capacity::parse(SINFO).expect("parses");
        cap.check(&req(None, 4, None, None)).expect("small2 has 4");
        cap.check(&req(None, 2, Some(24105), None)).expect("small1");
        cap.check(&req(Some("big"), 64, Some(512000), Some(3600)))
            .expect("large");
        cap.check(&req(Some("short"), 1, None, Some(60)))
            .expect("one minute");
    }

    #[test]
    fn a_request_no_node_meets_is_refused_with_the_figures() {
        let cap = Capacity::parse(SINFO).expect("parses");
        let r = cap.check(&req(None, 8, None, None)).expect_err("8 CPUs");
        assert_eq!(
            r.to_string(),
            "no node of partition `debug` has 8 CPUs: the largest has 4 CPUs (node small2), the most memory is 24105M (node small1)"
        );
        // Each figure fits some node, but no one node has both.
        let r = cap
            .check(&req(None, 4, Some(20000), None))
            .expect_err("both");
        assert!(matches!(r, Refusal::TooBig { cpus: 4, .. }), "{r:?}");
        assert!(r.to_string().contains("4 CPUs and 20000M of memory"), "{r}");
        let input: InputError = r.into();
        assert!(input.hint.expect("hint").contains("slurm.cpus"));
    }

    #[test]
    fn unknown_partitions_and_long_limits_are_refused() {
        let cap = Capacity::parse(SINFO).expect("parses");
        let r = cap
            .check(&req(Some("gpu"), 1, None, None))
            .expect_err("no gpu");
        assert_eq!(
            r.to_string(),
            "slurm.partition: the cluster has no partition `gpu` (it has debug, big, short)"
        );
        let r = cap
            .check(&req(Some("short"), 1, None, Some(35 * 60)))
            .expect_err("35 minutes");
        assert_eq!(
            r.to_string(),
            "a time limit of 35 minutes is above partition `short`'s 1 minutes"
        );
        let no_default = Capacity::parse("big|large|64|512000|infinite").expect("parses");
        assert!(matches!(
            no_default.check(&req(None, 1, None, None)),
            Err(Refusal::NoDefaultPartition { .. })
        ));
    }

    #[test]
    fn the_request_of_a_config() {
        let c = SlurmConfig {
            cpus: Some(3),
            ..SlurmConfig::default()
        };
        let r = Request::of(&c, Some(Duration::from_secs(600)));
        assert_eq!(r.cpus, 3);
        assert_eq!(r.time, Some(Duration::from_secs(900)));
        assert_eq!(Request::of(&SlurmConfig::default(), None).cpus, 1);
    }
}
