//! Scale, in a form short enough for CI: a thousand children at once in
//! one System (no thread per child, little memory per child, all cancelled
//! and reaped together), and two thousand short-lived children through the
//! job pool (no growth of fds, threads or memory from the first few
//! hundred to the last).
//!
//! Each test prints its figures. The tests count this process's fds,
//! threads, memory and children, so they take [`COUNTING`] in turn.

mod common;

use common::SOON;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_popen::{
    AsyncWait, Cancel, GetJobPool, JobPool, Popen, ProcessHandle, ProcessSupervisor, ReturnCode,
    SetJobLimits,
};
use futures::future::join_all;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

use common::actors::LineCounter;
use common::fds::{fd_count, settle_fds};
use common::harness::{lock, run_system};
use common::procs::our_children;
use common::usage::{rss, thread_count};
use common::{event, within};

/// Held by every test here.
static COUNTING: Mutex<()> = Mutex::new(());

/// Children running at once in the first test.
const CHILDREN: usize = 1000;

/// What one running child may cost us in memory, at most.
const RSS_PER_CHILD: u64 = 64 * 1024;

/// Children run by the soak test, in batches, at most `POOL` at once.
const SOAK: usize = 2000;
const BATCH: usize = 500;
const POOL: usize = 200;

/// How much memory the soak may gain from its first batch to its last.
const SOAK_RSS_GROWTH: u64 = 8 << 20;

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

/// Raises the soft `RLIMIT_NOFILE` to the hard limit if fewer than `fds`
/// may be open.
fn allow_fds(fds: u64) {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < fds {
        assert!(
            hard >= fds,
            "this test needs {fds} fds and the hard RLIMIT_NOFILE is {hard}"
        );
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise RLIMIT_NOFILE");
    }
}

// ---------------------------------------------------------------------
// A thousand children at once
// ---------------------------------------------------------------------

/// A child that says it runs, then sleeps.
fn sleeper() -> Popen {
    Popen::new("sh").args(["-c", "echo up; exec sleep 1000"])
}

#[test]
fn a_thousand_children_at_once_cost_no_thread_and_little_memory() {
    let _counting = lock(&COUNTING);
    // Each child costs three fds: the read ends of its stdout and stderr
    // pipes, and its pidfd.
    allow_fds(4 * CHILDREN as u64 + 256);
    run_system(|cleanup| async move {
        // Warm up what the first child and the first cancel set up once.
        ProcessSupervisor::get()
            .send(GetJobPool)
            .await
            .expect("the supervisor is gone");
        let fds_base = fd_count();
        let (counter, up) = LineCounter::start_new(1);
        let warm = sleeper()
            .subscribe(counter.recipient())
            .start()
            .expect("cannot start sh");
        cleanup.add(&warm);
        event("the first child's \"up\"", up).await;
        warm.do_send(Cancel);
        let code = within("AsyncWait", warm.send(AsyncWait)).await.unwrap();
        assert_eq!(code.unwrap(), ReturnCode::from_raw(-15));
        drop(warm);
        let fds_before = settle_fds(fds_base).await;
        assert_eq!(fds_before, fds_base, "fds leaked by the first child");
        let threads_before = thread_count();
        let rss_before = rss();

        let started = Instant::now();
        let (counter, all_up) = LineCounter::start_new(CHILDREN);
        let mut handles = Vec::with_capacity(CHILDREN);
        for _ in 0..CHILDREN {
            let handle = sleeper()
                .subscribe(counter.clone().recipient())
                .start()
                .expect("cannot start sh");
            cleanup.add(&handle);
            handles.push(handle);
        }
        let spawned = started.elapsed();
        event("every child's \"up\"", all_up).await;
        let all_running = started.elapsed();

        let threads = thread_count();
        let fds = fd_count();
        let rss_during = rss();
        let per_child = rss_during.saturating_sub(rss_before) / CHILDREN as u64;
        eprintln!(
            "{CHILDREN} children: spawned in {spawned:?}, all running after {all_running:?}; \
             threads {threads_before} -> {threads}; fds {fds_before} -> {fds}; \
             RSS {} KiB -> {} KiB, {per_child} bytes per child",
            rss_before / 1024,
            rss_during / 1024,
        );
        assert!(
            threads <= threads_before + 2,
            "threads grew from {threads_before} to {threads} with {CHILDREN} children"
        );
        assert!(
            per_child < RSS_PER_CHILD,
            "{per_child} bytes of RSS per child (at most {RSS_PER_CHILD})"
        );

        let cancelled = Instant::now();
        for handle in &handles {
            handle.do_send(Cancel);
        }
        let codes = within(
            "every AsyncWait",
            join_all(handles.iter().map(|h| h.send(AsyncWait))),
        )
        .await;
        let took = cancelled.elapsed();
        for (code, handle) in codes.into_iter().zip(&handles) {
            let code = code.expect("a process actor is gone").expect("AsyncWait");
            assert_eq!(code, ReturnCode::from_raw(-15));
            assert_eq!(handle.pid(), None);
        }
        // Reaped a moment after their exit events, once the supervisor
        // has seen their groups empty (one read of /proc for all).
        common::procs::poll_until("every child reaped", SOON, || our_children().is_empty()).await;
        drop(handles);
        let fds_after = settle_fds(fds_before).await;
        eprintln!(
            "cancelling {CHILDREN} children took {took:?}; fds back to {fds_after} \
             (before: {fds_before}); threads {}",
            thread_count()
        );
        assert_eq!(fds_after, fds_before, "fds leaked by {CHILDREN} children");
    });
}

