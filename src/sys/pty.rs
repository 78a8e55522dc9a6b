//! Pseudo-terminal pairs for children whose output goes to a pty: their
//! window size, echo, and the controlling terminal.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::stat::Mode;
use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};

/// Opens a pty pair, `(master, slave)`, both close-on-exec and neither
/// becoming our controlling terminal.
///
/// The flags are given at open time rather than set afterwards, so a child
/// spawned by another thread in between cannot inherit either end. The
/// slave keeps the kernel's default line discipline (`ONLCR` turns `\n`
/// into `\r\n`), as a terminal would.
pub(crate) fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname_r(&master)?;
    let slave = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok((OwnedFd::from(master), slave))
}

/// Sets the terminal's window size, `(rows, columns)`, on `master`, and
/// its echo on `slave`, where given.
pub(crate) fn set_up(
    master: &OwnedFd,
    slave: &OwnedFd,
    size: Option<(u16, u16)>,
    echo: Option<bool>,
) -> io::Result<()> {
    if let Some((rows, cols)) = size {
        resize(master, rows, cols)?;
    }
    if let Some(echo) = echo {
        let mut termios = tcgetattr(slave)?;
        termios.local_flags.set(LocalFlags::ECHO, echo);
        tcsetattr(slave, SetArg::TCSANOW, &termios)?;
    }
    Ok(())
}

/// Sets the window size of the terminal whose master is `master`; the
/// kernel sends SIGWINCH to its foreground process group if it changed.
pub(crate) fn resize(master: &OwnedFd, rows: u16, cols: u16) -> io::Result<()> {
    let size = nix::libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize`, which lives for the call; the
    // fd is a pty master we keep open.
    let res = unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCSWINSZ, &size) };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Between fork and exec, after setsid: makes the terminal on `fd` the
/// child's controlling terminal (TIOCSCTTY).
pub(crate) fn make_controlling(fd: i32) -> io::Result<()> {
    // SAFETY: an ioctl taking an integer argument; async-signal-safe.
    if unsafe { nix::libc::ioctl(fd, nix::libc::TIOCSCTTY, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
