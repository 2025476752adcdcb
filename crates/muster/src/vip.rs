//! The agent's side of the floating VIP: carries the core's `VipAcquire` / `VipRenew` /
//! `VipRelease` out to netlink (`muster_vip::NetlinkVip`), arms the lease fence
//! (`muster_vip::Fence`, its own thread) at every lease end the core gives, retries a failed
//! acquire while the core still wants the VIP held, removes a stale VIP left by a crashed run at
//! start, and releases on shutdown.
//!
//! A panic anywhere in the agent releases too: [`Vip::start`] installs a panic hook that has the
//! fence thread remove the addresses at once (`FenceReleaser::release_now`, a std channel with a
//! bounded wait — the event loop may be what panicked), then prints the panic as the default
//! hook does, and exits with [`PANIC_EXIT_CODE`]. So with a VIP configured every panic is
//! fatal, also one that tokio would have caught in a spawned task: an agent that no longer holds
//! its VIP must not run on as if it did. What no process can do for itself after SIGKILL is left
//! to the kernel: the addresses carry a lifetime the holder renews
//! (`muster_vip::VIP_ADDRESS_LIFETIME_S`).

use std::time::{Duration, Instant};

use muster_vip::{Fence, FenceReleaser, NetlinkVip, VipConfig, VipControl as _};

/// Wait before retrying a failed acquire.
const ACQUIRE_RETRY: Duration = Duration::from_secs(1);
/// How long the panic hook waits for the VIP to be removed (per path: the fence thread, then a
/// one-shot thread) before the process exits anyway.
const PANIC_RELEASE_WAIT: Duration = Duration::from_millis(1000);
/// Exit code after a panic (the code Rust itself uses for a panicking `main`).
pub const PANIC_EXIT_CODE: i32 = 101;

/// The VIP as the agent drives it; a no-op when the site has no `[vip]`.
pub struct Vip {
    ctl: Option<NetlinkVip>,
    fence: Option<Fence>,
    /// "10.0.0.100/24,fd00::100/64" for status.
    pub address: String,
    retry_at: Option<Instant>,
}

impl Vip {
    /// Opens netlink for `cfg` (inside the runtime) and removes any VIP a previous run left.
    pub async fn start(cfg: Option<VipConfig>) -> anyhow::Result<Vip> {
        let Some(cfg) = cfg else {
            return Ok(Vip {
                ctl: None,
                fence: None,
                address: String::new(),
                retry_at: None,
            });
        };
        let address = cfg
            .addresses()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let fence = Fence::spawn(cfg.clone()).map_err(|e| anyhow::anyhow!("vip fence: {e}"))?;
        release_on_panic(fence.releaser(), address.clone());
        let mut ctl = NetlinkVip::new(cfg).map_err(|e| anyhow::anyhow!("vip: {e}"))?;
        ctl.use_fence(&fence);
        // A SIGKILLed run may have left the address on the interface; this host holds nothing yet.
        if ctl.is_present().await.unwrap_or(false) {
            tracing::warn!(%address, "removing a VIP left on the interface by a previous run");
        }
        ctl.release()
            .await
            .map_err(|e| anyhow::anyhow!("vip: removing a stale VIP: {e}"))?;
        Ok(Vip {
            ctl: Some(ctl),
            fence: Some(fence),
            address,
            retry_at: None,
        })
    }

    /// Whether a VIP is configured.
    pub fn enabled(&self) -> bool {
        self.ctl.is_some()
    }

    /// Arms the fence at the lease end `until`, then adds and announces the VIP; on failure logs
    /// and schedules a retry.
    pub async fn acquire(&mut self, until: Instant) {
        if let Some(fence) = &self.fence {
            fence.arm(until);
        }
        self.add().await;
    }

    async fn add(&mut self) {
        let Some(ctl) = self.ctl.as_mut() else { return };
        match ctl.acquire().await {
            Ok(()) => {
                self.retry_at = None;
                tracing::info!(address = %self.address, "VIP acquired and announced");
            }
            Err(e) => {
                self.retry_at = Some(Instant::now() + ACQUIRE_RETRY);
                tracing::error!(address = %self.address, error = %e, "cannot add the VIP; retrying");
            }
        }
    }

    /// The lease was renewed: moves the fence.
    pub fn renew(&mut self, until: Instant) {
        if let Some(fence) = &self.fence {
            fence.arm(until);
        }
    }

    /// Disarms the fence and removes the VIP. A failure is logged: the core has already stopped
    /// claiming it.
    pub async fn release(&mut self) {
        self.retry_at = None;
        if let Some(fence) = &self.fence {
            fence.disarm();
        }
        let Some(ctl) = self.ctl.as_mut() else { return };
        match ctl.release().await {
            Ok(()) => tracing::info!(address = %self.address, "VIP released"),
            Err(e) => tracing::error!(address = %self.address, error = %e, "cannot remove the VIP"),
        }
    }

    /// Retries a failed acquire if the core still holds the lease.
    pub async fn retry_if_due(&mut self, core_holds: bool) {
        match self.retry_at {
            Some(at) if core_holds && Instant::now() >= at => self.add().await,
            Some(_) if !core_holds => self.retry_at = None,
            _ => {}
        }
    }

    /// Whether the kernel-side state matches "held" (for status): acquired, and the fence has
    /// not found the lease ended.
    pub fn is_held(&self) -> bool {
        self.ctl.as_ref().is_some_and(|c| c.is_held())
            && self.fence.as_ref().is_none_or(|f| f.may_hold())
    }
}

/// Installs the panic hook described in the module docs, chained before the previous hook (the
/// default one prints the message and location): the VIP goes first, since a backtrace
/// (`RUST_BACKTRACE=1`) can take a debug build hundreds of milliseconds to print.
fn release_on_panic(releaser: FenceReleaser, address: String) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let started = Instant::now();
        let released = releaser.release_now(PANIC_RELEASE_WAIT);
        let took = started.elapsed();
        previous(info);
        // eprintln, not tracing: the panic may have happened inside the subscriber.
        match released {
            Ok(()) => eprintln!(
                "muster: panic: removed the VIP {address} in {} µs; exiting",
                took.as_micros()
            ),
            Err(e) => eprintln!(
                "muster: panic: could not remove the VIP {address} ({e}); the kernel removes it \
                 within {} s when its lifetime runs out; exiting",
                muster_vip::VIP_ADDRESS_LIFETIME_S + 1
            ),
        }
        std::process::exit(PANIC_EXIT_CODE);
    }));
}
