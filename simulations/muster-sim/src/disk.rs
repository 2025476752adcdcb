//! The simulated disk: a [`RaftStore`] over an in-memory [`LogCache`] with crash semantics.
//!
//! The core calls `persist` / `save_applied` / `compact` / `reset` and treats each as durable when
//! it returns (an fsync). An honest disk keeps that promise: a crash leaves exactly what was
//! persisted. The test-only fault `lying_fsync` breaks it: writes become durable only when the
//! simulator calls [`SimDisk::sync`] (every `sync_interval_ms`), and a crash reverts the disk to
//! the image of the last sync — "writes not yet synced are lost". The checker must then report a
//! broken invariant (I4), which is how the simulator shows it can catch a durability bug.

use muster_core::{LogCache, RaftStore, StoreError};
use raft::prelude::{Entry, HardState, Snapshot};

/// A node's disk, owned by the node while it runs and by the simulator while it is down.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    live: LogCache,
    /// `Some` when the disk lies about fsync: the image as of the last [`SimDisk::sync`].
    synced: Option<LogCache>,
    /// Mutating calls so far (persist, save_applied, compact, reset).
    pub writes: u64,
}

impl SimDisk {
    /// An empty disk; `lying_fsync` enables the lost-unsynced-writes fault.
    pub fn new(lying_fsync: bool) -> Self {
        SimDisk {
            synced: lying_fsync.then(LogCache::default),
            ..SimDisk::default()
        }
    }

    /// The image the node reads.
    pub fn cache(&self) -> &LogCache {
        &self.live
    }

    /// Makes every write so far durable (a no-op on an honest disk).
    pub fn sync(&mut self) {
        if let Some(s) = self.synced.as_mut() {
            s.clone_from(&self.live);
        }
    }

    /// What survives a crash: everything on an honest disk, the last synced image otherwise.
    pub fn crash(&mut self) {
        if let Some(s) = self.synced.as_ref() {
            self.live = s.clone();
        }
    }

    /// Term of the entry at `index` if the log still holds it (or it is the compaction point).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        let c = &self.live;
        if index == c.compacted_index && index != 0 {
            return Some(c.compacted_term);
        }
        if index <= c.compacted_index || index > c.last_index() {
            return None;
        }
        Some(c.entries[(index - c.first_index()) as usize].term)
    }
}

muster_core::impl_raft_storage_via_cache!(SimDisk);

impl RaftStore for SimDisk {
    fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StoreError> {
        self.writes += 1;
        self.live.persist(snapshot, entries, hard_state)
    }

    fn save_applied(&mut self, applied: &Snapshot) -> Result<(), StoreError> {
        self.writes += 1;
        self.live.save_applied(applied)
    }

    fn compact(&mut self, index: u64) -> Result<(), StoreError> {
        self.writes += 1;
        self.live.compact(index)
    }

    fn applied(&self) -> &Snapshot {
        &self.live.applied
    }

    fn reset(&mut self) -> Result<(), StoreError> {
        self.writes += 1;
        self.live = LogCache::default();
        Ok(())
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
    fn honest_disk_keeps_everything_across_a_crash() {
        let mut d = SimDisk::new(false);
        d.persist(None, &[entry(1, 1), entry(2, 1)], None).unwrap();
        d.crash();
        assert_eq!(d.cache().last_index(), 2);
        assert_eq!(d.term_at(2), Some(1));
        assert_eq!(d.term_at(3), None);
    }

    #[test]
    fn lying_disk_loses_writes_after_the_last_sync() {
        let mut d = SimDisk::new(true);
        d.persist(None, &[entry(1, 1)], None).unwrap();
        d.sync();
        d.persist(None, &[entry(2, 1)], None).unwrap();
        d.crash();
        assert_eq!(d.cache().last_index(), 1);
        assert_eq!(d.writes, 2);
    }
}
