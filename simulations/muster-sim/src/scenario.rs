//! Scenario files: a site (nodes, expectations), its boot schedule, network, fault schedule,
//! duration and expected outcome, in TOML.
//!
//! [`Scenario::load`] parses and validates a file; [`Scenario::schedule`] compiles the fault list
//! (with `repeat`, `every_ms` and flapping links expanded) into timed [`Action`]s for the
//! simulator. Node selectors (`"3"`, `"0-2"`, `"leader"`, `"random:2"`, …) are parsed here and
//! resolved by the simulator at the moment a fault fires. Unknown keys are errors.

use serde::{Deserialize, Serialize};

/// Largest site the simulator runs.
pub const MAX_NODES: usize = 1000;
/// Largest number of expanded fault events.
pub const MAX_FAULT_EVENTS: usize = 10_000;

/// A whole scenario file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, shown in reports.
    pub name: String,
    /// What the scenario exercises.
    #[serde(default)]
    pub description: String,
    /// Hosts in the site.
    pub nodes: usize,
    /// `expected_nodes` of every host's config (default: `nodes`).
    pub expected_nodes: Option<usize>,
    /// Raft voters wanted: 1, 3 or 5.
    #[serde(default = "default_cp")]
    pub control_plane_count: usize,
    /// Virtual run length.
    pub duration_ms: u64,
    /// Whether hosts float a VIP (the core then emits VIP outputs, checked for I2).
    #[serde(default = "yes")]
    pub vip: bool,
    /// When hosts boot.
    #[serde(default)]
    pub boot: Boot,
    /// Core timing overrides and the simulator's tick.
    #[serde(default)]
    pub timing: Timing,
    /// The virtual network.
    #[serde(default)]
    pub network: NetworkSpec,
    /// The fault schedule.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// Expected outcome.
    #[serde(default)]
    pub expect: Expect,
    /// Faults that break the system on purpose, to show the checker catches them.
    #[serde(default)]
    pub test_faults: TestFaults,
    /// Hosts that hold the site key but are never admitted, attacking the site.
    #[serde(default)]
    pub adversary: AdversarySpec,
    /// Simulated Kubernetes install steps (the join plan, I3).
    #[serde(default)]
    pub install: InstallSpec,
}

/// Simulated install steps (`install.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstallSpec {
    /// The site installs Kubernetes: the leader commits a plan once formed (core `plan`).
    pub enabled: bool,
    /// Each hook run takes a uniformly random time in this range.
    pub duration_ms: [u64; 2],
    /// Probability in percent that a run fails.
    pub fail_pct: f64,
    /// Core `install_retry_ms`: backoff before a failed step is retried (doubling).
    pub retry_ms: u64,
    /// At the end every up host's plan must have every step succeeded.
    pub expect_done: bool,
}

impl Default for InstallSpec {
    fn default() -> Self {
        InstallSpec {
            enabled: false,
            duration_ms: [200, 1_000],
            fail_pct: 0.0,
            retry_ms: 500,
            expect_done: true,
        }
    }
}

/// The adversary model (`adversary.rs`): identities that hold the site key (they connect to
/// every host), are never admitted, and send forged raft messages, lying hellos, random bytes
/// and bad join traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdversarySpec {
    /// How many adversary identities (0 = none).
    pub count: usize,
    /// The first adversary takes an id below every host's and claims, forever, to be in no
    /// cluster (squatting the lowest-id bootstrap rule).
    pub squat_lowest_id: bool,
    /// Each adversary sends one crafted message this often.
    pub interval_ms: u64,
}

impl Default for AdversarySpec {
    fn default() -> Self {
        AdversarySpec {
            count: 0,
            squat_lowest_id: false,
            interval_ms: 20,
        }
    }
}

fn default_cp() -> usize {
    3
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}

/// How hosts boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootMode {
    /// All at `start_ms`.
    #[default]
    Together,
    /// Host `i` at `start_ms + i · spacing_ms`.
    Staggered,
    /// Each at a uniformly random time in `[start_ms, start_ms + window_ms]`.
    Random,
}

/// The boot schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// Together, staggered or random.
    #[serde(default)]
    pub mode: BootMode,
    /// First boot.
    #[serde(default)]
    pub start_ms: u64,
    /// Gap between boots (staggered).
    #[serde(default = "default_spacing")]
    pub spacing_ms: u64,
    /// Window of random boots.
    #[serde(default = "default_window")]
    pub window_ms: u64,
}

