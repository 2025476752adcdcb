//! muster-fuzz: fuzz harnesses for everything muster reads from outside.
//!
//! Each harness is a `pub fn(&[u8])` that feeds the bytes to one of muster's readers and panics
//! when an invariant breaks (a panic inside muster counts the same). Three drivers call them:
//! the AFL++ binaries in `src/bin/afl-*.rs` (feature `afl`, run by `scripts/fuzz.sh`), the replay
//! test `tests/corpus.rs` (every file under `corpus/<target>/` and `regressions/<target>/`, in
//! plain `cargo test`), and the proptest properties beside it. `fuzz-seeds` writes the corpus.
//!
//! | target | harness | reads |
//! |---|---|---|
//! | `envelope_outsider` | [`envelope_from_outsider`] | `Envelope`s from a host that is no member, into `Node::handle` |
//! | `envelope_member` | [`envelope_from_member`] | `Envelope`s from a member, into `Node::handle` |
//! | `disk_store` | [`disk_store_open`] | the files of a `DiskStore`, into `DiskStore::open` |
//! | `cluster_state` | [`cluster_state_apply`] | `ClusterState`, conf changes and commands, decoded and applied |
//! | `site_key` | [`site_key_parse`] | a site key file |
//! | `identity` | [`identity_load`] | an `identity.key` file |
//! | `config` | [`config_parse`] | a `muster.toml` |

pub mod agent;
mod apply;
mod envelope;
mod frames;
mod parse;
mod scratch;
pub mod seeds;
mod store;

pub use apply::cluster_state_apply;
pub use envelope::{envelope_from_member, envelope_from_outsider, warm_up, Site};
pub use frames::{frame, Frames};
pub use parse::{config_parse, identity_load, site_key_parse};
pub use store::{disk_store_open, StoreFiles};

/// A harness: takes any bytes, panics if an invariant breaks.
pub type Harness = fn(&[u8]);

/// Every target by the name of its corpus directory.
pub const TARGETS: &[(&str, Harness)] = &[
    ("envelope_outsider", envelope_from_outsider),
    ("envelope_member", envelope_from_member),
    ("disk_store", disk_store_open),
    ("cluster_state", cluster_state_apply),
    ("site_key", site_key_parse),
    ("identity", identity_load),
    ("config", config_parse),
];
