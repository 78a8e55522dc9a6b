//! Start and exit listeners, and the task's state queries: portage's
//! `addStartListener`/`addExitListener` (each notified once),
//! `removeExitListener`, a task cancelled before it started, `poll()`,
//! `isAlive()`, `pid`, `async_wait()`, `cancel()` twice, `copy()`, and the
//! blocking `wait()` (refused inside the runtime, blocking from a plain
//! thread).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use actix::prelude::*;
use actix_popen::SpawnErrorKind;
use actix_popen::{
    AddExitListener, AddStartListener, Cancel, Collector, Exited, GetPid, GetValue, InputFrom,
    IsAlive, Popen, ProcessHandle, RemoveExitListener, RemoveStartListener, ReturnCode, Start,
    Started, TryWait, WaitError,
};
use futures::channel::oneshot;

use common::{assert_gone, async_wait, await_gone, event, Events, GetEvents, ReapOnDrop, Waiter};

/// The return code of a child that died of SIGTERM.
const SIGTERMED: ReturnCode = ReturnCode::from_raw(-15);

/// A child that prints `ready` and then sleeps until it is cancelled.
fn sleeper() -> Popen {
    Popen::new("sh")
        .args(["-c", "echo ready; exec sleep 60"])
        .stdin(InputFrom::Null)
        .cancel_timeout(Duration::from_secs(5))
}

/// Starts `popen` with a waiter subscribed to its output and listening for
/// its exit; returns once the child printed its first chunk, with the
/// child's pid and the waiter's `Exited` channel.
async fn start_and_await_output(popen: Popen) -> (ProcessHandle, u32, oneshot::Receiver<Events>) {
    let (waiter, awaited) = Waiter::start_new();
    let process = popen
        .subscribe(waiter.clone().recipient())
        .exit_listener(waiter.recipient())
        .start()
        .expect("spawn");
    let chunk = event("the child's first output", awaited.first_chunk).await;
    assert_eq!(&chunk[..], b"ready\n");
    let pid = process.pid().expect("a running child has a pid");
    (process, pid, awaited.exited)
}

#[test]
fn exit_listener_added_twice_is_notified_once() {
    common::bounded(async {
        let (waiter, awaited) = Waiter::start_new();
        let process = Popen::new("true")
            .stdin(InputFrom::Null)
            .exit_listener(waiter.clone().recipient())
            .exit_listener(waiter.clone().recipient())
            .start()
            .expect("spawn true");
        process.do_send(AddExitListener(waiter.clone().recipient()));
        event("Exited", awaited.exited).await;
        let events = waiter.send(GetEvents).await.expect("waiter");
        assert_eq!(events.exited.len(), 1, "{:?}", events.exited);
        assert_eq!(events.exited[0].returncode, ReturnCode::from_raw(0));
        assert!(events.exited[0].output_complete);
        await_gone(events.exited[0].pid.expect("pid")).await;
    });
}

#[test]
fn start_listener_added_twice_is_notified_once() {
    common::bounded(async {
        let (waiter, awaited) = Waiter::start_new();
        let process = Popen::new("true")
            .stdin(InputFrom::Null)
            .start_listener(waiter.clone().recipient())
            .start_listener(waiter.clone().recipient())
            .exit_listener(waiter.clone().recipient())
            .prepare()
            .expect("prepare");
        process.do_send(AddStartListener(waiter.clone().recipient()));
        let pid = process
            .send(Start)
            .await
            .expect("actor")
            .expect("spawn true");
        let started = event("Started", awaited.started).await;
        assert_eq!(started.pid, Some(pid));
        let events = event("Exited", awaited.exited).await;
        assert_eq!(events.started.len(), 1, "{:?}", events.started);
        assert_eq!(events.exited.len(), 1);
        assert_eq!(events.exited[0].pid, Some(pid));
        await_gone(pid).await;
    });
}

