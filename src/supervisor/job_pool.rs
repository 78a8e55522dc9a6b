//! The job pool: tasks submitted with [`Popen::submit`](crate::Popen::submit)
//! wait in the [`ProcessSupervisor`]'s queue for their turn.
//!
//! Tasks submitted with [`Popen::submit`](crate::Popen::submit) go through
//! the supervisor's job pool (portage's `--jobs` and `--load-average`), and
//! so do pipelines submitted with
//! [`Pipeline::submit`](crate::Pipeline::submit), each as one task (one
//! job, as a build is in portage's pool, whatever it spawns): its stages
//! start together, and its place is freed once every stage has ended.
//! They start in submission order, at most `max_jobs` at once, and while
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

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::BoxFuture;

use super::ProcessSupervisor;
use crate::JobLimitsError;

/// A queued task, as the pool sees it (the process module implements it
/// for its handle, the pipeline module for a submitted pipeline).
pub(crate) trait Job: Send + 'static {
    /// Whether the task has ended (cancelled while it waited).
    fn ended(&self) -> bool;
    /// Starts the task; completes when it has ended (or could not start).
    fn run(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// The pool's state.
#[derive(Default)]
pub(super) struct Pool {
    limits: SetJobLimits,
    queue: VecDeque<Box<dyn Job>>,
    running: usize,
    /// When the pool last started a task.
    previous_start: Option<Instant>,
    /// The timer that looks at the queue again, after a start was held
    /// back by the load or the spacing.
    retry: Option<SpawnHandle>,
    pacing: Pacing,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("limits", &self.limits)
            .field("queued", &self.queue.len())
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
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
    /// Submitted tasks started and not yet ended (a submitted pipeline
    /// counts as one).
    pub running: usize,
    /// Submitted tasks waiting for a place (a task cancelled while it
    /// waited is not counted).
    pub queued: usize,
}

/// Puts a prepared task in the job pool's queue.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Enqueue(pub(crate) Box<dyn Job>);

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
            pool: Pool {
                pacing,
                ..Pool::default()
            },
            ..ProcessSupervisor::default()
        }
    }

    /// Why the next queued task may not start at `now`, if it may not.
    fn hold(&self, now: Instant) -> Option<Hold> {
        if self
            .pool
            .limits
            .max_jobs
            .is_some_and(|max| self.pool.running >= max)
        {
            return Some(Hold::Full);
        }
        let max_load = self.pool.limits.max_load?;
        if self.pool.running == 0 {
            // As portage: with nothing running, one task starts whatever
            // the load, so the queue always moves.
            return None;
        }
        if (self.pool.pacing.load_average)().is_some_and(|load| load >= max_load) {
            return Some(Hold::Wait(LOAD_RECHECK));
        }
        // The load average has not seen the tasks started lately yet:
        // space the starts, the more so the more run.
        let since = self
            .pool
            .previous_start
            .map_or(Duration::MAX, |at| now.saturating_duration_since(at));
        let left = self
            .pool
            .pacing
            .start_delay(self.pool.running)
            .saturating_sub(since);
        (!left.is_zero()).then_some(Hold::Wait(left))
    }

    /// Looks at the queue again after `wait`, instead of when any earlier
    /// timer said.
    fn retry_after(&mut self, wait: Duration, ctx: &mut Context<Self>) {
        if let Some(retry) = self.pool.retry.take() {
            ctx.cancel_future(retry);
        }
        self.pool.retry = Some(ctx.run_later(wait, |act, ctx| {
            act.pool.retry = None;
            act.dispatch(ctx);
        }));
    }

    /// Starts queued tasks while the limits allow.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        while !self.pool.queue.is_empty() {
            match self.hold(Instant::now()) {
                // A task's end frees a place and dispatches again.
                Some(Hold::Full) => return,
                Some(Hold::Wait(wait)) => {
                    self.retry_after(wait, ctx);
                    return;
                }
                None => {}
            }
            let Some(task) = self.pool.queue.pop_front() else {
                return;
            };
            if task.ended() {
                // Cancelled while it waited: it never takes a place.
                continue;
            }
            self.pool.running += 1;
            self.pool.previous_start = Some(Instant::now());
            let me = ctx.address();
            // The place is held from the start request until the task ends
            // (or its start fails: it was cancelled while queued).
            let run = task.run();
            actix::spawn(async move {
                run.await;
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
        self.pool.limits = limits;
        self.dispatch(ctx);
        Ok(())
    }
}

impl Handler<GetJobPool> for ProcessSupervisor {
    type Result = JobPool;

    fn handle(&mut self, _msg: GetJobPool, _ctx: &mut Context<Self>) -> JobPool {
        // Tasks cancelled while they waited leave the queue now.
        self.pool.queue.retain(|task| !task.ended());
        JobPool {
            running: self.pool.running,
            queued: self.pool.queue.len(),
        }
    }
}

impl Handler<Enqueue> for ProcessSupervisor {
    type Result = ();

    fn handle(&mut self, Enqueue(task): Enqueue, ctx: &mut Context<Self>) {
        self.pool.queue.push_back(task);
        self.dispatch(ctx);
    }
}

impl Handler<Freed> for ProcessSupervisor {
    type Result = ();

    fn handle(&mut self, _msg: Freed, ctx: &mut Context<Self>) {
        self.pool.running = self.pool.running.saturating_sub(1);
        self.dispatch(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProcessHandle;

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
                    .stdin(crate::InputFrom::Null)
                    .start_listener(times.clone().recipient())
                    .prepare()
                    .unwrap()
            })
            .collect();
        for task in &tasks {
            pool.do_send(Enqueue(Box::new(task.clone().queued(false))));
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

    #[test]
    fn under_max_load_starts_are_spaced_more_as_more_run() {
        crate::test_support::bounded(async {
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
        });
    }

    #[test]
    fn a_load_at_max_load_holds_starts_until_none_runs() {
        crate::test_support::bounded(async {
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
        });
    }
}
