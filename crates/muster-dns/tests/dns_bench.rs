//! Benchmark against a real BIND (the `harness` testbed): per round, the time from
//! `Hold { term, addrs }` to the server serving the new address (polled with queries every
//! 2 ms), beside the time `nsupdate` takes for the same replacement (process start to exit,
//! and to the server serving it). Prints medians and worst.
//!
//! `cargo test -p muster-dns --test dns_bench -- --ignored --nocapture` (root, bind9).

mod harness;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use harness::{runtime, Bind, NAME};
use muster_dns::proto::rr::{Name, RData, RecordType};
use muster_dns::{build_query, DnsServer, DnsUpdater, UdpServer};

const ROUNDS: usize = 12;

async fn served_a(server: &UdpServer, name: &Name) -> Vec<IpAddr> {
    match server.query(build_query(9, name, RecordType::A)).await {
        Ok(reply) => reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4((*a).into())),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn until_served(
    server: &UdpServer,
    name: &Name,
    addr: IpAddr,
    started: Instant,
) -> Result<Duration> {
    let deadline = started + Duration::from_secs(10);
    while Instant::now() < deadline {
        if served_a(server, name).await == vec![addr] {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("{addr} not served within 10 s")
}

fn stats(label: &str, xs: &mut [Duration]) {
    xs.sort();
    let median = xs[xs.len() / 2];
    let worst = xs[xs.len() - 1];
    println!(
        "{label:<44} median {:>8.2} ms   worst {:>8.2} ms   (n={})",
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        xs.len()
    );
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn hold_to_served_beside_nsupdate() -> Result<()> {
    let bind = Bind::start()?;
    let server = UdpServer::new(bind.server(), bind.key()?.signer()?, Duration::from_secs(1));
    let name = Name::from_ascii(NAME)?;
    let mut hold_ms = Vec::new();
    let mut ns_exit = Vec::new();
    let mut ns_served = Vec::new();
    for round in 0..ROUNDS {
        // muster: a fresh holder (a new leader) of a higher term.
        let cfg = bind.config(&format!("edge-{}", round % 3), 2_000)?;
        let addr = bind.holder_addr(100 + round as u8);
        let (srv, n) = (server.clone(), name.clone());
        let took = bind.in_client(move || {
            runtime()?.block_on(async move {
                let h = DnsUpdater::spawn(cfg, round as u64)?;
                let started = Instant::now();
                h.hold(round as u64 + 1, vec![addr])?;
                let took = until_served(&srv, &n, addr, started).await?;
                h.shutdown().await;
                Ok(took)
            })
        })?;
        hold_ms.push(took);
        // nsupdate: the same replacement, unconditional.
        let addr = bind.holder_addr(200 + round as u8);
        let started = Instant::now();
        let exit = bind.nsupdate(&format!(
            "update delete {NAME} A\nupdate add {NAME} 5 A {addr}"
        ))?;
        let (srv, n) = (server.clone(), name.clone());
        let served = bind.in_client(move || {
            runtime()?.block_on(async move { until_served(&srv, &n, addr, started).await })
        })?;
        ns_exit.push(exit);
        ns_served.push(served);
    }
    println!("\nDNS update latency against BIND {} rounds:", ROUNDS);
    stats("muster Hold -> BIND serves the address", &mut hold_ms);
    stats("nsupdate start -> exit", &mut ns_exit);
    stats("nsupdate start -> BIND serves the address", &mut ns_served);
    Ok(())
}
