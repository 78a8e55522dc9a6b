//! The `popen` example and the signals it receives: each terminating signal
//! is passed on to the child's group (as `timeout(1)` passes on what it
//! gets), whatever mask and dispositions popen inherited, and no low fd
//! limit makes it panic.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

use common::cli::{code, popen, popen_bin, stderr_text, wait_bounded};
use common::procs::{wait_dead, Cleanup};

const PROMPT: Duration = Duration::from_secs(10);

/// The child script: prints its pid on stderr, then sleeps (no core file
/// if SIGQUIT kills it).
const SLEEPER: [&str; 3] = ["sh", "-c", "ulimit -c 0; echo $$ >&2; exec sleep 30"];

/// Spawns `command` (a popen) and reads the child's pid from its stderr;
/// both are killed if the test fails.
fn start(mut command: Command) -> (Child, i32, Cleanup) {
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .expect("popen starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("the child's pid");
    child.stderr = Some(stderr.into_inner());
    let pid = line.trim().parse().expect("a pid");
    let cleanup = Cleanup::default();
    cleanup.add_pid(child.id() as i32);
    cleanup.add_group(pid);
    (child, pid, cleanup)
}

#[test]
fn every_terminating_signal_is_passed_on_and_popen_ends_by_it() {
    for signal in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGALRM,
        Signal::SIGPWR,
    ] {
        let (popen, pid, _cleanup) = start(popen(&SLEEPER));
        kill(Pid::from_raw(popen.id() as i32), signal).expect("kill popen");
        let out = wait_bounded(popen, PROMPT);
        // As timeout(1): popen ends by the signal that killed the child,
        // so that a shell sees 128+N and a loop around popen stops.
        assert_eq!(
            out.status.signal(),
            Some(signal as i32),
            "{signal}: popen must end with the child, killed by the same signal ({:?}; {})",
            out.status,
            stderr_text(&out)
        );
        assert!(!out.status.core_dumped(), "{signal}: popen dumped core");
        assert!(
            wait_dead(pid, Instant::now() + PROMPT),
            "{signal}: the child {pid} survived"
        );
    }
}

#[test]
fn later_signals_and_user_signals_are_passed_on_too() {
    // The child reports each signal it gets; SIGTERM is the first (the
    // cancel), SIGHUP comes during the cancel timeout, SIGUSR1 before.
    let script = "for s in USR1 TERM HUP; do trap \"echo got-$s\" $s; done; \
                  echo $$ >&2; while :; do sleep 0.05; done";
    let (mut popen, pid, _cleanup) = start({
        let mut command = popen(&["--cancel-timeout", "20", "sh", "-c", script]);
        command.stdout(Stdio::piped());
        command
    });
    let mut lines = BufReader::new(popen.stdout.take().expect("stdout"));
    let popen_pid = Pid::from_raw(popen.id() as i32);
    for (signal, line) in [
        (Signal::SIGUSR1, "got-USR1"),
        (Signal::SIGTERM, "got-TERM"),
        (Signal::SIGHUP, "got-HUP"),
    ] {
        kill(popen_pid, signal).expect("kill popen");
        let mut got = String::new();
        lines.read_line(&mut got).expect("a line");
        assert_eq!(got.trim(), line, "{signal} was not passed on");
    }
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill the child");
    let out = wait_bounded(popen, PROMPT);
    assert_eq!(code(out.status), 137, "{}", stderr_text(&out));
}

#[test]
fn after_its_own_timeout_popen_exits_128_plus_n_rather_than_ending_by_it() {
    let out = wait_bounded(
        popen(&["--timeout", "0.2", "sleep", "30"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("popen starts"),
        PROMPT,
    );
    assert_eq!(out.status.code(), Some(143), "{:?}", out.status);
}

/// popen started by a parent that blocked the signals popen handles and
/// ignored SIGCHLD.
fn from_a_hostile_parent(args: &[&str]) -> Command {
    let mut command = popen(args);
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (sigprocmask and sigaction), on the child's own state.
    unsafe {
        command.pre_exec(|| {
            let mut blocked = SigSet::empty();
            for signal in [
                Signal::SIGHUP,
                Signal::SIGINT,
                Signal::SIGQUIT,
                Signal::SIGTERM,
                Signal::SIGCHLD,
                Signal::SIGCONT,
            ] {
                blocked.add(signal);
            }
            blocked.thread_block()?;
            nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigIgn)?;
            Ok(())
        });
    }
    command
}

#[test]
fn a_hostile_parent_changes_nothing() {
    // SIGCHLD ignored would lose every status; the child starts with an
    // empty signal mask, and nothing is logged about it.
    let out = wait_bounded(
        from_a_hostile_parent(&["sh", "-c", "grep SigBlk /proc/self/status; exit 3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("popen starts"),
        PROMPT,
    );
    assert_eq!(code(out.status), 3, "{}", stderr_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "SigBlk:\t0000000000000000"
    );
    assert_eq!(stderr_text(&out), "");

    // A blocked SIGTERM does not make `kill -TERM popen` do nothing.
    let (popen, pid, _cleanup) = start(from_a_hostile_parent(&SLEEPER));
    kill(Pid::from_raw(popen.id() as i32), Signal::SIGTERM).expect("kill popen");
    let out = wait_bounded(popen, PROMPT);
    assert_eq!(code(out.status), 143, "{}", stderr_text(&out));
    assert!(wait_dead(pid, Instant::now() + PROMPT));
}

#[test]
fn a_low_fd_limit_gets_one_line_never_a_panic() {
    let popen = popen_bin().to_str().expect("a UTF-8 path");
    // Below 4 the dynamic loader itself cannot open the libraries.
    for limit in 4..=24 {
        let out = wait_bounded(
            Command::new("sh")
                .args([
                    "-c",
                    &format!("ulimit -n {limit} && exec \"$0\" true"),
                    popen,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("sh starts"),
            PROMPT,
        );
        let text = stderr_text(&out);
        assert!(
            matches!(out.status.code(), Some(0 | 126)),
            "ulimit -n {limit}: {:?}: {text}",
            out.status
        );
        assert!(
            text.lines().count() <= 1 && !text.contains("panicked"),
            "ulimit -n {limit}: more than one line: {text}"
        );
        if out.status.code() == Some(126) {
            assert!(text.starts_with("popen: "), "ulimit -n {limit}: {text}");
        }
    }
}
