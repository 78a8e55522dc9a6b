//! Registering an fd with the actix-rt (tokio) reactor: the one place the
//! crate hands tokio a raw fd number, so the one `unsafe` for it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// An fd holder that owns its fd: it stays open, with the same number,
/// for as long as the holder lives.
pub(crate) trait OwnsFd: AsRawFd {}

impl OwnsFd for OwnedFd {}
impl OwnsFd for Arc<OwnedFd> {}
impl OwnsFd for std::fs::File {}

/// Watches `fd` for `interest` on this thread's reactor.
///
/// # Errors
/// No tokio reactor runs on this thread, or epoll refused the fd (a
/// regular file: EPERM).
pub(crate) fn watch<T: OwnsFd>(fd: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other("no tokio reactor runs on this thread"));
    }
    // SAFETY: `OwnsFd` holders own their fd: it stays open and refers to
    // the same open file description until the AsyncFd, which owns the
    // holder, is dropped.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}
