//! A real BIND for the updater's tests and benchmark: two network namespaces of our own
//! (`md-<pid>-<n>-s` runs `named`, `md-<pid>-<n>-c` runs the client: the test's tokio runtime
//! on a thread moved there with setns(2), and `dig` / `nsupdate` through `ip netns exec`),
//! joined by a veth, addresses in 10.78.<n>.0/24. The zone `site.example.` accepts updates
//! signed with a fresh `tsig-keygen` key. [`Bind`]'s Drop kills `named` and deletes both
//! namespaces (the veth goes with them), also when the test panics.

#![allow(dead_code)]

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use muster_dns::{DnsConfig, TsigKey};

pub const ZONE: &str = "site.example.";
pub const NAME: &str = "api.site.example.";
pub const KEY_NAME: &str = "muster-site";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Finds a BIND tool (Debian puts named and tsig-keygen in /usr/sbin).
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

fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// A running named in its namespace.
pub struct Bind {
    pub dir: tempfile::TempDir,
    pub server_ns: String,
    pub client_ns: String,
    pub net: u8,
    pub key_file: PathBuf,
    named: std::sync::Mutex<Option<Child>>,
}

const ZONE_FILE: &str = "site.example.db";

impl Bind {
    /// Namespaces, veth, key, zone, named listening on 10.78.<n>.2:53.
    pub fn start() -> Result<Bind> {
        let seq = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let net = u8::try_from((pid.wrapping_mul(7).wrapping_add(seq * 13)) % 200 + 20)
            .context("octet")?;
        let tag = format!("{}{}", pid % 100_000, seq);
        let dir = tempfile::Builder::new().prefix("md-bind-").tempdir()?;
        let mut bind = Bind {
            dir,
            server_ns: format!("md-{tag}-s"),
            client_ns: format!("md-{tag}-c"),
            net,
            key_file: PathBuf::new(),
            named: std::sync::Mutex::new(None),
        };
        ip(&["netns", "add", &bind.server_ns])?;
        ip(&["netns", "add", &bind.client_ns])?;
        let (vs, vc) = (format!("mds{tag}"), format!("mdc{tag}"));
        ip(&[
            "link",
            "add",
            &vs,
            "netns",
            &bind.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &vc,
            "netns",
            &bind.client_ns,
        ])?;
        for (ns, dev, host) in [(&bind.server_ns, &vs, 2), (&bind.client_ns, &vc, 1)] {
            let addr = format!("10.78.{net}.{host}/24");
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev])?;
            // Extra client addresses the holders name are only data; no need to assign them.
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        bind.key_file = bind.dir.path().join("tsig.key");
        let key = run(Command::new(tool("tsig-keygen")).args(["-a", "hmac-sha256", KEY_NAME]))?;
        fs::write(&bind.key_file, &key)?;
        bind.write_config(&key)?;
        bind.write_zone()?;
        bind.start_named()?;
        Ok(bind)
    }

    pub fn server(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(10, 78, self.net, 2), 53))
    }

    /// An address the test may hand to a holder (data only).
    pub fn holder_addr(&self, host: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 78, self.net, host))
    }

    pub fn key(&self) -> Result<TsigKey> {
        Ok(TsigKey::from_file(&self.key_file)?)
    }

    /// The updater config for `node`, default timings except the check interval.
    pub fn config(&self, node: &str, check_interval_ms: u64) -> Result<DnsConfig> {
        let mut cfg = DnsConfig::new(self.server(), ZONE, NAME, self.key()?, node)?;
        cfg.check_interval_ms = check_interval_ms;
        cfg.validate()?;
        Ok(cfg)
    }

    fn write_config(&self, key: &str) -> Result<()> {
        let d = self.dir.path().display();
        let conf = format!(
            r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port 53 {{ 10.78.{net}.2; }};
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
"#,
            net = self.net
        );
        fs::write(self.dir.path().join("named.conf"), conf)?;
        Ok(())
    }

    /// The zone as first loaded: SOA, NS, no endpoint records.
    pub fn write_zone(&self) -> Result<()> {
        let zone = format!(
            "$TTL 60\n@ IN SOA ns.{ZONE} admin.{ZONE} ( 1 60 60 3600 5 )\n  IN NS ns.{ZONE}\nns IN A 10.78.{}.2\n",
            self.net
        );
        fs::write(self.dir.path().join(ZONE_FILE), zone)?;
        Ok(())
    }

    pub fn start_named(&self) -> Result<()> {
        let conf = self.dir.path().join("named.conf");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server_ns, &tool("named"), "-g", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.dir.path().join("named.stderr"))?)
            .spawn()
            .context("spawning named")?;
        *self.named.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        // Ready when it answers the SOA.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(out) = self.dig(&["+short", ZONE, "SOA"]) {
                if !out.trim().is_empty() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = fs::read_to_string(self.dir.path().join("named.stderr")).unwrap_or_default();
        bail!("named did not answer within 10 s: {log}")
    }

    /// Stops named (SIGTERM, then waits).
    pub fn stop_named(&self) -> Result<()> {
        let taken = self.named.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut child) = taken {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
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

    /// Stops named, puts the first zone back and drops the journal (a restore from an old
    /// zone file), starts it again.
    pub fn restart_with_old_zone(&self) -> Result<()> {
        self.stop_named()?;
        let jnl = self.dir.path().join(format!("{ZONE_FILE}.jnl"));
        let _ = fs::remove_file(jnl);
        self.write_zone()?;
        self.start_named()
    }

    /// `dig @server` from the client namespace.
    pub fn dig(&self, args: &[&str]) -> Result<String> {
        let server = format!("@10.78.{}.2", self.net);
        run(Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client_ns,
                "dig",
                &server,
                "+time=1",
                "+tries=1",
            ])
            .args(args))
    }

    /// The A and AAAA addresses dig sees, sorted.
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

    /// The stamp TXT dig sees.
    pub fn dig_stamp(&self) -> Result<String> {
        Ok(self
            .dig(&["+short", &format!("_muster.{NAME}"), "TXT"])?
            .trim()
            .trim_matches('"')
            .to_string())
    }

    /// Runs `nsupdate -k key` with `script` from the client namespace; returns its wall time.
    pub fn nsupdate(&self, script: &str) -> Result<Duration> {
        use std::io::Write;
        let started = Instant::now();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.client_ns, "nsupdate", "-k"])
            .arg(&self.key_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let server = format!(
            "server 10.78.{}.2 53\nzone {ZONE}\n{script}\nsend\n",
            self.net
        );
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(server.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("nsupdate failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(started.elapsed())
    }

    /// Runs `f` on a thread inside the client namespace (sockets it opens live there).
    pub fn in_client<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = format!("/var/run/netns/{}", self.client_ns);
        let thread = std::thread::spawn(move || -> Result<T> {
            let ns = fs::File::open(&path).with_context(|| format!("opening {path}"))?;
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
            f()
        });
        match thread.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.stop_named();
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A current-thread runtime (its sockets stay on the calling thread's namespace).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
