//! [`Popen`]: the description of a task (portage's `subprocess.Popen`
//! arguments plus `PopenProcess`'s options): what is spawned (see
//! `spawn.rs`), how its output is read and who hears of it. Starting it
//! hands a `TaskSpec` to the task actor (see `process/mod.rs`).
//!
//! The builder's settings by what they concern: the spawn, stdio, the
//! reader, the task's options and listeners here; what the child sets up
//! for itself between fork and exec in `child_setup.rs`; the terminal in
//! `terminal.rs`; the cgroup and the parent-death signal in
//! `containment.rs`.

use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use actix::Recipient;
use bytes::Bytes;

use crate::messages::{Chunk, Exited, OutputStream, Started};
use crate::options::{ReaderOptions, TaskOptions};
use crate::process::{JobListeners, PopenProcess, ProcessHandle, TaskSpec};
use crate::spawn::{InputFrom, OutputTo, SpawnSpec};
use crate::supervisor::{Enqueue, ProcessSupervisor};
use crate::{CompletedProcess, ReturnCode, RunError, SpawnError};

mod child_setup;
mod containment;
mod terminal;

/// A description of a child process to run as a [`PopenProcess`] actor.
///
/// It holds what `std::process::Command` holds (program, arguments,
/// environment, working directory), how the output is wired, the task's
/// options, and the recipients of its messages. It is `Clone` (portage's
/// `copy()`): the same description can be started again.
///
/// There is no conversion from a `std::process::Command`: std lets a
/// `Command`'s uid, gid, groups, `arg0`, `pre_exec` hooks and stdio be
/// set but never read back, so a conversion would drop them silently (a
/// child meant to run as `nobody` would run as root). Build a `Popen`
/// instead.
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
    spec: TaskSpec,
}

