//! Removing a host (`muster remove NODE`, invariant I5): asked of any member, carried out by the
//! leader.
//!
//! 1. The operator's request names a member (name or id). A follower forwards it to its leader
//!    (`RemoveRequest`, taken only from members); the leader proposes `RemoveMember`.
//! 2. Applying `RemoveMember` puts the host on the replicated deny list (`ClusterState.removed`,
//!    with its public key); a join request under that identity is refused for good. A removed
//!    host that applies the command itself stops taking part (phase `removed`, kept across
//!    restarts until `muster reset`).
//! 3. The leader then takes the host out of raft with a conf change — after the host has the
//!    command in its log or [`REMOVE_NOTICE_MS`] passed, so a live host learns it was removed
//!    (the append of the conf change carries the commit of the removal). From the moment that
//!    conf change applies, every member's transport refuses the identity at the connection
//!    ([`Output::Denied`](crate::Output::Denied)) and the core drops anything from it.
//!    A leader asked to remove itself hands leadership to another voter first; the new leader
//!    finishes. A removed voter leaves a voter short, and the leader's membership duties promote
//!    a caught-up learner (`replica.rs`).
//!
//! Called from `Node` (operator entry point, wire handler, apply) and `leader_duties`.

use muster_proto::envelope::Body;
use muster_proto::{Command, RemoveMember, RemoveRequest};

use crate::config::{format_id, parse_id, NodeId};
use crate::node::{Node, Output, Phase};
use crate::state;
use crate::storage::RaftStore;

/// The leader waits at most this long after applying a removal for the removed host to receive
/// it before taking the host out of raft.
pub const REMOVE_NOTICE_MS: u64 = 2_000;

/// A leader asked to remove itself retries the hand-over this often.
const SELF_REMOVAL_TRANSFER_RETRY_MS: u64 = 1_000;

/// Why a removal cannot be asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoveError {
    /// This host is in no cluster.
    #[error("this host is not a member of a cluster")]
    NotInCluster,
    /// No member has that name or id.
    #[error("no member named or with id {0:?}")]
    NotAMember(String),
    /// Several members have that name.
    #[error("{name:?} names several members ({}); give the id", .ids.iter().map(|i| format_id(*i)).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// The members with that name.
        ids: Vec<NodeId>,
    },
    /// The host is already removed.
    #[error("{0} is already removed")]
    AlreadyRemoved(String),
    /// There is no leader to carry it out now.
    #[error("no leader is known; try again once the cluster has one")]
    NoLeader,
    /// `--spare` needs a newer agent on every member.
    #[error("--spare needs every member's agent to support it: {0}; upgrade them first, or remove without --spare")]
    SpareNeedsNewerAgents(String),
    /// `--spare` names a host that cannot take the removed host's control-plane slot.
    #[error("{spare} cannot take the control-plane slot of {removed}: {reason}")]
    SpareRefused {
        /// The host removed.
        removed: String,
        /// The spare asked for.
        spare: String,
        /// Why not.
        reason: String,
    },
}

impl<S: RaftStore> Node<S> {
    /// Operator entry point: remove the member `who` (name or 16-hex-digit id). Proposed here if
    /// this host leads, else forwarded to the leader. Returns the outputs to carry out.
    /// With `spare`, that member takes the removed host's control-plane slot (checked here,
    /// applied with the removal: `plan::promote`) instead of the next host that joins.
    pub fn request_removal(
        &mut self,
        who: &str,
        spare: Option<&str>,
    ) -> Result<(crate::ActionTarget, Vec<Output>), RemoveError> {
        let ours = self.cluster.cluster_id;
        if ours == 0 || self.phase == Phase::Removed {
            return Err(RemoveError::NotInCluster);
        }
        let (id, name) = self.resolve_member(who)?;
        let spare_id = match spare {
            Some(s) => self.check_spare(id, &name, s)?,
            None => 0,
        };
        let leader = self.leader_id();
        if self.is_leader() {
            self.propose_removal(id, spare_id);
        } else if leader == 0 {
            return Err(RemoveError::NoLeader);
        } else {
            self.send(
                leader,
                Body::RemoveRequest(RemoveRequest {
                    cluster_id: ours,
                    node_id: id,
                    spare_id,
                }),
            );
        }
        tracing::info!(member = %format_id(id), %name, leader = %format_id(leader), "removal asked by an operator");
        Ok((
            crate::ActionTarget { id, name, leader },
            std::mem::take(&mut self.out),
        ))
    }

