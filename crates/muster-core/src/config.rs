//! Runtime configuration of one core node: identity, site expectations and timing.
//!
//! Built by the agent binary from its TOML config (and by tests and the simulator directly).
//! Durations are in milliseconds of the clock the caller feeds through `Input::Tick`; raft's own
//! timeouts are in ticks of `tick_ms`.

/// Identifies a node: the first 8 bytes (big endian) of its ed25519 public key, never 0.
pub type NodeId = u64;

/// Default raft tick: 10 ms. Ticks are the resolution of the timers below, not a wake-up rate
/// (an idle agent sleeps until its next deadline, `timers.rs`).
pub const DEFAULT_TICK_MS: u64 = 10;
/// Default election timeout base: 16 ticks (160 ms; each timeout drawn from 160–190 ms). Also
/// how long a voter refuses votes after hearing the leader, which bounds the lease.
pub const DEFAULT_ELECTION_TICKS: usize = 16;
/// Default heartbeat (and lease probe) interval: 8 ticks (80 ms). With the 125 ms lease a
/// probe's answer has 45 ms to arrive before the lease lapses, and a follower's shortest
/// election timeout spans two heartbeats. Each probe round is most of an idle leader's cost
/// (README, "Idle cost"): 60 ms cost a third more of it for no failover gained (a follower's
/// timeout counts from the last heartbeat it heard).
pub const DEFAULT_HEARTBEAT_TICKS: usize = 8;

/// Everything a [`crate::Node`] needs to know that does not come from the network.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (derived from `public_key`, see [`node_id_from_public_key`]).
    pub id: NodeId,
    /// Human name shown in status (the hostname by default).
    pub name: String,
    /// "ip:port" the agent listens on, recorded in the cluster state.
    pub address: String,
    /// ed25519 public key (32 bytes).
    pub public_key: Vec<u8>,
    /// Hosts to wait for before the lowest-id host bootstraps a cluster without waiting for
    /// `settle_ms`.
    pub expected_nodes: usize,
    /// Raft voters wanted: 1, 3 or 5. Further hosts are learners.
    pub control_plane_count: usize,
    /// Length of one raft tick.
    pub tick_ms: u64,
    /// Election timeout base in ticks; each timeout is drawn from [base, 1.25·base) with the
    /// node's seeded RNG. A voter also refuses votes for `base` ticks after hearing the leader,
    /// which is what the VIP lease rests on (see `lease.rs`).
    pub election_ticks: usize,
    /// Leader heartbeat interval in ticks.
    pub heartbeat_ticks: usize,
    /// How long a host that sees no cluster waits for `expected_nodes` before the lowest id it
    /// sees bootstraps anyway.
    pub settle_ms: u64,
    /// How often each host tells its peers who it is and which cluster it is in.
    pub hello_interval_ms: u64,
    /// How often a host outside any cluster repeats its join request.
    pub join_retry_ms: u64,
    /// A peer not heard from for this long is shown unreachable.
    pub peer_timeout_ms: u64,
    /// Compact the log once this many entries have been applied since the last compaction.
    pub snapshot_interval_entries: u64,
    /// Whether this site floats a VIP: the leader emits `EndpointAcquire` / `EndpointRelease`.
    pub vip: bool,
    /// Largest rate difference between any two hosts' clocks, in percent; shortens the lease.
    pub max_clock_drift_pct: u64,
    /// Fault injection for tests and the simulator only: the lease is multiplied by this
    /// percentage. 100 is correct; above 100 the lease outlives the voters' promise and fencing
    /// (invariant I2) breaks, which checkers must catch.
    pub lease_stretch_pct_for_tests: u64,
    /// Fault injection for tests and the simulator only: skip the site rule (`lease.rs`), so
    /// the leader of any cluster holds the VIP on its lease alone and coexisting clusters break
    /// I2, which checkers must catch.
    pub site_rule_off_for_tests: bool,
    /// Fault injection for tests and the simulator only: step raft messages from anyone, without
    /// the trust checks of `guard.rs`, which checkers must catch.
    pub raft_gate_off_for_tests: bool,
    /// Fault injection for tests and the simulator only: a host runs its install step as soon as
    /// the plan has it, ignoring the order and without waiting for its start to commit, which
    /// checkers must catch (I3).
    pub install_ignores_plan_for_tests: bool,
    /// Whether this site installs Kubernetes (the agent's `[kubernetes]` section): the leader
    /// commits a join plan once the site is formed and hosts run their steps (`install.rs`).
    pub plan: bool,
    /// Workers that install at once.
    pub worker_parallelism: u32,
    /// Backoff before retrying a failed step, doubling per attempt.
    pub install_retry_ms: u64,
    /// Attempts of a step before it stays failed until an operator retries it.
    pub max_install_attempts: u32,
    /// The key that seals the join secrets and the entropy for new ones (`secrets.rs`). Without
    /// it plans carry no secrets (the simulator); the agent always sets it.
    pub secrets: Option<crate::secrets::SiteSecrets>,
    /// `[node] roles`: what this host may be in the install (recorded in its member record).
    pub role_pin: muster_proto::RolePin,
    /// kubeadm: re-upload the control-plane certificates under a fresh certificate key before a
    /// control-plane join when the last upload is older than this (`certs.rs`); 0 = never.
    /// Taken into the plan by the leader that makes it.
    pub certificate_key_refresh_ms: u64,
    /// The agent's version, announced in hellos and shown in status ("" in the simulator).
    pub agent_version: String,
    /// This host's identity was created at this start (a first boot, or after `muster reset`):
    /// no cluster can be counting an id that did not exist, so formation skips the quiet wait
    /// after boot (`lease.rs`).
    pub new_identity: bool,
    /// Tests only: announce this protocol instead of [`crate::PROTOCOL`] (an older agent);
    /// 0 = the real one.
    pub announce_protocol_for_tests: u32,
}

