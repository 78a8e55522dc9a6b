//! `popen`: run a program as a PopenProcess actor and relay its output unchanged.
//!
//! ```text
//! cargo run --release --example popen -- [OPTIONS] [--] PROGRAM [ARG]...
//! ```
//!
//! The child's stdout chunks go to our stdout and its stderr chunks to our
//! stderr, as they arrive; the child inherits our stdin. When that stdin is
//! the terminal and we are its foreground job, the child's process group
//! gets the terminal while it runs (as a shell does), so it can read it;
//! Ctrl-C then reaches the child's group directly. SIGINT or SIGTERM
//! sent to popen cancels the child (SIGTERM to its process group, SIGKILL
//! after the cancel timeout). popen exits with the child's exit status,
//! 128+N if a signal N killed it, 127 if PROGRAM was not found and 126 if it
//! could not be run for another reason; bad usage exits 2.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Duration;

use actix::prelude::*;
use actix_popen::{Cancel, Chunk, Exited, Output, Popen, SpawnError, Stream};
use actix_rt::signal::unix::{signal, SignalKind};
use clap::Parser;
use futures::channel::oneshot;

/// Run PROGRAM as a PopenProcess actor, relaying its output unchanged.
#[derive(Debug, Parser)]
#[command(
    name = "popen",
    version,
    override_usage = "popen [OPTIONS] [--] PROGRAM [ARG]..."
)]
struct Args {
    /// Bytes asked for by each read() of the child's output.
    #[arg(long, default_value_t = 4096, value_name = "N", value_parser = parse_bufsize)]
    bufsize: usize,
    /// Cancel the child after SECS seconds (decimals allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    timeout: Option<Duration>,
    /// Grace between SIGTERM and SIGKILL when the child is cancelled.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, default_value = "1")]
    cancel_timeout: Duration,
    /// Once the child has exited, wait at most SECS seconds for its output
    /// to reach EOF (a grandchild may hold it open), then stop reading.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    drain_timeout: Option<Duration>,
    /// Send the child's stderr into the same pipe as its stdout.
    #[arg(long, conflicts_with = "pty")]
    merge_stderr: bool,
    /// Give the child a pseudo-terminal for stdout and stderr; everything
    /// it writes comes out on popen's stdout.
    #[arg(long)]
    pty: bool,
    /// After the child ends, print `returncode=N` as the last line on stderr.
    #[arg(long)]
    report: bool,
    /// The program to run, and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "PROGRAM [ARG]..."
    )]
    command: Vec<OsString>,
}

fn parse_bufsize(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "`{text}` is not a whole number of bytes of at least 1"
        )),
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| format!("`{text}` is not a number of seconds of at least 0"))
}

/// Writes every chunk to our stdout or stderr, unbuffered; the `Exited`
/// that follows the last chunk in its mailbox ends the run.
struct Relay {
    stdout: File,
    stderr: File,
    failed: bool,
    done: Option<oneshot::Sender<Exited>>,
    process: Option<Recipient<Cancel>>,
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Relay {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        if self.failed {
            return;
        }
        let out = match chunk.stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        if let Err(err) = out.write_all(&chunk.data) {
            // Our reader went away (EPIPE) or the disk is full: nothing
            // more can be delivered, so stop the child.
            self.failed = true;
            let _ = writeln!(
                self.stderr,
                "popen: writing the child's {:?}: {err}",
                chunk.stream
            );
            if let Some(process) = &self.process {
                process.do_send(Cancel);
            }
        }
    }
}

impl Handler<Exited> for Relay {
    type Result = ();

    fn handle(&mut self, exited: Exited, _ctx: &mut Context<Self>) {
        if let Some(done) = self.done.take() {
            let _ = done.send(exited);
        }
    }
}

/// Sets the child's process up for the run; the relay learns its address
/// once it exists.
#[derive(Message)]
#[rtype(result = "()")]
struct Attach(Recipient<Cancel>);

impl Handler<Attach> for Relay {
    type Result = ();

    fn handle(&mut self, Attach(process): Attach, _ctx: &mut Context<Self>) {
        self.process = Some(process);
    }
}

