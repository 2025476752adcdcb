//! The node: one host's state machine. Inputs in, outputs out; nothing else.
//!
//! [`Node::handle`] is the only entry point for events. The daemon's event loop and the in-memory
//! scenario network call it; they deliver the returned [`Output`]s. Formation (discovering peers,
//! bootstrapping, joining, merging) lives in `formation.rs`; driving raft-rs (ready loop, apply,
//! membership changes) in `replica.rs`.

use std::collections::BTreeMap;

use muster_proto::{ClusterState, Envelope, Hello, Member, MemberStatus, StatusResponse};
use raft::RawNode;
use rand::{Rng, SeedableRng};

use crate::config::{NodeConfig, NodeId};
use crate::state::{self, ApplyError};
use crate::storage::{RaftStore, SharedStore, StoreError};

/// Something that happened to the node.
#[derive(Debug, Clone)]
pub enum Input {
    /// Time passed. `now_ms` is monotonic; `unix_ms` is wall clock, used only for join times.
    Tick {
        /// Monotonic milliseconds.
        now_ms: u64,
        /// Wall clock milliseconds since the Unix epoch.
        unix_ms: u64,
    },
    /// An authenticated connection to a peer is up.
    PeerConnected {
        /// The peer.
        id: NodeId,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        id: NodeId,
    },
    /// A message from an authenticated peer.
    Message {
        /// Sender, taken from the authenticated connection.
        from: NodeId,
        /// The message.
        envelope: Envelope,
    },
    /// The shell finished an attempt of this host's install step (`Output::RunInstall`): the
    /// hook exited 0 and the health probe passed, or why not (secrets scrubbed).
    InstallDone {
        /// The attempt `RunInstall` named.
        attempt: u32,
        /// Ok, or why the attempt failed.
        result: Result<(), String>,
        /// What the hook wrote to `MUSTER_SECRETS_OUT`: shared with later hosts if this was the
        /// init step and it succeeded.
        secrets_out: crate::secrets::SecretValues,
    },
    /// The agent probed this host's API server (its health gate): the leader hands over when
    /// its own stays unhealthy and another control-plane host's is healthy (`health.rs`).
    LocalHealth {
        /// Whether the probe passed.
        healthy: bool,
    },
    /// The shell finished an attempt of a certificate upload (`Output::RunCertificateUpload`).
    CertificateUploadDone {
        /// The upload `RunCertificateUpload` named.
        generation: u32,
        /// Its attempt.
        attempt: u32,
        /// Ok, or why the upload failed (secrets scrubbed).
        result: Result<(), String>,
    },
    /// The shell finished an attempt of a removal duty (`Output::RunRemoval`).
    RemovalDone {
        /// The removed host.
        node_id: NodeId,
        /// The attempt `RunRemoval` named.
        attempt: u32,
        /// Ok, or why the command failed.
        result: Result<(), String>,
    },
}

/// Something the node wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Deliver a message to a peer (best effort).
    Send {
        /// Recipient.
        to: NodeId,
        /// Message.
        envelope: Envelope,
    },
    /// The replicated membership changed: the shell learns addresses and keys to dial.
    MembersChanged {
        /// The members to learn: those membership changes added (or changed: a rejoin with a
        /// new address) since the last `MembersChanged`; all of them after a start, a
        /// snapshot, a bootstrap, leaving a cluster or being removed. Removed members are not
        /// listed (`Output::Denied` names them). Each host copying every member at every
        /// change cost a site of 1000 a copy of 1000 members per host, about 40 times while
        /// it forms.
        members: Vec<Member>,
    },
    /// Hold the API endpoint — every carrier the site has: add and announce the VIP, point the
    /// DNS name here. Emitted only while this node is leader with a valid lease (see
    /// `lease.rs`); followed by `EndpointRelease` when the lease ends, as the core sees it at its
    /// next input. `until_ms` (this node's monotonic clock, as in `Input::Tick`) is when the
    /// lease ends: the shell must drop the VIP by then on its own if the core stalls (a fence
    /// that does not depend on the event loop running). `term` is the raft term the lease is
    /// of: the DNS updater stamps it on the record so an older term never overwrites a newer one.
    EndpointAcquire {
        /// The raft term of the lease.
        term: u64,
        /// When the lease ends unless renewed.
        until_ms: u64,
    },
    /// The lease of the held endpoint was renewed: move the fence to `until_ms`.
    EndpointRenew {
        /// The raft term of the lease.
        term: u64,
        /// When the lease now ends unless renewed again.
        until_ms: u64,
    },
    /// Stop holding the endpoint: remove the VIP now (the DNS record is left for the next
    /// holder to replace).
    EndpointRelease,
    /// Run this host's install step (the hook, then the health probe) and answer with
    /// `Input::InstallDone` for `attempt`. Emitted once the step's start is committed; again
    /// after a restart while it is running (hooks are idempotent).
    RunInstall {
        /// This host's role in the plan.
        role: muster_proto::Role,
        /// The attempt number.
        attempt: u32,
        /// The plan's join secrets for `MUSTER_SECRETS` (opened; `Debug` shows keys only).
        secrets: crate::secrets::SecretValues,
    },
    /// Leader: run `[kubernetes] remove_command` for a removed host that had a step (`duty.rs`);
    /// answer with `Input::RemovalDone` for `attempt`.
    RunRemoval {
        /// The removed host: name, address, role.
        duty: muster_proto::RemovalDuty,
        /// The attempt number.
        attempt: u32,
    },
    /// Leader (kubeadm): upload the control-plane certificates again under the fresh
    /// `CERTIFICATE_KEY` in `secrets` (the install hook with `MUSTER_ROLE=upload-certs`,
    /// `certs.rs`); answer with `Input::CertificateUploadDone`.
    RunCertificateUpload {
        /// The upload.
        generation: u32,
        /// Its attempt.
        attempt: u32,
        /// The plan's join secrets with the fresh certificate key (opened).
        secrets: crate::secrets::SecretValues,
    },
    /// The deny list changed (and once at start): the transport must refuse these identities at
    /// the connection, before anything they send reaches the core (`removal.rs`).
    Denied {
        /// Every removed host, with its public key.
        removed: Vec<muster_proto::Removed>,
    },
}

