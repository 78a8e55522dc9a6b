//! What the child sets up for itself between fork and exec: fds at chosen
//! numbers, credentials, session, umask, nice value, resource limits,
//! `argv[0]`, and the caller's own hooks.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::Popen;

impl Popen {
    /// Gives the child `fd` (a `File`, an `OwnedFd`, an end of a
    /// `std::io::pipe`) as its fd number `child_fd`, open across the exec
    /// (Python's `pass_fds`, which keeps the number; Go's `ExtraFiles`,
    /// which gives fd 3 + i; systemd's socket passing gives fd 3 on). The
    /// host keeps `fd` until the task spawned its child, then closes its
    /// copy (see [`OutputTo::Fd`](crate::OutputTo::Fd)); a later call for
    /// the same `child_fd` is refused at the start, not merged. It survives
    /// [`close_fds`](Self::close_fds).
    ///
    /// The fds are moved into place by the child before its exec. Up to
    /// 235 fds go through the crate's own spawn (see
    /// [`close_fds`](Self::close_fds)); more are passed through std's
    /// fork path.
    ///
    /// ```
    /// use std::io::Read;
    /// use actix_popen::Popen;
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (mut reader, writer) = std::io::pipe()?;
    /// let status = Popen::new("sh")
    ///     .args(["-c", "echo to-fd-5 >&5"])
    ///     .pass_fd(5, writer)
    ///     .status()
    ///     .await?;
    /// assert!(status.success());
    /// let mut text = String::new();
    /// reader.read_to_string(&mut text)?; // EOF: the child and the task closed theirs
    /// assert_eq!(text, "to-fd-5\n");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// The start (or [`output`](Self::output), …) fails with
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig)
    /// for a `child_fd` that is negative, 0, 1 or 2 (set those with
    /// [`stdin`](Self::stdin), [`stdout`](Self::stdout),
    /// [`stderr`](Self::stderr)), not below the open-file limit
    /// (RLIMIT_NOFILE), or passed twice.
    pub fn pass_fd(mut self, child_fd: i32, fd: impl Into<OwnedFd>) -> Popen {
        self.spec
            .command
            .extra_fds
            .push((child_fd, Arc::new(fd.into())));
        self
    }

    /// Runs the child as user `uid` (std's `CommandExt::uid`, Go's
    /// `Credential.Uid`, portage's `spawn(uid=)`). Unless
    /// [`groups`](Self::groups) sets them, the child's supplementary groups
    /// are emptied first when the host may (CAP_SETGID), as std does for a
    /// root host: a child meant to run as `nobody` keeps none of root's
    /// groups. Set [`gid`](Self::gid) too: the group id is not derived
    /// from the user.
    ///
    /// The files of [`InputFrom::file`](crate::InputFrom::file) and
    /// [`OutputTo::file`](crate::OutputTo::file) are opened by the host,
    /// with the host's privileges, before the child changes its
    /// credentials (as `sudo -u user cmd <in >out` does); a file created
    /// for the output is owned by `uid`.
    ///
    /// Like every setting up to [`pre_exec`](Self::pre_exec), it is made
    /// by the child before its exec (with
    /// [`close_fds(false)`](Self::close_fds), that moves the spawn from
    /// std's `posix_spawn` to its fork path; BENCHMARKS.md, §2). The child
    /// sets, in order: its
    /// [`cgroup`](Self::cgroup), a new session and its controlling
    /// terminal, the resource limits, the nice value, the umask, the
    /// supplementary groups, the gid, the uid, the parent-death signal,
    /// then runs the hooks.
    ///
    /// ```
    /// use actix_popen::Popen;
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let me = nix::unistd::getuid().as_raw();
    /// let done = Popen::new("id").arg("-u").uid(me).output().await?;
    /// assert_eq!(done.stdout, format!("{me}\n"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::NotPermitted`](crate::SpawnErrorKind::NotPermitted)
    /// when the host is not `uid` already and lacks CAP_SETUID.
    pub fn uid(mut self, uid: u32) -> Popen {
        self.spec.command.settings.uid = Some(uid);
        self
    }

    /// Runs the child with group id `gid` (std's `CommandExt::gid`, Go's
    /// `Credential.Gid`); see [`uid`](Self::uid) for when it is set.
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::NotPermitted`](crate::SpawnErrorKind::NotPermitted)
    /// when the host's group is not `gid` already and it lacks CAP_SETGID.
    pub fn gid(mut self, gid: u32) -> Popen {
        self.spec.command.settings.gid = Some(gid);
        self
    }

    /// Gives the child exactly these supplementary groups (`setgroups(2)`;
    /// Go's `Credential.Groups`, Python's `extra_groups`, portage's
    /// `spawn(groups=)`); an empty list empties them.
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::NotPermitted`](crate::SpawnErrorKind::NotPermitted)
    /// without CAP_SETGID, and with
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig)
    /// for more than 65536 groups (`NGROUPS_MAX`).
    pub fn groups(mut self, groups: impl IntoIterator<Item = u32>) -> Popen {
        self.spec.command.settings.groups = Some(groups.into_iter().collect());
        self
    }

    /// Whether the child starts a new session (`setsid(2)`; Go's
    /// `SysProcAttr.Setsid`, Python's `start_new_session`), `false` by
    /// default. It then leads a new session and a new process group, with
    /// no controlling terminal: a hangup of the host's terminal does not
    /// reach it, nor does its Ctrl-C. Signals and the cancel go to its
    /// group, whatever [`process_group`](Self::process_group) says.
    pub fn setsid(mut self, enabled: bool) -> Popen {
        self.spec.command.settings.setsid = enabled;
        self
    }

    /// Sets the child's file mode creation mask (`umask(2)`, as `0o022`;
    /// Python's `umask`, portage's `spawn(umask=)`).
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig)
    /// for bits beyond `0o777`.
    pub fn umask(mut self, mask: u32) -> Popen {
        self.spec.command.settings.umask = Some(mask);
        self
    }

    /// Sets the child's nice value, from -20 (most favoured) to 19
    /// (`setpriority(2)`; erlexec's `{nice, N}`). The value is absolute,
    /// not added to the host's as `nice(1)` does.
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig)
    /// outside -20..=19, and with
    /// [`SpawnErrorKind::NotPermitted`](crate::SpawnErrorKind::NotPermitted)
    /// below the host's own value without CAP_SYS_NICE or an
    /// `RLIMIT_NICE` that allows it.
    pub fn nice(mut self, nice: i32) -> Popen {
        self.spec.command.settings.nice = Some(nice);
        self
    }

    /// Sets the child's soft and hard limit of `resource` (`setrlimit(2)`;
    /// Python's `preexec_fn` with `resource.setrlimit`, erlexec's limits);
    /// [`Rlimit::INFINITY`](crate::Rlimit::INFINITY) for none. A later call
    /// for the same resource replaces the earlier one. Units are the man
    /// page's: bytes for sizes, seconds for `Cpu`.
    ///
    /// ```
    /// use actix_popen::{Popen, Rlimit};
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let done = Popen::new("sh")
    ///     .args(["-c", "ulimit -n; ulimit -c"])
    ///     .rlimit(Rlimit::Nofile, 64, 64)
    ///     .rlimit(Rlimit::Core, 0, 0)
    ///     .output()
    ///     .await?;
    /// assert_eq!(done.stdout, "64\n0\n");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig)
    /// for a soft limit above the hard one, and with
    /// [`SpawnErrorKind::NotPermitted`](crate::SpawnErrorKind::NotPermitted)
    /// for a hard limit above the host's without CAP_SYS_RESOURCE.
    pub fn rlimit(mut self, resource: crate::Rlimit, soft: u64, hard: u64) -> Popen {
        let rlimits = &mut self.spec.command.settings.rlimits;
        rlimits.retain(|(r, _, _)| *r != resource);
        rlimits.push((resource, soft, hard));
        self
    }

    /// Sets the child's `argv[0]`, what it sees as its own name (std's
    /// `CommandExt::arg0`, Go's `Args[0]`, Python's `executable` the other
    /// way round); the program run is still [`Popen::new`]'s.
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig)
    /// for a NUL byte in it.
    pub fn arg0(mut self, arg0: impl AsRef<OsStr>) -> Popen {
        self.spec.command.arg0 = Some(arg0.as_ref().to_owned());
        self
    }

    /// Runs `hook` in the child between fork and exec, after every setting
    /// of this description (std's `CommandExt::pre_exec`, Python's
    /// `preexec_fn`, portage's `spawn(pre_exec=)`). An error it returns
    /// fails the spawn with
    /// [`SpawnErrorKind::ChildSetup`](crate::SpawnErrorKind::ChildSetup)
    /// naming the hook (`pre_exec hook 2` for the second added), and
    /// nothing runs; only the error's errno crosses the fork (std passes
    /// nothing else; an error without one arrives as EINVAL). Hooks run in
    /// the order they were added. A task with a hook is spawned through
    /// std's fork path (the hook runs in a copy of the host), not the
    /// crate's own spawn: its cost grows with the fds the host holds (see
    /// [`close_fds`](Self::close_fds)).
    ///
    /// The hook is an `Fn`, not std's `FnMut`: a `Popen` is `Clone` and can
    /// be started many times, so every clone shares the hook.
    ///
    /// ```
    /// use actix_popen::Popen;
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // SAFETY: alarm(2) is async-signal-safe and touches no memory.
    /// let popen = unsafe {
    ///     Popen::new("true").pre_exec(|| {
    ///         nix::libc::alarm(0);
    ///         Ok(())
    ///     })
    /// };
    /// assert!(popen.status().await?.success());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Safety
    /// As for std's `pre_exec`: the hook runs in a copy of the host made
    /// by fork, in which only the thread that spawned exists. It must only
    /// make async-signal-safe calls (signal-safety(7)): no allocation, no
    /// lock (another thread may have held it at the fork), no logging, no
    /// `println!`. It must not close or change fds the library wired for the
    /// child's stdin, stdout and stderr, or the host's.
    pub unsafe fn pre_exec<F>(mut self, hook: F) -> Popen
    where
        F: Fn() -> std::io::Result<()> + Send + Sync + 'static,
    {
        self.spec
            .command
            .hooks
            .push(crate::sys::exec::Hook(Arc::new(hook)));
        self
    }
}