fn default_spacing() -> u64 {
    1_000
}
fn default_window() -> u64 {
    5_000
}

impl Default for Boot {
    fn default() -> Self {
        Boot {
            mode: BootMode::Together,
            start_ms: 0,
            spacing_ms: default_spacing(),
            window_ms: default_window(),
        }
    }
}

/// Timing: the simulator's tick and overrides of the core's defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Virtual ms between two `Tick` inputs to a node. The agent ticked every 10 ms; it now ticks
    /// at the core's deadlines (`muster_core::timers`), which `TestNet::deadline_ticks` models.
    pub tick_interval_ms: Option<u64>,
    /// A simulation shortcut for big sites: hosts that are not voters (learners, and hosts in
    /// no cluster yet), which neither elect nor hold the VIP, tick at this interval instead.
    /// Raft's own tick is 50 ms anyway; their hellos, join retries and merge checks run up to
    /// this much later. Default: `tick_interval_ms` (no shortcut).
    pub non_voter_tick_interval_ms: Option<u64>,
    /// Core `settle_ms`.
    pub settle_ms: Option<u64>,
    /// Core `tick_ms` (raft tick).
    pub raft_tick_ms: Option<u64>,
    /// Core `election_ticks`.
    pub election_ticks: Option<usize>,
    /// Core `heartbeat_ticks`.
    pub heartbeat_ticks: Option<usize>,
    /// Core `hello_interval_ms`.
    pub hello_interval_ms: Option<u64>,
    /// Core `max_clock_drift_pct` (the lease assumes clocks differ by at most this).
    pub max_clock_drift_pct: Option<u64>,
    /// Core `peer_timeout_ms` (a peer not heard from this long counts as unreachable).
    pub peer_timeout_ms: Option<u64>,
}

/// The virtual network's defaults (faults change them while the run goes on).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSpec {
    /// One-way message delay range [lo, hi] in ms.
    pub delay_ms: [u64; 2],
    /// Messages lost, percent.
    pub loss_pct: f64,
    /// Messages delivered twice, percent.
    pub dup_pct: f64,
    /// Messages held back by up to `reorder_extra_ms` more, percent.
    pub reorder_pct: f64,
    /// Extra delay of a reordered message.
    pub reorder_extra_ms: u64,
    /// Each host repeats a multicast discovery attempt this often.
    pub discovery_interval_ms: u64,
    /// Each discovery answer is lost with this probability, percent.
    pub discovery_loss_pct: f64,
    /// Peers one discovery attempt can find (0 = every host: real mDNS on one LAN). Bounding
    /// it models discovery that trickles in, and keeps 1000-host boots O(n·fanout).
    pub discovery_fanout: usize,
    /// Each host's clock runs at `1 ± skew` with skew uniform in this many parts per million.
    pub clock_skew_ppm: u64,
    /// A connection whose path is cut is noticed dead after this long (TCP user timeout).
    pub disconnect_after_ms: u64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            delay_ms: [1, 3],
            loss_pct: 0.0,
            dup_pct: 0.0,
            reorder_pct: 0.0,
            reorder_extra_ms: 20,
            discovery_interval_ms: 500,
            discovery_loss_pct: 0.0,
            discovery_fanout: 0,
            clock_skew_ppm: 1_000,
            disconnect_after_ms: 5_000,
        }
    }
}

/// Fault kinds of a scenario file (`action = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Kill `nodes` (power off); `restart_after_ms` boots them again.
    Crash,
    /// Boot `nodes` that are down.
    Restart,
    /// Kill the current leader; `restart_after_ms` boots it again.
    KillLeader,
    /// Kill every host; boot them all after `restart_after_ms` (default 1000).
    PowerCycle,
    /// Stall `nodes` for `pause_ms` (a stuck process or VM): no input is handled meanwhile;
    /// messages wait in the socket buffers and are handled on resume.
    Pause,
    /// Only hosts in the same group can talk; `groups` lists selectors, `"rest"` = the others.
    Partition,
    /// Remove partitions, cuts and link settings.
    Heal,
    /// Messages `from` → `to` are dropped (one way).
    Cut,
    /// Cut both ways between `from` and `to`.
    LinkDown,
    /// Undo `link_down` between `from` and `to`.
    LinkUp,
    /// Set loss: between `from` and `to` (both ways) or, without them, everywhere.
    SetLoss,
    /// Set the loss of discovery answers.
    SetDiscoveryLoss,
    /// Link between `from` and `to` goes down for `down_ms` every `every_ms`, `repeat` times.
    Flap,
}

