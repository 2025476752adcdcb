//! Rust types generated from `proto/muster.proto`: the wire envelope exchanged between agents, the
//! replicated cluster state, and the status RPC service. Every other crate speaks these types.
#![allow(clippy::all)]

/// Version 1 of muster's formats.
pub mod v1 {
    tonic::include_proto!("muster.v1");
}

pub use v1::*;

/// The encoded `FileDescriptorSet` of muster's protos, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/muster_descriptor.bin"));

/// raft-rs's eraftpb wire layout for bounded decoding (`proto/raftwire.proto`).
pub mod raftwire {
    tonic::include_proto!("muster.raftwire");
}
