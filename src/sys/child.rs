//! A spawned child, watched and signalled through its pidfd.
//!
//! We wait for exactly our own pids, never `waitpid(-1)`, so the exit
//! statuses of other libraries' children are never stolen. Exit is noticed
//! through a pidfd (Linux 5.3 and later): it becomes readable when the child
//! exits, so the reactor wakes us with no SIGCHLD handler, no thread per
//! child and no polling. A SIGCHLD handler would be process-global state
//! shared with every other library; the pidfd is ours alone.
//!
//! Signals and reaping are serialised by one lock per child. A pid (and so
//! a process group id equal to it) cannot be reused while the child is an
//! unreaped zombie, so a signal sent under the lock before the reap can
//! never hit a stranger.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::ReturnCode;

/// What became of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// The kernel accepted it.
    Sent,
    /// Nobody was there to get it: already reaped, or ESRCH.
    Gone,
}

#[derive(Debug)]
pub(crate) struct Child {
    pid: u32,
    pidfd: OwnedFd,
    /// The child leads its own process group and signals go to the group.
    group: bool,
    returncode: Mutex<Option<ReturnCode>>,
}

impl Child {
    /// Takes hold of the just-spawned, unreaped child `pid`.
    ///
    /// # Errors
    /// The pidfd could not be opened (ENOSYS before Linux 5.3, EMFILE). The
    /// child is then killed and reaped here, so it is not left behind.
    pub(crate) fn new(pid: u32, group: bool) -> io::Result<Child> {
        match pidfd_open(pid) {
            Ok(pidfd) => Ok(Child {
                pid,
                pidfd,
                group,
                returncode: Mutex::new(None),
            }),
            Err(err) => {
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

    /// The pidfd: readable once the child has exited.
    pub(crate) fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    fn state(&self) -> MutexGuard<'_, Option<ReturnCode>> {
        // A panic while holding this lock cannot leave the Option torn.
        self.returncode.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The return code, once the child was reaped.
    pub(crate) fn returncode(&self) -> Option<ReturnCode> {
        *self.state()
    }

    /// Reaps the child if it has exited, without blocking.
    ///
    /// # Errors
    /// waitid failed; ECHILD means someone else reaped our child (the host
    /// set SIGCHLD to SIG_IGN, or called `waitpid(-1)`).
    pub(crate) fn try_reap(&self) -> io::Result<Option<ReturnCode>> {
        let mut state = self.state();
        if let Some(code) = *state {
            return Ok(Some(code));
        }
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
        let code = loop {
            match waitid(Id::PIDFd(self.pidfd.as_fd()), flags) {
                Ok(WaitStatus::Exited(_, code)) => break ReturnCode::from_raw(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    break ReturnCode::from_raw(-(signal as i32))
                }
                Ok(_) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => {
                    // Somebody else reaped it: the pid is no longer ours to
                    // signal, and its status is lost (reported as 255).
                    *state = Some(ReturnCode::from_raw(255));
                    return Err(Errno::ECHILD.into());
                }
                Err(errno) => return Err(errno.into()),
            }
        };
        *state = Some(code);
        Ok(Some(code))
    }

    /// Sends `signal` to the child, or to its process group.
    ///
    /// Before the reap, the signal goes to the group (group mode) or through
    /// the pidfd. After the reap, only the group can still be signalled, and
    /// only when `after_reap` says something of ours is still open to it
    /// (a grandchild holding our pipe keeps the group, and so its id, alive).
    ///
    /// # Errors
    /// The kernel refused (EPERM: the child changed its uid, or a hardened
    /// kernel). ESRCH is [`Delivery::Gone`], not an error.
    pub(crate) fn signal(&self, signal: Signal, after_reap: bool) -> io::Result<Delivery> {
        let state = self.state();
        let result = match (*state, self.group) {
            (None, true) => killpg(Pid::from_raw(self.pid as i32), signal),
            (None, false) => pidfd_send_signal(self.pidfd.as_raw_fd(), signal),
            (Some(_), true) if after_reap => killpg(Pid::from_raw(self.pid as i32), signal),
            (Some(_), _) => return Ok(Delivery::Gone),
        };
        drop(state);
        match result {
            Ok(()) => Ok(Delivery::Sent),
            Err(Errno::ESRCH) => Ok(Delivery::Gone),
            Err(errno) => Err(errno.into()),
        }
    }
}

impl Child {
    /// Whether the child's process group still has members, once the
    /// child itself was reaped (grandchildren holding our output). Always
    /// `false` when the child does not lead a group of its own.
    pub(crate) fn group_alive(&self) -> bool {
        self.group && killpg(Pid::from_raw(self.pid as i32), None).is_ok()
    }
}

impl AsRawFd for Child {
    /// The pidfd, readable once the child has exited.
    fn as_raw_fd(&self) -> RawFd {
        self.pidfd.as_raw_fd()
    }
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
    // it touches no memory of ours. Since Linux 5.10 the fd is always
    // close-on-exec.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn pidfd_send_signal(pidfd: RawFd, signal: Signal) -> Result<(), Errno> {
    // SAFETY: pidfd_send_signal with a null siginfo and no flags reads no
    // memory of ours; `pidfd` is open for the duration of the call.
    let res = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_pidfd_send_signal,
            pidfd,
            signal as nix::libc::c_int,
            std::ptr::null::<nix::libc::siginfo_t>(),
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
    use std::process::Command;

    // The std handle is dropped unwaited on purpose: our Child reaps it.
    #[allow(clippy::zombie_processes)]
    #[test]
    fn signal_after_reap_is_gone_and_reap_is_idempotent() {
        let spawned = Command::new("sleep").arg("100").spawn().unwrap();
        let child = Child::new(spawned.id(), false).unwrap();
        assert_eq!(
            child.signal(Signal::SIGKILL, false).unwrap(),
            Delivery::Sent
        );
        let code = loop {
            let mut fds = [nix::poll::PollFd::new(
                child.pidfd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE).unwrap();
            if let Some(code) = child.try_reap().unwrap() {
                break code;
            }
        };
        assert_eq!(code, ReturnCode::from_raw(-9));
        assert_eq!(child.try_reap().unwrap(), Some(code));
        assert_eq!(child.signal(Signal::SIGTERM, true).unwrap(), Delivery::Gone);
    }
}
