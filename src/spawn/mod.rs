//! The spawn: what `std::process::Command` is given ([`SpawnSpec`]) and
//! the spawn itself. `stdio.rs` holds where the child's streams go,
//! `checks.rs` what is checked before a spawn, `errors.rs` how a failed one
//! is named ([`SpawnError`]).

mod checks;
mod errors;
mod stdio;
mod with_clone;
mod with_std;

pub(crate) use stdio::Stdio3;
pub use stdio::{InputFrom, OutputTo};

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::messages::OutputStream;
use crate::settings::Host;
use crate::sys::cgroup::Cgroup;
use crate::sys::child::Child;
use crate::sys::exec::{ChildSettings, Hook};
use crate::sys::fd::pipe_sized;
use crate::sys::pty::open_pty;
use crate::sys::spawn::Outcome;
use crate::{SpawnError, SpawnErrorKind};

/// What the host keeps open for a spawn that passes fds, and the moves the
/// child makes, `(copy, number)`.
type PassedFds = (Vec<OwnedFd>, Vec<(std::os::fd::RawFd, std::os::fd::RawFd)>);

/// One of the child's fds 0, 1 and 2, as the spawn makes it.
#[derive(Debug)]
pub(crate) enum End {
    /// The host's own fd at that number, as std's `Stdio::inherit`: none
    /// if the host has none there, or one that is close-on-exec (the
    /// library's own, when the host had closed its fd).
    Inherit,
    /// `/dev/null`.
    Null,
    Fd(OwnedFd),
}

/// A child just spawned, with our ends of its pipes.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) reads: Vec<(OutputStream, OwnedFd)>,
    pub(crate) stdin: Option<OwnedFd>,
    /// What the child's piped output ends link to in /proc, to name who
    /// holds them open in warnings.
    pub(crate) outputs: Vec<String>,
    /// Our end of the child's pseudo-terminal, to resize it, and the
    /// stream its output is read as.
    pub(crate) terminal: Option<(OutputStream, OwnedFd)>,
    /// The task's cgroup, which the child joined.
    pub(crate) cgroup: Option<Arc<Cgroup>>,
}

/// What the child is spawned from: the part of a [`Popen`](crate::Popen)
/// that `std::process::Command` is given.
#[derive(Debug, Clone)]
pub(crate) struct SpawnSpec {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) env_clear: bool,
    pub(crate) current_dir: Option<PathBuf>,
    /// `None` until set: each way of running a task has its own default
    /// (see [`Stdio3`]).
    pub(crate) stdio: Stdio3,
    pub(crate) process_group: bool,
    pub(crate) close_fds: bool,
    pub(crate) restore_signals: bool,
    /// Host fds the child gets at chosen numbers: `(child's fd, fd)`.
    pub(crate) extra_fds: Vec<(i32, Arc<OwnedFd>)>,
    /// What the child sets for itself between fork and exec.
    pub(crate) settings: ChildSettings,
    /// The child's `argv[0]`, if not the program.
    pub(crate) arg0: Option<OsString>,
    /// The caller's hooks, run in the child last before exec.
    pub(crate) hooks: Vec<Hook>,
    /// Where the task's own cgroup is made (`Popen::cgroup`), and the
    /// limits written in it: (control file, value).
    pub(crate) cgroup_parent: Option<PathBuf>,
    pub(crate) cgroup_limits: Vec<(&'static str, String)>,
    /// The pseudo-terminal's window size, `(rows, columns)`, and echo.
    pub(crate) window_size: Option<(u16, u16)>,
    pub(crate) echo: Option<bool>,
    /// The room of each pipe made for the child, in bytes
    /// ([`Popen::pipe_size`](crate::Popen::pipe_size)); `None` for the
    /// kernel's default.
    pub(crate) pipe_size: Option<usize>,
}

impl SpawnSpec {
    pub(crate) fn new(program: OsString) -> SpawnSpec {
        SpawnSpec {
            program,
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            current_dir: None,
            stdio: Stdio3::default(),
            process_group: true,
            close_fds: true,
            restore_signals: true,
            extra_fds: Vec::new(),
            settings: ChildSettings::default(),
            arg0: None,
            hooks: Vec::new(),
            cgroup_parent: None,
            cgroup_limits: Vec::new(),
            window_size: None,
            echo: None,
            pipe_size: None,
        }
    }

    pub(crate) fn program_name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    /// Whether the child leads a process group of its own (a new session
    /// makes it lead one too).
    pub(crate) fn own_group(&self) -> bool {
        self.process_group || self.settings.setsid
    }

