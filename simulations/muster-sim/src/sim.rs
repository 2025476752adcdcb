//! The simulator: N core nodes over a virtual clock and the virtual network of `net.rs`.
//!
//! Every event — boot, tick, discovery attempt, connection, message delivery, link timeout,
//! fault, disk sync, site check — sits in one [`EventQueue`] ordered by (virtual time, push
//! order), and every random choice is drawn from one ChaCha8 RNG seeded by the run's seed, so a
//! scenario and a seed replay the same run exactly. After each input a node handles, the
//! simulator reads the node's state and store and hands an observation to the [`Checker`]; the
//! node's outputs go to the network (sends), the address book (membership) and the checker (VIP).
//! Faults are applied in `faults.rs`.

use std::collections::BTreeSet;

use muster_core::{Input, Node, NodeConfig, NodeId, Output};
use muster_proto::envelope::Body;
use muster_proto::Envelope;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::check::Checker;
use crate::disk::SimDisk;
use crate::idhash::{IdMap, IdSet};
use crate::metrics::{Mark, Metrics};
use crate::net::Net;
use crate::queue::EventQueue;
use crate::scenario::{Action, BootMode, Scenario};
use crate::trace::Trace;

/// Wall-clock epoch the hosts' unix clocks start near (2023-11-14).
const UNIX_EPOCH_MS: u64 = 1_700_000_000_000;

/// Run options that are not part of the scenario (they do not change the run).
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Keep the text trace (for `--trace`).
    pub trace_text: bool,
    /// Virtual ms between site-wide checks.
    pub check_interval_ms: u64,
    /// Run each host's core inside a `host` span naming the host and the virtual time, so that
    /// the core's tracing events (`run --log`) say whose they are.
    pub log_spans: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            trace_text: false,
            check_interval_ms: 10,
            log_spans: false,
        }
    }
}

/// A scheduled event.
#[derive(Debug)]
pub(crate) enum Ev {
    Boot(u32),
    Tick(u32, u32),
    Discover(u32, u32),
    Sync(u32, u32),
    Connect(u32, u32),
    LinkTimeout(u32, u32),
    Deliver {
        from: u32,
        to: u32,
        to_inc: u32,
        envelope: Envelope,
    },
    Fault(usize),
    Check,
    /// Adversary `k` sends one crafted message (`adversary.rs`).
    Adversary(u32),
    /// A simulated install hook finished (`install.rs`).
    InstallDone {
        host: u32,
        inc: u32,
        attempt: u32,
        ok: bool,
    },
    /// An input that arrived while its host was paused.
    Deferred(u32, u32, Input),
}

/// One host: its identity, clock, disk and (while up) its node.
pub struct Host {
    /// Node id.
    pub id: NodeId,
    /// Name (`n<index>`).
    pub name: String,
    pub(crate) cfg: NodeConfig,
    /// The running node.
    pub node: Option<Node<SimDisk>>,
    pub(crate) disk: Option<SimDisk>,
    /// Boots so far (messages and timers of an earlier incarnation are dropped).
    pub(crate) inc: u32,
    rate_ppm: i64,
    clock_offset_ms: u64,
    /// Stalled (pause fault) until this virtual time.
    pub(crate) paused_until: u64,
    /// (cluster, applied index) at which `non_voter` was last worked out.
    non_voter_at: (u64, u64),
    non_voter: bool,
}

impl Host {
    /// Node-local monotonic time at virtual time `v`: offset + v·(1 + skew).
    fn local_ms(&self, v: u64) -> u64 {
        let skewed = i128::from(v) + i128::from(v) * i128::from(self.rate_ppm) / 1_000_000;
        self.clock_offset_ms + skewed.max(0) as u64
    }

    /// The first virtual time at which the node's clock reads `local` or later.
    pub(crate) fn virtual_at(&self, local: u64) -> u64 {
        let Some(d) = local.checked_sub(self.clock_offset_ms) else {
            return 0;
        };
        let rate = 1_000_000 + i128::from(self.rate_ppm);
        let mut v = (i128::from(d) * 1_000_000 / rate.max(1)).max(0) as u64;
        while v > 0 && self.local_ms(v - 1) >= local {
            v -= 1;
        }
        while self.local_ms(v) < local {
            v += 1;
        }
        v
    }
}

