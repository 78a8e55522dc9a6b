//! Cancel (portage's `SubProcess._cancel`): SIGTERM to the child's process
//! group, SIGKILL after the cancel timeout, and nothing left behind.
//!
//! Every test waits for the child to say it is ready (a line on its stdout)
//! before cancelling: a SIGTERM sent before a shell ran its `trap` would
//! kill it at once and prove nothing. Every test checks at the end that its
//! child was reaped, and a [`Cleanup`] guard kills what it started if the
//! test fails half-way.

use std::fs;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::{
    AsyncWait, Cancel, Chunk, Collector, Exited, GetPid, GetValue, IsAlive, Poll, Popen,
    PopenProcess, ProcessHandle, ReturnCode, SpawnError, Start, Stream, DEFAULT_CANCEL_TIMEOUT,
};
use futures::channel::mpsc;
use futures::StreamExt;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{getpgrp, getpid, Pid};

/// The bound for anything that should happen "at once". Generous: the
/// machine is shared and other builds run on it.
const SOON: Duration = Duration::from_secs(10);

/// How far past its deadline an escalation may run before we call it late.
const LATE: Duration = Duration::from_secs(5);

/// Ignores SIGTERM, says so, then sleeps; `sleep` inherits the ignored
/// disposition through `exec`, so only SIGKILL ends it.
const IGNORES_TERM: &str = r#"trap "" TERM; echo ready; exec sleep 1000"#;

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

/// Forwards the bytes of every chunk it is sent into a channel. It keeps
/// no `Chunk`, so it never holds back the reader's window.
struct ChunkSink(mpsc::UnboundedSender<(Stream, Vec<u8>)>);

impl Actor for ChunkSink {
    type Context = Context<Self>;
}

impl Handler<Chunk> for ChunkSink {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        let _ = self.0.unbounded_send((chunk.stream, chunk.data.to_vec()));
    }
}

/// Keeps every [`Exited`] it is sent.
#[derive(Default)]
struct ExitLog(Vec<Exited>);

impl Actor for ExitLog {
    type Context = Context<Self>;
}

impl Handler<Exited> for ExitLog {
    type Result = ();

    fn handle(&mut self, exited: Exited, _ctx: &mut Context<Self>) {
        self.0.push(exited);
    }
}

/// Asks an [`ExitLog`] for every [`Exited`] it got so far.
#[derive(Message)]
#[rtype(result = "Vec<Exited>")]
struct TakeExits;

impl Handler<TakeExits> for ExitLog {
    type Result = MessageResult<TakeExits>;

    fn handle(&mut self, _msg: TakeExits, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(std::mem::take(&mut self.0))
    }
}

/// The child's stdout, line by line, as it arrives.
struct Lines {
    chunks: mpsc::UnboundedReceiver<(Stream, Vec<u8>)>,
    buf: Vec<u8>,
}

impl Lines {
    /// The next whole line, without its `\n`.
    async fn next(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return String::from_utf8_lossy(&line[..end]).into_owned();
            }
            let (stream, data) = tokio::time::timeout(SOON, self.chunks.next())
                .await
                .expect("the child wrote no line in time")
                .expect("the output ended before a whole line");
            if stream == Stream::Stdout {
                self.buf.extend_from_slice(&data);
            }
        }
    }

    /// The next line, which must be a pid printed by the child (`$!`).
    async fn next_pid(&mut self) -> i32 {
        let line = self.next().await;
        line.parse()
            .unwrap_or_else(|_| panic!("expected a pid from the child, got {line:?}"))
    }
}

/// Kills, if the test fails, every process group and process it was told
/// about, and reaps those that are our children, so that a failed test
/// leaves nothing running. On success
/// everything is already gone and it does nothing (a pid that ended may
/// since belong to a stranger).
#[derive(Default)]
struct Cleanup {
    groups: Vec<i32>,
    pids: Vec<i32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let me = getpid().as_raw();
        for &group in &self.groups {
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
        for &pid in self.groups.iter().chain(&self.pids) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            // Reap a child of ours left unreaped, or it stays our zombie.
            if proc_stat(pid).is_some_and(|stat| stat.ppid == me) {
                let _ = waitpid(Pid::from_raw(pid), None);
            }
        }
    }
}

