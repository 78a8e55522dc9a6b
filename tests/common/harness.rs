//! Running a test's System on a thread of its own, bounded in time, and
//! checking once that thread is gone that nothing was left behind: no
//! child of ours (running or zombie) and the same fds as before. Tests that
//! count process-wide things take a mutex of their binary in turn.

use std::future::Future;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

use actix::System;

use super::fds::{assert_same_fds, open_fds};
use super::procs::{our_children, Cleanup};

/// How long a test's System may run before the test counts as hung.
pub const HANG: Duration = Duration::from_secs(180);

/// Takes one of a test binary's mutexes, even if a test that failed while
/// holding it poisoned it.
pub fn lock(mutex: &'static Mutex<()>) -> MutexGuard<'static, ()> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on a thread of its own and returns what it returned; fails if
/// it panicked (with its panic) or hung past `hang`. A hung thread is left
/// behind, not joined.
pub fn on_own_thread<T: Send + 'static>(
    hang: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("test-system".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("cannot start the System's thread");
    match rx.recv_timeout(hang) {
        Ok(output) => {
            thread.join().expect("the System's thread panicked");
            output
        }
        Err(RecvTimeoutError::Timeout) => panic!("the test's System hung for {hang:?}"),
        Err(RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread ended without a result"),
        },
    }
}

/// Opens the first runtime of the process and makes its first spawn,
/// whose fds (tokio's signal socket pair, the socket pair the library's
/// spawns pass fds through) live as long as the process, so that they
/// are not counted as a test's leak.
pub fn warm_up() {
    static WARM_UP: Once = Once::new();
    WARM_UP.call_once(|| {
        System::new().block_on(async {
            let status = actix_popen::Popen::new("true").status().await;
            assert!(status.is_ok(), "the first spawn failed: {status:?}");
        })
    });
}

/// Runs `test` on a thread of its own (which owns its System), failing if
/// it hangs past [`HANG`] or panics; then checks that it left no child of
/// ours, running or zombie, and that the fds are those of before: every
/// actor, pipe, pty and pidfd of the test was released. `test` tells the
/// [`Cleanup`] what it starts, so that a failure leaves nothing running.
pub fn run_thread<T: Send + 'static>(test: impl FnOnce(Cleanup) -> T + Send + 'static) -> T {
    warm_up();
    let cleanup = Cleanup::default();
    let fds = open_fds();
    let output = on_own_thread(HANG, {
        let cleanup = cleanup.clone();
        move || test(cleanup)
    });
    let left = our_children();
    assert!(left.is_empty(), "children of ours left behind: {left:?}");
    assert_same_fds(&fds);
    drop(cleanup);
    output
}

/// [`run_thread`] with a System that runs `test` to its end and is then
/// dropped.
pub fn run_system<T, Fut>(test: impl FnOnce(Cleanup) -> Fut + Send + 'static) -> T
where
    T: Send + 'static,
    Fut: Future<Output = T>,
{
    run_thread(move |cleanup| System::new().block_on(test(cleanup)))
}
