//! `Popen::pipe_size`: the room of every pipe made for the child, and of
//! the kernel pipe from a pipeline stage to the next, as the child sees it
//! (`F_GETPIPE_SZ`, read by python3; without python3 the tests say so in
//! one line and pass).

mod common;

use actix::Actor;
use actix_popen::{Collector, GetValue, InputFrom, Pipeline, Popen, SpawnErrorKind, MAX_PIPE_SIZE};

/// Prints the room of the child's fds 0, 1 and 2 (`F_GETPIPE_SZ` is 1032).
const SIZES: &str = "import fcntl\nprint(*[fcntl.fcntl(fd, 1032) for fd in (0, 1, 2)])";

fn python() -> Option<&'static str> {
    let found = std::process::Command::new("python3")
        .arg("-c")
        .arg("")
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        eprintln!("skipped: python3, which reads the pipe sizes, is missing");
    }
    found.then_some("python3")
}

#[test]
fn every_pipe_made_for_the_child_gets_the_size() {
    let Some(python) = python() else {
        return;
    };
    common::bounded(async move {
        for (size, expected) in [
            (None, "65536 65536 65536"),
            (Some(1 << 20), "1048576 1048576 1048576"),
        ] {
            let mut popen = Popen::new(python)
                .args(["-c", SIZES])
                .stdin(InputFrom::Pipe);
            if let Some(size) = size {
                popen = popen.pipe_size(size);
            }
            let done = popen.output().await.expect("python3 runs");
            assert_eq!(String::from_utf8_lossy(&done.stdout).trim(), expected);
        }
        // The kernel rounds up to a power of two pages.
        let done = Popen::new(python)
            .args(["-c", SIZES])
            .stdin(InputFrom::Pipe)
            .pipe_size(100_000)
            .output()
            .await
            .expect("python3 runs");
        let text = String::from_utf8_lossy(&done.stdout);
        assert_eq!(text.trim(), "131072 131072 131072");
    });
}

#[test]
fn a_stage_sizes_the_kernel_pipe_to_the_next() {
    let Some(python) = python() else {
        return;
    };
    common::bounded(async move {
        let collector = Collector::start_default();
        let pipeline = Pipeline::new()
            .stage(Popen::new("true").pipe_size(256 << 10))
            .stage(
                Popen::new(python)
                    .args(["-c", SIZES])
                    .subscribe(collector.clone().recipient()),
            )
            .start()
            .expect("the pipeline starts");
        assert!(
            common::within("the pipeline", pipeline.send(actix_popen::AsyncWait))
                .await
                .expect("actor")
                .expect("code")
                .success()
        );
        let out = collector.send(GetValue).await.expect("collector").stdout;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("262144 "), "{text}");
    });
}

#[test]
fn sizes_out_of_range_are_refused() {
    common::bounded(async {
        for size in [0, MAX_PIPE_SIZE + 1] {
            let err = Popen::new("true")
                .pipe_size(size)
                .start()
                .expect_err("refused");
            assert!(
                matches!(err.kind(), SpawnErrorKind::InvalidConfig { reason } if reason.contains("pipe_size")),
                "{err:?}"
            );
        }
    });
}

/// In a pipeline, a stage's `pipe_size` error is the stage's own (as for a
/// single task), not the failure of the pipe made to the next stage.
#[test]
fn a_stage_size_out_of_range_is_refused_as_its_own_error() {
    common::bounded(async {
        let err = Pipeline::new()
            .stage(Popen::new("true").pipe_size(MAX_PIPE_SIZE + 1))
            .stage(Popen::new("cat"))
            .start()
            .expect_err("refused");
        match err {
            actix_popen::PipelineError::Spawn { stage, source } => {
                assert_eq!(stage, 0);
                assert!(
                    matches!(source.kind(), SpawnErrorKind::InvalidConfig { reason } if reason.contains("pipe_size")),
                    "{source:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    });
}
