//! Scenario tests of `muster remove` over the in-memory site: what an operator checks after
//! removing a worker, a voter, the leader, or a host that was down — the host is out of the
//! membership, refused at the connection by every member, says it was removed, and the cluster
//! keeps `control_plane_count` voters where it has learners to promote.

use std::collections::BTreeSet;

use muster_core::testnet::TestNet;
use muster_core::{NodeId, RemoveError};
use muster_proto::{Role, StepState};

fn site(seed: u64, n: usize) -> (TestNet, Vec<NodeId>) {
    TestNet::formed_site(seed, n, |c| c.vip = true)
}

fn leader(net: &TestNet, ids: &[NodeId]) -> NodeId {
    net.node(ids[0]).leader_id()
}

fn voters(net: &TestNet, at: NodeId) -> BTreeSet<NodeId> {
    net.node(at)
        .cluster_state()
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect()
}

/// Runs until every host but `gone` agrees on the members without it and 3 voters, and `gone`
/// (if up and it was up when removed: `learns`) says it was removed.
fn assert_removed(net: &mut TestNet, ids: &[NodeId], gone: NodeId) {
    assert_removed_as(net, ids, gone, true)
}

fn assert_removed_as(net: &mut TestNet, ids: &[NodeId], gone: NodeId, learns: bool) {
    let rest: Vec<NodeId> = ids.iter().copied().filter(|i| *i != gone).collect();
    let want: BTreeSet<NodeId> = rest.iter().copied().collect();
    let ok = net.run_until(20_000, |net| {
        let l = net.node(rest[0]).leader_id();
        rest.contains(&l)
            && rest.iter().all(|id| {
                let n = net.node(*id);
                let members: BTreeSet<NodeId> =
                    n.cluster_state().members.iter().map(|m| m.id).collect();
                n.leader_id() == l && members == want && voters(net, *id).len() == 3.min(rest.len())
            })
            && (!learns || !net.is_up(gone) || net.node(gone).status().phase == "removed")
    });
    assert!(
        ok.is_some(),
        "removed, cluster intact with its voters:\n{}",
        net.describe()
    );
    for id in &rest {
        let s = net.node(*id).status();
        assert!(
            s.removed.iter().any(|r| r.id == gone),
            "{} lists the removed host",
            s.node_name
        );
        assert!(
            net.denied.contains(&(*id, gone)),
            "refused at the connection"
        );
    }
    assert!(net.max_vip_holders <= 1);
}

#[test]
fn removing_a_worker_asked_of_a_follower() {
    let (mut net, ids) = site(1, 5);
    let l = leader(&net, &ids);
    let learner = *ids
        .iter()
        .find(|id| !voters(&net, l).contains(id))
        .expect("a learner");
    let follower = *ids
        .iter()
        .find(|id| **id != l && **id != learner)
        .expect("a follower");
    let name = net.node(learner).status().node_name;
    let r = net.remove(follower, &name).expect("removal asked");
    assert_eq!((r.id, r.leader), (learner, l));
    assert_removed(&mut net, &ids, learner);
    // It stays out: its connections are refused, it never rejoins.
    let refused = net.refused_connections;
    net.run_for(5_000);
    assert!(
        net.refused_connections > refused,
        "the removed host is refused"
    );
    assert_eq!(net.node(learner).status().phase, "removed");
    // After a power cycle of the whole site too.
    for id in &ids {
        net.crash(*id);
    }
    net.run_for(500);
    for id in &ids {
        net.start(*id);
    }
    assert_removed(&mut net, &ids, learner);
}

#[test]
fn removing_a_voter_promotes_a_learner() {
    let (mut net, ids) = site(2, 5);
    let l = leader(&net, &ids);
    let voter = *voters(&net, l)
        .iter()
        .find(|id| **id != l)
        .expect("a follower voter");
    net.remove(l, &format!("{voter:016x}"))
        .expect("asked of the leader");
    assert_removed(&mut net, &ids, voter);
}

