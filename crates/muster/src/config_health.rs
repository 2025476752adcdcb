//! The `[kubernetes]` health gate keys: when an install step counts as done once its hook
//! exited 0. Parsed and validated here for `config.rs` (a child module of it, so it is compiled
//! into `muster-fuzz` too and uses external crates only); the installer's gate (`probe.rs`)
//! carries out the result.
//!
//! On control-plane hosts the gate is `health_url` (an HTTP(S) GET that must answer 2xx) or
//! `health_command` (exit 0); on workers `worker_health_url` or `worker_health_command`. A URL
//! and a command for the same role is an error. `health_ca_file`, `health_client_cert` +
//! `health_client_key` and `health_server_name` are the TLS settings of whichever URL is
//! `https://`. Unset keys take the distribution's defaults ([`default_health`]); for `none`
//! there are none, so without a probe the hook's exit 0 is done.

use std::path::{Path, PathBuf};

/// What decides that a step is done after its hook exited 0.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthCheck {
    /// Nothing more: the hook's exit 0 is done.
    Hook,
    /// A GET of this URL must answer 2xx.
    Url(HealthUrl),
    /// This command must exit 0.
    Command(PathBuf),
}

/// An HTTP(S) health probe's target and TLS settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthUrl {
    /// `http://` or `https://` URL (validated: scheme and host).
    pub url: String,
    /// PEM file of the CA(s) trusted for the server's certificate; required for `https://`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key (PEM), for servers that refuse anonymous callers.
    pub client: Option<ClientAuth>,
    /// The DNS name (or IP) the server's certificate must carry, when it differs from the
    /// URL's host (kubeadm's API server certificate names `kubernetes`, not 127.0.0.1).
    pub server_name: Option<String>,
}

/// `health_client_cert` + `health_client_key`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientAuth {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A distribution's health gate defaults; `None` = no default for that key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthDefaults {
    /// `health_url`.
    pub url: Option<&'static str>,
    /// `worker_health_url`.
    pub worker_url: Option<&'static str>,
    /// `health_ca_file`.
    pub ca_file: Option<&'static str>,
    /// `health_client_cert`.
    pub client_cert: Option<&'static str>,
    /// `health_client_key`.
    pub client_key: Option<&'static str>,
    /// `health_server_name`.
    pub server_name: Option<&'static str>,
}

/// The API server's readiness on this host (every distribution serves it on 6443).
pub const API_SERVER_READYZ: &str = "https://127.0.0.1:6443/readyz";
/// The kubelet's healthz endpoint (its default `healthzPort` 10248 on 127.0.0.1, plain HTTP).
pub const KUBELET_HEALTHZ: &str = "http://127.0.0.1:10248/healthz";

/// The health gate defaults of a distribution. k3s and RKE2 start kube-apiserver with
/// `--anonymous-auth=false`, so the probe presents the admin client certificate they write
/// beside their server CA (the files of their own admin kubeconfig); kubeadm keeps anonymous
/// requests on and the default `system:public-info-viewer` binding lets them read `/readyz`,
/// but its serving certificate names `kubernetes` (and the node and service addresses), not
/// 127.0.0.1. `none` (and anything else) has no defaults.
pub fn default_health(distribution: &str) -> HealthDefaults {
    let rancher = |ca: &'static str, cert: &'static str, key: &'static str| HealthDefaults {
        url: Some(API_SERVER_READYZ),
        worker_url: Some(KUBELET_HEALTHZ),
        ca_file: Some(ca),
        client_cert: Some(cert),
        client_key: Some(key),
        server_name: None,
    };
    match distribution {
        "k3s" => rancher(
            "/var/lib/rancher/k3s/server/tls/server-ca.crt",
            "/var/lib/rancher/k3s/server/tls/client-admin.crt",
            "/var/lib/rancher/k3s/server/tls/client-admin.key",
        ),
        "rke2" => rancher(
            "/var/lib/rancher/rke2/server/tls/server-ca.crt",
            "/var/lib/rancher/rke2/server/tls/client-admin.crt",
            "/var/lib/rancher/rke2/server/tls/client-admin.key",
        ),
        "kubeadm" => HealthDefaults {
            url: Some(API_SERVER_READYZ),
            worker_url: Some(KUBELET_HEALTHZ),
            ca_file: Some("/etc/kubernetes/pki/ca.crt"),
            client_cert: None,
            client_key: None,
            server_name: Some("kubernetes"),
        },
        _ => HealthDefaults::default(),
    }
}

