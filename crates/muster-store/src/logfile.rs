//! Reading and verifying the log file: its header record (the log epoch), then entry records that
//! must be contiguous, with non-decreasing terms, agreeing with the compaction point. Also encodes
//! whole log files for the rewrites `store` does on compaction and snapshot install.
//!
//! The one tolerated defect is a torn tail: damage with no intact record after it, to an entry
//! beyond the commit index, which is what a crash during an unacknowledged append leaves. The
//! scan reports it and `store` truncates it away; any other defect is [`StoreError::Corrupt`].

use std::path::Path;

use muster_core::StoreError;
use protobuf::Message;
use raft::prelude::Entry;

use crate::frame::{self, Kind};
use crate::fsio::corrupt;

/// Indexes, terms and epochs read from disk must be below this. Raft never gets near it, and the
/// bound keeps every later `+ 1` on them from overflowing, whatever a file says.
pub(crate) const MAX_INDEX: u64 = 1 << 62;

/// What the rest of the store says the log must agree with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Entries through this index are compacted (covered by the applied state).
    pub compacted_index: u64,
    /// Term of the entry at `compacted_index`.
    pub compacted_term: u64,
    /// The durable commit index: committed entries must be present and intact.
    pub commit: u64,
}

/// A torn final record found and to be cut off.
#[derive(Debug, Clone)]
pub(crate) struct TornTail {
    /// Byte offset where the damaged record starts (the new end of file).
    pub offset: u64,
    /// The index the damaged record would have held.
    pub index: u64,
    /// What is wrong with it.
    pub fault: String,
}

/// The verified content of a log file.
#[derive(Debug, Default)]
pub(crate) struct LogImage {
    /// Entries after the compaction point, contiguous.
    pub entries: Vec<Entry>,
    /// Byte offset of each of `entries`' records.
    pub offsets: Vec<u64>,
    /// End of the last intact record (the file length once a torn tail is cut).
    pub end: u64,
    /// Entries at or below the compaction point were still in the file (a compaction whose log
    /// rewrite a crash interrupted); the caller rewrites the log without them.
    pub stale_prefix: bool,
    /// A torn final record, if one was found.
    pub torn: Option<TornTail>,
}

/// Encodes the log header record for `epoch`.
pub(crate) fn encode_header(epoch: u64, out: &mut Vec<u8>) {
    frame::encode(Kind::LogHeader, &epoch.to_le_bytes(), out);
}

/// Reads the header record: the log epoch and the offset of the first entry record.
pub(crate) fn read_header(buf: &[u8], path: &Path) -> Result<(u64, usize), StoreError> {
    let (payload, next) = frame::decode(buf, 0, Kind::LogHeader)
        .map_err(|fault| corrupt(path, format!("log header at offset 0: {fault}")))?;
    let epoch: [u8; 8] = payload.try_into().map_err(|_| {
        corrupt(
            path,
            format!(
                "log header at offset 0: payload is {} bytes, expected 8",
                payload.len()
            ),
        )
    })?;
    let epoch = u64::from_le_bytes(epoch);
    if epoch >= MAX_INDEX {
        return Err(corrupt(
            path,
            format!("log header at offset 0: epoch {epoch} is out of range"),
        ));
    }
    Ok((epoch, next))
}

/// Encodes `entries` as records appended to `out`, returning each record's offset given that
/// `out` will be written at file offset `base`.
pub(crate) fn encode_entries(
    entries: &[Entry],
    base: u64,
    out: &mut Vec<u8>,
) -> Result<Vec<u64>, StoreError> {
    let mut offsets = Vec::with_capacity(entries.len());
    for e in entries {
        let payload = e.write_to_bytes().map_err(|err| {
            StoreError::Invalid(format!("entry {} does not encode: {err}", e.index))
        })?;
        frame::check_len(Kind::Entry, payload.len()).map_err(StoreError::Invalid)?;
        offsets.push(base + out.len() as u64);
        frame::encode(Kind::Entry, &payload, out);
    }
    Ok(offsets)
}

