//! Spawn errors are values that name the program and keep the OS error:
//! not found, permission denied, E2BIG (naming the largest string), an
//! invalid description, a missing working directory, no arbiter. A start
//! that fails leaves no child behind.

mod common;

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use actix_popen::SpawnErrorKind;
use actix_popen::{
    AsyncWait, Cancel, InputFrom, OutputTo, Pipeline, PipelineError, Popen, ProcessHandle,
    ReturnCode, SpawnError, Start,
};
use nix::libc;
use nix::unistd::{sysconf, SysconfVar};

use common::harness::on_own_thread;
use common::procs::{named_sleep, our_children, proc_comm};
use common::{event, within, GetEvents, ReapOnDrop, Waiter};

/// The kernel's limit on one argument or environment string
/// (`MAX_ARG_STRLEN`): 32 pages.
fn max_arg_strlen() -> usize {
    let page = sysconf(SysconfVar::PAGE_SIZE)
        .expect("sysconf")
        .expect("a page size");
    32 * usize::try_from(page).expect("a positive page size")
}

/// The raw OS error behind `err`.
fn errno(err: &SpawnError) -> Option<i32> {
    err.io_error().and_then(io::Error::raw_os_error)
}

/// Starts `popen` on a prepared task with listeners; expects the start to
/// fail, and the task to end with `code` and notify both listeners with no
/// pid. Returns the error.
async fn failed_start(popen: Popen, code: i32) -> SpawnError {
    let (waiter, awaited) = Waiter::start_new();
    let process = popen
        .start_listener(waiter.clone().recipient())
        .exit_listener(waiter.clone().recipient())
        .prepare()
        .expect("prepare");
    let err = process
        .send(Start)
        .await
        .expect("actor")
        .expect_err("the start should fail");
    let events = event("Exited", awaited.exited).await;
    assert_eq!(events.started.len(), 1);
    assert_eq!(events.started[0].pid, None);
    assert_eq!(events.exited.len(), 1);
    assert_eq!(events.exited[0].pid, None);
    assert_eq!(events.exited[0].returncode, ReturnCode::from_raw(code));
    let waited = within("AsyncWait", process.send(AsyncWait)).await;
    assert_eq!(waited.expect("actor").expect("AsyncWait").code(), code);
    assert_eq!(process.pid(), None);
    let events = waiter.send(GetEvents).await.expect("waiter");
    assert_eq!((events.started.len(), events.exited.len()), (1, 1));
    err
}

#[test]
fn program_not_found_names_the_program() {
    common::bounded(async {
        for program in ["actix-popen-no-such-command", "/nonexistent/actix-popen"] {
            let err = Popen::new(program).start().unwrap_err();
            assert!(
                matches!(err.kind(), SpawnErrorKind::NotFound { .. }),
                "{err:?}"
            );
            assert_eq!(err.program(), program);
            assert_eq!(err.to_string(), format!("{program}: command not found"));
            assert_eq!(errno(&err), Some(libc::ENOENT));
            assert!(std::error::Error::source(&err).is_some());
        }
    });
}

/// A prepared task whose program is not found ends with 127, as a shell
/// reports it, and its listeners hear of it.
#[test]
fn prepared_start_of_a_missing_program_ends_with_127() {
    common::bounded(async {
        let err = failed_start(Popen::new("actix-popen-no-such-command"), 127).await;
        assert!(
            matches!(err.kind(), SpawnErrorKind::NotFound { .. }),
            "{err:?}"
        );
    });
}

/// Writes an executable-looking script with mode 0644 into `dir`.
fn non_executable_script(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("script.sh");
    std::fs::write(&path, "#!/bin/sh\nexit 0\n").expect("write the script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    path
}

#[test]
fn non_executable_file_is_permission_denied() {
    common::bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = non_executable_script(dir.path());
        let program = path.to_str().expect("a UTF-8 path");
        let err = Popen::new(program).start().unwrap_err();
        assert!(
            matches!(err.kind(), SpawnErrorKind::PermissionDenied { .. }),
            "{err:?}"
        );
        assert_eq!(err.program(), program);
        assert_eq!(err.to_string(), format!("{program}: permission denied"));
        assert_eq!(errno(&err), Some(libc::EACCES));
    });
}

