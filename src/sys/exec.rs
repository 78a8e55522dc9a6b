//! The spawn settings that `posix_spawn` cannot make, made by the child
//! itself between fork and exec: a new session, resource limits, the nice
//! value, the umask, the credentials, and the caller's own hooks.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::resource::Resource;

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
    /// The resource limits as the child sets them, and the supplementary
    /// groups it sets (`drop_groups`: none, when a uid is set without
    /// groups), made before the spawn for [`Applied`] to borrow.
    /// The settings as [`apply`] reads them, borrowing the lists made by
    /// [`lists`](Self::lists); `host` is the pid the child's parent-death
    /// check expects as its parent.
    pub(crate) fn applied<'a>(
        &self,
        rlimits: &'a [Limit],
        groups: Option<&'a [libc::gid_t]>,
        host: i32,
    ) -> Applied<'a> {
        Applied {
            join_cgroup: self.join_cgroup,
            setsid: self.setsid,
            controlling_terminal: self.controlling_terminal,
            rlimits,
            nice: self.nice,
            umask: self.umask,
            groups,
            gid: self.gid,
            uid: self.uid,
            parent_death_signal: self.parent_death_signal.map(|signal| (signal, host)),
        }
    }

    pub(crate) fn lists(&self, drop_groups: bool) -> (Vec<Limit>, Option<Vec<libc::gid_t>>) {
        let rlimits = self
            .rlimits
            .iter()
            .map(|&(limit, soft, hard)| Limit::new(limit, soft, hard))
            .collect();
        let groups = match &self.groups {
            Some(groups) => Some(groups.clone()),
            None if drop_groups => Some(Vec::new()),
            None => None,
        };
        (rlimits, groups)
    }

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

/// One of our steps between fork and exec, as the child reports its
/// failure: the host names it ([`SpawnSpec::step_name`](crate::spawn::SpawnSpec::step_name)),
/// since an errno alone could not tell a hook's ENOENT from a program not
/// found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    JoinCgroup,
    Setsid,
    ControllingTerminal,
    /// The index of the limit among the task's own.
    Rlimit(u16),
    Nice,
    Groups,
    Gid,
    Uid,
    ParentDeathSignal,
    /// The child's fd number.
    PassFd(u16),
    /// The index of the caller's hook.
    Hook(u16),
    /// Making a fd table of its own, of the fds it is given (see
    /// `sys/spawn.rs`).
    UnshareFds,
    /// Taking on the host's signal state: an empty mask, no ignored signal.
    Signals,
    /// Joining the child's own process group.
    ProcessGroup,
    /// Installing a stream or a passed fd at its number.
    MoveFd(u16),
}

impl Step {
    /// The step as four bytes: its kind, then its index.
    pub(crate) fn encode(self) -> u32 {
        let (kind, index) = match self {
            Step::JoinCgroup => (1, 0),
            Step::Setsid => (2, 0),
            Step::ControllingTerminal => (3, 0),
            Step::Rlimit(i) => (4, i),
            Step::Nice => (5, 0),
            Step::Groups => (6, 0),
            Step::Gid => (7, 0),
            Step::Uid => (8, 0),
            Step::ParentDeathSignal => (9, 0),
            Step::PassFd(i) => (10, i),
            Step::Hook(i) => (11, i),
            Step::UnshareFds => (12, 0),
            Step::Signals => (14, 0),
            Step::ProcessGroup => (15, 0),
            Step::MoveFd(i) => (16, i),
        };
        (kind << 16) | u32::from(index)
    }

    /// The step [`encode`](Self::encode) gave, if any.
    pub(crate) fn decode(code: u32) -> Option<Step> {
        let index = (code & 0xffff) as u16;
        Some(match code >> 16 {
            1 => Step::JoinCgroup,
            2 => Step::Setsid,
            3 => Step::ControllingTerminal,
            4 => Step::Rlimit(index),
            5 => Step::Nice,
            6 => Step::Groups,
            7 => Step::Gid,
            8 => Step::Uid,
            9 => Step::ParentDeathSignal,
            10 => Step::PassFd(index),
            11 => Step::Hook(index),
            12 => Step::UnshareFds,
            14 => Step::Signals,
            15 => Step::ProcessGroup,
            16 => Step::MoveFd(index),
            _ => return None,
        })
    }
}

