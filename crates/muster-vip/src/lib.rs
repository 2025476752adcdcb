//! `muster-vip`: floats the Kubernetes API virtual IP on the Raft leader's LAN interface.
//!
//! The seam is [`VipControl`]: `acquire` adds the address(es) and starts announcing, `release`
//! removes them, `is_present` asks the kernel. The agent binary (`crates/muster`) calls
//! `acquire` / `release` when muster-core outputs `EndpointAcquire` / `EndpointRelease` — the lease and
//! fencing logic that decides *when* lives in the core, not here. There are two implementations:
//!
//! * [`NetlinkVip`] — the real one: rtnetlink adds the IPv4 address (replace semantics, label
//!   `<if>:vip`) and the IPv6 address (`IFA_F_NODAD`), both with a kernel lifetime of
//!   [`VIP_ADDRESS_LIFETIME_S`] that the holder task renews every [`VIP_RENEW_INTERVAL_MS`]; an
//!   `AF_PACKET` socket sends gratuitous ARP (request and reply form) and unsolicited Neighbor
//!   Advertisements on the [`AnnounceSchedule`]; the holder task re-adds an address that
//!   something else removed ([`NetlinkVip::restored_count`]) and re-announces when the link comes
//!   back after a flap. Needs `CAP_NET_ADMIN` and `CAP_NET_RAW`.
//! * [`MemVip`] — in memory, records calls, injects failures and external removal.
//!
//! [`ConflictWatch`] listens on the interface, whether or not this host holds the VIP, for ARP
//! and Neighbor Advertisements that claim a VIP address from another MAC — the link-layer
//! evidence of a second holder (another site, a forgotten keepalived, a static address); what a
//! sighting means is the agent's call.
//!
//! [`Fence`] removes the VIP when the lease the core gave ends without a renewal, from its own
//! thread, so a stalled event loop cannot keep the VIP past its lease
//! ([`NetlinkVip::use_fence`]); [`FenceReleaser::release_now`] has it remove the VIP at once and
//! for good, synchronously (the agent's panic hook).
//!
//! Things the caller must know:
//! * Dropping a [`NetlinkVip`] leaves the addresses in place; only `release` removes them — or
//!   the kernel, once their lifetime runs out unrenewed. After a crash the address may still be
//!   on the interface for up to that long, so the agent should `release` at startup before it can
//!   be leader.
//! * An IPv4 VIP that is the first address of its subnet on the interface becomes the *primary*;
//!   deleting a primary also deletes its secondaries unless `net.ipv4.conf.<if>.promote_secondaries`
//!   is 1. Give the host its own address in the subnet first, set `promote_secondaries`, or use a
//!   `/32` VIP.
//!
//! Modules: `config` (addresses, schedule), `error`, `fence` (lease fence thread), `frames` (pure
//! frame builders), `claim` (pure parser of received ARP/NA), `conflict` (`ConflictWatch`), `packet`
//! (raw socket), `netlink` (rtnetlink requests), `session` (holder task), `vip` (`NetlinkVip`),
//! `mem` (`MemVip`).

mod claim;
mod config;
mod conflict;
mod error;
mod fence;
pub mod frames;
mod mem;
mod netlink;
mod packet;
mod session;
mod vip;

use std::future::Future;

pub use config::{
    AnnounceSchedule, ConfigError, IpCidr, Ipv4Cidr, Ipv6Cidr, VipConfig, BURST_OFFSET_MAX,
    BURST_ROUNDS_MAX, IFNAME_MAX_LEN, PERIOD_MIN, VIP_ADDRESS_LIFETIME_S, VIP_RENEW_INTERVAL_MS,
    WATCH_INTERVAL_MAX, WATCH_INTERVAL_MIN, WATCH_INTERVAL_UNSUBSCRIBED,
};
pub use conflict::{
    format_mac, ConflictWatch, Sighting, WatchStats, CONFLICT_RECENT_S, CONFLICT_SIGHTINGS_MAX,
};
pub use error::{Action, VipError, VipOp};
pub use fence::{set_timer_at, Fence, FenceReleaser};
pub use mem::{MemCall, MemVip};
pub use packet::PacketSender;
pub use vip::{NetlinkVip, VipStats};

/// Puts the VIP on this host's interface and takes it off again.
///
/// Every method is idempotent, so the caller can repeat one after an error or a restart without
/// tracking what already happened. The returned futures are `Send`, so the agent can drive them
/// from any task; the trait is not object-safe (use generics).
pub trait VipControl: Send {
    /// Adds the address(es) if missing (idempotent) and starts the announcement schedule.
    fn acquire(&mut self) -> impl Future<Output = Result<(), VipError>> + Send;
    /// Removes the address(es) if present (idempotent) and stops announcing.
    fn release(&mut self) -> impl Future<Output = Result<(), VipError>> + Send;
    /// Whether the address is currently on the interface (as the kernel says).
    fn is_present(&mut self) -> impl Future<Output = Result<bool, VipError>> + Send;
}
