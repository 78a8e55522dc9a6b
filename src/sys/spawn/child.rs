//! The child, between the clone and its exec, in the host's memory: only
//! raw syscalls and memory the host prepared.

use std::os::fd::RawFd;
use std::ptr;

use nix::libc;

use super::message::{receive, Control};
use super::{signal_mask, Plan, MAX_FDS};
use crate::sys::exec::{apply, Step};

/// What the child shares with the host while it runs in its memory.
pub(super) struct Shared<'a> {
    pub(super) plan: &'a Plan<'a>,
    /// The child's end of the socket.
    pub(super) receive: RawFd,
    /// The mask to restore when `restore_signals` is off.
    pub(super) thread_mask: u64,
    /// The child's scratch: the fds received and their copies.
    pub(super) fds: [RawFd; MAX_FDS],
    pub(super) copies: [RawFd; MAX_FDS],
    pub(super) control: Control,
    /// What the child reports: the step that failed (0 for none told) and
    /// its errno.
    pub(super) step: u32,
    pub(super) errno: i32,
}

/// The kernel's `struct sigaction` (x86-64 and arm64 alike), for the raw
/// syscall, which glibc's own signals are not kept out of.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Records in `shared` that `step` failed with `errno`, and ends the child.
///
/// # Safety
/// In the child, with `shared` the host's.
unsafe fn fail(shared: *mut Shared<'_>, step: u32, errno: i32) -> ! {
    // SAFETY: the host thread waits (vfork) until this child exits; it
    // reads these after.
    unsafe {
        ptr::write_volatile(ptr::addr_of_mut!((*shared).step), step);
        ptr::write_volatile(ptr::addr_of_mut!((*shared).errno), errno.max(1));
        libc::_exit(127)
    }
}

