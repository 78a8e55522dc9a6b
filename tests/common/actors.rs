//! Small subscribers the tests share (besides [`super::Waiter`]): one that
//! forwards every chunk's bytes into a channel, with a reader of that
//! channel line by line; one that tells of the first chunk; one that
//! counts lines.

use std::time::Duration;

use actix::prelude::*;
use actix_popen::{Chunk, OutputStream};
use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;

/// Forwards the stream and bytes of every chunk it is sent into a
/// channel. It keeps no `Chunk`, so it never holds back the reader's
/// window.
#[derive(Debug)]
pub struct ChunkSink(pub mpsc::UnboundedSender<(OutputStream, Bytes)>);

impl ChunkSink {
    /// Starts a sink on the current arbiter; returns its address and the
    /// channel it forwards into.
    pub fn start_new() -> (
        Addr<ChunkSink>,
        mpsc::UnboundedReceiver<(OutputStream, Bytes)>,
    ) {
        let (tx, rx) = mpsc::unbounded();
        (ChunkSink(tx).start(), rx)
    }
}

impl Actor for ChunkSink {
    type Context = Context<Self>;
}

impl Handler<Chunk> for ChunkSink {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        let _ = self.0.unbounded_send((chunk.stream, chunk.data));
    }
}

/// Reads the chunks of a [`ChunkSink`] until the bytes seen (of either
/// stream) end with `expected`, each chunk within `bound`; returns them.
pub async fn await_output(
    chunks: &mut mpsc::UnboundedReceiver<(OutputStream, Bytes)>,
    expected: &[u8],
    bound: Duration,
) -> Vec<u8> {
    let mut seen = Vec::new();
    while !seen.ends_with(expected) {
        let (_, data) = actix_rt::time::timeout(bound, chunks.next())
            .await
            .unwrap_or_else(|_| panic!("no output within {bound:?}; so far {seen:?}"))
            .expect("the output ended early");
        seen.extend_from_slice(&data);
    }
    seen
}

/// The child's stdout, line by line, as a [`ChunkSink`] forwards it.
#[derive(Debug)]
pub struct LineReader {
    chunks: mpsc::UnboundedReceiver<(OutputStream, Bytes)>,
    buf: Vec<u8>,
    /// How long each line may take.
    bound: Duration,
}

impl LineReader {
    /// Reads `chunks`, waiting at most `bound` for each line.
    pub fn new(
        chunks: mpsc::UnboundedReceiver<(OutputStream, Bytes)>,
        bound: Duration,
    ) -> LineReader {
        LineReader {
            chunks,
            buf: Vec::new(),
            bound,
        }
    }

    /// The next whole line, without its `\n`.
    pub async fn next(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return String::from_utf8_lossy(&line[..end]).into_owned();
            }
            let (stream, data) = actix_rt::time::timeout(self.bound, self.chunks.next())
                .await
                .expect("the child wrote no line in time")
                .expect("the output ended before a whole line");
            if stream == OutputStream::Stdout {
                self.buf.extend_from_slice(&data);
            }
        }
    }

    /// The next line, which must be a pid printed by the child (`$!`).
    pub async fn next_pid(&mut self) -> i32 {
        let line = self.next().await;
        line.parse()
            .unwrap_or_else(|_| panic!("expected a pid from the child, got {line:?}"))
    }
}

/// A subscriber that tells when it got its first chunk and does nothing
/// else (so it can live on an arbiter that the test stops).
#[derive(Debug)]
pub struct FirstChunk(pub Option<oneshot::Sender<()>>);

impl Actor for FirstChunk {
    type Context = Context<Self>;
}

impl Handler<Chunk> for FirstChunk {
    type Result = ();

    fn handle(&mut self, _chunk: Chunk, _ctx: &mut Context<Self>) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Counts the lines it is sent and tells when there are `expected`.
#[derive(Debug)]
pub struct LineCounter {
    lines: usize,
    expected: usize,
    done: Option<oneshot::Sender<()>>,
}

impl LineCounter {
    /// Starts a counter on the current arbiter; returns its address and
    /// the channel that fires once `expected` lines came.
    pub fn start_new(expected: usize) -> (Addr<LineCounter>, oneshot::Receiver<()>) {
        let (tx, done) = oneshot::channel();
        let counter = LineCounter {
            lines: 0,
            expected,
            done: Some(tx),
        };
        (counter.start(), done)
    }
}

impl Actor for LineCounter {
    type Context = Context<Self>;
}

impl Handler<Chunk> for LineCounter {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        self.lines += chunk.data.iter().filter(|&&b| b == b'\n').count();
        if self.lines >= self.expected {
            if let Some(tx) = self.done.take() {
                let _ = tx.send(());
            }
        }
    }
}
