//! The real-etcd testbed: a site whose install hooks form a real etcd cluster in muster's join
//! order, and what a test reads back from etcd and from the hooks' records.
//!
//! [`EtcdBed::install`] generates a test CA and a server cert per host with `openssl` (SANs:
//! the host's IP, 127.0.0.1 and the VIP), writes `tests/hooks/etcd-hook.sh` and small per-host
//! wrappers under `<site>/etcd/`, and configures every host with `[kubernetes] distribution =
//! "none"`, `install_command` / `health_command` / `worker_health_command` = its wrappers.
//! The end-to-end tests (`tests/etcd.rs`) and `muster-install-bench` then read:
//! [`EtcdBed::records`] (the hooks' own `start` / `end` / `note` / `healthy` lines, with
//! nanosecond times) and etcd itself through `etcdctl` run inside a host's namespace
//! ([`EtcdBed::members`], [`EtcdBed::health`], [`EtcdBed::cluster_id`]). etcd processes run
//! in their own sessions; the site's teardown kills whatever is left in its namespaces.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

use crate::cli::run_with_timeout;
use crate::config::{overrides, Override};
use crate::names;
use crate::site::{Site, POLL_MS};

/// The hook script (modes `install`, `health`, `worker-health`).
pub const HOOK_SCRIPT: &str = include_str!("../hooks/etcd-hook.sh");
/// etcd's client port (TLS).
pub const CLIENT_PORT: u16 = 2379;
/// Longest one `etcdctl` or `openssl` call may take.
pub const TOOL_TIMEOUT_MS: u64 = 15_000;
/// Days the test CA and certs are valid.
const CERT_DAYS: &str = "2";

/// One line of `records.log`: `WHAT ROLE HOST UNIX_NS [DETAIL]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `start`, `end`, `note` or `healthy`.
    pub what: String,
    /// `MUSTER_ROLE` of the run (`probe` for health probes).
    pub role: String,
    /// The host's name.
    pub host: String,
    /// Wall-clock time, ns since the Unix epoch.
    pub at_ns: u128,
    /// The rest of the line: an `end`'s exit code, a note.
    pub detail: String,
}

impl Record {
    /// Parses one line; `None` for a malformed one.
    pub fn parse(line: &str) -> Option<Record> {
        let mut f = line.splitn(5, ' ');
        let what = f.next()?.to_owned();
        let role = f.next()?.to_owned();
        let host = f.next()?.to_owned();
        let at_ns = f.next()?.parse().ok()?;
        let detail = f.next().unwrap_or("").trim().to_owned();
        Some(Record {
            what,
            role,
            host,
            at_ns,
            detail,
        })
    }

    /// Whether this is the start of an install run with role `role`.
    pub fn is_start(&self, role: &str) -> bool {
        self.what == "start" && self.role == role
    }
}

/// One member of `etcdctl member list -w json`.
#[derive(Debug, Clone, Deserialize)]
pub struct EtcdMember {
    /// Member id.
    #[serde(rename = "ID")]
    pub id: u64,
    /// Name; empty while the member was added but never started.
    #[serde(default)]
    pub name: String,
    /// Peer URLs.
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    /// Client URLs; empty while never started.
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct MemberList {
    header: Header,
    #[serde(default)]
    members: Vec<EtcdMember>,
}

#[derive(Debug, Deserialize)]
struct Header {
    cluster_id: u64,
}

#[derive(Debug, Deserialize)]
struct EndpointHealth {
    endpoint: String,
    health: bool,
    #[serde(default)]
    error: Option<String>,
}

/// The etcd testbed of one site. See the module docs.
#[derive(Debug, Clone)]
pub struct EtcdBed {
    dir: PathBuf,
    vip: String,
}

impl EtcdBed {
    /// Sets up `<site>/etcd` (CA, per-host certs, hook, wrappers) and writes every host's
    /// config with the hook and `extra` overrides (e.g. `kubernetes.max_attempts`). The site
    /// needs a VIP (the API endpoint the hooks join through). With `kubernetes.health_url` in
    /// `extra` (e.g. etcd's own `https://127.0.0.1:2379/health` with [`EtcdBed::ca`] as
    /// `health_ca_file`), the control-plane gate is that URL instead of the `health` wrapper.
    pub fn install(site: &mut Site, extra: &[Override]) -> Result<EtcdBed> {
        let vip = site
            .vip_address()
            .context("the etcd testbed needs a VIP (SiteOptions::vip)")?;
        let dir = site.dir().join("etcd");
        std::fs::create_dir_all(&dir)?;
        let hook = dir.join("etcd-hook.sh");
        write_executable(&hook, HOOK_SCRIPT)?;
        make_ca(&dir)?;
        std::fs::write(dir.join("records.log"), "")?;
        let bed = EtcdBed { dir, vip };
        let voters = site.control_plane_count();
        for i in site.all() {
            let name = names::node_name(i);
            let host_dir = bed.dir.join(&name);
            std::fs::create_dir_all(&host_dir)?;
            make_server_cert(
                &bed.dir,
                &host_dir,
                &name,
                &[&site.ip(i).to_string(), &bed.vip],
            )?;
            let mut keys = Vec::new();
            let url_gate = extra.iter().any(|(k, _)| k == "kubernetes.health_url");
            for (mode, key) in [
                ("install", "install_command"),
                ("health", "health_command"),
                ("worker-health", "worker_health_command"),
                ("remove", "remove_command"),
            ] {
                if url_gate && mode == "health" {
                    continue;
                }
                let wrapper = host_dir.join(mode);
                let body = format!(
                    "#!/bin/sh\nETCD_TB_DIR='{}' ETCD_TB_NAME='{name}' ETCD_TB_VIP='{}' \
                     ETCD_TB_VOTERS={voters} exec /bin/sh '{}' {mode}\n",
                    bed.dir.display(),
                    bed.vip,
                    hook.display()
                );
                write_executable(&wrapper, &body)?;
                keys.push((
                    format!("kubernetes.{key}"),
                    wrapper.display().to_string().into(),
                ));
            }
            keys.push(("kubernetes.distribution".into(), "none".into()));
            keys.push(("kubernetes.install_timeout".into(), "150s".into()));
            keys.extend(overrides(extra.iter().cloned()));
            site.write_config(i, &keys)?;
        }
        Ok(bed)
    }

