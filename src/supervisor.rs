//! The [`ProcessSupervisor`]: the cancel timers and the job pool, one per
//! actix System.
//!
//! On [`Cancel`](crate::Cancel) a process actor hands its child to the
//! supervisor, which runs the cancel escalation (`escalation.rs` says what
//! each process gets, and when) on its timers. When the System stops, the
//! escalations still under way are finished at once, blocking, by the same
//! state machine. A task released by the escalation whose child has still
//! not exited, and whose actor stops, is adopted: the supervisor reaps the
//! child whenever it finally exits.
//!
//! # Job pool
//! Tasks submitted with [`Popen::submit`](crate::Popen::submit) go through
//! the supervisor's job pool (portage's `--jobs` and `--load-average`):
//! they start in submission order, at most `max_jobs` at once, and while
//! the 1-minute load average is at or above `max_load` no new task starts
//! unless none is running. A task cancelled while queued ends with
//! [`ReturnCode::CANCELLED`](crate::ReturnCode::CANCELLED) without ever
//! running (its start listeners still hear of it), and frees its place in
//! the queue. Without limits ([`SetJobLimits`] never sent) submitted tasks
//! start at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix::WeakAddr;

use crate::escalation::{Next, Tracked};
use crate::process::ProcessHandle;
use crate::sys::proc::Groups;
use crate::SpawnError;

/// Asks the supervisor to run the cancel escalation on a task.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Terminate {
    pub(crate) task: Arc<Tracked>,
    /// Told when the escalation gave up on the task.
    pub(crate) release: Recipient<Release>,
}

/// Asks the supervisor to reap a child whose task has ended and whose
/// actor is stopping, whenever the child exits.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Adopt(pub(crate) Arc<Tracked>);

/// Tells a process actor that the escalation gave up: the orphan warning
/// was logged, and the task must end without waiting any longer.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct Release;

/// The actor that owns the cancel timers and the job pool (one per actix
/// System).
///
/// [`ProcessSupervisor::get`] finds (or starts) the current System's;
/// users need not start it, and talk to it only to set the pool's limits
/// ([`SetJobLimits`]) or read its state ([`GetJobPool`]). See the module
/// documentation for what it does to the OS processes.
///
/// ```
/// use actix_popen::{AsyncWait, Popen, ProcessSupervisor, SetJobLimits};
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // At most two children at once, like `emerge --jobs 2`.
/// ProcessSupervisor::get()
///     .send(SetJobLimits { max_jobs: Some(2), max_load: None })
///     .await?;
/// let tasks: Vec<_> = (0..5)
///     .map(|_| Popen::new("true").submit())
///     .collect::<Result<_, _>>()?;
/// for task in tasks {
///     assert!(task.send(AsyncWait).await??.success());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct ProcessSupervisor {
    limits: SetJobLimits,
    queue: VecDeque<ProcessHandle>,
    running: usize,
    load_retry: Option<SpawnHandle>,
    /// Escalations under way, finished at once if the supervisor is
    /// dropped with its System.
    escalations: Vec<Arc<Tracked>>,
    /// Its own address, which keeps it running for as long as its System
    /// runs; dropped with it when the System's arbiter is torn down.
    _this: Option<Addr<ProcessSupervisor>>,
}

/// Each System's supervisor, held weakly: the System owns it (through its
/// own `this`), so nothing of a dropped System stays behind. (actix's
/// `SystemService` registry keeps every System's services for the life of
/// the process, and with them that System's reactor fds.)
static SUPERVISORS: Mutex<Vec<(usize, WeakAddr<ProcessSupervisor>)>> = Mutex::new(Vec::new());

impl ProcessSupervisor {
    /// The current System's supervisor, started on the System's arbiter
    /// the first time it is asked for.
    ///
    /// # Panics
    /// Outside a running actix System (as every actix `start` does).
    pub fn get() -> Addr<ProcessSupervisor> {
        let system = System::current();
        let mut supervisors = SUPERVISORS.lock().unwrap_or_else(|e| e.into_inner());
        supervisors.retain(|(_, weak)| weak.upgrade().is_some());
        if let Some(addr) = supervisors
            .iter()
            .find(|(id, _)| *id == system.id())
            .and_then(|(_, weak)| weak.upgrade())
        {
            return addr;
        }
        let addr = ProcessSupervisor::start_in_arbiter(&system.arbiter().clone(), |ctx| {
            let mut supervisor = ProcessSupervisor::default();
            supervisor._this = Some(ctx.address());
            supervisor
        });
        supervisors.push((system.id(), addr.downgrade()));
        addr
    }
}

impl Actor for ProcessSupervisor {
    type Context = Context<Self>;
}

impl Drop for ProcessSupervisor {
    fn drop(&mut self) {
        let pending: Vec<_> = std::mem::take(&mut self.escalations)
            .into_iter()
            .filter(|task| task.escalating())
            .collect();
        crate::shutdown::finish_now(pending);
    }
}

/// Request to the [`ProcessSupervisor`]: set the job pool's limits
/// (portage's `--jobs` and `--load-average`). Queued tasks start at once if
/// the new limits allow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Message)]
#[rtype(result = "()")]
pub struct SetJobLimits {
    /// The most submitted tasks running at once; `None` for no limit.
    pub max_jobs: Option<usize>,
    /// No new task starts while the 1-minute load average is at or above
    /// this, unless none is running; `None` for no limit.
    pub max_load: Option<f64>,
}

