//! The child's stops and continues, told to the task's stop and continue
//! listeners (see [`Popen::stop_listener`](crate::Popen::stop_listener)).

use actix::prelude::*;
use tokio::signal::unix::{signal, SignalKind};

use super::PopenProcess;
use crate::messages::{Continued, Stopped};
use crate::sys::child::JobState;
use crate::Signal;

impl PopenProcess {
    /// Listens for SIGCHLD, if anyone wants to hear of stops and
    /// continues, and looks at the child at each one.
    pub(super) fn watch_job_control(&mut self, ctx: &mut Context<Self>) {
        if self.job_listeners.is_empty() {
            return;
        }
        let mut sigchld = match signal(SignalKind::child()) {
            Ok(sigchld) => sigchld,
            Err(err) => {
                log::error!(
                    "{}: cannot listen for SIGCHLD, so stops are not told: {err}",
                    self.name
                );
                return;
            }
        };
        let changes = futures::stream::poll_fn(move |cx| sigchld.poll_recv(cx));
        ctx.spawn(
            changes
                .into_actor(self)
                .map(|(), act, _ctx| act.job_state_changed())
                .finish(),
        );
        // A stop before the handler was there sent its SIGCHLD to nobody.
        self.job_state_changed();
    }

    /// Tells the listeners every stop and continue of the child the kernel
    /// has not reported yet.
    fn job_state_changed(&mut self) {
        let Some(child) = self.tracked.as_ref().map(|t| t.child.clone()) else {
            return;
        };
        loop {
            match child.poll_job_state() {
                Ok(Some(JobState::Stopped(number))) => {
                    let Some(signal) = Signal::from_raw(number) else {
                        continue;
                    };
                    let stopped = Stopped::new(self.id, child.pid(), signal);
                    for listener in &self.job_listeners.stopped {
                        listener.do_send(stopped);
                    }
                }
                Ok(Some(JobState::Continued)) => {
                    let continued = Continued::new(self.id, child.pid());
                    for listener in &self.job_listeners.continued {
                        listener.do_send(continued);
                    }
                }
                Ok(None) => return,
                Err(err) => {
                    log::warn!("{}: cannot read the child's stops: {err}", self.name);
                    return;
                }
            }
        }
    }
}
