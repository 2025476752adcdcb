//! The "site has formed" check: every queried host agrees on one cluster, one leader and exactly
//! the expected members, with the expected number of voters.
//!
//! Pure over parsed [`Status`] views, so the rule is unit-tested here; [`crate::site::Site`]
//! gathers the views (`check_formed`, `wait_formed`) and the benchmark applies the same rule to
//! its polled snapshots.

use std::collections::BTreeSet;

use anyhow::{bail, ensure, Result};

use crate::status::Status;

/// What every queried host agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formed {
    /// The one cluster id.
    pub cluster_id: String,
    /// The one leader (a voter, and one of the queried hosts).
    pub leader_id: String,
    /// Member ids (equal to the expected set).
    pub members: BTreeSet<String>,
    /// Ids of the voting members.
    pub voters: BTreeSet<String>,
    /// The views the decision was made on: (host index, status).
    pub views: Vec<(usize, Status)>,
}

impl Formed {
    /// The host index (among the views) whose node is the leader.
    pub fn leader_host(&self) -> Option<usize> {
        self.views
            .iter()
            .find(|(_, s)| s.node_id == self.leader_id)
            .map(|(i, _)| *i)
    }

    /// The view of host `index`, if it was queried.
    pub fn view(&self, index: usize) -> Option<&Status> {
        self.views.iter().find(|(i, _)| *i == index).map(|(_, s)| s)
    }
}

/// Number of voters a formed group of `members` hosts has: `min(control_plane_count, members)`.
pub fn expected_voters(control_plane_count: usize, members: usize) -> usize {
    control_plane_count.min(members)
}

/// Checks that `views` agree on a formed group with exactly `expected_members` and
/// `expected_voters` voters, led by one of the queried hosts. The error says which host
/// disagrees and how.
pub fn check_agreement(
    views: &[(usize, Status)],
    expected_members: &BTreeSet<String>,
    expected_voters: usize,
) -> Result<Formed> {
    ensure!(!views.is_empty(), "no running host to ask");
    let (first_host, first) = &views[0];
    let cluster_id = first
        .cluster_id
        .clone()
        .ok_or_else(|| not_yet(*first_host, first, "no cluster_id"))?;
    let leader_id = first
        .leader_id
        .clone()
        .ok_or_else(|| not_yet(*first_host, first, "no leader_id"))?;
    for (host, view) in views {
        check_view(
            *host,
            view,
            &cluster_id,
            &leader_id,
            expected_members,
            expected_voters,
        )?;
    }
    if !views.iter().any(|(_, s)| s.node_id == leader_id) {
        bail!("leader {leader_id} is not one of the running hosts queried");
    }
    let voters: BTreeSet<String> = first
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id.clone())
        .collect();
    ensure!(
        voters.contains(&leader_id),
        "leader {leader_id} is not a voter"
    );
    Ok(Formed {
        cluster_id,
        leader_id,
        members: expected_members.clone(),
        voters,
        views: views.to_vec(),
    })
}

fn check_view(
    host: usize,
    view: &Status,
    cluster_id: &str,
    leader_id: &str,
    expected_members: &BTreeSet<String>,
    expected_voters: usize,
) -> Result<()> {
    match view.cluster_id.as_deref() {
        None => return Err(not_yet(host, view, "no cluster_id")),
        Some(c) if c != cluster_id => {
            return Err(not_yet(
                host,
                view,
                &format!("cluster {c}, others {cluster_id}"),
            ))
        }
        Some(_) => {}
    }
    match view.leader_id.as_deref() {
        None => return Err(not_yet(host, view, "no leader_id")),
        Some(l) if l != leader_id => {
            return Err(not_yet(
                host,
                view,
                &format!("leader {l}, others {leader_id}"),
            ))
        }
        Some(_) => {}
    }
    let ids: Vec<&str> = view.member_ids().collect();
    let set: BTreeSet<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    if set.len() != ids.len() {
        return Err(not_yet(
            host,
            view,
            &format!("duplicate member ids {ids:?}"),
        ));
    }
    if &set != expected_members {
        let missing: Vec<_> = expected_members.difference(&set).collect();
        let extra: Vec<_> = set.difference(expected_members).collect();
        let why = format!("members missing {missing:?}, unexpected {extra:?}");
        return Err(not_yet(host, view, &why));
    }
    if view.voter_count() != expected_voters {
        let why = format!("{} voters, expected {expected_voters}", view.voter_count());
        return Err(not_yet(host, view, &why));
    }
    Ok(())
}

fn not_yet(host: usize, view: &Status, why: &str) -> anyhow::Error {
    anyhow::anyhow!("host {host}: {why} [{}]", view.summary())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::sample;

    const A: &str = "aaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccc";

    fn view(node: &str, leader: Option<&str>, members: &[(&str, bool)]) -> Status {
        Status::from_json(&sample(node, leader, members)).unwrap()
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn all_voters() -> Vec<(&'static str, bool)> {
        vec![(A, true), (B, true), (C, true)]
    }

    #[test]
    fn agreeing_views_form() {
        let m = all_voters();
        let views = vec![
            (0, view(A, Some(B), &m)),
            (1, view(B, Some(B), &m)),
            (2, view(C, Some(B), &m)),
        ];
        let formed = check_agreement(&views, &set(&[A, B, C]), 3).unwrap();
        assert_eq!(formed.leader_id, B);
        assert_eq!(formed.leader_host(), Some(1));
        assert_eq!(formed.voters.len(), 3);
    }

    #[test]
    fn disagreeing_leader_is_not_formed() {
        let m = all_voters();
        let views = vec![(0, view(A, Some(B), &m)), (1, view(B, Some(A), &m))];
        let err = check_agreement(&views, &set(&[A, B, C]), 3).unwrap_err();
        assert!(err.to_string().contains("host 1"), "{err}");
    }

    #[test]
    fn missing_leader_or_member_is_not_formed() {
        let m = all_voters();
        assert!(check_agreement(&[(0, view(A, None, &m))], &set(&[A, B, C]), 3).is_err());
        let two = [(A, true), (B, true)];
        assert!(check_agreement(&[(0, view(A, Some(A), &two))], &set(&[A, B, C]), 2).is_err());
        let four = [(A, true), (B, true), (C, true), ("dddddddddddddddd", false)];
        assert!(check_agreement(&[(0, view(A, Some(A), &four))], &set(&[A, B, C]), 3).is_err());
    }

    #[test]
    fn voter_count_and_leader_location_are_checked() {
        let m = [(A, true), (B, false), (C, false)];
        assert!(check_agreement(&[(0, view(A, Some(A), &m))], &set(&[A, B, C]), 3).is_err());
        check_agreement(&[(0, view(A, Some(A), &m))], &set(&[A, B, C]), 1).unwrap();
        // Leader B was not queried (e.g. it was killed): not formed among the survivors.
        let m = all_voters();
        assert!(check_agreement(&[(0, view(A, Some(B), &m))], &set(&[A, B, C]), 3).is_err());
        // Leader must be a voter.
        let m = [(A, true), (B, false), (C, true)];
        assert!(check_agreement(&[(1, view(B, Some(B), &m))], &set(&[A, B, C]), 2).is_err());
    }

    #[test]
    fn voters_rule() {
        assert_eq!(expected_voters(3, 5), 3);
        assert_eq!(expected_voters(3, 2), 2);
        assert_eq!(expected_voters(1, 10), 1);
    }
}
