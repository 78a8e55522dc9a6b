//! The spawn settings that `posix_spawn` cannot make, made by the child
//! itself between fork and exec: a new session, resource limits, the nice
//! value, the umask, the credentials, and the caller's own hooks.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{setgid, setgroups, setsid, setuid, Gid, Uid};

use crate::Rlimit;

/// What the child sets for itself, in this order: its cgroup, a new
/// session (and its
/// controlling terminal), the
/// resource limits, the nice value, the umask, then the credentials
/// (supplementary groups, gid, uid), last because the steps before may
/// need the privileges the credentials give up, and the parent-death
/// signal after them, since a change of credentials clears it.
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
    /// The signal the child gets when the thread that spawned it ends.
    pub(crate) parent_death_signal: Option<i32>,
    /// The child's fd (0, 1 or 2) on the terminal that becomes its
    /// controlling terminal, once it leads its new session.
    pub(crate) controlling_terminal: Option<i32>,
    /// The host's fd of the task cgroup's `cgroup.procs`, which the child
    /// joins first of all.
    pub(crate) join_cgroup: Option<i32>,
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

/// The steps of ours the child runs between fork and exec, named, with a
/// close-on-exec pipe through which the child says which one failed: std
/// passes the host only the errno of a failed step or exec, which could
/// not tell a hook's ENOENT from a program not found.
#[derive(Debug)]
pub(crate) struct Steps {
    names: Vec<String>,
    read: OwnedFd,
    write: OwnedFd,
}

impl Steps {
    /// # Errors
    /// The pipe could not be made.
    pub(crate) fn new() -> io::Result<Steps> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        Ok(Steps {
            names: Vec::new(),
            read,
            write,
        })
    }

    /// Names the next step; returns how the child reports its failure.
    fn add(&mut self, name: String) -> Report {
        self.names.push(name);
        Report {
            fd: self.write.as_raw_fd(),
            step: u16::try_from(self.names.len() - 1).unwrap_or(u16::MAX),
        }
    }

    /// The step the child reported failed, once the spawn failed.
    pub(crate) fn failed(&self) -> Option<&str> {
        let mut buf = [0u8; 2];
        match nix::unistd::read(&self.read, &mut buf) {
            Ok(2) => self
                .names
                .get(usize::from(u16::from_ne_bytes(buf)))
                .map(String::as_str),
            _ => None,
        }
    }
}

/// How the child reports that one step failed.
#[derive(Debug, Clone, Copy)]
struct Report {
    fd: RawFd,
    step: u16,
}

impl Report {
    /// In the child: says this step failed, and passes `result` on.
    fn on<T>(self, result: Result<T, impl Into<io::Error>>) -> io::Result<T> {
        result.map_err(|err| {
            let bytes = self.step.to_ne_bytes();
            // SAFETY: write(2) is async-signal-safe; `bytes` lives for the
            // call. Two bytes into an empty pipe never block nor split.
            let _ = unsafe { libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()) };
            err.into()
        })
    }
}

