//! [`PacketSender`]: a send-only `AF_PACKET` raw socket that puts whole Ethernet frames from
//! [`crate::frames`] on one interface.
//!
//! [`crate::NetlinkVip`] opens one at creation (so a missing `CAP_NET_RAW` shows up at startup)
//! and its announcement task sends every round through it. The socket is opened with protocol 0,
//! so the kernel never queues received frames on it, and non-blocking, so a full device queue
//! makes a send fail instead of stalling the async task. The socket belongs to the network
//! namespace of the thread that opened it.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::frames::Mac;

/// A send-only raw Ethernet socket.
#[derive(Debug)]
pub struct PacketSender {
    fd: OwnedFd,
}

impl PacketSender {
    /// Opens the socket. Fails with `EPERM` without `CAP_NET_RAW`.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(PacketSender { fd })
    }

    /// Sends one complete Ethernet frame (destination MAC, source MAC, EtherType, payload) out
    /// of interface `ifindex`, as is.
    pub fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        let (dst, ethertype) = ethernet_header(frame)?;
        let index = i32::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too big"))?;
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ethertype.to_be();
        addr.sll_ifindex = index;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&dst);
        // SAFETY: the buffer and the address point to live memory of the given lengths.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        if sent as usize != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", frame.len()),
            ));
        }
        Ok(())
    }
}

/// Destination MAC and EtherType of `frame`.
fn ethernet_header(frame: &[u8]) -> io::Result<(Mac, u16)> {
    match frame {
        [d0, d1, d2, d3, d4, d5, _, _, _, _, _, _, t0, t1, ..] => Ok((
            [*d0, *d1, *d2, *d3, *d4, *d5],
            u16::from_be_bytes([*t0, *t1]),
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an Ethernet frame is at least 14 bytes",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames;

    #[test]
    fn reads_destination_and_ethertype() {
        let na = frames::unsolicited_na([2, 0, 0, 0, 0, 1], "fd77::1".parse().unwrap());
        assert_eq!(
            ethernet_header(&na).unwrap(),
            (frames::ALL_NODES_MAC, frames::ETH_P_IPV6)
        );
        let arp = frames::garp_reply([2, 0, 0, 0, 0, 1], "10.77.0.1".parse().unwrap());
        assert_eq!(
            ethernet_header(&arp).unwrap(),
            (frames::BROADCAST_MAC, frames::ETH_P_ARP)
        );
        let err = ethernet_header(&[0u8; 13]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
