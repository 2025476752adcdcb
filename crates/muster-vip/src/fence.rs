//! [`Fence`]: removes the VIP when the leader's lease ends, whether or not the agent's event loop
//! is running.
//!
//! muster-core tells the shell when its lease ends (`EndpointAcquire { until_ms }`, `EndpointRenew`). The
//! core notices the end itself only at its next input; if the event loop stalls (a long fsync, a
//! starved runtime, a paused process resumed late) a new leader elsewhere may already hold the
//! VIP. The fence is a dedicated OS thread with its own single-threaded Tokio runtime and its own
//! [`NetlinkVip`] (its own netlink socket): it sleeps until the armed deadline and, if nobody
//! renewed or disarmed it by then, releases the VIP. The holder task (`session.rs`) asks
//! [`Fence::may_hold`] before it re-adds a removed address, so it never puts back what the fence
//! took away.
//!
//! [`FenceReleaser::release_now`] is the synchronous path for a process about to die (the agent's
//! panic hook): it asks the fence thread to remove the addresses at once and waits, bounded, for
//! its answer over a std channel. It needs nothing from the caller's runtime — which may be the
//! thing that panicked. If the fence thread cannot answer (it is the thread that panicked, or it
//! is gone or stuck), a one-shot thread with its own runtime and netlink socket removes the
//! addresses instead, within the same kind of bound. Either way it ends the fence's holding for good: `arm` is ignored afterwards and
//! [`Fence::may_hold`] stays false, so neither a renewal nor the holder's watcher puts the VIP
//! back while the process winds down.
//!
//! What it cannot cover: a frozen kernel (a paused VM) runs nothing, the fence included; when the
//! VM resumes, the fence thread is due at once and removes the addresses within milliseconds.

use std::os::fd::AsFd as _;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::time::{TimeSpec, TimeValLike as _};
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

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
    /// Set by [`FenceReleaser::release_now`]: the VIP goes at once and is never held again.
    released_for_good: bool,
    /// A pending `release_now`, answered by the thread when it has removed the addresses.
    release_request: Option<Sender<Result<(), VipError>>>,
}

/// Sets one-shot `timer` (on `CLOCK_MONOTONIC`, the clock of [`Instant`]) to fire at `at`, at
/// once if that has passed, replacing its earlier setting. The fence's timer and the agent's
/// event-loop timer both go through here.
pub fn set_timer_at(timer: &TimerFd, at: Instant) -> nix::Result<()> {
    // A zero value would disarm the timer: the earliest it can be asked to fire is 1 ns.
    let after = at
        .saturating_duration_since(Instant::now())
        .max(Duration::from_nanos(1));
    let spec = TimeSpec::nanoseconds(i64::try_from(after.as_nanos()).unwrap_or(i64::MAX));
    timer.set(Expiration::OneShot(spec), TimerSetTimeFlags::empty())
}

/// The longest the fence thread sleeps while armed without looking at its state, whatever its
/// timer says: a backstop, should setting the timer ever fail.
const FENCE_BACKSTOP: Duration = Duration::from_secs(1);
/// Likewise while disarmed (nothing to remove then; a lost wake-up would only delay a stop).
const FENCE_BACKSTOP_DISARMED: Duration = Duration::from_secs(30);

/// The state, and the kernel timer (`timerfd`, `CLOCK_MONOTONIC` like [`Instant`]) the fence
/// thread sleeps on. Whoever changes the state sets the timer under the state's lock: to the
/// deadline when arming (no wake-up: the thread wakes when the timer is due, not at every
/// renewal as it did on a condition variable with a timeout), and to "now" when the thread
/// must look at once (a stop, a `release_now`, a sooner deadline is just a timer setting).
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    timer: TimerFd,
}

