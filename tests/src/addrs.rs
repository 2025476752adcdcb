//! Which hosts carry the VIP: read with `ip -o addr` (simple checks) or with a raw rtnetlink
//! dump per namespace (fast enough for the two-holder checker).
//!
//! [`crate::site::Site::vip_holders`] uses [`has_address`] (one `ip -n NS -o addr show dev eth0`
//! per host). [`NetlinkAddrs`] keeps one `NETLINK_ROUTE` socket per host namespace, opened from a
//! short-lived thread that entered the namespace; a dump of a namespace's addresses then costs
//! tens of microseconds from any thread. [`crate::holders`] samples with it.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread;

use anyhow::{bail, Context, Result};
use nix::libc;

use crate::names::HOST_IFACE;
use crate::netns;

/// Parses `ip -o addr show` output: the addresses (without prefix length) it lists.
pub fn parse_ip_addr(output: &str) -> Vec<IpAddr> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

/// Whether `eth0` in namespace `ns` has `addr` (as `ip -n NS -o addr show dev eth0` says).
pub fn has_address(ns: &str, addr: IpAddr) -> Result<bool> {
    let out = netns::ip(&["-n", ns, "-o", "addr", "show", "dev", HOST_IFACE])?;
    Ok(parse_ip_addr(&out).contains(&addr))
}

/// Receive buffer of one netlink read.
const NL_BUF_BYTES: usize = 32 * 1024;
/// A dump that does not finish within this long fails (SO_RCVTIMEO).
const NL_TIMEOUT_MS: i64 = 2_000;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const NLMSG_HDR_BYTES: usize = 16;
const IFADDRMSG_BYTES: usize = 8;

/// One rtnetlink socket in one namespace, and that namespace's `eth0` index.
#[derive(Debug)]
struct NsSocket {
    fd: OwnedFd,
    ifindex: u32,
}

/// Rtnetlink sockets into several namespaces, for fast address dumps. See the module docs.
#[derive(Debug)]
pub struct NetlinkAddrs {
    sockets: Vec<NsSocket>,
    seq: u32,
    buf: Vec<u8>,
}

impl NetlinkAddrs {
    /// Opens one socket per namespace in `namespaces` (index = position).
    pub fn open(namespaces: &[String]) -> Result<Self> {
        let mut sockets = Vec::with_capacity(namespaces.len());
        for ns in namespaces {
            let ns = ns.clone();
            let socket = thread::spawn(move || open_in(&ns))
                .join()
                .map_err(|_| anyhow::anyhow!("netlink opener thread panicked"))??;
            sockets.push(socket);
        }
        Ok(Self {
            sockets,
            seq: 1,
            buf: vec![0; NL_BUF_BYTES],
        })
    }

    /// Number of namespaces.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether no namespace was opened.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The addresses on `eth0` of namespace `index`, straight from the kernel.
    pub fn addresses(&mut self, index: usize) -> Result<Vec<IpAddr>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let socket = &self.sockets[index];
        send_dump_request(&socket.fd, seq)?;
        let mut found = Vec::new();
        loop {
            // SAFETY: recv into our own buffer of the given length.
            let n = unsafe {
                libc::recv(
                    socket.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error()).context("netlink recv");
            }
            match parse_dump(&self.buf[..n as usize], seq, socket.ifindex, &mut found)? {
                DumpState::Done => return Ok(found),
                DumpState::More => {}
            }
        }
    }
}

/// Opens the socket; runs in a throwaway thread that enters `ns` first.
fn open_in(ns: &str) -> Result<NsSocket> {
    netns::enter(ns)?;
    let name = std::ffi::CString::new(HOST_IFACE)?;
    // SAFETY: a NUL-terminated name; if_nametoindex only reads it.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("{HOST_IFACE} not found in namespace {ns}");
    }
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("netlink socket");
    }
    // SAFETY: `raw` is a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let tv = libc::timeval {
        tv_sec: NL_TIMEOUT_MS / 1000,
        tv_usec: (NL_TIMEOUT_MS % 1000) * 1000,
    };
    // SAFETY: setsockopt with a correctly sized timeval.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_RCVTIMEO");
    }
    Ok(NsSocket { fd, ifindex })
}

/// Sends RTM_GETADDR with NLM_F_DUMP to the kernel.
fn send_dump_request(fd: &OwnedFd, seq: u32) -> Result<()> {
    let len = (NLMSG_HDR_BYTES + IFADDRMSG_BYTES) as u32;
    let mut msg = Vec::with_capacity(len as usize);
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&libc::RTM_GETADDR.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0]);
    // SAFETY: sockaddr_nl zeroed is the kernel's address (pid 0); the buffer is ours.
    let rc = unsafe {
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as u16;
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("netlink send");
    }
    Ok(())
}

