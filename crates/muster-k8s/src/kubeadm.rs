//! kubeadm's `--config` file: a stream of typed documents, chosen by role and Kubernetes version.
//!
//! The init host gets `InitConfiguration` (the muster-generated bootstrap token, the
//! certificate key `kubeadm init --upload-certs` encrypts the control-plane certificates with,
//! this node's name, kubelet `node-ip` and advertise address) and `ClusterConfiguration` (the
//! shared `controlPlaneEndpoint` — the VIP or DNS name — with the version, networks and API
//! server SANs). Every other host gets `JoinConfiguration`: bootstrap-token discovery through
//! the endpoint, pinned by the CA public key hash the init hook published; control-plane hosts
//! add `controlPlane` with the certificate key and their own advertise address.
//!
//! API version (kubernetes.io/docs/reference/config-api/kubeadm-config.v1beta4/): `v1beta4`
//! arrived with Kubernetes 1.31 (its change list starts at v1.31) and `v1beta3`, the format
//! since 1.22, is deprecated from then on, so muster writes `kubeadm.k8s.io/v1beta3` for
//! 1.24–1.30 and `v1beta4` from 1.31. The one v1beta4 change that touches what muster renders:
//! `nodeRegistration.kubeletExtraArgs` is a list of `{name, value}` instead of a map.

use serde_json::{json, Map, Value};

use crate::extra::{check_reserved_tree, merge_deep, Rules};
use crate::net::{bare_host, host_for_url};
use crate::{
    secret, yaml, KubeVersion, RenderError, RenderInput, Role, SECRET_BOOTSTRAP_TOKEN,
    SECRET_CA_CERT_HASH, SECRET_CERTIFICATE_KEY,
};

/// The first minor version whose kubeadm takes `v1beta4`.
pub const V1BETA4_FROM_MINOR: u32 = 31;
/// The API server's port (kubeadm's default `bindPort`).
const API_PORT: u16 = 6443;

/// Document kinds an override may name, with their API groups (kubeadm's own get the
/// version-dependent one).
const KINDS: &[(&str, Option<&str>)] = &[
    ("InitConfiguration", None),
    ("ClusterConfiguration", None),
    ("JoinConfiguration", None),
    (
        "KubeletConfiguration",
        Some("kubelet.config.k8s.io/v1beta1"),
    ),
    (
        "KubeProxyConfiguration",
        Some("kubeproxy.config.k8s.io/v1alpha1"),
    ),
];

/// Paths muster owns.
const RESERVED: &[&str] = &[
    "InitConfiguration.apiVersion",
    "InitConfiguration.kind",
    "InitConfiguration.bootstrapTokens",
    "InitConfiguration.certificateKey",
    "InitConfiguration.nodeRegistration.name",
    "InitConfiguration.localAPIEndpoint.advertiseAddress",
    "ClusterConfiguration.apiVersion",
    "ClusterConfiguration.kind",
    "ClusterConfiguration.controlPlaneEndpoint",
    "ClusterConfiguration.kubernetesVersion",
    "JoinConfiguration.apiVersion",
    "JoinConfiguration.kind",
    "JoinConfiguration.discovery",
    "JoinConfiguration.controlPlane",
    "JoinConfiguration.nodeRegistration.name",
    "KubeletConfiguration.apiVersion",
    "KubeletConfiguration.kind",
    "KubeProxyConfiguration.apiVersion",
    "KubeProxyConfiguration.kind",
];

/// Lists an override extends rather than replaces.
const ADDITIVE: &[&str] = &[
    "ClusterConfiguration.apiServer.certSANs",
    "InitConfiguration.nodeRegistration.kubeletExtraArgs",
    "JoinConfiguration.nodeRegistration.kubeletExtraArgs",
];

/// The `apiVersion` of kubeadm's own documents for `version` (1.24 or later: `KubeVersion`
/// refuses older ones).
pub fn api_version(version: KubeVersion) -> &'static str {
    if version.at_least(1, V1BETA4_FROM_MINOR) {
        "kubeadm.k8s.io/v1beta4"
    } else {
        "kubeadm.k8s.io/v1beta3"
    }
}

