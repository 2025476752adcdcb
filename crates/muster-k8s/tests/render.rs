//! Rendering as the hooks and distributions see it: golden files for every distribution × role
//! (plus proxy, IPv6, override and kubeadm v1beta3 / v1beta4 variants), and the rendered YAML
//! parsed back to check it says what was meant.
//!
//! `MUSTER_BLESS=1 cargo test -p muster-k8s --test render` rewrites the golden files; review
//! the diff before committing it.

mod common;

use std::path::PathBuf;

use common::{
    golden_cases, parse_yaml, Fixture, BOOTSTRAP_TOKEN, CA_CERT_HASH, CERTIFICATE_KEY, TOKEN,
};
use muster_k8s::{render, Distribution, Rendered, Role};
use serde_json::{json, Value};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn rendered(f: &Fixture) -> Rendered {
    match render(&f.input()) {
        Ok(Some(r)) => r,
        other => panic!("render failed: {other:?}"),
    }
}

fn env_text(r: &Rendered) -> String {
    r.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[test]
fn renders_match_the_golden_files() {
    let bless = std::env::var_os("MUSTER_BLESS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (name, fixture) in golden_cases() {
        let r = rendered(&fixture);
        let files = [
            (format!("{name}.yaml"), r.contents.clone()),
            (format!("{name}.env"), env_text(&r)),
        ];
        for (file, text) in files {
            let path = golden_dir().join(&file);
            if bless {
                if text.is_empty() {
                    let _ = std::fs::remove_file(&path);
                } else {
                    std::fs::write(&path, &text).expect("write golden file");
                }
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if want != text {
                stale.push(format!("{file}:\n--- golden\n{want}--- rendered\n{text}"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "renders differ from tests/golden (MUSTER_BLESS=1 rewrites them):\n{}",
        stale.join("\n")
    );
}

#[test]
fn every_golden_file_belongs_to_a_case() {
    let names: Vec<String> = golden_cases()
        .into_iter()
        .flat_map(|(n, _)| [format!("{n}.yaml"), format!("{n}.env")])
        .collect();
    for entry in std::fs::read_dir(golden_dir()).expect("golden dir") {
        let file = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(names.contains(&file), "tests/golden/{file} has no case");
    }
}

#[test]
fn every_render_parses_back_as_yaml_with_the_config_file_name() {
    for (name, fixture) in golden_cases() {
        let r = rendered(&fixture);
        let docs = parse_yaml(&r.contents);
        let want = match fixture.distribution {
            Distribution::Kubeadm => "kubeadm.yaml",
            _ => "config.yaml",
        };
        assert_eq!(r.file_name, want, "{name}");
        assert!(
            !docs.is_empty() && docs.iter().all(Value::is_object),
            "{name}"
        );
    }
}

fn one_doc(f: &Fixture) -> Value {
    let docs = parse_yaml(&rendered(f).contents);
    assert_eq!(docs.len(), 1);
    docs.into_iter().next().unwrap_or_default()
}

#[test]
fn k3s_init_starts_etcd_and_servers_join_the_endpoint_not_the_init_host() {
    let init = one_doc(&Fixture::new(Distribution::K3s, Role::Init));
    assert_eq!(
        init,
        json!({
            "cluster-init": true,
            "token": TOKEN,
            "node-name": "edge-1",
            "node-ip": "10.0.0.11",
            "tls-san": ["10.0.0.100", "10.0.0.11"],
            "cluster-cidr": "10.42.0.0/16",
            "service-cidr": "10.43.0.0/16",
            "disable": ["traefik", "servicelb", "local-storage", "metrics-server"],
            "flannel-backend": "none",
            "disable-network-policy": true,
        })
    );
    let cp = one_doc(&Fixture::new(Distribution::K3s, Role::ControlPlane));
    assert_eq!(cp["server"], "https://10.0.0.100:6443");
    assert_eq!(cp["node-ip"], "10.0.0.12", "the VIP is never the node IP");
    assert!(cp.get("cluster-init").is_none());
}

#[test]
fn workers_get_only_the_keys_agents_accept() {
    for d in [Distribution::K3s, Distribution::Rke2] {
        let worker = one_doc(&Fixture::new(d, Role::Worker));
        let port = if d == Distribution::K3s { 6443 } else { 9345 };
        assert_eq!(
            worker,
            json!({
                "server": format!("https://10.0.0.100:{port}"),
                "token": TOKEN,
                "node-name": "edge-4",
                "node-ip": "10.0.0.14",
            }),
            "{d}"
        );
    }
}

#[test]
fn rke2_has_no_cluster_init_and_joins_the_supervisor_port() {
    let init = one_doc(&Fixture::new(Distribution::Rke2, Role::Init));
    assert!(init.get("cluster-init").is_none() && init.get("server").is_none());
    assert_eq!(init["cni"], "none");
    assert_eq!(
        init["disable"],
        json!(["rke2-ingress-nginx", "rke2-traefik", "rke2-metrics-server"])
    );
    let cp = one_doc(&Fixture::new(Distribution::Rke2, Role::ControlPlane));
    assert_eq!(cp["server"], "https://10.0.0.100:9345");
}

#[test]
fn ipv6_endpoints_are_bracketed_in_urls_and_bare_in_sans() {
    let mut f = Fixture::new(Distribution::K3s, Role::ControlPlane);
    f.endpoint = "fd00::100".into();
    f.node_ip = common::ip("fd00::12");
    f.cluster_cidr = "fd42::/56".into();
    f.service_cidr = "fd43::/112".into();
    let doc = one_doc(&f);
    assert_eq!(doc["server"], "https://[fd00::100]:6443");
    assert_eq!(doc["tls-san"], json!(["fd00::100", "fd00::12"]));
    let mut k = Fixture::new(Distribution::Kubeadm, Role::Worker);
    k.endpoint = "[fd00::100]".into();
    let docs = parse_yaml(&rendered(&k).contents);
    assert_eq!(
        docs[0]["discovery"]["bootstrapToken"]["apiServerEndpoint"],
        "[fd00::100]:6443"
    );
}

fn kubeadm_docs(version: &str, role: Role) -> Vec<Value> {
    parse_yaml(&rendered(&Fixture::new(Distribution::Kubeadm, role).version(version)).contents)
}

#[test]
fn kubeadm_api_version_switches_to_v1beta4_at_1_31() {
    for (version, api) in [
        ("v1.24.0", "kubeadm.k8s.io/v1beta3"),
        ("v1.30.14", "kubeadm.k8s.io/v1beta3"),
        ("v1.31.0", "kubeadm.k8s.io/v1beta4"),
        ("v1.33.1", "kubeadm.k8s.io/v1beta4"),
    ] {
        for role in [Role::Init, Role::ControlPlane, Role::Worker] {
            for doc in kubeadm_docs(version, role) {
                assert_eq!(doc["apiVersion"], api, "{version} {role:?}");
            }
        }
    }
}

#[test]
fn kubeadm_init_holds_the_bootstrap_token_certificate_key_and_endpoint() {
    let docs = kubeadm_docs("v1.30.2", Role::Init);
    let kinds: Vec<&Value> = docs.iter().map(|d| &d["kind"]).collect();
    assert_eq!(kinds, ["InitConfiguration", "ClusterConfiguration"]);
    let (init, cluster) = (&docs[0], &docs[1]);
    assert_eq!(init["bootstrapTokens"][0]["token"], BOOTSTRAP_TOKEN);
    assert_eq!(init["certificateKey"], CERTIFICATE_KEY);
    assert_eq!(init["nodeRegistration"]["name"], "edge-1");
    assert_eq!(
        init["nodeRegistration"]["kubeletExtraArgs"],
        json!({"node-ip": "10.0.0.11"})
    );
    assert_eq!(init["localAPIEndpoint"]["advertiseAddress"], "10.0.0.11");
    assert_eq!(cluster["controlPlaneEndpoint"], "10.0.0.100:6443");
    assert_eq!(cluster["kubernetesVersion"], "v1.30.2");
    assert_eq!(
        cluster["networking"],
        json!({"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12"})
    );
    assert_eq!(
        cluster["apiServer"]["certSANs"],
        json!(["10.0.0.100", "10.0.0.11"])
    );
    let v4 = kubeadm_docs("v1.31.0", Role::Init);
    assert_eq!(
        v4[0]["nodeRegistration"]["kubeletExtraArgs"],
        json!([{"name": "node-ip", "value": "10.0.0.11"}])
    );
}

#[test]
fn kubeadm_joins_pin_the_ca_and_only_control_planes_get_the_certificate_key() {
    let cp = kubeadm_docs("v1.30.2", Role::ControlPlane);
    assert_eq!(cp.len(), 1);
    assert_eq!(cp[0]["kind"], "JoinConfiguration");
    assert_eq!(
        cp[0]["discovery"]["bootstrapToken"],
        json!({
            "apiServerEndpoint": "10.0.0.100:6443",
            "token": BOOTSTRAP_TOKEN,
            "caCertHashes": [CA_CERT_HASH],
        })
    );
    assert_eq!(
        cp[0]["controlPlane"],
        json!({
            "certificateKey": CERTIFICATE_KEY,
            "localAPIEndpoint": {"advertiseAddress": "10.0.0.12", "bindPort": 6443},
        })
    );
    let worker = kubeadm_docs("v1.31.0", Role::Worker);
    assert!(worker[0].get("controlPlane").is_none());
    assert_eq!(
        worker[0]["nodeRegistration"]["kubeletExtraArgs"],
        json!([{"name": "node-ip", "value": "10.0.0.14"}])
    );
    // A worker needs no certificate key.
    let mut f = Fixture::new(Distribution::Kubeadm, Role::Worker);
    f.secrets.remove("CERTIFICATE_KEY");
    assert!(render(&f.input()).is_ok());
}

#[test]
fn proxy_env_lists_cluster_networks_nodes_and_endpoint() {
    let r = rendered(&Fixture::new(Distribution::K3s, Role::Worker).with_proxy());
    let no = "registry.site.example,10.42.0.0/16,10.43.0.0/16,10.0.0.14,10.0.0.11,10.0.0.100,localhost,127.0.0.1,.svc,.cluster.local";
    assert_eq!(
        r.env,
        [
            ("HTTP_PROXY", "http://proxy.site.example:3128"),
            ("HTTPS_PROXY", "http://proxy.site.example:3128"),
            ("NO_PROXY", no),
            ("MUSTER_CA_FILES", "/etc/muster/ca/registry.pem"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    let k = rendered(&Fixture::new(Distribution::Kubeadm, Role::Init).with_proxy());
    let names: Vec<&str> = k.env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "NO_PROXY",
            "no_proxy",
            "MUSTER_CA_FILES"
        ]
    );
    assert!(rendered(&Fixture::new(Distribution::K3s, Role::Init))
        .env
        .is_empty());
}

#[test]
fn overrides_replace_defaults_extend_sans_and_skip_server_keys_on_agents() {
    let extra = json!({
        "disable": ["servicelb"],
        "flannel-backend": "vxlan",
        "tls-san": "api.site.example",
        "node-label": ["site=berlin"],
    });
    let server = one_doc(&Fixture::new(Distribution::K3s, Role::ControlPlane).extra(extra.clone()));
    assert_eq!(server["disable"], json!(["servicelb"]));
    assert_eq!(server["flannel-backend"], "vxlan");
    assert_eq!(
        server["tls-san"],
        json!(["10.0.0.100", "10.0.0.12", "api.site.example"])
    );
    assert_eq!(server["node-label"], json!(["site=berlin"]));
    let agent = one_doc(&Fixture::new(Distribution::K3s, Role::Worker).extra(extra));
    assert!(agent.get("disable").is_none() && agent.get("tls-san").is_none());
    assert_eq!(agent["node-label"], json!(["site=berlin"]));
}

#[test]
fn kubeadm_overrides_merge_deeply_and_add_kubelet_config_on_init_only() {
    let extra = json!({
        "ClusterConfiguration": {"apiServer": {"certSANs": ["api.site.example"], "extraArgs": [{"name": "v", "value": "2"}]}},
        "JoinConfiguration": {"nodeRegistration": {"kubeletExtraArgs": [{"name": "max-pods", "value": "200"}]}},
        "KubeletConfiguration": {"cgroupDriver": "systemd"},
    });
    let f = Fixture::new(Distribution::Kubeadm, Role::Init)
        .version("v1.31.0")
        .extra(extra.clone());
    let docs = parse_yaml(&rendered(&f).contents);
    assert_eq!(docs.len(), 3);
    assert_eq!(
        docs[1]["apiServer"]["certSANs"],
        json!(["10.0.0.100", "10.0.0.11", "api.site.example"])
    );
    assert_eq!(docs[1]["apiServer"]["extraArgs"][0]["name"], "v");
    assert_eq!(
        docs[2],
        json!({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "cgroupDriver": "systemd"})
    );
    let w = Fixture::new(Distribution::Kubeadm, Role::Worker)
        .version("v1.31.0")
        .extra(extra);
    let docs = parse_yaml(&rendered(&w).contents);
    assert_eq!(docs.len(), 1);
    assert_eq!(
        docs[0]["nodeRegistration"]["kubeletExtraArgs"],
        json!([{"name": "node-ip", "value": "10.0.0.14"}, {"name": "max-pods", "value": "200"}])
    );
}

#[test]
fn distribution_none_renders_nothing() {
    let mut f = Fixture::new(Distribution::K3s, Role::Init);
    f.distribution = Distribution::None;
    assert_eq!(render(&f.input()), Ok(None));
}

#[test]
fn hostile_strings_survive_the_round_trip() {
    // Values a hand-written YAML emitter gets wrong; the node name and endpoint are checked,
    // so they travel in an override.
    let nasty = [
        "yes",
        "no",
        "on",
        "~",
        "null",
        "0x1f",
        "1e3",
        "- a",
        "a: b",
        "#x",
        "'q'",
        "\"d\"",
        "a\nb",
        " lead",
        "trail ",
        "",
        "{x}",
        "[y]",
        "&anchor",
        "*alias",
        "!tag",
        "%dir",
        "@",
        "`",
        "|",
        ">",
        "tab\there",
        "nel\u{85}",
        "ls\u{2028}ps\u{2029}",
        "bom\u{feff}",
        "del\u{7f}",
        "nul\u{0}",
        "é ü 漢字 🦀",
        "\\",
        "---",
        "...",
    ];
    for (i, s) in nasty.iter().enumerate() {
        let extra = json!({ format!("k{i}: {s}"): s, "node-label": [s] });
        let doc = one_doc(&Fixture::new(Distribution::K3s, Role::Worker).extra(extra));
        assert_eq!(doc[format!("k{i}: {s}")], json!(s), "{s:?}");
        assert_eq!(doc["node-label"], json!([s]), "{s:?}");
    }
}
