//! `muster events`: what happened, as this host saw it — leader changes, endpoint moves, DNS
//! updates, members joining, promoted, unreachable, removed, install steps and duties started,
//! finished or failed, refused connections, site phase changes.
//!
//! The agent loop hands [`Events::observe`] its full status every [`OBSERVE_INTERVAL`]; the
//! differences from the last one become events, stamped with this host and its wall clock. The
//! history is bounded ([`HISTORY`] events, the oldest dropped first). Followers (`muster events
//! --follow`) each get a bounded channel; one that does not keep up is cut off (its stream
//! ends) rather than slow the agent. Most of what a site does is replicated (members, the plan),
//! so every member sees it; the leader's view (reachability, refused connections, the endpoint)
//! is the one that covers the site. Texts never carry a secret: they are built from status,
//! which carries none.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use muster_core::format_id;
use muster_proto::{Event, StatusResponse, StepState};
use tokio::sync::mpsc;

/// Events kept for `muster events` without `--follow`.
pub const HISTORY: usize = 1_000;
/// How often the agent compares its status with the last one.
pub const OBSERVE_INTERVAL: Duration = Duration::from_millis(100);
/// Events buffered for one follower before it is cut off.
const FOLLOWER_BUFFER: usize = 256;

/// What one observation keeps to compare with the next.
#[derive(Debug, Default, Clone, PartialEq)]
struct Seen {
    phase: String,
    leader_id: u64,
    term: u64,
    formed: bool,
    site_conflict: String,
    vip_holder: u64,
    dns_target: Vec<String>,
    dns_error: String,
    /// id → (name, voter, reachable)
    members: BTreeMap<u64, (String, bool, bool)>,
    removed: BTreeMap<u64, String>,
    /// id → (name, role, state, attempts, removed, last error)
    steps: BTreeMap<u64, (String, i32, i32, u32, bool, String)>,
    planned: bool,
    /// removed host → (name, state, attempts, last error)
    removals: BTreeMap<u64, (String, i32, u32, String)>,
    /// (generation, for host, state, attempts, last error)
    upload: Option<(u32, u64, i32, u32, String)>,
    rejected: u64,
}

