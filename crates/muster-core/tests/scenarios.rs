//! Scenario tests: whole sites of core nodes over the in-memory network (`testnet`), checking
//! what an operator would check — one cluster, one leader, every host a member, the right number
//! of voters — under staggered boots, lost discovery, partial visibility, restarts and merges.

use std::collections::BTreeSet;

use muster_core::testnet::TestNet;
use muster_core::NodeId;

fn site(
    seed: u64,
    n: usize,
    expected: usize,
    tune: impl Fn(&mut muster_core::NodeConfig),
) -> (TestNet, Vec<NodeId>) {
    let mut net = TestNet::new(seed);
    let ids = (0..n)
        .map(|i| {
            net.add_host(&format!("h{i}"), |c| {
                c.expected_nodes = expected;
                tune(c);
            })
        })
        .collect();
    (net, ids)
}

fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

fn describe(net: &TestNet) -> String {
    net.up_ids()
        .iter()
        .map(|id| {
            let s = net.node(*id).status();
            format!(
                "{} {:016x}: cluster={:016x} leader={:016x} phase={} members={}",
                s.node_name,
                id,
                s.cluster_id,
                s.leader_id,
                s.phase,
                s.members
                    .iter()
                    .map(|m| format!("{}{}", m.name, if m.voter { "*" } else { "" }))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_forms(net: &mut TestNet, members: &[NodeId], voters: usize, limit_ms: u64) -> u64 {
    let want = set(members);
    match net.run_until(limit_ms, |n| n.formed(&want, voters)) {
        Some(t) => t,
        None => panic!("site did not form within {limit_ms} ms:\n{}", describe(net)),
    }
}

#[test]
fn three_hosts_booting_together_form_one_cluster_quickly() {
    for seed in 0..20 {
        let (mut net, ids) = site(seed, 3, 3, |_| {});
        for id in &ids {
            net.start(*id);
        }
        let t = assert_forms(&mut net, &ids, 3, 10_000);
        assert!(
            t < 3_000,
            "seed {seed}: formation took {t} ms of virtual time"
        );
        assert_eq!(net.clusters().len(), 1);
    }
}

/// A host waits `formation_quiet_ms` (500 ms) after boot before it joins or bootstraps, so that
/// a cluster it may have just left stops counting it (`lease.rs`) — unless its identity is new:
/// no cluster can count an id that did not exist. A new site's first boot is not held back.
#[test]
fn a_new_site_forms_without_waiting_out_the_quiet_time() {
    for seed in 0..10 {
        let (mut net, ids) = site(300 + seed, 3, 3, |_| {});
        for id in &ids {
            net.start(*id);
        }
        let t = assert_forms(&mut net, &ids, 3, 10_000);
        assert!(
            t < 500,
            "seed {seed}: a new site took {t} ms of virtual time to form"
        );
    }
}

#[test]
fn staggered_boots_over_minutes_join_the_first_cluster() {
    let (mut net, ids) = site(7, 5, 5, |_| {});
    for (i, id) in ids.iter().enumerate() {
        net.start(*id);
        // The first host waits out its settle period alone, bootstraps; later ones join.
        net.run_for(if i == 0 { 30_000 } else { 20_000 });
        assert_eq!(
            net.clusters().len(),
            1,
            "after host {i}:\n{}",
            describe(&net)
        );
    }
    assert_forms(&mut net, &ids, 3, 20_000);
}

#[test]
fn more_hosts_than_expected_become_learners_beyond_control_plane_count() {
    let (mut net, ids) = site(3, 7, 3, |_| {});
    for id in &ids {
        net.start(*id);
    }
    assert_forms(&mut net, &ids, 3, 20_000);
}

#[test]
fn five_control_plane_voters_when_configured() {
    let (mut net, ids) = site(4, 6, 6, |c| c.control_plane_count = 5);
    for id in &ids {
        net.start(*id);
    }
    assert_forms(&mut net, &ids, 5, 20_000);
}

#[test]
fn lossy_discovery_still_forms_one_cluster() {
    for seed in 0..10 {
        let (mut net, ids) = site(100 + seed, 5, 5, |_| {});
        net.discovery_loss_pct = 70;
        for id in &ids {
            net.start(*id);
        }
        assert_forms(&mut net, &ids, 3, 60_000);
    }
}

#[test]
fn partial_discovery_forms_one_cluster() {
    // A chain: each host sees only its neighbours, so no host sees the expected count at once.
    for seed in 0..10 {
        let (mut net, ids) = site(200 + seed, 5, 5, |_| {});
        for i in 0..ids.len() {
            for j in i + 2..ids.len() {
                net.hide(ids[i], ids[j]);
            }
        }
        for id in &ids {
            net.start(*id);
        }
        let want = set(&ids);
        let ok = net.run_until(60_000, |n| {
            n.clusters().len() == 1
                && n.up_ids().iter().all(|id| {
                    let st = n.node(*id).cluster_state();
                    st.members.iter().map(|m| m.id).collect::<BTreeSet<_>>() == want
                })
        });
        assert!(
            ok.is_some(),
            "seed {seed}: one cluster with every host expected:\n{}",
            describe(&net)
        );
    }
}

/// Cuts the first `split` hosts off from the rest, boots all and lets each side form its own
/// cluster (asserted). Returns the two sides.
fn form_apart<'a>(
    net: &mut TestNet,
    ids: &'a [NodeId],
    split: usize,
) -> (&'a [NodeId], &'a [NodeId]) {
    let (left, right) = ids.split_at(split);
    for a in left {
        for b in right {
            net.cut(*a, *b);
        }
    }
    for id in ids {
        net.start(*id);
    }
    net.run_for(15_000);
    assert_eq!(
        net.clusters().len(),
        2,
        "two sides formed apart:\n{}",
        describe(net)
    );
    (left, right)
}

/// A host the leader admitted but that never took part (here cut off right after its join
/// request; in the simulator's `more-hosts-slow-discovery`, one that joined another cluster
/// meanwhile) is in the membership but answers nothing. The site must not lock on it: a locked
/// cluster never dissolves, so one locked short of `expected_nodes` answering hosts could never
/// form nor merge into the cluster its other hosts should join.
#[test]
fn a_member_that_never_answered_does_not_count_for_the_site_lock() {
    let (mut net, ids) = site(11, 6, 6, |_| {});
    let (first, late) = ids.split_at(5);
    for id in first {
        net.start(*id);
    }
    let five = set(first);
    net.run_until(20_000, |n| {
        n.clusters().len() == 1
            && five
                .iter()
                .all(|id| n.node(*id).status().members.len() == 5)
    })
    .unwrap_or_else(|| panic!("five hosts did not gather:\n{}", describe(&net)));
    let late = late[0];
    net.start(late);
    // Cut the late host off the moment the leader has admitted it, before it can answer.
    let mut admitted = false;
    for _ in 0..20_000 {
        net.run_for(1);
        if first
            .iter()
            .any(|id| net.node(*id).status().members.iter().any(|m| m.id == late))
        {
            admitted = true;
            break;
        }
    }
    assert!(
        admitted,
        "the late host was never admitted:\n{}",
        describe(&net)
    );
    for id in first {
        net.cut(late, *id);
    }
    net.run_for(10_000);
    for id in first {
        let st = net.node(*id).status();
        assert!(
            !st.locked,
            "{} locked the site with a member that never answered:\n{}",
            st.node_name,
            describe(&net)
        );
    }
    net.heal();
    assert_forms(&mut net, &ids, 3, 60_000);
    assert_eq!(net.clusters().len(), 1);
}

/// A locked cluster never dissolves, so a bigger unlocked one must come to it: here three hosts
/// an operator started (`muster plan start`) while four others of the same site, out of sight,
/// gathered without reaching `expected_nodes`. Ranked by members alone, the four would wait for
/// the three to join them, which they never can, and the site would stay two clusters.
#[test]
fn an_unlocked_cluster_joins_a_locked_one_even_when_it_has_more_members() {
    let (mut net, ids) = site(12, 7, 5, |_| {});
    let (four, three) = ids.split_at(4);
    for a in four {
        for b in three {
            net.cut(*a, *b);
        }
    }
    for id in &ids {
        net.start(*id);
    }
    let gathered = |n: &TestNet, group: &[NodeId]| {
        let c = n.node(group[0]).status().cluster_id;
        c != 0
            && group.iter().all(|id| {
                let st = n.node(*id).status();
                st.cluster_id == c && st.members.len() == group.len()
            })
    };
    net.run_until(30_000, |n| gathered(n, four) && gathered(n, three))
        .unwrap_or_else(|| panic!("the groups did not gather:\n{}", describe(&net)));
    net.plan_action(three[0], "", muster_proto::PlanActionKind::Start)
        .expect("plan start");
    net.run_until(10_000, |n| {
        three.iter().all(|id| n.node(*id).status().locked)
    })
    .unwrap_or_else(|| panic!("plan start did not lock:\n{}", describe(&net)));
    assert!(four.iter().all(|id| !net.node(*id).status().locked));
    net.heal();
    assert_forms(&mut net, &ids, 3, 60_000);
    assert_eq!(net.clusters().len(), 1);
}

#[test]
fn clusters_formed_apart_merge_into_one_when_they_meet() {
    // Neither side reaches expected_nodes, so neither is locked: they merge.
    let (mut net, ids) = site(9, 5, 5, |c| c.settle_ms = 2_000);
    let (left, right) = form_apart(&mut net, &ids, 2);
    assert!(ids.iter().all(|id| !net.node(*id).locked()));
    let _ = (left, right);
    net.heal();
    assert_forms(&mut net, &ids, 3, 30_000);
    let done = net.run_until(10_000, |n| ids.iter().all(|id| n.node(*id).site_formed()));
    assert!(done.is_some(), "the merged site is recorded formed");
}

/// Two groups that each reached expected_nodes apart are two sites: when they meet, neither
/// dissolves (site.rs), and both say so in status.
#[test]
fn two_formed_clusters_that_meet_both_stay_and_say_so() {
    let (mut net, ids) = site(9, 5, 2, |c| c.settle_ms = 2_000);
    let (left, right) = form_apart(&mut net, &ids, 2);
    let before: Vec<u64> = ids.iter().map(|id| net.node(*id).cluster_id()).collect();
    assert!(
        ids.iter().all(|id| net.node(*id).site_formed()),
        "{}",
        describe(&net)
    );
    net.heal();
    net.run_for(10_000);
    let after: Vec<u64> = ids.iter().map(|id| net.node(*id).cluster_id()).collect();
    assert_eq!(before, after, "nobody dissolved:\n{}", describe(&net));
    for side in [left, right] {
        let leader = side
            .iter()
            .copied()
            .find(|id| net.node(*id).leader_id() == *id)
            .expect("each side keeps its leader");
        let s = net.node(leader).status();
        assert!(
            s.site_conflict.contains("another formed cluster"),
            "{}: {:?}",
            s.node_name,
            s.site_conflict
        );
    }
}

/// The site rule (lease.rs): while two clusters coexist before the site forms, neither floats
/// the VIP unless it holds more than half of any site the configuration allows (fewer than
/// 2 × expected_nodes hosts): a 3/2 split of a site expecting 5 leaves both sides holding back,
/// each saying why; after the merge the formed site's leader holds it.
#[test]
fn clusters_formed_apart_never_hold_the_vip_together() {
    let (mut net, ids) = site(9, 5, 5, |c| {
        c.settle_ms = 2_000;
        c.vip = true;
    });
    let (left, right) = form_apart(&mut net, &ids, 2);
    assert!(
        net.vip_holders.is_empty() && net.max_vip_holders == 0,
        "neither side holds the VIP: {:?}\n{}",
        net.vip_holders,
        describe(&net)
    );
    for (side, fresh) in [(left, 2), (right, 3)] {
        let leader = side
            .iter()
            .copied()
            .find(|id| net.node(*id).leader_id() == *id)
            .expect("each side has a leader");
        let vip = net.node(leader).status().vip.expect("vip status");
        assert!(!vip.held_here);
        assert!(
            vip.held_back
                .contains(&format!("reaches {fresh} hosts of a site of up to 9")),
            "says why: {}",
            vip.held_back
        );
    }
    net.heal();
    assert_forms(&mut net, &ids, 3, 30_000);
    let done = net.run_until(10_000, |n| {
        n.vip_holders.len() == 1 && n.vip_holders.iter().all(|h| n.node(*h).leader_id() == *h)
    });
    assert!(
        done.is_some(),
        "merged leader holds the VIP:\n{}",
        describe(&net)
    );
    assert_eq!(net.max_vip_holders, 1, "never two holders");
}

/// A lone host of a site expecting three forms a cluster after the settle time but cannot tell
/// it is not one of two halves: it never floats the VIP, and its status says why.
#[test]
fn a_lone_host_of_a_larger_site_does_not_float_the_vip() {
    let (mut net, ids) = site(4, 1, 3, |c| {
        c.settle_ms = 1_000;
        c.vip = true;
    });
    net.start(ids[0]);
    net.run_for(10_000);
    let s = net.node(ids[0]).status();
    assert_eq!(s.leader_id, ids[0], "{}", describe(&net));
    assert!(net.vip_holders.is_empty() && net.max_vip_holders == 0);
    let vip = s.vip.expect("vip status");
    assert!(
        vip.held_back
            .contains("reaches 1 hosts of a site of up to 5"),
        "{}",
        vip.held_back
    );
}

#[test]
fn restarted_host_rejoins_with_its_identity_and_state() {
    let (mut net, ids) = site(11, 3, 3, |_| {});
    for id in &ids {
        net.start(*id);
    }
    assert_forms(&mut net, &ids, 3, 10_000);
    let cluster = net.clusters().into_iter().next().expect("one cluster");
    let follower = ids
        .iter()
        .copied()
        .find(|id| net.node(*id).leader_id() != *id)
        .expect("a follower");
    net.crash(follower);
    net.run_for(2_000);
    net.start(follower);
    assert_eq!(
        net.node(follower).cluster_id(),
        cluster,
        "restored from its own store"
    );
    assert_forms(&mut net, &ids, 3, 10_000);
    assert_eq!(net.clusters(), BTreeSet::from([cluster]));
}

#[test]
fn leader_crash_elects_a_new_leader_and_old_leader_rejoins() {
    let (mut net, ids) = site(12, 3, 3, |_| {});
    for id in &ids {
        net.start(*id);
    }
    assert_forms(&mut net, &ids, 3, 10_000);
    let old = net.node(ids[0]).leader_id();
    net.crash(old);
    let rest: Vec<NodeId> = ids.iter().copied().filter(|id| *id != old).collect();
    let ok = net.run_until(10_000, |n| {
        let l = n.node(rest[0]).leader_id();
        l != 0 && l != old && rest.iter().all(|id| n.node(*id).leader_id() == l)
    });
    assert!(
        ok.is_some(),
        "a new leader among the survivors:\n{}",
        describe(&net)
    );
    net.start(old);
    assert_forms(&mut net, &ids, 3, 10_000);
}

#[test]
fn whole_site_power_cycle_keeps_cluster_and_members() {
    let (mut net, ids) = site(13, 4, 4, |_| {});
    for id in &ids {
        net.start(*id);
    }
    assert_forms(&mut net, &ids, 3, 10_000);
    let cluster = net.clusters();
    let commit: Vec<u64> = ids
        .iter()
        .map(|id| net.node(*id).status().commit_index)
        .collect();
    for id in &ids {
        net.crash(*id);
    }
    net.run_for(1_000);
    for id in &ids {
        net.start(*id);
    }
    assert_forms(&mut net, &ids, 3, 10_000);
    assert_eq!(net.clusters(), cluster);
    for (id, before) in ids.iter().zip(commit) {
        assert!(
            net.node(*id).status().commit_index >= before,
            "commit index went backwards"
        );
    }
}

#[test]
fn log_compaction_bounds_the_log_and_late_hosts_join_by_snapshot() {
    let (mut net, ids) = site(14, 6, 3, |c| c.snapshot_interval_entries = 3);
    for id in &ids[..3] {
        net.start(*id);
    }
    assert_forms(&mut net, &ids[..3], 3, 10_000);
    // Leader changes write entries; force a few.
    for _ in 0..4 {
        let leader = net.node(ids[0]).leader_id();
        net.crash(leader);
        net.run_for(3_000);
        net.start(leader);
        assert_forms(&mut net, &ids[..3], 3, 10_000);
    }
    for id in &ids[..3] {
        let s = net.node(*id).status();
        assert!(
            s.first_log_index > 1,
            "log compacted: first index {}",
            s.first_log_index
        );
        assert!(
            s.applied_index + 1 - s.first_log_index < 10,
            "log bounded: {s:?}"
        );
    }
    for id in &ids[3..] {
        net.start(*id);
    }
    assert_forms(&mut net, &ids, 3, 20_000);
}

/// The same seed gives the same history: cluster ids, leaders and terms at every 50 ms of virtual
/// time, through formation, a leader crash and a restart. This is what lets the simulator replay
/// a failing run from its seed.
#[test]
fn same_seed_same_history() {
    fn history(seed: u64) -> Vec<String> {
        let (mut net, ids) = site(seed, 5, 5, |_| {});
        let mut trace = Vec::new();
        let snap = |net: &TestNet, trace: &mut Vec<String>| {
            for id in net.up_ids() {
                let s = net.node(id).status();
                trace.push(format!(
                    "{} {id:x} {:x} {:x} {} {}",
                    net.now_ms, s.cluster_id, s.leader_id, s.term, s.commit_index
                ));
            }
        };
        for id in &ids {
            net.start(*id);
        }
        for _ in 0..100 {
            net.run_for(50);
            snap(&net, &mut trace);
        }
        let leader = net.node(ids[0]).leader_id();
        net.crash(leader);
        for _ in 0..100 {
            net.run_for(50);
            snap(&net, &mut trace);
        }
        net.start(leader);
        for _ in 0..60 {
            net.run_for(50);
            snap(&net, &mut trace);
        }
        trace
    }
    let a = history(77);
    assert_eq!(a, history(77), "same seed, same history");
    assert_ne!(a, history(78), "another seed, another history");
}

/// I2 over the core's outputs: through formation, leader crashes, a leader cut off from the
/// other voters and a healed partition, never two VIP holders at once; and after each fault a
/// holder (the leader) exists again.
#[test]
fn vip_has_at_most_one_holder_and_follows_the_leader() {
    for seed in 0..10 {
        let (mut net, ids) = site(300 + seed, 5, 5, |c| c.vip = true);
        for id in &ids {
            net.start(*id);
        }
        assert_forms(&mut net, &ids, 3, 10_000);
        // The leader holds the VIP, and every host's status names it as the holder.
        let holder_is_leader = |n: &TestNet| {
            let leader = n.node(n.up_ids()[0]).leader_id();
            leader != 0
                && n.vip_holders == BTreeSet::from([leader])
                && n.up_ids()
                    .iter()
                    .all(|id| n.node(*id).vip_holder() == leader)
        };
        assert!(
            net.run_until(5_000, holder_is_leader).is_some(),
            "seed {seed}: the leader holds the VIP"
        );
        for round in 0..3 {
            let leader = net.node(net.up_ids()[0]).leader_id();
            if round == 1 {
                // Cut the leader off from everyone while it keeps running: its lease must end
                // before anyone else can be elected and acquire.
                for id in &ids {
                    if *id != leader {
                        net.cut(leader, *id);
                    }
                }
                net.run_for(5_000);
                assert!(
                    !net.vip_holders.contains(&leader),
                    "seed {seed}: cut-off leader still holds"
                );
                net.heal();
            } else {
                net.crash(leader);
                net.run_for(5_000);
                net.start(leader);
            }
            assert!(
                net.run_until(10_000, holder_is_leader).is_some(),
                "seed {seed} round {round}: a holder again"
            );
        }
        assert_eq!(
            net.max_vip_holders, 1,
            "seed {seed}: two VIP holders at once"
        );
    }
}

/// The fencing rule is what keeps I2: with the lease stretched past the followers' election
/// timeout, the same scenario does produce two holders. Shows the check above can fail.
#[test]
fn a_lease_longer_than_the_election_timeout_breaks_fencing() {
    let mut broke = false;
    for seed in 0..10 {
        let (mut net, ids) = site(300 + seed, 3, 3, |c| {
            c.vip = true;
            c.lease_stretch_pct_for_tests = 400;
        });
        for id in &ids {
            net.start(*id);
        }
        assert_forms(&mut net, &ids, 3, 10_000);
        net.run_for(2_000);
        let leader = net.node(ids[0]).leader_id();
        for id in &ids {
            if *id != leader {
                net.cut(leader, *id);
            }
        }
        net.run_for(5_000);
        broke |= net.max_vip_holders > 1;
    }
    assert!(
        broke,
        "stretching the lease past the election timeout must allow two holders"
    );
}

/// Planned handover: leadership and the VIP move to the chosen voter, the VIP is released before
/// the new holder acquires it, and the gap is a few network round trips, not an election timeout.
#[test]
fn transfer_moves_leadership_and_vip_quickly() {
    let (mut net, ids) = site(21, 3, 3, |c| c.vip = true);
    for id in &ids {
        net.start(*id);
    }
    assert_forms(&mut net, &ids, 3, 10_000);
    // The VIP floats once no new host was heard of for 2 s (the site rule, lease.rs).
    let held = net.run_until(5_000, |n| n.vip_holders.len() == 1);
    assert!(held.is_some(), "{}", describe(&net));
    net.run_for(500);
    for round in 0..6 {
        let leader = net.node(ids[0]).leader_id();
        assert_eq!(
            net.vip_holders,
            BTreeSet::from([leader]),
            "round {round}: leader holds before"
        );
        let to = ids.iter().copied().find(|id| *id != leader).unwrap();
        let start = net.now_ms;
        assert_eq!(net.transfer(leader, Some(to)), Ok(to));
        let moved = net.run_until(2_000, |n| {
            n.vip_holders == BTreeSet::from([to]) && n.node(to).leader_id() == to
        });
        assert!(
            moved.is_some(),
            "round {round}: leadership and VIP moved to the target"
        );
        let released = net
            .vip_releases
            .iter()
            .rev()
            .find(|(_, h)| *h == leader)
            .expect("old holder released")
            .0;
        let acquired = net
            .vip_acquires
            .iter()
            .rev()
            .find(|(_, h)| *h == to)
            .expect("new holder acquired")
            .0;
        assert!(
            released >= start && acquired >= released,
            "release before acquire"
        );
        assert!(
            acquired - released <= 50,
            "round {round}: VIP gap {} ms",
            acquired - released
        );
        net.run_for(500);
    }
    assert_eq!(net.max_vip_holders, 1);
    let follower = net.node(ids[0]).leader_id();
    let not_leader = ids.iter().copied().find(|id| *id != follower).unwrap();
    assert!(matches!(
        net.transfer(not_leader, None),
        Err(muster_core::TransferError::NotLeader { leader }) if leader == follower
    ));
}
