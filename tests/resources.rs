//! What the child inherits from us, and what we keep per child: no fd of
//! ours beyond 0, 1 and 2, no O_NONBLOCK on its ends, no thread per child,
//! and every fd released afterwards.

mod common;

use std::sync::Mutex;

use actix::prelude::*;
use actix_popen::{AsyncWait, Cancel, Collector, GetValue, OutputTo, Popen, ProcessHandle};

use common::actors::FirstChunk;
use common::fds::{fd_count, settle_fds};
use common::harness::lock;
use common::usage::thread_count;

/// Tests here count this process's fds and threads: one at a time.
static COUNTING: Mutex<()> = Mutex::new(());

/// Runs `test` in a System of its own while holding [`COUNTING`].
fn serial<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) {
    let _guard = lock(&COUNTING);
    System::new().block_on(test());
}

async fn output_of(popen: Popen) -> String {
    let collector = Collector::start_default();
    let process = popen
        .subscribe(collector.clone().recipient())
        .start()
        .unwrap();
    let code = process.send(AsyncWait).await.unwrap().unwrap();
    assert!(code.success(), "{code}");
    let value = collector.send(GetValue).await.unwrap();
    String::from_utf8_lossy(&value.stdout).into_owned()
}

/// The fds this process holds without close-on-exec: std passes those to
/// every child (the test harness may have some), so they are not ours.
fn inheritable_host_fds() -> Vec<u32> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fdinfo").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
        if flags.is_some_and(|f| f & 0o2000000 == 0) {
            fds.push(fd);
        }
    }
    fds
}

#[test]
fn child_gets_only_fds_0_1_2() {
    serial(child_gets_only_fds_0_1_2_body);
}

async fn child_gets_only_fds_0_1_2_body() {
    let host = inheritable_host_fds();
    // `ls` lists its own fds; it opens one for the directory it reads.
    for popen in [
        Popen::new("ls").arg("/proc/self/fd"),
        Popen::new("ls").arg("/proc/self/fd").pty(),
        Popen::new("ls")
            .arg("/proc/self/fd")
            .stderr(OutputTo::MergeIntoStdout),
    ] {
        let listed = output_of(popen).await;
        let mut fds: Vec<u32> = listed
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .filter(|fd| *fd > 2 && !host.contains(fd))
            .collect();
        fds.sort();
        // Only the directory ls itself opened: nothing of ours.
        assert_eq!(
            fds.len(),
            1,
            "child saw fds {fds:?} beyond 0, 1, 2 and {host:?}"
        );
    }
}

#[test]
fn close_fds_closes_even_the_hosts_inheritable_fds() {
    serial(close_fds_body);
}

async fn close_fds_body() {
    // An fd opened the careless way, without close-on-exec: std (and
    // `close_fds(false)`) passes it on, Python's close_fds (and the default
    // `Popen::close_fds(true)`) does not.
    let leaked = std::fs::File::open("/dev/null").unwrap();
    let leaked = nix::unistd::dup(&leaked).unwrap();
    let number = std::os::fd::AsRawFd::as_raw_fd(&leaked) as u32;
    let listed = |popen: Popen| async move {
        let listed = output_of(popen).await;
        let mut fds: Vec<u32> = listed
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        fds.sort();
        fds
    };
    let plain = listed(Popen::new("ls").arg("/proc/self/fd").close_fds(false)).await;
    assert!(
        plain.contains(&number),
        "std passes fd {number} on: {plain:?}"
    );
    for popen in [
        Popen::new("ls").arg("/proc/self/fd"),
        Popen::new("ls").arg("/proc/self/fd").close_fds(true),
        Popen::new("ls").arg("/proc/self/fd").close_fds(true).pty(),
    ] {
        let fds = listed(popen).await;
        // 0, 1, 2 and the directory ls itself opened (which may reuse the
        // number the leaked fd had): the leaked fd is gone.
        assert_eq!(fds.len(), 4, "the child saw {fds:?}");
        assert_eq!(&fds[..3], &[0, 1, 2]);
    }
    drop(leaked);
}

#[test]
fn child_ends_are_blocking() {
    serial(child_ends_are_blocking_body);
}

async fn child_ends_are_blocking_body() {
    // fdinfo's flags are octal; O_NONBLOCK is 04000.
    for popen in [
        Popen::new("sh").args(["-c", "grep flags /proc/$$/fdinfo/1 /proc/$$/fdinfo/2"]),
        Popen::new("sh")
            .args(["-c", "grep flags /proc/$$/fdinfo/1 /proc/$$/fdinfo/2"])
            .pty(),
    ] {
        let listed = output_of(popen).await;
        let flags: Vec<u32> = listed
            .lines()
            .filter_map(|line| line.split_whitespace().last())
            .map(|octal| u32::from_str_radix(octal, 8).expect("octal flags"))
            .collect();
        assert_eq!(flags.len(), 2, "{listed}");
        for flag in flags {
            assert_eq!(flag & 0o4000, 0, "the child's end is O_NONBLOCK: {listed}");
        }
    }
}

#[test]
fn no_thread_per_child_and_every_fd_released() {
    serial(no_thread_per_child_and_every_fd_released_body);
}

async fn no_thread_per_child_and_every_fd_released_body() {
    let fds_before = fd_count();
    let threads_before = thread_count();
    let mut running: Vec<ProcessHandle> = Vec::new();
    let mut ready = Vec::new();
    for _ in 0..100 {
        let (tx, rx) = futures::channel::oneshot::channel();
        let first = FirstChunk(Some(tx)).start();
        let process = Popen::new("sh")
            .args(["-c", "echo up; exec sleep 1000"])
            .subscribe(first.recipient())
            .start()
            .unwrap();
        running.push(process);
        ready.push(rx);
    }
    for rx in ready {
        rx.await.unwrap();
    }
    let threads_during = thread_count();
    assert!(
        threads_during <= threads_before + 2,
        "threads grew from {threads_before} to {threads_during} with 100 children"
    );
    for process in &running {
        process.do_send(Cancel);
    }
    for process in &running {
        let code = process.send(AsyncWait).await.unwrap().unwrap();
        assert_eq!(code.code(), -15);
        assert_eq!(process.pid(), None);
    }
    drop(running);
    // The actors release their fds as they stop; that happens once this
    // test yields, so yield until it has (every fd is gone at once when
    // the last actor stops).
    assert_eq!(settle_fds(fds_before).await, fds_before, "fds leaked");
}