/// Renders the documents for `input`.
pub fn render(input: &RenderInput, version: KubeVersion) -> Result<String, RenderError> {
    let api = api_version(version);
    let v1beta4 = version.at_least(1, V1BETA4_FROM_MINOR);
    let token = bootstrap_token(input)?;
    let endpoint = format!("{}:{API_PORT}", host_for_url(input.endpoint));
    let node_ip = input.node_ip.to_string();
    let registration = json!({
        "name": input.node_name,
        "kubeletExtraArgs": kubelet_args(v1beta4, &[("node-ip", &node_ip)]),
    });
    let local_api = json!({ "advertiseAddress": node_ip, "bindPort": API_PORT });
    let mut docs: Vec<(&str, Value)> = Vec::new();
    match input.role {
        Role::Init => {
            let key = certificate_key(input)?;
            docs.push((
                "InitConfiguration",
                json!({
                    "apiVersion": api,
                    "kind": "InitConfiguration",
                    "bootstrapTokens": [{
                        "token": token,
                        "description": "muster: joins the site's hosts",
                        "ttl": "24h0m0s",
                        "usages": ["signing", "authentication"],
                        "groups": ["system:bootstrappers:kubeadm:default-node-token"],
                    }],
                    "certificateKey": key,
                    "nodeRegistration": registration,
                    "localAPIEndpoint": local_api,
                }),
            ));
            let mut sans = vec![bare_host(input.endpoint).to_owned()];
            if !sans.contains(&node_ip) {
                sans.push(node_ip.clone());
            }
            docs.push((
                "ClusterConfiguration",
                json!({
                    "apiVersion": api,
                    "kind": "ClusterConfiguration",
                    "kubernetesVersion": kubernetes_version(input.version),
                    "controlPlaneEndpoint": endpoint,
                    "networking": {
                        "podSubnet": input.cluster_cidr,
                        "serviceSubnet": input.service_cidr,
                    },
                    "apiServer": { "certSANs": sans },
                }),
            ));
        }
        Role::ControlPlane | Role::Worker => {
            let hash = ca_cert_hash(input)?;
            let mut join = json!({
                "apiVersion": api,
                "kind": "JoinConfiguration",
                "nodeRegistration": registration,
                "discovery": {
                    "bootstrapToken": {
                        "apiServerEndpoint": endpoint,
                        "token": token,
                        "caCertHashes": [hash],
                    },
                },
            });
            if input.role == Role::ControlPlane {
                let key = certificate_key(input)?;
                if let Value::Object(map) = &mut join {
                    map.insert(
                        "controlPlane".into(),
                        json!({ "certificateKey": key, "localAPIEndpoint": local_api }),
                    );
                }
            }
            docs.push(("JoinConfiguration", join));
        }
    }
    merge_extra(input, &mut docs)?;
    let values: Vec<Value> = docs.into_iter().map(|(_, doc)| doc).collect();
    let mut out = format!(
        "# kubeadm configuration rendered by muster for {} ({}); muster rewrites it on every install step\n",
        input.node_name,
        input.role.name()
    );
    out.push_str(&yaml::documents(&values));
    Ok(out)
}

/// Merges the overrides into the documents of this role, adding the kubelet / kube-proxy
/// documents on the init host when an override names them. Overrides for documents another
/// role gets are still checked, so a bad override fails on every host alike.
fn merge_extra(input: &RenderInput, docs: &mut Vec<(&str, Value)>) -> Result<(), RenderError> {
    let rules = Rules {
        reserved: RESERVED,
        additive: ADDITIVE,
        server_only: &[],
    };
    for (kind, value) in input.extra {
        let Some(&(kind, group)) = KINDS.iter().find(|(k, _)| k == kind) else {
            return Err(RenderError::ExtraUnknownKind(kind.clone()));
        };
        if !value.is_object() {
            return Err(RenderError::ExtraType {
                key: kind.to_owned(),
                expected: "a mapping (the document's fields)",
            });
        }
        if let Some((_, doc)) = docs.iter_mut().find(|(k, _)| *k == kind) {
            merge_deep(doc, value, kind, &rules)?;
            continue;
        }
        check_reserved_tree(value, kind, &rules)?;
        if let (Some(group), Role::Init) = (group, input.role) {
            let mut doc = Map::new();
            doc.insert("apiVersion".into(), json!(group));
            doc.insert("kind".into(), json!(kind));
            let mut doc = Value::Object(doc);
            merge_deep(&mut doc, value, kind, &rules)?;
            docs.push((kind, doc));
        }
    }
    Ok(())
}

/// `kubeletExtraArgs`: a map in v1beta3, a list of `{name, value}` in v1beta4.
fn kubelet_args(v1beta4: bool, args: &[(&str, &str)]) -> Value {
    if v1beta4 {
        Value::Array(
            args.iter()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect(),
        )
    } else {
        let map: Map<String, Value> = args
            .iter()
            .map(|(name, value)| ((*name).to_owned(), json!(value)))
            .collect();
        Value::Object(map)
    }
}

/// `kubernetesVersion` as kubeadm spells it: `vMAJOR.MINOR.PATCH`, no build suffix.
fn kubernetes_version(version: &str) -> String {
    let core = version.split('+').next().unwrap_or(version);
    if core.starts_with('v') {
        core.to_owned()
    } else {
        format!("v{core}")
    }
}

/// `BOOTSTRAP_TOKEN`, checked against kubeadm's `[a-z0-9]{6}.[a-z0-9]{16}`.
fn bootstrap_token<'a>(input: &RenderInput<'a>) -> Result<&'a str, RenderError> {
    let token = secret(input, SECRET_BOOTSTRAP_TOKEN)?;
    let part = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    match token.split_once('.') {
        Some((id, secret)) if part(id, 6) && part(secret, 16) => Ok(token),
        _ => Err(RenderError::BadSecret {
            name: SECRET_BOOTSTRAP_TOKEN,
            reason: "expected [a-z0-9]{6}.[a-z0-9]{16}",
        }),
    }
}

/// `CERTIFICATE_KEY`: 64 hex digits (a 32-byte AES key).
fn certificate_key<'a>(input: &RenderInput<'a>) -> Result<&'a str, RenderError> {
    let key = secret(input, SECRET_CERTIFICATE_KEY)?;
    if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(key)
    } else {
        Err(RenderError::BadSecret {
            name: SECRET_CERTIFICATE_KEY,
            reason: "expected 64 hex digits (a 32-byte AES key)",
        })
    }
}

/// `CA_CERT_HASH`: `sha256:` and 64 hex digits.
fn ca_cert_hash<'a>(input: &RenderInput<'a>) -> Result<&'a str, RenderError> {
    let hash = secret(input, SECRET_CA_CERT_HASH)?;
    match hash.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(hash),
        _ => Err(RenderError::BadSecret {
            name: SECRET_CA_CERT_HASH,
            reason: "expected sha256: and 64 hex digits",
        }),
    }
}
