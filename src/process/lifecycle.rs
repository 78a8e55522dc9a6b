//! The task's lifecycle as one enum: see
//! [`PopenProcess`'s lifecycle](crate::PopenProcess#lifecycle) for what
//! each state means to the OS process and what moves a task from one to
//! the next.

use std::os::fd::OwnedFd;

use actix::Addr;

use crate::messages::OutputStream;
use crate::pipe_reader::PipeReader;
use crate::spawn::SpawnSpec;
use crate::{ExitCause, ReturnCode, Signal};

/// Where a task is in its life.
#[derive(Debug)]
pub(crate) enum Lifecycle {
    /// Prepared ([`Popen::prepare`](crate::Popen::prepare), the job pool):
    /// no child yet.
    Pending {
        /// What [`Start`](crate::Start) spawns.
        command: Box<SpawnSpec>,
        /// [`CloseReader`](crate::CloseReader) came first: the output is
        /// closed as the child starts, before anything is read.
        close_output: bool,
    },
    /// The child was spawned; the task has not ended.
    Running(Running),
    /// The return code is known and the exit listeners were told.
    Ended { code: ReturnCode },
}

/// A running task: its output, its child's status, its cancel.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) output: Output,
    /// Our end of the child's stdin, until the actor attaches it.
    pub(crate) stdin: Option<OwnedFd>,
    /// The child's exit status, once seen (the child is not reaped yet).
    pub(crate) status: Option<ReturnCode>,
    pub(crate) cancel: CancelState,
    /// The drain timeout closed the output.
    pub(crate) drain_closed: bool,
    /// Our end of the child's pseudo-terminal, to resize it, and the
    /// stream its output is read as.
    pub(crate) terminal: Option<(OutputStream, OwnedFd)>,
    /// No process is left in the task's cgroup, or the task does not wait
    /// for that ([`ExitType::Cgroup`](crate::ExitType::Cgroup) does).
    pub(crate) cgroup_empty: bool,
}

/// The child's output, as the task reads it.
#[derive(Debug)]
pub(crate) enum Output {
    /// Spawned, but the actor has not started watching the child: our read
    /// ends, not read yet.
    Unwatched(Vec<(OutputStream, OwnedFd)>),
    /// Read by this reader.
    Reading(Addr<PipeReader>),
    /// Over: every stream reached EOF (`complete`), or the read ends were
    /// closed first (a [`CloseReader`](crate::CloseReader), a
    /// [`CloseStream`](crate::CloseStream), the drain timeout, a release).
    Done { complete: bool },
}

/// How far a cancel has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelState {
    /// Never cancelled.
    None,
    /// Handed to the supervisor's escalation, because of a cancel
    /// ([`ExitCause::Cancelled`]) or the run timeout
    /// ([`ExitCause::TimedOut`]).
    Escalating(ExitCause),
    /// The escalation gave up (the orphan warning was logged): the task
    /// ends as soon as its reader stops, whether or not the child exited.
    Released,
}

impl Running {
    /// A task whose child was just spawned.
    pub(crate) fn new(
        reads: Vec<(OutputStream, OwnedFd)>,
        stdin: Option<OwnedFd>,
        terminal: Option<(OutputStream, OwnedFd)>,
        waits_for_cgroup: bool,
    ) -> Running {
        Running {
            output: Output::Unwatched(reads),
            stdin,
            status: None,
            cancel: CancelState::None,
            drain_closed: false,
            terminal,
            cgroup_empty: !waits_for_cgroup,
        }
    }

    /// The reader, while it reads.
    pub(crate) fn reader(&self) -> Option<&Addr<PipeReader>> {
        match &self.output {
            Output::Reading(reader) => Some(reader),
            _ => None,
        }
    }

    /// The return code the task ends with, once its output is done (and,
    /// with [`ExitType::Cgroup`](crate::ExitType::Cgroup), its cgroup is
    /// empty), with
    /// whether the output was read to its end and why the task ended: the
    /// child's status, or, for a released task whose child has not exited,
    /// SIGKILL's (it was sent SIGKILL, and is reaped whenever it exits).
    pub(crate) fn ending(&self) -> Option<(ReturnCode, bool, ExitCause)> {
        let Output::Done { complete } = self.output else {
            return None;
        };
        if !self.cgroup_empty && self.cancel != CancelState::Released {
            return None;
        }
        let code = match (self.status, self.cancel) {
            (Some(code), _) => code,
            (None, CancelState::Released) => ReturnCode::from_raw(-Signal::SIGKILL.as_raw()),
            (None, _) => return None,
        };
        let cause = match self.cancel {
            CancelState::Released => ExitCause::Released,
            CancelState::Escalating(why) => why,
            CancelState::None if self.drain_closed => ExitCause::DrainTimedOut,
            CancelState::None if code.signal().is_some() => ExitCause::Signaled,
            CancelState::None => ExitCause::Exited,
        };
        Some((code, complete, cause))
    }
}
