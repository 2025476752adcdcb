//! What to float and how to announce it: [`VipConfig`], the address types [`Ipv4Cidr`] /
//! [`Ipv6Cidr`] parsed from `"10.0.0.100/24"` and `"fd00::100/64"`, and the
//! [`AnnounceSchedule`].
//!
//! The agent binary builds a [`VipConfig`] from the `[vip]` section of `muster.toml` (wrapping a
//! [`ConfigError`] with the TOML key it came from) and hands it to
//! [`crate::NetlinkVip::new`]. Everything here is pure and checked by [`VipConfig::validate`], so a
//! bad address is refused at startup, not at the first failover.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

/// Longest Linux interface name (`IFNAMSIZ - 1`).
pub const IFNAME_MAX_LEN: usize = 15;
/// Most rounds one [`AnnounceSchedule::burst`] may hold.
pub const BURST_ROUNDS_MAX: usize = 16;
/// Latest offset a burst round may have.
pub const BURST_OFFSET_MAX: Duration = Duration::from_secs(300);
/// Shortest allowed [`AnnounceSchedule::period`].
pub const PERIOD_MIN: Duration = Duration::from_secs(1);
/// Allowed range of [`VipConfig::watch_interval`].
pub const WATCH_INTERVAL_MIN: Duration = Duration::from_millis(50);
/// See [`WATCH_INTERVAL_MIN`].
pub const WATCH_INTERVAL_MAX: Duration = Duration::from_secs(60);
/// The holder's check interval while it has no address-event subscription (it could not be
/// opened, or it ended): removals are then seen only by checking. With a subscription a removal
/// is seen at once and [`VipConfig::watch_interval`] (5 s by default: each check is a link and
/// an address dump, and the holder's were a third of its netlink traffic at 500 ms) only
/// catches events lost to a full socket buffer.
pub const WATCH_INTERVAL_UNSUBSCRIBED: Duration = Duration::from_millis(500);
/// Kernel lifetime (`valid_lft` and `preferred_lft`) of every VIP address [`crate::NetlinkVip`]
/// adds. The holder renews it every [`VIP_RENEW_INTERVAL_MS`]; when nothing renews it (the agent
/// was SIGKILLed or OOM-killed) the kernel deletes the address by itself. The kernel's expiry
/// work runs about once a second, so an address goes between this and this + 1 s after its last
/// renewal.
pub const VIP_ADDRESS_LIFETIME_S: u32 = 3;
/// How often the holder renews [`VIP_ADDRESS_LIFETIME_S`]: three renewals per lifetime, so one
/// late or failed renewal does not let a held address expire.
pub const VIP_RENEW_INTERVAL_MS: u64 = 1000;

/// A configuration value that cannot be used; says which value and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct ConfigError {
    /// What kind of value was refused, e.g. "VIP address" or "interface name".
    pub what: &'static str,
    /// The value as given.
    pub value: String,
    /// Why it was refused, in words an operator can act on.
    pub reason: String,
}

impl ConfigError {
    fn address(value: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            what: "VIP address",
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// An IPv4 address with the prefix length of its subnet, e.g. `10.0.0.100/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The virtual IP itself.
    pub addr: Ipv4Addr,
    /// Prefix length of the on-link subnet, 1..=32.
    pub prefix_len: u8,
}

/// An IPv6 address with the prefix length of its subnet, e.g. `fd00::100/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    /// The virtual IP itself.
    pub addr: Ipv6Addr,
    /// Prefix length of the on-link subnet, 1..=128.
    pub prefix_len: u8,
}

/// Either family; what [`VipConfig::parse`] sorts into [`VipConfig::v4`] / [`VipConfig::v6`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpCidr {
    /// An IPv4 VIP.
    V4(Ipv4Cidr),
    /// An IPv6 VIP.
    V6(Ipv6Cidr),
}

impl IpCidr {
    /// The address without its prefix length.
    pub fn addr(&self) -> IpAddr {
        match self {
            IpCidr::V4(c) => IpAddr::V4(c.addr),
            IpCidr::V6(c) => IpAddr::V6(c.addr),
        }
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        match self {
            IpCidr::V4(c) => c.prefix_len,
            IpCidr::V6(c) => c.prefix_len,
        }
    }

