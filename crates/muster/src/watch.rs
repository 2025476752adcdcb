//! The API-server watch: on a control-plane host (init or control-plane step in the plan), a
//! task probes the host's health gate (`health_url` / `health_command`, `probe.rs`) every
//! [`WATCH_INTERVAL`] for as long as the agent runs, and tells the event loop each change of the
//! result; the loop feeds it to the core as `Input::LocalHealth`, where a leader whose API server
//! stays unhealthy hands the endpoint to a healthy control-plane host (`muster-core`'s
//! `health.rs`). Workers and hosts without a gate run no watch.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::HealthCheck;
use crate::probe::HealthGate;

/// How often the local API server is probed once the host runs a control plane.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Starts the watch of `check`; results (on change only) arrive on the returned receiver.
/// `None` when the check is the hook's own exit (nothing to probe).
pub fn spawn(check: &HealthCheck) -> Option<mpsc::Receiver<bool>> {
    let mut gate = HealthGate::new(check)?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut last: Option<bool> = None;
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let result = gate.probe().await;
            let healthy = result.is_ok();
            if last == Some(healthy) {
                continue;
            }
            match &result {
                Ok(()) => tracing::info!(gate = %gate.name(), "local API server healthy"),
                Err(reason) => {
                    tracing::warn!(gate = %gate.name(), %reason, "local API server unhealthy")
                }
            }
            last = Some(healthy);
            if tx.send(healthy).await.is_err() {
                return;
            }
        }
    });
    Some(rx)
}
