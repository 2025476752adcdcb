//! The virtual network: who is connected to whom, which paths are cut (partitions, one-way cuts,
//! downed links), and what happens to each message (loss, duplication, delay, reordering).
//!
//! It keeps no clock and schedules nothing: the simulator asks it questions and draws from the
//! run's one RNG through it. Connections are symmetric (a TCP connection); a path can be blocked
//! in one direction only (a one-way cut), in which case the connection survives until the
//! simulator's `disconnect_after_ms` timeout notices it. Hosts dial only addresses in their
//! address book (found by discovery or learned from the replicated membership).

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::scenario::NetworkSpec;

/// A fixed-size set of host indexes.
#[derive(Debug, Clone, Default)]
pub struct BitSet(Vec<u64>);

impl BitSet {
    /// An empty set for `n` hosts.
    pub fn new(n: usize) -> Self {
        BitSet(vec![0; n.div_ceil(64)])
    }
    /// Whether `i` is in.
    pub fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    /// Adds or removes `i`.
    pub fn set(&mut self, i: usize, on: bool) {
        if on {
            self.0[i / 64] |= 1 << (i % 64);
        } else {
            self.0[i / 64] &= !(1 << (i % 64));
        }
    }
    /// Removes everything.
    pub fn clear(&mut self) {
        self.0.iter_mut().for_each(|w| *w = 0);
    }
    /// Members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, bits)| {
            (0..64)
                .filter(move |b| bits & (1u64 << b) != 0)
                .map(move |b| w * 64 + b)
        })
    }
    /// Number of members.
    pub fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// Message counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NetStats {
    /// Sends the core asked for.
    pub sent: u64,
    /// Delivered to a node.
    pub delivered: u64,
    /// Lost to random loss.
    pub lost: u64,
    /// Dropped: path cut, connection gone, host down or no address to dial.
    pub dropped: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Successful discovery answers.
    pub discovered: u64,
    /// Connections opened.
    pub connects: u64,
    /// Crafted messages the adversaries sent.
    pub adversary_sent: u64,
    /// Connections closed.
    pub disconnects: u64,
}

/// The network state.
#[derive(Debug)]
pub struct Net {
    /// The scenario's network (what `heal` returns to).
    pub base: NetworkSpec,
    /// Current global settings.
    pub spec: NetworkSpec,
    group: Vec<u32>,
    cuts: BTreeSet<(u32, u32)>,
    link_loss: BTreeMap<(u32, u32), f64>,
    connected: Vec<BitSet>,
    book: Vec<BitSet>,
    /// Counters.
    pub stats: NetStats,
}

impl Net {
    /// A network of `n` hosts, nobody connected.
    pub fn new(n: usize, spec: NetworkSpec) -> Self {
        Net {
            base: spec.clone(),
            spec,
            group: vec![0; n],
            cuts: BTreeSet::new(),
            link_loss: BTreeMap::new(),
            connected: vec![BitSet::new(n); n],
            book: vec![BitSet::new(n); n],
            stats: NetStats::default(),
        }
    }

    /// Whether packets from `a` to `b` are dropped by a partition or cut.
    pub fn blocked(&self, a: usize, b: usize) -> bool {
        self.group[a] != self.group[b] || self.cuts.contains(&(a as u32, b as u32))
    }

    /// Whether a connection between `a` and `b` can be opened (both directions pass).
    pub fn path_ok(&self, a: usize, b: usize) -> bool {
        !self.blocked(a, b) && !self.blocked(b, a)
    }