fn errno() -> i32 {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// The child, between clone and exec, in the host's memory: a table of
/// its own, its signal handlers reset, its fds received and moved to
/// their numbers, its cgroup and working directory, its process group,
/// the steps of [`apply`], its signal mask, then the exec.
pub(super) extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    let shared = arg.cast::<Shared<'_>>();
    // SAFETY (the whole body): `arg` is the host's `Shared`, untouched by
    // the host until this child exits or execs (vfork); every call is a
    // raw syscall or an async-signal-safe one that takes no lock, and
    // nothing is allocated; every signal stays blocked until the mask is
    // set at the end, and by then no handler of the host's is left.
    unsafe {
        let plan = (*shared).plan;
        let receive = (*shared).receive;
        let step = |step: Step| step.encode();
        // A table of our own, of the fds up to the socket's end only; and
        // of those, only 0, 1 and 2 (the host's, for the streams the child
        // inherits) and the socket's end.
        if libc::syscall(
            libc::SYS_close_range,
            (receive + 1) as u32,
            u32::MAX,
            libc::CLOSE_RANGE_UNSHARE,
        ) < 0
        {
            fail(shared, step(Step::UnshareFds), errno());
        }
        if receive > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (receive - 1) as u32, 0u32);
        }
        // No host code may run here: each handler back to the default,
        // and each ignored signal too unless the caller keeps them.
        for sig in 1..=libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            if (32..libc::SIGRTMIN()).contains(&sig) {
                // glibc's own (thread cancel, setxid), which its sigaction
                // refuses: to the default by the raw syscall.
                let default = KernelSigaction {
                    handler: 0,
                    flags: 0,
                    restorer: 0,
                    mask: 0,
                };
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    ptr::addr_of!(default),
                    ptr::null_mut::<KernelSigaction>(),
                    std::mem::size_of::<u64>(),
                );
                continue;
            }
            let mut old = std::mem::zeroed::<libc::sigaction>();
            if libc::sigaction(sig, ptr::null(), &mut old) < 0 {
                continue;
            }
            let ignored = old.sa_sigaction == libc::SIG_IGN;
            let default = old.sa_sigaction == libc::SIG_DFL;
            // SIGPIPE, which Rust programs ignore, is reset even so, as
            // std's spawn does.
            let keep_ignored = !plan.restore_signals && sig != libc::SIGPIPE;
            if default || (ignored && keep_ignored) {
                continue;
            }
            let mut dfl = std::mem::zeroed::<libc::sigaction>();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, ptr::null_mut());
        }
        let count = match receive_fds(shared, receive) {
            Some(count) => count,
            None => fail(shared, step(Step::UnshareFds), errno()),
        };
        // Fewer than sent: the kernel could not install them all (the
        // fd limit), as a spawn that runs out of fds is told.
        if count != plan.fds.len() {
            fail(shared, 0, libc::EMFILE);
        }
        let fds = &(&(*shared).fds)[..count];
        if let Some(procs) = plan.cgroup {
            if let Err(err) = crate::sys::cgroup::join(fds[procs]) {
                fail(
                    shared,
                    step(Step::JoinCgroup),
                    err.raw_os_error().unwrap_or(libc::EIO),
                );
            }
        }
        if let Some(dir) = plan.dir {
            if libc::chdir(dir.as_ptr()) < 0 {
                fail(shared, 0, errno());
            }
        }
        // Each fd to its number. One that sits where a move puts another
        // is first copied to a number no move targets (the lowest such:
        // the fd limit may be low), so that no move overwrites an fd a
        // later one still needs.
        let moves = plan.moves;
        let targeted = |fd: RawFd| moves.iter().any(|m| m.target == fd);
        for (i, m) in moves.iter().enumerate() {
            let mut source = fds[m.fd];
            if targeted(source) && source != m.target {
                source = loop {
                    let copy = libc::fcntl(fds[m.fd], libc::F_DUPFD_CLOEXEC, 3);
                    if copy < 0 {
                        let err = errno();
                        let told = match err {
                            libc::EMFILE => 0,
                            _ => step(Step::MoveFd(m.target as u16)),
                        };
                        fail(shared, told, err);
                    }
                    // One on a target is left there, close-on-exec, for
                    // its move to replace.
                    if !targeted(copy) {
                        break copy;
                    }
                };
            }
            (*shared).copies[i] = source;
        }
        for (i, m) in moves.iter().enumerate() {
            let source = (*shared).copies[i];
            // In place already: only its close-on-exec flag goes (dup2
            // onto itself would keep it).
            let res = match source == m.target {
                true => libc::fcntl(source, libc::F_SETFD, 0),
                false => libc::dup2(source, m.target),
            };
            if res < 0 {
                fail(shared, step(Step::MoveFd(m.target as u16)), errno());
            }
        }
        if plan.process_group && libc::setpgid(0, 0) < 0 {
            fail(shared, step(Step::ProcessGroup), errno());
        }
        if let Err((failed, err)) = apply(&plan.applied) {
            fail(
                shared,
                step(failed),
                err.raw_os_error().unwrap_or(libc::EIO),
            );
        }
        let mask = match plan.restore_signals {
            true => 0,
            false => (*shared).thread_mask,
        };
        signal_mask(Some(&mask), None);
        exec(shared, plan)
    }
}

/// In the child: the fds the host sent.
///
/// # Safety
/// In the child, with `shared` the host's.
unsafe fn receive_fds(shared: *mut Shared<'_>, socket: RawFd) -> Option<usize> {
    // SAFETY: the child's own scratch in `shared`.
    unsafe {
        receive(
            socket,
            &mut (*shared).control,
            &mut (*shared).fds,
            libc::MSG_DONTWAIT,
        )
    }
}

/// Tries each candidate path of the program in turn, as glibc's execvp
/// does with the directories of PATH: on past a file that is missing, not
/// in a directory or not runnable; stops at any other error. The error
/// told is EACCES if any candidate gave it, or else the last one.
///
/// # Safety
/// In the child, with `plan` and `shared` the host's.
unsafe fn exec(shared: *mut Shared<'_>, plan: &Plan<'_>) -> ! {
    // SAFETY: the arrays are null-terminated, of NUL-terminated strings the
    // host made before the clone.
    unsafe {
        let mut denied = false;
        let mut last = libc::ENOENT;
        for &candidate in plan.candidates {
            if candidate.is_null() {
                break;
            }
            libc::execve(candidate, plan.argv.as_ptr(), plan.envp.as_ptr());
            last = errno();
            match last {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => break,
            }
        }
        if denied && matches!(last, libc::ENOENT | libc::ENOTDIR | libc::EACCES) {
            last = libc::EACCES;
        }
        fail(shared, 0, last)
    }
}
