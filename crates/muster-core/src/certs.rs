//! kubeadm's certificate key, kept fresh for every control-plane join.
//!
//! `kubeadm init --upload-certs` stores the control-plane certificates in the cluster,
//! encrypted with the certificate key, and deletes them after two hours; a control-plane
//! `kubeadm join` later than that finds nothing to download. So before a control-plane join may
//! start, the leader has the certificates uploaded again under a fresh certificate key when the
//! last upload is older than the plan's `certificate_key_refresh_ms` (kubeadm: 90 minutes, so a
//! join that starts in time has half an hour to download them), or when that join failed before
//! (whatever the clocks say: a host whose clock lags must not keep retrying with expired
//! certificates). The upload is a duty like a removal's (`duty.rs`): run by a leader that runs a
//! healthy control plane (`kubeadm init phase upload-certs` needs the cluster's admin
//! credentials), its start and result replicated; the join waits while it is asked for, running
//! or failed below [`MAX_UPLOAD_ATTEMPTS`], and gets the fresh key once it succeeded (the plan's
//! `refreshed_secrets`). A failed upload past its attempts stops holding the join back: the join
//! runs, fails on its own if the certificates are gone, and its retry asks for a new upload.
//!
//! The pure rules ([`upload_blocks_joins`], [`upload_needed`], [`apply_upload_request`],
//! [`apply_upload_progress`]) are applied alike on every member; the leader's clock only decides
//! when to ask.

use muster_proto::{
    CertificateUpload, CertificateUploadProgress, CertificateUploadRequest, Command, Plan,
    PlanStep, Role, StepState,
};

use crate::install::REPORT_RETRY_MS;
use crate::node::{Node, Output};
use crate::plan::{role_of, state_of};
use crate::storage::RaftStore;

/// Attempts of an upload before it stops holding the join back.
pub const MAX_UPLOAD_ATTEMPTS: u32 = 3;
/// kubeadm's refresh: the uploaded certificates live two hours.
pub const KUBEADM_REFRESH_MS: u64 = 90 * 60 * 1_000;

/// The control-plane join the plan waits for: the first one, in order, not done.
pub fn next_control_plane(plan: &Plan) -> Option<&PlanStep> {
    plan.steps
        .iter()
        .filter(|s| role_of(s) == Role::ControlPlane && !s.removed)
        .filter(|s| state_of(s) != StepState::Succeeded)
        .min_by_key(|s| s.order)
}

/// Whether an upload holds the next control-plane join back: asked for, running, or failed
/// with attempts left.
pub fn upload_blocks_joins(plan: &Plan) -> bool {
    plan.upload
        .as_ref()
        .is_some_and(|u| match state_of_upload(u) {
            StepState::Pending | StepState::Running => true,
            StepState::Failed => u.attempts < MAX_UPLOAD_ATTEMPTS,
            StepState::Succeeded => false,
        })
}

fn state_of_upload(u: &CertificateUpload) -> StepState {
    StepState::try_from(u.state).unwrap_or(StepState::Pending)
}

/// The leader's question at `unix_ms`: must the certificates be uploaded again before the next
/// control-plane join? `Some((host, its attempts))` of that join if so.
pub fn upload_needed(plan: &Plan, unix_ms: u64) -> Option<(u64, u32)> {
    if plan.certificate_key_refresh_ms == 0 || upload_blocks_joins(plan) {
        return None;
    }
    let init_done = crate::plan::init_step(plan).is_some_and(|s| {
        state_of(s) == StepState::Succeeded && !s.skipped && plan.certificates_uploaded_unix_ms != 0
    });
    let next = next_control_plane(plan)?;
    if !init_done || state_of(next) == StepState::Running {
        return None;
    }
    let stale = unix_ms >= plan.certificates_uploaded_unix_ms + plan.certificate_key_refresh_ms;
    let for_this_attempt = plan
        .upload
        .as_ref()
        .is_some_and(|u| u.for_node_id == next.node_id && u.for_attempts == next.attempts);
    let failed_since = state_of(next) == StepState::Failed && !for_this_attempt;
    (stale || failed_since).then_some((next.node_id, next.attempts))
}

