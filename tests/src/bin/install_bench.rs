//! muster-install-bench: how long 5 hosts take from power-on to a healthy real etcd control
//! plane through muster's join order, and how much of that is muster's own.
//!
//! Each of R runs (default 5): a fresh site of 5 hosts (3 control-plane, 2 workers, VIP,
//! bootstrap lists) in the etcd testbed ([`muster_testbed::etcd`]), every agent started at
//! once, then polled until every plan step succeeded. Measured, from the hooks' own records (ns
//! times of each run's start and end and of the probe that passed) and `muster status --json`'s
//! plan (`created_unix_ms`, each step's `started_unix_ms` / `finished_unix_ms`), all on one
//! clock:
//! - total: from just before the first agent is spawned until the last step is reported healthy;
//! - work: hook + probe time on the critical path — the init, then the chain that finished last
//!   (the control-plane joins one after the other, or a worker: workers run beside the joins);
//!   the joins' time includes etcd refusing `member add` for 5 s after the previous member
//!   connected (shown as its own column);
//! - muster: total − work: formation, planning, and every hand-off on the critical path;
//! - each hand-off (previous step's probe passed → next hook started), split into probe pass →
//!   result proposed (`finished_unix_ms`), → next start proposed (`started_unix_ms`), → hook ran.
//!
//! Usage: `muster-install-bench [--runs R] [--timeout SECS]`. Needs root, etcd 3.4 and a built
//! binary (`MUSTER_BIN`, or the workspace's target dir). Targets: muster ≤ 3 s, hand-off
//! median ≤ 300 ms.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use muster_testbed::bench::{median, secs, verdict};
use muster_testbed::etcd::{EtcdBed, Record};
use muster_testbed::{interrupt, overrides, Discovery, Site, SiteOptions};
use serde_json::Value;

/// Namespace prefix of the benchmark's sites.
const PREFIX: &str = "mib";
/// Hosts per site.
const HOSTS: usize = 5;
/// How often the plan is polled.
const POLL: Duration = Duration::from_millis(50);
/// Target for muster's share of the total.
const MUSTER_TARGET: Duration = Duration::from_secs(3);
/// Target for the median hand-off.
const HANDOFF_TARGET: Duration = Duration::from_millis(300);

struct Args {
    runs: usize,
    timeout: Duration,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        runs: 5,
        timeout: Duration::from_secs(180),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => args.runs = it.next().context("--runs needs a value")?.parse()?,
            "--timeout" => {
                let s: u64 = it.next().context("--timeout needs seconds")?.parse()?;
                args.timeout = Duration::from_secs(s);
            }
            other => bail!("unknown argument {other:?}; usage: [--runs R] [--timeout SECS]"),
        }
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(args)
}

