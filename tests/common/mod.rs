//! Helpers shared by the integration tests: an actor that records what it
//! is sent and lets a test await the first event of each kind, a bound on
//! how long any awaited event may take, and checks that a child is gone.
//! In submodules: processes as /proc shows them and the guards that leave
//! none running ([`procs`]), our fds ([`fds`]), threads and memory
//! ([`usage`]), a System on a thread of its own checked for leaks
//! ([`harness`]), and small subscribers ([`actors`]).
//!
//! Each test binary uses only some of these, hence the `dead_code` allows
//! (which hold for the submodules too).

#![allow(dead_code)]

pub mod actors;
pub mod cgroup;
pub mod cli;
pub mod fds;
pub mod harness;
pub mod procs;
pub mod usage;

use std::future::Future;
use std::time::Duration;

use actix::prelude::*;
use actix_popen::{
    AsyncWait, Chunk, Exited, OutputStream, ProcessHandle, ReaderFinished, ReturnCode, Started,
};
use bytes::Bytes;
use futures::channel::oneshot;

/// How long an awaited event may take before the test fails instead of
/// hanging: generous, since the machine may be busy compiling.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The bound for what should happen "at once" (a signal's effect, a reply,
/// a reap): a failure bound, never a timing claim; generous, since the
/// machine is shared and other builds run on it.
pub const SOON: Duration = Duration::from_secs(20);

/// The longest a test run by [`bounded`] may take: one that hangs fails
/// after this instead of hanging the run.
pub const TEST_BOUND: Duration = Duration::from_secs(300);

/// Runs an async test body in a fresh actix System, as `#[actix_rt::test]`
/// does, and fails the test if it has not finished within [`TEST_BOUND`]:
/// every await of the test is bounded, and dropping the body on the
/// timeout runs its cleanup guards.
pub fn bounded(test: impl Future<Output = ()>) {
    actix_rt::System::new().block_on(async move {
        if actix_rt::time::timeout(TEST_BOUND, test).await.is_err() {
            panic!("the test did not finish within {TEST_BOUND:?}");
        }
    });
}

/// Awaits `future`, failing the test (naming `what`) if it takes longer
/// than [`EVENT_TIMEOUT`]. Must run inside an actix System.
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match actix_rt::time::timeout(EVENT_TIMEOUT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {EVENT_TIMEOUT:?} waiting for {what}"),
    }
}

/// Awaits one event from a [`Waiter`] channel, failing the test if it does
/// not come within [`EVENT_TIMEOUT`] or the waiter stopped first.
pub async fn event<T>(what: &str, receiver: oneshot::Receiver<T>) -> T {
    within(what, receiver)
        .await
        .unwrap_or_else(|_| panic!("the waiter stopped before {what}"))
}

/// Awaits the task's return code, failing the test if it takes longer
/// than `bound`.
pub async fn wait(handle: &ProcessHandle, bound: Duration) -> ReturnCode {
    actix_rt::time::timeout(bound, handle.send(AsyncWait))
        .await
        .unwrap_or_else(|_| panic!("the task did not end within {bound:?}"))
        .expect("the process actor is gone")
        .expect("AsyncWait failed")
}

/// Awaits the task's return code, failing the test if it takes longer
/// than [`EVENT_TIMEOUT`].
pub async fn async_wait(handle: &ProcessHandle) -> ReturnCode {
    wait(handle, EVENT_TIMEOUT).await
}

/// Everything a [`Waiter`] was sent so far, in arrival order per kind.
#[derive(Debug, Clone, Default)]
pub struct Events {
    /// Every chunk's stream and bytes. The `Chunk`s themselves are dropped
    /// at once: a kept `Chunk` would hold its reader's credit and stall it.
    pub chunks: Vec<(OutputStream, Bytes)>,
    /// Every start notification.
    pub started: Vec<Started>,
    /// Every exit notification.
    pub exited: Vec<Exited>,
    /// Every pipe reader finish notification.
    pub finished: Vec<ReaderFinished>,
}

impl Events {
    /// The bytes of every chunk, concatenated in arrival order.
    pub fn bytes(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .flat_map(|(_, data)| data.iter().copied())
            .collect()
    }
}

/// Request to a [`Waiter`]: a copy of what it was sent so far.
///
/// A notification sent to the waiter before this request was sent is
/// already in its mailbox, so the reply includes it: that is how a test
/// checks that something was sent at most once, or never.
#[derive(Debug, Message)]
#[rtype(result = "Events")]
pub struct GetEvents;

/// The one-shot channels of a [`Waiter`]; each fires on the first event of
/// its kind.
#[derive(Debug)]
pub struct Awaited {
    /// The bytes of the first chunk.
    pub first_chunk: oneshot::Receiver<Bytes>,
    /// The first `Started`.
    pub started: oneshot::Receiver<Started>,
    /// Everything received up to and including the first `Exited`.
    pub exited: oneshot::Receiver<Events>,
    /// Everything received up to and including the first `ReaderFinished`.
    pub finished: oneshot::Receiver<Events>,
}

