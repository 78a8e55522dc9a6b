//! The child's stdin as messages: [`WriteStdin`] resolves once the bytes are in
//! the pipe, [`CloseStdin`] gives the child EOF, and the errors come back as
//! values: BrokenPipe once nobody reads (our process survives the SIGPIPE),
//! NotConnected when the stdin is not [`InputFrom::Pipe`].
//!
//! Every test leaves nothing running: a [`Leftovers`] guard kills, on drop,
//! every live member of the process groups it was told about.

mod common;

use common::SOON;

use std::io::ErrorKind;
use std::pin::pin;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::SpawnErrorKind;
use actix_popen::{
    AddExitListener, AddStartListener, Cancel, Chunk, CloseReader, CloseStdin, Collector, Exited,
    GetJobPool, GetValue, InputFrom, IsAlive, JobPool, OutputStream, OutputTo, Popen,
    ProcessHandle, ProcessSupervisor, RemoveExitListener, RemoveStartListener, ReturnCode,
    SetJobLimits, Start, TryWait, WriteStdin,
};
use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;

use common::actors::{await_output, ChunkSink};
use common::procs::{await_leader_exit, Leftovers};
use common::{event, wait, within, Awaited, GetEvents, Waiter};

/// How long a message to a busy actor may take to be answered: the actor
/// must not be blocked by a write in progress.
const PROMPT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

/// Sends `WriteStdin(data)` and waits, with a bound, for its outcome.
async fn write(handle: &ProcessHandle, data: impl Into<Bytes>) -> std::io::Result<()> {
    tokio::time::timeout(SOON, handle.send(WriteStdin(data.into())))
        .await
        .expect("the write did not resolve in time")
        .expect("the process actor is gone")
}

/// Asks `TryWait` and checks the answer comes promptly.
async fn poll_promptly(handle: &ProcessHandle) -> Option<ReturnCode> {
    let asked = Instant::now();
    let answer = tokio::time::timeout(PROMPT, handle.send(TryWait))
        .await
        .expect("the actor did not answer TryWait promptly: is it blocked?")
        .expect("the process actor is gone");
    eprintln!("TryWait answered in {:?}", asked.elapsed());
    answer
}

/// A subscriber that keeps whole chunks (and so their credit) until told
/// to [`Release`] them, then passes everything through. It reports each
/// chunk's arrival on a channel.
struct Gate {
    held: Vec<Chunk>,
    holding: bool,
    data: Vec<u8>,
    arrivals: mpsc::UnboundedSender<usize>,
}

impl Actor for Gate {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Gate {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        let _ = self.arrivals.unbounded_send(chunk.data.len());
        if self.holding {
            self.held.push(chunk);
        } else {
            self.data.extend_from_slice(&chunk.data);
        }
    }
}

/// Drops the held chunks (their credit returns) and stops holding.
#[derive(Message)]
#[rtype(result = "()")]
struct Release;

impl Handler<Release> for Gate {
    type Result = ();

    fn handle(&mut self, _msg: Release, _ctx: &mut Context<Self>) {
        self.holding = false;
        for chunk in self.held.drain(..) {
            self.data.extend_from_slice(&chunk.data);
        }
    }
}

/// Everything the gate has let through.
#[derive(Message)]
#[rtype(result = "Vec<u8>")]
struct TakeData;

impl Handler<TakeData> for Gate {
    type Result = MessageResult<TakeData>;

    fn handle(&mut self, _msg: TakeData, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(std::mem::take(&mut self.data))
    }
}

/// `len` bytes of a pattern that a shifted or repeated block would break.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 251) as u8 ^ seed)
        .collect()
}

// ---------------------------------------------------------------------
// Round trip
// ---------------------------------------------------------------------

