//! Host identity and site key files.
//!
//! The identity is an ed25519 keypair created on first boot in `data_dir/identity.key` (libp2p
//! protobuf encoding, mode 0600) and reused on every later start, so a restarted host rejoins as
//! itself. The site key is a swarm.key-format file made by `muster keygen`.
//!
//! Identity continuity: `muster agent` opens the raft store first and hands its applied state to
//! [`load_for_store`]. A store that belongs to a cluster (applied index > 0) must go with an
//! identity that is a member of that cluster; if `identity.key` is missing, or holds an identity
//! the cluster does not list, the agent refuses to start with [`StartRefused`] (exit code 2)
//! rather than come up as a second identity beside the old one, which would stay a voter forever.
//! The way out it names is `muster reset` (`reset.rs`). A store holding only an unfinished join
//! (applied index 0) goes with any identity.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use libp2p::identity::Keypair;
use muster_core::{format_id, node_id_from_public_key, NodeId};
use muster_proto::ClusterState;

/// File name of the identity inside `data_dir`.
pub const IDENTITY_FILE: &str = "identity.key";
/// Directory of the raft store inside `data_dir`.
pub const STORE_DIR: &str = "raft";
/// Subdirectory of `data_dir` holding an install hook's secrets files while it runs.
pub const INSTALL_DIR: &str = "install";

/// The agent refuses to start: the raft store in `data_dir` belongs to a cluster, and
/// `identity.key` is missing or not a member of it. Names both files and `muster reset`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StartRefused {
    /// `node.data_dir`.
    pub data_dir: PathBuf,
    /// The config file the agent was started with (for the `muster reset` command line).
    pub config_path: PathBuf,
    /// The cluster the store belongs to.
    pub cluster_id: u64,
    /// The member the store was, as far as it can be told: the member with this host's
    /// `node.name` (the store does not record its own id).
    pub old_member: Option<NodeId>,
    /// The identity `identity.key` holds; `None` when the file is missing.
    pub identity: Option<NodeId>,
}

impl fmt::Display for StartRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.data_dir.display();
        write!(
            f,
            "data_dir {dir}: the raft store ({}) belongs to cluster {}",
            self.data_dir.join(STORE_DIR).display(),
            format_id(self.cluster_id)
        )?;
        if let Some(member) = self.old_member {
            write!(f, " as member {}", format_id(member))?;
        }
        let key = self.data_dir.join(IDENTITY_FILE);
        match self.identity {
            None => write!(f, ", but {} is missing", key.display())?,
            Some(id) => write!(
                f,
                ", but {} holds the identity {}, not a member of that cluster",
                key.display(),
                format_id(id)
            )?,
        }
        write!(
            f,
            "; refusing to start with a new identity beside the old one. To make this host join \
             as a new host, run `muster reset --config {} --yes`",
            self.config_path.display()
        )
    }
}

/// The continuity rule (see the module docs), pure: `applied_index` and `state` are the store's
/// applied state, `identity` the public key in `identity.key` (`None`: missing), `node_name`
/// this host's `node.name`.
pub fn check_continuity(
    data_dir: &Path,
    config_path: &Path,
    node_name: &str,
    applied_index: u64,
    state: &ClusterState,
    identity: Option<&[u8; 32]>,
) -> Result<(), StartRefused> {
    if applied_index == 0 {
        return Ok(());
    }
    let id = identity.map(|pk| node_id_from_public_key(pk));
    let is_member = identity.is_some_and(|pk| {
        let id = node_id_from_public_key(pk);
        state
            .members
            .iter()
            .any(|m| m.id == id && (m.public_key.is_empty() || m.public_key == pk))
    });
    if is_member {
        return Ok(());
    }
    let mut named = state.members.iter().filter(|m| m.name == node_name);
    let old_member = match (named.next(), named.next()) {
        (Some(m), None) => Some(m.id),
        _ => None,
    };
    Err(StartRefused {
        data_dir: data_dir.to_path_buf(),
        config_path: config_path.to_path_buf(),
        cluster_id: state.cluster_id,
        old_member,
        identity: id,
    })
}

/// Creates `data_dir` if needed and makes it private (0700).
pub fn prepare_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("node.data_dir: cannot create {}", data_dir.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("node.data_dir: cannot restrict {}", data_dir.display()))
}

/// Loads the host identity for a store whose applied state is `applied_index` / `state_data`
/// (encoded `ClusterState`): refuses with [`StartRefused`] when they do not go together, creates
/// the identity on first boot.
pub fn load_for_store(
    data_dir: &Path,
    config_path: &Path,
    node_name: &str,
    applied_index: u64,
    state_data: &[u8],
) -> anyhow::Result<(Keypair, bool)> {
    let path = data_dir.join(IDENTITY_FILE);
    let existing = read(&path)?;
    if applied_index > 0 {
        // Undecodable state is the node's to report (it refuses to restore from it).
        if let Ok(state) = muster_core::state::decode_state(state_data) {
            let public = existing.as_ref().map(public_key).transpose()?;
            check_continuity(
                data_dir,
                config_path,
                node_name,
                applied_index,
                &state,
                public.as_ref(),
            )?;
        }
    }
    match existing {
        Some(key) => Ok((key, false)),
        None => Ok((create(&path)?, true)),
    }
}

