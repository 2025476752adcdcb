//! The invariant checker. The simulator feeds it an [`Obs`] of a node after every input that
//! node handled, every VIP output, every crash and boot, and a [`SiteView`] of the whole site
//! every `check_interval_ms`; it records [`Violation`]s as they happen.
//!
//! What is checked (DESIGN.md invariants):
//! - **Election safety (I1)**: at most one leader per (cluster, term), ever.
//! - **I1 formed sites**: a locked host (its log holds its cluster's lock entry) never leaves its
//!   cluster while up; with fewer than 2 × `expected_nodes` hosts at most one cluster is ever
//!   recorded formed.
//! - **I1 one cluster**: once the liveness bound after the last fault has passed, the up hosts
//!   are never in more than one cluster; at the end, exactly one cluster holds every up host.
//! - **I2 one VIP holder**: a `EndpointAcquire` while another host holds the VIP, or by a host that is
//!   not leader, is a violation (checked at the virtual instant of the output).
//! - **I4 durability**: (a) the entry applied at (cluster, index) has one term across all hosts
//!   and all time (log matching on committed entries); (b) a new leader's log holds the highest
//!   index any host has applied in its cluster (leader completeness); (c) a restarted host comes
//!   back with at least the cluster, applied index, term and vote it had acknowledged before the
//!   crash; (d) while up, a host's term, commit and applied index never go backwards.
//! - **I6 liveness**: within `liveness_bound_ms` of the last fault the site is formed (one
//!   cluster, a leader every up host follows, every up host a member, and with a VIP configured
//!   the leader holds it); afterwards it never stays unformed that long again.
//! - I3 (plan stability) is checked in `install.rs` on simulated install runs.

use std::collections::BTreeMap;

use crate::idhash::IdMap;

use serde::Serialize;

use crate::disk::SimDisk;

/// Most violations kept in full; later ones are only counted.
pub const MAX_VIOLATIONS: usize = 100;

/// What a node shows after handling an input (read from the node and its store).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Obs {
    /// Cluster id of its applied state (0 = none).
    pub cluster: u64,
    /// Leader it knows of (node id, 0 = none).
    pub leader: u64,
    /// Whether it is leader itself.
    pub is_leader: bool,
    /// Persisted term.
    pub term: u64,
    /// Persisted vote.
    pub vote: u64,
    /// Persisted commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Term of the applied index.
    pub applied_term: u64,
    /// Members in its applied state.
    pub members: usize,
    /// Last log index on its disk.
    pub last_index: u64,
    /// Its log holds its cluster's lock entry (it never dissolves).
    pub locked: bool,
    /// Its applied state records the site formed.
    pub formed: bool,
}

/// How long a site may stay unformed at the liveness deadline before I6 counts it (see
/// [`Checker::site`]).
pub const DEADLINE_GRACE_MS: u64 = 1_000;

/// The whole site at one instant, computed by the simulator.
#[derive(Debug, Clone, Default)]
pub struct SiteView {
    /// Hosts up.
    pub up: usize,
    /// Distinct nonzero clusters among up hosts.
    pub clusters: usize,
    /// Up hosts in no cluster.
    pub unclustered: usize,
    /// One cluster, one leader every up host follows, every up host a member.
    pub formed: bool,
    /// Hosts that hold the VIP now.
    pub vip_holders: usize,
}

/// One broken invariant.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// Virtual time.
    pub at_ms: u64,
    /// "I1", "I2", "I3", "I4", "I5", "I6" or "core" (a fatal core error).
    pub invariant: &'static str,
    /// What was seen.
    pub detail: String,
}

/// How often each check ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckCounts {
    /// Leader claims checked against (cluster, term).
    pub election_safety: u64,
    /// Site-wide one-cluster checks.
    pub i1_one_cluster: u64,
    /// Observations of locked or formed hosts checked (never leave; one formed cluster).
    pub i1_formed: u64,
    /// VIP outputs and site-wide holder counts checked.
    pub i2_vip: u64,
    /// Applied entries compared by (cluster, index).
    pub i4_entries: u64,
    /// New leaders checked for committed entries.
    pub i4_leader_completeness: u64,
    /// Restarts checked against the pre-crash state.
    pub i4_restarts: u64,
    /// Node observations checked for monotonic term/commit/applied.
    pub i4_monotonic: u64,
    /// Site-wide liveness checks after the bound.
    pub i6_liveness: u64,
    /// Site-wide checks that no host follows or lists an adversary.
    pub i5_isolation: u64,
    /// Install runs checked for I3 (roles, one init, order) (`install.rs`).
    pub i3_runs: u64,
}

