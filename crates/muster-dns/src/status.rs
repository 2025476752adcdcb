//! What the updater publishes (a `tokio::sync::watch` of [`DnsStatus`]) and why an attempt
//! failed ([`UpdateError`]); the agent shows it as the operator contract's `dns` object.

use std::net::IpAddr;

use crate::transport::ExchangeError;

/// Why the last attempt did not leave the server serving our record.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpdateError {
    /// Timeout, socket error or garbage: the server is unreachable. Retried with backoff.
    #[error("DNS server unreachable: {0}")]
    Unreachable(ExchangeError),
    /// The server rejected our TSIG (BADSIG / BADKEY / BADTIME) or did not sign its answer.
    /// Retried slowly: the operator must fix the key.
    #[error("DNS server rejected the update's TSIG: {0}")]
    Tsig(ExchangeError),
    /// The server refused the update with this rcode (REFUSED, NOTAUTH, NOTZONE, SERVFAIL,
    /// ...). Retried slowly.
    #[error("DNS server refused the update: {rcode}")]
    Rejected {
        /// The rcode name.
        rcode: String,
    },
    /// A query (read or read-back) failed with this rcode.
    #[error("DNS server answered the query for {what} with {rcode}")]
    QueryFailed {
        /// Which record.
        what: String,
        /// The rcode name.
        rcode: String,
    },
    /// The stamp changed between our read and our update (YXRRSET / NXRRSET): read again.
    #[error("the record changed under our update ({rcode}): reading it again")]
    Raced {
        /// The rcode name.
        rcode: String,
    },
    /// A newer leader's stamp is on the record: we never overwrite it.
    #[error("a newer leader holds the record (term {term}, node {id}); not overwriting")]
    NewerHolder {
        /// Its term.
        term: u64,
        /// Its node.
        id: String,
    },
    /// The server said NOERROR but does not serve what we wrote.
    #[error("DNS server accepted the update but serves {served:?} (stamp term {served_term})")]
    NotApplied {
        /// What it serves.
        served: Vec<IpAddr>,
        /// The stamp term it serves (0: none).
        served_term: u64,
    },
    /// Not holding the endpoint (released, or never told to hold).
    #[error("not holding the endpoint")]
    NotHolding,
}

/// The updater's view of the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsStatus {
    /// The endpoint name.
    pub name: String,
    /// The addresses the server served at the last read.
    pub target: Vec<IpAddr>,
    /// The stamp term the server served at the last read (`None`: no stamp).
    pub served_term: Option<u64>,
    /// The node named by that stamp.
    pub served_by: Option<String>,
    /// The term we hold the endpoint for (`None`: not holding).
    pub holding_term: Option<u64>,
    /// The term of our last update that the server was read back serving.
    pub updated_term: Option<u64>,
    /// The last attempt's result.
    pub last_result: Result<(), UpdateError>,
    /// When the last attempt ended, ms since the epoch.
    pub last_unix_ms: u64,
    /// True while holding and the server is not known to serve our record.
    pub stale: bool,
    /// UPDATE messages sent since start.
    pub updates_sent: u64,
    /// Reads (three queries each) since start.
    pub reads: u64,
}

impl DnsStatus {
    /// The status before anything happened.
    pub fn initial(name: String) -> Self {
        DnsStatus {
            name,
            target: Vec::new(),
            served_term: None,
            served_by: None,
            holding_term: None,
            updated_term: None,
            last_result: Err(UpdateError::NotHolding),
            last_unix_ms: 0,
            stale: false,
            updates_sent: 0,
            reads: 0,
        }
    }
}
