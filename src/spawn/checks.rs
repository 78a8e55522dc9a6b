//! What is checked before anything is spawned: a description that cannot
//! run as given ([`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig))
//! and a setting the host may not make
//! ([`SpawnErrorKind::NotPermitted`](crate::SpawnErrorKind::NotPermitted)).

use std::ffi::OsStr;

use super::{InputFrom, OutputTo, SpawnSpec};
use crate::options::MAX_PIPE_SIZE;
use crate::settings::Host;

impl SpawnSpec {
    /// Why the spawn could not run as described, if it could not: the
    /// reason of a [`SpawnErrorKind::InvalidConfig`].
    pub(crate) fn invalid(&self) -> Option<String> {
        if matches!(self.stdio.stdout(), OutputTo::MergeIntoStdout) {
            return Some("stdout cannot be merged into itself".to_owned());
        }
        let pty_output = matches!(self.stdio.stdout(), OutputTo::Pty)
            || matches!(self.stdio.stderr(), OutputTo::Pty);
        if matches!(self.stdio.stdin(), InputFrom::Pty) && !pty_output {
            return Some(
                "InputFrom::Pty needs stdout or stderr on the pty (OutputTo::Pty) to be read"
                    .to_owned(),
            );
        }
        if (self.window_size.is_some() || self.echo.is_some()) && !pty_output {
            return Some(
                "terminal(), window_size() and echo() need a stream on a pty (OutputTo::Pty)"
                    .to_owned(),
            );
        }
        if let Some(size) = self
            .pipe_size
            .filter(|&size| size == 0 || size > MAX_PIPE_SIZE)
        {
            return Some(format!(
                "pipe_size must be from 1 to {MAX_PIPE_SIZE} bytes, not {size}"
            ));
        }
        if let Some((file, _)) = self.cgroup_limits.first() {
            if self.cgroup_parent.is_none() {
                return Some(format!("the {file} limit needs Popen::cgroup"));
            }
        }
        if self.settings.controlling_terminal.is_some() && !pty_output {
            return Some("a controlling terminal needs a pty (OutputTo::Pty)".to_owned());
        }
        if self.settings.controlling_terminal.is_some() && !self.settings.setsid {
            return Some("a controlling terminal needs setsid(true)".to_owned());
        }
        self.exec_strings_error()
            .or_else(|| self.extra_fds_error())
            .or_else(|| crate::settings::invalid(&self.settings))
    }

    /// What of the child's settings the host lacks the privilege for, if
    /// anything: `(setting, what it needs)`.
    pub(crate) fn not_permitted(&self) -> Option<(String, String)> {
        if let Some(size) = self.pipe_size {
            let max = crate::sys::fd::pipe_max_size();
            if max.is_some_and(|max| size > max) && !Host::current().can_exceed_pipe_max_size() {
                return Some((
                    format!("pipe_size {size}"),
                    format!(
                        "CAP_SYS_RESOURCE above /proc/sys/fs/pipe-max-size ({} bytes)",
                        max.unwrap_or(0)
                    ),
                ));
            }
        }
        if self.settings.is_empty() {
            return None;
        }
        crate::settings::not_permitted(
            &self.settings,
            &Host::current(),
            crate::sys::exec::current_rlimit,
        )
    }

    /// Why the fds to pass at chosen numbers cannot be, if they cannot.
    fn extra_fds_error(&self) -> Option<String> {
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(u64::MAX, |(soft, _)| soft);
        for (index, (target, _)) in self.extra_fds.iter().enumerate() {
            let stdio = ["stdin", "stdout", "stderr"];
            match usize::try_from(*target) {
                Err(_) => return Some(format!("fd {target} cannot be passed: it is negative")),
                Ok(n) if n < stdio.len() => {
                    return Some(format!(
                        "fd {target} is the child's {}: set it with Popen::{} instead of pass_fd",
                        stdio[n], stdio[n]
                    ))
                }
                Ok(n) if n as u64 >= limit => {
                    let why = format!("the open-file limit (RLIMIT_NOFILE) is {limit}");
                    return Some(format!("fd {target} cannot be passed: {why}"));
                }
                Ok(_) => {}
            }
            if self.extra_fds[..index].iter().any(|(t, _)| t == target) {
                return Some(format!("fd {target} is passed twice"));
            }
        }
        None
    }

    /// What exec could not pass on as given, if anything: a C string ends
    /// at its first NUL, and an environment entry is `NAME=VALUE`, so a
    /// name with `=` in it would set another variable (`PATH=/x:` set to
    /// `y` would give `PATH=/x:=y`).
    fn exec_strings_error(&self) -> Option<String> {
        use std::os::unix::ffi::OsStrExt;
        let has_nul = |s: &OsStr| s.as_bytes().contains(&0);
        if has_nul(&self.program) {
            return Some(format!(
                "the program {:?} contains a NUL byte",
                self.program
            ));
        }
        if let Some(arg0) = self.arg0.as_deref().filter(|a| has_nul(a)) {
            return Some(format!("arg0 {arg0:?} contains a NUL byte"));
        }
        if let Some((index, arg)) = self.args.iter().enumerate().find(|(_, a)| has_nul(a)) {
            // Numbered as in argv, where the program is argument 0.
            return Some(format!(
                "argument {} ({arg:?}) contains a NUL byte",
                index + 1
            ));
        }
        for (name, value) in &self.env {
            if name.is_empty() {
                return Some("an environment variable name is empty".to_owned());
            }
            if name.as_bytes().contains(&b'=') {
                return Some(format!(
                    "the environment variable name {name:?} contains '='"
                ));
            }
            if has_nul(name) {
                return Some(format!(
                    "the environment variable name {name:?} contains a NUL byte"
                ));
            }
            if value.as_deref().is_some_and(has_nul) {
                return Some(format!(
                    "the value of the environment variable {name:?} contains a NUL byte"
                ));
            }
        }
        match &self.current_dir {
            Some(dir) if has_nul(dir.as_os_str()) => {
                Some(format!("the working directory {dir:?} contains a NUL byte"))
            }
            _ => None,
        }
    }
}
