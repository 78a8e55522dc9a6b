//! The host's signal state leaks neither into the library nor into the
//! child (issue 8, kind 5): a host that ignores SIGCHLD loses no exit
//! status and gets no false spawn error, and a child spawned from a thread
//! that blocks or ignores signals starts with an empty mask and default
//! dispositions (unless `restore_signals(false)`).
//!
//! These tests change process-wide signal dispositions, so this binary
//! holds them alone and runs them one at a time.

mod common;

use common::SOON;

use std::sync::Mutex;
use std::time::Duration;

use actix::prelude::*;
use actix_popen::{Cancel, CloseStdin, Collector, GetValue, InputFrom, Popen, ReturnCode};
use nix::sys::signal::{pthread_sigmask, signal, SigHandler, SigSet, SigmaskHow, Signal};

use common::harness::{lock, on_own_thread};
use common::procs::Cleanup;
use common::wait;

static SIGNALS: Mutex<()> = Mutex::new(());

/// The hex masks `/proc/<pid>/status` gives for blocked and ignored
/// signals.
fn masks(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|hex| u64::from_str_radix(hex.trim(), 16).expect("hex mask"))
            .expect("mask line")
    };
    (field("SigBlk:"), field("SigIgn:"))
}

fn bit(signal: Signal) -> u64 {
    1 << (signal as u32 - 1)
}

#[test]
fn a_host_ignoring_sigchld_loses_no_status() {
    let _serial = lock(&SIGNALS);
    // SAFETY: setting SIG_IGN installs no handler code.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigIgn) }.expect("ignore SIGCHLD");
    let results = System::new().block_on(async {
        let cleanup = Cleanup::default();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let collector = Collector::start_default();
            let handle = Popen::new("sh")
                .args(["-c", &format!("echo task {i}; exit 7")])
                .stdin(InputFrom::Null)
                .subscribe(collector.clone().recipient())
                .start()
                .unwrap_or_else(|err| panic!("task {i} reported as not spawned: {err}"));
            cleanup.add(&handle);
            tasks.push((handle, collector));
        }
        let mut results = Vec::new();
        for (handle, collector) in tasks {
            let code = wait(&handle, SOON).await;
            let output = collector.send(GetValue).await.expect("collector");
            results.push((code, String::from_utf8_lossy(&output.stdout).into_owned()));
        }
        results
    });
    for (i, (code, output)) in results.into_iter().enumerate() {
        assert_eq!(code, ReturnCode::from_raw(7), "task {i}: status invented");
        assert_eq!(output, format!("task {i}\n"), "task {i}: output lost");
    }
    // SAFETY: as above; reading back the disposition the library set.
    let now = unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.expect("SIGCHLD");
    assert_eq!(now, SigHandler::SigDfl, "SIGCHLD was restored to SIG_DFL");
}

/// Runs `scenario` on a thread that blocks SIGTERM and SIGUSR1 while the
/// process ignores SIGINT and SIGHUP, as a host may.
fn with_a_signal_shy_thread<T: Send + 'static>(scenario: impl FnOnce() -> T + Send + 'static) -> T {
    let _serial = lock(&SIGNALS);
    // SAFETY: SIG_IGN installs no handler code.
    let old_int = unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) }.expect("SIGINT");
    // SAFETY: as above.
    let old_hup = unsafe { signal(Signal::SIGHUP, SigHandler::SigIgn) }.expect("SIGHUP");
    let result = on_own_thread(SOON * 3, move || {
        let mut blocked = SigSet::empty();
        blocked.add(Signal::SIGTERM);
        blocked.add(Signal::SIGUSR1);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None).expect("block");
        scenario()
    });
    // SAFETY: putting back what was there.
    unsafe {
        signal(Signal::SIGINT, old_int).expect("SIGINT");
        signal(Signal::SIGHUP, old_hup).expect("SIGHUP");
    }
    result
}

#[test]
fn a_child_starts_with_an_empty_mask_and_default_dispositions() {
    let (blocked, ignored, code) = with_a_signal_shy_thread(|| {
        System::new().block_on(async {
            let cleanup = Cleanup::default();
            let handle = Popen::new("sleep")
                .arg("1000")
                .cancel_timeout(Duration::from_secs(30))
                .start()
                .expect("spawn");
            cleanup.add(&handle);
            let (blocked, ignored) = masks(handle.pid().expect("pid"));
            handle.do_send(Cancel);
            (blocked, ignored, wait(&handle, SOON).await)
        })
    });
    assert_eq!(
        blocked, 0,
        "the child inherited a signal mask: {blocked:#x}"
    );
    assert_eq!(
        ignored & (bit(Signal::SIGINT) | bit(Signal::SIGHUP)),
        0,
        "the child inherited ignored signals: {ignored:#x}"
    );
    assert_eq!(
        code,
        ReturnCode::from_raw(-15),
        "the cancel's SIGTERM reached the child"
    );
}

#[test]
fn restore_signals_false_keeps_what_the_host_gives() {
    let (blocked, ignored) = with_a_signal_shy_thread(|| {
        System::new().block_on(async {
            let cleanup = Cleanup::default();
            let handle = Popen::new("sleep")
                .arg("1000")
                .restore_signals(false)
                .cancel_timeout(Duration::from_millis(100))
                .start()
                .expect("spawn");
            cleanup.add(&handle);
            let masks = masks(handle.pid().expect("pid"));
            handle.do_send(Cancel);
            assert_eq!(wait(&handle, SOON).await, ReturnCode::from_raw(-9));
            masks
        })
    });
    assert_ne!(blocked & bit(Signal::SIGTERM), 0, "{blocked:#x}");
    assert_ne!(ignored & bit(Signal::SIGINT), 0, "{ignored:#x}");
}

/// SIGCHLD ignored *after* the spawn (another library sets it while the
/// child runs): the kernel reaps the child itself at its exit. Since Linux
/// 6.15 the status is still known, from the pidfd; it is never invented.
#[test]
fn sigchld_ignored_while_the_child_runs_loses_no_status() {
    let _serial = lock(&SIGNALS);
    if !common::linux_at_least(6, 15) {
        eprintln!("skipped: needs Linux 6.15 (PIDFD_INFO_EXIT)");
        return;
    }
    let codes = System::new().block_on(async {
        let cleanup = Cleanup::default();
        let exits = Popen::new("sh")
            .args(["-c", "read line; exit 7"])
            .stdin(InputFrom::Pipe)
            .start()
            .expect("spawn");
        let killed = Popen::new("sleep")
            .arg("1000")
            .stdin(InputFrom::Null)
            .start()
            .expect("spawn");
        cleanup.add(&exits);
        cleanup.add(&killed);
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { signal(Signal::SIGCHLD, SigHandler::SigIgn) }.expect("ignore SIGCHLD");
        exits.do_send(CloseStdin);
        killed.do_send(Cancel);
        (wait(&exits, SOON).await, wait(&killed, SOON).await)
    });
    // SAFETY: back to the default.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.expect("SIGCHLD");
    assert_eq!(codes, (ReturnCode::from_raw(7), ReturnCode::from_raw(-15)));
}
