//! The checks the host makes, before a spawn, of the settings a child
//! makes for itself between fork and exec (uid, gid, groups, session,
//! resource limits, nice value, umask): a value the kernel would refuse is
//! an [`InvalidConfig`](crate::SpawnErrorKind::InvalidConfig), a change the
//! host lacks the privilege for is a
//! [`NotPermitted`](crate::SpawnErrorKind::NotPermitted) naming the
//! capability, both before anything is spawned. (In the child, a failed
//! step only reports an errno, which could not say which setting failed.)

use crate::sys::exec::ChildSettings;
use crate::Rlimit;

/// The most supplementary groups Linux takes (`NGROUPS_MAX`, 2.6.4+).
const NGROUPS_MAX: usize = 65536;

/// What the host is and may do, as the checks need it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Host {
    pub(crate) uid: u32,
    pub(crate) euid: u32,
    pub(crate) gid: u32,
    pub(crate) egid: u32,
    /// The effective capability set, one bit per capability (CapEff).
    pub(crate) capabilities: u64,
    pub(crate) nice: i32,
}

/// `CAP_SETGID`, `CAP_SETUID`, `CAP_SYS_NICE`, `CAP_SYS_RESOURCE`
/// (capability(7)'s numbers).
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SYS_NICE: u32 = 23;
const CAP_SYS_RESOURCE: u32 = 24;

impl Host {
    /// This process, now.
    pub(crate) fn current() -> Host {
        Host {
            uid: nix::unistd::getuid().as_raw(),
            euid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
            capabilities: effective_capabilities(),
            nice: crate::sys::exec::current_nice().unwrap_or(0),
        }
    }

    fn can(&self, capability: u32) -> bool {
        self.capabilities & (1 << capability) != 0
    }

    /// Whether emptying the supplementary groups can work (it needs
    /// CAP_SETGID): done before a setuid with no groups given.
    pub(crate) fn can_set_groups(&self) -> bool {
        self.can(CAP_SETGID)
    }

    /// Whether a pipe may be made larger than `pipe-max-size`.
    pub(crate) fn can_exceed_pipe_max_size(&self) -> bool {
        self.can(CAP_SYS_RESOURCE)
    }
}

/// The effective capabilities of this process, from /proc/self/status;
/// none if it cannot be read.
fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .unwrap_or(0)
}

/// Why `settings` cannot be used as given, if they cannot: a value out of
/// the kernel's range.
pub(crate) fn invalid(settings: &ChildSettings) -> Option<String> {
    if let Some(nice) = settings.nice {
        if !(-20..=19).contains(&nice) {
            return Some(format!("nice {nice} is outside -20..=19"));
        }
    }
    if let Some(mask) = settings.umask {
        if mask > 0o777 {
            return Some(format!("umask {mask:#o} has bits beyond 0o777"));
        }
    }
    for &(limit, soft, hard) in &settings.rlimits {
        if soft > hard {
            return Some(format!(
                "{limit}: the soft limit {soft} is above the hard limit {hard}"
            ));
        }
    }
    match &settings.groups {
        Some(groups) if groups.len() > NGROUPS_MAX => Some(format!(
            "{} supplementary groups, more than NGROUPS_MAX ({NGROUPS_MAX})",
            groups.len()
        )),
        _ => None,
    }
}

