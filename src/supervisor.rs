//! The [`ProcessSupervisor`]: timers, the cancel escalation, and the
//! cleanup of children when their arbiter stops.
//!
//! On [`Cancel`](crate::Cancel) a process actor hands its child to the
//! supervisor, which sends SIGTERM at once. If the task has not ended after
//! the cancel timeout, it sends SIGKILL; if the task has still not ended
//! after another cancel timeout, it logs an orphan warning (portage's
//! `_orphan_process_warn`) and tells the actor to release the task. EPERM
//! from `kill()` is logged at error level (portage bug #358211); ESRCH
//! means the child is already gone and is ignored.
//!
//! # Job pool
//! Tasks submitted with [`Popen::submit`](crate::Popen::submit) go through
//! the supervisor's job pool (portage's `--jobs` and `--load-average`):
//! they start in submission order, at most `max_jobs` at once, and while
//! the 1-minute load average is at or above `max_load` no new task starts
//! unless none is running (a start held back by the load looks again every
//! second).
//!
//! The load average takes about a minute to show the tasks just started,
//! so under `max_load` the pool also spaces its starts, as portage's
//! `_job_delay` does: while `max_load` is set and `jobs` submitted tasks
//! run, the next task starts no sooner than
//!
//! ```text
//! delay = min(JOB_DELAY_FACTOR × jobs ^ JOB_DELAY_EXPONENT, JOB_DELAY_MAX)
//!       = min(1 s × jobs ^ 1.5, 5 s)
//! ```
//!
//! after the previous start: 1 s with one task running, 2.8 s with two,
//! 5 s with three or more. With no task running a task starts at once, so
//! the queue always moves; without `max_load` starts are not spaced.
//! (portage took factor 1 and exponent 1.5 in 2009; since 2012 it scales
//! its 5 s maximum by the load over `max_load` instead, which spaces
//! nothing while the load is still near 0, the very moment many tasks
//! would all start at once. The number of running tasks is the load still
//! to come, so it is what the delay follows here.)
//!
//! A task cancelled while queued ends with
//! [`ReturnCode::CANCELLED`](crate::ReturnCode::CANCELLED) without ever
//! running (its start listeners still hear of it), and frees its place in
//! the queue. Without limits ([`SetJobLimits`] never sent) submitted tasks
//! start at once.
//!
//! When an arbiter stops (and so when the actix System stops), the actors
//! it ran are dropped. The first process actor dropped with a child still
//! running cancels every running child of that arbiter at once, the same
//! way (SIGTERM to each group, SIGKILL after the cancel timeout) but
//! synchronously, since no event loop is left to run timers. When a
//! group's leader has exited, the rest of its group gets SIGKILL before
//! the leader is reaped. Every child is reaped before the drop returns, so
//! nothing is left behind, not even a zombie (a child stuck in the kernel
//! even after SIGKILL gets the orphan warning).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix::WeakAddr;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use crate::process::ProcessHandle;
use crate::sys::child::{Child, Delivery};
use crate::{JobLimitsError, SpawnError};

/// What the escalation needs of a task: a way to signal it and to know
/// whether it has ended. A trait so that the state machine can be tested
/// with a mock (a child whose uid changed, one that never dies).
pub(crate) trait Kill: Send + Sync + 'static {
    /// Sends `signal` to the task's child (or its group).
    fn send_signal(&self, signal: Signal) -> io::Result<Delivery>;
    /// Whether the task has ended: nothing more to signal.
    fn is_finished(&self) -> bool;
    /// Names the task in log messages.
    fn describe(&self) -> String;
}

/// Asks the supervisor to run the cancel escalation on a task.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Terminate {
    pub(crate) target: Arc<dyn Kill>,
    pub(crate) cancel_timeout: Duration,
    /// Told when the escalation gave up on the task.
    pub(crate) release: Recipient<Release>,
}

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
///     .await??;
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
    /// When the pool last started a task.
    previous_start: Option<Instant>,
    /// The timer that looks at the queue again, after a start was held
    /// back by the load or the spacing.
    retry: Option<SpawnHandle>,
    pacing: Pacing,
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
            ProcessSupervisor {
                _this: Some(ctx.address()),
                ..ProcessSupervisor::default()
            }
        });
        supervisors.push((system.id(), addr.downgrade()));
        addr
    }
}