/// What an operator's action (`muster remove`, `muster plan retry|skip`) resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionTarget {
    /// The host the action is about.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// The leader that proposes it (this host, or the one the request was forwarded to).
    pub leader: NodeId,
}

/// Why the node cannot go on. Each is fatal to the agent: it must not acknowledge what it did not
/// persist, nor run on a state it cannot apply.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The store failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// A committed entry could not be applied.
    #[error("apply: {0}")]
    Apply(#[from] ApplyError),
    /// raft-rs refused an operation.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The stored state does not decode.
    #[error("stored cluster state does not decode: {0}")]
    State(String),
    /// The configuration is invalid.
    #[error("config: {0}")]
    Config(String),
}

/// What this node knows about one peer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peer {
    pub connected: bool,
    pub last_heard_ms: Option<u64>,
    /// What we keep of its latest hello, boxed: the peer table is walked often, and a small
    /// entry keeps a walk over a thousand peers in few cache lines.
    pub hello: Option<Box<crate::hello::PeerHello>>,
    /// Its id is in `known_hosts` (which only grows), so its hellos need not look it up there.
    pub known_host: bool,
    /// When a valid raft message of our current cluster last came from this peer.
    pub raft_heard_ms: Option<u64>,
    /// Whether the peer is a member of our cluster (as applied here).
    pub member: bool,
    /// Whether the peer is a member that is not a voter (as applied here).
    pub learner: bool,
    /// Leader: when raft last sent this learner a heartbeat (`timers.rs`).
    pub heartbeat_sent_ms: Option<u64>,
    /// A member that was sent what `Node::member_hello_sent` says (cleared whenever it is not
    /// a member at a round), so a round saying the same again may skip it (`hello.rs`).
    pub member_hello_current: bool,
    /// The interval its latest hello announced, at most `MAX_ANNOUNCED_HELLO_INTERVAL_MS` (0:
    /// none, or an older agent); beside the flags rather than in `hello`, so the reachability
    /// check in every peer-table walk reads no second cache line (`hello.rs`).
    pub hello_interval_ms: u32,
    /// Outsiders: when our next hello to it is due at the latest, as our last hello to it
    /// announced (`hello.rs`); 0 until greeted.
    pub hello_due_ms: u64,
    /// Since when the peer's hellos have said, without a break, that it is in no cluster (the
    /// bound on the lowest-id bootstrap rule, `formation.rs`).
    pub unformed_since_ms: Option<u64>,
}

/// Where the node is in forming a cluster.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Phase {
    /// In no cluster; watching peers to decide whether to bootstrap or whom to join.
    Discovering,
    /// Asked to join `cluster_id`; waits for the leader to add it and send a snapshot.
    Joining { cluster_id: u64, since_ms: u64 },
    /// Has a raft group (possibly still waiting for its first snapshot as a new learner).
    Member,
    /// Removed by an operator: takes part in nothing until `muster reset` (`removal.rs`).
    Removed,
}

