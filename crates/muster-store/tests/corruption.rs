//! Damaged stores are refused with `StoreError::Corrupt` naming the file and what is wrong,
//! never opened with silently missing or altered state.

mod common;

use std::path::Path;

use common::*;
use muster_core::{RaftStore, StoreError};
use muster_store::DiskStore;

/// A store with a compacted prefix, applied state, committed and uncommitted entries.
fn populated(dir: &Path) {
    let mut store = DiskStore::open(dir).unwrap();
    store
        .persist(None, &entries(1..=30, 1), Some(&hard_state(1, 1, 25)))
        .unwrap();
    store
        .save_applied(&snapshot(20, 1, b"applied cluster state"))
        .unwrap();
    store.compact(10).unwrap();
}

/// Opens `dir` expecting corruption; returns (path, detail).
fn open_corrupt(dir: &Path) -> (String, String) {
    match DiskStore::open(dir) {
        Err(StoreError::Corrupt { path, detail }) => (path, detail),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(store) => panic!("opened a damaged store: {:?}", store.cache()),
    }
}

#[test]
fn a_flipped_byte_in_the_middle_of_the_log_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    populated(tmp.path());
    let log = tmp.path().join("log");
    let len = std::fs::metadata(&log).unwrap().len() as usize;
    // Every byte in the middle third, header or payload, in committed or uncommitted records.
    for offset in (len / 3..2 * len / 3).step_by(7) {
        flip_byte(&log, offset);
        let (path, detail) = open_corrupt(tmp.path());
        assert!(path.ends_with("/log"), "offset {offset}: {path}");
        assert!(detail.contains("offset"), "offset {offset}: {detail}");
        flip_byte(&log, offset);
    }
    DiskStore::open(tmp.path()).expect("restored log opens again");
}

#[test]
fn a_flipped_byte_in_hardstate_or_applied_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    populated(tmp.path());
    for name in ["hardstate", "applied"] {
        let file = tmp.path().join(name);
        let len = std::fs::metadata(&file).unwrap().len() as usize;
        for offset in [0, 5, 13, len / 2, len - 1] {
            flip_byte(&file, offset);
            let (path, detail) = open_corrupt(tmp.path());
            assert!(
                path.ends_with(&format!("/{name}")),
                "{name}@{offset}: {path}"
            );
            assert!(!detail.is_empty());
            flip_byte(&file, offset);
        }
    }
    DiskStore::open(tmp.path()).expect("restored files open again");
}

#[test]
fn a_log_truncated_below_the_commit_index_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let mut store = DiskStore::open(tmp.path()).unwrap();
    store
        .persist(None, &entries(1..=10, 1), Some(&hard_state(1, 1, 10)))
        .unwrap();
    drop(store);
    let full = std::fs::read(&log).unwrap();
    let record = 16 + protobuf::Message::compute_size(&entry(10, 1)) as usize;

    // Cut exactly at a record boundary: the file is well formed but entry 10 is gone.
    std::fs::write(&log, &full[..full.len() - record]).unwrap();
    let (path, detail) = open_corrupt(tmp.path());
    assert!(path.ends_with("/log"), "{path}");
    assert!(
        detail.contains("commit index 10") && detail.contains("ends at index 9"),
        "{detail}"
    );

    // Cut inside the record of committed entry 10: not a tolerable torn tail.
    std::fs::write(&log, &full[..full.len() - record / 2]).unwrap();
    let (_, detail) = open_corrupt(tmp.path());
    assert!(
        detail.contains("committed entry 10") && detail.contains("commit index 10"),
        "{detail}"
    );
}

