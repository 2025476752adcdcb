//! When a cluster becomes the site: the lock, the formed record, and what a formed site does when
//! it meets another (invariant I1).
//!
//! Two replicated commands, both proposed by the leader:
//!
//! 1. `LockSite`, once at least `expected_nodes` members answer the leader's raft (this leader
//!    and the members heard from within a learner's heartbeat interval plus an election timeout,
//!    `Node::fresh_members`; the
//!    membership alone is not enough: a host admitted while it was joining another cluster may
//!    never come, and a cluster locked counting it could neither form nor merge) — at once unless
//!    this host has itself heard from at least 2 × `expected_nodes` hosts (only then can a better
//!    cluster exist); then once discovery has settled (no visible cluster outranks ours, and every
//!    host heard of is a member or none was new for the site rule's settle time), at most
//!    [`LOCK_DEFER_MAX_MS`] after the membership reached `expected_nodes`, whatever peers claim.
//!    A host whose log holds this entry (persisted before it acknowledged it, or applied) is
//!    *locked*: it never dissolves its cluster again, whatever any peer says.
//! 2. `SiteFormed`, once at least `expected_nodes` members hold the lock entry — the leader reads
//!    that from its progress tracker (`matched ≥ lock index`: each of them persisted the entry
//!    before acknowledging it). From then on the cluster is the site; its leader's right to the
//!    VIP rests on its own membership and quorum (`lease.rs`), and the join plan may start.
//!
//! **At most one formed cluster with fewer than 2 × `expected_nodes` hosts.** A formed cluster has
//! at least `expected_nodes` locked hosts. A locked host never dissolves, and a host takes part in
//! one raft group at a time (joining another needs dissolving, which wipes its log), so the locked
//! hosts of two formed clusters are disjoint: two formed clusters need at least 2 ×
//! `expected_nodes` hosts. The two phases matter: a lock entry committed by a majority of voters
//! is not yet held by every member; a member that dissolved before receiving it may be counted in
//! another cluster, so only hosts whose logs hold the entry count. (A lock entry that a new
//! leader truncates before it commits leaves its holders locked to a cluster that is not yet
//! formed; they stay in it, which costs a merge, never safety.)
//!
//! With more hosts, two groups can each form. When a formed cluster hears of another formed
//! cluster on its LAN, both stay (neither can tell which one the operator meant) and both say so
//! in status (`site_conflict`) and in logs.
//!
//! Called from `Node::handle` through `leader_duties` (proposals) and `on_hello` (conflicts).

use muster_proto::command::Kind;
use muster_proto::{Command, LockSite, SiteFormed};
use prost::Message as _;

use crate::config::{format_id, NodeId};
use crate::node::Node;
use crate::state;
use crate::storage::RaftStore;

/// Longest a leader defers the lock once its membership reached `expected_nodes` because
/// discovery has not settled (another cluster seems to outrank ours, or new hosts keep being
/// heard of). Bounds what lying peers can hold formation up by.
pub const LOCK_DEFER_MAX_MS: u64 = 10_000;

/// A proposal of the lock or formed command not applied within this time is proposed again
/// (proposals are dropped during leader changes).
const SITE_PROPOSAL_RETRY_MS: u64 = 2_000;

/// A conflict report stays in status this long after the other formed cluster was last heard of.
const CONFLICT_SHOWN_MS: u64 = 30_000;

/// The lock/formed bookkeeping of one node.
#[derive(Debug, Clone, Default)]
pub(crate) struct SiteState {
    /// A `LockSite` entry of our current raft group is in our durable log.
    pub lock_in_log: bool,
    /// When the leader last proposed the lock / formed command.
    pub lock_proposed_ms: Option<u64>,
    pub formed_proposed_ms: Option<u64>,
    /// When the membership was first seen at `expected_nodes` or more while unlocked (leader).
    pub lock_ready_since_ms: Option<u64>,
    /// Last time another formed cluster was heard of, and what was seen.
    pub conflict: Option<(u64, String)>,
}

/// Whether entry data is a `LockSite` command.
pub(crate) fn is_lock_entry(data: &[u8]) -> bool {
    matches!(
        state::decode_command(data),
        Some(Ok(Command {
            kind: Some(Kind::LockSite(_))
        }))
    )
}

impl<S: RaftStore> Node<S> {
    /// Whether this host never dissolves its cluster: its log holds the cluster's lock entry.
    pub fn locked(&self) -> bool {
        self.cluster.locked || self.site.lock_in_log
    }

    /// Whether this host's cluster is recorded formed.
    pub fn site_formed(&self) -> bool {
        state::formed(&self.cluster)
    }

