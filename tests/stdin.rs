//! The child's stdin as messages: [`Write`] resolves once the bytes are in
//! the pipe, [`CloseStdin`] gives the child EOF, and the errors come back as
//! values: BrokenPipe once nobody reads (our process survives the SIGPIPE),
//! NotConnected when the stdin is not [`Input::Pipe`].
//!
//! Every test leaves nothing running: a [`Leftovers`] guard kills, on drop,
//! every live member of the process groups it was told about.

mod common;

use std::io::ErrorKind;
use std::pin::pin;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::{
    Cancel, Chunk, CloseStdin, Collector, GetValue, Input, IsAlive, Output, Poll, Popen,
    ProcessHandle, ReturnCode, Start, Stream, Write,
};
use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;

use common::actors::{await_output, ChunkSink};
use common::procs::{await_leader_exit, Leftovers};
use common::wait;

/// The bound for anything that should happen "at once". Generous: the
/// machine is shared and other builds run on it.
const SOON: Duration = Duration::from_secs(20);

/// How long a message to a busy actor may take to be answered: the actor
/// must not be blocked by a write in progress.
const PROMPT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

/// Sends `Write(data)` and waits, with a bound, for its outcome.
async fn write(handle: &ProcessHandle, data: impl Into<Bytes>) -> std::io::Result<()> {
    tokio::time::timeout(SOON, handle.send(Write(data.into())))
        .await
        .expect("the write did not resolve in time")
        .expect("the process actor is gone")
}

/// Asks `Poll` and checks the answer comes promptly.
async fn poll_promptly(handle: &ProcessHandle) -> Option<ReturnCode> {
    let asked = Instant::now();
    let answer = tokio::time::timeout(PROMPT, handle.send(Poll))
        .await
        .expect("the actor did not answer Poll promptly: is it blocked?")
        .expect("the process actor is gone");
    eprintln!("Poll answered in {:?}", asked.elapsed());
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

#[actix_rt::test]
async fn round_trip_through_cat_with_a_write_larger_than_the_pipe() {
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
        .stdin(Input::Pipe)
        .stderr(Output::Null)
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
    let mut big_write = pin!(cat.send(Write(big.clone())));
    let small = Bytes::from(pattern(3000, 0xa5));
    let mut small_write = pin!(cat.send(Write(small.clone())));
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
}

#[actix_rt::test]
async fn queued_writes_then_close_stdin_round_trip() {
    let collector = Collector::start_default();
    let cat = Popen::new("cat")
        .stdin(Input::Pipe)
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
    let writes: Vec<_> = pieces.iter().map(|p| cat.send(Write(p.clone()))).collect();
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
}

#[actix_rt::test]
async fn chunks_sent_to_a_process_are_fed_to_its_stdin() {
    let collector = Collector::start_default();
    let cat = Popen::new("cat")
        .stdin(Input::Pipe)
        .subscribe(collector.clone().recipient())
        .start()
        .expect("cannot start cat");
    let _leftovers = Leftovers::of(&cat);

    let pieces: Vec<Vec<u8>> = (0..10u8).map(|i| pattern(20_000, i)).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let stream = if i % 2 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        // Resolves once the chunk is in the pipe.
        tokio::time::timeout(SOON, cat.send(Chunk::new(stream, piece.clone())))
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
        .stdin(Input::Null)
        .start()
        .expect("cannot start sleep");
    let _sleeper = Leftovers::of(&sleeper);
    sleeper
        .send(Chunk::new(Stream::Stdout, &b"nowhere"[..]))
        .await
        .expect("actor gone");
    assert_eq!(poll_promptly(&sleeper).await, None);
    sleeper.do_send(Cancel);
    assert_eq!(wait(&sleeper, SOON).await, ReturnCode::from_raw(-15));
}

// ---------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------

#[actix_rt::test]
async fn write_after_the_child_exited_is_broken_pipe() {
    let handle = Popen::new("true")
        .stdin(Input::Pipe)
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
}

#[actix_rt::test]
async fn write_to_a_closed_stdin_of_a_running_child_is_broken_pipe() {
    // The child closes its stdin and goes on: the kernel answers EPIPE
    // (and raises SIGPIPE, which our process ignores).
    let (sink, mut chunks) = ChunkSink::start_new();
    let handle = Popen::new("sh")
        .args(["-c", "exec 0<&-; echo closed; exec sleep 1000"])
        .stdin(Input::Pipe)
        .subscribe(sink.recipient())
        .start()
        .expect("cannot start sh");
    let _leftovers = Leftovers::of(&handle);
    await_output(&mut chunks, b"closed\n", SOON).await;

    let err = write(&handle, "nobody reads this\n")
        .await
        .expect_err("a write nobody can read succeeded");
    assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
    // We are still here (no death by SIGPIPE), and the stdin stays broken.
    let err = write(&handle, vec![b'x'; 100_000]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe, "{err}");
    assert_eq!(poll_promptly(&handle).await, None);

    handle.do_send(Cancel);
    assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(-15));
}

#[actix_rt::test]
async fn write_after_the_reap_while_output_is_held_open_is_broken_pipe() {
    // The child exits at once; a grandchild holds its stdout open, so the
    // task goes on, but nobody has the stdin (an asynchronous command of a
    // non-interactive shell reads /dev/null).
    let handle = Popen::new("sh")
        .args(["-c", "(sleep 1000 &); exit 0"])
        .stdin(Input::Pipe)
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
}

#[actix_rt::test]
async fn write_without_a_stdin_pipe_is_not_connected() {
    for input in [Input::Null, Input::Inherit] {
        let handle = Popen::new("sleep")
            .arg("1000")
            .stdin(input)
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
}

#[actix_rt::test]
async fn head_reading_ten_bytes_of_ten_mebibytes() {
    let collector = Collector::start_default();
    let handle = Popen::new("head")
        .args(["-c", "10"])
        .stdin(Input::Pipe)
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
        .map(|block| handle.send(Write(block.clone())))
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
}

#[actix_rt::test]
async fn write_to_a_prepared_piped_task_is_not_refused_as_not_a_pipe() {
    // `Write` documents NotConnected for a stdin that is not Input::Pipe
    // only. Sent to a task made by `Popen::prepare` before its `Start`, a
    // write is refused with that very error although the stdin is a pipe:
    // the queue is only created when the child is spawned. Expected: the
    // bytes are queued for the child (or at least refused with an error
    // that does not say the stdin is not a pipe).
    let collector = Collector::start_default();
    let cat = Popen::new("cat")
        .stdin(Input::Pipe)
        .subscribe(collector.clone().recipient())
        .prepare()
        .expect("cannot prepare cat");
    let early = cat.send(Write(Bytes::from_static(b"early\n")));
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
}