#[test]
fn round_trip_through_cat_with_a_write_larger_than_the_pipe() {
    common::bounded(async {
        let (arrivals_tx, mut arrivals) = mpsc::unbounded();
        let gate = Gate {
            held: Vec::new(),
            holding: true,
            data: Vec::new(),
            arrivals: arrivals_tx,
        }
        .start();
        // Window 1: while the gate holds one chunk, cat's output is not read.
        let cat = Popen::new("cat")
            .stdin(InputFrom::Pipe)
            .stderr(OutputTo::Null)
            .window(1)
            .subscribe(gate.clone().recipient())
            .start()
            .expect("cannot start cat");
        let _leftovers = Leftovers::of(&cat);

        let first = Bytes::from_static(b"hello\n");
        write(&cat, first.clone())
            .await
            .expect("a small write failed");
        tokio::time::timeout(SOON, arrivals.next())
            .await
            .expect("cat echoed nothing in time")
            .expect("the gate is gone");

        // Now nothing reads cat's stdout: 1 MiB cannot get through the pipes
        // (64 KiB each way, plus cat's own buffer) until the gate releases, so
        // the write stays in progress while we talk to the actor.
        let big = Bytes::from(pattern(1 << 20, 0x5a));
        let mut big_write = pin!(cat.send(WriteStdin(big.clone())));
        let small = Bytes::from(pattern(3000, 0xa5));
        let mut small_write = pin!(cat.send(WriteStdin(small.clone())));
        assert_eq!(poll_promptly(&cat).await, None);
        assert!(cat.send(IsAlive).await.expect("actor gone"));
        // Give the writes every chance to complete were they not blocked.
        for _ in 0..5 {
            assert_eq!(poll_promptly(&cat).await, None);
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            futures::poll!(big_write.as_mut()).is_pending(),
            "1 MiB went through pipes nobody reads"
        );
        assert!(
            futures::poll!(small_write.as_mut()).is_pending(),
            "a write queued behind a blocked one resolved first"
        );
        cat.do_send(CloseStdin);
        assert_eq!(poll_promptly(&cat).await, None);

        gate.do_send(Release);
        tokio::time::timeout(SOON, big_write)
            .await
            .expect("the big write did not resolve once released")
            .expect("actor gone")
            .expect("the big write failed");
        tokio::time::timeout(SOON, small_write)
            .await
            .expect("the last write did not resolve")
            .expect("actor gone")
            .expect("the last write failed");
        assert_eq!(wait(&cat, SOON).await, ReturnCode::from_raw(0));

        let output = gate.send(TakeData).await.expect("gate gone");
        let expected: Vec<u8> = [&first[..], &big[..], &small[..]].concat();
        assert_eq!(output.len(), expected.len(), "output length");
        assert!(
            output == expected,
            "cat's output differs from what we wrote"
        );
    });
}

#[test]
fn queued_writes_then_close_stdin_round_trip() {
    common::bounded(async {
        let collector = Collector::start_default();
        let cat = Popen::new("cat")
            .stdin(InputFrom::Pipe)
            .subscribe(collector.clone().recipient())
            .start()
            .expect("cannot start cat");
        let _leftovers = Leftovers::of(&cat);

        // Sent at once, with the close right behind them: written in the
        // order they were sent, and the close waits for them. (Twelve, since
        // `send` enqueues at once only while the mailbox, of actix's default
        // capacity 16, has room; beyond it a later `do_send` overtakes.)
        let pieces: Vec<Bytes> = (0..12u8)
            .map(|i| Bytes::from(pattern(1 + 9973 * i as usize, i)))
            .collect();
        let writes: Vec<_> = pieces
            .iter()
            .map(|p| cat.send(WriteStdin(p.clone())))
            .collect();
        cat.do_send(CloseStdin);
        for (i, result) in futures::future::join_all(writes)
            .await
            .into_iter()
            .enumerate()
        {
            result
                .expect("actor gone")
                .unwrap_or_else(|err| panic!("write {i} failed: {err}"));
        }
        // The stdin is closed now, whether or not cat has exited yet.
        let err = write(&cat, "after the close\n").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
        assert_eq!(wait(&cat, SOON).await, ReturnCode::from_raw(0));
        let output = collector.send(GetValue).await.expect("collector gone");
        assert!(output.stdout == pieces.concat(), "the output differs");
    });
}

