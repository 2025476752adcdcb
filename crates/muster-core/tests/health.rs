//! Scenario tests of the endpoint following a healthy API server (`health.rs`) over the
//! in-memory site: what an operator relies on — once Kubernetes runs, a leader whose local API
//! server stays unhealthy while another control-plane host's is healthy hands leadership, and
//! with it the VIP, to that host; with no healthy host to go to, nothing moves; a healthy leader
//! never hands over; the VIP never has two holders (I2).

use muster_core::testnet::TestNet;
use muster_core::NodeId;
use muster_proto::StepState;

/// A formed 3-host site whose plan has completed (every host ran its step).
fn installed(seed: u64) -> (TestNet, Vec<NodeId>) {
    let (mut net, ids) = TestNet::formed_site(seed, 3, |c| {
        c.vip = true;
        c.plan = true;
    });
    let done = net.run_until(30_000, |net| {
        net.up_ids().iter().all(|id| {
            net.node(*id)
                .cluster_state()
                .plan
                .as_ref()
                .is_some_and(|p| {
                    p.steps.len() == 3
                        && p.steps
                            .iter()
                            .all(|s| s.state == StepState::Succeeded as i32)
                })
        })
    });
    assert!(done.is_some(), "plan completed:\n{}", net.describe());
    (net, ids)
}

fn leader(net: &TestNet, ids: &[NodeId]) -> NodeId {
    net.node(ids[0]).leader_id()
}

#[test]
fn an_unhealthy_leader_hands_the_endpoint_to_a_healthy_control_plane_host() {
    let (mut net, ids) = installed(21);
    let old = leader(&net, &ids);
    for &id in &ids {
        net.set_api_health(id, id != old);
    }
    let moved = net.run_until(10_000, |net| {
        let l = net.node(ids[0]).leader_id();
        l != 0 && l != old && net.vip_holders.contains(&l)
    });
    let took = moved.unwrap_or_else(|| panic!("leadership stayed:\n{}", net.describe()));
    assert!(
        (2_000..6_000).contains(&took),
        "handed over after the 2 s grace, promptly: {took} ms"
    );
    assert!(net.max_vip_holders <= 1, "I2");
    // The new leader is healthy: it keeps the endpoint.
    let new = leader(&net, &ids);
    net.run_for(10_000);
    assert_eq!(leader(&net, &ids), new, "no flapping");
}

#[test]
fn with_no_healthy_host_to_go_to_or_a_healthy_leader_nothing_moves() {
    let (mut net, ids) = installed(22);
    let old = leader(&net, &ids);
    // Everyone unhealthy: the endpoint stays where it is.
    for &id in &ids {
        net.set_api_health(id, false);
    }
    net.run_for(10_000);
    assert_eq!(leader(&net, &ids), old);
    assert!(net.vip_holders.contains(&old));
    // The leader healthy, the others not: nothing moves either.
    net.set_api_health(old, true);
    net.run_for(10_000);
    assert_eq!(leader(&net, &ids), old);
}

/// A control-plane host removed: raft promotes a learner — a worker — to voter, and it may come
/// to lead. A leader that runs no control plane hands the endpoint to a healthy control-plane
/// host, so the VIP never stays on a worker while a real API server is available.
#[test]
fn a_worker_that_comes_to_lead_hands_the_endpoint_to_a_control_plane_host() {
    worker_leader_hands_over(23, true);
}

/// The same on a site without health gates: nothing reports API health, and the worker still
/// hands the endpoint to a control-plane host.
#[test]
fn without_health_gates_a_worker_leader_still_hands_over() {
    worker_leader_hands_over(24, false);
}

fn worker_leader_hands_over(seed: u64, gates: bool) {
    let (mut net, ids) = TestNet::formed_site(seed, 5, |c| {
        c.vip = true;
        c.plan = true;
    });
    let done = net.run_until(30_000, |net| {
        net.node(ids[0])
            .cluster_state()
            .plan
            .as_ref()
            .is_some_and(|p| {
                p.steps
                    .iter()
                    .all(|s| s.state == StepState::Succeeded as i32)
                    && p.steps.len() == 5
            })
    });
    assert!(done.is_some(), "plan completed:\n{}", net.describe());
    let plan = net.node(ids[0]).cluster_state().plan.clone().expect("plan");
    let role_of = |id: NodeId| plan.steps.iter().find(|s| s.node_id == id).map(|s| s.role);
    let control_plane: Vec<NodeId> = ids
        .iter()
        .copied()
        .filter(|id| role_of(*id) != Some(muster_proto::Role::Worker as i32))
        .collect();
    if gates {
        for &id in &control_plane {
            net.set_api_health(id, true);
        }
    }
    // Remove a control-plane host that does not lead: a worker is promoted to voter.
    let leader = leader(&net, &ids);
    let gone = *control_plane
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");
    net.remove(leader, &muster_core::format_id(gone))
        .expect("removal");
    let promoted = net.run_until(10_000, |net| {
        net.node(leader)
            .cluster_state()
            .members
            .iter()
            .any(|m| m.voter && role_of(m.id) == Some(muster_proto::Role::Worker as i32))
    });
    assert!(
        promoted.is_some(),
        "a worker became a voter:\n{}",
        net.describe()
    );
    let worker = net
        .node(leader)
        .cluster_state()
        .members
        .iter()
        .find(|m| m.voter && role_of(m.id) == Some(muster_proto::Role::Worker as i32))
        .map(|m| m.id)
        .expect("promoted worker");
    net.run_for(2_000);
    net.transfer(leader, Some(worker))
        .expect("transfer to the worker");
    assert!(
        net.run_until(5_000, |net| net.node(worker).leader_id() == worker)
            .is_some(),
        "the worker leads:\n{}",
        net.describe()
    );
    let back = net.run_until(10_000, |net| {
        let l = net.node(worker).leader_id();
        l != worker && control_plane.contains(&l) && net.vip_holders.contains(&l)
    });
    assert!(
        back.is_some(),
        "the endpoint stayed on a worker:\n{}",
        net.describe()
    );
    assert!(net.max_vip_holders <= 1, "I2");
}
