//! The client's prober: ICMP echo to the VIP every 5 ms from inside the client namespace,
//! recording when replies arrive. The longest gap between two replies is the outage a client
//! of the VIP saw.
//!
//! A thread enters the client namespace ([`crate::netns::enter`]), opens a raw ICMP socket and
//! loops: send an echo request on every 5 ms tick (ticks missed while descheduled are skipped,
//! not bunched), `poll` for replies until the next tick, and record the arrival time of each
//! echo reply from the VIP carrying this prober's identifier. Reading the log never blocks the
//! thread for long ([`Prober::gap`], [`Prober::wait_reply_after`]).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::libc;

use crate::netns;

/// Interval between echo requests.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// Bytes of one echo request (8-byte header + 8-byte sequence payload).
const ECHO_BYTES: usize = 16;
/// Most reply times kept (at 200 replies/s: over 40 minutes).
const REPLIES_MAX: usize = 500_000;

/// The outage in a window: the longest time between consecutive replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Length of the longest gap.
    pub length: Duration,
    /// When it started (the reply before it).
    pub from: Instant,
    /// Whether replies had not resumed by the end of the window (the gap is then a lower bound).
    pub open: bool,
}

#[derive(Debug, Default)]
struct Log {
    replies: Vec<Instant>,
    sent: u64,
    send_errors: u64,
}

