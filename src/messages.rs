//! Every message the actors send and handle, with its reply type.
//!
//! Requests are verbs ([`Cancel`], [`AsyncWait`], [`TryWait`], …); events are
//! nouns or past participles ([`Chunk`], [`Started`], [`Exited`]).

use actix::{Message, Recipient};
use bytes::Bytes;

use crate::{ReturnCode, Signal, SignalError, SpawnError, TaskId, WaitError};

/// Which of the child's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    /// The child's stdout; also stderr merged into it, and a pty that
    /// stdout is on (shared with stderr if both are).
    Stdout,
    /// The child's stderr, when it has a stream of its own: a pipe, or a
    /// pty that stdout is not on.
    Stderr,
}

/// Event: bytes the child wrote, as `read()` returned them.
///
/// Chunks of one stream arrive in the order they were read, each one
/// `read()` of at most `bufsize` bytes (or, with
/// [`Popen::coalesce`](crate::Popen::coalesce), several reads that were
/// ready at once). Every subscriber gets every chunk of the streams it
/// subscribed to (both, or the one given to
/// [`Popen::subscribe_stream`](crate::Popen::subscribe_stream)), and gets
/// them all before the task's [`Exited`].
///
/// # Backpressure
/// A chunk sent by a reader carries a credit of its reader's window. The
/// credit returns when the last copy of the chunk is dropped, that is when
/// every subscriber's handler is done with it (or its actor stopped). A
/// reader whose window is used up stops reading, so the pipe fills and the
/// child blocks in `write()`: a slow subscriber sets the pace and nothing
/// is dropped. A subscriber that keeps whole `Chunk`s keeps their credit;
/// keep [`data`](Chunk::data) (a cheap [`Bytes`] clone) instead.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Chunk {
    /// The task (or standalone reader) it comes from.
    pub task: TaskId,
    /// The stream it was read from.
    pub stream: OutputStream,
    /// The bytes.
    pub data: Bytes,
    // Held only for its Drop, which returns the credit to the reader.
    _credit: Option<Credit>,
}

/// A share of a reader's window; it returns when the last holder drops it.
pub(crate) type Credit = std::sync::Arc<tokio::sync::OwnedSemaphorePermit>;

impl Chunk {
    /// A chunk that carries no credit (to feed a process's stdin by hand,
    /// or in tests).
    pub fn new(task: TaskId, stream: OutputStream, data: impl Into<Bytes>) -> Chunk {
        Chunk {
            task,
            stream,
            data: data.into(),
            _credit: None,
        }
    }

    /// Another hold on this chunk's credit, for what is derived from it.
    pub(crate) fn credit(&self) -> Option<Credit> {
        self._credit.clone()
    }

    pub(crate) fn with_credit(
        task: TaskId,
        stream: OutputStream,
        data: Bytes,
        credit: tokio::sync::OwnedSemaphorePermit,
    ) -> Chunk {
        Chunk {
            task,
            stream,
            data,
            _credit: Some(std::sync::Arc::new(credit)),
        }
    }
}

/// Event: the task started (portage's start listeners).
///
/// `pid` is `None` when the task ended before its child ever ran (it was
/// cancelled first, or its spawn failed); portage notifies start listeners
/// in that case too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct Started {
    /// The task.
    pub task: TaskId,
    /// The child's pid.
    pub pid: Option<u32>,
}

/// Request: set the window size of the task's pseudo-terminal, in rows
/// and columns of characters (`TIOCSWINSZ`, tty_ioctl(4); erlexec's
/// `winsz`). If the size changed, the kernel sends SIGWINCH to the
/// terminal's foreground process group, so a full-screen program redraws.
/// The size at the spawn is [`Popen::window_size`](crate::Popen::window_size)'s.
///
/// # Errors
/// [`ResizeError::NoTerminal`](crate::ResizeError::NoTerminal) for a task
/// with no pty or not running; [`ResizeError::Io`](crate::ResizeError::Io)
/// if the kernel refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "Result<(), crate::ResizeError>")]
pub struct Resize {
    /// Rows of characters.
    pub rows: u16,
    /// Columns of characters.
    pub cols: u16,
}

