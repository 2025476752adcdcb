//! Driving raft-rs: ticks, inbound raft messages, the ready loop, applying committed entries,
//! compaction, and the leader's membership duties (adding joiners as learners, promoting learners
//! to voters up to `control_plane_count`).
//!
//! Ready handling follows raft-rs 0.7's contract: send messages; install a snapshot; apply
//! committed entries; persist entries and hard state durably; only then send the persisted
//! messages (votes, append acks); advance; handle the light ready.

use muster_proto::envelope::Body;
use muster_proto::{ConfChangeContext, JoinRequest, JoinResponse, Member, RaftMessage};
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, MessageType,
};
use raft::{RawNode, SnapshotStatus, StateRole};

use crate::config::{format_id, NodeId};
use crate::node::{CoreError, Node, Output, Phase, MAX_PENDING_JOINS};
use crate::state::{self, ApplyError};
use crate::storage::{applied_snapshot, RaftStore, SharedStore};

/// Most ready rounds handled per input; raft-rs rarely needs more than two.
const MAX_READY_ROUNDS: usize = 8;

/// raft-rs draws each randomized election timeout from the thread RNG whenever a node changes
/// term, role or leader. The core must be deterministic under a seed (the simulator replays runs
/// from it), so after every raft call that may have reset the timer, a new timeout in
/// `[base, 1.25·base)` ticks is drawn from the node's seeded RNG instead. The narrower spread than
/// raft-rs's `[base, 2·base)` cuts the detection time (in the simulator's leader-loss-loop, 25
/// seeds × 8 kills: median 154 ms, p90 181, max 372 with 1.25; 166 / 201 / 465 with 1.5); a
/// split vote, a little likelier, costs one short candidate round (below).
///
/// A candidate (it won its pre-vote and asked for votes) times out after `(base/2, base]` ticks:
/// its timeout only ends a split vote, where two pre-candidates granted each other and then each
/// voted for itself. raft-rs allows no timeout under `base`, so the candidate's timer is started
/// part-way (`election_elapsed`, which nothing else reads while there is no leader). Nothing
/// rests on a candidate waiting `base`: it became one only after its own timeout, `base` or more
/// after it last heard a leader, so its own promise to refuse votes had already run out, and the
/// other voters keep theirs whatever it does.
pub(crate) fn reseed_election_timeout<T: raft::Storage>(
    raw: &mut RawNode<T>,
    rng: &mut rand::rngs::StdRng,
    last: &mut Option<(u64, StateRole, u64)>,
    base: usize,
) {
    use rand::Rng as _;
    let now = (raw.raft.term, raw.raft.state, raw.raft.leader_id);
    if *last != Some(now) {
        *last = Some(now);
        if raw.raft.state == StateRole::Candidate {
            raw.raft.set_randomized_election_timeout(base);
            raw.raft.election_elapsed = rng.random_range(0..(base / 2).max(1));
        } else {
            let spread = (base / 4).max(1);
            raw.raft
                .set_randomized_election_timeout(rng.random_range(base..base + spread));
        }
    }
}

/// A pre-candidate whose pre-vote a voter ignored — raft-rs ignores, without answering, a
/// pre-vote from anyone while it heard the leader within `election_ticks` (the promise the VIP
/// lease rests on) — would otherwise ask again only at its next randomized election timeout,
/// 160–190 ms later. After a leader dies, the first follower to time out often asks a moment
/// before the other voters' promise runs out (they heard the last heartbeat a little later, or
/// it drew the shortest timeout), so the failover took the other voters' own timeouts instead.
/// It now asks again at every tick for `election_ticks` ticks after it stopped being a follower;
/// a voter still inside its promise ignores the repeat as it did the first, so nothing about the
/// lease changes, and a pre-vote changes no term. The budget (`left`) refills only while it is a
/// follower, so a host cut off from everyone asks at raft-rs's own pace after its first attempt.
/// Called after every tick.
pub(crate) fn retry_pre_vote<T: raft::Storage>(
    raw: &mut RawNode<T>,
    left: &mut usize,
    election_ticks: usize,
) {
    match raw.raft.state {
        StateRole::Follower => *left = election_ticks,
        StateRole::PreCandidate if *left > 0 && raw.raft.election_elapsed > 0 => {
            *left -= 1;
            if let Err(e) = raw.campaign() {
                tracing::debug!(error = %e, "pre-vote retry refused");
            }
        }
        _ => {}
    }
}

