//! `muster-idle-bench`: what a formed, idle site costs per host, beside keepalived.
//!
//! For each site size N (default 3 and 25): a fresh site of N hosts in network namespaces
//! (`mib-*`) with `[vip] address = 10.77.0.100/24`, every agent started at once; the bench
//! waits until the site has formed, every member is reachable and one host holds the VIP, lets
//! it settle (`--settle-secs`, default 10), then reads each agent's CPU time (`utime + stime`
//! of its process, every thread, from `/proc/PID/stat`) at the start and the end of a window
//! (`--secs`, default 60) in which nothing else talks to the agents, and its `VmRSS` at the end.
//! Status is read only before and after the window (the highest term and the leader, to show
//! that the window had no election). On the 3-host site, keepalived (VRRPv3, advert 0.1 s,
//! [`muster_testbed::keepalived`]) then runs on the same hosts with muster stopped, and is
//! measured the same way (its parent and VRRP child summed).
//!
//! Prints per host the % of one core (CPU time / wall time), then per site the median, the
//! maximum and the leader's, RSS median and maximum, and the targets (every agent ≤ 1 %
//! of a core at idle, the leader included, at 3 and at 25 hosts; RSS ≤ 25 MiB) with "ok" /
//! "MISSED". Exits 0 whatever the figures (it is a benchmark), 1 only if the testbed failed.
//! Needs root, iproute2, keepalived, and a release build: `cargo build --release --bin muster`
//! (or `MUSTER_BIN`). Options: `--secs S`, `--settle-secs S`, `--no-keepalived`, sizes `N ...`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use muster_testbed::bench::verdict;
use muster_testbed::keepalived::{self, Keepalived, Timing};
use muster_testbed::procstat;
use muster_testbed::{cli, interrupt, Site, SiteOptions};

const PREFIX: &str = "mib";
/// Formation and steady state, generous: 25 agents start at once on 2 cores.
const FORM_TIMEOUT: Duration = Duration::from_secs(180);
const HOLDER_TIMEOUT: Duration = Duration::from_secs(60);
/// The targets.
const TARGET_CPU_PCT: f64 = 1.0;
const TARGET_RSS_KIB: u64 = 25 * 1024;

struct Args {
    sizes: Vec<usize>,
    window: Duration,
    settle: Duration,
    keepalived: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        sizes: Vec::new(),
        window: Duration::from_secs(60),
        settle: Duration::from_secs(10),
        keepalived: true,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut secs = || -> Result<Duration> {
            let v = it.next().with_context(|| format!("{flag} needs seconds"))?;
            let s: u64 = v
                .parse()
                .with_context(|| format!("{flag} {v}: not a number"))?;
            Ok(Duration::from_secs(s))
        };
        match flag.as_str() {
            "--secs" => a.window = secs()?,
            "--settle-secs" => a.settle = secs()?,
            "--no-keepalived" => a.keepalived = false,
            n => a.sizes.push(n.parse().with_context(|| {
                format!(
                    "unknown argument {n:?}; usage: [--secs S] [--settle-secs S] \
                     [--no-keepalived] [N ...]"
                )
            })?),
        }
    }
    if a.window.is_zero() {
        bail!("--secs must be at least 1");
    }
    if a.sizes.is_empty() {
        a.sizes = vec![3, 25];
    }
    Ok(a)
}

/// One process (group) measured over the window.
#[derive(Debug, Clone)]
struct Sample {
    host: usize,
    /// CPU time over wall time, in % of one core.
    cpu_pct: f64,
    rss_kib: u64,
}

/// One site (muster or keepalived) measured.
#[derive(Debug, Clone)]
struct Measured {
    label: String,
    hosts: usize,
    samples: Vec<Sample>,
    /// The leader (muster: before and after the window, the same host unless an election
    /// happened) or VRRP master (keepalived), by host index.
    leaders: Vec<usize>,
    /// Highest term before and after the window, and whether the leader stayed (muster only).
    terms: Option<(u64, u64, bool)>,
}