/// Applies a leader's request: taken while it is for the next control-plane join as it stands
/// (not running, the same attempts) and no other upload holds the joins back.
pub fn apply_upload_request(plan: &mut Plan, r: &CertificateUploadRequest) -> bool {
    let fits = next_control_plane(plan).is_some_and(|s| {
        s.node_id == r.for_node_id
            && s.attempts == r.for_attempts
            && state_of(s) != StepState::Running
    });
    let sealed_ok = r
        .secrets
        .as_ref()
        .is_some_and(crate::secrets::sealed_shape_ok);
    if plan.certificate_key_refresh_ms == 0 || !fits || !sealed_ok || upload_blocks_joins(plan) {
        return false;
    }
    let generation = plan.upload.as_ref().map_or(0, |u| u.generation) + 1;
    plan.upload = Some(CertificateUpload {
        generation,
        for_node_id: r.for_node_id,
        for_attempts: r.for_attempts,
        secrets: r.secrets.clone(),
        ..Default::default()
    });
    true
}

/// Applies an upload's progress, by the rules of a removal duty's (a start names the next
/// attempt, up to [`MAX_UPLOAD_ATTEMPTS`]; a result the running one). A success makes its key
/// the plan's.
pub fn apply_upload_progress(plan: &mut Plan, p: &CertificateUploadProgress) -> bool {
    let Some(u) = plan
        .upload
        .as_mut()
        .filter(|u| u.generation == p.generation)
    else {
        return false;
    };
    let now = state_of_upload(u);
    match StepState::try_from(p.state) {
        Ok(StepState::Running)
            if now != StepState::Succeeded
                && p.attempt == u.attempts + 1
                && p.attempt <= MAX_UPLOAD_ATTEMPTS =>
        {
            u.state = StepState::Running as i32;
            u.attempts = p.attempt;
            u.runner_id = p.runner_id;
            true
        }
        Ok(s @ (StepState::Succeeded | StepState::Failed))
            if now == StepState::Running && p.attempt == u.attempts =>
        {
            u.state = s as i32;
            u.finished_unix_ms = p.unix_ms;
            u.last_error = p.error.chars().take(crate::plan::MAX_ERROR_CHARS).collect();
            if s == StepState::Succeeded {
                plan.certificates_uploaded_unix_ms = p.unix_ms.max(1);
                plan.refreshed_secrets = u.secrets.clone();
            }
            true
        }
        _ => false,
    }
}

/// The leader's bookkeeping of the upload it runs (in memory: a restart re-runs it).
#[derive(Debug, Clone, Default)]
pub(crate) struct UploadState {
    /// (generation, attempt) launched in this process.
    pub launched: Option<(u32, u32)>,
    /// A result not yet applied, and when it was last proposed.
    pub result: Option<(CertificateUploadProgress, u64)>,
    /// When a request or a start was last proposed.
    pub sent_ms: Option<u64>,
}

impl<S: RaftStore> Node<S> {
    /// Whether this host asks for and runs certificate uploads: the leader of a site that
    /// installs Kubernetes, running a healthy control plane.
    fn may_run_uploads(&self) -> bool {
        self.cfg.plan && self.is_leader() && self.runs_healthy_control_plane()
    }

    /// Leader only: whether `node`'s control-plane join must wait for an upload this leader
    /// will ask for (`upload_needed`, with what `certificate_upload_duties` needs to ask).
    /// The leader checks it before proposing the join's start: the host becomes eligible the
    /// moment the previous join's success applies, which may be before the leader's next tick.
    pub(crate) fn upload_due_before(&self, node: crate::config::NodeId) -> bool {
        self.may_run_uploads()
            && self
                .site_supports(crate::PROTOCOL_UPLOADS_AND_SPARES)
                .is_ok()
            && self
                .cluster
                .plan
                .as_ref()
                .and_then(|p| upload_needed(p, self.unix_ms))
                .is_some_and(|(id, _)| id == node)
    }

