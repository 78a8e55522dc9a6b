//! Where a test or a bench may make cgroups: this process's own directory
//! in the cgroup2 mount, if the host may write it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `ACTIX_POPEN_CGROUP`, or this process's own cgroup in the cgroup2
/// mount, if a directory can be made in it.
pub fn writable_cgroup2() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ACTIX_POPEN_CGROUP") {
        return Some(dir.into());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // "… mount-point … - cgroup2 …"
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let relative = own.lines().find_map(|line| line.strip_prefix("0::"))?;
    let dir = mount.join(relative.trim_start_matches('/'));
    // One probe per call: the tests of a binary look at once.
    static PROBES: AtomicUsize = AtomicUsize::new(0);
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    let probe = dir.join(format!("actix-popen-probe-{}-{n}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    let _ = std::fs::remove_dir(&probe);
    Some(dir)
}