#[test]
fn chunks_sent_to_a_process_are_fed_to_its_stdin() {
    common::bounded(async {
        let collector = Collector::start_default();
        let cat = Popen::new("cat")
            .stdin(InputFrom::Pipe)
            .subscribe(collector.clone().recipient())
            .start()
            .expect("cannot start cat");
        let _leftovers = Leftovers::of(&cat);

        let pieces: Vec<Vec<u8>> = (0..10u8).map(|i| pattern(20_000, i)).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let stream = if i % 2 == 0 {
                OutputStream::Stdout
            } else {
                OutputStream::Stderr
            };
            // Resolves once the chunk is in the pipe.
            tokio::time::timeout(
                SOON,
                cat.send(Chunk::new(
                    actix_popen::TaskId::new(),
                    stream,
                    piece.clone(),
                )),
            )
            .await
            .expect("a chunk was not written in time")
            .expect("actor gone");
        }
        cat.do_send(CloseStdin);
        assert_eq!(wait(&cat, SOON).await, ReturnCode::from_raw(0));
        let output = collector.send(GetValue).await.expect("collector gone");
        assert!(output.stdout == pieces.concat(), "the output differs");

        // A chunk for a process whose stdin is not ours is dropped quietly.
        let sleeper = Popen::new("sleep")
            .arg("1000")
            .stdin(InputFrom::Null)
            .start()
            .expect("cannot start sleep");
        let _sleeper = Leftovers::of(&sleeper);
        sleeper
            .send(Chunk::new(
                actix_popen::TaskId::new(),
                OutputStream::Stdout,
                &b"nowhere"[..],
            ))
            .await
            .expect("actor gone");
        assert_eq!(poll_promptly(&sleeper).await, None);
        sleeper.do_send(Cancel);
        assert_eq!(wait(&sleeper, SOON).await, ReturnCode::from_raw(-15));
    });
}

// ---------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------

#[test]
fn write_after_the_child_exited_is_broken_pipe() {
    common::bounded(async {
        let handle = Popen::new("true")
            .stdin(InputFrom::Pipe)
            .start()
            .expect("cannot start true");
        let _leftovers = Leftovers::of(&handle);
        assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(0));

        let err = write(&handle, "too late\n")
            .await
            .expect_err("a write to an ended task succeeded");
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
        // CloseStdin after the end is harmless, and the answer stays the same.
        handle.do_send(CloseStdin);
        let err = write(&handle, "still too late\n").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
    });
}

#[test]
fn write_to_a_closed_stdin_of_a_running_child_is_broken_pipe() {
    common::bounded(async {
        // The child closes its stdin and goes on: the kernel answers EPIPE
        // (and raises SIGPIPE, which our process ignores).
        let (sink, mut chunks) = ChunkSink::start_new();
        let handle = Popen::new("sh")
            .args(["-c", "exec 0<&-; echo closed; exec sleep 1000"])
            .stdin(InputFrom::Pipe)
            .subscribe(sink.recipient())
            .start()
            .expect("cannot start sh");
        let _leftovers = Leftovers::of(&handle);
        await_output(&mut chunks, b"closed\n", SOON).await;

        // A child that another test of this binary is spawning right then
        // holds a copy of every fd of ours until its exec closes them (they
        // are close-on-exec): a write in that window still finds a reader,
        // and succeeds. So write until the pipe has none, within a bound.
        let deadline = std::time::Instant::now() + SOON;
        let err = loop {
            match write(&handle, "nobody reads this\n").await {
                Err(err) => break err,
                Ok(()) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "writes nobody can read kept succeeding"
                    );
                    actix::clock::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        };
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
        // We are still here (no death by SIGPIPE), and the stdin stays broken.
        let err = write(&handle, vec![b'x'; 100_000]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
        assert_eq!(poll_promptly(&handle).await, None);

        handle.do_send(Cancel);
        assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(-15));
    });
}

