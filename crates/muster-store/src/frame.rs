//! The record framing every store file uses: a 16-byte header followed by the payload.
//!
//! ```text
//! offset 0   magic      4 bytes: 3-byte kind tag ("MSG", "MSE", "MSH", "MSA", "MSR") + version
//! offset 4   len        u32 LE: payload length in bytes (at most MAX_PAYLOAD_BYTES)
//! offset 8   data crc   u32 LE: crc32 (IEEE, crc32fast) of the payload
//! offset 12  head crc   u32 LE: crc32 of bytes 0..12, so a damaged length is never trusted
//! offset 16  payload    len bytes
//! ```
//!
//! The header checksum is what lets the log tell a torn final record (a crash during an append)
//! from damage in the middle of the file: a length is only followed once its header checks out.
//! Used by `store` for the single-record files and by `logfile` for the log.

use std::fmt;

/// Bytes in a record header.
pub(crate) const HEADER_BYTES: usize = 16;
/// Largest payload a record may carry; larger writes are refused, larger lengths are corruption.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 64 << 20;
/// The on-disk format this build reads and writes.
pub(crate) const FORMAT_VERSION: u8 = 1;

/// What a record holds; each kind has its own magic so files cannot be mixed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// First record of the log file: the log epoch.
    LogHeader,
    /// One raft `Entry`.
    Entry,
    /// The raft `HardState`.
    HardState,
    /// The compaction point, log epoch and applied `Snapshot`.
    Applied,
    /// The marker of a reset in progress (empty payload).
    Reset,
}

impl Kind {
    fn tag(self) -> [u8; 3] {
        match self {
            Kind::LogHeader => *b"MSG",
            Kind::Entry => *b"MSE",
            Kind::HardState => *b"MSH",
            Kind::Applied => *b"MSA",
            Kind::Reset => *b"MSR",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::LogHeader => "log header",
            Kind::Entry => "log entry",
            Kind::HardState => "hard state",
            Kind::Applied => "applied state",
            Kind::Reset => "reset marker",
        }
    }
}

/// Why the record at some offset could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Fewer than [`HEADER_BYTES`] bytes remain.
    ShortHeader { have: usize },
    /// The header is not a record of the expected kind, or fails its checksum.
    BadHeader(String),
    /// The header is intact but describes something this build must refuse.
    Unsupported(String),
    /// The header is intact but the file ends inside the payload.
    PayloadPastEnd { len: usize, have: usize },
    /// The payload does not match its checksum.
    PayloadChecksum { stored: u32, computed: u32 },
}

impl Fault {
    /// Whether this damage can be what a crash in the middle of an append leaves behind (as
    /// opposed to an intact header this build refuses).
    pub(crate) fn may_be_torn(&self) -> bool {
        !matches!(self, Fault::Unsupported(_))
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::ShortHeader { have } => write!(
                f,
                "incomplete record header ({have} of {HEADER_BYTES} bytes before end of file)"
            ),
            Fault::BadHeader(detail) | Fault::Unsupported(detail) => f.write_str(detail),
            Fault::PayloadPastEnd { len, have } => write!(
                f,
                "payload of {len} bytes is cut off by the end of file ({have} bytes present)"
            ),
            Fault::PayloadChecksum { stored, computed } => write!(
                f,
                "payload checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
        }
    }
}

/// Appends one record of `kind` holding `payload` to `out`. The caller checks the payload size
/// with [`check_len`] first.
pub(crate) fn encode(kind: Kind, payload: &[u8], out: &mut Vec<u8>) {
    let tag = kind.tag();
    let mut header = [0u8; HEADER_BYTES];
    header[..3].copy_from_slice(&tag);
    header[3] = FORMAT_VERSION;
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..12].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let head_crc = crc32fast::hash(&header[..12]);
    header[12..16].copy_from_slice(&head_crc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

/// Refuses payloads too large to frame.
pub(crate) fn check_len(kind: Kind, len: usize) -> Result<(), String> {
    if len > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "{} of {len} bytes exceeds the record limit of {MAX_PAYLOAD_BYTES} bytes",
            kind.name()
        ));
    }
    Ok(())
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(word)
}

