//! `muster health`: named checks of the local agent's view, run in order, for scripts and for
//! Kairos/systemd health gates (the model is `talosctl health`).
//!
//! One look asks the agent behind the status socket for its [`StatusResponse`] (bounded by
//! [`AGENT_TIMEOUT`]) and, with `--endpoint-port`, connects to VIP:PORT over TCP (bounded by
//! [`CONNECT_TIMEOUT`]); [`evaluate`] turns that into one [`Outcome`] per check of [`CHECKS`],
//! pure, so the check logic is unit-tested on hand-built status values. Checks after the first
//! failure are skipped. `--wait` looks again every [`RETRY_INTERVAL`] until every check passes
//! or the wait is over. Exit 0: all passed; 1: a check failed (named on its line). The
//! metrics server's `/readyz` uses the same member, formed and leader checks (`metrics.rs`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use muster_core::format_id;
use muster_proto::{ApiHealth, Role, StatusResponse, StepState};
use serde_json::{json, Value};

/// The checks, in the order they run.
pub const CHECKS: [&str; 9] = [
    "agent",
    "member",
    "formed",
    "quorum",
    "leader",
    "endpoint",
    "site-conflict",
    "plan",
    "api",
];

/// Longest the agent may take to answer one status request.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a TCP connect to the endpoint (`--endpoint-port`) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between looks under `--wait`.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// What `muster health` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The agent's status socket.
    pub socket: PathBuf,
    /// Retry until every check passes or this long has passed; zero: one look.
    pub wait: Duration,
    /// Print `{"healthy", "checks"}` as JSON instead of lines.
    pub json: bool,
    /// Also connect to the VIP on this TCP port.
    pub endpoint_port: Option<u16>,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It passed.
    Passed,
    /// It failed: the command exits 1.
    Failed,
    /// Not run: an earlier check failed.
    Skipped,
}

/// One check's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The check's name, one of [`CHECKS`].
    pub name: &'static str,
    /// Passed, failed or skipped.
    pub result: Verdict,
    /// What was found (empty when skipped).
    pub message: String,
}