impl Measured {
    fn cpu(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.samples.iter().map(|s| s.cpu_pct).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn rss(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.samples.iter().map(|s| s.rss_kib).collect();
        v.sort_unstable();
        v
    }

    /// The leader's share (the larger, if leadership moved during the window).
    fn leader_cpu(&self) -> Option<f64> {
        self.samples
            .iter()
            .filter(|s| self.leaders.contains(&s.host))
            .map(|s| s.cpu_pct)
            .max_by(f64::total_cmp)
    }
}

fn median_f(v: &[f64]) -> Option<f64> {
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("muster-idle-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = prepare(&args) {
        eprintln!("muster-idle-bench: {e:#}");
        return ExitCode::FAILURE;
    }
    let _lock = muster_testbed::exclusive();
    let mut results = Vec::new();
    let mut failed = None;
    for &n in &args.sizes {
        if let Err(e) = run_size(n, &args, &mut results) {
            failed = Some(e.context(format!("site of {n} hosts")));
            break;
        }
    }
    print_results(&args, &results);
    match failed {
        None => ExitCode::SUCCESS,
        Some(e) => {
            eprintln!("muster-idle-bench: the run stopped early: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the interrupt handler and points `MUSTER_BIN` at the release build.
fn prepare(args: &Args) -> Result<()> {
    interrupt::install()?;
    if args.keepalived {
        keepalived::preflight()?;
    }
    if std::env::var_os(cli::MUSTER_BIN_ENV).is_none() {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| cli::workspace_root().join("target"), PathBuf::from);
        let release = target.join("release").join("muster");
        if !release.is_file() {
            bail!(
                "{} is missing: build it with `cargo build --release --bin muster` (or set {})",
                release.display(),
                cli::MUSTER_BIN_ENV
            );
        }
        // Single-threaded here: nothing else reads the environment yet.
        std::env::set_var(cli::MUSTER_BIN_ENV, release);
    }
    Ok(())
}

fn progress(msg: &str) {
    eprintln!("[idle-bench] {msg}");
}

/// One site size: muster, then (3 hosts) keepalived on the same hosts. The site is torn down
/// whatever happened.
fn run_size(n: usize, args: &Args, results: &mut Vec<Measured>) -> Result<()> {
    let mut site = Site::new(PREFIX, n, SiteOptions::default().vip(false))
        .context("setting up the testbed")?;
    let outcome = (|| -> Result<()> {
        results.push(measure_muster(&mut site, args)?);
        if args.keepalived && n == 3 {
            results.push(measure_keepalived(&mut site, args)?);
        }
        Ok(())
    })();
    if outcome.is_err() && !interrupt::interrupted() {
        site.dump_logs();
    }
    let teardown = site.teardown();
    outcome.and(teardown)
}

/// Highest term any host reports, and the leader host 0 names (by index).
fn term_and_leader(site: &Site) -> Result<(u64, Option<usize>)> {
    let mut term = 0;
    let mut leader = None;
    for i in site.all() {
        let v = site.status_view(i)?;
        term = term.max(v.term);
        if leader.is_none() {
            leader = v.leader_id.as_deref().and_then(|id| site.host_of(id));
        }
    }
    Ok((term, leader))
}

fn measure_muster(site: &mut Site, args: &Args) -> Result<Measured> {
    let n = site.len();
    progress(&format!("muster, {n} hosts: forming"));
    let started = Instant::now();
    site.start_all()?;
    let all = site.all();
    site.wait_formed(FORM_TIMEOUT, &all)?;
    site.wait_until(FORM_TIMEOUT, |s| {
        all.iter().all(|&i| {
            s.status_view(i)
                .is_ok_and(|v| v.members.iter().all(|m| m.reachable == Some(true)))
        })
    })?;
    site.wait_one_holder(HOLDER_TIMEOUT, &all)?;
    progress(&format!(
        "muster, {n} hosts: formed in {:.1} s; settling {:?}",
        started.elapsed().as_secs_f64(),
        args.settle
    ));
    sleep(args.settle)?;
    let (term_before, leader) = term_and_leader(site)?;
    let pids = pids(n, |i| site.host(i).pid())?;
    progress(&format!("muster, {n} hosts: measuring {:?}", args.window));
    let samples = window(&pids, args.window)?;
    let (term_after, leader_after) = term_and_leader(site)?;
    stop_muster(site)?;
    Ok(Measured {
        label: "muster".into(),
        hosts: n,
        samples,
        leaders: leader.into_iter().chain(leader_after).collect(),
        terms: Some((term_before, term_after, leader == leader_after)),
    })
}

fn stop_muster(site: &mut Site) -> Result<()> {
    for i in site.all() {
        if site.is_running(i) {
            site.terminate(i)?;
        }
    }
    let left = site.vip_holders()?;
    if !left.is_empty() {
        bail!("hosts {left:?} kept the VIP after SIGTERM");
    }
    Ok(())
}

fn measure_keepalived(site: &mut Site, args: &Args) -> Result<Measured> {
    let n = site.len();
    let timing = Timing::Tuned;
    progress(&format!("{}, {n} hosts: starting", timing.label()));
    let mut ka = Keepalived::new(site, timing)?;
    ka.start_all()?;
    let result = (|| -> Result<Measured> {
        let holder = wait_single_holder(site)?;
        sleep(args.settle)?;
        let pids = pids(n, |i| ka.pid(i))?;
        progress(&format!(
            "{}, {n} hosts: measuring {:?}",
            timing.label(),
            args.window
        ));
        let samples = window(&pids, args.window)?;
        Ok(Measured {
            label: "keepalived (VRRPv3, advert 0.1 s)".into(),
            hosts: n,
            samples,
            leaders: vec![holder],
            terms: None,
        })
    })();
    if result.is_err() {
        for i in site.all() {
            eprintln!("===== keepalived on host {i} =====\n{}", ka.log_tail(i, 30));
        }
    }
    ka.stop_all()?;
    result
}

/// Waits until exactly one host carries the VIP, the same one for 2 s.
fn wait_single_holder(site: &Site) -> Result<usize> {
    let deadline = Instant::now() + HOLDER_TIMEOUT;
    let mut since: Option<(usize, Instant)> = None;
    loop {
        interrupt::check()?;
        let holders = site.vip_holders()?;
        since = match (holders[..].first(), holders.len(), since) {
            (Some(&h), 1, Some((s, t))) if s == h => {
                if t.elapsed() >= Duration::from_secs(2) {
                    return Ok(h);
                }
                Some((s, t))
            }
            (Some(&h), 1, _) => Some((h, Instant::now())),
            _ => None,
        };
        if Instant::now() > deadline {
            bail!("keepalived: no single stable VIP holder within {HOLDER_TIMEOUT:?}: {holders:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn pids(n: usize, pid: impl Fn(usize) -> Option<u32>) -> Result<Vec<(usize, u32)>> {
    (0..n)
        .map(|i| {
            pid(i)
                .map(|p| (i, p))
                .with_context(|| format!("host {i} is not running"))
        })
        .collect()
}

/// CPU time of each process group over `span`, and its RSS at the end.
fn window(pids: &[(usize, u32)], span: Duration) -> Result<Vec<Sample>> {
    let hz = procstat::clock_ticks_per_sec() as f64;
    let read = || -> Result<Vec<u64>> {
        pids.iter()
            .map(|&(_, p)| procstat::cpu_ticks_of_group(p))
            .collect()
    };
    let t0 = Instant::now();
    let before = read()?;
    sleep(span)?;
    let after = read()?;
    let wall = t0.elapsed().as_secs_f64();
    let mut out = Vec::new();
    for (k, &(host, pid)) in pids.iter().enumerate() {
        let ticks = after[k].saturating_sub(before[k]) as f64;
        out.push(Sample {
            host,
            cpu_pct: ticks / hz / wall * 100.0,
            rss_kib: procstat::rss_kib_of_group(pid)?,
        });
    }
    Ok(out)
}

/// Sleeps in small steps so Ctrl-C stops the run.
fn sleep(d: Duration) -> Result<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        interrupt::check()?;
        thread::sleep(
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
        );
    }
    Ok(())
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2} %"))
}

fn mib(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.1} MiB", v as f64 / 1024.0))
}

fn print_results(args: &Args, results: &[Measured]) {
    println!();
    println!(
        "Idle cost: % of one core per host over {} s (after {} s settled), RSS at the end",
        args.window.as_secs(),
        args.settle.as_secs()
    );
    for m in results {
        let per_host: Vec<String> = m
            .samples
            .iter()
            .map(|s| {
                let star = if m.leaders.contains(&s.host) { "*" } else { "" };
                format!("h{}{star} {:.2}", s.host, s.cpu_pct)
            })
            .collect();
        println!(
            "  {} ({} hosts; * leader, before or after): {}",
            m.label,
            m.hosts,
            per_host.join(", ")
        );
        if let Some((before, after, same)) = m.terms {
            println!(
                "    term {before} -> {after}, leader {}",
                if same { "unchanged" } else { "CHANGED" }
            );
        }
    }
    println!();
    println!(
        "{:<36} {:>5} {:>9} {:>9} {:>9} {:>11} {:>11}",
        "", "hosts", "median", "max", "leader", "RSS median", "RSS max"
    );
    for m in results {
        let cpu = m.cpu();
        let rss = m.rss();
        println!(
            "{:<36} {:>5} {:>9} {:>9} {:>9} {:>11} {:>11}",
            m.label,
            m.hosts,
            pct(median_f(&cpu)),
            pct(cpu.last().copied()),
            pct(m.leader_cpu()),
            mib(rss.get(rss.len() / 2).copied()),
            mib(rss.last().copied()),
        );
    }
    println!();
    println!("Targets (issue 12, item 5):");
    for m in results.iter().filter(|m| m.label == "muster") {
        let max = m.cpu().last().copied();
        println!(
            "  every agent ≤ {TARGET_CPU_PCT} % of a core, {} hosts (leader included): {}",
            m.hosts,
            verdict(max.is_some_and(|v| v <= TARGET_CPU_PCT))
        );
        let rss = m.rss().last().copied();
        println!(
            "  RSS ≤ {} MiB, {} hosts: {}",
            TARGET_RSS_KIB / 1024,
            m.hosts,
            verdict(rss.is_some_and(|v| v <= TARGET_RSS_KIB))
        );
        if let Some((before, after, same)) = m.terms {
            println!(
                "  no election while idle, {} hosts: {}",
                m.hosts,
                verdict(before == after && same)
            );
        }
    }
}