/// One host's state machine. `S` is its durable store.
pub struct Node<S: RaftStore> {
    pub(crate) cfg: NodeConfig,
    pub(crate) rng: rand::rngs::StdRng,
    pub(crate) store: SharedStore<S>,
    pub(crate) raw: Option<RawNode<SharedStore<S>>>,
    pub(crate) phase: Phase,
    pub(crate) cluster: ClusterState,
    /// The cluster the running raft group belongs to (set before the first snapshot arrives).
    pub(crate) raft_cluster_id: u64,
    /// When raft was started to join a cluster (cleared once its first snapshot arrives).
    pub(crate) join_started_ms: Option<u64>,
    /// (term, role, leader) when the election timeout was last drawn from `rng`.
    pub(crate) raft_role: Option<(u64, raft::StateRole, u64)>,
    /// Pre-vote repeats left in this pre-candidacy (`replica::retry_pre_vote`).
    pub(crate) pre_vote_retries: usize,
    pub(crate) peers: BTreeMap<NodeId, Peer>,
    pub(crate) now_ms: u64,
    pub(crate) unix_ms: u64,
    pub(crate) boot_ms: Option<u64>,
    pub(crate) last_raft_tick_ms: u64,
    /// When the last hello round ran (`hello.rs`; each peer has its own schedule within it,
    /// `Peer::hello_due_ms`); cleared: greet every outsider at the next tick.
    pub(crate) last_hello_ms: Option<u64>,
    /// Cleared: greet every member at the next tick (the VIP came or went, `lease.rs`).
    pub(crate) last_member_hello_ms: Option<u64>,
    /// What the last member round said (`hello.rs`): a round that would say the same skips
    /// the members that already heard it and exchange raft messages with this host.
    pub(crate) member_hello_sent: Option<Hello>,
    /// The cluster our last hello round announced (a change is news for every outsider).
    pub(crate) hello_cluster_id: u64,
    /// Connected peers outside our cluster: counted at each hello round, raised by each new
    /// one between rounds (the outsider hello interval follows it).
    pub(crate) outsiders_estimate: usize,
    /// Connected peers that are not members (outsiders), kept where `connected` or `member`
    /// changes, so a hello round of a formed member needs no walk (`hello.rs`).
    pub(crate) connected_outsiders: usize,
    /// A peer whose hello named a better-ranked cluster than ours (see `merge_check`).
    pub(crate) merge_hint: Option<NodeId>,
    pub(crate) last_join_ms: Option<u64>,
    /// Leader only: hosts that asked to join, not yet proposed. Bounded by `MAX_PENDING_JOINS`.
    pub(crate) pending_joins: BTreeMap<NodeId, Member>,
    pub(crate) join_target: Option<NodeId>,
    pub(crate) logger: slog::Logger,
    pub(crate) out: Vec<Output>,
    /// The membership changed: sync the peer table and tell the shell (`MembersChanged`).
    pub(crate) members_dirty: bool,
    /// What that `MembersChanged` lists: the members conf changes added (`Some`), or all of
    /// them (`None`, after anything that replaced the membership: [`Node::membership_replaced`]).
    pub(crate) members_added: Option<Vec<Member>>,
    pub(crate) lease: crate::lease::Lease,
    /// Every host of the site this node has heard of: hello senders, the members their hellos
    /// list, our own members, ourselves (see `lease.rs`, the site rule).
    pub(crate) known_hosts: std::collections::BTreeSet<NodeId>,
    /// Formation waits until then after boot and after dissolving (see `lease.rs`).
    pub(crate) quiet_until_ms: Option<u64>,
    /// When `known_hosts` last grew.
    pub(crate) known_hosts_changed_ms: u64,
    /// The site rule as last evaluated (once per tick, leader only).
    pub(crate) site_rule: crate::lease::SiteRule,
    /// The site lock and formed record (`site.rs`).
    pub(crate) site: crate::site::SiteState,
    /// Inbound messages dropped, by reason (`guard.rs`).
    pub(crate) drops: crate::guard::Drops,
    /// Joining only: the leader whose raft contact started our raft group.
    pub(crate) admitted_by: Option<NodeId>,
    /// Peers whose advertised cluster never admitted us: (ignored until, times distrusted)
    /// (`formation.rs`).
    pub(crate) distrusted: BTreeMap<NodeId, (u64, u32)>,
    /// Formation's best visible cluster, kept between ticks (`formation.rs`).
    pub(crate) visible: crate::formation::VisibleCluster,
    /// A better cluster we asked to join while still in ours (`formation.rs`, join before leave).
    pub(crate) merge_probe: Option<crate::formation::MergeProbe>,
    /// The peers that advertised the clusters we asked to join in this attempt, with the
    /// cluster and when (`formation.rs`).
    pub(crate) join_advertisers: Vec<crate::formation::Advertiser>,
    /// Leader only: when it first saw each removed host still in the membership.
    pub(crate) removal_seen_ms: BTreeMap<NodeId, u64>,
    /// Leader only, removed itself: when it last tried to hand leadership over.
    pub(crate) self_removal_transfer_ms: Option<u64>,
    /// The deny list changed since the shell was last told.
    pub(crate) denied_dirty: bool,
    /// This host's install step and the leader's plan proposals (`install.rs`).
    pub(crate) install: crate::install::InstallState,
    /// Seals and opens the join secrets (`secrets.rs`); none without `NodeConfig::secrets`.
    pub(crate) sealer: Option<crate::secrets::Sealer>,
    /// The local API server's health as the agent reports it (`health.rs`).
    pub(crate) health: crate::health::HealthState,
    /// The removal duty this leader runs (`duty.rs`).
    pub(crate) duty: crate::duty::DutyState,
    /// The certificate upload this leader runs (`certs.rs`).
    pub(crate) upload: crate::certs::UploadState,
    /// The applied state this node last saved from its ready loop, while it is the store's
    /// (cleared when raft starts and when a snapshot is installed): its encoded cluster state is
    /// reused by a batch that changes nothing (`replica.rs`).
    pub(crate) last_applied: Option<raft::prelude::Snapshot>,
}

