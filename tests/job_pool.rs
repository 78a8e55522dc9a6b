//! The supervisor's job pool: `--jobs` and `--load-average` for actors,
//! and a submitted pipeline as one job.
//!
//! Every await is bounded ([`within`], [`async_wait`]): a regression fails
//! the test rather than hanging it. This binary installs a logger that
//! keeps every error, so it holds the process's logger alone.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::SpawnErrorKind;
use actix_popen::{
    AddStartListener, AsyncWait, Cancel, CloseStdin, Collector, ExitCause, Exited, GetJobPool,
    GetValue, InputFrom, JobLimitsError, JobPool, OutputTo, PipeStatus, Pipeline, PipelineExited,
    PipelineHandle, Popen, ProcessHandle, ProcessSupervisor, ReturnCode, SetJobLimits, Started,
};
use futures::channel::oneshot;

use common::procs::Leftovers;
use common::{async_wait, event, within, Waiter};

/// Sets the pool's limits, with a bound; returns the supervisor's answer.
async fn try_set_limits(
    max_jobs: Option<usize>,
    max_load: Option<f64>,
) -> Result<(), JobLimitsError> {
    within(
        "SetJobLimits",
        ProcessSupervisor::get().send(SetJobLimits { max_jobs, max_load }),
    )
    .await
    .expect("the supervisor is gone")
}

/// Sets the pool's limits, which must be accepted.
async fn set_limits(max_jobs: Option<usize>, max_load: Option<f64>) {
    try_set_limits(max_jobs, max_load)
        .await
        .unwrap_or_else(|err| panic!("limits refused: {err}"));
}

/// The pool's state, with a bound.
async fn job_pool() -> JobPool {
    within("GetJobPool", ProcessSupervisor::get().send(GetJobPool))
        .await
        .expect("the supervisor is gone")
}

/// `(task index, true for its start / false for its exit)`, in order.
type Events = Vec<(usize, bool)>;

