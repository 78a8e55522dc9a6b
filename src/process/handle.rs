//! The [`ProcessHandle`] that [`Popen::start`](crate::Popen::start)
//! returns: the actor's address plus what it shares with the actor (the
//! return code, the child), so that [`ProcessHandle::wait`] can block a
//! thread outside the System and [`ProcessHandle::try_wait`] never waits.

use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::ThreadId;

use actix::Addr;
use futures::future::BoxFuture;

use super::PopenProcess;
use crate::messages::{AsyncWait, Start};
use crate::supervisor::Job;
use crate::sys::child::Child;
use crate::{ExitCause, ReturnCode, SpawnError, SpawnErrorKind, TaskId, WaitError};

/// What the actor shares with its [`ProcessHandle`]s and the supervisor.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<SharedState>,
    changed: Condvar,
    pub(super) child: OnceLock<Arc<Child>>,
    /// The thread of the arbiter that runs the actor, once it started.
    pub(super) thread: OnceLock<ThreadId>,
}

#[derive(Debug, Default)]
pub(super) struct SharedState {
    returncode: Option<ReturnCode>,
    cause: Option<ExitCause>,
    actor_gone: bool,
    /// Why a deferred start ([`Start`], the job pool) failed.
    pub(super) spawn_error: Option<SpawnError>,
}

impl Shared {
    pub(super) fn new() -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(SharedState::default()),
            changed: Condvar::new(),
            child: OnceLock::new(),
            thread: OnceLock::new(),
        })
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn returncode(&self) -> Option<ReturnCode> {
        self.lock().returncode
    }

    pub(super) fn set_returncode(&self, code: ReturnCode, cause: ExitCause) {
        let mut state = self.lock();
        state.returncode = Some(code);
        state.cause = Some(cause);
        drop(state);
        self.changed.notify_all();
    }

    pub(super) fn set_actor_gone(&self) {
        self.lock().actor_gone = true;
        self.changed.notify_all();
    }
}

/// A handle on a task: the actor's address plus a synchronous view of its
/// return code. It dereferences to the [`Addr`], so every message can be
/// sent through it.
#[derive(Debug, Clone)]
pub struct ProcessHandle {
    pub(super) id: TaskId,
    pub(super) addr: Addr<PopenProcess>,
    pub(super) shared: Arc<Shared>,
}

impl Deref for ProcessHandle {
    type Target = Addr<PopenProcess>;

    fn deref(&self) -> &Addr<PopenProcess> {
        &self.addr
    }
}

impl ProcessHandle {
    /// The task's id, which its events ([`Started`](crate::Started),
    /// [`Exited`](crate::Exited), [`Chunk`](crate::Chunk)) carry.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The actor's address.
    pub fn addr(&self) -> &Addr<PopenProcess> {
        &self.addr
    }

    /// The actor's address, consuming the handle.
    pub fn into_addr(self) -> Addr<PopenProcess> {
        self.addr
    }

    /// The child's pid while the task runs (the child may have exited
    /// while its output is still open: it is then kept as a zombie, so the
    /// number still names it); `None` before the start and once the task
    /// has ended, as tokio's `Child::id` after `wait`: the child is then
    /// reaped, at once or when its cancel escalation ends (see the
    /// [lifecycle](crate::PopenProcess#lifecycle)), and the number may be
    /// given to another process.
    pub fn pid(&self) -> Option<u32> {
        let child = self.shared.child.get()?;
        (self.shared.returncode().is_none() && !child.is_reaped()).then(|| child.pid())
    }

    /// What the child cost (see [`ResourceUsage`](crate::ResourceUsage)),
    /// once its exit was seen; `None` before, and for a child that never
    /// ran.
    pub fn usage(&self) -> Option<crate::ResourceUsage> {
        self.shared.child.get()?.usage()
    }

    /// Why the task ended, once it has (see [`ExitCause`]); `None` before.
    pub fn cause(&self) -> Option<ExitCause> {
        self.shared.lock().cause
    }

    /// Why the task's child could not be spawned, when its start was
    /// deferred ([`Popen::prepare`](crate::Popen::prepare) then [`Start`], or [`Popen::submit`](crate::Popen::submit))
    /// and failed; the task then ended with the error's
    /// [`shell_status`](SpawnError::shell_status): 127 (not found), 1 (a
    /// file that could not be opened) or 126.
    pub fn spawn_error(&self) -> Option<SpawnError> {
        self.shared.lock().spawn_error.clone()
    }

    /// The return code if the task has ended (portage's `poll()`); never
    /// blocks. Once the child was reaped by a teardown (its arbiter or
    /// System stopped), the child's own exit status, as
    /// [`wait`](Self::wait) gives it.
    pub fn try_wait(&self) -> Option<ReturnCode> {
        let state = self.shared.lock();
        // A reaped child's task is over (or being torn down): its status
        // is the answer, even before the actor is gone.
        let reaped = self.shared.child.get().is_some_and(|c| c.is_reaped());
        match (state.returncode, state.actor_gone || reaped) {
            (Some(code), _) => Some(code),
            (None, true) => self.child_status().ok(),
            (None, false) => None,
        }
    }