/// Event: the task's child stopped (SIGSTOP, SIGTSTP at a terminal,
/// SIGTTIN or SIGTTOU in the background; the kernel discards the last
/// three for a child that leads its own session, as with
/// [`Popen::terminal`](crate::Popen::terminal)), sent to each stop listener
/// ([`Popen::stop_listener`](crate::Popen::stop_listener)). The child is
/// the task's alone: a process it started that stops is not told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct Stopped {
    /// The task.
    pub task: TaskId,
    /// The child's pid.
    pub pid: u32,
    /// The signal that stopped it.
    pub signal: Signal,
}

/// Event: the task's stopped child was continued (SIGCONT, from `fg`, `bg`
/// or [`SendSignal`]; a stopped child that a cancel ends is told by its
/// exit alone), sent to each continue
/// listener ([`Popen::continue_listener`](crate::Popen::continue_listener)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct Continued {
    /// The task.
    pub task: TaskId,
    /// The child's pid.
    pub pid: u32,
}

impl Stopped {
    /// The event, as a task sends it; for tests of code that handles one.
    pub fn new(task: TaskId, pid: u32, signal: Signal) -> Stopped {
        Stopped { task, pid, signal }
    }
}

impl Continued {
    /// The event, as a task sends it; for tests of code that handles one.
    pub fn new(task: TaskId, pid: u32) -> Continued {
        Continued { task, pid }
    }
}

/// Event: the task ended (portage's exit listeners), sent once to each
/// exit listener.
///
/// When a task ends, including every way it can end early (a drain
/// timeout, [`CloseReader`], [`CloseStream`], a release at the end of the
/// cancel escalation), and when its child is reaped, is said once, in
/// [`PopenProcess`'s lifecycle](crate::PopenProcess#lifecycle). A
/// subscriber that also listens for exits has every [`Chunk`] before this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct Exited {
    /// The task.
    pub task: TaskId,
    /// The child's pid; `None` if it never ran.
    pub pid: Option<u32>,
    /// The return code in portage's convention (-9 for a released task
    /// whose child had not exited; see the
    /// [lifecycle](crate::PopenProcess#lifecycle)).
    pub returncode: ReturnCode,
    /// Why the task ended: by itself, or by a cancel, the run timeout, the
    /// drain timeout, a release (see [`ExitCause`](crate::ExitCause)).
    pub cause: crate::ExitCause,
    /// What the child cost (CPU time, peak memory, wall time), once its
    /// exit was seen; `None` if it never ran, or for a task released
    /// before its child exited.
    pub usage: Option<crate::ResourceUsage>,
    /// `false` when reading stopped before EOF (a [`CloseReader`], a
    /// [`CloseStream`], the drain timeout or a release; see the
    /// [lifecycle](crate::PopenProcess#lifecycle)): output written after
    /// that is not delivered.
    pub output_complete: bool,
}

impl Started {
    /// The event, as a task sends it; for tests of code that handles one.
    pub fn new(task: TaskId, pid: Option<u32>) -> Started {
        Started { task, pid }
    }
}

impl Exited {
    /// The event, as a task sends it; for tests of code that handles one
    /// (the struct is `#[non_exhaustive]`, so that fields can be added).
    ///
    /// ```
    /// use actix_popen::{ExitCause, Exited, ReturnCode, TaskId};
    ///
    /// let task = TaskId::new();
    /// let exited = Exited::new(task, Some(42), ReturnCode::from_raw(3), ExitCause::Exited, true);
    /// assert_eq!(exited.task, task);
    /// assert_eq!(exited.returncode.code(), 3);
    /// ```
    pub fn new(
        task: TaskId,
        pid: Option<u32>,
        returncode: ReturnCode,
        cause: crate::ExitCause,
        output_complete: bool,
    ) -> Exited {
        Exited {
            task,
            pid,
            returncode,
            cause,
            usage: None,
            output_complete,
        }
    }

    /// The same event with what the child cost.
    pub fn with_usage(mut self, usage: Option<crate::ResourceUsage>) -> Exited {
        self.usage = usage;
        self
    }
}

/// Request: start a task created with [`Popen::prepare`](crate::Popen::prepare).
///
/// Replies with the child's pid.
///
/// # Errors
/// [`SpawnError`] if the child could not be spawned, or
/// [`SpawnErrorKind::AlreadyStarted`](crate::SpawnErrorKind::AlreadyStarted) if the task was started or cancelled
/// before. A failed start ends the task with the error's
/// [`shell_status`](SpawnError::shell_status) as its return code (127 not
/// found, 1 a file not opened, 126 any other failure) and notifies its
/// listeners (see
/// [`PopenProcess`'s lifecycle](crate::PopenProcess#lifecycle)).
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "Result<u32, SpawnError>")]
pub struct Start;