/// The simulated site.
pub struct Sim {
    /// The scenario.
    pub scenario: Scenario,
    /// The seed.
    pub seed: u64,
    pub(crate) rng: ChaCha8Rng,
    /// Virtual time.
    pub now_ms: u64,
    /// Hosts by index.
    pub hosts: Vec<Host>,
    pub(crate) index: IdMap<NodeId, u32>,
    pub(crate) q: EventQueue<Ev>,
    /// The virtual network.
    pub net: Net,
    /// The invariant checker.
    pub checker: Checker,
    /// Metrics and timeline.
    pub metrics: Metrics,
    /// The event trace.
    pub trace: Trace,
    /// See [`SimOptions::log_spans`].
    log_spans: bool,
    pub(crate) schedule: Vec<(u64, Action)>,
    tick_ms: u64,
    non_voter_tick_ms: u64,
    check_ms: u64,
    pub(crate) wipe: BTreeSet<usize>,
    pending_dials: IdSet<(u32, u32)>,
    pub(crate) trace_violations: usize,
    /// Events processed.
    pub events: u64,
    /// Identities that hold the site key but are never admitted.
    pub adversaries: Vec<crate::adversary::Adversary>,
    /// The I3 checker of simulated install steps.
    pub installs: crate::install::InstallChecker,
}

impl Sim {
    /// Builds the site of `scenario` for `seed` and schedules boots, faults and checks.
    pub fn new(scenario: Scenario, seed: u64, opts: &SimOptions) -> Result<Sim, String> {
        scenario.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = scenario.nodes;
        let mut hosts = Vec::with_capacity(n);
        let mut index = IdMap::default();
        let skew = scenario.network.clock_skew_ppm as i64;
        for i in 0..n {
            let cfg = loop {
                let mut pk = [0u8; 32];
                rng.fill(&mut pk[..]);
                let cfg = Self::node_config(&scenario, i, pk.to_vec());
                if !index.contains_key(&cfg.id) {
                    break cfg;
                }
            };
            cfg.validate().map_err(|e| format!("node config: {e}"))?;
            index.insert(cfg.id, i as u32);
            hosts.push(Host {
                id: cfg.id,
                name: format!("n{i}"),
                cfg,
                node: None,
                disk: Some(SimDisk::new(scenario.test_faults.lying_fsync)),
                inc: 0,
                rate_ppm: if skew > 0 {
                    rng.random_range(-skew..=skew)
                } else {
                    0
                },
                clock_offset_ms: rng.random_range(10_000..1_000_000),
                paused_until: 0,
                non_voter_at: (u64::MAX, u64::MAX),
                non_voter: false,
            });
        }
        let names = hosts.iter().map(|h| h.name.clone()).collect();
        let schedule = scenario.schedule()?;
        let quiet = scenario.quiet_from_ms();
        let wipe = crate::faults::resolve_static(&scenario.wipe_selector(), n);
        let taken: Vec<u64> = hosts.iter().map(|h: &Host| h.id).collect();
        let adv = &scenario.adversary;
        let adversaries = (0..adv.count)
            .map(|k| crate::adversary::Adversary::new(&mut rng, k, adv.squat_lowest_id, n, &taken))
            .collect();
        let mut checker = Checker::new(names, quiet, scenario.expect.liveness_bound_ms);
        checker.set_site(n, scenario.expected());
        let mut sim = Sim {
            tick_ms: scenario.timing.tick_interval_ms.unwrap_or(10),
            non_voter_tick_ms: scenario
                .timing
                .non_voter_tick_interval_ms
                .or(scenario.timing.tick_interval_ms)
                .unwrap_or(10),
            check_ms: opts.check_interval_ms.max(1),
            net: Net::new(n, scenario.network.clone()),
            checker,
            metrics: Metrics::new(n),
            trace: Trace::new(opts.trace_text),
            log_spans: opts.log_spans,
            scenario,
            seed,
            rng,
            now_ms: 0,
            hosts,
            index,
            q: EventQueue::default(),
            schedule,
            wipe,
            pending_dials: IdSet::default(),
            trace_violations: 0,
            events: 0,
            adversaries,
            installs: Default::default(),
        };
        sim.schedule_boots();
        sim.schedule_adversaries();
        for k in 0..sim.schedule.len() {
            sim.q.push(sim.schedule[k].0, Ev::Fault(k));
        }
        sim.q.push(0, Ev::Check);
        Ok(sim)
    }

