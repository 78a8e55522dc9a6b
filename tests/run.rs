//! Running a task to its end in one call: `Popen::output` and
//! `Popen::status`, inside an actix System, in a plain tokio runtime and
//! on a plain thread; stdin from bytes, or `/dev/null` by default.
//!
//! One test swaps this process's fd 0 for a pipe, so the tests take
//! [`SERIAL`] in turn.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use actix_popen::{InputFrom, Popen, RunError, SpawnErrorKind};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A bound for runs awaited outside an actix System.
const BOUND: Duration = common::SOON;

#[test]
fn output_gives_the_status_and_both_streams_inside_a_system() {
    let _serial = serial();
    common::bounded(async {
        let done = Popen::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .output()
            .await
            .expect("sh runs");
        assert_eq!(done.returncode.code(), 3);
        assert_eq!(&done.stdout[..], b"out\n");
        assert_eq!(&done.stderr[..], b"err\n");
    });
}

#[test]
fn output_works_in_a_plain_tokio_runtime() {
    let _serial = serial();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let done = runtime
        .block_on(async {
            tokio::time::timeout(BOUND, Popen::new("echo").arg("hi").output())
                .await
                .expect("the run ended within the bound")
        })
        .expect("echo runs");
    assert!(done.returncode.success());
    assert_eq!(&done.stdout[..], b"hi\n");
}

#[test]
fn output_and_status_work_on_a_thread_with_no_runtime() {
    let _serial = serial();
    let (tx, rx) = std::sync::mpsc::channel();
    // Another thread, so that a hang fails the test at the bound.
    std::thread::spawn(move || {
        let output = futures::executor::block_on(Popen::new("seq").arg("3").output());
        let status = futures::executor::block_on(Popen::new("false").status());
        let _ = tx.send((output, status));
    });
    let (output, status) = rx
        .recv_timeout(BOUND)
        .expect("the runs ended within the bound");
    assert_eq!(&output.expect("seq runs").stdout[..], b"1\n2\n3\n");
    assert_eq!(status.expect("false runs").code(), 1);
}

#[test]
fn input_is_written_then_the_stdin_is_closed() {
    let _serial = serial();
    common::bounded(async {
        let done = Popen::new("sort")
            .input("pear\napple\nfig\n")
            .output()
            .await
            .expect("sort runs");
        assert!(done.returncode.success());
        assert_eq!(&done.stdout[..], b"apple\nfig\npear\n");
    });
}

/// The child of `output()` and `status()` reads `/dev/null`, not the
/// host's stdin (here a pipe nobody writes: a child reading it would wait
/// for ever), unless the stdin was set.
#[test]
fn stdin_is_dev_null_unless_set() {
    let _serial = serial();
    let (read, _write) = std::io::pipe().expect("a pipe");
    let saved = nix::unistd::dup(std::io::stdin()).expect("dup of fd 0");
    nix::unistd::dup2_stdin(&read).expect("the pipe as fd 0");
    let stdin_of = |popen: Popen| async move {
        popen
            .args(["-c", "readlink /proc/self/fd/0"])
            .output()
            .await
            .expect("sh runs")
            .stdout
    };
    let (by_default, inherited) = actix_rt::System::new().block_on(async {
        let by_default = common::within("output()", stdin_of(Popen::new("sh"))).await;
        let inherited = common::within(
            "output() with the stdin inherited",
            stdin_of(Popen::new("sh").stdin(InputFrom::Inherit)),
        )
        .await;
        (by_default, inherited)
    });
    nix::unistd::dup2_stdin(&saved).expect("fd 0 restored");
    assert_eq!(&by_default[..], b"/dev/null\n");
    assert!(
        inherited.starts_with(b"pipe:"),
        "{:?}",
        String::from_utf8_lossy(&inherited)
    );
}

#[test]
fn status_gives_the_code() {
    let _serial = serial();
    common::bounded(async {
        let code = Popen::new("sh")
            .args(["-c", "exit 7"])
            .status()
            .await
            .expect("sh runs");
        assert_eq!(code.code(), 7);
    });
}

#[test]
fn input_with_a_stdin_that_is_not_a_pipe_is_refused() {
    let _serial = serial();
    common::bounded(async {
        let err = Popen::new("cat")
            .input("x")
            .stdin(InputFrom::Null)
            .output()
            .await
            .expect_err("input() needs a pipe");
        let RunError::Spawn(err) = err else {
            panic!("{err:?}");
        };
        assert!(
            matches!(err.kind(), SpawnErrorKind::InvalidConfig { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("input()"), "{err}");
    });
}

#[test]
fn a_missing_program_is_a_spawn_error_in_and_out_of_a_system() {
    let _serial = serial();
    let check = |result: Result<actix_popen::CompletedProcess, RunError>| match result {
        Err(RunError::Spawn(err)) => {
            assert!(
                matches!(err.kind(), SpawnErrorKind::NotFound { .. }),
                "{err:?}"
            );
            assert_eq!(err.program(), "no-such-program-xyz");
        }
        other => panic!("{other:?}"),
    };
    common::bounded(async { check(Popen::new("no-such-program-xyz").output().await) });
    check(futures::executor::block_on(
        Popen::new("no-such-program-xyz").output(),
    ));
}
