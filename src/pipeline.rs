//! [`Pipeline`]: `a | b | c` built from [`PopenProcess`] actors.
//!
//! Two stages are joined by one kernel pipe, as a shell joins them, so EOF,
//! EPIPE and backpressure cross each boundary as in a shell, and a stage
//! that ends while a process it started still reads its stdin keeps
//! being fed.
//! * Where nobody observes a stage's stdout (no subscriber of it, no line
//!   subscriber), the stage writes into that pipe itself: no byte passes
//!   through this process.
//! * Where a stage's stdout is observed, the stage writes into a pipe of
//!   its own, which its actor reads. Each byte is first copied into the
//!   pipe to the next stage by `tee(2)`, which shares the pages instead
//!   of copying them, then read and given to the subscribers as
//!   [`Chunk`]s. Backpressure holds both ways: a full pipe to the next
//!   stage, or subscribers with no credit left (see [`Chunk`]), stop the
//!   reading, and the stage waits.
//!
//! The [`PipelineProcess`] actor watches every stage:
//! * [`Cancel`] cancels every stage, [`CancelWith`] with its own first signal;
//! * once every stage has ended, [`AsyncWait`] resolves with the pipeline's
//!   return code: the last stage's, or with [`Pipeline::pipefail`] the last
//!   non-zero one (bash's `set -o pipefail`), and [`PipeStatus`] gives every
//!   stage's (bash's `PIPESTATUS`).

use std::ops::Deref;
use std::os::fd::OwnedFd;

use actix::prelude::*;
use actix::WeakAddr;
use futures::channel::oneshot;
use futures::future::BoxFuture;

use crate::messages::{AsyncWait, Cancel, CancelWith, CloseStdin, Exited, OutputStream, Start};
use crate::process::{PopenProcess, ProcessHandle, Queued};
use crate::spawn::{InputFrom, OutputTo};
use crate::supervisor::{Enqueue, Job, ProcessSupervisor};
use crate::{ExitCause, Popen, ReturnCode, SpawnError, SpawnErrorKind, TaskId, WaitError};

/// The chunk size an observed stage gathers for its subscribers unless
/// its [`Popen`] sets [`coalesce`](Popen::coalesce).
const PIPE_COALESCE: usize = 64 * 1024;

/// A description of a pipeline of processes, `a | b | c`. It is `Clone`,
/// and can be started again.
///
/// Every stage but the first reads its stdin from the previous stage; every
/// stage but the last writes its stdout to the next (its stdout is always
/// piped, whatever its [`Popen`] says; merge its stderr into its stdout for
/// `2>&1 |`). The first stage's stdin, the last stage's output and every
/// stage's stderr are wired as their [`Popen`]s say: subscribe to the last
/// stage to see the pipeline's output.
///
/// Two stages are joined by one kernel pipe, as in a shell (see the
/// module's docs). An observed stage is `stage | tee … | next` in a shell:
/// its output has the room of two pipes (its own and the one to the next
/// stage), so it may finish writing where, unobserved, it would have been
/// killed by SIGPIPE; and if the next stage reads nothing, its subscribers
/// see nothing either. When the first one's stdout is observed
/// ([`Popen::subscribe`], [`Popen::subscribe_stream`] of stdout,
/// [`Popen::lines`]), this process also reads what goes through, after
/// copying it into that pipe by `tee(2)`, and gives it to the subscribers
/// in chunks of up to 64 KiB (see [`Popen::coalesce`]) unless the stage's
/// `Popen` sets its own. A [`CloseStream`](crate::CloseStream) or
/// [`CloseReader`](crate::CloseReader) of such a stage's stdout closes it
/// for the next stage too (it reads EOF, the stage gets EPIPE); on a stage
/// that nobody observes it does nothing. Every stage but the first reads a
/// kernel pipe, not a pipe of the task's, so a
/// [`WriteStdin`](crate::WriteStdin) to it fails with `NotConnected`.
/// [`Popen::pipe_size`] of a stage sizes the pipe to the next.
///
/// ```
/// use actix::Actor;
/// use actix_popen::{AsyncWait, Collector, GetValue, Pipeline, PipeStatus, Popen};
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let collector = Collector::start_default();
/// let pipeline = Pipeline::new()
///     .stage(Popen::new("printf").arg("b\na\nc\n"))
///     .stage(Popen::new("sort"))
///     .stage(Popen::new("head").arg("-n2").subscribe(collector.clone().recipient()))
///     .start()?;
/// let code = pipeline.send(AsyncWait).await??;
/// assert!(code.success());
/// assert_eq!(&collector.send(GetValue).await?.stdout[..], b"a\nb\n");
/// let statuses = pipeline.send(PipeStatus).await?;
/// assert_eq!(statuses.len(), 3);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    stages: Vec<Popen>,
    pipefail: bool,
    timeout: Option<std::time::Duration>,
    exit_listeners: Vec<Recipient<PipelineExited>>,
}

