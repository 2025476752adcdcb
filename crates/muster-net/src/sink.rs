//! Delivery of [`NetEvent`]s from the swarm actor (`actor.rs`) to the agent binary without
//! ever blocking the swarm task.
//!
//! Messages are best effort: if the bounded event channel is full the message is dropped and
//! counted. Control events (`Connected`,
//! `Disconnected`, `HandshakeRejected`) must not be lost, or the consumer's view of who is
//! connected goes wrong; they wait in a small bounded backlog that the actor drains with
//! `Sender::reserve_owned` in its `select!` as the consumer catches up. While the backlog is
//! non-empty, messages are dropped rather than overtaking it, so the consumer always sees
//! `Connected` before that peer's messages.
//!
//! The channel is bounded by count and, for messages, by bytes: [`MAX_EVENT_QUEUE_BYTES`] of
//! message payload at most wait for the consumer ([`NetEvents::recv`] gives the bytes back), so
//! peers sending large messages cannot make the queue hold count × 4 MiB.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TrySendError};

use crate::{Counters, NetEvent};

/// Control events that can wait for a slow consumer; beyond this they are dropped and counted.
const MAX_BACKLOG: usize = 1024;

/// Message payload bytes that may wait in the event queue for the consumer.
pub const MAX_EVENT_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// The receiving end of the network's events (what [`crate::spawn`] returns).
pub struct NetEvents {
    rx: mpsc::Receiver<NetEvent>,
    queued_bytes: Arc<AtomicUsize>,
}

impl NetEvents {
    /// The next event; `None` once the network actor has stopped.
    pub async fn recv(&mut self) -> Option<NetEvent> {
        let event = self.rx.recv().await;
        if let Some(NetEvent::Message { bytes, .. }) = &event {
            self.queued_bytes.fetch_sub(bytes.len(), Ordering::Relaxed);
        }
        event
    }
}

/// The channel between the actor's sink and the consumer.
pub(crate) fn channel(capacity: usize) -> (mpsc::Sender<NetEvent>, NetEvents, Arc<AtomicUsize>) {
    let (tx, rx) = mpsc::channel(capacity);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let events = NetEvents {
        rx,
        queued_bytes: queued_bytes.clone(),
    };
    (tx, events, queued_bytes)
}

pub(crate) struct EventSink {
    pub(crate) tx: mpsc::Sender<NetEvent>,
    /// Control events waiting for space in `tx`, oldest first.
    pub(crate) backlog: VecDeque<NetEvent>,
    counters: Arc<Counters>,
    /// Message payload bytes in `tx` not yet received.
    queued_bytes: Arc<AtomicUsize>,
    /// A stall has been logged since the backlog was last empty (log once per stall).
    stall_logged: bool,
}

impl EventSink {
    pub(crate) fn new(
        tx: mpsc::Sender<NetEvent>,
        queued_bytes: Arc<AtomicUsize>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            tx,
            backlog: VecDeque::new(),
            counters,
            queued_bytes,
            stall_logged: false,
        }
    }

    pub(crate) fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Hands the oldest waiting control event to a reserved channel slot.
    pub(crate) fn drain_one(&mut self, permit: mpsc::OwnedPermit<NetEvent>) {
        if let Some(event) = self.backlog.pop_front() {
            permit.send(event);
        }
        if self.backlog.is_empty() {
            self.stall_logged = false;
        }
    }

    /// Queues a control event, keeping order with earlier control events.
    pub(crate) fn control(&mut self, event: NetEvent) {
        if self.backlog.is_empty() {
            match self.tx.try_send(event) {
                Ok(()) | Err(TrySendError::Closed(_)) => return,
                Err(TrySendError::Full(event)) => return self.defer(event),
            }
        }
        self.defer(event);
    }

    /// Delivers a message if there is room right now (by count and by bytes); returns false if
    /// it was dropped.
    pub(crate) fn message(&mut self, event: NetEvent) -> bool {
        let len = match &event {
            NetEvent::Message { bytes, .. } => bytes.len(),
            _ => 0,
        };
        let room = self.queued_bytes.load(Ordering::Relaxed) + len <= MAX_EVENT_QUEUE_BYTES;
        if room && self.backlog.is_empty() {
            self.queued_bytes.fetch_add(len, Ordering::Relaxed);
            if self.tx.try_send(event).is_ok() {
                return true;
            }
            self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        }
        self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    fn defer(&mut self, event: NetEvent) {
        if self.backlog.len() >= MAX_BACKLOG {
            self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
            if !self.stall_logged {
                self.stall_logged = true;
                tracing::warn!(
                    backlog = MAX_BACKLOG,
                    "event consumer stalled; dropping events"
                );
            }
            return;
        }
        self.backlog.push_back(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::PeerId;

    #[test]
    fn control_events_wait_and_messages_do_not_overtake_them() {
        let counters = Arc::new(Counters::default());
        let (tx, mut rx) = mpsc::channel(1);
        let mut sink = EventSink::new(tx, Default::default(), counters.clone());
        let peer = PeerId::random();
        let message = || NetEvent::Message {
            from: peer,
            bytes: vec![1],
        };

        assert!(sink.message(message()));
        sink.control(NetEvent::Disconnected { peer });
        assert!(sink.has_backlog(), "channel full: control event waits");
        assert!(
            !sink.message(message()),
            "message dropped instead of overtaking"
        );
        assert_eq!(counters.events_dropped.load(Ordering::Relaxed), 1);

        assert!(matches!(rx.try_recv(), Ok(NetEvent::Message { .. })));
        let permit = sink.tx.clone().try_reserve_owned().expect("room again");
        sink.drain_one(permit);
        assert!(matches!(rx.try_recv(), Ok(NetEvent::Disconnected { .. })));
        assert!(!sink.has_backlog());
        assert!(sink.message(message()));
    }

    #[test]
    fn backlog_is_bounded() {
        let counters = Arc::new(Counters::default());
        let (tx, _rx) = mpsc::channel(1);
        let mut sink = EventSink::new(tx, Default::default(), counters.clone());
        let peer = PeerId::random();
        for _ in 0..MAX_BACKLOG + 10 {
            sink.control(NetEvent::Disconnected { peer });
        }
        assert_eq!(sink.backlog.len(), MAX_BACKLOG);
        // One went into the channel, 1024 wait, the rest are counted.
        assert_eq!(counters.events_dropped.load(Ordering::Relaxed), 9);
    }

    /// Large messages fill the queue by bytes long before its count: beyond the byte bound they
    /// are dropped, and receiving gives the room back.
    #[tokio::test]
    async fn messages_are_bounded_by_bytes_too() {
        let counters = Arc::new(Counters::default());
        let (tx, mut events, queued) = channel(1024);
        let mut sink = EventSink::new(tx, queued, counters.clone());
        let peer = PeerId::random();
        let big = || NetEvent::Message {
            from: peer,
            bytes: vec![0; 4 * 1024 * 1024],
        };
        let fits = MAX_EVENT_QUEUE_BYTES / (4 * 1024 * 1024);
        for _ in 0..fits {
            assert!(sink.message(big()));
        }
        assert!(!sink.message(big()), "over the byte bound: dropped");
        assert_eq!(counters.events_dropped.load(Ordering::Relaxed), 1);
        assert!(matches!(
            events.recv().await,
            Some(NetEvent::Message { .. })
        ));
        assert!(sink.message(big()), "room again after one was received");
    }
}
