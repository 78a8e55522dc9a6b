//! Spawn-to-exit cost and cancel latency, against std and tokio::process
//! in the same run.
//!
//! ```text
//! cargo bench --bench spawn
//! ```
//!
//! 1. 1000 sequential runs of `/bin/true`: `std::process::Command::status`,
//!    `tokio::process::Command::status` and, piped, `output()`, and
//!    `Popen::start` + `AsyncWait` (output inherited, against `status`;
//!    and with both streams piped, against `output`).
//! 2. What the signal reset of `Popen::restore_signals` costs: the same
//!    piped runs with it off, and with it on from a thread that blocks a
//!    signal (through std, that forced its fork path).
//! 3. What the spawn settings cost: `arg0` and a `umask` (through std, a
//!    setting the child makes for itself forced the fork path), piped.
//! 4. What containment costs: the same runs, each in a cgroup of its own
//!    (`Popen::cgroup`), where a cgroup2 directory is writable.
//! 5. Cancel latency, `Cancel` sent to `Exited` received, for a child that
//!    obeys SIGTERM (`sleep`) and one that ignores it (cancel timeout
//!    100 ms), against the floor: a bare `kill()` to `waitpid()`.

#[path = "../tests/common/cgroup.rs"]
mod cgroup;
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::{AsyncWait, Cancel, Chunk, Exited, OutputTo, Popen};
use futures::channel::oneshot;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

const RUNS: usize = 1000;

fn per_second(runs: usize, took: Duration) -> f64 {
    runs as f64 / took.as_secs_f64()
}

fn std_status() -> Duration {
    let started = Instant::now();
    for _ in 0..RUNS {
        assert!(Command::new("/bin/true").status().expect("true").success());
    }
    started.elapsed()
}

/// Runs `runs` on a tokio current-thread runtime of its own.
fn on_tokio(runs: impl std::future::Future<Output = Duration>) -> Duration {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(runs)
}

fn tokio_status() -> Duration {
    on_tokio(async {
        let started = Instant::now();
        for _ in 0..RUNS {
            let status = tokio::process::Command::new("/bin/true")
                .status()
                .await
                .expect("true");
            assert!(status.success());
        }
        started.elapsed()
    })
}

/// The piped peer: `tokio::process::Command::output()`, which pipes
/// stdout and stderr, reads both to their end and waits, as a piped task
/// does.
fn tokio_output() -> Duration {
    on_tokio(async {
        let started = Instant::now();
        for _ in 0..RUNS {
            let output = tokio::process::Command::new("/bin/true")
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .expect("true");
            assert!(output.status.success());
        }
        started.elapsed()
    })
}

fn actor_status(piped: bool) -> Duration {
    actor_runs(piped, true)
}

fn actor_runs(piped: bool, restore_signals: bool) -> Duration {
    actor_runs_with(piped, move |popen| popen.restore_signals(restore_signals))
}

/// `RUNS` sequential runs of `/bin/true` as `set` describes them.
fn actor_runs_with(piped: bool, set: impl Fn(Popen) -> Popen + 'static) -> Duration {
    System::new().block_on(async move {
        let started = Instant::now();
        for _ in 0..RUNS {
            let mut popen = set(Popen::new("/bin/true"));
            if !piped {
                popen = popen.stdout(OutputTo::Inherit).stderr(OutputTo::Inherit);
            }
            let process = popen.start().expect("true");
            let code = process.send(AsyncWait).await.expect("actor").expect("code");
            assert!(code.success());
        }
        started.elapsed()
    })
}

/// A fresh directory under this process's own cgroup2 directory, if the
/// host may make one.
fn cgroup_parent() -> Option<std::path::PathBuf> {
    let dir = cgroup::writable_cgroup2()?.join(format!("actix-popen-bench-{}", std::process::id()));
    std::fs::create_dir(&dir).ok()?;
    Some(dir)
}

/// Tells when the first chunk arrives (the child is ready) and when it
/// exited.
struct Watch {
    ready: Option<oneshot::Sender<()>>,
    exited: Option<oneshot::Sender<Instant>>,
}

