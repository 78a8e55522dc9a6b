//! Out of file descriptors: with the soft `RLIMIT_NOFILE` lowered so that
//! only a few more fds can be opened, a start either succeeds or fails
//! with `SpawnError::ResourceExhausted` (EMFILE) at whichever step ran
//! out; a failed start releases every fd it had opened and spawns nothing.
//!
//! The limit is process-wide and the tests count this process's fds, so
//! they live in a binary of their own and take [`FDS`] in turn.

mod common;

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use actix_popen::{AsyncWait, Input, Output, Popen, SpawnError, Start};
use nix::libc;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

use common::{assert_gone, within};

/// Held by every test here.
static FDS: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    FDS.lock().unwrap_or_else(|e| e.into_inner())
}

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

/// `fd` and what it refers to, for messages.
fn describe(fd: u64) -> String {
    match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        Ok(target) => format!("{fd} -> {}", target.display()),
        Err(_) => format!("{fd} (closed)"),
    }
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

/// Runs `f` with the soft `RLIMIT_NOFILE` at `soft`, then restores it,
/// even if `f` panics.
fn with_soft_limit<T>(soft: u64, f: impl FnOnce() -> T) -> T {
    struct Restore(u64, u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            setrlimit(Resource::RLIMIT_NOFILE, self.0, self.1).expect("restore RLIMIT_NOFILE");
        }
    }
    let (old_soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let _restore = Restore(old_soft, hard);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).expect("lower RLIMIT_NOFILE");
    f()
}

/// Runs `test` in an actix System on a thread of its own, then checks that
/// the process has the same fds as before: every actor, pipe, pty and
/// pidfd of the test was released with the System.
fn in_a_system<F: std::future::Future<Output = ()> + 'static>(test: fn() -> F) {
    // The first runtime of the process opens tokio's signal socket pair,
    // which lives as long as the process: open it before counting.
    static WARM_UP: std::sync::Once = std::sync::Once::new();
    WARM_UP.call_once(|| drop(actix_rt::System::new()));
    let before = open_fds();
    std::thread::spawn(move || actix_rt::System::new().block_on(test()))
        .join()
        .expect("the test panicked");
    let after = open_fds();
    let leaked: Vec<String> = after.difference(&before).map(|&fd| describe(fd)).collect();
    assert!(
        leaked.is_empty(),
        "fds left open after the System ended: {leaked:?}"
    );
    assert_eq!(
        after, before,
        "fds closed by the System that it did not open"
    );
}

/// Each way of wiring the child, so that each runs out at its own steps
/// (pipes, the pty pair and its copies, `/dev/null`, the stdin pipe, the
/// spawn itself, the pidfd).
fn wirings() -> Vec<(&'static str, Popen)> {
    let true_ = || Popen::new("true");
    vec![
        ("pipes", true_()),
        ("stdin null", true_().stdin(Input::Null)),
        ("stdin pipe", true_().stdin(Input::Pipe)),
        ("pty", true_().pty()),
        ("stderr merged", true_().stderr(Output::MergeIntoStdout)),
        (
            "no pipes",
            true_().stdout(Output::Null).stderr(Output::Null),
        ),
    ]
}

#[test]
fn out_of_fds_is_resource_exhausted_and_leaks_nothing() {
    let _serial = serial();
    in_a_system(|| async {
        for (what, popen) in wirings() {
            let (mut failed, mut started) = (0, 0);
            for free in 0..=10 {
                let before = open_fds();
                let limit = limit_leaving(free);
                let result = with_soft_limit(limit, || popen.clone().start());
                match result {
                    Err(err) => {
                        assert!(
                            matches!(err, SpawnError::ResourceExhausted { .. }),
                            "{what}, {free} free: {err:?}"
                        );
                        assert_eq!(err.program(), "true");
                        let errno = err.io_error().and_then(|e| e.raw_os_error());
                        assert_eq!(errno, Some(libc::EMFILE), "{what}, {free} free: {err:?}");
                        assert!(err.to_string().contains("out of resources"), "{err}");
                        assert_eq!(open_fds(), before, "{what}, {free} free: fds leaked");
                        failed += 1;
                    }
                    Ok(process) => {
                        let pid = process.pid().expect("pid");
                        let code = within("AsyncWait", process.send(AsyncWait))
                            .await
                            .expect("actor")
                            .expect("AsyncWait");
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
    let _serial = serial();
    in_a_system(|| async {
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
                ("pipes", popen.clone().stdin(Input::Pipe)),
                ("pty", popen.clone().pty()),
                ("merged", popen.stderr(Output::MergeIntoStdout)),
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
