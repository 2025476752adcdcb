//! muster-formation-bench: how long a site of N real agents takes to form one group.
//!
//! For each N (default 3 and 10) and each of R runs (default 5): a fresh site, all agents
//! started at once, then every host polled (one thread per host, every ~20 ms) until all report
//! the same cluster and leader, all N members and `control_plane_count` voters. The time is
//! from just before the first agent is spawned to the last host's agreeing status. Prints each
//! run, then median/min/max against the targets (issue 12: 3 hosts ≤ 0.5 s, 10 ≤ 1.0 s, 25 ≤
//! 2.0 s; judged on the median).
//!
//! `--peer-bin PATH` runs every site a second time, right after, with another `muster` binary
//! (an earlier release build), and prints its figures beside; `--timeline` prints, for every
//! run, each host's formation stages from its agent's own log (started, first peer connected,
//! bootstrapped or asked to join, admitted, caught up, voter, site formed; ms from the start)
//! and, per size, the median of each stage over all hosts and runs.
//!
//! Usage: `muster-formation-bench [--runs R] [--bootstrap] [--timeout SECS] [--check]
//! [--peer-bin PATH] [--timeline] [N ...]`. `--check` exits non-zero when a target is missed;
//! failed runs always do. Needs root and a built binary (`MUSTER_BIN`, or the workspace's target
//! dir — build with `--release`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use muster_testbed::formed::{check_agreement, expected_voters};
use muster_testbed::formlog::{self, Stages};
use muster_testbed::{interrupt, Discovery, Site, SiteOptions, Status};

/// Namespace prefix of the benchmark's sites.
const PREFIX: &str = "mb";
/// Poll period per host.
const POLL: Duration = Duration::from_millis(20);
/// How often the main thread evaluates the snapshots.
const CHECK: Duration = Duration::from_millis(5);

struct Args {
    sizes: Vec<usize>,
    runs: usize,
    discovery: Discovery,
    timeout: Duration,
    check: bool,
    peer_bin: Option<PathBuf>,
    timeline: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        sizes: Vec::new(),
        runs: 5,
        discovery: Discovery::Mdns,
        timeout: Duration::from_secs(60),
        check: false,
        peer_bin: None,
        timeline: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => args.runs = it.next().context("--runs needs a value")?.parse()?,
            "--timeout" => {
                let secs: u64 = it.next().context("--timeout needs seconds")?.parse()?;
                args.timeout = Duration::from_secs(secs);
            }
            "--bootstrap" => args.discovery = Discovery::Bootstrap,
            "--check" => args.check = true,
            "--timeline" => args.timeline = true,
            "--peer-bin" => {
                let path = PathBuf::from(it.next().context("--peer-bin needs a path")?);
                if !path.is_file() {
                    bail!("--peer-bin {}: no such file", path.display());
                }
                args.peer_bin = Some(path);
            }
            n => args.sizes.push(n.parse().with_context(|| {
                format!(
                    "unknown argument {n:?}; usage: [--runs R] [--bootstrap] [--timeout S] \
                     [--check] [--peer-bin PATH] [--timeline] [N ...]"
                )
            })?),
        }
    }
    if args.sizes.is_empty() {
        args.sizes = vec![3, 10];
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(args)
}

/// Target formation time for a site size, if the issue names one (issue 12, item 2).
fn target(hosts: usize) -> Option<Duration> {
    match hosts {
        3 => Some(Duration::from_millis(500)),
        10 => Some(Duration::from_millis(1000)),
        25 => Some(Duration::from_millis(2000)),
        _ => None,
    }
}

