//! Reads who claims an address from a received Ethernet frame: the sender of an ARP packet, or
//! the target of an IPv6 Neighbor Advertisement. Pure, bounds-checked parsing, no I/O.
//!
//! [`crate::ConflictWatch`] runs every frame its `AF_PACKET` socket receives through [`parse`]
//! and compares the [`Claim`] with the configured VIP and the interface's own MAC. What counts
//! as a claim is what makes a neighbour point the address at a MAC:
//!
//! * ARP, request or reply (gratuitous or not): the sender protocol address at the sender
//!   hardware address. A probe (RFC 5227, sender IP 0.0.0.0) claims nothing.
//! * ICMPv6 type 136, code 0, hop limit 255, correct checksum, no extension headers: the target
//!   address at the MAC of its target link-layer address option, or at the Ethernet source when
//!   the option is absent.
//!
//! Anything else — short or truncated frames, other EtherTypes, other hardware or protocol
//! types, malformed options — gives `None`; nothing here can panic on arbitrary bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::frames::{
    ones_complement_sum, Mac, ETH_P_ARP, ETH_P_IPV6, ICMPV6_NEIGHBOR_ADVERTISEMENT, IPPROTO_ICMPV6,
    ND_HOP_LIMIT, ND_OPT_TARGET_LL_ADDR,
};

/// "This MAC answers for this address", as read from one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The hardware address the frame tells neighbours to use.
    pub mac: Mac,
    /// The address claimed.
    pub address: IpAddr,
}

const ETH_HEADER_LEN: usize = 14;
const ARP_LEN: usize = 28;
const IPV6_HEADER_LEN: usize = 40;
/// Neighbor Advertisement without options: type, code, checksum, flags + reserved, target.
const NA_LEN: usize = 24;

/// The claim in `frame` (a whole Ethernet frame, destination MAC first), if it makes one.
pub fn parse(frame: &[u8]) -> Option<Claim> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let source: Mac = frame.get(6..12)?.try_into().ok()?;
    let payload = frame.get(ETH_HEADER_LEN..)?;
    match ethertype {
        ETH_P_ARP => parse_arp(payload),
        ETH_P_IPV6 => parse_na(payload, source),
        _ => None,
    }
}

/// An ARP packet (after the Ethernet header) for IPv4 over Ethernet.
fn parse_arp(arp: &[u8]) -> Option<Claim> {
    let arp = arp.get(..ARP_LEN)?;
    let hardware = u16::from_be_bytes([arp[0], arp[1]]);
    let protocol = u16::from_be_bytes([arp[2], arp[3]]);
    let op = u16::from_be_bytes([arp[6], arp[7]]);
    if hardware != 1 || protocol != 0x0800 || arp[4] != 6 || arp[5] != 4 || !(1..=2).contains(&op) {
        return None;
    }
    let mac: Mac = arp[8..14].try_into().ok()?;
    let sender = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
    if sender.is_unspecified() {
        return None;
    }
    Some(Claim {
        mac,
        address: IpAddr::V4(sender),
    })
}

