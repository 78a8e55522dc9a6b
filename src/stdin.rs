//! The child's stdin as a queue of writes, fed by messages.
//!
//! Bytes sent with [`WriteStdin`](crate::WriteStdin) (or as [`Chunk`](crate::Chunk)s
//! from an upstream process) are queued in order and written as the pipe
//! drains: the write end is non-blocking and registered with the reactor,
//! so a large write never blocks the actor's thread. Each write resolves
//! once all its bytes are in the pipe, or with the error that stopped it.
//!
//! Before the child exists (a task made by
//! [`Popen::prepare`](crate::Popen::prepare) or
//! [`Popen::submit`](crate::Popen::submit), not started yet) writes and the
//! close wait in the same queue, in the order they came; the start hands
//! the queue to the new pipe, which writes them in that order, so input
//! sent early has the same effect as input sent after the start. A task
//! that ends without its child ever running (cancelled, or its spawn
//! failed) answers every queued write with an error.
//!
//! A child that closes its stdin (or exits, with no other process holding
//! it) is noticed at once, even with no write pending: the write end then
//! reports an error (EPOLLERR) to the reactor. Every later write fails with
//! EPIPE.
//!
//! A child that exited (or closed its stdin) makes the next write fail
//! with EPIPE, returned as an error value. The SIGPIPE the kernel raises
//! for that write never reaches the host, whatever its disposition (see
//! `sys/sigpipe.rs`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};

use futures::future::Either;
use futures::StreamExt;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::sys::fd::set_nonblocking;
use crate::sys::reactor::watch;

/// One queued request.
pub(crate) enum Request {
    /// Bytes to write; `done` hears the outcome. `keep` is dropped once the
    /// bytes are written (an upstream chunk's credit travels in it).
    Write {
        data: Bytes,
        done: Option<oneshot::Sender<io::Result<()>>>,
        keep: Option<crate::messages::Chunk>,
    },
    /// Close the write end once everything before it was written.
    Close,
}

/// The actor's side of the queue.
#[derive(Debug)]
pub(crate) struct StdinQueue {
    tx: Option<mpsc::UnboundedSender<Request>>,
    /// The other end, until the pipe exists (a task not started yet
    /// queues its writes here).
    rx: Option<mpsc::UnboundedReceiver<Request>>,
    /// Whether there was a pipe, since closed.
    closed: bool,
}

impl StdinQueue {
    /// A queue for a child whose stdin is not ours to write.
    pub(crate) fn none() -> StdinQueue {
        StdinQueue {
            tx: None,
            rx: None,
            closed: false,
        }
    }

    /// A queue for a child whose stdin will be a pipe of ours: writes
    /// queue up until [`attach`](Self::attach) gives it the pipe.
    pub(crate) fn piped() -> StdinQueue {
        let (tx, rx) = mpsc::unbounded();
        StdinQueue {
            tx: Some(tx),
            rx: Some(rx),
            closed: false,
        }
    }

