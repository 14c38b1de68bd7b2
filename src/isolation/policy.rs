//! Which isolation a run gets (pure: the kernel's Landlock ABI in, a decision
//! out), what one agent may write, read and bind (pure: paths in, a
//! [`Policy`] out), and the read rules that enforce "everything but the
//! credential stores" with an allow-list (pure: a listing in, rules out).

use std::path::{Path, PathBuf};

use crate::config::{IsolationConfig, IsolationMode};

/// Credential stores of other tools under `$HOME`, unreadable to agents
/// by default (`isolation.allow_read` gives one back). The agent CLIs' own
/// stores (`~/.claude`, `~/.claude.json`, `~/.codex`, `~/.gemini`,
/// `~/.aider*`) are not here: a CLI must log in with them. Neither is
/// `~/.npmrc`: npm reads it for every install, not only to publish.
pub const DENY_READ: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube/config",
    ".docker/config.json",
    ".config/gcloud",
    ".config/gh",
    ".config/hub",
    ".config/git/credentials",
    ".git-credentials",
    ".netrc",
    ".pgpass",
    ".pypirc",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".terraform.d/credentials.tfrc.json",
    ".vault-token",
    ".password-store",
    ".local/share/keyrings",
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

/// What the policy of one agent (or of anything else treefarm confines,
/// such as a merge gate) is made from. Plain data: the caller reads the
/// environment and the config, [`Policy::new`] only combines them.
#[derive(Debug, Clone)]
pub struct PolicyInputs<'a> {
    /// The worktree the confined process works in (writable).
    pub worktree: &'a Path,
    /// The instance's folder under the run dir (private git dir, `TMPDIR`,
    /// status and exit files; writable) — for a gate, its own folder.
    pub instance_dir: &'a Path,
    /// `$HOME` as the confined process sees it: tool state and the
    /// credential stores are found under it; `None`: neither applies.
    pub home: Option<&'a Path>,
    /// The repository root: relative `allow_write`/`allow_read` entries
    /// are from here.
    pub repo_root: &'a Path,
    /// `isolation.allow_write` as written.
    pub allow_write: &'a [String],
    /// `isolation.allow_read` as written: credential stores readable after
    /// all.
    pub allow_read: &'a [String],
    /// The supported CLI the process runs (`claude`, `codex`, `gemini`,
    /// `aider`; see [`super::state::cli_of`]), whose state is writable.
    pub cli: Option<&'a str>,
    /// The process's environment (at least the variables that move tool
    /// state: `CLAUDE_CONFIG_DIR`, `CODEX_HOME`, `GEMINI_CLI_HOME`, `XDG_*`).
    pub env: &'a [(String, String)],
    /// Other folders the run hands the process to write (slot caches).
    pub extra: Vec<PathBuf>,
    /// The instance's port block: first port and size.
    pub ports: Option<(u32, u32)>,
}

/// What one confined process may write, read and bind. Everything is
/// readable except `deny_read` (minus `allow_read`); only `write` is
/// writable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// Writable hierarchies (missing ones are skipped when enforced);
    /// readable too, even inside a denied store.
    pub write: Vec<PathBuf>,
    /// Unreadable hierarchies: the credential stores of [`DENY_READ`] under
    /// `$HOME`, less those `allow_read` covers (missing ones deny nothing).
    pub deny_read: Vec<PathBuf>,
    /// `isolation.allow_read`, resolved: readable even inside `deny_read`.
    pub allow_read: Vec<PathBuf>,
    /// TCP ports `bind` may use (0, "any free port", included).
    pub bind: Option<Vec<u16>>,
}

/// `~/x` under `home`, anything else under `repo_root` (an absolute path
/// stays as it is: `join` replaces).
fn resolve_user_path(p: &str, home: Option<&Path>, repo_root: &Path) -> PathBuf {
    match (p.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => repo_root.join(p),
    }
}