impl Seen {
    fn of(s: &StatusResponse) -> Seen {
        let plan = s.plan.as_ref();
        Seen {
            phase: s.phase.clone(),
            leader_id: s.leader_id,
            term: s.term,
            formed: s.formed_unix_ms != 0,
            site_conflict: s.site_conflict.clone(),
            vip_holder: s.vip.as_ref().map_or(0, |v| v.holder_id),
            dns_target: s.dns.as_ref().map(|d| d.target.clone()).unwrap_or_default(),
            dns_error: s
                .dns
                .as_ref()
                .map(|d| d.last_error.clone())
                .unwrap_or_default(),
            members: s
                .members
                .iter()
                .map(|m| (m.id, (m.name.clone(), m.voter, m.reachable)))
                .collect(),
            removed: s.removed.iter().map(|r| (r.id, r.name.clone())).collect(),
            planned: plan.is_some(),
            steps: plan
                .map(|p| {
                    p.steps
                        .iter()
                        .map(|st| {
                            let v = (
                                st.name.clone(),
                                st.role,
                                st.state,
                                st.attempts,
                                st.removed,
                                st.last_error.clone(),
                            );
                            (st.node_id, v)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            removals: plan
                .map(|p| {
                    p.removals
                        .iter()
                        .map(|r| {
                            let v = (r.name.clone(), r.state, r.attempts, r.last_error.clone());
                            (r.node_id, v)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            upload: plan.and_then(|p| p.upload.as_ref()).map(|u| {
                (
                    u.generation,
                    u.for_node_id,
                    u.state,
                    u.attempts,
                    u.last_error.clone(),
                )
            }),
            rejected: s.rejected_connections,
        }
    }

    fn name(&self, id: u64) -> String {
        self.members
            .get(&id)
            .map(|m| m.0.clone())
            .or_else(|| self.removed.get(&id).cloned())
            .unwrap_or_else(|| format_id(id))
    }
}

/// The host's event history and its followers.
pub struct Events {
    host_id: u64,
    host_name: String,
    seq: u64,
    history: VecDeque<Event>,
    followers: Vec<mpsc::Sender<Event>>,
    prev: Option<Seen>,
}

impl Events {
    /// An empty history for this host; `last_stop` is how the previous run ended, if on a
    /// fatal error (`take_last_stop`), told as the first event.
    pub fn new(host_id: u64, host_name: String, last_stop: Option<(u64, String)>) -> Events {
        let mut events = Events {
            host_id,
            host_name,
            seq: 0,
            history: VecDeque::with_capacity(64),
            followers: Vec::new(),
            prev: None,
        };
        if let Some((unix_ms, error)) = last_stop {
            events.push(
                unix_ms,
                "agent",
                format!("the previous run stopped on a fatal error: {error}"),
            );
        }
        events
    }

    /// Records what changed since the last observation (at the first, that the agent started).
    pub fn observe(&mut self, status: &StatusResponse, unix_ms: u64) {
        let now = Seen::of(status);
        let Some(prev) = self.prev.take() else {
            self.push(
                unix_ms,
                "agent",
                format!(
                    "agent {} started ({})",
                    env!("CARGO_PKG_VERSION"),
                    now.phase
                ),
            );
            self.prev = Some(now);
            return;
        };
        if prev == now {
            self.prev = Some(prev);
            return;
        }
        for (kind, text) in differences(&prev, &now, status) {
            self.push(unix_ms, kind, text);
        }
        self.prev = Some(now);
    }

    /// Followers still connected.
    pub fn followers(&mut self) -> usize {
        self.followers.retain(|f| !f.is_closed());
        self.followers.len()
    }

    /// The history after `after_seq`, then (with `follow`) each new event, on a bounded channel.
    pub fn subscribe(&mut self, after_seq: u64, follow: bool) -> mpsc::Receiver<Event> {
        let backlog: Vec<Event> = self
            .history
            .iter()
            .filter(|e| e.seq > after_seq)
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(backlog.len() + FOLLOWER_BUFFER);
        for e in backlog {
            // The channel was sized for the backlog.
            let _ = tx.try_send(e);
        }
        if follow {
            self.followers.push(tx);
        }
        rx
    }

    fn push(&mut self, unix_ms: u64, kind: &str, text: String) {
        self.seq += 1;
        let event = Event {
            seq: self.seq,
            unix_ms,
            host_id: self.host_id,
            host_name: self.host_name.clone(),
            kind: kind.into(),
            text,
        };
        tracing::debug!(kind, text = %event.text, "event");
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(event.clone());
        // A follower that is gone or does not keep up is dropped (its stream ends).
        self.followers.retain(|f| f.try_send(event.clone()).is_ok());
    }
}

/// File in `data_dir` where a run that stops on a fatal error (a store error, say) leaves it
/// for the next start's events.
pub const LAST_STOP_FILE: &str = "last-stop";

/// Longest error text kept.
const MAX_LAST_STOP_BYTES: usize = 2048;

/// Records that this run stops on `error` (best effort: the agent is exiting anyway).
pub fn record_last_stop(data_dir: &std::path::Path, unix_ms: u64, error: &str) {
    let mut text: String = error.chars().filter(|c| !c.is_control()).collect();
    if text.len() > MAX_LAST_STOP_BYTES {
        let mut cut = MAX_LAST_STOP_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let path = data_dir.join(LAST_STOP_FILE);
    let _ = std::fs::remove_file(&path);
    if let Err(e) = crate::identity::write_private(&path, format!("{unix_ms}\n{text}\n").as_bytes())
    {
        tracing::warn!(error = %format!("{e:#}"), "cannot record the fatal error for the next start");
    }
}

/// How the previous run ended, if on a fatal error; the record is removed (told once).
pub fn take_last_stop(data_dir: &std::path::Path) -> Option<(u64, String)> {
    let path = data_dir.join(LAST_STOP_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    let (when, error) = text.split_once('\n')?;
    Some((when.trim().parse().ok()?, error.trim().to_owned()))
}

fn state_name(state: i32) -> &'static str {
    match StepState::try_from(state) {
        Ok(StepState::Pending) => "pending",
        Ok(StepState::Running) => "running",
        Ok(StepState::Succeeded) => "succeeded",
        Ok(StepState::Failed) => "FAILED",
        Err(_) => "unknown",
    }
}

fn role_name(role: i32) -> &'static str {
    crate::installer::role_name(muster_proto::Role::try_from(role).unwrap_or_default())
}

/// What changed from `a` to `b`, as (kind, text), in a fixed order.
fn differences(a: &Seen, b: &Seen, status: &StatusResponse) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if a.phase != b.phase {
        out.push(("site", format!("phase {} → {}", a.phase, b.phase)));
    }
    if !a.formed && b.formed {
        out.push((
            "site",
            format!("site formed with {} members", b.members.len()),
        ));
    }
    if a.site_conflict != b.site_conflict && !b.site_conflict.is_empty() {
        out.push(("site", format!("conflict: {}", b.site_conflict)));
    }
    if a.leader_id != b.leader_id {
        let text = if b.leader_id == 0 {
            format!("no leader (term {})", b.term)
        } else {
            format!("{} leads (term {})", b.name(b.leader_id), b.term)
        };
        out.push(("leader", text));
    }
    if a.vip_holder != b.vip_holder {
        let address = status.vip.as_ref().map_or("", |v| v.address.as_str());
        let text = if b.vip_holder == 0 {
            format!("no host holds the VIP {address}")
        } else {
            format!("the VIP {address} is on {}", b.name(b.vip_holder))
        };
        out.push(("endpoint", text));
    }
    if a.dns_target != b.dns_target && !b.dns_target.is_empty() {
        let name = status.dns.as_ref().map_or("", |d| d.name.as_str());
        out.push((
            "dns",
            format!("{name} is served as {}", b.dns_target.join(", ")),
        ));
    }
    if a.dns_error != b.dns_error {
        let text = if b.dns_error.is_empty() {
            "DNS updates succeed again".to_string()
        } else {
            format!("DNS update failed: {}", b.dns_error)
        };
        out.push(("dns", text));
    }
    member_changes(a, b, &mut out);
    plan_changes(a, b, &mut out);
    if b.rejected > a.rejected {
        out.push((
            "refused",
            format!(
                "refused {} connection(s) without the site key or from removed hosts (total {})",
                b.rejected - a.rejected,
                b.rejected
            ),
        ));
    }
    out
}

fn member_changes(a: &Seen, b: &Seen, out: &mut Vec<(&'static str, String)>) {
    for (id, (name, voter, reachable)) in &b.members {
        match a.members.get(id) {
            None => out.push((
                "member",
                format!(
                    "{name} joined ({})",
                    if *voter { "voter" } else { "learner" }
                ),
            )),
            Some((_, was_voter, was_reachable)) => {
                if *voter && !was_voter {
                    out.push(("member", format!("{name} became a voter")));
                }
                if !*voter && *was_voter {
                    out.push(("member", format!("{name} is no longer a voter")));
                }
                if *reachable != *was_reachable {
                    let text = if *reachable {
                        format!("{name} is reachable again")
                    } else {
                        format!("{name} is unreachable")
                    };
                    out.push(("member", text));
                }
            }
        }
    }
    for (id, name) in &b.removed {
        if !a.removed.contains_key(id) {
            out.push((
                "member",
                format!("{name} was removed: refused by every member from now on"),
            ));
        }
    }
    for (id, (name, ..)) in &a.members {
        if !b.members.contains_key(id) {
            out.push(("member", format!("{name} left the cluster")));
        }
    }
}

fn plan_changes(a: &Seen, b: &Seen, out: &mut Vec<(&'static str, String)>) {
    if !a.planned && b.planned {
        out.push((
            "step",
            format!(
                "the join plan was committed: {} steps, init on {}",
                b.steps.len(),
                b.steps
                    .values()
                    .find(|s| role_name(s.1) == "init")
                    .map_or("-", |s| s.0.as_str())
            ),
        ));
    } else {
        for (id, s) in &b.steps {
            if !a.steps.contains_key(id) {
                out.push((
                    "step",
                    format!("{} was added to the plan ({})", s.0, role_name(s.1)),
                ));
            }
        }
    }
    // A plan seen for the first time: its steps as if they had all been pending (a step that
    // started in the same instant still shows its start).
    let pending = (
        String::new(),
        0,
        StepState::Pending as i32,
        0,
        false,
        String::new(),
    );
    for (id, (name, role, state, attempts, removed, error)) in &b.steps {
        let before = match a.steps.get(id) {
            Some(s) => s,
            None if !a.planned => &pending,
            None => continue,
        };
        let (_, was_role, was_state, was_attempts, was_removed, _) = before;
        let was_role = if a.steps.contains_key(id) {
            was_role
        } else {
            role
        };
        let role_text = role_name(*role);
        if role != was_role {
            out.push(("step", format!("{name}'s step is now a {role_text} one")));
        }
        if *removed && !was_removed {
            out.push((
                "step",
                format!("{name}'s {role_text} step no longer counts (removed)"),
            ));
        }
        if state == was_state && attempts == was_attempts {
            continue;
        }
        let text = match StepState::try_from(*state) {
            Ok(StepState::Succeeded)
                if *was_state == StepState::Pending as i32 && !a.steps.contains_key(id) =>
            {
                format!("{name}'s {role_text} step succeeded (attempt {attempts}, started before this host saw the plan)")
            }
            Ok(StepState::Running) => {
                format!("{name}'s {role_text} step started (attempt {attempts})")
            }
            Ok(StepState::Succeeded) => {
                format!("{name}'s {role_text} step succeeded (attempt {attempts})")
            }
            Ok(StepState::Failed) => {
                format!("{name}'s {role_text} step FAILED (attempt {attempts}): {error}")
            }
            _ => format!("{name}'s {role_text} step is {}", state_name(*state)),
        };
        out.push(("step", text));
    }
    for (id, (name, state, attempts, error)) in &b.removals {
        let changed = a
            .removals
            .get(id)
            .is_none_or(|(_, s, n, _)| s != state || n != attempts);
        if changed {
            let mut text = format!(
                "remove command for {name}: {} (attempt {attempts})",
                state_name(*state)
            );
            if !error.is_empty() {
                text.push_str(&format!(": {error}"));
            }
            out.push(("removal", text));
        }
    }
    if a.upload != b.upload {
        if let Some((generation, for_host, state, attempts, error)) = &b.upload {
            let mut text = format!(
                "certificate upload #{generation} before the join of {}: {} (attempt {attempts})",
                b.name(*for_host),
                state_name(*state)
            );
            if !error.is_empty() {
                text.push_str(&format!(": {error}"));
            }
            out.push(("upload", text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_proto::{MemberStatus, Plan, PlanStep, VipStatus};

    fn member(id: u64, voter: bool, reachable: bool) -> MemberStatus {
        MemberStatus {
            id,
            name: format!("h{id}"),
            voter,
            reachable,
            ..Default::default()
        }
    }

    fn status() -> StatusResponse {
        StatusResponse {
            phase: "member".into(),
            leader_id: 1,
            term: 2,
            members: vec![member(1, true, true), member(2, true, true)],
            vip: Some(VipStatus {
                address: "10.0.0.100/24".into(),
                holder_id: 1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn texts(events: &mut Events) -> Vec<String> {
        let mut rx = events.subscribe(0, false);
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            out.push(format!("{} {}", e.kind, e.text));
        }
        out
    }

    #[test]
    fn changes_become_events_in_order_and_nothing_new_is_silent() {
        let mut ev = Events::new(1, "h1".into(), None);
        let mut s = status();
        ev.observe(&s, 1);
        ev.observe(&s, 2);
        assert_eq!(
            texts(&mut ev).len(),
            1,
            "only the start: {:?}",
            texts(&mut ev)
        );
        s.leader_id = 2;
        s.term = 3;
        s.vip.as_mut().unwrap().holder_id = 2;
        s.members[0].reachable = false;
        s.members.push(member(3, false, true));
        s.rejected_connections = 2;
        s.plan = Some(Plan {
            steps: vec![PlanStep {
                node_id: 2,
                name: "h2".into(),
                role: muster_proto::Role::Init as i32,
                ..Default::default()
            }],
            ..Default::default()
        });
        ev.observe(&s, 3);
        let got = texts(&mut ev);
        assert_eq!(
            got[1..],
            [
                "leader h2 leads (term 3)",
                "endpoint the VIP 10.0.0.100/24 is on h2",
                "member h1 is unreachable",
                "member h3 joined (learner)",
                "step the join plan was committed: 1 steps, init on h2",
                "refused refused 2 connection(s) without the site key or from removed hosts (total 2)",
            ]
        );
        let step = &mut s.plan.as_mut().unwrap().steps[0];
        step.state = StepState::Failed as i32;
        step.attempts = 1;
        step.last_error = "hook exit status: 1: boom".into();
        ev.observe(&s, 4);
        assert_eq!(
            texts(&mut ev).last().map(String::as_str),
            Some("step h2's init step FAILED (attempt 1): hook exit status: 1: boom")
        );
    }

    #[test]
    fn a_fatal_stop_is_the_next_runs_first_event_once() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(take_last_stop(dir.path()), None);
        record_last_stop(
            dir.path(),
            42,
            "raft store: fsync failed: Input/output error\u{1b}[31m",
        );
        let last = take_last_stop(dir.path()).expect("recorded");
        assert_eq!(
            last,
            (
                42,
                "raft store: fsync failed: Input/output error[31m".to_string()
            )
        );
        assert_eq!(take_last_stop(dir.path()), None, "told once");
        let mut ev = Events::new(1, "h1".into(), Some(last));
        ev.observe(&status(), 50);
        assert_eq!(
            texts(&mut ev)[..],
            [
                "agent the previous run stopped on a fatal error: raft store: fsync failed: Input/output error[31m",
                "agent agent 0.1.0 started (member)",
            ]
        );
    }

    #[test]
    fn history_is_bounded_and_followers_that_lag_are_cut_off() {
        let mut ev = Events::new(1, "h1".into(), None);
        let mut s = status();
        ev.observe(&s, 0);
        let mut follower = ev.subscribe(0, true);
        for t in 0..(HISTORY as u64 + FOLLOWER_BUFFER as u64 + 10) {
            s.term = t + 10;
            s.leader_id = if t % 2 == 0 { 2 } else { 1 };
            ev.observe(&s, t);
        }
        let kept = ev.subscribe(0, false);
        assert_eq!(kept.max_capacity(), HISTORY + FOLLOWER_BUFFER);
        assert_eq!(ev.history.len(), HISTORY);
        assert!(
            ev.followers.is_empty(),
            "the follower that never read is gone"
        );
        let mut n = 0;
        while follower.try_recv().is_ok() {
            n += 1;
        }
        assert!(n <= 1 + FOLLOWER_BUFFER, "{n}");
        let later = ev.subscribe(ev.seq - 3, false);
        assert_eq!(later.len(), 3, "after_seq skips what was seen");
    }
}
