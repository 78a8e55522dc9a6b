//! Error types, one per failure domain.

use std::io;
use std::sync::Arc;

/// Why a child process could not be started: the program, once, and what
/// went wrong ([`SpawnErrorKind`]).
///
/// Cheap to clone (the OS error is shared), so that a task's handle can
/// keep it ([`ProcessHandle::spawn_error`](crate::ProcessHandle::spawn_error)).
/// It displays as `PROGRAM: REASON`, as a shell reports a command it
/// could not run, and its [`source`](std::error::Error::source) is the OS
/// error, when there is one.
///
/// ```
/// use actix_popen::{Popen, SpawnErrorKind};
///
/// # #[actix::main]
/// # async fn main() {
/// let err = Popen::new("no-such-program-xyz").start().unwrap_err();
/// assert!(matches!(err.kind(), SpawnErrorKind::NotFound { .. }));
/// assert_eq!(err.program(), "no-such-program-xyz");
/// assert_eq!(err.shell_status(), 127);
/// assert_eq!(err.to_string(), "no-such-program-xyz: command not found");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SpawnError {
    program: String,
    kind: SpawnErrorKind,
}

/// What went wrong in a spawn; see [`SpawnError`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnErrorKind {
    /// The program does not exist (ENOENT), on `PATH` or at the path given.
    #[error("command not found")]
    NotFound {
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// The program exists but may not be executed (EACCES, EPERM).
    #[error("permission denied")]
    PermissionDenied {
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// The arguments and environment together exceed the kernel's limit
    /// (E2BIG), or one of them exceeds the per-string limit of 32 pages.
    #[error("argument list too long (largest is {largest}, {size} bytes)")]
    ArgumentListTooLong {
        /// The largest single argument or environment variable, named as
        /// `argument N` or `environment variable NAME`.
        largest: String,
        /// Its size in bytes, as the kernel counts it (with the `=` and the
        /// terminating NUL for an environment variable).
        size: usize,
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// The working directory set with
    /// [`Popen::current_dir`](crate::Popen::current_dir) cannot be entered
    /// (ENOENT, ENOTDIR, EACCES).
    #[error("working directory {}: {source}", dir.display())]
    WorkingDirectory {
        /// The directory.
        dir: std::path::PathBuf,
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// The file given for the child's stdin, stdout or stderr
    /// ([`InputFrom::File`](crate::InputFrom::File),
    /// [`OutputTo::File`](crate::OutputTo::File)) could not be opened
    /// (ENOENT, EACCES, EISDIR, ENXIO for a FIFO with no reader, …).
    /// Nothing was spawned. As a shell's failed redirection, the task's
    /// [`shell_status`](SpawnError::shell_status) is 1.
    #[error("cannot open {} for the child's {}: {source}", path.display(), stdio_name(*fd))]
    File {
        /// The child's fd it was for: 0 (stdin), 1 (stdout) or 2 (stderr).
        fd: i32,
        /// The file, as opened (a relative path joined to the working
        /// directory set with [`Popen::current_dir`](crate::Popen::current_dir)).
        path: std::path::PathBuf,
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// A step the child makes between fork and exec failed: a
    /// [`pass_fd`](crate::Popen::pass_fd) move, a setting
    /// ([`uid`](crate::Popen::uid), [`rlimit`](crate::Popen::rlimit), …)
    /// or a [`pre_exec`](crate::Popen::pre_exec) hook. The program never
    /// ran. Only the errno of the step's error reaches the host (std
    /// passes nothing else across the fork; an error without one arrives
    /// as EINVAL).
    #[error("{step} failed in the child before exec: {source}")]
    ChildSetup {
        /// The step, as `setuid 65534` or `pre_exec hook 2`.
        step: String,
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// The task's cgroup ([`Popen::cgroup`](crate::Popen::cgroup)) could
    /// not be made: the directory given is not in a cgroup2 mount, is
    /// missing, or the host may not write it (`EACCES`: not delegated to
    /// it). Nothing was spawned.
    #[error("cannot make the task's cgroup {}: {source}", path.display())]
    Cgroup {
        /// The cgroup (or the directory given, when that is what is wrong).
        path: std::path::PathBuf,
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// The host ran out of processes, file descriptors or memory (EAGAIN,
    /// EMFILE, ENFILE, ENOMEM). Trying again later may succeed.
    #[error("out of resources: {source}")]
    ResourceExhausted {
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// The running kernel lacks something the spawn needs: pidfds
    /// (`pidfd_open`, Linux 5.3) or `waitid` on a pidfd (Linux 5.4).
    /// Nothing was left running.
    #[error("{source}")]
    Unsupported {
        /// What is missing, and the Linux version that has it.
        source: Arc<io::Error>,
    },
    /// Any other OS error while preparing or starting the child.
    #[error("{source}")]
    Io {
        /// The OS error.
        source: Arc<io::Error>,
    },
    /// The description cannot be run as given (for example stdout set to
    /// [`OutputTo::MergeIntoStdout`](crate::OutputTo::MergeIntoStdout)).
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// The host may not make one of the child's settings
    /// ([`Popen::uid`](crate::Popen::uid), [`gid`](crate::Popen::gid),
    /// [`groups`](crate::Popen::groups), a [`nice`](crate::Popen::nice)
    /// value below the host's, an [`rlimit`](crate::Popen::rlimit) hard
    /// limit above the host's): it lacks the capability named
    /// (capabilities(7)). Checked before the spawn; nothing was spawned.
    #[error("not permitted: {setting} needs {needs}")]
    NotPermitted {
        /// The setting, with its value, as `uid 0`.
        setting: String,
        /// What the host would need, as `CAP_SETUID`.
        needs: String,
    },
    /// `start` was called where no actix arbiter runs on the current thread
    /// (outside `System::run`/`block_on`, or outside a `LocalSet`), or the
    /// arbiter given to [`Popen::start_in_arbiter`](crate::Popen::start_in_arbiter)
    /// has stopped.
    #[error("no actix arbiter runs on this thread")]
    NoArbiter,
    /// The task was already started, or already ended (cancelled before it
    /// started), and cannot be started again; start a `clone()` of its
    /// [`Popen`](crate::Popen) instead.
    #[error("the task was already started or has ended")]
    AlreadyStarted,
}

impl SpawnError {
    pub(crate) fn new(program: impl Into<String>, kind: SpawnErrorKind) -> SpawnError {
        SpawnError {
            program: program.into(),
            kind,
        }
    }

    /// The program the error is about, as given.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// What went wrong.
    pub fn kind(&self) -> &SpawnErrorKind {
        &self.kind
    }

    /// The exit status a POSIX shell gives a command that failed this way:
    /// 127 when the program was not found, 1 when a file for its stdin,
    /// stdout or stderr could not be opened (a failed redirection: POSIX
    /// asks for a status above 0, and bash and dash give 1), 126 for every
    /// other failure (POSIX.1-2017, Shell Command Language, 2.8.2 "Exit
    /// Status for Commands"). A deferred start ([`Start`](crate::Start), the job
    /// pool) that fails ends its task with this status.
    pub fn shell_status(&self) -> u8 {
        match self.kind {
            SpawnErrorKind::NotFound { .. } => 127,
            SpawnErrorKind::File { .. } => 1,
            _ => 126,
        }
    }

    /// The OS error behind this one, if there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.kind {
            SpawnErrorKind::NotFound { source }
            | SpawnErrorKind::PermissionDenied { source }
            | SpawnErrorKind::ArgumentListTooLong { source, .. }
            | SpawnErrorKind::WorkingDirectory { source, .. }
            | SpawnErrorKind::File { source, .. }
            | SpawnErrorKind::ChildSetup { source, .. }
            | SpawnErrorKind::Cgroup { source, .. }
            | SpawnErrorKind::ResourceExhausted { source }
            | SpawnErrorKind::Unsupported { source }
            | SpawnErrorKind::Io { source } => Some(source),
            SpawnErrorKind::InvalidConfig { .. }
            | SpawnErrorKind::NotPermitted { .. }
            | SpawnErrorKind::NoArbiter
            | SpawnErrorKind::AlreadyStarted => None,
        }
    }
}

/// The name of the child's fd 0, 1 or 2.
fn stdio_name(fd: i32) -> &'static str {
    match fd {
        0 => "stdin",
        1 => "stdout",
        _ => "stderr",
    }
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.program, self.kind)
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io_error().map(|err| err as _)
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

/// Why [`Resize`](crate::Resize) changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResizeError {
    /// The task's child has no pseudo-terminal (no stream is
    /// [`OutputTo::Pty`](crate::OutputTo::Pty)), or it has not started or
    /// has ended.
    #[error("the task has no terminal to resize")]
    NoTerminal,
    /// The kernel refused the new size.
    #[error("cannot resize the terminal: {0}")]
    Io(#[source] io::Error),
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
