//! The drain timeout (Go's `Cmd.WaitDelay`): after the child exited, wait
//! at most so long for EOF, then close the read ends and report `Exited`
//! with `output_complete: false`. Without it the task waits for EOF however
//! long a grandchild holds the output open (portage's behaviour).
//!
//! Each child here leaves a grandchild in its process group holding its
//! stdout. A [`Leftovers`] guard kills, on drop, every live member of that
//! group. (A grandchild whose parent exited belongs to init; an init that
//! does not reap leaves it a zombie, which counts as gone.)

mod common;

use common::SOON;

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::{
    AsyncWait, Cancel, Chunk, Collector, GetValue, IsAlive, Popen, ProcessHandle, ReturnCode,
    TryWait,
};
use futures::channel::oneshot;

use common::procs::{await_leader_exit, Leftovers};
use common::{Events, Waiter};

/// The drain timeout of these tests.
const DRAIN: Duration = Duration::from_millis(300);

/// The bound for the exit with a drain timeout.
const DRAINED_WITHIN: Duration = Duration::from_secs(5);

/// Leaves a grandchild holding stdout, then exits at once. The subshell
/// exits at once too, so `sleep` is nobody's child but init's.
const GRANDCHILD_HOLDS_STDOUT: &str = "(sleep 1000 &) ; echo main-done";

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

/// Drops every chunk (where a collector would grow without end).
struct Discard;

impl Actor for Discard {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Discard {
    type Result = ();

