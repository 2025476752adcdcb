//! muster-demo: brings up a site of real agents in network namespaces (mDNS) with a VIP
//! (10.77.0.100/24), waits until they formed one group and exactly one host — the leader — holds
//! the VIP, lets them run a join plan (`distribution = "none"` with a demo hook that only sleeps),
//! SIGKILLs the leader and starts it again, then shows the address on the holder's interface,
//! `muster status`, `muster health` and `muster events` from it, writes the site's timeline
//! (leader, VIP, steps) as an SVG, and tears everything down.
//!
//! Builds nothing: run `scripts/demo.sh`, or build `muster` yourself and point `MUSTER_BIN` at
//! it. Usage: `muster-demo [--hosts N] [--svg PATH]` (default 3 hosts; the SVG goes to
//! `$TMPDIR/muster-demo-timeline.svg` unless PATH is given). Needs root. Exits non-zero if the site does not form
//! within 60 s, on any failure, and on Ctrl-C (130) — cleaning up in every case.

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use muster_testbed::{interrupt, Formed, Site, SiteOptions};

/// Namespace prefix of the demo site.
const PREFIX: &str = "md";
/// Formation must happen within this.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll period while waiting.
const POLL: Duration = Duration::from_millis(100);
/// Progress line period.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let result = interrupt::install().and_then(|()| {
        let (hosts, svg) = parse_args()?;
        run(hosts, svg)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if interrupt::interrupted() => {
            eprintln!("muster-demo: interrupted, site torn down ({e:#})");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("muster-demo: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<(usize, Option<std::path::PathBuf>)> {
    let mut args = std::env::args().skip(1);
    let (mut hosts, mut svg) = (3, None);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .context("usage: muster-demo [--hosts N] [--svg PATH]")?;
        match flag.as_str() {
            "--hosts" => {
                hosts = value
                    .parse()
                    .with_context(|| format!("--hosts {value:?}"))?
            }
            "--svg" => svg = Some(value.into()),
            _ => bail!("usage: muster-demo [--hosts N] [--svg PATH]"),
        }
    }
    if hosts == 0 {
        bail!("--hosts: at least 1");
    }
    Ok((hosts, svg))
}

/// A hook for the demo's join plan: each step only takes a moment (a real site runs the k3s,
/// RKE2 or kubeadm hook from deploy/hooks).
const DEMO_HOOK: &str = "#!/bin/sh\nsleep 0.3\n";

fn run(hosts: usize, svg: Option<std::path::PathBuf>) -> Result<()> {
    let mut site = Site::new(PREFIX, hosts, SiteOptions::default().vip(false))?;
    let hook = site.dir().join("demo-hook");
    std::fs::write(&hook, DEMO_HOOK)?;
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let keys = muster_testbed::overrides([
        ("kubernetes.distribution", toml::Value::from("none")),
        (
            "kubernetes.install_command",
            hook.display().to_string().into(),
        ),
    ]);
    for i in site.all() {
        site.write_config(i, &keys)?;
    }
    println!("muster-demo: binary {}", site.muster().path().display());
    println!(
        "muster-demo: {hosts} hosts in namespaces {}-h0..{}-h{} on bridge {}-br (10.77.0.10..), \
         discovery: mDNS, files in {}",
        PREFIX,
        PREFIX,
        hosts - 1,
        PREFIX,
        site.dir().display()
    );
    let booted = Instant::now();
    site.start_all()?;
    let formed = match wait_formed(&site) {
        Ok(formed) => formed,
        Err(e) => {
            if !interrupt::interrupted() {
                site.dump_logs();
            }
            return Err(e);
        }
    };
    let leader = formed.leader_host().map_or("?".into(), |i| format!("h{i}"));
    println!(
        "muster-demo: formed — cluster {} with {} members ({} voters), leader {} ({leader})",
        formed.cluster_id,
        formed.members.len(),
        formed.voters.len(),
        formed.leader_id
    );
    let holder = match site.wait_one_holder(FORM_TIMEOUT, &site.all()) {
        Ok(h) => h,
        Err(e) => {
            site.dump_logs();
            return Err(e);
        }
    };
    println!(
        "muster-demo: VIP {} held by h{holder} (the leader), on no other host, {:.1} s after the agents started",
        muster_testbed::names::VIP_V4,
        booted.elapsed().as_secs_f64()
    );
    let holder = match failover(&mut site, holder) {
        Ok(h) => h,
        Err(e) => {
            site.dump_logs();
            return Err(e);
        }
    };
    show_status(&site, holder)?;
    write_timeline(&site, holder, svg)?;
    site.teardown()?;
    println!("muster-demo: agents stopped, namespaces removed");
    Ok(())
}

