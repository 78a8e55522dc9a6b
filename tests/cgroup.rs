//! cgroup v2 containment (`Popen::cgroup`): the child in a cgroup of its
//! own from before its first instruction, every process of the task ended
//! with it, also one that left its process group, and the cgroup removed.
//!
//! These need a cgroup2 directory this host may write (root, or a
//! delegated subtree): without one they say so in one line and pass,
//! unless `ACTIX_POPEN_REQUIRE_CGROUP` is set (as CI sets it), where they
//! fail. `ACTIX_POPEN_CGROUP` names the directory to use.

mod common;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actix_popen::{Cancel, ExitCause, ExitType, Popen, SpawnErrorKind};
use common::actors::{ChunkSink, LineReader};

/// A directory of this test's own under a writable cgroup2 directory,
/// removed when dropped.
struct Parent(PathBuf);

impl Parent {
    fn new(name: &str) -> Option<Parent> {
        let Some(base) = common::cgroup::writable_cgroup2() else {
            assert!(
                std::env::var_os("ACTIX_POPEN_REQUIRE_CGROUP").is_none(),
                "ACTIX_POPEN_REQUIRE_CGROUP is set but no cgroup2 directory is writable here"
            );
            eprintln!("skipped: no writable cgroup2 directory (set ACTIX_POPEN_CGROUP)");
            return None;
        };
        let dir = base.join(format!("actix-popen-test-{}-{name}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        Some(Parent(dir))
    }

    /// The cgroups made in it so far.
    fn children(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.0)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until every task cgroup in it was removed (without blocking
    /// the System's thread, where the supervisor removes it).
    async fn await_empty(&self) {
        common::procs::poll_until("the task's cgroup is removed", common::SOON, || {
            self.children().is_empty()
        })
        .await;
    }
}

impl Drop for Parent {
    /// What a failed test left is killed, and each cgroup removed once its
    /// `cgroup.events` says it is empty (a change wakes `poll` with
    /// POLLPRI), within 5 s.
    fn drop(&mut self) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        for child in self.children() {
            let _ = std::fs::write(child.join("cgroup.kill"), "1");
            let Ok(events) = std::fs::File::open(child.join("cgroup.events")) else {
                continue;
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::read_to_string(child.join("cgroup.events"))
                .is_ok_and(|text| text.contains("populated 1"))
            {
                let left = deadline.saturating_duration_since(Instant::now());
                let left = PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO);
                let mut fds = [PollFd::new(events.as_fd(), PollFlags::POLLPRI)];
                if left == PollTimeout::ZERO || poll(&mut fds, left).is_err() {
                    break;
                }
                // Marks the change as seen, for the next poll.
                let _ = std::io::Read::read(&mut &events, &mut [0u8; 64]);
                let _ = std::io::Seek::rewind(&mut &events);
            }
            let _ = std::fs::remove_dir(&child);
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Waits until `pid`, not a child of ours, is dead, without blocking the
/// System's thread.
async fn await_dead(pid: i32) -> bool {
    common::procs::poll_until(&format!("pid {pid} dead"), common::SOON, || {
        common::procs::is_dead(pid)
    })
    .await;
    true
}

fn session_of(pid: i32) -> Option<i32> {
    common::procs::proc_stat(pid).map(|stat| stat.session)
}

#[test]
fn the_child_runs_in_a_cgroup_of_its_own_removed_once_it_ended() {
    let Some(parent) = Parent::new("own") else {
        return;
    };
    common::bounded(async move {
        let done = Popen::new("cat")
            .arg("/proc/self/cgroup")
            .cgroup(&parent.0)
            .output()
            .await
            .expect("cat runs");
        assert!(done.returncode.success());
        let text = String::from_utf8_lossy(&done.stdout).into_owned();
        let line = text.lines().find(|l| l.starts_with("0::")).unwrap_or("");
        let parent_name = parent.0.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(
            line.contains(&format!("/{parent_name}/actix-popen-")),
            "{text:?}"
        );
        parent.await_empty().await;
    });
}

#[test]
fn a_setsid_grandchild_holding_the_pipe_is_gone_after_a_contained_cancel() {
    let Some(parent) = Parent::new("escape") else {
        return;
    };
    common::bounded(async move {
        // The grandchild leaves the group (setsid) and keeps the stdout
        // pipe: no process-group signal reaches it.
        let script = "setsid sh -c 'echo $$; exec sleep 60' & exec sleep 60";
        for contained in [false, true] {
            let (sink, chunks) = ChunkSink::start_new();
            let mut popen = Popen::new("sh")
                .args(["-c", script])
                .cancel_timeout(Duration::from_millis(200))
                .drain_timeout(Duration::from_millis(200))
                .subscribe(sink.recipient());
            if contained {
                popen = popen.cgroup(&parent.0);
            }
            let task = popen.start().expect("sh starts");
            let grandchild = LineReader::new(chunks, common::SOON).next_pid().await;
            let child = i32::try_from(task.pid().expect("running")).expect("a pid");
            assert_ne!(
                session_of(grandchild),
                session_of(child),
                "not in a session of its own"
            );
            task.do_send(Cancel);
            common::async_wait(&task).await;
            if contained {
                assert!(
                    await_dead(grandchild).await,
                    "the setsid grandchild outlived a contained cancel"
                );
                parent.await_empty().await;
            } else {
                // What a process group alone leaves: the test's own cleanup.
                let alive = common::procs::is_running(grandchild);
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(grandchild),
                    nix::sys::signal::Signal::SIGKILL,
                );
                assert!(alive, "without a cgroup the grandchild should have escaped");
                assert!(await_dead(grandchild).await);
            }
        }
    });
}

#[test]
fn a_daemon_left_by_a_task_that_exits_is_ended_with_it() {
    let Some(parent) = Parent::new("daemon") else {
        return;
    };
    common::bounded(async move {
        let (sink, chunks) = ChunkSink::start_new();
        let task = Popen::new("sh")
            .args(["-c", "setsid sleep 60 >/dev/null 2>&1 </dev/null & echo $!"])
            .cgroup(&parent.0)
            .subscribe(sink.recipient())
            .start()
            .expect("sh starts");
        let daemon = LineReader::new(chunks, common::SOON).next_pid().await;
        assert!(common::async_wait(&task).await.success());
        assert!(await_dead(daemon).await, "the daemon outlived its task");
        parent.await_empty().await;
    });
}

#[test]
fn a_directory_that_cannot_hold_the_cgroup_is_named_in_the_error() {
    common::bounded(async {
        let cases: [(&Path, &str); 2] = [
            (Path::new("/tmp"), "cgroup2"),
            (Path::new("/sys/fs/cgroup/no-such-dir-actix-popen"), ""),
        ];
        for (dir, reason) in cases {
            let err = Popen::new("true")
                .cgroup(dir)
                .start()
                .expect_err("no cgroup can be made there");
            match err.kind() {
                SpawnErrorKind::Cgroup { path, source } => {
                    assert!(path.starts_with(dir), "{path:?}");
                    assert!(source.to_string().contains(reason), "{source}");
                }
                other => panic!("not a Cgroup error: {other:?}"),
            }
            assert!(err.to_string().contains(&*dir.to_string_lossy()), "{err}");
        }
    });
}

/// A limit's controller, control file, setter and the value it writes.
type Limit = (&'static str, &'static str, fn(Popen) -> Popen, &'static str);

#[test]
fn limits_are_set_where_the_controller_is_enabled_and_refused_where_not() {
    let Some(parent) = Parent::new("limits") else {
        return;
    };
    // Enable what the machine offers for the task cgroups (maybe nothing).
    let _ = std::fs::write(
        parent.0.join("cgroup.subtree_control"),
        "+memory +pids +cpu",
    );
    let enabled =
        std::fs::read_to_string(parent.0.join("cgroup.subtree_control")).unwrap_or_default();
    common::bounded(async move {
        let cases: [Limit; 3] = [
            (
                "memory",
                "memory.max",
                |p| p.memory_max(64 << 20),
                "67108864",
            ),
            ("pids", "pids.max", |p| p.pids_max(16), "16"),
            (
                "cpu",
                "cpu.max",
                |p| p.cpu_max(Duration::from_millis(50), Duration::from_millis(100)),
                "50000 100000",
            ),
        ];
        for (controller, file, limit, value) in cases {
            let popen = limit(Popen::new("sleep").arg("60").cgroup(&parent.0)).kill_on_drop(true);
            if enabled.split_whitespace().any(|c| c == controller) {
                let task = popen.start().expect("the limit is set");
                let cgroup = parent.children().pop().expect("the task's cgroup");
                let set = std::fs::read_to_string(cgroup.join(file)).expect("read the limit");
                assert_eq!(set.trim(), value, "{file}");
                task.do_send(Cancel);
                common::async_wait(&task).await;
                parent.await_empty().await;
            } else {
                eprintln!(
                    "the {controller} controller is not enabled here: its refusal is checked"
                );
                let err = popen.start().expect_err("no controller");
                match err.kind() {
                    SpawnErrorKind::Cgroup { path, source } => {
                        // Named by the directory given, which stays.
                        assert_eq!(path, &parent.0);
                        let text = source.to_string();
                        let available =
                            std::fs::read_to_string(parent.0.join("cgroup.controllers"))
                                .unwrap_or_default()
                                .split_whitespace()
                                .any(|c| c == controller);
                        // The advice fits the machine: enable it where it
                        // is available, else say it is not.
                        let (advice, file) = match available {
                            true => ("controller is not enabled", "cgroup.subtree_control"),
                            false => ("controller is not available", "cgroup.controllers"),
                        };
                        assert!(text.contains(advice), "{text}");
                        assert!(text.contains(file), "{text}");
                    }
                    other => panic!("not a Cgroup error: {other:?}"),
                }
                assert!(parent.children().is_empty(), "the refused cgroup was left");
            }
        }
        let err = Popen::new("true")
            .pids_max(1)
            .start()
            .expect_err("no cgroup");
        assert!(
            matches!(err.kind(), SpawnErrorKind::InvalidConfig { reason } if reason.contains("Popen::cgroup")),
            "{err:?}"
        );
    });
}

#[test]
fn a_cgroup_the_task_made_in_its_own_is_emptied_and_removed() {
    let Some(parent) = Parent::new("nested") else {
        return;
    };
    common::bounded(async move {
        let p = parent.0.display();
        let script = format!(
            "CG=$(echo {p}/actix-popen-*); mkdir $CG/sub && \
             sh -c 'echo 0 > '$CG'/sub/cgroup.procs && echo $$ && exec setsid sleep 60' & \
             exec sleep 60"
        );
        let (sink, chunks) = ChunkSink::start_new();
        let task = Popen::new("sh")
            .args(["-c", &script])
            .cgroup(&parent.0)
            .cancel_timeout(Duration::from_millis(200))
            .subscribe(sink.recipient())
            .start()
            .expect("sh starts");
        let nested = LineReader::new(chunks, common::SOON).next_pid().await;
        task.do_send(Cancel);
        common::async_wait(&task).await;
        assert!(await_dead(nested).await);
        parent.await_empty().await;
    });
}

#[test]
fn a_leftover_holding_the_output_is_ended_once_the_child_exited() {
    let Some(parent) = Parent::new("holder") else {
        return;
    };
    common::bounded(async move {
        let (sink, chunks) = ChunkSink::start_new();
        let task = Popen::new("sh")
            .args(["-c", "setsid sleep 60 & echo $!; exit 3"])
            .cgroup(&parent.0)
            .subscribe(sink.recipient())
            .start()
            .expect("sh starts");
        let leftover = LineReader::new(chunks, common::SOON).next_pid().await;
        // The task ends by itself, with its child's status, once the
        // leftover that held its output is gone.
        assert_eq!(common::async_wait(&task).await.code(), 3);
        assert_eq!(task.cause(), Some(actix_popen::ExitCause::Exited));
        assert!(await_dead(leftover).await);
        parent.await_empty().await;
    });
}

/// With `ExitType::Cgroup` the task ends when its last process does: a
/// daemon that left its group and closed the output runs to its end and
/// is not killed; with the default (`ExitType::Main`) it is ended at the
/// child's exit.
#[test]
fn with_exit_type_cgroup_the_task_ends_when_its_last_process_does() {
    let Some(parent) = Parent::new("exit-type") else {
        return;
    };
    common::bounded(async move {
        let marks = tempfile::tempdir().expect("a temporary directory");
        for (exit_type, naps) in [(ExitType::Cgroup, "0.3"), (ExitType::Main, "30")] {
            let mark = marks.path().join(format!("{exit_type:?}"));
            let script = format!(
                "setsid sh -c 'sleep {naps}; echo done > {}' >/dev/null 2>&1 </dev/null & \
                 echo $!; exit 3",
                mark.display()
            );
            let (sink, chunks) = ChunkSink::start_new();
            let task = Popen::new("sh")
                .args(["-c", &script])
                .cgroup(&parent.0)
                .exit_type(exit_type)
                .subscribe(sink.recipient())
                .start()
                .expect("sh starts");
            let daemon = LineReader::new(chunks, common::SOON).next_pid().await;
            assert_eq!(common::async_wait(&task).await.code(), 3);
            assert_eq!(task.cause(), Some(ExitCause::Exited));
            let finished = std::fs::read_to_string(&mark).ok();
            match exit_type {
                // Ended after the daemon: it had finished its work.
                ExitType::Cgroup => {
                    assert_eq!(finished.as_deref(), Some("done\n"));
                    assert!(common::procs::is_dead(daemon));
                }
                _ => {
                    assert_eq!(finished, None, "the daemon was not ended");
                    assert!(await_dead(daemon).await);
                }
            }
            parent.await_empty().await;
        }
    });
}

/// The output of a process left behind is read to its end with
/// `ExitType::Cgroup` (the `Popen::exit_type` example); with the default,
/// the leftover is ended before it writes.
#[test]
fn with_exit_type_cgroup_the_output_of_a_process_left_behind_is_read() {
    let Some(parent) = Parent::new("exit-type-output") else {
        return;
    };
    common::bounded(async move {
        for (exit_type, expected) in [
            (ExitType::Cgroup, "early\nlate\n"),
            (ExitType::Main, "early\n"),
        ] {
            let done = Popen::new("sh")
                .args(["-c", "(sleep 0.2; echo late) & echo early"])
                .cgroup(&parent.0)
                .exit_type(exit_type)
                .output()
                .await
                .expect("sh runs");
            assert_eq!(done.stdout, expected, "{exit_type:?}");
            assert!(done.returncode.success());
        }
        parent.await_empty().await;
    });
}

/// A cancel still ends every process of a task that waits for its cgroup,
/// also after the child itself has exited.
#[test]
fn a_cancel_ends_a_task_waiting_for_its_cgroup() {
    let Some(parent) = Parent::new("exit-type-cancel") else {
        return;
    };
    common::bounded(async move {
        let (sink, chunks) = ChunkSink::start_new();
        let task = Popen::new("sh")
            .args([
                "-c",
                "setsid sleep 60 >/dev/null 2>&1 </dev/null & echo $!; exit 0",
            ])
            .cgroup(&parent.0)
            .exit_type(ExitType::Cgroup)
            .subscribe(sink.recipient())
            .start()
            .expect("sh starts");
        let daemon = LineReader::new(chunks, common::SOON).next_pid().await;
        let sh = task.pid().expect("running") as i32;
        // sh has exited (a zombie, kept for its status); the task waits.
        common::procs::poll_until("sh exits", common::SOON, || {
            common::procs::proc_stat(sh).is_some_and(|stat| stat.state == 'Z')
        })
        .await;
        assert_eq!(task.try_wait(), None, "the task waits for the daemon");
        task.send(Cancel).await.expect("the actor runs");
        assert!(common::async_wait(&task).await.success(), "sh's own status");
        assert_eq!(task.cause(), Some(ExitCause::Cancelled));
        assert!(await_dead(daemon).await);
        parent.await_empty().await;
    });
}

#[test]
fn exit_type_cgroup_needs_a_cgroup() {
    common::bounded(async {
        let err = Popen::new("true")
            .exit_type(ExitType::Cgroup)
            .start()
            .expect_err("refused");
        assert!(
            matches!(err.kind(), SpawnErrorKind::InvalidConfig { reason } if reason.contains("cgroup()")),
            "{err:?}"
        );
    });
}

/// Counts the real-time signals it gets, each instance queued apart (a
/// standard signal sent twice may merge): blocks SIGRTMIN+1, says it is
/// ready, waits for one, waits 0.5 s more, and prints how many came. As
/// `child`, it first starts itself as a `leftover` in a session of its own.
const COUNT_SIGNALS: &str = r#"
import os, signal, subprocess, sys, time
rt = signal.SIGRTMIN + 1
signal.pthread_sigmask(signal.SIG_BLOCK, [rt])
role = sys.argv[1]
if role == "child":
    subprocess.Popen([sys.executable, "-c", SCRIPT, "leftover"], start_new_session=True)
os.write(1, f"ready {role}\n".encode())  # one write: the two share a pipe
count = 0
if signal.sigtimedwait([rt], 30) is not None:
    count = 1
    time.sleep(0.5)
    while signal.sigtimedwait([rt], 0) is not None:
        count += 1
os.write(1, f"{role} {count}\n".encode())
"#;

/// A cancel with a cgroup reaches each process once: the child through its
/// group, a process that left the group through the cgroup, neither twice
/// (a second SIGINT is a forced quit to many programs).
#[test]
fn a_contained_cancel_signals_each_process_once() {
    let Some(parent) = Parent::new("once") else {
        return;
    };
    if std::process::Command::new("python3")
        .arg("-c")
        .arg("")
        .status()
        .is_err()
    {
        eprintln!("skipped: python3, which counts the signals, is missing");
        return;
    }
    common::bounded(async move {
        let script = format!("SCRIPT = {COUNT_SIGNALS:?}\n{COUNT_SIGNALS}");
        let (sink, chunks) = ChunkSink::start_new();
        let task = Popen::new("python3")
            .args(["-c", &script, "child"])
            .cgroup(&parent.0)
            // No SIGKILL before both have counted, however slow the machine.
            .cancel_timeout(Duration::from_secs(60))
            .subscribe(sink.recipient())
            .start()
            .expect("python3 starts");
        let mut lines = LineReader::new(chunks, common::SOON);
        let mut ready = vec![lines.next().await, lines.next().await];
        ready.sort();
        assert_eq!(ready, ["ready child", "ready leftover"]);
        let rt = actix_popen::Signal::from_raw(nix::libc::SIGRTMIN() + 1).expect("a signal");
        task.send(actix_popen::CancelWith(rt))
            .await
            .expect("the actor runs");
        let mut counts = vec![lines.next().await, lines.next().await];
        counts.sort();
        assert_eq!(counts, ["child 1", "leftover 1"]);
        common::async_wait(&task).await;
        parent.await_empty().await;
    });
}

/// A leftover that ignores SIGTERM is SIGKILLed after the cancel timeout,
/// and its cgroup is removed once empty, while the task's handle is still
/// held (it was left until the handle went).
#[test]
fn the_cgroup_is_removed_after_a_sigkill_while_the_handle_lives() {
    let Some(parent) = Parent::new("after-kill") else {
        return;
    };
    common::bounded(async move {
        let script = "setsid sh -c 'trap \"\" TERM; exec sleep 100' >/dev/null 2>&1 & sleep 0.2";
        for cancel in [false, true] {
            let task = Popen::new("sh")
                .args(["-c", script])
                .cgroup(&parent.0)
                .cancel_timeout(Duration::from_millis(200))
                .start()
                .expect("sh starts");
            if cancel {
                task.send(Cancel).await.expect("the actor runs");
            }
            common::async_wait(&task).await;
            parent.await_empty().await;
            drop(task);
        }
    });
}

/// Where the test below tells its rerun which directory to use.
fn join_probe_note(host: u32) -> PathBuf {
    std::env::temp_dir().join(format!("actix-popen-cgroup-join-{host}"))
}

/// A host that may make a cgroup but not move a process into it (the
/// directory is its own, the common ancestor's `cgroup.procs` is not) gets
/// a `Cgroup` error naming the cgroup and the cause, not a bare errno.
/// Needs root, to rerun this binary as nobody under setpriv(1).
#[test]
fn a_cgroup_the_host_cannot_move_into_is_a_cgroup_error() {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var_os("ACTIX_POPEN_REQUIRE_ROOT").is_none(),
            "ACTIX_POPEN_REQUIRE_ROOT is set but the tests do not run as root"
        );
        eprintln!("skipped: running the host as nobody needs root");
        return;
    }
    let Some(parent) = Parent::new("join") else {
        return;
    };
    let nobody = Some(nix::unistd::Uid::from_raw(65534));
    nix::unistd::chown(&parent.0, nobody, None).expect("chown");
    let note = join_probe_note(std::process::id());
    std::fs::write(&note, parent.0.as_os_str().as_encoded_bytes()).expect("note");
    common::cli::rerun_under_setpriv(
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ],
        "join_refused",
    );
    let _ = std::fs::remove_file(&note);
}

/// Run by the test above as nobody; ignored otherwise.
#[test]
#[ignore = "run as nobody by a_cgroup_the_host_cannot_move_into_is_a_cgroup_error"]
fn join_refused() {
    let note = join_probe_note(nix::unistd::getppid().as_raw() as u32);
    let dir = PathBuf::from(std::fs::read_to_string(note).expect("the directory to use"));
    common::bounded(async move {
        let err = Popen::new("true")
            .cgroup(&dir)
            .start()
            .expect_err("the move is refused");
        match err.kind() {
            SpawnErrorKind::Cgroup { path, source } => {
                assert!(
                    path.starts_with(&dir) && path.ends_with("cgroup.procs"),
                    "{path:?}"
                );
                assert!(source.to_string().contains("common ancestor"), "{source}");
            }
            other => panic!("not a Cgroup error: {other:?}"),
        }
        // Nothing was left: the cgroup made for it is gone.
        let left = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .filter(|e| e.path().is_dir())
            .count();
        assert_eq!(left, 0);
    });
}
