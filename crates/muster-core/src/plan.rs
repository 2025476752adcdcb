//! The join plan of the Kubernetes install, as pure functions over the replicated [`Plan`]
//! (invariant I3). Applied by `state::apply_command`; read by `install.rs` (when may this host
//! start its step) and by the leader (what to propose).
//!
//! The plan is made once, by the leader, when the site is formed and its voters are promoted
//! (`control_plane_count` of them, or every member of a smaller site): the leader is the init host
//! (so the VIP and the first API server coincide), the other voters join the control plane one
//! at a time in join order, the learners are workers; members that join later are appended as
//! workers. Roles are fixed when a step is created: no command changes a step's role, and
//! exactly one init step exists in a plan (I3).
//!
//! Who may start ([`eligible`]): the init step first; once it succeeded, the first control-plane
//! step that has not succeeded (one at a time, in order, each only after the previous one
//! succeeded), and workers up to `worker_parallelism` at once. A step starts when its `Running`
//! is applied ([`apply_progress`] refuses a start the plan does not allow at that point of the
//! log), so the hook runs only after its start is durable; a crash mid-step resumes it.

use muster_proto::{Member, Plan, PlanStep, Role, RolePin, StepProgress, StepState};

use crate::config::NodeId;

/// Workers that install at once unless configured otherwise.
pub const DEFAULT_WORKER_PARALLELISM: u32 = 3;

/// The plan a leader makes: itself as init, the other voters as control-plane joins in join
/// order, the learners as workers — as `[node] roles` allow: a worker-pinned voter is a worker,
/// a control-plane-pinned learner a spare without a step (it takes a control-plane slot when
/// one opens, [`new_workers`]).
pub fn make_steps(members: &[Member], leader: NodeId) -> Vec<PlanStep> {
    let mut steps = Vec::with_capacity(members.len());
    if let Some(l) = members.iter().find(|m| m.id == leader) {
        steps.push(step(l, Role::Init, 0));
    }
    let others = || members.iter().filter(|m| m.id != leader);
    let control_plane = others().filter(|m| m.voter && pin(m) != RolePin::Worker);
    for (k, m) in control_plane.enumerate() {
        steps.push(step(m, Role::ControlPlane, k as u32));
    }
    let workers = others().filter(|m| {
        (m.voter && pin(m) == RolePin::Worker) || (!m.voter && pin(m) != RolePin::ControlPlane)
    });
    for (k, m) in workers.enumerate() {
        steps.push(step(m, Role::Worker, k as u32));
    }
    steps
}

/// A member's `[node] roles` pin.
pub fn pin(m: &Member) -> RolePin {
    RolePin::try_from(m.role_pin).unwrap_or(RolePin::Any)
}

fn step(m: &Member, role: Role, order: u32) -> PlanStep {
    PlanStep {
        node_id: m.id,
        name: m.name.clone(),
        role: role as i32,
        order,
        ..Default::default()
    }
}

/// Steps for members the plan does not have yet: control-plane steps while removed control-plane
/// hosts left slots ([`open_control_plane_slots`]), then workers, each ordered after the
/// existing steps of its role.
pub fn new_workers(plan: &Plan, members: &[Member]) -> Vec<PlanStep> {
    let next = |role: Role| {
        plan.steps
            .iter()
            .filter(|s| s.role == role as i32)
            .map(|s| s.order + 1)
            .max()
            .unwrap_or(0)
    };
    let (mut cp_next, mut worker_next) = (next(Role::ControlPlane), next(Role::Worker));
    let mut slots = open_control_plane_slots(plan);
    let mut fresh: Vec<&Member> = members
        .iter()
        .filter(|m| !plan.steps.iter().any(|s| s.node_id == m.id))
        .collect();
    // Slots go to control-plane-pinned spares first, never to worker-pinned hosts.
    fresh.sort_by_key(|m| pin(m) != RolePin::ControlPlane);
    let mut out = Vec::new();
    for m in fresh {
        if slots > 0 && pin(m) != RolePin::Worker {
            slots -= 1;
            cp_next += 1;
            out.push(step(m, Role::ControlPlane, cp_next - 1));
        } else if pin(m) != RolePin::ControlPlane {
            worker_next += 1;
            out.push(step(m, Role::Worker, worker_next - 1));
        }
    }
    out
}

