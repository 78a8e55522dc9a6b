//! The [`ProcessSupervisor`]: one actor per actix System, found (or
//! started) by [`ProcessSupervisor::get`]. It hosts two things, each in a
//! file of its own:
//!
//! - `escalations.rs`: the timers of the cancel escalations. On
//!   [`Cancel`](crate::Cancel) a process actor hands its child to the
//!   supervisor, which steps the escalation (`escalation.rs` says what each
//!   process gets, and when) on its timers. A task released by the
//!   escalation whose child has still not exited, and whose actor stops,
//!   is adopted: the supervisor reaps the child whenever it exits.
//! - `job_pool.rs`: the job pool behind [`Popen::submit`](crate::Popen::submit)
//!   (portage's `--jobs` and `--load-average`).
//!
//! When the System stops, the supervisor is dropped with it, and its guard
//! cancels and reaps every child of the System still running, blocking
//! (`shutdown.rs`).

mod escalations;
mod job_pool;

use std::sync::Mutex;

use actix::prelude::*;
use actix::WeakAddr;

pub(crate) use escalations::{Adopt, Escalate, Release, Settle};
pub(crate) use job_pool::{Enqueue, Job};
pub use job_pool::{GetJobPool, JobPool, SetJobLimits};

/// The actor that owns the cancel timers and the job pool (one per actix
/// System).
///
/// [`ProcessSupervisor::get`] finds (or starts) the current System's;
/// users need not start it, and talk to it only to set the pool's limits
/// ([`SetJobLimits`]) or read its state ([`GetJobPool`]). See the module
/// documentation for what it does to the OS processes.
///
/// ```
/// use actix_popen::{AsyncWait, Popen, ProcessSupervisor, SetJobLimits};
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // At most two children at once, like `emerge --jobs 2`.
/// ProcessSupervisor::get()
///     .send(SetJobLimits { max_jobs: Some(2), max_load: None })
///     .await??;
/// let tasks: Vec<_> = (0..5)
///     .map(|_| Popen::new("true").submit())
///     .collect::<Result<_, _>>()?;
/// for task in tasks {
///     assert!(task.send(AsyncWait).await??.success());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct ProcessSupervisor {
    pool: job_pool::Pool,
    escalations: escalations::Escalations,
    /// Takes down every child of the System it serves, when dropped with
    /// it.
    _system: Option<SystemGuard>,
    /// Its own address, which keeps it running for as long as its System
    /// runs; dropped with it when the System's arbiter is torn down.
    _this: Option<Addr<ProcessSupervisor>>,
}

/// Each System's supervisor, held weakly: the System owns it (through its
/// own `this`), so nothing of a dropped System stays behind. (actix's
/// `SystemService` registry keeps every System's services for the life of
/// the process, and with them that System's reactor fds.)
static SUPERVISORS: Mutex<Vec<(usize, WeakAddr<ProcessSupervisor>)>> = Mutex::new(Vec::new());

impl ProcessSupervisor {
    /// The current System's supervisor, started on the System's arbiter
    /// the first time it is asked for.
    ///
    /// # Panics
    /// Outside a running actix System (as every actix `start` does).
    pub fn get() -> Addr<ProcessSupervisor> {
        let system = System::current();
        let mut supervisors = SUPERVISORS.lock().unwrap_or_else(|e| e.into_inner());
        supervisors.retain(|(_, weak)| weak.upgrade().is_some());
        if let Some(addr) = supervisors
            .iter()
            .find(|(id, _)| *id == system.id())
            .and_then(|(_, weak)| weak.upgrade())
        {
            return addr;
        }
        let guard = SystemGuard(system.id());
        let addr = ProcessSupervisor::start_in_arbiter(&system.arbiter().clone(), move |ctx| {
            ProcessSupervisor {
                _this: Some(ctx.address()),
                _system: Some(guard),
                ..ProcessSupervisor::default()
            }
        });
        supervisors.push((system.id(), addr.downgrade()));
        addr
    }
}

impl Actor for ProcessSupervisor {
    type Context = Context<Self>;
}

/// Cancels and reaps every child of its System when dropped (see
/// `shutdown.rs`). The supervisor holds it, so it drops with the
/// supervisor when the System's arbiter is torn down; and should the
/// System stop before the supervisor was even built (it is built on the
/// System's arbiter, later), it drops with the unrun start, at the same
/// teardown.
#[derive(Debug)]
struct SystemGuard(usize);

impl Drop for SystemGuard {
    fn drop(&mut self) {
        crate::shutdown::shutdown_system(self.0);
    }
}
