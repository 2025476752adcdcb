//! The typed view of `muster status --json` that tests and the benchmark assert on.
//!
//! [`Status::from_json`] checks the operator contract's shape (16-hex-digit ids, required
//! fields) so a malformed status fails loudly; `vip` is typed as [`VipStatus`]; fields the
//! contract adds later (`dns`, `plan`) are ignored here and stay readable through the raw
//! `serde_json::Value`.

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::names::is_node_id;

/// One entry of `members`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Member {
    /// Node id (16 hex digits).
    pub id: String,
    /// Node name from its config.
    #[serde(default)]
    pub name: Option<String>,
    /// Address the member is reached at, as the agent prints it.
    #[serde(default)]
    pub address: Option<String>,
    /// Raft voter (control plane) or learner (worker).
    pub voter: bool,
    /// Whether the local node currently reaches it.
    #[serde(default)]
    pub reachable: Option<bool>,
}

/// The `vip` object: the VIP, who holds it, and this host's lease.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VipStatus {
    /// The configured address(es), e.g. "10.77.0.100/24" or "10.77.0.100/24,fd77::100/64".
    pub address: String,
    /// Node id of the holder as this host knows it; `None` when nobody holds it.
    pub holder_id: Option<String>,
    /// Whether this host holds it (and the address is on its interface).
    pub held_here: bool,
    /// Lease left on this host, in ms (0 or absent when not held here).
    #[serde(default)]
    pub lease_left_ms: Option<u64>,
    /// On a leader that does not hold the VIP: why not.
    #[serde(default)]
    pub held_back: Option<String>,
}

/// One host's view, as printed by `muster status --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// This node's id (16 hex digits).
    pub node_id: String,
    /// This node's name.
    pub node_name: String,
    /// Raft group id; `None` before joining.
    pub cluster_id: Option<String>,
    /// Current leader; `None` if none is known.
    pub leader_id: Option<String>,
    /// Raft term.
    pub term: u64,
    /// Raft commit index.
    pub commit_index: u64,
    /// The group's members as this node sees them.
    #[serde(default)]
    pub members: Vec<Member>,
    /// "discovering" | "joining" | "member".
    #[serde(default)]
    pub phase: Option<String>,
    /// Connection attempts refused for not holding the site key.
    #[serde(default)]
    pub rejected_connections: Option<u64>,
    /// Peers with an established, authenticated connection.
    #[serde(default)]
    pub peers_connected: Option<u64>,
    /// The VIP; `None` when the site has no `[vip]`.
    #[serde(default)]
    pub vip: Option<VipStatus>,
}

impl Status {
    /// Parses and validates one status object.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let status: Status = serde_json::from_value(value.clone()).with_context(|| {
            format!("status JSON does not match the operator contract: {value}")
        })?;
        status.validate()?;
        Ok(status)
    }

    fn validate(&self) -> Result<()> {
        check_id("node_id", &self.node_id)?;
        if let Some(id) = &self.cluster_id {
            check_id("cluster_id", id)?;
        }
        if let Some(id) = &self.leader_id {
            check_id("leader_id", id)?;
        }
        for m in &self.members {
            check_id("members[].id", &m.id)?;
        }
        if let Some(id) = self.vip.as_ref().and_then(|v| v.holder_id.as_ref()) {
            check_id("vip.holder_id", id)?;
        }
        Ok(())
    }

    /// Ids of all members.
    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.id.as_str())
    }

    /// Number of voting members.
    pub fn voter_count(&self) -> usize {
        self.members.iter().filter(|m| m.voter).count()
    }

    /// A one-line summary for progress output and error messages.
    pub fn summary(&self) -> String {
        let vip = match &self.vip {
            None => String::new(),
            Some(v) => format!(
                " vip_holder={} held_here={} lease_left_ms={}",
                v.holder_id.as_deref().unwrap_or("-"),
                v.held_here,
                opt(v.lease_left_ms)
            ),
        };
        format!(
            "{} {} phase={} cluster={} leader={} term={} commit={} members={} voters={} peers={} \
             rejected={}{vip}",
            self.node_name,
            self.node_id,
            self.phase.as_deref().unwrap_or("?"),
            self.cluster_id.as_deref().unwrap_or("-"),
            self.leader_id.as_deref().unwrap_or("-"),
            self.term,
            self.commit_index,
            self.members.len(),
            self.voter_count(),
            opt(self.peers_connected),
            opt(self.rejected_connections),
        )
    }
}

fn opt(n: Option<u64>) -> String {
    n.map_or_else(|| "?".into(), |n| n.to_string())
}

fn check_id(field: &str, id: &str) -> Result<()> {
    if !is_node_id(id) {
        bail!("status field {field} = {id:?} is not 16 hex digits");
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn sample(
        node: &str,
        leader: Option<&str>,
        members: &[(&str, bool)],
    ) -> serde_json::Value {
        json!({
            "node_id": node, "node_name": "h0", "cluster_id": "c0c0c0c0c0c0c0c0",
            "leader_id": leader, "term": 2, "commit_index": 7,
            "members": members.iter().map(|(id, voter)| json!({
                "id": id, "name": "x", "address": "10.77.0.10:7946", "voter": voter,
                "reachable": true
            })).collect::<Vec<_>>(),
            "phase": "member", "rejected_connections": 0, "peers_connected": 2,
            "vip": null
        })
    }

    #[test]
    fn parses_contract_object() {
        let a = "aaaaaaaaaaaaaaaa";
        let s = Status::from_json(&sample(a, Some(a), &[(a, true)])).unwrap();
        assert_eq!(s.node_id, a);
        assert_eq!(s.voter_count(), 1);
        assert_eq!(s.phase.as_deref(), Some("member"));
        assert!(s.summary().contains("phase=member"));
    }

    #[test]
    fn extra_fields_are_optional() {
        let v = json!({"node_id": "0123456789abcdef", "node_name": "h1", "cluster_id": null,
                       "leader_id": null, "term": 0, "commit_index": 0, "members": []});
        let s = Status::from_json(&v).unwrap();
        assert_eq!(s.cluster_id, None);
        assert_eq!(s.rejected_connections, None);
    }

    #[test]
    fn vip_object_is_typed() {
        let a = "aaaaaaaaaaaaaaaa";
        let mut v = sample(a, Some(a), &[(a, true)]);
        assert_eq!(Status::from_json(&v).unwrap().vip, None);
        v["vip"] = json!({"address": "10.77.0.100/24", "holder_id": a, "held_here": true,
                          "lease_left_ms": 350});
        let vip = Status::from_json(&v).unwrap().vip.unwrap();
        assert_eq!(vip.holder_id.as_deref(), Some(a));
        assert!(vip.held_here);
        assert_eq!(vip.lease_left_ms, Some(350));
        v["vip"]["holder_id"] = json!("nope");
        assert!(Status::from_json(&v).is_err());
    }

    #[test]
    fn malformed_ids_are_rejected() {
        let a = "aaaaaaaaaaaaaaaa";
        assert!(Status::from_json(&sample("short", Some(a), &[(a, true)])).is_err());
        assert!(Status::from_json(&sample(a, Some("zz"), &[(a, true)])).is_err());
        assert!(Status::from_json(&sample(a, Some(a), &[("nothex!nothex!00", true)])).is_err());
        assert!(Status::from_json(&json!({"node_id": a})).is_err());
    }
}
