//! [`ConflictWatch`]: listens on the VIP's interface for other hosts that answer for the VIP —
//! an ARP packet whose sender IP is our IPv4 VIP, or a Neighbor Advertisement whose target is our
//! IPv6 VIP, from a MAC that is not this interface's — and remembers what it saw.
//!
//! This is the link-layer evidence of two holders that works when the hosts cannot talk (two
//! sites with different keys, or a host that is not muster at all: a forgotten keepalived, a
//! static address). The agent binary spawns one at startup whenever a VIP is configured,
//! whether or not this host holds it, and asks [`ConflictWatch::current`] once in a while; it
//! decides what a sighting means (a conflict only while this host holds the VIP: during a
//! failover the previous holder of the same cluster announces from its own MAC for a moment).
//!
//! How: an `AF_PACKET` socket with a classic BPF filter (ARP, and ICMPv6 type 136 without
//! extension headers) bound to the interface, read by a small OS thread that sleeps in `poll`
//! on the socket and on a stop event ([`ConflictWatch::stop`] and drop write it), so it wakes
//! only for a frame the filter passed, a stop, or its interface check every
//! [`IFINDEX_CHECK_S`] (it used to wake five times a second for a receive timeout). Frames the
//! host sent itself (`PACKET_OUTGOING`) and frames carrying the interface's own MAC (asked of the
//! socket at every sighting, so a MAC change is followed) are not sightings. The socket is rebound when the interface is missing,
//! goes away or is re-created. It belongs to the network namespace of the thread that calls
//! [`ConflictWatch::spawn`].
//!
//! Bounded: at most [`CONFLICT_SIGHTINGS_MAX`] distinct (MAC, address) pairs are remembered; a
//! new one beyond that replaces the one seen longest ago. Not seen: a host that has the address
//! but never sends ARP or NA for it (and whose replies to others' requests are unicast and so
//! never reach this interface on a switched LAN).

use std::ffi::CString;
use std::io;
use std::mem;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use tracing::{debug, warn};

use crate::claim::{self, Claim};
use crate::config::VipConfig;
use crate::error::{Action, VipError};
use crate::frames::Mac;

/// Most distinct (MAC, address) pairs a [`ConflictWatch`] remembers.
pub const CONFLICT_SIGHTINGS_MAX: usize = 16;
/// What [`ConflictWatch::current`] counts as current: sightings whose last frame is at most
/// this old.
pub const CONFLICT_RECENT_S: u64 = 10;
/// Receive timeout of the socket: a guard only, the thread receives once `poll` says a frame
/// is there.
const RECV_TIMEOUT_MS: i64 = 200;
/// Wait before binding again after the interface was missing or the socket failed.
const REBIND_DELAY_MS: u64 = 1000;
/// How often the thread checks that the interface name still has the index it is bound to.
const IFINDEX_CHECK_S: u64 = 5;
/// Bytes of a frame the filter passes up: an NA with a few options fits.
const SNAP_LEN_BYTES: u32 = 256;

/// Another MAC seen answering for one of our VIP addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    /// The other host's MAC.
    pub mac: Mac,
    /// Our VIP address it answered for.
    pub address: IpAddr,
    /// When its first frame arrived (since this entry was created).
    pub first_seen: Instant,
    /// When its latest frame arrived.
    pub last_seen: Instant,
    /// Frames seen.
    pub frames: u64,
}

/// Counters of a [`ConflictWatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchStats {
    /// Frames claiming a VIP address that this host sent, or that carry this interface's own
    /// MAC (not sightings).
    pub own_frames: u64,
    /// Frames claiming a VIP address from another MAC.
    pub other_frames: u64,
    /// Times the socket was bound to the interface (1 in a quiet life).
    pub binds: u64,
}