/// The health keys of `[kubernetes]` as written.
#[derive(Debug, Default, Clone, Copy)]
pub struct HealthKeys<'a> {
    /// `health_url`.
    pub url: Option<&'a str>,
    /// `worker_health_url`.
    pub worker_url: Option<&'a str>,
    /// `health_command`.
    pub command: Option<&'a Path>,
    /// `worker_health_command`.
    pub worker_command: Option<&'a Path>,
    /// `health_ca_file`.
    pub ca_file: Option<&'a Path>,
    /// `health_client_cert`.
    pub client_cert: Option<&'a Path>,
    /// `health_client_key`.
    pub client_key: Option<&'a Path>,
    /// `health_server_name`.
    pub server_name: Option<&'a str>,
}

/// A config error: the dotted key and what is wrong.
type KeyError = (&'static str, String);

/// The control-plane and worker gates from the keys as written and the distribution's
/// defaults; an error names the key.
pub fn resolve(
    keys: &HealthKeys,
    defaults: &HealthDefaults,
) -> Result<(HealthCheck, HealthCheck), KeyError> {
    let tls = tls_settings(keys, defaults)?;
    let health = gate(
        ("kubernetes.health_url", keys.url),
        ("kubernetes.health_command", keys.command),
        defaults.url,
        &tls,
    )?;
    let worker = gate(
        ("kubernetes.worker_health_url", keys.worker_url),
        ("kubernetes.worker_health_command", keys.worker_command),
        defaults.worker_url,
        &tls,
    )?;
    let https = [&health, &worker]
        .iter()
        .any(|c| matches!(c, HealthCheck::Url(u) if is_https(&u.url)));
    if !https {
        let set = [
            ("kubernetes.health_ca_file", keys.ca_file.is_some()),
            ("kubernetes.health_client_cert", keys.client_cert.is_some()),
            ("kubernetes.health_client_key", keys.client_key.is_some()),
            ("kubernetes.health_server_name", keys.server_name.is_some()),
        ];
        if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
            return Err((
                key,
                "is only used by an https:// health_url or worker_health_url, and neither is one"
                    .into(),
            ));
        }
    }
    Ok((health, worker))
}

/// The TLS settings with defaults filled in, validated (each half of a client pair needs the
/// other).
fn tls_settings(keys: &HealthKeys, defaults: &HealthDefaults) -> Result<HealthUrl, KeyError> {
    for (key, path) in [
        ("kubernetes.health_ca_file", keys.ca_file),
        ("kubernetes.health_client_cert", keys.client_cert),
        ("kubernetes.health_client_key", keys.client_key),
    ] {
        if let Some(p) = path {
            absolute(key, p)?;
        }
    }
    // A pair written by the operator replaces the default pair as a whole.
    let (cert, key) = match (keys.client_cert, keys.client_key) {
        (Some(c), Some(k)) => (Some(c.to_path_buf()), Some(k.to_path_buf())),
        (Some(_), None) => {
            return Err((
                "kubernetes.health_client_key",
                "health_client_cert is set: name its private key too".into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                "kubernetes.health_client_cert",
                "health_client_key is set: name its certificate too".into(),
            ))
        }
        (None, None) => (
            defaults.client_cert.map(PathBuf::from),
            defaults.client_key.map(PathBuf::from),
        ),
    };
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Some(ClientAuth { cert, key }),
        _ => None,
    };
    let server_name = match keys.server_name {
        Some(name) => {
            if !valid_server_name(name) {
                return Err((
                    "kubernetes.health_server_name",
                    format!("must be a DNS name or an IP address, got {name:?}"),
                ));
            }
            Some(name.to_string())
        }
        None => defaults.server_name.map(String::from),
    };
    Ok(HealthUrl {
        url: String::new(),
        ca_file: keys
            .ca_file
            .map(Path::to_path_buf)
            .or_else(|| defaults.ca_file.map(PathBuf::from)),
        client,
        server_name,
    })
}

