//! The pipe reader: non-blocking reads of output fds through the reactor.
//!
//! A [`PipeReader`] (portage's `PipeReader`) owns one or more read ends and
//! turns what it reads into [`Chunk`] messages for its subscribers. Each fd
//! is registered with the actix-rt (tokio) reactor; on every readiness
//! event the reader calls `read()` for at most `bufsize` bytes until it
//! gets EAGAIN, then waits for the next event.
//!
//! * An empty read is EOF; so is EIO, which a pty master returns on Linux
//!   once every process closed the slave side.
//! * A hang-up (EPOLLHUP) is just one more readiness event: the reader goes
//!   on reading until the empty read, so nothing still buffered in the pipe
//!   is lost (portage bug #531724).
//! * Any other read error is logged at error level and ends that input as
//!   if it were EOF.
//!
//! It works on anything epoll accepts: pipes, FIFOs, ptys and sockets. A
//! regular file cannot be watched by epoll; such an input is logged and
//! closed at once.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context as TaskContext, Poll as TaskPoll};

use actix::prelude::*;
use bytes::BytesMut;
use futures::Stream as FuturesStream;
use tokio::io::unix::AsyncFd;

use crate::messages::{Chunk, CloseReader, ReaderFinished, Stream};
use crate::sys::fd::{read_buf, set_nonblocking, Read};

/// portage's `AbstractPollTask._bufsize`: bytes asked for by each `read()`.
pub const DEFAULT_BUFSIZE: usize = 4096;

/// An actor that reads its inputs until EOF and sends every chunk to its
/// subscribers, in order (portage's `PipeReader`).
///
/// Subscribers and finish listeners are fixed before the reader starts, so
/// no chunk can be read before its recipients are known.
///
/// ```
/// use actix::prelude::*;
/// use actix_popen::{Collector, GetValue, PipeReader, ReaderFinished, Stream};
/// use futures::channel::oneshot;
/// use std::io::Write;
///
/// /// Tells the test when the reader has finished.
/// struct Done(Option<oneshot::Sender<bool>>);
/// impl Actor for Done {
///     type Context = Context<Self>;
/// }
/// impl Handler<ReaderFinished> for Done {
///     type Result = ();
///     fn handle(&mut self, msg: ReaderFinished, _: &mut Context<Self>) {
///         if let Some(tx) = self.0.take() {
///             let _ = tx.send(msg.complete);
///         }
///     }
/// }
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (read_end, mut write_end) = std::io::pipe()?;
/// let collector = Collector::start_default();
/// let (tx, finished) = oneshot::channel();
/// PipeReader::new()
///     .input(Stream::Stdout, read_end)
///     .subscribe(collector.clone().recipient())
///     .on_finished(Done(Some(tx)).start().recipient())
///     .start();
/// write_end.write_all(b"hello")?;
/// drop(write_end); // EOF
/// assert!(finished.await?); // every input reached EOF
/// let collected = collector.send(GetValue).await?;
/// assert_eq!(&collected.stdout[..], b"hello");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PipeReader {
    inputs: Vec<(Stream, OwnedFd)>,
    bufsize: usize,
    subscribers: Vec<Recipient<Chunk>>,
    finish_listeners: Vec<Recipient<ReaderFinished>>,
    open: usize,
    finished: bool,
}

impl Default for PipeReader {
    fn default() -> Self {
        Self::new()
    }
}

impl PipeReader {
    /// A reader with no inputs yet and the default `bufsize` of 4096.
    pub fn new() -> PipeReader {
        PipeReader {
            inputs: Vec::new(),
            bufsize: DEFAULT_BUFSIZE,
            subscribers: Vec::new(),
            finish_listeners: Vec::new(),
            open: 0,
            finished: false,
        }
    }

    /// Adds an input: its chunks are tagged `stream`.
    ///
    /// The reader puts the fd in non-blocking mode and closes it at EOF.
    pub fn input(mut self, stream: Stream, fd: impl Into<OwnedFd>) -> PipeReader {
        self.inputs.push((stream, fd.into()));
        self
    }

    /// Sets the most bytes one `read()` asks for; values below 1 are
    /// raised to 1.
    pub fn bufsize(mut self, bufsize: usize) -> PipeReader {
        self.bufsize = bufsize.max(1);
        self
    }

