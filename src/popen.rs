//! [`Popen`]: the description of a child process and how its output is
//! wired (portage's `subprocess.Popen` arguments), and the spawn itself.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use actix::Recipient;

use crate::messages::{Chunk, Exited, OutputStream, Started};
use crate::pipe_reader::{DEFAULT_BUFSIZE, DEFAULT_WINDOW};
use crate::process::{PopenProcess, ProcessHandle};
use crate::sys::child::Child;
use crate::sys::fd::pipe;
use crate::sys::pty::open_pty;
use crate::SpawnError;

/// A child just spawned, with our ends of its pipes.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) reads: Vec<(OutputStream, OwnedFd)>,
    pub(crate) stdin: Option<OwnedFd>,
    /// What the child's piped output ends link to in /proc, to name who
    /// holds them open in warnings.
    pub(crate) outputs: Vec<String>,
}

/// The largest [`Popen::bufsize`]: 1 MiB per `read()`, the largest pipe
/// an unprivileged process may have (Linux's default `pipe-max-size`): a
/// larger read would not return more, and each chunk may keep a buffer of
/// this size alive.
pub const MAX_BUFSIZE: usize = 1 << 20;

/// The largest [`Popen::coalesce`]: 1 GiB per chunk.
pub const MAX_COALESCE: usize = 1 << 30;

/// The largest [`Popen::window`]: 4096 chunks per stream, so that what a
/// slow subscriber can pin (about `window × bufsize`) stays under 4 GiB
/// per stream even at [`MAX_BUFSIZE`].
pub const MAX_WINDOW: usize = 4096;

/// The longest [`Popen::cancel_timeout`] and [`Popen::drain_timeout`]: 365
/// days (longer ones would overflow the clock arithmetic of the timers).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// portage's `SubProcess._cancel_timeout`: the grace between SIGTERM and
/// SIGKILL, and between SIGKILL and the orphan warning.
pub const DEFAULT_CANCEL_TIMEOUT: Duration = Duration::from_secs(1);

/// Where one of the child's output streams goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputTo {
    /// A pipe read by the task; what the child writes arrives as [`Chunk`]s.
    #[default]
    Pipe,
    /// The host's own stdout or stderr.
    Inherit,
    /// `/dev/null`.
    Null,
    /// For stderr only: the same destination as stdout (portage's
    /// `stderr=STDOUT`, the shell's `2>&1`). With stdout a pipe, both
    /// arrive interleaved as [`OutputStream::Stdout`] chunks.
    MergeIntoStdout,
    /// A pseudo-terminal read by the task. Streams that are both `Pty`
    /// share one terminal, and arrive as [`OutputStream::Stdout`] chunks. The
    /// terminal translates `\n` into `\r\n`, as any terminal does, and is
    /// not the child's controlling terminal.
    Pty,
}

/// Where the child's stdin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputFrom {
    /// The host's own stdin (portage's default).
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe written by the task: send [`WriteStdin`](crate::WriteStdin) (or
    /// [`Chunk`]s, from an upstream process) and [`CloseStdin`](crate::CloseStdin)
    /// to the actor. Once every address of the actor is dropped (every
    /// [`ProcessHandle`](crate::ProcessHandle), `Addr` and `Recipient`),
    /// nobody can write any more and the pipe is closed after what was
    /// queued: the child reads EOF and is not killed (as std and tokio
    /// close a child's stdin when its handle is dropped).
    Pipe,
}

