//! End-to-end tests where the control plane is real: real agents in network namespaces whose
//! install hooks (`tests/hooks/etcd-hook.sh`, through [`muster_testbed::etcd`]) form a real etcd
//! 3.4 cluster in muster's join order — init starts a one-member cluster, each control-plane
//! step runs `etcdctl member add` through the VIP and starts its member, workers check the
//! cluster through the VIP. etcd refuses a second `member add` while an added member has not
//! started, and an added member that never starts costs the cluster its quorum, so a join order
//! that is wrong shows in etcd itself, not only in our records.
//!
//! What an operator checks: every step succeeded (`muster status --json`, `muster plan
//! --json`); etcd has the three control-plane members, all healthy (`etcdctl member list`,
//! `endpoint health --cluster` through the VIP); the hooks' own records show the init first and
//! alone, control-plane joins one at a time, workers after the init. Sites are serialized within
//! this binary and torn down however a test ends, etcd included (prefix `me-`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use muster_testbed::etcd::{EtcdBed, Record};
use muster_testbed::{overrides, scenario, Discovery, Site, SiteOptions};
use serde_json::Value;

/// Formation plus the whole plan (each control-plane join waits out etcd's 5 s rule).
const TIMEOUT: Duration = Duration::from_secs(120);
/// How long etcd may take to report every member healthy once the plan says so.
const ETCD_TIMEOUT: Duration = Duration::from_secs(30);

fn opts() -> SiteOptions {
    SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .control_plane_count(3)
        .vip(false)
}

/// Host `i`'s plan steps from `muster status --json`; `None` while it has no plan.
fn steps(site: &Site, i: usize) -> Option<Vec<Value>> {
    site.status(i).ok()?["plan"]["steps"].as_array().cloned()
}

/// Waits until every host in `hosts` reports a plan of `n` steps, all succeeded.
fn wait_plan_done(site: &Site, hosts: &[usize], n: usize) -> Result<()> {
    site.wait_until(TIMEOUT, |s| {
        hosts.iter().all(|&i| {
            steps(s, i).is_some_and(|st| {
                st.len() == n && st.iter().all(|step| step["state"] == "succeeded")
            })
        })
    })
    .with_context(|| format!("the plan of {n} steps did not complete"))
}

