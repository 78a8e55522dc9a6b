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
//! the fd (after EPIPE, nothing more can be written anyway). A regular file
//! or a device that is no terminal (/dev/null) waits for no reader: it is
//! written at once, with no thread.

use std::fs::File;
use std::future::Future;
use std::io::{self, ErrorKind, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use bytes::Bytes;
use futures::channel::oneshot;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::{fstat, SFlag};
use nix::unistd::{isatty, tcgetpgrp};

enum Job {
    Write(Bytes, oneshot::Sender<io::Result<()>>),
    /// Answered once every job before it is done.
    Drain(oneshot::Sender<()>),
}

/// Where chunks for one output go; cheap to clone.
#[derive(Clone)]
pub struct Sink(Kind);

#[derive(Clone)]
enum Kind {
    /// A regular file or a device that is not a terminal (/dev/null): a
    /// write there waits for no reader, so it is made at once, on the
    /// event loop, saving a thread hand-off per chunk.
    Inline(Arc<Mutex<Writer>>),
    /// A pipe, socket or terminal, whose reader may stall: a thread of its
    /// own writes.
    Threaded(mpsc::Sender<Job>),
}

impl Sink {
    /// A sink for `fd` (a duplicate of popen's own fd), with its writing
    /// thread if `fd` may block on a reader. `lent_to` holds the process
    /// group the terminal is lent to (the child's), or 0: see
    /// [`Writer::write`].
    ///
    /// # Errors
    /// The thread could not be created.
    pub fn spawn(name: &str, fd: OwnedFd, lent_to: Arc<AtomicI32>) -> io::Result<Sink> {
        let never_waits_for_a_reader = fstat(&fd).is_ok_and(|stat| {
            let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
            kind == SFlag::S_IFREG || (kind == SFlag::S_IFCHR && !isatty(&fd).unwrap_or(true))
        });
        let writer = Writer::new(File::from(fd), lent_to);
        if never_waits_for_a_reader {
            return Ok(Sink(Kind::Inline(Arc::new(Mutex::new(writer)))));
        }
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("popen-{name}"))
            .spawn(move || write_all_jobs(writer, queue))?;
        Ok(Sink(Kind::Threaded(jobs)))
    }

    /// Queues `data` now (so writes keep the order of the calls); the
    /// future resolves once it is all written, or with the error that
    /// stopped it (EPIPE: the reader went away).
    pub fn write(&self, data: Bytes) -> impl Future<Output = io::Result<()>> + 'static {
        let (done, result) = oneshot::channel();
        match &self.0 {
            Kind::Inline(writer) => {
                let written = writer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write(&data);
                let _ = done.send(written);
            }
            Kind::Threaded(jobs) => {
                if let Err(mpsc::SendError(Job::Write(_, done))) = jobs.send(Job::Write(data, done))
                {
                    let _ = done.send(Err(stopped()));
                }
            }
        }
        async move { result.await.unwrap_or_else(|_| Err(stopped())) }
    }

    /// Queues a marker now; the future resolves once every write queued
    /// before it is done.
    pub fn drain(&self) -> impl Future<Output = ()> + 'static {
        let (done, drained) = oneshot::channel();
        match &self.0 {
            Kind::Inline(_) => {
                let _ = done.send(());
            }
            Kind::Threaded(jobs) => {
                let _ = jobs.send(Job::Drain(done));
            }
        }
        async move {
            let _ = drained.await;
        }
    }
}

/// Whether `a` and `b` are the same pipe, socket or terminal, which one
/// writer may serve in order. (Regular files are written at once on the
/// event loop, in order anyway, and keep their own file offsets.)
pub fn same_stream(a: &OwnedFd, b: &OwnedFd) -> bool {
    let (Ok(a_stat), Ok(b_stat)) = (fstat(a), fstat(b)) else {
        return false;
    };
    let kind = SFlag::from_bits_truncate(a_stat.st_mode) & SFlag::S_IFMT;
    let streams = kind == SFlag::S_IFIFO
        || kind == SFlag::S_IFSOCK
        || (kind == SFlag::S_IFCHR && isatty(a).unwrap_or(false));
    streams
        && a_stat.st_dev == b_stat.st_dev
        && a_stat.st_ino == b_stat.st_ino
        && a_stat.st_rdev == b_stat.st_rdev
}

fn stopped() -> io::Error {
    io::Error::other("the writing thread stopped")
}

/// Writes to one of popen's outputs; after a failure every later write
/// fails the same way without touching the fd.
struct Writer {
    out: File,
    terminal: bool,
    lent_to: Arc<AtomicI32>,
    failed: Option<(ErrorKind, String)>,
}

impl Writer {
    fn new(out: File, lent_to: Arc<AtomicI32>) -> Writer {
        Writer {
            terminal: isatty(&out).unwrap_or(false),
            out,
            lent_to,
            failed: None,
        }
    }

    /// Writes all of `data`.
    ///
    /// On a terminal, `stty tostop` stops a process of a background group
    /// that writes to it (SIGTTOU). While the terminal is lent to the
    /// child's group, popen writes on the child's behalf: SIGTTOU is then
    /// blocked in this thread for the write, which the kernel then lets
    /// through. Otherwise (the whole job is in the background) SIGTTOU is
    /// left to stop popen, as it would stop the child writing there itself.
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some((kind, text)) = &self.failed {
            return Err(io::Error::new(*kind, text.clone()));
        }
        let on_behalf = self.terminal && {
            let lent = self.lent_to.load(Ordering::Relaxed);
            lent != 0 && tcgetpgrp(&self.out).is_ok_and(|group| group.as_raw() == lent)
        };
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        if on_behalf {
            let _ = ttou.thread_block();
        }
        let result = write_all(&mut self.out, data);
        if on_behalf {
            let _ = ttou.thread_unblock();
        }
        if let Err(err) = &result {
            self.failed = Some((err.kind(), err.to_string()));
        }
        result
    }
}

/// Writes each job in turn, on the sink's thread.
fn write_all_jobs(mut writer: Writer, queue: mpsc::Receiver<Job>) {
    for job in queue {
        match job {
            Job::Write(data, done) => {
                let _ = done.send(writer.write(&data));
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
