//! [`DiskStore`]: the [`RaftStore`] on files. Keeps a [`LogCache`] for every read and mirrors each
//! mutation to disk (layout and crash ordering in the crate docs) before changing the cache.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use muster_core::{LogCache, RaftStore, StoreError};
use nix::fcntl::{Flock, FlockArg};
use protobuf::Message;
use raft::prelude::{Entry, HardState, Snapshot};

use crate::frame::{self, Kind, HEADER_BYTES, MAX_PAYLOAD_BYTES};
use crate::fsio::{self, corrupt, io_err};
use crate::logfile::{self, Bounds};

const LOG_FILE: &str = "log";
const HARD_STATE_FILE: &str = "hardstate";
const APPLIED_FILE: &str = "applied";
const LOCK_FILE: &str = "lock";
const RESET_FILE: &str = "reset";
/// Bytes before the snapshot in the applied record: compacted index, compacted term, log epoch.
const APPLIED_PREFIX_BYTES: usize = 24;
/// Largest single-record file (header plus the largest payload).
const MAX_RECORD_FILE_BYTES: u64 = (HEADER_BYTES + MAX_PAYLOAD_BYTES) as u64;

/// The content of the `applied` file.
#[derive(Debug, Default)]
struct AppliedRecord {
    compacted_index: u64,
    compacted_term: u64,
    log_epoch: u64,
    snapshot: Snapshot,
}

/// A durable Raft store in one directory. See the crate docs for the files and crash ordering.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    cache: LogCache,
    /// The hard state as the `hardstate` file holds it (the cache's may be raised on open).
    disk_hard_state: HardState,
    /// Open handle on `dir/log`, positioned by explicit offsets.
    log: File,
    /// Byte offset of each record of `cache.entries` in the log, index for index.
    offsets: Vec<u64>,
    /// Length of the log file: where the next record goes.
    log_end: u64,
    /// Epoch written in the log header; bumped by each snapshot install.
    log_epoch: u64,
    /// Set when a write failed part way: disk and cache may disagree, so further writes are
    /// refused until the store is reopened (which re-verifies everything).
    failed: Option<String>,
    /// Exclusive `flock` on `dir/lock`, held while the store is open.
    _lock: Flock<File>,
}

