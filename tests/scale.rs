//! Scale, in a form short enough for CI: a thousand children at once in
//! one System (no thread per child, little memory per child, all cancelled
//! and reaped together), and two thousand short-lived children through the
//! job pool (no growth of fds, threads or memory from the first few
//! hundred to the last).
//!
//! Each test prints its figures. The tests count this process's fds,
//! threads, memory and children, so they take [`COUNTING`] in turn.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::{
    AsyncWait, Cancel, Chunk, GetJobPool, JobPool, Popen, ProcessHandle, ProcessSupervisor,
    ReturnCode, SetJobLimits,
};
use futures::channel::oneshot;
use futures::future::join_all;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{getpid, Pid};

use common::{event, within};

/// Held by every test here.
static COUNTING: Mutex<()> = Mutex::new(());

fn counting() -> MutexGuard<'static, ()> {
    COUNTING.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a test's System may run before the test counts as hung.
const HANG: Duration = Duration::from_secs(180);

/// The bound for what nothing tells us about (actors releasing their fds
/// once nobody holds them), polled.
const SOON: Duration = Duration::from_secs(10);

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
// Measures
// ---------------------------------------------------------------------

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Our open fds.
fn fd_count() -> usize {
    // The directory's own fd is listed too.
    count("/proc/self/fd") - 1
}

fn thread_count() -> usize {
    count("/proc/self/task")
}

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// The fds this process has open, with what each refers to.
fn open_fds() -> BTreeMap<u64, String> {
    let listed: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    listed
        .into_iter()
        .filter_map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect()
}

/// Every process whose parent we are, running or zombie, with its state.
fn our_children() -> Vec<(i32, char)> {
    let me = getpid().as_raw();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may hold spaces and parentheses.
            let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid: i32 = fields.next()?.parse().ok()?;
            (ppid == me).then_some((pid, state))
        })
        .collect()
}

/// Waits, with a deadline, until we hold at most `fds` fds (actors stop,
/// and release theirs, once nobody holds their address); returns how many
/// we hold.
async fn settle_fds(fds: usize) -> usize {
    let deadline = Instant::now() + SOON;
    loop {
        let now = fd_count();
        if now <= fds || Instant::now() >= deadline {
            return now;
        }
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------

/// Kills the group of every child it was told about (each leads one) if
/// the test fails, and reaps it; on success they are gone already.
#[derive(Clone, Default)]
struct Cleanup(Arc<Mutex<Vec<i32>>>);

impl Cleanup {
    fn add(&self, handle: &ProcessHandle) {
        let pid = handle.pid().expect("no pid right after the start") as i32;
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let ours: Vec<i32> = our_children().into_iter().map(|(pid, _)| pid).collect();
        for &pid in self.0.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if ours.contains(&pid) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = waitpid(Pid::from_raw(pid), None);
            }
        }
    }
}

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

/// Runs `test` in a System on a thread of its own, failing if it hangs
/// past [`HANG`] or panics; then checks that no child of ours is left and
/// that the fds are those of before.
fn in_a_system<T, Fut>(test: impl FnOnce(Cleanup) -> Fut + Send + 'static) -> T
where
    T: Send + 'static,
    Fut: Future<Output = T>,
{
    // The first runtime of the process opens tokio's signal socket pair,
    // which lives as long as the process: open it before counting.
    static WARM_UP: Once = Once::new();
    WARM_UP.call_once(|| drop(System::new()));
    let cleanup = Cleanup::default();
    let before = open_fds();

    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn({
        let cleanup = cleanup.clone();
        move || {
            let _ = tx.send(System::new().block_on(test(cleanup)));
        }
    });
    let output = match rx.recv_timeout(HANG) {
        Ok(output) => output,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test's System hung for {HANG:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread ended without a result"),
        },
    };
    thread.join().expect("the System's thread panicked");

    let left = our_children();
    assert!(left.is_empty(), "children of ours left behind: {left:?}");
    let after = open_fds();
    let leaked: Vec<(&u64, &String)> = after
        .iter()
        .filter(|fd| !before.contains_key(fd.0))
        .collect();
    assert!(leaked.is_empty(), "fds left open: {leaked:?}");
    let closed: Vec<_> = before
        .iter()
        .filter(|fd| after.get(fd.0) != Some(fd.1))
        .collect();
    assert!(
        closed.is_empty(),
        "fds closed that the test did not open: {closed:?}"
    );
    drop(cleanup);
    output
}

// ---------------------------------------------------------------------
// A thousand children at once
// ---------------------------------------------------------------------

/// Counts the lines it is sent and tells when there are `expected`.
struct LineCounter {
    lines: usize,
    expected: usize,
    done: Option<oneshot::Sender<()>>,
}

impl Actor for LineCounter {
    type Context = Context<Self>;
}

impl Handler<Chunk> for LineCounter {
    type Result = ();

    fn handle(&mut self, chunk: Chunk, _ctx: &mut Context<Self>) {
        self.lines += chunk.data.iter().filter(|&&b| b == b'\n').count();
        if self.lines >= self.expected {
            if let Some(tx) = self.done.take() {
                let _ = tx.send(());
            }
        }
    }
}

/// A child that says it runs, then sleeps.
fn sleeper() -> Popen {
    Popen::new("sh").args(["-c", "echo up; exec sleep 1000"])
}

#[test]
fn a_thousand_children_at_once_cost_no_thread_and_little_memory() {
    let _counting = counting();
    // Each child costs three fds: the read ends of its stdout and stderr
    // pipes, and its pidfd.
    allow_fds(4 * CHILDREN as u64 + 256);
    in_a_system(|cleanup| async move {
        // Warm up what the first child and the first cancel set up once.
        ProcessSupervisor::get()
            .send(GetJobPool)
            .await
            .expect("the supervisor is gone");
        let fds_base = fd_count();
        let (tx, up) = oneshot::channel();
        let counter = LineCounter {
            lines: 0,
            expected: 1,
            done: Some(tx),
        }
        .start();
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
        let (tx, all_up) = oneshot::channel();
        let counter = LineCounter {
            lines: 0,
            expected: CHILDREN,
            done: Some(tx),
        }
        .start();
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
        let left = our_children();
        assert!(left.is_empty(), "children left after the cancel: {left:?}");
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
    let _counting = counting();
    in_a_system(|_cleanup| async move {
        let supervisor = ProcessSupervisor::get();
        within(
            "SetJobLimits",
            supervisor.send(SetJobLimits {
                max_jobs: Some(POOL),
                max_load: None,
            }),
        )
        .await
        .expect("the supervisor is gone");
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
