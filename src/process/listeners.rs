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

#[cfg(test)]
mod tests {
    use actix::prelude::*;
    use futures::channel::mpsc;

    use super::Listeners;
    use crate::Started;

    /// Forwards each event it gets, tagged with its name.
    struct Listener(&'static str, mpsc::UnboundedSender<(&'static str, Started)>);

    impl Actor for Listener {
        type Context = Context<Self>;
    }

    impl Handler<Started> for Listener {
        type Result = ();
        fn handle(&mut self, event: Started, _: &mut Context<Self>) {
            let _ = self.1.unbounded_send((self.0, event));
        }
    }

    /// Answered once every message sent before it was handled.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Ping;

    impl Handler<Ping> for Listener {
        type Result = ();
        fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
    }

    #[test]
    fn each_listener_hears_the_event_once_even_when_added_late() {
        crate::test_support::bounded(async {
            let (tx, mut heard) = mpsc::unbounded();
            let actors = [
                Listener("early", tx.clone()).start(),
                Listener("removed", tx.clone()).start(),
                Listener("late", tx).start(),
            ];
            let [early, removed, late] = actors.clone().map(|a| a.recipient::<Started>());

            let task = crate::TaskId::new();
            let mut listeners = Listeners::new(vec![early.clone(), removed.clone()]);
            listeners.add(early.clone()); // already there: kept once
            listeners.remove(&removed);
            listeners.notify(Started::new(task, Some(7)));
            listeners.notify(Started::new(task, Some(8))); // a second event: ignored
            listeners.add(late.clone()); // after the event: told at once
            listeners.add(late); // and only once
            listeners.add(early); // notified already: not again

            for actor in &actors {
                let pong =
                    tokio::time::timeout(std::time::Duration::from_secs(20), actor.send(Ping));
                pong.await
                    .expect("an answer within 20 s")
                    .expect("the actor");
            }
            let mut got = Vec::new();
            while let Ok(event) = heard.try_recv() {
                got.push(event);
            }
            got.sort_by_key(|(name, _)| *name);
            assert_eq!(
                got,
                vec![
                    ("early", Started::new(task, Some(7))),
                    ("late", Started::new(task, Some(7)))
                ]
            );
        });
    }
}