/// Verifies the entry records of `buf` from `start` on against `bounds`.
pub(crate) fn scan_entries(
    buf: &[u8],
    start: usize,
    path: &Path,
    bounds: Bounds,
) -> Result<LogImage, StoreError> {
    let mut image = LogImage::default();
    let mut prev: Option<(u64, u64)> = None;
    let mut at = start;
    while at < buf.len() {
        let (payload, next) = match frame::decode(buf, at, Kind::Entry) {
            Ok(ok) => ok,
            Err(fault) => {
                let index = prev.map_or(bounds.compacted_index + 1, |(i, _)| i + 1);
                image.torn = Some(classify_damage(buf, at, index, &fault, path, bounds)?);
                break;
            }
        };
        let entry = Entry::parse_from_bytes(payload).map_err(|e| {
            corrupt(
                path,
                format!("record at offset {at}: entry does not decode: {e}"),
            )
        })?;
        if entry.index >= MAX_INDEX || entry.term >= MAX_INDEX {
            return Err(corrupt(
                path,
                format!(
                    "record at offset {at} holds index {} term {}, beyond any real log",
                    entry.index, entry.term
                ),
            ));
        }
        check_order(&entry, prev, at, path, bounds)?;
        prev = Some((entry.index, entry.term));
        if entry.index > bounds.compacted_index {
            image.offsets.push(at as u64);
            image.entries.push(entry);
        } else {
            image.stale_prefix = true;
        }
        at = next;
    }
    image.end = at as u64;
    if let Some((last, _)) = prev.filter(|&(last, _)| last < bounds.compacted_index) {
        return Err(corrupt(
            path,
            format!(
                "log ends at index {last}, before the compaction point {} it must reach",
                bounds.compacted_index
            ),
        ));
    }
    Ok(image)
}

/// Checks that `entry` (read at `at`) follows `prev` and agrees with the compaction point.
fn check_order(
    entry: &Entry,
    prev: Option<(u64, u64)>,
    at: usize,
    path: &Path,
    bounds: Bounds,
) -> Result<(), StoreError> {
    let (index, term) = (entry.index, entry.term);
    match prev {
        Some((p_index, p_term)) => {
            if index != p_index + 1 {
                return Err(corrupt(
                    path,
                    format!(
                        "record at offset {at} holds index {index}, expected {} (indexes must be contiguous)",
                        p_index + 1
                    ),
                ));
            }
            if term < p_term {
                return Err(corrupt(
                    path,
                    format!(
                        "entry {index} at offset {at} has term {term}, lower than term {p_term} of entry {p_index}"
                    ),
                ));
            }
        }
        None if index == 0 || index > bounds.compacted_index + 1 => {
            return Err(corrupt(
                path,
                format!(
                    "log starts at index {index} at offset {at}, but the store is compacted only through {}: entries {}..{index} are missing",
                    bounds.compacted_index,
                    bounds.compacted_index + 1
                ),
            ));
        }
        None => {}
    }
    if index == bounds.compacted_index && term != bounds.compacted_term {
        return Err(corrupt(
            path,
            format!(
                "entry {index} at offset {at} has term {term}, but the compaction point records term {}",
                bounds.compacted_term
            ),
        ));
    }
    if index == bounds.compacted_index + 1 && term < bounds.compacted_term {
        return Err(corrupt(
            path,
            format!(
                "entry {index} at offset {at} has term {term}, lower than term {} of the compaction point",
                bounds.compacted_term
            ),
        ));
    }
    Ok(())
}