    /// Blocks the calling thread until the task ends (portage's `wait()`).
    ///
    /// This is for code outside the actix System that runs the actor: the
    /// actor must run on an arbiter of another thread (see
    /// [`Popen::start_in_arbiter`](crate::Popen::start_in_arbiter)). Returns at once if the task has
    /// ended.
    ///
    /// # Errors
    /// [`WaitError::InvalidState`] if the task has not ended and the caller
    /// runs inside a tokio runtime or actix System, or on the thread of the
    /// actor's arbiter: blocking there would deadlock, so it refuses, as
    /// portage raises `InvalidStateError`. [`WaitError::ActorGone`] if the
    /// actor stopped before the task ended and the child's exit status is
    /// not known either (when it is, as after the System's shutdown reaped
    /// the child, that status is returned).
    pub fn wait(&self) -> Result<ReturnCode, WaitError> {
        let mut state = self.shared.lock();
        if let Some(code) = state.returncode {
            return Ok(code);
        }
        if state.actor_gone {
            return self.child_status();
        }
        // A thread that runs no runtime and is not the actor's (or the
        // actor has not started yet, so we cannot be inside its arbiter)
        // can block safely.
        if tokio::runtime::Handle::try_current().is_ok()
            || self.shared.thread.get() == Some(&std::thread::current().id())
        {
            return Err(WaitError::InvalidState);
        }
        loop {
            if let Some(code) = state.returncode {
                return Ok(code);
            }
            if state.actor_gone {
                return self.child_status();
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl ProcessHandle {
    /// For a task whose actor is gone: the child's own exit status, if it
    /// was seen.
    fn child_status(&self) -> Result<ReturnCode, WaitError> {
        self.shared
            .child
            .get()
            .and_then(|child| child.returncode())
            .ok_or(WaitError::ActorGone)
    }
}

/// A task waiting in the job pool, as the pool holds it: its handle, or,
/// for a task with [`kill_on_drop`](crate::Popen::kill_on_drop), only a
/// weak address, so that the user's last handle dropped while it waits
/// cancels it there (it ends with
/// [`ReturnCode::CANCELLED`](crate::ReturnCode::CANCELLED), never runs,
/// and frees its place), as it would cancel a running task.
#[derive(Debug)]
pub(crate) struct Queued {
    addr: QueuedAddr,
    shared: Arc<Shared>,
    id: TaskId,
}

#[derive(Debug)]
enum QueuedAddr {
    Strong(Addr<PopenProcess>),
    Weak(actix::WeakAddr<PopenProcess>),
}

impl ProcessHandle {
    /// The task as the job pool holds it while it waits.
    pub(crate) fn queued(self, kill_on_drop: bool) -> Queued {
        let addr = if kill_on_drop {
            QueuedAddr::Weak(self.addr.downgrade())
        } else {
            QueuedAddr::Strong(self.addr)
        };
        Queued {
            addr,
            shared: self.shared,
            id: self.id,
        }
    }
}

impl Queued {
    /// A handle for the start, unless the task's actor is gone.
    pub(crate) fn handle(&self) -> Option<ProcessHandle> {
        let addr = match &self.addr {
            QueuedAddr::Strong(addr) => addr.clone(),
            QueuedAddr::Weak(addr) => addr.upgrade()?,
        };
        Some(ProcessHandle {
            id: self.id,
            addr,
            shared: self.shared.clone(),
        })
    }

    /// Whether the task has ended (cancelled while it waited), or its
    /// actor is gone.
    pub(crate) fn ended(&self) -> bool {
        self.shared.returncode().is_some()
            || matches!(&self.addr, QueuedAddr::Weak(addr) if addr.upgrade().is_none())
    }
}

impl Job for Queued {
    fn ended(&self) -> bool {
        Queued::ended(self)
    }

    fn run(self: Box<Self>) -> BoxFuture<'static, ()> {
        let handle = self.handle();
        drop(self);
        Box::pin(async move {
            let Some(handle) = handle else {
                return;
            };
            match handle.send(Start).await {
                Ok(Ok(_pid)) => {
                    // The wait holds no address of the task: with every
                    // user handle dropped, its stdin can close (and a
                    // kill_on_drop task is cancelled).
                    let ended = handle.send(AsyncWait);
                    drop(handle);
                    let _ = ended.await;
                }
                // The task ended with its shell status; nobody else hears
                // why.
                Ok(Err(err)) if !matches!(err.kind(), SpawnErrorKind::AlreadyStarted) => {
                    log::error!("job pool: {err}");
                }
                _ => {}
            }
        })
    }
}
