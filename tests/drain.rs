//! The drain timeout (Go's `Cmd.WaitDelay`): after the child exited, wait
//! at most so long for EOF, then close the read ends and report `Exited`
//! with `output_complete: false`. Without it the task waits for EOF however
//! long a grandchild holds the output open (portage's behaviour).
//!
//! Each child here leaves a grandchild in its process group holding its
//! stdout. A [`Leftovers`] guard kills, on drop, every live member of that
//! group. (A grandchild whose parent exited belongs to init; an init that
//! does not reap leaves it a zombie, which counts as gone.)

use std::fs;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::{
    AsyncWait, Cancel, Chunk, Collector, Exited, GetValue, IsAlive, Poll, Popen, ProcessHandle,
    ReturnCode,
};
use futures::channel::oneshot;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{getsid, Pid};

/// The bound for anything that should happen "at once". Generous: the
/// machine is shared and other builds run on it.
const SOON: Duration = Duration::from_secs(20);

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

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, Copy)]
struct Stat {
    state: char,
    pgrp: i32,
    session: i32,
    starttime: u64,
}

fn proc_stat(pid: i32) -> Option<Stat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: skip past the last ')'.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        starttime: fields.get(19)?.parse().ok()?,
    })
}

/// The process group a child leads, which outlives the child while a
/// grandchild is in it.
struct Leftovers {
    leader: i32,
    starttime: u64,
}

impl Leftovers {
    fn of(handle: &ProcessHandle) -> Leftovers {
        let leader = handle.pid().expect("no pid right after the start") as i32;
        let stat = proc_stat(leader).expect("a child just started is not in /proc");
        assert_eq!(stat.pgrp, leader, "the child does not lead its own group");
        Leftovers {
            leader,
            starttime: stat.starttime,
        }
    }

    /// The live (not zombie) members of the group: in our session, not
    /// older than the leader, while the leader's pid (if it still exists)
    /// is that leader.
    fn live(&self) -> Vec<i32> {
        if proc_stat(self.leader).is_some_and(|stat| stat.starttime != self.starttime) {
            return Vec::new(); // the number belongs to somebody else now
        }
        let session = getsid(None).map(Pid::as_raw).unwrap_or(-1);
        let Ok(dir) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| {
                proc_stat(pid).is_some_and(|stat| {
                    stat.state != 'Z'
                        && stat.session == session
                        && stat.pgrp == self.leader
                        && stat.starttime >= self.starttime
                })
            })
            .collect()
    }

    /// Waits, with a deadline, until no member of the group is alive. A
    /// grandchild cannot tell us when it dies, so this polls /proc.
    async fn await_empty(&self) {
        let deadline = Instant::now() + SOON;
        loop {
            let live = self.live();
            if live.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "members of group {} still alive: {live:?}",
                self.leader
            );
            actix::clock::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in self.live() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Hands the first [`Exited`] it gets to a oneshot.
struct ExitCatcher(Option<oneshot::Sender<Exited>>);

impl Actor for ExitCatcher {
    type Context = Context<Self>;
}

impl Handler<Exited> for ExitCatcher {
    type Result = ();

    fn handle(&mut self, exited: Exited, _ctx: &mut Context<Self>) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(exited);
        }
    }
}

/// Drops every chunk (where a collector would grow without end).
struct Discard;

impl Actor for Discard {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Discard {
    type Result = ();

