//! One actix System on a thread of its own, for tasks run from outside
//! any actix System ([`Popen::output`](crate::Popen::output) and
//! [`Popen::status`](crate::Popen::status) awaited in a plain tokio
//! runtime, or on a thread with no runtime). It starts the first time it
//! is needed and runs until the process exits: one thread for every such
//! task, never one per child.

use std::io;
use std::sync::Mutex;

use actix_rt::{ArbiterHandle, System};

static ARBITER: Mutex<Option<ArbiterHandle>> = Mutex::new(None);

/// The background System's arbiter, started now if it is not running.
///
/// # Errors
/// The thread could not be created (EAGAIN: the host is out of threads or
/// memory), or its System did not start.
pub(crate) fn arbiter() -> io::Result<ArbiterHandle> {
    let mut slot = ARBITER.lock().unwrap_or_else(|e| e.into_inner());
    // `spawn` refuses work once the arbiter stopped.
    if let Some(arbiter) = slot.as_ref().filter(|a| a.spawn(async {})) {
        return Ok(arbiter.clone());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("actix-popen".to_owned())
        .spawn(move || {
            let system = System::new();
            let _ = tx.send(System::current().arbiter().clone());
            if let Err(err) = system.run() {
                log::error!("the background actix System stopped: {err}");
            }
        })?;
    let arbiter = rx
        .recv()
        .map_err(|_| io::Error::other("the background actix System did not start"))?;
    *slot = Some(arbiter.clone());
    Ok(arbiter)
}