fn main() -> ExitCode {
    match interrupt::install().and_then(|()| bench(parse_args()?)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("muster-install-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One hand-off: previous step healthy → next hook started, and its parts (ms).
#[derive(Debug, Clone, Copy, Default)]
struct Handoff {
    total: Duration,
    /// Probe passed → the host proposed its result.
    report: Duration,
    /// Result proposed → the next host proposed its start.
    next: Duration,
    /// Start proposed → the next hook ran (commit, then spawn).
    spawn: Duration,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
struct Run {
    total: Duration,
    formation: Duration,
    first_hook: Duration,
    work: Duration,
    etcd_wait: Duration,
    muster: Duration,
    /// Keyed by "init→cp1", "cp1→cp2", "init→worker".
    handoffs: BTreeMap<&'static str, Handoff>,
    path: String,
}

fn bench(args: Args) -> Result<bool> {
    let mut runs = Vec::new();
    let mut failed = 0;
    for run in 1..=args.runs {
        interrupt::check()?;
        match run_once(args.timeout) {
            Ok(r) => {
                println!(
                    "run {run}/{}: total {} (formation {}, work {} of which etcd 5 s rule {}, \
                     muster {}); path {}",
                    args.runs,
                    secs(Some(r.total)),
                    secs(Some(r.formation)),
                    secs(Some(r.work)),
                    secs(Some(r.etcd_wait)),
                    secs(Some(r.muster)),
                    r.path
                );
                runs.push(r);
            }
            Err(e) => {
                interrupt::check()?;
                println!("run {run}/{}: FAILED: {e:#}", args.runs);
                failed += 1;
            }
        }
    }
    report(&runs, failed);
    Ok(failed == 0)
}

/// One figure of a run, for a row of the summary.
type Column = fn(&Run) -> Duration;

fn report(runs: &[Run], failed: usize) {
    let col = |f: &dyn Fn(&Run) -> Duration| -> (Option<Duration>, Option<Duration>) {
        let v: Vec<Duration> = runs.iter().map(f).collect();
        (median(&v), v.iter().max().copied())
    };
    println!("\n{} runs, {failed} failed\n", runs.len() + failed);
    println!("{:<38} {:>9} {:>9}", "", "median", "worst");
    let rows: [(&str, Column); 6] = [
        ("total (start → every step healthy)", |r| r.total),
        ("  formation (start → plan committed)", |r| r.formation),
        ("  plan committed → init hook started", |r| r.first_hook),
        ("  work: hooks + probes, critical path", |r| r.work),
        ("    of which etcd refusing member add", |r| r.etcd_wait),
        ("  muster (total − work)", |r| r.muster),
    ];
    for (name, f) in &rows {
        let (m, w) = col(f);
        println!("{name:<38} {:>9} {:>9}", secs(m), secs(w));
    }
    println!(
        "\n{:<14} {:>9} {:>9} {:>22} {:>22} {:>22}",
        "hand-off",
        "median",
        "worst",
        "probe→result (med)",
        "result→next (med)",
        "start→hook (med)"
    );
    let mut all_handoffs = Vec::new();
    for key in ["init→cp1", "cp1→cp2", "init→worker"] {
        let hs: Vec<Handoff> = runs
            .iter()
            .filter_map(|r| r.handoffs.get(key))
            .copied()
            .collect();
        let part = |f: fn(&Handoff) -> Duration| median(&hs.iter().map(f).collect::<Vec<_>>());
        let totals: Vec<Duration> = hs.iter().map(|h| h.total).collect();
        if key != "init→worker" {
            all_handoffs.extend(totals.iter().copied());
        }
        println!(
            "{key:<14} {:>9} {:>9} {:>22} {:>22} {:>22}",
            secs(median(&totals)),
            secs(totals.iter().max().copied()),
            secs(part(|h| h.report)),
            secs(part(|h| h.next)),
            secs(part(|h| h.spawn)),
        );
    }
    let muster = col(&|r: &Run| r.muster).0;
    let handoff = median(&all_handoffs);
    println!(
        "\nmuster's share median {} (target ≤ {}): {}; critical-path hand-off median {} \
         (target ≤ {}): {}",
        secs(muster),
        secs(Some(MUSTER_TARGET)),
        verdict(muster.is_some_and(|m| m <= MUSTER_TARGET)),
        secs(handoff),
        secs(Some(HANDOFF_TARGET)),
        verdict(handoff.is_some_and(|h| h <= HANDOFF_TARGET)),
    );
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// One run: fresh site, start all, wait for the plan, measure, tear down.
fn run_once(timeout: Duration) -> Result<Run> {
    let opts = SiteOptions::default()
        .discovery(Discovery::Bootstrap)
        .control_plane_count(3)
        .vip(false);
    let mut site = Site::new(PREFIX, HOSTS, opts)?;
    let result = EtcdBed::install(&mut site, &overrides([("kubernetes.retry_backoff", "1s")]))
        .and_then(|bed| {
            let t0 = unix_ns();
            site.start_all()?;
            let plan = wait_done(&site, timeout)?;
            measure(t0, &plan, &bed.records())
        });
    if result.is_err() && !interrupt::interrupted() {
        site.dump_logs();
    }
    site.teardown()?;
    result
}

/// Polls host 0 until its plan has every step succeeded; returns the plan object.
fn wait_done(site: &Site, timeout: Duration) -> Result<Value> {
    let started = Instant::now();
    loop {
        interrupt::check()?;
        if let Ok(v) = site.status(0) {
            let plan = &v["plan"];
            if plan["steps"]
                .as_array()
                .is_some_and(|s| s.len() == HOSTS && s.iter().all(|st| st["state"] == "succeeded"))
            {
                return Ok(plan.clone());
            }
        }
        if started.elapsed() > timeout {
            bail!(
                "the plan did not complete within {timeout:?}:{}",
                site.describe()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// One step as measured: its plan entry and its hooks' records (ns).
#[derive(Debug, Clone)]
struct Step {
    name: String,
    role: String,
    order: u64,
    proposed_start_ns: u128,
    proposed_done_ns: u128,
    hook_start_ns: u128,
    healthy_ns: u128,
    member_added_ns: Option<u128>,
}

fn ms_to_ns(v: &Value) -> Option<u128> {
    v.as_u64().map(|ms| u128::from(ms) * 1_000_000)
}

fn steps(plan: &Value, records: &[Record]) -> Result<Vec<Step>> {
    let mut out = Vec::new();
    for s in plan["steps"].as_array().context("plan steps")? {
        let name = s["name"].as_str().context("step name")?.to_owned();
        let mine: Vec<&Record> = records.iter().filter(|r| r.host == name).collect();
        let hook_start_ns = mine
            .iter()
            .find(|r| r.what == "start")
            .with_context(|| format!("{name} never ran its hook"))?
            .at_ns;
        let last_end = mine
            .iter()
            .rev()
            .find(|r| r.what == "end")
            .with_context(|| format!("{name}'s hook never ended"))?
            .at_ns;
        let healthy_ns = mine
            .iter()
            .find(|r| r.what == "healthy" && r.at_ns > last_end)
            .with_context(|| format!("{name}'s probe never passed"))?
            .at_ns;
        out.push(Step {
            name,
            role: s["role"].as_str().unwrap_or_default().to_owned(),
            order: s["order"].as_u64().unwrap_or(u64::MAX),
            proposed_start_ns: ms_to_ns(&s["started_unix_ms"]).context("started_unix_ms")?,
            proposed_done_ns: ms_to_ns(&s["finished_unix_ms"]).context("finished_unix_ms")?,
            hook_start_ns,
            healthy_ns,
            member_added_ns: mine
                .iter()
                .find(|r| r.detail == "member-added")
                .map(|r| r.at_ns),
        });
    }
    out.sort_by_key(|s| s.order);
    Ok(out)
}

fn dur(from: u128, to: u128) -> Duration {
    Duration::from_nanos(u64::try_from(to.saturating_sub(from)).unwrap_or(u64::MAX))
}

fn handoff(prev: &Step, next: &Step) -> Handoff {
    Handoff {
        total: dur(prev.healthy_ns, next.hook_start_ns),
        report: dur(prev.healthy_ns, prev.proposed_done_ns),
        next: dur(prev.proposed_done_ns, next.proposed_start_ns),
        spawn: dur(next.proposed_start_ns, next.hook_start_ns),
    }
}

fn measure(t0: u128, plan: &Value, records: &[Record]) -> Result<Run> {
    let steps = steps(plan, records)?;
    let init = steps
        .iter()
        .find(|s| s.role == "init")
        .context("no init step")?;
    let cps: Vec<&Step> = steps.iter().filter(|s| s.role == "control-plane").collect();
    let workers: Vec<&Step> = steps.iter().filter(|s| s.role == "worker").collect();
    let created = ms_to_ns(&plan["created_unix_ms"]).context("created_unix_ms")?;
    let done = steps.iter().map(|s| s.proposed_done_ns).max().unwrap_or(t0);
    let took = |s: &Step| dur(s.hook_start_ns, s.healthy_ns);
    let cp_work: Duration = cps.iter().map(|s| took(s)).sum();
    let cp_end = cps.last().map_or(0, |s| s.proposed_done_ns);
    let slowest_worker = workers.iter().max_by_key(|s| s.proposed_done_ns);
    let (work, path) = match slowest_worker {
        Some(w) if w.proposed_done_ns > cp_end => (
            took(init) + took(w),
            format!("{} (init) → {} (worker)", init.name, w.name),
        ),
        _ => (
            took(init) + cp_work,
            std::iter::once(format!("{} (init)", init.name))
                .chain(cps.iter().map(|s| s.name.clone()))
                .collect::<Vec<_>>()
                .join(" → "),
        ),
    };
    let mut handoffs = BTreeMap::new();
    if let Some(cp1) = cps.first() {
        handoffs.insert("init→cp1", handoff(init, cp1));
    }
    if let [cp1, cp2, ..] = cps.as_slice() {
        handoffs.insert("cp1→cp2", handoff(cp1, cp2));
    }
    if let Some(w) = workers.iter().min_by_key(|s| s.hook_start_ns) {
        handoffs.insert("init→worker", handoff(init, w));
    }
    let etcd_wait = cps
        .iter()
        .filter_map(|s| s.member_added_ns.map(|a| dur(s.hook_start_ns, a)))
        .sum();
    let total = dur(t0, done);
    Ok(Run {
        total,
        formation: dur(t0, created),
        first_hook: dur(created, init.hook_start_ns),
        work,
        etcd_wait,
        muster: total.saturating_sub(work),
        handoffs,
        path,
    })
}
