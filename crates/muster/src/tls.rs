//! Remote access to the status RPC: TLS 1.3 with mutual authentication by raw ed25519 public
//! keys (RFC 7250, rustls; no certificates, no CA, no home-made signing).
//!
//! - The agent has an RPC key of its own (`data_dir/rpc.key`, PKCS#8, mode 0600, made on first
//!   start): what clients pin, as SSH pins host keys.
//! - Each operator has a key made by `muster operator keygen` (PKCS#8 file, 0600; the public key
//!   is printed as 64 hex digits). The agent's `[[rpc.operators]]` list the public keys it
//!   accepts, each `read-only` or `admin`. A client whose key is not listed fails the handshake:
//!   it gets nothing, not even the service list.
//! - The client checks the agent's key against a pin: `--server-key HEX`, else its known-hosts
//!   file (`host:port hex` lines); an endpoint it has never seen is pinned on first use, a key
//!   that differs from the pin is refused before anything is sent.
//!
//! Keys are ed25519 in RFC 8410 encodings: a raw public key travels as its
//! SubjectPublicKeyInfo, [`SPKI_PREFIX`] followed by the 32 key bytes.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// DER of an ed25519 SubjectPublicKeyInfo up to the key bytes (RFC 8410 §4: SEQUENCE {
/// SEQUENCE { OID 1.3.101.112 }, BIT STRING }).
pub const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// File name of the agent's RPC key inside `data_dir`.
pub const RPC_KEY_FILE: &str = "rpc.key";

pub use crate::config::operators::{hex, parse_public_key, Access, Operator};

/// An ed25519 key pair as a rustls signer and its public key.
pub struct KeyPair {
    pkcs8: Vec<u8>,
    /// The public key.
    pub public_key: [u8; 32],
}

impl KeyPair {
    /// A new random key pair (from the OS's randomness).
    pub fn generate() -> anyhow::Result<KeyPair> {
        let rng = ring::rand::SystemRandom::new();
        let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("cannot generate an ed25519 key"))?;
        KeyPair::from_pkcs8(doc.as_ref().to_vec())
    }

    /// A key pair from its PKCS#8 DER (as written by [`KeyPair::write`]).
    pub fn from_pkcs8(pkcs8: Vec<u8>) -> anyhow::Result<KeyPair> {
        use ring::signature::KeyPair as _;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|e| anyhow::anyhow!("not an ed25519 PKCS#8 key: {e}"))?;
        let public_key: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .context("ed25519 public key length")?;
        Ok(KeyPair { pkcs8, public_key })
    }

    /// Reads a key file, naming it in the error.
    pub fn load(path: &Path) -> anyhow::Result<KeyPair> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read key {}", path.display()))?;
        KeyPair::from_pkcs8(bytes).with_context(|| format!("key {}", path.display()))
    }

    /// Reads `path`, or makes a new key there (mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<KeyPair> {
        if path.exists() {
            return KeyPair::load(path);
        }
        let key = KeyPair::generate()?;
        key.write(path)?;
        Ok(key)
    }

    /// Writes the PKCS#8 DER to a new file only its owner can read; never overwrites.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
        f.write_all(&self.pkcs8)?;
        f.sync_all()?;
        Ok(())
    }

    fn certified(
        &self,
        provider: &CryptoProvider,
    ) -> anyhow::Result<Arc<rustls::sign::CertifiedKey>> {
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()));
        let signer = provider
            .key_provider
            .load_private_key(der)
            .map_err(|e| anyhow::anyhow!("the TLS provider refuses the key: {e}"))?;
        let spki = CertificateDer::from(spki(&self.public_key));
        Ok(Arc::new(rustls::sign::CertifiedKey::new(
            vec![spki],
            signer,
        )))
    }
}

/// The SubjectPublicKeyInfo DER of an ed25519 public key.
pub fn spki(public_key: &[u8; 32]) -> Vec<u8> {
    let mut out = SPKI_PREFIX.to_vec();
    out.extend_from_slice(public_key);
    out
}

