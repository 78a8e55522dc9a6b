//! The requests about the task itself: start it, cancel it, signal it,
//! ask how it is, and who hears of its start and exit.

use std::sync::Arc;

use actix::prelude::*;
use futures::channel::oneshot;

use super::lifecycle::{CancelState, Lifecycle};
use super::PopenProcess;
use crate::messages::{
    AddExitListener, AddStartListener, AsyncWait, Cancel, CancelWith, CloseReader, GetPid, IsAlive,
    RemoveExitListener, RemoveStartListener, SendSignal, Start, TryWait,
};
use crate::supervisor::{Escalate, ProcessSupervisor, Release};
use crate::sys::child::Delivery;
use crate::{ExitCause, ReturnCode, Signal, SignalError, SpawnError, SpawnErrorKind, WaitError};

impl Handler<Start> for PopenProcess {
    type Result = Result<u32, SpawnError>;

    fn handle(&mut self, _msg: Start, ctx: &mut Context<Self>) -> Self::Result {
        let Lifecycle::Pending {
            command,
            close_output,
        } = &self.lifecycle
        else {
            return Err(SpawnError::new(
                self.name.clone(),
                SpawnErrorKind::AlreadyStarted,
            ));
        };
        let close_output = *close_output;
        match command.spawn() {
            Ok(spawned) => {
                let pid = self.run(spawned);
                self.begin(close_output, ctx);
                Ok(pid)
            }
            Err(err) => {
                // The task ends as a shell would report it.
                self.shared.lock().spawn_error = Some(err.clone());
                let code = ReturnCode::from_raw(i32::from(err.shell_status()));
                self.finish(code, true, ExitCause::SpawnFailed);
                Err(err)
            }
        }
    }
}

impl Handler<Cancel> for PopenProcess {
    type Result = ();

    fn handle(&mut self, _msg: Cancel, ctx: &mut Context<Self>) {
        self.cancel(self.cancel_signal, ExitCause::Cancelled, ctx);
    }
}

impl Handler<CancelWith> for PopenProcess {
    type Result = ();

    fn handle(&mut self, CancelWith(signal): CancelWith, ctx: &mut Context<Self>) {
        self.cancel(signal, ExitCause::Cancelled, ctx);
    }
}

impl PopenProcess {
    /// Cancels the task (`why`: a cancel or the run timeout): hands its
    /// child to the supervisor's escalation with `first` as the first
    /// signal, or ends a task whose child never ran with
    /// [`ReturnCode::CANCELLED`].
    pub(super) fn cancel(&mut self, first: Signal, why: ExitCause, ctx: &mut Context<Self>) {
        match &mut self.lifecycle {
            Lifecycle::Ended { .. } => {}
            Lifecycle::Running(running) => {
                if running.cancel != CancelState::None {
                    return;
                }
                running.cancel = CancelState::Escalating(why);
                let Some(tracked) = &self.tracked else {
                    return;
                };
                // The first signals go now, from here: they do not wait
                // for the supervisor, whose arbiter (the System's) may be
                // busy or blocked. It drives the steps that follow.
                if let Some(due) = tracked.begin(first) {
                    ProcessSupervisor::get().do_send(Escalate {
                        task: Arc::clone(tracked),
                        release: ctx.address().recipient(),
                        due,
                    });
                }
                if running.status.is_some() {
                    self.hang_up_after_cancel();
                }
            }
            // Cancelled before the child ever ran (portage's
            // `_was_cancelled`): start listeners still hear of it.
            Lifecycle::Pending { .. } => self.finish(ReturnCode::CANCELLED, true, why),
        }
    }
}

impl Handler<Release> for PopenProcess {
    type Result = ();

    fn handle(&mut self, _msg: Release, _ctx: &mut Context<Self>) {
        let Some(running) = self.running() else {
            return;
        };
        running.cancel = CancelState::Released;
        match running.reader() {
            // Stop reading; the task ends when the reader confirms, so no
            // chunk can follow the exit event.
            Some(reader) => reader.do_send(CloseReader),
            None => self.maybe_finish(),
        }
    }
}

impl Handler<SendSignal> for PopenProcess {
    type Result = Result<(), SignalError>;

    /// Sends the signal through the child's own check: nothing goes out
    /// once the child was reaped (see `sys/child.rs`).
    fn handle(
        &mut self,
        SendSignal { signal, to }: SendSignal,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        let child = match (&self.tracked, &self.lifecycle) {
            (Some(tracked), Lifecycle::Running(_)) => &tracked.child,
            _ => return Err(SignalError::NotRunning),
        };
        log::debug!("{signal} to {} (pid {}, {to:?})", self.name, child.pid());
        match child.signal(signal, to) {
            Ok(Delivery::Sent) => Ok(()),
            Ok(Delivery::Gone) => Err(SignalError::NotRunning),
            Err(source) => Err(SignalError::Refused { signal, source }),
        }
    }
}

impl Handler<AsyncWait> for PopenProcess {
    type Result = ResponseFuture<Result<ReturnCode, WaitError>>;

    fn handle(&mut self, _msg: AsyncWait, _ctx: &mut Context<Self>) -> Self::Result {
        if let Lifecycle::Ended { code } = self.lifecycle {
            return Box::pin(async move { Ok(code) });
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        Box::pin(async move { rx.await.map_err(|_| WaitError::ActorGone) })
    }
}

impl Handler<TryWait> for PopenProcess {
    type Result = Option<ReturnCode>;

    fn handle(&mut self, _msg: TryWait, _ctx: &mut Context<Self>) -> Option<ReturnCode> {
        match self.lifecycle {
            Lifecycle::Ended { code } => Some(code),
            _ => None,
        }
    }
}

impl Handler<IsAlive> for PopenProcess {
    type Result = bool;

    fn handle(&mut self, _msg: IsAlive, _ctx: &mut Context<Self>) -> bool {
        matches!(self.lifecycle, Lifecycle::Running(_))
    }
}

impl Handler<GetPid> for PopenProcess {
    type Result = Option<u32>;

    fn handle(&mut self, _msg: GetPid, _ctx: &mut Context<Self>) -> Option<u32> {
        let child = &self.tracked.as_ref()?.child;
        let ended = matches!(self.lifecycle, Lifecycle::Ended { .. });
        (!ended && !child.is_reaped()).then(|| child.pid())
    }
}

impl Handler<AddExitListener> for PopenProcess {
    type Result = ();

    fn handle(&mut self, AddExitListener(listener): AddExitListener, _ctx: &mut Context<Self>) {
        self.exited.add(listener);
    }
}

impl Handler<RemoveExitListener> for PopenProcess {
    type Result = ();

    fn handle(
        &mut self,
        RemoveExitListener(listener): RemoveExitListener,
        _ctx: &mut Context<Self>,
    ) {
        self.exited.remove(&listener);
    }
}

impl Handler<AddStartListener> for PopenProcess {
    type Result = ();

    fn handle(&mut self, AddStartListener(listener): AddStartListener, _ctx: &mut Context<Self>) {
        self.started.add(listener);
    }
}

impl Handler<RemoveStartListener> for PopenProcess {
    type Result = ();

    fn handle(
        &mut self,
        RemoveStartListener(listener): RemoveStartListener,
        _ctx: &mut Context<Self>,
    ) {
        self.started.remove(&listener);
    }
}
