//! Landlock enforcement of a [`Policy`].
//!
//! The ruleset is built in the coordinator, before `fork` (opening every
//! path, allocating freely); the child only runs two async-signal-safe system
//! calls between `fork` and `exec` — `prctl(PR_SET_NO_NEW_PRIVS)` and
//! `landlock_restrict_self` on the inherited ruleset descriptor — see
//! [`Sandbox::restrict_in_child`]. That avoids both non-async-signal-safe
//! work in `pre_exec` and a re-exec of treefarm itself (which would not work
//! where treefarm is embedded as a library, e.g. in tests, and costs an exec
//! per agent). The restriction is inherited by every descendant and cannot be
//! lifted by them.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr,
    RulesetCreatedAttr, ABI,
};

use super::policy::{read_rules, Listing, Policy, ReadRules};

/// The kernel's Landlock ABI version, or why there is none.
pub fn kernel_abi() -> Result<i32, String> {
    // SAFETY: the documented version query: no pointer is dereferenced.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    if v > 0 {
        return Ok(v as i32);
    }
    Err(match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EOPNOTSUPP) => "Landlock is built into the kernel but disabled at boot (add `landlock` to the `lsm=` kernel parameter)".to_string(),
        Some(libc::ENOSYS) => "the kernel has no Landlock (Linux 5.13 or later with CONFIG_SECURITY_LANDLOCK)".to_string(),
        other => format!("the Landlock version query failed (errno {other:?})"),
    })
}

/// A policy ready to be enforced on a child process. Serialisable, so that
/// a job on another machine builds the same ruleset there (`agent-exec`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sandbox {
    pub abi: i32,
    pub policy: Policy,
}

/// Why a ruleset could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("failed to build the Landlock ruleset (ABI {abi})")]
    Ruleset {
        abi: i32,
        #[source]
        source: landlock::RulesetError,
    },
    #[error("the kernel did not create a Landlock ruleset (ABI {abi})")]
    NotCreated { abi: i32 },
}

impl Sandbox {
    /// Builds the kernel ruleset: writes handled and granted beneath each
    /// writable path that exists; reads handled when a denied store exists
    /// and granted by [`read_rules`] (everything but the denied stores, as
    /// the file system is now); TCP bind handled and granted per port when
    /// the policy has a port list.
    pub fn ruleset(&self) -> Result<OwnedFd, SandboxError> {
        let abi = ABI::from(self.abi);
        let err = |source| SandboxError::Ruleset {
            abi: self.abi,
            source,
        };
        let reads = self.read_rules();
        let handled = match reads {
            Some(_) => AccessFs::from_all(abi),
            None => AccessFs::from_write(abi),
        };
        let mut ruleset = Ruleset::default().handle_access(handled).map_err(err)?;
        if self.policy.bind.is_some() {
            ruleset = ruleset.handle_access(AccessNet::BindTcp).map_err(err)?;
        }
        // A writable path is readable too (reads handled or not).
        let mut created = ruleset
            .create()
            .map_err(err)?
            .add_rules(path_beneath_rules(&self.policy.write, handled))
            .map_err(err)?;
        if let Some(reads) = &reads {
            created = created
                .add_rules(path_beneath_rules(&reads.read, AccessFs::from_read(abi)))
                .map_err(err)?
                .add_rules(path_beneath_rules(&reads.list, AccessFs::ReadDir))
                .map_err(err)?;
        }
        if let Some(ports) = &self.policy.bind {
            created =
                created
                    .add_rules(ports.iter().map(|&p| {
                        Ok::<_, landlock::RulesetError>(NetPort::new(p, AccessNet::BindTcp))
                    }))
                    .map_err(err)?;
        }
        let fd: Option<OwnedFd> = created.into();
        fd.ok_or(SandboxError::NotCreated { abi: self.abi })
    }

    /// The read rules of the policy against the file system as it is now:
    /// denied stores that exist (symlinks resolved), the folders on their
    /// way listed. `None`: no denied store exists, reads stay unhandled.
    fn read_rules(&self) -> Option<ReadRules> {
        let deny: Vec<std::path::PathBuf> = self
            .policy
            .deny_read
            .iter()
            // A store the policy lets the agent write is not denied.
            .filter(|d| !self.policy.allows(d))
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .collect();
        read_rules(&deny, &self.policy.allow_read, list_folder)
    }

    /// Restricts the calling process with `ruleset`. For `pre_exec`: only
    /// async-signal-safe system calls, no allocation.
    pub fn restrict_in_child(ruleset: &OwnedFd) -> std::io::Result<()> {
        // SAFETY: plain system calls on integers; `ruleset` is a live fd.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The entries of `dir` with their real places (a symlink resolved; a
/// broken one as itself, which Landlock then cannot open and skips).
fn list_folder(dir: &Path) -> Vec<Listing> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            let link = e.file_type().is_ok_and(|t| t.is_symlink());
            let target = if link {
                std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone())
            } else {
                path.clone()
            };
            Listing { path, target }
        })
        .collect()
}
