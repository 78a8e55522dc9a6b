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
//! lets the connections have the rest:
//!
//! ```text
//! connections = min(--max-connections, RLIMIT_NOFILE - 64 - 8 × --max-running)
//! ```
//!
//! shared out evenly between the HTTP workers (actix-web's cap is per
//! worker). At the cap the server stops accepting: a new connection waits
//! in the listen backlog until one closes, and idle ones close within the
//! request timeout.
//!
//! # Memory and time per connection
//! Each accepted socket gets a send buffer of [`SEND_BUFFER`] bytes (the
//! kernel doubles it for its bookkeeping), and a `TCP_USER_TIMEOUT` of the
//! write deadline: a peer that has taken none of what was sent for that
//! long (it does not read, so its window stays shut, or it is gone and
//! acknowledges nothing) is dropped by the kernel, and its stream with it.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::socket::{setsockopt, sockopt};

/// Fds the server keeps for itself, whatever the load.
pub const BASE_RESERVE: u64 = 64;

/// Fds kept for each job that may run at once.
pub const FDS_PER_JOB: u64 = 8;

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

/// The connections each of `workers` HTTP workers may hold: `requested`
/// in all, or fewer if the fd limit `fd_limit` leaves fewer once
/// `max_running` jobs have their fds (see the module docs).
///
/// # Errors
/// The limit leaves no connection at all to some worker.
pub fn per_worker(
    fd_limit: u64,
    max_running: usize,
    workers: usize,
    requested: usize,
) -> Result<usize, String> {
    let reserve = BASE_RESERVE + FDS_PER_JOB * max_running as u64;
    let room = fd_limit.saturating_sub(reserve);
    let total = (requested as u64).min(room);
    let workers = workers.max(1) as u64;
    if total < workers {
        return Err(format!(
            "the fd limit ({fd_limit}) leaves {room} fds for connections once {max_running} \
             running jobs have theirs ({reserve} in all): too few for {workers} workers; \
             raise `ulimit -n` or lower --max-running"
        ));
    }
    if total < requested as u64 {
        log::warn!(
            "--max-connections {requested} lowered to {total}: the fd limit is {fd_limit}, \
             and {reserve} fds are kept for the server and its jobs"
        );
    }
    Ok((total / workers) as usize)
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