impl Actor for ProcessSupervisor {
    type Context = Context<Self>;
}

/// Request to the [`ProcessSupervisor`]: set the job pool's limits
/// (portage's `--jobs` and `--load-average`). Queued tasks start at once if
/// the new limits allow.
///
/// With `max_load` set, starts are also spaced while tasks run, since the
/// load average takes about a minute to show the tasks just started: with
/// `jobs` submitted tasks running, the next start comes no sooner than
/// `min(1 s × jobs ^ 1.5, 5 s)` after the previous one (portage's
/// `_job_delay`): 1 s with one running, 2.8 s with two, 5 s with three or
/// more. With none running, a task starts at once.
///
/// # Errors
/// [`JobLimitsError`] for a `max_jobs` of 0 or a `max_load` that is not a
/// finite number above 0; the limits in force before stay in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Message)]
#[rtype(result = "Result<(), JobLimitsError>")]
pub struct SetJobLimits {
    /// The most submitted tasks running at once; `None` for no limit.
    pub max_jobs: Option<usize>,
    /// No new task starts while the 1-minute load average is at or above
    /// this, unless none is running, and starts are spaced while tasks
    /// run; `None` for neither.
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

/// The start spacing's unit (portage's `_job_delay_factor`): the delay
/// with one task running.
const JOB_DELAY_FACTOR: Duration = Duration::from_secs(1);

/// How fast the spacing grows with the running tasks (portage's
/// `_job_delay_exp`).
const JOB_DELAY_EXPONENT: f64 = 1.5;

/// The longest spacing (portage's `_job_delay_max`).
const JOB_DELAY_MAX: Duration = Duration::from_secs(5);

/// How long a start held back by the load waits before the load is read
/// again.
const LOAD_RECHECK: Duration = Duration::from_secs(1);

/// Where the pool reads the load average and how it spaces starts under
/// `max_load`: the host's /proc/loadavg and portage's constants, except in
/// unit tests, which feed a fixed load and shorter delays.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    load_average: fn() -> Option<f64>,
    delay_factor: Duration,
    delay_max: Duration,
}

impl Default for Pacing {
    fn default() -> Pacing {
        Pacing {
            load_average,
            delay_factor: JOB_DELAY_FACTOR,
            delay_max: JOB_DELAY_MAX,
        }
    }
}

impl Pacing {
    /// How long after the previous start the next one may start while
    /// `running` tasks run: `delay_factor × running ^ 1.5`, at most
    /// `delay_max` (see the module docs).
    fn start_delay(&self, running: usize) -> Duration {
        let seconds = self.delay_factor.as_secs_f64() * (running as f64).powf(JOB_DELAY_EXPONENT);
        Duration::from_secs_f64(seconds.min(self.delay_max.as_secs_f64()))
    }
}

/// What keeps the next queued task from starting now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// `max_jobs` tasks run: the next start comes when one ends.
    Full,
    /// The load, or the spacing since the previous start: look again then.
    Wait(Duration),
}

impl ProcessSupervisor {
    /// A supervisor with its own load source and spacing, for unit tests.
    #[cfg(test)]
    fn with_pacing(pacing: Pacing) -> ProcessSupervisor {
        ProcessSupervisor {
            pacing,
            ..ProcessSupervisor::default()
        }
    }

    /// Why the next queued task may not start at `now`, if it may not.
    fn hold(&self, now: Instant) -> Option<Hold> {
        if self.limits.max_jobs.is_some_and(|max| self.running >= max) {
            return Some(Hold::Full);
        }
        let max_load = self.limits.max_load?;
        if self.running == 0 {
            // As portage: with nothing running, one task starts whatever
            // the load, so the queue always moves.
            return None;
        }
        if (self.pacing.load_average)().is_some_and(|load| load >= max_load) {
            return Some(Hold::Wait(LOAD_RECHECK));
        }
        // The load average has not seen the tasks started lately yet:
        // space the starts, the more so the more run.
        let since = self
            .previous_start
            .map_or(Duration::MAX, |at| now.saturating_duration_since(at));
        let left = self.pacing.start_delay(self.running).saturating_sub(since);
        (!left.is_zero()).then_some(Hold::Wait(left))
    }