/// The checker's state.
#[derive(Debug)]
pub struct Checker {
    names: Vec<String>,
    views: Vec<Option<Obs>>,
    at_crash: Vec<Option<Obs>>,
    leaders: IdMap<(u64, u64), usize>,
    entries: IdMap<(u64, u64), u64>,
    max_applied: IdMap<u64, (u64, u64)>,
    /// Hosts told to hold the VIP, with the virtual time their fence removes it unless renewed.
    vip_holders: BTreeMap<usize, u64>,
    quiet_ms: u64,
    bound_ms: u64,
    /// The first site check at or after the liveness deadline.
    deadline_at: Option<u64>,
    unformed_since: Option<u64>,
    multi_since: Option<u64>,
    reported_unformed: bool,
    reported_multi: bool,
    /// Clusters ever recorded formed, and whether two of them may exist (2 × expected ≤ hosts).
    formed_clusters: std::collections::BTreeSet<u64>,
    two_sites_possible: bool,
    /// Check counts.
    pub counts: CheckCounts,
    /// Violations (first [`MAX_VIOLATIONS`]).
    pub violations: Vec<Violation>,
    /// All violations, including those not kept.
    pub violation_count: usize,
}

impl Checker {
    /// A checker for hosts named `names`; liveness counts from `quiet_ms` with `bound_ms`.
    pub fn new(names: Vec<String>, quiet_ms: u64, bound_ms: u64) -> Self {
        let n = names.len();
        Checker {
            names,
            views: vec![None; n],
            at_crash: vec![None; n],
            leaders: IdMap::default(),
            entries: IdMap::default(),
            max_applied: IdMap::default(),
            vip_holders: BTreeMap::new(),
            quiet_ms,
            bound_ms,
            deadline_at: None,
            unformed_since: None,
            multi_since: None,
            reported_unformed: false,
            reported_multi: false,
            formed_clusters: Default::default(),
            two_sites_possible: false,
            counts: CheckCounts::default(),
            violations: Vec::new(),
            violation_count: 0,
        }
    }

    /// With `hosts` hosts configured to expect `expected_nodes`: whether two formed clusters are
    /// allowed (only with at least twice as many hosts as expected).
    pub fn set_site(&mut self, hosts: usize, expected_nodes: usize) {
        self.two_sites_possible = hosts >= 2 * expected_nodes;
    }

    fn check_formed(&mut self, t: u64, idx: usize, prev: Option<Obs>, obs: Obs) {
        if let Some(p) = prev.filter(|p| p.locked && p.cluster != 0) {
            self.counts.i1_formed += 1;
            if obs.cluster != p.cluster {
                let name = self.names[idx].clone();
                self.violate(
                    t,
                    "I1",
                    format!(
                        "{name} was locked in cluster {:016x} and left it (now {:016x})",
                        p.cluster, obs.cluster
                    ),
                );
            }
        }
        if obs.formed && self.formed_clusters.insert(obs.cluster) {
            self.counts.i1_formed += 1;
            if self.formed_clusters.len() > 1 && !self.two_sites_possible {
                let all: Vec<String> = self
                    .formed_clusters
                    .iter()
                    .map(|c| format!("{c:016x}"))
                    .collect();
                self.violate(
                    t,
                    "I1",
                    format!(
                        "a second cluster recorded formed with fewer than 2 × expected_nodes hosts: {}",
                        all.join(", ")
                    ),
                );
            }
        }
    }

