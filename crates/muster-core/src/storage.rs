//! The storage seam of the core: the [`RaftStore`] trait the node persists through, the shared
//! in-memory [`LogCache`] every implementation reads from, and [`MemStore`] for tests and the
//! simulator.
//!
//! The node owns its store inside raft-rs's `RawNode`. It calls [`RaftStore::persist`] with what a
//! `Ready` asks to be made durable and [`RaftStore::save_applied`] after applying committed entries;
//! both return only once the data is durable. `muster-store` implements the trait on files.
//!
//! The applied state is kept as a raft `Snapshot` (metadata = applied index, its term and the conf
//! state; data = the encoded `ClusterState`). It doubles as the snapshot sent to lagging followers.

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

/// Why a store operation failed. Display names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O call failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes fail their checksum, do not decode, or contradict each other.
    #[error("{path}: corrupt store: {detail}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong, with offsets or indexes.
        detail: String,
    },
    /// The caller asked for something the log cannot do (a gap, compaction past applied).
    #[error("invalid store operation: {0}")]
    Invalid(String),
    /// A fault injected by a test or the simulator.
    #[error("injected storage fault: {0}")]
    Injected(&'static str),
}

/// Durable Raft state as the node needs it. Every mutating call is durable when it returns `Ok`.
pub trait RaftStore: raft::Storage {
    /// Persists, in this order: a snapshot received from the leader (replacing the log and the
    /// applied state), the entries (truncating any conflicting suffix first), the hard state.
    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StoreError>;

    /// Records the applied state machine: index, term and conf state in the metadata, the encoded
    /// cluster state as data. `applied.metadata.index` never goes backwards.
    fn save_applied(&mut self, applied: &Snapshot) -> Result<(), StoreError>;

    /// Discards log entries up to and including `index` (which must not exceed the applied
    /// index), keeping the term of `index` for log matching.
    fn compact(&mut self, index: u64) -> Result<(), StoreError>;

    /// The applied state last saved (or received as a snapshot); empty before any.
    fn applied(&self) -> &Snapshot;

    /// Durably forgets everything: the host leaves its cluster to join another.
    fn reset(&mut self) -> Result<(), StoreError>;
}

/// The in-memory image of a Raft store: hard state, applied snapshot, compaction point and the
/// log suffix after it. Implements every read of `raft::Storage` and the pure part of each
/// mutation; durable implementations keep one and mirror its changes to disk.
#[derive(Debug, Clone, Default)]
pub struct LogCache {
    /// Last persisted hard state.
    pub hard_state: HardState,
    /// Applied state machine (see module docs).
    pub applied: Snapshot,
    /// Index of the last discarded entry (0 = nothing discarded).
    pub compacted_index: u64,
    /// Term of the entry at `compacted_index`.
    pub compacted_term: u64,
    /// Entries `compacted_index + 1 ..= last_index`, contiguous.
    pub entries: Vec<Entry>,
}

impl LogCache {
    /// Index of the first entry the log holds (or would hold next).
    pub fn first_index(&self) -> u64 {
        self.compacted_index + 1
    }

    /// Index of the last entry, or the compaction point if the log is empty.
    pub fn last_index(&self) -> u64 {
        self.compacted_index + self.entries.len() as u64
    }

    /// Applies a received snapshot: the log restarts after it.
    pub fn apply_snapshot(&mut self, snap: &Snapshot) {
        let meta = snap.get_metadata();
        self.entries.clear();
        self.compacted_index = meta.index;
        self.compacted_term = meta.term;
        self.applied = snap.clone();
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        if self.hard_state.term < meta.term {
            self.hard_state.term = meta.term;
        }
    }

