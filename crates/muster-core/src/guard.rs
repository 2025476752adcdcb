//! What the core takes from the wire: only members speak raft, only the leader sends leader
//! messages, hellos and join requests are bounded and checked (invariant I5, the trust model in
//! `shared/DESIGN.md`).
//!
//! Every inbound raft message passes [`RaftGate::check`] before raft-rs sees it: the sender must
//! be a member of this host's applied membership (or, on a host still joining, the leader that
//! admitted it; or a leader that one of our own members names in its hello — a member that
//! missed membership changes while it was down still follows the current leader); message types
//! that only a leader sends are taken only from a voter, and within the current term only from
//! the leader this host recognises; types raft-rs never sends between hosts (proposals, local
//! ticks, forwarded reads and transfers: muster does neither) are never stepped. Whatever is
//! refused is counted by reason ([`Drops`], shown in status) and logged at most once per reason
//! every [`DROP_LOG_INTERVAL_MS`].
//!
//! Called by `node.rs` (hellos, join requests) and `replica.rs` (raft messages).

use std::collections::BTreeMap;

use muster_proto::{Hello, Member};
use raft::prelude::{Message, MessageType};

use crate::config::{format_id, NodeId};

/// A dropped-traffic reason is logged at most once per this interval (with the count so far).
pub const DROP_LOG_INTERVAL_MS: u64 = 10_000;

/// Longest node name accepted from a peer (a DNS label's limit, as hostnames).
pub const MAX_NAME_BYTES: usize = 63;
/// Longest "ip:port" address accepted from a peer.
pub const MAX_ADDRESS_BYTES: usize = 64;
/// Most member ids a hello may list.
pub const MAX_HELLO_MEMBER_IDS: usize = 4096;
/// A raft term more than this far above ours is refused (elections raise it by one; only a bug
/// or a forgery jumps it towards the 2^62 our store refuses).
pub const MAX_TERM_JUMP: u64 = 1 << 20;

/// Counts of dropped inbound messages by reason, with rate-limited logging.
#[derive(Debug, Clone, Default)]
pub struct Drops {
    counts: BTreeMap<&'static str, u64>,
    last_log_ms: BTreeMap<&'static str, u64>,
}

impl Drops {
    /// Counts one drop of `reason` from `peer`; logs it unless that reason was logged within the
    /// last [`DROP_LOG_INTERVAL_MS`].
    pub fn note(&mut self, reason: &'static str, peer: NodeId, now_ms: u64) {
        let count = self.counts.entry(reason).or_default();
        *count += 1;
        let total = *count;
        let due = self
            .last_log_ms
            .get(reason)
            .is_none_or(|t| now_ms >= t + DROP_LOG_INTERVAL_MS);
        if due {
            self.last_log_ms.insert(reason, now_ms);
            tracing::warn!(
                reason,
                peer = %format_id(peer),
                total,
                "inbound message dropped (logged once per reason every 10 s)"
            );
        }
    }

    /// Every reason with its count, in reason order.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.counts.iter().map(|(r, c)| (*r, *c))
    }

    /// The count of one reason.
    pub fn count(&self, reason: &str) -> u64 {
        self.counts.get(reason).copied().unwrap_or(0)
    }
}

/// What a host knows when it judges a raft message: its own raft state and who the sender is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RaftGate {
    /// This host's current term.
    pub term: u64,
    /// The leader this host recognises in `term`, 0 if none.
    pub leader: NodeId,
    /// Whether this host is still joining (no snapshot of its cluster yet).
    pub joining: bool,
    /// Joining only: the leader whose contact started our raft group.
    pub admitted_by: Option<NodeId>,
    /// The sender is in our applied membership.
    pub sender_member: bool,
    /// The sender is a voter of our applied membership.
    pub sender_voter: bool,
    /// One of our members' hellos names the sender as our cluster's leader.
    pub sender_vouched_leader: bool,
}

/// Raft message types only a leader sends.
pub(crate) fn leader_only(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgAppend
            | MessageType::MsgHeartbeat
            | MessageType::MsgSnapshot
            | MessageType::MsgTimeoutNow
            | MessageType::MsgReadIndexResp
    )
}

