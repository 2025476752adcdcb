//! Hello tests over the in-memory network (`hello.rs`): outsider hellos thin out in a large site
//! and announce their interval; receivers follow the announced interval, so a peer whose hellos
//! thin out stays reachable; news (a new host, a cluster joined) still goes at once; peers that
//! announce no interval (older agents) keep the old schedule.

use muster_core::testnet::TestNet;
use muster_core::NodeId;
use muster_proto::envelope::Body;
use muster_proto::{Envelope, Hello};

/// `n` hosts that never form (they expect more hosts than there are and never settle), all
/// started; `tune` adjusts every config.
fn unformed_site(
    seed: u64,
    n: usize,
    tune: impl Fn(&mut muster_core::NodeConfig),
) -> (TestNet, Vec<NodeId>) {
    let mut net = TestNet::new(seed);
    let ids: Vec<NodeId> = (0..n)
        .map(|i| {
            net.add_host(&format!("h{i}"), |c| {
                c.expected_nodes = 10 * n;
                c.settle_ms = 3_600_000;
                tune(c);
            })
        })
        .collect();
    for id in &ids {
        net.start(*id);
    }
    (net, ids)
}

/// A hello an adversary (a host with the key, never admitted) says about itself.
fn hello_of(pk: &[u8], interval_ms: u32) -> Envelope {
    Envelope {
        body: Some(Body::Hello(Hello {
            name: "outsider".into(),
            address: "10.9.9.9:7946".into(),
            public_key: pk.to_vec(),
            protocol: muster_core::PROTOCOL,
            hello_interval_ms: interval_ms,
            ..Default::default()
        })),
    }
}

/// The hellos `from` sent the adversary so far.
fn hellos_to(net: &TestNet, adv: NodeId, from: NodeId) -> Vec<Hello> {
    net.adversaries[&adv]
        .iter()
        .filter(|(f, _)| *f == from)
        .filter_map(|(_, e)| match &e.body {
            Some(Body::Hello(h)) => Some(h.clone()),
            _ => None,
        })
        .collect()
}

/// 130 hosts see 129 outsiders each: one hello per 64 of them per interval, so each outsider is
/// greeted every 3 intervals (1.5 s) and told so — but an outsider whose hellos announce no
/// interval (an older agent, which times outsiders out after its own 3 s) every interval still.
/// With a `peer_timeout_ms` of 1 s, a fixed receiver rule would count every peer unreachable
/// between hellos; the announced interval keeps them reachable.
#[test]
fn outsider_hellos_thin_out_in_a_large_site_and_peers_stay_reachable() {
    let (mut net, ids) = unformed_site(1, 130, |c| c.peer_timeout_ms = 1_000);
    let h0 = ids[0];
    let (new_agent, new_pk) = net.add_adversary(None);
    let (old_agent, old_pk) = net.add_adversary(None);
    net.run_for(1_000);
    for (adv, pk, interval) in [(new_agent, &new_pk, 500), (old_agent, &old_pk, 0)] {
        net.connect_adversary(adv, h0);
        net.inject(adv, h0, hello_of(pk, interval));
    }
    net.run_for(2_000);
    let (new_before, old_before) = (
        hellos_to(&net, new_agent, h0).len(),
        hellos_to(&net, old_agent, h0).len(),
    );
    for _ in 0..60 {
        net.run_for(100);
        // The adversaries keep talking, so they stay reachable themselves.
        for (adv, pk, interval) in [(new_agent, &new_pk, 500), (old_agent, &old_pk, 0)] {
            net.inject(adv, h0, hello_of(pk, interval));
        }
        for a in &ids[..4] {
            for b in &ids {
                assert!(
                    a == b || net.node(*a).reachable(*b),
                    "{a:016x} lost sight of {b:016x} at {} ms",
                    net.now_ms
                );
            }
        }
    }
    let thinned = hellos_to(&net, new_agent, h0);
    let sent = thinned.len() - new_before;
    assert!(
        (3..=5).contains(&sent),
        "{sent} hellos to an outsider in 6 s, not one per 1.5 s"
    );
    assert!(
        thinned[new_before..]
            .iter()
            .all(|h| h.hello_interval_ms == 1_500),
        "each announces 1.5 s: {:?}",
        thinned
            .iter()
            .map(|h| h.hello_interval_ms)
            .collect::<Vec<_>>()
    );
    let old = hellos_to(&net, old_agent, h0).len() - old_before;
    assert!(
        (11..=13).contains(&old),
        "{old} hellos to an older agent in 6 s, not one per 500 ms"
    );
}

