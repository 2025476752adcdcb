//! A site: a bridge namespace plus one namespace per host, each running a real `muster agent`.
//!
//! Tests, the demo and the benchmark build a [`Site`], start agents, read their status and
//! assert on it. Dropping the site (or [`Site::teardown`]) SIGKILLs every agent and deletes every
//! namespace it made, also when the test panicked — then it first prints each host's log tail.
//!
//! Agents get SIGKILL as parent-death signal, bound to the *thread* that started them: start and
//! restart agents from the thread that owns the site (a test body, `main`), not from short-lived
//! helper threads.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cli::{preflight, Muster};
use crate::config::{AgentConfig, Override};
use crate::formed::{check_agreement, expected_voters, Formed};
use crate::host::Host;
use crate::names::{self, HOST_IFACE};
use crate::netns;
use crate::status::Status;

/// Default `[network] listen_port`.
pub const LISTEN_PORT: u16 = 7946;
/// How often `wait_until` / `wait_formed` poll.
pub const POLL_MS: u64 = 100;
/// Lines of each host's log printed on failure.
pub const LOG_TAIL_LINES: usize = 60;
/// Set to `1` to keep the site's temp directory (configs, data, logs) after teardown.
pub const KEEP_ENV: &str = "MUSTER_TESTBED_KEEP";

/// How hosts find each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// mDNS on the bridge; `bootstrap = []`.
    Mdns,
    /// `bootstrap` lists every other host's `ip:port`, and the bridge drops all multicast, so
    /// only the bootstrap lists can make the site form.
    Bootstrap,
}

/// Knobs of a site besides its prefix and host count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteOptions {
    /// `[site] expected_nodes`; `None`: the number of hosts.
    pub expected_nodes: Option<usize>,
    /// `[site] control_plane_count`; `None`: 3, or 1 for sites of fewer than 3 hosts.
    pub control_plane_count: Option<usize>,
    /// mDNS or bootstrap lists.
    pub discovery: Discovery,
    /// `[network] listen_port`.
    pub listen_port: u16,
    /// `[vip] address` (and `address6`) for every host; `None`: no `[vip]` section.
    pub vip: Option<VipAddresses>,
    /// Whether to add a client namespace `<prefix>-c` (10.77.0.250, no agent) on the bridge.
    pub client: bool,
    /// The `muster` binary the agents run; `None`: [`Muster::locate`].
    pub muster_bin: Option<std::path::PathBuf>,
}

/// The `[vip]` section every host of a site gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipAddresses {
    /// `[vip] address`, e.g. [`names::VIP_V4`].
    pub address: String,
    /// `[vip] address6`, e.g. [`names::VIP_V6`].
    pub address6: Option<String>,
}

impl Default for SiteOptions {
    fn default() -> Self {
        Self {
            expected_nodes: None,
            control_plane_count: None,
            discovery: Discovery::Mdns,
            listen_port: LISTEN_PORT,
            vip: None,
            client: false,
            muster_bin: None,
        }
    }
}

impl SiteOptions {
    /// Sets `expected_nodes`.
    pub fn expected_nodes(mut self, n: usize) -> Self {
        self.expected_nodes = Some(n);
        self
    }

    /// Sets `control_plane_count`.
    pub fn control_plane_count(mut self, n: usize) -> Self {
        self.control_plane_count = Some(n);
        self
    }

    /// Sets the discovery mode.
    pub fn discovery(mut self, d: Discovery) -> Self {
        self.discovery = d;
        self
    }

    /// Gives every host `[vip] address = "10.77.0.100/24"` and, with `ipv6`, `address6 =
    /// "fd77::100/64"`.
    pub fn vip(mut self, ipv6: bool) -> Self {
        self.vip = Some(VipAddresses {
            address: names::VIP_V4.to_owned(),
            address6: ipv6.then(|| names::VIP_V6.to_owned()),
        });
        self
    }