impl NodeConfig {
    /// A configuration with the default timing for a node with this identity.
    pub fn new(name: impl Into<String>, address: impl Into<String>, public_key: Vec<u8>) -> Self {
        let id = node_id_from_public_key(&public_key);
        NodeConfig {
            id,
            name: name.into(),
            address: address.into(),
            public_key,
            expected_nodes: 3,
            control_plane_count: 3,
            tick_ms: DEFAULT_TICK_MS,
            election_ticks: DEFAULT_ELECTION_TICKS,
            heartbeat_ticks: DEFAULT_HEARTBEAT_TICKS,
            settle_ms: 10_000,
            hello_interval_ms: 500,
            join_retry_ms: 300,
            peer_timeout_ms: 3_000,
            snapshot_interval_entries: 1_000,
            vip: false,
            max_clock_drift_pct: 5,
            lease_stretch_pct_for_tests: 100,
            site_rule_off_for_tests: false,
            raft_gate_off_for_tests: false,
            install_ignores_plan_for_tests: false,
            plan: false,
            worker_parallelism: crate::plan::DEFAULT_WORKER_PARALLELISM,
            install_retry_ms: 5_000,
            max_install_attempts: 5,
            secrets: None,
            role_pin: muster_proto::RolePin::Any,
            certificate_key_refresh_ms: 0,
            agent_version: String::new(),
            new_identity: false,
            announce_protocol_for_tests: 0,
        }
    }

