//! The replicated cluster state: what every member applies from committed entries.
//!
//! Only the apply path of [`crate::Node`] mutates it, through [`apply_conf_change`] (membership)
//! and [`apply_command`] (every other replicated command); snapshots carry it encoded as their
//! data. Both are pure functions of (state, entry): every member applies the same log alike.

use muster_proto::command::Kind;
use muster_proto::{ClusterState, Command, ConfChangeContext, Member};
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

/// What applying a committed normal entry did, for the caller's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The entry changed nothing (empty entry, no-op, a command already in effect, or one this
    /// version does not know: ignored alike on every member).
    Nothing,
    /// The site was locked at this index.
    Locked,
    /// The site was recorded formed.
    Formed,
    /// A host was put on the deny list.
    Removed(NodeId),
    /// The join plan was created, extended, or a step progressed.
    Plan,
}

fn plan_changed(changed: bool) -> Applied {
    if changed {
        Applied::Plan
    } else {
        Applied::Nothing
    }
}

/// Decodes the payload of a normal entry; `None` for raft-rs's empty entries.
pub fn decode_command(data: &[u8]) -> Option<Result<Command, prost::DecodeError>> {
    (!data.is_empty()).then(|| Command::decode(data))
}

/// Applies one committed command at log `index`. Pure and total: a command that does not fit the
/// state (a `SiteFormed` before the lock, a second lock) changes nothing, on every member alike.
pub fn apply_command(state: &mut ClusterState, cmd: &Command, index: u64) -> Applied {
    match &cmd.kind {
        Some(Kind::LockSite(_)) if !state.locked => {
            state.locked = true;
            state.lock_index = index;
            Applied::Locked
        }
        Some(Kind::SiteFormed(f)) if state.locked && state.formed_unix_ms == 0 => {
            state.formed_unix_ms = f.unix_ms.max(1);
            state.formed_members = f.members.clone();
            Applied::Formed
        }
        Some(Kind::RemoveMember(r)) if !state.removed.iter().any(|x| x.id == r.id) => {
            // Only a member can be removed (its key is what the transport refuses).
            let Some(m) = member(state, r.id).cloned() else {
                return Applied::Nothing;
            };
            let removed = muster_proto::Removed {
                id: m.id,
                name: m.name.clone(),
                public_key: m.public_key.clone(),
                index,
                unix_ms: r.unix_ms,
            };
            state.removed.push(removed);
            let spare = member(state, r.spare_id)
                .filter(|s| s.id != m.id && !state.removed.iter().any(|x| x.id == s.id))
                .cloned();
            if let Some(plan) = state.plan.as_mut() {
                crate::plan::apply_removed(plan, &m);
                // The spare an operator named takes the slot with the removal, before the next
                // host to join could (`muster remove NODE --spare SPARE`).
                if let Some(spare) = spare {
                    crate::plan::promote(plan, &spare);
                }
            }
            Applied::Removed(r.id)
        }
        Some(Kind::CreatePlan(c)) if state.plan.is_none() && formed(state) => {
            // Every step must name a member; the plan must be well formed (`plan.rs`).
            let members_only = c.steps.iter().all(|s| member(state, s.node_id).is_some());
            let secrets_ok = c
                .secrets
                .as_ref()
                .is_none_or(crate::secrets::sealed_shape_ok);
            let refresh = c.certificate_key_refresh_ms;
            match crate::plan::checked_plan(&c.steps, c.worker_parallelism, c.unix_ms, refresh) {
                Some(mut plan) if members_only && secrets_ok => {
                    plan.secrets = c.secrets.clone();
                    state.plan = Some(plan);
                    Applied::Plan
                }
                _ => Applied::Nothing,
            }
        }
        Some(Kind::AddWorkers(a)) => {
            let Some(plan) = state.plan.as_ref() else {
                return Applied::Nothing;
            };
            // Workers, and control-plane steps up to the slots removed hosts left.
            let mut slots = crate::plan::open_control_plane_slots(plan);
            let fresh: Vec<muster_proto::PlanStep> = a
                .steps
                .iter()
                .filter(|s| {
                    member(state, s.node_id).is_some()
                        && !plan.steps.iter().any(|p| p.node_id == s.node_id)
                })
                .filter(|s| match muster_proto::Role::try_from(s.role) {
                    Ok(muster_proto::Role::Worker) => true,
                    Ok(muster_proto::Role::ControlPlane) if slots > 0 => {
                        slots -= 1;
                        true
                    }
                    _ => false,
                })
                .map(crate::plan::pending)
                .collect();
            match state.plan.as_mut() {
                Some(plan) if !fresh.is_empty() => {
                    plan.steps.extend(fresh);
                    Applied::Plan
                }
                _ => Applied::Nothing,
            }
        }
        Some(Kind::PlanAction(a)) if a.kind == muster_proto::PlanActionKind::Start as i32 => {
            if state.plan.is_some() || formed(state) || state.start_requested {
                return Applied::Nothing;
            }
            state.start_requested = true;
            Applied::Plan
        }
        Some(Kind::PlanAction(a)) if a.kind == muster_proto::PlanActionKind::Promote as i32 => {
            let spare = member(state, a.node_id)
                .filter(|m| !state.removed.iter().any(|r| r.id == m.id))
                .cloned();
            let changed = match (state.plan.as_mut(), spare) {
                (Some(plan), Some(m)) => crate::plan::promote(plan, &m),
                _ => false,
            };
            plan_changed(changed)
        }
        Some(Kind::PlanAction(a)) => {
            let changed = state
                .plan
                .as_mut()
                .is_some_and(|plan| crate::plan::apply_action(plan, a));
            plan_changed(changed)
        }
        Some(Kind::RemovalProgress(p)) => {
            let changed = state
                .plan
                .as_mut()
                .is_some_and(|plan| crate::plan::apply_removal_progress(plan, p));
            plan_changed(changed)
        }
        Some(Kind::StepProgress(p)) => {
            let changed = state
                .plan
                .as_mut()
                .is_some_and(|plan| apply_plan_progress(plan, p));
            plan_changed(changed)
        }
        Some(Kind::UploadRequest(r)) => {
            let changed = state
                .plan
                .as_mut()
                .is_some_and(|plan| crate::certs::apply_upload_request(plan, r));
            plan_changed(changed)
        }
        Some(Kind::UploadProgress(p)) => {
            let changed = state
                .plan
                .as_mut()
                .is_some_and(|plan| crate::certs::apply_upload_progress(plan, p));
            plan_changed(changed)
        }
        _ => Applied::Nothing,
    }
}

