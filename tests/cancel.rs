//! Cancel (portage's `SubProcess._cancel`): SIGTERM to the child's process
//! group, SIGKILL after the cancel timeout, and nothing left behind.
//!
//! Every test waits for the child to say it is ready (a line on its stdout)
//! before cancelling: a SIGTERM sent before a shell ran its `trap` would
//! kill it at once and prove nothing. Every test checks at the end that its
//! child was reaped, and a [`Cleanup`] guard kills what it started if the
//! test fails half-way.

mod common;

use common::SOON;

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::SpawnErrorKind;
use actix_popen::{
    Cancel, Collector, Exited, GetPid, GetValue, IsAlive, Popen, ProcessHandle, ReturnCode, Start,
    TryWait, DEFAULT_CANCEL_TIMEOUT,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{getpgrp, getpid, Pid};

use common::actors::{ChunkSink, LineReader};
use common::procs::{await_dead, await_leader_exit, is_running, poll_until, proc_stat, Cleanup};
use common::{wait, GetEvents, Waiter};

/// How far past its deadline an escalation may run before we call it late.
const LATE: Duration = Duration::from_secs(5);

/// Ignores SIGTERM, says so, then sleeps; `sleep` inherits the ignored
/// disposition through `exec`, so only SIGKILL ends it.
const IGNORES_TERM: &str = r#"trap "" TERM; echo ready; exec sleep 1000"#;

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

/// A started task with what the tests need of it.
struct Task {
    handle: ProcessHandle,
    /// The child's pid, read right after the start.
    pid: i32,
    lines: LineReader,
    /// Keeps every `Exited` it is sent.
    exits: Addr<Waiter>,
    collector: Addr<Collector>,
    cleanup: Cleanup,
}

/// Starts `sh -c script` as configured by `configure`, subscribed to a line
/// reader, a collector and an exit log.
fn start_sh(script: &str, configure: impl FnOnce(Popen) -> Popen) -> Task {
    let (sink, rx) = ChunkSink::start_new();
    let collector = Collector::start_default();
    let (exits, _) = Waiter::start_new();
    let popen = configure(Popen::new("sh").args(["-c", script]))
        .subscribe(sink.recipient())
        .subscribe(collector.clone().recipient())
        .exit_listener(exits.clone().recipient());
    let handle = popen.start().expect("cannot start sh");
    let cleanup = Cleanup::default();
    let pid = cleanup.add(&handle);
    Task {
        handle,
        pid,
        lines: LineReader::new(rx, SOON),
        exits,
        collector,
        cleanup,
    }
}

/// Every `Exited` that `exits` got so far.
async fn exits_of(exits: &Addr<Waiter>) -> Vec<Exited> {
    exits.send(GetEvents).await.unwrap().exited
}

/// Our child `pid` is reaped, within a bound: neither running as our
/// child nor left as our zombie. A cancelled task's leader may be reaped a
/// moment after its exit event, once the supervisor has seen its group is
/// empty; nothing tells us when, so this polls /proc.
async fn assert_reaped(pid: i32) {
    let ours = || proc_stat(pid).is_some_and(|stat| stat.ppid == getpid().as_raw());
    poll_until(&format!("the reap of pid {pid}"), SOON, || !ours()).await;
}

/// Waits, with a deadline, for a grandchild to die. Reparented to init
/// when its parent died, it may stay a zombie of init for a moment: dead,
/// not ours to reap, and it counts as gone (see [`await_dead`]).
async fn assert_gone(pid: i32) {
    if !await_dead(pid, Instant::now() + SOON).await {
        panic!("pid {pid} survived the cancel: {:?}", proc_stat(pid));
    }
}

// ---------------------------------------------------------------------
// Escalation
// ---------------------------------------------------------------------

#[test]
fn child_ignoring_sigterm_gets_sigkill_after_the_cancel_timeout() {
    common::bounded(async {
        let timeout = Duration::from_millis(500);
        let mut task = start_sh(IGNORES_TERM, |p| p.cancel_timeout(timeout));
        assert_eq!(task.lines.next().await, "ready");

        let cancelled = Instant::now();
        task.handle.do_send(Cancel);
        let code = wait(&task.handle, timeout + SOON).await;
        let elapsed = cancelled.elapsed();

        assert_eq!(code, ReturnCode::from_raw(-9));
        assert!(
            elapsed >= timeout,
            "SIGKILL came after {elapsed:?}, before the cancel timeout"
        );
        assert!(
            elapsed < timeout + LATE,
            "SIGKILL came only after {elapsed:?}"
        );
        eprintln!("escalation with a 500 ms cancel timeout took {elapsed:?}");
        assert_reaped(task.pid).await;
    });
}

#[test]
fn default_cancel_timeout_is_one_second() {
    common::bounded(async {
        assert_eq!(DEFAULT_CANCEL_TIMEOUT, Duration::from_secs(1));
        let mut task = start_sh(IGNORES_TERM, |p| p);
        assert_eq!(task.lines.next().await, "ready");

        let cancelled = Instant::now();
        task.handle.do_send(Cancel);
        let code = wait(&task.handle, DEFAULT_CANCEL_TIMEOUT + SOON).await;
        let elapsed = cancelled.elapsed();

        assert_eq!(code, ReturnCode::from_raw(-9));
        assert!(
            elapsed >= DEFAULT_CANCEL_TIMEOUT,
            "SIGKILL came after {elapsed:?}"
        );
        assert!(
            elapsed < DEFAULT_CANCEL_TIMEOUT + LATE,
            "SIGKILL came only after {elapsed:?}"
        );
        eprintln!("escalation with the default cancel timeout took {elapsed:?}");
        assert_reaped(task.pid).await;
    });
}

#[test]
fn obedient_child_ends_with_sigterm() {
    common::bounded(async {
        // A long cancel timeout: were SIGTERM not enough, the wait would time out.
        let handle = Popen::new("sleep")
            .arg("100")
            .cancel_timeout(Duration::from_secs(60))
            .start()
            .expect("cannot start sleep");
        let cleanup = Cleanup::default();
        let pid = cleanup.add(&handle);

        let cancelled = Instant::now();
        handle.do_send(Cancel);
        let code = wait(&handle, SOON).await;

        assert_eq!(code, ReturnCode::from_raw(-15));
        eprintln!("SIGTERM ended sleep after {:?}", cancelled.elapsed());
        assert_eq!(handle.pid(), None, "pid still reported after the reap");
        assert_reaped(pid).await;
    });
}

// ---------------------------------------------------------------------
// Process groups
// ---------------------------------------------------------------------

#[test]
fn cancel_leaves_no_process_of_the_group_behind() {
    common::bounded(async {
        let mut task = start_sh("sleep 1000 & echo $!; sleep 1000 & echo $!; wait", |p| {
            p.cancel_timeout(Duration::from_secs(60))
        });
        let grandchildren = [task.lines.next_pid().await, task.lines.next_pid().await];
        for &pid in &grandchildren {
            let stat = proc_stat(pid).expect("the grandchild is not running");
            assert_eq!(
                stat.pgrp, task.pid,
                "the grandchild is not in the child's group"
            );
        }

        task.handle.do_send(Cancel);
        let code = wait(&task.handle, SOON).await;

        assert_eq!(code, ReturnCode::from_raw(-15));
        for pid in grandchildren {
            assert_gone(pid).await;
        }
        assert_reaped(task.pid).await;
    });
}

#[test]
fn grandchild_ignoring_sigterm_is_killed_with_the_group_after_the_cancel_timeout() {
    common::bounded(async {
        // The main shell dies of SIGTERM and is reaped at once; the grandchild
        // ignores it and keeps our stdout open, so the task can only end once
        // the group gets SIGKILL, after the cancel timeout.
        let timeout = Duration::from_millis(500);
        let mut task = start_sh(
            r#"(trap "" TERM; echo ready; exec sleep 1000) & echo $!; wait"#,
            |p| p.cancel_timeout(timeout),
        );
        let mut lines = [task.lines.next().await, task.lines.next().await];
        lines.sort(); // the pid and "ready" come in either order
        assert_eq!(lines[1], "ready");
        let grandchild: i32 = lines[0].parse().expect("no grandchild pid");

        let cancelled = Instant::now();
        task.handle.do_send(Cancel);
        let code = wait(&task.handle, timeout + SOON).await;
        let elapsed = cancelled.elapsed();

        // The task's return code is the main child's: SIGTERM, not SIGKILL.
        assert_eq!(code, ReturnCode::from_raw(-15));
        assert!(
            elapsed >= timeout,
            "the task ended after {elapsed:?}, before the SIGKILL"
        );
        assert!(
            elapsed < timeout + LATE,
            "the task ended only after {elapsed:?}"
        );
        assert_gone(grandchild).await;
        let exits = exits_of(&task.exits).await;
        assert_eq!(exits.len(), 1);
        assert_eq!(exits[0].returncode, code);
        assert!(
            exits[0].output_complete,
            "EOF was reached once the grandchild died"
        );
        assert_reaped(task.pid).await;
    });
}

#[test]
fn without_a_process_group_cancel_signals_only_the_child() {
    common::bounded(async {
        let mut task = start_sh("sleep 1000 & echo $!; wait", |p| {
            // A long cancel timeout, so that the escalation cannot release the
            // task while the grandchild holds its output.
            p.process_group(false)
                .cancel_timeout(Duration::from_secs(60))
        });
        let grandchild = task.lines.next_pid().await;
        task.cleanup.add_pid(grandchild);
        assert_eq!(
            proc_stat(task.pid).expect("the child is not running").pgrp,
            getpgrp().as_raw(),
            "the child should stay in our process group"
        );

        task.handle.do_send(Cancel);
        await_leader_exit(&task.handle, SOON).await;

        assert!(
            is_running(grandchild),
            "the grandchild got the child's signal"
        );
        assert!(
            task.handle.send(IsAlive).await.unwrap(),
            "the task ended with its output open"
        );
        assert_eq!(task.handle.send(TryWait).await.unwrap(), None);
        assert_eq!(task.handle.try_wait(), None);

        // Closing the output is up to us: the task ends at EOF.
        kill(Pid::from_raw(grandchild), Signal::SIGKILL).expect("cannot kill the grandchild");
        let code = wait(&task.handle, SOON).await;
        assert_eq!(code, ReturnCode::from_raw(-15));
        assert_gone(grandchild).await;
        let exits = exits_of(&task.exits).await;
        assert_eq!(exits.len(), 1);
        assert!(exits[0].output_complete);
        assert_reaped(task.pid).await;
    });
}

#[test]
fn task_is_released_when_its_output_stays_open_after_the_escalation() {
    common::bounded(async {
        // Without a group, nothing we may signal holds the output: after
        // SIGTERM, a cancel timeout, SIGKILL (to nobody) and another cancel
        // timeout, the task gives up on its output and ends.
        let timeout = Duration::from_millis(200);
        let mut task = start_sh("sleep 1000 & echo $!; wait", |p| {
            p.process_group(false).cancel_timeout(timeout)
        });
        let grandchild = task.lines.next_pid().await;
        task.cleanup.add_pid(grandchild);

        let cancelled = Instant::now();
        task.handle.do_send(Cancel);
        let code = wait(&task.handle, 2 * timeout + SOON).await;
        let elapsed = cancelled.elapsed();

        assert_eq!(code, ReturnCode::from_raw(-15));
        assert!(elapsed >= 2 * timeout, "released after {elapsed:?}");
        let exits = exits_of(&task.exits).await;
        assert_eq!(exits.len(), 1);
        assert!(!exits[0].output_complete, "the output was cut short");
        assert!(
            is_running(grandchild),
            "nobody should have signalled the grandchild"
        );

        kill(Pid::from_raw(grandchild), Signal::SIGKILL).expect("cannot kill the grandchild");
        assert_gone(grandchild).await;
        assert_reaped(task.pid).await;
    });
}

#[test]
fn grandchild_holding_stdout_keeps_the_task_alive_until_cancel() {
    common::bounded(async {
        let mut task = start_sh("sleep 1000 & echo $!; exit 0", |p| {
            // A long cancel timeout: the group must go on SIGTERM alone.
            p.cancel_timeout(Duration::from_secs(60))
        });
        let grandchild = task.lines.next_pid().await;

        await_leader_exit(&task.handle, SOON).await;
        assert_eq!(
            task.handle.send(GetPid).await.unwrap(),
            Some(task.pid as u32),
            "the exited leader stays our zombie while its task goes on"
        );
        assert!(
            task.handle.send(IsAlive).await.unwrap(),
            "the task ended with its output open"
        );
        assert_eq!(task.handle.send(TryWait).await.unwrap(), None);
        assert!(is_running(grandchild));

        // The group outlives its leader; Cancel reaches it all the same.
        task.handle.do_send(Cancel);
        let code = wait(&task.handle, SOON).await;

        assert_eq!(
            code,
            ReturnCode::from_raw(0),
            "the main child's own exit status"
        );
        assert_gone(grandchild).await;
        let exits = exits_of(&task.exits).await;
        assert_eq!(exits.len(), 1);
        assert_eq!(exits[0].returncode, code);
        assert!(exits[0].output_complete);
        assert_reaped(task.pid).await;
    });
}

#[test]
fn cancel_after_the_leader_exited_kills_a_grandchild_ignoring_sigterm() {
    common::bounded(async {
        // The leader exits at once and is reaped; the grandchild ignores
        // SIGTERM and holds the output. Cancel must still take the group down:
        // SIGTERM, then SIGKILL after the cancel timeout.
        let timeout = Duration::from_millis(500);
        let mut task = start_sh(r#"trap "" TERM; sleep 1000 & echo $!; exit 0"#, |p| {
            p.cancel_timeout(timeout)
        });
        let grandchild = task.lines.next_pid().await;
        await_leader_exit(&task.handle, SOON).await;
        assert_eq!(
            task.handle.try_wait(),
            None,
            "the task ended with its output open"
        );

        let cancelled = Instant::now();
        task.handle.do_send(Cancel);
        let code = wait(&task.handle, timeout + SOON).await;
        let elapsed = cancelled.elapsed();

        assert_eq!(
            code,
            ReturnCode::from_raw(0),
            "the main child's own exit status"
        );
        assert!(
            elapsed >= timeout,
            "the task ended after {elapsed:?}, before the SIGKILL"
        );
        assert!(
            elapsed < timeout + LATE,
            "the task ended only after {elapsed:?}"
        );
        assert_gone(grandchild).await;
        assert_reaped(task.pid).await;
    });
}

