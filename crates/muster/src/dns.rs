//! The agent's side of the DNS endpoint (`[ddns]`): starts the `muster-dns` updater actor and
//! carries the core's endpoint lease to it — `EndpointAcquire` / `EndpointRenew` become
//! `Hold { term, addrs }` (a renewal of the same term is a no-op in the actor), `EndpointRelease`
//! becomes `Release`. The addresses are the VIP's when the site has one (the name then points at
//! the VIP), else this host's own. The actor never blocks the event loop: commands go over its
//! bounded channel with `try_send`, and its status is read from a watch for `muster status`.

use std::net::IpAddr;

use anyhow::Context;
use muster_dns::{DnsConfig, DnsHandle, DnsStatus, DnsUpdater, TsigKey};

use crate::config::Ddns;

/// The updater handle and what it is told to point the name at.
pub struct Dns {
    handle: Option<DnsHandle>,
    addrs: Vec<IpAddr>,
}

impl Dns {
    /// Starts the updater for `cfg` (none: a site without `[ddns]`). Reads the TSIG key file;
    /// a bad key is an error naming the file and the key.
    pub fn start(cfg: Option<&Ddns>, node_name: &str, addrs: Vec<IpAddr>) -> anyhow::Result<Dns> {
        let Some(cfg) = cfg else {
            return Ok(Dns {
                handle: None,
                addrs,
            });
        };
        let key = TsigKey::from_file(&cfg.tsig_key_file)
            .with_context(|| format!("ddns.tsig_key_file {}", cfg.tsig_key_file.display()))?;
        let mut dns =
            DnsConfig::new(cfg.server, &cfg.zone, &cfg.name, key, node_name).context("[ddns]")?;
        dns.ttl_s = cfg.ttl.as_secs().clamp(1, u32::MAX as u64) as u32;
        dns.validate().context("[ddns]")?;
        let seed: u64 = rand::random();
        tracing::info!(name = %cfg.name, server = %cfg.server, seed, "starting the DNS updater");
        let handle = DnsUpdater::spawn(dns, seed).context("starting the DNS updater")?;
        Ok(Dns {
            handle: Some(handle),
            addrs,
        })
    }

    /// The core holds the endpoint for `term`.
    pub fn hold(&self, term: u64) {
        if let Some(h) = &self.handle {
            if let Err(e) = h.hold(term, self.addrs.clone()) {
                tracing::warn!(error = %e, term, "DNS updater queue: hold not handed over");
            }
        }
    }

    /// The core released the endpoint.
    pub fn release(&self) {
        if let Some(h) = &self.handle {
            if let Err(e) = h.release() {
                tracing::warn!(error = %e, "DNS updater queue: release not handed over");
            }
        }
    }

    /// The operator contract's `dns` object, if the site has a DNS name.
    pub fn status(&self) -> Option<muster_proto::DnsState> {
        let h = self.handle.as_ref()?;
        let s: DnsStatus = h.status().borrow().clone();
        Some(muster_proto::DnsState {
            name: s.name,
            target: s.target.iter().map(ToString::to_string).collect(),
            updated_term: s.updated_term.unwrap_or(0),
            holding_term: s.holding_term.unwrap_or(0),
            served_term: s.served_term.unwrap_or(0),
            served_by: s.served_by.unwrap_or_default(),
            last_error: s
                .last_result
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
            last_unix_ms: s.last_unix_ms,
            stale: s.stale,
        })
    }
}
