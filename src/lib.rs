//! Child processes as actix actors: a port of Gentoo portage's
//! `PopenProcess` (with `SubProcess`, `AbstractPollTask`,
//! `AsynchronousTask` and `PipeReader`) to the actix actor model.
//!
//! * Each running child is a [`PopenProcess`] actor; [`Popen::start`]
//!   spawns the child and returns a [`ProcessHandle`] to its address.
//! * What the child writes arrives at the subscribers as [`Chunk`]
//!   messages, in order, each from one `read()` of at most `bufsize` bytes
//!   (or, with [`Popen::coalesce`], from several reads ready at once).
//! * Start and exit listeners are [`Recipient`](actix::Recipient)s of
//!   [`Started`] and [`Exited`]; [`Exited`] comes only after the last chunk.
//! * [`Cancel`] and [`AsyncWait`] are messages; the [`ProcessSupervisor`]
//!   owns the timers: SIGTERM and SIGCONT on cancel, SIGKILL to whatever of
//!   the group is left after the cancel timeout (1 s by default), then an
//!   orphan warning ([`Cancel`] says what each process gets). No signal is
//!   ever sent to a pid or process group id that may have been reused.
//! * Every child is reaped (through its pidfd, without blocking a thread
//!   and without a thread per child), and when an arbiter or the actix
//!   System stops, every child it still runs is cancelled and reaped.
//! * Backpressure: a chunk carries a credit of its reader's window, so a
//!   slow subscriber slows the reader and the child, and memory stays flat.
//! * The child's stdin can be fed by messages ([`WriteStdin`], [`CloseStdin`]);
//!   a [`Pipeline`] chains processes as `a | b | c`, with backpressure end
//!   to end; [`LineFramer`] turns chunks into lines.
//! * The supervisor's job pool ([`Popen::submit`], [`SetJobLimits`]) caps
//!   how many children run at once, as portage's `--jobs` and
//!   `--load-average` do.
//!
//! ```
//! use actix::Actor;
//! use actix_popen::{AsyncWait, Collector, GetValue, OutputTo, Popen};
//!
//! #[actix::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let collector = Collector::start_default();
//!     let process = Popen::new("sh")
//!         .args(["-c", "echo out; echo err >&2; exit 3"])
//!         .stderr(OutputTo::MergeIntoStdout)
//!         .subscribe(collector.clone().recipient())
//!         .start()?;
//!     let code = process.send(AsyncWait).await??;
//!     assert_eq!(code.code(), 3);
//!     let output = collector.send(GetValue).await?;
//!     assert_eq!(&output.stdout[..], b"out\nerr\n");
//!     Ok(())
//! }
//! ```
//!
//! # portage ↔ actix
//!
//! | portage                                   | actix-popen                                        |
//! |-------------------------------------------|----------------------------------------------------|
//! | `PopenProcess(proc=Popen(...))`, `start()` | [`Popen`] … [`.start()`](Popen::start)            |
//! | `copy()`                                  | `Popen::clone()`, then `start()` again             |
//! | `cancel()`                                | [`Cancel`]                                         |
//! | `async_wait()`                            | [`AsyncWait`]                                      |
//! | `poll()`, `returncode`                    | [`TryWait`], [`ProcessHandle::try_wait`]                  |
//! | `wait()`                                  | [`ProcessHandle::wait`]                            |
//! | `isAlive()`                               | [`IsAlive`]                                        |
//! | `pid`                                     | [`GetPid`], [`ProcessHandle::pid`]                 |
//! | `addExitListener` / `removeExitListener`  | [`AddExitListener`] / [`RemoveExitListener`]       |
//! | `addStartListener` / `removeStartListener`| [`AddStartListener`] / [`RemoveStartListener`]     |
//! | `pipe_reader`, `PipeReader`               | [`PipeReader`], chunks as [`Chunk`]                |
//! | `PipeReader.getvalue()`                   | [`Collector`] with [`GetValue`]                    |
//! | `PipeLogger`                              | [`PipeLogger`]                                     |
//! | `_bufsize = 4096`                         | [`Popen::bufsize`], [`DEFAULT_BUFSIZE`]            |
//! | `_cancel_timeout = 1`                     | [`Popen::cancel_timeout`], [`DEFAULT_CANCEL_TIMEOUT`] |
//! | `_cancelled_returncode = -2`              | [`ReturnCode::CANCELLED`]                          |
//! | `stderr=subprocess.STDOUT`                | [`OutputTo::MergeIntoStdout`]                        |
//! | `_create_pty_or_pipe`                     | [`OutputTo::Pty`], [`Popen::pty`]                    |
//! | emerge `--jobs`, `--load-average`         | [`SetJobLimits`], [`Popen::submit`], [`Pipeline::submit`] |
//! | `spawn(fd_pipes={n: fd})`                 | [`InputFrom::fd`], [`OutputTo::fd`], [`Popen::pass_fd`] |
//! | `spawn(uid=, gid=, groups=, umask=)`      | [`Popen::uid`], [`Popen::gid`], [`Popen::groups`], [`Popen::umask`] |
//! | `spawn(pre_exec=)`                        | [`Popen::pre_exec`]                                |
//!
//! # Platform
//! Linux 5.4 or later only (pidfds, 5.3, and `waitid` on a pidfd, 5.4):
//! the crate does not build elsewhere rather than misbehave, and on an
//! older kernel a spawn fails with [`SpawnErrorKind::Unsupported`] rather
//! than report a wrong status. A spawn whose cost does not grow with the
//! fds the host holds needs Linux 5.9 (`close_range`; see
//! [`Popen::close_fds`]); before, children are spawned through std.
//!
//! The host must not reap children it did not spawn (`waitpid(-1)`): that
//! frees their pids while we may still signal them, and before Linux 6.15
//! loses their exit statuses (reported as 255, logged at error level;
//! from 6.15 on, the status is still read from the child's pidfd, with a
//! warning). SIGCHLD set to `SIG_IGN` (or `SA_NOCLDWAIT`) does the same,
//! so the library puts SIGCHLD back to its default before each spawn, with
//! a warning. Children start with an empty signal mask and default
//! dispositions ([`Popen::restore_signals`]).

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(target_os = "linux"))]
compile_error!("actix-popen supports Linux only: it relies on pidfds (Linux 5.4+) and Linux ptys");

