//! Why a task ended (`ExitCause`) beside how its child ended, and the run
//! timeout (`Popen::timeout`), counted from the real start.

mod common;

use std::time::{Duration, Instant};

use actix_popen::{
    Cancel, ExitCause, GetJobPool, Popen, ProcessSupervisor, ReturnCode, RunError, SetJobLimits,
    SpawnErrorKind, Start, MAX_TIMEOUT,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::{wait, SOON};

/// Ignores SIGTERM; says so once it does.
const IGNORES_TERM: &str = "trap '' TERM; echo ready; while :; do sleep 0.05; done";

#[test]
fn the_run_timeout_cancels_and_says_so() {
    common::bounded(async {
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let done = Popen::new("sleep")
            .arg("60")
            .timeout(timeout)
            .output()
            .await
            .expect("sleep runs");
        let elapsed = started.elapsed();
        assert_eq!(done.cause, ExitCause::TimedOut);
        assert_eq!(done.returncode, ReturnCode::from_raw(-15));
        assert!(elapsed >= timeout, "ended after {elapsed:?}");
        assert!(elapsed < timeout + SOON, "ended only after {elapsed:?}");
    });
}

#[test]
fn a_timed_out_child_ignoring_sigterm_gets_sigkill_after_the_cancel_timeout() {
    common::bounded(async {
        let done = Popen::new("sh")
            .args(["-c", IGNORES_TERM])
            .timeout(Duration::from_millis(200))
            .cancel_timeout(Duration::from_millis(200))
            .output()
            .await
            .expect("sh runs");
        assert_eq!(done.cause, ExitCause::TimedOut);
        assert_eq!(done.returncode, ReturnCode::from_raw(-9));
    });
}

/// The timeout counts from the spawn, not from the submission: a task
/// that waits in the job pool longer than its timeout still gets its
/// whole timeout to run.
#[test]
fn the_timeout_counts_from_the_real_start_not_the_queue() {
    common::bounded(async {
        common::within(
            "SetJobLimits",
            ProcessSupervisor::get().send(SetJobLimits {
                max_jobs: Some(1),
                max_load: None,
            }),
        )
        .await
        .expect("the supervisor")
        .expect("valid limits");
        let first = Popen::new("sleep").arg("0.6").submit().expect("submit");
        let second = Popen::new("sleep")
            .arg("0.2")
            .timeout(Duration::from_millis(400))
            .submit()
            .expect("submit");
        assert_eq!(
            common::within("GetJobPool", ProcessSupervisor::get().send(GetJobPool))
                .await
                .expect("the supervisor")
                .queued,
            1,
            "the second task waits"
        );
        assert!(wait(&first, SOON).await.success());
        // Queued for 0.6 s, past its 0.4 s timeout, then ran 0.2 s.
        assert_eq!(wait(&second, SOON).await, ReturnCode::from_raw(0));
        assert_eq!(second.cause(), Some(ExitCause::Exited));
    });
}

#[test]
fn each_way_of_ending_has_its_cause() {
    common::bounded(async {
        // By itself.
        let done = Popen::new("sh")
            .args(["-c", "exit 4"])
            .output()
            .await
            .expect("sh runs");
        assert_eq!((done.returncode.code(), done.cause), (4, ExitCause::Exited));

        // A cancel: -15, as a timeout gives, told apart by the cause.
        let task = Popen::new("sleep").arg("60").start().expect("sleep");
        task.do_send(Cancel);
        assert_eq!(wait(&task, SOON).await, ReturnCode::from_raw(-15));
        assert_eq!(task.cause(), Some(ExitCause::Cancelled));

        // SIGINT from outside: -2, as CANCELLED, told apart by the cause.
        let task = Popen::new("sleep").arg("60").start().expect("sleep");
        let pid = task.pid().expect("running") as i32;
        kill(Pid::from_raw(pid), Signal::SIGINT).expect("kill our own child");
        assert_eq!(wait(&task, SOON).await, ReturnCode::from_raw(-2));
        assert_eq!(task.cause(), Some(ExitCause::Signaled));

        // A cancel before the start: CANCELLED, never ran.
        let task = Popen::new("true").prepare().expect("prepare");
        task.do_send(Cancel);
        assert_eq!(wait(&task, SOON).await, ReturnCode::CANCELLED);
        assert_eq!(task.cause(), Some(ExitCause::Cancelled));

        // A deferred start that cannot spawn.
        let task = Popen::new("no-such-program-xyz")
            .prepare()
            .expect("prepare");
        let started = common::within("Start", task.send(Start))
            .await
            .expect("the actor");
        assert!(started.is_err());
        assert_eq!(wait(&task, SOON).await.code(), 127);
        assert_eq!(task.cause(), Some(ExitCause::SpawnFailed));
    });
}

#[test]
fn a_timeout_over_the_maximum_is_refused() {
    common::bounded(async {
        let err = Popen::new("true")
            .timeout(MAX_TIMEOUT + Duration::from_secs(1))
            .output()
            .await
            .expect_err("too long");
        let RunError::Spawn(err) = err else {
            panic!("{err:?}");
        };
        assert!(
            matches!(err.kind(), SpawnErrorKind::InvalidConfig { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("timeout must be at most 365 days"),
            "{err}"
        );
    });
}
