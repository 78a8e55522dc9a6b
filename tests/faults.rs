//! Fault injection: subscribers and listeners that stop or panic half-way,
//! children killed from outside or closing their output early, a System
//! stopped under a hundred children, and a stdin pipe broken mid-write.
//!
//! Every test runs its actix System on a thread of its own, bounded in
//! time, and once that thread is gone checks that nothing was lost or left
//! behind: no child of ours (running or zombie), the same fds as before,
//! and no panic anywhere but where one was injected (actix does not
//! propagate a panic in an actor, so a hook counts them). The tests count
//! process-wide things, so they take [`SERIAL`] in turn.
//!
//! Not tested here, on purpose:
//! * EPERM from `kill()`: it needs a child of another uid (a setuid
//!   program, or `CommandExt::uid`, which `Popen` does not expose); the
//!   escalation's handling of EPERM is unit-tested with a mock in
//!   `src/escalation.rs` (it is logged at error level).
//! * A host that sets SIGCHLD to `SIG_IGN`: the disposition is
//!   process-wide and would break every other test of this binary.
//! * Running out of fds while tasks run: `tests/faults_rlimit.rs`, a
//!   binary of its own since the limit is process-wide.

mod common;

use common::SOON;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::{
    AddExitListener, Cancel, Chunk, CloseStdin, Exited, GetPid, InputFrom, IsAlive, Popen,
    ProcessHandle, ReturnCode, TryWait, WriteStdin,
};
use bytes::Bytes;
use futures::channel::oneshot;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::actors::{FirstChunk, LineCounter};
use common::fds::open_fds;
use common::harness::{self, lock};
use common::procs::{is_running, Cleanup};
use common::{assert_gone, async_wait, event, within, GetEvents, Waiter};

// ---------------------------------------------------------------------
// The harness: one System per test, on its own thread, checked afterwards
// ---------------------------------------------------------------------

/// Held by every test here: each one counts our children and our fds.
static SERIAL: Mutex<()> = Mutex::new(());

/// Panics seen anywhere in this process, counted by the hook that
/// [`count_panics`] installs.
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// `seq 1 200000`: 1.2 MB, some 300 chunks of 4096 bytes.
const SEQ_END: u32 = 200_000;

/// Installs the hook that counts panics in [`PANICS`].
fn count_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// What a test may leave behind: nothing, except for what it says here.
#[derive(Debug, Clone, Copy)]
struct Allowed {
    /// Panics injected on purpose.
    panics: usize,
}

const NOTHING: Allowed = Allowed { panics: 0 };

const ONE_PANIC: Allowed = Allowed { panics: 1 };

/// [`common::harness::run_thread`] (the test on a thread of its own that
/// owns its System, bounded in time, then no child of ours and no fd left),
/// with the [`SERIAL`] mutex held, and checking that no panic happened
/// meanwhile, except for what `allowed` allows.
fn run_thread<T: Send + 'static>(
    allowed: Allowed,
    test: impl FnOnce(Cleanup) -> T + Send + 'static,
) -> T {
    let _serial = lock(&SERIAL);
    count_panics();
    let panics = PANICS.load(Ordering::SeqCst);
    let output = harness::run_thread(test);
    let panicked = PANICS.load(Ordering::SeqCst) - panics;
    assert_eq!(
        panicked, allowed.panics,
        "{panicked} panics, {} injected (see the test's output)",
        allowed.panics
    );
    output
}

