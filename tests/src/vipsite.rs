//! The VIP side of a [`Site`]: which hosts carry the address, the client namespace and its
//! prober, the two-holder checker, and partitions that leave the client connected.
//!
//! A site built with [`crate::SiteOptions::vip`] writes `[vip] address = "10.77.0.100/24"` (and
//! optionally `address6 = "fd77::100/64"`) into every host's config; with
//! [`crate::SiteOptions::client`] it also gets namespace `<prefix>-c` with `eth0` 10.77.0.250/24
//! (and fd77::250/64) on the bridge, where no agent runs: it stands for a user of the VIP. The
//! VIP tests (`tests/vip.rs`) and the benchmark (`muster-vip-bench`) use these methods.

use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::holders::HolderChecker;
use crate::prober::Prober;
use crate::site::{Site, POLL_MS};
use crate::status::Status;
use crate::{addrs, partition};

/// Parses "10.77.0.100/24" into its address.
fn addr_of(cidr: &str) -> Result<IpAddr> {
    cidr.split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("VIP {cidr:?} is not an address/prefix"))
}

impl Site {
    /// The configured VIP addresses (IPv4 first); empty without `[vip]`.
    pub fn vip_ips(&self) -> Vec<IpAddr> {
        let Some(vip) = &self.vip else {
            return Vec::new();
        };
        std::iter::once(&vip.address)
            .chain(vip.address6.iter())
            .filter_map(|c| addr_of(c).ok())
            .collect()
    }

    /// The IPv4 VIP.
    pub fn vip_v4(&self) -> Result<Ipv4Addr> {
        match self.vip_ips().first() {
            Some(IpAddr::V4(a)) => Ok(*a),
            _ => bail!("site {} has no IPv4 VIP", self.prefix()),
        }
    }

    /// The client namespace.
    pub fn client_namespace(&self) -> Result<&str> {
        self.client_ns
            .as_deref()
            .with_context(|| format!("site {} was built without a client", self.prefix()))
    }

    /// The VIP addresses on host `i`'s `eth0` (`ip -n NS -o addr show dev eth0`).
    pub fn vip_addresses_on(&self, i: usize) -> Result<Vec<IpAddr>> {
        let out =
            crate::netns::ip(&["-n", self.namespace(i), "-o", "addr", "show", "dev", "eth0"])?;
        let vips = self.vip_ips();
        Ok(addrs::parse_ip_addr(&out)
            .into_iter()
            .filter(|a| vips.contains(a))
            .collect())
    }

    /// Whether host `i` carries any VIP address.
    pub fn has_vip(&self, i: usize) -> Result<bool> {
        Ok(!self.vip_addresses_on(i)?.is_empty())
    }

    /// Indices of the hosts whose `eth0` carries a VIP address (one `ip` call per host, so not
    /// one instant; use [`Site::holder_checker`] for the at-most-one-holder invariant).
    pub fn vip_holders(&self) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        for i in 0..self.len() {
            if self.has_vip(i)? {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Waits until exactly one host of `hosts` carries a VIP address, it carries every
    /// configured one, it is the leader, and every running host of `hosts` reports it as leader
    /// and as `vip.holder_id` (and `held_here` only there). Hosts outside `hosts` (a killed one
    /// with a stale address, a cut-off one) are not looked at. Returns the holder.
    pub fn wait_one_holder(&self, timeout: Duration, hosts: &[usize]) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let want = self.vip_ips().len();
        loop {
            let why = match self.check_one_holder(hosts, want) {
                Ok(h) => return Ok(h),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                bail!(
                    "no single VIP holder among {hosts:?} within {timeout:?}: {why:#}\nstatus:{}",
                    self.describe()
                );
            }
            thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    fn check_one_holder(&self, hosts: &[usize], want: usize) -> Result<usize> {
        let mut holders = Vec::new();
        for &i in hosts {
            if self.has_vip(i)? {
                holders.push(i);
            }
        }
        let [holder] = holders[..] else {
            bail!("hosts carrying the VIP: {holders:?}");
        };
        let on = self.vip_addresses_on(holder)?;
        if on.len() != want {
            bail!("holder {holder} carries {on:?}, not all {want} VIP addresses");
        }
        let view = self.status_view(holder)?;
        let id = view.node_id.clone();
        for &i in hosts.iter().filter(|&&i| self.is_running(i)) {
            let v: Status = if i == holder {
                view.clone()
            } else {
                self.status_view(i)?
            };
            let vip = v
                .vip
                .as_ref()
                .with_context(|| format!("host {i} has no vip status"))?;
            if v.leader_id.as_deref() != Some(&id) || vip.holder_id.as_deref() != Some(&id) {
                bail!(
                    "host {i} says leader {:?}, VIP holder {:?}; host {holder} ({id}) has it",
                    v.leader_id,
                    vip.holder_id
                );
            }
            if vip.held_here != (i == holder) {
                bail!("host {i} says held_here={}", vip.held_here);
            }
        }
        Ok(holder)
    }

    /// Cuts hosts `a` from hosts `b` (both directions) at the bridge, replacing any earlier
    /// partition; the client and hosts in neither group keep reaching everyone.
    pub fn partition(&self, a: &[usize], b: &[usize]) -> Result<()> {
        let ports = |g: &[usize]| {
            g.iter()
                .map(|&i| self.host(i).port.clone())
                .collect::<Vec<_>>()
        };
        partition::apply(self.bridge_namespace(), &ports(a), &ports(b))
    }

    /// Removes every partition.
    pub fn heal(&self) -> Result<()> {
        partition::heal(self.bridge_namespace())
    }

    /// Starts the client's 5 ms ICMP prober of the IPv4 VIP.
    pub fn prober(&self) -> Result<Prober> {
        Prober::start(self.client_namespace()?, self.vip_v4()?)
    }

    /// Starts the two-holder checker over every host.
    pub fn holder_checker(&self) -> Result<HolderChecker> {
        self.holder_checker_with_pause(crate::holders::ROUND_PAUSE)
    }

    /// [`Site::holder_checker`] pausing `pause` after each round of samples.
    pub fn holder_checker_with_pause(&self, pause: Duration) -> Result<HolderChecker> {
        let namespaces: Vec<String> = (0..self.len())
            .map(|i| self.namespace(i).to_owned())
            .collect();
        HolderChecker::start_with_pause(&namespaces, self.vip_ips(), pause)
    }

    /// Runs a command in the client namespace (`ip netns exec`), bounded by `timeout`; returns
    /// whether it succeeded, and its stdout and stderr.
    pub fn client_exec(&self, args: &[&str], timeout: Duration) -> Result<(bool, String)> {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", self.client_namespace()?])
            .args(args);
        let (status, out, err) = crate::cli::run_with_timeout(cmd, timeout)
            .with_context(|| format!("running {args:?} in the client"))?;
        Ok((status.success(), format!("{out}{err}")))
    }
}
