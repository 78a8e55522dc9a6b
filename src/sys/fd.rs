//! Pipes, non-blocking mode and the single `read()` portage calls `_read_buf`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use bytes::BytesMut;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Creates a pipe with both ends close-on-exec, so no other child inherits
/// them; std's spawn clears the flag only on the copy it installs as the
/// child's fd 0, 1 or 2. Returns `(read end, write end)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// [`pipe`], with room for `size` bytes if given (`F_SETPIPE_SZ`,
/// fcntl(2), Linux 2.6.35; the kernel rounds it up to a power of two
/// pages).
///
/// # Errors
/// The pipe cannot be made, or the kernel refuses the size (above
/// `/proc/sys/fs/pipe-max-size` without CAP_SYS_RESOURCE, or beyond the
/// user's pipe pages, `pipe-user-pages-hard`): said so, with the size.
pub(crate) fn pipe_sized(size: Option<usize>) -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = pipe()?;
    if let Some(size) = size {
        let asked = nix::libc::c_int::try_from(size).unwrap_or(nix::libc::c_int::MAX);
        fcntl(&write, FcntlArg::F_SETPIPE_SZ(asked)).map_err(|err| {
            io::Error::new(
                io::Error::from(err).kind(),
                format!("cannot make a pipe of {size} bytes (F_SETPIPE_SZ): {err}"),
            )
        })?;
    }
    Ok((read, write))
}

/// The largest pipe an unprivileged process may ask for
/// (`/proc/sys/fs/pipe-max-size`), if it can be read.
pub(crate) fn pipe_max_size() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Puts `fd` in non-blocking mode.
///
/// This changes the open file description, so it is only done on our own
/// read ends, never on an end the child gets.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    if !flags.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    }
    Ok(())
}

/// A copy of the host's fd `fd` as a child would inherit it: `None` if it
/// is closed or close-on-exec.
pub(crate) fn inheritable(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: a query taking an integer.
    let flags = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) };
    if flags < 0 || flags & nix::libc::FD_CLOEXEC != 0 {
        return None;
    }
    // SAFETY: open (checked above) for the time of the copy.
    dup_from(unsafe { BorrowedFd::borrow_raw(fd) }, 3).ok()
}

/// Whether `close_range` with `CLOSE_RANGE_CLOEXEC` works (Linux 5.11),
/// checked once on a range no fd can be in.
fn close_range_cloexec_works() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        let beyond = u32::MAX - 1;
        // SAFETY: close_range on a range holding no open fd changes
        // nothing; it takes integers only.
        let res = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_close_range,
                beyond,
                beyond,
                nix::libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        res == 0
    })
}

/// Has the child spawned from `command` mark every fd from 3 on
/// close-on-exec between fork and exec, so that exec closes them
/// (`close_fds`). This forces std's fork path.
///
/// With `close_range(CLOSE_RANGE_CLOEXEC)` (Linux 5.11), one syscall; on
/// an older kernel, the child lists its own fds from `/proc/self/fd`
/// (opened in the child) with raw `getdents64` calls and marks each, as
/// Python's `subprocess` does; without /proc, every number below its
/// `RLIMIT_NOFILE`.
///
/// # Errors
/// None today; kept for the callers' `?`.
pub(crate) fn close_fds_at_exec(command: &mut std::process::Command) -> io::Result<()> {
    if close_range_cloexec_works() {
        // SAFETY: the closure runs in the child between fork and exec,
        // after std installed fds 0, 1 and 2; it makes one syscall, which
        // is async-signal-safe, and touches no memory.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(command, cloexec_from_3);
        }
        return Ok(());
    }
    // SAFETY: the closure runs in the child between fork and exec; see
    // `cloexec_own_fds`.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, cloexec_own_fds);
    }
    Ok(())
}

