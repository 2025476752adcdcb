//! Namespace lab for muster-vip's netns tests: a holder and a client namespace joined by a veth
//! pair, made with `ip` and removed on drop (also when the test panics), plus a way to run async
//! code inside a namespace.
//!
//! Used by `tests/netns.rs` only. Namespaces are named `mv-<test>-<pid>-{h,c}`; creating a lab
//! first removes namespaces of the same test left by a run whose process is gone. Addresses are
//! 10.77.1.0/24 and fd77:1::/64, inside the lab only.

#![allow(dead_code)] // each test binary uses a different part

use std::fs::File;
use std::future::Future;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};

/// The interface in both namespaces.
pub const IFACE: &str = "eth0";
/// Holder's own address (before any VIP).
pub const HOLDER_V4: &str = "10.77.1.1/24";
pub const HOLDER_V6: &str = "fd77:1::1/64";
pub const CLIENT_V4: &str = "10.77.1.2/24";
pub const CLIENT_V6: &str = "fd77:1::2/64";
pub const HOLDER_MAC: &str = "02:77:00:00:00:01";
pub const CLIENT_MAC: &str = "02:77:00:00:00:02";
/// What the client's cache is poisoned with before a test announces.
pub const WRONG_MAC: &str = "02:00:00:00:00:99";
/// Bound on every single wait in these tests (each is expected to take milliseconds).
pub const WAIT: Duration = Duration::from_secs(10);
/// Bound on a whole test body running inside a namespace.
pub const TEST_BODY: Duration = Duration::from_secs(120);

/// Namespace tests run one at a time (2-core machines; they also share nothing, so this is only
/// about load).
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the serial lock; a test that panicked while holding it does not block the others.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `ip <args>`, returning stdout; an error names the command and `ip`'s stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `ip {}`", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `ip -n <ns> <args>`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    ip(&full)
}

/// Like [`ip_in`] but off the async thread (the `-n` makes the caller's namespace irrelevant).
pub async fn ip_async(ns: &str, args: &[&str]) -> Result<String> {
    let ns = ns.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ip_in(&ns, &args)
    })
    .await?
}

/// Two namespaces on a veth pair; deleted on drop.
pub struct Lab {
    pub holder: String,
    pub client: String,
}

impl Lab {
    /// Builds the lab for test `test` (a short lowercase word).
    pub fn new(test: &str) -> Lab {
        let prefix = format!("mv-{test}-");
        sweep_stale(&prefix);
        let pid = std::process::id();
        // The guard exists before anything is created, so a failing step still cleans up.
        let lab = Lab {
            holder: format!("{prefix}{pid}-h"),
            client: format!("{prefix}{pid}-c"),
        };
        lab.build().expect("building the namespace lab");
        lab
    }

    fn build(&self) -> Result<()> {
        let (h, c) = (self.holder.as_str(), self.client.as_str());
        ip(&["netns", "add", h])?;
        ip(&["netns", "add", c])?;
        ip_in(
            h,
            &[
                "link", "add", IFACE, "address", HOLDER_MAC, "type", "veth", "peer", "name", IFACE,
                "address", CLIENT_MAC, "netns", c,
            ],
        )?;
        for (ns, v4, v6) in [(h, HOLDER_V4, HOLDER_V6), (c, CLIENT_V4, CLIENT_V6)] {
            ip_in(ns, &["link", "set", "lo", "up"])?;
            ip_in(ns, &["addr", "add", v4, "dev", IFACE])?;
            ip_in(ns, &["addr", "add", v6, "dev", IFACE, "nodad"])?;
            ip_in(ns, &["link", "set", IFACE, "up"])?;
        }
        // IPv6 drops multicast (our NAs, as Ip6InNoRoutes) until addrconf has seen the carrier
        // and installed ff00::/8, which link-watch may delay by up to a second.
        for ns in [h, c] {
            let ready = wait_until(WAIT, || {
                ip_in(ns, &["-6", "route", "show", "table", "local", "dev", IFACE])
                    .is_ok_and(|routes| routes.contains("ff00::/8"))
            });
            if !ready {
                bail!("{ns}: no IPv6 multicast route on {IFACE} after {WAIT:?}");
            }
        }
        Ok(())
    }

