//! The job registry: one actor, [`Jobs`], owns every job, running or
//! finished, with its bounded output buffer and the clients watching it.
//!
//! The HTTP workers are arbiters of their own (one thread each); they only
//! send messages here. Every process actor is started from a `Jobs`
//! handler, so all of them live on the registry's arbiter, the System's
//! main one, and when the System stops the library cancels and reaps them
//! there.
//!
//! # Queueing
//! Jobs go through the library's job pool ([`Popen::submit`](actix_popen::Popen::submit)):
//! the registry sets the pool's limits ([`SetJobLimits`]: `max_running`
//! jobs at once, and no new start while the load average is at or above
//! `max_load`) and submits each job, which is then `queued` until the pool
//! starts its child, in submission order. Its [`Started`] event makes it
//! `running`, with its pid and start time; its timeout counts from then.
//! A queued job that is cancelled ends `cancelled` with return code -2 and
//! never runs a process; one whose program cannot be run when its turn
//! comes ends `failed-to-start` with 127 (not found) or 126.
//!
//! # Bounds
//! Everything is bounded:
//! * a job keeps the last `output_limit` bytes of its output; older bytes
//!   are dropped and counted (`output_dropped`);
//! * at most `max_running` jobs run at once, and at most `max_queued` more
//!   wait in the pool's queue: one more is refused (the API answers 429).
//!   The count is the pool's own ([`GetJobPool`]), which drops a job
//!   cancelled while it waits at once: a client that submits and cancels
//!   in a loop cannot grow the queue;
//! * at most `keep_finished` finished jobs are kept, the oldest forgotten;
//! * at most `max_watchers` streams are open on one job's output, live or
//!   replayed: each holds a [`WatchSlot`] until it is dropped, and the cap
//!   is checked before anything is replayed;
//! * the output is kept as shared pieces: a replay holds references to
//!   them, not a copy (but for the last piece, under 16 KiB);
//! * each live stream has a queue of `client_queue` events: a client
//!   whose queue is full (it does not read) or closed (it went away) is
//!   dropped at the next event; a keep-alive every `keep_alive` makes that
//!   next event come even when the job is silent (and gives the server's
//!   write deadline something to time, see `main.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use actix_popen::{
    Cancel, Chunk, Exited, GetJobPool, JobPool, ProcessHandle, ProcessSupervisor, ResourceUsage,
    ReturnCode, SetJobLimits, Started,
};
use bytes::{Buf, Bytes, BytesMut};
use futures::channel::oneshot;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::definitions::Launch;

/// The registry's bounds (see the module docs).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_running: usize,
    /// The 1-minute load average at or above which no new job starts
    /// (unless none runs), as portage's `--load-average`.
    pub max_load: Option<f64>,
    pub max_queued: usize,
    pub keep_finished: usize,
    pub output_limit: usize,
    pub client_queue: usize,
    pub max_watchers: usize,
    pub keep_alive: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_running: 4,
            max_load: None,
            max_queued: 100,
            keep_finished: 50,
            output_limit: 1 << 20,
            client_queue: 256,
            max_watchers: 16,
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Waiting in the job pool's queue: no process yet.
    Queued,
    Running,
    /// It ended by itself.
    Exited,
    /// It ended after a cancel (a `DELETE`, its timeout, or the shutdown).
    Cancelled,
    /// Its program could not be run (`error` says why).
    FailedToStart,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Exited => "exited",
            State::Cancelled => "cancelled",
            State::FailedToStart => "failed to start",
        })
    }
}

