//! [`NetlinkVip`]: the real [`VipControl`] — rtnetlink for the addresses, an `AF_PACKET` socket
//! for the announcements, and a holder task (`session.rs`) while the VIP is held.
//!
//! The agent binary creates one at startup from the `[vip]` config and calls `acquire` /
//! `release` when muster-core outputs `EndpointAcquire` / `EndpointRelease`; `is_present` and
//! [`NetlinkVip::stats`] feed the status RPC. Needs `CAP_NET_ADMIN` (addresses) and `CAP_NET_RAW`
//! (announcements). All sockets belong to the network namespace of the thread that calls
//! [`NetlinkVip::new`] (request socket, packet socket) and [`VipControl::acquire`] (event
//! subscription).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rtnetlink::{Handle, MulticastGroup};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::VipConfig;
use crate::error::{Action, VipError};
use crate::netlink;
use crate::packet::PacketSender;
use crate::session::{Holder, Stats, Subscription};
use crate::VipControl;

/// A snapshot of [`NetlinkVip`]'s counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VipStats {
    /// Addresses the watcher re-added after something else removed them while held.
    pub restored: u64,
    /// Announcement rounds sent (each: ARP request + reply and/or NA).
    pub rounds: u64,
    /// Frames that could not be sent.
    pub send_errors: u64,
}

/// The running holder task of an acquired VIP.
struct Session {
    index: u32,
    task: JoinHandle<()>,
}

/// Floats the VIP on a real interface. See the module docs.
pub struct NetlinkVip {
    config: VipConfig,
    handle: Handle,
    connection: JoinHandle<()>,
    sender: Arc<PacketSender>,
    stats: Arc<Stats>,
    session: Option<Session>,
    fence: Option<Arc<crate::fence::Shared>>,
}

impl NetlinkVip {
    /// Validates `config`, opens the netlink request socket and the packet socket. Must be
    /// called inside a Tokio runtime (it spawns the netlink connection task). Does not touch
    /// the interface; a crashed predecessor's address stays until [`VipControl::release`].
    pub fn new(config: VipConfig) -> Result<Self, VipError> {
        config.validate()?;
        tokio::runtime::Handle::try_current().map_err(|_| VipError::NoRuntime)?;
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| VipError::io(Action::OpenNetlink, e))?;
        let sender = PacketSender::open().map_err(|e| VipError::io(Action::OpenPacketSocket, e))?;
        Ok(NetlinkVip {
            config,
            handle,
            connection: tokio::spawn(connection),
            sender: Arc::new(sender),
            stats: Arc::new(Stats::default()),
            session: None,
            fence: None,
        })
    }

    /// Ties this VIP to a lease [`Fence`](crate::Fence): while the fence says the lease ended,
    /// `acquire` does not leave the VIP on the interface and the holder task does not re-add a
    /// removed address.
    pub fn use_fence(&mut self, fence: &crate::Fence) {
        self.fence = Some(fence.shared());
    }

    /// The configuration this was created with.
    pub fn config(&self) -> &VipConfig {
        &self.config
    }

    /// Addresses re-added by the watcher since creation.
    pub fn restored_count(&self) -> u64 {
        self.stats.restored.load(Ordering::Relaxed)
    }

    /// All counters.
    pub fn stats(&self) -> VipStats {
        VipStats {
            restored: self.stats.restored.load(Ordering::Relaxed),
            rounds: self.stats.rounds.load(Ordering::Relaxed),
            send_errors: self.stats.send_errors.load(Ordering::Relaxed),
        }
    }

    /// Whether the VIP is held here (acquired and not released), as far as this object knows.
    pub fn is_held(&self) -> bool {
        self.session.as_ref().is_some_and(|s| !s.task.is_finished())
    }

    /// Stops the holder task, if any, and waits until it is gone.
    async fn stop_session(&mut self) {
        if let Some(session) = self.session.take() {
            session.task.abort();
            // The only possible error is the cancellation we just asked for.
            let _ = session.task.await;
        }
    }

    /// Subscribes to address events; on failure the holder relies on polling alone.
    fn subscribe(&self) -> Option<Subscription> {
        let groups = [
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Link,
        ];
        match rtnetlink::new_multicast_connection(&groups) {
            Ok((connection, _handle, events)) => Some((connection, events)),
            Err(e) => {
                let error = VipError::io(Action::SubscribeAddressEvents, e);
                warn!(error = %error, "watching for VIP loss by polling only");
                None
            }
        }
    }
}