/// Control-plane hosts the plan is short of: removed init / control-plane hosts not replaced.
pub fn open_control_plane_slots(plan: &Plan) -> usize {
    let live = plan
        .steps
        .iter()
        .filter(|s| role_of(s) != Role::Worker && !s.removed)
        .count();
    (plan.control_plane_target as usize).saturating_sub(live)
}

/// Whether every removal duty of a removed control-plane host is done: a replacement joins the
/// control plane only after (its etcd member removed, say).
pub(crate) fn control_plane_removals_done(plan: &Plan) -> bool {
    plan.removals
        .iter()
        .all(|r| r.role == Role::Worker as i32 || r.state == StepState::Succeeded as i32)
}

/// A removed host's step no longer counts, and its host gets a duty (`remove_command`).
/// Returns whether the plan changed.
pub fn apply_removed(plan: &mut Plan, m: &Member) -> bool {
    let Some(step) = plan.steps.iter_mut().find(|s| s.node_id == m.id) else {
        return false;
    };
    if step.removed {
        return false;
    }
    step.removed = true;
    let role = step.role;
    plan.removals.push(muster_proto::RemovalDuty {
        node_id: m.id,
        name: m.name.clone(),
        address: m.address.clone(),
        role,
        ..Default::default()
    });
    true
}

/// Applies the progress of a removal duty, by the same rules as a step's (a start names the
/// next attempt; a result the running one). Returns whether the plan changed.
pub fn apply_removal_progress(plan: &mut Plan, p: &muster_proto::RemovalProgress) -> bool {
    let Some(duty) = plan.removals.iter_mut().find(|r| r.node_id == p.node_id) else {
        return false;
    };
    let now = StepState::try_from(duty.state).unwrap_or(StepState::Pending);
    match StepState::try_from(p.state) {
        Ok(StepState::Running) if now != StepState::Succeeded && p.attempt == duty.attempts + 1 => {
            duty.state = StepState::Running as i32;
            duty.attempts = p.attempt;
            duty.runner_id = p.runner_id;
            true
        }
        Ok(s @ (StepState::Succeeded | StepState::Failed))
            if now == StepState::Running && p.attempt == duty.attempts =>
        {
            duty.state = s as i32;
            duty.finished_unix_ms = p.unix_ms;
            duty.last_error = p.error.chars().take(MAX_ERROR_CHARS).collect();
            true
        }
        _ => false,
    }
}

/// `s` as a step that has not started: what a proposal's steps become when applied.
pub fn pending(s: &PlanStep) -> PlanStep {
    PlanStep {
        state: StepState::Pending as i32,
        attempts: 0,
        started_unix_ms: 0,
        finished_unix_ms: 0,
        last_error: String::new(),
        retry_from: 0,
        skipped: false,
        ..s.clone()
    }
}