/// [`run_thread`] with a System that runs `test` to its end and is then
/// dropped.
fn run<T, Fut>(allowed: Allowed, test: impl FnOnce(Cleanup) -> Fut + Send + 'static) -> T
where
    T: Send + 'static,
    Fut: Future<Output = T>,
{
    run_thread(allowed, move |cleanup| {
        System::new().block_on(test(cleanup))
    })
}

// ---------------------------------------------------------------------
// Expected output
// ---------------------------------------------------------------------

/// What `seq 1 end` prints.
fn seq(end: u32) -> Vec<u8> {
    (1..=end)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into()
}

/// Fails unless `bytes` is a prefix of what `seq 1 N` prints for some N:
/// whole lines 1, 2, 3, … then maybe the start of the next one.
fn assert_seq_prefix(bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).expect("seq printed something else than digits");
    let mut lines = text.split('\n').peekable();
    let mut expected = 1u64;
    while let Some(line) = lines.next() {
        let next = expected.to_string();
        if lines.peek().is_none() {
            // The part after the last newline: a partial line, or nothing.
            assert!(
                next.starts_with(line),
                "the output ends with {line:?} where a prefix of {next:?} belongs"
            );
            return;
        }
        assert_eq!(line, next, "line {expected} of seq's output");
        expected += 1;
    }
}

/// Fails unless `bytes` is `pattern` repeated, maybe cut in the middle of
/// the last repetition.
fn assert_repeats(bytes: &[u8], pattern: &[u8]) {
    if let Some(at) = bytes
        .iter()
        .enumerate()
        .position(|(i, &b)| b != pattern[i % pattern.len()])
    {
        panic!(
            "byte {at} of the output breaks the repetition of {:?}: {:?}",
            String::from_utf8_lossy(pattern),
            String::from_utf8_lossy(&bytes[at.saturating_sub(20)..(at + 20).min(bytes.len())])
        );
    }
}

// ---------------------------------------------------------------------
// Faulty actors
// ---------------------------------------------------------------------

/// Request to a faulty actor: stop now.
#[derive(Message)]
#[rtype(result = "()")]
struct StopNow;

/// A subscriber that stops itself after `after` chunks; once stopped it
/// reports the bytes it got.
struct StopsAfter {
    after: usize,
    seen: usize,
    bytes: Vec<u8>,
    stopped: Option<oneshot::Sender<Vec<u8>>>,
}

impl StopsAfter {
    fn start(after: usize) -> (Addr<StopsAfter>, oneshot::Receiver<Vec<u8>>) {
        let (tx, rx) = oneshot::channel();
        let actor = StopsAfter {
            after,
            seen: 0,
            bytes: Vec::new(),
            stopped: Some(tx),
        };
        (actor.start(), rx)
    }
}

impl Actor for StopsAfter {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Some(tx) = self.stopped.take() {
            let _ = tx.send(std::mem::take(&mut self.bytes));
        }
    }
}

impl Handler<Chunk> for StopsAfter {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, ctx: &mut Context<Self>) {
        assert!(
            self.seen < self.after,
            "a chunk was handled after ctx.stop()"
        );
        self.seen += 1;
        self.bytes.extend_from_slice(&chunk.data);
        if self.seen == self.after {
            ctx.stop();
        }
    }
}

/// A subscriber that keeps every whole `Chunk` (and so its credit): it
/// uses up the reader's window and stalls the reader until it stops.
struct Hoarder {
    window: usize,
    kept: Vec<Chunk>,
    stalled: Option<oneshot::Sender<()>>,
}

impl Actor for Hoarder {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Hoarder {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        self.kept.push(chunk);
        if self.kept.len() == self.window {
            if let Some(tx) = self.stalled.take() {
                let _ = tx.send(());
            }
        }
    }
}

impl Handler<StopNow> for Hoarder {
    type Result = ();

    fn handle(&mut self, _msg: StopNow, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// An exit listener that the test stops before the exit; it must never
/// hear of it.
struct StoppedListener {
    exited: Arc<AtomicUsize>,
    stopped: Option<oneshot::Sender<()>>,
}

impl StoppedListener {
    fn new(exited: &Arc<AtomicUsize>) -> (StoppedListener, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let listener = StoppedListener {
            exited: exited.clone(),
            stopped: Some(tx),
        };
        (listener, rx)
    }
}

impl Actor for StoppedListener {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Some(tx) = self.stopped.take() {
            let _ = tx.send(());
        }
    }
}

impl Handler<Exited> for StoppedListener {
    type Result = ();