#[test]
fn write_after_the_reap_while_output_is_held_open_is_broken_pipe() {
    common::bounded(async {
        // The child exits at once; a grandchild holds its stdout open, so the
        // task goes on, but nobody has the stdin: the child closes it before it
        // starts the grandchild (which would otherwise hold a copy until it
        // has redirected its stdin to /dev/null).
        let handle = Popen::new("sh")
            .args(["-c", "exec 0<&-; (sleep 1000 &); exit 0"])
            .stdin(InputFrom::Pipe)
            .start()
            .expect("cannot start sh");
        let _leftovers = Leftovers::of(&handle);
        await_leader_exit(&handle, SOON).await;
        assert!(handle.send(IsAlive).await.expect("actor gone"));

        let err = write(&handle, "nobody reads this\n")
            .await
            .expect_err("a write to an exited child succeeded");
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");

        handle.do_send(Cancel);
        // The child itself exited with 0 before the cancel.
        assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(0));
    });
}

#[test]
fn write_without_a_stdin_pipe_is_not_connected() {
    common::bounded(async {
        for input in [InputFrom::Null, InputFrom::Inherit] {
            let handle = Popen::new("sleep")
                .arg("1000")
                .stdin(input.clone())
                .start()
                .expect("cannot start sleep");
            let _leftovers = Leftovers::of(&handle);

            let err = write(&handle, "nowhere\n")
                .await
                .expect_err("a write without a stdin pipe succeeded");
            assert_eq!(err.kind(), ErrorKind::NotConnected, "{input:?}: {err}");
            handle.do_send(CloseStdin); // nothing to close: harmless
            let err = write(&handle, "nowhere\n").await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotConnected, "{input:?}: {err}");

            handle.do_send(Cancel);
            assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(-15));
            let err = write(&handle, "nowhere\n").await.unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::NotConnected,
                "{input:?} after the end: {err}"
            );
        }
    });
}

#[test]
fn head_reading_ten_bytes_of_ten_mebibytes() {
    common::bounded(async {
        let collector = Collector::start_default();
        let handle = Popen::new("head")
            .args(["-c", "10"])
            .stdin(InputFrom::Pipe)
            .subscribe(collector.clone().recipient())
            .start()
            .expect("cannot start head");
        let _leftovers = Leftovers::of(&handle);

        // Ten writes of 1 MiB, all queued at once.
        let blocks: Vec<Bytes> = (0..10u8)
            .map(|i| Bytes::from(pattern(1 << 20, i)))
            .collect();
        let writes: Vec<_> = blocks
            .iter()
            .map(|block| handle.send(WriteStdin(block.clone())))
            .collect();
        let results: Vec<std::io::Result<()>> =
            tokio::time::timeout(SOON, futures::future::join_all(writes))
                .await
                .expect("the writes did not resolve in time")
                .into_iter()
                .map(|r| r.expect("actor gone"))
                .collect();

        // Some succeed (while head was reading), then every one fails.
        let written = results.iter().take_while(|r| r.is_ok()).count();
        assert!(written < blocks.len(), "10 MiB written to `head -c 10`");
        for (i, result) in results.iter().enumerate().skip(written) {
            let err = result
                .as_ref()
                .expect_err("a write succeeded after one failed");
            assert_eq!(err.kind(), ErrorKind::BrokenPipe, "write {i}: {err}");
        }
        eprintln!("{written} of 10 writes of 1 MiB completed before EPIPE");
        handle.do_send(CloseStdin);

        assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(0));
        let output = collector.send(GetValue).await.expect("collector gone");
        assert_eq!(&output.stdout[..], &blocks[0][..10]);
    });
}

