//! A host's formation timeline, read from its agent's own log: when it started, first connected
//! to a peer, bootstrapped a cluster or asked to join one, was admitted (contacted by the
//! leader, raft started), installed the leader's snapshot (caught up), became a voter, and saw
//! the site formed. For `muster-formation-bench --timeline`: where formation time goes.
//!
//! Reads the agent's default log format (`2026-12-01T16:50:15.166422Z  INFO span: target:
//! message key=value`), only the section of the last start the testbed wrote.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The testbed's marker before each start of an agent (`host.rs`).
const START_MARKER: &str = "--- muster-testbed: start #";

/// Wall-clock times (Unix ms) of one host's formation stages; `None` if the log has no such line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stages {
    /// The agent's "starting" line.
    pub start: Option<u64>,
    /// The first authenticated connection to a peer.
    pub first_peer: Option<u64>,
    /// It bootstrapped a cluster (it is then its first voter).
    pub bootstrap: Option<u64>,
    /// It asked to join a cluster (the last time, if it asked again).
    pub join_asked: Option<u64>,
    /// A leader contacted it and its raft started (the last time).
    pub admitted: Option<u64>,
    /// It installed the leader's snapshot (the last time).
    pub caught_up: Option<u64>,
    /// The conf change making it a voter was applied here (or it bootstrapped).
    pub voter: Option<u64>,
    /// It applied the site-formed record.
    pub formed: Option<u64>,
}

impl Stages {
    /// The stages in order, with their column names.
    pub fn columns(&self) -> [(&'static str, Option<u64>); 8] {
        [
            ("start", self.start),
            ("peer", self.first_peer),
            ("bootstrap", self.bootstrap),
            ("join asked", self.join_asked),
            ("admitted", self.admitted),
            ("caught up", self.caught_up),
            ("voter", self.voter),
            ("formed", self.formed),
        ]
    }
}

/// The Unix ms of a log line's leading RFC 3339 timestamp.
fn timestamp(line: &str) -> Option<u64> {
    let stamp = line.split_whitespace().next()?;
    let t = OffsetDateTime::parse(stamp, &Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// This agent's node id (hex), from its `agent{node=...}` span.
fn own_id(line: &str) -> Option<&str> {
    let rest = &line[line.find("agent{node=")? + "agent{node=".len()..];
    rest.split([' ', '}']).next()
}

/// Parses one agent log (the last start in it).
pub fn parse(log: &str) -> Stages {
    let section = log.rfind(START_MARKER).map_or(log, |at| &log[at..]);
    let mut s = Stages::default();
    let mut me: Option<String> = None;
    for line in section.lines() {
        let Some(t) = timestamp(line) else { continue };
        if me.is_none() {
            me = own_id(line).map(str::to_owned);
        }
        if line.contains("muster::agent: starting") {
            s.start.get_or_insert(t);
        } else if line.contains("peer connected") {
            s.first_peer.get_or_insert(t);
        } else if line.contains("bootstrapping a new cluster") {
            s.bootstrap = Some(t);
            s.voter.get_or_insert(t);
        } else if line.contains("asking to join") {
            s.join_asked = Some(t);
        } else if line.contains("contacted by the cluster's leader") {
            s.admitted = Some(t);
        } else if line.contains("installed snapshot from the leader") {
            s.caught_up = Some(t);
        } else if line.contains("membership change applied") && line.contains("voter=true") {
            let mine = me
                .as_deref()
                .is_some_and(|id| line.contains(&format!("member={id} ")));
            if mine {
                s.voter.get_or_insert(t);
            }
        } else if line.contains("site formed") {
            s.formed.get_or_insert(t);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
--- muster-testbed: start #1 of host 0 (mb-h0) ---
2026-12-01T16:50:00.000000Z  INFO agent{node=4ebd3de45d1d31c5 name=h0}: muster::agent: starting listen=10.77.0.10:7946
--- muster-testbed: start #2 of host 0 (mb-h0) ---
2026-12-01T16:50:15.166687Z  INFO agent{node=4ebd3de45d1d31c5 name=h0}: muster::agent: starting listen=10.77.0.10:7946
2026-12-01T16:50:15.179351Z  INFO agent{node=4ebd3de45d1d31c5 name=h0}:net{local=x}: muster_net::actor: peer connected peer=a
2026-12-01T16:50:15.214115Z  INFO agent{node=4ebd3de45d1d31c5 name=h0}:net{local=x}: muster_net::actor: peer connected peer=b
2026-12-01T16:50:15.268309Z  INFO agent{node=4ebd3de45d1d31c5 name=h0}: muster_core::formation: found a cluster; asking to join cluster=44
2026-12-01T16:50:15.323075Z  INFO agent{node=4ebd3de45d1d31c5 name=h0}: muster_core::formation: contacted by the cluster's leader; starting raft as a new member cluster=44
2026-12-01T16:50:15.328627Z  INFO agent{node=4ebd3de45d1d31c5 name=h0}: muster_core::replica: installed snapshot from the leader cluster=44 index=4 members=3
2026-12-01T16:50:15.340000Z  INFO agent{node=4ebd3de45d1d31c5 name=h0}: muster_core::replica: membership change applied member=b29f5fe4945901e6 name=h1 voter=true index=5
2026-12-01T16:50:15.365439Z  INFO agent{node=4ebd3de45d1d31c5 name=h0}: muster_core::replica: membership change applied member=4ebd3de45d1d31c5 name=h0 voter=true index=6
2026-12-01T16:50:15.410153Z  INFO agent{node=4ebd3de45d1d31c5 name=h0}: muster_core::replica: site formed index=7 holders=3
";

    #[test]
    fn reads_the_stages_of_the_last_start() {
        let s = parse(LOG);
        let base = 1_796_143_815_000u64; // 2026-12-01T16:50:15Z
        assert_eq!(s.start, Some(base + 166));
        assert_eq!(s.first_peer, Some(base + 179), "the first connection");
        assert_eq!(s.bootstrap, None);
        assert_eq!(s.join_asked, Some(base + 268));
        assert_eq!(s.admitted, Some(base + 323));
        assert_eq!(s.caught_up, Some(base + 328));
        assert_eq!(s.voter, Some(base + 365), "its own promotion, not h1's");
        assert_eq!(s.formed, Some(base + 410));
    }

    #[test]
    fn a_bootstrapper_is_a_voter_from_the_start_and_junk_is_skipped() {
        let log = "not a log line\n\
            2026-12-01T16:50:15.200000Z  INFO agent{node=1b47 name=h2}: muster_core::formation: bootstrapping a new cluster as the lowest id in sight\n\
            garbage 2026 line\n";
        let s = parse(log);
        assert_eq!(s.bootstrap, Some(1_796_143_815_200));
        assert_eq!(s.voter, s.bootstrap);
        assert_eq!(s.start, None);
    }
}
