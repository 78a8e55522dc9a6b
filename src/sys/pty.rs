//! Pseudo-terminal pairs for children whose output goes to a pty.

use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::stat::Mode;

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
