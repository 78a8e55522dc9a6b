//! [`Signal`]: a POSIX signal number, as the crate's own type.
//!
//! The crate takes signals in its public API ([`CancelWith`](crate::CancelWith),
//! [`SendSignal`](crate::SendSignal)) as this type rather than another
//! crate's, so that no dependency of ours shows in a caller's code.

use std::fmt;

/// A POSIX signal, by its number on Linux (signal(7)): a standard signal
/// (1 to 31) or a real-time one (`SIGRTMIN` to `SIGRTMAX`, as the C
/// library numbers them: glibc keeps the first two or three for its
/// threads, so `SIGRTMIN` is 34 or 35).
///
/// Built from the constants (`Signal::SIGHUP`, …), from a raw number with
/// [`Signal::from_raw`], or as a real-time signal with [`Signal::rt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

macro_rules! signals {
    ($($name:ident: $doc:literal,)*) => {
        impl Signal {
            $(
                #[doc = $doc]
                pub const $name: Signal = Signal(nix::sys::signal::Signal::$name as i32);
            )*
        }
    };
}

signals! {
    SIGHUP: "Hangup: the terminal closed, or \"reload\" for many daemons (1).",
    SIGINT: "Interrupt from the keyboard, Ctrl-C (2).",
    SIGQUIT: "Quit from the keyboard, Ctrl-\\\\; the default action dumps core (3).",
    SIGKILL: "Kill: cannot be caught, blocked or ignored (9).",
    SIGUSR1: "User-defined signal 1 (10).",
    SIGUSR2: "User-defined signal 2 (12).",
    SIGPIPE: "Write to a pipe with no reader (13).",
    SIGALRM: "Timer expired (14).",
    SIGTERM: "Termination request, the default of `kill(1)` and of a cancel (15).",
    SIGCONT: "Continue if stopped (18).",
    SIGSTOP: "Stop: cannot be caught, blocked or ignored (19).",
    SIGTSTP: "Stop from the keyboard, Ctrl-Z (20).",
    SIGTTIN: "A background process read from its terminal (21).",
    SIGTTOU: "A background process wrote to its terminal with `tostop` set (22).",
    SIGWINCH: "The terminal's window size changed (28).",
}

impl Signal {
    /// The signal with number `number`, or `None` if Linux has no such
    /// signal (0, a negative number, 32 and 33 which glibc keeps for
    /// itself, or above `SIGRTMAX`).
    pub fn from_raw(number: i32) -> Option<Signal> {
        let standard = nix::sys::signal::Signal::try_from(number).is_ok();
        let realtime = (nix::libc::SIGRTMIN()..=nix::libc::SIGRTMAX()).contains(&number);
        (standard || realtime).then_some(Signal(number))
    }

    /// The real-time signal `SIGRTMIN + n`, or `None` past `SIGRTMAX`
    /// (signal(7); `SIGRTMIN + 0` to `+ 29` or `+ 30` with glibc).
    pub fn rt(n: u32) -> Option<Signal> {
        let number = nix::libc::SIGRTMIN().checked_add(i32::try_from(n).ok()?)?;
        (number <= nix::libc::SIGRTMAX()).then_some(Signal(number))
    }

    /// The signal's number.
    pub fn as_raw(self) -> i32 {
        self.0
    }
}

/// Where [`SendSignal`](crate::SendSignal) sends its signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SignalTarget {
    /// The child's process group: the child and every process it started
    /// that stayed in the group (`kill(-pgid, sig)`), as a cancel does.
    /// A child spawned with [`Popen::process_group(false)`](crate::Popen::process_group)
    /// leads no group: then the child alone.
    #[default]
    Group,
    /// The child alone (its pidfd), whatever its group (Go's
    /// `Process.Signal`, Python's `Popen.send_signal`). Nothing is sent
    /// once the child exited.
    Child,
}

impl fmt::Display for Signal {
    /// The signal's name, such as `SIGTERM`, or `SIGRTMIN+N` for a
    /// real-time signal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match nix::sys::signal::Signal::try_from(self.0) {
            Ok(signal) => f.write_str(signal.as_str()),
            Err(_) => write!(f, "SIGRTMIN+{}", self.0 - nix::libc::SIGRTMIN()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Signal;

    #[test]
    fn numbers_and_names_round_trip() {
        assert_eq!(Signal::from_raw(15), Some(Signal::SIGTERM));
        assert_eq!(Signal::SIGHUP.as_raw(), 1);
        assert_eq!(Signal::SIGQUIT.to_string(), "SIGQUIT");
        assert_eq!(Signal::from_raw(0), None);
        assert_eq!(Signal::from_raw(-1), None);
        assert_eq!(Signal::from_raw(65), None);
        assert_eq!(Signal::from_raw(32), None, "kept by glibc");
    }

    #[test]
    fn real_time_signals_are_numbered_from_sigrtmin() {
        let first = Signal::rt(0).expect("SIGRTMIN");
        assert_eq!(first.as_raw(), nix::libc::SIGRTMIN());
        assert_eq!(first.to_string(), "SIGRTMIN+0");
        assert_eq!(
            Signal::rt(2).map(|s| s.to_string()).as_deref(),
            Some("SIGRTMIN+2")
        );
        let span = (nix::libc::SIGRTMAX() - nix::libc::SIGRTMIN()) as u32;
        assert_eq!(
            Signal::rt(span).map(Signal::as_raw),
            Some(nix::libc::SIGRTMAX())
        );
        assert_eq!(Signal::rt(span + 1), None);
        assert_eq!(Signal::from_raw(nix::libc::SIGRTMAX()), Signal::rt(span));
    }
}
