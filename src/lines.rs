//! [`LineFramer`]: turns chunks into lines, with a maximum line length.
//!
//! Output arrives in chunks cut wherever `read()` cut it; many consumers
//! want lines. The framer keeps, per stream, the bytes after the last
//! newline, and emits each complete line as a [`Line`] (without its `\n`).
//! A line longer than the maximum never grows the buffer past it; what
//! happens to it is the [`Overflow`] policy: split it into pieces of the
//! maximum length, or truncate it (its first `max` bytes as a
//! [`LineKind::Truncated`] line) and skip the rest of it up to the next
//! newline. (asyncio's `readline()` instead raises `ValueError` past its
//! 64 KiB limit and discards what it buffered; when the newline had not
//! come yet, the rest of the long line then reads as a line of its own.)
//!
//! Subscribe the framer to a process's output and add it as an exit
//! listener: on [`Exited`] it emits what is left of each stream as an
//! [`LineKind::Unterminated`] line, then forwards the [`Exited`] to its own
//! exit recipient, so that recipient sees every line before the exit.
//!
//! Each line holds the credit of the chunk that completed it (see
//! [`Chunk`]), so a slow line consumer slows the reader, as a slow chunk
//! consumer would.

use std::collections::HashMap;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};

use crate::messages::{Chunk, Credit, Exited, OutputStream};
use crate::TaskId;

/// The longest line [`Popen::lines`](crate::Popen::lines) delivers whole:
/// 64 KiB (Go's `bufio.MaxScanTokenSize`, asyncio's default `limit`);
/// longer ones come in pieces ([`Overflow::Split`]).
pub const DEFAULT_LINE_MAX: usize = 64 * 1024;

/// What to do with a line longer than the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Deliver it in pieces of the maximum length ([`LineKind::Partial`]),
    /// the last piece as an ordinary line.
    #[default]
    Split,
    /// Deliver its first `max` bytes as [`LineKind::Truncated`] and drop
    /// the rest of it, up to and including its newline.
    Truncate,
}

/// How a [`Line`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// A whole line; its `\n` was removed.
    Complete,
    /// A piece, of exactly the maximum length, of a longer line; more of
    /// the same line follows ([`Overflow::Split`]).
    Partial,
    /// The first `max` bytes of a line that was too long; the rest was
    /// dropped ([`Overflow::Truncate`]).
    Truncated,
    /// The bytes after the last newline when the output ended.
    Unterminated,
}

/// Event: one line of a stream.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Line {
    /// The task the line came from.
    pub task: TaskId,
    /// The stream the line came from.
    pub stream: OutputStream,
    /// The line, without its newline.
    pub data: Bytes,
    /// How it ended.
    pub kind: LineKind,
    // Held only for its Drop: returns the reader's credit.
    _credit: Option<Credit>,
}

impl Line {
    /// A line, as a [`LineFramer`] sends it (holding no reader's credit);
    /// for tests of code that handles one.
    pub fn new(task: TaskId, stream: OutputStream, data: impl Into<Bytes>, kind: LineKind) -> Line {
        Line {
            task,
            stream,
            data: data.into(),
            kind,
            _credit: None,
        }
    }
}

#[derive(Debug, Default)]
struct Partial {
    buf: BytesMut,
    /// Dropping the rest of an overflowed line.
    skipping: bool,
}

/// An actor that frames [`Chunk`]s into [`Line`]s (see the module docs).
///
/// ```
/// use actix::prelude::*;
/// use actix_popen::{Exited, Line, LineFramer, Overflow, Popen};
///
/// /// Counts lines until the exit.
/// struct Count(usize, Option<futures::channel::oneshot::Sender<usize>>);
/// impl Actor for Count {
///     type Context = Context<Self>;
/// }
/// impl Handler<Line> for Count {
///     type Result = ();
///     fn handle(&mut self, _line: Line, _: &mut Context<Self>) {
///         self.0 += 1;
///     }
/// }
/// impl Handler<Exited> for Count {
///     type Result = ();
///     fn handle(&mut self, _: Exited, _: &mut Context<Self>) {
///         if let Some(tx) = self.1.take() {
///             let _ = tx.send(self.0);
///         }
///     }
/// }
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (tx, rx) = futures::channel::oneshot::channel();
/// let count = Count(0, Some(tx)).start();
/// let framer = LineFramer::new(1024, Overflow::Split, count.clone().recipient())
///     .exit_to(count.recipient())
///     .start();
/// Popen::new("seq").args(["1", "1000"])
///     .subscribe(framer.clone().recipient())
///     .exit_listener(framer.recipient())
///     .start()?;
/// assert_eq!(rx.await?, 1000);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct LineFramer {
    max: usize,
    overflow: Overflow,
    keep_cr: bool,
    lines: Recipient<Line>,
    exit_to: Option<Recipient<Exited>>,
    /// Each task's unfinished line per stream, so that one framer can
    /// serve many tasks; dropped once empty and at the task's exit.
    partials: HashMap<(TaskId, OutputStream), Partial>,
}