/// Waits for the join plan to complete, SIGKILLs the leader, waits for the VIP to move and the
/// old leader to be back (restarted, it rejoins); returns the holder.
fn failover(site: &mut Site, holder: usize) -> Result<usize> {
    let all = site.all();
    let done = |s: &Site| {
        s.status(holder).is_ok_and(|v| {
            v["plan"]["steps"].as_array().is_some_and(|st| {
                st.len() == all.len() && st.iter().all(|x| x["state"] == "succeeded")
            })
        })
    };
    site.wait_until(FORM_TIMEOUT, done)
        .context("the join plan did not complete")?;
    println!("muster-demo: the join plan completed: init on h{holder}, then the others in order");
    if all.len() < 3 {
        return Ok(holder);
    }
    let killed = Instant::now();
    site.kill(holder)?;
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != holder).collect();
    let next = site.wait_one_holder(FORM_TIMEOUT, &others)?;
    println!(
        "muster-demo: SIGKILLed h{holder}; the VIP is on h{next} {:.2} s later",
        killed.elapsed().as_secs_f64()
    );
    site.start(holder)?;
    site.wait_formed(FORM_TIMEOUT, &all)?;
    println!("muster-demo: h{holder} restarted and is a member again");
    Ok(next)
}

/// Writes the timeline of `muster events` on `i` as an SVG (to `svg`, or the site's directory).
fn write_timeline(site: &Site, i: usize, svg: Option<std::path::PathBuf>) -> Result<()> {
    let socket = site.host(i).socket.display().to_string();
    let out = std::process::Command::new(site.muster().path())
        .args(["events", "--json", "--socket", &socket])
        .output()
        .context("muster events --json")?;
    let events: Vec<muster_testbed::timeline::Event> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| muster_testbed::timeline::Event::from_json(&v))
        .collect();
    let path = svg.unwrap_or_else(|| std::env::temp_dir().join("muster-demo-timeline.svg"));
    let title = format!(
        "muster demo: {} hosts — leader, VIP and join steps as h{i} saw them",
        site.all().len()
    );
    std::fs::write(&path, muster_testbed::timeline::svg(&events, &title))
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "muster-demo: wrote the site's timeline to {}",
        path.display()
    );
    Ok(())
}

/// Polls until formed, printing each host's phase once a second.
fn wait_formed(site: &Site) -> Result<Formed> {
    let all = site.all();
    let started = Instant::now();
    let mut last_progress = started;
    loop {
        interrupt::check()?;
        let reason = match site.check_formed(&all) {
            Ok(formed) => {
                println!("[{:5.1}s] formed", started.elapsed().as_secs_f64());
                return Ok(formed);
            }
            Err(e) => e,
        };
        if started.elapsed() > FORM_TIMEOUT {
            bail!(
                "the site did not form within {} s: {reason:#}\nstatus:{}",
                FORM_TIMEOUT.as_secs(),
                site.describe()
            );
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            println!(
                "[{:5.1}s] {}",
                started.elapsed().as_secs_f64(),
                progress(site)
            );
        }
        thread::sleep(POLL);
    }
}

fn progress(site: &Site) -> String {
    let parts: Vec<String> = site
        .all()
        .into_iter()
        .map(|i| match site.status_view(i) {
            Ok(s) => format!(
                "h{i}: {} peers={} members={}",
                s.phase.as_deref().unwrap_or(if s.cluster_id.is_some() {
                    "member"
                } else {
                    "?"
                }),
                s.peers_connected.map_or("?".into(), |n| n.to_string()),
                s.members.len()
            ),
            Err(_) => format!("h{i}: starting"),
        })
        .collect();
    parts.join(" | ")
}

fn show_status(site: &Site, i: usize) -> Result<()> {
    let ns = site.namespace(i);
    println!(
        "\n$ ip netns exec {ns} ip -4 addr show dev {}",
        muster_testbed::names::HOST_IFACE
    );
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "ip",
            "-4",
            "addr",
            "show",
            "dev",
            muster_testbed::names::HOST_IFACE,
        ])
        .output()
        .context("ip addr show")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let socket = site.host(i).socket.display().to_string();
    println!("\n$ muster status --socket {socket}");
    println!("{}", site.status_human(i)?.trim_end());
    println!("\n$ muster health --socket {socket}");
    // Exit 1 (a failed check) still prints the checks; the demo shows them either way.
    let health = std::process::Command::new(site.muster().path())
        .args(["health", "--socket", &socket])
        .output()
        .context("muster health")?;
    print!("{}", String::from_utf8_lossy(&health.stdout));
    println!("\n$ muster events --socket {socket}");
    let events = std::process::Command::new(site.muster().path())
        .args(["events", "--socket", &socket])
        .output()
        .context("muster events")?;
    print!("{}", String::from_utf8_lossy(&events.stdout));
    if !events.status.success() {
        print!("{}", String::from_utf8_lossy(&events.stderr));
    }
    println!("\n$ muster status --socket {socket} --json");
    println!("{}", serde_json::to_string_pretty(&site.status(i)?)?);
    println!();
    Ok(())
}
