//! `muster-sim bench`: N hosts boot together and form (expected_nodes = N), then the leader is
//! killed K times (each restarted `restart_after_ms` later; the next kill waits until every host
//! is back, the site formed and the VIP held). Prints the wall time of each phase and the
//! virtual-time figures: formation time and failover distribution.

use std::time::Instant;

use muster_sim::scenario::{Action, Scenario};
use muster_sim::{Sim, SimOptions};

/// Virtual time allowed for formation and for each failover.
const FORM_LIMIT_MS: u64 = 300_000;
const FAILOVER_LIMIT_MS: u64 = 60_000;

/// What the bench runs.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Hosts.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Leader kills.
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A killed leader boots again after this long.
    #[arg(long, default_value_t = 1_000)]
    pub restart_after_ms: u64,
    /// Peers one discovery attempt finds (0 = all, as real mDNS on one LAN would).
    #[arg(long, default_value_t = 0)]
    pub discovery_fanout: usize,
    /// Non-voters tick at this interval (simulation shortcut; voters always tick every 10 ms).
    #[arg(long, default_value_t = 50)]
    pub non_voter_tick_ms: u64,
    /// Core `hello_interval_ms` (core default 500).
    #[arg(long)]
    pub hello_interval_ms: Option<u64>,
    /// Core `peer_timeout_ms` (core default 3000; keep it above two hello intervals).
    #[arg(long)]
    pub peer_timeout_ms: Option<u64>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<String>,
    /// Write the text trace of notable events here.
    #[arg(long)]
    pub trace: Option<String>,
}

fn scenario(a: &BenchArgs) -> Result<Scenario, String> {
    let mut sc = Scenario::parse(&format!(
        "name = \"bench-{}\"\nnodes = {}\nduration_ms = {FORM_LIMIT_MS}\n",
        a.nodes, a.nodes
    ))?;
    sc.network.discovery_fanout = a.discovery_fanout;
    sc.timing.non_voter_tick_interval_ms = Some(a.non_voter_tick_ms);
    sc.timing.hello_interval_ms = a.hello_interval_ms;
    sc.timing.peer_timeout_ms = a.peer_timeout_ms;
    sc.validate()?;
    Ok(sc)
}

/// One progress line on stderr: virtual time, wall time, membership, events.
fn progress(sim: &Sim, t0: Instant) {
    let site = sim.site_view();
    let members = sim
        .leader()
        .and_then(|l| sim.checker.view(l))
        .map_or(0, |o| o.members);
    eprintln!(
        "  t={:>6} ms wall {:>6.1} s: {} up, {} clusters, {} in none, leader has {} members; {} events, {} messages",
        sim.now_ms,
        t0.elapsed().as_secs_f64(),
        site.up,
        site.clusters,
        site.unclustered,
        members,
        sim.events,
        sim.net.stats.sent
    );
}

pub fn bench(a: BenchArgs) -> Result<bool, String> {
    let (nodes, kills, seed) = (a.nodes, a.kills, a.seed);
    let sc = scenario(&a)?;
    println!(
        "bench: {nodes} hosts, {kills} leader kills (restart after {} ms), seed {seed}; discovery fanout {}, non-voter tick {} ms, hello {} ms, peer timeout {} ms",
        a.restart_after_ms,
        a.discovery_fanout,
        a.non_voter_tick_ms,
        a.hello_interval_ms.map_or("500 (core default)".into(), |v| v.to_string()),
        a.peer_timeout_ms.map_or("3000 (core default)".into(), |v| v.to_string()),
    );
    let t0 = Instant::now();
    let opts = SimOptions {
        trace_text: a.trace.is_some(),
        ..SimOptions::default()
    };
    let mut sim = Sim::new(sc, seed, &opts)?;
    let mut formed = false;
    while !formed && sim.now_ms < FORM_LIMIT_MS {
        formed = sim.run_while(1_000, |s| s.site_view().formed);
        progress(&sim, t0);
    }
    if formed {
        sim.metrics.formed(sim.now_ms);
    }
    let form_wall = t0.elapsed();
    println!(
        "formation: {} hosts formed = {formed} in {:?} virtual ms; wall {:.1} s; {} events, {} messages",
        nodes,
        sim.metrics.formation_ms(),
        form_wall.as_secs_f64(),
        sim.events,
        sim.net.stats.sent
    );
    if !formed {
        return Ok(false);
    }
    let t1 = Instant::now();
    for k in 0..kills {
        // Wait until the last killed leader is back and the site is whole again, with the VIP
        // held, so that every kill costs the cluster one voter only.
        sim.run_while(FAILOVER_LIMIT_MS, |s| {
            let site = s.site_view();
            site.formed
                && site.up == s.hosts.len()
                && s.leader().is_some_and(|l| s.checker.holds_vip(l, s.now_ms))
        });
        let tk = Instant::now();
        sim.apply(&Action::KillLeader {
            restart_after_ms: Some(a.restart_after_ms),
        });
        let old = sim.metrics.failovers.len();
        sim.run_while(FAILOVER_LIMIT_MS, |s| {
            s.metrics
                .failovers
                .get(old - 1)
                .is_some_and(|f| f.new_vip_ms.is_some())
        });
        let f = sim.metrics.failovers.last().cloned();
        println!(
            "kill {}: new leader after {:?} ms, new VIP holder after {:?} ms (virtual); wall {:.2} s",
            k + 1,
            f.as_ref().and_then(|f| f.new_leader_ms),
            f.as_ref().and_then(|f| f.new_vip_ms),
            tk.elapsed().as_secs_f64()
        );
    }
    sim.scenario.duration_ms = sim.now_ms + 5_000;
    sim.finish();
    let kills_wall = t1.elapsed();
    let rep = muster_sim::Report::build(&sim, "(bench)", t0.elapsed().as_millis() as u64);
    println!(
        "wall: formation {:.1} s, {kills} kills {:.1} s, total {:.1} s",
        form_wall.as_secs_f64(),
        kills_wall.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    print!("{}", rep.summary());
    if let Some(p) = a.report {
        let json = serde_json::to_string_pretty(&rep).map_err(|e| e.to_string())?;
        std::fs::write(&p, json).map_err(|e| format!("{p}: {e}"))?;
    }
    if let (Some(p), Some(text)) = (a.trace, sim.trace.text()) {
        std::fs::write(&p, text).map_err(|e| format!("{p}: {e}"))?;
    }
    Ok(rep.passed)
}
