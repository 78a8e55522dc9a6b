//! One cancel escalation for every path (issue 8, kinds 2, 3, 7 and 11):
//! every member of a cancelled group still alive at the cancel timeout
//! gets SIGKILL even when the leader obeyed at once; a stopped process gets
//! SIGCONT right after SIGTERM, so its cleanup runs; a death by a
//! real-time signal is decoded; and a task's pidfd is closed when the task
//! ends, not when its escalation's timer fires.

mod common;

use common::SOON;

use std::path::Path;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::{Cancel, Collector, GetValue, Popen, ProcessHandle, ReturnCode};

use common::actors::{ChunkSink, LineReader};
use common::procs::{await_dead, await_stopped, poll_until, proc_stat, wait_dead, Cleanup};
use common::wait;

/// Starts `sh -c script` with the given cancel timeout; returns the handle,
/// a line reader on its stdout and a collector of everything.
fn start_sh(
    script: &str,
    cancel_timeout: Duration,
    cleanup: &Cleanup,
) -> (ProcessHandle, LineReader, Addr<Collector>) {
    let (sink, chunks) = ChunkSink::start_new();
    let collector = Collector::start_default();
    let handle = Popen::new("sh")
        .args(["-c", script])
        .cancel_timeout(cancel_timeout)
        .subscribe(sink.recipient())
        .subscribe(collector.clone().recipient())
        .start()
        .expect("cannot start sh");
    cleanup.add(&handle);
    (handle, LineReader::new(chunks, SOON), collector)
}

/// A member of the group that ignores SIGTERM (it says its pid once it
/// does) and then holds none of our pipes; the leader dies of the SIGTERM
/// at once, which ends the task.
const MEMBER_IGNORES_TERM: &str =
    r#"sh -c 'trap "" TERM; echo $$; exec sleep 1000 </dev/null >/dev/null 2>&1' & wait"#;

#[test]
fn a_member_ignoring_sigterm_gets_sigkill_though_the_leader_obeyed() {
    common::bounded(async {
        let cleanup = Cleanup::default();
        let timeout = Duration::from_millis(300);
        let (handle, mut lines, _) = start_sh(MEMBER_IGNORES_TERM, timeout, &cleanup);
        let member = lines.next_pid().await;
        cleanup.add_pid(member);
        let cancelled = Instant::now();
        handle.do_send(Cancel);
        let code = wait(&handle, SOON).await;
        assert_eq!(code, ReturnCode::from_raw(-15), "the leader obeyed");
        assert!(
            await_dead(member, cancelled + timeout + SOON).await,
            "the member ignoring SIGTERM survived the cancel: {:?}",
            proc_stat(member)
        );
        let died_after = cancelled.elapsed();
        assert!(died_after >= timeout, "killed after {died_after:?}");
        // The leader, kept as a zombie until the SIGKILL, is reaped then.
        poll_until("the leader's reap", SOON, || handle.pid().is_none()).await;
    });
}

#[test]
fn a_member_ignoring_sigterm_is_killed_when_the_system_stops() {
    let cleanup = Cleanup::default();
    let system = System::new();
    let member = system.block_on(async {
        let (_handle, mut lines, _) =
            start_sh(MEMBER_IGNORES_TERM, Duration::from_millis(300), &cleanup);
        lines.next_pid().await
    });
    cleanup.add_pid(member);
    drop(system);
    assert!(
        wait_dead(member, Instant::now() + SOON),
        "the member survived the System's stop"
    );
}

/// Stops itself, with a cleanup on SIGTERM that says so and exits 7.
const STOPS_ITSELF: &str =
    r#"trap 'echo cleanup; exit 7' TERM; echo ready; kill -STOP $$; echo resumed; exec sleep 1000"#;

