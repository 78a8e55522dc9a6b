//! The one message a spawn sends its child: a byte and its fds
//! (`SCM_RIGHTS`), and how the child (or the host, draining) receives it
//! without allocating.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::ptr;

use nix::libc;

use super::MAX_FDS;

/// A control buffer for one `SCM_RIGHTS` message of up to [`MAX_FDS`]
/// fds, aligned as `cmsghdr` needs.
#[repr(C, align(8))]
pub(super) struct Control([u8; 1024]);

impl Control {
    pub(super) fn new() -> Control {
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
pub(super) fn send(socket: RawFd, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
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
pub(super) unsafe fn receive(
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