impl LineFramer {
    /// A framer sending lines of at most `max` bytes (at least 1; the
    /// newline is not counted) to `lines`.
    pub fn new(max: usize, overflow: Overflow, lines: Recipient<Line>) -> LineFramer {
        LineFramer {
            max: max.max(1),
            overflow,
            keep_cr: false,
            lines,
            exit_to: None,
            partials: HashMap::new(),
        }
    }

    /// Whether a line that ends in `\r\n` keeps its `\r` (`false` by
    /// default: `\r\n` ends a line as `\n` does, as std's and tokio's
    /// `lines()` have it, and as a pty writes every line). Only the `\r`
    /// just before a line's `\n` is removed, never one inside a line, nor
    /// at the end of an unterminated line.
    pub fn keep_cr(mut self, keep: bool) -> LineFramer {
        self.keep_cr = keep;
        self
    }

    /// Forwards the [`Exited`] it receives to `recipient`, after the last
    /// line.
    pub fn exit_to(mut self, recipient: Recipient<Exited>) -> LineFramer {
        self.exit_to = Some(recipient);
        self
    }

    fn emit(
        &self,
        task: TaskId,
        stream: OutputStream,
        data: Bytes,
        kind: LineKind,
        credit: &Option<Credit>,
    ) {
        self.lines.do_send(Line {
            task,
            stream,
            data,
            kind,
            _credit: credit.clone(),
        });
    }

    fn frame(
        &mut self,
        task: TaskId,
        stream: OutputStream,
        mut data: &[u8],
        credit: &Option<Credit>,
    ) {
        let (max, overflow, keep_cr) = (self.max, self.overflow, self.keep_cr);
        let partial = self.partials.entry((task, stream)).or_default();
        let mut out: Vec<(Bytes, LineKind)> = Vec::new();
        while !data.is_empty() {
            let (mut segment, ended) = match data.iter().position(|&b| b == b'\n') {
                Some(at) => (&data[..at], true),
                None => (data, false),
            };
            data = &data[segment.len() + usize::from(ended)..];
            if partial.skipping {
                partial.skipping = !ended;
                continue;
            }
            // The buffer never holds more than `max` bytes.
            let mut overflowed = false;
            while partial.buf.len() + segment.len() > max {
                let room = max - partial.buf.len();
                partial.buf.extend_from_slice(&segment[..room]);
                segment = &segment[room..];
                let full = partial.buf.split().freeze();
                if overflow == Overflow::Truncate {
                    out.push((full, LineKind::Truncated));
                    // Drop the rest of this line, here and up to its newline.
                    partial.skipping = !ended;
                    overflowed = true;
                    break;
                }
                out.push((full, LineKind::Partial));
            }
            if overflowed {
                continue;
            }
            partial.buf.extend_from_slice(segment);
            if ended {
                if !keep_cr && partial.buf.last() == Some(&b'\r') {
                    partial.buf.truncate(partial.buf.len() - 1);
                }
                out.push((partial.buf.split().freeze(), LineKind::Complete));
            }
        }
        if partial.buf.is_empty() && !partial.skipping {
            self.partials.remove(&(task, stream));
        }
        for (line, kind) in out {
            self.emit(task, stream, line, kind, credit);
        }
    }

    fn flush(&mut self, task: TaskId) {
        for stream in [OutputStream::Stdout, OutputStream::Stderr] {
            let Some(mut partial) = self.partials.remove(&(task, stream)) else {
                continue;
            };
            if !partial.buf.is_empty() {
                let rest = partial.buf.split().freeze();
                self.emit(task, stream, rest, LineKind::Unterminated, &None);
            }
        }
    }
}

impl Actor for LineFramer {
    type Context = Context<Self>;
}

impl Handler<Chunk> for LineFramer {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        let credit = chunk.credit();
        self.frame(chunk.task, chunk.stream, &chunk.data, &credit);
    }
}

impl Handler<Exited> for LineFramer {
    type Result = ();

