//! Renders a status answer for operators: a readable table, or the JSON object of the operator
//! contract (`node_id`, `node_name`, `cluster_id`, `leader_id`, `term`, `commit_index`, `members`).

use muster_core::format_id;
use muster_proto::StatusResponse;
use serde_json::{json, Value};

fn id_or_null(id: u64) -> Value {
    if id == 0 {
        Value::Null
    } else {
        Value::String(format_id(id))
    }
}

/// The operator-contract JSON object.
pub fn json(s: &StatusResponse) -> Value {
    let members: Vec<Value> = s
        .members
        .iter()
        .map(|m| {
            json!({
                "id": format_id(m.id),
                "name": m.name,
                "address": m.address,
                "voter": m.voter,
                "reachable": m.reachable,
                "joined_unix_ms": m.joined_unix_ms,
                "api": api_label(m.api_health),
                "agent_version": (!m.agent_version.is_empty()).then_some(m.agent_version.as_str()),
                "last_seen_ms_ago": m.last_seen_ms_ago,
                "protocol": (m.protocol != 0).then_some(m.protocol),
            })
        })
        .collect();
    let mut v = json!({
        "node_id": format_id(s.node_id),
        "node_name": s.node_name,
        "cluster_id": id_or_null(s.cluster_id),
        "leader_id": id_or_null(s.leader_id),
        "term": s.term,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "first_log_index": s.first_log_index,
        "phase": s.phase,
        "address": s.address,
        "peers_connected": s.peers_connected,
        "rejected_connections": s.rejected_connections,
        "members": members,
        "locked": s.locked,
        "formed_unix_ms": (s.formed_unix_ms != 0).then_some(s.formed_unix_ms),
        "kubernetes": s.kubernetes,
        "site_conflict": (!s.site_conflict.is_empty()).then_some(s.site_conflict.as_str()),
        "removed": s
            .removed
            .iter()
            .map(|r| json!({"id": format_id(r.id), "name": r.name, "removed_unix_ms": r.removed_unix_ms}))
            .collect::<Vec<_>>(),
        "dropped": s
            .dropped
            .iter()
            .map(|d| json!({"reason": d.reason, "count": d.count}))
            .collect::<Vec<_>>(),
    });
    if let Some(plan) = &s.plan {
        v["plan"] = plan_json(plan);
    }
    if let Some(vip) = &s.vip {
        v["vip"] = json!({
            "address": vip.address,
            "holder_id": id_or_null(vip.holder_id),
            "held_here": vip.held_here,
            "lease_left_ms": vip.lease_left_ms,
            "held_back": (!vip.held_back.is_empty()).then_some(vip.held_back.as_str()),
        });
    }
    if let Some(d) = &s.dns {
        let term = |t: u64| (t != 0).then_some(t);
        v["dns"] = json!({
            "name": d.name,
            "target": d.target,
            "updated_term": term(d.updated_term),
            "holding_term": term(d.holding_term),
            "served_term": term(d.served_term),
            "served_by": (!d.served_by.is_empty()).then_some(d.served_by.as_str()),
            "last_result": if d.last_error.is_empty() { "ok" } else { d.last_error.as_str() },
            "last_unix_ms": (d.last_unix_ms != 0).then_some(d.last_unix_ms),
            "stale": d.stale,
        });
    }
    v
}

