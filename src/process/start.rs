//! Starting a task's actor: spawned now on this arbiter or another, or
//! prepared for a deferred [`Start`](crate::Start).

use actix::prelude::*;

use super::{PopenProcess, ProcessHandle, TaskSpec};
use crate::{SpawnError, SpawnErrorKind};

fn check_arbiter(spec: &TaskSpec) -> Result<(), SpawnError> {
    if actix_rt::Arbiter::try_current().is_none() || tokio::runtime::Handle::try_current().is_err()
    {
        return Err(SpawnError::new(
            spec.command.program_name(),
            SpawnErrorKind::NoArbiter,
        ));
    }
    Ok(())
}

impl PopenProcess {
    pub(crate) fn spawn_and_start(spec: TaskSpec) -> Result<ProcessHandle, SpawnError> {
        check_arbiter(&spec)?;
        spec.validate()?;
        let spawned = spec.command.spawn()?;
        let actor = PopenProcess::new(spec, Some(spawned));
        let shared = actor.shared.clone();
        Ok(ProcessHandle {
            id: actor.id,
            addr: actor.start(),
            shared,
        })
    }

    pub(crate) fn prepare(spec: TaskSpec) -> Result<ProcessHandle, SpawnError> {
        check_arbiter(&spec)?;
        spec.validate()?;
        let actor = PopenProcess::new(spec, None);
        let shared = actor.shared.clone();
        Ok(ProcessHandle {
            id: actor.id,
            addr: actor.start(),
            shared,
        })
    }

    pub(crate) fn spawn_in_arbiter(
        spec: TaskSpec,
        arbiter: &actix_rt::ArbiterHandle,
    ) -> Result<ProcessHandle, SpawnError> {
        // A stopped arbiter refuses work; should it stop between this check
        // and the start, the actor is dropped unstarted and its teardown
        // cancels and reaps the child.
        if !arbiter.spawn(async {}) {
            return Err(SpawnError::new(
                spec.command.program_name(),
                SpawnErrorKind::NoArbiter,
            ));
        }
        spec.validate()?;
        let spawned = spec.command.spawn()?;
        let actor = PopenProcess::new(spec, Some(spawned));
        let shared = actor.shared.clone();
        Ok(ProcessHandle {
            id: actor.id,
            addr: Actor::start_in_arbiter(arbiter, |_| actor),
            shared,
        })
    }
}
