//! The updater's runtime config: the operator's `[ddns]` section (server, zone, name, ttl,
//! TSIG key) plus the node name and the bounded timings, checked once by [`DnsConfig::new`].
//!
//! The agent parses its TOML and builds this; tests build it directly with shorter timings.

use std::net::SocketAddr;

use hickory_proto::rr::Name;

use crate::tsig::TsigKey;

/// Default record TTL, seconds (the operator contract's 5 s).
pub const DEFAULT_TTL_S: u32 = 5;
/// Default period of the re-check that the server still serves our record, ms.
pub const DEFAULT_CHECK_INTERVAL_MS: u64 = 2_000;
/// Default deadline of one exchange with the server, ms.
pub const DEFAULT_EXCHANGE_TIMEOUT_MS: u64 = 1_000;
/// Default first backoff after an unreachable server, ms (doubles up to the max).
pub const DEFAULT_BACKOFF_MIN_MS: u64 = 200;
/// Default backoff cap, ms.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 5_000;
/// Default wait after the server refused us (BADSIG, BADKEY, NOTAUTH, REFUSED, ...), ms: an
/// operator has to fix the key or the server's policy, so asking again soon is pointless.
pub const DEFAULT_REJECTED_RETRY_MS: u64 = 10_000;
/// Most addresses one holder puts under the name.
pub const MAX_ADDRS: usize = 8;

/// What is wrong with the config; each names the `[ddns]` key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `zone` or `name` is not a DNS name.
    #[error("[ddns] {key}: {value:?} is not a DNS name: {reason}")]
    BadName {
        /// `zone` or `name`.
        key: &'static str,
        /// What was given.
        value: String,
        /// Why.
        reason: String,
    },
    /// `name` is not inside `zone`.
    #[error("[ddns] name {name:?} is not inside zone {zone:?}")]
    NotInZone {
        /// The name.
        name: String,
        /// The zone.
        zone: String,
    },
    /// `ttl` out of range.
    #[error("[ddns] ttl: {ttl_s} s is outside 1..=86400")]
    BadTtl {
        /// What was given.
        ttl_s: u32,
    },
    /// The node name cannot go into the stamp.
    #[error("node name {0:?} cannot be stamped: 1..=63 printable ASCII bytes without spaces")]
    BadNodeId(String),
    /// A timing is zero or out of order.
    #[error("{0}")]
    BadTiming(String),
}

/// The updater's config.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// The authoritative server that takes the UPDATEs (`[ddns] server`, e.g. `10.0.0.53:53`).
    pub server: SocketAddr,
    /// The zone (`[ddns] zone`), absolute.
    pub zone: Name,
    /// The endpoint name (`[ddns] name`), absolute, inside `zone`.
    pub name: Name,
    /// TTL of the records written, seconds (`[ddns] ttl`, default 5).
    pub ttl_s: u32,
    /// The TSIG key (`[ddns] tsig_key_file`).
    pub key: TsigKey,
    /// This node's name, written into the stamp.
    pub node_id: String,
    /// Period of the re-check while holding, ms.
    pub check_interval_ms: u64,
    /// Deadline of one exchange, ms.
    pub exchange_timeout_ms: u64,
    /// First backoff after a timeout or socket error, ms.
    pub backoff_min_ms: u64,
    /// Backoff cap, ms.
    pub backoff_max_ms: u64,
    /// Wait after the server refused the update, ms.
    pub rejected_retry_ms: u64,
}

fn parse_name(key: &'static str, value: &str) -> Result<Name, ConfigError> {
    let mut name = Name::from_ascii(value).map_err(|e| ConfigError::BadName {
        key,
        value: value.to_string(),
        reason: e.to_string(),
    })?;
    name.set_fqdn(true);
    if name.is_root() {
        return Err(ConfigError::BadName {
            key,
            value: value.to_string(),
            reason: "the root".into(),
        });
    }
    Ok(name)
}

impl DnsConfig {
    /// The config with default timings and TTL; checked.
    pub fn new(
        server: SocketAddr,
        zone: &str,
        name: &str,
        key: TsigKey,
        node_id: &str,
    ) -> Result<Self, ConfigError> {
        let cfg = DnsConfig {
            server,
            zone: parse_name("zone", zone)?,
            name: parse_name("name", name)?,
            ttl_s: DEFAULT_TTL_S,
            key,
            node_id: node_id.to_string(),
            check_interval_ms: DEFAULT_CHECK_INTERVAL_MS,
            exchange_timeout_ms: DEFAULT_EXCHANGE_TIMEOUT_MS,
            backoff_min_ms: DEFAULT_BACKOFF_MIN_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            rejected_retry_ms: DEFAULT_REJECTED_RETRY_MS,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every field (call again after changing one).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.zone.zone_of(&self.name) || self.zone == self.name {
            return Err(ConfigError::NotInZone {
                name: self.name.to_ascii(),
                zone: self.zone.to_ascii(),
            });
        }
        if crate::message::stamp_name(&self.name).is_err() {
            return Err(ConfigError::BadName {
                key: "name",
                value: self.name.to_ascii(),
                reason: "too long to prepend the stamp label".into(),
            });
        }
        if !(1..=86_400).contains(&self.ttl_s) {
            return Err(ConfigError::BadTtl { ttl_s: self.ttl_s });
        }
        let id = &self.node_id;
        if id.is_empty() || id.len() > 63 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::BadNodeId(id.clone()));
        }
        let timings = [
            ("check_interval_ms", self.check_interval_ms),
            ("exchange_timeout_ms", self.exchange_timeout_ms),
            ("backoff_min_ms", self.backoff_min_ms),
            ("backoff_max_ms", self.backoff_max_ms),
            ("rejected_retry_ms", self.rejected_retry_ms),
        ];
        if let Some((key, _)) = timings.iter().find(|(_, v)| *v == 0 || *v > 600_000) {
            return Err(ConfigError::BadTiming(format!(
                "{key} must be in 1..=600000 ms"
            )));
        }
        if self.backoff_min_ms > self.backoff_max_ms {
            return Err(ConfigError::BadTiming(
                "backoff_min_ms > backoff_max_ms".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsig::TsigAlg;

    fn key() -> TsigKey {
        TsigKey::new("k", TsigAlg::HmacSha256, vec![1; 32])
    }

    #[test]
    fn defaults_and_checks() {
        let server = "10.0.0.53:53".parse().expect("addr");
        let cfg = DnsConfig::new(server, "site.example.", "api.site.example", key(), "edge-1")
            .expect("ok");
        assert_eq!(cfg.ttl_s, 5);
        assert!(cfg.name.is_fqdn());
        let e = DnsConfig::new(
            server,
            "site.example.",
            "api.other.example.",
            key(),
            "edge-1",
        )
        .expect_err("outside");
        assert!(matches!(e, ConfigError::NotInZone { .. }), "{e}");
        let e = DnsConfig::new(
            server,
            "site.example.",
            "api.site.example.",
            key(),
            "edge 1",
        )
        .expect_err("space");
        assert!(matches!(e, ConfigError::BadNodeId(_)));
        let e = DnsConfig::new(server, "site..example.", "api.site.example.", key(), "e")
            .expect_err("bad zone");
        assert!(e.to_string().contains("[ddns] zone"), "{e}");
        let mut c = cfg.clone();
        c.ttl_s = 0;
        assert_eq!(c.validate(), Err(ConfigError::BadTtl { ttl_s: 0 }));
        let mut c = cfg;
        c.backoff_min_ms = 10_000;
        assert!(c.validate().is_err());
    }
}
