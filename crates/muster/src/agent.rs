//! `muster agent`: wires the core to real I/O.
//!
//! One event loop owns the core [`Node`] over a [`DiskStore`]; it turns network events, a timer
//! and status queries into core inputs and carries the outputs out: messages to the libp2p
//! transport, member addresses to its dialer. The timer sleeps until the core's next deadline
//! ([`Node::next_tick_ms`]; a member of an idle site wakes every heartbeat interval or so, a
//! host still forming every 10 ms) or [`MAX_TICK_WAIT`], whichever is sooner. SIGTERM / SIGINT
//! stop it cleanly; a fatal core error (a store that cannot persist) stops it with an error,
//! since acknowledging writes that were not made would break Raft.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use libp2p::PeerId;
use muster_core::{format_id, Input, Node, NodeConfig, NodeId, Output, RaftStore as _};
use muster_net::{NetConfig, NetEvent, NetHandle};
use muster_proto::{Envelope, Member};
use muster_store::DiskStore;
use prost::Message as _;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::rpc::{self, Query};

/// Clients that may follow `muster events` at once (each holds a bounded buffer).
const MAX_EVENT_FOLLOWERS: usize = 16;
/// Longest sleep between two ticks, whatever the core's deadline: the shell's own timers (VIP
/// add retries, the conflict watch every 200 ms, systemd STATUS every 250 ms, metrics) are looked
/// at on ticks.
const MAX_TICK_WAIT: Duration = Duration::from_millis(100);
/// Tick period while the debug-build test fault is armed (it is polled on ticks).
const TEST_FAULT_TICK: Duration = Duration::from_millis(10);
/// How long to wait between looks for the interface's address at boot.
const ADDRESS_RETRY: Duration = Duration::from_millis(500);
/// Log the wait for the interface address every this many attempts (every 5 s).
const ADDRESS_LOG_EVERY: u64 = 10;
/// Status queries waiting for the loop.
const STATUS_QUEUE: usize = 64;
/// Test-only fault, honoured by debug builds only: the event loop panics at the first tick at
/// which the file this variable names exists (the panic-release test of `tests/tests/vip.rs`).
/// Release builds never read it, and it is not part of the configuration.
pub const TEST_PANIC_FILE_ENV: &str = "MUSTER_TEST_PANIC_FILE";

/// The test fault file, if this is a debug build and the environment names one.
fn test_panic_file() -> Option<std::path::PathBuf> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let path = std::env::var_os(TEST_PANIC_FILE_ENV)?;
    tracing::warn!(path = ?path, "test fault armed: the agent panics once this file exists");
    Some(path.into())
}

