//! Simulated install steps and the I3 checker (`[install]` in a scenario).
//!
//! A host's `Output::RunInstall` starts a simulated hook that finishes after a random duration
//! in `duration_ms`, failing with probability `fail_pct`; a crash kills it (the host re-runs it
//! after it boots, as the agent would). The checker watches every run as it starts:
//! - **I3 roles**: a host's role never changes; at most one host ever runs the init step;
//! - **I3 order**: no control-plane or worker step starts before an init run succeeded;
//!   control-plane runs of different hosts never overlap (each starts after the previous one
//!   ended — succeeded, failed or crashed);
//! - **plan liveness** (with `expect_done`): at the end every up host's applied plan has every
//!   step succeeded.

use std::collections::BTreeMap;

use muster_proto::{Role, StepState};
use rand::Rng;

use crate::sim::{Ev, Sim};

/// The I3 checker's state.
#[derive(Debug, Default)]
pub struct InstallChecker {
    roles: BTreeMap<usize, Role>,
    init_host: Option<usize>,
    init_succeeded: bool,
    /// Control-plane runs in progress: host → start time.
    cp_running: BTreeMap<usize, u64>,
    /// Runs started, results seen.
    pub runs: u64,
    /// Results seen.
    pub results: u64,
}

impl Sim {
    /// A host started attempt `attempt` of its step as `role`.
    pub(crate) fn on_run_install(&mut self, i: usize, role: Role, attempt: u32) {
        let t = self.now_ms;
        self.note(format!(
            "install {} runs {role:?} attempt {attempt}",
            self.hosts[i].name
        ));
        self.check_run(t, i, role);
        let spec = self.scenario.install.clone();
        let [lo, hi] = spec.duration_ms;
        let took = self.rng.random_range(lo..=hi.max(lo));
        let ok = self.rng.random_range(0.0..100.0) >= spec.fail_pct;
        let inc = self.hosts[i].inc;
        self.q.push(
            t + took,
            Ev::InstallDone {
                host: i as u32,
                inc,
                attempt,
                ok,
            },
        );
    }

    fn check_run(&mut self, t: u64, i: usize, role: Role) {
        let name = self.hosts[i].name.clone();
        self.checker.counts.i3_runs += 1;
        let c = &mut self.installs;
        c.runs += 1;
        let mut found = Vec::new();
        if let Some(before) = c.roles.insert(i, role) {
            if before != role {
                found.push(format!("{name} ran {before:?}, now {role:?}"));
            }
        }
        if role == Role::Init {
            match c.init_host {
                Some(h) if h != i => found.push(format!("a second init host: {name}")),
                _ => c.init_host = Some(i),
            }
        } else if !c.init_succeeded {
            found.push(format!("{name} started {role:?} before the init succeeded"));
        }
        if role == Role::ControlPlane {
            if let Some((other, since)) = c.cp_running.iter().find(|(h, _)| **h != i) {
                found.push(format!(
                    "{name} started a control-plane join while host {other} runs one (since {since} ms)"
                ));
            }
            c.cp_running.insert(i, t);
        }
        for detail in found {
            self.checker.violate(t, "I3", detail);
        }
    }

    /// A simulated hook finished.
    pub(crate) fn on_install_done(&mut self, i: usize, inc: u32, attempt: u32, ok: bool) {
        if self.hosts[i].inc != inc || !self.is_up(i) {
            return;
        }
        let c = &mut self.installs;
        c.results += 1;
        c.cp_running.remove(&i);
        if ok && c.init_host == Some(i) {
            c.init_succeeded = true;
        }
        let result = if ok {
            Ok(())
        } else {
            Err("simulated hook failure".into())
        };
        self.input(
            i,
            muster_core::Input::InstallDone {
                attempt,
                result,
                secrets_out: Default::default(),
            },
        );
    }

    /// A host crashed: its hook died with it.
    pub(crate) fn install_crashed(&mut self, i: usize) {
        self.installs.cp_running.remove(&i);
    }

    /// With `expect_done`: every up host's plan has every step succeeded.
    pub(crate) fn check_plan_done(&mut self) {
        if !self.scenario.install.enabled || !self.scenario.install.expect_done {
            return;
        }
        let t = self.now_ms;
        let mut found = Vec::new();
        for h in &self.hosts {
            let Some(n) = h.node.as_ref() else { continue };
            let pending: Vec<String> = match n.cluster_state().plan.as_ref() {
                None => vec!["no plan".into()],
                Some(p) => p
                    .steps
                    .iter()
                    .filter(|s| s.state != StepState::Succeeded as i32)
                    .map(|s| format!("{} {:?}", s.name, StepState::try_from(s.state)))
                    .collect(),
            };
            if !pending.is_empty() {
                found.push(format!("{}: plan not done at the end: {pending:?}", h.name));
            }
        }
        for detail in found.into_iter().take(5) {
            self.checker.violate(t, "I3", detail);
        }
    }
}
