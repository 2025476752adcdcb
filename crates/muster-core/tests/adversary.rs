//! Scenario tests with an adversary that holds the site key (it connects) but was never admitted:
//! one test per attack of the trust model (`shared/DESIGN.md`, I5). Each attack must be dropped
//! and counted, and the formed site must keep its cluster id, members, a leader and its commit
//! index, never have two VIP holders, and come back the same after a power cycle.

// raft-rs's rust-protobuf 2 types are built by assigning fields to a default value.
#![allow(clippy::field_reassign_with_default)]

use std::collections::BTreeSet;

use muster_core::testnet::TestNet;
use muster_core::NodeId;
use muster_proto::envelope::Body;
use muster_proto::{Envelope, Hello, RaftMessage};
use protobuf::Message as _;
use raft::prelude::{Entry, EntryType, Message, MessageType};

/// What an operator would check about a site before and after an attack.
struct Seen {
    cluster: u64,
    members: BTreeSet<NodeId>,
    commit: Vec<u64>,
}

fn formed_site(seed: u64, n: usize) -> (TestNet, Vec<NodeId>, Seen) {
    let (net, ids) = TestNet::formed_site(seed, n, |c| c.vip = true);
    let seen = seen(&net, &ids);
    (net, ids, seen)
}

fn seen(net: &TestNet, ids: &[NodeId]) -> Seen {
    let n0 = net.node(ids[0]);
    Seen {
        cluster: n0.cluster_id(),
        members: n0.cluster_state().members.iter().map(|m| m.id).collect(),
        commit: ids
            .iter()
            .map(|id| net.node(*id).status().commit_index)
            .collect(),
    }
}

fn leader(net: &TestNet, ids: &[NodeId]) -> NodeId {
    let l = net.node(ids[0]).leader_id();
    assert!(ids.contains(&l), "a member leads");
    l
}

fn follower(net: &TestNet, ids: &[NodeId]) -> NodeId {
    let l = leader(net, ids);
    *ids.iter().find(|id| **id != l).expect("a follower")
}

/// The site is as it was: same cluster and members everywhere, a member leads, commit not lower,
/// never two VIP holders; then every host is power-cycled and the same holds again.
fn assert_intact(net: &mut TestNet, ids: &[NodeId], before: &Seen) {
    net.run_for(3_000);
    let check = |net: &TestNet, when: &str| {
        let want = before.members.clone();
        assert!(
            net.formed(&want, 3.min(ids.len())),
            "{when}: one cluster, one leader, all members"
        );
        assert_eq!(
            net.clusters(),
            BTreeSet::from([before.cluster]),
            "{when}: cluster id kept"
        );
        for (id, c) in ids.iter().zip(&before.commit) {
            let s = net.node(*id).status();
            assert!(s.commit_index >= *c, "{when}: commit index went back");
            assert!(s.formed_unix_ms != 0 && s.locked, "{when}: still formed");
        }
        assert!(net.max_vip_holders <= 1, "{when}: never two VIP holders");
    };
    check(net, "after the attack");
    for id in ids {
        net.crash(*id);
    }
    net.run_for(1_000);
    for id in ids {
        net.start(*id);
    }
    let want = before.members.clone();
    let n = ids.len();
    assert!(
        net.run_until(20_000, |net| net.formed(&want, 3.min(n)))
            .is_some(),
        "re-formed after a power cycle"
    );
    net.run_for(3_000);
    check(net, "after a power cycle");
}

fn raft(cluster: u64, from: NodeId, to: NodeId, t: MessageType, term: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(t);
    m.from = from;
    m.to = to;
    m.term = term;
    let _ = cluster;
    m
}

fn envelope(cluster: u64, m: &Message) -> Envelope {
    Envelope {
        body: Some(Body::Raft(RaftMessage {
            cluster_id: cluster,
            message: m.write_to_bytes().expect("encodes"),
        })),
    }
}

fn term_of(net: &TestNet, id: NodeId) -> u64 {
    net.node(id).status().term
}

