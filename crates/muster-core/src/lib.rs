//! muster-core: the sans-IO node state machine.
//!
//! Drives raft-rs's `RawNode` and decides formation (who bootstraps, who joins whom), membership
//! (learners, promotion to voters) and the replicated cluster state. It reads no clock, opens no
//! socket and draws no randomness of its own: the daemon (`muster agent`) and the simulator feed it
//! [`Input`]s and carry out the [`Output`]s it returns.
// raft-rs's rust-protobuf 2 types are built by assigning fields to a default value.
#![allow(clippy::field_reassign_with_default)]

pub mod certs;
pub mod config;
mod duty;
mod formation;
pub mod guard;
pub mod health;
pub mod hello;
mod install;
mod lease;
mod log;
mod node;
pub mod plan;
mod removal;
mod replica;
pub mod secrets;
pub mod site;
pub mod state;
pub mod storage;
#[cfg(feature = "testnet")]
pub mod testnet;
pub mod timers;
pub mod wire;

/// The replicated commands this core applies, as hellos announce it (`Hello.protocol`). A
/// leader proposes a command only once every member applies it, so members of different
/// versions never apply a log differently (an older agent ignores a command it does not know,
/// and its state would part from the others'):
/// - 1: formation, removal, the join plan, steps, removal duties, plan start and reinit;
/// - 2: certificate uploads (`CertificateUploadRequest`/`Progress`), `PlanAction` `PROMOTE`,
///   `RemoveMember.spare_id`.
pub const PROTOCOL: u32 = 2;

/// The protocol that brought certificate uploads, `PROMOTE` and `spare_id` (see [`PROTOCOL`]).
pub(crate) const PROTOCOL_UPLOADS_AND_SPARES: u32 = 2;

pub use config::{format_id, node_id_from_public_key, parse_id, NodeConfig, NodeId};
pub use install::PlanActionError;
pub use node::{ActionTarget, CoreError, Input, Node, Output, MAX_KNOWN_HOSTS, MAX_PEERS};
pub use removal::RemoveError;
pub use replica::TransferError;
pub use secrets::{SecretValues, SecretsError, SiteSecrets};
pub use storage::{LogCache, MemStore, RaftStore, SharedStore, StoreError};