/// Raft message types that never travel between muster hosts: raft-rs's local messages, and the
/// forwarding of proposals, reads and transfers, which muster never uses (it proposes, reads and
/// transfers on the leader only).
fn never_on_the_wire(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgHup
            | MessageType::MsgBeat
            | MessageType::MsgPropose
            | MessageType::MsgUnreachable
            | MessageType::MsgSnapStatus
            | MessageType::MsgCheckQuorum
            | MessageType::MsgTransferLeader
            | MessageType::MsgReadIndex
    )
}

impl RaftGate {
    /// Whether `msg` (already checked to come from `from` and be addressed to us) may be stepped;
    /// `Err` names the reason it is dropped.
    pub fn check(&self, from: NodeId, msg: &Message) -> Result<(), &'static str> {
        let t = msg.get_msg_type();
        if never_on_the_wire(t) {
            return Err("raft message type never sent between hosts");
        }
        if self.joining {
            // Until our first snapshot only the leader that admitted us speaks to us.
            return match self.admitted_by {
                Some(l) if l == from => Ok(()),
                _ => Err("raft message to a joining host from other than its admitting leader"),
            };
        }
        let may_lead = self.sender_voter || self.sender_vouched_leader;
        if !self.sender_member && !self.sender_vouched_leader {
            return Err("raft message from a non-member");
        }
        if msg.term > self.term.saturating_add(MAX_TERM_JUMP) {
            return Err("raft term jump beyond bound");
        }
        if leader_only(t) {
            if !may_lead {
                return Err("leader message from a host that cannot lead");
            }
            // TimeoutNow (forces an election) and ReadIndexResp (advances a read) come only
            // from the leader we follow in our term; the others may also come from the winner
            // of a later term, which raft-rs then follows.
            let strict = matches!(
                t,
                MessageType::MsgTimeoutNow | MessageType::MsgReadIndexResp
            );
            let ours = msg.term == self.term && self.leader == from;
            let other_leader = msg.term == self.term && self.leader != 0 && self.leader != from;
            if other_leader || (strict && !ours) {
                return Err("leader message from a host that is not this term's leader");
            }
        }
        let vote = matches!(
            t,
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        );
        if vote && !self.sender_voter {
            return Err("vote request from a non-voter");
        }
        Ok(())
    }
}

/// Whether raft-rs can restore `cs` (a snapshot's configuration): the same changes raft-rs's
/// `confchange::restore` makes, run on a scratch tracker, so an invalid one is refused here
/// instead of reaching raft-rs's panic ("invalid restore").
pub fn restorable(cs: &raft::prelude::ConfState) -> bool {
    use raft::prelude::{ConfChangeSingle, ConfChangeType};
    let single = |id: u64, t: ConfChangeType| {
        let mut c = ConfChangeSingle::default();
        c.node_id = id;
        c.set_change_type(t);
        c
    };
    if cs.voters.is_empty() && cs.voters_outgoing.is_empty() {
        return false;
    }
    let all = cs
        .voters
        .iter()
        .chain(&cs.learners)
        .chain(&cs.voters_outgoing)
        .chain(&cs.learners_next);
    if all.clone().any(|id| *id == 0) || all.count() > MAX_CONF_IDS {
        return false;
    }
    let mut tracker = raft::ProgressTracker::new(1);
    let outgoing: Vec<_> = cs
        .voters_outgoing
        .iter()
        .map(|id| single(*id, ConfChangeType::AddNode))
        .collect();
    let mut incoming: Vec<_> = cs
        .voters_outgoing
        .iter()
        .map(|id| single(*id, ConfChangeType::RemoveNode))
        .collect();
    incoming.extend(
        cs.voters
            .iter()
            .map(|id| single(*id, ConfChangeType::AddNode)),
    );
    incoming.extend(
        cs.learners
            .iter()
            .chain(&cs.learners_next)
            .map(|id| single(*id, ConfChangeType::AddLearnerNode)),
    );
    let apply_simple =
        |tracker: &mut raft::ProgressTracker, cc: &ConfChangeSingle| match raft::Changer::new(
            tracker,
        )
        .simple(std::slice::from_ref(cc))
        {
            Ok((cfg, changes)) => {
                tracker.apply_conf(cfg, changes, 1);
                true
            }
            Err(_) => false,
        };
    if outgoing.is_empty() {
        if !incoming.iter().all(|cc| apply_simple(&mut tracker, cc)) {
            return false;
        }
    } else {
        if !outgoing.iter().all(|cc| apply_simple(&mut tracker, cc)) {
            return false;
        }
        match raft::Changer::new(&tracker).enter_joint(cs.auto_leave, &incoming) {
            Ok((cfg, changes)) => tracker.apply_conf(cfg, changes, 1),
            Err(_) => return false,
        }
    }
    // raft-rs then insists that the result is the configuration it was given.
    let got = tracker.conf().to_conf_state();
    let set = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    let no_dups = |v: &[u64]| {
        let s = set(v);
        s.windows(2).all(|w| w[0] != w[1])
    };
    [
        &cs.voters,
        &cs.learners,
        &cs.voters_outgoing,
        &cs.learners_next,
    ]
    .iter()
    .all(|v| no_dups(v))
        && set(&got.voters) == set(&cs.voters)
        && set(&got.learners) == set(&cs.learners)
        && set(&got.voters_outgoing) == set(&cs.voters_outgoing)
        && set(&got.learners_next) == set(&cs.learners_next)
        && got.auto_leave == cs.auto_leave
}