/// Decides whether damage at `at` (to the record that would hold `index`) is a torn tail.
fn classify_damage(
    buf: &[u8],
    at: usize,
    index: u64,
    fault: &frame::Fault,
    path: &Path,
    bounds: Bounds,
) -> Result<TornTail, StoreError> {
    if !fault.may_be_torn() {
        return Err(corrupt(
            path,
            format!("record at offset {at} (index {index}): {fault}"),
        ));
    }
    if let Some(next) = frame::find_intact_header(buf, at + 1, Kind::Entry) {
        return Err(corrupt(
            path,
            format!(
                "record at offset {at} (index {index}) is damaged ({fault}) but an intact record follows at offset {next}"
            ),
        ));
    }
    if index <= bounds.commit {
        return Err(corrupt(
            path,
            format!(
                "final record at offset {at} holds committed entry {index} (commit index {}) and is damaged: {fault}",
                bounds.commit
            ),
        ));
    }
    Ok(TornTail {
        offset: at as u64,
        index,
        fault: fault.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 20].into(),
            ..Default::default()
        }
    }

    fn log_of(epoch: u64, entries: &[Entry]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_header(epoch, &mut buf);
        let base = buf.len() as u64;
        let mut body = Vec::new();
        encode_entries(entries, base, &mut body).unwrap();
        buf.extend(body);
        buf
    }

    fn scan(buf: &[u8], compacted: (u64, u64), commit: u64) -> Result<LogImage, StoreError> {
        let path = PathBuf::from("/x/log");
        let (epoch, start) = read_header(buf, &path)?;
        assert_eq!(epoch, 7);
        let bounds = Bounds {
            compacted_index: compacted.0,
            compacted_term: compacted.1,
            commit,
        };
        scan_entries(buf, start, &path, bounds)
    }

    fn corrupt_detail(r: Result<LogImage, StoreError>) -> String {
        match r {
            Err(StoreError::Corrupt { detail, .. }) => detail,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn reads_back_offsets_and_skips_a_stale_prefix() {
        let es = [entry(3, 1), entry(4, 1), entry(5, 2)];
        let buf = log_of(7, &es);
        let img = scan(&buf, (2, 1), 4).unwrap();
        assert_eq!(img.entries, es);
        assert_eq!(img.end, buf.len() as u64);
        assert!(!img.stale_prefix && img.torn.is_none());
        let (_, first) = frame::decode(&buf, 0, Kind::LogHeader).unwrap();
        assert_eq!(img.offsets[0], first as u64);

        let img = scan(&buf, (4, 1), 4).unwrap();
        assert!(img.stale_prefix);
        assert_eq!(img.entries, es[2..]);
        assert_eq!(img.offsets.len(), 1);
    }

    #[test]
    fn refuses_gaps_term_regressions_and_compaction_disagreements() {
        let gap = log_of(7, &[entry(1, 1), entry(3, 1)]);
        assert!(corrupt_detail(scan(&gap, (0, 0), 0)).contains("expected 2"));
        let regress = log_of(7, &[entry(1, 2), entry(2, 1)]);
        assert!(corrupt_detail(scan(&regress, (0, 0), 0)).contains("lower than term 2"));
        let late_start = log_of(7, &[entry(5, 1)]);
        assert!(corrupt_detail(scan(&late_start, (2, 1), 0)).contains("entries 3..5 are missing"));
        let wrong_term = log_of(7, &[entry(2, 3), entry(3, 3)]);
        assert!(corrupt_detail(scan(&wrong_term, (2, 1), 2)).contains("records term 1"));
        let short = log_of(7, &[entry(1, 1)]);
        assert!(corrupt_detail(scan(&short, (3, 1), 3)).contains("before the compaction point 3"));
    }

    #[test]
    fn a_damaged_final_record_beyond_commit_is_torn() {
        let buf = log_of(7, &[entry(1, 1), entry(2, 1), entry(3, 1)]);
        let img = scan(&buf, (0, 0), 2).unwrap();
        let cut = img.offsets[2] as usize;
        for len in [cut + 3, cut + frame::HEADER_BYTES + 2, buf.len() - 1] {
            let img = scan(&buf[..len], (0, 0), 2).unwrap();
            let torn = img.torn.expect("torn tail reported");
            assert_eq!((torn.offset, torn.index), (cut as u64, 3));
            assert_eq!(img.end, cut as u64);
            assert_eq!(img.entries.len(), 2);
        }
        let mut flipped = buf.clone();
        *flipped.last_mut().unwrap() ^= 0xFF;
        assert!(scan(&flipped, (0, 0), 2).unwrap().torn.is_some());
        let mut zero_tail = buf.clone();
        zero_tail.extend([0u8; 100]);
        assert_eq!(scan(&zero_tail, (0, 0), 3).unwrap().torn.unwrap().index, 4);
    }

    #[test]
    fn damage_to_a_committed_or_non_final_record_is_corruption() {
        let buf = log_of(7, &[entry(1, 1), entry(2, 1), entry(3, 1)]);
        let torn = &buf[..buf.len() - 1];
        assert!(corrupt_detail(scan(torn, (0, 0), 3)).contains("commit index 3"));
        let img = scan(&buf, (0, 0), 0).unwrap();
        let mut mid = buf.clone();
        mid[img.offsets[1] as usize + frame::HEADER_BYTES + 2] ^= 0x40;
        let detail = corrupt_detail(scan(&mid, (0, 0), 0));
        assert!(detail.contains("intact record follows"), "{detail}");
        assert!(
            detail.contains(&format!("offset {}", img.offsets[1])),
            "{detail}"
        );
    }

    #[test]
    fn absurd_indexes_are_corruption_not_overflow() {
        let buf = log_of(7, &[entry(u64::MAX, 1)]);
        assert!(corrupt_detail(scan(&buf, (0, 0), 0)).contains("beyond any real log"));
        let buf = log_of(7, &[entry(1, u64::MAX)]);
        assert!(corrupt_detail(scan(&buf, (0, 0), 0)).contains("beyond any real log"));
    }

    #[test]
    fn header_must_be_intact() {
        let mut buf = log_of(7, &[]);
        buf[5] ^= 1;
        let err = read_header(&buf, Path::new("/x/log")).unwrap_err();
        assert!(err.to_string().contains("log header at offset 0"), "{err}");
        assert!(read_header(b"garbage", Path::new("/x/log")).is_err());
    }
}
