//! [`Deadline`]: the event loop's tick timer, a kernel timer (`timerfd`) read through the
//! runtime's reactor instead of a `tokio::time::Sleep`.
//!
//! Why not tokio's timer: its wheel keeps a deadline more than a few tens of milliseconds away
//! in a coarser level, and the runtime wakes at the start of that level's slot (64 ms aligned
//! for deadlines under 4 s) to move it down, then sleeps again until the deadline. The leader's
//! probes are 60–80 ms apart, so almost every one crossed such a boundary: about one wake-up a probe
//! that did nothing, 16 a second, each a trip through the scheduler. A timerfd fires once, when
//! it is due; moving it is one `timerfd_settime` and no wake-up.

use std::os::fd::{AsFd as _, AsRawFd, RawFd};
use std::time::Instant;

use anyhow::Context as _;
use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The timerfd as the reactor wants it (`AsRawFd`).
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// One-shot timer on `CLOCK_MONOTONIC` (the clock of [`Instant`]).
pub struct Deadline {
    fd: AsyncFd<Timer>,
    /// Where the kernel timer is set (`None`: never set).
    at: Option<Instant>,
}

impl Deadline {
    /// A timer that is not set. Needs a runtime with IO enabled.
    pub fn new() -> anyhow::Result<Self> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .context("creating the event loop's timer (timerfd_create)")?;
        // SAFETY: the `TimerFd` owns its descriptor until it is dropped with the `AsyncFd`, and
        // `as_raw_fd` always returns that descriptor.
        let fd = unsafe { AsyncFd::register_with_interest(Timer(timer), Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("registering the event loop's timer with the runtime")?;
        Ok(Deadline { fd, at: None })
    }

    /// Where the timer is set, if anywhere.
    pub fn at(&self) -> Option<Instant> {
        self.at
    }

    /// Sets the timer to fire at `at` (at once if that has passed), replacing any earlier
    /// setting.
    pub fn set(&mut self, at: Instant) -> anyhow::Result<()> {
        muster_vip::set_timer_at(&self.fd.get_ref().0, at)
            .context("setting the event loop's timer (timerfd_settime)")?;
        self.at = Some(at);
        Ok(())
    }

    /// Waits until the time the timer is set to has come (forever if it was never set).
    /// Cancel-safe: dropping the future leaves the timer as it is.
    pub async fn wait(&self) -> anyhow::Result<()> {
        loop {
            let Some(at) = self.at else {
                return std::future::pending().await;
            };
            if Instant::now() >= at {
                return Ok(());
            }
            let mut ready = self
                .fd
                .readable()
                .await
                .context("waiting for the event loop's timer")?;
            // Reading clears the expiration count; `WouldBlock` (the readiness was from an
            // earlier setting) clears the reactor's readiness, so the next wait sleeps.
            match ready.try_io(|fd| {
                let mut count = [0u8; 8];
                nix::unistd::read(&fd.get_ref().0, &mut count)
                    .map(drop)
                    .map_err(std::io::Error::from)
            }) {
                // Read: the fd is not readable until the next expiry, so the next wait sleeps
                // at once instead of reading again to find nothing.
                Ok(Ok(())) => ready.clear_ready(),
                Err(_) => {}
                Ok(Err(e)) => return Err(e).context("reading the event loop's timer"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn fires_at_the_time_set_and_not_before() {
        let mut d = Deadline::new().unwrap();
        let start = Instant::now();
        d.set(start + Duration::from_millis(30)).unwrap();
        d.wait().await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_later_setting_replaces_an_earlier_one() {
        let mut d = Deadline::new().unwrap();
        let start = Instant::now();
        d.set(start + Duration::from_millis(5)).unwrap();
        // Let the first setting expire unread, then move the timer further out.
        std::thread::sleep(Duration::from_millis(10));
        d.set(start + Duration::from_millis(60)).unwrap();
        d.wait().await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(60));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_earlier_setting_fires_sooner() {
        let mut d = Deadline::new().unwrap();
        let start = Instant::now();
        d.set(start + Duration::from_secs(10)).unwrap();
        d.set(start + Duration::from_millis(20)).unwrap();
        tokio::time::timeout(Duration::from_secs(2), d.wait())
            .await
            .expect("the earlier setting fired")
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_past_time_fires_at_once_and_waiting_is_cancel_safe() {
        let mut d = Deadline::new().unwrap();
        // Never set: waiting does not end.
        assert!(tokio::time::timeout(Duration::from_millis(20), d.wait())
            .await
            .is_err());
        d.set(Instant::now() - Duration::from_millis(1)).unwrap();
        tokio::time::timeout(Duration::from_millis(500), d.wait())
            .await
            .expect("a past time fires at once")
            .unwrap();
        // A cancelled wait leaves the timer usable.
        d.set(Instant::now() + Duration::from_secs(5)).unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(20), d.wait())
            .await
            .is_err());
        d.set(Instant::now() + Duration::from_millis(10)).unwrap();
        tokio::time::timeout(Duration::from_millis(500), d.wait())
            .await
            .expect("fires after a cancelled wait")
            .unwrap();
    }
}