    /// Checks the values a caller could get wrong. The message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("id: must not be 0".into());
        }
        if ![1, 3, 5].contains(&self.control_plane_count) {
            return Err(format!(
                "control_plane_count: must be 1, 3 or 5, got {}",
                self.control_plane_count
            ));
        }
        if self.expected_nodes == 0 {
            return Err("expected_nodes: must be at least 1".into());
        }
        if self.tick_ms == 0 {
            return Err("tick_ms: must be positive".into());
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err(format!(
                "election_ticks ({}) must exceed heartbeat_ticks ({}), which must be positive",
                self.election_ticks, self.heartbeat_ticks
            ));
        }
        if self.max_clock_drift_pct >= 50 {
            return Err(format!(
                "max_clock_drift_pct: must be below 50, got {}",
                self.max_clock_drift_pct
            ));
        }
        if self.snapshot_interval_entries == 0 {
            return Err("snapshot_interval_entries: must be positive".into());
        }
        if self.vip {
            self.check_lease()
                .map_err(|e| format!("election_ticks: {e}"))?;
        }
        Ok(())
    }

    /// With a VIP, the lease must outlast the heartbeat interval that renews it; the error says
    /// both figures (callers prefix the config key).
    pub fn check_lease(&self) -> Result<(), String> {
        let heartbeat_ms = self.heartbeat_ms();
        if self.lease_ms() <= heartbeat_ms {
            return Err(format!(
                "with a VIP the leader's lease ({} ms: (election_ticks - 1) x tick, less a clock \
                 drift margin and one tick) must outlast the heartbeat interval \
                 ({heartbeat_ms} ms); raise election_ticks (got {})",
                self.lease_ms(),
                self.election_ticks
            ));
        }
        Ok(())
    }

    /// The heartbeat (and lease probe) interval in ms.
    pub fn heartbeat_ms(&self) -> u64 {
        self.heartbeat_ticks as u64 * self.tick_ms
    }

    /// How long a confirmed quorum contact lets the leader hold the VIP (see `lease.rs`):
    /// `(election_ticks - 1) · tick_ms · (100 - drift) / (100 + drift) - tick_ms`.
    pub fn lease_ms(&self) -> u64 {
        let base = (self.election_ticks as u64).saturating_sub(1) * self.tick_ms;
        let lease = (base * (100 - self.max_clock_drift_pct.min(99))
            / (100 + self.max_clock_drift_pct))
            .saturating_sub(self.tick_ms);
        lease * self.lease_stretch_pct_for_tests / 100
    }
}

/// Derives a node id from an ed25519 public key: its first 8 bytes, big endian; 0 becomes 1.
pub fn node_id_from_public_key(public_key: &[u8]) -> NodeId {
    let mut b = [0u8; 8];
    let n = public_key.len().min(8);
    b[..n].copy_from_slice(&public_key[..n]);
    match u64::from_be_bytes(b) {
        0 => 1,
        id => id,
    }
}

/// Formats a node or cluster id the way operators see it: 16 lowercase hex digits.
pub fn format_id(id: u64) -> String {
    format!("{id:016x}")
}

/// Parses an id as printed by [`format_id`] (1–16 hex digits).
pub fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_derivation_and_formatting() {
        let pk: Vec<u8> = (1..=32).collect();
        let id = node_id_from_public_key(&pk);
        assert_eq!(id, 0x0102030405060708);
        assert_eq!(format_id(id), "0102030405060708");
        assert_eq!(parse_id("0102030405060708"), Some(id));
        assert_eq!(node_id_from_public_key(&[0u8; 32]), 1);
        assert_eq!(parse_id("xyz"), None);
        assert_eq!(parse_id("00000000000000000"), None);
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = NodeConfig::new("a", "10.0.0.1:7946", vec![7; 32]);
        assert!(c.validate().is_ok());
        c.control_plane_count = 2;
        assert!(c.validate().unwrap_err().contains("control_plane_count"));
    }

    #[test]
    fn lease_is_the_documented_125_ms_and_must_outlast_a_heartbeat() {
        let mut c = NodeConfig::new("a", "10.0.0.1:7946", vec![7; 32]);
        c.vip = true;
        // (16 - 1) · 10 ms · 95 / 105 = 135 ms, less one tick.
        assert_eq!(c.lease_ms(), 125);
        assert!(c.validate().is_ok());
        // 7 · 10 · 95 / 105 - 10 = 53 ms, under a 60 ms heartbeat.
        c.election_ticks = 8;
        c.heartbeat_ticks = 6;
        let e = c.validate().unwrap_err();
        assert!(
            e.contains("election_ticks") && e.contains("heartbeat"),
            "{e}"
        );
        c.vip = false;
        assert!(c.validate().is_ok(), "no VIP, no lease to outlast anything");
    }
}
