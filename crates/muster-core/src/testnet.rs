//! An in-memory site: many core nodes, a virtual clock and a virtual network with cuts, loss of
//! discovery, crashes and restarts. Used by the core's scenario tests; the simulator builds on the
//! same idea at scale.
//!
//! Connections stand in for discovery: two hosts that can see each other get `PeerConnected`
//! after a discovery attempt succeeds (attempts repeat every `discovery_interval_ms` and are lost
//! with probability `discovery_loss_pct`). Messages take 1–`max_latency_ms` ms and are dropped if
//! the link is cut when they arrive. Everything random comes from one seed.

use std::collections::{BTreeMap, BTreeSet};

use muster_proto::Envelope;
use rand::{Rng, SeedableRng};

use crate::config::{NodeConfig, NodeId};
use crate::node::{Input, Node, Output};
use crate::storage::MemStore;

/// One host of the test site.
pub struct Host {
    /// Its configuration (kept across restarts).
    pub cfg: NodeConfig,
    /// The running node, `None` while down.
    pub node: Option<Node<MemStore>>,
    /// Its disk: survives crashes.
    pub disk: MemStore,
    /// Times it was started (its identity is new at the first).
    pub starts: u32,
}

struct InFlight {
    at_ms: u64,
    seq: u64,
    from: NodeId,
    to: NodeId,
    envelope: Envelope,
}

/// The virtual site.
pub struct TestNet {
    /// Hosts by id.
    pub hosts: BTreeMap<NodeId, Host>,
    /// Virtual time.
    pub now_ms: u64,
    rng: rand::rngs::StdRng,
    in_flight: Vec<InFlight>,
    seq: u64,
    /// Pairs (lower id, higher id) currently connected.
    connected: BTreeSet<(NodeId, NodeId)>,
    /// Pairs that cannot reach each other at all (partition).
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Pairs that discovery does not find, but that connect once one learns the other's address
    /// from the replicated membership (partial discovery).
    hidden: BTreeSet<(NodeId, NodeId)>,
    /// Probability in percent that one discovery attempt is lost.
    pub discovery_loss_pct: u32,
    /// Interval between discovery attempts of an unconnected visible pair.
    pub discovery_interval_ms: u64,
    /// Largest message latency.
    pub max_latency_ms: u64,
    /// Messages a host sends before the time given here are lost; its connections stay up (a
    /// burst of loss, as the simulator's `loss_pct` makes at random).
    pub mute_until: BTreeMap<NodeId, u64>,
    /// Messages lost to `mute_until`.
    pub muted: u64,
    /// Node tick interval.
    pub tick_interval_ms: u64,
    /// Tick each host as the agent does instead (`timers.rs`): when its `next_tick_ms` is due,
    /// and before a message whenever its clock fell a raft tick behind.
    pub deadline_ticks: bool,
    /// Ticks handed to hosts so far.
    pub ticks: u64,
    /// Messages hosts sent so far (`Output::Send`).
    pub sends: u64,
    /// Hellos sent so far, by (from, to).
    pub hellos: BTreeMap<(NodeId, NodeId), u64>,
    last_discovery_ms: u64,
    /// Hosts that currently hold the VIP (acquired, not yet released, not crashed).
    pub vip_holders: BTreeSet<NodeId>,
    /// Largest number of simultaneous VIP holders seen (invariant I2: never above 1).
    pub max_vip_holders: usize,
    /// Virtual time of every VIP acquire: (time, host).
    pub vip_acquires: Vec<(u64, NodeId)>,
    /// Virtual time of every VIP release: (time, host).
    pub vip_releases: Vec<(u64, NodeId)>,
    /// Adversaries: ids that hold the site key (they connect) but run no node; what hosts send
    /// them is kept here for the test to read (and craft replies from).
    pub adversaries: BTreeMap<NodeId, Vec<(NodeId, Envelope)>>,
    /// (host, identity it refuses): the transport's deny list (`Output::Denied`).
    pub denied: BTreeSet<(NodeId, NodeId)>,
    /// Connections refused because one side denies the other.
    pub refused_connections: u64,
    /// How long every install step takes (hook + health probe), virtual ms.
    pub install_ms: u64,
    /// Hosts whose next attempts fail: host → failures left.
    pub fail_installs: BTreeMap<NodeId, u32>,
    /// Every install run the hosts started: (virtual time, host, role, attempt).
    pub install_runs: Vec<(u64, NodeId, muster_proto::Role, u32)>,
    /// Every install result handed back: (virtual time, host, attempt, succeeded).
    pub install_results: Vec<(u64, NodeId, u32, bool)>,
    /// The secrets each host's last install run was handed (`MUSTER_SECRETS`).
    pub install_secrets: BTreeMap<NodeId, crate::SecretValues>,
    /// Every remove command run: (virtual time, runner, removed host, attempt).
    pub removal_runs: Vec<(u64, NodeId, NodeId, u32)>,
    /// Certificate uploads run: (time, runner, generation, attempt); each succeeds at once
    /// unless `fail_uploads` says otherwise.
    pub upload_runs: Vec<(u64, NodeId, u32, u32)>,
    /// Uploads that fail before one succeeds.
    pub fail_uploads: u32,
    /// Added to the virtual time for the hosts' wall clocks (`unix_ms`): jumps hours ahead.
    pub wall_offset_ms: u64,
    /// What a successful init run writes to `MUSTER_SECRETS_OUT`.
    pub init_secrets_out: crate::SecretValues,
    /// (due, host, attempt, succeeds, role)
    pending_installs: Vec<(u64, NodeId, u32, bool, muster_proto::Role)>,
}

