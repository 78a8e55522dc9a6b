//! The spawn: what `std::process::Command` is given ([`SpawnSpec`]), how
//! the child's stdin, stdout and stderr are wired ([`InputFrom`],
//! [`OutputTo`]), and the spawn itself, with its failures named
//! ([`SpawnError`]).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::messages::OutputStream;
use crate::options::MAX_PIPE_SIZE;
use crate::settings::Host;
use crate::sys::cgroup::Cgroup;
use crate::sys::child::Child;
use crate::sys::exec::{ChildSettings, Hook, Steps};
use crate::sys::fd::pipe_sized;
use crate::sys::pty::open_pty;
use crate::{SpawnError, SpawnErrorKind};

/// Whether `dir` is a directory the host may enter.
fn enterable(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::X_OK).is_ok() && dir.is_dir()
}

/// What the host keeps open for a spawn that passes fds, and the moves the
/// child makes, `(copy, number)`.
type PassedFds = (Vec<OwnedFd>, Vec<(std::os::fd::RawFd, std::os::fd::RawFd)>);

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

/// Where one of the child's output streams goes.
///
/// ```
/// use actix_popen::{OutputTo, Popen};
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("output-to-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// // `echo one >out.log; echo two >>out.log`, in `dir`.
/// let one = Popen::new("echo").arg("one").current_dir(&dir);
/// one.stdout(OutputTo::file("out.log")).status().await?;
/// let two = Popen::new("echo").arg("two").current_dir(&dir);
/// two.stdout(OutputTo::append("out.log")).status().await?;
/// assert_eq!(std::fs::read_to_string(dir.join("out.log"))?, "one\ntwo\n");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
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
    /// The file at `path`, which the host opens at the spawn: created if
    /// missing, then emptied, or with `append` written at its end (the
    /// shell's `>` and `>>`). A relative path is taken from the child's
    /// working directory ([`Popen::current_dir`](crate::Popen::current_dir)),
    /// as in `cd dir && cmd >file`. Nothing is read by the task: no chunk
    /// arrives. Build it with [`OutputTo::file`] or [`OutputTo::append`].
    ///
    /// The host opens it with its own privileges, before the child changes
    /// its credentials (as `sudo -u user cmd >file` does). A file it
    /// creates is made as the child would have made it: mode 0666 less the
    /// child's [`umask`](crate::Popen::umask) (the host's when unset), and
    /// owned by the child's [`uid`](crate::Popen::uid) and
    /// [`gid`](crate::Popen::gid) when set.
    ///
    /// The open does not wait: a FIFO with no reader fails the spawn
    /// (ENXIO) rather than block the host.
    File {
        /// The file.
        path: PathBuf,
        /// Write at the end of the file rather than empty it first.
        append: bool,
    },
    /// An open file description of the host's: a file, the write end of a
    /// pipe, a socket (tokio's `Stdio::from(File)`, Go's `cmd.Stdout = f`).
    /// The child gets a duplicate. The task closes its own copy once the
    /// child is spawned (or the task ends without one); the copies held by
    /// clones of the [`Popen`](crate::Popen) stay open until those are
    /// dropped, so the reader of a pipe sees EOF once the child and every
    /// holder closed it. Build it with [`OutputTo::fd`]. Nothing is read by
    /// the task.
    Fd(Arc<OwnedFd>),
}

impl OutputTo {
    /// The file at `path`, emptied first (the shell's `>`); see
    /// [`OutputTo::File`].
    pub fn file(path: impl Into<PathBuf>) -> OutputTo {
        OutputTo::File {
            path: path.into(),
            append: false,
        }
    }

    /// The file at `path`, written at its end (the shell's `>>`); see
    /// [`OutputTo::File`].
    pub fn append(path: impl Into<PathBuf>) -> OutputTo {
        OutputTo::File {
            path: path.into(),
            append: true,
        }
    }

    /// An fd of the host's (a `File`, an `OwnedFd`, the write end of a
    /// `std::io::pipe`); see [`OutputTo::Fd`].
    pub fn fd(fd: impl Into<OwnedFd>) -> OutputTo {
        OutputTo::Fd(Arc::new(fd.into()))
    }
}