/// Between fork and exec, without `close_range`: marks every fd of the
/// calling process from 3 on close-on-exec, as its own `/proc/self/fd`
/// lists them, or, without /proc, every number below its `RLIMIT_NOFILE`.
///
/// # Errors
/// `getdents64` failed.
fn cloexec_own_fds() -> io::Result<()> {
    {
        use nix::libc;
        // SAFETY: raw syscalls on a static path and integers.
        unsafe {
            let listing = libc::syscall(
                libc::SYS_openat,
                libc::AT_FDCWD,
                c"/proc/self/fd".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            ) as RawFd;
            if listing >= 0 {
                let listed = cloexec_listed(listing);
                libc::close(listing);
                return listed;
            }
            let mut limit = std::mem::zeroed::<libc::rlimit>();
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            let last = RawFd::try_from(limit.rlim_cur).unwrap_or(RawFd::MAX);
            for fd in 3..last {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        Ok(())
    }
}

/// Between fork and exec: marks every fd from 3 on close-on-exec, so exec
/// closes them (`close_fds`).
///
/// # Errors
/// `close_range` failed.
fn cloexec_from_3() -> io::Result<()> {
    // SAFETY: one async-signal-safe syscall taking integers only.
    let res = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            3u32,
            u32::MAX,
            nix::libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Between fork and exec, without `close_range`: marks close-on-exec every
/// fd from 3 on that `listing` (an fd of `/proc/self/fd` opened by the
/// calling process, so that it lists that process's own table) names.
///
/// # Errors
/// `getdents64` failed.
fn cloexec_listed(listing: RawFd) -> io::Result<()> {
    use nix::libc;
    // Aligned for the `linux_dirent64` records the kernel writes.
    #[repr(C, align(8))]
    struct Buffer([u8; 4096]);
    let mut buf = Buffer([0; 4096]);
    // SAFETY: raw syscalls on our own fd and this frame's buffer; each
    // record is read within the length the kernel returned.
    unsafe {
        if libc::lseek(listing, 0, libc::SEEK_SET) < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            let len = libc::syscall(
                libc::SYS_getdents64,
                listing,
                buf.0.as_mut_ptr(),
                buf.0.len(),
            );
            if len < 0 {
                return Err(io::Error::last_os_error());
            }
            if len == 0 {
                return Ok(());
            }
            let mut at = 0usize;
            while at + 19 < len as usize {
                // d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name.
                let record = buf.0.as_ptr().add(at);
                let reclen = usize::from(u16::from_ne_bytes([*record.add(16), *record.add(17)]));
                if reclen == 0 {
                    break;
                }
                let mut fd: i32 = 0;
                let mut digits = 0;
                let mut name = record.add(19);
                while (*name).is_ascii_digit() && digits < 10 {
                    fd = fd * 10 + i32::from(*name - b'0');
                    digits += 1;
                    name = name.add(1);
                }
                if digits > 0 && *name == 0 && fd >= 3 && fd != listing {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
                at += reclen;
            }
        }
    }
}

#[cfg(test)]
mod close_fds_tests {
    use super::*;

    #[test]
    fn the_listing_marks_every_fd_from_3_close_on_exec() {
        // In this process, on fds of its own: an fd left inheritable is
        // marked, as the child's would be.
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let inheritable = nix::unistd::dup(&write).expect("dup");
        let flags =
            |fd: &OwnedFd| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).expect("flags");
        assert_eq!(flags(&inheritable) & nix::libc::FD_CLOEXEC, 0);
        let dir: OwnedFd = std::fs::File::open("/proc/self/fd")
            .expect("listing")
            .into();
        cloexec_listed(dir.as_raw_fd()).expect("listed");
        assert_ne!(flags(&inheritable) & nix::libc::FD_CLOEXEC, 0);
        drop((read, write));
    }

    #[test]
    fn a_forked_child_marks_its_own_fds_not_the_hosts() {
        // An fd the host closes right after the fork stays open in the
        // child: the child's listing must still find it.
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let inheritable = nix::unistd::dup(&write).expect("dup");
        let number = inheritable.as_raw_fd();
        // SAFETY: the child makes only raw syscalls, then _exit.
        let pid = unsafe { nix::libc::fork() };
        if pid == 0 {
            // SAFETY: in the forked child: async-signal-safe calls only.
            unsafe {
                let _ = cloexec_own_fds();
                let flags = nix::libc::fcntl(number, nix::libc::F_GETFD);
                nix::libc::_exit(if flags & nix::libc::FD_CLOEXEC != 0 {
                    0
                } else {
                    1
                });
            }
        }
        drop(inheritable);
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        assert_eq!(
            status.ok(),
            Some(nix::sys::wait::WaitStatus::Exited(
                nix::unistd::Pid::from_raw(pid),
                0
            )),
            "the child's fd {number} was left inheritable"
        );
        drop((read, write));
    }
}

/// How a file the host creates for a child's output is made, as if the
/// child had created it: with its umask, owned by its uid and gid.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Creation {
    pub(crate) umask: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
}

/// Opens `path` for a child's stdin (`output` `None`) or for its stdout or
/// stderr (`Some(append)`: created if missing, then emptied or appended
/// to). Close-on-exec, never our controlling terminal (O_NOCTTY), and
/// without waiting (O_NONBLOCK, cleared once open so the child gets a
/// blocking fd): a FIFO with no reader fails with ENXIO rather than block
/// the host. A FIFO to read is refused (`InvalidInput`): opened without
/// waiting for its writer, it would give the child EOF at once.
///
/// A file it creates gets mode 0666 less `creation.umask` (or, unset, the
/// host's umask), and `creation`'s owner.
pub(crate) fn open_for_child(
    path: &Path,
    output: Option<bool>,
    creation: Creation,
) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = |create: bool| {
        let mut options = std::fs::OpenOptions::new();
        match output {
            None => options.read(true),
            Some(true) => options.append(true),
            Some(false) => options.write(true).truncate(!create),
        };
        if create {
            options.create_new(true);
        }
        options.custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY);
        options.open(path).map(OwnedFd::from)
    };
    let fd = match (output, open(false)) {
        (Some(_), Err(err)) if err.kind() == io::ErrorKind::NotFound => match open(true) {
            Ok(fd) => {
                made_as_child(&fd, creation)?;
                fd
            }
            // Created by someone else in between.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => open(false)?,
            Err(err) => return Err(err),
        },
        (_, opened) => opened?,
    };
    let stat = nix::sys::stat::fstat(&fd)?;
    let kind =
        nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode) & nix::sys::stat::SFlag::S_IFMT;
    if output.is_none() && kind == nix::sys::stat::SFlag::S_IFIFO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a FIFO cannot be opened for the child without waiting for its writer \
             (the child would read EOF at once): open it yourself with File::open, \
             which waits, and pass it with InputFrom::fd",
        ));
    }
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(fd)
}