#[test]
fn escalation_reaches_a_task_on_another_arbiter() {
    common::bounded(async {
        // The supervisor's timers run on the System's arbiter; the task on
        // another one.
        let timeout = Duration::from_millis(300);
        let arbiter = Arbiter::new();
        let (sink, rx) = ChunkSink::start_new();
        let popen = Popen::new("sh")
            .args(["-c", IGNORES_TERM])
            .cancel_timeout(timeout)
            .subscribe(sink.recipient());
        let handle = popen
            .start_in_arbiter(&arbiter.handle())
            .expect("cannot start sh");
        let cleanup = Cleanup::default();
        let pid = cleanup.add(&handle);
        let mut lines = LineReader::new(rx, SOON);
        assert_eq!(lines.next().await, "ready");

        let cancelled = Instant::now();
        handle.do_send(Cancel);
        let code = wait(&handle, timeout + SOON).await;
        let elapsed = cancelled.elapsed();

        assert_eq!(code, ReturnCode::from_raw(-9));
        assert!(elapsed >= timeout, "SIGKILL came after {elapsed:?}");
        assert!(
            elapsed < timeout + LATE,
            "SIGKILL came only after {elapsed:?}"
        );
        assert_reaped(pid).await;
        arbiter.stop();
        actix_rt::task::spawn_blocking(move || arbiter.join())
            .await
            .unwrap()
            .expect("the arbiter's thread panicked");
    });
}