/// A description of a child process to run as a [`PopenProcess`] actor.
///
/// It holds what `std::process::Command` holds (program, arguments,
/// environment, working directory), how the output is wired, the task's
/// options, and the recipients of its messages. It is `Clone` (portage's
/// `copy()`): the same description can be started again.
///
/// By default stdout and stderr are separate pipes, stdin is inherited,
/// each `read()` asks for 4096 bytes, the cancel timeout is 1 s, and the
/// child leads a process group of its own so that a cancel reaches every
/// process it started.
///
/// ```
/// use actix::Actor;
/// use actix_popen::{AsyncWait, Collector, GetValue, Popen};
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let collector = Collector::start_default();
/// let process = Popen::new("echo")
///     .arg("hello")
///     .subscribe(collector.clone().recipient())
///     .start()?;
/// let code = process.send(AsyncWait).await??;
/// assert!(code.success());
/// assert_eq!(&collector.send(GetValue).await?.stdout[..], b"hello\n");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Popen {
    pub(crate) program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    env_clear: bool,
    current_dir: Option<PathBuf>,
    stdin: InputFrom,
    stdout: OutputTo,
    stderr: OutputTo,
    pub(crate) bufsize: usize,
    pub(crate) coalesce: usize,
    pub(crate) window: usize,
    pub(crate) cancel_timeout: Duration,
    pub(crate) drain_timeout: Option<Duration>,
    pub(crate) process_group: bool,
    close_fds: bool,
    restore_signals: bool,
    pub(crate) subscribers: Vec<(Option<OutputStream>, Recipient<Chunk>)>,
    pub(crate) exit_listeners: Vec<Recipient<Exited>>,
    pub(crate) start_listeners: Vec<Recipient<Started>>,
    /// Told with `CloseStdin` when a stream reaches EOF (a pipeline's next
    /// stage).
    pub(crate) eof_listeners: Vec<(OutputStream, Recipient<crate::CloseStdin>)>,
}