    fn handle(&mut self, exited: Exited, _ctx: &mut Context<Self>) {
        self.flush(exited.task);
        if let Some(exit_to) = &self.exit_to {
            exit_to.do_send(exited);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what a framer emits.
    #[derive(Default)]
    struct Sink(Vec<(Vec<u8>, LineKind)>);
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<Line> for Sink {
        type Result = ();
        fn handle(&mut self, line: Line, _: &mut Context<Self>) {
            self.0.push((line.data.to_vec(), line.kind));
        }
    }
    #[derive(Message)]
    #[rtype(result = "Vec<(Vec<u8>, LineKind)>")]
    struct Take;
    impl Handler<Take> for Sink {
        type Result = MessageResult<Take>;
        fn handle(&mut self, _: Take, _: &mut Context<Self>) -> Self::Result {
            MessageResult(std::mem::take(&mut self.0))
        }
    }

    /// Frames `chunks` with limit `max` and returns the lines.
    async fn frame(max: usize, overflow: Overflow, chunks: &[&[u8]]) -> Vec<(Vec<u8>, LineKind)> {
        let sink = Sink::default().start();
        let framer = LineFramer::new(max, overflow, sink.clone().recipient()).start();
        let task = crate::TaskId::new();
        for chunk in chunks {
            framer
                .send(Chunk::new(task, OutputStream::Stdout, chunk.to_vec()))
                .await
                .unwrap();
        }
        framer
            .send(Exited::new(
                task,
                None,
                crate::ReturnCode::from_raw(0),
                crate::ExitCause::Exited,
                true,
            ))
            .await
            .unwrap();
        sink.send(Take).await.unwrap()
    }

    fn lines(expected: &[(&str, LineKind)]) -> Vec<(Vec<u8>, LineKind)> {
        expected
            .iter()
            .map(|(s, k)| (s.as_bytes().to_vec(), *k))
            .collect()
    }

    use LineKind::*;

    /// Every line with its task.
    #[derive(Default)]
    struct ByTask(Vec<(TaskId, String, LineKind)>);
    impl Actor for ByTask {
        type Context = Context<Self>;
    }
    impl Handler<Line> for ByTask {
        type Result = ();
        fn handle(&mut self, line: Line, _: &mut Context<Self>) {
            let text = String::from_utf8_lossy(&line.data).into_owned();
            self.0.push((line.task, text, line.kind));
        }
    }
    #[derive(Message)]
    #[rtype(result = "Vec<(TaskId, String, LineKind)>")]
    struct TakeByTask;
    impl Handler<TakeByTask> for ByTask {
        type Result = MessageResult<TakeByTask>;
        fn handle(&mut self, _: TakeByTask, _: &mut Context<Self>) -> Self::Result {
            MessageResult(std::mem::take(&mut self.0))
        }
    }

    #[test]
    fn one_framer_keeps_each_tasks_unfinished_lines_apart() {
        crate::test_support::bounded(async {
            let sink = ByTask::default().start();
            let framer = LineFramer::new(64, Overflow::Split, sink.clone().recipient()).start();
            let (a, b) = (TaskId::new(), TaskId::new());
            let exited = |task| {
                let code = crate::ReturnCode::from_raw(0);
                Exited::new(task, None, code, crate::ExitCause::Exited, true)
            };
            for (task, data) in [(a, "AAA"), (b, "BBB"), (a, "aaa\nA2"), (b, "bbb\nB2")] {
                let chunk = Chunk::new(task, OutputStream::Stdout, data.as_bytes().to_vec());
                framer.send(chunk).await.unwrap();
            }
            framer.send(exited(a)).await.unwrap();
            framer.send(exited(b)).await.unwrap();
            assert_eq!(
                sink.send(TakeByTask).await.unwrap(),
                vec![
                    (a, "AAAaaa".to_owned(), Complete),
                    (b, "BBBbbb".to_owned(), Complete),
                    (a, "A2".to_owned(), Unterminated),
                    (b, "B2".to_owned(), Unterminated),
                ]
            );
        });
    }

    #[test]
    fn lines_across_chunk_boundaries() {
        crate::test_support::bounded(async {
            let got = frame(10, Overflow::Split, &[b"ab", b"c\nde", b"f\n\ngh"]).await;
            assert_eq!(
                got,
                lines(&[
                    ("abc", Complete),
                    ("def", Complete),
                    ("", Complete),
                    ("gh", Unterminated)
                ])
            );
        });
    }

    #[test]
    fn a_line_of_exactly_max_is_whole() {
        crate::test_support::bounded(async {
            let got = frame(4, Overflow::Split, &[b"abcd\n"]).await;
            assert_eq!(got, lines(&[("abcd", Complete)]));
            let got = frame(4, Overflow::Truncate, &[b"ab", b"cd", b"\n"]).await;
            assert_eq!(got, lines(&[("abcd", Complete)]));
        });
    }

    #[test]
    fn split_cuts_long_lines_into_max_sized_pieces() {
        crate::test_support::bounded(async {
            let got = frame(4, Overflow::Split, &[b"abcdefghij\nxy\n"]).await;
            assert_eq!(
                got,
                lines(&[
                    ("abcd", Partial),
                    ("efgh", Partial),
                    ("ij", Complete),
                    ("xy", Complete)
                ])
            );
            let got = frame(4, Overflow::Split, &[b"abcd", b"e\n"]).await;
            assert_eq!(got, lines(&[("abcd", Partial), ("e", Complete)]));
        });
    }

    #[test]
    fn truncate_reports_the_line_and_drops_its_rest() {
        crate::test_support::bounded(async {
            let got = frame(4, Overflow::Truncate, &[b"abcde", b"fgh", b"ij\nok\n"]).await;
            assert_eq!(got, lines(&[("abcd", Truncated), ("ok", Complete)]));
            let got = frame(4, Overflow::Truncate, &[b"abcde\nxy"]).await;
            assert_eq!(got, lines(&[("abcd", Truncated), ("xy", Unterminated)]));
        });
    }
}