impl State {
    /// Whether the job has ended (nothing more happens to it).
    pub fn is_ended(self) -> bool {
        !matches!(self, State::Queued | State::Running)
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: u64,
    pub job: String,
    pub params: BTreeMap<String, String>,
    pub argv: Vec<String>,
    pub state: State,
    /// The pid it ran as (kept after the exit, for the record); `None`
    /// while queued, and if it never ran.
    pub pid: Option<u32>,
    /// When it was submitted: RFC 3339, UTC.
    pub submitted_at: String,
    /// When its process started; `None` while queued, and if it never ran.
    pub started_at: Option<String>,
    /// When it ended.
    pub ended_at: Option<String>,
    /// How long it has run (so far, while it runs); `None` if it has not.
    pub duration_ms: Option<u64>,
    /// portage's convention: the exit status, or -N for signal N.
    pub returncode: Option<i32>,
    /// CPU time (user plus system) of its process and the children it
    /// waited for, in milliseconds; once it ended, if it ran.
    pub cpu_ms: Option<u64>,
    /// The peak resident memory of its process (or of the largest child
    /// it waited for), in bytes; once it ended, if it ran.
    pub max_rss_bytes: Option<u64>,
    pub timed_out: bool,
    pub error: Option<String>,
    /// Every byte it wrote, kept or not.
    pub output_bytes: u64,
    /// The oldest bytes, no longer kept.
    pub output_dropped: u64,
    /// False if reading stopped before EOF (see `Exited::output_complete`).
    pub output_complete: bool,
    /// Streams open on its output, live or replayed (at most
    /// `max_watchers`).
    pub watchers: usize,
}

/// What a watching client is sent.
#[derive(Debug, Clone)]
pub enum Event {
    /// Bytes of output; `offset` is the position of the first one in
    /// everything the job wrote.
    Output { offset: u64, data: Bytes },
    /// The job ended; nothing follows.
    Exit(Box<JobView>),
    /// Nothing happened (it shows whether the client is still there).
    KeepAlive,
}

/// Why a request about a job was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no job with id {0}")]
    UnknownId(u64),
    #[error(
        "the queue is full ({running} jobs running, {queued} waiting, the most allowed): \
         try again when one has ended"
    )]
    QueueFull { running: usize, queued: usize },
    #[error("job {id} has already ended ({state})")]
    AlreadyEnded { id: u64, state: State },
    #[error("{limit} clients are watching job {id}, the most allowed")]
    TooManyWatchers { id: u64, limit: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
}

// ---------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------

/// Request: submit a checked job to the pool. Replies with the job as
/// queued (or as failed to start).
#[derive(Debug, Message)]
#[rtype(result = "Result<JobView, JobError>")]
pub struct StartJob(pub Launch);

/// Request: every job kept, oldest first.
#[derive(Debug, Message)]
#[rtype(result = "Vec<JobView>")]
pub struct ListJobs;

/// Request: one job.
#[derive(Debug, Message)]
#[rtype(result = "Result<JobView, JobError>")]
pub struct GetJob(pub u64);

/// Request: cancel a queued or running job. A queued job ends at once
/// (-2); a running one gets SIGTERM, SIGKILL after its cancel timeout.
/// Replies at once, with the job as it was.
#[derive(Debug, Message)]
#[rtype(result = "Result<JobView, JobError>")]
pub struct CancelJob(pub u64);

/// Request: the output kept from byte `from` on, then, if the job runs,
/// every event until it ends.
#[derive(Debug, Message)]
#[rtype(result = "Result<Watch, JobError>")]
pub struct WatchJob {
    pub id: u64,
    pub from: u64,
}

/// The reply to [`WatchJob`]: the replay, then the live events (`None` if
/// the job has ended: the replay then ends with its [`Event::Exit`]), and
/// the watcher's place, to hold for as long as its stream is open.
#[derive(Debug)]
pub struct Watch {
    pub replay: Vec<Event>,
    pub live: Option<mpsc::Receiver<Event>>,
    pub slot: WatchSlot,
}

/// One of a job's `max_watchers` places, held by an output stream, live or
/// replayed, until it is dropped (the client left or was too slow, or the
/// stream ended: read to the end, or idle for too long, see `api.rs`).
#[derive(Debug)]
pub struct WatchSlot(#[allow(dead_code)] Arc<()>);

/// Request: refuse new jobs, cancel every queued and running one, and
/// reply once all have ended.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Event from a [`Relay`]: the pool started job `id` as `pid` (`None`: it
/// ended without running, and [`JobEnded`] follows).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct JobStarted {
    id: u64,
    pid: Option<u32>,
}

/// Event from a [`Relay`]: output of job `id`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct JobOutput {
    id: u64,
    data: Bytes,
}

/// Event from a [`Relay`]: job `id` ended, after its last output.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct JobEnded {
    id: u64,
    exited: Exited,
}

// ---------------------------------------------------------------------
// The output buffer
// ---------------------------------------------------------------------

/// The largest output event a replay sends, and the size of the pieces
/// the buffer keeps.
const REPLAY_CHUNK: usize = 16 * 1024;

