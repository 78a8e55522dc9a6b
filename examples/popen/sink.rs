//! One of popen's own outputs (stdout or stderr), written on a thread of
//! its own so that a slow or stalled reader never blocks the event loop.
//!
//! The fd is whatever popen inherited: a terminal, a pipe, a socket, a file.
//! Its open file description is shared with popen's parent, so popen does
//! not change its flags (setting O_NONBLOCK would leak into the parent's
//! terminal or pipe). Writes block the sink's thread instead; a description
//! that the parent made non-blocking answers EAGAIN, and the thread then
//! waits in `poll()` for it to be writable and goes on: nothing is lost.
//!
//! Each write is acknowledged once every byte is written or it failed, so
//! the caller can hold a chunk (and its backpressure credit) until then.
//! After a failure every later write fails the same way without touching
//! the fd (after EPIPE, nothing more can be written anyway).

use std::fs::File;
use std::future::Future;
use std::io::{self, ErrorKind, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc};

use bytes::Bytes;
use futures::channel::oneshot;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{isatty, tcgetpgrp};

enum Job {
    Write(Bytes, oneshot::Sender<io::Result<()>>),
    /// Answered once every job before it is done.
    Drain(oneshot::Sender<()>),
}

/// Where chunks for one output go; cheap to clone.
#[derive(Clone)]
pub struct Sink {
    jobs: mpsc::Sender<Job>,
}

impl Sink {
    /// Starts the writing thread for `fd` (a duplicate of popen's own fd).
    ///
    /// # Errors
    /// The thread could not be created.
    /// `lent_to` holds the process group the terminal is lent to (the
    /// child's), or 0: see `write_all_jobs`.
    pub fn spawn(name: &str, fd: OwnedFd, lent_to: Arc<AtomicI32>) -> io::Result<Sink> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("popen-{name}"))
            .spawn(move || write_all_jobs(File::from(fd), queue, &lent_to))?;
        Ok(Sink { jobs })
    }

    /// Queues `data` now (so writes keep the order of the calls); the
    /// future resolves once it is all written, or with the error that
    /// stopped it (EPIPE: the reader went away).
    pub fn write(&self, data: Bytes) -> impl Future<Output = io::Result<()>> + 'static {
        let (done, result) = oneshot::channel();
        let queued = self.jobs.send(Job::Write(data, done));
        async move {
            queued.map_err(|_| stopped())?;
            result.await.unwrap_or_else(|_| Err(stopped()))
        }
    }

    /// Queues a marker now; the future resolves once every write queued
    /// before it is done.
    pub fn drain(&self) -> impl Future<Output = ()> + 'static {
        let (done, drained) = oneshot::channel();
        let queued = self.jobs.send(Job::Drain(done)).is_ok();
        async move {
            if queued {
                let _ = drained.await;
            }
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the writing thread stopped")
}

/// Writes each job in turn.
///
/// On a terminal, `stty tostop` stops a process of a background group that
/// writes to it (SIGTTOU). While the terminal is lent to the child's group,
/// popen writes on the child's behalf: this thread then blocks SIGTTOU for
/// the write, which the kernel then lets through. Otherwise (the whole job
/// is in the background) SIGTTOU is left to stop popen, as it would stop
/// the child writing there itself.
fn write_all_jobs(mut out: File, queue: mpsc::Receiver<Job>, lent_to: &AtomicI32) {
    let terminal = isatty(&out).unwrap_or(false);
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let mut failed: Option<(ErrorKind, String)> = None;
    for job in queue {
        match job {
            Job::Write(data, done) => {
                let on_behalf = terminal && {
                    let lent = lent_to.load(Ordering::Relaxed);
                    lent != 0 && tcgetpgrp(&out).is_ok_and(|group| group.as_raw() == lent)
                };
                if on_behalf {
                    let _ = ttou.thread_block();
                }
                let result = match &failed {
                    Some((kind, text)) => Err(io::Error::new(*kind, text.clone())),
                    None => write_all(&mut out, &data),
                };
                if on_behalf {
                    let _ = ttou.thread_unblock();
                }
                if let Err(err) = &result {
                    failed.get_or_insert_with(|| (err.kind(), err.to_string()));
                }
                let _ = done.send(result);
            }
            Job::Drain(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// `write_all`, waiting for writability on EAGAIN.
fn write_all(out: &mut File, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match out.write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if err.kind() == ErrorKind::WouldBlock => wait_writable(out)?,
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

fn wait_writable(out: &File) -> io::Result<()> {
    let mut fds = [PollFd::new(out.as_fd(), PollFlags::POLLOUT)];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            // POLLERR/POLLHUP: the next write reports what happened.
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
}
