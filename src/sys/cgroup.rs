//! cgroup v2 containment: a cgroup of its own for each task that asks for
//! one ([`Popen::cgroup`](crate::Popen::cgroup)), which its child joins
//! between fork and exec, so that every process it ever starts (one that
//! left the process group with `setsid`, a daemon's double fork) stays in
//! it, can be signalled, and is killed with it.
//!
//! A member is signalled through a pidfd opened first and checked to be
//! in the cgroup after: a pid read from `cgroup.procs` may have been
//! reaped and reused since, but a pidfd names one process for good, so no
//! signal reaches a process that is not the task's. `cgroup.kill`
//! (Linux 5.14) SIGKILLs every member at once, new forks included;
//! without it each member gets SIGKILL the same way as the other signals.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::child::{pidfd_open, pidfd_send_signal};

/// `CGROUP2_SUPER_MAGIC`, statfs(2).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// A task's cgroup, removed when dropped (its members killed first).
#[derive(Debug)]
pub(crate) struct Cgroup {
    path: PathBuf,
    /// Its `cgroup.procs`, open for the child to join (write "0").
    procs: OwnedFd,
}

/// Who [`Cgroup::signal`] leaves out, as signalled already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    Nothing,
    /// This process.
    Process(u32),
    /// The members of this process group.
    Group(u32),
}

/// Why a task's cgroup could not be made: the path, and what went wrong.
pub(crate) type CgroupError = (PathBuf, io::Error);