    fn handle(&mut self, _exited: Exited, _ctx: &mut Context<Self>) {
        self.exited.fetch_add(1, Ordering::SeqCst);
    }
}

impl Handler<StopNow> for StoppedListener {
    type Result = ();

    fn handle(&mut self, _msg: StopNow, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// A subscriber whose handler panics on its `after`th chunk. Its `Drop`
/// reports whether `stopped()` ran before the actor was dropped.
struct Panicker {
    after: usize,
    seen: usize,
    stopped: bool,
    dropped: Option<oneshot::Sender<bool>>,
}

impl Panicker {
    fn new(after: usize) -> (Panicker, oneshot::Receiver<bool>) {
        let (tx, rx) = oneshot::channel();
        let panicker = Panicker {
            after,
            seen: 0,
            stopped: false,
            dropped: Some(tx),
        };
        (panicker, rx)
    }
}

impl Actor for Panicker {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.stopped = true;
    }
}

impl Handler<Chunk> for Panicker {
    type Result = ();

    fn handle(&mut self, _chunk: Chunk, _ctx: &mut Context<Self>) {
        self.seen += 1;
        if self.seen == self.after {
            panic!("injected fault: a subscriber panics on chunk {}", self.seen);
        }
    }
}

impl Drop for Panicker {
    fn drop(&mut self) {
        if let Some(tx) = self.dropped.take() {
            let _ = tx.send(self.stopped);
        }
    }
}

/// Replies to show that the actor (and so its arbiter) still runs.
struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "u32")]
struct Ping(u32);

impl Handler<Ping> for Echo {
    type Result = u32;

    fn handle(&mut self, Ping(n): Ping, _ctx: &mut Context<Self>) -> u32 {
        n
    }
}

/// `seq 1 200000`, subscribed by `subscribers` and by a [`Waiter`] that
/// also listens for the exit; returns the task, its pid and the waiter's
/// channels.
fn start_seq(
    cleanup: &Cleanup,
    window: usize,
    subscribers: Vec<Recipient<Chunk>>,
) -> (ProcessHandle, i32, Addr<Waiter>, common::Awaited) {
    let (waiter, awaited) = Waiter::start_new();
    let mut popen = Popen::new("seq")
        .args(["1", &SEQ_END.to_string()])
        .window(window)
        .subscribe(waiter.clone().recipient())
        .exit_listener(waiter.clone().recipient());
    for subscriber in subscribers {
        popen = popen.subscribe(subscriber);
    }
    let handle = popen.start().expect("cannot start seq");
    let pid = cleanup.add(&handle);
    (handle, pid, waiter, awaited)
}

/// Checks what the waiter of [`start_seq`] got: every byte, in order, and
/// the exit with 0 after the last chunk.
async fn assert_all_of_seq(waiter: &Addr<Waiter>, awaited: common::Awaited) {
    let at_exit = event("Exited", awaited.exited).await;
    assert_eq!(at_exit.exited.len(), 1);
    let exited = at_exit.exited[0];
    assert_eq!(exited.returncode, ReturnCode::from_raw(0));
    assert!(exited.output_complete, "{exited:?}");
    let output = at_exit.bytes();
    assert_eq!(output.len(), seq(SEQ_END).len(), "bytes lost or doubled");
    assert!(output == seq(SEQ_END), "the output is not seq's");
    let later = within("GetEvents", waiter.send(GetEvents))
        .await
        .expect("the waiter is gone");
    assert_eq!(
        later.chunks.len(),
        at_exit.chunks.len(),
        "chunks came after Exited"
    );
}

// ---------------------------------------------------------------------
// 1. A subscriber stops mid-stream
// ---------------------------------------------------------------------

