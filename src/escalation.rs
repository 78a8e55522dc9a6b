//! The cancel escalation as one state machine ([`Phase`], [`begin`],
//! [`step`]), over a tiny [`Kill`] trait so that it is unit-tested with a
//! mock, as tokio tests its `Kill` and `Wait`. The supervisor's timers
//! drive it on [`Cancel`](crate::Cancel) (`supervisor/escalations.rs`),
//! and the blocking shutdown when an arbiter or the System stops
//! (`shutdown.rs`). Which process gets which signal, and when, is
//! documented once, on [`Cancel`](crate::Cancel).
//!
//! Signals go only where `sys/child.rs`'s invariant allows: while the
//! leader is our unreaped child. The escalation holds the leader unreaped
//! (`Hold::Escalation`) from step 1 until it ends, so its group id cannot
//! be reused in between. EPERM is logged at error level (portage bug
//! #358211), on every path; ESRCH means nobody was left, and is ignored.

use std::io;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::sys::child::Delivery;
use crate::sys::proc::Groups;
use crate::Signal;

/// What the escalation needs of a task. A trait so that the state machine
/// is tested with a mock (a child whose uid changed, one that never dies).
pub(crate) trait Kill: Send + Sync + 'static {
    /// Sends `signal` to the task's child (or its group).
    fn send_signal(&self, signal: Signal) -> io::Result<Delivery>;
    /// Whether the leader's exit was seen.
    fn leader_exited(&self) -> bool;
    /// Whether a member of the leader's group is alive (read through
    /// `groups`, one read of /proc per step).
    fn group_alive(&self, groups: &mut Groups) -> bool;
    /// Whether the task has ended (or nobody will end it any more).
    fn task_finished(&self) -> bool;
    /// Whether a process is left in the task's cgroup, if it has one:
    /// after SIGKILL (`cgroup.kill`) they go within moments, and the
    /// cgroup can be removed only then.
    fn contained_alive(&self) -> bool {
        false
    }
    /// Names the task in log messages.
    fn describe(&self) -> String;
    /// Names what is still alive, for the orphan warning.
    fn survivors(&self) -> String;
}

/// Where an escalation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not cancelled.
    Idle,
    /// SIGTERM and SIGCONT were sent; SIGKILL is due at `kill_at`. Once
    /// the task has ended and the leader exited, the group is looked at
    /// again after `recheck` (doubling each time): a member may be between
    /// closing its files and becoming a zombie, still counted alive.
    Terminated { kill_at: Instant, recheck: Duration },
    /// SIGKILL was sent; the orphan warning is due at the instant.
    Killed(Instant),
    /// Over.
    Done,
}

/// What the driver should do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Step again at this instant (or sooner, when something happened).
    Wait(Instant),
    /// The orphan warning was logged: release the task. The escalation is
    /// over.
    Release,
    /// The escalation is over.
    Done,
}

fn send_logged(target: &dyn Kill, signal: Signal) {
    match target.send_signal(signal) {
        Ok(_) => {}
        Err(err) if err.raw_os_error() == Some(Errno::EPERM as i32) => {
            log::error!(
                "cannot send {signal} to {}: {err} (EPERM)",
                target.describe()
            );
        }
        Err(err) => log::error!("cannot send {signal} to {}: {err}", target.describe()),
    }
}

/// Step 1: `first` (SIGTERM unless the cancel named another) and SIGCONT,
/// if `phase` is idle. Returns whether it began (a second cancel begins
/// nothing).
pub(crate) fn begin(
    target: &dyn Kill,
    phase: &mut Phase,
    timeout: Duration,
    now: Instant,
    first: Signal,
) -> bool {
    if *phase != Phase::Idle {
        return false;
    }
    log::debug!("cancel: {first} and SIGCONT to {}", target.describe());
    send_logged(target, first);
    if first != Signal::SIGCONT {
        send_logged(target, Signal::SIGCONT);
    }
    *phase = Phase::Terminated {
        kill_at: now + timeout,
        recheck: SETTLE_RECHECK_FIRST,
    };
    true
}

/// The least time between SIGKILL and the orphan warning, whatever the
/// cancel timeout: a killed process and the task that reads its output
/// need a moment to end (a cancel timeout of 0 used to warn at once).
pub(crate) const KILL_GRACE: Duration = Duration::from_millis(500);