impl Policy {
    pub fn new(inputs: &PolicyInputs) -> Policy {
        let mut write = vec![
            inputs.worktree.to_path_buf(),
            inputs.instance_dir.to_path_buf(),
        ];
        if let Some(home) = inputs.home {
            write.extend(super::state::tool_state(inputs.cli, home, inputs.env).writable);
        }
        let user = |p: &String| resolve_user_path(p, inputs.home, inputs.repo_root);
        write.extend(inputs.allow_write.iter().map(user));
        write.extend(inputs.extra.iter().cloned());
        write.extend(DEVICES.iter().map(PathBuf::from));
        let allow_read: Vec<PathBuf> = inputs.allow_read.iter().map(user).collect();
        let deny_read = inputs
            .home
            .map(|home| {
                DENY_READ
                    .iter()
                    .map(|p| home.join(p))
                    .filter(|d| !allow_read.iter().any(|a| d.starts_with(a)))
                    .collect()
            })
            .unwrap_or_default();
        let bind = inputs.ports.map(|(start, size)| {
            std::iter::once(0)
                .chain((start..start + size.max(1)).filter_map(|p| u16::try_from(p).ok()))
                .collect()
        });
        Policy {
            write,
            deny_read,
            allow_read,
            bind,
        }
    }

    /// True when `path` lies in a writable hierarchy.
    pub fn allows(&self, path: &Path) -> bool {
        self.write.iter().any(|w| path.starts_with(w))
    }

    /// True when `path` is readable: outside every denied store, or
    /// given back by `allow_read` or `write`.
    pub fn readable(&self, path: &Path) -> bool {
        !self.deny_read.iter().any(|d| path.starts_with(d))
            || self.allow_read.iter().any(|a| path.starts_with(a))
            || self.allows(path)
    }
}

/// One entry of a listed folder: its path and where it really is (symlinks
/// resolved; the path itself when it is not a link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub path: PathBuf,
    pub target: PathBuf,
}

/// The read grants that leave exactly the denied paths unreadable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadRules {
    /// Hierarchies readable in full (files, folders, execution).
    pub read: Vec<PathBuf>,
    /// The ancestors of denied paths: their own entries can be listed, and
    /// the entries that existed when the rules were made are in `read`.
    pub list: Vec<PathBuf>,
}

