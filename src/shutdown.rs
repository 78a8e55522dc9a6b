//! Every child not yet reaped, by the arbiter thread of its task's actor,
//! and what becomes of them when that arbiter (or the actix System) stops.
//!
//! When an arbiter stops, the actors it ran are dropped. The first process
//! actor dropped with a task still running runs the cancel escalation on
//! every child of that arbiter at once, blocking (see `terminate_blocking`): the same
//! steps and the same signals as [`Cancel`](crate::Cancel), with the pidfds
//! waited on together instead of timers. A child whose escalation had
//! begun goes on from where it was. Every child that exits is reaped before
//! the drop returns; one stuck in the kernel even after SIGKILL gets the
//! orphan warning. When the System's own arbiter is torn down, the
//! supervisor does the same for every child of the System, whichever
//! arbiter runs it, so that nothing is left when `System::run` returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::escalation::{Kill, Next};
use crate::sys::proc::Groups;
use crate::tracked::Tracked;

type Registry = HashMap<ThreadId, HashMap<u32, Arc<Tracked>>>;

static LIVE: Mutex<Option<Registry>> = Mutex::new(None);

fn with_live<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let mut guard = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// Records a child until it is reaped.
pub(crate) fn register(task: &Arc<Tracked>) {
    with_live(|map| {
        map.entry(task.home().thread)
            .or_default()
            .insert(task.child.pid(), task.clone())
    });
}

/// Forgets `task` if its child was reaped.
pub(crate) fn forget_if_reaped(task: &Tracked) {
    if task.child.is_reaped() {
        take(task);
    }
}

/// Files `task` under the current thread (its actor's arbiter, which may
/// not be the thread that spawned its child) and the current System.
pub(crate) fn move_here(task: &Arc<Tracked>) {
    with_live(|map| {
        let was = task.move_here();
        if let Some(children) = map.get_mut(&was.thread) {
            if children
                .get(&task.child.pid())
                .is_some_and(|entry| Arc::ptr_eq(entry, task))
            {
                children.remove(&task.child.pid());
            }
            if children.is_empty() {
                map.remove(&was.thread);
            }
        }
        if !task.child.is_reaped() {
            map.entry(task.home().thread)
                .or_default()
                .insert(task.child.pid(), task.clone());
        }
    });
}

/// Takes `task` out of the registry, if it is there (that entry only: the
/// pid may since belong to a newer child of ours). Returns whether it was.
fn take(task: &Tracked) -> bool {
    with_live(|map| {
        let thread = task.home().thread;
        let Some(children) = map.get_mut(&thread) else {
            return false;
        };
        let taken = children
            .get(&task.child.pid())
            .is_some_and(|entry| std::ptr::eq(&**entry, task));
        if taken {
            children.remove(&task.child.pid());
        }
        if children.is_empty() {
            map.remove(&thread);
        }
        taken
    })
}

/// Cancels and reaps every child registered by `thread`, blocking until
/// their escalations are over (at most the longest cancel timeout plus the
/// longer of it and 0.5 s). Called when that thread's arbiter is being torn
/// down.
pub(crate) fn shutdown_thread(thread: ThreadId) {
    let tasks = with_live(|map| {
        map.get(&thread)
            .map(|children| children.values().cloned().collect())
            .unwrap_or_default()
    });
    drive(tasks, "arbiter stopping");
}

/// Cancels and reaps every child of System `system`, whichever arbiter
/// runs its task, blocking until their escalations are over: for the
/// System's own teardown, which may end (and the process exit) before its
/// other arbiters' threads have torn theirs down.
pub(crate) fn shutdown_system(system: usize) {
    let tasks = with_live(|map| {
        map.values()
            .flat_map(|children| children.values())
            .filter(|task| task.home().system == Some(system))
            .cloned()
            .collect()
    });
    drive(tasks, "System stopping");
}

/// Runs the blocking escalation on `tasks` not reaped yet. The entries
/// stay in the registry until their reap: two teardowns (an arbiter's, the
/// System's) may drive the same task at once, each waiting until it is
/// over, which the escalation's own lock makes safe.
fn drive(tasks: Vec<Arc<Tracked>>, why: &str) {
    let tasks: Vec<_> = tasks.into_iter().filter(|t| !t.child.is_reaped()).collect();
    if !tasks.is_empty() {
        log::debug!("{why}: cancelling {} children", tasks.len());
        terminate_blocking(tasks);
    }
}

/// The escalation for many tasks at once, blocking the thread: for an
/// arbiter or System being torn down, when no event loop is left to run
/// timers. Tasks not cancelled yet get step 1 now; tasks already being
/// escalated go on from where they are. Nobody will end these tasks any
/// more, so each counts as ended. Returns once every escalation is over;
/// every child that exited by then is reaped.
///
/// The leaders' exits wake the thread through their pidfds; a group whose
/// leader has exited is looked at in /proc at least every 20 ms, so the
/// wait ends soon after nothing is left.
pub(crate) fn terminate_blocking(tasks: Vec<Arc<Tracked>>) {
    const GROUP_CHECK: Duration = Duration::from_millis(20);
    let all = tasks.clone();
    let mut pending: Vec<Arc<Tracked>> = Vec::new();
    for task in tasks {
        task.end_for_shutdown();
        pending.push(task);
    }
    loop {
        let mut groups = Groups::default();
        let mut wake: Option<Instant> = None;
        pending.retain(|task| match task.step(&mut groups) {
            Next::Wait(at) => {
                wake = Some(wake.map_or(at, |w: Instant| w.min(at)));
                true
            }
            Next::Release | Next::Done => {
                forget_if_reaped(task);
                false
            }
        });
        let Some(mut wake) = wake else {
            warn_of_held_outputs(&all);
            return;
        };
        let pidfds: Vec<_> = pending
            .iter()
            .filter(|task| !task.child.has_exited())
            .filter_map(|task| task.child.pidfd())
            .collect();
        if pidfds.len() < pending.len() {
            wake = wake.min(Instant::now() + GROUP_CHECK);
        }
        let timeout = wake.saturating_duration_since(Instant::now());
        let mut fds: Vec<PollFd<'_>> = pidfds
            .iter()
            .map(|fd| PollFd::new(std::os::fd::AsFd::as_fd(&**fd), PollFlags::POLLIN))
            .collect();
        let millis = u16::try_from(timeout.as_millis().max(1)).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(err) => {
                log::error!("shutdown: poll on pidfds failed: {err}");
                std::thread::sleep(GROUP_CHECK);
            }
        }
        drop(fds);
        for task in &pending {
            // Notes an exit, if any, so that the next step sees it.
            let _ = task.child.poll_exit();
        }
    }
}

/// After a blocking escalation: names, for each task, the processes that
/// still hold its output open. They are outside the task's process group
/// (after `setsid`, say), so no signal of ours reached them; they are left
/// running. One pass over /proc for all the tasks.
fn warn_of_held_outputs(tasks: &[Arc<Tracked>]) {
    let links: Vec<String> = tasks
        .iter()
        .flat_map(|t| t.outputs.iter().cloned())
        .collect();
    let held = crate::sys::proc::holders_of_each(&links);
    if held.is_empty() {
        return;
    }
    for task in tasks {
        let mut pids: Vec<u32> = task
            .outputs
            .iter()
            .filter_map(|link| held.get(link))
            .flatten()
            .copied()
            .collect();
        pids.sort_unstable();
        pids.dedup();
        if !pids.is_empty() {
            log::warn!(
                "{}: its output is still held open by pids {pids:?}, outside its process \
                 group; {}",
                task.describe(),
                task.fate_of_holders()
            );
        }
    }
}