/// A started task with what the tests need of it.
struct Task {
    handle: ProcessHandle,
    /// The child's pid, read right after the start.
    pid: i32,
    lines: Lines,
    exits: Addr<ExitLog>,
    collector: Addr<Collector>,
    cleanup: Cleanup,
}

/// Starts `sh -c script` as configured by `configure`, subscribed to a line
/// reader, a collector and an exit log.
fn start_sh(script: &str, configure: impl FnOnce(Popen) -> Popen) -> Task {
    let (tx, rx) = mpsc::unbounded();
    let collector = Collector::start_default();
    let exits = ExitLog::default().start();
    let popen = configure(Popen::new("sh").args(["-c", script]))
        .subscribe(ChunkSink(tx).start().recipient())
        .subscribe(collector.clone().recipient())
        .exit_listener(exits.clone().recipient());
    let handle = popen.start().expect("cannot start sh");
    let pid = handle.pid().expect("no pid right after the start") as i32;
    let mut cleanup = Cleanup::default();
    // Only a child that leads its own group may have its group killed:
    // otherwise the group is ours.
    if proc_stat(pid).is_some_and(|stat| stat.pgrp == pid) {
        cleanup.groups.push(pid);
    } else {
        cleanup.pids.push(pid);
    }
    Task {
        handle,
        pid,
        lines: Lines {
            chunks: rx,
            buf: Vec::new(),
        },
        exits,
        collector,
        cleanup,
    }
}

/// Waits, with a bound, for the task's return code.
async fn wait(handle: &ProcessHandle, within: Duration) -> ReturnCode {
    tokio::time::timeout(within, handle.send(AsyncWait))
        .await
        .unwrap_or_else(|_| panic!("the task did not end within {within:?}"))
        .expect("the process actor is gone")
        .expect("AsyncWait failed")
}

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, Copy)]
struct Stat {
    state: char,
    ppid: i32,
    pgrp: i32,
}

fn proc_stat(pid: i32) -> Option<Stat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: skip past the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat { state, ppid, pgrp })
}

/// Whether `pid` runs (exists and is not a zombie).
fn is_running(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|stat| stat.state != 'Z')
}

/// Our child `pid` was reaped: it is neither running as our child nor left
/// as our zombie.
fn assert_reaped(pid: i32) {
    if let Some(stat) = proc_stat(pid) {
        assert!(
            stat.ppid != getpid().as_raw(),
            "pid {pid} is still our child, in state {:?} (a zombie if 'Z')",
            stat.state
        );
    }
}

