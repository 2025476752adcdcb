//! The two-holder checker (invariant I2): a thread samples every host's `eth0` addresses as fast
//! as it can and finds any stretch of time in which two hosts carried the VIP.
//!
//! The sampler walks the hosts round-robin with [`crate::addrs::NetlinkAddrs`] (one rtnetlink
//! dump per host, ~10–20 µs each), back to back, pausing [`ROUND_PAUSE`] after each round. It
//! runs at real-time priority (`SCHED_FIFO`) so that a busy 2-core machine cannot deschedule it
//! for tens of milliseconds, and the pause keeps it from starving the agents (it uses about a
//! quarter of one core). Without permission for `SCHED_FIFO` it runs at normal priority and
//! says so in [`Report::summary`]. Each sample is taken
//! within a known window `[t0, t1]`. Consecutive samples in which host A carries the VIP form a
//! *run*; A certainly held the VIP from the first sample's `t1` to the last sample's `t0` (the
//! *held* interval; the address is not expected to vanish and return between two samples a
//! fraction of a millisecond apart). A run's *possible* interval reaches back to the preceding
//! sample without the VIP and forward to the following one.
//!
//! * Two runs of different hosts whose held intervals overlap: two holders at one instant, a
//!   violation ([`Report::overlaps`]).
//! * Possible intervals overlapping but held ones not: the hand-over gap was shorter than the
//!   sampling resolution, so the samples cannot tell ([`Report::unresolved`]).
//!
//! Resolution: the longest time between two consecutive samples of one host
//! ([`Report::max_sample_gap`]); about 0.15 ms at real-time priority (a round of three dumps
//! plus the pause), longer when the thread is held up all the same (a busy VM); reported with
//! every result.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::addrs::NetlinkAddrs;

/// Pause after each round of samples (see the module docs).
pub const ROUND_PAUSE: Duration = Duration::from_micros(100);
/// `SCHED_FIFO` priority of the sampler thread.
const SAMPLER_RT_PRIORITY: i32 = 10;

/// One run of consecutive samples in which `host` carried the VIP. Times are since the checker
/// started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Host index.
    pub host: usize,
    /// Certainly held from here (`t1` of the first sample with the VIP)...
    pub held_from: Duration,
    /// ...to here (`t0` of the last sample with the VIP). Before `held_from` for a one-sample run.
    pub held_to: Duration,
    /// Possibly held from here (`t0` of the sample before the run without the VIP; 0 if none).
    pub possible_from: Duration,
    /// Possibly held to here (`t1` of the sample after the run; the end of checking if none).
    pub possible_to: Duration,
}

impl Run {
    fn held_overlaps(&self, other: &Run) -> bool {
        self.held_from < self.held_to
            && other.held_from < other.held_to
            && self.held_from < other.held_to
            && other.held_from < self.held_to
    }

    fn possible_overlaps(&self, other: &Run) -> bool {
        self.possible_from < other.possible_to && other.possible_from < self.possible_to
    }
}

/// What the checker saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Samples taken (one per host per round).
    pub samples: u64,
    /// How long the checker ran.
    pub duration: Duration,
    /// Longest time between two consecutive samples of one host: the resolution.
    pub max_sample_gap: Duration,
    /// Every run, in order of start.
    pub runs: Vec<Run>,
    /// Pairs of runs of different hosts whose held intervals overlap: two holders.
    pub overlaps: Vec<(Run, Run)>,
    /// Pairs whose possible intervals overlap but held ones do not: too close to tell.
    pub unresolved: Vec<(Run, Run)>,
    /// The shortest time in which samples showed no host with the VIP between one host's run
    /// and the next host's run (the narrowest hand-over); `None` with fewer than two runs.
    pub min_handover_gap: Option<Duration>,
    /// Whether the sampler ran at real-time priority.
    pub realtime: bool,
}

