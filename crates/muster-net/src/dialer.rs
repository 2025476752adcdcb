//! Dial bookkeeping of the swarm actor (`actor.rs`): where each peer can be reached, which
//! addresses are backing off after a failed dial, and the static bootstrap list.
//!
//! Pure data structures with `Instant`s passed in, so they are unit-tested without sockets.
//! Every table is bounded.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

/// First re-dial delay after a failed dial to an address.
pub(crate) const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Cap of the doubling re-dial delay.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Addresses remembered per peer; the oldest is forgotten first.
const MAX_ADDRESSES_PER_PEER: usize = 8;
/// Peers remembered in the address book (sites have at most ~50 hosts).
const MAX_PEERS: usize = 1024;
/// Addresses tracked by the backoff table.
const MAX_BACKOFF_ENTRIES: usize = 4096;

/// The TCP socket address a multiaddr like `/ip4/10.0.0.1/tcp/7946[/p2p/...]` names.
pub(crate) fn socket_addr_of(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = addr.iter();
    let ip = match parts.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match parts.next()? {
        Protocol::Tcp(port) => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

/// `/ip4/<ip>/tcp/<port>` (or `/ip6/...`) for a socket address.
pub(crate) fn multiaddr_of(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::from(addr.ip()))
        .with(Protocol::Tcp(addr.port()))
}

/// One peer's entry in the address book.
#[derive(Debug, Default)]
struct BookEntry {
    /// Dialable addresses, newest last.
    addresses: VecDeque<SocketAddr>,
    /// Learnt from the replicated membership (the agent's handle): never evicted.
    pinned: bool,
    /// Book clock when the entry was last added to or connected through.
    seen: u64,
}

/// Known dialable addresses per peer, newest last. Bounded by [`MAX_PEERS`]: when full, a new
/// peer evicts the entry least recently added to or connected through, unless it is pinned
/// (members' addresses from the replicated membership), so spoofed mDNS records cannot crowd
/// out real members.
#[derive(Debug, Default)]
pub(crate) struct AddressBook {
    peers: HashMap<PeerId, BookEntry>,
    clock: u64,
}

impl AddressBook {
    /// Remembers `addr` for `peer` (moving it to newest if known); `pinned` entries (members)
    /// are never evicted. Returns false if the book is full of pinned entries and `peer` is new.
    pub(crate) fn add(&mut self, peer: PeerId, addr: SocketAddr, pinned: bool) -> bool {
        self.clock += 1;
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS && !self.evict() {
            return false;
        }
        let entry = self.peers.entry(peer).or_default();
        entry.seen = self.clock;
        entry.pinned |= pinned;
        let addresses = &mut entry.addresses;
        addresses.retain(|known| *known != addr);
        if addresses.len() >= MAX_ADDRESSES_PER_PEER {
            addresses.pop_front();
        }
        addresses.push_back(addr);
        true
    }

    /// Drops the unpinned entry seen longest ago; false if every entry is pinned.
    fn evict(&mut self) -> bool {
        let oldest = self
            .peers
            .iter()
            .filter(|(_, e)| !e.pinned)
            .min_by_key(|(_, e)| e.seen)
            .map(|(p, _)| *p);
        oldest.is_some_and(|p| self.peers.remove(&p).is_some())
    }

    /// `peer` is connected: its entry is fresh again.
    pub(crate) fn touch(&mut self, peer: &PeerId) {
        self.clock += 1;
        if let Some(e) = self.peers.get_mut(peer) {
            e.seen = self.clock;
        }
    }

    /// Forgets `addr` for `peer` (e.g. another peer answered there).
    pub(crate) fn remove(&mut self, peer: &PeerId, addr: SocketAddr) {
        if let Some(e) = self.peers.get_mut(peer) {
            e.addresses.retain(|known| *known != addr);
            if e.addresses.is_empty() {
                self.peers.remove(peer);
            }
        }
    }

    /// The known addresses of `peer`, newest first.
    pub(crate) fn addresses(&self, peer: &PeerId) -> impl Iterator<Item = SocketAddr> + '_ {
        self.peers
            .get(peer)
            .into_iter()
            .flat_map(|e| e.addresses.iter().rev().copied())
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    retry_at: Instant,
}

/// Per-address exponential backoff: 1 s doubling to 30 s (plus up to 25 % jitter so nodes
/// that booted together do not dial in lockstep), reset by a successful connection.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: HashMap<SocketAddr, Failures>,
    jitter: RandomState,
}

impl Backoff {
    /// True if `addr` may be dialled now.
    pub(crate) fn is_ready(&self, addr: SocketAddr, now: Instant) -> bool {
        self.failures.get(&addr).is_none_or(|f| f.retry_at <= now)
    }

    /// Records a failed dial to `addr`; returns the delay before the next attempt.
    pub(crate) fn failed(&mut self, addr: SocketAddr, now: Instant) -> Duration {
        if self.failures.len() >= MAX_BACKOFF_ENTRIES && !self.failures.contains_key(&addr) {
            self.failures.retain(|_, f| f.retry_at > now);
        }
        let count = self
            .failures
            .get(&addr)
            .map_or(0, |f| f.count)
            .saturating_add(1);
        let exponent = (count - 1).min(16);
        let delay = BACKOFF_INITIAL
            .saturating_mul(1 << exponent)
            .min(BACKOFF_MAX);
        let jitter_ms = self.jitter.hash_one((addr, count)) % (delay.as_millis() as u64 / 4 + 1);
        let delay = delay + Duration::from_millis(jitter_ms);
        if self.failures.len() < MAX_BACKOFF_ENTRIES || self.failures.contains_key(&addr) {
            let retry_at = now + delay;
            self.failures.insert(addr, Failures { count, retry_at });
        }
        delay
    }

