//! Every key muster renders, with the upstream page it was checked against.
//!
//! A test per distribution renders every role (and both kubeadm API versions), collects the
//! keys of the parsed YAML (dotted paths below the document kind for kubeadm; list items add
//! no path segment), and fails if one is missing from the table — so a new key cannot land
//! without someone checking it against the documentation — or if a table row is no longer
//! rendered.

mod common;

use std::collections::BTreeSet;

use common::{parse_yaml, Fixture};
use muster_k8s::{render, Distribution, Role};
use serde_json::Value;

const K3S_SERVER: &str = "https://docs.k3s.io/cli/server";
const K3S_AGENT: &str = "https://docs.k3s.io/cli/agent";
const K3S_HA: &str = "https://docs.k3s.io/datastore/ha-embedded";

/// k3s `config.yaml` keys (file format: https://docs.k3s.io/installation/configuration — a key
/// per CLI flag without the leading dashes; lists for repeatable flags).
const K3S_KEYS: &[(&str, &str)] = &[
    // Server only: `--cluster-init` starts embedded etcd on the first server.
    ("cluster-init", K3S_HA),
    // Servers joining and agents: `--server` https://ENDPOINT:6443 (K3S_URL).
    ("server", K3S_AGENT),
    ("token", K3S_AGENT),
    ("node-name", K3S_AGENT),
    ("node-ip", K3S_AGENT),
    // Server only (listed on the server page, not the agent page).
    ("tls-san", K3S_SERVER),
    ("cluster-cidr", K3S_SERVER),
    ("service-cidr", K3S_SERVER),
    ("disable", K3S_SERVER),
    ("flannel-backend", K3S_SERVER),
    ("disable-network-policy", K3S_SERVER),
];

const RKE2_SERVER: &str = "https://docs.rke2.io/reference/server_config";
const RKE2_AGENT: &str = "https://docs.rke2.io/reference/linux_agent_config";

/// RKE2 `config.yaml` keys (https://docs.rke2.io/install/configuration; HA: the first server
/// sets `token` and `tls-san`, the others and agents `server: https://ENDPOINT:9345`,
/// https://docs.rke2.io/install/ha). RKE2 has no `cluster-init`: its CLI drops the k3s flag.
const RKE2_KEYS: &[(&str, &str)] = &[
    ("server", RKE2_AGENT),
    ("token", RKE2_AGENT),
    ("node-name", RKE2_AGENT),
    ("node-ip", RKE2_AGENT),
    // Server only.
    ("tls-san", RKE2_SERVER),
    ("cluster-cidr", RKE2_SERVER),
    ("service-cidr", RKE2_SERVER),
    // `cni: none` https://docs.rke2.io/networking/basic_network_options
    ("cni", RKE2_SERVER),
    // `disable: rke2-ingress-nginx` https://docs.rke2.io/networking/networking_services;
    // rke2-traefik: https://docs.rke2.io/reference/ingress_migration (default from v1.36).
    ("disable", RKE2_SERVER),
];

const V1BETA3: &str = "https://kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta3/";
const V1BETA4: &str = "https://kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta4/";
const JOIN: &str = "https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-join/";
const HA: &str =
    "https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/high-availability/";