/// Gives a file just created for the child the mode and owner the child
/// would have given it.
fn made_as_child(fd: &OwnedFd, creation: Creation) -> io::Result<()> {
    if let Some(mask) = creation.umask {
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o666 & !mask);
        nix::sys::stat::fchmod(fd, mode)?;
    }
    if creation.uid.is_some() || creation.gid.is_some() {
        nix::unistd::fchown(
            fd,
            creation.uid.map(nix::unistd::Uid::from_raw),
            creation.gid.map(nix::unistd::Gid::from_raw),
        )?;
    }
    Ok(())
}

/// A close-on-exec duplicate of `fd` numbered `lowest` or, if that is
/// taken, the next free number above.
pub(crate) fn dup_from(fd: BorrowedFd<'_>, lowest: RawFd) -> io::Result<OwnedFd> {
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(lowest))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// What one `read()` gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// This many bytes (at least 1, at most `bufsize`) were appended.
    Data(usize),
    /// Nothing now (EAGAIN): wait for the next readiness event.
    WouldBlock,
    /// End of file: an empty read, or EIO from a pty master whose slave
    /// side was closed by every process.
    Eof,
}

/// Reads at most `bufsize` bytes from `fd` with exactly one `read()` call
/// (retried only on EINTR), as portage's `_read_buf` does, appending them
/// to `buf`.
///
/// `buf` is a reusable allocation: the caller splits what was read off it
/// as a `Bytes` that shares its storage, so no byte is copied.
pub(crate) fn read_buf(fd: &impl AsRawFd, buf: &mut BytesMut, bufsize: usize) -> io::Result<Read> {
    if buf.capacity() - buf.len() < bufsize {
        // One allocation serves a few reads; chunks keep it alive until the
        // last of them is dropped. Small enough (under glibc's mmap
        // threshold) to come from the heap quickly.
        buf.reserve((bufsize * 4).clamp(16 * 1024, 128 * 1024).max(bufsize));
    }
    loop {
        let spare = buf.spare_capacity_mut();
        let len = bufsize.min(spare.len());
        // SAFETY: `spare` is writable memory owned by `buf` of at least
        // `len` bytes; read(2) writes at most `len` bytes into it and the
        // fd is a plain integer the caller keeps open for the call.
        let n = unsafe { nix::libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), len) };
        if n > 0 {
            let n = n as usize;
            // SAFETY: the kernel initialised exactly `n` bytes past the end
            // of the filled part, and `n <= len <= spare capacity`.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(Read::Data(n));
        }
        if n == 0 {
            return Ok(Read::Eof);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            Errno::EAGAIN => return Ok(Read::WouldBlock),
            Errno::EIO => return Ok(Read::Eof),
            errno => return Err(errno.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn read_buf_reads_at_most_bufsize_then_would_block_then_eof() {
        let (r, w) = pipe().unwrap();
        set_nonblocking(std::os::fd::AsFd::as_fd(&r)).unwrap();
        let mut w = std::fs::File::from(w);
        w.write_all(&[7u8; 10]).unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(read_buf(&r, &mut buf, 4).unwrap(), Read::Data(4));
        assert_eq!(read_buf(&r, &mut buf, 4).unwrap(), Read::Data(4));
        assert_eq!(read_buf(&r, &mut buf, 4).unwrap(), Read::Data(2));
        assert_eq!(&buf[..], &[7u8; 10]);
        assert_eq!(read_buf(&r, &mut buf, 4).unwrap(), Read::WouldBlock);
        drop(w);
        assert_eq!(read_buf(&r, &mut buf, 4).unwrap(), Read::Eof);
    }

    #[test]
    fn read_buf_reports_ebadf_as_an_error() {
        struct Bad;
        impl AsRawFd for Bad {
            fn as_raw_fd(&self) -> i32 {
                -1
            }
        }
        let err = read_buf(&Bad, &mut BytesMut::new(), 16).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::EBADF));
    }
}

