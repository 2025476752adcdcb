//! End-to-end test of the join plan with real agents in network namespaces and real hook
//! processes (`[kubernetes] distribution = "none"`): a hook that records when each host starts
//! and ends its step, with the contract's environment. What an operator checks: every step
//! succeeded in `muster status`; the init ran first and alone; control-plane joins ran one at a
//! time; workers only after the init; the leader SIGKILLed mid-plan caused no second init.
//!
//! Sites are serialized within this binary and torn down however a test ends (prefix `mi-`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use muster_testbed::{overrides, scenario, Discovery, Site, SiteOptions};

const TIMEOUT: Duration = Duration::from_secs(90);

/// One line of the hook's record: (what, role, host, time ns, init ip, server url).
#[derive(Debug, Clone)]
struct Event {
    what: String,
    role: String,
    host: String,
    at_ns: u128,
    init_ip: String,
    server_url: String,
}

fn events(log: &std::path::Path) -> Vec<Event> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() >= 4).then(|| Event {
                what: f[0].into(),
                role: f[1].into(),
                host: f[2].into(),
                at_ns: f[3].parse().unwrap_or(0),
                init_ip: f.get(4).unwrap_or(&"").to_string(),
                server_url: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// Writes the hook script `body` into the site's directory and configures every host to run it
/// (`distribution = "none"`), with `extra` `[kubernetes]` keys. Returns the overrides written
/// (a host's own config is these and more).
fn install_hook(
    site: &mut Site,
    body: &str,
    extra: &[(&str, toml::Value)],
) -> Result<Vec<muster_testbed::Override>> {
    use std::os::unix::fs::PermissionsExt;
    let hook = site.dir().join("hook");
    std::fs::write(&hook, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    let mut keys = overrides([
        ("kubernetes.distribution", toml::Value::from("none")),
        (
            "kubernetes.install_command",
            hook.display().to_string().into(),
        ),
    ]);
    keys.extend(overrides(extra.iter().cloned()));
    for i in site.all() {
        site.write_config(i, &keys)?;
    }
    Ok(keys)
}

/// Waits until every host in `hosts` reports a plan of `n` steps, all succeeded; else fails
/// with `what` and the site's state.
fn wait_plan_done(site: &Site, hosts: &[usize], n: usize, what: &str) -> Result<()> {
    site.wait_until(TIMEOUT, |s| {
        hosts.iter().all(|&i| {
            s.status(i).is_ok_and(|v| {
                v["plan"]["steps"].as_array().is_some_and(|steps| {
                    steps.len() == n && steps.iter().all(|st| st["state"] == "succeeded")
                })
            })
        })
    })
    .with_context(|| format!("{what}\n{}", site.describe()))
}

#[test]
fn five_hosts_install_in_the_join_order_through_a_leader_kill() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .control_plane_count(3);
    scenario("mi-a", 5, opts, |site| {
        let log = site.dir().join("install.log");
        let seen = site.dir().join("secrets.log");
        // Besides the order, each hook records the secrets it was given (a test-only record),
        // and the init hook shares a CA hash through MUSTER_SECRETS_OUT.
        let script = format!(
            "echo \"start $MUSTER_ROLE $MUSTER_NODE_NAME $(date +%s%N) $MUSTER_INIT_IP ${{MUSTER_SERVER_URL:--}}\" >> {log}\n\
             token=$(sed -n 's/^TOKEN=//p' \"$MUSTER_SECRETS\")\n\
             hash=$(sed -n 's/^CA_CERT_HASH=//p' \"$MUSTER_SECRETS\")\n\
             echo \"$MUSTER_NODE_NAME $MUSTER_ROLE $token ${{hash:--}}\" >> {seen}\n\
             echo \"joining with token $token\"\n\
             if [ \"$MUSTER_ROLE\" = init ]; then echo CA_CERT_HASH={CA_HASH} >> \"$MUSTER_SECRETS_OUT\"; fi\n\
             sleep 1\n\
             echo \"end $MUSTER_ROLE $MUSTER_NODE_NAME $(date +%s%N)\" >> {log}",
            log = log.display(),
            seen = seen.display(),
        );
        install_hook(
            site,
            &script,
            &[("kubernetes.retry_backoff", "500ms".into())],
        )?;
        let all = site.all();
        site.start_all()?;
        site.wait_formed(TIMEOUT, &all)?;

        // Kill the init host (the leader when the plan was made) once a control-plane join runs.
        site.wait_until(TIMEOUT, |_| {
            events(&log)
                .iter()
                .any(|e| e.what == "start" && e.role == "control-plane")
        })
        .context("no control-plane join started")?;
        let init_name = events(&log)
            .into_iter()
            .find(|e| e.role == "init")
            .context("init ran")?
            .host;
        let init = all
            .iter()
            .copied()
            .find(|&i| {
                site.status(i)
                    .is_ok_and(|v| v["node_name"].as_str() == Some(init_name.as_str()))
            })
            .context("init host")?;
        site.kill(init)?;
        std::thread::sleep(Duration::from_secs(1));
        site.start(init)?;

        wait_plan_done(site, &all, 5, "the plan did not complete:")?;

        let ev = events(&log);
        let starts: Vec<&Event> = ev.iter().filter(|e| e.what == "start").collect();
        let inits: Vec<&&Event> = starts.iter().filter(|e| e.role == "init").collect();
        ensure!(inits.len() == 1, "one init run: {ev:#?}");
        let init_end = ev
            .iter()
            .find(|e| e.what == "end" && e.role == "init")
            .context("init ended")?
            .at_ns;
        for e in &starts {
            if e.role != "init" {
                ensure!(
                    e.at_ns > init_end,
                    "{} started {} before the init ended",
                    e.host,
                    e.role
                );
                ensure!(
                    e.server_url == format!("https://{}:6443", inits[0].init_ip),
                    "{} points at {}",
                    e.host,
                    e.server_url
                );
            }
        }
        // Control-plane runs never overlapped: each started after the previous one ended.
        let mut roles: BTreeMap<String, String> = BTreeMap::new();
        let mut open: Option<String> = None;
        for e in ev.iter().filter(|e| e.role == "control-plane") {
            if let Some(r) = roles.insert(e.host.clone(), e.role.clone()) {
                ensure!(r == e.role, "{} changed role", e.host);
            }
            match e.what.as_str() {
                "start" => {
                    ensure!(open.is_none(), "control-plane joins overlapped: {ev:#?}");
                    open = Some(e.host.clone());
                }
                _ => open = None,
            }
        }
        let count = |role: &str| {
            let mut hosts: Vec<&str> = starts
                .iter()
                .filter(|e| e.role == role)
                .map(|e| e.host.as_str())
                .collect();
            hosts.sort_unstable();
            hosts.dedup();
            hosts.len()
        };
        ensure!(
            count("control-plane") == 2 && count("worker") == 2,
            "the other two voters joined the control plane, the learners were workers: {ev:#?}"
        );

        // What an operator reads: `muster plan` and the status line.
        let socket = site.host(0).socket.display().to_string();
        let table = site.muster().run(&["plan", "--socket", &socket])?;
        ensure!(
            table.lines().filter(|l| l.contains("succeeded")).count() == 5,
            "muster plan:\n{table}"
        );
        ensure!(
            table.contains("init") && table.contains("control-plane"),
            "{table}"
        );
        let human = site.status_human(0)?;
        ensure!(
            human.contains("plan      5 of 5 steps succeeded"),
            "{human}"
        );
        check_secrets(site, &seen)
    });
}

/// What the init hook shares through MUSTER_SECRETS_OUT in the five-host test.
const CA_HASH: &str = "sha256:5e1f0c7d4b2a99887766554433221100ffeeddccbbaa00998877665544332211";

/// Every hook got the one token made at plan time; hosts after the init got the CA hash the
/// init shared; neither appears in any host's data directory, agent log, status or plan answer.
fn check_secrets(site: &Site, seen: &std::path::Path) -> Result<()> {
    let records = std::fs::read_to_string(seen)?;
    let rows: Vec<Vec<&str>> = records.lines().map(|l| l.split(' ').collect()).collect();
    ensure!(
        rows.len() >= 5,
        "every host recorded its secrets:\n{records}"
    );
    let token = rows[0][2].to_owned();
    ensure!(
        token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()),
        "a 32-byte hex token: {records}"
    );
    for r in &rows {
        ensure!(r[2] == token, "one token for the site:\n{records}");
        if r[1] != "init" {
            ensure!(
                r[3] == CA_HASH,
                "{} did not get the init's CA hash:\n{records}",
                r[0]
            );
        }
    }
    let socket = site.host(0).socket.display().to_string();
    let mut shown = site
        .muster()
        .run(&["plan", "--json", "--socket", &socket])?;
    for i in site.all() {
        shown.push_str(&site.status(i)?.to_string());
        shown.push_str(&site.status_human(i)?);
        shown.push_str(&site.log(i));
        for file in files_under(&site.host(i).data_dir) {
            shown.push_str(&String::from_utf8_lossy(&std::fs::read(&file)?));
        }
    }
    ensure!(shown.len() > 10_000, "logs, status and stores were read");
    for secret in [token.as_str(), &CA_HASH[7..]] {
        ensure!(
            !shown.contains(secret),
            "a secret shows in a data directory, log, status or plan answer"
        );
    }
    Ok(())
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A control-plane join whose hook fails is visible in `muster plan` with its error, stays failed
/// once its attempts are used up (the next join waits), and `muster plan retry` (asked of any
/// member) runs it again once the cause is fixed.
#[test]
fn a_failed_step_is_shown_and_retried_by_the_operator() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .control_plane_count(3);
    scenario("mi-b", 3, opts, |site| {
        let fixed = site.dir().join("fixed");
        let script = format!(
            "if [ \"$MUSTER_ROLE\" = control-plane ] && [ ! -e {fixed} ]; then\n\
             echo 'etcdctl member add: etcdserver: unhealthy cluster' >&2; exit 1\n\
             fi",
            fixed = fixed.display()
        );
        install_hook(
            site,
            &script,
            &[
                ("kubernetes.retry_backoff", "200ms".into()),
                ("kubernetes.max_attempts", 2.into()),
            ],
        )?;
        let all = site.all();
        site.start_all()?;
        site.wait_formed(TIMEOUT, &all)?;
        let failed = |s: &muster_testbed::Site| {
            s.status(0).ok().and_then(|v| {
                v["plan"]["steps"].as_array().and_then(|steps| {
                    steps
                        .iter()
                        .find(|st| st["state"] == "failed" && st["attempts"] == 2)
                        .and_then(|st| st["name"].as_str().map(str::to_owned))
                })
            })
        };
        site.wait_until(TIMEOUT, |s| failed(s).is_some())
            .context("a control-plane step failed for good")?;
        let name = failed(site).context("failed step")?;
        let socket = site.host(0).socket.display().to_string();
        let table = site.muster().run(&["plan", "--socket", &socket])?;
        ensure!(
            table.contains("FAILED") && table.contains("unhealthy cluster"),
            "muster plan shows the failure:\n{table}"
        );
        std::thread::sleep(Duration::from_secs(2));
        ensure!(
            failed(site).as_deref() == Some(name.as_str()),
            "no attempt without the operator"
        );

        std::fs::write(&fixed, "")?;
        let out = site
            .muster()
            .run(&["plan", "retry", &name, "--socket", &socket])?;
        ensure!(out.contains("retrying the step of"), "{out}");
        wait_plan_done(site, &all, 3, "the plan did not complete after the retry:")?;
        Ok(())
    });
}

/// `distribution = "k3s"`: each hook is handed the config.yaml muster rendered for its role
/// (`MUSTER_CONFIG`): the init host creates the cluster, the others join through the VIP with
/// the plan's token, and every host's node-ip is its own address, never the VIP.
#[test]
fn k3s_hooks_get_the_config_rendered_for_their_role() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .control_plane_count(3)
        .vip(false);
    scenario("mi-c", 3, opts, |site| {
        let dir = site.dir().to_path_buf();
        // A test-only record: each hook keeps a copy of what it was handed.
        let script = format!(
            "cp \"$MUSTER_CONFIG\" {dir}/config-$MUSTER_NODE_NAME.yaml\n\
             sed -n 's/^TOKEN=//p' \"$MUSTER_SECRETS\" > {dir}/token-$MUSTER_NODE_NAME\n\
             echo \"$MUSTER_ROLE $MUSTER_SERVER_URL\" > {dir}/role-$MUSTER_NODE_NAME",
            dir = dir.display()
        );
        // Later keys win: the distribution replaces install_hook's "none".
        install_hook(
            site,
            &script,
            &[
                ("kubernetes.distribution", "k3s".into()),
                ("kubernetes.version", "v1.30.2+k3s1".into()),
                // No API server runs here: the default /readyz gate is replaced by a command.
                ("kubernetes.health_command", "/bin/true".into()),
                ("kubernetes.worker_health_command", "/bin/true".into()),
            ],
        )?;
        let all = site.all();
        site.start_all()?;
        wait_plan_done(site, &all, 3, "the plan did not complete:")?;
        let vip = muster_testbed::names::VIP_V4
            .split('/')
            .next()
            .context("vip")?;
        for i in all {
            let name = site.agent_config(i).name;
            let config = std::fs::read_to_string(dir.join(format!("config-{name}.yaml")))?;
            let token = std::fs::read_to_string(dir.join(format!("token-{name}")))?;
            let role = std::fs::read_to_string(dir.join(format!("role-{name}")))?;
            let ip = site.ip(i).to_string();
            ensure!(
                config.contains(&format!("\"node-ip\": \"{ip}\""))
                    && config.contains(&format!("\"node-name\": \"{name}\""))
                    && config.contains(&format!("\"token\": \"{}\"", token.trim()))
                    && config.contains(&format!("  - \"{vip}\"")),
                "{name}'s config:\n{config}"
            );
            if role.starts_with("init") {
                ensure!(
                    config.contains("\"cluster-init\": true") && !config.contains("\"server\""),
                    "the init host creates the cluster:\n{config}"
                );
            } else {
                let url = format!("https://{vip}:6443");
                ensure!(
                    config.contains(&format!("\"server\": \"{url}\""))
                        && role.trim().ends_with(&url),
                    "{name} joins through the VIP ({role}):\n{config}"
                );
            }
        }
        Ok(())
    });
}