/// A peer's silence is judged by the interval its own hellos announce: three of them (or the
/// receiver's `peer_timeout_ms`, if longer). A peer that announces none is judged by the
/// receiver's rule alone, as before the field.
#[test]
fn a_peer_whose_hellos_thin_out_is_not_marked_unreachable() {
    let (mut net, ids) = unformed_site(2, 1, |_| {});
    let h0 = ids[0];
    let (slow, slow_pk) = net.add_adversary(None);
    let (old, old_pk) = net.add_adversary(None);
    net.run_for(500);
    for adv in [slow, old] {
        net.connect_adversary(adv, h0);
    }
    let mut old_unreachable = false;
    for _ in 0..4 {
        net.inject(slow, h0, hello_of(&slow_pk, 2_000));
        net.inject(old, h0, hello_of(&old_pk, 0));
        for _ in 0..40 {
            net.run_for(100);
            assert!(
                net.node(h0).reachable(slow),
                "a peer hello-ing every 4 s, as it announced 2 s (×3 = 6 s), counted unreachable at {} ms",
                net.now_ms
            );
            old_unreachable |= !net.node(h0).reachable(old);
        }
    }
    assert!(
        old_unreachable,
        "a peer announcing no interval is unreachable after peer_timeout_ms (3 s) of silence"
    );
    // Silence beyond three announced intervals counts.
    net.run_for(6_100);
    assert!(!net.node(h0).reachable(slow));
}

/// In a site whose outsider hellos are thinned, a host that comes up is still greeted on
/// connect: every host learns of it within a few ms.
#[test]
fn a_new_host_is_still_learned_of_at_once() {
    let (mut net, ids) = unformed_site(3, 130, |_| {});
    net.run_for(3_000);
    let known = |net: &TestNet| -> Vec<usize> {
        ids.iter().map(|id| net.node(*id).table_sizes().1).collect()
    };
    let before = known(&net);
    assert!(before.iter().all(|k| *k == 130), "all know all: {before:?}");
    let late = net.add_host("late", |c| c.expected_nodes = 1_000);
    net.start(late);
    // Discovery pairs it at its next round (every 250 ms), then hellos take a few ms.
    net.run_for(260);
    assert!(
        known(&net).iter().all(|k| *k == 131),
        "every host learned of the new host at once: {:?}",
        known(&net)
    );
}

/// A host that joins a cluster tells its outsiders at once, not at its next thinned hello.
#[test]
fn a_host_that_joins_tells_its_outsiders_at_once() {
    let mut net = TestNet::new(4);
    let ids: Vec<NodeId> = (0..130)
        .map(|i| net.add_host(&format!("h{i}"), |c| c.expected_nodes = 131))
        .collect();
    for id in &ids {
        net.start(*id);
    }
    // The adversary makes the 131st host the others wait for; it is an outsider of the
    // highest-id host (never the one to bootstrap), and stays so: it never asks to join.
    let h = *ids.iter().max().expect("hosts");
    let (adv, pk) = net.add_adversary(None);
    net.run_for(1_000);
    net.connect_adversary(adv, h);
    for id in &ids {
        net.connect_adversary(adv, *id);
        net.inject(adv, *id, hello_of(&pk, 500));
    }
    let joined_at = net
        .run_until(20_000, |n| n.node(h).cluster_id() != 0)
        .expect("the host joins a cluster");
    let before = hellos_to(&net, adv, h)
        .iter()
        .filter(|x| x.hello_interval_ms > 500)
        .count();
    assert!(before > 0, "its outsider hellos were thinned");
    net.run_for(30);
    let cluster = net.node(h).cluster_id();
    let told = hellos_to(&net, adv, h)
        .iter()
        .any(|x| x.cluster_id == cluster);
    assert!(
        told,
        "an outsider heard of the cluster within 30 ms of the host's join (at {joined_at} ms)"
    );
}

