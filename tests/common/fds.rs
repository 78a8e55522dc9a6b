//! This process's file descriptors: which are open (to tell a leak), how
//! many, and the soft `RLIMIT_NOFILE` lowered so that only a few more can
//! be opened (to run a start out of them).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_popen::SpawnError;
use actix_popen::SpawnErrorKind;
use nix::libc;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// How long actors may take to release their fds once nobody holds them;
/// nothing tells us when they have, so [`settle_fds`] polls.
const SETTLE: Duration = Duration::from_secs(10);

/// The fds this process has open, with what each refers to.
pub fn open_fds() -> BTreeMap<u64, String> {
    let listed: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The directory's own fd was listed, and is closed now.
    listed
        .into_iter()
        .filter_map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect()
}

/// Fails the test unless the fds open now are those of `before`: none
/// left open, none closed that the test did not open.
pub fn assert_same_fds(before: &BTreeMap<u64, String>) {
    let after = open_fds();
    let leaked: Vec<(&u64, &String)> = after
        .iter()
        .filter(|fd| !before.contains_key(fd.0))
        .collect();
    assert!(leaked.is_empty(), "fds left open: {leaked:?}");
    let closed: Vec<_> = before
        .iter()
        .filter(|fd| after.get(fd.0) != Some(fd.1))
        .collect();
    assert!(
        closed.is_empty(),
        "fds closed that the test did not open: {closed:?}"
    );
}

/// How many fds we hold.
pub fn fd_count() -> usize {
    // The directory's own fd is listed too.
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count())
        .unwrap_or(0)
        - 1
}

/// Waits, with a deadline, until we hold at most `fds` fds (actors stop,
/// and release theirs, once nobody holds their address); returns how many
/// we hold.
pub async fn settle_fds(fds: usize) -> usize {
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = fd_count();
        if now <= fds || Instant::now() >= deadline {
            return now;
        }
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
}

/// The soft limit under which exactly `free` more fds can be opened: new
/// fds take the lowest free numbers below the limit.
pub fn limit_leaving(free: usize) -> u64 {
    let open = open_fds();
    (0u64..)
        .find(|&limit| {
            let below = open.keys().filter(|&&fd| fd < limit).count();
            limit as usize - below == free
        })
        .expect("a limit")
}

/// The soft `RLIMIT_NOFILE` lowered to a value, for as long as it lives
/// (across awaits, and restored even if the test panics).
#[derive(Debug)]
pub struct LoweredLimit(u64, u64);

impl LoweredLimit {
    /// Lowers the soft limit to `soft` until the guard is dropped.
    pub fn to(soft: u64) -> LoweredLimit {
        let (old_soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).expect("lower RLIMIT_NOFILE");
        LoweredLimit(old_soft, hard)
    }
}

impl Drop for LoweredLimit {
    fn drop(&mut self) {
        setrlimit(Resource::RLIMIT_NOFILE, self.0, self.1).expect("restore RLIMIT_NOFILE");
    }
}

/// Fails the test unless `err`, from a start of `true`, is the clean
/// out-of-fds error: `ResourceExhausted` with EMFILE, saying so.
pub fn assert_out_of_fds(err: &SpawnError, what: &str) {
    assert!(
        matches!(err.kind(), SpawnErrorKind::ResourceExhausted { .. }),
        "{what}: {err:?}"
    );
    assert_eq!(err.program(), "true", "{what}");
    let errno = err.io_error().and_then(|e| e.raw_os_error());
    assert_eq!(errno, Some(libc::EMFILE), "{what}: {err:?}");
    assert!(
        err.to_string().contains("out of resources"),
        "{what}: {err}"
    );
}