/// Records, in arrival order, which task started and which ended.
#[derive(Default)]
struct Recorder {
    events: Events,
    waiting: Option<(usize, oneshot::Sender<Events>)>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

/// Start or exit of task `index`.
#[derive(Message)]
#[rtype(result = "()")]
struct Event(usize, bool);

impl Handler<Event> for Recorder {
    type Result = ();
    fn handle(&mut self, Event(index, started): Event, _: &mut Context<Self>) {
        self.events.push((index, started));
        if let Some((count, _)) = &self.waiting {
            if self.events.len() >= *count {
                if let Some((_, tx)) = self.waiting.take() {
                    let _ = tx.send(self.events.clone());
                }
            }
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct WhenCount(usize, oneshot::Sender<Events>);

impl Handler<WhenCount> for Recorder {
    type Result = ();
    fn handle(&mut self, WhenCount(count, tx): WhenCount, _: &mut Context<Self>) {
        if self.events.len() >= count {
            let _ = tx.send(self.events.clone());
        } else {
            self.waiting = Some((count, tx));
        }
    }
}

/// Tags the events of one task with its index.
struct Tag(usize, Addr<Recorder>);

impl Actor for Tag {
    type Context = Context<Self>;
}

impl Handler<Started> for Tag {
    type Result = ();
    fn handle(&mut self, _: Started, _: &mut Context<Self>) {
        self.1.do_send(Event(self.0, true));
    }
}

impl Handler<Exited> for Tag {
    type Result = ();
    fn handle(&mut self, _: Exited, _: &mut Context<Self>) {
        self.1.do_send(Event(self.0, false));
    }
}

#[test]
fn at_most_max_jobs_run_at_once_in_submission_order() {
    common::bounded(async {
        set_limits(Some(2), None).await;
        let recorder = Recorder::default().start();
        let tasks: Vec<_> = (0..8)
            .map(|index| {
                let tag = Tag(index, recorder.clone()).start();
                Popen::new("sh")
                    .args(["-c", "sleep 0.05"])
                    .start_listener(tag.clone().recipient())
                    .exit_listener(tag.recipient())
                    .submit()
                    .unwrap()
            })
            .collect();
        let (tx, rx) = oneshot::channel();
        recorder.do_send(WhenCount(16, tx));
        for task in &tasks {
            assert!(async_wait(task).await.success());
        }
        let events = event("every start and exit", rx).await;
        let mut running = 0i32;
        let mut peak = 0;
        let mut start_order = Vec::new();
        for (index, started) in events {
            if started {
                running += 1;
                start_order.push(index);
            } else {
                running -= 1;
            }
            peak = peak.max(running);
        }
        assert_eq!(peak, 2, "at most two at once, and two were used");
        assert_eq!(start_order, (0..8).collect::<Vec<_>>());
        assert_eq!(
            job_pool().await,
            JobPool {
                running: 0,
                queued: 0
            }
        );
    });
}

#[test]
fn a_task_cancelled_in_the_queue_never_runs() {
    common::bounded(async {
        set_limits(Some(1), None).await;
        let first = Popen::new("sleep").arg("1000").submit().unwrap();
        let queued = Popen::new("sleep").arg("1000").submit().unwrap();
        let (waiter, awaited) = Waiter::start_new();
        queued.do_send(AddStartListener(waiter.recipient()));
        queued.do_send(Cancel);
        assert_eq!(async_wait(&queued).await, ReturnCode::CANCELLED);
        // It gave its place in the queue back at once.
        assert_eq!(
            job_pool().await,
            JobPool {
                running: 1,
                queued: 0
            }
        );
        assert_eq!(
            event("Started", awaited.started).await.pid,
            None,
            "start listeners hear of it"
        );
        first.do_send(Cancel);
        assert_eq!(async_wait(&first).await.code(), -15);
        // The cancelled task's place is given back too.
        let after = Popen::new("true").submit().unwrap();
        assert!(async_wait(&after).await.success());
    });
}

#[test]
fn a_high_load_holds_new_starts_while_a_task_runs() {
    common::bounded(async {
        // The smallest limit accepted: any load reading above 0.00 holds the
        // second task while the first runs. (On an idle machine, reading
        // 0.00, the start spacing holds it for the first second.)
        set_limits(None, Some(f64::MIN_POSITIVE)).await;
        let first = Popen::new("sleep").arg("1000").submit().unwrap();
        let second = Popen::new("true").submit().unwrap();
        assert_eq!(
            job_pool().await,
            JobPool {
                running: 1,
                queued: 1
            }
        );
        assert_eq!(second.try_wait(), None);
        first.do_send(Cancel);
        async_wait(&first).await;
        // With nothing running, the next one starts whatever the load.
        assert!(async_wait(&second).await.success());
    });
}

#[test]
fn a_failed_start_frees_its_place_and_reports_127() {
    common::bounded(async {
        set_limits(Some(1), None).await;
        let missing = Popen::new("no-such-program-xyz").submit().unwrap();
        let next = Popen::new("true").submit().unwrap();
        assert_eq!(async_wait(&missing).await.code(), 127);
        assert!(
            missing
                .spawn_error()
                .is_some_and(|err| matches!(err.kind(), SpawnErrorKind::NotFound { .. })
                    && err.program() == "no-such-program-xyz"),
            "{:?}",
            missing.spawn_error()
        );
        assert!(async_wait(&next).await.success());
    });
}

/// Tells when its task started.
struct StartTime(Option<oneshot::Sender<Instant>>);

impl Actor for StartTime {
    type Context = Context<Self>;
}

impl Handler<Started> for StartTime {
    type Result = ();
    fn handle(&mut self, _: Started, _: &mut Context<Self>) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(Instant::now());
        }
    }
}

#[test]
fn under_max_load_starts_are_spaced_while_tasks_run() {
    common::bounded(async {
        // A limit above any load this machine has: the load never holds a
        // start back, so only the spacing does. (Before it, all three started
        // at once, each checked against the same /proc/loadavg reading.) The
        // tasks run until their stdin closes, so each start finds the earlier
        // ones running.
        set_limits(None, Some(1000.0)).await;
        let mut tasks: Vec<ProcessHandle> = Vec::new();
        let mut starts: Vec<oneshot::Receiver<Instant>> = Vec::new();
        for _ in 0..3 {
            let (tx, started) = oneshot::channel();
            let task = Popen::new("cat")
                .stdin(InputFrom::Pipe)
                .stdout(OutputTo::Null)
                .start_listener(StartTime(Some(tx)).start().recipient())
                .submit()
                .expect("cannot submit cat");
            tasks.push(task);
            starts.push(started);
        }
        let mut times = Vec::new();
        let mut leftovers = Leftovers::default();
        for (task, started) in tasks.iter().zip(starts) {
            times.push(event("a start", started).await);
            leftovers.add(task);
        }
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        eprintln!("gaps between the starts: {gaps:?}");
        // 1 s with one task running, 1 s × 2^1.5 = 2.83 s with two; a little
        // slack for the spawns themselves.
        let slack = Duration::from_millis(50);
        for (gap, least) in gaps.iter().zip([1000, 2828]) {
            assert!(
                *gap + slack >= Duration::from_millis(least),
                "gaps {gaps:?}: one is under {least} ms"
            );
        }
        for task in &tasks {
            task.do_send(CloseStdin);
        }
        for task in &tasks {
            assert!(async_wait(task).await.success());
        }
    });
}

#[test]
fn limits_that_never_start_a_task_are_refused_and_the_previous_stay() {
    common::bounded(async {
        set_limits(Some(1), None).await;
        // GNU make refuses `-j0`: with 0 places nothing would ever start.
        assert_eq!(
            try_set_limits(Some(0), None).await,
            Err(JobLimitsError::ZeroJobs)
        );
        for max_load in [0.0, -1.0, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                try_set_limits(None, Some(max_load)).await,
                Err(JobLimitsError::InvalidLoad { max_load })
            );
        }
        let nan = try_set_limits(Some(4), Some(f64::NAN)).await;
        assert!(
            matches!(nan, Err(JobLimitsError::InvalidLoad { max_load }) if max_load.is_nan()),
            "{nan:?}"
        );
        // One place still, and no load limit: the second task waits.
        let (waiter, awaited) = Waiter::start_new();
        let first = Popen::new("cat")
            .stdin(InputFrom::Pipe)
            .stdout(OutputTo::Null)
            .start_listener(waiter.recipient())
            .submit()
            .expect("cannot submit cat");
        let second = Popen::new("true").submit().expect("cannot submit true");
        event("the first task's start", awaited.started).await;
        let _leftovers = Leftovers::of(&first);
        assert_eq!(
            job_pool().await,
            JobPool {
                running: 1,
                queued: 1
            }
        );
        first.do_send(CloseStdin);
        assert!(async_wait(&first).await.success());
        assert!(async_wait(&second).await.success());
    });
}

// ---------------------------------------------------------------------
// A submitted pipeline is one job
// ---------------------------------------------------------------------

/// A stage running `sh -c script`.
fn sh(script: &str) -> Popen {
    Popen::new("sh").args(["-c", script])
}

/// Submits a `cat` that holds a place of the pool until its stdin is
/// closed; returns it once it runs, with the guard that kills its group.
async fn hold_a_place() -> (ProcessHandle, Leftovers) {
    let (waiter, awaited) = Waiter::start_new();
    let holder = Popen::new("cat")
        .stdin(InputFrom::Pipe)
        .stdout(OutputTo::Null)
        .start_listener(waiter.recipient())
        .submit()
        .expect("cannot submit cat");
    event("the holder's start", awaited.started).await;
    let leftovers = Leftovers::of(&holder);
    (holder, leftovers)
}

/// Ends the holder of [`hold_a_place`], which frees its place.
async fn release(holder: &ProcessHandle) {
    holder.do_send(CloseStdin);
    assert!(async_wait(holder).await.success());
}

/// The pipeline's return code, with a bound.
async fn pipeline_wait(pipeline: &PipelineHandle) -> ReturnCode {
    within("the pipeline's end", pipeline.send(AsyncWait))
        .await
        .expect("the pipeline actor is gone")
        .expect("AsyncWait failed")
}

/// Every stage's return code so far, with a bound.
async fn pipestatus(pipeline: &PipelineHandle) -> Vec<Option<ReturnCode>> {
    within("PipeStatus", pipeline.send(PipeStatus))
        .await
        .expect("the pipeline actor is gone")
}

/// Hands over the first `PipelineExited` it gets.
struct PipelineWaiter(Option<oneshot::Sender<PipelineExited>>);

impl PipelineWaiter {
    fn start_new() -> (Recipient<PipelineExited>, oneshot::Receiver<PipelineExited>) {
        let (tx, rx) = oneshot::channel();
        (PipelineWaiter(Some(tx)).start().recipient(), rx)
    }
}

impl Actor for PipelineWaiter {
    type Context = Context<Self>;
}

impl Handler<PipelineExited> for PipelineWaiter {
    type Result = ();
    fn handle(&mut self, event: PipelineExited, _: &mut Context<Self>) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(event);
        }
    }
}

