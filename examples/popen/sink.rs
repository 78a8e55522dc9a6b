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
use nix::sys::pthread::{pthread_kill, pthread_self};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::{fstat, SFlag};
use nix::sys::termios::{tcgetattr, LocalFlags};
use nix::unistd::{getpgrp, isatty, tcgetpgrp, Pid};

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
    /// [`Writer::write_to_terminal`].
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
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some((kind, text)) = &self.failed {
            return Err(io::Error::new(*kind, text.clone()));
        }
        let result = if self.terminal {
            self.write_to_terminal(data)
        } else {
            write_all(&mut self.out, data)
        };
        if let Err(err) = &result {
            self.failed = Some((err.kind(), err.to_string()));
        }
        result
    }

    /// Writes all of `data` to a terminal, as job control allows.
    ///
    /// On a terminal, `stty tostop` stops a process of a background group
    /// that writes to it (SIGTTOU). popen makes that check itself, before
    /// each write, rather than leave it to the kernel: the kernel would
    /// stop popen inside the write and, once popen is continued, restart
    /// that write without looking again, so a write stopped in the
    /// background and restarted after `fg` would be stopped a second time
    /// if popen had lent the terminal to its child in between. So SIGTTOU
    /// is blocked in this thread (a terminal lets a thread that blocks it
    /// write), and popen writes when:
    /// * its group or the child's (it writes on the child's behalf) is the
    ///   terminal's foreground group, or the terminal is not popen's
    ///   controlling terminal;
    /// * `tostop` is off, or popen ignores SIGTTOU (as the kernel lets
    ///   such a process write).
    ///
    /// Otherwise it stops with SIGTTOU, as the kernel would have stopped
    /// it (its shell reports the job stopped), and looks again once it is
    /// continued. In an orphaned process group, where nobody could continue
    /// it, the write fails with EIO, as the kernel's does (tty_ioctl(4),
    /// termios(3)). Unlike the kernel's, the SIGTTOU stops popen alone, not
    /// the other processes of its group (a pipeline popen shares).
    fn write_to_terminal(&mut self, data: &[u8]) -> io::Result<()> {
        loop {
            match self.may_write() {
                Allowed::Yes => return write_all(&mut self.out, data),
                Allowed::Orphaned => return Err(io::Error::from_raw_os_error(nix::libc::EIO)),
                Allowed::AfterStop => stop_for_terminal_output(),
            }
        }
    }

    fn may_write(&self) -> Allowed {
        // ENOTTY: not popen's controlling terminal; no job control applies.
        let Ok(foreground) = tcgetpgrp(&self.out) else {
            return Allowed::Yes;
        };
        let own = getpgrp();
        let lent = self.lent_to.load(Ordering::Relaxed);
        if foreground == own || (lent != 0 && foreground.as_raw() == lent) {
            return Allowed::Yes;
        }
        let tostop = tcgetattr(&self.out)
            .is_ok_and(|termios| termios.local_flags.contains(LocalFlags::TOSTOP));
        if !tostop || ttou_ignored() {
            return Allowed::Yes;
        }
        if orphaned(own) {
            return Allowed::Orphaned;
        }
        Allowed::AfterStop
    }
}

/// Whether a write to the terminal may go ahead now.
enum Allowed {
    Yes,
    /// Only once popen, in the background, was stopped and continued.
    AfterStop,
    /// Never: popen is in the background of an orphaned process group.
    Orphaned,
}

/// Blocks SIGTTOU in the calling thread: a terminal write from it is then
/// never stopped by the kernel (see [`Writer::write_to_terminal`]).
fn block_ttou() {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let _ = ttou.thread_block();
}

/// Stops popen with SIGTTOU and returns once it is continued.
///
/// The signal is sent to this thread, with SIGTTOU unblocked for the
/// moment: the thread takes it on its way back from `pthread_kill`, which
/// stops the whole process then and there, so that nothing this thread
/// looked at before the stop is used after it.
fn stop_for_terminal_output() {
    let mut ttou = SigSet::empty();
    ttou.add(Signal::SIGTTOU);
    let _ = ttou.thread_unblock();
    let _ = pthread_kill(pthread_self(), Signal::SIGTTOU);
    let _ = ttou.thread_block();
}

/// Whether popen ignores SIGTTOU (its parent made it SIG_IGN, which popen
/// keeps), from /proc/self/status.
fn ttou_ignored() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (Signal::SIGTTOU as i32 - 1)) != 0)
}

/// Whether process group `group` is orphaned: no member has a parent in
/// another group of the same session (POSIX's definition, the one the
/// kernel applies before it stops a background writer).
fn orphaned(group: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let stats: Vec<(i32, Stat)> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect();
    let find = |pid: i32| stats.iter().find(|(p, _)| *p == pid).map(|(_, s)| s);
    !stats
        .iter()
        .filter(|(_, member)| member.pgrp == group.as_raw())
        .any(|(_, member)| {
            find(member.ppid).is_some_and(|parent| {
                parent.pgrp != member.pgrp && parent.session == member.session
            })
        })
}

/// The fields of /proc/PID/stat that [`orphaned`] needs.
struct Stat {
    ppid: i32,
    pgrp: i32,
    session: i32,
}

/// /proc/PID/stat's fields 4 to 6, after the command name in parentheses
/// (which may itself hold spaces and parentheses).
fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text[text.rfind(')')? + 1..].split_whitespace().skip(1);
    let mut next = || fields.next()?.parse::<i32>().ok();
    Some(Stat {
        ppid: next()?,
        pgrp: next()?,
        session: next()?,
    })
}

/// Writes each job in turn, on the sink's thread.
fn write_all_jobs(mut writer: Writer, queue: mpsc::Receiver<Job>) {
    block_ttou();
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