/// Request: cancel the task (portage's `cancel()`); returns at once.
///
/// What a cancel does to the task is in [`PopenProcess`'s
/// lifecycle](crate::PopenProcess#lifecycle): a task not yet started ends
/// with [`ReturnCode::CANCELLED`]; a running one is escalated. This says
/// which process gets which signal, and when. For a running task (its
/// child may have exited already, while a grandchild keeps the output
/// open):
///
/// 1. the child's process group (or the child alone, with
///    [`Popen::process_group(false)`](crate::Popen::process_group)) gets
///    the cancel signal, then at once SIGCONT, so that a stopped process
///    runs its handler (as systemd and shells do). The cancel signal is
///    SIGTERM, or SIGHUP for a task on a controlling terminal
///    ([`Popen::terminal`](crate::Popen::terminal)), or what
///    [`Popen::cancel_signal`](crate::Popen::cancel_signal) chose;
/// 2. after the cancel timeout, every member of the group still alive gets
///    SIGKILL, even if the child itself obeyed the SIGTERM at once;
/// 3. if the task has still not ended after another cancel timeout (at
///    least 0.5 s; a process stuck in the kernel, or one outside the
///    group, say after `setsid`, holding the output open), an orphan
///    warning naming what is still alive is logged and the task is
///    released: it reports [`Exited`] at once, with `output_complete:
///    false` if its output was still open, and -9 if its child has not
///    exited.
///
/// Signals go to the group only while its leader, our child, is unreaped:
/// the library reads an exited child's status without reaping it and keeps
/// it a zombie until the escalation ends, so its pid and group id cannot be
/// handed to another process in between. EPERM from `kill()` is logged at
/// error level (portage bug #358211). The same escalation runs on every
/// child still running when its arbiter or the actix System stops (then
/// blocking the teardown, at most a cancel timeout plus the longer of a
/// cancel timeout and 0.5 s). Later `Cancel`s do nothing; so does a
/// `Cancel` after the task ended.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "()")]
pub struct Cancel;

/// Request: cancel as [`Cancel`] does, but with `signal` as the first
/// signal instead of SIGTERM: `signal` and at once SIGCONT to the child's
/// process group, SIGKILL to what is left of it after the cancel timeout,
/// and so on.
///
/// This is how a program that runs a child on a user's behalf passes on the
/// signal it was sent, as coreutils `timeout(1)` does: SIGHUP when the
/// terminal closed, SIGINT for Ctrl-C, SIGQUIT for Ctrl-\\. Like
/// [`Cancel`], only the first cancel of a task does anything, and the task
/// ends with the child's status (128+N in a shell, -N here, for the signal
/// N that killed it).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct CancelWith(pub Signal);

/// Request: send a signal to the task's child or its process group, now,
/// and nothing more: no escalation follows, and the task goes on (Go's
/// `Process.Signal`, Python's `Popen.send_signal` and `os.killpg`).
///
/// [`SendSignal::to_group`] (or `SendSignal::new`) sends it where a
/// cancel's would: to the child's process group, or to the child alone
/// under [`Popen::process_group(false)`](crate::Popen::process_group);
/// [`SendSignal::to_child`] to the child alone. Any signal, real-time ones
/// included: SIGHUP to reload, SIGINT, SIGUSR1, SIGKILL at once, SIGSTOP
/// to stop the group and SIGCONT to continue it. It is sent only while
/// the child is our unreaped child (its group id cannot have been reused,
/// see [`Cancel`]).
///
/// ```
/// use actix_popen::{AsyncWait, ExitCause, Popen, SendSignal, Signal};
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let task = Popen::new("sleep").arg("60").start()?;
/// task.send(SendSignal::to_group(Signal::SIGSTOP)).await??;
/// task.send(SendSignal::to_group(Signal::SIGCONT)).await??;
/// task.send(SendSignal::to_child(Signal::SIGKILL)).await??;
/// assert_eq!(task.send(AsyncWait).await??.signal(), Some(9));
/// assert_eq!(task.cause(), Some(ExitCause::Signaled));
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`SignalError::NotRunning`] if the task has not started or has ended,
/// its child was reaped, or nobody was left to get the signal (ESRCH, or
/// the child alone has exited); [`SignalError::Refused`] with the OS error
/// if the kernel refused (EPERM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "Result<(), SignalError>")]
pub struct SendSignal {
    /// The signal.
    pub signal: Signal,
    /// Where it goes.
    pub to: crate::SignalTarget,
}