#[test]
fn a_submitted_pipeline_waits_for_a_place_then_runs_every_stage() {
    common::bounded(async {
        set_limits(Some(1), None).await;
        let (holder, _leftovers) = hold_a_place().await;
        let collector = Collector::start_default();
        let pipeline = Pipeline::new()
            .stage(Popen::new("printf").arg("b\nc\na\n"))
            .stage(Popen::new("sort"))
            .stage(
                Popen::new("tr")
                    .args(["a-z", "A-Z"])
                    .subscribe(collector.clone().recipient()),
            )
            .submit()
            .expect("cannot submit the pipeline");
        // One job waiting, whatever its stages: none of them was spawned.
        assert_eq!(
            job_pool().await,
            JobPool {
                running: 1,
                queued: 1
            }
        );
        for (stage, handle) in pipeline.stages().iter().enumerate() {
            assert_eq!(handle.pid(), None, "stage {stage} was spawned in the queue");
        }
        assert_eq!(pipestatus(&pipeline).await, vec![None; 3]);

        release(&holder).await;
        assert!(pipeline_wait(&pipeline).await.success());
        assert_eq!(
            pipestatus(&pipeline).await,
            vec![Some(ReturnCode::from_raw(0)); 3]
        );
        assert_eq!(
            &within("the output", collector.send(GetValue))
                .await
                .expect("collector gone")
                .stdout[..],
            b"A\nB\nC\n"
        );
        assert_eq!(
            job_pool().await,
            JobPool {
                running: 0,
                queued: 0
            }
        );
    });
}