fn dropped(net: &TestNet, id: NodeId, reason: &str) -> u64 {
    net.node(id).drops().count(reason)
}

/// An adversary connected to every host of the site.
fn adversary(net: &mut TestNet, ids: &[NodeId]) -> (NodeId, Vec<u8>) {
    let (adv, pk) = net.add_adversary(None);
    for id in ids {
        net.connect_adversary(adv, *id);
    }
    (adv, pk)
}

#[test]
fn an_empty_proposal_does_not_crash_the_leader_and_bad_entries_are_never_replicated() {
    let (mut net, ids, before) = formed_site(1, 3);
    let (adv, _) = adversary(&mut net, &ids);
    let l = leader(&net, &ids);
    let term = term_of(&net, l);
    // raft-rs reaches a fatal!() on an empty MsgPropose.
    let empty = raft(before.cluster, adv, l, MessageType::MsgPropose, term);
    net.inject(adv, l, envelope(before.cluster, &empty));
    // An entry that no member can apply (a V1 conf change): the site would stop at every restart.
    let mut bad = raft(before.cluster, adv, l, MessageType::MsgPropose, term);
    let mut e = Entry::default();
    e.set_entry_type(EntryType::EntryConfChange);
    e.data = vec![0xff; 16].into();
    bad.mut_entries().push(e);
    net.inject(adv, l, envelope(before.cluster, &bad));
    assert_eq!(
        dropped(&net, l, "raft message type never sent between hosts"),
        2
    );
    assert_intact(&mut net, &ids, &before);
}

#[test]
fn a_higher_term_append_heartbeat_or_snapshot_from_a_non_member_is_ignored() {
    let (mut net, ids, before) = formed_site(2, 3);
    let (adv, _) = adversary(&mut net, &ids);
    let f = follower(&net, &ids);
    let l = leader(&net, &ids);
    let term = term_of(&net, f);
    let mut append = raft(before.cluster, adv, f, MessageType::MsgAppend, term + 5);
    append.index = 1_000;
    append.log_term = term + 5;
    append.commit = 2_000;
    let mut e = Entry::default();
    e.term = term + 5;
    e.index = 1_001;
    append.mut_entries().push(e);
    let heartbeat = raft(before.cluster, adv, f, MessageType::MsgHeartbeat, term + 6);
    let mut snap = raft(before.cluster, adv, f, MessageType::MsgSnapshot, term + 7);
    snap.mut_snapshot().mut_metadata().index = 5_000;
    snap.mut_snapshot().mut_metadata().term = term + 7;
    for m in [&append, &heartbeat, &snap] {
        net.inject(adv, f, envelope(before.cluster, m));
    }
    assert_eq!(term_of(&net, f), term, "the follower's term did not move");
    assert_eq!(net.node(f).leader_id(), l, "it still follows its leader");
    assert_eq!(dropped(&net, f, "raft message from a non-member"), 3);
    assert_intact(&mut net, &ids, &before);
}

#[test]
fn a_term_pushed_towards_2_62_is_refused_and_every_store_reopens() {
    let (mut net, ids, before) = formed_site(3, 3);
    let (adv, _) = adversary(&mut net, &ids);
    for id in ids.clone() {
        let vote = raft(
            before.cluster,
            adv,
            id,
            MessageType::MsgRequestVote,
            1 << 62,
        );
        net.inject(adv, id, envelope(before.cluster, &vote));
        let hb = raft(
            before.cluster,
            adv,
            id,
            MessageType::MsgHeartbeat,
            (1 << 62) + 1,
        );
        net.inject(adv, id, envelope(before.cluster, &hb));
        assert!(term_of(&net, id) < 1_000, "term stayed small");
    }
    assert_intact(&mut net, &ids, &before);
}