/// Applies a step's progress (`plan::apply_progress`); with the init step's success come the
/// init hook's MUSTER_SECRETS_OUT and the time of kubeadm's first certificate upload.
pub fn apply_plan_progress(plan: &mut muster_proto::Plan, p: &muster_proto::StepProgress) -> bool {
    let changed = crate::plan::apply_progress(plan, p);
    let init_success = p.state == muster_proto::StepState::Succeeded as i32
        && crate::plan::step_of(plan, p.node_id)
            .is_some_and(|s| s.role == muster_proto::Role::Init as i32);
    if changed && init_success {
        plan.certificates_uploaded_unix_ms = p.unix_ms.max(1);
        if let Some(sealed) = p.secrets.as_ref() {
            if crate::secrets::sealed_shape_ok(sealed) {
                plan.init_secrets = Some(sealed.clone());
            }
        }
    }
    changed
}

/// Whether the site is recorded formed.
pub fn formed(state: &ClusterState) -> bool {
    state.formed_unix_ms != 0
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
    use muster_proto::{LockSite, SiteFormed};
    use raft::prelude::ConfChangeSingle;

    fn lock() -> Command {
        Command {
            kind: Some(Kind::LockSite(LockSite { member_count: 3 })),
        }
    }

    fn formed_cmd(members: Vec<u64>) -> Command {
        Command {
            kind: Some(Kind::SiteFormed(SiteFormed {
                members,
                unix_ms: 1234,
            })),
        }
    }

    #[test]
    fn lock_then_formed_and_nothing_out_of_order() {
        let mut s = ClusterState::default();
        // Formed before locked: ignored.
        assert_eq!(
            apply_command(&mut s, &formed_cmd(vec![1, 2, 3]), 4),
            Applied::Nothing
        );
        assert!(!formed(&s) && !s.locked);
        assert_eq!(apply_command(&mut s, &lock(), 5), Applied::Locked);
        assert!(s.locked);
        assert_eq!(s.lock_index, 5);
        // A second lock keeps the first index.
        assert_eq!(apply_command(&mut s, &lock(), 9), Applied::Nothing);
        assert_eq!(s.lock_index, 5);
        assert_eq!(
            apply_command(&mut s, &formed_cmd(vec![1, 2, 3]), 10),
            Applied::Formed
        );
        assert!(formed(&s));
        assert_eq!(s.formed_unix_ms, 1234);
        assert_eq!(s.formed_members, vec![1, 2, 3]);
        // Formed once: a later one changes nothing.
        let before = s.clone();
        assert_eq!(
            apply_command(&mut s, &formed_cmd(vec![9]), 11),
            Applied::Nothing
        );
        assert_eq!(s, before);
        // Unknown or empty commands: nothing.
        assert_eq!(
            apply_command(&mut s, &Command { kind: None }, 12),
            Applied::Nothing
        );
        assert_eq!(s, before);
    }

    #[test]
    fn sealed_secrets_enter_with_the_plan_and_the_init_success_only() {
        use muster_proto::{CreatePlan, Role, Sealed, StepProgress, StepState};
        let mut s = ClusterState::default();
        for id in [1, 2] {
            apply_conf_change(&mut s, &cc(id, ConfChangeType::AddNode, 1), 2).unwrap();
        }
        apply_command(&mut s, &lock(), 3);
        apply_command(&mut s, &formed_cmd(vec![1, 2]), 4);
        let sealed = |n: usize, tag: u8| Sealed {
            nonce: vec![tag; n],
            ciphertext: vec![tag; 40],
        };
        let steps = crate::plan::make_steps(&s.members, 1);
        let plan = |secrets| Command {
            kind: Some(Kind::CreatePlan(CreatePlan {
                steps: steps.clone(),
                worker_parallelism: 3,
                unix_ms: 5,
                secrets,
                certificate_key_refresh_ms: 0,
            })),
        };
        // A malformed blob refuses the plan (the leader proposes it again, freshly sealed).
        assert_eq!(
            apply_command(&mut s, &plan(Some(sealed(3, 1))), 5),
            Applied::Nothing
        );
        assert_eq!(
            apply_command(&mut s, &plan(Some(sealed(24, 1))), 6),
            Applied::Plan
        );
        assert_eq!(s.plan.as_ref().unwrap().secrets, Some(sealed(24, 1)));
        let progress = |node_id, state: StepState, attempt, tag| Command {
            kind: Some(Kind::StepProgress(StepProgress {
                node_id,
                state: state as i32,
                attempt,
                unix_ms: 7,
                error: String::new(),
                secrets: Some(sealed(24, tag)),
            })),
        };
        let init = steps
            .iter()
            .find(|st| st.role == Role::Init as i32)
            .unwrap()
            .node_id;
        // Not with a start, only with the init's success.
        apply_command(&mut s, &progress(init, StepState::Running, 1, 2), 7);
        assert_eq!(s.plan.as_ref().unwrap().init_secrets, None);
        apply_command(&mut s, &progress(init, StepState::Succeeded, 1, 3), 8);
        assert_eq!(s.plan.as_ref().unwrap().init_secrets, Some(sealed(24, 3)));
        // Another host's success never replaces them.
        let other = 3 - init;
        apply_command(&mut s, &progress(other, StepState::Running, 1, 4), 9);
        apply_command(&mut s, &progress(other, StepState::Succeeded, 1, 4), 10);
        assert_eq!(s.plan.as_ref().unwrap().init_secrets, Some(sealed(24, 3)));
    }

    #[test]
    fn removal_denies_a_member_once_and_ignores_strangers() {
        let mut s = ClusterState::default();
        apply_conf_change(&mut s, &cc(5, ConfChangeType::AddNode, 1), 2).unwrap();
        let remove = |id| Command {
            kind: Some(Kind::RemoveMember(muster_proto::RemoveMember {
                id,
                unix_ms: 77,
                spare_id: 0,
            })),
        };
        // Not a member: nothing (no key to refuse).
        assert_eq!(apply_command(&mut s, &remove(9), 3), Applied::Nothing);
        assert!(s.removed.is_empty());
        assert_eq!(apply_command(&mut s, &remove(5), 4), Applied::Removed(5));
        assert_eq!(s.removed.len(), 1);
        assert_eq!((s.removed[0].id, s.removed[0].index), (5, 4));
        assert_eq!(s.removed[0].name, "h5");
        assert_eq!(apply_command(&mut s, &remove(5), 6), Applied::Nothing);
        assert_eq!(s.removed.len(), 1);
        // The conf change then takes it out of the membership; the deny list stays.
        apply_conf_change(&mut s, &cc(5, ConfChangeType::RemoveNode, 1), 7).unwrap();
        assert!(member(&s, 5).is_none());
        assert_eq!(s.removed.len(), 1);
    }

    #[test]
    fn empty_entries_are_not_commands_and_garbage_is_an_error() {
        assert!(decode_command(&[]).is_none());
        assert!(decode_command(&[0xff, 0xff]).unwrap().is_err());
        assert_eq!(
            decode_command(&lock().encode_to_vec()).unwrap().unwrap(),
            lock()
        );
    }

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