    /// Looks at the queue again after `wait`, instead of when any earlier
    /// timer said.
    fn retry_after(&mut self, wait: Duration, ctx: &mut Context<Self>) {
        if let Some(retry) = self.retry.take() {
            ctx.cancel_future(retry);
        }
        self.retry = Some(ctx.run_later(wait, |act, ctx| {
            act.retry = None;
            act.dispatch(ctx);
        }));
    }

    /// Starts queued tasks while the limits allow.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        while !self.queue.is_empty() {
            match self.hold(Instant::now()) {
                // A task's end frees a place and dispatches again.
                Some(Hold::Full) => return,
                Some(Hold::Wait(wait)) => {
                    self.retry_after(wait, ctx);
                    return;
                }
                None => {}
            }
            let Some(task) = self.queue.pop_front() else {
                return;
            };
            if task.poll().is_some() {
                // Cancelled while it waited: it never takes a place.
                continue;
            }
            self.running += 1;
            self.previous_start = Some(Instant::now());
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

impl SetJobLimits {
    fn validate(&self) -> Result<(), JobLimitsError> {
        if self.max_jobs == Some(0) {
            return Err(JobLimitsError::ZeroJobs);
        }
        match self.max_load {
            Some(max_load) if !(max_load.is_finite() && max_load > 0.0) => {
                Err(JobLimitsError::InvalidLoad { max_load })
            }
            _ => Ok(()),
        }
    }
}

impl Handler<SetJobLimits> for ProcessSupervisor {
    type Result = Result<(), JobLimitsError>;

