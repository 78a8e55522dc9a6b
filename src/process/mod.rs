//! The [`PopenProcess`] actor (portage's `PopenProcess` with its bases
//! `SubProcess`, `AbstractPollTask` and `AsynchronousTask`).
//!
//! The task's lifecycle is documented once, whole, on [`PopenProcess`]
//! (this module is private); other docs say only what concerns their own
//! item, and link there for the rest.
//!
//! # Files
//! `handle.rs` (the [`ProcessHandle`]), `lifecycle.rs` (the states),
//! `listeners.rs` (start and exit listeners), `spec.rs` (what a task is
//! made of), `start.rs` (starting its actor), `control.rs` (start, cancel,
//! signals, queries, listeners), `stdio.rs` (stdin and output control),
//! `drain.rs` (the drain timeout).

mod control;
mod drain;
mod handle;
mod job_control;
mod lifecycle;
mod listeners;
mod spec;
mod start;
mod stdio;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::channel::oneshot;

pub use handle::ProcessHandle;
pub(crate) use handle::Queued;
pub(crate) use spec::{JobListeners, TaskSpec};

use crate::lines::{LineFramer, Overflow, DEFAULT_LINE_MAX};
use crate::messages::{Exited, OutputStream, Started};
use crate::options::{ReaderOptions, TaskOptions};
use crate::pipe_reader::{PipeReader, Stalls};
use crate::shutdown;
use crate::spawn::{InputFrom, Spawned};
use crate::stdin::StdinQueue;
use crate::supervisor::{Adopt, Escalate, ProcessSupervisor, Settle};
use crate::tracked::Tracked;
#[cfg(doc)]
use crate::{AsyncWait, Cancel, Chunk, CloseReader, CloseStdin, SpawnError, Start};
use crate::{ExitCause, ExitType, ReturnCode, Signal, TaskId};
use handle::Shared;
use lifecycle::{CancelState, Lifecycle, Output, Running};
use listeners::Listeners;
use spec::Wiring;