impl<S: RaftStore> Node<S> {
    /// Advances raft's logical clock by the ticks elapsed since the last one. After a long stall
    /// at most `election_ticks` are replayed, so a paused process does not fire a burst.
    pub(crate) fn raft_ticks(&mut self) {
        let tick_ms = self.cfg.tick_ms;
        let elapsed = self.now_ms.saturating_sub(self.last_raft_tick_ms);
        let due = elapsed / tick_ms;
        self.last_raft_tick_ms += due * tick_ms;
        let Some(raw) = self.raw.as_mut() else { return };
        for _ in 0..due.min(self.cfg.election_ticks as u64) {
            raw.tick();
            reseed_election_timeout(
                raw,
                &mut self.rng,
                &mut self.raft_role,
                self.cfg.election_ticks,
            );
            retry_pre_vote(raw, &mut self.pre_vote_retries, self.cfg.election_ticks);
        }
    }

    /// A raft message from an authenticated peer.
    pub(crate) fn on_raft_message(
        &mut self,
        from: NodeId,
        m: RaftMessage,
    ) -> Result<(), CoreError> {
        if let Phase::Joining { cluster_id, .. } = self.phase {
            if m.cluster_id == cluster_id
                && self.raw.is_none()
                && !self.accept_join(from, cluster_id)?
            {
                return Ok(());
            }
        }
        if self.raw.is_none() {
            self.drops
                .note("raft message while in no raft group", from, self.now_ms);
            return Ok(());
        }
        if m.cluster_id != self.raft_cluster_id {
            if !self.on_merge_admission(from, m.cluster_id)? {
                self.drops
                    .note("raft message for another cluster", from, self.now_ms);
            }
            return Ok(());
        }
        let msg = match crate::wire::decode_message(&m.message) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!(peer = %format_id(from), error = %e, "undecodable raft message");
                self.drops
                    .note("undecodable raft message", from, self.now_ms);
                return Ok(());
            }
        };
        if msg.from != from || msg.to != self.cfg.id {
            self.drops.note(
                "raft message with forged or misdirected ids",
                from,
                self.now_ms,
            );
            return Ok(());
        }
        if !self.cfg.raft_gate_off_for_tests {
            let checked = self
                .raft_gate(from, &msg)
                .check(from, &msg)
                .and_then(|()| self.check_shape(&msg));
            if let Err(reason) = checked {
                self.drops.note(reason, from, self.now_ms);
                return Ok(());
            }
        }
        if let Some(p) = self.peers.get_mut(&from) {
            p.raft_heard_ms = Some(self.now_ms);
        }
        let vote = matches!(
            msg.get_msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        );
        if vote && msg.get_context() != raft::CAMPAIGN_TRANSFER && self.vote_guard_active() {
            tracing::debug!(peer = %format_id(from), "vote request ignored: just restarted (lease guard)");
            return Ok(());
        }
        let Some(raw) = self.raw.as_mut() else {
            return Ok(());
        };
        let mut msg = msg;
        // A leader that remembers more of this host's log than the host has (it dissolved its
        // cluster, or its store was replaced, and rejoined with the same id) sends heartbeats
        // committing entries the host lacks; raft-rs panics on those. Clamp the commit to what
        // the host has: the leader learns the truth from the next append exchange and catches
        // the host up (snapshot if needed).
        let last = raw.raft.raft_log.last_index();
        if msg.get_msg_type() == MessageType::MsgHeartbeat && msg.commit > last {
            tracing::debug!(peer = %format_id(from), commit = msg.commit, last, "heartbeat commit beyond our log clamped");
            msg.commit = last;
        }
        let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        if let Err(e) = raw.step(msg) {
            tracing::debug!(peer = %format_id(from), error = %e, "raft step refused message");
        }
        if snapshot {
            // Restoring a snapshot gives every member a fresh progress (see `apply_conf_change`).
            raw.raft.maybe_free_inflight_buffers();
        }
        reseed_election_timeout(
            raw,
            &mut self.rng,
            &mut self.raft_role,
            self.cfg.election_ticks,
        );
        Ok(())
    }

    /// Checks what raft-rs 0.7 assumes of a correct leader and `fatal!`s on otherwise (found by
    /// muster-fuzz from member input; a bug on one member must not stop the others): a term;
    /// appended entries contiguous from `index + 1`, their terms never falling and never above
    /// the message's, none rewriting a committed entry; a snapshot whose configuration raft-rs
    /// can restore, with a real index and term, and whose state is of this raft group's cluster.
    fn check_shape(&self, msg: &Message) -> Result<(), &'static str> {
        let Some(raw) = self.raw.as_ref() else {
            return Ok(());
        };
        if msg.term == 0 {
            return Err("raft message without a term");
        }
        match msg.get_msg_type() {
            MessageType::MsgAppend => {
                let log = &raw.raft.raft_log;
                let mut prev_term = msg.log_term;
                for (k, e) in msg.entries.iter().enumerate() {
                    if Some(e.index) != msg.index.checked_add(1 + k as u64) {
                        return Err("append with entries that do not follow its index");
                    }
                    if e.term < prev_term || e.term > msg.term {
                        return Err("append with entry terms out of order");
                    }
                    prev_term = e.term;
                    if e.index <= log.committed && log.term(e.index).ok() != Some(e.term) {
                        return Err("append rewriting committed entries");
                    }
                }
                Ok(())
            }
            MessageType::MsgSnapshot => {
                let snap = msg.get_snapshot();
                let meta = snap.get_metadata();
                // raft-rs reads the term of an index past its log as 0, so a snapshot with term
                // 0 "matches" any index and fast-forwards the commit past the log.
                if meta.index == 0 || meta.term == 0 || msg.term < meta.term {
                    return Err("snapshot with an invalid index or term");
                }
                if !crate::guard::restorable(meta.get_conf_state()) {
                    return Err("snapshot with an invalid configuration");
                }
                match state::decode_state(snap.get_data()) {
                    Ok(s) if s.cluster_id == self.raft_cluster_id => Ok(()),
                    Ok(_) => Err("snapshot of another cluster"),
                    Err(_) => Err("snapshot whose state does not decode"),
                }
            }
            _ => Ok(()),
        }
    }

    /// What the gate (`guard.rs`) needs to judge `msg` from `from`. Whether one of our members
    /// vouches for `from` as leader walks the peer table, so it is worked out only when the gate
    /// reads it: for a sender that is not a voter and is not a member or sends a leader-only type
    /// (a leader's heartbeats to its learners, and their answers, never need it).
    fn raft_gate(&self, from: NodeId, msg: &Message) -> crate::guard::RaftGate {
        let member = state::member(&self.cluster, from);
        let ours = self.cluster.cluster_id;
        let voter = member.is_some_and(|m| m.voter);
        let read = !voter && (member.is_none() || crate::guard::leader_only(msg.get_msg_type()));
        let vouched = read
            && ours != 0
            && self.peers.values().any(|p| {
                p.member
                    && p.hello
                        .as_ref()
                        .is_some_and(|h| h.cluster_id == ours && h.leader_id == from)
            });
        let (term, leader) = self
            .raw
            .as_ref()
            .map_or((0, 0), |r| (r.raft.term, r.raft.leader_id));
        crate::guard::RaftGate {
            term,
            leader,
            joining: ours == 0,
            admitted_by: self.admitted_by,
            sender_member: member.is_some(),
            sender_voter: voter,
            sender_vouched_leader: vouched,
        }
    }

    /// Handles every ready raft-rs has, persisting before acknowledging.
    pub(crate) fn drive_raft(&mut self) -> Result<(), CoreError> {
        let Some(mut raw) = self.raw.take() else {
            return Ok(());
        };
        let result = (|| {
            for _ in 0..MAX_READY_ROUNDS {
                if !raw.has_ready() {
                    break;
                }
                self.ready_round(&mut raw)?;
            }
            self.maybe_compact(&raw)
        })();
        self.raw = Some(raw);
        result
    }

    fn ready_round(&mut self, raw: &mut RawNode<SharedStore<S>>) -> Result<(), CoreError> {
        let mut rd = raw.ready();
        self.send_raft(raw, rd.take_messages());
        for rs in rd.take_read_states() {
            self.lease_confirmed(&rs.request_ctx, raw.raft.term);
        }
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.store.lock().persist(Some(&snap), &[], None)?;
            self.last_applied = None;
            self.cluster = state::decode_state(snap.get_data()).map_err(|e| {
                CoreError::Apply(ApplyError::Decode {
                    index: snap.get_metadata().index,
                    what: "snapshot data",
                    detail: e.to_string(),
                })
            })?;
            self.membership_replaced();
            tracing::info!(
                cluster = %format_id(self.cluster.cluster_id),
                index = snap.get_metadata().index,
                members = self.cluster.members.len(),
                "installed snapshot from the leader"
            );
        }
        self.apply_committed(raw, rd.take_committed_entries())?;
        self.store.lock().persist(None, rd.entries(), rd.hs())?;
        if rd.entries().iter().any(|e| {
            e.get_entry_type() == EntryType::EntryNormal && crate::site::is_lock_entry(e.get_data())
        }) {
            // Durable before the ack below: from now on this host never dissolves (`site.rs`).
            self.site.lock_in_log = true;
        }
        self.send_raft(raw, rd.take_persisted_messages());
        let mut light = raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            let mut hs = raft::Storage::initial_state(&*self.store.lock())?.hard_state;
            hs.commit = commit;
            self.store.lock().persist(None, &[], Some(&hs))?;
        }
        self.send_raft(raw, light.take_messages());
        self.apply_committed(raw, light.take_committed_entries())?;
        raw.advance_apply();
        Ok(())
    }

    fn send_raft(&mut self, raw: &mut RawNode<SharedStore<S>>, msgs: Vec<Message>) {
        let probing = raw.raft.state == StateRole::Leader && raw.raft.commit_to_current_term();
        for m in msgs {
            if self.redundant_heartbeat(&m, probing) {
                continue;
            }
            let to = m.to;
            let is_snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            match m.write_to_bytes() {
                Ok(bytes) => self.send(
                    to,
                    Body::Raft(RaftMessage {
                        cluster_id: self.raft_cluster_id,
                        message: bytes,
                    }),
                ),
                Err(e) => {
                    tracing::error!(to = %format_id(to), error = %e, "raft message does not encode")
                }
            }
            if is_snapshot {
                // Delivery is best effort; if it was lost the follower's next reject asks again.
                raw.report_snapshot(to, SnapshotStatus::Finish);
            }
        }
    }

    fn apply_committed(
        &mut self,
        raw: &mut RawNode<SharedStore<S>>,
        entries: Vec<Entry>,
    ) -> Result<(), CoreError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let (last_index, last_term) = (last.index, last.term);
        // Whether an entry may have changed the cluster state: any command, any conf change with
        // changes. Empty entries (a new leader's first) and the empty conf changes that leave a
        // joint configuration do not.
        let mut changed = false;
        for e in &entries {
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    changed |= !e.get_data().is_empty();
                    self.apply_normal(e)
                }
                EntryType::EntryConfChange => {
                    // muster proposes only V2 changes; a V1 entry means a foreign or corrupt log.
                    return Err(ApplyError::Decode {
                        index: e.index,
                        what: "conf change",
                        detail: "V1 conf change entries are not used by muster".into(),
                    }
                    .into());
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = crate::wire::decode_conf_change(e.get_data()).map_err(|err| {
                        ApplyError::Decode {
                            index: e.index,
                            what: "conf change",
                            detail: err.to_string(),
                        }
                    })?;
                    changed |= !cc.get_changes().is_empty();
                    self.apply_conf_change(raw, &cc, e.index)?;
                }
            }
        }
        let conf_state = raw.raft.prs().conf().to_conf_state();
        let mut snap = applied_snapshot(last_index, last_term, conf_state, Vec::new());
        self.set_applied_data(&mut snap, changed);
        self.store.lock().save_applied(&snap)?;
        self.last_applied = Some(snap);
        Ok(())
    }

    /// The encoded cluster state for the applied state being saved. A batch that changed nothing
    /// reuses the bytes of the applied state this node saved last (a shared buffer), if that is
    /// still the store's: encoding the whole state (O(members)) on every host at every applied
    /// batch is the largest cost of a forming site after raft-rs itself.
    fn set_applied_data(&self, snap: &mut raft::prelude::Snapshot, changed: bool) {
        let meta = |s: &raft::prelude::Snapshot| (s.get_metadata().index, s.get_metadata().term);
        match &self.last_applied {
            Some(prev) if !changed && meta(prev) == meta(self.store.lock().applied()) => {
                snap.data = prev.data.clone()
            }
            _ => snap.set_data(state::encode_state(&self.cluster).into()),
        }
    }

    /// Applies a committed normal entry. One that does not decode is skipped (alike on every
    /// member: they all hold the same bytes) rather than stopping the site at every restart.
    fn apply_normal(&mut self, e: &Entry) {
        match state::decode_command(e.get_data()) {
            None => {}
            Some(Err(err)) => {
                tracing::error!(index = e.index, error = %err, "committed entry does not decode; skipped")
            }
            Some(Ok(cmd)) => match state::apply_command(&mut self.cluster, &cmd, e.index) {
                state::Applied::Nothing => {}
                state::Applied::Locked => {
                    tracing::info!(
                        index = e.index,
                        members = self.cluster.members.len(),
                        "site locked: this cluster never dissolves"
                    )
                }
                state::Applied::Formed => tracing::info!(
                    index = e.index,
                    holders = self.cluster.formed_members.len(),
                    "site formed"
                ),
                state::Applied::Plan => {
                    tracing::debug!(index = e.index, "join plan changed")
                }
                state::Applied::Removed(id) => {
                    tracing::warn!(index = e.index, member = %format_id(id), "host removed: refused from now on");
                    self.denied_dirty = true;
                }
            },
        }
    }

    fn apply_conf_change(
        &mut self,
        raw: &mut RawNode<SharedStore<S>>,
        cc: &ConfChangeV2,
        index: u64,
    ) -> Result<(), CoreError> {
        raw.apply_conf_change(cc)
            .map_err(|e| ApplyError::ConfChange {
                index,
                detail: e.to_string(),
            })?;
        // raft-rs gives each new progress a window of `max_inflight_msgs` slots up front (2 KiB),
        // on every host, for every member: 2 GB for a site of 1000. Only a leader sending appends
        // uses them; empty windows are freed (raft-rs allocates one again at its first use).
        raw.raft.maybe_free_inflight_buffers();
        state::apply_conf_change(&mut self.cluster, cc, index)?;
        // News for the shell: the members this change added, on top of any news not yet told
        // (`members_added` stays `None`, "all", if the membership was replaced before it).
        if !self.members_dirty {
            self.members_added = Some(Vec::new());
        }
        self.members_dirty = true;
        // A promoted learner is a voter from its next heartbeat on, not from the end of the
        // input (its heartbeats must not be thinned).
        self.sync_learners();
        self.denied_dirty |= !self.cluster.removed.is_empty();
        for change in cc.get_changes() {
            self.pending_joins.remove(&change.node_id);
            if let Some(m) = state::member(&self.cluster, change.node_id) {
                if let Some(added) = self.members_added.as_mut() {
                    added.push(m.clone());
                }
                tracing::info!(
                    member = %format_id(m.id),
                    name = %m.name,
                    voter = m.voter,
                    index,
                    "membership change applied"
                );
            }
        }
        Ok(())
    }

    fn maybe_compact(&mut self, raw: &RawNode<SharedStore<S>>) -> Result<(), CoreError> {
        let applied = raw.raft.raft_log.applied();
        let mut store = self.store.lock();
        let compacted = raft::Storage::first_index(&*store)?.saturating_sub(1);
        if applied >= compacted + self.cfg.snapshot_interval_entries {
            store.compact(applied)?;
            tracing::debug!(through = applied, "log compacted");
        }
        Ok(())
    }

    /// A host asks to join our cluster.
    pub(crate) fn on_join_request(
        &mut self,
        from: NodeId,
        r: JoinRequest,
    ) -> Result<(), CoreError> {
        let ours = self.cluster.cluster_id;
        let leader = self.leader_id();
        let (accepted, reason) = self.consider_join(from, &r);
        if !accepted {
            tracing::debug!(peer = %format_id(from), reason, "join request refused");
        }
        self.send(
            from,
            Body::JoinResponse(JoinResponse {
                cluster_id: ours,
                accepted,
                leader_id: leader,
                reason: reason.into(),
            }),
        );
        Ok(())
    }

    fn consider_join(&mut self, from: NodeId, r: &JoinRequest) -> (bool, &'static str) {
        let ours = self.cluster.cluster_id;
        if ours == 0 || r.cluster_id != ours {
            return (false, "not a member of that cluster");
        }
        let Some(member) = r.member.as_ref() else {
            return (false, "request names no member");
        };
        if let Err(reason) = crate::guard::check_member(member) {
            self.drops.note(reason, from, self.now_ms);
            return (false, reason);
        }
        // A member may relay a join for a host that cannot reach the leader itself.
        let relayed = member.id != from;
        if relayed && state::member(&self.cluster, from).is_none() {
            return (false, "member id does not match the connection's identity");
        }
        if !self.is_leader() {
            let leader = self.leader_id();
            if !relayed && leader != 0 && leader != self.cfg.id && self.reachable(leader) {
                self.send(leader, Body::JoinRequest(r.clone()));
                return (true, "relayed to the leader");
            }
            return (false, "not the leader");
        }
        if self.is_removed(member.id) || self.is_removed(from) {
            return (
                false,
                "removed from this cluster; only a new identity may join (muster reset)",
            );
        }
        if state::member(&self.cluster, member.id).is_some() {
            return (true, "already a member");
        }
        if self.pending_joins.len() >= MAX_PENDING_JOINS
            && !self.pending_joins.contains_key(&member.id)
        {
            return (false, "too many joins pending; retry");
        }
        self.pending_joins.insert(member.id, member.clone());
        (true, "queued")
    }

    /// Leader only: one membership change at a time — promote a caught-up learner while voters
    /// are short of `control_plane_count`, else add the next host waiting to join.
    pub(crate) fn leader_duties(&mut self) -> Result<(), CoreError> {
        self.site_duties();
        let Some(raw) = self.raw.as_ref() else {
            return Ok(());
        };
        if raw.raft.state != StateRole::Leader {
            self.pending_joins.clear();
            self.self_removal_transfer_ms = None;
            return Ok(());
        }
        if self.removal_duties() {
            return Ok(());
        }
        let Some(raw) = self.raw.as_ref() else {
            return Ok(());
        };
        if raw.raft.has_pending_conf() {
            return Ok(());
        }
        if state::voter_count(&self.cluster) < self.cfg.control_plane_count {
            let committed = raw.raft.raft_log.committed;
            // Never a worker-pinned host (`[node] roles`); control-plane-pinned ones first.
            let worker_only = muster_proto::RolePin::Worker as i32;
            let mut candidates: Vec<&Member> = self
                .cluster
                .members
                .iter()
                .filter(|m| !m.voter && self.reachable(m.id) && !self.is_removed(m.id))
                .filter(|m| m.role_pin != worker_only)
                .filter(|m| {
                    raw.raft
                        .prs()
                        .get(m.id)
                        .is_some_and(|p| p.matched >= committed)
                })
                .collect();
            // The control-plane hosts are the voters: a learner with a control-plane step first
            // (a named spare, a replacement), then control-plane-pinned spares, then hosts
            // without a step, workers last.
            let plan = self.cluster.plan.as_ref();
            candidates.sort_by_key(|m| {
                let step = plan.and_then(|p| crate::plan::step_of(p, m.id));
                let pinned = m.role_pin == muster_proto::RolePin::ControlPlane as i32;
                match step {
                    Some(s) if s.role != muster_proto::Role::Worker as i32 && !s.removed => 0,
                    None if pinned => 1,
                    None => 2,
                    Some(_) => 3,
                }
            });
            let candidate = candidates.first().map(|m| (*m).clone());
            if let Some(m) = candidate {
                return self.propose_member(m, true);
            }
        }
        let mut batch = Vec::new();
        while batch.len() < MAX_JOINS_PER_CHANGE {
            let Some((id, mut m)) = self.pending_joins.pop_first() else {
                break;
            };
            if state::member(&self.cluster, id).is_some() {
                continue;
            }
            m.joined_unix_ms = self.unix_ms;
            batch.push(m);
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.propose_members(batch, false)
    }

    /// Proposes taking `member` out of raft (its removal was applied first, `removal.rs`).
    pub(crate) fn propose_member_removal(&mut self, member: Member) {
        let Some(raw) = self.raw.as_mut() else { return };
        let mut single = ConfChangeSingle::default();
        single.node_id = member.id;
        single.set_change_type(ConfChangeType::RemoveNode);
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        let ctx = ConfChangeContext {
            member: Some(member.clone()),
            members: Vec::new(),
        }
        .encode_to_vec();
        cc.set_context(ctx.clone().into());
        match raw.propose_conf_change(ctx, cc) {
            Ok(()) => {
                tracing::info!(member = %format_id(member.id), name = %member.name, "proposed taking the removed host out of raft")
            }
            Err(e) => tracing::debug!(error = %e, "removal conf change dropped; will retry"),
        }
    }

    fn propose_member(&mut self, member: Member, voter: bool) -> Result<(), CoreError> {
        self.propose_members(vec![member], voter)
    }

    /// Proposes adding `members` (as voters or learners) in one conf change. More than one
    /// change makes raft-rs enter a joint configuration, which it leaves by itself (auto-leave);
    /// only learners are ever batched, so the voters never change jointly.
    fn propose_members(&mut self, members: Vec<Member>, voter: bool) -> Result<(), CoreError> {
        let Some(raw) = self.raw.as_mut() else {
            return Ok(());
        };
        let mut cc = ConfChangeV2::default();
        for m in &members {
            let mut single = ConfChangeSingle::default();
            single.node_id = m.id;
            single.set_change_type(if voter {
                ConfChangeType::AddNode
            } else {
                ConfChangeType::AddLearnerNode
            });
            cc.mut_changes().push(single);
        }
        let ctx = if members.len() == 1 {
            ConfChangeContext {
                member: members.first().cloned(),
                members: Vec::new(),
            }
        } else {
            ConfChangeContext {
                member: None,
                members: members.clone(),
            }
        }
        .encode_to_vec();
        cc.set_context(ctx.clone().into());
        match raw.propose_conf_change(ctx, cc) {
            Ok(()) => {
                for m in &members {
                    tracing::info!(member = %format_id(m.id), name = %m.name, voter, "proposed membership change");
                }
            }
            Err(e) => {
                tracing::debug!(count = members.len(), error = %e, "membership proposal dropped; will retry");
                if !voter {
                    for m in members {
                        self.pending_joins.insert(m.id, m);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Most joiners one conf change adds (a batch enters and leaves a joint configuration).
const MAX_JOINS_PER_CHANGE: usize = 64;

/// Why a leadership transfer cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Only the leader can hand over; it names the leader it knows (0 = none).
    #[error("this host is not the leader (leader: {})", if *.leader == 0 { "unknown".to_string() } else { format_id(*.leader) })]
    NotLeader {
        /// The current leader, 0 if unknown.
        leader: NodeId,
    },
    /// The requested target is not a voter of the cluster.
    #[error("{} is not a voter of this cluster", format_id(*.0))]
    NotAVoter(NodeId),
    /// The requested target leads already.
    #[error("{} already leads", format_id(*.0))]
    AlreadyLeads(NodeId),
    /// No other voter is reachable and caught up enough to take over.
    #[error("no other reachable voter to hand over to")]
    NoTarget,
}

impl<S: RaftStore> Node<S> {
    /// Operator entry point (`muster transfer`), asked of any member: the leader hands over
    /// ([`Node::transfer_leadership`]); a follower checks the target and forwards the request to
    /// its leader. Returns (target, the leader before, outputs); the target is 0 when a
    /// follower forwarded "the best voter" (the leader picks it).
    pub fn request_transfer(
        &mut self,
        to: Option<NodeId>,
    ) -> Result<(NodeId, NodeId, Vec<Output>), TransferError> {
        if self.is_leader() {
            let (target, outputs) = self.transfer_leadership(to)?;
            return Ok((target, self.cfg.id, outputs));
        }
        let leader = self.leader_id();
        if leader == 0 || self.cluster.cluster_id == 0 {
            return Err(TransferError::NotLeader { leader: 0 });
        }
        if let Some(t) = to {
            if t == leader {
                return Err(TransferError::AlreadyLeads(t));
            }
            let voter = crate::state::member(&self.cluster, t).is_some_and(|m| m.voter);
            if !voter {
                return Err(TransferError::NotAVoter(t));
            }
        }
        let forward = muster_proto::TransferForward {
            cluster_id: self.cluster.cluster_id,
            to: to.unwrap_or(0),
        };
        self.send(
            leader,
            muster_proto::envelope::Body::TransferForward(forward),
        );
        tracing::info!(leader = %format_id(leader), "transfer forwarded to the leader");
        Ok((to.unwrap_or(0), leader, std::mem::take(&mut self.out)))
    }

    /// A member forwarded an operator's transfer to us.
    pub(crate) fn on_transfer_forward(&mut self, from: NodeId, t: muster_proto::TransferForward) {
        let member = crate::state::member(&self.cluster, from).is_some();
        if t.cluster_id != self.cluster.cluster_id || !member || !self.is_leader() {
            self.drops.note(
                "transfer not from a member, or not to the leader",
                from,
                self.now_ms,
            );
            return;
        }
        let to = (t.to != 0).then_some(t.to);
        match self.transfer_leadership(to) {
            Ok((target, outputs)) => {
                tracing::info!(to = %format_id(target), by = %format_id(from), "transfer forwarded by a member");
                self.out.extend(outputs);
            }
            Err(e) => {
                tracing::warn!(error = %e, by = %format_id(from), "a forwarded transfer cannot be carried out")
            }
        }
    }

    /// Planned handover: releases the VIP first (a transfer bypasses the raft-rs lease, see
    /// `lease.rs`), then asks raft-rs to transfer leadership to `to`, or to the most caught-up
    /// reachable voter. Returns the target and the outputs to carry out, in order; raft-rs's
    /// messages for the transfer go out with the next input, which the caller feeds at once.
    pub fn transfer_leadership(
        &mut self,
        to: Option<NodeId>,
    ) -> Result<(NodeId, Vec<Output>), TransferError> {
        let Some(raw) = self.raw.as_ref() else {
            return Err(TransferError::NotLeader { leader: 0 });
        };
        if raw.raft.state != StateRole::Leader {
            return Err(TransferError::NotLeader {
                leader: raw.raft.leader_id,
            });
        }
        let voters: Vec<NodeId> = self
            .cluster
            .members
            .iter()
            .filter(|m| m.voter && m.id != self.cfg.id)
            .map(|m| m.id)
            .collect();
        let target = match to {
            Some(t) if voters.contains(&t) => t,
            Some(t) => return Err(TransferError::NotAVoter(t)),
            None => voters
                .iter()
                .copied()
                .filter(|id| self.reachable(*id))
                .max_by_key(|id| raw.raft.prs().get(*id).map_or(0, |p| p.matched))
                .ok_or(TransferError::NoTarget)?,
        };
        if self.lease.holding {
            self.lease.holding = false;
            tracing::info!(to = %format_id(target), "releasing the endpoint before handing over leadership");
            self.out.push(Output::EndpointRelease);
        }
        if let Some(raw) = self.raw.as_mut() {
            raw.transfer_leader(target);
        }
        tracing::info!(to = %format_id(target), "leadership transfer started");
        Ok((target, std::mem::take(&mut self.out)))
    }
}