/// The Landlock read rules for `deny` (denied paths, canonical and
/// existing) and `allow` (given back), walking the file system through
/// `list` (a folder's entries; empty when it cannot be read).
///
/// Landlock is an allow-list, so "everything but `deny`" is built as: every
/// entry of every ancestor of a denied path is readable in full, except the
/// denied paths themselves and the ancestors, which are walked in turn and
/// may only be listed. An entry whose real place (a symlink's target) is a
/// denied path, lies inside one, or is an ancestor of one is skipped: its
/// real place is already covered (Landlock checks the real hierarchy).
/// `None` when nothing is denied: reads are then left unhandled.
pub fn read_rules(
    deny: &[PathBuf],
    allow: &[PathBuf],
    list: impl Fn(&Path) -> Vec<Listing>,
) -> Option<ReadRules> {
    if deny.is_empty() {
        return None;
    }
    let mut parents: std::collections::BTreeSet<PathBuf> = std::collections::BTreeSet::new();
    for d in deny {
        parents.extend(d.ancestors().skip(1).map(Path::to_path_buf));
    }
    let mut read: Vec<PathBuf> = Vec::new();
    for parent in &parents {
        for entry in list(parent) {
            let covered = deny
                .iter()
                .any(|d| entry.target.starts_with(d) || d.starts_with(&entry.target))
                || parents.contains(&entry.path);
            if !covered && !read.contains(&entry.path) {
                read.push(entry.path);
            }
        }
    }
    read.extend(allow.iter().cloned());
    Some(ReadRules {
        read,
        list: parents.into_iter().collect(),
    })
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
            allow_read: &[],
            cli: Some("claude"),
            env: &[],
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

    fn inputs<'a>(allow_read: &'a [String]) -> PolicyInputs<'a> {
        PolicyInputs {
            worktree: Path::new("/w/020"),
            instance_dir: Path::new("/r/.git/treefarm/runs/1/instances/020"),
            home: Some(Path::new("/home/u")),
            repo_root: Path::new("/r"),
            allow_write: &[],
            allow_read,
            cli: Some("codex"),
            env: &[],
            extra: vec![],
            ports: None,
        }
    }

    #[test]
    fn credential_stores_are_unreadable_unless_allow_read_gives_them_back() {
        let policy = Policy::new(&inputs(&[]));
        for p in [
            "/home/u/.ssh/id_ed25519",
            "/home/u/.aws/credentials",
            "/home/u/.kube/config",
            "/home/u/.docker/config.json",
            "/home/u/.config/gcloud/adc.json",
            "/home/u/.config/gh/hosts.yml",
            "/home/u/.netrc",
            "/home/u/.git-credentials",
            "/home/u/.gnupg/private-keys-v1.d/k",
            "/home/u/.azure/msal_token_cache.json",
        ] {
            assert!(!policy.readable(Path::new(p)), "{p}");
        }
        // The CLIs' own logins and everything else stay readable.
        for p in [
            "/home/u/.claude/.credentials.json",
            "/home/u/.claude.json",
            "/home/u/.codex/auth.json",
            "/home/u/.gemini/oauth_creds.json",
            "/home/u/.kube/cache/x",
            "/home/u/.config/git/config",
            "/home/u/.gitconfig",
            "/etc/passwd",
        ] {
            assert!(policy.readable(Path::new(p)), "{p}");
        }
        let allow = vec!["~/.aws".to_string(), "~/.ssh/known_hosts".to_string()];
        let policy = Policy::new(&inputs(&allow));
        assert!(!policy.deny_read.contains(&PathBuf::from("/home/u/.aws")));
        assert!(policy.readable(Path::new("/home/u/.aws/credentials")));
        assert!(policy.readable(Path::new("/home/u/.ssh/known_hosts")));
        assert!(!policy.readable(Path::new("/home/u/.ssh/id_ed25519")));
    }

    /// A folder's entries: name, symlink target.
    type Entries<'a> = &'a [(&'a str, Option<&'a str>)];

    /// A file system as a map: folder -> entries.
    fn tree(entries: &[(&str, Entries)]) -> impl Fn(&Path) -> Vec<Listing> {
        let map: Vec<(PathBuf, Vec<Listing>)> = entries
            .iter()
            .map(|(dir, names)| {
                let dir = PathBuf::from(dir);
                let list = names
                    .iter()
                    .map(|(name, target)| Listing {
                        path: dir.join(name),
                        target: target.map_or_else(|| dir.join(name), PathBuf::from),
                    })
                    .collect();
                (dir, list)
            })
            .collect();
        move |p: &Path| {
            map.iter()
                .find(|(d, _)| d == p)
                .map(|(_, l)| l.clone())
                .unwrap_or_default()
        }
    }

    #[test]
    fn read_rules_grant_every_entry_but_the_denied_ones_recursing_into_their_parents() {
        let list = tree(&[
            (
                "/",
                &[("usr", None), ("etc", None), ("home", None), ("tmp", None)],
            ),
            ("/home", &[("u", None), ("other", None)]),
            (
                "/home/u",
                &[
                    (".ssh", None),
                    (".aws", None),
                    (".config", None),
                    (".claude", None),
                    ("src", None),
                    ("notes.txt", None),
                    // A link to a store, and one to an ancestor of one.
                    ("keys", Some("/home/u/.ssh")),
                    ("me", Some("/home/u")),
                    ("bin", Some("/usr/bin")),
                ],
            ),
            ("/home/u/.config", &[("gh", None), ("git", None)]),
        ]);
        let deny: Vec<PathBuf> = ["/home/u/.ssh", "/home/u/.aws", "/home/u/.config/gh"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let allow = vec![PathBuf::from("/home/u/.ssh/known_hosts")];
        let rules = read_rules(&deny, &allow, &list).expect("rules");
        let want: Vec<PathBuf> = [
            "/usr",
            "/etc",
            "/tmp",
            "/home/other",
            "/home/u/.claude",
            "/home/u/src",
            "/home/u/notes.txt",
            "/home/u/bin",
            "/home/u/.config/git",
            "/home/u/.ssh/known_hosts",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let mut got = rules.read.clone();
        got.sort();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert_eq!(got, want_sorted);
        assert_eq!(
            rules.list,
            ["/", "/home", "/home/u", "/home/u/.config"]
                .iter()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        );
        // Nothing denied (no store exists): reads are not handled at all.
        assert_eq!(read_rules(&[], &allow, &list), None);
    }
}
