//! Behaviour of `DiskStore` a user relies on: what is persisted comes back after a reopen,
//! exactly as `MemStore` would hold it, and the log stays bounded.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use muster_core::{MemStore, RaftStore, StoreError};
use muster_store::DiskStore;
use raft::Storage;

enum Op {
    Persist(Vec<raft::prelude::Entry>, Option<raft::prelude::HardState>),
    SaveApplied(raft::prelude::Snapshot),
    Compact(u64),
}

fn apply(s: &mut impl RaftStore, op: Op) {
    match op {
        Op::Persist(es, hs) => s.persist(None, &es, hs.as_ref()).unwrap(),
        Op::SaveApplied(snap) => s.save_applied(&snap).unwrap(),
        Op::Compact(i) => s.compact(i).unwrap(),
    }
}

#[test]
fn fresh_store_is_created_private_and_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data/raft");
    let store = DiskStore::open(&dir).unwrap();
    assert!(store.is_empty());
    assert_eq!(store.dir(), dir);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "store directory must be private");
    drop(store);
    let mut store = DiskStore::open(&dir).unwrap();
    assert!(store.is_empty(), "reopening an empty store keeps it empty");
    store
        .persist(None, &[], Some(&hard_state(1, 1, 0)))
        .unwrap();
    assert!(!store.is_empty());
}

#[test]
fn round_trip_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = DiskStore::open(tmp.path()).unwrap();
    let mut mem = MemStore::new();
    let mut ents = entries(1..=4, 1);
    ents.extend(entries(5..=12, 2));
    let hs = hard_state(2, 3, 10);
    let applied = snapshot(9, 2, b"cluster state at 9");
    let run = |s: &mut dyn FnMut(Op)| {
        s(Op::Persist(ents.clone(), Some(hs.clone())));
        s(Op::SaveApplied(applied.clone()));
        s(Op::Compact(6));
        s(Op::Persist(entries(13..=14, 2), None));
    };
    run(&mut |op| apply(&mut store, op));
    run(&mut |op| apply(&mut mem, op));
    assert_same_cache(store.cache(), mem.cache(), "before reopen");
    let answers = storage_answers(&store);
    assert_eq!(answers, storage_answers(&mem));
    drop(store);

    let store = DiskStore::open(tmp.path()).unwrap();
    assert_same_cache(store.cache(), mem.cache(), "after reopen");
    assert_eq!(storage_answers(&store), answers);
    assert_eq!(store.first_index().unwrap(), 7);
    assert_eq!(store.last_index().unwrap(), 14);
    assert_eq!(
        store.term(6).unwrap(),
        2,
        "term of the compaction point is kept"
    );
    assert_eq!(store.applied(), &applied);
    assert_eq!(store.initial_state().unwrap().hard_state, hs);
}

#[test]
fn compaction_bounds_the_log_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = DiskStore::open(tmp.path()).unwrap();
    let log = tmp.path().join("log");
    store
        .persist(None, &entries(1..=200, 1), Some(&hard_state(1, 1, 200)))
        .unwrap();
    let full = std::fs::metadata(&log).unwrap().len();
    store.save_applied(&snapshot(200, 1, b"s")).unwrap();
    store.compact(195).unwrap();
    let compacted = std::fs::metadata(&log).unwrap().len();
    assert!(
        compacted * 20 < full,
        "log is {compacted} bytes after compaction, {full} before"
    );
    drop(store);
    let store = DiskStore::open(tmp.path()).unwrap();
    assert_eq!(store.first_index().unwrap(), 196);
    assert_eq!(store.cache().entries, entries(196..=200, 1));
}