/// Runs the agent (configured from `config_path`) until SIGTERM/SIGINT or a fatal error. A data
/// dir whose store and identity do not go together is refused with
/// [`crate::identity::StartRefused`] before anything else starts.
pub async fn run(cfg: Config, config_path: &std::path::Path) -> anyhow::Result<()> {
    let site_key = crate::identity::load_site_key(&cfg.key_file)?;
    crate::identity::prepare_data_dir(&cfg.data_dir)?;
    let store_dir = cfg.data_dir.join(crate::identity::STORE_DIR);
    let store = DiskStore::open(&store_dir).with_context(|| {
        format!(
            "raft store {} cannot be used; it is left untouched for inspection",
            store_dir.display()
        )
    })?;
    let applied = store.applied();
    let (keypair, new_identity) = crate::identity::load_for_store(
        &cfg.data_dir,
        config_path,
        &cfg.name,
        applied.get_metadata().index,
        applied.get_data(),
    )?;
    let public_key = crate::identity::public_key(&keypair)?;
    let ip = wait_for_interface_address(&cfg.interface).await?;
    let listen = SocketAddr::new(ip, cfg.listen_port);

    let vip = crate::vip::Vip::start(cfg.vip.clone()).await?;
    // With a VIP the name points at it; without, at this host.
    let dns_addrs = match &cfg.vip {
        Some(v) => v.addresses().iter().map(|a| a.addr()).collect(),
        None => vec![ip],
    };
    let dns = crate::dns::Dns::start(cfg.ddns.as_ref(), &cfg.name, dns_addrs)?;
    let mut node_cfg = NodeConfig::new(cfg.name.clone(), listen.to_string(), public_key.to_vec());
    // The endpoint lease runs for every carrier the site has: the VIP, the DNS name, or both.
    node_cfg.vip = vip.enabled() || cfg.ddns.is_some();
    node_cfg.expected_nodes = cfg.expected_nodes;
    node_cfg.role_pin = cfg.role_pin;
    node_cfg.control_plane_count = cfg.control_plane_count;
    node_cfg.settle_ms = cfg.settle.as_millis() as u64;
    node_cfg.tick_ms = cfg.tick.as_millis() as u64;
    node_cfg.election_ticks = cfg.election_ticks;
    node_cfg.heartbeat_ticks = cfg.heartbeat_ticks;
    // The join secrets are sealed under a key derived from the site key; new ones (and nonces)
    // come from OS randomness, never from the logged seed.
    node_cfg.secrets = Some(muster_core::SiteSecrets::from_site_key(
        &site_key,
        rand::random(),
    ));
    node_cfg.agent_version = env!("CARGO_PKG_VERSION").into();
    node_cfg.new_identity = new_identity;
    if let Some(k) = &cfg.kubernetes {
        node_cfg.plan = true;
        node_cfg.worker_parallelism = k.worker_parallelism;
        node_cfg.install_retry_ms = k.retry_backoff.as_millis() as u64;
        node_cfg.max_install_attempts = k.max_attempts;
        node_cfg.certificate_key_refresh_ms = k
            .certificate_key_refresh
            .map_or(0, |d| d.as_millis() as u64);
    }
    let seed: u64 = rand::random();
    let node_id = node_cfg.id;
    let span = tracing::info_span!("agent", node = %format_id(node_id), name = %cfg.name);
    let _guard = span.enter();
    tracing::info!(%listen, seed, expected = cfg.expected_nodes, control_plane = cfg.control_plane_count, "starting");
    let node = Node::new(node_cfg, store, seed).context("starting the node state machine")?;

    let mut net_cfg = NetConfig::new(keypair, site_key, listen);
    net_cfg.bootstrap = cfg.bootstrap.clone();
    net_cfg.mdns = cfg.mdns;
    let (net, events) = muster_net::spawn(net_cfg).context("starting the network")?;

    let (query_tx, query_rx) = mpsc::channel(STATUS_QUEUE);
    let (stop_rpc, rpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let (stop_remote, remote_stopped) = tokio::sync::oneshot::channel::<()>();
    let remote_task = match cfg.rpc_listen {
        Some(addr) => {
            let key_path = cfg.data_dir.join(crate::tls::RPC_KEY_FILE);
            let key = crate::tls::KeyPair::load_or_create(&key_path)?;
            let task =
                rpc::serve_remote(addr, &key, cfg.operators.clone(), query_tx.clone(), async {
                    let _ = remote_stopped.await;
                })
                .await?;
            tracing::info!(%addr, key = %crate::tls::hex(&key.public_key), operators = cfg.operators.len(), "status RPC listening over TLS (mutual authentication)");
            Some(task)
        }
        None => None,
    };
    let rpc_task = rpc::serve(cfg.socket.clone(), query_tx, async {
        let _ = rpc_stopped.await;
    })
    .await?;
    tracing::info!(socket = %cfg.socket.display(), "status RPC listening");
    let metrics = crate::metrics::Metrics::start(cfg.metrics_listen).await?;

    let (installer, install_done) = match cfg.kubernetes.clone() {
        Some(k) => {
            let dir = cfg.data_dir.join(crate::identity::INSTALL_DIR);
            let (installer, done) = crate::installer::Installer::spawn(k.clone(), dir);
            (Some((installer, k)), Some(done))
        }
        None => (None, None),
    };
    let mut agent = Agent {
        node,
        net: net.clone(),
        peers: HashMap::new(),
        node_ids: HashMap::new(),
        discovery_settled: false,
        started: Instant::now(),
        vip,
        panic_file: test_panic_file(),
        installer,
        ip,
        api_watch: None,
        removals: mpsc::channel(4),
        uploads: mpsc::channel(4),
        install_dir: cfg.data_dir.join(crate::identity::INSTALL_DIR),
        events: crate::events::Events::new(
            node_id,
            cfg.name.clone(),
            crate::events::take_last_stop(&cfg.data_dir),
        ),
        events_seen_at: None,
        last_tick: Instant::now(),
        dns,
        metrics,
        notifier: crate::notify::Notifier::from_env(),
    };
    agent.watch_api_if_control_plane();
    let result = agent.event_loop(events, query_rx, install_done).await;
    // Whatever stopped the loop, this host must not keep the VIP after it is gone.
    agent.vip.release().await;
    let _ = stop_rpc.send(());
    let _ = stop_remote.send(());
    net.shutdown().await;
    let _ = rpc_task.await;
    if let Some(t) = remote_task {
        let _ = t.await;
    }
    match &result {
        Ok(()) => tracing::info!("stopped"),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "stopped on a fatal error");
            // The next start tells `muster events` (a store error, say, ends the agent).
            crate::events::record_last_stop(&cfg.data_dir, unix_ms(), &format!("{e:#}"));
        }
    }
    result
}