impl Popen {
    /// Describes a run of `program` with no arguments, looked up on `PATH`
    /// when it has no `/` (as `std::process::Command::new`).
    pub fn new(program: impl AsRef<OsStr>) -> Popen {
        Popen {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            current_dir: None,
            stdin: InputFrom::Inherit,
            stdout: OutputTo::Pipe,
            stderr: OutputTo::Pipe,
            bufsize: DEFAULT_BUFSIZE,
            coalesce: 0,
            window: DEFAULT_WINDOW,
            cancel_timeout: DEFAULT_CANCEL_TIMEOUT,
            drain_timeout: None,
            process_group: true,
            close_fds: false,
            restore_signals: true,
            subscribers: Vec::new(),
            exit_listeners: Vec::new(),
            start_listeners: Vec::new(),
            eof_listeners: Vec::new(),
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Popen {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Popen
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child.
    ///
    /// A `key` that is empty or holds `=` or a NUL byte, or a `value` that
    /// holds a NUL byte, cannot be passed on: the start refuses it with
    /// [`SpawnError::InvalidConfig`] (std's `Command` would pass `A=B` set
    /// to `c` on as `A=B=c`, setting `A`).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Popen {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Popen {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts the child with an empty environment plus what [`env`](Self::env) sets.
    pub fn env_clear(mut self) -> Popen {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// Runs the child in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Popen {
        self.current_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Where the child's stdin comes from.
    pub fn stdin(mut self, input: InputFrom) -> Popen {
        self.stdin = input;
        self
    }

    /// Where the child's stdout goes.
    pub fn stdout(mut self, output: OutputTo) -> Popen {
        self.stdout = output;
        self
    }

    /// Where the child's stderr goes.
    pub fn stderr(mut self, output: OutputTo) -> Popen {
        self.stderr = output;
        self
    }

    /// Puts stdout and stderr on one pseudo-terminal: a shorthand for
    /// `.stdout(OutputTo::Pty).stderr(OutputTo::Pty)`.
    pub fn pty(self) -> Popen {
        self.stdout(OutputTo::Pty).stderr(OutputTo::Pty)
    }

    /// Sets the most bytes each `read()` asks for (portage's `_bufsize`,
    /// 4096 by default), from 1 to [`MAX_BUFSIZE`]; the start refuses
    /// other values with [`SpawnError::InvalidConfig`].
    pub fn bufsize(mut self, bufsize: usize) -> Popen {
        self.bufsize = bufsize;
        self
    }

    /// Lets one [`Chunk`] gather up to `bytes` from reads that are ready at
    /// once; each `read()` still asks for at most `bufsize`. By default a
    /// chunk is one read (portage's behaviour); with a child that writes
    /// fast, coalescing sends one message per `bytes` instead of one per
    /// read. At most [`MAX_COALESCE`]; the start refuses more.
    pub fn coalesce(mut self, bytes: usize) -> Popen {
        self.coalesce = bytes;
        self
    }

    /// Sets how many chunks of one stream may be unconsumed by the
    /// subscribers at once (16 by default, at least 1); see [`Chunk`] for
    /// how the credit returns. With the window used up the task stops
    /// reading and the child blocks in `write()`. At most [`MAX_WINDOW`];
    /// the start refuses more.
    pub fn window(mut self, window: usize) -> Popen {
        self.window = window;
        self
    }

    /// Bounds the wait for EOF after the child exited (as Go's
    /// `Cmd.WaitDelay`). By default the task waits for EOF however long a
    /// grandchild holds the output open (portage's behaviour). With a
    /// drain timeout, once the child was reaped the task waits at most
    /// `timeout` for EOF, then closes its read ends and ends with
    /// [`Exited::output_complete`](crate::Exited::output_complete) `false`.
    /// Time the reader spends waiting for slow subscribers (backpressure)
    /// does not count: output already in the pipe is not cut off because a
    /// consumer is slow. At most [`MAX_TIMEOUT`]; the start refuses more.
    pub fn drain_timeout(mut self, timeout: Duration) -> Popen {
        self.drain_timeout = Some(timeout);
        self
    }

    /// Sets the grace between SIGTERM and SIGKILL on cancel, and between
    /// SIGKILL and the orphan warning (portage's `_cancel_timeout`, 1 s by
    /// default). At most [`MAX_TIMEOUT`]; the start refuses more.
    pub fn cancel_timeout(mut self, timeout: Duration) -> Popen {
        self.cancel_timeout = timeout;
        self
    }

    /// Whether the child leads a process group of its own, with every
    /// signal sent to the whole group (`true` by default).
    ///
    /// With `false` the child stays in the host's group and only the child
    /// itself is signalled: processes it started may outlive a cancel, and
    /// a Ctrl-C at a terminal reaches it directly.
    pub fn process_group(mut self, enabled: bool) -> Popen {
        self.process_group = enabled;
        self
    }

    /// Whether the child gets no fd but 0, 1 and 2 even of those the host
    /// opened without close-on-exec (Python's `close_fds=True`, which
    /// portage relies on). `false` by default: every fd this crate opens is
    /// close-on-exec anyway, and closing the rest costs std's fast
    /// `posix_spawn` path (a `pre_exec` step forces fork and exec; see
    /// BENCHMARKS.md). It needs Linux 5.11 (`close_range` with
    /// `CLOSE_RANGE_CLOEXEC`); on an older kernel the spawn fails with
    /// [`SpawnError::Unsupported`] and nothing runs.
    pub fn close_fds(mut self, enabled: bool) -> Popen {
        self.close_fds = enabled;
        self
    }

    /// Whether the child starts with an empty signal mask and every signal
    /// at its default disposition (`true` by default), whatever the thread
    /// that spawns it blocks or the host ignores (Python's
    /// `restore_signals`, process-wrap's reset-sigmask wrapper). Without
    /// it, a child spawned from a thread that blocks SIGTERM would ignore
    /// [`Cancel`](crate::Cancel) until the SIGKILL.
    ///
    /// The reset costs nothing when the spawning thread blocks no signal
    /// and the host ignores none but SIGPIPE (std resets SIGPIPE itself):
    /// the spawn then stays on std's `posix_spawn` path. Otherwise it adds
    /// a step between fork and exec, which forces std's fork path (see
    /// BENCHMARKS.md). With `false`, the child inherits both, as with
    /// `std::process::Command`.
    pub fn restore_signals(mut self, enabled: bool) -> Popen {
        self.restore_signals = enabled;
        self
    }

    /// Sends every output [`Chunk`] to `recipient`, from the first byte.
    pub fn subscribe(mut self, recipient: Recipient<Chunk>) -> Popen {
        self.subscribers.push((None, recipient));
        self
    }

    /// Sends the [`Chunk`]s of one stream only to `recipient` (for example
    /// the stdout of this process to the stdin of the next).
    pub fn subscribe_stream(mut self, stream: OutputStream, recipient: Recipient<Chunk>) -> Popen {
        self.subscribers.push((Some(stream), recipient));
        self
    }

    /// Notifies `recipient` of the exit (see [`AddExitListener`](crate::AddExitListener)).
    pub fn exit_listener(mut self, recipient: Recipient<Exited>) -> Popen {
        if !self.exit_listeners.contains(&recipient) {
            self.exit_listeners.push(recipient);
        }
        self
    }

    /// Notifies `recipient` of the start (see [`AddStartListener`](crate::AddStartListener)).
    pub fn start_listener(mut self, recipient: Recipient<Started>) -> Popen {
        if !self.start_listeners.contains(&recipient) {
            self.start_listeners.push(recipient);
        }
        self
    }

    /// The program, as given.
    pub fn get_program(&self) -> &OsStr {
        &self.program
    }

    /// Spawns the child now and starts its actor on the current arbiter,
    /// returning at once (portage's `start()`).
    ///
    /// The child runs from the moment this returns; its output is read and
    /// its exit awaited by the actor, without blocking any thread.
    ///
    /// # Errors
    /// [`SpawnError`] when the child could not be spawned (the program is
    /// named, with the OS reason), when the description is invalid
    /// ([`SpawnError::InvalidConfig`]: a `bufsize` of 0, stdout set to
    /// [`OutputTo::MergeIntoStdout`], an environment variable name that is
    /// empty or holds `=` or a NUL byte, a NUL byte in the program, an
    /// argument, a value or the working directory), or when no actix
    /// arbiter runs on this thread. Nothing is left running.
    pub fn start(self) -> Result<ProcessHandle, SpawnError> {
        PopenProcess::spawn_and_start(self)
    }

    /// Creates the task's actor on the current arbiter without spawning the
    /// child: send it [`Start`](crate::Start) to run it, or
    /// [`Cancel`](crate::Cancel) to end it with
    /// [`ReturnCode::CANCELLED`](crate::ReturnCode::CANCELLED) without it
    /// ever running.
    ///
    /// # Errors
    /// [`SpawnError::NoArbiter`] when no actix arbiter runs on this thread;
    /// [`SpawnError::InvalidConfig`] for an invalid description.
    pub fn prepare(self) -> Result<ProcessHandle, SpawnError> {
        PopenProcess::prepare(self)
    }

    /// Submits the task to the [`ProcessSupervisor`](crate::ProcessSupervisor)'s
    /// job pool: its actor is created on the current arbiter at once, and
    /// its child is spawned when the pool's limits allow, in submission
    /// order (portage's `--jobs` and `--load-average`; see
    /// [`SetJobLimits`](crate::SetJobLimits)). [`Cancel`](crate::Cancel)
    /// before then ends it with
    /// [`ReturnCode::CANCELLED`](crate::ReturnCode::CANCELLED).
    ///
    /// A spawn that fails when its turn comes ends the task with 127 (not
    /// found) or 126, as [`Start`](crate::Start) does; exit listeners and
    /// [`AsyncWait`](crate::AsyncWait) hear of it, the error is logged, and
    /// [`ProcessHandle::spawn_error`] says why.
    ///
    /// # Errors
    /// As [`prepare`](Self::prepare).
    pub fn submit(self) -> Result<ProcessHandle, SpawnError> {
        let handle = self.prepare()?;
        crate::ProcessSupervisor::get().do_send(crate::supervisor::Enqueue(handle.clone()));
        Ok(handle)
    }

    pub(crate) fn stdin_is_piped(&self) -> bool {
        self.stdin == InputFrom::Pipe
    }

    pub(crate) fn program_name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    pub(crate) fn validate(&self) -> Result<(), SpawnError> {
        let reason = if !(1..=MAX_BUFSIZE).contains(&self.bufsize) {
            format!(
                "bufsize must be from 1 to {MAX_BUFSIZE} bytes, not {}",
                self.bufsize
            )
        } else if self.coalesce > MAX_COALESCE {
            format!(
                "coalesce must be at most {MAX_COALESCE} bytes, not {}",
                self.coalesce
            )
        } else if !(1..=MAX_WINDOW).contains(&self.window) {
            format!(
                "window must be from 1 to {MAX_WINDOW} chunks, not {}",
                self.window
            )
        } else if self.cancel_timeout > MAX_TIMEOUT {
            format!(
                "cancel_timeout must be at most {MAX_TIMEOUT:?}, not {:?}",
                self.cancel_timeout
            )
        } else if self.drain_timeout.is_some_and(|t| t > MAX_TIMEOUT) {
            format!(
                "drain_timeout must be at most {MAX_TIMEOUT:?}, not {:?}",
                self.drain_timeout
            )
        } else if self.stdout == OutputTo::MergeIntoStdout {
            "stdout cannot be merged into itself".to_owned()
        } else {
            match self.exec_strings_error() {
                Some(reason) => reason,
                None => return Ok(()),
            }
        };
        Err(SpawnError::InvalidConfig {
            program: self.program_name(),
            reason,
        })
    }

    /// What exec could not pass on as given, if anything: a C string ends
    /// at its first NUL, and an environment entry is `NAME=VALUE`, so a
    /// name with `=` in it would set another variable (`PATH=/x:` set to
    /// `y` would give `PATH=/x:=y`).
    fn exec_strings_error(&self) -> Option<String> {
        use std::os::unix::ffi::OsStrExt;
        let has_nul = |s: &OsStr| s.as_bytes().contains(&0);
        if has_nul(&self.program) {
            return Some(format!(
                "the program {:?} contains a NUL byte",
                self.program
            ));
        }
        if let Some((index, arg)) = self.args.iter().enumerate().find(|(_, a)| has_nul(a)) {
            // Numbered as in argv, where the program is argument 0.
            return Some(format!(
                "argument {} ({arg:?}) contains a NUL byte",
                index + 1
            ));
        }
        for (name, value) in &self.env {
            if name.is_empty() {
                return Some("an environment variable name is empty".to_owned());
            }
            if name.as_bytes().contains(&b'=') {
                return Some(format!(
                    "the environment variable name {name:?} contains '='"
                ));
            }
            if has_nul(name) {
                return Some(format!(
                    "the environment variable name {name:?} contains a NUL byte"
                ));
            }
            if value.as_deref().is_some_and(has_nul) {
                return Some(format!(
                    "the value of the environment variable {name:?} contains a NUL byte"
                ));
            }
        }
        match &self.current_dir {
            Some(dir) if has_nul(dir.as_os_str()) => {
                Some(format!("the working directory {dir:?} contains a NUL byte"))
            }
            _ => None,
        }
    }

    /// Spawns the child: a std `Command` built afresh (so the description
    /// stays reusable), with our own close-on-exec pipes and pty. Returns
    /// the child, our read ends and our end of its stdin, non-blocking mode
    /// still unset.
    ///
    /// `process_group(0)` keeps std on its `posix_spawn` fast path; a
    /// `pre_exec` step (which forces the fork path) is added only for
    /// `close_fds(true)`, and for the signal reset when the spawning thread
    /// is not clean (see `sys/signals.rs`).
    pub(crate) fn spawn(&self) -> Result<Spawned, SpawnError> {
        self.validate()?;
        // A host that ignores SIGCHLD would have the kernel reap our
        // children behind our back.
        crate::sys::signals::restore_sigchld();
        let io_err = |source: io::Error| self.classify(source);
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        if self.env_clear {
            command.env_clear();
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        if self.process_group {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        if self.close_fds {
            crate::sys::fd::close_range_works().map_err(io_err)?;
            // SAFETY: the closure runs in the child between fork and exec,
            // after std installed fds 0, 1 and 2; it makes one syscall,
            // which is async-signal-safe, and touches no memory.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(
                    &mut command,
                    crate::sys::fd::cloexec_from_3,
                );
            }
        }
        if self.restore_signals && !crate::sys::signals::host_is_clean() {
            // SAFETY: the closure runs in the child between fork and exec;
            // it only makes async-signal-safe calls (sigprocmask,
            // sigaction, signal) and allocates nothing.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(
                    &mut command,
                    crate::sys::signals::reset_in_child,
                );
            }
        }
        let mut stdin = None;
        command.stdin(match self.stdin {
            InputFrom::Inherit => Stdio::inherit(),
            InputFrom::Null => Stdio::null(),
            InputFrom::Pipe => {
                let (read, write) = pipe().map_err(io_err)?;
                stdin = Some(write);
                Stdio::from(read)
            }
        });

        let mut reads = Vec::new();
        let mut pty: Option<OwnedFd> = None; // the slave end, once opened
        let mut open_pty_slave = |reads: &mut Vec<(OutputStream, OwnedFd)>,
                                  stream: OutputStream|
         -> io::Result<OwnedFd> {
            if let Some(slave) = &pty {
                return slave.try_clone();
            }
            let (master, slave) = open_pty()?;
            reads.push((stream, master));
            let copy = slave.try_clone()?;
            pty = Some(slave);
            Ok(copy)
        };
        let stdout_fd: Option<OwnedFd> = match self.stdout {
            OutputTo::Pipe => {
                let (read, write) = pipe().map_err(io_err)?;
                reads.push((OutputStream::Stdout, read));
                Some(write)
            }
            OutputTo::Pty => {
                Some(open_pty_slave(&mut reads, OutputStream::Stdout).map_err(io_err)?)
            }
            OutputTo::Inherit => Some(io::stdout().as_fd().try_clone_to_owned().map_err(io_err)?),
            OutputTo::Null | OutputTo::MergeIntoStdout => None,
        };
        let mut stderr_link = None;
        let stderr_stdio = match self.stderr {
            OutputTo::Pipe => {
                let (read, write) = pipe().map_err(io_err)?;
                reads.push((OutputStream::Stderr, read));
                stderr_link = crate::sys::proc::fd_link(std::os::fd::AsRawFd::as_raw_fd(&write));
                Stdio::from(write)
            }
            OutputTo::Pty => {
                Stdio::from(open_pty_slave(&mut reads, OutputStream::Stderr).map_err(io_err)?)
            }
            OutputTo::Inherit => Stdio::inherit(),
            OutputTo::Null => Stdio::null(),
            OutputTo::MergeIntoStdout => match &stdout_fd {
                Some(fd) => Stdio::from(fd.try_clone().map_err(io_err)?),
                None => Stdio::null(),
            },
        };
        let mut outputs: Vec<String> = Vec::new();
        for fd in stdout_fd.iter().chain(&pty) {
            if let Some(link) = crate::sys::proc::fd_link(std::os::fd::AsRawFd::as_raw_fd(fd)) {
                if !outputs.contains(&link) {
                    outputs.push(link);
                }
            }
        }
        outputs.extend(stderr_link);
        command.stderr(stderr_stdio);
        command.stdout(match stdout_fd {
            Some(fd) => Stdio::from(fd),
            None => Stdio::null(),
        });

        let spawned = command.spawn().map_err(io_err)?;
        // Dropping the command closes our copies of the child's ends, so
        // EOF arrives when the child (and its children) close theirs.
        drop(command);
        drop(pty);
        let child = Child::new(spawned.id(), self.process_group).map_err(io_err)?;
        log::debug!(
            "spawned {:?} {:?} as pid {}",
            self.program,
            self.args,
            child.pid()
        );
        Ok(Spawned {
            child,
            reads,
            stdin,
            outputs,
        })
    }

    fn classify(&self, source: io::Error) -> SpawnError {
        use nix::libc;
        let program = self.program_name();
        let errno = source.raw_os_error();
        // exec reports a working directory it cannot enter with the same
        // errnos as a program it cannot find or run: tell them apart.
        if let (Some(libc::ENOENT | libc::ENOTDIR | libc::EACCES), Some(dir)) =
            (errno, &self.current_dir)
        {
            let enterable = nix::unistd::access(dir.as_path(), nix::unistd::AccessFlags::X_OK)
                .is_ok()
                && dir.is_dir();
            if !enterable {
                return SpawnError::WorkingDirectory {
                    program,
                    dir: dir.clone(),
                    source,
                };
            }
        }
        match errno {
            Some(libc::ENOENT) => SpawnError::NotFound { program, source },
            Some(libc::EACCES | libc::EPERM) => SpawnError::PermissionDenied { program, source },
            Some(libc::E2BIG) => {
                let (largest, size) = self.largest_string();
                SpawnError::ArgumentListTooLong {
                    program,
                    largest,
                    size,
                    source,
                }
            }
            Some(libc::EAGAIN | libc::EMFILE | libc::ENFILE | libc::ENOMEM) => {
                SpawnError::ResourceExhausted { program, source }
            }
            None if source.kind() == io::ErrorKind::Unsupported => {
                SpawnError::Unsupported { program, source }
            }
            _ => SpawnError::Io { program, source },
        }
    }

    /// The largest string the kernel copies for exec: an argument (with its
    /// NUL) or an environment entry `NAME=VALUE` (with its NUL), of the
    /// environment the child would get.
    fn largest_string(&self) -> (String, usize) {
        use std::os::unix::ffi::OsStrExt;
        let mut env: Vec<(OsString, OsString)> = if self.env_clear {
            Vec::new()
        } else {
            std::env::vars_os().collect()
        };
        for (key, value) in &self.env {
            env.retain(|(k, _)| k != key);
            if let Some(value) = value {
                env.push((key.clone(), value.clone()));
            }
        }
        let argv = std::iter::once(&self.program).chain(&self.args);
        let args = argv
            .enumerate()
            .map(|(i, arg)| (format!("argument {i}"), arg.as_bytes().len() + 1));
        let vars = env.iter().map(|(key, value)| {
            (
                format!("environment variable {}", key.to_string_lossy()),
                key.as_bytes().len() + value.as_bytes().len() + 2,
            )
        });
        args.chain(vars)
            .max_by_key(|(_, size)| *size)
            .unwrap_or_else(|| ("argument 0".to_owned(), 1))
    }
}

/// What std's `Command` keeps of a program, argument or working directory
/// that holds a NUL byte: this text instead (its spawn then fails with
/// "nul byte found in provided data").
const STD_NUL_PLACEHOLDER: &str = "<string-with-nul>";

/// `s`, with a NUL byte put back if it is std's placeholder for a string
/// that held one, so that the start refuses it as the original.
fn nul_restored(s: &OsStr) -> OsString {
    let mut s = s.to_owned();
    if s == STD_NUL_PLACEHOLDER {
        s.push("\0");
    }
    s
}

impl From<&Command> for Popen {
    /// Copies the program, arguments, environment changes and working
    /// directory of `command`. std does not expose `env_clear()`, stdio or
    /// platform extensions set on a `Command`; set those on the `Popen`.
    ///
    /// std keeps a program, argument or working directory that held a NUL
    /// byte as the text `<string-with-nul>`; the `Popen` takes that text
    /// as a string with a NUL byte, so its start refuses it (as the
    /// `Command`'s spawn would), even if `<string-with-nul>` was meant
    /// literally.
    fn from(command: &Command) -> Popen {
        let mut popen = Popen::new(nul_restored(command.get_program()))
            .args(command.get_args().map(nul_restored));
        for (key, value) in command.get_envs() {
            popen = match value {
                Some(value) => popen.env(key, value),
                None => popen.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            popen = popen.current_dir(nul_restored(dir.as_os_str()));
        }
        popen
    }
}

impl From<Command> for Popen {
    fn from(command: Command) -> Popen {
        Popen::from(&command)
    }
}