impl Popen {
    /// Describes a run of `program` with no arguments, looked up on `PATH`
    /// when it has no `/` (as `std::process::Command::new`).
    pub fn new(program: impl AsRef<OsStr>) -> Popen {
        Popen {
            spec: TaskSpec {
                command: SpawnSpec::new(program.as_ref().to_owned()),
                reader: ReaderOptions::default(),
                options: TaskOptions::default(),
                subscribers: Vec::new(),
                line_subscribers: Vec::new(),
                start_listeners: Vec::new(),
                exit_listeners: Vec::new(),
                job_listeners: JobListeners::default(),
                input: None,
                tee: None,
            },
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Popen {
        self.spec.command.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Popen
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.spec
            .command
            .args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child.
    ///
    /// A `key` that is empty or holds `=` or a NUL byte, or a `value` that
    /// holds a NUL byte, cannot be passed on: the start refuses it with
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig) (std's `Command` would pass `A=B` set
    /// to `c` on as `A=B=c`, setting `A`).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Popen {
        self.spec
            .command
            .env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Popen {
        self.spec.command.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts the child with an empty environment plus what [`env`](Self::env) sets.
    pub fn env_clear(mut self) -> Popen {
        self.spec.command.env_clear = true;
        self.spec.command.env.clear();
        self
    }

    /// Runs the child in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Popen {
        self.spec.command.current_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Where the child's stdin comes from.
    pub fn stdin(mut self, input: InputFrom) -> Popen {
        self.spec.command.stdio.stdin = Some(input);
        self
    }

    /// Where the child's stdout goes.
    pub fn stdout(mut self, output: OutputTo) -> Popen {
        self.spec.command.stdio.stdout = Some(output);
        self
    }

    /// Where the child's stderr goes.
    pub fn stderr(mut self, output: OutputTo) -> Popen {
        self.spec.command.stdio.stderr = Some(output);
        self
    }

    /// Puts stdout and stderr on one pseudo-terminal: a shorthand for
    /// `.stdout(OutputTo::Pty).stderr(OutputTo::Pty)`.
    pub fn pty(self) -> Popen {
        self.stdout(OutputTo::Pty).stderr(OutputTo::Pty)
    }

    /// Writes `data` to the child's stdin, then closes it, so that the
    /// child reads `data` then EOF (Python's `input=`). The stdin becomes a
    /// pipe ([`InputFrom::Pipe`]); more can still be written with
    /// [`WriteStdin`](crate::WriteStdin) until the close, which comes
    /// after `data`. A child that exits without reading it all gets no
    /// more; nothing is reported.
    ///
    /// # Errors
    /// The start refuses a `Popen` whose stdin was then set to something
    /// other than a pipe, with [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig).
    pub fn input(mut self, data: impl Into<Bytes>) -> Popen {
        self.spec.command.stdio.stdin = Some(InputFrom::Pipe);
        self.spec.input = Some(data.into());
        self
    }

    /// Sets the room, in bytes, of each pipe made for the child: its piped
    /// stdin, stdout and stderr and, in a [`Pipeline`](crate::Pipeline),
    /// the kernel pipe from this stage to the next (Python's `pipesize`;
    /// `F_SETPIPE_SZ`, fcntl(2), Linux 2.6.35). The kernel's default is
    /// 64 KiB; it rounds the size up to a power of two pages. A larger pipe
    /// lets a fast writer run further ahead of its reader, with fewer
    /// wake-ups per byte (BENCHMARKS.md §1 measures sizes from 64 KiB to
    /// 1 MiB). Pair it with [`bufsize`](Self::bufsize), so that each read
    /// may take what the pipe holds.
    ///
    /// ```
    /// use actix_popen::Popen;
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let done = Popen::new("head")
    ///     .args(["-c", "1000000", "/dev/zero"])
    ///     .pipe_size(1 << 20)
    ///     .bufsize(1 << 20)
    ///     .output()
    ///     .await?;
    /// assert_eq!(done.stdout.len(), 1_000_000);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig)
    /// for 0 or more than [`MAX_PIPE_SIZE`](crate::MAX_PIPE_SIZE); with
    /// [`SpawnErrorKind::NotPermitted`](crate::SpawnErrorKind::NotPermitted)
    /// above `/proc/sys/fs/pipe-max-size` (1 MiB by default) without
    /// CAP_SYS_RESOURCE; and with [`SpawnErrorKind::Io`](crate::SpawnErrorKind::Io)
    /// when the kernel refuses it at the spawn: an unprivileged user's
    /// pipes already hold `/proc/sys/fs/pipe-user-pages-soft` pages (16,384
    /// pages, 64 MiB, by default; every pipe counts, stderr's included).
    /// Nothing is spawned.
    pub fn pipe_size(mut self, bytes: usize) -> Popen {
        self.spec.command.pipe_size = Some(bytes);
        self
    }

    /// Sets the most bytes each `read()` asks for (portage's `_bufsize`,
    /// 4096 by default), from 1 to [`MAX_BUFSIZE`](crate::MAX_BUFSIZE); the start refuses
    /// other values with [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig).
    pub fn bufsize(mut self, bufsize: usize) -> Popen {
        self.spec.reader.bufsize = bufsize;
        self
    }

    /// Lets one [`Chunk`] gather up to `bytes` from reads that are ready at
    /// once; each `read()` still asks for at most `bufsize`. By default a
    /// chunk is one read (portage's behaviour); with a child that writes
    /// fast, coalescing sends one message per `bytes` instead of one per
    /// read. At most [`MAX_COALESCE`](crate::MAX_COALESCE); the start refuses more.
    pub fn coalesce(mut self, bytes: usize) -> Popen {
        self.spec.reader.coalesce = bytes;
        self
    }

    /// Sets how many chunks of one stream may be unconsumed by the
    /// subscribers at once (16 by default, at least 1); see [`Chunk`] for
    /// how the credit returns. With the window used up the task stops
    /// reading and the child blocks in `write()`. At most [`MAX_WINDOW`](crate::MAX_WINDOW);
    /// the start refuses more.
    pub fn window(mut self, window: usize) -> Popen {
        self.spec.reader.window = window;
        self
    }

    /// Bounds the wait for EOF after the child exited (as Go's
    /// `Cmd.WaitDelay`). By default the task waits for EOF however long a
    /// grandchild holds the output open (portage's behaviour). With a
    /// drain timeout, once the child has exited the task waits at most
    /// `timeout` for EOF, then closes its read ends and ends with
    /// [`Exited::output_complete`](crate::Exited::output_complete) `false`.
    /// Time the reader spends waiting for slow subscribers (backpressure)
    /// does not count: output already in the pipe is not cut off because a
    /// consumer is slow (see the [lifecycle](crate::PopenProcess#lifecycle)).
    /// At most [`MAX_TIMEOUT`](crate::MAX_TIMEOUT); the start refuses more.
    pub fn drain_timeout(mut self, timeout: Duration) -> Popen {
        self.spec.options.drain_timeout = Some(timeout);
        self
    }

    /// Bounds the task's run: `timeout` after the child was spawned (not
    /// counting a wait in the job pool), a task still running is cancelled
    /// as by [`Cancel`](crate::Cancel) (the [cancel
    /// signal](Self::cancel_signal) and SIGCONT to its group, SIGKILL
    /// after the cancel timeout), and ends with
    /// [`ExitCause::TimedOut`](crate::ExitCause::TimedOut) (Python's
    /// `subprocess.run(timeout=)`, Go's `exec.CommandContext` with a
    /// deadline; coreutils `timeout(1)`). A task whose child exited but
    /// whose output is still open when the timeout passes is cancelled too,
    /// so that its group is signalled. At most
    /// [`MAX_TIMEOUT`](crate::MAX_TIMEOUT); the start refuses more.
    ///
    /// ```
    /// use std::time::Duration;
    /// use actix_popen::{ExitCause, Popen};
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), actix_popen::RunError> {
    /// let done = Popen::new("sleep")
    ///     .arg("60")
    ///     .timeout(Duration::from_millis(100))
    ///     .output()
    ///     .await?;
    /// assert_eq!(done.cause, ExitCause::TimedOut);
    /// assert_eq!(done.returncode.signal(), Some(15));
    /// # Ok(())
    /// # }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Popen {
        self.spec.options.timeout = Some(timeout);
        self
    }

    /// Whether the task is cancelled once every address of its actor is
    /// dropped (every [`ProcessHandle`], `Addr` and `Recipient` of it),
    /// as by [`Cancel`](crate::Cancel): the [cancel
    /// signal](Self::cancel_signal) and SIGCONT to its group, SIGKILL
    /// after the cancel timeout, and it ends with
    /// [`ExitCause::Cancelled`](crate::ExitCause::Cancelled). tokio's and
    /// process-wrap's `kill_on_drop`, which send SIGKILL at once.
    /// A [`submit`](Self::submit)ted task whose handles are all dropped
    /// while it waits in the job pool is cancelled there: it never runs,
    /// ends with [`ReturnCode::CANCELLED`](crate::ReturnCode::CANCELLED),
    /// and gives its place back.
    ///
    /// `false` by default: with every handle dropped the task runs to its
    /// end and its child is reaped, as portage's tasks do and as std's and
    /// tokio's children do (a piped stdin is closed, so the child reads
    /// EOF). Exit listeners and subscribers hold no address of the task
    /// and do not keep it alive.
    ///
    /// ```
    /// use actix_popen::{ExitCause, Popen};
    /// # use actix::prelude::*;
    /// # struct Told(Option<futures::channel::oneshot::Sender<actix_popen::Exited>>);
    /// # impl Actor for Told { type Context = Context<Self>; }
    /// # impl Handler<actix_popen::Exited> for Told {
    /// #     type Result = ();
    /// #     fn handle(&mut self, e: actix_popen::Exited, _: &mut Context<Self>) {
    /// #         if let Some(tx) = self.0.take() { let _ = tx.send(e); }
    /// #     }
    /// # }
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (tx, rx) = futures::channel::oneshot::channel();
    /// # let listener = Told(Some(tx)).start().recipient();
    /// let task = Popen::new("sleep")
    ///     .arg("60")
    ///     .kill_on_drop(true)
    ///     .exit_listener(listener)
    ///     .start()?;
    /// drop(task); // SIGTERM to the sleep
    /// let exited = rx.await?;
    /// assert_eq!(exited.cause, ExitCause::Cancelled);
    /// # Ok(())
    /// # }
    /// ```
    pub fn kill_on_drop(mut self, enabled: bool) -> Popen {
        self.spec.options.kill_on_drop = enabled;
        self
    }

    /// Sets the grace between the [cancel signal](Self::cancel_signal)
    /// (SIGTERM by default) and SIGKILL on cancel, and between
    /// SIGKILL and the orphan warning, there at least 0.5 s (portage's
    /// `_cancel_timeout`, 1 s by default). At most
    /// [`MAX_TIMEOUT`](crate::MAX_TIMEOUT); the start refuses more.
    pub fn cancel_timeout(mut self, timeout: Duration) -> Popen {
        self.spec.options.cancel_timeout = timeout;
        self
    }

    /// Sets the first signal of a cancel, of the run timeout and of a
    /// System stop, sent with SIGCONT before the SIGKILL that follows
    /// after the cancel timeout (systemd's `KillSignal=`, erlexec's
    /// `{kill, Cmd}`; Go's `Cmd.Cancel` sends SIGKILL at once). By default
    /// SIGTERM (portage), and SIGHUP for a task on a controlling terminal
    /// ([`terminal`](Self::terminal)), which is what the kernel sends its
    /// session leader when a terminal hangs up: an interactive shell
    /// ignores SIGTERM, but exits on SIGHUP, and bash passes it on to its
    /// jobs first. A [`CancelWith`](crate::CancelWith) names its own.
    ///
    /// ```
    /// use actix_popen::{AsyncWait, Cancel, Popen, Signal};
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let task = Popen::new("sleep")
    ///     .arg("100")
    ///     .cancel_signal(Signal::SIGINT)
    ///     .start()?;
    /// task.send(Cancel).await?;
    /// let code = task.send(AsyncWait).await??;
    /// assert_eq!(code.signal(), Some(Signal::SIGINT.as_raw()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn cancel_signal(mut self, signal: crate::Signal) -> Popen {
        self.spec.options.cancel_signal = Some(signal);
        self
    }

    /// Whether the child leads a process group of its own, with every
    /// signal sent to the whole group (`true` by default).
    ///
    /// With `false` the child stays in the host's group and only the child
    /// itself is signalled: processes it started may outlive a cancel, and
    /// a Ctrl-C at a terminal reaches it directly.
    pub fn process_group(mut self, enabled: bool) -> Popen {
        self.spec.command.process_group = enabled;
        self
    }

    /// Whether the child gets no fd but 0, 1, 2 and those given it
    /// ([`pass_fd`](Self::pass_fd)), not even those the host opened
    /// without close-on-exec. `true` by default, as Python's
    /// `close_fds=True`, which portage relies on.
    ///
    /// With `true`, the crate spawns the child itself, and the cost of a
    /// spawn does not grow with the number of fds the host holds (two per
    /// running child): a child is made by `clone(CLONE_VM | CLONE_VFORK |
    /// CLONE_FILES)` as `posix_spawn` makes one, then takes a fd table of
    /// its own holding only its fds (`close_range` with
    /// `CLOSE_RANGE_UNSHARE`, Linux 5.9), which they reach through a
    /// socket (`SCM_RIGHTS`). With 9,900 children running, a spawn-to-exit
    /// takes 0.11× the time of `tokio::process`'s (BENCHMARKS.md §7).
    /// The child is the host's as any other: same working directory,
    /// umask, limits, credentials and namespaces as the host at the spawn.
    /// A task with a [`pre_exec`](Self::pre_exec) hook, a
    /// [`cgroup`](Self::cgroup) of its own or more than 235 fds to pass, or
    /// on a kernel before 5.9 (or one whose sandbox refuses
    /// `CLOSE_RANGE_UNSHARE`, or when the user's fds in flight in unix
    /// sockets are over its limit), is spawned through std's `Command`
    /// instead, its fds marked close-on-exec in the child (one
    /// `close_range` from Linux 5.11, else each fd listed in
    /// `/proc/self/fd`).
    ///
    /// With `false`, the child also inherits the host's fds opened without
    /// close-on-exec (as with `std::process::Command`), such as a make
    /// jobserver's; the spawn is then std's, whose cost grows with the
    /// host's fds: `posix_spawn`, or std's fork path when the child has a
    /// setting to make ([`uid`](Self::uid), [`umask`](Self::umask), …),
    /// where glibc's `execvp` runs a file without `#!` with `/bin/sh`.
    ///
    /// Either way the program is found as glibc's `execvp` finds it, in
    /// the child's PATH; through the crate's spawn (and `posix_spawn`), a
    /// file without `#!` fails with ENOEXEC (as with Go and Python)
    /// instead of being run by `/bin/sh`.
    pub fn close_fds(mut self, enabled: bool) -> Popen {
        self.spec.command.close_fds = enabled;
        self
    }

    /// Whether the child starts with an empty signal mask and every signal
    /// at its default disposition (`true` by default), whatever the thread
    /// that spawns it blocks or the host ignores (Python's
    /// `restore_signals`, process-wrap's reset-sigmask wrapper). Without
    /// it, a child spawned from a thread that blocks SIGTERM would ignore
    /// [`Cancel`](crate::Cancel) until the SIGKILL.
    ///
    /// Through the crate's own spawn (the default; see
    /// [`close_fds`](Self::close_fds)) the reset is one of the child's
    /// steps, which resets every signal handler anyway. Through std
    /// (`close_fds(false)`, hooks), it costs only its check when the
    /// spawning thread blocks no signal and the host ignores none but
    /// SIGPIPE; otherwise it adds a step between fork and exec, which
    /// forces std's fork path (see BENCHMARKS.md). With `false`, the child
    /// inherits both (but SIGPIPE, which std resets too), as with
    /// `std::process::Command`.
    pub fn restore_signals(mut self, enabled: bool) -> Popen {
        self.spec.command.restore_signals = enabled;
        self
    }

    /// Sends every output [`Chunk`] to `recipient`, from the first byte.
    pub fn subscribe(mut self, recipient: Recipient<Chunk>) -> Popen {
        self.spec.subscribers.push((None, recipient));
        self
    }

    /// Sends every line of the output to `recipient`, as [`Line`](crate::Line)s:
    /// one call for what a [`LineFramer`](crate::LineFramer) does, with its
    /// defaults. A line ends at `\n` or `\r\n`, which are removed (std's
    /// and tokio's `lines()`); one longer than
    /// [`DEFAULT_LINE_MAX`](crate::DEFAULT_LINE_MAX) comes in pieces
    /// ([`LineKind::Partial`](crate::LineKind::Partial)); the bytes after
    /// the last newline come last, as a
    /// [`LineKind::Unterminated`](crate::LineKind::Unterminated) line, when
    /// the task ends. Each line carries its stream. For another maximum,
    /// policy or `\r` handling, start a `LineFramer` and
    /// [`subscribe`](Self::subscribe) it.
    ///
    /// ```
    /// use actix::prelude::*;
    /// use actix_popen::{Line, LineKind, Popen};
    ///
    /// struct Print;
    /// impl Actor for Print {
    ///     type Context = Context<Self>;
    /// }
    /// impl Handler<Line> for Print {
    ///     type Result = ();
    ///     fn handle(&mut self, line: Line, _: &mut Context<Self>) {
    ///         println!("{:?}: {}", line.kind, String::from_utf8_lossy(&line.data));
    ///     }
    /// }
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), actix_popen::RunError> {
    /// let print = Print.start();
    /// Popen::new("printf")
    ///     .arg("one\r\ntwo\nthree")
    ///     .lines(print.recipient())
    ///     .status()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn lines(mut self, recipient: Recipient<crate::Line>) -> Popen {
        self.spec.line_subscribers.push(recipient);
        self
    }

    /// Sends the [`Chunk`]s of one stream only to `recipient` (for example
    /// the stdout of this process to the stdin of the next).
    pub fn subscribe_stream(mut self, stream: OutputStream, recipient: Recipient<Chunk>) -> Popen {
        self.spec.subscribers.push((Some(stream), recipient));
        self
    }

    /// Notifies `recipient` of the exit (see [`AddExitListener`](crate::AddExitListener)).
    pub fn exit_listener(mut self, recipient: Recipient<Exited>) -> Popen {
        if !self.spec.exit_listeners.contains(&recipient) {
            self.spec.exit_listeners.push(recipient);
        }
        self
    }

    /// Notifies `recipient` of the start (see [`AddStartListener`](crate::AddStartListener)).
    pub fn start_listener(mut self, recipient: Recipient<Started>) -> Popen {
        if !self.spec.start_listeners.contains(&recipient) {
            self.spec.start_listeners.push(recipient);
        }
        self
    }

    /// Tells `recipient` each time the child stops ([`Stopped`](crate::Stopped),
    /// with the signal: SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU), as a shell's
    /// job control sees it (`waitpid` with `WUNTRACED`; Go's and Python's
    /// `Wait` never report stops).
    ///
    /// A task with a stop or continue listener listens for SIGCHLD (tokio's
    /// handler, which keeps any handler installed before it) and, at each
    /// one, asks the kernel about its own child only (`waitid` on its
    /// pidfd with `WSTOPPED | WCONTINUED`): never `waitpid(-1)`, so no
    /// other library's child's stop or exit is taken. The kernel keeps one
    /// such report per child: a stop followed by a continue before the task
    /// looks may be told as the continue alone, and a child that exits just
    /// after it was continued by its exit alone. A task without these
    /// listeners installs nothing.
    ///
    /// ```
    /// use actix::prelude::*;
    /// use actix_popen::{Popen, SendSignal, Signal, Stopped};
    ///
    /// struct Watch(Option<futures::channel::oneshot::Sender<Stopped>>);
    /// impl Actor for Watch {
    ///     type Context = Context<Self>;
    /// }
    /// impl Handler<Stopped> for Watch {
    ///     type Result = ();
    ///     fn handle(&mut self, stopped: Stopped, _: &mut Context<Self>) {
    ///         if let Some(tx) = self.0.take() {
    ///             let _ = tx.send(stopped);
    ///         }
    ///     }
    /// }
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (tx, rx) = futures::channel::oneshot::channel();
    /// let watch = Watch(Some(tx)).start();
    /// let task = Popen::new("sleep")
    ///     .arg("60")
    ///     .kill_on_drop(true)
    ///     .stop_listener(watch.recipient())
    ///     .start()?;
    /// task.send(SendSignal::to_child(Signal::SIGSTOP)).await??;
    /// assert_eq!(rx.await?.signal, Signal::SIGSTOP);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stop_listener(mut self, recipient: Recipient<crate::Stopped>) -> Popen {
        let listeners = &mut self.spec.job_listeners.stopped;
        if !listeners.contains(&recipient) {
            listeners.push(recipient);
        }
        self
    }