#[test]
fn garbage_and_missing_files_are_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    populated(tmp.path());
    let garbage: Vec<u8> = (0..500u32).map(|i| (i * 7919 % 251) as u8).collect();
    for name in ["log", "hardstate", "applied"] {
        let file = tmp.path().join(name);
        let good = std::fs::read(&file).unwrap();
        for bad in [&garbage[..], &[][..], &good[..good.len() / 2]] {
            std::fs::write(&file, bad).unwrap();
            let (path, _) = open_corrupt(tmp.path());
            assert!(path.ends_with(&format!("/{name}")), "{name}: {path}");
        }
        // Trailing bytes after a single-record file, or a second copy of the record.
        let mut doubled = good.clone();
        doubled.extend_from_slice(&good);
        if name != "log" {
            std::fs::write(&file, &doubled).unwrap();
            let (_, detail) = open_corrupt(tmp.path());
            assert!(detail.contains("unexpected bytes"), "{name}: {detail}");
        }
        std::fs::write(&file, &good).unwrap();
    }
    std::fs::remove_file(tmp.path().join("log")).unwrap();
    let (path, detail) = open_corrupt(tmp.path());
    assert!(
        path.ends_with("/log") && detail.contains("missing"),
        "{path}: {detail}"
    );
}

#[test]
fn files_swapped_between_stores_are_detected() {
    // A log from another store (different epoch after a snapshot install) must not be accepted.
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    populated(a.path());
    let mut other = DiskStore::open(b.path()).unwrap();
    other
        .persist(Some(&snapshot(5, 1, b"x")), &entries(6..=8, 1), None)
        .unwrap();
    other
        .persist(Some(&snapshot(9, 1, b"y")), &[], None)
        .unwrap();
    drop(other);
    std::fs::copy(b.path().join("log"), a.path().join("log")).unwrap();
    let (path, detail) = open_corrupt(a.path());
    assert!(
        path.ends_with("/log") && detail.contains("epoch"),
        "{path}: {detail}"
    );
}

#[test]
fn a_log_cut_at_any_offset_opens_only_with_every_committed_entry() {
    let tmp = tempfile::tempdir().unwrap();
    populated(tmp.path());
    let log = tmp.path().join("log");
    let full = std::fs::read(&log).unwrap();
    for len in 0..full.len() {
        std::fs::write(&log, &full[..len]).unwrap();
        match DiskStore::open(tmp.path()) {
            Ok(store) => {
                assert!(
                    store.cache().last_index() >= 25,
                    "cut at {len}: committed entries lost"
                );
                assert!(len > full.len() / 2, "cut at {len} opened");
            }
            Err(StoreError::Corrupt { path, .. }) => assert!(path.ends_with("/log"), "{path}"),
            Err(other) => panic!("cut at {len}: {other}"),
        }
    }
}

#[test]
fn random_damage_never_panics_and_never_opens_silently_altered() {
    use rand::{Rng, SeedableRng};
    let tmp = tempfile::tempdir().unwrap();
    populated(tmp.path());
    let reference = DiskStore::open(tmp.path()).unwrap().cache().clone();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..300 {
        let name = ["log", "hardstate", "applied"][round % 3];
        let file = tmp.path().join(name);
        let good = std::fs::read(&file).unwrap();
        let mut bad = good.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..bad.len());
            bad[at] = rng.random();
        }
        if bad == good {
            continue;
        }
        std::fs::write(&file, &bad).unwrap();
        match DiskStore::open(tmp.path()) {
            // Only damage to the uncommitted tail of the log may be cut off.
            Ok(store) => {
                let c = store.cache();
                assert_eq!(name, "log", "round {round}: damaged {name} accepted");
                assert_eq!(c.hard_state, reference.hard_state);
                assert_eq!(c.applied, reference.applied);
                assert!(c.entries.len() < reference.entries.len(), "round {round}");
                assert_eq!(c.entries[..], reference.entries[..c.entries.len()]);
                assert!(c.last_index() >= 25);
            }
            Err(StoreError::Corrupt { path, .. }) => {
                assert!(path.ends_with(&format!("/{name}")), "round {round}: {path}")
            }
            Err(other) => panic!("round {round}: {other}"),
        }
        std::fs::write(&file, &good).unwrap();
    }
}
