//! Tests of the health probe against real local servers on 127.0.0.1: plain HTTP and TLS
//! (tokio-rustls server side, certificates made here with rcgen), with and without a required
//! client certificate. [`Server`] is also used by the installer's tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::config::health::ClientAuth;

/// What the server answers to its n-th request (0-based): a status code.
type Answer = dyn Fn(usize) -> u16 + Send + Sync;

/// The body of every non-2xx answer: what kube-apiserver's /readyz says while etcd is not up.
const SICK_BODY: &str = "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n";

/// A local HTTP(S) server that counts requests and answers by [`Answer`].
pub(crate) struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    count: Arc<AtomicUsize>,
}

impl Server {
    /// A plain HTTP server.
    pub(crate) async fn plain(answer: impl Fn(usize) -> u16 + Send + Sync + 'static) -> Server {
        Server::start(None, Arc::new(answer)).await
    }

    /// A TLS server with this config.
    async fn tls(
        config: rustls::ServerConfig,
        answer: impl Fn(usize) -> u16 + Send + Sync + 'static,
    ) -> Server {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Server::start(Some(acceptor), Arc::new(answer)).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>, answer: Arc<Answer>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tls, answer, counter) = (tls.clone(), answer.clone(), counter.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve(tcp, &*answer, &counter).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(stream, &*answer, &counter).await;
                            }
                        }
                    }
                });
            }
        });
        Server { addr, count }
    }

    /// Requests answered so far.
    pub(crate) fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// Reads one request head, answers it and closes.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, answer: &Answer, count: &AtomicUsize) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let status = answer(count.fetch_add(1, Ordering::SeqCst));
    let (reason, body) = match status {
        200 => ("OK", "ok".to_string()),
        503 => ("Service Unavailable", SICK_BODY.to_string()),
        // A big body: the probe reads at most BODY_LIMIT_BYTES and quotes REASON_BODY_BYTES.
        _ => ("Internal Server Error", "x".repeat(64 * 1024)),
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = io.write_all(response.as_bytes()).await;
    let _ = io.shutdown().await;
}

