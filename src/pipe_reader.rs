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
//! Each input has a window of chunks (16 by default): a chunk's credit
//! returns when every subscriber has dropped it (see [`Chunk`]), and with
//! the window used up the reader stops reading that input until credit
//! returns. A credit scheme rather than awaiting `send()`: the credit
//! travels inside the chunk, so it costs no reply channel per chunk and
//! per subscriber, it is released even by a subscriber that stopped, and
//! it never depends on actix waking a sender parked on a full mailbox.
//!
//! It works on anything epoll accepts: pipes, FIFOs, ptys and sockets. A
//! regular file cannot be watched by epoll; such an input is logged and
//! closed at once.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::unix::AsyncFd;
use tokio::sync::{Notify, Semaphore};

use crate::messages::{Chunk, CloseReader, CloseStream, OutputStream, ReaderFinished};
use crate::sys::fd::{read_buf, set_nonblocking, tee_once, Read, Teed};
use crate::sys::reactor::watch;
use crate::TaskId;

use crate::options::{DEFAULT_BUFSIZE, DEFAULT_WINDOW, MAX_BUFSIZE, MAX_COALESCE, MAX_WINDOW};

/// An actor that reads its inputs until EOF and sends every chunk to its
/// subscribers, in order (portage's `PipeReader`).
///
/// Subscribers and finish listeners are fixed before the reader starts, so
/// no chunk can be read before its recipients are known.
///
/// ```
/// use actix::prelude::*;
/// use actix_popen::{Collector, GetValue, PipeReader, ReaderFinished, OutputStream};
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
///     .input(OutputStream::Stdout, read_end)
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
    task: TaskId,
    inputs: Vec<(OutputStream, OwnedFd)>,
    bufsize: usize,
    coalesce: usize,
    window: usize,
    subscribers: Vec<(Option<OutputStream>, Recipient<Chunk>)>,
    finish_listeners: Vec<Recipient<ReaderFinished>>,
    finish_channels: Vec<oneshot::Sender<bool>>,
    /// Pipes that get a copy of a stream's bytes by `tee(2)` before they
    /// are read (a pipeline's next stage).
    tees: Vec<(OutputStream, OwnedFd)>,
    stalls: Arc<Stalls>,
    /// Each input's pump while it runs, to close one stream alone.
    pumps: Vec<Option<(OutputStream, SpawnHandle)>>,
    /// An input was closed before its EOF.
    cut_short: bool,
    /// Each input's request to end once it has read what is ready.
    drains: Vec<Arc<Drain>>,
    open: usize,
    finished: bool,
}

impl Default for PipeReader {
    fn default() -> Self {
        Self::new()
    }
}

impl PipeReader {
    /// A reader with no inputs yet, the default `bufsize` of 4096 and the
    /// default window of 16 chunks.
    pub fn new() -> PipeReader {
        PipeReader {
            task: TaskId::new(),
            inputs: Vec::new(),
            bufsize: DEFAULT_BUFSIZE,
            coalesce: 0,
            window: DEFAULT_WINDOW,
            subscribers: Vec::new(),
            finish_listeners: Vec::new(),
            finish_channels: Vec::new(),
            tees: Vec::new(),
            stalls: Arc::new(Stalls::default()),
            pumps: Vec::new(),
            cut_short: false,
            drains: Vec::new(),
            open: 0,
            finished: false,
        }
    }

    /// Tags every chunk with `task` (a reader has an id of its own
    /// otherwise; a task's reader has the task's).
    pub fn task(mut self, task: TaskId) -> PipeReader {
        self.task = task;
        self
    }

    /// The id its chunks carry.
    pub fn task_id(&self) -> TaskId {
        self.task
    }

    /// Adds an input: its chunks are tagged `stream`.
    ///
    /// The reader puts the fd in non-blocking mode and closes it at EOF.
    pub fn input(mut self, stream: OutputStream, fd: impl Into<OwnedFd>) -> PipeReader {
        self.inputs.push((stream, fd.into()));
        self
    }

