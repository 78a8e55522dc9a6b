//! Stream throughput: a child writing N bytes of zeros (`head -c`),
//! delivered as `Chunk` messages to a subscriber that discards them,
//! against a blocking `std::process` read loop and `tokio::process` with
//! `AsyncReadExt::read`, each with the same buffer size, in the same run.
//!
//! ```text
//! cargo bench --bench stream              # 1 GiB
//! BENCH_MIB=256 cargo bench --bench stream
//! ```

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use actix::prelude::*;
use actix_popen::{AsyncWait, Popen};
use tokio::io::AsyncReadExt;

fn head(bytes: u64) -> Command {
    let mut command = Command::new("head");
    command.args(["-c", &bytes.to_string(), "/dev/zero"]);
    command
}

fn std_loop(bytes: u64, bufsize: usize) {
    let mut child = head(bytes).stdout(Stdio::piped()).spawn().expect("head");
    let mut out = child.stdout.take().expect("piped");
    let mut buf = vec![0u8; bufsize];
    let mut total = 0u64;
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(err) => panic!("read: {err}"),
        }
    }
    assert!(child.wait().expect("wait").success());
    assert_eq!(total, bytes);
}

fn tokio_loop(bytes: u64, bufsize: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut child = tokio::process::Command::from(head(bytes))
            .stdout(Stdio::piped())
            .spawn()
            .expect("head");
        let mut out = child.stdout.take().expect("piped");
        let mut buf = vec![0u8; bufsize];
        let mut total = 0u64;
        loop {
            match out.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(err) => panic!("read: {err}"),
            }
        }
        assert!(child.wait().await.expect("wait").success());
        assert_eq!(total, bytes);
    })
}

fn actor(bytes: u64, bufsize: usize) {
    System::new().block_on(async move {
        let discard = common::Discard::default().start();
        let process = Popen::new("head")
            .args(["-c", &bytes.to_string(), "/dev/zero"])
            .bufsize(bufsize)
            .subscribe(discard.clone().recipient())
            .start()
            .expect("head");
        let code = process.send(AsyncWait).await.expect("actor").expect("code");
        assert!(code.success());
        assert_eq!(discard.send(common::Total).await.expect("total"), bytes);
    })
}

fn main() {
    let bytes = common::bytes(1024);
    let gib = bytes as f64 / f64::from(1 << 30);
    let runs = 5;
    for bufsize in [4096, 65536] {
        let (mut std_runs, mut tokio_runs, mut actor_runs) = (Vec::new(), Vec::new(), Vec::new());
        // Interleaved, so that noise from the shared machine hits all three.
        for _ in 0..runs {
            std_runs.push(common::timed(|| std_loop(bytes, bufsize)));
            tokio_runs.push(common::timed(|| tokio_loop(bytes, bufsize)));
            actor_runs.push(common::timed(|| actor(bytes, bufsize)));
        }
        let median = |runs: &[(Duration, Duration)]| {
            (
                common::median(runs.iter().map(|r| r.0).collect()),
                common::median(runs.iter().map(|r| r.1).collect()),
            )
        };
        let (s, t, a) = (median(&std_runs), median(&tokio_runs), median(&actor_runs));
        let show = |(wall, cpu): (Duration, Duration)| {
            format!(
                "{:.2} GiB/s, {:.2} CPU s/GiB",
                gib / wall.as_secs_f64(),
                cpu.as_secs_f64() / gib
            )
        };
        println!(
            "stream {} MiB, bufsize {bufsize}: std {}; tokio {}; actors {}",
            bytes >> 20,
            show(s),
            show(t),
            show(a),
        );
        println!(
            "  actors/std: throughput {:.2}x, CPU {:.2}x; actors/tokio: throughput {:.2}x, CPU {:.2}x",
            s.0.as_secs_f64() / a.0.as_secs_f64(),
            a.1.as_secs_f64() / s.1.as_secs_f64(),
            t.0.as_secs_f64() / a.0.as_secs_f64(),
            a.1.as_secs_f64() / t.1.as_secs_f64(),
        );
    }
}