/// Why a pipeline could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The pipeline has no stage.
    #[error("a pipeline needs at least one stage")]
    Empty,
    /// A stage could not be spawned (by [`Pipeline::start`]) or prepared
    /// (by [`Pipeline::submit`]); the stages already started or prepared
    /// were cancelled.
    #[error("stage {stage} of the pipeline: {source}")]
    Spawn {
        /// The failed stage's index, from 0.
        stage: usize,
        /// Why it failed.
        #[source]
        source: SpawnError,
    },
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Appends a stage.
    pub fn stage(mut self, popen: Popen) -> Pipeline {
        self.stages.push(popen);
        self
    }

    /// With `true`, the pipeline's return code is the last non-zero one of
    /// its stages (0 if all succeeded), as bash's `set -o pipefail`; with
    /// `false` (the default) it is the last stage's.
    pub fn pipefail(mut self, enabled: bool) -> Pipeline {
        self.pipefail = enabled;
        self
    }

    /// Bounds the whole pipeline's run: every stage gets this
    /// [`Popen::timeout`], counted from its spawn (they are all spawned at
    /// once, by [`start`](Self::start), or when a
    /// [`submit`](Self::submit)ted pipeline's turn comes: the wait in the
    /// queue does not count), so a stage still running when it passes is
    /// cancelled and ends with [`ExitCause::TimedOut`](crate::ExitCause::TimedOut);
    /// a stage that had already ended keeps its own status, as in a shell
    /// pipeline under `timeout(1)`.
    pub fn timeout(mut self, timeout: std::time::Duration) -> Pipeline {
        self.timeout = Some(timeout);
        self
    }

    /// Sends `recipient` a [`PipelineExited`] once every stage has ended:
    /// the pipeline's return code, and every stage's status and cause.
    pub fn exit_listener(mut self, recipient: Recipient<PipelineExited>) -> Pipeline {
        self.exit_listeners.push(recipient);
        self
    }

    /// Spawns every stage, last first (so each stage's reader knows where
    /// to send its output), and starts the pipeline's actor on the current
    /// arbiter.
    ///
    /// # Errors
    /// [`PipelineError::Empty`], or [`PipelineError::Spawn`] naming the
    /// stage that failed; the stages already started are cancelled.
    pub fn start(self) -> Result<PipelineHandle, PipelineError> {
        self.wire(Popen::start)
    }

    /// Submits the whole pipeline to the
    /// [`ProcessSupervisor`](crate::ProcessSupervisor)'s job pool as one
    /// job, as portage's job pool counts one build as one job whatever it
    /// spawns (`--jobs`, `--load-average`; see
    /// [`SetJobLimits`](crate::SetJobLimits)).
    ///
    /// Every stage's actor and the pipeline's actor are created on the
    /// current arbiter at once, wired as by [`start`](Self::start), so the
    /// handle takes every message at once ([`AsyncWait`], [`PipeStatus`],
    /// [`Cancel`], bytes for the first stage's stdin, which wait for its
    /// child); no process is spawned yet. The pipeline waits in the pool's
    /// queue, in submission order with the tasks of
    /// [`Popen::submit`]. When its turn comes every stage is spawned, last
    /// first, and the pipeline holds its one place until every stage has
    /// ended. [`Pipeline::timeout`] counts from that start.
    ///
    /// [`Cancel`] before its turn ends every stage with
    /// [`ReturnCode::CANCELLED`] without any child ever running, and frees
    /// its place in the queue. A stage whose spawn fails when its turn
    /// comes ends with its error's [`shell_status`](SpawnError::shell_status)
    /// (127, 1 or 126), as a submitted task does,
    /// with [`ExitCause::SpawnFailed`] in [`PipelineExited::causes`]; the
    /// error is logged, and its handle's
    /// [`spawn_error`](ProcessHandle::spawn_error) says why. The other
    /// stages are cancelled: those already spawned get the cancel's
    /// signals, the others end with [`ReturnCode::CANCELLED`] without
    /// running.
    ///
    /// ```
    /// use actix::Actor;
    /// use actix_popen::{
    ///     AsyncWait, Collector, GetValue, Pipeline, Popen, ProcessSupervisor, SetJobLimits,
    /// };
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // One job at a time, like `emerge --jobs 1`.
    /// ProcessSupervisor::get()
    ///     .send(SetJobLimits { max_jobs: Some(1), max_load: None })
    ///     .await??;
    /// let task = Popen::new("true").submit()?;
    /// let collector = Collector::start_default();
    /// // One job too: its stages start together once the task has ended.
    /// let pipeline = Pipeline::new()
    ///     .stage(Popen::new("printf").arg("b\na\n"))
    ///     .stage(Popen::new("sort").subscribe(collector.clone().recipient()))
    ///     .submit()?;
    /// assert_eq!(pipeline.stages()[0].pid(), None, "not spawned yet");
    /// assert!(task.send(AsyncWait).await??.success());
    /// assert!(pipeline.send(AsyncWait).await??.success());
    /// assert_eq!(&collector.send(GetValue).await?.stdout[..], b"a\nb\n");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`PipelineError::Empty`], or [`PipelineError::Spawn`] naming the
    /// stage that could not be prepared (as [`Popen::prepare`]: an invalid
    /// description, or no actix arbiter on this thread); the stages
    /// already prepared end with [`ReturnCode::CANCELLED`] and nothing is
    /// queued.
    pub fn submit(self) -> Result<PipelineHandle, PipelineError> {
        let kill_on_drop: Vec<bool> = self.stages.iter().map(Popen::kills_on_drop).collect();
        let pipeline = self.wire(Popen::prepare)?;
        let stages = pipeline.stages.iter().cloned().zip(kill_on_drop);
        ProcessSupervisor::get().do_send(Enqueue(Box::new(PipelineJob {
            stages: stages
                .map(|(stage, kill_on_drop)| stage.queued(kill_on_drop))
                .collect(),
        })));
        Ok(pipeline)
    }

    /// Makes every stage with `make` (spawned by [`Popen::start`], or
    /// prepared by [`Popen::prepare`] for a deferred start), last first,
    /// wires each to the next by their actors' addresses, and starts the
    /// pipeline's actor on the current arbiter. If a stage cannot be made,
    /// the stages already made are cancelled.
    fn wire(
        self,
        make: fn(Popen) -> Result<ProcessHandle, SpawnError>,
    ) -> Result<PipelineHandle, PipelineError> {
        let count = self.stages.len();
        if count == 0 {
            return Err(PipelineError::Empty);
        }
        // The pipeline's actor listens to every stage's exit from the
        // stage's start on (a listener of the description, not a message
        // sent later, which a stage whose every handle is gone by then
        // would never handle).
        let context: Context<PipelineProcess> = Context::new();
        let pipeline = context.address();
        // Every stage writes into one kernel pipe that the next stage
        // reads, as in a shell. Where nobody observes a stage's stdout, the
        // stage writes into it itself and no byte passes through this
        // process; where its stdout is observed, this process reads it and
        // copies each byte into the pipe first by tee(2), which shares the
        // pages rather than copying them. `reads[i]` and `writes[i]` join
        // stage i to i + 1.
        let mut reads: Vec<Option<OwnedFd>> = Vec::with_capacity(count);
        let mut writes: Vec<Option<OwnedFd>> = Vec::with_capacity(count);
        // A stage's own errors first (a `pipe_size` out of range or not
        // permitted), before a pipe is made with its settings.
        for (index, stage) in self.stages.iter().enumerate() {
            stage.validate().map_err(|source| PipelineError::Spawn {
                stage: index,
                source,
            })?;
        }
        for (index, stage) in self.stages.iter().enumerate() {
            let (read, write) = if index + 1 < count {
                let (read, write) =
                    crate::sys::fd::pipe_sized(stage.pipe_size_set()).map_err(|err| {
                        PipelineError::Spawn {
                            stage: index,
                            source: stage.spawn_error(err),
                        }
                    })?;
                (Some(read), Some(write))
            } else {
                (None, None)
            };
            reads.push(read);
            writes.push(write);
        }
        let mut made: Vec<ProcessHandle> = Vec::with_capacity(count);
        for (index, popen) in self.stages.into_iter().enumerate().rev() {
            let mut popen = popen.exit_listener(pipeline.clone().recipient());
            if let Some(timeout) = self.timeout {
                popen = popen.timeout(timeout);
            }
            if let Some(read) = index.checked_sub(1).and_then(|before| reads[before].take()) {
                popen = popen.stdin(InputFrom::fd(read));
            }
            if let Some(write) = writes[index].take() {
                popen = if popen.observes(OutputStream::Stdout) {
                    // What is ready reaches the subscribers in chunks of up
                    // to 64 KiB, not one per read, unless the stage says
                    // otherwise.
                    popen
                        .coalesce_unless_set(PIPE_COALESCE)
                        .stdout(OutputTo::Pipe)
                        .tee_stdout(write)
                } else {
                    popen.stdout(OutputTo::fd(write))
                };
            }
            match make(popen) {
                Ok(handle) => made.push(handle),
                Err(source) => {
                    for handle in &made {
                        handle.do_send(Cancel);
                    }
                    return Err(PipelineError::Spawn {
                        stage: index,
                        source,
                    });
                }
            }
        }
        made.reverse();
        let stages = made;
        let actor = PipelineProcess {
            stages: stages.iter().map(|h| h.addr().downgrade()).collect(),
            ids: stages.iter().map(|h| h.id()).collect(),
            returncodes: vec![None; count],
            causes: vec![None; count],
            pipefail: self.pipefail,
            waiters: Vec::new(),
            exit_listeners: self.exit_listeners,
        };
        Ok(PipelineHandle {
            addr: context.run(actor),
            stages,
        })
    }
}