/// One fault as written in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// When (first time).
    pub at_ms: u64,
    /// What.
    pub action: ActionKind,
    /// Hosts (crash, restart).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Groups (partition).
    #[serde(default)]
    pub groups: Vec<Vec<String>>,
    /// One side (cut, link_down, link_up, set_loss, flap).
    #[serde(default)]
    pub from: Vec<String>,
    /// Other side.
    #[serde(default)]
    pub to: Vec<String>,
    /// Boot the killed hosts again after this long.
    pub restart_after_ms: Option<u64>,
    /// Percent (set_loss, set_discovery_loss).
    pub loss_pct: Option<f64>,
    /// How long the link stays down in each flap.
    pub down_ms: Option<u64>,
    /// How long a pause lasts.
    pub pause_ms: Option<u64>,
    /// Times the fault happens.
    #[serde(default = "one")]
    pub repeat: u32,
    /// Gap between repeats.
    #[serde(default)]
    pub every_ms: u64,
}

/// Expected outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    /// I6: once the last fault is over, a leader exists and every up host is a member within
    /// this bound; after that, the site never stays unformed this long again.
    pub liveness_bound_ms: u64,
    /// I1 at the end: exactly one cluster, containing every host.
    pub one_cluster_at_end: bool,
    /// Formation (first time formed, from the first boot) must not take longer.
    pub max_formation_ms: Option<u64>,
    /// Each failover (leader killed → new leader) must not take longer.
    pub max_failover_ms: Option<u64>,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            liveness_bound_ms: 30_000,
            one_cluster_at_end: true,
            max_formation_ms: None,
            max_failover_ms: None,
        }
    }
}

/// Deliberate bugs, for tests that show the checker catches them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestFaults {
    /// The disk acknowledges writes it has not synced; a crash loses them (see `disk.rs`).
    pub lying_fsync: bool,
    /// How often a lying disk really syncs.
    pub sync_interval_ms: u64,
    /// These hosts come back from every restart with an empty disk.
    pub wipe_disk_on_restart: Vec<String>,
    /// Core `lease_stretch_pct_for_tests` (100 = correct fencing).
    pub lease_stretch_pct: u64,
    /// Core `site_rule_off_for_tests`: leaders of coexisting clusters all hold the VIP.
    pub site_rule_off: bool,
    /// The shell has no lease fence: a holder keeps the VIP until its core releases it, however
    /// long the core stalls.
    pub no_vip_fence: bool,
    /// Core `raft_gate_off_for_tests`: raft messages from anyone are stepped (no trust checks).
    pub raft_gate_off: bool,
    /// Core `install_ignores_plan_for_tests`: hosts run their install steps out of order.
    pub install_ignores_plan: bool,
}

impl Default for TestFaults {
    fn default() -> Self {
        TestFaults {
            lying_fsync: false,
            sync_interval_ms: 1_000,
            wipe_disk_on_restart: Vec::new(),
            lease_stretch_pct: 100,
            site_rule_off: false,
            no_vip_fence: false,
            raft_gate_off: false,
            install_ignores_plan: false,
        }
    }
}

/// One term of a node selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelTerm {
    /// Every host.
    All,
    /// Hosts not named by earlier partition groups.
    Rest,
    /// The current leader (highest term).
    Leader,
    /// The leader's voters (the first K by index with `voters:K`).
    Voters(Option<usize>),
    /// Voters except the leader (`followers:K`: the first K).
    Followers(Option<usize>),
    /// Members that are not voters (`learners:K`: the first K).
    Learners(Option<usize>),
    /// Hosts that are up.
    Up,
    /// Hosts that are down.
    Down,
    /// Host by index.
    Index(usize),
    /// Hosts `a..=b`.
    Range(usize, usize),
    /// `k` hosts drawn at random (when the fault fires).
    Random(usize),
}

/// A union of selector terms.
pub type Selector = Vec<SelTerm>;