    /// Sets the most bytes one `read()` asks for; values below 1 are
    /// raised to 1, values above [`MAX_BUFSIZE`]
    /// lowered to it.
    pub fn bufsize(mut self, bufsize: usize) -> PipeReader {
        self.bufsize = bufsize.clamp(1, MAX_BUFSIZE);
        self
    }

    /// Lets one chunk gather up to `bytes` from reads that are ready at
    /// once (each read still asks for at most `bufsize`). By default each
    /// chunk is one read, as in portage; coalescing trades that for fewer
    /// messages when the child writes fast. Values above
    /// [`MAX_COALESCE`] are lowered to it.
    pub fn coalesce(mut self, bytes: usize) -> PipeReader {
        self.coalesce = bytes.min(MAX_COALESCE);
        self
    }

    /// Sets how many chunks of one input may be unconsumed at once; values
    /// below 1 are raised to 1, values above
    /// [`MAX_WINDOW`] lowered to it. Memory held per
    /// input is about `window × bufsize` (`window × coalesce` when
    /// [`coalesce`](Self::coalesce) is larger).
    pub fn window(mut self, window: usize) -> PipeReader {
        self.window = window.clamp(1, MAX_WINDOW);
        self
    }

    /// Sends every chunk, of every input, to `recipient`.
    pub fn subscribe(mut self, recipient: Recipient<Chunk>) -> PipeReader {
        self.subscribers.push((None, recipient));
        self
    }

    /// Sends the chunks of the inputs tagged `stream` to `recipient`.
    pub fn subscribe_stream(
        mut self,
        stream: OutputStream,
        recipient: Recipient<Chunk>,
    ) -> PipeReader {
        self.subscribers.push((Some(stream), recipient));
        self
    }

    /// Tells `recipient` when every input is finished.
    pub fn on_finished(mut self, recipient: Recipient<ReaderFinished>) -> PipeReader {
        self.finish_listeners.push(recipient);
        self
    }

    /// Sends whether every input reached EOF on `tx` when the reader
    /// finishes, as [`on_finished`](Self::on_finished) does by message,
    /// but without holding an address of the listener.
    pub(crate) fn on_finished_channel(mut self, tx: oneshot::Sender<bool>) -> PipeReader {
        self.finish_channels.push(tx);
        self
    }

    /// Copies the bytes of the input tagged `stream` into the pipe `sink`
    /// by `tee(2)`, before reading them, so that they reach it without
    /// passing through this process: a pipeline's next stage when this
    /// stage's output is observed. The input must be a pipe. The sink is
    /// closed when the input ends; when the sink's reader is gone (EPIPE),
    /// the input is closed, so that its writer gets EPIPE too.
    pub(crate) fn tee(mut self, stream: OutputStream, sink: OwnedFd) -> PipeReader {
        self.tees.push((stream, sink));
        self
    }

    /// Records, for whoever else holds `stalls`, when reading waits for
    /// credit.
    pub(crate) fn record_stalls(mut self, stalls: Arc<Stalls>) -> PipeReader {
        self.stalls = stalls;
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
        for tx in self.finish_channels.drain(..) {
            let _ = tx.send(complete);
        }
        ctx.stop();
    }

    /// Input `index` is over (EOF, or closed alone by [`CloseStream`]).
    fn input_done(&mut self, index: usize, ctx: &mut Context<Self>) {
        if let Some(pump) = self.pumps.get_mut(index) {
            *pump = None;
        }
        self.open = self.open.saturating_sub(1);
        if self.open == 0 {
            self.finish(!self.cut_short, ctx);
        }
    }
}