#[test]
fn overwritten_suffix_stays_overwritten_after_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = DiskStore::open(tmp.path()).unwrap();
    store
        .persist(None, &entries(1..=5, 1), Some(&hard_state(1, 0, 2)))
        .unwrap();
    store
        .persist(None, &[entry(3, 2)], Some(&hard_state(2, 0, 2)))
        .unwrap();
    assert_eq!(store.last_index().unwrap(), 3);
    drop(store);

    let mut store = DiskStore::open(tmp.path()).unwrap();
    assert_eq!(store.last_index().unwrap(), 3);
    assert_eq!(store.term(3).unwrap(), 2);
    assert_eq!(store.term(2).unwrap(), 1);
    let mut want = entries(1..=2, 1);
    want.push(entry(3, 2));
    assert_eq!(store.cache().entries, want);
    // The log keeps working after the cut: append on top, reopen again.
    store.persist(None, &entries(4..=6, 2), None).unwrap();
    drop(store);
    let store = DiskStore::open(tmp.path()).unwrap();
    assert_eq!(store.last_index().unwrap(), 6);
    assert_eq!(store.term(4).unwrap(), 2);
}

#[test]
fn snapshot_from_leader_replaces_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = DiskStore::open(tmp.path()).unwrap();
    store
        .persist(None, &entries(1..=5, 1), Some(&hard_state(1, 1, 3)))
        .unwrap();
    store.save_applied(&snapshot(2, 1, b"old")).unwrap();
    let snap = snapshot(20, 4, b"leader state at 20");
    store
        .persist(Some(&snap), &entries(21..=22, 4), None)
        .unwrap();
    let mut mem = MemStore::new();
    mem.persist(None, &entries(1..=5, 1), Some(&hard_state(1, 1, 3)))
        .unwrap();
    mem.save_applied(&snapshot(2, 1, b"old")).unwrap();
    mem.persist(Some(&snap), &entries(21..=22, 4), None)
        .unwrap();
    assert_same_cache(store.cache(), mem.cache(), "after install");
    drop(store);

    let store = DiskStore::open(tmp.path()).unwrap();
    assert_same_cache(store.cache(), mem.cache(), "after reopen");
    assert_eq!(store.applied(), &snap);
    assert_eq!(store.first_index().unwrap(), 21);
    assert_eq!(store.last_index().unwrap(), 22);
    assert_eq!(store.term(20).unwrap(), 4);
    let hs = store.initial_state().unwrap().hard_state;
    assert_eq!(
        (hs.term, hs.commit),
        (4, 20),
        "hard state raised to the snapshot"
    );
    assert_eq!(store.snapshot(20, 0).unwrap(), snap);
    assert!(store
        .entries(5, 6, None, raft::GetEntriesContext::empty(false))
        .is_err());
}

#[test]
fn torn_tail_is_cut_with_a_warning_and_the_log_keeps_working() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let mut store = DiskStore::open(tmp.path()).unwrap();
    store
        .persist(None, &entries(1..=5, 1), Some(&hard_state(1, 1, 3)))
        .unwrap();
    drop(store);
    let clean = std::fs::read(&log).unwrap();
    // Half of a record for index 6, as a crash during its append would leave: copy the last
    // record (index 5) and keep only its first half.
    let last_record = 16 + protobuf::Message::compute_size(&entry(5, 1)) as usize;
    let half = clean[clean.len() - last_record..clean.len() - last_record / 2].to_vec();
    let mut torn = clean.clone();
    torn.extend_from_slice(&half);
    std::fs::write(&log, &torn).unwrap();

    let (store, logs) = with_captured_logs(|| DiskStore::open(tmp.path()));
    let mut store = store.unwrap();
    assert!(
        logs.contains("WARN") && logs.contains("torn"),
        "no warning logged:\n{logs}"
    );
    assert_eq!(store.last_index().unwrap(), 5);
    assert_eq!(
        std::fs::read(&log).unwrap(),
        clean,
        "the partial record is gone from the file"
    );

    store
        .persist(None, &entries(6..=7, 1), Some(&hard_state(1, 1, 7)))
        .unwrap();
    drop(store);
    let store = DiskStore::open(tmp.path()).unwrap();
    assert_eq!(store.last_index().unwrap(), 7);
    assert_eq!(store.cache().entries, entries(1..=7, 1));
}

