//! End-to-end membership tests of the real `muster` binary in network namespaces: `muster remove`
//! of a worker and of a voter. The removed agent is told (its status says so), every member
//! refuses it at the connection (their `rejected_connections` grows while it keeps dialling its
//! bootstrap peers), and the cluster keeps `control_plane_count` voters by promoting a learner.
//!
//! Sites are serialized within this binary and torn down however a test ends
//! ([`muster_testbed::scenario`]; prefix `mm-<letter>`).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use muster_testbed::{scenario, Discovery, Site, SiteOptions};
use serde_json::Value;

/// Generous bound for a site to (re)form or a removal to complete.
const TIMEOUT: Duration = Duration::from_secs(60);

fn ids(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn voters(v: &Value) -> usize {
    v["members"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|m| m["voter"] == true).count())
}

/// Waits until every host in `rest` lists exactly `rest`'s ids as members with 3 voters and
/// `gone` among the removed, and `gone` itself says it was removed.
fn wait_removed(site: &Site, rest: &[usize], gone: usize) -> Result<()> {
    let gone_id = site.node_id(gone).context("removed host's id")?;
    let want: std::collections::BTreeSet<String> =
        rest.iter().filter_map(|i| site.node_id(*i)).collect();
    site.wait_until(TIMEOUT, |s| {
        rest.iter().all(|&i| {
            s.status(i).is_ok_and(|v| {
                let members: std::collections::BTreeSet<String> =
                    ids(&v, "members").into_iter().collect();
                members == want && voters(&v) == 3 && ids(&v, "removed").contains(&gone_id)
            })
        }) && s.status(gone).is_ok_and(|v| v["phase"] == "removed")
    })
    .with_context(|| {
        format!(
            "removal of host {gone} did not complete:\n{}",
            site.describe()
        )
    })
}

fn rejected(site: &Site, hosts: &[usize]) -> u64 {
    hosts
        .iter()
        .filter_map(|&i| site.status(i).ok())
        .filter_map(|v| v["rejected_connections"].as_u64())
        .sum()
}

#[test]
fn removed_worker_and_voter_are_refused_and_voters_are_kept() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .control_plane_count(3);
    scenario("mm-a", 5, opts, |site| {
        let all = site.all();
        site.start_all()?;
        let formed = site.wait_formed(TIMEOUT, &all)?;
        let leader = formed.leader_host().context("leader is a site host")?;
        let is_voter = |i: usize| {
            site.node_id(i)
                .is_some_and(|id| formed.voters.contains(&id))
        };
        let worker = *all.iter().find(|&&i| !is_voter(i)).context("a learner")?;
        let follower = *all
            .iter()
            .find(|&&i| i != leader && i != worker)
            .context("a follower")?;

        // A worker, by name, asked of a follower (forwarded to the leader).
        let name = site.status(worker)?["node_name"]
            .as_str()
            .context("name")?
            .to_owned();
        let socket = site.host(follower).socket.display().to_string();
        let out = site
            .muster()
            .run(&["remove", &name, "--socket", &socket, "--wait-secs", "4"])?;
        ensure!(out.contains("removed in"), "muster remove said: {out}");
        let mut rest: Vec<usize> = all.iter().copied().filter(|i| *i != worker).collect();
        wait_removed(site, &rest, worker)?;
        let human = site.status_human(worker)?;
        ensure!(
            human.contains("REMOVED"),
            "the removed host says so:\n{human}"
        );
        // It keeps dialling its bootstrap peers; every member refuses it at the connection.
        let before = rejected(site, &rest);
        site.wait_until(TIMEOUT, |s| rejected(s, &rest) > before)
            .context("members never refused the removed host")?;

        // A voter (not the leader), by id, asked of the leader: a learner is promoted.
        let voter = *rest
            .iter()
            .find(|&&i| i != leader && is_voter(i))
            .context("a follower voter")?;
        let voter_id = site.node_id(voter).context("id")?;
        let socket = site.host(leader).socket.display().to_string();
        let out =
            site.muster()
                .run(&["remove", &voter_id, "--socket", &socket, "--wait-secs", "4"])?;
        ensure!(out.contains("removed in"), "muster remove said: {out}");
        rest.retain(|i| *i != voter);
        wait_removed(site, &rest, voter)?;

        // Removed hosts stay removed across a restart, and the cluster is whole.
        site.kill(worker)?;
        site.restart(worker)?;
        site.wait_until(TIMEOUT, |s| {
            s.status(worker).is_ok_and(|v| v["phase"] == "removed")
        })
        .context("the removed host forgot it was removed")?;
        let after = site.wait_formed(TIMEOUT, &rest)?;
        ensure!(after.cluster_id == formed.cluster_id, "cluster id kept");
        ensure!(after.voters.len() == 3, "voters {:?}", after.voters);

        // Asking again, or for a stranger, is a clear error.
        let refused = std::process::Command::new(site.muster().path())
            .args(["remove", "no-such-host", "--socket", &socket])
            .output()?;
        ensure!(!refused.status.success());
        let msg = String::from_utf8_lossy(&refused.stderr);
        ensure!(msg.contains("no member named"), "error: {msg}");
        Ok(())
    });
}