/// What in `settings` the host may not do, if anything: `(the setting,
/// what it needs)`. `rlimit` gives the host's `(soft, hard)` limit of a
/// resource.
pub(crate) fn not_permitted(
    settings: &ChildSettings,
    host: &Host,
    rlimit: impl Fn(Rlimit) -> Option<(u64, u64)>,
) -> Option<(String, String)> {
    if let Some(uid) = settings.uid {
        let unchanged = uid == host.uid && uid == host.euid;
        if !(unchanged || host.can(CAP_SETUID)) {
            return Some((format!("uid {uid}"), "CAP_SETUID".to_owned()));
        }
    }
    if let Some(gid) = settings.gid {
        let unchanged = gid == host.gid && gid == host.egid;
        if !(unchanged || host.can(CAP_SETGID)) {
            return Some((format!("gid {gid}"), "CAP_SETGID".to_owned()));
        }
    }
    if settings.groups.is_some() && !host.can(CAP_SETGID) {
        return Some(("supplementary groups".to_owned(), "CAP_SETGID".to_owned()));
    }
    if let Some(nice) = settings.nice {
        // RLIMIT_NICE lets an unprivileged process go down to 20 - limit.
        let floor = rlimit(Rlimit::Nice).map_or(20, |(soft, _)| 20 - soft.min(40) as i32);
        if nice < host.nice && nice < floor && !host.can(CAP_SYS_NICE) {
            return Some((
                format!("nice {nice} (below the host's {})", host.nice),
                "CAP_SYS_NICE or a higher RLIMIT_NICE".to_owned(),
            ));
        }
    }
    for &(limit, _, hard) in &settings.rlimits {
        let Some((_, current)) = rlimit(limit) else {
            continue;
        };
        if hard > current && !host.can(CAP_SYS_RESOURCE) {
            return Some((
                format!("{limit} hard limit {hard} (above the host's {current})"),
                "CAP_SYS_RESOURCE".to_owned(),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unprivileged() -> Host {
        Host {
            uid: 1000,
            euid: 1000,
            gid: 1000,
            egid: 1000,
            capabilities: 0,
            nice: 0,
        }
    }

    fn limits(limit: Rlimit) -> Option<(u64, u64)> {
        match limit {
            Rlimit::Nofile => Some((1024, 4096)),
            Rlimit::Nice => Some((0, 0)),
            _ => Some((Rlimit::INFINITY, Rlimit::INFINITY)),
        }
    }

    #[test]
    fn an_unprivileged_host_may_keep_its_ids_lower_limits_and_raise_its_nice_value() {
        let settings = ChildSettings {
            uid: Some(1000),
            gid: Some(1000),
            nice: Some(5),
            rlimits: vec![(Rlimit::Nofile, 64, 4096), (Rlimit::Core, 0, 0)],
            umask: Some(0o077),
            setsid: true,
            groups: None,
            parent_death_signal: Some(9),
            controlling_terminal: None,
            join_cgroup: None,
        };
        assert_eq!(not_permitted(&settings, &unprivileged(), limits), None);
    }

    #[test]
    fn an_unprivileged_host_is_told_which_capability_each_change_needs() {
        let host = unprivileged();
        let needs =
            |settings: ChildSettings| not_permitted(&settings, &host, limits).expect("refused").1;
        let uid = ChildSettings {
            uid: Some(0),
            ..ChildSettings::default()
        };
        assert_eq!(needs(uid), "CAP_SETUID");
        let gid = ChildSettings {
            gid: Some(0),
            ..ChildSettings::default()
        };
        assert_eq!(needs(gid), "CAP_SETGID");
        let groups = ChildSettings {
            groups: Some(vec![1000]),
            ..ChildSettings::default()
        };
        assert_eq!(needs(groups), "CAP_SETGID");
        let nice = ChildSettings {
            nice: Some(-5),
            ..ChildSettings::default()
        };
        assert!(needs(nice).starts_with("CAP_SYS_NICE"));
        let hard = ChildSettings {
            rlimits: vec![(Rlimit::Nofile, 1024, 8192)],
            ..ChildSettings::default()
        };
        assert_eq!(needs(hard), "CAP_SYS_RESOURCE");
    }

    #[test]
    fn capabilities_allow_what_they_name() {
        let host = Host {
            capabilities: (1 << CAP_SETUID)
                | (1 << CAP_SETGID)
                | (1 << CAP_SYS_NICE)
                | (1 << CAP_SYS_RESOURCE),
            ..unprivileged()
        };
        let settings = ChildSettings {
            uid: Some(0),
            gid: Some(0),
            groups: Some(vec![0, 1]),
            nice: Some(-20),
            rlimits: vec![(Rlimit::Nofile, 1024, 1 << 20)],
            ..ChildSettings::default()
        };
        assert_eq!(not_permitted(&settings, &host, limits), None);
    }

    #[test]
    fn rlimit_nice_lets_an_unprivileged_host_lower_the_nice_value_to_its_floor() {
        let host = unprivileged();
        // RLIMIT_NICE 30: down to 20 - 30 = -10.
        let limits = |limit| (limit == Rlimit::Nice).then_some((30, 30));
        let to = |nice| ChildSettings {
            nice: Some(nice),
            ..ChildSettings::default()
        };
        assert_eq!(not_permitted(&to(-10), &host, limits), None);
        assert!(not_permitted(&to(-11), &host, limits).is_some());
    }

    #[test]
    fn values_out_of_the_kernels_range_are_invalid() {
        let nice = ChildSettings {
            nice: Some(20),
            ..ChildSettings::default()
        };
        assert!(invalid(&nice).expect("invalid").contains("nice 20"));
        let umask = ChildSettings {
            umask: Some(0o1000),
            ..ChildSettings::default()
        };
        assert!(invalid(&umask).expect("invalid").contains("umask"));
        let rlimit = ChildSettings {
            rlimits: vec![(Rlimit::Nofile, 10, 5)],
            ..ChildSettings::default()
        };
        assert!(invalid(&rlimit).expect("invalid").contains("RLIMIT_NOFILE"));
        assert_eq!(invalid(&ChildSettings::default()), None);
    }
}