/// A prepared task whose program cannot be executed ends with 126.
#[test]
fn prepared_start_of_a_non_executable_file_ends_with_126() {
    common::bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = non_executable_script(dir.path());
        let err = failed_start(Popen::new(&path), 126).await;
        assert!(
            matches!(err.kind(), SpawnErrorKind::PermissionDenied { .. }),
            "{err:?}"
        );
    });
}

/// Linux refuses to execute a directory with EACCES.
#[test]
fn directory_as_program_is_permission_denied() {
    common::bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let program = dir.path().to_str().expect("a UTF-8 path");
        let err = Popen::new(program).start().unwrap_err();
        assert!(
            matches!(err.kind(), SpawnErrorKind::PermissionDenied { .. }),
            "{err:?}"
        );
        assert_eq!(err.program(), program);
        assert_eq!(errno(&err), Some(libc::EACCES));
    });
}

/// One environment variable longer than the kernel's per-string limit:
/// E2BIG, naming the variable and its size as the kernel counts it
/// (`NAME=VALUE` and the NUL).
#[test]
fn huge_environment_variable_is_named() {
    common::bounded(async {
        const NAME: &str = "ACTIX_POPEN_HUGE";
        let value = "x".repeat(max_arg_strlen());
        let err = Popen::new("true")
            .stdin(InputFrom::Null)
            .env(NAME, &value)
            .start()
            .unwrap_err();
        let SpawnErrorKind::ArgumentListTooLong { largest, size, .. } = err.kind() else {
            panic!("expected ArgumentListTooLong, got {err:?}");
        };
        assert_eq!(err.program(), "true");
        assert_eq!(largest, &format!("environment variable {NAME}"));
        assert_eq!(*size, value.len() + NAME.len() + 2);
        assert_eq!(errno(&err), Some(libc::E2BIG));
        let message = err.to_string();
        assert!(
            message.starts_with("true: argument list too long"),
            "{message}"
        );
        assert!(
            message.contains(&format!("environment variable {NAME}")),
            "{message}"
        );
        assert!(message.contains(&size.to_string()), "{message}");
    });
}

/// One argument longer than the per-string limit: E2BIG naming
/// `argument 1` (argument 0 being the program), its size with the NUL.
#[test]
fn huge_argument_is_named() {
    common::bounded(async {
        let huge = "y".repeat(max_arg_strlen());
        let err = Popen::new("true")
            .stdin(InputFrom::Null)
            .arg(&huge)
            .start()
            .unwrap_err();
        let SpawnErrorKind::ArgumentListTooLong { largest, size, .. } = err.kind() else {
            panic!("expected ArgumentListTooLong, got {err:?}");
        };
        assert_eq!(largest, "argument 1");
        assert_eq!(*size, huge.len() + 1);
        assert_eq!(errno(&err), Some(libc::E2BIG));
        assert!(err.to_string().contains("argument 1"), "{err}");
    });
}

/// A bufsize of 0 and stdout merged into itself are refused before
/// anything is spawned, by `start` and by `prepare`.
#[test]
fn invalid_descriptions_are_refused() {
    common::bounded(async {
        let zero = || Popen::new("true").bufsize(0);
        let merged = || Popen::new("true").stdout(OutputTo::MergeIntoStdout);
        for (what, err) in [
            ("bufsize 0, start", zero().start().unwrap_err()),
            ("bufsize 0, prepare", zero().prepare().unwrap_err()),
            ("stdout merged, start", merged().start().unwrap_err()),
            ("stdout merged, prepare", merged().prepare().unwrap_err()),
        ] {
            assert!(
                matches!(err.kind(), SpawnErrorKind::InvalidConfig { .. }),
                "{what}: {err:?}"
            );
            assert_eq!(err.program(), "true", "{what}");
            assert!(err.io_error().is_none(), "{what}");
            assert!(
                err.to_string().starts_with("true: invalid configuration: "),
                "{what}: {err}"
            );
        }
        let err = zero().start().unwrap_err();
        assert!(err.to_string().contains("bufsize"), "{err}");
        let err = merged().start().unwrap_err();
        assert!(err.to_string().contains("stdout"), "{err}");
    });
}

