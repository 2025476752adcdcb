//! End-to-end tests of what operators and monitoring read from a running site: `muster health`
//! (exit 0 with every check passed on a healthy site; exit 1 naming `quorum` once two of three
//! voters are killed) and the Prometheus endpoint of `[metrics] listen` (scraped from inside the
//! host's namespace: `/metrics`, `/readyz`, `/healthz`).
//!
//! Sites are serialized within this binary and torn down however a test ends (prefix `mo-`).

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use muster_testbed::{cli, netns, overrides, scenario, Discovery, Site, SiteOptions};

const TIMEOUT: Duration = Duration::from_secs(90);

/// `muster health --socket <host i's socket> ARGS`: (exit code, stdout).
fn health(site: &Site, i: usize, args: &[&str]) -> Result<(i32, String)> {
    let socket = site.host(i).socket.display().to_string();
    let mut cmd = std::process::Command::new(site.muster().path());
    cmd.args(["health", "--socket", &socket]).args(args);
    let (status, out, err) = cli::run_with_timeout(cmd, Duration::from_secs(90))?;
    let code = status.code().context("muster health was killed")?;
    ensure!(code == 0 || code == 1, "exit {code}: {out}{err}");
    Ok((code, out))
}

/// (name, PASS|FAIL|SKIP) of each line of `muster health`'s output.
fn lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .collect()
}

