//! `muster-ddns-bench`: how fast the DNS name follows the leader (issue 10).
//!
//! Site: 3 hosts in network namespaces (`mddb-*`) with `[ddns]` only (no VIP), and a real BIND
//! `named` on the bridge at 10.77.0.53 ([`muster_testbed::bind`]). Per failover, at a random
//! moment in steady state the leader's agent is SIGKILLed; a poller in the server's namespace
//! asks `named` for the name's A record every 10 ms over UDP (one hand-built query at a time).
//! Measured:
//!
//! - end to end: from the SIGKILL to the first answer naming another host's address;
//! - after election: from the new leader's "lease valid: acquiring" log line (its wall-clock
//!   timestamp) to that answer — the part the DNS updater adds (read, CAS UPDATE, and the
//!   poll's granularity);
//! - `nsupdate`: the wall time of `nsupdate -k` making the same kind of update (delete the A
//!   RRset, add one A) to another name in the same zone, in the same run.
//!
//! The killed agent is then restarted and the site waits to be formed again. Prints every
//! round, medians and worst, and the targets (median ≤ 1.0 s end to end, ≤ 0.1 s after
//! election) with "ok" / "MISSED"; exits 0 whatever the figures, 1 if the testbed failed.
//! Needs root, iproute2, bind9, bind9-dnsutils and a built binary (`MUSTER_BIN`, or the
//! workspace's target). Options: `--failovers N` (default 12), `--seed S`, `--sigterm` (stop the
//! leader with SIGTERM, a planned stop, instead of SIGKILL; the table's first line then counts
//! from the SIGTERM).

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use muster_testbed::bench::{secs, verdict, Rng, Series};
use muster_testbed::bind::{
    first_log_after, unix_us, wait_dns_holder, Poller, SiteBind, ACQUIRE_LOG, BENCH_NAME,
};
use muster_testbed::{interrupt, Site, SiteOptions};

const PREFIX: &str = "mddb";
const HOSTS: usize = 3;
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
const HOLDER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failover may take before the round counts as failed.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// The poller's interval and per-query timeout.
const POLL: Duration = Duration::from_millis(10);
const QUERY_TIMEOUT: Duration = Duration::from_millis(200);
/// Random wait in steady state before a failover.
const RANDOM_WAIT: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3));
/// Targets from issue 10.
const TARGET_E2E: Duration = Duration::from_millis(1000);
const TARGET_AFTER_ELECTION: Duration = Duration::from_millis(100);

struct Args {
    failovers: usize,
    seed: u64,
    /// Stop the leader with SIGTERM (a planned stop) instead of SIGKILL.
    term: bool,
}

fn parse_args() -> Result<Args> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut a = Args {
        failovers: 12,
        seed,
        term: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || -> Result<u64> {
            let v = it.next().with_context(|| format!("{flag} needs a value"))?;
            v.parse()
                .with_context(|| format!("{flag} {v}: not a number"))
        };
        match flag.as_str() {
            "--failovers" => a.failovers = value()? as usize,
            "--seed" => a.seed = value()?,
            "--sigterm" => a.term = true,
            other => bail!("unknown argument {other:?}; options: --failovers N --seed S --sigterm"),
        }
    }
    Ok(a)
}

#[derive(Default)]
struct Results {
    e2e: Series,
    after_election: Series,
    nsupdate: Series,
}

/// Polls until the server answers with exactly `addr`s that are not `old`; returns when that
/// answer arrived (Instant and µs since the epoch) and the address.
fn poll_until_moved(
    poller: &Poller,
    old: Ipv4Addr,
    hosts: &[Ipv4Addr],
    since: Instant,
) -> Result<(Instant, u64, Ipv4Addr)> {
    loop {
        interrupt::check()?;
        let asked = Instant::now();
        if let Some(addrs) = poller.query(QUERY_TIMEOUT) {
            if let [a] = addrs[..] {
                if a != old && hosts.contains(&a) {
                    return Ok((Instant::now(), unix_us(), a));
                }
            }
        }
        if since.elapsed() > FAILOVER_TIMEOUT {
            bail!("the name did not move from {old} within {FAILOVER_TIMEOUT:?}");
        }
        if let Some(left) = POLL.checked_sub(asked.elapsed()) {
            thread::sleep(left);
        }
    }
}