#[test]
fn removing_the_leader_hands_leadership_over_first() {
    let (mut net, ids) = site(3, 5);
    let l = leader(&net, &ids);
    net.remove(l, &format!("{l:016x}"))
        .expect("asked of the leader itself");
    assert_removed(&mut net, &ids, l);
}

#[test]
fn a_host_removed_while_down_is_refused_when_it_comes_back() {
    let (mut net, ids) = site(4, 5);
    let l = leader(&net, &ids);
    let learner = *ids
        .iter()
        .find(|id| !voters(&net, l).contains(id))
        .expect("a learner");
    net.crash(learner);
    net.remove(l, &format!("{learner:016x}")).expect("asked");
    net.run_for(5_000);
    net.start(learner);
    // Down when it was removed, it cannot learn it (every member refuses it at the connection);
    // it sees no leader, and it never gets back in.
    assert_removed_as(&mut net, &ids, learner, false);
    let cluster = net.node(l).cluster_id();
    net.run_for(10_000);
    // It never became a member again and the others never let it in.
    for id in ids.iter().filter(|i| **i != learner) {
        let n = net.node(*id);
        assert_eq!(n.cluster_id(), cluster);
        assert!(n.cluster_state().members.iter().all(|m| m.id != learner));
    }
    assert_eq!(net.node(learner).leader_id(), 0, "it follows nobody");
}

#[test]
fn a_wiped_removed_box_joins_as_a_new_host() {
    let (mut net, ids) = site(5, 4);
    let l = leader(&net, &ids);
    let gone = *ids.iter().find(|id| **id != l).expect("a follower");
    net.remove(l, &format!("{gone:016x}")).expect("asked");
    assert_removed(&mut net, &ids, gone);
    net.crash(gone);
    // `muster reset`: a new identity on the same box.
    let fresh = net.add_host("h1-again", |c| {
        c.expected_nodes = 4;
        c.vip = true;
    });
    net.start(fresh);
    let mut want: BTreeSet<NodeId> = ids.iter().copied().filter(|i| *i != gone).collect();
    want.insert(fresh);
    assert!(
        net.run_until(20_000, |net| net.formed(&want, 3)).is_some(),
        "the new identity joined"
    );
}

#[test]
fn bad_removals_are_clear_errors() {
    let (mut net, ids) = site(6, 3);
    let l = leader(&net, &ids);
    assert_eq!(
        net.remove(l, "nosuchhost"),
        Err(RemoveError::NotAMember("nosuchhost".into()))
    );
    let gone = *ids.iter().find(|id| **id != l).expect("a follower");
    net.remove(l, &format!("{gone:016x}")).expect("asked");
    net.run_for(3_000);
    assert!(matches!(
        net.remove(l, &format!("{gone:016x}")),
        Err(RemoveError::AlreadyRemoved(_) | RemoveError::NotAMember(_))
    ));
}

