//! Return codes in portage's (and Python's `subprocess`) convention.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// The outcome of a task, as portage's `returncode` attribute holds it.
///
/// A non-negative value is the child's exit status; `-N` means the child was
/// killed by signal `N` (a child that died of SIGTERM is `-15`, of SIGKILL
/// `-9`). A task that was cancelled before its child ever ran ends with
/// [`ReturnCode::CANCELLED`] (`-2`, portage's `_cancelled_returncode`).
///
/// ```
/// use actix_popen::ReturnCode;
///
/// let killed = ReturnCode::from_raw(-9);
/// assert_eq!(killed.signal(), Some(9));
/// assert_eq!(killed.exit_status(), None);
/// assert!(!killed.success());
/// assert!(ReturnCode::from_raw(0).success());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReturnCode(i32);

impl ReturnCode {
    /// The return code of a task cancelled before its child ran
    /// (portage's `_cancelled_returncode`, that is `-SIGINT`).
    pub const CANCELLED: ReturnCode = ReturnCode(-2);

    /// Wraps a raw value in portage's convention.
    pub const fn from_raw(code: i32) -> Self {
        ReturnCode(code)
    }

    /// The value in portage's convention: the exit status, or `-N` for a
    /// death by signal `N`.
    pub const fn code(self) -> i32 {
        self.0
    }

    /// The signal that killed the child, if it was killed by one.
    pub const fn signal(self) -> Option<i32> {
        if self.0 < 0 {
            Some(-self.0)
        } else {
            None
        }
    }

    /// The child's exit status, if it exited rather than being killed.
    pub const fn exit_status(self) -> Option<i32> {
        if self.0 >= 0 {
            Some(self.0)
        } else {
            None
        }
    }

    /// Whether the child exited with status 0.
    pub const fn success(self) -> bool {
        self.0 == 0
    }

    /// The status a shell would report for this outcome: the exit status,
    /// or `128 + N` for a death by signal `N` (`bash`'s `$?`), reduced to
    /// its low 8 bits as a shell reduces every status (so
    /// [`CANCELLED`](Self::CANCELLED) gives 130). The same type as
    /// [`SpawnError::shell_status`](crate::SpawnError::shell_status).
    pub const fn shell_status(self) -> u8 {
        let status = if self.0 < 0 { 128 - self.0 } else { self.0 };
        (status & 0xFF) as u8
    }
}

impl From<ExitStatus> for ReturnCode {
    fn from(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => ReturnCode(code),
            (None, Some(signal)) => ReturnCode(-signal),
            // Stopped or continued states are never reported by our waits
            // (we do not ask for WUNTRACED/WCONTINUED); keep the raw value.
            (None, None) => ReturnCode(status.into_raw()),
        }
    }
}

impl fmt::Display for ReturnCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_exit_status_follows_portage() {
        // Raw wait statuses: exit 3 is 3 << 8; death by SIGTERM is 15.
        assert_eq!(ReturnCode::from(ExitStatus::from_raw(3 << 8)).code(), 3);
        assert_eq!(ReturnCode::from(ExitStatus::from_raw(15)).code(), -15);
        assert_eq!(ReturnCode::from(ExitStatus::from_raw(9)).signal(), Some(9));
    }

    #[test]
    fn shell_status_adds_128_for_signals() {
        assert_eq!(ReturnCode::from_raw(-15).shell_status(), 143);
        assert_eq!(ReturnCode::from_raw(1).shell_status(), 1);
        assert_eq!(ReturnCode::CANCELLED.shell_status(), 130);
    }
}
