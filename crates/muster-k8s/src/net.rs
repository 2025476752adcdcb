//! Addresses and the hook's environment: endpoint, node name and CIDR checks, [`server_url`],
//! [`no_proxy`], and the `env` of a [`crate::Rendered`].
//!
//! `NO_PROXY` is built the way the distributions document it: k3s and RKE2 add their own pod
//! and service networks and cluster domain, but the nodes' own addresses must be listed by the
//! operator (docs.k3s.io/advanced#configuring-an-http-proxy,
//! docs.rke2.io/advanced#configuring-an-http-proxy); kubeadm adds nothing itself, and its
//! preflight check warns when the service and pod networks are missing. So muster lists them
//! all: the operator's entries, both networks, the node addresses, the endpoint, `localhost`,
//! `127.0.0.1` and the in-cluster suffixes `.svc` and `.cluster.local`.

use std::net::IpAddr;

use crate::{Distribution, RenderError, RenderInput, ENV_CA_FILES};

/// The URL (or `host:port` for kubeadm) a joining host points at, the endpoint bracketed when
/// it is an IPv6 address: `https://E:6443` (k3s), `https://E:9345` (RKE2, the supervisor port),
/// `E:6443` (kubeadm's `apiServerEndpoint`); empty for [`Distribution::None`].
pub fn server_url(distribution: Distribution, endpoint: &str) -> String {
    let host = host_for_url(endpoint);
    match distribution {
        Distribution::K3s => format!("https://{host}:6443"),
        Distribution::Rke2 => format!("https://{host}:9345"),
        Distribution::Kubeadm => format!("{host}:6443"),
        Distribution::None => String::new(),
    }
}

/// The endpoint without brackets: what goes into certificate SANs.
pub(crate) fn bare_host(endpoint: &str) -> &str {
    endpoint
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .unwrap_or(endpoint)
}

/// The endpoint as the host part of a URL or `host:port`: IPv6 addresses bracketed.
pub(crate) fn host_for_url(endpoint: &str) -> String {
    let bare = bare_host(endpoint);
    if bare.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{bare}]")
    } else {
        bare.to_owned()
    }
}

/// The `NO_PROXY` value: the operator's entries, the pod and service networks (each of a
/// dual-stack pair), the node addresses, the endpoint, then `localhost`, `127.0.0.1` (and `::1`
/// when any address is IPv6), `.svc`, `.cluster.local`; each entry once, in that order.
pub fn no_proxy(
    user: &[String],
    cluster_cidr: &str,
    service_cidr: &str,
    node_addresses: &[IpAddr],
    endpoint: &str,
) -> String {
    let mut entries: Vec<String> = Vec::new();
    let mut add = |entry: &str| {
        let entry = entry.trim();
        if !entry.is_empty() && !entries.iter().any(|e| e == entry) {
            entries.push(entry.to_owned());
        }
    };
    user.iter().for_each(|e| add(e));
    cluster_cidr.split(',').for_each(&mut add);
    service_cidr.split(',').for_each(&mut add);
    node_addresses.iter().for_each(|a| add(&a.to_string()));
    add(bare_host(endpoint));
    add("localhost");
    add("127.0.0.1");
    let any_v6 = node_addresses.iter().any(IpAddr::is_ipv6)
        || bare_host(endpoint).parse::<std::net::Ipv6Addr>().is_ok();
    if any_v6 {
        add("::1");
    }
    add(".svc");
    add(".cluster.local");
    entries.join(",")
}

/// The variables the hook gets beside `MUSTER_CONFIG`: the proxy (upper case, as k3s and RKE2
/// read them — RKE2 documents that `NO_PROXY` must be upper case; kubeadm gets the lower-case
/// forms as well, which curl and other host tools read) and `MUSTER_CA_FILES`.
pub(crate) fn hook_env(input: &RenderInput) -> Result<Vec<(String, String)>, RenderError> {
    let mut env = Vec::new();
    if let Some(proxy) = input.proxy {
        let mut nodes = vec![input.node_ip];
        nodes.extend(input.init_ip.filter(|ip| *ip != input.node_ip));
        let no = no_proxy(
            &proxy.no_proxy,
            input.cluster_cidr,
            input.service_cidr,
            &nodes,
            input.endpoint,
        );
        let vars = [
            ("HTTP_PROXY", proxy.http_proxy.as_deref()),
            ("HTTPS_PROXY", proxy.https_proxy.as_deref()),
            ("NO_PROXY", Some(no.as_str())),
        ];
        let lower = input.distribution == Distribution::Kubeadm;
        for (name, value) in vars {
            let Some(value) = value else { continue };
            env.push((name.to_owned(), value.to_owned()));
            if lower {
                env.push((name.to_ascii_lowercase(), value.to_owned()));
            }
        }
    }
    if !input.ca_files.is_empty() {
        let mut paths = Vec::with_capacity(input.ca_files.len());
        for path in input.ca_files {
            let text = path.to_str().unwrap_or_default();
            if text.is_empty() || !path.is_absolute() || text.contains(':') {
                return Err(RenderError::BadCaFile(path.display().to_string()));
            }
            paths.push(text);
        }
        env.push((ENV_CA_FILES.to_owned(), paths.join(":")));
    }
    Ok(env)
}

