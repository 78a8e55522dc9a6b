//! The `popen` example end to end: N bytes from `head -c` relayed to
//! /dev/null, against the shell's `head -c N /dev/zero | cat > /dev/null`,
//! wall time and CPU seconds per GiB, in the same run.
//!
//! ```text
//! cargo bench --bench popen_cli              # 1 GiB
//! BENCH_MIB=256 cargo bench --bench popen_cli
//! ```

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};

/// Builds the example in release mode and returns its path.
fn popen_bin() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "--example", "popen"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the popen example failed");
    let exe = std::env::current_exe().expect("bench path");
    let release = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    release.join("examples").join("popen")
}

fn children_cpu() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(usage.user_time()) + tv(usage.system_time())
}

/// Runs `command` with stdout to /dev/null; returns (wall, CPU of it and
/// its children).
fn time(mut command: Command) -> (Duration, Duration) {
    let cpu = children_cpu();
    let started = Instant::now();
    let status = command.stdout(Stdio::null()).status().expect("runs");
    let wall = started.elapsed();
    assert!(status.success());
    (wall, children_cpu() - cpu)
}

fn main() {
    let bytes = common::bytes(1024);
    let popen = popen_bin();
    let gib = bytes as f64 / (1u64 << 30) as f64;
    for bufsize in [65536usize, 4096] {
        let (mut shell_wall, mut shell_cpu, mut popen_wall, mut popen_cpu) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            let mut shell = Command::new("sh");
            shell.args([
                "-c",
                &format!("head -c {bytes} /dev/zero | cat > /dev/null"),
            ]);
            let (wall, cpu) = time(shell);
            shell_wall.push(wall);
            shell_cpu.push(cpu);
            let mut relay = Command::new(&popen);
            relay.args([
                "--bufsize",
                &bufsize.to_string(),
                "head",
                "-c",
                &bytes.to_string(),
                "/dev/zero",
            ]);
            let (wall, cpu) = time(relay);
            popen_wall.push(wall);
            popen_cpu.push(cpu);
        }
        let (sw, sc, pw, pc) = (
            common::median(shell_wall),
            common::median(shell_cpu),
            common::median(popen_wall),
            common::median(popen_cpu),
        );
        println!(
            "popen --bufsize {bufsize}, {} MiB to /dev/null: head|cat {:.3}s wall, {:.2} CPU s/GiB; \
             popen {:.3}s wall, {:.2} CPU s/GiB; wall ratio {:.2}x, CPU ratio {:.2}x",
            bytes >> 20,
            sw.as_secs_f64(),
            sc.as_secs_f64() / gib,
            pw.as_secs_f64(),
            pc.as_secs_f64() / gib,
            pw.as_secs_f64() / sw.as_secs_f64(),
            pc.as_secs_f64() / sc.as_secs_f64(),
        );
    }
}
