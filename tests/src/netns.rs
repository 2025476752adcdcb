//! Network namespaces, veth pairs and the bridge of a site, made and removed with `ip`.
//!
//! [`crate::site::Site`] calls [`create_bridge`] and [`add_host`] to build the topology,
//! [`set_port`] to cut or restore a host's cable, and [`delete_namespace`] / [`sweep_stale`] to
//! remove it again. Every command that fails reports the full command line and `ip`'s stderr.

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::names::{
    bridge_port, host_ip, is_site_namespace, parse_netns_list, BRIDGE, HOST_IFACE,
    SUBNET_PREFIX_LEN,
};

/// How long to wait for processes inside a namespace to die after SIGKILL.
const KILL_WAIT_MS: u64 = 5_000;

/// Runs `ip <args>` and returns its stdout; an error names the command and `ip`'s stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "cannot run `ip {}` (is iproute2 installed?)",
                args.join(" ")
            )
        })?;
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
fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    ip(&full)
}

/// Lists every network namespace on the machine.
pub fn list_namespaces() -> Result<Vec<String>> {
    Ok(parse_netns_list(&ip(&["netns", "list"])?))
}

/// Creates namespace `ns` with bridge `br0` (multicast snooping off, up) and `lo` up.
pub fn create_bridge(ns: &str) -> Result<()> {
    ip(&["netns", "add", ns])?;
    ip_in(ns, &["link", "set", "lo", "up"])?;
    ip_in(
        ns,
        &[
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
            "stp_state",
            "0",
        ],
    )?;
    ip_in(ns, &["link", "set", BRIDGE, "up"])?;
    Ok(())
}

/// Creates host namespace `ns` for host `index` of site `prefix`, wired to the bridge in
/// `bridge_ns`: `eth0` (10.77.0.<10+index>/24, up) inside, its peer enslaved to `br0`.
///
/// A route for 224.0.0.0/4 via `eth0` lets multicast (mDNS) leave even from sockets that do
/// not pick an interface; nothing else is routed.
pub fn add_host(prefix: &str, bridge_ns: &str, ns: &str, index: usize) -> Result<()> {
    let port = bridge_port(prefix, index);
    let addr = format!("{}/{SUBNET_PREFIX_LEN}", host_ip(index));
    ip(&["netns", "add", ns])?;
    ip_in(ns, &["link", "set", "lo", "up"])?;
    ip_in(
        ns,
        &[
            "link", "add", HOST_IFACE, "type", "veth", "peer", "name", &port, "netns", bridge_ns,
        ],
    )?;
    ip_in(ns, &["addr", "add", &addr, "dev", HOST_IFACE])?;
    ip_in(ns, &["link", "set", HOST_IFACE, "up"])?;
    ip_in(ns, &["route", "add", "224.0.0.0/4", "dev", HOST_IFACE])?;
    ip_in(bridge_ns, &["link", "set", &port, "master", BRIDGE])?;
    ip_in(bridge_ns, &["link", "set", &port, "up"])?;
    Ok(())
}

/// Creates the client namespace `ns`, wired to the bridge in `bridge_ns` through `port`: `eth0`
/// with `ipv4` (a `/24` in the site subnet) and, if given, `ipv6` (added without DAD), up. No
/// agent runs there; it stands for a user of the VIP.
pub fn add_client(
    bridge_ns: &str,
    ns: &str,
    port: &str,
    ipv4: std::net::Ipv4Addr,
    ipv6: Option<&str>,
) -> Result<()> {
    let addr = format!("{ipv4}/{SUBNET_PREFIX_LEN}");
    ip(&["netns", "add", ns])?;
    ip_in(ns, &["link", "set", "lo", "up"])?;
    ip_in(
        ns,
        &[
            "link", "add", HOST_IFACE, "type", "veth", "peer", "name", port, "netns", bridge_ns,
        ],
    )?;
    ip_in(ns, &["addr", "add", &addr, "dev", HOST_IFACE])?;
    if let Some(v6) = ipv6 {
        ip_in(ns, &["-6", "addr", "add", v6, "dev", HOST_IFACE, "nodad"])?;
    }
    ip_in(ns, &["link", "set", HOST_IFACE, "up"])?;
    ip_in(bridge_ns, &["link", "set", port, "master", BRIDGE])?;
    ip_in(bridge_ns, &["link", "set", port, "up"])?;
    Ok(())
}

