//! What `/proc` says of other processes: who is in a process group, and who
//! holds a pipe or terminal of ours open.
//!
//! Used only where the kernel gives no event: to tell whether a group whose
//! leader has exited still has live members (so that its escalation can end
//! early), and to name what is still alive in an orphan warning. A process
//! that appears or vanishes while we read is simply seen or missed, which
//! is all either use needs.

use std::collections::HashMap;
use std::fs;

/// Every pid listed in /proc.
fn all_pids() -> impl Iterator<Item = u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
}

/// The state and process group of `pid` from `/proc/<pid>/stat`.
fn state_and_group(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: skip past the last ')'.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// The processes by process group, read once and only when first asked:
/// one pass over /proc serves every group an escalation step looks at.
///
/// The pass lists /proc and asks `getpgid(2)` of each pid, a syscall, not
/// a read of `/proc/<pid>/stat` (several times slower, and with thousands
/// of children being cancelled at once, the difference is most of the
/// cost). Only a group's own members are then read, to leave out zombies.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    members: Option<HashMap<u32, Vec<u32>>>,
}

impl Groups {
    /// Whether any live (not zombie) process other than its leader `pgid`
    /// is in group `pgid`.
    pub(crate) fn has_live_member(&mut self, pgid: u32) -> bool {
        let members = self.members.get_or_insert_with(|| {
            let mut members: HashMap<u32, Vec<u32>> = HashMap::new();
            for pid in all_pids() {
                let group = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32)));
                if let Ok(group) = group {
                    members.entry(group.as_raw() as u32).or_default().push(pid);
                }
            }
            members
        });
        members.get(&pgid).is_some_and(|pids| {
            pids.iter()
                .filter(|&&pid| pid != pgid)
                .any(|&pid| state_and_group(pid).is_some_and(|(state, _)| !is_dead(state)))
        })
    }
}

/// Whether a `/proc/<pid>/stat` state is that of a process that has
/// exited (a zombie, or dead).
fn is_dead(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// The live members of group `pgid`.
pub(crate) fn live_members(pgid: u32) -> Vec<u32> {
    all_pids()
        .filter(|&pid| {
            state_and_group(pid)
                .is_some_and(|(state, pgrp)| pgrp == pgid && !matches!(state, 'Z' | 'X' | 'x'))
        })
        .collect()
}

/// What `/proc/self/fd/<fd>` links to: `pipe:[inode]` for a pipe,
/// `/dev/pts/N` for a terminal.
pub(crate) fn fd_link(fd: i32) -> Option<String> {
    let link = fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// For each of `links` (see [`fd_link`]), the processes other than this one
/// that have an fd linking to it, in one pass over /proc; links nobody
/// else holds are left out.
pub(crate) fn holders_of_each(links: &[String]) -> HashMap<String, Vec<u32>> {
    let mut held: HashMap<String, Vec<u32>> = HashMap::new();
    if links.is_empty() {
        return held;
    }
    let me = std::process::id();
    for pid in all_pids().filter(|&pid| pid != me) {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for link in fds.filter_map(|entry| fs::read_link(entry.ok()?.path()).ok()) {
            if let Some(ours) = links.iter().find(|l| link.as_os_str() == l.as_str()) {
                let pids = held.entry(ours.clone()).or_default();
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
    }
    held
}

/// The processes other than this one that have an fd linking to any of
/// `links` (see [`fd_link`]).
pub(crate) fn holders(links: &[String]) -> Vec<u32> {
    let mut pids: Vec<u32> = holders_of_each(links).into_values().flatten().collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_group_has_a_live_member_and_holders_find_a_pipe() {
        let pgid = nix::unistd::getpgrp().as_raw() as u32;
        assert!(live_members(pgid).contains(&std::process::id()));
        if pgid != std::process::id() {
            // This process is a live member other than the leader.
            assert!(Groups::default().has_live_member(pgid));
        }
        let (read, write) = nix::unistd::pipe().unwrap();
        let link = fd_link(std::os::fd::AsRawFd::as_raw_fd(&read)).unwrap();
        assert!(link.starts_with("pipe:["), "{link}");
        // Only this process holds it, and holders() leaves this one out.
        assert!(holders(&[link]).is_empty());
        drop((read, write));
    }
}
