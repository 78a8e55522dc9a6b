//! What a task is made of ([`TaskSpec`], built by
//! [`Popen`](crate::Popen)) and its one validation.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use actix::Recipient;
use bytes::Bytes;

use crate::messages::{Chunk, Continued, Exited, OutputStream, Started, Stopped};
use crate::options::{ReaderOptions, TaskOptions};
use crate::spawn::{InputFrom, SpawnSpec};
use crate::{Line, SpawnError, SpawnErrorKind};

/// Everything a task is made of: what a [`Popen`](crate::Popen) describes.
#[derive(Debug, Clone)]
pub(crate) struct TaskSpec {
    pub(crate) command: SpawnSpec,
    pub(crate) reader: ReaderOptions,
    pub(crate) options: TaskOptions,
    pub(crate) subscribers: Vec<(Option<OutputStream>, Recipient<Chunk>)>,
    /// Sent the output's lines, by a framer the task starts with its
    /// reader (`Popen::lines`).
    pub(crate) line_subscribers: Vec<Recipient<Line>>,
    pub(crate) start_listeners: Vec<Recipient<Started>>,
    pub(crate) exit_listeners: Vec<Recipient<Exited>>,
    /// Told of the child's stops and continues.
    pub(crate) job_listeners: JobListeners,
    /// Written to the child's stdin, which is then closed.
    pub(crate) input: Option<Bytes>,
    /// A pipe that gets a copy of a stream by `tee(2)` (a pipeline's next
    /// stage, when this stage's output is observed).
    pub(crate) tee: Option<(OutputStream, Arc<OwnedFd>)>,
}

/// Who is told of the child's stops and continues.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobListeners {
    pub(crate) stopped: Vec<Recipient<Stopped>>,
    pub(crate) continued: Vec<Recipient<Continued>>,
}

impl JobListeners {
    pub(crate) fn is_empty(&self) -> bool {
        self.stopped.is_empty() && self.continued.is_empty()
    }
}

impl TaskSpec {
    /// # Errors
    /// [`SpawnErrorKind::InvalidConfig`] naming the first setting that cannot
    /// be used; [`SpawnErrorKind::NotPermitted`] for a setting the host
    /// lacks the privilege for.
    pub(crate) fn validate(&self) -> Result<(), SpawnError> {
        let input_without_pipe = (self.input.is_some()
            && !matches!(self.command.stdio.stdin(), InputFrom::Pipe | InputFrom::Pty))
        .then(|| "input() needs the stdin to be a pipe, not another InputFrom".to_owned());
        let exit_type_without_cgroup = (self.options.exit_type == crate::ExitType::Cgroup
            && self.command.cgroup_parent.is_none())
        .then(|| "exit_type(ExitType::Cgroup) needs cgroup()".to_owned());
        let reason = self
            .reader
            .invalid()
            .or_else(|| self.options.invalid())
            .or_else(|| self.command.invalid())
            .or(input_without_pipe)
            .or(exit_type_without_cgroup);
        if let Some(reason) = reason {
            return Err(SpawnError::new(
                self.command.program_name(),
                SpawnErrorKind::InvalidConfig { reason },
            ));
        }
        match self.command.not_permitted() {
            Some((setting, needs)) => Err(SpawnError::new(
                self.command.program_name(),
                SpawnErrorKind::NotPermitted { setting, needs },
            )),
            None => Ok(()),
        }
    }
}

/// Who hears of the output: handed to the reader when it starts.
#[derive(Debug)]
pub(super) struct Wiring {
    pub(super) subscribers: Vec<(Option<OutputStream>, Recipient<Chunk>)>,
    pub(super) line_subscribers: Vec<Recipient<Line>>,
    pub(super) tee: Option<(OutputStream, Arc<OwnedFd>)>,
}
