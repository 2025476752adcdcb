//! `muster-net`: the authenticated transport of a muster agent.
//!
//! Every host of a site holds the same site key (a 32-byte pre-shared key) and its own ed25519
//! host identity. [`spawn`] starts an actor task that owns a libp2p swarm over
//! TCP → pnet (site key) → noise (host identity) → yamux, listening only on the configured LAN
//! address. Peers are found through static bootstrap addresses, mDNS, addresses handed in with
//! [`NetHandle::add_address`] (e.g. from replicated membership) and identify. Messages are opaque
//! byte strings, length-prefixed, written back to back on one long-lived stream per connection
//! (`/muster/msg/2.0.0`) with no reply. Delivery is best effort: a message is dropped (and
//! counted) when its peer's queue is full or its stream breaks; messages to one peer arrive in
//! the order sent while their connection lasts. Older agents'
//! one-message-per-stream protocol (`/muster/msg/1.0.0`, acked) is still spoken, in both
//! directions, so a site can be upgraded host by host.
//!
//! The agent binary (`crates/muster`) is the only user: it sends the encoded `proto/` messages
//! of muster-core through a [`NetHandle`], reads [`NetEvent`]s from the returned receiver, and
//! maps peer ids to Raft node ids with [`node_id_of`]. A host without the site key never
//! completes a handshake: each attempt shows up as [`NetEvent::HandshakeRejected`].
//!
//! Modules: `transport` (the connection stack and failure classification), `framing` (wire
//! format), `messages` (the behaviour that picks a connection per message), `handler` (one
//! connection's message streams), `outbox` (the bounded queue between the two), `actor` (the
//! swarm task), `dialer` (address book, backoff, bootstrap), `sink` (event delivery),
//! `site_key` and `ids` (key file and identity helpers), `error`.

mod actor;
mod dialer;
mod error;
mod framing;
mod handler;
mod ids;
mod messages;
mod outbox;
mod sink;
mod site_key;
mod transport;
#[cfg(test)]
mod wire_tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libp2p::identify;
use libp2p::identity::KeyType;
use libp2p::swarm::behaviour::toggle::Toggle;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

pub use error::NetError;
pub use ids::{node_id_of, node_id_of_key, peer_id_of, public_key_of};
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};
pub use sink::{NetEvents, MAX_EVENT_QUEUE_BYTES};
pub use site_key::{format_site_key, parse_site_key};

/// Capacity of the handle → actor command queue.
pub const COMMAND_QUEUE_LEN: usize = 1024;
/// Capacity of the actor → agent event queue.
pub const EVENT_QUEUE_LEN: usize = 4096;
/// Connections are kept open this long without traffic. Dead peers are noticed by TCP
/// keepalive and `TCP_USER_TIMEOUT` (about 20 s, see `transport`), not by this timeout.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);
/// Established connections per peer (both sides may dial at once, and one may be closing).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 3;
/// Established connections in total.
pub const MAX_CONNECTIONS: u32 = 4096;
/// Inbound connections still in their handshake.
pub const MAX_PENDING_INCOMING: u32 = 128;