#[test]
fn health_fails_until_formed_passes_on_a_healthy_site_and_names_quorum_once_two_voters_die() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .control_plane_count(3)
        .vip(false);
    scenario("mo-h", 3, opts, |site| {
        // A plan to finish (hooks that succeed) and API servers that report healthy.
        let keys = overrides([
            ("kubernetes.distribution", toml::Value::from("none")),
            ("kubernetes.install_command", "/bin/true".into()),
            ("kubernetes.health_command", "/bin/true".into()),
        ]);
        for i in site.all() {
            site.write_config(i, &keys)?;
        }
        let all = site.all();
        // One host of three: not formed, and muster health says so with exit 1.
        site.start(0)?;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (code, out) = health(site, 0, &[])?;
            let failed: Vec<String> = lines(&out)
                .into_iter()
                .filter(|(_, r)| r == "FAIL")
                .map(|(n, _)| n)
                .collect();
            if code == 1
                && matches!(
                    failed.first().map(String::as_str),
                    Some("member" | "formed")
                )
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("muster health on an unformed site: exit {code}\n{out}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        site.start(1)?;
        site.start(2)?;
        site.wait_formed(TIMEOUT, &all)?;

        let (code, out) = health(site, 0, &["--wait", "60s"])?;
        ensure!(code == 0, "a healthy site fails muster health:\n{out}");
        let checks = lines(&out);
        let names: Vec<&str> = checks.iter().map(|(n, _)| n.as_str()).collect();
        ensure!(
            names
                == [
                    "agent",
                    "member",
                    "formed",
                    "quorum",
                    "leader",
                    "endpoint",
                    "site-conflict",
                    "plan",
                    "api"
                ],
            "{out}"
        );
        ensure!(checks.iter().all(|(_, r)| r == "PASS"), "{out}");
        ensure!(out.contains("3 of 3 steps succeeded"), "{out}");
        ensure!(out.contains("VIP 10.77.0.100/24 held"), "{out}");
        let api = out.lines().last().unwrap_or_default();
        ensure!(
            ["h0", "h1", "h2"].iter().all(|h| api.contains(h)),
            "every API server reports healthy: {out}"
        );
        // Hellos carry each host's API health to the others (every second): wait for them.
        let (code, json) = health(site, 1, &["--json", "--wait", "30s"])?;
        let v: serde_json::Value = serde_json::from_str(json.trim())?;
        ensure!(code == 0 && v["healthy"] == true, "{json}");

        // Two of three voters die: the survivor has no quorum.
        site.kill(1)?;
        site.kill(2)?;
        let deadline = Instant::now() + TIMEOUT;
        let out = loop {
            let (code, out) = health(site, 0, &[])?;
            let checks = lines(&out);
            if checks.iter().any(|(n, r)| n == "quorum" && r == "FAIL") {
                ensure!(code == 1, "exit {code} with a failed check:\n{out}");
                break out;
            }
            if Instant::now() > deadline {
                bail!("muster health never named quorum:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let checks = lines(&out);
        let at = checks.iter().position(|(n, _)| n == "quorum").unwrap_or(0);
        ensure!(checks[..at].iter().all(|(_, r)| r == "PASS"), "{out}");
        ensure!(checks[at + 1..].iter().all(|(_, r)| r == "SKIP"), "{out}");
        ensure!(out.contains("1 of 3 voters reachable"), "{out}");

        // --wait on a site that stays broken gives up after the wait, still exit 1.
        let started = Instant::now();
        let (code, _) = health(site, 0, &["--wait", "2s"])?;
        ensure!(code == 1 && started.elapsed() >= Duration::from_secs(2));
        Ok(())
    });
}

/// One HTTP/1.1 GET to `addr` from inside namespace `ns`: (status code, body).
fn get(ns: &str, addr: &str, path: &str) -> Result<(u16, String)> {
    let (ns, addr, path) = (ns.to_owned(), addr.to_owned(), path.to_owned());
    let worker = std::thread::spawn(move || -> Result<(u16, String)> {
        netns::enter(&ns)?;
        let mut stream = std::net::TcpStream::connect(&addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let code = answer
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("no status line: {answer:?}"))?;
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok((code, body.to_owned()))
    });
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("the scrape thread panicked"))?
}

/// The value of the sample `series` (name and labels as written) in metric text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_are_scraped_from_one_agent() {
    let opts = SiteOptions::default()
        .expected_nodes(1)
        .control_plane_count(1);
    scenario("mo-m", 1, opts, |site| {
        let listen = format!("{}:9464", site.ip(0));
        site.write_config(0, &overrides([("metrics.listen", listen.clone())]))?;
        site.start(0)?;
        site.wait_formed(TIMEOUT, &[0])?;
        let ns = site.namespace(0).to_owned();
        let deadline = Instant::now() + TIMEOUT;
        let text = loop {
            if let Ok((200, text)) = get(&ns, &listen, "/metrics") {
                if sample(&text, "muster_has_leader") == Some(1.0) {
                    break text;
                }
            }
            if Instant::now() > deadline {
                bail!("no scrape with muster_has_leader 1 from {listen}");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        ensure!(
            sample(&text, "muster_term").is_some_and(|t| t >= 1.0),
            "{text}"
        );
        ensure!(
            sample(&text, "muster_members{state=\"reachable\"}") == Some(1.0),
            "{text}"
        );
        ensure!(sample(&text, "muster_is_leader") == Some(1.0), "{text}");
        ensure!(
            sample(&text, "muster_leader_changes_total") == Some(0.0),
            "{text}"
        );
        ensure!(text.contains("muster_build_info{version=\""), "{text}");
        ensure!(text.ends_with("# EOF\n"), "{text}");
        // Ready once the site is recorded formed, a few ms after it has a leader: a probe
        // retries, as a load balancer's or kubelet's would.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (code, body) = get(&ns, &listen, "/readyz")?;
            if code == 200 {
                break;
            }
            ensure!(
                code == 503 && body.contains("site not formed yet"),
                "/readyz {code}: {body}"
            );
            if Instant::now() > deadline {
                bail!("/readyz still {code} after {TIMEOUT:?}: {body}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (code, _) = get(&ns, &listen, "/healthz")?;
        ensure!(code == 200, "/healthz {code}");
        let (code, _) = get(&ns, &listen, "/other")?;
        ensure!(code == 404, "/other {code}");
        Ok(())
    });
}

/// Kills a child process when dropped (the test may fail half-way).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `--json` lines of `muster events` in `path`.
fn event_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `muster events --follow` on a follower shows the leader change the test caused (the leader
/// SIGKILLed): the old leader unreachable, a new one leading in a higher term, in order and with
/// increasing times; `muster events` without `--follow` prints the history and exits.
#[test]
fn events_follow_shows_a_leader_change_the_test_caused() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .control_plane_count(3);
    scenario("mo-e", 3, opts, |site| {
        let all = site.all();
        site.start_all()?;
        site.wait_formed(TIMEOUT, &all)?;
        let status = site.status_view(0)?;
        let leader_id = status.leader_id.context("a leader")?;
        let old_term = status.term;
        let leader = *all
            .iter()
            .find(|&&i| site.node_id(i).as_deref() == Some(leader_id.as_str()))
            .context("the leader's index")?;
        let watcher = *all.iter().find(|&&i| i != leader).context("a follower")?;
        let old_name = site.agent_config(leader).name;
        let socket = site.host(watcher).socket.display().to_string();
        let out_path = site.dir().join("events.jsonl");
        let out = std::fs::File::create(&out_path)?;
        let child = std::process::Command::new(site.muster().path())
            .args(["events", "--follow", "--json", "--socket", &socket])
            .stdout(out)
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("muster events --follow")?;
        let mut follow = KillOnDrop(child);
        // The history comes first: the watcher's start and the site's forming.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !event_lines(&out_path).iter().any(|e| {
            e["kind"] == "site"
                && e["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("site formed"))
        }) {
            ensure!(
                Instant::now() < deadline,
                "no history: {:?}",
                event_lines(&out_path)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        site.kill(leader)?;
        let new_leader = |events: &[serde_json::Value]| {
            events.iter().position(|e| {
                e["kind"] == "leader"
                    && e["text"].as_str().is_some_and(|t| {
                        !t.starts_with(&old_name)
                            && t.contains(" leads (term ")
                            && t.trim_end_matches(')')
                                .rsplit(' ')
                                .next()
                                .and_then(|n| n.parse::<u64>().ok())
                                .is_some_and(|n| n > old_term)
                    })
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let events = loop {
            let events = event_lines(&out_path);
            if new_leader(&events).is_some() {
                break events;
            }
            if Instant::now() > deadline {
                bail!(
                    "no leader change followed: {events:#?}\n{}",
                    site.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        ensure!(
            follow.0.try_wait()?.is_none(),
            "--follow keeps the stream open"
        );
        let changed = new_leader(&events).context("leader event")?;
        let unreachable = events.iter().position(|e| {
            e["kind"] == "member" && e["text"] == format!("{old_name} is unreachable").as_str()
        });
        ensure!(
            unreachable.is_some(),
            "the old leader became unreachable: {events:#?}"
        );
        let times: Vec<u64> = events
            .iter()
            .filter_map(|e| e["unix_ms"].as_u64())
            .collect();
        let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
        ensure!(
            times.windows(2).all(|w| w[0] <= w[1]) && seqs.windows(2).all(|w| w[0] < w[1]),
            "events in order: {events:#?}"
        );
        ensure!(
            events[changed]["host_name"] == site.agent_config(watcher).name.as_str(),
            "stamped with the host that saw it: {:#}",
            events[changed]
        );
        drop(follow);
        let mut cmd = std::process::Command::new(site.muster().path());
        cmd.args(["events", "--socket", &socket]);
        let (status, text, err) = cli::run_with_timeout(cmd, Duration::from_secs(10))?;
        ensure!(status.success(), "{text}{err}");
        ensure!(
            text.lines()
                .any(|l| l.contains("leader") && l.contains(" leads (term ")),
            "the history without --follow:\n{text}"
        );
        Ok(())
    });
}

/// `muster ARGS` run inside namespace `ns` (where the site's addresses are reachable):
/// (success, stdout, stderr).
fn muster_in(site: &Site, ns: &str, args: &[&str]) -> Result<(bool, String, String)> {
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(site.muster().path())
        .args(args);
    let (status, out, err) = cli::run_with_timeout(cmd, Duration::from_secs(30))?;
    Ok((status.success(), out, err))
}

/// Remote access over `[rpc] listen`: a read-only operator key sees the whole site from
/// another host's namespace (the agent's key pinned on first use); an admin call with it is
/// refused, naming the call; an admin key moves leadership with `muster transfer`; a key the
/// agent does not list, no key at all, and an agent whose key differs from the pin are refused.
/// The local socket answers only root or the agent's user, whatever its file mode.
#[test]
fn remote_access_needs_a_listed_key_and_admin_calls_an_admin_key() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .control_plane_count(3);
    scenario("mo-r", 3, opts, |site| {
        let dir = site.dir().to_path_buf();
        let keygen = |name: &str| -> Result<(std::path::PathBuf, String)> {
            let path = dir.join(name);
            let out = std::process::Command::new(site.muster().path())
                .args(["operator", "keygen", "--out"])
                .arg(&path)
                .output()?;
            ensure!(out.status.success(), "keygen: {out:?}");
            Ok((path, String::from_utf8_lossy(&out.stdout).trim().to_owned()))
        };
        let (ro_key, ro_pub) = keygen("fleet.key")?;
        let (admin_key, admin_pub) = keygen("ops.key")?;
        let (stranger_key, _) = keygen("stranger.key")?;
        let operator = |name: &str, key: &str, access: &str| {
            let mut t = toml::Table::new();
            t.insert("name".into(), name.into());
            t.insert("public_key".into(), key.into());
            t.insert("access".into(), access.into());
            toml::Value::Table(t)
        };
        let operators = toml::Value::Array(vec![
            operator("fleet", &ro_pub, "read-only"),
            operator("ops", &admin_pub, "admin"),
        ]);
        let all = site.all();
        for i in all.clone() {
            let listen = format!("{}:7947", site.ip(i));
            site.write_config(
                i,
                &overrides([
                    ("rpc.listen", toml::Value::from(listen)),
                    ("rpc.operators", operators.clone()),
                ]),
            )?;
        }
        site.start_all()?;
        site.wait_formed(TIMEOUT, &all)?;
        let known = dir.join("known_hosts");
        let known_s = known.display().to_string();
        let client_ns = site.namespace(1).to_owned();
        let at = |i: usize| format!("{}:7947", site.ip(i));
        let ro = ro_key.display().to_string();
        let admin = admin_key.display().to_string();
        // `muster ARGS --endpoint AT --key KEY --known-hosts FILE` from host 1's namespace.
        let remote = |args: &[&str], at: &str, key: &str| {
            let tail = ["--endpoint", at, "--key", key, "--known-hosts", &known_s];
            muster_in(site, &client_ns, &[args, &tail[..]].concat())
        };

        // Read-only: the whole site, and the agent's key pinned on first use.
        let (ok, out, err) = remote(&["status", "--json"], &at(0), &ro)?;
        ensure!(
            ok,
            "remote status: {out}{err}\n{}",
            site.log(0)
                .lines()
                .filter(|l| l.contains("rpc"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let status: serde_json::Value = serde_json::from_str(&out)?;
        ensure!(
            status["members"].as_array().map(Vec::len) == Some(3),
            "the whole site: {status:#}"
        );
        // Each member's agent version and protocol come from its hellos; last seen is recent.
        for m in status["members"].as_array().context("members")? {
            ensure!(
                m["agent_version"].as_str().is_some_and(|v| !v.is_empty())
                    && m["protocol"].as_u64() == Some(2)
                    && m["last_seen_ms_ago"].as_u64().is_some_and(|t| t < 5_000),
                "{m:#}"
            );
        }
        ensure!(err.contains("pinned the key of"), "{err}");
        let pinned = std::fs::read_to_string(&known)?;
        ensure!(pinned.starts_with(&at(0)), "{pinned}");
        let (ok, _, err) = remote(&["status"], &at(0), &ro)?;
        ensure!(
            ok && !err.contains("pinned"),
            "the pin is used again: {err}"
        );

        // An admin call with the read-only key.
        let (ok, out, err) = remote(&["plan", "retry", "h0"], &at(0), &ro)?;
        ensure!(
            !ok && err.contains("PlanAct is an admin call")
                && err.contains("\"fleet\" is read-only"),
            "{out}{err}"
        );

        // The admin key hands leadership over, asked of a follower (forwarded to the leader).
        let leader_id = site.status_view(0)?.leader_id.context("a leader")?;
        let leader = *all
            .iter()
            .find(|&&i| site.node_id(i).as_deref() == Some(leader_id.as_str()))
            .context("the leader")?;
        let follower = *all.iter().find(|&&i| i != leader).context("a follower")?;
        let (ok, out, err) = remote(&["transfer"], &at(follower), &admin)?;
        ensure!(ok, "remote transfer: {out}{err}");
        site.wait_until(TIMEOUT, |s| {
            s.status_view(0)
                .is_ok_and(|v| v.leader_id.is_some_and(|l| l != leader_id))
        })
        .context("leadership moved")?;

        // A key the agent does not list.
        let stranger = stranger_key.display().to_string();
        let (ok, out, err) = remote(&["status"], &at(0), &stranger)?;
        ensure!(
            !ok && err.contains("is this operator key listed"),
            "{out}{err}"
        );
        // An agent whose key is not the pinned one (h2's endpoint pinned to h0's key).
        let h0_key = pinned.split_whitespace().nth(1).context("pinned key")?;
        std::fs::write(&known, format!("{} {h0_key}\n", at(2)))?;
        let (ok, out, err) = remote(&["status"], &at(2), &ro)?;
        ensure!(
            !ok && err.contains("not the pinned") && !out.contains("members"),
            "{out}{err}"
        );
        let (ok, out, err) = muster_in(
            site,
            &client_ns,
            &[
                "status",
                "--endpoint",
                &at(0),
                "--key",
                &ro,
                "--server-key",
                &"0".repeat(64),
            ],
        )?;
        ensure!(!ok && err.contains("not the pinned"), "{out}{err}");

        // No key at all: a client that speaks no TLS gets nothing but an alert or a close.
        let (ns, addr) = (client_ns.clone(), at(0));
        let answer = std::thread::spawn(move || -> Result<Vec<u8>> {
            netns::enter(&ns)?;
            let mut stream = std::net::TcpStream::connect(&addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")?;
            let mut got = Vec::new();
            let _ = stream.read_to_end(&mut got);
            Ok(got)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the plain client panicked"))??;
        ensure!(
            answer.is_empty() || answer[0] == 0x15,
            "a plain client got {} bytes that are not a TLS alert",
            answer.len()
        );

        // The local socket: opened to everyone by mistake, it still answers root only.
        use std::os::unix::fs::PermissionsExt as _;
        let socket = site.host(0).socket.clone();
        for d in socket
            .ancestors()
            .skip(1)
            .take_while(|d| d.starts_with(&dir))
        {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))?;
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(site.muster().path())
            .args(["status", "--socket"])
            .arg(&socket);
        let (status, out, err) = cli::run_with_timeout(cmd, Duration::from_secs(20))?;
        ensure!(
            !status.success() && !out.contains("members") && err.contains("muster:"),
            "nobody's call was refused by the agent (not by the file mode or exec): {out}{err}"
        );
        Ok(())
    });
}

/// A third-party gRPC client (grpcio, `tests/clients/grpc_check.py`), as grpcurl would be used:
/// server reflection lists the status service beside health and reflection and describes its
/// methods; the gRPC health service says `muster.v1.Status` is serving.
#[test]
fn grpc_reflection_and_health_answer_a_third_party_client() {
    let opts = SiteOptions::default().discovery(Discovery::Bootstrap);
    scenario(
        "mo-g",
        1,
        opts.expected_nodes(1).control_plane_count(1),
        |site| {
            site.start_all()?;
            site.wait_formed(TIMEOUT, &[0])?;
            let script =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/grpc_check.py");
            let mut cmd = std::process::Command::new("python3");
            cmd.arg(script).arg(&site.host(0).socket);
            let (status, out, err) = cli::run_with_timeout(cmd, Duration::from_secs(30))?;
            ensure!(status.success(), "grpc_check.py: {out}{err}");
            let v: serde_json::Value = serde_json::from_str(out.trim())?;
            let services: Vec<&str> = v["services"]
                .as_array()
                .context("services")?
                .iter()
                .filter_map(|s| s.as_str())
                .collect();
            for want in [
                "muster.v1.Status",
                "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection",
            ] {
                ensure!(services.contains(&want), "{want} listed: {services:?}");
            }
            let methods = v["status_methods"].as_array().context("methods")?;
            for want in ["GetStatus", "Events", "PlanAct", "Remove", "Transfer"] {
                ensure!(methods.iter().any(|m| m == want), "{want}: {methods:?}");
            }
            ensure!(v["health"] == "SERVING", "{v}");
            Ok(())
        },
    );
}

/// `/metrics` of a follower, parsed by prometheus_client's own parser
/// (`tests/clients/prom_parse.py`), follows what the test did: the leader SIGKILLed →
/// `muster_leader_changes_total` +1, `muster_elections_total` up, `muster_has_leader` back to 1,
/// `muster_members{state="unreachable"}` 1.
#[test]
fn metrics_follow_a_leader_kill_through_a_prometheus_parser() {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .control_plane_count(3);
    scenario("mo-p", 3, opts, |site| {
        let all = site.all();
        for i in all.clone() {
            let listen = format!("{}:9464", site.ip(i));
            site.write_config(i, &overrides([("metrics.listen", listen)]))?;
        }
        site.start_all()?;
        site.wait_formed(TIMEOUT, &all)?;
        let leader_id = site.status_view(0)?.leader_id.context("a leader")?;
        let leader = *all
            .iter()
            .find(|&&i| site.node_id(i).as_deref() == Some(leader_id.as_str()))
            .context("the leader")?;
        let watcher = *all.iter().find(|&&i| i != leader).context("a follower")?;
        let (ns, listen) = (
            site.namespace(watcher).to_owned(),
            format!("{}:9464", site.ip(watcher)),
        );
        let parsed = || -> Result<serde_json::Value> {
            let (code, text) = get(&ns, &listen, "/metrics")?;
            ensure!(code == 200, "/metrics {code}");
            let script =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/prom_parse.py");
            let mut child = std::process::Command::new("python3")
                .arg(script)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()?;
            child
                .stdin
                .take()
                .context("stdin")?
                .write_all(text.as_bytes())?;
            let out = child.wait_with_output()?;
            ensure!(
                out.status.success(),
                "the Prometheus parser refused /metrics: {}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(serde_json::from_slice(&out.stdout)?)
        };
        let value = |v: &serde_json::Value, k: &str| v[k].as_f64();
        // Metrics are sampled on the agent's ticks: wait for one taken after formation.
        let deadline = Instant::now() + TIMEOUT;
        let before = loop {
            let v = parsed()?;
            if value(&v, "muster_has_leader") == Some(1.0)
                && value(&v, "muster_members{state=\"reachable\"}") == Some(3.0)
            {
                break v;
            }
            if Instant::now() > deadline {
                bail!("no sample of the formed site: {v:#}");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let changes = value(&before, "muster_leader_changes_total").context("leader changes")?;
        let elections = value(&before, "muster_elections_total").context("elections")?;
        site.kill(leader)?;
        let deadline = Instant::now() + TIMEOUT;
        let after = loop {
            let v = parsed()?;
            if value(&v, "muster_leader_changes_total") == Some(changes + 1.0)
                && value(&v, "muster_has_leader") == Some(1.0)
                && value(&v, "muster_members{state=\"unreachable\"}") == Some(1.0)
            {
                break v;
            }
            if Instant::now() > deadline {
                bail!("/metrics did not follow the kill: {v:#}");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        ensure!(
            value(&after, "muster_elections_total").is_some_and(|e| e > elections),
            "an election was counted: {after:#}"
        );
        Ok(())
    });
}