impl Actor for Watch {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Watch {
    type Result = ();
    fn handle(&mut self, _: Chunk, _: &mut Context<Self>) {
        if let Some(tx) = self.ready.take() {
            let _ = tx.send(());
        }
    }
}

impl Handler<Exited> for Watch {
    type Result = ();
    fn handle(&mut self, _: Exited, _: &mut Context<Self>) {
        if let Some(tx) = self.exited.take() {
            let _ = tx.send(Instant::now());
        }
    }
}

async fn cancel_once(script: &str, cancel_timeout: Duration) -> Duration {
    let (ready_tx, ready) = oneshot::channel();
    let (exited_tx, exited) = oneshot::channel();
    let watch = Watch {
        ready: Some(ready_tx),
        exited: Some(exited_tx),
    }
    .start();
    let process = Popen::new("sh")
        .args(["-c", script])
        .cancel_timeout(cancel_timeout)
        .subscribe(watch.clone().recipient())
        .exit_listener(watch.recipient())
        .start()
        .expect("sh");
    ready.await.expect("ready");
    let sent = Instant::now();
    process.do_send(Cancel);
    exited.await.expect("exited") - sent
}

fn cancel_latency(script: &'static str, cancel_timeout: Duration) -> Duration {
    System::new().block_on(async move {
        let mut times = Vec::new();
        for _ in 0..51 {
            times.push(cancel_once(script, cancel_timeout).await);
        }
        common::median(times)
    })
}

fn bare_kill() -> Duration {
    let mut times = Vec::new();
    for _ in 0..51 {
        let mut child = Command::new("sleep").arg("100").spawn().expect("sleep");
        // Give it time to exec, so that we time the kill and not the exec.
        std::thread::sleep(Duration::from_millis(5));
        let pid = Pid::from_raw(child.id() as i32);
        let sent = Instant::now();
        kill(pid, Signal::SIGTERM).expect("kill");
        waitpid(pid, None).expect("waitpid");
        times.push(sent.elapsed());
        let _ = child.try_wait();
    }
    common::median(times)
}

fn main() {
    let (mut s, mut t, mut to, mut a, mut p) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        s.push(std_status());
        t.push(tokio_status());
        to.push(tokio_output());
        a.push(actor_status(false));
        p.push(actor_status(true));
    }
    let (s, t, to, a, p) = (
        common::median(s),
        common::median(t),
        common::median(to),
        common::median(a),
        common::median(p),
    );
    println!(
        "spawn-to-exit of /bin/true, {RUNS} sequential runs: std {:.0}/s, tokio {:.0}/s (status), \
         {:.0}/s (output, piped), actors {:.0}/s (inherited output), {:.0}/s (piped); \
         actor time / tokio time {:.2}x (inherited, vs status), {:.2}x (piped, vs output)",
        per_second(RUNS, s),
        per_second(RUNS, t),
        per_second(RUNS, to),
        per_second(RUNS, a),
        per_second(RUNS, p),
        a.as_secs_f64() / t.as_secs_f64(),
        p.as_secs_f64() / to.as_secs_f64(),
    );
    let (mut off, mut dirty) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        off.push(actor_runs(true, false));
        dirty.push(
            std::thread::spawn(|| {
                let mut blocked = nix::sys::signal::SigSet::empty();
                blocked.add(Signal::SIGUSR1);
                blocked.thread_block().expect("block SIGUSR1");
                actor_runs(true, true)
            })
            .join()
            .expect("thread"),
        );
    }
    let (off, dirty) = (common::median(off), common::median(dirty));
    println!(
        "restore_signals, piped: off {:.0}/s; on, clean thread {:.0}/s = {:.2}x the time of off; \
         on, thread blocking SIGUSR1 {:.0}/s = {:.2}x",
        per_second(RUNS, off),
        per_second(RUNS, p),
        p.as_secs_f64() / off.as_secs_f64(),
        per_second(RUNS, dirty),
        dirty.as_secs_f64() / off.as_secs_f64(),
    );
    // Spawn settings: arg0, and a umask (a setting the child makes for
    // itself).
    let (mut plain, mut arg0, mut umask) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        plain.push(actor_runs_with(true, |popen| popen));
        arg0.push(actor_runs_with(true, |popen| popen.arg0("renamed")));
        umask.push(actor_runs_with(true, |popen| popen.umask(0o022)));
    }
    let (plain, arg0, umask) = (
        common::median(plain),
        common::median(arg0),
        common::median(umask),
    );
    println!(
        "spawn settings, piped: none {:.0}/s; arg0 {:.0}/s = {:.2}x the time of none; \
         umask {:.0}/s = {:.2}x",
        per_second(RUNS, plain),
        per_second(RUNS, arg0),
        arg0.as_secs_f64() / plain.as_secs_f64(),
        per_second(RUNS, umask),
        umask.as_secs_f64() / plain.as_secs_f64(),
    );
    // Containment: a cgroup of its own per task (made, joined between fork
    // and exec, removed), where this host may write a cgroup2 directory.
    match cgroup_parent() {
        Some(parent) => {
            let mut contained = Vec::new();
            for _ in 0..3 {
                let dir = parent.clone();
                contained.push(actor_runs_with(true, move |popen| popen.cgroup(&dir)));
            }
            let contained = common::median(contained);
            let _ = std::fs::remove_dir(&parent);
            println!(
                "containment, piped: none {:.0}/s; Popen::cgroup {:.0}/s = {:.2}x the time of none",
                per_second(RUNS, plain),
                per_second(RUNS, contained),
                contained.as_secs_f64() / plain.as_secs_f64(),
            );
        }
        None => println!("containment: skipped, no writable cgroup2 directory here"),
    }
    let floor = bare_kill();
    let obedient = cancel_latency("echo ready; exec sleep 100", Duration::from_secs(1));
    let stubborn_timeout = Duration::from_millis(100);
    let stubborn = cancel_latency("trap '' TERM; echo ready; exec sleep 100", stubborn_timeout);
    println!(
        "cancel latency (median of 51): bare kill->waitpid {:.3} ms; actors, obedient child {:.3} ms; \
         stubborn child {:.3} ms = cancel timeout {} ms + {:.3} ms",
        floor.as_secs_f64() * 1e3,
        obedient.as_secs_f64() * 1e3,
        stubborn.as_secs_f64() * 1e3,
        stubborn_timeout.as_millis(),
        (stubborn - stubborn_timeout).as_secs_f64() * 1e3,
    );
}