#[test]
fn a_stopped_child_runs_its_cleanup_on_cancel() {
    common::bounded(async {
        let cleanup = Cleanup::default();
        // Long enough that a SIGKILL at the timeout would fail the test.
        let (handle, mut lines, collector) =
            start_sh(STOPS_ITSELF, Duration::from_secs(5), &cleanup);
        assert_eq!(lines.next().await, "ready");
        await_stopped(handle.pid().expect("pid") as i32, SOON).await;
        handle.do_send(Cancel);
        let code = wait(&handle, SOON).await;
        let output = collector.send(GetValue).await.unwrap();
        assert_eq!(
            code,
            ReturnCode::from_raw(7),
            "the cleanup did not run: {:?}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("cleanup"));
    });
}

#[test]
fn a_stopped_member_of_the_group_runs_its_cleanup_on_cancel() {
    common::bounded(async {
        let cleanup = Cleanup::default();
        // The leader outlives the SIGTERM (it ignores it, after starting the
        // member, which could not trap it otherwise): were it to die first, the
        // group would become orphaned with a stopped member, and the kernel
        // itself would send that member SIGHUP, which kills it before its
        // SIGTERM handler runs.
        let script = r#"sh -c 'trap "echo member cleanup; exit 0" TERM; echo $$; kill -STOP $$; exec sleep 1000' & trap "" TERM; echo leader ready; wait"#;
        let (handle, mut lines, collector) = start_sh(script, Duration::from_secs(5), &cleanup);
        let (first, second) = (lines.next().await, lines.next().await);
        let member: i32 = if first == "leader ready" {
            &second
        } else {
            &first
        }
        .parse()
        .expect("the member's pid");
        cleanup.add_pid(member);
        await_stopped(member, SOON).await;
        handle.do_send(Cancel);
        wait(&handle, SOON).await;
        let output = collector.send(GetValue).await.unwrap();
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("member cleanup"),
            "the stopped member did not run its cleanup: {:?}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(await_dead(member, Instant::now() + SOON).await);
    });
}

#[test]
fn a_stopped_child_runs_its_cleanup_when_the_system_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mark = dir.path().join("cleaned");
    let script = format!(
        r#"trap 'echo done > {}; exit 7' TERM; echo ready; kill -STOP $$; exec sleep 1000"#,
        mark.display()
    );
    let cleanup = Cleanup::default();
    let system = System::new();
    system.block_on(async {
        let (handle, mut lines, _) = start_sh(&script, Duration::from_secs(5), &cleanup);
        assert_eq!(lines.next().await, "ready");
        await_stopped(handle.pid().expect("pid") as i32, SOON).await;
    });
    let stopping = Instant::now();
    drop(system);
    assert!(
        Path::new(&mark).exists(),
        "the stopped child's cleanup did not run (the System stopped after {:?})",
        stopping.elapsed()
    );
}

#[test]
fn a_death_by_a_real_time_signal_is_reported_as_minus_n() {
    common::bounded(async {
        let cleanup = Cleanup::default();
        let handle = Popen::new("sleep")
            .arg("1000")
            .start()
            .expect("cannot start sleep");
        cleanup.add(&handle);
        let pid = handle.pid().expect("pid");
        let signal = nix::libc::SIGRTMIN() + 6;
        // SAFETY: kill(2) of our own running child.
        assert_eq!(unsafe { nix::libc::kill(pid as i32, signal) }, 0);
        assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(-signal));
        assert_eq!(handle.pid(), None, "reaped: its pid is no longer ours");
    });
}

/// The `Pid:` line of fd `fd`'s fdinfo if it is a pidfd: the pid, or -1
/// once that process was reaped.
fn pidfd_target(fd: &str) -> Option<i64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    if link.to_string_lossy() != "anon_inode:[pidfd]" {
        return None;
    }
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("Pid:"))
        .and_then(|pid| pid.trim().parse().ok())
}

/// The fds of this process that are pidfds of `pid`.
fn pidfds_of(pid: u32) -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| entry.ok()?.file_name().to_str().map(str::to_owned))
        .filter(|fd| pidfd_target(fd) == Some(i64::from(pid)))
        .collect()
}

#[test]
fn a_cancelled_task_closes_its_pidfd_when_it_ends() {
    common::bounded(async {
        let cleanup = Cleanup::default();
        // A timer an hour away must not keep the pidfd open.
        let (handle, mut lines, _) = start_sh(
            "echo ready; exec sleep 1000",
            Duration::from_secs(3600),
            &cleanup,
        );
        assert_eq!(lines.next().await, "ready");
        let pid = handle.pid().expect("pid");
        let fds = pidfds_of(pid);
        assert_eq!(fds.len(), 1, "one pidfd while it runs");
        handle.do_send(Cancel);
        assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(-15));
        // Closed: the number is free, or holds something else than a pidfd of
        // a reaped process (-1) or of ours.
        let target = pidfd_target(&fds[0]);
        assert!(
            target != Some(-1) && target != Some(i64::from(pid)),
            "the pidfd is still open after the task ended"
        );
    });
}