/// The `plan` object of the operator contract: `steps` [{`node_id`, `name`, `role`, `order`,
/// `state`, `attempts`, `started_unix_ms`, `finished_unix_ms`, `last_error`}].
pub fn plan_json(plan: &muster_proto::Plan) -> Value {
    let steps: Vec<Value> = plan
        .steps
        .iter()
        .map(|s| {
            let role = role_label(s.role);
            let state = step_label(s);
            json!({
                "node_id": format_id(s.node_id),
                "name": s.name,
                "role": role,
                "order": s.order,
                "state": state,
                "attempts": s.attempts,
                "started_unix_ms": (s.started_unix_ms != 0).then_some(s.started_unix_ms),
                "finished_unix_ms": (s.finished_unix_ms != 0).then_some(s.finished_unix_ms),
                "last_error": (!s.last_error.is_empty()).then_some(s.last_error.as_str()),
            })
        })
        .collect();
    let removals: Vec<Value> = plan
        .removals
        .iter()
        .map(|r| {
            json!({
                "node_id": format_id(r.node_id),
                "name": r.name,
                "role": role_label(r.role),
                "state": state_label(r.state),
                "attempts": r.attempts,
                "runner_id": (r.runner_id != 0).then(|| format_id(r.runner_id)),
                "last_error": (!r.last_error.is_empty()).then_some(r.last_error.as_str()),
            })
        })
        .collect();
    let upload = plan.upload.as_ref().map(|u| {
        json!({
            "generation": u.generation,
            "for_node_id": format_id(u.for_node_id),
            "state": state_label(u.state),
            "attempts": u.attempts,
            "runner_id": (u.runner_id != 0).then(|| format_id(u.runner_id)),
            "finished_unix_ms": (u.finished_unix_ms != 0).then_some(u.finished_unix_ms),
            "last_error": (!u.last_error.is_empty()).then_some(u.last_error.as_str()),
        })
    });
    json!({
        "created_unix_ms": plan.created_unix_ms,
        "worker_parallelism": plan.worker_parallelism,
        "steps": steps,
        "removals": removals,
        "certificates_uploaded_unix_ms": (plan.certificates_uploaded_unix_ms != 0)
            .then_some(plan.certificates_uploaded_unix_ms),
        "certificate_upload": upload,
    })
}

/// A step's state as operators read it: `removed` once its host was removed.
fn step_label(s: &muster_proto::PlanStep) -> &'static str {
    if s.removed {
        "removed"
    } else {
        state_label(s.state)
    }
}

/// A role as `MUSTER_ROLE` and the operator contract name it.
fn role_label(role: i32) -> &'static str {
    crate::installer::role_name(muster_proto::Role::try_from(role).unwrap_or_default())
}

/// A step state as the operator contract names it.
fn state_label(state: i32) -> &'static str {
    match muster_proto::StepState::try_from(state) {
        Ok(muster_proto::StepState::Pending) => "pending",
        Ok(muster_proto::StepState::Running) => "running",
        Ok(muster_proto::StepState::Succeeded) => "succeeded",
        Ok(muster_proto::StepState::Failed) => "failed",
        Err(_) => "unknown",
    }
}

/// One line for `muster status`: how far the plan is, problems first.
pub fn plan_summary(plan: &muster_proto::Plan) -> String {
    let live: Vec<&muster_proto::PlanStep> = plan.steps.iter().filter(|s| !s.removed).collect();
    let done = live
        .iter()
        .filter(|s| s.state == muster_proto::StepState::Succeeded as i32)
        .count();
    let with = |state: muster_proto::StepState| {
        live.iter()
            .filter(|s| s.state == state as i32)
            .map(|s| format!("{} ({})", s.name, role_label(s.role)))
            .collect::<Vec<_>>()
    };
    let mut out = format!("{done} of {} steps succeeded", live.len());
    let failed = with(muster_proto::StepState::Failed);
    if !failed.is_empty() {
        out.push_str(&format!("; FAILED: {}", failed.join(", ")));
    }
    let running = with(muster_proto::StepState::Running);
    if !running.is_empty() {
        out.push_str(&format!("; running: {}", running.join(", ")));
    }
    out
}