/// A running prober; stopped on drop.
#[derive(Debug)]
pub struct Prober {
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl Prober {
    /// Starts probing `target` from namespace `ns`.
    pub fn start(ns: &str, target: Ipv4Addr) -> Result<Self> {
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (ns, log2, stop2) = (ns.to_owned(), log.clone(), stop.clone());
        let handle = thread::Builder::new()
            .name("vip-prober".into())
            .spawn(move || {
                let fd = match netns::enter(&ns).and_then(|()| open_socket()) {
                    Ok(fd) => {
                        let _ = ready_tx.send(Ok(()));
                        fd
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return Err(e);
                    }
                };
                probe_loop(&fd, target, &log2, &stop2)
            })
            .context("spawning the prober")?;
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => bail!("starting the prober: {e}"),
            Err(_) => bail!("prober did not start within 5 s"),
        }
        Ok(Self {
            log,
            stop,
            handle: Some(handle),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Echo requests sent and replies received so far.
    pub fn counts(&self) -> (u64, usize) {
        let log = self.lock();
        (log.sent, log.replies.len())
    }

    /// The arrival time of the latest reply.
    pub fn last_reply(&self) -> Option<Instant> {
        self.lock().replies.last().copied()
    }

    /// Waits until a reply arrives after `after`; returns the arrival time of the first one.
    pub fn wait_first_reply_after(&self, after: Instant, timeout: Duration) -> Result<Instant> {
        self.wait_reply_after(after, timeout)?;
        let log = self.lock();
        let first = log.replies.partition_point(|t| *t <= after);
        Ok(log.replies[first])
    }

    /// Waits until a reply arrives after `after`; returns its arrival time.
    pub fn wait_reply_after(&self, after: Instant, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = self.last_reply().filter(|t| *t > after) {
                return Ok(t);
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                let (sent, got) = self.counts();
                bail!("no echo reply from the VIP within {timeout:?} ({sent} sent, {got} replies)");
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until replies have arrived steadily (no gap over `max_gap`) for `span`.
    pub fn wait_steady(&self, span: Duration, max_gap: Duration, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if let Some(from) = now.checked_sub(span) {
                if let Some(g) = self.gap(from, now) {
                    if g.length <= max_gap {
                        return Ok(());
                    }
                }
            }
            self.check_alive()?;
            if now >= deadline {
                bail!("client replies from the VIP not steady (gaps ≤ {max_gap:?} for {span:?}) within {timeout:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The longest gap between replies in `[from, to]`, counting from the last reply at or
    /// before `from` (or `from` itself) and up to `to` if replies stopped. `None` if the log
    /// holds no reply at all up to `to`.
    pub fn gap(&self, from: Instant, to: Instant) -> Option<Gap> {
        let log = self.lock();
        longest_gap(&log.replies, from, to)
    }

    /// How many gaps between replies in `[from, to]` exceed `threshold` (counted as in
    /// [`Prober::gap`], including one still open at `to`).
    pub fn gaps_over(&self, from: Instant, to: Instant, threshold: Duration) -> usize {
        let log = self.lock();
        gaps_over(&log.replies, from, to, threshold)
    }

    fn check_alive(&self) -> Result<()> {
        if self.handle.as_ref().is_some_and(|h| h.is_finished()) {
            bail!("the prober thread ended");
        }
        Ok(())
    }

    /// Stops the prober and reports an error it ended with.
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("prober thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The longest gap (see [`Prober::gap`]) over sorted reply times.
pub fn longest_gap(replies: &[Instant], from: Instant, to: Instant) -> Option<Gap> {
    let start = replies.partition_point(|t| *t <= from);
    let end = replies.partition_point(|t| *t <= to);
    let mut prev = if start > 0 { replies[start - 1] } else { from };
    if start == 0 && end == 0 {
        return None;
    }
    let mut best = Gap {
        length: Duration::ZERO,
        from: prev,
        open: false,
    };
    for &t in &replies[start..end] {
        if t - prev > best.length {
            best = Gap {
                length: t - prev,
                from: prev,
                open: false,
            };
        }
        prev = t;
    }
    if to > prev && to - prev > best.length {
        best = Gap {
            length: to - prev,
            from: prev,
            open: true,
        };
    }
    Some(best)
}

/// See [`Prober::gaps_over`].
pub fn gaps_over(replies: &[Instant], from: Instant, to: Instant, threshold: Duration) -> usize {
    let start = replies.partition_point(|t| *t <= from);
    let end = replies.partition_point(|t| *t <= to);
    let mut prev = if start > 0 { replies[start - 1] } else { from };
    let mut n = 0;
    for &t in &replies[start..end] {
        n += usize::from(t - prev > threshold);
        prev = t;
    }
    n + usize::from(to > prev && to - prev > threshold)
}

fn open_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("raw ICMP socket (needs root)");
    }
    // SAFETY: `raw` is a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request with identifier `id` and sequence `seq`.
pub fn echo_request(id: u16, seq: u64) -> [u8; ECHO_BYTES] {
    let mut p = [0u8; ECHO_BYTES];
    p[0] = 8; // echo request
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&(seq as u16).to_be_bytes());
    p[8..16].copy_from_slice(&seq.to_be_bytes());
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// Whether a received IPv4 packet is an echo reply from `from` with identifier `id`.
pub fn is_reply(packet: &[u8], from: Ipv4Addr, id: u16) -> bool {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return false;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    if packet.len() < ihl + 8 || packet[12..16] != from.octets() {
        return false;
    }
    let icmp = &packet[ihl..];
    icmp[0] == 0 && u16::from_be_bytes([icmp[4], icmp[5]]) == id
}

fn probe_loop(fd: &OwnedFd, target: Ipv4Addr, log: &Mutex<Log>, stop: &AtomicBool) -> Result<()> {
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(target).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut buf = [0u8; 1500];
    let mut seq = 0u64;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            seq += 1;
            let packet = echo_request(id, seq);
            // SAFETY: sendto with our packet buffer and a correctly sized sockaddr_in.
            let rc = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    packet.as_ptr().cast(),
                    packet.len(),
                    libc::MSG_DONTWAIT,
                    (&addr as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            {
                let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                l.sent += 1;
                if rc < 0 {
                    l.send_errors += 1;
                }
            }
            next += PROBE_INTERVAL;
            if next < now {
                // Descheduled for more than a tick: skip the missed ones.
                next = now + PROBE_INTERVAL;
            }
        }
        let wait_ms = next
            .saturating_duration_since(Instant::now())
            .as_millis()
            .min(5) as i32;
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
        if ready <= 0 {
            continue;
        }
        loop {
            // SAFETY: recv into our own buffer, non-blocking.
            let n = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                break;
            }
            let at = Instant::now();
            if is_reply(&buf[..n as usize], target, id) {
                let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                if l.replies.len() < REPLIES_MAX {
                    l.replies.push(at);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksums_to_zero() {
        let p = echo_request(0x1234, 7);
        assert_eq!(p[0], 8);
        assert_eq!(checksum(&p), 0);
    }

    #[test]
    fn recognises_replies() {
        let vip = Ipv4Addr::new(10, 77, 0, 100);
        let mut pkt = vec![0x45u8; 20];
        pkt[12..16].copy_from_slice(&vip.octets());
        let mut icmp = echo_request(9, 1).to_vec();
        icmp[0] = 0;
        pkt.extend(&icmp);
        assert!(is_reply(&pkt, vip, 9));
        assert!(!is_reply(&pkt, vip, 10));
        assert!(!is_reply(&pkt, Ipv4Addr::new(10, 77, 0, 10), 9));
        pkt[20] = 8;
        assert!(!is_reply(&pkt, vip, 9));
    }

    #[test]
    fn longest_gap_in_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let replies: Vec<Instant> = [0, 5, 10, 300, 305, 310].iter().map(|m| at(*m)).collect();
        let g = longest_gap(&replies, at(7), at(400)).unwrap();
        assert_eq!(g.length, Duration::from_millis(290));
        assert_eq!(g.from, at(10));
        assert!(!g.open);
        // Replies stop: the gap runs to the end of the window.
        let g = longest_gap(&replies, at(303), at(1000)).unwrap();
        assert!(g.open);
        assert_eq!(g.length, Duration::from_millis(690));
        assert!(longest_gap(&[], at(0), at(10)).is_none());
        let flap: Vec<Instant> = [0, 5, 200, 400, 405].iter().map(|m| at(*m)).collect();
        assert_eq!(
            gaps_over(&flap, at(1), at(410), Duration::from_millis(100)),
            2
        );
        assert_eq!(
            gaps_over(&flap, at(1), at(600), Duration::from_millis(100)),
            3
        );
    }
}
