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
//! the end of its lease only at its next input (the agent schedules a tick at the lease end,
//! `timers.rs`, and ticked every 10 ms before that), so one raft tick is kept in reserve:
//!
//! ```text
//! lease_ms = (election_ticks - 1) · tick_ms · (100 - drift_pct) / (100 + drift_pct) - tick_ms
//! ```
//!
//! With the defaults (10 ms ticks, 16-tick election timeout, 5 %): the voters' promise is 150 ms
//! on their clocks (≥ 142.5 ms real); the lease is 125 ms on the holder's clock (≤ 131.25 ms
//! real), dropped within 10 ms more (≤ 141.25 ms real). A pre-candidate that asks again while a
//! voter keeps its promise (`replica.rs`, `retry_pre_vote`) is ignored again: the promise is the
//! voter's, not the asker's.
//!
//! A round that some connected voter has not answered within `PROBE_RETRY_MS` (20 ms) is asked
//! again, once: a new ReadIndex with its own send time, so nothing above changes (each
//! confirmation still dates from the send time of the probe it answers). With 80 ms rounds and
//! the 125 ms lease, one lost round would otherwise lapse the lease before the next, and leave a
//! follower two rounds without a heartbeat, its shortest election timeout.
//!
//! A restarted voter has forgotten when it last heard the leader; it ignores (pre-)vote requests
//! for `election_ticks · tick_ms` after boot (`Node::vote_guard_active`), restoring the promise.
//! A planned leadership transfer bypasses the lease rule in raft-rs (forced campaign), so the
//! holder releases the VIP before it starts a transfer.
//!
//! A new leader acquires the VIP once its own first lease is confirmed — after its election,
//! which by the argument above is after every earlier lease ended.
//!
//! # The site rule: one holder across clusters
//!
//! The lease fences leaders of one raft group. While a site forms, several clusters can coexist
//! for a while (hosts that did not see each other bootstrap apart and merge later), and each has
//! a leader with a valid lease. So before the site is formed a leader also needs its cluster to
//! hold the site. The operator's premise (DESIGN I1) is that the site has fewer than
//! `2 × expected_nodes` hosts. With `U` = the larger of `2 × expected_nodes − 1` (the largest
//! site that premise allows) and the number of site hosts this node has heard of (hello senders
//! and the members their hellos list), an unformed leader holds the VIP only with a *fresh
//! majority*: more than `U / 2` hosts of its cluster (itself included) sent it a raft message
//! of this cluster within the last election timeout `W` — that is, at least `expected_nodes`
//! fresh members.
//!
//! A host takes part in one raft group at a time and drops raft messages of any other. When it
//! leaves a cluster (dissolving to merge, or after a wiped disk) it waits `Q =
//! formation_quiet_ms` — after boot too, unless its identity was created at this start
//! (`NodeConfig::new_identity`: no cluster can count an id that did not exist; this saves a
//! new site's first boot `Q`) — before it joins or bootstraps anything, and `Q` exceeds
//! `W` plus a tick plus the one-way message delay (assumed below 250 ms with the defaults: `Q` = 420 ms, `W` = 160 ms), so the
//! cluster it left stops counting it before another can start counting it: the fresh sets of two
//! clusters are disjoint at every instant. Two disjoint sets of at least `expected_nodes` hosts
//! each need `2 × expected_nodes` hosts, more than the site has: two clusters never hold at once.
//! Nothing here depends on how fast discovery is, or on having heard of every host (an earlier
//! rule counted a majority of the hosts heard of after a 2 s settle wait, and the simulator's
//! `more-hosts-slow-discovery` scenario found two holders with discovery slower than that wait).
//! A site that breaks the premise (`2 × expected_nodes` hosts or more) is also covered as far as
//! this node has heard of its hosts (`U` grows with them).
//!
//! The cost: a cluster holding fewer than `expected_nodes` hosts never floats the VIP before the
//! site forms, not even a majority of the hosts actually there (2 of 3, one box dead at
//! install): an operator who vouches for the site runs `muster plan start`, which forms it with
//! the members there are (`site.rs`). A normal boot is not delayed: the cluster reaches
//! `expected_nodes` members, locks and forms at about the same moment. `muster status` says why
//! a leader holds back (`vip.held_back`).
//!
//! # Formed sites
//!
//! Once the cluster is recorded formed (`site.rs`: at least `expected_nodes` members hold the
//! lock entry durably and never leave), the site rule is skipped: the leader's right to the VIP
//! rests on its own lease. With at most `expected_nodes` hosts every host is a locked member of
//! the formed cluster, so no other cluster exists. With `N` hosts, `expected_nodes < N < 2 ×
//! expected_nodes`, at most one cluster is formed (`site.rs`) and any other cluster's members are
//! disjoint from its `≥ expected_nodes > N/2` locked hosts, so an unformed leader that has heard
//! of every host (`U = N`) never has a fresh majority: the guarantee is the one above, once
//! leaders have heard of every host. Claims in hellos can raise `U` (member lists of peers that
//! are not members): that only makes an unformed leader hold back — a liveness cost that ends
//! when its cluster forms — never lets two hold.

