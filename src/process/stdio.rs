//! The child's stdin fed by messages, and the control of its output
//! streams while the task runs.

use std::io;

use actix::prelude::*;

use super::lifecycle::Lifecycle;
use super::PopenProcess;
use crate::messages::{
    Chunk, CloseReader, CloseStdin, CloseStream, OutputStream, Resize, WriteStdin,
};
use crate::ResizeError;

impl Handler<WriteStdin> for PopenProcess {
    type Result = ResponseFuture<io::Result<()>>;

    /// Queues the bytes for the child's stdin; resolves once they are all
    /// in the pipe.
    fn handle(&mut self, WriteStdin(data): WriteStdin, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(&last) = data.last() {
            // A terminal ends a line at Enter, which xterm.js and most
            // emulators send as `\r` (the pty's ICRNL makes it `\n`).
            self.pty_line_open = !matches!(last, b'\n' | b'\r');
        }
        let done = self.stdin.write(data);
        Box::pin(async move {
            done.await.unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the child's stdin was closed",
                ))
            })
        })
    }
}

impl Handler<Chunk> for PopenProcess {
    type Result = ResponseFuture<()>;

    /// Feeds an upstream chunk to the child's stdin. The chunk (and so its
    /// upstream credit) is held until its bytes are in the pipe, which is
    /// what carries backpressure from this child back to the upstream one.
    /// A chunk that cannot be written (the child exited: EPIPE) is dropped.
    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) -> Self::Result {
        let done = self.stdin.feed(chunk);
        Box::pin(async move {
            let _ = done.await;
        })
    }
}

impl Handler<CloseStdin> for PopenProcess {
    type Result = ();

    /// Closes the child's stdin once every write queued before has been
    /// written: the child reads EOF.
    fn handle(&mut self, _msg: CloseStdin, _ctx: &mut Context<Self>) {
        self.close_stdin();
    }
}

impl PopenProcess {
    /// Ends the child's input after what is queued: closes a pipe; on a
    /// terminal (`InputFrom::Pty`), types Ctrl-D, twice when a line is
    /// unfinished (the first one ends the line), which is how a terminal
    /// says end of input; the terminal itself stays.
    pub(super) fn close_stdin(&mut self) {
        if self.stdin_on_pty {
            let eof: &'static [u8] = if self.pty_line_open {
                b"\x04\x04"
            } else {
                b"\x04"
            };
            self.pty_line_open = false;
            drop(self.stdin.write(bytes::Bytes::from_static(eof)));
        } else {
            self.stdin.queue_close();
        }
    }
}

impl Handler<Resize> for PopenProcess {
    type Result = Result<(), ResizeError>;

    /// Sets the pty's window size (see [`Resize`]).
    fn handle(&mut self, msg: Resize, _ctx: &mut Context<Self>) -> Self::Result {
        let Lifecycle::Running(running) = &self.lifecycle else {
            return Err(ResizeError::NoTerminal);
        };
        let Some((_, terminal)) = &running.terminal else {
            return Err(ResizeError::NoTerminal);
        };
        crate::sys::pty::resize(terminal, msg.rows, msg.cols).map_err(ResizeError::Io)
    }
}

impl Handler<CloseReader> for PopenProcess {
    type Result = ();

    /// Stops reading the child's output and closes our read ends (see
    /// [`CloseReader`] and the [lifecycle](crate::PopenProcess#lifecycle)). Sent before a deferred
    /// start, it takes effect as the child starts.
    fn handle(&mut self, _msg: CloseReader, _ctx: &mut Context<Self>) {
        match &mut self.lifecycle {
            Lifecycle::Pending { close_output, .. } => *close_output = true,
            Lifecycle::Running(running) => {
                if let Some(reader) = running.reader() {
                    reader.do_send(CloseReader);
                }
                self.hang_up_terminal(None);
            }
            Lifecycle::Ended { .. } => {}
        }
    }
}

impl PopenProcess {
    /// Our read end of the pty is being closed (all of the output, or
    /// `stream`, the pty's): the task's other copies of the master go too
    /// (the one kept to resize it, and the stdin writer of
    /// [`InputFrom::Pty`](crate::InputFrom::Pty)), so that the terminal
    /// hangs up (the child's writes fail with EIO, and its session gets
    /// SIGHUP), as when a terminal window is closed.
    pub(super) fn hang_up_terminal(&mut self, stream: Option<OutputStream>) {
        let Lifecycle::Running(running) = &mut self.lifecycle else {
            return;
        };
        let ours = matches!(&running.terminal, Some((pty, _)) if stream.is_none_or(|s| s == *pty));
        if ours {
            running.terminal = None;
            if self.stdin_on_pty {
                self.stdin.close();
            }
        }
    }
}

impl Handler<CloseStream> for PopenProcess {
    type Result = ();

    fn handle(&mut self, msg: CloseStream, _ctx: &mut Context<Self>) {
        if let Some(reader) = self.running().and_then(|r| r.reader()) {
            reader.do_send(msg);
        }
        self.hang_up_terminal(Some(msg.0));
    }
}

/// Completes once no address of the actor is left (every handle,
/// `Addr` and `Recipient` of it dropped).
///
/// actix wakes an actor's context when the last sender of its mailbox is
/// dropped, and polls every future spawned in the context each time it is
/// woken, so checking `connected()` on each poll is enough: no waker of
/// our own is needed.
pub(super) struct WhenDisconnected;

impl ActorFuture<PopenProcess> for WhenDisconnected {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        _act: &mut PopenProcess,
        ctx: &mut Context<PopenProcess>,
        _task: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if ctx.connected() {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    }
}