#[test]
fn a_subscriber_that_stops_mid_stream_costs_the_others_nothing() {
    run(NOTHING, |cleanup| async move {
        // A window of 2: the reader soon waits for the stopped subscriber's
        // credit, which must come back when its chunks are dropped.
        let (quitter, stopped) = StopsAfter::start(5);
        let (handle, pid, waiter, awaited) = start_seq(&cleanup, 2, vec![quitter.recipient()]);
        let got = event("the subscriber's stop", stopped).await;
        assert!(!got.is_empty());
        assert!(
            seq(SEQ_END).starts_with(&got),
            "the quitter got a non-prefix"
        );
        assert_all_of_seq(&waiter, awaited).await;
        assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(0));
        assert_gone(pid as u32);
    });
}

#[test]
fn a_subscriber_whose_arbiter_stops_mid_stream_costs_the_others_nothing() {
    run(NOTHING, |cleanup| async move {
        let arbiter = Arbiter::new();
        let (tx, first) = oneshot::channel();
        let doomed = FirstChunk::start_in_arbiter(&arbiter.handle(), move |_| FirstChunk(Some(tx)));
        let (handle, pid, waiter, awaited) = start_seq(&cleanup, 2, vec![doomed.recipient()]);
        event("the first chunk on the other arbiter", first).await;
        arbiter.stop();
        assert_all_of_seq(&waiter, awaited).await;
        assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(0));
        assert_gone(pid as u32);
        arbiter.join().expect("the arbiter's thread panicked");
    });
}

#[test]
fn a_subscriber_that_stops_while_holding_the_whole_window_releases_it() {
    run(NOTHING, |cleanup| async move {
        const WINDOW: usize = 4;
        let (tx, stalled) = oneshot::channel();
        let hoarder = Hoarder {
            window: WINDOW,
            kept: Vec::new(),
            stalled: Some(tx),
        }
        .start();
        let (handle, pid, waiter, awaited) =
            start_seq(&cleanup, WINDOW, vec![hoarder.clone().recipient()]);
        event("the hoarder holding the whole window", stalled).await;
        // The reader now waits for credit that only the hoarder's end
        // returns: nothing else can move the stream on.
        let events = within("GetEvents", waiter.send(GetEvents))
            .await
            .expect("the waiter is gone");
        assert!(
            events.chunks.len() <= WINDOW,
            "{} chunks read with a window of {WINDOW}",
            events.chunks.len()
        );
        assert_eq!(handle.try_wait(), None, "seq ended while stalled");
        hoarder.do_send(StopNow);
        assert_all_of_seq(&waiter, awaited).await;
        assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(0));
        assert_gone(pid as u32);
    });
}

#[test]
fn the_only_subscriber_stopping_mid_stream_does_not_stall_the_task() {
    run(NOTHING, |cleanup| async move {
        let (quitter, stopped) = StopsAfter::start(3);
        let (exits, awaited) = Waiter::start_new();
        let handle = Popen::new("seq")
            .args(["1", &SEQ_END.to_string()])
            .window(2)
            .subscribe(quitter.recipient())
            .exit_listener(exits.recipient())
            .start()
            .expect("cannot start seq");
        let pid = cleanup.add(&handle);
        let got = event("the subscriber's stop", stopped).await;
        assert!(
            seq(SEQ_END).starts_with(&got),
            "the quitter got a non-prefix"
        );
        // Everything else seq writes goes to a stopped actor: dropped, with
        // its credit, so the reader reads on to EOF.
        let at_exit = event("Exited", awaited.exited).await;
        let exited = at_exit.exited[0];
        assert_eq!(exited.returncode, ReturnCode::from_raw(0));
        assert!(exited.output_complete, "{exited:?}");
        assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(0));
        assert_gone(pid as u32);
    });
}

// ---------------------------------------------------------------------
// 2. An exit listener stops before the exit
// ---------------------------------------------------------------------

