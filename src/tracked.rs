//! A child from its spawn until it is reaped, as the cancel escalation,
//! the supervisor and the shutdown registry see it ([`Tracked`]): the
//! escalation's [`Kill`] target, with the escalation's state, its cancel
//! timeout, and where its task runs.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::escalation::{begin, step, Kill, Next, Phase};
use crate::sys::cgroup::{Cgroup, Skip};
use crate::sys::child::{Child, Delivery, Hold};
use crate::sys::proc::Groups;
use crate::{Signal, SignalTarget};

/// Where a task runs: its actor's arbiter thread and its actix System.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Home {
    pub(crate) thread: ThreadId,
    pub(crate) system: Option<usize>,
}

impl Home {
    /// The current thread, and its System if it has one.
    pub(crate) fn here() -> Home {
        Home {
            thread: std::thread::current().id(),
            system: actix::System::try_current().map(|system| system.id()),
        }
    }
}

/// A child from its spawn until it is reaped, as the escalation, the
/// supervisor and the shutdown see it.
#[derive(Debug)]
pub(crate) struct Tracked {
    pub(crate) child: Arc<Child>,
    pub(crate) name: String,
    pub(crate) cancel_timeout: Duration,
    /// Where the task runs: the thread of its actor's arbiter (that of the
    /// spawn until the actor starts) and its actix System.
    home: Mutex<Home>,
    /// What the child's output ends link to in /proc (`pipe:[N]`,
    /// `/dev/pts/N`), to name who holds them open.
    pub(crate) outputs: Vec<String>,
    phase: Mutex<Phase>,
    finished: AtomicBool,
    /// The task's own cgroup, if it asked for one: every process in it is
    /// the task's, and is signalled with the child's group.
    cgroup: Option<Arc<Cgroup>>,
    /// The first signal of the cancels it begins itself (the leftovers of
    /// a contained task, a shutdown): the task's cancel signal.
    cancel_signal: Signal,
}

impl Tracked {
    pub(crate) fn new(
        child: Arc<Child>,
        name: String,
        cancel_timeout: Duration,
        outputs: Vec<String>,
        cgroup: Option<Arc<Cgroup>>,
        cancel_signal: Signal,
    ) -> Arc<Tracked> {
        Arc::new(Tracked {
            child,
            name,
            cancel_timeout,
            home: Mutex::new(Home::here()),
            outputs,
            phase: Mutex::new(Phase::Idle),
            finished: AtomicBool::new(false),
            cgroup,
            cancel_signal,
        })
    }

    /// Where the task runs.
    pub(crate) fn home(&self) -> Home {
        *self.home.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the task now runs here; returns where it was.
    pub(crate) fn move_here(&self) -> Home {
        let mut home = self.home.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *home, Home::here())
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Step 1 with `first` as the first signal, if not begun yet; takes
    /// the escalation's hold on the child. Returns when to step next, or
    /// `None` if nothing began.
    pub(crate) fn begin(&self, first: Signal) -> Option<Instant> {
        let mut phase = self.phase();
        if *phase != Phase::Idle || !self.child.hold(Hold::Escalation) {
            return None;
        }
        let now = Instant::now();
        begin(self, &mut phase, self.cancel_timeout, now, first);
        Some(now + self.cancel_timeout)
    }

    /// Moves the escalation on; when it ends, releases its hold (which
    /// may reap the child).
    pub(crate) fn step(&self, groups: &mut Groups) -> Next {
        let mut phase = self.phase();
        let was_running = !matches!(*phase, Phase::Idle | Phase::Done);
        let next = step(
            self,
            &mut phase,
            self.cancel_timeout,
            Instant::now(),
            groups,
        );
        drop(phase);
        if was_running && !matches!(next, Next::Wait(_)) {
            // May reap the child: the caller then takes it out of the
            // shutdown registry.
            self.child.release(Hold::Escalation);
            if self.finished.load(Ordering::SeqCst) {
                self.remove_cgroup();
            }
        }
        next
    }

    /// The task ended: it no longer needs the child's numbers (this may
    /// reap the child: the caller then takes it out of the shutdown
    /// registry). Returns
    /// whether an escalation is under way, which may end early now if the
    /// group is empty: the caller has the supervisor look, in a batch (a
    /// look is a read of /proc, too slow to make once per task when
    /// thousands are cancelled at once).
    ///
    /// A task with a cgroup that still holds processes (a daemon it left
    /// behind) has them ended too, by the cancel's escalation, as systemd
    /// ends what is left of a stopped service (`KillMode=control-group`).
    pub(crate) fn task_ended(&self) -> bool {
        self.finished.store(true, Ordering::SeqCst);
        if let Some(cgroup) = &self.cgroup {
            if !self.escalating() && cgroup.populated() {
                log::debug!(
                    "{}: ended with processes left in its cgroup {}; ending them",
                    self.name,
                    cgroup.path().display()
                );
                self.begin(self.cancel_signal);
            }
        }
        self.child.release(Hold::Task);
        let escalating = self.escalating();
        if !escalating {
            self.remove_cgroup();
        }
        escalating
    }

    /// What becomes of the task's processes that hold its output once it
    /// stops waiting for them, for a warning.
    pub(crate) fn fate_of_holders(&self) -> &'static str {
        if self.cgroup.is_some() {
            "they are ended with its cgroup"
        } else {
            "they are left running"
        }
    }

