//! Signals on demand: `CancelWith` (a cancel whose first signal is the
//! caller's) and `SendSignal` (one signal, no escalation), both only while
//! the child is ours to signal.

mod common;

use common::SOON;

use std::time::Duration;

use actix_popen::{CancelWith, Popen, ReturnCode, SendSignal, Signal, SignalError};

use common::actors::{ChunkSink, LineReader};
use common::procs::{await_stopped, poll_until, proc_stat, Cleanup};
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
            .send(SendSignal(Signal::SIGSTOP))
            .await
            .expect("actor")
            .expect("sent");
        await_stopped(pid, SOON).await;
        handle
            .send(SendSignal(Signal::SIGCONT))
            .await
            .expect("actor")
            .expect("sent");
        poll_until("the child runs again", SOON, || {
            proc_stat(pid).is_some_and(|stat| stat.state != 'T')
        })
        .await;
        handle
            .send(SendSignal(Signal::SIGUSR1))
            .await
            .expect("actor")
            .expect("sent");
        assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(-10));

        // Once the task has ended nothing is sent, whatever the pid names now.
        let after = handle
            .send(SendSignal(Signal::SIGKILL))
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
            .send(SendSignal(Signal::SIGTERM))
            .await
            .expect("actor");
        assert!(matches!(result, Err(SignalError::NotRunning)), "{result:?}");
    });
}