    fn handle(&mut self, _chunk: Chunk, _ctx: &mut Context<Self>) {}
}

/// A started child with a collector on its output and a waiter for its
/// exit; its group outlives the child while a grandchild is in it.
struct Task {
    handle: ProcessHandle,
    collector: Addr<Collector>,
    exited: oneshot::Receiver<Events>,
    group: Leftovers,
}

fn start_sh(script: &str, configure: impl FnOnce(Popen) -> Popen) -> Task {
    let collector = Collector::start_default();
    let (waiter, awaited) = Waiter::start_new();
    let handle = configure(Popen::new("sh").args(["-c", script]))
        .subscribe(collector.clone().recipient())
        .exit_listener(waiter.recipient())
        .start()
        .expect("cannot start sh");
    let group = Leftovers::of(&handle);
    Task {
        handle,
        collector,
        exited: awaited.exited,
        group,
    }
}

// ---------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------

#[test]
fn drain_timeout_ends_the_task_while_a_grandchild_holds_stdout() {
    common::bounded(async {
        let started = Instant::now();
        let task = start_sh(GRANDCHILD_HOLDS_STDOUT, |p| p.drain_timeout(DRAIN));

        let exited = tokio::time::timeout(DRAINED_WITHIN, task.exited)
            .await
            .expect("no Exited within the bound, despite the drain timeout")
            .expect("the waiter is gone")
            .exited[0];
        let elapsed = started.elapsed();
        eprintln!("Exited {elapsed:?} after the start, with a drain timeout of {DRAIN:?}");

        assert!(
            elapsed >= DRAIN,
            "Exited after {elapsed:?}, before the drain timeout"
        );
        assert_eq!(exited.returncode, ReturnCode::from_raw(0));
        assert_eq!(exited.cause, actix_popen::ExitCause::DrainTimedOut);
        assert_eq!(
            task.handle.cause(),
            Some(actix_popen::ExitCause::DrainTimedOut)
        );
        assert!(
            !exited.output_complete,
            "the output was held open, yet complete"
        );
        let output = task.collector.send(GetValue).await.expect("collector gone");
        assert_eq!(&output.stdout[..], b"main-done\n");
        assert_eq!(task.handle.pid(), None);
        assert_eq!(task.handle.try_wait(), Some(ReturnCode::from_raw(0)));
        assert_eq!(
            task.handle.send(TryWait).await.expect("actor gone"),
            Some(ReturnCode::from_raw(0))
        );
        assert!(!task.handle.send(IsAlive).await.expect("actor gone"));
        // The grandchild was left alone: it is the guard's to kill.
        assert!(!task.group.live().is_empty(), "the grandchild is gone");
    });
}

#[test]
fn drain_timeout_closes_the_read_ends_so_a_writing_grandchild_gets_sigpipe() {
    common::bounded(async {
        // The grandchild writes without end; once the read ends are closed its
        // next write raises SIGPIPE and it dies on its own.
        let task = start_sh("(yes &) ; echo main-done", |p| {
            p.drain_timeout(DRAIN)
                .subscribe(Discard.start().recipient())
        });
        let exited = tokio::time::timeout(DRAINED_WITHIN, task.exited)
            .await
            .expect("no Exited within the bound, despite the drain timeout")
            .expect("the waiter is gone")
            .exited[0];
        assert_eq!(exited.returncode, ReturnCode::from_raw(0));
        assert!(!exited.output_complete);
        task.group.await_empty(SOON).await;
    });
}

#[test]
fn output_closed_within_the_drain_timeout_is_complete() {
    common::bounded(async {
        // The grandchild writes after the child exited, then exits: EOF comes
        // well within the (generous) drain timeout.
        let task = start_sh("(sleep 0.1; echo late) & echo main-done", |p| {
            p.drain_timeout(SOON)
        });
        let exited = tokio::time::timeout(SOON, task.exited)
            .await
            .expect("no Exited in time")
            .expect("the waiter is gone")
            .exited[0];
        assert_eq!(exited.returncode, ReturnCode::from_raw(0));
        assert!(exited.output_complete);
        let output = task.collector.send(GetValue).await.expect("collector gone");
        assert_eq!(&output.stdout[..], b"main-done\nlate\n");
    });
}

#[test]
fn without_a_drain_timeout_the_task_waits_for_eof_until_cancelled() {
    common::bounded(async {
        let task = start_sh(GRANDCHILD_HOLDS_STDOUT, |p| p);
        await_leader_exit(&task.handle, SOON).await;

        // The child is gone, its output is not: the task goes on.
        assert!(task.handle.send(IsAlive).await.expect("actor gone"));
        assert_eq!(task.handle.send(TryWait).await.expect("actor gone"), None);
        assert!(!task.group.live().is_empty(), "the grandchild is gone");

        // Cancel signals the group (its leader reaped, its grandchild not).
        task.handle.do_send(Cancel);
        let code = tokio::time::timeout(SOON, task.handle.send(AsyncWait))
            .await
            .expect("the cancel did not end the task in time")
            .expect("actor gone")
            .expect("AsyncWait failed");
        // The child's own status: it exited with 0 before the cancel.
        assert_eq!(code, ReturnCode::from_raw(0));
        let exited = task.exited.await.expect("the waiter is gone").exited[0];
        assert_eq!(exited.returncode, code);
        assert!(exited.output_complete, "EOF came once the grandchild died");
        let output = task.collector.send(GetValue).await.expect("collector gone");
        assert_eq!(&output.stdout[..], b"main-done\n");
        task.group.await_empty(SOON).await;
    });
}

/// Takes each chunk slowly, on its own thread, and counts the bytes.
struct Slow(usize);

impl Actor for Slow {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Slow {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        std::thread::sleep(Duration::from_millis(30));
        self.0 += chunk.data.len();
    }
}

/// How many bytes a [`Slow`] has counted.
#[derive(Message)]
#[rtype(result = "usize")]
struct Count;

impl Handler<Count> for Slow {
    type Result = usize;

    fn handle(&mut self, _msg: Count, _ctx: &mut Context<Self>) -> usize {
        self.0
    }
}

/// The drain timeout cuts output held open by someone, never output that
/// is only being taken slowly: time spent waiting for a slow subscriber
/// does not count.
#[test]
fn a_slow_subscriber_loses_nothing_to_the_drain_timeout() {
    common::bounded(async {
        let arbiter = Arbiter::new();
        let slow = Slow::start_in_arbiter(&arbiter.handle(), |_| Slow(0));
        let (waiter, awaited) = Waiter::start_new();
        // 32 chunks at 30 ms each: about 1 s of draining after an exit that
        // comes at once, against a drain timeout of 300 ms.
        let handle = Popen::new("head")
            .args(["-c", "131072", "/dev/zero"])
            .bufsize(4096)
            .window(1)
            .drain_timeout(Duration::from_millis(300))
            .subscribe(slow.clone().recipient())
            .exit_listener(waiter.recipient())
            .start()
            .expect("cannot start head");
        let exited = awaited.exited.await.expect("no Exited").exited[0];
        assert_eq!(exited.returncode.code(), 0);
        assert!(exited.output_complete, "output was cut: {exited:?}");
        assert_eq!(slow.send(Count).await.unwrap(), 131072);
        assert_eq!(handle.pid(), None);
        arbiter.stop();
    });
}
