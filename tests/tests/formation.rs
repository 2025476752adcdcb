//! End-to-end formation tests of the real `muster` binary in network namespaces.
//!
//! Each test builds its own site (unique prefix `mf-<letter>`) through
//! [`muster_testbed::scenario`], which serializes sites within this binary, prints every host's
//! log tail on failure and removes all namespaces and agents however the test ends. Needs root,
//! iproute2 and a built binary (`cargo build --bin muster`, or `MUSTER_BIN`); without them the
//! tests fail with a message saying so.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use muster_testbed::{overrides, scenario, Discovery, Formed, Site, SiteOptions};

/// Generous bound for a site to (re)form: correctness here, speed is the benchmark's job.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the foreign-key test watches for the outsider leaking into the group.
const OUTSIDER_OBSERVE_MIN: Duration = Duration::from_secs(5);
/// How long the foreign-key test waits for evidence of a refused connection.
const REJECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks what a user checks beyond agreement: names and addresses match the hosts.
fn check_identities(site: &Site, formed: &Formed) -> Result<()> {
    for (i, view) in &formed.views {
        ensure!(
            view.node_name == format!("h{i}"),
            "host {i} reports node_name {}",
            view.node_name
        );
        if let Some(phase) = &view.phase {
            ensure!(
                phase == "member",
                "host {i} is formed but reports phase {phase}"
            );
        }
    }
    let view = &formed.views[0].1;
    for m in &view.members {
        let host = site
            .host_of(&m.id)
            .with_context(|| format!("member {} is no known host", m.id))?;
        if let Some(name) = &m.name {
            ensure!(
                *name == format!("h{host}"),
                "member {} named {name}, expected h{host}",
                m.id
            );
        }
        if let Some(address) = m.address.as_deref().filter(|a| !a.is_empty()) {
            let ip = site.ip(host).to_string();
            ensure!(
                address.contains(&ip),
                "member {} has address {address}, expected {ip}",
                m.id
            );
        }
    }
    Ok(())
}

#[test]
fn mdns_three_hosts_form_one_group() {
    scenario("mf-a", 3, SiteOptions::default(), |site| {
        site.start_all()?;
        let formed = site.wait_formed(FORM_TIMEOUT, &site.all())?;
        ensure!(formed.members.len() == 3, "members {:?}", formed.members);
        ensure!(formed.voters.len() == 3, "voters {:?}", formed.voters);
        check_identities(site, &formed)
    });
}

#[test]
fn bootstrap_five_hosts_form_one_group_with_three_voters() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .control_plane_count(3);
    scenario("mf-b", 5, opts, |site| {
        site.start_all()?;
        let formed = site.wait_formed(FORM_TIMEOUT, &site.all())?;
        ensure!(formed.members.len() == 5, "members {:?}", formed.members);
        ensure!(formed.voters.len() == 3, "voters {:?}", formed.voters);
        let learners = formed.views[0]
            .1
            .members
            .iter()
            .filter(|m| !m.voter)
            .count();
        ensure!(learners == 2, "{learners} learners, expected 2");
        check_identities(site, &formed)
    });
}

#[test]
fn killed_leader_is_replaced_and_rejoins_with_same_identity() {
    scenario("mf-c", 3, SiteOptions::default(), |site| {
        let all = site.all();
        site.start_all()?;
        let first = site.wait_formed(FORM_TIMEOUT, &all)?;
        let old = first
            .leader_host()
            .context("leader is not a queried host")?;
        let old_id = first.leader_id.clone();
        let old_term = first.view(old).map_or(0, |s| s.term);

        site.kill(old)?;
        // Survivors must agree on a leader that is one of them; members are still all three.
        let second = site.wait_formed(FORM_TIMEOUT, &all)?;
        ensure!(
            second.leader_id != old_id,
            "the killed host {old} is still leader"
        );
        ensure!(
            second.cluster_id == first.cluster_id,
            "cluster id changed after failover"
        );
        for (i, view) in &second.views {
            ensure!(
                view.term > old_term,
                "host {i} term {} not above {old_term}",
                view.term
            );
        }

        // The survivors notice the vanished host: it is listed, but not reachable.
        let survivors: Vec<usize> = all.iter().copied().filter(|i| *i != old).collect();
        site.wait_until(FORM_TIMEOUT, |s| {
            survivors.iter().all(|&i| {
                s.status_view(i).is_ok_and(|v| {
                    v.members
                        .iter()
                        .any(|m| m.id == old_id && m.reachable == Some(false))
                })
            })
        })
        .context("survivors still show the killed host as reachable")?;
        for &i in &survivors {
            let v = site.status_view(i)?;
            ensure!(
                v.members
                    .iter()
                    .filter(|m| m.id != old_id)
                    .all(|m| m.reachable == Some(true)),
                "host {i} shows a live member unreachable: {:?}",
                v.members
            );
        }

        site.start(old)?;
        let third = site.wait_formed(FORM_TIMEOUT, &all)?;
        ensure!(
            third.cluster_id == first.cluster_id,
            "restarted host joined another cluster"
        );
        let rejoined = third.view(old).context("restarted host not queried")?;
        ensure!(
            rejoined.node_id == old_id,
            "node id changed: {} -> {}",
            old_id,
            rejoined.node_id
        );
        ensure!(
            third.members == first.members,
            "members {:?} vs {:?}",
            third.members,
            first.members
        );
        Ok(())
    });
}

