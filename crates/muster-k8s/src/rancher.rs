//! k3s and RKE2 `config.yaml`: one flat mapping, a key per CLI flag without its dashes.
//!
//! Both read `/etc/rancher/{k3s,rke2}/config.yaml` for servers and agents alike
//! (docs.k3s.io/installation/configuration, docs.rke2.io/install/configuration). What differs:
//! k3s starts embedded etcd on the init server with `cluster-init: true` and serves joins on
//! the API port 6443; RKE2 always runs etcd (its CLI drops k3s's `cluster-init`, which it would
//! skip with a warning), so its init server just has no `server:`, and joins go to the
//! supervisor port 9345. The site defaults (no bundled ingress, load balancer, storage, metrics
//! server or CNI — the platform team deploys its own) are ordinary keys an override replaces.

use serde_json::{json, Map, Value};

use crate::extra::{merge_flat, Rules};
use crate::net::{bare_host, server_url};
use crate::{secret, yaml, Distribution, RenderError, RenderInput, Role, SECRET_TOKEN};

/// k3s packaged components disabled by default (docs.k3s.io/cli/server `--disable`).
pub const K3S_DISABLE: &[&str] = &["traefik", "servicelb", "local-storage", "metrics-server"];
/// RKE2 charts disabled by default: both ingress controllers (ingress-nginx, and traefik, the
/// default for new clusters from v1.36) and metrics-server. A `disable` entry that names no
/// chart of the version is ignored by RKE2.
pub const RKE2_DISABLE: &[&str] = &["rke2-ingress-nginx", "rke2-traefik", "rke2-metrics-server"];

/// Keys muster sets for cluster formation; an override is an error.
const RESERVED: &[&str] = &["cluster-init", "server", "token", "node-name", "node-ip"];
/// Keys only servers accept: left out of agent configs, also when an override sets them.
const SERVER_ONLY: &[&str] = &[
    "cluster-init",
    "tls-san",
    "cluster-cidr",
    "service-cidr",
    "cluster-dns",
    "cluster-domain",
    "disable",
    "flannel-backend",
    "disable-network-policy",
    "cni",
    "ingress-controller",
    "kube-apiserver-arg",
    "kube-controller-manager-arg",
    "kube-scheduler-arg",
    "etcd-arg",
];
/// Lists an override extends: the certificate SANs must keep the endpoint.
const ADDITIVE: &[&str] = &["tls-san"];

/// Renders `config.yaml` for k3s or RKE2.
pub fn render(input: &RenderInput) -> Result<String, RenderError> {
    let k3s = input.distribution == Distribution::K3s;
    let token = secret(input, SECRET_TOKEN)?;
    let server = input.role.is_server();
    let mut map = Map::new();
    match input.role {
        Role::Init if k3s => {
            map.insert("cluster-init".into(), json!(true));
        }
        Role::Init => {}
        Role::ControlPlane | Role::Worker => {
            let url = server_url(input.distribution, input.endpoint);
            map.insert("server".into(), json!(url));
        }
    }
    map.insert("token".into(), json!(token));
    map.insert("node-name".into(), json!(input.node_name));
    map.insert("node-ip".into(), json!(input.node_ip.to_string()));
    if server {
        let mut sans = vec![bare_host(input.endpoint).to_owned()];
        let ip = input.node_ip.to_string();
        if !sans.contains(&ip) {
            sans.push(ip);
        }
        map.insert("tls-san".into(), json!(sans));
        map.insert("cluster-cidr".into(), json!(input.cluster_cidr));
        map.insert("service-cidr".into(), json!(input.service_cidr));
        if k3s {
            map.insert("disable".into(), json!(K3S_DISABLE));
            map.insert("flannel-backend".into(), json!("none"));
            map.insert("disable-network-policy".into(), json!(true));
        } else {
            map.insert("cni".into(), json!("none"));
            map.insert("disable".into(), json!(RKE2_DISABLE));
        }
    }
    let rules = Rules {
        reserved: RESERVED,
        additive: ADDITIVE,
        server_only: SERVER_ONLY,
    };
    merge_flat(&mut map, input.extra, server, &rules)?;
    let mut out = format!(
        "# {} config.yaml rendered by muster for {} ({}); muster rewrites it on every install step\n",
        input.distribution,
        input.node_name,
        input.role.name()
    );
    out.push_str(&yaml::document(&Value::Object(map)));
    Ok(out)
}