/// Where the child's stdin comes from.
///
/// ```
/// use actix_popen::{InputFrom, Popen};
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // `sort <words`
/// let words = std::env::temp_dir().join(format!("input-from-doc-{}", std::process::id()));
/// std::fs::write(&words, "b\na\n")?;
/// let sorted = Popen::new("sort").stdin(InputFrom::file(&words)).output().await?;
/// assert_eq!(sorted.stdout, "a\nb\n");
/// # std::fs::remove_file(&words)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
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
    /// The pseudo-terminal the child's output goes to ([`OutputTo::Pty`],
    /// which stdout or stderr must be): the task writes what it is sent
    /// ([`WriteStdin`](crate::WriteStdin)) to the terminal, as typed
    /// keys, which its line discipline echoes and edits as a terminal does
    /// (`\x04` at the start of a line is Ctrl-D: end of input). On a
    /// controlling terminal ([`Popen::terminal`](crate::Popen::terminal))
    /// `\x03` (Ctrl-C) sends SIGINT to its foreground group; on a pty that
    /// is no process's controlling terminal ([`Popen::pty`](crate::Popen::pty))
    /// it is a byte like any other. [`CloseStdin`](crate::CloseStdin) types
    /// Ctrl-D (twice after an unfinished line).
    Pty,
    /// The file at this path, which the host opens read-only at the spawn
    /// (the shell's `<`), with its own privileges, as for
    /// [`OutputTo::File`]. A relative path is taken from the child's
    /// working directory. A FIFO is refused (a
    /// [`SpawnErrorKind::File`](crate::SpawnErrorKind::File) error): its
    /// open waits for a writer, which the host must not do, and opened
    /// without waiting it would give the child EOF at once; open it
    /// yourself with `File::open` (which waits) and pass it with
    /// [`InputFrom::fd`]. Build it with [`InputFrom::file`].
    File(PathBuf),
    /// An open file description of the host's: a file, the read end of a
    /// pipe, a socket (tokio's `Stdio::from(File)`, Go's `cmd.Stdin = f`).
    /// The child gets a duplicate; the task's own copy is closed as for
    /// [`OutputTo::Fd`]. Build it with [`InputFrom::fd`].
    Fd(Arc<OwnedFd>),
}

impl InputFrom {
    /// The file at `path`; see [`InputFrom::File`].
    pub fn file(path: impl Into<PathBuf>) -> InputFrom {
        InputFrom::File(path.into())
    }

    /// An fd of the host's (a `File`, an `OwnedFd`, the read end of a
    /// `std::io::pipe`); see [`InputFrom::Fd`].
    pub fn fd(fd: impl Into<OwnedFd>) -> InputFrom {
        InputFrom::Fd(Arc::new(fd.into()))
    }
}

/// Where the child's stdin, stdout and stderr go, each `None` until set.
/// [`Popen::start`](crate::Popen::start) fills the unset ones with
/// `subprocess.Popen`'s defaults (stdin inherited, stdout and stderr
/// piped to the task); [`Popen::output`](crate::Popen::output) and
/// [`Popen::status`](crate::Popen::status) with their own.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stdio3 {
    pub(crate) stdin: Option<InputFrom>,
    pub(crate) stdout: Option<OutputTo>,
    pub(crate) stderr: Option<OutputTo>,
}

impl Stdio3 {
    pub(crate) fn stdin(&self) -> InputFrom {
        self.stdin.clone().unwrap_or(InputFrom::Inherit)
    }

    pub(crate) fn stdout(&self) -> OutputTo {
        self.stdout.clone().unwrap_or(OutputTo::Pipe)
    }

    pub(crate) fn stderr(&self) -> OutputTo {
        self.stderr.clone().unwrap_or(OutputTo::Pipe)
    }