/// Configuration of the network layer; build it with [`NetConfig::new`] and adjust fields.
#[derive(Clone)]
pub struct NetConfig {
    /// This host's ed25519 identity; its peer id is what other hosts authenticate.
    pub keypair: Keypair,
    /// The site key shared by all hosts of the site (see [`parse_site_key`]). Hosts with a
    /// different key cannot complete a handshake with this one.
    pub psk: [u8; 32],
    /// The address on the LAN interface to listen on. Nothing else is bound; it must be a
    /// concrete address (not `0.0.0.0`) with a non-zero port.
    pub listen: SocketAddr,
    /// Static peers, dialled at start and re-dialled with backoff (1 s doubling to 30 s)
    /// whenever not connected. May include this host's own `listen` address, which is skipped.
    pub bootstrap: Vec<SocketAddr>,
    /// Discover peers with mDNS on all non-loopback interfaces and dial them.
    pub mdns: bool,
    /// How often mDNS queries the network (default 500 ms) until the host is settled
    /// ([`NetHandle::set_discovery_settled`]). Records are announced with a TTL of ten
    /// intervals (at least 2 s), so a vanished host's record expires within seconds.
    pub mdns_query_interval: Duration,
    /// How often a settled host (a member of a formed site) queries (default 15 s). It still
    /// answers every query at once, so a host that is looking (querying at
    /// `mdns_query_interval`) finds it as fast. What it saves is multicast that every device
    /// on the LAN receives: a site queries about once per interval (every answer heard resets
    /// each host's timer), and every host answers each query, so a 25-host site at 500 ms
    /// puts about 50 packets a second on the wire, each parsed by every host.
    pub mdns_settled_interval: Duration,
    /// How long opening (negotiating) a message stream may take (default 5 s). An older
    /// agent (`/muster/msg/1.0.0`) is the only one that acks; there this bounds each exchange's
    /// negotiation, and the old agent's own timeout bounds its ack.
    pub request_timeout: Duration,
    /// Largest message accepted or sent (default 4 MiB). Larger inbound messages are refused
    /// from their length prefix, without allocating; larger outbound ones are dropped.
    pub max_message_bytes: usize,
}

impl NetConfig {
    /// A configuration with the defaults: no bootstrap peers, mDNS on with a 500 ms query
    /// interval, 5 s request timeout, 4 MiB message limit.
    pub fn new(keypair: Keypair, psk: [u8; 32], listen: SocketAddr) -> Self {
        Self {
            keypair,
            psk,
            listen,
            bootstrap: Vec::new(),
            mdns: true,
            mdns_query_interval: Duration::from_millis(500),
            mdns_settled_interval: Duration::from_secs(15),
            request_timeout: Duration::from_secs(5),
            max_message_bytes: 4 * 1024 * 1024,
        }
    }

    /// The mDNS record TTL derived from [`NetConfig::mdns_query_interval`].
    pub fn mdns_ttl(&self) -> Duration {
        (self.mdns_query_interval * 10).max(Duration::from_secs(2))
    }

    /// Checks the values [`spawn`] cannot work with.
    pub fn validate(&self) -> Result<(), NetError> {
        if self.keypair.key_type() != KeyType::Ed25519 {
            return Err(NetError::config(
                "keypair",
                "the host identity must be an ed25519 key",
            ));
        }
        if self.listen.ip().is_unspecified() || self.listen.port() == 0 {
            return Err(NetError::config(
                "listen",
                format!(
                    "{} must be the LAN interface address and a fixed port",
                    self.listen
                ),
            ));
        }
        if self.mdns && self.mdns_query_interval.is_zero() {
            return Err(NetError::config(
                "mdns_query_interval",
                "must be greater than zero",
            ));
        }
        if self.mdns && self.mdns_settled_interval < self.mdns_query_interval {
            return Err(NetError::config(
                "mdns_settled_interval",
                "must be at least mdns_query_interval",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(NetError::config(
                "request_timeout",
                "must be greater than zero",
            ));
        }
        if self.max_message_bytes == 0 || u32::try_from(self.max_message_bytes).is_err() {
            return Err(NetError::config(
                "max_message_bytes",
                "must be between 1 and 2^32 - 1",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConfig")
            .field("peer_id", &self.keypair.public().to_peer_id())
            .field("psk", &"<redacted>")
            .field("listen", &self.listen)
            .field("bootstrap", &self.bootstrap)
            .field("mdns", &self.mdns)
            .field("mdns_query_interval", &self.mdns_query_interval)
            .field("mdns_settled_interval", &self.mdns_settled_interval)
            .field("request_timeout", &self.request_timeout)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish()
    }
}

/// What the network layer reports to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// The first authenticated connection (pnet + noise + yamux done) to `peer` is up.
    /// Fires once per transition from "no connection" to "connected".
    Connected { peer: PeerId, remote: Multiaddr },
    /// The last connection to `peer` closed.
    Disconnected { peer: PeerId },
    /// One message from an authenticated peer.
    Message { from: PeerId, bytes: Vec<u8> },
    /// An inbound or outbound connection failed its pnet/noise handshake, e.g. because the
    /// remote uses another site key. `remote` is its `ip:port`.
    HandshakeRejected { remote: String, error: String },
}

/// A snapshot of the network layer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Connections (either direction) that failed authentication.
    pub handshakes_rejected: u64,
    /// Outbound messages dropped: too large, per-peer queue full, no address, refused peer,
    /// or lost with a stream or connection that broke while they were queued or being written.
    pub messages_dropped: u64,
    /// Events not delivered because the event receiver was full (inbound messages and
    /// control events beyond the backlog).
    pub events_dropped: u64,
    /// Peers with at least one open connection.
    pub connected_peers: usize,
    /// Inbound connections denied after authentication: a refused (removed) identity, or a
    /// connection limit.
    pub connections_denied: u64,
}

/// Counters shared by the actor and its handles.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) handshakes_rejected: AtomicU64,
    pub(crate) messages_dropped: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) connected_peers: AtomicUsize,
    pub(crate) connections_denied: AtomicU64,
}

/// A cheap, cloneable handle to the network actor.
#[derive(Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<actor::Command>,
    local_peer_id: PeerId,
    counters: Arc<Counters>,
    max_message_bytes: usize,
}

