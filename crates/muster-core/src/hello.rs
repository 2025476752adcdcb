//! Hellos: what a host tells its peers about itself, how often, and when a peer counts as
//! reachable.
//!
//! A hello (`Hello`: cluster, member count, leader, lock, VIP, ...) goes to every connected peer
//! outside our cluster (an *outsider*) and to every member of it (connected or not: sending to a
//! member makes the transport dial its recorded address). Members are greeted all together,
//! every few intervals. Outsider rounds run every `hello_interval_ms` (`Node::maybe_hello`), but
//! each outsider has its own schedule: it gets its next hello when the interval its last hello
//! announced (`Hello.hello_interval_ms`) is about to run out, so a peer first greeted on connect
//! is not greeted again at the next round.
//!
//! The interval grows with the site, so a host sends about [`HELLOS_PER_INTERVAL`] hellos per
//! interval to each kind of peer whatever the site's size (a full mesh of 1000 hosts would
//! otherwise be 2000 hellos a second per host): `ceil(outsiders / 64)` intervals for outsiders,
//! `max(2, ceil(members / 64))` for members. Peers that are news get one at once: a peer on
//! connect (first contact); every outsider when this host bootstraps or leaves a cluster, or its
//! cluster changes (it joined one); every member when this host starts or stops holding the VIP.
//! Outsiders whose hellos announce no interval (agents from before the field) keep the old
//! schedule, every interval.
//!
//! The receiver follows the sender's rate: a peer is reachable while connected and heard from
//! within `max(own rule, PEER_TIMEOUT_HELLOS × announced interval)`, the own rule being
//! `peer_timeout_ms` (for members of a large cluster, scaled like their hello interval, as
//! before). A fixed rule per receiver would break where two hosts see different numbers of
//! peers; a missing interval leaves the own rule alone, as older agents expect.

use muster_proto::envelope::Body;
use muster_proto::Hello;

use crate::config::NodeId;
use crate::node::{Node, Peer};
use crate::storage::RaftStore;

/// Hellos a host sends to its cluster's members, and to outsiders, per hello interval, about.
pub(crate) const HELLOS_PER_INTERVAL: u64 = 64;
/// Hellos to members go at most every this many hello intervals (1 s with the defaults), which
/// still gives a member at least 3 hellos per reachability timeout (3 s): over TCP a hello is
/// lost only with its connection, and every message counts as heard. The idle cost of a site of
/// 25 is mostly its hellos (README, "Idle cost").
pub(crate) const MIN_MEMBER_HELLO_INTERVALS: u64 = 2;
/// A peer counts as unreachable only after this many of its announced hello intervals passed
/// without a word from it.
pub const PEER_TIMEOUT_HELLOS: u64 = 3;
/// The longest announced interval a receiver believes (a peer with the key but no membership
/// could otherwise claim to stay reachable for days while connected).
pub const MAX_ANNOUNCED_HELLO_INTERVAL_MS: u64 = 120_000;

/// How long a peer may stay silent and still count as reachable: `peer_timeout_ms` (for
/// members of a large cluster, scaled like their hello interval), or [`PEER_TIMEOUT_HELLOS`]
/// of the intervals its last hello announced if that is longer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerTimeouts {
    member_ms: u64,
    other_ms: u64,
}

impl PeerTimeouts {
    fn of(self, p: &Peer) -> u64 {
        let own = if p.member {
            self.member_ms
        } else {
            self.other_ms
        };
        own.max(PEER_TIMEOUT_HELLOS * u64::from(p.hello_interval_ms))
    }
}

/// Whether `p` is reachable at `now_ms`: connected, and heard from within its timeout
/// ([`Node::peer_reachable`]).
pub(crate) fn reachable_at(p: &Peer, now_ms: u64, timeouts: PeerTimeouts) -> bool {
    p.connected
        && p.last_heard_ms
            .is_some_and(|t| now_ms.saturating_sub(t) <= timeouts.of(p))
}

/// What the node keeps of a peer's latest hello: the fields read after it arrived (its name,
/// address, public key and member ids are checked and used when it arrives, never read from
/// here, and would be most of a large site's peer tables — a `Hello` is three times the size).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PeerHello {
    pub cluster_id: u64,
    pub leader_id: NodeId,
    pub member_count: u32,
    pub api_health: i32,
    pub protocol: u32,
    pub hello_interval_ms: u32,
    pub locked: bool,
    pub vip_held: bool,
    pub formed: bool,
    pub agent_version: Box<str>,
}

impl From<Hello> for PeerHello {
    fn from(h: Hello) -> Self {
        PeerHello {
            cluster_id: h.cluster_id,
            leader_id: h.leader_id,
            member_count: h.member_count,
            api_health: h.api_health,
            protocol: h.protocol,
            hello_interval_ms: h.hello_interval_ms,
            locked: h.locked,
            vip_held: h.vip_held,
            formed: h.formed,
            agent_version: h.agent_version.into_boxed_str(),
        }
    }
}

