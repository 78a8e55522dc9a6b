//! Never a signal to a process that is not part of the task, even once the
//! task's numbers could be free (issue 8, kinds 1 and 7).
//!
//! Each scenario runs in a private pid namespace (`unshare --pid --fork
//! --mount-proc`, which needs root), where writing
//! `/proc/sys/kernel/ns_last_pid` makes the next process get a chosen pid:
//! a "stranger" is started at once with the number a task's group leader
//! had, if that number is free. The library must keep it from being free
//! while it may still signal it, so the stranger must survive whatever the
//! task gets.
//!
//! Without root or `unshare` the scenarios cannot run: each test says so
//! in one line and passes, unless `ACTIX_POPEN_REQUIRE_PIDNS` is set (as
//! CI sets it), in which case it fails.

mod common;

use common::SOON;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::{Cancel, Popen, ReturnCode};

use common::actors::{ChunkSink, LineReader};
use common::procs::{leads_own_session, proc_stat, wait_until};

/// Names the scenario the inner test runs.
const SCENARIO: &str = "ACTIX_POPEN_PIDNS_SCENARIO";

fn outer(scenario: &str) {
    let required = std::env::var_os("ACTIX_POPEN_REQUIRE_PIDNS").is_some();
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let why = match &probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(err) => Some(format!("unshare: {err}")),
    };
    if let Some(why) = why {
        assert!(
            !required,
            "ACTIX_POPEN_REQUIRE_PIDNS is set but a pid namespace cannot be made: {why}"
        );
        eprintln!("skipped: needs root and unshare(1) for a private pid namespace ({why})");
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(exe)
        .args([
            "inner_scenario",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, scenario)
        .output()
        .expect("cannot run unshare");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{report}");
    assert!(
        out.status.success() && report.contains("1 passed"),
        "scenario {scenario} failed in its pid namespace"
    );
}

#[test]
fn cancel_after_the_leader_exited_never_signals_a_reused_group_id() {
    outer("cancel");
}

#[test]
fn shutdown_after_the_leader_exited_never_signals_a_reused_group_id() {
    outer("shutdown");
}

#[test]
fn a_child_killed_by_a_real_time_signal_is_decoded_and_its_pid_never_signalled() {
    outer("realtime");
}

/// The scenarios, run by the tests above as pid 1 of a fresh pid
/// namespace.
#[test]
#[ignore = "runs inside a private pid namespace, started by the other tests of this file"]
fn inner_scenario() {
    let scenario = std::env::var(SCENARIO)
        .expect("run through the other tests of this file, which set ACTIX_POPEN_PIDNS_SCENARIO");
    assert_eq!(std::process::id(), 1, "not in a pid namespace of our own");
    match scenario.as_str() {
        "cancel" => leader_exited_then(End::Cancel),
        "shutdown" => leader_exited_then(End::SystemStop),
        "realtime" => real_time_signal(),
        other => panic!("no scenario {other}"),
    }
}

enum End {
    Cancel,
    SystemStop,
}

/// Starts a stranger: `sleep`, leading a process group of its own, with
/// pid `pid` if that number is free now.
fn stranger_at(pid: u32) -> Child {
    std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1))
        .expect("cannot write ns_last_pid");
    Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .expect("cannot start the stranger")
}

/// Starts strangers until one gets pid `pid`, for up to a second (the
/// library should keep the number reserved all along, so that the second
/// passes); returns the last one.
fn stranger_taking(pid: u32) -> Child {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let mut stranger = stranger_at(pid);
        if stranger.id() == pid || Instant::now() >= deadline {
            return stranger;
        }
        let _ = stranger.kill();
        let _ = stranger.wait();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Fails unless the stranger is still running; then ends it.
fn assert_survived(mut stranger: Child, took_the_number: bool) {
    let status = stranger.try_wait().expect("try_wait");
    let _ = stranger.kill();
    let _ = stranger.wait();
    println!("the stranger got the leader's old pid: {took_the_number}; its status: {status:?}");
    assert!(
        status.is_none(),
        "a process outside the task was signalled: {status:?}"
    );
}

/// Waits until `pid` has exited: a zombie, or gone.
fn await_exit(pid: u32) {
    wait_until(&format!("pid {pid} exited"), SOON, || {
        proc_stat(pid as i32).is_none_or(|stat| stat.state == 'Z')
    });
}

/// The leader exits while a grandchild that left its group (`setsid`)
/// holds its output, so the task goes on; a stranger then asks for the
/// leader's number; then the task is cancelled, or its System stopped.
fn leader_exited_then(end: End) {
    let system = System::new();
    let (leader, grandchild, stranger) = system.block_on(async {
        let (sink, chunks) = ChunkSink::start_new();
        let handle = Popen::new("sh")
            .args(["-c", "setsid sleep 1000 & echo $!; exit 0"])
            .cancel_timeout(Duration::from_millis(200))
            .subscribe(sink.recipient())
            .start()
            .expect("cannot start sh");
        let leader = handle.pid().expect("the leader's pid");
        let grandchild = LineReader::new(chunks, SOON).next_pid().await as u32;
        // Once it has called setsid, nothing sent to the group reaches it.
        wait_until("the grandchild's setsid", SOON, || {
            leads_own_session(grandchild as i32)
        });
        await_exit(leader);
        assert_eq!(
            handle.try_wait(),
            None,
            "the task goes on: its output is open"
        );
        let stranger = stranger_taking(leader);
        if let End::Cancel = end {
            handle.do_send(Cancel);
            let code = common::wait(&handle, SOON).await;
            assert_eq!(code, ReturnCode::from_raw(0), "the leader's own status");
        }
        (leader, grandchild, stranger)
    });
    // For End::SystemStop, dropping the System cancels what still runs.
    drop(system);
    let took = stranger.id() == leader;
    assert_survived(stranger, took);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(grandchild as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A child killed by a real-time signal: its status is decoded, it counts
/// as reaped, and nothing is sent to its pid afterwards (here: when the
/// System stops).
fn real_time_signal() {
    let system = System::new();
    let (pid, stranger) = system.block_on(async {
        let handle = Popen::new("sleep")
            .arg("1000")
            .start()
            .expect("cannot start sleep");
        let pid = handle.pid().expect("pid");
        let signal = nix::libc::SIGRTMIN() + 6;
        // SAFETY: kill(2) of our own running child.
        assert_eq!(unsafe { nix::libc::kill(pid as i32, signal) }, 0);
        let code = common::wait(&handle, SOON).await;
        assert_eq!(code, ReturnCode::from_raw(-signal), "decoded as -N");
        assert_eq!(handle.pid(), None, "a reaped child's pid is not ours");
        (pid, stranger_at(pid))
    });
    drop(system);
    let took = stranger.id() == pid;
    assert_survived(stranger, took);
}