    /// The spare's id if removing `id` opens a control-plane slot it may take.
    fn check_spare(&self, id: NodeId, name: &str, spare: &str) -> Result<NodeId, RemoveError> {
        self.site_supports(crate::PROTOCOL_UPLOADS_AND_SPARES)
            .map_err(RemoveError::SpareNeedsNewerAgents)?;
        let (spare_id, spare_name) = self.resolve_member(spare)?;
        let refuse = |reason: &str| RemoveError::SpareRefused {
            removed: name.into(),
            spare: spare_name.clone(),
            reason: reason.into(),
        };
        let plan = self
            .cluster
            .plan
            .as_ref()
            .ok_or_else(|| refuse("there is no join plan yet"))?;
        let (Some(gone), Some(m)) = (
            state::member(&self.cluster, id),
            state::member(&self.cluster, spare_id),
        ) else {
            return Err(refuse("not a member"));
        };
        if spare_id == id {
            return Err(refuse("it is the host being removed"));
        }
        let mut probe = plan.clone();
        crate::plan::apply_removed(&mut probe, gone);
        if crate::plan::open_control_plane_slots(&probe) == 0 {
            return Err(refuse("the removal opens no control-plane slot (the host is a worker, or the control plane is not short)"));
        }
        if !crate::plan::promote(&mut probe, m) {
            return Err(refuse("it is pinned to workers, or its step already started (a step that started keeps its role)"));
        }
        Ok(spare_id)
    }

    fn resolve_member(&self, who: &str) -> Result<(NodeId, String), RemoveError> {
        let removed = |id: NodeId| self.cluster.removed.iter().any(|r| r.id == id);
        if let Some(id) = parse_id(who) {
            if let Some(m) = state::member(&self.cluster, id) {
                if removed(id) {
                    return Err(RemoveError::AlreadyRemoved(who.into()));
                }
                return Ok((m.id, m.name.clone()));
            }
        }
        let named: Vec<NodeId> = self
            .cluster
            .members
            .iter()
            .filter(|m| m.name == who)
            .map(|m| m.id)
            .collect();
        match named.as_slice() {
            [] if self.cluster.removed.iter().any(|r| r.name == who) => {
                Err(RemoveError::AlreadyRemoved(who.into()))
            }
            [] => Err(RemoveError::NotAMember(who.into())),
            [id] if removed(*id) => Err(RemoveError::AlreadyRemoved(who.into())),
            [id] => Ok((*id, who.into())),
            ids => Err(RemoveError::Ambiguous {
                name: who.into(),
                ids: ids.to_vec(),
            }),
        }
    }

    /// Leader only: proposes the removal of member `id` (once; a repeat changes nothing).
    fn propose_removal(&mut self, id: NodeId, spare_id: NodeId) {
        if self.cluster.removed.iter().any(|r| r.id == id) {
            return;
        }
        self.propose_command(Command {
            kind: Some(muster_proto::command::Kind::RemoveMember(RemoveMember {
                id,
                unix_ms: self.unix_ms,
                spare_id,
            })),
        });
    }

