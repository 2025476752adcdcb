//! The updater actor over the in-memory zone (`MemServer`) under paused tokio time: backoff
//! bounds when the server is unreachable, the slow retry after a refusal, `Release` stops all
//! traffic, a higher term on the record is never overwritten, renewals send nothing.

use std::net::IpAddr;
use std::time::Duration;

use muster_dns::proto::op::ResponseCode;
use muster_dns::proto::rr::rdata::{A, TXT};
use muster_dns::proto::rr::{Name, RData, RecordType};
use muster_dns::{
    DnsConfig, DnsHandle, DnsUpdater, Fault, MemServer, MemZone, TsigAlg, TsigKey, UpdateError,
};

fn cfg(node: &str) -> DnsConfig {
    let key = TsigKey::new("k", TsigAlg::HmacSha256, vec![1; 32]);
    DnsConfig::new(
        "192.0.2.53:53".parse().expect("addr"),
        "site.example.",
        "api.site.example.",
        key,
        node,
    )
    .expect("config")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn spawn(zone: &MemZone, node: &str) -> DnsHandle {
    DnsUpdater::spawn_with(cfg(node), MemServer::new(zone.clone()), 1)
}

fn stamp_name() -> Name {
    Name::from_ascii("_muster.api.site.example.").expect("name")
}

#[tokio::test(start_paused = true)]
async fn unreachable_backs_off_within_bounds_and_recovers() {
    let zone = MemZone::default();
    zone.set_fault(Fault::Unreachable);
    let h = spawn(&zone, "a");
    h.hold(3, vec![ip("10.0.0.1")]).expect("hold");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let st = h.status().borrow().clone();
    assert!(st.stale);
    assert!(
        matches!(st.last_result, Err(UpdateError::Unreachable(_))),
        "{st:?}"
    );
    // Each read times out after 1 s; backoff 200 ms doubling to 5 s (half jitter): in 60 s
    // between 9 and ~22 tries, never a tight loop.
    let tries = zone.queries_seen();
    assert!((9..=22).contains(&tries), "{tries} tries in 60 s");
    zone.set_fault(Fault::None);
    // Healed: caught up within the backoff cap plus one exchange.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let st = h.status().borrow().clone();
    assert_eq!(st.last_result, Ok(()), "{st:?}");
    assert!(!st.stale);
    assert_eq!(st.target, vec![ip("10.0.0.1")]);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn refusal_is_named_and_retried_slowly() {
    let zone = MemZone::default();
    zone.set_fault(Fault::Refuse(ResponseCode::Refused));
    let h = spawn(&zone, "a");
    h.hold(3, vec![ip("10.0.0.1")]).expect("hold");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let st = h.status().borrow().clone();
    assert_eq!(
        st.last_result,
        Err(UpdateError::Rejected {
            rcode: "REFUSED".into()
        })
    );
    // 10 s to 12.5 s apart: 5 or 6 in 60 s.
    assert!(
        (5..=6).contains(&zone.updates_seen()),
        "{}",
        zone.updates_seen()
    );
    zone.set_fault(Fault::RejectTsig("BADKEY"));
    tokio::time::sleep(Duration::from_secs(13)).await;
    let msg = h
        .status()
        .borrow()
        .last_result
        .clone()
        .expect_err("err")
        .to_string();
    assert!(msg.contains("BADKEY"), "{msg}");
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn release_stops_traffic_and_keeps_the_record() {
    let zone = MemZone::default();
    let h = spawn(&zone, "a");
    h.hold(3, vec![ip("10.0.0.1")]).expect("hold");
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Renewals of the same holding send nothing new.
    for _ in 0..10 {
        h.hold(3, vec![ip("10.0.0.1")]).expect("renew");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(zone.updates_seen(), 1);
    h.release().expect("release");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let before = zone.queries_seen();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(zone.queries_seen(), before, "no traffic after release");
    let name = Name::from_ascii("api.site.example.").expect("name");
    assert_eq!(
        zone.get(&name, RecordType::A),
        vec![RData::A(A::new(10, 0, 0, 1))]
    );
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_higher_term_is_never_overwritten_and_a_lower_one_is() {
    let zone = MemZone::default();
    let name = Name::from_ascii("api.site.example.").expect("name");
    zone.set(
        &stamp_name(),
        RecordType::TXT,
        vec![RData::TXT(TXT::new(vec!["term=9 id=z".into()]))],
    );
    zone.set(&name, RecordType::A, vec![RData::A(A::new(10, 0, 0, 9))]);
    let h = spawn(&zone, "a");
    h.hold(4, vec![ip("10.0.0.1")]).expect("hold");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let st = h.status().borrow().clone();
    assert_eq!(
        st.last_result,
        Err(UpdateError::NewerHolder {
            term: 9,
            id: "z".into()
        })
    );
    assert_eq!(zone.updates_seen(), 0);
    assert_eq!(
        zone.get(&name, RecordType::A),
        vec![RData::A(A::new(10, 0, 0, 9))]
    );
    // Our term rises past it: replaced.
    h.hold(10, vec![ip("10.0.0.1")]).expect("hold");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = h.status().borrow().clone();
    assert_eq!(st.updated_term, Some(10));
    assert_eq!(st.served_by.as_deref(), Some("a"));
    // Someone deletes everything (a server restored from an empty zone): put back within one
    // check interval.
    zone.clear();
    tokio::time::sleep(Duration::from_millis(
        muster_dns::DEFAULT_CHECK_INTERVAL_MS + 100,
    ))
    .await;
    assert_eq!(
        zone.get(&name, RecordType::A),
        vec![RData::A(A::new(10, 0, 0, 1))]
    );
    h.shutdown().await;
}
