//! muster-store: the durable Raft storage of the agent, [`DiskStore`].
//!
//! The node in `muster-core` persists through the [`muster_core::RaftStore`] trait and reads
//! through `raft::Storage`; the agent binary opens the store at `data_dir/raft` with
//! [`DiskStore::open`] and hands it to the node. Every read is answered from an in-memory
//! [`muster_core::LogCache`] (the same image and logic `MemStore` uses); every mutating call writes
//! and fsyncs the files below before it changes the cache and returns `Ok`.
//!
//! # Files
//!
//! Every file is a sequence of records framed as in `frame.rs`: magic (kind tag + format
//! version), length, crc32 of the payload, crc32 of the header, payload. The header checksum means
//! a damaged length is never followed, so damage mid-file is never mistaken for a torn tail.
//!
//! - `log`: a header record holding the *log epoch*, then one record per raft `Entry`, appended in
//!   place. An append that overwrites a suffix first cuts the file at the offset of the first
//!   overwritten record (kept in an index → offset table) and fsyncs the cut, then appends and
//!   fsyncs (`sync_data`). Compaction and snapshot install rewrite it whole, so it stays bounded by
//!   the compaction interval.
//! - `hardstate`: one record, the raft `HardState`.
//! - `applied`: one record: compacted index, compacted term, log epoch (u64 LE each), then the
//!   applied-state raft `Snapshot`. Keeping the compaction point beside the applied state makes
//!   the two change together.
//! - `reset`: present only while a reset is in progress (see below).
//! - `lock`: empty; an exclusive `flock` on it keeps a second process out.
//!
//! [`destroy`] removes exactly these files (and their `.tmp` siblings), under the lock, for
//! `muster reset`; [`store_files`] lists the ones present.
//!
//! `hardstate`, `applied` and rewritten logs are replaced atomically: write `NAME.tmp`, fsync,
//! rename over `NAME`, fsync the directory. Open removes stale `.tmp` files.
//!
//! # Crash ordering
//!
//! The `applied` file is the commit point of the two multi-file operations:
//!
//! - `compact(i)`: (1) `applied` with compaction point `i`, (2) log rewritten without entries
//!   `<= i`. A crash after (1) leaves compacted entries at the head of the log; open verifies them
//!   (contiguous, term at `i` equal to the recorded term) and skips them, then finishes the
//!   rewrite. A crash before (1) leaves the old state whole. Writing the log first would instead
//!   leave a log starting after a compaction point that does not cover the gap.
//! - snapshot install (`persist(Some(snap), ..)`): (1) `applied` with the snapshot, compaction
//!   point = snapshot index/term and log epoch `e + 1`, (2) an empty log of epoch `e + 1`, then
//!   the entries and the hard state as in any persist. A crash before (1) leaves the old state. A
//!   crash after (1) but before (2) leaves a log of epoch `e`: open sees the epoch behind by one,
//!   knows the whole log predates the snapshot, and replaces it with an empty one, so no stale
//!   entry can reappear after the snapshot. Any other epoch mismatch is corruption. The hard state
//!   may still be older than the snapshot; open raises commit and term to the compaction point
//!   exactly as `LogCache::apply_snapshot` does (compacted entries are applied, hence committed).
//! - `reset()`: (1) the `reset` marker (the commit point), (2) remove `hardstate` and `applied`,
//!   write an empty log of epoch 0, (3) remove the marker. Open finds a leftover marker and redoes
//!   (2) and (3), so a crash never leaves a mix of the old cluster's files (say, its log without
//!   its hard state, which would forget a vote).
//! - `persist(None, entries, hs)`: entries are fsynced before the hard state, so a durable commit
//!   index never points past a durable entry. An overwrite never cuts at or below the commit index
//!   (refused, as raft-rs never asks it), and its cut is fsynced before new records are written,
//!   so a crash shows either the old suffix or a prefix of the new one, never new records followed
//!   by remnants of old ones. A crash during the append leaves a torn tail of entries beyond the
//!   durable commit index, which open cuts off with a warning: they were never acknowledged,
//!   since `persist` had not returned.
//!
//! Cost: a `persist` with entries and a hard state is three fsyncs (log, hard state file, directory);
//! `save_applied` two; compaction and snapshot install four.
//!
//! # Verification on open
//!
//! Open refuses with [`muster_core::StoreError::Corrupt`] (naming the file, offset or index) any
//! checksum mismatch, undecodable record, foreign magic or format version, trailing bytes after a
//! single-record file, gap or term regression in the log, disagreement with the compaction point,
//! or a commit index past the end of the log (committed entries lost). The only defect repaired is
//! the torn tail: damage to the record that would hold an index beyond the commit index, with no
//! intact record after it. Damage followed by an intact record is corruption, whatever its index.
//!
//! Writes raft-rs never asks for and that would leave files that open must reject (overwriting
//! committed entries, non-contiguous or term-decreasing batches, a commit index past the log, a
//! snapshot behind the commit index) are refused with `StoreError::Invalid` before anything is
//! written. After a failed write the store refuses further writes until it is reopened.

mod frame;
mod fsio;
mod logfile;
mod store;

#[cfg(test)]
mod crash_tests;

pub use store::{destroy, store_files, DiskStore};