/// `muster plan start`: a site configured for 3 hosts that has only 2 forms a cluster but
/// installs nothing; an operator on either host goes ahead, and both hosts install.
#[test]
fn an_operator_starts_the_plan_with_fewer_hosts_than_expected() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .expected_nodes(3)
        .control_plane_count(1);
    scenario("mi-d", 2, opts, |site| {
        let log = site.dir().join("install.log");
        let script = format!(
            "echo \"start $MUSTER_ROLE $MUSTER_NODE_NAME $(date +%s%N)\" >> {}",
            log.display()
        );
        install_hook(site, &script, &[])?;
        let all = site.all();
        site.start_all()?;
        site.wait_formed(TIMEOUT, &all)?;
        std::thread::sleep(Duration::from_secs(3));
        ensure!(
            site.status(0)?["plan"].is_null() && !log.exists(),
            "nothing installs with 2 of 3 hosts:\n{}",
            site.describe()
        );
        let socket = site.host(1).socket.display().to_string();
        let out = site.muster().run(&["plan", "start", "--socket", &socket])?;
        ensure!(out.contains("go ahead with the members there are"), "{out}");
        wait_plan_done(site, &all, 2, "the plan did not complete:")?;
        let again = site.muster().run(&["plan", "start", "--socket", &socket]);
        ensure!(
            again
                .as_ref()
                .is_err_and(|e| format!("{e:#}").contains("already formed")),
            "a second start is refused: {again:?}"
        );
        Ok(())
    });
}