impl Actor for PipeReader {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for (stream, fd) in std::mem::take(&mut self.inputs) {
            let tee = self
                .tees
                .iter()
                .position(|(s, _)| *s == stream)
                .map(|at| self.tees.swap_remove(at).1);
            let watched = register(fd).and_then(|fd| {
                let tee = tee
                    .map(|sink| {
                        set_nonblocking(sink.as_fd())?;
                        watch(sink, tokio::io::Interest::WRITABLE)
                    })
                    .transpose()?;
                Ok((fd, tee))
            });
            match watched {
                Ok((fd, tee)) => {
                    self.open += 1;
                    let subscribers: Vec<Recipient<Chunk>> = self
                        .subscribers
                        .iter()
                        .filter(|(only, _)| only.is_none_or(|only| only == stream))
                        .map(|(_, recipient)| recipient.clone())
                        .collect();
                    let drain = Arc::new(Drain::default());
                    self.drains.push(drain.clone());
                    let input = Input {
                        drain,
                        sigpipe_ignored: crate::sys::sigpipe::ignored(),
                        tee,
                        task: self.task,
                        stream,
                        fd,
                        bufsize: self.bufsize,
                        coalesce: self.coalesce.max(self.bufsize),
                        eof: false,
                        failed: false,
                        credit: Arc::new(Semaphore::new(self.window)),
                        stalls: self.stalls.clone(),
                        subscribers,
                    };
                    let index = self.pumps.len();
                    let pump = ctx.spawn(input.pump().into_actor(self).map(
                        move |reached_eof, act, ctx| {
                            // A read error ends an input short.
                            act.cut_short |= !reached_eof;
                            act.input_done(index, ctx)
                        },
                    ));
                    self.pumps.push(Some((stream, pump)));
                }
                Err(err) => {
                    // Never read: the output is not complete.
                    log::error!("pipe reader: cannot watch the {stream:?} input: {err}");
                    self.cut_short = true;
                }
            }
        }
        if self.open == 0 {
            self.finish(!self.cut_short, ctx);
        }
    }
}

impl Handler<CloseStream> for PipeReader {
    type Result = ();

    /// Stops reading the inputs tagged with the stream and closes them
    /// (dropping a pump closes its fd); the reader finishes, incomplete,
    /// once the others reach EOF.
    fn handle(&mut self, CloseStream(stream): CloseStream, ctx: &mut Context<Self>) {
        for index in 0..self.pumps.len() {
            // Inputs still being pumped only: an ended one is `None`.
            if let Some((_, pump)) = self.pumps[index].filter(|(s, _)| *s == stream) {
                ctx.cancel_future(pump);
                self.cut_short = true;
                self.input_done(index, ctx);
            }
        }
    }
}

/// Tells a reader to read what its inputs hold now and then close them,
/// unfinished, without waiting for their EOF: a cancelled task's
/// terminal, whose child has exited, is hung up so, while a process left
/// behind still holds it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseWhenDrained;

impl Handler<CloseWhenDrained> for PipeReader {
    type Result = ();

    fn handle(&mut self, _msg: CloseWhenDrained, _ctx: &mut Context<Self>) {
        for drain in &self.drains {
            drain.requested.store(true, Ordering::SeqCst);
            // A permit if the pump is not waiting now: it looks next time.
            drain.wake.notify_one();
        }
    }
}

/// An input's [`CloseWhenDrained`].
#[derive(Debug, Default)]
struct Drain {
    requested: AtomicBool,
    wake: Notify,
}

impl Handler<CloseReader> for PipeReader {
    type Result = ();

    fn handle(&mut self, _msg: CloseReader, ctx: &mut Context<Self>) {
        // Stopping drops the pumps, which deregisters and closes the fds.
        self.finish(false, ctx);
    }
}

/// Puts `fd` in non-blocking mode and registers it with the reactor.
///
/// # Errors
/// The fd cannot be watched by epoll (a regular file: EPERM), or no reactor
/// runs on this thread.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    set_nonblocking(fd.as_fd())?;
    watch(fd, tokio::io::Interest::READABLE)
}

