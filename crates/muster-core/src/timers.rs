//! What the node needs of the clock, so an idle agent sleeps instead of ticking.
//!
//! [`Node::next_tick_ms`] says when the next `Input::Tick` is due: the agent's event loop sleeps
//! until then (or until a message or another event arrives) instead of ticking at a fixed rate.
//! A member's deadline is the earliest of the raft timer that can fire next (a follower's
//! election timeout, counted from its last contact with the leader; a leader's check-quorum and
//! heartbeat while it does not probe the lease yet; every tick for a (pre-)candidate), the lease
//! end, the next hellos, a leader's site rule while it does not allow
//! holding yet (evaluated on ticks: at once for a new leader, then every 10 ms), and at most
//! [`MAX_MEMBER_TICK_MS`] from now for the duties that look at the clock on ticks (plan,
//! health, removal, merge checks). A leader that probes its lease ticks at each probe (every
//! heartbeat interval) and at its lease end and site rule only: check-quorum, the hello rounds
//! and the duties wait for the next probe, at most an interval late, instead of each waking the
//! agent once more. A host in
//! no cluster yet ticks every [`FORMATION_TICK_MS`], as the agent always did. Ticking earlier
//! than the deadline changes nothing, so the simulator's fixed ticks run the same code.
//!
//! [`Node::redundant_heartbeat`] drops raft-rs's own heartbeats where they repeat what a lease
//! probe (`lease.rs`: a ReadIndex, i.e. a heartbeat with a context, every heartbeat interval)
//! already carries: both go to every follower with the same commit index and both are answered
//! by a heartbeat response, so while the leader probes, its plain heartbeats only doubled the
//! traffic. Heartbeats to learners, whose acks count for neither quorum nor lease, go at most
//! every [`LEARNER_HEARTBEAT_INTERVALS`] heartbeat intervals; entries still reach them at once
//! (appends are not heartbeats), and their reachability rests on hellos as before.

use raft::prelude::{Message, MessageType};
use raft::StateRole;

use crate::config::NodeId;
use crate::node::{Node, Phase};
use crate::storage::RaftStore;

/// Tick period of a host in no cluster (discovering, joining): formation's timers are many and
/// short, so it keeps the agent's former fixed tick.
pub const FORMATION_TICK_MS: u64 = 10;
/// A member ticks at least this often, for the duties that read the clock only on ticks.
pub const MAX_MEMBER_TICK_MS: u64 = 100;
/// Learners get a heartbeat at most every this many heartbeat intervals (1.2 s with the
/// defaults). With a learner's answer it is the only raft traffic between the leader and a
/// learner at idle, and their hellos are left out while it flows (`hello.rs`), so it also
/// carries their reachability (3 s timeout): a hello still reaches the other side within
/// 2.3 s of the last heartbeat once they stop. At 0.6 s these were most of an idle 25-host
/// leader's messages.
pub const LEARNER_HEARTBEAT_INTERVALS: u64 = 15;

impl<S: RaftStore> Node<S> {
    /// When (this node's monotonic ms, as in `Input::Tick`) the next `Input::Tick` is due. An
    /// earlier tick is harmless; a later one delays timers. See the module docs.
    pub fn next_tick_ms(&self) -> u64 {
        let now = self.now_ms;
        if self.phase != Phase::Member || self.raw.is_none() || self.boot_ms.is_none() {
            return now + FORMATION_TICK_MS;
        }
        let mut due = now + MAX_MEMBER_TICK_MS;
        let probe = self.probe_deadline_ms();
        if let Some(probe) = probe {
            // A probing leader ticks at every probe, at most a heartbeat interval apart: what
            // else falls due (check-quorum, the hello rounds, the duties' cap) waits for the
            // next one, so the leader wakes once per probe and not also in between (a third
            // more wake-ups). The lease end and the site rule below keep their own time.
            due = probe;
        } else if let Some(raft) = self.raft_deadline_ms() {
            due = due.min(raft);
        }
        if self.cfg.vip && self.is_leader() && !self.site_rule.ok {
            // The site rule is evaluated on ticks, and the endpoint waits for it: a new leader
            // looks at once (its rule is still the follower's empty one), a held-back leader
            // as often as the agent used to tick.
            let soon = if self.site_rule.held_back.is_empty() {
                1
            } else {
                FORMATION_TICK_MS
            };
            due = due.min(now + soon);
        }
        if self.lease.holding {
            if let Some(until) = self.lease.until_ms {
                due = due.min(until);
            }
        }
        let interval = self.cfg.hello_interval_ms;
        if let Some(t) = self.last_hello_ms.filter(|_| probe.is_none()) {
            due = due.min(t + interval);
        }
        // Never in the past: a deadline at or before now means "at the next tick".
        due.max(now + 1)
    }