impl SendSignal {
    /// `signal` to the child's process group (the child alone if it leads
    /// none).
    pub fn to_group(signal: Signal) -> SendSignal {
        SendSignal {
            signal,
            to: crate::SignalTarget::Group,
        }
    }

    /// `signal` to the child alone.
    pub fn to_child(signal: Signal) -> SendSignal {
        SendSignal {
            signal,
            to: crate::SignalTarget::Child,
        }
    }

    /// As [`to_group`](Self::to_group): the child's process group. A
    /// cancel's signals reach that far and, for a task with a
    /// [`cgroup`](crate::Popen::cgroup), every other process of the cgroup
    /// too; this does not (use [`CancelWith`] for that).
    pub fn new(signal: Signal) -> SendSignal {
        SendSignal::to_group(signal)
    }
}

/// Request: the return code, once it is known (portage's `async_wait()`).
///
/// Replies at once if the task has ended.
///
/// Unlike tokio's `Child::wait`, it does not close a piped stdin first:
/// the stdin is the task's, fed by messages from any number of senders
/// ([`WriteStdin`], upstream stages), and waiting is not a reason to cut
/// them off. Send [`CloseStdin`] when the input is done (or drop every
/// handle: the stdin then closes by itself), or use
/// [`Popen::output`](crate::Popen::output), whose stdin is `/dev/null` or
/// given bytes.
///
/// # Errors
/// [`WaitError::ActorGone`] if the actor stopped first (its arbiter was
/// stopped).
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "Result<ReturnCode, WaitError>")]
pub struct AsyncWait;

/// Request: the return code if it is known, without waiting (portage's
/// `poll()`; named as std's and tokio's `Child::try_wait`, since `Poll` is
/// `std::task::Poll`).
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "Option<ReturnCode>")]
pub struct TryWait;

/// Request: whether the task has started and not yet ended (portage's
/// `isAlive()`).
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "bool")]
pub struct IsAlive;

/// Request: the child's pid, while the task runs (see
/// [`ProcessHandle::pid`](crate::ProcessHandle::pid)).
///
/// `None` before the start and once the task has ended, since the child is
/// then reaped (at once, or when its cancel escalation ends; see
/// [`PopenProcess`'s lifecycle](crate::PopenProcess#lifecycle)) and the
/// kernel may give the number to another process (as tokio's
/// `Child::id`).
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "Option<u32>")]
pub struct GetPid;

/// Request: notify `Recipient` once, with [`Exited`], when the task ends
/// (portage's `addExitListener`).
///
/// Added after the end, it is notified at once. Adding the same recipient
/// twice notifies it once. A recipient whose actor has stopped is skipped.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct AddExitListener(pub Recipient<Exited>);

/// Request: never notify this recipient of the exit (portage's
/// `removeExitListener`).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RemoveExitListener(pub Recipient<Exited>);

/// Request: notify `Recipient` once, with [`Started`], when the task starts
/// (portage's `addStartListener`); at once if it has started already.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct AddStartListener(pub Recipient<Started>);

/// Request: never notify this recipient of the start (portage's
/// `removeStartListener`).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RemoveStartListener(pub Recipient<Started>);

/// Request: queue bytes for the child's stdin (its [`InputFrom`](crate::InputFrom)
/// must be [`InputFrom::Pipe`](crate::InputFrom::Pipe)); resolves once they are all
/// written to the pipe. Writes are performed in the order they arrive, as
/// the pipe drains, without blocking the actor's thread.
///
/// Sent to a task whose start is deferred
/// ([`Popen::prepare`](crate::Popen::prepare),
/// [`Popen::submit`](crate::Popen::submit)) before its child exists, the
/// bytes wait, in order with any [`CloseStdin`] and fed [`Chunk`]s, and are
/// written once the child starts, with the same effect as if sent after.
///
/// # Errors
/// EPIPE ([`std::io::ErrorKind::BrokenPipe`]) when the child exited or
/// closed its stdin, the stdin was closed with [`CloseStdin`], or the task
/// ended before its child ran ([`Cancel`] before the start, or a failed
/// spawn); `NotConnected` when the stdin is not
/// [`InputFrom::Pipe`](crate::InputFrom::Pipe).
#[derive(Debug, Clone, Message)]
#[rtype(result = "std::io::Result<()>")]
pub struct WriteStdin(pub Bytes);