/// The readable view of `muster plan`: one row per step, in plan order.
pub fn plan_table(plan: &muster_proto::Plan) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16}  {:<12}  {:<13}  {:>5}  {:<9}  {:>8}  {:>8}  LAST ERROR",
        "ID", "NAME", "ROLE", "ORDER", "STATE", "ATTEMPTS", "TOOK"
    );
    for s in &plan.steps {
        let took = if s.finished_unix_ms >= s.started_unix_ms && s.started_unix_ms != 0 {
            format!(
                "{:.1} s",
                (s.finished_unix_ms - s.started_unix_ms) as f64 / 1000.0
            )
        } else {
            "-".into()
        };
        let _ = writeln!(
            out,
            "{:<16}  {:<12}  {:<13}  {:>5}  {:<9}  {:>8}  {:>8}  {}",
            format_id(s.node_id),
            s.name,
            role_label(s.role),
            s.order,
            // Failures stand out in the table.
            match step_label(s) {
                "failed" => "FAILED",
                other => other,
            },
            s.attempts,
            took,
            s.last_error
        );
    }
    for r in &plan.removals {
        let _ = writeln!(
            out,
            "removed {} ({}): remove command {} after {} attempt(s){}",
            r.name,
            role_label(r.role),
            match state_label(r.state) {
                "failed" => "FAILED",
                other => other,
            },
            r.attempts,
            if r.last_error.is_empty() {
                String::new()
            } else {
                format!(": {}", r.last_error)
            }
        );
    }
    if let Some(u) = &plan.upload {
        let host = plan
            .steps
            .iter()
            .find(|s| s.node_id == u.for_node_id)
            .map_or_else(|| format_id(u.for_node_id), |s| s.name.clone());
        let _ = writeln!(
            out,
            "certificate upload #{} (before the join of {host}): {} after {} attempt(s){}",
            u.generation,
            match state_label(u.state) {
                "failed" => "FAILED",
                other => other,
            },
            u.attempts,
            if u.last_error.is_empty() {
                String::new()
            } else {
                format!(": {}", u.last_error)
            }
        );
    }
    out
}

/// One event as a line: UTC time, the host that saw it, the kind, what happened.
pub fn event_line(e: &muster_proto::Event) -> String {
    format!(
        "{}  {:<12}  {:<8}  {}",
        utc(e.unix_ms),
        e.host_name,
        e.kind,
        e.text
    )
}

/// One event as the operator contract's JSON object.
pub fn event_json(e: &muster_proto::Event) -> Value {
    json!({
        "seq": e.seq,
        "unix_ms": e.unix_ms,
        "time": utc(e.unix_ms),
        "host_id": format_id(e.host_id),
        "host_name": e.host_name,
        "kind": e.kind,
        "text": e.text,
    })
}

/// `unix_ms` as RFC 3339 UTC with milliseconds (`-` if out of range).
pub fn utc(unix_ms: u64) -> String {
    use time::format_description::well_known::{iso8601, Iso8601};
    const FORMAT: iso8601::EncodedConfig = iso8601::Config::DEFAULT
        .set_time_precision(iso8601::TimePrecision::Second {
            decimal_digits: std::num::NonZeroU8::new(3),
        })
        .encode();
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Iso8601::<FORMAT>).ok())
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn event_times_are_utc_with_milliseconds() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc(1_796_132_917_839), "2026-12-01T13:48:37.839Z");
    }
}

/// The readable view, with problems in red when `colour` (a terminal that wants it).
pub fn human_coloured(s: &StatusResponse, colour: bool) -> String {
    let text = human(s);
    if !colour {
        return text;
    }
    // Whole words the plain view writes in capitals are the problems.
    const RED: &str = "\x1b[1;31m";
    const RESET: &str = "\x1b[0m";
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let mut l = line.to_string();
        for word in [
            "NO ",
            "FAILED",
            "UNHEALTHY",
            "STALE",
            "CONFLICT",
            "REMOVED",
            "MIXED",
        ] {
            l = l.replace(word, &format!("{RED}{word}{RESET}"));
        }
        out.push_str(&l);
    }
    out
}