    /// The site's etcd directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The test CA's certificate (what `health_ca_file` would name).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The VIP address (no prefix): the API endpoint.
    pub fn vip(&self) -> &str {
        &self.vip
    }

    /// A flag file the hook reads: while `<etcd dir>/fail-control-plane` exists, a
    /// control-plane run fails right after its `member add` (before starting etcd).
    pub fn fail_flag(&self) -> PathBuf {
        self.dir.join("fail-control-plane")
    }

    /// A flag file the hook reads: while `<etcd dir>/hold-last-join` exists, the control-plane
    /// join that completes the cluster (`control_plane_count` members) waits after starting
    /// its member, before its hook exits (a slow install).
    pub fn hold_flag(&self) -> PathBuf {
        self.dir.join("hold-last-join")
    }

    /// Every record so far, in file order.
    pub fn records(&self) -> Vec<Record> {
        std::fs::read_to_string(self.dir.join("records.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(Record::parse)
            .collect()
    }

    /// Runs `etcdctl --cacert CA --endpoints ENDPOINTS args…` inside host `from`'s namespace;
    /// returns stdout, or an error with stderr.
    pub fn etcdctl(
        &self,
        site: &Site,
        from: usize,
        endpoints: &str,
        args: &[&str],
    ) -> Result<String> {
        let ca = self.ca();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", site.namespace(from), "etcdctl"])
            .arg("--cacert")
            .arg(&ca)
            .args([
                "--dial-timeout=2s",
                "--command-timeout=5s",
                "--endpoints",
                endpoints,
            ])
            .args(args)
            .env("ETCDCTL_API", "3");
        let (status, out, err) = run_with_timeout(cmd, Duration::from_millis(TOOL_TIMEOUT_MS))
            .with_context(|| format!("etcdctl {}", args.join(" ")))?;
        if !status.success() {
            bail!("etcdctl {} ({status}): {}", args.join(" "), err.trim());
        }
        Ok(out)
    }

    /// The endpoint URL through the VIP.
    pub fn endpoint(&self) -> String {
        format!("https://{}:{CLIENT_PORT}", self.vip)
    }

    /// `member list -w json` through the VIP: (cluster id, members).
    pub fn members(&self, site: &Site, from: usize) -> Result<(u64, Vec<EtcdMember>)> {
        let out = self.etcdctl(
            site,
            from,
            &self.endpoint(),
            &["member", "list", "-w", "json"],
        )?;
        let list: MemberList =
            serde_json::from_str(out.trim()).with_context(|| format!("member list: {out}"))?;
        Ok((list.header.cluster_id, list.members))
    }

    /// The cluster id as `endpoint status -w json` reports it through the VIP.
    pub fn cluster_id(&self, site: &Site, from: usize) -> Result<u64> {
        let out = self.etcdctl(
            site,
            from,
            &self.endpoint(),
            &["endpoint", "status", "-w", "json"],
        )?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).with_context(|| format!("endpoint status: {out}"))?;
        v[0]["Status"]["header"]["cluster_id"]
            .as_u64()
            .with_context(|| format!("endpoint status has no cluster_id: {out}"))
    }

    /// `endpoint health --cluster -w json` through the VIP: every member's client URL and
    /// whether it is healthy. Fails if etcdctl cannot reach the cluster at all.
    pub fn health(&self, site: &Site, from: usize) -> Result<Vec<(String, bool)>> {
        // etcdctl exits non-zero when any endpoint is unhealthy but still prints the JSON.
        let ca = self.ca();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", site.namespace(from), "etcdctl"])
            .arg("--cacert")
            .arg(&ca)
            .args(["--dial-timeout=2s", "--command-timeout=5s"])
            .args(["--endpoints", &self.endpoint()])
            .args(["endpoint", "health", "--cluster", "-w", "json"])
            .env("ETCDCTL_API", "3");
        let (_, out, err) = run_with_timeout(cmd, Duration::from_millis(TOOL_TIMEOUT_MS))?;
        let list: Vec<EndpointHealth> = serde_json::from_str(out.trim())
            .with_context(|| format!("endpoint health: {out} {err}"))?;
        Ok(list
            .into_iter()
            .map(|h| {
                if let Some(e) = &h.error {
                    eprintln!("etcd endpoint {} unhealthy: {e}", h.endpoint);
                }
                (h.endpoint, h.health)
            })
            .collect())
    }

    /// Checks what an operator checks: through the VIP, etcd has exactly the started members
    /// named `expected` (sorted), each healthy. Returns the cluster id.
    pub fn check_cluster(&self, site: &Site, from: usize, expected: &[String]) -> Result<u64> {
        let (cluster_id, members) = self.members(site, from)?;
        let mut names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
        names.sort();
        ensure!(
            names == expected,
            "etcd members {names:?}, expected {expected:?}: {members:?}"
        );
        let health = self.health(site, from)?;
        ensure!(
            health.len() == expected.len() && health.iter().all(|(_, ok)| *ok),
            "etcd endpoint health: {health:?}"
        );
        Ok(cluster_id)
    }

    /// Polls [`EtcdBed::check_cluster`] until it holds or `timeout` passes.
    pub fn wait_cluster(
        &self,
        site: &Site,
        from: usize,
        expected: &[String],
        timeout: Duration,
    ) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.check_cluster(site, from, expected) {
                Ok(id) => return Ok(id),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context(format!("etcd not as expected within {timeout:?}")))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(POLL_MS * 5)),
            }
        }
    }
}

