//! Watching the site: after every input a host handles, its state is read (cheaply: from the
//! node's accessors and its store, never `status()`) into an [`Obs`] for the checker, the trace
//! and the timeline; [`Sim::site_view`] summarises the whole site for the periodic checks; and
//! [`Sim::finish`] makes the end-of-run checks.

use std::collections::BTreeSet;

use crate::check::{Obs, SiteView};
use crate::metrics::Mark;
use crate::sim::Sim;

impl Sim {
    /// Reads host `i`'s state for the checker (cheap: no status() and no member copies).
    pub(crate) fn obs(&self, i: usize) -> Obs {
        let Some(node) = self.hosts[i].node.as_ref() else {
            return Obs::default();
        };
        let store = node.store();
        let c = store.cache();
        let leader = node.leader_id();
        Obs {
            cluster: node.cluster_id(),
            leader,
            is_leader: leader != 0 && leader == node.id(),
            term: c.hard_state.term,
            vote: c.hard_state.vote,
            commit: c.hard_state.commit,
            applied: c.applied.get_metadata().index,
            applied_term: c.applied.get_metadata().term,
            members: node.cluster_state().members.len(),
            last_index: c.last_index(),
            locked: node.locked(),
            formed: node.site_formed(),
        }
    }

    pub(crate) fn observe(&mut self, i: usize) {
        let obs = self.obs(i);
        let prev = self.checker.view(i).copied();
        if prev == Some(obs) {
            return;
        }
        let t = self.now_ms;
        let Some(node) = self.hosts[i].node.as_ref() else {
            return;
        };
        self.checker.observe(t, i, obs, &node.store());
        let prev = prev.unwrap_or_default();
        if obs.is_leader && !(prev.is_leader && prev.term == obs.term) {
            let name = self.hosts[i].name.clone();
            self.note(format!(
                "leader {name} cluster {:016x} term {}",
                obs.cluster, obs.term
            ));
            self.metrics.new_leader(t, i);
        } else if prev.is_leader && !obs.is_leader {
            self.metrics.mark(t, i, Mark::Leader(false));
        }
        if obs.cluster != prev.cluster {
            let name = self.hosts[i].name.clone();
            self.note(format!("{name} in cluster {:016x}", obs.cluster));
            self.metrics.mark(t, i, Mark::Cluster(obs.cluster));
        }
    }

    pub(crate) fn flush_violations(&mut self) {
        // Violations are noted in the trace as they are found.
        while self.trace_violations < self.checker.violation_count {
            let k = self.trace_violations;
            self.trace_violations += 1;
            if let Some(v) = self.checker.violations.get(k).cloned() {
                self.note(format!("VIOLATION {} {}", v.invariant, v.detail));
            }
        }
    }

    pub(crate) fn note(&mut self, text: String) {
        self.trace.note(self.now_ms, format_args!("{text}"));
    }

    /// The site at this instant, for the checker.
    pub fn site_view(&self) -> SiteView {
        let mut v = SiteView {
            vip_holders: self.checker.vip_holder_count(self.now_ms),
            ..SiteView::default()
        };
        let mut clusters = BTreeSet::new();
        let mut leaders = BTreeSet::new();
        for (i, h) in self.hosts.iter().enumerate() {
            if h.node.is_none() {
                continue;
            }
            v.up += 1;
            let o = self.checker.view(i).copied().unwrap_or_default();
            if o.cluster == 0 {
                v.unclustered += 1;
            } else {
                clusters.insert(o.cluster);
            }
            leaders.insert(o.leader);
        }
        v.clusters = clusters.len();
        v.formed = v.up > 0 && v.clusters == 1 && v.unclustered == 0 && leaders.len() == 1 && {
            let leader = leaders.first().copied().unwrap_or(0);
            self.index.get(&leader).is_some_and(|&l| {
                let l = l as usize;
                self.checker.view(l).is_some_and(|o| o.is_leader)
                    && (!self.scenario.vip || self.checker.holds_vip(l, self.now_ms))
                    && self.hosts[l].node.as_ref().is_some_and(|node| {
                        let mut members = crate::net::BitSet::new(self.hosts.len());
                        for m in &node.cluster_state().members {
                            if let Some(&j) = self.index.get(&m.id) {
                                members.set(j as usize, true);
                            }
                        }
                        (0..self.hosts.len()).all(|j| !self.is_up(j) || members.get(j))
                    })
            })
        };
        v
    }

    /// Runs to the end of the scenario and makes the final checks.
    pub fn finish(&mut self) {
        self.run_until(self.scenario.duration_ms);
        let site = self.site_view();
        let one = self.scenario.expect.one_cluster_at_end;
        self.checker.finish(self.now_ms, &site, one);
        self.check_plan_done();
        if let (Some(max), Some(f)) = (
            self.scenario.expect.max_formation_ms,
            self.metrics.formation_ms(),
        ) {
            if f > max {
                self.checker
                    .violate(self.now_ms, "I6", format!("formation took {f} ms > {max}"));
            }
        }
        if self.scenario.expect.max_formation_ms.is_some() && self.metrics.formation_ms().is_none()
        {
            self.checker
                .violate(self.now_ms, "I6", "the site never formed".into());
        }
        if let Some(max) = self.scenario.expect.max_failover_ms {
            let slow: Vec<_> = self
                .metrics
                .failovers
                .iter()
                .filter(|f| f.new_leader_ms.is_none_or(|ms| ms > max))
                .map(|f| (f.at_ms, f.new_leader_ms))
                .collect();
            for (at, ms) in slow {
                self.checker.violate(
                    self.now_ms,
                    "I6",
                    format!("failover of the leader killed at {at} ms took {ms:?} ms > {max}"),
                );
            }
        }
        self.flush_violations();
        self.note(format!("end: {} events", self.events));
    }

    /// One line per up host that is not a formed member of the largest cluster: what it
    /// reports and what the network gives it. For `run --dump` when a run ends unformed.
    pub fn describe_stragglers(&self) -> Vec<String> {
        let mut count = std::collections::BTreeMap::new();
        for i in 0..self.hosts.len() {
            if let Some(o) = self.checker.view(i).filter(|_| self.is_up(i)) {
                *count.entry(o.cluster).or_insert(0usize) += 1;
            }
        }
        let main = count
            .iter()
            .max_by_key(|(c, n)| (**n, **c != 0))
            .map_or(0, |(c, _)| *c);
        (0..self.hosts.len())
            .filter_map(|i| {
                let node = self.hosts[i].node.as_ref()?;
                let st = node.status();
                if st.cluster_id == main && main != 0 && std::env::var_os("SIM_DUMP_ALL").is_none()
                {
                    return None;
                }
                let members: Vec<String> = st
                    .members
                    .iter()
                    .map(|m| {
                        self.hosts
                            .iter()
                            .find(|h| h.id == m.id)
                            .map_or_else(|| format!("{:016x}", m.id), |h| h.name.clone())
                    })
                    .collect();
                Some(format!(
                    "{} {:016x}: phase {} cluster {:016x} leader {:016x} term {} members {} ({}); \
                     core sees {} peers connected; network: {} connections, {} addresses known",
                    self.hosts[i].name,
                    self.hosts[i].id,
                    st.phase,
                    st.cluster_id,
                    st.leader_id,
                    st.term,
                    st.members.len(),
                    members.join(" "),
                    st.peers_connected,
                    self.net.peers(i).count(),
                    (0..self.hosts.len())
                        .filter(|j| self.net.knows(i, *j))
                        .count()
                ))
            })
            .collect()
    }
}