    fn handle(&mut self, _chunk: Chunk, _ctx: &mut Context<Self>) {}
}

/// A started child with a collector on its output and a catcher for its
/// exit.
struct Task {
    handle: ProcessHandle,
    collector: Addr<Collector>,
    exited: oneshot::Receiver<Exited>,
    group: Leftovers,
}

fn start_sh(script: &str, configure: impl FnOnce(Popen) -> Popen) -> Task {
    let collector = Collector::start_default();
    let (tx, exited) = oneshot::channel();
    let handle = configure(Popen::new("sh").args(["-c", script]))
        .subscribe(collector.clone().recipient())
        .exit_listener(ExitCatcher(Some(tx)).start().recipient())
        .start()
        .expect("cannot start sh");
    let group = Leftovers::of(&handle);
    Task {
        handle,
        collector,
        exited,
        group,
    }
}

/// Waits, with a deadline, until the child was reaped while the task goes
/// on. The actor sends no message for the reap alone, so this polls
/// [`ProcessHandle::pid`].
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
// Tests
// ---------------------------------------------------------------------

#[actix_rt::test]
async fn drain_timeout_ends_the_task_while_a_grandchild_holds_stdout() {
    let started = Instant::now();
    let task = start_sh(GRANDCHILD_HOLDS_STDOUT, |p| p.drain_timeout(DRAIN));

    let exited = tokio::time::timeout(DRAINED_WITHIN, task.exited)
        .await
        .expect("no Exited within the bound, despite the drain timeout")
        .expect("the exit catcher is gone");
    let elapsed = started.elapsed();
    eprintln!("Exited {elapsed:?} after the start, with a drain timeout of {DRAIN:?}");

    assert!(
        elapsed >= DRAIN,
        "Exited after {elapsed:?}, before the drain timeout"
    );
    assert_eq!(exited.returncode, ReturnCode::from_raw(0));
    assert!(
        !exited.output_complete,
        "the output was held open, yet complete"
    );
    let output = task.collector.send(GetValue).await.expect("collector gone");
    assert_eq!(&output.stdout[..], b"main-done\n");
    assert_eq!(task.handle.pid(), None);
    assert_eq!(task.handle.poll(), Some(ReturnCode::from_raw(0)));
    assert_eq!(
        task.handle.send(Poll).await.expect("actor gone"),
        Some(ReturnCode::from_raw(0))
    );
    assert!(!task.handle.send(IsAlive).await.expect("actor gone"));
    // The grandchild was left alone: it is the guard's to kill.
    assert!(!task.group.live().is_empty(), "the grandchild is gone");
}

#[actix_rt::test]
async fn drain_timeout_closes_the_read_ends_so_a_writing_grandchild_gets_sigpipe() {
    // The grandchild writes without end; once the read ends are closed its
    // next write raises SIGPIPE and it dies on its own.
    let task = start_sh("(yes &) ; echo main-done", |p| {
        p.drain_timeout(DRAIN)
            .subscribe(Discard.start().recipient())
    });
    let exited = tokio::time::timeout(DRAINED_WITHIN, task.exited)
        .await
        .expect("no Exited within the bound, despite the drain timeout")
        .expect("the exit catcher is gone");
    assert_eq!(exited.returncode, ReturnCode::from_raw(0));
    assert!(!exited.output_complete);
    task.group.await_empty().await;
}

#[actix_rt::test]
async fn output_closed_within_the_drain_timeout_is_complete() {
    // The grandchild writes after the child exited, then exits: EOF comes
    // well within the (generous) drain timeout.
    let task = start_sh("(sleep 0.1; echo late) & echo main-done", |p| {
        p.drain_timeout(SOON)
    });
    let exited = tokio::time::timeout(SOON, task.exited)
        .await
        .expect("no Exited in time")
        .expect("the exit catcher is gone");
    assert_eq!(exited.returncode, ReturnCode::from_raw(0));
    assert!(exited.output_complete);
    let output = task.collector.send(GetValue).await.expect("collector gone");
    assert_eq!(&output.stdout[..], b"main-done\nlate\n");
}

#[actix_rt::test]
async fn without_a_drain_timeout_the_task_waits_for_eof_until_cancelled() {
    let task = start_sh(GRANDCHILD_HOLDS_STDOUT, |p| p);
    await_reap(&task.handle).await;

    // The child is gone, its output is not: the task goes on.
    assert!(task.handle.send(IsAlive).await.expect("actor gone"));
    assert_eq!(task.handle.send(Poll).await.expect("actor gone"), None);
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
    let exited = task.exited.await.expect("the exit catcher is gone");
    assert_eq!(exited.returncode, code);
    assert!(exited.output_complete, "EOF came once the grandchild died");
    let output = task.collector.send(GetValue).await.expect("collector gone");
    assert_eq!(&output.stdout[..], b"main-done\n");
    task.group.await_empty().await;
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
#[actix_rt::test]
async fn a_slow_subscriber_loses_nothing_to_the_drain_timeout() {
    let arbiter = Arbiter::new();
    let slow = Slow::start_in_arbiter(&arbiter.handle(), |_| Slow(0));
    let (tx, exited) = oneshot::channel();
    // 32 chunks at 30 ms each: about 1 s of draining after an exit that
    // comes at once, against a drain timeout of 300 ms.
    let handle = Popen::new("head")
        .args(["-c", "131072", "/dev/zero"])
        .bufsize(4096)
        .window(1)
        .drain_timeout(Duration::from_millis(300))
        .subscribe(slow.clone().recipient())
        .exit_listener(ExitCatcher(Some(tx)).start().recipient())
        .start()
        .expect("cannot start head");
    let exited = exited.await.expect("no Exited");
    assert_eq!(exited.returncode.code(), 0);
    assert!(exited.output_complete, "output was cut: {exited:?}");
    assert_eq!(slow.send(Count).await.unwrap(), 131072);
    assert_eq!(handle.pid(), None);
    arbiter.stop();
}
