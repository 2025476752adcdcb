//! muster-demo: brings up a site of real agents in network namespaces (mDNS) with a VIP
//! (10.77.0.100/24), waits until they formed one group and exactly one host — the leader — holds
//! the VIP, shows the address on that host's interface and `muster status` from it, and tears
//! everything down.
//!
//! Builds nothing: run `scripts/demo.sh`, or build `muster` yourself and point `MUSTER_BIN` at
//! it. Usage: `muster-demo [--hosts N]` (default 3). Needs root. Exits non-zero if the site does
//! not form within 60 s, on any failure, and on Ctrl-C (130) — cleaning up in every case.

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
    let result = interrupt::install().and_then(|()| run(parse_hosts()?));
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

fn parse_hosts() -> Result<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(3),
        [flag, n] if flag == "--hosts" => n.parse().with_context(|| format!("--hosts {n:?}")),
        _ => bail!("usage: muster-demo [--hosts N]"),
    }
}

fn run(hosts: usize) -> Result<()> {
    let mut site = Site::new(PREFIX, hosts, SiteOptions::default().vip(false))?;
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
    show_status(&site, holder)?;
    site.teardown()?;
    println!("muster-demo: agents stopped, namespaces removed");
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
    println!("\n$ muster status --socket {socket} --json");
    println!("{}", serde_json::to_string_pretty(&site.status(i)?)?);
    println!();
    Ok(())
}
