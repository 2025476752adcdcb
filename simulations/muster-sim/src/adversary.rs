//! The adversary model: identities that hold the site key but are never admitted (`[adversary]`
//! in a scenario). They are on the LAN of every host (they connect to each host that is up,
//! again after each of its boots, whatever the partitions), see every host's state (an
//! omniscient attacker picks the most damaging values: the victim's real cluster id, term and
//! commit), and every `interval_ms` each sends one crafted message to a random up host:
//!
//! - raft messages of the victim's cluster of any type — proposals, appends with garbage entries,
//!   heartbeats, snapshots with made-up state, TimeoutNow, ReadIndexResp, votes — with the
//!   victim's term, a little above it, or near 2^62, from itself or claiming a member's id;
//! - random bytes where a raft message belongs;
//! - hellos that lie: a bigger (formed, locked) cluster, made-up member lists, a squatter's
//!   "in no cluster yet" with the lowest id (`squat_lowest_id`);
//! - join requests whose member does not match its key, and forged join responses.
//!
//! Messages hosts send to an adversary are dropped (it learns by looking instead). The checker
//! gets one more invariant, I5: no host ever follows an adversary as leader or lists one as a
//! member (`Sim::check_isolation`).

use muster_proto::envelope::Body;
use muster_proto::{Envelope, Hello, JoinRequest, JoinResponse, Member, RaftMessage};
use protobuf::Message as _;
use raft::prelude::{Entry, EntryType, Message, MessageType};
use rand::Rng;

use crate::sim::{Ev, Sim};

/// One adversary identity.
#[derive(Debug, Clone)]
pub struct Adversary {
    /// Its node id (from its public key).
    pub id: u64,
    /// Its ed25519 public key (random bytes: it never has to sign anything here).
    pub public_key: Vec<u8>,
    /// Whether it squats the lowest id.
    pub squatter: bool,
    /// The incarnation of each host it last connected to (0 = never).
    connected_inc: Vec<u32>,
}

/// Every raft message type, for the adversary to pick from.
const TYPES: [MessageType; 19] = [
    MessageType::MsgHup,
    MessageType::MsgBeat,
    MessageType::MsgPropose,
    MessageType::MsgAppend,
    MessageType::MsgAppendResponse,
    MessageType::MsgRequestVote,
    MessageType::MsgRequestVoteResponse,
    MessageType::MsgSnapshot,
    MessageType::MsgHeartbeat,
    MessageType::MsgHeartbeatResponse,
    MessageType::MsgUnreachable,
    MessageType::MsgSnapStatus,
    MessageType::MsgCheckQuorum,
    MessageType::MsgTransferLeader,
    MessageType::MsgTimeoutNow,
    MessageType::MsgReadIndex,
    MessageType::MsgReadIndexResp,
    MessageType::MsgRequestPreVote,
    MessageType::MsgRequestPreVoteResponse,
];

impl Adversary {
    /// Adversary `k` of a site of `hosts` hosts whose ids are `taken`.
    pub fn new(rng: &mut impl Rng, k: usize, squat: bool, hosts: usize, taken: &[u64]) -> Self {
        loop {
            let mut pk = [0u8; 32];
            rng.fill(&mut pk[..]);
            if squat && k == 0 {
                // Below every host id (ids are the first 8 bytes, big endian).
                pk[..8].copy_from_slice(&2u64.to_be_bytes());
            }
            let id = muster_core::node_id_from_public_key(&pk);
            if !taken.contains(&id) {
                return Adversary {
                    id,
                    public_key: pk.to_vec(),
                    squatter: squat && k == 0,
                    connected_inc: vec![0; hosts],
                };
            }
        }
    }
}

impl Sim {
    /// Schedules the first act of every adversary.
    pub(crate) fn schedule_adversaries(&mut self) {
        let every = self.scenario.adversary.interval_ms.max(1);
        for k in 0..self.adversaries.len() {
            let at = self.rng.random_range(0..every);
            self.q.push(at, Ev::Adversary(k as u32));
        }
    }

