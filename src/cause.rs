//! [`ExitCause`]: why a task ended, beside the return code that says how
//! its child ended.

/// Why a task ended, in [`Exited::cause`](crate::Exited::cause),
/// [`CompletedProcess::cause`](crate::CompletedProcess::cause) and
/// [`ProcessHandle::cause`](crate::ProcessHandle::cause).
///
/// The return code says how the child ended; this says what ended the
/// task, which the return code alone cannot: a cancel and a timeout both
/// end a child with -15, and [`ReturnCode::CANCELLED`](crate::ReturnCode::CANCELLED)
/// (-2) is also what a child killed by SIGINT from outside reports.
/// When several apply, the first in this order wins: `Released`,
/// `TimedOut` or `Cancelled` (whichever came first), `DrainTimedOut`,
/// `OutOfMemory`, then how the child ended. The task's
/// [lifecycle](crate::PopenProcess#lifecycle) says when each can happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitCause {
    /// The child exited by itself; the return code is its exit status.
    Exited,
    /// The child was killed by a signal that did not come from this
    /// task's cancel or timeout: from another process, the terminal, or
    /// the kernel (the OOM killer's SIGKILL, a SIGSEGV).
    Signaled,
    /// [`Cancel`](crate::Cancel) or [`CancelWith`](crate::CancelWith)
    /// ended the task. The return code is what the child then died of (or
    /// exited with, if it exited during the cancel), or
    /// [`ReturnCode::CANCELLED`](crate::ReturnCode::CANCELLED) if it never
    /// ran.
    Cancelled,
    /// The run timeout ([`Popen::timeout`](crate::Popen::timeout)) passed
    /// and the cancel escalation ended the task.
    TimedOut,
    /// The child never ran: its deferred start ([`Start`](crate::Start),
    /// the job pool) failed to spawn it; the return code is the error's
    /// [`shell_status`](crate::SpawnError::shell_status) (127, 1 or 126)
    /// ([`ProcessHandle::spawn_error`](crate::ProcessHandle::spawn_error)
    /// says why).
    SpawnFailed,
    /// The child exited, but its output was still open when the drain
    /// timeout ([`Popen::drain_timeout`](crate::Popen::drain_timeout))
    /// passed, and was closed unread.
    DrainTimedOut,
    /// The cancel escalation gave up (the orphan warning was logged): the
    /// task was released without its child's exit or its output's end.
    Released,
    /// The kernel's OOM killer killed a process of the task's cgroup
    /// ([`Popen::cgroup`](crate::Popen::cgroup)): the child, or a process
    /// it started, whose loss the child may have reported by an exit
    /// status of its own (a `make` whose compiler was killed exits 2). Read
    /// from `oom_kill` in the cgroup's `memory.events` (Linux 4.13) as the
    /// task ends, so it needs the memory controller enabled for the cgroup
    /// (as [`Popen::memory_max`](crate::Popen::memory_max) does); systemd
    /// reports a unit's `oom-kill` result the same way. The return code is
    /// still the child's (-9 if it was the one killed).
    OutOfMemory,
}

impl ExitCause {
    /// Whether the child ended on its own, by exiting or by a signal from
    /// outside (the OOM killer's included), with its output read to the
    /// end.
    pub fn is_natural(self) -> bool {
        matches!(
            self,
            ExitCause::Exited | ExitCause::Signaled | ExitCause::OutOfMemory
        )
    }
}
