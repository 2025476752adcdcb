//! Byte-exact Ethernet frames that announce a VIP: gratuitous ARP in its two proper forms and the
//! IPv6 unsolicited Neighbor Advertisement.
//!
//! Pure functions, no I/O. The announcement task of [`crate::NetlinkVip`] builds one round with
//! [`round`] and hands each frame to [`crate::PacketSender`]; tests and diagnostics may send single
//! frames the same way. The forms are the ones a Linux client accepts as *gratuitous* even inside
//! its neighbour `locktime` (kernel `arp_is_garp` / `ndisc_recv_na`):
//!
//! * ARP request: sender IP = target IP = VIP, target MAC 00:00:00:00:00:00, to broadcast. This is
//!   byte for byte what the kernel itself sends for `arp_notify` (see the captured vector below).
//! * ARP reply: sender IP = target IP = VIP, target MAC = sender MAC, to broadcast.
//! * NA: ICMPv6 type 136 from the VIP itself to ff02::1, hop limit 255, override flag set
//!   (solicited and router clear), target = VIP, target link-layer address option = our MAC, to
//!   33:33:00:00:00:01. This is what the kernel sends for `ndisc_notify`, including the choice of
//!   the announced address (not the link-local one) as IPv6 source.
//!
//! Frames are not padded to the 60-byte Ethernet minimum: like the kernel's own, they leave that
//! to the driver.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A MAC address.
pub type Mac = [u8; 6];

/// EtherType of ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// Length of a gratuitous ARP frame (14 Ethernet + 28 ARP).
pub const ARP_FRAME_LEN: usize = 42;
/// Length of an unsolicited NA frame (14 Ethernet + 40 IPv6 + 24 NA + 8 option).
pub const NA_FRAME_LEN: usize = 86;
/// Ethernet broadcast.
pub const BROADCAST_MAC: Mac = [0xff; 6];
/// Ethernet address of the IPv6 all-nodes group ff02::1.
pub const ALL_NODES_MAC: Mac = [0x33, 0x33, 0, 0, 0, 1];
/// The IPv6 all-nodes group.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

const ARP_OP_REQUEST: u16 = 1;
const ARP_OP_REPLY: u16 = 2;
pub(crate) const IPPROTO_ICMPV6: u8 = 58;
pub(crate) const ND_HOP_LIMIT: u8 = 255;
pub(crate) const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// R = 0x80, S = 0x40, O = 0x20 in the first byte after the checksum.
const NA_FLAG_OVERRIDE: u8 = 0x20;
pub(crate) const ND_OPT_TARGET_LL_ADDR: u8 = 2;
/// ICMPv6 part of the NA: 24 bytes of message + 8 bytes of option.
const NA_ICMP_LEN: usize = 32;

/// A gratuitous ARP request: "who has VIP? tell VIP", target MAC zero, to broadcast.
pub fn garp_request(mac: Mac, ip: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    arp(ARP_OP_REQUEST, mac, ip, [0; 6])
}

/// A gratuitous ARP reply: "VIP is at MAC", target IP = sender IP and target MAC = sender MAC,
/// to broadcast.
pub fn garp_reply(mac: Mac, ip: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    arp(ARP_OP_REPLY, mac, ip, mac)
}

