//! The rtnetlink requests behind [`crate::NetlinkVip`]: find the link, add / delete / list its
//! addresses, and recognise "address removed" and link state events.
//!
//! Thin async functions over an [`rtnetlink::Handle`]; every failure becomes a [`VipError`] that
//! names the interface, the address and the operation. Used by `vip.rs` (acquire / release /
//! is_present) and by the holder task in `session.rs` (loss watch and re-add).

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, CacheInfo,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{AddressMessageBuilder, Handle};

use crate::config::{IpCidr, IFNAME_MAX_LEN, VIP_ADDRESS_LIFETIME_S};
use crate::error::{netlink_io, Action, VipError};
use crate::frames::Mac;

/// Suffix of the IPv4 address label, so `ip addr` shows the VIP as `eth0:vip`.
const LABEL_SUFFIX: &str = ":vip";

/// What the holder needs to know about its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    /// Kernel interface index.
    pub index: u32,
    /// The Ethernet address, or `None` for links that are not Ethernet (no announcements).
    pub mac: Option<Mac>,
}

/// Looks up interface `name`.
pub(crate) async fn find_link(handle: &Handle, name: &str) -> Result<Link, VipError> {
    let not_found = || VipError::InterfaceNotFound {
        interface: name.to_string(),
    };
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    let message = match links.try_next().await {
        Ok(Some(message)) => message,
        Ok(None) => return Err(not_found()),
        Err(e) => {
            let e = netlink_io(e);
            if e.raw_os_error() == Some(libc::ENODEV) {
                return Err(not_found());
            }
            let action = Action::LookupInterface {
                interface: name.to_string(),
            };
            return Err(VipError::io(action, e));
        }
    };
    let mac = if message.header.link_layer_type == LinkLayerType::Ether {
        message.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(bytes) => <Mac>::try_from(bytes.as_slice()).ok(),
            _ => None,
        })
    } else {
        None
    };
    Ok(Link {
        index: message.header.index,
        mac,
    })
}

/// Adds `cidr` to the link, replacing (refreshing) it if it is already there, with a valid and
/// preferred lifetime of [`VIP_ADDRESS_LIFETIME_S`] (`IFA_CACHEINFO`; the kernel deletes the
/// address when it runs out, so a replace is also the renewal). IPv6 addresses get
/// `IFA_F_NODAD` so they are usable at once; IPv4 addresses get the label `<interface>:vip` when
/// it fits.
pub(crate) async fn add_address(
    handle: &Handle,
    index: u32,
    interface: &str,
    cidr: IpCidr,
) -> Result<(), VipError> {
    let mut request = handle
        .address()
        .add(index, cidr.addr(), cidr.prefix_len())
        .replace();
    let message = request.message_mut();
    let mut lifetime = CacheInfo::default();
    lifetime.ifa_valid = VIP_ADDRESS_LIFETIME_S;
    lifetime.ifa_preferred = VIP_ADDRESS_LIFETIME_S;
    message
        .attributes
        .push(AddressAttribute::CacheInfo(lifetime));
    match cidr {
        IpCidr::V4(_) => {
            let label = format!("{interface}{LABEL_SUFFIX}");
            if label.len() <= IFNAME_MAX_LEN {
                message.attributes.push(AddressAttribute::Label(label));
            }
        }
        IpCidr::V6(_) => {
            message.header.flags = AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    request.execute().await.map_err(|e| {
        let e = netlink_io(e);
        if e.raw_os_error() == Some(libc::ENODEV) {
            return VipError::InterfaceNotFound {
                interface: interface.to_string(),
            };
        }
        let action = Action::AddAddress {
            address: cidr.to_string(),
            interface: interface.to_string(),
        };
        VipError::io(action, e)
    })
}

/// Deletes `cidr` from the link. Returns whether it was there: an address (or link) that is
/// already gone is not an error.
pub(crate) async fn delete_address(
    handle: &Handle,
    index: u32,
    interface: &str,
    cidr: IpCidr,
) -> Result<bool, VipError> {
    let message = match cidr {
        IpCidr::V4(c) => AddressMessageBuilder::<std::net::Ipv4Addr>::new()
            .index(index)
            .address(c.addr, c.prefix_len)
            .build(),
        IpCidr::V6(c) => AddressMessageBuilder::<std::net::Ipv6Addr>::new()
            .index(index)
            .address(c.addr, c.prefix_len)
            .build(),
    };
    match handle.address().del(message).execute().await {
        Ok(()) => Ok(true),
        Err(e) => {
            let e = netlink_io(e);
            match e.raw_os_error() {
                Some(libc::EADDRNOTAVAIL) | Some(libc::ENODEV) => Ok(false),
                _ => {
                    let action = Action::DeleteAddress {
                        address: cidr.to_string(),
                        interface: interface.to_string(),
                    };
                    Err(VipError::io(action, e))
                }
            }
        }
    }
}

/// The addresses (with prefix lengths) on link `index`.
pub(crate) async fn list_addresses(
    handle: &Handle,
    index: u32,
    interface: &str,
) -> Result<Vec<IpCidr>, VipError> {
    let stream = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    let messages: Vec<AddressMessage> = stream.try_collect().await.map_err(|e| {
        let action = Action::ListAddresses {
            interface: interface.to_string(),
        };
        VipError::io(action, netlink_io(e))
    })?;
    Ok(messages.iter().filter_map(cidr_of).collect())
}

/// The local address of an address message: `IFA_LOCAL` when present (IPv4), else `IFA_ADDRESS`.
fn cidr_of(message: &AddressMessage) -> Option<IpCidr> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => {
                address = Some(*ip);
                break;
            }
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    let prefix_len = message.header.prefix_len;
    Some(match address? {
        IpAddr::V4(addr) => IpCidr::V4(crate::Ipv4Cidr { addr, prefix_len }),
        IpAddr::V6(addr) => IpCidr::V6(crate::Ipv6Cidr { addr, prefix_len }),
    })
}

/// If `message` is an `RTM_DELADDR` event, the link index and address it removed.
pub(crate) fn removed_address(
    message: &NetlinkMessage<RouteNetlinkMessage>,
) -> Option<(u32, IpCidr)> {
    match &message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(m)) => {
            Some((m.header.index, cidr_of(m)?))
        }
        _ => None,
    }
}