/// kubeadm document keys, both API versions (v1beta4 changes `kubeletExtraArgs` to a list of
/// `{name, value}`: the `.name` / `.value` rows).
const KUBEADM_KEYS: &[(&str, &str)] = &[
    ("InitConfiguration.apiVersion", V1BETA3),
    ("InitConfiguration.kind", V1BETA3),
    ("InitConfiguration.bootstrapTokens", V1BETA3),
    ("InitConfiguration.bootstrapTokens.token", V1BETA3),
    ("InitConfiguration.bootstrapTokens.description", V1BETA3),
    ("InitConfiguration.bootstrapTokens.ttl", V1BETA3),
    ("InitConfiguration.bootstrapTokens.usages", V1BETA3),
    ("InitConfiguration.bootstrapTokens.groups", V1BETA3),
    // `--upload-certs` with a known key: https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/high-availability/
    ("InitConfiguration.certificateKey", HA),
    ("InitConfiguration.nodeRegistration", V1BETA3),
    ("InitConfiguration.nodeRegistration.name", V1BETA3),
    (
        "InitConfiguration.nodeRegistration.kubeletExtraArgs",
        V1BETA3,
    ),
    (
        "InitConfiguration.nodeRegistration.kubeletExtraArgs.node-ip",
        V1BETA3,
    ),
    (
        "InitConfiguration.nodeRegistration.kubeletExtraArgs.name",
        V1BETA4,
    ),
    (
        "InitConfiguration.nodeRegistration.kubeletExtraArgs.value",
        V1BETA4,
    ),
    ("InitConfiguration.localAPIEndpoint", V1BETA3),
    (
        "InitConfiguration.localAPIEndpoint.advertiseAddress",
        V1BETA3,
    ),
    ("InitConfiguration.localAPIEndpoint.bindPort", V1BETA3),
    ("ClusterConfiguration.apiVersion", V1BETA3),
    ("ClusterConfiguration.kind", V1BETA3),
    ("ClusterConfiguration.kubernetesVersion", V1BETA3),
    ("ClusterConfiguration.controlPlaneEndpoint", HA),
    ("ClusterConfiguration.networking", V1BETA3),
    ("ClusterConfiguration.networking.podSubnet", V1BETA3),
    ("ClusterConfiguration.networking.serviceSubnet", V1BETA3),
    ("ClusterConfiguration.apiServer", V1BETA3),
    ("ClusterConfiguration.apiServer.certSANs", V1BETA3),
    ("JoinConfiguration.apiVersion", V1BETA3),
    ("JoinConfiguration.kind", V1BETA3),
    ("JoinConfiguration.nodeRegistration", V1BETA3),
    ("JoinConfiguration.nodeRegistration.name", V1BETA3),
    (
        "JoinConfiguration.nodeRegistration.kubeletExtraArgs",
        V1BETA3,
    ),
    (
        "JoinConfiguration.nodeRegistration.kubeletExtraArgs.node-ip",
        V1BETA3,
    ),
    (
        "JoinConfiguration.nodeRegistration.kubeletExtraArgs.name",
        V1BETA4,
    ),
    (
        "JoinConfiguration.nodeRegistration.kubeletExtraArgs.value",
        V1BETA4,
    ),
    ("JoinConfiguration.discovery", V1BETA3),
    ("JoinConfiguration.discovery.bootstrapToken", JOIN),
    (
        "JoinConfiguration.discovery.bootstrapToken.apiServerEndpoint",
        JOIN,
    ),
    ("JoinConfiguration.discovery.bootstrapToken.token", JOIN),
    // `sha256:<hex>` of the CA's DER SubjectPublicKeyInfo: the join page's "Token-based
    // discovery with CA pinning".
    (
        "JoinConfiguration.discovery.bootstrapToken.caCertHashes",
        JOIN,
    ),
    ("JoinConfiguration.controlPlane", V1BETA3),
    ("JoinConfiguration.controlPlane.certificateKey", HA),
    ("JoinConfiguration.controlPlane.localAPIEndpoint", V1BETA3),
    (
        "JoinConfiguration.controlPlane.localAPIEndpoint.advertiseAddress",
        V1BETA3,
    ),
    (
        "JoinConfiguration.controlPlane.localAPIEndpoint.bindPort",
        V1BETA3,
    ),
];

/// The key paths of a document below `prefix`.
fn keys(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                keys(item, &path, out);
                out.insert(path);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| keys(i, prefix, out)),
        _ => {}
    }
}

fn rendered_keys(fixtures: &[Fixture]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in fixtures {
        let r = match render(&f.input()) {
            Ok(Some(r)) => r,
            other => panic!("render: {other:?}"),
        };
        for doc in parse_yaml(&r.contents) {
            match doc.get("kind").and_then(Value::as_str) {
                Some(kind) => keys(&doc, kind, &mut out),
                None => keys(&doc, "", &mut out),
            }
        }
    }
    out
}

fn check(table: &[(&str, &str)], rendered: &BTreeSet<String>) {
    let listed: BTreeSet<String> = table.iter().map(|(k, _)| (*k).to_owned()).collect();
    let unchecked: Vec<&String> = rendered.difference(&listed).collect();
    assert!(
        unchecked.is_empty(),
        "rendered keys not checked against upstream docs: {unchecked:?}"
    );
    let stale: Vec<&String> = listed.difference(rendered).collect();
    assert!(stale.is_empty(), "table rows no longer rendered: {stale:?}");
    for (key, url) in table {
        assert!(url.starts_with("https://"), "{key}: {url}");
    }
}

fn all_roles(d: Distribution, versions: &[&str]) -> Vec<Fixture> {
    let mut out = Vec::new();
    for v in versions {
        for role in [Role::Init, Role::ControlPlane, Role::Worker] {
            out.push(Fixture::new(d, role).version(v));
        }
    }
    out
}

#[test]
fn every_k3s_key_is_checked_against_the_k3s_docs() {
    check(
        K3S_KEYS,
        &rendered_keys(&all_roles(Distribution::K3s, &["v1.27.4+k3s1"])),
    );
}

#[test]
fn every_rke2_key_is_checked_against_the_rke2_docs() {
    check(
        RKE2_KEYS,
        &rendered_keys(&all_roles(Distribution::Rke2, &["v1.28.3+rke2r1"])),
    );
}

#[test]
fn every_kubeadm_key_is_checked_against_the_kubeadm_docs() {
    let fixtures = all_roles(Distribution::Kubeadm, &["v1.30.2", "v1.31.0"]);
    check(KUBEADM_KEYS, &rendered_keys(&fixtures));
}
