//! Removal duties: when an operator removes a host that had a step in the join plan, the plan
//! records a duty for it (`plan::apply_removed`), and the leader runs the site's
//! `remove_command` for it ([`Output::RunRemoval`], e.g. `etcdctl member remove`), reporting
//! start and result through raft like a step (`RemovalProgress`). A removed control-plane host's
//! slot goes to the next host that joins (`plan::new_workers`), whose step starts only once the
//! duties of removed control-plane hosts succeeded.
//!
//! The leader runs a duty only while it runs a control plane whose API server is not known
//! unhealthy (its own step is an init or control-plane one and succeeded): otherwise the health
//! handover (`health.rs`) brings leadership to a host that can. A duty whose runner lost
//! leadership (or restarted) is taken over with the next attempt number; commands are idempotent
//! by contract, like hooks.

use muster_proto::{ApiHealth, Command, RemovalDuty, RemovalProgress, Role, StepState};

use crate::config::format_id;
use crate::install::REPORT_RETRY_MS;
use crate::node::{Node, Output};
use crate::storage::RaftStore;

/// The leader's bookkeeping of the duty it runs (in memory: a restart re-runs it).
#[derive(Debug, Clone, Default)]
pub(crate) struct DutyState {
    /// (removed host, attempt) launched in this process.
    pub launched: Option<(u64, u32)>,
    /// A result not yet applied, and when it was last proposed.
    pub result: Option<(RemovalProgress, u64)>,
    /// When a start was last proposed.
    pub start_sent_ms: Option<u64>,
}

impl<S: RaftStore> Node<S> {
    /// Leader only: starts, resumes or takes over the first removal duty not done.
    pub(crate) fn remove_command_duties(&mut self) {
        if !self.cfg.plan || !self.is_leader() || !self.runs_healthy_control_plane() {
            return;
        }
        let Some(duty) = self.cluster.plan.as_ref().and_then(|p| {
            p.removals
                .iter()
                .find(|r| r.state != StepState::Succeeded as i32)
                .cloned()
        }) else {
            return;
        };
        let now = self.now_ms;
        let state = StepState::try_from(duty.state).unwrap_or(StepState::Pending);
        let mine = duty.runner_id == self.cfg.id;
        if state == StepState::Running && mine {
            if self.duty.launched != Some((duty.node_id, duty.attempts)) {
                self.duty.launched = Some((duty.node_id, duty.attempts));
                tracing::info!(host = %duty.name, attempt = duty.attempts, "running the remove command for a removed host");
                self.out.push(Output::RunRemoval {
                    attempt: duty.attempts,
                    duty,
                });
                return;
            }
            if let Some((p, sent)) = self.duty.result.clone() {
                if p.node_id == duty.node_id
                    && p.attempt == duty.attempts
                    && now >= sent + REPORT_RETRY_MS
                {
                    self.duty.result = Some((p.clone(), now));
                    self.propose_removal_progress(p);
                }
            }
            return;
        }
        let startable = match state {
            StepState::Pending => true,
            // The runner lost leadership or stopped: take the duty over.
            StepState::Running => true,
            StepState::Failed => self.duty_retry_due(&duty),
            StepState::Succeeded => false,
        };
        let due = self
            .duty
            .start_sent_ms
            .is_none_or(|t| now >= t + REPORT_RETRY_MS);
        if startable && due {
            self.duty.start_sent_ms = Some(now);
            let p = RemovalProgress {
                node_id: duty.node_id,
                state: StepState::Running as i32,
                attempt: duty.attempts + 1,
                error: String::new(),
                runner_id: self.cfg.id,
                unix_ms: self.unix_ms,
            };
            self.propose_removal_progress(p);
        }
    }

    /// Below the attempt limit and past the backoff (as for steps).
    fn duty_retry_due(&self, duty: &RemovalDuty) -> bool {
        if duty.attempts >= self.cfg.max_install_attempts {
            return false;
        }
        let backoff = self
            .cfg
            .install_retry_ms
            .saturating_mul(1 << duty.attempts.saturating_sub(1).min(6));
        self.unix_ms >= duty.finished_unix_ms.saturating_add(backoff)
    }

    /// Whether this host runs a control plane that can act for the site: its step is an init or
    /// control-plane one that succeeded, and its API server is not known unhealthy.
    pub(crate) fn runs_healthy_control_plane(&self) -> bool {
        let own = self
            .cluster
            .plan
            .as_ref()
            .and_then(|p| crate::plan::step_of(p, self.cfg.id));
        own.is_some_and(|s| {
            s.role != Role::Worker as i32 && s.state == StepState::Succeeded as i32 && !s.removed
        }) && self.health.local != ApiHealth::Unhealthy
    }

    /// The shell finished a removal duty's attempt.
    pub(crate) fn on_removal_done(
        &mut self,
        node_id: u64,
        attempt: u32,
        result: Result<(), String>,
    ) {
        let (state, error) = match result {
            Ok(()) => (StepState::Succeeded, String::new()),
            Err(e) => (StepState::Failed, e),
        };
        tracing::info!(host = %format_id(node_id), attempt, state = ?state, "remove command finished");
        let p = RemovalProgress {
            node_id,
            state: state as i32,
            attempt,
            error,
            runner_id: self.cfg.id,
            unix_ms: self.unix_ms,
        };
        self.duty.result = Some((p.clone(), self.now_ms));
        if self.is_leader() {
            self.propose_removal_progress(p);
        }
    }

    fn propose_removal_progress(&mut self, p: RemovalProgress) {
        self.propose_command(Command {
            kind: Some(muster_proto::command::Kind::RemovalProgress(p)),
        });
    }
}
