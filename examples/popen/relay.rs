//! The relay: the actor that takes the child's chunks and hands them to
//! popen's stdout and stderr sinks, in order, holding each chunk (and its
//! backpressure credit) until it is written.
//!
//! When a reader of popen's output goes away, the child's stream is closed
//! (`CloseStream`): its next write gets SIGPIPE, as in a shell pipeline.
//! popen learns of it as soon as the reader leaves, not only at its next
//! write: a pipe's write end reports EPOLLERR once its last reader is gone,
//! and `watch_reader` waits for that. Any other write error (a full disk,
//! EBADF, a terminal that hung up) is reported in one line, cancels the
//! child, and makes popen exit 1, as `cat` does: output was lost.

use std::io::{self, ErrorKind};
use std::os::fd::OwnedFd;

use actix::prelude::*;
use actix_popen::{Cancel, Chunk, CloseStream, Exited, OutputStream};
use bytes::Bytes;
use futures::channel::oneshot;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::say;
use crate::sink::Sink;

/// Completes once popen was told to stop and the cancel timeout has passed
/// since: from then on chunks are no longer held for a reader that does
/// not read.
pub type GiveUp = futures::future::Shared<oneshot::Receiver<()>>;

/// Writes every chunk to our stdout or stderr through its sink; the
/// `Exited` that follows the last chunk in its mailbox ends the run.
pub struct Relay {
    stdout: Sink,
    stderr: Sink,
    /// The child's streams whose reader on our side went away.
    closed: Vec<OutputStream>,
    /// A write failed for another reason than EPIPE: output was lost and
    /// the child was cancelled.
    failed: bool,
    exited: Option<oneshot::Sender<Exited>>,
    process: Option<(Recipient<CloseStream>, Recipient<Cancel>)>,
    give_up: GiveUp,
}

impl Relay {
    pub fn new(
        stdout: Sink,
        stderr: Sink,
        exited: oneshot::Sender<Exited>,
        give_up: GiveUp,
    ) -> Relay {
        Relay {
            stdout,
            stderr,
            closed: Vec::new(),
            failed: false,
            exited: Some(exited),
            process: None,
            give_up,
        }
    }

    fn sink(&self, stream: OutputStream) -> &Sink {
        match stream {
            OutputStream::Stdout => &self.stdout,
            OutputStream::Stderr => &self.stderr,
        }
    }

    fn write_failed(&mut self, stream: OutputStream, err: io::Error) {
        if self.closed.contains(&stream) || self.failed {
            return;
        }
        if err.kind() == ErrorKind::BrokenPipe {
            // As in a shell pipeline: the child's own write fails next.
            self.closed.push(stream);
            if let Some((close, _)) = &self.process {
                close.do_send(CloseStream(stream));
            }
            return;
        }
        self.failed = true;
        let ours = match stream {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        };
        say(format_args!(
            "popen: writing the child's output to {ours}: {err}"
        ));
        if let Some((_, cancel)) = &self.process {
            cancel.do_send(Cancel);
        }
    }
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Relay {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) -> Self::Result {
        let stream = chunk.stream;
        if self.closed.contains(&stream) || self.failed || self.give_up.peek().is_some() {
            return Box::pin(actix::fut::ready(()));
        }
        // Queued now, in mailbox order; the chunk (and its credit) is held
        // until the sink has written it, or popen gives up on the reader.
        let written = self.sink(stream).write(chunk.data.clone());
        let give_up = self.give_up.clone();
        Box::pin(
            async move {
                let result = match futures::future::select(Box::pin(written), give_up).await {
                    futures::future::Either::Left((result, _)) => result,
                    futures::future::Either::Right(_) => Ok(()),
                };
                drop(chunk);
                result
            }
            .into_actor(self)
            .map(move |result, relay, _ctx| {
                if let Err(err) = result {
                    relay.write_failed(stream, err);
                }
            }),
        )
    }
}

impl Handler<Exited> for Relay {
    type Result = ();

    fn handle(&mut self, exited: Exited, _ctx: &mut Context<Self>) {
        if let Some(done) = self.exited.take() {
            let _ = done.send(exited);
        }
    }
}

/// Gives the relay the child's address once it exists.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach(pub Recipient<CloseStream>, pub Recipient<Cancel>);

impl Handler<Attach> for Relay {
    type Result = ();

    fn handle(&mut self, Attach(close, cancel): Attach, _ctx: &mut Context<Self>) {
        self.process = Some((close, cancel));
    }
}

/// The reader of one of popen's outputs went away.
#[derive(Message)]
#[rtype(result = "()")]
struct ReaderGone(OutputStream);

impl Handler<ReaderGone> for Relay {
    type Result = ();

    fn handle(&mut self, ReaderGone(stream): ReaderGone, _ctx: &mut Context<Self>) {
        self.write_failed(stream, ErrorKind::BrokenPipe.into());
    }
}

/// Waits for everything queued so far to be written, then writes the
/// `--report` line, if any, last; replies whether output was lost to a
/// write error (not counting a reader that went away).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Finish(pub Option<String>);

impl Handler<Finish> for Relay {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, Finish(report): Finish, _ctx: &mut Context<Self>) -> Self::Result {
        let drained = futures::future::join(self.stdout.drain(), self.stderr.drain());
        let stderr = self.stderr.clone();
        let give_up = self.give_up.clone();
        Box::pin(
            async move {
                // After the give-up a stalled stdout no longer holds the
                // report back (stderr may well be writable).
                futures::future::select(Box::pin(drained), give_up).await;
                if let Some(line) = report {
                    // A failure here is not reported: popen's status says
                    // the same thing.
                    let _ = stderr.write(Bytes::from(line)).await;
                }
            }
            .into_actor(self)
            .map(|(), relay, _ctx| relay.failed),
        )
    }
}

/// Tells `relay` when the last reader of `fd` (a duplicate of popen's
/// stdout or stderr) goes away, if `fd` is a pipe or socket whose readers
/// the kernel reports (EPOLLERR); for other fds (files, terminals) the
/// next write tells.
pub fn watch_reader(fd: OwnedFd, stream: OutputStream, relay: Addr<Relay>) {
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and keeps its
    // number until the AsyncFd is dropped.
    let Ok(fd) = (unsafe { AsyncFd::register_with_interest(fd, Interest::ERROR) }) else {
        return;
    };
    actix::spawn(async move {
        if fd.ready(Interest::ERROR).await.is_ok() {
            relay.do_send(ReaderGone(stream));
        }
    });
}