struct Agent {
    node: Node<DiskStore>,
    net: NetHandle,
    /// Node id → libp2p peer, learned from connections and from the replicated membership.
    peers: HashMap<NodeId, PeerId>,
    /// Peer → node id for the peers that connected: reading the id out of a peer id decodes
    /// (decompresses) its ed25519 key, tens of µs, and every message needs it.
    node_ids: HashMap<PeerId, NodeId>,
    /// Whether the network was told this host is a member of a formed site (mDNS then
    /// queries seldom; `muster_net::NetHandle::set_discovery_settled`).
    discovery_settled: bool,
    started: Instant,
    vip: crate::vip::Vip,
    /// See [`TEST_PANIC_FILE_ENV`]; always `None` in release builds.
    panic_file: Option<std::path::PathBuf>,
    /// The installer actor and its `[kubernetes]` config, if the site installs Kubernetes.
    installer: Option<(crate::installer::Installer, crate::config::Kubernetes)>,
    /// The watch of this host's API server, once it runs a control plane (`watch.rs`).
    api_watch: Option<mpsc::Receiver<bool>>,
    /// The DNS endpoint's updater (`dns.rs`; inert without `[ddns]`).
    dns: crate::dns::Dns,
    /// Results of certificate uploads this host runs as leader (`installer::spawn_upload`).
    uploads: (
        mpsc::Sender<crate::installer::UploadDone>,
        mpsc::Receiver<crate::installer::UploadDone>,
    ),
    /// `[node] data_dir`/`install`: where hooks' secrets files live while they run.
    install_dir: std::path::PathBuf,
    /// What happened, for `muster events` (`events.rs`), and when it was last compared.
    events: crate::events::Events,
    events_seen_at: Option<Instant>,
    /// When the tick branch last ran (`next_tick` caps the wait from here).
    last_tick: Instant,
    /// Results of remove commands this host runs as leader (`installer::spawn_removal`).
    removals: (
        mpsc::Sender<crate::installer::RemovalDone>,
        mpsc::Receiver<crate::installer::RemovalDone>,
    ),
    /// This host's address on the LAN interface (`MUSTER_NODE_IP`).
    ip: std::net::IpAddr,
    /// `[metrics] listen` (`metrics.rs`): sampled on ticks, lease outputs counted.
    metrics: crate::metrics::Metrics,
    /// systemd: READY once a member, STATUS lines, watchdog pings from the ticks (notify.rs).
    notifier: crate::notify::Notifier,
}

