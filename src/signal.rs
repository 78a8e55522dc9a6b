//! [`Signal`]: a POSIX signal number, as the crate's own type.
//!
//! The crate takes signals in its public API ([`CancelWith`](crate::CancelWith),
//! [`SendSignal`](crate::SendSignal)) as this type rather than another
//! crate's, so that no dependency of ours shows in a caller's code.

use std::fmt;

/// A POSIX signal, by its number on Linux (signal(7)).
///
/// Built from the constants (`Signal::SIGHUP`, …) or from a raw number with
/// [`Signal::from_raw`]. Real-time signals are not supported yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(nix::sys::signal::Signal);

macro_rules! signals {
    ($($name:ident: $doc:literal,)*) => {
        impl Signal {
            $(
                #[doc = $doc]
                pub const $name: Signal = Signal(nix::sys::signal::Signal::$name);
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
    /// (non-real-time) signal.
    pub fn from_raw(number: i32) -> Option<Signal> {
        nix::sys::signal::Signal::try_from(number).ok().map(Signal)
    }

    /// The signal's number.
    pub fn as_raw(self) -> i32 {
        self.0 as i32
    }

    pub(crate) fn to_nix(self) -> nix::sys::signal::Signal {
        self.0
    }
}

impl fmt::Display for Signal {
    /// The signal's name, such as `SIGTERM`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
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
    }
}