    /// Records a violation.
    pub fn violate(&mut self, at_ms: u64, invariant: &'static str, detail: String) {
        self.violation_count += 1;
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation {
                at_ms,
                invariant,
                detail,
            });
        }
    }

    /// Distinct (cluster, term) pairs that had a leader: the number of elections won.
    pub fn elections(&self) -> usize {
        self.leaders.len()
    }

    /// The last observation of a host, if up.
    pub fn view(&self, idx: usize) -> Option<&Obs> {
        self.views[idx].as_ref()
    }

    /// Whether a host holds the VIP at virtual time `t` (told to, and its fence has not fired).
    pub fn holds_vip(&self, idx: usize, t: u64) -> bool {
        self.vip_holders.get(&idx).is_some_and(|&fence| t < fence)
    }

    /// A host booted; `obs` is its state as restored from disk.
    pub fn on_boot(&mut self, t: u64, idx: usize, obs: Obs, disk: &SimDisk) {
        if let Some(before) = self.at_crash[idx].take() {
            self.counts.i4_restarts += 1;
            if before.cluster != 0 && before.applied > 0 {
                let lost = obs.cluster != before.cluster
                    || obs.applied < before.applied
                    || obs.term < before.term
                    || (obs.term == before.term && before.vote != 0 && obs.vote != before.vote);
                if lost {
                    let name = &self.names[idx];
                    self.violate(
                        t,
                        "I4",
                        format!(
                            "{name} restarted with cluster {:016x} applied {} term {} vote {:x}, \
                             but had acknowledged cluster {:016x} applied {} term {} vote {:x} \
                             before its crash",
                            obs.cluster,
                            obs.applied,
                            obs.term,
                            obs.vote,
                            before.cluster,
                            before.applied,
                            before.term,
                            before.vote
                        ),
                    );
                }
            }
        }
        self.views[idx] = None;
        self.observe(t, idx, obs, disk);
    }

    /// A host crashed: remember what it had acknowledged; it holds no VIP any more.
    pub fn on_crash(&mut self, idx: usize) {
        self.at_crash[idx] = self.views[idx].take();
        self.vip_holders.remove(&idx);
    }

    /// A node handled an input.
    pub fn observe(&mut self, t: u64, idx: usize, obs: Obs, disk: &SimDisk) {
        let prev = self.views[idx];
        if prev == Some(obs) {
            return;
        }
        self.views[idx] = Some(obs);
        self.check_formed(t, idx, prev, obs);
        let same_cluster = prev.is_some_and(|p| p.cluster == obs.cluster && p.cluster != 0);
        if let Some(p) = prev.filter(|_| same_cluster) {
            self.counts.i4_monotonic += 1;
            if obs.term < p.term || obs.commit < p.commit || obs.applied < p.applied {
                let name = self.names[idx].clone();
                self.violate(
                    t,
                    "I4",
                    format!(
                        "{name} went backwards: term {}→{}, commit {}→{}, applied {}→{}",
                        p.term, obs.term, p.commit, obs.commit, p.applied, obs.applied
                    ),
                );
            }
        }
        if obs.cluster != 0 && obs.applied > 0 {
            let from = prev.filter(|_| same_cluster).map_or(0, |p| p.applied);
            if obs.applied > from {
                self.check_applied(t, idx, obs, from, disk);
            }
        }
        if obs.is_leader
            && obs.cluster != 0
            && !prev.is_some_and(|p| p.is_leader && p.term == obs.term)
        {
            self.check_new_leader(t, idx, obs, disk);
        }
    }

    fn check_applied(&mut self, t: u64, idx: usize, obs: Obs, from: u64, disk: &SimDisk) {
        let first = from.max(obs.applied.saturating_sub(10_000)) + 1;
        for index in first..=obs.applied {
            let term = if index == obs.applied {
                Some(obs.applied_term)
            } else {
                disk.term_at(index)
            };
            let Some(term) = term else { continue };
            self.counts.i4_entries += 1;
            match self.entries.get(&(obs.cluster, index)) {
                Some(&known) if known != term => {
                    let name = self.names[idx].clone();
                    self.violate(
                        t,
                        "I4",
                        format!(
                            "{name} applied index {index} of cluster {:016x} with term {term}, \
                             but that index was applied elsewhere with term {known}",
                            obs.cluster
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    self.entries.insert((obs.cluster, index), term);
                }
            }
        }
        let max = self.max_applied.entry(obs.cluster).or_insert((0, 0));
        if obs.applied > max.0 {
            *max = (obs.applied, obs.applied_term);
        }
    }

    fn check_new_leader(&mut self, t: u64, idx: usize, obs: Obs, disk: &SimDisk) {
        self.counts.election_safety += 1;
        let name = self.names[idx].clone();
        match self.leaders.get(&(obs.cluster, obs.term)) {
            Some(&other) if other != idx => {
                let other = self.names[other].clone();
                self.violate(
                    t,
                    "I1",
                    format!(
                        "two leaders in cluster {:016x} term {}: {other} and {name}",
                        obs.cluster, obs.term
                    ),
                );
            }
            Some(_) => {}
            None => {
                self.leaders.insert((obs.cluster, obs.term), idx);
            }
        }
        let Some(&(index, term)) = self.max_applied.get(&obs.cluster) else {
            return;
        };
        self.counts.i4_leader_completeness += 1;
        let has = obs.applied >= index
            || (disk.cache().last_index() >= index
                && disk.term_at(index).is_none_or(|have| have == term));
        if !has {
            self.violate(
                t,
                "I4",
                format!(
                    "{name} became leader of cluster {:016x} in term {} without committed index \
                     {index} (term {term}); its log ends at {}",
                    obs.cluster,
                    obs.term,
                    disk.cache().last_index()
                ),
            );
        }
    }

    /// A host emitted `EndpointAcquire` (`Some(fence)`, acquire = true), `EndpointRenew` (`Some(fence)`,
    /// acquire = false) or `EndpointRelease` (`None`). `fence` is the virtual time at which the host's
    /// clock reaches the lease end it gave: its shell removes the VIP then even if the core stalls.
    pub fn on_vip(&mut self, t: u64, idx: usize, acquire: bool, fence: Option<u64>) {
        self.counts.i2_vip += 1;
        let Some(fence) = fence else {
            self.vip_holders.remove(&idx);
            return;
        };
        if !acquire {
            if let Some(f) = self.vip_holders.get_mut(&idx) {
                *f = fence;
            }
            return;
        }
        let name = self.names[idx].clone();
        if let Some((&other, &until)) = self
            .vip_holders
            .iter()
            .find(|(h, until)| **h != idx && t < **until)
        {
            let other = self.names[other].clone();
            self.violate(
                t,
                "I2",
                format!("{name} acquired the VIP while {other} still holds it (its fence ends at {until} ms)"),
            );
        }
        if !self.views[idx].is_some_and(|v| v.is_leader) {
            self.violate(
                t,
                "I2",
                format!("{name} acquired the VIP without being leader"),
            );
        }
        self.vip_holders.insert(idx, fence);
    }

    /// Hosts holding the VIP at virtual time `t`.
    pub fn vip_holder_count(&self, t: u64) -> usize {
        self.vip_holders.values().filter(|&&f| t < f).count()
    }

    /// The periodic site-wide check.
    pub fn site(&mut self, t: u64, site: &SiteView) {
        // Holders only grow by an acquire, and `on_vip` judges every acquire at its instant, so
        // this count can exceed 1 only after a violation already recorded there.
        self.counts.i2_vip += 1;
        debug_assert!(site.vip_holders <= 1 || self.violation_count > 0);
        if t < self.quiet_ms + self.bound_ms || site.up == 0 {
            return;
        }
        self.counts.i1_one_cluster += 1;
        self.counts.i6_liveness += 1;
        let first = self.deadline_at.is_none();
        self.deadline_at.get_or_insert(t);
        if site.formed {
            self.unformed_since = None;
            self.reported_unformed = false;
        } else {
            let since = *self.unformed_since.get_or_insert(t);
            // Unformed at the deadline counts once it lasts DEADLINE_GRACE_MS: a formed site's
            // view blips under message loss (a follower that lost two heartbeats in a row is a
            // pre-candidate, with no leader, until the next one), which is not a site that
            // failed to form. A spell that starts later must last the whole bound.
            let at_deadline = self.deadline_at == Some(since);
            if ((at_deadline && t - since >= DEADLINE_GRACE_MS) || t - since >= self.bound_ms)
                && !self.reported_unformed
            {
                self.reported_unformed = true;
                let when = if at_deadline {
                    format!(
                        "{} ms after the last fault (and {} ms later)",
                        self.bound_ms,
                        t - since
                    )
                } else {
                    format!("for {} ms", t - since)
                };
                self.violate(
                    t,
                    "I6",
                    format!(
                        "site not formed {when}: {} up, {} clusters, {} hosts in none",
                        site.up, site.clusters, site.unclustered
                    ),
                );
            }
        }
        if site.clusters > 1 {
            let since = *self.multi_since.get_or_insert(t);
            if (first || t - since >= self.bound_ms) && !self.reported_multi {
                self.reported_multi = true;
                self.violate(
                    t,
                    "I1",
                    format!(
                        "{} clusters among up hosts after the settle bound",
                        site.clusters
                    ),
                );
            }
        } else {
            self.multi_since = None;
            self.reported_multi = false;
        }
    }

    /// The end-of-run check.
    pub fn finish(&mut self, t: u64, site: &SiteView, one_cluster: bool) {
        if one_cluster
            && site.up > 0
            && !(site.clusters == 1 && site.unclustered == 0 && site.formed)
        {
            self.violate(
                t,
                "I1",
                format!(
                    "at the end: {} clusters, {} up hosts in none, formed = {}",
                    site.clusters, site.unclustered, site.formed
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(cluster: u64, term: u64, applied: u64, leader: bool) -> Obs {
        Obs {
            cluster,
            term,
            applied,
            applied_term: term,
            commit: applied,
            is_leader: leader,
            ..Obs::default()
        }
    }

    fn checker() -> Checker {
        Checker::new(vec!["a".into(), "b".into(), "c".into()], 0, 1_000)
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let mut c = checker();
        let d = SimDisk::default();
        c.observe(1, 0, obs(7, 2, 0, true), &d);
        c.observe(2, 1, obs(7, 2, 0, true), &d);
        assert_eq!(c.violations.len(), 1);
        assert_eq!(c.violations[0].invariant, "I1");
    }

    #[test]
    fn second_vip_holder_is_caught_and_release_clears() {
        let mut c = checker();
        let d = SimDisk::default();
        c.observe(1, 0, obs(7, 2, 0, true), &d);
        c.on_vip(1, 0, true, Some(100));
        c.observe(2, 1, obs(7, 3, 0, true), &d);
        c.on_vip(2, 1, true, Some(100));
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
        c.on_vip(3, 0, false, None);
        c.on_vip(3, 1, false, None);
        c.on_vip(4, 1, true, Some(100));
        assert_eq!(c.violations.len(), 1);
    }

    #[test]
    fn a_fenced_holder_stops_holding_when_its_lease_ends() {
        let mut c = checker();
        let d = SimDisk::default();
        c.observe(1, 0, obs(7, 2, 0, true), &d);
        c.on_vip(1, 0, true, Some(50));
        c.on_vip(40, 0, false, Some(90));
        assert!(c.holds_vip(0, 89));
        assert!(
            !c.holds_vip(0, 90),
            "the fence removes the VIP at the lease end"
        );
        // The old holder stalled and never released; a new leader acquiring after its fence fired
        // is fine, before it is not.
        c.observe(91, 1, obs(7, 3, 0, true), &d);
        c.on_vip(91, 1, true, Some(200));
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        c.observe(92, 2, obs(7, 4, 0, true), &d);
        c.on_vip(92, 2, true, Some(200));
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
    }

    #[test]
    fn restart_with_less_than_acknowledged_is_caught() {
        let mut c = checker();
        let d = SimDisk::default();
        c.observe(1, 0, obs(7, 2, 5, false), &d);
        c.on_crash(0);
        c.on_boot(9, 0, obs(7, 2, 3, false), &d);
        assert_eq!(c.violations[0].invariant, "I4");
    }

    #[test]
    fn different_terms_at_one_index_are_caught() {
        let mut c = checker();
        let d = SimDisk::default();
        c.observe(1, 0, obs(7, 2, 5, false), &d);
        c.observe(1, 1, obs(7, 3, 5, false), &d);
        assert_eq!(c.violations.len(), 1);
    }

    #[test]
    fn liveness_is_judged_after_the_bound() {
        let mut c = checker();
        let site = SiteView {
            up: 3,
            clusters: 2,
            ..SiteView::default()
        };
        c.site(500, &site);
        assert!(c.violations.is_empty());
        c.site(1_000, &site);
        let kinds: Vec<_> = c.violations.iter().map(|v| v.invariant).collect();
        assert_eq!(kinds, vec!["I1"]);
        // Still unformed a grace period after the deadline: a liveness failure.
        c.site(1_000 + DEADLINE_GRACE_MS, &site);
        let kinds: Vec<_> = c.violations.iter().map(|v| v.invariant).collect();
        assert_eq!(kinds, vec!["I1", "I6"]);
    }

    #[test]
    fn a_formed_site_blipping_at_the_deadline_is_live() {
        let mut c = checker();
        let blip = SiteView {
            up: 3,
            clusters: 1,
            ..SiteView::default()
        };
        let formed = SiteView {
            formed: true,
            ..blip.clone()
        };
        c.site(1_000, &blip);
        c.site(1_100, &formed);
        c.site(1_000 + DEADLINE_GRACE_MS, &formed);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        // A spell that starts later must last the whole bound (1 s here).
        c.site(3_000, &blip);
        c.site(3_500, &blip);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        c.site(4_000, &blip);
        assert_eq!(c.violations[0].invariant, "I6");
    }
}