    fn node_config(s: &Scenario, i: usize, pk: Vec<u8>) -> NodeConfig {
        let name = format!("n{i}");
        let addr = format!("10.77.{}.{}:7946", i / 250, i % 250 + 1);
        let mut c = NodeConfig::new(name, addr, pk);
        c.expected_nodes = s.expected();
        c.control_plane_count = s.control_plane_count;
        c.vip = s.vip;
        c.lease_stretch_pct_for_tests = s.test_faults.lease_stretch_pct;
        c.site_rule_off_for_tests = s.test_faults.site_rule_off;
        c.raft_gate_off_for_tests = s.test_faults.raft_gate_off;
        c.plan = s.install.enabled;
        c.install_ignores_plan_for_tests = s.test_faults.install_ignores_plan;
        c.install_retry_ms = s.install.retry_ms;
        let t = &s.timing;
        if let Some(v) = t.settle_ms {
            c.settle_ms = v;
        }
        if let Some(v) = t.raft_tick_ms {
            c.tick_ms = v;
        }
        if let Some(v) = t.election_ticks {
            c.election_ticks = v;
        }
        if let Some(v) = t.heartbeat_ticks {
            c.heartbeat_ticks = v;
        }
        if let Some(v) = t.hello_interval_ms {
            c.hello_interval_ms = v;
        }
        if let Some(v) = t.max_clock_drift_pct {
            c.max_clock_drift_pct = v;
        }
        if let Some(v) = t.peer_timeout_ms {
            c.peer_timeout_ms = v;
        }
        c
    }

    fn schedule_boots(&mut self) {
        let b = self.scenario.boot.clone();
        for i in 0..self.hosts.len() {
            let at = match b.mode {
                BootMode::Together => b.start_ms,
                BootMode::Staggered => b.start_ms + b.spacing_ms * i as u64,
                BootMode::Random => b.start_ms + self.rng.random_range(0..=b.window_ms),
            };
            self.q.push(at, Ev::Boot(i as u32));
        }
    }

    /// Whether host `i` is up.
    pub fn is_up(&self, i: usize) -> bool {
        self.hosts[i].node.is_some()
    }

    /// Runs every event up to and including virtual time `end_ms`.
    pub fn run_until(&mut self, end_ms: u64) {
        while self.q.peek_time().is_some_and(|t| t <= end_ms) {
            let Some((t, ev)) = self.q.pop() else { break };
            self.now_ms = t;
            self.events += 1;
            self.dispatch(ev);
        }
        self.now_ms = self.now_ms.max(end_ms);
    }

    /// Runs until `done` holds at a site check, or `limit_ms` passes; returns whether it held.
    pub fn run_while(&mut self, limit_ms: u64, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now_ms + limit_ms;
        while self.now_ms < end {
            self.run_until((self.now_ms + self.check_ms).min(end));
            if done(self) {
                return true;
            }
        }
        false
    }