use raft::StateRole;

use crate::config::NodeId;

use crate::node::{Node, Output};
use crate::storage::RaftStore;

/// Lease bookkeeping of one node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lease {
    /// Local time until which this node may hold the VIP; only meaningful while leader.
    pub until_ms: Option<u64>,
    /// Term the lease belongs to.
    pub term: u64,
    /// When the last lease-renewing ReadIndex of the regular schedule was issued.
    pub last_probe_ms: Option<u64>,
    /// When this round's probe was asked again (`PROBE_RETRY_MS`), if it was.
    pub retry_ms: Option<u64>,
    /// Whether this node told the shell to hold the VIP.
    pub holding: bool,
    /// The lease end last given to the shell (`EndpointAcquire` / `EndpointRenew`).
    pub fence_ms: u64,
}

/// A probe round that some voter has not answered this long after it went out is asked again,
/// once. With the defaults the lease from the round before ends 45 ms after this round's probe
/// (125 ms lease, 80 ms rounds), so one round whose probes or answers were all lost would lapse
/// the lease (and drop the VIP for a moment) before the next round; and a follower whose probe
/// was lost would go two rounds, 160 ms, its shortest election timeout, without a heartbeat,
/// and stand for election (a pre-vote the others refuse, but its status shows no leader for a
/// moment). The second ask has 25 ms to arrive. An answer takes well under a millisecond on a
/// LAN, so at idle nothing is asked twice; under loss or a stalled voter it costs one more
/// heartbeat per voter.
pub(crate) const PROBE_RETRY_MS: u64 = 20;

/// The site lock (`site.rs`) waits until no new host was heard of for this many hello intervals.
const KNOWLEDGE_SETTLE_INTERVALS: u64 = 4;

/// The site rule (module docs) as last evaluated on this node.
#[derive(Debug, Clone, Default)]
pub(crate) struct SiteRule {
    /// Whether the rule allows holding the VIP.
    pub ok: bool,
    /// Why not, for operators; empty when `ok` or when not leading.
    pub held_back: String,
}

impl<S: RaftStore> Node<S> {
    /// `Q`: how long formation waits after boot and after dissolving (module docs).
    pub(crate) fn formation_quiet_ms(&self) -> u64 {
        2 * self.cfg.election_ticks as u64 * self.cfg.tick_ms + 100
    }

    /// Records hosts of the site learnt from a hello (`from_known`: the sender is known already).
    /// Returns whether the sender is known now.
    pub(crate) fn learn_hosts(
        &mut self,
        from: NodeId,
        from_known: bool,
        member_ids: &[NodeId],
    ) -> bool {
        let before = self.known_hosts.len();
        let from_now_known = from_known || before < crate::node::MAX_KNOWN_HOSTS;
        let sender = (!from_known).then_some(&from);
        for id in sender.into_iter().chain(member_ids) {
            if self.known_hosts.len() >= crate::node::MAX_KNOWN_HOSTS {
                break;
            }
            self.known_hosts.insert(*id);
        }
        if self.known_hosts.len() != before {
            self.known_hosts_changed_ms = self.now_ms;
        }
        from_now_known
    }

    /// Evaluates the site rule (module docs). Leader only; once per tick, as it walks the
    /// membership.
    pub(crate) fn evaluate_site_rule(&mut self) {
        if !self.cfg.vip || !self.is_leader() {
            self.site_rule = SiteRule::default();
            return;
        }
        if self.site_formed() {
            // A formed site's leader rests on its own membership and quorum (`site.rs`).
            self.site_rule = SiteRule {
                ok: true,
                held_back: String::new(),
            };
            return;
        }
        if self.cfg.site_rule_off_for_tests {
            self.site_rule = SiteRule {
                ok: true,
                held_back: String::new(),
            };
            return;
        }
        // The site has fewer than 2 × expected_nodes hosts (the operator's premise, DESIGN I1),
        // so a cluster with expected_nodes fresh members holds a majority of any such site.
        let known = self.known_hosts.len().max(2 * self.cfg.expected_nodes - 1);
        let fresh = self.fresh_members(self.cfg.election_ticks as u64 * self.cfg.tick_ms);
        let ok = fresh * 2 > known;
        self.site_rule = SiteRule {
            ok,
            held_back: if ok {
                String::new()
            } else {
                format!(
                    "the cluster reaches {fresh} hosts of a site of up to {known} (expected_nodes {}, {} heard of); holding the VIP before the site forms needs more than half",
                    self.cfg.expected_nodes,
                    self.known_hosts.len()
                )
            },
        };
    }

