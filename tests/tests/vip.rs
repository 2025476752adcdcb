//! End-to-end VIP tests (issue 4) of the real `muster` binary in network namespaces, with real
//! rtnetlink addresses, a client namespace pinging the VIP, and nftables partitions.
//!
//! Each test builds its own site (prefix `mv2-<letter>`) with `[vip] address = "10.77.0.100/24"`
//! through [`muster_testbed::scenario`], which serializes sites within this binary, prints every
//! host's log tail on failure and removes all namespaces and agents however the test ends.
//! Needs root, iproute2, nftables, iputils-ping and a built binary (`cargo build --bin muster`,
//! or `MUSTER_BIN`). Deadlines are generous: these tests check correctness, the benchmark
//! (`muster-vip-bench`) measures speed.

use std::net::IpAddr;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use muster_testbed::{overrides, scenario, Site, SiteOptions};

/// Bound for a site to (re)form.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for the VIP to settle on one host after a change.
const HOLDER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for an address removed by hand to come back, or a stale one to go.
const ADDRESS_TIMEOUT: Duration = Duration::from_secs(10);
/// Partition/heal cycles of the two-holder test (the issue asks for at least 20).
const PARTITION_CYCLES: usize = 20;
/// What the agent logs when it finds a VIP a previous run left on its interface.
const STALE_VIP_LOG: &str = "removing a VIP left on the interface by a previous run";
/// The kernel lifetime the agent gives the VIP (`muster_vip::VIP_ADDRESS_LIFETIME_S`).
const VIP_LIFETIME: Duration = Duration::from_secs(3);
/// The kernel's address expiry work runs about once a second; allow for that and for polling.
const LIFETIME_SLACK: Duration = Duration::from_millis(1500);
/// Bound from a panic to the VIP gone from the panicking host: well under [`VIP_LIFETIME`], so
/// only the panic hook can meet it.
const PANIC_RELEASE_BOUND: Duration = Duration::from_millis(1000);
/// The agent's test fault (debug builds): it panics once this file exists.
const PANIC_FILE_ENV: &str = "MUSTER_TEST_PANIC_FILE";

