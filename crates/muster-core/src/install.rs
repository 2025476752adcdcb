//! The core's side of the Kubernetes install: the leader commits the join plan and proposes
//! progress; each host starts its own step when the plan allows it and reports back. The shell
//! runs the hook ([`Output::RunInstall`](crate::Output::RunInstall)) and tells the result
//! ([`Input::InstallDone`](crate::Input::InstallDone)); the rules are in `plan.rs`.
//!
//! A host's step goes: eligible and pending (or failed, after a backoff, below the attempt limit)
//! → the host reports `Running` with the next attempt number → once that is applied (durable),
//! the host emits `RunInstall` for that attempt → the shell's result is reported as `Succeeded` /
//! `Failed`. Reports go to the leader (`StepReport`, taken only from the member the step belongs
//! to), which proposes them as `StepProgress`; a report not yet applied is repeated every
//! [`REPORT_RETRY_MS`]. A host that restarts with its step `Running` emits `RunInstall` again:
//! the hook is re-run (hooks are idempotent), never silently marked done.
//!
//! Plans exist only with `NodeConfig::plan` set (the agent's `[kubernetes]` section).

use muster_proto::envelope::Body;
use muster_proto::{AddWorkers, Command, CreatePlan, Role, StepProgress, StepReport, StepState};

use crate::config::{format_id, NodeId};
use crate::node::{Node, Output};
use crate::plan;
use crate::secrets::SecretValues;
use crate::storage::RaftStore;

/// A host's report not yet applied is sent again this often; the leader re-proposes the plan
/// or new workers this often too.
pub const REPORT_RETRY_MS: u64 = 1_000;

/// Why an operator's plan action cannot be asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanActionError {
    /// No plan was committed yet.
    #[error("there is no join plan yet")]
    NoPlan,
    /// No step has that name or id.
    #[error("the plan has no step for {0:?}")]
    NoStep(String),
    /// The step is not in a state the action applies to.
    #[error("the step of {name} is {state}: retry applies to a failed step, skip to a pending or failed one")]
    NotApplicable {
        /// The step's host.
        name: String,
        /// Its state.
        state: String,
    },
    /// There is no leader to carry it out now.
    #[error("no leader is known; try again once the cluster has one")]
    NoLeader,
    /// `muster plan start` once the site is formed (the plan follows by itself) or planned.
    #[error(
        "the site is already formed: the plan is committed as soon as its voters are promoted"
    )]
    AlreadyFormed,
    /// `muster plan reinit --to NODE` refused, and why.
    #[error("cannot re-initialise with {name} as the init host: {reason}")]
    ReinitRefused {
        /// The host asked for.
        name: String,
        /// Why not.
        reason: String,
    },
    /// `muster plan promote NODE` refused, and why.
    #[error("cannot give a control-plane slot to {name}: {reason}")]
    PromoteRefused {
        /// The host asked for.
        name: String,
        /// Why not.
        reason: String,
    },
    /// An action that needs a newer agent on every member.
    #[error("not every member's agent supports this yet: {behind}; upgrade them first")]
    OlderAgents {
        /// The members behind, and why.
        behind: String,
    },
    /// `muster plan start` on a host in no cluster.
    #[error("this host is in no cluster yet; ask a member")]
    NotMember,
}

/// The host-side install bookkeeping (in memory: a restart re-runs a running step).
#[derive(Debug, Clone, Default)]
pub(crate) struct InstallState {
    /// The attempt this host launched (`RunInstall`) in this process.
    pub launched: Option<u32>,
    /// A result of the shell not yet applied, and when it was last sent.
    pub result: Option<(StepProgress, Option<u64>)>,
    /// When this host last asked to start its step.
    pub start_sent_ms: Option<u64>,
    /// Leader: when it last proposed the plan or new workers.
    pub plan_proposed_ms: Option<u64>,
    /// Leader: when it last handed leadership to the init host (`lead_from_the_init_host`).
    pub init_transfer_ms: Option<u64>,
}