    /// Appends entries, first dropping any existing suffix from `entries[0].index` on.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.compacted_index {
            return Err(StoreError::Invalid(format!(
                "append at index {} overwrites compacted entries (compacted through {})",
                first.index, self.compacted_index
            )));
        }
        if first.index > self.last_index() + 1 {
            return Err(StoreError::Invalid(format!(
                "append at index {} leaves a gap after last index {}",
                first.index,
                self.last_index()
            )));
        }
        let keep = (first.index - self.first_index()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Applies one `RaftStore::persist` in memory: the snapshot, then the entries, then the hard
    /// state. In-memory stores call this; `DiskStore` interleaves the same steps with its writes.
    pub fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StoreError> {
        if let Some(s) = snapshot {
            self.apply_snapshot(s);
        }
        self.append(entries)?;
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        Ok(())
    }

    /// Records a new applied state.
    pub fn save_applied(&mut self, applied: &Snapshot) -> Result<(), StoreError> {
        let new = applied.get_metadata().index;
        let old = self.applied.get_metadata().index;
        if new < old {
            return Err(StoreError::Invalid(format!(
                "applied index going backwards from {old} to {new}"
            )));
        }
        self.applied = applied.clone();
        Ok(())
    }

    /// Drops entries through `index`.
    pub fn compact(&mut self, index: u64) -> Result<(), StoreError> {
        if index <= self.compacted_index {
            return Ok(());
        }
        let applied = self.applied.get_metadata().index;
        if index > applied {
            return Err(StoreError::Invalid(format!(
                "compaction to {index} passes the applied index {applied}"
            )));
        }
        let term = self.term_of(index).ok_or_else(|| {
            StoreError::Invalid(format!("compaction to {index}: entry not in the log"))
        })?;
        let drop = (index - self.compacted_index) as usize;
        self.entries.drain(..drop);
        self.compacted_index = index;
        self.compacted_term = term;
        Ok(())
    }

    fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.compacted_index {
            return Some(self.compacted_term);
        }
        if idx < self.compacted_index || idx > self.last_index() {
            return None;
        }
        Some(self.entries[(idx - self.first_index()) as usize].term)
    }

    /// `raft::Storage::initial_state`.
    pub fn raft_state(&self) -> RaftState {
        RaftState::new(
            self.hard_state.clone(),
            self.applied.get_metadata().get_conf_state().clone(),
        )
    }

    /// `raft::Storage::entries`.
    pub fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> raft::Result<Vec<Entry>> {
        if low <= self.compacted_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.first_index()) as usize;
        let hi = (high - self.first_index()) as usize;
        let mut out = Vec::with_capacity(hi - lo);
        let mut size = 0u64;
        for e in &self.entries[lo..hi] {
            size += protobuf::Message::compute_size(e) as u64;
            if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    /// `raft::Storage::term`.
    pub fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.compacted_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    /// `raft::Storage::snapshot`: the applied state.
    pub fn snapshot(&self, request_index: u64) -> raft::Result<Snapshot> {
        if self.applied.get_metadata().index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.applied.clone())
    }
}

/// Implements `raft::Storage` for a type that exposes its [`LogCache`] through `cache()`.
#[macro_export]
macro_rules! impl_raft_storage_via_cache {
    ($ty:ty) => {
        impl raft::Storage for $ty {
            fn initial_state(&self) -> raft::Result<raft::RaftState> {
                Ok(self.cache().raft_state())
            }
            fn entries(
                &self,
                low: u64,
                high: u64,
                max_size: impl Into<Option<u64>>,
                _context: raft::GetEntriesContext,
            ) -> raft::Result<Vec<raft::prelude::Entry>> {
                self.cache().entries(low, high, max_size.into())
            }
            fn term(&self, idx: u64) -> raft::Result<u64> {
                self.cache().term(idx)
            }
            fn first_index(&self) -> raft::Result<u64> {
                Ok(self.cache().first_index())
            }
            fn last_index(&self) -> raft::Result<u64> {
                Ok(self.cache().last_index())
            }
            fn snapshot(
                &self,
                request_index: u64,
                _to: u64,
            ) -> raft::Result<raft::prelude::Snapshot> {
                self.cache().snapshot(request_index)
            }
        }
    };
}