impl DiskStore {
    /// Opens the store in `dir`, creating the directory (mode 0700) and an empty store if needed.
    /// An existing store is read and verified whole: any checksum mismatch, undecodable record,
    /// foreign magic or version, gap in the log or missing committed entry is
    /// [`StoreError::Corrupt`]. A torn final log record beyond the commit index (a crash during an
    /// unacknowledged append) is cut off with a warning.
    pub fn open(dir: &Path) -> Result<DiskStore, StoreError> {
        fsio::create_dir_durable(dir)?;
        let lock = lock_dir(dir)?;
        fsio::remove_temp_files(dir, &[LOG_FILE, HARD_STATE_FILE, APPLIED_FILE, RESET_FILE])?;
        let reset_path = dir.join(RESET_FILE);
        if let Some(buf) = fsio::read_optional(&reset_path, MAX_RECORD_FILE_BYTES)? {
            decode_single(&buf, Kind::Reset, &reset_path)?;
            tracing::info!(dir = %dir.display(), "finishing an interrupted reset");
            finish_reset(dir)?;
        }
        let hs_path = dir.join(HARD_STATE_FILE);
        let disk_hs = fsio::read_optional(&hs_path, MAX_RECORD_FILE_BYTES)?
            .map(|buf| decode_hard_state(&buf, &hs_path))
            .transpose()?;
        let applied_path = dir.join(APPLIED_FILE);
        let applied = fsio::read_optional(&applied_path, MAX_RECORD_FILE_BYTES)?
            .map(|buf| decode_applied(&buf, &applied_path))
            .transpose()?;
        let fresh = disk_hs.is_none() && applied.is_none();
        let disk_hard_state = disk_hs.unwrap_or_default();
        let applied = applied.unwrap_or_default();

        // A snapshot install or compaction may have been cut short after its commit point (the
        // applied file): finish raising the hard state as `LogCache::apply_snapshot` does.
        // Compacted entries are applied, hence committed, so this claims nothing new.
        let mut hard_state = disk_hard_state.clone();
        hard_state.commit = hard_state.commit.max(applied.compacted_index);
        hard_state.term = hard_state.term.max(applied.compacted_term);

        let mut cache = LogCache {
            hard_state,
            applied: applied.snapshot,
            compacted_index: applied.compacted_index,
            compacted_term: applied.compacted_term,
            entries: Vec::new(),
        };
        let epoch = applied.log_epoch;
        let loaded = load_log(dir, &mut cache, epoch, fresh)?;
        // The content is verified whole before open repairs anything.
        verify(dir, &cache)?;
        let stale_prefix = loaded.stale_prefix;
        let (log, offsets, log_end) = loaded.repair(dir, epoch)?;
        let mut store = DiskStore {
            dir: dir.to_path_buf(),
            cache,
            disk_hard_state,
            log,
            offsets,
            log_end,
            log_epoch: epoch,
            failed: None,
            _lock: lock,
        };
        if stale_prefix {
            tracing::info!(
                compacted_index = store.cache.compacted_index,
                "finishing an interrupted compaction: rewriting the log without compacted entries"
            );
            store.replace_log(epoch, 0)?;
        }
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The in-memory image, identical to what the files hold.
    pub fn cache(&self) -> &LogCache {
        &self.cache
    }

    /// Whether nothing was ever stored: no hard state, no applied state, no entries.
    pub fn is_empty(&self) -> bool {
        self.cache.hard_state == HardState::default()
            && self.cache.applied == Snapshot::default()
            && self.cache.compacted_index == 0
            && self.cache.entries.is_empty()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Atomically replaces the log with a header for `epoch` and the cached entries from
    /// position `keep_from` on (entries before it are being compacted away).
    fn replace_log(&mut self, epoch: u64, keep_from: usize) -> Result<(), StoreError> {
        let kept = self.cache.entries.get(keep_from..).unwrap_or_default();
        let (file, offsets, end) = write_log_file(&self.dir, epoch, kept)?;
        self.log = file;
        self.offsets = offsets;
        self.log_end = end;
        self.log_epoch = epoch;
        Ok(())
    }

    /// Writes the applied file: the compaction point, the log epoch and the applied snapshot.
    fn write_applied(&self, rec: &AppliedRecord) -> Result<(), StoreError> {
        let snap = rec
            .snapshot
            .write_to_bytes()
            .map_err(|e| StoreError::Invalid(format!("applied snapshot does not encode: {e}")))?;
        let mut payload = Vec::with_capacity(APPLIED_PREFIX_BYTES + snap.len());
        payload.extend_from_slice(&rec.compacted_index.to_le_bytes());
        payload.extend_from_slice(&rec.compacted_term.to_le_bytes());
        payload.extend_from_slice(&rec.log_epoch.to_le_bytes());
        payload.extend_from_slice(&snap);
        frame::check_len(Kind::Applied, payload.len()).map_err(StoreError::Invalid)?;
        let mut buf = Vec::with_capacity(HEADER_BYTES + payload.len());
        frame::encode(Kind::Applied, &payload, &mut buf);
        fsio::write_atomic(&self.dir, APPLIED_FILE, &buf)
    }

    fn write_hard_state(&mut self, hs: &HardState) -> Result<(), StoreError> {
        let payload = hs
            .write_to_bytes()
            .map_err(|e| StoreError::Invalid(format!("hard state does not encode: {e}")))?;
        let mut buf = Vec::with_capacity(HEADER_BYTES + payload.len());
        frame::encode(Kind::HardState, &payload, &mut buf);
        fsio::write_atomic(&self.dir, HARD_STATE_FILE, &buf)?;
        self.disk_hard_state = hs.clone();
        Ok(())
    }

    /// Installs a snapshot from the leader: the applied file first (the commit point: it names
    /// a new log epoch, so the old log is void from then on), then an empty log of that epoch.
    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), StoreError> {
        let meta = snap.get_metadata();
        let epoch = self.log_epoch + 1;
        self.write_applied(&AppliedRecord {
            compacted_index: meta.index,
            compacted_term: meta.term,
            log_epoch: epoch,
            snapshot: snap.clone(),
        })?;
        self.cache.apply_snapshot(snap);
        self.replace_log(epoch, self.cache.entries.len())
    }

    /// Appends entries, first cutting the log at the first one it overwrites.
    fn append_entries(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let path = self.path(LOG_FILE);
        let keep = (first.index - self.cache.first_index()) as usize;
        let cut = self.offsets.get(keep).copied().unwrap_or(self.log_end);
        let mut buf = Vec::new();
        let offsets = logfile::encode_entries(entries, cut, &mut buf)?;
        if cut < self.log_end {
            // Make the cut durable before new bytes land where old records were, so a crash can
            // never leave new records followed by remnants of overwritten ones.
            self.log
                .set_len(cut)
                .map_err(io_err(&path, "truncate overwritten suffix"))?;
            self.log.sync_data().map_err(io_err(&path, "fsync"))?;
            self.offsets.truncate(keep);
            self.log_end = cut;
        }
        self.log
            .write_all_at(&buf, cut)
            .map_err(io_err(&path, "append"))?;
        self.log.sync_data().map_err(io_err(&path, "fsync"))?;
        self.offsets.extend(offsets);
        self.log_end = cut + buf.len() as u64;
        self.cache.append(entries)
    }

    /// Refuses, before anything is written, what `LogCache` would refuse part way through and
    /// what would leave files this store could not reopen. raft-rs asks for none of it.
    fn validate_persist(
        &self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StoreError> {
        let c = &self.cache;
        // The log as it stands once the snapshot, if any, is installed.
        let (commit, compacted, compacted_term, mut last) = match snapshot {
            Some(s) => {
                let meta = s.get_metadata();
                if meta.index < c.hard_state.commit {
                    return Err(StoreError::Invalid(format!(
                        "snapshot at index {} is behind the commit index {}",
                        meta.index, c.hard_state.commit
                    )));
                }
                (meta.index, meta.index, meta.term, meta.index)
            }
            None => (
                c.hard_state.commit,
                c.compacted_index,
                c.compacted_term,
                c.last_index(),
            ),
        };
        if let Some(first) = entries.first() {
            if first.index <= compacted {
                return Err(StoreError::Invalid(format!(
                    "append at index {} overwrites compacted entries (compacted through {compacted})",
                    first.index
                )));
            }
            if first.index > last + 1 {
                return Err(StoreError::Invalid(format!(
                    "append at index {} leaves a gap after last index {last}",
                    first.index
                )));
            }
            if first.index <= commit {
                return Err(StoreError::Invalid(format!(
                    "append at index {} would overwrite committed entries (commit index {commit})",
                    first.index
                )));
            }
            let before = first.index - 1;
            let mut term = if before == compacted {
                compacted_term
            } else {
                c.term(before).unwrap_or(0)
            };
            for (i, e) in entries.iter().enumerate() {
                if e.index != first.index + i as u64 {
                    return Err(StoreError::Invalid(format!(
                        "entries to append are not contiguous: index {} at position {i} of a batch starting at {}",
                        e.index, first.index
                    )));
                }
                if e.term < term {
                    return Err(StoreError::Invalid(format!(
                        "entry {} has term {}, lower than term {term} of the entry before it",
                        e.index, e.term
                    )));
                }
                term = e.term;
            }
            last = first.index + entries.len() as u64 - 1;
        }
        if let Some(hs) = hard_state {
            if hs.commit > last {
                return Err(StoreError::Invalid(format!(
                    "hard state commit index {} is beyond the last log index {last}",
                    hs.commit
                )));
            }
        }
        Ok(())
    }

    fn ensure_writable(&self) -> Result<(), StoreError> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(StoreError::Io {
                path: self.dir.display().to_string(),
                op: "write after an earlier write failed (reopen the store)",
                source: std::io::Error::other(why.clone()),
            }),
        }
    }

