//! What the benchmarks share: sizes from the environment, medians, this
//! process's resident memory, and a subscriber that discards chunks.
#![allow(dead_code)] // each bench uses its own part

use std::time::Duration;

use actix::prelude::*;
use actix_popen::Chunk;

/// The size to stream, in bytes: `BENCH_MIB` MiB, or `default_mib`.
pub fn bytes(default_mib: u64) -> u64 {
    std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_mib)
        << 20
}

/// The median of some timings.
pub fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// CPU time so far of this process and of every child it has reaped (and
/// the children they reaped), user + system: a delta around a run is the
/// CPU of the whole process tree it ran.
pub fn cpu_time() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let used = |who| {
        getrusage(who).map_or(Duration::ZERO, |usage| {
            let (user, system) = (usage.user_time(), usage.system_time());
            let micros = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
            };
            micros(user) + micros(system)
        })
    };
    used(UsageWho::RUSAGE_SELF) + used(UsageWho::RUSAGE_CHILDREN)
}

/// Runs `run`, returning its wall time and the CPU time of the process
/// tree it ran (see [`cpu_time`]).
pub fn timed(run: impl FnOnce()) -> (Duration, Duration) {
    let (wall, cpu) = (std::time::Instant::now(), cpu_time());
    run();
    (wall.elapsed(), cpu_time().saturating_sub(cpu))
}

/// This process's resident memory, in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Discards chunks, counting their bytes.
#[derive(Default)]
pub struct Discard(pub u64);

impl Actor for Discard {
    type Context = Context<Self>;
}

impl Handler<Chunk> for Discard {
    type Result = ();
    fn handle(&mut self, chunk: Chunk, _: &mut Context<Self>) {
        self.0 += chunk.data.len() as u64;
    }
}

/// Asks a [`Discard`] how many bytes it counted.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct Total;

impl Handler<Total> for Discard {
    type Result = u64;
    fn handle(&mut self, _: Total, _: &mut Context<Self>) -> u64 {
        self.0
    }
}
