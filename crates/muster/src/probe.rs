//! The install step's health gate (`[kubernetes] health_url` / `health_command` and their worker
//! twins, resolved by `config.rs`): the installer (`installer.rs`) builds one [`HealthGate`]
//! per step and calls [`HealthGate::probe`] every 250 ms until it passes or `install_timeout`
//! runs out; nothing else talks to it.
//!
//! A URL gate is an HTTP/1.1 GET through hyper's `client::conn::http1`, one connection per
//! probe (`Connection: close`); healthy = 2xx. `https://` goes through rustls (ring provider,
//! TLS 1.2/1.3), trusting only the CA in `health_ca_file`, presenting `health_client_cert` /
//! `health_client_key` when set, and checking the server's certificate against
//! `health_server_name` when set (kubeadm's names `kubernetes`, not 127.0.0.1), else against the
//! URL's host. The TLS client config is built once per step (retried at the next probe while
//! its files cannot be read: the hook may still be writing them), not per probe. Bounded: a
//! probe ends within [`PROBE_DEADLINE`] (connecting within [`CONNECT_TIMEOUT`]), at most
//! [`BODY_LIMIT_BYTES`] of a body are read, and a reason quotes at most [`REASON_BODY_BYTES`]
//! of it; PEM files over [`MAX_PEM_FILE_BYTES`] are refused. An unhealthy probe says why in one
//! line naming the URL: connection refused, TLS unknown CA or name mismatch, HTTP 503 and the
//! start of the body, no answer within the deadline.

use std::error::Error as StdError;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::{HealthCheck, HealthUrl};

/// Longest one URL probe may take, connection and TLS handshake included.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(2);
/// Longest a TCP connect may take (within the probe's deadline).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest one health command may run.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(10);
/// Bytes of an unhealthy answer's body read at most.
pub const BODY_LIMIT_BYTES: usize = 4096;
/// Bytes of a body (or of a command's output) quoted in a reason.
pub const REASON_BODY_BYTES: usize = 200;
/// Largest CA, certificate or key file read.
pub const MAX_PEM_FILE_BYTES: u64 = 1 << 20;

/// Why a URL probe cannot be set up (its reason, for the step's error).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The URL does not parse or is not http(s) with a host (config.rs checks this first).
    #[error("health URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A PEM file cannot be read or holds nothing usable.
    #[error("{key} {}: {reason}", path.display())]
    Pem {
        /// `health_ca_file`, `health_client_cert` or `health_client_key`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `https://` without `health_ca_file` (config.rs refuses this first).
    #[error("health URL {0:?} is https but no health_ca_file is set")]
    NoCa(String),
    /// `health_server_name` (or the URL's host) is not a name rustls can check.
    #[error("health_server_name {0:?}: not a DNS name or IP address")]
    ServerName(String),
    /// rustls refused the settings (e.g. a key that does not match its certificate).
    #[error("TLS settings: {0}")]
    Tls(#[from] rustls::Error),
}

/// Where a probe goes.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<(Target, bool), SetupError> {
        let bad = |reason: &str| SetupError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let target = Target {
            url: url.to_string(),
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_string(),
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
        };
        Ok((target, https))
    }
}

/// The TLS side of an `https://` probe, built once.
struct Tls {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

/// One URL's probe: a parsed target and, for `https://`, its TLS client config.
pub struct HttpProbe {
    target: Target,
    tls: Option<Tls>,
}

impl HttpProbe {
    /// Parses the URL and, for `https://`, reads the PEM files and builds the TLS config.
    pub fn new(spec: &HealthUrl) -> Result<HttpProbe, SetupError> {
        let (target, https) = Target::parse(&spec.url)?;
        let tls = if https {
            Some(tls(spec, &target.host)?)
        } else {
            None
        };
        Ok(HttpProbe { target, tls })
    }

    /// One probe: Ok if the URL answered 2xx within [`PROBE_DEADLINE`], else why not.
    pub async fn check(&self) -> Result<(), String> {
        match tokio::time::timeout(PROBE_DEADLINE, self.exchange()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(format!("{}: {why}", self.target.url)),
            Err(_) => Err(format!(
                "{}: no answer within {PROBE_DEADLINE:?}",
                self.target.url
            )),
        }
    }

