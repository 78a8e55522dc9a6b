//! The drain timeout ([`Popen::drain_timeout`](crate::Popen::drain_timeout)):
//! how long the output may stay open after the child exited.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::PopenProcess;
use crate::messages::CloseReader;

impl PopenProcess {
    /// Closes the output once `timeout` has passed since the child exited,
    /// not counting the time the reader waited for slow subscribers (that
    /// output was already written; it is only being taken slowly).
    pub(super) fn arm_drain_timeout(
        &mut self,
        timeout: Duration,
        exited: Instant,
        stalled: Duration,
        ctx: &mut Context<Self>,
    ) {
        let Some(reader) = self.running().and_then(|r| r.reader().cloned()) else {
            return;
        };
        let waited = exited
            .elapsed()
            .saturating_sub(self.stalls.stalled().saturating_sub(stalled));
        let Some(left) = timeout.checked_sub(waited).filter(|left| !left.is_zero()) else {
            let holders = crate::sys::proc::holders(
                &self
                    .tracked
                    .as_ref()
                    .map(|t| t.outputs.clone())
                    .unwrap_or_default(),
            );
            let fate = self
                .tracked
                .as_ref()
                .map_or("they are left running", |t| t.fate_of_holders());
            log::warn!(
                "{}: output still open {timeout:?} after the exit (held by pids {holders:?}); \
                 closing it: {fate}",
                self.name
            );
            if let Some(running) = self.running() {
                running.drain_closed = true;
            }
            reader.do_send(CloseReader);
            self.hang_up_terminal(None);
            return;
        };
        ctx.run_later(left, move |act, ctx| {
            act.arm_drain_timeout(timeout, exited, stalled, ctx);
        });
    }
}
