//! The task's options as small value types, validated once, at the start
//! or the prepare: how its output is read ([`ReaderOptions`]) and how long
//! its timeouts are ([`TaskOptions`]).

use std::time::Duration;

use crate::Signal;

/// portage's `AbstractPollTask._bufsize`: bytes asked for by each `read()`.
pub const DEFAULT_BUFSIZE: usize = 4096;

/// Chunks of one stream that may be unconsumed by the subscribers at once
/// (see [`Chunk`](crate::Chunk)).
pub const DEFAULT_WINDOW: usize = 16;

/// The largest [`Popen::bufsize`](crate::Popen::bufsize): 1 MiB per
/// `read()`, the largest pipe an unprivileged process may have (Linux's
/// default `pipe-max-size`): a larger read would not return more, and each
/// chunk may keep a buffer of this size alive.
pub const MAX_BUFSIZE: usize = 1 << 20;

/// The largest [`Popen::coalesce`](crate::Popen::coalesce): 1 GiB per chunk.
pub const MAX_COALESCE: usize = 1 << 30;

/// The largest [`Popen::window`](crate::Popen::window): 4096 chunks per
/// stream, so that what a slow subscriber can pin (about `window ×
/// bufsize`) stays at most 4 GiB per stream even at [`MAX_BUFSIZE`]
/// (with [`Popen::coalesce`](crate::Popen::coalesce), a chunk may hold up
/// to `coalesce` bytes, and the window pins that much more).
pub const MAX_WINDOW: usize = 4096;

/// The largest [`Popen::pipe_size`](crate::Popen::pipe_size): 2 GiB, the
/// most `F_SETPIPE_SZ` takes (the kernel then needs that much memory).
pub const MAX_PIPE_SIZE: usize = 1 << 31;

/// The longest [`Popen::cancel_timeout`](crate::Popen::cancel_timeout) and
/// [`Popen::drain_timeout`](crate::Popen::drain_timeout): 365 days (longer
/// ones would overflow the clock arithmetic of the timers).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// portage's `SubProcess._cancel_timeout`: the grace between SIGTERM and
/// SIGKILL, and between SIGKILL and the orphan warning (there at least
/// 0.5 s).
pub const DEFAULT_CANCEL_TIMEOUT: Duration = Duration::from_secs(1);

/// When a task with a cgroup of its own ([`Popen::cgroup`](crate::Popen::cgroup))
/// counts as exited, for its [`Exited`](crate::Exited) event and every
/// wait: systemd's `ExitType=` of a service. Set by
/// [`Popen::exit_type`](crate::Popen::exit_type).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitType {
    /// At the child's exit (once its output is done, as always): what is
    /// left in the cgroup then is ended by the cancel escalation, as
    /// systemd stops what is left of a service (`KillMode=control-group`).
    /// The exit event does not wait for that: a leftover that ignores the
    /// cancel signal lives until its SIGKILL, a cancel timeout later. Use
    /// `Cgroup` to be told only once every process is gone.
    #[default]
    Main,
    /// Once the cgroup is empty: the task goes on while any process the
    /// child started is alive, even one that left its process group, and
    /// nothing left is ended (systemd's `ExitType=cgroup`). The return
    /// code is still the child's.
    Cgroup,
}

/// How the task's output is read: the [`PipeReader`](crate::PipeReader)
/// settings a [`Popen`](crate::Popen) carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReaderOptions {
    /// The most bytes one `read()` asks for.
    pub(crate) bufsize: usize,
    /// The most bytes one chunk gathers from reads ready at once; 0 for
    /// one read per chunk.
    pub(crate) coalesce: usize,
    /// The most chunks of one stream unconsumed at once.
    pub(crate) window: usize,
}

impl Default for ReaderOptions {
    fn default() -> ReaderOptions {
        ReaderOptions {
            bufsize: DEFAULT_BUFSIZE,
            coalesce: 0,
            window: DEFAULT_WINDOW,
        }
    }
}

impl ReaderOptions {
    /// Why these settings cannot be used, if they cannot.
    pub(crate) fn invalid(&self) -> Option<String> {
        if !(1..=MAX_BUFSIZE).contains(&self.bufsize) {
            Some(format!(
                "bufsize must be from 1 to {MAX_BUFSIZE} bytes, not {}",
                self.bufsize
            ))
        } else if self.coalesce > MAX_COALESCE {
            Some(format!(
                "coalesce must be at most {MAX_COALESCE} bytes, not {}",
                self.coalesce
            ))
        } else if !(1..=MAX_WINDOW).contains(&self.window) {
            Some(format!(
                "window must be from 1 to {MAX_WINDOW} chunks, not {}",
                self.window
            ))
        } else {
            None
        }
    }
}

/// The task's timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskOptions {
    /// Between SIGTERM and SIGKILL, and SIGKILL and the orphan warning
    /// (there at least 0.5 s).
    pub(crate) cancel_timeout: Duration,
    /// The longest wait for EOF after the child exited; `None` for no
    /// bound.
    pub(crate) drain_timeout: Option<Duration>,
    /// The longest run, from the spawn; `None` for no bound.
    pub(crate) timeout: Option<Duration>,
    /// Cancel the task once every handle is dropped.
    pub(crate) kill_on_drop: bool,
    /// The first signal of a cancel; `None` for the default (SIGHUP on a
    /// controlling terminal, SIGTERM otherwise).
    pub(crate) cancel_signal: Option<Signal>,
    /// When the task counts as exited: at its child's exit, or once its
    /// cgroup is empty.
    pub(crate) exit_type: crate::ExitType,
}

impl Default for TaskOptions {
    fn default() -> TaskOptions {
        TaskOptions {
            cancel_timeout: DEFAULT_CANCEL_TIMEOUT,
            drain_timeout: None,
            timeout: None,
            kill_on_drop: false,
            cancel_signal: None,
            exit_type: crate::ExitType::Main,
        }
    }
}

impl TaskOptions {
    /// Why these timeouts cannot be used, if they cannot.
    pub(crate) fn invalid(&self) -> Option<String> {
        let too_long = |name: &str, timeout: Duration| {
            (timeout > MAX_TIMEOUT).then(|| {
                format!(
                    "{name} must be at most 365 days ({} s), not {} s",
                    MAX_TIMEOUT.as_secs(),
                    timeout.as_secs_f64()
                )
            })
        };
        too_long("cancel_timeout", self.cancel_timeout)
            .or_else(|| {
                self.drain_timeout
                    .and_then(|timeout| too_long("drain_timeout", timeout))
            })
            .or_else(|| {
                self.timeout
                    .and_then(|timeout| too_long("timeout", timeout))
            })
    }
}