/// One input being read.
struct Input {
    /// End at the first empty read once requested.
    drain: Arc<Drain>,
    /// Where each byte is copied by `tee(2)` before it is read.
    tee: Option<AsyncFd<OwnedFd>>,
    /// Whether SIGPIPE was ignored when the input started (a `tee` into a
    /// sink with no reader then needs no guard).
    sigpipe_ignored: bool,
    task: TaskId,
    stream: OutputStream,
    fd: AsyncFd<OwnedFd>,
    bufsize: usize,
    /// The most bytes one chunk may gather from reads that are ready.
    coalesce: usize,
    /// EOF was seen while gathering a chunk: report it next.
    eof: bool,
    /// A read failed: the input ended before its EOF.
    failed: bool,
    credit: Arc<Semaphore>,
    stalls: Arc<Stalls>,
    subscribers: Vec<Recipient<Chunk>>,
}

impl Input {
    /// Reads until EOF, sending each chunk to every subscriber. Returns
    /// whether the input reached its EOF (rather than a read error, or a
    /// close before it).
    async fn pump(mut self) -> bool {
        self.forward().await;
        !self.failed
    }

    async fn forward(&mut self) {
        let mut buf = BytesMut::new();
        loop {
            // Take the credit first: with the window used up, nothing is
            // read, so the pipe fills and the child waits.
            let credit = match self.credit.clone().try_acquire_owned() {
                Ok(credit) => credit,
                Err(_) => {
                    self.stalls.begin();
                    let credit = self.credit.clone().acquire_owned().await;
                    self.stalls.end();
                    let Ok(credit) = credit else {
                        return;
                    };
                    credit
                }
            };
            let Some(data) = self.read(&mut buf).await else {
                return;
            };
            let chunk = Chunk::with_credit(self.task, self.stream, data, credit);
            if let Some((last, rest)) = self.subscribers.split_last() {
                for subscriber in rest {
                    subscriber.do_send(chunk.clone());
                }
                last.do_send(chunk);
            }
        }
    }

    /// The next chunk, or `None` at EOF (or on an error, logged).
    ///
    /// One `read()` of at most `bufsize` bytes; with `coalesce` above
    /// `bufsize`, more reads are appended to the same chunk until the pipe
    /// is empty or the chunk holds `coalesce` bytes, so a fast writer costs
    /// one message per `coalesce` bytes rather than one per read.
    async fn read(&mut self, buf: &mut BytesMut) -> Option<Bytes> {
        if self.eof {
            return None;
        }
        if self.tee.is_some() {
            return self.read_teed(buf).await;
        }
        loop {
            if self.drain.requested.load(Ordering::SeqCst) {
                return self.read_ready(buf);
            }
            let readable = self.fd.readable();
            let woken = self.drain.wake.notified();
            futures::pin_mut!(readable, woken);
            let ready = match futures::future::select(readable, woken).await {
                futures::future::Either::Left((ready, _)) => ready,
                // Asked to drain: read what is ready, above.
                futures::future::Either::Right(((), _)) => continue,
            };
            let mut guard = match ready {
                Ok(guard) => guard,
                Err(err) => {
                    log::error!("pipe reader: waiting on {:?}: {err}", self.stream);
                    self.failed = true;
                    return None;
                }
            };
            // Readiness only says when to try again after EAGAIN; the read
            // itself is attempted whatever the event flags say, and a
            // hang-up keeps the fd ready until the read sees EOF.
            match read_buf(guard.get_inner(), buf, self.bufsize) {
                Ok(Read::Data(_)) => {
                    match gather(guard.get_inner(), buf, self.coalesce, self.bufsize) {
                        Gathered::Full => {}
                        Gathered::Empty => guard.clear_ready(),
                        Gathered::Eof => self.eof = true,
                        Gathered::Failed(err) => {
                            // (`fail`, with the fd still borrowed.)
                            log::error!("pipe reader: reading {:?}: {err}", self.stream);
                            self.eof = true;
                            self.failed = true;
                        }
                    }
                    return Some(buf.split().freeze());
                }
                Ok(Read::WouldBlock) => {
                    guard.clear_ready();
                    // An idle input holds no buffer: with thousands of
                    // quiet children, that is most of the memory.
                    *buf = BytesMut::new();
                }
                Ok(Read::Eof) => return None,
                Err(err) => {
                    log::error!("pipe reader: reading {:?}: {err}", self.stream);
                    self.failed = true;
                    return None;
                }
            }
        }
    }
}