    /// Runs a write; if it fails, marks the store failed (see `failed`).
    fn guarded<T>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.ensure_writable()?;
        let result = op(self);
        if let Err(e) = &result {
            if !matches!(e, StoreError::Invalid(_)) {
                tracing::error!(dir = %self.dir.display(), error = %e, "store write failed; refusing further writes until reopened");
                self.failed = Some(e.to_string());
            }
        }
        result
    }
}

muster_core::impl_raft_storage_via_cache!(DiskStore);

impl RaftStore for DiskStore {
    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StoreError> {
        self.ensure_writable()?;
        self.validate_persist(snapshot, entries, hard_state)?;
        self.guarded(|s| {
            if let Some(snap) = snapshot {
                s.install_snapshot(snap)?;
            }
            s.append_entries(entries)?;
            let hs = hard_state.unwrap_or(&s.cache.hard_state).clone();
            if hs != s.disk_hard_state {
                s.write_hard_state(&hs)?;
            }
            s.cache.hard_state = hs;
            Ok(())
        })
    }

    fn save_applied(&mut self, applied: &Snapshot) -> Result<(), StoreError> {
        let old = self.cache.applied.get_metadata().index;
        let new = applied.get_metadata().index;
        if new < old {
            return Err(StoreError::Invalid(format!(
                "applied index going backwards from {old} to {new}"
            )));
        }
        self.guarded(|s| {
            s.write_applied(&AppliedRecord {
                compacted_index: s.cache.compacted_index,
                compacted_term: s.cache.compacted_term,
                log_epoch: s.log_epoch,
                snapshot: applied.clone(),
            })?;
            s.cache.save_applied(applied)
        })
    }