/// Request to the [`ProcessSupervisor`]: how many submitted tasks run and
/// how many wait.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "JobPool")]
pub struct GetJobPool;

/// The state of the job pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, actix::MessageResponse)]
pub struct JobPool {
    /// Submitted tasks started and not yet ended.
    pub running: usize,
    /// Submitted tasks waiting for a place (a task cancelled while it
    /// waited is not counted).
    pub queued: usize,
}

/// Puts a prepared task in the job pool's queue.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Enqueue(pub(crate) ProcessHandle);

/// A place in the pool was freed.
#[derive(Message)]
#[rtype(result = "()")]
struct Freed;

/// The 1-minute load average, from /proc/loadavg.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl ProcessSupervisor {
    fn can_start(&self) -> bool {
        if self.limits.max_jobs.is_some_and(|max| self.running >= max) {
            return false;
        }
        match self.limits.max_load {
            // As portage: with nothing running, one task starts whatever
            // the load, so the queue always moves.
            Some(max) if self.running > 0 => load_average().is_none_or(|load| load < max),
            _ => true,
        }
    }

    /// Starts queued tasks while the limits allow.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        while !self.queue.is_empty() {
            if !self.can_start() {
                if self.limits.max_jobs.is_none_or(|max| self.running < max)
                    && self.load_retry.is_none()
                {
                    // Held back by the load alone: look again in a second.
                    self.load_retry = Some(ctx.run_later(Duration::from_secs(1), |act, ctx| {
                        act.load_retry = None;
                        act.dispatch(ctx);
                    }));
                }
                return;
            }
            let Some(task) = self.queue.pop_front() else {
                return;
            };
            if task.poll().is_some() {
                // Cancelled while it waited: it never takes a place.
                continue;
            }
            self.running += 1;
            let me = ctx.address();
            // The place is held from the start request until the task ends
            // (or its start fails: it was cancelled while queued).
            actix::spawn(async move {
                match task.send(crate::messages::Start).await {
                    Ok(Ok(_pid)) => {
                        let _ = task.send(crate::messages::AsyncWait).await;
                    }
                    // The task ended with 127 or 126; nobody else hears why.
                    Ok(Err(err)) if !matches!(err, SpawnError::AlreadyStarted { .. }) => {
                        log::error!("job pool: {err}");
                    }
                    _ => {}
                }
                me.do_send(Freed);
            });
        }
    }
}

impl Handler<SetJobLimits> for ProcessSupervisor {
    type Result = ();

    fn handle(&mut self, limits: SetJobLimits, ctx: &mut Context<Self>) {
        self.limits = limits;
        self.dispatch(ctx);
    }
}

impl Handler<GetJobPool> for ProcessSupervisor {
    type Result = JobPool;

    fn handle(&mut self, _msg: GetJobPool, _ctx: &mut Context<Self>) -> JobPool {
        // Tasks cancelled while they waited leave the queue now.
        self.queue.retain(|task| task.poll().is_none());
        JobPool {
            running: self.running,
            queued: self.queue.len(),
        }
    }
}

impl Handler<Enqueue> for ProcessSupervisor {
    type Result = ();

    fn handle(&mut self, Enqueue(task): Enqueue, ctx: &mut Context<Self>) {
        self.queue.push_back(task);
        self.dispatch(ctx);
    }
}

impl Handler<Freed> for ProcessSupervisor {
    type Result = ();

    fn handle(&mut self, _msg: Freed, ctx: &mut Context<Self>) {
        self.running = self.running.saturating_sub(1);
        self.dispatch(ctx);
    }
}

impl ProcessSupervisor {
    /// Steps `task`'s escalation at `at`, and again until it ends.
    fn escalate_at(
        &mut self,
        task: Arc<Tracked>,
        release: Recipient<Release>,
        at: Instant,
        ctx: &mut Context<Self>,
    ) {
        ctx.run_later(
            at.saturating_duration_since(Instant::now()),
            move |act, ctx| {
                match task.step(&mut Groups::default()) {
                    Next::Wait(at) => return act.escalate_at(task, release, at, ctx),
                    Next::Release => release.do_send(Release),
                    Next::Done => {}
                }
                act.escalations.retain(|t| !Arc::ptr_eq(t, &task));
            },
        );
    }
}

impl Handler<Terminate> for ProcessSupervisor {
    type Result = ();

    fn handle(&mut self, Terminate { task, release }: Terminate, ctx: &mut Context<Self>) {
        if let Some(at) = task.begin() {
            self.escalations.push(task.clone());
            self.escalate_at(task, release, at, ctx);
        }
    }
}

impl Handler<Adopt> for ProcessSupervisor {
    type Result = ();

    fn handle(&mut self, Adopt(task): Adopt, ctx: &mut Context<Self>) {
        let watch = match task.child.watch() {
            Ok(Some(pidfd)) => pidfd,
            Ok(None) => return,
            Err(err) => {
                log::error!("cannot watch pid {}: {err}", task.child.pid());
                return;
            }
        };
        ctx.spawn(
            async move {
                loop {
                    let Ok(mut guard) = watch.readable().await else {
                        return;
                    };
                    match task.child.poll_exit() {
                        Ok(None) => guard.clear_ready(),
                        _ => break,
                    }
                }
                log::debug!("adopted pid {} exited and was reaped", task.child.pid());
                crate::shutdown::forget_if_reaped(&task);
            }
            .into_actor(self),
        );
    }
}