/// A control-plane host lost for good is replaced end to end: `muster remove` gives the leader
/// a removal duty (the site's `remove_command`, run once, e.g. `etcdctl member remove`), its
/// step no longer counts, and the next host that joins takes the control-plane role, starting
/// only after the duty succeeded; the host after it is a worker again. I3 holds throughout.
#[test]
fn a_lost_control_plane_host_is_replaced_by_the_next_host_that_joins() {
    let (mut net, ids) = TestNet::formed_site(41, 5, |c| {
        c.vip = true;
        c.plan = true;
    });
    let all_done = |net: &TestNet, at: NodeId| {
        net.node(at).cluster_state().plan.as_ref().is_some_and(|p| {
            p.steps
                .iter()
                .filter(|s| !s.removed)
                .all(|s| s.state == StepState::Succeeded as i32)
        })
    };
    assert!(net.run_until(30_000, |net| all_done(net, ids[0])).is_some());
    let plan = net.node(ids[0]).cluster_state().plan.clone().expect("plan");
    let leader = net.node(ids[0]).leader_id();
    let lost = plan
        .steps
        .iter()
        .find(|s| s.role == Role::ControlPlane as i32 && s.node_id != leader)
        .expect("a control-plane follower")
        .node_id;
    net.crash(lost);
    net.remove(leader, &muster_core::format_id(lost))
        .expect("removal");
    let duty_done = net.run_until(10_000, |net| {
        net.node(leader)
            .cluster_state()
            .plan
            .as_ref()
            .is_some_and(|p| {
                p.removals.len() == 1
                    && p.removals[0].node_id == lost
                    && p.removals[0].state == StepState::Succeeded as i32
            })
    });
    assert!(
        duty_done.is_some(),
        "the remove command ran:\n{}",
        net.describe()
    );
    assert_eq!(
        net.removal_runs.len(),
        1,
        "run once: {:?}",
        net.removal_runs
    );
    assert_eq!(net.removal_runs[0].1, leader, "by the leader");

    let fresh = net.add_host("h5", |c| {
        c.vip = true;
        c.plan = true;
        c.expected_nodes = 5;
    });
    net.start(fresh);
    let replaced = net.run_until(30_000, |net| {
        let l = net.node(ids[0]).leader_id();
        l != 0
            && net.node(l).cluster_state().plan.as_ref().is_some_and(|p| {
                p.steps.iter().any(|s| {
                    s.node_id == fresh
                        && s.role == Role::ControlPlane as i32
                        && s.state == StepState::Succeeded as i32
                })
            })
    });
    assert!(
        replaced.is_some(),
        "the new host joined the control plane:\n{}",
        net.describe()
    );
    let duty_at = net.removal_runs[0].0;
    let start = net
        .install_runs
        .iter()
        .find(|r| r.1 == fresh)
        .expect("the new host ran its step");
    assert!(start.0 > duty_at, "the replacement started after the duty");
    let later = net.add_host("h6", |c| {
        c.vip = true;
        c.plan = true;
        c.expected_nodes = 5;
    });
    net.start(later);
    let worker = net.run_until(30_000, |net| {
        net.node(ids[0])
            .cluster_state()
            .plan
            .as_ref()
            .is_some_and(|p| {
                p.steps
                    .iter()
                    .any(|s| s.node_id == later && s.role == Role::Worker as i32)
            })
    });
    assert!(
        worker.is_some(),
        "the next host is a worker:\n{}",
        net.describe()
    );
    net.check_i3().expect("I3");
}

