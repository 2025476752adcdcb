//! The event queue: a binary heap of `(time, seq)` keys over a slab of payloads.
//!
//! `seq` is a counter assigned at push, so events due at the same virtual millisecond pop in the
//! order they were scheduled — the queue is deterministic. Only the 24-byte keys move inside the
//! heap; payloads (which carry whole messages) stay put in the slab and their slots are reused.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A min-queue of events ordered by `(time, seq)`.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slab: Vec<Option<E>>,
    free: Vec<u32>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            seq: 0,
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
        self.seq += 1;
        self.heap.push(Reverse((at_ms, self.seq, slot)));
    }

    /// The time of the next event.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Removes the next event.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        let Reverse((t, _, slot)) = self.heap.pop()?;
        let e = self.slab[slot as usize].take()?;
        self.free.push(slot);
        Some((t, e))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
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
}
