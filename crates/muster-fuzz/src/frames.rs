//! The framing of multi-part fuzz inputs: a sequence of records, each a 2-byte little-endian
//! length then that many bytes (a record cut short by the end of the input is kept as it is).
//! Used by the envelope and state harnesses, and by `seeds` to write their corpus.

/// Most records a harness reads from one input; the rest is ignored.
pub const MAX_FRAMES: usize = 64;

/// Iterator over the records of an input.
pub struct Frames<'a> {
    rest: &'a [u8],
    taken: usize,
}

impl<'a> Frames<'a> {
    /// The records of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Frames {
            rest: data,
            taken: 0,
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.taken == MAX_FRAMES || self.rest.len() < 2 {
            return None;
        }
        let len = usize::from(u16::from_le_bytes([self.rest[0], self.rest[1]]));
        let body = &self.rest[2..];
        let len = len.min(body.len());
        let (record, rest) = body.split_at(len);
        self.rest = rest;
        self.taken += 1;
        Some(record)
    }
}

/// Appends one record to `out` (bytes beyond 65,535 are cut: seeds never come near).
pub fn frame(out: &mut Vec<u8>, record: &[u8]) {
    let len = record.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&record[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_short_tail_is_kept() {
        let mut data = Vec::new();
        frame(&mut data, b"abc");
        frame(&mut data, b"");
        frame(&mut data, b"de");
        let got: Vec<&[u8]> = Frames::new(&data).collect();
        assert_eq!(got, vec![&b"abc"[..], b"", b"de"]);
        let cut = &data[..data.len() - 1];
        let got: Vec<&[u8]> = Frames::new(cut).collect();
        assert_eq!(got, vec![&b"abc"[..], b"", b"d"]);
    }

    #[test]
    fn at_most_max_frames_are_read() {
        let data = vec![0u8; 2 * (MAX_FRAMES + 10)];
        assert_eq!(Frames::new(&data).count(), MAX_FRAMES);
    }
}