    /// Whether `a` and `b` have a connection.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.connected[a].get(b)
    }

    /// The peers `a` is connected to.
    pub fn peers(&self, a: usize) -> impl Iterator<Item = usize> + '_ {
        self.connected[a].iter()
    }

    /// Records a connection.
    pub fn connect(&mut self, a: usize, b: usize) {
        self.connected[a].set(b, true);
        self.connected[b].set(a, true);
        self.book[a].set(b, true);
        self.book[b].set(a, true);
        self.stats.connects += 1;
    }

    /// Records a closed connection.
    pub fn disconnect(&mut self, a: usize, b: usize) {
        self.connected[a].set(b, false);
        self.connected[b].set(a, false);
        self.stats.disconnects += 1;
    }

    /// Whether `a` knows an address for `b`.
    pub fn knows(&self, a: usize, b: usize) -> bool {
        self.book[a].get(b)
    }

    /// Records that `a` knows `b`'s address.
    pub fn learn(&mut self, a: usize, b: usize) {
        self.book[a].set(b, true);
    }

    /// A host lost its memory (crash): its address book is empty again.
    pub fn forget_all(&mut self, a: usize) {
        self.book[a].clear();
    }

    /// Puts hosts into partition groups (`group[i]`); equal groups talk.
    pub fn set_groups(&mut self, group: Vec<u32>) {
        self.group = group;
    }

    /// Blocks (or unblocks) `a → b`.
    pub fn set_cut(&mut self, a: usize, b: usize, cut: bool) {
        if cut {
            self.cuts.insert((a as u32, b as u32));
        } else {
            self.cuts.remove(&(a as u32, b as u32));
        }
    }

    /// Sets the loss of `a → b`.
    pub fn set_link_loss(&mut self, a: usize, b: usize, pct: f64) {
        self.link_loss.insert((a as u32, b as u32), pct);
    }

    /// Back to the scenario's network: no partitions, cuts or link settings.
    pub fn heal(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
        self.cuts.clear();
        self.link_loss.clear();
        let discovery_loss = self.spec.discovery_loss_pct;
        self.spec = self.base.clone();
        // Discovery loss is the environment (multicast on this LAN), not a healable fault.
        self.spec.discovery_loss_pct = discovery_loss;
    }

    /// Decides the fate of one message `a → b`: the delays of the copies that will arrive
    /// (none if lost, two if duplicated).
    pub fn fate(&mut self, rng: &mut ChaCha8Rng, a: usize, b: usize) -> ([u64; 2], usize) {
        let loss = self
            .link_loss
            .get(&(a as u32, b as u32))
            .copied()
            .unwrap_or(self.spec.loss_pct);
        if loss > 0.0 && rng.random::<f64>() * 100.0 < loss {
            self.stats.lost += 1;
            return ([0, 0], 0);
        }
        let mut delays = [self.delay(rng), 0];
        let mut copies = 1;
        if self.spec.dup_pct > 0.0 && rng.random::<f64>() * 100.0 < self.spec.dup_pct {
            delays[1] = self.delay(rng);
            copies = 2;
            self.stats.duplicated += 1;
        }
        (delays, copies)
    }

    /// One message delay, with the chance of being held back (reordered).
    pub fn delay(&self, rng: &mut ChaCha8Rng) -> u64 {
        let [lo, hi] = self.spec.delay_ms;
        let mut d = rng.random_range(lo..=hi);
        if self.spec.reorder_pct > 0.0 && rng.random::<f64>() * 100.0 < self.spec.reorder_pct {
            d += rng.random_range(1..=self.spec.reorder_extra_ms.max(1));
        }
        d
    }

    /// Whether one discovery answer gets through.
    pub fn discovery_ok(&self, rng: &mut ChaCha8Rng) -> bool {
        let p = self.spec.discovery_loss_pct;
        p <= 0.0 || rng.random::<f64>() * 100.0 >= p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn bitset_basics() {
        let mut b = BitSet::new(130);
        b.set(0, true);
        b.set(129, true);
        b.set(64, true);
        b.set(64, false);
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![0, 129]);
        assert_eq!(b.count(), 2);
    }

    #[test]
    fn one_way_cut_blocks_one_direction_and_connections() {
        let mut n = Net::new(3, NetworkSpec::default());
        n.set_cut(0, 1, true);
        assert!(n.blocked(0, 1) && !n.blocked(1, 0));
        assert!(!n.path_ok(1, 0));
        n.set_groups(vec![0, 0, 1]);
        assert!(n.blocked(2, 0));
        n.heal();
        assert!(n.path_ok(0, 1) && n.path_ok(0, 2));
    }

    #[test]
    fn full_loss_loses_everything() {
        let mut n = Net::new(2, NetworkSpec::default());
        n.set_link_loss(0, 1, 100.0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(n.fate(&mut rng, 0, 1).1, 0);
        assert_eq!(n.fate(&mut rng, 1, 0).1, 1);
    }
}