/// An actor that records every [`Chunk`], [`Started`], [`Exited`] and
/// [`ReaderFinished`] it is sent, so one actor can be a subscriber, a start
/// and exit listener and a reader's finish listener at once.
#[derive(Debug)]
pub struct Waiter {
    events: Events,
    first_chunk: Option<oneshot::Sender<Bytes>>,
    started: Option<oneshot::Sender<Started>>,
    exited: Option<oneshot::Sender<Events>>,
    finished: Option<oneshot::Sender<Events>>,
}

impl Waiter {
    /// Starts a waiter on the current arbiter; returns its address and the
    /// channels to await.
    pub fn start_new() -> (Addr<Waiter>, Awaited) {
        let (first_chunk_tx, first_chunk) = oneshot::channel();
        let (started_tx, started) = oneshot::channel();
        let (exited_tx, exited) = oneshot::channel();
        let (finished_tx, finished) = oneshot::channel();
        let waiter = Waiter {
            events: Events::default(),
            first_chunk: Some(first_chunk_tx),
            started: Some(started_tx),
            exited: Some(exited_tx),
            finished: Some(finished_tx),
        };
        let awaited = Awaited {
            first_chunk,
            started,
            exited,
            finished,
        };
        (waiter.start(), awaited)
    }
}

impl Actor for Waiter {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Waiter {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        if let Some(tx) = self.first_chunk.take() {
            let _ = tx.send(chunk.data.clone());
        }
        self.events.chunks.push((chunk.stream, chunk.data));
    }
}

impl Handler<Started> for Waiter {
    type Result = ();

    fn handle(&mut self, started: Started, _ctx: &mut Context<Self>) {
        if let Some(tx) = self.started.take() {
            let _ = tx.send(started);
        }
        self.events.started.push(started);
    }
}

impl Handler<Exited> for Waiter {
    type Result = ();

    fn handle(&mut self, exited: Exited, _ctx: &mut Context<Self>) {
        self.events.exited.push(exited);
        if let Some(tx) = self.exited.take() {
            let _ = tx.send(self.events.clone());
        }
    }
}

impl Handler<ReaderFinished> for Waiter {
    type Result = ();

    fn handle(&mut self, finished: ReaderFinished, _ctx: &mut Context<Self>) {
        self.events.finished.push(finished);
        if let Some(tx) = self.finished.take() {
            let _ = tx.send(self.events.clone());
        }
    }
}

impl Handler<GetEvents> for Waiter {
    type Result = MessageResult<GetEvents>;

    fn handle(&mut self, _msg: GetEvents, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.events.clone())
    }
}

/// Fails the test if `pid` is a zombie (an exited child nobody reaped).
pub fn assert_no_zombie(pid: u32) {
    if let Some(stat) = procs::proc_stat(pid as i32) {
        assert_ne!(
            stat.state, 'Z',
            "pid {pid} (parent {}) is an unreaped zombie",
            stat.ppid
        );
    }
}

/// Whether our former child `pid` is gone: no such process, or the number
/// now belongs to a process that is not our child (it was reused). A
/// zombie of ours is not gone.
pub fn process_gone(pid: u32) -> bool {
    match procs::proc_stat(pid as i32) {
        None => true,
        Some(stat) => stat.ppid != std::process::id() as i32,
    }
}

/// Fails the test unless our former child `pid` is gone and not a zombie.
pub fn assert_gone(pid: u32) {
    assert_no_zombie(pid);
    assert!(process_gone(pid), "pid {pid} is still our child");
}

/// Waits, within [`EVENT_TIMEOUT`], until our former child `pid` is gone
/// and not a zombie: a cancelled task's child is reaped a moment after
/// its exit event, once the supervisor has seen that its process group is
/// empty. Nothing tells us when, so this polls /proc.
pub async fn await_gone(pid: u32) {
    procs::poll_until(&format!("pid {pid} reaped"), EVENT_TIMEOUT, || {
        process_gone(pid) && procs::proc_stat(pid as i32).is_none_or(|stat| stat.state != 'Z')
    })
    .await;
}

/// Whether the running kernel is Linux `major.minor` or later.
pub fn linux_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version: Vec<u32> = release
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    version >= vec![major, minor]
}

/// Kills (SIGKILL) and reaps `pid` on drop if it is still our child: the
/// cleanup for tests that expose a child the library failed to reap, so
/// that a failing test leaves nothing behind.
#[derive(Debug)]
pub struct ReapOnDrop(pub u32);

impl Drop for ReapOnDrop {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::sys::wait::waitpid;
        use nix::unistd::Pid;
        if !process_gone(self.0) {
            let pid = Pid::from_raw(self.0 as i32);
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}
