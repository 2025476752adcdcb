//! The swarm actor: one Tokio task that owns the libp2p `Swarm` and serves the
//! [`crate::NetHandle`]s held by the agent binary (`crates/muster`).
//!
//! It turns handle commands into dials and frames queued on the message behaviour
//! (`messages.rs`), turns swarm events into
//! [`NetEvent`]s, keeps the address book and per-address dial backoff, and re-dials the static
//! bootstrap addresses until they are connected. All of its state is owned by the task; the
//! handles only share the atomic counters.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, ListenError, NetworkBehaviour, SwarmEvent};
use libp2p::{identify, mdns, Multiaddr, PeerId, Swarm, TransportError};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::dialer::{multiaddr_of, socket_addr_of, AddressBook, Backoff, BootstrapPeer};
use crate::messages;
use crate::sink::EventSink;
use crate::transport::link_failure;
use crate::{Counters, NetEvent};

/// Protocol version announced through identify; peers with another version are logged.
pub(crate) const PROTOCOL_VERSION: &str = "/muster/1.0.0";
/// How often the bootstrap list is checked for addresses due for a (re-)dial.
const REDIAL_TICK: Duration = Duration::from_millis(250);

/// The libp2p behaviours of a muster node.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Identities the agent refused (removed hosts): denied at the connection.
    pub(crate) blocked: libp2p::allow_block_list::Behaviour<libp2p::allow_block_list::BlockedPeers>,
    /// Connections per peer, in total and pending (limits in `lib.rs`).
    pub(crate) limits: libp2p::connection_limits::Behaviour,
    /// Message streams; after `blocked` and `limits`, which must see a connection first.
    pub(crate) messages: messages::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Requests from [`crate::NetHandle`] to the actor.
pub(crate) enum Command {
    Send { to: PeerId, bytes: Vec<u8> },
    AddAddress { peer: PeerId, addr: SocketAddr },
    Block(PeerId),
    DiscoverySettled(bool),
    Shutdown(oneshot::Sender<()>),
}

/// The two paces of mDNS (`NetConfig::mdns_query_interval` and `mdns_settled_interval`).
/// libp2p's mDNS fixes its query interval when it is built, so a change of pace replaces the
/// behaviour with one built for the other interval.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MdnsPace {
    fast: Duration,
    settled: Duration,
    ttl: Duration,
    ipv6: bool,
    /// Whether the running behaviour is the settled one.
    now_settled: bool,
}

impl MdnsPace {
    pub(crate) fn new(cfg: &crate::NetConfig) -> Self {
        Self {
            fast: cfg.mdns_query_interval,
            settled: cfg.mdns_settled_interval,
            // What others are told about this host's record does not change with the pace.
            ttl: cfg.mdns_ttl(),
            ipv6: cfg.listen.is_ipv6(),
            now_settled: false,
        }
    }

    /// The query interval for `settled`.
    fn interval(&self, settled: bool) -> Duration {
        if settled {
            self.settled
        } else {
            self.fast
        }
    }

    /// An mDNS behaviour querying at the pace for `settled`.
    pub(crate) fn start(
        &self,
        settled: bool,
        local: PeerId,
    ) -> Result<mdns::tokio::Behaviour, crate::NetError> {
        let config = mdns::Config {
            ttl: self.ttl,
            query_interval: self.interval(settled),
            enable_ipv6: self.ipv6,
        };
        mdns::tokio::Behaviour::new(config, local).map_err(crate::NetError::Mdns)
    }
}

pub(crate) struct Actor {
    swarm: Swarm<Behaviour>,
    mdns: Option<MdnsPace>,
    commands: mpsc::Receiver<Command>,
    sink: EventSink,
    counters: Arc<Counters>,
    book: AddressBook,
    backoff: Backoff,
    bootstrap: Vec<BootstrapPeer>,
}