/// A submitted pipeline as the job pool sees it: one job, whose stages
/// start together and which ends once every stage has ended.
struct PipelineJob {
    /// The stages, first to last, as the pool holds them while the
    /// pipeline waits (see [`Queued`]); dropped once they are started (see
    /// `run`).
    stages: Vec<Queued>,
}

impl Job for PipelineJob {
    /// Every stage has ended: the pipeline was cancelled while it waited.
    fn ended(&self) -> bool {
        self.stages.iter().all(Queued::ended)
    }

    fn run(self: Box<Self>) -> BoxFuture<'static, ()> {
        let handles: Vec<Option<ProcessHandle>> = self.stages.iter().map(Queued::handle).collect();
        drop(self);
        Box::pin(async move {
            // A stage that ended before its turn (cancelled on its own, or
            // by kill_on_drop) leaves the pipeline broken: none of it is
            // started then.
            let intact = handles
                .iter()
                .all(|stage| stage.as_ref().is_some_and(|s| s.try_wait().is_none()));
            let stages: Vec<ProcessHandle> = handles.into_iter().flatten().collect();
            if !(intact && start_all(&stages).await) {
                // As a failed `Pipeline::start`: the stages started are
                // cancelled, the others end without running.
                for stage in &stages {
                    stage.do_send(Cancel);
                }
            }
            // The waits hold no address of the stages: with every user
            // handle dropped, the first stage's stdin can close.
            let ends: Vec<_> = stages.iter().map(|stage| stage.send(AsyncWait)).collect();
            drop(stages);
            futures::future::join_all(ends).await;
        })
    }
}