    /// Records a successful connection to `addr`.
    pub(crate) fn succeeded(&mut self, addr: SocketAddr) {
        self.failures.remove(&addr);
    }
}

/// One static bootstrap address and what we know about it.
#[derive(Debug)]
pub(crate) struct BootstrapPeer {
    pub(crate) addr: SocketAddr,
    /// The peer last found at `addr` (by dialling it, or from its identify listen addresses).
    pub(crate) peer: Option<PeerId>,
    /// The dial in flight to `addr`, if any.
    pub(crate) dialing: Option<ConnectionId>,
    /// `addr` is this node itself: never dialled.
    pub(crate) is_self: bool,
}

impl BootstrapPeer {
    pub(crate) fn new(addr: SocketAddr, listen: SocketAddr) -> Self {
        Self {
            addr,
            peer: None,
            dialing: None,
            is_self: addr == listen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 77, 0, 1], port))
    }

    #[test]
    fn multiaddr_conversion_round_trips_and_ignores_p2p_suffix() {
        let v4 = addr(7946);
        assert_eq!(socket_addr_of(&multiaddr_of(v4)), Some(v4));
        let v6: SocketAddr = "[fd00::1]:7946".parse().expect("v6");
        assert_eq!(socket_addr_of(&multiaddr_of(v6)), Some(v6));
        let with_peer = multiaddr_of(v4).with(Protocol::P2p(PeerId::random()));
        assert_eq!(socket_addr_of(&with_peer), Some(v4));
        let udp: Multiaddr = "/ip4/10.0.0.1/udp/5353".parse().expect("udp");
        assert_eq!(socket_addr_of(&udp), None);
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        let a = addr(1);
        assert!(backoff.is_ready(a, start));
        let mut expected = BACKOFF_INITIAL;
        for _ in 0..8 {
            let delay = backoff.failed(a, start);
            assert!(
                delay >= expected && delay <= expected + expected / 4,
                "{delay:?}"
            );
            assert!(!backoff.is_ready(a, start + expected - Duration::from_millis(1)));
            assert!(backoff.is_ready(a, start + delay));
            expected = (expected * 2).min(BACKOFF_MAX);
        }
        assert!(expected == BACKOFF_MAX);
        assert!(
            backoff.is_ready(addr(2), start),
            "other addresses are unaffected"
        );
        backoff.succeeded(a);
        assert!(backoff.is_ready(a, start));
        assert!(
            backoff.failed(a, start) < BACKOFF_INITIAL * 2,
            "reset to the initial delay"
        );
    }

    #[test]
    fn address_book_keeps_newest_first_and_is_bounded() {
        let mut book = AddressBook::default();
        let peer = PeerId::random();
        for port in 0..20 {
            assert!(book.add(peer, addr(port), false));
        }
        let known: Vec<_> = book.addresses(&peer).collect();
        assert_eq!(known.len(), MAX_ADDRESSES_PER_PEER);
        assert_eq!(known[0], addr(19));
        book.add(peer, addr(12), false);
        assert_eq!(book.addresses(&peer).next(), Some(addr(12)));
        book.remove(&peer, addr(12));
        assert!(book.addresses(&peer).all(|a| a != addr(12)));
        assert!(book.peers.len() <= MAX_PEERS);
    }

    /// Spoofed mDNS records for thousands of made-up peers cannot push out members' addresses
    /// (pinned) nor a peer that is connected (touched), and the book stays bounded.
    #[test]
    fn spoofed_records_evict_only_stale_unpinned_entries() {
        let mut book = AddressBook::default();
        let member = PeerId::random();
        let connected = PeerId::random();
        assert!(book.add(member, addr(1), true));
        assert!(book.add(connected, addr(2), false));
        for i in 0..(3 * MAX_PEERS) {
            assert!(
                book.add(PeerId::random(), addr(3), false),
                "spoof {i} taken"
            );
            book.touch(&connected);
        }
        assert_eq!(book.peers.len(), MAX_PEERS);
        assert_eq!(book.addresses(&member).next(), Some(addr(1)), "member kept");
        assert_eq!(
            book.addresses(&connected).next(),
            Some(addr(2)),
            "connected peer kept"
        );
        // A book full of pinned members refuses a new unpinned peer.
        let mut pinned = AddressBook::default();
        for _ in 0..MAX_PEERS {
            assert!(pinned.add(PeerId::random(), addr(4), true));
        }
        assert!(!pinned.add(PeerId::random(), addr(5), false));
    }

    #[test]
    fn bootstrap_entry_for_own_listen_address_is_self() {
        assert!(BootstrapPeer::new(addr(1), addr(1)).is_self);
        assert!(!BootstrapPeer::new(addr(2), addr(1)).is_self);
    }
}