/// Most peers the node keeps; beyond it, the longest-silent non-members are forgotten.
pub const MAX_PEERS: usize = 4096;
/// Most site hosts the node keeps count of for the site rule.
pub const MAX_KNOWN_HOSTS: usize = 4096;

/// Most join requests a leader holds at once; more are refused and retried by the joiner.
pub(crate) const MAX_PENDING_JOINS: usize = 256;

impl<S: RaftStore> Node<S> {
    /// Creates the node from its config and store. A store holding raft state resumes membership
    /// of its cluster (a restart); an empty one starts discovering. `seed` feeds every random
    /// choice the core makes (the cluster id of a bootstrap).
    pub fn new(cfg: NodeConfig, store: S, seed: u64) -> Result<Self, CoreError> {
        cfg.validate().map_err(CoreError::Config)?;
        let logger = slog::Logger::root(crate::log::TracingDrain, slog::o!());
        let sealer = cfg.secrets.as_ref().map(crate::secrets::Sealer::new);
        let mut node = Node {
            cfg,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            store: SharedStore::new(store),
            raw: None,
            phase: Phase::Discovering,
            cluster: ClusterState::default(),
            raft_cluster_id: 0,
            raft_role: None,
            pre_vote_retries: 0,
            join_started_ms: None,
            peers: BTreeMap::new(),
            now_ms: 0,
            unix_ms: 0,
            boot_ms: None,
            last_raft_tick_ms: 0,
            last_hello_ms: None,
            last_member_hello_ms: None,
            member_hello_sent: None,
            hello_cluster_id: 0,
            outsiders_estimate: 0,
            connected_outsiders: 0,
            merge_hint: None,
            last_join_ms: None,
            pending_joins: BTreeMap::new(),
            join_target: None,
            logger,
            out: Vec::new(),
            members_dirty: false,
            members_added: None,
            lease: Default::default(),
            known_hosts: std::collections::BTreeSet::new(),
            quiet_until_ms: None,
            known_hosts_changed_ms: 0,
            site_rule: Default::default(),
            site: Default::default(),
            drops: Default::default(),
            admitted_by: None,
            distrusted: BTreeMap::new(),
            visible: Default::default(),
            merge_probe: None,
            join_advertisers: Vec::new(),
            removal_seen_ms: BTreeMap::new(),
            self_removal_transfer_ms: None,
            denied_dirty: false,
            install: Default::default(),
            sealer,
            health: Default::default(),
            duty: Default::default(),
            upload: Default::default(),
            last_applied: None,
        };
        node.known_hosts.insert(node.cfg.id);
        node.restore()?;
        Ok(node)
    }

    /// Resumes from a non-empty store.
    fn restore(&mut self) -> Result<(), CoreError> {
        let (applied, hard_state) = {
            let store = self.store.lock();
            (
                store.applied().clone(),
                raft::Storage::initial_state(&*store)?.hard_state,
            )
        };
        if applied.get_metadata().index == 0 {
            if hard_state.term != 0 {
                // Crashed while joining, before the first snapshot: nothing worth keeping.
                tracing::info!("store holds only an unfinished join; starting over");
                self.store.lock().reset()?;
            }
            return Ok(());
        }
        self.cluster =
            state::decode_state(applied.get_data()).map_err(|e| CoreError::State(e.to_string()))?;
        self.denied_dirty = true;
        if self.is_removed(self.cfg.id) {
            tracing::warn!(
                cluster = %crate::format_id(self.cluster.cluster_id),
                "this host was removed from its cluster; it takes part in nothing until `muster reset`"
            );
            self.phase = Phase::Removed;
            return Ok(());
        }
        tracing::info!(
            cluster = %crate::format_id(self.cluster.cluster_id),
            applied = applied.get_metadata().index,
            term = hard_state.term,
            members = self.cluster.members.len(),
            "resuming raft state from store"
        );
        self.start_raft(applied.get_metadata().index)?;
        self.raft_cluster_id = self.cluster.cluster_id;
        self.site.lock_in_log = self.log_holds_lock(applied.get_metadata().index)?;
        self.sync_members();
        self.membership_replaced();
        Ok(())
    }