/// A child process as an actix actor (portage's `PopenProcess`).
///
/// Created by [`Popen::start`](crate::Popen::start) or
/// [`Popen::prepare`](crate::Popen::prepare); its lifecycle is below. It
/// handles [`Start`], [`Cancel`], [`CancelWith`](crate::CancelWith),
/// [`SendSignal`](crate::SendSignal), [`AsyncWait`],
/// [`TryWait`](crate::TryWait), [`IsAlive`](crate::IsAlive),
/// [`GetPid`](crate::GetPid), the listener messages
/// ([`AddExitListener`](crate::AddExitListener), …), the stdin messages
/// ([`WriteStdin`](crate::WriteStdin), [`CloseStdin`], and [`Chunk`]s
/// from an upstream stage) and the output controls ([`CloseReader`],
/// [`CloseStream`](crate::CloseStream)); it sends [`Started`] and
/// [`Exited`] to its listeners, and its [`PipeReader`] sends [`Chunk`]s to
/// the subscribers.
///
/// ```
/// use actix_popen::{AsyncWait, Cancel, Popen, ReturnCode};
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let process = Popen::new("sleep").arg("60").start()?;
/// process.do_send(Cancel); // SIGTERM to its process group
/// let code = process.send(AsyncWait).await??;
/// assert_eq!(code, ReturnCode::from_raw(-15));
/// # Ok(())
/// # }
/// ```
///
/// # Lifecycle
/// This is the one place the task's whole life is described; other docs
/// say only what concerns their own item, and link here for the rest. A
/// task is in one of three states (`lifecycle.rs`):
///
/// 1. **Pending**: made by [`Popen::prepare`](crate::Popen::prepare) or
///    [`Popen::submit`](crate::Popen::submit); there is no child.
///    - [`Start`] (sent by the user or by the job pool) spawns the child:
///      the task is running. A spawn that fails ends the task at once with
///      the shell's status for it (127 not found, 126 otherwise; see
///      [`SpawnError::shell_status`]).
///    - [`Cancel`] ends it at once with [`ReturnCode::CANCELLED`]; the
///      child never runs.
/// 2. **Running**: the child was spawned ([`Popen::start`](crate::Popen::start)
///    goes straight here). Once the actor runs, it starts a
///    [`PipeReader`] on the child's output (if any stream is piped),
///    watches the child's pidfd, and notifies its start listeners
///    ([`Started`]). Output arrives at the subscribers as
///    [`Chunk`](crate::Chunk)s. The child's exit is seen as soon as its
///    pidfd is readable; the child is not reaped yet (see `sys/child.rs`).
///    The task ends when **both** the child's status is known **and** the
///    output is done (and, with
///    [`ExitType::Cgroup`](crate::ExitType::Cgroup), its cgroup is empty,
///    which the drain timeout then counts from). The output is done when:
///    - every stream reached EOF: output a grandchild writes after the
///      child exited is still delivered (portage's `PopenProcess._start`);
///      [`Exited::output_complete`] is `true`;
///    - or it was closed first, and `output_complete` is `false`: by a
///      [`CloseReader`] (the child's next write gets SIGPIPE, or EPIPE if
///      it ignores SIGPIPE), or a [`CloseStream`](crate::CloseStream) for
///      one stream, by the drain timeout
///      ([`Popen::drain_timeout`](crate::Popen::drain_timeout): that long
///      after the child's exit, not counting time the reader waited for
///      slow subscribers), or by a release (below). A stream the reactor
///      refused to watch is never read, and counts as closed first too.
///
///    [`Cancel`] hands the child to the supervisor's escalation
///    ([`Cancel`] says which process gets which signal, and when); so does
///    the run timeout ([`Popen::timeout`](crate::Popen::timeout)), counted
///    from the spawn, if the task is still running when it passes. If
///    the escalation gives up (the orphan warning: the group or the output
///    outlived SIGKILL and another cancel timeout, at least 0.5 s), the
///    task is **released**: its output, if still open, is closed and it
///    ends without waiting any longer; if its child has not exited, with
///    SIGKILL's return code (-9), and the child is reaped whenever it
///    exits.
/// 3. **Ended**: the return code and the cause
///    ([`ExitCause`](crate::ExitCause): by itself, a signal from outside, a
///    cancel, the run timeout, a failed spawn, the drain timeout, a
///    release) are set; the exit listeners get [`Exited`], after the last
///    chunk (the reader is done before), and every [`AsyncWait`]
///    resolves. The child is reaped then, or, if a
///    cancel escalation is still dealing with its group, when that ends.
///
/// The actor does not stop while its child runs, even if every address is
/// dropped: the child is neither killed nor left unreaped. Once no
/// address is left, its piped stdin is closed (after what was queued),
/// and the actor stops once the task has ended. If its arbiter is stopped
/// (or the actix System), the child is cancelled and reaped during the
/// teardown (see `shutdown.rs`); a released task's child still running
/// then is adopted by the supervisor, which reaps it when it exits.
///
#[derive(Debug)]
pub struct PopenProcess {
    id: TaskId,
    name: String,
    lifecycle: Lifecycle,
    reader_options: ReaderOptions,
    options: TaskOptions,
    /// Taken by the reader when it starts.
    wiring: Option<Wiring>,
    shared: Arc<Shared>,
    /// The child as the escalation and the shutdown see it, from its spawn
    /// on.
    tracked: Option<Arc<Tracked>>,
    stdin: StdinQueue,
    /// When the reader waited for credit (slow subscribers).
    stalls: Arc<Stalls>,
    torn_down: bool,
    started: Listeners<Started>,
    exited: Listeners<Exited>,
    /// Told of the child's stops and continues, once it runs.
    job_listeners: JobListeners,
    /// The child's stdin is the pty (`InputFrom::Pty`): closing it means
    /// typing Ctrl-D, and the writer goes when the terminal hangs up.
    stdin_on_pty: bool,
    /// What was typed at the pty last did not end a line.
    pty_line_open: bool,
    /// The first signal of a cancel ([`Popen::cancel_signal`]).
    cancel_signal: Signal,
    waiters: Vec<oneshot::Sender<ReturnCode>>,
}