/// Formats a MAC as `02:00:5e:00:01:01`.
pub fn format_mac(mac: &Mac) -> String {
    let [a, b, c, d, e, f] = *mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// State shared between the handle and the thread.
struct Shared {
    stop: AtomicBool,
    /// Written on stop, so the thread's `poll` returns.
    stop_event: EventFd,
    sightings: Mutex<Vec<Sighting>>,
    own_frames: AtomicU64,
    other_frames: AtomicU64,
    binds: AtomicU64,
}

impl Shared {
    fn new() -> io::Result<Shared> {
        Ok(Shared {
            stop: AtomicBool::new(false),
            stop_event: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
            sightings: Mutex::default(),
            own_frames: AtomicU64::default(),
            other_frames: AtomicU64::default(),
            binds: AtomicU64::default(),
        })
    }

    /// Tells the thread to stop and wakes it.
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // Cannot fail short of a counter overflow; the flag is what the thread reads.
        let _ = self.stop_event.write(1);
    }

    /// Waits up to `timeout` for `fd` to be readable (`None`: only for the stop event); returns
    /// whether `fd` is readable.
    fn wait(&self, fd: Option<&OwnedFd>, timeout: Duration) -> io::Result<bool> {
        // Whole milliseconds, rounded up: rounded down, the last millisecond before a check
        // would be a busy loop of zero timeouts.
        let ms = timeout.as_micros().div_ceil(1000);
        let timeout = u16::try_from(ms).map_or(PollTimeout::MAX, PollTimeout::from);
        let stop = PollFd::new(self.stop_event.as_fd(), PollFlags::POLLIN);
        let result = match fd {
            Some(fd) => {
                let mut fds = [stop, PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                nix::poll::poll(&mut fds, timeout).map(|_| {
                    fds[1].revents().is_some_and(|r| {
                        r.intersects(PollFlags::POLLIN | PollFlags::POLLERR | PollFlags::POLLHUP)
                    })
                })
            }
            None => nix::poll::poll(&mut [stop], timeout).map(|_| false),
        };
        match result {
            Ok(readable) => Ok(readable),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Records one frame from another MAC, keeping at most [`CONFLICT_SIGHTINGS_MAX`] entries.
    fn record(&self, claim: Claim, now: Instant) {
        self.other_frames.fetch_add(1, Ordering::Relaxed);
        let mut sightings = self.sightings.lock().unwrap_or_else(|e| e.into_inner());
        record(&mut sightings, claim, now);
    }
}

fn record(sightings: &mut Vec<Sighting>, claim: Claim, now: Instant) {
    if let Some(s) = sightings
        .iter_mut()
        .find(|s| s.mac == claim.mac && s.address == claim.address)
    {
        s.last_seen = now;
        s.frames = s.frames.saturating_add(1);
        return;
    }
    let new = Sighting {
        mac: claim.mac,
        address: claim.address,
        first_seen: now,
        last_seen: now,
        frames: 1,
    };
    if sightings.len() < CONFLICT_SIGHTINGS_MAX {
        sightings.push(new);
    } else if let Some(oldest) = sightings.iter_mut().min_by_key(|s| s.last_seen) {
        *oldest = new;
    }
}

/// Watches the VIP's interface for other MACs answering for the VIP. See the module docs.
pub struct ConflictWatch {
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ConflictWatch {
    /// Validates `config`, opens the socket (so a missing `CAP_NET_RAW` is an error here) and
    /// starts the thread. The interface need not exist yet: the thread binds when it appears.
    pub fn spawn(config: &VipConfig) -> Result<ConflictWatch, VipError> {
        config.validate()?;
        let socket = open_filtered().map_err(|e| VipError::io(Action::OpenPacketSocket, e))?;
        let shared =
            Arc::new(Shared::new().map_err(|e| VipError::io(Action::OpenPacketSocket, e))?);
        let listener = Listener {
            interface: config.interface.clone(),
            addresses: config.addresses().iter().map(|c| c.addr()).collect(),
            shared: shared.clone(),
        };
        let thread = thread::Builder::new()
            .name("vip-conflict".into())
            .spawn(move || listener.run(socket))
            .map_err(|e| VipError::io(Action::OpenPacketSocket, e))?;
        Ok(ConflictWatch {
            shared,
            thread: Some(thread),
        })
    }

    /// What was seen within the last [`CONFLICT_RECENT_S`].
    pub fn current(&self) -> Vec<Sighting> {
        self.seen_within(Duration::from_secs(CONFLICT_RECENT_S))
    }

    /// What was seen within the last `window`, most recent first.
    pub fn seen_within(&self, window: Duration) -> Vec<Sighting> {
        let now = Instant::now();
        let sightings = self
            .shared
            .sightings
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut recent: Vec<Sighting> = sightings
            .iter()
            .filter(|s| now.saturating_duration_since(s.last_seen) <= window)
            .copied()
            .collect();
        recent.sort_by_key(|s| std::cmp::Reverse(s.last_seen));
        recent
    }

    /// The counters.
    pub fn stats(&self) -> WatchStats {
        WatchStats {
            own_frames: self.shared.own_frames.load(Ordering::Relaxed),
            other_frames: self.shared.other_frames.load(Ordering::Relaxed),
            binds: self.shared.binds.load(Ordering::Relaxed),
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shared.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ConflictWatch {
    /// Asks the thread to stop; it exits at once, unjoined.
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// The thread's side.
struct Listener {
    interface: String,
    addresses: Vec<IpAddr>,
    shared: Arc<Shared>,
}

impl Listener {
    fn run(self, first: OwnedFd) {
        let mut socket = Some(first);
        let mut warned = false;
        while !self.stopped() {
            let fd = match socket.take() {
                Some(fd) => fd,
                None => match open_filtered() {
                    Ok(fd) => fd,
                    Err(e) => {
                        warn!(error = %e, "VIP conflict watch: cannot open a packet socket");
                        self.sleep(Duration::from_millis(REBIND_DELAY_MS));
                        continue;
                    }
                },
            };
            let index = match bind(&fd, &self.interface) {
                Ok(index) => index,
                Err(e) => {
                    if !warned {
                        warn!(interface = %self.interface, error = %e, "VIP conflict watch: cannot listen on the interface yet; retrying");
                        warned = true;
                    }
                    socket = Some(fd);
                    self.sleep(Duration::from_millis(REBIND_DELAY_MS));
                    continue;
                }
            };
            warned = false;
            self.shared.binds.fetch_add(1, Ordering::Relaxed);
            debug!(interface = %self.interface, index, "VIP conflict watch listening");
            if let Err(e) = self.listen(&fd, index) {
                warn!(interface = %self.interface, error = %e, "VIP conflict watch: receive failed; listening again");
                self.sleep(Duration::from_millis(REBIND_DELAY_MS));
            }
            // The socket is dropped here; a new one is opened and bound at the top.
        }
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Sleeps `total`, returning early on stop.
    fn sleep(&self, total: Duration) {
        let until = Instant::now() + total;
        while !self.stopped() && Instant::now() < until {
            if self
                .shared
                .wait(None, until.saturating_duration_since(Instant::now()))
                .is_err()
            {
                thread::sleep(until.saturating_duration_since(Instant::now()));
            }
        }
    }

    /// Receives until stopped (`Ok`) or until the socket fails or the interface changes.
    fn listen(&self, fd: &OwnedFd, index: u32) -> io::Result<()> {
        let mut buf = [0u8; SNAP_LEN_BYTES as usize];
        let mut checked = Instant::now();
        let check_every = Duration::from_secs(IFINDEX_CHECK_S);
        while !self.stopped() {
            if checked.elapsed() >= check_every {
                checked = Instant::now();
                if interface_index(&self.interface).ok() != Some(index) {
                    return Err(io::Error::other(
                        "the interface went away or was re-created",
                    ));
                }
            }
            let next_check = check_every.saturating_sub(checked.elapsed());
            if !self.shared.wait(Some(fd), next_check)? {
                continue;
            }
            let Some((len, outgoing)) = receive(fd, &mut buf)? else {
                continue;
            };
            let Some(claim) = buf.get(..len).and_then(claim::parse) else {
                continue;
            };
            if !self.addresses.contains(&claim.address) {
                continue;
            }
            if outgoing || own_mac(fd).is_some_and(|own| own == claim.mac) {
                self.shared.own_frames.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            debug!(mac = %format_mac(&claim.mac), address = %claim.address, "another MAC answers for the VIP");
            self.shared.record(claim, Instant::now());
        }
        Ok(())
    }
}

/// The classic BPF program: accept ARP, and IPv6 whose next header is ICMPv6 with type 136
/// (no extension headers), up to [`SNAP_LEN_BYTES`]; drop everything else in the kernel.
fn filter() -> [libc::sock_filter; 9] {
    const LD_H_ABS: u16 = 0x28;
    const LD_B_ABS: u16 = 0x30;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        op(LD_H_ABS, 0, 0, 12),          // 0: A = EtherType
        op(JEQ_K, 5, 0, 0x0806),         // 1: ARP → 7
        op(JEQ_K, 0, 5, 0x86dd),         // 2: not IPv6 → 8
        op(LD_B_ABS, 0, 0, 14 + 6),      // 3: A = next header
        op(JEQ_K, 0, 3, 58),             // 4: not ICMPv6 → 8
        op(LD_B_ABS, 0, 0, 14 + 40),     // 5: A = ICMPv6 type
        op(JEQ_K, 0, 1, 136),            // 6: not an NA → 8
        op(RET_K, 0, 0, SNAP_LEN_BYTES), // 7: accept
        op(RET_K, 0, 0, 0),              // 8: drop
    ]
}

/// An `AF_PACKET` socket with the filter attached, not yet bound: with protocol 0 it receives
/// nothing until [`bind`], so no unfiltered frame is ever queued.
fn open_filtered() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut program = filter();
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: the program outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: RECV_TIMEOUT_MS * 1000,
    };
    // SAFETY: a pointer to a live timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// The index of interface `name` in this thread's network namespace.
fn interface_index(name: &str) -> io::Result<u32> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated string that lives across the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index)
}

/// Binds `fd` to every EtherType on interface `name` (the filter picks); returns the index.
fn bind(fd: &OwnedFd, name: &str) -> io::Result<u32> {
    let index = interface_index(name)?;
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex =
        i32::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a pointer to a live sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index)
}

/// One frame into `buf`: its length (capped at the buffer) and whether this host sent it;
/// `None` on the receive timeout.
fn receive(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<(usize, bool)>> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
    let mut from_len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the buffer and the address point to live memory of the given lengths.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&mut from as *mut libc::sockaddr_ll).cast(),
            &mut from_len,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                Ok(None)
            }
            _ => Err(e),
        };
    }
    let len = usize::try_from(n).unwrap_or(0).min(buf.len());
    Ok(Some((len, from.sll_pkttype == libc::PACKET_OUTGOING)))
}

/// The hardware address of the interface `fd` is bound to (the kernel fills it in on
/// `getsockname`), if it is an Ethernet address.
fn own_mac(fd: &OwnedFd) -> Option<Mac> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: a pointer to a live sockaddr_ll and its length.
    let rc = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut addr as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    if rc < 0 || addr.sll_halen != 6 {
        return None;
    }
    addr.sll_addr.get(..6)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn claim(last: u8) -> Claim {
        Claim {
            mac: [2, 0, 0, 0, 0, last],
            address: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100)),
        }
    }

    #[test]
    fn record_counts_repeats_and_keeps_the_most_recent_pairs() {
        let start = Instant::now();
        let mut sightings = Vec::new();
        record(&mut sightings, claim(1), start);
        record(&mut sightings, claim(1), start + Duration::from_millis(5));
        assert_eq!(sightings.len(), 1);
        assert_eq!(sightings[0].frames, 2);
        assert_eq!(sightings[0].first_seen, start);
        assert_eq!(sightings[0].last_seen, start + Duration::from_millis(5));
        for n in 2..=40u8 {
            record(
                &mut sightings,
                claim(n),
                start + Duration::from_millis(u64::from(n) * 10),
            );
        }
        assert_eq!(sightings.len(), CONFLICT_SIGHTINGS_MAX);
        let mut kept: Vec<u8> = sightings.iter().map(|s| s.mac[5]).collect();
        kept.sort_unstable();
        assert_eq!(kept, (25..=40).collect::<Vec<u8>>(), "the 16 seen last");
    }

    #[test]
    fn filter_jumps_land_on_accept_or_drop() {
        let program = filter();
        let accept = 7;
        let drop = 8;
        for (i, op) in program.iter().enumerate() {
            if op.code == 0x15 {
                for target in [i + 1 + usize::from(op.jt), i + 1 + usize::from(op.jf)] {
                    assert!(target < program.len(), "instruction {i} jumps out");
                    assert!(
                        target == i + 1 || target == accept || target == drop,
                        "instruction {i} jumps to {target}"
                    );
                }
            }
        }
        assert_eq!(program[accept].k, SNAP_LEN_BYTES);
        assert_eq!(program[drop].k, 0);
    }

    #[test]
    fn macs_are_formatted_like_ip_link() {
        assert_eq!(format_mac(&[2, 0x77, 0, 0xab, 0, 1]), "02:77:00:ab:00:01");
    }
}