    fn handle(&mut self, limits: SetJobLimits, ctx: &mut Context<Self>) -> Self::Result {
        limits.validate()?;
        self.limits = limits;
        self.dispatch(ctx);
        Ok(())
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

fn send_logged(target: &dyn Kill, signal: Signal) -> Delivery {
    match target.send_signal(signal) {
        Ok(delivery) => delivery,
        Err(err) if err.raw_os_error() == Some(Errno::EPERM as i32) => {
            log::error!(
                "cannot send {signal} to {}: {err} (EPERM)",
                target.describe()
            );
            Delivery::Gone
        }
        Err(err) => {
            log::error!("cannot send {signal} to {}: {err}", target.describe());
            Delivery::Gone
        }
    }
}

impl Handler<Terminate> for ProcessSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Terminate, ctx: &mut Context<Self>) {
        let Terminate {
            target,
            cancel_timeout,
            release,
        } = msg;
        if target.is_finished() {
            return;
        }
        log::debug!("cancel: SIGTERM to {}", target.describe());
        send_logged(&*target, Signal::SIGTERM);
        ctx.run_later(cancel_timeout, move |_, ctx| {
            if target.is_finished() {
                return;
            }
            log::debug!("cancel timeout: SIGKILL to {}", target.describe());
            send_logged(&*target, Signal::SIGKILL);
            ctx.run_later(cancel_timeout, move |_, _| {
                if target.is_finished() {
                    return;
                }
                log::warn!(
                    "{} was sent SIGKILL {:?} ago and has not ended; it may be left as an orphan",
                    target.describe(),
                    cancel_timeout
                );
                release.do_send(Release);
            });
        });
    }
}

/// A running child as the shutdown cleanup sees it.
pub(crate) struct Live {
    pub(crate) child: Arc<Child>,
    pub(crate) cancel_timeout: Duration,
    pub(crate) name: String,
}

/// Every running child, by the arbiter thread whose actor owns it.
static LIVE: Mutex<Option<HashMap<ThreadId, HashMap<u32, Live>>>> = Mutex::new(None);

fn with_live<R>(f: impl FnOnce(&mut HashMap<ThreadId, HashMap<u32, Live>>) -> R) -> R {
    let mut guard = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// Records a running child of the current thread's arbiter.
pub(crate) fn register(live: Live) {
    let thread = std::thread::current().id();
    with_live(|map| {
        map.entry(thread)
            .or_default()
            .insert(live.child.pid(), live)
    });
}

/// Forgets a child whose task has ended and which was reaped.
pub(crate) fn unregister(thread: ThreadId, pid: u32) {
    with_live(|map| {
        if let Some(children) = map.get_mut(&thread) {
            children.remove(&pid);
            if children.is_empty() {
                map.remove(&thread);
            }
        }
    });
}

/// Cancels and reaps every child registered by `thread`, blocking until
/// they are gone (at most two cancel timeouts). Called when that thread's
/// arbiter is being torn down.
pub(crate) fn shutdown_thread(thread: ThreadId) {
    let children: Vec<Live> = with_live(|map| map.remove(&thread))
        .map(|children| children.into_values().collect())
        .unwrap_or_default();
    if !children.is_empty() {
        log::debug!(
            "arbiter stopping: cancelling {} running children",
            children.len()
        );
        terminate_blocking(children);
    }
}

/// Cancels and reaps one child now, blocking (at most two cancel
/// timeouts): for a child whose actor can no longer watch it.
pub(crate) fn terminate_now(live: Live) {
    terminate_blocking(vec![live]);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Terminated(Instant),
    Killed(Instant),
    Done,
}

/// The escalation, run synchronously for many children at once: SIGTERM
/// to all, then wait on all their pidfds together.
///
/// A child already reaped (its grandchildren still hold our output) has no
/// pidfd event left to wait for: its group is checked every few
/// milliseconds instead, and gets SIGKILL at the deadline like the rest.
fn terminate_blocking(children: Vec<Live>) {
    const GROUP_CHECK: Duration = Duration::from_millis(20);
    let now = Instant::now();
    let mut stages: Vec<Stage> = children
        .iter()
        .map(|live| {
            let _ = live.child.signal(Signal::SIGTERM, true);
            Stage::Terminated(now + live.cancel_timeout)
        })
        .collect();
    loop {
        let now = Instant::now();
        for (live, stage) in children.iter().zip(stages.iter_mut()) {
            let leader_reaped = live.child.returncode().is_some();
            if leader_reaped && !live.child.group_alive() {
                *stage = Stage::Done;
                continue;
            }
            match *stage {
                Stage::Terminated(deadline) if now >= deadline => {
                    let _ = live.child.signal(Signal::SIGKILL, true);
                    // A reaped leader's grandchildren are not ours to reap.
                    *stage = if leader_reaped {
                        Stage::Done
                    } else {
                        Stage::Killed(now + live.cancel_timeout)
                    };
                }
                Stage::Killed(deadline) if now >= deadline => {
                    log::warn!(
                        "{} (pid {}) was sent SIGKILL and has not exited; it is left as an orphan",
                        live.name,
                        live.child.pid()
                    );
                    *stage = Stage::Done;
                }
                _ => {}
            }
        }
        let pending: Vec<usize> = (0..children.len())
            .filter(|&i| stages[i] != Stage::Done)
            .collect();
        let Some(mut deadline) = pending
            .iter()
            .filter_map(|&i| match stages[i] {
                Stage::Terminated(d) | Stage::Killed(d) => Some(d),
                Stage::Done => None,
            })
            .min()
        else {
            return;
        };
        let watching: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|&i| children[i].child.returncode().is_none())
            .collect();
        if watching.len() < pending.len() {
            deadline = deadline.min(Instant::now() + GROUP_CHECK);
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        let mut fds: Vec<PollFd<'_>> = watching
            .iter()
            .map(|&i| PollFd::new(children[i].child.pidfd(), PollFlags::POLLIN))
            .collect();
        let millis = u16::try_from(timeout.as_millis().max(1)).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(err) => {
                log::error!("shutdown: poll on pidfds failed: {err}");
                return;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        for (&i, ready) in watching.iter().zip(ready) {
            if !ready {
                continue;
            }
            let child = &children[i].child;
            // The leader has exited but is not reaped yet, so its group id
            // cannot have been reused: take the rest of the group down too.
            let _ = child.signal(Signal::SIGKILL, false);
            match child.try_reap() {
                Ok(Some(code)) => {
                    log::debug!("shutdown: pid {} ended with {code}", child.pid());
                    stages[i] = Stage::Done;
                }
                Ok(None) => {}
                Err(err) => {
                    log::error!("shutdown: cannot reap pid {}: {err}", child.pid());
                    stages[i] = Stage::Done;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A task that records signals, refuses them with EPERM if asked, and
    /// ends only when told.
    struct Mock {
        signals: Mutex<Vec<Signal>>,
        eperm: bool,
        finish_on: Option<Signal>,
        finished: AtomicBool,
    }

    impl Mock {
        fn new(eperm: bool, finish_on: Option<Signal>) -> Arc<Mock> {
            Arc::new(Mock {
                signals: Mutex::new(Vec::new()),
                eperm,
                finish_on,
                finished: AtomicBool::new(false),
            })
        }
        fn signals(&self) -> Vec<Signal> {
            self.signals.lock().unwrap().clone()
        }
    }

    impl Kill for Mock {
        fn send_signal(&self, signal: Signal) -> io::Result<Delivery> {
            self.signals.lock().unwrap().push(signal);
            if self.eperm {
                return Err(Errno::EPERM.into());
            }
            if self.finish_on == Some(signal) {
                self.finished.store(true, Ordering::SeqCst);
            }
            Ok(Delivery::Sent)
        }
        fn is_finished(&self) -> bool {
            self.finished.load(Ordering::SeqCst)
        }
        fn describe(&self) -> String {
            "mock".to_owned()
        }
    }

    struct Released(Option<futures::channel::oneshot::Sender<Instant>>);
    impl Actor for Released {
        type Context = Context<Self>;
    }
    impl Handler<Release> for Released {
        type Result = ();
        fn handle(&mut self, _: Release, _: &mut Context<Self>) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(Instant::now());
            }
        }
    }

    async fn escalate(mock: Arc<Mock>, timeout: Duration) -> Option<Duration> {
        let (tx, rx) = futures::channel::oneshot::channel();
        let release = Released(Some(tx)).start().recipient();
        let started = Instant::now();
        ProcessSupervisor::default().start().do_send(Terminate {
            target: mock,
            cancel_timeout: timeout,
            release,
        });
        let deadline = actix::clock::sleep(timeout * 4);
        futures::pin_mut!(deadline);
        match futures::future::select(rx, deadline).await {
            futures::future::Either::Left((Ok(at), _)) => Some(at - started),
            _ => None,
        }
    }

    #[actix_rt::test]
    async fn unkillable_task_gets_term_then_kill_then_is_released() {
        let mock = Mock::new(false, None);
        let released = escalate(mock.clone(), Duration::from_millis(50)).await;
        let after = released.expect("the task was never released");
        assert!(
            after >= Duration::from_millis(100),
            "released after {after:?}"
        );
        assert_eq!(mock.signals(), vec![Signal::SIGTERM, Signal::SIGKILL]);
    }

    #[actix_rt::test]
    async fn eperm_is_logged_and_the_escalation_goes_on() {
        let mock = Mock::new(true, None);
        let released = escalate(mock.clone(), Duration::from_millis(50)).await;
        assert!(released.is_some());
        assert_eq!(mock.signals(), vec![Signal::SIGTERM, Signal::SIGKILL]);
    }

    #[actix_rt::test]
    async fn obedient_task_gets_only_sigterm() {
        let mock = Mock::new(false, Some(Signal::SIGTERM));
        assert_eq!(
            escalate(mock.clone(), Duration::from_millis(50)).await,
            None
        );
        assert_eq!(mock.signals(), vec![Signal::SIGTERM]);
    }

    #[test]
    fn start_delay_is_one_second_times_jobs_to_the_one_and_a_half_at_most_five() {
        let pacing = Pacing::default();
        let millis = |jobs| pacing.start_delay(jobs).as_millis();
        assert_eq!(millis(0), 0);
        assert_eq!(millis(1), 1000);
        assert_eq!(millis(2), 2828);
        assert_eq!(millis(3), 5000, "5.196 s, capped");
        assert_eq!(millis(usize::MAX), 5000);
    }

    /// Sends the time each start event arrives.
    struct StartTimes(futures::channel::mpsc::UnboundedSender<Instant>);
    impl Actor for StartTimes {
        type Context = Context<Self>;
    }
    impl Handler<crate::Started> for StartTimes {
        type Result = ();
        fn handle(&mut self, _: crate::Started, _: &mut Context<Self>) {
            let _ = self.0.unbounded_send(Instant::now());
        }
    }

    /// A pool with `pacing` and `limits`, and `count` tasks that run until
    /// cancelled, queued in it; the channel hears each start.
    async fn paced_pool(
        pacing: Pacing,
        limits: SetJobLimits,
        count: usize,
    ) -> (
        Addr<ProcessSupervisor>,
        Vec<ProcessHandle>,
        futures::channel::mpsc::UnboundedReceiver<Instant>,
    ) {
        let pool = ProcessSupervisor::with_pacing(pacing).start();
        pool.send(limits).await.unwrap().unwrap();
        let (tx, starts) = futures::channel::mpsc::unbounded();
        let times = StartTimes(tx).start();
        let tasks: Vec<ProcessHandle> = (0..count)
            .map(|_| {
                crate::Popen::new("sleep")
                    .arg("1000")
                    .stdin(crate::Input::Null)
                    .start_listener(times.clone().recipient())
                    .prepare()
                    .unwrap()
            })
            .collect();
        for task in &tasks {
            pool.do_send(Enqueue(task.clone()));
        }
        (pool, tasks, starts)
    }

    async fn next_start(
        starts: &mut futures::channel::mpsc::UnboundedReceiver<Instant>,
    ) -> Instant {
        use futures::StreamExt;
        tokio::time::timeout(Duration::from_secs(60), starts.next())
            .await
            .expect("no start within 60 s")
            .expect("the start recorder is gone")
    }

    async fn cancel_all(tasks: &[ProcessHandle]) {
        for task in tasks {
            task.do_send(crate::Cancel);
        }
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(60), task.send(crate::AsyncWait))
                .await
                .expect("a cancelled task did not end within 60 s")
                .unwrap()
                .unwrap();
        }
    }

    #[actix_rt::test]
    async fn under_max_load_starts_are_spaced_more_as_more_run() {
        // A load well below the limit: only the spacing holds starts back.
        let pacing = Pacing {
            load_average: || Some(0.5),
            delay_factor: Duration::from_millis(100),
            delay_max: Duration::from_millis(250),
        };
        let limits = SetJobLimits {
            max_jobs: None,
            max_load: Some(4.0),
        };
        let (_pool, tasks, mut starts) = paced_pool(pacing, limits, 4).await;
        let mut times = Vec::new();
        for _ in 0..4 {
            times.push(next_start(&mut starts).await);
        }
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        // 100 ms × 1, × 2^1.5 = 283 ms capped at 250 ms, then 250 ms; a
        // little slack for the spawns themselves.
        let slack = Duration::from_millis(20);
        for (gap, least) in gaps.iter().zip([100, 250, 250]) {
            assert!(
                *gap + slack >= Duration::from_millis(least),
                "gaps {gaps:?}: one is under {least} ms"
            );
        }
        cancel_all(&tasks).await;
    }

    #[actix_rt::test]
    async fn a_load_at_max_load_holds_starts_until_none_runs() {
        let pacing = Pacing {
            load_average: || Some(5.0),
            delay_factor: Duration::from_millis(10),
            delay_max: Duration::from_millis(10),
        };
        let limits = SetJobLimits {
            max_jobs: None,
            max_load: Some(5.0),
        };
        let (pool, tasks, mut starts) = paced_pool(pacing, limits, 2).await;
        next_start(&mut starts).await;
        // Well past the spacing, the second is still held by the load.
        actix::clock::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            pool.send(GetJobPool).await.unwrap(),
            JobPool {
                running: 1,
                queued: 1
            }
        );
        // With none running, it starts whatever the load.
        cancel_all(&tasks[..1]).await;
        next_start(&mut starts).await;
        cancel_all(&tasks[1..]).await;
    }

    #[actix_rt::test]
    async fn task_ending_on_sigkill_is_not_released() {
        let mock = Mock::new(false, Some(Signal::SIGKILL));
        assert_eq!(
            escalate(mock.clone(), Duration::from_millis(50)).await,
            None
        );
        assert_eq!(mock.signals(), vec![Signal::SIGTERM, Signal::SIGKILL]);
    }
}