/// Expects `result` to be a refusal; a task that was started or queued
/// instead is cancelled (or left to end) and awaited, then the test fails.
async fn refused(what: &str, result: Result<ProcessHandle, SpawnError>) -> SpawnError {
    match result {
        Err(err) => err,
        Ok(handle) => {
            handle.do_send(Cancel);
            let code = within("the task that should not exist", handle.send(AsyncWait)).await;
            panic!("{what}: accepted, and the task ended with {code:?}");
        }
    }
}

/// Strings that exec cannot pass on as given are refused by every way to
/// start a task, before anything is spawned: an environment variable name
/// that is empty or holds `=` (std would pass `PATH=/x:` set to `y` on as
/// `PATH=/x:=y`, overriding PATH) or a NUL byte, and a NUL byte in a
/// value, an argument, the program or the working directory.
#[test]
fn strings_exec_cannot_pass_on_are_refused_everywhere() {
    common::bounded(async {
        type Case = (&'static str, fn() -> Popen, &'static str);
        let cases: [Case; 8] = [
            (
                "a name with '='",
                || Popen::new("true").env("PATH=/x:", "y"),
                "\"PATH=/x:\" contains '='",
            ),
            (
                "an empty name",
                || Popen::new("true").env("", "y"),
                "name is empty",
            ),
            (
                "a name with NUL",
                || Popen::new("true").env("A\0B", "y"),
                "\"A\\0B\" contains a NUL byte",
            ),
            (
                "a value with NUL",
                || Popen::new("true").env("GOOD", "a\0b"),
                "value of the environment variable \"GOOD\" contains a NUL byte",
            ),
            (
                "a removed name with '='",
                || Popen::new("true").env_remove("A=B"),
                "\"A=B\" contains '='",
            ),
            (
                "an argument with NUL",
                || Popen::new("true").args(["ok", "a\0b"]),
                "argument 2 (\"a\\0b\") contains a NUL byte",
            ),
            (
                "a program with NUL",
                || Popen::new("tr\0ue"),
                "contains a NUL byte",
            ),
            (
                "a working directory with NUL",
                || Popen::new("true").current_dir("/tmp\0x"),
                "working directory \"/tmp\\0x\" contains a NUL byte",
            ),
        ];
        for (what, popen, reason) in cases {
            for (how, err) in [
                ("start", refused(what, popen().start()).await),
                ("prepare", refused(what, popen().prepare()).await),
                ("submit", refused(what, popen().submit()).await),
            ] {
                assert!(
                    matches!(err.kind(), SpawnErrorKind::InvalidConfig { .. }),
                    "{what}, {how}: {err:?}"
                );
                assert!(err.to_string().contains(reason), "{what}, {how}: {err}");
            }
            let pipeline = Pipeline::new()
                .stage(popen())
                .stage(Popen::new("true"))
                .start();
            match pipeline {
                Err(PipelineError::Spawn { stage: 0, source })
                    if matches!(source.kind(), SpawnErrorKind::InvalidConfig { .. }) => {}
                Err(err) => panic!("{what}, pipeline: {err:?}"),
                Ok(pipeline) => {
                    pipeline.do_send(Cancel);
                    let code = within(
                        "the pipeline that should not exist",
                        pipeline.send(AsyncWait),
                    )
                    .await;
                    panic!("{what}, pipeline: accepted, and it ended with {code:?}");
                }
            }
        }
    });
}

