//! Formation: how hosts that are in no cluster end up in exactly one.
//!
//! Each host tells its connected peers (hello) which cluster it is in, if any. A host in no
//! cluster that sees one asks to join the best cluster it sees (a locked one, then most members,
//! then lowest cluster id). A host that sees no cluster waits until it sees `expected_nodes` hosts or `settle_ms` has
//! passed since boot; then the lowest id among the hosts it sees bootstraps a one-voter cluster and
//! the others join it. If two clusters meet anyway (partial discovery), the members of the worse
//! one dissolve their raft state and join the better one — never once a host is locked (its log
//! holds its cluster's lock entry, `site.rs`), whatever peers claim.
//!
//! Peers' claims are hints, bounded in what they can cost:
//! - *Join before leave*: a member that hears of a better cluster first asks to join it while it
//!   stays in its own, and dissolves its state only once that cluster's leader (a peer whose hello
//!   says it leads it) contacts it over raft — an admission, not a claim.
//! - A peer whose advertised cluster does not admit us within [`JOIN_ADMIT_TIMEOUT_MS`] is
//!   distrusted: its hellos no longer count for formation, for [`DISTRUST_MS`], doubling each
//!   time (up to 16×). The time runs from the first cluster asked, across switches; a peer first
//!   heard advertising less than that before the timeout, and still naming its cluster, is spared.
//! - A lower-id peer that stays unformed longer than an honest one could
//!   ([`squatting`](Node::squatting)) no longer holds the lowest-id bootstrap back.
//! - Only a peer that says it leads the cluster we asked to join can start our raft group.

use muster_proto::envelope::Body;
use muster_proto::{ClusterState, JoinRequest, JoinResponse, Member};
use raft::prelude::{ConfState, HardState};

use crate::config::{format_id, NodeId};
use crate::node::{CoreError, Node, Phase};
use crate::state;
use crate::storage::{applied_snapshot, RaftStore};

/// How long a joiner waits for its first snapshot before it gives up on that cluster.
const JOIN_SNAPSHOT_TIMEOUT_MS: u64 = 5_000;

/// A host asking to join a cluster that no leader of it contacts within this time stops believing
/// the peers that advertise it (an honest leader admits within a few hundred ms).
pub const JOIN_ADMIT_TIMEOUT_MS: u64 = 3_000;

/// How long a peer whose cluster never admitted us is ignored, the first time (then doubling).
pub const DISTRUST_MS: u64 = 30_000;

/// Most peers remembered as distrusted at once (the soonest to expire make room).
const MAX_DISTRUSTED: usize = 256;

/// Most advertisers remembered for one join attempt.
const MAX_JOIN_ADVERTISERS: usize = 64;

/// A peer that advertised a cluster we asked to join, and since when (one join attempt).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Advertiser {
    pub id: NodeId,
    pub cluster_id: u64,
    pub since_ms: u64,
}

/// A better cluster this member asked to join while staying in its own.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MergeProbe {
    pub cluster_id: u64,
    pub since_ms: u64,
}

/// What formation keeps of the best cluster its peers advertise (`best_visible_cluster`), so
/// a joining host does not walk its peer table on every tick: at a boot storm of 1000 hosts
/// those walks were a tenth of the simulator's time. It holds while `stale` is false, which
/// these keep true: a hello naming a better cluster replaces `best`; a walk is due when the
/// best's advertiser stops counting (silent, disconnected, gone, or now naming less), when a
/// peer that did not count comes back (a message or connection after a silence), when the
/// distrust table changes or an entry of it expires (`trust_change_ms`), and after any time
/// as a member (a member's peer table is not kept for it). Debug builds check every answer
/// against a walk.
#[derive(Debug, Clone)]
pub(crate) struct VisibleCluster {
    pub stale: bool,
    pub best: Option<Advert>,
    pub trust_change_ms: u64,
}

impl Default for VisibleCluster {
    fn default() -> Self {
        VisibleCluster {
            stale: true,
            best: None,
            trust_change_ms: u64::MAX,
        }
    }
}

/// A cluster one peer's latest hello advertises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Advert {
    pub source: NodeId,
    pub cluster_id: u64,
    pub member_count: u32,
    pub locked: bool,
}

