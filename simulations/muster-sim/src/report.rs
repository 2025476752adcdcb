//! The JSON summary of a run: outcome, trace hash, the replay command, formation and failover
//! figures in virtual ms, election counts, invariant check counts, violations and network
//! counters. Built from a finished [`Sim`]; `wall_ms` is the only field that varies between
//! replays of one seed.

use serde::Serialize;

use crate::check::{CheckCounts, Violation};
use crate::metrics::{Dist, Failover};
use crate::net::NetStats;
use crate::sim::Sim;

/// The summary.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Hosts.
    pub nodes: usize,
    /// Virtual duration.
    pub duration_ms: u64,
    /// No invariant broken.
    pub passed: bool,
    /// FNV-1a 64 of the event trace, hex.
    pub trace_hash: String,
    /// The command that replays this run.
    pub replay: String,
    /// First boot to first formed (one cluster, one leader, every up host a member).
    pub formation_ms: Option<u64>,
    /// Elections won: distinct (cluster, term) with a leader.
    pub elections: usize,
    /// Times a host became leader.
    pub leader_changes: u64,
    /// Each killed leader and how long until a new leader / VIP holder.
    pub failovers: Vec<Failover>,
    /// Distribution of leader failover times.
    pub failover_leader_ms: Dist,
    /// Distribution of VIP failover times.
    pub failover_vip_ms: Dist,
    /// Invariant checks made.
    pub checks: CheckCounts,
    /// Violations found (first 100).
    pub violations: Vec<Violation>,
    /// All violations.
    pub violation_count: usize,
    /// Network counters.
    pub net: NetStats,
    /// Events processed.
    pub events: u64,
    /// Wall-clock time of the run.
    pub wall_ms: u64,
    /// End state: up hosts, clusters, formed.
    pub end: EndState,
}

/// The site at the end of the run.
#[derive(Debug, Clone, Serialize)]
pub struct EndState {
    /// Hosts up.
    pub up: usize,
    /// Distinct clusters among them.
    pub clusters: usize,
    /// Formed.
    pub formed: bool,
    /// Leader's name, if any.
    pub leader: Option<String>,
}

/// The command that replays `seed` of the scenario at `path`.
pub fn replay_command(path: &str, seed: u64) -> String {
    format!("muster-sim run --scenario {path} --seed {seed}")
}

impl Report {
    /// Summarises a finished run.
    pub fn build(sim: &Sim, path: &str, wall_ms: u64) -> Report {
        let site = sim.site_view();
        Report {
            scenario: sim.scenario.name.clone(),
            seed: sim.seed,
            nodes: sim.scenario.nodes,
            duration_ms: sim.scenario.duration_ms,
            passed: sim.checker.violation_count == 0,
            trace_hash: format!("{:016x}", sim.trace.hash()),
            replay: replay_command(path, sim.seed),
            formation_ms: sim.metrics.formation_ms(),
            elections: sim.checker.elections(),
            leader_changes: sim.metrics.leader_changes,
            failovers: sim.metrics.failovers.clone(),
            failover_leader_ms: sim.metrics.leader_failover_dist(),
            failover_vip_ms: sim.metrics.vip_failover_dist(),
            checks: sim.checker.counts.clone(),
            violations: sim.checker.violations.clone(),
            violation_count: sim.checker.violation_count,
            net: sim.net.stats.clone(),
            events: sim.events,
            wall_ms,
            end: EndState {
                up: site.up,
                clusters: site.clusters,
                formed: site.formed,
                leader: sim.leader().map(|l| sim.hosts[l].name.clone()),
            },
        }
    }

    /// A few human-readable lines.
    pub fn summary(&self) -> String {
        let d = &self.failover_leader_ms;
        let v = &self.failover_vip_ms;
        let mut s = format!(
            "scenario {} seed {}: {} — {} hosts, {} virtual ms, {} events, {} wall ms\n",
            self.scenario,
            self.seed,
            if self.passed { "PASS" } else { "FAIL" },
            self.nodes,
            self.duration_ms,
            self.events,
            self.wall_ms
        );
        s += &format!(
            "  formation {} ms, {} elections, {} leader changes; end: {} up, {} cluster(s), formed {}\n",
            self.formation_ms.map_or("never".into(), |f| f.to_string()),
            self.elections,
            self.leader_changes,
            self.end.up,
            self.end.clusters,
            self.end.formed
        );
        if d.count > 0 {
            s += &format!(
                "  failover to new leader (ms): n={} min {:?} median {:?} p90 {:?} max {:?}; to new VIP holder: median {:?} max {:?}\n",
                d.count, d.min, d.median, d.p90, d.max, v.median, v.max
            );
        }
        s += &format!(
            "  messages: {} sent, {} delivered, {} lost, {} dropped\n",
            self.net.sent, self.net.delivered, self.net.lost, self.net.dropped
        );
        for viol in &self.violations {
            s += &format!(
                "  VIOLATION {} at {} ms: {}\n",
                viol.invariant, viol.at_ms, viol.detail
            );
        }
        if self.violation_count > self.violations.len() {
            s += &format!("  ... {} violations in all\n", self.violation_count);
        }
        s += &format!("  trace hash {}\n", self.trace_hash);
        if !self.passed {
            s += &format!("  replay: {}\n", self.replay);
        }
        s
    }
}
