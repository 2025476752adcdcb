//! Scenario tests of the join secrets over the in-memory site: what an operator relies on —
//! every host's hook gets the same token made at plan time; what the init hook writes to
//! `MUSTER_SECRETS_OUT` reaches the hosts that join after it, across a leader crash; no secret
//! value is ever stored in plaintext (log, applied state, snapshots) nor shown in status; a host
//! whose site key differs cannot open them and its step fails saying so.

use muster_core::testnet::TestNet;
use muster_core::{NodeId, SecretValues, SiteSecrets};
use muster_proto::{Role, StepState};

fn site(seed: u64, n: usize) -> (TestNet, Vec<NodeId>) {
    TestNet::formed_site(seed, n, |c| {
        c.vip = true;
        c.plan = true;
        c.install_retry_ms = 300;
    })
}

fn plan_done(net: &TestNet, n: usize) -> bool {
    net.up_ids().iter().all(|id| {
        net.node(*id)
            .cluster_state()
            .plan
            .as_ref()
            .is_some_and(|p| {
                p.steps.len() == n
                    && p.steps
                        .iter()
                        .all(|s| s.state == StepState::Succeeded as i32)
            })
    })
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn every_hook_gets_the_plan_token_and_the_init_hooks_output() {
    let (mut net, ids) = site(11, 5);
    let mut out = SecretValues::default();
    out.insert("CA_CERT_HASH", "sha256:0123456789abcdef")
        .unwrap();
    net.init_secrets_out = out;
    net.install_ms = 500;
    // Kill the leader (the init host) once a control-plane join runs: the secrets it shared
    // must survive it.
    let started = net.run_until(20_000, |net| {
        net.install_runs.iter().any(|r| r.2 == Role::ControlPlane)
    });
    assert!(started.is_some(), "a control-plane join started");
    let leader = net.node(ids[0]).leader_id();
    net.crash(leader);
    net.run_for(2_000);
    net.start(leader);
    let done = net.run_until(60_000, |net| plan_done(net, 5));
    assert!(done.is_some(), "plan did not complete:\n{}", net.describe());

    let init_host = net
        .install_runs
        .iter()
        .find(|r| r.2 == Role::Init)
        .expect("an init ran")
        .1;
    let token = net.install_secrets[&init_host]
        .get("TOKEN")
        .expect("the init hook got a TOKEN")
        .to_owned();
    assert_eq!(token.len(), 64);
    for id in &ids {
        let s = &net.install_secrets[id];
        assert_eq!(
            s.get("TOKEN"),
            Some(token.as_str()),
            "one token for the site"
        );
        assert!(s.get("BOOTSTRAP_TOKEN").is_some() && s.get("CERTIFICATE_KEY").is_some());
        if *id != init_host {
            assert_eq!(
                s.get("CA_CERT_HASH"),
                Some("sha256:0123456789abcdef"),
                "hosts after the init get what it shared"
            );
        }
    }

    // Nowhere in plaintext: not in any store, not in status.
    for id in net.up_ids() {
        let stored = net.stored_bytes(id);
        assert!(stored.len() > 100, "the store holds the plan");
        assert!(!contains(&stored, &token), "token in plaintext in a store");
        assert!(!contains(&stored, "0123456789abcdef"), "CA hash in a store");
        let status = format!("{:?}", net.node(id).status());
        assert!(!status.contains(&token), "token in status");
    }
}

#[test]
fn a_host_with_another_site_key_cannot_open_the_secrets_and_says_so() {
    // Host 0 boots with a different site key (a misconfigured image): the leader is most
    // likely another host, so its step fails with a clear reason, never with a wrong token.
    let mut net = TestNet::new(12);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(net.add_host(&format!("h{i}"), |c| {
            c.vip = true;
            c.plan = true;
            c.install_retry_ms = 300;
            c.max_install_attempts = 2;
            c.expected_nodes = 3;
            if i == 0 {
                c.secrets = Some(SiteSecrets::from_site_key(b"another key", [3; 32]));
            }
        }));
    }
    for id in &ids {
        net.start(*id);
    }
    let failing = |net: &TestNet| -> Option<NodeId> {
        net.up_ids().iter().find_map(|at| {
            net.node(*at).cluster_state().plan.as_ref().and_then(|p| {
                p.steps
                    .iter()
                    .find(|s| {
                        s.state == StepState::Failed as i32
                            && s.last_error.contains("cannot open the plan's join secrets")
                    })
                    .map(|s| s.node_id)
            })
        })
    };
    // Whichever host made the plan, a host whose key differs from the plan's fails, saying why.
    let failed = net.run_until(60_000, |net| failing(net).is_some());
    assert!(failed.is_some(), "{}", net.describe());
    let host = failing(&net).expect("a failed step");
    let leader = net.node(ids[1]).leader_id();
    assert!(
        (host == ids[0]) != (leader == ids[0]),
        "the odd host fails unless it made the plan (then the others fail)"
    );
    assert!(
        !net.install_runs.iter().any(|r| r.1 == host),
        "a hook never runs without the secrets it needs"
    );
}