/// Request: close the child's stdin once every write queued before it was
/// written; the child reads EOF. On a terminal
/// ([`InputFrom::Pty`](crate::InputFrom::Pty)) it types Ctrl-D instead
/// (twice after an unfinished line), which is how a terminal ends input. Sent before a deferred start, it waits
/// behind those writes and takes effect once the child starts (see
/// [`WriteStdin`]).
///
/// "Before" means before in the actor's mailbox. `send()` queues a message
/// only while the mailbox has room (16 by default) and waits otherwise,
/// while `do_send()` always queues at once: a `CloseStdin` sent with
/// `do_send` can overtake `WriteStdin`s still waiting in `send()`. Send the
/// writes and the close the same way, or await the writes first.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "()")]
pub struct CloseStdin;

/// Event from a [`PipeReader`](crate::PipeReader): every input reached EOF
/// (or was closed by [`CloseReader`]); no [`Chunk`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct ReaderFinished {
    /// `true` if every input reached EOF, `false` if reading was stopped
    /// first.
    pub complete: bool,
}

impl ReaderFinished {
    /// The event, as a reader sends it; for tests of code that handles one.
    pub fn new(complete: bool) -> ReaderFinished {
        ReaderFinished { complete }
    }
}

/// Request: stop a [`PipeReader`](crate::PipeReader) now and close its
/// inputs. Its finish listeners hear `ReaderFinished { complete: false }`
/// unless every input had already reached EOF. Sent to a
/// [`PopenProcess`](crate::PopenProcess), it closes the process's output:
/// the child's next write gets SIGPIPE (or EPIPE if it ignores SIGPIPE);
/// sent before a deferred start, it closes the output as the child starts,
/// before anything is read.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "()")]
pub struct CloseReader;

/// Request to a [`Collector`](crate::Collector): a copy of everything
/// collected so far (portage's `PipeReader.getvalue()`).
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "Collected")]
pub struct GetValue;

/// Request to a [`Collector`](crate::Collector): everything collected so
/// far, moved out without a copy; the collector starts empty again, its
/// counts of dropped bytes at 0.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "Collected")]
pub struct TakeValue;

/// What a [`Collector`](crate::Collector) holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, actix::MessageResponse)]
pub struct Collected {
    /// The stdout chunks, in order, within the collector's limit.
    pub stdout: Bytes,
    /// The stderr chunks, in order, within the collector's limit.
    pub stderr: Bytes,
    /// How many stdout bytes were dropped over the limit (since the last
    /// [`TakeValue`]); 0 if `stdout` is everything.
    pub stdout_dropped: u64,
    /// How many stderr bytes were dropped over the limit (since the last
    /// [`TakeValue`]); 0 if `stderr` is everything.
    pub stderr_dropped: u64,
}

/// Request to a [`PipeLogger`](crate::PipeLogger): flush what was written
/// to the log file; replies with the number of bytes logged so far.
///
/// # Errors
/// The first write or flush error since the logger started; after an error
/// the logger discards further chunks (and counts them as not logged).
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "std::io::Result<u64>")]
pub struct Flush;

/// Request: stop reading one of the child's output streams and close our
/// read end of it, leaving the other stream open.
///
/// The child's next write to that stream fails as a write to a pipe with no
/// reader does (SIGPIPE, or EPIPE if it ignores SIGPIPE), just as when the
/// reader of a shell pipeline goes away; with
/// [`OutputTo::Pty`](crate::OutputTo::Pty) it is the pty's master that closes
/// (the child's terminal hangs up). What the child wrote but was not read
/// yet is discarded, and the task's [`Exited`] says
/// `output_complete: false`. The `popen` example sends it when its own
/// stdout or stderr is closed. Sent to a [`PipeReader`](crate::PipeReader),
/// it stops reading the inputs tagged with that stream; once the others
/// reach EOF the reader finishes with `complete: false`. Nothing happens
/// if the stream was not read or has ended.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct CloseStream(pub OutputStream);