/// The last `limit` bytes of a job's output, as shared pieces: a replay
/// clones references to them, not their bytes. Output is gathered into
/// `tail` until it makes a piece of [`REPLAY_CHUNK`] bytes, so that many
/// small writes do not make many small pieces; a replay copies that tail
/// (less than one piece).
#[derive(Debug)]
struct OutputBuffer {
    pieces: VecDeque<Bytes>,
    tail: BytesMut,
    /// Bytes in `pieces` and `tail`.
    kept: usize,
    limit: usize,
    /// Every byte ever pushed.
    total: u64,
}

impl OutputBuffer {
    fn new(limit: usize) -> OutputBuffer {
        OutputBuffer {
            pieces: VecDeque::new(),
            tail: BytesMut::new(),
            kept: 0,
            limit,
            total: 0,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let mut data = &data[data.len().saturating_sub(self.limit)..];
        while !data.is_empty() {
            let room = REPLAY_CHUNK - self.tail.len();
            let (now, later) = data.split_at(room.min(data.len()));
            self.tail.extend_from_slice(now);
            self.kept += now.len();
            data = later;
            if self.tail.len() == REPLAY_CHUNK {
                self.pieces.push_back(self.tail.split().freeze());
            }
        }
        // Drop the oldest bytes beyond the limit.
        while self.kept > self.limit {
            let excess = self.kept - self.limit;
            match self.pieces.front_mut() {
                Some(piece) if piece.len() <= excess => {
                    self.kept -= piece.len();
                    self.pieces.pop_front();
                }
                Some(piece) => {
                    piece.advance(excess);
                    self.kept -= excess;
                }
                None => {
                    self.tail.advance(excess);
                    self.kept -= excess;
                }
            }
        }
    }

    fn dropped(&self) -> u64 {
        self.total - self.kept as u64
    }

    /// What is kept from byte `from` on (or from the oldest kept byte):
    /// the pieces shared, the tail copied.
    fn replay(&self, from: u64) -> Vec<Event> {
        let mut skip = from.saturating_sub(self.dropped()).min(self.kept as u64) as usize;
        let mut offset = self.dropped() + skip as u64;
        let tail = Bytes::copy_from_slice(&self.tail);
        let mut events = Vec::new();
        for piece in self.pieces.iter().chain([&tail]) {
            if skip >= piece.len() {
                skip -= piece.len();
                continue;
            }
            let data = piece.slice(skip..);
            skip = 0;
            if data.is_empty() {
                continue;
            }
            let len = data.len() as u64;
            events.push(Event::Output { offset, data });
            offset += len;
        }
        events
    }
}

// ---------------------------------------------------------------------
// The registry
// ---------------------------------------------------------------------

#[derive(Debug)]
struct Job {
    launch: Launch,
    state: State,
    pid: Option<u32>,
    submitted_at: SystemTime,
    /// When its process started, by the wall clock and the monotonic one.
    started: Option<(SystemTime, Instant)>,
    ended: Option<(SystemTime, Instant)>,
    returncode: Option<ReturnCode>,
    /// What its process cost, from its exit event.
    usage: Option<ResourceUsage>,
    output_complete: bool,
    cancelled: bool,
    timed_out: bool,
    error: Option<String>,
    output: OutputBuffer,
    /// Until it ends.
    process: Option<ProcessHandle>,
    timer: Option<SpawnHandle>,
    /// The live streams' queues.
    clients: Vec<mpsc::Sender<Event>>,
    /// One reference more per open stream, live or replayed.
    slots: Arc<()>,
}

impl Job {
    fn view(&self, id: u64) -> JobView {
        let duration = self.started.map(|(_, started)| {
            let until = self.ended.map_or_else(Instant::now, |(_, ended)| ended);
            until.saturating_duration_since(started).as_millis() as u64
        });
        JobView {
            id,
            job: self.launch.job.clone(),
            params: self.launch.params.clone(),
            argv: self.launch.argv.clone(),
            state: self.state,
            pid: self.pid,
            submitted_at: rfc3339(self.submitted_at),
            started_at: self.started.map(|(at, _)| rfc3339(at)),
            ended_at: self.ended.map(|(at, _)| rfc3339(at)),
            duration_ms: duration,
            returncode: self.returncode.map(ReturnCode::code),
            cpu_ms: self
                .usage
                .map(|u| u64::try_from(u.cpu_time().as_millis()).unwrap_or(u64::MAX)),
            max_rss_bytes: self.usage.map(|u| u.max_rss),
            timed_out: self.timed_out,
            error: self.error.clone(),
            output_bytes: self.output.total,
            output_dropped: self.output.dropped(),
            output_complete: self.output_complete,
            watchers: self.watchers(),
        }
    }

