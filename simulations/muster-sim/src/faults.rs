//! Applying the scenario's faults to the running site: resolving node selectors (`leader`,
//! `voters`, `random:2`, …) at the instant a fault fires, crashing and restarting hosts, and
//! changing the network (partitions, one-way cuts, downed links, loss).
//!
//! A connection whose path a fault cuts is not closed at once: like a TCP connection it is noticed
//! dead `disconnect_after_ms` later (if the path is still cut then).

use rand::Rng;

use crate::scenario::{Action, SelTerm, Selector};
use crate::sim::{Ev, Sim};

/// Resolves a selector that needs no run state (indexes, ranges, all) to host indexes.
pub fn resolve_static(sel: &Selector, n: usize) -> std::collections::BTreeSet<usize> {
    let mut out = std::collections::BTreeSet::new();
    for t in sel {
        match *t {
            SelTerm::All => out.extend(0..n),
            SelTerm::Index(i) => {
                out.insert(i);
            }
            SelTerm::Range(a, b) => out.extend(a..=b.min(n - 1)),
            _ => {}
        }
    }
    out
}

impl Sim {
    /// The current leader: among up hosts that are leader, the one with the highest term.
    pub fn leader(&self) -> Option<usize> {
        (0..self.hosts.len())
            .filter(|i| self.is_up(*i))
            .filter_map(|i| {
                self.checker
                    .view(i)
                    .filter(|o| o.is_leader)
                    .map(|o| (o.term, i))
            })
            .max_by_key(|(term, i)| (*term, std::cmp::Reverse(*i)))
            .map(|(_, i)| i)
    }

    /// Members of the leader's applied state (or, without a leader, of the up host that has
    /// applied most) as (index, voter).
    fn members(&self) -> Vec<(usize, bool)> {
        let source = self.leader().or_else(|| {
            (0..self.hosts.len())
                .filter(|i| self.is_up(*i))
                .max_by_key(|i| self.checker.view(*i).map_or(0, |o| o.applied))
        });
        let Some(node) = source.and_then(|i| self.hosts[i].node.as_ref()) else {
            return Vec::new();
        };
        node.cluster_state()
            .members
            .iter()
            .filter_map(|m| self.index.get(&m.id).map(|&j| (j as usize, m.voter)))
            .collect()
    }

    /// Resolves a selector now. `taken` are hosts already placed (for `rest`).
    pub(crate) fn resolve(&mut self, sel: &Selector, taken: &[bool]) -> Vec<usize> {
        let n = self.hosts.len();
        let mut set = vec![false; n];
        for t in sel {
            match *t {
                SelTerm::All => set.iter_mut().for_each(|s| *s = true),
                SelTerm::Rest => (0..n).filter(|i| !taken[*i]).for_each(|i| set[i] = true),
                SelTerm::Index(_) | SelTerm::Range(..) => resolve_static(&vec![*t], n)
                    .into_iter()
                    .for_each(|i| set[i] = true),
                SelTerm::Leader => {
                    if let Some(l) = self.leader() {
                        set[l] = true;
                    }
                }
                SelTerm::Voters(k) | SelTerm::Followers(k) | SelTerm::Learners(k) => {
                    let leader = self.leader();
                    let mut picked: Vec<usize> = self
                        .members()
                        .into_iter()
                        .filter(|(j, voter)| match *t {
                            SelTerm::Voters(_) => *voter,
                            SelTerm::Followers(_) => *voter && Some(*j) != leader,
                            _ => !voter,
                        })
                        .map(|(j, _)| j)
                        .collect();
                    picked.sort_unstable();
                    picked.truncate(k.unwrap_or(usize::MAX));
                    picked.into_iter().for_each(|j| set[j] = true);
                }
                SelTerm::Up => (0..n)
                    .filter(|i| self.is_up(*i))
                    .for_each(|i| set[i] = true),
                SelTerm::Down => (0..n)
                    .filter(|i| !self.is_up(*i))
                    .for_each(|i| set[i] = true),
                SelTerm::Random(k) => {
                    let mut pool: Vec<usize> = (0..n).collect();
                    for _ in 0..k.min(n) {
                        let p = self.rng.random_range(0..pool.len());
                        set[pool.swap_remove(p)] = true;
                    }
                }
            }
        }
        (0..n).filter(|i| set[*i]).collect()
    }

    fn names(&self, idx: &[usize]) -> String {
        if idx.len() > 8 {
            return format!("{} hosts", idx.len());
        }
        let v: Vec<&str> = idx.iter().map(|i| self.hosts[*i].name.as_str()).collect();
        format!("[{}]", v.join(","))
    }

    fn fault_note(&mut self, text: String) {
        self.note(format!("FAULT {text}"));
        self.metrics.faults.push((self.now_ms, text));
    }

    fn crash_and_maybe_restart(&mut self, hosts: &[usize], restart_after_ms: Option<u64>) {
        for &i in hosts {
            self.crash(i);
            if let Some(after) = restart_after_ms {
                self.q.push(self.now_ms + after, Ev::Boot(i as u32));
            }
        }
    }