impl Cgroup {
    /// Makes a new cgroup under `parent`, which must be a directory of a
    /// cgroup2 mount the host may write, with `limits` (control file,
    /// value) written in it.
    ///
    /// # Errors
    /// The path and the reason: not cgroup2, not writable, missing, a
    /// limit whose controller is not enabled or whose value is refused.
    pub(crate) fn create(parent: &Path, limits: &[(&str, String)]) -> Result<Cgroup, CgroupError> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let fail = |path: &Path, err: io::Error| (path.to_owned(), err);
        let stat = nix::sys::statfs::statfs(parent).map_err(|e| fail(parent, e.into()))?;
        if stat.filesystem_type().0 as i64 != CGROUP2_SUPER_MAGIC {
            return Err(fail(
                parent,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a directory of a cgroup2 (unified hierarchy) mount",
                ),
            ));
        }
        let name = format!(
            "actix-popen-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = parent.join(name);
        fs::create_dir(&path).map_err(|e| fail(&path, e))?;
        let procs = open(
            &path.join("cgroup.procs"),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            let _ = fs::remove_dir(&path);
            fail(&path, e.into())
        })?;
        let cgroup = Cgroup { path, procs };
        for (file, value) in limits {
            cgroup.set(file, value).map_err(|err| {
                // Named by its parent: the new cgroup, empty, is removed
                // at once by its drop.
                (parent.to_owned(), err)
            })?;
        }
        Ok(cgroup)
    }

    /// Writes `value` to the cgroup's control `file` (`memory.max`, …).
    ///
    /// # Errors
    /// A missing file means its controller is not enabled for the parent's
    /// children: said so, with the file to change.
    fn set(&self, file: &str, value: &str) -> io::Result<()> {
        let control = self.path.join(file);
        // (A write to a missing file would try to create it: EACCES.)
        match control.try_exists().and_then(|exists| match exists {
            true => fs::write(&control, value),
            false => Err(io::ErrorKind::NotFound.into()),
        }) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let controller = file.split('.').next().unwrap_or(file);
                let parent = self.path.parent().unwrap_or(&self.path);
                let available = fs::read_to_string(parent.join("cgroup.controllers"))
                    .is_ok_and(|list| list.split_whitespace().any(|c| c == controller));
                let why = match available {
                    true => format!(
                        "the {controller} controller is not enabled for this cgroup: \
                         add +{controller} to {}",
                        parent.join("cgroup.subtree_control").display()
                    ),
                    false => format!(
                        "the {controller} controller is not available here (it is not in \
                         {}; on a hybrid setup it may be bound to a cgroup v1 hierarchy)",
                        parent.join("cgroup.controllers").display()
                    ),
                };
                Err(io::Error::new(io::ErrorKind::Unsupported, why))
            }
            other => other,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The fd the child writes "0" to, to join (see [`join`]).
    pub(crate) fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// The pids in the cgroup now, those of the cgroups the task made in
    /// it included.
    pub(crate) fn members(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for dir in subtree(&self.path) {
            if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        pids
    }

    /// Whether a process is in the cgroup (`populated` of
    /// `cgroup.events`; zombies do not count).
    pub(crate) fn populated(&self) -> bool {
        match fs::read_to_string(self.path.join("cgroup.events")) {
            Ok(events) => populated(&events),
            Err(_) => !self.members().is_empty(),
        }
    }

    /// Resolves once no process is in the cgroup (zombies do not count):
    /// `populated 0` in `cgroup.events`, read again each time the kernel
    /// reports a change of the file (EPOLLPRI, through the reactor; the
    /// kernel reports at most one change per 10 ms). Must run inside a
    /// tokio runtime.
    ///
    /// # Errors
    /// The file cannot be opened, read or watched.
    pub(crate) async fn emptied(&self) -> io::Result<()> {
        use tokio::io::Interest;
        let events = fs::File::open(self.path.join("cgroup.events"))?;
        let watched = super::reactor::watch(events, Interest::PRIORITY)?;
        loop {
            // Read after the readiness is cleared: a change in between
            // sets it again, and the wait below returns at once.
            if !populated(&read_at_start(watched.get_ref())?) {
                return Ok(());
            }
            let mut ready = watched.ready(Interest::PRIORITY).await?;
            ready.clear_ready();
        }
    }

    /// How many processes of the cgroup (or of cgroups under it) the
    /// kernel's OOM killer has killed: `oom_kill` of `memory.events`; 0
    /// where the memory controller is not enabled (no such file).
    pub(crate) fn oom_kills(&self) -> u64 {
        fs::read_to_string(self.path.join("memory.events"))
            .map(|events| counter(&events, "oom_kill"))
            .unwrap_or(0)
    }

    /// Sends `signal` once to every process in the cgroup but `skip`:
    /// the process group or the one process the caller signalled already
    /// (see [`Skip`]); SIGKILL through `cgroup.kill` where the kernel has
    /// it. Returns how many were signalled one by one.
    ///
    /// The members are listed, pinned by pidfds, and listed again: only a
    /// pid in both listings is signalled, so a pid reused by a stranger in
    /// between is not. Processes forked meanwhile are found by the next
    /// round, until one finds nobody new (as systemd's `cg_kill`), at most
    /// a few rounds: a fork bomb is left to `cgroup.kill`.
    pub(crate) fn signal(&self, signal: i32, skip: Skip) -> usize {
        if signal == nix::libc::SIGKILL && fs::write(self.path.join("cgroup.kill"), "1").is_ok() {
            return 0;
        }
        const ROUNDS: usize = 8;
        let mut seen: HashSet<u32> = HashSet::new();
        let mut sent = 0;
        for _ in 0..ROUNDS {
            let new: Vec<u32> = self
                .members()
                .into_iter()
                .filter(|pid| seen.insert(*pid))
                .collect();
            if new.is_empty() {
                break;
            }
            let pinned: Vec<(u32, OwnedFd)> = new
                .into_iter()
                .filter_map(|pid| pidfd_open(pid).ok().map(|pidfd| (pid, pidfd)))
                .collect();
            let still: HashSet<u32> = self.members().into_iter().collect();
            for (pid, pidfd) in pinned {
                if !still.contains(&pid) {
                    continue;
                }
                let skipped = match skip {
                    Skip::Nothing => false,
                    Skip::Process(skipped) => pid == skipped,
                    Skip::Group(group) => {
                        nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32)))
                            .is_ok_and(|pgid| pgid.as_raw() as u32 == group)
                    }
                };
                if !skipped && pidfd_send_signal(pidfd.as_raw_fd(), signal).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    }

    /// Removes the cgroup; it must be empty.
    ///
    /// # Errors
    /// EBUSY while a process is in it.
    pub(crate) fn remove(&self) -> io::Result<()> {
        // The cgroups the task made in it first, deepest first.
        for dir in subtree(&self.path).into_iter().rev() {
            match fs::remove_dir(&dir) {
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        Ok(())
    }
}

impl Drop for Cgroup {
    /// Whatever is left is killed, and the cgroup removed once empty
    /// (briefly waited for: SIGKILLed processes leave within moments).
    fn drop(&mut self) {
        if self.populated() {
            self.signal(nix::libc::SIGKILL, Skip::Nothing);
        }
        for _ in 0..50 {
            match self.remove() {
                Ok(()) => return,
                Err(err) if err.raw_os_error() == Some(nix::libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(err) => {
                    log::warn!("cannot remove cgroup {}: {err}", self.path.display());
                    return;
                }
            }
        }
        log::warn!("cgroup {} is still busy; left behind", self.path.display());
    }
}

/// Whether a `cgroup.events` text says a process is in the cgroup.
fn populated(events: &str) -> bool {
    counter(events, "populated") > 0
}

/// The value of `key` in a flat-keyed cgroup file (`cgroup.events`,
/// `memory.events`: one `key value` per line); 0 if it is missing.
fn counter(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(name, _)| *name == key)
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

/// The whole of a small kernfs file, read from its start (a read from 0
/// also marks its change as seen, for the next EPOLLPRI).
fn read_at_start(file: &fs::File) -> io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 256];
    let n = file.read_at(&mut buf, 0)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `dir` and every cgroup under it, parents before children.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![dir.to_owned()];
    let mut next = 0;
    while next < dirs.len() {
        if let Ok(entries) = fs::read_dir(&dirs[next]) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                    .map(|entry| entry.path()),
            );
        }
        next += 1;
    }
    dirs
}

/// Between fork and exec: moves the calling process into the cgroup whose
/// `cgroup.procs` is open as `procs` (writing "0" names the writer).
pub(crate) fn join(procs: RawFd) -> io::Result<()> {
    let zero = b"0";
    // SAFETY: the raw write(2) syscall (not glibc's wrapper, a
    // cancellation point that touches the calling thread's state, which a
    // child made with CLONE_VM shares with a host thread); `zero` lives for
    // the call.
    let res = unsafe { nix::libc::syscall(nix::libc::SYS_write, procs, zero.as_ptr(), zero.len()) };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_by_key() {
        let memory = "low 0\nhigh 3\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(counter(memory, "oom_kill"), 1);
        assert_eq!(counter(memory, "oom"), 2);
        assert_eq!(counter(memory, "oom_group_kill"), 0);
        assert_eq!(counter(memory, "missing"), 0);
        assert_eq!(counter("", "oom_kill"), 0);
        assert!(populated("populated 1\nfrozen 0\n"));
        assert!(!populated("populated 0\nfrozen 0\n"));
        assert!(!populated("frozen 1\n"));
    }
}