/// Why `muster plan reinit --to` this step is refused (`plan::apply_action` said no).
fn reinit_refusal(plan: &muster_proto::Plan, to: &muster_proto::PlanStep) -> PlanActionError {
    let joined = plan.steps.iter().find(|s| {
        s.role == Role::ControlPlane as i32 && !s.removed && s.state == StepState::Succeeded as i32
    });
    let reason = if let Some(j) = joined {
        format!(
            "the control-plane join of {} already succeeded: the cluster exists beyond its init (replace hosts with `muster remove` instead)",
            j.name
        )
    } else if to.removed {
        "it was removed".into()
    } else if to.role == Role::Worker as i32 {
        "it is a worker; the init host must be a control-plane one".into()
    } else {
        "its step is running; wait for it to finish or fail".into()
    };
    PlanActionError::ReinitRefused {
        name: to.name.clone(),
        reason,
    }
}

impl<S: RaftStore> Node<S> {
    /// Leader only: commits the plan once the site is formed, and appends members that joined
    /// later as workers.
    pub(crate) fn plan_duties(&mut self) {
        if !self.cfg.plan || !self.is_leader() || !self.site_formed() {
            return;
        }
        let now = self.now_ms;
        let due = self
            .install
            .plan_proposed_ms
            .is_none_or(|t| now >= t + REPORT_RETRY_MS);
        if !due {
            return;
        }
        let members: Vec<_> = self
            .cluster
            .members
            .iter()
            .filter(|m| !self.is_removed(m.id))
            .cloned()
            .collect();
        if self.cluster.plan.is_none() && self.cfg.role_pin == muster_proto::RolePin::Worker {
            // The init host is the leader at plan time: a worker-pinned leader hands over.
            self.hand_over_to_a_control_plane_voter();
            return;
        }
        let cmd = match &self.cluster.plan {
            // The control-plane hosts are the voters: wait until the leader has promoted them.
            // (Worker-pinned hosts are never promoted: they do not count unless already voters.)
            None if crate::state::voter_count(&self.cluster)
                < self.cfg.control_plane_count.min(
                    members
                        .iter()
                        .filter(|m| m.voter || plan::pin(m) != muster_proto::RolePin::Worker)
                        .count(),
                ) =>
            {
                return;
            }
            None => {
                tracing::info!(
                    members = members.len(),
                    "site formed: committing the join plan with this host as init"
                );
                let cluster_id = self.cluster.cluster_id;
                let secrets = self.sealer.as_mut().map(|s| {
                    let values = s.plan_time_secrets();
                    s.seal(cluster_id, &values)
                });
                muster_proto::command::Kind::CreatePlan(CreatePlan {
                    steps: plan::make_steps(&members, self.cfg.id),
                    worker_parallelism: self.cfg.worker_parallelism,
                    unix_ms: self.unix_ms,
                    secrets,
                    certificate_key_refresh_ms: self.cfg.certificate_key_refresh_ms,
                })
            }
            Some(p) => {
                let steps = plan::new_workers(p, &members);
                if steps.is_empty() {
                    return;
                }
                muster_proto::command::Kind::AddWorkers(AddWorkers { steps })
            }
        };
        self.install.plan_proposed_ms = Some(now);
        self.propose_command(Command { kind: Some(cmd) });
    }

    /// Every host: starts its step when the plan allows it, launches the hook once the start is
    /// applied, and repeats its last result until it is applied.
    pub(crate) fn install_tick(&mut self) {
        let Some(plan) = self.cluster.plan.as_ref() else {
            return;
        };
        let Some(step) = plan::step_of(plan, self.cfg.id).cloned() else {
            return;
        };
        let state = StepState::try_from(step.state).unwrap_or(StepState::Pending);
        let now = self.now_ms;
        if self.cfg.install_ignores_plan_for_tests && self.install.launched.is_none() {
            let role = Role::try_from(step.role).unwrap_or(Role::Unspecified);
            self.launch(role, step.attempts + 1);
            return;
        }
        // A result reported and applied (or overtaken by a newer attempt) is done with.
        if let Some((r, _)) = &self.install.result {
            if r.attempt != step.attempts || state != StepState::Running {
                self.install.result = None;
            }
        }
        match state {
            StepState::Running if self.install.launched != Some(step.attempts) => {
                let role = Role::try_from(step.role).unwrap_or(Role::Unspecified);
                tracing::info!(role = ?role, attempt = step.attempts, "install step started: running the hook");
                self.launch(role, step.attempts);
            }
            StepState::Running => self.resend_result(),
            StepState::Pending | StepState::Failed => {
                if !plan::eligible(plan).contains(&self.cfg.id) {
                    return;
                }
                if state == StepState::Failed
                    && !self.retry_due(
                        step.attempts.saturating_sub(step.retry_from),
                        step.finished_unix_ms,
                    )
                {
                    return;
                }
                let due = self
                    .install
                    .start_sent_ms
                    .is_none_or(|t| now >= t + REPORT_RETRY_MS);
                if due {
                    self.install.start_sent_ms = Some(now);
                    let p = self.progress(StepState::Running, step.attempts + 1, String::new());
                    self.report(p);
                }
            }
            StepState::Succeeded => {}
        }
    }

