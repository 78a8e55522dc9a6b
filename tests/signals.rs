//! Signals on demand: `CancelWith` (a cancel whose first signal is the
//! caller's) and `SendSignal` (one signal, no escalation), both only while
//! the child is ours to signal.

mod common;

use common::SOON;

use std::time::Duration;

use actix_popen::{CancelWith, ExitCause, Popen, ReturnCode, SendSignal, Signal, SignalError};

use common::actors::{ChunkSink, LineReader};
use common::procs::{await_leader_exit, await_stopped, is_running, poll_until, proc_stat, Cleanup};
use common::wait;

#[test]
fn cancel_with_sends_its_own_signal_first() {
    common::bounded(async {
        let handle = Popen::new("sleep")
            .arg("100")
            .cancel_timeout(Duration::from_secs(60))
            .start()
            .expect("sleep starts");
        let cleanup = Cleanup::default();
        cleanup.add(&handle);
        handle.do_send(CancelWith(Signal::SIGHUP));
        assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(-1));
    });
}

#[test]
fn cancel_with_escalates_to_sigkill_after_the_cancel_timeout() {
    common::bounded(async {
        let (sink, chunks) = ChunkSink::start_new();
        let handle = Popen::new("sh")
            .args(["-c", r#"trap "" HUP; echo ready; exec sleep 1000"#])
            .cancel_timeout(Duration::from_millis(300))
            .subscribe(sink.recipient())
            .start()
            .expect("sh starts");
        let cleanup = Cleanup::default();
        cleanup.add(&handle);
        assert_eq!(LineReader::new(chunks, SOON).next().await, "ready");
        handle.do_send(CancelWith(Signal::SIGHUP));
        assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(-9));
    });
}

#[test]
fn send_signal_stops_continues_and_ends_the_group_without_escalation() {
    common::bounded(async {
        let handle = Popen::new("sleep")
            .arg("100")
            .start()
            .expect("sleep starts");
        let cleanup = Cleanup::default();
        let pid = cleanup.add(&handle);

        handle
            .send(SendSignal::to_group(Signal::SIGSTOP))
            .await
            .expect("actor")
            .expect("sent");
        await_stopped(pid, SOON).await;
        handle
            .send(SendSignal::to_group(Signal::SIGCONT))
            .await
            .expect("actor")
            .expect("sent");
        poll_until("the child runs again", SOON, || {
            proc_stat(pid).is_some_and(|stat| stat.state != 'T')
        })
        .await;
        handle
            .send(SendSignal::to_group(Signal::SIGUSR1))
            .await
            .expect("actor")
            .expect("sent");
        assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(-10));

        // Once the task has ended nothing is sent, whatever the pid names now.
        let after = handle
            .send(SendSignal::to_group(Signal::SIGKILL))
            .await
            .expect("actor");
        assert!(matches!(after, Err(SignalError::NotRunning)), "{after:?}");
    });
}

#[test]
fn send_signal_before_the_start_sends_nothing() {
    common::bounded(async {
        let handle = Popen::new("sleep").arg("100").prepare().expect("prepared");
        let result = handle
            .send(SendSignal::to_group(Signal::SIGTERM))
            .await
            .expect("actor");
        assert!(matches!(result, Err(SignalError::NotRunning)), "{result:?}");
    });
}

/// `to_child` reaches the child alone; `to_group` the whole group, even
/// once the child has exited (its zombie keeps the group id ours).
#[test]
fn send_signal_to_the_child_alone_or_to_its_group() {
    common::bounded(async {
        let (sink, chunks) = ChunkSink::start_new();
        let handle = Popen::new("sh")
            .args(["-c", "sleep 100 & echo $!; wait"])
            .subscribe(sink.recipient())
            .start()
            .expect("sh starts");
        let cleanup = Cleanup::default();
        cleanup.add(&handle);
        let sleeper = LineReader::new(chunks, SOON).next_pid().await;
        cleanup.add_pid(sleeper);

        handle
            .send(SendSignal::to_child(Signal::SIGTERM))
            .await
            .expect("actor")
            .expect("sent");
        await_leader_exit(&handle, SOON).await;
        assert!(is_running(sleeper), "the signal reached the group");
        // The child alone has exited: nothing more goes to it.
        let again = handle
            .send(SendSignal::to_child(Signal::SIGTERM))
            .await
            .expect("actor");
        assert!(matches!(again, Err(SignalError::NotRunning)), "{again:?}");

        handle
            .send(SendSignal::to_group(Signal::SIGKILL))
            .await
            .expect("actor")
            .expect("sent to the group");
        assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(-15));
        assert_eq!(handle.cause(), Some(ExitCause::Signaled));
        // Its output closed as it died; it may not be a zombie yet.
        poll_until("the sleeper's death (the group's SIGKILL)", SOON, || {
            !is_running(sleeper)
        })
        .await;
    });
}

/// A real-time signal, which the child traps by number.
#[test]
fn send_signal_sends_real_time_signals() {
    common::bounded(async {
        let rt = Signal::rt(2).expect("SIGRTMIN+2");
        assert_eq!(Signal::from_raw(rt.as_raw()), Some(rt));
        let (sink, chunks) = ChunkSink::start_new();
        let script = format!(
            "trap 'echo got; exit 3' {}; echo ready; while :; do sleep 0.05; done",
            rt.as_raw()
        );
        let handle = Popen::new("sh")
            .args(["-c", &script])
            .subscribe(sink.recipient())
            .start()
            .expect("sh starts");
        let cleanup = Cleanup::default();
        cleanup.add(&handle);
        let mut lines = LineReader::new(chunks, SOON);
        assert_eq!(lines.next().await, "ready");
        handle
            .send(SendSignal::to_child(rt))
            .await
            .expect("actor")
            .expect("sent");
        assert_eq!(lines.next().await, "got");
        assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(3));
    });
}