/// A working directory that does not exist is reported as such, not as a
/// missing program.
#[test]
fn missing_working_directory_is_named() {
    common::bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let err = Popen::new("true")
            .stdin(InputFrom::Null)
            .current_dir(&missing)
            .start()
            .unwrap_err();
        assert!(
            !matches!(err.kind(), SpawnErrorKind::NotFound { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(!message.contains("command not found"), "{message}");
        assert!(
            message.contains(missing.to_str().expect("a UTF-8 path")),
            "{message}"
        );
        let source = err.io_error().expect("an OS error");
        assert_eq!(source.kind(), io::ErrorKind::NotFound, "{source:?}");
    });
}

/// The error about a missing working directory keeps the OS error number,
/// as the errors of every other OS failure do.
#[test]
fn missing_working_directory_keeps_the_errno() {
    common::bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Popen::new("true")
            .stdin(InputFrom::Null)
            .current_dir(dir.path().join("missing"))
            .start()
            .unwrap_err();
        assert_eq!(errno(&err), Some(libc::ENOENT), "{err:?}");
    });
}

/// A working directory that is a regular file is reported as a problem
/// with the directory, as a missing one is.
#[test]
fn working_directory_that_is_a_file_is_named() {
    common::bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, "").expect("write");
        let err = Popen::new("true")
            .stdin(InputFrom::Null)
            .current_dir(&file)
            .start()
            .unwrap_err();
        assert_eq!(errno(&err), Some(libc::ENOTDIR));
        let message = err.to_string();
        assert!(
            message.contains(file.to_str().expect("a UTF-8 path")),
            "{message}"
        );
    });
}

/// Our children (and zombies) whose command name is `comm`.
fn children_named(comm: &str) -> Vec<u32> {
    our_children()
        .into_iter()
        .filter(|&(pid, _)| proc_comm(pid).as_deref() == Some(comm))
        .map(|(pid, _)| pid as u32)
        .collect()
}

/// Outside any actix System, `start` and `prepare` fail with `NoArbiter`
/// before spawning anything.
#[test]
fn start_outside_a_system_is_no_arbiter_and_spawns_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = named_sleep(dir.path(), "noarb-probe");
    let popen = Popen::new(&program).arg("30").stdin(InputFrom::Null);
    let err = popen.clone().start().unwrap_err();
    assert!(matches!(err.kind(), SpawnErrorKind::NoArbiter), "{err:?}");
    assert_eq!(err.program(), program.to_str().expect("a UTF-8 path"));
    assert!(err.to_string().contains("no actix arbiter"), "{err}");
    let err = popen.clone().prepare().unwrap_err();
    assert!(matches!(err.kind(), SpawnErrorKind::NoArbiter), "{err:?}");
    assert_eq!(children_named("noarb-probe"), Vec::<u32>::new());
}

/// Inside a bare tokio runtime (no actix arbiter) too.
#[test]
fn start_in_a_bare_tokio_runtime_is_no_arbiter_and_spawns_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = named_sleep(dir.path(), "tokio-probe");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let err = runtime
        .block_on(async {
            Popen::new(&program)
                .arg("30")
                .stdin(InputFrom::Null)
                .start()
        })
        .unwrap_err();
    assert!(matches!(err.kind(), SpawnErrorKind::NoArbiter), "{err:?}");
    assert_eq!(children_named("tokio-probe"), Vec::<u32>::new());
}

