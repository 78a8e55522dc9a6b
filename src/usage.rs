//! [`ResourceUsage`]: what a child cost, read from the kernel when its
//! exit is seen (getrusage(2), wait4(2)).

use std::time::Duration;

/// What a task's child cost, as the kernel counts it for the exited child
/// and the descendants it waited for (the `rusage` that `wait4(2)` and
/// `waitid(2)` give, Python's `os.wait4`), plus the wall time. In
/// [`Exited::usage`](crate::Exited::usage),
/// [`CompletedProcess::usage`](crate::CompletedProcess::usage) and
/// [`ProcessHandle::usage`](crate::ProcessHandle::usage); `None` for a
/// child that never ran, or whose status was lost (reaped by someone
/// else).
///
/// Descendants the child did not wait for (a daemon it left behind, a
/// grandchild still running when it exited) are not counted.
///
/// ```
/// use actix_popen::Popen;
///
/// # #[actix::main]
/// # async fn main() -> Result<(), actix_popen::RunError> {
/// let done = Popen::new("sh")
///     .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
///     .output()
///     .await?;
/// let usage = done.usage.expect("it ran");
/// println!(
///     "{:?} of CPU in {:?}, at most {} KiB resident",
///     usage.cpu_time(),
///     usage.wall_time,
///     usage.max_rss / 1024
/// );
/// assert!(usage.max_rss > 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceUsage {
    /// CPU time spent in user mode.
    pub user_time: Duration,
    /// CPU time spent in the kernel on its behalf.
    pub system_time: Duration,
    /// The largest resident set size, in bytes (`ru_maxrss` is in KiB on
    /// Linux): of the child, or of the largest descendant it waited for.
    pub max_rss: u64,
    /// From the spawn to the moment the exit was seen (through the
    /// child's pidfd, at once).
    pub wall_time: Duration,
    /// The kernel wrote a core dump as the child died (`CLD_DUMPED`).
    pub core_dumped: bool,
}

impl ResourceUsage {
    /// A usage record, for tests of code that handles one.
    pub fn new(
        user_time: Duration,
        system_time: Duration,
        max_rss: u64,
        wall_time: Duration,
        core_dumped: bool,
    ) -> ResourceUsage {
        ResourceUsage {
            user_time,
            system_time,
            max_rss,
            wall_time,
            core_dumped,
        }
    }

    /// User plus system CPU time.
    pub fn cpu_time(&self) -> Duration {
        self.user_time + self.system_time
    }
}