fn pair(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

impl TestNet {
    /// An empty site; `seed` drives every random choice.
    pub fn new(seed: u64) -> Self {
        TestNet {
            hosts: BTreeMap::new(),
            now_ms: 1,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            in_flight: Vec::new(),
            seq: 0,
            connected: BTreeSet::new(),
            cut: BTreeSet::new(),
            hidden: BTreeSet::new(),
            discovery_loss_pct: 0,
            discovery_interval_ms: 250,
            max_latency_ms: 3,
            mute_until: BTreeMap::new(),
            muted: 0,
            tick_interval_ms: 10,
            deadline_ticks: false,
            ticks: 0,
            sends: 0,
            hellos: BTreeMap::new(),
            last_discovery_ms: 0,
            vip_holders: BTreeSet::new(),
            max_vip_holders: 0,
            vip_acquires: Vec::new(),
            vip_releases: Vec::new(),
            adversaries: BTreeMap::new(),
            denied: BTreeSet::new(),
            refused_connections: 0,
            install_ms: 200,
            fail_installs: BTreeMap::new(),
            install_runs: Vec::new(),
            install_results: Vec::new(),
            install_secrets: BTreeMap::new(),
            removal_runs: Vec::new(),
            upload_runs: Vec::new(),
            fail_uploads: 0,
            wall_offset_ms: 0,
            init_secrets_out: Default::default(),
            pending_installs: Vec::new(),
        }
    }

    /// Checks invariant I3 over every install run so far: one host ever ran the init step; a
    /// host's role never changed; control-plane runs of different hosts never overlapped, and
    /// none started before the init step succeeded; no worker started before that either.
    /// Returns the first violation.
    pub fn check_i3(&self) -> Result<(), String> {
        use muster_proto::Role;
        let mut roles: BTreeMap<NodeId, Role> = BTreeMap::new();
        for (t, host, role, _) in &self.install_runs {
            if let Some(r) = roles.insert(*host, *role) {
                if r != *role {
                    return Err(format!("{host:016x} ran {r:?}, then {role:?} at {t}"));
                }
            }
        }
        let inits: BTreeSet<NodeId> = roles
            .iter()
            .filter(|(_, r)| **r == Role::Init)
            .map(|(h, _)| *h)
            .collect();
        if inits.len() > 1 {
            return Err(format!("more than one init host: {inits:?}"));
        }
        let init_ok = self
            .install_results
            .iter()
            .filter(|(_, h, _, ok)| *ok && inits.contains(h))
            .map(|(t, ..)| *t)
            .min();
        // A run lasts from its start until its host's next result (or forever).
        let end_of = |start: u64, host: NodeId| {
            self.install_results
                .iter()
                .filter(|(t, h, _, _)| *h == host && *t >= start)
                .map(|(t, ..)| *t)
                .min()
                .unwrap_or(u64::MAX)
        };
        let cps: Vec<(u64, u64, NodeId)> = self
            .install_runs
            .iter()
            .filter(|(_, _, r, _)| *r == Role::ControlPlane)
            .map(|(t, h, _, _)| (*t, end_of(*t, *h), *h))
            .collect();
        for (t, host, role, _) in &self.install_runs {
            if *role != Role::Init && init_ok.is_none_or(|ok| *t < ok) {
                return Err(format!(
                    "{host:016x} started {role:?} at {t} before the init succeeded"
                ));
            }
        }
        for (i, a) in cps.iter().enumerate() {
            for b in &cps[i + 1..] {
                if a.2 != b.2 && a.0 < b.1 && b.0 < a.1 {
                    return Err(format!(
                        "control-plane joins overlapped: {:016x} [{}, {}) and {:016x} [{}, {})",
                        a.2, a.0, a.1, b.2, b.0, b.1
                    ));
                }
            }
        }
        Ok(())
    }

    /// Operator `muster plan retry|skip WHO` asked of `host`: carries out its outputs at once.
    pub fn plan_action(
        &mut self,
        host: NodeId,
        who: &str,
        kind: muster_proto::PlanActionKind,
    ) -> Result<crate::ActionTarget, crate::PlanActionError> {
        let node = self
            .hosts
            .get_mut(&host)
            .and_then(|h| h.node.as_mut())
            .expect("host is up");
        let (done, outputs) = node.request_plan_action(who, kind)?;
        self.dispatch(host, outputs);
        Ok(done)
    }

    /// Operator `muster remove WHO` asked of `host`: carries out its outputs at once.
    pub fn remove(
        &mut self,
        host: NodeId,
        who: &str,
    ) -> Result<crate::ActionTarget, crate::RemoveError> {
        self.remove_with_spare(host, who, None)
    }

    /// Operator `muster remove WHO [--spare SPARE]` asked of `host`.
    pub fn remove_with_spare(
        &mut self,
        host: NodeId,
        who: &str,
        spare: Option<&str>,
    ) -> Result<crate::ActionTarget, crate::RemoveError> {
        let node = self
            .hosts
            .get_mut(&host)
            .and_then(|h| h.node.as_mut())
            .expect("host is up");
        let (removal, outputs) = node.request_removal(who, spare)?;
        self.dispatch(host, outputs);
        Ok(removal)
    }

    /// Adds an adversary with a fresh identity (or `public_key`, to pick its id); returns its id
    /// and public key. It is connected to no host until [`TestNet::connect_adversary`].
    pub fn add_adversary(&mut self, public_key: Option<[u8; 32]>) -> (NodeId, Vec<u8>) {
        let pk = public_key.unwrap_or_else(|| {
            let mut pk = [0u8; 32];
            self.rng.fill(&mut pk[..]);
            pk
        });
        let id = crate::node_id_from_public_key(&pk);
        self.adversaries.insert(id, Vec::new());
        (id, pk.to_vec())
    }

    /// Connects an adversary to a host (an authenticated connection: it holds the site key).
    pub fn connect_adversary(&mut self, adversary: NodeId, host: NodeId) {
        if self.connected.insert(pair(adversary, host)) {
            self.input(host, Input::PeerConnected { id: adversary });
        }
    }

    /// Delivers `envelope` from an adversary to a connected host at once.
    pub fn inject(&mut self, adversary: NodeId, to: NodeId, envelope: Envelope) {
        if self.connected.contains(&pair(adversary, to)) {
            self.input(
                to,
                Input::Message {
                    from: adversary,
                    envelope,
                },
            );
        }
    }

    /// Adds a host (down) with a config from `make(public_key)`; returns its id.
    pub fn add_host(&mut self, name: &str, tune: impl FnOnce(&mut NodeConfig)) -> NodeId {
        let mut pk = [0u8; 32];
        self.rng.fill(&mut pk[..]);
        let mut cfg = NodeConfig::new(name, format!("{name}:7946"), pk.to_vec());
        let mut entropy = [0u8; 32];
        self.rng.fill(&mut entropy[..]);
        cfg.secrets = Some(crate::SiteSecrets::from_site_key(
            b"testnet site key",
            entropy,
        ));
        tune(&mut cfg);
        let id = cfg.id;
        self.hosts.insert(
            id,
            Host {
                cfg,
                node: None,
                disk: MemStore::new(),
                starts: 0,
            },
        );
        id
    }

    /// Changes a host's config for its next start (an upgrade or a downgrade of its agent).
    pub fn reconfigure(&mut self, id: NodeId, tune: impl FnOnce(&mut NodeConfig)) {
        tune(&mut self.hosts.get_mut(&id).expect("known host").cfg);
    }

    /// Boots a host from its disk.
    pub fn start(&mut self, id: NodeId) {
        let seed = self.rng.random();
        let host = self.hosts.get_mut(&id).expect("known host");
        let mut cfg = host.cfg.clone();
        cfg.new_identity = host.starts == 0;
        host.starts += 1;
        let node = Node::new(cfg, host.disk.clone(), seed).expect("node starts");
        host.node = Some(node);
        self.input(
            id,
            Input::Tick {
                now_ms: self.now_ms,
                unix_ms: self.now_ms + self.wall_offset_ms,
            },
        );
    }

    /// Kills a host: its disk keeps what the node persisted, connections drop.
    pub fn crash(&mut self, id: NodeId) {
        let host = self.hosts.get_mut(&id).expect("known host");
        if let Some(node) = host.node.take() {
            host.disk = (*node.store()).clone();
        }
        // A dead host holds nothing (the agent releases a stale VIP when it starts again), and
        // its running hook dies with it.
        self.vip_holders.remove(&id);
        self.pending_installs.retain(|(_, h, ..)| *h != id);
        let gone: Vec<_> = self
            .connected
            .iter()
            .filter(|(a, b)| *a == id || *b == id)
            .copied()
            .collect();
        for (a, b) in gone {
            self.disconnect(a, b);
        }
    }

    /// Makes `a` and `b` unable to see or reach each other.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        self.cut.insert(pair(a, b));
        if self.connected.contains(&pair(a, b)) {
            self.disconnect(a, b);
        }
    }

    /// Hides `a` and `b` from each other's discovery; they still connect through membership.
    pub fn hide(&mut self, a: NodeId, b: NodeId) {
        self.hidden.insert(pair(a, b));
    }

    /// Undoes every cut and hiding.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.hidden.clear();
    }

    fn connect(&mut self, a: NodeId, b: NodeId) {
        let p = pair(a, b);
        if a == b
            || self.connected.contains(&p)
            || self.cut.contains(&p)
            || !self.is_up(a)
            || !self.is_up(b)
        {
            return;
        }
        if self.denied.contains(&(a, b)) || self.denied.contains(&(b, a)) {
            self.refused_connections += 1;
            return;
        }
        self.connected.insert(p);
        self.input(a, Input::PeerConnected { id: b });
        self.input(b, Input::PeerConnected { id: a });
    }

    /// Whether a host is up.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.hosts.get(&id).is_some_and(|h| h.node.is_some())
    }

    /// The running node.
    pub fn node(&self, id: NodeId) -> &Node<MemStore> {
        self.hosts[&id].node.as_ref().expect("host is up")
    }

    /// Every byte a running host's store holds: log entries, the applied state (snapshot) and
    /// the hard state — what a copy of its data directory would reveal.
    pub fn stored_bytes(&self, id: NodeId) -> Vec<u8> {
        let store = self.node(id).store.lock();
        let cache = store.cache();
        let mut out = cache.applied.get_data().to_vec();
        for e in &cache.entries {
            out.extend_from_slice(e.get_data());
            out.extend_from_slice(e.get_context());
        }
        out
    }

    fn disconnect(&mut self, a: NodeId, b: NodeId) {
        self.connected.remove(&pair(a, b));
        self.input(a, Input::PeerDisconnected { id: b });
        self.input(b, Input::PeerDisconnected { id: a });
    }

    /// Operator handover on `leader`: carries out its outputs and feeds it a tick at once.
    pub fn transfer(
        &mut self,
        leader: NodeId,
        to: Option<NodeId>,
    ) -> Result<NodeId, crate::TransferError> {
        let node = self
            .hosts
            .get_mut(&leader)
            .and_then(|h| h.node.as_mut())
            .expect("host is up");
        let (target, outputs) = node.transfer_leadership(to)?;
        self.dispatch(leader, outputs);
        self.input(
            leader,
            Input::Tick {
                now_ms: self.now_ms,
                unix_ms: self.now_ms + self.wall_offset_ms,
            },
        );
        Ok(target)
    }

    /// What a host's agent would report of its API server (`Input::LocalHealth`).
    pub fn set_api_health(&mut self, id: NodeId, healthy: bool) {
        self.input(id, Input::LocalHealth { healthy });
    }

    fn node_if_up(&self, id: NodeId) -> Option<&Node<MemStore>> {
        self.hosts.get(&id).and_then(|h| h.node.as_ref())
    }

    fn tick(&mut self, id: NodeId) {
        if self.node_if_up(id).is_none() {
            return;
        }
        self.ticks += 1;
        let now_ms = self.now_ms;
        self.input(
            id,
            Input::Tick {
                now_ms,
                unix_ms: now_ms + self.wall_offset_ms,
            },
        );
    }

    fn input(&mut self, id: NodeId, input: Input) {
        let Some(node) = self.hosts.get_mut(&id).and_then(|h| h.node.as_mut()) else {
            return;
        };
        let outputs = node.handle(input).expect("core reports no fatal error");
        self.dispatch(id, outputs);
    }

    fn dispatch(&mut self, id: NodeId, outputs: Vec<Output>) {
        for out in outputs {
            match out {
                Output::Send { to, envelope } => {
                    self.sends += 1;
                    if self.mute_until.get(&id).is_some_and(|t| self.now_ms < *t) {
                        self.muted += 1;
                        continue;
                    }
                    if matches!(envelope.body, Some(muster_proto::envelope::Body::Hello(_))) {
                        *self.hellos.entry((id, to)).or_default() += 1;
                    }
                    let latency = self.rng.random_range(1..=self.max_latency_ms);
                    self.seq += 1;
                    self.in_flight.push(InFlight {
                        at_ms: self.now_ms + latency,
                        seq: self.seq,
                        from: id,
                        to,
                        envelope,
                    });
                }
                // The daemon dials members' recorded addresses; here that is a connect.
                Output::MembersChanged { members } => {
                    for m in members {
                        self.connect(id, m.id);
                    }
                }
                Output::EndpointRenew { .. } => {}
                Output::EndpointAcquire { .. } => {
                    self.vip_holders.insert(id);
                    self.vip_acquires.push((self.now_ms, id));
                    self.max_vip_holders = self.max_vip_holders.max(self.vip_holders.len());
                }
                Output::EndpointRelease => {
                    self.vip_holders.remove(&id);
                    self.vip_releases.push((self.now_ms, id));
                }
                Output::RunInstall {
                    role,
                    attempt,
                    secrets,
                } => {
                    self.install_runs.push((self.now_ms, id, role, attempt));
                    self.install_secrets.insert(id, secrets);
                    let fail = match self.fail_installs.get_mut(&id) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            true
                        }
                        _ => false,
                    };
                    self.pending_installs.push((
                        self.now_ms + self.install_ms,
                        id,
                        attempt,
                        !fail,
                        role,
                    ));
                }
                // The remove command succeeds at once.
                Output::RunRemoval { duty, attempt } => {
                    self.removal_runs
                        .push((self.now_ms, id, duty.node_id, attempt));
                    self.input(
                        id,
                        Input::RemovalDone {
                            node_id: duty.node_id,
                            attempt,
                            result: Ok(()),
                        },
                    );
                }
                Output::RunCertificateUpload {
                    generation,
                    attempt,
                    ..
                } => {
                    self.upload_runs
                        .push((self.now_ms, id, generation, attempt));
                    let result = if self.fail_uploads > 0 {
                        self.fail_uploads -= 1;
                        Err("upload-certs failed".to_string())
                    } else {
                        Ok(())
                    };
                    self.input(
                        id,
                        Input::CertificateUploadDone {
                            generation,
                            attempt,
                            result,
                        },
                    );
                }
                // The transport refuses removed identities at the connection.
                Output::Denied { removed } => {
                    for r in removed {
                        self.denied.insert((id, r.id));
                        if self.connected.contains(&pair(id, r.id)) {
                            self.disconnect(id, r.id);
                        }
                    }
                }
            }
        }
    }

    fn discovery_round(&mut self) {
        let up: Vec<NodeId> = self
            .hosts
            .iter()
            .filter(|(_, h)| h.node.is_some())
            .map(|(id, _)| *id)
            .collect();
        for (i, a) in up.iter().enumerate() {
            for b in &up[i + 1..] {
                let p = pair(*a, *b);
                if self.connected.contains(&p) || self.hidden.contains(&p) {
                    continue;
                }
                if self.rng.random_range(0..100) < self.discovery_loss_pct {
                    continue;
                }
                self.connect(*a, *b);
            }
        }
    }

    /// Runs the site for `ms` of virtual time.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now_ms + ms;
        while self.now_ms < end {
            self.now_ms += 1;
            if self.now_ms >= self.last_discovery_ms + self.discovery_interval_ms {
                self.last_discovery_ms = self.now_ms;
                self.discovery_round();
            }
            self.deliver_due();
            self.finish_installs();
            let ids: Vec<NodeId> = self.hosts.keys().copied().collect();
            for id in ids {
                let due = if self.deadline_ticks {
                    self.node_if_up(id)
                        .is_some_and(|n| n.next_tick_ms() <= self.now_ms)
                } else {
                    // Each host's ticks at its own phase, as separate processes' timers are:
                    // ticks aligned across hosts fire equal election timeouts in the same
                    // millisecond, a split vote far more often than on a real LAN.
                    (self.now_ms + id % self.tick_interval_ms).is_multiple_of(self.tick_interval_ms)
                };
                if due {
                    self.tick(id);
                }
            }
        }
    }

    /// Runs until `done` holds or `limit_ms` passes; returns the virtual time it took.
    pub fn run_until(
        &mut self,
        limit_ms: u64,
        mut done: impl FnMut(&TestNet) -> bool,
    ) -> Option<u64> {
        let start = self.now_ms;
        while self.now_ms < start + limit_ms {
            self.run_for(10);
            if done(self) {
                return Some(self.now_ms - start);
            }
        }
        None
    }

    fn finish_installs(&mut self) {
        let now = self.now_ms;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_installs)
            .into_iter()
            .partition(|(at, ..)| *at <= now);
        self.pending_installs = later;
        for (_, host, attempt, ok, role) in due {
            self.install_results.push((now, host, attempt, ok));
            let result = if ok {
                Ok(())
            } else {
                Err("hook exited with status 1".to_string())
            };
            let secrets_out = match role {
                muster_proto::Role::Init if ok => self.init_secrets_out.clone(),
                _ => Default::default(),
            };
            self.input(
                host,
                Input::InstallDone {
                    attempt,
                    result,
                    secrets_out,
                },
            );
        }
    }

    fn deliver_due(&mut self) {
        loop {
            let now = self.now_ms;
            let mut due: Vec<InFlight> = Vec::new();
            let mut i = 0;
            while i < self.in_flight.len() {
                if self.in_flight[i].at_ms <= now {
                    due.push(self.in_flight.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            if due.is_empty() {
                return;
            }
            due.sort_by_key(|m| (m.at_ms, m.seq));
            for m in due {
                if !self.connected.contains(&pair(m.from, m.to)) {
                    continue;
                }
                if let Some(inbox) = self.adversaries.get_mut(&m.to) {
                    inbox.push((m.from, m.envelope));
                    continue;
                }
                if self.deadline_ticks
                    && self
                        .node_if_up(m.to)
                        .is_some_and(|n| n.clock_behind(self.now_ms))
                {
                    self.tick(m.to);
                }
                self.input(
                    m.to,
                    Input::Message {
                        from: m.from,
                        envelope: m.envelope,
                    },
                );
            }
        }
    }

    /// Ids of the hosts that are up.
    pub fn up_ids(&self) -> Vec<NodeId> {
        self.hosts
            .iter()
            .filter(|(_, h)| h.node.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether every up host is in one cluster with one leader, exactly `members` as members and
    /// `voters` of them voters.
    pub fn formed(&self, members: &BTreeSet<NodeId>, voters: usize) -> bool {
        let up = self.up_ids();
        let Some(first) = up.first() else {
            return false;
        };
        let n0 = self.node(*first);
        let (cluster, leader) = (n0.cluster_id(), n0.leader_id());
        if cluster == 0 || leader == 0 || !self.is_up(leader) {
            return false;
        }
        up.iter().all(|id| {
            let n = self.node(*id);
            let st = n.cluster_state();
            let ids: BTreeSet<NodeId> = st.members.iter().map(|m| m.id).collect();
            n.cluster_id() == cluster
                && n.leader_id() == leader
                && &ids == members
                && st.members.iter().filter(|m| m.voter).count() == voters
        })
    }

    /// A site of `n` hosts named `h0..`, each configured by `tune` (after `expected_nodes = n`),
    /// booted together and run until one cluster with every host a member, `min(3, n)` voters and
    /// the site recorded formed (panics otherwise, with [`TestNet::describe`]).
    pub fn formed_site(
        seed: u64,
        n: usize,
        tune: impl Fn(&mut NodeConfig),
    ) -> (TestNet, Vec<NodeId>) {
        let mut net = TestNet::new(seed);
        let ids: Vec<NodeId> = (0..n)
            .map(|i| {
                net.add_host(&format!("h{i}"), |c| {
                    c.expected_nodes = n;
                    tune(c);
                })
            })
            .collect();
        for id in &ids {
            net.start(*id);
        }
        let want: BTreeSet<NodeId> = ids.iter().copied().collect();
        let done = net.run_until(20_000, |net| {
            net.formed(&want, 3.min(n)) && ids.iter().all(|id| net.node(*id).site_formed())
        });
        assert!(done.is_some(), "site formed:\n{}", net.describe());
        (net, ids)
    }

    /// One line per up host: name, id, phase, cluster, leader, members (voters starred), removed.
    pub fn describe(&self) -> String {
        self.up_ids()
            .iter()
            .map(|id| {
                let s = self.node(*id).status();
                format!(
                    "{} {id:016x}: phase={} cluster={:016x} leader={:016x} members={} removed={:?}",
                    s.node_name,
                    s.phase,
                    s.cluster_id,
                    s.leader_id,
                    s.members
                        .iter()
                        .map(|m| format!("{}{}", m.name, if m.voter { "*" } else { "" }))
                        .collect::<Vec<_>>()
                        .join(","),
                    s.removed.iter().map(|r| r.name.clone()).collect::<Vec<_>>()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Distinct nonzero cluster ids among up hosts.
    pub fn clusters(&self) -> BTreeSet<u64> {
        self.up_ids()
            .iter()
            .map(|id| self.node(*id).cluster_id())
            .filter(|c| *c != 0)
            .collect()
    }
}