/// Has the child spawned from `command` get each `(from, to)` of `moves`
/// as fd `to` (without close-on-exec) between fork and exec, in order,
/// after the steps added before this one. Every `from` must stay open in
/// the host until the spawn returns, and must differ from every `to`, and
/// nothing the spawn opens may be at a `to` (see `SpawnSpec::pass_fds`).
/// This forces std's fork path.
pub(crate) fn pass_fds_at_exec(
    command: &mut Command,
    moves: Vec<(RawFd, RawFd)>,
    steps: &mut Steps,
) {
    let moves: Vec<(RawFd, RawFd, Report)> = moves
        .into_iter()
        .map(|(from, to)| (from, to, steps.add(format!("pass_fd to fd {to}"))))
        .collect();
    let step = move || -> io::Result<()> {
        for &(from, to, report) in &moves {
            // SAFETY: dup2 is async-signal-safe and takes integers; onto
            // `to` it closes whatever the child had there, its own copy.
            let res = unsafe { libc::dup2(from, to) };
            report.on(if res < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            })?;
        }
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec; it reads
    // memory allocated before the fork and makes only dup2 and write calls,
    // which are async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, step);
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

/// The step that moves the child into its task's cgroup, as a failed
/// step is named.
pub(crate) const JOIN_CGROUP: &str = "joining the task's cgroup";

/// Has the child spawned from `command` make `settings` between fork and
/// exec. `drop_groups`: with a uid set and no groups given, empty the
/// supplementary groups before the setuid (as std does for a root host),
/// so that a child meant to run as another user keeps none of the host's.
/// This forces std's fork path.
pub(crate) fn settings_at_exec(
    command: &mut Command,
    settings: ChildSettings,
    drop_groups: bool,
    steps: &mut Steps,
) {
    let cgroup_step = steps.add(JOIN_CGROUP.to_owned());
    let setsid_step = steps.add("setsid".to_owned());
    let ctty_step = steps.add("TIOCSCTTY (the controlling terminal)".to_owned());
    let rlimits: Vec<(Resource, u64, u64, Report)> = settings
        .rlimits
        .iter()
        .map(|&(limit, soft, hard)| {
            let report = steps.add(format!("rlimit {limit} ({soft}, {hard})"));
            (resource(limit), soft, hard, report)
        })
        .collect();
    let nice_step = steps.add(format!("nice {}", settings.nice.unwrap_or(0)));
    let groups: Option<Vec<Gid>> = match &settings.groups {
        Some(groups) => Some(groups.iter().map(|&g| Gid::from_raw(g)).collect()),
        None if drop_groups => Some(Vec::new()),
        None => None,
    };
    let groups_step = steps.add("setgroups".to_owned());
    let gid_step = steps.add(format!("setgid {}", settings.gid.unwrap_or(0)));
    let uid_step = steps.add(format!("setuid {}", settings.uid.unwrap_or(0)));
    let death_step = steps.add("parent_death_signal".to_owned());
    // The host, as the child's parent: if the child's parent is another
    // process once the parent-death signal is set, the host died before.
    let host = nix::unistd::getpid().as_raw();
    let step = move || -> io::Result<()> {
        if let Some(procs) = settings.join_cgroup {
            cgroup_step.on(super::cgroup::join(procs))?;
        }
        if settings.setsid {
            setsid_step.on(setsid())?;
        }
        if let Some(fd) = settings.controlling_terminal {
            ctty_step.on(super::pty::make_controlling(fd))?;
        }
        for &(resource, soft, hard, report) in &rlimits {
            report.on(setrlimit(resource, soft, hard))?;
        }
        if let Some(nice) = settings.nice {
            // SAFETY: a plain syscall taking integers.
            let res = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
            nice_step.on(if res < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            })?;
        }
        if let Some(mask) = settings.umask {
            umask(Mode::from_bits_truncate(mask));
        }
        if let Some(groups) = &groups {
            groups_step.on(setgroups(groups))?;
        }
        if let Some(gid) = settings.gid {
            gid_step.on(setgid(Gid::from_raw(gid)))?;
        }
        if let Some(uid) = settings.uid {
            uid_step.on(setuid(Uid::from_raw(uid)))?;
        }
        if let Some(signal) = settings.parent_death_signal {
            // SAFETY: plain syscalls taking integers.
            let res = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) };
            death_step.on(if res < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            })?;
            // The host died between the fork and the prctl: the signal it
            // would have sent, now.
            // SAFETY: plain syscalls taking integers.
            unsafe {
                if libc::getppid() != host {
                    libc::kill(libc::getpid(), signal);
                }
            }
        }
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec. It reads
    // memory allocated before the fork (no allocation, no lock) and makes
    // only async-signal-safe calls: setsid, setrlimit, setpriority, umask,
    // setgroups, setgid and setuid (in a child with one thread, glibc's
    // setxid broadcast has no other thread to reach), prctl, getppid,
    // getpid, kill and write.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, step);
    }
}

/// Has the child spawned from `command` run `hook` between fork and exec,
/// after every step added before. This forces std's fork path.
pub(crate) fn hook_at_exec(command: &mut Command, hook: Hook, name: String, steps: &mut Steps) {
    let report = steps.add(name);
    // SAFETY: the caller of `Popen::pre_exec` promised that the hook is
    // safe to run between fork and exec (it is an `unsafe fn` stating what
    // the hook may do); the closure calls it, then at most write(2).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, move || report.on((hook.0)()));
    }
}