/// Starts every stage, last first (as `Pipeline::start` spawns them), up
/// to the first that fails; whether all started.
async fn start_all(stages: &[ProcessHandle]) -> bool {
    for (index, stage) in stages.iter().enumerate().rev() {
        match stage.send(Start).await {
            Ok(Ok(_pid)) => continue,
            // The stage ended with its shell status; nobody else hears why.
            Ok(Err(source)) if !matches!(source.kind(), SpawnErrorKind::AlreadyStarted) => {
                let err = PipelineError::Spawn {
                    stage: index,
                    source,
                };
                log::error!("job pool: {err}");
            }
            // Cancelled just before its turn.
            _ => {}
        }
        return false;
    }
    true
}

/// A handle on a pipeline, running or waiting in the job pool: the [`PipelineProcess`] actor's address
/// (it dereferences to it) and a [`ProcessHandle`] for each stage.
#[derive(Debug, Clone)]
pub struct PipelineHandle {
    addr: Addr<PipelineProcess>,
    stages: Vec<ProcessHandle>,
}

impl Deref for PipelineHandle {
    type Target = Addr<PipelineProcess>;

    fn deref(&self) -> &Addr<PipelineProcess> {
        &self.addr
    }
}

impl PipelineHandle {
    /// The pipeline actor's address.
    pub fn addr(&self) -> &Addr<PipelineProcess> {
        &self.addr
    }

