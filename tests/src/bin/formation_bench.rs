//! muster-formation-bench: how long a site of N real agents takes to form one group.
//!
//! For each N (default 3 and 10) and each of R runs (default 5): a fresh site, all agents
//! started at once, then every host polled (one thread per host, every ~20 ms) until all report
//! the same cluster and leader and all N members. The time is from just before the first agent
//! is spawned to the last host's agreeing status. Prints each run, then median/min/max against
//! the targets (3 hosts ≤ 2 s, 10 hosts ≤ 3 s; judged on the median).
//!
//! Usage: `muster-formation-bench [--runs R] [--bootstrap] [--timeout SECS] [--check] [N ...]`.
//! `--check` exits non-zero when a target is missed; failed runs always do. Needs root and a
//! built binary (`MUSTER_BIN`, or the workspace's target dir — build with `--release`).

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use muster_testbed::formed::{check_agreement, expected_voters};
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
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        sizes: Vec::new(),
        runs: 5,
        discovery: Discovery::Mdns,
        timeout: Duration::from_secs(60),
        check: false,
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
            n => args.sizes.push(n.parse().with_context(|| {
                format!("unknown argument {n:?}; usage: [--runs R] [--bootstrap] [--timeout S] [--check] [N ...]")
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

/// Target formation time for a site size, if the design names one.
fn target(hosts: usize) -> Option<Duration> {
    match hosts {
        3 => Some(Duration::from_secs(2)),
        10 => Some(Duration::from_secs(3)),
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
    for &n in &args.sizes {
        let mut times = Vec::new();
        let mut failed = 0;
        for run in 1..=args.runs {
            interrupt::check()?;
            match run_once(n, args.discovery, args.timeout) {
                Ok(t) => {
                    println!("N={n:<3} run {run}/{}: {:.3} s", args.runs, t.as_secs_f64());
                    times.push(t);
                }
                Err(e) => {
                    interrupt::check()?;
                    println!("N={n:<3} run {run}/{}: FAILED: {e:#}", args.runs);
                    failed += 1;
                }
            }
        }
        ok &= failed == 0;
        rows.push(Row {
            hosts: n,
            times,
            failed,
        });
    }
    println!();
    println!("{}", Row::header());
    for row in &rows {
        println!("{}", row.line());
        if args.check && row.met() == Some(false) {
            ok = false;
        }
    }
    Ok(ok)
}

struct Row {
    hosts: usize,
    times: Vec<Duration>,
    failed: usize,
}

impl Row {
    fn header() -> String {
        format!(
            "{:>5} {:>4} {:>6} {:>9} {:>9} {:>9} {:>8} {:>4}",
            "hosts", "runs", "failed", "median", "min", "max", "target", "met"
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
            "{:>5} {:>4} {:>6} {:>9} {:>9} {:>9} {:>8} {:>4}",
            self.hosts,
            self.times.len() + self.failed,
            self.failed,
            secs(self.median()),
            secs(self.times.iter().min().copied()),
            secs(self.times.iter().max().copied()),
            target(self.hosts).map_or("-".into(), |t| format!("{} s", t.as_secs())),
            met
        )
    }
}

/// One run: fresh site, start all, time until formed, tear down.
fn run_once(n: usize, discovery: Discovery, timeout: Duration) -> Result<Duration> {
    let mut site = Site::new(PREFIX, n, SiteOptions::default().discovery(discovery))?;
    let started = Instant::now();
    site.start_all()?;
    let result = measure(&site, n, started, timeout);
    if result.is_err() && !interrupt::interrupted() {
        site.dump_logs();
    }
    site.teardown()?;
    result
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
