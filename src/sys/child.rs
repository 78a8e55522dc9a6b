//! A spawned child, watched and signalled through its pidfd, and the one
//! rule that keeps every signal of ours away from strangers.
//!
//! # The invariant
//! **A pid or process group id is signalled only while the child that
//! owns it is our unreaped child.** The kernel keeps the number of an
//! unreaped child (a zombie included) reserved: no new process can get it,
//! and so no new process group can have it as its id either. Once a child
//! is reaped, its number may be handed out again at once, and a signal
//! sent to it could reach an unrelated process. So:
//!
//! * the exit status is read **without reaping** (`waitid` with `WNOWAIT`):
//!   an exited leader stays our zombie, and its group id stays ours, for as
//!   long as the task may still signal its group;
//! * the child is reaped only when nobody needs the number any more: its
//!   task has ended (no more [`Cancel`](crate::Cancel) can come) *and* no
//!   cancel escalation is under way (see `escalation.rs`). Each is a
//!   [`Hold`]; the reap happens when the last hold is released;
//! * [`Child::signal`] refuses once the child is reaped, and every path that
//!   reaps (or may have reaped) marks it so under the same lock, even when
//!   the reap reports an error;
//! * signals and the reap are serialised by that lock, so no signal can
//!   race with the reap.
//!
//! The cost: a child whose task goes on after its exit (a grandchild holds
//! its output, or a cancelled group is still being escalated) shows as a
//! zombie (`<defunct>`) until then.
//!
//! What a host must not do, since it breaks the rule behind our back: reap
//! children it did not spawn (`waitpid(-1)`, or SIGCHLD set to `SIG_IGN`,
//! which makes the kernel reap every child at once). The second one is
//! undone before each spawn; see `signals.rs`. Should a child be reaped
//! behind our back all the same, it counts as reaped at once, and its
//! status is read from its pidfd (`PIDFD_GET_INFO`, Linux 6.15); only on
//! an older kernel is it lost.
//!
//! # Exit without SIGCHLD
//! We wait for exactly our own pids, never `waitpid(-1)`, so the exit
//! statuses of other libraries' children are never stolen. Exit is noticed
//! through a pidfd (Linux 5.3; `waitid` on a pidfd needs 5.4): it becomes
//! readable when the child exits, so the reactor wakes us with no SIGCHLD
//! handler, no thread per child and no polling. A SIGCHLD handler would be
//! process-global state shared with every other library; the pidfd is ours
//! alone. The pidfd is closed once the task has ended and the exit was
//! seen; a zombie kept after that is reaped by pid, which is safe because
//! the number is still ours.
//!
//! Stops and continues give no pidfd event: a task that asks for them
//! ([`Popen::stop_listener`](crate::Popen::stop_listener)) listens for
//! SIGCHLD through tokio's handler, which keeps any handler installed
//! before it, and then asks `waitid` about its own pidfd only
//! ([`Child::poll_job_state`]).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::Signal;

use crate::SignalTarget;
use nix::unistd::Pid;
use tokio::io::Interest;

use crate::ReturnCode;

/// A change of a running child's job-control state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobState {
    /// Stopped by this signal (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU).
    Stopped(i32),
    /// Continued by SIGCONT.
    Continued,
}

/// What became of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// The kernel accepted it.
    Sent,
    /// Nobody was there to get it: already reaped, or ESRCH.
    Gone,
}

/// Who still needs the child's numbers reserved (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// The task has not ended: a cancel may still come.
    Task,
    /// A cancel escalation is under way.
    Escalation,
}

/// Where the child is in its life, as far as we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Running, or exited without our having looked.
    Running,
    /// Exited with this code; still our zombie.
    Exited(ReturnCode),
    /// Reaped (by us, or, if `None`, by someone else, its status lost).
    /// Its numbers are no longer ours.
    Reaped(Option<ReturnCode>),
}

#[derive(Debug)]
struct Inner {
    status: Status,
    /// What the child cost, read with its exit status.
    usage: Option<crate::ResourceUsage>,
    /// Closed when the task ends; the AsyncFd that watches it holds its own
    /// `Arc`, so it is never closed while registered with the reactor.
    pidfd: Option<Arc<OwnedFd>>,
    task_hold: bool,
    escalation_hold: bool,
}

