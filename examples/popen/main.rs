//! `popen`: run a program as a PopenProcess actor and relay its output unchanged.
//!
//! ```text
//! cargo run --release --example popen -- [OPTIONS] [--] PROGRAM [ARG]...
//! ```
//!
//! The child's stdout chunks go to our stdout and its stderr chunks to our
//! stderr, as they arrive, each written by a thread of its own (`sink.rs`)
//! so that a slow reader never delays a timeout or a signal; a chunk is
//! held until it is written, so the child waits for the reader. The child
//! inherits our stdin. popen exits with the child's exit status, 128+N if a
//! signal N killed it, 127 if PROGRAM was not found and 126 if it could not
//! be run for another reason (or popen itself could not start); bad usage
//! exits 2.
//!
//! * `signals.rs`: which signal goes where, and the clean start;
//! * `terminal.rs`: the terminal lent to the child, and job control;
//! * `sink.rs`: writing our stdout and stderr off the event loop;
//! * `duration.rs`: durations as `timeout(1)` reads them.
//!
//! When a reader of our stdout (or stderr) goes away, the child's stream is
//! closed (`CloseStream`): its next write gets SIGPIPE, as in a shell
//! pipeline, and popen, silent, exits with the child's status (141 for
//! SIGPIPE).

mod duration;
mod signals;
mod sink;
mod terminal;