    /// Tells `recipient` each time the stopped child is continued
    /// ([`Continued`](crate::Continued)); see
    /// [`stop_listener`](Self::stop_listener) for how.
    pub fn continue_listener(mut self, recipient: Recipient<crate::Continued>) -> Popen {
        let listeners = &mut self.spec.job_listeners.continued;
        if !listeners.contains(&recipient) {
            listeners.push(recipient);
        }
        self
    }

    /// The program, as given.
    pub fn get_program(&self) -> &OsStr {
        &self.spec.command.program
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
    /// ([`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig): a `bufsize` of 0, stdout set to
    /// [`OutputTo::MergeIntoStdout`], an environment variable name that is
    /// empty or holds `=` or a NUL byte, a NUL byte in the program, an
    /// argument, a value or the working directory), or when no actix
    /// arbiter runs on this thread. Nothing is left running.
    pub fn start(self) -> Result<ProcessHandle, SpawnError> {
        PopenProcess::spawn_and_start(self.spec)
    }

    /// Runs the task to its end and returns its return code and all of its
    /// output (std's and tokio's `Command::output`, Python's
    /// `subprocess.run(capture_output=True)`).
    ///
    /// Unless set: stdout and stderr are piped and kept whole (no limit:
    /// subscribe a [`Collector::with_limit`](crate::Collector::with_limit)
    /// and use [`start`](Self::start) to bound them), and stdin is
    /// `/dev/null` (std's `output()` does the same), so the run cannot wait
    /// on a child that reads its stdin; [`input`](Self::input) feeds it
    /// bytes instead. Subscribers and listeners set on the `Popen` hear the
    /// task as usual.
    ///
    /// The future is `Send` and can be awaited anywhere: inside an actix
    /// System the task runs on the current arbiter, as with
    /// [`start`](Self::start), and is cancelled if that arbiter stops;
    /// elsewhere (a plain tokio runtime, `futures::executor::block_on`) it
    /// runs on a background actix System, one thread for the whole
    /// process, started the first time it is needed. The child is spawned
    /// when the future is first polled; dropping the future does not
    /// cancel it (see [`PopenProcess#lifecycle`](crate::PopenProcess#lifecycle)).
    ///
    /// ```
    /// use actix_popen::Popen;
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), actix_popen::RunError> {
    /// let done = Popen::new("sh")
    ///     .args(["-c", "tr a-z A-Z; echo done >&2; exit 3"])
    ///     .input("hello\n")
    ///     .output()
    ///     .await?;
    /// assert_eq!(done.returncode.code(), 3);
    /// assert_eq!(&done.stdout[..], b"HELLO\n");
    /// assert_eq!(&done.stderr[..], b"done\n");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`RunError::Spawn`](crate::RunError::Spawn) as [`start`](Self::start)
    /// gives it (nothing ran); [`RunError::ActorGone`](crate::RunError::ActorGone)
    /// if the task's System stopped first.
    pub fn output(
        mut self,
    ) -> impl Future<Output = Result<CompletedProcess, RunError>> + Send + 'static {
        self.spec
            .command
            .stdio
            .fill(InputFrom::Null, OutputTo::Pipe, OutputTo::Pipe);
        crate::run::output(self.spec)
    }

