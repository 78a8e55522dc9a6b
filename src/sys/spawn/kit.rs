//! The socket pair and the child's stack that the process's spawns share,
//! behind a lock that a `fork()` of the host takes too.

use std::cell::UnsafeCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::ptr;

use nix::libc;

use super::message::{receive, Control};
use super::{MAX_FDS, STACK};

/// What the process keeps for its spawns: the socket pair the fds travel
/// through, and the child's stack.
pub(super) struct Kit {
    /// The host's end, which sends.
    pub(super) send: OwnedFd,
    /// The child's end: at 3 or above (the child keeps the host's 0, 1 and
    /// 2 below it), as low as it could be when made.
    pub(super) receive: OwnedFd,
    pub(super) stack: *mut u8,
}

impl Kit {
    pub(super) fn new() -> io::Result<Kit> {
        let mut pair = [-1; 2];
        // SAFETY: socketpair writes two fds into `pair`.
        let res = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        };
        if res < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just made and are owned by no one else.
        let (mut send, mut receive) =
            unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
        // Neither end at 0, 1 or 2, which a host that closed its stdio
        // gets back at its next open or dup2.
        if send.as_raw_fd() < 3 {
            send = crate::sys::fd::dup_from(send.as_fd(), 3)?;
        }
        if receive.as_raw_fd() < 3 {
            receive = crate::sys::fd::dup_from(receive.as_fd(), 3)?;
        }
        // SAFETY: a fresh anonymous private mapping.
        let stack = unsafe {
            libc::mmap(
                ptr::null_mut(),
                STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if stack == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // A guard page at the bottom: an overflow faults instead of
        // writing over the host's memory.
        // SAFETY: the lowest page of the mapping just made.
        unsafe { libc::mprotect(stack, page_size(), libc::PROT_NONE) };
        Ok(Kit {
            send,
            receive,
            stack: stack.cast(),
        })
    }

    /// Moves the child's end to a lower number if one is free now: the
    /// child copies every fd below it (below 64, a cost too small to
    /// chase).
    pub(super) fn lower(&mut self) {
        if self.receive.as_raw_fd() < 64 {
            return;
        }
        if let Ok(lower) = crate::sys::fd::dup_from(self.receive.as_fd(), 3) {
            if lower.as_raw_fd() < self.receive.as_raw_fd() {
                self.receive = lower;
            }
        }
    }

    /// Lets go of the kit's fd numbers without closing them (the host
    /// closed or replaced them: they are not ours any more).
    pub(super) fn forget_fds(self) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: the fds are moved out of the kit, then leaked as raw
        // numbers; the stack is unmapped as `drop` would.
        unsafe {
            let send = ptr::read(&this.send);
            let receive = ptr::read(&this.receive);
            let _ = (send.into_raw_fd(), receive.into_raw_fd());
            libc::munmap(this.stack.cast(), STACK);
        }
    }

    /// Closes the fds that a child which failed before taking them left
    /// in the socket.
    pub(super) fn drain(&self) {
        let mut fds = [-1; MAX_FDS];
        let mut control = Control::new();
        // SAFETY: receives into this frame's buffers, without waiting.
        while let Some(count) = unsafe {
            receive(
                self.receive.as_raw_fd(),
                &mut control,
                &mut fds,
                libc::MSG_DONTWAIT,
            )
        } {
            for &fd in &fds[..count] {
                // SAFETY: an fd just received, ours alone.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used.
        unsafe { libc::munmap(self.stack.cast(), STACK) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf takes an integer.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// The process's kit, made at its first spawn (while the host has few fds,
/// so that the socket's end is low) and kept: spawns take turns with it,
/// behind a pthread mutex that a `fork()` of the host also takes
/// (`pthread_atfork`), so that a forked process never inherits it locked
/// mid-spawn, and drops its copy of the kit: parent and child sharing one
/// socket would receive each other's fds.
struct KitLock {
    mutex: UnsafeCell<libc::pthread_mutex_t>,
    kit: UnsafeCell<Option<Kit>>,
}

// SAFETY: `kit` is only reached with `mutex` held (see `KitGuard`), or in
// the atfork handlers, which hold it too.
unsafe impl Sync for KitLock {}

static KIT: KitLock = KitLock {
    mutex: UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER),
    kit: UnsafeCell::new(None),
};

/// The kit, locked.
pub(super) struct KitGuard;

impl KitGuard {
    pub(super) fn lock() -> KitGuard {
        static AT_FORK: std::sync::Once = std::sync::Once::new();
        AT_FORK.call_once(|| {
            // SAFETY: registers three handlers that take and release the
            // mutex (and, in a forked child, drop the kit).
            unsafe {
                libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(in_forked_child))
            };
        });
        // SAFETY: a mutex initialized statically, never moved.
        unsafe { libc::pthread_mutex_lock(KIT.mutex.get()) };
        KitGuard
    }

    pub(super) fn kit(&mut self) -> &mut Option<Kit> {
        // SAFETY: the mutex is held while the guard lives.
        unsafe { &mut *KIT.kit.get() }
    }
}

impl Drop for KitGuard {
    fn drop(&mut self) {
        // SAFETY: held by this guard.
        unsafe { libc::pthread_mutex_unlock(KIT.mutex.get()) };
    }
}

extern "C" fn before_fork() {
    // SAFETY: as in `KitGuard::lock`; released by the two handlers below.
    unsafe { libc::pthread_mutex_lock(KIT.mutex.get()) };
}

extern "C" fn after_fork() {
    // SAFETY: taken by `before_fork` in this thread.
    unsafe { libc::pthread_mutex_unlock(KIT.mutex.get()) };
}

extern "C" fn in_forked_child() {
    // SAFETY: the mutex is held (taken by `before_fork` in the thread
    // that forked, the child's only one). The child's copies of the kit's
    // fds and stack are its own to close and unmap; nothing is allocated.
    unsafe {
        *KIT.kit.get() = None;
        libc::pthread_mutex_unlock(KIT.mutex.get());
    }
}
