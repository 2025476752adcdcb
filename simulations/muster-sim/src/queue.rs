//! The event queue: events bucketed by virtual millisecond, over a slab of payloads.
//!
//! Events due at the same millisecond pop in the order they were scheduled (each bucket is a
//! FIFO), so the queue is deterministic: the order is exactly that of a heap keyed by
//! `(time, push counter)`. Times are whole milliseconds and most events are due within a few
//! hundred of them, so the few distinct times waiting sit in a small B-tree and a push or pop
//! costs no sift through a heap of every message in flight. Only slot numbers move; payloads
//! (which carry whole messages) stay put in the slab, and slots and emptied buckets are reused.

use std::collections::{BTreeMap, VecDeque};

/// Emptied buckets kept for reuse.
const SPARE_BUCKETS: usize = 64;

/// A min-queue of events ordered by time, then push order.
#[derive(Debug)]
pub struct EventQueue<E> {
    buckets: BTreeMap<u64, VecDeque<u32>>,
    spare: Vec<VecDeque<u32>>,
    slab: Vec<Option<E>>,
    free: Vec<u32>,
    len: usize,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            buckets: BTreeMap::new(),
            spare: Vec::new(),
            slab: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedules `event` at virtual time `at_ms`.
    pub fn push(&mut self, at_ms: u64, event: E) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = Some(event);
                s
            }
            None => {
                self.slab.push(Some(event));
                (self.slab.len() - 1) as u32
            }
        };
        let spare = &mut self.spare;
        self.buckets
            .entry(at_ms)
            .or_insert_with(|| spare.pop().unwrap_or_default())
            .push_back(slot);
        self.len += 1;
    }

    /// The time of the next event.
    pub fn peek_time(&self) -> Option<u64> {
        self.buckets.first_key_value().map(|(t, _)| *t)
    }

    /// Removes the next event.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        let mut first = self.buckets.first_entry()?;
        let t = *first.key();
        let slot = first.get_mut().pop_front();
        if first.get().is_empty() {
            let bucket = first.remove();
            if self.spare.len() < SPARE_BUCKETS {
                self.spare.push(bucket);
            }
        }
        let slot = slot?;
        self.len -= 1;
        let e = self.slab[slot as usize].take()?;
        self.free.push(slot);
        Some((t, e))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_push_order() {
        let mut q = EventQueue::default();
        q.push(5, "c");
        q.push(1, "a");
        q.push(5, "d");
        q.push(1, "b");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, vec![(1, "a"), (1, "b"), (5, "c"), (5, "d")]);
        q.push(2, "e");
        assert_eq!(q.peek_time(), Some(2));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn same_order_as_a_heap_keyed_by_time_and_push_count() {
        use rand::{Rng, SeedableRng};
        use std::cmp::Reverse;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut q = EventQueue::default();
        let mut heap = std::collections::BinaryHeap::new();
        let (mut now, mut seq) = (0u64, 0u64);
        for _ in 0..20_000 {
            if rng.random_bool(0.55) {
                let at = now + rng.random_range(0..40);
                seq += 1;
                q.push(at, seq);
                heap.push(Reverse((at, seq)));
            } else {
                let want = heap.pop().map(|Reverse((t, s))| (t, s));
                assert_eq!(q.pop(), want);
                now = want.map_or(now, |(t, _)| t);
            }
            assert_eq!(q.len(), heap.len());
        }
    }
}