    /// Has the shell run attempt `attempt` with the plan's secrets; if they cannot be opened the
    /// attempt fails at once, saying why.
    fn launch(&mut self, role: Role, attempt: u32) {
        self.install.launched = Some(attempt);
        if !self.cfg.plan {
            // A host the plan gave a step whose own config does not install Kubernetes: say so
            // in the plan rather than run nothing and look busy.
            tracing::error!(
                attempt,
                "the plan gives this host a step, but its config has no [kubernetes] section"
            );
            let error = "this host's config has no [kubernetes] section, so it cannot run its step: add the site's [kubernetes] section and restart the agent, then `muster plan retry`".to_string();
            self.on_install_done(attempt, Err(error), SecretValues::default());
            return;
        }
        match self.plan_secrets() {
            Ok(secrets) => self.out.push(Output::RunInstall {
                role,
                attempt,
                secrets,
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the plan's join secrets");
                let error = format!("cannot open the plan's join secrets: {e}");
                self.on_install_done(attempt, Err(error), SecretValues::default());
            }
        }
    }

    /// The plan's secrets: those made at plan time, with what the init hook shared over them,
    /// and the certificate key of the last certificate upload over both (`certs.rs`).
    /// Empty without a sealer (the simulator) or a plan without secrets.
    pub(crate) fn plan_secrets(&self) -> Result<SecretValues, crate::SecretsError> {
        let (Some(plan), Some(sealer)) = (self.cluster.plan.as_ref(), self.sealer.as_ref()) else {
            return Ok(SecretValues::default());
        };
        let id = self.cluster.cluster_id;
        let mut values = SecretValues::default();
        let layers = [&plan.secrets, &plan.init_secrets, &plan.refreshed_secrets];
        for sealed in layers.into_iter().flatten() {
            values.overlay(&sealer.open(id, sealed)?);
        }
        Ok(values)
    }

    /// Whether a failed step may be tried again: below the attempt limit and after a backoff of
    /// `install_retry_ms` doubling per attempt (measured on the wall clock of the report).
    pub(crate) fn retry_due(&self, attempts: u32, failed_unix_ms: u64) -> bool {
        if attempts >= self.cfg.max_install_attempts {
            return false;
        }
        let backoff = self
            .cfg
            .install_retry_ms
            .saturating_mul(1 << attempts.saturating_sub(1).min(6));
        self.unix_ms >= failed_unix_ms.saturating_add(backoff)
    }

    fn progress(&self, state: StepState, attempt: u32, error: String) -> StepProgress {
        StepProgress {
            node_id: self.cfg.id,
            state: state as i32,
            attempt,
            unix_ms: self.unix_ms,
            error,
            secrets: None,
        }
    }

    /// The shell finished attempt `attempt` of this host's step.
    pub(crate) fn on_install_done(
        &mut self,
        attempt: u32,
        result: Result<(), String>,
        secrets_out: SecretValues,
    ) {
        let (state, error) = match result {
            Ok(()) => (StepState::Succeeded, String::new()),
            Err(e) => (StepState::Failed, e),
        };
        tracing::info!(attempt, state = ?state, "install step finished");
        let mut p = self.progress(state, attempt, error);
        if !secrets_out.is_empty() {
            let init = self
                .cluster
                .plan
                .as_ref()
                .and_then(|plan| plan::step_of(plan, self.cfg.id))
                .is_some_and(|s| s.role == Role::Init as i32);
            let cluster_id = self.cluster.cluster_id;
            match self.sealer.as_mut() {
                Some(sealer) if init && state == StepState::Succeeded => {
                    tracing::info!(keys = ?secrets_out, "sharing the init hook's secrets with the site");
                    p.secrets = Some(sealer.seal(cluster_id, &secrets_out));
                }
                _ => tracing::warn!(
                    keys = ?secrets_out,
                    "MUSTER_SECRETS_OUT is shared only from a successful init step; ignored"
                ),
            }
        }
        self.install.result = Some((p, None));
        self.resend_result();
    }

    fn resend_result(&mut self) {
        let now = self.now_ms;
        let Some((p, sent)) = self.install.result.clone() else {
            return;
        };
        if sent.is_none_or(|t| now >= t + REPORT_RETRY_MS) {
            self.install.result = Some((p.clone(), Some(now)));
            self.report(p);
        }
    }

    /// Proposes our report if we lead, else sends it to the leader.
    fn report(&mut self, p: StepProgress) {
        if self.is_leader() {
            self.propose_command(Command {
                kind: Some(muster_proto::command::Kind::StepProgress(p)),
            });
            return;
        }
        let leader = self.leader_id();
        if leader != 0 {
            let report = StepReport {
                cluster_id: self.cluster.cluster_id,
                progress: Some(p),
            };
            self.send(leader, Body::StepReport(report));
        }
    }

    /// Operator entry point (`muster plan retry|skip NODE`): proposed here if this host leads,
    /// else forwarded to the leader. Returns the step's host and the outputs to carry out.
    pub fn request_plan_action(
        &mut self,
        who: &str,
        kind: muster_proto::PlanActionKind,
    ) -> Result<(crate::ActionTarget, Vec<Output>), PlanActionError> {
        if kind == muster_proto::PlanActionKind::Start {
            return self.request_plan_start();
        }
        if kind == muster_proto::PlanActionKind::Promote {
            return self.request_promote(who);
        }
        let plan = self.cluster.plan.as_ref().ok_or(PlanActionError::NoPlan)?;
        let by_id = crate::parse_id(who).and_then(|id| plan::step_of(plan, id));
        let step = by_id
            .or_else(|| plan.steps.iter().find(|s| s.name == who))
            .ok_or_else(|| PlanActionError::NoStep(who.into()))?
            .clone();
        let action = muster_proto::PlanAction {
            node_id: step.node_id,
            kind: kind as i32,
        };
        let mut probe = plan.clone();
        if !plan::apply_action(&mut probe, &action) {
            if kind == muster_proto::PlanActionKind::Reinit {
                return Err(reinit_refusal(plan, &step));
            }
            let state = StepState::try_from(step.state).unwrap_or(StepState::Pending);
            return Err(PlanActionError::NotApplicable {
                name: step.name.clone(),
                state: format!("{state:?}").to_lowercase(),
            });
        }
        let leader = self.propose_plan_action(action)?;
        tracing::info!(step = %step.name, ?kind, "plan action asked by an operator");
        let done = crate::ActionTarget {
            id: step.node_id,
            name: step.name,
            leader,
        };
        Ok((done, std::mem::take(&mut self.out)))
    }

    /// Leader, while the init step has not succeeded: leadership goes to the init host (a
    /// reachable voter), so the endpoint and the first API server coincide — after a
    /// `muster plan reinit`, or when leadership moved before the init ran.
    pub(crate) fn lead_from_the_init_host(&mut self) {
        let now = self.now_ms;
        if !self.is_leader() {
            return;
        }
        let Some(init) = self.cluster.plan.as_ref().and_then(|p| {
            p.steps
                .iter()
                .find(|s| s.role == Role::Init as i32 && !s.removed)
                .filter(|s| s.state != StepState::Succeeded as i32)
                .map(|s| s.node_id)
        }) else {
            return;
        };
        let voter = crate::state::member(&self.cluster, init).is_some_and(|m| m.voter);
        let due = self
            .install
            .init_transfer_ms
            .is_none_or(|t| now >= t + crate::health::HANDOVER_RETRY_MS);
        if init == self.cfg.id || !voter || !self.reachable(init) || !due {
            return;
        }
        self.install.init_transfer_ms = Some(now);
        match self.transfer_leadership(Some(init)) {
            Ok((to, outputs)) => {
                tracing::info!(to = %format_id(to), "handing leadership to the init host before its step runs");
                self.out.extend(outputs);
            }
            Err(e) => tracing::warn!(error = %e, "cannot hand leadership to the init host"),
        }
    }

    /// A worker-pinned leader before the plan: leadership goes to the most caught-up reachable
    /// voter that may run a control plane (retried every few seconds).
    fn hand_over_to_a_control_plane_voter(&mut self) {
        let now = self.now_ms;
        let due = self
            .install
            .init_transfer_ms
            .is_none_or(|t| now >= t + crate::health::HANDOVER_RETRY_MS);
        if !due {
            return;
        }
        let Some(raw) = self.raw.as_ref() else {
            return;
        };
        let target = self
            .cluster
            .members
            .iter()
            .filter(|m| {
                m.voter && m.id != self.cfg.id && plan::pin(m) != muster_proto::RolePin::Worker
            })
            .filter(|m| self.reachable(m.id))
            .max_by_key(|m| raw.raft.prs().get(m.id).map_or(0, |p| p.matched))
            .map(|m| m.id);
        let Some(target) = target else {
            return;
        };
        self.install.init_transfer_ms = Some(now);
        match self.transfer_leadership(Some(target)) {
            Ok((to, outputs)) => {
                tracing::info!(to = %format_id(to), "this host is pinned to workers: handing leadership to a control-plane host before the plan");
                self.out.extend(outputs);
            }
            Err(e) => tracing::warn!(error = %e, "cannot hand leadership to a control-plane host"),
        }
    }

    /// `muster plan promote NODE`: an open control-plane slot goes to this member (a spare).
    fn request_promote(
        &mut self,
        who: &str,
    ) -> Result<(crate::ActionTarget, Vec<Output>), PlanActionError> {
        self.site_supports(crate::PROTOCOL_UPLOADS_AND_SPARES)
            .map_err(|behind| PlanActionError::OlderAgents { behind })?;
        let plan = self.cluster.plan.as_ref().ok_or(PlanActionError::NoPlan)?;
        let m = crate::parse_id(who)
            .and_then(|id| crate::state::member(&self.cluster, id))
            .or_else(|| self.cluster.members.iter().find(|m| m.name == who))
            .filter(|m| !self.is_removed(m.id))
            .ok_or_else(|| PlanActionError::NoStep(who.into()))?
            .clone();
        let mut probe = plan.clone();
        if !plan::promote(&mut probe, &m) {
            let step = plan::step_of(plan, m.id);
            let reason = if plan::open_control_plane_slots(plan) == 0 {
                "no control-plane slot is open (remove a lost control-plane host first with `muster remove`)".to_string()
            } else if plan::pin(&m) == muster_proto::RolePin::Worker {
                "it is pinned to workers ([node] roles)".to_string()
            } else if let Some(s) = step {
                let state = StepState::try_from(s.state).unwrap_or(StepState::Pending);
                let role = Role::try_from(s.role).unwrap_or(Role::Unspecified);
                format!(
                    "its {} step is {} after {} attempt(s): a step that started keeps its role",
                    format!("{role:?}").to_lowercase(),
                    format!("{state:?}").to_lowercase(),
                    s.attempts
                )
            } else {
                "not applicable".to_string()
            };
            return Err(PlanActionError::PromoteRefused {
                name: m.name.clone(),
                reason,
            });
        }
        let action = muster_proto::PlanAction {
            node_id: m.id,
            kind: muster_proto::PlanActionKind::Promote as i32,
        };
        let leader = self.propose_plan_action(action)?;
        tracing::info!(host = %m.name, "an operator gave an open control-plane slot to a spare");
        let done = crate::ActionTarget {
            id: m.id,
            name: m.name,
            leader,
        };
        Ok((done, std::mem::take(&mut self.out)))
    }

    /// `muster plan start`: go ahead with the members there are (the target names this host).
    fn request_plan_start(
        &mut self,
    ) -> Result<(crate::ActionTarget, Vec<Output>), PlanActionError> {
        if self.cluster.cluster_id == 0 {
            return Err(PlanActionError::NotMember);
        }
        if self.site_formed() || self.cluster.plan.is_some() {
            return Err(PlanActionError::AlreadyFormed);
        }
        let action = muster_proto::PlanAction {
            node_id: 0,
            kind: muster_proto::PlanActionKind::Start as i32,
        };
        let leader = self.propose_plan_action(action)?;
        tracing::warn!(
            members = self.cluster.members.len(),
            expected = self.cfg.expected_nodes,
            "an operator asked to go ahead with fewer hosts than expected"
        );
        let done = crate::ActionTarget {
            id: self.cfg.id,
            name: self.cfg.name.clone(),
            leader,
        };
        Ok((done, std::mem::take(&mut self.out)))
    }

    /// Proposes `action` if this host leads, else forwards it to the leader; returns the leader.
    fn propose_plan_action(
        &mut self,
        action: muster_proto::PlanAction,
    ) -> Result<NodeId, PlanActionError> {
        let leader = self.leader_id();
        if self.is_leader() {
            self.propose_command(Command {
                kind: Some(muster_proto::command::Kind::PlanAction(action)),
            });
        } else if leader == 0 {
            return Err(PlanActionError::NoLeader);
        } else {
            let request = muster_proto::PlanActionRequest {
                cluster_id: self.cluster.cluster_id,
                action: Some(action),
            };
            self.send(leader, Body::PlanActionRequest(request));
        }
        Ok(leader)
    }

    /// A member forwarded an operator's plan action to us (the leader).
    pub(crate) fn on_plan_action_request(
        &mut self,
        from: NodeId,
        r: muster_proto::PlanActionRequest,
    ) {
        let member = crate::state::member(&self.cluster, from).is_some();
        if r.cluster_id != self.cluster.cluster_id || !member || !self.is_leader() {
            self.drops.note(
                "plan action not from a member, or not to the leader",
                from,
                self.now_ms,
            );
            return;
        }
        if let Some(action) = r.action {
            let promote = action.kind == muster_proto::PlanActionKind::Promote as i32;
            if let (true, Err(behind)) = (
                promote,
                self.site_supports(crate::PROTOCOL_UPLOADS_AND_SPARES),
            ) {
                tracing::warn!(%behind, "a forwarded plan promote needs a newer agent on every member; dropped");
                return;
            }
            self.propose_command(Command {
                kind: Some(muster_proto::command::Kind::PlanAction(action)),
            });
        }
    }

    /// A member reports its own step to us (the leader).
    pub(crate) fn on_step_report(&mut self, from: NodeId, r: StepReport) {
        let own = r.progress.as_ref().is_some_and(|p| p.node_id == from);
        let member = crate::state::member(&self.cluster, from).is_some();
        if r.cluster_id != self.cluster.cluster_id || !member || !own {
            self.drops.note(
                "step report not from the step's own member",
                from,
                self.now_ms,
            );
            return;
        }
        if !self.is_leader() {
            self.drops.note(
                "step report to a host that is not the leader",
                from,
                self.now_ms,
            );
            return;
        }
        if let Some(p) = r.progress {
            if p.state == StepState::Running as i32 && self.upload_due_before(p.node_id) {
                // The join would start with certificates past their refresh: ask for the upload
                // first (the join's host repeats its report and waits for the upload).
                tracing::debug!(host = %format_id(from), "control-plane join held back until the certificates are uploaded again");
                self.certificate_upload_duties();
                return;
            }
            tracing::debug!(host = %format_id(from), state = p.state, attempt = p.attempt, "step report");
            self.propose_command(Command {
                kind: Some(muster_proto::command::Kind::StepProgress(p)),
            });
        }
    }
}
