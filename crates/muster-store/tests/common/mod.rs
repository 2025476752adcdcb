//! Helpers shared by the integration tests: entry and state builders, cache comparison, and a
//! tracing capture to check what the store logs.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use muster_core::LogCache;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, Storage};

pub fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("cmd-{index}-{term}").into_bytes().into(),
        ..Default::default()
    }
}

pub fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term)).collect()
}

pub fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

pub fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
    muster_core::storage::applied_snapshot(
        index,
        term,
        ConfState::from((vec![1, 2, 3], vec![4])),
        data.to_vec(),
    )
}

/// Asserts two caches hold the same state, field by field (`LogCache` has no `PartialEq`).
pub fn assert_same_cache(got: &LogCache, want: &LogCache, context: &str) {
    assert_eq!(got.hard_state, want.hard_state, "{context}: hard state");
    assert_eq!(got.applied, want.applied, "{context}: applied snapshot");
    assert_eq!(
        got.compacted_index, want.compacted_index,
        "{context}: compacted index"
    );
    assert_eq!(
        got.compacted_term, want.compacted_term,
        "{context}: compacted term"
    );
    assert_eq!(got.entries, want.entries, "{context}: entries");
}

/// Every `raft::Storage` answer over the store's index range, as one comparable string.
pub fn storage_answers(s: &impl Storage) -> String {
    let first = s.first_index().unwrap();
    let last = s.last_index().unwrap();
    let mut out = format!(
        "state={:?} first={first} last={last}\n",
        s.initial_state().unwrap()
    );
    for i in first.saturating_sub(2)..=last + 1 {
        out += &format!("term({i})={:?}\n", s.term(i));
    }
    let ctx = GetEntriesContext::empty(false);
    out += &format!("entries={:?}\n", s.entries(first, last + 1, None, ctx));
    let ctx = GetEntriesContext::empty(false);
    out += &format!(
        "entries_capped={:?}\n",
        s.entries(first, last + 1, Some(1), ctx)
    );
    out += &format!("snapshot={:?}", s.snapshot(0, 0));
    out
}

/// Flips one bit of the byte at `offset` in `path`.
pub fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with tracing output captured; returns its result and the log text.
pub fn with_captured_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    (out, captured.text())
}
