//! Running the examples' binaries as a user would: build once, run with a
//! bound, read what they printed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The `popen` example's path, built once per test binary.
pub fn popen_bin() -> &'static PathBuf {
    example_bin("popen")
}

/// The path of the example `name`, built once per test or bench binary,
/// in the profile of that binary (a no-op when `cargo test` or `cargo
/// bench` already built it). The benches include this file too.
pub fn example_bin(name: &'static str) -> &'static PathBuf {
    static BINS: Mutex<BTreeMap<&'static str, &'static PathBuf>> = Mutex::new(BTreeMap::new());
    let mut bins = BINS.lock().unwrap_or_else(|e| e.into_inner());
    bins.entry(name).or_insert_with(|| {
        // A bench runs from target/release/deps/, a test from
        // target/debug/deps/: build where this binary lives.
        let profile = if cfg!(debug_assertions) {
            "--profile=dev"
        } else {
            "--release"
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--quiet", profile, "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the {name} example failed");
        let exe = std::env::current_exe().expect("test path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target dir");
        let bin = profile_dir.join("examples").join(name);
        assert!(bin.exists(), "{} is missing", bin.display());
        Box::leak(Box::new(bin))
    })
}

/// `popen ARGS…` with stdin from /dev/null, to be spawned.
pub fn popen(args: &[&str]) -> Command {
    let mut command = Command::new(popen_bin());
    command.args(args).stdin(Stdio::null());
    command
}

/// Waits for `child`, killing it if it outlives `limit` (a hung popen must
/// fail the test, not hang it).
pub fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            // Its children first (each leads its own process group), so
            // that a hung popen leaves nothing running.
            for child in super::procs::our_children_of(pid as i32) {
                let _ = nix::sys::signal::killpg(Pid::from_raw(child), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
            }
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    });
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_end(&mut stdout).expect("read stdout");
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_end(&mut stderr).expect("read stderr");
    }
    let status = child.wait().expect("wait");
    let _ = tx.send(());
    let _ = watchdog.join();
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Runs `popen ARGS…` to its end (at most 60 s), capturing its output.
pub fn run(args: &[&str]) -> Output {
    let child = popen(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("popen starts");
    wait_bounded(child, Duration::from_secs(60))
}

/// The status as a shell shows it in `$?`: the exit status, or 128+N for
/// a process killed by signal N (popen ends by the signal that killed its
/// child, as timeout(1) does).
pub fn code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => panic!("neither exited nor killed: {status:?}"),
    }
}

pub fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs this test binary's ignored test `name` alone, in a process of its
/// own (under `wrapper`, a program with its arguments such as `setpriv`
/// with other credentials, when given), within 20 s; fails
/// unless it passed.
pub fn run_test_alone(wrapper: &[&str], name: &str) {
    let me = std::env::current_exe().expect("the test binary");
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(&me);
            command
        }
        None => Command::new(&me),
    };
    command
        .args(["--exact", name, "--include-ignored", "--nocapture"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = wait_bounded(
        command.spawn().expect("the test binary runs"),
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("1 passed"),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs the ignored test `name` of this binary under `setpriv` with
/// `args`, and fails unless it passed. Without setpriv(1), says so in one
/// line and passes, unless the run requires root (and so setpriv).
pub fn rerun_under_setpriv(args: &[&str], name: &str) {
    let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
    else {
        assert!(
            std::env::var_os("ACTIX_POPEN_REQUIRE_ROOT").is_none(),
            "ACTIX_POPEN_REQUIRE_ROOT is set but setpriv(1) is missing"
        );
        eprintln!("skipped: setpriv(1), to run {name} with other credentials, is missing");
        return;
    };
    let mut wrapper = vec![setpriv];
    wrapper.extend_from_slice(args);
    run_test_alone(&wrapper, name);
}
