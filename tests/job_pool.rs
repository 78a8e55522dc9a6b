//! The supervisor's job pool: `--jobs` and `--load-average` for actors.

mod common;

use actix::prelude::*;
use actix_popen::{
    AddStartListener, AsyncWait, Cancel, Exited, GetJobPool, JobPool, Popen, ProcessSupervisor,
    ReturnCode, SetJobLimits, SpawnError, Started,
};
use futures::channel::oneshot;

use common::{event, Waiter};

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

#[actix_rt::test]
async fn at_most_max_jobs_run_at_once_in_submission_order() {
    ProcessSupervisor::get()
        .send(SetJobLimits {
            max_jobs: Some(2),
            max_load: None,
        })
        .await
        .unwrap();
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
        assert!(task.send(AsyncWait).await.unwrap().unwrap().success());
    }
    let events = rx.await.unwrap();
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
    let pool = ProcessSupervisor::get().send(GetJobPool).await.unwrap();
    assert_eq!(
        pool,
        JobPool {
            running: 0,
            queued: 0
        }
    );
}

#[actix_rt::test]
async fn a_task_cancelled_in_the_queue_never_runs() {
    ProcessSupervisor::get()
        .send(SetJobLimits {
            max_jobs: Some(1),
            max_load: None,
        })
        .await
        .unwrap();
    let first = Popen::new("sleep").arg("1000").submit().unwrap();
    let queued = Popen::new("sleep").arg("1000").submit().unwrap();
    let (waiter, awaited) = Waiter::start_new();
    queued.do_send(AddStartListener(waiter.recipient()));
    queued.do_send(Cancel);
    assert_eq!(
        queued.send(AsyncWait).await.unwrap().unwrap(),
        ReturnCode::CANCELLED
    );
    // It gave its place in the queue back at once.
    let pool = ProcessSupervisor::get().send(GetJobPool).await.unwrap();
    assert_eq!(
        pool,
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
    assert_eq!(first.send(AsyncWait).await.unwrap().unwrap().code(), -15);
    // The cancelled task's place is given back too.
    let after = Popen::new("true").submit().unwrap();
    assert!(after.send(AsyncWait).await.unwrap().unwrap().success());
}

#[actix_rt::test]
async fn a_high_load_holds_new_starts_while_a_task_runs() {
    // A load average is never below zero: only an idle pool may start one.
    ProcessSupervisor::get()
        .send(SetJobLimits {
            max_jobs: None,
            max_load: Some(0.0),
        })
        .await
        .unwrap();
    let first = Popen::new("sleep").arg("1000").submit().unwrap();
    let second = Popen::new("true").submit().unwrap();
    let pool = ProcessSupervisor::get().send(GetJobPool).await.unwrap();
    assert_eq!(
        pool,
        JobPool {
            running: 1,
            queued: 1
        }
    );
    assert_eq!(second.poll(), None);
    first.do_send(Cancel);
    first.send(AsyncWait).await.unwrap().unwrap();
    // With nothing running, the next one starts whatever the load.
    assert!(second.send(AsyncWait).await.unwrap().unwrap().success());
}

#[actix_rt::test]
async fn a_failed_start_frees_its_place_and_reports_127() {
    ProcessSupervisor::get()
        .send(SetJobLimits {
            max_jobs: Some(1),
            max_load: None,
        })
        .await
        .unwrap();
    let missing = Popen::new("no-such-program-xyz").submit().unwrap();
    let next = Popen::new("true").submit().unwrap();
    assert_eq!(missing.send(AsyncWait).await.unwrap().unwrap().code(), 127);
    assert!(
        matches!(missing.spawn_error(), Some(SpawnError::NotFound { ref program, .. }) if program == "no-such-program-xyz"),
        "{:?}",
        missing.spawn_error()
    );
    assert!(next.send(AsyncWait).await.unwrap().unwrap().success());
}
