//! The replicated state's decoders and pure apply functions: `state::decode_state`,
//! `wire::decode_conf_change` + `state::apply_conf_change`, `state::decode_command` +
//! `state::apply_command`. Every member runs them on the same bytes, so they must not panic and
//! must give the same result every time.
//!
//! An input is a sequence of records (`frames.rs`): the first is the starting `ClusterState`
//! (undecodable: the empty state), each later one a tag byte then an operation: an even tag a
//! conf change (as a committed `EntryConfChangeV2` holds it), an odd tag a `Command` (as a
//! committed normal entry holds it). Record `i` is applied at log index `i + 1`. Invariants: the
//! sequence applied twice from the same state gives equal states and results; once locked the
//! site stays locked at the same index, once formed it stays formed at the same time, the deny
//! list only grows; after a conf change that applied, members are in join-time order; the final
//! state round-trips through its encoding.

use muster_core::state::{self, Applied};
use muster_core::wire;
use muster_proto::ClusterState;

use crate::frames::Frames;

/// One operation's outcome, compared between the two runs.
#[derive(Debug, PartialEq)]
enum Outcome {
    Skipped,
    ConfChange(Result<(), String>),
    Command(Applied),
}

fn run(start: &ClusterState, ops: &[&[u8]]) -> (ClusterState, Vec<Outcome>) {
    let mut s = start.clone();
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let index = i as u64 + 2;
        let before = s.clone();
        let outcome = match op.split_first() {
            None => Outcome::Skipped,
            Some((tag, body)) if tag % 2 == 0 => match wire::decode_conf_change(body) {
                Err(_) => Outcome::Skipped,
                Ok(cc) => {
                    let r = state::apply_conf_change(&mut s, &cc, index).map_err(|e| e.to_string());
                    if r.is_ok() && !cc.get_changes().is_empty() {
                        assert!(
                            s.members.windows(2).all(|w| (w[0].joined_unix_ms, w[0].id)
                                <= (w[1].joined_unix_ms, w[1].id)),
                            "members are listed in join-time order"
                        );
                    }
                    Outcome::ConfChange(r)
                }
            },
            Some((_, body)) => match state::decode_command(body) {
                Some(Ok(cmd)) => Outcome::Command(state::apply_command(&mut s, &cmd, index)),
                _ => Outcome::Skipped,
            },
        };
        assert_monotonic(&before, &s);
        out.push(outcome);
    }
    (s, out)
}

fn assert_monotonic(before: &ClusterState, after: &ClusterState) {
    if before.locked {
        assert!(after.locked, "a locked site stays locked");
        assert_eq!(
            after.lock_index, before.lock_index,
            "the lock index never moves"
        );
    }
    if before.formed_unix_ms != 0 {
        assert_eq!(
            after.formed_unix_ms, before.formed_unix_ms,
            "a formed site stays formed"
        );
        assert_eq!(
            after.formed_members, before.formed_members,
            "who formed it never changes"
        );
    }
    assert!(
        after.removed.starts_with(&before.removed),
        "the deny list only grows"
    );
}

/// Decodes a state and applies conf changes and commands to it (see the module docs).
pub fn cluster_state_apply(data: &[u8]) {
    let mut records = Frames::new(data);
    let start = records
        .next()
        .and_then(|b| state::decode_state(b).ok())
        .unwrap_or_default();
    let ops: Vec<&[u8]> = records.collect();
    let (a, ra) = run(&start, &ops);
    let (b, rb) = run(&start, &ops);
    assert_eq!(ra, rb, "applying the same entries gives the same results");
    assert_eq!(a, b, "applying the same entries gives the same state");
    let encoded = state::encode_state(&a);
    assert_eq!(
        state::decode_state(&encoded).ok().as_ref(),
        Some(&a),
        "the state round-trips through its encoding"
    );
}
