//! `Popen::parent_death_signal`: a child that cannot outlive a host that
//! was SIGKILLed. The host is this test binary, run again as a process of
//! its own (the ignored test `host`), which the test SIGKILLs.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use actix_popen::{Popen, Signal};

/// Starts this binary's `host` test as a process of its own; returns it
/// and the pid of the `sleep` it started.
fn start_host(with_signal: bool) -> (std::process::Child, i32) {
    let me = std::env::current_exe().expect("the test binary");
    let mut host = Command::new(me)
        .args(["--exact", "host", "--include-ignored", "--nocapture"])
        .env(
            "ACTIX_POPEN_TEST_HOST",
            if with_signal { "kill" } else { "none" },
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the host starts");
    let stdout = host.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(pid) = line.strip_prefix("child=") {
                let _ = tx.send(pid.parse::<i32>().ok());
                return;
            }
        }
        let _ = tx.send(None);
    });
    let child = rx
        .recv_timeout(common::SOON)
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            let _ = host.kill();
            let _ = host.wait();
            panic!("the host did not report its child in time");
        });
    (host, child)
}

/// SIGKILLs the host and reaps it: the kernel has sent the parent-death
/// signal, if any, once the host is reaped.
fn kill_host(mut host: std::process::Child) {
    host.kill().expect("SIGKILL the host");
    host.wait().expect("reap the host");
}

#[test]
fn a_child_with_the_signal_dies_with_its_sigkilled_host() {
    let (host, child) = start_host(true);
    kill_host(host);
    let deadline = Instant::now() + common::SOON;
    assert!(
        common::procs::wait_dead(child, deadline),
        "the child {child} outlived its host"
    );
}

#[test]
fn a_child_without_it_outlives_its_sigkilled_host() {
    // The case the option exists for: no cancel and no shutdown ran.
    let (host, child) = start_host(false);
    kill_host(host);
    let alive = common::procs::is_running(child);
    // Clean up the orphan the test made.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(alive, "the child died with its host without the option");
    assert!(common::procs::wait_dead(
        child,
        Instant::now() + common::SOON
    ));
}

/// The host the tests above SIGKILL; ignored otherwise.
#[test]
#[ignore = "run as a process of its own by the tests above"]
fn host() {
    let with_signal = match std::env::var("ACTIX_POPEN_TEST_HOST").as_deref() {
        Ok("kill") => true,
        Ok("none") => false,
        _ => panic!("run by the tests above only"),
    };
    common::bounded(async move {
        let mut popen = Popen::new("sleep").arg("120");
        if with_signal {
            popen = popen.parent_death_signal(Signal::SIGKILL);
        }
        let task = popen.start().expect("sleep starts");
        println!("child={}", task.pid().expect("running"));
        // Waits to be SIGKILLed (within the test's bound, should the test
        // not do it).
        std::future::pending::<()>().await;
    });
}