    fn dispatch(&mut self, ev: Ev) {
        let t = self.now_ms;
        match ev {
            Ev::Boot(i) => self.boot(i as usize),
            Ev::Tick(i, inc) => {
                let paused = self.hosts[i as usize].paused_until;
                if paused > t {
                    // Missed ticks do not pile up: one tick when the host resumes.
                    self.q.push(paused, Ev::Tick(i, inc));
                } else if self.current(i, inc) {
                    self.hash_ev(1, i, 0);
                    let h = &self.hosts[i as usize];
                    let now_ms = h.local_ms(t);
                    let unix_ms = UNIX_EPOCH_MS + now_ms;
                    self.input(i as usize, Input::Tick { now_ms, unix_ms });
                    let every = if self.is_non_voter(i as usize) {
                        self.non_voter_tick_ms
                    } else {
                        self.tick_ms
                    };
                    self.q.push(t + every, Ev::Tick(i, inc));
                }
            }
            Ev::Discover(i, inc) => {
                if self.current(i, inc) {
                    self.discover(i as usize);
                    let next = t + self.net.spec.discovery_interval_ms;
                    self.q.push(next, Ev::Discover(i, inc));
                }
            }
            Ev::Sync(i, inc) => {
                if self.current(i, inc) {
                    if let Some(node) = self.hosts[i as usize].node.as_ref() {
                        node.store().sync();
                    }
                    let next = t + self.scenario.test_faults.sync_interval_ms;
                    self.q.push(next, Ev::Sync(i, inc));
                }
            }
            Ev::Connect(a, b) => {
                self.pending_dials.remove(&(a.min(b), a.max(b)));
                self.connect(a as usize, b as usize);
            }
            Ev::LinkTimeout(a, b) => {
                let (a, b) = (a as usize, b as usize);
                if self.net.connected(a, b) && !self.net.path_ok(a, b) {
                    self.disconnect(a, b);
                }
            }
            Ev::Deliver {
                from,
                to,
                to_inc,
                envelope,
            } => self.deliver(from as usize, to as usize, to_inc, envelope),
            Ev::Fault(k) => {
                let action = self.schedule[k].1.clone();
                self.apply(&action);
            }
            Ev::Deferred(i, inc, input) => {
                if self.current(i, inc) {
                    self.input(i as usize, input);
                }
            }
            Ev::Check => {
                let site = self.site_view();
                if site.formed {
                    self.metrics.formed(t);
                }
                self.checker.site(t, &site);
                self.check_isolation();
                self.q.push(t + self.check_ms, Ev::Check);
            }
            Ev::Adversary(k) => self.adversary_act(k as usize),
            Ev::InstallDone {
                host,
                inc,
                attempt,
                ok,
            } => self.on_install_done(host as usize, inc, attempt, ok),
        }
    }

    /// Whether host `i` is not a voter: a learner, or in no cluster yet (worked out again when
    /// its applied state changes). Only used when non-voters tick at their own interval.
    fn is_non_voter(&mut self, i: usize) -> bool {
        if self.non_voter_tick_ms == self.tick_ms {
            return false;
        }
        let o = self.checker.view(i).copied().unwrap_or_default();
        let h = &mut self.hosts[i];
        if h.non_voter_at != (o.cluster, o.applied) || o.is_leader {
            h.non_voter_at = (o.cluster, o.applied);
            h.non_voter = !o.is_leader
                && h.node.as_ref().is_some_and(|n| {
                    let me = n.id();
                    !n.cluster_state()
                        .members
                        .iter()
                        .any(|m| m.id == me && m.voter)
                });
        }
        h.non_voter
    }

    fn current(&self, i: u32, inc: u32) -> bool {
        let h = &self.hosts[i as usize];
        h.inc == inc && h.node.is_some()
    }

    fn hash_ev(&mut self, kind: u64, a: u32, b: u32) {
        let h = self.trace.hasher();
        h.u64(self.now_ms);
        h.u64(kind << 48 | u64::from(a) << 24 | u64::from(b));
    }