fn own(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<File> {
    Ok(File::from(fd.try_clone_to_owned()?))
}

async fn run(args: Args) -> io::Result<u8> {
    // Listen for SIGINT/SIGTERM before the child exists, so neither can
    // kill popen and leave the child running.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;

    let (done_tx, done_rx) = oneshot::channel();
    let relay = Relay {
        stdout: own(io::stdout().as_fd())?,
        stderr: own(io::stderr().as_fd())?,
        failed: false,
        done: Some(done_tx),
        process: None,
    }
    .start();

    let mut command = args.command.into_iter();
    let program = command.next().unwrap_or_default();
    let mut popen = Popen::new(&program)
        .args(command)
        .bufsize(args.bufsize)
        // Reads that are ready at once go out as one chunk, so a fast child
        // costs one message and one write per 64 KiB, not per read.
        .coalesce(64 * 1024)
        .cancel_timeout(args.cancel_timeout)
        .subscribe(relay.clone().recipient())
        .exit_listener(relay.clone().recipient());
    if let Some(timeout) = args.drain_timeout {
        popen = popen.drain_timeout(timeout);
    }
    if args.pty {
        popen = popen.pty();
    } else if args.merge_stderr {
        popen = popen.stderr(Output::MergeIntoStdout);
    }

    let process = match popen.start() {
        Ok(process) => process,
        Err(err) => {
            eprintln!("popen: {err}");
            return Ok(match err {
                SpawnError::NotFound { .. } => 127,
                _ => 126,
            });
        }
    };
    relay.do_send(Attach(process.clone().into_addr().recipient()));
    // At a terminal, the child's own process group must be the foreground
    // one, or reading the terminal would stop it (SIGTTIN).
    let terminal = process.pid().and_then(Foreground::hand_to);

    let cancel = process.clone();
    actix::spawn(async move {
        let timeout = args.timeout;
        let triggers: [futures::future::LocalBoxFuture<'static, ()>; 3] = [
            Box::pin(async move {
                interrupt.recv().await;
            }),
            Box::pin(async move {
                terminate.recv().await;
            }),
            Box::pin(async move {
                match timeout {
                    Some(after) => actix::clock::sleep(after).await,
                    None => futures::future::pending().await,
                }
            }),
        ];
        futures::future::select_all(triggers).await;
        cancel.do_send(Cancel);
    });

    // The relay hears of the exit after it has written the last chunk.
    let exited = done_rx
        .await
        .map_err(|_| io::Error::other("the relay stopped before the child ended"))?;
    drop(terminal);
    if args.report {
        eprintln!("returncode={}", exited.returncode);
    }
    Ok(exited.returncode.shell_status() as u8)
}

/// The terminal on our stdin, lent to the child's process group while it
/// runs, as a shell does for a foreground job; given back on drop.
struct Foreground {
    ours: nix::unistd::Pid,
}

impl Foreground {
    fn hand_to(child: u32) -> Option<Foreground> {
        use nix::sys::signal::{SigSet, Signal};
        use nix::unistd::{getpgrp, isatty, tcgetpgrp, tcsetpgrp, Pid};
        let stdin = io::stdin();
        if !isatty(&stdin).unwrap_or(false) || tcgetpgrp(&stdin).ok()? != getpgrp() {
            return None;
        }
        // A background group may change the foreground group only with
        // SIGTTOU blocked; we will be in the background when we give the
        // terminal back.
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        ttou.thread_block().ok()?;
        let group = Pid::from_raw(child as i32);
        tcsetpgrp(&stdin, group).ok()?;
        // The child may have read the terminal before it was its own, and
        // been stopped for it: let it go on.
        let _ = nix::sys::signal::killpg(group, Signal::SIGCONT);
        Some(Foreground { ours: getpgrp() })
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = nix::unistd::tcsetpgrp(io::stdin(), self.ours);
    }
}

/// Parses the command line; on bad usage prints the error and the usage
/// line (clap omits it for some errors) and exits 2.
fn parse_args() -> Args {
    use clap::{error::ErrorKind, CommandFactory};
    match Args::try_parse() {
        Ok(args) => args,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            err.exit()
        }
        Err(err) => {
            let text = err.render().to_string();
            eprint!("{}", text);
            if !text.contains("Usage:") {
                eprintln!("\n{}", Args::command().render_usage());
            }
            std::process::exit(2);
        }
    }
}

fn main() -> ExitCode {
    let args = parse_args();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match System::new().block_on(run(args)) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            eprintln!("popen: {err}");
            ExitCode::from(126)
        }
    }
}