#[test]
fn timeout_now_from_a_non_member_forces_no_election() {
    let (mut net, ids, before) = formed_site(4, 3);
    let (adv, _) = adversary(&mut net, &ids);
    let f = follower(&net, &ids);
    let term = term_of(&net, f);
    let m = raft(before.cluster, adv, f, MessageType::MsgTimeoutNow, term);
    net.inject(adv, f, envelope(before.cluster, &m));
    net.run_for(50);
    assert_eq!(term_of(&net, f), term, "no election was forced");
    assert_eq!(dropped(&net, f, "raft message from a non-member"), 1);
    assert_intact(&mut net, &ids, &before);
}

#[test]
fn a_forged_read_index_response_does_not_move_a_follower() {
    let (mut net, ids, before) = formed_site(5, 3);
    let (adv, _) = adversary(&mut net, &ids);
    let f = follower(&net, &ids);
    let term = term_of(&net, f);
    let commit = net.node(f).status().commit_index;
    let mut m = raft(before.cluster, adv, f, MessageType::MsgReadIndexResp, term);
    m.index = commit + 10_000;
    m.commit = commit + 10_000;
    net.inject(adv, f, envelope(before.cluster, &m));
    assert!(net.node(f).status().commit_index <= commit + 5);
    assert_eq!(dropped(&net, f, "raft message from a non-member"), 1);
    assert_intact(&mut net, &ids, &before);
}

#[test]
fn raft_messages_claiming_a_members_id_are_dropped() {
    let (mut net, ids, before) = formed_site(6, 3);
    let (adv, _) = adversary(&mut net, &ids);
    let l = leader(&net, &ids);
    let f = follower(&net, &ids);
    let term = term_of(&net, f);
    // The body claims to come from the leader; the connection says otherwise.
    let m = raft(before.cluster, l, f, MessageType::MsgAppend, term + 1);
    net.inject(adv, f, envelope(before.cluster, &m));
    assert_eq!(term_of(&net, f), term);
    assert_eq!(
        dropped(&net, f, "raft message with forged or misdirected ids"),
        1
    );
    // Garbage and deep nesting (RUSTSEC-2024-0437) are refused by the bounded decoder.
    let mut deep = [0xa3u8, 0x01].repeat(50_000);
    deep.extend([0xa4, 0x01].repeat(50_000));
    for bytes in [vec![0xff; 64], deep] {
        net.inject(
            adv,
            f,
            Envelope {
                body: Some(Body::Raft(RaftMessage {
                    cluster_id: before.cluster,
                    message: bytes,
                })),
            },
        );
    }
    assert_eq!(dropped(&net, f, "undecodable raft message"), 2);
    assert_intact(&mut net, &ids, &before);
}

fn hello(pk: &[u8], name: &str, cluster: u64, members: u32) -> Hello {
    let id = muster_core::node_id_from_public_key(pk);
    Hello {
        name: name.into(),
        address: "10.9.9.9:7946".into(),
        cluster_id: cluster,
        member_count: members,
        leader_id: if cluster == 0 { 0 } else { id },
        member_ids: Vec::new(),
        public_key: pk.to_vec(),
        locked: true,
        vip_held: false,
        formed: cluster != 0,
        // An outsider claiming a healthy API server: no leader ever hands over to it.
        api_health: muster_proto::ApiHealth::Healthy as i32,
        agent_version: String::new(),
        protocol: muster_core::PROTOCOL,
        // Claims to stay reachable for weeks without a word (believed up to a bound).
        hello_interval_ms: u32::MAX,
    }
}

fn say(net: &mut TestNet, adv: NodeId, ids: &[NodeId], h: &Hello) {
    for id in ids {
        net.inject(
            adv,
            *id,
            Envelope {
                body: Some(Body::Hello(h.clone())),
            },
        );
    }
}