/// Most ids a snapshot's configuration may name.
pub const MAX_CONF_IDS: usize = 4 * crate::node::MAX_PEERS;

/// Longest agent version a hello may carry.
pub const MAX_VERSION_BYTES: usize = 32;

/// Whether `name` follows hostname rules: 1–63 bytes of ASCII letters, digits, '-' and '.',
/// (an underscore is tolerated, as many images use one), not starting with '-' or '.'.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !name.starts_with(['-', '.'])
}

/// Checks a hello from `from`: bounded fields, and the public key it carries is the one the
/// authenticated connection's id was derived from.
pub fn check_hello(from: NodeId, h: &Hello) -> Result<(), &'static str> {
    if !valid_name(&h.name) {
        return Err("hello with an invalid name");
    }
    if h.address.len() > MAX_ADDRESS_BYTES {
        return Err("hello with an oversized address");
    }
    if h.member_ids.len() > MAX_HELLO_MEMBER_IDS {
        return Err("hello listing too many members");
    }
    // A version is "0.1.0" or "1.2.3-rc.1+build": short, printable, no control characters
    // (it reaches operators' terminals).
    let version_ok = h.agent_version.len() <= MAX_VERSION_BYTES
        && h.agent_version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'));
    if !version_ok {
        return Err("hello with an invalid agent version");
    }
    if h.public_key.len() != 32 || crate::node_id_from_public_key(&h.public_key) != from {
        return Err("hello whose public key is not the sender's");
    }
    Ok(())
}

