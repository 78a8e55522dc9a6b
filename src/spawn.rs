//! The spawn: what `std::process::Command` is given ([`SpawnSpec`]), how
//! the child's stdin, stdout and stderr are wired ([`InputFrom`],
//! [`OutputTo`]), and the spawn itself, with its failures named
//! ([`SpawnError`]).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::messages::OutputStream;
use crate::sys::child::Child;
use crate::sys::fd::pipe;
use crate::sys::pty::open_pty;
use crate::{SpawnError, SpawnErrorKind};

/// A child just spawned, with our ends of its pipes.
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) reads: Vec<(OutputStream, OwnedFd)>,
    pub(crate) stdin: Option<OwnedFd>,
    /// What the child's piped output ends link to in /proc, to name who
    /// holds them open in warnings.
    pub(crate) outputs: Vec<String>,
}

/// Where one of the child's output streams goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputTo {
    /// A pipe read by the task; what the child writes arrives as [`Chunk`](crate::Chunk)s.
    #[default]
    Pipe,
    /// The host's own stdout or stderr.
    Inherit,
    /// `/dev/null`.
    Null,
    /// For stderr only: the same destination as stdout (portage's
    /// `stderr=STDOUT`, the shell's `2>&1`). With stdout a pipe, both
    /// arrive interleaved as [`OutputStream::Stdout`](crate::OutputStream::Stdout) chunks.
    MergeIntoStdout,
    /// A pseudo-terminal read by the task. Streams that are both `Pty`
    /// share one terminal, and arrive as [`OutputStream::Stdout`](crate::OutputStream::Stdout) chunks. The
    /// terminal translates `\n` into `\r\n`, as any terminal does, and is
    /// not the child's controlling terminal.
    Pty,
}

/// Where the child's stdin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputFrom {
    /// The host's own stdin (portage's default).
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe written by the task: send [`WriteStdin`](crate::WriteStdin) (or
    /// [`Chunk`](crate::Chunk)s, from an upstream process) and [`CloseStdin`](crate::CloseStdin)
    /// to the actor. Once every address of the actor is dropped (every
    /// [`ProcessHandle`](crate::ProcessHandle), `Addr` and `Recipient`),
    /// nobody can write any more and the pipe is closed after what was
    /// queued: the child reads EOF and is not killed (as std and tokio
    /// close a child's stdin when its handle is dropped; see the
    /// [lifecycle](crate::PopenProcess#lifecycle)).
    Pipe,
}

/// Where the child's stdin, stdout and stderr go, each `None` until set.
/// [`Popen::start`](crate::Popen::start) fills the unset ones with
/// `subprocess.Popen`'s defaults (stdin inherited, stdout and stderr
/// piped to the task); [`Popen::output`](crate::Popen::output) and
/// [`Popen::status`](crate::Popen::status) with their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stdio3 {
    pub(crate) stdin: Option<InputFrom>,
    pub(crate) stdout: Option<OutputTo>,
    pub(crate) stderr: Option<OutputTo>,
}

impl Stdio3 {
    pub(crate) fn stdin(&self) -> InputFrom {
        self.stdin.unwrap_or(InputFrom::Inherit)
    }

    pub(crate) fn stdout(&self) -> OutputTo {
        self.stdout.unwrap_or(OutputTo::Pipe)
    }

    pub(crate) fn stderr(&self) -> OutputTo {
        self.stderr.unwrap_or(OutputTo::Pipe)
    }