/// Regression: the first signals of a cancel went through the
/// supervisor, on the System's arbiter; with that arbiter not running (a
/// thread that made a System, started the task on another arbiter and
/// blocks in `wait()`, as `start_in_arbiter`'s docs suggest), nothing was
/// sent and `wait()` never returned.
#[test]
fn a_cancel_signals_at_once_even_when_the_systems_arbiter_is_blocked() {
    let system = System::new(); // its event loop never runs in this test
    let arbiter = Arbiter::new();
    let handle = Popen::new("sleep")
        .arg("60")
        .start_in_arbiter(&arbiter.handle())
        .expect("cannot start sleep");
    // The bound: should the SIGTERM never come, a SIGKILL through the
    // task (never sent once its child was reaped) ends the wait, and the
    // code says so.
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let task = handle.clone();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(SOON).is_err() {
            task.do_send(actix_popen::SendSignal::to_group(
                actix_popen::Signal::SIGKILL,
            ));
        }
    });
    handle.do_send(Cancel);
    let code = handle.wait().expect("a status");
    let _ = done.send(());
    watchdog.join().expect("the watchdog panicked");
    assert_eq!(code, ReturnCode::from_raw(-15), "SIGTERM never came");
    arbiter.stop();
    arbiter.join().expect("the arbiter's thread panicked");
    drop(system);
}