impl PopenProcess {
    fn new(spec: TaskSpec, spawned: Option<Spawned>) -> PopenProcess {
        let TaskSpec {
            command,
            reader,
            options,
            subscribers,
            line_subscribers,
            start_listeners,
            exit_listeners,
            job_listeners,
            input,
            tee,
        } = spec;
        let stdin_on_pty = matches!(command.stdio.stdin(), InputFrom::Pty);
        // A terminal's hang-up sends its session leader SIGHUP.
        let cancel_signal =
            options
                .cancel_signal
                .unwrap_or(if command.settings.controlling_terminal.is_some() {
                    Signal::SIGHUP
                } else {
                    Signal::SIGTERM
                });
        let mut stdin = if matches!(command.stdio.stdin(), InputFrom::Pipe | InputFrom::Pty) {
            StdinQueue::piped()
        } else {
            StdinQueue::none()
        };
        if let Some(data) = input {
            // Queued now, written once the pipe exists; its outcome is the
            // child's business (a child that exits without reading it all
            // gets no more).
            drop(stdin.write(data));
            stdin.queue_close();
        }
        let mut actor = PopenProcess {
            id: TaskId::new(),
            name: command.program_name(),
            lifecycle: Lifecycle::Pending {
                command: Box::new(command),
                close_output: false,
            },
            reader_options: reader,
            options,
            wiring: Some(Wiring {
                subscribers,
                line_subscribers,
                tee,
            }),
            shared: Shared::new(),
            tracked: None,
            stdin,
            stalls: Arc::new(Stalls::default()),
            torn_down: false,
            started: Listeners::new(start_listeners),
            exited: Listeners::new(exit_listeners),
            job_listeners,
            stdin_on_pty,
            pty_line_open: false,
            cancel_signal,
            waiters: Vec::new(),
        };
        if let Some(spawned) = spawned {
            actor.run(spawned);
        }
        actor
    }

    /// The task is running from now: files the child in the shutdown
    /// registry and keeps our ends of its pipes until the actor watches it.
    fn run(&mut self, spawned: Spawned) -> u32 {
        let Spawned {
            child,
            reads,
            stdin,
            outputs,
            terminal,
            cgroup,
        } = spawned;
        let child = Arc::new(child);
        let pid = child.pid();
        let _ = self.shared.child.set(child.clone());
        let waits_for_cgroup = self.options.exit_type == ExitType::Cgroup && cgroup.is_some();
        self.tracked = Some(track(
            &child,
            &self.name,
            (self.options.cancel_timeout, self.cancel_signal),
            outputs,
            cgroup,
        ));
        self.lifecycle = Lifecycle::Running(Running::new(reads, stdin, terminal, waits_for_cgroup));
        pid
    }

    fn running(&mut self) -> Option<&mut Running> {
        match &mut self.lifecycle {
            Lifecycle::Running(running) => Some(running),
            _ => None,
        }
    }

    /// Starts reading and watching a spawned child; with `close_output`,
    /// closes its output unread instead.
    fn begin(&mut self, close_output: bool, ctx: &mut Context<Self>) {
        let Some(child) = self.tracked.as_ref().map(|t| t.child.clone()) else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            // Started while its arbiter is being torn down (actix polls a
            // dropped actor once): nothing can be watched any more, and the
            // teardown that follows cancels and reaps the child.
            return;
        }
        let Some(running) = self.running() else {
            return;
        };
        let Output::Unwatched(reads) =
            std::mem::replace(&mut running.output, Output::Done { complete: true })
        else {
            return;
        };
        let stdin_fd = running.stdin.take();
        if let Some(tracked) = &self.tracked {
            // Filed under this arbiter from now on (`Popen::start_in_arbiter`
            // spawns on another thread).
            shutdown::move_here(tracked);
            ensure_supervisor();
        }
        self.watch_job_control(ctx);

        if let Some(fd) = stdin_fd {
            match self.stdin.attach(fd) {
                Ok(drain) => {
                    ctx.spawn(drain.into_actor(self));
                    // Once no address is left, nobody can write any more:
                    // close the stdin (after what is queued), as std and
                    // tokio do when the child's stdin handle is dropped.
                    // The child reads EOF; it is not killed.
                    ctx.spawn(stdio::WhenDisconnected.map(|(), act, _ctx| {
                        log::debug!("{}: every handle dropped; closing its stdin", act.name);
                        act.close_stdin();
                    }));
                }
                Err(err) => log::error!("{}: cannot write to stdin: {err}", self.name),
            }
        }

