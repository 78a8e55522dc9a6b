//! Out of file descriptors: with the soft `RLIMIT_NOFILE` lowered so that
//! only a few more fds can be opened, a start either succeeds or fails
//! with `SpawnErrorKind::ResourceExhausted` (EMFILE) at whichever step ran
//! out; a failed start releases every fd it had opened and spawns nothing.
//!
//! The limit is process-wide and the tests count this process's fds, so
//! they live in a binary of their own and take [`FDS`] in turn.

mod common;

use std::sync::Mutex;

use actix_popen::{InputFrom, OutputTo, Popen, Start};

use common::fds::{assert_out_of_fds, limit_leaving, open_fds, LoweredLimit};
use common::harness::{lock, run_system};
use common::{assert_gone, async_wait};

/// Held by every test here.
static FDS: Mutex<()> = Mutex::new(());

/// Each way of wiring the child, so that each runs out at its own steps
/// (pipes, the pty pair and its copies, `/dev/null`, the stdin pipe, the
/// spawn itself, the pidfd).
fn wirings() -> Vec<(&'static str, Popen)> {
    let true_ = || Popen::new("true");
    vec![
        ("pipes", true_()),
        ("stdin null", true_().stdin(InputFrom::Null)),
        ("stdin pipe", true_().stdin(InputFrom::Pipe)),
        ("pty", true_().pty()),
        ("stderr merged", true_().stderr(OutputTo::MergeIntoStdout)),
        (
            "no pipes",
            true_().stdout(OutputTo::Null).stderr(OutputTo::Null),
        ),
    ]
}

#[test]
fn out_of_fds_is_resource_exhausted_and_leaks_nothing() {
    let _serial = lock(&FDS);
    // Every actor, pipe, pty and pidfd of the test is released with the
    // System: no child of ours and no fd is left once its thread is gone.
    run_system(|_| async {
        for (what, popen) in wirings() {
            let (mut failed, mut started) = (0, 0);
            for free in 0..=10 {
                let before = open_fds();
                let limit = limit_leaving(free);
                let result = {
                    let _low = LoweredLimit::to(limit);
                    popen.clone().start()
                };
                match result {
                    Err(err) => {
                        assert_out_of_fds(&err, &format!("{what}, {free} free"));
                        assert_eq!(open_fds(), before, "{what}, {free} free: fds leaked");
                        failed += 1;
                    }
                    Ok(process) => {
                        let pid = process.pid().expect("pid");
                        let code = async_wait(&process).await;
                        assert!(code.success(), "{what}, {free} free: {code}");
                        assert_gone(pid);
                        started += 1;
                    }
                }
            }
            assert!(failed > 0, "{what}: never ran out of fds");
            assert!(started > 0, "{what}: never started, even with 10 fds free");
        }
    });
}

/// A start refused by the OS for any other reason releases every fd it
/// had opened too (checked per attempt, since no actor exists).
#[test]
fn failed_starts_release_every_fd() {
    let _serial = lock(&FDS);
    // Every actor, pipe, pty and pidfd of the test is released with the
    // System: no child of ours and no fd is left once its thread is gone.
    run_system(|_| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let huge = "x".repeat(1 << 20);
        let failing = [
            ("not found", Popen::new("actix-popen-no-such-command")),
            ("directory", Popen::new(dir.path())),
            ("E2BIG", Popen::new("true").arg(&huge)),
            (
                "no cwd",
                Popen::new("true").current_dir(dir.path().join("no")),
            ),
        ];
        for (what, popen) in failing {
            for (wiring, popen) in [
                ("pipes", popen.clone().stdin(InputFrom::Pipe)),
                ("pty", popen.clone().pty()),
                ("merged", popen.stderr(OutputTo::MergeIntoStdout)),
            ] {
                let before = open_fds();
                let err = popen.clone().start().expect_err(what);
                assert!(err.io_error().is_some(), "{what}, {wiring}: {err:?}");
                assert_eq!(open_fds(), before, "{what}, {wiring}: fds leaked by start");
                let process = popen.prepare().expect("prepare");
                let err = process.send(Start).await.expect("actor").expect_err(what);
                assert!(err.io_error().is_some(), "{what}, {wiring}: {err:?}");
            }
        }
    });
}