/// An IPv6 packet (after the Ethernet header) that must be a valid Neighbor Advertisement.
fn parse_na(ip6: &[u8], source: Mac) -> Option<Claim> {
    let header = ip6.get(..IPV6_HEADER_LEN)?;
    if header[0] >> 4 != 6 || header[6] != IPPROTO_ICMPV6 || header[7] != ND_HOP_LIMIT {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let icmp = ip6.get(IPV6_HEADER_LEN..IPV6_HEADER_LEN.checked_add(payload_len)?)?;
    if icmp.len() < NA_LEN || icmp[0] != ICMPV6_NEIGHBOR_ADVERTISEMENT || icmp[1] != 0 {
        return None;
    }
    if !checksum_ok(&header[8..24], &header[24..40], icmp) {
        return None;
    }
    let target: [u8; 16] = icmp[8..24].try_into().ok()?;
    let mac = target_link_layer_address(&icmp[NA_LEN..])?.unwrap_or(source);
    Some(Claim {
        mac,
        address: IpAddr::V6(Ipv6Addr::from(target)),
    })
}

/// Whether the ICMPv6 checksum of `message` between `src` and `dst` verifies (the sum over the
/// pseudo-header and the message, checksum included, is all ones).
fn checksum_ok(src: &[u8], dst: &[u8], message: &[u8]) -> bool {
    let Ok(len) = u32::try_from(message.len()) else {
        return false;
    };
    let mut pseudo = [0u8; 40];
    pseudo[0..16].copy_from_slice(src);
    pseudo[16..32].copy_from_slice(dst);
    pseudo[32..36].copy_from_slice(&len.to_be_bytes());
    pseudo[39] = IPPROTO_ICMPV6;
    ones_complement_sum(ones_complement_sum(0, &pseudo), message) == 0xffff
}

/// The target link-layer address option among NA `options`: `Some(None)` when there is none,
/// `None` when the options are malformed (a zero length or one running past the end, which
/// RFC 4861 §7.1.2 says makes the whole message invalid).
fn target_link_layer_address(mut options: &[u8]) -> Option<Option<Mac>> {
    let mut found = None;
    while !options.is_empty() {
        let kind = *options.first()?;
        let len = usize::from(*options.get(1)?) * 8;
        if len == 0 {
            return None;
        }
        let option = options.get(..len)?;
        if kind == ND_OPT_TARGET_LL_ADDR && found.is_none() {
            found = Some(option.get(2..8)?.try_into().ok()?);
        }
        options = &options[len..];
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames;

    const MAC: Mac = [0x02, 0, 0, 0, 0, 0x07];
    const OTHER: Mac = [0x02, 0, 0, 0, 0, 0x08];

    fn v4() -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 100)
    }

    fn v6() -> Ipv6Addr {
        "fd77::100".parse().unwrap()
    }

    fn claim(mac: Mac, address: IpAddr) -> Option<Claim> {
        Some(Claim { mac, address })
    }

    /// Rewrites the NA checksum after a test changed the message.
    fn fix_checksum(f: &mut [u8]) {
        f[56..58].fill(0);
        let src: [u8; 16] = f[22..38].try_into().unwrap();
        let dst: [u8; 16] = f[38..54].try_into().unwrap();
        let sum = frames::icmpv6_checksum(src.into(), dst.into(), &f[54..]);
        f[56..58].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn both_gratuitous_arp_forms_claim_the_sender() {
        let expected = claim(MAC, IpAddr::V4(v4()));
        assert_eq!(parse(&frames::garp_request(MAC, v4())), expected);
        assert_eq!(parse(&frames::garp_reply(MAC, v4())), expected);
    }

    #[test]
    fn an_ordinary_arp_reply_and_request_claim_the_sender() {
        // "10.77.0.100 is at OTHER", to a client that asked (not gratuitous).
        let mut reply = frames::garp_reply(OTHER, v4());
        reply[0..6].copy_from_slice(&MAC);
        reply[32..38].copy_from_slice(&MAC);
        reply[38..42].copy_from_slice(&[10, 77, 0, 2]);
        assert_eq!(parse(&reply), claim(OTHER, IpAddr::V4(v4())));
        // "who has 10.77.0.2? tell 10.77.0.100": the asker uses the VIP as its address.
        let mut request = frames::garp_request(OTHER, v4());
        request[38..42].copy_from_slice(&[10, 77, 0, 2]);
        assert_eq!(parse(&request), claim(OTHER, IpAddr::V4(v4())));
    }

    #[test]
    fn arp_probes_and_other_arp_claim_nothing() {
        // RFC 5227 probe: sender IP 0.0.0.0 asks for the VIP.
        let mut probe = frames::garp_request(OTHER, v4());
        probe[28..32].fill(0);
        assert_eq!(parse(&probe), None);
        for (at, value) in [(14, 6), (17, 0xdd), (18, 8), (19, 16), (21, 3), (21, 0)] {
            let mut f = frames::garp_reply(OTHER, v4());
            f[at] = value;
            assert_eq!(parse(&f), None, "byte {at} = {value}");
        }
        let mut not_arp = frames::garp_reply(OTHER, v4());
        not_arp[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(parse(&not_arp), None);
    }

    #[test]
    fn the_na_claims_its_target_at_the_option_mac() {
        let f = frames::unsolicited_na(MAC, v6());
        assert_eq!(parse(&f), claim(MAC, IpAddr::V6(v6())));
        // The option decides, not the Ethernet source (a neighbour installs the option's MAC).
        let mut proxied = f;
        proxied[6..12].copy_from_slice(&OTHER);
        assert_eq!(parse(&proxied), claim(MAC, IpAddr::V6(v6())));
    }

    #[test]
    fn an_na_without_the_option_claims_the_ethernet_source() {
        let full = frames::unsolicited_na(OTHER, v6());
        let mut f = full[..frames::NA_FRAME_LEN - 8].to_vec();
        f[18..20].copy_from_slice(&24u16.to_be_bytes());
        fix_checksum(&mut f);
        assert_eq!(parse(&f), claim(OTHER, IpAddr::V6(v6())));
        // Ethernet padding past the IPv6 payload is ignored.
        f.extend_from_slice(&[0; 6]);
        assert_eq!(parse(&f), claim(OTHER, IpAddr::V6(v6())));
    }

    #[test]
    fn invalid_nas_claim_nothing() {
        let good = frames::unsolicited_na(OTHER, v6());
        let mut bad_sum = good;
        bad_sum[57] ^= 1;
        assert_eq!(parse(&bad_sum), None, "checksum");
        for (at, value, what) in [
            (14, 0x40, "IPv4 version nibble"),
            (20, 17, "next header UDP"),
            (21, 64, "hop limit below 255"),
            (54, 135, "a solicitation"),
            (55, 1, "code 1"),
        ] {
            let mut f = good;
            f[at] = value;
            fix_checksum(&mut f);
            assert_eq!(parse(&f), None, "{what}");
        }
        let mut zero_option = good;
        zero_option[79] = 0;
        fix_checksum(&mut zero_option);
        assert_eq!(parse(&zero_option), None, "option of length 0");
        let mut long_option = good;
        long_option[79] = 2;
        fix_checksum(&mut long_option);
        assert_eq!(parse(&long_option), None, "option past the end");
        let mut long_payload = good;
        long_payload[18..20].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(parse(&long_payload), None, "payload length past the frame");
    }

    #[test]
    fn every_truncation_and_garbage_is_refused_without_panicking() {
        for full in [
            frames::garp_request(OTHER, v4()).to_vec(),
            frames::garp_reply(OTHER, v4()).to_vec(),
            frames::unsolicited_na(OTHER, v6()).to_vec(),
        ] {
            assert!(parse(&full).is_some());
            for len in 0..full.len() {
                assert_eq!(parse(&full[..len]), None, "truncated to {len}");
            }
        }
        // Deterministic pseudo-random garbage, also with the two interesting EtherTypes.
        let mut x: u32 = 0x1234_5678;
        for len in 0..200usize {
            for ethertype in [None, Some(ETH_P_ARP), Some(ETH_P_IPV6)] {
                let mut f: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                if let (Some(t), true) = (ethertype, len >= 14) {
                    f[12..14].copy_from_slice(&t.to_be_bytes());
                }
                let _ = parse(&f);
            }
        }
    }
}