    /// Streams open on its output, live or replayed.
    fn watchers(&self) -> usize {
        Arc::strong_count(&self.slots) - 1
    }

    /// Queues `event` for every client, dropping those gone or not reading.
    fn broadcast(&mut self, event: &Event) {
        self.clients
            .retain(|client| client.try_send(event.clone()).is_ok());
    }
}

/// The registry actor (see the module docs).
#[derive(Debug)]
pub struct Jobs {
    limits: Limits,
    jobs: BTreeMap<u64, Job>,
    next_id: u64,
    shutting_down: bool,
    drained: Vec<oneshot::Sender<()>>,
}

impl Jobs {
    pub fn new(limits: Limits) -> Jobs {
        Jobs {
            limits,
            jobs: BTreeMap::new(),
            next_id: 1,
            shutting_down: false,
            drained: Vec::new(),
        }
    }

    fn count(&self, state: State) -> usize {
        self.jobs.values().filter(|job| job.state == state).count()
    }

    /// The ids of the jobs not yet ended.
    fn unfinished(&self) -> Vec<u64> {
        self.jobs
            .iter()
            .filter(|(_, job)| !job.state.is_ended())
            .map(|(id, _)| *id)
            .collect()
    }

    fn cancel(&mut self, id: u64, timed_out: bool) {
        if let Some(job) = self.jobs.get_mut(&id) {
            if let (Some(process), false) = (&job.process, job.cancelled) {
                job.cancelled = true;
                job.timed_out = timed_out;
                process.do_send(Cancel);
            }
        }
    }

    /// Forgets the oldest finished jobs beyond `keep_finished`.
    fn trim_finished(&mut self) {
        let finished: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, job)| job.state.is_ended())
            .map(|(id, _)| *id)
            .collect();
        let excess = finished.len().saturating_sub(self.limits.keep_finished);
        for id in &finished[..excess] {
            self.jobs.remove(id);
        }
    }

    /// Submits `launch` to the pool, unless the pool (as it was just
    /// before) is full.
    fn submit(
        &mut self,
        launch: Launch,
        pool: JobPool,
        ctx: &mut Context<Self>,
    ) -> Result<JobView, JobError> {
        if self.shutting_down {
            return Err(JobError::ShuttingDown);
        }
        // Every submitted job not yet ended holds a place, running or
        // waiting: at most max_running + max_queued in all.
        if pool.running + pool.queued >= self.limits.max_running + self.limits.max_queued {
            return Err(JobError::QueueFull {
                running: pool.running,
                queued: pool.queued,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let relay = Relay {
            id,
            jobs: ctx.address(),
        }
        .start();
        let submitted = launch
            .popen()
            .subscribe(relay.clone().recipient())
            .start_listener(relay.clone().recipient())
            .exit_listener(relay.recipient())
            .submit();
        let mut job = Job {
            launch,
            state: State::Queued,
            pid: None,
            submitted_at: SystemTime::now(),
            started: None,
            ended: None,
            returncode: None,
            usage: None,
            output_complete: true,
            cancelled: false,
            timed_out: false,
            error: None,
            output: OutputBuffer::new(self.limits.output_limit),
            process: None,
            timer: None,
            clients: Vec::new(),
            slots: Arc::new(()),
        };
        match submitted {
            Ok(process) => {
                log::info!("job {id}: {:?} queued", job.launch.argv);
                job.process = Some(process);
            }
            // Only an invalid description or a missing arbiter fail here;
            // a program that cannot run fails when its turn comes.
            Err(err) => {
                log::warn!("job {id}: {err}");
                job.state = State::FailedToStart;
                job.error = Some(err.to_string());
                job.ended = Some((SystemTime::now(), Instant::now()));
            }
        }
        let view = job.view(id);
        self.jobs.insert(id, job);
        self.trim_finished();
        Ok(view)
    }
}

impl Actor for Jobs {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if tokio::runtime::Handle::try_current().is_err() {
            // Started as its System is torn down (actix polls an actor once
            // when it drops it): there is no timer to set any more.
            return;
        }
        // Sent before any job is submitted (both from this actor, in order:
        // `send` queues the request at once).
        let set = ProcessSupervisor::get().send(SetJobLimits {
            max_jobs: Some(self.limits.max_running),
            max_load: self.limits.max_load,
        });
        ctx.spawn(
            async move {
                if let Ok(Err(err)) = set.await {
                    log::error!("job pool limits refused: {err}");
                }
            }
            .into_actor(self),
        );
        ctx.run_interval(self.limits.keep_alive, |act, _ctx| {
            for job in act.jobs.values_mut() {
                job.broadcast(&Event::KeepAlive);
            }
        });
    }
}

impl Handler<StartJob> for Jobs {
    type Result = AtomicResponse<Self, Result<JobView, JobError>>;

    fn handle(&mut self, StartJob(launch): StartJob, _ctx: &mut Context<Self>) -> Self::Result {
        // The pool's count includes every job submitted before this one
        // (our `submit`s reach its mailbox first), and the atomic response
        // holds back the next StartJob until this one is submitted: two
        // requests cannot both take the last place.
        let pool = ProcessSupervisor::get().send(GetJobPool);
        AtomicResponse::new(Box::pin(pool.into_actor(self).map(
            move |pool, act, ctx| match pool {
                Ok(pool) => act.submit(launch, pool, ctx),
                // The supervisor is gone with its System.
                Err(_) => Err(JobError::ShuttingDown),
            },
        )))
    }
}

impl Handler<ListJobs> for Jobs {
    type Result = MessageResult<ListJobs>;

    fn handle(&mut self, _msg: ListJobs, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.jobs.iter().map(|(id, job)| job.view(*id)).collect())
    }
}

