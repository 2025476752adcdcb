//! Unit tests of `muster health`'s checks on hand-built status answers.

use super::*;
use muster_proto::{MemberStatus, Plan, PlanStep, Role, VipStatus};

fn m(id: u64, name: &str, voter: bool, reachable: bool) -> MemberStatus {
    MemberStatus {
        id,
        name: name.into(),
        address: format!("10.0.0.{id}:7946"),
        voter,
        reachable,
        ..Default::default()
    }
}

fn step(id: u64, name: &str, role: Role, state: StepState) -> PlanStep {
    PlanStep {
        node_id: id,
        name: name.into(),
        role: role as i32,
        state: state as i32,
        ..Default::default()
    }
}

/// A healthy 3-voter site seen from host 1, which leads and holds the VIP; plan done.
fn healthy_site() -> StatusResponse {
    StatusResponse {
        node_id: 1,
        node_name: "edge-1".into(),
        cluster_id: 7,
        leader_id: 1,
        term: 3,
        phase: "member".into(),
        formed_unix_ms: 1_700_000_000_000,
        members: vec![
            m(1, "edge-1", true, true),
            m(2, "edge-2", true, true),
            m(3, "edge-3", true, true),
            m(4, "edge-4", false, true),
        ],
        vip: Some(VipStatus {
            address: "10.0.0.100/24".into(),
            holder_id: 1,
            held_here: true,
            ..Default::default()
        }),
        plan: Some(Plan {
            steps: vec![
                step(1, "edge-1", Role::Init, StepState::Succeeded),
                step(2, "edge-2", Role::ControlPlane, StepState::Succeeded),
                step(3, "edge-3", Role::ControlPlane, StepState::Succeeded),
                step(4, "edge-4", Role::Worker, StepState::Succeeded),
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The name and message of the first failed check; every later one must be skipped.
fn first_failure(outcomes: &[Outcome]) -> Option<(&'static str, String)> {
    let i = outcomes.iter().position(|o| o.result == Verdict::Failed)?;
    assert!(
        outcomes[i + 1..]
            .iter()
            .all(|o| o.result == Verdict::Skipped),
        "{outcomes:?}"
    );
    Some((outcomes[i].name, outcomes[i].message.clone()))
}

#[test]
fn a_healthy_site_passes_every_check_in_order() {
    let out = evaluate(Ok(&healthy_site()), None);
    let names: Vec<_> = out.iter().map(|o| o.name).collect();
    assert_eq!(names, CHECKS);
    assert!(healthy(&out), "{}", to_text(&out));
    assert!(out[0].message.contains("edge-1"));
    assert_eq!(out[7].message, "4 of 4 steps succeeded");
}

#[test]
fn an_agent_that_does_not_answer_fails_the_first_check_and_skips_the_rest() {
    let out = evaluate(Err("cannot reach the agent".into()), None);
    assert_eq!(out.len(), CHECKS.len());
    let (name, message) = first_failure(&out).unwrap();
    assert_eq!(
        (name, message.as_str()),
        ("agent", "cannot reach the agent")
    );
    assert!(!healthy(&out));
}

#[test]
fn a_host_in_no_cluster_fails_member() {
    let mut s = healthy_site();
    s.phase = "discovering".into();
    s.cluster_id = 0;
    let (name, message) = first_failure(&evaluate(Ok(&s), None)).unwrap();
    assert_eq!(name, "member");
    assert!(message.contains("discovering"), "{message}");
    s.phase = "removed".into();
    let (name, message) = first_failure(&evaluate(Ok(&s), None)).unwrap();
    assert_eq!(name, "member");
    assert!(message.contains("removed"), "{message}");
}

#[test]
fn a_site_not_formed_fails_formed() {
    let mut s = healthy_site();
    s.formed_unix_ms = 0;
    assert_eq!(first_failure(&evaluate(Ok(&s), None)).unwrap().0, "formed");
}

#[test]
fn quorum_needs_a_majority_of_voters_and_names_the_lost_ones() {
    let mut s = healthy_site();
    s.members[1].reachable = false;
    // 2 of 3 voters: still a majority; a learner's reachability does not count.
    s.members[3].reachable = false;
    assert_eq!(
        quorum(&s).unwrap(),
        "2 of 3 voters reachable (a majority is 2)"
    );
    s.members[2].reachable = false;
    s.leader_id = 0;
    let (name, message) = first_failure(&evaluate(Ok(&s), None)).unwrap();
    assert_eq!(name, "quorum");
    assert!(message.contains("1 of 3 voters"), "{message}");
    assert!(message.contains("edge-2, edge-3"), "{message}");
    s.members.clear();
    assert!(quorum(&s).is_err());
}

#[test]
fn leader_must_be_known_and_reachable() {
    let mut s = healthy_site();
    s.leader_id = 0;
    let (name, message) = first_failure(&evaluate(Ok(&s), None)).unwrap();
    assert_eq!(name, "leader");
    assert!(message.contains("no leader"), "{message}");
    s.leader_id = 2;
    assert!(leader(&s).unwrap().contains("edge-2"));
    // A 5-voter site keeps quorum without edge-2, but this host cannot reach its leader.
    s.members.push(m(5, "edge-5", true, true));
    s.members.push(m(6, "edge-6", true, true));
    s.members[1].reachable = false;
    let (name, message) = first_failure(&evaluate(Ok(&s), None)).unwrap();
    assert_eq!(name, "leader");
    assert!(message.contains("edge-2") && message.contains("not reachable"));
    s.leader_id = 99;
    assert!(leader(&s).unwrap_err().contains("not in the member list"));
}

#[test]
fn endpoint_needs_a_reachable_holder_and_an_answer_if_asked() {
    let mut s = healthy_site();
    s.vip = None;
    assert_eq!(endpoint(&s, None).unwrap(), "no VIP configured");
    let mut s = healthy_site();
    let addr: SocketAddr = "10.0.0.100:6443".parse().unwrap();
    assert!(endpoint(&s, Some(Ok(addr)))
        .unwrap()
        .contains("10.0.0.100:6443 answers"));
    let e = endpoint(&s, Some(Err("10.0.0.100:6443 does not answer".into()))).unwrap_err();
    assert!(e.contains("does not answer"), "{e}");
    let v = s.vip.as_mut().unwrap();
    v.held_here = false;
    assert!(endpoint(&s, None).unwrap_err().contains("does not carry"));
    let v = s.vip.as_mut().unwrap();
    v.holder_id = 0;
    v.held_back = "cluster holds no majority of the site".into();
    let (name, message) = first_failure(&evaluate(Ok(&s), None)).unwrap();
    assert_eq!(name, "endpoint");
    assert!(
        message.contains("no VIP holder known: cluster holds"),
        "{message}"
    );
    let v = s.vip.as_mut().unwrap();
    v.holder_id = 3;
    assert!(endpoint(&s, None).unwrap().contains("held by edge-3"));
    s.members[2].reachable = false;
    assert!(endpoint(&s, None)
        .unwrap_err()
        .contains("not a reachable member"));
}

#[test]
fn a_site_conflict_fails() {
    let mut s = healthy_site();
    s.site_conflict = "cluster 0000000000000009 with 2 members seen".into();
    let (name, message) = first_failure(&evaluate(Ok(&s), None)).unwrap();
    assert_eq!(name, "site-conflict");
    assert!(message.contains("0000000000000009"));
}

#[test]
fn plan_names_failed_and_waiting_steps_and_ignores_removed_ones() {
    let mut s = healthy_site();
    s.plan = None;
    assert_eq!(plan(&s).unwrap(), "no join plan");
    // A host that installs Kubernetes: a formed site without a plan yet is not done.
    s.kubernetes = true;
    assert!(plan(&s).unwrap_err().contains("no join plan yet"));
    let mut s = healthy_site();
    let p = s.plan.as_mut().unwrap();
    p.steps[3].state = StepState::Failed as i32;
    p.steps[3].last_error = "hook exited 1\nmore".into();
    p.steps[2].state = StepState::Running as i32;
    let (name, message) = first_failure(&evaluate(Ok(&s), None)).unwrap();
    assert_eq!(name, "plan");
    assert_eq!(message, "FAILED: edge-4 (worker): hook exited 1");
    let p = s.plan.as_mut().unwrap();
    p.steps[3].removed = true;
    let e = plan(&s).unwrap_err();
    assert_eq!(
        e,
        "2 of 3 steps succeeded; waiting for edge-3 (control-plane) running"
    );
    let p = s.plan.as_mut().unwrap();
    p.steps[2].state = StepState::Succeeded as i32;
    assert_eq!(plan(&s).unwrap(), "3 of 3 steps succeeded");
    let p = s.plan.as_mut().unwrap();
    p.removals.push(muster_proto::RemovalDuty {
        name: "edge-4".into(),
        state: StepState::Failed as i32,
        ..Default::default()
    });
    assert!(plan(&s).unwrap_err().contains("removal FAILED for edge-4"));
}

#[test]
fn api_fails_on_an_unhealthy_server_and_passes_when_none_report() {
    let mut s = healthy_site();
    assert_eq!(api(&s).unwrap(), "no API server health reported");
    s.members[0].api_health = ApiHealth::Healthy as i32;
    s.members[1].api_health = ApiHealth::Healthy as i32;
    // edge-3 installed its control plane but has not reported: not known healthy yet.
    assert_eq!(
        api(&s).unwrap_err(),
        "API server health not reported yet by edge-3 (healthy on edge-1, edge-2)"
    );
    s.members[2].api_health = ApiHealth::Healthy as i32;
    assert_eq!(api(&s).unwrap(), "healthy on edge-1, edge-2, edge-3");
    s.members[2].api_health = ApiHealth::Unhealthy as i32;
    let (name, message) = first_failure(&evaluate(Ok(&s), None)).unwrap();
    assert_eq!(
        (name, message.as_str()),
        ("api", "API server unhealthy on edge-3")
    );
}

#[test]
fn json_lists_every_check_with_its_result() {
    let mut s = healthy_site();
    s.leader_id = 0;
    let v = to_json(&evaluate(Ok(&s), None));
    assert_eq!(v["healthy"], false);
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), CHECKS.len());
    assert_eq!(checks[3]["result"], "passed");
    assert_eq!(checks[4]["name"], "leader");
    assert_eq!(checks[4]["result"], "failed");
    assert_eq!(checks[5]["result"], "skipped");
    let text = to_text(&evaluate(Ok(&s), None));
    assert!(text
        .lines()
        .nth(4)
        .unwrap()
        .starts_with("leader         FAIL  no leader"));
}

#[test]
fn the_vip_address_is_read_without_its_prefix() {
    let s = healthy_site();
    assert_eq!(vip_ip(&s), Some("10.0.0.100".parse().unwrap()));
    let mut s = healthy_site();
    s.vip.as_mut().unwrap().address = "garbage".into();
    assert_eq!(vip_ip(&s), None);
}

#[tokio::test]
async fn connect_reports_an_answer_and_a_refusal() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert_eq!(connect(addr).await, Ok(addr));
    drop(listener);
    let e = connect(addr).await.unwrap_err();
    assert!(e.contains("does not answer"), "{e}");
}
