//! What a child cost, in its exit event: CPU time, peak memory, wall time
//! and the core-dump flag, from the kernel's `rusage` of the exited child.

mod common;

use std::time::Duration;

use actix_popen::{Cancel, Popen};

use common::{wait, SOON};

#[test]
fn a_busy_child_reports_its_cpu_and_wall_time() {
    common::bounded(async {
        let done = Popen::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .output()
            .await
            .expect("sh runs");
        let usage = done.usage.expect("the usage of an exited child");
        assert!(
            usage.cpu_time() >= Duration::from_millis(20),
            "a loop of 200,000 rounds used {:?} of CPU",
            usage.cpu_time()
        );
        // One thread: it cannot use more CPU than wall time (with the
        // kernel's tick rounding as slack).
        assert!(
            usage.cpu_time() <= usage.wall_time + Duration::from_millis(20),
            "{usage:?}"
        );
        assert!(!usage.core_dumped);
    });
}

/// The peak memory counts the child (here a shell holding 48 MiB in a
/// variable); a child that holds little reports little.
#[test]
fn the_peak_memory_is_in_bytes() {
    common::bounded(async {
        const HELD: u64 = 48 << 20;
        let big = Popen::new("sh")
            .args([
                "-c",
                &format!("x=$(head -c {HELD} /dev/zero | tr '\\0' a); echo ${{#x}}"),
            ])
            .output()
            .await
            .expect("sh runs");
        assert_eq!(&big.stdout[..], format!("{HELD}\n").as_bytes());
        let big = big.usage.expect("usage").max_rss;
        let small = Popen::new("true")
            .output()
            .await
            .expect("true runs")
            .usage
            .expect("usage")
            .max_rss;
        assert!(
            big >= HELD,
            "max_rss {big} bytes for a shell holding {HELD}"
        );
        assert!(small < HELD / 4, "max_rss {small} bytes for `true`");
    });
}

/// The exit event, the handle and a cancelled task all carry it.
#[test]
fn the_exit_event_and_the_handle_carry_the_usage() {
    common::bounded(async {
        let (waiter, awaited) = common::Waiter::start_new();
        let task = Popen::new("sleep")
            .arg("60")
            .exit_listener(waiter.recipient())
            .start()
            .expect("sleep starts");
        assert_eq!(task.usage(), None, "not before the exit");
        task.do_send(Cancel);
        wait(&task, SOON).await;
        let exited = common::event("Exited", awaited.exited).await.exited[0];
        let usage = exited.usage.expect("a cancelled child's usage");
        assert_eq!(task.usage(), Some(usage));
        assert!(usage.wall_time > Duration::ZERO);
        assert!(!usage.core_dumped, "SIGTERM dumps no core");

        // A task that never ran has none.
        let never = Popen::new("true").prepare().expect("prepared");
        never.do_send(Cancel);
        wait(&never, SOON).await;
        assert_eq!(never.usage(), None);
    });
}
