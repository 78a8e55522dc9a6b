//! The [`PopenProcess`] actor (portage's `PopenProcess` with its bases
//! `SubProcess`, `AbstractPollTask` and `AsynchronousTask`) and the
//! [`ProcessHandle`] that [`Popen::start`] returns.
//!
//! # Life of a task
//! 1. [`Popen::start`] spawns the child and starts the actor. The actor
//!    starts a [`PipeReader`] on the child's output (if any stream is piped)
//!    and watches the child's pidfd, then notifies its start listeners.
//! 2. Output arrives at the subscribers as [`Chunk`]s.
//! 3. The child exits; the actor reads its status as soon as its pidfd is
//!    readable, without reaping it (see `sys/child.rs`). The task ends only
//!    once the reader is also done: output a grandchild writes after the
//!    child exited is still delivered, and [`Exited`] always comes after
//!    the last chunk (portage's `PopenProcess._start`).
//! 4. The actor sets the return code and notifies its exit listeners; the
//!    child is reaped then, or, if a cancel escalation is still dealing
//!    with its group, when that ends. The actor stops once nobody holds its
//!    address.
//!
//! The actor does not stop while its child runs, even if every address is
//! dropped: the child is neither killed nor left unreaped. If its arbiter
//! is stopped (or the actix System), the child is cancelled and reaped
//! during the teardown; see [`ProcessSupervisor`](crate::ProcessSupervisor).

use std::io;
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix::WeakRecipient;
use futures::channel::oneshot;
use nix::sys::signal::Signal;

use crate::escalation::{terminate_blocking, Tracked};
use crate::messages::{
    AddExitListener, AddStartListener, AsyncWait, Cancel, CancelWith, Chunk, CloseStdin,
    CloseStream, Exited, GetPid, IsAlive, OutputStream, RemoveExitListener, RemoveStartListener,
    SendSignal, Start, Started, TryWait, WriteStdin,
};
use crate::pipe_reader::{PipeReader, Stalls};
use crate::popen::Spawned;
use crate::shutdown;
use crate::stdin::StdinQueue;
use crate::supervisor::{Adopt, ProcessSupervisor, Release, Settle, Terminate};
use crate::sys::child::{Child, Delivery};
use crate::{CloseReader, Popen, ReturnCode, SignalError, SpawnError, WaitError};

/// What the actor shares with its [`ProcessHandle`]s and the supervisor.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<SharedState>,
    changed: Condvar,
    child: OnceLock<Arc<Child>>,
    /// The thread of the arbiter that runs the actor, once it started.
    thread: OnceLock<ThreadId>,
}

#[derive(Debug, Default)]
struct SharedState {
    returncode: Option<ReturnCode>,
    actor_gone: bool,
    /// Why a deferred start ([`Start`], the job pool) failed.
    spawn_error: Option<SpawnError>,
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(SharedState::default()),
            changed: Condvar::new(),
            child: OnceLock::new(),
            thread: OnceLock::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn returncode(&self) -> Option<ReturnCode> {
        self.lock().returncode
    }

    fn set_returncode(&self, code: ReturnCode) {
        self.lock().returncode = Some(code);
        self.changed.notify_all();
    }

    fn set_actor_gone(&self) {
        self.lock().actor_gone = true;
        self.changed.notify_all();
    }
}

/// A handle on a task: the actor's address plus a synchronous view of its
/// return code. It dereferences to the [`Addr`], so every message can be
/// sent through it.
#[derive(Debug, Clone)]
pub struct ProcessHandle {
    addr: Addr<PopenProcess>,
    shared: Arc<Shared>,
}

impl Deref for ProcessHandle {
    type Target = Addr<PopenProcess>;

    fn deref(&self) -> &Addr<PopenProcess> {
        &self.addr
    }
}

impl ProcessHandle {
    /// The actor's address.
    pub fn addr(&self) -> &Addr<PopenProcess> {
        &self.addr
    }

    /// The actor's address, consuming the handle.
    pub fn into_addr(self) -> Addr<PopenProcess> {
        self.addr
    }

