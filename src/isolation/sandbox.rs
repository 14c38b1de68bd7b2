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

use landlock::{
    path_beneath_rules, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr, ABI,
};

use super::policy::Policy;

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

/// A policy ready to be enforced on a child process.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Builds the kernel ruleset: writes handled (reads stay open) and
    /// granted beneath each writable path that exists; TCP bind handled and
    /// granted per port when the policy has a port list.
    pub fn ruleset(&self) -> Result<OwnedFd, SandboxError> {
        let abi = ABI::from(self.abi);
        let err = |source| SandboxError::Ruleset {
            abi: self.abi,
            source,
        };
        let mut ruleset = Ruleset::default()
            .handle_access(AccessFs::from_write(abi))
            .map_err(err)?;
        if self.policy.bind.is_some() {
            ruleset = ruleset.handle_access(AccessNet::BindTcp).map_err(err)?;
        }
        let mut created = ruleset
            .create()
            .map_err(err)?
            .add_rules(path_beneath_rules(
                &self.policy.write,
                AccessFs::from_write(abi),
            ))
            .map_err(err)?;
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
