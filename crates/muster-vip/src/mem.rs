//! [`MemVip`]: the in-memory [`VipControl`] for agent-level tests — records every call, can be
//! made to fail, and can lose its address "externally".
//!
//! Clones share one state, so a test keeps a clone while the code under test owns another.
//! There is no background task: the test plays the watcher by calling [`MemVip::watch_tick`],
//! which restores an externally removed address while held, like `NetlinkVip`'s holder task.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{VipError, VipOp};
use crate::VipControl;

/// One recorded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemCall {
    /// Which method.
    pub op: VipOp,
    /// Whether it returned an error.
    pub failed: bool,
}

#[derive(Debug, Default)]
struct MemState {
    present: bool,
    held: bool,
    calls: Vec<MemCall>,
    fail_next: HashMap<VipOp, u32>,
    failing: HashSet<VipOp>,
    restored: u64,
    announce_starts: u64,
}

/// An in-memory VIP. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct MemVip {
    state: Arc<Mutex<MemState>>,
}

impl MemVip {
    /// A VIP that is not held and not present.
    pub fn new() -> Self {
        MemVip::default()
    }

    fn state(&self) -> MutexGuard<'_, MemState> {
        // A panicking test thread must not hide the state from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next `count` calls of `op` fail with [`VipError::Injected`], without effect.
    pub fn fail_next(&self, op: VipOp, count: u32) {
        *self.state().fail_next.entry(op).or_default() += count;
    }

    /// Makes every call of `op` fail (`true`) until called again with `false`.
    pub fn set_failing(&self, op: VipOp, failing: bool) {
        let mut state = self.state();
        if failing {
            state.failing.insert(op);
        } else {
            state.failing.remove(&op);
        }
    }

    /// Something else removed the address from the interface.
    pub fn remove_externally(&self) {
        self.state().present = false;
    }

    /// Something else put the address on the interface (e.g. a crashed predecessor's leftover).
    pub fn add_externally(&self) {
        self.state().present = true;
    }

    /// One pass of the loss watch: if held and the address is missing, re-adds it, restarts the
    /// announcements and counts the restore. Returns whether it restored.
    pub fn watch_tick(&self) -> bool {
        let mut state = self.state();
        if state.held && !state.present {
            state.present = true;
            state.restored += 1;
            state.announce_starts += 1;
            true
        } else {
            false
        }
    }

    /// The calls so far, in order.
    pub fn calls(&self) -> Vec<MemCall> {
        self.state().calls.clone()
    }

    /// Whether the address is on the (imaginary) interface.
    pub fn present(&self) -> bool {
        self.state().present
    }

    /// Whether acquired and not released.
    pub fn is_held(&self) -> bool {
        self.state().held
    }

    /// Restores done by [`MemVip::watch_tick`].
    pub fn restored_count(&self) -> u64 {
        self.state().restored
    }

    /// How often an announcement schedule was started (first acquire, and every restore).
    pub fn announce_starts(&self) -> u64 {
        self.state().announce_starts
    }

    /// Records the call; returns the injected error if this call must fail.
    fn enter(&self, op: VipOp) -> Result<MutexGuard<'_, MemState>, VipError> {
        let mut state = self.state();
        let mut fail = state.failing.contains(&op);
        if let Some(n) = state.fail_next.get_mut(&op) {
            if *n > 0 {
                *n -= 1;
                fail = true;
            }
        }
        state.calls.push(MemCall { op, failed: fail });
        if fail {
            return Err(VipError::Injected { op });
        }
        Ok(state)
    }
}

impl VipControl for MemVip {
    async fn acquire(&mut self) -> Result<(), VipError> {
        let mut state = self.enter(VipOp::Acquire)?;
        state.present = true;
        if !state.held {
            state.held = true;
            state.announce_starts += 1;
        }
        Ok(())
    }

    async fn release(&mut self) -> Result<(), VipError> {
        let mut state = self.enter(VipOp::Release)?;
        state.present = false;
        state.held = false;
        Ok(())
    }

    async fn is_present(&mut self) -> Result<bool, VipError> {
        Ok(self.enter(VipOp::IsPresent)?.present)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn records_calls_and_is_idempotent() {
        let mut vip = MemVip::new();
        let observer = vip.clone();
        block_on(async {
            assert!(!vip.is_present().await.unwrap());
            vip.acquire().await.unwrap();
            vip.acquire().await.unwrap();
            assert!(vip.is_present().await.unwrap());
            vip.release().await.unwrap();
            vip.release().await.unwrap();
            assert!(!vip.is_present().await.unwrap());
        });
        let ops: Vec<VipOp> = observer.calls().iter().map(|c| c.op).collect();
        use VipOp::*;
        assert_eq!(
            ops,
            [IsPresent, Acquire, Acquire, IsPresent, Release, Release, IsPresent]
        );
        assert_eq!(
            observer.announce_starts(),
            1,
            "a second acquire keeps the schedule"
        );
    }

    #[test]
    fn injected_failures_have_no_effect() {
        let mut vip = MemVip::new();
        vip.fail_next(VipOp::Acquire, 1);
        block_on(async {
            let e = vip.acquire().await.unwrap_err();
            assert_eq!(e.to_string(), "injected failure in acquire");
            assert!(!vip.present());
            vip.acquire().await.unwrap();
            vip.set_failing(VipOp::Release, true);
            assert!(vip.release().await.is_err());
            assert!(vip.release().await.is_err());
            assert!(vip.is_held());
            vip.set_failing(VipOp::Release, false);
            vip.release().await.unwrap();
        });
        let failed: Vec<bool> = vip.calls().iter().map(|c| c.failed).collect();
        assert_eq!(failed, [true, false, true, true, false]);
    }

    #[test]
    fn watch_restores_only_while_held() {
        let mut vip = MemVip::new();
        vip.add_externally();
        vip.remove_externally();
        assert!(!vip.watch_tick(), "not held: nothing to restore");
        block_on(vip.acquire()).unwrap();
        vip.remove_externally();
        assert!(!vip.present());
        assert!(vip.watch_tick());
        assert!(vip.present());
        assert!(!vip.watch_tick());
        assert_eq!(vip.restored_count(), 1);
        assert_eq!(vip.announce_starts(), 2);
    }
}
