//! Run a task to its end in one call: [`Popen::output`](crate::Popen::output)
//! (status and captured output) and [`Popen::status`](crate::Popen::status),
//! as std's and tokio's `Command::output` and `status`, or Python's
//! `subprocess.run`.

use actix::{Actor, Addr};
use bytes::Bytes;

use crate::consumers::Collector;
use crate::messages::{AsyncWait, TakeValue};
use crate::process::{PopenProcess, ProcessHandle, TaskSpec};
use crate::{CollectorOverflow, ExitCause, ResourceUsage, ReturnCode, SpawnError, SpawnErrorKind};

/// What [`Popen::output`](crate::Popen::output) gives: how the task ended,
/// and everything its stdout and stderr carried (Python's
/// `CompletedProcess`, std's `Output`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompletedProcess {
    /// How the task's child ended.
    pub returncode: ReturnCode,
    /// Why the task ended: by itself, or by its timeout, a cancel, …
    pub cause: ExitCause,
    /// What the child cost: CPU time, peak memory, wall time; `None` if
    /// its status was lost.
    pub usage: Option<ResourceUsage>,
    /// Everything the child wrote to its stdout (and its stderr, when
    /// merged into it).
    pub stdout: Bytes,
    /// Everything the child wrote to its stderr, when it has a stream of
    /// its own.
    pub stderr: Bytes,
}

impl CompletedProcess {
    /// A completed process, for tests of code that handles one.
    pub fn new(
        returncode: ReturnCode,
        cause: ExitCause,
        stdout: impl Into<Bytes>,
        stderr: impl Into<Bytes>,
    ) -> Self {
        CompletedProcess {
            returncode,
            cause,
            usage: None,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }
}

/// Why a task run with [`Popen::output`](crate::Popen::output) or
/// [`Popen::status`](crate::Popen::status) has no result.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The child could not be spawned; nothing ran.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The task's actor stopped before the task ended: its arbiter or its
    /// System was stopped, which cancelled and reaped the child.
    #[error("{program}: the task's actix System stopped before the task ended")]
    ActorGone {
        /// The program, as given.
        program: String,
    },
}

/// Starts the task on this thread's arbiter when one runs here (inside an
/// actix System), else on the background System's; with a collector of
/// its whole output when `collect` is set.
fn start(
    spec: TaskSpec,
    collect: bool,
) -> Result<(ProcessHandle, Option<Addr<Collector>>), SpawnError> {
    let mut spec = spec;
    let unlimited = || Collector::with_limit(usize::MAX, CollectorOverflow::KeepHead);
    let here = actix_rt::Arbiter::try_current().is_some()
        && actix_rt::System::try_current().is_some()
        && tokio::runtime::Handle::try_current().is_ok();
    if here {
        let collector = collect.then(|| unlimited().start());
        if let Some(collector) = &collector {
            spec.subscribers.push((None, collector.clone().recipient()));
        }
        return Ok((PopenProcess::spawn_and_start(spec)?, collector));
    }
    let arbiter = crate::background::arbiter().map_err(|source| {
        SpawnError::new(
            spec.command.program_name(),
            SpawnErrorKind::Io {
                source: std::sync::Arc::new(source),
            },
        )
    })?;
    let collector = collect.then(|| Collector::start_in_arbiter(&arbiter, move |_| unlimited()));
    if let Some(collector) = &collector {
        spec.subscribers.push((None, collector.clone().recipient()));
    }
    Ok((PopenProcess::spawn_in_arbiter(spec, &arbiter)?, collector))
}

/// Waits for the end of the task started from `spec`.
async fn wait(handle: &ProcessHandle, program: &str) -> Result<ReturnCode, RunError> {
    let gone = || RunError::ActorGone {
        program: program.to_owned(),
    };
    handle
        .send(AsyncWait)
        .await
        .map_err(|_| gone())?
        .map_err(|_| gone())
}

pub(crate) async fn output(spec: TaskSpec) -> Result<CompletedProcess, RunError> {
    let program = spec.command.program_name();
    let (handle, collector) = start(spec, true)?;
    let returncode = wait(&handle, &program).await?;
    let collected = match collector {
        // Every chunk was sent to the collector before the task ended, so
        // it is in the collector's mailbox ahead of this request.
        Some(collector) => collector
            .send(TakeValue)
            .await
            .map_err(|_| RunError::ActorGone {
                program: program.clone(),
            })?,
        None => Default::default(),
    };
    Ok(CompletedProcess {
        returncode,
        // Set with the return code, which the wait saw.
        cause: handle.cause().unwrap_or(ExitCause::Exited),
        usage: handle.usage(),
        stdout: collected.stdout,
        stderr: collected.stderr,
    })
}

pub(crate) async fn status(spec: TaskSpec) -> Result<ReturnCode, RunError> {
    let program = spec.command.program_name();
    let (handle, _) = start(spec, false)?;
    wait(&handle, &program).await
}
