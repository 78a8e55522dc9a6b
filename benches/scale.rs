//! Scale: how many children one System supervises, at what cost, and a
//! soak of many short-lived children.
//!
//! ```text
//! cargo bench --bench scale
//! SCALE_CHILDREN=1000 SOAK_CHILDREN=2000 cargo bench --bench scale
//! ```
//!
//! 1. N concurrent children (10,000 by default, fewer if `ulimit -n` or
//!    `ulimit -u` cannot be raised that far; the soft limits are raised to
//!    the hard limits first): host threads before and during, RSS per
//!    supervised child, fds released afterwards.
//! 2. All N cancelled at once: time from the first `Cancel` to the last
//!    `Exited`, and whether the time per child stays flat as N grows
//!    (quadratic work would not).
//!    With the N children up, the cost of one more child, wall and CPU:
//!    200 sequential spawn-to-exit runs of `/bin/true` made by the crate's
//!    own spawn (the default, `close_fds(true)`), 200 through std's
//!    `posix_spawn` (`close_fds(false)`), and 200 with `tokio::process` as
//!    the peer's figure, at N = 100, N / 10 and N, to show whether it
//!    stays flat.
//! 3. Soak: 20,000 `true` children, 200 at a time through the job pool; fds,
//!    threads and RSS after the first and the last thousand.

mod common;

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::{
    AsyncWait, Cancel, Chunk, OutputTo, Popen, ProcessHandle, ProcessSupervisor, SetJobLimits,
};
use futures::channel::oneshot;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Raises a soft limit to its hard limit; returns the new soft limit.
fn raise(resource: Resource, name: &str) -> u64 {
    let Ok((soft, hard)) = getrlimit(resource) else {
        return 0;
    };
    if soft < hard && setrlimit(resource, hard, hard).is_ok() {
        println!("raised the soft {name} limit from {soft} to {hard}");
        return hard;
    }
    soft
}

/// Tells when the first chunk of a child arrives.
struct Up(Option<oneshot::Sender<()>>);