// ---------------------------------------------------------------------
// Soak: two thousand short-lived children through the job pool
// ---------------------------------------------------------------------

/// Resources held at one point.
#[derive(Debug, Clone, Copy)]
struct Usage {
    fds: usize,
    threads: usize,
    rss: u64,
}

/// Waits until the pool is empty and every fd released, then measures.
async fn quiet_usage(fds: usize) -> Usage {
    let supervisor = ProcessSupervisor::get();
    let deadline = Instant::now() + SOON;
    loop {
        let pool = within("GetJobPool", supervisor.send(GetJobPool))
            .await
            .expect("the supervisor is gone");
        if pool == (JobPool::default()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job pool stays busy: {pool:?}"
        );
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
    Usage {
        fds: settle_fds(fds).await,
        threads: thread_count(),
        rss: rss(),
    }
}

#[test]
fn two_thousand_short_children_through_the_job_pool_grow_nothing() {
    let _counting = lock(&COUNTING);
    run_system(|_cleanup| async move {
        let supervisor = ProcessSupervisor::get();
        within(
            "SetJobLimits",
            supervisor.send(SetJobLimits {
                max_jobs: Some(POOL),
                max_load: None,
            }),
        )
        .await
        .expect("the supervisor is gone")
        .expect("limits refused");
        let fds_base = fd_count();
        let warm = Popen::new("true").submit().expect("cannot submit true");
        assert!(within("AsyncWait", warm.send(AsyncWait))
            .await
            .unwrap()
            .unwrap()
            .success());
        drop(warm);
        let start = quiet_usage(fds_base).await;
        assert_eq!(start.fds, fds_base, "fds leaked by the first child");

        let began = Instant::now();
        let mut first: Option<Usage> = None;
        let mut last = start;
        for batch in 0..SOAK / BATCH {
            let handles: Vec<ProcessHandle> = (0..BATCH)
                .map(|_| Popen::new("true").submit().expect("cannot submit true"))
                .collect();
            let codes = within(
                "every AsyncWait",
                join_all(handles.iter().map(|h| h.send(AsyncWait))),
            )
            .await;
            for code in codes {
                let code = code.expect("a process actor is gone").expect("AsyncWait");
                assert_eq!(code, ReturnCode::from_raw(0));
            }
            drop(handles);
            let usage = quiet_usage(start.fds).await;
            eprintln!(
                "after {} children ({:?}): {usage:?}",
                (batch + 1) * BATCH,
                began.elapsed()
            );
            first.get_or_insert(usage);
            last = usage;
        }
        let first = first.expect("no batch ran");
        let left = our_children();
        assert!(left.is_empty(), "children left: {left:?}");
        eprintln!(
            "{SOAK} children, {POOL} at a time, in {:?}: at the start {start:?}, \
             after the first {BATCH} {first:?}, after the last {BATCH} {last:?}; \
             RSS growth {} KiB",
            began.elapsed(),
            last.rss.saturating_sub(first.rss) / 1024
        );
        assert_eq!(first.fds, start.fds, "fds grew over the first batch");
        assert_eq!(
            last.fds, first.fds,
            "fds grew from the first batch to the last"
        );
        assert!(
            last.threads <= first.threads,
            "threads grew from {} to {}",
            first.threads,
            last.threads
        );
        assert!(
            last.rss.saturating_sub(first.rss) < SOAK_RSS_GROWTH,
            "RSS grew by {} KiB from the first batch to the last",
            last.rss.saturating_sub(first.rss) / 1024
        );
    });
}
