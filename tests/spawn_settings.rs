//! The settings a child makes for itself between fork and exec: uid, gid,
//! supplementary groups, a new session, umask, nice value, resource
//! limits, arg0 and the caller's pre-exec hooks; and their refusals.
//!
//! Changing the uid, gid and groups needs root (CAP_SETUID, CAP_SETGID):
//! without it those tests say so in one line and pass, unless
//! `ACTIX_POPEN_REQUIRE_ROOT` is set (as CI sets it), where they fail.

mod common;

use std::io;

use actix_popen::{Cancel, Popen, ReturnCode, Rlimit, SpawnErrorKind};
use common::actors::{ChunkSink, LineReader};

/// `nobody`'s ids on Debian and most Linux distributions; any unused id
/// would do, since the kernel needs no passwd entry.
const NOBODY: u32 = 65534;

/// Whether this host may change ids; says why not in one line when it may
/// not, and fails if the run requires it.
fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("ACTIX_POPEN_REQUIRE_ROOT").is_none(),
        "ACTIX_POPEN_REQUIRE_ROOT is set but the tests do not run as root"
    );
    eprintln!("skipped: changing a child's uid, gid and groups needs root");
    false
}

/// The child's stdout, for a run that must succeed.
async fn stdout_of(popen: Popen) -> String {
    let done = popen.output().await.expect("the child runs");
    assert!(
        done.returncode.success(),
        "{:?}: {}",
        done.returncode,
        String::from_utf8_lossy(&done.stderr)
    );
    String::from_utf8(done.stdout.to_vec()).expect("UTF-8")
}

fn kind_of(popen: Popen) -> SpawnErrorKind {
    popen.start().expect_err("refused").kind().clone()
}

#[test]
fn uid_gid_and_groups_are_the_childs() {
    if !root() {
        return;
    }
    common::bounded(async {
        let ids = stdout_of(
            Popen::new("sh")
                .args(["-c", "id -u; id -g; id -G"])
                .uid(NOBODY)
                .gid(NOBODY)
                .groups([NOBODY, 100]),
        )
        .await;
        assert_eq!(ids, format!("{NOBODY}\n{NOBODY}\n{NOBODY} 100\n"));
    });
}

#[test]
fn a_uid_without_groups_drops_the_hosts_supplementary_groups() {
    // The host needs supplementary groups for the child to inherit: this
    // test binary runs the check again as root with groups 100 and 200.
    if !root() {
        return;
    }
    rerun(&["--groups=100,200"], "uid_without_groups_inner");
}

/// Run by the test above, as root with supplementary groups; ignored
/// otherwise.
#[test]
#[ignore = "run with supplementary groups by a_uid_without_groups_drops_the_hosts_supplementary_groups"]
fn uid_without_groups_inner() {
    common::bounded(async {
        let groups = |status: String| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Groups:"))
                .map(|groups| groups.trim().to_owned())
                .expect("a Groups line")
        };
        let own = std::fs::read_to_string("/proc/self/status").expect("status");
        assert_eq!(groups(own), "100 200", "the host has the groups");
        let status = "cat /proc/self/status";
        let kept = stdout_of(Popen::new("sh").args(["-c", status])).await;
        assert_eq!(groups(kept), "100 200", "a child inherits them");
        let dropped = stdout_of(
            Popen::new("sh")
                .args(["-c", status])
                .uid(NOBODY)
                .gid(NOBODY),
        )
        .await;
        assert_eq!(groups(dropped), "", "none is kept by a child run as nobody");
        // A gid alone changes the group only.
        let ids = stdout_of(Popen::new("sh").args(["-c", "id -u; id -g"]).gid(NOBODY)).await;
        assert_eq!(ids, format!("0\n{NOBODY}\n"));
    });
}

fn rerun(args: &[&str], name: &str) {
    common::cli::rerun_under_setpriv(args, name);
}

#[test]
fn the_hook_runs_last_after_the_credentials_and_its_error_fails_the_spawn() {
    if !root() {
        return;
    }
    common::bounded(async {
        // SAFETY: getuid and getgid are async-signal-safe; the hook
        // allocates nothing.
        let popen = unsafe {
            Popen::new("true").uid(NOBODY).gid(NOBODY).pre_exec(|| {
                if nix::libc::getuid() == NOBODY && nix::libc::getgid() == NOBODY {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(nix::libc::EDOM))
                }
            })
        };
        assert!(popen.status().await.expect("true runs").success());
    });
}

#[test]
fn a_hook_error_fails_the_spawn_and_nothing_runs() {
    common::bounded(async {
        let dir = std::env::temp_dir().join(format!("actix-popen-hook-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        // SAFETY: the hook makes no call at all.
        let popen = unsafe {
            Popen::new("touch")
                .arg(&dir)
                .pre_exec(|| Err(io::Error::from_raw_os_error(nix::libc::EDOM)))
        };
        let err = popen.start().expect_err("the hook fails");
        assert_eq!(
            err.io_error().and_then(io::Error::raw_os_error),
            Some(nix::libc::EDOM)
        );
        assert!(!dir.exists(), "the program never ran");
        // Hooks run in the order they were added: the second sees the
        // first's umask.
        // SAFETY: umask is async-signal-safe.
        let popen = unsafe {
            Popen::new("true")
                .pre_exec(|| {
                    nix::libc::umask(0o027);
                    Ok(())
                })
                .pre_exec(|| {
                    let previous = nix::libc::umask(0o027);
                    if previous == 0o027 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(nix::libc::EDOM))
                    }
                })
        };
        assert!(popen.status().await.expect("true runs").success());
    });
}