fn main() -> ExitCode {
    match interrupt::install().and_then(|()| bench(parse_args()?)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("muster-formation-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every size; returns whether all runs succeeded (and, with `--check`, met targets).
fn bench(args: Args) -> Result<bool> {
    let mut rows = Vec::new();
    let mut ok = true;
    let mut bins: Vec<(String, Option<PathBuf>)> = vec![("muster".into(), None)];
    if let Some(peer) = &args.peer_bin {
        bins.push((format!("peer {}", peer.display()), Some(peer.clone())));
    }
    for &n in &args.sizes {
        let mut stages: Vec<Stages> = Vec::new();
        let mut series: Vec<Row> = bins
            .iter()
            .map(|(label, _)| Row {
                label: label.clone(),
                hosts: n,
                times: Vec::new(),
                failed: 0,
            })
            .collect();
        for run in 1..=args.runs {
            for ((label, bin), row) in bins.iter().zip(series.iter_mut()) {
                interrupt::check()?;
                match run_once(n, args.discovery, args.timeout, bin.as_ref()) {
                    Ok((t, timeline)) => {
                        println!(
                            "N={n:<3} run {run}/{} {label}: {:.3} s",
                            args.runs,
                            t.as_secs_f64()
                        );
                        row.times.push(t);
                        if args.timeline {
                            print_timeline(&timeline);
                            if bin.is_none() {
                                stages.extend(timeline.hosts.iter().map(|(_, s)| s.clone()));
                            }
                        }
                    }
                    Err(e) => {
                        interrupt::check()?;
                        println!("N={n:<3} run {run}/{} {label}: FAILED: {e:#}", args.runs);
                        row.failed += 1;
                    }
                }
            }
        }
        ok &= series.iter().all(|r| r.failed == 0);
        if args.timeline {
            print_stage_medians(n, &stages);
        }
        rows.extend(series);
    }
    println!();
    println!("{}", Row::header());
    for row in &rows {
        println!("{}", row.line());
        if args.check && row.label == "muster" && row.met() == Some(false) {
            ok = false;
        }
    }
    Ok(ok)
}

/// One run's per-host stages and the wall clock it started at.
struct Timeline {
    start_unix_ms: u64,
    hosts: Vec<(String, Stages)>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Each host's stages in ms from the run's start, one row per host.
fn print_timeline(t: &Timeline) {
    let cols = Stages::default().columns().map(|(name, _)| name);
    let mut header = format!("  {:<6}", "host");
    for name in cols {
        header.push_str(&format!(" {name:>10}"));
    }
    println!("{header}   (ms from the start of the first agent)");
    for (host, s) in &t.hosts {
        let mut line = format!("  {host:<6}");
        for (_, at) in s.columns() {
            let cell = at.map_or("-".to_string(), |v| {
                format!("{}", v.saturating_sub(t.start_unix_ms))
            });
            line.push_str(&format!(" {cell:>10}"));
        }
        println!("{line}");
    }
}

/// For one size: each stage's median over all hosts and runs, and its median step from the
/// stage before it on the same host (where the time goes).
fn print_stage_medians(n: usize, stages: &[Stages]) {
    if stages.is_empty() {
        return;
    }
    let median = |mut v: Vec<u64>| -> Option<u64> {
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    };
    println!("  N={n}: per stage, median over {} host-runs, ms after the host's own start (and the median step from the stage before):", stages.len());
    let names = Stages::default().columns().map(|(name, _)| name);
    for (k, name) in names.iter().enumerate().skip(1) {
        let at: Vec<u64> = stages
            .iter()
            .filter_map(|s| {
                let c = s.columns();
                Some(c[k].1?.saturating_sub(s.start?))
            })
            .collect();
        let step: Vec<u64> = stages
            .iter()
            .filter_map(|s| {
                let c = s.columns();
                let this = c[k].1?;
                let before = c[..k].iter().rev().find_map(|(_, t)| *t)?;
                Some(this.saturating_sub(before))
            })
            .collect();
        let show = |m: Option<u64>| m.map_or("-".into(), |v| v.to_string());
        let hosts = at.len();
        println!(
            "    {name:<11} {:>6}  (step {:>5}, {hosts} hosts)",
            show(median(at)),
            show(median(step)),
        );
    }
}

struct Row {
    label: String,
    hosts: usize,
    times: Vec<Duration>,
    failed: usize,
}

impl Row {
    fn header() -> String {
        format!(
            "{:<40} {:>5} {:>4} {:>6} {:>9} {:>9} {:>9} {:>8} {:>4}",
            "binary", "hosts", "runs", "failed", "median", "min", "max", "target", "met"
        )
    }

    fn median(&self) -> Option<Duration> {
        let mut sorted = self.times.clone();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied()
    }

    /// Whether the median meets the target; `None` without a target or successful run.
    fn met(&self) -> Option<bool> {
        Some(self.median()? <= target(self.hosts)?)
    }

    fn line(&self) -> String {
        let secs =
            |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.3} s", d.as_secs_f64()));
        let met = match self.met() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        format!(
            "{:<40} {:>5} {:>4} {:>6} {:>9} {:>9} {:>9} {:>8} {:>4}",
            self.label,
            self.hosts,
            self.times.len() + self.failed,
            self.failed,
            secs(self.median()),
            secs(self.times.iter().min().copied()),
            secs(self.times.iter().max().copied()),
            target(self.hosts).map_or("-".into(), |t| format!("{} s", t.as_secs_f64())),
            met
        )
    }
}

/// One run: fresh site, start all, time until formed, read the logs, tear down.
fn run_once(
    n: usize,
    discovery: Discovery,
    timeout: Duration,
    bin: Option<&PathBuf>,
) -> Result<(Duration, Timeline)> {
    let mut opts = SiteOptions::default().discovery(discovery);
    if let Some(bin) = bin {
        opts = opts.muster_bin(bin);
    }
    let mut site = Site::new(PREFIX, n, opts)?;
    let start_unix_ms = unix_ms(SystemTime::now());
    let started = Instant::now();
    site.start_all()?;
    let result = measure(&site, n, started, timeout);
    if result.is_err() && !interrupt::interrupted() {
        site.dump_logs();
    }
    let timeline = Timeline {
        start_unix_ms,
        hosts: site
            .all()
            .into_iter()
            .map(|i| (format!("h{i}"), formlog::parse(&site.log(i))))
            .collect(),
    };
    site.teardown()?;
    Ok((result?, timeline))
}

/// Polls every host on its own thread; returns the time of the last agreeing snapshot.
fn measure(site: &Site, n: usize, started: Instant, timeout: Duration) -> Result<Duration> {
    let snapshots: Vec<Mutex<Option<(Instant, Status)>>> =
        (0..n).map(|_| Mutex::new(None)).collect();
    let done = AtomicBool::new(false);
    let voters = expected_voters(site.control_plane_count(), n);
    thread::scope(|scope| {
        for (i, slot) in snapshots.iter().enumerate() {
            let done = &done;
            scope.spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    if let Ok(status) = site.status_view(i) {
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some((Instant::now(), status));
                    }
                    thread::sleep(POLL);
                }
            });
        }
        let result = wait_agreement(&snapshots, voters, started, timeout, site);
        done.store(true, Ordering::SeqCst);
        result
    })
}