#[test]
fn writes_raft_never_makes_are_refused_without_changing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = DiskStore::open(tmp.path()).unwrap();
    store
        .persist(None, &entries(1..=5, 2), Some(&hard_state(2, 1, 3)))
        .unwrap();
    store.save_applied(&snapshot(3, 2, b"x")).unwrap();
    let refused: Vec<(&str, Result<(), StoreError>)> = vec![
        (
            "overwrite committed",
            store.persist(None, &[entry(3, 3)], None),
        ),
        ("gap", store.persist(None, &[entry(7, 2)], None)),
        (
            "not contiguous",
            store.persist(None, &[entry(6, 2), entry(8, 2)], None),
        ),
        ("term going down", store.persist(None, &[entry(6, 1)], None)),
        (
            "commit past log",
            store.persist(None, &[], Some(&hard_state(2, 1, 6))),
        ),
        (
            "snapshot behind commit",
            store.persist(Some(&snapshot(2, 2, b"")), &[], None),
        ),
        (
            "applied backwards",
            store.save_applied(&snapshot(2, 2, b"")),
        ),
        ("compact past applied", store.compact(4)),
    ];
    for (what, result) in refused {
        assert!(
            matches!(result, Err(StoreError::Invalid(_))),
            "{what}: {result:?}"
        );
    }
    assert_eq!(store.cache().entries, entries(1..=5, 2));
    store.persist(None, &[entry(6, 2)], None).unwrap();
    drop(store);
    let store = DiskStore::open(tmp.path()).unwrap();
    assert_eq!(store.last_index().unwrap(), 6);
    assert_eq!(store.applied(), &snapshot(3, 2, b"x"));
}

#[test]
fn reset_forgets_everything_durably() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = DiskStore::open(tmp.path()).unwrap();
    store
        .persist(
            Some(&snapshot(4, 2, b"old cluster")),
            &entries(5..=6, 2),
            Some(&hard_state(3, 2, 5)),
        )
        .unwrap();
    store.reset().unwrap();
    assert!(store.is_empty());
    store
        .persist(
            Some(&snapshot(1, 1, b"new cluster")),
            &[],
            Some(&hard_state(1, 0, 1)),
        )
        .unwrap();
    drop(store);
    let store = DiskStore::open(tmp.path()).unwrap();
    assert_eq!(store.applied(), &snapshot(1, 1, b"new cluster"));
    assert_eq!(store.last_index().unwrap(), 1);
    assert_eq!(
        store.initial_state().unwrap().hard_state,
        hard_state(1, 0, 1)
    );
    drop(store);
    let mut store = DiskStore::open(tmp.path()).unwrap();
    store.reset().unwrap();
    drop(store);
    assert!(DiskStore::open(tmp.path()).unwrap().is_empty());
}

#[test]
fn a_second_opener_is_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DiskStore::open(tmp.path()).unwrap();
    let err = DiskStore::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("lock"), "{err}");
    drop(store);
    DiskStore::open(tmp.path()).unwrap();
}

#[test]
fn destroy_removes_only_the_store_and_refuses_while_it_is_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    let mut store = DiskStore::open(&dir).unwrap();
    store
        .persist(None, &entries(1..=3, 1), Some(&hard_state(1, 1, 3)))
        .unwrap();
    store.save_applied(&snapshot(2, 1, b"state")).unwrap();
    let e = muster_store::destroy(&dir).unwrap_err().to_string();
    assert!(e.contains("another process"), "{e}");
    drop(store);

    let listed = muster_store::store_files(&dir);
    let names: Vec<_> = listed
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for name in ["log", "hardstate", "applied", "lock"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} not listed: {names:?}"
        );
    }
    let removed = muster_store::destroy(&dir).unwrap();
    assert_eq!(removed.last(), Some(&dir), "{removed:?}");
    assert!(!dir.exists());
    assert!(
        muster_store::destroy(&dir).unwrap().is_empty(),
        "a second destroy"
    );

    // Something that is not the store's stays, and so does its directory.
    drop(DiskStore::open(&dir).unwrap());
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    let removed = muster_store::destroy(&dir).unwrap();
    assert!(!removed.contains(&dir));
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["notes.txt"]);
    assert!(
        DiskStore::open(&dir).unwrap().is_empty(),
        "a fresh store opens there"
    );
}