/// `muster plan reinit --to NODE`: the init host's hook fails for good; the operator names
/// another control-plane host, whose init then runs — the only second init, asked for — and the
/// rest of the plan completes. Asked again once a join succeeded, it is refused, saying why.
#[test]
fn an_operator_reinitialises_on_another_host() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .control_plane_count(3);
    scenario("mi-e", 3, opts, |site| {
        let log = site.dir().join("install.log");
        let broken = site.dir().join("broken");
        let script = format!(
            "echo \"start $MUSTER_ROLE $MUSTER_NODE_NAME $(date +%s%N)\" >> {log}\n\
             if [ \"$MUSTER_ROLE\" = init ] && [ ! -e {broken} ]; then touch {broken}.$MUSTER_NODE_NAME; fi\n\
             if [ -e {broken}.$MUSTER_NODE_NAME ]; then echo 'disk failure' >&2; exit 1; fi",
            log = log.display(),
            broken = broken.display(),
        );
        install_hook(
            site,
            &script,
            &[
                ("kubernetes.retry_backoff", "200ms".into()),
                ("kubernetes.max_attempts", 2.into()),
            ],
        )?;
        let all = site.all();
        site.start_all()?;
        site.wait_formed(TIMEOUT, &all)?;
        let init_failed = |s: &Site| {
            s.status(0).ok().and_then(|v| {
                v["plan"]["steps"].as_array().and_then(|st| {
                    st.iter()
                        .find(|x| {
                            x["role"] == "init" && x["state"] == "failed" && x["attempts"] == 2
                        })
                        .and_then(|x| x["name"].as_str().map(str::to_owned))
                })
            })
        };
        site.wait_until(TIMEOUT, |s| init_failed(s).is_some())
            .context("the init failed for good")?;
        let old = init_failed(site).context("failed init")?;
        // The first init run marked its own host broken; any other host's init succeeds.
        std::fs::write(&broken, "")?;
        let to = (0..3)
            .map(muster_testbed::names::node_name)
            .find(|n| *n != old)
            .context("another host")?;
        let socket = site.host(0).socket.display().to_string();
        let out = site
            .muster()
            .run(&["plan", "reinit", "--to", &to, "--socket", &socket])?;
        ensure!(out.contains("re-initialising with"), "{out}");
        site.wait_until(TIMEOUT, |s| {
            all.iter().all(|&i| {
                s.status(i).is_ok_and(|v| {
                    v["plan"]["steps"].as_array().is_some_and(|st| {
                        st.iter()
                            .any(|x| x["name"] == to.as_str() && x["role"] == "init")
                            && st
                                .iter()
                                .all(|x| x["state"] == "succeeded" || x["state"] == "removed")
                    })
                })
            })
        })
        .with_context(|| {
            format!(
                "the plan did not complete after the reinit:\n{}",
                site.describe()
            )
        })?;
        let inits: Vec<String> = events(&log)
            .into_iter()
            .filter(|e| e.what == "start" && e.role == "init")
            .map(|e| e.host)
            .collect();
        ensure!(
            inits.iter().all(|h| *h == old || *h == to) && inits.contains(&to),
            "inits only on the old and the asked-for host: {inits:?}"
        );
        let again = site
            .muster()
            .run(&["plan", "reinit", "--to", &old, "--socket", &socket]);
        ensure!(
            again
                .as_ref()
                .is_err_and(|e| format!("{e:#}").contains("cannot re-initialise")),
            "a reinit after a join is refused: {again:?}"
        );
        Ok(())
    });
}

