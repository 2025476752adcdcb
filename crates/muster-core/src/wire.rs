//! Bounded decoding of raft-rs messages and conf changes from bytes that came over the wire.
//!
//! raft-rs 0.7 encodes its types with rust-protobuf 2, whose parser does not bound the nesting of
//! unknown groups (RUSTSEC-2024-0437: crafted input overflows the stack). Bytes from a peer are
//! therefore decoded with prost into the mirror types of `proto/raftwire.proto` (prost bounds
//! nesting and skips unknown fields within that bound) and converted to raft-rs's types field by
//! field; rust-protobuf's parser never sees them. Enum values raft-rs does not know are refused
//! here, with the field named. Encoding stays with raft-rs (our own output is trusted).
//!
//! Called by `replica.rs` for every inbound raft message and every committed conf change.

use muster_proto::raftwire as w;
use prost::Message as _;
use raft::prelude::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState, Entry,
    EntryType, Message, MessageType, Snapshot, SnapshotMetadata,
};

/// Why bytes are not a raft message (or conf change) muster accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The protobuf does not decode (truncated, too deeply nested, wrong wire types).
    #[error("does not decode: {0}")]
    Decode(String),
    /// An enum field holds a value raft-rs 0.7 does not define.
    #[error("{field}: unknown value {value}")]
    UnknownEnum {
        /// The field.
        field: &'static str,
        /// The value found.
        value: i32,
    },
}

fn enum_value<E: protobuf::ProtobufEnum>(field: &'static str, value: i32) -> Result<E, WireError> {
    E::from_i32(value).ok_or(WireError::UnknownEnum { field, value })
}

/// Decodes a raft message from peer bytes without rust-protobuf's parser.
pub fn decode_message(bytes: &[u8]) -> Result<Message, WireError> {
    let m = w::Message::decode(bytes).map_err(|e| WireError::Decode(e.to_string()))?;
    let mut out = Message::default();
    out.msg_type = enum_value::<MessageType>("msg_type", m.msg_type)?;
    out.to = m.to;
    out.from = m.from;
    out.term = m.term;
    out.log_term = m.log_term;
    out.index = m.index;
    out.commit = m.commit;
    out.commit_term = m.commit_term;
    out.request_snapshot = m.request_snapshot;
    out.reject = m.reject;
    out.reject_hint = m.reject_hint;
    out.context = m.context.into();
    out.deprecated_priority = m.deprecated_priority;
    out.priority = m.priority;
    for e in m.entries {
        out.entries.push(entry(e)?);
    }
    if let Some(s) = m.snapshot {
        out.snapshot = protobuf::SingularPtrField::some(snapshot(s));
    }
    Ok(out)
}

fn entry(e: w::Entry) -> Result<Entry, WireError> {
    let mut out = Entry::default();
    out.entry_type = enum_value::<EntryType>("entries.entry_type", e.entry_type)?;
    out.term = e.term;
    out.index = e.index;
    out.data = e.data.into();
    out.context = e.context.into();
    out.sync_log = e.sync_log;
    Ok(out)
}

fn snapshot(s: w::Snapshot) -> Snapshot {
    let mut out = Snapshot::default();
    out.data = s.data.into();
    if let Some(md) = s.metadata {
        let mut meta = SnapshotMetadata::default();
        meta.index = md.index;
        meta.term = md.term;
        if let Some(cs) = md.conf_state {
            meta.conf_state = protobuf::SingularPtrField::some(conf_state(cs));
        }
        out.metadata = protobuf::SingularPtrField::some(meta);
    }
    out
}

fn conf_state(cs: w::ConfState) -> ConfState {
    let mut out = ConfState::default();
    out.voters = cs.voters;
    out.learners = cs.learners;
    out.voters_outgoing = cs.voters_outgoing;
    out.learners_next = cs.learners_next;
    out.auto_leave = cs.auto_leave;
    out
}