    async fn exchange(&self) -> Result<(), String> {
        let tcp = connect(&self.target).await?;
        match &self.tls {
            None => get(tcp, &self.target).await,
            Some(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|e| describe(&e))?;
                get(stream, &self.target).await
            }
        }
    }
}

/// The client config of one `https://` URL: the CA, the client pair, the name to check.
fn tls(spec: &HealthUrl, host: &str) -> Result<Tls, SetupError> {
    let ca_file = spec
        .ca_file
        .as_deref()
        .ok_or_else(|| SetupError::NoCa(spec.url.clone()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates("health_ca_file", ca_file)? {
        roots.add(cert).map_err(|e| SetupError::Pem {
            key: "health_ca_file",
            path: ca_file.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let mut config = match &spec.client {
        None => builder.with_no_client_auth(),
        Some(client) => {
            let chain = certificates("health_client_cert", &client.cert)?;
            let key = private_key(&client.key)?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = spec.server_name.as_deref().unwrap_or(host);
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|_| SetupError::ServerName(name.to_string()))?;
    Ok(Tls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

/// A PEM file's bytes, at most [`MAX_PEM_FILE_BYTES`].
fn read_pem(key: &'static str, path: &Path) -> Result<Vec<u8>, SetupError> {
    let fail = |reason: String| SetupError::Pem {
        key,
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(fail(format!("larger than {MAX_PEM_FILE_BYTES} bytes")));
    }
    Ok(bytes)
}

fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let fail = |reason: String| SetupError::Pem {
        key,
        path: path.to_path_buf(),
        reason,
    };
    let pem = read_pem(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail("holds no CERTIFICATE".into()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, SetupError> {
    let pem = read_pem("health_client_key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| SetupError::Pem {
        key: "health_client_key",
        path: path.to_path_buf(),
        reason: format!("no private key: {e}"),
    })
}

/// A TCP connection to the first of the host's addresses that accepts one.
async fn connect(target: &Target) -> Result<TcpStream, String> {
    let addrs = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?;
    let mut last = format!("{} resolves to no address", target.host);
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = format!("connect to {addr}: {}", describe(&e)),
            Err(_) => last = format!("connect to {addr}: no answer within {CONNECT_TIMEOUT:?}"),
        }
    }
    Err(last)
}

/// One GET over `io`; Ok on 2xx, else the status and the start of the body.
async fn get<S>(io: S, target: &Target) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| describe(&e))?;
    let request = Request::get(target.path.as_str())
        .header(HOST, target.authority.as_str())
        .header(USER_AGENT, concat!("muster/", env!("CARGO_PKG_VERSION")))
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = read_capped(response.into_body()).await;
        let quoted = one_line(&body[..body.len().min(REASON_BODY_BYTES)]);
        Err(if quoted.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {quoted}")
        })
    };
    // The connection future does the reading and writing; it must run while we wait.
    tokio::pin!(conn, exchange);
    tokio::select! {
        result = &mut exchange => result,
        ended = &mut conn => match ended {
            Err(e) => Err(describe(&e)),
            Ok(()) => exchange.await,
        },
    }
}

/// Up to [`BODY_LIMIT_BYTES`] of a body; a body that fails midway gives what arrived.
async fn read_capped(mut body: Incoming) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < BODY_LIMIT_BYTES {
        let Some(Ok(frame)) = body.frame().await else {
            break;
        };
        if let Some(data) = frame.data_ref() {
            let room = BODY_LIMIT_BYTES - out.len();
            out.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    out
}

/// Lossy UTF-8 on one line, trimmed.
fn one_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim()
        .replace(['\r', '\n'], " ")
}

/// An error in words: TLS failures by what they mean, refused connections plainly, else the
/// error and its sources.
fn describe(e: &(dyn StdError + 'static)) -> String {
    if let Some(tls) = find::<rustls::Error>(e) {
        return tls_reason(tls);
    }
    if let Some(io) = find::<std::io::Error>(e) {
        match io.kind() {
            std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => return "connection reset".into(),
            _ => {}
        }
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The first `T` in an error's chain, looking inside `io::Error`s too (their `source()` skips
/// the error they wrap).
fn find<'a, T: StdError + 'static>(mut e: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    loop {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            let inner: &(dyn StdError + 'static) = inner;
            if let Some(t) = inner.downcast_ref::<T>() {
                return Some(t);
            }
        }
        e = e.source()?;
    }
}

fn tls_reason(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error};
    match e {
        // A CA of the same name as the real one (an old file) fails on the signature instead.
        Error::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature) => {
            "TLS: unknown CA (the server's certificate is not signed by health_ca_file)".into()
        }
        Error::InvalidCertificate(Cert::NotValidForNameContext {
            expected,
            presented,
        }) => format!(
            "TLS: name mismatch (the server's certificate names {}, not {}; health_server_name sets the name to check)",
            presented
                .iter()
                .map(|n| bare_name(n))
                .collect::<Vec<_>>()
                .join(", "),
            expected.to_str()
        ),
        Error::InvalidCertificate(Cert::NotValidForName) => {
            "TLS: name mismatch (the server's certificate does not name the host; health_server_name sets the name to check)".into()
        }
        Error::AlertReceived(
            alert @ (Alert::CertificateRequired
            | Alert::HandshakeFailure
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::AccessDenied),
        ) => format!(
            "TLS: the server refused us ({alert:?} alert): does it need health_client_cert and health_client_key?"
        ),
        other => format!("TLS: {other}"),
    }
}

/// `DnsName("kubernetes")` (how rustls shows a presented name) → `kubernetes`.
fn bare_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map_or(presented, |inner| inner.trim_matches('"'))
}

/// A step's health gate, built once per step from its [`HealthCheck`].
pub enum HealthGate {
    /// A command that must exit 0.
    Command(PathBuf),
    /// A URL that must answer 2xx; its probe is built at the first probe that can build it.
    Url {
        /// The URL and its TLS settings.
        spec: HealthUrl,
        /// The built probe.
        probe: Option<Box<HttpProbe>>,
    },
}

impl HealthGate {
    /// The gate of a check; None for [`HealthCheck::Hook`] (the hook's exit 0 is done).
    pub fn new(check: &HealthCheck) -> Option<HealthGate> {
        match check {
            HealthCheck::Hook => None,
            HealthCheck::Command(c) => Some(HealthGate::Command(c.clone())),
            HealthCheck::Url(spec) => Some(HealthGate::Url {
                spec: spec.clone(),
                probe: None,
            }),
        }
    }

    /// What the gate probes, for messages.
    pub fn name(&self) -> String {
        match self {
            HealthGate::Command(c) => c.display().to_string(),
            HealthGate::Url { spec, .. } => spec.url.clone(),
        }
    }

    /// One probe: Ok when healthy, else a one-line reason.
    pub async fn probe(&mut self) -> Result<(), String> {
        match self {
            HealthGate::Command(c) => run_command(c).await,
            HealthGate::Url { spec, probe } => {
                if probe.is_none() {
                    *probe = Some(Box::new(HttpProbe::new(spec).map_err(|e| e.to_string())?));
                }
                match probe {
                    Some(p) => p.check().await,
                    None => Err("no probe".into()),
                }
            }
        }
    }
}

/// Runs a health command once: Ok on exit 0, else its status and the tail of its output.
async fn run_command(command: &Path) -> Result<(), String> {
    let run = tokio::process::Command::new(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(COMMAND_DEADLINE, run).await {
        Err(_) => {
            return Err(format!(
                "{}: did not finish within {COMMAND_DEADLINE:?}",
                command.display()
            ))
        }
        Ok(Err(e)) => return Err(format!("cannot run {}: {e}", command.display())),
        Ok(Ok(output)) => output,
    };
    if output.status.success() {
        return Ok(());
    }
    let mut text = output.stdout;
    text.extend_from_slice(&output.stderr);
    let tail = one_line(&text[text.len().saturating_sub(REASON_BODY_BYTES)..]);
    let status = format!("{}: {}", command.display(), output.status);
    Err(if tail.is_empty() {
        status
    } else {
        format!("{status}: {tail}")
    })
}

#[cfg(test)]
pub(crate) mod tests;
