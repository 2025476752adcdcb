//! The agent's side of the floating VIP: carries the core's `EndpointAcquire` / `EndpointRenew` /
//! `EndpointRelease` out to netlink (`muster_vip::NetlinkVip`), arms the lease fence
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
//!
//! Two holders of one address: a `muster_vip::ConflictWatch` listens on the interface from start
//! to stop. [`Vip::check_conflicts`] (every tick, working at most every
//! [`CONFLICT_CHECK_INTERVAL_MS`]) turns what it saw into status text for `site_conflict` and
//! error logs (once per MAC per [`CONFLICT_LOG_INTERVAL_S`]). A conflict is another MAC answering
//! for the VIP *while this host holds it* (frames from before it acquired do not count: during a
//! failover the previous holder of our own cluster announces from its MAC for a moment). A softer
//! note: the VIP answered while no member of this cluster has held it for
//! [`UNHELD_NOTE_AFTER_S`]. Neither changes what the core does: releasing on conflict would
//! leave two sites fighting over one address without an API endpoint.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use muster_vip::frames::Mac;
use muster_vip::{
    format_mac, ConflictWatch, Fence, FenceReleaser, NetlinkVip, Sighting, VipConfig,
    VipControl as _,
};

/// Wait before retrying a failed acquire.
const ACQUIRE_RETRY: Duration = Duration::from_secs(1);
/// How long the panic hook waits for the VIP to be removed (per path: the fence thread, then a
/// one-shot thread) before the process exits anyway.
const PANIC_RELEASE_WAIT: Duration = Duration::from_millis(1000);
/// Exit code after a panic (the code Rust itself uses for a panicking `main`).
pub const PANIC_EXIT_CODE: i32 = 101;
/// How often [`Vip::check_conflicts`] looks at the conflict watch.
pub const CONFLICT_CHECK_INTERVAL_MS: u64 = 200;
/// A conflict is logged at most once per MAC per this long.
pub const CONFLICT_LOG_INTERVAL_S: u64 = 10;
/// Sightings this recent stay in status (as the core's hello conflicts do).
pub const CONFLICT_SHOWN_S: u64 = 30;
/// The "answered while nobody of ours holds it" note needs this long without a holder first
/// (a failover, or a hello saying the new leader holds it, takes well under a second).
pub const UNHELD_NOTE_AFTER_S: u64 = 3;
/// Most MACs whose last conflict log time is remembered (beyond it, logs are dropped until old
/// ones age out; status still shows every current sighting).
const LOGGED_MACS_MAX: usize = 64;

/// The VIP as the agent drives it; a no-op when the site has no `[vip]`.
pub struct Vip {
    ctl: Option<NetlinkVip>,
    fence: Option<Fence>,
    /// "10.0.0.100/24,fd00::100/64" for status.
    pub address: String,
    retry_at: Option<Instant>,
    conflicts: Conflicts,
}

/// What the conflict watch means for this host; see the module docs.
#[derive(Default)]
struct Conflicts {
    watch: Option<ConflictWatch>,
    /// Since when this host holds the VIP (acquired and not released).
    held_since: Option<Instant>,
    /// Since when neither this host nor, as far as it knows, any member holds the VIP.
    unheld_since: Option<Instant>,
    checked_at: Option<Instant>,
    /// MAC → when a conflict with it was last logged.
    logged: HashMap<Mac, Instant>,
    /// Status text, one line per sighting that counts.
    text: Vec<String>,
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
                conflicts: Conflicts::default(),
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
        let watch = ConflictWatch::spawn(&cfg)
            .map_err(|e| anyhow::anyhow!("vip: watching for other holders: {e}"))?;
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
            conflicts: Conflicts {
                watch: Some(watch),
                ..Conflicts::default()
            },
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
                self.conflicts.held_since.get_or_insert_with(Instant::now);
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
        self.conflicts.held_since = None;
        if let Some(fence) = &self.fence {
            fence.disarm();
        }
        let Some(ctl) = self.ctl.as_mut() else { return };
        match ctl.release().await {
            Ok(()) => tracing::info!(address = %self.address, "VIP released"),
            Err(e) => tracing::error!(address = %self.address, error = %e, "cannot remove the VIP"),
        }
    }

    /// When a failed add is retried next (`retry_if_due`), if one is pending.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
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

impl Vip {
    /// Looks at the conflict watch (at most every [`CONFLICT_CHECK_INTERVAL_MS`]): refreshes the
    /// status text and logs what is new. `member_holds` is whether the core knows a member of
    /// this cluster (this host included) that holds the VIP.
    pub fn check_conflicts(&mut self, member_holds: bool) {
        let held = self.is_held();
        let address = self.address.clone();
        self.conflicts
            .check(Instant::now(), held, member_holds, &address);
    }

    /// Current conflicts for `site_conflict`, `"; "`-separated; empty when there are none.
    pub fn conflict_text(&self) -> String {
        self.conflicts.text.join("; ")
    }
}