impl fmt::Debug for NetHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetHandle")
            .field("local_peer_id", &self.local_peer_id)
            .finish()
    }
}

impl NetHandle {
    /// Queues `bytes` for `to`. Never blocks: if the message exceeds `max_message_bytes`, the
    /// command queue is full or the actor has stopped, the message is dropped and counted.
    /// Dials `to` if it is not connected and an address is known (bootstrap, mDNS, identify or
    /// [`NetHandle::add_address`]).
    pub fn send(&self, to: PeerId, bytes: Vec<u8>) {
        let len = bytes.len();
        if len > self.max_message_bytes {
            self.counters
                .messages_dropped
                .fetch_add(1, Ordering::Relaxed);
            let limit = self.max_message_bytes;
            tracing::warn!(peer = %to, len, limit, "message too large; dropped");
            return;
        }
        let command = actor::Command::Send { to, bytes };
        if self.commands.try_send(command).is_err() {
            self.counters
                .messages_dropped
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %to, len, "command queue full or network stopped; message dropped");
        }
    }

    /// Tells the actor where `peer` can be reached; the address is kept and dialled when a
    /// message is sent to `peer`. Never blocks: logged and ignored if the queue is full.
    pub fn add_address(&self, peer: PeerId, addr: SocketAddr) {
        if self
            .commands
            .try_send(actor::Command::AddAddress { peer, addr })
            .is_err()
        {
            tracing::warn!(peer = %peer, %addr, "command queue full; address ignored");
        }
    }

    /// Refuses `peer` from now on: its connections are closed and new ones denied right after
    /// authentication, before anything it sends is read (a removed host). Never blocks.
    pub fn block(&self, peer: PeerId) {
        if self.commands.try_send(actor::Command::Block(peer)).is_err() {
            tracing::warn!(peer = %peer, "command queue full; block not applied now");
        }
    }

    /// Tells the actor whether this host is settled (a member of a formed site): mDNS then
    /// queries every [`NetConfig::mdns_settled_interval`] instead of every
    /// [`NetConfig::mdns_query_interval`], and again at the fast pace once it is not. Answers
    /// to other hosts' queries are never delayed. Never blocks.
    pub fn set_discovery_settled(&self, settled: bool) {
        if self
            .commands
            .try_send(actor::Command::DiscoverySettled(settled))
            .is_err()
        {
            tracing::warn!(settled, "command queue full; mDNS pace not changed now");
        }
    }

    /// Stops the actor, closing the listener and all connections, and waits until it is done.
    /// Returns at once if it already stopped.
    pub async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self
            .commands
            .send(actor::Command::Shutdown(done))
            .await
            .is_ok()
        {
            let _ = stopped.await;
        }
    }

    /// This host's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Current counters.
    pub fn stats(&self) -> NetStats {
        NetStats {
            handshakes_rejected: self.counters.handshakes_rejected.load(Ordering::Relaxed),
            messages_dropped: self.counters.messages_dropped.load(Ordering::Relaxed),
            events_dropped: self.counters.events_dropped.load(Ordering::Relaxed),
            connected_peers: self.counters.connected_peers.load(Ordering::Relaxed),
            connections_denied: self.counters.connections_denied.load(Ordering::Relaxed),
        }
    }
}

