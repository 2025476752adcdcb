//! Errors returned by `muster-net` to its caller, the agent binary (`crates/muster`): bad site
//! key files, invalid network configuration, and failures to start the swarm (listen address in
//! use, mDNS socket, transport construction). Runtime connection failures are not errors of this
//! kind: they surface as [`crate::NetEvent`]s and counters in [`crate::NetStats`].

use std::net::SocketAddr;

/// What went wrong while preparing or starting the network layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The site key file is malformed. The message never contains key material.
    #[error("site key file: {reason}")]
    SiteKey {
        /// What is wrong with the file, e.g. "expected 64 hex digits after /base16/".
        reason: String,
    },

    /// A field of [`crate::NetConfig`] has an unusable value.
    #[error("network config: {field}: {reason}")]
    InvalidConfig {
        /// The offending `NetConfig` field.
        field: &'static str,
        /// Why the value cannot be used.
        reason: String,
    },

    /// [`crate::spawn`] was called outside a Tokio runtime.
    #[error("muster-net must be started from within a Tokio runtime")]
    NoRuntime,

    /// Another socket (probably another muster agent) already listens on the address.
    #[error("listen on {addr}: address already in use (is another agent running on this port?)")]
    AddressInUse {
        /// The configured listen address.
        addr: SocketAddr,
    },

    /// The listen socket could not be opened for another reason (address not on this host,
    /// permission denied, ...).
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The configured listen address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The mDNS responder could not be started.
    #[error("start mDNS discovery: {0}")]
    Mdns(#[source] std::io::Error),

    /// The libp2p transport stack could not be built.
    #[error("build libp2p transport: {0}")]
    Transport(String),
}

impl NetError {
    pub(crate) fn site_key(reason: impl Into<String>) -> Self {
        NetError::SiteKey {
            reason: reason.into(),
        }
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        NetError::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}