    /// Opens `path`, relative to the child's working directory, for the
    /// child's fd `fd` (0, 1 or 2; `output` as for
    /// [`open_for_child`](crate::sys::fd::open_for_child)).
    fn open_file(&self, fd: i32, path: &Path, output: Option<bool>) -> Result<OwnedFd, SpawnError> {
        let full = match &self.current_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        };
        let creation = crate::sys::fd::Creation {
            umask: self.settings.umask,
            uid: self.settings.uid,
            gid: self.settings.gid,
        };
        crate::sys::fd::open_for_child(&full, output, creation).map_err(|source| {
            let source = Arc::new(source);
            let kind = match &self.current_dir {
                // The working directory itself is what is missing.
                Some(dir) if path.is_relative() && !errors::enterable(dir) => {
                    SpawnErrorKind::WorkingDirectory {
                        dir: dir.clone(),
                        source,
                    }
                }
                _ => SpawnErrorKind::File {
                    fd,
                    path: full,
                    source,
                },
            };
            SpawnError::new(self.program_name(), kind)
        })
    }

    /// The moves that give the child each fd of `extra_fds` at its number,
    /// `(copy, number)`, and what the host must keep open until the spawn
    /// returns.
    ///
    /// Two things could be overwritten in the child when an fd is moved to
    /// its number: another fd to be moved, not moved yet, and std's
    /// close-on-exec pipe that reports a failed exec (a step that failed
    /// after the move would then look like a run that exited with 1, and
    /// write into the passed fd). So every chosen number still free is
    /// held in the host for the spawn (std's pipe and our copies can then
    /// not land there), and the copies the child's fds are made from are
    /// at numbers no fd is chosen for.
    fn pass_fds(&self) -> Result<PassedFds, SpawnError> {
        let Some((_, first)) = self.extra_fds.first() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let io_err = |source: io::Error| self.classify(source);
        let chosen: Vec<i32> = self.extra_fds.iter().map(|(target, _)| *target).collect();
        let mut keep = Vec::with_capacity(chosen.len() * 2);
        for &target in &chosen {
            let held = crate::sys::fd::dup_from(first.as_fd(), target).map_err(io_err)?;
            // Another number: `target` is taken already, and stays so.
            if std::os::fd::AsRawFd::as_raw_fd(&held) == target {
                keep.push(held);
            }
        }
        let mut moves = Vec::with_capacity(chosen.len());
        for (target, fd) in &self.extra_fds {
            let mut copy = crate::sys::fd::dup_from(fd.as_fd(), 3).map_err(io_err)?;
            // Only if a chosen number was freed by another thread since.
            while chosen.contains(&std::os::fd::AsRawFd::as_raw_fd(&copy)) {
                let next = crate::sys::fd::dup_from(fd.as_fd(), 3).map_err(io_err)?;
                keep.push(std::mem::replace(&mut copy, next));
            }
            moves.push((std::os::fd::AsRawFd::as_raw_fd(&copy), *target));
            keep.push(copy);
        }
        Ok((keep, moves))
    }

    /// Spawns the child, with our own close-on-exec pipes and pty: made by
    /// our own clone when it can (`with_clone.rs`), else by std's
    /// `Command` (`with_std.rs`). Returns the child, our read ends and our
    /// end of its stdin, non-blocking mode still unset.
    ///
    /// The caller validated the task first ([`TaskSpec::validate`](crate::process::TaskSpec::validate),
    /// at the start or the prepare), once.
    pub(crate) fn spawn(&self) -> Result<Spawned, SpawnError> {
        // A host that ignores SIGCHLD would have the kernel reap our
        // children behind our back.
        crate::sys::signals::restore_sigchld();
        let io_err = |source: io::Error| self.classify(source);
        // One pseudo-terminal for every stream on it, opened first, sized
        // and set up before the child exists.
        let uses_pty = matches!(self.stdio.stdin(), InputFrom::Pty)
            || matches!(self.stdio.stdout(), OutputTo::Pty)
            || matches!(self.stdio.stderr(), OutputTo::Pty);
        let mut pty: Option<(Option<OwnedFd>, OwnedFd)> = None; // (master until read, slave)
        let mut terminal = None;
        if uses_pty {
            let (master, slave) = open_pty().map_err(io_err)?;
            crate::sys::pty::set_up(&master, &slave, self.window_size, self.echo)
                .map_err(io_err)?;
            let stream = if matches!(self.stdio.stdout(), OutputTo::Pty) {
                OutputStream::Stdout
            } else {
                OutputStream::Stderr
            };
            terminal = Some((stream, master.try_clone().map_err(io_err)?));
            pty = Some((Some(master), slave));
        }
        let mut stdin = None;
        let stdin_end = match self.stdio.stdin() {
            InputFrom::Pty => match &pty {
                Some((Some(master), slave)) => {
                    stdin = Some(master.try_clone().map_err(io_err)?);
                    End::Fd(slave.try_clone().map_err(io_err)?)
                }
                _ => End::Null,
            },
            InputFrom::Inherit => End::Inherit,
            InputFrom::Null => End::Null,
            InputFrom::Pipe => {
                let (read, write) = pipe_sized(self.pipe_size).map_err(io_err)?;
                stdin = Some(write);
                End::Fd(read)
            }
            InputFrom::File(path) => End::Fd(self.open_file(0, &path, None)?),
            InputFrom::Fd(fd) => End::Fd(fd.try_clone().map_err(io_err)?),
        };

        let mut reads = Vec::new();
        // What the child's piped output ends link to in /proc.
        let mut outputs: Vec<String> = Vec::new();
        let mut link = |fd: &OwnedFd| {
            if let Some(link) = crate::sys::proc::fd_link(std::os::fd::AsRawFd::as_raw_fd(fd)) {
                if !outputs.contains(&link) {
                    outputs.push(link);
                }
            }
        };
        let mut open_pty_slave = |reads: &mut Vec<(OutputStream, OwnedFd)>,
                                  stream: OutputStream|
         -> io::Result<OwnedFd> {
            let Some((master, slave)) = &mut pty else {
                return Err(io::Error::other("no pty was opened"));
            };
            // The first stream on the pty is the one its reads are told as.
            if let Some(master) = master.take() {
                reads.push((stream, master));
            }
            slave.try_clone()
        };
        let mut output = |to: OutputTo, stream: OutputStream, reads: &mut Vec<_>| {
            let fd = match (to, stream) {
                // The host's own: nothing to make (see `End::Inherit`).
                (OutputTo::Inherit, _) => return Ok(End::Inherit),
                (to, _) => to,
            };
            let fd = match fd {
                OutputTo::Pipe => {
                    let (read, write) = pipe_sized(self.pipe_size).map_err(io_err)?;
                    reads.push((stream, read));
                    link(&write);
                    write
                }
                OutputTo::Pty => {
                    let slave = open_pty_slave(reads, stream).map_err(io_err)?;
                    link(&slave);
                    slave
                }
                OutputTo::File { path, append } => {
                    let fd = if stream == OutputStream::Stdout { 1 } else { 2 };
                    self.open_file(fd, &path, Some(append))?
                }
                OutputTo::Fd(fd) => fd.try_clone().map_err(io_err)?,
                OutputTo::Inherit | OutputTo::Null | OutputTo::MergeIntoStdout => {
                    return Ok(End::Null)
                }
            };
            Ok::<_, SpawnError>(End::Fd(fd))
        };
        let stdout_end = output(self.stdio.stdout(), OutputStream::Stdout, &mut reads)?;
        let stderr_end = match self.stdio.stderr() {
            OutputTo::MergeIntoStdout => match &stdout_end {
                End::Fd(fd) => End::Fd(fd.try_clone().map_err(io_err)?),
                End::Null => End::Null,
                // The host's stdout, if the child would inherit one: open
                // and not close-on-exec (else no stream, as /dev/null).
                End::Inherit => match crate::sys::fd::inheritable(1) {
                    Some(fd) => End::Fd(fd),
                    None => End::Null,
                },
            },
            to => output(to, OutputStream::Stderr, &mut reads)?,
        };
        // For a spawn through std: the chosen numbers still free are held
        // before the cgroup's fd and std's own report pipe are opened, so
        // that neither lands on one (the stdio ends opened above are
        // installed by std before the moves). Kept open until the spawn
        // returns: the copies the child's fds are made from, and the
        // chosen numbers held.
        let (_held, moves) = self.pass_fds()?;
        // After the fds to pass, so that its fd is at no chosen number.
        let cgroup = match &self.cgroup_parent {
            Some(parent) => Some(Arc::new(
                Cgroup::create(parent, &self.cgroup_limits).map_err(|(path, source)| {
                    SpawnError::new(
                        self.program_name(),
                        SpawnErrorKind::Cgroup {
                            path,
                            source: Arc::new(source),
                        },
                    )
                })?,
            )),
            None => None,
        };
        let mut settings = self.settings.clone();
        settings.join_cgroup = cgroup.as_ref().map(|cgroup| cgroup.procs_fd());
        if settings.controlling_terminal.is_some() {
            // The child's first stream on the pty.
            settings.controlling_terminal = if matches!(self.stdio.stdin(), InputFrom::Pty) {
                Some(0)
            } else if matches!(self.stdio.stdout(), OutputTo::Pty) {
                Some(1)
            } else {
                Some(2)
            };
        }
        // With a uid and no groups, the host's supplementary groups are
        // not kept (as std does for a root host).
        let drop_groups = self.settings.uid.is_some()
            && self.settings.groups.is_none()
            && Host::current().can_set_groups();
        let ends = [stdin_end, stdout_end, stderr_end];
        let by_clone = match self.clone_can() {
            true => self.spawn_with_clone(&ends, &settings, drop_groups)?,
            false => None,
        };
        let pid = match by_clone {
            Some(Outcome::Spawned(pid)) => pid,
            Some(Outcome::Failed { step, error }) => {
                return Err(self.step_error(step, error, cgroup.as_deref()));
            }
            Some(Outcome::NotSent) | None => {
                self.spawn_with_std(ends, moves, settings, drop_groups, cgroup.as_deref())?
            }
        };
        // Our copies of the child's ends are closed (the spawn took them),
        // so EOF arrives when the child (and its children) close theirs.
        drop(pty);
        let child = Child::new(pid, self.own_group()).map_err(io_err)?;
        log::debug!(
            "spawned {:?} {:?} as pid {}",
            self.program,
            self.args,
            child.pid()
        );
        Ok(Spawned {
            child,
            reads,
            stdin,
            outputs,
            terminal,
            cgroup,
        })
    }
}