    /// Sends every chunk to `recipient`.
    pub fn subscribe(mut self, recipient: Recipient<Chunk>) -> PipeReader {
        self.subscribers.push(recipient);
        self
    }

    /// Tells `recipient` when every input is finished.
    pub fn on_finished(mut self, recipient: Recipient<ReaderFinished>) -> PipeReader {
        self.finish_listeners.push(recipient);
        self
    }

    fn finish(&mut self, complete: bool, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        self.finished = true;
        for listener in self.finish_listeners.drain(..) {
            listener.do_send(ReaderFinished { complete });
        }
        ctx.stop();
    }
}

impl Actor for PipeReader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for (stream, fd) in std::mem::take(&mut self.inputs) {
            match FdStream::new(stream, fd, self.bufsize) {
                Ok(reader) => {
                    self.open += 1;
                    ctx.add_stream(reader);
                }
                Err(err) => log::error!("pipe reader: cannot watch the {stream:?} input: {err}"),
            }
        }
        if self.open == 0 {
            self.finish(true, ctx);
        }
    }
}

/// One step of one input.
#[derive(Debug)]
pub(crate) enum ReadEvent {
    Data(Chunk),
    Eof,
}

impl StreamHandler<ReadEvent> for PipeReader {
    fn handle(&mut self, event: ReadEvent, ctx: &mut Context<Self>) {
        match event {
            ReadEvent::Data(chunk) => {
                if let Some((last, rest)) = self.subscribers.split_last() {
                    for subscriber in rest {
                        subscriber.do_send(chunk.clone());
                    }
                    last.do_send(chunk);
                }
            }
            ReadEvent::Eof => {
                self.open = self.open.saturating_sub(1);
                if self.open == 0 {
                    self.finish(true, ctx);
                }
            }
        }
    }

    // EOF is reported as an event, so the end of one input's stream must
    // not stop the actor (actix's default) while others are still open.
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<CloseReader> for PipeReader {
    type Result = ();

    fn handle(&mut self, _msg: CloseReader, ctx: &mut Context<Self>) {
        // Stopping drops the streams, which deregisters and closes the fds.
        self.finish(false, ctx);
    }
}

/// A stream of [`ReadEvent`]s from one non-blocking fd: data chunks, then
/// one `Eof`, then the end.
pub(crate) struct FdStream {
    stream: Stream,
    fd: AsyncFd<OwnedFd>,
    buf: BytesMut,
    bufsize: usize,
    done: bool,
}

impl FdStream {
    /// Puts `fd` in non-blocking mode and registers it with the reactor.
    ///
    /// # Errors
    /// The fd cannot be watched by epoll (a regular file: EPERM), or no
    /// reactor runs on this thread.
    pub(crate) fn new(stream: Stream, fd: OwnedFd, bufsize: usize) -> io::Result<FdStream> {
        set_nonblocking(fd.as_fd())?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other("no tokio reactor runs on this thread"));
        }
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open and keeps
        // its number until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)? };
        Ok(FdStream {
            stream,
            fd,
            buf: BytesMut::new(),
            bufsize,
            done: false,
        })
    }
}

impl FuturesStream for FdStream {
    type Item = ReadEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> TaskPoll<Option<ReadEvent>> {
        let this = self.get_mut();
        if this.done {
            return TaskPoll::Ready(None);
        }
        loop {
            // Readiness only tells us when to try again after EAGAIN; the
            // read itself is attempted whatever the event flags say.
            let mut guard = match ready!(this.fd.poll_read_ready(cx)) {
                Ok(guard) => guard,
                Err(err) => {
                    log::error!("pipe reader: waiting on {:?}: {err}", this.stream);
                    this.done = true;
                    return TaskPoll::Ready(Some(ReadEvent::Eof));
                }
            };
            match read_buf(guard.get_inner(), &mut this.buf, this.bufsize) {
                Ok(Read::Data(data)) => {
                    return TaskPoll::Ready(Some(ReadEvent::Data(Chunk {
                        stream: this.stream,
                        data,
                    })))
                }
                Ok(Read::WouldBlock) => guard.clear_ready(),
                Ok(Read::Eof) => {
                    this.done = true;
                    return TaskPoll::Ready(Some(ReadEvent::Eof));
                }
                Err(err) => {
                    log::error!("pipe reader: reading {:?}: {err}", this.stream);
                    this.done = true;
                    return TaskPoll::Ready(Some(ReadEvent::Eof));
                }
            }
        }
    }
}