impl Agent {
    async fn event_loop(
        &mut self,
        mut events: muster_net::NetEvents,
        mut queries: mpsc::Receiver<Query>,
        mut install_done: Option<mpsc::Receiver<crate::installer::Done>>,
    ) -> anyhow::Result<()> {
        // A kernel timer rather than a `tokio::time::Sleep` (`deadline.rs`: tokio's wheel woke
        // the loop once more per probe for nothing).
        let mut tick = crate::deadline::Deadline::new()?;
        tick.set(Instant::now())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        loop {
            let due = self.next_tick();
            if tick.at() != Some(due) {
                tick.set(due)?;
            }
            tokio::select! {
                woke = tick.wait() => {
                    woke?;
                    self.tick().await?;
                }
                event = events.recv() => match event {
                    Some(e) => self.on_net_event(e).await?,
                    None => anyhow::bail!("network task ended unexpectedly"),
                },
                Some(query) = queries.recv() => self.on_query(query).await?,
                Some(done) = async {
                    match install_done.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let input = Input::InstallDone {
                        attempt: done.attempt,
                        result: done.result,
                        secrets_out: done.secrets_out,
                    };
                    self.step(input).await?;
                }
                Some(done) = self.uploads.1.recv() => {
                    let input = Input::CertificateUploadDone {
                        generation: done.generation,
                        attempt: done.attempt,
                        result: done.result,
                    };
                    self.step(input).await?;
                }
                Some(done) = self.removals.1.recv() => {
                    let input = Input::RemovalDone {
                        node_id: done.node_id,
                        attempt: done.attempt,
                        result: done.result,
                    };
                    self.step(input).await?;
                }
                Some(healthy) = async {
                    match self.api_watch.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => self.step(Input::LocalHealth { healthy }).await?,
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(()); }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(()); }
            }
        }
    }

    /// The status RPC's answer: the core's view with what the agent's actors know (DNS, the
    /// VIP as the kernel has it, refused connections, address conflicts).
    fn full_status(&self) -> muster_proto::StatusResponse {
        let mut status = self.node.status();
        status.dns = self.dns.status();
        let net = self.net.stats();
        status.rejected_connections = net.handshakes_rejected + net.connections_denied;
        if let Some(v) = status.vip.as_mut() {
            v.address = self.vip.address.clone();
            v.held_here = v.held_here && self.vip.is_held();
        }
        let vip_conflict = self.vip.conflict_text();
        if !vip_conflict.is_empty() {
            if !status.site_conflict.is_empty() {
                status.site_conflict.push_str("; ");
            }
            status.site_conflict.push_str(&vip_conflict);
        }
        status
    }

    /// Compares the status with the last one (every `events::OBSERVE_INTERVAL`): what changed
    /// becomes events (`muster events`).
    fn observe_events(&mut self, now: Instant) {
        if self
            .events_seen_at
            .is_some_and(|t| now < t + crate::events::OBSERVE_INTERVAL)
        {
            return;
        }
        self.events_seen_at = Some(now);
        let status = self.full_status();
        self.events.observe(&status, unix_ms());
    }

    async fn on_query(&mut self, query: Query) -> anyhow::Result<()> {
        match query {
            Query::Status(reply) => {
                let _ = reply.send(self.full_status());
            }
            Query::Events {
                after_seq,
                follow,
                reply,
            } => {
                let answer = if follow && self.events.followers() >= MAX_EVENT_FOLLOWERS {
                    Err(format!(
                        "{MAX_EVENT_FOLLOWERS} clients already follow this agent's events; try again later"
                    ))
                } else {
                    Ok(self.events.subscribe(after_seq, follow))
                };
                let _ = reply.send(answer);
            }
            Query::Transfer { to, reply } => {
                match self.node.request_transfer(to) {
                    Ok((target, from, outputs)) => {
                        self.carry_out(outputs).await;
                        // raft-rs's transfer messages go out with the next input: feed it now.
                        self.tick().await?;
                        let _ = reply.send(Ok(muster_proto::TransferResponse { target, from }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            Query::PlanAct { node, kind, reply } => {
                match self.node.request_plan_action(&node, kind) {
                    Ok((done, outputs)) => {
                        self.carry_out(outputs).await;
                        let _ = reply.send(Ok(muster_proto::PlanActResponse {
                            id: done.id,
                            name: done.name,
                            leader_id: done.leader,
                        }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            Query::Remove { node, spare, reply } => {
                match self.node.request_removal(&node, spare.as_deref()) {
                    Ok((removal, outputs)) => {
                        self.carry_out(outputs).await;
                        let _ = reply.send(Ok(muster_proto::RemoveHostResponse {
                            id: removal.id,
                            name: removal.name,
                            leader_id: removal.leader,
                        }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Ticks the core, then does the shell's own work on ticks (VIP retries and conflict checks,
    /// systemd, events, metrics). Every tick does it, the ones fed before a message included, so
    /// a follower whose ticks come with the leader's probes never needs a wake-up of its own for
    /// it ([`MAX_TICK_WAIT`] counts from the last tick of either kind).
    async fn tick(&mut self) -> anyhow::Result<()> {
        self.last_tick = Instant::now();
        self.test_fault();
        let input = Input::Tick {
            now_ms: self.now_ms(),
            unix_ms: unix_ms(),
        };
        self.step(input).await?;
        self.vip.retry_if_due(self.node.holds_vip()).await;
        self.vip.check_conflicts(self.node.vip_holder() != 0);
        let now = Instant::now();
        self.notifier.tick(now, || self.node.status());
        self.observe_events(now);
        self.metrics.tick(now, || self.node.status());
        Ok(())
    }

    /// When the next tick is due: the core's deadline, a VIP add retry, at most
    /// [`MAX_TICK_WAIT`] away (every [`TEST_FAULT_TICK`] with the test fault armed).
    fn next_tick(&self) -> Instant {
        let now = Instant::now();
        let cap = if self.panic_file.is_some() {
            TEST_FAULT_TICK
        } else {
            MAX_TICK_WAIT
        };
        // The core's clock is whole milliseconds since `started`.
        let core = self.started + Duration::from_millis(self.node.next_tick_ms());
        // The cap counts from the last tick, not from now: messages arriving more often than
        // the cap (a follower's heartbeats every 80 ms) must not keep postponing the shell's
        // own work on ticks (the systemd watchdog, metrics, events, VIP checks).
        let mut due = core.min(self.last_tick + cap);
        if let Some(retry) = self.vip.retry_at() {
            due = due.min(retry.max(now));
        }
        due
    }

    /// Panics if the test fault file exists (see [`TEST_PANIC_FILE_ENV`]).
    fn test_fault(&self) {
        if let Some(path) = self.panic_file.as_deref().filter(|p| p.exists()) {
            panic!("test fault: {} exists", path.display());
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn on_net_event(&mut self, event: NetEvent) -> anyhow::Result<()> {
        // Between deadlines the core's clock may lag; bring it up to a raft tick first.
        if self.node.clock_behind(self.now_ms()) {
            self.tick().await?;
        }
        match event {
            NetEvent::Connected { peer, remote } => {
                let Some(id) = self.learn_peer(peer) else {
                    return Ok(());
                };
                tracing::debug!(peer = %format_id(id), %remote, "peer connected");
                self.step(Input::PeerConnected { id }).await
            }
            NetEvent::Disconnected { peer } => {
                let Some(id) = self.learn_peer(peer) else {
                    return Ok(());
                };
                tracing::debug!(peer = %format_id(id), "peer disconnected");
                self.step(Input::PeerDisconnected { id }).await
            }
            NetEvent::Message { from, bytes } => {
                let Some(id) = self.learn_peer(from) else {
                    return Ok(());
                };
                match Envelope::decode(bytes.as_slice()) {
                    Ok(envelope) => self.step(Input::Message { from: id, envelope }).await,
                    Err(e) => {
                        tracing::warn!(peer = %format_id(id), error = %e, len = bytes.len(), "undecodable message dropped");
                        Ok(())
                    }
                }
            }
            NetEvent::HandshakeRejected { remote, error } => {
                tracing::warn!(%remote, %error, "connection rejected: handshake failed (peer without our site key?)");
                Ok(())
            }
        }
    }

    fn learn_peer(&mut self, peer: PeerId) -> Option<NodeId> {
        if let Some(&id) = self.node_ids.get(&peer) {
            self.peers.insert(id, peer);
            return Some(id);
        }
        match muster_net::node_id_of(&peer) {
            Some(id) => {
                self.peers.insert(id, peer);
                self.node_ids.insert(peer, id);
                Some(id)
            }
            None => {
                tracing::warn!(%peer, "peer without an ed25519 identity ignored");
                None
            }
        }
    }

    /// Feeds one input to the core and carries its outputs out.
    async fn step(&mut self, input: Input) -> anyhow::Result<()> {
        let outputs = self.node.handle(input).context("node state machine")?;
        self.carry_out(outputs).await;
        self.pace_discovery();
        Ok(())
    }

    /// A member of a formed site needs mDNS only to answer hosts that are looking (which it
    /// does at once at any pace); until then, and again if it stops being one, it queries
    /// at the fast pace that formation's "heard of every host" waits on.
    fn pace_discovery(&mut self) {
        let settled = self.node.site_formed()
            && muster_core::state::member(self.node.cluster_state(), self.node.id()).is_some();
        if settled != self.discovery_settled {
            self.discovery_settled = settled;
            self.net.set_discovery_settled(settled);
        }
    }

    /// Carries outputs out in order (a VIP release happens before any message after it is sent).
    async fn carry_out(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            self.metrics.output(&output, self.now_ms());
            match output {
                Output::Send { to, envelope } => match self.peers.get(&to) {
                    Some(peer) => self.net.send(*peer, envelope.encode_to_vec()),
                    None => {
                        tracing::debug!(to = %format_id(to), "no route to peer; message dropped")
                    }
                },
                Output::MembersChanged { members } => self.learn_members(&members),
                Output::EndpointAcquire { term, until_ms } => {
                    let until = self.started + Duration::from_millis(until_ms);
                    self.dns.hold(term);
                    self.vip.acquire(until).await
                }
                Output::EndpointRenew { term, until_ms } => {
                    self.dns.hold(term);
                    self.vip
                        .renew(self.started + Duration::from_millis(until_ms))
                }
                Output::EndpointRelease => {
                    self.dns.release();
                    self.vip.release().await
                }
                Output::Denied { removed } => self.refuse(&removed),
                Output::RunInstall {
                    role,
                    attempt,
                    secrets,
                } => {
                    self.start_install(role, attempt, secrets);
                    self.watch_api_if_control_plane();
                }
                Output::RunRemoval { duty, attempt } => self.start_removal(duty, attempt),
                Output::RunCertificateUpload {
                    generation,
                    attempt,
                    secrets,
                } => self.start_upload(generation, attempt, secrets),
            }
        }
    }

    /// Runs the remove command for a removed host (this host leads and runs a control plane).
    fn start_removal(&mut self, duty: muster_proto::RemovalDuty, attempt: u32) {
        let Some((_, k)) = &self.installer else {
            tracing::error!("a remove command asked for, but [kubernetes] is not configured");
            return;
        };
        let ip = duty
            .address
            .parse::<SocketAddr>()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let role = muster_proto::Role::try_from(duty.role).unwrap_or(muster_proto::Role::Worker);
        let env = vec![
            ("MUSTER_REMOVED_NAME".into(), duty.name.clone()),
            ("MUSTER_REMOVED_ID".into(), format_id(duty.node_id)),
            ("MUSTER_REMOVED_IP".into(), ip),
            (
                "MUSTER_REMOVED_ROLE".into(),
                crate::installer::role_name(role).into(),
            ),
            (
                "MUSTER_DISTRIBUTION".into(),
                k.distro.distribution.name().into(),
            ),
            ("MUSTER_NODE_NAME".into(), self.node.status().node_name),
            ("MUSTER_NODE_IP".into(), self.ip.to_string()),
        ];
        crate::installer::spawn_removal(k, duty.node_id, attempt, env, self.removals.0.clone());
    }

    /// Starts the watch of the local API server if this host's step in the plan is a
    /// control-plane one (at start, and when a step starts) and a health gate is configured.
    fn watch_api_if_control_plane(&mut self) {
        let Some((_, k)) = &self.installer else {
            return;
        };
        if self.api_watch.is_some() {
            return;
        }
        let id = self.node.id();
        let control_plane = self
            .node
            .cluster_state()
            .plan
            .as_ref()
            .and_then(|p| muster_core::plan::step_of(p, id))
            .is_some_and(|s| s.role != muster_proto::Role::Worker as i32);
        if control_plane {
            self.api_watch = crate::watch::spawn(&k.health);
        }
    }

    /// Hands this host's install step to the installer actor with the contract's environment.
    fn start_install(
        &mut self,
        role: muster_proto::Role,
        attempt: u32,
        secrets: muster_core::SecretValues,
    ) {
        let Some((installer, k)) = &self.installer else {
            tracing::error!(
                ?role,
                attempt,
                "install step asked for, but [kubernetes] is not configured"
            );
            return;
        };
        let (env, config) = self.hook_env(k, role, crate::installer::role_name(role), &secrets);
        let job = crate::installer::Job {
            role,
            attempt,
            env,
            secrets,
            config,
        };
        if !installer.start(job) {
            tracing::error!(
                ?role,
                attempt,
                "installer queue full; the step will be retried"
            );
        }
    }

    /// Runs the install hook with `MUSTER_ROLE=upload-certs` (this host leads and runs a
    /// control plane): kubeadm's certificates uploaded again under the fresh key in `secrets`,
    /// with the init config rendered for this host (`InitConfiguration.certificateKey`).
    fn start_upload(&mut self, generation: u32, attempt: u32, secrets: muster_core::SecretValues) {
        let Some((_, k)) = &self.installer else {
            tracing::error!("a certificate upload asked for, but [kubernetes] is not configured");
            return;
        };
        let (env, config) = self.hook_env(
            k,
            muster_proto::Role::Init,
            crate::installer::UPLOAD_ROLE,
            &secrets,
        );
        crate::installer::spawn_upload(
            k,
            self.install_dir.clone(),
            crate::installer::UploadJob {
                generation,
                attempt,
                env,
                secrets,
                config,
            },
            self.uploads.0.clone(),
        );
    }

    /// The install-hook contract's environment for `role_name`, and the distribution config
    /// rendered for `role` on this host (an error if it cannot be rendered: not the hook's
    /// fault and not transient, so the attempt fails saying why).
    fn hook_env(
        &self,
        k: &crate::config::Kubernetes,
        role: muster_proto::Role,
        role_name: &str,
        secrets: &muster_core::SecretValues,
    ) -> (Vec<(String, String)>, crate::installer::RenderedConfig) {
        let ip_of = |address: &str| {
            address
                .parse::<SocketAddr>()
                .map(|a| a.ip().to_string())
                .unwrap_or_default()
        };
        let state = self.node.cluster_state();
        let init_ip = state
            .plan
            .as_ref()
            .and_then(muster_core::plan::init_step)
            .and_then(|s| muster_core::state::member(state, s.node_id))
            .map(|m| ip_of(&m.address))
            .unwrap_or_default();
        // The API endpoint: the VIP (without its prefix), else the init host.
        let endpoint = self
            .vip
            .address
            .split(',')
            .next()
            .and_then(|a| a.split('/').next())
            .filter(|a| !a.is_empty())
            .map_or_else(|| init_ip.clone(), str::to_owned);
        let server_url = match role {
            muster_proto::Role::Init => String::new(),
            _ => k.distro.server_url(&endpoint),
        };
        let node_name = self.node.status().node_name;
        let rendered = k.distro.render(&muster_k8s::Step {
            role: crate::installer::k8s_role(role),
            node_name: &node_name,
            node_ip: self.ip,
            endpoint: &endpoint,
            init_ip: init_ip.parse().ok(),
            secrets: secrets.as_map(),
        });
        let mut env = vec![
            ("MUSTER_ROLE".into(), role_name.into()),
            (
                "MUSTER_DISTRIBUTION".into(),
                k.distro.distribution.name().into(),
            ),
            ("MUSTER_NODE_NAME".into(), node_name),
            ("MUSTER_NODE_ID".into(), format_id(self.node.id())),
            ("MUSTER_NODE_IP".into(), self.ip.to_string()),
            ("MUSTER_ENDPOINT".into(), endpoint),
            ("MUSTER_SERVER_URL".into(), server_url),
            ("MUSTER_INIT_IP".into(), init_ip),
        ];
        let config = rendered
            .map(|r| {
                r.map(|r| {
                    env.extend(r.env);
                    (r.file_name, r.contents)
                })
            })
            .map_err(|e| format!("cannot render the {} config: {e}", k.distro.distribution));
        (env, config)
    }

    /// Has the transport refuse removed hosts at the connection.
    fn refuse(&mut self, removed: &[muster_proto::Removed]) {
        for r in removed {
            let peer = <[u8; 32]>::try_from(r.public_key.as_slice())
                .ok()
                .and_then(|pk| muster_net::peer_id_of(&pk));
            match peer {
                Some(peer) => {
                    self.peers.remove(&r.id);
                    self.net.block(peer);
                }
                None => {
                    tracing::warn!(member = %format_id(r.id), "removed host has no valid public key")
                }
            }
        }
    }

    /// Records members' identities and addresses so the transport can dial them.
    fn learn_members(&mut self, members: &[Member]) {
        for m in members {
            if m.id == self.node.id() {
                continue;
            }
            let Ok(pk) = <[u8; 32]>::try_from(m.public_key.as_slice()) else {
                tracing::warn!(member = %format_id(m.id), "member has no valid public key");
                continue;
            };
            let Some(peer) = muster_net::peer_id_of(&pk) else {
                continue;
            };
            self.peers.insert(m.id, peer);
            match m.address.parse::<SocketAddr>() {
                Ok(addr) => self.net.add_address(peer, addr),
                Err(_) => {
                    tracing::warn!(member = %format_id(m.id), address = %m.address, "member address does not parse")
                }
            }
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Waits until `interface` has an IPv4 address (at boot DHCP may not have finished).
async fn wait_for_interface_address(interface: &str) -> anyhow::Result<IpAddr> {
    let mut attempt = 0u64;
    loop {
        let addrs = nix::ifaddrs::getifaddrs().context("listing interface addresses")?;
        let mut exists = false;
        for ifa in addrs {
            if ifa.interface_name != interface {
                continue;
            }
            exists = true;
            if let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
                return Ok(IpAddr::V4(sin.ip()));
            }
        }
        // Say so at once, then every ADDRESS_LOG_EVERY attempts.
        if attempt.is_multiple_of(ADDRESS_LOG_EVERY) {
            if exists {
                tracing::warn!(
                    interface,
                    "network.interface has no IPv4 address yet; waiting"
                );
            } else {
                tracing::warn!(interface, "network.interface does not exist (yet); waiting");
            }
        }
        attempt += 1;
        tokio::time::sleep(ADDRESS_RETRY).await;
    }
}