/// Checks a member record a join request carries.
pub fn check_member(m: &Member) -> Result<(), &'static str> {
    if !valid_name(&m.name) {
        return Err("join request with an invalid name");
    }
    if m.address.len() > MAX_ADDRESS_BYTES {
        return Err("join request with an oversized address");
    }
    if m.public_key.len() != 32 || crate::node_id_from_public_key(&m.public_key) != m.id {
        return Err("join request whose member id does not match its public key");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> RaftGate {
        RaftGate {
            term: 5,
            leader: 7,
            joining: false,
            admitted_by: None,
            sender_member: true,
            sender_voter: true,
            sender_vouched_leader: false,
        }
    }

    fn msg(t: MessageType, term: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(t);
        m.term = term;
        m
    }

    #[test]
    fn members_speak_non_members_do_not() {
        let g = gate();
        assert_eq!(g.check(7, &msg(MessageType::MsgAppend, 5)), Ok(()));
        let outsider = RaftGate {
            sender_member: false,
            sender_voter: false,
            ..g
        };
        for t in [
            MessageType::MsgAppend,
            MessageType::MsgHeartbeat,
            MessageType::MsgRequestVote,
            MessageType::MsgAppendResponse,
        ] {
            assert_eq!(
                outsider.check(9, &msg(t, 6)),
                Err("raft message from a non-member")
            );
        }
    }

    #[test]
    fn proposals_and_local_types_never_come_from_the_wire() {
        for t in [
            MessageType::MsgPropose,
            MessageType::MsgHup,
            MessageType::MsgBeat,
            MessageType::MsgReadIndex,
            MessageType::MsgTransferLeader,
            MessageType::MsgCheckQuorum,
        ] {
            assert!(gate().check(7, &msg(t, 5)).is_err(), "{t:?}");
        }
    }

    #[test]
    fn leader_messages_only_from_this_terms_leader_and_only_from_voters() {
        let g = gate();
        // Another member claiming leadership in our term.
        assert!(g.check(8, &msg(MessageType::MsgHeartbeat, 5)).is_err());
        // A new leader in a later term is followed (it won an election).
        assert_eq!(g.check(8, &msg(MessageType::MsgAppend, 6)), Ok(()));
        // A learner never leads.
        let learner = RaftGate {
            sender_voter: false,
            ..g
        };
        assert!(learner.check(8, &msg(MessageType::MsgAppend, 6)).is_err());
        assert!(learner
            .check(8, &msg(MessageType::MsgRequestVote, 6))
            .is_err());
        assert_eq!(
            learner.check(8, &msg(MessageType::MsgAppendResponse, 5)),
            Ok(())
        );
        // TimeoutNow and ReadIndexResp only from the leader of our term.
        assert_eq!(g.check(7, &msg(MessageType::MsgTimeoutNow, 5)), Ok(()));
        assert!(g.check(7, &msg(MessageType::MsgTimeoutNow, 6)).is_err());
        assert!(g.check(8, &msg(MessageType::MsgReadIndexResp, 5)).is_err());
        let no_leader = RaftGate { leader: 0, ..g };
        assert!(no_leader
            .check(8, &msg(MessageType::MsgTimeoutNow, 5))
            .is_err());
        // Term jumps towards 2^62 are refused.
        assert_eq!(
            g.check(7, &msg(MessageType::MsgAppend, 1 << 62)),
            Err("raft term jump beyond bound")
        );
    }

    #[test]
    fn a_joining_host_hears_only_its_admitting_leader() {
        let j = RaftGate {
            joining: true,
            admitted_by: Some(7),
            sender_member: false,
            sender_voter: false,
            ..gate()
        };
        assert_eq!(j.check(7, &msg(MessageType::MsgSnapshot, 9)), Ok(()));
        assert!(j.check(8, &msg(MessageType::MsgSnapshot, 9)).is_err());
    }

    #[test]
    fn a_vouched_leader_outside_our_stale_membership_is_followed() {
        let g = RaftGate {
            sender_member: false,
            sender_voter: false,
            sender_vouched_leader: true,
            leader: 0,
            ..gate()
        };
        assert_eq!(g.check(9, &msg(MessageType::MsgAppend, 6)), Ok(()));
        assert!(g.check(9, &msg(MessageType::MsgRequestVote, 6)).is_err());
    }

    #[test]
    fn only_configurations_raft_rs_can_restore_pass() {
        use raft::prelude::ConfState;
        let cs = |v: &[u64], l: &[u64], vo: &[u64], ln: &[u64]| {
            let mut c = ConfState::default();
            c.voters = v.to_vec();
            c.learners = l.to_vec();
            c.voters_outgoing = vo.to_vec();
            c.learners_next = ln.to_vec();
            c
        };
        assert!(restorable(&cs(&[1, 2, 3], &[4], &[], &[])));
        assert!(
            restorable(&cs(&[1, 2, 3], &[], &[1, 2, 4], &[4])),
            "joint with learners_next"
        );
        assert!(!restorable(&cs(&[], &[], &[], &[])), "no voters");
        assert!(
            !restorable(&cs(&[1, 2], &[2], &[], &[])),
            "voter and learner at once"
        );
        assert!(!restorable(&cs(&[1, 0], &[], &[], &[])), "id 0");
        assert!(
            !restorable(&cs(&[1], &[], &[], &[5])),
            "learners_next without a joint config"
        );
    }

    #[test]
    fn names_follow_hostname_rules() {
        assert!(valid_name("edge-1"));
        assert!(valid_name("h0.site.example"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(64)));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("evil\u{1b}[2J"));
    }

    #[test]
    fn hellos_carry_a_short_printable_version_only() {
        let key = vec![7u8; 32];
        let from = crate::node_id_from_public_key(&key);
        let hello = |v: &str| Hello {
            name: "h1".into(),
            public_key: key.clone(),
            agent_version: v.into(),
            ..Default::default()
        };
        assert_eq!(check_hello(from, &hello("0.1.0")), Ok(()));
        assert_eq!(check_hello(from, &hello("1.2.3-rc.1+g1a2b")), Ok(()));
        assert_eq!(check_hello(from, &hello("")), Ok(()), "an older agent");
        for bad in ["0.1.0\u{1b}[31m", &"9".repeat(33), "1 2"] {
            assert_eq!(
                check_hello(from, &hello(bad)),
                Err("hello with an invalid agent version"),
                "{bad:?}"
            );
        }
    }
}
