//! Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` endpoints (`[metrics] listen`,
//! off by default).
//!
//! The agent's event loop owns a [`Metrics`]: on every tick it calls [`Metrics::tick`], which
//! stamps the loop as alive and, once per [`SAMPLE_INTERVAL`], reads the core's status and
//! updates the registry ([`Set::observe`], pure over two status values: counters such as leader
//! changes, elections and endpoint moves are derived by comparing with the previous status).
//! [`Metrics::output`] counts the lease's acquisitions, renewals and lapses from the core's
//! outputs. An HTTP/1.1 server (hyper, [`serve`]) answers scrapes from the registry and the
//! shared stamps, never from the loop, so a stalled loop cannot stall a scrape and a scrape cannot
//! stall the loop. It is bounded: [`MAX_CONNECTIONS`] at once, [`MAX_REQUEST_BYTES`] of request
//! head, one request per connection within [`CONNECTION_TIMEOUT`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use muster_core::Output;
use muster_proto::{ApiHealth, StatusResponse, StepState};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// How often the status is sampled into the registry.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// `/healthz` fails once the event loop has not ticked for this long.
pub const LOOP_STALL: Duration = Duration::from_secs(2);
/// Scrape connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 8;
/// Largest request head (request line and headers) read.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Longest one connection may take, request and answer together.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Distinct `reason` labels of `muster_dropped_messages_total` (further reasons are not added).
pub const MAX_DROP_REASONS: usize = 32;
/// The OpenMetrics text content type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// The metric handles, registered under the `muster_` prefix.
pub struct Set {
    has_leader: Gauge,
    is_leader: Gauge,
    term: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    member: Gauge,
    site_formed: Gauge,
    site_conflict: Gauge,
    peers_connected: Gauge,
    members: Family<Labels, Gauge>,
    voters: Family<Labels, Gauge>,
    endpoint_held: Gauge,
    endpoint_holder_known: Gauge,
    endpoint_lease_remaining: Gauge<f64, AtomicU64>,
    plan_steps: Family<Labels, Gauge>,
    api_servers: Family<Labels, Gauge>,
    leader_changes: Counter,
    elections: Counter,
    endpoint_moves: Counter,
    lease_acquisitions: Counter,
    lease_renewals: Counter,
    lease_lapses: Counter,
    dropped: Family<Labels, Counter>,
    /// What the previous sample saw.
    seen: Seen,
    /// Lease end given with the last acquire or renew (core ms), while held.
    fence_ms: Option<u64>,
}

/// The previous sample's values the counters are derived from.
#[derive(Default)]
struct Seen {
    sampled: bool,
    term: u64,
    /// Last non-zero leader and VIP holder seen.
    leader: u64,
    holder: u64,
    dropped: HashMap<String, u64>,
}