/// Runs the checks (again under `--wait`), prints them and says whether all passed.
pub async fn run(opts: &Options) -> bool {
    let deadline = Instant::now() + opts.wait;
    let mut last_failure = String::new();
    loop {
        let outcomes = look(opts).await;
        let failed = outcomes.iter().find(|o| o.result == Verdict::Failed);
        let Some(failed) = failed.filter(|_| Instant::now() < deadline) else {
            print(&outcomes, opts.json);
            return healthy(&outcomes);
        };
        let line = format!("{}: {}", failed.name, failed.message);
        if line != last_failure {
            eprintln!("waiting for {line}");
            last_failure = line;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(RETRY_INTERVAL.min(left)).await;
    }
}

/// Whether every check passed.
pub fn healthy(outcomes: &[Outcome]) -> bool {
    outcomes.iter().all(|o| o.result == Verdict::Passed)
}

/// One look: the status, the endpoint connect if asked, evaluated.
async fn look(opts: &Options) -> Vec<Outcome> {
    let status = match tokio::time::timeout(AGENT_TIMEOUT, crate::rpc::query(&opts.socket)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return evaluate(Err(format!("{e:#}")), None),
        Err(_) => {
            let message = format!(
                "the agent at {} did not answer within {} s",
                opts.socket.display(),
                AGENT_TIMEOUT.as_secs()
            );
            return evaluate(Err(message), None);
        }
    };
    let connect = match (opts.endpoint_port, vip_ip(&status)) {
        (Some(port), Some(ip)) if holder_known(&status) => {
            Some(connect(SocketAddr::new(ip, port)).await)
        }
        _ => None,
    };
    evaluate(Ok(&status), connect)
}

/// A TCP connect to `addr` within [`CONNECT_TIMEOUT`]: `Ok(addr)` or why not.
pub async fn connect(addr: SocketAddr) -> Result<SocketAddr, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(addr),
        Ok(Err(e)) => Err(format!("{addr} does not answer: {e}")),
        Err(_) => Err(format!(
            "{addr} does not answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// The first VIP address without its prefix, if one is configured.
fn vip_ip(s: &StatusResponse) -> Option<IpAddr> {
    let v = s.vip.as_ref()?;
    v.address
        .split(',')
        .next()
        .and_then(|a| a.trim().split('/').next())
        .and_then(|a| a.parse().ok())
}

fn holder_known(s: &StatusResponse) -> bool {
    s.vip.as_ref().is_some_and(|v| v.holder_id != 0)
}

/// The checks on an agent's answer (or on why there is none) and on the endpoint connect:
/// one outcome per [`CHECKS`] entry, every check after the first failure skipped.
pub fn evaluate(
    agent: Result<&StatusResponse, String>,
    connect: Option<Result<SocketAddr, String>>,
) -> Vec<Outcome> {
    let results: Vec<Result<String, String>> = match agent {
        Err(e) => vec![Err(e)],
        Ok(s) => vec![
            Ok(format!(
                "answering as {} ({})",
                s.node_name,
                format_id(s.node_id)
            )),
            member(s),
            formed(s),
            quorum(s),
            leader(s),
            endpoint(s, connect),
            site_conflict(s),
            plan(s),
            api(s),
        ],
    };
    let mut failed = false;
    CHECKS
        .iter()
        .enumerate()
        .map(|(i, &name)| {
            let (result, message) = match results.get(i) {
                _ if failed => (Verdict::Skipped, String::new()),
                None => (Verdict::Skipped, String::new()),
                Some(Ok(m)) => (Verdict::Passed, m.clone()),
                Some(Err(m)) => {
                    failed = true;
                    (Verdict::Failed, m.clone())
                }
            };
            Outcome {
                name,
                result,
                message,
            }
        })
        .collect()
}

/// "edge-2 (0123456789abcdef)", or the id alone for a host not in the member list.
fn who(s: &StatusResponse, id: u64) -> String {
    match s.members.iter().find(|m| m.id == id) {
        Some(m) => format!("{} ({})", m.name, format_id(id)),
        None => format_id(id),
    }
}

/// This host is a member of a cluster.
pub fn member(s: &StatusResponse) -> Result<String, String> {
    match s.phase.as_str() {
        "member" if s.cluster_id != 0 => Ok(format!(
            "member of cluster {} ({} members)",
            format_id(s.cluster_id),
            s.members.len()
        )),
        "removed" => {
            Err("this host was removed from its cluster (`muster reset` to rejoin)".into())
        }
        phase => Err(format!(
            "not a member of a cluster yet (phase {phase}, {} peers connected)",
            s.peers_connected
        )),
    }
}

/// The site is recorded formed.
pub fn formed(s: &StatusResponse) -> Result<String, String> {
    if s.formed_unix_ms != 0 {
        Ok(format!("site formed with {} members", s.members.len()))
    } else {
        Err(format!(
            "site not formed yet ({} members; waiting for site.expected_nodes, or `muster plan start`)",
            s.members.len()
        ))
    }
}

/// A majority of the voters is reachable from this host.
pub fn quorum(s: &StatusResponse) -> Result<String, String> {
    let voters: Vec<_> = s.members.iter().filter(|m| m.voter).collect();
    if voters.is_empty() {
        return Err("no voters known".into());
    }
    let reachable = voters.iter().filter(|m| m.reachable).count();
    let need = voters.len() / 2 + 1;
    let message = format!(
        "{reachable} of {} voters reachable (a majority is {need})",
        voters.len()
    );
    if reachable >= need {
        return Ok(message);
    }
    let lost: Vec<String> = voters
        .iter()
        .filter(|m| !m.reachable)
        .map(|m| m.name.clone())
        .collect();
    Err(format!("{message}: unreachable {}", lost.join(", ")))
}

/// A leader is known and reachable.
pub fn leader(s: &StatusResponse) -> Result<String, String> {
    if s.leader_id == 0 {
        return Err(format!("no leader known (term {})", s.term));
    }
    if s.leader_id == s.node_id {
        return Ok(format!("this host leads (term {})", s.term));
    }
    let leader = who(s, s.leader_id);
    match s.members.iter().find(|m| m.id == s.leader_id) {
        Some(m) if m.reachable => Ok(format!("{leader} leads (term {})", s.term)),
        Some(_) => Err(format!("leader {leader} is not reachable from this host")),
        None => Err(format!("leader {leader} is not in the member list")),
    }
}

/// The VIP, if configured, has a known holder that is a reachable member (and answers on
/// `--endpoint-port`).
pub fn endpoint(
    s: &StatusResponse,
    connect: Option<Result<SocketAddr, String>>,
) -> Result<String, String> {
    let Some(v) = &s.vip else {
        return Ok("no VIP configured".into());
    };
    if v.holder_id == 0 {
        let why = if v.held_back.is_empty() {
            String::new()
        } else {
            format!(": {}", v.held_back)
        };
        return Err(format!("no VIP holder known{why}"));
    }
    let held = if v.holder_id == s.node_id {
        if !v.held_here {
            return Err("this host is the VIP holder but does not carry the address".into());
        }
        format!("VIP {} held here", v.address)
    } else {
        let holder = who(s, v.holder_id);
        match s.members.iter().find(|m| m.id == v.holder_id) {
            Some(m) if m.reachable => format!("VIP {} held by {holder}", v.address),
            _ => return Err(format!("VIP holder {holder} is not a reachable member")),
        }
    };
    match connect {
        None => Ok(held),
        Some(Ok(addr)) => Ok(format!("{held}; {addr} answers")),
        Some(Err(e)) => Err(format!("{held}, but {e}")),
    }
}

/// No other formed cluster is seen on the site's LAN.
pub fn site_conflict(s: &StatusResponse) -> Result<String, String> {
    if s.site_conflict.is_empty() {
        Ok("none seen".into())
    } else {
        Err(s.site_conflict.clone())
    }
}

/// The join plan, if there is one, is done: every step not removed succeeded.
pub fn plan(s: &StatusResponse) -> Result<String, String> {
    let Some(plan) = &s.plan else {
        if s.kubernetes {
            return Err("no join plan yet: the leader makes it once the site is formed".into());
        }
        return Ok("no join plan".into());
    };
    let step = |st: &muster_proto::PlanStep| {
        let role = muster_proto::Role::try_from(st.role).unwrap_or_default();
        format!("{} ({})", st.name, crate::installer::role_name(role))
    };
    let live: Vec<_> = plan.steps.iter().filter(|st| !st.removed).collect();
    let failed: Vec<String> = live
        .iter()
        .filter(|st| st.state == StepState::Failed as i32)
        .map(|st| match st.last_error.lines().next() {
            Some(e) if !e.is_empty() => format!("{}: {e}", step(st)),
            _ => step(st),
        })
        .collect();
    if !failed.is_empty() {
        return Err(format!("FAILED: {}", failed.join("; ")));
    }
    let duties: Vec<&str> = plan
        .removals
        .iter()
        .filter(|d| d.state == StepState::Failed as i32)
        .map(|d| d.name.as_str())
        .collect();
    if !duties.is_empty() {
        return Err(format!("removal FAILED for {}", duties.join(", ")));
    }
    let done = live
        .iter()
        .filter(|st| st.state == StepState::Succeeded as i32)
        .count();
    if done == live.len() {
        return Ok(format!("{done} of {} steps succeeded", live.len()));
    }
    let waiting: Vec<String> = live
        .iter()
        .filter(|st| st.state != StepState::Succeeded as i32)
        .map(|st| {
            let running = st.state == StepState::Running as i32;
            format!(
                "{} {}",
                step(st),
                if running { "running" } else { "pending" }
            )
        })
        .collect();
    Err(format!(
        "{done} of {} steps succeeded; waiting for {}",
        live.len(),
        waiting.join(", ")
    ))
}

/// Every member that reports its API server's health reports it healthy.
pub fn api(s: &StatusResponse) -> Result<String, String> {
    let with = |h: ApiHealth| {
        s.members
            .iter()
            .filter(move |m| m.api_health == h as i32)
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
    };
    let unhealthy = with(ApiHealth::Unhealthy);
    let healthy = with(ApiHealth::Healthy);
    if !unhealthy.is_empty() {
        return Err(format!("API server unhealthy on {}", unhealthy.join(", ")));
    }
    if healthy.is_empty() {
        return Ok("no API server health reported".into());
    }
    // Once any API server reports, every control-plane host that installed must (a site with
    // health gates has them on every host; one not heard from yet is not known healthy).
    let missing: Vec<&str> = s
        .plan
        .iter()
        .flat_map(|p| p.steps.iter())
        .filter(|st| st.role != Role::Worker as i32 && !st.removed)
        .filter(|st| st.state == StepState::Succeeded as i32)
        .map(|st| st.name.as_str())
        .filter(|n| !healthy.iter().any(|h| h == n))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "API server health not reported yet by {} (healthy on {})",
            missing.join(", "),
            healthy.join(", ")
        ));
    }
    Ok(format!("healthy on {}", healthy.join(", ")))
}

fn label(r: Verdict) -> &'static str {
    match r {
        Verdict::Passed => "passed",
        Verdict::Failed => "failed",
        Verdict::Skipped => "skipped",
    }
}

/// `{"healthy": bool, "checks": [{"name", "result", "message"}]}`.
pub fn to_json(outcomes: &[Outcome]) -> Value {
    let checks: Vec<Value> = outcomes
        .iter()
        .map(|o| json!({"name": o.name, "result": label(o.result), "message": o.message}))
        .collect();
    json!({"healthy": healthy(outcomes), "checks": checks})
}

/// One line per check: name, PASS / FAIL / SKIP, what was found.
pub fn to_text(outcomes: &[Outcome]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for o in outcomes {
        let mark = match o.result {
            Verdict::Passed => "PASS",
            Verdict::Failed => "FAIL",
            Verdict::Skipped => "SKIP",
        };
        let _ = writeln!(out, "{:<14} {mark}  {}", o.name, o.message);
    }
    out
}

fn print(outcomes: &[Outcome], json: bool) {
    if json {
        println!("{}", to_json(outcomes));
    } else {
        print!("{}", to_text(outcomes));
    }
}

#[cfg(test)]
#[path = "health_cmd_tests.rs"]
mod tests;