#[test]
fn an_exit_listener_that_stopped_before_the_exit_is_skipped() {
    run(NOTHING, |cleanup| async move {
        let heard = Arc::new(AtomicUsize::new(0));
        // One listener stops itself, one is on an arbiter that stops.
        let (stopping, stopped) = StoppedListener::new(&heard);
        let stopping = stopping.start();
        let arbiter = Arbiter::new();
        let (elsewhere, elsewhere_stopped) = StoppedListener::new(&heard);
        let elsewhere = StoppedListener::start_in_arbiter(&arbiter.handle(), move |_| elsewhere);
        let (waiter, awaited) = Waiter::start_new();

        let handle = Popen::new("sh")
            .args(["-c", "read line; exit 3"])
            .stdin(InputFrom::Pipe)
            .exit_listener(stopping.clone().recipient())
            .start()
            .expect("cannot start sh");
        let pid = cleanup.add(&handle);
        handle.do_send(AddExitListener(elsewhere.clone().recipient()));
        handle.do_send(AddExitListener(waiter.clone().recipient()));

        stopping.do_send(StopNow);
        event("the listener's stop", stopped).await;
        arbiter.stop();
        // Its `stopped` runs if the arbiter had started it; if the arbiter
        // stopped first, the actor is dropped unstarted: gone either way.
        let _ = within("the other arbiter's listener's end", elsewhere_stopped).await;
        arbiter.join().expect("the arbiter's thread panicked");
        assert!(!stopping.connected() && !elsewhere.connected());
        assert_eq!(handle.try_wait(), None, "the child ended before its input");

        handle.do_send(CloseStdin);
        let at_exit = event("Exited", awaited.exited).await;
        assert_eq!(at_exit.exited[0].returncode, ReturnCode::from_raw(3));
        assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(3));
        // Adding a stopped listener after the exit is skipped as well.
        handle.do_send(AddExitListener(stopping.recipient()));
        assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(3));
        assert_eq!(
            heard.load(Ordering::SeqCst),
            0,
            "a stopped actor heard the exit"
        );
        assert_gone(pid as u32);
    });
}

// ---------------------------------------------------------------------
// 3. The child is SIGKILLed from outside mid-output
// ---------------------------------------------------------------------

/// Bytes waiting in the pipe that is `pid`'s fd `fd`, asked through a
/// read end of our own opened from /proc and closed before returning
/// (while we hold it, the child's death would not break a pipe it reads).
fn bytes_queued_in(pid: i32, fd: u32) -> usize {
    let pipe = std::fs::File::open(format!("/proc/{pid}/fd/{fd}")).expect("the child's pipe");
    let mut queued: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points
    // to a live c_int; the fd is open for the duration of the call.
    let res = unsafe { nix::libc::ioctl(pipe.as_raw_fd(), nix::libc::FIONREAD, &mut queued) };
    assert_eq!(res, 0, "FIONREAD: {}", io::Error::last_os_error());
    queued as usize
}