/// Loads the host identity, creating it on first boot (no store check).
#[cfg(test)]
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Keypair> {
    prepare_data_dir(data_dir)?;
    let path = data_dir.join(IDENTITY_FILE);
    match read(&path)? {
        Some(key) => Ok(key),
        None => create(&path),
    }
}

/// The identity's ed25519 public key.
pub fn public_key(key: &Keypair) -> anyhow::Result<[u8; 32]> {
    Ok(key
        .public()
        .try_into_ed25519()
        .context("identity is not ed25519")?
        .to_bytes())
}

/// Reads `path`; `None` if it does not exist.
fn read(path: &Path) -> anyhow::Result<Option<Keypair>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let key = Keypair::from_protobuf_encoding(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: corrupt identity key: {e}", path.display()))?;
            if key.clone().try_into_ed25519().is_err() {
                bail!("{}: identity key is not ed25519", path.display());
            }
            Ok(Some(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Creates a new identity at `path`.
fn create(path: &Path) -> anyhow::Result<Keypair> {
    let key = Keypair::generate_ed25519();
    let bytes = key
        .to_protobuf_encoding()
        .context("encoding new identity key")?;
    write_private(path, &bytes)?;
    tracing::info!(path = %path.display(), "created host identity");
    Ok(key)
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

    fn member(key: &[u8; 32], name: &str) -> muster_proto::Member {
        muster_proto::Member {
            id: node_id_from_public_key(key),
            name: name.into(),
            public_key: key.to_vec(),
            ..Default::default()
        }
    }

    fn cluster(members: Vec<muster_proto::Member>) -> ClusterState {
        ClusterState {
            cluster_id: 0x0123_4567_89ab_cdef,
            members,
            ..Default::default()
        }
    }

    #[test]
    fn continuity_check_refuses_a_missing_or_foreign_identity_of_a_formed_store() {
        let (dir, cfg) = (
            Path::new("/var/lib/muster"),
            Path::new("/etc/muster/muster.toml"),
        );
        let old = [0x11; 32];
        let other = [0x22; 32];
        let state = cluster(vec![member(&old, "edge-1"), member(&[0x33; 32], "edge-2")]);
        let check = |index, identity| check_continuity(dir, cfg, "edge-1", index, &state, identity);

        assert_eq!(check(7, Some(&old)), Ok(()), "the store's own identity");
        assert_eq!(check(0, None), Ok(()), "an unfinished join starts over");
        assert_eq!(check(0, Some(&other)), Ok(()));

        let missing = check(7, None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "data_dir /var/lib/muster: the raft store (/var/lib/muster/raft) belongs to cluster \
             0123456789abcdef as member 1111111111111111, but /var/lib/muster/identity.key is \
             missing; refusing to start with a new identity beside the old one. To make this host \
             join as a new host, run `muster reset --config /etc/muster/muster.toml --yes`"
        );
        let foreign = check(7, Some(&other)).unwrap_err().to_string();
        assert!(
            foreign.contains(
                "/var/lib/muster/identity.key holds the identity 2222222222222222, not a member \
                 of that cluster"
            ),
            "{foreign}"
        );
        // An id that matches with another key is not the member either.
        let mut same_id = other;
        same_id[..8].copy_from_slice(&old[..8]);
        assert!(check(7, Some(&same_id)).is_err());
        // Without a member of this host's name, the message cannot say which one it was.
        let renamed = check_continuity(dir, cfg, "edge-9", 7, &state, None).unwrap_err();
        assert_eq!(renamed.old_member, None);
        assert!(!renamed.to_string().contains(" as member "), "{renamed}");
    }

    #[test]
    fn load_for_store_refuses_without_creating_and_creates_for_a_fresh_store() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("muster.toml");
        let state = cluster(vec![member(&[0x11; 32], "edge-1")]);
        let data = muster_core::state::encode_state(&state);
        let e = load_for_store(dir.path(), &cfg, "edge-1", 3, &data).unwrap_err();
        let refused = e.downcast_ref::<StartRefused>().expect("a StartRefused");
        assert_eq!(refused.identity, None);
        assert!(
            !dir.path().join(IDENTITY_FILE).exists(),
            "created an identity anyway"
        );

        let (key, created) = load_for_store(dir.path(), &cfg, "edge-1", 0, &[]).unwrap();
        assert!(created, "the first load creates the identity");
        assert!(dir.path().join(IDENTITY_FILE).exists());
        let (again, created) = load_for_store(dir.path(), &cfg, "edge-1", 0, &[]).unwrap();
        assert!(!created, "the second load reads it");
        assert_eq!(public_key(&again).unwrap(), public_key(&key).unwrap());
        let e = load_for_store(dir.path(), &cfg, "edge-1", 3, &data).unwrap_err();
        let id = node_id_from_public_key(&public_key(&key).unwrap());
        assert_eq!(e.downcast_ref::<StartRefused>().unwrap().identity, Some(id));
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
