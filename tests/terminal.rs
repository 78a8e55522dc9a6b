//! Interactive programs on a controlling pseudo-terminal
//! (`Popen::terminal`), driven by messages: prompt, echo, a resize seen by
//! the child, Ctrl-C and Ctrl-D as bytes.

mod common;

use std::time::Duration;

use actix_popen::{
    Cancel, ExitCause, OutputStream, Popen, ProcessHandle, Resize, ResizeError, Signal,
    SpawnErrorKind, WriteStdin,
};
use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;

use common::actors::ChunkSink;

/// What a terminal task wrote so far, awaited by content.
struct Screen {
    chunks: mpsc::UnboundedReceiver<(OutputStream, Bytes)>,
    text: String,
}

impl Screen {
    /// Waits until the output since the last call holds `needle`; returns
    /// what came up to and including it.
    async fn expect(&mut self, needle: &str) -> String {
        loop {
            if let Some(at) = self.text.find(needle) {
                let seen: String = self.text.drain(..at + needle.len()).collect();
                return seen;
            }
            let next = actix_rt::time::timeout(common::EVENT_TIMEOUT, self.chunks.next()).await;
            let Ok(next) = next else {
                panic!(
                    "no {needle:?} within {:?}; after: {:?}",
                    common::EVENT_TIMEOUT,
                    self.text
                );
            };
            let (_, data) = next
                .unwrap_or_else(|| panic!("the output ended before {needle:?}: {:?}", self.text));
            self.text.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

/// Starts `popen` on a 24 × 80 terminal, its output on a [`Screen`].
fn on_terminal(popen: Popen) -> (ProcessHandle, Screen) {
    let (sink, chunks) = ChunkSink::start_new();
    let task = popen
        .terminal(24, 80)
        .kill_on_drop(true)
        .subscribe(sink.recipient())
        .start()
        .expect("the child starts");
    let screen = Screen {
        chunks,
        text: String::new(),
    };
    (task, screen)
}

async fn type_in(task: &ProcessHandle, keys: &str) {
    task.send(WriteStdin(Bytes::copy_from_slice(keys.as_bytes())))
        .await
        .expect("the actor runs")
        .expect("typed");
}

#[test]
fn an_interactive_shell_is_driven_by_messages() {
    common::bounded(async {
        let (task, mut screen) = on_terminal(Popen::new("sh").arg("-i").env("PS1", "prompt$ "));
        screen.expect("prompt$ ").await;

        // Echo: what is typed shows, then the command's output.
        type_in(&task, "echo typed$((6*7))\n").await;
        let seen = screen.expect("typed42\r\n").await;
        assert!(seen.contains("echo typed$((6*7))"), "not echoed: {seen:?}");
        screen.expect("prompt$ ").await;

        // The child's controlling terminal is the pty.
        type_in(&task, "exec 3</dev/tty && echo has-a-tty\n").await;
        screen.expect("has-a-tty\r\n").await;
        screen.expect("prompt$ ").await;

        // A resize is seen by the child: SIGWINCH, and the new size.
        type_in(&task, "trap 'echo got-winch' WINCH; stty size\n").await;
        screen.expect("24 80\r\n").await;
        screen.expect("prompt$ ").await;
        task.send(Resize {
            rows: 40,
            cols: 100,
        })
        .await
        .expect("the actor runs")
        .expect("resized");
        type_in(&task, "stty size\n").await;
        screen.expect("got-winch").await;
        screen.expect("40 100\r\n").await;
        screen.expect("prompt$ ").await;

        // Ctrl-C as a byte: SIGINT to the foreground job, the shell goes on.
        // (Typed once the sleep runs: one typed before would reach the
        // shell, still reading its line.)
        let shell = i32::try_from(task.pid().expect("running")).expect("a pid");
        type_in(&task, "sleep 60\n").await;
        common::procs::wait_until("the sleep runs", common::SOON, || {
            common::procs::our_children_of(shell)
                .into_iter()
                .any(|pid| common::procs::proc_comm(pid).as_deref() == Some("sleep"))
        });
        type_in(&task, "\x03").await;
        screen.expect("prompt$ ").await;
        type_in(&task, "echo after-ctrl-c\n").await;
        screen.expect("after-ctrl-c\r\n").await;
        screen.expect("prompt$ ").await;

        // Ctrl-D at the start of a line: end of input, the shell exits.
        type_in(&task, "\x04").await;
        assert!(common::async_wait(&task).await.success());
    });
}

#[test]
fn echo_off_hides_what_is_typed() {
    common::bounded(async {
        let (task, mut screen) = on_terminal(
            Popen::new("sh")
                .args(["-c", "echo ready; read secret; echo got=$secret"])
                .echo(false),
        );
        screen.expect("ready\r\n").await;
        type_in(&task, "hunter2\n").await;
        let seen = screen.expect("got=hunter2\r\n").await;
        assert_eq!(seen.matches("hunter2").count(), 1, "echoed: {seen:?}");
        assert!(common::async_wait(&task).await.success());
    });
}

#[test]
fn python_runs_interactively_if_present() {
    if std::process::Command::new("python3")
        .arg("-c")
        .arg("")
        .status()
        .map_or(true, |status| !status.success())
    {
        eprintln!("skipped: python3 is missing");
        return;
    }
    common::bounded(async {
        let (task, mut screen) = on_terminal(Popen::new("python3").args(["-i", "-q"]));
        screen.expect(">>> ").await;
        type_in(&task, "6*7\n").await;
        screen.expect("42\r\n").await;
        screen.expect(">>> ").await;
        type_in(&task, "import os; print(os.get_terminal_size())\n").await;
        screen.expect("columns=80, lines=24").await;
        type_in(&task, "\x04").await;
        assert!(common::async_wait(&task).await.success());
    });
}

#[test]
fn a_task_without_a_terminal_cannot_be_resized_and_settings_need_a_pty() {
    common::bounded(async {
        let task = Popen::new("sleep")
            .arg("60")
            .kill_on_drop(true)
            .start()
            .expect("sleep starts");
        let refused = task
            .send(Resize { rows: 1, cols: 1 })
            .await
            .expect("the actor runs");
        assert!(
            matches!(refused, Err(ResizeError::NoTerminal)),
            "{refused:?}"
        );
        for popen in [
            Popen::new("true").window_size(10, 10),
            Popen::new("true").echo(false),
            Popen::new("true").stdin(actix_popen::InputFrom::Pty),
        ] {
            let err = popen.start().expect_err("no pty");
            assert!(
                matches!(err.kind(), SpawnErrorKind::InvalidConfig { .. }),
                "{err:?}"
            );
        }
        drop(task);
    });
}

#[test]
fn closing_the_output_hangs_up_the_terminal() {
    common::bounded(async {
        // Without a controlling terminal: the next write fails (EIO).
        let (sink, _chunks) = ChunkSink::start_new();
        let task = Popen::new("sh")
            .args(["-c", "while :; do echo tick || exit 7; sleep 0.05; done"])
            .pty()
            .subscribe(sink.recipient())
            .start()
            .expect("sh starts");
        task.do_send(actix_popen::CloseStream(OutputStream::Stdout));
        assert_eq!(common::async_wait(&task).await.code(), 7);
        // On its controlling terminal, the child's session is hung up.
        let (task, mut screen) = on_terminal(Popen::new("sh").arg("-i").env("PS1", "prompt$ "));
        screen.expect("prompt$ ").await;
        task.do_send(actix_popen::CloseReader);
        let code = common::async_wait(&task).await;
        assert!(!code.success(), "{code:?}");
    });
}

#[test]
fn close_stdin_on_a_terminal_types_ctrl_d() {
    common::bounded(async {
        for (typed, shown) in [("abc\n", "abc\r\n"), ("unfinished", "unfinished")] {
            let (task, mut screen) = on_terminal(Popen::new("cat"));
            type_in(&task, typed).await;
            task.send(actix_popen::CloseStdin)
                .await
                .expect("the actor runs");
            screen.expect(shown).await;
            assert!(common::async_wait(&task).await.success(), "{typed:?}");
        }
    });
}

/// `sh -i` on a terminal, at its first prompt (`prompt$ `).
async fn interactive_shell(cancel_timeout: Duration) -> (ProcessHandle, Screen) {
    let (task, mut screen) = on_terminal(
        Popen::new("sh")
            .arg("-i")
            .env("PS1", "prompt$ ")
            .cancel_timeout(cancel_timeout),
    );
    screen.expect("prompt$ ").await;
    (task, screen)
}

/// An interactive shell ignores SIGTERM: a terminal task's cancel hangs it
/// up (SIGHUP) instead, so it ends by that, not by the SIGKILL that
/// follows the cancel timeout.
#[test]
fn a_cancel_hangs_up_an_interactive_shell_at_once() {
    common::bounded(async {
        let (task, _screen) = interactive_shell(Duration::from_secs(5)).await;
        task.send(Cancel).await.expect("the actor runs");
        let code = common::async_wait(&task).await;
        assert_eq!(code.signal(), Some(Signal::SIGHUP.as_raw()));
        assert_eq!(task.cause(), Some(ExitCause::Cancelled));
    });
}

/// A background job left behind by a cancelled shell (no cgroup: it
/// survives) holds the terminal; the task hangs it up once the shell is
/// gone, and ends as cancelled, instead of waiting for the escalation to
/// give up and release it.
#[test]
fn a_cancelled_shell_ends_though_its_background_job_holds_the_terminal() {
    common::bounded(async {
        let (task, mut screen) = interactive_shell(Duration::from_secs(5)).await;
        // (The echo of what is typed shows `bg=$((0))`, not `bg=0`.)
        type_in(&task, "sleep 100 & echo bg=$((0))$!\n").await;
        screen.expect("bg=0").await;
        let line = screen.expect("\r\n").await;
        let job: i32 = line.trim().parse().expect("the job's pid");
        let _reap = common::procs::KillOnDrop::new(job);
        screen.expect("prompt$ ").await;
        task.send(Cancel).await.expect("the actor runs");
        common::async_wait(&task).await;
        assert_eq!(task.cause(), Some(ExitCause::Cancelled));
    });
}
