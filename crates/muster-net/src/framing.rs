//! Wire format of muster messages: each message is a 4-byte big-endian length followed by that
//! many opaque bytes (a protobuf message of `proto/`, encoded by the agent binary).
//!
//! On [`PROTOCOL`] (`/muster/msg/2.0.0`) one long-lived stream per connection and direction
//! carries frame after frame, with no reply. On [`LEGACY_PROTOCOL`] (`/muster/msg/1.0.0`, the
//! request-response protocol of older agents) a stream carries one frame and the receiver
//! answers with the single byte [`ACK`]; it is kept so old and new agents can talk during a
//! rolling upgrade.
//!
//! Pure poll-based readers and writers over `AsyncRead`/`AsyncWrite`, used by the connection
//! handler (`handler.rs`). A frame longer than the receiver's `max_message_bytes` is refused
//! from its length prefix, before anything is allocated for its body.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::{AsyncRead, AsyncWrite};
use libp2p::StreamProtocol;

/// The protocol of the long-lived message streams.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/muster/msg/2.0.0");
/// The one-message-per-stream protocol of older agents, still spoken to them.
pub(crate) const LEGACY_PROTOCOL: StreamProtocol = StreamProtocol::new("/muster/msg/1.0.0");
/// The byte a receiver of [`LEGACY_PROTOCOL`] writes back once it has accepted a message.
pub(crate) const ACK: u8 = 0x06;
/// Bytes of the length prefix.
const PREFIX_BYTES: usize = 4;

/// Why a stream stopped carrying frames.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The length prefix announces more than the receiver accepts.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLong { len: usize, limit: usize },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({missing} bytes missing)")]
    Truncated { missing: usize },
    /// The legacy receiver answered something other than [`ACK`].
    #[error("expected ack byte {ACK:#04x}, got {0:#04x}")]
    BadAck(u8),
    /// The stream failed.
    #[error("stream: {0}")]
    Io(#[from] io::Error),
}

/// `bytes` as one frame: length prefix and body in a single buffer, so a frame goes out as
/// one write. The caller has checked `bytes.len()` against its limit (which fits a `u32`).
pub(crate) fn encode(bytes: &[u8]) -> Vec<u8> {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(PREFIX_BYTES + bytes.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(bytes);
    frame
}

/// Reads frames one after another from a stream.
#[derive(Debug)]
pub(crate) struct FrameReader {
    limit: usize,
    prefix: [u8; PREFIX_BYTES],
    prefix_filled: usize,
    /// The body being read (allocated once its length passed the limit check) and how much of
    /// it has arrived.
    body: Option<(Vec<u8>, usize)>,
}

impl FrameReader {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            prefix: [0; PREFIX_BYTES],
            prefix_filled: 0,
            body: None,
        }
    }

    /// The next whole frame's body; `Ok(None)` when the stream ended cleanly between frames.
    pub(crate) fn poll_frame<S>(
        &mut self,
        cx: &mut Context<'_>,
        mut io: Pin<&mut S>,
    ) -> Poll<Result<Option<Vec<u8>>, FrameError>>
    where
        S: AsyncRead + ?Sized,
    {
        loop {
            if let Some((body, filled)) = &mut self.body {
                if *filled == body.len() {
                    let (body, _) = self.body.take().unwrap_or_default();
                    return Poll::Ready(Ok(Some(body)));
                }
                let n = ready!(io.as_mut().poll_read(cx, &mut body[*filled..]))?;
                if n == 0 {
                    let missing = body.len() - *filled;
                    return Poll::Ready(Err(FrameError::Truncated { missing }));
                }
                *filled += n;
                continue;
            }
            let n = ready!(io
                .as_mut()
                .poll_read(cx, &mut self.prefix[self.prefix_filled..]))?;
            if n == 0 {
                return Poll::Ready(match self.prefix_filled {
                    0 => Ok(None),
                    filled => Err(FrameError::Truncated {
                        missing: PREFIX_BYTES - filled,
                    }),
                });
            }
            self.prefix_filled += n;
            if self.prefix_filled < PREFIX_BYTES {
                continue;
            }
            self.prefix_filled = 0;
            let len = u32::from_be_bytes(self.prefix) as usize;
            if len > self.limit {
                let limit = self.limit;
                return Poll::Ready(Err(FrameError::TooLong { len, limit }));
            }
            self.body = Some((vec![0; len], 0));
        }
    }
}

/// Writes one encoded frame (see [`encode`]), resuming where a pending write stopped.
#[derive(Debug)]
pub(crate) struct FrameWriter {
    frame: Vec<u8>,
    written: usize,
}

