//! Renders a host's `muster.toml` exactly in the operator contract's shape, plus overrides.
//!
//! [`crate::site::Site::write_config`] fills an [`AgentConfig`] per host and applies the test's
//! overrides (dotted keys such as `"site.expected_nodes"`) before writing the file. Overrides may
//! add keys the base config lacks — that is how a test checks that unknown keys are refused.

use std::path::PathBuf;

use anyhow::{bail, Result};
use toml::{Table, Value};

/// One override: a dotted key path (`"network.bootstrap"`) and the TOML value to put there.
pub type Override = (String, Value);

/// Builds an override list from `(&str, impl Into<toml::Value>)` pairs.
///
/// ```
/// let o = muster_testbed::config::overrides([("site.expected_nodes", 4)]);
/// assert_eq!(o[0].0, "site.expected_nodes");
/// ```
pub fn overrides<K: Into<String>, V: Into<Value>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Vec<Override> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// The keys every deployment sets (DESIGN.md, "Operator contract").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// `[node] name`
    pub name: String,
    /// `[node] data_dir`
    pub data_dir: PathBuf,
    /// `[site] key_file`
    pub key_file: PathBuf,
    /// `[site] expected_nodes`
    pub expected_nodes: usize,
    /// `[site] control_plane_count`
    pub control_plane_count: usize,
    /// `[network] interface`
    pub interface: String,
    /// `[network] listen_port`
    pub listen_port: u16,
    /// `[network] bootstrap`: "ip:port" peers.
    pub bootstrap: Vec<String>,
    /// `[rpc] socket`
    pub socket: PathBuf,
}

impl AgentConfig {
    /// The config as a TOML table with sections `node`, `site`, `network`, `rpc`.
    pub fn to_table(&self) -> Table {
        let mut node = Table::new();
        node.insert("name".into(), self.name.clone().into());
        node.insert("data_dir".into(), path_value(&self.data_dir));
        let mut site = Table::new();
        site.insert("key_file".into(), path_value(&self.key_file));
        site.insert("expected_nodes".into(), count_value(self.expected_nodes));
        site.insert(
            "control_plane_count".into(),
            count_value(self.control_plane_count),
        );
        let mut network = Table::new();
        network.insert("interface".into(), self.interface.clone().into());
        network.insert(
            "listen_port".into(),
            Value::Integer(i64::from(self.listen_port)),
        );
        let peers = self.bootstrap.iter().cloned().map(Value::String).collect();
        network.insert("bootstrap".into(), Value::Array(peers));
        let mut rpc = Table::new();
        rpc.insert("socket".into(), path_value(&self.socket));

        let mut root = Table::new();
        root.insert("node".into(), Value::Table(node));
        root.insert("site".into(), Value::Table(site));
        root.insert("network".into(), Value::Table(network));
        root.insert("rpc".into(), Value::Table(rpc));
        root
    }

    /// Renders the config with `overrides` applied in order.
    pub fn render(&self, overrides: &[Override]) -> Result<String> {
        let mut table = self.to_table();
        for (key, value) in overrides {
            apply_override(&mut table, key, value.clone())?;
        }
        Ok(toml::to_string(&table)?)
    }
}

fn path_value(path: &std::path::Path) -> Value {
    Value::String(path.to_string_lossy().into_owned())
}

fn count_value(n: usize) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Sets `dotted` (e.g. `"vip.address"`) in `table`, creating missing tables on the way.
pub fn apply_override(table: &mut Table, dotted: &str, value: Value) -> Result<()> {
    let parts: Vec<&str> = dotted.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("override key {dotted:?} has an empty segment");
    }
    let (last, path) = parts.split_last().expect("split always yields one part");
    let mut current = table;
    for part in path {
        let entry = current
            .entry((*part).to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        match entry {
            Value::Table(t) => current = t,
            other => bail!(
                "override {dotted:?}: {part:?} is a {}, not a table",
                other.type_str()
            ),
        }
    }
    current.insert((*last).to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AgentConfig {
        AgentConfig {
            name: "h0".into(),
            data_dir: "/tmp/x/h0/data".into(),
            key_file: "/tmp/x/site.key".into(),
            expected_nodes: 3,
            control_plane_count: 3,
            interface: "eth0".into(),
            listen_port: 7946,
            bootstrap: vec!["10.77.0.11:7946".into(), "10.77.0.12:7946".into()],
            socket: "/tmp/x/h0/muster.sock".into(),
        }
    }

    #[test]
    fn renders_contract_shape() {
        let text = sample().render(&[]).unwrap();
        let parsed: Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["node"]["name"].as_str(), Some("h0"));
        assert_eq!(parsed["node"]["data_dir"].as_str(), Some("/tmp/x/h0/data"));
        assert_eq!(parsed["site"]["key_file"].as_str(), Some("/tmp/x/site.key"));
        assert_eq!(parsed["site"]["expected_nodes"].as_integer(), Some(3));
        assert_eq!(parsed["site"]["control_plane_count"].as_integer(), Some(3));
        assert_eq!(parsed["network"]["interface"].as_str(), Some("eth0"));
        assert_eq!(parsed["network"]["listen_port"].as_integer(), Some(7946));
        let peers: Vec<_> = parsed["network"]["bootstrap"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(peers, ["10.77.0.11:7946", "10.77.0.12:7946"]);
        assert_eq!(
            parsed["rpc"]["socket"].as_str(),
            Some("/tmp/x/h0/muster.sock")
        );
        let sections: Vec<_> = parsed.keys().map(String::as_str).collect();
        assert_eq!(
            sections.len(),
            4,
            "only the contract's sections: {sections:?}"
        );
    }

    #[test]
    fn overrides_replace_and_add() {
        let o = overrides([
            ("site.expected_nodes", Value::Integer(5)),
            ("vip.address", Value::from("10.77.0.100/24")),
            ("network.bootstrap", Value::Array(vec![])),
        ]);
        let parsed: Table = toml::from_str(&sample().render(&o).unwrap()).unwrap();
        assert_eq!(parsed["site"]["expected_nodes"].as_integer(), Some(5));
        assert_eq!(parsed["vip"]["address"].as_str(), Some("10.77.0.100/24"));
        assert!(parsed["network"]["bootstrap"]
            .as_array()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_override_paths_are_errors() {
        assert!(sample().render(&overrides([("node.name.x", 1)])).is_err());
        assert!(sample().render(&overrides([("site..x", 1)])).is_err());
        assert!(sample().render(&overrides([("", 1)])).is_err());
    }
}