#[derive(Debug)]
pub(crate) struct Child {
    pid: u32,
    /// When it was spawned (just before), for the wall time.
    spawned: std::time::Instant,
    /// The child leads its own process group and signals go to the group.
    group: bool,
    inner: Mutex<Inner>,
}

impl Child {
    /// Takes hold of the just-spawned, unreaped child `pid`.
    ///
    /// # Errors
    /// The pidfd could not be opened (ENOSYS before Linux 5.3, EMFILE). The
    /// child is then killed and reaped here, so it is not left behind.
    pub(crate) fn new(pid: u32, group: bool) -> io::Result<Child> {
        match pidfd_open(pid).and_then(|pidfd| {
            waitid_on_pidfd_works(&pidfd)?;
            Ok(pidfd)
        }) {
            Ok(pidfd) => Ok(Child {
                pid,
                group,
                spawned: std::time::Instant::now(),
                inner: Mutex::new(Inner {
                    status: Status::Running,
                    usage: None,
                    pidfd: Some(Arc::new(pidfd)),
                    task_hold: true,
                    escalation_hold: false,
                }),
            }),
            // ESRCH: the child ran and was already reaped behind our back
            // (see the module docs); its pid may name a stranger by now,
            // so it is not touched.
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Err(io::Error::other(format!(
                "pid {pid} ran but was reaped by someone else before it could be watched \
                     (the host set SIGCHLD to SIG_IGN, or reaps children it did not spawn)"
            ))),
            Err(err) => {
                // Still our unreaped child: the pid names it.
                let pid = Pid::from_raw(pid as i32);
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                Err(err)
            }
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether signals go to the child's process group.
    pub(crate) fn leads_group(&self) -> bool {
        self.group
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update below is a single assignment: a panic elsewhere
        // while the lock was held cannot leave it torn.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pidfd, to watch for the exit; `None` once the task ended.
    pub(crate) fn pidfd(&self) -> Option<Arc<OwnedFd>> {
        self.lock().pidfd.clone()
    }

    /// Waits, through the current thread's reactor, until the child has
    /// exited, and reads its status without reaping it (see
    /// [`poll_exit`](Self::poll_exit)).
    ///
    /// # Errors
    /// No reactor runs on this thread, epoll refused the pidfd, or the
    /// status was lost (ECHILD).
    pub(crate) async fn exited(self: Arc<Self>) -> io::Result<ReturnCode> {
        let Some(pidfd) = self.pidfd() else {
            // Closed only once the exit was seen.
            return self
                .poll_exit()?
                .ok_or_else(|| io::Error::other("the pidfd was closed before the exit"));
        };
        let watched = super::reactor::watch(pidfd, Interest::READABLE)?;
        loop {
            let mut guard = watched.readable().await?;
            match self.poll_exit()? {
                Some(code) => return Ok(code),
                None => guard.clear_ready(),
            }
        }
    }

    /// The return code, once the exit was seen.
    pub(crate) fn returncode(&self) -> Option<ReturnCode> {
        match self.lock().status {
            Status::Running => None,
            Status::Exited(code) => Some(code),
            Status::Reaped(code) => code,
        }
    }

    /// What the child cost, once its exit was seen by us.
    pub(crate) fn usage(&self) -> Option<crate::ResourceUsage> {
        self.lock().usage
    }

    /// Whether the exit was seen (the child is our zombie, or reaped).
    pub(crate) fn has_exited(&self) -> bool {
        self.lock().status != Status::Running
    }

    /// Whether the child was reaped: its numbers are no longer ours.
    pub(crate) fn is_reaped(&self) -> bool {
        matches!(self.lock().status, Status::Reaped(_))
    }

    /// Reads the exit status if the child has exited, without blocking and
    /// without reaping it (`WNOWAIT`): it stays our zombie until every
    /// [`Hold`] is released.
    ///
    /// # Errors
    /// ECHILD: somebody else reaped our child (the host called
    /// `waitpid(-1)`); its status is lost and it counts as reaped.
    pub(crate) fn poll_exit(&self) -> io::Result<Option<ReturnCode>> {
        let mut inner = self.lock();
        match inner.status {
            Status::Exited(code) | Status::Reaped(Some(code)) => return Ok(Some(code)),
            Status::Reaped(None) => return Err(Errno::ECHILD.into()),
            Status::Running => {}
        }
        let target = match &inner.pidfd {
            Some(pidfd) => WaitTarget::Pidfd(pidfd.as_raw_fd()),
            None => WaitTarget::Pid(self.pid),
        };
        match wait_status(target, libc::WNOWAIT) {
            Ok(Some((code, mut usage))) => {
                usage.wall_time = self.spawned.elapsed();
                inner.usage = Some(usage);
                inner.status = Status::Exited(code);
                self.reap_if_free(&mut inner);
                Ok(Some(code))
            }
            Ok(None) => Ok(None),
            Err(Errno::ECHILD) => {
                // Reaped behind our back. Since Linux 6.15 the pidfd still
                // knows how the child ended.
                let code = inner.pidfd.as_deref().and_then(exit_info);
                inner.status = Status::Reaped(code);
                inner.pidfd = None;
                match code {
                    Some(code) => {
                        log::warn!(
                            "pid {} was reaped by someone else (a waitpid(-1) in the host?); \
                             its status was read from its pidfd",
                            self.pid
                        );
                        Ok(Some(code))
                    }
                    None => Err(Errno::ECHILD.into()),
                }
            }
            Err(errno) => Err(errno.into()),
        }
    }

    /// The next stop or continue of the child not reported yet, if any
    /// (`waitid` with `WSTOPPED | WCONTINUED | WNOHANG`, on the pidfd, so
    /// never another library's child's). The report is consumed: a stop is
    /// told once. `None` once the child was reaped or has exited.
    ///
    /// # Errors
    /// The `waitid` failed otherwise than for a child gone.
    pub(crate) fn poll_job_state(&self) -> io::Result<Option<JobState>> {
        let inner = self.lock();
        if !matches!(inner.status, Status::Running) {
            return Ok(None);
        }
        let target = match &inner.pidfd {
            Some(pidfd) => (libc::P_PIDFD, pidfd.as_raw_fd() as libc::id_t),
            None => (libc::P_PID, self.pid as libc::id_t),
        };
        loop {
            let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
            // SAFETY: `info` is a zeroed siginfo_t the kernel fills in; the
            // id is a pidfd we keep open under the lock, or our unreaped
            // pid; no rusage is asked for.
            let res = unsafe {
                libc::syscall(
                    libc::SYS_waitid,
                    target.0,
                    target.1,
                    info.as_mut_ptr(),
                    libc::WSTOPPED | libc::WCONTINUED | libc::WNOHANG,
                    std::ptr::null_mut::<libc::rusage>(),
                )
            };
            if res < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    Errno::ECHILD => return Ok(None),
                    errno => return Err(errno.into()),
                }
            }
            // SAFETY: zeroed, then possibly filled in by the kernel.
            let info = unsafe { info.assume_init() };
            // SAFETY: for a SIGCHLD siginfo (or the zeroed one WNOHANG
            // leaves), si_pid and si_status are the fields the kernel sets.
            let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
            if pid == 0 {
                return Ok(None);
            }
            return Ok(match info.si_code {
                libc::CLD_STOPPED => Some(JobState::Stopped(status)),
                libc::CLD_CONTINUED => Some(JobState::Continued),
                _ => None,
            });
        }
    }

    /// Takes a hold on the child's numbers; `false` if it was reaped
    /// already (there is nothing left to hold).
    pub(crate) fn hold(&self, hold: Hold) -> bool {
        let mut inner = self.lock();
        if matches!(inner.status, Status::Reaped(_)) {
            return false;
        }
        match hold {
            Hold::Task => inner.task_hold = true,
            Hold::Escalation => inner.escalation_hold = true,
        }
        true
    }

    /// Releases a hold; reaps the child if it has exited and nothing holds
    /// it any more. Releasing the task's hold also closes the pidfd once
    /// the exit was seen (nothing is left to watch). Returns whether the
    /// child is reaped now.
    pub(crate) fn release(&self, hold: Hold) -> bool {
        let mut inner = self.lock();
        match hold {
            Hold::Task => {
                inner.task_hold = false;
                if inner.status != Status::Running {
                    inner.pidfd = None;
                }
            }
            Hold::Escalation => inner.escalation_hold = false,
        }
        self.reap_if_free(&mut inner);
        matches!(inner.status, Status::Reaped(_))
    }

    /// Reaps an exited child that nothing holds. Whatever the reap
    /// returns, the child counts as reaped afterwards: once the kernel may
    /// have reaped it, its numbers are never signalled again.
    fn reap_if_free(&self, inner: &mut Inner) {
        let Status::Exited(code) = inner.status else {
            return;
        };
        if inner.task_hold || inner.escalation_hold {
            return;
        }
        let target = match &inner.pidfd {
            Some(pidfd) => WaitTarget::Pidfd(pidfd.as_raw_fd()),
            None => WaitTarget::Pid(self.pid),
        };
        if let Err(errno) = wait_status(target, 0) {
            log::error!("reaping pid {}: {errno}", self.pid);
        }
        inner.status = Status::Reaped(Some(code));
        inner.pidfd = None;
    }

    /// Sends `signal` to the child's process group (`to` the group, and the
    /// child leads one) or to the child alone, but only while the child is unreaped (see the module docs):
    /// after the reap nothing is sent and the answer is
    /// [`Delivery::Gone`]. A child that is not a group leader and has
    /// exited is gone too: only its zombie is left.
    ///
    /// # Errors
    /// The kernel refused (EPERM: the child changed its uid, or a hardened
    /// kernel). ESRCH is [`Delivery::Gone`], not an error.
    pub(crate) fn signal(&self, signal: crate::Signal, to: SignalTarget) -> io::Result<Delivery> {
        let number = signal.as_raw();
        let mut inner = self.lock();
        let group = self.group && to == SignalTarget::Group;
        let pidfd = inner.pidfd.as_ref().map(|pidfd| pidfd.as_raw_fd());
        if let (Status::Running, false, Some(pidfd)) = (inner.status, group, pidfd) {
            // An exited child the task has not looked at yet is a zombie,
            // which a signal "reaches" to no effect: it is told as gone,
            // and its exit is read now (without reaping it).
            if let Ok(Some((code, mut usage))) =
                wait_status(WaitTarget::Pidfd(pidfd), libc::WNOWAIT)
            {
                usage.wall_time = self.spawned.elapsed();
                inner.usage = Some(usage);
                inner.status = Status::Exited(code);
                return Ok(Delivery::Gone);
            }
        }
        let result = match (inner.status, group, &inner.pidfd) {
            (Status::Reaped(_), _, _) => return Ok(Delivery::Gone),
            (_, true, _) => kill(-(self.pid as i32), number),
            (Status::Running, false, Some(pidfd)) => pidfd_send_signal(pidfd.as_raw_fd(), number),
            (Status::Running, false, None) => kill(self.pid as i32, number),
            (Status::Exited(_), false, _) => return Ok(Delivery::Gone),
        };
        drop(inner);
        match result {
            Ok(()) => Ok(Delivery::Sent),
            Err(Errno::ESRCH) => Ok(Delivery::Gone),
            Err(errno) => Err(errno.into()),
        }
    }

    /// The live members of the child's process group, while its group id
    /// is still ours (empty otherwise, and when the child leads no group).
    pub(crate) fn live_group_members(&self) -> Vec<u32> {
        let inner = self.lock();
        if !self.group || matches!(inner.status, Status::Reaped(_)) {
            return Vec::new();
        }
        super::proc::live_members(self.pid)
    }

    /// Whether the group has a live member, read from `groups`; `false`
    /// once the group id is no longer ours or when there is no group.
    pub(crate) fn group_has_live_member(&self, groups: &mut super::proc::Groups) -> bool {
        let inner = self.lock();
        self.group && !matches!(inner.status, Status::Reaped(_)) && groups.has_live_member(self.pid)
    }
}

/// What a `waitid` call waits for.
#[derive(Clone, Copy)]
enum WaitTarget {
    Pidfd(RawFd),
    /// Only for our own zombie, whose number cannot be reused.
    Pid(u32),
}

/// How a reaped child ended, from its pidfd (`PIDFD_GET_INFO` with
/// `PIDFD_INFO_EXIT`, Linux 6.15): the only record left once someone else
/// reaped it. `None` on an older kernel.
fn exit_info(pidfd: &OwnedFd) -> Option<ReturnCode> {
    let mut info = MaybeUninit::<libc::pidfd_info>::zeroed();
    // SAFETY: `info` is a zeroed pidfd_info of the size the ioctl number
    // encodes; the kernel reads its mask and fills it in.
    let res = unsafe {
        (*info.as_mut_ptr()).mask = u64::from(libc::PIDFD_INFO_EXIT);
        libc::ioctl(pidfd.as_raw_fd(), libc::PIDFD_GET_INFO, info.as_mut_ptr())
    };
    if res < 0 {
        return None;
    }
    // SAFETY: zeroed, then filled in by the kernel.
    let info = unsafe { info.assume_init() };
    if info.mask & u64::from(libc::PIDFD_INFO_EXIT) == 0 {
        return None;
    }
    // A wait status, as waitpid(2) gives it.
    let status = info.exit_code;
    Some(if libc::WIFEXITED(status) {
        ReturnCode::from_raw(libc::WEXITSTATUS(status))
    } else {
        ReturnCode::from_raw(-libc::WTERMSIG(status))
    })
}

/// One `waitid(WEXITED | WNOHANG | extra)`: the exit status if the child
/// has exited, with what it cost (the kernel's `rusage`, which the raw
/// system call fills in even with `WNOWAIT`; glibc's `waitid` does not
/// pass it on, hence the raw call). Every status the kernel reports is
/// decoded: an exit code, or `-N` for a death by signal `N`, real-time
/// signals included (as Python does). The usage's wall time is left 0.
fn wait_status(
    target: WaitTarget,
    extra: libc::c_int,
) -> Result<Option<(ReturnCode, crate::ResourceUsage)>, Errno> {
    let (idtype, id) = match target {
        WaitTarget::Pidfd(fd) => (libc::P_PIDFD, fd as libc::id_t),
        WaitTarget::Pid(pid) => (libc::P_PID, pid as libc::id_t),
    };
    loop {
        let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
        let mut rusage = MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `info` and `rusage` are zeroed structs of the kernel's
        // layout for this architecture, which it fills in; the id is a
        // pidfd we keep open for the call, or a pid.
        let res = unsafe {
            libc::syscall(
                libc::SYS_waitid,
                idtype,
                id,
                info.as_mut_ptr(),
                libc::WEXITED | libc::WNOHANG | extra,
                rusage.as_mut_ptr(),
            )
        };
        if res < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                errno => return Err(errno),
            }
        }
        // SAFETY: zeroed, then possibly filled in by the kernel: every
        // field is initialised either way.
        let info = unsafe { info.assume_init() };
        // SAFETY: for SIGCHLD siginfo (or the zeroed one WNOHANG leaves
        // when nothing has exited), si_pid and si_status are the fields the
        // kernel sets.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        let code = match info.si_code {
            libc::CLD_EXITED => ReturnCode::from_raw(status),
            // CLD_KILLED, CLD_DUMPED: `status` is the signal number.
            _ => ReturnCode::from_raw(-status),
        };
        // SAFETY: zeroed, then filled in by the kernel with the child.
        let rusage = unsafe { rusage.assume_init() };
        let time = |tv: libc::timeval| {
            Duration::new(
                u64::try_from(tv.tv_sec).unwrap_or(0),
                u32::try_from(tv.tv_usec).unwrap_or(0) * 1000,
            )
        };
        let usage = crate::ResourceUsage::new(
            time(rusage.ru_utime),
            time(rusage.ru_stime),
            u64::try_from(rusage.ru_maxrss).unwrap_or(0) * 1024,
            Duration::ZERO,
            info.si_code == libc::CLD_DUMPED,
        );
        return Ok(Some((code, usage)));
    }
}

