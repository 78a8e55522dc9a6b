//! Job control: popen's terminal, lent to the child's process group while
//! popen is the terminal's foreground job, as a shell lends it to a job.
//!
//! The child runs in a process group of its own (so that a cancel reaches
//! all of it and nothing else). When popen is the foreground job of its
//! terminal, it makes the child's group the foreground group, so that the
//! child can read the terminal and Ctrl-C, Ctrl-\ and Ctrl-Z reach it.
//!
//! When the child stops (Ctrl-Z, SIGTTIN or SIGTTOU, a SIGSTOP from itself
//! or anyone), popen takes the terminal back and stops itself with the same
//! signal (SIGSTOP for any other), so that its shell sees the job stopped
//! and gives the prompt back. When popen is continued (`fg`, `bg`, or
//! SIGCONT from anyone), it lends the terminal to the child's group again
//! if popen is in the foreground (`fg`) and continues the child's group.
//!
//! A shell's `fg` of a job that runs (after `bg`) gives the terminal to
//! popen's group without a signal. popen then learns it is in the
//! foreground when the child next touches the terminal (SIGTTIN or
//! SIGTTOU): it lends it the terminal and continues it instead of stopping.
//! Until then Ctrl-C and Ctrl-\ reach popen, which passes them on; a
//! Ctrl-Z stops popen alone, and the `fg` that follows (with its SIGCONT)
//! hands the terminal over as usual.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, getpid, isatty, tcgetpgrp, tcsetpgrp, Pid};

/// popen's controlling terminal, on its stdin.
pub struct Terminal {
    tty: OwnedFd,
    ours: Pid,
    child: Pid,
}

impl Terminal {
    /// The terminal, if popen's stdin is its controlling terminal, for the
    /// child `pid` (the leader of its own process group).
    pub fn open(pid: u32) -> Option<Terminal> {
        let stdin = io::stdin();
        if !isatty(&stdin).unwrap_or(false) {
            return None;
        }
        // Fails (ENOTTY) unless it is our controlling terminal.
        tcgetpgrp(&stdin).ok()?;
        Some(Terminal {
            tty: stdin.as_fd().try_clone_to_owned().ok()?,
            ours: getpgrp(),
            child: Pid::from_raw(i32::try_from(pid).ok()?),
        })
    }

    fn foreground(&self) -> Option<Pid> {
        tcgetpgrp(&self.tty).ok()
    }

    /// Makes the child's group the foreground group, if popen's is; returns
    /// whether it did. A child that touched the terminal before it was its
    /// own is stopped for it: see [`Terminal::can_lend_for`].
    pub fn lend(&self) -> bool {
        self.foreground() == Some(self.ours) && tcsetpgrp(&self.tty, self.child).is_ok()
    }

    /// Takes the terminal back from the child's group, if it has it.
    pub fn take_back(&self) {
        if self.foreground() != Some(self.child) {
            return;
        }
        // popen's group is in the background now: tcsetpgrp from there is
        // allowed with SIGTTOU blocked (tcsetpgrp(3)), and stops it
        // otherwise.
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let Ok(old) = ttou.thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK) else {
            return;
        };
        let _ = tcsetpgrp(&self.tty, self.ours);
        let _ = old.thread_set_mask();
    }

    /// Whether the child stopped with `signal` only for want of the
    /// terminal, and may go on: it has the terminal now (it touched it
    /// just before it was lent), or popen, in the foreground, lends it.
    /// The second is the case after `bg` then `fg`: bash gives the terminal
    /// to a running job without a SIGCONT, so popen learns of it only here.
    pub fn can_lend_for(&self, signal: Signal) -> bool {
        matches!(signal, Signal::SIGTTIN | Signal::SIGTTOU)
            && (self.foreground() == Some(self.child) || self.lend())
    }

    /// The child stopped with `signal`: take the terminal back and stop
    /// popen the same way, so that the shell sees its job stopped. Returns
    /// once popen is continued.
    pub fn follow_stop(&self, signal: Signal) {
        self.take_back();
        let own = match signal {
            Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU => signal,
            _ => Signal::SIGSTOP,
        };
        log::debug!("the child stopped ({signal}): stopping popen with {own}");
        // A stop signal sent to ourselves is acted on before kill()
        // returns: this returns once popen is continued. (In an orphaned
        // process group the kernel discards SIGTSTP, SIGTTIN and SIGTTOU:
        // nobody could continue us, and popen goes on waiting.)
        let _ = kill(getpid(), own);
    }
}

impl Drop for Terminal {
    /// The terminal goes back to popen's group when popen is done.
    fn drop(&mut self) {
        self.take_back();
    }
}

/// The signal that stopped child `pid`, if a stop is waiting to be
/// reported. Only stops are asked for (WSTOPPED without WEXITED), so the
/// child's exit stays for the library to read.
pub fn stopped(pid: u32) -> Option<Signal> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?);
    match waitid(Id::Pid(pid), WaitPidFlag::WSTOPPED | WaitPidFlag::WNOHANG) {
        Ok(WaitStatus::Stopped(_, signal)) => Some(signal),
        _ => None,
    }
}