/// One role's gate: its command, else its URL (written, else the default), else the hook.
fn gate(
    (url_key, url): (&'static str, Option<&str>),
    (command_key, command): (&'static str, Option<&Path>),
    default_url: Option<&'static str>,
    tls: &HealthUrl,
) -> Result<HealthCheck, KeyError> {
    if let (Some(_), Some(_)) = (url, command) {
        return Err((
            command_key,
            format!(
                "set either {} or {}, not both",
                short(url_key),
                short(command_key)
            ),
        ));
    }
    if let Some(c) = command {
        absolute(command_key, c)?;
        return Ok(HealthCheck::Command(c.to_path_buf()));
    }
    let Some(url) = url.or(default_url) else {
        return Ok(HealthCheck::Hook);
    };
    check_url(url).map_err(|m| (url_key, m))?;
    if is_https(url) && tls.ca_file.is_none() {
        return Err((
            "kubernetes.health_ca_file",
            format!(
                "{} {url:?} is https: name the PEM file of the CA that signed the server's certificate",
                short(url_key)
            ),
        ));
    }
    Ok(HealthCheck::Url(HealthUrl {
        url: url.to_string(),
        ..tls.clone()
    }))
}

/// `kubernetes.health_url` → `health_url`.
fn short(key: &str) -> &str {
    key.strip_prefix("kubernetes.").unwrap_or(key)
}

/// `p` must be absolute; the error names `key`.
pub(super) fn absolute(key: &'static str, p: &Path) -> Result<(), KeyError> {
    if p.is_absolute() {
        Ok(())
    } else {
        Err((
            key,
            format!("must be an absolute path, got {}", p.display()),
        ))
    }
}

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// An `http://` or `https://` URL with a host and no credentials in it.
fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(other) => {
            return Err(format!(
                "{url:?}: the scheme must be http or https, got {other:?}"
            ))
        }
        None => {
            return Err(format!(
                "{url:?}: must be an absolute http:// or https:// URL"
            ))
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{url:?} has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "{url:?}: credentials in the URL are not supported (use health_client_cert)"
        ));
    }
    if authority.host().is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