#[test]
fn a_submitted_pipeline_holds_its_place_until_its_last_stage_ended() {
    common::bounded(async {
        set_limits(Some(1), None).await;
        let recorder = Recorder::default().start();
        let (waiter, awaited) = Waiter::start_new();
        // The middle stage outlives the others: the first ends once it
        // wrote its line, the last once it read it, the middle only when
        // cancelled.
        let pipeline = Pipeline::new()
            .stage(Popen::new("printf").arg("x\n"))
            .stage(
                sh("read line; echo \"$line\"; exec sleep 1000")
                    .start_listener(waiter.recipient())
                    .exit_listener(Tag(0, recorder.clone()).start().recipient()),
            )
            .stage(Popen::new("head").arg("-n1").stdout(OutputTo::Null))
            .submit()
            .expect("cannot submit the pipeline");
        event("the middle stage's start", awaited.started).await;
        let _leftovers = Leftovers::of(&pipeline.stages()[1]);
        let stages = pipeline.stages();
        assert!(async_wait(&stages[0]).await.success());
        assert!(async_wait(&stages[2]).await.success());

        let later = Popen::new("true")
            .start_listener(Tag(1, recorder.clone()).start().recipient())
            .submit()
            .expect("cannot submit true");
        assert_eq!(
            job_pool().await,
            JobPool {
                running: 1,
                queued: 1
            },
            "the pipeline gave its place back while its middle stage runs"
        );
        assert_eq!(later.try_wait(), None);

        stages[1].do_send(Cancel);
        assert_eq!(pipeline_wait(&pipeline).await, ReturnCode::from_raw(0));
        assert_eq!(
            pipestatus(&pipeline).await,
            [0, -15, 0].map(|code| Some(ReturnCode::from_raw(code)))
        );
        assert!(async_wait(&later).await.success());
        let (tx, rx) = oneshot::channel();
        recorder.do_send(WhenCount(2, tx));
        assert_eq!(
            event("the middle stage's exit and the later task's start", rx).await,
            vec![(0, false), (1, true)],
            "the later task started before the pipeline's last stage ended"
        );
    });
}