impl<S: RaftStore> Node<S> {
    /// How many times `hello_interval_ms` apart hellos to members (and their reachability
    /// timeout, for peers that announce no interval) are: 1 up to [`HELLOS_PER_INTERVAL`]
    /// members, then growing with the cluster.
    pub(crate) fn member_hello_factor(&self) -> u64 {
        (self.cluster.members.len() as u64)
            .div_ceil(HELLOS_PER_INTERVAL)
            .max(1)
    }

    /// How many hello intervals apart hellos to members go: `member_hello_factor`, but at
    /// least [`MIN_MEMBER_HELLO_INTERVALS`].
    pub(crate) fn member_hello_intervals(&self) -> u64 {
        self.member_hello_factor().max(MIN_MEMBER_HELLO_INTERVALS)
    }

    /// The interval hellos to outsiders go at: one per [`HELLOS_PER_INTERVAL`] outsiders
    /// (`outsiders`: connected peers outside our cluster).
    fn outsider_hello_ms(&self, outsiders: usize) -> u64 {
        self.cfg.hello_interval_ms * (outsiders as u64).div_ceil(HELLOS_PER_INTERVAL).max(1)
    }

    /// Greets a peer that just connected (first contact; `new`: it was not connected), with
    /// its schedule from now.
    pub(crate) fn greet(&mut self, id: NodeId, new: bool) {
        let base_ms = self.cfg.hello_interval_ms;
        let members_ms = base_ms * self.member_hello_intervals();
        let Some(p) = self.peers.get(&id) else { return };
        if new && !p.member {
            // Counted exactly at the next round; until then, each new outsider stretches the
            // interval announced to the next.
            self.outsiders_estimate += 1;
        }
        let outsiders_ms = self.outsider_hello_ms(self.outsiders_estimate);
        let ms = interval_for(p, members_ms, outsiders_ms, base_ms);
        let member = p.member;
        let now = self.now_ms;
        let mut hello = self.hello(!member);
        hello.hello_interval_ms = ms as u32;
        if let Some(p) = self.peers.get_mut(&id) {
            p.hello_due_ms = now + ms;
        }
        self.send(id, Body::Hello(hello));
    }

    /// Sends the hellos due: a round every `hello_interval_ms` greets each outsider whose
    /// announced interval runs out before the next round, and every outsider at once when this
    /// host bootstraps, leaves or joins a cluster (`last_hello_ms` cleared, or the cluster
    /// changed); all members every `member_hello_intervals` intervals, and at once when
    /// `last_member_hello_ms` was cleared (the VIP came or went). Only the leader lists the
    /// members, and only to outsiders: that is how other clusters' leaders learn of hosts they
    /// never heard (the site rule, `lease.rs`).
    pub(crate) fn maybe_hello(&mut self) {
        let base_ms = self.cfg.hello_interval_ms;
        let now = self.now_ms;
        let members_ms = base_ms * self.member_hello_intervals();
        let members_due = self
            .last_member_hello_ms
            .is_none_or(|t| now >= t + members_ms);
        let outsiders_now =
            self.last_hello_ms.is_none() || self.hello_cluster_id != self.cluster.cluster_id;
        let round = outsiders_now || self.last_hello_ms.is_none_or(|t| now >= t + base_ms);
        if !round && !members_due {
            return;
        }
        if members_due {
            self.last_member_hello_ms = Some(now);
            let mut light = self.hello(false);
            light.hello_interval_ms = members_ms as u32;
            let news = self.member_hello_sent.as_ref() != Some(&light);
            let partner_ms = self.raft_partner_window_ms(members_ms);
            let members: Vec<NodeId> = self
                .peers
                .iter_mut()
                .filter_map(|(id, p)| {
                    if !p.member {
                        p.member_hello_current = false;
                        return None;
                    }
                    if !news && p.member_hello_current && raft_partner(p, now, partner_ms) {
                        return None;
                    }
                    p.member_hello_current = true;
                    Some(*id)
                })
                .collect();
            for id in members {
                self.send(id, Body::Hello(light.clone()));
            }
            if news {
                self.member_hello_sent = Some(light);
            }
        }
        if !round {
            return;
        }
        self.last_hello_ms = Some(now);
        self.hello_cluster_id = self.cluster.cluster_id;
        let outsiders = self.connected_outsiders;
        debug_assert_eq!(
            outsiders,
            self.peers
                .values()
                .filter(|p| !p.member && p.connected)
                .count(),
            "the count of connected outsiders differs from a walk of the peer table"
        );
        self.outsiders_estimate = outsiders;
        if outsiders == 0 {
            // A formed site's members have none: no walk of the peer table for them.
            return;
        }
        let outsiders_ms = self.outsider_hello_ms(outsiders);
        let to = self.due_outsiders(outsiders_now, outsiders_ms);
        if to.is_empty() {
            return;
        }
        let mut hello = self.hello(self.is_leader());
        for (id, ms) in to {
            hello.hello_interval_ms = ms as u32;
            self.send(id, Body::Hello(hello.clone()));
        }
    }