// ---------------------------------------------------------------------
// Repeated and late cancels
// ---------------------------------------------------------------------

#[test]
fn second_cancel_starts_no_second_escalation() {
    common::bounded(async {
        // The shell reports every SIGTERM it gets; its foreground `sleep` dies
        // of each one, and the loop starts another.
        let timeout = Duration::from_millis(500);
        let mut task = start_sh(
            r#"trap "echo term" TERM; echo ready; while :; do sleep 0.1; done"#,
            |p| p.cancel_timeout(timeout),
        );
        assert_eq!(task.lines.next().await, "ready");

        let cancelled = Instant::now();
        task.handle.do_send(Cancel);
        assert_eq!(task.lines.next().await, "term");
        // Had these started escalations of their own, the shell would print
        // "term" again before the first SIGKILL.
        task.handle.do_send(Cancel);
        task.handle.do_send(Cancel);
        let code = wait(&task.handle, timeout + SOON).await;
        let elapsed = cancelled.elapsed();

        assert_eq!(code, ReturnCode::from_raw(-9));
        assert!(elapsed >= timeout, "SIGKILL came after {elapsed:?}");
        assert!(
            elapsed < timeout + LATE,
            "SIGKILL came only after {elapsed:?}"
        );
        let output = task.collector.send(GetValue).await.unwrap();
        assert_eq!(&output.stdout[..], b"ready\nterm\n");

        task.handle.do_send(Cancel);
        assert_eq!(wait(&task.handle, SOON).await, code);
        let exits = exits_of(&task.exits).await;
        assert_eq!(exits.len(), 1, "one exit event: {exits:?}");
        assert_reaped(task.pid).await;
    });
}

