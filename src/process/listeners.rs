//! The start and the exit listeners of a task: one event, sent once to
//! each listener (portage's `addStartListener` and `addExitListener`).

use actix::{Message, Recipient, WeakRecipient};

/// The listeners of one event `M` ([`Started`](crate::Started) or
/// [`Exited`](crate::Exited)) and whether it happened.
///
/// - Before the event, listeners are kept (each once) and can be removed.
/// - The event goes to each of them once, and they are forgotten.
/// - A listener added after the event gets it at once, unless it already
///   had it: who was notified is remembered weakly, so that their actors
///   are not kept alive, and a listener is never notified twice.
#[derive(Debug)]
pub(crate) struct Listeners<M>
where
    M: Message + Send,
    M::Result: Send,
{
    pending: Vec<Recipient<M>>,
    notified: Vec<WeakRecipient<M>>,
    event: Option<M>,
}

impl<M> Listeners<M>
where
    M: Message + Send + Clone,
    M::Result: Send,
{
    /// Listeners given at the start, each once (the builder keeps them
    /// apart).
    pub(crate) fn new(pending: Vec<Recipient<M>>) -> Listeners<M> {
        Listeners {
            pending,
            notified: Vec::new(),
            event: None,
        }
    }

    /// Adds a listener; after the event, sends it the event unless it had
    /// it already.
    pub(crate) fn add(&mut self, listener: Recipient<M>) {
        match self.event.clone() {
            Some(event) => {
                if !self.was_notified(&listener) {
                    self.notified.push(listener.downgrade());
                    listener.do_send(event);
                }
            }
            None => {
                if !self.pending.contains(&listener) {
                    self.pending.push(listener);
                }
            }
        }
    }

    /// Removes a listener not yet notified.
    pub(crate) fn remove(&mut self, listener: &Recipient<M>) {
        self.pending.retain(|l| l != listener);
    }

    /// Sends `event` to every listener, once: nothing if an event was sent
    /// already.
    pub(crate) fn notify(&mut self, event: M) {
        if self.event.is_some() {
            return;
        }
        for listener in std::mem::take(&mut self.pending) {
            self.notified.push(listener.downgrade());
            listener.do_send(event.clone());
        }
        self.event = Some(event);
    }

    /// Whether `listener` is among those already notified; forgets the
    /// ones whose actors have stopped.
    fn was_notified(&mut self, listener: &Recipient<M>) -> bool {
        let mut found = false;
        self.notified.retain(|weak| match weak.upgrade() {
            Some(strong) => {
                found |= strong == *listener;
                true
            }
            None => false,
        });
        found
    }
}
