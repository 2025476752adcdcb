//! Host identity and site key files.
//!
//! The identity is an ed25519 keypair created on first boot in `data_dir/identity.key` (libp2p
//! protobuf encoding, mode 0600) and reused on every later start, so a restarted host rejoins as
//! itself. The site key is a swarm.key-format file made by `muster keygen`.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context as _};
use libp2p::identity::Keypair;

/// File name of the identity inside `data_dir`.
pub const IDENTITY_FILE: &str = "identity.key";

/// Loads the host identity, creating it on first boot.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Keypair> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("node.data_dir: cannot create {}", data_dir.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("node.data_dir: cannot restrict {}", data_dir.display()))?;
    let path = data_dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let key = Keypair::from_protobuf_encoding(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: corrupt identity key: {e}", path.display()))?;
            if key.clone().try_into_ed25519().is_err() {
                bail!("{}: identity key is not ed25519", path.display());
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .context("encoding new identity key")?;
            write_private(&path, &bytes)?;
            tracing::info!(path = %path.display(), "created host identity");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes a file only its owner can read, durably (temp file, fsync, rename, fsync dir).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot fsync {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync {}", dir.display()))?;
    Ok(())
}

/// Reads the site key, naming the file in any error. Never logs the key.
pub fn load_site_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("site.key_file: cannot read {}", path.display()))?;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "site key file is readable by others; chmod 600 it");
    }
    muster_net::parse_site_key(&text)
        .map_err(|e| anyhow::anyhow!("site.key_file {}: {e}", path.display()))
}

/// `muster keygen`: writes a new random site key, refusing to overwrite an existing file.
pub fn keygen(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        bail!(
            "{} already exists; refusing to overwrite a site key",
            out.display()
        );
    }
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    write_private(out, muster_net::format_site_key(&key).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.public(), b.public());
        let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_identity_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITY_FILE), b"garbage").unwrap();
        let e = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains("corrupt identity key"), "{e}");
    }

    #[test]
    fn keygen_writes_a_private_loadable_key_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("site.key");
        keygen(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        load_site_key(&p).unwrap();
        assert!(keygen(&p).is_err());
    }
}
