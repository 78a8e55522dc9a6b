//! Keeping every process of a task under control, beyond its process
//! group: a cgroup of its own ([`Popen::cgroup`]) with its limits, and
//! the parent-death signal.

use std::path::Path;
use std::time::Duration;

use super::Popen;

impl Popen {
    /// Runs the task in a cgroup (v2) of its own, made under `parent` at
    /// the spawn: a directory of a cgroup2 mount that the host may write
    /// (a subtree delegated to it, as systemd's `Delegate=yes` gives, or
    /// any writable cgroup2 directory). Linux 4.5 for cgroup2; Linux 5.14
    /// for `cgroup.kill`.
    ///
    /// The child joins it between fork and exec, before any code of its
    /// own runs, so every process it ever starts is in it, also one that
    /// left its process group (`setsid`, a daemon's double fork), unless a
    /// privileged one moves itself to another cgroup (root may write any
    /// cgroup's `cgroup.procs`). So:
    /// * a cancel, a timeout and a System stop signal every process in the
    ///   cgroup with the child's group (the [cancel
    ///   signal](Self::cancel_signal) and SIGCONT, then SIGKILL
    ///   after the cancel timeout, through `cgroup.kill` where the kernel
    ///   has it), each through a pidfd checked to be in the cgroup, never
    ///   a reused pid;
    /// * once the child has exited, whatever is left in its cgroup (a
    ///   daemon it started, one holding its output open) is ended the same
    ///   way, as systemd ends what is left of a service whose main process
    ///   exited (`KillMode=control-group`); the task ends with the child's
    ///   own status;
    /// * the cgroup is removed once empty;
    /// * an OOM kill in it (`oom_kill` of `memory.events`, with the memory
    ///   controller enabled) is reported as
    ///   [`ExitCause::OutOfMemory`](crate::ExitCause::OutOfMemory).
    ///
    /// [`exit_type(ExitType::Cgroup)`](Self::exit_type) makes the task
    /// wait for every process in it instead of ending what is left.
    ///
    /// It is the systemd and MuonTrap answer to what a process group cannot
    /// hold; see the README's "What is left behind". The child joins it
    /// before its exec.
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::Cgroup`](crate::SpawnErrorKind::Cgroup), naming
    /// the path and the reason, when `parent` is not in a cgroup2 mount, is
    /// missing, or cannot be written; nothing is spawned.
    pub fn cgroup(mut self, parent: impl AsRef<Path>) -> Popen {
        self.spec.command.cgroup_parent = Some(parent.as_ref().to_owned());
        self
    }

    /// Caps the memory of every process in the task's cgroup at `bytes`
    /// (`memory.max`; the kernel reclaims, then OOM-kills inside the
    /// cgroup). Needs [`cgroup`](Self::cgroup) and the memory controller
    /// enabled for its children (`+memory` in the parent's
    /// `cgroup.subtree_control`).
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::Cgroup`](crate::SpawnErrorKind::Cgroup) when the
    /// controller is not enabled (the message names the file to change),
    /// and with
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig)
    /// without [`cgroup`](Self::cgroup).
    pub fn memory_max(self, bytes: u64) -> Popen {
        self.cgroup_limit("memory.max", bytes.to_string())
    }

    /// Caps the number of processes and threads in the task's cgroup at
    /// `max` (`pids.max`: a fork beyond it fails with EAGAIN), a guard
    /// against fork bombs. Needs [`cgroup`](Self::cgroup) and the pids
    /// controller; errors as for [`memory_max`](Self::memory_max).
    pub fn pids_max(self, max: u64) -> Popen {
        self.cgroup_limit("pids.max", max.to_string())
    }

    /// Caps the CPU time of the task's cgroup at `quota` per `period`
    /// (`cpu.max`; 50 ms per 100 ms is half a core, 200 ms per 100 ms two
    /// cores). Needs [`cgroup`](Self::cgroup) and the cpu controller;
    /// errors as for [`memory_max`](Self::memory_max), and the kernel
    /// refuses a period outside 1 ms..=1 s or a quota below 1 ms.
    pub fn cpu_max(self, quota: Duration, period: Duration) -> Popen {
        let value = format!("{} {}", quota.as_micros(), period.as_micros());
        self.cgroup_limit("cpu.max", value)
    }

    /// When the task counts as exited (systemd's `ExitType=`):
    /// [`ExitType::Main`](crate::ExitType::Main), the default, at its
    /// child's exit, with what is left in its cgroup ended then; or
    /// [`ExitType::Cgroup`](crate::ExitType::Cgroup), once its cgroup is
    /// empty, with nothing left ended: for a command whose work goes on in
    /// a process it left behind (a `make` that daemonizes a server it then
    /// tests, a script that runs `cmd &` and exits).
    ///
    /// The wait is the `populated` flag of the cgroup's `cgroup.events`,
    /// watched through the reactor (a change wakes it, as
    /// [`cgroup(7)`](https://man7.org/linux/man-pages/man7/cgroups.7.html)
    /// describes; nothing is polled). The exit event, every wait and the
    /// job pool's slot wait for it; the return code is the child's; the
    /// drain timeout ([`drain_timeout`](Self::drain_timeout)) counts from
    /// the moment the cgroup is empty. A cancel or the run timeout still
    /// ends every process in the cgroup.
    ///
    /// ```no_run
    /// use actix_popen::{ExitType, Popen};
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // (`tests/cgroup.rs` runs this where a cgroup2 directory is writable.)
    /// // The task ends when the background job does, not when sh exits.
    /// let done = Popen::new("sh")
    ///     .args(["-c", "(sleep 0.2; echo late) & echo early"])
    ///     .cgroup("/sys/fs/cgroup/jobs")
    ///     .exit_type(ExitType::Cgroup)
    ///     .output()
    ///     .await?;
    /// assert_eq!(done.stdout, "early\nlate\n");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig)
    /// for `ExitType::Cgroup` without [`cgroup`](Self::cgroup).
    pub fn exit_type(mut self, exit_type: crate::ExitType) -> Popen {
        self.spec.options.exit_type = exit_type;
        self
    }

    fn cgroup_limit(mut self, file: &'static str, value: String) -> Popen {
        let limits = &mut self.spec.command.cgroup_limits;
        limits.retain(|(f, _)| *f != file);
        limits.push((file, value));
        self
    }

    /// Has the kernel send `signal` to the child when the host dies
    /// (`PR_SET_PDEATHSIG`, prctl(2), Linux 2.1.57; Go's
    /// `SysProcAttr.Pdeathsig`), off by default. With `Signal::SIGKILL`, a
    /// child cannot outlive a host that was SIGKILLed or crashed, which no
    /// cancel and no shutdown can cover; with SIGTERM it may clean up
    /// first. A host that had died already when the child set it gets the
    /// child the signal at once. It reaches the child only, not the
    /// processes the child started (they may set their own).
    ///
    /// Its pitfall: the kernel sends it when the **thread** that spawned
    /// the child ends, not the process. [`start`](Self::start) spawns on
    /// the calling thread, and so does
    /// [`start_in_arbiter`](Self::start_in_arbiter) (only the actor runs on
    /// the arbiter: a child started from a short-lived thread or a
    /// `spawn_blocking` task gets the signal when that thread ends), a
    /// deferred [`Start`](crate::Start) and the job
    /// pool on the task's arbiter thread, and [`output`](Self::output) or
    /// [`status`](Self::status) outside an actix System on the library's
    /// background thread, which lives as long as the process. So spawn
    /// from a thread that lives as long as the task: an actix arbiter does
    /// until it is stopped (and stopping a System cancels its tasks
    /// anyway); a short-lived `std::thread` does not. The kernel also
    /// clears the setting when the child executes a set-user-ID or
    /// set-group-ID program, and when its credentials change, so it is
    /// made after [`uid`](Self::uid) and [`gid`](Self::gid).
    ///
    /// ```
    /// use actix_popen::{Popen, Signal};
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let code = Popen::new("true")
    ///     .parent_death_signal(Signal::SIGKILL)
    ///     .status()
    ///     .await?;
    /// assert!(code.success());
    /// # Ok(())
    /// # }
    /// ```
    pub fn parent_death_signal(mut self, signal: crate::Signal) -> Popen {
        self.spec.command.settings.parent_death_signal = Some(signal.as_raw());
        self
    }
}
