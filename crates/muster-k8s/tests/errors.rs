//! What a bad input is told, and that no secret ever travels in Debug output or an error.

mod common;

use std::path::PathBuf;

use common::{Fixture, BOOTSTRAP_TOKEN, CA_CERT_HASH, CERTIFICATE_KEY, TOKEN};
use muster_k8s::{render, Distribution, RenderError, Role};
use serde_json::json;

const SECRETS: [&str; 4] = [TOKEN, BOOTSTRAP_TOKEN, CERTIFICATE_KEY, CA_CERT_HASH];

fn error(f: &Fixture) -> RenderError {
    match render(&f.input()) {
        Err(e) => e,
        Ok(r) => panic!("expected an error, rendered {r:?}"),
    }
}

fn assert_no_secret(text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "a secret leaked into: {text}");
        // Also no recognisable half of one.
        assert!(
            !text.contains(&s[..s.len() / 2]),
            "part of a secret leaked into: {text}"
        );
    }
}

#[test]
fn debug_of_inputs_and_renders_hides_secrets_and_proxy_credentials() {
    for d in [Distribution::K3s, Distribution::Rke2, Distribution::Kubeadm] {
        for role in [Role::Init, Role::ControlPlane, Role::Worker] {
            let mut f = Fixture::new(d, role).with_proxy();
            if let Some(p) = f.proxy.as_mut() {
                p.http_proxy = Some("http://proxyuser:hunter2@proxy:3128".into());
            }
            let input = f.input();
            let debug = format!("{input:?} {:?}", f.proxy);
            assert_no_secret(&debug);
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(debug.contains("TOKEN"), "secrets are named: {debug}");
            let rendered = format!("{:?}", render(&input));
            assert_no_secret(&rendered);
            assert!(!rendered.contains("hunter2"), "{rendered}");
        }
    }
}

#[test]
fn missing_secrets_are_named() {
    let cases = [
        (
            Distribution::K3s,
            Role::Worker,
            "TOKEN",
            "secret TOKEN is missing (needed by k3s for this role)",
        ),
        (
            Distribution::Rke2,
            Role::Init,
            "TOKEN",
            "secret TOKEN is missing (needed by rke2 for this role)",
        ),
        (
            Distribution::Kubeadm,
            Role::Init,
            "BOOTSTRAP_TOKEN",
            "secret BOOTSTRAP_TOKEN is missing (needed by kubeadm for this role)",
        ),
        (
            Distribution::Kubeadm,
            Role::Init,
            "CERTIFICATE_KEY",
            "secret CERTIFICATE_KEY is missing (needed by kubeadm for this role)",
        ),
        (
            Distribution::Kubeadm,
            Role::ControlPlane,
            "CERTIFICATE_KEY",
            "secret CERTIFICATE_KEY is missing (needed by kubeadm for this role)",
        ),
        (
            Distribution::Kubeadm,
            Role::Worker,
            "CA_CERT_HASH",
            "secret CA_CERT_HASH is missing (needed by kubeadm for this role)",
        ),
    ];
    for (d, role, name, want) in cases {
        let mut f = Fixture::new(d, role);
        f.secrets.remove(name);
        assert_eq!(error(&f).to_string(), want);
        f.secrets.insert(name.into(), String::new());
        assert_eq!(
            error(&f).to_string(),
            want,
            "an empty secret is a missing one"
        );
    }
}

#[test]
fn malformed_kubeadm_secrets_are_refused_without_their_value() {
    for (name, bad) in [
        ("BOOTSTRAP_TOKEN", "Q7W3ZX.K2M9P4R8T6V1Y5B3"),
        ("CERTIFICATE_KEY", "9f2c4e6a8b0d1f3e"),
        (
            "CA_CERT_HASH",
            "4c1f0e9d8b7a6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e",
        ),
    ] {
        let mut f = Fixture::new(Distribution::Kubeadm, Role::ControlPlane);
        f.secrets.insert(name.into(), bad.into());
        let e = error(&f);
        let text = format!("{e} {e:?}");
        assert!(
            text.starts_with(&format!("secret {name} is malformed: expected")),
            "{text}"
        );
        assert!(!text.contains(bad), "{text}");
        assert_no_secret(&text);
    }
}

