//! [`TaskId`]: which task an event comes from.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};

/// A task's identity, unique in this process: on its
/// [`ProcessHandle`](crate::ProcessHandle) and on every event it sends
/// ([`Started`](crate::Started), [`Exited`](crate::Exited),
/// [`Chunk`](crate::Chunk), and the [`Line`](crate::Line)s framed from
/// them), so that one actor can serve many tasks and tell them apart. A
/// standalone [`PipeReader`](crate::PipeReader) has one of its own.
///
/// Numbers are handed out in order from 1 and never reused; unlike a pid,
/// an id cannot name another task later.
///
/// ```
/// use actix::prelude::*;
/// use actix_popen::{Exited, Popen, TaskId};
///
/// /// One actor for every task: it knows which one ended.
/// struct Board(Option<futures::channel::oneshot::Sender<TaskId>>);
/// impl Actor for Board {
///     type Context = Context<Self>;
/// }
/// impl Handler<Exited> for Board {
///     type Result = ();
///     fn handle(&mut self, exited: Exited, _: &mut Context<Self>) {
///         if let Some(tx) = self.0.take() {
///             let _ = tx.send(exited.task);
///         }
///     }
/// }
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (tx, rx) = futures::channel::oneshot::channel();
/// let board = Board(Some(tx)).start();
/// let task = Popen::new("true").exit_listener(board.recipient()).start()?;
/// assert_eq!(rx.await?, task.id());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(NonZeroU64);

static NEXT: AtomicU64 = AtomicU64::new(1);

impl TaskId {
    /// A new id, never given before (for events built in tests, or to tag
    /// a reader's chunks).
    pub fn new() -> TaskId {
        let number = NEXT.fetch_add(1, Ordering::Relaxed);
        // Starts at 1 and would need 2^64 tasks to wrap.
        TaskId(NonZeroU64::new(number).unwrap_or(NonZeroU64::MIN))
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl Default for TaskId {
    /// A new id, as [`TaskId::new`].
    fn default() -> TaskId {
        TaskId::new()
    }
}

impl fmt::Display for TaskId {
    /// `task N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::TaskId;

    #[test]
    fn ids_are_unique_and_increasing() {
        let (a, b) = (TaskId::new(), TaskId::new());
        assert!(a < b);
        assert_ne!(a, b);
        assert_eq!(b.to_string(), format!("task {}", b.get()));
    }
}