/// Reads the record of `kind` starting at `at`. Returns its payload and the offset after it.
pub(crate) fn decode(buf: &[u8], at: usize, kind: Kind) -> Result<(&[u8], usize), Fault> {
    let rest = buf.get(at..).unwrap_or_default();
    if rest.len() < HEADER_BYTES {
        return Err(Fault::ShortHeader { have: rest.len() });
    }
    let header = &rest[..HEADER_BYTES];
    if header[..3] != kind.tag() {
        return Err(Fault::BadHeader(format!(
            "not a {} record (magic bytes {:02x?})",
            kind.name(),
            &header[..4]
        )));
    }
    let head_crc = crc32fast::hash(&header[..12]);
    if head_crc != le_u32(&header[12..]) {
        return Err(Fault::BadHeader(format!(
            "{} record header checksum mismatch (stored {:#010x}, computed {head_crc:#010x})",
            kind.name(),
            le_u32(&header[12..])
        )));
    }
    if header[3] != FORMAT_VERSION {
        return Err(Fault::Unsupported(format!(
            "{} record has format version {}; this build reads version {FORMAT_VERSION}",
            kind.name(),
            header[3]
        )));
    }
    let len = le_u32(&header[4..]) as usize;
    if len > MAX_PAYLOAD_BYTES {
        return Err(Fault::Unsupported(format!(
            "{} record claims {len} payload bytes, over the limit of {MAX_PAYLOAD_BYTES}",
            kind.name()
        )));
    }
    let body = &rest[HEADER_BYTES..];
    if body.len() < len {
        return Err(Fault::PayloadPastEnd {
            len,
            have: body.len(),
        });
    }
    let payload = &body[..len];
    let computed = crc32fast::hash(payload);
    let stored = le_u32(&header[8..]);
    if computed != stored {
        return Err(Fault::PayloadChecksum { stored, computed });
    }
    Ok((payload, at + HEADER_BYTES + len))
}

/// The offset of the first intact header of `kind` (tag and header checksum right) at or after
/// `from`, if any.
pub(crate) fn find_intact_header(buf: &[u8], from: usize, kind: Kind) -> Option<usize> {
    let tag = kind.tag();
    let last_start = buf.len().checked_sub(HEADER_BYTES)?;
    (from..=last_start).find(|&at| {
        let header = &buf[at..at + HEADER_BYTES];
        header[..3] == tag && crc32fast::hash(&header[..12]) == le_u32(&header[12..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: Kind, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(kind, payload, &mut out);
        out
    }

    #[test]
    fn round_trips_and_reports_next_offset() {
        let mut buf = record(Kind::Entry, b"hello");
        buf.extend(record(Kind::Entry, b""));
        let (payload, next) = decode(&buf, 0, Kind::Entry).unwrap();
        assert_eq!(payload, b"hello");
        assert_eq!(next, HEADER_BYTES + 5);
        let (payload, end) = decode(&buf, next, Kind::Entry).unwrap();
        assert!(payload.is_empty());
        assert_eq!(end, buf.len());
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let good = record(Kind::HardState, b"some payload bytes");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(
                decode(&bad, 0, Kind::HardState).is_err(),
                "flip at byte {i} undetected"
            );
        }
    }

    #[test]
    fn kinds_versions_and_truncation_are_told_apart() {
        let good = record(Kind::Applied, b"abc");
        assert!(matches!(
            decode(&good, 0, Kind::HardState),
            Err(Fault::BadHeader(_))
        ));
        assert_eq!(
            decode(&good[..10], 0, Kind::Applied),
            Err(Fault::ShortHeader { have: 10 })
        );
        assert_eq!(
            decode(&good[..HEADER_BYTES + 1], 0, Kind::Applied),
            Err(Fault::PayloadPastEnd { len: 3, have: 1 })
        );
        // A header from a future version with a valid header checksum is refused, not torn.
        let mut future = good.clone();
        future[3] = FORMAT_VERSION + 1;
        let crc = crc32fast::hash(&future[..12]);
        future[12..16].copy_from_slice(&crc.to_le_bytes());
        let fault = decode(&future, 0, Kind::Applied).unwrap_err();
        assert!(!fault.may_be_torn());
        assert!(fault.to_string().contains("format version 2"), "{fault}");
    }

    #[test]
    fn finds_the_next_intact_header_after_garbage() {
        let mut buf = vec![0xAB; 7];
        buf.extend(record(Kind::Entry, b"x"));
        assert_eq!(find_intact_header(&buf, 0, Kind::Entry), Some(7));
        assert_eq!(find_intact_header(&buf, 8, Kind::Entry), None);
        assert_eq!(find_intact_header(&buf[..5], 0, Kind::Entry), None);
    }

    #[test]
    fn oversized_payloads_are_refused_before_writing() {
        assert!(check_len(Kind::Entry, MAX_PAYLOAD_BYTES).is_ok());
        assert!(check_len(Kind::Entry, MAX_PAYLOAD_BYTES + 1).is_err());
    }
}
