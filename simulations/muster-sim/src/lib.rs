//! muster-sim: a seeded many-node simulator over `muster-core`.
//!
//! It runs up to [`scenario::MAX_NODES`] copies of the very core the agent runs, over a virtual
//! clock and a virtual network (`net.rs`) with loss, duplication, reordering, delay, partitions,
//! one-way cuts and lossy multicast discovery, on simulated disks with crash semantics
//! (`disk.rs`), with clock-rate skew per host. Faults come from a TOML scenario
//! (`scenario.rs`, applied in `faults.rs`); invariants I1, I2, I4 and I6 are checked while the
//! run goes (`check.rs`). A run is a pure function of scenario and seed: the trace hash
//! (`trace.rs`) proves it, and a failing run names the command that replays it. Results come out
//! as a JSON report (`report.rs`) and an SVG timeline (`svg.rs`). The `muster-sim` binary is the
//! CLI over [`run`].
#![allow(clippy::field_reassign_with_default)]

pub mod adversary;
pub mod check;
pub mod disk;
pub mod faults;
mod idhash;
mod install;
pub mod metrics;
pub mod net;
mod observe;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod svg;
pub mod trace;

pub use report::{replay_command, Report};
pub use scenario::Scenario;
pub use sim::{Sim, SimOptions};

/// Runs `scenario` (read from `path`, which the replay command names) with `seed` to the end.
/// Returns the finished simulator (for the SVG and trace) and its report.
pub fn run(
    scenario: &Scenario,
    path: &str,
    seed: u64,
    opts: &SimOptions,
) -> Result<(Sim, Report), String> {
    let start = std::time::Instant::now();
    let mut sim = Sim::new(scenario.clone(), seed, opts)?;
    sim.finish();
    let wall_ms = start.elapsed().as_millis() as u64;
    let report = Report::build(&sim, path, wall_ms);
    Ok((sim, report))
}