/// `start_in_arbiter` on an arbiter that has already stopped should fail
/// (or at least not leave the child running unwatched).
#[test]
fn start_in_a_stopped_arbiter_leaves_no_child() {
    let _system = actix_rt::System::new();
    let arbiter = actix_rt::Arbiter::new();
    let handle = arbiter.handle();
    arbiter.stop();
    arbiter.join().expect("arbiter thread");
    let popen = Popen::new("sleep").arg("30").stdin(InputFrom::Null);
    let result = popen.start_in_arbiter(&handle);
    let _cleanup = result.as_ref().ok().and_then(|p| p.pid()).map(ReapOnDrop);
    match result {
        Err(err) => assert!(matches!(err.kind(), SpawnErrorKind::NoArbiter), "{err:?}"),
        Ok(process) => {
            let pid = process.pid().expect("pid");
            assert!(
                common::process_gone(pid),
                "pid {pid} runs with no actor watching it"
            );
        }
    }
}

/// `start_in_arbiter` given the calling thread's own arbiter starts the
/// actor there instead of blocking the thread (it used to wait for a reply
/// from that very arbiter).
#[test]
fn start_in_the_current_arbiter_does_not_hang() {
    // If it hangs, its thread never returns: it is joined only on success.
    let result = on_own_thread(common::EVENT_TIMEOUT, || {
        let system = actix_rt::System::new();
        system.block_on(async move {
            let popen = Popen::new("true").stdin(InputFrom::Null);
            match popen.start_in_arbiter(&actix_rt::Arbiter::current()) {
                Ok(process) => {
                    let pid = process.pid();
                    let code = within("AsyncWait", process.send(AsyncWait)).await;
                    Ok((pid, code.map(|c| c.map_err(|e| e.to_string()))))
                }
                Err(err) => Err(err),
            }
        })
    });
    let (pid, code) = result.expect("start_in_arbiter");
    let code = code.expect("actor").expect("AsyncWait");
    assert!(code.success(), "{code}");
    common::assert_gone(pid.expect("pid"));
}

/// Sizes and timeouts too large to honour are refused at the start, not
/// met later with an allocation abort, an arithmetic panic or a semaphore
/// panic in the middle of the task (issue 8, kind 8).
#[test]
fn sizes_and_timeouts_beyond_the_limits_are_refused() {
    common::bounded(async {
        type Case = (&'static str, fn() -> Popen, &'static str);
        let cases: [Case; 6] = [
            (
                "a 1 TiB read",
                || Popen::new("true").bufsize(1 << 40),
                "bufsize",
            ),
            (
                "an overflowing read",
                || Popen::new("true").bufsize(usize::MAX / 2),
                "bufsize",
            ),
            (
                "a huge chunk",
                || Popen::new("true").coalesce(usize::MAX),
                "coalesce",
            ),
            (
                "an endless window",
                || Popen::new("true").window(usize::MAX),
                "window",
            ),
            (
                "a cancel timeout past the clock",
                || Popen::new("true").cancel_timeout(std::time::Duration::from_secs(u64::MAX / 2)),
                "cancel_timeout",
            ),
            (
                "a drain timeout past the clock",
                || Popen::new("true").drain_timeout(std::time::Duration::from_secs(u64::MAX / 2)),
                "drain_timeout",
            ),
        ];
        for (what, popen, named) in cases {
            for (how, result) in [("start", popen().start()), ("prepare", popen().prepare())] {
                let err = refused(&format!("{what}, {how}"), result).await;
                assert!(
                    matches!(err.kind(), SpawnErrorKind::InvalidConfig { .. })
                        && err.to_string().contains(named),
                    "{what}, {how}: {err}"
                );
            }
        }
        // The limits themselves are accepted.
        let at_limits = Popen::new("true")
            .bufsize(actix_popen::MAX_BUFSIZE)
            .window(actix_popen::MAX_WINDOW)
            .coalesce(actix_popen::MAX_COALESCE)
            .cancel_timeout(actix_popen::MAX_TIMEOUT)
            .drain_timeout(actix_popen::MAX_TIMEOUT)
            .start()
            .expect("the limits are allowed");
        let code = within("true at the limits", at_limits.send(AsyncWait))
            .await
            .expect("actor")
            .expect("wait");
        assert!(code.success());
    });
}