    fn compact(&mut self, index: u64) -> Result<(), StoreError> {
        let c = &self.cache;
        if index <= c.compacted_index {
            return Ok(());
        }
        let applied = c.applied.get_metadata().index;
        if index > applied {
            return Err(StoreError::Invalid(format!(
                "compaction to {index} passes the applied index {applied}"
            )));
        }
        let term = c.term(index).map_err(|_| {
            StoreError::Invalid(format!("compaction to {index}: entry not in the log"))
        })?;
        let keep_from = (index - c.compacted_index) as usize;
        self.guarded(|s| {
            // The applied file is the commit point. A crash before the log rewrite leaves
            // compacted entries at the head of the log, which open skips and then removes.
            s.write_applied(&AppliedRecord {
                compacted_index: index,
                compacted_term: term,
                log_epoch: s.log_epoch,
                snapshot: s.cache.applied.clone(),
            })?;
            s.replace_log(s.log_epoch, keep_from)?;
            s.cache.compact(index)
        })
    }

    fn applied(&self) -> &Snapshot {
        &self.cache.applied
    }

    fn reset(&mut self) -> Result<(), StoreError> {
        self.guarded(|s| {
            let mut marker = Vec::new();
            frame::encode(Kind::Reset, &[], &mut marker);
            fsio::write_atomic(&s.dir, RESET_FILE, &marker)?;
            let (file, offsets, end) = finish_reset(&s.dir)?;
            s.cache = LogCache::default();
            s.disk_hard_state = HardState::default();
            s.log = file;
            s.offsets = offsets;
            s.log_end = end;
            s.log_epoch = 0;
            Ok(())
        })
    }
}

/// Every file name a store may hold (temporary files are these plus [`fsio::TEMP_SUFFIX`]).
const STORE_FILES: [&str; 5] = [
    LOG_FILE,
    HARD_STATE_FILE,
    APPLIED_FILE,
    RESET_FILE,
    LOCK_FILE,
];

/// The store files that exist in `dir` now, temporary ones included; empty when there is no
/// store. What [`destroy`] would remove (an operator tool shows it before asking).
pub fn store_files(dir: &Path) -> Vec<PathBuf> {
    STORE_FILES
        .iter()
        .flat_map(|name| [name.to_string(), format!("{name}{}", fsio::TEMP_SUFFIX)])
        .map(|name| dir.join(name))
        .filter(|path| path.symlink_metadata().is_ok())
        .collect()
}

/// Removes the store in `dir` for good (`muster reset`): takes its lock first, so it refuses
/// while another process has the store open; removes the store's own files (never anything
/// else), then `dir` itself if nothing else is left in it; fsyncs each directory it changed.
/// Returns what it removed, `dir` last if it went. A missing `dir` is not an error.
pub fn destroy(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let lock = lock_dir(dir)?;
    let lock_path = dir.join(LOCK_FILE);
    let mut removed = Vec::new();
    for path in store_files(dir).into_iter().filter(|p| *p != lock_path) {
        std::fs::remove_file(&path).map_err(io_err(&path, "remove"))?;
        removed.push(path);
    }
    // The lock file goes last, still locked, so no open can slip in between.
    std::fs::remove_file(&lock_path).map_err(io_err(&lock_path, "remove"))?;
    removed.push(lock_path);
    drop(lock);
    fsio::sync_dir(dir)?;
    match std::fs::remove_dir(dir) {
        Ok(()) => {
            removed.push(dir.to_path_buf());
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsio::sync_dir(parent)?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
            tracing::warn!(dir = %dir.display(), "left the store directory: it holds files that are not the store's");
        }
        Err(e) => return Err(io_err(dir, "remove directory")(e)),
    }
    Ok(removed)
}