/// `[kubernetes] certificate_key_refresh` (kubeadm's 90-minute default, shortened to 1 s here):
/// a control-plane join that comes after the last upload is that old waits for the leader to
/// run the hook with `MUSTER_ROLE=upload-certs` under a fresh `CERTIFICATE_KEY`, and is handed
/// that key. Each record keeps a digest of the key the hook saw (never the key itself).
#[test]
fn late_control_plane_joins_get_a_freshly_uploaded_certificate_key() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .control_plane_count(3)
        .vip(false);
    scenario("mi-u", 3, opts, |site| {
        let log = site.dir().join("install.log");
        // Joins take 1.5 s, longer than the refresh: the second join needs an upload.
        let script = format!(
            "key=$(sed -n 's/^CERTIFICATE_KEY=//p' \"$MUSTER_SECRETS\" | sha256sum | cut -c1-16)\n\
             echo \"start $MUSTER_ROLE $MUSTER_NODE_NAME $(date +%s%N) $key\" >> {log}\n\
             [ \"$MUSTER_ROLE\" = control-plane ] && sleep 1.5\n\
             echo \"end $MUSTER_ROLE $MUSTER_NODE_NAME $(date +%s%N) $key\" >> {log}\n\
             exit 0",
            log = log.display()
        );
        install_hook(
            site,
            &script,
            &[("kubernetes.certificate_key_refresh", "1s".into())],
        )?;
        let all = site.all();
        site.start_all()?;
        wait_plan_done(site, &all, 3, "the plan did not complete:")?;
        let events = events(&log);
        // `init_ip` holds the key digest in this record format.
        let key = |e: &Event| e.init_ip.clone();
        let init = events
            .iter()
            .find(|e| e.role == "init")
            .context("an init ran")?;
        let uploads: Vec<&Event> = events
            .iter()
            .filter(|e| e.role == "upload-certs" && e.what == "end")
            .collect();
        ensure!(!uploads.is_empty(), "no upload ran: {events:#?}");
        let joins: Vec<&Event> = events
            .iter()
            .filter(|e| e.role == "control-plane" && e.what == "start")
            .collect();
        ensure!(joins.len() == 2, "{events:#?}");
        for j in &joins {
            // The key a join is handed is the one the last finished upload before it used (or
            // the init's, if none had run).
            let last = uploads.iter().rev().find(|u| u.at_ns < j.at_ns);
            let want = last.map_or_else(|| key(init), |u| key(u));
            ensure!(
                key(j) == want,
                "{}'s join got key {} but the last upload before it used {want}: {events:#?}",
                j.host,
                key(j)
            );
        }
        let second = joins.iter().max_by_key(|j| j.at_ns).context("joins")?;
        let before = uploads
            .iter()
            .rev()
            .find(|u| u.at_ns < second.at_ns)
            .context("the second join came after an upload")?;
        ensure!(
            key(before) != key(init),
            "the upload used a fresh key: {events:#?}"
        );
        ensure!(
            before.host == init.host,
            "the leader (the init host) uploaded: {events:#?}"
        );
        let plan = site.status(0)?["plan"].clone();
        ensure!(
            plan["certificate_upload"]["state"] == "succeeded",
            "{plan:#}"
        );
        let socket = site.host(0).socket.display().to_string();
        let table = site.muster().run(&["plan", "--socket", &socket])?;
        ensure!(
            table.contains("certificate upload #") && table.contains("succeeded"),
            "{table}"
        );
        Ok(())
    });
}