fn arp(op: u16, mac: Mac, ip: Ipv4Addr, target_mac: Mac) -> [u8; ARP_FRAME_LEN] {
    let mut f = [0u8; ARP_FRAME_LEN];
    f[0..6].copy_from_slice(&BROADCAST_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol type: IPv4
    f[18] = 6; // hardware address length
    f[19] = 4; // protocol address length
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&target_mac);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// An unsolicited Neighbor Advertisement for `ip` at `mac`, override flag set, to all nodes.
pub fn unsolicited_na(mac: Mac, ip: Ipv6Addr) -> [u8; NA_FRAME_LEN] {
    na(mac, ip, NA_FLAG_OVERRIDE)
}

/// An NA with the given flags byte (R = 0x80, S = 0x40, O = 0x20).
fn na(mac: Mac, ip: Ipv6Addr, flags: u8) -> [u8; NA_FRAME_LEN] {
    let mut f = [0u8; NA_FRAME_LEN];
    // Ethernet
    f[0..6].copy_from_slice(&ALL_NODES_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    // IPv6: version 6, traffic class 0, flow label 0
    let ip6 = &mut f[14..54];
    ip6[0] = 0x60;
    ip6[4..6].copy_from_slice(&(NA_ICMP_LEN as u16).to_be_bytes());
    ip6[6] = IPPROTO_ICMPV6;
    ip6[7] = ND_HOP_LIMIT;
    ip6[8..24].copy_from_slice(&ip.octets());
    ip6[24..40].copy_from_slice(&ALL_NODES.octets());
    // ICMPv6 Neighbor Advertisement
    let icmp = &mut f[54..86];
    icmp[0] = ICMPV6_NEIGHBOR_ADVERTISEMENT;
    icmp[1] = 0; // code
    icmp[4] = flags;
    icmp[8..24].copy_from_slice(&ip.octets());
    icmp[24] = ND_OPT_TARGET_LL_ADDR;
    icmp[25] = 1; // option length in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    let sum = icmpv6_checksum(ip, ALL_NODES, icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The ICMPv6 checksum (RFC 4443 §2.3) of `message` (its checksum field zero) between `src` and
/// `dst`: the one's complement of the one's-complement sum over the IPv6 pseudo-header and the
/// message.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut pseudo = [0u8; 40];
    pseudo[0..16].copy_from_slice(&src.octets());
    pseudo[16..32].copy_from_slice(&dst.octets());
    pseudo[32..36].copy_from_slice(&(message.len() as u32).to_be_bytes());
    pseudo[39] = IPPROTO_ICMPV6;
    let sum = ones_complement_sum(ones_complement_sum(0, &pseudo), message);
    !(sum as u16)
}

/// RFC 1071 sum of `data` as big-endian 16-bit words (an odd last byte padded with zero), added
/// to `initial` and folded to 16 bits.
pub(crate) fn ones_complement_sum(initial: u32, data: &[u8]) -> u32 {
    let mut sum = initial;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// The frames of one announcement round for the given addresses: ARP request and reply for the
/// IPv4 VIP, one NA for the IPv6 VIP.
pub fn round(mac: Mac, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) -> Vec<Vec<u8>> {
    let mut frames = Vec::with_capacity(3);
    if let Some(ip) = v4 {
        frames.push(garp_request(mac, ip).to_vec());
        frames.push(garp_reply(mac, ip).to_vec());
    }
    if let Some(ip) = v6 {
        frames.push(unsolicited_na(mac, ip).to_vec());
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC1: Mac = [0x02, 0, 0, 0, 0, 0x01];
    const MAC3: Mac = [0x02, 0, 0, 0, 0, 0x03];

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn vip4() -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 1, 100)
    }

    fn vip6() -> Ipv6Addr {
        "fd77:1::100".parse().unwrap()
    }

    /// Captured with tcpdump on the peer of a veth whose owner (MAC 02:00:00:00:00:01, address
    /// 10.77.1.100/24, `net.ipv4.conf.eth0.arp_notify=1`) was brought up: Linux 6.18's own
    /// gratuitous ARP.
    const KERNEL_GARP_REQUEST: &str = "ffff ffff ffff 0200 0000 0001 0806 0001
        0800 0604 0001 0200 0000 0001 0a4d 0164 0000 0000 0000 0a4d 0164";

    /// Same capture, `net.ipv6.conf.eth0.ndisc_notify=1`, fd77:1::100/64 added with nodad: the
    /// kernel's own unsolicited NA (checksum 0x57ad).
    const KERNEL_NA_MAC1: &str = "3333 0000 0001 0200 0000 0001 86dd 6000
        0000 0020 3aff fd77 0001 0000 0000 0000 0000 0000 0100 ff02 0000 0000 0000 0000
        0000 0000 0001 8800 57ad 2000 0000 fd77 0001 0000 0000 0000 0000 0000 0100 0201
        0200 0000 0001";

    /// Same capture after `ip link set eth0 address 02:00:00:00:00:03` (checksum 0x57ab).
    const KERNEL_NA_MAC3: &str = "3333 0000 0001 0200 0000 0003 86dd 6000
        0000 0020 3aff fd77 0001 0000 0000 0000 0000 0000 0100 ff02 0000 0000 0000 0000
        0000 0000 0001 8800 57ab 2000 0000 fd77 0001 0000 0000 0000 0000 0000 0100 0201
        0200 0000 0003";

    #[test]
    fn garp_request_matches_the_kernels_own() {
        assert_eq!(
            garp_request(MAC1, vip4()).to_vec(),
            hex(KERNEL_GARP_REQUEST)
        );
    }

    #[test]
    fn garp_reply_fields() {
        let f = garp_reply(MAC1, vip4());
        let expected = hex("ffff ffff ffff 0200 0000 0001 0806 \
             0001 0800 06 04 0002 \
             0200 0000 0001 0a4d 0164 \
             0200 0000 0001 0a4d 0164");
        assert_eq!(f.to_vec(), expected);
        // The two properties `arp_is_garp` checks for a reply.
        assert_eq!(f[28..32], f[38..42], "sender IP = target IP");
        assert_eq!(f[22..28], f[32..38], "sender MAC = target MAC");
        assert_eq!(u16::from_be_bytes([f[20], f[21]]), ARP_OP_REPLY);
    }

    #[test]
    fn na_matches_the_kernels_own() {
        assert_eq!(unsolicited_na(MAC1, vip6()).to_vec(), hex(KERNEL_NA_MAC1));
        assert_eq!(unsolicited_na(MAC3, vip6()).to_vec(), hex(KERNEL_NA_MAC3));
    }

    #[test]
    fn na_fields() {
        let f = unsolicited_na(MAC1, vip6());
        assert_eq!(f[0..6], ALL_NODES_MAC);
        assert_eq!(f[14] >> 4, 6, "IPv6");
        assert_eq!(f[20], IPPROTO_ICMPV6);
        assert_eq!(f[21], 255, "hop limit");
        assert_eq!(f[22..38], vip6().octets(), "source = the VIP");
        assert_eq!(f[38..54], ALL_NODES.octets());
        assert_eq!(f[54], 136);
        assert_eq!(f[58], 0x20, "override only: not solicited, not router");
        assert_eq!(f[62..78], vip6().octets(), "target");
        assert_eq!(
            f[78..86],
            [2, 1, 0x02, 0, 0, 0, 0, 0x01],
            "target link-layer option"
        );
    }

    #[test]
    fn na_checksum_verifies_for_any_address() {
        // A receiver sums pseudo-header and message *including* the checksum and expects 0xffff.
        for (mac, ip) in [
            (MAC1, vip6()),
            (
                [0xde, 0xad, 0xbe, 0xef, 0x00, 0x42],
                "2001:db8::ffff".parse().unwrap(),
            ),
            (
                [0xff; 6],
                "fdff:ffff:ffff:ffff:ffff:ffff:ffff:fffe".parse().unwrap(),
            ),
        ] {
            let f = unsolicited_na(mac, ip);
            let mut pseudo = [0u8; 40];
            pseudo[0..16].copy_from_slice(&ip.octets());
            pseudo[16..32].copy_from_slice(&ALL_NODES.octets());
            pseudo[35] = 32;
            pseudo[39] = 58;
            assert_eq!(
                ones_complement_sum(ones_complement_sum(0, &pseudo), &f[54..]),
                0xffff
            );
        }
    }

    #[test]
    fn ones_complement_sum_matches_rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (checksum 220d).
        assert_eq!(ones_complement_sum(0, &hex("0001 f203 f4f5 f6f7")), 0xddf2);
        // An odd trailing byte counts as the high byte of a word.
        assert_eq!(ones_complement_sum(0, &[0x12]), 0x1200);
    }

    #[test]
    fn round_has_both_arp_forms_and_the_na() {
        let frames = round(MAC1, Some(vip4()), Some(vip6()));
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0], garp_request(MAC1, vip4()));
        assert_eq!(frames[1], garp_reply(MAC1, vip4()));
        assert_eq!(frames[2], unsolicited_na(MAC1, vip6()));
        assert_eq!(round(MAC1, None, Some(vip6())).len(), 1);
    }
}