#[test]
fn exit_listener_added_after_the_exit_is_notified_once() {
    common::bounded(async {
        let process = Popen::new("sh")
            .args(["-c", "exit 3"])
            .stdin(InputFrom::Null)
            .start()
            .expect("spawn sh");
        let code = async_wait(&process).await;
        assert_eq!(code, ReturnCode::from_raw(3));
        let (waiter, awaited) = Waiter::start_new();
        process
            .send(AddExitListener(waiter.clone().recipient()))
            .await
            .expect("actor");
        let events = event("Exited", awaited.exited).await;
        assert_eq!(events.exited[0].returncode, code);
        assert!(events.exited[0].output_complete);
        // A second notification would already be in the waiter's mailbox.
        let events = waiter.send(GetEvents).await.expect("waiter");
        assert_eq!(events.exited.len(), 1, "{:?}", events.exited);
        await_gone(events.exited[0].pid.expect("pid")).await;
    });
}

/// "Adding the same recipient twice notifies it once" (the documentation
/// of `AddExitListener`), also when the second add comes after the event:
/// a listener already notified of the start or the exit, added again, is
/// not notified again.
#[test]
fn listener_added_again_after_the_event_is_not_notified_again() {
    common::bounded(async {
        let (waiter, awaited) = Waiter::start_new();
        let process = Popen::new("true")
            .stdin(InputFrom::Null)
            .start_listener(waiter.clone().recipient())
            .exit_listener(waiter.clone().recipient())
            .start()
            .expect("spawn true");
        let events = event("Exited", awaited.exited).await;
        await_gone(events.exited[0].pid.expect("pid")).await;
        for _ in 0..2 {
            process
                .send(AddStartListener(waiter.clone().recipient()))
                .await
                .expect("actor");
            process
                .send(AddExitListener(waiter.clone().recipient()))
                .await
                .expect("actor");
        }
        let events = waiter.send(GetEvents).await.expect("waiter");
        assert_eq!(events.started.len(), 1, "{:?}", events.started);
        assert_eq!(events.exited.len(), 1, "{:?}", events.exited);
    });
}

#[test]
fn removed_listeners_are_never_notified() {
    common::bounded(async {
        let (removed, _) = Waiter::start_new();
        let (kept, awaited) = Waiter::start_new();
        let process = Popen::new("true")
            .stdin(InputFrom::Null)
            .start_listener(removed.clone().recipient())
            .exit_listener(removed.clone().recipient())
            .start_listener(kept.clone().recipient())
            .exit_listener(kept.clone().recipient())
            .prepare()
            .expect("prepare");
        process.do_send(RemoveStartListener(removed.clone().recipient()));
        process.do_send(RemoveExitListener(removed.clone().recipient()));
        let pid = process
            .send(Start)
            .await
            .expect("actor")
            .expect("spawn true");
        let events = event("Exited", awaited.exited).await;
        assert_eq!(events.started.len(), 1);
        assert_eq!(events.exited.len(), 1);
        // The removed waiter would have been sent its notifications before the
        // kept one got its `Exited`.
        let removed_events = removed.send(GetEvents).await.expect("waiter");
        assert!(
            removed_events.started.is_empty(),
            "{:?}",
            removed_events.started
        );
        assert!(
            removed_events.exited.is_empty(),
            "{:?}",
            removed_events.exited
        );
        await_gone(pid).await;
    });
}

#[test]
fn exit_listener_removed_while_running_is_never_notified() {
    common::bounded(async {
        let (removed, _) = Waiter::start_new();
        let (process, pid, exited) = start_and_await_output(sleeper()).await;
        process
            .send(AddExitListener(removed.clone().recipient()))
            .await
            .expect("actor");
        process
            .send(RemoveExitListener(removed.clone().recipient()))
            .await
            .expect("actor");
        process.do_send(Cancel);
        let events = event("Exited", exited).await;
        assert_eq!(events.exited[0].returncode, SIGTERMED);
        let removed_events = removed.send(GetEvents).await.expect("waiter");
        assert!(
            removed_events.exited.is_empty(),
            "{:?}",
            removed_events.exited
        );
        await_gone(pid).await;
    });
}