/// Waits, with a deadline, until `pid`'s pipe on `fd` holds at least
/// `bytes`; returns how much it holds. Nothing tells us when a pipe fills,
/// so this polls.
async fn await_queued(pid: i32, fd: u32, bytes: usize) -> usize {
    let deadline = Instant::now() + SOON;
    loop {
        let queued = bytes_queued_in(pid, fd);
        if queued >= bytes {
            return queued;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid}'s fd {fd} holds {queued} bytes, not {bytes}"
        );
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn a_child_killed_mid_output_ends_with_minus_9_and_a_consistent_prefix() {
    run(NOTHING, |cleanup| async move {
        const WINDOW: usize = 4;
        let children: [(&str, &[&str]); 3] = [
            ("seq", &["1", "100000000"]),
            ("yes", &[]),
            ("sh", &["-c", "while :; do echo line; done"]),
        ];
        for (program, args) in children {
            // The hoarder stalls the reader, so that the pipe fills: the
            // output written before the kill and not read yet must still
            // be delivered after it.
            let (tx, stalled) = oneshot::channel();
            let hoarder = Hoarder {
                window: WINDOW,
                kept: Vec::new(),
                stalled: Some(tx),
            }
            .start();
            let (waiter, awaited) = Waiter::start_new();
            let handle = Popen::new(program)
                .args(args)
                .window(WINDOW)
                .subscribe(waiter.clone().recipient())
                .subscribe(hoarder.clone().recipient())
                .exit_listener(waiter.clone().recipient())
                .start()
                .expect("cannot start the child");
            let pid = cleanup.add(&handle);
            event("the reader's stall", stalled).await;
            let queued = await_queued(pid, 1, 32 * 1024).await;
            let read = within("GetEvents", waiter.send(GetEvents))
                .await
                .expect("the waiter is gone")
                .bytes()
                .len();
            kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill");
            hoarder.do_send(StopNow);

            let at_exit = event("Exited", awaited.exited).await;
            let exited = at_exit.exited[0];
            assert_eq!(exited.returncode, ReturnCode::from_raw(-9), "{program}");
            assert!(exited.output_complete, "{program}: {exited:?}");
            assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(-9));
            let output = at_exit.bytes();
            eprintln!(
                "{program}: {} bytes delivered, {read} read and {queued} in the pipe at the SIGKILL",
                output.len()
            );
            assert!(
                output.len() >= read + queued,
                "{program}: output in the pipe at the SIGKILL was lost"
            );
            match program {
                "seq" => assert_seq_prefix(&output),
                "yes" => assert_repeats(&output, b"y\n"),
                _ => assert_repeats(&output, b"line\n"),
            }
            let later = within("GetEvents", waiter.send(GetEvents))
                .await
                .expect("the waiter is gone");
            assert_eq!(
                later.chunks.len(),
                at_exit.chunks.len(),
                "chunks after Exited"
            );
            assert_eq!(handle.pid(), None);
            assert_gone(pid as u32);
        }
    });
}

// ---------------------------------------------------------------------
// 4. The child closes its output and keeps running
// ---------------------------------------------------------------------

/// Our fds that are pipes: number → `pipe:[inode]`.
fn pipe_fds() -> BTreeMap<u64, String> {
    open_fds()
        .into_iter()
        .filter(|(_, target)| target.starts_with("pipe:"))
        .collect()
}

#[test]
fn a_child_that_closes_its_output_keeps_its_task_alive_until_it_exits() {
    run(NOTHING, |cleanup| async move {
        let (waiter, awaited) = Waiter::start_new();
        let before = pipe_fds();
        let handle = Popen::new("sh")
            .args(["-c", "echo ready; exec 1>&- 2>&-; exec sleep 1000"])
            .subscribe(waiter.clone().recipient())
            .exit_listener(waiter.clone().recipient())
            .start()
            .expect("cannot start sh");
        let pid = cleanup.add(&handle);
        // Our read ends of the child's stdout and stderr.
        let ours: BTreeSet<(u64, String)> = pipe_fds()
            .into_iter()
            .filter(|fd| !before.contains_key(&fd.0))
            .collect();
        assert_eq!(ours.len(), 2, "read ends: {ours:?}");
        assert_eq!(
            event("the first chunk", awaited.first_chunk).await,
            "ready\n"
        );

        // The reader closes each read end at its EOF. Nothing tells us
        // when, so watch our fds, with a deadline.
        let deadline = Instant::now() + SOON;
        loop {
            let open = pipe_fds();
            let still: Vec<_> = ours
                .iter()
                .filter(|(fd, target)| open.get(fd) == Some(target))
                .collect();
            if still.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "no EOF on {still:?}");
            actix::clock::sleep(Duration::from_millis(10)).await;
        }

        // The output is finished, the child is not: the task goes on.
        let ask = |what| format!("{what} after EOF");
        assert!(within(&ask("IsAlive"), handle.send(IsAlive)).await.unwrap());
        assert_eq!(
            within(&ask("TryWait"), handle.send(TryWait)).await.unwrap(),
            None
        );
        assert_eq!(handle.try_wait(), None);
        let reported = within(&ask("GetPid"), handle.send(GetPid)).await.unwrap();
        assert_eq!(reported, Some(pid as u32));
        assert!(is_running(pid), "the child is not running");
        let events = within("GetEvents", waiter.send(GetEvents)).await.unwrap();
        assert!(events.exited.is_empty(), "Exited before the child exited");

        handle.do_send(Cancel);
        let at_exit = event("Exited", awaited.exited).await;
        let exited = at_exit.exited[0];
        assert_eq!(exited.returncode, ReturnCode::from_raw(-15));
        assert!(exited.output_complete, "{exited:?}");
        assert_eq!(at_exit.bytes(), b"ready\n");
        assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(-15));
        assert!(!within("IsAlive", handle.send(IsAlive)).await.unwrap());
        common::await_gone(pid as u32).await;
    });
}

