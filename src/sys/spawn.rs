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

use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::ptr;

use nix::libc;

use super::exec::{apply, Applied, Step};

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

/// What the process keeps for its spawns: the socket pair the fds travel
/// through, and the child's stack.
struct Kit {
    /// The host's end, which sends.
    send: OwnedFd,
    /// The child's end: at 3 or above (the child keeps the host's 0, 1 and
    /// 2 below it), as low as it could be when made.
    receive: OwnedFd,
    stack: *mut u8,
}

impl Kit {
    fn new() -> io::Result<Kit> {
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
            send = super::fd::dup_from(send.as_fd(), 3)?;
        }
        if receive.as_raw_fd() < 3 {
            receive = super::fd::dup_from(receive.as_fd(), 3)?;
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
    fn lower(&mut self) {
        if self.receive.as_raw_fd() < 64 {
            return;
        }
        if let Ok(lower) = super::fd::dup_from(self.receive.as_fd(), 3) {
            if lower.as_raw_fd() < self.receive.as_raw_fd() {
                self.receive = lower;
            }
        }
    }

    /// Lets go of the kit's fd numbers without closing them (the host
    /// closed or replaced them: they are not ours any more).
    fn forget_fds(self) {
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
    fn drain(&self) {
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
struct KitGuard;

impl KitGuard {
    fn lock() -> KitGuard {
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

    fn kit(&mut self) -> &mut Option<Kit> {
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

/// A control buffer for one `SCM_RIGHTS` message of up to [`MAX_FDS`]
/// fds, aligned as `cmsghdr` needs.
#[repr(C, align(8))]
struct Control([u8; 1024]);

impl Control {
    fn new() -> Control {
        Control([0; 1024])
    }
}

/// The one byte a message carries beside its fds.
fn one_byte(byte: &mut [u8; 1]) -> libc::iovec {
    libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    }
}

/// A message header of `iov` and the first `control_len` bytes of
/// `control` (none if 0).
fn header(iov: &mut libc::iovec, control: &mut Control, control_len: usize) -> libc::msghdr {
    // SAFETY: msghdr is plain data, for which zeroes are an empty header.
    let mut msg = unsafe { std::mem::zeroed::<libc::msghdr>() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    if control_len > 0 {
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control_len;
    }
    msg
}

/// Sends one byte and `fds` on `socket`.
///
/// # Errors
/// sendmsg failed.
fn send(socket: RawFd, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut control = Control::new();
    let bytes = std::mem::size_of_val(fds);
    let mut byte = [0u8; 1];
    let mut iov = one_byte(&mut byte);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = match fds.is_empty() {
        true => 0,
        false => (unsafe { libc::CMSG_SPACE(bytes as u32) }) as usize,
    };
    let msg = header(&mut iov, &mut control, space);
    // SAFETY: `msg` points at this frame's buffers; the header is written
    // through the CMSG macros within `control` (at most MAX_FDS fds fit).
    unsafe {
        if !fds.is_empty() {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(bytes as u32) as usize;
            ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), bytes);
        }
        loop {
            if libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL) >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// Receives one message from `socket` into `fds` (close-on-exec); returns
/// how many fds came, or `None` when none could be read. Allocates
/// nothing: the child calls it.
///
/// # Safety
/// Only the raw recvmsg call; safe in a child sharing the host's memory.
unsafe fn receive(
    socket: RawFd,
    control: &mut Control,
    fds: &mut [RawFd; MAX_FDS],
    flags: libc::c_int,
) -> Option<usize> {
    let mut byte = [0u8; 1];
    let mut iov = one_byte(&mut byte);
    let len = control.0.len();
    let mut msg = header(&mut iov, control, len);
    // SAFETY: recvmsg into this frame's buffers and `control`; the CMSG
    // macros walk what it filled.
    unsafe {
        let n = loop {
            // The raw syscall: glibc's wrapper is a cancellation point,
            // which touches the calling thread's state (shared with a host
            // thread in the child).
            let n = libc::syscall(
                libc::SYS_recvmsg,
                socket,
                ptr::addr_of_mut!(msg),
                flags | libc::MSG_CMSG_CLOEXEC,
            );
            if n >= 0 || *libc::__errno_location() != libc::EINTR {
                break n;
            }
        };
        if n < 0 {
            return None;
        }
        let mut count = 0;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let n = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..n {
                    if count < MAX_FDS {
                        fds[count] = ptr::read_unaligned(data.add(i));
                        count += 1;
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Some(count)
    }
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

/// What the child shares with the host while it runs in its memory.
struct Shared<'a> {
    plan: &'a Plan<'a>,
    /// The child's end of the socket.
    receive: RawFd,
    /// The mask to restore when `restore_signals` is off.
    thread_mask: u64,
    /// The child's scratch: the fds received and their copies.
    fds: [RawFd; MAX_FDS],
    copies: [RawFd; MAX_FDS],
    control: Control,
    /// What the child reports: the step that failed (0 for none told) and
    /// its errno.
    step: u32,
    errno: i32,
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
            child,
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
fn signal_mask(set: Option<&u64>, old: Option<&mut u64>) {
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
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
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
            if let Err(err) = super::cgroup::join(fds[procs]) {
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
