//! Bridges raft-rs's `slog` logging into `tracing`, so the agent has one log stream.
//!
//! raft-rs's info messages (elections, conf changes) go to debug level; its warnings and errors
//! keep their level. Structured key-values are rendered into the message.

use std::fmt::Write as _;

/// A `slog::Drain` that forwards records to `tracing` under target `raft`.
pub(crate) struct TracingDrain;

struct KvToString(String);

impl slog::Serializer for KvToString {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        let enabled = match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::enabled!(target: "raft", tracing::Level::ERROR)
            }
            slog::Level::Warning => tracing::enabled!(target: "raft", tracing::Level::WARN),
            slog::Level::Info => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
            slog::Level::Debug | slog::Level::Trace => {
                tracing::enabled!(target: "raft", tracing::Level::TRACE)
            }
        };
        if !enabled {
            // Rendering the key-values costs more than the rest of a raft step.
            return Ok(());
        }
        let mut kv = KvToString(String::new());
        let _ = slog::KV::serialize(&record.kv(), record, &mut kv);
        let _ = slog::KV::serialize(values, record, &mut kv);
        let msg = record.msg();
        let kv = kv.0;
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{msg}{kv}")
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{msg}{kv}"),
            slog::Level::Info => tracing::debug!(target: "raft", "{msg}{kv}"),
            slog::Level::Debug | slog::Level::Trace => tracing::trace!(target: "raft", "{msg}{kv}"),
        }
        Ok(())
    }
}
