//! Error types, one per failure domain.

use std::io;

/// Why a child process could not be started.
///
/// Every variant names the program; the variants that come from the OS keep
/// the `io::Error` as their [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The program does not exist (ENOENT), on `PATH` or at the path given.
    #[error("{program}: command not found")]
    NotFound {
        /// The program that was asked for.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The program exists but may not be executed (EACCES, EPERM).
    #[error("{program}: permission denied")]
    PermissionDenied {
        /// The program that was asked for.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The arguments and environment together exceed the kernel's limit
    /// (E2BIG), or one of them exceeds the per-string limit of 32 pages.
    #[error("{program}: argument list too long (largest is {largest}, {size} bytes)")]
    ArgumentListTooLong {
        /// The program that was asked for.
        program: String,
        /// The largest single argument or environment variable, named as
        /// `argument N` or `environment variable NAME`.
        largest: String,
        /// Its size in bytes, as the kernel counts it (with the `=` and the
        /// terminating NUL for an environment variable).
        size: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The working directory set with
    /// [`Popen::current_dir`](crate::Popen::current_dir) cannot be entered
    /// (ENOENT, ENOTDIR, EACCES).
    #[error("{program}: working directory {}: {source}", dir.display())]
    WorkingDirectory {
        /// The program that was asked for.
        program: String,
        /// The directory.
        dir: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The host ran out of processes, file descriptors or memory (EAGAIN,
    /// EMFILE, ENFILE, ENOMEM). Trying again later may succeed.
    #[error("{program}: out of resources: {source}")]
    ResourceExhausted {
        /// The program that was asked for.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The running kernel lacks something the spawn needs: pidfds
    /// (`pidfd_open`, Linux 5.3), `waitid` on a pidfd (Linux 5.4), or, for
    /// [`Popen::close_fds`](crate::Popen::close_fds), `close_range` with
    /// `CLOSE_RANGE_CLOEXEC` (Linux 5.11). Nothing was left running.
    #[error("{program}: {source}")]
    Unsupported {
        /// The program that was asked for.
        program: String,
        /// What is missing, and the Linux version that has it.
        #[source]
        source: io::Error,
    },
    /// Any other OS error while preparing or starting the child.
    #[error("{program}: {source}")]
    Io {
        /// The program that was asked for.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The description cannot be run as given (for example stdout set to
    /// [`OutputTo::MergeIntoStdout`](crate::OutputTo::MergeIntoStdout)).
    #[error("{program}: invalid configuration: {reason}")]
    InvalidConfig {
        /// The program that was asked for.
        program: String,
        /// What is wrong.
        reason: String,
    },
    /// `start` was called where no actix arbiter runs on the current thread
    /// (outside `System::run`/`block_on`, or outside a `LocalSet`).
    #[error("{program}: no actix arbiter runs on this thread")]
    NoArbiter {
        /// The program that was asked for.
        program: String,
    },
    /// The task was already started, or already ended (cancelled before it
    /// started), and cannot be started again; start a `clone()` of its
    /// [`Popen`](crate::Popen) instead.
    #[error("{program}: the task was already started or has ended")]
    AlreadyStarted {
        /// The program that was asked for.
        program: String,
    },
}

/// A copy of an OS error: the same errno, or the same kind and message.
fn copy_io(err: &io::Error) -> io::Error {
    match err.raw_os_error() {
        Some(errno) => io::Error::from_raw_os_error(errno),
        None => io::Error::new(err.kind(), err.to_string()),
    }
}

impl Clone for SpawnError {
    /// A copy with the same variant, program and OS error number (an OS
    /// error without a number keeps its kind and message).
    fn clone(&self) -> SpawnError {
        match self {
            SpawnError::NotFound { program, source } => SpawnError::NotFound {
                program: program.clone(),
                source: copy_io(source),
            },
            SpawnError::PermissionDenied { program, source } => SpawnError::PermissionDenied {
                program: program.clone(),
                source: copy_io(source),
            },
            SpawnError::ArgumentListTooLong {
                program,
                largest,
                size,
                source,
            } => SpawnError::ArgumentListTooLong {
                program: program.clone(),
                largest: largest.clone(),
                size: *size,
                source: copy_io(source),
            },
            SpawnError::WorkingDirectory {
                program,
                dir,
                source,
            } => SpawnError::WorkingDirectory {
                program: program.clone(),
                dir: dir.clone(),
                source: copy_io(source),
            },
            SpawnError::ResourceExhausted { program, source } => SpawnError::ResourceExhausted {
                program: program.clone(),
                source: copy_io(source),
            },
            SpawnError::Io { program, source } => SpawnError::Io {
                program: program.clone(),
                source: copy_io(source),
            },
            SpawnError::Unsupported { program, source } => SpawnError::Unsupported {
                program: program.clone(),
                source: copy_io(source),
            },
            SpawnError::InvalidConfig { program, reason } => SpawnError::InvalidConfig {
                program: program.clone(),
                reason: reason.clone(),
            },
            SpawnError::NoArbiter { program } => SpawnError::NoArbiter {
                program: program.clone(),
            },
            SpawnError::AlreadyStarted { program } => SpawnError::AlreadyStarted {
                program: program.clone(),
            },
        }
    }
}

impl SpawnError {
    /// The program the error is about.
    pub fn program(&self) -> &str {
        match self {
            SpawnError::NotFound { program, .. }
            | SpawnError::PermissionDenied { program, .. }
            | SpawnError::ArgumentListTooLong { program, .. }
            | SpawnError::WorkingDirectory { program, .. }
            | SpawnError::ResourceExhausted { program, .. }
            | SpawnError::Io { program, .. }
            | SpawnError::Unsupported { program, .. }
            | SpawnError::InvalidConfig { program, .. }
            | SpawnError::NoArbiter { program }
            | SpawnError::AlreadyStarted { program } => program,
        }
    }

    /// The exit status a POSIX shell gives a command that failed this way:
    /// 127 when the program was not found, 126 for every other failure
    /// (POSIX.1-2017, Shell Command Language, 2.8.2 "Exit Status for
    /// Commands"). A deferred start ([`Start`](crate::Start), the job
    /// pool) that fails ends its task with this status.
    pub fn shell_status(&self) -> u8 {
        match self {
            SpawnError::NotFound { .. } => 127,
            _ => 126,
        }
    }

    /// The OS error behind this one, if there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            SpawnError::NotFound { source, .. }
            | SpawnError::PermissionDenied { source, .. }
            | SpawnError::ArgumentListTooLong { source, .. }
            | SpawnError::WorkingDirectory { source, .. }
            | SpawnError::ResourceExhausted { source, .. }
            | SpawnError::Io { source, .. }
            | SpawnError::Unsupported { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why [`SetJobLimits`](crate::SetJobLimits) refused new limits; the
/// limits in force before stay in force.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JobLimitsError {
    /// `max_jobs` is 0: no task would ever start (GNU make refuses `-j0`
    /// too). Use `None` for no limit.
    #[error("max_jobs must be at least 1: with 0 no task would ever start")]
    ZeroJobs,
    /// `max_load` is not a number above 0 (it is 0, negative, NaN or
    /// infinite). Use `None` for no limit.
    #[error("max_load must be a finite number above 0, not {max_load}")]
    InvalidLoad {
        /// The load that was asked for.
        max_load: f64,
    },
}

/// Why a wait for a task's return code did not give one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// A blocking wait was asked for where blocking would deadlock: inside a
    /// running tokio runtime or actix System, or on the thread of the
    /// arbiter that runs the process actor (portage raises
    /// `InvalidStateError` here). Use [`AsyncWait`](crate::AsyncWait).
    #[error("invalid state: the return code is not known yet and blocking here would deadlock; use AsyncWait")]
    InvalidState,
    /// The process actor stopped before the task ended (its arbiter was
    /// stopped).
    #[error("the process actor stopped before the task ended")]
    ActorGone,
}

/// Why [`SendSignal`](crate::SendSignal) sent nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The task has no child to signal: it has not started, its child never
    /// ran, or its child was reaped (then its pid and group id may belong
    /// to another process, so nothing is sent to them), or the child has
    /// exited and its group has no member left.
    #[error("the task's child is not running")]
    NotRunning,
    /// The kernel refused the signal (EPERM: the child changed its user id,
    /// or a security module forbids it).
    #[error("cannot send {signal}: {source}")]
    Refused {
        /// The signal that was refused.
        signal: crate::Signal,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The process actor stopped before it could send the signal (its
    /// arbiter was stopped).
    #[error("the process actor stopped")]
    ActorGone,
}
