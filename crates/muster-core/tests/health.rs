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
