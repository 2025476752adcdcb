//! File-system helpers for the store: error mapping, durable directory creation, atomic
//! replacement of a file (write temp, fsync, rename, fsync directory) and bounded reads.
//! Only `store` and `logfile` call these.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use muster_core::StoreError;

/// Suffix of the temporary files atomic writes go through; stale ones are removed on open.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// Maps an I/O error on `path` during `op` to a [`StoreError::Io`].
pub(crate) fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.display().to_string();
    move |source| StoreError::Io { path, op, source }
}

/// A [`StoreError::Corrupt`] naming `path`.
pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

/// Makes `dir`'s entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync directory"))
}

/// Creates `dir` and any missing parents with mode 0700, making each new entry durable in its
/// parent. An existing directory is left as it is.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<(), StoreError> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        if p.as_os_str().is_empty() || p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    for p in missing.iter().rev() {
        match DirBuilder::new().mode(0o700).create(p) {
            Ok(()) => {}
            // Another process may have created it between the check and here.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(p, "create directory")(e)),
        }
        if let Some(parent) = p.parent().filter(|q| !q.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    if !dir.is_dir() {
        return Err(io_err(dir, "open store directory")(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    Ok(())
}

/// Replaces `dir/name` with `bytes` so that a crash leaves either the old or the new content:
/// write `name.tmp`, fsync it, rename it over `name`, fsync the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp, "create"))?;
    file.write_all(bytes).map_err(io_err(&tmp, "write"))?;
    file.sync_all().map_err(io_err(&tmp, "fsync"))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err(&path, "rename temporary file over"))?;
    sync_dir(dir)
}

/// Reads `path` whole; `None` if it does not exist. A file longer than `max_bytes` is corrupt
/// (nothing this store writes is that large), and is refused before it is read.
pub(crate) fn read_optional(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    let len = file.metadata().map_err(io_err(path, "stat"))?.len();
    if len > max_bytes {
        return Err(corrupt(
            path,
            format!(
                "file is {len} bytes, more than the {max_bytes} bytes it can legitimately hold"
            ),
        ));
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.read_to_end(&mut buf).map_err(io_err(path, "read"))?;
    Ok(Some(buf))
}

/// Removes temporary files left by writes a crash interrupted. Their targets were never replaced,
/// so they carry nothing that was acknowledged.
pub(crate) fn remove_temp_files(dir: &Path, names: &[&str]) -> Result<(), StoreError> {
    for name in names {
        let tmp = dir.join(format!("{name}{TEMP_SUFFIX}"));
        match fs::remove_file(&tmp) {
            Ok(()) => {
                tracing::debug!(path = %tmp.display(), "removed temporary file of an interrupted write")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tmp, "remove stale temporary file")(e)),
        }
    }
    Ok(())
}