/// A store that lives in memory: for unit tests, scenario tests and the simulator.
///
/// `fail_next_persist` makes the next `persist` fail, to test that the node reports it instead of
/// acknowledging writes it did not make.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    cache: LogCache,
    /// Fault injection: fail the next `persist` call.
    pub fail_next_persist: bool,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The in-memory image.
    pub fn cache(&self) -> &LogCache {
        &self.cache
    }
}

impl_raft_storage_via_cache!(MemStore);

impl RaftStore for MemStore {
    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StoreError> {
        if std::mem::take(&mut self.fail_next_persist) {
            return Err(StoreError::Injected("persist"));
        }
        self.cache.persist(snapshot, entries, hard_state)
    }

    fn save_applied(&mut self, applied: &Snapshot) -> Result<(), StoreError> {
        self.cache.save_applied(applied)
    }

    fn compact(&mut self, index: u64) -> Result<(), StoreError> {
        self.cache.compact(index)
    }

    fn applied(&self) -> &Snapshot {
        &self.cache.applied
    }

    fn reset(&mut self) -> Result<(), StoreError> {
        self.cache = LogCache::default();
        Ok(())
    }
}

/// Builds the applied-state snapshot for `index`/`term` with `conf_state` and `data`.
pub fn applied_snapshot(index: u64, term: u64, conf_state: ConfState, data: Vec<u8>) -> Snapshot {
    let mut snap = Snapshot::default();
    snap.set_data(data.into());
    let meta = snap.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(conf_state);
    snap
}

/// A store shared between the node and raft-rs's `RawNode`, so the node can stop raft (to
/// dissolve into another cluster) and start it again over the same store.
#[derive(Debug, Default)]
pub struct SharedStore<S>(std::sync::Arc<std::sync::Mutex<S>>);

impl<S> Clone for SharedStore<S> {
    fn clone(&self) -> Self {
        SharedStore(self.0.clone())
    }
}

impl<S> SharedStore<S> {
    /// Wraps a store.
    pub fn new(store: S) -> Self {
        SharedStore(std::sync::Arc::new(std::sync::Mutex::new(store)))
    }

    /// Locks the store. The core is single-threaded, so this never waits; a poisoned lock (a
    /// panic elsewhere while holding it) still yields the store.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, S> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: raft::Storage> raft::Storage for SharedStore<S> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.lock().initial_state()
    }
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.lock().entries(low, high, max_size, context)
    }
    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.lock().term(idx)
    }
    fn first_index(&self) -> raft::Result<u64> {
        self.lock().first_index()
    }
    fn last_index(&self) -> raft::Result<u64> {
        self.lock().last_index()
    }
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.lock().snapshot(request_index, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e
    }

    #[test]
    fn append_truncates_conflicting_suffix() {
        let mut c = LogCache::default();
        c.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
        c.append(&[entry(2, 2)]).unwrap();
        assert_eq!(c.last_index(), 2);
        assert_eq!(c.term(2).unwrap(), 2);
        assert!(c.append(&[entry(5, 2)]).is_err(), "gap must be refused");
    }

    #[test]
    fn compaction_keeps_term_of_compacted_index() {
        let mut c = LogCache::default();
        c.append(&[entry(1, 1), entry(2, 1), entry(3, 2)]).unwrap();
        assert!(c.compact(2).is_err(), "cannot compact past applied");
        c.save_applied(&applied_snapshot(3, 2, ConfState::default(), vec![]))
            .unwrap();
        c.compact(2).unwrap();
        assert_eq!(c.first_index(), 3);
        assert_eq!(c.term(2).unwrap(), 1);
        assert!(matches!(
            c.entries(2, 3, None),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(c.entries(3, 4, None).unwrap().len(), 1);
    }
}
