//! `muster-k8s`: renders the configuration file a k3s, RKE2 or kubeadm install hook is given.
//!
//! The agent (`crates/muster`) calls [`render`] when the join plan says this host's step runs,
//! writes [`Rendered::contents`] to a 0600 file named [`Rendered::file_name`] in its data
//! directory, and runs the `[kubernetes] install_command` hook with `MUSTER_CONFIG` pointing at
//! it and [`Rendered::env`] added to the hook's environment (proxy variables and
//! `MUSTER_CA_FILES`). The hooks in `deploy/hooks/` put the file where the distribution reads it
//! and start the distribution. The crate is pure: no I/O, no clock, no randomness; the same
//! input renders the same bytes.
//!
//! What is rendered, per distribution and role (every key is checked against the upstream
//! documentation; `tests/render.rs` lists each key with the page it was checked against):
//!
//! * **k3s** `config.yaml` (`/etc/rancher/k3s/config.yaml`): servers get `token`, `node-name`,
//!   `node-ip`, `tls-san` (endpoint and node IP), `cluster-cidr`, `service-cidr`, and the site's
//!   defaults `disable: [traefik, servicelb, local-storage, metrics-server]`,
//!   `flannel-backend: none`, `disable-network-policy: true`; the init host `cluster-init: true`
//!   (embedded etcd), the others `server: https://ENDPOINT:6443`. Workers (agents) get only
//!   `server`, `token`, `node-name`, `node-ip`.
//! * **RKE2** `config.yaml` (`/etc/rancher/rke2/config.yaml`, agents too): like k3s, but RKE2
//!   always runs etcd and has no `cluster-init` (the init host simply has no `server`), joins
//!   go to the supervisor port (`https://ENDPOINT:9345`), and the defaults are `cni: none` and
//!   `disable: [rke2-ingress-nginx, rke2-traefik, rke2-metrics-server]`.
//! * **kubeadm** `kubeadm.yaml`, a multi-document stream: `InitConfiguration` +
//!   `ClusterConfiguration` on the init host, `JoinConfiguration` elsewhere (with
//!   `controlPlane` on control-plane hosts). API `kubeadm.k8s.io/v1beta3` for Kubernetes
//!   1.24–1.30, `v1beta4` from 1.31 (where `kubeletExtraArgs` became a list of
//!   `{name, value}`); older versions are refused.
//!
//! Operator overrides ([`RenderInput::extra`]) are merged over the rendered keys: for k3s and
//! RKE2 they are top-level keys (server-only keys are left out of agent configs, and `tls-san`
//! is extended rather than replaced); for kubeadm the top-level keys are document kinds whose
//! objects are merged deeply. Keys muster owns for cluster formation (the token, the server
//! URL, node name and IP, discovery, certificate key, control-plane endpoint) cannot be
//! overridden.
//!
//! YAML is emitted by `yaml.rs` with every key and string JSON-quoted (see there why no YAML
//! serializer crate is used). Secrets never appear in `Debug` output or in errors.
//!
//! Modules: `error` ([`RenderError`]), `version` (version parsing), `yaml` (emission),
//! `net` (CIDR / endpoint checks, [`server_url`], [`no_proxy`], the hook environment),
//! `rancher` (k3s and RKE2), `kubeadm`, `extra` (override merging).

mod error;
mod extra;
mod kubeadm;
mod net;
mod rancher;
pub mod settings;
mod version;
pub mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

pub use error::RenderError;
pub use net::{no_proxy, server_url};
pub use settings::{Distro, ProxySection, Section, Step};
pub use version::KubeVersion;

/// k3s's default pod network (`--cluster-cidr`).
pub const K3S_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// k3s's default service network (`--service-cidr`).
pub const K3S_SERVICE_CIDR: &str = "10.43.0.0/16";
/// RKE2's default pod network (`cluster-cidr`).
pub const RKE2_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// RKE2's default service network (`service-cidr`).
pub const RKE2_SERVICE_CIDR: &str = "10.43.0.0/16";
/// A pod network for kubeadm, which has no default of its own (the CNI decides): the one the
/// kubeadm documentation's examples and Flannel use.
pub const KUBEADM_POD_SUBNET: &str = "10.244.0.0/16";
/// kubeadm's default service network (`networking.serviceSubnet`).
pub const KUBEADM_SERVICE_SUBNET: &str = "10.96.0.0/12";

