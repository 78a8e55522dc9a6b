//! Where the child's stdin, stdout and stderr come from and go
//! ([`InputFrom`], [`OutputTo`]), as a [`Popen`](crate::Popen) describes
//! them.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

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