/// The ed25519 public key in a SubjectPublicKeyInfo DER, if it is one.
pub fn key_of_spki(der: &[u8]) -> Option<[u8; 32]> {
    der.strip_prefix(&SPKI_PREFIX[..])
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn verify_raw(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    provider: &CryptoProvider,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls13_signature_with_raw_key(
        message,
        &SubjectPublicKeyInfoDer::from(cert.as_ref()),
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// The agent's side: accepts listed operator keys only.
#[derive(Debug)]
struct Operators {
    allowed: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for Operators {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match key_of_spki(end_entity.as_ref()) {
            Some(k) if self.allowed.contains(&k) => Ok(ClientCertVerified::assertion()),
            _ => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_raw(message, cert, dss, &self.provider)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The server config of `[rpc] listen`: TLS 1.3, the agent's RPC key, the operators' keys.
pub fn server_config(
    key: &KeyPair,
    operators: &[Operator],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = provider();
    let verifier = Operators {
        allowed: operators.iter().map(|o| o.public_key).collect(),
        provider: provider.clone(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(key.certified(&provider)?),
        ));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The client's side: the agent's key must be `pinned`; without a pin any key is accepted (the
/// first contact with an endpoint the known-hosts file does not list yet: trust on first use).
/// The key presented is recorded either way (for the pin to write, or the mismatch error).
#[derive(Debug)]
struct AgentKey {
    pinned: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
    seen: Seen,
}

impl ServerCertVerifier for AgentKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = key_of_spki(end_entity.as_ref()).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(key);
        }
        match self.pinned {
            Some(p) if p != key => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_raw(message, cert, dss, &self.provider)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Where the client records the key the agent presented.
pub type Seen = Arc<std::sync::Mutex<Option<[u8; 32]>>>;

/// The client config: the operator's key, and the agent's key checked against `pinned` (any
/// key when `None`: first use). Returns the config and where the key the agent presented is
/// recorded.
pub fn client_config(
    key: &KeyPair,
    pinned: Option<[u8; 32]>,
) -> anyhow::Result<(Arc<rustls::ClientConfig>, Seen)> {
    let provider = provider();
    let seen: Seen = Arc::new(std::sync::Mutex::new(None));
    let verifier = Arc::new(AgentKey {
        pinned,
        provider: provider.clone(),
        seen: seen.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(key.certified(&provider)?),
        ));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Arc::new(config), seen))
}

/// The known-hosts file: `host:port hex` lines (`#` comments); returns the pin for `endpoint`.
pub fn known_host(file: &Path, endpoint: &str) -> anyhow::Result<Option<[u8; 32]>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(host), Some(key), None) = (f.next(), f.next(), f.next()) else {
            bail!(
                "{} line {}: expected `host:port key`",
                file.display(),
                n + 1
            );
        };
        if host == endpoint {
            let key = parse_public_key(key)
                .map_err(|e| anyhow::anyhow!("{} line {}: {e}", file.display(), n + 1))?;
            return Ok(Some(key));
        }
    }
    Ok(None)
}

/// Appends `endpoint key` to the known-hosts file (creating it and its directory).
pub fn remember_host(file: &Path, endpoint: &str, key: &[u8; 32]) -> anyhow::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    writeln!(f, "{endpoint} {}", hex(key))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("op.key");
        let key = KeyPair::generate().unwrap();
        key.write(&path).unwrap();
        assert!(key.write(&path).is_err(), "never overwrites");
        let again = KeyPair::load(&path).unwrap();
        assert_eq!(again.public_key, key.public_key);
        assert_eq!(parse_public_key(&hex(&key.public_key)), Ok(key.public_key));
        assert_eq!(key_of_spki(&spki(&key.public_key)), Some(key.public_key));
        assert!(parse_public_key("abc")
            .unwrap_err()
            .contains("64 hex digits"));
        std::fs::write(dir.path().join("bad.key"), b"nonsense").unwrap();
        let e = KeyPair::load(&dir.path().join("bad.key")).err().unwrap();
        assert!(format!("{e:#}").contains("bad.key"), "{e:#}");
    }

    #[test]
    fn known_hosts_pin_per_endpoint_and_name_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/known_hosts");
        assert_eq!(known_host(&file, "10.0.0.1:7947").unwrap(), None);
        remember_host(&file, "10.0.0.1:7947", &[7; 32]).unwrap();
        remember_host(&file, "10.0.0.2:7947", &[8; 32]).unwrap();
        assert_eq!(known_host(&file, "10.0.0.2:7947").unwrap(), Some([8; 32]));
        std::fs::write(&file, "# pins\n10.0.0.1:7947 zz\n").unwrap();
        let e = known_host(&file, "10.0.0.1:7947").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
    }
}