/// Waits for a grandchild to die. Reparented to init when its parent died,
/// it may stay a zombie of init for a moment: dead, not ours to reap, and
/// it counts as gone. A grandchild cannot tell us when it dies, so this
/// polls /proc, with a deadline.
async fn assert_gone(pid: i32) {
    let deadline = Instant::now() + SOON;
    loop {
        match proc_stat(pid) {
            None => return,
            Some(stat) if stat.state == 'Z' && stat.ppid != getpid().as_raw() => return,
            Some(stat) if Instant::now() >= deadline => {
                panic!("pid {pid} survived the cancel: {stat:?}")
            }
            Some(_) => actix::clock::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Waits until the task's child was reaped while the task goes on (its
/// output is still open). The actor sends no message for the reap alone,
/// so this polls [`ProcessHandle::pid`], with a deadline.
async fn await_reap(handle: &ProcessHandle) {
    let deadline = Instant::now() + SOON;
    while handle.pid().is_some() {
        assert!(
            Instant::now() < deadline,
            "the child was not reaped in time"
        );
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------
// Escalation
// ---------------------------------------------------------------------

#[actix_rt::test]
async fn child_ignoring_sigterm_gets_sigkill_after_the_cancel_timeout() {
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
    assert_reaped(task.pid);
}

#[actix_rt::test]
async fn default_cancel_timeout_is_one_second() {
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
    assert_reaped(task.pid);
}

#[actix_rt::test]
async fn obedient_child_ends_with_sigterm() {
    // A long cancel timeout: were SIGTERM not enough, the wait would time out.
    let handle = Popen::new("sleep")
        .arg("100")
        .cancel_timeout(Duration::from_secs(60))
        .start()
        .expect("cannot start sleep");
    let pid = handle.pid().expect("no pid") as i32;
    let _cleanup = Cleanup {
        groups: vec![pid],
        pids: Vec::new(),
    };

    let cancelled = Instant::now();
    handle.do_send(Cancel);
    let code = wait(&handle, SOON).await;

    assert_eq!(code, ReturnCode::from_raw(-15));
    eprintln!("SIGTERM ended sleep after {:?}", cancelled.elapsed());
    assert_eq!(handle.pid(), None, "pid still reported after the reap");
    assert_reaped(pid);
}

// ---------------------------------------------------------------------
// Process groups
// ---------------------------------------------------------------------

#[actix_rt::test]
async fn cancel_leaves_no_process_of_the_group_behind() {
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
    assert_reaped(task.pid);
}

#[actix_rt::test]
async fn grandchild_ignoring_sigterm_is_killed_with_the_group_after_the_cancel_timeout() {
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
    let exits = task.exits.send(TakeExits).await.unwrap();
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0].returncode, code);
    assert!(
        exits[0].output_complete,
        "EOF was reached once the grandchild died"
    );
    assert_reaped(task.pid);
}

#[actix_rt::test]
async fn without_a_process_group_cancel_signals_only_the_child() {
    let mut task = start_sh("sleep 1000 & echo $!; wait", |p| {
        // A long cancel timeout, so that the escalation cannot release the
        // task while the grandchild holds its output.
        p.process_group(false)
            .cancel_timeout(Duration::from_secs(60))
    });
    let grandchild = task.lines.next_pid().await;
    task.cleanup.pids.push(grandchild);
    assert_eq!(
        proc_stat(task.pid).expect("the child is not running").pgrp,
        getpgrp().as_raw(),
        "the child should stay in our process group"
    );

    task.handle.do_send(Cancel);
    await_reap(&task.handle).await;

    assert!(
        is_running(grandchild),
        "the grandchild got the child's signal"
    );
    assert!(
        task.handle.send(IsAlive).await.unwrap(),
        "the task ended with its output open"
    );
    assert_eq!(task.handle.send(Poll).await.unwrap(), None);
    assert_eq!(task.handle.poll(), None);

    // Closing the output is up to us: the task ends at EOF.
    kill(Pid::from_raw(grandchild), Signal::SIGKILL).expect("cannot kill the grandchild");
    let code = wait(&task.handle, SOON).await;
    assert_eq!(code, ReturnCode::from_raw(-15));
    assert_gone(grandchild).await;
    let exits = task.exits.send(TakeExits).await.unwrap();
    assert_eq!(exits.len(), 1);
    assert!(exits[0].output_complete);
    assert_reaped(task.pid);
}

#[actix_rt::test]
async fn task_is_released_when_its_output_stays_open_after_the_escalation() {
    // Without a group, nothing we may signal holds the output: after
    // SIGTERM, a cancel timeout, SIGKILL (to nobody) and another cancel
    // timeout, the task gives up on its output and ends.
    let timeout = Duration::from_millis(200);
    let mut task = start_sh("sleep 1000 & echo $!; wait", |p| {
        p.process_group(false).cancel_timeout(timeout)
    });
    let grandchild = task.lines.next_pid().await;
    task.cleanup.pids.push(grandchild);

    let cancelled = Instant::now();
    task.handle.do_send(Cancel);
    let code = wait(&task.handle, 2 * timeout + SOON).await;
    let elapsed = cancelled.elapsed();

    assert_eq!(code, ReturnCode::from_raw(-15));
    assert!(elapsed >= 2 * timeout, "released after {elapsed:?}");
    let exits = task.exits.send(TakeExits).await.unwrap();
    assert_eq!(exits.len(), 1);
    assert!(!exits[0].output_complete, "the output was cut short");
    assert!(
        is_running(grandchild),
        "nobody should have signalled the grandchild"
    );

    kill(Pid::from_raw(grandchild), Signal::SIGKILL).expect("cannot kill the grandchild");
    assert_gone(grandchild).await;
    assert_reaped(task.pid);
}

#[actix_rt::test]
async fn grandchild_holding_stdout_keeps_the_task_alive_until_cancel() {
    let mut task = start_sh("sleep 1000 & echo $!; exit 0", |p| {
        // A long cancel timeout: the group must go on SIGTERM alone.
        p.cancel_timeout(Duration::from_secs(60))
    });
    let grandchild = task.lines.next_pid().await;

    await_reap(&task.handle).await;
    assert_eq!(task.handle.send(GetPid).await.unwrap(), None);
    assert!(
        task.handle.send(IsAlive).await.unwrap(),
        "the task ended with its output open"
    );
    assert_eq!(task.handle.send(Poll).await.unwrap(), None);
    assert!(is_running(grandchild));

    // The group outlives its reaped leader; Cancel reaches it all the same.
    task.handle.do_send(Cancel);
    let code = wait(&task.handle, SOON).await;

    assert_eq!(
        code,
        ReturnCode::from_raw(0),
        "the main child's own exit status"
    );
    assert_gone(grandchild).await;
    let exits = task.exits.send(TakeExits).await.unwrap();
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0].returncode, code);
    assert!(exits[0].output_complete);
    assert_reaped(task.pid);
}

#[actix_rt::test]
async fn cancel_after_the_leader_exited_kills_a_grandchild_ignoring_sigterm() {
    // The leader exits at once and is reaped; the grandchild ignores
    // SIGTERM and holds the output. Cancel must still take the group down:
    // SIGTERM, then SIGKILL after the cancel timeout.
    let timeout = Duration::from_millis(500);
    let mut task = start_sh(r#"trap "" TERM; sleep 1000 & echo $!; exit 0"#, |p| {
        p.cancel_timeout(timeout)
    });
    let grandchild = task.lines.next_pid().await;
    await_reap(&task.handle).await;
    assert_eq!(
        task.handle.poll(),
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
    assert_reaped(task.pid);
}

#[actix_rt::test]
async fn escalation_reaches_a_task_on_another_arbiter() {
    // The supervisor's timers run on the System's arbiter; the task on
    // another one.
    let timeout = Duration::from_millis(300);
    let arbiter = Arbiter::new();
    let (tx, rx) = mpsc::unbounded();
    let popen = Popen::new("sh")
        .args(["-c", IGNORES_TERM])
        .cancel_timeout(timeout)
        .subscribe(ChunkSink(tx).start().recipient());
    let handle = PopenProcess::start_in_arbiter(popen, &arbiter.handle()).expect("cannot start sh");
    let pid = handle.pid().expect("no pid") as i32;
    let _cleanup = Cleanup {
        groups: vec![pid],
        pids: Vec::new(),
    };
    let mut lines = Lines {
        chunks: rx,
        buf: Vec::new(),
    };
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
    assert_reaped(pid);
    arbiter.stop();
    actix_rt::task::spawn_blocking(move || arbiter.join())
        .await
        .unwrap()
        .expect("the arbiter's thread panicked");
}

// ---------------------------------------------------------------------
// Repeated and late cancels
// ---------------------------------------------------------------------

#[actix_rt::test]
async fn second_cancel_starts_no_second_escalation() {
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
    let exits = task.exits.send(TakeExits).await.unwrap();
    assert_eq!(exits.len(), 1, "one exit event: {exits:?}");
    assert_reaped(task.pid);
}

#[actix_rt::test]
async fn cancel_after_the_exit_changes_nothing() {
    let task = start_sh("echo done; exit 3", |p| p);
    let code = wait(&task.handle, SOON).await;
    assert_eq!(code, ReturnCode::from_raw(3));

    task.handle.do_send(Cancel);
    task.handle.do_send(Cancel);
    assert_eq!(wait(&task.handle, SOON).await, code);
    assert_eq!(task.handle.send(Poll).await.unwrap(), Some(code));
    assert_eq!(task.handle.poll(), Some(code));
    assert!(!task.handle.send(IsAlive).await.unwrap());
    assert_eq!(task.handle.pid(), None);

    let exits = task.exits.send(TakeExits).await.unwrap();
    assert_eq!(exits.len(), 1, "one exit event: {exits:?}");
    assert_eq!(exits[0].returncode, code);
    assert_eq!(exits[0].pid, Some(task.pid as u32));
    let output = task.collector.send(GetValue).await.unwrap();
    assert_eq!(&output.stdout[..], b"done\n");
    assert_reaped(task.pid);
}

#[actix_rt::test]
async fn cancel_before_the_start_ends_the_task_as_cancelled() {
    let exits = ExitLog::default().start();
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
        Err(SpawnError::AlreadyStarted { .. }) => {}
        other => panic!("a cancelled task started: {other:?}"),
    }
    let exits = exits.send(TakeExits).await.unwrap();
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0].returncode, ReturnCode::CANCELLED);
    assert_eq!(exits[0].pid, None);
}
