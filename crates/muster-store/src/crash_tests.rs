//! Crash-point tests for the orderings argued in the crate docs: each test performs an operation,
//! then puts back the files a crash at one point would have left unwritten, and checks that open
//! yields the state the operation commits to (or the one before it), never a mix.

use std::fs;
use std::path::Path;

use muster_core::{MemStore, RaftStore, StoreError};
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::Storage;

use crate::frame::{self, Kind};
use crate::DiskStore;

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range
        .map(|index| Entry {
            index,
            term,
            data: vec![index as u8; 10].into(),
            ..Default::default()
        })
        .collect()
}

fn hs(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote: 1,
        commit,
        ..Default::default()
    }
}

fn snap(index: u64, term: u64) -> Snapshot {
    muster_core::storage::applied_snapshot(
        index,
        term,
        ConfState::from((vec![1], vec![])),
        vec![7; 3],
    )
}

fn assert_matches(disk: &DiskStore, mem: &MemStore) {
    let (d, m) = (disk.cache(), mem.cache());
    assert_eq!(d.hard_state, m.hard_state, "hard state");
    assert_eq!(d.applied, m.applied, "applied");
    assert_eq!(
        (d.compacted_index, d.compacted_term),
        (m.compacted_index, m.compacted_term)
    );
    assert_eq!(d.entries, m.entries, "entries");
}

/// A store with entries 1..=10 (term 2), commit 9, applied 8.
fn base(dir: &Path) -> MemStore {
    let mut mem = MemStore::new();
    let mut disk = DiskStore::open(dir).unwrap();
    mem.persist(None, &entries(1..=10, 2), Some(&hs(2, 9)))
        .unwrap();
    disk.persist(None, &entries(1..=10, 2), Some(&hs(2, 9)))
        .unwrap();
    mem.save_applied(&snap(8, 2)).unwrap();
    disk.save_applied(&snap(8, 2)).unwrap();
    mem
}

#[test]
fn compaction_cut_short_before_the_log_rewrite_completes_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mem = base(tmp.path());
    let old_log = fs::read(tmp.path().join("log")).unwrap();
    let mut disk = DiskStore::open(tmp.path()).unwrap();
    disk.compact(6).unwrap();
    mem.compact(6).unwrap();
    let compacted_len = fs::metadata(tmp.path().join("log")).unwrap().len();
    drop(disk);
    fs::write(tmp.path().join("log"), &old_log).unwrap();

    let disk = DiskStore::open(tmp.path()).unwrap();
    assert_matches(&disk, &mem);
    assert_eq!(disk.first_index().unwrap(), 7);
    let len = fs::metadata(tmp.path().join("log")).unwrap().len();
    assert_eq!(len, compacted_len, "open finished the rewrite");
}

#[test]
fn snapshot_install_cut_short_never_resurrects_the_old_log() {
    for keep_new_log in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let mut mem = base(tmp.path());
        let old_log = fs::read(tmp.path().join("log")).unwrap();
        let old_hs = fs::read(tmp.path().join("hardstate")).unwrap();
        let mut disk = DiskStore::open(tmp.path()).unwrap();
        let leader = snap(15, 3);
        disk.persist(Some(&leader), &[], None).unwrap();
        mem.persist(Some(&leader), &[], None).unwrap();
        drop(disk);
        // Crash after the applied file (the commit point), before the hard state, with or
        // without the new empty log in place.
        if !keep_new_log {
            fs::write(tmp.path().join("log"), &old_log).unwrap();
        }
        fs::write(tmp.path().join("hardstate"), &old_hs).unwrap();

        let mut disk = DiskStore::open(tmp.path()).unwrap();
        assert_matches(&disk, &mem);
        assert_eq!(
            disk.last_index().unwrap(),
            15,
            "keep_new_log={keep_new_log}"
        );
        // The log works on from the snapshot, and says so after another reopen.
        disk.persist(None, &entries(16..=17, 3), Some(&hs(3, 16)))
            .unwrap();
        mem.persist(None, &entries(16..=17, 3), Some(&hs(3, 16)))
            .unwrap();
        drop(disk);
        assert_matches(&DiskStore::open(tmp.path()).unwrap(), &mem);
    }
}

#[test]
fn snapshot_install_cut_short_before_its_commit_point_keeps_the_old_state() {
    // The applied file was being written (only its temp file exists): nothing else changed yet.
    let tmp = tempfile::tempdir().unwrap();
    let mem = base(tmp.path());
    fs::write(tmp.path().join("applied.tmp"), b"half-written").unwrap();
    let disk = DiskStore::open(tmp.path()).unwrap();
    assert_matches(&disk, &mem);
    assert!(
        !tmp.path().join("applied.tmp").exists(),
        "stale temp file removed"
    );
    drop(disk);

    // A new-epoch log without the applied file that announces it is not a crash state the write
    // order allows: refused rather than guessed at.
    let old_applied = fs::read(tmp.path().join("applied")).unwrap();
    let mut disk = DiskStore::open(tmp.path()).unwrap();
    disk.persist(Some(&snap(15, 3)), &[], None).unwrap();
    drop(disk);
    fs::write(tmp.path().join("applied"), &old_applied).unwrap();
    let err = DiskStore::open(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { detail, .. } if detail.contains("epoch")),
        "{err}"
    );
}

#[test]
fn reset_cut_short_after_its_marker_finishes_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    base(tmp.path());
    let mut marker = Vec::new();
    frame::encode(Kind::Reset, &[], &mut marker);
    fs::write(tmp.path().join("reset"), &marker).unwrap();
    let disk = DiskStore::open(tmp.path()).unwrap();
    assert!(disk.is_empty());
    assert!(!tmp.path().join("reset").exists());
    assert!(!tmp.path().join("hardstate").exists());
    drop(disk);
    assert!(DiskStore::open(tmp.path()).unwrap().is_empty());
}