#[test]
fn a_pipeline_cancelled_in_the_queue_never_runs() {
    common::bounded(async {
        set_limits(Some(1), None).await;
        let (holder, _leftovers) = hold_a_place().await;
        let (waiter, awaited) = Waiter::start_new();
        let (listener, exited) = PipelineWaiter::start_new();
        let pipeline = Pipeline::new()
            .stage(
                Popen::new("sleep")
                    .arg("1000")
                    .start_listener(waiter.recipient()),
            )
            .stage(Popen::new("cat"))
            .exit_listener(listener)
            .submit()
            .expect("cannot submit the pipeline");
        assert_eq!(
            job_pool().await,
            JobPool {
                running: 1,
                queued: 1
            }
        );

        pipeline.do_send(Cancel);
        let exited = event("PipelineExited", exited).await;
        assert_eq!(exited.returncode, ReturnCode::CANCELLED);
        assert_eq!(exited.statuses, vec![ReturnCode::CANCELLED; 2]);
        assert_eq!(exited.causes, vec![ExitCause::Cancelled; 2]);
        assert_eq!(pipeline_wait(&pipeline).await, ReturnCode::CANCELLED);
        assert_eq!(
            event("the first stage's Started", awaited.started)
                .await
                .pid,
            None,
            "the first stage ran"
        );
        // Its place in the queue is given back at once.
        assert_eq!(
            job_pool().await,
            JobPool {
                running: 1,
                queued: 0
            }
        );

        release(&holder).await;
        let after = Popen::new("true").submit().expect("cannot submit true");
        assert!(async_wait(&after).await.success());
        for (stage, handle) in pipeline.stages().iter().enumerate() {
            assert!(handle.usage().is_none(), "stage {stage} ran");
        }
    });
}

/// Every error logged in this binary.
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Keeps every error record in [`ERRORS`].
struct KeepErrors;

