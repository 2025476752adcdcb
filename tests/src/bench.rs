//! Small pieces of the VIP benchmark (`muster-vip-bench`) kept out of the binary so they are
//! unit-tested: a seeded RNG for the random failover moments, series statistics, and CPU
//! burners for the "busy host" measurement.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// xorshift64*: a tiny deterministic RNG, so a run's random moments replay from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded; a zero seed is replaced by a fixed non-zero one.
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[lo, hi)`.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_micros() as u64;
        if span == 0 {
            return lo;
        }
        lo + Duration::from_micros(self.next_u64() % span)
    }
}

/// The outcomes of one kind of measurement: a duration each, or why it failed.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// One entry per attempt.
    pub outcomes: Vec<Result<Duration, String>>,
    /// Per attempt: whether it is marked (the VIP benchmark marks failovers in which the
    /// client's replies resumed and stopped again).
    pub marked: Vec<bool>,
}

impl Series {
    /// Records one attempt: its duration and mark, or why it failed.
    pub fn push(&mut self, outcome: Result<(Duration, bool), String>) {
        self.marked.push(outcome.as_ref().is_ok_and(|(_, m)| *m));
        self.outcomes.push(outcome.map(|(d, _)| d));
    }

    /// Number of marked attempts.
    pub fn marks(&self) -> usize {
        self.marked.iter().filter(|m| **m).count()
    }

    /// The successful measurements, in order.
    pub fn values(&self) -> Vec<Duration> {
        self.outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok().copied())
            .collect()
    }

    /// Number of failed attempts.
    pub fn failures(&self) -> usize {
        self.outcomes.iter().filter(|o| o.is_err()).count()
    }

    /// Median of the successful measurements (mean of the middle two for an even count).
    pub fn median(&self) -> Option<Duration> {
        median(&self.values())
    }

    /// Largest successful measurement.
    pub fn worst(&self) -> Option<Duration> {
        self.values().into_iter().max()
    }

    /// Every attempt in ms ("ERR" for failures, "*" after marked ones), space separated.
    pub fn list_ms(&self) -> String {
        self.outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| match o {
                Ok(d) if self.marked.get(i) == Some(&true) => {
                    format!("{:.0}*", d.as_secs_f64() * 1e3)
                }
                Ok(d) => format!("{:.0}", d.as_secs_f64() * 1e3),
                Err(_) => "ERR".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Median of `values` (mean of the middle two for an even count).
pub fn median(values: &[Duration]) -> Option<Duration> {
    let mut v = values.to_vec();
    v.sort();
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2),
    }
}

/// Seconds with three decimals, or "-".
pub fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{:.3} s", d.as_secs_f64()))
}

/// `a / b` with two decimals, or "-".
pub fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".to_owned(),
    }
}

/// "ok" or "MISSED".
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

/// Busy-loop processes (`sh -c 'while :; do :; done'`), killed on drop.
#[derive(Debug)]
pub struct Burners(Vec<Child>);

impl Burners {
    /// Starts `n` of them, each in its own process group, dying with this process.
    pub fn start(n: usize) -> Result<Self> {
        let mut children = Vec::new();
        for _ in 0..n {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0);
            // SAFETY: the closure runs in the forked child before exec and only calls prctl(2).
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
                });
            }
            children.push(cmd.spawn().context("starting a busy loop")?);
        }
        Ok(Self(children))
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rng_is_seeded_and_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            let d = a.duration(ms(1000), ms(2000));
            assert_eq!(d, b.duration(ms(1000), ms(2000)));
            assert!(d >= ms(1000) && d < ms(2000));
        }
        assert_ne!(Rng::new(0).next_u64(), 0);
    }

    #[test]
    fn series_stats() {
        let mut s = Series::default();
        s.push(Ok((ms(300), false)));
        s.push(Err("x".into()));
        s.push(Ok((ms(100), false)));
        s.push(Ok((ms(200), true)));
        s.push(Ok((ms(400), false)));
        assert_eq!(s.median(), Some(ms(250)));
        assert_eq!(s.worst(), Some(ms(400)));
        assert_eq!(s.failures(), 1);
        assert_eq!(s.list_ms(), "300 ERR 100 200* 400");
        assert_eq!(s.marks(), 1);
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[ms(3), ms(1), ms(2)]), Some(ms(2)));
        assert_eq!(ratio(Some(ms(100)), Some(ms(400))), "0.25");
        assert_eq!(secs(Some(ms(1234))), "1.234 s");
        assert_eq!(verdict(false), "MISSED");
    }
}
