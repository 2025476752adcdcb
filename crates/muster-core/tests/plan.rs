//! Scenario tests of the join plan over the in-memory site (install steps are simulated by
//! `TestNet`: each run takes `install_ms`, some fail on demand): what an operator checks — every
//! step succeeded, the init host was the leader, control-plane joins ran one at a time after the
//! init, workers after it — and invariant I3 across leader crashes, power cycles and failures.

use std::collections::BTreeSet;

use muster_core::testnet::TestNet;
use muster_core::NodeId;
use muster_proto::{Role, StepState};

fn site(seed: u64, n: usize) -> (TestNet, Vec<NodeId>) {
    TestNet::formed_site(seed, n, |c| {
        c.vip = true;
        c.plan = true;
        c.install_retry_ms = 300;
    })
}

fn steps(net: &TestNet, at: NodeId) -> Vec<(NodeId, Role, StepState, u32)> {
    net.node(at)
        .cluster_state()
        .plan
        .as_ref()
        .map(|p| {
            p.steps
                .iter()
                .map(|s| {
                    (
                        s.node_id,
                        Role::try_from(s.role).unwrap_or(Role::Unspecified),
                        StepState::try_from(s.state).unwrap_or(StepState::Pending),
                        s.attempts,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn all_done(net: &TestNet, at: NodeId, n: usize) -> bool {
    let s = steps(net, at);
    s.len() == n && s.iter().all(|(_, _, st, _)| *st == StepState::Succeeded)
}

fn run_to_done(net: &mut TestNet, ids: &[NodeId], limit_ms: u64) {
    let n = ids.len();
    let done = net.run_until(limit_ms, |net| {
        net.up_ids().iter().all(|id| all_done(net, *id, n))
    });
    assert!(
        done.is_some(),
        "plan did not complete:\n{}\nsteps: {:?}",
        net.describe(),
        steps(net, net.up_ids()[0])
    );
    net.check_i3().expect("I3");
}

#[test]
fn five_hosts_install_in_order_with_the_leader_as_init() {
    let (mut net, ids) = site(1, 5);
    let leader = net.node(ids[0]).leader_id();
    run_to_done(&mut net, &ids, 30_000);
    let plan = steps(&net, ids[0]);
    let init: Vec<NodeId> = plan
        .iter()
        .filter(|s| s.1 == Role::Init)
        .map(|s| s.0)
        .collect();
    assert_eq!(
        init,
        vec![leader],
        "the leader at plan time is the init host"
    );
    let count = |r: Role| plan.iter().filter(|s| s.1 == r).count();
    assert_eq!(
        (count(Role::ControlPlane), count(Role::Worker)),
        (2, 2),
        "the other voters join the control plane, the learners are workers"
    );
    // Every run, in start order: the init first; each control-plane run started after the
    // previous one's result.
    let order: Vec<Role> = net.install_runs.iter().map(|r| r.2).collect();
    assert_eq!(order[0], Role::Init);
    assert_eq!(net.install_runs.len(), 5, "one run each, no failures");
    let status = net.node(ids[2]).status();
    let p = status.plan.expect("plan in status");
    assert!(p
        .steps
        .iter()
        .all(|s| s.finished_unix_ms >= s.started_unix_ms));
}

#[test]
fn a_leader_killed_mid_plan_never_causes_a_second_init() {
    let (mut net, ids) = site(2, 5);
    net.install_ms = 1_000;
    // Let the init finish and the first control-plane join start, then kill the leader.
    let started = net.run_until(20_000, |net| {
        net.install_runs.iter().any(|r| r.2 == Role::ControlPlane)
    });
    assert!(started.is_some(), "a control-plane join started");
    let leader = net.node(ids[0]).leader_id();
    net.crash(leader);
    net.run_for(3_000);
    net.start(leader);
    run_to_done(&mut net, &ids, 60_000);
    let inits: BTreeSet<NodeId> = net
        .install_runs
        .iter()
        .filter(|r| r.2 == Role::Init)
        .map(|r| r.1)
        .collect();
    assert_eq!(inits.len(), 1, "one init host ever");
}

#[test]
fn a_failing_step_is_retried_with_backoff_until_it_succeeds() {
    let (mut net, ids) = site(3, 3);
    let leader = net.node(ids[0]).leader_id();
    let cp = *ids.iter().find(|id| **id != leader).expect("a joiner");
    net.fail_installs.insert(cp, 2);
    // While it fails, status shows the error and the attempts.
    let seen_failed = net.run_until(20_000, |net| {
        steps(net, leader)
            .iter()
            .any(|s| s.0 == cp && s.2 == StepState::Failed)
    });
    assert!(seen_failed.is_some(), "the failure is visible");
    let s = net.node(leader).status().plan.expect("plan");
    let step = s.steps.iter().find(|s| s.node_id == cp).expect("step");
    assert!(
        step.last_error.contains("status 1"),
        "{:?}",
        step.last_error
    );
    run_to_done(&mut net, &ids, 30_000);
    let step = steps(&net, leader)
        .into_iter()
        .find(|s| s.0 == cp)
        .expect("step");
    assert_eq!(step.3, 3, "two failures, then success on the third attempt");
}

#[test]
fn a_whole_site_power_cycle_mid_plan_resumes_running_steps() {
    let (mut net, ids) = site(4, 4);
    net.install_ms = 2_000;
    let running = net.run_until(20_000, |net| !net.install_runs.is_empty());
    assert!(running.is_some());
    net.run_for(500);
    for id in &ids {
        net.crash(*id);
    }
    net.run_for(1_000);
    for id in &ids {
        net.start(*id);
    }
    run_to_done(&mut net, &ids, 60_000);
    // The step that was running when power went was run again (resumed), not marked done.
    let first = net.install_runs[0].1;
    let runs_of_first = net.install_runs.iter().filter(|r| r.1 == first).count();
    assert!(runs_of_first >= 2, "the interrupted step was re-run");
}

/// A step that used up its attempts stays failed (the plan waits) until an operator retries it
/// from any member; a step that cannot succeed can be skipped so the plan goes on.
#[test]
fn operators_retry_an_exhausted_step_and_skip_a_hopeless_one() {
    use muster_proto::PlanActionKind;
    let (mut net, ids) = TestNet::formed_site(6, 4, |c| {
        c.vip = true;
        c.plan = true;
        c.install_retry_ms = 100;
        c.max_install_attempts = 2;
    });
    let leader = net.node(ids[0]).leader_id();
    let cp = *ids.iter().find(|id| **id != leader).expect("a joiner");
    let follower = *ids
        .iter()
        .find(|id| **id != leader && **id != cp)
        .expect("another");
    net.fail_installs.insert(cp, 3);
    let failed_for_good = |net: &TestNet| {
        steps(net, leader)
            .iter()
            .any(|s| s.0 == cp && s.2 == StepState::Failed && s.3 == 2)
    };
    assert!(net.run_until(20_000, failed_for_good).is_some());
    net.run_for(3_000);
    assert!(
        failed_for_good(&net),
        "no third attempt without an operator"
    );
    let name = net.node(cp).status().node_name;
    net.plan_action(follower, &name, PlanActionKind::Retry)
        .expect("retry asked of a follower");
    // Attempt 3 fails too (3 failures injected), attempt 4 succeeds.
    run_to_done(&mut net, &ids, 30_000);
    let step = steps(&net, leader)
        .into_iter()
        .find(|s| s.0 == cp)
        .expect("step");
    assert_eq!(step.3, 4);
    // Asking to retry a succeeded step is a clear error.
    let e = net
        .plan_action(leader, &name, PlanActionKind::Retry)
        .unwrap_err();
    assert!(e.to_string().contains("succeeded"), "{e}");

    // Skip: a worker whose hook always fails is skipped; its step counts as done.
    let late = net.add_host("late", |c| {
        c.expected_nodes = 4;
        c.vip = true;
        c.plan = true;
        c.install_retry_ms = 100;
        c.max_install_attempts = 2;
    });
    net.fail_installs.insert(late, 100);
    net.start(late);
    let stuck = net.run_until(20_000, |net| {
        steps(net, leader)
            .iter()
            .any(|s| s.0 == late && s.2 == StepState::Failed && s.3 == 2)
    });
    assert!(stuck.is_some(), "the late worker failed for good");
    net.plan_action(leader, "late", PlanActionKind::Skip)
        .expect("skip");
    let mut all = ids.clone();
    all.push(late);
    run_to_done(&mut net, &all, 10_000);
    let status = net.node(leader).status().plan.expect("plan");
    assert!(status.steps.iter().any(|s| s.node_id == late && s.skipped));
}

#[test]
fn a_host_that_joins_later_is_appended_as_a_worker() {
    let (mut net, ids) = site(5, 3);
    run_to_done(&mut net, &ids, 30_000);
    let late = net.add_host("late", |c| {
        c.expected_nodes = 3;
        c.vip = true;
        c.plan = true;
    });
    net.start(late);
    let mut all = ids.clone();
    all.push(late);
    run_to_done(&mut net, &all, 30_000);
    let s = steps(&net, ids[0]);
    assert!(s.iter().any(|x| x.0 == late && x.1 == Role::Worker));
}

/// A host that joins without `[kubernetes]` in its config (a mismatched image) still gets a
/// worker step; it fails at once, saying why, instead of looking busy forever.
#[test]
fn a_host_without_kubernetes_config_fails_its_step_saying_why() {
    let (mut net, ids) = site(6, 3);
    run_to_done(&mut net, &ids, 30_000);
    let odd = net.add_host("odd", |c| {
        c.expected_nodes = 3;
        c.vip = true;
        c.plan = false;
    });
    net.start(odd);
    let failed = net.run_until(30_000, |net| {
        steps(net, ids[0])
            .iter()
            .any(|s| s.0 == odd && s.2 == StepState::Failed)
    });
    assert!(failed.is_some(), "{}", net.describe());
    let plan = net.node(ids[0]).cluster_state().plan.clone().expect("plan");
    let step = plan.steps.iter().find(|s| s.node_id == odd).expect("step");
    assert!(
        step.last_error.contains("no [kubernetes] section"),
        "{}",
        step.last_error
    );
    assert!(
        !net.install_runs.iter().any(|r| r.1 == odd),
        "no hook ran there"
    );
}

/// `muster plan start`: a site configured for 3 hosts that only ever gets 2 forms a cluster but
/// never locks, forms or plans — until an operator, asking any member, goes ahead with the
/// members there are; then the plan covers both and completes. Asking again is refused.
#[test]
fn an_operator_goes_ahead_with_fewer_hosts_than_expected() {
    let mut net = TestNet::new(31);
    let ids: Vec<NodeId> = (0..2)
        .map(|i| {
            net.add_host(&format!("h{i}"), |c| {
                c.expected_nodes = 3;
                c.settle_ms = 1_000;
                c.vip = true;
                c.plan = true;
            })
        })
        .collect();
    for id in &ids {
        net.start(*id);
    }
    let want: BTreeSet<NodeId> = ids.iter().copied().collect();
    assert!(net.run_until(20_000, |net| net.formed(&want, 2)).is_some());
    net.run_for(10_000);
    assert!(!net.node(ids[0]).site_formed(), "not formed with 2 of 3");
    assert!(
        net.node(ids[0]).cluster_state().plan.is_none(),
        "no plan with 2 of 3"
    );

    let leader = net.node(ids[0]).leader_id();
    let follower = *ids.iter().find(|id| **id != leader).expect("a follower");
    let asked = net
        .plan_action(follower, "", muster_proto::PlanActionKind::Start)
        .expect("start is forwarded to the leader");
    assert_eq!(asked.leader, leader);
    run_to_done(&mut net, &ids, 30_000);
    assert!(net.node(ids[1]).site_formed());
    let e = net
        .plan_action(follower, "", muster_proto::PlanActionKind::Start)
        .unwrap_err();
    assert_eq!(e, muster_core::PlanActionError::AlreadyFormed);
}

/// `muster plan reinit --to NODE`: the init host's hook keeps failing (a bad disk, say); an
/// operator names another control-plane host as the init: it becomes the init (leading, so the
/// endpoint and the first API server coincide), the old init step stops counting, and the rest
/// of the plan follows. Once a control-plane join succeeded, a reinit is refused, saying why.
#[test]
fn an_operator_reinitialises_on_another_host_only_before_any_join() {
    let (mut net, ids) = TestNet::formed_site(32, 3, |c| {
        c.vip = true;
        c.plan = true;
        c.install_retry_ms = 200;
        c.max_install_attempts = 2;
    });
    let leader = net.node(ids[0]).leader_id();
    net.fail_installs.insert(leader, 100);
    let failed = net.run_until(20_000, |net| {
        steps(net, ids[0])
            .iter()
            .any(|s| s.0 == leader && s.1 == Role::Init && s.2 == StepState::Failed && s.3 == 2)
    });
    assert!(
        failed.is_some(),
        "the init failed for good:\n{}",
        net.describe()
    );
    let to = *ids.iter().find(|id| **id != leader).expect("another host");
    let asked = net
        .plan_action(
            to,
            &muster_core::format_id(to),
            muster_proto::PlanActionKind::Reinit,
        )
        .expect("reinit before any join");
    assert_eq!(asked.id, to);
    let done = net.run_until(30_000, |net| {
        let s = steps(net, ids[1]);
        s.iter()
            .any(|x| x.0 == to && x.1 == Role::Init && x.2 == StepState::Succeeded)
            && net
                .node(ids[1])
                .cluster_state()
                .plan
                .as_ref()
                .is_some_and(|p| {
                    p.steps
                        .iter()
                        .filter(|s| !s.removed)
                        .all(|s| s.state == StepState::Succeeded as i32)
                })
    });
    assert!(
        done.is_some(),
        "the plan completed after the reinit:\n{}",
        net.describe()
    );
    let inits: BTreeSet<NodeId> = net
        .install_runs
        .iter()
        .filter(|r| r.2 == Role::Init)
        .map(|r| r.1)
        .collect();
    assert_eq!(
        inits,
        [leader, to].into_iter().collect(),
        "exactly the asked-for second init"
    );
    let plan = net.node(ids[1]).cluster_state().plan.clone().expect("plan");
    assert!(plan.steps.iter().any(|s| s.node_id == leader && s.removed));
    // A control-plane join succeeded: no more reinits.
    let e = net
        .plan_action(
            to,
            &muster_core::format_id(leader),
            muster_proto::PlanActionKind::Reinit,
        )
        .unwrap_err();
    assert!(
        matches!(&e, muster_core::PlanActionError::ReinitRefused { .. }),
        "{e}"
    );
    let third = *ids
        .iter()
        .find(|id| **id != leader && **id != to)
        .expect("third");
    let e = net
        .plan_action(
            to,
            &muster_core::format_id(third),
            muster_proto::PlanActionKind::Reinit,
        )
        .unwrap_err();
    assert!(e.to_string().contains("already succeeded"), "{e}");
}

/// `[node] roles`: in a 6-host site with 3 control-plane hosts wanted, the two hosts pinned to
/// workers never join the control plane (never promoted to voter) and the fourth host pinned to
/// the control plane waits as a spare without a step; when a control-plane host is removed, the
/// spare takes its slot.
#[test]
fn pinned_roles_are_kept_and_a_spare_takes_a_freed_slot() {
    let mut net = TestNet::new(33);
    let pins = [
        muster_proto::RolePin::Worker,
        muster_proto::RolePin::Worker,
        muster_proto::RolePin::ControlPlane,
        muster_proto::RolePin::ControlPlane,
        muster_proto::RolePin::ControlPlane,
        muster_proto::RolePin::ControlPlane,
    ];
    let ids: Vec<NodeId> = pins
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let p = *p;
            net.add_host(&format!("h{i}"), move |c| {
                c.expected_nodes = 6;
                c.vip = true;
                c.plan = true;
                c.role_pin = p;
            })
        })
        .collect();
    for id in &ids {
        net.start(*id);
    }
    let pin_of = |id: NodeId| pins[ids.iter().position(|x| *x == id).expect("known")];
    let planned = net.run_until(30_000, |net| {
        net.up_ids().iter().any(|id| {
            net.node(*id)
                .cluster_state()
                .plan
                .as_ref()
                .is_some_and(|p| {
                    p.steps
                        .iter()
                        .all(|s| s.state == StepState::Succeeded as i32)
                        && p.steps.len() == 5
                })
        })
    });
    assert!(planned.is_some(), "plan completed:\n{}", net.describe());
    let at = net.node(ids[2]).leader_id();
    let plan = net.node(at).cluster_state().plan.clone().expect("plan");
    for s in &plan.steps {
        let p = pin_of(s.node_id);
        if p == muster_proto::RolePin::Worker {
            assert_eq!(
                s.role,
                Role::Worker as i32,
                "worker-pinned {} is a worker",
                s.name
            );
        }
        if p == muster_proto::RolePin::ControlPlane {
            assert_ne!(
                s.role,
                Role::Worker as i32,
                "cp-pinned {} is no worker",
                s.name
            );
        }
    }
    let spare = *ids
        .iter()
        .find(|id| !plan.steps.iter().any(|s| s.node_id == **id))
        .expect("one host without a step");
    assert_eq!(
        pin_of(spare),
        muster_proto::RolePin::ControlPlane,
        "the spare is cp-pinned"
    );
    for m in &net.node(at).cluster_state().members {
        if pin_of(m.id) == muster_proto::RolePin::Worker {
            assert!(!m.voter, "a worker-pinned host is never a voter");
        }
    }
    // A control-plane host that does not lead is removed: the spare takes the slot.
    let gone = plan
        .steps
        .iter()
        .find(|s| s.role == Role::ControlPlane as i32 && s.node_id != at)
        .expect("a control-plane follower")
        .node_id;
    net.crash(gone);
    net.remove(at, &muster_core::format_id(gone))
        .expect("removal");
    let took = net.run_until(30_000, |net| {
        let l = net.node(ids[2]).leader_id();
        l != 0
            && net.node(l).cluster_state().plan.as_ref().is_some_and(|p| {
                p.steps.iter().any(|s| {
                    s.node_id == spare
                        && s.role == Role::ControlPlane as i32
                        && s.state == StepState::Succeeded as i32
                })
            })
    });
    assert!(
        took.is_some(),
        "the spare took the slot:\n{}",
        net.describe()
    );
}

/// kubeadm's uploaded certificates expire two hours after the init: a control-plane host that
/// comes back three hours later joins only after the leader uploaded them again under a fresh
/// key, and a failed join is retried only after a fresh upload too.
#[test]
fn late_and_retried_control_plane_joins_wait_for_a_fresh_certificate_upload() {
    const H: u64 = 60 * 60 * 1_000;
    let (mut net, ids) = TestNet::formed_site(11, 3, |c| {
        c.plan = true;
        c.install_retry_ms = 300;
        c.certificate_key_refresh_ms = muster_core::certs::KUBEADM_REFRESH_MS;
    });
    let leader = net.node(ids[0]).leader_id();
    let plan_of = |net: &TestNet| net.node(leader).cluster_state().plan.clone();
    net.run_until(10_000, |net| plan_of(net).is_some())
        .expect("a plan");
    let order = steps(&net, leader);
    let (first, last) = (order[1].0, order[2].0);
    assert_eq!(
        (order[1].1, order[2].1),
        (Role::ControlPlane, Role::ControlPlane)
    );
    // The last control-plane host is away; the first one's join fails once.
    net.crash(last);
    net.fail_installs.insert(first, 1);
    net.run_until(30_000, |net| {
        steps(net, leader)
            .iter()
            .any(|s| s.0 == first && s.2 == StepState::Succeeded)
    })
    .expect("the first join succeeds on its retry");
    let runs_of = |net: &TestNet, host: NodeId| -> Vec<u64> {
        net.install_runs
            .iter()
            .filter(|r| r.1 == host)
            .map(|r| r.0)
            .collect()
    };
    let first_runs = runs_of(&net, first);
    assert_eq!(first_runs.len(), 2, "{first_runs:?}");
    assert_eq!(net.upload_runs.len(), 1, "{:?}", net.upload_runs);
    let (at, runner, ..) = net.upload_runs[0];
    assert_eq!(runner, leader, "the leader (the init host) uploads");
    assert!(
        first_runs[0] < at && at < first_runs[1],
        "the retry came after a fresh upload: runs {first_runs:?}, upload at {at}"
    );
    // Three hours on the wall clock later (the leader sees the upload expire while the host is
    // away: the margin before kubeadm's two hours is for the join itself), the last host comes
    // back.
    net.wall_offset_ms = 3 * H;
    net.run_for(1_000);
    net.start(last);
    run_to_done(&mut net, &ids, 60_000);
    assert_eq!(net.upload_runs.len(), 2, "{:?}", net.upload_runs);
    let last_runs = runs_of(&net, last);
    assert!(
        net.upload_runs[1].0 < last_runs[0],
        "the late join came after a fresh upload"
    );
    let plan = plan_of(&net).expect("plan");
    assert!(plan.refreshed_secrets.is_some());
    assert!(plan.certificates_uploaded_unix_ms >= 3 * H);
}