    /// The child's pid while the task runs (the child may have exited
    /// while its output is still open: it is then kept as a zombie, so the
    /// number still names it); `None` before the start and once the task
    /// has ended, as tokio's `Child::id` after `wait`: the child is then
    /// reaped, at once or when its cancel escalation ends, and the number
    /// may be given to another process.
    pub fn pid(&self) -> Option<u32> {
        let child = self.shared.child.get()?;
        (self.shared.returncode().is_none() && !child.is_reaped()).then(|| child.pid())
    }

    /// Why the task's child could not be spawned, when its start was
    /// deferred ([`Popen::prepare`] then [`Start`], or [`Popen::submit`])
    /// and failed; the task then ended with 127 (not found) or 126.
    pub fn spawn_error(&self) -> Option<SpawnError> {
        self.shared.lock().spawn_error.clone()
    }

    /// The return code if the task has ended (portage's `poll()`); never
    /// blocks. Once the child was reaped by a teardown (its arbiter or
    /// System stopped), the child's own exit status, as
    /// [`wait`](Self::wait) gives it.
    pub fn try_wait(&self) -> Option<ReturnCode> {
        let state = self.shared.lock();
        // A reaped child's task is over (or being torn down): its status
        // is the answer, even before the actor is gone.
        let reaped = self.shared.child.get().is_some_and(|c| c.is_reaped());
        match (state.returncode, state.actor_gone || reaped) {
            (Some(code), _) => Some(code),
            (None, true) => self.child_status().ok(),
            (None, false) => None,
        }
    }