    /// The stages, first to last.
    pub fn stages(&self) -> &[ProcessHandle] {
        &self.stages
    }
}

/// Request: every stage's return code so far, first to last (bash's
/// `PIPESTATUS`); `None` for a stage still running.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "Vec<Option<ReturnCode>>")]
pub struct PipeStatus;

/// The actor that runs a [`Pipeline`]: it handles [`Cancel`],
/// [`CancelWith`], [`AsyncWait`] and [`PipeStatus`].
#[derive(Debug)]
pub struct PipelineProcess {
    /// Held weakly: a stage whose every handle was dropped must see its
    /// stdin close (see [`InputFrom::Pipe`]), and a stage whose actor is
    /// gone has ended.
    stages: Vec<WeakAddr<PopenProcess>>,
    /// Each stage's task id, which its exit event carries.
    ids: Vec<TaskId>,
    returncodes: Vec<Option<ReturnCode>>,
    causes: Vec<Option<ExitCause>>,
    pipefail: bool,
    waiters: Vec<oneshot::Sender<ReturnCode>>,
    exit_listeners: Vec<Recipient<PipelineExited>>,
}

/// Event: every stage of a [`Pipeline`] has ended (see
/// [`Pipeline::exit_listener`]).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub struct PipelineExited {
    /// The pipeline's return code: the last stage's, or with
    /// [`Pipeline::pipefail`] the last non-zero one.
    pub returncode: ReturnCode,
    /// Every stage's return code, first to last (bash's `PIPESTATUS`).
    pub statuses: Vec<ReturnCode>,
    /// Why each stage ended, first to last.
    pub causes: Vec<ExitCause>,
}

impl PipelineExited {
    /// The event, for tests of code that handles one.
    pub fn new(returncode: ReturnCode, statuses: Vec<ReturnCode>, causes: Vec<ExitCause>) -> Self {
        PipelineExited {
            returncode,
            statuses,
            causes,
        }
    }
}

impl PipelineProcess {
    fn returncode(&self) -> Option<ReturnCode> {
        let codes: Option<Vec<ReturnCode>> = self.returncodes.iter().copied().collect();
        let codes = codes?;
        let last = *codes.last()?;
        if self.pipefail {
            Some(
                codes
                    .iter()
                    .rev()
                    .find(|c| !c.success())
                    .copied()
                    .unwrap_or(last),
            )
        } else {
            Some(last)
        }
    }
}