fn vip_site() -> SiteOptions {
    SiteOptions::default().vip(false).client()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Forms the site and returns the VIP holder (checked to be the leader).
fn form_with_holder(site: &mut Site) -> Result<usize> {
    site.start_all()?;
    let all = site.all();
    let formed = site.wait_formed(FORM_TIMEOUT, &all)?;
    let holder = site.wait_one_holder(HOLDER_TIMEOUT, &all)?;
    let leader = site.status_view(holder)?;
    ensure!(
        leader.leader_id.as_deref() == Some(leader.node_id.as_str()),
        "holder {holder} is not the leader"
    );
    ensure!(
        formed.cluster_id == leader.cluster_id.clone().unwrap_or_default(),
        "cluster changed while waiting for the holder"
    );
    Ok(holder)
}

/// The MAC of `eth0` in `ns`.
fn mac_of(ns: &str) -> Result<String> {
    let out = muster_testbed::netns::ip(&["-n", ns, "-o", "link", "show", "dev", "eth0"])?;
    let mac = out
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .with_context(|| format!("no MAC in {out:?}"))?;
    Ok(mac.to_owned())
}

/// (a) After formation the VIP (IPv4 and IPv6) is on exactly one host, that host is the
/// leader, every host's status names it, and the client reaches it at the holder's MAC.
#[test]
fn vip_sits_on_the_leader_only() {
    scenario(
        "mv2-a",
        3,
        SiteOptions::default().vip(true).client(),
        |site| {
            let holder = form_with_holder(site)?;
            let all = site.all();
            ensure!(
                site.vip_holders()? == [holder],
                "holders {:?}",
                site.vip_holders()?
            );
            let on = site.vip_addresses_on(holder)?;
            ensure!(
                on.len() == 2,
                "holder carries {on:?}, expected the IPv4 and the IPv6 VIP"
            );
            let view = site.status_view(holder)?;
            let vip = view.vip.context("holder has no vip status")?;
            ensure!(
                vip.address.contains("10.77.0.100/24") && vip.address.contains("fd77::100/64"),
                "vip.address {:?}",
                vip.address
            );
            ensure!(
                vip.lease_left_ms.is_some_and(|ms| ms > 0),
                "holder's lease_left_ms {:?}",
                vip.lease_left_ms
            );
            for i in all.iter().copied().filter(|&i| i != holder) {
                let v = site.status_view(i)?.vip.context("no vip status")?;
                ensure!(!v.held_here, "host {i} claims held_here");
            }
            let (ok4, out4) = site.client_exec(
                &[
                    "ping",
                    "-n",
                    "-c",
                    "3",
                    "-i",
                    "0.2",
                    "-W",
                    "2",
                    "10.77.0.100",
                ],
                Duration::from_secs(15),
            )?;
            ensure!(ok4, "client cannot ping the IPv4 VIP:\n{out4}");
            let (ok6, out6) = site.client_exec(
                &[
                    "ping",
                    "-6",
                    "-n",
                    "-c",
                    "3",
                    "-i",
                    "0.2",
                    "-W",
                    "2",
                    "fd77::100",
                ],
                Duration::from_secs(15),
            )?;
            ensure!(ok6, "client cannot ping the IPv6 VIP:\n{out6}");
            let neigh = muster_testbed::netns::ip(&[
                "-n",
                site.client_namespace()?,
                "neigh",
                "show",
                "10.77.0.100",
            ])?;
            let mac = mac_of(site.namespace(holder))?;
            ensure!(
                neigh.contains(&mac),
                "client resolves the VIP to {neigh:?}, holder {holder}'s MAC is {mac}"
            );
            ensure!(
                site.vip_holders()? == [holder],
                "the VIP moved during the checks"
            );
            // The holder re-reads its link twice a second; netlink-packet-route's warning about
            // the kernel's newer IPv6 settings used to land in the journal each time.
            let log = site.log(holder);
            ensure!(
                !log.contains("IFLA_INET6_CONF"),
                "the holder's log repeats netlink parse warnings:\n{}",
                log.lines()
                    .filter(|l| l.contains("WARN"))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            Ok(())
        },
    );
}

/// (b) The address deleted by hand on the holder (both families) is put back, and logged.
#[test]
fn vip_removed_by_hand_comes_back() {
    scenario(
        "mv2-b",
        3,
        SiteOptions::default().vip(true).client(),
        |site| {
            let holder = form_with_holder(site)?;
            let ns = site.namespace(holder).to_owned();
            for (family, cidr) in [("-4", "10.77.0.100/24"), ("-6", "fd77::100/64")] {
                let ip: IpAddr = cidr.split('/').next().unwrap_or_default().parse()?;
                muster_testbed::netns::ip(&[
                    "-n", &ns, family, "addr", "del", cidr, "dev", "eth0",
                ])?;
                let removed_at = Instant::now();
                wait_for(
                    ADDRESS_TIMEOUT,
                    &format!("{cidr} put back on host {holder}"),
                    || Ok(site.vip_addresses_on(holder)?.contains(&ip)),
                )?;
                eprintln!("{cidr} back after {:?}", removed_at.elapsed());
            }
            ensure!(
                site.log(holder).contains("re-added"),
                "the agent did not log the re-add"
            );
            let again = site.wait_one_holder(HOLDER_TIMEOUT, &site.all())?;
            ensure!(again == holder, "the VIP moved from {holder} to {again}");
            Ok(())
        },
    );
}

/// (c) SIGTERM: the holder's interface no longer has the VIP once the agent has exited, and
/// another host holds it soon.
#[test]
fn sigterm_releases_the_vip() {
    scenario("mv2-c", 3, vip_site(), |site| {
        let holder = form_with_holder(site)?;
        let exit = site.terminate(holder)?;
        ensure!(exit.success(), "agent exited with {exit:?} on SIGTERM");
        let left = site.vip_addresses_on(holder)?;
        ensure!(
            left.is_empty(),
            "host {holder} still carries {left:?} after exiting"
        );
        let rest: Vec<usize> = site.all().into_iter().filter(|&i| i != holder).collect();
        let next = site.wait_one_holder(HOLDER_TIMEOUT, &rest)?;
        ensure!(next != holder, "no other host took the VIP");
        ensure!(
            !site.has_vip(holder)?,
            "host {holder} carries the VIP again"
        );
        Ok(())
    });
}

/// (d) SIGKILL the holder and cut its link: another host takes the VIP and the client's pings
/// resume; the killed host, restarted at once (still cut off, well within the address lifetime),
/// removes the stale VIP it finds on its interface before it can lead again.
#[test]
fn killed_and_cut_off_holder_fails_over() {
    scenario("mv2-d", 3, vip_site(), |site| {
        let holder = form_with_holder(site)?;
        let prober = site.prober()?;
        prober.wait_steady(
            Duration::from_secs(1),
            Duration::from_millis(200),
            HOLDER_TIMEOUT,
        )?;

        site.kill(holder)?;
        site.set_link(holder, false)?;
        let cut = Instant::now();
        ensure!(
            site.has_vip(holder)?,
            "a SIGKILLed host lost its VIP at once, without an agent"
        );
        site.start(holder)?;
        let rest: Vec<usize> = site.all().into_iter().filter(|&i| i != holder).collect();
        let next = site.wait_one_holder(HOLDER_TIMEOUT, &rest)?;
        let resumed = prober.wait_reply_after(cut, HOLDER_TIMEOUT)?;
        let gap = prober.gap(cut - Duration::from_millis(50), resumed);
        eprintln!("VIP moved {holder} -> {next}; client outage {gap:?}");
        prober.wait_steady(
            Duration::from_secs(1),
            Duration::from_millis(200),
            HOLDER_TIMEOUT,
        )?;

        wait_for(
            ADDRESS_TIMEOUT,
            "restarted agent removes its stale VIP",
            || Ok(!site.has_vip(holder)?),
        )?;
        ensure!(
            site.log(holder).contains(STALE_VIP_LOG),
            "the restarted agent did not find and remove the stale VIP (it expired first?)"
        );
        site.set_link(holder, true)?;
        site.wait_formed(FORM_TIMEOUT, &site.all())?;
        let after = site.wait_one_holder(HOLDER_TIMEOUT, &site.all())?;
        ensure!(
            after == next,
            "the VIP moved from {next} to {after} when host {holder} rejoined"
        );
        prober.wait_reply_after(Instant::now(), HOLDER_TIMEOUT)?;
        prober.stop()
    });
}

/// (e) Partition the holder from the other voters while the client still reaches every host,
/// heal, ≥ 20 times. A checker samples every host's addresses the whole time, one rtnetlink dump
/// after another with a 0.1 ms pause per round at real-time priority: one sample of each host
/// every ~0.15 ms. Its resolution (the longest time between two samples of one host) is printed
/// with each run: a few ms at worst, once up to ~40 ms on a shared, loaded 2-core VM where even a
/// real-time thread is sometimes held up; hand-overs were ≥ 27 ms apart in every run. It must find no instant with two holders and no hand-over
/// closer than its resolution could tell; after each heal exactly one host holds the VIP again.
/// The checker itself is first shown to catch two holders, with addresses added by hand before
/// any agent runs.
#[test]
fn partitions_never_make_two_holders() {
    scenario("mv2-e", 3, vip_site(), |site| {
        checker_catches_two_holders(site)?;
        let mut holder = form_with_holder(site)?;
        let all = site.all();
        let checker = site.holder_checker()?;
        let prober = site.prober()?;
        for cycle in 0..PARTITION_CYCLES {
            let others: Vec<usize> = all.iter().copied().filter(|&i| i != holder).collect();
            site.partition(&[holder], &others)?;
            let cut = Instant::now();
            wait_for(HOLDER_TIMEOUT, "a majority host adds the VIP", || {
                Ok(others.iter().any(|&i| site.has_vip(i).unwrap_or(false)))
            })?;
            let added = cut.elapsed();
            let next = site
                .wait_one_holder(HOLDER_TIMEOUT, &others)
                .with_context(|| format!("cycle {cycle}: majority side never held the VIP"))?;
            wait_for(HOLDER_TIMEOUT, "the cut-off holder drops the VIP", || {
                Ok(!site.has_vip(holder)?)
            })?;
            let moved = cut.elapsed();
            // The client still reaches the majority's new holder.
            prober.wait_reply_after(Instant::now(), HOLDER_TIMEOUT)?;
            site.heal()?;
            site.wait_formed(FORM_TIMEOUT, &all)?;
            let healed = site
                .wait_one_holder(HOLDER_TIMEOUT, &all)
                .with_context(|| format!("cycle {cycle}: after the heal"))?;
            ensure!(
                healed == next,
                "cycle {cycle}: the VIP moved from {next} to {healed} on heal"
            );
            eprintln!(
                "cycle {cycle}: {holder} cut off -> {next} added the VIP after {added:?}, all \
                 agree after {moved:?}; {} samples",
                checker.samples()
            );
            holder = healed;
        }
        let report = checker.stop()?;
        eprintln!("two-holder checker: {}", report.summary());
        eprintln!("holder runs: {}", report.timeline());
        ensure!(
            report.overlaps.is_empty(),
            "two hosts held the VIP at once: {:?}",
            report.overlaps
        );
        ensure!(
            report.unresolved.is_empty(),
            "hand-overs closer than the sampling resolution: {:?}",
            report.unresolved
        );
        ensure!(
            report.runs.len() > PARTITION_CYCLES,
            "the checker saw only {} holder runs over {PARTITION_CYCLES} cycles",
            report.runs.len()
        );
        prober.stop()
    });
}

/// Before any agent runs: the checker flags VIP addresses put on two hosts at once by hand.
fn checker_catches_two_holders(site: &Site) -> Result<()> {
    let checker = site.holder_checker()?;
    let add = |i: usize, verb: &str| {
        muster_testbed::netns::ip(&[
            "-n",
            site.namespace(i),
            "addr",
            verb,
            "10.77.0.100/24",
            "dev",
            "eth0",
        ])
    };
    add(0, "add")?;
    thread::sleep(Duration::from_millis(100));
    add(1, "add")?;
    thread::sleep(Duration::from_millis(200));
    add(0, "del")?;
    add(1, "del")?;
    thread::sleep(Duration::from_millis(50));
    let report = checker.stop()?;
    ensure!(
        report.overlaps.len() == 1 && report.runs.len() == 2,
        "the checker missed two holders made by hand: {}",
        report.summary()
    );
    Ok(())
}

/// (f) The site rule as a user meets it: a lone host of a site expecting three forms a cluster
/// after the settle time and leads it, but never puts the VIP on its interface (it cannot tell it
/// is not one part of a split site), and `muster status` says why. A second host joining is not
/// enough either: before the site forms, holding needs more than half of any site the config
/// allows (up to 2 × 3 − 1 hosts). An operator who vouches for the site (`muster plan start`)
/// forms it with the two, and the VIP comes up.
#[test]
fn a_lone_host_of_a_larger_site_holds_the_vip_back_and_says_why() {
    scenario(
        "mv2-f",
        2,
        SiteOptions::default().vip(false).expected_nodes(3),
        |site| {
            for i in site.all() {
                site.write_config(i, &overrides([("formation.settle", "1s")]))?;
            }
            site.start(0)?;
            let mut reason = String::new();
            wait_for(FORM_TIMEOUT, "the lone host leads its own cluster", || {
                let Ok(s) = site.status_view(0) else {
                    return Ok(false); // still starting
                };
                let leads = s.leader_id.as_deref() == Some(s.node_id.as_str());
                reason = s.vip.and_then(|v| v.held_back).unwrap_or_default();
                Ok(leads && reason.contains("reaches 1 hosts of a site of up to 5"))
            })
            .with_context(|| format!("last reason given: {reason:?}"))?;
            let human = site.status_human(0)?;
            ensure!(
                human.contains("not held here") && human.contains("reaches 1 hosts"),
                "{human}"
            );
            // Well past the settle wait of the rule: still nothing on the interface.
            thread::sleep(Duration::from_secs(3));
            ensure!(
                site.vip_holders()?.is_empty(),
                "a lone host floated the VIP"
            );
            site.start(1)?;
            wait_for(
                FORM_TIMEOUT,
                "the second host is a member, the VIP still held back",
                || {
                    let Ok(s) = site.status_view(0) else {
                        return Ok(false);
                    };
                    let Some(leader) = s.leader_id.clone() else {
                        return Ok(false);
                    };
                    let Some(i) = site
                        .all()
                        .into_iter()
                        .find(|&i| site.node_id(i).as_deref() == Some(leader.as_str()))
                    else {
                        return Ok(false);
                    };
                    reason = site
                        .status_view(i)?
                        .vip
                        .and_then(|v| v.held_back)
                        .unwrap_or_default();
                    Ok(s.members.len() == 2
                        && reason.contains("reaches 2 hosts of a site of up to 5"))
                },
            )
            .with_context(|| format!("last reason given: {reason:?}"))?;
            ensure!(
                site.vip_holders()?.is_empty(),
                "two of three floated the VIP before the site formed"
            );
            let socket = site.host(0).socket.display().to_string();
            let out = site.muster().run(&["plan", "start", "--socket", &socket])?;
            ensure!(out.contains("go ahead with the members there are"), "{out}");
            let holder = site.wait_one_holder(HOLDER_TIMEOUT, &site.all())?;
            let v = site.status_view(holder)?.vip.context("vip status")?;
            ensure!(
                v.held_back.is_none(),
                "holder still holds back: {:?}",
                v.held_back
            );
            Ok(())
        },
    );
}

/// The panic fault file of host `i` (in its own directory).
fn panic_file(site: &Site, i: usize) -> std::path::PathBuf {
    site.host(i).dir.join("panic-now")
}

/// (g) A panicking holder (test fault, debug builds: the event loop panics once a file exists).
/// Its panic hook removes the VIP before the process exits: the two-holder checker, sampling
/// every host's addresses, dates the end of the panicking host's run, which must come within
/// [`PANIC_RELEASE_BOUND`] of the fault — far sooner than the address lifetime could — and it
/// must never see two holders while another host takes over.
#[test]
fn a_panicking_holder_releases_the_vip_before_it_exits() {
    scenario("mv2-g", 3, vip_site(), |site| {
        for i in site.all() {
            let file = panic_file(site, i).display().to_string();
            site.set_env(i, PANIC_FILE_ENV, &file);
        }
        let holder = form_with_holder(site)?;
        let checker = site.holder_checker()?;
        let checking_since = checker.started();
        thread::sleep(Duration::from_millis(300));
        let fault = Instant::now();
        std::fs::write(panic_file(site, holder), b"")?;
        wait_for(ADDRESS_TIMEOUT, "the panicking agent exits", || {
            Ok(!site.is_running(holder))
        })?;
        let exited = fault.elapsed();
        let left = site.vip_addresses_on(holder)?;
        let rest: Vec<usize> = site.all().into_iter().filter(|&i| i != holder).collect();
        let next = site.wait_one_holder(HOLDER_TIMEOUT, &rest)?;
        thread::sleep(Duration::from_millis(300));
        let report = checker.stop()?;
        eprintln!("two-holder checker: {}", report.summary());
        eprintln!("holder runs: {}", report.timeline());
        let log = site.log(holder);
        ensure!(
            log.contains("panicked") && log.contains("test fault"),
            "no panic message in host {holder}'s log"
        );
        ensure!(
            left.is_empty(),
            "host {holder} still carries {left:?} after its agent panicked and exited"
        );
        let since_start = fault.duration_since(checking_since);
        let run = report
            .runs
            .iter()
            .rfind(|r| r.host == holder)
            .context("the checker never saw the holder carry the VIP")?;
        let gone = run.possible_to.saturating_sub(since_start);
        eprintln!(
            "panic fault -> VIP gone from host {holder} within {gone:?} (agent exited after \
             {exited:?}, exit status {:?}); {next} holds it now",
            site.host(holder).last_exit()
        );
        ensure!(
            gone <= PANIC_RELEASE_BOUND,
            "the VIP stayed {gone:?} after the panic (bound {PANIC_RELEASE_BOUND:?})"
        );
        ensure!(
            report.overlaps.is_empty(),
            "two hosts held the VIP at once: {:?}",
            report.overlaps
        );
        Ok(())
    });
}

/// (h) SIGKILL the holder and leave its network up, so nothing but the kernel can remove its
/// address: the address lifetime the agent kept renewing runs out and the kernel deletes it
/// within lifetime + slack; the time is measured and printed. (Until then the dead host still
/// answers for the VIP locally while the new holder announces it — the stated limit.)
#[test]
fn a_killed_holders_vip_expires_by_itself() {
    scenario("mv2-h", 3, vip_site(), |site| {
        let holder = form_with_holder(site)?;
        // Held for longer than a lifetime: renewals keep it.
        thread::sleep(VIP_LIFETIME + Duration::from_secs(1));
        ensure!(
            site.vip_holders()? == [holder],
            "the VIP left host {holder} while its agent held it"
        );
        let shown = muster_testbed::netns::ip(&[
            "-n",
            site.namespace(holder),
            "-d",
            "addr",
            "show",
            "dev",
            "eth0",
        ])?;
        let line = shown
            .lines()
            .skip_while(|l| !l.contains("10.77.0.100/"))
            .nth(1)
            .unwrap_or_default();
        ensure!(
            line.contains("valid_lft") && !line.contains("forever"),
            "the VIP has no finite lifetime: {line:?}"
        );
        site.kill(holder)?;
        let killed = Instant::now();
        ensure!(
            site.has_vip(holder)?,
            "the killed host's VIP vanished at once (nothing should remove it but the kernel)"
        );
        let bound = VIP_LIFETIME + LIFETIME_SLACK;
        wait_for(bound, "the killed host's VIP expires", || {
            Ok(!site.has_vip(holder)?)
        })?;
        let gone = killed.elapsed();
        eprintln!(
            "SIGKILL -> VIP gone from the dead host's interface after {gone:?} (lifetime \
             {VIP_LIFETIME:?}, {line})",
            line = line.trim()
        );
        let rest: Vec<usize> = site.all().into_iter().filter(|&i| i != holder).collect();
        let next = site.wait_one_holder(HOLDER_TIMEOUT, &rest)?;
        site.start(holder)?;
        site.wait_formed(FORM_TIMEOUT, &site.all())?;
        let after = site.wait_one_holder(HOLDER_TIMEOUT, &site.all())?;
        ensure!(
            after == next,
            "the VIP moved from {next} to {after} when host {holder} rejoined"
        );
        Ok(())
    });
}

/// (i) A host outside the site (the client, no agent, no key) takes the VIP too and announces
/// it with `arping -U` (iputils): the holder's `muster status` says CONFLICT naming that MAC,
/// in `--json` too, and logs it as an error; the holder keeps the VIP (a conflict changes no
/// lease); the other members, which do not hold it, report no conflict.
#[test]
fn a_host_stealing_the_vip_shows_as_a_conflict() {
    scenario("mv2-i", 3, vip_site(), |site| {
        let holder = form_with_holder(site)?;
        let client = site.client_namespace()?.to_owned();
        let client_mac = mac_of(&client)?;
        let conflict = |i: usize| -> Result<Option<String>> {
            Ok(site.status(i)?["site_conflict"].as_str().map(str::to_owned))
        };
        ensure!(
            conflict(holder)?.is_none(),
            "a conflict before anyone stole the VIP"
        );
        muster_testbed::netns::ip(&[
            "-n",
            &client,
            "addr",
            "add",
            "10.77.0.100/24",
            "dev",
            "eth0",
        ])?;
        let (ok, out) = site.client_exec(
            &["arping", "-U", "-c", "3", "-I", "eth0", "10.77.0.100"],
            Duration::from_secs(10),
        )?;
        ensure!(ok, "arping failed: {out}");
        let expected = format!("another host (MAC {client_mac}) answers for the VIP 10.77.0.100");
        wait_for(
            Duration::from_secs(10),
            "the holder reports the conflict",
            || Ok(conflict(holder)?.is_some_and(|c| c.contains(&expected))),
        )?;
        let human = site.status_human(holder)?;
        ensure!(
            human
                .lines()
                .any(|l| l.starts_with("CONFLICT") && l.contains(&expected)),
            "{human}"
        );
        ensure!(
            site.log(holder).contains("VIP conflict"),
            "the holder did not log the conflict"
        );
        ensure!(
            site.wait_one_holder(HOLDER_TIMEOUT, &site.all())? == holder,
            "the VIP moved"
        );
        for i in site.all().into_iter().filter(|&i| i != holder) {
            let c = conflict(i)?;
            ensure!(c.is_none(), "host {i} (not holding) reports {c:?}");
        }
        Ok(())
    });
}