/// Checks, once per process, that `waitid` accepts a pidfd (Linux 5.4;
/// 5.3 has pidfds but answers EINVAL).
///
/// # Errors
/// [`io::ErrorKind::Unsupported`], naming the kernel version needed.
fn waitid_on_pidfd_works(pidfd: &OwnedFd) -> io::Result<()> {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let works = *WORKS.get_or_init(|| {
        wait_status(WaitTarget::Pidfd(pidfd.as_raw_fd()), libc::WNOWAIT) != Err(Errno::EINVAL)
    });
    if works {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel cannot wait on a pidfd: Linux 5.4 or later is needed",
        ))
    }
}

pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
    // it touches no memory of ours. The fd is always close-on-exec (since
    // pidfd_open came, in Linux 5.3).
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOSYS) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel has no pidfds: Linux 5.4 or later is needed",
            ));
        }
        return Err(err);
    }
    // SAFETY: the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `kill(2)`: `signal` to `pid`, or to process group `-pid` when `pid` is
/// negative. Any signal number, real-time ones included.
fn kill(pid: i32, signal: i32) -> Result<(), Errno> {
    // SAFETY: kill takes two integers and reads no memory of ours.
    Errno::result(unsafe { libc::kill(pid, signal) }).map(drop)
}

pub(crate) fn pidfd_send_signal(pidfd: RawFd, signal: i32) -> Result<(), Errno> {
    // SAFETY: pidfd_send_signal with a null siginfo and no flags reads no
    // memory of ours; `pidfd` is open for the duration of the call.
    let res = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if res < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::process::Command;

    fn await_exit(child: &Child) -> ReturnCode {
        loop {
            let pidfd = child.pidfd().unwrap();
            let mut fds = [nix::poll::PollFd::new(
                pidfd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE).unwrap();
            if let Some(code) = child.poll_exit().unwrap() {
                return code;
            }
        }
    }

    fn state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat[stat.rfind(')')? + 2..].chars().next()
    }

    // The std handle is dropped unwaited on purpose: our Child reaps it.
    #[allow(clippy::zombie_processes)]
    #[test]
    fn exit_is_read_without_reaping_until_every_hold_is_released() {
        let spawned = Command::new("sleep").arg("100").spawn().unwrap();
        let child = Child::new(spawned.id(), false).unwrap();
        assert_eq!(
            child
                .signal(crate::Signal::SIGKILL, SignalTarget::Group)
                .unwrap(),
            Delivery::Sent
        );
        assert_eq!(await_exit(&child), ReturnCode::from_raw(-9));
        assert_eq!(state(child.pid()), Some('Z'), "kept as our zombie");
        assert!(child.hold(Hold::Escalation));
        assert!(!child.release(Hold::Task), "the escalation still holds it");
        assert_eq!(state(child.pid()), Some('Z'));
        assert!(child.release(Hold::Escalation));
        assert_eq!(state(child.pid()), None, "reaped");
        assert_eq!(child.returncode(), Some(ReturnCode::from_raw(-9)));
        assert_eq!(
            child
                .signal(crate::Signal::SIGTERM, SignalTarget::Group)
                .unwrap(),
            Delivery::Gone
        );
        assert!(!child.hold(Hold::Task));
    }

    #[allow(clippy::zombie_processes)]
    #[test]
    fn a_real_time_signal_is_decoded() {
        let spawned = Command::new("sleep").arg("100").spawn().unwrap();
        let child = Child::new(spawned.id(), false).unwrap();
        let rt = libc::SIGRTMIN() + 6;
        // SAFETY: a plain kill(2) of our own unreaped child.
        assert_eq!(unsafe { libc::kill(child.pid() as i32, rt) }, 0);
        assert_eq!(await_exit(&child), ReturnCode::from_raw(-rt));
        assert!(child.release(Hold::Task));
    }
}