/// Decodes a conf change (the data of a committed `EntryConfChangeV2`).
pub fn decode_conf_change(bytes: &[u8]) -> Result<ConfChangeV2, WireError> {
    let cc = w::ConfChangeV2::decode(bytes).map_err(|e| WireError::Decode(e.to_string()))?;
    let mut out = ConfChangeV2::default();
    out.transition = enum_value::<ConfChangeTransition>("transition", cc.transition)?;
    out.context = cc.context.into();
    for c in cc.changes {
        let mut single = ConfChangeSingle::default();
        single.change_type = enum_value::<ConfChangeType>("changes.change_type", c.change_type)?;
        single.node_id = c.node_id;
        out.changes.push(single);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::Message as _;

    fn full_message() -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.to = 2;
        m.from = 3;
        m.term = 4;
        m.log_term = 5;
        m.index = 6;
        m.commit = 8;
        m.commit_term = 15;
        m.request_snapshot = 13;
        m.reject = true;
        m.reject_hint = 11;
        m.context = vec![1, 2, 3].into();
        m.deprecated_priority = 14;
        m.priority = -16;
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChangeV2);
        e.term = 7;
        e.index = 9;
        e.data = vec![9, 9].into();
        e.context = vec![6].into();
        e.sync_log = true;
        m.mut_entries().push(e);
        let mut s = Snapshot::default();
        s.data = vec![4, 4, 4].into();
        let md = s.mut_metadata();
        md.index = 20;
        md.term = 21;
        let cs = md.mut_conf_state();
        cs.voters = vec![1, 2];
        cs.learners = vec![3];
        cs.voters_outgoing = vec![4];
        cs.learners_next = vec![5];
        cs.auto_leave = true;
        m.set_snapshot(s);
        m
    }

    #[test]
    fn every_field_survives_raft_rs_encoding_and_bounded_decoding() {
        let m = full_message();
        let bytes = m.write_to_bytes().unwrap();
        assert_eq!(decode_message(&bytes).unwrap(), m);
        // The empty message too (all defaults).
        let empty = Message::default();
        assert_eq!(
            decode_message(&empty.write_to_bytes().unwrap()).unwrap(),
            empty
        );
    }

    #[test]
    fn conf_changes_round_trip() {
        let mut cc = ConfChangeV2::default();
        cc.set_transition(ConfChangeTransition::Explicit);
        let mut single = ConfChangeSingle::default();
        single.set_change_type(ConfChangeType::AddLearnerNode);
        single.node_id = 77;
        cc.mut_changes().push(single);
        cc.context = vec![1, 2].into();
        let bytes = cc.write_to_bytes().unwrap();
        assert_eq!(decode_conf_change(&bytes).unwrap(), cc);
    }

    /// RUSTSEC-2024-0437: deeply nested unknown groups. The bounded decoder refuses them with an
    /// error; it neither recurses without bound nor panics.
    #[test]
    fn deeply_nested_groups_are_refused_not_a_stack_overflow() {
        // Field 20, wire type 3 (start group), nested 100 000 deep.
        let depth = 100_000;
        let mut bytes = [0xa3u8, 0x01].repeat(depth);
        bytes.extend([0xa4, 0x01].repeat(depth));
        assert!(decode_message(&bytes).is_err());
        // Nested inside a known field (an entry of the message).
        let mut inner = [0xa3u8, 0x01].repeat(depth);
        inner.extend([0xa4, 0x01].repeat(depth));
        let mut nested = vec![0x3a];
        let mut len = inner.len();
        while len >= 0x80 {
            nested.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        nested.push(len as u8);
        nested.extend(inner);
        assert!(decode_message(&nested).is_err());
    }

    #[test]
    fn unknown_enum_values_name_the_field() {
        let m = w::Message {
            msg_type: 99,
            ..Default::default()
        };
        assert_eq!(
            decode_message(&m.encode_to_vec()).unwrap_err(),
            WireError::UnknownEnum {
                field: "msg_type",
                value: 99
            }
        );
        let m = w::Message {
            entries: vec![w::Entry {
                entry_type: -1,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(decode_message(&m.encode_to_vec())
            .unwrap_err()
            .to_string()
            .contains("entries.entry_type"));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..2_000usize {
            let bytes: Vec<u8> = (0..len % 97)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_message(&bytes);
            let _ = decode_conf_change(&bytes);
        }
    }
}
