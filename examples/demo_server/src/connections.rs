//! What the HTTP connections may cost, so that no HTTP load can take what
//! the jobs need: file descriptors, memory, time.
//!
//! # File descriptors
//! Every open connection holds one fd; every running job holds a few (its
//! output pipe and its pidfd, and while it is being spawned a second pipe
//! end, an exec-error pipe and `/dev/null`). The server raises its soft
//! `RLIMIT_NOFILE` to the hard limit at the start, keeps
//! [`BASE_RESERVE`] fds for itself (stdio, the runtimes' epoll and event
//! fds, the listener, the log) and [`FDS_PER_JOB`] per running job, and
//! lets the connections have the rest, `room`:
//!
//! ```text
//! room        = RLIMIT_NOFILE - 64 - 8 × --max-running
//! cap         = min(--max-connections, (room / workers - 32) × workers)
//! hard guard  = ceil(cap / workers) + 32, per worker (≤ room / workers)
//! ```
//!
//! # At the cap
//! Every connection is counted ([`ConnectionCount`]) from its accept to
//! its close. One accepted while `cap` are open is marked over the cap
//! ([`Counted::over_cap`]): each request on it is answered `503` with a
//! JSON error, `Retry-After` and `Connection: close` (see `api.rs`), so a
//! client learns at once that the server is busy, and the connection is
//! gone as soon as that answer is sent. Those answers take fds of their
//! own, for a moment: each worker accepts at most [`OVER_CAP_MARGIN`]
//! connections beyond its share of the cap (actix-web's `max_connections`,
//! the hard guard). Past that, a worker stops accepting, and a new
//! connection waits in the listen backlog until one closes; idle ones
//! close within the request timeout. The cap and the hard guard together
//! stay within `room`: no HTTP load leaves a job without its fds.
//!
//! # Memory and time per connection
//! Each accepted socket gets a send buffer of [`SEND_BUFFER`] bytes (the
//! kernel doubles it for its bookkeeping), and a `TCP_USER_TIMEOUT` of the
//! write deadline: a peer that has taken none of what was sent for that
//! long (it does not read, so its window stays shut, or it is gone and
//! acknowledges nothing) is dropped by the kernel, and its stream with it.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::socket::{setsockopt, sockopt};

/// Fds the server keeps for itself, whatever the load.
pub const BASE_RESERVE: u64 = 64;

/// Fds kept for each job that may run at once.
pub const FDS_PER_JOB: u64 = 8;

/// Connections each worker accepts beyond its share of the cap, to answer
/// them 503 (see the module docs).
pub const OVER_CAP_MARGIN: usize = 32;

/// The send buffer asked for each connection, in bytes.
pub const SEND_BUFFER: usize = 64 * 1024;

/// Raises the soft fd limit to the hard one if it is lower, and returns
/// the soft limit then in force.
///
/// # Errors
/// The limit cannot be read.
pub fn raise_fd_limit() -> Result<u64, String> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|err| format!("cannot read RLIMIT_NOFILE: {err}"))?;
    if soft >= hard {
        return Ok(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => Ok(hard),
        Err(err) => {
            log::warn!("cannot raise RLIMIT_NOFILE from {soft} to {hard}: {err}");
            Ok(soft)
        }
    }
}

/// How many connections the server serves, and how many each worker
/// accepts at most (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once that are served; more are answered 503.
    pub cap: usize,
    /// Connections each worker accepts at most (actix-web's
    /// `max_connections`): its share of `cap` and [`OVER_CAP_MARGIN`].
    pub per_worker: usize,
}

/// The connection limits for `workers` HTTP workers: a cap of `requested`,
/// or less if the fd limit `fd_limit` leaves less once `max_running` jobs
/// have their fds and each worker its margin (see the module docs).
///
/// # Errors
/// The limit leaves no connection at all to be served.
pub fn limits(
    fd_limit: u64,
    max_running: usize,
    workers: usize,
    requested: usize,
) -> Result<ConnectionLimits, String> {
    let reserve = BASE_RESERVE + FDS_PER_JOB * max_running as u64;
    let room = fd_limit.saturating_sub(reserve);
    let workers = workers.max(1) as u64;
    let margin = OVER_CAP_MARGIN as u64;
    let fit = (room / workers).saturating_sub(margin) * workers;
    let cap = (requested as u64).min(fit);
    if cap == 0 {
        return Err(format!(
            "the fd limit ({fd_limit}) leaves {room} fds for connections once {max_running} \
             running jobs have theirs ({reserve} in all): too few for {workers} workers with \
             {margin} each for the answers at the cap; raise `ulimit -n`, or lower \
             --max-running or --workers (or --max-connections is 0)"
        ));
    }
    if cap < requested as u64 {
        log::warn!(
            "--max-connections {requested} lowered to {cap}: the fd limit is {fd_limit}, \
             {reserve} fds are kept for the server and its jobs, and {margin} per worker \
             for the answers at the cap"
        );
    }
    Ok(ConnectionLimits {
        cap: cap as usize,
        per_worker: (cap.div_ceil(workers) + margin) as usize,
    })
}

/// The open connections of all the workers, against the cap.
#[derive(Debug, Clone)]
pub struct ConnectionCount {
    open: Arc<AtomicUsize>,
    cap: usize,
}

impl ConnectionCount {
    pub fn new(cap: usize) -> ConnectionCount {
        ConnectionCount {
            open: Arc::new(AtomicUsize::new(0)),
            cap,
        }
    }

    /// Counts a connection just accepted, until the returned [`Counted`]
    /// is dropped; it is over the cap if `cap` were open already.
    pub fn open(&self) -> Counted {
        let before = self.open.fetch_add(1, Ordering::SeqCst);
        Counted {
            open: self.open.clone(),
            over_cap: (before >= self.cap).then_some(self.cap),
        }
    }
}

/// One open connection, counted until it is dropped (with the
/// connection's data, when actix-web closes it).
#[derive(Debug)]
pub struct Counted {
    open: Arc<AtomicUsize>,
    over_cap: Option<usize>,
}

impl Counted {
    /// The cap, if the connection was accepted at it: every request on
    /// it is to be answered 503.
    pub fn over_cap(&self) -> Option<usize> {
        self.over_cap
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sets a new connection's send buffer and write deadline (see the module
/// docs). A failure is logged: the connection is served all the same.
pub fn tune(socket: &impl AsFd, write_deadline: Duration) {
    let millis = u32::try_from(write_deadline.as_millis()).unwrap_or(u32::MAX);
    if let Err(err) = setsockopt(socket, sockopt::TcpUserTimeout, &millis) {
        log::warn!("cannot set TCP_USER_TIMEOUT on a connection: {err}");
    }
    if let Err(err) = setsockopt(socket, sockopt::SndBuf, &SEND_BUFFER) {
        log::warn!("cannot set SO_SNDBUF on a connection: {err}");
    }
}