/// A listener that stops on request and reports when it has stopped.
struct Quitter {
    stopped: Option<oneshot::Sender<()>>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Quit;

impl Actor for Quitter {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Some(tx) = self.stopped.take() {
            let _ = tx.send(());
        }
    }
}

impl Handler<Quit> for Quitter {
    type Result = ();

    fn handle(&mut self, _msg: Quit, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Started> for Quitter {
    type Result = ();

    fn handle(&mut self, _msg: Started, _ctx: &mut Context<Self>) {}
}

impl Handler<Exited> for Quitter {
    type Result = ();

    fn handle(&mut self, _msg: Exited, _ctx: &mut Context<Self>) {}
}

/// A listener whose actor has stopped is skipped without a panic; the
/// listeners after it are still notified.
#[test]
fn listener_whose_actor_stopped_is_skipped() {
    common::bounded(async {
        let (stopped_tx, stopped_rx) = oneshot::channel();
        let quitter = Quitter {
            stopped: Some(stopped_tx),
        }
        .start();
        let (waiter, awaited) = Waiter::start_new();
        let process = Popen::new("true")
            .stdin(InputFrom::Null)
            .start_listener(quitter.clone().recipient())
            .exit_listener(quitter.clone().recipient())
            .start_listener(waiter.clone().recipient())
            .exit_listener(waiter.clone().recipient())
            .prepare()
            .expect("prepare");
        quitter.do_send(Quit);
        event("the listener to stop", stopped_rx).await;
        let pid = process
            .send(Start)
            .await
            .expect("actor")
            .expect("spawn true");
        let events = event("Exited", awaited.exited).await;
        assert_eq!(events.started.len(), 1);
        assert_eq!(events.exited[0].returncode, ReturnCode::from_raw(0));
        // The process actor survived notifying a stopped listener.
        assert_eq!(
            process.send(TryWait).await.expect("actor"),
            Some(ReturnCode::from_raw(0))
        );
        await_gone(pid).await;
    });
}

#[test]
fn start_listener_added_after_the_start_gets_the_pid() {
    common::bounded(async {
        let (process, pid, exited) = start_and_await_output(sleeper()).await;
        let (late, late_awaited) = Waiter::start_new();
        process
            .send(AddStartListener(late.clone().recipient()))
            .await
            .expect("actor");
        let started = event("Started", late_awaited.started).await;
        assert_eq!(started.pid, Some(pid));
        process.do_send(Cancel);
        let events = event("Exited", exited).await;
        assert_eq!(events.exited[0].returncode, SIGTERMED);
        assert_eq!(late.send(GetEvents).await.expect("waiter").started.len(), 1);
        await_gone(pid).await;
    });
}

/// portage's `_was_cancelled`: a task cancelled before it started ends
/// with `CANCELLED` (-2) and still notifies its start listeners; it cannot
/// be started afterwards.
#[test]
fn prepared_then_cancelled_ends_cancelled_and_cannot_start() {
    common::bounded(async {
        let (waiter, awaited) = Waiter::start_new();
        let process = Popen::new("true")
            .stdin(InputFrom::Null)
            .start_listener(waiter.clone().recipient())
            .exit_listener(waiter.clone().recipient())
            .prepare()
            .expect("prepare");
        assert_eq!(process.send(TryWait).await.expect("actor"), None);
        assert!(!process.send(IsAlive).await.expect("actor"));
        assert_eq!(process.send(GetPid).await.expect("actor"), None);
        assert_eq!(process.pid(), None);

        process.do_send(Cancel);
        let events = event("Exited", awaited.exited).await;
        assert_eq!(events.started.len(), 1);
        assert_eq!(events.started[0].pid, None);
        assert_eq!(events.exited.len(), 1);
        assert_eq!(events.exited[0].pid, None);
        assert_eq!(events.exited[0].returncode, ReturnCode::CANCELLED);
        assert_eq!(ReturnCode::CANCELLED.code(), -2);
        assert_eq!(async_wait(&process).await, ReturnCode::CANCELLED);
        assert_eq!(process.try_wait(), Some(ReturnCode::CANCELLED));
        assert!(!process.send(IsAlive).await.expect("actor"));

        let err = process.send(Start).await.expect("actor").unwrap_err();
        assert!(
            matches!(err.kind(), SpawnErrorKind::AlreadyStarted),
            "{err:?}"
        );
        assert_eq!(err.program(), "true");
        // The refused start changed nothing and notified nobody again.
        assert_eq!(process.try_wait(), Some(ReturnCode::CANCELLED));
        let events = waiter.send(GetEvents).await.expect("waiter");
        assert_eq!((events.started.len(), events.exited.len()), (1, 1));
    });
}

#[test]
fn start_after_the_start_is_refused() {
    common::bounded(async {
        let process = Popen::new("true")
            .stdin(InputFrom::Null)
            .prepare()
            .expect("prepare");
        let pid = process
            .send(Start)
            .await
            .expect("actor")
            .expect("spawn true");
        let err = process.send(Start).await.expect("actor").unwrap_err();
        assert!(
            matches!(err.kind(), SpawnErrorKind::AlreadyStarted),
            "{err:?}"
        );
        assert!(async_wait(&process).await.success());
        await_gone(pid).await;
    });
}

/// `TryWait`, `IsAlive`, `GetPid` and the handle's `poll`/`pid` while the
/// child runs and after it was reaped.
#[test]
fn state_queries_follow_the_child() {
    common::bounded(async {
        let (process, pid, _exited) = start_and_await_output(sleeper()).await;
        assert_eq!(process.send(TryWait).await.expect("actor"), None);
        assert!(process.send(IsAlive).await.expect("actor"));
        assert_eq!(process.send(GetPid).await.expect("actor"), Some(pid));
        assert_eq!(process.try_wait(), None);
        assert_eq!(process.pid(), Some(pid));

        process.do_send(Cancel);
        let code = async_wait(&process).await;
        assert_eq!(code, SIGTERMED);
        assert_eq!(code.signal(), Some(15));
        assert_eq!(process.send(TryWait).await.expect("actor"), Some(code));
        assert!(!process.send(IsAlive).await.expect("actor"));
        assert_eq!(process.send(GetPid).await.expect("actor"), None);
        assert_eq!(process.try_wait(), Some(code));
        assert_eq!(process.pid(), None);
        await_gone(pid).await;
    });
}

#[test]
fn async_wait_after_the_exit_resolves_at_once() {
    common::bounded(async {
        let process = Popen::new("sh")
            .args(["-c", "exit 5"])
            .stdin(InputFrom::Null)
            .start()
            .expect("spawn sh");
        let code = async_wait(&process).await;
        assert_eq!(code, ReturnCode::from_raw(5));
        for _ in 0..3 {
            let at = std::time::Instant::now();
            assert_eq!(async_wait(&process).await, code);
            assert!(
                at.elapsed() < Duration::from_secs(5),
                "took {:?}",
                at.elapsed()
            );
        }
    });
}

/// A second `Cancel` does nothing more; a `Cancel` after the exit does
/// not change the return code nor notify anyone again.
#[test]
fn cancel_is_idempotent_and_a_no_op_after_the_exit() {
    common::bounded(async {
        let (process, pid, exited) = start_and_await_output(sleeper()).await;
        process.do_send(Cancel);
        process.do_send(Cancel);
        let events = event("Exited", exited).await;
        assert_eq!(events.exited[0].returncode, SIGTERMED);
        process.send(Cancel).await.expect("actor");
        assert_eq!(async_wait(&process).await, SIGTERMED);
        assert_eq!(process.try_wait(), Some(SIGTERMED));
        await_gone(pid).await;

        let (waiter, awaited) = Waiter::start_new();
        let finished = Popen::new("true")
            .stdin(InputFrom::Null)
            .exit_listener(waiter.clone().recipient())
            .start()
            .expect("spawn true");
        let events = event("Exited", awaited.exited).await;
        assert!(events.exited[0].returncode.success());
        finished.send(Cancel).await.expect("actor");
        finished.send(Cancel).await.expect("actor");
        assert_eq!(
            finished.send(TryWait).await.expect("actor"),
            Some(ReturnCode::from_raw(0))
        );
        assert_eq!(
            waiter.send(GetEvents).await.expect("waiter").exited.len(),
            1
        );
    });
}

/// portage's `copy()`: a clone of a `Popen`, even of one already started,
/// starts a new child with the same description and recipients.
#[test]
fn a_clone_can_be_started_again() {
    common::bounded(async {
        let collector = Collector::start_default();
        let (waiter, _) = Waiter::start_new();
        let popen = Popen::new("sh")
            .args(["-c", "echo run"])
            .stdin(InputFrom::Null)
            .subscribe(collector.clone().recipient())
            .exit_listener(waiter.clone().recipient());
        let first = popen.clone().start().expect("first spawn");
        assert!(async_wait(&first).await.success());
        let second = popen.clone().start().expect("second spawn");
        assert!(async_wait(&second).await.success());
        let collected = collector.send(GetValue).await.expect("collector");
        assert_eq!(&collected.stdout[..], b"run\nrun\n");
        let events = waiter.send(GetEvents).await.expect("waiter");
        assert_eq!(events.exited.len(), 2);
        let (a, b) = (
            events.exited[0].pid.expect("pid"),
            events.exited[1].pid.expect("pid"),
        );
        assert_ne!(a, b);
        await_gone(a).await;
        await_gone(b).await;
    });
}

/// Inside the runtime a blocking `wait()` would deadlock: it is refused
/// with `InvalidState` (portage's `InvalidStateError`) until the task has
/// ended, then returns the code.
#[test]
fn blocking_wait_inside_the_runtime_is_refused_until_the_end() {
    common::bounded(async {
        let (process, pid, _exited) = start_and_await_output(sleeper()).await;
        let err = process.wait().unwrap_err();
        assert!(matches!(err, WaitError::InvalidState), "{err:?}");
        process.do_send(Cancel);
        let code = async_wait(&process).await;
        assert_eq!(process.wait().expect("wait after the end"), code);
        await_gone(pid).await;
    });
}

/// From a plain thread, with the actor on another thread's arbiter,
/// `wait()` blocks until the task ends and returns its code.
#[test]
fn blocking_wait_from_a_plain_thread_returns_the_code() {
    let _system = actix_rt::System::new();
    let arbiter = actix_rt::Arbiter::new();
    let (tx, rx) = mpsc::channel();
    let popen = Popen::new("sh")
        .args(["-c", "sleep 0.2; exit 7"])
        .stdin(InputFrom::Null);
    let process = popen.start_in_arbiter(&arbiter.handle()).expect("spawn sh");
    let pid = process.pid().expect("pid");
    let waiting = process.clone();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(waiting.wait());
    });
    let code = rx
        .recv_timeout(common::EVENT_TIMEOUT)
        .expect("wait() did not return")
        .expect("wait");
    waiter.join().expect("waiting thread");
    assert_eq!(code, ReturnCode::from_raw(7));
    assert_eq!(process.try_wait(), Some(code));
    assert_eq!(process.wait().expect("wait again"), code);
    assert_gone(pid);
    arbiter.stop();
    arbiter.join().expect("arbiter thread");
}