    /// The outsiders this round greets (all of them if `all`), with the interval announced to
    /// each, their schedules moved on.
    fn due_outsiders(&mut self, all: bool, outsiders_ms: u64) -> Vec<(NodeId, u64)> {
        let now = self.now_ms;
        let base_ms = self.cfg.hello_interval_ms;
        let mut to = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            if p.member || !p.connected {
                continue;
            }
            // Sent at the last round before the announced interval runs out (half a round
            // early at most, so a schedule of whole rounds keeps its rounds).
            let due = now + base_ms / 2 >= p.hello_due_ms;
            if all || due {
                let ms = interval_for(p, 0, outsiders_ms, base_ms);
                p.hello_due_ms = now + ms;
                to.push((*id, ms));
            }
        }
        to
    }

    /// What this node tells its peers about itself; `with_members` adds the member ids. The
    /// caller sets the interval it announces.
    pub(crate) fn hello(&self, with_members: bool) -> Hello {
        Hello {
            name: self.cfg.name.clone(),
            address: self.cfg.address.clone(),
            cluster_id: self.cluster.cluster_id,
            member_count: self.cluster.members.len() as u32,
            leader_id: self.leader_id(),
            member_ids: if with_members {
                self.cluster.members.iter().map(|m| m.id).collect()
            } else {
                Vec::new()
            },
            public_key: self.cfg.public_key.clone(),
            locked: self.locked(),
            vip_held: self.lease.holding,
            formed: self.site_formed(),
            api_health: self.health.local as i32,
            agent_version: self.cfg.agent_version.clone(),
            protocol: self.own_protocol(),
            hello_interval_ms: self.cfg.hello_interval_ms as u32,
        }
    }

    /// Whether a peer counts as reachable: connected and heard from within its timeout
    /// ([`PeerTimeouts`]).
    pub fn reachable(&self, id: NodeId) -> bool {
        if id == self.cfg.id {
            return true;
        }
        self.peers.get(&id).is_some_and(|p| self.peer_reachable(p))
    }

    /// [`Node::reachable`] for a peer entry at hand (not ourselves), without looking it up.
    pub(crate) fn peer_reachable(&self, p: &Peer) -> bool {
        reachable_at(p, self.now_ms, self.peer_timeouts())
    }

    /// This node's reachability rule ([`PeerTimeouts`]), taken before the peer table is
    /// borrowed for an entry.
    pub(crate) fn peer_timeouts(&self) -> PeerTimeouts {
        PeerTimeouts {
            member_ms: self.cfg.peer_timeout_ms * self.member_hello_factor(),
            other_ms: self.cfg.peer_timeout_ms,
        }
    }

    /// How recent a member's last raft message must be for a member round to leave out a hello
    /// without news to it (`raft_partner`): the member interval, or a learner's heartbeat gap
    /// and one heartbeat interval if that is longer, so a learner that answers each heartbeat
    /// counts. Both together stay under the 3 s member timeout with the defaults (1.28 s + 1 s).
    pub(crate) fn raft_partner_window_ms(&self, members_ms: u64) -> u64 {
        members_ms.max(self.learner_heartbeat_gap_ms() + self.cfg.heartbeat_ms())
    }

    /// The longest interval the hellos of another cluster's connected leader announce (0 if
    /// none): how long news of the hosts it lists may take to come (the site lock, `lease.rs`).
    pub(crate) fn longest_leader_hello_ms(&self) -> u64 {
        let ours = self.cluster.cluster_id;
        self.peers
            .iter()
            .filter(|(_, p)| p.connected && !p.member)
            .filter(|(id, p)| {
                p.hello
                    .as_ref()
                    .is_some_and(|h| h.leader_id == **id && h.cluster_id != ours)
            })
            // Already capped at MAX_ANNOUNCED_HELLO_INTERVAL_MS when the hello arrived.
            .map(|(_, p)| u64::from(p.hello_interval_ms))
            .max()
            .unwrap_or(0)
    }
}

/// Whether `p` and this host exchanged raft messages within `window_ms`
/// ([`Node::raft_partner_window_ms`]): then it hears from this host without a hello, and a hello
/// saying nothing new can be left out.
///
/// A raft message from a member is an answer to one of ours or a request ours answer (leader
/// and follower or learner: heartbeats every probe, or every `LEARNER_HEARTBEAT_INTERVALS` for
/// learners, and their answers), so hearing one means ours reach it too. Members that exchange
/// no raft messages (two followers) keep their hellos. The receiver's timeout (3 s, or 3 of the
/// intervals last announced) is unchanged: when the raft messages stop, the next round greets
/// it again, within the window and a member interval of the last one. This takes the hellos
/// out of the idle traffic between a leader and its members (README, "Idle cost").
fn raft_partner(p: &Peer, now_ms: u64, window_ms: u64) -> bool {
    p.connected
        && p.raft_heard_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < window_ms)
}

/// The interval hellos to `p` go at now (and announce): the members' or the outsiders'; every
/// `base_ms` for an outsider whose hellos announce none (an agent from before the field times
/// outsiders out after its own `peer_timeout_ms`).
fn interval_for(p: &Peer, members_ms: u64, outsiders_ms: u64, base_ms: u64) -> u64 {
    if p.member {
        members_ms
    } else if p.hello.is_some() && p.hello_interval_ms == 0 {
        base_ms
    } else {
        outsiders_ms
    }
}
