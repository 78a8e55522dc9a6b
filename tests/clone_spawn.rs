//! The crate's own clone-based spawn (the default, with `close_fds`): a
//! child gets none of the host's many fds, is the host's child, gets the
//! host's state as it is at the spawn (working directory, umask,
//! environment, limits), and finds its program in its PATH as glibc's
//! execvp does.
//!
//! The tests change process-wide state (working directory, umask, limits):
//! they run one at a time.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use actix_popen::{CompletedProcess, Popen, RunError, SpawnErrorKind};
use common::harness::{lock, on_own_thread, run_system, HANG};

/// Every test here changes process-wide state.
static ALONE: Mutex<()> = Mutex::new(());

/// Runs `test` alone, in a checked System (no child nor fd left behind).
fn alone<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F + Send + 'static) {
    let _guard = lock(&ALONE);
    run_system(|_cleanup| test());
}

async fn run(popen: Popen) -> CompletedProcess {
    actix::clock::timeout(Duration::from_secs(30), popen.output())
        .await
        .expect("the child did not finish within 30 s")
        .expect("the child runs")
}

/// The kind of a spawn that failed.
fn kind(err: &RunError) -> &SpawnErrorKind {
    match err {
        RunError::Spawn(err) => err.kind(),
        other => panic!("not a spawn error: {other}"),
    }
}

fn text(done: &CompletedProcess) -> String {
    String::from_utf8_lossy(&done.stdout).into_owned()
}

#[test]
fn a_child_is_the_hosts_and_gets_none_of_its_many_fds() {
    alone(|| async {
        // A host holding many fds, as one running thousands of children.
        let null = std::fs::File::open("/dev/null").unwrap();
        let many: Vec<std::os::fd::OwnedFd> = (0..1000)
            .map(|_| {
                std::os::fd::AsFd::as_fd(&null)
                    .try_clone_to_owned()
                    .unwrap()
            })
            .collect();
        let done = run(Popen::new("sh").args(["-c", "echo $PPID; ls /proc/self/fd"])).await;
        let out = text(&done);
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some(std::process::id().to_string().as_str()));
        let fds: Vec<u32> = lines.filter_map(|l| l.parse().ok()).collect();
        // 0, 1, 2 and the directory ls reads.
        assert_eq!(fds.len(), 4, "the child saw fds {fds:?}");
        drop(many);
    });
}

#[test]
fn a_child_gets_the_hosts_state_at_the_spawn() {
    alone(|| async {
        // Spawned once before the changes, as a process server forked
        // early would be.
        run(Popen::new("true")).await;
        let dir = std::env::temp_dir().join(format!("clone-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let old_dir = std::env::current_dir().unwrap();
        let old_umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        std::env::set_current_dir(&dir).unwrap();
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 3000, hard)
            .unwrap();
        std::env::set_var("SPAWNER_TEST_VAR", "set after the fork");
        let done =
            run(Popen::new("sh").args(["-c", "pwd; umask; ulimit -n; echo \"$SPAWNER_TEST_VAR\""]))
                .await;
        std::env::remove_var("SPAWNER_TEST_VAR");
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, soft, hard)
            .unwrap();
        nix::sys::stat::umask(old_umask);
        std::env::set_current_dir(&old_dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let dir = dir.canonicalize().unwrap_or(dir);
        let expected = format!("{}\n0077\n3000\nset after the fork\n", dir.display());
        assert_eq!(text(&done), expected);
    });
}

#[test]
fn a_spawn_leaves_the_spawning_thread_sharing_its_processs_fds() {
    // The harness runs the test's System on a thread of its own: an fd it
    // opens after a spawn must be the process's, seen by every thread.
    alone(|| async {
        run(Popen::new("true")).await;
        let file = std::fs::File::open("/dev/zero").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let leader = format!(
            "/proc/{}/task/{}/fd/{fd}",
            std::process::id(),
            std::process::id()
        );
        assert_eq!(
            std::fs::read_link(&leader).ok(),
            Some(std::path::PathBuf::from("/dev/zero")),
            "the main thread does not see fd {fd} of the spawning thread"
        );
    });
}

/// The datagram sockets this process holds, by fd: its spawns' socket
/// pair (`/proc/net/unix` gives each socket's type; 0002 is SOCK_DGRAM).
fn datagram_sockets() -> std::collections::BTreeMap<u64, String> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let datagram: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode = fields.get(6)?;
            (fields.get(4) == Some(&"0002")).then(|| format!("socket:[{inode}]"))
        })
        .collect();
    common::fds::open_fds()
        .into_iter()
        .filter(|(_, target)| datagram.contains(target))
        .collect()
}