/// What one [`tee_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Teed {
    /// This many bytes were duplicated into the sink; they are still in
    /// the source, to be read.
    Bytes(usize),
    /// The source is empty and has no writer left.
    Eof,
    /// The source is empty now.
    SourceEmpty,
    /// The sink is full now (the source holds bytes).
    SinkFull,
    /// The sink has no reader left (EPIPE).
    SinkGone,
}

/// Duplicates up to `len` bytes from the pipe `source` into the pipe
/// `sink` without consuming them (`tee(2)`, Linux 2.6.17), never blocking
/// (`SPLICE_F_NONBLOCK`). The pages are shared, not copied. An EPIPE
/// raises no SIGPIPE in the host (see `sigpipe.rs`; `sigpipe_ignored` is
/// what [`super::sigpipe::ignored`] found).
///
/// # Errors
/// Any error but EAGAIN, EPIPE and EINTR (retried).
pub(crate) fn tee_once(
    source: &impl AsFd,
    sink: &impl AsFd,
    len: usize,
    sigpipe_ignored: bool,
) -> io::Result<Teed> {
    use nix::fcntl::{tee, SpliceFFlags};
    loop {
        let teed = super::sigpipe::guarded(sigpipe_ignored, || {
            tee(source, sink, len, SpliceFFlags::SPLICE_F_NONBLOCK)
        });
        return match teed {
            Ok(0) => Ok(Teed::Eof),
            Ok(n) => Ok(Teed::Bytes(n)),
            Err(Errno::EINTR) => continue,
            Err(Errno::EPIPE) => Ok(Teed::SinkGone),
            // Either end may be why: the source's fill says which.
            Err(Errno::EAGAIN) => match bytes_in_pipe(source)? {
                0 => Ok(Teed::SourceEmpty),
                _ => Ok(Teed::SinkFull),
            },
            Err(errno) => Err(errno.into()),
        };
    }
}

/// How many bytes the pipe `fd` holds (`FIONREAD`).
fn bytes_in_pipe(fd: &impl AsFd) -> io::Result<usize> {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points to
    // `n`, alive for the call; the fd is borrowed, so open.
    let res = unsafe {
        nix::libc::ioctl(
            fd.as_fd().as_raw_fd(),
            nix::libc::FIONREAD,
            &mut n as *mut nix::libc::c_int,
        )
    };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}