// ---------------------------------------------------------------------
// 5. The System stops with a hundred children running
// ---------------------------------------------------------------------

#[test]
fn stopping_the_system_under_a_hundred_children_leaves_no_child_and_no_fd() {
    const CHILDREN: usize = 100;
    let pids = run_thread(NOTHING, |cleanup| {
        let sys = System::new();
        let pids = sys.block_on(async move {
            let (counter, all_up) = LineCounter::start_new(CHILDREN);
            let mut pids = Vec::new();
            for _ in 0..CHILDREN {
                let handle = Popen::new("sh")
                    .args(["-c", "echo up; exec sleep 1000"])
                    .subscribe(counter.clone().recipient())
                    .start()
                    .expect("cannot start sh");
                pids.push(cleanup.add(&handle));
            }
            event("every child's \"up\"", all_up).await;
            for &pid in &pids {
                assert!(is_running(pid), "pid {pid} is not running before the stop");
            }
            System::current().stop();
            pids
        });
        let stopping = Instant::now();
        sys.run().expect("the System failed");
        eprintln!(
            "stopping the System with {CHILDREN} children took {:?}",
            stopping.elapsed()
        );
        pids
    });
    // run_thread found no child of ours and no fd left; each one is gone.
    assert_eq!(pids.len(), CHILDREN);
    for pid in pids {
        assert_gone(pid as u32);
    }
}

// ---------------------------------------------------------------------
// 9. The child is SIGKILLed while a large write to its stdin is pending
// ---------------------------------------------------------------------

#[test]
fn a_child_killed_during_a_large_write_to_its_stdin_breaks_the_write() {
    run(NOTHING, |cleanup| async move {
        let (waiter, awaited) = Waiter::start_new();
        // The child never reads its stdin: the pipe fills and stays full.
        let handle = Popen::new("sh")
            .args(["-c", "echo ready; exec sleep 1000"])
            .stdin(InputFrom::Pipe)
            .subscribe(waiter.recipient())
            .start()
            .expect("cannot start sh");
        let pid = cleanup.add(&handle);
        assert_eq!(
            event("the first chunk", awaited.first_chunk).await,
            "ready\n"
        );

        let big = Bytes::from(vec![b'x'; 4 << 20]);
        let writes: Vec<_> = (0..3)
            .map(|_| actix_rt::spawn(handle.send(WriteStdin(big.clone()))))
            .collect();
        // Wait for the first write to fill the pipe (64 KiB on Linux).
        let deadline = Instant::now() + SOON;
        while bytes_queued_in(pid, 0) < 64 * 1024 {
            assert!(Instant::now() < deadline, "the stdin pipe never filled");
            actix::clock::sleep(Duration::from_millis(5)).await;
        }
        assert!(writes.iter().all(|w| !w.is_finished()), "a write finished");
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill");

        for (i, write) in writes.into_iter().enumerate() {
            let result = within("the pending write", write)
                .await
                .expect("the write's task panicked")
                .expect("the process actor is gone");
            let err = result.expect_err("a write to a killed child succeeded");
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "write {i}: {err}");
        }
        assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(-9));
        let late = within("a write after the end", handle.send(WriteStdin(big)))
            .await
            .expect("the process actor is gone");
        assert_eq!(
            late.expect_err("late write").kind(),
            io::ErrorKind::BrokenPipe
        );
        handle.do_send(CloseStdin);
        assert_gone(pid as u32);
    });
}

