//! The crate's own `posix_spawn`, whose cost does not grow with the number
//! of fds the host holds.
//!
//! A fork, `vfork` or `posix_spawn` copies the caller's whole fd table
//! into the child, and exec then walks it to close the close-on-exec fds.
//! With two fds or more per running child, the 10,000th spawn from a host
//! costs several times the first (BENCHMARKS.md §7, "The cost of one more
//! child as children accumulate"). Here the
//! child is made with `clone(CLONE_VM | CLONE_VFORK | CLONE_FILES)`: it
//! shares the host's memory until it execs, as glibc's `posix_spawn` does,
//! and at first its fd table too, so nothing is copied. Its first step is
//! `close_range(first, ~0, CLOSE_RANGE_UNSHARE)` (Linux 5.9), which gives
//! it a table of its own holding only the fds below `first`: the kernel
//! copies no more than those. The fds the child needs (its stdio, the fds
//! to pass, its cgroup) cannot be relied on to be that low, so they travel
//! another way: the host sends them over a socket pair just before the
//! clone (`SCM_RIGHTS`), and the child receives them from the socket's
//! other end, the one fd it keeps, at a low number.
//!
//! The child is a plain child of the spawning thread, exactly as with
//! `posix_spawn`: same working directory, umask, limits, credentials,
//! namespaces and cgroup as the host at that moment, watched and reaped by
//! pidfd. It gets no fd of the host's but 0, 1 and 2 (those it inherits)
//! and those it is given (as with `close_fds`). While it shares the
//! host's memory it allocates nothing and takes no lock: its calls are
//! raw syscalls, or glibc's that are no more (never glibc's `setuid` and
//! kin, whose setxid broadcast would reach the host's threads). Every
//! signal is blocked in the spawning thread across the clone, glibc's own
//! too, and the child resets every handler before it unblocks any, so no
//! host code runs in it. A task that joins a cgroup of its own is spawned
//! through std instead: the move into a cgroup applies the cgroup's memory
//! policy to the mover's memory, which here would be the host's.
//!
//! The process keeps one socket pair and the child's stack (two fds, never
//! at 0, 1 or 2, and 256 KiB of address space), made at its first spawn:
//! the copy the child makes grows with the socket end's number, which is
//! the lowest free one then, and is moved lower at a later spawn when a
//! number below 64 is free. A kit whose fds the host closed or replaced is
//! made again. Spawns from several
//! threads take turns with them, each for the time the child takes to
//! exec (about 0.3 ms; BENCHMARKS.md). A `fork()` of the host takes the
//! same lock, and the forked process makes a kit of its own at its first
//! spawn.

//!
//! `kit.rs` holds the socket pair and stack the spawns share, `message.rs`
//! the one message of fds, `child.rs` what the child does until its exec.

mod child;
mod kit;
mod message;

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr;

use nix::libc;

use super::exec::{Applied, Step};
use child::Shared;
use kit::{Kit, KitGuard};
use message::{send, Control};

/// The child's stack, in bytes: its steps call no deep code.
const STACK: usize = 256 * 1024;

/// The most fds one spawn passes (the kernel's `SCM_MAX_FD` is 253).
pub(crate) const MAX_FDS: usize = 240;

/// One fd the child gets: the plan's fd at index `fd`, as the child's fd
/// `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Move {
    pub(crate) fd: usize,
    pub(crate) target: RawFd,
}

/// What the child is to be, all of it in memory the host made before the
/// clone, which the child reads in place.
pub(crate) struct Plan<'a> {
    /// The fds the child receives.
    pub(crate) fds: &'a [BorrowedFd<'a>],
    pub(crate) moves: &'a [Move],
    /// Index among `fds` of the task cgroup's `cgroup.procs`.
    pub(crate) cgroup: Option<usize>,
    /// The working directory, relative to the host's.
    pub(crate) dir: Option<&'a CStr>,
    /// Null-terminated arrays of NUL-terminated strings: the paths to try
    /// in turn, the argv, the environment.
    pub(crate) candidates: &'a [*const libc::c_char],
    pub(crate) argv: &'a [*const libc::c_char],
    pub(crate) envp: &'a [*const libc::c_char],
    pub(crate) process_group: bool,
    /// Every signal at its default disposition and none blocked; else the
    /// ignored ones stay ignored and the spawning thread's mask is kept
    /// (handlers are reset either way: they are host code).
    pub(crate) restore_signals: bool,
    pub(crate) applied: Applied<'a>,
}

/// What became of a spawn.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The child runs (it exec'd); its pid.
    Spawned(u32),
    /// It did not: the step that failed (`None` for the exec itself or
    /// the working directory, told by errno as std tells them), with its
    /// error. The child has been reaped.
    Failed {
        step: Option<Step>,
        error: io::Error,
    },
    /// Nothing was tried: the fds could not be sent (the user's fds in
    /// flight are over its limit); the caller spawns through std.
    NotSent,
}

