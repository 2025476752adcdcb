//! A fast hasher for the simulator's look-up tables keyed by node ids and host indexes.
//!
//! Node ids are random 64-bit numbers and the tables are only ever looked up, never iterated, so
//! nothing about the run depends on the hash; std's SipHash (built against hash flooding from
//! the network) cost a second per 1000-host run in `MembersChanged` and send look-ups alone.

use std::hash::{BuildHasherDefault, Hasher};

/// Multiplies each written word into the state (Fibonacci hashing): well spread for random ids
/// and for small indexes alike.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A `HashMap` over [`IdHasher`].
pub type IdMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<IdHasher>>;
/// A `HashSet` over [`IdHasher`].
pub type IdSet<K> = std::collections::HashSet<K, BuildHasherDefault<IdHasher>>;