    fn refused(&self) -> io::Error {
        if self.closed {
            io::Error::new(io::ErrorKind::BrokenPipe, "the child's stdin was closed")
        } else {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "the child's stdin is not a pipe (use InputFrom::Pipe)",
            )
        }
    }

    /// Registers `fd` (our write end) with the reactor and returns the
    /// future that drains the queue into it, starting with what was queued
    /// before.
    ///
    /// # Errors
    /// The fd cannot be made non-blocking or registered, or the queue was
    /// attached already; the queue is then closed.
    pub(crate) fn attach(
        &mut self,
        fd: OwnedFd,
    ) -> io::Result<impl std::future::Future<Output = ()>> {
        let Some(rx) = self.rx.take() else {
            return Err(io::Error::other("stdin attached twice"));
        };
        let registered = set_nonblocking(fd.as_fd())
            .and_then(|()| watch(fd, Interest::WRITABLE | Interest::ERROR));
        match registered {
            Ok(fd) => Ok(drain(fd, rx)),
            Err(err) => {
                self.close();
                Err(err)
            }
        }
    }

    /// Queues `data`; the returned receiver hears the outcome.
    pub(crate) fn write(&self, data: Bytes) -> oneshot::Receiver<io::Result<()>> {
        let (done, rx) = oneshot::channel();
        let request = Request::Write {
            data,
            done: Some(done),
            keep: None,
        };
        if let Err(Request::Write {
            done: Some(done), ..
        }) = self.send(request)
        {
            let _ = done.send(Err(self.refused()));
        }
        rx
    }

    /// Queues an upstream chunk; its credit is released once written.
    /// Returns when the chunk was written or dropped.
    pub(crate) fn feed(&self, chunk: crate::messages::Chunk) -> oneshot::Receiver<io::Result<()>> {
        let (done, rx) = oneshot::channel();
        let request = Request::Write {
            data: chunk.data.clone(),
            done: Some(done),
            keep: Some(chunk),
        };
        if let Err(Request::Write {
            done: Some(done), ..
        }) = self.send(request)
        {
            let _ = done.send(Err(self.refused()));
        }
        rx
    }

    /// Queues the close of the write end ([`CloseStdin`](crate::CloseStdin)):
    /// the child reads EOF once everything queued before was written.
    /// Before the pipe exists the close waits in the queue, behind the
    /// writes, and takes effect in its place once the child starts. Later
    /// writes fail.
    pub(crate) fn queue_close(&mut self) {
        if let Some(tx) = self.tx.take() {
            self.closed = true;
            let _ = tx.unbounded_send(Request::Close);
        }
    }

    /// Closes the queue because the task ended: a pipe closes once what
    /// was queued is written, as with [`queue_close`](Self::queue_close). A
    /// queue that never got its pipe (the child never ran: the task was
    /// cancelled first, or its spawn failed) answers each write it holds
    /// with an error now.
    pub(crate) fn close(&mut self) {
        self.queue_close();
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            while let Ok(request) = rx.try_recv() {
                if let Request::Write {
                    done: Some(done), ..
                } = request
                {
                    let _ = done.send(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the task ended before its child ran",
                    )));
                }
            }
        }
    }

    fn send(&self, request: Request) -> Result<(), Request> {
        match &self.tx {
            Some(tx) => tx.unbounded_send(request).map_err(|e| e.into_inner()),
            None => Err(request),
        }
    }
}

/// Writes queued requests in order until `Close` or the queue is dropped.
///
/// While the pipe is whole, a hang-up (the child's end closed: the write
/// end reports an error) is watched for beside the queue, so that it is
/// noticed with no write pending.
async fn drain(fd: AsyncFd<OwnedFd>, mut rx: mpsc::UnboundedReceiver<Request>) {
    // Read once per pipe, not per write (see `sys/sigpipe.rs`).
    let sigpipe_ignored = crate::sys::sigpipe::ignored();
    let mut broken: Option<io::ErrorKind> = None;
    loop {
        let request = if broken.is_some() {
            rx.next().await
        } else {
            let gone = fd.ready(Interest::ERROR);
            futures::pin_mut!(gone);
            match futures::future::select(rx.next(), gone).await {
                Either::Left((request, _)) => request,
                Either::Right(_) => {
                    broken = Some(io::ErrorKind::BrokenPipe);
                    continue;
                }
            }
        };
        let Some(request) = request else {
            break;
        };
        match request {
            Request::Write { data, done, keep } => {
                let result = match broken {
                    Some(kind) => Err(io::Error::new(kind, "the child's stdin is closed")),
                    None => write_all(&fd, &data, sigpipe_ignored).await,
                };
                if let Err(err) = &result {
                    if broken.is_none() {
                        broken = Some(err.kind());
                    }
                }
                drop(keep);
                if let Some(done) = done {
                    let _ = done.send(result);
                }
            }
            Request::Close => break,
        }
    }
    // Dropping `fd` closes the write end: the child reads EOF. Requests
    // still queued behind `Close` are answered with an error as the
    // receiver is dropped (their senders see a cancelled oneshot).
}

/// Writes all of `data`; `sigpipe_ignored` as [`crate::sys::sigpipe::ignored`]
/// found it when the pipe was attached.
async fn write_all(
    fd: &AsyncFd<OwnedFd>,
    mut data: &[u8],
    sigpipe_ignored: bool,
) -> io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        let ignored = sigpipe_ignored;
        let write = |inner: &AsyncFd<OwnedFd>| {
            Ok(crate::sys::sigpipe::guarded(ignored, || {
                nix::unistd::write(inner.get_ref(), data)
            })?)
        };
        match guard.try_io(write) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
            Ok(Err(err)) => return Err(err),
            Err(_would_block) => {}
        }
    }
    Ok(())
}
