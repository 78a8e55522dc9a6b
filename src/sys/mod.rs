//! Linux mechanics behind the actors: pidfds, ptys, pipes and the raw read.
//!
//! Everything here is Linux-specific. The crate refuses to build elsewhere
//! (see `lib.rs`) rather than misbehave silently.

pub(crate) mod cgroup;
pub(crate) mod child;
pub(crate) mod exec;
pub(crate) mod fd;
pub(crate) mod proc;
pub(crate) mod pty;
pub(crate) mod reactor;
pub(crate) mod signals;
pub(crate) mod sigpipe;
pub(crate) mod spawn;
