//! [`Rlimit`]: the resource limits a child can be started with
//! ([`Popen::rlimit`](crate::Popen::rlimit)), named as in `getrlimit(2)`.

/// A resource whose limit [`Popen::rlimit`](crate::Popen::rlimit) sets in
/// the child, as `setrlimit(2)` names it (`Rlimit::Nofile` is
/// `RLIMIT_NOFILE`, the shell's `ulimit -n`). Sizes are in bytes, times in
/// seconds (`Cpu`) or microseconds (`Rttime`), as the man page gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rlimit {
    /// `RLIMIT_AS`: the size of the virtual address space, in bytes
    /// (`ulimit -v` counts KiB).
    As,
    /// `RLIMIT_CORE`: the largest core dump, in bytes; 0 for none
    /// (`ulimit -c`).
    Core,
    /// `RLIMIT_CPU`: CPU time in seconds; SIGXCPU at the soft limit,
    /// SIGKILL at the hard one (`ulimit -t`).
    Cpu,
    /// `RLIMIT_DATA`: the data segment and heap, in bytes.
    Data,
    /// `RLIMIT_FSIZE`: the largest file the child may write, in bytes;
    /// SIGXFSZ beyond it (`ulimit -f`).
    Fsize,
    /// `RLIMIT_LOCKS`: file locks (ignored by Linux since 2.4.25).
    Locks,
    /// `RLIMIT_MEMLOCK`: memory locked into RAM, in bytes (`ulimit -l`).
    Memlock,
    /// `RLIMIT_MSGQUEUE`: bytes in POSIX message queues.
    Msgqueue,
    /// `RLIMIT_NICE`: the ceiling of the nice value, as `20 - limit`.
    Nice,
    /// `RLIMIT_NOFILE`: one more than the highest fd number the child may
    /// open (`ulimit -n`).
    Nofile,
    /// `RLIMIT_NPROC`: processes (threads) of the child's real user id
    /// (`ulimit -u`).
    Nproc,
    /// `RLIMIT_RSS`: resident memory, in bytes (no effect on Linux since
    /// 2.6).
    Rss,
    /// `RLIMIT_RTPRIO`: the ceiling of a real-time priority.
    Rtprio,
    /// `RLIMIT_RTTIME`: CPU time under a real-time policy without a
    /// blocking call, in microseconds.
    Rttime,
    /// `RLIMIT_SIGPENDING`: signals queued for the child's real user id.
    Sigpending,
    /// `RLIMIT_STACK`: the main thread's stack, in bytes (`ulimit -s`).
    Stack,
}

impl Rlimit {
    /// No limit: `RLIM_INFINITY`, as a soft or hard value.
    pub const INFINITY: u64 = u64::MAX;

    /// The name `setrlimit(2)` gives it, as `RLIMIT_NOFILE`.
    pub fn name(self) -> &'static str {
        match self {
            Rlimit::As => "RLIMIT_AS",
            Rlimit::Core => "RLIMIT_CORE",
            Rlimit::Cpu => "RLIMIT_CPU",
            Rlimit::Data => "RLIMIT_DATA",
            Rlimit::Fsize => "RLIMIT_FSIZE",
            Rlimit::Locks => "RLIMIT_LOCKS",
            Rlimit::Memlock => "RLIMIT_MEMLOCK",
            Rlimit::Msgqueue => "RLIMIT_MSGQUEUE",
            Rlimit::Nice => "RLIMIT_NICE",
            Rlimit::Nofile => "RLIMIT_NOFILE",
            Rlimit::Nproc => "RLIMIT_NPROC",
            Rlimit::Rss => "RLIMIT_RSS",
            Rlimit::Rtprio => "RLIMIT_RTPRIO",
            Rlimit::Rttime => "RLIMIT_RTTIME",
            Rlimit::Sigpending => "RLIMIT_SIGPENDING",
            Rlimit::Stack => "RLIMIT_STACK",
        }
    }
}

impl std::fmt::Display for Rlimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
