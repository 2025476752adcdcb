//! A real BIND `named` on a site's bridge, for the Dynamic DNS tests (`tests/ddns.rs`) and the
//! benchmark (`muster-ddns-bench`).
//!
//! [`SiteBind::start`] adds namespace `<prefix>-dns` wired to the site's bridge through port
//! `<prefix>-vd`, with `eth0` = [`DNS_IP`] (10.77.0.53, inside the site subnet, used by no host),
//! generates a TSIG key with `tsig-keygen` (and a second key with the same name but another
//! secret, for the wrong-key test), writes a zone `site.example.` that accepts updates signed
//! with the first key, and runs `named -f` there. [`SiteBind::ddns_overrides`] gives the
//! `[ddns]` section that points an agent at it. `dig`, `nsupdate` and the fast poller
//! ([`Poller`]) run inside `<prefix>-dns` too, so they see the server even while a partition
//! cuts the bridge port.
//!
//! Dropping the fixture kills `named` and deletes the namespace (the veth goes with it),
//! however the test ends. The approach is the one of `crates/muster-dns/tests/harness`, copied
//! here because a crate cannot depend on another crate's tests.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::config::Override;
use crate::netns;
use crate::site::Site;

/// The zone the server is primary for.
pub const ZONE: &str = "site.example.";
/// The endpoint name the agents move.
pub const NAME: &str = "api.site.example.";
/// The name `nsupdate` writes in the benchmark's comparison (same zone, same kind of update).
pub const BENCH_NAME: &str = "nsupdate.site.example.";
/// The TSIG key's name (both keys carry it: the wrong one differs in its secret → BADSIG).
pub const KEY_NAME: &str = "muster-site";
/// The server's address on the site bridge.
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 53);
/// How long `named` may take to answer after a start.
const START_TIMEOUT: Duration = Duration::from_secs(15);
const ZONE_FILE: &str = "site.example.db";

/// The server's namespace for site `prefix`.
pub fn dns_ns(prefix: &str) -> String {
    format!("{prefix}-dns")
}

/// The bridge port of the server's veth for site `prefix`.
pub fn dns_port(prefix: &str) -> String {
    format!("{prefix}-vd")
}

/// Finds a BIND tool (Debian puts `named` and `tsig-keygen` in /usr/sbin).
pub fn tool(name: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p.display().to_string();
        }
    }
    name.to_string()
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running `named` on a site's bridge. See the module docs.
pub struct SiteBind {
    dir: tempfile::TempDir,
    ns: String,
    port: String,
    key_file: PathBuf,
    wrong_key_file: PathBuf,
    named: Mutex<Option<Child>>,
}

