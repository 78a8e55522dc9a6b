//! The `popen` example writing its own stdout and stderr as a good Unix
//! citizen: a reader that stalls delays neither a timeout nor a signal, a
//! non-blocking stdout loses nothing, and a reader that goes away ends the
//! child as in a shell pipeline, without a word and without a panic.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{pipe2, Pid};

use common::cli::{code, popen, stderr_text, wait_bounded};
use common::procs::{wait_dead, wait_until, Cleanup};

/// How long popen may take to end once told to, beyond its timeouts.
const PROMPT: Duration = Duration::from_secs(10);

/// Reads the first line of popen's stderr: the child's pid, printed by
/// the child.
fn child_pid(stderr: &mut BufReader<ChildStderr>) -> i32 {
    let mut line = String::new();
    stderr.read_line(&mut line).expect("the child's pid");
    line.trim().parse().expect("a pid")
}

/// popen with stdout to a pipe the test never reads, running `yes`, and
/// the child's pid; returns once the pipe is full (popen is stuck in a
/// write to it).
fn with_stalled_reader(options: &[&str]) -> (std::process::Child, OwnedFd, i32, Cleanup) {
    let (unread, write) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
    let probe = write.try_clone().expect("dup");
    let mut args = options.to_vec();
    args.extend(["sh", "-c", "echo $$ >&2; exec yes"]);
    let mut child = popen(&args)
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .spawn()
        .expect("popen starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let pid = child_pid(&mut stderr);
    let cleanup = Cleanup::default();
    cleanup.add_pid(child.id() as i32);
    cleanup.add_group(pid);
    // Put stderr back for wait_bounded to drain.
    child.stderr = Some(stderr.into_inner());
    wait_until("the unread pipe is full", PROMPT, || {
        let mut fds = [PollFd::new(probe.as_fd(), PollFlags::POLLOUT)];
        poll(&mut fds, PollTimeout::ZERO) == Ok(0)
    });
    (child, unread, pid, cleanup)
}

/// Runs popen with `options` on a stalled reader, tells it to stop with
/// `stop` (`what` names it), and checks that the child is signalled at
/// once and popen ends with 143 soon after, whatever the reader does.
fn stops_promptly_with_a_stalled_reader(
    options: &[&str],
    what: &str,
    stop: impl FnOnce(&std::process::Child),
) {
    let (child, unread, pid, _cleanup) = with_stalled_reader(options);
    let started = Instant::now();
    stop(&child);
    assert!(
        wait_dead(pid, started + Duration::from_secs(3)),
        "the child still runs 3 s after {what}, its reader stalled"
    );
    let out = wait_bounded(child, PROMPT * 2);
    assert_eq!(code(out.status), 143, "{}", stderr_text(&out));
    assert!(
        started.elapsed() < PROMPT,
        "popen took {:?}",
        started.elapsed()
    );
    drop(unread);
}

#[test]
fn a_stalled_reader_does_not_delay_the_timeout() {
    stops_promptly_with_a_stalled_reader(
        &["--timeout", "0.5", "--cancel-timeout", "0.5"],
        "a 0.5 s timeout",
        |_| {},
    );
}

#[test]
fn a_stalled_reader_does_not_delay_sigterm() {
    stops_promptly_with_a_stalled_reader(&["--cancel-timeout", "0.5"], "SIGTERM", |popen| {
        kill(Pid::from_raw(popen.id() as i32), Signal::SIGTERM).expect("kill popen");
    });
}

#[test]
fn a_non_blocking_stdout_loses_nothing() {
    let (read, write) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
    // As a Node or Python parent leaves it: O_NONBLOCK on the open file
    // description popen inherits.
    let flags = OFlag::from_bits_truncate(fcntl(&write, FcntlArg::F_GETFL).expect("F_GETFL"));
    fcntl(&write, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).expect("F_SETFL");
    let child = popen(&["seq", "1", "300000"])
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .spawn()
        .expect("popen starts");
    // A slow reader, so that popen's writes find the pipe full (EAGAIN).
    let mut reader = File::from(read);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = reader.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_micros(200));
    }
    let out = wait_bounded(child, Duration::from_secs(60));
    let expected: String = (1..=300000).map(|n| format!("{n}\n")).collect();
    assert_eq!(code(out.status), 0, "{}", stderr_text(&out));
    assert_eq!(stderr_text(&out), "");
    assert!(
        got == expected.as_bytes(),
        "{} of {} bytes arrived",
        got.len(),
        expected.len()
    );
}