impl Actor for PipelineProcess {
    type Context = Context<Self>;
}

impl Handler<Exited> for PipelineProcess {
    type Result = ();

    fn handle(&mut self, exited: Exited, _ctx: &mut Context<Self>) {
        let Some(index) = self.ids.iter().position(|id| *id == exited.task) else {
            return;
        };
        self.returncodes[index] = Some(exited.returncode);
        self.causes[index] = Some(exited.cause);
        // A stage that ended without ever running (cancelled while the
        // pipeline waited in the job pool, or by its kill_on_drop; or its
        // spawn failed) leaves a pipeline that can never run whole: the
        // other stages are cancelled now, so that a queued pipeline gives
        // its place back at once rather than at its turn.
        if exited.pid.is_none() {
            for (other, stage) in self.stages.iter().enumerate() {
                if other != index && self.returncodes[other].is_none() {
                    if let Some(stage) = stage.upgrade() {
                        stage.do_send(Cancel);
                    }
                }
            }
        }
        // Everything this stage wrote is already queued at the next one:
        // its exit is reported only after its last chunk was sent.
        if let Some(next) = self.stages.get(index + 1).and_then(WeakAddr::upgrade) {
            next.do_send(CloseStdin);
        }
        // The previous stage is not told anything here: a process this
        // stage started may still read its stdin, as from a kernel pipe.
        // When nothing does any more, the hang-up closes the previous
        // stage's stdout (see `stdin.rs`).
        if let Some(code) = self.returncode() {
            for waiter in self.waiters.drain(..) {
                let _ = waiter.send(code);
            }
            let event = PipelineExited {
                returncode: code,
                statuses: self.returncodes.iter().flatten().copied().collect(),
                causes: self.causes.iter().flatten().copied().collect(),
            };
            for listener in std::mem::take(&mut self.exit_listeners) {
                listener.do_send(event.clone());
            }
        }
    }
}

impl Handler<Cancel> for PipelineProcess {
    type Result = ();

    /// Cancels every stage (see [`Cancel`]), the last first: a stage is
    /// signalled before the stage that feeds it, so that one that obeys
    /// the signal does not first read an EOF the cancel caused and exit as
    /// if its input had ended. A stage that ignores or handles the signal
    /// may still do so; its cause is [`ExitCause::Cancelled`] whatever its
    /// status. A stage still writing when the stage after it dies may die
    /// of SIGPIPE before its own signal, as in a shell.
    fn handle(&mut self, _msg: Cancel, _ctx: &mut Context<Self>) {
        for stage in self.stages.iter().rev().filter_map(WeakAddr::upgrade) {
            stage.do_send(Cancel);
        }
    }
}

impl Handler<CancelWith> for PipelineProcess {
    type Result = ();

    /// Cancels every stage with the same first signal (see [`CancelWith`]),
    /// the last first, as [`Cancel`].
    fn handle(&mut self, msg: CancelWith, _ctx: &mut Context<Self>) {
        for stage in self.stages.iter().rev().filter_map(WeakAddr::upgrade) {
            stage.do_send(msg);
        }
    }
}

impl Handler<AsyncWait> for PipelineProcess {
    type Result = ResponseFuture<Result<ReturnCode, WaitError>>;

    /// Resolves with the pipeline's return code once every stage ended.
    fn handle(&mut self, _msg: AsyncWait, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(code) = self.returncode() {
            return Box::pin(async move { Ok(code) });
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        Box::pin(async move { rx.await.map_err(|_| WaitError::ActorGone) })
    }
}

impl Handler<PipeStatus> for PipelineProcess {
    type Result = Vec<Option<ReturnCode>>;

    fn handle(&mut self, _msg: PipeStatus, _ctx: &mut Context<Self>) -> Vec<Option<ReturnCode>> {
        self.returncodes.clone()
    }
}