#[test]
fn setsid_makes_the_child_lead_a_new_session_and_a_cancel_still_reaches_it() {
    common::bounded(async {
        // Fields 5 and 6 of /proc/PID/stat: process group and session.
        let script = "set -- $(cut -d' ' -f5,6 /proc/$$/stat); echo $$ $1 $2";
        let ids = stdout_of(Popen::new("sh").args(["-c", script]).setsid(true)).await;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert_eq!(ids[0], ids[1], "it leads its process group");
        assert_eq!(ids[0], ids[2], "it leads its session");
        let host_session = nix::unistd::getsid(None).expect("getsid").as_raw();
        assert_ne!(ids[2], host_session.to_string());

        // Its group, so the cancel's signals, hold the whole task.
        let (sink, chunks) = ChunkSink::start_new();
        let task = Popen::new("sh")
            .args(["-c", "sleep 60 & echo $!; wait"])
            .setsid(true)
            .subscribe(sink.recipient())
            .start()
            .expect("sh starts");
        let sleep = LineReader::new(chunks, common::SOON).next_pid().await;
        task.send(Cancel).await.expect("the actor runs");
        assert_eq!(common::async_wait(&task).await.code(), -15);
        // Its parent is gone; the sleep, in the same group, got the SIGTERM.
        common::await_gone(u32::try_from(sleep).expect("a pid")).await;
    });
}

#[test]
fn umask_nice_and_rlimits_are_the_childs() {
    common::bounded(async {
        let out = stdout_of(
            Popen::new("sh")
                .args(["-c", "umask; nice; ulimit -Sn; ulimit -Hn; ulimit -c"])
                .umask(0o027)
                .nice(7)
                .rlimit(Rlimit::Nofile, 100, 200)
                .rlimit(Rlimit::Core, 1 << 20, 1 << 20)
                // A later call for the same resource replaces the first.
                .rlimit(Rlimit::Core, 0, 0),
        )
        .await;
        assert_eq!(out, "0027\n7\n100\n200\n0\n");
        // The host's own are untouched.
        let host = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("getrlimit");
        assert_ne!(host, (100, 200));
    });
}

#[test]
fn arg0_is_what_the_child_sees_as_its_name() {
    common::bounded(async {
        let out = stdout_of(Popen::new("cat").arg0("renamed").arg("/proc/self/cmdline")).await;
        assert_eq!(out, "renamed\0/proc/self/cmdline\0");
        let err = kind_of(Popen::new("true").arg0("a\0b"));
        assert!(
            matches!(&err, SpawnErrorKind::InvalidConfig { reason } if reason.contains("arg0")),
            "{err:?}"
        );
    });
}

#[test]
fn values_out_of_range_are_refused_before_anything_runs() {
    common::bounded(async {
        let invalid = |popen: Popen, expected: &str| match kind_of(popen) {
            SpawnErrorKind::InvalidConfig { reason } => {
                assert!(reason.contains(expected), "{reason:?} lacks {expected:?}")
            }
            other => panic!("not InvalidConfig: {other:?}"),
        };
        invalid(Popen::new("true").nice(20), "nice 20");
        invalid(Popen::new("true").nice(-21), "nice -21");
        invalid(Popen::new("true").umask(0o1000), "umask");
        invalid(
            Popen::new("true").rlimit(Rlimit::Nofile, 10, 5),
            "RLIMIT_NOFILE",
        );
        invalid(
            Popen::new("true").groups(std::iter::repeat_n(1, 65537)),
            "NGROUPS_MAX",
        );
        // A submitted task is refused at the submit, not at its turn.
        let err = Popen::new("true").nice(99).submit().expect_err("refused");
        assert!(matches!(err.kind(), SpawnErrorKind::InvalidConfig { .. }));
    });
}

#[test]
fn a_host_without_the_privilege_is_told_which_capability_is_missing() {
    // This test binary checks the refusals again as nobody, with no
    // capability.
    if !root() {
        return;
    }
    rerun(
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ],
        "unprivileged_refusals",
    );
}

/// Run by the test above as nobody, with no capability; ignored otherwise.
#[test]
#[ignore = "run as nobody by a_host_without_the_privilege_is_told_which_capability_is_missing"]
fn unprivileged_refusals() {
    assert!(!nix::unistd::geteuid().is_root());
    common::bounded(async {
        let needs = |popen: Popen| match kind_of(popen) {
            SpawnErrorKind::NotPermitted { needs, .. } => needs,
            other => panic!("not NotPermitted: {other:?}"),
        };
        assert_eq!(needs(Popen::new("true").uid(0)), "CAP_SETUID");
        assert_eq!(needs(Popen::new("true").gid(0)), "CAP_SETGID");
        assert_eq!(needs(Popen::new("true").groups([NOBODY])), "CAP_SETGID");
        assert!(needs(Popen::new("true").nice(-5)).starts_with("CAP_SYS_NICE"));
        let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("getrlimit");
        if hard != Rlimit::INFINITY {
            assert_eq!(
                needs(Popen::new("true").rlimit(Rlimit::Nofile, hard, hard + 1)),
                "CAP_SYS_RESOURCE"
            );
        }
        let pipe_max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .expect("pipe-max-size")
            .trim()
            .parse()
            .expect("a number");
        assert!(needs(Popen::new("true").pipe_size(pipe_max + 1)).starts_with("CAP_SYS_RESOURCE"));
        assert!(Popen::new("true")
            .pipe_size(pipe_max)
            .status()
            .await
            .is_ok());
        // What it may do still runs.
        let code = Popen::new("true")
            .uid(NOBODY)
            .nice(10)
            .status()
            .await
            .expect("allowed");
        assert_eq!(code, ReturnCode::from_raw(0));
    });
}
