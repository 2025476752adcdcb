//! Names and addresses of a site's namespaces, interfaces and hosts.
//!
//! Pure functions: [`crate::netns`] and [`crate::site`] ask this module what to call things, and
//! the stale-namespace sweep asks it which existing namespaces belong to a prefix. Keeping the
//! naming rules here lets them be unit-tested without root.

use std::net::Ipv4Addr;

use anyhow::{bail, Result};

/// Longest accepted site prefix: `<prefix>-v<index>` must fit Linux's 15-byte interface names.
pub const PREFIX_MAX_LEN: usize = 10;
/// Most hosts one site may have (addresses 10.77.0.10 ..= 10.77.0.209, 3-digit veth suffix).
pub const HOSTS_MAX: usize = 200;
/// Longest Linux interface name (IFNAMSIZ - 1).
pub const IFNAME_MAX_LEN: usize = 15;
/// Name of the bridge inside the bridge namespace.
pub const BRIDGE: &str = "br0";
/// Name of each host's LAN interface inside its namespace.
pub const HOST_IFACE: &str = "eth0";
/// Prefix length of the site subnet 10.77.0.0/24.
pub const SUBNET_PREFIX_LEN: u8 = 24;
/// The site's IPv4 VIP as `[vip] address` sets it.
pub const VIP_V4: &str = "10.77.0.100/24";
/// The site's optional IPv6 VIP as `[vip] address6` sets it.
pub const VIP_V6: &str = "fd77::100/64";
/// The client's IPv4 address (outside the hosts' range 10.77.0.10 ..= 10.77.0.209).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 250);
/// The client's IPv6 address, in the IPv6 VIP's subnet.
pub const CLIENT_IP6: &str = "fd77::250/64";

/// Checks that `prefix` is short, lower-case ASCII letters, digits and `-`, and starts with a
/// letter, so every name derived from it is a valid namespace and interface name.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let ok_chars = prefix
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let starts_with_letter = prefix
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase());
    if prefix.is_empty() || prefix.len() > PREFIX_MAX_LEN || !ok_chars || !starts_with_letter {
        bail!(
            "site prefix {prefix:?} is invalid: use 1..={PREFIX_MAX_LEN} characters of [a-z0-9-], \
             starting with a letter"
        );
    }
    Ok(())
}

/// Checks a host count against [`HOSTS_MAX`].
pub fn validate_hosts(hosts: usize) -> Result<()> {
    if hosts == 0 || hosts > HOSTS_MAX {
        bail!("a site needs 1..={HOSTS_MAX} hosts, got {hosts}");
    }
    Ok(())
}

/// The namespace holding the bridge: `<prefix>-br`.
pub fn bridge_ns(prefix: &str) -> String {
    format!("{prefix}-br")
}

/// The namespace of host `index`: `<prefix>-h<index>`.
pub fn host_ns(prefix: &str, index: usize) -> String {
    format!("{prefix}-h{index}")
}

/// The bridge-side end of host `index`'s veth pair: `<prefix>-v<index>` (≤ 15 bytes).
pub fn bridge_port(prefix: &str, index: usize) -> String {
    format!("{prefix}-v{index}")
}

/// The namespace of the site's client (a host on the bridge without an agent): `<prefix>-c`.
pub fn client_ns(prefix: &str) -> String {
    format!("{prefix}-c")
}

/// The bridge-side end of the client's veth pair: `<prefix>-vc`.
pub fn client_port(prefix: &str) -> String {
    format!("{prefix}-vc")
}

/// The node name written to host `index`'s config: `h<index>`.
pub fn node_name(index: usize) -> String {
    format!("h{index}")
}

/// The IPv4 address of host `index`: 10.77.0.(10 + index).
pub fn host_ip(index: usize) -> Ipv4Addr {
    let last = u8::try_from(10 + index).expect("host index validated against HOSTS_MAX");
    Ipv4Addr::new(10, 77, 0, last)
}

/// Whether namespace `name` is one a site with `prefix` creates (`<prefix>-br`, `<prefix>-c` or
/// `<prefix>-h<digits>`). Used to sweep namespaces left behind by a crashed run.
pub fn is_site_namespace(prefix: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    if rest == "br" || rest == "c" {
        return true;
    }
    rest.strip_prefix('h')
        .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()))
}

/// Parses the output of `ip netns list` ("name" or "name (id: N)" per line) into names.
pub fn parse_netns_list(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Whether `s` is a node id as the operator contract prints it: exactly 16 hex digits.
pub fn is_node_id(s: &str) -> bool {
    s.len() == 16 && s.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rules() {
        for ok in ["mf-a", "mb", "x1", "abcdefghij"] {
            validate_prefix(ok).unwrap();
        }
        for bad in ["", "MF", "1ab", "a_b", "abcdefghijk", "a b", "a/b"] {
            assert!(validate_prefix(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn interface_names_fit_ifnamsiz() {
        let prefix = "abcdefghij";
        validate_prefix(prefix).unwrap();
        assert!(bridge_port(prefix, HOSTS_MAX - 1).len() <= IFNAME_MAX_LEN);
        assert_eq!(bridge_port("mf-a", 3), "mf-a-v3");
        assert_eq!(host_ns("mf-a", 3), "mf-a-h3");
        assert_eq!(bridge_ns("mf-a"), "mf-a-br");
        assert!(client_port(prefix).len() <= IFNAME_MAX_LEN);
        assert_eq!(client_ns("mf-a"), "mf-a-c");
    }

    #[test]
    fn addresses_are_distinct_and_in_subnet() {
        assert_eq!(host_ip(0), Ipv4Addr::new(10, 77, 0, 10));
        assert_eq!(host_ip(HOSTS_MAX - 1), Ipv4Addr::new(10, 77, 0, 209));
        validate_hosts(HOSTS_MAX).unwrap();
        assert!(validate_hosts(0).is_err());
        assert!(validate_hosts(HOSTS_MAX + 1).is_err());
    }

    #[test]
    fn stale_namespace_matching_is_exact() {
        assert!(is_site_namespace("mf-a", "mf-a-br"));
        assert!(is_site_namespace("mf-a", "mf-a-h0"));
        assert!(is_site_namespace("mf-a", "mf-a-h12"));
        assert!(is_site_namespace("mf-a", "mf-a-c"));
        assert!(!is_site_namespace("mf-a", "mf-a-cx"));
        assert!(!is_site_namespace("mf-a", "mf-ab-h0"));
        assert!(!is_site_namespace("mf-a", "mf-a-h"));
        assert!(!is_site_namespace("mf-a", "mf-a-hx"));
        assert!(!is_site_namespace("mf-a", "mf-a-brx"));
        assert!(!is_site_namespace("mf-a", "mf-a"));
        assert!(!is_site_namespace("mf", "mf-a-h0"));
    }

    #[test]
    fn netns_list_parsing() {
        let out = "mf-a-h1 (id: 2)\nmf-a-br (id: 0)\nother\n\n";
        assert_eq!(parse_netns_list(out), ["mf-a-h1", "mf-a-br", "other"]);
    }

    #[test]
    fn node_id_format() {
        assert!(is_node_id("00ff00ff00ff00ff"));
        assert!(is_node_id("ABCDEF0123456789"));
        assert!(!is_node_id("00ff00ff00ff00f"));
        assert!(!is_node_id("00ff00ff00ff00fg"));
        assert!(!is_node_id(""));
    }
}