    /// Whether the log after `applied` holds a lock entry (a restarted host that acknowledged the
    /// lock before it applied it stays locked).
    fn log_holds_lock(&self, applied: u64) -> Result<bool, CoreError> {
        let store = self.store.lock();
        let last = raft::Storage::last_index(&*store)?;
        if last <= applied {
            return Ok(false);
        }
        let entries = raft::Storage::entries(
            &*store,
            applied + 1,
            last + 1,
            None,
            raft::GetEntriesContext::empty(false),
        )?;
        Ok(entries.iter().any(|e| {
            e.get_entry_type() == raft::prelude::EntryType::EntryNormal
                && crate::site::is_lock_entry(e.get_data())
        }))
    }

    /// Starts raft-rs over the store. `applied` is the index the state machine already reflects.
    pub(crate) fn start_raft(&mut self, applied: u64) -> Result<(), CoreError> {
        let store = self.store.clone();
        let config = raft::Config {
            id: self.cfg.id,
            election_tick: self.cfg.election_ticks,
            min_election_tick: self.cfg.election_ticks,
            max_election_tick: 2 * self.cfg.election_ticks,
            heartbeat_tick: self.cfg.heartbeat_ticks,
            applied,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        let mut raw = RawNode::new(&config, store, &self.logger)?;
        self.last_applied = None;
        for p in self.peers.values_mut() {
            p.raft_heard_ms = None;
        }
        self.site = Default::default();
        self.raft_role = None;
        crate::replica::reseed_election_timeout(
            &mut raw,
            &mut self.rng,
            &mut self.raft_role,
            self.cfg.election_ticks,
        );
        self.raw = Some(raw);
        self.phase = Phase::Member;
        Ok(())
    }

    /// Handles one input and returns what must be done. An error is fatal (see [`CoreError`]).
    pub fn handle(&mut self, input: Input) -> Result<Vec<Output>, CoreError> {
        match input {
            Input::Tick { now_ms, unix_ms } => self.on_tick(now_ms, unix_ms)?,
            Input::PeerConnected { id } => self.on_connected(id),
            Input::PeerDisconnected { id } => self.on_disconnected(id),
            Input::Message { from, envelope } => self.on_message(from, envelope)?,
            Input::InstallDone {
                attempt,
                result,
                secrets_out,
            } => self.on_install_done(attempt, result, secrets_out),
            Input::LocalHealth { healthy } => self.on_local_health(healthy),
            Input::RemovalDone {
                node_id,
                attempt,
                result,
            } => self.on_removal_done(node_id, attempt, result),
            Input::CertificateUploadDone {
                generation,
                attempt,
                result,
            } => self.on_upload_done(generation, attempt, result),
        }
        self.drive_raft()?;
        self.check_removed_self();
        self.probe_lease();
        self.drive_raft()?;
        self.check_removed_self();
        self.update_vip();
        if std::mem::take(&mut self.denied_dirty) {
            self.out.push(Output::Denied {
                removed: self.refused_hosts(),
            });
        }
        if std::mem::take(&mut self.members_dirty) {
            self.sync_members();
            let members = match self.members_added.take() {
                Some(added) => added,
                None => self.cluster.members.clone(),
            };
            if !members.is_empty() {
                self.out.push(Output::MembersChanged { members });
            }
        }
        Ok(std::mem::take(&mut self.out))
    }

    /// The membership was replaced as a whole (start, snapshot, bootstrap, leaving, removal):
    /// the next `MembersChanged` lists every member.
    pub(crate) fn membership_replaced(&mut self) {
        self.members_dirty = true;
        self.members_added = None;
    }

    /// Brings what depends on our membership up to date: the hosts known for the site rule and
    /// the peers' `member` flags (every member has a peer entry, so hellos reach it).
    fn sync_members(&mut self) {
        let mut ids: Vec<NodeId> = self.cluster.members.iter().map(|m| m.id).collect();
        // One ordered walk of the peer table beside the sorted ids (O(n), not a look-up each);
        // members without a peer entry get one.
        ids.sort_unstable();
        ids.dedup();
        let me = self.cfg.id;
        let mut next = ids.iter().copied().filter(|id| *id != me).peekable();
        let mut missing = Vec::new();
        // Our own members are not news for the site rule's settle wait (`lease.rs`): they raise
        // the count of hosts known and of our members alike. So a restarted host, which knows
        // its members from its store, is not held back by it either. A peer already flagged
        // known needs no look-up in `known_hosts`.
        let mut new_known = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            while let Some(m) = next.next_if(|m| m < id) {
                missing.push(m);
            }
            let member = next.next_if_eq(id).is_some();
            if p.connected && member != p.member {
                if member {
                    self.connected_outsiders = self.connected_outsiders.saturating_sub(1);
                } else {
                    self.connected_outsiders += 1;
                }
            }
            p.member = member;
            if p.member && !p.known_host {
                p.known_host = true;
                new_known.push(*id);
            }
        }
        missing.extend(next);
        for id in &missing {
            let p = self.peers.entry(*id).or_default();
            p.member = true;
            p.known_host = true;
        }
        self.known_hosts.extend(new_known);
        self.known_hosts.extend(missing);
        self.sync_learners();
    }

