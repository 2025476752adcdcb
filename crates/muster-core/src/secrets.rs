//! The join secrets of the Kubernetes install (the k3s/RKE2 token, kubeadm's bootstrap token,
//! certificate key and CA cert hash): made by the leader when it commits the plan, extended by
//! what the init hook writes to `MUSTER_SECRETS_OUT`, handed to each host's hook in
//! `MUSTER_SECRETS` (`Output::RunInstall`).
//!
//! Secrets exist in plaintext only in memory and in the hook's 0600 file. In the raft log, the
//! applied state, snapshots and messages they are [`Sealed`]: an encoded [`Secrets`] encrypted
//! with XChaCha20-Poly1305 (random 24-byte nonce) under a key derived from the site key with
//! HKDF-SHA256, bound to the cluster id as associated data. Every member holds the site key, so
//! every member can open them; a host without it cannot, and a copy of a data directory without
//! the site key reveals nothing. [`SecretValues`] prints keys only (`Debug`), so secrets never
//! reach logs by accident, and [`SecretValues::scrub`] takes them out of hook output.
//!
//! Randomness for the values and nonces comes from [`SiteSecrets`]' own entropy (the agent draws
//! it from the OS and never logs it), never from the node's logged simulation seed.

use std::collections::BTreeMap;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use muster_proto::{Sealed, SecretValue, Secrets};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Most entries in one set of secrets.
pub const MAX_SECRETS: usize = 32;
/// Longest key, in bytes.
pub const MAX_SECRET_KEY_BYTES: usize = 64;
/// Longest value, in bytes.
pub const MAX_SECRET_VALUE_BYTES: usize = 4096;
/// Largest sealed ciphertext taken from the log (bounds what a command can make us store).
pub const MAX_SEALED_BYTES: usize = 160 * 1024;
const NONCE_BYTES: usize = 24;
const HKDF_SALT: &[u8] = b"muster";
const HKDF_INFO: &[u8] = b"muster join secrets v1";
const AAD_TAG: &[u8] = b"muster-secrets-v1";

/// Why secrets could not be read, parsed or opened. Never carries a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// A `KEY=VALUE` line is malformed.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// More entries than [`MAX_SECRETS`].
    #[error("more than {MAX_SECRETS} secrets")]
    TooMany,
    /// The ciphertext does not open under our key: another site key, or tampered with.
    #[error(
        "the sealed secrets do not open with this site's key (another site key, or corrupted)"
    )]
    Open,
    /// It opened but is not a valid `Secrets` message.
    #[error("the sealed secrets opened but do not decode: {0}")]
    Decode(String),
}

/// Secret `KEY=VALUE` pairs. `Debug` shows the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretValues(BTreeMap<String, String>);

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for k in self.0.keys() {
            m.entry(k, &"<redacted>");
        }
        m.finish()
    }
}

impl SecretValues {
    /// Adds or replaces one entry, checking it like a parsed line.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), String> {
        check_key(key)?;
        check_value(value)?;
        if !self.0.contains_key(key) && self.0.len() >= MAX_SECRETS {
            return Err(format!("more than {MAX_SECRETS} secrets"));
        }
        self.0.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The pairs, ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The pairs as a map (for renderers).
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `other`'s entries over ours (later sources win).
    pub fn overlay(&mut self, other: &SecretValues) {
        for (k, v) in &other.0 {
            self.0.insert(k.clone(), v.clone());
        }
        while self.0.len() > MAX_SECRETS {
            self.0.pop_last();
        }
    }

    /// The `MUSTER_SECRETS` file's contents: one `KEY=VALUE` line per entry.
    pub fn to_env_file(&self) -> String {
        self.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    /// Parses a `MUSTER_SECRETS_OUT` file: `KEY=VALUE` lines (the value is everything after the
    /// first `=`, taken literally); blank lines and lines starting with `#` are skipped; a key
    /// given twice keeps its last value. Keys are `[A-Z_][A-Z0-9_]*`.
    pub fn parse_env_file(text: &str) -> Result<SecretValues, SecretsError> {
        let mut out = SecretValues::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let bad = |reason: String| SecretsError::Line {
                line: n + 1,
                reason,
            };
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad("expected KEY=VALUE".into()))?;
            let k = k.trim();
            if !out.0.contains_key(k) && out.0.len() >= MAX_SECRETS {
                return Err(SecretsError::TooMany);
            }
            out.insert(k, v).map_err(bad)?;
        }
        Ok(out)
    }

    /// `text` with every secret value of four bytes or more replaced by `[redacted]`, longest
    /// first (so a value containing another is taken out whole).
    pub fn scrub(&self, text: &str) -> String {
        let mut values: Vec<&str> = self.0.values().map(String::as_str).collect();
        values.retain(|v| v.len() >= 4);
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let mut out = text.to_owned();
        for v in values {
            if out.contains(v) {
                out = out.replace(v, "[redacted]");
            }
        }
        out
    }

    fn to_proto(&self) -> Secrets {
        Secrets {
            values: self
                .iter()
                .map(|(k, v)| SecretValue {
                    key: k.into(),
                    value: v.into(),
                })
                .collect(),
        }
    }

    fn from_proto(s: Secrets) -> Result<SecretValues, SecretsError> {
        if s.values.len() > MAX_SECRETS {
            return Err(SecretsError::TooMany);
        }
        let mut out = SecretValues::default();
        for v in s.values {
            out.insert(&v.key, &v.value).map_err(SecretsError::Decode)?;
        }
        Ok(out)
    }
}

