//! Shared test fixtures: an owned [`Fixture`] that lends a `RenderInput`, the golden cases, and
//! parsing rendered YAML back (with `yaml-rust2`) into `serde_json::Value` for comparison.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use muster_k8s::{Distribution, Proxy, RenderInput, Role};
use serde_json::{Map, Value};

/// Distinctive secret values: tests check they never leak into Debug output or errors.
pub const TOKEN: &str = "K10secret-join-token-7f3a::server:5e1b9c";
pub const BOOTSTRAP_TOKEN: &str = "q7w3zx.k2m9p4r8t6v1y5b3";
pub const CERTIFICATE_KEY: &str =
    "9f2c4e6a8b0d1f3e5c7a9b1d3f5e7c9a0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d0f";
pub const CA_CERT_HASH: &str =
    "sha256:4c1f0e9d8b7a6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e";

/// Everything a `RenderInput` borrows, owned.
#[derive(Clone)]
pub struct Fixture {
    pub distribution: Distribution,
    pub version: String,
    pub role: Role,
    pub node_name: String,
    pub node_ip: IpAddr,
    pub endpoint: String,
    pub init_ip: Option<IpAddr>,
    pub secrets: BTreeMap<String, String>,
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub proxy: Option<Proxy>,
    pub ca_files: Vec<PathBuf>,
    pub extra: Map<String, Value>,
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

impl Fixture {
    /// A host of a three-host site behind the VIP 10.0.0.100; the init host is 10.0.0.11.
    pub fn new(distribution: Distribution, role: Role) -> Self {
        let (version, secrets): (&str, &[(&str, &str)]) = match distribution {
            Distribution::K3s => ("v1.27.4+k3s1", &[("TOKEN", TOKEN)]),
            Distribution::Rke2 => ("v1.28.3+rke2r1", &[("TOKEN", TOKEN)]),
            _ => (
                "v1.30.2",
                &[
                    ("BOOTSTRAP_TOKEN", BOOTSTRAP_TOKEN),
                    ("CERTIFICATE_KEY", CERTIFICATE_KEY),
                    ("CA_CERT_HASH", CA_CERT_HASH),
                ],
            ),
        };
        let (node_name, node_ip) = match role {
            Role::Init => ("edge-1", "10.0.0.11"),
            Role::ControlPlane => ("edge-2", "10.0.0.12"),
            Role::Worker => ("edge-4", "10.0.0.14"),
        };
        let (cluster, service) = distribution.default_cidrs().unwrap_or(("", ""));
        Fixture {
            distribution,
            version: version.to_owned(),
            role,
            node_name: node_name.to_owned(),
            node_ip: ip(node_ip),
            endpoint: "10.0.0.100".to_owned(),
            init_ip: Some(ip("10.0.0.11")),
            secrets: secrets
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            cluster_cidr: cluster.to_owned(),
            service_cidr: service.to_owned(),
            proxy: None,
            ca_files: Vec::new(),
            extra: Map::new(),
        }
    }

    pub fn version(mut self, v: &str) -> Self {
        self.version = v.to_owned();
        self
    }

    pub fn with_proxy(mut self) -> Self {
        self.proxy = Some(Proxy {
            http_proxy: Some("http://proxy.site.example:3128".into()),
            https_proxy: Some("http://proxy.site.example:3128".into()),
            no_proxy: vec!["registry.site.example".into()],
        });
        self.ca_files = vec![PathBuf::from("/etc/muster/ca/registry.pem")];
        self
    }

    pub fn extra(mut self, extra: Value) -> Self {
        if let Value::Object(map) = extra {
            self.extra = map;
        }
        self
    }

    pub fn input(&self) -> RenderInput<'_> {
        RenderInput {
            distribution: self.distribution,
            version: &self.version,
            role: self.role,
            node_name: &self.node_name,
            node_ip: self.node_ip,
            endpoint: &self.endpoint,
            init_ip: self.init_ip,
            secrets: &self.secrets,
            cluster_cidr: &self.cluster_cidr,
            service_cidr: &self.service_cidr,
            proxy: self.proxy.as_ref(),
            ca_files: &self.ca_files,
            extra: &self.extra,
        }
    }
}

/// The golden cases: every distribution × role, proxy variants, kubeadm v1beta3 and v1beta4,
/// an IPv6 site and operator overrides.
pub fn golden_cases() -> Vec<(&'static str, Fixture)> {
    use Distribution::*;
    use Role::*;
    let mut cases = Vec::new();
    for (d, dname) in [(K3s, "k3s"), (Rke2, "rke2")] {
        for (r, rname) in [
            (Init, "init"),
            (ControlPlane, "control-plane"),
            (Worker, "worker"),
        ] {
            let name: &'static str = Box::leak(format!("{dname}-{rname}").into_boxed_str());
            cases.push((name, Fixture::new(d, r)));
        }
        let name: &'static str = Box::leak(format!("{dname}-worker-proxy").into_boxed_str());
        cases.push((name, Fixture::new(d, Worker).with_proxy()));
    }
    for (v, vname) in [("v1.30.2", "v1beta3"), ("v1.31.0", "v1beta4")] {
        for (r, rname) in [
            (Init, "init"),
            (ControlPlane, "control-plane"),
            (Worker, "worker"),
        ] {
            let name: &'static str = Box::leak(format!("kubeadm-{vname}-{rname}").into_boxed_str());
            cases.push((name, Fixture::new(Kubeadm, r).version(v)));
        }
    }
    cases.push((
        "kubeadm-v1beta4-init-proxy",
        Fixture::new(Kubeadm, Init).version("v1.31.0").with_proxy(),
    ));
    let mut v6 = Fixture::new(K3s, ControlPlane);
    v6.endpoint = "fd00::100".into();
    v6.node_ip = ip("fd00::12");
    v6.init_ip = Some(ip("fd00::11"));
    v6.cluster_cidr = "fd42::/56".into();
    v6.service_cidr = "fd43::/112".into();
    cases.push(("k3s-control-plane-ipv6", v6));
    cases.push((
        "k3s-init-extra",
        Fixture::new(K3s, Init).extra(serde_json::json!({
            "disable": ["servicelb"],
            "flannel-backend": "vxlan",
            "tls-san": ["api.site.example"],
            "write-kubeconfig-mode": "0600",
        })),
    ));
    cases.push((
        "kubeadm-v1beta4-init-extra",
        Fixture::new(Kubeadm, Init)
            .version("v1.31.0")
            .extra(serde_json::json!({
                "ClusterConfiguration": {"apiServer": {"certSANs": ["api.site.example"]}},
                "KubeletConfiguration": {"cgroupDriver": "systemd"},
            })),
    ));
    cases
}

/// Parses a YAML stream into one JSON value per document.
pub fn parse_yaml(text: &str) -> Vec<Value> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).expect("rendered YAML parses");
    docs.iter().map(to_json).collect()
}

fn to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(r) => serde_json::json!(r.parse::<f64>().expect("a real")),
        Yaml::Integer(i) => serde_json::json!(i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| match k {
                    Yaml::String(k) => (k.clone(), to_json(v)),
                    other => panic!("non-string key {other:?}"),
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML node {other:?}"),
    }
}