    /// Applies one fault now.
    pub fn apply(&mut self, action: &Action) {
        let none = vec![false; self.hosts.len()];
        match action {
            Action::Crash {
                nodes,
                restart_after_ms,
            } => {
                let hosts = self.resolve(nodes, &none);
                if let Some(l) = self.leader().filter(|l| hosts.contains(l)) {
                    let name = self.hosts[l].name.clone();
                    self.metrics.leader_killed(self.now_ms, l, name);
                }
                self.fault_note(format!("crash {}", self.names(&hosts)));
                self.crash_and_maybe_restart(&hosts, *restart_after_ms);
            }
            Action::Restart { nodes } => {
                let hosts = self.resolve(nodes, &none);
                self.fault_note(format!("restart {}", self.names(&hosts)));
                for i in hosts {
                    self.boot(i);
                }
            }
            Action::KillLeader { restart_after_ms } => match self.leader() {
                Some(l) => {
                    let name = self.hosts[l].name.clone();
                    self.fault_note(format!("kill leader {name}"));
                    self.metrics.leader_killed(self.now_ms, l, name);
                    self.crash_and_maybe_restart(&[l], *restart_after_ms);
                }
                None => self.fault_note("kill leader: no leader now, nothing killed".into()),
            },
            Action::PowerCycle { off_ms } => {
                self.fault_note(format!("power cycle, off {off_ms} ms"));
                for i in 0..self.hosts.len() {
                    self.crash(i);
                    let jitter = self.rng.random_range(0..=100);
                    self.q
                        .push(self.now_ms + off_ms + jitter, Ev::Boot(i as u32));
                }
            }
            Action::Pause { nodes, pause_ms } => {
                let hosts = self.resolve(nodes, &none);
                self.fault_note(format!("pause {} for {pause_ms} ms", self.names(&hosts)));
                for i in hosts {
                    let h = &mut self.hosts[i];
                    h.paused_until = h.paused_until.max(self.now_ms + pause_ms);
                }
            }
            Action::Partition { groups } => self.partition(groups),
            Action::Heal => {
                self.fault_note("heal".into());
                self.net.heal();
            }
            Action::Cut { from, to } => {
                let (a, b) = (self.resolve(from, &none), self.resolve(to, &none));
                self.fault_note(format!("cut {} -> {}", self.names(&a), self.names(&b)));
                for &x in &a {
                    for &y in b.iter().filter(|y| **y != x) {
                        self.net.set_cut(x, y, true);
                        self.watch_link(x, y);
                    }
                }
            }
            Action::Link { a, b, up } => {
                let (a, b) = (self.resolve(a, &none), self.resolve(b, &none));
                let what = if *up { "link up" } else { "link down" };
                self.fault_note(format!("{what} {} <-> {}", self.names(&a), self.names(&b)));
                for &x in &a {
                    for &y in b.iter().filter(|y| **y != x) {
                        self.net.set_cut(x, y, !up);
                        self.net.set_cut(y, x, !up);
                        self.watch_link(x, y);
                    }
                }
            }
            Action::SetLoss { between, pct } => match between {
                None => {
                    self.fault_note(format!("loss {pct}% everywhere"));
                    self.net.spec.loss_pct = *pct;
                }
                Some((a, b)) => {
                    let (a, b) = (self.resolve(a, &none), self.resolve(b, &none));
                    self.fault_note(format!(
                        "loss {pct}% between {} and {}",
                        self.names(&a),
                        self.names(&b)
                    ));
                    for &x in &a {
                        for &y in b.iter().filter(|y| **y != x) {
                            self.net.set_link_loss(x, y, *pct);
                            self.net.set_link_loss(y, x, *pct);
                        }
                    }
                }
            },
            Action::SetDiscoveryLoss { pct } => {
                self.fault_note(format!("discovery loss {pct}%"));
                self.net.spec.discovery_loss_pct = *pct;
            }
        }
    }

    fn partition(&mut self, groups: &[Selector]) {
        let n = self.hosts.len();
        let mut group = vec![0u32; n];
        let mut taken = vec![false; n];
        let mut desc = Vec::new();
        for (g, sel) in groups.iter().enumerate() {
            let members = self.resolve(sel, &taken);
            let members: Vec<usize> = members.into_iter().filter(|i| !taken[*i]).collect();
            for &i in &members {
                taken[i] = true;
                group[i] = g as u32 + 1;
            }
            desc.push(self.names(&members));
        }
        self.fault_note(format!("partition {}", desc.join(" | ")));
        self.net.set_groups(group);
        for a in 0..n {
            let peers: Vec<usize> = self.net.peers(a).filter(|b| *b > a).collect();
            for b in peers {
                self.watch_link(a, b);
            }
        }
    }

    /// A connection over a path that is now cut dies `disconnect_after_ms` later.
    fn watch_link(&mut self, a: usize, b: usize) {
        if self.net.connected(a, b) && !self.net.path_ok(a, b) {
            let at = self.now_ms + self.net.spec.disconnect_after_ms;
            self.q.push(at, Ev::LinkTimeout(a as u32, b as u32));
        }
    }
}