fn write_executable(path: &Path, body: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args);
    let (status, _, err) = run_with_timeout(cmd, Duration::from_millis(TOOL_TIMEOUT_MS))
        .context("running openssl (apt-get install openssl)")?;
    ensure!(
        status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        err.trim()
    );
    Ok(())
}

/// A P-256 test CA: `ca.pem`, `ca-key.pem` in `dir`.
fn make_ca(dir: &Path) -> Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            CERT_DAYS,
            "-subj",
            "/CN=muster-testbed-etcd-ca",
        ],
    )
}

/// `server.pem` / `server-key.pem` in `host_dir`, signed by the CA in `ca_dir`, for 127.0.0.1
/// and `ips`.
fn make_server_cert(ca_dir: &Path, host_dir: &Path, name: &str, ips: &[&str]) -> Result<()> {
    let mut san = String::from("subjectAltName=IP:127.0.0.1");
    for ip in ips {
        san.push_str(&format!(",IP:{ip}"));
    }
    let ext = host_dir.join("server.ext");
    std::fs::write(
        &ext,
        format!(
            "{san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth,clientAuth\n"
        ),
    )?;
    let key = host_dir.join("server-key.pem");
    let csr = host_dir.join("server.csr");
    let cert = host_dir.join("server.pem");
    let (key, csr, cert, ext) = (
        key.to_string_lossy(),
        csr.to_string_lossy(),
        cert.to_string_lossy(),
        ext.to_string_lossy(),
    );
    let subj = format!("/CN={name}");
    openssl(
        ca_dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-subj",
            &subj,
            "-out",
            &csr,
        ],
    )?;
    openssl(
        ca_dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            CERT_DAYS,
            "-out",
            &cert,
            "-extfile",
            &ext,
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse() {
        let r = Record::parse("note control-plane h1 1700000000000000000 member-add-refused x y")
            .unwrap();
        assert_eq!(
            (r.what.as_str(), r.role.as_str(), r.host.as_str()),
            ("note", "control-plane", "h1")
        );
        assert_eq!(r.at_ns, 1_700_000_000_000_000_000);
        assert_eq!(r.detail, "member-add-refused x y");
        let r = Record::parse("start init h0 5 ").unwrap();
        assert!(r.is_start("init") && r.detail.is_empty());
        assert!(Record::parse("start init h0 notanumber").is_none());
        assert!(Record::parse("start init").is_none());
    }
}