#[test]
fn a_stdout_reader_that_goes_away_ends_the_child_by_sigpipe_quietly() {
    let mut child = popen(&["yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("popen starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    lines.read_line(&mut line).expect("a line");
    assert_eq!(line, "y\n");
    // `| head -1`: the reader is done.
    drop(lines);
    let out = wait_bounded(child, PROMPT);
    assert_eq!(code(out.status), 141, "{}", stderr_text(&out));
    assert_eq!(
        stderr_text(&out),
        "",
        "popen says nothing, as a shell pipeline"
    );
}

#[test]
fn a_stderr_reader_that_goes_away_ends_the_child_by_sigpipe_quietly() {
    let mut child = popen(&["sh", "-c", "echo out; exec yes >&2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("popen starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    lines.read_line(&mut line).expect("a line");
    drop(lines);
    let out = wait_bounded(child, PROMPT);
    assert_eq!(code(out.status), 141);
    assert_eq!(out.stdout, b"out\n", "stdout is not touched");
}

#[test]
fn a_closed_stderr_does_not_change_the_status() {
    // `popen --report sh -c '…' 2>&1 | head -1`: popen's stdout and stderr
    // are one pipe, whose reader leaves after the first line; the report
    // meets EPIPE. (A child that wrote again would get SIGPIPE, as in a
    // shell: see the test below.)
    let (read, write) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
    let child = popen(&["--report", "sh", "-c", "echo one; sleep 0.3; exit 5"])
        .stdout(Stdio::from(
            write.as_fd().try_clone_to_owned().expect("dup"),
        ))
        .stderr(Stdio::from(write))
        .spawn()
        .expect("popen starts");
    let mut first = BufReader::new(File::from(read));
    let mut line = String::new();
    first.read_line(&mut line).expect("a line");
    assert_eq!(line, "one\n");
    drop(first);
    let out = wait_bounded(child, PROMPT);
    assert_eq!(
        out.status.code(),
        Some(5),
        "popen must exit with the child's status, not panic (101)"
    );
}

#[test]
fn a_reader_that_leaves_between_writes_gets_the_child_its_sigpipe() {
    // `popen sh -c 'echo a; sleep 1; echo b' | head -c1`: in a shell `echo b`
    // gets SIGPIPE, since the reader left before it. popen notices the
    // reader leave (EPOLLERR on its stdout), not only at its next write.
    let mut child = popen(&["sh", "-c", "echo a; sleep 1; echo b"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("popen starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).expect("a byte");
    drop(stdout);
    let out = wait_bounded(child, PROMPT);
    assert_eq!(code(out.status), 141, "{}", stderr_text(&out));
}

#[test]
fn a_write_error_other_than_epipe_is_one_line_and_exit_1() {
    let full = File::options()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = wait_bounded(
        popen(&["echo", "hi"])
            .stdout(Stdio::from(full))
            .stderr(Stdio::piped())
            .spawn()
            .expect("popen starts"),
        PROMPT,
    );
    assert_eq!(
        code(out.status),
        1,
        "output was lost: {}",
        stderr_text(&out)
    );
    let text = stderr_text(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("No space left on device"), "{text}");

    // The help, too.
    let full = File::options()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = wait_bounded(
        popen(&["--help"])
            .stdout(Stdio::from(full))
            .stderr(Stdio::piped())
            .spawn()
            .expect("popen starts"),
        PROMPT,
    );
    assert_eq!(code(out.status), 1, "{}", stderr_text(&out));
}

#[test]
fn the_report_comes_after_all_the_output() {
    for _ in 0..20 {
        let (read, write) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let child = popen(&["--report", "sh", "-c", "echo out; echo err >&2"])
            .stdout(Stdio::from(
                write.as_fd().try_clone_to_owned().expect("dup"),
            ))
            .stderr(Stdio::from(write))
            .spawn()
            .expect("popen starts");
        let mut all = String::new();
        File::from(read).read_to_string(&mut all).expect("read");
        let out = wait_bounded(child, PROMPT);
        assert_eq!(code(out.status), 0);
        assert!(all.ends_with("returncode=0\n"), "{all:?}");
        assert_eq!(all.len(), "out\nerr\nreturncode=0\n".len(), "{all:?}");
    }
}

#[test]
fn a_stop_signal_after_the_child_ended_loses_no_output() {
    // `( popen head -c 100000 … & kill -TSTP $! ) | (sleep 2; wc -c)`: the
    // child has written everything and exited; popen, still writing to a
    // slow reader, gets SIGTSTP (Ctrl-Z of its pipeline job), stops, and
    // goes on once continued. (100000 bytes: more than popen's stdout pipe
    // holds, less than its input pipe and its reader's window can take
    // while nobody reads.)
    // In a process group of its own, whose parent (this test) is in
    // another group of the session: not orphaned, whatever ours is, so
    // that the kernel does not discard the SIGTSTP.
    let mut child = popen(&["sh", "-c", "echo $$ >&2; exec head -c 100000 /dev/zero"])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("popen starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let pid = child_pid(&mut stderr);
    child.stderr = Some(stderr.into_inner());
    let cleanup = Cleanup::default();
    cleanup.add_pid(child.id() as i32);
    assert!(
        wait_dead(pid, Instant::now() + PROMPT),
        "head did not finish"
    );
    let popen_pid = Pid::from_raw(child.id() as i32);
    kill(popen_pid, Signal::SIGTSTP).expect("kill popen");
    wait_until("popen stopped", PROMPT, || {
        common::procs::proc_stat(popen_pid.as_raw()).is_some_and(|stat| stat.state == 'T')
    });
    kill(popen_pid, Signal::SIGCONT).expect("kill popen");
    let out = wait_bounded(child, PROMPT);
    assert_eq!(code(out.status), 0, "{}", stderr_text(&out));
    assert_eq!(out.stdout.len(), 100000, "output was lost");
}

#[test]
fn the_report_is_written_after_a_timeout_even_with_stdout_stalled() {
    let (unread, write) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
    let log = tempfile::NamedTempFile::new().expect("a temporary file");
    let child = popen(&[
        "--timeout",
        "0.5",
        "--cancel-timeout",
        "0.5",
        "--report",
        "sh",
        "-c",
        "trap 'exit 7' TERM; yes & wait",
    ])
    .stdout(Stdio::from(write))
    .stderr(Stdio::from(log.reopen().expect("reopen")))
    .spawn()
    .expect("popen starts");
    let out = wait_bounded(child, PROMPT * 2);
    assert_eq!(code(out.status), 7);
    let text = std::fs::read_to_string(log.path()).expect("read the log");
    assert!(text.ends_with("returncode=7\n"), "{text:?}");
    drop(unread);
}

#[test]
fn stdout_and_stderr_on_one_terminal_keep_the_childs_order() {
    for _ in 0..30 {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let child = popen(&["sh", "-c", "echo out; echo err >&2"])
            .stdout(Stdio::from(pty.slave.try_clone().expect("dup")))
            .stderr(Stdio::from(pty.slave))
            .spawn()
            .expect("popen starts");
        let out = wait_bounded(child, PROMPT);
        assert_eq!(code(out.status), 0);
        let mut master = File::from(pty.master);
        let mut shown = [0u8; 10];
        master.read_exact(&mut shown).expect("read the terminal");
        assert_eq!(&shown, b"out\r\nerr\r\n");
    }
}
