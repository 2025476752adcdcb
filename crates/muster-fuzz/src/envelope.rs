//! Envelopes from peers into `Node::handle`: the path every byte a connected host sends takes.
//!
//! A three-host site is formed once per process over `muster_core::testnet` ([`Site`]); the
//! store of one follower is kept. Each input boots a fresh node from a copy of that store (so
//! inputs never depend on each other and a crash replays from its file alone), connects the
//! members and an outsider, hands it one real heartbeat from the leader so it follows the leader
//! in its term, then delivers the input's records (see `frames.rs`), each decoded as an
//! `Envelope` as the agent does (undecodable records are dropped there too), with a 10 ms tick
//! after each. Invariants: `handle` never fails on an outsider's input and leaves the cluster
//! id, the replicated state and the commit index as they were; a member's input may change
//! them, and may stop the node only through `CoreError::Apply` (a committed entry the members
//! replicated does not apply: members are trusted, and the node stops by design rather than
//! diverge), never through any other error.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use muster_core::testnet::TestNet;
use muster_core::{CoreError, Input, MemStore, Node, NodeConfig, NodeId};
use muster_proto::envelope::Body;
use muster_proto::{ClusterState, Envelope, RaftMessage};
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};

use crate::frames::Frames;

/// Seed of the site formed once per process (fixed: the corpus names its ids).
pub const SITE_SEED: u64 = 8;
/// Seed of every node booted from the kept store.
const NODE_SEED: u64 = 7;
/// Virtual time between two delivered records.
const TICK_MS: u64 = 10;

/// A formed site's follower, kept as its config and store, and what it knows of its site.
pub struct Site {
    /// The follower's config.
    pub cfg: NodeConfig,
    /// The follower's store when the site had formed.
    pub disk: MemStore,
    /// Every member id, the follower's included.
    pub members: Vec<NodeId>,
    /// The leader when the store was kept.
    pub leader: NodeId,
    /// The leader's term.
    pub term: u64,
    /// The follower's commit index.
    pub commit: u64,
    /// The cluster id.
    pub cluster_id: u64,
    /// A host that holds the site key but was never admitted.
    pub outsider: NodeId,
    /// Virtual time the node is booted at.
    pub now_ms: u64,
}

impl Site {
    /// The site, formed on first use.
    pub fn get() -> &'static Site {
        static SITE: OnceLock<Site> = OnceLock::new();
        SITE.get_or_init(form)
    }

    /// The follower's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// Members other than the follower, the leader first.
    pub fn other_members(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = vec![self.leader];
        v.extend(
            self.members
                .iter()
                .filter(|m| **m != self.leader && **m != self.cfg.id),
        );
        v
    }

    /// A raft message from the leader to the follower, in the leader's term, as an envelope.
    pub fn raft_envelope(&self, m: &Message) -> Envelope {
        Envelope {
            body: Some(Body::Raft(RaftMessage {
                cluster_id: self.cluster_id,
                message: m.write_to_bytes().expect("raft-rs encodes its own message"),
            })),
        }
    }

    /// A heartbeat as the leader sends it.
    pub fn heartbeat(&self) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = self.leader;
        m.to = self.cfg.id;
        m.term = self.term;
        m.commit = self.commit;
        m
    }

    /// Boots a fresh node from the kept store, connected to the members and the outsider and
    /// following the leader.
    pub fn boot(&self) -> Node<MemStore> {
        let mut node = Node::new(self.cfg.clone(), self.disk.clone(), NODE_SEED)
            .expect("a formed store restarts");
        let t = self.now_ms;
        let peers = self.other_members().into_iter().chain([self.outsider]);
        let inputs = [Input::Tick {
            now_ms: t,
            unix_ms: t,
        }]
        .into_iter()
        .chain(peers.map(|id| Input::PeerConnected { id }))
        .chain([Input::Message {
            from: self.leader,
            envelope: self.raft_envelope(&self.heartbeat()),
        }]);
        for input in inputs {
            node.handle(input).expect("boot inputs are handled");
        }
        node
    }
}

fn form() -> Site {
    let n = 3;
    let mut net = TestNet::new(SITE_SEED);
    let ids: Vec<NodeId> = (0..n)
        .map(|i| {
            net.add_host(&format!("h{i}"), |c| {
                c.expected_nodes = n;
                c.vip = true;
            })
        })
        .collect();
    for id in &ids {
        net.start(*id);
    }
    let want: BTreeSet<NodeId> = ids.iter().copied().collect();
    let formed = net.run_until(30_000, |net| {
        net.formed(&want, n) && ids.iter().all(|id| net.node(*id).site_formed())
    });
    assert!(formed.is_some(), "the fixture site forms");
    net.run_for(200);
    let leader = net.node(ids[0]).leader_id();
    let follower = *ids.iter().find(|id| **id != leader).expect("a follower");
    let status = net.node(follower).status();
    let cluster_id = net.node(follower).cluster_id();
    let (outsider, _) = net.add_adversary(None);
    net.crash(follower);
    let host = &net.hosts[&follower];
    Site {
        cfg: host.cfg.clone(),
        disk: host.disk.clone(),
        members: ids,
        leader,
        term: status.term,
        commit: status.commit_index,
        cluster_id,
        outsider,
        now_ms: net.now_ms,
    }
}

/// Forms the site now (AFL forks after this, so each child starts with it).
pub fn warm_up() {
    let _ = Site::get();
}

/// What an operator checks has not moved.
#[derive(Debug, PartialEq)]
struct Seen {
    cluster_id: u64,
    state: ClusterState,
    commit: u64,
}

fn seen(node: &Node<MemStore>) -> Seen {
    Seen {
        cluster_id: node.cluster_id(),
        state: node.cluster_state().clone(),
        commit: node.status().commit_index,
    }
}

/// Delivers the records of `data` from `from`; stops at the first error and returns it.
fn deliver(
    site: &Site,
    node: &mut Node<MemStore>,
    from: NodeId,
    data: &[u8],
) -> Result<(), CoreError> {
    let mut t = site.now_ms;
    for record in Frames::new(data) {
        if let Ok(envelope) = Envelope::decode(record) {
            node.handle(Input::Message { from, envelope })?;
        }
        t += TICK_MS;
        node.handle(Input::Tick {
            now_ms: t,
            unix_ms: t,
        })?;
    }
    Ok(())
}

/// Envelopes from a host that holds the site key but is no member: never an error, and the
/// cluster id, replicated state and commit index stay as they were.
pub fn envelope_from_outsider(data: &[u8]) {
    let site = Site::get();
    let mut node = site.boot();
    let before = seen(&node);
    if let Err(e) = deliver(site, &mut node, site.outsider, data) {
        panic!("an outsider's envelope made handle fail: {e}");
    }
    assert_eq!(
        seen(&node),
        before,
        "an outsider changed the cluster id, state or commit"
    );
}

/// Envelopes from a member (the first byte picks which: the leader or the other follower):
/// never an error other than `CoreError::Apply`, never a panic; a member-sent input that keeps
/// the node running leaves it in its cluster.
pub fn envelope_from_member(data: &[u8]) {
    let Some((pick, rest)) = data.split_first() else {
        return;
    };
    let site = Site::get();
    let members = site.other_members();
    let from = members[usize::from(*pick) % members.len()];
    let mut node = site.boot();
    match deliver(site, &mut node, from, rest) {
        Ok(()) => assert_eq!(
            node.cluster_id(),
            site.cluster_id,
            "a formed site's member left its cluster"
        ),
        Err(CoreError::Apply(_)) => {}
        Err(e) => panic!("a member's envelope made handle fail: {e}"),
    }
}