#[test]
fn a_hello_claiming_a_bigger_cluster_does_not_dissolve_a_formed_site() {
    let (mut net, ids, before) = formed_site(7, 3);
    let (adv, pk) = adversary(&mut net, &ids);
    let big = hello(&pk, "big", 0x00c0_ffee, 1_000);
    for _ in 0..20 {
        say(&mut net, adv, &ids, &big);
        net.run_for(500);
    }
    for id in &ids {
        let s = net.node(*id).status();
        assert_eq!(s.cluster_id, before.cluster, "not dissolved");
        assert!(
            s.site_conflict.contains("0000000000c0ffee"),
            "the conflict is shown: {:?}",
            s.site_conflict
        );
    }
    assert_intact(&mut net, &ids, &before);
}

#[test]
fn a_squatter_with_the_lowest_id_cannot_hold_formation_up() {
    let mut net = TestNet::new(8);
    let ids: Vec<NodeId> = (0..3)
        .map(|i| {
            net.add_host(&format!("h{i}"), |c| {
                c.expected_nodes = 3;
                c.settle_ms = 2_000;
            })
        })
        .collect();
    let mut low = [0u8; 32];
    low[7] = 2;
    let (adv, pk) = net.add_adversary(Some(low));
    assert!(
        ids.iter().all(|id| *id > adv),
        "the squatter has the lowest id"
    );
    for id in &ids {
        net.start(*id);
    }
    for id in &ids {
        net.connect_adversary(adv, *id);
    }
    let squat = hello(&pk, "squat", 0, 0);
    let want: BTreeSet<NodeId> = ids.iter().copied().collect();
    let mut formed_at = None;
    for step in 0..60 {
        say(&mut net, adv, &ids, &squat);
        net.run_for(250);
        if net.formed(&want, 3) {
            formed_at = Some(step * 250);
            break;
        }
    }
    let t = formed_at.expect("formed despite the squatter");
    // settle 2 s + grace 2 s + forming.
    assert!(t <= 6_000, "formed after {t} ms");
}

#[test]
fn a_cluster_that_never_admits_anyone_is_given_up() {
    let mut net = TestNet::new(9);
    let ids: Vec<NodeId> = (0..3)
        .map(|i| net.add_host(&format!("h{i}"), |c| c.expected_nodes = 3))
        .collect();
    let (adv, pk) = net.add_adversary(None);
    for id in &ids {
        net.start(*id);
    }
    for id in &ids {
        net.connect_adversary(adv, *id);
    }
    let bait = hello(&pk, "bait", 0x0bad, 50);
    let want: BTreeSet<NodeId> = ids.iter().copied().collect();
    let mut formed = false;
    for _ in 0..160 {
        say(&mut net, adv, &ids, &bait);
        net.run_for(250);
        if net.formed(&want, 3) {
            formed = true;
            break;
        }
    }
    assert!(formed, "formed after giving up on the bait cluster");
    assert!(net.clusters().iter().all(|c| *c != 0x0bad));
}

#[test]
fn malformed_and_oversized_hellos_are_dropped_and_tables_stay_bounded() {
    let (mut net, ids, before) = formed_site(10, 3);
    let (adv, pk) = adversary(&mut net, &ids);
    let mut long_name = hello(&pk, "x", 0, 0);
    long_name.name = "x".repeat(10_000);
    let mut escape = hello(&pk, "x", 0, 0);
    escape.name = "evil\u{1b}[2J".into();
    let mut huge_list = hello(&pk, "x", 0, 0);
    huge_list.member_ids = (1..=100_000).collect();
    let mut wrong_key = hello(&pk, "x", 0, 0);
    wrong_key.public_key = vec![7; 32];
    for h in [&long_name, &escape, &huge_list, &wrong_key] {
        say(&mut net, adv, &ids, h);
    }
    let f = follower(&net, &ids);
    assert_eq!(dropped(&net, f, "hello with an invalid name"), 2);
    assert_eq!(dropped(&net, f, "hello listing too many members"), 1);
    assert_eq!(
        dropped(&net, f, "hello whose public key is not the sender's"),
        1
    );
    // Many identities, each listing thousands of made-up hosts.
    for k in 0..(muster_core::MAX_PEERS + 200) {
        let (a, pk) = net.add_adversary(None);
        net.connect_adversary(a, f);
        let mut h = hello(&pk, "many", 0, 0);
        if k < 4 {
            h.member_ids = (0..4_000).map(|i| (k as u64) << 32 | i).collect();
        }
        net.inject(
            a,
            f,
            Envelope {
                body: Some(Body::Hello(h)),
            },
        );
    }
    let (peers, known) = net.node(f).table_sizes();
    assert!(peers <= muster_core::MAX_PEERS, "peers {peers}");
    assert!(known <= muster_core::MAX_KNOWN_HOSTS, "known hosts {known}");
    assert!(dropped(&net, f, "peer table full") >= 200);
    assert_intact(&mut net, &ids, &before);
}

