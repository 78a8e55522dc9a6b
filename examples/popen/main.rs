//! `popen`: run a program as a PopenProcess actor and relay its output unchanged.
//!
//! ```text
//! cargo run --release --example popen -- [OPTIONS] [--] PROGRAM [ARG]...
//! ```
//!
//! The child's stdout chunks go to our stdout and its stderr chunks to our
//! stderr, as they arrive, each written by a thread of its own (one for
//! both when they are the same terminal or pipe; none for a regular file or
//! `/dev/null`, which wait for no reader: `sink.rs`) so that a slow reader
//! never delays a timeout or a signal; a chunk is held until it is written,
//! so the child waits for the reader. The child
//! inherits our stdin. popen exits with the child's exit status, 127 if
//! PROGRAM was not found and 126 if it could not be run for another reason
//! (or popen itself could not start), 1 if output could not be written; bad
//! usage exits 2. A child killed by signal N ends popen by signal N (a
//! shell shows 128+N), as timeout(1) does, except after `--timeout`, when
//! popen exits 128+N.
//!
//! * `signals.rs`: which signal goes where, and the clean start;
//! * `relay.rs`: the chunks to the sinks, and readers that go away;
//! * `terminal.rs`: the terminal lent to the child, and job control;
//! * `sink.rs`: writing our stdout and stderr off the event loop;
//! * `duration.rs`: durations as `timeout(1)` reads them.
//!
//! When a reader of our stdout (or stderr) goes away, the child's stream is
//! closed (`CloseStream`): its next write gets SIGPIPE, as in a shell
//! pipeline, and popen, silent, exits with the child's status (141 for
//! SIGPIPE).

mod duration;
mod relay;
mod signals;
mod sink;
mod terminal;

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_popen::{Cancel, CancelWith, Exited, OutputStream, OutputTo, Popen, SendSignal, Signal};
use actix_rt::signal::unix::{signal, SignalKind};
use clap::Parser;
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use nix::sys::signal::SigSet;

use relay::{Attach, Finish, Relay};
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
    /// Room, in bytes, of the pipes made for the child (F_SETPIPE_SZ; the
    /// kernel's default is 65536, and a size above
    /// /proc/sys/fs/pipe-max-size needs CAP_SYS_RESOURCE).
    #[arg(long, value_name = "N", value_parser = parse_pipe_size)]
    pipe_size: Option<usize>,
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

