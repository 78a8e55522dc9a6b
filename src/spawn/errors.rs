//! A failed spawn, named: the OS error of a spawn told apart by what it
//! means for the caller ([`SpawnErrorKind`]).

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::SpawnSpec;
use crate::sys::cgroup::Cgroup;
use crate::sys::exec::Step;
use crate::{SpawnError, SpawnErrorKind};

/// Whether `dir` is a directory the host may enter.
pub(super) fn enterable(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::X_OK).is_ok() && dir.is_dir()
}

impl SpawnSpec {
    /// The child could not join its cgroup: a [`SpawnErrorKind::Cgroup`]
    /// naming the cgroup's `cgroup.procs`, with the usual cause when the
    /// kernel refused the move.
    pub(super) fn join_error(&self, cgroup: Option<&Cgroup>, source: io::Error) -> SpawnError {
        let path = cgroup.map_or_else(PathBuf::new, |c| c.path().join("cgroup.procs"));
        let refused = matches!(
            source.raw_os_error(),
            Some(nix::libc::EACCES | nix::libc::EPERM)
        );
        let source = match refused {
            true => io::Error::new(
                source.kind(),
                format!(
                    "{source}: the host may make the cgroup but not move a process into it; \
                     cgroup v2 needs write access to cgroup.procs of the common ancestor of \
                     the host's cgroup and this one (cgroup(7), delegation containment)"
                ),
            ),
            false => source,
        };
        SpawnError::new(
            self.program_name(),
            SpawnErrorKind::Cgroup {
                path,
                source: Arc::new(source),
            },
        )
    }

    /// The error of a spawn that failed at `step` (`None`: at the exec,
    /// or at a step of std's own), with `source`.
    pub(super) fn step_error(
        &self,
        step: Option<Step>,
        source: io::Error,
        cgroup: Option<&Cgroup>,
    ) -> SpawnError {
        match step {
            Some(Step::JoinCgroup) => self.join_error(cgroup, source),
            Some(step) => SpawnError::new(
                self.program_name(),
                SpawnErrorKind::ChildSetup {
                    step: self.step_name(step),
                    source: Arc::new(source),
                },
            ),
            None => self.classify(source),
        }
    }

    /// A step between fork and exec as [`SpawnErrorKind::ChildSetup`]
    /// names it: `setuid 65534`, `pre_exec hook 2`.
    pub(crate) fn step_name(&self, step: Step) -> String {
        let settings = &self.settings;
        match step {
            Step::JoinCgroup => crate::sys::exec::JOIN_CGROUP.to_owned(),
            Step::Setsid => "setsid".to_owned(),
            Step::ControllingTerminal => "TIOCSCTTY (the controlling terminal)".to_owned(),
            Step::Rlimit(index) => match settings.rlimits.get(usize::from(index)) {
                Some((limit, soft, hard)) => format!("rlimit {limit} ({soft}, {hard})"),
                None => "rlimit".to_owned(),
            },
            Step::Nice => format!("nice {}", settings.nice.unwrap_or(0)),
            Step::Groups => "setgroups".to_owned(),
            Step::Gid => format!("setgid {}", settings.gid.unwrap_or(0)),
            Step::Uid => format!("setuid {}", settings.uid.unwrap_or(0)),
            Step::ParentDeathSignal => "parent_death_signal".to_owned(),
            Step::PassFd(fd) => format!("pass_fd to fd {fd}"),
            Step::Hook(index) => format!("pre_exec hook {}", usize::from(index) + 1),
            Step::UnshareFds => "taking its fds (close_range, SCM_RIGHTS)".to_owned(),
            Step::Signals => "emptying the signal mask".to_owned(),
            Step::ProcessGroup => "setpgid (a process group of its own)".to_owned(),
            Step::MoveFd(fd) => format!("installing fd {fd}"),
        }
    }

    pub(crate) fn classify(&self, source: io::Error) -> SpawnError {
        use nix::libc;
        let errno = source.raw_os_error();
        let unsupported = source.kind() == io::ErrorKind::Unsupported;
        let source = Arc::new(source);
        // exec reports a working directory it cannot enter with the same
        // errnos as a program it cannot find or run: tell them apart.
        let kind = match (errno, &self.current_dir) {
            (Some(libc::ENOENT | libc::ENOTDIR | libc::EACCES), Some(dir)) if !enterable(dir) => {
                SpawnErrorKind::WorkingDirectory {
                    dir: dir.clone(),
                    source,
                }
            }
            (Some(libc::ENOENT), _) => SpawnErrorKind::NotFound { source },
            (Some(libc::EACCES | libc::EPERM), _) => SpawnErrorKind::PermissionDenied { source },
            (Some(libc::E2BIG), _) => {
                let (largest, size) = self.largest_string();
                SpawnErrorKind::ArgumentListTooLong {
                    largest,
                    size,
                    source,
                }
            }
            (Some(libc::EAGAIN | libc::EMFILE | libc::ENFILE | libc::ENOMEM), _) => {
                SpawnErrorKind::ResourceExhausted { source }
            }
            (None, _) if unsupported => SpawnErrorKind::Unsupported { source },
            _ => SpawnErrorKind::Io { source },
        };
        SpawnError::new(self.program_name(), kind)
    }

    /// The largest string the kernel copies for exec: an argument (with its
    /// NUL) or an environment entry `NAME=VALUE` (with its NUL), of the
    /// environment the child would get.
    fn largest_string(&self) -> (String, usize) {
        use std::os::unix::ffi::OsStrExt;
        let mut env: Vec<(OsString, OsString)> = if self.env_clear {
            Vec::new()
        } else {
            std::env::vars_os().collect()
        };
        for (key, value) in &self.env {
            env.retain(|(k, _)| k != key);
            if let Some(value) = value {
                env.push((key.clone(), value.clone()));
            }
        }
        let argv = std::iter::once(&self.program).chain(&self.args);
        let args = argv
            .enumerate()
            .map(|(i, arg)| (format!("argument {i}"), arg.as_bytes().len() + 1));
        let vars = env.iter().map(|(key, value)| {
            (
                format!("environment variable {}", key.to_string_lossy()),
                key.as_bytes().len() + value.as_bytes().len() + 2,
            )
        });
        args.chain(vars)
            .max_by_key(|(_, size)| *size)
            .unwrap_or_else(|| ("argument 0".to_owned(), 1))
    }
}