impl VipControl for NetlinkVip {
    /// Looks the interface up, adds the addresses (replace: an address already there is
    /// refreshed, not an error) and starts the holder task unless one is already running for
    /// the same link. On error some addresses may be on the interface: call
    /// [`VipControl::release`] to clean up.
    async fn acquire(&mut self) -> Result<(), VipError> {
        let interface = self.config.interface.clone();
        let link = netlink::find_link(&self.handle, &interface).await?;
        for cidr in self.config.addresses() {
            netlink::add_address(&self.handle, link.index, &interface, cidr).await?;
        }
        if self.fence.as_ref().is_some_and(|f| !f.may_hold()) {
            // The lease ended while we were adding (or before): the fence may already have run.
            self.release().await?;
            return Err(VipError::LeaseEnded);
        }
        if let Some(session) = &self.session {
            if session.index == link.index && !session.task.is_finished() {
                return Ok(());
            }
        }
        self.stop_session().await;
        if link.mac.is_none() {
            warn!(interface = %interface, "not an Ethernet interface: no gratuitous ARP/NA sent");
        }
        let holder = Holder {
            config: self.config.clone(),
            handle: self.handle.clone(),
            link,
            sender: self.sender.clone(),
            stats: self.stats.clone(),
            fence: self.fence.clone(),
        };
        let task = holder.spawn(self.subscribe());
        self.session = Some(Session {
            index: link.index,
            task,
        });
        let addresses: Vec<String> = self
            .config
            .addresses()
            .iter()
            .map(|c| c.to_string())
            .collect();
        info!(interface = %interface, addresses = ?addresses, "VIP acquired");
        Ok(())
    }

    /// Stops the holder task, then deletes every configured address that is there. A missing
    /// address or interface is not an error. Tries every address even if one fails and returns
    /// the first error.
    async fn release(&mut self) -> Result<(), VipError> {
        let was_held = self.session.is_some();
        self.stop_session().await;
        let interface = self.config.interface.clone();
        let link = match netlink::find_link(&self.handle, &interface).await {
            Ok(link) => link,
            Err(VipError::InterfaceNotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut first_error = None;
        let mut deleted = Vec::new();
        for cidr in self.config.addresses() {
            match netlink::delete_address(&self.handle, link.index, &interface, cidr).await {
                Ok(true) => deleted.push(cidr.to_string()),
                Ok(false) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if was_held || !deleted.is_empty() {
            info!(interface = %interface, deleted = ?deleted, "VIP released");
        }
        first_error.map_or(Ok(()), Err)
    }

    /// True when every configured address is on the interface; false when any is missing or
    /// the interface does not exist.
    async fn is_present(&mut self) -> Result<bool, VipError> {
        let interface = &self.config.interface;
        let link = match netlink::find_link(&self.handle, interface).await {
            Ok(link) => link,
            Err(VipError::InterfaceNotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let present = netlink::list_addresses(&self.handle, link.index, interface).await?;
        Ok(self
            .config
            .addresses()
            .iter()
            .all(|cidr| present.contains(cidr)))
    }
}

impl Drop for NetlinkVip {
    /// Stops the tasks. Deliberately leaves the addresses alone: only [`VipControl::release`]
    /// removes them.
    fn drop(&mut self) {
        if let Some(session) = &self.session {
            session.task.abort();
        }
        self.connection.abort();
    }
}