/// Starts the network actor on the current Tokio runtime. The listen socket is bound before
/// this returns. Dropping every [`NetHandle`] stops the actor like [`NetHandle::shutdown`].
pub fn spawn(cfg: NetConfig) -> Result<(NetHandle, NetEvents), NetError> {
    cfg.validate()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetError::NoRuntime)?;
    check_listen_address(cfg.listen)?;

    let local_peer_id = cfg.keypair.public().to_peer_id();
    let counters = Arc::new(Counters::default());
    let mdns = cfg.mdns.then(|| actor::MdnsPace::new(&cfg));
    let behaviour = build_behaviour(&cfg, local_peer_id, counters.clone(), mdns.as_ref())?;
    let psk = libp2p::pnet::PreSharedKey::new(cfg.psk);
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(cfg.keypair.clone())
        .with_tokio()
        .with_other_transport(|keypair| {
            transport::build(keypair, psk).map_err(|error| Box::new(error) as BoxError)
        })
        .map_err(|error| NetError::Transport(error.to_string()))?
        .with_behaviour(|_| behaviour)
        .map_err(|error| NetError::Transport(error.to_string()))?
        .with_swarm_config(|config| config.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build();
    swarm
        .listen_on(dialer::multiaddr_of(cfg.listen))
        .map_err(|error| NetError::Listen {
            addr: cfg.listen,
            source: std::io::Error::other(error.to_string()),
        })?;

    let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE_LEN);
    let (event_tx, event_rx, queued_bytes) = sink::channel(EVENT_QUEUE_LEN);
    let bootstrap = cfg
        .bootstrap
        .iter()
        .map(|addr| dialer::BootstrapPeer::new(*addr, cfg.listen))
        .collect();
    let actor = actor::Actor::new(
        swarm,
        mdns,
        command_rx,
        event_tx,
        queued_bytes,
        counters.clone(),
        bootstrap,
    );
    let span = tracing::info_span!("net", local = %local_peer_id, listen = %cfg.listen);
    runtime.spawn(actor.run().instrument(span));
    let handle = NetHandle {
        commands: command_tx,
        local_peer_id,
        counters,
        max_message_bytes: cfg.max_message_bytes,
    };
    Ok((handle, event_rx))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn build_behaviour(
    cfg: &NetConfig,
    local_peer_id: PeerId,
    counters: Arc<Counters>,
    mdns: Option<&actor::MdnsPace>,
) -> Result<actor::Behaviour, NetError> {
    let handler = handler::HandlerConfig {
        max_message_bytes: cfg.max_message_bytes,
        open_timeout: cfg.request_timeout,
    };
    let messages = messages::Behaviour::new(handler, counters, local_peer_id);
    let identify = identify::Behaviour::new(
        identify::Config::new(actor::PROTOCOL_VERSION.to_owned(), cfg.keypair.public())
            .with_agent_version(format!("muster-net/{}", env!("CARGO_PKG_VERSION"))),
    );
    let mdns = mdns
        .map(|pace| pace.start(false, local_peer_id))
        .transpose()?;
    let limits = libp2p::connection_limits::ConnectionLimits::default()
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_established(Some(MAX_CONNECTIONS))
        .with_max_pending_incoming(Some(MAX_PENDING_INCOMING));
    Ok(actor::Behaviour {
        blocked: Default::default(),
        limits: libp2p::connection_limits::Behaviour::new(limits),
        messages,
        identify,
        mdns: Toggle::from(mdns),
    })
}

/// libp2p binds its listener with `SO_REUSEPORT`, so a second agent on the same port would
/// silently share it. A plain bind first turns that into a clear "address in use" error.
fn check_listen_address(addr: SocketAddr) -> Result<(), NetError> {
    match std::net::TcpListener::bind(addr) {
        Ok(probe) => {
            drop(probe);
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
            Err(NetError::AddressInUse { addr })
        }
        Err(source) => Err(NetError::Listen { addr, source }),
    }
}