/// Formation keeps its answer to "which cluster is the best I see" between ticks
/// (`formation::VisibleCluster`); a peer that fell silent and then speaks again must count again.
/// A host in no cluster sees one advertiser of a cluster and asks to join it; the advertiser
/// falls silent past the host's peer timeout (still connected), so the host sees no cluster;
/// then it sends a message that is not a hello, and the host must see its cluster again (debug
/// builds also check every answer against a walk of the peer table).
#[test]
fn a_silent_advertiser_that_speaks_again_counts_again_for_joining() {
    let (mut net, ids) = unformed_site(7, 2, |c| c.peer_timeout_ms = 500);
    let h0 = ids[0];
    let (adv, pk) = net.add_adversary(None);
    net.run_for(500);
    net.connect_adversary(adv, h0);
    let mut advert = hello_of(&pk, 100);
    if let Some(Body::Hello(h)) = advert.body.as_mut() {
        h.cluster_id = 0xc1;
        h.member_count = 5;
    }
    net.inject(adv, h0, advert);
    net.run_for(50);
    assert_eq!(
        net.node(h0).status().phase,
        "joining",
        "asks to join the advertised cluster"
    );
    net.run_for(800);
    assert_eq!(
        net.node(h0).status().phase,
        "discovering",
        "a silent advertiser no longer counts"
    );
    net.inject(adv, h0, Envelope { body: None });
    net.run_for(50);
    assert_eq!(
        net.node(h0).status().phase,
        "joining",
        "the advertiser spoke again: its cluster counts again"
    );
}

/// Hellos `from` sent `to` so far.
fn hellos(net: &TestNet, from: NodeId, to: NodeId) -> u64 {
    net.hellos.get(&(from, to)).copied().unwrap_or(0)
}

/// In a formed site nothing changing, the leader and each member exchange raft messages all the
/// time (probes and their answers, a learner's heartbeats), so hellos saying the same again are
/// left out between them — but not between two members with no raft traffic of their own, and
/// not when a hello has news: a member whose API server turns unhealthy tells the leader within
/// a round. Every member stays reachable from every other throughout.
#[test]
fn members_exchanging_raft_messages_send_no_hellos_without_news() {
    let (mut net, ids) = TestNet::formed_site(3, 5, |_| {});
    net.run_for(3_000);
    let leader = net.node(ids[0]).leader_id();
    let others: Vec<NodeId> = ids.iter().copied().filter(|id| *id != leader).collect();
    let count = |net: &TestNet| {
        let to_leader: u64 = others.iter().map(|o| hellos(net, *o, leader)).sum();
        let from_leader: u64 = others.iter().map(|o| hellos(net, leader, *o)).sum();
        let between: u64 = others
            .iter()
            .flat_map(|a| others.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a != b)
            .map(|(a, b)| hellos(net, a, b))
            .sum();
        (to_leader, from_leader, between)
    };
    let before = count(&net);
    net.run_for(10_000);
    let after = count(&net);
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (0, 0),
        "no hellos between the leader and its members over 10 s of nothing new"
    );
    // 4 members, 12 ordered pairs, a round every 1 s: about 120.
    assert!(
        after.2 - before.2 >= 100,
        "members with no raft traffic between them still greet each other: {} hellos",
        after.2 - before.2
    );
    for id in &ids {
        let status = net.node(*id).status();
        assert!(
            status.members.iter().all(|m| m.reachable),
            "every member reachable from {id}: {status:?}"
        );
    }

    // News goes out at the next round.
    let sick = others[0];
    let quiet = hellos(&net, sick, leader);
    net.set_api_health(sick, false);
    net.run_for(1_500);
    let seen = net
        .node(leader)
        .status()
        .members
        .iter()
        .find(|m| m.id == sick)
        .map(|m| m.api_health);
    assert_eq!(seen, Some(muster_proto::ApiHealth::Unhealthy as i32));
    assert!(
        hellos(&net, sick, leader) > quiet,
        "the news went to the leader in a hello"
    );
}
