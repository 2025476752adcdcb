//! The message behaviour: which connection carries the frames for each peer.
//!
//! The swarm actor (`actor.rs`) calls [`Behaviour::send`], which encodes the message and
//! queues it in the [`Outbox`] of the peer's oldest connection, whose handler (`handler.rs`)
//! writes it to that connection's long-lived stream. Frames sent while the peer's first
//! connection is still being dialled wait in a small bounded queue and move to the connection
//! once it is up (or are dropped if the dial fails). Messages read by the handlers come back
//! as [`Event::Message`]. Every drop is counted in `messages_dropped`.
//!
//! Field order in the actor's derived behaviour matters: `blocked` and `limits` come first, so
//! a connection they deny never reaches [`Behaviour`] and never gets an outbox.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, DialFailure, FromSwarm, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use crate::framing;
use crate::handler::{Handler, HandlerConfig};
use crate::outbox::{Outbox, PushError};
use crate::Counters;

/// Frames per peer that may wait for its first connection.
const MAX_WAITING_FRAMES: usize = 64;
/// Peers with frames waiting for a connection.
const MAX_WAITING_PEERS: usize = 1024;
/// Received messages waiting for the swarm to take them (it does on its next poll).
const MAX_EVENTS: usize = 1024;

/// What the behaviour reports to the swarm actor.
#[derive(Debug)]
pub(crate) enum Event {
    /// One message read from `peer`.
    Message { peer: PeerId, bytes: Vec<u8> },
}

/// See the module doc.
pub(crate) struct Behaviour {
    config: HandlerConfig,
    counters: Arc<Counters>,
    /// This host's peer id: which of two hosts dialled a connection decides where frames go.
    local: PeerId,
    /// Each peer's connections with a handler, oldest first.
    connections: HashMap<PeerId, Vec<Link>>,
    /// Frames for peers being dialled.
    waiting: HashMap<PeerId, Vec<Vec<u8>>>,
    events: VecDeque<Event>,
}

/// One connection to a peer, as the behaviour sees it.
struct Link {
    id: ConnectionId,
    outbox: Arc<Outbox>,
    /// Whether the lower of the two peer ids dialled it. Both hosts send on such a connection
    /// when they have one, so when two hosts dialled each other a message and its answer travel
    /// on the same TCP connection, and the answer carries the ACK of the message instead of
    /// each direction needing pure ACKs of its own.
    by_lower: bool,
}

