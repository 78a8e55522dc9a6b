//! Out of fds in the middle of a run: with tasks running, the soft
//! `RLIMIT_NOFILE` is lowered so that no spawn can get the fds it needs.
//! The spawns fail cleanly with `SpawnError::ResourceExhausted`, while the
//! running tasks, which need no new fd, deliver all their output and end
//! as usual; once they have, no fd is left behind.
//!
//! `tests/fd_exhaustion.rs` covers each step a start can run out at; this
//! covers what happens to the tasks around a failed start. The limit is
//! process-wide and the test counts this process's fds and children, so it
//! lives in a binary of its own and takes [`FDS`].

mod common;

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use actix::prelude::*;
use actix_popen::{
    AsyncWait, Input, IsAlive, Popen, ProcessHandle, ReturnCode, SpawnError, Start, Write,
};
use nix::libc;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{getpid, Pid};

use common::{assert_gone, event, within, Waiter};

/// Held by every test here.
static FDS: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    FDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long the test's System may run before the test counts as hung.
const HANG: Duration = Duration::from_secs(180);

/// Tasks running when the fds run out.
const RUNNING: usize = 4;

/// Each of them prints `seq 1 SEQ_END` once released: about 290 KB.
const SEQ_END: u32 = 50_000;

/// The fds this process has open.
fn open_fds() -> BTreeSet<u64> {
    let listed: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The directory's own fd was listed, and is closed now.
    listed
        .into_iter()
        .filter(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok())
        .collect()
}

/// The soft limit under which exactly `free` more fds can be opened: new
/// fds take the lowest free numbers below the limit.
fn limit_leaving(free: usize) -> u64 {
    let open = open_fds();
    (0u64..)
        .find(|&limit| {
            let below = open.iter().filter(|&&fd| fd < limit).count();
            limit as usize - below == free
        })
        .expect("a limit")
}

/// The soft `RLIMIT_NOFILE` lowered to a value, for as long as it lives
/// (across awaits, and restored even if the test panics).
struct LoweredLimit(u64, u64);

impl LoweredLimit {
    fn to(soft: u64) -> LoweredLimit {
        let (old_soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).expect("lower RLIMIT_NOFILE");
        LoweredLimit(old_soft, hard)
    }
}

impl Drop for LoweredLimit {
    fn drop(&mut self) {
        setrlimit(Resource::RLIMIT_NOFILE, self.0, self.1).expect("restore RLIMIT_NOFILE");
    }
}

/// Every process whose parent we are, running or zombie.
fn our_children() -> Vec<i32> {
    let me = getpid().as_raw();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let rest = stat.get(stat.rfind(')').unwrap_or(0) + 2..).unwrap_or("");
            rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) == Some(me)
        })
        .collect()
}

/// Kills the groups of the children it holds (each leads one) if the test
/// fails, and reaps them; on success they are gone already.
#[derive(Default)]
struct Cleanup(Mutex<Vec<i32>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let ours = our_children();
        for &pid in self.0.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if ours.contains(&pid) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = waitpid(Pid::from_raw(pid), None);
            }
        }
    }
}

/// What `up`, then `seq 1 SEQ_END`, prints.
fn expected_output() -> Vec<u8> {
    let mut expected = b"up\n".to_vec();
    for i in 1..=SEQ_END {
        expected.extend_from_slice(format!("{i}\n").as_bytes());
    }
    expected
}

async fn async_wait(handle: &ProcessHandle) -> ReturnCode {
    within("AsyncWait", handle.send(AsyncWait))
        .await
        .expect("the process actor is gone")
        .expect("AsyncWait failed")
}

/// Checks that a failed start is the clean out-of-fds error.
fn assert_out_of_fds(err: &SpawnError, what: &str) {
    assert!(
        matches!(err, SpawnError::ResourceExhausted { .. }),
        "{what}: {err:?}"
    );
    assert_eq!(err.program(), "true", "{what}");
    let errno = err.io_error().and_then(|e| e.raw_os_error());
    assert_eq!(errno, Some(libc::EMFILE), "{what}: {err:?}");
}