    /// Runs the task to its end and returns its return code (std's and
    /// tokio's `Command::status`, Python's `subprocess.call`).
    ///
    /// Unless set, stdout and stderr are the host's own (inherited, as
    /// std's `status()` does), or piped to the task when something
    /// subscribed to the output ([`subscribe`](Self::subscribe),
    /// [`lines`](Self::lines)); stdin is `/dev/null` (std would inherit
    /// it; a run that waits must not wait on a child reading the host's
    /// stdin). Everything else is as for [`output`](Self::output).
    ///
    /// ```
    /// use actix_popen::Popen;
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), actix_popen::RunError> {
    /// let code = Popen::new("sh").args(["-c", "exit 7"]).status().await?;
    /// assert_eq!(code.code(), 7);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`output`](Self::output).
    pub fn status(mut self) -> impl Future<Output = Result<ReturnCode, RunError>> + Send + 'static {
        let observed = !self.spec.subscribers.is_empty() || !self.spec.line_subscribers.is_empty();
        let out = if observed {
            OutputTo::Pipe
        } else {
            OutputTo::Inherit
        };
        self.spec
            .command
            .stdio
            .fill(InputFrom::Null, out.clone(), out);
        crate::run::status(self.spec)
    }

    /// Spawns the child now and starts its actor on `arbiter` (another
    /// thread's event loop), so that [`ProcessHandle::wait`] can block this
    /// thread, which need not run an arbiter.
    ///
    /// A [`Cancel`](crate::Cancel) sends its first signals from `arbiter`,
    /// at once; the steps after them (the SIGKILL after the cancel timeout,
    /// the orphan warning) and the cancel of every child when the System
    /// stops are the [`ProcessSupervisor`]'s, on the System's own arbiter:
    /// keep that one running too (`System::run`, or a `block_on` on some
    /// thread), or those steps wait until it runs.
    ///
    /// # Errors
    /// As [`start`](Self::start); [`SpawnErrorKind::NoArbiter`](crate::SpawnErrorKind::NoArbiter) when `arbiter`
    /// has stopped.
    pub fn start_in_arbiter(
        self,
        arbiter: &actix_rt::ArbiterHandle,
    ) -> Result<ProcessHandle, SpawnError> {
        PopenProcess::spawn_in_arbiter(self.spec, arbiter)
    }

    /// Creates the task's actor on the current arbiter without spawning the
    /// child: send it [`Start`](crate::Start) to run it, or
    /// [`Cancel`](crate::Cancel) to end it with
    /// [`ReturnCode::CANCELLED`](crate::ReturnCode::CANCELLED) without it
    /// ever running.
    ///
    /// # Errors
    /// [`SpawnErrorKind::NoArbiter`](crate::SpawnErrorKind::NoArbiter) when no actix arbiter runs on this thread;
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig) for an invalid description.
    pub fn prepare(self) -> Result<ProcessHandle, SpawnError> {
        PopenProcess::prepare(self.spec)
    }

    /// Submits the task to the [`ProcessSupervisor`](crate::ProcessSupervisor)'s
    /// job pool: its actor is created on the current arbiter at once, and
    /// its child is spawned when the pool's limits allow, in submission
    /// order (portage's `--jobs` and `--load-average`; see
    /// [`SetJobLimits`](crate::SetJobLimits)). [`Cancel`](crate::Cancel)
    /// before then ends it with
    /// [`ReturnCode::CANCELLED`](crate::ReturnCode::CANCELLED).
    ///
    /// A spawn that fails when its turn comes ends the task with the
    /// error's [`shell_status`](crate::SpawnError::shell_status) (127 not
    /// found, 1 a file not opened, 126 otherwise), as
    /// [`Start`](crate::Start) does; exit listeners and
    /// [`AsyncWait`](crate::AsyncWait) hear of it, the error is logged, and
    /// [`ProcessHandle::spawn_error`] says why.
    ///
    /// # Errors
    /// As [`prepare`](Self::prepare).
    pub fn submit(self) -> Result<ProcessHandle, SpawnError> {
        let kill_on_drop = self.spec.options.kill_on_drop;
        let handle = self.prepare()?;
        ProcessSupervisor::get().do_send(Enqueue(Box::new(handle.clone().queued(kill_on_drop))));
        Ok(handle)
    }

    /// Whether anyone but the task itself sees `stream`: a subscriber of
    /// it, a line subscriber.
    pub(crate) fn observes(&self, stream: OutputStream) -> bool {
        self.spec
            .subscribers
            .iter()
            .any(|(only, _)| only.is_none_or(|s| s == stream))
            || !self.spec.line_subscribers.is_empty()
    }

    /// Copies the child's stdout into the pipe `sink` by `tee(2)` as it is
    /// read (a pipeline's next stage, when this stage's output is
    /// observed).
    pub(crate) fn tee_stdout(mut self, sink: std::os::fd::OwnedFd) -> Popen {
        self.spec.tee = Some((OutputStream::Stdout, std::sync::Arc::new(sink)));
        self
    }

    /// Checks the description as a start would, without starting.
    ///
    /// # Errors
    /// As [`start`](Self::start) for an invalid description or a setting
    /// the host may not make.
    pub(crate) fn validate(&self) -> Result<(), SpawnError> {
        self.spec.validate()
    }

    /// [`pipe_size`](Self::pipe_size), if set.
    pub(crate) fn pipe_size_set(&self) -> Option<usize> {
        self.spec.command.pipe_size
    }

    /// `err`, met while preparing this task's spawn, as its spawn error.
    pub(crate) fn spawn_error(&self, err: std::io::Error) -> SpawnError {
        self.spec.command.classify(err)
    }

    /// Whether the task is cancelled once its last handle is dropped.
    pub(crate) fn kills_on_drop(&self) -> bool {
        self.spec.options.kill_on_drop
    }

    /// The stage's default coalescing in a pipeline, unless it set its own.
    pub(crate) fn coalesce_unless_set(self, bytes: usize) -> Popen {
        if self.spec.reader.coalesce == 0 {
            self.coalesce(bytes)
        } else {
            self
        }
    }
}