#[test]
fn cancel_after_the_exit_changes_nothing() {
    common::bounded(async {
        let task = start_sh("echo done; exit 3", |p| p);
        let code = wait(&task.handle, SOON).await;
        assert_eq!(code, ReturnCode::from_raw(3));

        task.handle.do_send(Cancel);
        task.handle.do_send(Cancel);
        assert_eq!(wait(&task.handle, SOON).await, code);
        assert_eq!(task.handle.send(TryWait).await.unwrap(), Some(code));
        assert_eq!(task.handle.try_wait(), Some(code));
        assert!(!task.handle.send(IsAlive).await.unwrap());
        assert_eq!(task.handle.pid(), None);

        let exits = exits_of(&task.exits).await;
        assert_eq!(exits.len(), 1, "one exit event: {exits:?}");
        assert_eq!(exits[0].returncode, code);
        assert_eq!(exits[0].pid, Some(task.pid as u32));
        let output = task.collector.send(GetValue).await.unwrap();
        assert_eq!(&output.stdout[..], b"done\n");
        assert_reaped(task.pid).await;
    });
}

#[test]
fn cancel_before_the_start_ends_the_task_as_cancelled() {
    common::bounded(async {
        let (exits, _) = Waiter::start_new();
        let handle = Popen::new("sleep")
            .arg("100")
            .exit_listener(exits.clone().recipient())
            .prepare()
            .expect("cannot prepare the task");

        handle.do_send(Cancel);
        let code = wait(&handle, SOON).await;

        assert_eq!(code, ReturnCode::CANCELLED);
        assert_eq!(handle.pid(), None, "no child should have run");
        match handle.send(Start).await.unwrap() {
            Err(ref e) if matches!(e.kind(), SpawnErrorKind::AlreadyStarted) => {}
            other => panic!("a cancelled task started: {other:?}"),
        }
        let exits = exits_of(&exits).await;
        assert_eq!(exits.len(), 1);
        assert_eq!(exits[0].returncode, ReturnCode::CANCELLED);
        assert_eq!(exits[0].pid, None);
    });
}

// ---------------------------------------------------------------------
// Kill on drop
// ---------------------------------------------------------------------