#[test]
fn write_to_a_prepared_piped_task_is_not_refused_as_not_a_pipe() {
    common::bounded(async {
        // `WriteStdin` documents NotConnected for a stdin that is not InputFrom::Pipe
        // only. Sent to a task made by `Popen::prepare` before its `Start`, a
        // write is refused with that very error although the stdin is a pipe:
        // the queue is only created when the child is spawned. Expected: the
        // bytes are queued for the child (or at least refused with an error
        // that does not say the stdin is not a pipe).
        let collector = Collector::start_default();
        let cat = Popen::new("cat")
            .stdin(InputFrom::Pipe)
            .subscribe(collector.clone().recipient())
            .prepare()
            .expect("cannot prepare cat");
        let early = cat.send(WriteStdin(Bytes::from_static(b"early\n")));
        cat.send(Start)
            .await
            .expect("actor gone")
            .expect("cannot start cat");
        let _leftovers = Leftovers::of(&cat);
        let early = early.await.expect("actor gone");
        write(&cat, "late\n")
            .await
            .expect("a write after the start failed");
        cat.do_send(CloseStdin);
        assert_eq!(wait(&cat, SOON).await, ReturnCode::from_raw(0));

        if let Err(err) = &early {
            assert_ne!(
                err.kind(),
                ErrorKind::NotConnected,
                "a write to a piped stdin was refused as not a pipe: {err}"
            );
        }
        let output = collector.send(GetValue).await.expect("collector gone");
        let expected: &[u8] = if early.is_ok() {
            b"early\nlate\n"
        } else {
            b"late\n"
        };
        assert_eq!(&output.stdout[..], expected);
    });
}

// ---------------------------------------------------------------------
// Input before a deferred start
// ---------------------------------------------------------------------
//
// A task made by `Popen::prepare` (started by `Start`) or `Popen::submit`
// (started by the job pool) accepts messages before its child exists.
// Each must keep its order and effect once the child starts. Every
// scenario runs both ways: through `Start`, and through a pool of one
// place held by a blocker task until the scenario releases it.

/// How a scenario's task is started.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// `Popen::prepare`, then `Start`.
    Prepare,
    /// `Popen::submit` behind a blocker in a pool of one place.
    Pool,
}

const VIAS: [Via; 2] = [Via::Prepare, Via::Pool];

/// A task whose start is deferred, with a collector on its output and a
/// waiter on its start and exit.
struct Deferred {
    via: Via,
    task: ProcessHandle,
    collector: Addr<Collector>,
    awaited: Awaited,
    /// With [`Via::Pool`]: the task that holds the pool's one place, and
    /// its start.
    blocker: Option<(ProcessHandle, Leftovers)>,
    leftovers: Option<Leftovers>,
}

impl Deferred {
    /// `popen` with a collector subscribed and the waiter listening,
    /// prepared or queued in the pool: its child does not exist yet.
    async fn new(via: Via, popen: Popen) -> Deferred {
        let collector = Collector::start_default();
        let (waiter, awaited) = Waiter::start_new();
        let popen = popen
            .subscribe(collector.clone().recipient())
            .start_listener(waiter.clone().recipient())
            .exit_listener(waiter.recipient());
        let (task, blocker) = match via {
            Via::Prepare => (popen.prepare().expect("cannot prepare the task"), None),
            Via::Pool => {
                within(
                    "SetJobLimits",
                    ProcessSupervisor::get().send(SetJobLimits {
                        max_jobs: Some(1),
                        max_load: None,
                    }),
                )
                .await
                .expect("the supervisor is gone")
                .expect("limits refused");
                let (blocker_waiter, blocker_awaited) = Waiter::start_new();
                let blocker = Popen::new("cat")
                    .stdin(InputFrom::Pipe)
                    .stdout(OutputTo::Null)
                    .start_listener(blocker_waiter.recipient())
                    .submit()
                    .expect("cannot submit the blocker");
                event("the blocker's start", blocker_awaited.started).await;
                let blocker_leftovers = Leftovers::of(&blocker);
                let task = popen.submit().expect("cannot submit the task");
                let pool = within("GetJobPool", ProcessSupervisor::get().send(GetJobPool))
                    .await
                    .expect("the supervisor is gone");
                assert_eq!(
                    pool,
                    JobPool {
                        running: 1,
                        queued: 1
                    },
                    "the task is not held in the queue"
                );
                (task, Some((blocker, blocker_leftovers)))
            }
        };
        Deferred {
            via,
            task,
            collector,
            awaited,
            blocker,
            leftovers: None,
        }
    }