    /// The interface index of `eth0` in the holder namespace.
    pub fn holder_ifindex(&self) -> u32 {
        let out = ip_in(&self.holder, &["-o", "link", "show", IFACE]).expect("ip link show");
        out.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ifindex in {out:?}"))
    }

    /// The MAC the client has cached for `ip` (IPv4 or IPv6), if any.
    pub fn client_neighbour(&self, ip: &str) -> Option<String> {
        let family = if ip.contains(':') { "-6" } else { "-4" };
        let out = ip_in(&self.client, &[family, "neigh", "show", ip, "dev", IFACE]).ok()?;
        let mut words = out.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_string)
    }

    /// Poisons the client's cache: `ip` → [`WRONG_MAC`] in state `nud`.
    pub fn poison_client(&self, ip: &str, nud: &str) {
        let family = if ip.contains(':') { "-6" } else { "-4" };
        ip_in(
            &self.client,
            &[
                family, "neigh", "replace", ip, "lladdr", WRONG_MAC, "dev", IFACE, "nud", nud,
            ],
        )
        .expect("ip neigh replace");
        assert_eq!(self.client_neighbour(ip).as_deref(), Some(WRONG_MAC));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.holder, &self.client] {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Deletes namespaces `<prefix><pid>-*` whose process no longer exists.
fn sweep_stale(prefix: &str) {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        let alive = !pid.is_empty() && Path::new(&format!("/proc/{pid}")).exists();
        if !alive || pid == std::process::id().to_string() {
            eprintln!("removing stale namespace {name}");
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Runs `body` on a new thread that first enters network namespace `ns`, on a current-thread
/// Tokio runtime there (so every socket it opens lives in `ns`), bounded by [`TEST_BODY`].
/// A panic inside is re-raised here.
pub fn in_netns<F, Fut, T>(ns: &str, body: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    spawn_in_netns(ns, body)
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Like [`in_netns`] but returns at once; join the handle to get the result.
pub fn spawn_in_netns<F, Fut, T>(ns: &str, body: F) -> thread::JoinHandle<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async move {
            tokio::time::timeout(TEST_BODY, body())
                .await
                .expect("test body timed out")
        })
    })
}

/// Polls `check` every 20 ms until it returns true; false after `limit`.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Blocking form of [`eventually`] for the test's main thread.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Counts the announcement frames (ARP, or ICMPv6 Neighbor Advertisements) from `from_mac` that
/// arrive on `eth0` of namespace `ns` during `listen`, with an `AF_PACKET` socket opened there.
/// Runs on its own thread; join the handle for the count.
pub fn count_announcements(
    ns: &str,
    from_mac: [u8; 6],
    listen: Duration,
) -> thread::JoinHandle<Result<usize>> {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns {path}"))?;
        // SAFETY: plain socket(2); the descriptor is owned below and closed on every path.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from((libc::ETH_P_ALL as u16).to_be()),
            )
        };
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new, valid descriptor that nothing else owns.
        let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let raw = std::os::fd::AsRawFd::as_raw_fd(&socket);
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: setsockopt with a pointer to a live timeval of the size given.
        unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        let deadline = std::time::Instant::now() + listen;
        let mut count = 0;
        let mut buf = [0u8; 2048];
        while std::time::Instant::now() < deadline {
            // SAFETY: recv into a buffer we own, of the length given.
            let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
            let Ok(n) = usize::try_from(n) else { continue };
            let frame = &buf[..n];
            if n < 14 || frame[6..12] != from_mac {
                continue;
            }
            let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
            // IPv6 next header at 14 + 6, ICMPv6 type at 14 + 40.
            let is_na = ethertype == 0x86dd && n > 54 && frame[20] == 58 && frame[54] == 136;
            if ethertype == 0x0806 || is_na {
                count += 1;
            }
        }
        Ok(count)
    })
}
