//! Which isolation a run gets (pure: the kernel's Landlock ABI in, a decision
//! out) and what one agent may write (pure: paths in, a [`Policy`] out).

use std::path::{Path, PathBuf};

use crate::config::{IsolationConfig, IsolationMode};

/// Tool state and caches under `$HOME` the supported agent CLIs and common
/// toolchains write while they work; writable when they exist.
pub const TOOL_STATE: &[&str] = &[
    ".claude",
    ".claude.json",
    ".codex",
    ".gemini",
    ".aider",
    ".cache",
    ".npm",
    ".yarn",
    ".pnpm-store",
    ".cargo/registry",
    ".cargo/git",
    ".local/state",
    ".local/share/pnpm",
    "go/pkg/mod",
];

/// Device files every agent may write (and `ioctl`, for terminals).
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

/// Isolation in force for a run: Landlock at this ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active {
    pub abi: i32,
    /// Confine TCP bind to the instance's port block.
    pub ports: bool,
}

/// Why the requested isolation cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    #[error("isolation: landlock was asked for, but {reason}")]
    Unsupported { reason: String },
    #[error("isolation.ports: true needs Landlock ABI 4 (Linux 6.7), the kernel has ABI {abi}")]
    PortsUnsupported { abi: i32 },
}

impl IsolationError {
    pub fn hint(&self) -> &'static str {
        match self {
            IsolationError::Unsupported { .. } => {
                "use `isolation: auto` to run unconfined where Landlock is missing, or `off`"
            }
            IsolationError::PortsUnsupported { .. } => "set `isolation.ports: false`",
        }
    }
}

/// Decides the run's isolation from the config and the kernel's Landlock ABI
/// (`Err` text: why there is none). `Ok((None, Some(line)))`: off, and the
/// line to print at run start saying why.
pub fn resolve(
    config: &IsolationConfig,
    kernel: Result<i32, String>,
) -> Result<(Option<Active>, Option<String>), IsolationError> {
    let abi = match (config.mode, kernel) {
        (IsolationMode::Off, _) => return Ok((None, None)),
        (IsolationMode::Auto, Err(reason)) => {
            return Ok((
                None,
                Some(format!(
                    "isolation is off: {reason}; agents can write anywhere you can (set `isolation: off` to silence this)"
                )),
            ))
        }
        (IsolationMode::Landlock, Err(reason)) => {
            return Err(IsolationError::Unsupported { reason })
        }
        (_, Ok(abi)) => abi,
    };
    let ports = match config.ports {
        Some(true) if abi < 4 => return Err(IsolationError::PortsUnsupported { abi }),
        Some(p) => p,
        None => abi >= 4,
    };
    Ok((Some(Active { abi, ports }), None))
}

/// What the policy of one agent is made from.
#[derive(Debug, Clone)]
pub struct PolicyInputs<'a> {
    pub worktree: &'a Path,
    /// The instance's folder under the run dir (private git dir, `TMPDIR`,
    /// status and exit files).
    pub instance_dir: &'a Path,
    pub home: Option<&'a Path>,
    pub repo_root: &'a Path,
    /// `isolation.allow_write` as written.
    pub allow_write: &'a [String],
    /// Other folders the run hands the agent to write (slot caches).
    pub extra: Vec<PathBuf>,
    /// The instance's port block: first port and size.
    pub ports: Option<(u32, u32)>,
}

/// What one agent may write and bind; everything else is read-only to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Writable hierarchies (missing ones are skipped when enforced).
    pub write: Vec<PathBuf>,
    /// TCP ports `bind` may use (0, "any free port", included).
    pub bind: Option<Vec<u16>>,
}

impl Policy {
    pub fn new(inputs: &PolicyInputs) -> Policy {
        let mut write = vec![
            inputs.worktree.to_path_buf(),
            inputs.instance_dir.to_path_buf(),
        ];
        if let Some(home) = inputs.home {
            write.extend(TOOL_STATE.iter().map(|p| home.join(p)));
        }
        write.extend(inputs.allow_write.iter().map(|p| {
            match (p.strip_prefix("~/"), inputs.home) {
                (Some(rest), Some(home)) => home.join(rest),
                _ => inputs.repo_root.join(p),
            }
        }));
        write.extend(inputs.extra.iter().cloned());
        write.extend(DEVICES.iter().map(PathBuf::from));
        let bind = inputs.ports.map(|(start, size)| {
            std::iter::once(0)
                .chain((start..start + size.max(1)).filter_map(|p| u16::try_from(p).ok()))
                .collect()
        });
        Policy { write, bind }
    }

    /// True when `path` lies in a writable hierarchy.
    pub fn allows(&self, path: &Path) -> bool {
        self.write.iter().any(|w| path.starts_with(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_without_landlock_is_off_with_a_reason() {
        let cfg = IsolationConfig::default();
        let (active, line) = resolve(&cfg, Err("the kernel has no Landlock".into())).unwrap();
        assert!(active.is_none());
        assert!(line.unwrap().contains("the kernel has no Landlock"));
        let cfg = IsolationConfig {
            mode: IsolationMode::Landlock,
            ..IsolationConfig::default()
        };
        assert!(resolve(&cfg, Err("no".into())).is_err());
        let (active, _) = resolve(&cfg, Ok(3)).unwrap();
        assert_eq!(
            active,
            Some(Active {
                abi: 3,
                ports: false
            })
        );
        let (active, _) = resolve(&cfg, Ok(7)).unwrap();
        assert_eq!(
            active,
            Some(Active {
                abi: 7,
                ports: true
            })
        );
    }

    #[test]
    fn policy_names_the_worktree_tools_and_the_port_block() {
        let allow = vec!["~/data".to_string(), "out".to_string()];
        let policy = Policy::new(&PolicyInputs {
            worktree: Path::new("/w/020"),
            instance_dir: Path::new("/r/.git/treefarm/runs/1/instances/020"),
            home: Some(Path::new("/home/u")),
            repo_root: Path::new("/r"),
            allow_write: &allow,
            extra: vec![],
            ports: Some((20010, 3)),
        });
        assert!(policy.allows(Path::new("/w/020/src/a.rs")));
        assert!(policy.allows(Path::new("/home/u/.claude/x")));
        assert!(policy.allows(Path::new("/home/u/data/x")));
        assert!(policy.allows(Path::new("/r/out/x")));
        assert!(!policy.allows(Path::new("/w/021/a")));
        assert!(!policy.allows(Path::new("/home/u/escape")));
        assert!(!policy.allows(Path::new("/r/.git/config")));
        assert_eq!(policy.bind, Some(vec![0, 20010, 20011, 20012]));
    }
}