    /// Marks which member peers are learners (`timers.rs` thins their heartbeats). Called
    /// whenever the applied membership changes, before any later raft message goes out. One
    /// ordered walk of the peer table beside the sorted learner ids.
    pub(crate) fn sync_learners(&mut self) {
        let mut learners: Vec<NodeId> = self
            .cluster
            .members
            .iter()
            .filter(|m| !m.voter)
            .map(|m| m.id)
            .collect();
        learners.sort_unstable();
        let mut next = learners.into_iter().peekable();
        for (id, p) in self.peers.iter_mut() {
            while next.next_if(|l| l < id).is_some() {}
            p.learner = next.next_if_eq(id).is_some();
        }
    }

    fn on_tick(&mut self, now_ms: u64, unix_ms: u64) -> Result<(), CoreError> {
        self.now_ms = self.now_ms.max(now_ms);
        self.unix_ms = unix_ms;
        if self.boot_ms.is_none() {
            self.boot_ms = Some(self.now_ms);
            self.last_raft_tick_ms = self.now_ms;
            if !self.cfg.new_identity {
                self.quiet_until_ms = Some(self.now_ms + self.formation_quiet_ms());
            }
        }
        if self.phase == Phase::Removed {
            return Ok(());
        }
        self.raft_ticks();
        self.bound_peers();
        self.maybe_hello();
        match self.phase {
            Phase::Removed => {}
            Phase::Discovering | Phase::Joining { .. } => self.formation_tick()?,
            Phase::Member => {
                self.visible.stale = true;
                self.leader_duties()?;
                self.plan_duties();
                self.lead_from_the_init_host();
                self.health_duties();
                self.remove_command_duties();
                self.certificate_upload_duties();
                self.install_tick();
                self.merge_check()?;
                self.merge_probe_tick();
                self.abandon_stalled_join()?;
            }
        }
        self.evaluate_site_rule();
        Ok(())
    }

    fn on_connected(&mut self, id: NodeId) {
        if id == self.cfg.id {
            return;
        }
        let Some(new) = self.hear_from(id) else {
            return;
        };
        // Introduce ourselves at once: formation should not wait for the next hello round.
        self.greet(id, new);
    }