fn lock_dir(dir: &Path) -> Result<Flock<File>, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path, "open lock file"))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        io_err(&path, "lock (is another process using this store?)")(errno.into())
    })
}

/// Completes a reset whose marker is durable: removes the hard state and applied files, writes an
/// empty log of epoch 0, then removes the marker. Idempotent, so open can redo it after a crash.
fn finish_reset(dir: &Path) -> Result<(File, Vec<u64>, u64), StoreError> {
    for name in [HARD_STATE_FILE, APPLIED_FILE] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, "remove")(e)),
        }
    }
    let log = write_log_file(dir, 0, &[])?;
    let marker = dir.join(RESET_FILE);
    std::fs::remove_file(&marker).map_err(io_err(&marker, "remove"))?;
    fsio::sync_dir(dir)?;
    Ok(log)
}

/// Checks that the files agree with each other: the compaction point is covered by the applied
/// state, and no committed entry is missing from the log.
fn verify(dir: &Path, c: &LogCache) -> Result<(), StoreError> {
    let applied = c.applied.get_metadata().index;
    if c.compacted_index > applied {
        return Err(corrupt(
            &dir.join(APPLIED_FILE),
            format!(
                "compaction point {} is beyond the applied index {applied}",
                c.compacted_index
            ),
        ));
    }
    if c.hard_state.commit > c.last_index() {
        return Err(corrupt(
            &dir.join(LOG_FILE),
            format!(
                "hard state commit index {} but the log ends at index {}: committed entries {}..={} are missing",
                c.hard_state.commit,
                c.last_index(),
                c.last_index() + 1,
                c.hard_state.commit
            ),
        ));
    }
    Ok(())
}

/// What open must do to the log file once everything is verified.
enum LogRepair {
    /// Nothing: the file is as read.
    None,
    /// Write an empty log: the store is new, or a snapshot install superseded the log.
    WriteEmpty,
    /// Cut off a torn final record.
    CutTornTail(logfile::TornTail),
}

/// The log as `open` read and verified it.
struct LoadedLog {
    offsets: Vec<u64>,
    end: u64,
    stale_prefix: bool,
    repair: LogRepair,
}

impl LoadedLog {
    /// Carries out the repair; returns the open log file, record offsets and file length.
    fn repair(self, dir: &Path, epoch: u64) -> Result<(File, Vec<u64>, u64), StoreError> {
        let path = dir.join(LOG_FILE);
        match self.repair {
            LogRepair::WriteEmpty => write_log_file(dir, epoch, &[]),
            LogRepair::None => Ok((open_log_file(&path)?, self.offsets, self.end)),
            LogRepair::CutTornTail(torn) => {
                tracing::warn!(
                    path = %path.display(),
                    offset = torn.offset,
                    index = torn.index,
                    fault = %torn.fault,
                    "cutting off a torn final log record left by a crash during an unacknowledged append"
                );
                let file = open_log_file(&path)?;
                file.set_len(torn.offset)
                    .map_err(io_err(&path, "truncate torn tail"))?;
                file.sync_data().map_err(io_err(&path, "fsync"))?;
                Ok((file, self.offsets, self.end))
            }
        }
    }
}

