//! Job control of the `popen` example at a real terminal: an interactive
//! bash on a pseudo-terminal runs popen as a job, and the test types
//! Ctrl-Z, `bg`, `fg` and Ctrl-C as a user would.
//!
//! Needs bash and util-linux's `setsid` (to make the pty bash's
//! controlling terminal); says so and passes if either is missing.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::pty::openpty;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{tcgetpgrp, Pid};

use common::cli::popen_bin;
use common::procs::{proc_stat, wait_until};

/// How long anything typed may take to show its effect.
const BOUND: Duration = Duration::from_secs(20);

/// An interactive bash on a pty, and everything it printed.
struct Shell {
    bash: Child,
    master: File,
    output: Arc<(Mutex<Vec<u8>>, Condvar)>,
    /// Where the next `expect` starts looking.
    seen: usize,
    /// Processes to kill at the end, whatever happened.
    started: Vec<i32>,
}

impl Shell {
    fn start() -> Option<Shell> {
        for tool in ["bash", "setsid"] {
            if Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .map_or(true, |status| !status.success())
            {
                println!("skipped: {tool} is not installed");
                return None;
            }
        }
        let pty = openpty(None, None).expect("openpty");
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup"));
        let bash = Command::new("setsid")
            .args(["--ctty", "bash", "--norc", "--noprofile", "-i"])
            .env("PS1", "PROMPT$ ")
            .env("TERM", "dumb")
            .env("HISTFILE", "/dev/null")
            .stdin(slave(&pty.slave))
            .stdout(slave(&pty.slave))
            .stderr(slave(&pty.slave))
            .spawn()
            .expect("bash starts");
        drop(pty.slave);
        let master = File::from(pty.master);
        let output = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let mut reader = master.try_clone().expect("dup master");
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once bash and every job have closed the pty.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                let (text, more) = &*sink;
                text.lock().expect("lock").extend_from_slice(&buf[..n]);
                more.notify_all();
            }
        });
        let mut shell = Shell {
            bash,
            master,
            output,
            seen: 0,
            started: Vec::new(),
        };
        shell.expect("PROMPT$ ");
        Some(shell)
    }

    fn type_in(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).expect("type");
    }

    /// Waits until the output after what was already seen contains
    /// `needle`; returns what follows it up to the end of the line.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + BOUND;
        let (text, more) = &*self.output;
        let mut text = text.lock().expect("lock");
        loop {
            let fresh = String::from_utf8_lossy(&text[self.seen..]).into_owned();
            if let Some(at) = fresh.find(needle) {
                let rest = &fresh[at + needle.len()..];
                let line = rest.split(['\r', '\n']).next().unwrap_or("").to_owned();
                self.seen += at + needle.len();
                return line;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "`{needle}` did not show within {BOUND:?}; the terminal shows:\n{fresh}"
            );
            text = more.wait_timeout(text, left).expect("lock").0;
        }
    }

    /// Waits for `prefix` followed by digits (a command's output, not its
    /// echo, which shows the `$?` typed) and returns the digits.
    fn expect_number(&mut self, prefix: &str) -> String {
        loop {
            let rest = self.expect(prefix);
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                return digits;
            }
        }
    }

    /// bash tells of a background job's stop before its next prompt:
    /// presses Enter until it has told (`needle` shows).
    fn nudge_until(&mut self, needle: &str) {
        let deadline = Instant::now() + BOUND;
        loop {
            self.type_in("\n");
            if self.shows_within(needle, Duration::from_millis(500)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{needle}` did not show within {BOUND:?}"
            );
        }
    }

    /// Whether `needle` shows after what was seen, within `bound`; moves
    /// past it if so.
    fn shows_within(&mut self, needle: &str, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        let (text, more) = &*self.output;
        let mut text = text.lock().expect("lock");
        loop {
            let fresh = String::from_utf8_lossy(&text[self.seen..]).into_owned();
            if let Some(at) = fresh.find(needle) {
                self.seen += at + needle.len();
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            text = more.wait_timeout(text, left).expect("lock").0;
        }
    }

    /// Everything the terminal showed so far.
    fn everything(&self) -> String {
        let text = self.output.0.lock().expect("lock");
        String::from_utf8_lossy(&text).into_owned()
    }

    fn foreground(&self) -> Option<i32> {
        tcgetpgrp(self.master.as_fd()).ok().map(Pid::as_raw)
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        for &pid in &self.started {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.bash.kill();
        let _ = self.bash.wait();
    }
}

fn state(pid: i32) -> Option<char> {
    proc_stat(pid).map(|stat| stat.state)
}

/// popen's pid: the parent of its child.
fn parent(pid: i32) -> i32 {
    proc_stat(pid).expect("the child is alive").ppid
}

#[test]
fn ctrl_z_bg_fg_and_ctrl_c_work_as_for_any_job() {
    let Some(mut shell) = Shell::start() else {
        return;
    };
    let popen = popen_bin().display().to_string();

    // A child that reads the terminal.
    shell.type_in(&format!(
        "{popen} sh -c 'echo child=$$; read line; echo got=$line$((6*7))'\n"
    ));
    let child: i32 = shell.expect_number("child=").parse().expect("a pid");
    let popen_pid = parent(child);
    shell.started.extend([child, popen_pid]);
    // (A child that read the terminal before it was lent was stopped for
    // it, and popen continues it: a Ctrl-Z typed before that SIGCONT would
    // be discarded by it, as for any job continued just then.)
    wait_until(
        "the child's group has the terminal and reads it",
        BOUND,
        || shell.foreground() == Some(child) && state(child) == Some('S'),
    );

    // Ctrl-Z: the child stops, popen with it, and bash has the prompt.
    shell.type_in("\x1a");
    shell.expect("Stopped");
    shell.expect("PROMPT$ ");
    assert_eq!(state(child), Some('T'), "the child is stopped");
    assert_eq!(state(popen_pid), Some('T'), "popen is stopped");
    assert_ne!(shell.foreground(), Some(child));

    // bg: the child runs in the background, reads the terminal, and is
    // stopped for it (SIGTTIN), as any background job is.
    shell.type_in("bg\n");
    wait_until("the job stops for the terminal after bg", BOUND, || {
        state(child) == Some('T') && state(popen_pid) == Some('T')
    });
    shell.nudge_until("Stopped");

    // fg: the child has the terminal again and reads it.
    shell.type_in("fg\n");
    wait_until("the child's group has the terminal after fg", BOUND, || {
        shell.foreground() == Some(child)
    });
    shell.type_in("hello\n");
    assert_eq!(shell.expect("got=hello"), "42");
    shell.expect("PROMPT$ ");
    shell.type_in("echo rc=$?\n");
    assert_eq!(shell.expect_number("rc="), "0");

    // Ctrl-C reaches the child, also after bg then fg of a running job
    // (bash gives popen the terminal then, without a signal).
    shell.type_in(&format!("{popen} sh -c 'echo child=$$; exec sleep 60'\n"));
    let child: i32 = shell.expect_number("child=").parse().expect("a pid");
    let popen_pid = parent(child);
    shell.started.extend([child, popen_pid]);
    wait_until("the sleeper's group has the terminal", BOUND, || {
        shell.foreground() == Some(child)
    });
    shell.type_in("\x1a");
    shell.expect("Stopped");
    shell.expect("PROMPT$ ");
    shell.type_in("bg\n");
    wait_until("the sleeper runs after bg", BOUND, || {
        state(child) == Some('S')
    });
    shell.type_in("fg\n");
    wait_until("popen's group has the terminal after fg", BOUND, || {
        shell.foreground() == Some(popen_pid)
    });
    // Ctrl-Z now reaches popen, which passes it on: the child stops too.
    shell.type_in("\x1a");
    shell.expect("Stopped");
    shell.expect("PROMPT$ ");
    assert_eq!(state(child), Some('T'), "the child is stopped");
    shell.type_in("fg\n");
    wait_until(
        "the sleeper's group has the terminal after fg",
        BOUND,
        || shell.foreground() == Some(child),
    );
    shell.type_in("\x03");
    shell.expect("PROMPT$ ");
    shell.type_in("echo rc=$?\n");
    assert_eq!(shell.expect_number("rc="), "130", "SIGINT killed the child");
}

#[test]
fn a_child_that_stops_itself_or_reads_in_the_background_stops_the_job() {
    let Some(mut shell) = Shell::start() else {
        return;
    };
    let popen = popen_bin().display().to_string();

    // A child that reads the terminal at once, maybe before popen lent it
    // the terminal (then SIGTTIN stops it, and popen continues it).
    shell.type_in(&format!(
        "{popen} sh -c 'read line; echo got=$line$((6*7))'\n"
    ));
    shell.type_in("first\n");
    assert_eq!(shell.expect("got=first"), "42");
    shell.expect("PROMPT$ ");

    // A child that stops itself: its output so far shows, then the job is
    // stopped; `fg` resumes it.
    shell.type_in(&format!(
        "{popen} sh -c 'echo before$((6*7)); kill -STOP $$; echo after$((6*7)); exit 7'\n"
    ));
    shell.expect("before42");
    shell.expect("Stopped");
    shell.expect("PROMPT$ ");
    shell.type_in("fg\n");
    shell.expect("after42");
    shell.expect("PROMPT$ ");
    shell.type_in("echo rc=$?\n");
    assert_eq!(shell.expect_number("rc="), "7");

    // A background job whose child reads the terminal stops (SIGTTIN),
    // as any background job would; `fg` lets it read.
    shell.type_in(&format!(
        "{popen} sh -c 'read line; echo got=$line$((6*7))' &\n"
    ));
    shell.expect("PROMPT$ ");
    shell.nudge_until("Stopped");
    shell.type_in("fg\n");
    shell.expect("read line");
    shell.type_in("hello\n");
    assert_eq!(shell.expect("got=hello"), "42");
}

#[test]
fn popen_shares_the_terminal_with_its_pipeline_and_scripts() {
    let Some(mut shell) = Shell::start() else {
        return;
    };
    let popen = popen_bin().display().to_string();

    // `popen … | reader`: the reader, in popen's group, keeps the terminal
    // (as `less` must); popen does not lend it to its child.
    shell.type_in(&format!(
        "{popen} sh -c 'echo child=$$ >&2; exec sleep 60' | sh -c 'read l </dev/tty; echo got=$l$((6*7))'\n"
    ));
    let child: i32 = shell.expect_number("child=").parse().expect("a pid");
    shell.started.extend([child, parent(child)]);
    shell.type_in("hello\n");
    assert_eq!(shell.expect("got=hello"), "42");
    // Ctrl-C reaches popen, in the foreground group, which passes it on.
    shell.type_in("\x03");
    shell.expect("PROMPT$ ");
    wait_until("the sleeper is gone", BOUND, || {
        state(child).is_none_or(|state| state == 'Z')
    });

    // A child that reads the terminal (not its stdin) gets it on demand.
    shell.type_in(&format!(
        "seq 3 | {popen} sh -c 'read l </dev/tty; echo tty=$l$((6*7))'\n"
    ));
    shell.type_in("typed\n");
    assert_eq!(shell.expect("tty=typed"), "42");
    shell.expect("PROMPT$ ");

    // Ctrl-Z stops a child whose stdin is not the terminal.
    shell.type_in(&format!(
        "{popen} sh -c 'echo child=$$; exec sleep 60' </dev/null\n"
    ));
    let child: i32 = shell.expect_number("child=").parse().expect("a pid");
    shell.started.extend([child, parent(child)]);
    wait_until("the child's group has the terminal", BOUND, || {
        shell.foreground() == Some(child)
    });
    shell.type_in("\x1a");
    shell.expect("Stopped");
    wait_until("the child is stopped", BOUND, || state(child) == Some('T'));
    shell.type_in("fg\n");
    wait_until("the child's group has the terminal again", BOUND, || {
        shell.foreground() == Some(child)
    });

    // Ctrl-C stops a loop around popen, as around any command.
    shell.type_in("\x03");
    shell.expect("PROMPT$ ");
    shell.type_in(&format!(
        "for i in 1 2; do {popen} sh -c 'echo child=$$; exec sleep 60'; echo next$((6*7)); done\n"
    ));
    let child: i32 = shell.expect_number("child=").parse().expect("a pid");
    shell.started.extend([child, parent(child)]);
    wait_until("the loop's child has the terminal", BOUND, || {
        shell.foreground() == Some(child)
    });
    shell.type_in("\x03");
    shell.expect("PROMPT$ ");
    shell.type_in("echo rc=$?\n");
    assert_eq!(shell.expect_number("rc="), "130");
    let shown = shell.everything();
    assert!(
        !shown.contains("next42"),
        "the loop went on after Ctrl-C:\n{shown}"
    );
}

#[test]
fn tostop_stops_a_background_job_that_writes() {
    let Some(mut shell) = Shell::start() else {
        return;
    };
    let popen = popen_bin().display().to_string();
    shell.type_in("stty tostop\n");
    shell.expect("PROMPT$ ");
    shell.type_in(&format!("{popen} sh -c 'echo out$((6*7))' &\n"));
    shell.expect("PROMPT$ ");
    shell.nudge_until("Stopped");
    assert!(
        !shell.everything().contains("out42"),
        "written from the background"
    );
    shell.type_in("fg\n");
    assert_eq!(shell.expect("out42"), "");
    shell.expect("PROMPT$ ");
    // popen's own error line, written while its child has the terminal,
    // does not stop it either.
    shell.type_in(&format!("{popen} sh -c 'echo hi' >/dev/full\n"));
    shell.expect("No space left on device");
    shell.expect("PROMPT$ ");
    shell.type_in("echo rc=$?\n");
    assert_eq!(shell.expect_number("rc="), "1");
    shell.type_in("stty -tostop\n");
}