impl Handler<GetJob> for Jobs {
    type Result = Result<JobView, JobError>;

    fn handle(&mut self, GetJob(id): GetJob, _ctx: &mut Context<Self>) -> Self::Result {
        let job = self.jobs.get(&id).ok_or(JobError::UnknownId(id))?;
        Ok(job.view(id))
    }
}

impl Handler<CancelJob> for Jobs {
    type Result = Result<JobView, JobError>;

    fn handle(&mut self, CancelJob(id): CancelJob, _ctx: &mut Context<Self>) -> Self::Result {
        let job = self.jobs.get(&id).ok_or(JobError::UnknownId(id))?;
        if job.state.is_ended() {
            return Err(JobError::AlreadyEnded {
                id,
                state: job.state,
            });
        }
        self.cancel(id, false);
        let job = self.jobs.get(&id).ok_or(JobError::UnknownId(id))?;
        Ok(job.view(id))
    }
}

impl Handler<WatchJob> for Jobs {
    type Result = Result<Watch, JobError>;

    fn handle(
        &mut self,
        WatchJob { id, from }: WatchJob,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        let limits = &self.limits;
        let job = self.jobs.get_mut(&id).ok_or(JobError::UnknownId(id))?;
        // The cap comes first, for every stream: a replay of a finished
        // job's output holds a place as a live stream does.
        if job.watchers() >= limits.max_watchers {
            return Err(JobError::TooManyWatchers {
                id,
                limit: limits.max_watchers,
            });
        }
        let slot = WatchSlot(job.slots.clone());
        // Replay and subscription happen in one handler: no output can
        // arrive in between, so the client misses none and sees none twice.
        let mut replay = job.output.replay(from);
        if job.state.is_ended() {
            replay.push(Event::Exit(Box::new(job.view(id))));
            return Ok(Watch {
                replay,
                live: None,
                slot,
            });
        }
        // A queued job's watchers get keep-alives until its output comes.
        job.clients.retain(|client| !client.is_closed());
        let (sender, receiver) = mpsc::channel(limits.client_queue);
        job.clients.push(sender);
        Ok(Watch {
            replay,
            live: Some(receiver),
            slot,
        })
    }
}

impl Handler<Shutdown> for Jobs {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        let (running, queued) = (self.count(State::Running), self.count(State::Queued));
        if running > 0 {
            log::info!("cancelling {running} running job(s)");
        }
        if queued > 0 {
            log::info!("cancelling {queued} queued job(s)");
        }
        for id in self.unfinished() {
            self.cancel(id, false);
        }
        let (done, drained) = oneshot::channel();
        if self.unfinished().is_empty() {
            let _ = done.send(());
        } else {
            self.drained.push(done);
        }
        Box::pin(async move {
            let _ = drained.await;
        })
    }
}