fn check_key(k: &str) -> Result<(), String> {
    let first_ok = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_');
    let rest_ok = k
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if k.len() > MAX_SECRET_KEY_BYTES || !first_ok || !rest_ok {
        return Err(format!(
            "key {:?} must be [A-Z_][A-Z0-9_]* and at most {MAX_SECRET_KEY_BYTES} bytes",
            truncate(k, MAX_SECRET_KEY_BYTES)
        ));
    }
    Ok(())
}

fn check_value(v: &str) -> Result<(), String> {
    if v.len() > MAX_SECRET_VALUE_BYTES {
        return Err(format!("value longer than {MAX_SECRET_VALUE_BYTES} bytes"));
    }
    if v.contains(['\n', '\r', '\0']) {
        return Err("value contains a line break or NUL".into());
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The site's secrets key and the entropy for new secrets: built by the agent from the site key
/// and OS randomness (`NodeConfig::secrets`). `Debug` shows nothing.
#[derive(Clone)]
pub struct SiteSecrets {
    key: [u8; 32],
    entropy: [u8; 32],
}

impl std::fmt::Debug for SiteSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SiteSecrets { .. }")
    }
}

impl SiteSecrets {
    /// Derives the secrets key from the site key (HKDF-SHA256); `entropy` seeds new secrets and
    /// nonces and must come from the OS (tests may pass a fixed value).
    pub fn from_site_key(site_key: &[u8], entropy: [u8; 32]) -> SiteSecrets {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(HKDF_SALT), site_key);
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 255 blocks: expand cannot fail.
        if hk.expand(HKDF_INFO, &mut key).is_err() {
            unreachable!("HKDF-SHA256 expands 32 bytes");
        }
        SiteSecrets { key, entropy }
    }
}

/// Seals and opens secrets for one node (held by `Node`).
pub(crate) struct Sealer {
    cipher: XChaCha20Poly1305,
    rng: StdRng,
}

impl Sealer {
    pub(crate) fn new(s: &SiteSecrets) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new((&s.key).into()),
            rng: StdRng::from_seed(s.entropy),
        }
    }

    /// The secrets a new plan carries: a k3s/RKE2 `TOKEN` (32 random bytes, hex), a kubeadm
    /// `BOOTSTRAP_TOKEN` (`[a-z0-9]{6}.[a-z0-9]{16}`) and `CERTIFICATE_KEY` (32 bytes, hex).
    pub(crate) fn plan_time_secrets(&mut self) -> SecretValues {
        let mut s = SecretValues::default();
        let token = self.hex(32);
        let (id, secret) = (self.token_chars(6), self.token_chars(16));
        let cert_key = self.hex(32);
        for (k, v) in [
            ("TOKEN", token),
            ("BOOTSTRAP_TOKEN", format!("{id}.{secret}")),
            ("CERTIFICATE_KEY", cert_key),
        ] {
            if s.insert(k, &v).is_err() {
                unreachable!("generated secrets are well formed");
            }
        }
        s
    }

    /// A new `CERTIFICATE_KEY` (kubeadm's: 32 random bytes as hex), for a certificate upload
    /// (`certs.rs`).
    pub(crate) fn fresh_certificate_key(&mut self) -> SecretValues {
        let mut s = SecretValues::default();
        if s.insert("CERTIFICATE_KEY", &self.hex(32)).is_err() {
            unreachable!("generated secrets are well formed");
        }
        s
    }

    fn hex(&mut self, bytes: usize) -> String {
        (0..bytes)
            .map(|_| format!("{:02x}", self.rng.random::<u8>()))
            .collect()
    }

    fn token_chars(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    }

    pub(crate) fn seal(&mut self, cluster_id: u64, values: &SecretValues) -> Sealed {
        let mut nonce = [0u8; NONCE_BYTES];
        self.rng.fill(&mut nonce[..]);
        let plain = values.to_proto().encode_to_vec();
        let aad = aad(cluster_id);
        let ciphertext = match self.cipher.encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &aad,
            },
        ) {
            Ok(c) => c,
            // XChaCha20-Poly1305 fails only on messages beyond 2^38 bytes.
            Err(_) => unreachable!("bounded secrets always seal"),
        };
        Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub(crate) fn open(&self, cluster_id: u64, s: &Sealed) -> Result<SecretValues, SecretsError> {
        if !sealed_shape_ok(s) {
            return Err(SecretsError::Open);
        }
        let aad = aad(cluster_id);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(&s.nonce),
                Payload {
                    msg: &s.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretsError::Open)?;
        let decoded =
            Secrets::decode(plain.as_slice()).map_err(|e| SecretsError::Decode(e.to_string()))?;
        SecretValues::from_proto(decoded)
    }
}