#[test]
fn vote_requests_from_a_non_member_win_nothing() {
    let (mut net, ids, before) = formed_site(11, 3);
    let (adv, _) = adversary(&mut net, &ids);
    for id in ids.clone() {
        let term = term_of(&net, id);
        for t in [MessageType::MsgRequestPreVote, MessageType::MsgRequestVote] {
            let mut m = raft(before.cluster, adv, id, t, term + 3);
            m.index = 1 << 40;
            m.log_term = term + 3;
            net.inject(adv, id, envelope(before.cluster, &m));
        }
        assert_eq!(term_of(&net, id), term);
    }
    assert_intact(&mut net, &ids, &before);
}

/// Peers naming ever better clusters (every 20 ms) keep a joining host switching; when they stop,
/// it switches to the one honest-looking cluster left, 1 s before its 3 s admission timeout. The
/// timeout distrusts the switchers, not that cluster's advertiser: it had no fair chance to
/// admit us, so the host goes on asking it (an honest cluster would admit it then; the simulator's
/// `adversary` scenario had a host distrust its own site's members this way and never rejoin).
#[test]
fn a_cluster_switched_to_just_before_the_admission_timeout_is_still_asked() {
    let mut net = TestNet::new(21);
    let h = net.add_host("h", |c| {
        c.expected_nodes = 3;
        c.settle_ms = 60_000;
    });
    net.start(h);
    net.run_for(600);
    let (switcher, switcher_pk) = net.add_adversary(None);
    let (stable, stable_pk) = net.add_adversary(None);
    for adv in [switcher, stable] {
        net.connect_adversary(adv, h);
    }
    let say = |net: &mut TestNet, adv: NodeId, hello: Hello| {
        net.inject(
            adv,
            h,
            Envelope {
                body: Some(Body::Hello(hello)),
            },
        )
    };
    let modest = Hello {
        locked: false,
        ..hello(&stable_pk, "modest", 0x0000_0000_00c1_05e0, 2)
    };
    for i in 0..100u64 {
        say(
            &mut net,
            switcher,
            hello(&switcher_pk, "switcher", 0xbad0 + i, 10_000),
        );
        if i % 5 == 0 {
            say(&mut net, stable, modest.clone());
        }
        net.run_for(20);
    }
    // The switcher falls silent about clusters; the modest cluster is the best left.
    say(&mut net, switcher, hello(&switcher_pk, "switcher", 0, 0));
    let joins_to_stable = |net: &TestNet| {
        net.adversaries[&stable]
            .iter()
            .filter(|(_, e)| matches!(e.body, Some(Body::JoinRequest(_))))
            .count()
    };
    for _ in 0..10 {
        say(&mut net, stable, modest.clone());
        say(&mut net, switcher, hello(&switcher_pk, "switcher", 0, 0));
        net.run_for(100);
    }
    // 3 s after the attempt began: the timeout has passed.
    let at_timeout = joins_to_stable(&net);
    assert!(at_timeout > 0, "the host asked the modest cluster");
    for _ in 0..6 {
        say(&mut net, stable, modest.clone());
        say(&mut net, switcher, hello(&switcher_pk, "switcher", 0, 0));
        net.run_for(100);
    }
    assert!(
        joins_to_stable(&net) > at_timeout,
        "after the timeout the host still asks the cluster it switched to 1 s before it"
    );
}