impl Shared {
    fn new() -> std::io::Result<Shared> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        Ok(Shared {
            state: Mutex::new(State::default()),
            timer,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent (plain fields).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the thread's timer to `at` (at once if passed). Call with the state locked, so a
    /// later setting never undoes a wake-up the state asks for. A failure is logged; the thread
    /// still looks at its state every [`FENCE_BACKSTOP`].
    fn wake_at(&self, _locked: &MutexGuard<'_, State>, at: Instant) {
        if let Err(e) = set_timer_at(&self.timer, at) {
            error!(error = %e, "cannot set the VIP fence's timer; it checks the lease every second instead");
        }
    }

    /// Wakes the thread now (with the state locked).
    fn wake_now(&self, locked: &MutexGuard<'_, State>) {
        self.wake_at(locked, Instant::now());
    }

    /// Sleeps until the timer is due, or `backstop` at most (call without the lock).
    fn sleep(&self, backstop: Duration) {
        let mut fds = [PollFd::new(self.timer.as_fd(), PollFlags::POLLIN)];
        let backstop = PollTimeout::try_from(backstop).unwrap_or(PollTimeout::MAX);
        // EINTR and a backstop timeout are both "look at the state again".
        if let Ok(n) = nix::poll::poll(&mut fds, backstop) {
            if n > 0 {
                // Clears the expiration; nothing to read (a setting moved it on) is fine too.
                let mut count = [0u8; 8];
                let _ = nix::unistd::read(&self.timer, &mut count);
            }
        }
    }

    /// Whether the VIP may be on the interface now: armed and the deadline not reached.
    pub(crate) fn may_hold(&self) -> bool {
        let state = self.lock();
        !state.released_for_good && state.deadline.is_some_and(|d| Instant::now() < d)
    }
}

/// A handle that can make the fence thread remove the VIP at once, from any thread; cheap to
/// clone, `Send + Sync`, and outlives nothing: once the [`Fence`] is dropped it fails at once.
#[derive(Debug, Clone)]
pub struct FenceReleaser {
    shared: Arc<Shared>,
    /// For the one-shot fallback.
    config: VipConfig,
    fence_thread: std::thread::ThreadId,
}

impl FenceReleaser {
    /// Removes the VIP now and waits up to `wait` for the fence thread to finish, then, if it did
    /// not, up to `wait` more for a one-shot thread; from then on the fence never lets the VIP be
    /// held again (see the module docs). Blocks the calling thread and uses no async runtime of
    /// the caller's. An error says neither path removed the addresses.
    pub fn release_now(&self, wait: Duration) -> Result<(), VipError> {
        let through_fence = if std::thread::current().id() == self.fence_thread {
            self.shared.lock().released_for_good = true;
            Err(VipError::FenceUnavailable {
                why: "called on the fence thread itself",
            })
        } else {
            self.through_fence(wait)
        };
        match through_fence {
            Ok(()) => Ok(()),
            Err(fence_error) => {
                warn!(error = %fence_error, "removing the VIP from a one-shot thread instead");
                release_from_new_thread(self.config.clone(), wait)
            }
        }
    }

    fn through_fence(&self, wait: Duration) -> Result<(), VipError> {
        let (reply, answer): (_, Receiver<Result<(), VipError>>) = std::sync::mpsc::channel();
        {
            let mut state = self.shared.lock();
            state.released_for_good = true;
            state.deadline = None;
            if state.stop {
                return Err(VipError::FenceUnavailable {
                    why: "the fence thread has stopped",
                });
            }
            state.release_request = Some(reply);
            self.shared.wake_now(&state);
        }
        match answer.recv_timeout(wait) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(VipError::FenceUnavailable {
                why: "the fence thread did not answer in time",
            }),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(VipError::FenceUnavailable {
                    why: "the fence thread ended before answering",
                })
            }
        }
    }
}

/// The lease fence of one VIP configuration. See the module docs.
#[derive(Debug)]
pub struct Fence {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    thread_id: std::thread::ThreadId,
    config: VipConfig,
}

impl Fence {
    /// Starts the fence thread for `config`'s interface and addresses. Its sockets belong to
    /// the network namespace of the calling thread.
    pub fn spawn(config: VipConfig) -> Result<Fence, VipError> {
        let shared = Arc::new(Shared::new().map_err(|e| VipError::io(Action::OpenNetlink, e))?);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let thread_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("muster-vip-fence".into())
            .spawn(move || run(thread_config, thread_shared, ready_tx))
            .map_err(|e| VipError::io(Action::OpenNetlink, e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Fence {
                shared,
                thread_id: thread.thread().id(),
                thread: Some(thread),
                config,
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
    /// Ignored after [`FenceReleaser::release_now`].
    ///
    /// Moving the deadline sets the fence thread's timer and does not wake it (a leader renews
    /// at every probe; see [`Shared`]).
    pub fn arm(&self, deadline: Instant) {
        let mut state = self.shared.lock();
        if state.released_for_good {
            return;
        }
        state.deadline = Some(deadline);
        self.shared.wake_at(&state, deadline);
    }

    /// A handle for [`FenceReleaser::release_now`] (the agent's panic hook keeps one).
    pub fn releaser(&self) -> FenceReleaser {
        FenceReleaser {
            shared: self.shared.clone(),
            config: self.config.clone(),
            fence_thread: self.thread_id,
        }
    }

    /// Disarms the fence: the caller removes the VIP itself (or never added it).
    pub fn disarm(&self) {
        // The thread wakes at the timer's last setting, finds nothing armed and sleeps on.
        self.shared.lock().deadline = None;
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
        {
            let mut state = self.shared.lock();
            state.stop = true;
            self.shared.wake_now(&state);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Removes `config`'s addresses from a new thread with its own current-thread runtime and netlink
/// socket (in the caller's network namespace), waiting up to `wait` for it.
fn release_from_new_thread(config: VipConfig, wait: Duration) -> Result<(), VipError> {
    let (reply, answer) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("muster-vip-release".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| VipError::io(Action::OpenNetlink, e))
                .and_then(|runtime| {
                    runtime.block_on(async move { NetlinkVip::new(config)?.release().await })
                });
            let _ = reply.send(result);
        })
        .map_err(|e| VipError::io(Action::OpenNetlink, e))?;
    answer
        .recv_timeout(wait)
        .unwrap_or(Err(VipError::FenceUnavailable {
            why: "the one-shot release thread did not answer in time",
        }))
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
        if let Some(reply) = state.release_request.take() {
            // Keep the lock while removing, as below.
            let result = runtime.block_on(vip.release());
            match &result {
                Ok(()) => warn!(
                    interface = %vip.config().interface,
                    "the VIP was removed at once and for good (the agent is about to exit)"
                ),
                Err(e) => error!(
                    interface = %vip.config().interface,
                    error = %e,
                    "asked to remove the VIP at once, and could not"
                ),
            }
            let _ = reply.send(result);
            continue;
        }
        if state.stop {
            return;
        }
        let now = Instant::now();
        let deadline = match state.deadline {
            Some(deadline) if now >= deadline => deadline,
            armed => {
                // Disarmed, or not due: the timer is set to whatever needs a look next.
                let backstop = if armed.is_some() {
                    FENCE_BACKSTOP
                } else {
                    FENCE_BACKSTOP_DISARMED
                };
                drop(state);
                shared.sleep(backstop);
                state = shared.lock();
                continue;
            }
        };
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