/// Writes an executable (or not) script at `path`.
fn script(path: &Path, body: &str, mode: u32) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_program_is_searched_in_the_childs_path_as_execvp_does() {
    alone(|| async {
        let root = std::env::temp_dir().join(format!("clone-path-{}", std::process::id()));
        let (denied, found, empty) = (root.join("denied"), root.join("found"), root.join("empty"));
        for dir in [&denied, &found, &empty] {
            std::fs::create_dir_all(dir).unwrap();
        }
        script(&denied.join("prog"), "#!/bin/sh\necho denied\n", 0o644);
        script(&found.join("prog"), "#!/bin/sh\necho found\n", 0o755);
        script(&found.join("plain"), "echo no interpreter line\n", 0o755);
        let path = |dirs: &[&Path]| std::env::join_paths(dirs.iter().copied()).unwrap();
        // Past a missing one and one not runnable, to the one that runs.
        let done = run(Popen::new("prog").env("PATH", path(&[&empty, &denied, &found]))).await;
        assert_eq!(text(&done), "found\n");
        // Only one not runnable: EACCES, not ENOENT.
        let err = Popen::new("prog")
            .env("PATH", path(&[&empty, &denied]))
            .output()
            .await
            .unwrap_err();
        assert!(
            matches!(kind(&err), SpawnErrorKind::PermissionDenied { .. }),
            "{err}"
        );
        // None at all.
        let err = Popen::new("prog")
            .env("PATH", path(&[&empty]))
            .output()
            .await
            .unwrap_err();
        assert!(
            matches!(kind(&err), SpawnErrorKind::NotFound { .. }),
            "{err}"
        );
        // An empty entry is the working directory.
        let done = run(Popen::new("prog")
            .env("PATH", ":/nonexistent")
            .current_dir(&found))
        .await;
        assert_eq!(text(&done), "found\n");
        // A file without `#!` is not run by /bin/sh (posix_spawnp, Go, Python).
        let err = Popen::new("plain")
            .env("PATH", path(&[&found]))
            .output()
            .await
            .unwrap_err();
        match kind(&err) {
            SpawnErrorKind::Io { source } => {
                assert_eq!(source.raw_os_error(), Some(nix::libc::ENOEXEC), "{err}")
            }
            other => panic!("not ENOEXEC: {other}"),
        }
        std::fs::remove_dir_all(&root).unwrap();
    });
}

#[test]
fn a_spawn_with_credentials_does_not_hang_while_another_thread_changes_its_own() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("needs root (uid and gid settings): skipped");
        return;
    }
    alone(|| async {
        // glibc's setgid in one host thread signals every thread and waits
        // for each; a child sharing the host's memory must not take part.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let changer = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    nix::unistd::setgid(nix::unistd::getgid()).unwrap();
                }
            }
        });
        let arbiters: Vec<actix::ArbiterHandle> =
            (0..3).map(|_| actix::Arbiter::new().handle()).collect();
        let mut runs = Vec::new();
        for (a, arbiter) in arbiters.iter().enumerate() {
            let (tx, rx) = futures::channel::oneshot::channel();
            arbiter.spawn(async move {
                let mut ok = 0;
                for i in 0..150 {
                    let done = Popen::new("echo")
                        .arg(format!("{a}-{i}"))
                        .uid(0)
                        .gid(0)
                        .output()
                        .await;
                    if done.is_ok_and(|d| d.stdout == format!("{a}-{i}\n").as_bytes()) {
                        ok += 1;
                    }
                }
                let _ = tx.send(ok);
            });
            runs.push(rx);
        }
        let mut ok = 0;
        for run in runs {
            ok += actix::clock::timeout(Duration::from_secs(120), run)
                .await
                .expect("the spawns hung")
                .expect("the arbiter ran");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        changer.join().unwrap();
        for arbiter in arbiters {
            arbiter.stop();
        }
        assert_eq!(ok, 450);
    });
}

