//! The holder task: one tokio task per held VIP that sends the announcement rounds on schedule
//! and watches for the address being removed by something else.
//!
//! [`crate::NetlinkVip::acquire`] spawns it after adding the addresses and
//! [`crate::NetlinkVip::release`] aborts it before deleting them, so the task never fights a
//! release. It reacts at once to `RTM_DELADDR` events of its own addresses (a netlink multicast
//! subscription polled inside the task) and also re-checks every `watch_interval` (5 s), which
//! catches events lost to a full socket buffer; without a subscription (it could not be opened,
//! or it ended) every [`crate::config::WATCH_INTERVAL_UNSUBSCRIBED`] (0.5 s) at most. A missing
//! address is re-added, the announcement schedule restarts from its first round, the restore is
//! counted in [`Stats`] and a `tracing::warn!` says so. Link events (`RTM_NEWLINK`) are watched
//! too: when the link carries traffic again after losing it (a flap, a cable re-plugged), the
//! schedule restarts from its first round, so neighbours that moved on hear from the holder at
//! once instead of at the next slow round.
//!
//! Every [`VIP_RENEW_INTERVAL_MS`] the task also renews the kernel lifetime of the addresses that
//! are there (a replace with a fresh `IFA_CACHEINFO`), so a holder that dies without releasing —
//! SIGKILL, the OOM killer — leaves its address for at most
//! [`crate::VIP_ADDRESS_LIFETIME_S`] + 1 s. A renewal sends nothing and leaves the announcement
//! schedule alone (the kernel announces no replaced address either); a missing address is left to
//! the check above, which counts it and re-announces. Once the fence says the lease ended, nothing
//! is renewed or re-added, and an add that raced with the fence is undone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use rtnetlink::packet_core::NetlinkMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::proto::Connection;
use rtnetlink::sys::SocketAddr;
use rtnetlink::Handle;
use tokio::time::{sleep_until, Instant, MissedTickBehavior};
use tracing::{debug, info, warn, Instrument};

use crate::config::{IpCidr, VipConfig, VIP_RENEW_INTERVAL_MS, WATCH_INTERVAL_UNSUBSCRIBED};
use crate::error::{Action, VipError};
use crate::frames;
use crate::netlink::{self, Link};
use crate::packet::PacketSender;

/// The holder's check timer: every `watch_interval`, and at least every
/// [`WATCH_INTERVAL_UNSUBSCRIBED`] when no address events come (`subscribed` false).
fn check_interval(watch_interval: std::time::Duration, subscribed: bool) -> tokio::time::Interval {
    let every = if subscribed {
        watch_interval
    } else {
        watch_interval.min(WATCH_INTERVAL_UNSUBSCRIBED)
    };
    let mut poll = tokio::time::interval_at(Instant::now() + every, every);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    poll
}

/// Counters shared by a [`crate::NetlinkVip`] and its holder tasks.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub restored: AtomicU64,
    pub rounds: AtomicU64,
    pub send_errors: AtomicU64,
}

/// The address-event subscription handed to the task: the connection future that reads the
/// netlink socket and the channel it delivers events on.
pub(crate) type Subscription = (
    Connection<RouteNetlinkMessage>,
    UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
);

/// State of one holder task.
pub(crate) struct Holder {
    pub config: VipConfig,
    pub handle: Handle,
    pub link: Link,
    pub sender: Arc<PacketSender>,
    pub stats: Arc<Stats>,
    /// The lease fence, if any: nothing is re-added once it says the lease ended.
    pub fence: Option<Arc<crate::fence::Shared>>,
}

/// Where the task stands in its announcement schedule and whether things are failing.
struct Progress {
    start: Instant,
    round: u32,
    /// A check or re-add is failing; further failures are logged at debug level.
    check_failing: bool,
    /// Sending is failing; likewise.
    send_failing: bool,
    /// Renewing is failing; likewise.
    renew_failing: bool,
}

impl Holder {
    /// Spawns the task on the current runtime.
    pub fn spawn(self, subscription: Option<Subscription>) -> tokio::task::JoinHandle<()> {
        let span = tracing::info_span!("vip", interface = %self.config.interface);
        tokio::spawn(self.run(subscription).instrument(span))
    }