    /// Starts the child (`Start`, or frees the pool's place) and waits
    /// for its start event; returns its pid.
    async fn start(&mut self) -> u32 {
        match self.via {
            Via::Prepare => {
                within("Start", self.task.send(Start))
                    .await
                    .expect("the process actor is gone")
                    .expect("cannot start the task");
            }
            Via::Pool => {
                let (blocker, _) = self.blocker.as_ref().expect("no blocker");
                blocker.do_send(CloseStdin);
            }
        }
        let started = next_event("the task's start", &mut self.awaited.started).await;
        let pid = started.pid.expect("the task started without a child");
        // Only this thread reaps (the actor runs on it), so the child, if it
        // exited already, is still in /proc as a zombie.
        if self.task.pid().is_some() {
            self.leftovers = Some(Leftovers::of(&self.task));
        }
        pid
    }

    /// Waits for the task's end; returns its exit event and output.
    async fn end(&mut self) -> (Exited, Vec<u8>) {
        let events = next_event("the task's exit", &mut self.awaited.exited).await;
        let exited = events.exited[0];
        let output = within("GetValue", self.collector.send(GetValue))
            .await
            .expect("the collector is gone");
        if let Some((blocker, _)) = &self.blocker {
            // Frees the pool for the next scenario (harmless if it ended).
            blocker.do_send(CloseStdin);
            wait(blocker, SOON).await;
        }
        (exited, output.stdout.to_vec())
    }
}

/// [`event`] on a channel the caller keeps.
async fn next_event<T>(what: &str, receiver: &mut oneshot::Receiver<T>) -> T {
    within(what, receiver)
        .await
        .unwrap_or_else(|_| panic!("the waiter stopped before {what}"))
}

/// `cat` with its stdin a pipe of ours.
fn cat() -> Popen {
    Popen::new("cat").stdin(InputFrom::Pipe)
}

/// Sends `WriteStdin(data)` now (it is in the mailbox when this returns); the
/// returned future gives its outcome, with a bound.
fn send_write(
    handle: &ProcessHandle,
    data: &'static [u8],
) -> impl std::future::Future<Output = std::io::Result<()>> {
    let request = handle.send(WriteStdin(Bytes::from_static(data)));
    async move {
        within("a write's outcome", request)
            .await
            .expect("the process actor is gone")
    }
}

/// One thing sent to a deferred task, in a test of message orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Write(&'static [u8]),
    Close,
    Start,
}

/// Every order of two writes, a close and the start: each permutation of
/// the writes and the close, with the start at each place.
fn every_order() -> Vec<Vec<Step>> {
    let items = [Step::Write(b"a\n"), Step::Write(b"b\n"), Step::Close];
    let mut orders = Vec::new();
    for first in 0..3 {
        for second in (0..3).filter(|&i| i != first) {
            let third = 3 - first - second;
            let sent = [items[first], items[second], items[third]];
            for start_at in 0..=3 {
                let mut order = sent.to_vec();
                order.insert(start_at, Step::Start);
                orders.push(order);
            }
        }
    }
    orders
}

#[test]
fn every_order_of_writes_close_and_start_keeps_its_effect() {
    common::bounded(async {
        for via in VIAS {
            for order in every_order() {
                let mut deferred = Deferred::new(via, cat()).await;
                let mut writes = Vec::new();
                let mut expected = Vec::new();
                let mut closed = false;
                for step in &order {
                    match *step {
                        Step::Write(data) => {
                            writes.push((data, closed, send_write(&deferred.task, data)));
                            if !closed {
                                expected.extend_from_slice(data);
                            }
                        }
                        Step::Close => {
                            deferred.task.do_send(CloseStdin);
                            closed = true;
                        }
                        Step::Start => {
                            deferred.start().await;
                        }
                    }
                }
                for (data, after_close, outcome) in writes {
                    let outcome = outcome.await;
                    if after_close {
                        let err = outcome.expect_err("a write after CloseStdin succeeded");
                        assert_eq!(
                            err.kind(),
                            ErrorKind::BrokenPipe,
                            "{via:?} {order:?}: {err}"
                        );
                    } else {
                        outcome.unwrap_or_else(|err| {
                            panic!("{via:?} {order:?}: write {data:?}: {err}")
                        });
                    }
                }
                // `cat` ends only once it read EOF.
                let (exited, output) = deferred.end().await;
                assert_eq!(
                    exited.returncode,
                    ReturnCode::from_raw(0),
                    "{via:?} {order:?}"
                );
                assert!(exited.output_complete, "{via:?} {order:?}");
                assert_eq!(output, expected, "{via:?} {order:?}");
            }
        }
    });
}