    /// Whether this node's clock has fallen a raft tick or more behind `now_ms` (the shell's
    /// clock, as in `Input::Tick`). The agent then feeds a tick before the message it is about
    /// to hand in, so raft-rs judges a (pre-)vote request against its tick count since it last
    /// heard the leader as it did with fixed ticks: a follower sleeping until its own election
    /// deadline would otherwise refuse votes it ought to grant, and slow a failover down.
    pub fn clock_behind(&self, now_ms: u64) -> bool {
        self.raw.is_some() && now_ms >= self.last_raft_tick_ms + self.cfg.tick_ms
    }

    /// When the next raft tick that can change anything falls: the tick at which a timer of
    /// raft-rs fires (`election_elapsed` and `heartbeat_elapsed` count ticks since the last
    /// reset; the next tick is due at `last_raft_tick_ms + tick_ms`).
    fn raft_deadline_ms(&self) -> Option<u64> {
        let raw = self.raw.as_ref()?;
        let r = &raw.raft;
        let tick = self.cfg.tick_ms;
        let after = |ticks: usize| self.last_raft_tick_ms + (ticks.max(1) as u64) * tick;
        match r.state {
            // Asked only while the leader does not probe yet (a probing leader ticks at every
            // probe, `next_tick_ms`).
            StateRole::Leader => {
                let quorum = after(r.election_timeout().saturating_sub(r.election_elapsed));
                let beat = after(r.heartbeat_timeout().saturating_sub(r.heartbeat_elapsed()));
                Some(quorum.min(beat))
            }
            StateRole::Follower if r.promotable() => Some(after(
                r.randomized_election_timeout()
                    .saturating_sub(r.election_elapsed),
            )),
            // A learner's raft timers do nothing.
            StateRole::Follower => None,
            StateRole::Candidate | StateRole::PreCandidate => Some(after(1)),
        }
    }

    /// Leader: when the next lease probe is due (`probe_lease`), if it probes.
    fn probe_deadline_ms(&self) -> Option<u64> {
        if !self.probing_lease() {
            return None;
        }
        let heartbeat_ms = self.cfg.heartbeat_ms();
        let next = self
            .lease
            .last_probe_ms
            .map_or(self.now_ms, |t| t + heartbeat_ms);
        // A round some voter did not answer is asked again (`lease.rs`, `PROBE_RETRY_MS`); once
        // the answers came the deadline moves back to the next round, with no wake-up between.
        let retry = self.probe_retry_at_ms();
        Some(retry.map_or(next, |r| r.min(next)))
    }

    /// Whether this node is a leader that probes its lease every heartbeat interval (raft-rs
    /// takes a ReadIndex only once the leader committed an entry of its term).
    pub(crate) fn probing_lease(&self) -> bool {
        self.raw
            .as_ref()
            .is_some_and(|r| r.raft.state == StateRole::Leader && r.raft.commit_to_current_term())
    }

    /// How long the leader leaves between two heartbeats to a learner.
    pub(crate) fn learner_heartbeat_gap_ms(&self) -> u64 {
        LEARNER_HEARTBEAT_INTERVALS * self.cfg.heartbeat_ms()
    }

    /// Whether raft message `m`, about to go out, is a heartbeat that a lease probe makes
    /// redundant, or one to a learner sooner than its interval (module docs). Records the
    /// heartbeats a learner is sent.
    pub(crate) fn redundant_heartbeat(&mut self, m: &Message, probing: bool) -> bool {
        if m.get_msg_type() != MessageType::MsgHeartbeat {
            return false;
        }
        let to: NodeId = m.to;
        let now = self.now_ms;
        let learner_gap = self.learner_heartbeat_gap_ms();
        if let Some(p) = self.peers.get_mut(&to).filter(|p| p.learner) {
            if p.heartbeat_sent_ms.is_some_and(|t| now < t + learner_gap) {
                return true;
            }
            p.heartbeat_sent_ms = Some(now);
            return false;
        }
        // A heartbeat with a context carries a lease probe (or repeats a pending one): keep it.
        probing && m.get_context().is_empty()
    }
}
