//! The host's signal state, kept out of the library and out of the child.
//!
//! * **SIGCHLD.** With SIGCHLD set to `SIG_IGN` (inherited from a parent,
//!   or set by another library), or with `SA_NOCLDWAIT`, the kernel reaps
//!   every child by itself: exit statuses are lost and pids are freed
//!   while we may still signal them. Before each spawn, [`restore_sigchld`]
//!   puts SIGCHLD back to its default disposition (`SIG_DFL`, which
//!   ignores the signal without reaping anything), and says so at warn
//!   level. A host that needs SIGCHLD ignored cannot use this crate.
//! * **The child's signal mask and dispositions.** A child inherits the
//!   signal mask of the thread that spawns it and every disposition set to
//!   `SIG_IGN`; std's spawn resets only SIGPIPE. A child spawned from a
//!   thread that blocks SIGTERM would ignore our cancel until the SIGKILL.
//!   So, unless the caller opts out
//!   ([`Popen::restore_signals`](crate::Popen::restore_signals)), every
//!   child starts with an empty mask and no ignored signal (Python's
//!   `restore_signals`, process-wrap's reset-sigmask wrapper). When the
//!   spawning thread is already clean ([`host_is_clean`]), nothing needs
//!   doing and std keeps its fast `posix_spawn` path; otherwise
//!   [`reset_in_child`] runs between fork and exec.

use nix::libc;

/// The signals whose disposition a process can set: every one but SIGKILL
/// and SIGSTOP, and but the two real-time signals glibc keeps for itself
/// (32 and 33, which its `sigaction` refuses).
fn settable() -> impl Iterator<Item = libc::c_int> {
    (1..=libc::SIGRTMAX())
        .filter(|&sig| sig != libc::SIGKILL && sig != libc::SIGSTOP)
        .filter(|&sig| sig < 32 || sig >= libc::SIGRTMIN())
}

/// The current action for `sig`, or `None` if it cannot be read.
fn action(sig: libc::c_int) -> Option<libc::sigaction> {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`,
    // which is valid writable memory of the right type.
    let res = unsafe { libc::sigaction(sig, std::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: zeroed, then filled in by the kernel on success.
    (res == 0).then(|| unsafe { old.assume_init() })
}

/// Puts SIGCHLD back to `SIG_DFL` if the host ignores it or asked for
/// `SA_NOCLDWAIT`, so that the kernel leaves our children for us to reap.
/// Returns whether it had to.
pub(crate) fn restore_sigchld() -> bool {
    let Some(current) = action(libc::SIGCHLD) else {
        return false;
    };
    let ignored = current.sa_sigaction == libc::SIG_IGN;
    let no_wait = current.sa_flags & libc::SA_NOCLDWAIT != 0;
    if !ignored && !no_wait {
        return false;
    }
    let mut fixed = current;
    if ignored {
        fixed.sa_sigaction = libc::SIG_DFL;
    }
    fixed.sa_flags &= !libc::SA_NOCLDWAIT;
    // SAFETY: `fixed` is a complete sigaction read from the kernel with
    // only the handler and one flag changed.
    let res = unsafe { libc::sigaction(libc::SIGCHLD, &fixed, std::ptr::null_mut()) };
    if res == 0 {
        log::warn!(
            "SIGCHLD was {}: restored to the default so that child processes are not \
             reaped behind our back (their exit statuses would be lost)",
            if ignored {
                "ignored (SIG_IGN)"
            } else {
                "set with SA_NOCLDWAIT"
            }
        );
    } else {
        log::error!(
            "SIGCHLD is ignored and cannot be restored: {}",
            std::io::Error::last_os_error()
        );
    }
    true
}

/// Whether a child spawned from this thread now would start with an empty
/// signal mask and no ignored signal other than SIGPIPE (which std resets
/// itself).
pub(crate) fn host_is_clean() -> bool {
    let blocks_nothing =
        nix::sys::signal::SigSet::thread_get_mask().is_ok_and(|mask| mask.iter().next().is_none());
    if !blocks_nothing {
        return false;
    }
    settable()
        .filter(|&sig| sig != libc::SIGPIPE)
        .all(|sig| action(sig).is_some_and(|a| a.sa_sigaction != libc::SIG_IGN))
}

/// Has the child spawned from `command` start with an empty signal mask
/// and default dispositions, whatever this thread blocks and the host
/// ignores. This forces std's fork path.
pub(crate) fn reset_at_exec(command: &mut std::process::Command) {
    // SAFETY: the closure runs in the child between fork and exec; it only
    // makes async-signal-safe calls (sigprocmask, sigaction, signal) and
    // allocates nothing.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, reset_in_child);
    }
}

/// Between fork and exec: empties the signal mask and sets every ignored
/// signal back to `SIG_DFL` (handlers are reset by exec itself).
///
/// # Errors
/// `sigprocmask` failed (it cannot, with a valid set).
fn reset_in_child() -> std::io::Result<()> {
    let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: sigemptyset, sigprocmask and sigaction are async-signal-safe;
    // each gets valid pointers to memory on this stack frame or null.
    unsafe {
        libc::sigemptyset(empty.as_mut_ptr());
        if libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for sig in settable() {
        if action(sig).is_some_and(|a| a.sa_sigaction == libc::SIG_IGN) {
            // SAFETY: signal() with SIG_DFL on a settable signal is
            // async-signal-safe and touches no memory of ours.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    Ok(())
}