    /// Adversary `k` acts once, then again after `interval_ms`.
    pub(crate) fn adversary_act(&mut self, k: usize) {
        let every = self.scenario.adversary.interval_ms.max(1);
        self.q.push(self.now_ms + every, Ev::Adversary(k as u32));
        let up: Vec<usize> = (0..self.hosts.len()).filter(|&i| self.is_up(i)).collect();
        if up.is_empty() {
            return;
        }
        let victim = up[self.rng.random_range(0..up.len())];
        self.adversary_connect(k, victim);
        let envelope = self.craft(k, victim);
        let from = self.adversaries[k].id;
        self.net.stats.adversary_sent += 1;
        self.input(victim, muster_core::Input::Message { from, envelope });
    }

    /// Connects adversary `k` to `victim` unless connected to its current incarnation.
    fn adversary_connect(&mut self, k: usize, victim: usize) {
        let inc = self.hosts[victim].inc;
        if self.adversaries[k].connected_inc[victim] != inc {
            self.adversaries[k].connected_inc[victim] = inc;
            let id = self.adversaries[k].id;
            self.input(victim, muster_core::Input::PeerConnected { id });
        }
    }

    fn craft(&mut self, k: usize, victim: usize) -> Envelope {
        let adv = self.adversaries[k].clone();
        let body = if adv.squatter && self.rng.random_bool(0.5) {
            Body::Hello(self.lying_hello(&adv, victim, true))
        } else {
            match self.rng.random_range(0..10) {
                0..=4 => Body::Raft(self.forged_raft(&adv, victim)),
                5 => Body::Raft(RaftMessage {
                    cluster_id: self.victim_cluster(victim),
                    message: (0..self.rng.random_range(0..64))
                        .map(|_| self.rng.random())
                        .collect(),
                }),
                6 | 7 => Body::Hello(self.lying_hello(&adv, victim, false)),
                8 => Body::JoinRequest(self.bad_join(&adv, victim)),
                _ => Body::JoinResponse(JoinResponse {
                    cluster_id: self.victim_cluster(victim),
                    accepted: true,
                    leader_id: adv.id,
                    reason: "forged".into(),
                }),
            }
        };
        Envelope { body: Some(body) }
    }

    fn victim_cluster(&self, victim: usize) -> u64 {
        self.hosts[victim]
            .node
            .as_ref()
            .map_or(0, |n| n.cluster_id())
    }

    fn forged_raft(&mut self, adv: &Adversary, victim: usize) -> RaftMessage {
        let (cluster, status, members) = match self.hosts[victim].node.as_ref() {
            Some(n) => (
                n.cluster_id(),
                n.status(),
                n.cluster_state()
                    .members
                    .iter()
                    .map(|m| m.id)
                    .collect::<Vec<_>>(),
            ),
            None => return RaftMessage::default(),
        };
        let mut m = Message::default();
        m.set_msg_type(TYPES[self.rng.random_range(0..TYPES.len())]);
        m.to = self.hosts[victim].id;
        // Usually from itself; sometimes claiming to be a member (forged ids).
        m.from = if !members.is_empty() && self.rng.random_bool(0.2) {
            members[self.rng.random_range(0..members.len())]
        } else {
            adv.id
        };
        m.term = match self.rng.random_range(0..4) {
            0 => status.term,
            1 => status.term + self.rng.random_range(1..5),
            2 => (1 << 62) + self.rng.random_range(0..16),
            _ => self.rng.random_range(0..status.term.max(1) + 2),
        };
        m.log_term = m.term;
        m.index = status.commit_index + self.rng.random_range(0..8);
        m.commit = status.commit_index + self.rng.random_range(0..1_000);
        m.reject = self.rng.random_bool(0.3);
        m.context = if self.rng.random_bool(0.5) {
            raft::CAMPAIGN_TRANSFER.to_vec().into()
        } else {
            Vec::<u8>::new().into()
        };
        for i in 0..self.rng.random_range(0..3) {
            let mut e = Entry::default();
            e.set_entry_type(match self.rng.random_range(0..3) {
                0 => EntryType::EntryNormal,
                1 => EntryType::EntryConfChange,
                _ => EntryType::EntryConfChangeV2,
            });
            e.term = m.term;
            e.index = m.index + 1 + i;
            e.data = (0..self.rng.random_range(0..32))
                .map(|_| self.rng.random())
                .collect::<Vec<u8>>()
                .into();
            m.mut_entries().push(e);
        }
        if m.get_msg_type() == MessageType::MsgSnapshot {
            let term = m.term;
            let s = m.mut_snapshot();
            s.data = vec![0xff; 8].into();
            let md = s.mut_metadata();
            md.index = status.commit_index + 100;
            md.term = term;
            md.mut_conf_state().voters = vec![adv.id];
        }
        RaftMessage {
            cluster_id: cluster,
            message: m.write_to_bytes().unwrap_or_default(),
        }
    }