/// Parses one selector term.
pub fn parse_term(s: &str) -> Result<SelTerm, String> {
    let t = s.trim();
    Ok(match t {
        "all" => SelTerm::All,
        "rest" => SelTerm::Rest,
        "leader" => SelTerm::Leader,
        "voters" => SelTerm::Voters(None),
        "followers" => SelTerm::Followers(None),
        "learners" => SelTerm::Learners(None),
        "up" => SelTerm::Up,
        "down" => SelTerm::Down,
        _ => {
            let num = |x: &str| {
                x.parse::<usize>()
                    .map_err(|_| format!("node selector {s:?}: not an index, range (a-b), role (leader, voters, followers, learners, up, down, all, rest; voters:K …) or random:K"))
            };
            if let Some(k) = t.strip_prefix("random:") {
                SelTerm::Random(num(k)?)
            } else if let Some(k) = t.strip_prefix("voters:") {
                SelTerm::Voters(Some(num(k)?))
            } else if let Some(k) = t.strip_prefix("followers:") {
                SelTerm::Followers(Some(num(k)?))
            } else if let Some(k) = t.strip_prefix("learners:") {
                SelTerm::Learners(Some(num(k)?))
            } else if let Some((a, b)) = t.split_once('-') {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("node selector {s:?}: empty range"));
                }
                SelTerm::Range(a, b)
            } else {
                SelTerm::Index(num(t)?)
            }
        }
    })
}

fn parse_sel(v: &[String], nodes: usize, what: &str) -> Result<Selector, String> {
    let sel = v
        .iter()
        .map(|s| parse_term(s))
        .collect::<Result<Selector, _>>()?;
    for t in &sel {
        let too_big = match t {
            SelTerm::Index(i) => *i >= nodes,
            SelTerm::Range(_, b) => *b >= nodes,
            SelTerm::Random(k) => *k > nodes,
            _ => false,
        };
        if too_big {
            return Err(format!("{what}: selector {t:?} names hosts beyond {nodes}"));
        }
    }
    Ok(sel)
}

/// A fault ready to fire.
#[derive(Debug, Clone)]
pub enum Action {
    /// Kill hosts, maybe boot them again later.
    Crash {
        /// Which.
        nodes: Selector,
        /// Boot again after.
        restart_after_ms: Option<u64>,
    },
    /// Boot hosts that are down.
    Restart {
        /// Which.
        nodes: Selector,
    },
    /// Kill the leader, maybe boot it again later.
    KillLeader {
        /// Boot again after.
        restart_after_ms: Option<u64>,
    },
    /// Kill every host and boot all again after `off_ms`.
    PowerCycle {
        /// Time off.
        off_ms: u64,
    },
    /// Stall hosts.
    Pause {
        /// Which.
        nodes: Selector,
        /// For how long.
        pause_ms: u64,
    },
    /// Partition into groups.
    Partition {
        /// Groups.
        groups: Vec<Selector>,
    },
    /// Back to the scenario's network.
    Heal,
    /// One-way cut.
    Cut {
        /// Senders.
        from: Selector,
        /// Receivers.
        to: Selector,
    },
    /// Two-way cut between two sets (`up = false`) or its removal (`up = true`).
    Link {
        /// One side.
        a: Selector,
        /// Other side.
        b: Selector,
        /// Whether the link comes back.
        up: bool,
    },
    /// Loss between two sets (both ways) or everywhere.
    SetLoss {
        /// The sets, or everywhere.
        between: Option<(Selector, Selector)>,
        /// Percent.
        pct: f64,
    },
    /// Loss of discovery answers.
    SetDiscoveryLoss {
        /// Percent.
        pct: f64,
    },
}

