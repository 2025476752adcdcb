//! The updater against a real BIND `named` in its own network namespace (see `harness`): the
//! record follows holders of rising terms, a wrong key is reported without a tight loop, a
//! deposed leader's delayed UPDATE is refused by the server, a server restarted with an old
//! zone is caught up, and a record someone overwrote with nsupdate is corrected. Needs root,
//! `ip`, and bind9 / bind9-dnsutils (scripts/lib.sh installs them).

mod harness;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use harness::{runtime, Bind, NAME, ZONE};
use muster_dns::proto::rr::{Name, RecordType};
use muster_dns::{
    build_query, build_update, DnsServer, DnsStatus, DnsUpdater, Served, TsigAlg, TsigKey,
    UdpServer, UpdateError, Want,
};
use tokio::sync::watch;

/// Waits until the status satisfies `pred`.
async fn wait_for(
    rx: &mut watch::Receiver<DnsStatus>,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&DnsStatus) -> bool,
) -> Result<DnsStatus> {
    let res = tokio::time::timeout(timeout, rx.wait_for(|s| pred(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match res {
        Ok(Ok(s)) => Ok(s),
        _ => bail!("{what}: not within {timeout:?}; status {:?}", *rx.borrow()),
    }
}

#[test]
fn record_follows_rising_terms_from_different_nodes() -> Result<()> {
    let bind = Bind::start()?;
    let cfgs: Vec<_> = (1..=3)
        .map(|n| bind.config(&format!("edge-{n}"), 2_000))
        .collect::<Result<_>>()?;
    let addrs: Vec<Vec<IpAddr>> = (0..10u8)
        .map(|i| {
            let mut a = vec![bind.holder_addr(100 + i)];
            if i % 3 == 0 {
                a.push(format!("fd00:78::{}", i + 1).parse().expect("v6"));
            }
            a
        })
        .collect();
    let want = addrs.clone();
    let results = bind.in_client(move || {
        runtime()?.block_on(async move {
            let handles: Vec<_> = cfgs
                .into_iter()
                .enumerate()
                .map(|(i, c)| DnsUpdater::spawn(c, 100 + i as u64))
                .collect::<Result<_, _>>()?;
            let mut seen = Vec::new();
            let mut previous: Option<usize> = None;
            for (round, addrs) in want.into_iter().enumerate() {
                let node = round % handles.len();
                if let Some(p) = previous {
                    handles[p].release()?;
                }
                let term = 10 + round as u64;
                let started = Instant::now();
                handles[node].hold(term, addrs.clone())?;
                let mut rx = handles[node].status();
                let st = wait_for(&mut rx, Duration::from_secs(5), "hold", |s| {
                    s.updated_term == Some(term) && !s.stale
                })
                .await?;
                let mut sorted = addrs;
                sorted.sort();
                assert_eq!(st.target, sorted, "round {round}: read back");
                assert_eq!(st.served_term, Some(term));
                seen.push((term, node, sorted, started.elapsed()));
                previous = Some(node);
            }
            for h in handles {
                h.shutdown().await;
            }
            Ok(seen)
        })
    })?;
    // dig agrees with the last read-back; each round was read back by the updater above.
    let (term, node, addrs, _) = results.last().context("rounds")?.clone();
    assert_eq!(bind.dig_addrs()?, addrs);
    assert_eq!(
        bind.dig_stamp()?,
        format!("term={term} id=edge-{}", node + 1)
    );
    for (term, _, _, took) in &results {
        assert!(*took < Duration::from_secs(2), "term {term} took {took:?}");
    }
    assert_eq!(results.len(), 10);
    Ok(())
}

#[test]
fn each_round_is_what_dig_sees() -> Result<()> {
    // The same as above but with dig after every round (dig runs on this thread, outside the
    // runtime's namespace thread, so the runtime lives on a namespace thread of its own).
    let bind = Bind::start()?;
    for round in 0..10u64 {
        let cfg = bind.config(&format!("node-{}", round % 2), 2_000)?;
        let addr = bind.holder_addr(150 + round as u8);
        let term = round + 1;
        bind.in_client(move || {
            runtime()?.block_on(async move {
                let h = DnsUpdater::spawn(cfg, round)?;
                h.hold(term, vec![addr])?;
                let mut rx = h.status();
                wait_for(&mut rx, Duration::from_secs(5), "hold", |s| {
                    s.updated_term == Some(term)
                })
                .await?;
                h.shutdown().await;
                Ok(())
            })
        })?;
        assert_eq!(bind.dig_addrs()?, vec![addr], "round {round}");
        assert_eq!(
            bind.dig_stamp()?,
            format!("term={term} id=node-{}", round % 2)
        );
    }
    Ok(())
}

#[test]
fn wrong_key_is_reported_without_a_tight_loop() -> Result<()> {
    let bind = Bind::start()?;
    let real = bind.key()?;
    // Same name, wrong secret → BADSIG; unknown name → BADKEY.
    let bad_secret = TsigKey::new(&real.name, TsigAlg::HmacSha256, vec![7u8; 32]);
    let bad_name = TsigKey::new("nobody-knows", TsigAlg::HmacSha256, vec![7u8; 32]);
    let mut cases = Vec::new();
    for (key, code) in [(bad_secret, "BADSIG"), (bad_name, "BADKEY")] {
        let mut cfg = bind.config("edge-1", 1_000)?;
        cfg.key = key;
        let addr = bind.holder_addr(77);
        let st = bind.in_client(move || {
            runtime()?.block_on(async move {
                let h = DnsUpdater::spawn(cfg, 1)?;
                h.hold(3, vec![addr])?;
                let mut rx = h.status();
                let first = wait_for(&mut rx, Duration::from_secs(3), "error", |s| {
                    matches!(s.last_result, Err(UpdateError::Tsig(_)))
                })
                .await?;
                // Watch it for 4 s: the slow retry (10 s) means no second UPDATE.
                tokio::time::sleep(Duration::from_secs(4)).await;
                let later = rx.borrow().clone();
                h.shutdown().await;
                Ok((first, later))
            })
        })?;
        cases.push((code, st));
    }
    for (code, (first, later)) in cases {
        let msg = first.last_result.clone().expect_err("error").to_string();
        assert!(
            msg.contains(code) && msg.contains("NOTAUTH"),
            "{code}: {msg}"
        );
        assert!(first.stale);
        assert_eq!(later.updates_sent, 1, "{code}: {later:?}");
        assert!(later.reads <= 2, "{code}: {later:?}");
    }
    assert!(bind.dig_addrs()?.is_empty(), "nothing was written");
    Ok(())
}

#[test]
fn delayed_update_from_a_deposed_leader_is_refused_by_the_server() -> Result<()> {
    let bind = Bind::start()?;
    let (cfg_a, cfg_b) = (bind.config("edge-a", 500)?, bind.config("edge-b", 500)?);
    let (addr_a, addr_b) = (bind.holder_addr(5), bind.holder_addr(6));
    let server = UdpServer::new(bind.server(), bind.key()?.signer()?, Duration::from_secs(1));
    let (late_rcode, a_status) = bind.in_client(move || {
        runtime()?.block_on(async move {
            let zone = Name::from_ascii(ZONE)?;
            let name = Name::from_ascii(NAME)?;
            let a = DnsUpdater::spawn(cfg_a, 5)?;
            a.hold(5, vec![addr_a])?;
            let mut rx_a = a.status();
            wait_for(&mut rx_a, Duration::from_secs(5), "term 5", |s| {
                s.updated_term == Some(5)
            })
            .await?;
            // The term-5 leader's next UPDATE, built from what it read (its own stamp), held
            // back in the network.
            let served = read(&server, &name).await?;
            assert_eq!(served.stamp().map(|s| s.term), Some(5));
            let want_a = Want {
                term: 5,
                id: "edge-a".into(),
                addrs: vec![bind_ip(99)],
            };
            let late = build_update(4242, &zone, &name, &served, &want_a, 5);
            // Term 6 wins on another node.
            let b = DnsUpdater::spawn(cfg_b, 6)?;
            b.hold(6, vec![addr_b])?;
            let mut rx_b = b.status();
            wait_for(&mut rx_b, Duration::from_secs(5), "term 6", |s| {
                s.updated_term == Some(6)
            })
            .await?;
            // The old leader, not yet told it is deposed, sees the newer stamp and refuses.
            let a_status = wait_for(&mut rx_a, Duration::from_secs(3), "refusal", |s| {
                matches!(s.last_result, Err(UpdateError::NewerHolder { term: 6, .. }))
            })
            .await?;
            a.release()?;
            // The delayed packet arrives now.
            let rcode = server.update(late).await?;
            a.shutdown().await;
            b.shutdown().await;
            Ok((rcode, a_status))
        })
    })?;
    assert_eq!(
        muster_dns::rcode_name(late_rcode),
        "NXRRSET",
        "prerequisite failed at the server"
    );
    assert_eq!(bind.dig_addrs()?, vec![addr_b]);
    assert_eq!(bind.dig_stamp()?, "term=6 id=edge-b");
    assert!(a_status.stale);
    assert_eq!(a_status.target, vec![addr_b]);
    Ok(())
}

fn bind_ip(host: u8) -> IpAddr {
    IpAddr::from([10, 78, 250, host])
}

async fn read(server: &UdpServer, name: &Name) -> Result<Served> {
    let stamp = muster_dns::stamp_name(name)?;
    let mut sets = Vec::new();
    for (n, t) in [
        (name, RecordType::A),
        (name, RecordType::AAAA),
        (&stamp, RecordType::TXT),
    ] {
        let reply = server.query(build_query(1, n, t)).await?;
        sets.push(
            reply
                .answers
                .iter()
                .map(|r| r.data.clone())
                .collect::<Vec<_>>(),
        );
    }
    let mut served = Served::default();
    for data in sets.concat() {
        match data {
            muster_dns::proto::rr::RData::A(a) => served.addrs.push(IpAddr::V4(a.into())),
            muster_dns::proto::rr::RData::AAAA(a) => served.addrs.push(IpAddr::V6(a.into())),
            muster_dns::proto::rr::RData::TXT(t) => served.txt.push(t),
            _ => {}
        }
    }
    Ok(served)
}

/// Holds `term` with `addr` in the client namespace until `check` (run on this thread between
/// polls of the status) returns true, or `timeout`.
fn hold_while(
    bind: &Bind,
    cfg: muster_dns::DnsConfig,
    term: u64,
    addr: IpAddr,
    disturb: impl FnOnce(&Bind) -> Result<()>,
    timeout: Duration,
) -> Result<Duration> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Result<()>>();
    let path = format!("/var/run/netns/{}", bind.client_ns);
    let worker = std::thread::spawn(move || {
        let res = (|| -> Result<()> {
            use std::os::fd::AsFd;
            let ns = std::fs::File::open(&path)?;
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            runtime()?.block_on(async move {
                let h = DnsUpdater::spawn(cfg, term)?;
                h.hold(term, vec![addr])?;
                let mut st = h.status();
                wait_for(&mut st, Duration::from_secs(5), "hold", |s| {
                    s.updated_term == Some(term)
                })
                .await?;
                done_tx.send(Ok(())).ok();
                // Keep holding until the test thread says stop.
                tokio::task::spawn_blocking(move || rx.recv()).await.ok();
                h.shutdown().await;
                Ok(())
            })
        })();
        res
    });
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .context("updater start")??;
    disturb(bind)?;
    let started = Instant::now();
    let result = loop {
        if bind.dig_addrs().ok().as_deref() == Some(&[addr][..]) {
            break Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            break Err(anyhow::anyhow!(
                "not corrected within {timeout:?}: dig {:?}",
                bind.dig_addrs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    tx.send(()).ok();
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("worker panicked"))??;
    result
}

#[test]
fn server_restarted_with_an_old_zone_is_caught_up() -> Result<()> {
    let bind = Bind::start()?;
    let cfg = bind.config("edge-1", 1_000)?;
    let addr = bind.holder_addr(31);
    let took = hold_while(
        &bind,
        cfg,
        8,
        addr,
        |b| {
            b.restart_with_old_zone()?;
            assert!(b.dig_addrs()?.is_empty(), "the old zone has no endpoint");
            Ok(())
        },
        Duration::from_secs(4),
    )?;
    println!("caught up {took:?} after the restart");
    assert_eq!(bind.dig_stamp()?, "term=8 id=edge-1");
    Ok(())
}

#[test]
fn record_overwritten_with_nsupdate_is_corrected() -> Result<()> {
    let bind = Bind::start()?;
    let cfg = bind.config("edge-1", 1_000)?;
    let addr = bind.holder_addr(41);
    let took = hold_while(
        &bind,
        cfg,
        9,
        addr,
        |b| {
            b.nsupdate(&format!(
                "update delete {NAME} A\nupdate add {NAME} 5 A 10.78.9.99"
            ))?;
            let now = b.dig_addrs()?;
            assert_eq!(now, vec![IpAddr::from([10, 78, 9, 99])], "overwritten");
            Ok(())
        },
        Duration::from_secs(4),
    )?;
    println!("corrected {took:?} after the overwrite");
    assert_eq!(bind.dig_stamp()?, "term=9 id=edge-1");
    Ok(())
}