#[test]
fn chunks_and_writes_before_the_start_keep_their_order() {
    common::bounded(async {
        for via in VIAS {
            let mut deferred = Deferred::new(via, cat()).await;
            // Upstream chunks (of either stream) and writes, interleaved.
            let one = deferred.task.send(Chunk::new(
                actix_popen::TaskId::new(),
                OutputStream::Stdout,
                &b"1 chunk\n"[..],
            ));
            let two = send_write(&deferred.task, b"2 write\n");
            let three = deferred.task.send(Chunk::new(
                actix_popen::TaskId::new(),
                OutputStream::Stderr,
                &b"3 chunk\n"[..],
            ));
            deferred.task.do_send(CloseStdin);
            deferred.start().await;
            within("the first chunk written", one)
                .await
                .expect("the process actor is gone");
            two.await
                .unwrap_or_else(|err| panic!("{via:?}: write: {err}"));
            within("the second chunk written", three)
                .await
                .expect("the process actor is gone");
            let (exited, output) = deferred.end().await;
            assert_eq!(exited.returncode, ReturnCode::from_raw(0), "{via:?}");
            assert_eq!(output, b"1 chunk\n2 write\n3 chunk\n", "{via:?}");
        }
    });
}

#[test]
fn listeners_changed_before_the_start_are_kept() {
    common::bounded(async {
        for via in VIAS {
            let mut deferred = Deferred::new(via, cat()).await;
            let (kept, kept_awaited) = Waiter::start_new();
            let (removed, _) = Waiter::start_new();
            let (starts, starts_awaited) = Waiter::start_new();
            let (unstarted, _) = Waiter::start_new();
            deferred
                .task
                .do_send(AddExitListener(kept.clone().recipient()));
            deferred
                .task
                .do_send(AddExitListener(removed.clone().recipient()));
            deferred
                .task
                .do_send(RemoveExitListener(removed.clone().recipient()));
            deferred
                .task
                .do_send(AddStartListener(starts.clone().recipient()));
            deferred
                .task
                .do_send(AddStartListener(unstarted.clone().recipient()));
            deferred
                .task
                .do_send(RemoveStartListener(unstarted.clone().recipient()));
            let pid = deferred.start().await;
            let started = event("the added start listener", starts_awaited.started).await;
            assert_eq!(started.pid, Some(pid), "{via:?}");
            deferred.task.do_send(CloseStdin);
            let exits = event("the added exit listener", kept_awaited.exited).await;
            let (exited, _) = deferred.end().await;
            assert_eq!(exits.exited, vec![exited], "{via:?}");
            // Everything the task sent them was sent before the exit above.
            let removed_events = within("GetEvents", removed.send(GetEvents))
                .await
                .expect("waiter gone");
            assert!(
                removed_events.exited.is_empty(),
                "{via:?}: removed, yet told"
            );
            let unstarted_events = within("GetEvents", unstarted.send(GetEvents))
                .await
                .expect("waiter gone");
            assert!(
                unstarted_events.started.is_empty(),
                "{via:?}: removed, yet told"
            );
            let starts_events = within("GetEvents", starts.send(GetEvents))
                .await
                .expect("waiter gone");
            assert_eq!(starts_events.started.len(), 1, "{via:?}: told once");
        }
    });
}