fn one_failover(
    site: &mut Site,
    bind: &SiteBind,
    poller: &Poller,
    rng: &mut Rng,
    term: bool,
    round: usize,
    res: &mut Results,
) -> Result<()> {
    let all = site.all();
    let hosts: Vec<Ipv4Addr> = all.iter().map(|&i| site.ip(i)).collect();
    let leader = wait_dns_holder(site, HOLDER_TIMEOUT, &all)?;
    let old = site.ip(leader);
    bind.wait_record(HOLDER_TIMEOUT, &[IpAddr::V4(old)], &format!("h{leader}"))?;
    thread::sleep(rng.duration(RANDOM_WAIT.0, RANDOM_WAIT.1));
    let killed_us = unix_us();
    let killed = Instant::now();
    if term {
        site.terminate(leader)?;
    } else {
        site.kill(leader)?;
    }
    let outcome = poll_until_moved(poller, old, &hosts, killed);
    let (served_at, served_us, new_ip) = match outcome {
        Ok(v) => v,
        Err(e) => {
            res.e2e.push(Err(format!("{e:#}")));
            res.after_election.push(Err("no failover".into()));
            site.start(leader)?;
            return site.wait_formed(FORM_TIMEOUT, &all).map(|_| ());
        }
    };
    let e2e = served_at - killed;
    res.e2e.push(Ok((e2e, false)));
    let new = all
        .iter()
        .copied()
        .find(|&i| site.ip(i) == new_ip)
        .context("the address of no host")?;
    let after = match first_log_after(&site.log(new), ACQUIRE_LOG, killed_us) {
        Some(acq) if acq <= served_us => Ok((Duration::from_micros(served_us - acq), false)),
        Some(acq) => Err(format!(
            "served {} µs before the lease log line",
            acq - served_us
        )),
        None => Err(format!("h{new} logged no {ACQUIRE_LOG:?} after the kill")),
    };
    let after_ms = after.as_ref().map_or_else(
        |e| e.clone(),
        |(d, _)| format!("{:.1} ms", d.as_secs_f64() * 1e3),
    );
    res.after_election.push(after);
    // nsupdate's own time for the same kind of update, to another name.
    let script = format!(
        "update delete {BENCH_NAME} A\nupdate add {BENCH_NAME} 5 A 10.77.0.{}",
        200 + round % 50
    );
    let ns = bind.nsupdate(&script).map_err(|e| format!("{e:#}"));
    let ns_ms = ns.as_ref().map_or_else(
        |e| e.clone(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1e3),
    );
    res.nsupdate.push(ns.map(|d| (d, false)));
    println!(
        "failover {round:>2}: h{leader} -> h{new}: served after {:>6.1} ms end to end, {after_ms} \
         after the lease; nsupdate {ns_ms}",
        e2e.as_secs_f64() * 1e3
    );
    site.start(leader)?;
    site.wait_formed(FORM_TIMEOUT, &all)?;
    Ok(())
}

fn run(args: &Args, res: &mut Results) -> Result<()> {
    let mut site = Site::new(PREFIX, HOSTS, SiteOptions::default())?;
    let bind = SiteBind::start(&site)?;
    for i in site.all() {
        site.write_config(i, &bind.ddns_overrides(bind.key_file()))?;
    }
    site.start_all()?;
    let all = site.all();
    site.wait_formed(FORM_TIMEOUT, &all)?;
    let poller = bind.poller()?;
    let mut rng = Rng::new(args.seed);
    for round in 0..args.failovers {
        interrupt::check()?;
        one_failover(&mut site, &bind, &poller, &mut rng, args.term, round, res)
            .with_context(|| format!("failover {round}"))?;
    }
    drop(bind);
    site.teardown()
}

fn line(name: &str, s: &Series) {
    println!(
        "{name:<28} median {:>9}  worst {:>9}  ({} ok, {} failed)  [{} ms]",
        secs(s.median()),
        secs(s.worst()),
        s.values().len(),
        s.failures(),
        s.list_ms()
    );
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("muster-ddns-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = interrupt::install() {
        eprintln!("muster-ddns-bench: {e:#}");
        return ExitCode::FAILURE;
    }
    println!(
        "muster-ddns-bench: {} failovers ({}), seed {}, poll every {} ms",
        args.failovers,
        if args.term { "SIGTERM" } else { "SIGKILL" },
        args.seed,
        POLL.as_millis()
    );
    let mut res = Results::default();
    let outcome = run(&args, &mut res);
    println!();
    let stop = if args.term {
        "SIGTERM -> BIND serves new"
    } else {
        "SIGKILL -> BIND serves new"
    };
    line(stop, &res.e2e);
    line("lease acquired -> served", &res.after_election);
    line("nsupdate (same update)", &res.nsupdate);
    let e2e_ok = res.e2e.median().is_some_and(|m| m <= TARGET_E2E);
    let after_ok = res
        .after_election
        .median()
        .is_some_and(|m| m <= TARGET_AFTER_ELECTION);
    println!(
        "target: median end to end <= {} s: {}; median after election <= {} s: {}",
        TARGET_E2E.as_secs_f64(),
        verdict(e2e_ok),
        TARGET_AFTER_ELECTION.as_secs_f64(),
        verdict(after_ok)
    );
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("muster-ddns-bench: testbed failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
