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

/// What a formed site looks like to an operator, per host: (cluster, members, commit index).
fn snapshot(site: &Site, hosts: &[usize]) -> Result<Vec<(String, Vec<String>, u64)>> {
    hosts
        .iter()
        .map(|&i| {
            let v = site.status(i)?;
            let mut members = ids(&v, "members");
            members.sort();
            Ok((
                v["cluster_id"].as_str().unwrap_or_default().to_owned(),
                members,
                v["commit_index"].as_u64().unwrap_or(0),
            ))
        })
        .collect()
}

fn drops(v: &Value, reason: &str) -> u64 {
    v["dropped"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["reason"] == reason))
        .and_then(|d| d["count"].as_u64())
        .unwrap_or(0)
}

/// A host that holds the site key but was never admitted (`muster-adversary`) attacks a formed
/// site of three real agents over the real transport for 10 s: every attack is dropped and
/// counted, the site keeps its cluster, members and commit index; then every agent is SIGKILLed
/// and restarted, and the site comes back the same.
#[test]
fn an_outsider_with_the_site_key_changes_nothing() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .expected_nodes(3)
        .control_plane_count(3);
    scenario("mm-b", 4, opts, |site| {
        let trio = vec![0, 1, 2];
        for &i in &trio {
            site.start(i)?;
        }
        let formed = site.wait_formed(TIMEOUT, &trio)?;
        site.wait_until(TIMEOUT, |s| {
            trio.iter()
                .all(|&i| s.status(i).is_ok_and(|v| v["formed_unix_ms"].is_u64()))
        })
        .context("site recorded formed")?;
        let before = snapshot(site, &trio)?;

        // The outsider runs in the fourth host's namespace, with the site key.
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", site.namespace(3)])
            .arg(env!("CARGO_BIN_EXE_muster-adversary"))
            .arg("--key")
            .arg(&site.host(0).key_file)
            .args([
                "--listen",
                &site.addr(3),
                "--seconds",
                "10",
                "--every-ms",
                "20",
            ]);
        for &i in &trio {
            cmd.args(["--peer", &site.addr(i)]);
        }
        let (status, out, err) =
            muster_testbed::cli::run_with_timeout(cmd, Duration::from_secs(30))?;
        ensure!(status.success(), "adversary failed: {err}");
        let report: Value = serde_json::from_str(out.trim()).context("adversary report")?;
        let sent = report["sent_total"].as_u64().unwrap_or(0);
        ensure!(
            sent > 500,
            "the adversary sent only {sent} messages: {report}"
        );
        ensure!(
            report["hellos_received"].as_u64().unwrap_or(0) > 0,
            "the adversary was connected: {report}"
        );

        // Dropped and counted on every host; the site as it was.
        let after_attack = site.wait_formed(TIMEOUT, &trio)?;
        ensure!(
            after_attack.cluster_id == formed.cluster_id,
            "cluster id kept"
        );
        for &i in &trio {
            let v = site.status(i)?;
            let non_member = drops(&v, "raft message from a non-member")
                + drops(&v, "raft message type never sent between hosts");
            ensure!(
                non_member > 0,
                "host {i} counted no dropped raft: {}",
                v["dropped"]
            );
            ensure!(
                drops(&v, "hello with an invalid name") > 0,
                "host {i} counted no bad hello: {}",
                v["dropped"]
            );
            ensure!(
                v["site_conflict"].is_string(),
                "host {i} shows the conflict claim"
            );
        }
        let attacked = snapshot(site, &trio)?;
        for ((c0, m0, k0), (c1, m1, k1)) in before.iter().zip(&attacked) {
            ensure!(
                c0 == c1 && m0 == m1,
                "cluster or members changed: {before:?} → {attacked:?}"
            );
            ensure!(
                k1 >= k0,
                "commit index went back: {before:?} → {attacked:?}"
            );
        }

        // Power cut: every agent SIGKILLed, then restarted.
        for &i in &trio {
            site.kill(i)?;
        }
        for &i in &trio {
            site.start(i)?;
        }
        let again = site.wait_formed(TIMEOUT, &trio)?;
        ensure!(
            again.cluster_id == formed.cluster_id,
            "same cluster after the power cut"
        );
        let restarted = snapshot(site, &trio)?;
        for ((c0, m0, k0), (c1, m1, k1)) in attacked.iter().zip(&restarted) {
            ensure!(
                c0 == c1 && m0 == m1,
                "cluster or members changed by the restart"
            );
            ensure!(k1 >= k0, "commit index went back after the restart");
        }
        Ok(())
    });
}