impl Report {
    /// The runs in order: `h<host> <from>–<to> s` (held interval since the checker started).
    pub fn timeline(&self) -> String {
        let mut runs = self.runs.clone();
        runs.sort_by_key(|r| r.held_from);
        runs.iter()
            .map(|r| {
                format!(
                    "h{} {:.3}–{:.3} s",
                    r.host,
                    r.held_from.as_secs_f64(),
                    r.held_to.as_secs_f64()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{} samples in {:.1} s ({}; a sample every ≈{:.0} µs), resolution (max gap between \
             samples of one host) {:.2} ms, {} holder runs, {} overlaps, {} unresolved, narrowest \
             hand-over {}",
            self.samples,
            self.duration.as_secs_f64(),
            if self.realtime {
                "SCHED_FIFO"
            } else {
                "normal priority"
            },
            self.duration.as_secs_f64() * 1e6 / self.samples.max(1) as f64,
            self.max_sample_gap.as_secs_f64() * 1e3,
            self.runs.len(),
            self.overlaps.len(),
            self.unresolved.len(),
            self.min_handover_gap.map_or_else(
                || "-".to_owned(),
                |g| format!("{:.1} ms", g.as_secs_f64() * 1e3)
            )
        )
    }
}

/// Per-host state while sampling.
#[derive(Debug, Default, Clone)]
struct HostTrack {
    /// (held_from, last present t0, possible_from) of the run in progress.
    open: Option<(Duration, Duration, Duration)>,
    /// `t0` of the last sample without the VIP.
    last_absent_t0: Duration,
    /// `t1` of the previous sample.
    last_t1: Option<Duration>,
}

/// Turns samples into runs and finds overlaps; pure, so it is unit-tested.
#[derive(Debug, Clone)]
pub struct Analyzer {
    hosts: Vec<HostTrack>,
    runs: Vec<Run>,
    samples: u64,
    max_gap: Duration,
}

impl Analyzer {
    /// For `hosts` hosts.
    pub fn new(hosts: usize) -> Self {
        Self {
            hosts: vec![HostTrack::default(); hosts],
            runs: Vec::new(),
            samples: 0,
            max_gap: Duration::ZERO,
        }
    }

    /// Records that host `host` had (`held`) or lacked the VIP at some instant in `[t0, t1]`.
    pub fn observe(&mut self, host: usize, t0: Duration, t1: Duration, held: bool) {
        self.samples += 1;
        let track = &mut self.hosts[host];
        if let Some(prev) = track.last_t1 {
            self.max_gap = self.max_gap.max(t1.saturating_sub(prev));
        }
        track.last_t1 = Some(t1);
        match (held, track.open) {
            (true, None) => track.open = Some((t1, t0, track.last_absent_t0)),
            (true, Some((from, _, possible_from))) => track.open = Some((from, t0, possible_from)),
            (false, Some((held_from, held_to, possible_from))) => {
                self.runs.push(Run {
                    host,
                    held_from,
                    held_to,
                    possible_from,
                    possible_to: t1,
                });
                track.open = None;
                track.last_absent_t0 = t0;
            }
            (false, None) => track.last_absent_t0 = t0,
        }
    }

    /// Closes open runs at `end` and compares every pair of runs of different hosts.
    pub fn finish(mut self, end: Duration) -> Report {
        for (host, track) in self.hosts.iter().enumerate() {
            if let Some((held_from, held_to, possible_from)) = track.open {
                self.runs.push(Run {
                    host,
                    held_from,
                    held_to,
                    possible_from,
                    possible_to: end,
                });
            }
        }
        self.runs.sort_by_key(|r| r.possible_from);
        let mut overlaps = Vec::new();
        let mut unresolved = Vec::new();
        for (i, a) in self.runs.iter().enumerate() {
            for b in &self.runs[i + 1..] {
                if a.host == b.host {
                    continue;
                }
                if a.held_overlaps(b) {
                    overlaps.push((*a, *b));
                } else if a.possible_overlaps(b) {
                    unresolved.push((*a, *b));
                }
            }
        }
        let mut by_start = self.runs.clone();
        by_start.sort_by_key(|r| r.held_from);
        let min_handover_gap = by_start
            .windows(2)
            .filter(|w| w[0].host != w[1].host)
            .map(|w| w[1].possible_from.saturating_sub(w[0].possible_to))
            .min();
        Report {
            realtime: false,
            min_handover_gap,
            samples: self.samples,
            duration: end,
            max_sample_gap: self.max_gap,
            runs: self.runs,
            overlaps,
            unresolved,
        }
    }
}

/// The running checker; [`HolderChecker::stop`] ends it and returns the [`Report`].
#[derive(Debug)]
pub struct HolderChecker {
    started: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicU64>,
    handle: Option<JoinHandle<Result<Report>>>,
}

impl HolderChecker {
    /// Starts sampling `eth0` of each of `namespaces` (host index = position) for any of `vip`,
    /// pausing [`ROUND_PAUSE`] per round.
    pub fn start(namespaces: &[String], vip: Vec<IpAddr>) -> Result<Self> {
        Self::start_with_pause(namespaces, vip, ROUND_PAUSE)
    }

    /// [`HolderChecker::start`] with another pause per round: a longer one costs less CPU at a
    /// coarser resolution (the benchmark watches idle periods with 1 ms).
    pub fn start_with_pause(
        namespaces: &[String],
        vip: Vec<IpAddr>,
        pause: Duration,
    ) -> Result<Self> {
        let mut nl = NetlinkAddrs::open(namespaces)?;
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicU64::new(0));
        let (stop2, samples2) = (stop.clone(), samples.clone());
        let started = Instant::now();
        let handle = thread::Builder::new()
            .name("vip-holder-checker".into())
            .spawn(move || {
                let realtime = set_realtime_priority();
                let mut analyzer = Analyzer::new(nl.len());
                while !stop2.load(Ordering::Relaxed) {
                    for host in 0..nl.len() {
                        let t0 = started.elapsed();
                        let addrs = nl.addresses(host).context("sampling addresses")?;
                        let t1 = started.elapsed();
                        analyzer.observe(host, t0, t1, addrs.iter().any(|a| vip.contains(a)));
                    }
                    samples2.fetch_add(nl.len() as u64, Ordering::Relaxed);
                    thread::sleep(pause);
                }
                let mut report = analyzer.finish(started.elapsed());
                report.realtime = realtime;
                Ok(report)
            })
            .context("spawning the holder checker")?;
        Ok(Self {
            started,
            stop,
            samples,
            handle: Some(handle),
        })
    }

    /// The instant the [`Report`]'s times count from.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Samples taken so far.
    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }

