//! Processes as `/proc` shows them: a process's state, parent, group,
//! session and start time, the children of this process, and whether a
//! grandchild (which cannot tell us when it dies) is dead yet. And the two
//! guards that make sure a test leaves nothing running:
//!
//! * [`Leftovers`] kills, on every drop, the live members of the process
//!   groups its children lead: for tests whose grandchildren may outlive
//!   the test on purpose.
//! * [`Cleanup`] does nothing on success (everything is gone already); if
//!   the test fails half-way, it kills the groups and processes it was told
//!   about and reaps those that are still our children.
//!
//! Both record a process's start time and touch a pid only while it still
//! names that process: a number freed by an exit may since belong to a
//! stranger.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_popen::{PipelineHandle, ProcessHandle};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{getpid, getsid, Pid};

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `Z` (zombie), ….
    pub state: char,
    /// The parent's pid.
    pub ppid: i32,
    /// The process group.
    pub pgrp: i32,
    /// The session.
    pub session: i32,
    /// Clock ticks after boot: tells a process from a later one that got
    /// the same pid.
    pub starttime: u64,
}

/// What `/proc/<pid>/stat` says of `pid`, or `None` if there is no such
/// process.
pub fn proc_stat(pid: i32) -> Option<Stat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: skip past the last ')'.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        starttime: fields.get(19)?.parse().ok()?,
    })
}

/// The command name of a process (kept for a zombie too).
pub fn proc_comm(pid: i32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_owned())
}

/// Every pid in /proc.
pub fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The pids of the children of `parent`.
pub fn our_children_of(parent: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| proc_stat(pid).is_some_and(|stat| stat.ppid == parent))
        .collect()
}

/// Every process whose parent we are, running or zombie.
pub fn our_children() -> Vec<(i32, Stat)> {
    let me = getpid().as_raw();
    all_pids()
        .into_iter()
        .filter_map(|pid| Some((pid, proc_stat(pid)?)))
        .filter(|(_, stat)| stat.ppid == me)
        .collect()
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn is_running(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|stat| stat.state != 'Z')
}

/// Whether `pid`, a grandchild, is dead: no such process, or a zombie that
/// is not ours. Reparented to init when its parent died, it may stay a
/// zombie of init for a moment: dead, not ours to reap, and it counts as
/// gone. (A zombie of ours is not dead: we still have to reap it.)
pub fn is_dead(pid: i32) -> bool {
    match proc_stat(pid) {
        None => true,
        Some(stat) => stat.state == 'Z' && stat.ppid != getpid().as_raw(),
    }
}

