//! The signals popen acts on, and the clean start it makes before it
//! listens for them.
//!
//! | popen receives                       | the child's process group gets                          |
//! |--------------------------------------|---------------------------------------------------------|
//! | SIGHUP, SIGINT, SIGQUIT, SIGTERM, and SIGALRM, SIGPWR, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGIO, SIGSTKFLT | the same signal and SIGCONT; SIGKILL after the cancel timeout (a cancel) |
//! | the same again, during the cancel    | the same signal, passed on again                        |
//! | SIGUSR1, SIGUSR2, SIGTSTP            | the same signal, nothing more                           |
//! | SIGCONT (`fg`, `bg`)                 | SIGCONT (and the terminal, in the foreground)           |
//! | `--timeout` passes                   | SIGTERM and SIGCONT; SIGKILL after the cancel timeout   |
//!
//! These are every standard signal whose default action would end popen
//! (and leave the child behind) except SIGKILL, which no process can
//! handle, the faults (SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV,
//! SIGSYS), which a process cannot handle usefully, and SIGPIPE, which Rust
//! programs ignore (a write to a closed pipe is EPIPE). The real-time
//! signals, which also end a process by default, are not handled either.
//!
//! A caller may start popen with signals blocked (a blocked SIGTERM would
//! make `kill -TERM popen` do nothing) or with SIGCHLD ignored (every exit
//! status would be lost). popen unblocks every signal before anything else
//! runs, so its threads and its child start with an empty signal mask, and
//! its SIGCHLD handler replaces an inherited SIG_IGN. Any of the signals
//! above but SIGTERM that popen inherits as ignored stays ignored, in popen
//! and in the child, as POSIX shells and `nohup(1)` intend: `nohup popen …`
//! survives the terminal's hangup and so does its child, and a background
//! job of a non-interactive shell is not cancelled by the Ctrl-C meant for
//! the foreground. SIGTERM is always handled.

use nix::sys::signal::{SigSet, Signal};

/// The signals that cancel the child, first passed on to it.
const CANCELLING: [Signal; 12] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGALRM,
    Signal::SIGPWR,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGIO,
    Signal::SIGSTKFLT,
];

/// The signals passed on to the child and nothing more.
const PASSED_ON: [Signal; 3] = [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGTSTP];

/// The signals popen handles, and what it does with each.
pub struct Handled {
    /// Passed on, then the cancel escalation.
    pub cancelling: Vec<Signal>,
    /// Passed on alone.
    pub passed_on: Vec<Signal>,
}

/// Unblocks every signal in this thread (call it first in `main`, before
/// any other thread exists) and returns the signals popen is to handle.
pub fn start_clean() -> Handled {
    let _ = SigSet::empty().thread_set_mask();
    let ignored = ignored_at_start();
    let keep = |signal: &Signal| *signal == Signal::SIGTERM || !ignored.contains(*signal);
    Handled {
        cancelling: CANCELLING.into_iter().filter(keep).collect(),
        passed_on: PASSED_ON.into_iter().filter(keep).collect(),
    }
}

/// The signals whose disposition is SIG_IGN, from /proc/self/status.
fn ignored_at_start() -> SigSet {
    let mut set = SigSet::empty();
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return set;
    };
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    for signal in CANCELLING.into_iter().chain(PASSED_ON) {
        if mask & (1 << (signal as i32 - 1)) != 0 {
            set.add(signal);
        }
    }
    set
}
