//! The child on a pseudo-terminal of its own: [`Popen::terminal`], its
//! window size and echo.

use super::Popen;
use crate::spawn::{InputFrom, OutputTo};

impl Popen {
    /// Runs the child on a pseudo-terminal of `rows` × `cols` characters
    /// that is its stdin, stdout and stderr **and its controlling
    /// terminal**, in a new session (erlexec's `pty` with `winsz`; what
    /// `ssh -t` and `script(1)` give a program), so that programs that
    /// insist on a terminal (`ssh`, `sudo`, `python3 -i`, `top`, `less`)
    /// run. What the task is sent ([`WriteStdin`](crate::WriteStdin)) is
    /// typed at the terminal: its line discipline echoes it (see
    /// [`echo`](Self::echo)), `\x03` (Ctrl-C) sends SIGINT to the
    /// terminal's foreground process group, and `\x04` (Ctrl-D) at the start
    /// of a line ends the input. What the child writes arrives as
    /// [`OutputStream::Stdout`](crate::OutputStream::Stdout) chunks, with
    /// `\r\n` line ends. [`Resize`](crate::Resize) changes the size later
    /// (the child gets SIGWINCH).
    ///
    /// It sets `stdin(InputFrom::Pty)`, `stdout(OutputTo::Pty)`,
    /// `stderr(OutputTo::Pty)`, [`setsid(true)`](Self::setsid) and
    /// [`window_size`](Self::window_size); the child makes the terminal its
    /// controlling terminal between fork and exec (`TIOCSCTTY`), which
    /// costs std's `posix_spawn` path. When the session leader (the child)
    /// exits, the kernel sends SIGHUP to the terminal's foreground group;
    /// [`CloseReader`](crate::CloseReader) hangs the terminal up (SIGHUP
    /// to the session), and [`CloseStdin`](crate::CloseStdin) types
    /// Ctrl-D.
    ///
    /// What a terminal does, it does here too: a line typed longer than
    /// 4095 bytes is cut to that (canonical mode); the child, leading its
    /// session, is in an orphaned process group, so the kernel discards the
    /// SIGTSTP of a Ctrl-Z meant for it (a shell in it puts its jobs in
    /// groups of their own, where Ctrl-Z works).
    ///
    /// A cancel sends SIGHUP first, not SIGTERM (see
    /// [`cancel_signal`](Self::cancel_signal)): what the kernel sends the
    /// session leader when its terminal hangs up, and what an interactive
    /// shell, which ignores SIGTERM, exits on. bash passes it on to its
    /// jobs; dash does not, and its background jobs, in groups of their
    /// own, outlive it unless the task has a [`cgroup`](Self::cgroup).
    ///
    /// ```
    /// use actix_popen::Popen;
    ///
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let done = Popen::new("sh")
    ///     .args(["-c", "stty size; [ -t 0 ] && exec 3</dev/tty && echo has-a-tty"])
    ///     .terminal(24, 80)
    ///     .output()
    ///     .await?;
    /// assert_eq!(done.stdout, "24 80\r\nhas-a-tty\r\n");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig)
    /// when a later call undoes what it needs (`setsid(false)`, or no
    /// stream left on the pty).
    pub fn terminal(mut self, rows: u16, cols: u16) -> Popen {
        self.spec.command.settings.controlling_terminal = Some(0);
        self.stdin(InputFrom::Pty)
            .stdout(OutputTo::Pty)
            .stderr(OutputTo::Pty)
            .setsid(true)
            .window_size(rows, cols)
    }

    /// The window size of the child's pseudo-terminal, in rows and columns
    /// of characters (0 × 0, unknown, by default); see
    /// [`terminal`](Self::terminal) and [`Resize`](crate::Resize).
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig)
    /// when no stream is on a pty.
    pub fn window_size(mut self, rows: u16, cols: u16) -> Popen {
        self.spec.command.window_size = Some((rows, cols));
        self
    }

    /// Whether the pseudo-terminal echoes what is typed at it (on by
    /// default, as any terminal; off for a password prompt's input, as
    /// `stty -echo`).
    ///
    /// # Errors
    /// The start fails with
    /// [`SpawnErrorKind::InvalidConfig`](crate::SpawnErrorKind::InvalidConfig)
    /// when no stream is on a pty.
    pub fn echo(mut self, enabled: bool) -> Popen {
        self.spec.command.echo = Some(enabled);
        self
    }
}