impl FrameWriter {
    pub(crate) fn new(frame: Vec<u8>) -> Self {
        Self { frame, written: 0 }
    }

    /// Ready once the whole frame was handed to the stream (not flushed).
    pub(crate) fn poll_write<S>(
        &mut self,
        cx: &mut Context<'_>,
        mut io: Pin<&mut S>,
    ) -> Poll<io::Result<()>>
    where
        S: AsyncWrite + ?Sized,
    {
        while self.written < self.frame.len() {
            let n = ready!(io.as_mut().poll_write(cx, &self.frame[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// Reads the single ack byte of a [`LEGACY_PROTOCOL`] exchange.
pub(crate) fn poll_ack<S>(cx: &mut Context<'_>, io: Pin<&mut S>) -> Poll<Result<(), FrameError>>
where
    S: AsyncRead + ?Sized,
{
    let mut byte = [0u8; 1];
    match ready!(io.poll_read(cx, &mut byte))? {
        0 => Poll::Ready(Err(FrameError::Truncated { missing: 1 })),
        _ if byte[0] == ACK => Poll::Ready(Ok(())),
        _ => Poll::Ready(Err(FrameError::BadAck(byte[0]))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::future::poll_fn;
    use futures::io::Cursor;

    /// Every frame in `wire`, then how the stream ended.
    fn read_all(limit: usize, wire: Vec<u8>) -> (Vec<Vec<u8>>, Result<(), FrameError>) {
        let mut reader = FrameReader::new(limit);
        let mut io = Cursor::new(wire);
        let mut frames = Vec::new();
        loop {
            match block_on(poll_fn(|cx| reader.poll_frame(cx, Pin::new(&mut io)))) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return (frames, Ok(())),
                Err(error) => return (frames, Err(error)),
            }
        }
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let messages = [Vec::new(), b"hello".to_vec(), vec![7u8; 1024]];
        let mut wire = Vec::new();
        for message in &messages {
            let frame = encode(message);
            assert_eq!(frame.len(), 4 + message.len());
            let mut out = Cursor::new(Vec::new());
            let mut writer = FrameWriter::new(frame);
            block_on(poll_fn(|cx| writer.poll_write(cx, Pin::new(&mut out)))).expect("writes");
            wire.extend(out.into_inner());
        }
        let (frames, end) = read_all(1024, wire);
        assert_eq!(frames, messages);
        assert!(end.is_ok());
    }

    /// Only the prefix of a 4 GiB frame is present: the reader refuses it at once, without
    /// waiting for (or allocating) the body.
    #[test]
    fn oversized_frame_is_refused_from_its_prefix() {
        let mut wire = encode(b"ok");
        wire.extend_from_slice(&u32::MAX.to_be_bytes());
        let (frames, end) = read_all(16, wire);
        assert_eq!(frames, vec![b"ok".to_vec()]);
        let error = end.expect_err("too long");
        assert!(matches!(
            error,
            FrameError::TooLong {
                len: 4294967295,
                limit: 16
            }
        ));
        assert!(error.to_string().contains("exceeds the limit of 16 bytes"));
        // Exactly at the limit is fine.
        let (frames, end) = read_all(16, encode(&[1; 16]));
        assert_eq!(frames.len(), 1);
        assert!(end.is_ok());
    }

    #[test]
    fn truncated_frames_are_errors() {
        let mut wire = 10u32.to_be_bytes().to_vec();
        wire.extend_from_slice(b"short");
        let (_, end) = read_all(64, wire);
        assert!(matches!(end, Err(FrameError::Truncated { missing: 5 })));
        let (_, end) = read_all(64, vec![0, 0]);
        assert!(matches!(end, Err(FrameError::Truncated { missing: 2 })));
    }

    /// Arbitrary bytes (a deterministic pseudo-random sweep) never panic the reader and never
    /// make it allocate beyond its limit; every outcome is a frame, a clean end or an error.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let wire: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let (frames, _) = read_all(32, wire.clone());
            assert!(frames.iter().all(|f| f.len() <= 32));
            let consumed: usize = frames.iter().map(|f| f.len() + 4).sum();
            assert!(consumed <= wire.len());
        }
    }

    #[test]
    fn ack_is_checked() {
        let ack = |wire: Vec<u8>| {
            let mut io = Cursor::new(wire);
            block_on(poll_fn(|cx| poll_ack(cx, Pin::new(&mut io))))
        };
        assert!(ack(vec![ACK]).is_ok());
        assert!(matches!(ack(vec![0]), Err(FrameError::BadAck(0))));
        assert!(matches!(ack(Vec::new()), Err(FrameError::Truncated { .. })));
    }
}