// ---------------------------------------------------------------------
// 10. A subscriber's handler panics
// ---------------------------------------------------------------------
//
// What actix-rt 2 (with tokio 1 and actix 0.13) does, as these tests
// document: an actor runs as a tokio task, and tokio catches a panic in a
// task (the runtime's default is to ignore an unhandled panic), so the
// panic kills neither the arbiter's thread nor the System, on the System's
// arbiter as on any other. The panicking actor's task is dropped; actix
// then polls the dropped context once with its stop flag set, so the
// actor's `stopping()` and `stopped()` still run, and the actor is dropped
// with its mailbox and everything queued in it. Every other actor of that
// thread goes on. The chunks it would have got are dropped with their
// credit, so the task reads on and ends as usual.

#[test]
fn a_subscriber_panicking_on_another_arbiter_leaves_the_task_whole() {
    run(ONE_PANIC, |cleanup| async move {
        let arbiter = Arbiter::new();
        let (panicker, dropped) = Panicker::new(3);
        let panicker = Panicker::start_in_arbiter(&arbiter.handle(), move |_| panicker);
        let (handle, pid, waiter, awaited) =
            start_seq(&cleanup, 2, vec![panicker.clone().recipient()]);
        let stopped = event("the panicking actor's drop", dropped).await;
        assert!(
            stopped,
            "actix dropped the panicking actor without stopped()"
        );
        // Its mailbox is dropped right after it, on the other thread.
        let deadline = Instant::now() + SOON;
        while panicker.connected() {
            assert!(
                Instant::now() < deadline,
                "the panicking actor's mailbox stays"
            );
            actix::clock::sleep(Duration::from_millis(1)).await;
        }

        assert_all_of_seq(&waiter, awaited).await;
        assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(0));
        assert_gone(pid as u32);

        // Its arbiter survived the panic and runs new actors.
        let echo = Echo::start_in_arbiter(&arbiter.handle(), |_| Echo);
        assert_eq!(within("Ping", echo.send(Ping(7))).await.unwrap(), 7);
        arbiter.stop();
        arbiter.join().expect("the arbiter's thread panicked");
    });
}

#[test]
fn a_subscriber_panicking_on_the_process_arbiter_leaves_the_task_whole() {
    run(ONE_PANIC, |cleanup| async move {
        let (panicker, dropped) = Panicker::new(3);
        let panicker = panicker.start();
        let (handle, pid, waiter, awaited) =
            start_seq(&cleanup, 2, vec![panicker.clone().recipient()]);
        let stopped = event("the panicking actor's drop", dropped).await;
        assert!(
            stopped,
            "actix dropped the panicking actor without stopped()"
        );
        assert!(!panicker.connected(), "the panicking actor still runs");

        assert_all_of_seq(&waiter, awaited).await;
        assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(0));
        assert!(within("IsAlive", handle.send(IsAlive)).await.is_ok());
        assert_gone(pid as u32);
    });
}

// ---------------------------------------------------------------------
// Found here: the supervisor must not outlive its System
// ---------------------------------------------------------------------

/// A System that cancelled a task releases every fd when dropped, however
/// many Systems the process runs one after another.
///
/// The [`ProcessSupervisor`](actix_popen::ProcessSupervisor) once lived in
/// actix's `SystemService` registry, a static map that nothing clears: its
/// `Addr` outlived its System, and through its task's waker kept the
/// runtime's epoll fd and eventfd open, two more for every System.
#[test]
fn a_system_that_cancelled_a_task_releases_every_fd_when_dropped() {
    run_thread(NOTHING, |cleanup| {
        for _ in 0..3 {
            System::new().block_on(async {
                let handle = Popen::new("sleep")
                    .arg("1000")
                    .start()
                    .expect("cannot start sleep");
                cleanup.add(&handle);
                handle.do_send(Cancel);
                assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(-15));
            });
        }
    });
}