impl Conflicts {
    fn check(&mut self, now: Instant, held: bool, member_holds: bool, address: &str) {
        let due = self.checked_at.is_none_or(|at| {
            now.saturating_duration_since(at) >= Duration::from_millis(CONFLICT_CHECK_INTERVAL_MS)
        });
        let Some(watch) = self.watch.as_ref().filter(|_| due) else {
            return;
        };
        self.checked_at = Some(now);
        if !held {
            self.held_since = None;
        }
        if held || member_holds {
            self.unheld_since = None;
        } else {
            self.unheld_since.get_or_insert(now);
        }
        let sightings = watch.seen_within(Duration::from_secs(CONFLICT_SHOWN_S));
        self.text.clear();
        for s in sightings {
            self.judge(now, &s, address);
        }
        let log_interval = Duration::from_secs(CONFLICT_LOG_INTERVAL_S);
        self.logged
            .retain(|_, at| now.saturating_duration_since(*at) < log_interval);
    }

    /// Adds the status line for `s` if it counts, and logs it if not logged lately.
    fn judge(&mut self, now: Instant, s: &Sighting, vip: &str) {
        let mac = format_mac(&s.mac);
        let ago_ms = now.saturating_duration_since(s.last_seen).as_millis() as u64;
        let unheld_note = Duration::from_secs(UNHELD_NOTE_AFTER_S);
        let (text, conflict) = match (self.held_since, self.unheld_since) {
            (Some(since), _) if s.last_seen >= since => (
                format!(
                    "another host (MAC {mac}) answers for the VIP {} while this host holds it                      ({} frames, last {ago_ms} ms ago) — two hosts claim one address",
                    s.address, s.frames
                ),
                true,
            ),
            (None, Some(since)) if s.last_seen >= since + unheld_note => (
                format!(
                    "the VIP {} is answered by MAC {mac} while no member of this cluster holds it                      (last {ago_ms} ms ago): another site, a VRRP daemon or a static address?",
                    s.address
                ),
                false,
            ),
            _ => return,
        };
        let recently = self.logged.get(&s.mac).is_some_and(|at| {
            now.saturating_duration_since(*at) < Duration::from_secs(CONFLICT_LOG_INTERVAL_S)
        });
        if !recently && (self.logged.len() < LOGGED_MACS_MAX || self.logged.contains_key(&s.mac)) {
            self.logged.insert(s.mac, now);
            if conflict {
                tracing::error!(vip = %vip, other_mac = %mac, address = %s.address, frames = s.frames, "VIP conflict: {text}");
            } else {
                tracing::warn!(vip = %vip, other_mac = %mac, address = %s.address, "VIP answered by an unknown host: {text}");
            }
        }
        self.text.push(text);
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

#[cfg(test)]
mod tests {
    use super::*;

    const OTHER: Mac = [0x02, 0, 0, 0, 0, 0x42];

    fn sighting(last_seen: Instant) -> Sighting {
        Sighting {
            mac: OTHER,
            address: "10.77.0.100".parse().unwrap(),
            first_seen: last_seen,
            last_seen,
            frames: 3,
        }
    }

    #[test]
    fn another_mac_is_a_conflict_only_after_this_host_acquired() {
        let t0 = Instant::now();
        let mut c = Conflicts {
            held_since: Some(t0 + Duration::from_secs(1)),
            ..Conflicts::default()
        };
        // The previous holder's last announcement, before this host acquired: a failover.
        c.judge(t0 + Duration::from_secs(2), &sighting(t0), "10.77.0.100/24");
        assert!(c.text.is_empty(), "{:?}", c.text);
        let seen = t0 + Duration::from_secs(2);
        c.judge(seen, &sighting(seen), "10.77.0.100/24");
        assert_eq!(c.text.len(), 1);
        assert!(
            c.text[0].starts_with(
                "another host (MAC 02:00:00:00:00:42) answers for the VIP 10.77.0.100 while this \
                 host holds it"
            ),
            "{}",
            c.text[0]
        );
        assert_eq!(c.logged.get(&OTHER), Some(&seen), "logged once");
        // Again a second later: still in status, not logged again.
        let later = seen + Duration::from_secs(1);
        c.judge(later, &sighting(later), "10.77.0.100/24");
        assert_eq!(c.logged.get(&OTHER), Some(&seen));
        assert_eq!(c.text.len(), 2);
    }

    #[test]
    fn unheld_vip_answered_is_a_note_after_a_quiet_while() {
        let t0 = Instant::now();
        let mut c = Conflicts {
            unheld_since: Some(t0),
            ..Conflicts::default()
        };
        let early = t0 + Duration::from_secs(1);
        c.judge(early, &sighting(early), "10.77.0.100/24");
        assert!(c.text.is_empty(), "within a failover: {:?}", c.text);
        let late = t0 + Duration::from_secs(UNHELD_NOTE_AFTER_S + 1);
        c.judge(late, &sighting(late), "10.77.0.100/24");
        assert_eq!(c.text.len(), 1);
        assert!(
            c.text[0].contains("no member of this cluster holds it"),
            "{}",
            c.text[0]
        );
    }
}