        let output = if reads.is_empty() {
            Output::Done { complete: true }
        } else if close_output {
            // Dropping our read ends closes them: the child's first write
            // gets EPIPE (or SIGPIPE), as after a `CloseReader` in its run.
            drop(reads);
            Output::Done { complete: false }
        } else {
            Output::Reading(self.start_reader(reads, ctx))
        };
        // The reader has them now; holding them here too would keep the
        // subscribers' actors alive as long as this one.
        self.wiring = None;
        if let Some(running) = self.running() {
            running.output = output;
        }

        if let Some(timeout) = self.options.timeout {
            // Counted from the real start (a queued task's wait in the job
            // pool does not count), as Python's `subprocess.run(timeout=)`.
            ctx.run_later(timeout, |act, ctx| {
                log::debug!("{}: run timeout; cancelling", act.name);
                act.cancel(act.cancel_signal, ExitCause::TimedOut, ctx);
            });
        }

        self.watch_cgroup(ctx);
        // The status is read, not reaped: see sys/child.rs.
        ctx.spawn(
            child
                .clone()
                .exited()
                .into_actor(self)
                .map(|result, act, ctx| act.child_exited(result, ctx)),
        );
        self.started
            .notify(Started::new(self.id, Some(child.pid())));
    }

    fn start_reader(
        &mut self,
        reads: Vec<(OutputStream, std::os::fd::OwnedFd)>,
        ctx: &mut Context<Self>,
    ) -> Addr<PipeReader> {
        let options = self.reader_options;
        let mut reader = PipeReader::new()
            .task(self.id)
            .bufsize(options.bufsize)
            .coalesce(options.coalesce)
            .window(options.window)
            .record_stalls(self.stalls.clone());
        // A channel, not a message: the reader holds no address of this
        // actor, so that dropping every handle can be noticed (see
        // `WhenDisconnected`), while the wait keeps the actor running.
        let (finished_tx, finished) = oneshot::channel();
        reader = reader.on_finished_channel(finished_tx);
        ctx.spawn(finished.into_actor(self).map(|complete, act, _ctx| {
            // A reader dropped unfinished (its arbiter stopped) read
            // nothing more.
            act.reader_finished(complete.unwrap_or(false));
        }));
        if let Some(wiring) = self.wiring.take() {
            for (only, subscriber) in wiring.subscribers {
                reader = match only {
                    Some(stream) => reader.subscribe_stream(stream, subscriber),
                    None => reader.subscribe(subscriber),
                };
            }
            if let Some((stream, sink)) = wiring.tee {
                // Ours alone (the pipeline made it for this task); a copy
                // only if a clone of the description holds it too.
                match Arc::try_unwrap(sink).or_else(|shared| shared.try_clone()) {
                    Ok(sink) => reader = reader.tee(stream, sink),
                    Err(err) => log::error!("{}: cannot copy its output on: {err}", self.name),
                }
            }
            for lines in wiring.line_subscribers {
                // Its own framer per subscriber, flushed (the last,
                // unterminated line) by the exit event.
                let framer = LineFramer::new(DEFAULT_LINE_MAX, Overflow::Split, lines).start();
                self.exited.add(framer.clone().recipient());
                reader = reader.subscribe(framer.recipient());
            }
        }
        for (stream, fd) in reads {
            reader = reader.input(stream, fd);
        }
        reader.start()
    }

    fn child_exited(&mut self, result: io::Result<ReturnCode>, ctx: &mut Context<Self>) {
        let code = match result {
            Ok(code) => code,
            Err(err) => {
                // ECHILD: somebody else reaped our child (SIGCHLD ignored,
                // or waitpid(-1) elsewhere); its status is lost.
                log::error!("{}: the exit status was lost: {err}", self.name);
                ReturnCode::from_raw(255)
            }
        };
        if let Some(tracked) = &self.tracked {
            log::debug!(
                "pid {} ({}) exited with return code {code}",
                tracked.child.pid(),
                self.name
            );
        }
        let mut output_open = false;
        let mut cgroup_empty = true;
        if let Some(running) = self.running() {
            running.status = Some(code);
            output_open = !matches!(running.output, Output::Done { .. });
            cgroup_empty = running.cgroup_empty;
        }
        self.maybe_finish();
        self.hang_up_after_cancel();
        if self.options.exit_type == ExitType::Main {
            self.end_cgroup_leftovers(ctx);
        }
        if let Some(tracked) = &self.tracked {
            // A released task's child may exit (and be reaped) long after
            // the task ended.
            shutdown::forget_if_reaped(tracked);
        }
        // With ExitType::Cgroup, from when the cgroup is empty.
        if output_open && cgroup_empty {
            self.arm_drain_timeout_now(ctx);
        }
    }

    /// A cancelled task on a pseudo-terminal whose child has exited hangs
    /// its terminal up once what it holds is read, as a terminal window
    /// closes when its shell is gone: a background job left behind (without
    /// a cgroup, it survives) would otherwise hold it open until the
    /// escalation gives up.
    pub(super) fn hang_up_after_cancel(&mut self) {
        let Some(running) = self.running() else {
            return;
        };
        if running.terminal.is_none() || !matches!(running.cancel, CancelState::Escalating(_)) {
            return;
        }
        if let Some(reader) = running.reader() {
            reader.do_send(crate::pipe_reader::CloseWhenDrained);
        }
        self.hang_up_terminal(None);
    }

    fn arm_drain_timeout_now(&mut self, ctx: &mut Context<Self>) {
        if let Some(timeout) = self.options.drain_timeout {
            let (exited, stalled) = (Instant::now(), self.stalls.stalled());
            self.arm_drain_timeout(timeout, exited, stalled, ctx);
        }
    }

    /// With [`ExitType::Cgroup`]: watches the task's cgroup until it is
    /// empty, which the task's end then waits for.
    fn watch_cgroup(&mut self, ctx: &mut Context<Self>) {
        let Some(cgroup) = self.tracked.as_ref().and_then(|t| t.cgroup().cloned()) else {
            return;
        };
        if self.running().is_none_or(|r| r.cgroup_empty) {
            return;
        }
        let watch = async move { cgroup.emptied().await };
        ctx.spawn(watch.into_actor(self).map(|result, act, ctx| {
            if let Err(err) = result {
                // Not expected on a kernel with cgroup2; the task then ends
                // as with ExitType::Main, but leaves the rest running.
                log::error!(
                    "{}: cannot watch its cgroup, so its end waits for the child only: {err}",
                    act.name
                );
            }
            act.cgroup_emptied(ctx);
        }));
    }

    /// The task's cgroup is empty (with [`ExitType::Cgroup`]).
    fn cgroup_emptied(&mut self, ctx: &mut Context<Self>) {
        let Some(running) = self.running() else {
            return;
        };
        running.cgroup_empty = true;
        let exited = running.status.is_some();
        let output_open = !matches!(running.output, Output::Done { .. });
        log::debug!("{}: its cgroup is empty", self.name);
        self.maybe_finish();
        if exited && output_open {
            self.arm_drain_timeout_now(ctx);
        }
    }

    /// The child of a task in a cgroup of its own has exited while the task
    /// goes on (its output is still open): what is left in the cgroup is
    /// ended by the cancel's escalation, as systemd stops what is left of a
    /// service whose main process exited (`KillMode=control-group`). The
    /// task then ends with the child's own status once its output closes.
    fn end_cgroup_leftovers(&mut self, ctx: &mut Context<Self>) {
        if matches!(self.lifecycle, Lifecycle::Ended { .. }) {
            return;
        }
        let Some(tracked) = &self.tracked else {
            return;
        };
        if !tracked.cgroup_populated() {
            return;
        }
        log::debug!(
            "{}: the child exited; ending what is left in its cgroup",
            self.name
        );
        if let Some(due) = tracked.begin(self.cancel_signal) {
            ProcessSupervisor::get().do_send(Escalate {
                task: tracked.clone(),
                release: ctx.address().recipient(),
                due,
            });
        }
    }

    /// The reader finished: every stream reached EOF (`complete`), or it
    /// was closed first.
    fn reader_finished(&mut self, complete: bool) {
        if let Some(running) = self.running() {
            running.output = Output::Done { complete };
        }
        self.maybe_finish();
    }

    /// Ends a running task whose status and output are both known.
    fn maybe_finish(&mut self) {
        let ending = match &self.lifecycle {
            Lifecycle::Running(running) => running.ending(),
            _ => None,
        };
        if let Some((code, output_complete, cause)) = ending {
            self.finish(code, output_complete, cause);
        }
    }

    /// Ends the task (portage's `_unregister` then `_async_wait`).
    fn finish(&mut self, code: ReturnCode, output_complete: bool, cause: ExitCause) {
        let cause = match &self.tracked {
            // Read before the cgroup is removed (by `task_ended`).
            Some(tracked) if cause.is_natural() && tracked.oom_kills() > 0 => {
                ExitCause::OutOfMemory
            }
            _ => cause,
        };
        self.lifecycle = Lifecycle::Ended { code };
        self.stdin.close();
        if let Some(tracked) = &self.tracked {
            let escalating = tracked.task_ended();
            shutdown::forget_if_reaped(tracked);
            if escalating {
                ProcessSupervisor::get().do_send(Settle(tracked.clone()));
            }
        }
        self.shared.set_returncode(code, cause);
        // A task that ends without its child ever running (a cancel before
        // the start, a failed spawn) still tells its start listeners.
        self.started.notify(Started::new(self.id, None));
        let pid = self.tracked.as_ref().map(|t| t.child.pid());
        let usage = self.tracked.as_ref().and_then(|t| t.child.usage());
        self.exited
            .notify(Exited::new(self.id, pid, code, cause, output_complete).with_usage(usage));
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(code);
        }
    }
}