/// Reads and verifies the log into `cache.entries` and decides what open must repair: a missing
/// log of a new store, a log a snapshot install superseded, a torn final record. Writes nothing.
fn load_log(
    dir: &Path,
    cache: &mut LogCache,
    epoch: u64,
    fresh: bool,
) -> Result<LoadedLog, StoreError> {
    let path = dir.join(LOG_FILE);
    let empty = LoadedLog {
        offsets: Vec::new(),
        end: 0,
        stale_prefix: false,
        repair: LogRepair::WriteEmpty,
    };
    let Some(buf) = fsio::read_optional(&path, u64::MAX)? else {
        if fresh {
            return Ok(empty);
        }
        return Err(corrupt(
            &path,
            "log file is missing but the hardstate or applied file exists",
        ));
    };
    let (log_epoch, start) = logfile::read_header(&buf, &path)?;
    if log_epoch.checked_add(1) == Some(epoch) {
        tracing::info!(
            log_epoch,
            snapshot_index = cache.compacted_index,
            "finishing an interrupted snapshot install: the log predates the snapshot"
        );
        return Ok(empty);
    }
    if log_epoch != epoch {
        return Err(corrupt(
            &path,
            format!(
                "log epoch {log_epoch} does not match epoch {epoch} recorded in the applied file"
            ),
        ));
    }
    let bounds = Bounds {
        compacted_index: cache.compacted_index,
        compacted_term: cache.compacted_term,
        commit: cache.hard_state.commit,
    };
    let image = logfile::scan_entries(&buf, start, &path, bounds)?;
    cache.entries = image.entries;
    Ok(LoadedLog {
        offsets: image.offsets,
        end: image.end,
        stale_prefix: image.stale_prefix,
        repair: image.torn.map_or(LogRepair::None, LogRepair::CutTornTail),
    })
}

/// Atomically writes a log file of `epoch` holding `entries`; returns it open, with the offset of
/// each record and the file length.
fn write_log_file(
    dir: &Path,
    epoch: u64,
    entries: &[Entry],
) -> Result<(File, Vec<u64>, u64), StoreError> {
    let mut buf = Vec::new();
    logfile::encode_header(epoch, &mut buf);
    let mut body = Vec::new();
    let offsets = logfile::encode_entries(entries, buf.len() as u64, &mut body)?;
    buf.extend_from_slice(&body);
    fsio::write_atomic(dir, LOG_FILE, &buf)?;
    let file = open_log_file(&dir.join(LOG_FILE))?;
    Ok((file, offsets, buf.len() as u64))
}

fn open_log_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err(path, "open"))
}

fn decode_hard_state(buf: &[u8], path: &Path) -> Result<HardState, StoreError> {
    let payload = decode_single(buf, Kind::HardState, path)?;
    HardState::parse_from_bytes(payload).map_err(|e| {
        corrupt(
            path,
            format!("hard state at offset {HEADER_BYTES} does not decode: {e}"),
        )
    })
}

fn decode_applied(buf: &[u8], path: &Path) -> Result<AppliedRecord, StoreError> {
    let payload = decode_single(buf, Kind::Applied, path)?;
    if payload.len() < APPLIED_PREFIX_BYTES {
        return Err(corrupt(
            path,
            format!("applied record payload is {} bytes, shorter than its {APPLIED_PREFIX_BYTES}-byte prefix", payload.len()),
        ));
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&payload[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let snapshot = Snapshot::parse_from_bytes(&payload[APPLIED_PREFIX_BYTES..]).map_err(|e| {
        corrupt(
            path,
            format!(
                "applied snapshot at offset {} does not decode: {e}",
                HEADER_BYTES + APPLIED_PREFIX_BYTES
            ),
        )
    })?;
    let rec = AppliedRecord {
        compacted_index: word(0),
        compacted_term: word(1),
        log_epoch: word(2),
        snapshot,
    };
    let meta = rec.snapshot.get_metadata();
    let fields = [
        ("compacted index", rec.compacted_index),
        ("compacted term", rec.compacted_term),
        ("log epoch", rec.log_epoch),
        ("applied index", meta.index),
        ("applied term", meta.term),
    ];
    if let Some((name, value)) = fields.iter().find(|(_, v)| *v >= logfile::MAX_INDEX) {
        return Err(corrupt(path, format!("{name} {value} is out of range")));
    }
    Ok(rec)
}

/// The payload of a file that holds exactly one record of `kind`.
fn decode_single<'a>(buf: &'a [u8], kind: Kind, path: &Path) -> Result<&'a [u8], StoreError> {
    let (payload, end) = frame::decode(buf, 0, kind)
        .map_err(|fault| corrupt(path, format!("record at offset 0: {fault}")))?;
    if end != buf.len() {
        return Err(corrupt(
            path,
            format!(
                "{} unexpected bytes after the record, from offset {end}",
                buf.len() - end
            ),
        ));
    }
    Ok(payload)
}