    /// Boots host `i` from its disk (or an empty one if the wipe fault names it).
    pub(crate) fn boot(&mut self, i: usize) {
        if self.is_up(i) {
            return;
        }
        let t = self.now_ms;
        let lying = self.scenario.test_faults.lying_fsync;
        let host = &mut self.hosts[i];
        let mut disk = host.disk.take().unwrap_or_else(|| SimDisk::new(lying));
        if host.inc > 0 && self.wipe.contains(&i) {
            disk = SimDisk::new(lying);
        }
        let seed: u64 = self.rng.random();
        let kept = disk.clone();
        let mut cfg = host.cfg.clone();
        // The first boot's identity is new (a wiped disk keeps the host's identity here).
        cfg.new_identity = host.inc == 0;
        match fatal(std::panic::catch_unwind(move || Node::new(cfg, disk, seed))) {
            Ok(node) => host.node = Some(node),
            Err(e) => {
                host.disk = Some(kept);
                let detail = format!("{} cannot start: {e}", host.name);
                self.note(format!("CORE ERROR {detail}"));
                self.checker.violate(t, "core", detail);
                return;
            }
        }
        host.inc += 1;
        host.paused_until = 0;
        let inc = host.inc;
        self.hash_ev(2, i as u32, inc);
        let h = &self.hosts[i];
        self.note(format!(
            "boot {} id {:016x} (incarnation {inc})",
            h.name, h.id
        ));
        self.metrics.boot(t, i);
        let obs = self.obs(i);
        if let Some(node) = self.hosts[i].node.as_ref() {
            self.checker.on_boot(t, i, obs, &node.store());
        }
        // Hosts tick out of phase with each other, like independent machines.
        let tick_phase = self.rng.random_range(1..=self.tick_ms);
        let disc_phase = self
            .rng
            .random_range(0..self.net.spec.discovery_interval_ms);
        let now_ms = self.hosts[i].local_ms(t);
        self.input(
            i,
            Input::Tick {
                now_ms,
                unix_ms: UNIX_EPOCH_MS + now_ms,
            },
        );
        self.q.push(t + tick_phase, Ev::Tick(i as u32, inc));
        self.q.push(t + disc_phase, Ev::Discover(i as u32, inc));
        if lying {
            let s = self.scenario.test_faults.sync_interval_ms;
            self.q.push(t + s, Ev::Sync(i as u32, inc));
        }
    }

    /// Kills host `i`: its disk keeps what survives a crash, its connections close.
    pub(crate) fn crash(&mut self, i: usize) {
        let Some(node) = self.hosts[i].node.take() else {
            return;
        };
        let mut disk = node.store().clone();
        drop(node);
        disk.crash();
        self.hosts[i].disk = Some(disk);
        self.hash_ev(3, i as u32, 0);
        self.note(format!("crash {}", self.hosts[i].name));
        let t = self.now_ms;
        if self.checker.view(i).is_some_and(|v| v.is_leader) {
            self.metrics.mark(t, i, Mark::Leader(false));
        }
        if self.checker.holds_vip(i, self.now_ms) {
            self.metrics.mark(t, i, Mark::Vip(false));
        }
        self.metrics.mark(t, i, Mark::Down);
        self.checker.on_crash(i);
        self.install_crashed(i);
        let peers: Vec<usize> = self.net.peers(i).collect();
        for j in peers {
            self.disconnect(i, j);
        }
        self.net.forget_all(i);
    }

    fn connect(&mut self, a: usize, b: usize) {
        if a == b
            || !self.is_up(a)
            || !self.is_up(b)
            || self.net.connected(a, b)
            || !self.net.path_ok(a, b)
        {
            return;
        }
        self.hash_ev(4, a as u32, b as u32);
        self.net.connect(a, b);
        let (ia, ib) = (self.hosts[a].id, self.hosts[b].id);
        self.input(a, Input::PeerConnected { id: ib });
        self.input(b, Input::PeerConnected { id: ia });
    }

    pub(crate) fn disconnect(&mut self, a: usize, b: usize) {
        if !self.net.connected(a, b) {
            return;
        }
        self.hash_ev(5, a as u32, b as u32);
        self.net.disconnect(a, b);
        let (ia, ib) = (self.hosts[a].id, self.hosts[b].id);
        self.input(a, Input::PeerDisconnected { id: ib });
        self.input(b, Input::PeerDisconnected { id: ia });
    }