impl Actor for Up {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Up {
    type Result = ();
    fn handle(&mut self, _: Chunk, _: &mut Context<Self>) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

async fn concurrent(children: usize) {
    let fds_before = count("/proc/self/fd");
    let threads_before = count("/proc/self/task");
    let rss_before = common::rss_kib();
    let started = Instant::now();
    let mut handles: Vec<ProcessHandle> = Vec::with_capacity(children);
    let mut ups = Vec::with_capacity(children);
    for _ in 0..children {
        let (tx, rx) = oneshot::channel();
        let process = Popen::new("sh")
            .args(["-c", "echo up; exec sleep 1000"])
            .stdin(actix_popen::InputFrom::Null)
            .stderr(OutputTo::Null)
            .subscribe(Up(Some(tx)).start().recipient())
            .start()
            .expect("spawn");
        handles.push(process);
        ups.push(rx);
    }
    for up in ups {
        up.await.expect("up");
    }
    let spawned = started.elapsed();
    let threads_during = count("/proc/self/task");
    let rss_during = common::rss_kib();
    let per_child = (rss_during.saturating_sub(rss_before)) as f64 / children as f64;
    println!(
        "{children} concurrent children: all up in {:.2}s; threads {threads_before} before, {threads_during} during; \
         RSS {:.1} KiB per supervised child (target < 64 KiB), fds {} during",
        spawned.as_secs_f64(),
        per_child,
        count("/proc/self/fd"),
    );

    spawn_cost_while_running(children).await;

    let cancelling = Instant::now();
    for process in &handles {
        process.do_send(Cancel);
    }
    for process in &handles {
        let code = process.send(AsyncWait).await.expect("actor").expect("code");
        assert_eq!(code.code(), -15);
    }
    let cancelled = cancelling.elapsed();
    drop(handles);
    // Let the actors stop and release their fds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count("/proc/self/fd") > fds_before && Instant::now() < deadline {
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "cancelled all {children} at once: {:.3}s, {:.1} µs per child; fds {fds_before} before, {} after",
        cancelled.as_secs_f64(),
        cancelled.as_secs_f64() * 1e6 / children as f64,
        count("/proc/self/fd"),
    );
}

/// The cost of one more child with `running` children up: 200 sequential
/// spawn-to-exit runs of `/bin/true` (stdio to /dev/null; each started,
/// then awaited) made by the crate's own spawn (the default,
/// `close_fds(true)`), as many through std's `posix_spawn`
/// (`close_fds(false)`), and as many with `tokio::process` in the same
/// state, for the peer's figure. Wall time per run, and the CPU of the
/// whole process tree per run.
async fn spawn_cost_while_running(running: usize) {
    const RUNS: u32 = 200;
    async fn ours(close_fds: bool) -> (Duration, Duration) {
        let (wall, cpu) = (Instant::now(), common::cpu_time());
        for _ in 0..RUNS {
            let task = Popen::new("/bin/true")
                .stdin(actix_popen::InputFrom::Null)
                .stdout(OutputTo::Null)
                .stderr(OutputTo::Null)
                .close_fds(close_fds)
                .start()
                .expect("spawn");
            task.send(AsyncWait).await.expect("actor").expect("code");
        }
        (wall.elapsed(), common::cpu_time().saturating_sub(cpu))
    }
    let (clone, clone_cpu) = ours(true).await;
    let (std, std_cpu) = ours(false).await;
    let (wall, cpu) = (Instant::now(), common::cpu_time());
    for _ in 0..RUNS {
        let status = tokio::process::Command::new("/bin/true")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .expect("spawn");
        assert!(status.success());
    }
    let (tokio, tokio_cpu) = (wall.elapsed(), common::cpu_time().saturating_sub(cpu));
    let micros = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(RUNS);
    println!(
        "one more child with {running} running (fds {}), spawn-to-exit µs, wall / CPU: \
         ours {:.0} / {:.0} (through std's posix_spawn {:.0} / {:.0}), tokio::process {:.0} / {:.0}; \
         ours vs tokio {:.2}x wall, {:.2}x CPU",
        count("/proc/self/fd"),
        micros(clone),
        micros(clone_cpu),
        micros(std),
        micros(std_cpu),
        micros(tokio),
        micros(tokio_cpu),
        clone.as_secs_f64() / tokio.as_secs_f64(),
        clone_cpu.as_secs_f64() / tokio_cpu.as_secs_f64(),
    );
}

async fn soak(children: usize, at_once: usize) {
    ProcessSupervisor::get()
        .send(SetJobLimits {
            max_jobs: Some(at_once),
            max_load: None,
        })
        .await
        .expect("supervisor")
        .expect("limits refused");
    let thousand = 1000.min(children / 2).max(1);
    let started = Instant::now();
    let mut marks = Vec::new();
    let mut done = 0;
    while done < children {
        let batch = thousand.min(children - done);
        let tasks: Vec<ProcessHandle> = (0..batch)
            .map(|_| Popen::new("true").submit().expect("submit"))
            .collect();
        for task in tasks {
            assert!(task
                .send(AsyncWait)
                .await
                .expect("actor")
                .expect("code")
                .success());
        }
        done += batch;
        // Let the finished actors stop before measuring.
        actix::clock::sleep(Duration::from_millis(50)).await;
        marks.push((
            count("/proc/self/fd"),
            count("/proc/self/task"),
            common::rss_kib(),
        ));
    }
    let took = started.elapsed();
    let (first, last) = (marks[0], marks[marks.len() - 1]);
    println!(
        "soak: {children} children of `true`, {at_once} at a time, in {:.1}s ({:.0}/s); after the first {thousand}: \
         {} fds, {} threads, {} KiB RSS; after the last: {} fds, {} threads, {} KiB RSS",
        took.as_secs_f64(),
        children as f64 / took.as_secs_f64(),
        first.0,
        first.1,
        first.2,
        last.0,
        last.1,
        last.2,
    );
}

fn main() {
    let fd_limit = raise(Resource::RLIMIT_NOFILE, "open files");
    let proc_limit = raise(Resource::RLIMIT_NPROC, "processes");
    // Each child costs this process 2 fds (its stdout pipe and its pidfd)
    // and the machine one process; keep a margin for everything else.
    let fit = (fd_limit.saturating_sub(200) / 2).min(proc_limit.saturating_sub(500)) as usize;
    let wanted = env("SCALE_CHILDREN", 10_000);
    let children = wanted.min(fit);
    if children < wanted {
        println!("limits allow {children} concurrent children, not {wanted}");
    }
    System::new().block_on(async move {
        for n in [100.min(children), children / 10, children] {
            if n > 0 {
                concurrent(n).await;
            }
        }
        soak(env("SOAK_CHILDREN", 20_000), 200).await;
    });
}
