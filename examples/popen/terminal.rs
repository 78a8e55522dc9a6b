//! Job control: popen's terminal, lent to the child's process group while
//! popen is the terminal's foreground job, as a shell lends it to a job.
//!
//! The child runs in a process group of its own (so that a cancel reaches
//! all of it and nothing else). When popen is the foreground job of its
//! controlling terminal, and alone in its process group, it makes the
//! child's group the foreground group, so that the child can read the
//! terminal and Ctrl-C, Ctrl-\ and Ctrl-Z reach it. When popen shares its
//! group (`popen seq 1000 | less`, or a script without job control), the
//! terminal stays where the shell put it, so that `less` keeps it; a child
//! that then touches the terminal is stopped for it (SIGTTIN, SIGTTOU), and
//! popen, in the foreground, lends it the terminal on demand.
//!
//! When the child stops (Ctrl-Z, SIGTTIN or SIGTTOU in the background, a
//! SIGSTOP from itself or anyone), popen takes the terminal back and stops
//! itself with the same signal (SIGSTOP for any other), so that its shell
//! sees the job stopped and gives the prompt back. When popen is continued
//! (`fg`, `bg`, or SIGCONT from anyone), it lends the terminal again if it
//! is in the foreground (`fg`) and continues the child's group. A Ctrl-Z
//! that reaches popen rather than the child (popen had the terminal: after
//! `bg` then `fg`, bash gives the terminal to a running job without a
//! signal) is passed on as SIGTSTP to the child's group, whose stop then
//! stops popen as above.

use std::fs::{File, OpenOptions};

use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, getpid, tcgetpgrp, tcsetpgrp, Pid};

/// popen's controlling terminal (`/dev/tty`, whichever of popen's
/// stdin, stdout and stderr it is, if any).
pub struct Terminal {
    tty: File,
    ours: Pid,
    child: Pid,
}

impl Terminal {
    /// The controlling terminal, if popen has one, for the child `pid`
    /// (the leader of its own process group).
    pub fn open(pid: u32) -> Option<Terminal> {
        let tty = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        // Fails unless it is our session's controlling terminal.
        tcgetpgrp(&tty).ok()?;
        Some(Terminal {
            tty,
            ours: getpgrp(),
            child: Pid::from_raw(i32::try_from(pid).ok()?),
        })
    }

    fn foreground(&self) -> Option<Pid> {
        tcgetpgrp(&self.tty).ok()
    }

    /// Makes the child's group the foreground group, if popen's is and
    /// popen is alone in it (see the module docs); returns whether it did.
    /// A child that touched the terminal before it was its own is stopped
    /// for it: see [`Terminal::can_lend_for`].
    pub fn lend(&self) -> bool {
        self.foreground() == Some(self.ours) && alone_in_group(self.ours) && self.hand_over()
    }

    fn hand_over(&self) -> bool {
        tcsetpgrp(&self.tty, self.child).is_ok()
    }

    /// Whether the child stopped with `signal` only for want of the
    /// terminal, and may go on: it has the terminal now (it touched it
    /// just before it was lent), or popen, in the foreground, lends it now
    /// (whoever shares popen's group: the child asked for it).
    pub fn can_lend_for(&self, signal: Signal) -> bool {
        matches!(signal, Signal::SIGTTIN | Signal::SIGTTOU)
            && (self.foreground() == Some(self.child)
                || (self.foreground() == Some(self.ours) && self.hand_over()))
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
        stop_self(own);
    }
}

/// Stops popen with `signal`, as if it had been sent by someone else;
/// returns once popen is continued. popen may handle `signal` itself
/// (SIGTSTP): the default action is put back for the moment of the stop.
pub fn stop_self(signal: Signal) {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_DFL runs no code of ours in a signal handler;
    // the handler it replaces for this moment is put back below as it was.
    let old = unsafe { sigaction(signal, &default) };
    // A stop signal sent to ourselves is acted on before kill() returns
    // (it is delivered to this thread, the thread group's leader). In an
    // orphaned process group the kernel discards SIGTSTP, SIGTTIN and
    // SIGTTOU: nobody could continue us, and popen goes on waiting.
    let _ = kill(getpid(), signal);
    if let Ok(old) = old {
        // SAFETY: puts back exactly the action that was installed before.
        let _ = unsafe { sigaction(signal, &old) };
    }
}

/// Whether no process but popen is in process group `group`.
fn alone_in_group(group: Pid) -> bool {
    let me = getpid().as_raw();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    !entries.flatten().any(|entry| {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            return false;
        };
        pid != me && process_group(pid) == Some(group.as_raw())
    })
}

/// The process group of `pid`, from /proc/PID/stat (field 5, after the
/// command name in parentheses, which may itself hold spaces).
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(2)?.parse().ok()
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

/// Whether child `pid` has exited (or was reaped already). Read with
/// WNOWAIT, so the exit stays for the library to collect.
pub fn exited(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return true;
    };
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    !matches!(
        waitid(Id::Pid(Pid::from_raw(raw)), flags),
        Ok(WaitStatus::StillAlive)
    )
}