#[test]
fn cancel_after_a_write_before_the_start_fails_the_write_and_spawns_nothing() {
    common::bounded(async {
        for via in VIAS {
            let mut deferred = Deferred::new(via, cat()).await;
            let a = send_write(&deferred.task, b"a\n");
            deferred.task.do_send(Cancel);
            let err = a
                .await
                .expect_err("a write to a task cancelled unstarted succeeded");
            assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{via:?}: {err}");
            let started = next_event("the task's start", &mut deferred.awaited.started).await;
            assert_eq!(started.pid, None, "{via:?}: a child was spawned");
            if let Via::Prepare = via {
                let start = within("Start", deferred.task.send(Start))
                    .await
                    .expect("the process actor is gone");
                assert!(
                    matches!(start, Err(ref e) if matches!(e.kind(), SpawnErrorKind::AlreadyStarted)),
                    "{via:?}: {start:?}"
                );
            }
            let (exited, output) = deferred.end().await;
            assert_eq!(exited.returncode, ReturnCode::CANCELLED, "{via:?}");
            assert_eq!(exited.pid, None, "{via:?}");
            assert_eq!(output, b"", "{via:?}");
        }
    });
}

#[test]
fn close_reader_before_the_start_closes_the_output_as_the_child_starts() {
    common::bounded(async {
        for via in VIAS {
            // The child writes only once told to, so the close came first; it
            // ignores SIGPIPE to report the EPIPE as exit status 42.
            let popen = Popen::new("sh")
                // It writes a few times: a child another test spawns at that
                // moment holds a copy of every fd of ours until its exec, and a
                // write in that window finds a reader.
                .args([
                    "-c",
                    "trap '' PIPE; read line; for i in 1 2 3 4 5 6 7 8 9 10; do \
                 echo x 2>/dev/null || exit 42; sleep 0.05; done; exit 7",
                ])
                .stdin(InputFrom::Pipe)
                .stderr(OutputTo::Null);
            let mut deferred = Deferred::new(via, popen).await;
            deferred.task.do_send(CloseReader);
            deferred.start().await;
            send_write(&deferred.task, b"go\n")
                .await
                .unwrap_or_else(|err| panic!("{via:?}: write: {err}"));
            deferred.task.do_send(CloseStdin);
            let (exited, output) = deferred.end().await;
            assert_eq!(
                exited.returncode,
                ReturnCode::from_raw(42),
                "{via:?}: the child's write did not fail"
            );
            assert!(!exited.output_complete, "{via:?}");
            assert_eq!(output, b"", "{via:?}");
        }
    });
}

/// With every handle dropped nobody can write any more: the stdin closes
/// (after what was queued) and `cat` ends on the EOF, as with std's and
/// tokio's child stdin handles (issue 8, kind 10). Through `start` and
/// through the job pool, whose bookkeeping must not hold the task either.
#[test]
fn dropping_every_handle_closes_the_stdin() {
    common::bounded(async {
        for via in VIAS {
            let collector = Collector::start_default();
            let (waiter, awaited) = Waiter::start_new();
            let popen = cat()
                .subscribe(collector.clone().recipient())
                .start_listener(waiter.clone().recipient())
                .exit_listener(waiter.recipient());
            let handle = match via {
                Via::Prepare => popen.start().expect("start"),
                Via::Pool => popen.submit().expect("submit"),
            };
            event("cat's start", awaited.started).await;
            let _leftovers = Leftovers::of(&handle);
            send_write(&handle, b"last words\n")
                .await
                .unwrap_or_else(|err| panic!("{via:?}: write: {err}"));
            drop(handle);
            let events = event("cat's exit once its handles were dropped", awaited.exited).await;
            assert_eq!(
                events.exited[0].returncode,
                ReturnCode::from_raw(0),
                "{via:?}"
            );
            let output = within("GetValue", collector.send(GetValue))
                .await
                .expect("the collector is gone");
            assert_eq!(&output.stdout[..], b"last words\n", "{via:?}");
        }
    });
}