/// Whether a sealed blob has the shape we store: a 24-byte nonce and a bounded ciphertext.
pub fn sealed_shape_ok(s: &Sealed) -> bool {
    s.nonce.len() == NONCE_BYTES && s.ciphertext.len() <= MAX_SEALED_BYTES
}

fn aad(cluster_id: u64) -> Vec<u8> {
    let mut a = AAD_TAG.to_vec();
    a.extend_from_slice(&cluster_id.to_be_bytes());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(site_key: &[u8]) -> Sealer {
        Sealer::new(&SiteSecrets::from_site_key(site_key, [7; 32]))
    }

    #[test]
    fn sealed_secrets_open_only_with_the_same_site_key_and_cluster() {
        let mut a = sealer(b"site key one");
        let s = a.plan_time_secrets();
        let sealed = a.seal(42, &s);
        assert_eq!(a.open(42, &sealed), Ok(s.clone()));
        // Another host of the same site (other entropy) opens it.
        let other_host = Sealer::new(&SiteSecrets::from_site_key(b"site key one", [9; 32]));
        assert_eq!(other_host.open(42, &sealed), Ok(s.clone()));
        assert_eq!(
            sealer(b"site key two").open(42, &sealed),
            Err(SecretsError::Open)
        );
        assert_eq!(a.open(43, &sealed), Err(SecretsError::Open));
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(a.open(42, &tampered), Err(SecretsError::Open));
        // The ciphertext does not contain the token.
        let token = s.get("TOKEN").unwrap();
        let hay = String::from_utf8_lossy(&sealed.ciphertext).to_string();
        assert!(!hay.contains(token));
        // Two seals of the same values differ (fresh nonce).
        assert_ne!(a.seal(42, &s), sealed);
    }

    #[test]
    fn plan_time_secrets_have_the_formats_the_distributions_take() {
        let s = sealer(b"k").plan_time_secrets();
        let token = s.get("TOKEN").unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        let bt = s.get("BOOTSTRAP_TOKEN").unwrap();
        let (id, secret) = bt.split_once('.').unwrap();
        assert_eq!((id.len(), secret.len()), (6, 16));
        assert!(bt
            .chars()
            .all(|c| c == '.' || c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_eq!(s.get("CERTIFICATE_KEY").unwrap().len(), 64);
        // Fresh entropy, fresh secrets.
        let other = Sealer::new(&SiteSecrets::from_site_key(b"k", [8; 32])).plan_time_secrets();
        assert_ne!(other.get("TOKEN"), s.get("TOKEN"));
    }

    #[test]
    fn debug_output_never_shows_a_value() {
        let mut s = SecretValues::default();
        s.insert("TOKEN", "supersecretvalue").unwrap();
        let shown = format!("{s:?} {:?}", SiteSecrets::from_site_key(b"k", [1; 32]));
        assert!(
            shown.contains("TOKEN") && !shown.contains("supersecretvalue"),
            "{shown}"
        );
    }

    #[test]
    fn env_files_parse_with_errors_naming_the_line() {
        let s = SecretValues::parse_env_file(
            "# from the init hook\nCA_CERT_HASH=sha256:abc=def\n\nTOKEN=x\nTOKEN=y\n",
        )
        .unwrap();
        assert_eq!(s.get("CA_CERT_HASH"), Some("sha256:abc=def"));
        assert_eq!(s.get("TOKEN"), Some("y"));
        assert_eq!(SecretValues::parse_env_file(&s.to_env_file()), Ok(s));
        let e = SecretValues::parse_env_file("A=1\nnot a pair\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: expected KEY=VALUE");
        let e = SecretValues::parse_env_file("lower=1").unwrap_err();
        assert!(e.to_string().starts_with("line 1: key \"lower\""), "{e}");
        let many: String = (0..=MAX_SECRETS).map(|i| format!("K{i}=v\n")).collect();
        assert_eq!(
            SecretValues::parse_env_file(&many),
            Err(SecretsError::TooMany)
        );
        let long = format!("K={}", "v".repeat(MAX_SECRET_VALUE_BYTES + 1));
        assert!(SecretValues::parse_env_file(&long).is_err());
    }

    #[test]
    fn scrub_takes_every_value_out_longest_first() {
        let mut s = SecretValues::default();
        s.insert("A", "abcdef").unwrap();
        s.insert("B", "abcdefgh").unwrap();
        s.insert("C", "ab").unwrap();
        assert_eq!(
            s.scrub("x abcdefgh y abcdef z ab"),
            "x [redacted] y [redacted] z ab"
        );
    }

    #[test]
    fn overlay_lets_later_sources_win() {
        let mut a = SecretValues::default();
        a.insert("TOKEN", "one").unwrap();
        let mut b = SecretValues::default();
        b.insert("TOKEN", "two").unwrap();
        b.insert("CA_CERT_HASH", "h").unwrap();
        a.overlay(&b);
        assert_eq!(
            (a.get("TOKEN"), a.get("CA_CERT_HASH")),
            (Some("two"), Some("h"))
        );
    }
}
