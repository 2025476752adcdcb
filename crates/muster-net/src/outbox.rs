//! The bounded queue of encoded frames waiting for one connection's message stream.
//!
//! The behaviour (`messages.rs`, called by the swarm actor) pushes into it without blocking and
//! learns at once whether the frame was taken; the connection handler (`handler.rs`, running in
//! libp2p's connection task) is woken and pops frames as its stream takes them. Sharing the
//! queue this way costs one lock and one wake per message, instead of a trip through the
//! swarm's per-connection command channel.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use futures::task::AtomicWaker;

/// Frames queued for one connection; beyond this new frames are dropped.
pub(crate) const MAX_QUEUED_FRAMES: usize = 256;
/// Frame bytes queued for one connection; beyond this new frames are dropped (a frame is always
/// taken into an empty queue, so a message of `max_message_bytes` fits).
pub(crate) const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;

/// Why [`Outbox::push`] did not take a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue holds [`MAX_QUEUED_FRAMES`] frames or [`MAX_QUEUED_BYTES`] bytes.
    Full,
    /// The connection is closing or its peer was refused.
    Closed,
}

impl PushError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            PushError::Full => "outbound queue full",
            PushError::Closed => "connection closing",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    closed: bool,
}

/// See the module doc.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    waker: AtomicWaker,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; recover the data if one ever did.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `frame` and wakes the handler.
    pub(crate) fn push(&self, frame: Vec<u8>) -> Result<(), PushError> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(PushError::Closed);
            }
            let full = state.frames.len() >= MAX_QUEUED_FRAMES
                || (!state.frames.is_empty() && state.bytes + frame.len() > MAX_QUEUED_BYTES);
            if full {
                return Err(PushError::Full);
            }
            state.bytes += frame.len();
            state.frames.push_back(frame);
        }
        self.waker.wake();
        Ok(())
    }

    /// The oldest queued frame. Registers `waker` to be woken by the next push or close, so a
    /// `None` here is always followed by a wake-up when there is work.
    pub(crate) fn pop(&self, waker: &Waker) -> Option<Vec<u8>> {
        self.waker.register(waker);
        let mut state = self.lock();
        let frame = state.frames.pop_front()?;
        state.bytes -= frame.len();
        Some(frame)
    }

    /// Drops every queued frame and returns how many there were.
    pub(crate) fn clear(&self) -> usize {
        let mut state = self.lock();
        state.bytes = 0;
        std::mem::take(&mut state.frames).len()
    }

    /// Refuses all further frames, drops the queued ones (returning how many) and wakes the
    /// handler so it stops its streams.
    pub(crate) fn close(&self) -> usize {
        let dropped = {
            let mut state = self.lock();
            state.closed = true;
            state.bytes = 0;
            std::mem::take(&mut state.frames).len()
        };
        self.waker.wake();
        dropped
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;

    #[test]
    fn bounded_by_count_and_bytes_and_fifo() {
        let outbox = Outbox::default();
        for i in 0..MAX_QUEUED_FRAMES {
            assert_eq!(outbox.push(vec![i as u8]), Ok(()));
        }
        assert_eq!(outbox.push(vec![0]), Err(PushError::Full));
        let waker = noop_waker();
        assert_eq!(outbox.pop(&waker), Some(vec![0]));
        assert_eq!(outbox.pop(&waker), Some(vec![1]));
        assert_eq!(outbox.clear(), MAX_QUEUED_FRAMES - 2);
        assert_eq!(outbox.pop(&waker), None);

        // A huge frame is taken into an empty queue; nothing more fits beside it.
        assert_eq!(outbox.push(vec![0; MAX_QUEUED_BYTES + 1]), Ok(()));
        assert_eq!(outbox.push(vec![0]), Err(PushError::Full));
        assert!(outbox.pop(&waker).is_some());
        assert_eq!(outbox.push(vec![0; MAX_QUEUED_BYTES / 2]), Ok(()));
        assert_eq!(outbox.push(vec![0; MAX_QUEUED_BYTES / 2]), Ok(()));
        assert_eq!(outbox.push(vec![0]), Err(PushError::Full));
    }

    #[test]
    fn closed_outbox_refuses_and_reports_what_it_dropped() {
        let outbox = Outbox::default();
        outbox.push(vec![1]).expect("open");
        outbox.push(vec![2]).expect("open");
        assert_eq!(outbox.close(), 2);
        assert!(outbox.is_closed());
        assert_eq!(outbox.push(vec![3]), Err(PushError::Closed));
        assert_eq!(outbox.pop(&noop_waker()), None);
    }
}
