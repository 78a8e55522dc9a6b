//! Job-control events: `Stopped` and `Continued` for a task's child, read
//! from its own pidfd at each SIGCHLD, never from another child.

mod common;

use actix::prelude::*;
use actix_popen::{Cancel, Continued, Popen, ProcessHandle, SendSignal, Signal, Stopped};
use futures::channel::mpsc;
use futures::StreamExt;

/// Either event, in the order they came.
#[derive(Debug, PartialEq)]
enum Event {
    Stopped(Stopped),
    Continued(Continued),
}

/// Forwards both events into a channel.
struct Watch(mpsc::UnboundedSender<Event>);

impl Actor for Watch {
    type Context = Context<Self>;
}

impl Handler<Stopped> for Watch {
    type Result = ();
    fn handle(&mut self, stopped: Stopped, _: &mut Context<Self>) {
        let _ = self.0.unbounded_send(Event::Stopped(stopped));
    }
}

impl Handler<Continued> for Watch {
    type Result = ();
    fn handle(&mut self, continued: Continued, _: &mut Context<Self>) {
        let _ = self.0.unbounded_send(Event::Continued(continued));
    }
}

/// Starts `popen` with a watch on its stops and continues.
fn watched(popen: Popen) -> (ProcessHandle, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded();
    let watch = Watch(tx).start();
    let task = popen
        .kill_on_drop(true)
        .stop_listener(watch.clone().recipient())
        .continue_listener(watch.recipient())
        .start()
        .expect("the child starts");
    (task, rx)
}

async fn next(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    common::within("a job-control event", events.next())
        .await
        .expect("the watch is gone")
}

#[test]
fn a_stop_and_a_continue_are_told_with_the_task_pid_and_signal() {
    common::bounded(async {
        let (task, mut events) = watched(Popen::new("sleep").arg("60"));
        let pid = task.pid().expect("running");
        for signal in [Signal::SIGSTOP, Signal::SIGTSTP] {
            task.send(SendSignal::to_child(signal))
                .await
                .expect("the actor runs")
                .expect("sent");
            assert_eq!(
                next(&mut events).await,
                Event::Stopped(Stopped::new(task.id(), pid, signal))
            );
            task.send(SendSignal::to_child(Signal::SIGCONT))
                .await
                .expect("the actor runs")
                .expect("sent");
            assert_eq!(
                next(&mut events).await,
                Event::Continued(Continued::new(task.id(), pid))
            );
        }
        task.do_send(Cancel);
        assert_eq!(common::async_wait(&task).await.code(), -15);
    });
}

#[test]
fn a_child_that_stops_itself_is_told_and_goes_on_once_continued() {
    common::bounded(async {
        let (sink, chunks) = common::actors::ChunkSink::start_new();
        let (tx, mut events) = mpsc::unbounded();
        let watch = Watch(tx).start();
        let task = Popen::new("sh")
            // (It then waits for its stdin to close: a child that exits
            // right after its continue may be told by its exit alone.)
            .args(["-c", "kill -TSTP $$; echo resumed; read _; exit 0"])
            .stdin(actix_popen::InputFrom::Pipe)
            .stop_listener(watch.clone().recipient())
            .continue_listener(watch.recipient())
            .subscribe(sink.recipient())
            .start()
            .expect("sh starts");
        match next(&mut events).await {
            Event::Stopped(stopped) => assert_eq!(stopped.signal, Signal::SIGTSTP),
            other => panic!("not a stop: {other:?}"),
        }
        task.send(SendSignal::to_child(Signal::SIGCONT))
            .await
            .expect("the actor runs")
            .expect("sent");
        assert!(matches!(next(&mut events).await, Event::Continued(_)));
        let mut chunks = chunks;
        common::actors::await_output(&mut chunks, b"resumed\n", common::SOON).await;
        task.do_send(actix_popen::CloseStdin);
        assert!(common::async_wait(&task).await.success());
    });
}

#[test]
fn another_childs_stop_is_left_to_its_own_parent() {
    common::bounded(async {
        let (task, mut events) = watched(Popen::new("sleep").arg("60"));
        // A child of the host that is not a task: its stop is for whoever
        // spawned it, here this test, to read.
        let mut stranger = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep starts");
        let stranger_pid = nix::unistd::Pid::from_raw(i32::try_from(stranger.id()).expect("a pid"));
        nix::sys::signal::kill(stranger_pid, nix::sys::signal::Signal::SIGSTOP)
            .expect("stop the stranger");
        // The task's own stop comes after, so the SIGCHLD of the
        // stranger's was seen by the task before.
        task.send(SendSignal::to_child(Signal::SIGSTOP))
            .await
            .expect("the actor runs")
            .expect("sent");
        match next(&mut events).await {
            Event::Stopped(stopped) => assert_eq!(Some(stopped.pid), task.pid()),
            other => panic!("not the task's stop: {other:?}"),
        }
        // The stranger's stop is still there for its parent.
        let status = nix::sys::wait::waitpid(
            stranger_pid,
            // (Blocking: SIGSTOP always stops it, if not yet then soon.)
            Some(nix::sys::wait::WaitPidFlag::WUNTRACED),
        )
        .expect("waitpid");
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Stopped(stranger_pid, nix::sys::signal::Signal::SIGSTOP)
        );
        let _ = stranger.kill();
        let _ = stranger.wait();
        task.do_send(Cancel);
        common::async_wait(&task).await;
    });
}
