//! The orphan warning names what is still alive, and the drain timeout
//! warns too (issue 8, kind 11). This binary installs a logger that keeps
//! every record, so it holds the process's logger alone.

mod common;

use common::SOON;

use std::sync::Mutex;
use std::time::Duration;

use actix_popen::{Cancel, Popen};

use common::actors::{ChunkSink, LineReader};
use common::procs::{await_dead, leads_own_session, poll_until, Cleanup};
use common::wait;

static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Keep;

impl log::Log for Keep {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        RECORDS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

fn install() {
    static KEEP: Keep = Keep;
    let _ = log::set_logger(&KEEP);
    log::set_max_level(log::LevelFilter::Debug);
}

/// The warnings logged so far that mention `needle`.
fn warnings_naming(needle: &str) -> Vec<String> {
    RECORDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(level, text)| *level == log::Level::Warn && text.contains(needle))
        .map(|(_, text)| text.clone())
        .collect()
}

/// A grandchild that left the group (`setsid`) holds the output.
const SETSID_HOLDER: &str = "setsid sleep 1000 & echo $!; exit 0";

/// Starts `sh` with a `setsid` grandchild holding its output, as
/// `configure` says; returns the handle, the grandchild's pid and the
/// guard that kills it.
async fn start_with_holder(
    configure: impl FnOnce(Popen) -> Popen,
) -> (actix_popen::ProcessHandle, i32, Cleanup) {
    install();
    let cleanup = Cleanup::default();
    let (sink, chunks) = ChunkSink::start_new();
    let handle = configure(Popen::new("sh").args(["-c", SETSID_HOLDER]))
        .subscribe(sink.recipient())
        .start()
        .expect("spawn");
    cleanup.add(&handle);
    let holder = LineReader::new(chunks, SOON).next_pid().await;
    cleanup.add_pid(holder);
    poll_until("the setsid", SOON, || leads_own_session(holder)).await;
    (handle, holder, cleanup)
}

/// Fails unless a warning names `holder`, with `word` in it; then kills
/// the holder.
async fn assert_warned_and_kill(holder: i32, word: &str) {
    let named = warnings_naming(&holder.to_string());
    assert!(
        named.iter().any(|w| w.contains(word)),
        "no warning with {word:?} names pid {holder}: {:?}",
        RECORDS.lock().unwrap_or_else(|e| e.into_inner())
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(await_dead(holder, std::time::Instant::now() + SOON).await);
}

#[test]
fn the_orphan_warning_names_the_process_holding_the_output() {
    common::bounded(async {
        let (handle, holder, _cleanup) =
            start_with_holder(|p| p.cancel_timeout(Duration::from_millis(100))).await;
        handle.do_send(Cancel);
        wait(&handle, SOON).await;
        assert_eq!(handle.cause(), Some(actix_popen::ExitCause::Released));
        assert_warned_and_kill(holder, "orphan").await;
    });
}

#[test]
fn the_drain_timeout_warns_naming_the_process_holding_the_output() {
    common::bounded(async {
        let (handle, holder, _cleanup) =
            start_with_holder(|p| p.drain_timeout(Duration::from_millis(100))).await;
        wait(&handle, SOON).await;
        assert_warned_and_kill(holder, "output still open").await;
    });
}

#[test]
fn stopping_the_system_warns_of_a_process_left_holding_the_output() {
    let system = actix::System::new();
    let (holder, _cleanup) = system.block_on(async {
        let (_handle, holder, cleanup) =
            start_with_holder(|p| p.cancel_timeout(Duration::from_millis(100))).await;
        (holder, cleanup)
    });
    drop(system);
    let named = warnings_naming(&holder.to_string());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(
        named.iter().any(|w| w.contains("left running")),
        "no warning names pid {holder}: {:?}",
        RECORDS.lock().unwrap_or_else(|e| e.into_inner())
    );
}