    /// Whether this can be a host's unicast address on a LAN; the reason if not.
    fn check(&self) -> Result<(), String> {
        match *self {
            IpCidr::V4(Ipv4Cidr { addr, prefix_len }) => {
                if prefix_len == 0 || prefix_len > 32 {
                    return Err(format!("prefix length {prefix_len} is not in 1..=32"));
                }
                if addr.is_unspecified()
                    || addr.is_loopback()
                    || addr.is_multicast()
                    || addr.is_broadcast()
                    || addr.is_link_local()
                {
                    return Err(format!(
                        "{addr} is not a unicast LAN address (unspecified, loopback, multicast, \
                         broadcast or link-local)"
                    ));
                }
                if prefix_len <= 30 {
                    let host_mask = u32::MAX >> prefix_len;
                    let host_bits = u32::from(addr) & host_mask;
                    if host_bits == 0 {
                        return Err(format!(
                            "{addr} is the network address of its /{prefix_len}"
                        ));
                    }
                    if host_bits == host_mask {
                        return Err(format!(
                            "{addr} is the broadcast address of its /{prefix_len}"
                        ));
                    }
                }
                Ok(())
            }
            IpCidr::V6(Ipv6Cidr { addr, prefix_len }) => {
                if prefix_len == 0 || prefix_len > 128 {
                    return Err(format!("prefix length {prefix_len} is not in 1..=128"));
                }
                let link_local = addr.segments()[0] & 0xffc0 == 0xfe80;
                if addr.is_unspecified()
                    || addr.is_loopback()
                    || addr.is_multicast()
                    || link_local
                    || addr.to_ipv4_mapped().is_some()
                {
                    return Err(format!(
                        "{addr} is not a global or unique-local unicast address (unspecified, \
                         loopback, multicast, link-local or IPv4-mapped)"
                    ));
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpCidr::V4(c) => c.fmt(f),
            IpCidr::V6(c) => c.fmt(f),
        }
    }
}

impl FromStr for IpCidr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let (addr_text, prefix_text) = s.split_once('/').ok_or_else(|| {
            ConfigError::address(
                s,
                format!("missing prefix length: write it as {s}/24 (IPv4) or {s}/64 (IPv6)"),
            )
        })?;
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            ConfigError::address(s, format!("{addr_text:?} is not an IPv4 or IPv6 address"))
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = prefix_text
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=max).contains(p))
            .ok_or_else(|| {
                ConfigError::address(
                    s,
                    format!("prefix length {prefix_text:?} is not a number in 1..={max}"),
                )
            })?;
        let cidr = match addr {
            IpAddr::V4(addr) => IpCidr::V4(Ipv4Cidr { addr, prefix_len }),
            IpAddr::V6(addr) => IpCidr::V6(Ipv6Cidr { addr, prefix_len }),
        };
        cidr.check()
            .map_err(|reason| ConfigError::address(s, reason))?;
        Ok(cidr)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.parse()? {
            IpCidr::V4(c) => Ok(c),
            IpCidr::V6(_) => Err(ConfigError::address(s, "expected an IPv4 address")),
        }
    }
}

impl FromStr for Ipv6Cidr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.parse()? {
            IpCidr::V6(c) => Ok(c),
            IpCidr::V4(_) => Err(ConfigError::address(s, "expected an IPv6 address")),
        }
    }
}

/// When to send announcement rounds (one round = gratuitous ARP request + reply for the IPv4 VIP
/// and one unsolicited NA for the IPv6 VIP) while the VIP is held.
///
/// Offsets count from the moment the address was added (on [`crate::VipControl::acquire`], and
/// again after the watcher restores a removed address). The default, `0 s, 1.1 s, 2 s, 4 s`, then
/// every 30 s, follows DESIGN.md "VIP failover timing": a Linux client ignores non-gratuitous ARP
/// for its neighbour `locktime` (1 s) after an entry changed, so one round lands just past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceSchedule {
    /// Offsets of the first rounds, strictly increasing, at most [`BURST_ROUNDS_MAX`], each at
    /// most [`BURST_OFFSET_MAX`]. Must not be empty; `0` means "at once".
    pub burst: Vec<Duration>,
    /// After the last burst round, one round every `period` while held; `None` stops after the
    /// burst. At least [`PERIOD_MIN`].
    pub period: Option<Duration>,
}

impl Default for AnnounceSchedule {
    fn default() -> Self {
        AnnounceSchedule {
            burst: vec![
                Duration::ZERO,
                Duration::from_millis(1100),
                Duration::from_secs(2),
                Duration::from_secs(4),
            ],
            period: Some(Duration::from_secs(30)),
        }
    }
}

impl AnnounceSchedule {
    /// Offset of round `round` (0-based) from the start, or `None` when the schedule has no
    /// such round.
    pub fn offset(&self, round: u32) -> Option<Duration> {
        let index = round as usize;
        if let Some(offset) = self.burst.get(index) {
            return Some(*offset);
        }
        let last = *self.burst.last()?;
        let period = self.period?;
        let after_burst = round - self.burst.len() as u32 + 1;
        last.checked_add(period.checked_mul(after_burst)?)
    }