impl Handler<JobStarted> for Jobs {
    type Result = ();

    fn handle(&mut self, JobStarted { id, pid }: JobStarted, ctx: &mut Context<Self>) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let (Some(pid), State::Queued) = (pid, job.state) else {
            // It ended without running: its JobEnded says how.
            return;
        };
        log::info!("job {id}: started as pid {pid}");
        job.state = State::Running;
        job.pid = Some(pid);
        job.started = Some((SystemTime::now(), Instant::now()));
        // The timeout counts from the start, not from the submission: time
        // spent in the queue is not the job's own.
        let timeout = job.launch.timeout;
        job.timer = Some(ctx.run_later(timeout, move |act, _ctx| act.cancel(id, true)));
    }
}

impl Handler<JobOutput> for Jobs {
    type Result = ();

    fn handle(&mut self, JobOutput { id, data }: JobOutput, _ctx: &mut Context<Self>) {
        if let Some(job) = self.jobs.get_mut(&id) {
            let offset = job.output.total;
            job.output.push(&data);
            job.broadcast(&Event::Output { offset, data });
        }
    }
}

impl Handler<JobEnded> for Jobs {
    type Result = ();

    fn handle(&mut self, JobEnded { id, exited }: JobEnded, ctx: &mut Context<Self>) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.state = match (job.cancelled, job.started) {
            (true, _) => State::Cancelled,
            (false, Some(_)) => State::Exited,
            (false, None) => {
                // The pool keeps why the spawn failed on the task's handle.
                job.error = job
                    .process
                    .as_ref()
                    .and_then(|p| p.spawn_error())
                    .map(|e| e.to_string());
                State::FailedToStart
            }
        };
        job.returncode = Some(exited.returncode);
        job.usage = exited.usage;
        job.output_complete = exited.output_complete;
        job.ended = Some((SystemTime::now(), Instant::now()));
        // Dropping the handle lets the process actor (and its relay) stop.
        job.process = None;
        if let Some(timer) = job.timer.take() {
            ctx.cancel_future(timer);
        }
        log::info!(
            "job {id}: {} with return code {}",
            job.state,
            exited.returncode
        );
        let exit = Event::Exit(Box::new(job.view(id)));
        job.broadcast(&exit);
        // Closing the channels ends every client's stream after the exit.
        job.clients.clear();
        self.trim_finished();
        if self.unfinished().is_empty() {
            for done in self.drained.drain(..) {
                let _ = done.send(());
            }
        }
    }
}
// ---------------------------------------------------------------------
// The relay: one per job
// ---------------------------------------------------------------------

/// Tags one process's start, chunks and exit with its job id for the
/// registry.
///
/// It holds each chunk, and with it the reader's credit, until the registry
/// has taken the bytes: a job that writes faster than the registry keeps up
/// waits in `write()`, and the registry's mailbox stays small. The process
/// sends `Started` before its reader sends any chunk, so the registry sees
/// a job running before it sees its output.
#[derive(Debug)]
struct Relay {
    id: u64,
    jobs: Addr<Jobs>,
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<Started> for Relay {
    type Result = ();

    fn handle(&mut self, started: Started, _ctx: &mut Context<Self>) {
        self.jobs.do_send(JobStarted {
            id: self.id,
            pid: started.pid,
        });
    }
}

impl Handler<Chunk> for Relay {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, ctx: &mut Context<Self>) {
        let delivered = self.jobs.send(JobOutput {
            id: self.id,
            data: chunk.data.clone(),
        });
        // `wait` holds back this relay's next message (a chunk, or the exit)
        // until the registry has this one, so the order is kept.
        ctx.wait(
            async move {
                let _ = delivered.await;
                drop(chunk);
            }
            .into_actor(self),
        );
    }
}

impl Handler<Exited> for Relay {
    type Result = ();

    fn handle(&mut self, exited: Exited, _ctx: &mut Context<Self>) {
        self.jobs.do_send(JobEnded {
            id: self.id,
            exited,
        });
    }
}

/// `time` as RFC 3339 in UTC, to the millisecond (jiff's `Timestamp`;
/// a time before 1970 or past jiff's range shows as the epoch).
fn rfc3339(time: SystemTime) -> String {
    let at = jiff::Timestamp::try_from(time).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{at:.3}")
}