    /// Adds the client namespace (see [`crate::vipsite`]).
    pub fn client(mut self) -> Self {
        self.client = true;
        self
    }

    /// Runs the agents from this `muster` binary (e.g. an earlier release, for a benchmark's
    /// peer) instead of the located one.
    pub fn muster_bin(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.muster_bin = Some(path.into());
        self
    }
}

/// A running testbed site. See the module docs.
#[derive(Debug)]
pub struct Site {
    prefix: String,
    expected_nodes: usize,
    control_plane_count: usize,
    discovery: Discovery,
    listen_port: u16,
    pub(crate) vip: Option<VipAddresses>,
    pub(crate) client_ns: Option<String>,
    muster: Muster,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    site_key: PathBuf,
    bridge_ns: String,
    hosts: Vec<Host>,
    /// Namespaces made by this site, in creation order.
    namespaces: Vec<String>,
    torn_down: bool,
    logs_dumped: AtomicBool,
}

impl Site {
    /// Builds site `prefix` with `hosts` hosts: removes stale namespaces of the prefix, creates
    /// the topology, generates the shared site key and writes every host's config. Nothing runs
    /// yet; call [`Site::start`] / [`Site::start_all`].
    pub fn new(prefix: &str, hosts: usize, opts: SiteOptions) -> Result<Self> {
        names::validate_prefix(prefix)?;
        names::validate_hosts(hosts)?;
        preflight()?;
        let muster = match &opts.muster_bin {
            Some(path) => Muster::at(path)?,
            None => Muster::locate()?,
        };
        let stale = netns::sweep_stale(prefix)?;
        if !stale.is_empty() {
            eprintln!("muster-testbed: removed stale namespaces {stale:?}");
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("muster-{prefix}-"))
            .tempdir()
            .context("creating the site's temp dir")?;
        let root = dir.path().to_path_buf();
        let site_key = root.join("site.key");
        let default_cp = if hosts >= 3 { 3 } else { 1 };
        let mut site = Self {
            prefix: prefix.to_owned(),
            expected_nodes: opts.expected_nodes.unwrap_or(hosts),
            control_plane_count: opts.control_plane_count.unwrap_or(default_cp),
            discovery: opts.discovery,
            listen_port: opts.listen_port,
            vip: opts.vip.clone(),
            client_ns: opts.client.then(|| names::client_ns(prefix)),
            muster,
            dir: Some(dir),
            root,
            site_key,
            bridge_ns: names::bridge_ns(prefix),
            hosts: Vec::with_capacity(hosts),
            namespaces: Vec::new(),
            torn_down: false,
            logs_dumped: AtomicBool::new(false),
        };
        // From here on, Drop removes whatever was made if a step fails.
        site.build(hosts)?;
        Ok(site)
    }

    fn build(&mut self, hosts: usize) -> Result<()> {
        netns::create_bridge(&self.bridge_ns)?;
        self.namespaces.push(self.bridge_ns.clone());
        for i in 0..hosts {
            let ns = names::host_ns(&self.prefix, i);
            let port = names::bridge_port(&self.prefix, i);
            self.namespaces.push(ns.clone());
            netns::add_host(&self.prefix, &self.bridge_ns, &ns, i)
                .with_context(|| format!("creating host {i} ({ns})"))?;
            if self.discovery == Discovery::Bootstrap {
                netns::set_port_multicast(&self.bridge_ns, &port, false)?;
            }
            self.hosts
                .push(Host::new(i, ns, port, &self.root, self.site_key.clone())?);
        }
        if let Some(ns) = self.client_ns.clone() {
            self.namespaces.push(ns.clone());
            let v6 = self
                .vip
                .as_ref()
                .and_then(|v| v.address6.as_ref())
                .map(|_| names::CLIENT_IP6);
            let port = names::client_port(&self.prefix);
            netns::add_client(&self.bridge_ns, &ns, &port, names::CLIENT_IP, v6)
                .with_context(|| format!("creating the client ({ns})"))?;
        }
        self.muster.keygen(&self.site_key)?;
        for i in 0..hosts {
            self.write_config(i, &[])?;
        }
        Ok(())
    }