/// A close-on-exec pipe through which the child says which of our steps
/// failed (std passes the host only the errno of a failed step or exec).
#[derive(Debug)]
pub(crate) struct Steps {
    read: OwnedFd,
    write: OwnedFd,
}

impl Steps {
    /// # Errors
    /// The pipe could not be made.
    pub(crate) fn new() -> io::Result<Steps> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        Ok(Steps { read, write })
    }

    /// How the child reports a failed step.
    fn report(&self) -> Report {
        Report {
            fd: self.write.as_raw_fd(),
        }
    }

    /// The step the child reported failed, once the spawn failed.
    pub(crate) fn failed(&self) -> Option<Step> {
        let mut buf = [0u8; 4];
        match nix::unistd::read(&self.read, &mut buf) {
            Ok(4) => Step::decode(u32::from_ne_bytes(buf)),
            _ => None,
        }
    }
}

/// How the child reports that one step failed.
#[derive(Debug, Clone, Copy)]
struct Report {
    fd: RawFd,
}

impl Report {
    /// In the child: says `step` failed, and passes `result` on.
    fn on<T>(self, step: Step, result: Result<T, impl Into<io::Error>>) -> io::Result<T> {
        result.map_err(|err| {
            let bytes = step.encode().to_ne_bytes();
            // SAFETY: write(2) is async-signal-safe; `bytes` lives for the
            // call. Four bytes into an empty pipe never block nor split.
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
pub(crate) fn pass_fds_at_exec(command: &mut Command, moves: Vec<(RawFd, RawFd)>, steps: &Steps) {
    let report = steps.report();
    let step = move || -> io::Result<()> {
        for &(from, to) in &moves {
            // SAFETY: dup2 is async-signal-safe and takes integers; onto
            // `to` it closes whatever the child had there, its own copy.
            let res = unsafe { libc::dup2(from, to) };
            let step = Step::PassFd(u16::try_from(to).unwrap_or(u16::MAX));
            report.on(step, errno_if(res < 0))?;
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

/// `Err(errno)` if `failed`: for the raw calls that return -1 and set it.
pub(crate) fn errno_if(failed: bool) -> io::Result<()> {
    match failed {
        true => Err(io::Error::last_os_error()),
        false => Ok(()),
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

/// A resource limit as the child sets it: `setrlimit(resource, soft,
/// hard)`. Laid out in C order so that the spawner reads a list of them
/// from its request as it is.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    pub(crate) resource: u32,
    /// Zero: the layout has no padding, so the list is sent as bytes.
    pub(crate) pad: u32,
    pub(crate) soft: u64,
    pub(crate) hard: u64,
}

impl Limit {
    pub(crate) fn new(limit: Rlimit, soft: u64, hard: u64) -> Limit {
        Limit {
            resource: resource(limit) as u32,
            pad: 0,
            soft,
            hard,
        }
    }
}

/// What the child sets for itself, borrowed from memory made before the
/// fork: [`apply`] reads it in the child, where nothing may be allocated.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Applied<'a> {
    pub(crate) join_cgroup: Option<RawFd>,
    pub(crate) setsid: bool,
    pub(crate) controlling_terminal: Option<RawFd>,
    pub(crate) rlimits: &'a [Limit],
    pub(crate) nice: Option<i32>,
    pub(crate) umask: Option<u32>,
    /// `Some(&[])` empties the supplementary groups.
    pub(crate) groups: Option<&'a [libc::gid_t]>,
    pub(crate) gid: Option<u32>,
    pub(crate) uid: Option<u32>,
    /// `(signal, host pid)`.
    pub(crate) parent_death_signal: Option<(i32, i32)>,
}

/// In the child, between fork and exec: makes the settings of `applied`
/// in the order [`ChildSettings`] gives.
///
/// # Errors
/// The step that failed, with its errno.
pub(crate) fn apply(applied: &Applied<'_>) -> Result<(), (Step, io::Error)> {
    let check = |step: Step, failed: bool| errno_if(failed).map_err(|err| (step, err));
    // SAFETY (every call below): plain async-signal-safe syscalls taking
    // integers or pointers into `applied`, which outlives the call.
    // setgroups, setgid and setuid are the raw syscalls, which change this
    // process alone: glibc's wrappers would run its setxid broadcast over
    // the host's threads, whose memory a child made with CLONE_VM shares,
    // taking the host's locks and signalling the host's threads
    // (`sys/spawn.rs`).
    unsafe {
        if let Some(procs) = applied.join_cgroup {
            super::cgroup::join(procs).map_err(|err| (Step::JoinCgroup, err))?;
        }
        if applied.setsid {
            check(Step::Setsid, libc::setsid() < 0)?;
        }
        if let Some(fd) = applied.controlling_terminal {
            super::pty::make_controlling(fd).map_err(|err| (Step::ControllingTerminal, err))?;
        }
        for (index, limit) in applied.rlimits.iter().enumerate() {
            let value = libc::rlimit {
                rlim_cur: limit.soft,
                rlim_max: limit.hard,
            };
            let step = Step::Rlimit(u16::try_from(index).unwrap_or(u16::MAX));
            check(step, libc::setrlimit(limit.resource as _, &value) < 0)?;
        }
        if let Some(nice) = applied.nice {
            check(
                Step::Nice,
                libc::setpriority(libc::PRIO_PROCESS, 0, nice) < 0,
            )?;
        }
        if let Some(mask) = applied.umask {
            libc::umask(mask as libc::mode_t);
        }
        if let Some(groups) = applied.groups {
            check(
                Step::Groups,
                libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) < 0,
            )?;
        }
        if let Some(gid) = applied.gid {
            check(Step::Gid, libc::syscall(libc::SYS_setgid, gid) < 0)?;
        }
        if let Some(uid) = applied.uid {
            check(Step::Uid, libc::syscall(libc::SYS_setuid, uid) < 0)?;
        }
        if let Some((signal, host)) = applied.parent_death_signal {
            let res = libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong);
            check(Step::ParentDeathSignal, res < 0)?;
            // The host died between the fork and the prctl: the signal it
            // would have sent, now.
            if libc::getppid() != host {
                libc::kill(libc::getpid(), signal);
            }
        }
    }
    Ok(())
}

/// Has the child spawned from `command` make `settings` between fork and
/// exec (see [`apply`]). `drop_groups`: with a uid set and no groups
/// given, empty the supplementary groups before the setuid (as std does
/// for a root host), so that a child meant to run as another user keeps
/// none of the host's. This forces std's fork path.
pub(crate) fn settings_at_exec(
    command: &mut Command,
    settings: ChildSettings,
    drop_groups: bool,
    steps: &Steps,
) {
    let report = steps.report();
    let (rlimits, groups) = settings.lists(drop_groups);
    // The host, as the child's parent: if the child's parent is another
    // process once the parent-death signal is set, the host died before.
    let host = nix::unistd::getpid().as_raw();
    let step = move || -> io::Result<()> {
        let applied = settings.applied(&rlimits, groups.as_deref(), host);
        apply(&applied).or_else(|(step, err)| report.on(step, Err(err)))
    };
    // SAFETY: the closure runs in the child between fork and exec. It reads
    // memory allocated before the fork (no allocation, no lock) and makes
    // only async-signal-safe calls (see `apply`) and write.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, step);
    }
}

/// Has the child spawned from `command` run `hook` between fork and exec,
/// after every step added before. This forces std's fork path.
pub(crate) fn hook_at_exec(command: &mut Command, hook: Hook, index: usize, steps: &Steps) {
    let report = steps.report();
    let step = Step::Hook(u16::try_from(index).unwrap_or(u16::MAX));
    // SAFETY: the caller of `Popen::pre_exec` promised that the hook is
    // safe to run between fork and exec (it is an `unsafe fn` stating what
    // the hook may do); the closure calls it, then at most write(2).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, move || report.on(step, (hook.0)()));
    }
}