    /// Leader only, running a healthy control plane: asks for an upload when the next
    /// control-plane join needs one, then starts, resumes or takes over the upload.
    pub(crate) fn certificate_upload_duties(&mut self) {
        if !self.may_run_uploads() {
            return;
        }
        let Some(plan) = self.cluster.plan.as_ref() else {
            return;
        };
        let now = self.now_ms;
        let due = self
            .upload
            .sent_ms
            .is_none_or(|t| now >= t + REPORT_RETRY_MS);
        if let Some((for_node_id, for_attempts)) = upload_needed(plan, self.unix_ms) {
            if !due {
                return;
            }
            // Members that do not apply uploads would part from the others' plan.
            if let Err(behind) = self.site_supports(crate::PROTOCOL_UPLOADS_AND_SPARES) {
                self.upload.sent_ms = Some(now);
                tracing::warn!(%behind, "the certificates are due for an upload, but not every member's agent applies uploads yet; the join goes ahead with the old key");
                return;
            }
            let cluster_id = self.cluster.cluster_id;
            let Some(sealer) = self.sealer.as_mut() else {
                return;
            };
            let fresh = sealer.fresh_certificate_key();
            let secrets = Some(sealer.seal(cluster_id, &fresh));
            tracing::info!(for_host = %crate::config::format_id(for_node_id), "the uploaded control-plane certificates are due for renewal: asking for an upload under a fresh certificate key");
            self.upload.sent_ms = Some(now);
            self.propose_command(Command {
                kind: Some(muster_proto::command::Kind::UploadRequest(
                    CertificateUploadRequest {
                        for_node_id,
                        for_attempts,
                        secrets,
                    },
                )),
            });
            return;
        }
        let Some(u) = plan.upload.clone() else {
            return;
        };
        let state = state_of_upload(&u);
        if state == StepState::Running && u.runner_id == self.cfg.id {
            if self.upload.launched != Some((u.generation, u.attempts)) {
                self.upload.launched = Some((u.generation, u.attempts));
                self.launch_upload(&u);
                return;
            }
            if let Some((p, sent)) = self.upload.result.clone() {
                if p.generation == u.generation
                    && p.attempt == u.attempts
                    && now >= sent + REPORT_RETRY_MS
                {
                    self.upload.result = Some((p.clone(), now));
                    self.propose_upload_progress(p);
                }
            }
            return;
        }
        let startable = match state {
            StepState::Pending | StepState::Running => true,
            StepState::Failed => {
                u.attempts < MAX_UPLOAD_ATTEMPTS && self.retry_due(u.attempts, u.finished_unix_ms)
            }
            StepState::Succeeded => false,
        };
        if startable && due {
            self.upload.sent_ms = Some(now);
            let p = CertificateUploadProgress {
                generation: u.generation,
                state: StepState::Running as i32,
                attempt: u.attempts + 1,
                error: String::new(),
                runner_id: self.cfg.id,
                unix_ms: self.unix_ms,
            };
            self.propose_upload_progress(p);
        }
    }

    /// Has the shell run the upload with the plan's secrets and the fresh key over them; if they
    /// cannot be opened the attempt fails at once, saying why.
    fn launch_upload(&mut self, u: &CertificateUpload) {
        let cluster_id = self.cluster.cluster_id;
        let opened = self.plan_secrets().and_then(|mut values| {
            if let (Some(sealer), Some(sealed)) = (self.sealer.as_ref(), u.secrets.as_ref()) {
                values.overlay(&sealer.open(cluster_id, sealed)?);
            }
            Ok(values)
        });
        match opened {
            Ok(secrets) => {
                tracing::info!(
                    generation = u.generation,
                    attempt = u.attempts,
                    "uploading the control-plane certificates under a fresh certificate key"
                );
                self.out.push(Output::RunCertificateUpload {
                    generation: u.generation,
                    attempt: u.attempts,
                    secrets,
                });
            }
            Err(e) => {
                let error = format!("cannot open the plan's join secrets: {e}");
                self.on_upload_done(u.generation, u.attempts, Err(error));
            }
        }
    }

