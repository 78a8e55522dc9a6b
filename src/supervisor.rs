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
//! unless none is running. A task cancelled while queued ends with
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
use crate::SpawnError;

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