use std::ffi::OsString;
use std::io::{self, ErrorKind, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Duration;

use actix::prelude::*;
use actix_popen::{
    Cancel, CancelWith, Chunk, CloseStream, Exited, Output, Popen, SendSignal, Signal, SpawnError,
    Stream,
};
use actix_rt::signal::unix::{signal, SignalKind};
use bytes::Bytes;
use clap::Parser;
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;

use sink::Sink;
use terminal::Terminal;

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
    /// Cancel the child after DURATION (seconds, or with a unit s, m, h,
    /// d, as timeout(1)); 0 means no timeout.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = |text: &str| duration::parse(text, duration::TIMEOUT))]
    timeout: Option<Duration>,
    /// Grace between the first signal and SIGKILL when the child is
    /// cancelled (at most 365 days).
    #[arg(long, value_name = "DURATION", default_value = "1", allow_hyphen_values = true,
          value_parser = |text: &str| duration::parse(text, duration::GRACE))]
    cancel_timeout: Duration,
    /// Once the child has exited, wait at most DURATION for its output
    /// to reach EOF (a grandchild may hold it open), then stop reading.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true,
          value_parser = |text: &str| duration::parse(text, duration::GRACE))]
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
        Ok(n) if (1..=actix_popen::MAX_BUFSIZE).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{text}` is not a whole number of bytes from 1 to {}",
            actix_popen::MAX_BUFSIZE
        )),
    }
}

/// Prints a line of popen's own on stderr, ignoring a failure: a closed
/// or broken stderr must not stop popen from ending as it should.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// Writes every chunk to our stdout or stderr through its sink; the
/// `Exited` that follows the last chunk in its mailbox ends the run.
struct Relay {
    stdout: Sink,
    stderr: Sink,
    /// The child's streams whose reader on our side went away.
    closed: Vec<Stream>,
    /// A write failed for another reason than EPIPE: the child was cancelled.
    failed: bool,
    exited: Option<oneshot::Sender<Exited>>,
    process: Option<(Recipient<CloseStream>, Recipient<Cancel>)>,
    /// Completes once popen was told to stop and the cancel timeout has
    /// passed since: from then on chunks are no longer held for a reader
    /// that does not read (see `run`).
    give_up: GiveUp,
}

type GiveUp = futures::future::Shared<oneshot::Receiver<()>>;

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Relay {
    fn sink(&self, stream: Stream) -> &Sink {
        match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }

    fn write_failed(&mut self, stream: Stream, err: io::Error) {
        if self.closed.contains(&stream) || self.failed {
            return;
        }
        if err.kind() == ErrorKind::BrokenPipe {
            // As in a shell pipeline: the child's own write fails next.
            self.closed.push(stream);
            if let Some((close, _)) = &self.process {
                close.do_send(CloseStream(stream));
            }
            return;
        }
        // The disk is full, the terminal hung up (EIO), ...: nothing more
        // can be delivered, so stop the child.
        self.failed = true;
        let ours = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        say(format_args!(
            "popen: writing the child's output to {ours}: {err}"
        ));
        if let Some((_, cancel)) = &self.process {
            cancel.do_send(Cancel);
        }
    }
}

impl Handler<Chunk> for Relay {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) -> Self::Result {
        let stream = chunk.stream;
        if self.closed.contains(&stream) || self.failed || self.give_up.peek().is_some() {
            return Box::pin(actix::fut::ready(()));
        }
        // Queued now, in mailbox order; the chunk (and its credit) is held
        // until the sink has written it, or popen gives up on the reader.
        let written = self.sink(stream).write(chunk.data.clone());
        let give_up = self.give_up.clone();
        Box::pin(
            async move {
                let result = match futures::future::select(Box::pin(written), give_up).await {
                    futures::future::Either::Left((result, _)) => result,
                    futures::future::Either::Right(_) => Ok(()),
                };
                drop(chunk);
                result
            }
            .into_actor(self)
            .map(move |result, relay, _ctx| {
                if let Err(err) = result {
                    relay.write_failed(stream, err);
                }
            }),
        )
    }
}

impl Handler<Exited> for Relay {
    type Result = ();

    fn handle(&mut self, exited: Exited, _ctx: &mut Context<Self>) {
        if let Some(done) = self.exited.take() {
            let _ = done.send(exited);
        }
    }
}

/// Gives the relay the child's address once it exists.
#[derive(Message)]
#[rtype(result = "()")]
struct Attach(Recipient<CloseStream>, Recipient<Cancel>);

impl Handler<Attach> for Relay {
    type Result = ();

    fn handle(&mut self, Attach(close, cancel): Attach, _ctx: &mut Context<Self>) {
        self.process = Some((close, cancel));
    }
}

/// Writes the `--report` line, if any, after everything else; resolves
/// once both sinks have written all they were given.
#[derive(Message)]
#[rtype(result = "()")]
struct Finish(Option<String>);

impl Handler<Finish> for Relay {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, Finish(report): Finish, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(line) = report {
            // Ignored if it fails: popen's status says the same.
            // Queued now; its outcome is not awaited.
            drop(self.stderr.write(Bytes::from(line)));
        }
        let stdout = self.stdout.drain();
        let stderr = self.stderr.drain();
        Box::pin(async move {
            futures::future::join(stdout, stderr).await;
        })
    }
}

/// How the run went.
enum Ending {
    Exited(Exited),
    /// The child could not be spawned: popen's status.
    NotRun(u8),
}

async fn run(args: Args, passed_on: Vec<nix::sys::signal::Signal>) -> io::Result<u8> {
    // Listen before the child exists, so that no signal can kill popen and
    // leave the child running. Installing the SIGCHLD handler also
    // replaces a SIG_IGN popen may have inherited.
    let (signals_tx, mut signals) = mpsc::unbounded::<Signal>();
    for nix_signal in passed_on {
        let mut stream = signal(SignalKind::from_raw(nix_signal as i32))?;
        let Some(ours) = Signal::from_raw(nix_signal as i32) else {
            continue;
        };
        let tx = signals_tx.clone();
        actix::spawn(async move {
            while stream.recv().await.is_some() {
                let _ = tx.unbounded_send(ours);
            }
        });
    }
    drop(signals_tx);
    let mut child_changed = signal(SignalKind::child())?;
    let mut continued = signal(SignalKind::from_raw(Signal::SIGCONT.as_raw()))?;

    let (exited_tx, mut exited_rx) = oneshot::channel();
    let (give_up_tx, give_up) = oneshot::channel();
    let give_up = futures::future::FutureExt::shared(give_up);
    let mut give_up_tx = Some(give_up_tx);
    let relay = Relay {
        stdout: Sink::spawn("stdout", io::stdout().as_fd().try_clone_to_owned()?)?,
        stderr: Sink::spawn("stderr", io::stderr().as_fd().try_clone_to_owned()?)?,
        closed: Vec::new(),
        failed: false,
        exited: Some(exited_tx),
        process: None,
        give_up: give_up.clone(),
    }
    .start();
    let cancel_timeout = args.cancel_timeout;
    // Once told to stop, popen waits for a reader that does not read for
    // at most the cancel timeout: then it drops what is not written yet,
    // so that the child's end and popen's exit do not wait on the reader.
    let mut arm_give_up = move || {
        if let Some(tx) = give_up_tx.take() {
            actix::spawn(async move {
                actix_rt::time::sleep(cancel_timeout).await;
                let _ = tx.send(());
            });
        }
    };

    let mut command = args.command.into_iter();
    let program = command.next().unwrap_or_default();
    let mut popen = Popen::new(&program)
        .args(command)
        .bufsize(args.bufsize)
        // Reads that are ready at once go out as one chunk, so a fast child
        // costs one message and one write per 64 KiB, not per read.
        .coalesce(64 * 1024)
        .cancel_timeout(args.cancel_timeout)
        // The child gets what popen inherited (see signals.rs): an empty
        // signal mask, SIGPIPE at its default, and the ignored signals a
        // shell or nohup(1) meant it to ignore.
        .restore_signals(false)
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

    let ending = match popen.start() {
        Err(err) => {
            say(format_args!("popen: {err}"));
            Ending::NotRun(match err {
                SpawnError::NotFound { .. } => 127,
                _ => 126,
            })
        }
        Ok(process) => {
            let addr = process.clone().into_addr();
            relay.do_send(Attach(addr.clone().recipient(), addr.clone().recipient()));
            let pid = process.pid();
            let terminal = pid.and_then(Terminal::open);
            // A child that touched the terminal before this is stopped for
            // it (SIGTTIN, SIGTTOU): the loop below sees the stop and
            // continues it. No SIGCONT is sent blindly: the child may have
            // stopped itself, and that stop must show.
            if let Some(terminal) = &terminal {
                terminal.lend();
            }
            // 0 means no timeout, as in timeout(1).
            let timeout = args.timeout.filter(|timeout| !timeout.is_zero());
            let mut timer = Box::pin(async move {
                match timeout {
                    Some(after) => actix_rt::time::sleep(after).await,
                    None => futures::future::pending().await,
                }
            });
            let mut stopping = false;
            let exited = loop {
                tokio::select! {
                    exited = &mut exited_rx => break exited.ok(),
                    Some(signal) = signals.next() => {
                        log::debug!("popen got {signal}: passing it on");
                        stopping = true;
                        arm_give_up();
                        addr.do_send(CancelWith(signal));
                    }
                    () = &mut timer, if !stopping => {
                        log::debug!("timeout: cancelling the child");
                        stopping = true;
                        arm_give_up();
                        addr.do_send(Cancel);
                    }
                    Some(()) = child_changed.recv() => {
                        if let (Some(terminal), Some(pid)) = (&terminal, pid) {
                            let stop = terminal::stopped(pid);
                            if let Some(stop) = stop.filter(|&stop| terminal.can_lend_for(stop)) {
                                log::debug!("the child stopped ({stop}) for the terminal: lent");
                                let _ = addr.send(SendSignal(Signal::SIGCONT)).await;
                            } else if let Some(stop) = stop {
                                // What the child wrote before it stopped is
                                // in the pipe: let the reader and the sinks
                                // have their turn first (briefly: a reader
                                // that does not read must not keep popen
                                // from stopping), so that it shows before
                                // the shell's "Stopped".
                                tokio::task::yield_now().await;
                                let _ = actix_rt::time::timeout(
                                    Duration::from_millis(100),
                                    relay.send(Finish(None)),
                                )
                                .await;
                                terminal.follow_stop(stop);
                            }
                        }
                    }
                    Some(()) = continued.recv() => {
                        if let Some(terminal) = &terminal {
                            terminal.lend();
                            let _ = addr.send(SendSignal(Signal::SIGCONT)).await;
                        }
                    }
                }
            };
            drop(terminal);
            let Some(exited) = exited else {
                return Err(io::Error::other("the relay stopped before the child ended"));
            };
            // What the child wrote is all queued by now; wait for it to be
            // written, unless popen was told to stop: then only until the
            // cancel timeout has passed since, and not past another signal.
            let report = args
                .report
                .then(|| format!("returncode={}\n", exited.returncode));
            let finished = relay.send(Finish(report));
            tokio::select! {
                _ = finished => {}
                _ = signals.next() => {}
                // Not past the give-up (and a moment for what is written
                // at once, as the report).
                () = async {
                    let _ = give_up.clone().await;
                    actix_rt::time::sleep(Duration::from_millis(100)).await;
                }, if stopping => {}
            }
            Ending::Exited(exited)
        }
    };
    Ok(match ending {
        Ending::Exited(exited) => exited.returncode.shell_status() as u8,
        Ending::NotRun(status) => status,
    })
}

/// File descriptors popen needs beyond those it inherited: the event
/// loop's (epoll, its waker, the signal pipe), two sinks, and the child's
/// pipes, pidfd and pty, with a margin.
const FDS_NEEDED: u64 = 12;

/// Checks that `ulimit -n` leaves popen the fds it needs, so that a low
/// limit gets one clear line here rather than a failure deep inside the
/// runtime (tokio's signal handling panics when it gets no fd).
fn check_fd_headroom() -> Result<(), String> {
    use nix::sys::resource::{getrlimit, Resource};
    let Ok((soft, _hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return Ok(());
    };
    // (less the one `read_dir` itself holds)
    let open =
        std::fs::read_dir("/proc/self/fd").map_or(0, |fds| (fds.count() as u64).saturating_sub(1));
    if soft.saturating_sub(open) < FDS_NEEDED {
        return Err(format!(
            "too few file descriptors: `ulimit -n` is {soft} and {open} are open; \
             popen needs {FDS_NEEDED} more"
        ));
    }
    Ok(())
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
            let mut stderr = io::stderr();
            let _ = write!(stderr, "{text}");
            if !text.contains("Usage:") {
                let _ = writeln!(stderr, "\n{}", Args::command().render_usage());
            }
            std::process::exit(2);
        }
    }
}

fn main() -> ExitCode {
    let args = parse_args();
    let passed_on = signals::start_clean();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    if let Err(err) = check_fd_headroom() {
        say(format_args!("popen: cannot start: {err}"));
        return ExitCode::from(126);
    }
    // Built here rather than by actix, which panics when the runtime
    // cannot be made.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            say(format_args!("popen: cannot start: {err}"));
            return ExitCode::from(126);
        }
    };
    match System::with_tokio_rt(move || runtime).block_on(run(args, passed_on)) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            say(format_args!("popen: cannot run: {err}"));
            ExitCode::from(126)
        }
    }
}
