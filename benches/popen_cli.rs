//! The `popen` example end to end: N bytes from `head -c` relayed to
//! /dev/null, against the shell's `head -c N /dev/zero | cat > /dev/null`,
//! and into a pipe (`| cat`), against `head | cat | cat`; wall time and CPU
//! seconds per GiB, in the same run.
//!
//! ```text
//! cargo bench --bench popen_cli              # 1 GiB
//! BENCH_MIB=256 cargo bench --bench popen_cli
//! ```

#[path = "../tests/common/cli.rs"]
#[allow(dead_code)] // the bench uses its builder only
mod cli;
mod common;
#[path = "../tests/common/procs.rs"]
#[allow(dead_code)] // what cli.rs needs of it
mod procs;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};

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

/// One comparison: `shell` (a `sh -c` line) against `popen` with
/// `popen_args`, 5 interleaved runs each; prints the medians and ratios.
fn compare(what: &str, shell: &str, popen: &std::path::Path, popen_args: &[String], gib: f64) {
    let (mut shell_wall, mut shell_cpu, mut popen_wall, mut popen_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let mut command = Command::new("sh");
        command.args(["-c", shell]);
        let (wall, cpu) = time(command);
        shell_wall.push(wall);
        shell_cpu.push(cpu);
        let mut command = Command::new(popen);
        command.args(popen_args);
        let (wall, cpu) = time(command);
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
        "{what}: shell {:.3}s wall, {:.2} CPU s/GiB; popen {:.3}s wall, {:.2} CPU s/GiB; \
         wall ratio {:.2}x, CPU ratio {:.2}x",
        sw.as_secs_f64(),
        sc.as_secs_f64() / gib,
        pw.as_secs_f64(),
        pc.as_secs_f64() / gib,
        pw.as_secs_f64() / sw.as_secs_f64(),
        pc.as_secs_f64() / sc.as_secs_f64(),
    );
}

fn main() {
    let bytes = common::bytes(1024);
    let popen = cli::popen_bin();
    let gib = bytes as f64 / (1u64 << 30) as f64;
    let mib = bytes >> 20;
    // (bufsize, pipe size): portage's and cat's read sizes on the kernel's
    // 64 KiB pipe, then larger pipes read whole.
    let configs: [(usize, Option<usize>); 4] = [
        (65536, None),
        (4096, None),
        (262144, Some(262144)),
        (1048576, Some(1048576)),
    ];
    for (bufsize, pipe_size) in configs {
        let mut options = vec!["--bufsize".to_owned(), bufsize.to_string()];
        if let Some(size) = pipe_size {
            options.extend(["--pipe-size".to_owned(), size.to_string()]);
        }
        let label = format!("popen {}, {mib} MiB", options.join(" "));
        // To /dev/null: popen writes it at once, on its event loop.
        let mut args = options.clone();
        args.extend(["head", "-c", &bytes.to_string(), "/dev/zero"].map(str::to_owned));
        compare(
            &format!("{label} to /dev/null (head | cat)"),
            &format!("head -c {bytes} /dev/zero | cat > /dev/null"),
            popen,
            &args,
            gib,
        );
        // To a pipe: popen's writing thread, whose reader may stall.
        compare(
            &format!("{label} into | cat (head | cat | cat)"),
            &format!("head -c {bytes} /dev/zero | cat | cat > /dev/null"),
            std::path::Path::new("sh"),
            &[
                "-c".to_owned(),
                format!(
                    "{} {} head -c {bytes} /dev/zero | cat > /dev/null",
                    popen.display(),
                    options.join(" ")
                ),
            ],
            gib,
        );
    }
}
