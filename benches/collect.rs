//! The collecting consumer: `Collector` keeping 256 MiB from `head -c`,
//! throughput and the peak resident memory of this process.
//!
//! ```text
//! cargo bench --bench collect
//! BENCH_MIB=64 cargo bench --bench collect
//! ```
//!
//! portage's stock `PipeReader` keeps a list of 4 KiB strings and joins
//! them in `getvalue()`; BENCHMARKS.md quotes its figures for the same
//! 256 MiB. This runs in a process of its own, so the peak is ours alone.

mod common;

use std::time::Instant;

use actix::prelude::*;
use actix_popen::{AsyncWait, Collector, CollectorOverflow, GetValue, Popen};
use nix::sys::resource::{getrusage, UsageWho};

fn main() {
    let mib: u64 = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let bytes = mib << 20;
    System::new().block_on(async move {
        let started = Instant::now();
        let cpu = common::cpu_time();
        // Beyond the default limit of 64 MiB: keep all of it.
        let collector = Collector::with_limit(usize::MAX, CollectorOverflow::KeepHead).start();
        let process = Popen::new("head")
            .args(["-c", &bytes.to_string(), "/dev/zero"])
            .subscribe(collector.clone().recipient())
            .start()
            .expect("head");
        let code = process.send(AsyncWait).await.expect("actor").expect("code");
        assert!(code.success());
        let value = collector.send(GetValue).await.expect("collector");
        let took = started.elapsed();
        let cpu = common::cpu_time().saturating_sub(cpu);
        assert_eq!(value.stdout.len() as u64, bytes);
        let peak_mib = getrusage(UsageWho::RUSAGE_SELF)
            .expect("getrusage")
            .max_rss() as f64
            / 1024.0;
        println!(
            "collect {mib} MiB with Collector + GetValue (bufsize 4096): {:.3}s = {:.2} GB/s, \
             {:.2} CPU s/GiB, peak RSS {peak_mib:.0} MiB",
            took.as_secs_f64(),
            bytes as f64 / took.as_secs_f64() / 1e9,
            cpu.as_secs_f64() / (bytes as f64 / f64::from(1 << 30)),
        );
    });
}
