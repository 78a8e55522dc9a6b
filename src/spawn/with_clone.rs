//! The spawn made by the crate's own clone (`sys/spawn.rs`), whose cost
//! does not grow with the fds the host holds: the plan built from the
//! task.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::libc;

use super::{End, SpawnSpec};
use crate::sys::exec::{Applied, ChildSettings};
use crate::sys::spawn::{Move, Outcome, Plan, MAX_FDS};
use crate::SpawnError;

/// The directories glibc's execvp searches when PATH is unset.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// The child's strings, NUL-terminated, in one buffer (one allocation,
/// not one per string), and where each of its three arrays starts.
#[derive(Default)]
struct Strings {
    bytes: Vec<u8>,
    /// Offsets of the strings, each array ended by `None`.
    offsets: Vec<Option<usize>>,
}

impl Strings {
    /// Adds one string made of `parts`; `None` if it holds a NUL byte.
    fn push(&mut self, parts: &[&[u8]]) -> Option<()> {
        if parts.iter().any(|part| part.contains(&0)) {
            return None;
        }
        self.offsets.push(Some(self.bytes.len()));
        for part in parts {
            self.bytes.extend_from_slice(part);
        }
        self.bytes.push(0);
        Some(())
    }

    /// Ends the current array.
    fn end(&mut self) {
        self.offsets.push(None);
    }

    /// The pointer arrays, in the order they were ended, each
    /// null-terminated, pointing into `self.bytes` (which must not change
    /// while they are used).
    fn pointers(&self) -> Vec<*const libc::c_char> {
        let base = self.bytes.as_ptr().cast::<libc::c_char>();
        self.offsets
            .iter()
            // SAFETY: each offset is within `bytes`.
            .map(|offset| offset.map_or(std::ptr::null(), |at| unsafe { base.add(at) }))
            .collect()
    }
}

impl SpawnSpec {
    /// Whether our clone can make this child: it gets no fd of the host's
    /// but those given (`close_fds`), runs no code of the caller's
    /// (hooks, which std's fork path runs in a copy of the host's memory,
    /// not in the host's own), joins no cgroup of its own (a move into a
    /// cgroup applies the cgroup's memory policy, `cpuset.mems`, to the
    /// mover's memory, which a child made with CLONE_VM shares with the
    /// host), and passes no more fds than one message carries; and the
    /// kernel has `close_range` (Linux 5.9).
    pub(super) fn clone_can(&self) -> bool {
        self.close_fds
            && self.hooks.is_empty()
            && self.cgroup_parent.is_none()
            && self.extra_fds.len() + 5 <= MAX_FDS
            && crate::sys::spawn::supported()
    }

    /// Adds to `strings` the paths the child tries in turn, then its
    /// argv, then its environment. The paths: the program itself if it
    /// holds a `/`, else each directory of the child's PATH joined with it
    /// (an empty one meaning the working directory; `/bin:/usr/bin` when
    /// PATH is unset), as glibc's execvp does. The environment: the
    /// host's (unless cleared) with the task's changes, as std makes it.
    /// `None` if a string holds a NUL byte.
    fn strings(&self, strings: &mut Strings) -> Option<()> {
        let mut vars: Vec<(OsString, OsString)> = match self.env_clear {
            true => Vec::new(),
            false => std::env::vars_os().collect(),
        };
        for (key, value) in &self.env {
            vars.retain(|(k, _)| k != key);
            if let Some(value) = value {
                vars.push((key.clone(), value.clone()));
            }
        }
        let program = self.program.as_bytes();
        if program.is_empty() || program.contains(&b'/') {
            strings.push(&[program])?;
        } else {
            let path = vars.iter().find(|(k, _)| k == "PATH");
            let path = path.map_or(DEFAULT_PATH, |(_, v)| v.as_bytes());
            for dir in path.split(|&b| b == b':') {
                match dir.is_empty() {
                    true => strings.push(&[program])?,
                    false => strings.push(&[dir, b"/", program])?,
                }
            }
        }
        strings.end();
        strings.push(&[self.arg0.as_deref().unwrap_or(&self.program).as_bytes()])?;
        for arg in &self.args {
            strings.push(&[arg.as_bytes()])?;
        }
        strings.end();
        for (key, value) in &vars {
            strings.push(&[key.as_bytes(), b"=", value.as_bytes()])?;
        }
        strings.end();
        Some(())
    }

