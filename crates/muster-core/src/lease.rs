//! The leader's VIP lease (invariant I2: at most one VIP holder at any instant).
//!
//! The leader holds the VIP only while its lease is valid; the lease is renewed from quorum
//! contact. Every heartbeat interval the leader issues a raft ReadIndex whose context is the
//! local send time; when raft-rs reports that a quorum of voters acknowledged it, every voter of
//! that quorum received a message from this leader at or after the send time. raft-rs (with
//! check-quorum) makes a voter ignore vote and pre-vote requests until `election_ticks` of its own
//! ticks have passed since it last heard from the leader, i.e. for at least
//! `(election_ticks - 1) · tick_ms` of its clock. Any new leader needs a quorum of such voters, and
//! two quorums intersect, so no new leader can exist before `send + (election_ticks - 1)·tick_ms`
//! measured on that voter's clock. With every clock within ±`drift_pct` percent of real time,
//! that promise lasts at least `(election_ticks - 1)·tick_ms / (1 + drift)` of real time, while a
//! lease of `L` ms on the holder's clock lasts at most `L / (1 - drift)`. The holder also notices
//! the end of its lease only at its next input (the agent ticks every 10 ms), so one raft tick is
//! kept in reserve:
//!
//! ```text
//! lease_ms = (election_ticks - 1) · tick_ms · (100 - drift_pct) / (100 + drift_pct) - tick_ms
//! ```
//!
//! With the defaults (20 ms ticks, 10-tick election timeout, 5 %): the voters' promise is 180 ms
//! on their clocks (≥ 171 ms real); the lease is 142 ms on the holder's clock (≤ 150 ms real),
//! dropped within 10 ms more (≤ 160 ms real).
//!
//! A restarted voter has forgotten when it last heard the leader; it ignores (pre-)vote requests
//! for `election_ticks · tick_ms` after boot (`Node::vote_guard_active`), restoring the promise.
//! A planned leadership transfer bypasses the lease rule in raft-rs (forced campaign), so the
//! holder releases the VIP before it starts a transfer.
//!
//! A new leader acquires the VIP once its own first lease is confirmed — after its election,
//! which by the argument above is after every earlier lease ended.

use raft::StateRole;

use crate::node::{Node, Output};
use crate::storage::RaftStore;

/// Lease bookkeeping of one node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lease {
    /// Local time until which this node may hold the VIP; only meaningful while leader.
    pub until_ms: Option<u64>,
    /// Term the lease belongs to.
    pub term: u64,
    /// When the last lease-renewing ReadIndex was issued.
    pub last_probe_ms: Option<u64>,
    /// Whether this node told the shell to hold the VIP.
    pub holding: bool,
}

impl<S: RaftStore> Node<S> {
    /// How long a confirmed quorum contact lets the leader hold the VIP.
    pub fn lease_ms(&self) -> u64 {
        let base = (self.cfg.election_ticks as u64 - 1) * self.cfg.tick_ms;
        let lease =
            base * (100 - self.cfg.max_clock_drift_pct) / (100 + self.cfg.max_clock_drift_pct);
        lease * self.cfg.lease_stretch_pct_for_tests / 100
    }

    /// Leader only: issues a ReadIndex every heartbeat interval to renew the lease. Called after
    /// every input, so a new leader probes as soon as it may.
    pub(crate) fn probe_lease(&mut self) {
        let heartbeat_ms = self.cfg.heartbeat_ticks as u64 * self.cfg.tick_ms;
        let now = self.now_ms;
        let Some(raw) = self.raw.as_mut() else { return };
        if raw.raft.state != StateRole::Leader {
            self.lease.until_ms = None;
            self.lease.last_probe_ms = None;
            return;
        }
        if raw.raft.term != self.lease.term {
            self.lease = Lease {
                holding: self.lease.holding,
                term: raw.raft.term,
                ..Lease::default()
            };
        }
        let due = self
            .lease
            .last_probe_ms
            .is_none_or(|t| now >= t + heartbeat_ms);
        // raft-rs silently drops a ReadIndex until the leader has committed an entry of its own
        // term; probe from then on (at the first input after it), not a heartbeat later.
        if due && raw.raft.commit_to_current_term() {
            self.lease.last_probe_ms = Some(now);
            raw.read_index(now.to_be_bytes().to_vec());
        }
    }

    /// A ReadIndex issued in `term` (its context is the local send time) was confirmed by a
    /// quorum. Called from the ready loop, while raft is borrowed, hence the explicit term.
    pub(crate) fn lease_confirmed(&mut self, ctx: &[u8], term: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(ctx) else {
            return;
        };
        let sent = u64::from_be_bytes(bytes);
        if term != self.lease.term {
            return;
        }
        let until = sent + self.lease_ms();
        self.lease.until_ms = Some(self.lease.until_ms.map_or(until, |u| u.max(until)));
    }

    /// Whether this node may hold the VIP right now.
    pub fn lease_valid(&self) -> bool {
        let leader = self
            .raw
            .as_ref()
            .is_some_and(|r| r.raft.state == StateRole::Leader && r.raft.lead_transferee.is_none());
        leader && self.lease.until_ms.is_some_and(|u| self.now_ms < u)
    }

    /// Milliseconds of lease left (0 when not holding).
    pub fn lease_left_ms(&self) -> u64 {
        match self.lease.until_ms {
            Some(u) if self.lease_valid() => u - self.now_ms,
            _ => 0,
        }
    }

    /// Emits `VipAcquire` / `VipRelease` when holding should change. The shell's gate
    /// (`vip_allowed`, e.g. local API-server health once Kubernetes runs) can only withhold.
    pub(crate) fn update_vip(&mut self) {
        if !self.cfg.vip {
            return;
        }
        let should = self.lease_valid() && self.vip_allowed;
        if should && !self.lease.holding {
            self.lease.holding = true;
            tracing::info!(
                lease_ms = self.lease_left_ms(),
                "lease valid: acquiring the VIP"
            );
            self.out.push(Output::VipAcquire);
        } else if !should && self.lease.holding {
            self.lease.holding = false;
            tracing::info!("lease ended or leadership lost: releasing the VIP");
            self.out.push(Output::VipRelease);
        }
    }

    /// Whether this node currently tells the shell to hold the VIP.
    pub fn holds_vip(&self) -> bool {
        self.lease.holding
    }

    /// A restarted voter does not know when it last heard the leader; it refuses votes for one
    /// election timeout after boot so that earlier leases stay valid (see module docs).
    pub(crate) fn vote_guard_active(&self) -> bool {
        let boot = self.boot_ms.unwrap_or(self.now_ms);
        self.now_ms < boot + self.cfg.election_ticks as u64 * self.cfg.tick_ms
    }
}