/// A URL with any `user:password@` replaced by `***@`, for Debug output.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let sep = if scheme.is_empty() { "" } else { "://" };
            format!("{scheme}{sep}***@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

/// Checks the endpoint is an IP address (IPv6 optionally bracketed) or a DNS name.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), RenderError> {
    let bad = |reason| RenderError::BadEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let bare = bare_host(endpoint);
    if bare.is_empty() {
        return Err(bad("empty"));
    }
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if bare.contains(':') {
        return Err(bad(
            "a port or a malformed IPv6 address (give the host only)",
        ));
    }
    if !is_dns_name(bare.strip_suffix('.').unwrap_or(bare)) {
        return Err(bad(
            "not an IP address nor a DNS name (letters, digits, '-', '.')",
        ));
    }
    Ok(())
}

/// Checks the node name is a lower-case RFC 1123 subdomain (what Kubernetes accepts).
pub(crate) fn check_node_name(name: &str) -> Result<(), RenderError> {
    let lower = name.bytes().all(|b| !b.is_ascii_uppercase());
    if lower && is_dns_name(name) {
        Ok(())
    } else {
        Err(RenderError::BadNodeName(name.to_owned()))
    }
}

/// An RFC 1123 subdomain: dot-separated labels of letters, digits and inner hyphens, ≤ 253 bytes.
fn is_dns_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

/// Checks `value` is `address/prefix`, or two of them comma-separated (dual stack).
pub(crate) fn check_cidr(field: &'static str, value: &str) -> Result<(), RenderError> {
    let one = |cidr: &str| -> bool {
        let Some((addr, prefix)) = cidr.split_once('/') else {
            return false;
        };
        let (Ok(addr), Ok(prefix)) = (addr.parse::<IpAddr>(), prefix.parse::<u8>()) else {
            return false;
        };
        prefix <= if addr.is_ipv4() { 32 } else { 128 }
    };
    let parts: Vec<&str> = value.split(',').collect();
    if parts.len() <= 2 && parts.iter().all(|p| one(p)) {
        Ok(())
    } else {
        Err(RenderError::BadCidr {
            field,
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_per_distribution_bracket_ipv6() {
        assert_eq!(
            server_url(Distribution::K3s, "10.0.0.100"),
            "https://10.0.0.100:6443"
        );
        assert_eq!(
            server_url(Distribution::Rke2, "api.site"),
            "https://api.site:9345"
        );
        assert_eq!(
            server_url(Distribution::Kubeadm, "fd00::64"),
            "[fd00::64]:6443"
        );
        assert_eq!(
            server_url(Distribution::K3s, "[fd00::64]"),
            "https://[fd00::64]:6443"
        );
        assert_eq!(server_url(Distribution::None, "x"), "");
    }

    #[test]
    fn no_proxy_lists_everything_once_in_order() {
        let ip: IpAddr = "10.0.0.11".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let got = no_proxy(
            &["registry.local".into(), "10.0.0.11".into()],
            "10.42.0.0/16",
            "10.43.0.0/16",
            &[ip],
            "10.0.0.100",
        );
        assert_eq!(
            got,
            "registry.local,10.0.0.11,10.42.0.0/16,10.43.0.0/16,10.0.0.100,localhost,127.0.0.1,.svc,.cluster.local"
        );
    }

    #[test]
    fn no_proxy_splits_dual_stack_and_adds_loopback_v6() {
        let ip: IpAddr = "fd00::11".parse().unwrap_or(IpAddr::from([0u16; 8]));
        let got = no_proxy(
            &[],
            "10.42.0.0/16,fd42::/56",
            "10.43.0.0/16",
            &[ip],
            "[fd00::64]",
        );
        assert_eq!(
            got,
            "10.42.0.0/16,fd42::/56,10.43.0.0/16,fd00::11,fd00::64,localhost,127.0.0.1,::1,.svc,.cluster.local"
        );
    }

    #[test]
    fn credentials_are_cut_from_urls() {
        assert_eq!(
            redact_url("http://u:p@proxy:3128/x"),
            "http://***@proxy:3128/x"
        );
        assert_eq!(redact_url("proxy:3128"), "proxy:3128");
        assert_eq!(redact_url("u:p@proxy"), "***@proxy");
    }

    #[test]
    fn endpoints_names_and_cidrs_are_checked() {
        assert!(check_endpoint("10.0.0.100").is_ok());
        assert!(check_endpoint("[fd00::1]").is_ok());
        assert!(check_endpoint("api.site.example.").is_ok());
        for bad in ["", "10.0.0.100:6443", "api site", "https://x", "-a.b"] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        assert!(check_node_name("edge-1").is_ok());
        assert!(check_node_name("Edge-1").is_err());
        assert!(check_cidr("cluster_cidr", "10.42.0.0/16,fd42::/56").is_ok());
        for bad in [
            "10.42.0.0",
            "10.42.0.0/33",
            "x/8",
            "",
            "1.0.0.0/8,2.0.0.0/8,3.0.0.0/8",
        ] {
            assert!(check_cidr("cluster_cidr", bad).is_err(), "{bad}");
        }
    }
}