    /// Blocks the calling thread until the task ends (portage's `wait()`).
    ///
    /// This is for code outside the actix System that runs the actor: the
    /// actor must run on an arbiter of another thread (see
    /// [`PopenProcess::start_in_arbiter`]). Returns at once if the task has
    /// ended.
    ///
    /// # Errors
    /// [`WaitError::InvalidState`] if the task has not ended and the caller
    /// runs inside a tokio runtime or actix System, or on the thread of the
    /// actor's arbiter: blocking there would deadlock, so it refuses, as
    /// portage raises `InvalidStateError`. [`WaitError::ActorGone`] if the
    /// actor stopped before the task ended and the child's exit status is
    /// not known either (when it is, as after the System's shutdown reaped
    /// the child, that status is returned).
    pub fn wait(&self) -> Result<ReturnCode, WaitError> {
        let mut state = self.shared.lock();
        if let Some(code) = state.returncode {
            return Ok(code);
        }
        if state.actor_gone {
            return self.child_status();
        }
        // A thread that runs no runtime and is not the actor's (or the
        // actor has not started yet, so we cannot be inside its arbiter)
        // can block safely.
        if tokio::runtime::Handle::try_current().is_ok()
            || self.shared.thread.get() == Some(&std::thread::current().id())
        {
            return Err(WaitError::InvalidState);
        }
        loop {
            if let Some(code) = state.returncode {
                return Ok(code);
            }
            if state.actor_gone {
                return self.child_status();
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl ProcessHandle {
    /// For a task whose actor is gone: the child's own exit status, if it
    /// was seen.
    fn child_status(&self) -> Result<ReturnCode, WaitError> {
        self.shared
            .child
            .get()
            .and_then(|child| child.returncode())
            .ok_or(WaitError::ActorGone)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Created by [`Popen::prepare`]; the child has not been spawned.
    Pending,
    /// The child was spawned; the task has not ended.
    Running,
    /// The return code is known and the exit listeners were notified.
    Ended,
}

/// A child process as an actix actor (portage's `PopenProcess`).
///
/// Created by [`Popen::start`] or [`Popen::prepare`]. It handles
/// [`Start`], [`Cancel`], [`AsyncWait`], [`TryWait`], [`IsAlive`], [`GetPid`]
/// and the listener messages; it sends [`Started`] and [`Exited`] to its
/// listeners, and its [`PipeReader`] sends [`Chunk`](crate::Chunk)s to the
/// subscribers.
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
#[derive(Debug)]
pub struct PopenProcess {
    popen: Popen,
    name: String,
    phase: Phase,
    shared: Arc<Shared>,
    child: Option<Arc<Child>>,
    /// The child as the escalation and the shutdown see it, from its spawn
    /// until its reap.
    tracked: Option<Arc<Tracked>>,
    /// The actor started watching the child (`begin`).
    began: bool,
    reads: Vec<(OutputStream, OwnedFd)>,
    stdin_fd: Option<OwnedFd>,
    stdin: StdinQueue,
    reader: Option<Addr<PipeReader>>,
    /// When the reader waited for credit (slow subscribers).
    stalls: Arc<Stalls>,
    /// The child's exit status, once seen.
    exited: Option<ReturnCode>,
    output_done: bool,
    output_complete: bool,
    /// [`CloseReader`] came before the child existed: its output is closed
    /// as it starts, before anything is read.
    close_output_at_start: bool,
    cancelled: bool,
    released: bool,
    torn_down: bool,
    /// A pipeline stage fed by an upstream stage (see `SetUpstream`).
    fed: bool,
    started_sent: bool,
    start_listeners: Vec<Recipient<Started>>,
    exit_listeners: Vec<Recipient<Exited>>,
    // Who was notified already, held weakly so as not to keep their
    // actors alive: a listener is never notified twice.
    started_notified: Vec<WeakRecipient<Started>>,
    exit_notified: Vec<WeakRecipient<Exited>>,
    waiters: Vec<oneshot::Sender<ReturnCode>>,
}

fn check_arbiter(popen: &Popen) -> Result<(), SpawnError> {
    if actix_rt::Arbiter::try_current().is_none() || tokio::runtime::Handle::try_current().is_err()
    {
        return Err(SpawnError::NoArbiter {
            program: popen.program_name(),
        });
    }
    Ok(())
}

impl PopenProcess {
    fn new(mut popen: Popen, spawned: Option<Spawned>) -> PopenProcess {
        let shared = Shared::new();
        let stdin = if popen.stdin_is_piped() {
            StdinQueue::piped()
        } else {
            StdinQueue::none()
        };
        let name = popen.program_name();
        let (child, tracked, reads, stdin_fd, phase) = match spawned {
            Some(Spawned {
                child,
                reads,
                stdin,
                outputs,
            }) => {
                let child = Arc::new(child);
                let _ = shared.child.set(child.clone());
                let tracked = track(&child, &name, popen.cancel_timeout, outputs);
                (Some(child), Some(tracked), reads, stdin, Phase::Running)
            }
            None => (None, None, Vec::new(), None, Phase::Pending),
        };
        PopenProcess {
            name,
            start_listeners: std::mem::take(&mut popen.start_listeners),
            exit_listeners: std::mem::take(&mut popen.exit_listeners),
            popen,
            phase,
            shared,
            child,
            tracked,
            began: false,
            reads,
            stdin_fd,
            stdin,
            reader: None,
            stalls: Arc::new(Stalls::default()),
            exited: None,
            output_done: false,
            output_complete: true,
            close_output_at_start: false,
            cancelled: false,
            released: false,
            torn_down: false,
            fed: false,
            started_sent: false,
            started_notified: Vec::new(),
            exit_notified: Vec::new(),
            waiters: Vec::new(),
        }
    }

    pub(crate) fn spawn_and_start(popen: Popen) -> Result<ProcessHandle, SpawnError> {
        check_arbiter(&popen)?;
        let spawned = popen.spawn()?;
        let actor = PopenProcess::new(popen, Some(spawned));
        let shared = actor.shared.clone();
        Ok(ProcessHandle {
            addr: actor.start(),
            shared,
        })
    }

    pub(crate) fn prepare(popen: Popen) -> Result<ProcessHandle, SpawnError> {
        check_arbiter(&popen)?;
        popen.validate()?;
        let actor = PopenProcess::new(popen, None);
        let shared = actor.shared.clone();
        Ok(ProcessHandle {
            addr: actor.start(),
            shared,
        })
    }

    /// Spawns the child now and starts its actor on `arbiter` (another
    /// thread's event loop), so that [`ProcessHandle::wait`] can block this
    /// thread.
    ///
    /// # Errors
    /// As [`Popen::start`], except that no arbiter is needed on this thread.
    pub fn start_in_arbiter(
        popen: Popen,
        arbiter: &actix_rt::ArbiterHandle,
    ) -> Result<ProcessHandle, SpawnError> {
        // A stopped arbiter refuses work; should it stop between this check
        // and the start, the actor is dropped unstarted and its teardown
        // cancels and reaps the child.
        if !arbiter.spawn(async {}) {
            return Err(SpawnError::NoArbiter {
                program: popen.program_name(),
            });
        }
        let spawned = popen.spawn()?;
        let actor = PopenProcess::new(popen, Some(spawned));
        let shared = actor.shared.clone();
        Ok(ProcessHandle {
            addr: Actor::start_in_arbiter(arbiter, |_| actor),
            shared,
        })
    }

    /// Starts reading and watching a spawned child.
    fn begin(&mut self, ctx: &mut Context<Self>) {
        let Some(child) = self.child.clone() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            // Started while its arbiter is being torn down (actix polls a
            // dropped actor once): nothing can be watched any more, and the
            // teardown that follows cancels and reaps the child.
            return;
        }
        self.began = true;
        if let Some(tracked) = &self.tracked {
            // Filed under this arbiter from now on (`start_in_arbiter`
            // spawns on another thread).
            shutdown::move_here(tracked);
            ensure_supervisor();
        }

        if let Some(fd) = self.stdin_fd.take() {
            match self.stdin.attach(fd) {
                Ok(drain) => {
                    ctx.spawn(drain.into_actor(self));
                    // Once no address is left, nobody can write any more:
                    // close the stdin (after what is queued), as std and
                    // tokio do when the child's stdin handle is dropped.
                    // The child reads EOF; it is not killed.
                    ctx.spawn(WhenDisconnected.map(|(), act, _ctx| {
                        log::debug!("{}: every handle dropped; closing its stdin", act.name);
                        act.stdin.queue_close();
                    }));
                }
                Err(err) => log::error!("{}: cannot write to stdin: {err}", self.name),
            }
        }

        let reads = std::mem::take(&mut self.reads);
        if reads.is_empty() {
            self.output_done = true;
        } else if self.close_output_at_start {
            // Dropping our read ends closes them: the child's first write
            // gets EPIPE (or SIGPIPE), as after a `CloseReader` in its run.
            drop(reads);
            self.output_done = true;
            self.output_complete = false;
        } else {
            let mut reader = PipeReader::new()
                .bufsize(self.popen.bufsize)
                .coalesce(self.popen.coalesce)
                .window(self.popen.window)
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
            for (only, subscriber) in &self.popen.subscribers {
                reader = match only {
                    Some(stream) => reader.subscribe_stream(*stream, subscriber.clone()),
                    None => reader.subscribe(subscriber.clone()),
                };
            }
            for (stream, listener) in &self.popen.eof_listeners {
                reader = reader.on_eof(*stream, listener.clone());
            }
            for (stream, fd) in reads {
                reader = reader.input(stream, fd);
            }
            self.reader = Some(reader.start());
        }
        // The reader has them now; holding them here too would keep the
        // subscribers' actors alive as long as this one.
        self.popen.subscribers.clear();
        self.popen.eof_listeners.clear();

        // The status is read, not reaped: see sys/child.rs.
        ctx.spawn(
            child
                .clone()
                .exited()
                .into_actor(self)
                .map(|result, act, ctx| act.child_exited(result, ctx)),
        );
        self.notify_started(Some(child.pid()));
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
        if let Some(child) = &self.child {
            log::debug!(
                "pid {} ({}) exited with return code {code}",
                child.pid(),
                self.name
            );
        }
        self.exited = Some(code);
        self.maybe_finish();
        if let Some(tracked) = &self.tracked {
            // A released task's child may exit (and be reaped) long after
            // the task ended.
            shutdown::forget_if_reaped(tracked);
        }
        if let (Some(timeout), false) = (self.popen.drain_timeout, self.output_done) {
            let (exited, stalled) = (Instant::now(), self.stalls.stalled());
            self.arm_drain_timeout(timeout, exited, stalled, ctx);
        }
    }

    /// Closes the output once `timeout` has passed since the child exited,
    /// not counting the time the reader waited for slow subscribers (that
    /// output was already written; it is only being taken slowly).
    fn arm_drain_timeout(
        &mut self,
        timeout: Duration,
        exited: Instant,
        stalled: Duration,
        ctx: &mut Context<Self>,
    ) {
        let waited = exited
            .elapsed()
            .saturating_sub(self.stalls.stalled().saturating_sub(stalled));
        let Some(left) = timeout.checked_sub(waited).filter(|left| !left.is_zero()) else {
            if let (false, Some(reader)) = (self.output_done, &self.reader) {
                let holders = crate::sys::proc::holders(
                    &self
                        .tracked
                        .as_ref()
                        .map(|t| t.outputs.clone())
                        .unwrap_or_default(),
                );
                log::warn!(
                    "{}: output still open {timeout:?} after the exit (held by pids {holders:?}); \
                     closing it: those processes are left running",
                    self.name
                );
                reader.do_send(CloseReader);
            }
            return;
        };
        ctx.run_later(left, move |act, ctx| {
            if !act.output_done {
                act.arm_drain_timeout(timeout, exited, stalled, ctx);
            }
        });
    }

    /// The reader finished: every stream reached EOF (`complete`), or it
    /// was closed first.
    fn reader_finished(&mut self, complete: bool) {
        self.output_done = true;
        self.output_complete = complete;
        self.maybe_finish();
    }

    fn maybe_finish(&mut self) {
        if self.phase != Phase::Running || !self.output_done {
            return;
        }
        let code = match (self.exited, self.released) {
            (Some(code), _) => code,
            // Released with the child not yet reaped: it was sent SIGKILL,
            // and will be reaped whenever it finally exits.
            (None, true) => ReturnCode::from_raw(-(Signal::SIGKILL as i32)),
            (None, false) => return,
        };
        self.finish(code);
    }

    /// Ends the task (portage's `_unregister` then `_async_wait`).
    fn finish(&mut self, code: ReturnCode) {
        self.phase = Phase::Ended;
        self.reader = None;
        if !self.fed {
            self.stdin.close();
        }
        if let Some(tracked) = &self.tracked {
            if tracked.task_ended() {
                ProcessSupervisor::get().do_send(Settle(tracked.clone()));
            }
        }
        self.shared.set_returncode(code);
        self.notify_started(None);
        let pid = self.child.as_ref().map(|c| c.pid());
        let exited = Exited::new(pid, code, self.output_complete);
        for listener in std::mem::take(&mut self.exit_listeners) {
            self.exit_notified.push(listener.downgrade());
            listener.do_send(exited);
        }
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(code);
        }
    }

    fn notify_started(&mut self, pid: Option<u32>) {
        if self.started_sent {
            return;
        }
        self.started_sent = true;
        for listener in std::mem::take(&mut self.start_listeners) {
            self.started_notified.push(listener.downgrade());
            listener.do_send(Started { pid });
        }
    }

    fn started_pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid())
    }
}

/// Whether `listener` is among those already notified; forgets the ones
/// whose actors have stopped.
fn was_notified<M>(notified: &mut Vec<WeakRecipient<M>>, listener: &Recipient<M>) -> bool
where
    M: Message + Send,
    M::Result: Send,
{
    let mut found = false;
    notified.retain(|weak| match weak.upgrade() {
        Some(strong) => {
            found |= strong == *listener;
            true
        }
        None => false,
    });
    found
}

impl Actor for PopenProcess {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let _ = self.shared.thread.set(std::thread::current().id());
        if self.phase == Phase::Running {
            self.begin(ctx);
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
    /// started (its arbiter stopped first) is cancelled and reaped here.
    fn teardown(&mut self) {
        if std::mem::replace(&mut self.torn_down, true) {
            return;
        }
        if let Some(tracked) = self.tracked.as_ref().filter(|t| !t.child.is_reaped()) {
            let running = self.phase != Phase::Ended;
            let live_system =
                tokio::runtime::Handle::try_current().is_ok() && System::try_current().is_some();
            if !self.began {
                // Never watched (its arbiter stopped first): only ours.
                terminate_blocking(vec![tracked.clone()]);
            } else if running || !live_system {
                shutdown::shutdown_thread(std::thread::current().id());
            } else if !tracked.escalating() {
                ProcessSupervisor::get().do_send(Adopt(tracked.clone()));
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

impl Handler<Start> for PopenProcess {
    type Result = Result<u32, SpawnError>;

    fn handle(&mut self, _msg: Start, ctx: &mut Context<Self>) -> Self::Result {
        if self.phase != Phase::Pending {
            return Err(SpawnError::AlreadyStarted {
                program: self.name.clone(),
            });
        }
        match self.popen.spawn() {
            Ok(Spawned {
                child,
                reads,
                stdin,
                outputs,
            }) => {
                let child = Arc::new(child);
                let pid = child.pid();
                let _ = self.shared.child.set(child.clone());
                let child_ref = child.clone();
                self.child = Some(child);
                self.reads = reads;
                self.stdin_fd = stdin;
                self.tracked = Some(track(
                    &child_ref,
                    &self.name,
                    self.popen.cancel_timeout,
                    outputs,
                ));
                self.phase = Phase::Running;
                self.begin(ctx);
                Ok(pid)
            }
            Err(err) => {
                // The task ends as a shell would report it.
                let code = if matches!(err, SpawnError::NotFound { .. }) {
                    127
                } else {
                    126
                };
                self.shared.lock().spawn_error = Some(err.clone());
                self.phase = Phase::Running;
                self.output_done = true;
                self.exited = Some(ReturnCode::from_raw(code));
                self.maybe_finish();
                Err(err)
            }
        }
    }
}

impl Handler<Cancel> for PopenProcess {
    type Result = ();

    fn handle(&mut self, _msg: Cancel, ctx: &mut Context<Self>) {
        self.cancel(Signal::SIGTERM, ctx);
    }
}

impl Handler<CancelWith> for PopenProcess {
    type Result = ();

    fn handle(&mut self, CancelWith(signal): CancelWith, ctx: &mut Context<Self>) {
        self.cancel(signal.to_nix(), ctx);
    }
}

impl Handler<SendSignal> for PopenProcess {
    type Result = Result<(), SignalError>;

    /// Sends the signal through the child's own check: nothing goes out
    /// once the child was reaped (see `sys/child.rs`).
    fn handle(&mut self, SendSignal(signal): SendSignal, _ctx: &mut Context<Self>) -> Self::Result {
        let child = match (&self.child, self.phase) {
            (Some(child), Phase::Running) => child,
            _ => return Err(SignalError::NotRunning),
        };
        log::debug!("{signal} to {} (pid {})", self.name, child.pid());
        match child.signal(signal.to_nix()) {
            Ok(Delivery::Sent) => Ok(()),
            Ok(Delivery::Gone) => Err(SignalError::NotRunning),
            Err(source) => Err(SignalError::Refused { signal, source }),
        }
    }
}

impl PopenProcess {
    /// Cancels the task: hands its child to the supervisor's escalation
    /// with `first` as the first signal, or ends a task whose child never
    /// ran with [`ReturnCode::CANCELLED`].
    fn cancel(&mut self, first: Signal, ctx: &mut Context<Self>) {
        if self.cancelled || self.phase == Phase::Ended {
            return;
        }
        self.cancelled = true;
        match (self.phase, &self.tracked) {
            (Phase::Running, Some(tracked)) => {
                ProcessSupervisor::get().do_send(Terminate {
                    task: tracked.clone(),
                    release: ctx.address().recipient(),
                    first,
                });
            }
            // Cancelled before the child ever ran (portage's
            // `_was_cancelled`): start listeners still hear of it.
            _ => {
                self.phase = Phase::Running;
                self.output_done = true;
                self.exited = Some(ReturnCode::CANCELLED);
                self.maybe_finish();
            }
        }
    }
}

impl Handler<Release> for PopenProcess {
    type Result = ();

    fn handle(&mut self, _msg: Release, _ctx: &mut Context<Self>) {
        if self.phase != Phase::Running {
            return;
        }
        self.released = true;
        match &self.reader {
            // Stop reading; the task ends when the reader confirms, so no
            // chunk can follow the exit event.
            Some(reader) if !self.output_done => reader.do_send(CloseReader),
            _ => self.maybe_finish(),
        }
    }
}

impl Handler<AsyncWait> for PopenProcess {
    type Result = ResponseFuture<Result<ReturnCode, WaitError>>;

    fn handle(&mut self, _msg: AsyncWait, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(code) = self.shared.returncode() {
            return Box::pin(async move { Ok(code) });
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        Box::pin(async move { rx.await.map_err(|_| WaitError::ActorGone) })
    }
}

impl Handler<TryWait> for PopenProcess {
    type Result = Option<ReturnCode>;

    fn handle(&mut self, _msg: TryWait, _ctx: &mut Context<Self>) -> Option<ReturnCode> {
        self.shared.returncode()
    }
}

impl Handler<IsAlive> for PopenProcess {
    type Result = bool;

    fn handle(&mut self, _msg: IsAlive, _ctx: &mut Context<Self>) -> bool {
        self.phase == Phase::Running
    }
}

impl Handler<GetPid> for PopenProcess {
    type Result = Option<u32>;

    fn handle(&mut self, _msg: GetPid, _ctx: &mut Context<Self>) -> Option<u32> {
        let child = self.child.as_ref()?;
        (self.phase != Phase::Ended && !child.is_reaped()).then(|| child.pid())
    }
}

impl Handler<AddExitListener> for PopenProcess {
    type Result = ();

    fn handle(&mut self, AddExitListener(listener): AddExitListener, _ctx: &mut Context<Self>) {
        match self.shared.returncode() {
            Some(code) if self.phase == Phase::Ended => {
                if !was_notified(&mut self.exit_notified, &listener) {
                    self.exit_notified.push(listener.downgrade());
                    listener.do_send(Exited::new(self.started_pid(), code, self.output_complete));
                }
            }
            _ => {
                if !self.exit_listeners.contains(&listener) {
                    self.exit_listeners.push(listener);
                }
            }
        }
    }
}

impl Handler<RemoveExitListener> for PopenProcess {
    type Result = ();

    fn handle(
        &mut self,
        RemoveExitListener(listener): RemoveExitListener,
        _ctx: &mut Context<Self>,
    ) {
        self.exit_listeners.retain(|l| *l != listener);
    }
}

impl Handler<AddStartListener> for PopenProcess {
    type Result = ();

    fn handle(&mut self, AddStartListener(listener): AddStartListener, _ctx: &mut Context<Self>) {
        if self.started_sent {
            if !was_notified(&mut self.started_notified, &listener) {
                self.started_notified.push(listener.downgrade());
                listener.do_send(Started {
                    pid: self.started_pid(),
                });
            }
        } else if !self.start_listeners.contains(&listener) {
            self.start_listeners.push(listener);
        }
    }
}

impl Handler<RemoveStartListener> for PopenProcess {
    type Result = ();

    fn handle(
        &mut self,
        RemoveStartListener(listener): RemoveStartListener,
        _ctx: &mut Context<Self>,
    ) {
        self.start_listeners.retain(|l| *l != listener);
    }
}

impl Handler<WriteStdin> for PopenProcess {
    type Result = ResponseFuture<io::Result<()>>;

    /// Queues the bytes for the child's stdin; resolves once they are all
    /// in the pipe.
    fn handle(&mut self, WriteStdin(data): WriteStdin, _ctx: &mut Context<Self>) -> Self::Result {
        let done = self.stdin.write(data);
        Box::pin(async move {
            done.await.unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the child's stdin was closed",
                ))
            })
        })
    }
}

impl Handler<Chunk> for PopenProcess {
    type Result = ResponseFuture<()>;

    /// Feeds an upstream chunk to the child's stdin. The chunk (and so its
    /// upstream credit) is held until its bytes are in the pipe, which is
    /// what carries backpressure from this child back to the upstream one.
    /// A chunk that cannot be written (the child exited: EPIPE) is dropped.
    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) -> Self::Result {
        let done = self.stdin.feed(chunk);
        Box::pin(async move {
            let _ = done.await;
        })
    }
}

impl Handler<CloseStdin> for PopenProcess {
    type Result = ();

