//! Floats the Kubernetes API endpoint as a DNS name: while this host's leader holds the lease,
//! the [`DnsUpdater`] actor makes the operator's name (`[ddns] name`) point at the host's
//! addresses with RFC 2136 UPDATEs signed with TSIG (RFC 8945), reads back what the server
//! serves, and keeps it so.
//!
//! Modules: `tsig` (BIND `tsig-keygen` key files), `config` (the `[ddns]` runtime config),
//! `message` (pure: stamp, compare-and-swap decision, UPDATE builder), `transport` (the
//! [`DnsServer`] seam and its UDP implementation), `mem` (an in-memory zone with faults),
//! `status` ([`DnsStatus`]), `updater` (the actor). The agent sends
//! [`DnsCommand::Hold`] / [`DnsCommand::Release`] from the same lease events that drive the VIP.
//!
//! # The compare-and-swap rule
//!
//! Beside the name `N` the updater keeps a TXT record, the *stamp*, at `_muster.N`:
//! `"term=<T> id=<node>"`, the raft term and node name of the leader that wrote the record.
//! A holder of term `T`:
//!
//! 1. reads the stamp's TXT RRset `V` (and the A / AAAA RRsets) from the authoritative server;
//! 2. refuses locally if `V`'s term is higher than `T`, or equal to `T` with another node's
//!    name (an absent stamp, or a TXT that is not a stamp, counts as term 0);
//! 3. otherwise, unless the server already serves its stamp and exactly its addresses, sends one
//!    UPDATE whose prerequisite is "the TXT RRset at `_muster.N` is exactly `V`" (RFC 2136
//!    §2.4.2), or "does not exist" (§2.4.3) if there was none, and whose updates delete the TXT,
//!    A and AAAA RRsets and add its stamp and addresses (TTL `[ddns] ttl`, default 5 s);
//! 4. reads back, and re-checks every `check_interval_ms` (a record someone else changed, or a
//!    server restarted with an old zone, goes through the same steps again).
//!
//! An UPDATE is atomic at the server (RFC 2136 §3.2–3.4: prerequisites are checked, then all
//! updates are applied or none), so the stamp and the addresses always change together.
//!
//! **Why a deposed leader's delayed UPDATE cannot overwrite a newer leader.** Muster writers
//! only ever move the stamp's term up: an UPDATE from term `T` applies only if the server still
//! holds the exact value `V` its sender read, and the sender sent it only because `V`'s term was
//! at most `T`; the result carries term `T`. So, for muster's own writes, the stamp term at the
//! server never decreases. Let the term-5 leader build its UPDATE from a read `V` (term ≤ 5) and
//! the packet be delayed. The term-6 leader's update succeeds: the server now holds
//! `"term=6 id=…"`. When the term-5 packet arrives its prerequisite asks for `V`, a value with a
//! term ≤ 5, but the server holds a term-6 value, which is a different value: the prerequisite
//! fails (YXRRSET / NXRRSET) and nothing in the message is applied — neither the stamp nor the
//! A / AAAA. Raft gives at most one leader per term, and a stamp names its term and node, so no
//! later write can recreate `V` (no ABA) — except an operator or a restore bringing an old zone
//! back. Then a delayed packet (TSIG limits it to the 300 s fudge) may briefly win, but it can
//! only install a term lower than the current leader's, which that leader's periodic check sees
//! and replaces within one `check_interval_ms`; the deposed host, having been told `Release`
//! when its lease ended, sends nothing more. A deposed host that has not yet heard of its
//! deposition reads the newer stamp and refuses locally (step 2).
//!
//! `Release` does not delete the record: the next leader's CAS replaces it, and between the two
//! the name keeps pointing at the last holder rather than at nothing.

mod config;
mod mem;
mod message;
mod status;
mod transport;
mod tsig;
mod updater;

pub use config::{
    ConfigError, DnsConfig, DEFAULT_BACKOFF_MAX_MS, DEFAULT_BACKOFF_MIN_MS,
    DEFAULT_CHECK_INTERVAL_MS, DEFAULT_EXCHANGE_TIMEOUT_MS, DEFAULT_REJECTED_RETRY_MS,
    DEFAULT_TTL_S, MAX_ADDRS,
};
pub use mem::{Fault, MemServer, MemZone};
pub use message::{build_query, build_update, decide, stamp_name, Decision, Served, Stamp, Want};
pub use status::{DnsStatus, UpdateError};
pub use transport::{rcode_name, DnsServer, ExchangeError, UdpServer};
pub use tsig::{TsigAlg, TsigKey, TsigKeyError, MAX_KEY_FILE_BYTES, TSIG_FUDGE_S};
pub use updater::{DnsCommand, DnsHandle, DnsUpdater, SendError, SpawnError, COMMAND_QUEUE_LEN};

/// hickory-proto, re-exported so callers build names and messages with the same version.
pub use hickory_proto as proto;