    /// The task's cgroup, if it has one.
    pub(crate) fn cgroup(&self) -> Option<&Arc<Cgroup>> {
        self.cgroup.as_ref()
    }

    /// How many of the cgroup's processes the OOM killer killed; 0 without
    /// a cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        self.cgroup.as_ref().map_or(0, |cgroup| cgroup.oom_kills())
    }

    /// Whether the task has a cgroup with a process in it.
    pub(crate) fn cgroup_populated(&self) -> bool {
        self.cgroup
            .as_ref()
            .is_some_and(|cgroup| cgroup.populated())
    }

    /// Removes the task's cgroup once it is empty (else its drop kills
    /// what is left and removes it).
    fn remove_cgroup(&self) {
        if let Some(cgroup) = &self.cgroup {
            if !cgroup.populated() {
                if let Err(err) = cgroup.remove() {
                    log::debug!(
                        "cannot remove cgroup {} yet: {err}",
                        cgroup.path().display()
                    );
                }
            }
        }
    }

    /// For a teardown, when nobody will end the task any more: it counts
    /// as ended, and its escalation begins now with the task's cancel
    /// signal, or goes on from where it is.
    pub(crate) fn end_for_shutdown(&self) {
        self.finished.store(true, Ordering::SeqCst);
        self.begin(self.cancel_signal);
        self.child.release(Hold::Task);
    }

    /// Whether an escalation has begun and not ended.
    pub(crate) fn escalating(&self) -> bool {
        !matches!(*self.phase(), Phase::Idle | Phase::Done)
    }
}

impl Kill for Tracked {
    fn send_signal(&self, signal: Signal) -> io::Result<Delivery> {
        let delivery = self.child.signal(signal, SignalTarget::Group);
        match &self.cgroup {
            // Every other process of the task's, those that left its group:
            // each process gets the signal once (a second SIGINT is a
            // forced quit to many programs).
            Some(cgroup) => {
                let skip = match self.child.leads_group() {
                    true => Skip::Group(self.child.pid()),
                    false => Skip::Process(self.child.pid()),
                };
                let reached = cgroup.signal(signal.as_raw(), skip) > 0;
                match delivery {
                    Ok(Delivery::Gone) if reached => Ok(Delivery::Sent),
                    other => other,
                }
            }
            None => delivery,
        }
    }

    fn leader_exited(&self) -> bool {
        // A lost status (someone else reaped it) counts as an exit.
        !matches!(self.child.poll_exit(), Ok(None))
    }

    fn group_alive(&self, groups: &mut Groups) -> bool {
        self.child.group_has_live_member(groups)
            || self
                .cgroup
                .as_ref()
                .is_some_and(|cgroup| cgroup.populated())
    }

    fn task_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    fn contained_alive(&self) -> bool {
        self.cgroup_populated()
    }

    fn describe(&self) -> String {
        let what = if self.child.leads_group() {
            "process group"
        } else {
            "pid"
        };
        format!("{} ({what} {})", self.name, self.child.pid())
    }

    fn survivors(&self) -> String {
        let mut alive: Vec<String> = Vec::new();
        if !self.child.has_exited() {
            alive.push(format!("the child itself, pid {}", self.child.pid()));
        }
        let members: Vec<u32> = self
            .child
            .live_group_members()
            .into_iter()
            .filter(|&pid| pid != self.child.pid())
            .collect();
        if !members.is_empty() {
            alive.push(format!("group members {members:?}"));
        }
        if let Some(cgroup) = &self.cgroup {
            let members = cgroup.members();
            if !members.is_empty() {
                alive.push(format!(
                    "in its cgroup {}: pids {members:?}",
                    cgroup.path().display()
                ));
            }
        }
        let holders = crate::sys::proc::holders(&self.outputs);
        if !holders.is_empty() {
            alive.push(format!("holding its output open: pids {holders:?}"));
        }
        if alive.is_empty() {
            "nothing found".to_owned()
        } else {
            alive.join("; ")
        }
    }
}