/// A DNS name (letters, digits, '-' and '.', labels of 1-63 bytes, ≤ 253 bytes) or an IP.
fn valid_server_name(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_per_distribution() {
        let k3s = default_health("k3s");
        assert_eq!(k3s.url, Some("https://127.0.0.1:6443/readyz"));
        assert_eq!(k3s.worker_url, Some("http://127.0.0.1:10248/healthz"));
        assert_eq!(
            k3s.ca_file,
            Some("/var/lib/rancher/k3s/server/tls/server-ca.crt")
        );
        assert_eq!(
            k3s.client_cert,
            Some("/var/lib/rancher/k3s/server/tls/client-admin.crt")
        );
        assert_eq!(
            k3s.client_key,
            Some("/var/lib/rancher/k3s/server/tls/client-admin.key")
        );
        assert_eq!(k3s.server_name, None);
        let rke2 = default_health("rke2");
        assert_eq!(rke2.url, k3s.url);
        assert_eq!(rke2.worker_url, k3s.worker_url);
        for path in [rke2.ca_file, rke2.client_cert, rke2.client_key] {
            assert!(
                path.is_some_and(|p| p.starts_with("/var/lib/rancher/rke2/server/tls/")),
                "{path:?}"
            );
        }
        let kubeadm = default_health("kubeadm");
        assert_eq!(kubeadm.url, k3s.url);
        assert_eq!(kubeadm.worker_url, k3s.worker_url);
        assert_eq!(kubeadm.ca_file, Some("/etc/kubernetes/pki/ca.crt"));
        assert_eq!((kubeadm.client_cert, kubeadm.client_key), (None, None));
        assert_eq!(kubeadm.server_name, Some("kubernetes"));
        assert_eq!(default_health("none"), HealthDefaults::default());
    }

    fn url_of(check: &HealthCheck) -> &HealthUrl {
        match check {
            HealthCheck::Url(u) => u,
            other => panic!("not a URL gate: {other:?}"),
        }
    }

    #[test]
    fn defaults_fill_what_is_not_written() {
        let (cp, worker) = resolve(&HealthKeys::default(), &default_health("kubeadm")).unwrap();
        let cp = url_of(&cp);
        assert_eq!(cp.url, API_SERVER_READYZ);
        assert_eq!(
            cp.ca_file.as_deref(),
            Some(Path::new("/etc/kubernetes/pki/ca.crt"))
        );
        assert_eq!(cp.server_name.as_deref(), Some("kubernetes"));
        assert_eq!(cp.client, None);
        assert_eq!(url_of(&worker).url, KUBELET_HEALTHZ);
        // k3s: the admin pair; a command replaces the default URL; a written pair replaces it.
        let keys = HealthKeys {
            worker_command: Some(Path::new("/usr/libexec/muster/worker-ok")),
            client_cert: Some(Path::new("/etc/muster/probe.crt")),
            client_key: Some(Path::new("/etc/muster/probe.key")),
            ..HealthKeys::default()
        };
        let (cp, worker) = resolve(&keys, &default_health("k3s")).unwrap();
        let client = url_of(&cp).client.clone().expect("client pair");
        assert_eq!(client.cert, Path::new("/etc/muster/probe.crt"));
        assert_eq!(
            worker,
            HealthCheck::Command("/usr/libexec/muster/worker-ok".into())
        );
        let (_, worker) = resolve(&HealthKeys::default(), &default_health("k3s")).unwrap();
        assert!(url_of(&worker).client.is_some(), "TLS settings ride along");
        // none: no probe unless configured.
        assert_eq!(
            resolve(&HealthKeys::default(), &default_health("none")).unwrap(),
            (HealthCheck::Hook, HealthCheck::Hook)
        );
    }

    fn err(keys: HealthKeys) -> String {
        let (key, message) = resolve(&keys, &default_health("none")).unwrap_err();
        format!("{key}: {message}")
    }

    #[test]
    fn bad_keys_are_named() {
        let https = HealthKeys {
            url: Some("https://127.0.0.1:6443/readyz"),
            ca_file: Some(Path::new("/etc/ca.pem")),
            ..HealthKeys::default()
        };
        assert!(resolve(&https, &HealthDefaults::default()).is_ok());
        let e = err(HealthKeys {
            url: Some("ftp://127.0.0.1/x"),
            ..https
        });
        assert!(
            e.starts_with("kubernetes.health_url:") && e.contains("scheme"),
            "{e}"
        );
        let e = err(HealthKeys {
            worker_url: Some("/healthz"),
            ..https
        });
        assert!(e.starts_with("kubernetes.worker_health_url:"), "{e}");
        let e = err(HealthKeys {
            url: Some("https://user:pw@10.0.0.1/"),
            ..https
        });
        assert!(e.contains("credentials"), "{e}");
        let e = err(HealthKeys {
            ca_file: Some(Path::new("pki/ca.crt")),
            ..https
        });
        assert!(
            e.starts_with("kubernetes.health_ca_file:") && e.contains("absolute"),
            "{e}"
        );
        let e = err(HealthKeys {
            client_cert: Some(Path::new("/etc/c.pem")),
            ..https
        });
        assert!(e.starts_with("kubernetes.health_client_key:"), "{e}");
        let e = err(HealthKeys {
            client_key: Some(Path::new("/etc/k.pem")),
            ..https
        });
        assert!(e.starts_with("kubernetes.health_client_cert:"), "{e}");
        let e = err(HealthKeys {
            command: Some(Path::new("/bin/true")),
            ..https
        });
        assert!(
            e.starts_with("kubernetes.health_command:") && e.contains("not both"),
            "{e}"
        );
        let e = err(HealthKeys {
            worker_url: Some("http://127.0.0.1:10248/healthz"),
            worker_command: Some(Path::new("/bin/true")),
            ..HealthKeys::default()
        });
        assert!(e.starts_with("kubernetes.worker_health_command:"), "{e}");
        let e = err(HealthKeys {
            ca_file: None,
            ..https
        });
        assert!(
            e.starts_with("kubernetes.health_ca_file:") && e.contains("https"),
            "{e}"
        );
        let e = err(HealthKeys {
            server_name: Some("not a name"),
            ..https
        });
        assert!(e.starts_with("kubernetes.health_server_name:"), "{e}");
        let e = err(HealthKeys {
            url: Some("http://127.0.0.1:8080/ok"),
            ..https
        });
        assert!(
            e.starts_with("kubernetes.health_ca_file:") && e.contains("only used"),
            "a TLS key without an https URL is a mistake: {e}"
        );
        let e = err(HealthKeys {
            command: Some(Path::new("bin/probe")),
            ..HealthKeys::default()
        });
        assert!(e.starts_with("kubernetes.health_command:"), "{e}");
    }

    #[test]
    fn server_names() {
        for ok in [
            "kubernetes",
            "api.site.example.",
            "127.0.0.1",
            "fd00::1",
            "a-b.c",
        ] {
            assert!(valid_server_name(ok), "{ok}");
        }
        for bad in ["", "a b", "-a", "a..b", "a_b", &"x".repeat(64)] {
            assert!(!valid_server_name(bad), "{bad}");
        }
    }
}