    // ----- accessors -------------------------------------------------------------------------

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether the site has no hosts (never true for a built site).
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// All host indices, `0..len()`.
    pub fn all(&self) -> Vec<usize> {
        (0..self.hosts.len()).collect()
    }

    /// The site's namespace/interface prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The muster binary in use.
    pub fn muster(&self) -> &Muster {
        &self.muster
    }

    /// The site's temp directory (site key, one subdirectory per host).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The configured `control_plane_count`.
    pub fn control_plane_count(&self) -> usize {
        self.control_plane_count
    }

    /// Host `i`'s files and process (panics on a bad index: a bug in the test).
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Host `i`'s namespace.
    pub fn namespace(&self, i: usize) -> &str {
        &self.hosts[i].ns
    }

    /// The namespace holding the bridge.
    pub fn bridge_namespace(&self) -> &str {
        &self.bridge_ns
    }

    /// The site's IPv4 VIP without its prefix length (what hooks get as `MUSTER_ENDPOINT`);
    /// `None` without `[vip]`.
    pub fn vip_address(&self) -> Option<String> {
        let vip = self.vip.as_ref()?;
        vip.address.split('/').next().map(str::to_owned)
    }

    /// Host `i`'s IPv4 address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        names::host_ip(i)
    }

    /// Host `i`'s `ip:port`.
    pub fn addr(&self, i: usize) -> String {
        format!("{}:{}", names::host_ip(i), self.listen_port)
    }

    // ----- configuration ---------------------------------------------------------------------

    /// The base config of host `i` (before overrides).
    pub fn agent_config(&self, i: usize) -> AgentConfig {
        let h = &self.hosts[i];
        let bootstrap = match self.discovery {
            Discovery::Mdns => Vec::new(),
            Discovery::Bootstrap => (0..self.len())
                .filter(|&j| j != i)
                .map(|j| self.addr(j))
                .collect(),
        };
        AgentConfig {
            name: names::node_name(i),
            data_dir: h.data_dir.clone(),
            key_file: h.key_file.clone(),
            expected_nodes: self.expected_nodes,
            control_plane_count: self.control_plane_count,
            interface: HOST_IFACE.to_owned(),
            listen_port: self.listen_port,
            bootstrap,
            socket: h.socket.clone(),
        }
    }

    /// (Re)writes host `i`'s config with `overrides` (replacing earlier overrides; applied after
    /// the site's `[vip]` section, if any). Takes effect at the next start. Returns the path.
    pub fn write_config(&mut self, i: usize, overrides: &[Override]) -> Result<PathBuf> {
        let mut all = Vec::new();
        if let Some(vip) = &self.vip {
            all.push(("vip.address".to_owned(), vip.address.clone().into()));
            if let Some(v6) = &vip.address6 {
                all.push(("vip.address6".to_owned(), v6.clone().into()));
            }
        }
        all.extend_from_slice(overrides);
        let text = self.agent_config(i).render(&all)?;
        let h = &mut self.hosts[i];
        h.overrides = overrides.to_vec();
        std::fs::write(&h.config_path, text)
            .with_context(|| format!("writing {}", h.config_path.display()))?;
        Ok(h.config_path.clone())
    }

    /// Gives host `i` its own, different site key (`muster keygen`) and rewrites its config.
    pub fn use_own_key(&mut self, i: usize) -> Result<PathBuf> {
        let key = self.hosts[i].dir.join("own-site.key");
        self.muster.keygen(&key)?;
        self.hosts[i].key_file = key.clone();
        let overrides = self.hosts[i].overrides.clone();
        self.write_config(i, &overrides)?;
        Ok(key)
    }

    /// Sets `key=value` in host `i`'s agent environment (e.g. a test fault), from its next start.
    pub fn set_env(&mut self, i: usize, key: &str, value: &str) {
        let env = &mut self.hosts[i].env;
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.to_owned()));
    }

    // ----- processes -------------------------------------------------------------------------

    /// Starts host `i`'s agent.
    pub fn start(&mut self, i: usize) -> Result<()> {
        let muster = self.muster.path().to_path_buf();
        self.hosts[i].start(&muster)
    }

    /// Starts every host's agent, back to back.
    pub fn start_all(&mut self) -> Result<()> {
        (0..self.len()).try_for_each(|i| self.start(i))
    }

    /// SIGKILLs host `i`'s agent (no-op if it is not running).
    pub fn kill(&mut self, i: usize) -> Result<()> {
        self.hosts[i].kill()
    }

    /// SIGTERMs host `i`'s agent and waits for it to exit.
    pub fn terminate(&mut self, i: usize) -> Result<ExitStatus> {
        self.hosts[i].terminate()
    }

    /// SIGKILLs host `i`'s agent if it runs, then starts it again with its current config.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i)?;
        self.start(i)
    }

    /// Whether host `i`'s agent process is alive.
    pub fn is_running(&self, i: usize) -> bool {
        self.hosts[i].is_running()
    }

    /// Indices of hosts whose agent is alive.
    pub fn running(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.is_running(i)).collect()
    }

    // ----- network ---------------------------------------------------------------------------

    /// Plugs (`up`) or pulls host `i`'s cable: sets the bridge side of its veth up or down.
    pub fn set_link(&self, i: usize, up: bool) -> Result<()> {
        netns::set_port(&self.bridge_ns, &self.hosts[i].port, up)
    }

    /// Lets multicast reach host `i` (`on`) or drops it at the bridge.
    pub fn set_multicast(&self, i: usize, on: bool) -> Result<()> {
        netns::set_port_multicast(&self.bridge_ns, &self.hosts[i].port, on)
    }

    // ----- status ----------------------------------------------------------------------------

    /// `muster status --socket <host i's socket> --json`.
    pub fn status(&self, i: usize) -> Result<serde_json::Value> {
        let h = &self.hosts[i];
        let value = self.muster.status_json(&h.socket).with_context(|| {
            let state = match (h.is_running(), h.last_exit()) {
                (true, _) => "running".to_owned(),
                (false, Some(exit)) => format!("exited: {exit}"),
                (false, None) => "not started".to_owned(),
            };
            format!("status of host {i} ({}; agent {state})", h.ns)
        })?;
        if let Some(id) = value.get("node_id").and_then(|v| v.as_str()) {
            h.set_node_id(id);
        }
        Ok(value)
    }

    /// [`Site::status`], parsed and validated.
    pub fn status_view(&self, i: usize) -> Result<Status> {
        let value = self.status(i)?;
        Status::from_json(&value).with_context(|| format!("status of host {i}"))
    }

    /// `muster status --socket <host i's socket>`: the human-readable output.
    pub fn status_human(&self, i: usize) -> Result<String> {
        self.muster.status_human(&self.hosts[i].socket)
    }

    /// The node id host `i` last reported through `status`.
    pub fn node_id(&self, i: usize) -> Option<String> {
        self.hosts[i].node_id()
    }

    /// The host that last reported node id `id`.
    pub fn host_of(&self, id: &str) -> Option<usize> {
        (0..self.len()).find(|&i| self.node_id(i).as_deref() == Some(id))
    }

    /// One line per host: its status summary, or why it has none. For progress and errors.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for i in 0..self.len() {
            let line = match self.status_view(i) {
                Ok(s) => s.summary(),
                Err(e) => format!("{e:#}"),
            };
            out.push_str(&format!("\n  host {i}: {line}"));
        }
        out
    }

    /// Checks that the site has formed over `hosts`: every *running* host among them reports
    /// the same cluster and leader (a running host and a voter), and exactly the node ids of
    /// all of `hosts` as members (stopped ones by the id they last reported), with
    /// `min(control_plane_count, hosts.len())` voters.
    pub fn check_formed(&self, hosts: &[usize]) -> Result<Formed> {
        let mut views = Vec::new();
        for &i in hosts {
            if self.is_running(i) {
                views.push((i, self.status_view(i)?));
            }
        }
        let mut expected = BTreeSet::new();
        for &i in hosts {
            let id = self
                .node_id(i)
                .with_context(|| format!("host {i} is stopped and never reported its node id"))?;
            expected.insert(id);
        }
        let voters = expected_voters(self.control_plane_count, hosts.len());
        check_agreement(&views, &expected, voters)
    }

    /// Polls [`Site::check_formed`] until it holds or `timeout` passes; the error carries the
    /// last reason and every host's status.
    pub fn wait_formed(&self, timeout: Duration, hosts: &[usize]) -> Result<Formed> {
        let deadline = Instant::now() + timeout;
        loop {
            let err = match self.check_formed(hosts) {
                Ok(formed) => return Ok(formed),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                bail!(
                    "hosts {hosts:?} did not form within {:?}: {err:#}\nstatus:{}",
                    timeout,
                    self.describe()
                );
            }
            thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    /// Polls `cond` every [`POLL_MS`] until it returns true or `timeout` passes.
    pub fn wait_until(&self, timeout: Duration, mut cond: impl FnMut(&Site) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "condition not met within {timeout:?}\nstatus:{}",
                    self.describe()
                );
            }
            thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    // ----- logs ------------------------------------------------------------------------------

    /// Host `i`'s whole agent log (all starts).
    pub fn log(&self, i: usize) -> String {
        self.hosts[i].log()
    }

    /// Prints the last [`LOG_TAIL_LINES`] lines of every host's log to stderr.
    pub fn dump_logs(&self) {
        self.logs_dumped.store(true, Ordering::SeqCst);
        for h in &self.hosts {
            eprintln!(
                "===== host {} ({}, {}): last {LOG_TAIL_LINES} lines of {} =====\n{}",
                h.index,
                h.ns,
                names::host_ip(h.index),
                h.log_path.display(),
                h.log_tail(LOG_TAIL_LINES)
            );
        }
    }

    // ----- teardown --------------------------------------------------------------------------

    /// SIGKILLs every agent, then every process left in the site's namespaces, and deletes
    /// every namespace the site made. Idempotent; tries every step and reports the first
    /// failure.
    pub fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut first_err: Option<anyhow::Error> = None;
        for h in &self.hosts {
            if let Err(e) = h.kill() {
                first_err.get_or_insert(e);
            }
        }
        // Whatever else runs in the site's namespaces (a daemon a hook started in its own
        // session, such as etcd, or a helper a test spawned) dies with the site too.
        for ns in &self.namespaces {
            match netns::kill_namespace_processes(ns) {
                Ok(killed) if !killed.is_empty() => {
                    eprintln!("muster-testbed: killed what was left in {ns}: {killed:?}");
                }
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // Hosts first, then the bridge.
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = netns::delete_namespace(ns) {
                first_err.get_or_insert(e.context(format!("deleting namespace {ns}")));
            }
        }
        if let Some(dir) = self.dir.take() {
            if std::env::var(KEEP_ENV).is_ok_and(|v| v == "1") {
                eprintln!("muster-testbed: kept {}", dir.keep().display());
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if thread::panicking() && !self.logs_dumped.load(Ordering::SeqCst) {
            self.dump_logs();
        }
        if let Err(e) = self.teardown() {
            eprintln!(
                "muster-testbed: teardown of site {} failed: {e:#}",
                self.prefix
            );
        }
    }
}