/// The readable view.
pub fn human(s: &StatusResponse) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let dash = |id: u64| {
        if id == 0 {
            "-".to_string()
        } else {
            format_id(id)
        }
    };
    let leader_name = s
        .members
        .iter()
        .find(|m| m.id == s.leader_id)
        .map(|m| format!(" ({})", m.name))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "node      {} ({}) at {}",
        format_id(s.node_id),
        s.node_name,
        s.address
    );
    let _ = writeln!(out, "phase     {}", s.phase);
    let site = match (s.formed_unix_ms != 0, s.locked) {
        (true, _) => ", site formed",
        (false, true) => ", site locked (forming)",
        (false, false) if s.cluster_id != 0 => ", site not yet formed",
        _ => "",
    };
    let _ = writeln!(out, "cluster   {}{site}", dash(s.cluster_id));
    if !s.site_conflict.is_empty() {
        let _ = writeln!(out, "CONFLICT  {}", s.site_conflict);
    }
    let _ = writeln!(out, "leader    {}{}", dash(s.leader_id), leader_name);
    let _ = writeln!(
        out,
        "raft      term {}, commit {}, applied {}",
        s.term, s.commit_index, s.applied_index
    );
    let _ = writeln!(
        out,
        "peers     {} connected, {} connection(s) refused (no site key, or a removed host)",
        s.peers_connected, s.rejected_connections
    );
    if !s.dropped.is_empty() {
        let total: u64 = s.dropped.iter().map(|d| d.count).sum();
        let _ = writeln!(out, "dropped   {total} inbound message(s):");
        for d in &s.dropped {
            let _ = writeln!(out, "          {:>6}  {}", d.count, d.reason);
        }
    }
    if let Some(v) = &s.vip {
        let holder = match v.holder_id {
            0 => "nobody".to_string(),
            id => {
                let name = s
                    .members
                    .iter()
                    .find(|m| m.id == id)
                    .map_or(String::new(), |m| format!(" ({})", m.name));
                format!("{}{name}", format_id(id))
            }
        };
        let here = if v.held_here {
            format!(", here, lease {} ms left", v.lease_left_ms)
        } else {
            String::new()
        };
        let _ = writeln!(out, "vip       {} held by {holder}{here}", v.address);
        if !v.held_back.is_empty() {
            let _ = writeln!(out, "          not held here: {}", v.held_back);
        }
    }
    if let Some(d) = &s.dns {
        let target = if d.target.is_empty() {
            "nothing".to_string()
        } else {
            d.target.join(", ")
        };
        let by = if d.served_term == 0 {
            String::new()
        } else {
            format!(" (term {} by {})", d.served_term, d.served_by)
        };
        // Only the holder reads and updates the name: another host shows what it read when it
        // last held, and says so, or that it never read it (not "-> nothing": the name may
        // well resolve).
        let result = match (d.holding_term != 0, d.stale, d.last_error.is_empty()) {
            (true, _, false) => format!("; STALE: {}", d.last_error),
            (true, true, true) => "; STALE: not yet served".to_string(),
            (true, false, true) => ", updated here".to_string(),
            _ => " as last read here (this host does not hold the endpoint)".to_string(),
        };
        if d.holding_term == 0 && d.last_unix_ms == 0 {
            let _ = writeln!(
                out,
                "dns       {} (not read here: only the holder updates and reads it)",
                d.name
            );
        } else {
            let _ = writeln!(out, "dns       {} -> {target}{by}{result}", d.name);
        }
    }
    if s.phase == "removed" {
        let _ = writeln!(
            out,
            "REMOVED   an operator removed this host from its cluster; it takes part in nothing until `muster reset`"
        );
    }
    for r in &s.removed {
        let _ = writeln!(
            out,
            "removed   {} ({}), refused at the connection",
            format_id(r.id),
            r.name
        );
    }
    if let Some(plan) = &s.plan {
        let _ = writeln!(out, "plan      {}", plan_summary(plan));
    }
    let _ = writeln!(out, "members   {}", s.members.len());
    let mut versions: Vec<&str> = s
        .members
        .iter()
        .map(|m| m.agent_version.as_str())
        .filter(|v| !v.is_empty())
        .collect();
    versions.sort_unstable();
    versions.dedup();
    if versions.len() > 1 {
        let _ = writeln!(
            out,
            "versions  MIXED: {} (a newer agent waits for every member before it uses a newer command)",
            versions.join(", ")
        );
    }
    if !s.members.is_empty() {
        let _ = writeln!(
            out,
            "  {:<16}  {:<12}  {:<21}  {:<7}  {:<9}  {:<6}  {:<9}  {:<8}  STEP",
            "ID", "NAME", "ADDRESS", "ROLE", "REACHABLE", "SEEN", "API", "VERSION"
        );
        // Problems first: unreachable, then an unhealthy API server or a failed step; then the
        // leader, voters, learners.
        let step_of = |id: u64| {
            s.plan
                .as_ref()
                .and_then(|p| p.steps.iter().find(|st| st.node_id == id))
        };
        let rank = |m: &&muster_proto::MemberStatus| {
            let failed =
                step_of(m.id).is_some_and(|st| st.state == muster_proto::StepState::Failed as i32);
            let unhealthy = api_label(m.api_health) == "unhealthy";
            (
                m.reachable,
                !(unhealthy || failed),
                m.id != s.leader_id,
                !m.voter,
            )
        };
        let mut members: Vec<&muster_proto::MemberStatus> = s.members.iter().collect();
        members.sort_by_key(rank);
        for m in members {
            let role = if m.id == s.leader_id {
                "leader"
            } else if m.voter {
                "voter"
            } else {
                "learner"
            };
            let seen = match m.last_seen_ms_ago {
                None => "-".to_string(),
                Some(0) if m.id == s.node_id => "here".to_string(),
                Some(ms) if ms < 1_000 => "now".to_string(),
                Some(ms) if ms < 120_000 => format!("{} s", ms / 1_000),
                Some(ms) => format!("{} m", ms / 60_000),
            };
            let step = step_of(m.id).map_or_else(
                || "-".to_string(),
                |st| {
                    let state = match step_label(st) {
                        "failed" => "FAILED",
                        other => other,
                    };
                    format!("{} {state}", role_label(st.role))
                },
            );
            let version = if m.agent_version.is_empty() {
                "-"
            } else {
                m.agent_version.as_str()
            };
            let _ = writeln!(
                out,
                "  {:<16}  {:<12}  {:<21}  {:<7}  {:<9}  {:<6}  {:<9}  {:<8}  {step}",
                format_id(m.id),
                m.name,
                m.address,
                role,
                if m.reachable { "yes" } else { "NO" },
                seen,
                match api_label(m.api_health) {
                    "unhealthy" => "UNHEALTHY",
                    other => other,
                },
                version,
            );
        }
    }
    out
}