    /// This leader and the members whose raft answered it within `window_ms`: the hosts that
    /// really run this cluster's log now. A member admitted while it was leaving another
    /// cluster, whose join never completed, counts in the membership but not here.
    pub(crate) fn fresh_members(&self, window_ms: u64) -> usize {
        1 + self
            .cluster
            .members
            .iter()
            .filter(|m| m.id != self.cfg.id)
            .filter(|m| {
                self.peers
                    .get(&m.id)
                    .and_then(|p| p.raft_heard_ms)
                    .is_some_and(|t| self.now_ms.saturating_sub(t) <= window_ms)
            })
            .count()
    }

    /// Whether no new site host was heard of for the settle time (the site lock, `site.rs`).
    pub(crate) fn knowledge_settled(&self) -> bool {
        // Another cluster's leader lists its hosts at its own (thinned) rate (`hello.rs`).
        let settle = (KNOWLEDGE_SETTLE_INTERVALS * self.cfg.hello_interval_ms)
            .max(self.longest_leader_hello_ms());
        self.now_ms >= self.known_hosts_changed_ms + settle
    }

    /// How long a confirmed quorum contact lets the leader hold the VIP.
    pub fn lease_ms(&self) -> u64 {
        self.cfg.lease_ms()
    }

    /// Leader only: issues a ReadIndex every heartbeat interval to renew the lease. Called after
    /// every input, so a new leader probes as soon as it may.
    pub(crate) fn probe_lease(&mut self) {
        let heartbeat_ms = self.cfg.heartbeat_ms();
        let now = self.now_ms;
        let Some(raw) = self.raw.as_ref() else { return };
        if raw.raft.state != StateRole::Leader {
            self.lease.until_ms = None;
            self.lease.last_probe_ms = None;
            self.lease.retry_ms = None;
            return;
        }
        let term = raw.raft.term;
        if term != self.lease.term {
            self.lease = Lease {
                holding: self.lease.holding,
                term,
                ..Lease::default()
            };
        }
        let due = self
            .lease
            .last_probe_ms
            .is_none_or(|t| now >= t + heartbeat_ms);
        let retry = !due && self.probe_retry_at_ms().is_some_and(|t| now >= t);
        let Some(raw) = self.raw.as_mut() else { return };
        // raft-rs silently drops a ReadIndex until the leader has committed an entry of its own
        // term; probe from then on (at the first input after it), not a heartbeat later.
        if (due || retry) && raw.raft.commit_to_current_term() {
            if due {
                self.lease.last_probe_ms = Some(now);
                self.lease.retry_ms = None;
            } else {
                self.lease.retry_ms = Some(now);
            }
            raw.read_index(now.to_be_bytes().to_vec());
        }
    }

    /// Leader: when this round's probe is to be asked again (`PROBE_RETRY_MS` after it went
    /// out), while some other connected voter has sent no raft message since it went out and it
    /// was not asked again yet.
    pub(crate) fn probe_retry_at_ms(&self) -> Option<u64> {
        let sent = self.lease.last_probe_ms?;
        if self.lease.retry_ms.is_some() {
            return None;
        }
        let me = self.cfg.id;
        let all_answered = self
            .cluster
            .members
            .iter()
            .filter(|m| m.voter && m.id != me)
            .filter_map(|m| self.peers.get(&m.id))
            // A voter with no connection gets nothing either way (and a dead one would double
            // every round while it is down).
            .filter(|p| p.connected)
            .all(|p| p.raft_heard_ms.is_some_and(|t| t >= sent));
        (!all_answered).then_some(sent + PROBE_RETRY_MS)
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

    /// Emits `EndpointAcquire` / `EndpointRelease` when holding should change. API-server health never
    /// gates holding: an unhealthy leader hands leadership over instead (`health.rs`).
    pub(crate) fn update_vip(&mut self) {
        if !self.cfg.vip {
            return;
        }
        let should = self.lease_valid() && self.site_rule.ok;
        let until_ms = self.lease.until_ms.unwrap_or(0);
        let term = self.lease.term;
        if should && !self.lease.holding {
            self.lease.holding = true;
            self.lease.fence_ms = until_ms;
            tracing::info!(
                lease_ms = self.lease_left_ms(),
                "lease valid: acquiring the endpoint"
            );
            self.out.push(Output::EndpointAcquire { term, until_ms });
            self.last_member_hello_ms = None;
        } else if should && until_ms > self.lease.fence_ms {
            self.lease.fence_ms = until_ms;
            self.out.push(Output::EndpointRenew { term, until_ms });
        } else if !should && self.lease.holding {
            self.lease.holding = false;
            tracing::info!("lease ended or leadership lost: releasing the endpoint");
            self.out.push(Output::EndpointRelease);
            self.last_member_hello_ms = None;
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
