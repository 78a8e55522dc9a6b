//! The spawn made through a std `Command` built afresh (so the description
//! stays reusable): for what our own clone (`with_clone.rs`) does not make:
//! a child that inherits the host's fds (`close_fds(false)`), runs the
//! caller's `pre_exec` hooks, or passes more fds than one message carries,
//! and every child on a kernel older than 5.9.
//!
//! `process_group(0)` keeps std on its `posix_spawn` fast path; a
//! `pre_exec` step (which forces the fork path) is added only for
//! `close_fds(true)`, fds to pass, the child's settings, hooks, and the
//! signal reset when the spawning thread is not clean (see
//! `sys/signals.rs`).

use std::os::fd::RawFd;
use std::process::{Command, Stdio};

use super::{End, SpawnSpec};
use crate::sys::cgroup::Cgroup;
use crate::sys::exec::{ChildSettings, Steps};
use crate::SpawnError;

impl End {
    fn into_stdio(self) -> Stdio {
        match self {
            End::Inherit => Stdio::inherit(),
            End::Null => Stdio::null(),
            End::Fd(fd) => Stdio::from(fd),
        }
    }
}

impl SpawnSpec {
    /// Spawns through std; returns the child's pid.
    ///
    /// # Errors
    /// The spawn failed, named by [`step_error`](Self::step_error).
    pub(super) fn spawn_with_std(
        &self,
        ends: [End; 3],
        moves: Vec<(RawFd, RawFd)>,
        settings: ChildSettings,
        drop_groups: bool,
        cgroup: Option<&Cgroup>,
    ) -> Result<u32, SpawnError> {
        let io_err = |source: std::io::Error| self.classify(source);
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        if self.env_clear {
            command.env_clear();
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        if let Some(arg0) = &self.arg0 {
            std::os::unix::process::CommandExt::arg0(&mut command, arg0);
        }
        // A new session makes the child lead a new group; a setpgid before
        // it would make the setsid fail (EPERM).
        if self.process_group && !self.settings.setsid {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        if self.close_fds {
            crate::sys::fd::close_fds_at_exec(&mut command).map_err(io_err)?;
        }
        if self.restore_signals && !crate::sys::signals::host_is_clean() {
            crate::sys::signals::reset_at_exec(&mut command);
        }
        let [stdin, stdout, stderr] = ends;
        command.stdin(stdin.into_stdio());
        command.stdout(stdout.into_stdio());
        command.stderr(stderr.into_stdio());
        // Our steps between fork and exec report which one failed, so
        // that it is named, not told by its errno alone.
        let mut steps = None;
        if !(moves.is_empty() && settings.is_empty() && self.hooks.is_empty()) {
            let report = steps.insert(Steps::new().map_err(io_err)?);
            if !moves.is_empty() {
                crate::sys::exec::pass_fds_at_exec(&mut command, moves, report);
            }
            if !settings.is_empty() {
                crate::sys::exec::settings_at_exec(&mut command, settings, drop_groups, report);
            }
            for (index, hook) in self.hooks.iter().enumerate() {
                crate::sys::exec::hook_at_exec(&mut command, hook.clone(), index, report);
            }
        }
        let spawned = command.spawn().map_err(|source| {
            let step = steps.as_ref().and_then(Steps::failed);
            self.step_error(step, source, cgroup)
        })?;
        Ok(spawned.id())
    }
}
