//! The `popen` example's contract, run as a real process.

mod common;

use common::cli::{code, popen, run, stderr_text, wait_bounded};

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::procs::wait_dead;

#[test]
fn relays_stdout_and_stderr_unchanged_and_exits_with_the_childs_status() {
    let out = run(&["sh", "-c", "printf 'out\\n'; printf 'err\\n' >&2; exit 7"]);
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(code(out.status), 7);
}

#[test]
fn large_output_is_byte_exact_at_any_bufsize() {
    for bufsize in ["1", "4096", "65536"] {
        let out = run(&["--bufsize", bufsize, "head", "-c", "300000", "/dev/urandom"]);
        assert_eq!(code(out.status), 0);
        assert_eq!(out.stdout.len(), 300_000, "bufsize {bufsize}");
    }
    // With larger pipes for the child, and reads as large.
    let out = run(&[
        "--pipe-size",
        "1048576",
        "--bufsize",
        "1048576",
        "head",
        "-c",
        "3000000",
        "/dev/urandom",
    ]);
    assert_eq!(code(out.status), 0);
    assert_eq!(out.stdout.len(), 3_000_000, "pipe size 1 MiB");
    // Known content, to check the order of chunks.
    let out = run(&["--bufsize", "7", "seq", "1", "20000"]);
    let expected = Command::new("seq")
        .args(["1", "20000"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(out.stdout, expected);
}

#[test]
fn death_by_signal_exits_128_plus_n() {
    let out = run(&["--report", "sh", "-c", "kill -9 $$"]);
    assert_eq!(code(out.status), 137);
    assert!(
        stderr_text(&out).ends_with("returncode=-9\n"),
        "{}",
        stderr_text(&out)
    );
}

#[test]
fn report_is_the_last_line_on_stderr() {
    let out = run(&["--report", "sh", "-c", "echo late >&2; exit 3"]);
    assert_eq!(stderr_text(&out), "late\nreturncode=3\n");
    assert_eq!(code(out.status), 3);
}

#[test]
fn program_not_found_exits_127_with_one_line() {
    let out = run(&["no-such-program-xyz"]);
    assert_eq!(code(out.status), 127);
    let text = stderr_text(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("no-such-program-xyz"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn program_not_executable_exits_126_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-executable");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let out = run(&[script.to_str().unwrap()]);
    assert_eq!(code(out.status), 126);
    let text = stderr_text(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("not-executable") && text.contains("permission denied"),
        "{text}"
    );
}

#[test]
fn bad_usage_prints_usage_and_exits_2() {
    for args in [
        &["--bogus", "true"][..],
        &["--bufsize", "x", "true"],
        &["--bufsize", "0", "true"],
        &["--pipe-size", "0", "true"],
        &["--pipe-size", "lots", "true"],
        &["--timeout", "soon", "true"],
        &["--cancel-timeout", "-1", "true"],
        &[],
    ] {
        let out = run(args);
        let text = stderr_text(&out);
        assert_eq!(code(out.status), 2, "{args:?}: {text}");
        assert!(text.contains("Usage: popen"), "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{args:?}: {text}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn arguments_after_the_program_belong_to_it() {
    let out = run(&["printf", "%s|", "--report", "-x"]);
    assert_eq!(out.stdout, b"--report|-x|");
    let out = run(&["--", "printf", "%s", "--bufsize"]);
    assert_eq!(out.stdout, b"--bufsize");
}

#[test]
fn merge_stderr_sends_both_streams_to_stdout_in_order() {
    let out = run(&["--merge-stderr", "sh", "-c", "echo a; echo b >&2; echo c"]);
    assert_eq!(out.stdout, b"a\nb\nc\n");
    assert!(out.stderr.is_empty());
}

#[test]
fn pty_puts_everything_on_stdout_through_a_terminal() {
    let out = run(&["--pty", "sh", "-c", "test -t 1 && echo tty; echo e >&2"]);
    assert_eq!(out.stdout, b"tty\r\ne\r\n");
    assert!(out.stderr.is_empty());
    assert_eq!(code(out.status), 0);
}

#[test]
fn child_inherits_stdin() {
    let mut child = popen(&["cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(30));
    assert_eq!(out.stdout, b"through stdin\n");
    assert_eq!(code(out.status), 0);
}

#[test]
fn timeout_cancels_with_sigterm() {
    let started = Instant::now();
    let out = run(&["--timeout", "0.2", "--report", "sleep", "30"]);
    assert_eq!(code(out.status), 143);
    assert!(stderr_text(&out).ends_with("returncode=-15\n"));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn cancel_timeout_escalates_to_sigkill() {
    let started = Instant::now();
    let out = run(&[
        "--timeout",
        "0.2",
        "--cancel-timeout",
        "0.5",
        "--report",
        "sh",
        "-c",
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    ]);
    let elapsed = started.elapsed();
    assert_eq!(code(out.status), 137, "{}", stderr_text(&out));
    assert!(stderr_text(&out).ends_with("returncode=-9\n"));
    assert!(elapsed >= Duration::from_millis(700), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
}

/// Starts popen on a shell that prints the pid of a background sleep and
/// then `ready`, and returns popen with the grandchild's pid once `ready`
/// was read.
fn start_with_grandchild() -> (Child, BufReader<std::process::ChildStdout>, i32) {
    let mut child = popen(&["sh", "-c", "sleep 1000 & echo $!; echo ready; wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    let grandchild: i32 = line.trim().parse().expect("a pid");
    line.clear();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, lines, grandchild)
}

fn gone(pid: i32) -> bool {
    // A grandchild is reparented to init (or a subreaper) when killed; give
    // that reaper a moment, as an external event we cannot subscribe to.
    wait_dead(pid, Instant::now() + Duration::from_secs(10))
}

#[test]
fn sigterm_and_sigint_to_popen_are_passed_on_to_the_whole_group() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let (child, mut lines, grandchild) = start_with_grandchild();
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let mut rest = Vec::new();
        lines.read_to_end(&mut rest).unwrap();
        let out = wait_bounded(child, Duration::from_secs(30));
        assert_eq!(
            code(out.status),
            128 + signal as i32,
            "{signal}: {}",
            stderr_text(&out)
        );
        assert!(
            gone(grandchild),
            "{signal}: grandchild {grandchild} survived"
        );
    }
}