    /// Checks the limits documented on the fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |reason: String| ConfigError {
            what: "announce schedule",
            value: format!("{self:?}"),
            reason,
        };
        if self.burst.is_empty() {
            return Err(err("the burst needs at least one round".into()));
        }
        if self.burst.len() > BURST_ROUNDS_MAX {
            return Err(err(format!(
                "the burst has more than {BURST_ROUNDS_MAX} rounds"
            )));
        }
        if self.burst.windows(2).any(|w| w[0] >= w[1]) {
            return Err(err("burst offsets must be strictly increasing".into()));
        }
        if self.burst.iter().any(|o| *o > BURST_OFFSET_MAX) {
            return Err(err(format!(
                "burst offsets must be at most {BURST_OFFSET_MAX:?}"
            )));
        }
        if self.period.is_some_and(|p| p < PERIOD_MIN) {
            return Err(err(format!("the period must be at least {PERIOD_MIN:?}")));
        }
        Ok(())
    }
}

/// Everything [`crate::NetlinkVip`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipConfig {
    /// The LAN interface the VIP lives on, e.g. `eth0`.
    pub interface: String,
    /// The IPv4 VIP with the prefix length of the LAN, if any.
    pub v4: Option<Ipv4Cidr>,
    /// The IPv6 VIP, if any. Added with `IFA_F_NODAD` so it is usable at once.
    pub v6: Option<Ipv6Cidr>,
    /// When announcements are sent while held.
    pub announce: AnnounceSchedule,
    /// How often the holder re-checks that its addresses are still there, besides reacting to
    /// netlink address-removal events at once (the poll catches lost events). Without a live
    /// event subscription it checks at least every [`WATCH_INTERVAL_UNSUBSCRIBED`].
    pub watch_interval: Duration,
}

impl VipConfig {
    /// A configuration for `interface` with no address yet and default timing.
    pub fn new(interface: impl Into<String>) -> Self {
        VipConfig {
            interface: interface.into(),
            v4: None,
            v6: None,
            announce: AnnounceSchedule::default(),
            watch_interval: Duration::from_secs(5),
        }
    }

