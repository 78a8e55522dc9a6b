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
use common::harness::{lock, run_system};

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