    /// Schedules a dial `a → b` (a connection after one round trip), once per pair at a time.
    fn dial(&mut self, a: usize, b: usize) -> Option<u64> {
        let key = (a.min(b) as u32, a.max(b) as u32);
        let rtt = self.net.delay(&mut self.rng) + self.net.delay(&mut self.rng);
        if self.pending_dials.insert(key) {
            self.q
                .push(self.now_ms + rtt, Ev::Connect(a as u32, b as u32));
        }
        Some(rtt)
    }

    /// One multicast discovery attempt of host `i`.
    fn discover(&mut self, i: usize) {
        let n = self.hosts.len();
        let fanout = self.net.spec.discovery_fanout;
        let candidates: Vec<usize> = if fanout == 0 || fanout >= n - 1 {
            (0..n).collect()
        } else {
            (0..fanout).map(|_| self.rng.random_range(0..n)).collect()
        };
        for j in candidates {
            if j == i || self.net.connected(i, j) || !self.is_up(j) || !self.net.path_ok(i, j) {
                continue;
            }
            if !self.net.discovery_ok(&mut self.rng) {
                continue;
            }
            self.net.stats.discovered += 1;
            self.net.learn(i, j);
            self.dial(i, j);
        }
    }

    fn deliver(&mut self, from: usize, to: usize, to_inc: u32, envelope: Envelope) {
        let ok = self.hosts[to].inc == to_inc
            && self.is_up(to)
            && self.net.connected(from, to)
            && !self.net.blocked(from, to);
        if !ok {
            self.net.stats.dropped += 1;
            return;
        }
        self.net.stats.delivered += 1;
        self.hash_ev(6, from as u32, to as u32);
        let id = self.hosts[from].id;
        self.input(to, Input::Message { from: id, envelope });
    }

    /// Hands one input to host `i`'s node and carries out what it returns.
    pub(crate) fn input(&mut self, i: usize, input: Input) {
        let host = &self.hosts[i];
        if host.paused_until > self.now_ms && host.node.is_some() {
            let ev = Ev::Deferred(i as u32, host.inc, input);
            self.q.push(host.paused_until, ev);
            return;
        }
        let span = self.log_spans.then(|| {
            tracing::info_span!("host", n = %self.hosts[i].name, t = self.now_ms).entered()
        });
        let Some(node) = self.hosts[i].node.as_mut() else {
            return;
        };
        // A panic in the core would kill the agent; here it kills the host and is reported.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.handle(input)));
        drop(span);
        let outputs = match fatal(result) {
            Ok(o) => o,
            Err(e) => {
                let detail = format!("{} stopped: {e}", self.hosts[i].name);
                self.note(format!("CORE ERROR {detail}"));
                self.checker.violate(self.now_ms, "core", detail);
                self.crash(i);
                return;
            }
        };
        self.observe(i);
        for out in outputs {
            match out {
                Output::Send { to, envelope } => self.send(i, to, envelope),
                Output::MembersChanged { members } => {
                    for m in &members {
                        if let Some(&j) = self.index.get(&m.id) {
                            self.net.learn(i, j as usize);
                        }
                    }
                    self.metrics
                        .mark(self.now_ms, i, Mark::Members(members.len()));
                }
                Output::EndpointAcquire { until_ms, .. } => {
                    self.hash_ev(7, i as u32, 1);
                    self.note(format!(
                        "vip acquire {} until {until_ms}",
                        self.hosts[i].name
                    ));
                    let fence = self.fence_at(i, until_ms);
                    self.checker.on_vip(self.now_ms, i, true, Some(fence));
                    self.metrics.vip_acquired(self.now_ms, i);
                }
                Output::EndpointRenew { until_ms, .. } => {
                    self.hash_ev(7, i as u32, 2);
                    let fence = self.fence_at(i, until_ms);
                    self.checker.on_vip(self.now_ms, i, false, Some(fence));
                }
                Output::RunInstall { role, attempt, .. } => self.on_run_install(i, role, attempt),
                // The simulator removes no hosts.
                Output::RunRemoval { .. } => {}
                // The simulator's plans refresh no certificates (`certificate_key_refresh_ms`
                // is 0; the core's scenario tests cover uploads).
                Output::RunCertificateUpload { .. } => {}
                Output::Denied { removed } => {
                    // The transport refuses removed identities: drop the connections.
                    for r in removed {
                        if let Some(&j) = self.index.get(&r.id) {
                            self.disconnect(i, j as usize);
                        }
                    }
                }
                Output::EndpointRelease => {
                    self.hash_ev(7, i as u32, 0);
                    self.note(format!("vip release {}", self.hosts[i].name));
                    self.checker.on_vip(self.now_ms, i, false, None);
                    self.metrics.mark(self.now_ms, i, Mark::Vip(false));
                }
            }
        }
        self.flush_violations();
    }