/// If `message` is an `RTM_NEWLINK` event, the link index and whether the link carries traffic
/// (up, running, lower layer up).
pub(crate) fn link_state(message: &NetlinkMessage<RouteNetlinkMessage>) -> Option<(u32, bool)> {
    match &message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
            let f = m.header.flags;
            let carrying = f.contains(LinkFlags::Up)
                && f.contains(LinkFlags::Running)
                && f.contains(LinkFlags::LowerUp);
            Some((m.header.index, carrying))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::link::LinkMessage;
    use rtnetlink::packet_route::AddressFamily;

    #[test]
    fn reads_link_state_from_events() {
        let mut m = LinkMessage::default();
        m.header.index = 3;
        m.header.flags = LinkFlags::Up | LinkFlags::Running | LinkFlags::LowerUp;
        let up = NetlinkMessage::from(RouteNetlinkMessage::NewLink(m.clone()));
        assert_eq!(link_state(&up), Some((3, true)));
        m.header.flags = LinkFlags::Up;
        let down = NetlinkMessage::from(RouteNetlinkMessage::NewLink(m));
        assert_eq!(link_state(&down), Some((3, false)));
    }

    #[test]
    fn reads_removed_addresses_from_events() {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.index = 7;
        m.header.prefix_len = 24;
        m.attributes
            .push(AddressAttribute::Address("10.0.0.1".parse().unwrap()));
        m.attributes
            .push(AddressAttribute::Local("10.0.0.100".parse().unwrap()));
        let event = NetlinkMessage::from(RouteNetlinkMessage::DelAddress(m.clone()));
        let (index, cidr) = removed_address(&event).unwrap();
        assert_eq!(index, 7);
        assert_eq!(cidr, "10.0.0.100/24".parse().unwrap());
        let added = NetlinkMessage::from(RouteNetlinkMessage::NewAddress(m));
        assert_eq!(removed_address(&added), None);

        let mut v6 = AddressMessage::default();
        v6.header.prefix_len = 64;
        v6.attributes
            .push(AddressAttribute::Address("fd00::100".parse().unwrap()));
        assert_eq!(cidr_of(&v6), Some("fd00::100/64".parse().unwrap()));
    }
}
