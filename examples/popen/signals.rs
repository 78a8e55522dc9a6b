//! The signals popen acts on, and the clean start it makes before it
//! listens for them.
//!
//! | popen receives            | the child's process group gets                    |
//! |---------------------------|---------------------------------------------------|
//! | SIGHUP, SIGINT, SIGQUIT, SIGTERM | the same signal, then SIGCONT; SIGKILL after the cancel timeout |
//! | `--timeout` passes        | SIGTERM, then SIGCONT; SIGKILL after the cancel timeout |
//! | SIGCONT (`fg`, `bg`)      | SIGCONT (and the terminal, in the foreground)     |
//!
//! A caller may start popen with signals blocked (a blocked SIGTERM would
//! make `kill -TERM popen` do nothing) or with SIGCHLD ignored (every exit
//! status would be lost). popen unblocks every signal before anything else
//! runs, so its threads and its child start with an empty signal mask, and
//! its SIGCHLD handler replaces an inherited SIG_IGN. SIGHUP, SIGINT and
//! SIGQUIT that popen inherits as ignored stay ignored, in popen and in the
//! child, as POSIX shells and `nohup(1)` expect: `nohup popen …` survives
//! the terminal's hangup and so does its child, and a background job of a
//! non-interactive shell is not cancelled by the Ctrl-C meant for the
//! foreground. SIGTERM is always handled.

use nix::sys::signal::{SigSet, Signal};

/// The signals passed on to the child, in the order of the table above.
const PASSED_ON: [Signal; 4] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
];

/// Unblocks every signal in this thread (call it first in `main`, before
/// any other thread exists) and returns the signals popen is to pass on.
pub fn start_clean() -> Vec<Signal> {
    let _ = SigSet::empty().thread_set_mask();
    let ignored = ignored_at_start();
    PASSED_ON
        .into_iter()
        .filter(|&signal| signal == Signal::SIGTERM || !ignored.contains(signal))
        .collect()
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
    for signal in PASSED_ON {
        if mask & (1 << (signal as i32 - 1)) != 0 {
            set.add(signal);
        }
    }
    set
}
