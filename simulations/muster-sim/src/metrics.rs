//! Run metrics: formation time, leader changes, failovers (leader killed → new leader, → new VIP
//! holder), and the per-host timeline the SVG is drawn from.
//!
//! The simulator reports state changes here as it observes them; nothing in this module affects
//! the run. The timeline is kept for the first [`MAX_ROWS`] hosts, with at most
//! [`MAX_MARKS_PER_ROW`] membership marks each, so memory stays bounded at 1000 hosts.

use serde::Serialize;

/// Hosts drawn in the timeline.
pub const MAX_ROWS: usize = 50;
/// Membership-change marks kept per row.
pub const MAX_MARKS_PER_ROW: usize = 400;

/// A change on one host's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Booted.
    Up,
    /// Crashed.
    Down,
    /// Became (true) or stopped being (false) leader.
    Leader(bool),
    /// Acquired (true) or released (false) the VIP.
    Vip(bool),
    /// Now in this cluster (0 = none).
    Cluster(u64),
    /// Its applied membership changed to this many members.
    Members(usize),
}

/// One failover: from the fault to a new leader and a new VIP holder.
#[derive(Debug, Clone, Serialize)]
pub struct Failover {
    /// When the leader was killed.
    pub at_ms: u64,
    /// Its name.
    pub old_leader: String,
    /// Virtual ms until another host was leader.
    pub new_leader_ms: Option<u64>,
    /// Virtual ms until another host held the VIP.
    pub new_vip_ms: Option<u64>,
}

/// Min, median, p90 and max of a set of durations.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Dist {
    /// Samples.
    pub count: usize,
    /// Smallest.
    pub min: Option<u64>,
    /// Median.
    pub median: Option<u64>,
    /// 90th percentile.
    pub p90: Option<u64>,
    /// Largest.
    pub max: Option<u64>,
}

impl Dist {
    /// Summarises samples.
    pub fn of(mut v: Vec<u64>) -> Dist {
        v.sort_unstable();
        let at = |q: usize| v.get(((v.len() - 1) * q) / 100).copied();
        if v.is_empty() {
            return Dist::default();
        }
        Dist {
            count: v.len(),
            min: v.first().copied(),
            median: at(50),
            p90: at(90),
            max: v.last().copied(),
        }
    }
}

/// What the run measured.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Rows of the timeline: `(time, mark)` per host, for the first [`MAX_ROWS`] hosts.
    pub rows: Vec<Vec<(u64, Mark)>>,
    member_marks: Vec<usize>,
    /// Faults as they fired: (time, description).
    pub faults: Vec<(u64, String)>,
    /// First boot.
    pub first_boot_ms: Option<u64>,
    /// When the site first counted as formed.
    pub formed_at_ms: Option<u64>,
    /// Times a host became leader.
    pub leader_changes: u64,
    /// Failovers measured.
    pub failovers: Vec<Failover>,
    pending: Option<(usize, usize)>,
}

impl Metrics {
    /// Metrics for `n` hosts.
    pub fn new(n: usize) -> Self {
        let rows = n.min(MAX_ROWS);
        Metrics {
            rows: vec![Vec::new(); rows],
            member_marks: vec![0; rows],
            ..Metrics::default()
        }
    }

    /// Records a mark on a host's row (if drawn).
    pub fn mark(&mut self, t: u64, idx: usize, mark: Mark) {
        if idx >= self.rows.len() {
            return;
        }
        if let Mark::Members(_) = mark {
            if self.member_marks[idx] >= MAX_MARKS_PER_ROW {
                return;
            }
            self.member_marks[idx] += 1;
        }
        self.rows[idx].push((t, mark));
    }

    /// A host booted.
    pub fn boot(&mut self, t: u64, idx: usize) {
        self.first_boot_ms.get_or_insert(t);
        self.mark(t, idx, Mark::Up);
    }

    /// The site is formed at `t`.
    pub fn formed(&mut self, t: u64) {
        self.formed_at_ms.get_or_insert(t);
    }

    /// Formation time: first boot to first formed.
    pub fn formation_ms(&self) -> Option<u64> {
        Some(self.formed_at_ms? - self.first_boot_ms?)
    }

    /// The leader `idx` (named `name`) is being killed now.
    pub fn leader_killed(&mut self, t: u64, idx: usize, name: String) {
        self.failovers.push(Failover {
            at_ms: t,
            old_leader: name,
            new_leader_ms: None,
            new_vip_ms: None,
        });
        self.pending = Some((self.failovers.len() - 1, idx));
    }

    /// `idx` became leader.
    pub fn new_leader(&mut self, t: u64, idx: usize) {
        self.leader_changes += 1;
        self.mark(t, idx, Mark::Leader(true));
        if let Some((f, old)) = self.pending {
            let fo = &mut self.failovers[f];
            if old != idx && fo.new_leader_ms.is_none() {
                fo.new_leader_ms = Some(t - fo.at_ms);
            }
        }
    }

    /// `idx` acquired the VIP.
    pub fn vip_acquired(&mut self, t: u64, idx: usize) {
        self.mark(t, idx, Mark::Vip(true));
        if let Some((f, old)) = self.pending {
            let fo = &mut self.failovers[f];
            if old != idx && fo.new_vip_ms.is_none() {
                fo.new_vip_ms = Some(t - fo.at_ms);
            }
        }
    }

    /// Failover times to a new leader.
    pub fn leader_failover_dist(&self) -> Dist {
        Dist::of(
            self.failovers
                .iter()
                .filter_map(|f| f.new_leader_ms)
                .collect(),
        )
    }

    /// Failover times to a new VIP holder.
    pub fn vip_failover_dist(&self) -> Dist {
        Dist::of(self.failovers.iter().filter_map(|f| f.new_vip_ms).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_percentiles() {
        let d = Dist::of((1..=10).collect());
        assert_eq!(
            (d.min, d.median, d.p90, d.max),
            (Some(1), Some(5), Some(9), Some(10))
        );
        assert_eq!(Dist::of(vec![]).count, 0);
    }

    #[test]
    fn failover_measured_to_a_different_leader() {
        let mut m = Metrics::new(3);
        m.leader_killed(100, 0, "n0".into());
        m.new_leader(150, 0);
        m.new_leader(420, 2);
        m.vip_acquired(700, 2);
        assert_eq!(m.failovers[0].new_leader_ms, Some(320));
        assert_eq!(m.failovers[0].new_vip_ms, Some(600));
    }
}