/// A member's API-server health as operators read it (`-` where no gate is probed).
fn api_label(h: i32) -> &'static str {
    match muster_proto::ApiHealth::try_from(h) {
        Ok(muster_proto::ApiHealth::Healthy) => "healthy",
        Ok(muster_proto::ApiHealth::Unhealthy) => "unhealthy",
        _ => "-",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_proto::MemberStatus;

    #[test]
    fn json_has_the_contract_fields_and_nulls_before_joining() {
        let s = StatusResponse {
            node_id: 0xab,
            node_name: "edge-1".into(),
            ..Default::default()
        };
        let v = json(&s);
        assert_eq!(v["node_id"], "00000000000000ab");
        assert!(v["cluster_id"].is_null() && v["leader_id"].is_null());
        for key in ["node_name", "term", "commit_index", "members"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
    }

    #[test]
    fn human_marks_the_leader_and_unreachable_members() {
        let s = StatusResponse {
            node_id: 1,
            leader_id: 1,
            cluster_id: 9,
            members: vec![
                MemberStatus {
                    id: 1,
                    name: "a".into(),
                    voter: true,
                    reachable: true,
                    ..Default::default()
                },
                MemberStatus {
                    id: 2,
                    name: "b".into(),
                    voter: false,
                    reachable: false,
                    api_health: muster_proto::ApiHealth::Unhealthy as i32,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let h = human(&s);
        assert!(
            h.contains("leader") && h.contains("learner") && h.contains("NO"),
            "{h}"
        );
        assert!(h.contains("UNHEALTHY"), "{h}");
        assert_eq!(json(&s)["members"][1]["api"], "unhealthy");
        assert_eq!(json(&s)["members"][0]["api"], "-");
        assert!(h.contains("site not yet formed"), "{h}");
    }

    #[test]
    fn human_dns_line_says_who_read_the_record() {
        let dns = |holding_term, last_unix_ms, last_error: &str| StatusResponse {
            dns: Some(muster_proto::DnsState {
                name: "api.site.example.".into(),
                target: if last_unix_ms == 0 {
                    vec![]
                } else {
                    vec!["10.77.0.11".into()]
                },
                holding_term,
                served_term: if last_unix_ms == 0 { 0 } else { 7 },
                served_by: "h1".into(),
                last_error: last_error.into(),
                last_unix_ms,
                stale: !last_error.is_empty(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let holder = human(&dns(7, 5, ""));
        assert!(
            holder
                .contains("dns       api.site.example. -> 10.77.0.11 (term 7 by h1), updated here"),
            "{holder}"
        );
        let failing = human(&dns(7, 5, "DNS server refused the update: REFUSED"));
        assert!(failing.contains("; STALE: DNS server refused"), "{failing}");
        // A host that never held: not "-> nothing", which would claim the name does not resolve.
        let never = human(&dns(0, 0, "not holding the endpoint"));
        assert!(
            never.contains("api.site.example. (not read here") && !never.contains("nothing"),
            "{never}"
        );
        let former = human(&dns(0, 5, "not holding the endpoint"));
        assert!(
            former.contains("-> 10.77.0.11 (term 7 by h1) as last read here"),
            "{former}"
        );
    }

    #[test]
    fn plan_json_names_roles_and_states() {
        use muster_proto::{Plan, PlanStep, Role, StepState};
        let plan = Plan {
            created_unix_ms: 1,
            worker_parallelism: 3,
            steps: vec![
                PlanStep {
                    node_id: 1,
                    name: "a".into(),
                    role: Role::Init as i32,
                    state: StepState::Succeeded as i32,
                    attempts: 1,
                    ..Default::default()
                },
                PlanStep {
                    node_id: 2,
                    name: "b".into(),
                    role: Role::ControlPlane as i32,
                    state: StepState::Failed as i32,
                    last_error: "exit 1".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let table = plan_table(&plan);
        assert!(
            table.contains("control-plane") && table.contains("FAILED") && table.contains("exit 1"),
            "{table}"
        );
        assert_eq!(
            plan_summary(&plan),
            "1 of 2 steps succeeded; FAILED: b (control-plane)"
        );
        let v = plan_json(&plan);
        assert_eq!(v["steps"][0]["role"], "init");
        assert_eq!(v["steps"][0]["state"], "succeeded");
        assert_eq!(v["steps"][1]["role"], "control-plane");
        assert_eq!(v["steps"][1]["last_error"], "exit 1");
        assert!(v["steps"][0]["last_error"].is_null());
    }

    #[test]
    fn drops_formed_and_conflicts_are_shown() {
        let s = StatusResponse {
            node_id: 1,
            cluster_id: 9,
            formed_unix_ms: 5,
            locked: true,
            site_conflict: "another formed cluster 00000000000000aa".into(),
            dropped: vec![muster_proto::DropCount {
                reason: "raft message from a non-member".into(),
                count: 3,
            }],
            ..Default::default()
        };
        let h = human(&s);
        assert!(h.contains("site formed") && h.contains("CONFLICT"), "{h}");
        assert!(h.contains("3  raft message from a non-member"), "{h}");
        let v = json(&s);
        assert_eq!(v["dropped"][0]["count"], 3);
        assert_eq!(v["formed_unix_ms"], 5);
        assert_eq!(v["locked"], true);
    }

    #[test]
    fn the_members_table_puts_problems_first_and_shows_versions_and_last_seen() {
        let member = |id: u64, name: &str, reachable: bool, version: &str, seen: Option<u64>| {
            muster_proto::MemberStatus {
                id,
                name: name.into(),
                voter: true,
                reachable,
                agent_version: version.into(),
                last_seen_ms_ago: seen,
                ..Default::default()
            }
        };
        let s = StatusResponse {
            node_id: 1,
            leader_id: 1,
            members: vec![
                member(1, "h1", true, "0.1.0", Some(0)),
                member(2, "h2", true, "0.1.0", Some(300)),
                member(3, "h3", false, "0.2.0", Some(9_000)),
            ],
            ..Default::default()
        };
        let h = human(&s);
        let rows: Vec<&str> = h.lines().filter(|l| l.starts_with("  0")).collect();
        assert!(
            rows[0].contains("h3") && rows[0].contains(" NO ") && rows[0].contains("9 s"),
            "{h}"
        );
        assert!(
            rows[1].contains("h1") && rows[1].contains("leader") && rows[1].contains("here"),
            "{h}"
        );
        assert!(rows[2].contains("h2") && rows[2].contains("now"), "{h}");
        assert!(h.contains("versions  MIXED: 0.1.0, 0.2.0"), "{h}");
        assert!(!h.contains('\x1b'), "no colour unless asked");
        let c = human_coloured(&s, true);
        assert!(
            c.contains("\x1b[1;31mNO \x1b[0m") && c.contains("\x1b[1;31mMIXED"),
            "{c}"
        );
        let v = json(&s);
        assert_eq!(v["members"][2]["agent_version"], "0.2.0");
        assert_eq!(v["members"][2]["last_seen_ms_ago"], 9_000);
    }
}