/// The secret holding the k3s / RKE2 join token.
pub const SECRET_TOKEN: &str = "TOKEN";
/// The secret holding kubeadm's bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`).
pub const SECRET_BOOTSTRAP_TOKEN: &str = "BOOTSTRAP_TOKEN";
/// The secret holding kubeadm's certificate key (64 hex digits: an AES-256 key).
pub const SECRET_CERTIFICATE_KEY: &str = "CERTIFICATE_KEY";
/// The secret holding the cluster CA's public key hash (`sha256:` + 64 hex digits), written by
/// the kubeadm init hook to `MUSTER_SECRETS_OUT`.
pub const SECRET_CA_CERT_HASH: &str = "CA_CERT_HASH";

/// The environment variable the hooks read the extra CA files from (colon-separated).
pub const ENV_CA_FILES: &str = "MUSTER_CA_FILES";

/// The Kubernetes distribution a site installs (`[kubernetes] distribution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Distribution {
    /// k3s.
    K3s,
    /// RKE2.
    Rke2,
    /// kubeadm.
    Kubeadm,
    /// No configuration rendered: the hooks do everything.
    None,
}

impl Distribution {
    /// The name as written in the config file and `MUSTER_DISTRIBUTION`.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::K3s => "k3s",
            Distribution::Rke2 => "rke2",
            Distribution::Kubeadm => "kubeadm",
            Distribution::None => "none",
        }
    }

    /// The default pod and service networks (`cluster_cidr`, `service_cidr`); `None` has none.
    pub fn default_cidrs(self) -> Option<(&'static str, &'static str)> {
        match self {
            Distribution::K3s => Some((K3S_CLUSTER_CIDR, K3S_SERVICE_CIDR)),
            Distribution::Rke2 => Some((RKE2_CLUSTER_CIDR, RKE2_SERVICE_CIDR)),
            Distribution::Kubeadm => Some((KUBEADM_POD_SUBNET, KUBEADM_SERVICE_SUBNET)),
            Distribution::None => None,
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Distribution {
    type Err = RenderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "k3s" => Ok(Distribution::K3s),
            "rke2" => Ok(Distribution::Rke2),
            "kubeadm" => Ok(Distribution::Kubeadm),
            "none" => Ok(Distribution::None),
            other => Err(RenderError::UnknownDistribution(other.to_owned())),
        }
    }
}

/// This host's step in the join plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The first control-plane host: creates the cluster.
    Init,
    /// A further control-plane host: joins the cluster as a server / control-plane node.
    ControlPlane,
    /// A worker: joins as an agent / worker node.
    Worker,
}

impl Role {
    /// The name as in `MUSTER_ROLE`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Init => "init",
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        }
    }

    /// Whether the host runs a control plane (k3s / RKE2 `server`).
    pub fn is_server(self) -> bool {
        !matches!(self, Role::Worker)
    }
}

/// An HTTP proxy the distribution, its container runtime and kubelet go through.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Proxy {
    /// `HTTP_PROXY`, e.g. `http://proxy.example:3128`.
    pub http_proxy: Option<String>,
    /// `HTTPS_PROXY`.
    pub https_proxy: Option<String>,
    /// The operator's own `NO_PROXY` entries; [`no_proxy`] adds the cluster's.
    pub no_proxy: Vec<String>,
}