/// Moves the *calling thread* into network namespace `ns` (`/run/netns/<ns>`, as `ip netns`
/// makes them). Sockets the thread creates afterwards belong to `ns`; other threads are not
/// affected. Use it in a dedicated thread (a prober, a sampler), never in a test's own thread.
pub fn enter(ns: &str) -> Result<()> {
    use std::os::fd::AsRawFd as _;
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns(2) on a valid, open namespace fd; it changes only this thread's namespace.
    let rc = unsafe { nix::libc::setns(file.as_raw_fd(), nix::libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setns into {ns}"));
    }
    Ok(())
}

/// Turns flooding of multicast to a bridge port on or off. With every port off, mDNS cannot
/// cross the bridge (snooping is off, so all multicast is flooded — or dropped here).
pub fn set_port_multicast(bridge_ns: &str, port: &str, on: bool) -> Result<()> {
    let flag = if on { "on" } else { "off" };
    ip_in(
        bridge_ns,
        &[
            "link",
            "set",
            "dev",
            port,
            "type",
            "bridge_slave",
            "mcast_flood",
            flag,
        ],
    )?;
    Ok(())
}

/// Sets the bridge side of a host's veth up or down: like plugging or pulling its cable. The
/// host keeps its address; its `eth0` just loses carrier.
pub fn set_port(bridge_ns: &str, port: &str, up: bool) -> Result<()> {
    ip_in(
        bridge_ns,
        &["link", "set", "dev", port, if up { "up" } else { "down" }],
    )?;
    Ok(())
}

/// SIGKILLs every process inside `ns` and waits (bounded) until none is left. Returns what it
/// killed (`pid command` for each), so a caller can say which processes a test left behind.
pub fn kill_namespace_processes(ns: &str) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_millis(KILL_WAIT_MS);
    let mut killed = Vec::new();
    loop {
        let pids = namespace_pids(ns)?;
        if pids.is_empty() {
            return Ok(killed);
        }
        if Instant::now() > deadline {
            bail!("processes {pids:?} in namespace {ns} survived SIGKILL for {KILL_WAIT_MS} ms");
        }
        for pid in pids {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let entry = format!("{pid} {}", comm.trim());
            if !killed.contains(&entry) {
                killed.push(entry);
            }
            // The process may already be gone (ESRCH): that is the goal anyway.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn namespace_pids(ns: &str) -> Result<Vec<i32>> {
    let out = ip(&["netns", "pids", ns])?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Kills whatever still runs in `ns` and deletes it. A namespace that no longer exists is fine.
pub fn delete_namespace(ns: &str) -> Result<()> {
    if !list_namespaces()?.iter().any(|n| n == ns) {
        return Ok(());
    }
    kill_namespace_processes(ns)?;
    ip(&["netns", "del", ns])?;
    Ok(())
}

/// Deletes every namespace of site `prefix` left by an earlier (crashed) run. Returns the names
/// it removed.
pub fn sweep_stale(prefix: &str) -> Result<Vec<String>> {
    let stale: Vec<String> = list_namespaces()?
        .into_iter()
        .filter(|n| is_site_namespace(prefix, n))
        .collect();
    // Hosts first, bridge last: deleting the bridge namespace first would also work (the veth
    // pair goes with either end), but this order mirrors creation.
    let mut ordered = stale.clone();
    ordered.sort_by_key(|n| n.ends_with("-br"));
    for ns in &ordered {
        delete_namespace(ns).with_context(|| format!("removing stale namespace {ns}"))?;
    }
    Ok(stale)
}
