//! The library's writes into a child's pipes never kill the host by
//! SIGPIPE, even where SIGPIPE has its default action (a host that
//! restored it, or one not written in Rust): a write to a child's closed
//! stdin, and an observed pipeline stage's copy to a next stage that has
//! gone, fail with EPIPE instead. Each check runs in a process of its own,
//! with SIGPIPE at its default.

mod common;

use actix::Actor;
use actix_popen::{
    AsyncWait, Collector, InputFrom, PipeStatus, Pipeline, Popen, ReturnCode, WriteStdin,
};
use bytes::Bytes;

#[test]
fn the_host_survives_epipe_with_sigpipe_at_its_default() {
    common::cli::run_test_alone(&[], "epipe_with_sigpipe_at_its_default");
}

/// Run by the test above in a process of its own; ignored otherwise.
#[test]
#[ignore = "run in a process of its own by the_host_survives_epipe_with_sigpipe_at_its_default"]
fn epipe_with_sigpipe_at_its_default() {
    // SAFETY: restoring a default disposition installs no handler.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    }
    .expect("SIGPIPE to its default");
    common::bounded(async {
        // A child that closed its stdin: the write fails, the host lives.
        let task = Popen::new("sh")
            .args(["-c", "exec <&-; sleep 0.2"])
            .stdin(InputFrom::Pipe)
            .start()
            .expect("sh starts");
        let mut failed = false;
        for _ in 0..50 {
            let written = task
                .send(WriteStdin(Bytes::from(vec![b'x'; 65536])))
                .await
                .expect("the actor runs");
            if let Err(err) = written {
                assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
                failed = true;
                break;
            }
        }
        assert!(failed, "no write failed");
        common::async_wait(&task).await;

        // An observed stage whose next stage is gone.
        let pipeline = Pipeline::new()
            .stage(Popen::new("yes").subscribe(Collector::start_default().recipient()))
            .stage(Popen::new("head").arg("-1"))
            .start()
            .expect("the pipeline starts");
        common::within("the pipeline", pipeline.send(AsyncWait))
            .await
            .expect("actor")
            .expect("code");
        let statuses = pipeline.send(PipeStatus).await.expect("actor");
        assert_eq!(statuses[1], Some(ReturnCode::from_raw(0)));
    });
}