/// (name → role) of the plan as host `i` reports it.
fn roles(site: &Site, i: usize) -> Result<BTreeMap<String, String>> {
    let st = steps(site, i).context("no plan")?;
    Ok(st
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

/// The names of the etcd members the plan implies: init and control-plane hosts, sorted.
fn voters(roles: &BTreeMap<String, String>) -> Vec<String> {
    roles
        .iter()
        .filter(|(_, r)| *r == "init" || *r == "control-plane")
        .map(|(n, _)| n.clone())
        .collect()
}

/// The host index whose agent reports node name `name`.
fn index_of(site: &Site, name: &str) -> Result<usize> {
    site.all()
        .into_iter()
        .find(|&i| muster_testbed::names::node_name(i) == name)
        .with_context(|| format!("no host named {name}"))
}

/// The join order as the hooks recorded it: one init run, first and alone, healthy before any
/// other step started; control-plane runs never overlapped and each started only after the
/// previous control-plane host's etcd was healthy (its probe passed); no host changed role.
fn check_order(records: &[Record]) -> Result<()> {
    let mut ev = records.to_vec();
    ev.sort_by_key(|r| r.at_ns);
    let inits: Vec<&Record> = ev.iter().filter(|r| r.is_start("init")).collect();
    ensure!(inits.len() == 1, "one init run: {ev:#?}");
    let init = &inits[0].host;
    let healthy_after = |host: &str, at: u128| {
        ev.iter()
            .find(|r| r.what == "healthy" && r.host == host && r.at_ns > at)
            .map(|r| r.at_ns)
    };
    let init_end = ev
        .iter()
        .find(|r| r.what == "end" && r.role == "init")
        .context("the init run ended")?;
    ensure!(init_end.detail == "0", "the init hook failed: {init_end:?}");
    let init_healthy = healthy_after(init, init_end.at_ns).context("the init became healthy")?;
    let mut role_of: BTreeMap<&str, &str> = BTreeMap::new();
    for r in ev.iter().filter(|r| r.what == "start") {
        if let Some(old) = role_of.insert(&r.host, &r.role) {
            ensure!(old == r.role, "{} ran as {old} and as {}", r.host, r.role);
        }
        if r.role != "init" {
            ensure!(
                r.at_ns > init_healthy,
                "{} started its {} step before the init was healthy: {ev:#?}",
                r.host,
                r.role
            );
        }
    }
    // Control-plane runs, one at a time; a new host only after the previous host's etcd was
    // healthy (a re-run of the same host after a failure is its own business).
    let mut open: Option<&str> = None;
    let mut last_host: Option<(&str, u128)> = None;
    for r in ev.iter().filter(|r| r.role == "control-plane") {
        match r.what.as_str() {
            "start" => {
                ensure!(open.is_none(), "control-plane joins overlapped: {ev:#?}");
                open = Some(&r.host);
                if let Some((prev, prev_end)) = last_host.filter(|(h, _)| *h != r.host) {
                    let healthy = healthy_after(prev, prev_end)
                        .with_context(|| format!("{prev} never became healthy"))?;
                    ensure!(
                        r.at_ns > healthy,
                        "{} started before {prev} was healthy: {ev:#?}",
                        r.host
                    );
                }
            }
            "end" => {
                open = None;
                last_host = Some((&r.host, r.at_ns));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Distinct hosts that started a step with `role`.
fn hosts_with(records: &[Record], role: &str) -> Vec<String> {
    let mut hosts: Vec<String> = records
        .iter()
        .filter(|r| r.is_start(role))
        .map(|r| r.host.clone())
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// (a) + (d): five hosts form etcd in the join order, every step succeeds and etcd has three
/// healthy members; then a sixth host, started after the plan completed, joins as a worker.
#[test]
fn five_hosts_form_a_real_etcd_cluster_and_a_late_host_joins_as_a_worker() {
    scenario("me-a", 6, opts().expected_nodes(5), |site| {
        let bed = EtcdBed::install(site, &overrides([("kubernetes.retry_backoff", "1s")]))?;
        let first: Vec<usize> = (0..5).collect();
        for &i in &first {
            site.start(i)?;
        }
        site.wait_formed(TIMEOUT, &first)?;
        wait_plan_done(site, &first, 5)?;
        let plan = roles(site, 0)?;
        let members = voters(&plan);
        ensure!(
            members.len() == 3,
            "three etcd voters in the plan: {plan:?}"
        );
        bed.wait_cluster(site, 0, &members, ETCD_TIMEOUT)?;
        let rec = bed.records();
        check_order(&rec)?;
        ensure!(
            hosts_with(&rec, "control-plane").len() == 2 && hosts_with(&rec, "worker").len() == 2,
            "two control-plane joins and two workers: {rec:#?}"
        );
        let socket = site.host(0).socket.display().to_string();
        let human = site.status_human(0)?;
        ensure!(
            human.contains("plan      5 of 5 steps succeeded"),
            "{human}"
        );

        // The late host: appended as a worker, its step checks etcd through the VIP.
        let late = 5;
        let late_name = muster_testbed::names::node_name(late);
        site.start(late)?;
        let all = site.all();
        site.wait_formed(TIMEOUT, &all)?;
        wait_plan_done(site, &all, 6)?;
        let plan = roles(site, 0)?;
        ensure!(
            plan.get(&late_name).map(String::as_str) == Some("worker"),
            "the late host is a worker: {plan:?}"
        );
        let rec = bed.records();
        ensure!(
            rec.iter().any(|r| r.host == late_name
                && r.role == "worker"
                && r.detail == "endpoint-healthy"),
            "the late worker saw a healthy endpoint: {rec:#?}"
        );
        ensure!(
            rec.iter()
                .any(|r| r.host == late_name && r.what == "healthy"),
            "the late worker's probe passed: {rec:#?}"
        );
        check_order(&rec)?;
        bed.check_cluster(site, late, &members)?;
        let table = site.muster().run(&["plan", "--socket", &socket])?;
        ensure!(
            table.lines().filter(|l| l.contains("succeeded")).count() == 6,
            "muster plan:\n{table}"
        );
        Ok(())
    });
}

/// (b): the leader's agent (the init host, holding the VIP) SIGKILLed mid-plan, while the last
/// control-plane join runs (its member started, its hook not yet done — a slow install): no
/// second init, the same etcd cluster, no role change, the plan completes with three healthy
/// members. etcd on the killed host keeps running, as k3s would under systemd.
/// (b2 below kills it during the first join.)
#[test]
fn the_leader_killed_mid_plan_runs_no_second_init_and_keeps_the_etcd_cluster() {
    scenario("me-b", 5, opts(), |site| {
        let bed = EtcdBed::install(site, &overrides([("kubernetes.retry_backoff", "1s")]))?;
        std::fs::write(bed.hold_flag(), "")?;
        let all = site.all();
        site.start_all()?;
        site.wait_formed(TIMEOUT, &all)?;
        site.wait_until(TIMEOUT, |_| {
            bed.records()
                .iter()
                .any(|r| r.detail.starts_with("holding the last join"))
        })
        .context("the last control-plane join did not start")?;
        let cluster_before = bed.cluster_id(site, 0)?;
        let plan_before = roles(site, 0)?;
        let init_name = bed
            .records()
            .into_iter()
            .find(|r| r.is_start("init"))
            .context("init ran")?
            .host;
        let init = index_of(site, &init_name)?;
        let leader = site.status_view(init)?;
        ensure!(
            leader.leader_id.as_deref() == Some(leader.node_id.as_str()),
            "the init host leads during the joins: {}",
            site.describe()
        );
        ensure!(
            steps(site, init).is_some_and(|st| st
                .iter()
                .any(|s| s["role"] == "control-plane" && s["state"] == "running")),
            "a join is running when the leader is killed"
        );
        site.kill(init)?;
        std::fs::remove_file(bed.hold_flag())?;
        std::thread::sleep(Duration::from_secs(1));
        site.start(init)?;

        wait_plan_done(site, &all, 5)?;
        let members = voters(&plan_before);
        let cluster_after = bed.wait_cluster(site, 0, &members, ETCD_TIMEOUT)?;
        ensure!(
            cluster_after == cluster_before,
            "etcd cluster id changed: {cluster_before:x} -> {cluster_after:x}"
        );
        ensure!(
            bed.cluster_id(site, 0)? == cluster_before,
            "endpoint status reports another cluster"
        );
        let rec = bed.records();
        check_order(&rec)?;
        ensure!(
            rec.iter().filter(|r| r.is_start("init")).count() == 1,
            "no second init: {rec:#?}"
        );
        for i in all {
            ensure!(
                roles(site, i)? == plan_before,
                "host {i} reports other roles than before the kill"
            );
        }
        Ok(())
    });
}

/// (c): a control-plane hook fails after its `member add` (leaving a member added but never
/// started) until a flag file is removed: `muster plan --json` shows the failure with the
/// hook's error tail, the step stays failed after `max_attempts` and the next join waits; after
/// `muster plan retry` the re-run starts the member already added and etcd has three healthy
/// members.
#[test]
fn a_failed_join_is_shown_stays_failed_and_is_repaired_by_a_retry() {
    scenario("me-c", 3, opts(), |site| {
        let bed = EtcdBed::install(
            site,
            &overrides([
                ("kubernetes.retry_backoff", toml::Value::from("500ms")),
                ("kubernetes.max_attempts", toml::Value::from(2)),
            ]),
        )?;
        std::fs::write(bed.fail_flag(), "")?;
        let all = site.all();
        site.start_all()?;
        site.wait_formed(TIMEOUT, &all)?;
        let socket = site.host(0).socket.display().to_string();
        let plan_json = |s: &Site| -> Result<Value> {
            let out = s.muster().run(&["plan", "--json", "--socket", &socket])?;
            Ok(serde_json::from_str(out.trim())?)
        };
        let failed = |s: &Site| -> Option<Value> {
            plan_json(s).ok()?["steps"]
                .as_array()?
                .iter()
                .find(|st| st["state"] == "failed" && st["attempts"] == 2)
                .cloned()
        };
        site.wait_until(TIMEOUT, |s| failed(s).is_some())
            .context("a control-plane step failed for good")?;
        let step = failed(site).context("failed step")?;
        let name = step["name"].as_str().context("step name")?.to_owned();
        ensure!(step["role"] == "control-plane", "{step}");
        let error = step["last_error"].as_str().unwrap_or_default();
        ensure!(
            error.contains("injected-failure") && error.contains("exit status: 1"),
            "the error tail names the hook's failure: {step}"
        );
        // No attempt without the operator; the next join waits; etcd shows the member that
        // was added but never started (its cluster has lost quorum meanwhile).
        std::thread::sleep(Duration::from_secs(3));
        let plan = plan_json(site)?;
        let states: Vec<(&str, &str)> = plan["steps"]
            .as_array()
            .context("steps")?
            .iter()
            .map(|s| {
                (
                    s["role"].as_str().unwrap_or_default(),
                    s["state"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        ensure!(
            states.contains(&("control-plane", "failed"))
                && states.contains(&("control-plane", "pending")),
            "one join failed, the next waits: {plan}"
        );
        let starts = |rec: &[Record]| {
            rec.iter()
                .filter(|r| r.host == name && r.what == "start")
                .count()
        };
        ensure!(starts(&bed.records()) == 2, "two attempts, then none");
        let (_, members) = bed.members(site, 0)?;
        let ip = site.ip(index_of(site, &name)?);
        ensure!(
            members
                .iter()
                .any(|m| m.name.is_empty() && m.peer_urls == [format!("http://{ip}:2380")]),
            "etcd lists {name} as added but unstarted: {members:?}"
        );

        std::fs::remove_file(bed.fail_flag())?;
        let out = site
            .muster()
            .run(&["plan", "retry", &name, "--socket", &socket])?;
        ensure!(out.contains("retrying the step of"), "{out}");
        wait_plan_done(site, &all, 3)?;
        let plan = roles(site, 0)?;
        bed.wait_cluster(site, 0, &voters(&plan), ETCD_TIMEOUT)?;
        let rec = bed.records();
        check_order(&rec)?;
        let notes = |what: &str| {
            rec.iter()
                .filter(|r| r.host == name && r.detail.starts_with(what))
                .count()
        };
        ensure!(
            notes("member-added") == 1 && notes("added-earlier") >= 1,
            "the retry started the member added before instead of adding another: {rec:#?}"
        );
        Ok(())
    });
}

/// (b2): the leader's agent SIGKILLed during the *first* control-plane join, the control-plane
/// gate being etcd's own HTTPS `/health` (`health_url` with the test CA). A voter with no etcd
/// yet may win the election and take the VIP — then its own join through the endpoint cannot
/// succeed — so the endpoint must go back to a host whose API server is healthy: an unhealthy
/// leader hands leadership over (`muster-core` `health.rs`). The plan completes with three
/// healthy members, one init, and the VIP ends on a host `muster status` shows healthy.
#[test]
fn the_leader_killed_during_the_first_join_hands_the_endpoint_back_to_a_healthy_host() {
    scenario("me-e", 5, opts(), |site| {
        let ca = site.dir().join("etcd").join("ca.pem");
        let bed = EtcdBed::install(
            site,
            &overrides([
                ("kubernetes.retry_backoff", toml::Value::from("1s")),
                (
                    "kubernetes.health_url",
                    "https://127.0.0.1:2379/health".into(),
                ),
                ("kubernetes.health_ca_file", ca.display().to_string().into()),
            ]),
        )?;
        ensure!(bed.ca() == ca, "the CA is where the config says");
        let all = site.all();
        site.start_all()?;
        site.wait_formed(TIMEOUT, &all)?;
        site.wait_until(TIMEOUT, |_| {
            bed.records().iter().any(|r| r.is_start("control-plane"))
        })
        .context("no control-plane join started")?;
        let init_name = bed
            .records()
            .into_iter()
            .find(|r| r.is_start("init"))
            .context("init ran")?
            .host;
        let init = index_of(site, &init_name)?;
        site.kill(init)?;
        // Down long enough for another voter to win an election and take the VIP.
        let others: Vec<usize> = all.iter().copied().filter(|&i| i != init).collect();
        site.wait_until(TIMEOUT, |s| {
            others.iter().any(|&i| {
                s.status_view(i).is_ok_and(|v| {
                    v.leader_id.is_some() && v.leader_id.as_deref() != s.node_id(init).as_deref()
                })
            })
        })
        .context("no new leader after the kill")?;
        std::thread::sleep(Duration::from_secs(1));
        site.start(init)?;

        wait_plan_done(site, &all, 5)?;
        let members = voters(&roles(site, others[0])?);
        bed.wait_cluster(site, others[0], &members, ETCD_TIMEOUT)?;
        let rec = bed.records();
        ensure!(
            rec.iter().filter(|r| r.is_start("init")).count() == 1,
            "no second init: {rec:#?}"
        );
        // Where the endpoint ends: the leader, whose API server every view calls healthy.
        site.wait_until(TIMEOUT, |s| {
            s.status(others[0]).is_ok_and(|v| {
                let leader = v["leader_id"].as_str().unwrap_or_default().to_owned();
                v["members"].as_array().is_some_and(|ms| {
                    ms.iter()
                        .any(|m| m["id"] == leader.as_str() && m["api"] == "healthy")
                })
            })
        })
        .with_context(|| {
            format!(
                "the endpoint is not on a healthy host:\n{}",
                site.describe()
            )
        })?;
        Ok(())
    });
}

/// (f): a control-plane host lost for good (its agent and its etcd SIGKILLed) is replaced end to
/// end: `muster remove` makes the leader run `remove_command` (the hook's `remove` mode:
/// `etcdctl member remove` of the lost member), the plan shows the host removed, and the next
/// host that joins takes the control-plane role: etcd is back to 3 healthy members.
#[test]
fn a_lost_control_plane_host_is_replaced_and_etcd_is_back_to_three_members() {
    scenario("me-f", 6, opts().expected_nodes(5), |site| {
        let bed = EtcdBed::install(site, &overrides([("kubernetes.retry_backoff", "1s")]))?;
        let first: Vec<usize> = (0..5).collect();
        for &i in &first {
            site.start(i)?;
        }
        site.wait_formed(TIMEOUT, &first)?;
        wait_plan_done(site, &first, 5)?;
        let plan = roles(site, 0)?;
        bed.wait_cluster(site, 0, &voters(&plan), ETCD_TIMEOUT)?;
        let leader_id = site.status_view(0)?.leader_id.context("a leader")?;
        let lost_name = plan
            .iter()
            .find(|(name, role)| {
                role.as_str() == "control-plane"
                    && index_of(site, name)
                        .ok()
                        .and_then(|i| site.node_id(i))
                        .is_some_and(|id| id != leader_id)
            })
            .map(|(name, _)| name.clone())
            .context("a control-plane host that does not lead")?;
        let lost = index_of(site, &lost_name)?;
        site.kill(lost)?;
        muster_testbed::netns::kill_namespace_processes(site.namespace(lost))?;
        let survivor = *first.iter().find(|&&i| i != lost).context("a survivor")?;
        let socket = site.host(survivor).socket.display().to_string();
        site.muster()
            .run(&["remove", &lost_name, "--socket", &socket])?;
        site.wait_until(TIMEOUT, |s| {
            s.status(survivor).is_ok_and(|v| {
                v["plan"]["removals"].as_array().is_some_and(|r| {
                    r.len() == 1
                        && r[0]["name"] == lost_name.as_str()
                        && r[0]["state"] == "succeeded"
                })
            })
        })
        .with_context(|| format!("the remove command did not succeed:\n{}", site.describe()))?;
        let (_, members) = bed.members(site, survivor)?;
        ensure!(
            members.len() == 2 && !members.iter().any(|m| m.name == lost_name),
            "the lost member is gone from etcd: {members:?}"
        );

        let fresh = 5;
        let fresh_name = muster_testbed::names::node_name(fresh);
        site.start(fresh)?;
        site.wait_until(TIMEOUT, |s| {
            steps(s, survivor).is_some_and(|st| {
                st.iter().any(|x| {
                    x["name"] == fresh_name.as_str()
                        && x["role"] == "control-plane"
                        && x["state"] == "succeeded"
                })
            })
        })
        .with_context(|| {
            format!(
                "the new host did not join the control plane:\n{}",
                site.describe()
            )
        })?;
        let mut expected: Vec<String> = voters(&plan)
            .into_iter()
            .filter(|n| *n != lost_name)
            .collect();
        expected.push(fresh_name.clone());
        expected.sort();
        bed.wait_cluster(site, survivor, &expected, ETCD_TIMEOUT)?;
        let table = site.muster().run(&["plan", "--socket", &socket])?;
        ensure!(
            table.contains("removed") && table.contains(&fresh_name),
            "muster plan shows the removal and the replacement:\n{table}"
        );
        Ok(())
    });
}