    /// Parses `addresses` (each `"10.0.0.100/24"` or `"fd00::100/64"`, at most one per family)
    /// into a validated configuration for `interface` with default timing.
    pub fn parse(interface: &str, addresses: &[&str]) -> Result<Self, ConfigError> {
        let mut config = VipConfig::new(interface);
        for text in addresses {
            match text.trim().parse::<IpCidr>()? {
                IpCidr::V4(c) if config.v4.is_none() => config.v4 = Some(c),
                IpCidr::V6(c) if config.v6.is_none() => config.v6 = Some(c),
                _ => {
                    return Err(ConfigError::address(
                        text,
                        "a second VIP of the same family; give at most one IPv4 and one IPv6",
                    ))
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// The configured addresses, IPv4 first.
    pub fn addresses(&self) -> Vec<IpCidr> {
        let v4 = self.v4.map(IpCidr::V4);
        let v6 = self.v6.map(IpCidr::V6);
        v4.into_iter().chain(v6).collect()
    }

    /// Checks the interface name, the addresses, the schedule and the watch interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_interface(&self.interface)?;
        if self.v4.is_none() && self.v6.is_none() {
            return Err(ConfigError::address("", "no VIP address configured"));
        }
        for cidr in self.addresses() {
            cidr.check()
                .map_err(|reason| ConfigError::address(&cidr.to_string(), reason))?;
        }
        self.announce.validate()?;
        if !(WATCH_INTERVAL_MIN..=WATCH_INTERVAL_MAX).contains(&self.watch_interval) {
            return Err(ConfigError {
                what: "watch interval",
                value: format!("{:?}", self.watch_interval),
                reason: format!("must be in {WATCH_INTERVAL_MIN:?}..={WATCH_INTERVAL_MAX:?}"),
            });
        }
        Ok(())
    }
}

/// The kernel's `dev_valid_name` rules: 1..=15 bytes, no `/`, `:` or whitespace, not `.`/`..`.
fn validate_interface(name: &str) -> Result<(), ConfigError> {
    let err = |reason: &str| ConfigError {
        what: "interface name",
        value: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > IFNAME_MAX_LEN {
        return Err(err("must be 1 to 15 bytes long"));
    }
    if name == "." || name == ".." {
        return Err(err("must not be . or .."));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(err("must not contain '/', ':' or whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(input: &str) -> String {
        input.parse::<IpCidr>().unwrap_err().to_string()
    }

    #[test]
    fn parses_both_families() {
        let c = VipConfig::parse("eth0", &["10.0.0.100/24", "fd00::100/64"]).unwrap();
        assert_eq!(c.v4, Some("10.0.0.100/24".parse().unwrap()));
        assert_eq!(c.v4.unwrap().addr, Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(c.v6.unwrap().prefix_len, 64);
        assert_eq!(c.v6.unwrap().to_string(), "fd00::100/64");
        assert_eq!(c.addresses().len(), 2);
        let only6 = VipConfig::parse("eth0", &["fd00::100/64"]).unwrap();
        assert_eq!(only6.v4, None);
        // A /32 host route is fine (and avoids the primary/secondary pitfall, see crate docs).
        assert!(VipConfig::parse("eth0", &["10.0.0.100/32"]).is_ok());
    }

    #[test]
    fn address_errors_say_what_is_wrong() {
        assert_eq!(
            reason("10.0.0.100"),
            "invalid VIP address \"10.0.0.100\": missing prefix length: write it as \
             10.0.0.100/24 (IPv4) or 10.0.0.100/64 (IPv6)"
        );
        assert!(reason("10.0.0.x/24").contains("\"10.0.0.x\" is not an IPv4 or IPv6 address"));
        assert!(reason("10.0.0.100/33").contains("prefix length \"33\" is not a number in 1..=32"));
        assert!(reason("10.0.0.100/0").contains("1..=32"));
        assert!(reason("10.0.0.100/").contains("prefix length \"\""));
        assert!(reason("fd00::100/129").contains("1..=128"));
        assert!(reason("10.0.0.0/24").contains("network address"));
        assert!(reason("10.0.0.255/24").contains("broadcast address"));
        assert!(reason("224.0.0.1/4").contains("not a unicast LAN address"));
        assert!(reason("127.0.0.1/8").contains("not a unicast LAN address"));
        assert!(reason("fe80::1/64").contains("link-local"));
        assert!(reason("ff02::1/64").contains("multicast"));
        assert!(reason("::ffff:10.0.0.1/96").contains("IPv4-mapped"));
        assert!("fd00::1/64".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.1/24".parse::<Ipv6Cidr>().is_err());
    }

    #[test]
    fn config_errors() {
        let two_v4 = VipConfig::parse("eth0", &["10.0.0.100/24", "10.0.0.101/24"]).unwrap_err();
        assert!(
            two_v4
                .to_string()
                .contains("a second VIP of the same family"),
            "{two_v4}"
        );
        let none = VipConfig::parse("eth0", &[]).unwrap_err();
        assert!(none.to_string().contains("no VIP address configured"));
        for bad in [
            "",
            "a-very-long-interface-name",
            "eth0:1",
            "eth 0",
            "a/b",
            "..",
        ] {
            let e = VipConfig::parse(bad, &["10.0.0.100/24"]).unwrap_err();
            assert_eq!(e.what, "interface name", "{bad:?}: {e}");
        }
        let mut c = VipConfig::parse("eth0", &["10.0.0.100/24"]).unwrap();
        c.watch_interval = Duration::from_millis(1);
        assert_eq!(c.validate().unwrap_err().what, "watch interval");
    }

    #[test]
    fn default_schedule_steps_past_locktime_then_settles() {
        let s = AnnounceSchedule::default();
        s.validate().unwrap();
        let ms = |r| s.offset(r).map(|d| d.as_millis());
        assert_eq!(ms(0), Some(0));
        assert_eq!(ms(1), Some(1100));
        assert_eq!(ms(2), Some(2000));
        assert_eq!(ms(3), Some(4000));
        assert_eq!(ms(4), Some(34_000));
        assert_eq!(ms(5), Some(64_000));
        let finite = AnnounceSchedule { period: None, ..s };
        assert_eq!(finite.offset(3), Some(Duration::from_secs(4)));
        assert_eq!(finite.offset(4), None);
    }

    #[test]
    fn schedule_limits() {
        let bad = |burst: Vec<u64>, period: Option<u64>| {
            AnnounceSchedule {
                burst: burst.into_iter().map(Duration::from_millis).collect(),
                period: period.map(Duration::from_millis),
            }
            .validate()
            .unwrap_err()
            .reason
        };
        assert!(bad(vec![], None).contains("at least one"));
        assert!(bad(vec![0, 1000, 1000], None).contains("strictly increasing"));
        assert!(bad(vec![0], Some(10)).contains("period"));
        assert!(bad((0..17).collect(), None).contains("more than 16"));
        assert!(bad(vec![0, 301_000], None).contains("at most"));
    }
}
