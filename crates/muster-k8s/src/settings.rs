//! The distribution side of the agent's `[kubernetes]` section: which distribution and version,
//! the pod and service networks, the HTTP proxy, extra CA files and operator overrides of the
//! rendered config (`[kubernetes.config]`). Parsed from TOML by the agent's `config.rs`, checked
//! at load time by rendering every role once with placeholder values (so a bad version or
//! override is an error naming the key before the agent starts), and rendered for real by the
//! agent when its step starts ([`crate::render`]): the file becomes the hook's `MUSTER_CONFIG`.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::{Distribution, Proxy, RenderInput, Rendered, Role};

/// `[kubernetes.proxy]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    http_proxy: Option<String>,
    https_proxy: Option<String>,
    #[serde(default)]
    no_proxy: Vec<String>,
}

/// The keys of `[kubernetes]` that shape the rendered config, as read from TOML.
pub struct Section<'a> {
    /// `distribution`.
    pub distribution: &'a str,
    /// `version`: required unless the distribution is `none`.
    pub version: Option<&'a str>,
    /// `cluster_cidr`: the distribution's default pod network without it.
    pub cluster_cidr: Option<&'a str>,
    /// `service_cidr`: likewise.
    pub service_cidr: Option<&'a str>,
    /// `[kubernetes.proxy]`.
    pub proxy: Option<&'a ProxySection>,
    /// `ca_files`.
    pub ca_files: &'a [PathBuf],
    /// `[kubernetes.config]`.
    pub config: Option<&'a toml::Table>,
}

/// What the agent renders each step's config from.
#[derive(Debug, Clone, PartialEq)]
pub struct Distro {
    /// The distribution.
    pub distribution: Distribution,
    /// Its version (`[kubernetes] version`); empty for `none`.
    pub version: String,
    /// Pod network.
    pub cluster_cidr: String,
    /// Service network.
    pub service_cidr: String,
    /// The proxy, if any.
    pub proxy: Option<Proxy>,
    /// Extra CA certificates for the hooks to trust (`MUSTER_CA_FILES`).
    pub ca_files: Vec<PathBuf>,
    /// `[kubernetes.config]`: merged over the rendered keys.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One host's step, as the renderer needs it (see [`RenderInput`] for each field).
pub struct Step<'a> {
    /// The step's role.
    pub role: Role,
    /// This host's name.
    pub node_name: &'a str,
    /// This host's own address.
    pub node_ip: IpAddr,
    /// The API endpoint host.
    pub endpoint: &'a str,
    /// The init host's address.
    pub init_ip: Option<IpAddr>,
    /// The plan's secrets.
    pub secrets: &'a std::collections::BTreeMap<String, String>,
}

impl Distro {
    /// Parses and checks the section; the error names the key.
    pub fn from_section(s: &Section) -> Result<Distro, (&'static str, String)> {
        let distribution: Distribution = s.distribution.parse().map_err(|_| {
            (
                "kubernetes.distribution",
                format!(
                    "must be \"k3s\", \"rke2\", \"kubeadm\" or \"none\", got {:?}",
                    s.distribution
                ),
            )
        })?;
        let version = match (distribution, s.version) {
            (Distribution::None, v) => v.unwrap_or_default().to_owned(),
            (_, Some(v)) => v.to_owned(),
            (d, None) => {
                return Err((
                    "kubernetes.version",
                    format!(
                        "is required with distribution {d:?} (e.g. \"v1.30.2\")",
                        d = d.name()
                    ),
                ))
            }
        };
        let (pods, services) = distribution.default_cidrs().unwrap_or(("", ""));
        let proxy = s.proxy.map(|p| Proxy {
            http_proxy: p.http_proxy.clone(),
            https_proxy: p.https_proxy.clone(),
            no_proxy: p.no_proxy.clone(),
        });
        for f in s.ca_files {
            if !f.is_absolute() {
                return Err((
                    "kubernetes.ca_files",
                    format!("must be absolute paths, got {}", f.display()),
                ));
            }
        }
        let extra = match s.config {
            None => serde_json::Map::new(),
            Some(t) => match serde_json::to_value(t) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => {
                    return Err((
                        "kubernetes.config",
                        "must be a table of the distribution's config keys".into(),
                    ))
                }
            },
        };
        if distribution == Distribution::None && !extra.is_empty() {
            return Err((
                "kubernetes.config",
                "applies to k3s, rke2 and kubeadm; with \"none\" the hooks render their own".into(),
            ));
        }
        let d = Distro {
            distribution,
            version,
            cluster_cidr: s.cluster_cidr.unwrap_or(pods).to_owned(),
            service_cidr: s.service_cidr.unwrap_or(services).to_owned(),
            proxy,
            ca_files: s.ca_files.to_vec(),
            extra,
        };
        d.check()?;
        Ok(d)
    }

    /// Renders every role once with placeholder values, so what the operator wrote is checked
    /// before the agent starts; the error names the key the renderer complained about.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let secrets = placeholder_secrets();
        for role in [Role::Init, Role::ControlPlane, Role::Worker] {
            let step = Step {
                role,
                node_name: "muster-check",
                node_ip: IpAddr::from([192, 0, 2, 10]),
                endpoint: "192.0.2.100",
                init_ip: Some(IpAddr::from([192, 0, 2, 11])),
                secrets: &secrets,
            };
            self.render(&step)
                .map_err(|e| ("kubernetes", format!("{} config: {e}", self.distribution)))?;
        }
        Ok(())
    }

    /// This host's config for `step`; `None` for `none`.
    pub fn render(&self, step: &Step) -> Result<Option<Rendered>, crate::RenderError> {
        crate::render(&RenderInput {
            distribution: self.distribution,
            version: &self.version,
            role: step.role,
            node_name: step.node_name,
            node_ip: step.node_ip,
            endpoint: step.endpoint,
            init_ip: step.init_ip,
            secrets: step.secrets,
            cluster_cidr: &self.cluster_cidr,
            service_cidr: &self.service_cidr,
            proxy: self.proxy.as_ref(),
            ca_files: &self.ca_files,
            extra: &self.extra,
        })
    }

    /// `MUSTER_SERVER_URL` for a joining host (`none` is given the k3s form).
    pub fn server_url(&self, endpoint: &str) -> String {
        let d = match self.distribution {
            Distribution::None => Distribution::K3s,
            d => d,
        };
        crate::server_url(d, endpoint)
    }
}

/// Well-formed stand-ins for the plan's secrets, for the load-time check only.
fn placeholder_secrets() -> std::collections::BTreeMap<String, String> {
    [
        (crate::SECRET_TOKEN, "0".repeat(64)),
        (
            crate::SECRET_BOOTSTRAP_TOKEN,
            "abcdef.0123456789abcdef".into(),
        ),
        (crate::SECRET_CERTIFICATE_KEY, "0".repeat(64)),
        (
            crate::SECRET_CA_CERT_HASH,
            format!("sha256:{}", "0".repeat(64)),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