impl Advert {
    fn of(source: NodeId, h: &crate::hello::PeerHello) -> Self {
        Advert {
            source,
            cluster_id: h.cluster_id,
            member_count: h.member_count,
            locked: h.locked,
        }
    }

    fn rank(&self) -> (bool, u32, std::cmp::Reverse<u64>) {
        rank(self.locked, self.member_count, self.cluster_id)
    }
}

/// An honest lowest-id host bootstraps within `settle_ms` of being seen; one unformed for longer
/// than `settle_ms` plus this grace is squatting and no longer holds others back.
pub const SQUAT_GRACE_MS: u64 = 2_000;

/// Ranks clusters for joining and merging: a locked one first (it never dissolves, so the others
/// must come to it for the site to become one cluster; a member count can be inflated by a host
/// admitted that never came), then more members, then the lower cluster id.
fn rank(locked: bool, member_count: u32, cluster_id: u64) -> (bool, u32, std::cmp::Reverse<u64>) {
    (locked, member_count, std::cmp::Reverse(cluster_id))
}

impl<S: RaftStore> Node<S> {
    /// One formation step for a host in no cluster: join what it sees, or bootstrap.
    pub(crate) fn formation_tick(&mut self) -> Result<(), CoreError> {
        if self.quiet_until_ms.is_some_and(|q| self.now_ms < q) {
            // Just booted or dissolved: the cluster we were in may still count us (`lease.rs`).
            return Ok(());
        }
        if let Phase::Joining {
            cluster_id,
            since_ms,
        } = self.phase
        {
            if self.now_ms >= since_ms + JOIN_ADMIT_TIMEOUT_MS {
                self.distrust_advertisers(cluster_id, since_ms);
                self.phase = Phase::Discovering;
            }
        }
        if let Some(cluster_id) = self.best_visible_cluster().map(|(id, _)| id) {
            let switching =
                !matches!(self.phase, Phase::Joining { cluster_id: c, .. } if c == cluster_id);
            if switching {
                tracing::info!(cluster = %format_id(cluster_id), "found a cluster; asking to join");
                // The admission clock runs from the first cluster we asked, across switches, so
                // peers that keep naming ever better clusters cannot keep us waiting.
                let since_ms = match self.phase {
                    Phase::Joining { since_ms, .. } => since_ms,
                    _ => {
                        self.join_advertisers.clear();
                        self.now_ms
                    }
                };
                let new = self.advertisers(cluster_id);
                let now = self.now_ms;
                for id in new {
                    if self.join_advertisers.len() < MAX_JOIN_ADVERTISERS
                        && !self.join_advertisers.iter().any(|a| a.id == id)
                    {
                        self.join_advertisers.push(Advertiser {
                            id,
                            cluster_id,
                            since_ms: now,
                        });
                    }
                }
                self.phase = Phase::Joining {
                    cluster_id,
                    since_ms,
                };
                self.last_join_ms = None;
                self.join_target = None;
            }
            self.maybe_send_join(cluster_id);
            return Ok(());
        }
        self.phase = Phase::Discovering;
        let unformed: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                self.peer_reachable(p)
                    && p.hello.as_ref().is_some_and(|h| h.cluster_id == 0)
                    && !self.squatting(p)
            })
            .map(|(id, _)| *id)
            .collect();
        let boot = self.boot_ms.unwrap_or(self.now_ms);
        let settled = self.now_ms.saturating_sub(boot) >= self.cfg.settle_ms;
        let enough = unformed.len() + 1 >= self.cfg.expected_nodes;
        let lowest = unformed.iter().all(|id| *id > self.cfg.id);
        if (enough || settled) && lowest {
            self.bootstrap(unformed.len() + 1)?;
        }
        Ok(())
    }

    /// Whether an unformed peer has stayed unformed longer than an honest host could while we
    /// see it (see [`SQUAT_GRACE_MS`]): it is left out of the lowest-id rule.
    pub(crate) fn squatting(&self, p: &crate::node::Peer) -> bool {
        p.unformed_since_ms
            .is_some_and(|t| self.now_ms >= t + self.cfg.settle_ms + SQUAT_GRACE_MS)
    }

    /// Whether a peer's hellos count for formation decisions (not distrusted).
    pub(crate) fn trusted(&self, id: NodeId) -> bool {
        self.distrusted
            .get(&id)
            .is_none_or(|(until, _)| self.now_ms >= *until)
    }

    /// The peers whose latest hello names `cluster_id`.
    fn advertisers(&self, cluster_id: u64) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.hello.as_ref().is_some_and(|h| h.cluster_id == cluster_id))
            .map(|(id, _)| *id)
            .collect()
    }

    /// No leader of `cluster_id` admitted us since `since_ms`: distrust every peer that advertised
    /// it when we chose it, or advertises it now, and every peer that advertised a cluster we
    /// switched to on the way — but not one we first heard advertise a cluster less than
    /// [`JOIN_ADMIT_TIMEOUT_MS`] ago that still advertises it: that cluster had no fair chance
    /// to admit us (peers naming ever better clusters made us switch away from it), and an
    /// honest one keeps naming its own. (A peer that names a new cluster every time is
    /// distrusted as before; one that keeps a false claim costs one more attempt.)
    fn distrust_advertisers(&mut self, cluster_id: u64, since_ms: u64) {
        let now = self.now_ms;
        let collected = std::mem::take(&mut self.join_advertisers);
        let fair = |at: u64| now >= at + JOIN_ADMIT_TIMEOUT_MS;
        let chosen_ms = collected
            .iter()
            .filter(|a| a.cluster_id == cluster_id)
            .map(|a| a.since_ms)
            .min()
            .unwrap_or(since_ms);
        let mut liars = if fair(chosen_ms) {
            self.advertisers(cluster_id)
        } else {
            Vec::new()
        };
        let still_names = |a: &Advertiser| {
            self.peers
                .get(&a.id)
                .and_then(|p| p.hello.as_ref())
                .is_some_and(|h| h.cluster_id == a.cluster_id)
        };
        liars.extend(
            collected
                .iter()
                .filter(|a| fair(a.since_ms) || !still_names(a))
                .map(|a| a.id),
        );
        liars.sort_unstable();
        liars.dedup();
        tracing::warn!(
            cluster = %format_id(cluster_id),
            waited_ms = now - since_ms,
            advertisers = liars.len(),
            "no leader of the cluster we asked to join contacted us; ignoring the peers that advertise it for a while"
        );
        for id in liars {
            if self.distrusted.len() >= MAX_DISTRUSTED && !self.distrusted.contains_key(&id) {
                let soonest = self
                    .distrusted
                    .iter()
                    .min_by_key(|(_, (until, _))| *until)
                    .map(|(id, _)| *id);
                if let Some(s) = soonest {
                    self.distrusted.remove(&s);
                }
            }
            let times = self.distrusted.get(&id).map_or(0, |(_, n)| *n);
            let until = now + (DISTRUST_MS << times.min(4));
            self.distrusted.insert(id, (until, times + 1));
            self.drops
                .note("hellos of a cluster that never admitted us", id, now);
        }
        self.visible.stale = true;
    }

    /// The best cluster among connected, trusted peers' hellos: (cluster id, member count).
    /// A host in formation asks on every tick; the answer is kept ([`VisibleCluster`]) and
    /// the peer table walked again only when the answer may have changed.
    fn best_visible_cluster(&mut self) -> Option<(u64, u32)> {
        if !self.visible.stale {
            let source_counts = self.visible.best.is_none_or(|a| {
                self.peers
                    .get(&a.source)
                    .is_some_and(|p| self.peer_reachable(p))
            });
            if !source_counts || self.now_ms >= self.visible.trust_change_ms {
                self.visible.stale = true;
            }
        }
        if self.visible.stale {
            self.visible = VisibleCluster {
                stale: false,
                best: self.walk_best_visible(),
                trust_change_ms: self.next_trust_change_ms(),
            };
        }
        let best = self.visible.best.map(|a| (a.cluster_id, a.member_count));
        debug_assert_eq!(
            best,
            self.walk_best_visible()
                .map(|a| (a.cluster_id, a.member_count)),
            "the kept best visible cluster differs from a walk of the peer table"
        );
        best
    }

    /// The walk behind [`Node::best_visible_cluster`]: the cheap tests go first (the
    /// connection flag beside the entry, then the boxed hello); the distrust table is looked
    /// up only if it holds anyone.
    fn walk_best_visible(&self) -> Option<Advert> {
        let anyone_distrusted = !self.distrusted.is_empty();
        let (now, timeouts) = (self.now_ms, self.peer_timeouts());
        self.peers
            .iter()
            .filter(|(_, p)| p.connected)
            .filter_map(|(id, p)| {
                let h = p.hello.as_deref().filter(|h| h.cluster_id != 0)?;
                let counts = crate::hello::reachable_at(p, now, timeouts)
                    && (!anyone_distrusted || self.trusted(*id));
                counts.then(|| Advert::of(*id, h))
            })
            .max_by_key(Advert::rank)
    }

    /// When the next distrusted peer is trusted again (`u64::MAX`: none is waiting).
    fn next_trust_change_ms(&self) -> u64 {
        let now = self.now_ms;
        self.distrusted
            .values()
            .map(|(until, _)| *until)
            .filter(|until| *until > now)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Keeps [`Node::visible`] true after the hello just stored for `from`: a better cluster
    /// is the new best; the best's own advertiser naming a worse one needs a walk.
    pub(crate) fn note_visible_hello(&mut self, from: NodeId) {
        if self.visible.stale {
            return;
        }
        let Some(p) = self.peers.get(&from) else {
            return;
        };
        let advert = p
            .hello
            .as_deref()
            .filter(|h| h.cluster_id != 0 && self.peer_reachable(p) && self.trusted(from))
            .map(|h| Advert::of(from, h));
        match (self.visible.best, advert) {
            (Some(best), new) if best.source == from => match new {
                Some(n) if n.rank() >= best.rank() => self.visible.best = Some(n),
                _ => self.visible.stale = true,
            },
            (Some(best), Some(n)) if n.rank() > best.rank() => self.visible.best = Some(n),
            (None, Some(n)) => self.visible.best = Some(n),
            _ => {}
        }
    }

    /// Sends a join request every `join_retry_ms`, to the leader if known, else to a member.
    fn maybe_send_join(&mut self, cluster_id: u64) {
        let due = self
            .last_join_ms
            .is_none_or(|t| self.now_ms >= t + self.cfg.join_retry_ms);
        if !due {
            return;
        }
        self.last_join_ms = Some(self.now_ms);
        let Some(target) = self.join_target_for(cluster_id) else {
            return;
        };
        let member = self.self_member(false);
        tracing::debug!(cluster = %format_id(cluster_id), to = %format_id(target), "join request");
        self.send(
            target,
            Body::JoinRequest(JoinRequest {
                cluster_id,
                member: Some(member),
            }),
        );
    }

    /// Whom to ask to join `cluster_id`: the leader a join response named, else the leader a
    /// trusted peer of that cluster names, else any such peer (it relays to its leader).
    fn join_target_for(&self, cluster_id: u64) -> Option<NodeId> {
        let in_cluster = |id: &NodeId, p: &crate::node::Peer| {
            self.trusted(*id) && p.hello.as_ref().is_some_and(|h| h.cluster_id == cluster_id)
        };
        let hinted_leader = self
            .peers
            .iter()
            .filter(|(id, p)| in_cluster(id, p))
            .filter_map(|(_, p)| p.hello.as_ref().map(|h| h.leader_id))
            .find(|l| *l != 0 && self.reachable(*l));
        self.join_target
            .filter(|t| self.reachable(*t))
            .or(hinted_leader)
            .or_else(|| {
                self.peers
                    .iter()
                    .find(|(id, p)| self.peer_reachable(p) && in_cluster(id, p))
                    .map(|(id, _)| *id)
            })
    }

    /// A member's answer to our join request.
    pub(crate) fn on_join_response(&mut self, from: NodeId, r: JoinResponse) {
        if !r.accepted {
            tracing::debug!(from = %format_id(from), reason = %r.reason, "join request not taken");
            if r.leader_id != 0 && r.leader_id != self.cfg.id {
                self.join_target = Some(r.leader_id);
                // Ask the leader now rather than after the retry interval.
                self.last_join_ms = None;
            }
        }
    }

    /// This host as a member record.
    pub(crate) fn self_member(&self, voter: bool) -> Member {
        Member {
            id: self.cfg.id,
            name: self.cfg.name.clone(),
            address: self.cfg.address.clone(),
            voter,
            joined_unix_ms: self.unix_ms,
            public_key: self.cfg.public_key.clone(),
            role_pin: self.cfg.role_pin as i32,
        }
    }

    /// Creates a new cluster with this host as its only voter and leader.
    fn bootstrap(&mut self, seen: usize) -> Result<(), CoreError> {
        let cluster_id = self.random_id();
        tracing::info!(
            cluster = %format_id(cluster_id),
            hosts_seen = seen,
            expected = self.cfg.expected_nodes,
            "bootstrapping a new cluster as the lowest id in sight"
        );
        self.cluster = ClusterState {
            cluster_id,
            members: vec![self.self_member(true)],
            created_unix_ms: self.unix_ms,
            ..Default::default()
        };
        let snap = applied_snapshot(
            1,
            1,
            ConfState::from((vec![self.cfg.id], Vec::<u64>::new())),
            state::encode_state(&self.cluster),
        );
        let mut hs = HardState::default();
        hs.term = 1;
        hs.commit = 1;
        self.store.lock().persist(Some(&snap), &[], Some(&hs))?;
        self.start_raft(1)?;
        self.raft_cluster_id = cluster_id;
        // Tell the peers at once: they join as soon as they hear of the cluster.
        self.last_hello_ms = None;
        if let Some(raw) = self.raw.as_mut() {
            raw.campaign()?;
            crate::replica::reseed_election_timeout(
                raw,
                &mut self.rng,
                &mut self.raft_role,
                self.cfg.election_ticks,
            );
        }
        self.membership_replaced();
        Ok(())
    }

    /// Starts raft for the cluster we asked to join when its leader first contacts us: `from`
    /// must say, in its latest hello, that it leads that cluster. Returns whether raft started.
    pub(crate) fn accept_join(&mut self, from: NodeId, cluster_id: u64) -> Result<bool, CoreError> {
        let leads = self
            .peers
            .get(&from)
            .and_then(|p| p.hello.as_ref())
            .is_some_and(|h| h.cluster_id == cluster_id && h.leader_id == from);
        if !leads {
            self.drops.note(
                "raft contact from a host not leading the cluster being joined",
                from,
                self.now_ms,
            );
            return Ok(false);
        }
        tracing::info!(cluster = %format_id(cluster_id), leader = %format_id(from), "contacted by the cluster's leader; starting raft as a new member");
        self.start_raft(0)?;
        self.raft_cluster_id = cluster_id;
        self.join_started_ms = Some(self.now_ms);
        self.admitted_by = Some(from);
        Ok(true)
    }

    /// A host that started raft to join a cluster but never received its first snapshot (the
    /// cluster dissolved, or its leader vanished) goes back to discovering instead of waiting
    /// forever.
    pub(crate) fn abandon_stalled_join(&mut self) -> Result<(), CoreError> {
        if self.cluster.cluster_id != 0 {
            self.join_started_ms = None;
            return Ok(());
        }
        let Some(started) = self.join_started_ms else {
            return Ok(());
        };
        if self.now_ms >= started + JOIN_SNAPSHOT_TIMEOUT_MS {
            tracing::warn!(
                cluster = %format_id(self.raft_cluster_id),
                waited_ms = self.now_ms - started,
                "no snapshot from the cluster being joined; discovering again"
            );
            self.join_started_ms = None;
            self.dissolve()?;
        }
        Ok(())
    }

    /// Remembers a peer whose hello names a better-ranked cluster that may still take ours in
    /// (not locked), for `merge_check` at the next tick.
    pub(crate) fn note_merge_hint(&mut self, from: NodeId, h: &crate::hello::PeerHello) {
        if self.outranks_ours(h) && self.trusted(from) {
            self.merge_hint = Some(from);
        }
    }

    /// Whether `h` names another cluster ranked above ours (we are in one). A claim, not a fact:
    /// it may make an unlocked host leave its cluster, never a locked one. The sender's `locked`
    /// and member count rank its cluster; a false claim costs a join that no leader admits, after
    /// which the sender is distrusted (module docs).
    pub(crate) fn outranks_ours(&self, h: &crate::hello::PeerHello) -> bool {
        let ours = self.cluster.cluster_id;
        ours != 0
            && h.cluster_id != 0
            && h.cluster_id != ours
            && rank(h.locked, h.member_count, h.cluster_id)
                > rank(self.locked(), self.cluster.members.len() as u32, ours)
    }

    /// If a reachable peer is in a better cluster that may still take ours in, ask to join it
    /// (join before leave: we dissolve only once its leader admits us, `on_merge_admission`).
    pub(crate) fn merge_check(&mut self) -> Result<(), CoreError> {
        let ours = self.cluster.cluster_id;
        let Some(from) = self.merge_hint.take() else {
            return Ok(());
        };
        if self.locked() || self.merge_probe.is_some() || !self.reachable(from) {
            // A locked host never dissolves, whatever a peer claims (`site.rs`).
            return Ok(());
        }
        let better = self
            .peers
            .get(&from)
            .and_then(|p| p.hello.as_ref())
            .filter(|h| self.outranks_ours(h))
            .map(|h| (h.cluster_id, h.member_count));
        if let Some((other, count)) = better {
            tracing::info!(
                ours = %format_id(ours),
                our_members = self.cluster.members.len(),
                other = %format_id(other),
                other_members = count,
                "a better cluster is in sight; asking to join it before leaving ours"
            );
            self.merge_probe = Some(MergeProbe {
                cluster_id: other,
                since_ms: self.now_ms,
            });
            let now = self.now_ms;
            self.join_advertisers = self
                .advertisers(other)
                .into_iter()
                .map(|id| Advertiser {
                    id,
                    cluster_id: other,
                    since_ms: now,
                })
                .collect();
            self.last_join_ms = None;
            self.join_target = None;
        }
        Ok(())
    }

    /// While probing a better cluster: repeat the join request; give up (and distrust its
    /// advertisers) if no leader of it admits us in time, or once we are locked.
    pub(crate) fn merge_probe_tick(&mut self) {
        let Some(probe) = self.merge_probe.clone() else {
            return;
        };
        if self.locked() {
            self.merge_probe = None;
            return;
        }
        if self.now_ms >= probe.since_ms + JOIN_ADMIT_TIMEOUT_MS {
            self.distrust_advertisers(probe.cluster_id, probe.since_ms);
            self.merge_probe = None;
            return;
        }
        self.maybe_send_join(probe.cluster_id);
    }

    /// A raft message of `cluster_id` (not ours) from `from`: if it is the leader of the cluster
    /// we are probing, that is our admission — dissolve ours now; after the quiet time we join
    /// it. Returns whether the message was that admission.
    pub(crate) fn on_merge_admission(
        &mut self,
        from: NodeId,
        cluster_id: u64,
    ) -> Result<bool, CoreError> {
        let probing = self
            .merge_probe
            .as_ref()
            .is_some_and(|p| p.cluster_id == cluster_id);
        let leads = self
            .peers
            .get(&from)
            .and_then(|p| p.hello.as_ref())
            .is_some_and(|h| h.cluster_id == cluster_id && h.leader_id == from);
        if !probing || !leads || self.locked() {
            return Ok(false);
        }
        tracing::warn!(
            ours = %format_id(self.cluster.cluster_id),
            other = %format_id(cluster_id),
            leader = %format_id(from),
            "admitted by the better cluster's leader; dissolving ours to join it"
        );
        self.merge_probe = None;
        self.dissolve()?;
        Ok(true)
    }

    /// Durably forgets this host's cluster and starts discovering again. Never for a locked host.
    pub(crate) fn dissolve(&mut self) -> Result<(), CoreError> {
        if self.locked() {
            tracing::error!(
                cluster = %format_id(self.cluster.cluster_id),
                "refusing to dissolve a locked cluster"
            );
            return Ok(());
        }
        self.raw = None;
        self.admitted_by = None;
        self.store.lock().reset()?;
        self.cluster = ClusterState::default();
        self.raft_cluster_id = 0;
        self.pending_joins.clear();
        self.merge_hint = None;
        self.merge_probe = None;
        self.phase = Phase::Discovering;
        self.membership_replaced();
        self.quiet_until_ms = Some(self.now_ms + self.formation_quiet_ms());
        // Tell peers at once that we left (they stop counting us for the VIP site rule).
        self.last_hello_ms = None;
        Ok(())
    }
}