    /// Closes the child's stdin once every write queued before has been
    /// written: the child reads EOF.
    fn handle(&mut self, _msg: CloseStdin, _ctx: &mut Context<Self>) {
        self.stdin.queue_close();
    }
}

impl Handler<CloseReader> for PopenProcess {
    type Result = ();

    /// Stops reading the child's output and closes our read ends: the
    /// child's next write to them fails with EPIPE (or SIGPIPE kills it),
    /// as in a shell pipeline whose reader exited. The task then ends when
    /// the child exits, with `output_complete: false`. Sent before a
    /// deferred start, it takes effect as the child starts: nothing is
    /// read, and the child's first write gets EPIPE.
    fn handle(&mut self, _msg: CloseReader, _ctx: &mut Context<Self>) {
        if self.phase == Phase::Pending {
            self.close_output_at_start = true;
        } else if let (false, Some(reader)) = (self.output_done, &self.reader) {
            reader.do_send(CloseReader);
        }
    }
}

/// Tells a pipeline stage which stage feeds its stdin: when the child's
/// end of its stdin goes away, that stage's output is closed (see
/// `stdin.rs`).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetUpstream(pub(crate) WeakRecipient<CloseStream>);

impl Handler<SetUpstream> for PopenProcess {
    type Result = ();

    /// From now on the stdin stays open after the task ends, for as long
    /// as the upstream stage feeds it and something holds its read end (a
    /// background process of this stage may still read it, as through a
    /// kernel pipe): it closes at the upstream's EOF or at the hang-up.
    fn handle(&mut self, SetUpstream(upstream): SetUpstream, _ctx: &mut Context<Self>) {
        self.fed = true;
        self.stdin.hangup.set_upstream(upstream);
    }
}

impl Handler<CloseStream> for PopenProcess {
    type Result = ();

    fn handle(&mut self, msg: CloseStream, _ctx: &mut Context<Self>) {
        if let (false, Some(reader)) = (self.output_done, &self.reader) {
            reader.do_send(msg);
        }
    }
}

/// Completes once no address of the actor is left (every handle,
/// `Addr` and `Recipient` of it dropped).
///
/// actix wakes an actor's context when the last sender of its mailbox is
/// dropped, and polls every future spawned in the context each time it is
/// woken, so checking `connected()` on each poll is enough: no waker of
/// our own is needed.
struct WhenDisconnected;

impl ActorFuture<PopenProcess> for WhenDisconnected {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        _act: &mut PopenProcess,
        ctx: &mut Context<PopenProcess>,
        _task: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if ctx.connected() {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    }
}

/// Files a just-spawned child in the shutdown registry, under this thread
/// and System, so that no teardown can miss it, even before its actor
/// runs (see `shutdown.rs`).
fn track(
    child: &Arc<Child>,
    name: &str,
    cancel_timeout: Duration,
    outputs: Vec<String>,
) -> Arc<Tracked> {
    let tracked = Tracked::new(child.clone(), name.to_owned(), cancel_timeout, outputs);
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