    fn lying_hello(&mut self, adv: &Adversary, victim: usize, squat: bool) -> Hello {
        let (cluster, members) = if squat {
            (0, 0)
        } else if self.rng.random_bool(0.5) {
            (
                self.victim_cluster(victim),
                self.rng.random_range(0..10_000),
            )
        } else {
            (self.rng.random(), self.rng.random_range(0..10_000))
        };
        let member_ids = (0..self.rng.random_range(0..64))
            .map(|_| self.rng.random())
            .collect();
        Hello {
            name: format!("adv{}", adv.id % 1000),
            address: "10.77.250.250:7946".into(),
            cluster_id: cluster,
            member_count: members,
            leader_id: if cluster == 0 { 0 } else { adv.id },
            member_ids,
            public_key: adv.public_key.clone(),
            locked: true,
            vip_held: self.rng.random_bool(0.5),
            formed: cluster != 0,
            api_health: self.rng.random_range(0..3),
            agent_version: String::new(),
            protocol: muster_core::PROTOCOL,
            // Claims it stays reachable for up to days while silent (receivers believe at most
            // `MAX_ANNOUNCED_HELLO_INTERVAL_MS`).
            hello_interval_ms: self.rng.random_range(0..=u32::MAX),
        }
    }

    fn bad_join(&mut self, adv: &Adversary, victim: usize) -> JoinRequest {
        // Never a valid request for itself: one would be admitted (holding the site key, it may
        // join) and then it is a member, not an outsider. Its member names another key.
        let mut wrong_key = adv.public_key.clone();
        wrong_key[31] ^= 0xff;
        wrong_key[0] ^= 0x80;
        JoinRequest {
            cluster_id: self.victim_cluster(victim),
            member: Some(Member {
                id: adv.id,
                name: "adv".into(),
                address: "10.77.250.250:7946".into(),
                voter: true,
                joined_unix_ms: 0,
                public_key: wrong_key,
                ..Default::default()
            }),
        }
    }

    /// I5: no up host follows an adversary or lists one as a member.
    pub(crate) fn check_isolation(&mut self) {
        if self.adversaries.is_empty() {
            return;
        }
        let t = self.now_ms;
        let mut found = Vec::new();
        for h in &self.hosts {
            let Some(n) = h.node.as_ref() else { continue };
            for a in &self.adversaries {
                if n.leader_id() == a.id {
                    found.push(format!("{} follows adversary {:016x}", h.name, a.id));
                }
                if n.cluster_state().members.iter().any(|m| m.id == a.id) {
                    found.push(format!(
                        "{} lists adversary {:016x} as a member",
                        h.name, a.id
                    ));
                }
            }
        }
        self.checker.counts.i5_isolation += 1;
        for detail in found {
            self.checker.violate(t, "I5", detail);
        }
    }
}