/// What a teed input waits for before it tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Nothing,
    /// Bytes in the input.
    Source,
    /// Room in the sink.
    Sink,
}

impl Input {
    /// [`read`](Self::read) for an input with a sink: each byte is first
    /// copied into the sink by `tee(2)`, then read, so that the sink gets
    /// every byte, in order, at the kernel's pace, and the subscribers the
    /// same bytes as chunks. Waits for bytes in the input or room in the
    /// sink, whichever stopped it.
    async fn read_teed(&mut self, buf: &mut BytesMut) -> Option<Bytes> {
        let mut wait = Wait::Nothing;
        loop {
            let room = (self.coalesce - buf.len()).min(self.bufsize);
            let teed = match (wait, &self.tee) {
                (_, None) => return None,
                (Wait::Nothing, Some(sink)) => tee_once(
                    self.fd.get_ref(),
                    sink.get_ref(),
                    room,
                    self.sigpipe_ignored,
                ),
                // A wait ends with a try; if it finds the same as before,
                // the readiness was stale: it is cleared, and waited for
                // again.
                (Wait::Source, Some(sink)) => {
                    let Ok(mut ready) = self.fd.readable().await else {
                        return self.end_teed(buf, true);
                    };
                    match ready.try_io(|fd| {
                        match tee_once(fd.get_ref(), sink.get_ref(), room, self.sigpipe_ignored) {
                            Ok(Teed::SourceEmpty) => Err(io::ErrorKind::WouldBlock.into()),
                            other => other,
                        }
                    }) {
                        Ok(teed) => teed,
                        Err(_empty) => continue,
                    }
                }
                (Wait::Sink, Some(sink)) => {
                    // The next stage is slow: what waits was written, and is
                    // only being taken slowly, as with slow subscribers (the
                    // drain timeout does not count it).
                    self.stalls.begin();
                    let ready = sink.writable().await;
                    self.stalls.end();
                    let Ok(mut ready) = ready else {
                        return self.end_teed(buf, true);
                    };
                    match ready.try_io(|sink| {
                        match tee_once(
                            self.fd.get_ref(),
                            sink.get_ref(),
                            room,
                            self.sigpipe_ignored,
                        ) {
                            Ok(Teed::SinkFull) => Err(io::ErrorKind::WouldBlock.into()),
                            other => other,
                        }
                    }) {
                        Ok(teed) => teed,
                        Err(_full) => continue,
                    }
                }
            };
            wait = Wait::Nothing;
            match teed {
                Ok(Teed::Bytes(n)) => {
                    // Those bytes are in the input: take exactly them.
                    let want = buf.len() + n;
                    while buf.len() < want {
                        match read_buf(self.fd.get_ref(), buf, want - buf.len()) {
                            Ok(Read::Data(_)) => {}
                            // Not expected: what was teed is there to read.
                            Ok(_) => return self.end_teed(buf, true),
                            Err(err) => {
                                log::error!("pipe reader: reading {:?}: {err}", self.stream);
                                return self.end_teed(buf, true);
                            }
                        }
                    }
                    if buf.len() >= self.coalesce {
                        return Some(buf.split().freeze());
                    }
                }
                Ok(Teed::Eof) => return self.end_teed(buf, false),
                Ok(Teed::SinkGone) => return self.end_teed(buf, true),
                Ok(Teed::SourceEmpty) | Ok(Teed::SinkFull) if !buf.is_empty() => {
                    return Some(buf.split().freeze());
                }
                Ok(Teed::SourceEmpty) => wait = Wait::Source,
                Ok(Teed::SinkFull) => wait = Wait::Sink,
                Err(err) => {
                    log::error!(
                        "pipe reader: copying {:?} to the next stage: {err}",
                        self.stream
                    );
                    return self.end_teed(buf, true);
                }
            }
        }
    }