    /// A member forwarded an operator's removal to us.
    pub(crate) fn on_remove_request(&mut self, from: NodeId, r: RemoveRequest) {
        let ours = self.cluster.cluster_id;
        if ours == 0 || r.cluster_id != ours || state::member(&self.cluster, from).is_none() {
            self.drops
                .note("removal request from a non-member", from, self.now_ms);
            return;
        }
        if !self.is_leader() {
            self.drops.note(
                "removal request to a host that is not the leader",
                from,
                self.now_ms,
            );
            return;
        }
        if state::member(&self.cluster, r.node_id).is_some() {
            tracing::info!(member = %format_id(r.node_id), by = %format_id(from), "removal forwarded by a member");
            let spare = match (
                r.spare_id,
                self.site_supports(crate::PROTOCOL_UPLOADS_AND_SPARES),
            ) {
                (0, _) => 0,
                (s, Ok(())) => s,
                (_, Err(behind)) => {
                    tracing::warn!(%behind, "a forwarded removal names a spare, but not every member's agent applies that; removing without it");
                    0
                }
            };
            self.propose_removal(r.node_id, spare);
        }
    }

    /// Whether `id` is on the deny list.
    pub(crate) fn is_removed(&self, id: NodeId) -> bool {
        self.cluster.removed.iter().any(|r| r.id == id)
    }

    /// Whether `id` is refused outright: removed and already out of raft. Until the conf change
    /// that takes it out applies, a removed host still talks raft, so it learns of its removal.
    pub(crate) fn is_refused(&self, id: NodeId) -> bool {
        self.is_removed(id) && state::member(&self.cluster, id).is_none()
    }

    /// The removed hosts the transport must refuse now (out of raft already).
    pub(crate) fn refused_hosts(&self) -> Vec<muster_proto::Removed> {
        self.cluster
            .removed
            .iter()
            .filter(|r| state::member(&self.cluster, r.id).is_none())
            .cloned()
            .collect()
    }

    /// After applying: a host that finds itself removed stops taking part.
    pub(crate) fn check_removed_self(&mut self) {
        if self.phase != Phase::Removed && self.is_removed(self.cfg.id) {
            tracing::warn!(
                cluster = %format_id(self.cluster.cluster_id),
                "this host was removed from its cluster; it takes part in nothing until `muster reset`"
            );
            if self.lease.holding {
                self.lease.holding = false;
                self.out.push(Output::EndpointRelease);
            }
            self.raw = None;
            self.phase = Phase::Removed;
            self.membership_replaced();
        }
    }

    /// Leader only: takes removed hosts out of raft, one conf change at a time; hands leadership
    /// over first if this host is the one removed. Returns whether a change was proposed.
    pub(crate) fn removal_duties(&mut self) -> bool {
        let now = self.now_ms;
        let pending: Vec<(NodeId, u64)> = self
            .cluster
            .removed
            .iter()
            .filter(|r| state::member(&self.cluster, r.id).is_some())
            .map(|r| (r.id, r.index))
            .collect();
        if pending.is_empty() {
            self.removal_seen_ms.clear();
            return false;
        }
        for (id, index) in pending {
            let seen = *self.removal_seen_ms.entry(id).or_insert(now);
            if id == self.cfg.id {
                let due = self
                    .self_removal_transfer_ms
                    .is_none_or(|t| now >= t + SELF_REMOVAL_TRANSFER_RETRY_MS);
                if due {
                    self.self_removal_transfer_ms = Some(now);
                    match self.transfer_leadership(None) {
                        Ok((to, outputs)) => {
                            tracing::info!(to = %format_id(to), "removed by an operator: handing leadership over first");
                            self.out.extend(outputs);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "removed by an operator but cannot hand leadership over yet")
                        }
                    }
                }
                continue;
            }
            let Some(raw) = self.raw.as_ref() else {
                return false;
            };
            if raw.raft.has_pending_conf() {
                return true;
            }
            let noticed = raw.raft.prs().get(id).is_none_or(|p| p.matched >= index);
            if noticed || now >= seen + REMOVE_NOTICE_MS {
                if let Some(m) = state::member(&self.cluster, id).cloned() {
                    self.propose_member_removal(m);
                    return true;
                }
            }
        }
        false
    }
}