impl log::Log for KeepErrors {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Error
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            ERRORS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

#[test]
fn a_submitted_pipeline_whose_stage_cannot_be_spawned_ends_naming_it() {
    static KEEP: KeepErrors = KeepErrors;
    let _ = log::set_logger(&KEEP);
    log::set_max_level(log::LevelFilter::Error);
    common::bounded(async {
        set_limits(Some(1), None).await;
        let (holder, _leftovers) = hold_a_place().await;
        let dir = tempfile::tempdir().expect("no temp dir");
        let missing = dir.path().join("no-such-program");
        let (listener, exited) = PipelineWaiter::start_new();
        // Spawned last first at its turn: the last stage runs when the
        // middle one fails, the first never does.
        let pipeline = Pipeline::new()
            .stage(Popen::new("sleep").arg("1000"))
            .stage(Popen::new(&missing))
            .stage(Popen::new("sleep").arg("1000"))
            .exit_listener(listener)
            .submit()
            .expect("a missing program is found missing only at the spawn");

        release(&holder).await;
        let exited = event("PipelineExited", exited).await;
        assert_eq!(
            exited.statuses,
            vec![
                ReturnCode::CANCELLED,
                ReturnCode::from_raw(127),
                ReturnCode::from_raw(-15)
            ]
        );
        assert_eq!(
            exited.causes,
            vec![
                ExitCause::Cancelled,
                ExitCause::SpawnFailed,
                ExitCause::Cancelled
            ]
        );
        let stages = pipeline.stages();
        assert!(
            stages[1]
                .spawn_error()
                .is_some_and(|err| matches!(err.kind(), SpawnErrorKind::NotFound { .. })),
            "{:?}",
            stages[1].spawn_error()
        );
        assert!(stages[0].usage().is_none(), "the first stage ran");
        assert!(stages[2].usage().is_some(), "the last stage never ran");
        let errors = ERRORS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("stage 1 of the pipeline") && e.contains("no-such-program")),
            "the failed spawn was not logged: {errors:?}"
        );

        // The place is free again.
        let after = Popen::new("true").submit().expect("cannot submit true");
        assert!(async_wait(&after).await.success());
        assert_eq!(
            job_pool().await,
            JobPool {
                running: 0,
                queued: 0
            }
        );
    });
}

#[test]
fn a_kill_on_drop_task_dropped_while_queued_never_runs() {
    common::bounded(async {
        set_limits(Some(1), None).await;
        let (holder, _leftovers) = hold_a_place().await;
        let (waiter, awaited) = Waiter::start_new();
        let task = Popen::new("sleep")
            .arg("1000")
            .kill_on_drop(true)
            .start_listener(waiter.clone().recipient())
            .exit_listener(waiter.recipient())
            .submit()
            .expect("cannot submit sleep");
        drop(task);
        // Cancelled in the queue: it never runs and gives its place back
        // at once, while the holder still runs.
        let events = event("the dropped task's Exited", awaited.exited).await;
        let exited = events.exited.first().expect("an Exited");
        assert_eq!(exited.returncode, ReturnCode::CANCELLED);
        assert_eq!(exited.cause, ExitCause::Cancelled);
        assert_eq!(exited.pid, None, "it ran");
        assert_eq!(
            event("its Started", awaited.started).await.pid,
            None,
            "it ran"
        );
        assert_eq!(
            job_pool().await,
            JobPool {
                running: 1,
                queued: 0
            }
        );
        release(&holder).await;
    });
}

#[test]
fn a_submitted_pipeline_whose_kill_on_drop_stage_was_dropped_never_runs() {
    common::bounded(async {
        set_limits(Some(1), None).await;
        let (holder, _leftovers) = hold_a_place().await;
        let (listener, exited) = PipelineWaiter::start_new();
        let pipeline = Pipeline::new()
            .stage(Popen::new("sleep").arg("1000").kill_on_drop(true))
            .stage(Popen::new("cat"))
            .exit_listener(listener)
            .submit()
            .expect("cannot submit the pipeline");
        drop(pipeline);
        // The pipeline is broken: every stage is cancelled at once, and
        // its place is given back without waiting for its turn.
        let exited = event("PipelineExited", exited).await;
        assert_eq!(exited.statuses, vec![ReturnCode::CANCELLED; 2]);
        assert_eq!(exited.causes, vec![ExitCause::Cancelled; 2]);
        assert_eq!(
            job_pool().await,
            JobPool {
                running: 1,
                queued: 0
            }
        );
        release(&holder).await;
    });
}
