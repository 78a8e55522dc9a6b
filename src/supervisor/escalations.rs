//! The supervisor's timers for the cancel escalations: each escalation is
//! stepped when its deadline comes, and those due close together share
//! one pass (and one read of /proc). The steps themselves, and which
//! process gets which signal, are `escalation.rs`'s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::ProcessSupervisor;
use crate::escalation::Next;
use crate::shutdown::forget_if_reaped;
use crate::sys::proc::Groups;
use crate::tracked::Tracked;

/// Asks the supervisor to drive an escalation that has begun (its first
/// signals were sent, by the task's actor, at once): the next step is due
/// at `due`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Escalate {
    pub(crate) task: Arc<Tracked>,
    /// Told when the escalation gave up on the task.
    pub(crate) release: Recipient<Release>,
    /// When the next step is due (the SIGKILL, unless it ends first).
    pub(crate) due: Instant,
}

/// Tells the supervisor that a task being escalated has ended: if its
/// group is empty, the escalation ends (and the child is reaped) now
/// rather than at its next deadline. Ended tasks are looked at together,
/// one read of /proc for all of them.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Settle(pub(crate) Arc<Tracked>);

/// Asks the supervisor to reap a child whose task has ended and whose
/// actor is stopping, whenever the child exits.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Adopt(pub(crate) Arc<Tracked>);

/// Tells a process actor that the escalation gave up: the orphan warning
/// was logged, and the task must end without waiting any longer.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct Release;

/// The escalations under way.
#[derive(Debug, Default)]
pub(super) struct Escalations {
    /// By when each must be stepped next (and a number that keeps keys
    /// apart); finished at once if the supervisor is dropped with its
    /// System.
    due: BTreeMap<(Instant, u64), Escalating>,
    started: u64,
    /// Tasks that ended while being escalated, to be looked at in the next
    /// pass.
    settling: Vec<Arc<Tracked>>,
    /// Ended tasks whose group was still alive at their last look, by
    /// when to look again (sooner than their deadline entry: a member may
    /// have been exiting).
    rechecks: Vec<(Instant, Arc<Tracked>)>,
    /// When the next pass runs, and its timer.
    next_pass: Option<(Instant, SpawnHandle)>,
}

/// An escalation the supervisor drives.
#[derive(Debug)]
struct Escalating {
    task: Arc<Tracked>,
    release: Recipient<Release>,
}

/// How long after the earliest deadline a pass runs, so that deadlines
/// close together share one pass (and one read of /proc).
const PASS_SLACK: Duration = Duration::from_millis(2);

impl ProcessSupervisor {
    /// Steps the escalations of the tasks that ended and those that are
    /// due, with one read of /proc for all of them (when any needs it),
    /// and sets the timer for the next deadline. A task that ended keeps
    /// its deadline entry; stepped then, an escalation already over costs
    /// nothing.
    fn pass(&mut self, ctx: &mut Context<Self>) {
        self.escalations.next_pass = None;
        let now = Instant::now();
        let mut groups = Groups::default();
        let mut settling = std::mem::take(&mut self.escalations.settling);
        self.escalations.rechecks.retain(|(at, task)| {
            let due = *at <= now;
            if due {
                settling.push(task.clone());
            }
            !due
        });
        for task in settling {
            // The task has ended: nobody to release. A group still alive
            // is looked at again when the step says (soon after the end,
            // then less and less often); the deadline entry, if the
            // escalation is still on then, steps it on too.
            match task.step(&mut groups) {
                Next::Wait(at) => self.escalations.rechecks.push((at, task)),
                Next::Release | Next::Done => forget_if_reaped(&task),
            }
        }
        while let Some(entry) = self.escalations.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, number), escalating) = entry.remove_entry();
            match escalating.task.step(&mut groups) {
                Next::Wait(at) => {
                    self.escalations.due.insert((at, number), escalating);
                }
                Next::Release => {
                    forget_if_reaped(&escalating.task);
                    escalating.release.do_send(Release);
                }
                Next::Done => forget_if_reaped(&escalating.task),
            }
        }
        let next_deadline = self.escalations.due.keys().next().map(|&(due, _)| due);
        let next_recheck = self.escalations.rechecks.iter().map(|(at, _)| *at).min();
        if let Some(next) = next_deadline.into_iter().chain(next_recheck).min() {
            self.pass_at(next + PASS_SLACK, ctx);
        }
    }

    /// Makes sure a pass runs at `at` or earlier.
    fn pass_at(&mut self, at: Instant, ctx: &mut Context<Self>) {
        if let Some((planned, handle)) = self.escalations.next_pass {
            if planned <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| {
            act.pass(ctx)
        });
        self.escalations.next_pass = Some((at, handle));
    }
}

impl Handler<Escalate> for ProcessSupervisor {
    type Result = ();

    fn handle(&mut self, Escalate { task, release, due }: Escalate, ctx: &mut Context<Self>) {
        self.escalations.started += 1;
        self.escalations.due.insert(
            (due, self.escalations.started),
            Escalating { task, release },
        );
        self.pass_at(due + PASS_SLACK, ctx);
    }
}

impl Handler<Settle> for ProcessSupervisor {
    type Result = ();

    /// A pass now, after the messages already in the mailbox: a burst of
    /// ended tasks shares it.
    fn handle(&mut self, Settle(task): Settle, ctx: &mut Context<Self>) {
        self.escalations.settling.push(task);
        self.pass_at(Instant::now(), ctx);
    }
}

impl Handler<Adopt> for ProcessSupervisor {
    type Result = ();

    fn handle(&mut self, Adopt(task): Adopt, ctx: &mut Context<Self>) {
        ctx.spawn(
            async move {
                match task.child.clone().exited().await {
                    Ok(code) => log::debug!(
                        "adopted pid {} exited with return code {code}",
                        task.child.pid()
                    ),
                    Err(err) => log::error!("adopted pid {}: {err}", task.child.pid()),
                }
                forget_if_reaped(&task);
            }
            .into_actor(self),
        );
    }
}
