//! Model check: random sequences of what raft-rs asks of a store (appends, overwrites of the
//! uncommitted suffix, hard states, applied states, compactions, snapshots from the leader,
//! resets) applied to `MemStore` and `DiskStore`, with reopens in between; the two must agree
//! after every step. Seeded, so a failure names the seed and step that replays it.

mod common;

use common::*;
use muster_core::{MemStore, RaftStore};
use muster_store::DiskStore;
use raft::prelude::{Entry, HardState};
use raft::Storage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEEDS: u64 = 32;
const STEPS_PER_SEED: usize = 80;

fn random_entries(rng: &mut StdRng, first: u64, count: u64, mut term: u64) -> Vec<Entry> {
    (first..first + count)
        .map(|index| {
            term += u64::from(rng.random_bool(0.2));
            let len = rng.random_range(0..64);
            Entry {
                index,
                term,
                data: (0..len)
                    .map(|_| rng.random::<u8>())
                    .collect::<Vec<u8>>()
                    .into(),
                ..Default::default()
            }
        })
        .collect()
}

/// One random step valid for raft, applied to both stores. Returns a description.
fn step(rng: &mut StdRng, mem: &mut MemStore, disk: &mut DiskStore) -> String {
    let c = mem.cache().clone();
    let (commit, compacted, last) = (c.hard_state.commit, c.compacted_index, c.last_index());
    let applied = c.applied.get_metadata().index;
    let hs_term = c.hard_state.term;
    match rng.random_range(0..100) {
        // Append or overwrite the uncommitted suffix, maybe with a new hard state.
        0..=44 => {
            let first = rng.random_range(commit.max(compacted) + 1..=last + 1);
            let prev_term = mem.term(first - 1).unwrap();
            let count = rng.random_range(1..=5);
            let term = prev_term.max(if first <= last { hs_term } else { prev_term });
            let es = random_entries(rng, first, count, term);
            let new_last = first + count - 1;
            // raft-rs persists a hard state with a term at least that of any entry it appends.
            let top_term = es.last().map_or(0, |e| e.term);
            let hs = (top_term > hs_term || rng.random_bool(0.5)).then(|| HardState {
                term: hs_term.max(top_term),
                vote: rng.random_range(0..4),
                commit: rng.random_range(commit..=new_last),
                ..Default::default()
            });
            mem.persist(None, &es, hs.as_ref()).unwrap();
            disk.persist(None, &es, hs.as_ref()).unwrap();
            let verb = if first <= last { "overwrite" } else { "append" };
            format!("{verb} {first}..={new_last} hs={hs:?}")
        }
        // Commit advances or term/vote change alone.
        45..=59 => {
            let hs = hard_state(
                hs_term + u64::from(rng.random_bool(0.3)),
                rng.random_range(0..4),
                rng.random_range(commit..=last),
            );
            mem.persist(None, &[], Some(&hs)).unwrap();
            disk.persist(None, &[], Some(&hs)).unwrap();
            format!("hard state {hs:?}")
        }
        // Apply up to some committed index.
        60..=74 => {
            let index = rng.random_range(applied.max(compacted)..=commit);
            let term = mem.term(index).unwrap();
            let snap = snapshot(index, term, format!("state@{index}").as_bytes());
            mem.save_applied(&snap).unwrap();
            disk.save_applied(&snap).unwrap();
            format!("save applied {index}")
        }
        // Compact up to some applied index.
        75..=86 => {
            let index = rng.random_range(compacted..=applied.max(compacted));
            mem.compact(index).unwrap();
            disk.compact(index).unwrap();
            format!("compact {index}")
        }
        // A snapshot from the leader, maybe with entries after it and a hard state.
        87..=97 => {
            let index = rng.random_range(commit..=last + 10).max(1);
            let term = hs_term.max(c.entries.last().map_or(c.compacted_term, |e| e.term)) + 1;
            let snap = snapshot(index, term, format!("leader@{index}").as_bytes());
            let count = rng.random_range(0..=3);
            let es = random_entries(rng, index + 1, count, term);
            let top_term = es.last().map_or(term, |e| e.term);
            let hs = (top_term > term || rng.random_bool(0.5))
                .then(|| hard_state(top_term, 0, rng.random_range(index..=index + count)));
            mem.persist(Some(&snap), &es, hs.as_ref()).unwrap();
            disk.persist(Some(&snap), &es, hs.as_ref()).unwrap();
            format!("snapshot {index}/{term} + {count} entries, hs={hs:?}")
        }
        _ => {
            mem.reset().unwrap();
            disk.reset().unwrap();
            "reset".to_string()
        }
    }
}

#[test]
fn disk_store_matches_mem_store_across_reopens() {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for seed in 0..SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        let tmp = tempfile::tempdir().unwrap();
        let mut mem = MemStore::new();
        let mut disk = DiskStore::open(tmp.path()).unwrap();
        for i in 0..STEPS_PER_SEED {
            let what = step(&mut rng, &mut mem, &mut disk);
            let kind = what.split(' ').next().unwrap_or_default().to_string();
            *seen.entry(kind).or_default() += 1;
            let ctx = format!("seed {seed} step {i} ({what})");
            assert_same_cache(disk.cache(), mem.cache(), &ctx);
            if rng.random_bool(0.25) {
                drop(disk);
                disk = DiskStore::open(tmp.path()).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
                assert_same_cache(disk.cache(), mem.cache(), &format!("{ctx}, reopened"));
                assert_eq!(storage_answers(&disk), storage_answers(&mem), "{ctx}");
            }
        }
    }
    // The run must have exercised every kind of step, or it proves less than it claims.
    for kind in [
        "append",
        "overwrite",
        "hard",
        "save",
        "compact",
        "snapshot",
        "reset",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) >= 5,
            "too few {kind} steps: {seen:?}"
        );
    }
    eprintln!("steps by kind: {seen:?}");
}