#[test]
fn whole_site_killed_and_restarted_keeps_its_cluster() {
    scenario("mf-d", 3, SiteOptions::default(), |site| {
        let all = site.all();
        site.start_all()?;
        let before = site.wait_formed(FORM_TIMEOUT, &all)?;
        let commits: Vec<u64> = all
            .iter()
            .map(|&i| before.view(i).map_or(0, |s| s.commit_index))
            .collect();

        for &i in &all {
            site.kill(i)?;
        }
        site.start_all()?;
        let after = site.wait_formed(FORM_TIMEOUT, &all)?;
        ensure!(
            after.cluster_id == before.cluster_id,
            "cluster id changed across kill -9 of all"
        );
        ensure!(
            after.members == before.members,
            "members {:?} vs {:?}",
            after.members,
            before.members
        );
        for (i, view) in &after.views {
            let was = before.view(*i).map(|s| s.node_id.as_str());
            ensure!(
                was == Some(view.node_id.as_str()),
                "host {i} node id changed"
            );
        }
        // Committed state survived: every host's commit index gets back to at least where it was
        // (a follower may report a stale value for a moment after restart).
        site.wait_until(FORM_TIMEOUT, |s| {
            all.iter()
                .all(|&i| s.status_view(i).is_ok_and(|v| v.commit_index >= commits[i]))
        })
        .with_context(|| format!("commit indexes never got back to {commits:?}"))?;
        Ok(())
    });
}

#[test]
fn host_with_foreign_key_is_refused() {
    let opts = SiteOptions::default()
        .expected_nodes(3)
        .control_plane_count(3);
    scenario("mf-e", 4, opts, |site| {
        let trio = [0, 1, 2];
        let outsider = 3;
        site.use_own_key(outsider)?;
        // The outsider also dials the trio directly, so refusals happen even if mDNS is slow.
        let peers: Vec<toml::Value> = trio.iter().map(|&j| site.addr(j).into()).collect();
        site.write_config(
            outsider,
            &overrides([("network.bootstrap", toml::Value::Array(peers))]),
        )?;
        site.start_all()?;

        let formed = site.wait_formed(FORM_TIMEOUT, &trio)?;
        let outsider_id = site.status_view(outsider)?.node_id;
        ensure!(
            !formed.members.contains(&outsider_id),
            "outsider {outsider_id} is a member"
        );
        watch_outsider(site, &trio, outsider, &outsider_id, &formed.members)?;

        let again = site.check_formed(&trio)?;
        ensure!(
            again.cluster_id == formed.cluster_id,
            "the trio's cluster changed"
        );
        Ok(())
    });
}