#[test]
fn bad_and_old_versions_are_named() {
    let f = Fixture::new(Distribution::Kubeadm, Role::Init);
    assert_eq!(
        error(&f.clone().version("v1.23.17")).to_string(),
        "kubernetes version \"v1.23.17\" is older than 1.24, the oldest kubeadm version muster renders for"
    );
    assert_eq!(
        error(&f.clone().version("latest")).to_string(),
        "kubernetes version \"latest\" is not understood: MAJOR, MINOR and PATCH must be decimal numbers"
    );
    assert_eq!(
        error(&Fixture::new(Distribution::Rke2, Role::Init).version("v1.27.4+k3s1")).to_string(),
        "kubernetes version \"v1.27.4+k3s1\" is a k3s release, not a rke2 one"
    );
    // The seed's distributions are supported from 1.24 on, k3s and RKE2 included.
    assert_eq!(
        error(&Fixture::new(Distribution::K3s, Role::Worker).version("v1.23.6+k3s1")).to_string(),
        "kubernetes version \"v1.23.6+k3s1\" is older than 1.24, the oldest k3s version muster renders for"
    );
    assert_no_secret(&format!("{:?}", error(&f.version("v1.2"))));
}

#[test]
fn bad_addresses_names_and_ca_files_are_named() {
    let mut f = Fixture::new(Distribution::K3s, Role::ControlPlane);
    f.endpoint = "10.0.0.100:6443".into();
    assert_eq!(
        error(&f).to_string(),
        "API endpoint \"10.0.0.100:6443\" is not a host name or address: a port or a malformed IPv6 address (give the host only)"
    );
    let mut f = Fixture::new(Distribution::K3s, Role::Init);
    f.cluster_cidr = "10.42.0.0".into();
    assert_eq!(
        error(&f).to_string(),
        "cluster_cidr \"10.42.0.0\" is not a CIDR (address/prefix, comma-separated for dual stack)"
    );
    let mut f = Fixture::new(Distribution::K3s, Role::Init);
    f.node_name = "Edge_1".into();
    assert!(error(&f)
        .to_string()
        .starts_with("node name \"Edge_1\" is not a valid"));
    let mut f = Fixture::new(Distribution::K3s, Role::Init);
    f.ca_files = vec![PathBuf::from("ca.pem")];
    assert_eq!(
        error(&f).to_string(),
        "CA file \"ca.pem\" must be an absolute path without ':'"
    );
}

#[test]
fn overrides_of_reserved_keys_or_of_the_wrong_type_are_refused() {
    let k3s = |extra| error(&Fixture::new(Distribution::K3s, Role::Init).extra(extra)).to_string();
    assert_eq!(
        k3s(json!({"token": "mine"})),
        "extra key \"token\" is set by muster and cannot be overridden"
    );
    assert_eq!(
        k3s(json!({"disable-network-policy": "yes"})),
        "extra key \"disable-network-policy\" must be a boolean"
    );
    assert_eq!(
        k3s(json!({"kubelet": {"x": 1}})),
        "extra key \"kubelet\" must be a string, number, boolean or list of them (the config file is flat)"
    );
    let kubeadm =
        |role, extra| error(&Fixture::new(Distribution::Kubeadm, role).extra(extra)).to_string();
    assert_eq!(
        kubeadm(
            Role::Worker,
            json!({"JoinConfiguration": {"controlPlane": {}}})
        ),
        "extra key \"JoinConfiguration.controlPlane\" is set by muster and cannot be overridden"
    );
    assert_eq!(
        kubeadm(
            Role::Init,
            json!({"ClusterConfiguration": {"networking": "flat"}})
        ),
        "extra key \"ClusterConfiguration.networking\" must be a mapping"
    );
    assert_eq!(
        kubeadm(Role::Worker, json!({"ClusterConfiguration": {"controlPlaneEndpoint": "x:6443"}})),
        "extra key \"ClusterConfiguration.controlPlaneEndpoint\" is set by muster and cannot be overridden",
        "checked on every host, not only where the document is rendered"
    );
    assert!(kubeadm(Role::Init, json!({"ResetConfiguration": {}}))
        .starts_with("extra key \"ResetConfiguration\" is not a kubeadm document kind"));
}

#[test]
fn unknown_distributions_are_named() {
    let e = "k3d".parse::<Distribution>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown distribution \"k3d\" (expected one of: k3s, rke2, kubeadm, none)"
    );
    for name in ["k3s", "rke2", "kubeadm", "none"] {
        assert_eq!(name.parse::<Distribution>().map(|d| d.name()), Ok(name));
    }
}