/// Forwards `Started` into a std channel, for a test thread outside the
/// System that runs the process actor.
struct ForwardStarted(mpsc::Sender<Started>);

impl Actor for ForwardStarted {
    type Context = Context<Self>;
}

impl Handler<Started> for ForwardStarted {
    type Result = ();

    fn handle(&mut self, started: Started, _ctx: &mut Context<Self>) {
        let _ = self.0.send(started);
    }
}

/// When the actor's arbiter stops first, the child is cancelled and
/// reaped during the teardown, and a blocked `wait()` returns the status
/// that reap gave (SIGTERM) instead of blocking forever. (It used to say
/// `ActorGone` though the status was known: issue 8, kind 10.)
#[test]
fn blocking_wait_returns_the_status_when_the_arbiter_stops_first() {
    let _system = actix_rt::System::new();
    let arbiter = actix_rt::Arbiter::new();
    let (started_tx, started_rx) = mpsc::channel();
    let forward =
        ForwardStarted::start_in_arbiter(&arbiter.handle(), |_| ForwardStarted(started_tx));
    let popen = Popen::new("sleep")
        .arg("60")
        .stdin(InputFrom::Null)
        .cancel_timeout(Duration::from_secs(5))
        .start_listener(forward.recipient());
    let process = popen
        .start_in_arbiter(&arbiter.handle())
        .expect("spawn sleep");
    let pid = process.pid().expect("pid");
    let _cleanup = ReapOnDrop(pid);
    // The actor runs (and watches the child) once it has sent `Started`.
    let started = started_rx
        .recv_timeout(common::EVENT_TIMEOUT)
        .expect("Started");
    assert_eq!(started.pid, Some(pid));
    let (tx, rx) = mpsc::channel();
    let waiting = process.clone();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(waiting.wait());
    });
    arbiter.stop();
    arbiter.join().expect("arbiter thread");
    let result = rx
        .recv_timeout(common::EVENT_TIMEOUT)
        .expect("wait() did not return");
    waiter.join().expect("waiting thread");
    assert_eq!(result.ok(), Some(ReturnCode::from_raw(-15)));
    assert_eq!(
        process.try_wait(),
        Some(ReturnCode::from_raw(-15)),
        "poll agrees"
    );
    assert_eq!(process.pid(), None, "the child was reaped");
    assert_gone(pid);
}