impl Actor for PopenProcess {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let _ = self.shared.thread.set(std::thread::current().id());
        if self.options.kill_on_drop {
            // Once no address is left, nobody can wait for the task or
            // cancel it any more: cancel it now (tokio's and process-wrap's
            // `kill_on_drop`, with our escalation instead of a bare
            // SIGKILL).
            ctx.spawn(stdio::WhenDisconnected.map(|(), act, ctx| {
                log::debug!("{}: every handle dropped; cancelling it", act.name);
                act.cancel(act.cancel_signal, ExitCause::Cancelled, ctx);
            }));
        }
        if matches!(self.lifecycle, Lifecycle::Running(_)) {
            self.begin(false, ctx);
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.teardown();
    }
}

impl PopenProcess {
    /// Runs when the actor stops or is dropped, once.
    ///
    /// A task still running only stops this way when its arbiter is torn
    /// down: then every child of that arbiter is cancelled and reaped (see
    /// `shutdown.rs`). A task that ended leaves nothing to do, unless it
    /// was released with its child still running: the supervisor adopts
    /// the child and reaps it when it exits. A child whose actor never
    /// watched it (its arbiter stopped first) is cancelled and reaped here.
    fn teardown(&mut self) {
        if std::mem::replace(&mut self.torn_down, true) {
            return;
        }
        if let Some(tracked) = self.tracked.as_ref().filter(|t| !t.child.is_reaped()) {
            let live_system =
                tokio::runtime::Handle::try_current().is_ok() && System::try_current().is_some();
            match &self.lifecycle {
                Lifecycle::Running(Running {
                    output: Output::Unwatched(_),
                    ..
                }) => shutdown::terminate_blocking(vec![tracked.clone()]),
                Lifecycle::Running(_) => shutdown::shutdown_thread(std::thread::current().id()),
                _ if !live_system => shutdown::shutdown_thread(std::thread::current().id()),
                _ if !tracked.escalating() => {
                    ProcessSupervisor::get().do_send(Adopt(tracked.clone()))
                }
                _ => {}
            }
        }
        self.shared.set_actor_gone();
    }
}

impl Drop for PopenProcess {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Files a just-spawned child in the shutdown registry, under this thread
/// and System, so that no teardown can miss it, even before its actor
/// runs (see `shutdown.rs`).
fn track(
    child: &Arc<crate::sys::child::Child>,
    name: &str,
    (cancel_timeout, cancel_signal): (Duration, Signal),
    outputs: Vec<String>,
    cgroup: Option<Arc<crate::sys::cgroup::Cgroup>>,
) -> Arc<Tracked> {
    let tracked = Tracked::new(
        child.clone(),
        name.to_owned(),
        cancel_timeout,
        outputs,
        cgroup,
        cancel_signal,
    );
    shutdown::register(&tracked);
    ensure_supervisor();
    tracked
}

/// Starts the System's supervisor if it is not running yet, so that its
/// teardown with the System takes every child of the System down even when
/// an arbiter's own teardown comes too late (see `shutdown.rs`).
fn ensure_supervisor() {
    if System::try_current().is_some() {
        let _ = ProcessSupervisor::get();
    }
}
