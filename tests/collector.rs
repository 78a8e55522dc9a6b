//! The collecting consumer's bound: a [`Collector`] keeps at most its limit
//! of each stream, the first or the last bytes as its policy says, and
//! counts what it dropped, so nothing is lost silently.

mod common;

use actix::prelude::*;
use actix_popen::{
    Collected, Collector, CollectorOverflow, GetValue, InputFrom, Popen, ReturnCode,
    DEFAULT_COLLECTOR_LIMIT,
};

use common::{async_wait, within};

/// Runs `popen` with `collector` subscribed; returns what it collected.
async fn collect(popen: Popen, collector: Collector) -> Collected {
    let collector = collector.start();
    let process = popen
        .stdin(InputFrom::Null)
        .subscribe(collector.clone().recipient())
        .start()
        .expect("cannot start the child");
    assert_eq!(async_wait(&process).await, ReturnCode::from_raw(0));
    within("GetValue", collector.send(GetValue))
        .await
        .expect("the collector is gone")
}

/// What `seq 1 100000` writes: about 590 KB, in many chunks.
fn seq_output() -> Vec<u8> {
    (1..=100_000)
        .flat_map(|n: u32| format!("{n}\n").into_bytes())
        .collect()
}

fn seq() -> Popen {
    Popen::new("seq").args(["1", "100000"])
}

#[test]
fn keep_head_keeps_the_first_bytes_of_a_long_output() {
    common::bounded(async {
        let expected = seq_output();
        let limit = 1000;
        let value = collect(
            seq(),
            Collector::with_limit(limit, CollectorOverflow::KeepHead),
        )
        .await;
        assert_eq!(&value.stdout[..], &expected[..limit]);
        assert_eq!(value.stdout_dropped, (expected.len() - limit) as u64);
        assert_eq!((value.stderr.len(), value.stderr_dropped), (0, 0));
    });
}

#[test]
fn keep_tail_keeps_the_last_bytes_of_a_long_output() {
    common::bounded(async {
        let expected = seq_output();
        let limit = 1000;
        let value = collect(
            seq(),
            Collector::with_limit(limit, CollectorOverflow::KeepTail),
        )
        .await;
        assert_eq!(&value.stdout[..], &expected[expected.len() - limit..]);
        assert_eq!(value.stdout_dropped, (expected.len() - limit) as u64);
    });
}

#[test]
fn each_stream_has_its_own_limit() {
    common::bounded(async {
        let script = "printf 0123456789; printf abc >&2";
        for (overflow, stdout) in [
            (CollectorOverflow::KeepHead, &b"0123"[..]),
            (CollectorOverflow::KeepTail, &b"6789"[..]),
        ] {
            let value = collect(
                Popen::new("sh").args(["-c", script]),
                Collector::with_limit(4, overflow),
            )
            .await;
            assert_eq!(&value.stdout[..], stdout, "{overflow:?}");
            assert_eq!(value.stdout_dropped, 6, "{overflow:?}");
            assert_eq!(&value.stderr[..], b"abc", "{overflow:?}");
            assert_eq!(value.stderr_dropped, 0, "{overflow:?}");
        }
    });
}

#[test]
fn the_default_keeps_the_first_64_mib() {
    common::bounded(async {
        assert_eq!(DEFAULT_COLLECTOR_LIMIT, 64 << 20);
        let over = DEFAULT_COLLECTOR_LIMIT + 4096;
        let value = collect(
            Popen::new("head").args(["-c", &over.to_string(), "/dev/zero"]),
            Collector::default(),
        )
        .await;
        assert_eq!(value.stdout.len(), DEFAULT_COLLECTOR_LIMIT);
        assert_eq!(value.stdout_dropped, 4096);
    });
}
