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
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_popen::{AsyncWait, Popen};
use tokio::io::AsyncReadExt;

fn head(bytes: u64) -> Command {
    let mut command = Command::new("head");
    command.args(["-c", &bytes.to_string(), "/dev/zero"]);
    command
}

fn std_loop(bytes: u64, bufsize: usize) -> Duration {
    let started = Instant::now();
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
    started.elapsed()
}

fn tokio_loop(bytes: u64, bufsize: usize) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let started = Instant::now();
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
        started.elapsed()
    })
}

fn actor(bytes: u64, bufsize: usize) -> Duration {
    System::new().block_on(async move {
        let started = Instant::now();
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
        started.elapsed()
    })
}

fn main() {
    let bytes = common::bytes(1024);
    let runs = 5;
    for bufsize in [4096, 65536] {
        let (mut std_times, mut tokio_times, mut actor_times) =
            (Vec::new(), Vec::new(), Vec::new());
        // Interleaved, so that noise from the shared machine hits all three.
        for _ in 0..runs {
            std_times.push(std_loop(bytes, bufsize));
            tokio_times.push(tokio_loop(bytes, bufsize));
            actor_times.push(actor(bytes, bufsize));
        }
        let (s, t, a) = (
            common::median(std_times),
            common::median(tokio_times),
            common::median(actor_times),
        );
        let gib_s = |d: Duration| bytes as f64 / d.as_secs_f64() / (1u64 << 30) as f64;
        println!(
            "stream {} MiB, bufsize {bufsize}: std {:.2} GiB/s, tokio {:.2} GiB/s, actors {:.2} GiB/s; \
             actors/std throughput {:.2}x, actors/tokio {:.2}x",
            bytes >> 20,
            gib_s(s),
            gib_s(t),
            gib_s(a),
            s.as_secs_f64() / a.as_secs_f64(),
            t.as_secs_f64() / a.as_secs_f64(),
        );
    }
}