impl Set {
    /// Registers every metric in `registry` (which should carry the `muster` prefix).
    pub fn register(registry: &mut Registry) -> Set {
        let g = |r: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            r.register(name, help, gauge.clone());
            gauge
        };
        let c = |r: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            r.register(name, help, counter.clone());
            counter
        };
        let fam = |r: &mut Registry, name: &str, help: &str| {
            let f = Family::<Labels, Gauge>::default();
            r.register(name, help, f.clone());
            f
        };
        registry.register(
            "build",
            "The muster version of this agent",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_string())]),
        );
        let r = registry;
        let endpoint_lease_remaining = Gauge::<f64, AtomicU64>::default();
        r.register_with_unit(
            "endpoint_lease_remaining",
            "Lease left on the held API endpoint (0 unless held here)",
            Unit::Seconds,
            endpoint_lease_remaining.clone(),
        );
        let dropped = Family::<Labels, Counter>::default();
        r.register(
            "dropped_messages",
            "Inbound messages the core dropped, by reason",
            dropped.clone(),
        );
        Set {
            has_leader: g(r, "has_leader", "1 if this host knows a raft leader"),
            is_leader: g(r, "is_leader", "1 if this host is the raft leader"),
            term: g(r, "term", "The raft term"),
            commit_index: g(r, "commit_index", "The raft commit index"),
            applied_index: g(r, "applied_index", "The raft index applied here"),
            member: g(r, "member", "1 if this host is a member of a cluster"),
            site_formed: g(r, "site_formed", "1 once the site is recorded formed"),
            site_conflict: g(
                r,
                "site_conflict",
                "1 while another formed cluster is seen on the site's LAN",
            ),
            peers_connected: g(r, "peers_connected", "Authenticated peers connected"),
            members: fam(
                r,
                "members",
                "Cluster members by state as seen from this host (reachable, unreachable)",
            ),
            voters: fam(r, "voters", "Raft voters by state (reachable, unreachable)"),
            endpoint_held: g(r, "endpoint_held", "1 while this host holds the VIP"),
            endpoint_holder_known: g(
                r,
                "endpoint_holder_known",
                "1 while a VIP holder is known (always 0 without a VIP)",
            ),
            endpoint_lease_remaining,
            plan_steps: fam(
                r,
                "plan_steps",
                "Join plan steps by state (pending, running, succeeded, failed, removed)",
            ),
            api_servers: fam(
                r,
                "api_servers",
                "Members by API server health (healthy, unhealthy, unknown)",
            ),
            leader_changes: c(
                r,
                "leader_changes",
                "Times the known leader changed to another host",
            ),
            elections: c(r, "elections", "Raft term increases seen (elections)"),
            endpoint_moves: c(
                r,
                "endpoint_moves",
                "Times the VIP holder changed to another host",
            ),
            lease_acquisitions: c(
                r,
                "lease_acquisitions",
                "Times this host acquired the VIP lease",
            ),
            lease_renewals: c(r, "lease_renewals", "Renewals of this host's VIP lease"),
            lease_lapses: c(
                r,
                "lease_lapses",
                "Times this host's VIP lease ran out before it was renewed",
            ),
            dropped,
            seen: Seen::default(),
            fence_ms: None,
        }
    }

    /// Updates the gauges from `s` and the counters from what changed since the last sample.
    pub fn observe(&mut self, s: &StatusResponse) {
        let flag = |b: bool| i64::from(b);
        self.has_leader.set(flag(s.leader_id != 0));
        self.is_leader
            .set(flag(s.leader_id != 0 && s.leader_id == s.node_id));
        self.term.set(clamp(s.term));
        self.commit_index.set(clamp(s.commit_index));
        self.applied_index.set(clamp(s.applied_index));
        self.member
            .set(flag(s.phase == "member" && s.cluster_id != 0));
        self.site_formed.set(flag(s.formed_unix_ms != 0));
        self.site_conflict.set(flag(!s.site_conflict.is_empty()));
        self.peers_connected.set(i64::from(s.peers_connected));
        let reachable = |voters: bool| {
            let of = s.members.iter().filter(|m| !voters || m.voter);
            let up = of.clone().filter(|m| m.reachable).count();
            (up, of.count() - up)
        };
        for (family, voters) in [(&self.members, false), (&self.voters, true)] {
            let (up, down) = reachable(voters);
            set(family, "state", "reachable", up);
            set(family, "state", "unreachable", down);
        }
        let vip = s.vip.as_ref();
        self.endpoint_held
            .set(flag(vip.is_some_and(|v| v.held_here)));
        let holder = vip.map_or(0, |v| v.holder_id);
        self.endpoint_holder_known.set(flag(holder != 0));
        let left_ms = vip.map_or(0, |v| v.lease_left_ms);
        self.endpoint_lease_remaining.set(left_ms as f64 / 1000.0);
        self.observe_plan(s);
        for (label, health) in [
            ("healthy", ApiHealth::Healthy),
            ("unhealthy", ApiHealth::Unhealthy),
            ("unknown", ApiHealth::Unknown),
        ] {
            let n = s
                .members
                .iter()
                .filter(|m| m.api_health == health as i32)
                .count();
            set(&self.api_servers, "health", label, n);
        }
        self.count_changes(s, holder);
    }

    fn observe_plan(&self, s: &StatusResponse) {
        let steps = s.plan.as_ref().map_or(&[][..], |p| &p.steps[..]);
        let count =
            |f: &dyn Fn(&muster_proto::PlanStep) -> bool| steps.iter().filter(|st| f(st)).count();
        for (label, state) in [
            ("pending", StepState::Pending),
            ("running", StepState::Running),
            ("succeeded", StepState::Succeeded),
            ("failed", StepState::Failed),
        ] {
            let n = count(&|st| !st.removed && st.state == state as i32);
            set(&self.plan_steps, "state", label, n);
        }
        set(
            &self.plan_steps,
            "state",
            "removed",
            count(&|st| st.removed),
        );
    }

    fn count_changes(&mut self, s: &StatusResponse, holder: u64) {
        let seen = &mut self.seen;
        if seen.sampled && s.term > seen.term {
            self.elections.inc_by(s.term - seen.term);
        }
        seen.term = s.term;
        seen.sampled = true;
        for (now, last, counter) in [
            (s.leader_id, &mut seen.leader, &self.leader_changes),
            (holder, &mut seen.holder, &self.endpoint_moves),
        ] {
            if now != 0 && now != *last {
                if *last != 0 {
                    counter.inc();
                }
                *last = now;
            }
        }
        for d in &s.dropped {
            let known = seen.dropped.contains_key(&d.reason);
            if !known && seen.dropped.len() >= MAX_DROP_REASONS {
                continue;
            }
            let last = seen.dropped.entry(d.reason.clone()).or_insert(0);
            if d.count > *last {
                self.dropped
                    .get_or_create(&vec![("reason", d.reason.clone())])
                    .inc_by(d.count - *last);
            }
            *last = d.count;
        }
    }

    /// Counts the lease's acquisitions, renewals and lapses (a release once the last lease end
    /// given had passed: the lease ran out unrenewed). `now_ms` is the core's clock.
    pub fn output(&mut self, output: &Output, now_ms: u64) {
        match output {
            Output::EndpointAcquire { until_ms, .. } => {
                self.lease_acquisitions.inc();
                self.fence_ms = Some(*until_ms);
            }
            Output::EndpointRenew { until_ms, .. } => {
                self.lease_renewals.inc();
                self.fence_ms = Some(*until_ms);
            }
            Output::EndpointRelease => {
                let lapsed = self.fence_ms.take().is_some_and(|f| now_ms >= f);
                self.lease_lapses.inc_by(u64::from(lapsed));
            }
            _ => {}
        }
    }
}

