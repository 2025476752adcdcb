//! The files an operator writes or a host keeps: the site key (`muster_net::parse_site_key`),
//! `identity.key` (`identity::load_for_store`) and `muster.toml` (`config::Config::parse`), the
//! last two compiled from the agent's source (`agent.rs`).
//!
//! Invariants: a site key that parses formats back to itself, and an error never echoes the key
//! line; an identity file is taken only if it is an ed25519 key (then its member passes the
//! continuity check and another identity does not), is never replaced or created over when it
//! does not load, and loads the same twice; a config error names the file, and a config that
//! parses is within the documented ranges. Config inputs whose `network.bootstrap` or
//! `ddns.server` hold names rather than `address:port` are skipped: resolving them is a DNS
//! query per input (slow, and not muster's code).

use std::net::SocketAddr;
use std::path::Path;

use muster_core::node_id_from_public_key;
use muster_proto::{ClusterState, Member};

use crate::agent::config::Config;
use crate::agent::identity;

/// A site key file: parses, or fails without echoing the key line.
pub fn site_key_parse(data: &[u8]) {
    // The agent reads the file with `read_to_string`: only UTF-8 reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match muster_net::parse_site_key(text) {
        Ok(key) => {
            let again = muster_net::parse_site_key(&muster_net::format_site_key(&key));
            assert_eq!(again.ok(), Some(key), "a parsed key formats back to itself");
        }
        Err(e) => {
            let message = e.to_string();
            // Key material: any line of 16 or more hex digits.
            let secret = text
                .lines()
                .map(str::trim)
                .filter(|l| l.len() >= 16 && l.bytes().all(|b| b.is_ascii_hexdigit()));
            for line in secret {
                assert!(
                    !message.contains(line),
                    "a site key error echoes key material: {message}"
                );
            }
        }
    }
}

fn member(pk: &[u8; 32], name: &str) -> Member {
    Member {
        id: node_id_from_public_key(pk),
        name: name.into(),
        public_key: pk.to_vec(),
        ..Default::default()
    }
}

/// An `identity.key` file: loads as an ed25519 identity or is refused, and is never replaced.
pub fn identity_load(data: &[u8]) {
    let dir = &crate::scratch::empty_dir();
    let path = dir.join(identity::IDENTITY_FILE);
    std::fs::write(&path, data).expect("scratch file can be written");
    let cfg = Path::new("/etc/muster/muster.toml");
    let loaded = identity::load_for_store(dir, cfg, "h0", 0, &[]);
    assert_eq!(
        std::fs::read(&path).ok().as_deref(),
        Some(data),
        "loading never rewrites identity.key"
    );
    let key = match loaded {
        Ok((key, _created)) => key,
        Err(e) => {
            let message = format!("{e:#}");
            assert!(
                message.contains(&*path.to_string_lossy()),
                "an identity error names the file: {message}"
            );
            return;
        }
    };
    let pk = identity::public_key(&key).expect("a loaded identity is ed25519");
    let other = [pk[0] ^ 0xff; 32];
    let state = ClusterState {
        cluster_id: 42,
        members: vec![member(&pk, "h0"), member(&other, "h1")],
        ..Default::default()
    };
    let data_of = muster_core::state::encode_state(&state);
    let (again, _) = identity::load_for_store(dir, cfg, "h0", 9, &data_of)
        .expect("the store's own member identity loads");
    assert_eq!(
        again.public(),
        key.public(),
        "the same file loads the same key"
    );
    let foreign = ClusterState {
        members: vec![member(&other, "h1")],
        ..state
    };
    let refused = identity::check_continuity(dir, cfg, "h0", 9, &foreign, Some(&pk));
    assert!(
        refused.is_err(),
        "an identity the cluster does not list is refused"
    );
}

/// Whether resolving the config's peer addresses would need DNS.
fn needs_dns(text: &str) -> bool {
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    let named = |v: &toml::Value| v.as_str().is_some_and(|s| s.parse::<SocketAddr>().is_err());
    let bootstrap = table
        .get("network")
        .and_then(|n| n.get("bootstrap"))
        .and_then(|b| b.as_array())
        .is_some_and(|entries| entries.iter().any(named));
    let ddns = table
        .get("ddns")
        .and_then(|d| d.get("server"))
        .is_some_and(named);
    bootstrap || ddns
}

/// A `muster.toml`: parses into a config within the documented ranges, or fails naming the file.
pub fn config_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if needs_dns(text) {
        return;
    }
    let path = Path::new("/etc/muster/muster.toml");
    match Config::parse(path, text) {
        Ok(c) => {
            assert!(
                (1..=1000).contains(&c.expected_nodes),
                "site.expected_nodes"
            );
            assert!(
                [1, 3, 5].contains(&c.control_plane_count),
                "site.control_plane_count"
            );
            assert!(c.listen_port >= 1, "network.listen_port");
            assert!(
                (std::time::Duration::from_millis(5)..=std::time::Duration::from_secs(1))
                    .contains(&c.tick),
                "timing.tick"
            );
            assert!(
                (3..=100).contains(&c.election_ticks),
                "timing.election_ticks"
            );
            assert!(
                c.heartbeat_ticks >= 1 && c.heartbeat_ticks * 2 <= c.election_ticks,
                "timing.heartbeat_ticks"
            );
            assert!(!c.name.trim().is_empty(), "node.name");
            assert!(c.mdns || !c.bootstrap.is_empty(), "a way to find peers");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.starts_with("config /etc/muster/muster.toml: "),
                "a config error names the file: {message}"
            );
        }
    }
}
