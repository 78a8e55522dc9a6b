//! The spawn settings that `posix_spawn` cannot make, made by the child
//! itself between fork and exec: a new session, resource limits, the nice
//! value, the umask, the credentials, and the caller's own hooks.

use std::io;
use std::process::Command;
use std::sync::Arc;

use nix::libc;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{setgid, setgroups, setsid, setuid, Gid, Uid};

use crate::Rlimit;

/// What the child sets for itself, in this order: a new session, the
/// resource limits, the nice value, the umask, then the credentials
/// (supplementary groups, gid, uid), last because the steps before may
/// need the privileges the credentials give up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ChildSettings {
    pub(crate) setsid: bool,
    /// `(resource, soft, hard)`.
    pub(crate) rlimits: Vec<(Rlimit, u64, u64)>,
    pub(crate) nice: Option<i32>,
    pub(crate) umask: Option<u32>,
    pub(crate) groups: Option<Vec<u32>>,
    pub(crate) gid: Option<u32>,
    pub(crate) uid: Option<u32>,
}

impl ChildSettings {
    /// Whether there is nothing to set (the spawn may then stay on std's
    /// `posix_spawn` path).
    pub(crate) fn is_empty(&self) -> bool {
        *self == ChildSettings::default()
    }
}

/// A caller's hook, run in the child between fork and exec (see
/// [`Popen::pre_exec`](crate::Popen::pre_exec)).
#[derive(Clone)]
pub(crate) struct Hook(pub(crate) Arc<dyn Fn() -> io::Result<()> + Send + Sync>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

fn resource(limit: Rlimit) -> Resource {
    match limit {
        Rlimit::As => Resource::RLIMIT_AS,
        Rlimit::Core => Resource::RLIMIT_CORE,
        Rlimit::Cpu => Resource::RLIMIT_CPU,
        Rlimit::Data => Resource::RLIMIT_DATA,
        Rlimit::Fsize => Resource::RLIMIT_FSIZE,
        Rlimit::Locks => Resource::RLIMIT_LOCKS,
        Rlimit::Memlock => Resource::RLIMIT_MEMLOCK,
        Rlimit::Msgqueue => Resource::RLIMIT_MSGQUEUE,
        Rlimit::Nice => Resource::RLIMIT_NICE,
        Rlimit::Nofile => Resource::RLIMIT_NOFILE,
        Rlimit::Nproc => Resource::RLIMIT_NPROC,
        Rlimit::Rss => Resource::RLIMIT_RSS,
        Rlimit::Rtprio => Resource::RLIMIT_RTPRIO,
        Rlimit::Rttime => Resource::RLIMIT_RTTIME,
        Rlimit::Sigpending => Resource::RLIMIT_SIGPENDING,
        Rlimit::Stack => Resource::RLIMIT_STACK,
    }
}

/// The current `(soft, hard)` limit of `limit` in the host.
pub(crate) fn current_rlimit(limit: Rlimit) -> Option<(u64, u64)> {
    nix::sys::resource::getrlimit(resource(limit)).ok()
}

/// The host's nice value.
pub(crate) fn current_nice() -> Option<i32> {
    // getpriority may return -1 as a value: errno tells.
    nix::errno::Errno::clear();
    // SAFETY: a plain syscall taking integers.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    (nice != -1 || nix::errno::Errno::last_raw() == 0).then_some(nice)
}

/// Has the child spawned from `command` make `settings` between fork and
/// exec. `drop_groups`: with a uid set and no groups given, empty the
/// supplementary groups before the setuid (as std does for a root host),
/// so that a child meant to run as another user keeps none of the host's.
/// This forces std's fork path.
pub(crate) fn settings_at_exec(command: &mut Command, settings: ChildSettings, drop_groups: bool) {
    let rlimits: Vec<(Resource, u64, u64)> = settings
        .rlimits
        .iter()
        .map(|&(limit, soft, hard)| (resource(limit), soft, hard))
        .collect();
    let groups: Option<Vec<Gid>> = match &settings.groups {
        Some(groups) => Some(groups.iter().map(|&g| Gid::from_raw(g)).collect()),
        None if drop_groups => Some(Vec::new()),
        None => None,
    };
    let step = move || -> io::Result<()> {
        if settings.setsid {
            setsid()?;
        }
        for &(resource, soft, hard) in &rlimits {
            setrlimit(resource, soft, hard)?;
        }
        if let Some(nice) = settings.nice {
            // SAFETY: a plain syscall taking integers.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(mask) = settings.umask {
            umask(Mode::from_bits_truncate(mask));
        }
        if let Some(groups) = &groups {
            setgroups(groups)?;
        }
        if let Some(gid) = settings.gid {
            setgid(Gid::from_raw(gid))?;
        }
        if let Some(uid) = settings.uid {
            setuid(Uid::from_raw(uid))?;
        }
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec. It reads
    // memory allocated before the fork (no allocation, no lock) and makes
    // only async-signal-safe calls: setsid, setrlimit, setpriority, umask,
    // setgroups, setgid and setuid (in a child with one thread, glibc's
    // setxid broadcast has no other thread to reach).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, step);
    }
}

/// Has the child spawned from `command` run `hook` between fork and exec,
/// after every step added before. This forces std's fork path.
pub(crate) fn hook_at_exec(command: &mut Command, hook: Hook) {
    // SAFETY: the caller of `Popen::pre_exec` promised that the hook is
    // safe to run between fork and exec (it is an `unsafe fn` stating what
    // the hook may do); the closure only calls it.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, move || (hook.0)());
    }
}