/// A u64 as a gauge value (saturating).
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn set(family: &Family<Labels, Gauge>, key: &'static str, value: &str, n: usize) {
    family
        .get_or_create(&vec![(key, value.to_string())])
        .set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// What the HTTP server reads: the registry and the loop's stamps.
struct Shared {
    registry: Registry,
    started: Instant,
    /// When the loop last ticked, in ms since `started`.
    last_tick_ms: AtomicI64,
    /// `Ok` once ready, else why not (the reason `/readyz` gives).
    ready: Mutex<Result<(), String>>,
}

impl Shared {
    fn alive(&self) -> bool {
        let now = self.started.elapsed().as_millis() as i64;
        now - self.last_tick_ms.load(Ordering::Relaxed) <= LOOP_STALL.as_millis() as i64
    }

    fn readiness(&self) -> Result<(), String> {
        if !self.alive() {
            return Err("the event loop is not ticking".into());
        }
        match self.ready.lock() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// `/readyz`: a member of a formed site with a known, reachable leader (`muster health`'s
/// member, formed and leader checks).
pub fn readiness(s: &StatusResponse) -> Result<(), String> {
    crate::health_cmd::member(s)?;
    crate::health_cmd::formed(s)?;
    crate::health_cmd::leader(s)?;
    Ok(())
}

/// The agent's metrics: nothing (and no cost) unless `[metrics] listen` is set.
pub struct Metrics {
    inner: Option<Inner>,
}

struct Inner {
    set: Set,
    shared: Arc<Shared>,
    next_sample: Instant,
    /// The bound address (tests bind port 0).
    #[cfg(test)]
    local_addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Metrics {
    /// Binds `listen` and starts serving; `None`: metrics are off. The error names the key.
    pub async fn start(listen: Option<SocketAddr>) -> anyhow::Result<Metrics> {
        use anyhow::Context as _;
        let Some(listen) = listen else {
            return Ok(Metrics { inner: None });
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("metrics.listen: cannot bind {listen}"))?;
        let local_addr = listener
            .local_addr()
            .with_context(|| format!("metrics.listen: {listen}"))?;
        let mut registry = Registry::with_prefix("muster");
        let set = Set::register(&mut registry);
        let shared = Arc::new(Shared {
            registry,
            started: Instant::now(),
            last_tick_ms: AtomicI64::new(0),
            ready: Mutex::new(Err("starting".into())),
        });
        let server = tokio::spawn(serve(listener, shared.clone()));
        tracing::info!(listen = %local_addr, "metrics listening (/metrics, /healthz, /readyz)");
        Ok(Metrics {
            inner: Some(Inner {
                set,
                shared,
                next_sample: Instant::now(),
                #[cfg(test)]
                local_addr,
                server,
            }),
        })
    }

    /// The address served on (`None` when off).
    #[cfg(test)]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.as_ref().map(|i| i.local_addr)
    }

    /// Called on every tick of the event loop: stamps it alive and samples `status` when due.
    pub fn tick(&mut self, now: Instant, status: impl FnOnce() -> StatusResponse) {
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        let ms = now
            .saturating_duration_since(inner.shared.started)
            .as_millis() as i64;
        inner.shared.last_tick_ms.store(ms, Ordering::Relaxed);
        if now < inner.next_sample {
            return;
        }
        inner.next_sample = now + SAMPLE_INTERVAL;
        let s = status();
        inner.set.observe(&s);
        let ready = readiness(&s);
        match inner.shared.ready.lock() {
            Ok(mut r) => *r = ready,
            Err(p) => *p.into_inner() = ready,
        }
    }

    /// Counts lease outputs (see [`Set::output`]).
    pub fn output(&mut self, output: &Output, now_ms: u64) {
        if let Some(inner) = self.inner.as_mut() {
            inner.set.output(output, now_ms);
        }
    }
}

/// Accepts scrapes until the task is aborted: at most [`MAX_CONNECTIONS`] at once.
async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "metrics: too many connections; closed");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = answer(&shared, &req);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(CONNECTION_TIMEOUT)
                .max_buf_size(MAX_REQUEST_BYTES)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                tracing::debug!(%remote, error = %e, "metrics: connection failed");
            }
            drop(permit);
        });
    }
}

/// The answer to one request (the body of a request is never read).
fn answer<B>(shared: &Shared, req: &http::Request<B>) -> http::Response<Full<Bytes>> {
    use http::StatusCode;
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut text = String::new();
            if encode(&mut text, &shared.registry).is_err() {
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "encoding failed\n".into(),
                );
            }
            let mut r = http::Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(CONTENT_TYPE),
            );
            r
        }
        "/healthz" if shared.alive() => plain(StatusCode::OK, "ok\n".into()),
        "/healthz" => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event loop is not ticking\n".into(),
        ),
        "/readyz" => match shared.readiness() {
            Ok(()) => plain(StatusCode::OK, "ready\n".into()),
            Err(why) => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz, /readyz\n".into(),
        ),
    }
}

fn plain(status: http::StatusCode, body: String) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