    /// A teed input ends (at EOF, or `cut` short): the sink is closed, so
    /// its reader sees EOF after every byte; what was read comes last.
    fn end_teed(&mut self, buf: &mut BytesMut, cut: bool) -> Option<Bytes> {
        self.tee = None;
        self.eof = true;
        self.failed |= cut;
        (!buf.is_empty()).then(|| buf.split().freeze())
    }

    /// A read failed (logged): the input ends, before its EOF.
    fn fail(&mut self, err: io::Error) {
        log::error!("pipe reader: reading {:?}: {err}", self.stream);
        self.eof = true;
        self.failed = true;
    }

    /// For [`CloseWhenDrained`]: what the input holds now, up to one
    /// chunk, or `None` once it is empty or at EOF. Once it is empty, the
    /// input ends, before its EOF.
    fn read_ready(&mut self, buf: &mut BytesMut) -> Option<Bytes> {
        match gather(self.fd.get_ref(), buf, self.coalesce, self.bufsize) {
            Gathered::Full => {}
            Gathered::Empty => {
                self.eof = true;
                self.failed = true;
            }
            Gathered::Eof => self.eof = true,
            Gathered::Failed(err) => self.fail(err),
        }
        (!buf.is_empty()).then(|| buf.split().freeze())
    }
}

/// How [`gather`] stopped.
enum Gathered {
    /// The chunk holds `coalesce` bytes.
    Full,
    /// The pipe is empty now (EAGAIN).
    Empty,
    Eof,
    Failed(io::Error),
}

/// Appends to `buf` what `fd` holds, until the pipe is empty or the chunk
/// holds `coalesce` bytes; a read never asks for more than `bufsize`, nor
/// for more than the chunk has room for.
fn gather(fd: &OwnedFd, buf: &mut BytesMut, coalesce: usize, bufsize: usize) -> Gathered {
    while buf.len() < coalesce {
        let room = (coalesce - buf.len()).min(bufsize);
        match read_buf(fd, buf, room) {
            Ok(Read::Data(_)) => {}
            Ok(Read::WouldBlock) => return Gathered::Empty,
            Ok(Read::Eof) => return Gathered::Eof,
            Err(err) => return Gathered::Failed(err),
        }
    }
    Gathered::Full
}

/// How long reading has waited for credit: the time during which at least
/// one input had its window used up by slow subscribers.
#[derive(Debug, Default)]
pub(crate) struct Stalls(Mutex<StallState>);

#[derive(Debug, Default)]
struct StallState {
    total: Duration,
    blocked: usize,
    since: Option<Instant>,
}

impl Stalls {
    fn state(&self) -> std::sync::MutexGuard<'_, StallState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self) {
        let mut state = self.state();
        if state.blocked == 0 {
            state.since = Some(Instant::now());
        }
        state.blocked += 1;
    }

    fn end(&self) {
        let mut state = self.state();
        state.blocked = state.blocked.saturating_sub(1);
        if state.blocked == 0 {
            if let Some(since) = state.since.take() {
                state.total += since.elapsed();
            }
        }
    }

    /// The total time stalled so far, including a stall still going on.
    pub(crate) fn stalled(&self) -> Duration {
        let state = self.state();
        state.total + state.since.map_or(Duration::ZERO, |since| since.elapsed())
    }
}