#[test]
fn a_forked_process_spawns_with_fds_of_its_own() {
    alone(|| async {
        run(Popen::new("true")).await;
        let sockets = || -> Vec<String> { datagram_sockets().into_values().collect() };
        let ours = sockets();
        // Both processes spawn at once after the fork, started together;
        // each child must get its own process's pipes, through a socket
        // pair of its own process.
        let spawn_many = |who: &'static str| async move {
            let mut wrong = 0;
            for i in 0..300 {
                let want = format!("{who}-{i}\n");
                match Popen::new("echo").arg(format!("{who}-{i}")).output().await {
                    Ok(done) if done.stdout == want.as_bytes() => {}
                    _ => wrong += 1,
                }
            }
            wrong
        };
        let (ready_read, ready_write) = nix::unistd::pipe().unwrap();
        // SAFETY: the child runs a System of its own and spawns; it ends
        // with _exit, running nothing of the parent's state.
        let pid = unsafe { nix::libc::fork() };
        if pid == 0 {
            // On a thread of its own: this one is inside the parent's
            // runtime, copied by the fork. A panic exits 101, not 0.
            let child = std::thread::spawn(move || {
                actix::System::new().block_on(async move {
                    nix::unistd::write(&ready_write, b"r").unwrap();
                    let wrong = spawn_many("child").await;
                    // Exit 100: the forked process still spawns through
                    // the parent's socket pair.
                    let shared = sockets().iter().any(|socket| ours.contains(socket));
                    if shared {
                        100
                    } else {
                        wrong.min(99)
                    }
                })
            });
            let code = child.join().unwrap_or(101);
            // SAFETY: ends the forked child at once.
            unsafe { nix::libc::_exit(code) };
        }
        drop(ready_write);
        let mut byte = [0u8; 1];
        nix::unistd::read(&ready_read, &mut byte).unwrap();
        let wrong = spawn_many("parent").await;
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert_eq!(wrong, 0, "the parent's children got wrong output");
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0),
            "exit 100: the forked process spawns through its parent's sockets; \
             else the number of its children that got wrong output"
        );
    });
}

#[test]
fn an_inherited_stream_the_host_closed_is_closed_in_the_child() {
    alone(|| async {
        use std::os::fd::AsRawFd;
        // The host closes its stdin and stdout (kept aside, put back after).
        let stdin = nix::unistd::dup(std::io::stdin()).unwrap();
        let stdout = nix::unistd::dup(std::io::stdout()).unwrap();
        // SAFETY: fd 0 is put back below.
        unsafe { nix::libc::close(0) };
        let probe = "[ -e /proc/self/fd/0 ] && echo stdin open || echo stdin closed";
        let done = Popen::new("sh")
            .args(["-c", probe])
            .stdin(actix_popen::InputFrom::Inherit)
            .output()
            .await;
        // SAFETY: fd 1 is put back below.
        unsafe { nix::libc::close(1) };
        let quiet = Popen::new("sh")
            .args([
                "-c",
                "[ -e /proc/self/fd/1 ] && echo stdout open >&2 || echo stdout closed >&2",
            ])
            .stdin(actix_popen::InputFrom::Null)
            .stdout(actix_popen::OutputTo::Inherit)
            .output()
            .await;
        // SAFETY: plain dup2 onto the numbers closed above.
        unsafe {
            assert!(nix::libc::dup2(stdin.as_raw_fd(), 0) == 0);
            assert!(nix::libc::dup2(stdout.as_raw_fd(), 1) == 1);
        }
        let done = done.expect("spawned with the host's stdin closed");
        assert_eq!(text(&done), "stdin closed\n");
        let quiet = quiet.expect("spawned with the host's stdout closed");
        assert_eq!(String::from_utf8_lossy(&quiet.stderr), "stdout closed\n");
    });
}

