//! `muster reset --config PATH [--yes]`: wipes this host's muster state — the raft store
//! (`data_dir/raft`) and the identity (`data_dir/identity.key`) — so its next start joins the
//! site as a new host. The way out the agent names when it refuses a data dir whose store and
//! identity do not go together (`identity.rs`).
//!
//! Without `--yes` it only lists what it would delete (exit code 2). It removes the muster files
//! it knows by name, never the directory blindly, and fsyncs each directory it changed. It refuses
//! while an agent runs on the data dir: the agent's status socket answers, or the store's lock
//! is held. The identity goes first: a reset cut short leaves a store without an identity, which
//! the agent refuses again (so the reset can simply be re-run), never an old identity beside a
//! wiped store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::config::Config;
use crate::identity::{IDENTITY_FILE, STORE_DIR};

/// How long to wait for a running agent's status socket to answer.
const RUNNING_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What `run` did: `Done` or only listed the plan (`NotConfirmed`, for exit code 2).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The files are gone (or there were none).
    Done,
    /// `--yes` was not given; nothing was deleted.
    NotConfirmed,
}

/// The files a reset of `data_dir` would delete, in the order it deletes them.
pub fn plan(data_dir: &Path) -> Vec<PathBuf> {
    let identity = data_dir.join(IDENTITY_FILE);
    let identity_tmp = identity.with_extension("tmp");
    let store = data_dir.join(STORE_DIR);
    [identity, identity_tmp]
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .chain(muster_store::store_files(&store))
        .collect()
}

/// `muster reset`: see the module docs. Prints what it would do or did on stdout.
pub async fn run(cfg: &Config, config_path: &Path, yes: bool) -> anyhow::Result<Outcome> {
    let data_dir = &cfg.data_dir;
    if let Ok(Ok(status)) =
        tokio::time::timeout(RUNNING_CHECK_TIMEOUT, crate::rpc::query(&cfg.socket)).await
    {
        anyhow::bail!(
            "an agent is running on data_dir {} (its status socket {} answers as node {}); stop \
             it first",
            data_dir.display(),
            cfg.socket.display(),
            muster_core::format_id(status.node_id)
        );
    }
    let files = plan(data_dir);
    if files.is_empty() {
        println!(
            "nothing to reset: {} holds no muster identity or raft store",
            data_dir.display()
        );
        return Ok(Outcome::Done);
    }
    if !yes {
        println!("muster reset would delete:");
        for f in &files {
            println!("  {}", f.display());
        }
        println!(
            "This host would then join its site as a new host. Run `muster reset --config {} \
             --yes` to do it.",
            config_path.display()
        );
        return Ok(Outcome::NotConfirmed);
    }
    let mut removed = remove_identity(data_dir)?;
    let store = data_dir.join(STORE_DIR);
    removed.extend(
        muster_store::destroy(&store)
            .with_context(|| format!("removing the raft store {}", store.display()))?,
    );
    println!("muster reset removed:");
    for f in &removed {
        println!("  {}", f.display());
    }
    println!(
        "The next `muster agent` start creates a new identity and joins the site as a new host. \
         Its old identity stays in the cluster's membership as an unreachable member."
    );
    Ok(Outcome::Done)
}

/// Removes `identity.key` (and a leftover `identity.tmp`), then fsyncs `data_dir`.
fn remove_identity(data_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let identity = data_dir.join(IDENTITY_FILE);
    let mut removed = Vec::new();
    for path in [identity.clone(), identity.with_extension("tmp")] {
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    if !removed.is_empty() {
        std::fs::File::open(data_dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync {}", data_dir.display()))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_lists_only_muster_files_identity_first() {
        let dir = tempfile::tempdir().unwrap();
        assert!(plan(dir.path()).is_empty());
        crate::identity::load_or_create(dir.path()).unwrap();
        drop(muster_store::DiskStore::open(&dir.path().join(STORE_DIR)).unwrap());
        std::fs::write(dir.path().join("keep.txt"), b"not muster's").unwrap();
        let files = plan(dir.path());
        assert_eq!(files.first(), Some(&dir.path().join(IDENTITY_FILE)));
        assert!(files.iter().all(|f| !f.ends_with("keep.txt")), "{files:?}");
        assert!(files.len() > 2, "{files:?}");

        let removed = remove_identity(dir.path()).unwrap();
        assert_eq!(removed, [dir.path().join(IDENTITY_FILE)]);
        let store = muster_store::destroy(&dir.path().join(STORE_DIR)).unwrap();
        assert_eq!(store.last(), Some(&dir.path().join(STORE_DIR)));
        assert!(plan(dir.path()).is_empty());
        assert!(dir.path().join("keep.txt").exists());
    }
}