async fn body(cleanup: &Cleanup) {
    // Tasks that are running when the fds run out: each says "up", then
    // waits for a line on its stdin before printing its output.
    let (mut tasks, mut ups) = (Vec::new(), Vec::new());
    for _ in 0..RUNNING {
        let (waiter, awaited) = Waiter::start_new();
        let handle = Popen::new("sh")
            .args(["-c", &format!("echo up; read go; exec seq 1 {SEQ_END}")])
            .stdin(Input::Pipe)
            .subscribe(waiter.clone().recipient())
            .exit_listener(waiter.recipient())
            .start()
            .expect("cannot start sh");
        let pid = handle.pid().expect("no pid right after the start");
        cleanup
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pid as i32);
        let common::Awaited {
            first_chunk,
            exited,
            ..
        } = awaited;
        tasks.push((handle, pid, exited));
        ups.push(first_chunk);
    }
    for up in ups {
        assert_eq!(event("\"up\"", up).await, "up\n");
    }

    // Too few fds for a spawn (it needs four at once: two pipes), from
    // none left to three: each start fails, cleanly, and leaks nothing.
    for free in 0..=3 {
        let fds = open_fds();
        let limit = limit_leaving(free);
        let started = {
            let _low = LoweredLimit::to(limit);
            Popen::new("true").start()
        };
        let err = started.map(|_| ()).expect_err("started without the fds");
        assert_out_of_fds(&err, &format!("start with {free} fds free"));
        assert_eq!(open_fds(), fds, "{free} fds free: the failed start leaked");
    }

    // With none left: a prepared task fails to start and ends with 126,
    // and the running tasks, which need no new fd, run to their end.
    let limit = limit_leaving(0);
    let low = LoweredLimit::to(limit);
    let prepared = Popen::new("true").prepare().expect("prepare");
    let err = within("Start", prepared.send(Start))
        .await
        .expect("the process actor is gone")
        .expect_err("started without the fds");
    assert_out_of_fds(&err, "Start");
    assert_eq!(async_wait(&prepared).await, ReturnCode::from_raw(126));
    for (handle, pid, _) in &tasks {
        let alive = within("IsAlive", handle.send(IsAlive)).await.unwrap();
        assert!(alive, "pid {pid}'s task ended when a start failed");
        assert_eq!(handle.pid(), Some(*pid), "pid {pid} was reaped");
    }
    for (handle, _, _) in &tasks {
        within("Write", handle.send(Write("go\n".into())))
            .await
            .expect("the process actor is gone")
            .expect("cannot release the child");
    }
    let mut exits = Vec::new();
    for (handle, pid, exited) in tasks {
        let at_exit = event("Exited", exited).await;
        let exited = at_exit.exited[0];
        assert_eq!(exited.returncode, ReturnCode::from_raw(0), "pid {pid}");
        assert!(exited.output_complete, "pid {pid}: {exited:?}");
        let output = at_exit.bytes();
        assert_eq!(
            output.len(),
            expected_output().len(),
            "pid {pid}: bytes lost"
        );
        assert!(
            output == expected_output(),
            "pid {pid}: the output is not seq's"
        );
        assert_eq!(async_wait(&handle).await, ReturnCode::from_raw(0));
        assert_gone(pid);
        exits.push(exited);
    }
    drop(low);
    assert_eq!(exits.len(), RUNNING);

    // With fds again, starts work again.
    let again = Popen::new("true").start().expect("cannot start true");
    assert_eq!(async_wait(&again).await, ReturnCode::from_raw(0));
}

#[test]
fn running_out_of_fds_mid_run_fails_the_start_and_spares_the_running_tasks() {
    let _serial = serial();
    // The first runtime of the process opens tokio's signal socket pair,
    // which lives as long as the process: open it before counting.
    drop(System::new());
    let before = open_fds();
    let limit_before = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let cleanup = std::sync::Arc::new(Cleanup::default());

    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn({
        let cleanup = cleanup.clone();
        move || {
            System::new().block_on(body(&cleanup));
            let _ = tx.send(());
        }
    });
    match rx.recv_timeout(HANG) {
        Ok(()) => thread.join().expect("the System's thread panicked"),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test's System hung for {HANG:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }

    assert_eq!(
        getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit"),
        limit_before,
        "the limit was not restored"
    );
    let left = our_children();
    assert!(left.is_empty(), "children of ours left behind: {left:?}");
    let after = open_fds();
    let leaked: Vec<_> = after.difference(&before).collect();
    assert!(leaked.is_empty(), "fds left open: {leaked:?}");
    assert_eq!(after, before, "fds closed that the test did not open");
}
