//! Pipelines and backpressure, measured against the shell in the same run.
//!
//! ```text
//! cargo bench --bench pipeline            # 1 GiB, about two minutes
//! BENCH_MIB=256 cargo bench --bench pipeline
//! ```
//!
//! 1. Throughput of `head -c N /dev/zero | cat | cat` run as a `Pipeline`
//!    (the last stage's output read by an actor that discards it), as
//!    ratios of wall time and of CPU time (user + system of the whole
//!    process tree) against `sh -c 'head -c N /dev/zero | cat | cat'`
//!    whose output this process reads with a plain blocking loop: once with
//!    no intermediate stage observed (the stages joined by kernel pipes),
//!    once with the middle stage's output subscribed to as well (relayed by
//!    this process).
//! 2. Backpressure: a child writes N bytes to a subscriber, on another
//!    arbiter, that consumes 20 MB/s; this process's resident memory
//!    growth is printed (the target is under 32 MiB).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::{AsyncWait, Chunk, Pipeline, Popen};

fn shell_pipeline(bytes: u64) {
    let mut child = Command::new("sh")
        .args(["-c", &format!("head -c {bytes} /dev/zero | cat | cat")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let mut out = child.stdout.take().expect("piped");
    let mut buf = vec![0u8; 65536];
    let mut total = 0u64;
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(err) => panic!("reading sh: {err}"),
        }
    }
    assert!(child.wait().expect("wait").success());
    assert_eq!(total, bytes);
}

/// `head | cat | cat` as a `Pipeline`, the last stage's output discarded by
/// an actor; with `observed`, the middle stage's output is subscribed to as
/// well (so this process relays it to the last stage).
fn actor_pipeline(bytes: u64, bufsize: usize, observed: bool) {
    System::new().block_on(async move {
        let discard = common::Discard::default().start();
        let mut middle = Popen::new("cat").bufsize(bufsize);
        if observed {
            middle = middle.subscribe(common::Discard::default().start().recipient());
        }
        let pipeline = Pipeline::new()
            .stage(
                Popen::new("head")
                    .args(["-c", &bytes.to_string(), "/dev/zero"])
                    .bufsize(bufsize),
            )
            .stage(middle)
            .stage(
                Popen::new("cat")
                    .bufsize(bufsize)
                    .subscribe(discard.clone().recipient()),
            )
            .start()
            .expect("pipeline starts");
        let code = pipeline
            .send(AsyncWait)
            .await
            .expect("actor")
            .expect("code");
        assert!(code.success());
        assert_eq!(discard.send(common::Total).await.expect("total"), bytes);
    })
}

/// Consumes at most `rate` bytes per second, sampling the host's RSS.
struct Slow {
    rate: f64,
    started: Instant,
    consumed: u64,
    peak_kib: u64,
}

impl Actor for Slow {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Slow {
    type Result = ();
    fn handle(&mut self, chunk: Chunk, _: &mut Context<Self>) {
        self.consumed += chunk.data.len() as u64;
        let due = Duration::from_secs_f64(self.consumed as f64 / self.rate);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
        self.peak_kib = self.peak_kib.max(common::rss_kib());
    }
}

#[derive(Message)]
#[rtype(result = "(u64, u64)")]
struct Report;

impl Handler<Report> for Slow {
    type Result = MessageResult<Report>;
    fn handle(&mut self, _: Report, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.consumed, self.peak_kib))
    }
}

fn slow_subscriber(bytes: u64, rate: f64) {
    System::new().block_on(async move {
        let before = common::rss_kib();
        // The subscriber runs on its own thread, so the reader is held back
        // by credit alone, not by a busy thread.
        let arbiter = Arbiter::new();
        let slow = Slow::start_in_arbiter(&arbiter.handle(), move |_| Slow {
            rate,
            started: Instant::now(),
            consumed: 0,
            peak_kib: 0,
        });
        let process = Popen::new("head")
            .args(["-c", &bytes.to_string(), "/dev/zero"])
            .bufsize(65536)
            .subscribe(slow.clone().recipient())
            .start()
            .expect("head starts");
        let code = process.send(AsyncWait).await.expect("actor").expect("code");
        assert!(code.success());
        let (consumed, peak) = slow.send(Report).await.expect("report");
        arbiter.stop();
        assert_eq!(consumed, bytes);
        let growth = peak.saturating_sub(before) as f64 / 1024.0;
        println!(
            "backpressure: {} MiB at {:.0} MB/s to a slow subscriber: RSS growth {growth:.1} MiB (target < 32 MiB)",
            bytes >> 20,
            rate / 1e6
        );
    });
}

fn main() {
    let bytes = common::bytes(1024);
    let gib = bytes as f64 / f64::from(1 << 30);
    for bufsize in [4096, 65536] {
        let runs = 5;
        let (mut shell, mut linked, mut relayed) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            shell.push(common::timed(|| shell_pipeline(bytes)));
            linked.push(common::timed(|| actor_pipeline(bytes, bufsize, false)));
            relayed.push(common::timed(|| actor_pipeline(bytes, bufsize, true)));
        }
        let median = |runs: &[(Duration, Duration)]| {
            (
                common::median(runs.iter().map(|r| r.0).collect()),
                common::median(runs.iter().map(|r| r.1).collect()),
            )
        };
        let (shell, linked, relayed) = (median(&shell), median(&linked), median(&relayed));
        println!(
            "pipeline head|cat|cat, {} MiB, bufsize {bufsize}, median of {runs}: sh -c {:.3}s wall, {:.2}s CPU per GiB",
            bytes >> 20,
            shell.0.as_secs_f64(),
            shell.1.as_secs_f64() / gib,
        );
        for (what, run) in [
            ("unobserved (kernel pipes)", linked),
            ("middle stage observed", relayed),
        ] {
            println!(
                "  Pipeline, {what}: {:.3}s wall, {:.2}s CPU per GiB: {:.2}x sh's wall time, {:.2}x its CPU",
                run.0.as_secs_f64(),
                run.1.as_secs_f64() / gib,
                run.0.as_secs_f64() / shell.0.as_secs_f64(),
                run.1.as_secs_f64() / shell.1.as_secs_f64(),
            );
        }
    }
    slow_subscriber(bytes, 20e6);
}