    /// Leader only: proposes the lock, then the formed record, when their conditions hold.
    pub(crate) fn site_duties(&mut self) {
        if !self.is_leader() {
            self.site.lock_proposed_ms = None;
            self.site.formed_proposed_ms = None;
            self.site.lock_ready_since_ms = None;
            return;
        }
        if self.site_formed() {
            return;
        }
        let now = self.now_ms;
        let retry_due = |t: Option<u64>| t.is_none_or(|t| now >= t + SITE_PROPOSAL_RETRY_MS);
        if !self.cluster.locked {
            if self.lock_ready() && retry_due(self.site.lock_proposed_ms) {
                self.site.lock_proposed_ms = Some(now);
                let members = self.cluster.members.len() as u32;
                tracing::info!(members, "proposing to lock the site");
                self.propose_command(Command {
                    kind: Some(Kind::LockSite(LockSite {
                        member_count: members,
                    })),
                });
            }
            return;
        }
        let holders = self.lock_holders();
        if holders.len() >= self.site_quorum() && retry_due(self.site.formed_proposed_ms) {
            self.site.formed_proposed_ms = Some(now);
            tracing::info!(
                holders = holders.len(),
                "every expected host holds the lock: proposing the site formed"
            );
            self.propose_command(Command {
                kind: Some(Kind::SiteFormed(SiteFormed {
                    members: holders,
                    unix_ms: self.unix_ms,
                })),
            });
        }
    }

    /// Whether the leader may lock now (module docs).
    fn lock_ready(&mut self) -> bool {
        let members = self.cluster.members.len();
        // Counted are the members that answer this leader's raft, not the membership: a host
        // admitted while it was joining another cluster may never come, and a cluster locked
        // with it would wait for it forever, never formed and never merging.
        // Learners answer heartbeats only every `LEARNER_HEARTBEAT_INTERVALS` (timers.rs).
        let window =
            self.learner_heartbeat_gap_ms() + self.cfg.election_ticks as u64 * self.cfg.tick_ms;
        if self.fresh_members(window) < self.site_quorum() {
            self.site.lock_ready_since_ms = None;
            return false;
        }
        if self.cluster.start_requested {
            // The operator's call (`muster plan start`): go ahead with the members there are.
            return true;
        }
        let since = *self.site.lock_ready_since_ms.get_or_insert(self.now_ms);
        if self.now_ms >= since + LOCK_DEFER_MAX_MS {
            return true;
        }
        // A better cluster than one with `expected_nodes` members can exist only on a LAN with
        // at least twice that many hosts: unless this host has heard that many itself (hello
        // senders; member lists in hellos do not count), claims of one are not waited for.
        let heard = 1 + self.peers.values().filter(|p| p.hello.is_some()).count();
        if heard < 2 * self.cfg.expected_nodes {
            return true;
        }
        let better_visible = self.peers.iter().any(|(id, p)| {
            self.reachable(*id)
                && self.trusted(*id)
                && p.hello.as_ref().is_some_and(|h| self.outranks_ours(h))
        });
        let complete = members >= self.known_hosts.len();
        !better_visible && (complete || self.knowledge_settled())
    }

    /// Members the site needs to lock and form: `expected_nodes`, or any after an operator's
    /// `muster plan start` (the operator vouches that no other cluster forms on this site).
    fn site_quorum(&self) -> usize {
        if self.cluster.start_requested {
            1
        } else {
            self.cfg.expected_nodes
        }
    }

    /// Members whose logs hold the lock entry, as the leader's progress tracker says.
    fn lock_holders(&self) -> Vec<NodeId> {
        let Some(raw) = self.raw.as_ref() else {
            return Vec::new();
        };
        let lock_index = self.cluster.lock_index;
        self.cluster
            .members
            .iter()
            .map(|m| m.id)
            .filter(|id| {
                raw.raft
                    .prs()
                    .get(*id)
                    .is_some_and(|p| p.matched >= lock_index)
            })
            .collect()
    }

    /// Proposes a replicated command (leader only; a dropped proposal is retried by its caller).
    pub(crate) fn propose_command(&mut self, cmd: Command) {
        let Some(raw) = self.raw.as_mut() else { return };
        if let Err(e) = raw.propose(Vec::new(), cmd.encode_to_vec()) {
            tracing::debug!(error = %e, "proposal dropped; will retry");
        }
    }

    /// A hello from `from` names another cluster that says it is formed while ours is: two sites
    /// on one LAN (or a split that formed twice). Both stay; operators are told.
    pub(crate) fn note_site_conflict(&mut self, from: NodeId, h: &muster_proto::Hello) {
        if !self.site_formed() || !h.formed || h.cluster_id == 0 {
            return;
        }
        if h.cluster_id == self.cluster.cluster_id {
            return;
        }
        let what = format!(
            "another formed cluster {} ({} members, heard from {} {}) is on this LAN; both stay formed — check that both sites were meant to share it",
            format_id(h.cluster_id),
            h.member_count,
            h.name,
            format_id(from)
        );
        let new = self.site.conflict.as_ref().is_none_or(|(_, w)| *w != what);
        if new {
            tracing::error!(
                ours = %format_id(self.cluster.cluster_id),
                other = %format_id(h.cluster_id),
                peer = %format_id(from),
                "two formed clusters on one LAN: {what}"
            );
        }
        self.site.conflict = Some((self.now_ms, what));
    }

    /// The conflict to show in status, if one was heard of recently.
    pub(crate) fn site_conflict(&self) -> String {
        match &self.site.conflict {
            Some((t, what)) if self.now_ms < t + CONFLICT_SHOWN_MS => what.clone(),
            _ => String::new(),
        }
    }
}