/// Watches until a refused connection is evident (and at least [`OUTSIDER_OBSERVE_MIN`]),
/// failing as soon as the outsider and the trio learn of each other.
fn watch_outsider(
    site: &Site,
    trio: &[usize],
    outsider: usize,
    outsider_id: &str,
    members: &BTreeSet<String>,
) -> Result<()> {
    let started = Instant::now();
    loop {
        for &i in trio {
            let view = site.status_view(i)?;
            ensure!(
                !view.member_ids().any(|id| id == outsider_id),
                "host {i} lists the outsider {outsider_id} as a member"
            );
        }
        let view = site.status_view(outsider)?;
        ensure!(
            !view.member_ids().any(|id| members.contains(id)),
            "the outsider learned members of the site: {:?}",
            view.members
        );
        ensure!(
            view.peers_connected.unwrap_or(0) == 0,
            "the outsider has {:?} authenticated peers",
            view.peers_connected
        );
        let refused = rejection_evident(site, trio, outsider)?;
        if refused && started.elapsed() >= OUTSIDER_OBSERVE_MIN {
            return Ok(());
        }
        if started.elapsed() > REJECTION_TIMEOUT {
            bail!(
                "the trio and the outsider did not both report rejected_connections > 0 \
                 within {REJECTION_TIMEOUT:?}\nstatus:{}",
                site.describe()
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Whether the refusal is visible in status on both sides.
fn rejection_evident(site: &Site, trio: &[usize], outsider: usize) -> Result<bool> {
    // Both sides must count the refusal: the trio refuses the outsider's dials and the outsider
    // fails its handshakes with the trio (it dials them through its bootstrap list).
    let mut trio_refused = false;
    for &i in trio {
        trio_refused |= site.status_view(i)?.rejected_connections.unwrap_or(0) > 0;
    }
    let outsider_refused = site
        .status_view(outsider)?
        .rejected_connections
        .unwrap_or(0)
        > 0;
    Ok(trio_refused && outsider_refused)
}

/// A host whose raft log was damaged on disk refuses to start, says which file is corrupt, and
/// leaves the file as it was; the rest of the site keeps its cluster.
#[test]
fn corrupt_store_is_reported_not_accepted() {
    scenario("mf-f", 3, SiteOptions::default(), |site| {
        let all = site.all();
        site.start_all()?;
        let formed = site.wait_formed(FORM_TIMEOUT, &all)?;
        let victim = (0..3)
            .find(|i| Some(*i) != formed.leader_host())
            .context("a follower")?;
        site.kill(victim)?;
        let log = site.host(victim).data_dir.join("raft").join("log");
        let mut bytes =
            std::fs::read(&log).with_context(|| format!("reading {}", log.display()))?;
        ensure!(
            bytes.len() > 64,
            "raft log of {} bytes is too short to damage",
            bytes.len()
        );
        let at = bytes.len() / 2;
        bytes[at] ^= 0xff;
        std::fs::write(&log, &bytes)?;

        site.start(victim)?;
        site.wait_until(FORM_TIMEOUT, |s| !s.is_running(victim))?;
        let exit = site
            .host(victim)
            .last_exit()
            .context("exit status recorded")?;
        ensure!(
            !exit.success(),
            "agent started on a corrupt store: {exit:?}"
        );
        let text = site.log(victim);
        ensure!(
            text.contains("corrupt") && text.contains(&log.display().to_string()),
            "the error does not name the corrupt file:\n{}",
            muster_testbed::host::tail(&text, 10)
        );
        ensure!(
            std::fs::read(&log)? == bytes,
            "the corrupt store was modified"
        );

        // The survivors still agree, and still list the stopped host as a member.
        let after = site.check_formed(&all)?;
        ensure!(
            after.cluster_id == formed.cluster_id,
            "the rest of the site changed cluster"
        );
        Ok(())
    });
}

/// Hosts that only know some of the others (a chain of bootstrap lists, no multicast) still form
/// one group, and every host ends up connected to every member through the replicated addresses.
#[test]
fn partial_discovery_forms_one_group() {
    let opts = SiteOptions::default().discovery(Discovery::Bootstrap);
    scenario("mf-g", 3, opts, |site| {
        let all = site.all();
        for (host, peer) in [(0, 1), (2, 1), (1, 0)] {
            let list = toml::Value::Array(vec![site.addr(peer).into()]);
            site.write_config(host, &overrides([("network.bootstrap", list)]))?;
        }
        site.start_all()?;
        site.wait_formed(FORM_TIMEOUT, &all)?;
        site.wait_until(FORM_TIMEOUT, |s| {
            all.iter().all(|&i| {
                s.status_view(i).is_ok_and(|v| {
                    v.members.len() == 3 && v.members.iter().all(|m| m.reachable == Some(true))
                })
            })
        })
        .with_context(|| format!("hosts 0 and 2 never connected:\n{}", site.describe()))?;
        Ok(())
    });
}

/// `muster transfer` on the leader hands leadership to another voter; a follower asked to hand
/// it to the leader itself refuses, naming it.
#[test]
fn transfer_moves_leadership_and_refuses_a_transfer_to_the_leader() {
    scenario("mf-h", 3, SiteOptions::default(), |site| {
        let all = site.all();
        site.start_all()?;
        for round in 0..3 {
            let formed = site.wait_formed(FORM_TIMEOUT, &all)?;
            let leader = formed.leader_host().context("leader is a site host")?;
            let follower = (0..3).find(|i| *i != leader).context("a follower")?;
            let target = formed
                .views
                .iter()
                .find(|(i, _)| *i == follower)
                .context("view")?
                .1
                .node_id
                .clone();

            // A follower forwards transfers to its leader (tests/tests/ops.rs shows one moving
            // leadership); one to the leader itself is refused there, saying why.
            let socket = site.host(follower).socket.display().to_string();
            let refused = std::process::Command::new(site.muster().path())
                .args(["transfer", "--socket", &socket, "--to", &formed.leader_id])
                .output()?;
            ensure!(
                !refused.status.success(),
                "a transfer to the leader itself was accepted"
            );
            let msg = String::from_utf8_lossy(&refused.stderr);
            ensure!(
                msg.contains("already leads") && msg.contains(&formed.leader_id),
                "refusal: {msg}"
            );

            let socket = site.host(leader).socket.display().to_string();
            let out = site
                .muster()
                .run(&["transfer", "--socket", &socket, "--to", &target])?;
            ensure!(out.contains("leadership moved"), "round {round}: {out}");
            let after = site.wait_formed(FORM_TIMEOUT, &all)?;
            ensure!(
                after.leader_id == target,
                "round {round}: leader is {} not {target}",
                after.leader_id
            );
            ensure!(after.cluster_id == formed.cluster_id, "cluster changed");
        }
        Ok(())
    });
}

/// Runs `muster reset --config <host i's config> [--yes]`; returns (exit code, stdout, stderr).
fn reset(site: &Site, i: usize, yes: bool) -> Result<(Option<i32>, String, String)> {
    let mut cmd = std::process::Command::new(site.muster().path());
    cmd.arg("reset")
        .arg("--config")
        .arg(&site.host(i).config_path);
    if yes {
        cmd.arg("--yes");
    }
    let (status, out, err) = muster_testbed::cli::run_with_timeout(cmd, Duration::from_secs(10))?;
    Ok((status.code(), out, err))
}

/// Identity continuity (issue 8, item 4): a member whose `identity.key` was deleted is refused at
/// start (exit 2) with a message naming the store, the missing key and `muster reset`, and no
/// new identity is made. `muster reset` refuses while the agent runs, only lists without
/// `--yes` (exit 2), and with `--yes` removes exactly the store and the identity; the host then
/// joins the same cluster as a new host with a new id. Its old id stays in the membership as an
/// unreachable member until the operator removes it (`muster remove OLD_ID`): then the cluster
/// has three members again, the new identity among its three voters.
#[test]
fn deleted_identity_is_refused_until_reset() {
    scenario("mf-i", 3, SiteOptions::default(), |site| {
        let all = site.all();
        site.start_all()?;
        let formed = site.wait_formed(FORM_TIMEOUT, &all)?;
        let victim = (0..3)
            .find(|i| Some(*i) != formed.leader_host())
            .context("a follower")?;
        let old_id = formed
            .view(victim)
            .context("victim's view")?
            .node_id
            .clone();
        let data_dir = site.host(victim).data_dir.clone();
        let key = data_dir.join("identity.key");
        let store = data_dir.join("raft");

        let (code, _, err) = reset(site, victim, true)?;
        ensure!(
            code == Some(1),
            "reset of a running agent's data_dir: {code:?} {err}"
        );
        ensure!(
            err.contains("agent is running") && key.exists() && store.exists(),
            "reset while running: {err}"
        );

        ensure!(site.terminate(victim)?.success(), "SIGTERM exit");
        std::fs::remove_file(&key)?;
        site.start(victim)?;
        site.wait_until(FORM_TIMEOUT, |s| !s.is_running(victim))?;
        let exit = site.host(victim).last_exit().context("exit status")?;
        ensure!(
            exit.code() == Some(2),
            "agent without its identity exited with {exit:?}"
        );
        let text = site.log(victim);
        let last = text
            .lines()
            .rev()
            .find(|l| l.contains("refusing"))
            .unwrap_or_default();
        let config = site.host(victim).config_path.display().to_string();
        for needle in [
            store.display().to_string(),
            format!("{} is missing", key.display()),
            format!(
                "belongs to cluster {} as member {old_id}",
                formed.cluster_id
            ),
            format!("muster reset --config {config} --yes"),
        ] {
            ensure!(last.contains(&needle), "refusal lacks {needle:?}: {last}");
        }
        ensure!(
            !key.exists(),
            "the refused agent created a new identity anyway"
        );

        let (code, out, _) = reset(site, victim, false)?;
        ensure!(code == Some(2), "reset without --yes exited {code:?}");
        ensure!(
            out.contains(&store.join("log").display().to_string()) && store.exists(),
            "reset without --yes: {out}"
        );
        let (code, out, err) = reset(site, victim, true)?;
        ensure!(code == Some(0), "reset --yes exited {code:?}: {err}");
        ensure!(
            !store.exists() && !key.exists(),
            "left behind after reset: {out}"
        );
        ensure!(data_dir.exists(), "reset removed the data_dir itself");

        site.start(victim)?;
        let mut new_id = String::new();
        site.wait_until(FORM_TIMEOUT, |s| {
            let Ok(v) = s.status_view(victim) else {
                return false;
            };
            new_id = v.node_id.clone();
            v.cluster_id.as_deref() == Some(formed.cluster_id.as_str())
                && v.phase.as_deref() == Some("member")
                && all.iter().filter(|&&i| i != victim).all(|&i| {
                    s.status_view(i).is_ok_and(|o| {
                        o.members.iter().any(|m| m.id == v.node_id)
                            && o.members
                                .iter()
                                .any(|m| m.id == old_id && m.reachable == Some(false))
                    })
                })
        })
        .context("the reset host did not join as a new member")?;
        ensure!(new_id != old_id, "the reset host kept its id {old_id}");
        eprintln!("host {victim}: {old_id} -> {new_id}; the old id stays an unreachable member");

        let leader = formed.leader_host().context("leader")?;
        let socket = site.host(leader).socket.display().to_string();
        let out =
            site.muster()
                .run(&["remove", &old_id, "--socket", &socket, "--wait-secs", "4"])?;
        ensure!(out.contains("removed in"), "muster remove: {out}");
        site.wait_until(FORM_TIMEOUT, |s| {
            all.iter().all(|&i| {
                s.status_view(i).is_ok_and(|v| {
                    v.members.len() == 3
                        && v.members.iter().all(|m| m.id != old_id)
                        && v.members.iter().filter(|m| m.voter).count() == 3
                        && v.members.iter().any(|m| m.id == new_id && m.voter)
                })
            })
        })
        .context("after removing the old id: 3 members, 3 voters, the new id a voter")?;
        Ok(())
    });
}

/// mDNS queries the sniffer heard in `window` from inside host `i`'s (idle) namespace, on the
/// site's LAN, by source address. A query is a DNS message with the QR bit clear.
fn mdns_queries(site: &Site, i: usize, window: Duration) -> Result<Vec<std::net::Ipv4Addr>> {
    use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
    let ns = site.namespace(i).to_string();
    let ip = site.ip(i);
    thread::spawn(move || -> Result<Vec<Ipv4Addr>> {
        muster_testbed::netns::enter(&ns)?;
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 5353)).context("binding 5353")?;
        socket
            .join_multicast_v4(&Ipv4Addr::new(224, 0, 0, 251), &ip)
            .context("joining 224.0.0.251")?;
        let end = Instant::now() + window;
        let mut sources = Vec::new();
        let mut buf = [0u8; 2048];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            socket.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match socket.recv_from(&mut buf) {
                Ok((len, SocketAddr::V4(from))) if len >= 12 && buf[2] & 0x80 == 0 => {
                    sources.push(*from.ip());
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e).context("receiving mDNS"),
            }
        }
        Ok(sources)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the mDNS sniffer panicked"))?
}

/// Once the site is formed its members query mDNS seldom (every 15 s, not every 500 ms; each
/// query is answered by every host, and every device on the LAN receives it all), yet a host
/// plugged in later still finds them at once, because they answer its queries as they come.
#[test]
fn a_formed_site_goes_quiet_on_mdns_and_a_late_host_still_joins() {
    let opts = SiteOptions::default().expected_nodes(3);
    scenario("mf-q", 4, opts, |site| {
        let trio = [0, 1, 2];
        for i in trio {
            site.start(i)?;
        }
        site.wait_formed(FORM_TIMEOUT, &trio)?;
        // The behaviour built for the settled pace sends one query of its own on start.
        thread::sleep(Duration::from_millis(1500));
        let window = Duration::from_secs(6);
        let heard = mdns_queries(site, 3, window)?;
        // At 500 ms, about 12: the host whose timer runs out first asks, and every answer
        // heard resets the others' timers.
        ensure!(
            heard.len() <= trio.len(),
            "a formed site sent {} mDNS queries in {window:?} (from {heard:?}); \
             expected at most one per member",
            heard.len()
        );
        let started = Instant::now();
        site.start(3)?;
        let all = site.all();
        let formed = site.wait_formed(FORM_TIMEOUT, &all)?;
        ensure!(formed.members.len() == 4, "members {:?}", formed.members);
        eprintln!(
            "formed site: {} mDNS queries in {window:?}; the late host was a member after {:?}",
            heard.len(),
            started.elapsed()
        );
        check_identities(site, &formed)
    });
}
