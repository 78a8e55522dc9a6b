//! The `popen` example reads durations as coreutils `timeout(1)` does, and
//! the `pipeline` example exits as a shell does when a program is missing.

mod common;

use std::time::{Duration, Instant};

use common::cli::{code, example_bin, run, stderr_text, wait_bounded};

#[test]
fn a_zero_timeout_means_no_timeout() {
    let out = run(&["--timeout", "0", "sh", "-c", "sleep 0.3; exit 4"]);
    assert_eq!(code(out.status), 4, "{}", stderr_text(&out));
}

#[test]
fn a_timeout_below_a_nanosecond_still_fires() {
    let out = run(&["--timeout", "1e-10", "sleep", "30"]);
    assert_eq!(code(out.status), 143, "{}", stderr_text(&out));
}

#[test]
fn durations_take_a_unit_as_in_timeout() {
    let out = run(&["--timeout", "1m", "--cancel-timeout", "0.5s", "true"]);
    assert_eq!(code(out.status), 0, "{}", stderr_text(&out));
}

#[test]
fn a_very_large_timeout_never_fires_early() {
    for large in ["1e9", "1e19", "100000d"] {
        let started = Instant::now();
        let out = run(&["--timeout", large, "sh", "-c", "sleep 0.3; exit 4"]);
        assert_eq!(code(out.status), 4, "{large}: {}", stderr_text(&out));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}

#[test]
fn a_duration_out_of_range_is_a_usage_error_saying_why() {
    for (option, text, why) in [
        ("--timeout", "-1", "negative"),
        ("--timeout", "-0", "negative"),
        ("--timeout", "-1e-10000", "negative"),
        ("--timeout", "inf", "infinite"),
        ("--timeout", "1e400", "infinite"),
        ("--timeout", "nan", "not a number"),
        ("--timeout", "1e20", "too large"),
        ("--timeout", "soon", "not a number"),
        ("--cancel-timeout", "400d", "365 days"),
        ("--drain-timeout", "-2", "negative"),
    ] {
        let out = run(&[option, text, "true"]);
        let err = stderr_text(&out);
        assert_eq!(code(out.status), 2, "{option} {text}: {err}");
        assert!(err.contains(why), "{option} {text}: {err}");
        assert!(err.contains("Usage:"), "{option} {text}: {err}");
    }
}

#[test]
fn the_pipeline_example_ends_by_sigpipe_when_its_reader_leaves() {
    // `pipeline yes cat | head -1`: as in a shell, the last stage gets
    // SIGPIPE, then the first, and the pipeline's status is 141.
    let mut child = std::process::Command::new(example_bin("pipeline"))
        .args(["yes", "cat"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pipeline starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 2];
    std::io::Read::read_exact(&mut stdout, &mut first).expect("a line");
    drop(stdout);
    let out = wait_bounded(child, Duration::from_secs(60));
    assert_eq!(code(out.status), 141, "{}", stderr_text(&out));
}

#[test]
fn the_pipeline_example_exits_127_for_a_program_not_found() {
    let pipeline = example_bin("pipeline");
    let child = std::process::Command::new(pipeline)
        .args(["seq 1 3", "no-such-program-anywhere", "wc -l"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pipeline starts");
    let out = wait_bounded(child, Duration::from_secs(60));
    assert_eq!(code(out.status), 127, "{}", stderr_text(&out));
    assert!(
        stderr_text(&out).contains("no-such-program-anywhere: command not found"),
        "{}",
        stderr_text(&out)
    );
}