    async fn run(mut self, subscription: Option<Subscription>) {
        let (connection, mut events) = match subscription {
            Some((connection, events)) => (Some(connection), Some(events)),
            None => (None, None),
        };
        let mut connection = std::pin::pin!(async move {
            match connection {
                Some(connection) => connection.await,
                None => std::future::pending().await,
            }
        });
        let mut poll = check_interval(self.config.watch_interval, events.is_some());
        let mut progress = Progress {
            start: Instant::now(),
            round: 0,
            check_failing: false,
            send_failing: false,
            renew_failing: false,
        };
        let renew_interval = std::time::Duration::from_millis(VIP_RENEW_INTERVAL_MS);
        let mut renew = tokio::time::interval_at(Instant::now() + renew_interval, renew_interval);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut connection_done = false;
        // Whether the link carried traffic at the last link event (assumed so at acquire).
        let mut link_carrying = true;
        loop {
            let next_round = self
                .config
                .announce
                .offset(progress.round)
                .map(|offset| progress.start + offset);
            tokio::select! {
                _ = sleep_until(next_round.unwrap_or_else(Instant::now)), if next_round.is_some() => {
                    self.announce(&mut progress);
                    progress.round += 1;
                }
                _ = poll.tick() => self.check(&mut progress).await,
                _ = renew.tick() => self.renew(&mut progress).await,
                event = next_event(&mut events) => match event {
                    Some((message, _)) => {
                        if let Some((index, carrying)) = netlink::link_state(&message) {
                            if index == self.link.index && carrying != link_carrying {
                                link_carrying = carrying;
                                if carrying {
                                    // Back after a flap: neighbours may have moved on; announce
                                    // the schedule again from its first round.
                                    info!("link is up again; re-announcing the VIP");
                                    self.check(&mut progress).await;
                                    progress.start = Instant::now();
                                    progress.round = 0;
                                } else {
                                    warn!("link lost carrier while holding the VIP");
                                }
                            }
                        }
                        if let Some((index, cidr)) = netlink::removed_address(&message) {
                            if index == self.link.index && self.config.addresses().contains(&cidr) {
                                debug!(address = %cidr, "address removal event");
                                self.check(&mut progress).await;
                            }
                        }
                    }
                    None => {
                        warn!("address event subscription ended; relying on polling");
                        events = None;
                        poll = check_interval(self.config.watch_interval, false);
                    }
                },
                _ = &mut connection, if !connection_done => {
                    warn!("address event connection ended; relying on polling");
                    connection_done = true;
                    events = None;
                    poll = check_interval(self.config.watch_interval, false);
                }
            }
        }
    }

    /// Sends one round; a failure is counted and logged (at warn once per streak).
    fn announce(&self, progress: &mut Progress) {
        let Some(mac) = self.link.mac else {
            return;
        };
        let v4 = self.config.v4.map(|c| c.addr);
        let v6 = self.config.v6.map(|c| c.addr);
        let mut failure = None;
        for frame in frames::round(mac, v4, v6) {
            if let Err(e) = self.sender.send(self.link.index, &frame) {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                failure = Some(e);
            }
        }
        self.stats.rounds.fetch_add(1, Ordering::Relaxed);
        match failure {
            Some(e) => {
                let action = Action::SendAnnouncement {
                    interface: self.config.interface.clone(),
                };
                let error = VipError::io(action, e);
                if progress.send_failing {
                    debug!(error = %error, round = progress.round, "announcement failed again");
                } else {
                    warn!(error = %error, round = progress.round, "announcement failed");
                }
                progress.send_failing = true;
            }
            None => {
                if progress.send_failing {
                    info!(round = progress.round, "announcements are going out again");
                }
                progress.send_failing = false;
                debug!(round = progress.round, "announced");
            }
        }
    }