/// The first and the longest wait before a finished task's group is looked
/// at again (see [`Phase::Terminated`]).
const SETTLE_RECHECK_FIRST: Duration = Duration::from_millis(10);
const SETTLE_RECHECK_MAX: Duration = Duration::from_secs(1);

/// Moves the escalation on as far as it can go at `now`.
pub(crate) fn step(
    target: &dyn Kill,
    phase: &mut Phase,
    timeout: Duration,
    now: Instant,
    groups: &mut Groups,
) -> Next {
    loop {
        match *phase {
            Phase::Idle => return Next::Done,
            Phase::Done => return Next::Done,
            Phase::Terminated { kill_at, recheck } => {
                if target.task_finished() && target.leader_exited() {
                    if !target.group_alive(groups) {
                        *phase = Phase::Done;
                        continue;
                    }
                    if now < kill_at {
                        *phase = Phase::Terminated {
                            kill_at,
                            recheck: (recheck * 2).min(SETTLE_RECHECK_MAX),
                        };
                        return Next::Wait(kill_at.min(now + recheck));
                    }
                }
                if now < kill_at {
                    return Next::Wait(kill_at);
                }
                log::debug!("cancel timeout: SIGKILL to {}", target.describe());
                send_logged(target, Signal::SIGKILL);
                *phase = Phase::Killed(now + timeout.max(KILL_GRACE));
            }
            Phase::Killed(deadline) => {
                if target.task_finished() && target.leader_exited() {
                    // Over once the killed are gone, not only signalled (a
                    // shutdown returns then): they go within moments.
                    if !target.contained_alive() && !target.group_alive(groups) {
                        *phase = Phase::Done;
                        continue;
                    }
                    if now < deadline {
                        return Next::Wait(deadline.min(now + SETTLE_RECHECK_FIRST));
                    }
                }
                if now < deadline {
                    return Next::Wait(deadline);
                }
                log::warn!(
                    "{} was sent SIGKILL {:?} ago and its task has not ended; \
                     still alive: {}; it may be left as an orphan",
                    target.describe(),
                    timeout.max(KILL_GRACE),
                    target.survivors()
                );
                *phase = Phase::Done;
                return Next::Release;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    /// A task that records signals, refuses them with EPERM if asked, and
    /// whose leader exits (and task ends) on a given signal; its group
    /// keeps a member alive unless `group_dies_on` comes.
    struct Mock {
        signals: Mutex<Vec<Signal>>,
        eperm: bool,
        leader_exits_on: Option<Signal>,
        group_dies_on: Option<Signal>,
        exited: AtomicBool,
        group_alive: AtomicBool,
    }

    impl Mock {
        fn new(
            eperm: bool,
            leader_exits_on: Option<Signal>,
            group_dies_on: Option<Signal>,
        ) -> Mock {
            Mock {
                signals: Mutex::new(Vec::new()),
                eperm,
                leader_exits_on,
                group_dies_on,
                exited: AtomicBool::new(false),
                group_alive: AtomicBool::new(true),
            }
        }
        fn signals(&self) -> Vec<Signal> {
            self.signals.lock().unwrap().clone()
        }
    }

    impl Kill for Mock {
        fn send_signal(&self, signal: Signal) -> io::Result<Delivery> {
            self.signals.lock().unwrap().push(signal);
            if self.eperm {
                return Err(Errno::EPERM.into());
            }
            if self.leader_exits_on == Some(signal) || signal == Signal::SIGKILL {
                self.exited.store(true, Ordering::SeqCst);
            }
            if self.group_dies_on == Some(signal) || signal == Signal::SIGKILL {
                self.group_alive.store(false, Ordering::SeqCst);
            }
            Ok(Delivery::Sent)
        }
        fn leader_exited(&self) -> bool {
            self.exited.load(Ordering::SeqCst)
        }
        fn group_alive(&self, _: &mut Groups) -> bool {
            self.group_alive.load(Ordering::SeqCst)
        }
        fn task_finished(&self) -> bool {
            self.leader_exited()
        }
        fn describe(&self) -> String {
            "mock".to_owned()
        }
        fn survivors(&self) -> String {
            "mock survivors".to_owned()
        }
    }

    const T: Duration = Duration::from_secs(1);

    /// Runs the machine to its end, stepping at each deadline; returns the
    /// last `Next` and the virtual time it took.
    fn run(mock: &Mock) -> (Next, Duration) {
        run_with(mock, T)
    }

    /// [`run`] with another cancel timeout.
    fn run_with(mock: &Mock, timeout: Duration) -> (Next, Duration) {
        let start = Instant::now();
        let mut phase = Phase::Idle;
        assert!(begin(mock, &mut phase, timeout, start, Signal::SIGTERM));
        assert!(
            !begin(mock, &mut phase, timeout, start, Signal::SIGTERM),
            "a second begin does nothing"
        );
        let mut now = start;
        loop {
            match step(mock, &mut phase, timeout, now, &mut Groups::default()) {
                Next::Wait(at) => {
                    assert!(at > now, "a wait must move time on");
                    now = at;
                }
                last => return (last, now - start),
            }
        }
    }

    #[test]
    fn obedient_group_gets_sigterm_and_sigcont_only() {
        let mock = Mock::new(false, Some(Signal::SIGTERM), Some(Signal::SIGTERM));
        assert_eq!(run(&mock), (Next::Done, Duration::ZERO));
        assert_eq!(mock.signals(), vec![Signal::SIGTERM, Signal::SIGCONT]);
    }

    #[test]
    fn leader_exiting_at_once_does_not_spare_members_ignoring_sigterm() {
        let mock = Mock::new(false, Some(Signal::SIGTERM), None);
        assert_eq!(run(&mock), (Next::Done, T));
        assert_eq!(
            mock.signals(),
            vec![Signal::SIGTERM, Signal::SIGCONT, Signal::SIGKILL]
        );
    }

    /// Regression: a member still exiting when the task ended (it had
    /// closed the output, so the task could end, but was not a zombie yet)
    /// held the leader unreaped until the cancel timeout.
    #[test]
    fn a_group_that_dies_just_after_the_task_ended_ends_the_escalation_soon() {
        let mock = Mock::new(false, Some(Signal::SIGTERM), None);
        let start = Instant::now();
        let mut phase = Phase::Idle;
        assert!(begin(&mock, &mut phase, T, start, Signal::SIGTERM));
        let groups = &mut Groups::default();
        let Next::Wait(at) = step(&mock, &mut phase, T, start, groups) else {
            panic!("the group is alive: the escalation goes on");
        };
        assert_eq!(at - start, SETTLE_RECHECK_FIRST);
        mock.group_alive.store(false, Ordering::SeqCst);
        assert_eq!(step(&mock, &mut phase, T, at, groups), Next::Done);
        assert_eq!(mock.signals(), vec![Signal::SIGTERM, Signal::SIGCONT]);
    }

    #[test]
    fn a_zero_cancel_timeout_still_gives_sigkill_a_grace_before_the_release() {
        let mock = Mock::new(true, None, None);
        assert_eq!(run_with(&mock, Duration::ZERO), (Next::Release, KILL_GRACE));
    }

    /// Every log record of this test binary.
    static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

    struct Keep;

    impl log::Log for Keep {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            RECORDS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((record.level(), record.args().to_string()));
        }
        fn flush(&self) {}
    }

    #[test]
    fn unkillable_task_gets_term_cont_kill_then_is_released() {
        static KEEP: Keep = Keep;
        log::set_logger(&KEEP).expect("the only logger of the unit tests");
        log::set_max_level(log::LevelFilter::Debug);
        let mock = Mock::new(true, None, None);
        assert_eq!(run(&mock), (Next::Release, 2 * T));
        assert_eq!(
            mock.signals(),
            vec![Signal::SIGTERM, Signal::SIGCONT, Signal::SIGKILL]
        );
        // Each refusal is logged at error level, naming the signal
        // (portage bug #358211).
        let refused: Vec<String> = RECORDS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(level, text)| *level == log::Level::Error && text.contains("to mock"))
            .map(|(_, text)| text.clone())
            .collect();
        for signal in ["SIGTERM", "SIGCONT", "SIGKILL"] {
            assert!(
                refused
                    .iter()
                    .any(|text| text.contains(signal) && text.contains("EPERM")),
                "no error naming {signal} and EPERM in {refused:?}"
            );
        }
    }
}
