//! The event trace: a stable 64-bit FNV-1a hash over every event the simulator processes, and an
//! optional bounded text log of the notable ones (boots, crashes, faults, leader and cluster
//! changes, VIP changes, violations).
//!
//! Two runs of the same scenario and seed feed the hasher the same bytes in the same order, so
//! equal hashes are the determinism check. std's `DefaultHasher` is not guaranteed stable across
//! releases, hence a hasher of our own.

use std::fmt::Write as _;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bit.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(FNV_OFFSET)
    }
}

impl Fnv64 {
    /// Feeds bytes.
    pub fn bytes(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    /// Feeds a number (little endian).
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// Most lines the text trace keeps; later lines are counted, not stored.
pub const MAX_TRACE_LINES: usize = 200_000;

/// Hash of all events plus (when enabled) the notable ones as text.
#[derive(Debug, Default)]
pub struct Trace {
    hash: Fnv64,
    lines: Option<String>,
    line_count: usize,
    /// Lines not kept because of [`MAX_TRACE_LINES`].
    pub lines_dropped: usize,
}

impl Trace {
    /// A trace that also keeps text lines if `text` is set.
    pub fn new(text: bool) -> Self {
        Trace {
            lines: text.then(String::new),
            ..Trace::default()
        }
    }

    /// The hasher every event is fed into.
    pub fn hasher(&mut self) -> &mut Fnv64 {
        &mut self.hash
    }

    /// Records a notable event at virtual time `t_ms`; it is hashed whether or not text is kept.
    pub fn note(&mut self, t_ms: u64, text: std::fmt::Arguments<'_>) {
        let mut line = String::new();
        let _ = write!(line, "{t_ms:>9} {text}");
        self.hash.bytes(line.as_bytes());
        if let Some(buf) = self.lines.as_mut() {
            if self.line_count < MAX_TRACE_LINES {
                buf.push_str(&line);
                buf.push('\n');
                self.line_count += 1;
            } else {
                self.lines_dropped += 1;
            }
        }
    }

    /// The final hash.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// The text lines, if kept.
    pub fn text(&self) -> Option<&str> {
        self.lines.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_vectors() {
        let h = |s: &str| {
            let mut f = Fnv64::default();
            f.bytes(s.as_bytes());
            f.finish()
        };
        assert_eq!(h(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(h("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(h("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn notes_feed_the_hash_with_or_without_text() {
        let mut a = Trace::new(true);
        let mut b = Trace::new(false);
        a.note(5, format_args!("boot n1"));
        b.note(5, format_args!("boot n1"));
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.text(), Some("        5 boot n1\n"));
    }
}