impl Behaviour {
    pub(crate) fn new(config: HandlerConfig, counters: Arc<Counters>, local: PeerId) -> Self {
        Self {
            config,
            counters,
            local,
            connections: HashMap::new(),
            waiting: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    fn dropped(&self, count: usize) {
        if count > 0 {
            self.counters
                .messages_dropped
                .fetch_add(count as u64, Ordering::Relaxed);
        }
    }

    /// Queues `bytes` for `peer`: on its oldest connection dialled by the lower peer id, else
    /// its oldest, or, if it has none (a dial is under way), until one is up. Never blocks;
    /// the caller counts an `Err` as a drop.
    pub(crate) fn send(&mut self, peer: PeerId, bytes: &[u8]) -> Result<(), PushError> {
        let frame = framing::encode(bytes);
        if let Some(links) = self.connections.get(&peer) {
            if let Some(link) = links.iter().find(|l| l.by_lower).or(links.first()) {
                return link.outbox.push(frame);
            }
        }
        let peers = self.waiting.len();
        match self.waiting.entry(peer) {
            Entry::Occupied(entry) if entry.get().len() >= MAX_WAITING_FRAMES => {
                Err(PushError::Full)
            }
            Entry::Occupied(mut entry) => {
                entry.get_mut().push(frame);
                Ok(())
            }
            Entry::Vacant(_) if peers >= MAX_WAITING_PEERS => Err(PushError::Full),
            Entry::Vacant(entry) => {
                entry.insert(vec![frame]);
                Ok(())
            }
        }
    }

    /// `peer` is refused: its outboxes close (its handlers stop reading and writing while the
    /// connections close) and nothing more is queued for it.
    pub(crate) fn refuse(&mut self, peer: &PeerId) {
        let mut dropped = self.waiting.remove(peer).map_or(0, |frames| frames.len());
        for link in self.connections.get(peer).into_iter().flatten() {
            dropped += link.outbox.close();
        }
        self.dropped(dropped);
    }

    /// `we_dialled`: the connection is outbound from this host.
    fn new_handler(&mut self, connection: ConnectionId, peer: PeerId, we_dialled: bool) -> Handler {
        let outbox = Arc::new(Outbox::default());
        let mut dropped = 0;
        for frame in self.waiting.remove(&peer).into_iter().flatten() {
            dropped += usize::from(outbox.push(frame).is_err());
        }
        self.dropped(dropped);
        self.connections.entry(peer).or_default().push(Link {
            id: connection,
            outbox: outbox.clone(),
            by_lower: we_dialled == (self.local < peer),
        });
        Handler::new(peer, self.config, outbox, self.counters.clone())
    }

    fn on_connection_closed(&mut self, peer: PeerId, connection: ConnectionId) {
        let Some(connections) = self.connections.get_mut(&peer) else {
            return;
        };
        let mut dropped = 0;
        connections.retain(|link| {
            if link.id == connection {
                dropped = link.outbox.close();
            }
            link.id != connection
        });
        if connections.is_empty() {
            self.connections.remove(&peer);
        }
        self.dropped(dropped);
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.new_handler(connection, peer, false))
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.new_handler(connection, peer, true))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => self.on_connection_closed(peer_id, connection_id),
            FromSwarm::DialFailure(DialFailure {
                peer_id: Some(peer),
                ..
            }) if !self.connections.contains_key(&peer) => {
                let dropped = self.waiting.remove(&peer).map_or(0, |frames| frames.len());
                self.dropped(dropped);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        _: ConnectionId,
        bytes: THandlerOutEvent<Self>,
    ) {
        if self.events.len() >= MAX_EVENTS {
            self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.events.push_back(Event::Message { peer, bytes });
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        match self.events.pop_front() {
            Some(event) => Poll::Ready(ToSwarm::GenerateEvent(event)),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn behaviour(local: PeerId) -> Behaviour {
        let config = HandlerConfig {
            max_message_bytes: 1024,
            open_timeout: Duration::from_secs(1),
        };
        Behaviour::new(config, Arc::new(Counters::default()), local)
    }

    /// The connection of `b` that a frame sent to `peer` was queued on.
    fn queued_on(b: &Behaviour, peer: &PeerId) -> Vec<ConnectionId> {
        let waker = futures::task::noop_waker();
        b.connections[peer]
            .iter()
            .filter(|l| l.outbox.pop(&waker).is_some())
            .map(|l| l.id)
            .collect()
    }

    /// Two hosts dialled each other: connection 1 was dialled by the lower id, connection 2 by
    /// the higher, and each host saw the other's dial first. Both must send on connection 1.
    #[test]
    fn both_hosts_send_on_the_connection_the_lower_id_dialled() {
        let (mut x, mut y) = (PeerId::random(), PeerId::random());
        if y < x {
            std::mem::swap(&mut x, &mut y);
        }
        let (by_x, by_y) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        let mut low = behaviour(x);
        let mut high = behaviour(y);
        // Each side's first connection is the one the other dialled.
        low.new_handler(by_y, y, false);
        low.new_handler(by_x, y, true);
        high.new_handler(by_x, x, false);
        high.new_handler(by_y, x, true);
        low.send(y, b"probe").unwrap();
        high.send(x, b"answer").unwrap();
        assert_eq!(queued_on(&low, &y), vec![by_x]);
        assert_eq!(queued_on(&high, &x), vec![by_x]);
        // Once it closes, each sends on what is left.
        low.on_connection_closed(y, by_x);
        high.on_connection_closed(x, by_x);
        low.send(y, b"probe").unwrap();
        high.send(x, b"answer").unwrap();
        assert_eq!(queued_on(&low, &y), vec![by_y]);
        assert_eq!(queued_on(&high, &x), vec![by_y]);
    }
}