mod background;
mod cause;
mod consumers;
mod error;
mod escalation;
mod lines;
mod messages;
mod options;
mod pipe_reader;
mod pipeline;
mod popen;
mod process;
mod returncode;
mod rlimit;
mod run;
mod settings;
mod shutdown;
mod signal;
mod spawn;
mod stdin;
mod supervisor;
mod sys;
mod task_id;
#[cfg(test)]
mod test_support;
mod tracked;
mod usage;

pub use cause::ExitCause;
pub use consumers::{Collector, CollectorOverflow, PipeLogger, DEFAULT_COLLECTOR_LIMIT};
pub use error::{JobLimitsError, ResizeError, SignalError, SpawnError, SpawnErrorKind, WaitError};
pub use lines::{Line, LineFramer, LineKind, Overflow, DEFAULT_LINE_MAX};
pub use messages::{
    AddExitListener, AddStartListener, AsyncWait, Cancel, CancelWith, Chunk, CloseReader,
    CloseStdin, CloseStream, Collected, Continued, Exited, Flush, GetPid, GetValue, IsAlive,
    OutputStream, ReaderFinished, RemoveExitListener, RemoveStartListener, Resize, SendSignal,
    Start, Started, Stopped, TakeValue, TryWait, WriteStdin,
};
pub use options::{
    ExitType, DEFAULT_BUFSIZE, DEFAULT_CANCEL_TIMEOUT, DEFAULT_WINDOW, MAX_BUFSIZE, MAX_COALESCE,
    MAX_PIPE_SIZE, MAX_TIMEOUT, MAX_WINDOW,
};
pub use pipe_reader::PipeReader;
pub use pipeline::{
    PipeStatus, Pipeline, PipelineError, PipelineExited, PipelineHandle, PipelineProcess,
};
pub use popen::Popen;
pub use process::{PopenProcess, ProcessHandle};
pub use returncode::ReturnCode;
pub use rlimit::Rlimit;
pub use run::{CompletedProcess, RunError};
pub use signal::{Signal, SignalTarget};
pub use spawn::{InputFrom, OutputTo};
pub use supervisor::{GetJobPool, JobPool, ProcessSupervisor, SetJobLimits};
pub use task_id::TaskId;
pub use usage::ResourceUsage;

// The README's examples are compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