/// The same, with the arbiter stopped before the actor ever ran: the child
/// spawned by `start_in_arbiter` must still be cancelled and reaped.
///
/// The stop is queued right behind the actor's start, so the arbiter
/// usually stops before it runs the actor's start at all (and sometimes
/// just after): ten rounds make the first case all but certain.
#[test]
fn arbiter_stopped_before_the_actor_ran_leaves_no_child() {
    let _system = actix_rt::System::new();
    for _ in 0..10 {
        let arbiter = actix_rt::Arbiter::new();
        let popen = Popen::new("sleep").arg("60").stdin(InputFrom::Null);
        let process = popen
            .start_in_arbiter(&arbiter.handle())
            .expect("spawn sleep");
        let pid = process.pid().expect("pid");
        let _cleanup = ReapOnDrop(pid);
        arbiter.stop();
        arbiter.join().expect("arbiter thread");
        assert_eq!(process.wait().ok(), Some(ReturnCode::from_raw(-15)));
        assert_gone(pid);
    }
}

/// The same with `Popen::start` in a System dropped right away, as when an
/// `#[actix::main]` starts a child and returns: actix polls the actor one
/// last time while dropping it, so its `started` runs with the reactor
/// already gone. That must neither panic nor leave the child behind.
#[test]
fn system_dropped_before_the_actor_ran_does_not_panic() {
    let this_thread = std::thread::current().id();
    let panicked = Arc::new(AtomicBool::new(false));
    let previous: Arc<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync> =
        Arc::from(std::panic::take_hook());
    {
        let (panicked, previous) = (panicked.clone(), previous.clone());
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() == this_thread {
                panicked.store(true, Ordering::SeqCst);
            }
            previous(info);
        }));
    }
    let system = actix_rt::System::new();
    let pid = system.block_on(async {
        let process = Popen::new("sleep")
            .arg("60")
            .stdin(InputFrom::Null)
            .start()
            .expect("spawn sleep");
        process.pid().expect("pid")
    });
    let _cleanup = ReapOnDrop(pid);
    drop(system);
    std::panic::set_hook(Box::new(move |info| previous(info)));
    assert!(
        !panicked.load(Ordering::SeqCst),
        "the library panicked while the System was dropped"
    );
    assert_gone(pid);
}