/// With `kill_on_drop(true)`, dropping the last handle cancels the task,
/// running or not yet started.
#[test]
fn kill_on_drop_cancels_a_task_once_every_handle_is_dropped() {
    common::bounded(async {
        let (waiter, awaited) = Waiter::start_new();
        let handle = Popen::new("sleep")
            .arg("60")
            .kill_on_drop(true)
            .exit_listener(waiter.recipient())
            .start()
            .expect("sleep starts");
        let pid = handle.pid().expect("running") as i32;
        let copy = handle.clone();
        drop(handle);
        assert!(is_running(pid), "one handle is left: nothing happens");
        drop(copy);
        let exited = common::event("Exited", awaited.exited).await.exited[0];
        assert_eq!(exited.returncode, ReturnCode::from_raw(-15));
        assert_eq!(exited.cause, actix_popen::ExitCause::Cancelled);
        assert_reaped(pid).await;

        // A task not started yet ends as cancelled, never running.
        let (waiter, awaited) = Waiter::start_new();
        let prepared = Popen::new("true")
            .kill_on_drop(true)
            .exit_listener(waiter.recipient())
            .prepare()
            .expect("prepared");
        drop(prepared);
        let exited = common::event("Exited", awaited.exited).await.exited[0];
        assert_eq!(exited.returncode, ReturnCode::CANCELLED);
        assert_eq!(exited.pid, None);
    });
}

/// By default, dropping every handle leaves the task running to its end:
/// its piped stdin closes, and the child ends by itself.
#[test]
fn without_kill_on_drop_a_task_outlives_its_handles() {
    common::bounded(async {
        let (waiter, awaited) = Waiter::start_new();
        let handle = Popen::new("sh")
            .args(["-c", "read line; exit 5"])
            .stdin(actix_popen::InputFrom::Pipe)
            .exit_listener(waiter.recipient())
            .start()
            .expect("sh starts");
        drop(handle);
        let exited = common::event("Exited", awaited.exited).await.exited[0];
        assert_eq!(exited.returncode, ReturnCode::from_raw(5));
        assert_eq!(exited.cause, actix_popen::ExitCause::Exited);
    });
}

/// Regression: a group member still alive when the task ended (it had
/// closed its output; it ignores SIGTERM and exits a moment later) kept
/// the leader unreaped until the cancel timeout (here 60 s): the look the
/// supervisor takes when the task ends found the group alive, and nothing
/// looked again before the deadline.
#[test]
fn a_member_that_outlives_the_task_briefly_does_not_delay_the_reap() {
    common::bounded(async {
        let mut task = start_sh(
            // The member says its pid once it ignores SIGTERM.
            "sh -c \"trap '' TERM; echo \\$\\$; exec >/dev/null 2>&1; sleep 0.5\" & wait",
            |p| p.cancel_timeout(Duration::from_secs(60)),
        );
        let member = task.lines.next_pid().await;
        task.handle.do_send(Cancel);
        assert_eq!(wait(&task.handle, SOON).await, ReturnCode::from_raw(-15));
        assert!(is_running(member), "the member outlived the task");
        let ours = || proc_stat(task.pid).is_some_and(|stat| stat.ppid == getpid().as_raw());
        poll_until(
            "the reap, well before the 60 s cancel timeout",
            Duration::from_secs(10),
            || !ours(),
        )
        .await;
        assert!(!is_running(member), "the reap came before the member's end");
    });
}

/// `Popen::cancel_signal` is the first signal of a `Cancel`, of the run
/// timeout and of `kill_on_drop`, each ending a `sleep` with it.
#[test]
fn a_chosen_cancel_signal_is_the_first_of_every_cancel() {
    use actix_popen::{ExitCause, Signal as Sig};
    common::bounded(async {
        let sleeping = |signal: Sig| {
            Popen::new("sleep")
                .arg("60")
                .cancel_signal(signal)
                .cancel_timeout(Duration::from_secs(60))
        };

        let task = sleeping(Sig::SIGINT).start().expect("sleep starts");
        task.send(Cancel).await.expect("the actor runs");
        let code = common::async_wait(&task).await;
        assert_eq!(code.signal(), Some(Sig::SIGINT.as_raw()));
        assert_eq!(task.cause(), Some(ExitCause::Cancelled));

        let task = sleeping(Sig::SIGUSR1)
            .timeout(Duration::from_millis(50))
            .start()
            .expect("sleep starts");
        let code = common::async_wait(&task).await;
        assert_eq!(code.signal(), Some(Sig::SIGUSR1.as_raw()));
        assert_eq!(task.cause(), Some(ExitCause::TimedOut));

        let (waiter, awaited) = Waiter::start_new();
        let task = sleeping(Sig::SIGHUP)
            .kill_on_drop(true)
            .exit_listener(waiter.recipient())
            .start()
            .expect("sleep starts");
        drop(task);
        let exited = common::event("Exited", awaited.exited).await.exited[0];
        assert_eq!(exited.returncode.signal(), Some(Sig::SIGHUP.as_raw()));
        assert_eq!(exited.cause, ExitCause::Cancelled);
    });
}