impl SiteBind {
    /// Namespace, veth, keys, zone; `named` answering on [`DNS_IP`]:53.
    pub fn start(site: &Site) -> Result<SiteBind> {
        let prefix = site.prefix();
        let ns = dns_ns(prefix);
        let port = dns_port(prefix);
        // A namespace an earlier (crashed) run left behind.
        netns::delete_namespace(&ns)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("muster-{prefix}-bind-"))
            .tempdir()
            .context("creating the server's temp dir")?;
        let bind = SiteBind {
            key_file: dir.path().join("tsig.key"),
            wrong_key_file: dir.path().join("wrong-tsig.key"),
            dir,
            ns,
            port,
            named: Mutex::new(None),
        };
        // From here on, Drop removes the namespace if a step fails.
        netns::add_client(site.bridge_namespace(), &bind.ns, &bind.port, DNS_IP, None)
            .with_context(|| format!("creating the DNS server's namespace {}", bind.ns))?;
        let keygen =
            || run(Command::new(tool("tsig-keygen")).args(["-a", "hmac-sha256", KEY_NAME]));
        let key = keygen()?;
        fs::write(&bind.key_file, &key)?;
        fs::write(&bind.wrong_key_file, keygen()?)?;
        bind.write_config(&key)?;
        bind.write_zone()?;
        bind.start_named()?;
        Ok(bind)
    }

    /// The server's namespace.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The server's bridge port (to cut it in a partition).
    pub fn port(&self) -> &str {
        &self.port
    }

    /// `10.77.0.53:53`.
    pub fn server(&self) -> SocketAddr {
        SocketAddr::from((DNS_IP, 53))
    }

    /// The key the zone accepts.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// A key with the same name and another secret (the server answers BADSIG).
    pub fn wrong_key_file(&self) -> &Path {
        &self.wrong_key_file
    }

    /// The `[ddns]` section for an agent signing with `key_file`.
    pub fn ddns_overrides(&self, key_file: &Path) -> Vec<Override> {
        crate::config::overrides([
            ("ddns.server", self.server().to_string()),
            ("ddns.zone", ZONE.to_owned()),
            ("ddns.name", NAME.to_owned()),
            ("ddns.tsig_key_file", key_file.display().to_string()),
            ("ddns.ttl", "5s".to_owned()),
        ])
    }

    fn write_config(&self, key: &str) -> Result<()> {
        let d = self.dir.path().display();
        let conf = format!(
            r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port 53 {{ {DNS_IP}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-query {{ any; }};
}};
controls {{ }};
{key}
zone "{ZONE}" {{
    type primary;
    file "{d}/{ZONE_FILE}";
    allow-update {{ key "{KEY_NAME}"; }};
}};
logging {{
    channel log {{ file "{d}/named.log"; severity info; print-time yes; }};
    category default {{ log; }};
    category update {{ log; }};
    category security {{ log; }};
}};
"#
        );
        fs::write(self.dir.path().join("named.conf"), conf)?;
        Ok(())
    }

    /// The zone as first loaded: SOA, NS, no endpoint records.
    pub fn write_zone(&self) -> Result<()> {
        let zone = format!(
            "$TTL 60\n@ IN SOA ns.{ZONE} admin.{ZONE} ( 1 60 60 3600 5 )\n  IN NS ns.{ZONE}\n\
             ns IN A {DNS_IP}\n"
        );
        fs::write(self.dir.path().join(ZONE_FILE), zone)?;
        Ok(())
    }

    /// Starts `named -f` (foreground, logging to `named.log`) and waits until it serves the SOA.
    pub fn start_named(&self) -> Result<()> {
        let conf = self.dir.path().join("named.conf");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, &tool("named"), "-f", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.dir.path().join("named.stderr"))?)
            .spawn()
            .context("spawning named")?;
        *self.named.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(out) = self.dig(&["+short", ZONE, "SOA"]) {
                if !out.trim().is_empty() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let err = fs::read_to_string(self.dir.path().join("named.stderr")).unwrap_or_default();
        bail!(
            "named did not answer within {START_TIMEOUT:?}: {err}{}",
            self.log()
        )
    }

    /// Stops `named` (SIGTERM, then SIGKILL after 5 s) and waits for it.
    pub fn stop_named(&self) -> Result<()> {
        let taken = self.named.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut child) = taken {
            let pid = Pid::from_raw(i32::try_from(child.id())?);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.try_wait()?.is_some() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Stops `named`, puts the zone file from before any update back, drops the journal (a
    /// restore from an old zone file), and starts it again.
    pub fn restart_with_old_zone(&self) -> Result<()> {
        self.stop_named()?;
        let _ = fs::remove_file(self.dir.path().join(format!("{ZONE_FILE}.jnl")));
        self.write_zone()?;
        self.start_named()
    }

    /// `dig @10.77.0.53 +time=1 +tries=1 <args>` inside the server's namespace.
    pub fn dig(&self, args: &[&str]) -> Result<String> {
        let server = format!("@{DNS_IP}");
        run(Command::new("ip")
            .args([
                "netns", "exec", &self.ns, "dig", &server, "+time=1", "+tries=1",
            ])
            .args(args))
    }

    /// The A and AAAA addresses `dig` sees for [`NAME`], sorted.
    pub fn dig_addrs(&self) -> Result<Vec<IpAddr>> {
        let mut out = Vec::new();
        for t in ["A", "AAAA"] {
            for line in self.dig(&["+short", NAME, t])?.lines() {
                out.push(
                    line.trim()
                        .parse::<IpAddr>()
                        .with_context(|| format!("dig said {line:?}"))?,
                );
            }
        }
        out.sort();
        Ok(out)
    }

    /// The stamp TXT (`_muster.<NAME>`) `dig` sees, without quotes.
    pub fn dig_stamp(&self) -> Result<String> {
        Ok(self
            .dig(&["+short", &format!("_muster.{NAME}"), "TXT"])?
            .trim()
            .trim_matches('"')
            .to_string())
    }

    /// Runs `nsupdate -k <key>` with `script` inside the server's namespace; returns its wall
    /// time (process start included).
    pub fn nsupdate(&self, script: &str) -> Result<Duration> {
        use std::io::Write;
        let started = Instant::now();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "nsupdate", "-k"])
            .arg(&self.key_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning nsupdate")?;
        let text = format!("server {DNS_IP} 53\nzone {ZONE}\n{script}\nsend\n");
        child
            .stdin
            .take()
            .context("nsupdate stdin")?
            .write_all(text.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("nsupdate failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(started.elapsed())
    }

    /// `named`'s log (`named.log`) so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Lines of `named`'s log containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// A [`Poller`] running in the server's namespace.
    pub fn poller(&self) -> Result<Poller> {
        Poller::start(&self.ns, self.server())
    }
}

impl Drop for SiteBind {
    fn drop(&mut self) {
        let _ = self.stop_named();
        if let Err(e) = netns::delete_namespace(&self.ns) {
            eprintln!(
                "muster-testbed: removing DNS namespace {} failed: {e:#}",
                self.ns
            );
        }
        if std::env::var(crate::site::KEEP_ENV).is_ok_and(|v| v == "1") {
            let dir = std::mem::replace(
                &mut self.dir,
                match tempfile::tempdir() {
                    Ok(d) => d,
                    Err(_) => return,
                },
            );
            eprintln!("muster-testbed: kept {}", dir.keep().display());
        }
    }
}

// ----- the agents' side ------------------------------------------------------------------------

/// The `dns` object of host `i`'s `muster status --json` (an error if it has none).
pub fn dns_status(site: &Site, i: usize) -> Result<serde_json::Value> {
    let v = site.status(i)?;
    match v.get("dns") {
        Some(d) if d.is_object() => Ok(d.clone()),
        _ => bail!("host {i}'s status has no dns object: {v}"),
    }
}

/// The one host among `hosts` (running ones only) that is the leader and holds the DNS
/// endpoint (`dns.holding_term` set); `None` if none or more than one does.
pub fn dns_holder(site: &Site, hosts: &[usize]) -> Option<usize> {
    let mut found = Vec::new();
    for &i in hosts {
        if !site.is_running(i) {
            continue;
        }
        let Ok(v) = site.status(i) else { continue };
        let leads = v
            .get("leader_id")
            .is_some_and(|l| Some(l) == v.get("node_id"));
        let holds = v
            .get("dns")
            .and_then(|d| d.get("holding_term"))
            .is_some_and(|t| t.as_u64().is_some());
        if leads && holds {
            found.push(i);
        }
    }
    (found.len() == 1).then(|| found[0])
}

/// Polls [`dns_holder`] every 50 ms until one host holds, or `timeout` passes.
pub fn wait_dns_holder(site: &Site, timeout: Duration, hosts: &[usize]) -> Result<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(i) = dns_holder(site, hosts) {
            return Ok(i);
        }
        if Instant::now() >= deadline {
            bail!(
                "no single DNS holder among {hosts:?} within {timeout:?}\nstatus:{}",
                site.describe()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl SiteBind {
    /// Polls `dig` until the server serves exactly `want` (A and AAAA) for [`NAME`] and a
    /// stamp naming `node`; returns how long that took.
    pub fn wait_record(&self, timeout: Duration, want: &[IpAddr], node: &str) -> Result<Duration> {
        let started = Instant::now();
        let suffix = format!(" id={node}");
        let mut want = want.to_vec();
        want.sort();
        loop {
            let addrs = self.dig_addrs().unwrap_or_default();
            let stamp = self.dig_stamp().unwrap_or_default();
            if addrs == want && stamp.starts_with("term=") && stamp.ends_with(&suffix) {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= timeout {
                bail!(
                    "the server did not serve {NAME} -> {want:?} stamped by {node} within \
                     {timeout:?}: it serves {addrs:?}, stamp {stamp:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

// ----- a fast A query ---------------------------------------------------------------------------

/// A plain (non-recursive) DNS query for `name` `A`, id `id`.
pub fn build_a_query(id: u16, name: &str) -> Result<Vec<u8>> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]); // flags 0, QD=1
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len()).context("label too long")?;
        if len == 0 || len > 63 {
            bail!("bad label in {name:?}");
        }
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, QTYPE A, QCLASS IN
    Ok(q)
}

/// Skips a (possibly compressed) name at `pos`; returns the position after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return Some(pos + 2),
            l => pos += 1 + usize::from(l),
        }
    }
}

/// The IPv4 addresses in the answer section of a reply with id `id` (`None`: not a reply to
/// it, or malformed; an NXDOMAIN or empty answer is `Some(vec![])`).
pub fn parse_a_reply(msg: &[u8], id: u16) -> Option<Vec<Ipv4Addr>> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id || msg[2] & 0x80 == 0 {
        return None;
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        pos = skip_name(msg, pos)?;
        let hdr = msg.get(pos..pos + 10)?;
        let rtype = u16::from_be_bytes([hdr[0], hdr[1]]);
        let rdlen = usize::from(u16::from_be_bytes([hdr[8], hdr[9]]));
        let rdata = msg.get(pos + 10..pos + 10 + rdlen)?;
        if rtype == 1 && rdlen == 4 {
            out.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        pos += 10 + rdlen;
    }
    out.sort();
    Some(out)
}

/// A UDP socket in a namespace that asks the server for [`NAME`] `A`, one query at a time.
pub struct Poller {
    tx: std::sync::mpsc::Sender<Duration>,
    rx: std::sync::mpsc::Receiver<Option<Vec<Ipv4Addr>>>,
}

impl Poller {
    /// Starts the poller's thread in namespace `ns`.
    pub fn start(ns: &str, server: SocketAddr) -> Result<Poller> {
        let (tx, req) = std::sync::mpsc::channel::<Duration>();
        let (ans, rx) = std::sync::mpsc::channel();
        let (ready_tx, ready) = std::sync::mpsc::channel::<Result<()>>();
        let ns = ns.to_owned();
        std::thread::spawn(move || {
            let setup = || -> Result<UdpSocket> {
                netns::enter(&ns)?;
                let sock = UdpSocket::bind(("0.0.0.0", 0))?;
                sock.connect(server)?;
                Ok(sock)
            };
            let sock = match setup() {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut id: u16 = 1;
            let mut buf = [0u8; 1500];
            while let Ok(timeout) = req.recv() {
                id = id.wrapping_add(1);
                let answer = (|| -> Option<Vec<Ipv4Addr>> {
                    let q = build_a_query(id, NAME).ok()?;
                    sock.send(&q).ok()?;
                    let deadline = Instant::now() + timeout;
                    loop {
                        let left = deadline.checked_duration_since(Instant::now())?;
                        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                            .ok()?;
                        let n = sock.recv(&mut buf).ok()?;
                        if let Some(a) = parse_a_reply(&buf[..n], id) {
                            return Some(a);
                        }
                    }
                })();
                if ans.send(answer).is_err() {
                    break;
                }
            }
        });
        ready.recv().context("poller thread")??;
        Ok(Poller { tx, rx })
    }

    /// One query; `None` on timeout.
    pub fn query(&self, timeout: Duration) -> Option<Vec<Ipv4Addr>> {
        self.tx.send(timeout).ok()?;
        self.rx.recv().ok()?
    }
}

// ----- agent log timestamps ----------------------------------------------------------------------

/// What the core logs when the new leader's lease becomes valid and it takes the endpoint.
pub const ACQUIRE_LOG: &str = "lease valid: acquiring";

/// Microseconds since the epoch of a log line that starts with an RFC 3339 UTC timestamp as
/// tracing-subscriber prints it (`2026-12-01T11:40:00.056780Z ...`); ANSI colour codes before
/// it are skipped.
pub fn log_time_us(line: &str) -> Option<u64> {
    // Skip an ANSI colour sequence ("\x1b[2m") if the agent coloured its log.
    let line = match line.strip_prefix('\u{1b}') {
        Some(rest) => rest.split_once('m').map_or(rest, |(_, r)| r),
        None => line,
    };
    let ts = line.split_whitespace().next()?;
    let ts = ts.split('\u{1b}').next()?;
    let (date, time) = ts.split_once('T')?;
    let time = time.strip_suffix('Z')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let digits = frac.get(..frac.len().min(6))?;
    let us = digits.parse::<i64>().ok()? * 10i64.pow(6 - u32::try_from(digits.len()).ok()?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3_600 + mm * 60 + ss;
    u64::try_from(secs * 1_000_000 + us).ok()
}

/// The time (µs since the epoch) of the first line of `log` containing `needle` logged at or
/// after `since_us`.
pub fn first_log_after(log: &str, needle: &str, since_us: u64) -> Option<u64> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(log_time_us)
        .find(|&t| t >= since_us)
}

/// Now, µs since the epoch.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_reply_round_trip() {
        let q = build_a_query(0x1234, NAME).unwrap();
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert_eq!(q[12], 3);
        assert_eq!(&q[13..16], b"api");
        // A reply: the question echoed, one A answer with a compressed owner name.
        let mut r = q.clone();
        r[2] = 0x84;
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 77, 0, 11]);
        assert_eq!(
            parse_a_reply(&r, 0x1234),
            Some(vec![Ipv4Addr::new(10, 77, 0, 11)])
        );
        assert_eq!(parse_a_reply(&r, 0x1235), None, "other id");
        assert_eq!(parse_a_reply(&q, 0x1234), None, "a query, not a reply");
        assert_eq!(parse_a_reply(&r[..r.len() - 2], 0x1234), None, "truncated");
    }

    #[test]
    fn log_timestamps() {
        // date -u -d 2026-12-01T11:40:00Z +%s = 1796125200
        let line =
            "2026-12-01T11:40:00.056780Z  INFO agent: muster_core::lease: lease valid: acquiring";
        assert_eq!(log_time_us(line), Some(1_796_125_200_056_780));
        assert_eq!(
            log_time_us("\u{1b}[2m1970-01-01T00:00:01.5Z\u{1b}[0m INFO x"),
            Some(1_500_000)
        );
        assert_eq!(
            log_time_us("2000-03-01T00:00:00Z x"),
            Some(951_868_800_000_000)
        );
        assert_eq!(log_time_us("no time here"), None);
        let log = format!(
            "{line}\n2026-12-01T11:40:01.000000Z INFO lease valid: acquiring the endpoint\n"
        );
        assert_eq!(
            first_log_after(&log, ACQUIRE_LOG, 1_796_125_200_500_000),
            Some(1_796_125_201_000_000)
        );
    }
}
