//! The API endpoint follows a healthy API server (issue: join order, "Health gate"): the
//! endpoint (VIP or DNS name) is held by the raft leader, so a leader whose local API server
//! stays unhealthy while another control-plane host's is healthy hands leadership to that host.
//!
//! The agent probes its host's health gate (`health_url` / `health_command`) and reports each
//! change as [`Input::LocalHealth`](crate::Input::LocalHealth); every host tells its peers its
//! last result in its hellos (`Hello.api_health`). The leader hands over when:
//! - its own API server has been unhealthy for [`HANDOVER_AFTER_MS`] without a break, or it runs
//!   no control plane at all (its step is a worker's, or it has none: a learner promoted to
//!   voter after a control-plane host was removed) for as long;
//! - a voter whose step in the plan is a control-plane one (init or control-plane) and has
//!   succeeded is reachable and its last hello said healthy — or, for a leader with no control
//!   plane at all, said nothing of its health (a site without health gates) — the most
//!   caught-up such voter is chosen;
//! - no handover was tried in the last [`HANDOVER_RETRY_MS`].
//!
//! Health is a hint for liveness only: it never makes a host hold or release the endpoint by
//! itself (the lease and the site rule decide that, `lease.rs`); the handover is an ordinary
//! leadership transfer, which releases the endpoint first (`transfer_leadership`). A host with no
//! gate reports nothing (unknown), so sites without one behave as before; a leader never hands
//! over to a host that is not known healthy, so with no healthy host the endpoint stays put.

use muster_proto::{ApiHealth, Role, StepState};

use crate::config::{format_id, NodeId};
use crate::node::Node;
use crate::storage::RaftStore;

/// How long the leader's API server must stay unhealthy before it hands over.
pub const HANDOVER_AFTER_MS: u64 = 2_000;
/// Shortest interval between two handover attempts.
pub const HANDOVER_RETRY_MS: u64 = 5_000;

/// This host's API-server health as the agent last reported it.
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthState {
    /// The last report.
    pub local: ApiHealth,
    /// Since when the reports have said unhealthy without a break.
    pub unhealthy_since_ms: Option<u64>,
    /// Leader: since when it has led without a control-plane step of its own.
    pub no_control_plane_since_ms: Option<u64>,
    /// When the leader last tried to hand over.
    pub handover_ms: Option<u64>,
}

impl<S: RaftStore> Node<S> {
    /// The agent's probe of the local API server changed (or was repeated).
    pub(crate) fn on_local_health(&mut self, healthy: bool) {
        let now = self.now_ms;
        let h = &mut self.health;
        h.local = if healthy {
            ApiHealth::Healthy
        } else {
            ApiHealth::Unhealthy
        };
        if healthy {
            h.unhealthy_since_ms = None;
        } else {
            h.unhealthy_since_ms.get_or_insert(now);
        }
    }

    /// Leader only: hands leadership to a healthy control-plane host when ours stays unhealthy.
    pub(crate) fn health_duties(&mut self) {
        let now = self.now_ms;
        if !self.is_leader() {
            self.health.no_control_plane_since_ms = None;
            return;
        }
        let runs_control_plane = self.cluster.plan.as_ref().is_none_or(|p| {
            crate::plan::step_of(p, self.cfg.id)
                .is_some_and(|s| s.role == Role::Init as i32 || s.role == Role::ControlPlane as i32)
        });
        let unfit_since = if runs_control_plane {
            self.health.no_control_plane_since_ms = None;
            self.health.unhealthy_since_ms
        } else {
            Some(*self.health.no_control_plane_since_ms.get_or_insert(now))
        };
        let Some(since) = unfit_since else {
            return;
        };
        if now < since + HANDOVER_AFTER_MS {
            return;
        }
        if self
            .health
            .handover_ms
            .is_some_and(|t| now < t + HANDOVER_RETRY_MS)
        {
            return;
        }
        // A leader with no control plane at all goes to one whose health is merely unknown (a
        // site without health gates) too; an unhealthy one only to a known-healthy one.
        let Some(target) = self.control_plane_peer(!runs_control_plane) else {
            return;
        };
        self.health.handover_ms = Some(now);
        match self.transfer_leadership(Some(target)) {
            Ok((to, outputs)) => {
                tracing::warn!(
                    to = %format_id(to),
                    for_ms = now - since,
                    runs_control_plane,
                    "the local API server is unhealthy or absent and another control-plane host's is healthy: handing leadership (and the endpoint) over"
                );
                self.out.extend(outputs);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand leadership to a healthy control-plane host")
            }
        }
    }

    /// The most caught-up reachable voter whose control-plane step succeeded and whose last
    /// hello said its API server is healthy (or, with `or_unknown`, said nothing of it).
    fn control_plane_peer(&self, or_unknown: bool) -> Option<NodeId> {
        let plan = self.cluster.plan.as_ref()?;
        let raw = self.raw.as_ref()?;
        plan.steps
            .iter()
            .filter(|s| s.node_id != self.cfg.id)
            .filter(|s| s.role == Role::Init as i32 || s.role == Role::ControlPlane as i32)
            .filter(|s| s.state == StepState::Succeeded as i32 && !s.skipped)
            .map(|s| s.node_id)
            .filter(|id| crate::state::member(&self.cluster, *id).is_some_and(|m| m.voter))
            .filter(|id| self.reachable(*id))
            .filter(|id| {
                self.peers
                    .get(id)
                    .and_then(|p| p.hello.as_ref())
                    .is_some_and(|h| {
                        h.api_health == ApiHealth::Healthy as i32
                            || (or_unknown && h.api_health == ApiHealth::Unknown as i32)
                    })
            })
            .max_by_key(|id| raw.raft.prs().get(*id).map_or(0, |p| p.matched))
    }

    /// A member's API-server health: ours as last reported by the agent, a peer's as its last
    /// hello said.
    pub fn member_api_health(&self, id: NodeId) -> ApiHealth {
        if id == self.cfg.id {
            return self.health.local;
        }
        self.peers
            .get(&id)
            .and_then(|p| p.hello.as_ref())
            .and_then(|h| ApiHealth::try_from(h.api_health).ok())
            .unwrap_or(ApiHealth::Unknown)
    }
}