impl Scenario {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Scenario::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and validates scenario text.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        s.validate()?;
        Ok(s)
    }

    /// The `expected_nodes` every host is configured with.
    pub fn expected(&self) -> usize {
        self.expected_nodes.unwrap_or(self.nodes)
    }

    /// Checks the values a scenario author could get wrong; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return Err(format!(
                "nodes: must be 1..={MAX_NODES}, got {}",
                self.nodes
            ));
        }
        if ![1, 3, 5].contains(&self.control_plane_count) {
            return Err("control_plane_count: must be 1, 3 or 5".into());
        }
        if self.expected() == 0 {
            return Err("expected_nodes: must be at least 1".into());
        }
        if self.duration_ms == 0 {
            return Err("duration_ms: must be positive".into());
        }
        let n = &self.network;
        if n.delay_ms[0] == 0 || n.delay_ms[0] > n.delay_ms[1] {
            return Err("network.delay_ms: must be [lo, hi] with 1 <= lo <= hi".into());
        }
        for (key, v) in [
            ("network.loss_pct", n.loss_pct),
            ("network.dup_pct", n.dup_pct),
            ("network.reorder_pct", n.reorder_pct),
            ("network.discovery_loss_pct", n.discovery_loss_pct),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("{key}: must be 0..=100, got {v}"));
            }
        }
        if n.discovery_interval_ms == 0 {
            return Err("network.discovery_interval_ms: must be positive".into());
        }
        if n.clock_skew_ppm >= 100_000 {
            return Err("network.clock_skew_ppm: must be below 100000 (10%)".into());
        }
        if self.timing.tick_interval_ms == Some(0)
            || self.timing.non_voter_tick_interval_ms == Some(0)
        {
            return Err(
                "timing.tick_interval_ms / non_voter_tick_interval_ms: must be positive".into(),
            );
        }
        if self.test_faults.lying_fsync && self.test_faults.sync_interval_ms == 0 {
            return Err("test_faults.sync_interval_ms: must be positive".into());
        }
        parse_sel(
            &self.test_faults.wipe_disk_on_restart,
            self.nodes,
            "test_faults",
        )?;
        self.schedule().map(|_| ())
    }

    /// Hosts whose disk is wiped at every restart (test fault).
    pub fn wipe_selector(&self) -> Selector {
        parse_sel(
            &self.test_faults.wipe_disk_on_restart,
            self.nodes,
            "test_faults",
        )
        .unwrap_or_default()
    }

    /// The fault schedule as timed actions, sorted by time (stable for equal times).
    pub fn schedule(&self) -> Result<Vec<(u64, Action)>, String> {
        let mut out = Vec::new();
        for (i, f) in self.faults.iter().enumerate() {
            let key = format!("faults[{i}] ({:?})", f.action);
            if f.repeat == 0 || (f.repeat > 1 && f.every_ms == 0) {
                return Err(format!(
                    "{key}: repeat needs every_ms > 0 (and repeat >= 1)"
                ));
            }
            let sel = |v: &Vec<String>, field: &str| -> Result<Selector, String> {
                if v.is_empty() {
                    return Err(format!("{key}: `{field}` is required"));
                }
                parse_sel(v, self.nodes, &key)
            };
            let pct = || -> Result<f64, String> {
                match f.loss_pct {
                    Some(p) if (0.0..=100.0).contains(&p) => Ok(p),
                    _ => Err(format!("{key}: `loss_pct` (0..=100) is required")),
                }
            };
            for r in 0..u64::from(f.repeat) {
                let at = f.at_ms + r * f.every_ms;
                match f.action {
                    ActionKind::Crash => out.push((
                        at,
                        Action::Crash {
                            nodes: sel(&f.nodes, "nodes")?,
                            restart_after_ms: f.restart_after_ms,
                        },
                    )),
                    ActionKind::Restart => out.push((
                        at,
                        Action::Restart {
                            nodes: sel(&f.nodes, "nodes")?,
                        },
                    )),
                    ActionKind::KillLeader => out.push((
                        at,
                        Action::KillLeader {
                            restart_after_ms: f.restart_after_ms,
                        },
                    )),
                    ActionKind::PowerCycle => out.push((
                        at,
                        Action::PowerCycle {
                            off_ms: f.restart_after_ms.unwrap_or(1_000),
                        },
                    )),
                    ActionKind::Pause => out.push((
                        at,
                        Action::Pause {
                            nodes: sel(&f.nodes, "nodes")?,
                            pause_ms: f
                                .pause_ms
                                .ok_or_else(|| format!("{key}: `pause_ms` is required"))?,
                        },
                    )),
                    ActionKind::Partition => {
                        if f.groups.is_empty() {
                            return Err(format!("{key}: `groups` is required"));
                        }
                        let groups = f
                            .groups
                            .iter()
                            .map(|g| sel(g, "groups"))
                            .collect::<Result<_, _>>()?;
                        out.push((at, Action::Partition { groups }));
                    }
                    ActionKind::Heal => out.push((at, Action::Heal)),
                    ActionKind::Cut => out.push((
                        at,
                        Action::Cut {
                            from: sel(&f.from, "from")?,
                            to: sel(&f.to, "to")?,
                        },
                    )),
                    ActionKind::LinkDown | ActionKind::LinkUp => out.push((
                        at,
                        Action::Link {
                            a: sel(&f.from, "from")?,
                            b: sel(&f.to, "to")?,
                            up: f.action == ActionKind::LinkUp,
                        },
                    )),
                    ActionKind::SetLoss => {
                        let between = if f.from.is_empty() && f.to.is_empty() {
                            None
                        } else {
                            Some((sel(&f.from, "from")?, sel(&f.to, "to")?))
                        };
                        out.push((
                            at,
                            Action::SetLoss {
                                between,
                                pct: pct()?,
                            },
                        ));
                    }
                    ActionKind::SetDiscoveryLoss => {
                        out.push((at, Action::SetDiscoveryLoss { pct: pct()? }))
                    }
                    ActionKind::Flap => {
                        let down = f
                            .down_ms
                            .ok_or_else(|| format!("{key}: `down_ms` is required"))?;
                        let (a, b) = (sel(&f.from, "from")?, sel(&f.to, "to")?);
                        out.push((
                            at,
                            Action::Link {
                                a: a.clone(),
                                b: b.clone(),
                                up: false,
                            },
                        ));
                        out.push((at + down, Action::Link { a, b, up: true }));
                    }
                }
                if out.len() > MAX_FAULT_EVENTS {
                    return Err(format!("faults: more than {MAX_FAULT_EVENTS} events"));
                }
            }
        }
        out.sort_by_key(|(t, _)| *t);
        Ok(out)
    }

    /// When the last fault is over (including restarts it schedules) or, without faults, the
    /// last boot: the start of the quiet period the liveness bound counts from.
    pub fn quiet_from_ms(&self) -> u64 {
        let last_boot = match self.boot.mode {
            BootMode::Together => self.boot.start_ms,
            BootMode::Staggered => {
                self.boot.start_ms + self.boot.spacing_ms * (self.nodes as u64 - 1)
            }
            BootMode::Random => self.boot.start_ms + self.boot.window_ms,
        };
        let faults = self
            .schedule()
            .unwrap_or_default()
            .iter()
            .map(|(t, a)| match a {
                Action::Crash {
                    restart_after_ms, ..
                }
                | Action::KillLeader { restart_after_ms } => t + restart_after_ms.unwrap_or(0),
                Action::PowerCycle { off_ms } => t + off_ms,
                Action::Pause { pause_ms, .. } => t + pause_ms,
                _ => *t,
            })
            .max()
            .unwrap_or(0);
        last_boot.max(faults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse() {
        assert_eq!(parse_term("leader").unwrap(), SelTerm::Leader);
        assert_eq!(parse_term("3").unwrap(), SelTerm::Index(3));
        assert_eq!(parse_term("0-2").unwrap(), SelTerm::Range(0, 2));
        assert_eq!(parse_term("random:2").unwrap(), SelTerm::Random(2));
        assert_eq!(
            parse_term("followers:1").unwrap(),
            SelTerm::Followers(Some(1))
        );
        assert!(parse_term("2-1").is_err());
        assert!(parse_term("bogus").is_err());
    }

    #[test]
    fn schedule_expands_repeats_and_flaps() {
        let s = Scenario::parse(
            r#"
            name = "t"
            nodes = 5
            duration_ms = 10000
            [[faults]]
            at_ms = 100
            action = "kill_leader"
            restart_after_ms = 50
            repeat = 3
            every_ms = 1000
            [[faults]]
            at_ms = 150
            action = "flap"
            from = ["0"]
            to = ["rest"]
            down_ms = 20
            "#,
        )
        .unwrap();
        let sched = s.schedule().unwrap();
        let times: Vec<u64> = sched.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![100, 150, 170, 1100, 2100]);
        assert_eq!(s.quiet_from_ms(), 2150);
    }

    #[test]
    fn errors_name_the_key() {
        let e = Scenario::parse("name='t'\nnodes=3\nduration_ms=1\nbogus=1").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = Scenario::parse(
            "name='t'\nnodes=3\nduration_ms=1\n[[faults]]\nat_ms=1\naction='crash'\nnodes=['7']",
        )
        .unwrap_err();
        assert!(e.contains("faults[0]"), "{e}");
    }
}