    /// When host `i`'s lease fence removes the VIP, for a lease ending at `until_ms` on its clock.
    fn fence_at(&self, i: usize, until_ms: u64) -> u64 {
        if self.scenario.test_faults.no_vip_fence {
            u64::MAX
        } else {
            self.hosts[i].virtual_at(until_ms)
        }
    }

    fn send(&mut self, i: usize, to: NodeId, envelope: Envelope) {
        self.net.stats.sent += 1;
        let Some(&j) = self.index.get(&to) else {
            self.net.stats.dropped += 1;
            return;
        };
        let j = j as usize;
        self.hash_ev(8, i as u32, j as u32);
        hash_envelope(self.trace.hasher(), &envelope);
        let mut extra = 0;
        if !self.net.connected(i, j) {
            // The transport dials a known address and sends once connected.
            if !self.net.knows(i, j) || !self.is_up(j) || !self.net.path_ok(i, j) {
                self.net.stats.dropped += 1;
                return;
            }
            extra = self.dial(i, j).unwrap_or(0);
        }
        let (delays, copies) = self.net.fate(&mut self.rng, i, j);
        let to_inc = self.hosts[j].inc;
        let deliver = |envelope| Ev::Deliver {
            from: i as u32,
            to: j as u32,
            to_inc,
            envelope,
        };
        if copies == 2 {
            self.q
                .push(self.now_ms + extra + delays[1], deliver(envelope.clone()));
        }
        if copies >= 1 {
            self.q
                .push(self.now_ms + extra + delays[0], deliver(envelope));
        }
    }
}

/// What stops a node: a fatal core error, or a panic (which would kill the agent).
fn fatal<T>(r: std::thread::Result<Result<T, muster_core::CoreError>>) -> Result<T, String> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("fatal core error: {e}")),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".into());
            Err(format!("core panicked: {msg}"))
        }
    }
}

/// Feeds what identifies a message into the trace hash (not whole hellos: their member lists
/// follow from the rest of the trace).
fn hash_envelope(h: &mut crate::trace::Fnv64, e: &Envelope) {
    match &e.body {
        Some(Body::Hello(x)) => {
            h.u64(1);
            h.u64(x.cluster_id);
            h.u64(x.leader_id);
            h.u64(u64::from(x.member_count) << 1 | u64::from(x.vip_held));
        }
        Some(Body::JoinRequest(x)) => {
            h.u64(2);
            h.u64(x.cluster_id);
        }
        Some(Body::JoinResponse(x)) => {
            h.u64(3);
            h.u64(x.cluster_id);
            h.u64(u64::from(x.accepted));
        }
        Some(Body::Raft(x)) => {
            h.u64(4);
            h.u64(x.cluster_id);
            h.bytes(&x.message);
        }
        Some(Body::RemoveRequest(x)) => {
            h.u64(5);
            h.u64(x.node_id);
        }
        Some(Body::TransferForward(x)) => {
            h.u64(8);
            h.u64(x.to);
        }
        Some(Body::PlanActionRequest(x)) => {
            h.u64(7);
            if let Some(a) = &x.action {
                h.u64(a.node_id);
            }
        }
        Some(Body::StepReport(x)) => {
            h.u64(6);
            if let Some(p) = &x.progress {
                h.u64(p.node_id);
                h.u64(u64::from(p.attempt) << 8 | p.state as u64);
            }
        }
        None => h.u64(0),
    }
}
