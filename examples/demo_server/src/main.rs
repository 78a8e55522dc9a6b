//! `demo-server`: a job runner over HTTP with a live web page, built on the process actors.
//!
//! ```text
//! cargo run --release -p demo-server [-- --bind 127.0.0.1 --port 8080 --jobs FILE]
//! ```
//!
//! then open <http://127.0.0.1:8080/>. Only the jobs listed in the jobs file
//! run (by default `jobs.toml`, at the top of this package), each with
//! validated parameters at fixed places in its argv; their output streams
//! to the page as it is written. Jobs wait in the library's job pool for a
//! place to run (`--max-running`, `--max-load`), at most `--max-queued` of
//! them. Ctrl-C (or SIGTERM) cancels every queued and running job, waits
//! for them to end and stops.
//!
//! * `definitions.rs`: the allow-list, from the jobs file;
//! * `registry.rs`: the `Jobs` actor, which runs the jobs and keeps them;
//! * `connections.rs`: what a connection may cost (fds, memory, time);
//! * `api.rs`: the HTTP routes, JSON errors and the event stream;
//! * `index.html` (at the top of the package): the page, plain HTML and
//!   JavaScript;
//! * `assets.rs`: the files the page loads (xterm.js, vendored in the
//!   package's `static/`).
//!
//! The server listens on loopback unless `--bind` says otherwise: anyone who
//! can reach it can run the listed jobs. It answers only to requests whose
//! `Host` names it (`localhost`, `127.0.0.1`, `[::1]` on loopback, the bound
//! address otherwise, and `--allow-host` names), so that a web page cannot
//! point a name of its own at it (DNS rebinding).

mod api;
mod assets;
mod connections;
mod definitions;
mod registry;

use std::fmt;
use std::net::{IpAddr, TcpListener};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use actix_rt::signal::unix::{signal, SignalKind};
use actix_web::middleware::Logger;
use actix_web::{App, HttpServer};
use clap::Parser;
use futures::future::{select, Either};

use api::{AllowedHosts, Api};
use connections::ConnectionCount;
use definitions::Definitions;
use registry::{Jobs, Limits, Shutdown};

/// A job runner over HTTP: allow-listed jobs, their output live.
#[derive(Debug, Parser)]
#[command(name = "demo-server")]
struct Args {
    /// The address to listen on. Anything but loopback lets other machines
    /// run the listed jobs.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// The port to listen on; 0 picks a free one (printed at the start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The jobs file: the only jobs that may run.
    #[arg(long, value_name = "FILE",
          default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs.toml"))]
    jobs: PathBuf,
    /// Another name the server answers to (a `Host` it accepts), beyond
    /// its address (and `localhost` on loopback). Repeatable.
    #[arg(long, value_name = "NAME")]
    allow_host: Vec<String>,
    /// The most jobs running at once; more wait in the queue.
    #[arg(long, default_value_t = NonZeroUsize::new(4).expect("4 is not 0"), value_name = "N")]
    max_running: NonZeroUsize,
    /// No new job starts while the 1-minute load average is at or above
    /// this (unless none runs), as portage's --load-average.
    #[arg(long, value_name = "LOAD", value_parser = positive_load)]
    max_load: Option<f64>,
    /// The most jobs waiting to run; one more is refused with 429.
    #[arg(long, default_value_t = 100, value_name = "N")]
    max_queued: usize,
    /// How many finished jobs to keep; the oldest are forgotten.
    #[arg(long, default_value_t = 50, value_name = "N")]
    keep_finished: usize,
    /// Output kept per job, in bytes; older output is dropped and counted.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    output_limit: usize,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 2, value_name = "N")]
    workers: usize,
    /// The most HTTP connections served at once (lowered to what the fd
    /// limit leaves once the running jobs have their fds); a request on one
    /// more gets 503 and the connection is closed, and past a margin of 32
    /// per worker more wait in the listen backlog.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_connections: usize,
    /// Seconds a client gets to send a request's head, and again its body:
    /// a connection that sends nothing is closed, a body not there in time
    /// gets 408.
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = seconds)]
    request_timeout: Duration,
    /// Seconds a client may take none of what was sent to it before its
    /// connection (and its output stream) is dropped.
    #[arg(long, default_value = "30", value_name = "SECS", value_parser = seconds)]
    write_deadline: Duration,
    /// Seconds an output stream may deliver no output (keep-alives only)
    /// before it ends, freeing its watcher's place; it asks the client to
    /// reconnect (SSE `retry:`), and a reconnect resumes where it ended.
    #[arg(long, default_value = "300", value_name = "SECS", value_parser = seconds)]
    idle_stream: Duration,
}