    /// Verifies the link and the addresses; re-adds what is missing and restarts the schedule.
    async fn check(&mut self, progress: &mut Progress) {
        match self.restore_missing().await {
            Ok(restored) => {
                if progress.check_failing {
                    info!("VIP check succeeds again");
                }
                progress.check_failing = false;
                if restored {
                    progress.start = Instant::now();
                    progress.round = 0;
                }
            }
            Err(error) => {
                if progress.check_failing {
                    debug!(error = %error, "VIP check failed again");
                } else {
                    warn!(error = %error, "VIP check failed; the address may be missing");
                }
                progress.check_failing = true;
            }
        }
    }

    /// Renews the lifetime of the configured addresses that are on the link (see the module docs);
    /// a failure is logged (at warn once per streak) and retried at the next interval.
    async fn renew(&mut self, progress: &mut Progress) {
        if !self.lease_allows() {
            return;
        }
        let result = self.renew_present().await;
        self.undo_if_lease_ended().await;
        match result {
            Ok(renewed) => {
                if progress.renew_failing {
                    info!(renewed, "VIP lifetime renewals succeed again");
                }
                progress.renew_failing = false;
            }
            Err(error) => {
                if progress.renew_failing {
                    debug!(error = %error, "VIP lifetime renewal failed again");
                } else {
                    warn!(
                        error = %error,
                        lifetime_s = crate::VIP_ADDRESS_LIFETIME_S,
                        "cannot renew the VIP's address lifetime; it expires unless a renewal succeeds"
                    );
                }
                progress.renew_failing = true;
            }
        }
    }

    /// Re-adds (replace) every configured address that is present; returns how many.
    async fn renew_present(&mut self) -> Result<usize, VipError> {
        let interface = &self.config.interface;
        let present = netlink::list_addresses(&self.handle, self.link.index, interface).await?;
        let mut renewed = 0;
        for cidr in self.config.addresses() {
            if present.contains(&cidr) {
                netlink::add_address(&self.handle, self.link.index, interface, cidr).await?;
                renewed += 1;
            }
        }
        Ok(renewed)
    }

    /// Whether the lease fence (if any) still allows the VIP on the interface.
    fn lease_allows(&self) -> bool {
        self.fence.as_ref().is_none_or(|f| f.may_hold())
    }

    /// After an add: if the fence found the lease ended meanwhile (it may have removed the
    /// addresses just before the add), removes them again, so an add never undoes the fence.
    async fn undo_if_lease_ended(&mut self) {
        if self.lease_allows() {
            return;
        }
        let interface = &self.config.interface;
        for cidr in self.config.addresses() {
            if let Err(error) =
                netlink::delete_address(&self.handle, self.link.index, interface, cidr).await
            {
                warn!(error = %error, address = %cidr, "cannot remove the VIP after the lease ended");
            }
        }
    }

    /// Returns whether the schedule must restart (an address was re-added or the MAC changed).
    async fn restore_missing(&mut self) -> Result<bool, VipError> {
        let interface = &self.config.interface;
        let link = netlink::find_link(&self.handle, interface).await?;
        let mut restart = false;
        if link != self.link {
            warn!(
                old_index = self.link.index,
                new_index = link.index,
                old_mac = ?self.link.mac,
                new_mac = ?link.mac,
                "interface changed while holding the VIP; re-announcing"
            );
            self.link = link;
            restart = true;
        }
        let present = netlink::list_addresses(&self.handle, link.index, interface).await?;
        let missing: Vec<IpCidr> = self
            .config
            .addresses()
            .into_iter()
            .filter(|cidr| !present.contains(cidr))
            .collect();
        if !missing.is_empty() && !self.lease_allows() {
            debug!("VIP address gone after the lease ended (the fence removed it); not re-adding");
            return Ok(false);
        }
        let re_adding = !missing.is_empty();
        for cidr in missing {
            netlink::add_address(&self.handle, link.index, interface, cidr).await?;
            let total = self.stats.restored.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(
                address = %cidr,
                restored_total = total,
                "VIP address was removed by something else while held; re-added it and \
                 re-announcing"
            );
            restart = true;
        }
        if re_adding {
            self.undo_if_lease_ended().await;
        }
        Ok(restart)
    }
}

/// The next address event, or never when there is no subscription.
async fn next_event(
    events: &mut Option<UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>>,
) -> Option<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}