/// Whether the kernel has `close_range` (Linux 5.9, which brought
/// `CLOSE_RANGE_UNSHARE` with it), which the spawn needs; checked once.
///
/// The check must not pass `CLOSE_RANGE_UNSHARE`: in the host, that would
/// give the calling thread an fd table of its own, apart from its
/// process's other threads.
pub(crate) fn supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if UNSHARE_REFUSED.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    *SUPPORTED.get_or_init(|| {
        let beyond = u32::MAX - 1;
        // SAFETY: close_range on a range holding no fd changes nothing.
        unsafe { libc::syscall(libc::SYS_close_range, beyond, beyond, 0u32) == 0 }
    })
}

/// Spawns the child `plan` describes, from this thread. The call returns
/// once the child has exec'd (or failed), as `posix_spawn` does.
///
/// # Errors
/// The socket pair, the stack or the clone could not be made, or the fds
/// could not be sent; nothing ran.
pub(crate) fn spawn(plan: &Plan<'_>) -> io::Result<Outcome> {
    if plan.fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {MAX_FDS} fds may be passed to a child"),
        ));
    }
    let mut guard = KitGuard::lock();
    let slot = guard.kit();
    // Twice at most: a kit whose fds the host closed or replaced (a dup2
    // over them) is made again.
    for _ in 0..2 {
        if slot.is_none() {
            *slot = Some(Kit::new()?);
        }
        let Some(kit) = slot.as_mut() else {
            return Err(io::Error::other("no spawn kit"));
        };
        kit.lower();
        match send(kit.send.as_raw_fd(), plan.fds) {
            Ok(()) => {}
            // The user's fds in flight in unix sockets are over its
            // RLIMIT_NOFILE: std's spawn needs none.
            Err(err) if err.raw_os_error() == Some(libc::ETOOMANYREFS) => {
                return Ok(Outcome::NotSent)
            }
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::EBADF | libc::ENOTSOCK | libc::ECONNREFUSED | libc::EPIPE)
                ) =>
            {
                // Forget the kit without closing its numbers: they may be
                // the host's now.
                if let Some(kit) = slot.take() {
                    kit.forget_fds();
                }
                continue;
            }
            Err(err) => return Err(err),
        }
        let outcome = clone_child(kit, plan);
        kit.drain();
        // The kernel refuses CLOSE_RANGE_UNSHARE (a sandbox's filter):
        // nothing ran; std spawns this child and every later one.
        if let Ok(Outcome::Failed {
            step: Some(Step::UnshareFds),
            error,
        }) = &outcome
        {
            if matches!(
                error.raw_os_error(),
                Some(libc::EINVAL | libc::EPERM | libc::ENOSYS)
            ) {
                UNSHARE_REFUSED.store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(Outcome::NotSent);
            }
        }
        return outcome;
    }
    Ok(Outcome::NotSent)
}

/// Set once the kernel refused the child's `CLOSE_RANGE_UNSHARE`.
static UNSHARE_REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The clone itself, with every signal blocked in this thread meanwhile
/// (the child resets the handlers before it unblocks any).
fn clone_child(kit: &Kit, plan: &Plan<'_>) -> io::Result<Outcome> {
    // Every signal, glibc's own two (32 and 33, which its sigfillset and
    // pthread_sigmask leave out) too.
    let mut thread_mask = 0u64;
    signal_mask(Some(&!0u64), Some(&mut thread_mask));
    let mut shared = Shared {
        plan,
        receive: kit.receive.as_raw_fd(),
        thread_mask,
        fds: [-1; MAX_FDS],
        copies: [-1; MAX_FDS],
        control: Control::new(),
        step: 0,
        errno: 0,
    };
    // SAFETY: the child runs `child` on its own stack, in this memory,
    // until it execs or exits; this thread waits meanwhile (CLONE_VFORK),
    // so `shared` outlives it. SIGCHLD makes it a plain child for waitid.
    let pid = unsafe {
        libc::clone(
            child::child,
            kit.stack.add(STACK - 64).cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES | libc::SIGCHLD,
            ptr::addr_of_mut!(shared).cast(),
        )
    };
    let clone_error = io::Error::last_os_error();
    signal_mask(Some(&thread_mask), None);
    if pid < 0 {
        return Err(clone_error);
    }
    // SAFETY: the child has exec'd or exited (vfork waited); it wrote
    // these before.
    let (step, errno) = unsafe {
        (
            ptr::read_volatile(&shared.step),
            ptr::read_volatile(&shared.errno),
        )
    };
    if errno == 0 {
        return Ok(Outcome::Spawned(pid as u32));
    }
    // It exited (127) before its exec: reap it.
    // Its exit may still be under way (the vfork wait ends before it is a
    // zombie): a signal interrupting the wait is no reason to leave it.
    while let Err(nix::errno::Errno::EINTR) =
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
    {}
    Ok(Outcome::Failed {
        step: Step::decode(step),
        error: io::Error::from_raw_os_error(errno),
    })
}

/// Sets this thread's signal mask to `set` (if given) with the raw
/// syscall, and reads the one before into `old`: the kernel's 64-bit set,
/// which glibc's own signals are not kept out of.
pub(super) fn signal_mask(set: Option<&u64>, old: Option<&mut u64>) {
    // SAFETY: rt_sigprocmask reads and writes 8 bytes at the pointers
    // given, or none for a null one.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            set.map_or(ptr::null(), |s| s as *const u64),
            old.map_or(ptr::null_mut(), |o| o as *mut u64),
            std::mem::size_of::<u64>(),
        );
    }
}