/// Waits until `pid` [is dead](is_dead) or `deadline` passes, blocking the
/// thread; returns whether it died. Nothing tells us when a grandchild
/// dies, so this polls /proc.
pub fn wait_dead(pid: i32, deadline: Instant) -> bool {
    loop {
        if is_dead(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// [`wait_dead`] for async code: sleeps on the runtime, not the thread.
pub async fn await_dead(pid: i32, deadline: Instant) -> bool {
    loop {
        if is_dead(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `ready` every few milliseconds until it holds, failing the test
/// (naming `what`) after `bound`: for the process states nothing notifies
/// us of (a stop, a `setsid`, an exit of a process that is not our child).
pub async fn poll_until(what: &str, bound: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
}

/// [`poll_until`] for code outside a runtime: blocks the thread.
pub fn wait_until(what: &str, bound: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `pid` is stopped (state `T`).
pub async fn await_stopped(pid: i32, bound: Duration) {
    poll_until(&format!("pid {pid} stopped"), bound, || {
        proc_stat(pid).is_some_and(|stat| stat.state == 'T')
    })
    .await;
}

/// Whether `pid` leads a session of its own (it has called `setsid`, so
/// nothing sent to its old group reaches it any more).
pub fn leads_own_session(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|stat| stat.session == pid)
}

/// Waits, with a bound, until the task's child has exited while the task
/// goes on (its output is still open). The library keeps such a child as
/// its zombie, so that its pid and group id cannot be reused while the
/// task may still signal them; the actor sends no message for the exit
/// alone, so this polls /proc.
pub async fn await_leader_exit(handle: &ProcessHandle, bound: Duration) {
    let pid = handle.pid().expect("the task has no child") as i32;
    poll_until("the child's exit", bound, || {
        proc_stat(pid).is_none_or(|stat| stat.state == 'Z')
    })
    .await;
    assert_eq!(
        handle.pid(),
        Some(pid as u32),
        "the exited child must stay unreaped while its task goes on"
    );
}

/// A symlink to `sleep` named `name` in `dir`: its processes carry `name`
/// as their command name, even as zombies, so a scan of /proc finds them.
pub fn named_sleep(dir: &Path, name: &str) -> PathBuf {
    let sleep = std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("sleep"))
                .find(|candidate| candidate.is_file())
        })
        .expect("no sleep on PATH");
    let path = dir.join(name);
    std::os::unix::fs::symlink(sleep, &path).expect("cannot link sleep");
    path
}

/// The pid of the child just started by `handle` and its start time, after
/// checking that it leads its own process group.
fn group_of(handle: &ProcessHandle) -> (i32, u64) {
    let leader = handle.pid().expect("no pid right after the start") as i32;
    let stat = proc_stat(leader).expect("a child just started is not in /proc");
    assert_eq!(
        stat.pgrp, leader,
        "the child {leader} does not lead its own group"
    );
    (leader, stat.starttime)
}

/// Kills on drop every live member of the process groups led by the
/// children it was given, so that a failed test leaves nothing running,
/// and a passed one no grandchild it left on purpose. A member counts only
/// if it is in our session and not older than the group's leader was, and
/// the leader's pid (if it still exists) is the leader we saw: a later
/// process that got the same number is left alone. (A grandchild whose
/// parent exited belongs to init; an init that does not reap leaves it a
/// zombie, which counts as gone.)
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Each group's leader and its start time.
    groups: Vec<(i32, u64)>,
}

impl Leftovers {
    /// The group led by the child just started by `handle`.
    pub fn of(handle: &ProcessHandle) -> Leftovers {
        let mut leftovers = Leftovers::default();
        leftovers.add(handle);
        leftovers
    }

    /// The groups led by every stage of a pipeline just started.
    pub fn pipeline(pipeline: &PipelineHandle) -> Leftovers {
        let mut leftovers = Leftovers::default();
        for stage in pipeline.stages() {
            leftovers.add(stage);
        }
        leftovers
    }

    /// Adds the group led by the child just started by `handle`.
    pub fn add(&mut self, handle: &ProcessHandle) {
        self.groups.push(group_of(handle));
    }

    /// Each group's leader and its start time.
    pub fn groups(&self) -> &[(i32, u64)] {
        &self.groups
    }

    /// Pids of the live (not zombie) members of the groups.
    pub fn live(&self) -> Vec<i32> {
        let session = getsid(None).map(Pid::as_raw).unwrap_or(-1);
        let groups: Vec<(i32, u64)> = self
            .groups
            .iter()
            .copied()
            .filter(|&(leader, starttime)| {
                proc_stat(leader).is_none_or(|stat| stat.starttime == starttime)
            })
            .collect();
        all_pids()
            .into_iter()
            .filter(|&pid| {
                proc_stat(pid).is_some_and(|stat| {
                    stat.state != 'Z'
                        && stat.session == session
                        && groups
                            .iter()
                            .any(|&(leader, start)| stat.pgrp == leader && stat.starttime >= start)
                })
            })
            .collect()
    }

    /// Waits, with a bound, until no member of the groups is alive. A
    /// grandchild cannot tell us when it dies, so this polls /proc.
    pub async fn await_empty(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            let live = self.live();
            if live.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "members of groups {:?} still alive: {live:?}",
                self.groups
            );
            actix::clock::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in self.live() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// A process a [`Cleanup`] was told about.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    pid: i32,
    /// Its start time when it was added, if it still existed.
    starttime: Option<u64>,
    /// Whether it leads a process group, to be killed as a whole.
    group: bool,
}

/// Kills, if the test fails, every process group and process it was told
/// about, and reaps those that are still our children (or they stay our
/// zombies), so that a failed test leaves nothing running. On success
/// everything is already gone and it does nothing (a pid that ended may
/// since belong to a stranger).
///
/// A group is killed unless its leader's pid now names another process
/// (the group outlives a reaped leader while a grandchild is in it); a
/// process only while its pid still names it. Clones share one list, so
/// the System's thread can add what it starts and the test's thread clean
/// up after it.
#[derive(Debug, Clone, Default)]
pub struct Cleanup(Arc<Mutex<Vec<Tracked>>>);

impl Cleanup {
    /// Adds the child just started by `handle`: its group if it leads one
    /// or is gone already, else (the group is ours) the child alone.
    /// Returns its pid.
    pub fn add(&self, handle: &ProcessHandle) -> i32 {
        let pid = handle.pid().expect("no pid right after the start") as i32;
        if proc_stat(pid).is_none_or(|stat| stat.pgrp == pid) {
            self.add_group(pid);
        } else {
            self.add_pid(pid);
        }
        pid
    }

    /// Adds the process group that `leader` leads.
    pub fn add_group(&self, leader: i32) {
        self.track(leader, true);
    }

    /// Adds the process `pid` alone.
    pub fn add_pid(&self, pid: i32) {
        self.track(pid, false);
    }

    fn track(&self, pid: i32, group: bool) {
        let starttime = proc_stat(pid).map(|stat| stat.starttime);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Tracked {
                pid,
                starttime,
                group,
            });
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let me = getpid().as_raw();
        for tracked in self.0.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let pid = Pid::from_raw(tracked.pid);
            let now = proc_stat(tracked.pid);
            let same = now.is_some() && now.map(|stat| stat.starttime) == tracked.starttime;
            if tracked.group && (now.is_none() || same) {
                let _ = killpg(pid, Signal::SIGKILL);
            }
            if same {
                let _ = kill(pid, Signal::SIGKILL);
                // Reap a child of ours left unreaped, or it stays our zombie.
                if now.is_some_and(|stat| stat.ppid == me) {
                    let _ = waitpid(pid, None);
                }
            }
        }
    }
}

/// SIGKILLs `pid`, a process the test left behind (not a child of ours),
/// when dropped, if it is still the process that was there (same start
/// time).
pub struct KillOnDrop(i32, Option<u64>);

impl KillOnDrop {
    pub fn new(pid: i32) -> KillOnDrop {
        KillOnDrop(pid, proc_stat(pid).map(|stat| stat.starttime))
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.1.is_some() && proc_stat(self.0).map(|stat| stat.starttime) == self.1 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