/// `muster remove NODE --spare SPARE`: two control-plane spares (pinned with `[node] roles`,
/// members without a step while the control plane is full); a control-plane host is lost, and
/// the operator names the second spare. It runs the control-plane join; the other spare keeps
/// no step. `muster plan promote` with no open slot is refused, saying why.
#[test]
fn an_operator_names_the_spare_that_takes_a_lost_control_plane_slot() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .expected_nodes(3)
        .control_plane_count(3)
        .vip(false);
    scenario("mi-s", 5, opts, |site| {
        let mut keys = install_hook(site, "exit 0", &[])?;
        keys.extend(overrides([(
            "node.roles",
            toml::Value::from(vec!["control-plane"]),
        )]));
        for spare in [3, 4] {
            site.write_config(spare, &keys)?;
        }
        let first = [0, 1, 2];
        for i in first {
            site.start(i)?;
        }
        wait_plan_done(site, &first, 3, "the plan did not complete:")?;
        site.start(3)?;
        site.start(4)?;
        let all = site.all();
        site.wait_until(TIMEOUT, |s| {
            s.status(0)
                .is_ok_and(|v| v["members"].as_array().is_some_and(|m| m.len() == 5))
        })
        .with_context(|| format!("the spares did not join:\n{}", site.describe()))?;
        let spare_names: Vec<String> = [3, 4].map(|i| site.agent_config(i).name).to_vec();
        let socket = site.host(0).socket.display().to_string();
        let refused = site
            .muster()
            .run(&["plan", "promote", &spare_names[0], "--socket", &socket]);
        ensure!(
            refused
                .as_ref()
                .is_err_and(|e| format!("{e:#}").contains("no control-plane slot is open")),
            "{refused:?}"
        );
        let status = site.status(0)?;
        ensure!(
            status["plan"]["steps"].as_array().map(Vec::len) == Some(3),
            "the spares have no step: {:#}",
            status["plan"]
        );
        let leader = status["leader_id"]
            .as_str()
            .context("a leader")?
            .to_string();
        let lost = *first
            .iter()
            .find(|&&i| site.node_id(i).as_deref() != Some(leader.as_str()))
            .context("a control-plane follower")?;
        let lost_name = site.agent_config(lost).name;
        site.kill(lost)?;
        let survivor = *first.iter().find(|&&i| i != lost).context("a survivor")?;
        let socket = site.host(survivor).socket.display().to_string();
        let out = site.muster().run(&[
            "remove",
            &lost_name,
            "--spare",
            &spare_names[1],
            "--socket",
            &socket,
        ])?;
        ensure!(out.contains("takes its control-plane slot"), "{out}");
        let live: Vec<usize> = all.iter().copied().filter(|&i| i != lost).collect();
        site.wait_until(TIMEOUT, |s| {
            s.status(survivor).is_ok_and(|v| {
                v["plan"]["steps"].as_array().is_some_and(|st| {
                    st.iter().any(|x| {
                        x["name"] == spare_names[1].as_str()
                            && x["role"] == "control-plane"
                            && x["state"] == "succeeded"
                    })
                })
            })
        })
        .with_context(|| {
            let plan = site.status(survivor).map(|v| v["plan"].clone());
            format!(
                "the named spare did not join: {plan:#?}\n{}",
                site.describe()
            )
        })?;
        for i in live {
            let steps = site.status(i)?["plan"]["steps"].clone();
            ensure!(
                !steps
                    .as_array()
                    .is_some_and(|st| st.iter().any(|x| x["name"] == spare_names[0].as_str())),
                "the other spare keeps no step: {steps:#}"
            );
        }
        Ok(())
    });
}
