//! End-to-end Dynamic DNS tests (issue 10) of the real `muster` binary in network namespaces,
//! against a real BIND `named` on the site's bridge ([`muster_testbed::bind`]).
//!
//! Each test builds its own site (prefix `mdd-<letter>`) through [`muster_testbed::scenario`]
//! (serialized within this binary, log tails on failure, everything removed however the test
//! ends) and a [`SiteBind`] (dropped before the site). The agents get `[ddns]` pointing at
//! 10.77.0.53 and, except in the last test, no `[vip]`, so the name must point at the leader's
//! own address. Needs root, iproute2, nftables, bind9 and bind9-dnsutils (scripts/lib.sh
//! need_tools) and a built binary (`cargo build --bin muster`, or `MUSTER_BIN`). Deadlines are
//! generous: these tests check behaviour; `muster-ddns-bench` measures speed.

use std::net::IpAddr;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use muster_testbed::bind::{self, dns_status, wait_dns_holder, SiteBind, NAME};
use muster_testbed::{partition, scenario, Site, SiteOptions};

/// Bound for a site to (re)form.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for a new leader to hold the endpoint after a failover.
const HOLDER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for the server to serve a holder's record.
const RECORD_TIMEOUT: Duration = Duration::from_secs(15);
/// Failovers of test (a).
const FAILOVERS: usize = 10;

/// Writes `[ddns]` (signed with `key`) into every host's config, starts the site and waits
/// for it to form and for one host to hold the endpoint; returns that host.
fn form(site: &mut Site, bind: &SiteBind, key: &std::path::Path) -> Result<usize> {
    for i in site.all() {
        site.write_config(i, &bind.ddns_overrides(key))?;
    }
    site.start_all()?;
    let all = site.all();
    site.wait_formed(FORM_TIMEOUT, &all)?;
    wait_dns_holder(site, HOLDER_TIMEOUT, &all)
}

fn host_addr(site: &Site, i: usize) -> IpAddr {
    IpAddr::V4(site.ip(i))
}

/// Waits until the server serves host `i`'s address stamped with its name.
fn wait_record_of(site: &Site, bind: &SiteBind, i: usize) -> Result<Duration> {
    bind.wait_record(RECORD_TIMEOUT, &[host_addr(site, i)], &format!("h{i}"))
}

/// The `dns.<key>` string of host `i`'s status.
fn dns_field(site: &Site, i: usize, key: &str) -> Result<String> {
    let d = dns_status(site, i)?;
    Ok(match d.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    })
}