/// Whether a dump has more datagrams to come.
#[derive(Debug, PartialEq, Eq)]
enum DumpState {
    Done,
    More,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses one datagram of an address dump, appending `ifindex`'s addresses to `out`.
fn parse_dump(buf: &[u8], seq: u32, ifindex: u32, out: &mut Vec<IpAddr>) -> Result<DumpState> {
    let mut off = 0;
    while off + NLMSG_HDR_BYTES <= buf.len() {
        let len = u32_at(buf, off) as usize;
        let kind = u16_at(buf, off + 4);
        let msg_seq = u32_at(buf, off + 8);
        if len < NLMSG_HDR_BYTES || off + len > buf.len() {
            bail!("malformed netlink message (len {len})");
        }
        let body = &buf[off + NLMSG_HDR_BYTES..off + len];
        off += (len + 3) & !3;
        if msg_seq != seq {
            continue;
        }
        match i32::from(kind) {
            libc::NLMSG_DONE => return Ok(DumpState::Done),
            libc::NLMSG_ERROR => {
                let errno = if body.len() >= 4 {
                    u32_at(body, 0) as i32
                } else {
                    0
                };
                bail!(
                    "netlink dump failed: {}",
                    std::io::Error::from_raw_os_error(-errno)
                );
            }
            k if k == i32::from(libc::RTM_NEWADDR) => {
                if let Some(addr) = address_of(body, ifindex) {
                    out.push(addr);
                }
            }
            _ => {}
        }
    }
    Ok(DumpState::More)
}

/// The address of one RTM_NEWADDR body if it is on `ifindex` (IFA_LOCAL, else IFA_ADDRESS).
fn address_of(body: &[u8], ifindex: u32) -> Option<IpAddr> {
    if body.len() < IFADDRMSG_BYTES || u32_at(body, 4) != ifindex {
        return None;
    }
    let family = i32::from(body[0]);
    let mut found = None;
    let mut off = IFADDRMSG_BYTES;
    while off + 4 <= body.len() {
        let len = u16_at(body, off) as usize;
        let kind = u16_at(body, off + 2);
        if len < 4 || off + len > body.len() {
            break;
        }
        let data = &body[off + 4..off + len];
        let ip = match (family, data.len()) {
            (libc::AF_INET, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(data).ok()?)),
            (libc::AF_INET6, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(data).ok()?)),
            _ => None,
        };
        match kind {
            IFA_LOCAL if ip.is_some() => return ip,
            IFA_ADDRESS if ip.is_some() => found = ip,
            _ => {}
        }
        off += (len + 3) & !3;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_o_addr() {
        let out = "2: eth0    inet 10.77.0.10/24 scope global eth0\\       valid_lft forever\n\
                   2: eth0    inet 10.77.0.100/24 scope global secondary eth0:vip\\  valid_lft\n\
                   2: eth0    inet6 fd77::100/64 scope global nodad \\       valid_lft\n";
        let addrs = parse_ip_addr(out);
        assert_eq!(
            addrs,
            [
                "10.77.0.10".parse::<IpAddr>().unwrap(),
                "10.77.0.100".parse().unwrap(),
                "fd77::100".parse().unwrap()
            ]
        );
        assert!(parse_ip_addr("").is_empty());
    }

    fn newaddr(seq: u32, family: u8, index: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![family, 24, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        for (kind, data) in attrs {
            let len = 4 + data.len();
            body.extend_from_slice(&(len as u16).to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(data);
            body.resize((body.len() + 3) & !3, 0);
        }
        let mut msg = Vec::new();
        msg.extend_from_slice(&((NLMSG_HDR_BYTES + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&libc::RTM_NEWADDR.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn parses_a_dump() {
        let mut buf = newaddr(5, libc::AF_INET as u8, 2, &[(IFA_LOCAL, &[10, 77, 0, 100])]);
        buf.extend(newaddr(
            5,
            libc::AF_INET as u8,
            3,
            &[(IFA_LOCAL, &[1, 2, 3, 4])],
        ));
        buf.extend(newaddr(
            4,
            libc::AF_INET as u8,
            2,
            &[(IFA_LOCAL, &[9, 9, 9, 9])],
        ));
        let v6 = "fd77::100".parse::<std::net::Ipv6Addr>().unwrap().octets();
        buf.extend(newaddr(5, libc::AF_INET6 as u8, 2, &[(IFA_ADDRESS, &v6)]));
        let mut out = Vec::new();
        assert_eq!(parse_dump(&buf, 5, 2, &mut out).unwrap(), DumpState::More);
        assert_eq!(
            out,
            [
                "10.77.0.100".parse::<IpAddr>().unwrap(),
                "fd77::100".parse().unwrap()
            ]
        );
        let mut done = Vec::new();
        done.extend_from_slice(&(NLMSG_HDR_BYTES as u32 + 4).to_ne_bytes());
        done.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        done.extend_from_slice(&0u16.to_ne_bytes());
        done.extend_from_slice(&5u32.to_ne_bytes());
        done.extend_from_slice(&[0; 8]);
        assert_eq!(parse_dump(&done, 5, 2, &mut out).unwrap(), DumpState::Done);
    }
}