    /// Spawns with our clone, with `ends` as the child's fds 0, 1 and 2.
    /// `Ok(None)` if a string holds a NUL byte (the checks before the
    /// spawn refuse it first): the caller then spawns through std.
    ///
    /// # Errors
    /// `/dev/null` could not be opened, or the clone could not be made.
    pub(super) fn spawn_with_clone(
        &self,
        ends: &[End; 3],
        settings: &ChildSettings,
        drop_groups: bool,
    ) -> Result<Option<Outcome>, SpawnError> {
        let io_err = |source: std::io::Error| self.classify(source);
        let mut strings = Strings::default();
        if self.strings(&mut strings).is_none() {
            return Ok(None);
        }
        let dir = match &self.current_dir {
            Some(dir) => match CString::new(dir.as_os_str().as_bytes()) {
                Ok(dir) => Some(dir),
                Err(_) => return Ok(None),
            },
            None => None,
        };
        // As std does, for each stream that needs it: read-only for
        // stdin, write-only for an output.
        let mut nulls: [Option<OwnedFd>; 3] = [None, None, None];
        for (target, end) in ends.iter().enumerate() {
            if matches!(end, End::Null) {
                let null = std::fs::OpenOptions::new()
                    .read(target == 0)
                    .write(target != 0)
                    .open("/dev/null")
                    .map_err(io_err)?;
                nulls[target] = Some(null.into());
            }
        }
        let mut fds: Vec<BorrowedFd<'_>> = Vec::with_capacity(4 + self.extra_fds.len());
        let mut moves = Vec::with_capacity(3 + self.extra_fds.len());
        for (target, end) in ends.iter().enumerate() {
            let fd = match (end, &nulls[target]) {
                (End::Fd(fd), _) => fd.as_fd(),
                (End::Null, Some(null)) => null.as_fd(),
                // An inherited stream is the host's fd at that number,
                // which the child keeps from the host's table (as a
                // close-on-exec one, or none, it is closed at the exec, as
                // with std).
                _ => continue,
            };
            moves.push(Move {
                fd: fds.len(),
                target: target as i32,
            });
            fds.push(fd);
        }
        for (target, fd) in &self.extra_fds {
            moves.push(Move {
                fd: fds.len(),
                target: *target,
            });
            fds.push(fd.as_fd());
        }
        let cgroup = settings.join_cgroup.map(|procs| {
            // SAFETY: the cgroup's fd, open for the whole spawn (the task
            // holds the cgroup).
            fds.push(unsafe { BorrowedFd::borrow_raw(procs) });
            fds.len() - 1
        });
        let (rlimits, groups) = settings.lists(drop_groups);
        let pointers = strings.pointers();
        // The three arrays, each up to and with its null.
        let mut arrays = pointers.split_inclusive(|p| p.is_null());
        let (Some(candidates), Some(argv), Some(envp)) =
            (arrays.next(), arrays.next(), arrays.next())
        else {
            return Ok(None);
        };
        let plan = Plan {
            fds: &fds,
            moves: &moves,
            cgroup,
            dir: dir.as_deref(),
            candidates,
            argv,
            envp,
            process_group: self.process_group && !settings.setsid,
            restore_signals: self.restore_signals,
            applied: Applied {
                // Joined by the child before its moves, from `cgroup`.
                join_cgroup: None,
                ..settings.applied(&rlimits, groups.as_deref(), std::process::id() as i32)
            },
        };
        match crate::sys::spawn::spawn(&plan).map_err(io_err)? {
            Outcome::NotSent => Ok(None),
            outcome => Ok(Some(outcome)),
        }
    }
}