fn parse_pipe_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=actix_popen::MAX_PIPE_SIZE).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{text}` is not a whole number of bytes from 1 to {}",
            actix_popen::MAX_PIPE_SIZE
        )),
    }
}

/// Prints a line of popen's own on stderr, ignoring a failure: a closed
/// or broken stderr must not stop popen from ending as it should.
///
/// SIGTTOU is blocked for the write: while the terminal is lent to the
/// child, popen's group is in the background, and under `stty tostop` the
/// line would otherwise stop popen.
fn say(line: std::fmt::Arguments<'_>) {
    let mut ttou = SigSet::empty();
    ttou.add(nix::sys::signal::Signal::SIGTTOU);
    let old = ttou.thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK);
    let _ = writeln!(io::stderr(), "{line}");
    if let Ok(old) = old {
        let _ = old.thread_set_mask();
    }
}

/// How the run went.
enum Ending {
    Exited {
        exited: Exited,
        /// popen's `--timeout` cancelled the child.
        timed_out: bool,
        /// A write error lost some of the child's output.
        lost: bool,
    },
    /// The child could not be spawned: popen's status.
    NotRun(u8),
}

impl Ending {
    /// How popen ends: an exit status, or the signal that killed the child
    /// to be raised on popen itself (see [`exit_as`]).
    fn outcome(&self) -> (u8, Option<i32>) {
        match self {
            Ending::NotRun(status) => (*status, None),
            // Output was lost: a failure of popen's own, as `cat` reports it.
            Ending::Exited { lost: true, .. } => (1, None),
            Ending::Exited {
                exited, timed_out, ..
            } => {
                let status = exited.returncode.shell_status();
                let signal = exited.returncode.code();
                // As timeout(1): a child killed by a signal ends popen by
                // the same signal, so that a shell sees it (a loop around
                // popen stops at Ctrl-C), except when popen's own timeout
                // sent it.
                (status, (signal < 0 && !timed_out).then_some(-signal))
            }
        }
    }
}

/// A signal popen acts on, as the run loop gets it.
enum Received {
    Cancelling(Signal),
    PassedOn(Signal),
}

/// Forwards each delivery of `signals` to `tx` as made by `wrap`.
fn listen(
    signals: &[nix::sys::signal::Signal],
    tx: &mpsc::UnboundedSender<Received>,
    wrap: fn(Signal) -> Received,
) -> io::Result<()> {
    for &nix_signal in signals {
        let mut stream = signal(SignalKind::from_raw(nix_signal as i32))?;
        let Some(ours) = Signal::from_raw(nix_signal as i32) else {
            continue;
        };
        let tx = tx.clone();
        actix::spawn(async move {
            while stream.recv().await.is_some() {
                let _ = tx.unbounded_send(wrap(ours));
            }
        });
    }
    Ok(())
}

async fn run(args: Args, handled: signals::Handled) -> io::Result<Ending> {
    // Listen before the child exists, so that no signal can kill popen and
    // leave the child running. Installing the SIGCHLD handler also
    // replaces a SIG_IGN popen may have inherited.
    let (signals_tx, mut signals) = mpsc::unbounded::<Received>();
    listen(&handled.cancelling, &signals_tx, Received::Cancelling)?;
    listen(&handled.passed_on, &signals_tx, Received::PassedOn)?;
    drop(signals_tx);
    let mut child_changed = signal(SignalKind::child())?;
    let mut continued = signal(SignalKind::from_raw(Signal::SIGCONT.as_raw()))?;

    let (exited_tx, mut exited_rx) = oneshot::channel();
    let (give_up_tx, give_up) = oneshot::channel();
    let give_up = futures::future::FutureExt::shared(give_up);
    let mut give_up_tx = Some(give_up_tx);
    let lent_to = Arc::new(AtomicI32::new(0));
    let stdout = io::stdout().as_fd().try_clone_to_owned()?;
    let stderr = io::stderr().as_fd().try_clone_to_owned()?;
    let stdout_sink = Sink::spawn("stdout", stdout.try_clone()?, lent_to.clone())?;
    // One writer when both are the same terminal or pipe (`2>&1`), so that
    // what the child wrote to each keeps its order there.
    let stderr_sink = if sink::same_stream(&stdout, &stderr) {
        stdout_sink.clone()
    } else {
        Sink::spawn("stderr", stderr.try_clone()?, lent_to.clone())?
    };
    let relay = Relay::new(stdout_sink, stderr_sink, exited_tx, give_up.clone()).start();
    relay::watch_reader(stdout, OutputStream::Stdout, relay.clone());
    relay::watch_reader(stderr, OutputStream::Stderr, relay.clone());
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
    if let Some(size) = args.pipe_size {
        popen = popen.pipe_size(size);
    }
    if args.pty {
        popen = popen.pty();
    } else if args.merge_stderr {
        popen = popen.stderr(OutputTo::MergeIntoStdout);
    }

    let process = match popen.start() {
        Ok(process) => process,
        Err(err) => {
            say(format_args!("popen: {err}"));
            return Ok(Ending::NotRun(err.shell_status()));
        }
    };
    let addr = process.clone().into_addr();
    relay.do_send(Attach(addr.clone().recipient(), addr.clone().recipient()));
    let pid = process.pid();
    let terminal = pid.and_then(Terminal::open);
    if let (Some(terminal), Some(pid)) = (&terminal, pid) {
        lent_to.store(pid as i32, Ordering::Relaxed);
        // A child that touches the terminal before this is stopped for it
        // (SIGTTIN, SIGTTOU): the loop below sees the stop and continues
        // it. No SIGCONT is sent blindly: the child may have stopped
        // itself, and that stop must show.
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
    let mut timed_out = false;
    let exited = loop {
        tokio::select! {
            exited = &mut exited_rx => break exited.ok(),
            Some(received) = signals.next() => match received {
                // The first starts the cancel; later ones are passed on
                // too, as timeout(1) passes on every signal it gets.
                Received::Cancelling(signal) if !stopping => {
                    log::debug!("popen got {signal}: cancelling the child with it");
                    stopping = true;
                    arm_give_up();
                    addr.do_send(CancelWith(signal));
                }
                Received::Cancelling(signal) | Received::PassedOn(signal) => {
                    log::debug!("popen got {signal}: passing it on");
                    let _ = addr.send(SendSignal::to_group(signal)).await;
                    // Ctrl-Z in popen's pipeline job once the child has
                    // exited (its output still being written): no child
                    // stops to stop popen, so popen stops by itself.
                    if signal == Signal::SIGTSTP && pid.is_none_or(terminal::exited) {
                        terminal::stop_self(nix::sys::signal::Signal::SIGTSTP);
                    }
                }
            },
            () = &mut timer, if !stopping => {
                log::debug!("timeout: cancelling the child");
                stopping = true;
                timed_out = true;
                arm_give_up();
                addr.do_send(Cancel);
            }
            Some(()) = child_changed.recv() => {
                if let (Some(terminal), Some(pid)) = (&terminal, pid) {
                    let stop = terminal::stopped(pid);
                    if let Some(stop) = stop.filter(|&stop| terminal.can_lend_for(stop)) {
                        log::debug!("the child stopped ({stop}) for the terminal: lent");
                        let _ = addr.send(SendSignal::to_group(Signal::SIGCONT)).await;
                    } else if let Some(stop) = stop {
                        // What the child wrote before it stopped is in the
                        // pipe: let the reader and the sinks have their turn
                        // first (briefly: a reader that does not read must
                        // not keep popen from stopping), so that it shows
                        // before the shell's "Stopped".
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
                    let _ = addr.send(SendSignal::to_group(Signal::SIGCONT)).await;
                }
            }
        }
    };
    drop(terminal);
    let Some(exited) = exited else {
        return Err(io::Error::other("the relay stopped before the child ended"));
    };
    // What the child wrote is all queued by now; wait for it to be
    // written, unless popen was told to stop: then only until the cancel
    // timeout has passed since, and not past another signal.
    let report = args
        .report
        .then(|| format!("returncode={}\n", exited.returncode));
    let mut finished = Box::pin(relay.send(Finish(report)));
    // Not past the give-up (and a moment for what is written at once, as
    // the report).
    let mut grace = Box::pin(async {
        let _ = give_up.clone().await;
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    });
    let lost = loop {
        tokio::select! {
            lost = &mut finished => break lost.unwrap_or(false),
            Some(received) = signals.next() => match received {
                // Told to stop: what is not written yet is given up.
                Received::Cancelling(_) => break false,
                // Ctrl-Z in popen's pipeline job, the child gone: popen
                // stops, as any process of the job, and then goes on.
                Received::PassedOn(Signal::SIGTSTP) => {
                    terminal::stop_self(nix::sys::signal::Signal::SIGTSTP);
                }
                // Nobody is left to pass it on to.
                Received::PassedOn(_) => {}
            },
            () = &mut grace, if stopping => break false,
        }
    };
    Ok(Ending::Exited {
        exited,
        timed_out,
        lost,
    })
}

/// Ends popen by `signal` (the one that killed the child), as timeout(1)
/// does: with its default action, without a core dump of popen's own;
/// exits with `status` if the signal does not end popen.
fn exit_as(status: u8, signal: Option<i32>) -> ExitCode {
    use nix::sys::signal::{raise, SigHandler};
    let Some(signal) = signal.and_then(|n| nix::sys::signal::Signal::try_from(n).ok()) else {
        return ExitCode::from(status);
    };
    let _ = nix::sys::prctl::set_dumpable(false);
    // SAFETY: SIG_DFL runs no code of ours; popen is about to end.
    let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
    let mut only = SigSet::empty();
    only.add(signal);
    let _ = only.thread_unblock();
    let _ = raise(signal);
    ExitCode::from(status)
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
            // The help or version could not be written (a full disk, a
            // closed stdout): a failure, as `cat --help >/dev/full` says.
            let status = match err.print().and_then(|()| io::stdout().flush()) {
                Ok(()) => 0,
                Err(write) => {
                    say(format_args!("popen: writing the help: {write}"));
                    1
                }
            };
            std::process::exit(status);
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
    let handled = signals::start_clean();
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
    let ending = {
        let system = System::with_tokio_rt(move || runtime);
        system.block_on(run(args, handled))
        // The System is dropped here: every child is reaped before popen
        // ends, whichever way.
    };
    match ending {
        Ok(ending) => {
            let (status, signal) = ending.outcome();
            exit_as(status, signal)
        }
        Err(err) => {
            say(format_args!("popen: cannot run: {err}"));
            ExitCode::from(126)
        }
    }
}