#[test]
fn a_null_stdin_is_read_only() {
    alone(|| async {
        let done = run(Popen::new("sh")
            .args([
                "-c",
                "{ echo x >&0; } 2>/dev/null && echo wrote || echo refused",
            ])
            .stdin(actix_popen::InputFrom::Null))
        .await;
        assert_eq!(text(&done), "refused\n");
    });
}

extern "C" fn on_alarm(_: nix::libc::c_int) {}

#[test]
fn a_failed_spawn_interrupted_by_signals_leaves_no_zombie() {
    alone(|| async {
        // A host whose signal handlers do not restart syscalls, under a
        // stream of signals: the reaping of a child that failed before its
        // exec is interrupted, and must be tried again.
        // SAFETY: a handler that does nothing, without SA_RESTART; the
        // timer is stopped and the disposition put back before the end.
        unsafe {
            let mut action = std::mem::zeroed::<nix::libc::sigaction>();
            action.sa_sigaction = on_alarm as *const () as usize;
            nix::libc::sigaction(nix::libc::SIGALRM, &action, std::ptr::null_mut());
            let every = nix::libc::timeval {
                tv_sec: 0,
                tv_usec: 20,
            };
            let timer = nix::libc::itimerval {
                it_interval: every,
                it_value: every,
            };
            nix::libc::setitimer(nix::libc::ITIMER_REAL, &timer, std::ptr::null_mut());
        }
        let mut failed = 0;
        for _ in 0..3000 {
            if Popen::new("/nonexistent").status().await.is_err() {
                failed += 1;
            }
        }
        // SAFETY: stops the timer, drops a pending SIGALRM, then restores
        // the default disposition.
        unsafe {
            let zero = std::mem::zeroed::<nix::libc::itimerval>();
            nix::libc::setitimer(nix::libc::ITIMER_REAL, &zero, std::ptr::null_mut());
            nix::libc::signal(nix::libc::SIGALRM, nix::libc::SIG_IGN);
            nix::libc::signal(nix::libc::SIGALRM, nix::libc::SIG_DFL);
        }
        assert_eq!(failed, 3000);
        // The harness fails on a zombie of ours left behind.
    });
}

#[test]
fn a_host_that_replaces_the_spawn_sockets_still_spawns() {
    let _guard = lock(&ALONE);
    common::harness::warm_up();
    // The library's socket pair, replaced by /dev/null as a host restoring
    // its stdio with dup2 would.
    let replaced: Vec<i32> = datagram_sockets().into_keys().map(|fd| fd as i32).collect();
    assert_eq!(replaced.len(), 2, "the spawn socket pair: {replaced:?}");
    let null = std::fs::File::open("/dev/null").unwrap();
    for &fd in &replaced {
        // SAFETY: dup2 onto the library's fd numbers, as the host would.
        unsafe { nix::libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
    }
    let out = on_own_thread(HANG, || {
        actix::System::new().block_on(async {
            Popen::new("echo")
                .arg("still")
                .output()
                .await
                .map(|done| done.stdout)
        })
    });
    // The numbers are /dev/null now, the host's: left open.
    for &fd in &replaced {
        assert_eq!(
            std::fs::read_link(format!("/proc/self/fd/{fd}")).ok(),
            Some(std::path::PathBuf::from("/dev/null")),
            "fd {fd} was closed or reused by the library"
        );
    }
    assert_eq!(out.expect("spawned").as_ref(), b"still\n");
    let left = common::procs::our_children();
    assert!(left.is_empty(), "children of ours left behind: {left:?}");
}