impl Actor {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        mdns: Option<MdnsPace>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetEvent>,
        queued_bytes: Arc<std::sync::atomic::AtomicUsize>,
        counters: Arc<Counters>,
        bootstrap: Vec<BootstrapPeer>,
    ) -> Self {
        Self {
            swarm,
            mdns,
            commands,
            sink: EventSink::new(events, queued_bytes, counters.clone()),
            counters,
            book: AddressBook::default(),
            backoff: Backoff::default(),
            bootstrap,
        }
    }

    /// Runs until [`Command::Shutdown`] or until every handle is dropped.
    pub(crate) async fn run(mut self) {
        let mut redial = tokio::time::interval(REDIAL_TICK);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let done = loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Send { to, bytes }) => self.send(to, bytes),
                    Some(Command::AddAddress { peer, addr }) => {
                        self.learn_address(peer, addr, "handle");
                    }
                    Some(Command::Block(peer)) => self.block(peer),
                    Some(Command::DiscoverySettled(settled)) => self.set_mdns_pace(settled),
                    Some(Command::Shutdown(done)) => break Some(done),
                    None => break None,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = redial.tick() => self.redial_bootstrap(),
                permit = self.sink.tx.clone().reserve_owned(), if self.sink.has_backlog() => {
                    match permit {
                        Ok(permit) => self.sink.drain_one(permit),
                        Err(_) => self.sink.backlog.clear(), // the consumer is gone
                    }
                }
            }
        };
        info!("network stopping");
        self.counters.connected_peers.store(0, Ordering::Relaxed);
        // Dropping the swarm closes the listener and every connection.
        drop(self);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn drop_message(&self, to: &PeerId, reason: &'static str) {
        self.counters
            .messages_dropped
            .fetch_add(1, Ordering::Relaxed);
        debug!(peer = %to, reason, "message dropped");
    }

    fn send(&mut self, to: PeerId, bytes: Vec<u8>) {
        if to == *self.swarm.local_peer_id() {
            return self.drop_message(&to, "addressed to self");
        }
        if self.swarm.behaviour().blocked.blocked_peers().contains(&to) {
            return self.drop_message(&to, "peer refused");
        }
        if !self.swarm.is_connected(&to) && !self.dial_peer(to) {
            return self.drop_message(&to, "not connected and no dialable address");
        }
        // If a dial is under way the frame waits for its connection and is dropped with it.
        if let Err(error) = self.swarm.behaviour_mut().messages.send(to, &bytes) {
            self.drop_message(&to, error.reason());
        }
    }

    fn block(&mut self, peer: PeerId) {
        let behaviour = self.swarm.behaviour_mut();
        behaviour.messages.refuse(&peer);
        if behaviour.blocked.block_peer(peer) {
            info!(%peer, "peer refused from now on");
        }
    }

    /// Starts a dial to `peer` over its known addresses that are not backing off. Returns true
    /// if a dial to `peer` is now under way (new or already running).
    fn dial_peer(&mut self, peer: PeerId) -> bool {
        let now = Instant::now();
        let addresses: Vec<Multiaddr> = self
            .book
            .addresses(&peer)
            .filter(|addr| self.backoff.is_ready(*addr, now))
            .map(multiaddr_of)
            .collect();
        if addresses.is_empty() {
            return false;
        }
        // A new local port per dial: reusing the listen port would let two nodes dialling each
        // other at once hit a TCP simultaneous open, which the handshake cannot handle.
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .addresses(addresses)
            .allocate_new_port()
            .build();
        match self.swarm.dial(opts) {
            Ok(()) => {
                debug!(peer = %peer, "dialling peer");
                true
            }
            Err(DialError::DialPeerConditionFalse(_)) => true,
            Err(error) => {
                debug!(peer = %peer, %error, "cannot dial peer");
                false
            }
        }
    }

    fn learn_address(&mut self, peer: PeerId, addr: SocketAddr, source: &'static str) {
        if peer == *self.swarm.local_peer_id() {
            return;
        }
        // Addresses from the replicated membership (the agent) are pinned: never evicted.
        if self.book.add(peer, addr, source == "handle") {
            debug!(peer = %peer, %addr, source, "address learned");
        } else {
            warn!(peer = %peer, %addr, source, "address book full; address ignored");
        }
    }

    /// Dials every bootstrap address that is not connected, not being dialled and not backing
    /// off. The peer behind an address is unknown until the first connection, so these dials
    /// carry no peer id.
    fn redial_bootstrap(&mut self) {
        let now = Instant::now();
        for entry in &mut self.bootstrap {
            let connected = entry
                .peer
                .is_some_and(|peer| self.swarm.is_connected(&peer));
            if entry.is_self || entry.dialing.is_some() || connected {
                continue;
            }
            if !self.backoff.is_ready(entry.addr, now) {
                continue;
            }
            let opts = DialOpts::unknown_peer_id()
                .address(multiaddr_of(entry.addr))
                .allocate_new_port()
                .build();
            let connection = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    debug!(addr = %entry.addr, "dialling bootstrap address");
                    entry.dialing = Some(connection);
                }
                Err(error) => {
                    let retry_in = self.backoff.failed(entry.addr, now);
                    debug!(addr = %entry.addr, %error, ?retry_in, "cannot dial bootstrap address");
                }
            }
        }
    }

    /// Marks the bootstrap dial `connection` (if it is one) as finished; returns its index.
    fn bootstrap_dial_ended(&mut self, connection: ConnectionId) -> Option<usize> {
        let index = self
            .bootstrap
            .iter()
            .position(|e| e.dialing == Some(connection))?;
        self.bootstrap[index].dialing = None;
        Some(index)
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Messages(event)) => self.on_message_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(event)) => self.on_mdns(event),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => self.on_connected(peer_id, connection_id, &endpoint, num_established.get()),
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                let cause = cause.map(|c| c.to_string());
                debug!(peer = %peer_id, cause = cause.as_deref(), "connection closed");
                if num_established == 0 {
                    self.update_connected_count();
                    info!(peer = %peer_id, cause = cause.as_deref(), "peer disconnected");
                    self.sink.control(NetEvent::Disconnected { peer: peer_id });
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => self.on_dial_error(connection_id, peer_id, error),
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => self.on_incoming_error(&send_back_addr, error),
            SwarmEvent::NewListenAddr { address, .. } => info!(%address, "listening"),
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => warn!(?addresses, ?reason, "listener closed"),
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
            _ => {}
        }
    }

    fn update_connected_count(&self) {
        let peers = self.swarm.network_info().num_peers();
        self.counters
            .connected_peers
            .store(peers, Ordering::Relaxed);
    }

    fn on_connected(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        endpoint: &ConnectedPoint,
        established: u32,
    ) {
        let remote = endpoint.get_remote_address();
        if let ConnectedPoint::Dialer { address, .. } = endpoint {
            if let Some(addr) = socket_addr_of(address) {
                self.backoff.succeeded(addr);
                self.learn_address(peer, addr, "dial");
            }
        }
        self.book.touch(&peer);
        if let Some(index) = self.bootstrap_dial_ended(connection) {
            self.bootstrap[index].peer = Some(peer);
        }
        if established > 1 {
            debug!(peer = %peer, %remote, established, "additional connection");
            return;
        }
        self.update_connected_count();
        info!(peer = %peer, %remote, "peer connected");
        let remote = socket_addr_of(remote).map_or_else(|| remote.clone(), multiaddr_of);
        self.sink.control(NetEvent::Connected { peer, remote });
    }

    fn on_dial_error(&mut self, connection: ConnectionId, peer: Option<PeerId>, error: DialError) {
        let bootstrap = self.bootstrap_dial_ended(connection);
        match error {
            DialError::Transport(attempts) => {
                let now = Instant::now();
                for (address, error) in attempts {
                    let addr = socket_addr_of(&address);
                    let retry_in = addr.map(|addr| self.backoff.failed(addr, now));
                    self.on_transport_error(&address, &error, peer, retry_in);
                }
            }
            DialError::LocalPeerId { address } => {
                debug!(%address, "address is this node; not dialling it again");
                if let Some(index) = bootstrap {
                    self.bootstrap[index].is_self = true;
                }
            }
            DialError::WrongPeerId { obtained, address } => {
                warn!(expected = ?peer, %obtained, %address, "another peer answered at address");
                if let Some(addr) = socket_addr_of(&address) {
                    self.backoff.failed(addr, Instant::now());
                    if let Some(expected) = peer {
                        self.book.remove(&expected, addr);
                    }
                }
            }
            error => debug!(peer = ?peer, %error, "dial not started"),
        }
    }

    fn on_transport_error(
        &mut self,
        address: &Multiaddr,
        error: &TransportError<std::io::Error>,
        peer: Option<PeerId>,
        retry_in: Option<Duration>,
    ) {
        let TransportError::Other(error) = error else {
            return warn!(%address, "unsupported address");
        };
        match link_failure(error) {
            Some(failure) if failure.is_rejection() => {
                let remote = socket_addr_of(address).map_or(address.to_string(), |a| a.to_string());
                self.rejected(remote, failure.to_string(), retry_in);
            }
            _ => debug!(peer = ?peer, %address, %error, ?retry_in, "dial failed"),
        }
    }

    fn on_incoming_error(&mut self, send_back_addr: &Multiaddr, error: ListenError) {
        let remote = socket_addr_of(send_back_addr)
            .map_or_else(|| send_back_addr.to_string(), |addr| addr.to_string());
        if let ListenError::Denied { cause } = &error {
            self.counters
                .connections_denied
                .fetch_add(1, Ordering::Relaxed);
            let why = if cause
                .downcast_ref::<libp2p::allow_block_list::Blocked>()
                .is_some()
            {
                "refused identity"
            } else {
                "connection limit"
            };
            return debug!(%remote, why, "inbound connection denied");
        }
        if let ListenError::Transport(TransportError::Other(error)) = &error {
            if let Some(failure) = link_failure(error).filter(|f| f.is_rejection()) {
                return self.rejected(remote, failure.to_string(), None);
            }
        }
        debug!(%remote, %error, "inbound connection failed");
    }

    fn rejected(&mut self, remote: String, error: String, retry_in: Option<Duration>) {
        self.counters
            .handshakes_rejected
            .fetch_add(1, Ordering::Relaxed);
        info!(%remote, %error, ?retry_in, "handshake rejected");
        self.sink
            .control(NetEvent::HandshakeRejected { remote, error });
    }

    fn on_message_event(&mut self, event: messages::Event) {
        let messages::Event::Message { peer, bytes } = event;
        let len = bytes.len();
        if !self.sink.message(NetEvent::Message { from: peer, bytes }) {
            debug!(peer = %peer, len, "event channel full; inbound message dropped");
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        if info.protocol_version != PROTOCOL_VERSION {
            warn!(peer = %peer_id, version = %info.protocol_version, "peer speaks another protocol version");
        }
        for addr in info.listen_addrs.iter().filter_map(socket_addr_of) {
            self.learn_address(peer_id, addr, "identify");
            for entry in self.bootstrap.iter_mut().filter(|e| e.addr == addr) {
                entry.peer = Some(peer_id);
            }
        }
    }

    /// Replaces the mDNS behaviour with one querying at the pace for `settled`, told the
    /// listen addresses it answers with. The old behaviour's interface tasks end when they
    /// next hand over a discovery (within one of its query intervals); until then they may
    /// send a query or two of their own.
    fn set_mdns_pace(&mut self, settled: bool) {
        let Some(pace) = self.mdns.as_mut() else {
            return;
        };
        if pace.now_settled == settled {
            return;
        }
        let mut next = match pace.start(settled, *self.swarm.local_peer_id()) {
            Ok(b) => b,
            Err(error) => {
                warn!(%error, settled, "could not restart mDNS at the new pace; keeping the old");
                return;
            }
        };
        pace.now_settled = settled;
        let interval = pace.interval(settled);
        let listening: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
        for addr in &listening {
            next.on_swarm_event(libp2p::swarm::FromSwarm::NewListenAddr(
                libp2p::swarm::behaviour::NewListenAddr {
                    listener_id: libp2p::core::transport::ListenerId::next(),
                    addr,
                },
            ));
        }
        self.swarm.behaviour_mut().mdns = Toggle::from(Some(next));
        info!(?interval, settled, "mDNS now queries every {interval:?}");
    }

    fn on_mdns(&mut self, event: mdns::Event) {
        match event {
            mdns::Event::Discovered(found) => {
                let mut peers = Vec::new();
                for (peer, address) in found {
                    if let Some(addr) = socket_addr_of(&address) {
                        self.learn_address(peer, addr, "mdns");
                        if !peers.contains(&peer) {
                            peers.push(peer);
                        }
                    }
                }
                for peer in peers {
                    if peer != *self.swarm.local_peer_id() && !self.swarm.is_connected(&peer) {
                        self.dial_peer(peer);
                    }
                }
            }
            mdns::Event::Expired(gone) => {
                for (peer, address) in gone {
                    debug!(peer = %peer, %address, "mDNS record expired");
                }
            }
        }
    }
}