/// `muster remove NODE --spare SPARE`: the operator names which of two control-plane spares
/// takes the lost host's slot (the next host to join would otherwise get it); a spare that
/// cannot take it is refused with the reason, and nothing is removed.
#[test]
fn an_operator_names_the_spare_that_replaces_a_lost_control_plane_host() {
    let (mut net, ids) = TestNet::formed_site(43, 5, |c| {
        c.vip = true;
        c.plan = true;
    });
    let done = |net: &TestNet, at: NodeId, id: NodeId| {
        net.node(at).cluster_state().plan.as_ref().is_some_and(|p| {
            p.steps
                .iter()
                .any(|s| s.node_id == id && s.state == StepState::Succeeded as i32)
        })
    };
    assert!(net
        .run_until(30_000, |net| ids.iter().all(|id| done(net, ids[0], *id)))
        .is_some());
    let spare = |net: &mut TestNet, name: &str| {
        let id = net.add_host(name, |c| {
            c.vip = true;
            c.plan = true;
            c.expected_nodes = 5;
            c.role_pin = muster_proto::RolePin::ControlPlane;
        });
        net.start(id);
        id
    };
    let (first, second) = (spare(&mut net, "spare-a"), spare(&mut net, "spare-b"));
    let members = |net: &TestNet| net.node(ids[0]).cluster_state().members.len();
    assert!(net.run_until(20_000, |net| members(net) == 7).is_some());
    net.run_for(2_000);
    let plan = net.node(ids[0]).cluster_state().plan.clone().expect("plan");
    assert!(
        plan.steps
            .iter()
            .all(|s| s.node_id != first && s.node_id != second),
        "spares have no step while the control plane is full"
    );
    let leader = net.node(ids[0]).leader_id();
    let step_of = |id: NodeId| plan.steps.iter().find(|s| s.node_id == id).cloned();
    let lost = plan
        .steps
        .iter()
        .find(|s| s.role == Role::ControlPlane as i32 && s.node_id != leader)
        .expect("a control-plane follower")
        .node_id;
    let worker = plan
        .steps
        .iter()
        .find(|s| s.role == Role::Worker as i32)
        .expect("a worker")
        .node_id;
    assert!(step_of(worker).is_some());
    // A worker whose step succeeded cannot become a control-plane host.
    let refused = net.remove_with_spare(
        leader,
        &muster_core::format_id(lost),
        Some(&muster_core::format_id(worker)),
    );
    assert!(
        matches!(&refused, Err(muster_core::RemoveError::SpareRefused { reason, .. }) if reason.contains("already started")),
        "{refused:?}"
    );
    // Removing a worker opens no control-plane slot.
    let refused = net.remove_with_spare(leader, &muster_core::format_id(worker), Some("spare-b"));
    assert!(
        matches!(&refused, Err(muster_core::RemoveError::SpareRefused { reason, .. }) if reason.contains("opens no control-plane slot")),
        "{refused:?}"
    );
    assert!(
        net.node(leader).cluster_state().removed.is_empty(),
        "nothing removed"
    );
    net.crash(lost);
    net.remove_with_spare(leader, &muster_core::format_id(lost), Some("spare-b"))
        .expect("removal with a named spare");
    let replaced = net.run_until(30_000, |net| done(net, ids[0], second));
    assert!(replaced.is_some(), "spare-b joined:\n{}", net.describe());
    let plan = net.node(ids[0]).cluster_state().plan.clone().expect("plan");
    let role = |id: NodeId| plan.steps.iter().find(|s| s.node_id == id).map(|s| s.role);
    assert_eq!(role(second), Some(Role::ControlPlane as i32));
    assert_eq!(role(first), None, "the other spare stays a spare");
    // Once the lost host is out of raft, the voter it leaves goes to the named spare, a
    // control-plane host (not to the other spare, nor to a worker).
    let promoted = net.run_until(10_000, |net| {
        let v = voters(net, ids[0]);
        !v.contains(&lost) && v.len() == 3
    });
    assert!(promoted.is_some(), "{}", net.describe());
    assert!(
        voters(&net, ids[0]).contains(&second),
        "voters {:?}, named spare {second}",
        voters(&net, ids[0])
    );
    net.check_i3().expect("I3");
}

/// Mixed versions: one member runs an agent that announces protocol 1 (it would ignore the
/// newer commands and its plan would part from the others'). A removal naming a spare is
/// refused, naming that member; the same removal without `--spare` goes ahead.
#[test]
fn a_spare_is_refused_while_a_member_runs_an_older_agent() {
    let (mut net, ids) = TestNet::formed_site(44, 4, |c| {
        c.vip = true;
        c.plan = true;
    });
    // A follower runs the older agent: the leader learns it from its hellos.
    let first_leader = leader(&net, &ids);
    let old = *ids
        .iter()
        .find(|&&i| i != first_leader)
        .expect("a follower");
    net.crash(old);
    let old_cfg = |c: &mut muster_core::NodeConfig| c.announce_protocol_for_tests = 1;
    net.reconfigure(old, old_cfg);
    net.start(old);
    net.run_for(3_000);
    let leader = leader(&net, &ids);
    assert_ne!(leader, old, "the older host does not lead here");
    let lost = *ids
        .iter()
        .find(|&&i| i != leader && i != old)
        .expect("another host");
    let refused = net.remove_with_spare(
        leader,
        &muster_core::format_id(lost),
        Some(&muster_core::format_id(old)),
    );
    let old_name = net.node(old).status().node_name;
    assert!(
        matches!(&refused, Err(muster_core::RemoveError::SpareNeedsNewerAgents(b)) if b.contains(&old_name) && b.contains("protocol 1")),
        "{refused:?}"
    );
    net.remove(leader, &muster_core::format_id(lost))
        .expect("without --spare");
}