    /// A connection from `id` or a message over one: its peer entry (made room for, or the
    /// drop noted and `None` if the table is full) is connected and heard from now, with what
    /// is kept of the table brought along (the count of connected outsiders; formation's best
    /// visible cluster, stale if the peer did not count). `Some(true)`: it was not connected.
    fn hear_from(&mut self, id: NodeId) -> Option<bool> {
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&id) {
            self.bound_peers_for_new();
            if self.peers.len() >= MAX_PEERS {
                self.drops.note("peer table full", id, self.now_ms);
                return None;
            }
        }
        let timeouts = self.peer_timeouts();
        let peer = self.peers.entry(id).or_default();
        // A peer that did not count for formation counts again (`formation::VisibleCluster`).
        if !crate::hello::reachable_at(peer, self.now_ms, timeouts) {
            self.visible.stale = true;
        }
        let new = !peer.connected;
        if new && !peer.member {
            self.connected_outsiders += 1;
        }
        peer.connected = true;
        peer.last_heard_ms = Some(self.now_ms);
        Some(new)
    }

    fn on_disconnected(&mut self, id: NodeId) {
        if let Some(p) = self.peers.get_mut(&id) {
            if p.connected && !p.member {
                self.connected_outsiders = self.connected_outsiders.saturating_sub(1);
            }
            p.connected = false;
        }
        if let Some(raw) = self.raw.as_mut() {
            raw.report_unreachable(id);
        }
    }

    fn on_message(&mut self, from: NodeId, envelope: Envelope) -> Result<(), CoreError> {
        use muster_proto::envelope::Body;
        if from == self.cfg.id || self.phase == Phase::Removed {
            return Ok(());
        }
        if self.is_refused(from) {
            self.drops
                .note("message from a removed host", from, self.now_ms);
            return Ok(());
        }
        if self.hear_from(from).is_none() {
            return Ok(());
        }
        if let Some(Body::Hello(h)) = &envelope.body {
            if let Err(reason) = crate::guard::check_hello(from, h) {
                self.drops.note(reason, from, self.now_ms);
                return Ok(());
            }
        }
        match envelope.body {
            Some(Body::Hello(h)) => self.on_hello(from, h),
            Some(Body::JoinRequest(r)) => self.on_join_request(from, r)?,
            Some(Body::JoinResponse(r)) => self.on_join_response(from, r),
            Some(Body::Raft(m)) => self.on_raft_message(from, m)?,
            Some(Body::RemoveRequest(r)) => self.on_remove_request(from, r),
            Some(Body::StepReport(r)) => self.on_step_report(from, r),
            Some(Body::PlanActionRequest(r)) => self.on_plan_action_request(from, r),
            Some(Body::TransferForward(t)) => self.on_transfer_forward(from, t),
            None => tracing::debug!(peer = %crate::format_id(from), "empty envelope ignored"),
        }
        Ok(())
    }

    fn on_hello(&mut self, from: NodeId, full: Hello) {
        let known = self.peers.get(&from).is_some_and(|p| p.known_host);
        let known = self.learn_hosts(from, known, &full.member_ids);
        self.note_site_conflict(from, &full);
        let hello = crate::hello::PeerHello::from(full);
        self.note_merge_hint(from, &hello);
        let now = self.now_ms;
        if let Some(p) = self.peers.get_mut(&from) {
            if hello.cluster_id != 0 {
                p.unformed_since_ms = None;
            } else if p.unformed_since_ms.is_none() {
                p.unformed_since_ms = Some(now);
            }
            p.known_host = known;
            p.hello_interval_ms = hello
                .hello_interval_ms
                .min(crate::hello::MAX_ANNOUNCED_HELLO_INTERVAL_MS as u32);
            match p.hello.as_mut() {
                Some(b) => **b = hello,
                None => p.hello = Some(Box::new(hello)),
            }
        }
        self.note_visible_hello(from);
    }

    /// Makes room for one new peer if a silent non-member can be forgotten.
    fn bound_peers_for_new(&mut self) {
        let oldest = self
            .peers
            .iter()
            .filter(|(_, p)| !p.member && !p.connected)
            .min_by_key(|(_, p)| p.last_heard_ms)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.peers.remove(&id);
        }
    }

    /// Keeps the peer table within [`MAX_PEERS`]: forgets the longest-silent peers that are
    /// neither members nor connected.
    fn bound_peers(&mut self) {
        let excess = self.peers.len().saturating_sub(MAX_PEERS);
        if excess == 0 {
            return;
        }
        let mut idle: Vec<(Option<u64>, NodeId)> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.member && !p.connected)
            .map(|(id, p)| (p.last_heard_ms, *id))
            .collect();
        idle.sort();
        for (_, id) in idle.into_iter().take(excess) {
            self.peers.remove(&id);
        }
    }

    /// Queues a message.
    pub(crate) fn send(&mut self, to: NodeId, body: muster_proto::envelope::Body) {
        self.out.push(Output::Send {
            to,
            envelope: Envelope { body: Some(body) },
        });
    }

    /// Whether this node is the raft leader.
    pub(crate) fn is_leader(&self) -> bool {
        self.raw
            .as_ref()
            .is_some_and(|r| r.raft.state == raft::StateRole::Leader)
    }

    /// The protocol this host announces: [`crate::PROTOCOL`] (tests may pretend to be older).
    pub(crate) fn own_protocol(&self) -> u32 {
        match self.cfg.announce_protocol_for_tests {
            0 => crate::PROTOCOL,
            p => p,
        }
    }

    /// A member's agent version as its last hello said (ours from the config).
    fn member_agent_version(&self, id: NodeId) -> String {
        if id == self.cfg.id {
            return self.cfg.agent_version.clone();
        }
        self.peers
            .get(&id)
            .and_then(|p| p.hello.as_ref())
            .map(|h| h.agent_version.to_string())
            .unwrap_or_default()
    }

    /// The protocol a member's agent announced (`Hello.protocol`; an agent from before the
    /// field is 1); 0 when not heard from yet. Our own is [`crate::PROTOCOL`].
    pub fn member_protocol(&self, id: NodeId) -> u32 {
        if id == self.cfg.id {
            return self.own_protocol();
        }
        self.peers
            .get(&id)
            .and_then(|p| p.hello.as_ref())
            .map_or(0, |h| h.protocol.max(1))
    }

    /// Whether every member (not removed) applies commands of protocol `level`; else the names
    /// of those that do not (or are not heard from), for the operator.
    pub(crate) fn site_supports(&self, level: u32) -> Result<(), String> {
        let behind: Vec<String> = self
            .cluster
            .members
            .iter()
            .filter(|m| !self.is_removed(m.id))
            .filter_map(|m| match self.member_protocol(m.id) {
                0 => Some(format!("{} (not heard from)", m.name)),
                p if p < level => Some(format!("{} (protocol {p})", m.name)),
                _ => None,
            })
            .collect();
        if behind.is_empty() {
            Ok(())
        } else {
            Err(behind.join(", "))
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The cluster this node is a member of (0 = none yet).
    pub fn cluster_id(&self) -> u64 {
        self.cluster.cluster_id
    }

    /// The replicated cluster state as applied here.
    pub fn cluster_state(&self) -> &ClusterState {
        &self.cluster
    }

    /// The leader this node knows of, 0 if none.
    pub fn leader_id(&self) -> NodeId {
        self.raw.as_ref().map_or(0, |r| r.raft.leader_id)
    }

    /// The store (for tests and the simulator to inspect or copy as a crash would leave it).
    pub fn store(&self) -> std::sync::MutexGuard<'_, S> {
        self.store.lock()
    }

    /// Draws a nonzero random id.
    pub(crate) fn random_id(&mut self) -> u64 {
        loop {
            let v: u64 = self.rng.random();
            if v != 0 {
                return v;
            }
        }
    }

    /// The local view for operators.
    pub fn status(&self) -> StatusResponse {
        let (term, commit, applied, first) = match &self.raw {
            Some(r) => (
                r.raft.term,
                r.raft.raft_log.committed,
                r.raft.raft_log.applied(),
                r.raft.raft_log.first_index(),
            ),
            None => (0, 0, 0, 0),
        };
        let members = self
            .cluster
            .members
            .iter()
            .map(|m| MemberStatus {
                id: m.id,
                name: m.name.clone(),
                address: m.address.clone(),
                voter: m.voter,
                reachable: self.reachable(m.id),
                joined_unix_ms: m.joined_unix_ms,
                api_health: self.member_api_health(m.id) as i32,
                agent_version: self.member_agent_version(m.id),
                last_seen_ms_ago: if m.id == self.cfg.id {
                    Some(0)
                } else {
                    self.peers
                        .get(&m.id)
                        .and_then(|p| p.last_heard_ms)
                        .map(|t| self.now_ms.saturating_sub(t))
                },
                protocol: self.member_protocol(m.id),
            })
            .collect();
        let phase = match (&self.phase, self.cluster.cluster_id) {
            (Phase::Removed, _) => "removed",
            (Phase::Discovering, _) => "discovering",
            (Phase::Joining { .. }, _) | (Phase::Member, 0) => "joining",
            (Phase::Member, _) => "member",
        };
        StatusResponse {
            node_id: self.cfg.id,
            node_name: self.cfg.name.clone(),
            cluster_id: self.cluster.cluster_id,
            leader_id: self.leader_id(),
            term,
            commit_index: commit,
            applied_index: applied,
            members,
            phase: phase.into(),
            peers_connected: self.peers.values().filter(|p| p.connected).count() as u32,
            rejected_connections: 0,
            first_log_index: first,
            address: self.cfg.address.clone(),
            vip: self.cfg.vip.then(|| muster_proto::VipStatus {
                address: String::new(),
                holder_id: self.vip_holder(),
                held_here: self.lease.holding,
                lease_left_ms: self.lease_left_ms(),
                held_back: self.site_rule.held_back.clone(),
            }),
            dropped: self
                .drops
                .counts()
                .map(|(reason, count)| muster_proto::DropCount {
                    reason: reason.into(),
                    count,
                })
                .collect(),
            locked: self.locked(),
            formed_unix_ms: self.cluster.formed_unix_ms,
            kubernetes: self.cfg.plan,
            site_conflict: self.site_conflict(),
            removed: self
                .cluster
                .removed
                .iter()
                .map(|r| muster_proto::RemovedStatus {
                    id: r.id,
                    name: r.name.clone(),
                    removed_unix_ms: r.unix_ms,
                })
                .collect(),
            // The agent fills in its DNS updater's view.
            dns: None,
            // Status answers never carry secrets, not even sealed ones.
            plan: self.cluster.plan.clone().map(|p| muster_proto::Plan {
                secrets: None,
                init_secrets: None,
                ..p
            }),
        }
    }

    /// Sizes of the tables peers can grow: (peer table, site hosts known).
    pub fn table_sizes(&self) -> (usize, usize) {
        (self.peers.len(), self.known_hosts.len())
    }

    /// Inbound messages dropped so far, by reason (see `guard.rs`).
    pub fn drops(&self) -> &crate::guard::Drops {
        &self.drops
    }

    /// Who holds the VIP as far as this node knows: itself, or the current leader if its latest
    /// hello says so (a cut-off old leader's stale hello must not win), else nobody known.
    pub fn vip_holder(&self) -> NodeId {
        if self.lease.holding {
            return self.cfg.id;
        }
        let leader = self.leader_id();
        let leader_holds = self
            .peers
            .get(&leader)
            .and_then(|p| p.hello.as_ref())
            .is_some_and(|h| h.vip_held);
        if leader != 0 && leader_holds && self.reachable(leader) {
            leader
        } else {
            0
        }
    }
}
