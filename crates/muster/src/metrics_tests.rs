//! Unit tests of the metric text, the derived counters and the HTTP endpoints.

use super::*;
use muster_proto::{DropCount, MemberStatus, Plan, PlanStep, VipStatus};

fn status(leader: u64, term: u64, holder: u64) -> StatusResponse {
    let member = |id: u64, voter: bool, reachable: bool| MemberStatus {
        id,
        name: format!("edge-{id}"),
        voter,
        reachable,
        ..Default::default()
    };
    StatusResponse {
        node_id: 1,
        cluster_id: 9,
        leader_id: leader,
        term,
        commit_index: 42,
        applied_index: 41,
        phase: "member".into(),
        formed_unix_ms: 1,
        members: vec![
            member(1, true, true),
            member(2, true, false),
            member(3, false, true),
        ],
        vip: Some(VipStatus {
            holder_id: holder,
            held_here: holder == 1,
            lease_left_ms: if holder == 1 { 1500 } else { 0 },
            ..Default::default()
        }),
        plan: Some(Plan {
            steps: vec![
                PlanStep {
                    state: StepState::Succeeded as i32,
                    ..Default::default()
                },
                PlanStep {
                    state: StepState::Failed as i32,
                    ..Default::default()
                },
                PlanStep {
                    removed: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn text(registry: &Registry) -> String {
    let mut out = String::new();
    encode(&mut out, registry).unwrap();
    out
}

/// The value of the sample line that starts with `series ` (name and labels as written).
fn value(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
}

fn fresh() -> (Registry, Set) {
    let mut registry = Registry::with_prefix("muster");
    let set = Set::register(&mut registry);
    (registry, set)
}

#[test]
fn names_types_and_units_follow_prometheus_conventions() {
    let (registry, mut set) = fresh();
    let mut s = status(1, 3, 1);
    s.dropped.push(DropCount {
        reason: "oversized".into(),
        count: 1,
    });
    set.observe(&s);
    let t = text(&registry);
    for (name, kind) in [
        ("muster_build", "info"),
        ("muster_has_leader", "gauge"),
        ("muster_term", "gauge"),
        ("muster_commit_index", "gauge"),
        ("muster_members", "gauge"),
        ("muster_plan_steps", "gauge"),
        ("muster_leader_changes", "counter"),
        ("muster_elections", "counter"),
        ("muster_endpoint_moves", "counter"),
        ("muster_lease_renewals", "counter"),
        ("muster_lease_lapses", "counter"),
        ("muster_dropped_messages", "counter"),
        ("muster_endpoint_lease_remaining_seconds", "gauge"),
    ] {
        assert!(
            t.contains(&format!("# TYPE {name} {kind}\n")),
            "{name}: {t}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&t, &format!("muster_build_info{{version=\"{version}\"}}")),
        Some("1".into())
    );
    assert_eq!(value(&t, "muster_leader_changes_total"), Some("0".into()));
    assert_eq!(value(&t, "muster_elections_total"), Some("0".into()));
    assert!(t.contains("# UNIT muster_endpoint_lease_remaining_seconds seconds\n"));
    assert!(t.ends_with("# EOF\n"), "{t}");
    // Every counter sample ends in _total; no other sample does.
    for line in t.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let counter = t.contains(&format!(
            "# TYPE {} counter\n",
            name.trim_end_matches("_total")
        ));
        assert_eq!(counter, name.ends_with("_total"), "{line}");
        assert!(name.starts_with("muster_"), "{line}");
    }
}

#[test]
fn gauges_show_the_status() {
    let (registry, mut set) = fresh();
    set.observe(&status(1, 3, 1));
    let t = text(&registry);
    for (series, v) in [
        ("muster_has_leader", "1"),
        ("muster_is_leader", "1"),
        ("muster_term", "3"),
        ("muster_commit_index", "42"),
        ("muster_applied_index", "41"),
        ("muster_member", "1"),
        ("muster_site_formed", "1"),
        ("muster_members{state=\"reachable\"}", "2"),
        ("muster_members{state=\"unreachable\"}", "1"),
        ("muster_voters{state=\"reachable\"}", "1"),
        ("muster_voters{state=\"unreachable\"}", "1"),
        ("muster_endpoint_held", "1"),
        ("muster_endpoint_holder_known", "1"),
        ("muster_endpoint_lease_remaining_seconds", "1.5"),
        ("muster_plan_steps{state=\"succeeded\"}", "1"),
        ("muster_plan_steps{state=\"failed\"}", "1"),
        ("muster_plan_steps{state=\"removed\"}", "1"),
        ("muster_plan_steps{state=\"pending\"}", "0"),
        ("muster_api_servers{health=\"unknown\"}", "3"),
    ] {
        assert_eq!(value(&t, series).as_deref(), Some(v), "{series}: {t}");
    }
    let mut lost = status(0, 4, 0);
    lost.vip = None;
    set.observe(&lost);
    let t = text(&registry);
    assert_eq!(value(&t, "muster_has_leader").as_deref(), Some("0"));
    assert_eq!(value(&t, "muster_endpoint_held").as_deref(), Some("0"));
    assert_eq!(
        value(&t, "muster_endpoint_holder_known").as_deref(),
        Some("0")
    );
}

#[test]
fn counters_are_derived_from_what_changed_between_samples() {
    let (registry, mut set) = fresh();
    // Start-up: a term from disk is no election; the first leader and holder are no change.
    set.observe(&status(0, 5, 0));
    set.observe(&status(1, 6, 1));
    let t = text(&registry);
    assert_eq!(value(&t, "muster_elections_total").as_deref(), Some("1"));
    assert_eq!(
        value(&t, "muster_leader_changes_total").as_deref(),
        Some("0")
    );
    assert_eq!(
        value(&t, "muster_endpoint_moves_total").as_deref(),
        Some("0")
    );
    // The leader is lost (no change yet), then another host leads and holds, two terms on.
    set.observe(&status(0, 7, 0));
    set.observe(&status(2, 8, 2));
    set.observe(&status(2, 8, 2));
    let t = text(&registry);
    assert_eq!(value(&t, "muster_elections_total").as_deref(), Some("3"));
    assert_eq!(
        value(&t, "muster_leader_changes_total").as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&t, "muster_endpoint_moves_total").as_deref(),
        Some("1")
    );
}

#[test]
fn dropped_messages_count_by_reason_and_the_reasons_are_bounded() {
    let (registry, mut set) = fresh();
    let with = |drops: Vec<(String, u64)>| {
        let mut s = status(1, 1, 1);
        s.dropped = drops
            .into_iter()
            .map(|(reason, count)| DropCount { reason, count })
            .collect();
        s
    };
    set.observe(&with(vec![("raft_from_non_member".into(), 2)]));
    set.observe(&with(vec![
        ("raft_from_non_member".into(), 5),
        ("oversized".into(), 1),
    ]));
    let t = text(&registry);
    assert_eq!(
        value(
            &t,
            "muster_dropped_messages_total{reason=\"raft_from_non_member\"}"
        )
        .as_deref(),
        Some("5")
    );
    assert_eq!(
        value(&t, "muster_dropped_messages_total{reason=\"oversized\"}").as_deref(),
        Some("1")
    );
    let many: Vec<(String, u64)> = (0..100).map(|i| (format!("r{i}"), 1)).collect();
    set.observe(&with(many));
    let t = text(&registry);
    let series = t
        .lines()
        .filter(|l| l.starts_with("muster_dropped_messages_total{"))
        .count();
    assert_eq!(series, MAX_DROP_REASONS);
}

#[test]
fn lease_outputs_count_acquisitions_renewals_and_lapses() {
    let (registry, mut set) = fresh();
    set.output(
        &Output::EndpointAcquire {
            term: 1,
            until_ms: 1000,
        },
        0,
    );
    set.output(
        &Output::EndpointRenew {
            term: 1,
            until_ms: 1100,
        },
        100,
    );
    set.output(
        &Output::EndpointRenew {
            term: 1,
            until_ms: 1200,
        },
        200,
    );
    // Released before the lease ended (stepped down): no lapse.
    set.output(&Output::EndpointRelease, 300);
    set.output(
        &Output::EndpointAcquire {
            term: 1,
            until_ms: 2000,
        },
        1500,
    );
    // Released after it ended unrenewed: a lapse.
    set.output(&Output::EndpointRelease, 2000);
    // A release without a held lease counts nothing.
    set.output(&Output::EndpointRelease, 3000);
    let t = text(&registry);
    assert_eq!(
        value(&t, "muster_lease_acquisitions_total").as_deref(),
        Some("2")
    );
    assert_eq!(
        value(&t, "muster_lease_renewals_total").as_deref(),
        Some("2")
    );
    assert_eq!(value(&t, "muster_lease_lapses_total").as_deref(), Some("1"));
}

#[test]
fn readiness_needs_a_member_of_a_formed_site_with_a_leader() {
    assert_eq!(readiness(&status(1, 1, 1)), Ok(()));
    let e = readiness(&status(0, 1, 0)).unwrap_err();
    assert!(e.contains("no leader"), "{e}");
    let mut s = status(1, 1, 1);
    s.formed_unix_ms = 0;
    assert!(readiness(&s).unwrap_err().contains("not formed"));
    s.phase = "joining".into();
    assert!(readiness(&s).unwrap_err().contains("joining"));
}

/// Sends `request` raw and returns the whole answer.
async fn ask(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn the_endpoints_answer_and_oversized_requests_are_refused() {
    let mut metrics = Metrics::start(Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let addr = metrics.local_addr().unwrap();
    let r = ask(addr, &get("/readyz")).await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("not ready: starting"), "{r}");
    metrics.tick(Instant::now(), || status(1, 2, 1));
    let r = ask(addr, &get("/metrics")).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("application/openmetrics-text"), "{r}");
    assert!(r.contains("\nmuster_has_leader 1\n"), "{r}");
    assert!(r.contains("\nmuster_term 2\n"), "{r}");
    let r = ask(addr, &get("/readyz")).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = ask(addr, &get("/healthz")).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = ask(addr, &get("/nope")).await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = ask(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(MAX_REQUEST_BYTES * 2)
    );
    let r = ask(addr, huge.as_bytes()).await;
    assert!(!r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn healthz_fails_once_the_loop_stops_ticking() {
    let shared = Shared {
        registry: Registry::default(),
        started: Instant::now(),
        last_tick_ms: AtomicI64::new(0),
        ready: Mutex::new(Ok(())),
    };
    assert!(shared.alive());
    assert_eq!(shared.readiness(), Ok(()));
    // std Instant is not paused: stamp the last tick far in the past instead.
    shared
        .last_tick_ms
        .store(-(LOOP_STALL.as_millis() as i64) - 1, Ordering::Relaxed);
    assert!(!shared.alive());
    assert!(shared.readiness().unwrap_err().contains("not ticking"));
    let req = http::Request::get("/healthz").body(()).unwrap();
    assert_eq!(
        answer(&shared, &req).status(),
        http::StatusCode::SERVICE_UNAVAILABLE
    );
}