fn wait_agreement(
    snapshots: &[Mutex<Option<(Instant, Status)>>],
    voters: usize,
    started: Instant,
    timeout: Duration,
    site: &Site,
) -> Result<Duration> {
    loop {
        interrupt::check()?;
        let taken: Vec<Option<(Instant, Status)>> = snapshots
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        let mut reason = String::from("not every host answered yet");
        if taken.iter().all(Option::is_some) {
            let snaps: Vec<(Instant, Status)> = taken.into_iter().flatten().collect();
            let views: Vec<(usize, Status)> =
                snaps.iter().cloned().map(|(_, s)| s).enumerate().collect();
            let ids: BTreeSet<String> = views.iter().map(|(_, s)| s.node_id.clone()).collect();
            match check_agreement(&views, &ids, voters) {
                Ok(_) if ids.len() != snaps.len() => reason = format!("duplicate node ids {ids:?}"),
                Ok(_) => {
                    let last = snaps.iter().map(|(t, _)| *t).max().unwrap_or(started);
                    return Ok(last.duration_since(started));
                }
                Err(e) => reason = format!("{e:#}"),
            }
        }
        if started.elapsed() > timeout {
            bail!(
                "no agreement within {timeout:?}: {reason}\nstatus:{}",
                site.describe()
            );
        }
        thread::sleep(CHECK);
    }
}