/// Parses a number of seconds: positive, fractions allowed.
fn seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() => {
            Duration::try_from_secs_f64(secs).map_err(|err| format!("{text:?}: {err}"))
        }
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

/// Parses `--max-load`: a positive number.
fn positive_load(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(load) if load > 0.0 && load.is_finite() => Ok(load),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

/// The largest request body accepted.
const MAX_BODY: usize = 16 * 1024;

/// How long open connections (event streams of finished jobs, mostly) get
/// to close once the jobs have ended.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[actix_web::main]
async fn main() -> Result<(), Fatal> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    // Listen for SIGINT/SIGTERM before any job exists, so neither can kill
    // the server and leave a job running.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;

    let workers = args.workers.max(1);
    let fd_limit = connections::raise_fd_limit()?;
    let limits = connections::limits(
        fd_limit,
        args.max_running.get(),
        workers,
        args.max_connections,
    )?;
    log::info!(
        "at most {} connections served, more answered 503 (at most {} accepted per worker; \
         the fd limit is {fd_limit})",
        limits.cap,
        limits.per_worker
    );
    let count = ConnectionCount::new(limits.cap);
    let definitions = Arc::new(Definitions::load(&args.jobs)?);
    let hosts = Arc::new(AllowedHosts::new(args.bind, &args.allow_host)?);
    let listener = TcpListener::bind((args.bind, args.port))
        .map_err(|err| format!("cannot listen on {}:{}: {err}", args.bind, args.port))?;
    // The registry, and so every process actor, runs on this arbiter.
    let jobs = Jobs::new(Limits {
        max_running: args.max_running.get(),
        max_load: args.max_load,
        max_queued: args.max_queued,
        keep_finished: args.keep_finished,
        output_limit: args.output_limit,
        ..Limits::default()
    })
    .start();
    let api = Api {
        jobs: jobs.clone(),
        definitions,
        max_body: MAX_BODY,
        body_timeout: args.request_timeout,
        idle_stream: args.idle_stream,
        hosts,
    };
    let write_deadline = args.write_deadline;

    let server = HttpServer::new(move || {
        let api = api.clone();
        App::new()
            .wrap(Logger::new("%r %s %Dms"))
            .configure(move |cfg| api.configure(cfg))
    })
    .workers(workers)
    .max_connections(limits.per_worker)
    .client_request_timeout(args.request_timeout)
    .on_connect(move |connection, data| {
        if let Some(socket) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            connections::tune(socket, write_deadline);
        }
        // Dropped with the connection: the count goes down then.
        data.insert(count.open());
    })
    // Our own signal handling cancels the jobs before the server stops.
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
    .listen(listener)?;
    for addr in server.addrs() {
        println!("demo server listening on http://{addr}/");
    }
    let server = server.run();
    let handle = server.handle();
    let mut server = actix_rt::spawn(server);

    let signalled = select(Box::pin(interrupt.recv()), Box::pin(terminate.recv()));
    let stopped_by_itself = match select(signalled, &mut server).await {
        Either::Left(_) => {
            log::info!("signal received: stopping");
            None
        }
        // The server stopped by itself (it failed): still end the jobs.
        Either::Right((result, _)) => Some(result),
    };
    // Jobs first: their event streams end with their exits, so the
    // graceful stop that follows has no stream left to wait for.
    jobs.send(Shutdown).await?;
    handle.stop(true).await;
    match stopped_by_itself {
        Some(result) => result??,
        None => server.await??,
    }
    log::info!("stopped; no job left running");
    Ok(())
}

/// An error that ends the server, printed as its message (`main` prints
/// its error with `Debug`).
struct Fatal(String);

impl fmt::Debug for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: fmt::Display> From<E> for Fatal {
    fn from(err: E) -> Fatal {
        Fatal(err.to_string())
    }
}