/// A plan as committed: the steps must have exactly one init, distinct hosts and known roles;
/// otherwise `None` (the command changes nothing, alike on every member).
pub fn checked_plan(
    steps: &[PlanStep],
    parallelism: u32,
    unix_ms: u64,
    certificate_key_refresh_ms: u64,
) -> Option<Plan> {
    let inits = steps.iter().filter(|s| s.role == Role::Init as i32).count();
    let mut ids: Vec<NodeId> = steps.iter().map(|s| s.node_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let known = steps
        .iter()
        .all(|s| matches!(Role::try_from(s.role), Ok(r) if r != Role::Unspecified));
    if inits != 1 || ids.len() != steps.len() || !known {
        return None;
    }
    let steps: Vec<PlanStep> = steps.iter().map(pending).collect();
    let control_plane_target = steps
        .iter()
        .filter(|s: &&PlanStep| s.role != Role::Worker as i32)
        .count() as u32;
    Some(Plan {
        created_unix_ms: unix_ms,
        steps,
        worker_parallelism: parallelism.max(1),
        control_plane_target,
        certificate_key_refresh_ms,
        ..Default::default()
    })
}

pub(crate) fn state_of(s: &PlanStep) -> StepState {
    StepState::try_from(s.state).unwrap_or(StepState::Pending)
}

pub(crate) fn role_of(s: &PlanStep) -> Role {
    Role::try_from(s.role).unwrap_or(Role::Unspecified)
}

/// The hosts whose step may start (or is running) now, by the rules in the module docs.
pub fn eligible(plan: &Plan) -> Vec<NodeId> {
    let done = |s: &PlanStep| state_of(s) == StepState::Succeeded;
    let Some(init) = init_step(plan) else {
        return Vec::new();
    };
    if !done(init) {
        return vec![init.node_id];
    }
    let mut out = Vec::new();
    let mut cps: Vec<&PlanStep> = plan
        .steps
        .iter()
        .filter(|s| role_of(s) == Role::ControlPlane && !s.removed)
        .collect();
    cps.sort_by_key(|s| s.order);
    if let Some(next) = cps.into_iter().find(|s| !done(s)) {
        let running = state_of(next) == StepState::Running;
        if running
            || (control_plane_removals_done(plan) && !crate::certs::upload_blocks_joins(plan))
        {
            out.push(next.node_id);
        }
    }
    let mut workers: Vec<&PlanStep> = plan
        .steps
        .iter()
        .filter(|s| role_of(s) == Role::Worker && !done(s) && !s.removed)
        .collect();
    workers.sort_by_key(|s| (state_of(s) != StepState::Running, s.order));
    out.extend(
        workers
            .into_iter()
            .take(plan.worker_parallelism.max(1) as usize)
            .map(|s| s.node_id),
    );
    out
}

/// Applies a host's progress report. Allowed: a start (`Running` with the next attempt number)
/// of an eligible step that is pending, failed or running an earlier attempt (resumed after a
/// crash); `Succeeded` / `Failed` of the attempt that is running. Anything else changes nothing.
/// Returns whether the plan changed.
pub fn apply_progress(plan: &mut Plan, p: &StepProgress) -> bool {
    let allowed_start = eligible(plan).contains(&p.node_id);
    let Some(step) = plan.steps.iter_mut().find(|s| s.node_id == p.node_id) else {
        return false;
    };
    let now = state_of(step);
    match StepState::try_from(p.state) {
        Ok(StepState::Running)
            if allowed_start && now != StepState::Succeeded && p.attempt == step.attempts + 1 =>
        {
            step.state = StepState::Running as i32;
            step.attempts = p.attempt;
            step.started_unix_ms = p.unix_ms;
            true
        }
        Ok(done @ (StepState::Succeeded | StepState::Failed))
            if now == StepState::Running && p.attempt == step.attempts =>
        {
            step.state = done as i32;
            step.finished_unix_ms = p.unix_ms;
            step.last_error = if done == StepState::Failed {
                p.error.chars().take(MAX_ERROR_CHARS).collect()
            } else {
                String::new()
            };
            true
        }
        _ => false,
    }
}

/// Applies an operator's action: `Retry` a failed step (its attempt limit counts again from its
/// current attempts, with no backoff), or `Skip` a step that is not running (it counts as
/// succeeded, marked `skipped`, so the plan goes on). Anything else changes nothing.
pub fn apply_action(plan: &mut Plan, a: &muster_proto::PlanAction) -> bool {
    use muster_proto::PlanActionKind;
    let Some(step) = plan.steps.iter_mut().find(|s| s.node_id == a.node_id) else {
        return false;
    };
    let now = state_of(step);
    match PlanActionKind::try_from(a.kind) {
        Ok(PlanActionKind::Retry) if now == StepState::Failed => {
            step.retry_from = step.attempts;
            step.finished_unix_ms = 0;
            true
        }
        Ok(PlanActionKind::Skip) if matches!(now, StepState::Pending | StepState::Failed) => {
            step.state = StepState::Succeeded as i32;
            step.skipped = true;
            true
        }
        Ok(PlanActionKind::Reinit) => reinit(plan, a.node_id),
        _ => false,
    }
}

/// `muster plan promote NODE`: an open control-plane slot (left by a removed control-plane
/// host) goes to `m`, the spare an operator names, instead of the next host to join. Allowed for
/// a member that may run a control plane (not pinned to workers, not removed) whose step never
/// started — a pending worker step with no attempt becomes a control-plane step (no hook ever
/// ran in that role, so I3 holds) — or that has no step (a control-plane-pinned spare).
/// Returns whether the plan changed.
pub fn promote(plan: &mut Plan, m: &Member) -> bool {
    if open_control_plane_slots(plan) == 0 || pin(m) == RolePin::Worker {
        return false;
    }
    let order = plan
        .steps
        .iter()
        .filter(|s| role_of(s) == Role::ControlPlane)
        .map(|s| s.order + 1)
        .max()
        .unwrap_or(0);
    match plan.steps.iter_mut().find(|s| s.node_id == m.id) {
        None => {
            plan.steps.push(step(m, Role::ControlPlane, order));
            true
        }
        Some(s)
            if role_of(s) == Role::Worker
                && !s.removed
                && s.attempts == 0
                && state_of(s) == StepState::Pending =>
        {
            s.role = Role::ControlPlane as i32;
            s.order = order;
            true
        }
        Some(_) => false,
    }
}

/// `muster plan reinit --to NODE`: the only way a second init runs (I3's one exception, asked
/// for by an operator). Refused once any control-plane join succeeded (the cluster exists
/// beyond its init), and for a target that is removed, running, or a worker. The old init step
/// stops counting (marked removed; its host must be reset before it takes part again); the
/// target becomes the init, pending, with its attempts counted anew.
fn reinit(plan: &mut Plan, to: NodeId) -> bool {
    let joined = plan.steps.iter().any(|s| {
        role_of(s) == Role::ControlPlane && !s.removed && state_of(s) == StepState::Succeeded
    });
    let target_ok = step_of(plan, to).is_some_and(|s| {
        !s.removed && role_of(s) != Role::Worker && state_of(s) != StepState::Running
    });
    if joined || !target_ok {
        return false;
    }
    for s in plan.steps.iter_mut() {
        if role_of(s) == Role::Init && s.node_id != to {
            s.removed = true;
        }
    }
    if let Some(s) = plan.steps.iter_mut().find(|s| s.node_id == to) {
        *s = PlanStep {
            role: Role::Init as i32,
            order: 0,
            ..pending(s)
        };
    }
    true
}

/// Longest error text kept in a step.
pub const MAX_ERROR_CHARS: usize = 512;

/// The plan's init step: the one that counts (after a `muster plan reinit`, the new one), else
/// a removed one (an init host removed after it succeeded still counts as done).
pub fn init_step(plan: &Plan) -> Option<&PlanStep> {
    let inits = || plan.steps.iter().filter(|s| role_of(s) == Role::Init);
    inits().find(|s| !s.removed).or_else(|| inits().next())
}

/// The step of `id`, if the plan has one.
pub fn step_of(plan: &Plan, id: NodeId) -> Option<&PlanStep> {
    plan.steps.iter().find(|s| s.node_id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, voter: bool) -> Member {
        Member {
            id,
            name: format!("h{id}"),
            voter,
            ..Default::default()
        }
    }

    fn progress(id: u64, state: StepState, attempt: u32) -> StepProgress {
        StepProgress {
            node_id: id,
            state: state as i32,
            attempt,
            unix_ms: 10,
            error: "boom".into(),
            secrets: None,
        }
    }

    fn five() -> Plan {
        let members = vec![
            member(1, true),
            member(2, true),
            member(3, true),
            member(4, false),
            member(5, false),
        ];
        checked_plan(&make_steps(&members, 2), 1, 7, 0).expect("valid")
    }

    fn roles(plan: &Plan) -> Vec<(u64, Role)> {
        plan.steps.iter().map(|s| (s.node_id, role_of(s))).collect()
    }

    #[test]
    fn the_leader_inits_voters_join_the_control_plane_learners_are_workers() {
        let plan = five();
        assert_eq!(
            roles(&plan),
            vec![
                (2, Role::Init),
                (1, Role::ControlPlane),
                (3, Role::ControlPlane),
                (4, Role::Worker),
                (5, Role::Worker)
            ]
        );
        assert_eq!(eligible(&plan), vec![2], "init first, alone");
    }

    #[test]
    fn control_plane_joins_run_one_at_a_time_and_workers_in_bounded_parallel() {
        let mut plan = five();
        assert!(
            !apply_progress(&mut plan, &progress(1, StepState::Running, 1)),
            "cp before init"
        );
        assert!(apply_progress(
            &mut plan,
            &progress(2, StepState::Running, 1)
        ));
        assert_eq!(eligible(&plan), vec![2], "nothing else while init runs");
        assert!(apply_progress(
            &mut plan,
            &progress(2, StepState::Succeeded, 1)
        ));
        assert_eq!(
            eligible(&plan),
            vec![1, 4],
            "first cp and one worker (parallelism 1)"
        );
        assert!(apply_progress(
            &mut plan,
            &progress(1, StepState::Running, 1)
        ));
        assert!(
            !apply_progress(&mut plan, &progress(3, StepState::Running, 1)),
            "second cp waits"
        );
        assert!(apply_progress(
            &mut plan,
            &progress(4, StepState::Running, 1)
        ));
        assert!(
            !apply_progress(&mut plan, &progress(5, StepState::Running, 1)),
            "worker slots full"
        );
        assert!(apply_progress(
            &mut plan,
            &progress(1, StepState::Failed, 1)
        ));
        assert_eq!(step_of(&plan, 1).unwrap().last_error, "boom");
        assert!(
            !apply_progress(&mut plan, &progress(3, StepState::Running, 1)),
            "a failed cp still blocks the next"
        );
        assert!(
            apply_progress(&mut plan, &progress(1, StepState::Running, 2)),
            "retry"
        );
        assert!(apply_progress(
            &mut plan,
            &progress(1, StepState::Succeeded, 2)
        ));
        assert!(apply_progress(
            &mut plan,
            &progress(3, StepState::Running, 1)
        ));
        let before = roles(&plan);
        // A late member becomes a worker; no role ever changed.
        let late = new_workers(&plan, &[member(9, false), member(1, true)]);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].order, 2);
        plan.steps.extend(late);
        assert_eq!(&roles(&plan)[..5], &before[..]);
    }

    #[test]
    fn stale_and_out_of_order_reports_change_nothing() {
        let mut plan = five();
        assert!(apply_progress(
            &mut plan,
            &progress(2, StepState::Running, 1)
        ));
        // A resumed attempt after a crash: attempt 2 while 1 runs.
        assert!(apply_progress(
            &mut plan,
            &progress(2, StepState::Running, 2)
        ));
        // The old attempt's result arrives late: ignored.
        assert!(!apply_progress(
            &mut plan,
            &progress(2, StepState::Succeeded, 1)
        ));
        assert!(apply_progress(
            &mut plan,
            &progress(2, StepState::Succeeded, 2)
        ));
        let done = plan.clone();
        for p in [
            progress(2, StepState::Running, 3),
            progress(2, StepState::Failed, 2),
            progress(77, StepState::Running, 1),
        ] {
            assert!(!apply_progress(&mut plan, &p));
        }
        assert_eq!(plan, done, "a succeeded step is final");
    }

    #[test]
    fn operators_retry_failed_steps_and_skip_stuck_ones() {
        use muster_proto::{PlanAction, PlanActionKind};
        let act = |id, kind: PlanActionKind| PlanAction {
            node_id: id,
            kind: kind as i32,
        };
        let mut plan = five();
        assert!(
            !apply_action(&mut plan, &act(2, PlanActionKind::Retry)),
            "nothing to retry"
        );
        assert!(apply_progress(
            &mut plan,
            &progress(2, StepState::Running, 1)
        ));
        assert!(
            !apply_action(&mut plan, &act(2, PlanActionKind::Skip)),
            "a running step is not skipped"
        );
        assert!(apply_progress(
            &mut plan,
            &progress(2, StepState::Failed, 1)
        ));
        assert!(apply_action(&mut plan, &act(2, PlanActionKind::Retry)));
        let s = step_of(&plan, 2).unwrap();
        assert_eq!((s.retry_from, s.finished_unix_ms), (1, 0));
        assert!(apply_action(&mut plan, &act(2, PlanActionKind::Skip)));
        assert!(step_of(&plan, 2).unwrap().skipped);
        assert_eq!(
            eligible(&plan),
            vec![1, 4],
            "the plan goes on after a skipped init"
        );
        assert_eq!(roles(&plan)[0], (2, Role::Init), "roles unchanged");
    }

    #[test]
    fn malformed_plans_are_refused() {
        let members = vec![member(1, true), member(2, true)];
        let mut two_inits = make_steps(&members, 1);
        two_inits[1].role = Role::Init as i32;
        assert!(checked_plan(&two_inits, 3, 0, 0).is_none());
        let mut dup = make_steps(&members, 1);
        dup[1].node_id = 1;
        assert!(checked_plan(&dup, 3, 0, 0).is_none());
        let mut unknown = make_steps(&members, 1);
        unknown[1].role = 42;
        assert!(checked_plan(&unknown, 3, 0, 0).is_none());
        assert!(
            checked_plan(&make_steps(&members, 9), 3, 0, 0).is_none(),
            "leader not a member: no init"
        );
    }

    #[test]
    fn removed_hosts_stop_counting_and_leave_control_plane_slots() {
        let mut plan = five();
        assert_eq!(plan.control_plane_target, 3);
        assert!(apply_progress(
            &mut plan,
            &progress(2, StepState::Running, 1)
        ));
        assert!(apply_progress(
            &mut plan,
            &progress(2, StepState::Succeeded, 1)
        ));
        let duty_done = |plan: &mut Plan, id: u64| {
            let p = |state: StepState| muster_proto::RemovalProgress {
                node_id: id,
                state: state as i32,
                attempt: 1,
                runner_id: 9,
                ..Default::default()
            };
            assert!(apply_removal_progress(plan, &p(StepState::Running)));
            assert!(apply_removal_progress(plan, &p(StepState::Succeeded)));
            assert!(
                !apply_removal_progress(plan, &p(StepState::Running)),
                "done is done"
            );
        };
        // The init host removed after it succeeded: the joins go on once its duty (its etcd
        // member removed, say) is done.
        assert!(apply_removed(&mut plan, &member(2, true)));
        assert!(!apply_removed(&mut plan, &member(2, true)), "once");
        assert_eq!(plan.removals.len(), 1);
        assert_eq!(open_control_plane_slots(&plan), 1);
        assert!(!eligible(&plan).contains(&1), "waits for the duty");
        duty_done(&mut plan, 2);
        assert!(eligible(&plan).contains(&1));
        // A control-plane host removed before its join: the next one goes first, again only once
        // the duty is done.
        assert!(apply_removed(&mut plan, &member(1, true)));
        assert!(!eligible(&plan).contains(&3), "waits for the duty");
        duty_done(&mut plan, 1);
        assert!(eligible(&plan).contains(&3));
        // Two slots: the next two members to join take the control-plane role, then workers.
        let late = vec![member(6, false), member(7, false), member(8, false)];
        let fresh: Vec<(u64, Role)> = new_workers(&plan, &late)
            .iter()
            .map(|s| (s.node_id, role_of(s)))
            .collect();
        assert_eq!(
            fresh,
            vec![
                (6, Role::ControlPlane),
                (7, Role::ControlPlane),
                (8, Role::Worker)
            ]
        );
    }

    #[test]
    fn an_operator_gives_an_open_control_plane_slot_to_a_spare() {
        let mut plan = five();
        let pinned = |id, pin: RolePin| Member {
            role_pin: pin as i32,
            ..member(id, false)
        };
        assert!(
            !promote(&mut plan, &member(4, false)),
            "no slot open: nothing to give"
        );
        assert!(apply_removed(&mut plan, &member(1, true)));
        assert!(
            !promote(&mut plan, &pinned(6, RolePin::Worker)),
            "a worker-pinned host never runs a control plane"
        );
        // Worker 4 started: its role is fixed.
        assert!(apply_progress(
            &mut plan,
            &progress(2, StepState::Running, 1)
        ));
        assert!(apply_progress(
            &mut plan,
            &progress(2, StepState::Succeeded, 1)
        ));
        assert!(apply_progress(
            &mut plan,
            &progress(4, StepState::Running, 1)
        ));
        assert!(!promote(&mut plan, &member(4, false)), "a started step");
        // Worker 5 has not started: it takes the slot, after the existing joins.
        assert!(promote(&mut plan, &member(5, false)));
        let s = step_of(&plan, 5).unwrap();
        assert_eq!((role_of(s), s.order), (Role::ControlPlane, 2));
        assert_eq!(open_control_plane_slots(&plan), 0);
        assert!(
            !promote(&mut plan, &pinned(6, RolePin::ControlPlane)),
            "one slot, given once"
        );
        // A member without a step (a control-plane-pinned spare) takes a slot as a new step.
        assert!(apply_removed(&mut plan, &member(3, true)));
        assert!(promote(&mut plan, &pinned(6, RolePin::ControlPlane)));
        assert_eq!(step_of(&plan, 6).map(role_of), Some(Role::ControlPlane));
        assert!(new_workers(&plan, &[member(7, false)])
            .iter()
            .all(|s| role_of(s) == Role::Worker));
    }
}