/// Prints what the agents' updaters and leases and `named` logged since `since_us` (µs since
/// the epoch): the evidence when a failover was slow.
fn explain_slow(site: &Site, bind: &SiteBind, since_us: u64, what: &str) {
    eprintln!("----- slow: {what}; logs since the stop:");
    for i in site.all() {
        for line in site.log(i).lines() {
            let relevant =
                line.contains("dns{") || line.contains("lease") || line.contains("SIGTERM");
            if relevant && bind::log_time_us(line).is_some_and(|t| t >= since_us) {
                eprintln!("h{i}: {line}");
            }
        }
    }
    let log = bind.log();
    let lines: Vec<&str> = log.lines().collect();
    eprintln!(
        "named (last 20 lines):\n{}",
        lines[lines.len().saturating_sub(20)..].join("\n")
    );
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes.
fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// (a) The record follows the leader over ten SIGKILL failovers (and a SIGTERM stop), with
/// the configured TTL; (c) after a partition that
/// cut the leader from its peers and from the server heals, the record names the current
/// leader, not the deposed one; (d) `named` restarted from the zone file it had before any
/// update (no journal) is caught up within seconds, and while it is down the holder's status
/// says the server is unreachable.
#[test]
fn record_follows_the_leader_through_failovers_partitions_and_a_server_restart() {
    scenario("mdd-a", 3, SiteOptions::default(), |site| {
        let bind = SiteBind::start(site)?;
        let key = bind.key_file().to_path_buf();
        let mut leader = form(site, &bind, &key)?;
        let all = site.all();
        let took = wait_record_of(site, &bind, leader)?;
        eprintln!("formed: h{leader} holds; record served after {took:?}");
        // The records carry `[ddns] ttl` (5 s).
        let answer = bind.dig(&["+noall", "+answer", NAME, "A"])?;
        ensure!(
            answer.split_whitespace().nth(1) == Some("5"),
            "dig answer {answer:?}: TTL is not 5"
        );
        let status = site.status_human(leader)?;
        ensure!(
            status.contains(&format!("dns       {NAME} -> {}", site.ip(leader)))
                && status.contains("updated here"),
            "human status of the holder has no dns line naming it:\n{status}"
        );
        let follower = (leader + 1) % site.len();
        let status = site.status_human(follower)?;
        ensure!(
            status.contains(&format!("dns       {NAME} (not read here")),
            "human status of a follower that never held:\n{status}"
        );
        ensure!(
            dns_status(site, follower)?["holding_term"].is_null(),
            "follower's dns status {}",
            dns_status(site, follower)?
        );

        // (a) Ten failovers.
        for round in 0..FAILOVERS {
            let killed_at = Instant::now();
            let killed_us = bind::unix_us();
            site.kill(leader)?;
            let others: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
            let next = wait_dns_holder(site, HOLDER_TIMEOUT, &others)?;
            wait_record_of(site, &bind, next)?;
            let took = killed_at.elapsed();
            if took > Duration::from_millis(1500) {
                explain_slow(
                    site,
                    &bind,
                    killed_us,
                    &format!("failover {round}: {took:?}"),
                );
            }
            let d = dns_status(site, next)?;
            ensure!(
                d["last_result"] == "ok" && d["stale"] == false,
                "round {round}: new holder h{next}'s dns status {d}"
            );
            ensure!(
                d["served_by"] == format!("h{next}").as_str()
                    && d["served_term"] == d["holding_term"],
                "round {round}: status does not show its own stamp: {d}"
            );
            eprintln!("failover {round}: h{leader} -> h{next}, record after {took:?}");
            site.start(leader)?;
            site.wait_formed(FORM_TIMEOUT, &all)?;
            leader = next;
        }

        // A planned stop (SIGTERM) moves the record too.
        let stopped_us = bind::unix_us();
        site.terminate(leader)?;
        let others: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
        let next = wait_dns_holder(site, HOLDER_TIMEOUT, &others)?;
        let took = wait_record_of(site, &bind, next)?;
        if took > Duration::from_millis(1000) {
            explain_slow(site, &bind, stopped_us, &format!("SIGTERM: {took:?}"));
        }
        eprintln!("SIGTERM: h{leader} -> h{next}, record {took:?} after the new holder was seen");
        site.start(leader)?;
        site.wait_formed(FORM_TIMEOUT, &all)?;

        // (c) Partition the leader from its peers and from the DNS server.
        let old = wait_dns_holder(site, HOLDER_TIMEOUT, &all)?;
        let old_term = dns_status(site, old)?["holding_term"].as_u64().unwrap_or(0);
        let others: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
        let mut far: Vec<String> = others.iter().map(|&i| site.host(i).port.clone()).collect();
        far.push(bind.port().to_owned());
        partition::apply(
            site.bridge_namespace(),
            &[site.host(old).port.clone()],
            &far,
        )?;
        let new = wait_dns_holder(site, HOLDER_TIMEOUT, &others)?;
        wait_record_of(site, &bind, new)?;
        let new_term = dns_status(site, new)?["holding_term"].as_u64().unwrap_or(0);
        ensure!(new_term > old_term, "term {new_term} after {old_term}");
        eprintln!("partition: h{old} (term {old_term}) cut; h{new} holds term {new_term}");
        // The deposed leader lost its lease and released; it says it does not hold.
        wait_for(
            Duration::from_secs(10),
            "the cut-off leader releasing",
            || Ok(dns_status(site, old)?["holding_term"].is_null()),
        )?;
        partition::heal(site.bridge_namespace())?;
        site.wait_formed(FORM_TIMEOUT, &all)?;
        // For several re-check intervals after the heal the record still names the new leader.
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let holder = wait_dns_holder(site, HOLDER_TIMEOUT, &all)?;
            ensure!(holder != old, "the deposed leader h{old} holds again");
            ensure!(
                bind.dig_addrs()? == [host_addr(site, holder)],
                "after the heal the server serves {:?}, stamp {:?}; leader h{holder}",
                bind.dig_addrs()?,
                bind.dig_stamp()?
            );
            thread::sleep(Duration::from_millis(250));
        }
        leader = wait_dns_holder(site, HOLDER_TIMEOUT, &all)?;

        // (d) named stopped: the holder reports it; restarted from the old zone: caught up.
        bind.stop_named()?;
        wait_for(
            Duration::from_secs(15),
            "the holder reporting the server unreachable",
            || {
                let d = dns_status(site, leader)?;
                let r = d["last_result"].as_str().unwrap_or_default().to_owned();
                Ok(r.contains("unreachable") && d["stale"] == true)
            },
        )?;
        let human = site.status_human(leader)?;
        ensure!(
            human.contains("STALE") && human.contains("unreachable"),
            "human status while named is down:\n{human}"
        );
        let restarted = Instant::now();
        bind.restart_with_old_zone()?;
        ensure!(
            bind.dig_addrs()?.is_empty() || bind.dig_addrs()? == [host_addr(site, leader)],
            "old zone serves {:?}",
            bind.dig_addrs()?
        );
        let took = wait_record_of(site, &bind, leader)?;
        ensure!(
            restarted.elapsed() < Duration::from_secs(10),
            "caught up only after {:?}",
            restarted.elapsed()
        );
        eprintln!("server restarted with the old zone: record back after {took:?}");
        wait_for(Duration::from_secs(10), "status ok again", || {
            Ok(dns_status(site, leader)?["last_result"] == "ok")
        })?;
        Ok(())
    });
}

