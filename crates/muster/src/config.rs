//! The agent's TOML configuration: parsing, defaults and validation into a typed runtime config.
//!
//! Read once by `muster agent` at start. Unknown keys are errors (a typo must not be silently
//! ignored); every error names the key, and parse errors carry the line and column that `toml`
//! reports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[path = "config_health.rs"]
pub mod health;
#[path = "config_operators.rs"]
pub mod operators;
pub use health::{default_health, HealthCheck, HealthUrl};

/// Why the configuration cannot be used. The message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type (message has line and column).
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's description, which names the key and its position.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("config {path}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key, e.g. `site.control_plane_count`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The file as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    node: NodeSection,
    site: SiteSection,
    network: NetworkSection,
    #[serde(default)]
    rpc: RpcSection,
    #[serde(default)]
    metrics: MetricsSection,
    #[serde(default)]
    formation: FormationSection,
    #[serde(default)]
    timing: TimingSection,
    vip: Option<VipSection>,
    ddns: Option<DdnsSection>,
    kubernetes: Option<KubernetesSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesSection {
    distribution: String,
    version: Option<String>,
    cluster_cidr: Option<String>,
    service_cidr: Option<String>,
    proxy: Option<muster_k8s::ProxySection>,
    #[serde(default)]
    ca_files: Vec<PathBuf>,
    config: Option<toml::Table>,
    install_command: PathBuf,
    remove_command: Option<PathBuf>,
    health_command: Option<PathBuf>,
    worker_health_command: Option<PathBuf>,
    health_url: Option<String>,
    worker_health_url: Option<String>,
    health_ca_file: Option<PathBuf>,
    health_client_cert: Option<PathBuf>,
    health_client_key: Option<PathBuf>,
    health_server_name: Option<String>,
    install_timeout: Option<String>,
    worker_parallelism: Option<i64>,
    retry_backoff: Option<String>,
    max_attempts: Option<i64>,
    certificate_key_refresh: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NodeSection {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    roles: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SiteSection {
    key_file: PathBuf,
    expected_nodes: Option<i64>,
    control_plane_count: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NetworkSection {
    interface: String,
    listen_port: Option<i64>,
    #[serde(default)]
    bootstrap: Vec<String>,
    mdns: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RpcSection {
    socket: Option<PathBuf>,
    listen: Option<String>,
    #[serde(default)]
    operators: Vec<OperatorSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorSection {
    name: String,
    public_key: String,
    access: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    listen: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FormationSection {
    settle: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TimingSection {
    tick: Option<String>,
    election_ticks: Option<i64>,
    heartbeat_ticks: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VipSection {
    address: Option<String>,
    address6: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DdnsSection {
    server: String,
    zone: String,
    name: String,
    tsig_key_file: PathBuf,
    ttl: Option<String>,
}

/// `[ddns]`: the API name the leader points at itself (or at the VIP) with RFC 2136 updates
/// (`dns.rs`, `muster-dns`).
#[derive(Debug, Clone, PartialEq)]
pub struct Ddns {
    /// The authoritative server taking the updates.
    pub server: SocketAddr,
    /// The zone, absolute (ends in '.').
    pub zone: String,
    /// The endpoint name, absolute, inside `zone`.
    pub name: String,
    /// TTL of the records written.
    pub ttl: Duration,
    /// BIND `tsig-keygen` key file (read when the agent starts).
    pub tsig_key_file: PathBuf,
}

/// `[kubernetes]`: what the agent runs for its step of the join plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Kubernetes {
    /// The distribution, its version and what its config is rendered from (`kubeconf.rs`).
    pub distro: muster_k8s::Distro,
    /// The install hook (the contract in DESIGN.md).
    pub install_command: PathBuf,
    /// Run by the leader (a healthy control-plane host) for a host `muster remove` took out
    /// that had a step, e.g. to remove its etcd member; none: nothing to run.
    pub remove_command: Option<PathBuf>,
    /// The control-plane (and init) step's health gate: `health_url` or `health_command`.
    pub health: HealthCheck,
    /// The worker step's health gate: `worker_health_url` or `worker_health_command`.
    pub worker_health: HealthCheck,
    /// Longest a hook plus its health probe may take before the attempt fails.
    pub install_timeout: Duration,
    /// Workers that install at once.
    pub worker_parallelism: u32,
    /// Backoff before a failed step is retried (doubling per attempt).
    pub retry_backoff: Duration,
    /// Attempts before a step stays failed.
    pub max_attempts: u32,
    /// Re-upload the control-plane certificates under a fresh certificate key before a
    /// control-plane join when the last upload is older than this (kubeadm: 90 minutes, its
    /// uploads live two hours; `none`: only if set; k3s and RKE2: never). The install hook runs
    /// with `MUSTER_ROLE=upload-certs` on the leader (`muster_core::certs`).
    pub certificate_key_refresh: Option<Duration>,
}

/// Default path of the status socket.
pub const DEFAULT_SOCKET: &str = "/run/muster/muster.sock";

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Host name shown to operators.
    pub name: String,
    /// `[node] roles`: what this host may be in the Kubernetes install.
    pub role_pin: muster_proto::RolePin,
    /// Where identity and raft state live.
    pub data_dir: PathBuf,
    /// Site key file (swarm.key format).
    pub key_file: PathBuf,
    /// Hosts to wait for before the lowest id bootstraps.
    pub expected_nodes: usize,
    /// Raft voters: 1, 3 or 5.
    pub control_plane_count: usize,
    /// LAN interface whose IPv4 address the agent listens on.
    pub interface: String,
    /// TCP port.
    pub listen_port: u16,
    /// Static peers.
    pub bootstrap: Vec<SocketAddr>,
    /// Whether mDNS discovery runs.
    pub mdns: bool,
    /// Status socket path.
    pub socket: PathBuf,
    /// `[rpc] listen`: the status RPC over TLS 1.3 with mutual authentication on TCP (`tls.rs`);
    /// `None` (the default): only the local socket.
    pub rpc_listen: Option<SocketAddr>,
    /// `[[rpc.operators]]`: the operator keys `[rpc] listen` accepts.
    pub operators: Vec<operators::Operator>,
    /// `[metrics] listen`: where `/metrics`, `/healthz` and `/readyz` are served (`metrics.rs`);
    /// `None` (the default): not served.
    pub metrics_listen: Option<SocketAddr>,
    /// How long a host that sees no cluster waits for `expected_nodes` before bootstrapping.
    pub settle: Duration,
    /// Raft tick.
    pub tick: Duration,
    /// Election timeout base, in ticks.
    pub election_ticks: usize,
    /// Heartbeat interval, in ticks.
    pub heartbeat_ticks: usize,
    /// The floating API address, if configured.
    pub vip: Option<muster_vip::VipConfig>,
    /// `[ddns]`, if configured.
    pub ddns: Option<Ddns>,
    /// The Kubernetes install, if configured (`installer.rs`).
    pub kubernetes: Option<Kubernetes>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let name = match file.node.name {
            Some(n) if n.trim().is_empty() => {
                return Err(invalid("node.name", "must not be empty".into()))
            }
            Some(n) => n,
            None => hostname(),
        };
        let data_dir = file
            .node
            .data_dir
            .unwrap_or_else(|| PathBuf::from("/var/lib/muster"));
        let role_pin =
            role_pin(file.node.roles.as_deref()).map_err(|m| invalid("node.roles", m))?;
        let expected_nodes = file.site.expected_nodes.unwrap_or(3);
        if !(1..=1000).contains(&expected_nodes) {
            return Err(invalid(
                "site.expected_nodes",
                format!("must be between 1 and 1000, got {expected_nodes}"),
            ));
        }
        let control_plane_count = file.site.control_plane_count.unwrap_or(3);
        if ![1, 3, 5].contains(&control_plane_count) {
            return Err(invalid(
                "site.control_plane_count",
                format!("must be 1, 3 or 5 (an odd number of voters), got {control_plane_count}"),
            ));
        }
        if file.network.interface.trim().is_empty() {
            return Err(invalid(
                "network.interface",
                "must name the LAN interface".into(),
            ));
        }
        let listen_port = file.network.listen_port.unwrap_or(7946);
        if !(1..=65535).contains(&listen_port) {
            return Err(invalid(
                "network.listen_port",
                format!("must be 1-65535, got {listen_port}"),
            ));
        }
        let mut bootstrap = Vec::new();
        for entry in &file.network.bootstrap {
            let addr = resolve(entry).map_err(|m| invalid("network.bootstrap", m))?;
            bootstrap.push(addr);
        }
        let mdns = file.network.mdns.unwrap_or(true);
        if !mdns && bootstrap.is_empty() {
            return Err(invalid(
                "network.bootstrap",
                "with network.mdns = false at least one bootstrap peer is needed".into(),
            ));
        }
        let metrics_listen = match &file.metrics.listen {
            None => None,
            Some(l) => Some(l.trim().parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "metrics.listen",
                    format!("expected IP:PORT (e.g. \"127.0.0.1:9464\"), got {l:?}"),
                )
            })?),
        };
        if metrics_listen.is_some_and(|a| a.port() == 0) {
            return Err(invalid("metrics.listen", "port must not be 0".into()));
        }
        let (rpc_listen, operators) = rpc_remote(&file.rpc).map_err(|(k, m)| invalid(k, m))?;
        let settle = match &file.formation.settle {
            Some(s) => parse_duration(s).map_err(|m| invalid("formation.settle", m))?,
            None => Duration::from_secs(10),
        };
        let tick = match &file.timing.tick {
            Some(t) => parse_duration(t).map_err(|m| invalid("timing.tick", m))?,
            None => Duration::from_millis(muster_core::config::DEFAULT_TICK_MS),
        };
        if !(Duration::from_millis(5)..=Duration::from_secs(1)).contains(&tick) {
            return Err(invalid(
                "timing.tick",
                format!("must be between 5ms and 1s, got {tick:?}"),
            ));
        }
        let election_ticks = file
            .timing
            .election_ticks
            .unwrap_or(muster_core::config::DEFAULT_ELECTION_TICKS as i64);
        if !(3..=100).contains(&election_ticks) {
            return Err(invalid(
                "timing.election_ticks",
                format!("must be 3-100, got {election_ticks}"),
            ));
        }
        let heartbeat_ticks = file
            .timing
            .heartbeat_ticks
            .unwrap_or(muster_core::config::DEFAULT_HEARTBEAT_TICKS as i64);
        if heartbeat_ticks < 1 || heartbeat_ticks.saturating_mul(2) > election_ticks {
            return Err(invalid(
                "timing.heartbeat_ticks",
                format!("must be at least 1 and at most half of timing.election_ticks ({election_ticks}), got {heartbeat_ticks}"),
            ));
        }
        let vip = match &file.vip {
            None => None,
            Some(section) => Some(
                vip_config(&file.network.interface, section).map_err(|(key, m)| invalid(key, m))?,
            ),
        };
        if vip.is_some() {
            let mut core = muster_core::NodeConfig::new("check", "check", Vec::new());
            core.tick_ms = tick.as_millis() as u64;
            core.election_ticks = election_ticks as usize;
            core.heartbeat_ticks = heartbeat_ticks as usize;
            core.check_lease()
                .map_err(|m| invalid("timing.election_ticks", m))?;
        }
        let mut ddns_cfg = None;
        if let Some(ddns) = &file.ddns {
            let server = resolve(&ddns.server).map_err(|m| invalid("ddns.server", m))?;
            for (key, v) in [("ddns.zone", &ddns.zone), ("ddns.name", &ddns.name)] {
                if !v.ends_with('.') {
                    return Err(invalid(
                        key,
                        format!("must be a fully qualified name ending in '.', got {v:?}"),
                    ));
                }
            }
            if ddns.tsig_key_file.as_os_str().is_empty() {
                return Err(invalid("ddns.tsig_key_file", "must name a file".into()));
            }
            let ttl = match &ddns.ttl {
                Some(t) => parse_duration(t).map_err(|m| invalid("ddns.ttl", m))?,
                None => Duration::from_secs(5),
            };
            if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(86_400) {
                return Err(invalid(
                    "ddns.ttl",
                    format!("must be 1s to 1d, got {ttl:?}"),
                ));
            }
            ddns_cfg = Some(Ddns {
                server,
                zone: ddns.zone.clone(),
                name: ddns.name.clone(),
                ttl,
                tsig_key_file: ddns.tsig_key_file.clone(),
            });
        }
        let kubernetes = match &file.kubernetes {
            None => None,
            Some(k) => Some(kubernetes(k).map_err(|(key, m)| invalid(key, m))?),
        };
        Ok(Config {
            name,
            role_pin,
            data_dir,
            key_file: file.site.key_file,
            expected_nodes: expected_nodes as usize,
            control_plane_count: control_plane_count as usize,
            interface: file.network.interface,
            listen_port: listen_port as u16,
            bootstrap,
            mdns,
            socket: file
                .rpc
                .socket
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            metrics_listen,
            rpc_listen,
            operators,
            settle,
            tick,
            election_ticks: election_ticks as usize,
            heartbeat_ticks: heartbeat_ticks as usize,
            vip,
            kubernetes,
            ddns: ddns_cfg,
        })
    }
}

fn kubernetes(k: &KubernetesSection) -> Result<Kubernetes, (&'static str, String)> {
    let distro = muster_k8s::Distro::from_section(&muster_k8s::Section {
        distribution: &k.distribution,
        version: k.version.as_deref(),
        cluster_cidr: k.cluster_cidr.as_deref(),
        service_cidr: k.service_cidr.as_deref(),
        proxy: k.proxy.as_ref(),
        ca_files: &k.ca_files,
        config: k.config.as_ref(),
    })?;
    health::absolute("kubernetes.install_command", &k.install_command)?;
    if let Some(p) = &k.remove_command {
        health::absolute("kubernetes.remove_command", p)?;
    }
    let keys = health::HealthKeys {
        url: k.health_url.as_deref(),
        worker_url: k.worker_health_url.as_deref(),
        command: k.health_command.as_deref(),
        worker_command: k.worker_health_command.as_deref(),
        ca_file: k.health_ca_file.as_deref(),
        client_cert: k.health_client_cert.as_deref(),
        client_key: k.health_client_key.as_deref(),
        server_name: k.health_server_name.as_deref(),
    };
    let (health, worker_health) = health::resolve(&keys, &default_health(&k.distribution))?;
    let install_timeout = match &k.install_timeout {
        Some(t) => parse_duration(t).map_err(|m| ("kubernetes.install_timeout", m))?,
        None => Duration::from_secs(30 * 60),
    };
    if install_timeout < Duration::from_secs(1) {
        return Err((
            "kubernetes.install_timeout",
            format!("must be at least 1s, got {install_timeout:?}"),
        ));
    }
    let worker_parallelism = k.worker_parallelism.unwrap_or(3);
    if !(1..=64).contains(&worker_parallelism) {
        return Err((
            "kubernetes.worker_parallelism",
            format!("must be 1-64, got {worker_parallelism}"),
        ));
    }
    let retry_backoff = match &k.retry_backoff {
        Some(t) => parse_duration(t).map_err(|m| ("kubernetes.retry_backoff", m))?,
        None => Duration::from_secs(5),
    };
    let max_attempts = k.max_attempts.unwrap_or(5);
    if !(1..=100).contains(&max_attempts) {
        return Err((
            "kubernetes.max_attempts",
            format!("must be 1-100, got {max_attempts}"),
        ));
    }
    let certificate_key_refresh = certificate_key_refresh(k)?;
    Ok(Kubernetes {
        certificate_key_refresh,
        distro,
        install_command: k.install_command.clone(),
        remove_command: k.remove_command.clone(),
        health,
        worker_health,
        install_timeout,
        worker_parallelism: worker_parallelism as u32,
        retry_backoff,
        max_attempts: max_attempts as u32,
    })
}

/// `[rpc] listen` and `[[rpc.operators]]`: an address with a port, and at least one operator
/// (a listener nobody may use is a mistake); names unique, keys 64 hex digits, access
/// `read-only` or `admin`.
/// `[rpc] listen` and its operators, as the config gives them.
type RpcRemote = (Option<SocketAddr>, Vec<operators::Operator>);

fn rpc_remote(rpc: &RpcSection) -> Result<RpcRemote, (&'static str, String)> {
    let mut operators = Vec::new();
    for (n, o) in rpc.operators.iter().enumerate() {
        let at = |what: &str| format!("operator {} ({:?}): {what}", n + 1, o.name);
        if o.name.trim().is_empty() || o.name.len() > 64 {
            return Err(("rpc.operators", at("name must be 1-64 characters")));
        }
        if operators
            .iter()
            .any(|x: &operators::Operator| x.name == o.name)
        {
            return Err(("rpc.operators", at("the name is used twice")));
        }
        let public_key = operators::parse_public_key(&o.public_key)
            .map_err(|e| ("rpc.operators", at(&format!("public_key: {e}"))))?;
        let access = match o.access.as_str() {
            "read-only" => operators::Access::ReadOnly,
            "admin" => operators::Access::Admin,
            other => {
                return Err((
                    "rpc.operators",
                    at(&format!(
                        "access must be \"read-only\" or \"admin\", got {other:?}"
                    )),
                ))
            }
        };
        operators.push(operators::Operator {
            name: o.name.clone(),
            public_key,
            access,
        });
    }
    let listen = match &rpc.listen {
        None => None,
        Some(l) => {
            let addr = l.trim().parse::<SocketAddr>().map_err(|_| {
                (
                    "rpc.listen",
                    format!("expected IP:PORT (e.g. \"0.0.0.0:7947\"), got {l:?}"),
                )
            })?;
            if addr.port() == 0 {
                return Err(("rpc.listen", "port must not be 0".into()));
            }
            if operators.is_empty() {
                return Err((
                    "rpc.listen",
                    "no [[rpc.operators]] are listed: nobody could use it (make a key with `muster operator keygen`)".into(),
                ));
            }
            Some(addr)
        }
    };
    Ok((listen, operators))
}

/// `[kubernetes] certificate_key_refresh`: kubeadm's default is 90 minutes (its uploaded
/// certificates are deleted after two hours); `none` may set one for hooks that do everything;
/// k3s and RKE2 have no certificate key, so the key is refused there.
fn certificate_key_refresh(
    k: &KubernetesSection,
) -> Result<Option<Duration>, (&'static str, String)> {
    const KEY: &str = "kubernetes.certificate_key_refresh";
    let refresh = match &k.certificate_key_refresh {
        Some(t) => Some(parse_duration(t).map_err(|m| (KEY, m))?),
        None if k.distribution == "kubeadm" => Some(Duration::from_millis(
            muster_core::certs::KUBEADM_REFRESH_MS,
        )),
        None => None,
    };
    match refresh {
        Some(_) if matches!(k.distribution.as_str(), "k3s" | "rke2") => Err((
            KEY,
            format!(
                "{} has no certificate key to refresh (only kubeadm and none take it)",
                k.distribution
            ),
        )),
        Some(d) if d < Duration::from_secs(1) || d > Duration::from_secs(2 * 60 * 60) => Err((
            KEY,
            format!("must be between 1s and 120m (kubeadm deletes uploaded certificates after two hours), got {d:?}"),
        )),
        r => Ok(r),
    }
}

/// `[node] roles` as a pin: both (the default), only `control-plane`, or only `worker`.
fn role_pin(roles: Option<&[String]>) -> Result<muster_proto::RolePin, String> {
    use muster_proto::RolePin;
    let Some(roles) = roles else {
        return Ok(RolePin::Any);
    };
    let (mut cp, mut worker) = (false, false);
    for r in roles {
        match r.as_str() {
            "control-plane" => cp = true,
            "worker" => worker = true,
            other => {
                return Err(format!(
                    "each entry must be \"control-plane\" or \"worker\", got {other:?}"
                ))
            }
        }
    }
    match (cp, worker) {
        (true, true) => Ok(RolePin::Any),
        (true, false) => Ok(RolePin::ControlPlane),
        (false, true) => Ok(RolePin::Worker),
        (false, false) => Err("must name at least one of \"control-plane\", \"worker\"".into()),
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "muster".into())
}

/// Resolves "host:port" (numeric or a name) to one socket address.
fn resolve(entry: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = entry.parse::<SocketAddr>() {
        return Ok(a);
    }
    use std::net::ToSocketAddrs;
    match entry.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("{entry:?} resolves to no address")),
        Err(e) => Err(format!("{entry:?} is not \"host:port\": {e}")),
    }
}

/// Builds the VIP settings; an error names the key.
fn vip_config(
    interface: &str,
    section: &VipSection,
) -> Result<muster_vip::VipConfig, (&'static str, String)> {
    let mut addresses = Vec::new();
    for (key, value) in [
        ("vip.address", &section.address),
        ("vip.address6", &section.address6),
    ] {
        if let Some(v) = value {
            v.parse::<muster_vip::IpCidr>()
                .map_err(|e| (key, e.to_string()))?;
            addresses.push(v.as_str());
        }
    }
    if addresses.is_empty() {
        return Err((
            "vip.address",
            "a [vip] section needs address and/or address6".into(),
        ));
    }
    muster_vip::VipConfig::parse(interface, &addresses).map_err(|e| ("vip", e.to_string()))
}

/// Parses a human duration: "250ms", "10s", "2m".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like \"500ms\", \"10s\" or \"2m\""))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{s:?} is too long")),
        _ => Err(format!("{s:?}: unit must be ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
name = "edge-1"
data_dir = "/var/lib/muster"
[site]
key_file = "/etc/muster/site.key"
expected_nodes = 3
control_plane_count = 3
[network]
interface = "eth0"
listen_port = 7946
bootstrap = ["10.0.0.2:7946"]
[rpc]
socket = "/run/muster/muster.sock"
[vip]
address = "10.0.0.100/24"
"#;

    fn err(text: &str) -> String {
        Config::parse(Path::new("muster.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn operator_contract_example_parses() {
        let c = Config::parse(Path::new("muster.toml"), GOOD).unwrap();
        assert_eq!(c.name, "edge-1");
        assert_eq!(c.expected_nodes, 3);
        assert_eq!(c.bootstrap, vec!["10.0.0.2:7946".parse().unwrap()]);
        assert_eq!(c.vip.unwrap().addresses().len(), 1);
        assert_eq!(c.settle, Duration::from_secs(10));
    }

    #[test]
    fn kubernetes_section_parses_and_bad_values_name_their_key() {
        let k = format!(
            "{GOOD}[kubernetes]\ndistribution = \"none\"\ninstall_command = \"/usr/libexec/muster/hooks/etcd\"\nhealth_command = \"/usr/libexec/muster/hooks/health\"\ninstall_timeout = \"2m\"\nworker_parallelism = 2\n"
        );
        let c = Config::parse(Path::new("muster.toml"), &k).unwrap();
        let kube = c.kubernetes.expect("kubernetes");
        assert_eq!(kube.install_timeout, Duration::from_secs(120));
        assert_eq!(kube.worker_parallelism, 2);
        assert_eq!(kube.max_attempts, 5);
        let e = err(&k.replace("\"none\"", "\"k8s\""));
        assert!(
            e.contains("kubernetes.distribution") && e.contains("got \"k8s\""),
            "{e}"
        );
        let e = err(&k.replace("\"none\"", "\"k3s\""));
        assert!(
            e.contains("kubernetes.version") && e.contains("required"),
            "{e}"
        );
        let k3s = k.replace("\"none\"", "\"k3s\"\nversion = \"v1.30.2+k3s1\"");
        let c = Config::parse(Path::new("muster.toml"), &k3s).unwrap();
        let d = c.kubernetes.expect("kubernetes").distro;
        assert_eq!(d.distribution, muster_k8s::Distribution::K3s);
        assert_eq!(d.cluster_cidr, muster_k8s::K3S_CLUSTER_CIDR);
        let e = err(&k3s.replace("v1.30.2+k3s1", "v1.22.0+k3s1"));
        assert!(e.contains("kubernetes") && e.contains("1.22"), "{e}");
        let e = err(&format!("{k3s}[kubernetes.config]\ntoken = \"mine\"\n"));
        assert!(e.contains("token"), "a reserved key is refused: {e}");
        let e = err(&format!(
            "{k3s}[kubernetes.proxy]\nhttp_proxy = \"http://p:3128\"\nno_proxi = []\n"
        ));
        assert!(e.contains("no_proxi"), "{e}");
        let e = err(&k.replace("\"/usr/libexec/muster/hooks/etcd\"", "\"hooks/etcd\""));
        assert!(
            e.contains("kubernetes.install_command") && e.contains("absolute"),
            "{e}"
        );
        let e = err(&k.replace("worker_parallelism = 2", "worker_parallelism = 0"));
        assert!(e.contains("kubernetes.worker_parallelism"), "{e}");
        let e = err(&k.replace("worker_parallelism = 2", "worker_paralelism = 2"));
        assert!(e.contains("worker_paralelism"), "a typo is an error: {e}");
    }

    #[test]
    fn rpc_listen_needs_operators_and_each_operator_is_checked() {
        let key = "6d64bbee1a51acc6f15998138623e73ec4d8133c4c5029990eed8186ed8f6c0e";
        let with = |rpc: &str| {
            let socket = "socket = \"/run/muster/muster.sock\"\n";
            let text = GOOD.replace(socket, &format!("{socket}{rpc}"));
            Config::parse(Path::new("muster.toml"), &text).map_err(|e| format!("{e:#}"))
        };
        let op = |name: &str, k: &str, access: &str| {
            format!("[[rpc.operators]]\nname = \"{name}\"\npublic_key = \"{k}\"\naccess = \"{access}\"\n")
        };
        let c = with("").expect("off by default");
        assert_eq!((c.rpc_listen, c.operators.len()), (None, 0));
        let e = with("listen = \"0.0.0.0:7947\"\n").unwrap_err();
        assert!(
            e.contains("rpc.listen") && e.contains("no [[rpc.operators]]"),
            "{e}"
        );
        let c = with(&format!(
            "listen = \"0.0.0.0:7947\"\n{}",
            op("fleet", key, "read-only")
        ))
        .expect("valid");
        assert_eq!(c.rpc_listen, Some("0.0.0.0:7947".parse().unwrap()));
        assert_eq!(c.operators[0].access, operators::Access::ReadOnly);
        for (bad, want) in [
            (op("fleet", "abc", "admin"), "64 hex digits"),
            (op("fleet", key, "root"), "read-only\" or \"admin"),
            (
                format!("{}{}", op("a", key, "admin"), op("a", key, "admin")),
                "used twice",
            ),
        ] {
            let e = with(&format!("listen = \"0.0.0.0:7947\"\n{bad}")).unwrap_err();
            assert!(e.contains("rpc.operators") && e.contains(want), "{e}");
        }
        let e = with(&format!("listen = \"7947\"\n{}", op("a", key, "admin"))).unwrap_err();
        assert!(e.contains("rpc.listen") && e.contains("IP:PORT"), "{e}");
    }

    #[test]
    fn certificate_key_refresh_defaults_for_kubeadm_and_is_refused_where_there_is_no_key() {
        let k = format!(
            "{GOOD}[kubernetes]\ndistribution = \"none\"\ninstall_command = \"/usr/libexec/muster/hooks/install\"\n"
        );
        let refresh = |text: &str| {
            Config::parse(Path::new("muster.toml"), text)
                .map(|c| c.kubernetes.expect("kubernetes").certificate_key_refresh)
                .map_err(|e| format!("{e:#}"))
        };
        assert_eq!(refresh(&k), Ok(None), "none: off unless set");
        assert_eq!(
            refresh(&format!("{k}certificate_key_refresh = \"30s\"\n")),
            Ok(Some(Duration::from_secs(30)))
        );
        let kubeadm = k.replace("\"none\"", "\"kubeadm\"\nversion = \"v1.30.2\"");
        assert_eq!(
            refresh(&kubeadm),
            Ok(Some(Duration::from_secs(90 * 60))),
            "kubeadm: 90 minutes"
        );
        let e = refresh(&format!("{kubeadm}certificate_key_refresh = \"180m\"\n")).unwrap_err();
        assert!(
            e.contains("kubernetes.certificate_key_refresh") && e.contains("120m"),
            "{e}"
        );
        let k3s = k.replace("\"none\"", "\"k3s\"\nversion = \"v1.30.2+k3s1\"");
        assert_eq!(refresh(&k3s), Ok(None));
        let e = refresh(&format!("{k3s}certificate_key_refresh = \"60m\"\n")).unwrap_err();
        assert!(
            e.contains("kubernetes.certificate_key_refresh")
                && e.contains("k3s has no certificate key"),
            "{e}"
        );
    }

    #[test]
    fn health_gate_keys_parse_and_conflicts_name_their_key() {
        let base = format!(
            "{GOOD}[kubernetes]\ndistribution = \"none\"\ninstall_command = \"/usr/libexec/muster/hooks/install\"\n"
        );
        let kube = |extra: &str| {
            Config::parse(Path::new("muster.toml"), &format!("{base}{extra}"))
                .map(|c| c.kubernetes.expect("kubernetes"))
        };
        let k = kube("").unwrap();
        assert_eq!(
            (k.health, k.worker_health),
            (HealthCheck::Hook, HealthCheck::Hook),
            "distribution none: no probe unless configured"
        );
        let k = kube(
            "health_url = \"https://127.0.0.1:6443/readyz\"\nhealth_ca_file = \"/etc/kubernetes/pki/ca.crt\"\nhealth_server_name = \"kubernetes\"\nhealth_client_cert = \"/etc/muster/c.crt\"\nhealth_client_key = \"/etc/muster/c.key\"\nworker_health_url = \"http://127.0.0.1:10248/healthz\"\n",
        )
        .unwrap();
        let HealthCheck::Url(cp) = k.health else {
            panic!("a URL gate: {:?}", k.health)
        };
        assert_eq!(cp.server_name.as_deref(), Some("kubernetes"));
        assert_eq!(
            cp.client.map(|c| c.key),
            Some(PathBuf::from("/etc/muster/c.key"))
        );
        assert!(matches!(k.worker_health, HealthCheck::Url(u) if u.url.ends_with("10248/healthz")));
        let e = kube("health_url = \"http://127.0.0.1/ok\"\nhealth_command = \"/bin/true\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kubernetes.health_command") && e.contains("not both"),
            "{e}"
        );
        let e = kube("worker_health_url = \"tcp://127.0.0.1:10248\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kubernetes.worker_health_url"), "{e}");
        let e = kube("health_url = \"http://127.0.0.1/ok\"\nhealth_urll = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("health_urll"), "a typo is an error: {e}");
    }

    #[test]
    fn node_roles_pin_a_host_and_bad_entries_name_the_key() {
        let with = |roles: &str| GOOD.replace("[node]\n", &format!("[node]\nroles = {roles}\n"));
        let pin =
            |roles: &str| Config::parse(Path::new("muster.toml"), &with(roles)).map(|c| c.role_pin);
        assert_eq!(pin("[\"worker\"]").unwrap(), muster_proto::RolePin::Worker);
        assert_eq!(
            pin("[\"control-plane\"]").unwrap(),
            muster_proto::RolePin::ControlPlane
        );
        assert_eq!(
            pin("[\"worker\", \"control-plane\"]").unwrap(),
            muster_proto::RolePin::Any
        );
        let e = err(&with("[\"master\"]"));
        assert!(e.contains("node.roles") && e.contains("\"master\""), "{e}");
        let e = err(&with("[]"));
        assert!(
            e.contains("node.roles") && e.contains("at least one"),
            "{e}"
        );
    }

    #[test]
    fn even_control_plane_count_is_refused_by_key() {
        let e = err(&GOOD.replace("control_plane_count = 3", "control_plane_count = 4"));
        assert!(
            e.contains("site.control_plane_count") && e.contains("got 4"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_an_error_with_its_name_and_line() {
        let e = err(&GOOD.replace("expected_nodes = 3", "expected_node = 3"));
        assert!(e.contains("expected_node") && e.contains("line"), "{e}");
    }

    #[test]
    fn missing_required_key_is_named() {
        let e = err(&GOOD.replace("interface = \"eth0\"\n", ""));
        assert!(e.contains("interface"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        assert!(err(&GOOD.replace("10.0.0.2:7946", "nonsense")).contains("network.bootstrap"));
        assert!(err(&GOOD.replace("10.0.0.100/24", "10.0.0.100")).contains("vip.address"));
        assert!(
            err(&GOOD.replace("listen_port = 7946", "listen_port = 70000"))
                .contains("network.listen_port")
        );
        assert!(
            err(&GOOD.replace("expected_nodes = 3", "expected_nodes = \"three\""))
                .contains("expected_nodes")
        );
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_validated_by_key() {
        let c = Config::parse(Path::new("m.toml"), GOOD).unwrap();
        assert_eq!(c.metrics_listen, None);
        let on = format!("{GOOD}[metrics]\nlisten = \"127.0.0.1:9464\"\n");
        let c = Config::parse(Path::new("m.toml"), &on).unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        for bad in ["localhost:9464", "127.0.0.1", "127.0.0.1:0", ""] {
            let text = format!("{GOOD}[metrics]\nlisten = \"{bad}\"\n");
            let e = err(&text);
            assert!(e.contains("metrics.listen"), "{bad:?}: {e}");
        }
        assert!(err(&format!("{GOOD}[metrics]\nport = 1\n")).contains("port"));
    }

    #[test]
    fn timing_is_validated_by_key() {
        let timing = |t: &str| err(&format!("{GOOD}\n[timing]\n{t}\n"));
        assert!(timing("tick = \"1ms\"").contains("timing.tick"));
        assert!(timing("election_ticks = 2").contains("timing.election_ticks"));
        assert!(timing("heartbeat_ticks = 9").contains("timing.heartbeat_ticks"));
        assert!(timing("tick = \"soon\"").contains("timing.tick"));
        // Found by fuzzing (crates/muster-fuzz/regressions/config): these overflowed.
        assert!(timing("tick = \"310000000000000000m\"").contains("timing.tick"));
        assert!(timing("heartbeat_ticks = 9223372036854775807").contains("timing.heartbeat_ticks"));
        // Valid raft timing, but with a VIP the lease would lapse between heartbeats.
        let lapsing = format!("{GOOD}\n[timing]\nelection_ticks = 4\nheartbeat_ticks = 2\n");
        let e = err(&lapsing);
        assert!(
            e.contains("timing.election_ticks") && e.contains("heartbeat"),
            "{e}"
        );
        let ok = Config::parse(
            Path::new("m.toml"),
            &format!("{GOOD}\n[timing]\ntick = \"10ms\"\n"),
        )
        .unwrap();
        assert_eq!(ok.tick, Duration::from_millis(10));
    }

    /// `deploy/muster.toml` with its commented `# key = value` and `# [section]` lines
    /// uncommented.
    fn example_uncommented() -> String {
        let example = include_str!("../../../deploy/muster.toml");
        let is_key = |body: &str| {
            body.starts_with('[')
                || body.split_once(" = ").is_some_and(|(k, _)| {
                    let k = k.trim_matches('"');
                    !k.is_empty()
                        && k.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c)
                        })
                })
        };
        example
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(body) if is_key(body) => body,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The fields the parser accepts in `section` ("" = top level), as serde's unknown-field
    /// error lists them.
    fn accepted_fields(text: &str, section: &str) -> Vec<String> {
        let probed = if section.is_empty() {
            format!("zz_probe = 1\n{text}")
        } else {
            let header = format!("[{section}]");
            text.lines()
                .flat_map(|l| {
                    let probe = l.split_whitespace().next() == Some(header.as_str());
                    std::iter::once(l).chain(probe.then_some("zz_probe = 1"))
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let e = toml::from_str::<File>(&probed).expect_err("the probe is refused");
        let message = e.to_string();
        let expected = message.split_once(", expected ").map_or("", |(_, e)| e);
        let fields: Vec<String> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        assert!(!fields.is_empty(), "[{section}]: {message}");
        fields
    }

    #[test]
    fn deploy_example_documents_every_key_the_parser_accepts() {
        let example = include_str!("../../../deploy/muster.toml");
        Config::parse(Path::new("deploy/muster.toml"), example).expect("the example as shipped");
        let text = example_uncommented();
        // Every documented key is one the parser takes (a typo in the docs fails here)...
        toml::from_str::<File>(&text).unwrap_or_else(|e| panic!("documented but refused: {e}"));
        let table: toml::Table = toml::from_str(&text).expect("toml");
        // ... and every key it takes is documented.
        let sections = accepted_fields(&text, "");
        for section in &sections {
            assert!(table.contains_key(section), "[{section}] is not documented");
        }
        let nested = ["kubernetes.proxy"];
        for section in sections.iter().map(String::as_str).chain(nested) {
            let documented = section
                .split('.')
                .try_fold(&table, |t, part| t.get(part).and_then(|v| v.as_table()))
                .unwrap_or_else(|| panic!("[{section}] is not a table"));
            for field in accepted_fields(&text, section) {
                assert!(
                    documented.contains_key(&field),
                    "{section}.{field} is not documented in deploy/muster.toml"
                );
            }
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("10 parsecs").is_err());
    }
}