    /// Fills the streams not set with these.
    pub(crate) fn fill(&mut self, stdin: InputFrom, stdout: OutputTo, stderr: OutputTo) {
        self.stdin.get_or_insert(stdin);
        self.stdout.get_or_insert(stdout);
        self.stderr.get_or_insert(stderr);
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
            close_fds: false,
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

    /// Whether the child leads a process group of its own (a new session
    /// makes it lead one too).
    pub(crate) fn own_group(&self) -> bool {
        self.process_group || self.settings.setsid
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
                Some(dir) if path.is_relative() && !enterable(dir) => {
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
        if let Some(arg0) = &self.arg0 {
            std::os::unix::process::CommandExt::arg0(&mut command, arg0);
        }
        // A new session makes the child lead a new group; a setpgid before
        // it would make the setsid fail (EPERM).
        if self.process_group && !self.settings.setsid {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        if self.close_fds {
            crate::sys::fd::close_range_works().map_err(io_err)?;
            crate::sys::fd::close_fds_at_exec(&mut command);
        }
        if self.restore_signals && !crate::sys::signals::host_is_clean() {
            crate::sys::signals::reset_at_exec(&mut command);
        }
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
        command.stdin(match self.stdio.stdin() {
            InputFrom::Pty => match &pty {
                Some((Some(master), slave)) => {
                    stdin = Some(master.try_clone().map_err(io_err)?);
                    Stdio::from(slave.try_clone().map_err(io_err)?)
                }
                _ => Stdio::null(),
            },
            InputFrom::Inherit => Stdio::inherit(),
            InputFrom::Null => Stdio::null(),
            InputFrom::Pipe => {
                let (read, write) = pipe_sized(self.pipe_size).map_err(io_err)?;
                stdin = Some(write);
                Stdio::from(read)
            }
            InputFrom::File(path) => Stdio::from(self.open_file(0, &path, None)?),
            InputFrom::Fd(fd) => Stdio::from(fd.try_clone().map_err(io_err)?),
        });

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
            let fd = match to {
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
                OutputTo::Inherit => match stream {
                    OutputStream::Stdout => io::stdout().as_fd().try_clone_to_owned(),
                    OutputStream::Stderr => io::stderr().as_fd().try_clone_to_owned(),
                }
                .map_err(io_err)?,
                OutputTo::File { path, append } => {
                    let fd = if stream == OutputStream::Stdout { 1 } else { 2 };
                    self.open_file(fd, &path, Some(append))?
                }
                OutputTo::Fd(fd) => fd.try_clone().map_err(io_err)?,
                OutputTo::Null | OutputTo::MergeIntoStdout => return Ok(None),
            };
            Ok::<_, SpawnError>(Some(fd))
        };
        let stdout_fd = output(self.stdio.stdout(), OutputStream::Stdout, &mut reads)?;
        let stderr_stdio = match self.stdio.stderr() {
            OutputTo::MergeIntoStdout => match &stdout_fd {
                Some(fd) => Stdio::from(fd.try_clone().map_err(io_err)?),
                None => Stdio::null(),
            },
            to => match output(to, OutputStream::Stderr, &mut reads)? {
                Some(fd) => Stdio::from(fd),
                None => Stdio::null(),
            },
        };
        command.stderr(stderr_stdio);
        command.stdout(match stdout_fd {
            Some(fd) => Stdio::from(fd),
            None => Stdio::null(),
        });
        // Our steps between fork and exec, named, so that a failed one is
        // reported as itself, not by its errno alone. The fds to pass come
        // first: the report pipe must not be at a chosen number either.
        // Kept open until the spawn returns: the copies the child's fds
        // are made from, and the chosen numbers held.
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
        let mut steps = None;
        if !(moves.is_empty() && settings.is_empty() && self.hooks.is_empty()) {
            let report = steps.insert(Steps::new().map_err(io_err)?);
            if !moves.is_empty() {
                crate::sys::exec::pass_fds_at_exec(&mut command, moves, report);
            }
            if !settings.is_empty() {
                let drop_groups = self.settings.uid.is_some()
                    && self.settings.groups.is_none()
                    && Host::current().can_set_groups();
                if settings.controlling_terminal.is_some() {
                    // The child's first stream on the pty.
                    settings.controlling_terminal = if matches!(self.stdio.stdin(), InputFrom::Pty)
                    {
                        Some(0)
                    } else if matches!(self.stdio.stdout(), OutputTo::Pty) {
                        Some(1)
                    } else {
                        Some(2)
                    };
                }
                crate::sys::exec::settings_at_exec(
                    &mut command,
                    std::mem::take(&mut settings),
                    drop_groups,
                    report,
                );
            }
            for (index, hook) in self.hooks.iter().enumerate() {
                let name = format!("pre_exec hook {}", index + 1);
                crate::sys::exec::hook_at_exec(&mut command, hook.clone(), name, report);
            }
        }
        let spawned =
            command
                .spawn()
                .map_err(|source| match steps.as_ref().and_then(Steps::failed) {
                    Some(step) if step == crate::sys::exec::JOIN_CGROUP => {
                        self.join_error(cgroup.as_deref(), source)
                    }
                    Some(step) => SpawnError::new(
                        self.program_name(),
                        SpawnErrorKind::ChildSetup {
                            step: step.to_owned(),
                            source: Arc::new(source),
                        },
                    ),
                    None => self.classify(source),
                })?;
        drop(steps);
        // Dropping the command closes our copies of the child's ends, so
        // EOF arrives when the child (and its children) close theirs.
        drop(command);
        drop(pty);
        let child = Child::new(spawned.id(), self.own_group()).map_err(io_err)?;
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

    /// The child could not join its cgroup: a [`SpawnErrorKind::Cgroup`]
    /// naming the cgroup's `cgroup.procs`, with the usual cause when the
    /// kernel refused the move.
    fn join_error(&self, cgroup: Option<&Cgroup>, source: io::Error) -> SpawnError {
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