impl fmt::Debug for Proxy {
    /// Proxy URLs may carry credentials (`http://user:password@host`): shown without them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field(
                "http_proxy",
                &self.http_proxy.as_deref().map(net::redact_url),
            )
            .field(
                "https_proxy",
                &self.https_proxy.as_deref().map(net::redact_url),
            )
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// Everything one host's configuration is rendered from.
#[derive(Clone)]
pub struct RenderInput<'a> {
    /// The distribution.
    pub distribution: Distribution,
    /// The Kubernetes version, as the distribution spells it (`v1.27.4+k3s1`, `v1.30.2`).
    pub version: &'a str,
    /// This host's step.
    pub role: Role,
    /// The Kubernetes node name.
    pub node_name: &'a str,
    /// This host's own address on the LAN interface — never the VIP.
    pub node_ip: IpAddr,
    /// The API endpoint host: the VIP without its prefix, or a DNS name.
    pub endpoint: &'a str,
    /// The init host's address, when known (added to `NO_PROXY`).
    pub init_ip: Option<IpAddr>,
    /// The site's join secrets: `TOKEN` (k3s, RKE2); `BOOTSTRAP_TOKEN`, `CERTIFICATE_KEY`,
    /// `CA_CERT_HASH` (kubeadm).
    pub secrets: &'a BTreeMap<String, String>,
    /// The pod network; [`Distribution::default_cidrs`] has the defaults.
    pub cluster_cidr: &'a str,
    /// The service network.
    pub service_cidr: &'a str,
    /// The HTTP proxy, if the site has one.
    pub proxy: Option<&'a Proxy>,
    /// Extra CA certificates (PEM files) the hosts must trust, e.g. a registry mirror's.
    pub ca_files: &'a [PathBuf],
    /// Operator overrides merged over the rendered keys.
    pub extra: &'a serde_json::Map<String, serde_json::Value>,
}

impl fmt::Debug for RenderInput<'_> {
    /// Secrets are shown by name only, overrides by key only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderInput")
            .field("distribution", &self.distribution)
            .field("version", &self.version)
            .field("role", &self.role)
            .field("node_name", &self.node_name)
            .field("node_ip", &self.node_ip)
            .field("endpoint", &self.endpoint)
            .field("init_ip", &self.init_ip)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("cluster_cidr", &self.cluster_cidr)
            .field("service_cidr", &self.service_cidr)
            .field("proxy", &self.proxy)
            .field("ca_files", &self.ca_files)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A rendered configuration and the environment the hook gets with it.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The file name the agent writes the contents to (`MUSTER_CONFIG`).
    pub file_name: &'static str,
    /// The file's contents (holds the join secrets: write it 0600).
    pub contents: String,
    /// Variables to add to the hook's environment: `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY`
    /// (and lower-case forms for kubeadm) when a proxy is set, `MUSTER_CA_FILES`.
    pub env: Vec<(String, String)>,
}

impl fmt::Debug for Rendered {
    /// The contents hold secrets and the proxy URLs may: shown by size and name only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("file_name", &self.file_name)
            .field("contents", &format_args!("<{} bytes>", self.contents.len()))
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

/// Renders the configuration for `input`; `Ok(None)` for [`Distribution::None`].
pub fn render(input: &RenderInput) -> Result<Option<Rendered>, RenderError> {
    if input.distribution == Distribution::None {
        return Ok(None);
    }
    let version = KubeVersion::parse(input.version, input.distribution)?;
    net::check_node_name(input.node_name)?;
    net::check_endpoint(input.endpoint)?;
    net::check_cidr("cluster_cidr", input.cluster_cidr)?;
    net::check_cidr("service_cidr", input.service_cidr)?;
    let env = net::hook_env(input)?;
    let (file_name, contents) = match input.distribution {
        Distribution::K3s | Distribution::Rke2 => ("config.yaml", rancher::render(input)?),
        Distribution::Kubeadm => ("kubeadm.yaml", kubeadm::render(input, version)?),
        Distribution::None => return Ok(None),
    };
    Ok(Some(Rendered {
        file_name,
        contents,
        env,
    }))
}

/// A secret the distribution needs, or [`RenderError::MissingSecret`] naming it.
fn secret<'a>(input: &RenderInput<'a>, name: &'static str) -> Result<&'a str, RenderError> {
    match input.secrets.get(name) {
        Some(value) if !value.is_empty() => Ok(value.as_str()),
        _ => Err(RenderError::MissingSecret {
            name,
            distribution: input.distribution,
        }),
    }
}