/// (b) With a TSIG key the server does not accept (its name, another secret), the holder's
/// status shows the server's BADSIG refusal, every agent keeps running, and the holder does
/// not hammer the server: at most a few UPDATEs reach `named` in 12 s (slow retry, 10 s).
#[test]
fn wrong_key_is_shown_and_not_retried_in_a_tight_loop() {
    scenario("mdd-b", 3, SiteOptions::default(), |site| {
        let bind = SiteBind::start(site)?;
        let key = bind.wrong_key_file().to_path_buf();
        let holder = form(site, &bind, &key)?;
        wait_for(Duration::from_secs(15), "the holder showing BADSIG", || {
            Ok(dns_field(site, holder, "last_result")?.contains("BADSIG"))
        })?;
        let d = dns_status(site, holder)?;
        ensure!(d["stale"] == true, "holder's dns status {d}");
        let human = site.status_human(holder)?;
        eprintln!("wrong key: holder's status:\n{human}");
        ensure!(
            human.contains("STALE") && human.contains("BADSIG"),
            "human status:\n{human}"
        );
        let before = bind.log_count("BADSIG");
        ensure!(before >= 1, "named logged no BADSIG:\n{}", bind.log());
        thread::sleep(Duration::from_secs(12));
        let during = bind.log_count("BADSIG") - before;
        ensure!(
            during <= 3,
            "{during} refused UPDATEs in 12 s: a tight loop\n{}",
            bind.log()
        );
        ensure!(
            site.running() == site.all(),
            "agents died: {:?}",
            site.running()
        );
        ensure!(bind.dig_addrs()?.is_empty(), "the record was written");
        eprintln!("wrong key: {before} refusal(s) before, {during} in the next 12 s");
        Ok(())
    });
}

/// (e) With `[vip]` (IPv4 and IPv6) and `[ddns]` both, the name resolves to the VIP (A and
/// AAAA), stamped by the leader, and after a failover the stamp names the new leader while the
/// addresses stay the VIP's.
#[test]
fn with_a_vip_the_name_points_at_the_vip() {
    scenario("mdd-e", 3, SiteOptions::default().vip(true), |site| {
        let bind = SiteBind::start(site)?;
        let key = bind.key_file().to_path_buf();
        let leader = form(site, &bind, &key)?;
        let vips = site.vip_ips();
        ensure!(vips.len() == 2, "VIPs {vips:?}");
        bind.wait_record(RECORD_TIMEOUT, &vips, &format!("h{leader}"))?;
        let mut want: Vec<String> = vips.iter().map(ToString::to_string).collect();
        want.sort();
        ensure!(
            dns_status(site, leader)?["target"] == serde_json::json!(want),
            "status target {}",
            dns_status(site, leader)?
        );
        site.kill(leader)?;
        let others: Vec<usize> = site.all().into_iter().filter(|&i| i != leader).collect();
        let next = wait_dns_holder(site, HOLDER_TIMEOUT, &others)?;
        bind.wait_record(RECORD_TIMEOUT, &vips, &format!("h{next}"))
            .context("after the failover")?;
        Ok(())
    });
}