    /// Fills the streams not set with these.
    pub(crate) fn or(self, stdin: InputFrom, stdout: OutputTo, stderr: OutputTo) -> Stdio3 {
        Stdio3 {
            stdin: self.stdin.or(Some(stdin)),
            stdout: self.stdout.or(Some(stdout)),
            stderr: self.stderr.or(Some(stderr)),
        }
    }
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
            close_fds: false,
            restore_signals: true,
        }
    }

    pub(crate) fn program_name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    /// Why the spawn could not run as described, if it could not: the
    /// reason of a [`SpawnErrorKind::InvalidConfig`].
    pub(crate) fn invalid(&self) -> Option<String> {
        if self.stdio.stdout() == OutputTo::MergeIntoStdout {
            return Some("stdout cannot be merged into itself".to_owned());
        }
        self.exec_strings_error()
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

    /// Spawns the child: a std `Command` built afresh (so the description
    /// stays reusable), with our own close-on-exec pipes and pty. Returns
    /// the child, our read ends and our end of its stdin, non-blocking mode
    /// still unset.
    ///
    /// `process_group(0)` keeps std on its `posix_spawn` fast path; a
    /// `pre_exec` step (which forces the fork path) is added only for
    /// `close_fds(true)`, and for the signal reset when the spawning thread
    /// is not clean (see `sys/signals.rs`).
    ///
    /// The caller validated the task first ([`TaskSpec::validate`](crate::process::TaskSpec::validate),
    /// at the start or the prepare), once.
    pub(crate) fn spawn(&self) -> Result<Spawned, SpawnError> {
        // A host that ignores SIGCHLD would have the kernel reap our
        // children behind our back.
        crate::sys::signals::restore_sigchld();
        let io_err = |source: io::Error| self.classify(source);
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
        if self.process_group {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        if self.close_fds {
            crate::sys::fd::close_range_works().map_err(io_err)?;
            crate::sys::fd::close_fds_at_exec(&mut command);
        }
        if self.restore_signals && !crate::sys::signals::host_is_clean() {
            crate::sys::signals::reset_at_exec(&mut command);
        }
        let mut stdin = None;
        command.stdin(match self.stdio.stdin() {
            InputFrom::Inherit => Stdio::inherit(),
            InputFrom::Null => Stdio::null(),
            InputFrom::Pipe => {
                let (read, write) = pipe().map_err(io_err)?;
                stdin = Some(write);
                Stdio::from(read)
            }
        });

        let mut reads = Vec::new();
        let mut pty: Option<OwnedFd> = None; // the slave end, once opened
        let mut open_pty_slave = |reads: &mut Vec<(OutputStream, OwnedFd)>,
                                  stream: OutputStream|
         -> io::Result<OwnedFd> {
            if let Some(slave) = &pty {
                return slave.try_clone();
            }
            let (master, slave) = open_pty()?;
            reads.push((stream, master));
            let copy = slave.try_clone()?;
            pty = Some(slave);
            Ok(copy)
        };
        let stdout_fd: Option<OwnedFd> = match self.stdio.stdout() {
            OutputTo::Pipe => {
                let (read, write) = pipe().map_err(io_err)?;
                reads.push((OutputStream::Stdout, read));
                Some(write)
            }
            OutputTo::Pty => {
                Some(open_pty_slave(&mut reads, OutputStream::Stdout).map_err(io_err)?)
            }
            OutputTo::Inherit => Some(io::stdout().as_fd().try_clone_to_owned().map_err(io_err)?),
            OutputTo::Null | OutputTo::MergeIntoStdout => None,
        };
        let mut stderr_link = None;
        let stderr_stdio = match self.stdio.stderr() {
            OutputTo::Pipe => {
                let (read, write) = pipe().map_err(io_err)?;
                reads.push((OutputStream::Stderr, read));
                stderr_link = crate::sys::proc::fd_link(std::os::fd::AsRawFd::as_raw_fd(&write));
                Stdio::from(write)
            }
            OutputTo::Pty => {
                Stdio::from(open_pty_slave(&mut reads, OutputStream::Stderr).map_err(io_err)?)
            }
            OutputTo::Inherit => Stdio::inherit(),
            OutputTo::Null => Stdio::null(),
            OutputTo::MergeIntoStdout => match &stdout_fd {
                Some(fd) => Stdio::from(fd.try_clone().map_err(io_err)?),
                None => Stdio::null(),
            },
        };
        let mut outputs: Vec<String> = Vec::new();
        for fd in stdout_fd.iter().chain(&pty) {
            if let Some(link) = crate::sys::proc::fd_link(std::os::fd::AsRawFd::as_raw_fd(fd)) {
                if !outputs.contains(&link) {
                    outputs.push(link);
                }
            }
        }
        outputs.extend(stderr_link);
        command.stderr(stderr_stdio);
        command.stdout(match stdout_fd {
            Some(fd) => Stdio::from(fd),
            None => Stdio::null(),
        });

        let spawned = command.spawn().map_err(io_err)?;
        // Dropping the command closes our copies of the child's ends, so
        // EOF arrives when the child (and its children) close theirs.
        drop(command);
        drop(pty);
        let child = Child::new(spawned.id(), self.process_group).map_err(io_err)?;
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
        })
    }

    fn classify(&self, source: io::Error) -> SpawnError {
        use nix::libc;
        let errno = source.raw_os_error();
        let unsupported = source.kind() == io::ErrorKind::Unsupported;
        let source = Arc::new(source);
        // exec reports a working directory it cannot enter with the same
        // errnos as a program it cannot find or run: tell them apart.
        let kind = match (errno, &self.current_dir) {
            (Some(libc::ENOENT | libc::ENOTDIR | libc::EACCES), Some(dir))
                if !(nix::unistd::access(dir.as_path(), nix::unistd::AccessFlags::X_OK)
                    .is_ok()
                    && dir.is_dir()) =>
            {
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
