//! The agent binary's readers of config and identity files, compiled here from the binary's own
//! source (`crates/muster/src`), so the fuzzer runs exactly the code `muster agent` runs without
//! turning the binary into a library. Both files use only external crates (no `crate::` paths);
//! if that changes, this module stops compiling and says so.

#[path = "../../muster/src/config.rs"]
#[allow(dead_code)]
pub mod config;

#[path = "../../muster/src/identity.rs"]
#[allow(dead_code)]
pub mod identity;
