//! Writing into a pipe whose reader is gone fails with EPIPE and raises
//! SIGPIPE in the writing thread, which kills the host unless SIGPIPE is
//! ignored. Rust programs ignore it from their start (std sets `SIG_IGN`
//! before `main`), but a host may restore the default (many command-line
//! tools do, to die quietly on a closed stdout), and a host in another
//! language has it by default. The library's own writes into a child's
//! pipes (its stdin, a pipeline's next stage) go through [`guarded`], so
//! that they fail with EPIPE and never kill the host. The disposition is
//! read once per pipe, when the library starts writing into it: a host
//! that restores SIGPIPE's default later does so for its next children.

use nix::errno::Errno;
use nix::libc;

/// Whether SIGPIPE is ignored in this process now.
pub(crate) fn ignored() -> bool {
    // SAFETY: a zeroed `sigaction` is a valid value to be written over;
    // with a null new action, sigaction(2) only reads the current one into
    // `current`, which lives for the call.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
    }
}

/// Runs `write`, a write into a pipe, so that an EPIPE it meets raises no
/// SIGPIPE that reaches the host: unless SIGPIPE is `ignored` (as
/// [`ignored`] found it), it is blocked in this thread for the call, and
/// the one the call raised is taken off the thread's pending signals
/// before the mask is restored (a SIGPIPE pending from elsewhere is left
/// alone).
pub(crate) fn guarded<T>(ignored: bool, write: impl FnOnce() -> nix::Result<T>) -> nix::Result<T> {
    if ignored {
        return write();
    }
    // SAFETY (for the block): the sets are plain values on this stack,
    // initialised by sigemptyset/sigaddset before use; pthread_sigmask,
    // sigpending and sigtimedwait only read or write them for the call.
    unsafe {
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut pending);
        let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
        let result = write();
        if matches!(result, Err(Errno::EPIPE)) && !was_pending {
            let now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&pipe, std::ptr::null_mut(), &now);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}