    /// The shell finished an upload's attempt.
    pub(crate) fn on_upload_done(
        &mut self,
        generation: u32,
        attempt: u32,
        result: Result<(), String>,
    ) {
        let (state, error) = match result {
            Ok(()) => (StepState::Succeeded, String::new()),
            Err(e) => (StepState::Failed, e),
        };
        tracing::info!(generation, attempt, state = ?state, "certificate upload finished");
        let p = CertificateUploadProgress {
            generation,
            state: state as i32,
            attempt,
            error,
            runner_id: self.cfg.id,
            unix_ms: self.unix_ms,
        };
        self.upload.result = Some((p.clone(), self.now_ms));
        if self.is_leader() {
            self.propose_upload_progress(p);
        }
    }

    fn propose_upload_progress(&mut self, p: CertificateUploadProgress) {
        self.propose_command(Command {
            kind: Some(muster_proto::command::Kind::UploadProgress(p)),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{apply_progress, checked_plan, eligible, make_steps};
    use muster_proto::{Member, Sealed, StepProgress};

    const H: u64 = 60 * 60 * 1_000;

    fn plan() -> Plan {
        let members: Vec<Member> = (1..=3)
            .map(|id| Member {
                id,
                name: format!("h{id}"),
                voter: true,
                ..Default::default()
            })
            .collect();
        checked_plan(&make_steps(&members, 1), 3, 0, KUBEADM_REFRESH_MS).expect("valid")
    }

    fn report(plan: &mut Plan, id: u64, state: StepState, attempt: u32, unix_ms: u64) -> bool {
        let p = StepProgress {
            node_id: id,
            state: state as i32,
            attempt,
            unix_ms,
            ..Default::default()
        };
        crate::state::apply_plan_progress(plan, &p)
    }

    fn sealed() -> Option<Sealed> {
        Some(Sealed {
            nonce: vec![7; 24],
            ciphertext: vec![1; 40],
        })
    }

    fn upload(plan: &mut Plan, state: StepState, attempt: u32, unix_ms: u64) -> bool {
        let generation = plan.upload.as_ref().map_or(0, |u| u.generation);
        let p = CertificateUploadProgress {
            generation,
            state: state as i32,
            attempt,
            runner_id: 1,
            unix_ms,
            ..Default::default()
        };
        apply_upload_progress(plan, &p)
    }

    fn request(plan: &mut Plan, unix_ms: u64) -> bool {
        let Some((for_node_id, for_attempts)) = upload_needed(plan, unix_ms) else {
            return false;
        };
        apply_upload_request(
            plan,
            &CertificateUploadRequest {
                for_node_id,
                for_attempts,
                secrets: sealed(),
            },
        )
    }

    #[test]
    fn a_join_within_the_window_needs_no_upload_and_a_late_one_waits_for_a_fresh_key() {
        let mut p = plan();
        assert!(report(&mut p, 1, StepState::Running, 1, 10));
        assert_eq!(
            upload_needed(&p, 20),
            None,
            "before init nothing is uploaded"
        );
        assert!(report(&mut p, 1, StepState::Succeeded, 1, 1_000));
        assert_eq!(p.certificates_uploaded_unix_ms, 1_000, "init uploaded them");
        // h2 joins an hour later: still in the window.
        assert_eq!(upload_needed(&p, H), None);
        assert!(eligible(&p).contains(&2));
        assert!(report(&mut p, 2, StepState::Running, 1, H));
        assert!(report(&mut p, 2, StepState::Succeeded, 1, H + 1));
        // h3 comes back three hours after init: the leader asks for an upload first.
        assert_eq!(upload_needed(&p, 3 * H), Some((3, 0)));
        assert!(request(&mut p, 3 * H));
        assert!(!eligible(&p).contains(&3), "the join waits for the upload");
        assert!(
            !report(&mut p, 3, StepState::Running, 1, 3 * H),
            "a start before the upload is refused"
        );
        assert!(!request(&mut p, 3 * H), "one upload at a time");
        assert!(upload(&mut p, StepState::Running, 1, 3 * H));
        assert!(!eligible(&p).contains(&3));
        assert!(upload(&mut p, StepState::Succeeded, 1, 3 * H + 5));
        assert_eq!(p.certificates_uploaded_unix_ms, 3 * H + 5);
        assert_eq!(p.refreshed_secrets, sealed(), "the fresh key is the plan's");
        assert!(eligible(&p).contains(&3));
        assert_eq!(upload_needed(&p, 3 * H + 10), None);
        assert!(report(&mut p, 3, StepState::Running, 1, 3 * H + 10));
        assert!(report(&mut p, 3, StepState::Succeeded, 1, 3 * H + 20));
        assert_eq!(
            upload_needed(&p, 10 * H),
            None,
            "no control-plane join left: no uploads"
        );
    }

    #[test]
    fn a_failed_join_is_retried_only_after_a_fresh_upload_whatever_the_clock_says() {
        let mut p = plan();
        assert!(report(&mut p, 1, StepState::Running, 1, 10));
        assert!(report(&mut p, 1, StepState::Succeeded, 1, 1_000));
        assert!(report(&mut p, 2, StepState::Running, 1, 2_000));
        assert!(report(&mut p, 2, StepState::Failed, 1, 3_000));
        // A lagging clock (before the init's upload) still asks: the join failed.
        assert_eq!(upload_needed(&p, 0), Some((2, 1)));
        assert!(request(&mut p, 0));
        assert!(!eligible(&p).contains(&2));
        // The upload fails twice, then succeeds; the join waits throughout.
        for attempt in 1..=2 {
            assert!(upload(&mut p, StepState::Running, attempt, 4_000));
            assert!(upload(&mut p, StepState::Failed, attempt, 4_001));
            assert!(!eligible(&p).contains(&2), "attempts left: the join waits");
            assert_eq!(upload_needed(&p, 4_002), None, "the same upload is retried");
        }
        assert!(upload(&mut p, StepState::Running, 3, 5_000));
        assert!(
            !upload(&mut p, StepState::Succeeded, 2, 5_001),
            "an old attempt's result changes nothing"
        );
        assert!(upload(&mut p, StepState::Succeeded, 3, 5_002));
        assert!(eligible(&p).contains(&2));
        assert_eq!(
            upload_needed(&p, 5_003),
            None,
            "this attempt has its upload"
        );
        assert!(report(&mut p, 2, StepState::Running, 2, 5_004));
        assert!(report(&mut p, 2, StepState::Failed, 2, 5_005));
        assert_eq!(
            upload_needed(&p, 5_006),
            Some((2, 2)),
            "a new failure, a new upload"
        );
    }

    #[test]
    fn an_upload_out_of_attempts_stops_holding_the_join_back() {
        let mut p = plan();
        assert!(report(&mut p, 1, StepState::Running, 1, 10));
        assert!(report(&mut p, 1, StepState::Succeeded, 1, 1_000));
        assert!(request(&mut p, 3 * H));
        for attempt in 1..=MAX_UPLOAD_ATTEMPTS {
            assert!(upload(&mut p, StepState::Running, attempt, 3 * H));
            assert!(upload(&mut p, StepState::Failed, attempt, 3 * H));
        }
        assert!(
            !upload(&mut p, StepState::Running, MAX_UPLOAD_ATTEMPTS + 1, 3 * H),
            "no further attempt"
        );
        assert!(
            eligible(&p).contains(&2),
            "the join runs and shows its own error"
        );
        assert_eq!(
            p.refreshed_secrets, None,
            "a failed upload's key is never used"
        );
    }

    #[test]
    fn plans_without_a_refresh_never_upload_and_refuse_requests() {
        let members: Vec<Member> = (1..=2)
            .map(|id| Member {
                id,
                voter: true,
                ..Default::default()
            })
            .collect();
        let mut p = checked_plan(&make_steps(&members, 1), 3, 0, 0).expect("valid");
        assert!(apply_progress(
            &mut p,
            &StepProgress {
                node_id: 1,
                state: StepState::Running as i32,
                attempt: 1,
                ..Default::default()
            }
        ));
        assert_eq!(upload_needed(&p, 100 * H), None);
        let r = CertificateUploadRequest {
            for_node_id: 2,
            for_attempts: 0,
            secrets: sealed(),
        };
        assert!(!apply_upload_request(&mut p, &r));
    }
}
