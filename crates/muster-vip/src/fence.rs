//! [`Fence`]: removes the VIP when the leader's lease ends, whether or not the agent's event loop
//! is running.
//!
//! muster-core tells the shell when its lease ends (`VipAcquire { until_ms }`, `VipRenew`). The
//! core notices the end itself only at its next input; if the event loop stalls (a long fsync, a
//! starved runtime, a paused process resumed late) a new leader elsewhere may already hold the
//! VIP. The fence is a dedicated OS thread with its own single-threaded Tokio runtime and its own
//! [`NetlinkVip`] (its own netlink socket): it sleeps until the armed deadline and, if nobody
//! renewed or disarmed it by then, releases the VIP. The holder task (`session.rs`) asks
//! [`Fence::may_hold`] before it re-adds a removed address, so it never puts back what the fence
//! took away.
//!
//! What it cannot cover: a frozen kernel (a paused VM) runs nothing, the fence included; when the
//! VM resumes, the fence thread is due at once and removes the addresses within milliseconds.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use tracing::{error, warn};

use crate::config::VipConfig;
use crate::error::{Action, VipError};
use crate::{NetlinkVip, VipControl as _};

#[derive(Debug, Default)]
struct State {
    /// The lease end; `None` when disarmed (not holding).
    deadline: Option<Instant>,
    /// Times the fence removed the VIP.
    fired: u64,
    stop: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent (plain fields).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the VIP may be on the interface now: armed and the deadline not reached.
    pub(crate) fn may_hold(&self) -> bool {
        self.lock().deadline.is_some_and(|d| Instant::now() < d)
    }
}

/// The lease fence of one VIP configuration. See the module docs.
#[derive(Debug)]
pub struct Fence {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Fence {
    /// Starts the fence thread for `config`'s interface and addresses. Its sockets belong to
    /// the network namespace of the calling thread.
    pub fn spawn(config: VipConfig) -> Result<Fence, VipError> {
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("muster-vip-fence".into())
            .spawn(move || run(config, thread_shared, ready_tx))
            .map_err(|e| VipError::io(Action::OpenNetlink, e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Fence {
                shared,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(VipError::io(
                Action::OpenNetlink,
                std::io::Error::other("the VIP fence thread ended while starting"),
            )),
        }
    }

    /// Arms the fence (or moves it): the VIP goes at `deadline` unless renewed or disarmed.
    pub fn arm(&self, deadline: Instant) {
        self.shared.lock().deadline = Some(deadline);
        self.shared.wake.notify_all();
    }

    /// Disarms the fence: the caller removes the VIP itself (or never added it).
    pub fn disarm(&self) {
        self.shared.lock().deadline = None;
        self.shared.wake.notify_all();
    }

    /// Whether the VIP may be on the interface now (armed, deadline not reached).
    pub fn may_hold(&self) -> bool {
        self.shared.may_hold()
    }

    /// How many times the fence removed the VIP because its lease ran out.
    pub fn fired(&self) -> u64 {
        self.shared.lock().fired
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

impl Drop for Fence {
    /// Stops the thread. Leaves the addresses as they are.
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The fence thread: waits for an armed deadline to pass, then removes the addresses.
fn run(
    config: VipConfig,
    shared: Arc<Shared>,
    ready: std::sync::mpsc::Sender<Result<(), VipError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(VipError::io(Action::OpenNetlink, e)));
            return;
        }
    };
    // A second `NetlinkVip` of its own (own netlink socket, tasks on this thread's runtime): its
    // `release` is what the fence does when the lease runs out.
    let mut vip = {
        let _entered = runtime.enter();
        match NetlinkVip::new(config) {
            Ok(vip) => vip,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
    };
    let _ = ready.send(Ok(()));
    let mut state = shared.lock();
    loop {
        if state.stop {
            return;
        }
        let Some(deadline) = state.deadline else {
            state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let now = Instant::now();
        if now < deadline {
            state = shared
                .wake
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        // The lease ran out and nobody renewed or disarmed. Keep the lock while removing, so an
        // `arm` racing with this waits and the holder task sees `may_hold() == false` meanwhile.
        state.deadline = None;
        state.fired += 1;
        let late_ms = now.duration_since(deadline).as_millis();
        match runtime.block_on(vip.release()) {
            Ok(()) => warn!(
                interface = %vip.config().interface,
                late_ms,
                "VIP lease ended without a renewal from the agent's event loop: the fence removed the VIP"
            ),
            Err(e) => error!(
                interface = %vip.config().interface,
                error = %e,
                "VIP lease ended and the fence could not remove the VIP"
            ),
        }
    }
}