/// A CA and what it signs, written as PEM files into a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    /// A CA whose subject is `CN=name`.
    fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let ca = params.self_signed(&ca_key).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
            ca_key,
        };
        std::fs::write(pki.path("ca.crt"), pki.ca.pem()).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A leaf for these names, written to NAME.crt / NAME.key; returns (chain, key).
    fn leaf(
        &self,
        name: &str,
        sans: &[&str],
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        std::fs::write(self.path(&format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
        let chain = vec![cert.der().clone()];
        let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
        (chain, key)
    }

    fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        Arc::new(roots)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server config with a leaf of `pki` for `sans`; with `clients`, client certificates
/// signed by that CA are required.
fn server_config(pki: &Pki, sans: &[&str], clients: Option<&Pki>) -> rustls::ServerConfig {
    let (chain, key) = pki.leaf("server", sans);
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    match clients {
        None => builder.with_no_client_auth(),
        Some(clients) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                clients.roots(),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    }
    .with_single_cert(chain, key)
    .unwrap()
}

fn spec(url: String, ca: Option<&Path>) -> HealthUrl {
    HealthUrl {
        url,
        ca_file: ca.map(Path::to_path_buf),
        client: None,
        server_name: None,
    }
}

async fn check(spec: &HealthUrl) -> Result<(), String> {
    HttpProbe::new(spec).unwrap().check().await
}

#[tokio::test]
async fn https_200_is_healthy_and_503_says_status_and_body() {
    let pki = Pki::new("server-ca");
    let server = Server::tls(server_config(&pki, &["127.0.0.1"], None), |n| {
        if n == 0 {
            503
        } else {
            200
        }
    })
    .await;
    let s = spec(
        format!("https://{}/readyz", server.addr),
        Some(&pki.path("ca.crt")),
    );
    let probe = HttpProbe::new(&s).unwrap();
    let e = probe.check().await.unwrap_err();
    assert!(
        e.starts_with(&s.url)
            && e.contains("HTTP 503 Service Unavailable")
            && e.contains("[-]etcd failed"),
        "{e}"
    );
    // The same probe (one TLS config for the step) passes once the server is ready.
    assert_eq!(probe.check().await, Ok(()));
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_big_error_body_is_read_capped_and_quoted_short() {
    let server = Server::plain(|_| 500).await;
    let e = check(&spec(format!("http://{}/", server.addr), None))
        .await
        .unwrap_err();
    assert!(e.contains("HTTP 500"), "{e}");
    let quoted = e.rsplit(": ").next().unwrap_or_default();
    assert_eq!(quoted.len(), REASON_BODY_BYTES, "{e}");
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_server_is_a_tls_error() {
    let pki = Pki::new("server-ca");
    let other = Pki::new("other-ca");
    // Another CA of the same name (a CA file left from an earlier install: kubeadm's is always
    // CN=kubernetes) fails on the signature, and says the same.
    let namesake = Pki::new("server-ca");
    let server = Server::tls(server_config(&pki, &["127.0.0.1"], None), |_| 200).await;
    let e = check(&spec(
        format!("https://{}/readyz", server.addr),
        Some(&other.path("ca.crt")),
    ))
    .await
    .unwrap_err();
    assert!(e.contains("TLS: unknown CA"), "{e}");
    let e = check(&spec(
        format!("https://{}/readyz", server.addr),
        Some(&namesake.path("ca.crt")),
    ))
    .await
    .unwrap_err();
    assert!(e.contains("TLS: unknown CA"), "{e}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn server_name_checks_the_certificate_against_a_dns_name() {
    // kubeadm's API server: its certificate names `kubernetes`, not 127.0.0.1.
    let pki = Pki::new("server-ca");
    let server = Server::tls(server_config(&pki, &["kubernetes"], None), |_| 200).await;
    let mut s = spec(
        format!("https://{}/readyz", server.addr),
        Some(&pki.path("ca.crt")),
    );
    let e = check(&s).await.unwrap_err();
    assert!(
        e.contains("TLS: name mismatch") && e.contains("kubernetes") && e.contains("127.0.0.1"),
        "{e}"
    );
    s.server_name = Some("kubernetes".into());
    assert_eq!(check(&s).await, Ok(()));
    s.server_name = Some("api.example".into());
    let e = check(&s).await.unwrap_err();
    assert!(
        e.contains(
            "TLS: name mismatch (the server's certificate names kubernetes, not api.example"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_server_that_requires_a_client_certificate() {
    let pki = Pki::new("server-ca");
    let clients = Pki::new("client-ca");
    clients.leaf("admin", &["system:admin"]);
    let stranger = Pki::new("stranger-ca");
    stranger.leaf("admin", &["system:admin"]);
    let server = Server::tls(server_config(&pki, &["127.0.0.1"], Some(&clients)), |_| 200).await;
    let mut s = spec(
        format!("https://{}/readyz", server.addr),
        Some(&pki.path("ca.crt")),
    );
    let e = check(&s).await.unwrap_err();
    assert!(
        e.contains("TLS: the server refused us") && e.contains("health_client_cert"),
        "{e}"
    );
    s.client = Some(ClientAuth {
        cert: stranger.path("admin.crt"),
        key: stranger.path("admin.key"),
    });
    let e = check(&s).await.unwrap_err();
    assert!(
        e.contains("TLS: the server refused us"),
        "a client the server does not trust: {e}"
    );
    s.client = Some(ClientAuth {
        cert: clients.path("admin.crt"),
        key: clients.path("admin.key"),
    });
    assert_eq!(check(&s).await, Ok(()));
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn connection_refused_names_the_url() {
    // A port that was just free: bind, note it, close.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}/healthz");
    let e = check(&spec(url.clone(), None)).await.unwrap_err();
    assert!(
        e.starts_with(&url) && e.contains("connection refused"),
        "{e}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_hits_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts, then holds every connection without a byte (neither HTTP nor TLS).
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            conns.push(tcp);
        }
    });
    let pki = Pki::new("server-ca");
    for url in [format!("http://{addr}/"), format!("https://{addr}/")] {
        let started = Instant::now();
        let e = check(&spec(url, Some(&pki.path("ca.crt"))))
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(e.contains("no answer within 2s"), "{e}");
        assert!(
            took >= PROBE_DEADLINE && took < PROBE_DEADLINE + Duration::from_secs(1),
            "{took:?}"
        );
    }
    held.abort();
}

#[tokio::test]
async fn setup_errors_name_the_file_or_url() {
    let pki = Pki::new("server-ca");
    let missing = pki.path("nope.crt");
    let s = spec("https://127.0.0.1:6443/readyz".into(), Some(&missing));
    let e = HttpProbe::new(&s)
        .err()
        .expect("a missing CA file")
        .to_string();
    assert!(
        e.contains("health_ca_file") && e.contains("nope.crt"),
        "{e}"
    );
    std::fs::write(pki.path("junk.crt"), "not pem").unwrap();
    let s = spec(
        "https://127.0.0.1:6443/readyz".into(),
        Some(&pki.path("junk.crt")),
    );
    let e = HttpProbe::new(&s)
        .err()
        .expect("no certificate")
        .to_string();
    assert!(e.contains("holds no CERTIFICATE"), "{e}");
    let mut s = spec(
        "https://127.0.0.1:6443/readyz".into(),
        Some(&pki.path("ca.crt")),
    );
    pki.leaf("client", &["client"]);
    s.client = Some(ClientAuth {
        cert: pki.path("client.crt"),
        key: pki.path("ca.crt"),
    });
    let e = HttpProbe::new(&s)
        .err()
        .expect("a key that is no key")
        .to_string();
    assert!(e.contains("health_client_key"), "{e}");
    let e = HttpProbe::new(&spec("ftp://127.0.0.1/".into(), None))
        .err()
        .expect("not http")
        .to_string();
    assert!(e.contains("scheme"), "{e}");
}

#[tokio::test]
async fn a_gate_builds_its_probe_once_the_files_exist() {
    let pki = Pki::new("server-ca");
    let server = Server::tls(server_config(&pki, &["127.0.0.1"], None), |_| 200).await;
    let ca = pki.path("later-ca.crt");
    let mut gate = HealthGate::new(&HealthCheck::Url(spec(
        format!("https://{}/readyz", server.addr),
        Some(&ca),
    )))
    .expect("a URL gate");
    let e = gate.probe().await.unwrap_err();
    assert!(
        e.contains("health_ca_file") && e.contains("cannot read"),
        "{e}"
    );
    std::fs::copy(pki.path("ca.crt"), &ca).unwrap();
    assert_eq!(gate.probe().await, Ok(()));
    assert!(HealthGate::new(&HealthCheck::Hook).is_none());
}

#[tokio::test]
async fn a_command_gate_says_why_it_failed() {
    let mut gate = HealthGate::new(&HealthCheck::Command("/bin/false".into())).unwrap();
    let e = gate.probe().await.unwrap_err();
    assert!(
        e.contains("/bin/false") && e.contains("exit status: 1"),
        "{e}"
    );
    let mut gate = HealthGate::new(&HealthCheck::Command("/bin/true".into())).unwrap();
    assert_eq!(gate.probe().await, Ok(()));
}
