//! `DiskStore::open` on arbitrary files: what the agent does at every start with whatever a
//! power cut, a full disk or an operator left in `data_dir/raft`.
//!
//! An input is a [`StoreFiles`]: a flags byte (bit 0 `hardstate`, bit 1 `applied`, bit 2 `reset`,
//! bit 3 `log` present), the lengths of `hardstate`, `applied` and `reset` as 4-byte little-endian
//! numbers, then their bytes, and the rest is `log`. The files are written into a directory of
//! this process (`scratch.rs`) and the store opened. Invariants:
//! open returns `Ok` or an error with a message; an open store is consistent (its log contiguous
//! after the compaction point with terms that never fall, its commit index within the log); and
//! opening it again gives the same contents (what open repaired stays repaired).

use std::path::Path;

use muster_core::LogCache;
use muster_store::DiskStore;
use raft::prelude::{Entry, HardState, Snapshot};

/// The store's files as one fuzz input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreFiles {
    /// `hardstate`.
    pub hard_state: Option<Vec<u8>>,
    /// `applied`.
    pub applied: Option<Vec<u8>>,
    /// `reset` (the marker of an interrupted reset).
    pub reset: Option<Vec<u8>>,
    /// `log`.
    pub log: Option<Vec<u8>>,
}

const NAMES: [&str; 4] = ["hardstate", "applied", "reset", "log"];

impl StoreFiles {
    /// Splits an input (see the module docs); a short input gives short or absent files.
    pub fn decode(data: &[u8]) -> StoreFiles {
        let (flags, mut rest) = data.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        let mut lens = [0usize; 3];
        for len in &mut lens {
            let n = rest.len().min(4);
            let mut b = [0u8; 4];
            b[..n].copy_from_slice(&rest[..n]);
            *len = u32::from_le_bytes(b) as usize;
            rest = &rest[n..];
        }
        let mut take = |len: usize| {
            let (a, b) = rest.split_at(len.min(rest.len()));
            rest = b;
            a.to_vec()
        };
        let hs = take(lens[0]);
        let applied = take(lens[1]);
        let reset = take(lens[2]);
        let log = rest.to_vec();
        let has = |bit: u8| flags & (1 << bit) != 0;
        StoreFiles {
            hard_state: has(0).then_some(hs),
            applied: has(1).then_some(applied),
            reset: has(2).then_some(reset),
            log: has(3).then_some(log),
        }
    }

    /// The input that decodes to these files.
    pub fn encode(&self) -> Vec<u8> {
        let files = [&self.hard_state, &self.applied, &self.reset, &self.log];
        let mut flags = 0u8;
        for (bit, f) in files.iter().enumerate() {
            if f.is_some() {
                flags |= 1 << bit;
            }
        }
        let mut out = vec![flags];
        for f in &files[..3] {
            out.extend_from_slice(&(f.as_ref().map_or(0, Vec::len) as u32).to_le_bytes());
        }
        for f in files {
            out.extend_from_slice(f.as_deref().unwrap_or_default());
        }
        out
    }

    /// Reads the files of a store directory.
    pub fn read(dir: &Path) -> std::io::Result<StoreFiles> {
        let read = |name: &str| match std::fs::read(dir.join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        Ok(StoreFiles {
            hard_state: read(NAMES[0])?,
            applied: read(NAMES[1])?,
            reset: read(NAMES[2])?,
            log: read(NAMES[3])?,
        })
    }

    fn write(&self, dir: &Path) -> std::io::Result<()> {
        let files = [&self.hard_state, &self.applied, &self.reset, &self.log];
        for (name, f) in NAMES.iter().zip(files) {
            if let Some(bytes) = f {
                std::fs::write(dir.join(name), bytes)?;
            }
        }
        Ok(())
    }
}

/// What an open store holds, for comparing two opens.
type Contents = (HardState, Snapshot, u64, u64, Vec<Entry>);

fn contents(c: &LogCache) -> Contents {
    (
        c.hard_state.clone(),
        c.applied.clone(),
        c.compacted_index,
        c.compacted_term,
        c.entries.clone(),
    )
}

fn assert_consistent(c: &LogCache) {
    let mut term = c.compacted_term;
    for (want, e) in (c.compacted_index + 1..).zip(&c.entries) {
        assert_eq!(
            e.index, want,
            "the log is contiguous after the compaction point"
        );
        assert!(e.term >= term, "terms never fall along the log");
        term = e.term;
    }
    assert!(
        c.hard_state.commit <= c.last_index(),
        "the commit index {} is within the log (last {})",
        c.hard_state.commit,
        c.last_index()
    );
}

/// Writes the input as a store's files and opens it (see the module docs).
pub fn disk_store_open(data: &[u8]) {
    let files = StoreFiles::decode(data);
    let dir = &crate::scratch::empty_dir();
    files.write(dir).expect("scratch files can be written");
    let first = match DiskStore::open(dir) {
        Ok(store) => {
            assert_consistent(store.cache());
            contents(store.cache())
        }
        Err(e) => {
            assert!(
                !e.to_string().is_empty(),
                "an open error says what is wrong"
            );
            return;
        }
    };
    match DiskStore::open(dir) {
        Ok(store) => assert_eq!(
            contents(store.cache()),
            first,
            "a second open reads what the first left"
        ),
        Err(e) => panic!("a store that opened does not open again: {e}"),
    }
}