    /// Stops sampling and analyses what was seen.
    pub fn stop(mut self) -> Result<Report> {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().context("checker already stopped")?;
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("holder checker thread panicked"))?
    }
}

impl Drop for HolderChecker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Puts the calling thread under `SCHED_FIFO`; returns whether that worked.
fn set_realtime_priority() -> bool {
    let param = nix::libc::sched_param {
        sched_priority: SAMPLER_RT_PRIORITY,
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    unsafe { nix::libc::sched_setscheduler(0, nix::libc::SCHED_FIFO, &param) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds round-robin samples every 1 ms: `held(host, t_ms)` says who has the VIP.
    fn simulate(hosts: usize, until_ms: u64, held: impl Fn(usize, u64) -> bool) -> Report {
        let mut a = Analyzer::new(hosts);
        for t in 0..until_ms {
            for h in 0..hosts {
                a.observe(h, ms(t), ms(t) + Duration::from_micros(100), held(h, t));
            }
        }
        a.finish(ms(until_ms))
    }

    #[test]
    fn clean_handover_has_no_overlap() {
        // Host 0 holds until 100 ms, host 1 from 150 ms.
        let r = simulate(3, 300, |h, t| (h == 0 && t < 100) || (h == 1 && t >= 150));
        assert_eq!(r.runs.len(), 2);
        assert!(r.overlaps.is_empty() && r.unresolved.is_empty(), "{r:?}");
        assert_eq!(r.samples, 900);
        // Both absent from host 0's first sample without it (t=100) to host 1's last (t=149).
        assert_eq!(
            r.min_handover_gap,
            Some(ms(49) - Duration::from_micros(100))
        );
        assert!(r.max_sample_gap <= ms(1));
    }

    #[test]
    fn two_holders_are_caught() {
        let r = simulate(3, 300, |h, t| (h == 0 && t < 120) || (h == 2 && t >= 100));
        assert_eq!(r.overlaps.len(), 1, "{r:?}");
        assert_eq!((r.overlaps[0].0.host, r.overlaps[0].1.host), (0, 2));
    }

    #[test]
    fn a_handover_within_the_resolution_is_unresolved_not_clean() {
        // Host 0's last sample with the VIP and host 1's first one are one sample apart.
        let r = simulate(2, 10, |h, t| (h == 0 && t < 5) || (h == 1 && t >= 5));
        assert!(r.overlaps.is_empty());
        assert_eq!(r.unresolved.len(), 1, "{r:?}");
    }

    #[test]
    fn one_sample_blip_alone_is_no_overlap() {
        let r = simulate(2, 20, |h, t| (h == 0 && t == 3) || (h == 1 && t == 15));
        assert!(r.overlaps.is_empty() && r.unresolved.is_empty());
        assert_eq!(r.runs.len(), 2);
    }
}
