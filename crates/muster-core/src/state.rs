//! The replicated cluster state: what every member applies from committed entries.
//!
//! Only the apply path of [`crate::Node`] mutates it; snapshots carry it encoded as their data.

use muster_proto::{ClusterState, ConfChangeContext, Member};
use prost::Message as _;
use raft::prelude::{ConfChangeType, ConfChangeV2};

use crate::config::NodeId;

/// Why a committed entry could not be applied. Committed entries come from authenticated members,
/// so this means a bug or corruption; the node reports it and stops rather than diverge.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The entry's bytes do not decode.
    #[error("entry {index}: {what} does not decode: {detail}")]
    Decode {
        /// Log index.
        index: u64,
        /// Which part.
        what: &'static str,
        /// Decoder message.
        detail: String,
    },
    /// raft-rs refused the conf change.
    #[error("entry {index}: conf change rejected: {detail}")]
    ConfChange {
        /// Log index.
        index: u64,
        /// raft-rs error.
        detail: String,
    },
}

/// Decodes snapshot data; an empty buffer is the empty state of a node not yet in a cluster.
pub fn decode_state(data: &[u8]) -> Result<ClusterState, prost::DecodeError> {
    ClusterState::decode(data)
}

/// Encodes the state for a snapshot.
pub fn encode_state(state: &ClusterState) -> Vec<u8> {
    state.encode_to_vec()
}

/// Finds a member.
pub fn member(state: &ClusterState, id: NodeId) -> Option<&Member> {
    state.members.iter().find(|m| m.id == id)
}

/// Number of voters in the state.
pub fn voter_count(state: &ClusterState) -> usize {
    state.members.iter().filter(|m| m.voter).count()
}

/// Applies one committed conf change to the state: adds or updates the members in its context,
/// one per change (a batch of joiners enters a joint configuration; the empty change that leaves
/// it changes nothing here). Membership order is kept sorted by join time, then id, so every
/// member lists it alike.
pub fn apply_conf_change(
    state: &mut ClusterState,
    cc: &ConfChangeV2,
    index: u64,
) -> Result<(), ApplyError> {
    let changes = cc.get_changes();
    if changes.is_empty() {
        return Ok(());
    }
    let bad = |detail: String| ApplyError::Decode {
        index,
        what: "conf change context",
        detail,
    };
    let ctx = ConfChangeContext::decode(cc.get_context()).map_err(|e| bad(e.to_string()))?;
    let incoming: Vec<Member> = ctx.member.into_iter().chain(ctx.members).collect();
    if incoming.len() != changes.len() {
        return Err(bad(format!(
            "{} members for {} changes",
            incoming.len(),
            changes.len()
        )));
    }
    for (change, mut incoming) in changes.iter().zip(incoming) {
        if change.node_id != incoming.id {
            return Err(bad(format!(
                "member {} does not match change for {}",
                incoming.id, change.node_id
            )));
        }
        match change.get_change_type() {
            ConfChangeType::AddNode => incoming.voter = true,
            ConfChangeType::AddLearnerNode => incoming.voter = false,
            ConfChangeType::RemoveNode => {
                state.members.retain(|m| m.id != change.node_id);
                continue;
            }
        }
        match state.members.iter_mut().find(|m| m.id == incoming.id) {
            Some(existing) => {
                // Keep the original join time; take the new role, name and address.
                let joined = existing.joined_unix_ms;
                *existing = incoming;
                existing.joined_unix_ms = joined;
            }
            None => state.members.push(incoming),
        }
    }
    state.members.sort_by_key(|m| (m.joined_unix_ms, m.id));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::ConfChangeSingle;

    fn cc(id: u64, t: ConfChangeType, joined: u64) -> ConfChangeV2 {
        let mut single = ConfChangeSingle::default();
        single.node_id = id;
        single.set_change_type(t);
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        let ctx = ConfChangeContext {
            member: Some(Member {
                id,
                name: format!("h{id}"),
                joined_unix_ms: joined,
                ..Default::default()
            }),
            members: Vec::new(),
        };
        cc.set_context(ctx.encode_to_vec().into());
        cc
    }

    fn batch(ids: &[u64], joined: u64) -> ConfChangeV2 {
        let mut cc = ConfChangeV2::default();
        let mut members = Vec::new();
        for &id in ids {
            let mut single = ConfChangeSingle::default();
            single.node_id = id;
            single.set_change_type(ConfChangeType::AddLearnerNode);
            cc.mut_changes().push(single);
            members.push(Member {
                id,
                name: format!("h{id}"),
                joined_unix_ms: joined,
                ..Default::default()
            });
        }
        let ctx = ConfChangeContext {
            member: None,
            members,
        };
        cc.set_context(ctx.encode_to_vec().into());
        cc
    }

    #[test]
    fn a_batch_adds_every_member_and_leaving_joint_changes_nothing() {
        let mut s = ClusterState::default();
        apply_conf_change(&mut s, &cc(1, ConfChangeType::AddNode, 10), 2).unwrap();
        apply_conf_change(&mut s, &batch(&[7, 4, 9], 20), 3).unwrap();
        assert_eq!(
            s.members.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![1, 4, 7, 9]
        );
        assert_eq!(voter_count(&s), 1);
        let before = s.clone();
        apply_conf_change(&mut s, &ConfChangeV2::default(), 4).unwrap();
        assert_eq!(s, before);
        // One member short of the changes: an error naming the counts.
        let mut short = batch(&[11, 12], 30);
        let extra = short.get_changes()[0].clone();
        short.mut_changes().push(extra);
        let e = apply_conf_change(&mut s, &short, 5).unwrap_err();
        assert!(e.to_string().contains("2 members for 3 changes"), "{e}");
        assert_eq!(s, before, "a bad entry changes nothing");
    }

    #[test]
    fn learner_then_promotion_keeps_join_time() {
        let mut s = ClusterState::default();
        apply_conf_change(&mut s, &cc(5, ConfChangeType::AddLearnerNode, 100), 2).unwrap();
        apply_conf_change(&mut s, &cc(3, ConfChangeType::AddLearnerNode, 200), 3).unwrap();
        assert_eq!(voter_count(&s), 0);
        apply_conf_change(&mut s, &cc(5, ConfChangeType::AddNode, 900), 4).unwrap();
        assert_eq!(voter_count(&s), 1);
        assert_eq!(member(&s, 5).unwrap().joined_unix_ms, 100);
        assert_eq!(
            s.members.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![5, 3]
        );
    }

    #[test]
    fn mismatched_context_is_an_error_not_a_panic() {
        let mut s = ClusterState::default();
        let mut bad = cc(5, ConfChangeType::AddNode, 1);
        bad.mut_changes()[0].node_id = 6;
        assert!(apply_conf_change(&mut s, &bad, 9).is_err());
        let mut garbage = cc(5, ConfChangeType::AddNode, 1);
        garbage.set_context(vec![0xff, 0xff, 0xff].into());
        assert!(apply_conf_change(&mut s, &garbage, 9).is_err());
    }
}
